"""What the dashboard's map is drawn from, and the HTTP answers that serve it.

Three layers, bottom up, all optional but the first:
- the base map (`maps/basemap.py`): land, lakes, borders, rivers and places from the ground
  station's own Python packages, as GeoJSON for the view the browser asks about;
- a tile archive the user installed at home (`serve --tiles FILE`, MBTiles or PMTiles,
  `maps/tiles.py`): OpenStreetMap roads and places down to street level, raster or vector;
- a tile server the user names (`serve --tile-url`), fetched by the browser itself: the one
  way the page may reach another machine, and only when asked to.
The map's scripts (vendor.py) are served from here too.

What a base-map view costs grows with its area at its zoom (a whole world at zoom 19 took ~5 s of
CPU and 19 MB): a view may cover at most MAX_VIEW_TILES 256-pixel tiles at the zoom it asks for
(a 4K screen is ~130, ~260 when the page rounds its zoom up), answers are kept in a small LRU
cache by bytes (BASEMAP_CACHE_BYTES: views come back as the map pans back and forth), at most
BASEMAP_JOBS views are drawn at once, and views asked back to back take at most BASEMAP_DUTY of
the time (after drawing one, the next waits as long again); a request that waits BASEMAP_WAIT_S
for its turn gets 503 with Retry-After. A tile of the archive is one tile: its cost is one read. Routes:
    GET /api/map                  which layers there are: {"library", "basemap", "tiles", "tile_url"}
    GET /api/basemap?bbox=W,S,E,N&zoom=Z   base map GeoJSON for that view (400 if the view is not one,
                                  or bigger than a screen at that zoom: MAX_VIEW_TILES)
    GET /tiles/Z/X/Y              a tile of the archive (404 if the archive has none there)
    GET /vendor/...               Leaflet and protomaps-leaflet, when installed
"""

from __future__ import annotations

import collections
import json
import math
import re
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from urllib.parse import urlsplit

import structlog

from ..maps import basemap as basemap_data
from ..maps import tiles as tile_archives
from . import vendor

log = structlog.get_logger(__name__)

TILE_PATH = re.compile(r"/tiles/(\d{1,2})/(\d{1,7})/(\d{1,7})(?:\.\w{1,5})?")
VENDOR_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
                ".png": "image/png", "": "text/plain; charset=utf-8"}
MAX_ZOOM = 19  # the base map's: Leaflet's deepest
MAX_TILE_ZOOM = 30  # the tile archives': the deepest a web-mercator tile can be
MAX_VIEW_TILES = 400  # a base-map view covers at most this many 256-px tiles at its zoom
BASEMAP_CACHE_BYTES = 32 << 20  # answers kept, most recently asked first
BASEMAP_CACHE_ENTRY = 4 << 20  # an answer bigger than this is not kept
BASEMAP_JOBS = 1  # views drawn at once (the interpreter runs one at a time anyway)
BASEMAP_WAIT_S = 10.0  # how long a request waits for its turn before 503
BASEMAP_DUTY = 0.5  # views drawn back to back take at most this share of the time (the rest is the pages')
RETRY_AFTER_S = 5
MERCATOR_LAT = 85.0511  # web mercator's edge


def view_tiles(bbox: tuple[float, float, float, float], zoom: int) -> float:
    """How many 256-pixel web-mercator tiles the view (west, south, east, north) covers at `zoom`:
    what drawing it costs, give or take (west > east crosses the antimeridian)."""
    west, south, east, north = bbox
    width = east - west if west <= east else east + 360 - west

    def y(lat: float) -> float:
        lat = math.radians(max(-MERCATOR_LAT, min(MERCATOR_LAT, lat)))
        return math.log(math.tan(math.pi / 4 + lat / 2)) / (2 * math.pi)

    side = 2.0 ** zoom
    return max(width / 360 * side, 1.0) * max((y(north) - y(south)) * side, 1.0)


class MapRequestError(ValueError):
    """A map request the server refuses: `status` and the reason (`retry_after`: seconds)."""

    def __init__(self, status: HTTPStatus, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class _Answers:
    """A least-recently-used cache of answers, bounded by their bytes."""

    def __init__(self, max_bytes: int, max_entry: int):
        self.max_bytes, self.max_entry = max_bytes, max_entry
        self.lock = threading.Lock()
        self.entries: collections.OrderedDict[object, bytes] = collections.OrderedDict()
        self.bytes = 0

    def get(self, key) -> bytes | None:
        with self.lock:
            found = self.entries.get(key)
            if found is not None:
                self.entries.move_to_end(key)
            return found

    def put(self, key, value: bytes) -> None:
        if len(value) > self.max_entry:
            return
        with self.lock:
            if key in self.entries:
                return
            self.entries[key] = value
            self.bytes += len(value)
            while self.bytes > self.max_bytes:
                self.bytes -= len(self.entries.popitem(last=False)[1])


def check_tile_url(template: str) -> str:
    """A raster tile server's URL template, {z}/{x}/{y} in it; ValueError says what is wrong."""
    parts = urlsplit(template)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"--tile-url {template!r}: expected an http:// or https:// URL")
    missing = [name for name in ("{z}", "{x}", "{y}") if name not in template]
    if missing:
        raise ValueError(f"--tile-url {template!r}: has no {', '.join(missing)} "
                         "(e.g. http://127.0.0.1:8081/tiles/{z}/{x}/{y}.png)")
    return template


@dataclass
class MapLayers:
    """The map's sources for one dashboard. `basemap`: a maps.basemap.BaseMap (None: none);
    `tiles`: an open maps.tiles archive; `tile_url`: a raster tile server's template."""

    basemap: basemap_data.BaseMap | None = field(default_factory=basemap_data.BaseMap)
    tiles: tile_archives.TileArchive | None = None
    tile_url: str | None = None
    vendor_dir: Path = vendor.VENDOR_DIR
    max_view_tiles: float = MAX_VIEW_TILES
    basemap_jobs: int = BASEMAP_JOBS
    basemap_wait_s: float = BASEMAP_WAIT_S

    def __post_init__(self) -> None:
        self.answers = _Answers(BASEMAP_CACHE_BYTES, BASEMAP_CACHE_ENTRY)
        self.jobs = threading.BoundedSemaphore(self.basemap_jobs)
        self.rest_until = 0.0
        self.library = vendor.installed(self.vendor_dir)
        # Only the files vendor.py unpacked are served, by exact name: nothing else under the tree.
        self.vendor_files = ({f"/vendor/{target}": self.vendor_dir / target
                              for package in vendor.PACKAGES for target in package.files.values()}
                             if self.library else {})
        if not self.library:
            log.warning("map library not installed: the dashboard draws the track without a map",
                        fix="make install, or python -m groundstation.web.vendor")

    @property
    def extra_img_origin(self) -> str | None:
        """The tile server's origin, which the page's content policy must let images come from."""
        if not self.tile_url:
            return None
        parts = urlsplit(self.tile_url.replace("{", "").replace("}", ""))
        return f"{parts.scheme}://{parts.netloc}"

    def config(self) -> dict:
        tiles = None
        if self.tiles is not None:
            info = self.tiles.info
            tiles = {"kind": info.kind, "format": info.format, "min_zoom": info.min_zoom,
                     "max_zoom": info.max_zoom, "bounds": info.bounds, "name": info.name,
                     "attribution": info.attribution, "url": "/tiles/{z}/{x}/{y}"}
        basemap = None
        if self.basemap is not None:
            basemap = {"attribution": basemap_data.ATTRIBUTION}
        return {"library": self.library, "basemap": basemap, "tiles": tiles, "tile_url": self.tile_url}

    def basemap_json(self, query: dict) -> bytes:
        if self.basemap is None:
            raise MapRequestError(HTTPStatus.NOT_FOUND, "this dashboard has no base map")
        bbox_text = query.get("bbox", [""])[0]
        zoom_text = query.get("zoom", [""])[0]
        try:
            bbox = tuple(float(v) for v in bbox_text.split(","))
            if len(bbox) != 4:
                raise ValueError
        except ValueError:
            raise MapRequestError(HTTPStatus.BAD_REQUEST,
                                  f"bbox must be WEST,SOUTH,EAST,NORTH in degrees, got {bbox_text!r}") from None
        if not zoom_text.isdigit() or int(zoom_text) > MAX_ZOOM:
            raise MapRequestError(HTTPStatus.BAD_REQUEST, f"zoom must be 0..{MAX_ZOOM}, got {zoom_text!r}")
        zoom = int(zoom_text)
        try:
            basemap_data.view_rects(bbox, zoom)  # a view at all (ValueError says why not)
        except ValueError as e:
            raise MapRequestError(HTTPStatus.BAD_REQUEST, str(e)) from None
        if (tiles := view_tiles(bbox, zoom)) > self.max_view_tiles:
            raise MapRequestError(HTTPStatus.BAD_REQUEST,
                                  f"view too big for zoom {zoom}: {tiles:.0f} tiles of 256 px, at most "
                                  f"{self.max_view_tiles:.0f} (a screen's worth): zoom out or ask a smaller bbox")
        key = (bbox, zoom)
        if (found := self.answers.get(key)) is not None:
            return found
        if not self.jobs.acquire(timeout=self.basemap_wait_s):
            raise MapRequestError(HTTPStatus.SERVICE_UNAVAILABLE, "the base map is busy drawing other views: "
                                  "try again shortly", retry_after=RETRY_AFTER_S)
        try:
            if (found := self.answers.get(key)) is not None:  # drawn while this one waited
                return found
            if (rest := self.rest_until - time.monotonic()) > 0:  # the last view's share of a core
                time.sleep(rest)
            started = time.monotonic()
            collection = self.basemap.features(bbox, zoom)
            body = json.dumps(collection, separators=(",", ":"), ensure_ascii=False).encode()
            now = time.monotonic()
            self.rest_until = now + (now - started) * (1 - BASEMAP_DUTY) / BASEMAP_DUTY
        except ValueError as e:
            raise MapRequestError(HTTPStatus.BAD_REQUEST, str(e)) from None
        except basemap_data.BaseMapError as e:
            raise MapRequestError(HTTPStatus.SERVICE_UNAVAILABLE, str(e)) from None
        finally:
            self.jobs.release()
        self.answers.put(key, body)
        return body

    def tile(self, path: str) -> tuple[bytes, str, str | None] | None:
        """(body, content type, content encoding) of /tiles/Z/X/Y; None: no tile there.
        MapRequestError if the path is not a tile's."""
        match = TILE_PATH.fullmatch(path)
        if match is None or self.tiles is None:
            raise MapRequestError(HTTPStatus.NOT_FOUND, f"nothing at {path}")
        z, x, y = (int(v) for v in match.groups())
        if z > MAX_TILE_ZOOM or x >= 1 << z or y >= 1 << z:
            raise MapRequestError(HTTPStatus.BAD_REQUEST, f"no tile {z}/{x}/{y}: z is 0..{MAX_TILE_ZOOM}, x and y below 2^z")
        found = self.tiles.tile(z, x, y)
        if found is None:
            return None
        data, encoding = found
        return data, tile_archives.content_type(self.tiles.info), encoding

    def vendor_file(self, path: str) -> tuple[bytes, str]:
        target = self.vendor_files.get(path)
        if target is None:
            raise MapRequestError(HTTPStatus.NOT_FOUND, f"nothing at {path}")
        return target.read_bytes(), VENDOR_TYPES.get(target.suffix, "application/octet-stream")
