// stratoecho ground dashboard: the track on a real map (Leaflet), every byte of it from this
// server: the libraries (/vendor/, installed from the npm registry with the station), the base
// map (/api/basemap: coastlines, lakes, borders, rivers, places from the station's packages),
// and the user's own tiles (/tiles/, serve --tiles) or tile server (serve --tile-url).
// Without the libraries the page keeps its plain SVG drawing of the track (app.js).
"use strict";

window.StratoechoMap = (() => {
  let map = null; // L.Map once started
  let marks = null; // L.LayerGroup: track, launch, burst, latest, landing, ellipse, station
  let base = null; // L.GeoJSON of the base map in view
  let baseRequest = null; // AbortController of the base map request in flight
  let fitted = false; // the view was fitted to the flight once
  let userMoved = false; // the crew panned or zoomed: the view is theirs from then on
  let fitting = false; // a zoom of our own, not the crew's
  let region = null; // the user's tiles: {bounds, min_zoom}; they name their own places there
  let fleet = null; // L.LayerGroup: the other flights this station follows (drawFlights)
  let fleetExtent = null; // their tracks' bounds, in the view the flight is fitted to
  let primaryName = null; // the primary's callsign, named at its latest position beside the others

  function loadScript(src) {
    return new Promise((resolve, reject) => {
      const node = document.createElement("script");
      node.src = src;
      node.onload = resolve;
      node.onerror = () => reject(new Error(`${src} did not load`));
      document.head.appendChild(node);
    });
  }

  function loadStyle(href) {
    const node = document.createElement("link");
    node.rel = "stylesheet";
    node.href = href;
    document.head.appendChild(node);
  }

  // Leaflet shows attributions as markup; a tile file's own text is shown as text.
  function asText(text) {
    const node = document.createElement("span");
    node.textContent = text;
    return node.innerHTML;
  }

  // A tooltip's content as a node holding text: Leaflet reads a string as markup, and a
  // callsign comes from the air (a HABpack sentence may name itself "<img onerror=...>").
  function textNode(text) {
    const node = document.createElement("span");
    node.textContent = text;
    return node;
  }

  // A label as a marker, right of its point (`below`: under it, where a station stands at the
  // launch site and both are named); the text is set as text, never markup.
  function textIcon(text, cls, below = false) {
    const node = document.createElement("span");
    node.textContent = text;
    return L.divIcon({ html: node, className: `map-label ${cls}`, iconSize: null, iconAnchor: below ? [-8, -8] : [-8, 8] });
  }

  // ------------------------------------------------------------------ the base map

  // Places come biggest first; one whose name would overlap a bigger one's is left out, so
  // the names a crew reads at a glance stay readable at every zoom.
  function thinPlaces(features, view) {
    const taken = [];
    return features.filter((f) => {
      if (f.properties.layer !== "place") return true;
      const [lon, lat] = f.geometry.coordinates;
      if (region && map.getZoom() >= region.min_zoom && region.bounds.contains([lat, lon])) return false;
      const p = map.latLngToContainerPoint([lat, onScreen(lon, view)]);
      const box = [p.x - 4, p.y - 16, p.x + 12 + 7 * f.properties.name.length, p.y + 4];
      if (taken.some((t) => box[0] < t[2] && t[0] < box[2] && box[1] < t[3] && t[1] < box[3])) return false;
      taken.push(box);
      return true;
    });
  }

  // A view may reach past 180° (a flight near the antimeridian): the base map comes in -180..180,
  // and each point is drawn on the copy of the world that is in view.
  const onScreen = (lon, view) => (lon < view.west - 1 ? lon + 360 : lon > view.east + 1 ? lon - 360 : lon);
  const wrap = (lon) => ((((lon + 180) % 360) + 360) % 360) - 180;

  function drawBase(collection, view) {
    if (base) base.remove();
    collection.features = thinPlaces(collection.features, view);
    base = L.geoJSON(collection, {
      pane: "basemap",
      interactive: false,
      coordsToLatLng: (c) => L.latLng(c[1], onScreen(c[0], view)),
      style: (f) => ({ className: `base ${f.properties.layer}`, interactive: false }),
      pointToLayer: (f, latlng) => L.marker(latlng, {
        pane: "basemap-labels", interactive: false, keyboard: false,
        icon: textIcon(f.properties.name, "place"),
      }),
    }).addTo(map);
  }

  async function loadBase() {
    if (baseRequest) baseRequest.abort(); // a newer view wins: an older answer is never drawn over it
    const request = baseRequest = new AbortController();
    map.getContainer().dataset.basemap = "loading"; // "drawn" once this view's base map is
    const b = map.getBounds();
    const view = { west: b.getWest(), east: b.getEast() };
    const whole = view.east - view.west >= 360;
    const west = whole ? -180 : wrap(view.west); // west > east: across the antimeridian
    const east = whole ? 180 : wrap(view.east) === -180 ? 180 : wrap(view.east);
    const clamp = (v) => Math.min(90, Math.max(-90, v));
    const bbox = [west, clamp(b.getSouth()), east, clamp(b.getNorth())].map((v) => v.toFixed(4)).join(",");
    try {
      const response = await fetch(`/api/basemap?bbox=${bbox}&zoom=${Math.round(map.getZoom())}`,
        { signal: request.signal });
      const collection = response.ok ? await response.json() : null;
      if (collection && request === baseRequest) {
        drawBase(collection, view);
        map.getContainer().dataset.basemap = "drawn";
      }
    } catch (err) { /* aborted by a newer view, or the station went away: the next move asks again */ }
  }

  // ------------------------------------------------------------------ start

  async function start(node) {
    const config = await (await fetch("/api/map", { cache: "no-store" })).json();
    if (!config.library) return false;
    loadStyle("/vendor/leaflet/leaflet.css");
    await loadScript("/vendor/leaflet/leaflet.js");
    if (config.tiles && config.tiles.kind === "vector") await loadScript("/vendor/protomaps-leaflet/protomaps-leaflet.js");
    node.hidden = false;
    map = L.map(node, { zoomSnap: 1, minZoom: 2, maxZoom: 18, worldCopyJump: true });
    map.attributionControl.setPrefix(false);
    // Bottom up: the base map, then the user's tiles over it (opaque where they have a tile,
    // so the base shows only beyond the installed region), then the flight.
    map.createPane("basemap").style.zIndex = 150;
    map.createPane("basemap-labels").style.zIndex = 450;
    if (config.basemap) map.attributionControl.addAttribution(asText(config.basemap.attribution));
    const tiles = config.tiles;
    if (tiles && tiles.bounds) {
      region = { min_zoom: tiles.min_zoom,
        bounds: L.latLngBounds([tiles.bounds[1], tiles.bounds[0]], [tiles.bounds[3], tiles.bounds[2]]) };
    }
    if (tiles && tiles.kind === "vector") {
      protomapsL.leafletLayer({
        url: tiles.url + ".mvt", flavor: "light", lang: "en", maxDataZoom: tiles.max_zoom,
        attribution: asText(tiles.attribution || "© OpenStreetMap contributors"),
        bounds: tiles.bounds ? [[tiles.bounds[1], tiles.bounds[0]], [tiles.bounds[3], tiles.bounds[2]]] : undefined,
      }).addTo(map);
    } else if (tiles) {
      L.tileLayer(tiles.url, {
        minNativeZoom: tiles.min_zoom, maxNativeZoom: tiles.max_zoom, attribution: asText(tiles.attribution || ""),
        bounds: tiles.bounds ? [[tiles.bounds[1], tiles.bounds[0]], [tiles.bounds[3], tiles.bounds[2]]] : undefined,
      }).addTo(map);
    }
    if (config.tile_url) {
      const host = new URL(config.tile_url.replace(/[{}]/g, "")).host;
      L.tileLayer(config.tile_url, { attribution: asText(`tiles: ${host}`) }).addTo(map);
    }
    L.control.scale({ imperial: false }).addTo(map);
    fleet = L.layerGroup().addTo(map);
    marks = L.layerGroup().addTo(map);
    if (config.basemap) map.on("moveend", loadBase);
    map.on("dragstart", () => { userMoved = true; });
    map.on("zoomstart", () => { if (!fitting) userMoved = true; });
    return true; // the view is set by the first draw: the flight, or the world while there is none
  }

  // ------------------------------------------------------------------ the flight

  // The 95 % ellipse as a polygon: semi-axes in metres, the major axis's bearing from north.
  function ellipse(lat, lon, e) {
    const points = [];
    const b = (e.bearing_deg * Math.PI) / 180;
    const mPerDegLon = 111320 * Math.cos((lat * Math.PI) / 180);
    for (let i = 0; i < 72; i++) {
      const t = (i / 72) * 2 * Math.PI;
      const along = e.semi_major_m * Math.cos(t), across = e.semi_minor_m * Math.sin(t);
      const north = along * Math.cos(b) - across * Math.sin(b);
      const east = along * Math.sin(b) + across * Math.cos(b);
      points.push([lat + north / 111320, lon + east / mPerDegLon]);
    }
    return points;
  }

  // rows: positions in flight order ({lat, lon, alt}); pred: /api/prediction or null.
  function draw(rows, pred) {
    if (!map) return;
    marks.clearLayers();
    map.getContainer().dataset.positions = rows.length; // what is drawn, for a reader of the page
    if (!rows.length) {
      if (!fitted) { // the world while nothing is heard, or the other flights already heard
        fitting = true;
        if (fleetExtent) map.fitBounds(fleetExtent.pad(0.1), { maxZoom: 13, animate: false });
        else map.setView([20, 0], 2);
        fitting = false;
      }
      return;
    }
    // Across the antimeridian the track goes on east or west rather than back round the world:
    // each longitude is taken on the side of the one before it, and so are the marks after it.
    let lastLon = rows[0].lon;
    const near = (lon) => lon + 360 * Math.round((lastLon - lon) / 360);
    rows = rows.map((r) => ({ ...r, lon: (lastLon = near(r.lon)) }));
    if (pred) {
      pred = { ...pred, lon: near(pred.lon), station: pred.station && { ...pred.station, lon: near(pred.station.lon) },
        stations: (pred.stations || []).map((s) => ({ ...s, lon: near(s.lon) })) };
    }
    const line = rows.map((r) => [r.lat, r.lon]);
    const extent = L.latLngBounds(line);
    L.polyline(line, { className: "track", interactive: false }).addTo(marks);
    const first = rows[0], last = rows[rows.length - 1];
    L.circleMarker(line[0], { radius: 6, className: "launch" }).bindTooltip(textNode("launch")).addTo(marks);
    L.marker(line[0], { icon: textIcon("launch", "flight"), interactive: false }).addTo(marks);
    if (pred && pred.burst_seen) {
      const top = rows.reduce((a, r) => (r.alt > a.alt ? r : a), first);
      L.circleMarker([top.lat, top.lon], { radius: 5, className: "burst" }).addTo(marks);
      L.marker([top.lat, top.lon], { icon: textIcon(`burst ${top.alt} m`, "flight"), interactive: false }).addTo(marks);
    }
    L.circleMarker([last.lat, last.lon], { radius: 7, className: "latest" }).addTo(marks);
    L.marker([last.lat, last.lon], { icon: textIcon(primaryName ? `${primaryName} ${last.alt} m` : `${last.alt} m`,
      "flight"), interactive: false }).addTo(marks);
    if (pred && pred.phase !== "landed") {
      const ring = ellipse(pred.lat, pred.lon, pred.ellipse);
      L.polygon(ring, { className: "landing-ellipse", interactive: false }).addTo(marks);
      L.polyline([[last.lat, last.lon], [pred.lat, pred.lon]], { className: "to-landing", interactive: false }).addTo(marks);
      L.circleMarker([pred.lat, pred.lon], { radius: 6, className: "landing" }).addTo(marks);
      L.marker([pred.lat, pred.lon], { icon: textIcon("landing", "flight"), interactive: false }).addTo(marks);
      extent.extend(L.latLngBounds(ring));
    }
    const stations = [...(pred && pred.station ? [{ ...pred.station, name: "station" }] : []),
      ...(pred && pred.stations ? pred.stations : [])];
    for (const s of stations) { // this station (serve --station) and the network's, by name
      const at = [s.lat, s.lon];
      L.circleMarker(at, { radius: 6, className: "station" }).addTo(marks);
      L.marker(at, { icon: textIcon(s.name, "flight", true), interactive: false }).addTo(marks);
      extent.extend(at);
    }
    if (fleetExtent) extent.extend(fleetExtent);
    // The view follows the flight until the crew moves it; it then stays where they put it.
    if (!userMoved && (!fitted || !map.getBounds().contains(extent))) {
      fitting = true;
      map.fitBounds(extent.pad(0.1), { maxZoom: 13, animate: false });
      fitting = false;
      fitted = true;
    }
  }

  // The other flights (/api/flights, the primary first, which draw() draws from its live rows):
  // each track in its own colour (colour(i): a class of style.css) with its callsign at its
  // latest position. draw() then fits the view to them all.
  function drawFlights(flights, colour) {
    if (!map) return;
    fleet.clearLayers();
    fleetExtent = null;
    primaryName = flights.length > 1 ? flights[0].callsign : null;
    flights.forEach((f, i) => {
      if (i === 0 || !f.track.length) return;
      let lastLon = f.track[0].lon; // across the antimeridian, as draw() does
      const line = f.track.map((p) => [p.lat, (lastLon = p.lon + 360 * Math.round((lastLon - p.lon) / 360))]);
      const last = line[line.length - 1], cls = colour(i);
      L.polyline(line, { className: `track ${cls}`, interactive: false }).addTo(fleet);
      L.circleMarker(last, { radius: 6, className: `latest ${cls}` }).bindTooltip(textNode(f.callsign)).addTo(fleet);
      L.marker(last, { icon: textIcon(`${f.callsign} ${f.track[f.track.length - 1].alt} m`, "flight"),
        interactive: false }).addTo(fleet);
      fleetExtent = fleetExtent ? fleetExtent.extend(L.latLngBounds(line)) : L.latLngBounds(line);
    });
  }

  return { start, draw, drawFlights, get ready() { return map !== null; } };
})();
