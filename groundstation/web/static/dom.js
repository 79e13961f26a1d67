// The page's small helpers, shared by its scripts (loaded before them): elements, SVG, UTC times
// and JSON from this server. Text from the air is only ever set with textContent, never parsed
// as markup.
"use strict";

window.StratoechoDom = (() => {
  const SVG_NS = "http://www.w3.org/2000/svg";
  const $ = (id) => document.getElementById(id);

  function el(tag, parent, text, attrs) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (parent) parent.appendChild(node);
    return node;
  }

  function svg(tag, parent, attrs, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = String(text);
    if (parent) parent.appendChild(node);
    return node;
  }

  const pad2 = (n) => String(n).padStart(2, "0");

  // A time of day in UTC, HH:MM:SS (or HH:MM); "–" for no time.
  function clock(ms, seconds = true) {
    if (!Number.isFinite(ms)) return "–";
    const d = new Date(ms);
    const hm = `${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}`;
    return seconds ? `${hm}:${pad2(d.getUTCSeconds())}` : hm;
  }

  const isoMs = (iso) => (iso ? Date.parse(iso) : NaN);

  function timeEl(parent, iso) {
    const node = el("time", parent, clock(isoMs(iso)), { datetime: iso || "" });
    node.title = iso ? `${iso} (UTC)` : "";
    return node;
  }

  async function getJSON(url) {
    const response = await fetch(url, { cache: "no-store" });
    if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
    return response.json();
  }

  return { $, el, svg, clock, isoMs, timeEl, getJSON };
})();
