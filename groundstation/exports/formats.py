"""The formats `export --format` offers, one entry each in one table (`FORMATS`).

`cmd_export` knows no format by name: it asks the entry to check the options, build the
exporter, feed it from the database and say what it did. To add a format, write its exporter
(`add`, `flush`, `close`, as in base.py) and register an `ExportFormat`: here beside the others
for one that ships, or `register_format(...)` from elsewhere before the command line is parsed
(tests/test_export_registry.py adds one that way).

    name       the --format choice
    make       the exporter from the request (`ExportRequest`, the options typed); ValueError for an
               option it cannot use (exit 2)
    report     what it did: a `Report` (lines for standard output, warnings for standard error,
               the exit status)
    check      a usage error in the options, before the database is opened (exit 2), or None
    feed       the database (its typed rows, `store.GroundReader`) into the exporter, closing it;
               the number of rows fed (`from_db`)
    discard    an exporter never fed (the database cannot be opened): stop what it started
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .base import TrackFile, add_entry, from_db
from .csv_export import CsvTable
from .gpx import GpxTrack
from .kml import KmlTrack
from .sondehub import DEFAULT_URL, SondeHubPolicy, SondeHubUploader
from .ssdv_upload import DEFAULT_URL as SSDV_URL
from .ssdv_upload import SsdvUploader, ssdv_from_db
from .uploader import BatchUploader, UploadPolicy

if TYPE_CHECKING:
    from groundstation.store import GroundReader

E = TypeVar("E")


@dataclass(frozen=True)
class Report:
    """What one export says when it is done: `lines` for standard output, `warnings` for
    standard error, and the exit status (0 done; 1 the server refused or never took some)."""

    lines: tuple[str, ...]
    status: int = 0
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExportRequest:
    """What `export` was asked (its command line, read by groundstation/exports/__init__.py): the
    database, the format, and the options a format may use. Each entry of the table reads these."""

    db: str
    format: str
    out: str | None = None  # the file, or an upload's URL (None: the format's default)
    uploader: str | None = None  # the station's callsign, for an upload
    method: str = "PUT"  # sondehub's HTTP method
    no_gzip: bool = False
    dev: bool = False  # sondehub's test mode


def _no_usage_error(args: ExportRequest) -> None:
    return None


def _leave(exporter: object) -> None:
    """A file exporter never fed is left alone: closing it would write an empty file."""


@dataclass(frozen=True)
class ExportFormat(Generic[E]):
    """One `export --format` choice; the fields are described in the module docstring."""

    name: str
    make: Callable[[ExportRequest], E]
    report: Callable[[ExportRequest, E, int], Report]
    check: Callable[[ExportRequest], str | None] = _no_usage_error
    feed: Callable[[GroundReader, E], int] = from_db
    discard: Callable[[E], None] = _leave


FORMATS: dict[str, ExportFormat[Any]] = {}  # in the order --help lists them


def register_format(fmt: ExportFormat[Any]) -> ExportFormat[Any]:
    """Add `fmt` to the table `export --format` reads; a parser built afterwards offers it.
    ValueError for a name already taken, or one that is not a plain lower-case word."""
    return add_entry(FORMATS, fmt.name, fmt, "export format", r"[a-z][a-z0-9_-]*", "a --format choice")


# --------------------------------------------------------------------------- files


def _needs_out(args: ExportRequest) -> str | None:
    if not args.out:
        return f"--format {args.format} needs --out FILE (where to write the {args.format.upper()})"
    return None


def _writes(cls: Callable[[Path], E]) -> Callable[[ExportRequest], E]:
    """`make` for a file format: `cls(--out)`, once the folder it goes in is known to exist."""

    def make(args: ExportRequest) -> E:
        out = Path(args.out)
        if not out.parent.is_dir():
            raise ValueError(f"cannot write {out}: folder {out.parent} does not exist")
        return cls(out)

    return make


def _track_report(args: ExportRequest, track: TrackFile, rows: int) -> Report:
    return Report(
        (f"wrote {track.points} positions to {track.path} ({rows} sentences in {args.db}; "
         f"{track.skipped_no_fix} without a GPS fix left out)",),
        warnings=(f"warning: no position with a GPS fix in {args.db}: the track is empty",) if track.points == 0 else (),
    )


def _table_report(args: ExportRequest, table: CsvTable, rows: int) -> Report:
    return Report((f"wrote {table.rows} rows to {table.path} ({rows} sentences in {args.db})",))


# --------------------------------------------------------------------------- uploads


def _needs_uploader(args: ExportRequest) -> str | None:
    if not args.uploader:
        return f"--format {args.format} needs --uploader CALL (your callsign, shown as the receiving station)"
    return None


def _ssdv_usage_error(args: ExportRequest) -> str | None:
    if no_uploader := _needs_uploader(args):
        return no_uploader
    if args.dev:
        return "--dev is SondeHub's test mode; the SSDV server has none (point --out at a test server)"
    return None


def _stop(uploader: BatchUploader) -> None:
    uploader.close()  # nothing queued: only its thread to stop


def _sondehub(args: ExportRequest) -> SondeHubUploader:
    return SondeHubUploader(args.uploader, args.out or DEFAULT_URL, method=args.method, gzip=not args.no_gzip,
                            historical=True, dev=args.dev,
                            # a whole flight at once: bigger batches, and time to send them all
                            policy=SondeHubPolicy(batch_max_items=200, close_deadline_s=300.0))


def _sondehub_report(args: ExportRequest, uploader: SondeHubUploader, rows: int) -> Report:
    s = uploader.stats
    return Report(
        (f"sondehub {uploader.url}: {s['sent']} positions sent, {s['skipped_no_fix']} without a fix skipped, "
         f"{s['rejected_items']} refused, {s['failed_items']} given up after server errors, "
         f"{s['unsent_at_close']} not sent ({rows} sentences in {args.db})",),
        status=1 if s["rejected_items"] or s["failed_items"] or s["unsent_at_close"] else 0,
    )


def _ssdv(args: ExportRequest) -> SsdvUploader:
    # a whole flight's pictures at once: time to send them all
    return SsdvUploader(args.uploader, args.out or SSDV_URL, policy=UploadPolicy(close_deadline_s=300.0))


def _ssdv_report(args: ExportRequest, uploader: SsdvUploader, rows: int) -> Report:
    s = uploader.summary()
    return Report(
        (f"ssdv {uploader.url}: {s['sent']} packets sent, {s['refused']} refused, {s['dropped']} given up "
         f"after server errors, {s['unsent']} not sent ({rows} packets in {args.db})",),
        status=1 if s["refused"] or s["dropped"] or s["unsent"] else 0,
    )


register_format(ExportFormat("gpx", _writes(GpxTrack), _track_report, check=_needs_out))
register_format(ExportFormat("kml", _writes(KmlTrack), _track_report, check=_needs_out))
register_format(ExportFormat("csv", _writes(CsvTable), _table_report, check=_needs_out))
register_format(ExportFormat("sondehub", _sondehub, _sondehub_report, check=_needs_uploader, discard=_stop))
register_format(ExportFormat("ssdv", _ssdv, _ssdv_report, check=_ssdv_usage_error, feed=ssdv_from_db,
                             discard=_stop))
