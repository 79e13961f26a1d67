"""Map tiles from an archive on disk, served to the dashboard one tile at a time.

The user installs OpenStreetMap tiles at home (`python -m groundstation map fetch`, or any tool
that writes one of these formats); in the field the dashboard reads them from this file. Two
single-file formats are read, told apart by their first bytes, never by the file's name:

MBTiles 1.3 (Mapbox, github.com/mapbox/mbtiles-spec): an SQLite database. Table
`metadata(name, value)` holds text pairs: name, format (png, jpg, webp, or pbf for vector
tiles), minzoom, maxzoom, bounds "west,south,east,north", center "lon,lat,zoom", attribution.
Table (or view) `tiles(zoom_level, tile_column, tile_row, tile_data)` holds one blob a tile,
its row counted from the south as TMS does, so the web map's y (counted from the north) is
row = 2^z - 1 - y. Vector tiles are Mapbox Vector Tile protobufs, gzip-compressed by the spec's
word, though some tools store them plain: each tile's own first two bytes say which.

PMTiles v3 (Protomaps, github.com/protomaps/PMTiles, spec/v3/spec.md): one file laid out for
reading by ranges. A 127-byte header ("PMTiles", version 3, where everything else lies, the tile
type and compression, the zoom range, bounds and centre in integers of 1e-7 degree), the root
directory (header and root fit in the first 16 KiB), JSON metadata, leaf directories, then tile
data. Tiles are numbered by a Hilbert curve, zoom after zoom (the tile id). A directory is a
sorted run of entries (first tile id, run length, offset, length): run length 0 points to a leaf
directory, n > 0 says n consecutive tiles share these bytes (the sea, empty land). Directories
are read with the `pmtiles` package's own parser. Tiles stay compressed as stored: gzip ones go
to the browser as they are, with Content-Encoding: gzip, which it undoes itself.
"""

from __future__ import annotations

import gzip
import math
import os
import sqlite3
import threading
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import structlog
from pmtiles.reader import Reader
from pmtiles.tile import Compression, Entry, TileType, deserialize_directory, find_tile, zxy_to_tileid

log = structlog.get_logger(__name__)

MAX_ZOOM = 30  # PMTiles tile ids are 64-bit integers, good to zoom 31; no map goes near either
SQLITE_MAGIC = b"SQLite format 3\x00"
PMTILES_MAGIC = b"PMTiles"
GZIP_MAGIC = b"\x1f\x8b"
# format -> (kind, HTTP content type)
FORMATS = {"png": ("raster", "image/png"), "jpg": ("raster", "image/jpeg"), "webp": ("raster", "image/webp"),
           "pbf": ("vector", "application/x-protobuf")}
PMTILES_FORMATS = {TileType.MVT: "pbf", TileType.PNG: "png", TileType.JPEG: "jpg", TileType.WEBP: "webp"}
# What a browser undoes itself from a Content-Encoding header. Brotli and zstd are left out: browsers
# send them only over HTTPS, and the dashboard is plain HTTP on the local network.
ENCODINGS = {Compression.NONE: None, Compression.GZIP: "gzip"}
LEAF_CACHE = 64  # leaf directories kept parsed (each covers thousands of tiles)


class TileFileError(Exception):
    """A tile archive that cannot be used: the message names the file and what is wrong."""


@dataclass(frozen=True)
class TileInfo:
    """What a tile archive holds. `bounds` is (west, south, east, north) in degrees; `center` is
    (lon, lat, zoom), MBTiles' order; either is None when the file does not say."""

    kind: str  # "raster" or "vector"
    format: str  # "png", "jpg", "webp" or "pbf"
    min_zoom: int
    max_zoom: int
    bounds: tuple[float, float, float, float] | None
    name: str
    attribution: str
    center: tuple[float, float, int] | None = None


def content_type(info: TileInfo) -> str:
    """The HTTP Content-Type of the archive's tiles."""
    return FORMATS[info.format][1]


def check_tile(z: int, x: int, y: int) -> None:
    """ValueError for a z/x/y that names no tile on any map."""
    if not 0 <= z <= MAX_ZOOM or not (0 <= x < 1 << z and 0 <= y < 1 << z):
        raise ValueError(f"no tile {z}/{x}/{y}: zoom is 0..{MAX_ZOOM}, x and y 0..2^zoom-1")


def sniff_format(data: bytes) -> str | None:
    """A tile's format from its first bytes (MBTiles files that leave `format` out)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data.startswith(GZIP_MAGIC):
        return "pbf"  # a gzip'd vector tile; rasters are never gzipped
    return None


class TileArchive:
    """An open archive: `info`, `tile(z, x, y)`, `close()`. Safe to share between the threads of
    a threaded HTTP server."""

    info: TileInfo
    path: Path

    def tile(self, z: int, x: int, y: int) -> tuple[bytes, str | None] | None:
        """(data, content encoding: "gzip" or None), or None where the archive has no tile.
        ValueError for a z/x/y that is no tile at all."""
        check_tile(z, x, y)
        if not self.info.min_zoom <= z <= self.info.max_zoom:
            return None
        return self._tile(z, x, y)

    def _tile(self, z: int, x: int, y: int) -> tuple[bytes, str | None] | None:
        raise NotImplementedError  # each archive format (MBTiles, PMTiles below) reads its own

    def tile_count(self) -> int | None:
        """How many tiles the archive holds, or None where that would mean reading all of it."""
        return None

    def close(self) -> None:
        pass  # an archive that holds a file or a connection closes it

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_tiles(path: Path) -> TileArchive:
    """Open an MBTiles or PMTiles v3 file, told apart by its content; TileFileError if it is neither."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            head = f.read(16)
    except OSError as e:
        raise TileFileError(f"{path}: {e.strerror or e} (expected an MBTiles or PMTiles file)") from None
    if head.startswith(SQLITE_MAGIC):
        return MBTiles(path)
    if head.startswith(PMTILES_MAGIC):
        return PMTiles(path)
    if head.startswith(b"PM"):
        raise TileFileError(f"{path}: a PMTiles version 1 or 2 file; this reads version 3 "
                            "(`pmtiles convert` from the go-pmtiles tool upgrades it)")
    raise TileFileError(f"{path}: neither an MBTiles (SQLite) nor a PMTiles v3 file "
                        f"(it starts with {head[:8]!r})")


def _numbers(text: object, count: int) -> tuple[float, ...] | None:
    """"a,b,c" from MBTiles metadata, or None if it is not `count` numbers (optional: never fatal)."""
    try:
        values = tuple(float(v) for v in str(text).split(","))
    except ValueError:
        return None
    return values if len(values) == count and all(math.isfinite(v) for v in values) else None


class MBTiles(TileArchive):
    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()  # one connection shared by the server's threads, one query at a time
        try:
            # Read-only by URI: serving must never create, lock for writing or change the user's file.
            self._db = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, check_same_thread=False)
        except sqlite3.Error as e:
            raise TileFileError(f"{path}: cannot open as SQLite ({e})") from None
        try:
            self.info = self._read_info()
        except sqlite3.DatabaseError as e:
            self._db.close()
            raise TileFileError(f"{path}: not a readable MBTiles file ({e})") from None
        except TileFileError:
            self._db.close()
            raise

    def _read_info(self) -> TileInfo:
        names = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}
        if "tiles" not in names:
            raise TileFileError(f"{self.path}: an SQLite database without a `tiles` table, not an MBTiles file")
        meta = dict(self._db.execute("SELECT name, value FROM metadata")) if "metadata" in names else {}
        # Names the columns the spec requires: a look-alike table fails here, not at the first tile.
        first = self._db.execute("SELECT zoom_level, tile_column, tile_row, tile_data FROM tiles LIMIT 1").fetchone()
        fmt = str(meta.get("format", "")).lower().replace("jpeg", "jpg")
        if fmt not in FORMATS:
            fmt = sniff_format(bytes(first[3])) if first and first[3] else None
            if fmt is None and "json" in meta:
                fmt = "pbf"  # vector_layers are described: a vector set stored without compression
            if fmt is None:
                raise TileFileError(f"{self.path}: format {meta.get('format')!r} is not png, jpg, webp or pbf, "
                                    "and the tiles do not say either")
        zooms = _numbers(f"{meta.get('minzoom')},{meta.get('maxzoom')}", 2)
        if zooms is None:  # left out of the metadata: the index on (zoom_level, ...) answers quickly
            zooms = self._db.execute("SELECT min(zoom_level), max(zoom_level) FROM tiles").fetchone()
            zooms = (0, 0) if zooms[0] is None else zooms
        center = _numbers(meta.get("center"), 3)
        return TileInfo(
            kind=FORMATS[fmt][0], format=fmt, min_zoom=int(zooms[0]), max_zoom=int(zooms[1]),
            bounds=_numbers(meta.get("bounds"), 4), name=str(meta.get("name") or self.path.stem),
            attribution=str(meta.get("attribution") or ""),
            center=(center[0], center[1], int(center[2])) if center else None,
        )

    def _tile(self, z: int, x: int, y: int) -> tuple[bytes, str | None] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT tile_data FROM tiles WHERE zoom_level = ? AND tile_column = ? AND tile_row = ?",
                (z, x, (1 << z) - 1 - y),  # TMS rows count from the south
            ).fetchone()
        if row is None or row[0] is None:
            return None
        data = bytes(row[0])
        return data, ("gzip" if self.info.kind == "vector" and data.startswith(GZIP_MAGIC) else None)

    def tile_count(self) -> int | None:
        with self._lock:
            return self._db.execute("SELECT count(*) FROM tiles").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def read_header(reader: Reader, what: object) -> dict:
    """A PMTiles v3 header through the pmtiles package, its failures as TileFileError naming `what`."""
    try:
        header = reader.header()
    except Exception as e:  # on garbage the parser fails in many ways (IndexError, ValueError, its own)
        raise TileFileError(f"{what}: not a PMTiles v3 header ({type(e).__name__}: {e})") from None
    if header["internal_compression"] != Compression.GZIP:
        # The pmtiles package always gunzips directories; every common writer gzips them.
        raise TileFileError(f"{what}: directories compressed with {header['internal_compression'].name}; "
                            "this reader takes gzip only")
    return header


def read_metadata(reader: Reader, header: dict, what: object) -> dict:
    if header["metadata_length"] == 0:
        return {}
    try:
        metadata = reader.metadata()
    except (ValueError, OSError, EOFError, zlib.error) as e:
        raise TileFileError(f"{what}: unreadable metadata ({e})") from None
    return metadata if isinstance(metadata, dict) else {}


def read_directory(data: bytes, what: object) -> list[Entry]:
    try:
        return deserialize_directory(data)
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise TileFileError(f"{what}: damaged directory ({e})") from None


def pmtiles_info(header: dict, metadata: dict, name: str, what: object) -> TileInfo:
    """TileInfo from a PMTiles header and metadata; TileFileError for tiles the dashboard cannot serve."""
    fmt = PMTILES_FORMATS.get(header["tile_type"])
    if fmt is None:
        raise TileFileError(f"{what}: tile type {header['tile_type'].name} is not one the map draws "
                            "(vector MVT, PNG, JPEG or WebP)")
    compression = header["tile_compression"]
    if compression not in ENCODINGS and compression != Compression.UNKNOWN:  # UNKNOWN: each tile says
        raise TileFileError(f"{what}: tiles compressed with {compression.name}, which a browser takes only "
                            "over HTTPS; use an archive with gzip-compressed tiles (Protomaps' builds are)")
    bounds = tuple(header[k] / 1e7 for k in ("min_lon_e7", "min_lat_e7", "max_lon_e7", "max_lat_e7"))
    return TileInfo(
        kind=FORMATS[fmt][0], format=fmt, min_zoom=header["min_zoom"], max_zoom=header["max_zoom"],
        bounds=bounds, name=str(metadata.get("name") or name), attribution=str(metadata.get("attribution") or ""),
        center=(header["center_lon_e7"] / 1e7, header["center_lat_e7"] / 1e7, header["center_zoom"]),
    )


class PMTiles(TileArchive):
    def __init__(self, path: Path):
        self.path = path
        # pread, not mmap: a 32-bit Raspberry Pi OS cannot map a file of several GB.
        self._file = path.open("rb")
        try:
            reader = Reader(self._bytes)
            self._header = header = read_header(reader, path)
            end = max(header["tile_data_offset"] + header["tile_data_length"],
                      header["leaf_directory_offset"] + header["leaf_directory_length"],
                      header["root_offset"] + header["root_length"])
            size = os.fstat(self._file.fileno()).st_size
            if end > size:
                raise TileFileError(f"{path}: truncated: its header says {end} bytes, the file has {size}")
            self.info = pmtiles_info(header, read_metadata(reader, header, path), path.stem, path)
            self._root = read_directory(self._bytes(header["root_offset"], header["root_length"]), path)
        except TileFileError:
            self.close()
            raise
        self._gzip_unknown = header["tile_compression"] == Compression.UNKNOWN and self.info.kind == "vector"
        self._leaves: OrderedDict[int, list[Entry]] = OrderedDict()
        self._lock = threading.Lock()

    def _bytes(self, offset: int, length: int) -> bytes:
        return os.pread(self._file.fileno(), length, offset)  # no shared file position: safe across threads

    def _leaf(self, offset: int, length: int) -> list[Entry]:
        with self._lock:
            entries = self._leaves.get(offset)
            if entries is not None:
                self._leaves.move_to_end(offset)
                return entries
        entries = read_directory(self._bytes(self._header["leaf_directory_offset"] + offset, length), self.path)
        with self._lock:
            self._leaves[offset] = entries
            while len(self._leaves) > LEAF_CACHE:
                self._leaves.popitem(last=False)
        return entries

    def _tile(self, z: int, x: int, y: int) -> tuple[bytes, str | None] | None:
        # pmtiles' Reader.get would parse the header and the root again for every tile: the
        # directory walk is done here on parsed, cached directories instead.
        tile_id = zxy_to_tileid(z, x, y)
        entries = self._root
        for _ in range(4):  # the spec's deepest: root and three levels of leaves
            entry = find_tile(entries, tile_id)
            if entry is None:
                return None
            if entry.run_length > 0:
                data = self._bytes(self._header["tile_data_offset"] + entry.offset, entry.length)
                if self._gzip_unknown:
                    return data, "gzip" if data.startswith(GZIP_MAGIC) else None
                return data, ENCODINGS.get(self._header["tile_compression"])
            entries = self._leaf(entry.offset, entry.length)
        raise TileFileError(f"{self.path}: directories nested deeper than the spec allows")

    def tile_count(self) -> int | None:
        return self._header["addressed_tiles_count"] or None  # 0: the writer did not count

    def close(self) -> None:
        self._file.close()
