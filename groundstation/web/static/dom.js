// The page's two DOM helpers, shared by app.js and flights.js (loaded before them). Text from the
// air is only ever set with textContent, never parsed as markup.
"use strict";

window.StratoechoDom = (() => {
  const $ = (id) => document.getElementById(id);

  function el(tag, parent, text, attrs) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (parent) parent.appendChild(node);
    return node;
  }

  return { $, el };
})();
