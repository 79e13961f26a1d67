"""Installing a region at home: the box around a place, the web-mercator tiles it covers, and the
fetch that cuts those tiles out of a PMTiles "planet" by coalesced range requests (here a small
planet served by a local HTTP server that can also ignore Range, fail, or vanish) into a new
archive holding exactly the box's tiles, never leaving a half file; and `map fetch|info`."""

from __future__ import annotations

import argparse
import random
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from pmtiles.reader import MmapSource, all_tiles
from pmtiles.tile import zxy_to_tileid

from groundstation.maps import region
from groundstation.maps.cli import add_map_parser
from groundstation.maps.region import (
    RegionError,
    check_bbox,
    count_tiles,
    fetch_region,
    region_bbox,
    tiles_in_bbox,
)
from groundstation.maps.tiles import open_tiles
from stratoecho.geo import distance_m
from tests.test_map_tiles import RED, vector_tile, write_mbtiles, write_pmtiles

SOURCE_BOX = (-2.0, 50.0, 2.0, 53.0)  # where the test planet has zooms 7..12
BOX = (-0.6, 51.2, 0.4, 51.8)  # what the tests install


def sea(z: int, x: int, y: int) -> bool:
    return (x + y) % 3 == 0  # one shared tile, as a planet's oceans are


@pytest.fixture(scope="module")
def planet(tmp_path_factory) -> Path:
    """A PMTiles planet: the world at zooms 0..6 (a third of it sea), SOURCE_BOX at 7..12. Big
    enough that its root directory points to leaf directories, as a real planet's does."""
    rng = random.Random(7)
    tiles = {}
    for z in range(7):
        for x in range(1 << z):
            for y in range(1 << z):
                tiles[(z, x, y)] = vector_tile(0, 0, 0) if sea(z, x, y) else vector_tile(z, x, y, rng)
    for z in range(7, 13):
        tiles.update({(z, x, y): vector_tile(z, x, y, rng) for x, y in tiles_in_bbox(SOURCE_BOX, z)})
    return write_pmtiles(tmp_path_factory.mktemp("planet") / "planet.pmtiles", tiles,
                         metadata={"name": "planet", "attribution": "© OpenStreetMap", "vector_layers": []})


@pytest.fixture
def server(planet):
    """The planet over HTTP with Range support. `mode`: "range", "ignore" (200 and the whole
    file), "flaky" (`fail` 503s first), "vanish" (404 after `fail` good answers)."""
    data = planet.read_bytes()
    state = {"mode": "range", "fail": 0, "seen": []}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            state["seen"].append(self.headers.get("Range"))
            assert "stratoecho" in self.headers["User-Agent"]
            if state["mode"] == "flaky" and state["fail"] > 0 or state["mode"] == "vanish" and state["fail"] <= 0:
                state["fail"] -= 1
                return self.answer(503 if state["mode"] == "flaky" else 404, b"no")
            state["fail"] -= 1
            match = re.fullmatch(r"bytes=(\d+)-(\d+)", self.headers.get("Range", ""))
            if state["mode"] == "ignore" or match is None:
                return self.answer(200, data)
            start, end = int(match[1]), min(int(match[2]), len(data) - 1)
            self.answer(206, data[start:end + 1], {"Content-Range": f"bytes {start}-{end}/{len(data)}"})

        def answer(self, status, body, headers=None):
            self.send_response(status)
            for name, value in {"Content-Length": str(len(body)), "ETag": '"v1"', **(headers or {})}.items():
                self.send_header(name, value)
            self.end_headers()
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client hung up: what a refused 200 should look like

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    httpd.state, httpd.url = state, f"http://127.0.0.1:{httpd.server_address[1]}/planet.pmtiles"
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch):
    monkeypatch.setattr(region._HttpSource._fetch.retry, "sleep", lambda s: None)  # tenacity's wait, not ours


def installed(path: Path) -> dict[tuple[int, int, int], bytes]:
    """Every tile of an archive, read by the pmtiles package's own walk (not by our reader)."""
    with path.open("rb") as f:
        return dict(all_tiles(MmapSource(f)))


def expected(planet: Path, box, zooms) -> dict[tuple[int, int, int], bytes]:
    """The planet's tiles in the box (those it has), read with tiles.py."""
    with open_tiles(planet) as archive:
        found = {(z, x, y): archive.tile(z, x, y) for z in zooms for x, y in tiles_in_bbox(box, z)}
    return {zxy: tile[0] for zxy, tile in found.items() if tile is not None}


# --- the box and its tiles -------------------------------------------------------------------

@pytest.mark.parametrize("lat, lon, km", [(51.5, -0.1, 150), (0, 30, 20), (-60, 120, 300), (70, 0, 50)])
def test_region_bbox_holds_the_circle(lat, lon, km):
    w, s, e, n = region_bbox(lat, lon, km)
    for edge in (distance_m(lat, lon, lat, w), distance_m(lat, lon, lat, e),
                 distance_m(lat, lon, n, lon), distance_m(lat, lon, s, lon)):
        assert km * 1000 <= edge <= km * 1000 * 1.02


def test_region_bbox_across_the_antimeridian_and_over_a_pole():
    w, s, e, n = region_bbox(0, 179.5, 150)
    assert w > e and w < 179.5 and e > -180  # crosses: west is east of east
    assert sorted({x for x, _ in tiles_in_bbox((w, s, e, n), 3)}) == [0, 7]
    assert list(tiles_in_bbox((w, s, e, n), 0)) == [(0, 0)]  # both sides in one tile: once
    assert count_tiles((170, -5, -170, 5), 0, 6) == sum(len(set(tiles_in_bbox((170, -5, -170, 5), z))) for z in range(7))
    assert region_bbox(89, 0, 200)[0::2] == (-180, 180)
    assert region_bbox(84, 0, 500)[3] == pytest.approx(85.0511, abs=1e-3)  # web mercator stops there
    with pytest.raises(ValueError):
        region_bbox(91, 0, 10)


def test_tiles_in_bbox_are_the_web_mercator_tiles():
    assert list(tiles_in_bbox((-180, -85, 180, 85), 0)) == [(0, 0)]
    assert list(tiles_in_bbox((-0.1277, 51.5073, -0.1276, 51.5074), 10)) == [(511, 340)]  # London
    assert set(tiles_in_bbox((-10, -10, 10, 10), 1)) == {(0, 0), (0, 1), (1, 0), (1, 1)}
    for z in range(0, 15, 3):
        assert count_tiles(BOX, z, z) == len(set(tiles_in_bbox(BOX, z)))
    assert count_tiles(BOX, 0, 12) == sum(len(list(tiles_in_bbox(BOX, z))) for z in range(13))


@pytest.mark.parametrize("bad", [(1, 2, 3), (0, 52, 1, 51), (1, 50, 1, 51), (-200, 0, 0, 1), ("a", 0, 1, 1)])
def test_check_bbox_refuses_what_is_no_box(bad):
    with pytest.raises(ValueError, match="box"):
        check_bbox(bad)


# --- fetching ---------------------------------------------------------------------------------

def test_fetch_over_http_installs_exactly_the_box(planet, server, tmp_path):
    out = tmp_path / "region.pmtiles"
    report = fetch_region(server.url, out, BOX, 0, 12)
    want = expected(planet, BOX, range(13))
    assert installed(out) == want
    assert report.tiles == len(want) == count_tiles(BOX, 0, 12) and report.tiles_absent == 0
    # Requests: one for the header and root, one or two for leaves, then coalesced tile ranges.
    assert report.requests == len(server.state["seen"])
    print(f"\n{report.tiles} tiles in {report.requests} requests, {report.bytes_fetched} bytes read "
          f"for {report.tile_bytes} bytes of tiles")
    assert report.requests * 10 < report.tiles
    with open_tiles(out) as archive:
        info = archive.info
        assert (info.kind, info.format, info.min_zoom, info.max_zoom) == ("vector", "pbf", 0, 12)
        assert info.bounds == pytest.approx(BOX, abs=1e-7)
        assert info.attribution == "© OpenStreetMap" and info.name == "planet"
        assert archive.tile(12, *next(tiles_in_bbox((1.5, 52.5, 1.6, 52.6), 12))) is None  # the planet's, not ours
    assert not (tmp_path / "region.pmtiles.tmp").exists()


def test_without_coalescing_a_request_goes_per_tile_run(planet, server, tmp_path):
    coalesced = fetch_region(server.url, tmp_path / "a.pmtiles", BOX, 9, 12)
    exact = fetch_region(planet, tmp_path / "b.pmtiles", BOX, 9, 12, gap_bytes=-1)  # never merge two tiles
    print(f"\n{coalesced.tiles} tiles: {coalesced.requests} requests with 64 KB gaps merged, {exact.requests} without")
    assert exact.requests > coalesced.tiles > 10 * coalesced.requests
    assert installed(tmp_path / "a.pmtiles") == installed(tmp_path / "b.pmtiles")


def test_fetch_from_a_local_file_and_beyond_the_sources_zooms(planet, tmp_path):
    out = tmp_path / "region.pmtiles"
    edge = (1.5, 52.5, 2.5, 53.5)  # half outside the planet's zooms 7..12
    report = fetch_region(str(planet), out, edge, 5, 14, progress=True)
    assert (report.min_zoom, report.max_zoom) == (5, 12)  # the source stops at 12
    assert report.tiles_absent > 0
    want = expected(planet, edge, range(5, 13))
    assert installed(out) == want and report.tiles == len(want)


def test_sea_tiles_are_fetched_once_and_stored_once(planet, tmp_path):
    out = tmp_path / "sea.pmtiles"
    report = fetch_region(planet, out, (-180, -85, 180, 85), 0, 6)
    assert installed(out) == expected(planet, (-180, -85, 180, 85), range(7))
    assert report.bytes_written < report.tile_bytes + 20_000


def test_a_box_across_the_antimeridian(planet, tmp_path):
    box = (170.0, -5.0, -170.0, 5.0)
    report = fetch_region(planet, tmp_path / "fiji.pmtiles", box, 0, 6)
    assert installed(tmp_path / "fiji.pmtiles") == expected(planet, box, range(7))
    assert report.tiles == count_tiles(box, 0, 6)
    with open_tiles(tmp_path / "fiji.pmtiles") as archive:
        assert archive.info.bounds == pytest.approx(box) and archive.info.center[0] in (180, -180)


def test_a_server_that_ignores_range_is_refused_after_one_request(server, tmp_path):
    server.state["mode"] = "ignore"
    with pytest.raises(RegionError, match="answered 200 to a range request .* whole file"):
        fetch_region(server.url, tmp_path / "x.pmtiles", BOX, 0, 10)
    assert len(server.state["seen"]) == 1
    assert list(tmp_path.iterdir()) == []


def test_server_errors_are_retried(planet, server, tmp_path):
    server.state.update(mode="flaky", fail=2)
    report = fetch_region(server.url, tmp_path / "x.pmtiles", BOX, 0, 8)
    assert server.state["seen"][:3] == ["bytes=0-16383"] * 3
    assert report.requests == len(server.state["seen"])
    assert installed(tmp_path / "x.pmtiles") == expected(planet, BOX, range(9))


def test_a_vanishing_server_leaves_no_file(server, tmp_path):
    out = tmp_path / "x.pmtiles"
    out.write_bytes(b"the region installed last week")
    server.state.update(mode="vanish", fail=3)
    with pytest.raises(RegionError, match="HTTP 404"):
        fetch_region(server.url, out, BOX, 0, 12)
    assert len(server.state["seen"]) == 4  # a 404 is not retried
    assert out.read_bytes() == b"the region installed last week"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.pmtiles"]


def test_an_interrupted_fetch_leaves_no_file(planet, tmp_path, monkeypatch):
    written = []

    def interrupt(self, tile_id, data):
        written.append(tile_id)
        if len(written) > 20:
            raise KeyboardInterrupt

    monkeypatch.setattr(region.Writer, "write_tile", interrupt)
    with pytest.raises(KeyboardInterrupt):
        fetch_region(planet, tmp_path / "x.pmtiles", BOX, 0, 12)
    assert list(tmp_path.iterdir()) == []


def test_absurd_requests_are_refused_before_any_request(server, tmp_path):
    with pytest.raises(RegionError, match="lower --max-zoom .* or --radius-km"):
        fetch_region(server.url, tmp_path / "x.pmtiles", region_bbox(50, 10, 300), 0, 15)
    assert server.state["seen"] == []


def test_dry_run_reads_directories_only(server, tmp_path):
    report = fetch_region(server.url, tmp_path / "x.pmtiles", BOX, 0, 12, dry_run=True)
    assert report.tiles == count_tiles(BOX, 0, 12) and report.bytes_written == 0
    assert report.bytes_fetched < report.tile_bytes
    assert list(tmp_path.iterdir()) == []


def test_a_source_that_is_not_pmtiles_is_refused(tmp_path):
    bad = tmp_path / "planet.pmtiles"
    bad.write_bytes(b"nothing here" * 100)
    with pytest.raises(Exception, match="planet.pmtiles: not a PMTiles v3 header"):
        fetch_region(bad, tmp_path / "x.pmtiles", BOX, 0, 5)
    with pytest.raises(RegionError, match="missing.pmtiles: No such file"):
        fetch_region(tmp_path / "missing.pmtiles", tmp_path / "x.pmtiles", BOX, 0, 5)
    with pytest.raises(RegionError, match="ftp://x: expected an http"):
        fetch_region("ftp://x", tmp_path / "x.pmtiles", BOX, 0, 5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["planet.pmtiles"]


# --- the command line -----------------------------------------------------------------------

def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m groundstation")
    add_map_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_map_fetch_and_info(planet, server, tmp_path, capsys):
    out = tmp_path / "region.pmtiles"
    assert run(["map", "fetch", "--source", server.url, "--around", "51.5", "-0.1", "--radius-km", "20",
                "--max-zoom", "11", "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert re.search(r"map fetch: [\d,]+ tiles in .* at zoom 0..11, an estimated", captured.err)
    assert f"wrote {out}: " in captured.out and "OpenStreetMap contributors" in captured.out
    box = region_bbox(51.5, -0.1, 20)
    assert installed(out) == expected(planet, box, range(12))

    assert run(["map", "fetch", "--source", str(planet), "--around=51.5,-0.1", "--radius-km", "20",
                "--min-zoom", "3", "--max-zoom", "11", "-o", str(tmp_path / "b.pmtiles"), "--dry-run"]) == 0
    assert "nothing written" in capsys.readouterr().out and not (tmp_path / "b.pmtiles").exists()

    assert run(["map", "info", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "PMTiles v3" in printed and "vector (pbf)" in printed and "0..11" in printed
    assert f"tiles:       {count_tiles(box, 0, 11):,}" in printed and "© OpenStreetMap" in printed


@pytest.mark.parametrize("argv, message", [
    (["--bbox=1,2,3"], "WEST,SOUTH,EAST,NORTH"),
    (["--bbox=1,52,2,51"], "south < north"),
    (["--bbox", "1,50,2,51", "--radius-km", "5"], "--radius-km goes with --around"),
    (["--around", "51.5", "-0.1"], "--around needs --radius-km"),
    (["--around", "51.5", "--radius-km", "5"], "--around takes LAT LON"),
    (["--around", "95", "0", "--radius-km", "5"], "latitude is -90..90"),
    (["--around", "50", "10", "--radius-km", "300", "--max-zoom", "15"], "lower --max-zoom"),
    (["--bbox", "1,50,2,51", "--min-zoom", "9", "--max-zoom", "8"], "expected 0 <= min <= max"),
])
def test_map_fetch_usage_errors(tmp_path, capsys, argv, message):
    if "--max-zoom" not in argv:
        argv = [*argv, "--max-zoom", "10"]
    assert run(["map", "fetch", "--source", "unused.pmtiles", *argv, "-o", str(tmp_path / "x.pmtiles")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_map_failures_exit_1_with_one_line(tmp_path, capsys):
    garbage = tmp_path / "garbage.mbtiles"
    garbage.write_bytes(b"not a map")
    assert run(["map", "info", str(garbage)]) == 1
    assert capsys.readouterr().err == f"error: {garbage}: neither an MBTiles (SQLite) nor a PMTiles v3 file " \
                                      "(it starts with b'not a ma')\n"
    assert run(["map", "fetch", "--source", str(tmp_path / "missing.pmtiles"), "--bbox", "1,50,2,51",
                "--max-zoom", "5", "-o", str(tmp_path / "x.pmtiles")]) == 1
    err = capsys.readouterr().err
    assert "missing.pmtiles: No such file" in err and err.count("\n") == 2  # the estimate, then the error
    assert run(["map", "fetch", "--source", str(garbage), "--bbox", "1,50,2,51", "--max-zoom", "5",
                "-o", str(tmp_path / "no" / "x.pmtiles")]) == 1
    assert capsys.readouterr().err.endswith(f"error: {tmp_path / 'no' / 'x.pmtiles'}: there is no folder {tmp_path / 'no'}\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["garbage.mbtiles"]


def test_map_info_on_an_mbtiles_file(tmp_path, capsys):
    path = write_mbtiles(tmp_path / "r.mbtiles", {(0, 0, 0): RED, (1, 0, 0): RED}, {
        "name": "Devon", "format": "png", "minzoom": "0", "maxzoom": "1", "center": "-3.5,50.7,1"})
    assert run(["map", "info", str(path)]) == 0
    printed = capsys.readouterr().out
    assert "(MBTiles)" in printed and "raster (png)" in printed and "tiles:       2" in printed
    assert "50.7000,-3.5000 at zoom 1 (lat,lon)" in printed and "bounds:      not given" in printed
    assert "none given (OpenStreetMap data needs one" in printed


def test_every_tile_id_of_the_box_is_asked_for_once(planet, tmp_path, monkeypatch):
    seen = []
    real = region._locate
    monkeypatch.setattr(region, "_locate", lambda src, header, root, ids, gap: seen.extend(ids) or
                        real(src, header, root, ids, gap))
    fetch_region(planet, tmp_path / "x.pmtiles", BOX, 3, 9)
    assert seen == sorted({zxy_to_tileid(z, x, y) for z in range(3, 10) for x, y in tiles_in_bbox(BOX, z)})
