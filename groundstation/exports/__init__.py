"""Ground exporters: the flight's telemetry out to files, SondeHub-Amateur and chase-car maps.

Every exporter has the same three calls (`base.Exporter`): `add(heard)` (a `Heard`
position: a `wire.Telemetry` and when it was heard), `flush()`, `close()`. Decoders never
know about them; the listener hands each new position to every exporter, each wrapped
(`base.Guarded`) so one failing cannot stop the others or the decoding. `from_db(ground,
exporter)` runs one over a database, read through `store.GroundReader`.

    gpx.GpxTrack(path)          GPX 1.1 track                       file, rewritten atomically
    kml.KmlTrack(path)          KML track + launch/burst/last       file, rewritten atomically
    csv_export.CsvTable(path)   one row per sentence                file, rewritten atomically
    sondehub.SondeHubUploader   SondeHub-Amateur upload             background thread, batched
                                (with the station, `station.Station`, as a listener)
    udp_feed.UdpFeed            Horus PAYLOAD_SUMMARY datagrams     chasemapper
                                (and the predicted landing, as CALL-LANDING)

and one for pictures, which takes SSDV packets instead of positions (`add(packet, received_at)`;
the listener hands it each new packet the database kept, `ssdv_upload.ssdv_from_db` a database's):

    ssdv_upload.SsdvUploader    the SSDV server (ssdv.habhub.org)   background thread, batched

Both uploaders are `uploader.BatchUploader`s: the queue, retries and splitting are shared.
`export --format` offers the formats registered in one table, `formats.FORMATS`: each entry
says how to build its exporter from the options and what to report (formats.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .base import ExportError, Guarded, from_db
from .csv_export import CsvTable
from .formats import FORMATS, ExportFormat, ExportRequest, Report, register_format
from .gpx import GpxTrack
from .kml import KmlTrack
from .live import LIVE, LiveContext, LiveExport, live_exporters, register_live, station_from_config
from .sondehub import DEFAULT_URL
from .ssdv_upload import DEFAULT_URL as SSDV_URL
from .ssdv_upload import SsdvUploader
from .udp_feed import UdpFeed
from .uploader import UploadPolicy

__all__ = [  # what other packages and the tests take from here
    "FORMATS", "LIVE", "SSDV_URL", "CsvTable", "ExportError", "ExportFormat", "ExportRequest", "GpxTrack", "Guarded",
    "KmlTrack", "LiveContext", "LiveExport", "Report", "SsdvUploader", "UdpFeed", "UploadPolicy",
    "add_station_arguments", "cmd_export", "from_db", "live_exporters", "register_cli", "register_format",
    "register_live", "station_from_config",
]

EXPORT_EXAMPLES = """\
examples:
  python -m groundstation export --db flight.db --format gpx --out flight.gpx
  python -m groundstation export --db flight.db --format kml --out flight.kml      # Google Earth
  python -m groundstation export --db flight.db --format csv --out flight.csv
  python -m groundstation export --db flight.db --format sondehub --uploader M0ABC
  python -m groundstation export --db flight.db --format sondehub --uploader M0ABC --dev   # a trial
  python -m groundstation export --db flight.db --format ssdv --uploader M0ABC      # the pictures
  python -m groundstation export --config ground.toml --format sondehub   # listen's [database], [exports.sondehub]
exit status: 0 done; 1 the database or the output cannot be used, or the server refused or
never took some positions or packets; 2 a usage error, or a --config file that will not do
"""


def add_station_arguments(group: argparse._ArgumentGroup) -> None:
    """`listen`'s options for the station SondeHub shows (with --sondehub-uploader, its callsign)."""
    group.add_argument("--sondehub-position", nargs=3, type=float, metavar=("LAT", "LON", "ALT"),
                       help="the station's position in decimal degrees and metres above sea level, e.g. "
                            "52.2 -0.12 40: sent with every position, and the station is shown on SondeHub's "
                            "map (uploaded at start and every 6 hours); without it, no station upload")
    group.add_argument("--sondehub-radio", metavar="TEXT", help="the station's radio, free text (e.g. 'E22-400T22D')")
    group.add_argument("--sondehub-antenna", metavar="TEXT", help="the station's antenna, free text (e.g. '7-element Yagi')")
    group.add_argument("--sondehub-email", metavar="ADDR",
                       help="a contact e-mail for SondeHub's admins, should they need to reach the station "
                            "(not shown publicly)")
    group.add_argument("--sondehub-mobile", action="store_true",
                       help="the station moves: SondeHub draws it as a chase car")
    group.add_argument("--sondehub-frequency", type=float, metavar="MHZ",
                       help="the frequency the receiver is tuned to, in MHz, sent with every position (e.g. 434.2)")
    group.add_argument("--sondehub-modulation", default="LoRa", metavar="TEXT",
                       help="the modulation sent with every position (default LoRa, what the payload transmits)")


def register_cli(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `export` command (its `func` is `cmd_export`) to a parser's subcommands."""
    p = subparsers.add_parser(
        "export", help="write the flight's telemetry as GPX, KML or CSV, or upload it to SondeHub "
                       "(and its pictures to the SSDV server)",
        description=(
            "Read every telemetry sentence in the database, in the payload's order, and write it out. "
            "gpx and kml: the flight track (positions with a GPS fix only; kml adds launch, burst "
            "and last-position marks); csv: one row per sentence, empty cells where a sensor had no "
            "reading. Files are replaced atomically. sondehub: upload positions with a fix to "
            "SondeHub-Amateur (marked historical), retrying server errors; SondeHub merges "
            "positions it already has, so running this again is safe. ssdv: upload every SSDV "
            "picture packet kept in the database to the SSDV server, with when it was heard, "
            "retrying server errors; the server puts pictures together from the packets of every "
            "receiver, so a packet it has already is harmless."
        ),
        epilog=EXPORT_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--db", metavar="FILE", help="the ground database written by `listen`; required, here or as "
                                                "[database] path in --config")
    p.add_argument("--format", required=True, choices=FORMATS, help="what to produce")
    p.add_argument("--out", metavar="FILE|URL",
                   help="the file to write (gpx, kml, csv; required), or the upload URL for sondehub "
                        f"(default {DEFAULT_URL}) or ssdv (default {SSDV_URL})")
    p.add_argument("--uploader", metavar="CALL",
                   help="sondehub, ssdv: your callsign, shown as the receiving station")
    p.add_argument("--method", default="PUT", choices=("PUT", "POST"),
                   help="sondehub: HTTP method (default PUT, what SondeHub documents)")
    p.add_argument("--no-gzip", action="store_true", help="sondehub: send the JSON uncompressed")
    p.add_argument("--dev", action="store_true",
                   help="sondehub: mark the upload as a test; SondeHub checks it but does not store it")
    p.set_defaults(func=cmd_export)
    return p


def cmd_export(args: argparse.Namespace) -> int:
    """Run one format's entry over the database: its checks, its exporter, its report."""
    # here: the package imports without the database layer
    from groundstation.store import GroundReader, StoreError

    request = ExportRequest(db=args.db, format=args.format, out=args.out, uploader=args.uploader, method=args.method,
                            no_gzip=args.no_gzip, dev=args.dev)  # nothing below the command line reads `args`
    fmt = FORMATS[request.format]
    usage_error = fmt.check(request)
    if usage_error:
        print(f"error: {usage_error}", file=sys.stderr)
        return 2
    if not Path(request.db).is_file():  # export's own words: the reader's would suggest starting `listen`
        print(f"error: database {request.db} does not exist", file=sys.stderr)
        return 1
    try:
        exporter = fmt.make(request)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        ground = GroundReader.open(request.db)  # read-only: an export never changes the station's database
    except StoreError as e:
        fmt.discard(exporter)
        print(f"error: {e}", file=sys.stderr)
        return 1
    try:
        rows = fmt.feed(ground, exporter)
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        ground.close()
    report = fmt.report(request, exporter, rows)
    for line in report.lines:
        print(line)
    for line in report.warnings:
        print(line, file=sys.stderr)
    return report.status
