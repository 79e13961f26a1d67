// stratoecho ground dashboard: the flights this station follows (issue 33). The "Flights" panel
// says how each flight's frames came (heard directly, or inside another balloon's relay envelope),
// the "Conversation" panel interleaves the musings of every balloon by when they were made. Both
// stay hidden for one flight heard only directly: the page is then as it always was.
// Text from the air (callsigns, musings, relayers' names) is only ever set with textContent.
"use strict";

window.StratoechoFlights = (() => {
  const COLOURS = 6; // flight-c0 (the primary) .. flight-c5 in style.css and on the map

  const colour = (index) => `flight-c${index % COLOURS}`;
  const { $, el } = window.StratoechoDom; // dom.js

  const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
  const names = (via) => Object.keys(via).sort().join(" and ");

  // How the frames came: "all heard directly", "all via NEAR1", "3 heard directly, 40 via NEAR1".
  function howHeard(p) {
    if (!p.heard) return "nothing heard yet";
    if (!p.relayed) return "all heard directly";
    if (!p.direct) return `all via ${names(p.via)}`;
    return `${p.direct} heard directly, ${p.relayed} via ${names(p.via)}`;
  }

  // Several flights, or one whose frames came by relay: then the panels have something to say.
  const worthShowing = (flights) => flights.length > 1 || flights.some((f) => f.paths.all.relayed > 0);

  function drawFlights(flights) {
    $("flights").replaceChildren(...flights.map((f, i) => {
      const item = el("li", null, null, { "data-callsign": f.callsign });
      el("span", item, null, { class: `swatch ${colour(i)}`, "aria-hidden": "true" });
      el("strong", item, f.callsign);
      const what = f.error ? `cannot be read (${f.error})`
        : `${plural(f.counts.sentences, "sentence")}, ${plural(f.counts.musings, "musing")}, ${howHeard(f.paths.all)}`;
      el("span", item, ` — ${what}`);
      if (f.latest) el("span", item, ` · ${f.latest.alt} m`, { class: "note" });
      return item;
    }));
  }

  function drawConversation(flights, conversation) {
    const order = new Map(flights.map((f, i) => [f.callsign, i]));
    const rows = conversation.slice().reverse(); // newest first, as the musings panel
    $("conversation").replaceChildren(...rows.map((m) => {
      const item = el("li", null, null, { "data-key": `${m.callsign}/${m.boot}/${m.seq}` });
      const time = el("time", item, m.created ? m.created.slice(11, 19) : "–", { datetime: m.created || "" });
      time.title = m.created ? `${m.created} (UTC)` : "";
      el("span", item, m.callsign, { class: `callsign ${colour(order.get(m.callsign) ?? 0)}` });
      const text = el("span", item, m.text, { class: "text" });
      const relayers = [...new Set(m.paths.filter((p) => p.includes(" via ")).map((p) => p.split(" via ")[1]))];
      if (relayers.length) {
        el("span", text, `via ${relayers.join(", ")}`, { class: "via", title: `heard: ${m.paths.join("; ")}` });
      }
      if (m.authentic === false) el("span", text, "open", { class: "open", title: "not vouched for by its tag" });
      return item;
    }));
    if (!rows.length) el("li", $("conversation"), "none received yet", { class: "note" });
  }

  // flights: /api/flights; conversation: /api/conversation.
  function draw(flights, conversation) {
    const shown = worthShowing(flights);
    $("flights-section").hidden = !shown;
    $("conversation-section").hidden = !shown;
    if (!shown) return false;
    drawFlights(flights);
    drawConversation(flights, conversation);
    return true;
  }

  return { draw, colour, worthShowing };
})();
