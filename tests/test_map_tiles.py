"""Tile archives a user installed at home are read as the specs lay them out: MBTiles rows counted
from the south, PMTiles through its directories and leaves, vector tiles passed on gzip'd with
their encoding named; files that are not archives are refused with their name in the message.
Every archive here is built in the test (sqlite3, Pillow, pmtiles' own writer)."""

from __future__ import annotations

import gzip
import io
import random
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path

import pytest
from PIL import Image
from pmtiles.tile import Compression, TileType, zxy_to_tileid
from pmtiles.writer import Writer

from groundstation.maps.tiles import MBTiles, PMTiles, TileFileError, content_type, open_tiles


def png(color: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (256, 256), color).save(out, format="PNG")
    return out.getvalue()


def write_mbtiles(path: Path, tiles: dict[tuple[int, int, int], bytes], metadata: dict[str, str]) -> Path:
    """An MBTiles 1.3 file; `tiles` keyed by web z/x/y (stored with TMS rows, as the spec says)."""
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE metadata (name TEXT, value TEXT)")
    db.execute("CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER, tile_row INTEGER, tile_data BLOB)")
    db.execute("CREATE UNIQUE INDEX tile_index ON tiles (zoom_level, tile_column, tile_row)")
    db.executemany("INSERT INTO metadata VALUES (?, ?)", metadata.items())
    db.executemany("INSERT INTO tiles VALUES (?, ?, ?, ?)",
                   [(z, x, (1 << z) - 1 - y, data) for (z, x, y), data in tiles.items()])
    db.commit()
    db.close()
    return path


def write_pmtiles(path: Path, tiles: dict[tuple[int, int, int], bytes], *, tile_type=TileType.MVT,
                  compression=Compression.GZIP, metadata: dict | None = None,
                  bounds=(-180.0, -85.0, 180.0, 85.0)) -> Path:
    """A PMTiles v3 file written by the pmtiles package, tiles in tile-id order (clustered)."""
    by_id = {zxy_to_tileid(*zxy): data for zxy, data in tiles.items()}
    w, s, e, n = bounds
    with path.open("wb") as f:
        writer = Writer(f)
        for tile_id in sorted(by_id):
            writer.write_tile(tile_id, by_id[tile_id])
        writer.finalize({
            "tile_type": tile_type, "tile_compression": compression, "min_zoom": 0, "max_zoom": 0,
            "min_lon_e7": round(w * 1e7), "min_lat_e7": round(s * 1e7), "max_lon_e7": round(e * 1e7),
            "max_lat_e7": round(n * 1e7), "center_zoom": 2, "center_lon_e7": round((w + e) / 2 * 1e7),
            "center_lat_e7": round((s + n) / 2 * 1e7),
        }, metadata if metadata is not None else {"name": "test", "attribution": "© OpenStreetMap contributors"})
    return path


def vector_tile(z: int, x: int, y: int, rng: random.Random | None = None) -> bytes:
    """Stand-in MVT bytes, gzip'd as stored; distinct per tile, of varying length."""
    padding = rng.randbytes(rng.randrange(10, 300)) if rng else b""
    return gzip.compress(f"tile {z}/{x}/{y}".encode() + padding, mtime=0)


RED, BLUE = png((200, 0, 0)), png((0, 0, 200))


def test_raster_mbtiles_rows_count_from_the_south(tmp_path):
    path = write_mbtiles(tmp_path / "r.mbtiles", {(0, 0, 0): RED, (2, 1, 3): BLUE, (2, 1, 0): RED}, {
        "name": "Devon", "format": "png", "minzoom": "0", "maxzoom": "2", "bounds": "-4.5,50.2,-2.9,51.2",
        "center": "-3.5,50.7,2", "attribution": "© OpenStreetMap contributors"})
    with open_tiles(path) as archive:
        assert isinstance(archive, MBTiles)
        info = archive.info
        assert (info.kind, info.format, info.min_zoom, info.max_zoom) == ("raster", "png", 0, 2)
        assert info.bounds == (-4.5, 50.2, -2.9, 51.2) and info.center == (-3.5, 50.7, 2)
        assert (info.name, info.attribution) == ("Devon", "© OpenStreetMap contributors")
        assert content_type(info) == "image/png"
        assert archive.tile(2, 1, 3) == (BLUE, None)  # stored at TMS row 0: the southernmost
        assert archive.tile(2, 1, 0) == (RED, None)
        assert sqlite3.connect(path).execute("SELECT tile_row FROM tiles WHERE tile_data = ?", (BLUE,)).fetchone() == (0,)
        assert archive.tile(2, 0, 0) is None  # not there
        assert archive.tile(5, 0, 0) is None  # a zoom the archive does not have
        assert archive.tile_count() == 3
        for bad in ((2, 4, 0), (2, 0, 4), (-1, 0, 0), (31, 0, 0), (1, -1, 0)):
            with pytest.raises(ValueError, match="no tile"):
                archive.tile(*bad)
    assert not list(tmp_path.glob("r.mbtiles-*"))  # opened read-only: no journal, no WAL


def test_mbtiles_without_format_or_zooms_in_its_metadata_is_read_from_its_tiles(tmp_path):
    path = write_mbtiles(tmp_path / "r.mbtiles", {(3, 1, 1): RED, (5, 2, 2): RED}, {})
    with open_tiles(path) as archive:
        assert (archive.info.format, archive.info.min_zoom, archive.info.max_zoom) == ("png", 3, 5)
        assert archive.info.name == "r" and archive.info.bounds is None


def test_vector_mbtiles_gzip_tiles_go_out_with_their_encoding(tmp_path):
    tile = vector_tile(1, 0, 1)
    path = write_mbtiles(tmp_path / "v.mbtiles", {(1, 0, 1): tile}, {"format": "pbf", "minzoom": "0", "maxzoom": "1"})
    with open_tiles(path) as archive:
        assert (archive.info.kind, content_type(archive.info)) == ("vector", "application/x-protobuf")
        assert archive.tile(1, 0, 1) == (tile, "gzip")
    plain = write_mbtiles(tmp_path / "p.mbtiles", {(0, 0, 0): b"\x1a\x05plain"}, {"format": "pbf"})
    with open_tiles(plain) as archive:
        assert archive.tile(0, 0, 0) == (b"\x1a\x05plain", None)  # stored uncompressed: no encoding claimed
    sniffed = write_mbtiles(tmp_path / "s.mbtiles", {(0, 0, 0): tile}, {})
    with open_tiles(sniffed) as archive:
        assert archive.info.format == "pbf"  # no format given: the gzip magic says vector


def test_mbtiles_is_safe_to_share_between_server_threads(tmp_path):
    tiles = {(4, x, y): png((x * 16, y * 16, 0)) for x in range(4) for y in range(4)}
    path = write_mbtiles(tmp_path / "r.mbtiles", tiles, {"format": "png", "minzoom": "4", "maxzoom": "4"})
    with open_tiles(path) as archive, ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda zxy: archive.tile(*zxy), list(tiles) * 20))
    assert answers == [(tiles[zxy], None) for zxy in list(tiles) * 20]


def test_pmtiles_vector_archive_with_leaf_directories(tmp_path):
    rng = random.Random(3)
    tiles = {(z, x, y): vector_tile(z, x, y, rng) for z in range(8) for x in range(1 << z) for y in range(1 << z)}
    path = write_pmtiles(tmp_path / "v.pmtiles", tiles, bounds=(-10.0, 40.0, 10.0, 60.0))
    with open_tiles(path) as archive:
        assert isinstance(archive, PMTiles)
        assert archive._header["leaf_directory_length"] > 0  # big enough that the root points to leaves
        info = archive.info
        assert (info.kind, info.format, info.min_zoom, info.max_zoom) == ("vector", "pbf", 0, 7)
        assert info.bounds == (-10.0, 40.0, 10.0, 60.0) and info.center == (0.0, 50.0, 2)
        assert (info.name, info.attribution) == ("test", "© OpenStreetMap contributors")
        assert content_type(info) == "application/x-protobuf"
        for zxy in ((0, 0, 0), (6, 0, 0), (6, 63, 63), (5, 17, 9), (6, 40, 21)):
            assert archive.tile(*zxy) == (tiles[zxy], "gzip")
        assert archive.tile(8, 0, 0) is None
        assert archive.tile_count() == len(tiles)
        with pytest.raises(ValueError):
            archive.tile(3, 8, 0)
        with ThreadPoolExecutor(4) as pool:  # the leaf cache under concurrent readers
            keys = list(tiles)[::7]
            assert list(pool.map(lambda zxy: archive.tile(*zxy)[0], keys)) == [tiles[k] for k in keys]


def test_pmtiles_raster_and_absent_tiles(tmp_path):
    path = write_pmtiles(tmp_path / "r.pmtiles", {(1, 0, 0): RED, (1, 1, 1): BLUE},
                         tile_type=TileType.PNG, compression=Compression.NONE, metadata={})
    with open_tiles(path) as archive:
        assert (archive.info.kind, archive.info.format, archive.info.name) == ("raster", "png", "r")
        assert archive.info.attribution == ""
        assert archive.tile(1, 1, 1) == (BLUE, None)
        assert archive.tile(1, 0, 1) is None and archive.tile(0, 0, 0) is None


def test_files_told_apart_by_content_not_by_name(tmp_path):
    pm = write_pmtiles(tmp_path / "map.mbtiles", {(0, 0, 0): vector_tile(0, 0, 0)})
    mb = write_mbtiles(tmp_path / "map.pmtiles", {(0, 0, 0): RED}, {"format": "png"})
    with open_tiles(pm) as a, open_tiles(mb) as b:
        assert isinstance(a, PMTiles) and isinstance(b, MBTiles)


def sqlite_file(path: Path, sql: str) -> Path:
    with closing(sqlite3.connect(path)) as db:
        db.execute(sql)
        db.commit()
    return path


def test_what_is_not_a_tile_archive_is_refused_naming_the_file(tmp_path):
    garbage = tmp_path / "garbage.pmtiles"
    garbage.write_bytes(b"<html>not found</html>" * 10)
    with pytest.raises(TileFileError, match="garbage.pmtiles: neither an MBTiles .* nor a PMTiles"):
        open_tiles(garbage)

    other_db = sqlite_file(tmp_path / "flight.db", "CREATE TABLE frames (hex TEXT)")
    with pytest.raises(TileFileError, match="flight.db: an SQLite database without a `tiles` table"):
        open_tiles(other_db)

    lookalike = sqlite_file(tmp_path / "lookalike.mbtiles", "CREATE TABLE tiles (z, x, y, data)")
    with pytest.raises(TileFileError, match="lookalike.mbtiles: not a readable MBTiles file .*zoom_level"):
        open_tiles(lookalike)

    full = write_mbtiles(tmp_path / "big.mbtiles", {(8, x, y): RED + bytes([x, y]) for x in range(16) for y in range(16)},
                         {"format": "png"})
    cut = tmp_path / "cut.mbtiles"
    cut.write_bytes(full.read_bytes()[:3000])
    with pytest.raises(TileFileError, match="cut.mbtiles"):
        open_tiles(cut)

    pm = write_pmtiles(tmp_path / "whole.pmtiles", {(z, 0, 0): vector_tile(z, 0, 0) for z in range(5)})
    half = tmp_path / "half.pmtiles"
    half.write_bytes(pm.read_bytes()[: pm.stat().st_size // 2])
    with pytest.raises(TileFileError, match="half.pmtiles: truncated: its header says"):
        open_tiles(half)
    stub = tmp_path / "stub.pmtiles"
    stub.write_bytes(b"PMTiles\x03" + bytes(20))
    with pytest.raises(TileFileError, match="stub.pmtiles: not a PMTiles v3 header"):
        open_tiles(stub)
    old = tmp_path / "old.pmtiles"
    old.write_bytes(b"PM\x02\x00" + bytes(600))
    with pytest.raises(TileFileError, match="old.pmtiles: a PMTiles version 1 or 2 file"):
        open_tiles(old)

    empty = tmp_path / "empty.pmtiles"
    empty.touch()
    with pytest.raises(TileFileError, match="empty.pmtiles: neither"):
        open_tiles(empty)
    with pytest.raises(TileFileError, match="missing.pmtiles: No such file"):
        open_tiles(tmp_path / "missing.pmtiles")
    with pytest.raises(TileFileError, match="expected an MBTiles or PMTiles file"):
        open_tiles(tmp_path)


def test_tiles_a_browser_cannot_take_over_plain_http_are_refused_at_open(tmp_path):
    path = write_pmtiles(tmp_path / "br.pmtiles", {(0, 0, 0): b"brotli bytes"}, compression=Compression.BROTLI)
    with pytest.raises(TileFileError, match="br.pmtiles: tiles compressed with BROTLI"):
        open_tiles(path)
    avif = write_pmtiles(tmp_path / "a.pmtiles", {(0, 0, 0): b"avif"}, tile_type=TileType.AVIF,
                         compression=Compression.NONE)
    with pytest.raises(TileFileError, match="a.pmtiles: tile type AVIF"):
        open_tiles(avif)


def test_unknown_compression_is_read_from_each_vector_tile(tmp_path):
    tiles = {(0, 0, 0): vector_tile(0, 0, 0), (1, 0, 0): b"\x1a\x02raw"}
    path = write_pmtiles(tmp_path / "u.pmtiles", tiles, compression=Compression.UNKNOWN)
    with open_tiles(path) as archive:
        assert archive.tile(0, 0, 0) == (tiles[(0, 0, 0)], "gzip")
        assert archive.tile(1, 0, 0) == (b"\x1a\x02raw", None)


def test_closing_twice_and_reading_after_close_fail_cleanly(tmp_path):
    path = write_pmtiles(tmp_path / "v.pmtiles", {(0, 0, 0): vector_tile(0, 0, 0)})
    archive = open_tiles(path)
    archive.close()
    archive.close()
    with pytest.raises(ValueError):
        archive.tile(0, 0, 0)
