"""`python -m groundstation map fetch|info`: install a region's map at home, look into a tile file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stratoecho.cli import place, positive_number

from .region import (
    MAX_TILES,
    RegionError,
    check_bbox,
    count_tiles,
    fetch_region,
    region_bbox,
    too_many_tiles,
)
from .tiles import MAX_ZOOM, PMTiles, TileFileError, open_tiles

# Bytes a vector tile of Protomaps' basemap takes, averaged over countryside with towns: a guess
# for --help and the estimate printed before a fetch, never used for a decision. Cities take
# several times more, empty land far less; the archive's directories give the true figure.
TILE_KB_LOW, TILE_KB_HIGH = 5, 25


def _cost(tiles: int) -> str:
    low, high = tiles * TILE_KB_LOW / 1000, tiles * TILE_KB_HIGH / 1000
    return f"{low:,.0f}-{high:,.0f} MB" if high < 1000 else f"{low / 1000:.1f}-{high / 1000:.1f} GB"


def _cost_table() -> str:
    box = region_bbox(50.0, 10.0, 150.0)
    return "\n".join(f"  --max-zoom {zoom}: about {count_tiles(box, 0, zoom):>7,} tiles, {_cost(count_tiles(box, 0, zoom))}"
                     for zoom in (12, 13, 14))


FETCH_EPILOG = f"""\
examples:
  python -m groundstation map fetch --source https://build.protomaps.com/20250601.pmtiles \\
      --around 52.2 0.12 --radius-km 150 --max-zoom 13 -o region.pmtiles
  python -m groundstation map fetch --source planet.pmtiles --bbox=-3.6,50.2,-1.9,51.1 --max-zoom 14 -o devon.pmtiles
  python -m groundstation map fetch --source URL --around 52.2 0.12 --radius-km 150 --max-zoom 14 --dry-run
  then: python -m groundstation serve ... --tiles region.pmtiles

sources: Protomaps builds the OpenStreetMap planet every day as one PMTiles file,
https://build.protomaps.com/YYYYMMDD.pmtiles (pick a date listed on https://maps.protomaps.com/builds);
about 120 GB, of which only the region's tiles and a few directories are read, by HTTP range
requests. Any PMTiles v3 file or URL of vector or raster tiles works. OpenStreetMap's own tile
servers forbid bulk downloads (their tile usage policy), so raster tile servers are no source here.

what it costs, an estimate for 150 km around a place at 50 degrees north (tiles from zoom 0;
{TILE_KB_LOW}-{TILE_KB_HIGH} KB a tile, cities more, open country less):
{_cost_table()}
  Each zoom level has 4 times the tiles of the one before; more than {MAX_TILES:,} are refused.
  Roughly: zoom 12 shows main roads and towns, 13 most roads and villages, 14 every street and
  path; the map enlarges the last zoom's tiles beyond it. --dry-run reads the archive's
  directories and prints the exact size.

licence: OpenStreetMap data is under the Open Database License (ODbL). Whatever shows the map
must credit "© OpenStreetMap contributors"; the file keeps the source's attribution and the
dashboard shows it.
exit status: 0 installed; 1 if the source or the output cannot be used; 2 for a usage error
"""

INFO_EPILOG = """\
example:
  python -m groundstation map info region.pmtiles
exit status: 0; 1 if the file is not a tile archive this station can serve; 2 for a usage error
"""


def add_map_parser(sub) -> None:
    """Add `map` (with `fetch` and `info`) to a parser's subcommands; its `func` is run_map."""
    parser = sub.add_parser(
        "map", help="install a region's OpenStreetMap tiles at home, or describe a tile file",
        description="The dashboard's map in the field comes from a tile file installed before the chase: "
                    "`map fetch` cuts a region out of a published PMTiles archive, `map info` describes "
                    "an MBTiles or PMTiles file.",
    )
    commands = parser.add_subparsers(dest="map_command", required=True, metavar="SUBCOMMAND")
    fetch = commands.add_parser(
        "fetch", help="install the tiles around a place from a PMTiles archive (URL or file)",
        description="Read the tiles of a region, from --min-zoom to --max-zoom, out of a PMTiles archive by "
                    "HTTP range requests (or from a local file) and write them to a new PMTiles file for "
                    "`serve --tiles`. An interrupted fetch leaves no file behind; run it again.",
        epilog=FETCH_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fetch.add_argument("--source", required=True, metavar="URL|FILE",
                       help="the PMTiles v3 archive to cut from: an http(s) URL that supports range requests, or a path")
    where = fetch.add_mutually_exclusive_group(required=True)
    where.add_argument("--around", nargs="+", metavar="COORD",
                       help="LAT LON in degrees (or LAT,LON; --around=-33.9,151.2 when LAT is negative): "
                            "the centre of a circle of --radius-km")
    where.add_argument("--bbox", metavar="W,S,E,N",
                       help="the box west,south,east,north in degrees (--bbox=-3.6,50.2,-1.9,51.1 when west is "
                            "negative; west > east crosses the antimeridian)")
    fetch.add_argument("--radius-km", type=positive_number("km"), metavar="KM", help="with --around: the radius")
    fetch.add_argument("--min-zoom", type=int, default=0, metavar="Z", help="the lowest zoom to install (default 0)")
    fetch.add_argument("--max-zoom", type=int, required=True, metavar="Z",
                       help="the highest zoom to install: 12 to 14 for a chase (see below)")
    fetch.add_argument("-o", "--out", type=Path, required=True, metavar="OUT.pmtiles", help="the file to write")
    fetch.add_argument("--dry-run", action="store_true",
                       help="read the source's directories and print how many tiles and bytes the region has; write nothing")
    fetch.set_defaults(func=run_map)
    info = commands.add_parser(
        "info", help="describe an MBTiles or PMTiles file",
        description="Print a tile file's kind, format, zoom range, bounds, tile count and attribution.",
        epilog=INFO_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    info.add_argument("file", type=Path, metavar="FILE")
    info.set_defaults(func=run_map)
    parser.set_defaults(func=run_map)


def _region(args) -> tuple[tuple[float, float, float, float], int, int]:
    """The box and zooms asked for; ValueError (a usage error) saying what is wrong."""
    if not 0 <= args.min_zoom <= args.max_zoom <= MAX_ZOOM:
        raise ValueError(f"--min-zoom {args.min_zoom} --max-zoom {args.max_zoom}: expected 0 <= min <= max <= {MAX_ZOOM}")
    if args.bbox is not None:
        if args.radius_km is not None:
            raise ValueError("--radius-km goes with --around, not --bbox")
        return check_bbox(args.bbox.split(",")), args.min_zoom, args.max_zoom
    if args.radius_km is None:
        raise ValueError("--around needs --radius-km KM (how far around the place to install)")
    return region_bbox(*place(args.around, "--around", altitude=False), args.radius_km), args.min_zoom, args.max_zoom


def _fetch(args) -> int:
    try:
        bbox, lo, hi = _region(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    planned = count_tiles(bbox, lo, hi)
    box = ",".join(f"{v:.4f}" for v in bbox)
    if planned > MAX_TILES:
        print(f"error: {too_many_tiles(planned, lo, hi)}", file=sys.stderr)
        return 2
    print(f"map fetch: {planned:,} tiles in {box} at zoom {lo}..{hi}, an estimated {_cost(planned)}",
          file=sys.stderr)
    try:
        report = fetch_region(args.source, args.out, bbox, lo, hi, progress=sys.stderr.isatty(), dry_run=args.dry_run)
    except (RegionError, TileFileError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # writing the output: a full disk, no permission
        print(f"error: {e.filename or args.out}: {e.strerror or e}", file=sys.stderr)
        return 1
    absent = f"; {report.tiles_absent:,} not in the source" if report.tiles_absent else ""
    if args.dry_run:
        print(f"{report.tiles:,} tiles at zoom {report.min_zoom}..{report.max_zoom}, {report.tile_bytes / 1e6:,.1f} MB "
              f"to download{absent} ({report.requests} requests to find out); nothing written")
        return 0
    print(f"wrote {report.path}: {report.tiles:,} tiles at zoom {report.min_zoom}..{report.max_zoom}, "
          f"{report.bytes_written / 1e6:,.1f} MB, {report.requests} requests{absent}")
    print("Keep \"© OpenStreetMap contributors\" visible wherever this map is shown (ODbL).")
    return 0


def _info(args) -> int:
    try:
        archive = open_tiles(args.file)
    except TileFileError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    with archive:
        info, count = archive.info, archive.tile_count()
    bounds = ",".join(f"{v:.4f}" for v in info.bounds) if info.bounds else "not given"
    center = f"{info.center[1]:.4f},{info.center[0]:.4f} at zoom {info.center[2]}" if info.center else "not given"
    print(f"file:        {args.file} ({'PMTiles v3' if isinstance(archive, PMTiles) else 'MBTiles'})")
    print(f"name:        {info.name}")
    print(f"kind:        {info.kind} ({info.format})")
    print(f"zoom:        {info.min_zoom}..{info.max_zoom}")
    print(f"bounds:      {bounds} (west,south,east,north)")
    print(f"center:      {center} (lat,lon)")
    print(f"tiles:       {count:,}" if count is not None else "tiles:       not counted by its writer")
    print(f"attribution: {info.attribution or 'none given (OpenStreetMap data needs one: © OpenStreetMap contributors)'}")
    return 0


def run_map(args) -> int:
    """`map fetch` or `map info`: 0 done, 1 a failure (one line on standard error), 2 a usage error."""
    if args.map_command == "fetch":
        return _fetch(args)
    if args.map_command == "info":
        return _info(args)
    print(f"error: unknown map command {args.map_command!r}", file=sys.stderr)
    return 2
