"""Install a region's map at home: OpenStreetMap vector tiles around the launch site and where the
balloon may land, cut from a published PMTiles archive into a small PMTiles file of their own that
the dashboard serves in the field (tiles.py).

Where tiles come from: Protomaps builds the whole planet from OpenStreetMap every day as one
PMTiles v3 archive (https://build.protomaps.com/YYYYMMDD.pmtiles, about 120 GB; the data is under
the ODbL, whose attribution "© OpenStreetMap contributors" must stay visible on the map). Nobody
downloads that whole: PMTiles is laid out for HTTP range requests, so a region costs its own tiles
and a few directories. Any PMTiles v3 file, by URL or on disk, works the same way.

How, in order:
1. read the first 16 KiB (the spec keeps the header and the root directory there) and the metadata;
2. list the web-mercator tiles of the box at each zoom (tiles_in_bbox) as PMTiles tile ids;
3. look each id up in the root directory and fetch the leaf directories they point to (then any
   deeper level) in coalesced ranges;
4. fetch the tiles' bytes in ranges: a clustered archive stores tiles in tile-id order and the
   Hilbert curve keeps neighbours close, so tiles separated by less than `gap_bytes` come in one
   request (the bytes between them are thrown away);
5. write them in tile-id order with pmtiles' Writer to OUT.tmp, then rename it to OUT.
Tiles are never decompressed: they keep the source's type and compression.
"""

from __future__ import annotations

import http.client
import math
import os
import tempfile
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import structlog
from pmtiles.reader import Reader
from pmtiles.tile import find_tile, zxy_to_tileid
from pmtiles.writer import Writer
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential
from tqdm import tqdm

from stratoecho.geo import EARTH_RADIUS_M, moved

from .tiles import MAX_ZOOM, TileFileError, pmtiles_info, read_directory, read_header, read_metadata

log = structlog.get_logger(__name__)

USER_AGENT = "stratoecho-groundstation/0.1 (map fetch: one region's tiles by range requests)"
MAX_TILES = 200_000  # ~150 km around a point at zoom 15; beyond, the request is a mistake
PREFIX_BYTES = 16_384  # the spec keeps the header and the root directory in the first 16 KiB
GAP_BYTES = 64 << 10  # reading 64 KB more costs less than one more request's round trip
MAX_SPAN_BYTES = 32 << 20  # the most one request asks for: a retry repeats no more than this
BATCH_BYTES = 64 << 20  # tile bytes held in memory before they go to the writer
ATTEMPTS = 5
MERCATOR_LAT = 85.0511287798  # web-mercator's edge: tiles stop here
OSM_ATTRIBUTION = "© OpenStreetMap contributors (ODbL)"


class RegionError(Exception):
    """A region that could not be installed: the message says what and why."""


@dataclass(frozen=True)
class FetchReport:
    path: Path
    tiles: int  # written
    tiles_absent: int  # asked for but not in the source (its edge, or a zoom it does not have)
    tile_bytes: int  # the region's distinct tiles as the source stores them
    bytes_fetched: int  # read from the source, directories and gaps included
    bytes_written: int
    requests: int  # range requests (or file reads), retries included
    min_zoom: int
    max_zoom: int


def check_bbox(bbox) -> tuple[float, float, float, float]:
    """(west, south, east, north) in degrees; west > east crosses the antimeridian. ValueError if not a box."""
    try:
        w, s, e, n = (float(v) for v in bbox)
    except (TypeError, ValueError):
        raise ValueError(f"a box is WEST,SOUTH,EAST,NORTH in degrees, got {bbox!r}") from None
    if not all(math.isfinite(v) for v in (w, s, e, n)) or not (-180 <= w <= 180 and -180 <= e <= 180):
        raise ValueError(f"box {w},{s},{e},{n}: longitudes are -180..180")
    if not -90 <= s < n <= 90 or w == e:
        raise ValueError(f"box {w},{s},{e},{n}: expected WEST,SOUTH,EAST,NORTH with south < north (-90..90) "
                         "and west != east")
    return w, s, e, n


def region_bbox(lat: float, lon: float, radius_km: float) -> tuple[float, float, float, float]:
    """The box (west, south, east, north) that holds every point within `radius_km` of (lat, lon),
    cut at web-mercator's edge; the whole width of the world if the circle holds a pole."""
    if not (-90 <= lat <= 90 and -180 <= lon <= 180 and radius_km > 0 and math.isfinite(radius_km)):
        raise ValueError(f"around {lat},{lon} within {radius_km} km: expected LAT -90..90, LON -180..180, KM > 0")
    # A circle's widest longitudes lie a little poleward of its centre, where a flat earth puts
    # them: 1 % more covers that to within a few degrees of the pole.
    radius_m = radius_km * 1000 * 1.01
    north = min(moved(lat, lon, 0, radius_m)[0], MERCATOR_LAT)
    south = max(moved(lat, lon, 0, -radius_m)[0], -MERCATOR_LAT)
    if abs(lat) + math.degrees(radius_m / EARTH_RADIUS_M) >= 89.9:
        return -180.0, south, 180.0, north
    half = math.degrees(radius_m / (EARTH_RADIUS_M * math.cos(math.radians(lat))))  # degrees of longitude, unwrapped
    if half >= 180:
        return -180.0, south, 180.0, north
    west, east = lon - half, lon + half
    return (west + 360 if west < -180 else west), south, (east - 360 if east > 180 else east), north


def _tile_ranges(bbox, zoom: int) -> tuple[range | list[int], range]:
    """The columns and rows of the box at `zoom` (columns wrap across the antimeridian)."""
    w, s, e, n = check_bbox(bbox)
    count = 1 << zoom

    def column(lon: float) -> int:
        return min(count - 1, max(0, math.floor((lon + 180) / 360 * count)))

    def row(lat: float) -> int:  # from the north, as web maps count
        lat = math.radians(max(-MERCATOR_LAT, min(MERCATOR_LAT, lat)))
        return min(count - 1, max(0, math.floor((1 - math.asinh(math.tan(lat)) / math.pi) / 2 * count)))

    # Across the antimeridian the two sides can share a column at low zooms: a set, so none comes twice.
    columns = range(column(w), column(e) + 1) if w < e else sorted({*range(column(w), count), *range(column(e) + 1)})
    return columns, range(row(n), row(s) + 1)


def tiles_in_bbox(bbox, zoom: int) -> Iterator[tuple[int, int]]:
    """The web-mercator tiles (x, y) at `zoom` that the box touches, each once."""
    columns, rows = _tile_ranges(bbox, zoom)
    for x in columns:
        for y in rows:
            yield x, y


def count_tiles(bbox, min_zoom: int, max_zoom: int) -> int:
    """How many tiles the box has from min_zoom to max_zoom, without listing them."""
    total = 0
    for zoom in range(min_zoom, max_zoom + 1):
        columns, rows = _tile_ranges(bbox, zoom)
        total += len(columns) * len(rows)
    return total


def too_many_tiles(count: int, min_zoom: int, max_zoom: int, limit: int = MAX_TILES) -> str:
    return (f"{count:,} tiles from zoom {min_zoom} to {max_zoom} is more than the {limit:,} installed at once: "
            "lower --max-zoom (each level has 4 times the tiles of the one before) or --radius-km")


def _transient(e: BaseException) -> bool:
    if isinstance(e, urllib.error.HTTPError):
        return e.code >= 500 or e.code == 429
    return isinstance(e, (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException))


class _FileSource:
    def __init__(self, path: Path):
        self.what = str(path)
        self.requests = self.bytes = 0
        try:
            self._file = path.open("rb")
        except OSError as e:
            raise RegionError(f"{path}: {e.strerror or e} (expected a PMTiles file or an http(s) URL)") from None

    def read(self, offset: int, length: int) -> bytes:
        self.requests += 1
        data = os.pread(self._file.fileno(), length, offset)
        self.bytes += len(data)
        return data

    def close(self) -> None:
        self._file.close()


class _HttpSource:
    def __init__(self, url: str, timeout_s: float = 60):
        self.url = self.what = url
        self.timeout_s = timeout_s
        self.requests = self.bytes = 0
        self._etag: str | None = None

    def read(self, offset: int, length: int) -> bytes:
        try:
            return self._fetch(offset, length)
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            reason = f"HTTP {e.code} {e.reason}" if isinstance(e, urllib.error.HTTPError) else getattr(e, "reason", e)
            raise RegionError(f"{self.url}: {reason} (tried {ATTEMPTS} times)") from None

    @retry(retry=retry_if_exception(_transient), stop=stop_after_attempt(ATTEMPTS),
           wait=wait_exponential(multiplier=1, max=30), reraise=True)
    def _fetch(self, offset: int, length: int) -> bytes:
        self.requests += 1
        request = urllib.request.Request(self.url, headers={
            "User-Agent": USER_AGENT, "Range": f"bytes={offset}-{offset + length - 1}"})
        try:
            response = urllib.request.urlopen(request, timeout=self.timeout_s)
        except urllib.error.HTTPError as e:
            if _transient(e):
                raise
            raise RegionError(f"{self.url}: HTTP {e.code} {e.reason}") from None
        with response:
            if response.status != 206:
                # Closed unread: a server that ignores Range would send the whole archive.
                raise RegionError(f"{self.url}: answered {response.status} to a range request instead of "
                                  "206 Partial Content, so it would send the whole file; refused (use a server "
                                  "that supports Range requests, or download the file and pass its path)")
            start = response.headers.get("Content-Range", "").removeprefix("bytes ").split("-")[0]
            if start != str(offset):
                raise RegionError(f"{self.url}: asked for bytes from {offset}, got Content-Range "
                                  f"{response.headers.get('Content-Range')!r}")
            etag = response.headers.get("ETag")
            if self._etag and etag and etag != self._etag:
                raise RegionError(f"{self.url}: the file changed while it was being read (ETag {self._etag} "
                                  f"became {etag}); start again")
            self._etag = self._etag or etag
            data = response.read(length)
        self.bytes += len(data)
        return data

    def close(self) -> None:
        pass  # nothing held: each range request opens and closes its own connection


def _open_source(source: str | Path):
    text = str(source)
    if text.startswith(("http://", "https://")):
        return _HttpSource(text)
    if "://" in text:
        raise RegionError(f"{text}: expected an http:// or https:// URL or a local PMTiles file")
    return _FileSource(Path(text))


def _read_ranges(source, ranges, gap_bytes: int) -> dict[tuple[int, int], bytes]:
    """The bytes of each (offset, length), fetched in as few requests as gaps under `gap_bytes` allow."""
    spans: list[list] = []  # [start, end, members]
    for offset, length in sorted(set(ranges)):
        if spans and offset - spans[-1][1] <= gap_bytes and offset + length - spans[-1][0] <= MAX_SPAN_BYTES:
            spans[-1][1] = max(spans[-1][1], offset + length)
            spans[-1][2].append((offset, length))
        else:
            spans.append([offset, offset + length, [(offset, length)]])
    found = {}
    for start, end, members in spans:
        blob = source.read(start, end - start) if end > start else b""
        if len(blob) < end - start:
            raise RegionError(f"{source.what}: ends before byte {end}, which its directories point to (truncated?)")
        for offset, length in members:
            found[(offset, length)] = blob[offset - start:offset - start + length]
    return found


def _locate(source, header: dict, root, ids: list[int], gap_bytes: int) -> dict[int, tuple[int, int]]:
    """Each tile id's (offset in the tile data, length); ids the archive lacks are left out."""
    found: dict[int, tuple[int, int]] = {}
    groups = [(root, ids)]
    for _ in range(4):  # the root and at most three levels of leaves (the spec's limit)
        leaves: dict[tuple[int, int], list[int]] = defaultdict(list)
        for entries, wanted in groups:
            for tile_id in wanted:
                entry = find_tile(entries, tile_id)
                if entry is None:
                    continue
                if entry.run_length:
                    found[tile_id] = (entry.offset, entry.length)
                else:
                    leaves[(header["leaf_directory_offset"] + entry.offset, entry.length)].append(tile_id)
        if not leaves:
            return found
        blobs = _read_ranges(source, list(leaves), gap_bytes)
        groups = [(read_directory(blobs[key], source.what), wanted) for key, wanted in leaves.items()]
    raise TileFileError(f"{source.what}: directories nested deeper than the spec allows")


def _batches(located: list[tuple[int, int, int]], limit: int) -> Iterator[list[tuple[int, int, int]]]:
    batch, size, seen = [], 0, set()
    for item in located:
        batch.append(item)
        if item[1] not in seen:
            seen.add(item[1])
            size += item[2]
        if size >= limit:
            yield batch
            batch, size, seen = [], 0, set()
    if batch:
        yield batch


def _public(source: str) -> str:
    """What the metadata records of the source: a URL without credentials or query, or a file's name."""
    if "://" in source:
        parts = urlsplit(source)
        return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))
    return Path(source).name


def fetch_region(source: str, out: Path, bbox, min_zoom: int, max_zoom: int, progress: bool | None = None,
                 *, gap_bytes: int = GAP_BYTES, max_tiles: int = MAX_TILES, dry_run: bool = False) -> FetchReport:
    """Copy the tiles of `bbox` from min_zoom to max_zoom out of the PMTiles archive at `source` (an
    http(s) URL or a path) into a new PMTiles file `out`. RegionError or TileFileError says why not;
    `out` is then as it was (a file is only ever renamed into place whole). `dry_run`: read the
    directories only (the report's `tile_bytes` says what the tiles would cost) and write nothing."""
    bbox = check_bbox(bbox)
    if not 0 <= min_zoom <= max_zoom <= MAX_ZOOM:
        raise ValueError(f"zooms {min_zoom}..{max_zoom}: expected 0 <= min <= max <= {MAX_ZOOM}")
    planned = count_tiles(bbox, min_zoom, max_zoom)
    if planned > max_tiles:
        raise RegionError(too_many_tiles(planned, min_zoom, max_zoom, max_tiles))
    out = Path(out)
    if not out.parent.is_dir():  # found out now, not after the download
        raise RegionError(f"{out}: there is no folder {out.parent}")
    tmp = out.with_name(out.name + ".tmp")
    src = _open_source(source)
    try:
        prefix = src.read(0, PREFIX_BYTES)

        def get_bytes(offset: int, length: int) -> bytes:
            if offset + length <= len(prefix):
                return prefix[offset:offset + length]
            return _read_ranges(src, [(offset, length)], 0)[(offset, length)]

        reader = Reader(get_bytes)
        header = read_header(reader, src.what)
        metadata = read_metadata(reader, header, src.what)
        pmtiles_info(header, metadata, "", src.what)  # refuses tiles the dashboard could not serve
        lo, hi = max(min_zoom, header["min_zoom"]), min(max_zoom, header["max_zoom"])
        if lo > hi:
            raise RegionError(f"{src.what} has zooms {header['min_zoom']}..{header['max_zoom']}, "
                              f"none of {min_zoom}..{max_zoom}")
        if hi < max_zoom:
            log.warning("the source stops below the zoom asked for; the map enlarges its last tiles",
                        source_max_zoom=hi, asked=max_zoom)
        ids = sorted(zxy_to_tileid(z, x, y) for z in range(lo, hi + 1) for x, y in tiles_in_bbox(bbox, z))
        root = read_directory(get_bytes(header["root_offset"], header["root_length"]), src.what)
        where = _locate(src, header, root, ids, gap_bytes)
        located = [(tile_id, *where[tile_id]) for tile_id in ids if tile_id in where]
        if not located:
            raise RegionError(f"{src.what} has no tiles in {bbox} at zooms {lo}..{hi}")
        total = sum(dict((offset, length) for _, offset, length in located).values())
        log.info("reading tiles", source=_public(str(source)), tiles=len(located), absent=len(ids) - len(located),
                 megabytes=round(total / 1e6, 1), zooms=f"{lo}..{hi}")
        if dry_run:
            return FetchReport(out, len(located), len(ids) - len(located), total, src.bytes, 0, src.requests, lo, hi)
        _write(src, tmp, header, _metadata(metadata, bbox, lo, hi, str(source)), located, total, gap_bytes,
               progress, out.name)
        os.replace(tmp, out)
    except BaseException:  # Ctrl-C included: no half file left behind
        tmp.unlink(missing_ok=True)
        raise
    finally:
        src.close()
    report = FetchReport(out, len(located), len(ids) - len(located), total, src.bytes, out.stat().st_size,
                         src.requests, lo, hi)
    log.info("region installed", **{k: str(v) if isinstance(v, Path) else v for k, v in report.__dict__.items()})
    return report


def _metadata(metadata: dict, bbox, lo: int, hi: int, source: str) -> dict:
    meta = dict(metadata)  # the source's (layers, its own name and version), then ours on top
    meta.update(bounds=list(bbox), minzoom=lo, maxzoom=hi,
                stratoecho={"source": _public(source), "fetched": datetime.now(UTC).date().isoformat()})
    if not meta.get("attribution"):
        meta["attribution"] = OSM_ATTRIBUTION  # the ODbL's duty travels with the file
    return meta


def _write(src, tmp: Path, header: dict, metadata: dict, located, total: int, gap_bytes: int,
           progress: bool | None, name: str) -> None:
    w, s, e, n = metadata["bounds"]
    lo, hi = metadata["minzoom"], metadata["maxzoom"]
    center_lon = (w + e) / 2 if w < e else ((w + e + 360) / 2 + 180) % 360 - 180
    new_header = {
        "tile_type": header["tile_type"], "tile_compression": header["tile_compression"],
        "min_zoom": lo, "max_zoom": hi,  # the writer sets them again from the tiles
        "min_lon_e7": round(w * 1e7), "min_lat_e7": round(s * 1e7),
        "max_lon_e7": round(e * 1e7), "max_lat_e7": round(n * 1e7),
        "center_zoom": min(hi, max(lo, 10)), "center_lon_e7": round(center_lon * 1e7),
        "center_lat_e7": round((s + n) / 2 * 1e7),
    }
    base = header["tile_data_offset"]
    refs = Counter(offset for _, offset, _ in located)
    shared: dict[int, bytes] = {}  # tiles the region repeats (sea, empty land): fetched once
    with tmp.open("wb") as f, tqdm(total=total, unit="B", unit_scale=True, desc=name, disable=not progress) as bar:
        writer = Writer(f)
        # The writer spools tile data to a temporary file in $TMPDIR, which on Debian 13 (and so a Pi on
        # it) is RAM: keep the spool beside the output, on the disk that is about to hold the region.
        writer.tile_f.close()
        writer.tile_f = tempfile.TemporaryFile(dir=tmp.parent)
        for batch in _batches(located, BATCH_BYTES):
            blobs = _read_ranges(src, [(base + offset, length) for _, offset, length in batch
                                       if offset not in shared], gap_bytes)
            for tile_id, offset, length in batch:
                data = shared.get(offset)
                if data is None:
                    data = blobs[(base + offset, length)]
                    bar.update(length)
                    if refs[offset] > 1:
                        shared[offset] = data
                writer.write_tile(tile_id, data)  # ids ascending: the output is clustered too
        writer.finalize(new_header, metadata)
        f.flush()
        os.fsync(f.fileno())
