// stratoecho ground dashboard: plain JavaScript and hand-drawn SVG (the map: map.js, the charts:
// charts.js, the commands panel: commands.js, the flights: flights.js), nothing fetched from
// anywhere but this server. Text that came from the air (musings, station names, command
// lines) is only ever set with textContent, never parsed as markup.
//
// Flow: /api/summary first (its cursor is the newest row ids), then the lists, then the
// live feed /api/events from that cursor; rows are kept by id, so a row seen twice (in a
// list and again in the feed) is one row.
"use strict";

(() => {
  const state = {
    telemetry: new Map(), // id -> telemetry row
    health: new Map(), // id -> health record
    musings: new Map(), // "boot/seq" -> musing record
    images: new Map(), // "boot/seq" -> image record
    link: null,
    summary: null,
    prediction: null, // /api/prediction: the landing, its ellipse, the crew's numbers
    flights: [], // /api/flights: every flight this station follows, the primary first
    conversation: [], // /api/conversation: the musings of them all, oldest first
    clockOffsetMs: 0, // this browser's clock minus the server's
    cursor: { telemetry: 0, records: 0 },
  };

  // ------------------------------------------------------------------ small helpers

  const { $, el, svg, clock, isoMs, timeEl, getJSON } = window.StratoechoDom; // dom.js
  const { timeChart } = window.StratoechoCharts; // charts.js

  function num(value, digits = 0, unit = "") {
    return value === null || value === undefined || !Number.isFinite(Number(value))
      ? "–" : `${Number(value).toFixed(digits)}${unit}`;
  }

  const bySeq = (a, b) => a.boot - b.boot || a.seq - b.seq;

  // Redraws are batched: many rows arriving at once draw once.
  const dirty = new Set();
  let drawPending = false;
  function mark(...parts) {
    parts.forEach((p) => dirty.add(p));
    if (!drawPending) {
      drawPending = true;
      setTimeout(draw, 30);
    }
  }

  function draw() {
    drawPending = false;
    const parts = new Set(dirty);
    dirty.clear();
    if (parts.has("track")) drawTrack();
    if (parts.has("charts")) drawCharts();
    if (parts.has("musings")) drawMusings();
    if (parts.has("pictures")) drawPictures();
    if (parts.has("link")) drawLink();
    if (parts.has("summary")) drawSummary();
    if (parts.has("crew")) drawCrew();
    if (parts.has("flights") && window.StratoechoFlights) StratoechoFlights.draw(state.flights, state.conversation);
  }

  // ------------------------------------------------------------------ charts against time

  function telemetryByTime() {
    return [...state.telemetry.values()].map((r) => ({ ...r, ms: isoMs(r.t) })).sort((a, b) => a.ms - b.ms);
  }

  function drawCharts() {
    const rows = telemetryByTime();
    timeChart($("chart-alt"), rows.map((r) => ({ t: r.ms, v: r.alt })), { zero: true, cls: "alt" });
    timeChart($("chart-temp"), rows.map((r) => ({ t: r.ms, v: r.temp_c })), { cls: "temp" });
    timeChart($("chart-batt"), rows.map((r) => ({ t: r.ms, v: r.batt_mv })), { cls: "batt" });
    const rungs = state.summary ? state.summary.modes : []; // best first, as the wire declares them
    const modes = [...state.health.values()]
      .filter((h) => h.fields && typeof h.fields.mode === "string")
      .map((h) => ({ t: isoMs(h.created), v: rungs.indexOf(h.fields.mode.toLowerCase()) }))
      .map((p) => ({ ...p, v: p.v < 0 ? null : p.v }))
      .sort((a, b) => a.t - b.t);
    timeChart($("chart-mode"), modes, { kind: "step", categories: rungs, cls: "mode" });
  }

  // ------------------------------------------------------------------ the track

  function niceDistanceKm(km) {
    const mag = 10 ** Math.floor(Math.log10(km));
    const norm = km / mag;
    return (norm >= 5 ? 5 : norm >= 2 ? 2 : 1) * mag;
  }

  function drawTrack() {
    const node = $("track");
    node.replaceChildren();
    const W = 600, H = 400, PAD = 30;
    const rows = [...state.telemetry.values()].filter((r) => !(r.lat === 0 && r.lon === 0)).sort(bySeq);
    const note = $("track-note");
    if (window.StratoechoMap && StratoechoMap.ready) {
      if (window.StratoechoFlights) StratoechoMap.drawFlights(state.flights, StratoechoFlights.colour);
      StratoechoMap.draw(rows, state.prediction);
      note.textContent = rows.length ? trackNote(rows[0], rows[rows.length - 1]) : "no position yet";
      return;
    }
    if (!rows.length) {
      svg("text", node, { x: W / 2, y: H / 2, class: "empty", "text-anchor": "middle" }, "no position yet");
      note.textContent = "";
      return;
    }
    // Equirectangular, east-west shrunk by cos(latitude): true to scale over a flight's few hundred km.
    const lat0 = rows.reduce((s, r) => s + r.lat, 0) / rows.length;
    const k = Math.cos((lat0 * Math.PI) / 180);
    const pred = state.prediction;
    const places = rows.map((r) => [r.lat, r.lon]);
    const others = state.flights.slice(1).map((f, i) => ({ ...f, index: i + 1 })).filter((f) => f.track.length);
    for (const f of others) places.push(...f.track.map((p) => [p.lat, p.lon]));
    if (pred) {
      places.push([pred.lat, pred.lon]);
      const reach = pred.ellipse.semi_major_m / 111320; // degrees of latitude: the ellipse on the map too
      places.push([pred.lat + reach, pred.lon + reach / k], [pred.lat - reach, pred.lon - reach / k]);
      if (pred.station) places.push([pred.station.lat, pred.station.lon]);
    }
    const px = places.map(([, lon]) => lon * k), py = places.map(([lat]) => lat);
    const minSpan = 0.01; // degrees: a balloon on the ground still gets a sensible scale
    let [x0, x1, y0, y1] = [Math.min(...px), Math.max(...px), Math.min(...py), Math.max(...py)];
    if (x1 - x0 < minSpan) { const c = (x0 + x1) / 2; x0 = c - minSpan / 2; x1 = c + minSpan / 2; }
    if (y1 - y0 < minSpan) { const c = (y0 + y1) / 2; y0 = c - minSpan / 2; y1 = c + minSpan / 2; }
    const scale = Math.min((W - 2 * PAD) / (x1 - x0), (H - 2 * PAD) / (y1 - y0)); // px per degree
    const cx = (x0 + x1) / 2, cy = (y0 + y1) / 2;
    const X = (lon) => W / 2 + (lon * k - cx) * scale;
    const Y = (lat) => H / 2 - (lat - cy) * scale;

    svg("rect", node, { x: 0, y: 0, width: W, height: H, class: "map" });
    svg("polyline", node, {
      points: rows.map((r) => `${X(r.lon).toFixed(1)},${Y(r.lat).toFixed(1)}`).join(" "), class: "track",
    });
    const first = rows[0], last = rows[rows.length - 1];
    svg("circle", node, { cx: X(first.lon), cy: Y(first.lat), r: 6, class: "launch" });
    svg("text", node, { x: X(first.lon) + 9, y: Y(first.lat) + 4, class: "label" }, "launch");
    svg("circle", node, { cx: X(last.lon), cy: Y(last.lat), r: 6, class: "latest" });
    const name = others.length ? `${state.flights[0].callsign} ` : "";
    svg("text", node, { x: X(last.lon) + 9, y: Y(last.lat) - 6, class: "label" }, `${name}${last.alt} m`);
    for (const f of others) { // the other flights this station follows, each in its colour (flights.js)
      const cls = StratoechoFlights.colour(f.index), end = f.track[f.track.length - 1];
      svg("polyline", node, { points: f.track.map((p) => `${X(p.lon).toFixed(1)},${Y(p.lat).toFixed(1)}`).join(" "),
        class: `track ${cls}` });
      svg("circle", node, { cx: X(end.lon), cy: Y(end.lat), r: 5, class: `latest ${cls}` });
      svg("text", node, { x: X(end.lon) + 9, y: Y(end.lat) - 6, class: "label" }, `${f.callsign} ${end.alt} m`);
    }
    if (pred && pred.phase !== "landed") {
      const pxPerM = scale / 111320;
      const [lx, ly] = [X(pred.lon), Y(pred.lat)];
      svg("polyline", node, { points: `${X(last.lon).toFixed(1)},${Y(last.lat).toFixed(1)} ${lx.toFixed(1)},${ly.toFixed(1)}`,
        class: "to-landing" });
      // The major axis's bearing is from north, clockwise; SVG turns an x-aligned ellipse clockwise.
      svg("ellipse", node, { cx: lx, cy: ly, rx: Math.max(pred.ellipse.semi_major_m * pxPerM, 2),
        ry: Math.max(pred.ellipse.semi_minor_m * pxPerM, 2), class: "landing-ellipse",
        transform: `rotate(${pred.ellipse.bearing_deg - 90} ${lx} ${ly})` });
      svg("path", node, { d: `M${lx - 6},${ly - 6} L${lx + 6},${ly + 6} M${lx - 6},${ly + 6} L${lx + 6},${ly - 6}`,
        class: "landing" });
      svg("text", node, { x: lx + 9, y: ly + 14, class: "label" }, "landing");
    }
    if (pred && pred.station) {
      const [sx, sy] = [X(pred.station.lon), Y(pred.station.lat)];
      svg("rect", node, { x: sx - 5, y: sy - 5, width: 10, height: 10, class: "station" });
      svg("text", node, { x: sx + 9, y: sy + 4, class: "label" }, "station");
    }

    // scale bar: a round distance about a quarter of the width
    const kmPerPx = 111.32 / scale;
    const km = niceDistanceKm((W / 4) * kmPerPx);
    const len = km / kmPerPx;
    const sy = H - 12;
    svg("polyline", node, { points: `12,${sy - 5} 12,${sy} ${12 + len},${sy} ${12 + len},${sy - 5}`, class: "scale" });
    svg("text", node, { x: 16 + len, y: sy, class: "label" }, km >= 1 ? `${km} km` : `${Math.round(km * 1000)} m`);
    svg("text", node, { x: W - 14, y: 20, class: "label", "text-anchor": "middle" }, "N");
    svg("polyline", node, { points: `${W - 14},40 ${W - 14},26`, class: "scale" });

    note.textContent = trackNote(first, last);
  }

  const trackNote = (first, last) => `latest ${last.lat.toFixed(5)}, ${last.lon.toFixed(5)} at ${last.alt} m, `
    + `${clock(isoMs(last.t))} UTC; launch ${first.lat.toFixed(5)}, ${first.lon.toFixed(5)}`;

  async function startMap() { // the map replaces the SVG drawing once its library has loaded
    try {
      if (window.StratoechoMap && await StratoechoMap.start($("map"))) {
        $("track").setAttribute("hidden", ""); // an SVG element has no `hidden` property
        mark("track");
      }
    } catch (err) {
      $("track-note").textContent = `the map could not start (${err.message}): the track is drawn without it`;
    }
  }

  // ------------------------------------------------------------------ for the crew

  const km = (m) => (m >= 10000 ? `${(m / 1000).toFixed(0)} km` : `${(m / 1000).toFixed(1)} km`);
  const minutes = (s) => (s >= 5400 ? `${(s / 3600).toFixed(1)} h` : `${Math.round(s / 60)} min`);
  const degrees = (deg) => `${Math.round(deg) || 0}°`; // never "-0°" for a balloon just below the horizon
  const compass = (deg) => `${String(Math.round(deg) % 360).padStart(3, "0")}°`;

  function drawCrew() {
    const p = state.prediction;
    const set = (id, text) => { $(id).textContent = text; };
    if (!p) {
      for (const id of ["crew-landing", "crew-ellipse", "crew-landing-in", "crew-rate", "crew-burst", "crew-chute",
        "crew-balloon", "crew-from"]) set(id, "–");
      $("crew-stations").hidden = true;
      $("crew-note").textContent = "No prediction yet: it needs three positions over a minute.";
      return;
    }
    set("crew-landing", p.phase === "landed" ? `landed at ${p.lat.toFixed(5)}, ${p.lon.toFixed(5)}`
      : `${p.lat.toFixed(5)}, ${p.lon.toFixed(5)}`);
    set("crew-ellipse", p.phase === "landed" ? "–" : `${km(p.ellipse.semi_major_m)} × ${km(p.ellipse.semi_minor_m)}`);
    set("crew-landing-in", p.phase === "landed" ? "landed"
      : `${minutes(p.landing_in_s)} (${clock(isoMs(p.landing_at))} UTC)`);
    set("crew-rate", `${p.vertical_rate_m_s >= 0 ? "+" : ""}${p.vertical_rate_m_s.toFixed(1)} m/s`);
    set("crew-burst", `${p.burst_alt_m.toLocaleString()} m `
      + (p.burst_seen ? "(seen)" : `expected, in ${minutes(p.burst_in_s || 0)}`));
    set("crew-chute", `${p.descent_rate_m_s.toFixed(1)} m/s at the ground (${p.descent_rate_measured ? "measured" : "assumed"})`);
    const st = p.station;
    set("crew-balloon", st && st.balloon
      ? `${km(st.balloon.distance_m)} at ${compass(st.balloon.bearing_deg)}, ${degrees(st.balloon.elevation_deg)} up` : "–");
    set("crew-from", st ? `${km(st.landing.distance_m)} at ${compass(st.landing.bearing_deg)}` : "–");
    const others = p.stations || [];
    $("crew-stations").hidden = !others.length;
    $("crew-stations").tBodies[0].replaceChildren(...others.map((s) => { // names come from the network: text only
      const row = el("tr");
      el("td", row, s.name);
      el("td", row, s.balloon ? `${km(s.balloon.distance_m)} at ${compass(s.balloon.bearing_deg)}` : "–");
      el("td", row, s.balloon ? degrees(s.balloon.elevation_deg) : "–");
      el("td", row, `${km(s.landing.distance_m)} at ${compass(s.landing.bearing_deg)}`);
      return row;
    }));
    $("crew-note").textContent = `As of ${clock(isoMs(p.as_of))} UTC, from ${p.layers} wind layers measured`
      + (st ? "" : "; give serve --station LAT LON ALT for distances from the station") + ".";
  }

  let predictionTimer = null;

  function refreshPredictionSoon() { // at most every 2 s: a new position moves the landing
    if (predictionTimer) return;
    predictionTimer = setTimeout(async () => {
      try {
        state.prediction = await getJSON("/api/prediction");
        mark("track", "crew");
      } catch (err) { /* the event stream reports the connection */ }
      predictionTimer = null;
    }, 2000);
  }

  // ------------------------------------------------------------------ musings and pictures

  function drawMusings() {
    const list = $("musings");
    const rows = [...state.musings.values()].sort((a, b) => bySeq(b, a)).slice(0, 2000);
    list.replaceChildren(...rows.map((m) => {
      const item = el("li", null, null, { "data-key": `${m.boot}/${m.seq}` });
      timeEl(item, m.created);
      el("span", item, m.text, { class: "text" });
      if (m.authentic === false) { // its text sentences only: anyone can send those
        el("span", item, "open", { class: "open", title: "heard only as UKHAS text sentences, which anyone can " +
          "send; not yet vouched for by the balloon's tag" });
      }
      return item;
    }));
    if (!rows.length) el("li", list, "none received yet", { class: "note" });
  }

  function drawPictures() {
    const box = $("pictures");
    const rows = [...state.images.values()].sort((a, b) => bySeq(b, a));
    $("pictures-empty").hidden = rows.length > 0;
    const have = new Set([...box.children].map((c) => c.dataset.key));
    for (const r of rows.slice().reverse()) { // oldest first into the front: newest ends up first
      const key = `${r.boot}/${r.seq}`;
      if (have.has(key)) continue;
      const fig = el("figure", null, null, { "data-key": key });
      const link = el("a", fig, null, { href: r.image.url, target: "_blank", rel: "noopener" });
      el("img", link, null, { src: r.image.url, alt: `picture ${key}` });
      const cap = el("figcaption", fig);
      timeEl(cap, r.created);
      box.prepend(fig);
    }
  }

  // ------------------------------------------------------------------ link statistics

  function drawLink() {
    const link = state.link;
    if (!link) return;
    // On flight time (the server moves each minute heard by the sentences' own clock), like the other charts.
    const minutes = link.minutes.map((m) => ({ ...m, t: Date.parse(m.t) }));
    timeChart($("chart-frames"), minutes.map((m) => ({ t: m.t, v: m.frames - m.bad, v2: m.bad })),
      { kind: "bars", zero: true });
    timeChart($("chart-loss"), minutes.map((m) => {
      const sent = m.telemetry + m.telemetry_missing;
      return { t: m.t, v: sent ? (100 * m.telemetry_missing) / sent : null };
    }), { kind: "bars", zero: true, max: 100 });
    const withSignal = minutes.filter((m) => m.rssi_dbm !== null);
    $("signal-figure").hidden = withSignal.length === 0;
    if (withSignal.length) timeChart($("chart-rssi"), minutes.map((m) => ({ t: m.t, v: m.rssi_dbm })), { cls: "rssi" });

    $("stations").tBodies[0].replaceChildren(...link.stations.map((s) => {
      const row = el("tr");
      el("td", row, s.station || "(this receiver)");
      el("td", row, s.frames);
      el("td", row, s.bad);
      el("td", row, `${num(s.rssi_dbm, 1)} / ${num(s.last_rssi_dbm, 1)}`);
      el("td", row, num(s.snr_db, 1));
      el("td", row, s.records_heard);
      el("td", row, clock(isoMs(s.last_heard)));
      return row;
    }));

    const list = $("missing");
    const gaps = link.missing.filter((m) => m.missing > 0);
    list.replaceChildren(...gaps.map((m) => {
      const ranges = m.ranges.map(([a, b]) => (a === b ? `${a}` : `${a}–${b}`)).join(", ");
      const more = m.ranges.length && m.missing > m.ranges.reduce((s, [a, b]) => s + b - a + 1, 0) ? ", …" : "";
      return el("li", null, `${m.kind} boot ${m.boot}: ${m.missing} missing of ${m.last - m.first + 1} `
        + `(seq ${ranges}${more})`, { "data-kind": m.kind });
    }));
    if (!gaps.length) el("li", list, link.missing.length ? "nothing missing" : "nothing heard yet", { class: "note" });
  }

  // ------------------------------------------------------------------ summary

  // Which is which: the callsign the balloon's signed or tagged frames named, or only what open
  // sentences (anyone's) say; claims are kept apart from the track. A station without the key
  // believes anyone, and says so.
  function drawClaims(c) {
    if (!c) return;
    $("callsign-from").textContent = !c.callsign ? (c.keyed ? "(nothing signed heard yet)" : "")
      : c.callsign_tagged ? "(named by its signed frames)" : "(named by open sentences only)";
    const others = Object.entries(c.other_callsigns || {});
    const parts = [];
    if (c.keyed === false) parts.push("this station has no flight key: it believes anyone's sentences");
    if (others.length) parts.push(`open sentences under other callsigns, not on this track: ${others.map(([k, n]) => `${k} (${n})`).join(", ")}`);
    if (c.keyed && c.unsigned_under_callsign) parts.push(`${c.unsigned_under_callsign} unsigned sentences under this callsign, not on this track`);
    if (c.contested_numbers && !c.keyed) parts.push(`${c.contested_numbers} sentence numbers claimed twice, left out of the track`);
    $("claims").textContent = parts.join("; ");
    $("claims").hidden = !parts.length;
  }

  function drawSummary() {
    const s = state.summary;
    if (!s) return;
    $("callsign").textContent = s.callsign || "";
    drawClaims(s.claims);
    const rows = [...state.telemetry.values()].sort(bySeq);
    const latest = rows.length ? rows[rows.length - 1] : s.latest;
    $("sum-alt").textContent = latest ? `${latest.alt} m` : "–";
    const maxAlt = Math.max(s.max_alt ?? -Infinity, ...rows.map((r) => r.alt));
    $("sum-max-alt").textContent = Number.isFinite(maxAlt) ? `${maxAlt} m` : "–";
    const health = [...state.health.values()].sort(bySeq).pop() || s.health;
    const f = (health && health.fields) || {};
    $("sum-mode").textContent = f.mode ? String(f.mode).toLowerCase().replace("_", " ") : "–";
    $("sum-phase").textContent = f.phase ? String(f.phase) : "–";
    $("sum-batt").textContent = f.batt_mv !== undefined ? `${f.batt_mv} mV`
      : latest ? `${latest.batt_mv} mV` : "–";
    $("sum-loss").textContent = typeof f.loss === "number" ? `${(100 * f.loss).toFixed(0)} %` : "–";
    // A maker's sensors' values, "co2_ppm=412,dust_ugm3=7.25" (stratoecho/wire/content.py, key 28).
    const readings = typeof f.readings === "string" ? f.readings.split(",").filter((p) => p.includes("=")) : [];
    $("sum-sensors-row").hidden = !readings.length;
    $("sum-sensors").textContent = readings.map((p) => p.replace("=", " ")).join(" · ");
    $("sum-frames").textContent = `${s.counts.frames} (${s.counts.frames_bad})`;
    $("sum-musings").textContent = String(Math.max(s.counts.musings, state.musings.size));
    tickLastHeard();
  }

  function tickLastHeard() {
    const s = state.summary;
    const heard = s && isoMs(s.last_heard);
    if (!Number.isFinite(heard)) { $("sum-heard").textContent = "never"; return; }
    const ago = Math.max(0, Math.round((Date.now() - state.clockOffsetMs - heard) / 1000));
    $("sum-heard").textContent = ago < 120 ? `${ago} s ago` : ago < 7200 ? `${Math.round(ago / 60)} min ago`
      : `${clock(heard)} UTC`;
  }

  // ------------------------------------------------------------------ rows in

  function addTelemetry(rows) {
    for (const r of rows) state.telemetry.set(r.id, r);
    if (rows.length) { mark("track", "charts", "summary"); refreshPredictionSoon(); }
    if (rows.length && state.flights.length > 1) refreshFlightsSoon(); // the panel's counts
  }

  function addRecords(rows) {
    for (const r of rows) {
      const key = `${r.boot}/${r.seq}`;
      if (r.kind === "musing") { state.musings.set(key, r); mark("musings", "summary"); refreshFlightsSoon(); }
      else if (r.kind === "health") { state.health.set(r.id, r); mark("charts", "summary"); }
      else if (r.kind === "image" && r.image) { state.images.set(key, r); mark("pictures"); }
    }
  }

  let linkTimer = null;
  function refreshLinkSoon() { // frames arrive several a second: ask for the statistics at most every 3 s
    if (linkTimer) return;
    linkTimer = setTimeout(async () => {
      try {
        const [summary, link] = await Promise.all([getJSON("/api/summary"), getJSON("/api/link")]);
        applySummary(summary);
        state.link = link;
        mark("link", "summary");
      } catch (err) { /* the event stream reports the connection */ }
      linkTimer = null;
    }, 3000);
  }

  let flightsTimer = null;
  function refreshFlightsSoon() { // another flight's database is written several times a second: every 3 s at most
    if (flightsTimer) return;
    flightsTimer = setTimeout(async () => {
      try {
        const [flights, conversation] = await Promise.all([getJSON("/api/flights"), getJSON("/api/conversation")]);
        applyFlights(flights, conversation);
      } catch (err) { /* the event stream reports the connection */ }
      flightsTimer = null;
    }, 3000);
  }

  function applyFlights(flights, conversation) {
    state.flights = flights;
    state.conversation = conversation;
    mark("flights", "track");
  }

  function applySummary(summary) {
    state.summary = summary;
    state.clockOffsetMs = Date.now() - isoMs(summary.server_time);
  }

  function setLive(on, text) {
    const live = $("live");
    live.textContent = text;
    live.className = `live ${on ? "on" : "off"}`;
  }

  function connect() {
    const c = state.cursor;
    const events = new EventSource(`/api/events?telemetry=${c.telemetry}&records=${c.records}`);
    const moved = (e) => { // each event's id is the cursor past it ("telemetry.records"): where a new feed starts
      const [telemetry, records] = e.lastEventId.split(".").map(Number);
      if (Number.isInteger(telemetry) && Number.isInteger(records)) state.cursor = { telemetry, records };
    };
    events.onopen = () => setLive(true, "live");
    events.onerror = () => {
      if (events.readyState !== EventSource.CLOSED) { setLive(false, "connection lost: reconnecting…"); return; }
      // Refused (503: every feed taken, it says for how long) or not a feed: the browser gives up on it
      // for good, so a new one is asked for after the server's Retry-After, spread so tabs do not come at once.
      setLive(false, "live feed refused: trying again…");
      setTimeout(connect, 5000 + Math.random() * 1000);
    };
    events.addEventListener("telemetry", (e) => { moved(e); addTelemetry(JSON.parse(e.data)); });
    events.addEventListener("record", (e) => { moved(e); addRecords(JSON.parse(e.data)); });
    events.addEventListener("outbox", (e) => StratoechoCommands.outboxEvent(JSON.parse(e.data)));
    events.addEventListener("link", refreshLinkSoon);
    events.addEventListener("flights", refreshFlightsSoon);
  }

  // ------------------------------------------------------------------ start

  async function start() {
    StratoechoCommands.start();
    setInterval(tickLastHeard, 1000);
    startMap();
    for (;;) {
      try {
        const summary = await getJSON("/api/summary");
        applySummary(summary);
        state.cursor = summary.cursor;
        const [telemetry, musings, health, images, link, outbox, prediction, flights, conversation] = await Promise.all([
          getJSON("/api/telemetry?since=0"), getJSON("/api/musings?since=0"),
          getJSON("/api/records?kind=health&since=0"), getJSON("/api/records?kind=image&since=0"),
          getJSON("/api/link"), getJSON("/api/outbox"), getJSON("/api/prediction"),
          getJSON("/api/flights"), getJSON("/api/conversation"),
        ]);
        applyFlights(flights, conversation);
        state.prediction = prediction;
        addTelemetry(telemetry);
        addRecords([...musings, ...health, ...images]);
        state.link = link;
        StratoechoCommands.drawOutbox(outbox);
        mark("track", "charts", "musings", "pictures", "link", "summary", "crew");
        break;
      } catch (err) {
        setLive(false, `cannot reach the ground station (${err.message}): trying again…`);
        await new Promise((done) => setTimeout(done, 3000));
      }
    }
    connect();
  }

  start();
})();
