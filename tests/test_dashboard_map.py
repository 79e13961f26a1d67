"""The crew's map, in a real headless Chromium with every name but 127.0.0.1 unresolvable: the
station's own base map (land, borders, rivers, places) under the track, launch, latest position,
the predicted landing with its ellipse and the station, at laptop and phone sizes; a user's
MBTiles drawn over the base; and not one request leaving the machine. Over plain HTTP: the map's
routes refuse what is not theirs."""

from __future__ import annotations

import io
import json
import sqlite3
import threading
import urllib.error
import urllib.request

import pytest
from PIL import Image

from groundstation import predict as P
from groundstation.maps.tiles import open_tiles
from groundstation.web import serve
from groundstation.web.maps import MapLayers
from tests.test_dashboard import browser, browser_only, build_ground_db, js, open_page, texts, wait  # noqa: F401
from tests.test_dashboard_layout import LAPTOP, PHONE
from tests.test_map_region import server as planet_server  # noqa: F401 (the planet over HTTP, with Range)
from tests.test_map_tiles import write_pmtiles
from tests.vector_tiles import chase_tile

STATION = (52.1, 0.0, 80.0)  # the flight of build_ground_db rises from 52.2 N, 0.12 E, drifting north-east
CHASE = P.Chase(burst_alt_m=12_000, home=STATION)


@pytest.fixture
def ground_db(tmp_path):
    db = tmp_path / "ground.db"
    build_ground_db(db)
    return db


def start(db, **layers):
    stop = threading.Event()
    server = serve(db, "127.0.0.1", 0, stop, chase=CHASE, map_layers=MapLayers(**layers) if layers else None)
    server.stop_event = stop
    return server


def get(server, path: str) -> tuple[int, dict, bytes]:
    try:
        with urllib.request.urlopen(server.url.rstrip("/") + path, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def mbtiles(path, zooms=range(6, 10), around=(52.3, 0.3)) -> set[tuple[int, int, int]]:
    """A raster MBTiles of plain orange tiles around `around`: what a user's tile file would be."""
    from groundstation.maps.region import tiles_in_bbox

    bbox = (around[1] - 0.6, around[0] - 0.4, around[1] + 0.6, around[0] + 0.4)
    png = io.BytesIO()
    Image.new("RGB", (256, 256), (255, 140, 0)).save(png, format="PNG")
    made = set()
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE metadata (name TEXT, value TEXT)")
        db.execute("CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER, tile_row INTEGER, tile_data BLOB)")
        db.executemany("INSERT INTO metadata VALUES (?, ?)", [
            ("name", "test region"), ("format", "png"), ("minzoom", str(min(zooms))), ("maxzoom", str(max(zooms))),
            ("bounds", ",".join(map(str, bbox))), ("attribution", "© test tiles")])
        for z in zooms:
            for x, y in tiles_in_bbox(bbox, z):
                db.execute("INSERT INTO tiles VALUES (?, ?, ?, ?)", (z, x, (1 << z) - 1 - y, png.getvalue()))
                made.add((z, x, y))
    return made


# --------------------------------------------------------------------------- plain HTTP


def test_the_map_routes_serve_their_own_and_refuse_the_rest(ground_db, tmp_path):
    server = start(ground_db)
    try:
        status, _, body = get(server, "/api/map")
        config = json.loads(body)
        assert status == 200 and config["library"] is True and config["tiles"] is None
        assert "GSHHG" in config["basemap"]["attribution"] and "GeoNames" in config["basemap"]["attribution"]
        status, headers, body = get(server, "/api/basemap?bbox=-0.5,51.9,0.9,52.6&zoom=9")
        layers = {f["properties"]["layer"] for f in json.loads(body)["features"]}
        assert status == 200 and {"land", "place"} <= layers
        names = {f["properties"].get("name") for f in json.loads(body)["features"]}
        assert "Cambridge" in names
        for bad in ("bbox=1,2,3&zoom=9", "bbox=a,b,c,d&zoom=9", "bbox=0,53,1,52&zoom=9", "bbox=0,52,1,53&zoom=40"):
            status, _, body = get(server, "/api/basemap?" + bad)
            assert status == 400 and json.loads(body)["error"], bad
        status, headers, body = get(server, "/vendor/leaflet/leaflet.js")
        assert status == 200 and headers["Content-Type"].startswith("text/javascript") and b"1.9.4" in body[:400]
        for path in ("/vendor/../server.py", "/vendor/leaflet/../../server.py", "/vendor/MANIFEST.json",
                     "/tiles/3/1/1", "/tiles/x"):
            assert get(server, path)[0] == 404, path
    finally:
        server.stop_event.set()


def test_a_users_tile_file_is_served_by_tile_and_a_tile_server_is_let_through_the_policy(ground_db, tmp_path):
    made = mbtiles(tmp_path / "region.mbtiles")
    z, x, y = sorted(made)[0]
    server = start(ground_db, tiles=open_tiles(tmp_path / "region.mbtiles"),
                   tile_url="http://127.0.0.1:9/osm/{z}/{x}/{y}.png")
    try:
        config = json.loads(get(server, "/api/map")[2])
        assert config["tiles"]["kind"] == "raster" and config["tiles"]["max_zoom"] == 9
        assert config["tile_url"] == "http://127.0.0.1:9/osm/{z}/{x}/{y}.png"
        status, headers, body = get(server, f"/tiles/{z}/{x}/{y}")
        assert status == 200 and headers["Content-Type"] == "image/png" and body.startswith(b"\x89PNG")
        assert get(server, f"/tiles/{z}/{x}/{(y + 50) % (1 << z)}")[0] == 404  # outside the region
        assert get(server, f"/tiles/{z}/{1 << z}/0")[0] == 400  # not a tile at all
        csp = get(server, "/")[1]["Content-Security-Policy"]
        assert "img-src 'self' data: http://127.0.0.1:9;" in csp and "connect-src 'self';" in csp
    finally:
        server.stop_event.set()


# --------------------------------------------------------------------------- Chromium


TRACK_BLUE, LAND, SEA = (0x0B, 0x63, 0xB6), (0xF4, 0xF1, 0xE8), (0xCF, 0xE3, 0xEF)  # style.css


def close_to(pixel, colour, tolerance: int = 40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, colour))


def map_state(driver) -> dict:
    return js(driver, """
        const q = (s) => document.querySelectorAll(s);
        const pane = (n) => Number(getComputedStyle(document.querySelector('.leaflet-' + n + '-pane')).zIndex);
        const box = (e) => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
        const ellipse = document.querySelector('#map path.landing-ellipse');
        return {
          land: q('#map .leaflet-basemap-pane path.land').length,
          places: [...q('#map .map-label.place')].map(e => e.textContent),
          track: q('#map .leaflet-overlay-pane path.track').length,
          marks: [...q('#map path.launch, #map path.latest, #map path.landing, #map path.station')]
                   .map(e => e.getAttribute('class').split(' ')[0]).sort(),
          ellipse: ellipse ? box(ellipse) : null,
          map: box(document.getElementById('map')),
          svgHidden: getComputedStyle(document.getElementById('track')).display === 'none',
          panes: {basemap: pane('basemap'), tile: pane('tile'), overlay: pane('overlay')},
          positions: Number(document.getElementById('map').dataset.positions || 0),
          basemap: document.getElementById('map').dataset.basemap,
        };""")


def wait_for_map(driver):
    wait(driver, lambda d: (lambda s: s["land"] and s["track"] and s["ellipse"] and s["basemap"] == "drawn")(map_state(d)),
         "the map never showed the base map, the track and the landing ellipse")
    return map_state(driver)


def only_this_server(driver, server) -> None:
    base = server.url.rstrip("/")
    urls = js(driver, "return performance.getEntries().filter(e => e.name.includes('://')).map(e => e.name)")
    assert [u for u in urls if not u.startswith(base + "/")] == []
    problems = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert problems == []  # no refused resource, no policy violation, no script error


@browser_only
@pytest.mark.parametrize("size,mobile", [(LAPTOP, False), (PHONE, True)], ids=["laptop", "phone"])
def test_in_chromium_the_base_map_lies_under_the_track_the_landing_and_its_ellipse(browser, ground_db, size, mobile):  # noqa: F811
    server = start(ground_db)
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": size[0], "height": size[1], "deviceScaleFactor": 1, "mobile": mobile})
    try:
        browser.get_log("browser")  # start the log afresh
        open_page(browser, server)
        s = wait_for_map(browser)
        assert s["svgHidden"] and s["positions"] == 29
        assert s["marks"] == ["landing", "latest", "launch", "station"]
        assert s["panes"]["basemap"] < s["panes"]["tile"] < s["panes"]["overlay"]  # the flight on top
        # the places around the flight are named, none written over another
        boxes = js(browser, "return [...document.querySelectorAll('#map .map-label.place')].map(e => {"
                            "const r = e.firstChild.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; })")
        assert not [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:]
                    if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]]
        assert {"Cambridge", "Norwich", "Peterborough", "Ipswich"} & set(s["places"])
        # the whole ellipse is in view, on the map, not cut off by it
        (left, t, r, b), (ml, mt, mr, mb) = s["ellipse"], s["map"]
        assert ml <= left < r <= mr and mt <= t < b <= mb, (s["ellipse"], s["map"])
        assert mr - ml >= (0.55 if not mobile else 0.85) * size[0]
        # along the track a crew sees its blue, drawn over the land's colour where no marker covers it
        # (on the phone's wider view the markers at its two ends cover all of its few pixels)
        points = js(browser, """
            const p = document.querySelector('#map path.track'); const n = p.getTotalLength(), out = [];
            for (let d = 0; d <= n; d += 1) {
              const m = p.getPointAtLength(d); const at = new DOMPoint(m.x, m.y).matrixTransform(p.getScreenCTM());
              out.push([Math.round(at.x), Math.round(at.y)]); }
            return out""")
        shot = Image.open(io.BytesIO(browser.get_screenshot_as_png())).convert("RGB")
        blue = [xy for xy in points if close_to(shot.getpixel(tuple(xy)), TRACK_BLUE)]
        assert len(blue) >= 3 or mobile, points
        corner = shot.getpixel((round(s["map"][0]) + 5, round(s["map"][3]) - 60))  # bottom left, above the scale
        assert close_to(corner, LAND) or close_to(corner, SEA), corner  # the base map, not a blank grid
        only_this_server(browser, server)
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        server.stop_event.set()


@browser_only
def test_in_chromium_a_users_tiles_are_drawn_over_the_base_map(browser, ground_db, tmp_path):  # noqa: F811
    mbtiles(tmp_path / "region.mbtiles")
    server = start(ground_db, tiles=open_tiles(tmp_path / "region.mbtiles"))
    try:
        browser.get_log("browser")
        open_page(browser, server)
        wait_for_map(browser)
        wait(browser, lambda d: js(d, "return [...document.querySelectorAll('#map img.leaflet-tile')]"
                                      ".filter(i => i.complete && i.naturalWidth === 256).length") > 0,
             "no tile of the user's file was drawn")
        tiles = js(browser, "return [...document.querySelectorAll('#map img.leaflet-tile')].map(i => i.src)")
        assert all("/tiles/" in t for t in tiles)
        assert "© test tiles" in " ".join(texts(browser, "#map .leaflet-control-attribution"))
        # inside the region the tiles name the places: the base map's names are not written over them
        places = texts(browser, "#map .map-label.place")
        assert "Cambridge" not in places and places, places
        only_this_server(browser, server)
    finally:
        server.stop_event.set()


@browser_only
def test_in_chromium_without_the_map_library_the_track_is_still_drawn(browser, ground_db, tmp_path):  # noqa: F811
    server = start(ground_db, vendor_dir=tmp_path / "no-libraries")
    try:
        browser.get_log("browser")
        open_page(browser, server)
        wait(browser, lambda d: js(d, "return document.querySelectorAll('#track polyline.track').length") == 1,
             "no track drawing")
        wait(browser, lambda d: js(d, "return document.querySelectorAll('#track ellipse.landing-ellipse').length") == 1,
             "no landing ellipse on the drawing")
        assert js(browser, "return document.querySelectorAll('#track rect.station').length") == 1
        assert js(browser, "return document.getElementById('map').hidden") is True
        assert js(browser, "return typeof window.L") == "undefined"
        only_this_server(browser, server)
    finally:
        server.stop_event.set()


PLANET_BOX = (-0.6, 51.8, 1.6, 53.2)  # west, south, east, north: the flight, its landing and the station


@pytest.fixture(scope="module")
def planet(tmp_path_factory):
    """A published planet as far as this test needs one: Protomaps-schema vector tiles (land and
    two roads in each) at zooms 0..10 over PLANET_BOX."""
    from groundstation.maps.region import tiles_in_bbox

    tile = chase_tile()
    tiles = {(z, x, y): tile for z in range(11) for x, y in tiles_in_bbox(PLANET_BOX, z)}
    return write_pmtiles(tmp_path_factory.mktemp("planet") / "planet.pmtiles", tiles,
                         metadata={"name": "planet", "attribution": "© OpenStreetMap"}, bounds=PLANET_BOX)


@browser_only
def test_in_chromium_a_region_fetched_at_home_shows_its_roads(browser, ground_db, tmp_path, planet_server):  # noqa: F811
    """Home: `map fetch` cuts the chase region out of a planet by range requests. The field:
    `serve --tiles` hands its vector tiles to protomaps-leaflet, which draws land and roads."""
    from groundstation.__main__ import main

    region = tmp_path / "region.pmtiles"
    assert main(["map", "fetch", "--source", planet_server.url, "--around", "52.3", "0.4", "--radius-km", "40",
                 "--max-zoom", "10", "-o", str(region)]) == 0
    server = start(ground_db, tiles=open_tiles(region))
    try:
        browser.get_log("browser")
        open_page(browser, server)
        wait_for_map(browser)
        # down a column of a tile painted from the region's data: the land, crossed by a road in
        # another colour (protomaps-leaflet paints a display tile from the data tile a zoom above,
        # so the road across the data tile's middle lies on a display tile's edge)
        column = """return [...document.querySelectorAll('#map canvas.leaflet-tile')].filter(c => c.width > 0).map(c => {
                      const g = c.getContext('2d'), out = {};
                      for (let y = 0; y < c.height; y++) {
                        const k = [...g.getImageData(Math.floor(c.width / 4), y, 1, 1).data].join();
                        out[k] = (out[k] || 0) + 1; }
                      return out; })"""
        wait(browser, lambda d: any(len(c) >= 2 and max(c.values()) >= 0.9 * sum(c.values()) for c in js(d, column)),
             "no road was drawn over the land from the region's tiles")
        urls = js(browser, "return performance.getEntries().map(e => e.name).filter(u => u.includes('/tiles/'))")
        assert urls and all(u.endswith(".mvt") for u in urls)
        only_this_server(browser, server)
    finally:
        server.stop_event.set()


# --------------------------------------------------------------------------- every station of a network


def test_listen_keeps_where_its_station_is(tmp_path, capsys):
    from groundstation.__main__ import main
    from groundstation.store import GroundReader

    air = tmp_path / "air.hex"
    air.write_text("")
    db = tmp_path / "g.db"
    assert main(["listen", "--replay", str(air), "--db", str(db), "--station", "hill",
                 "--station-position", "52.1", "0.0", "80", "--quiet"]) == 0
    with GroundReader.open(db) as reader:
        assert [(s.name, s.lat, s.lon, s.alt_m) for s in reader.link.stations()] == [("hill", 52.1, 0.0, 80.0)]
    assert main(["listen", "--replay", str(air), "--db", str(db), "--station-position", "95", "0"]) == 2
    assert "--station-position 95 0: latitude is -90..90" in capsys.readouterr().err


@browser_only
def test_in_chromium_the_crew_reads_distances_from_every_station(browser, ground_db):  # noqa: F811
    from groundstation.store import Store

    with Store(ground_db) as store:  # as the aggregator keeps what the network's stations said
        store.set_station("harbour", 52.9, 1.3, 4.0)
        store.set_station("<b>hill</b>", 52.3, 0.5, 120.0)  # a name from the network is text, never markup
    server = start(ground_db)
    try:
        status, _, body = get(server, "/api/prediction")
        stations = {s["name"]: s for s in json.loads(body)["stations"]}
        assert set(stations) == {"harbour", "<b>hill</b>"}
        assert stations["harbour"]["balloon"]["elevation_deg"] > 0 and stations["harbour"]["landing"]["distance_m"] > 0
        open_page(browser, server)
        wait(browser, lambda d: len(texts(d, "#crew-stations tbody tr")) == 2, "no station rows for the crew")
        rows = js(browser, "return [...document.querySelectorAll('#crew-stations tbody tr')]"
                           ".map(r => [...r.cells].map(c => c.textContent))")
        assert [r[0] for r in rows] == ["<b>hill</b>", "harbour"] and all(r[1].endswith("°") for r in rows)
        assert js(browser, "return document.querySelectorAll('#crew-stations b').length") == 0
        wait_for_map(browser)
        labels = texts(browser, "#map .map-label.flight")
        assert {"station", "harbour", "<b>hill</b>"} <= set(labels)
    finally:
        server.stop_event.set()


@browser_only
def test_in_chromium_a_flight_across_the_antimeridian_stays_in_one_piece(browser, tmp_path):  # noqa: F811
    """East of New Zealand, from 179.6° E over 180° to the Chatham Islands: the track goes on
    east rather than back round the world, and the islands' land is drawn beside it."""
    from datetime import datetime, timedelta, timezone

    from groundstation.store import Store
    from stratoecho import wire

    db = tmp_path / "ground.db"
    t0 = datetime(2026, 3, 1, 22, 0, tzinfo=timezone.utc)
    with Store(db) as store:
        for seq in range(30):
            when = t0 + timedelta(seconds=60 * seq)
            lon = 179.6 + 0.12 * seq
            lon = lon - 360 if lon > 180 else lon
            store.add_telemetry(wire.Telemetry("STRATO1", seq, when.strftime("%H:%M:%S"), -43.9, lon, 200 + 300 * seq,
                                               9, 10.0, 900.0, 4000, 1), received_at=when.isoformat())
    stop = threading.Event()
    server = serve(db, "127.0.0.1", 0, stop, chase=P.Chase(burst_alt_m=12_000))
    try:
        open_page_without_musings(browser, server)
        wait(browser, lambda d: (lambda s: s["land"] and s["track"] and s["basemap"] == "drawn")(map_state(d)),
             "no land or track near the antimeridian")
        s = map_state(browser)
        track = js(browser, "const r = document.querySelector('#map path.track').getBoundingClientRect();"
                            "return [r.left, r.right]")
        ml, mr = s["map"][0], s["map"][2]
        assert ml <= track[0] < track[1] <= mr and track[1] - track[0] < 0.9 * (mr - ml), (track, s["map"])
        (left, _, right, _) = s["ellipse"]  # the landing's ellipse too: on this side, not round the world
        assert ml <= left < right <= mr, (s["ellipse"], s["map"])
        lands = js(browser, "return [...document.querySelectorAll('#map path.land')].map(p => {"
                            "const r = p.getBoundingClientRect(); return [r.left, r.right]; })")
        assert any(ml <= left and right <= mr + 1 for left, right in lands), lands  # the islands, on this copy
    finally:
        stop.set()


def open_page_without_musings(driver, server) -> None:
    driver.get(server.url)
    wait(driver, lambda d: js(d, "return document.getElementById('map').dataset.positions") not in (None, "0"),
         "the map never drew the flight")
