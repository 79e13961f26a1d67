"""What every exporter shares: the interface, the guard that keeps one exporter's failure
from reaching the others, the run over a database, and the small pure helpers
(sentence time to a full UTC date-time, "is this a real fix", atomic file writes).

An exporter takes each position as a `Heard` (groundstation/link/heard.py): its `record` a
`stratoecho.wire.Telemetry` (temp_c and pressure_hpa NaN for no reading, batt_mv 0), its
`received_at` when the ground heard it (ISO 8601 UTC). The listener hands over each new
one; `from_db` reads them back from a database, as typed rows (`store.TelemetryRow`). Dicts appear only where JSON leaves the
program: SondeHub's objects (`sondehub_object`), chase-car datagrams (`payload_summary`).
"""

from __future__ import annotations

import math
import os
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar, runtime_checkable

import structlog

from groundstation.link.heard import Heard
from stratoecho import wire
from stratoecho.wire.sentence import telemetry_datetime  # noqa: F401  (exporters import it from here)

if TYPE_CHECKING:
    from groundstation.store import GroundReader, TelemetryRow

log = structlog.get_logger(__name__)
T = TypeVar("T")


class ExportError(Exception):
    """An export that cannot be done; the message names the file or URL."""


@runtime_checkable
class Exporter(Protocol):
    def add(self, heard: Heard) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


def add_entry(table: dict, name: str, entry: T, what: str, pattern: str, is_what: str) -> T:
    """`entry` into `table` (an exporters' table: the formats, the live ones) under `name`; ValueError
    for a name taken, or one that does not match `pattern` (it is `is_what`: a flag's choice, a table)."""
    if name in table:
        raise ValueError(f"{what} {name!r} is registered already")
    if not re.fullmatch(pattern, name):
        raise ValueError(f"{what} {name!r}: the name is {is_what}, a lower-case word")
    table[name] = entry
    return entry


class Guarded:
    """Wraps an exporter so that nothing it raises reaches the caller (the decoding loop):
    each failure is logged with the exporter's name and counted in `failures`."""

    def __init__(self, inner: Exporter, name: str | None = None) -> None:
        self.inner = inner
        self.name = name or type(inner).__name__
        self.failures = 0

    def _call(self, op: str, *args: object) -> None:
        try:
            getattr(self.inner, op)(*args)
        except Exception:  # noqa: BLE001 - the point of the guard: one exporter fails alone
            self.failures += 1
            log.exception("exporter_failed", exporter=self.name, op=op, failures=self.failures)

    def add(self, *args: object) -> None:  # a Heard; an SSDV uploader's packet and when it was heard
        self._call("add", *args)

    def flush(self) -> None:
        self._call("flush")

    def close(self) -> None:
        self._call("close")


def from_db(ground: GroundReader, exporter: Exporter, *, close: bool = True) -> int:
    """Feed every telemetry row of `ground` to `exporter` in the payload's order (boot, seq),
    then close it (or only flush it, with close=False). Returns the number of rows fed."""
    rows = ground.track.telemetry()
    for row in rows:
        exporter.add(heard_from_row(row))
    if close:
        exporter.close()
    else:
        exporter.flush()
    return len(rows)


def heard_from_row(row: TelemetryRow) -> Heard:
    """A `GroundReader.track.telemetry()` row as the exporters take it."""
    return Heard(wire.Telemetry(row.callsign, row.seq, row.time, row.lat, row.lon, row.alt, row.sats,
                                _reading(row.temp_c), _reading(row.pressure_hpa), row.batt_mv, row.boot),
                 row.received_at)


def _reading(value: float | None) -> float:
    return math.nan if value is None else value  # NULL in the database, NaN on the wire: no reading


# --------------------------------------------------------------------------- time


def received_time(heard: Heard) -> datetime:
    """When the ground heard it (aware UTC); ValueError if `received_at` is not ISO 8601."""
    return utc_time(heard.received_at)


def utc_time(text: str) -> datetime:
    """An ISO 8601 time as the database keeps it (`received_at`) as aware UTC; no zone is UTC.
    ValueError if it is not ISO 8601."""
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)


def iso_z(when: datetime, micro: bool = False) -> str:
    """UTC as 2024-05-01T12:34:56Z (GPX, KML, CSV) or with .ffffffZ (SondeHub's format)."""
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------- positions


def has_fix(t: wire.Telemetry) -> bool:
    """A position worth showing anyone: finite, on the globe, not 0,0, from a GPS with satellites.
    The payload reports 0 satellites (and often 0,0) until its first fix."""
    lat, lon, sats = t.lat, t.lon, t.sats
    if not (math.isfinite(lat) and math.isfinite(lon)) or abs(lat) > 90 or abs(lon) > 180:
        return False
    return not (lat == 0.0 and lon == 0.0) and sats > 0


@dataclass(frozen=True)
class TrackPoint:
    callsign: str
    when: datetime
    lat: float
    lon: float
    alt: float
    sats: int
    boot: int
    seq: int


class TrackFile(ABC):
    """Collects fixes per callsign; each flush rewrites the whole file atomically, so a reader
    (a map open on it) sees the previous track or the new one, never half of one.
    Subclasses turn {callsign: points in time order} into bytes (`render`)."""

    suffix = ""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._points: dict[tuple[int, int], TrackPoint] = {}  # by (boot, seq): a sentence heard twice is one point
        self.skipped_no_fix = 0
        self.skipped_invalid = 0
        self._dirty = True  # write even an empty track on the first flush: the file exists after an export
        self._closed = False

    def add(self, heard: Heard) -> None:
        t = heard.record
        if not has_fix(t):
            self.skipped_no_fix += 1
            return
        try:
            point = TrackPoint(callsign=t.callsign, when=telemetry_datetime(t.time, received_time(heard)),
                               lat=t.lat, lon=t.lon, alt=float(t.alt), sats=t.sats, boot=t.boot, seq=t.seq)
        except ValueError as e:  # WireError is one: a time that is not HH:MM:SS
            self.skipped_invalid += 1
            log.warning("telemetry_skipped", exporter=type(self).__name__, reason=str(e))
            return
        key = (point.boot, point.seq)
        if key not in self._points:
            self._points[key] = point
            self._dirty = True

    @property
    def points(self) -> int:
        return len(self._points)

    def tracks(self) -> dict[str, list[TrackPoint]]:
        """Points per callsign in time order (repairs deliver late sentences out of order)."""
        out: dict[str, list[TrackPoint]] = {}
        for p in sorted(self._points.values(), key=lambda p: (p.when, p.boot, p.seq)):
            out.setdefault(p.callsign, []).append(p)
        return out

    @abstractmethod
    def render(self, tracks: dict[str, list[TrackPoint]]) -> bytes:
        """The file's bytes: GPX, KML."""

    def flush(self) -> None:
        if self._dirty:
            write_atomic(self.path, self.render(self.tracks()))
            self._dirty = False

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.flush()


def write_atomic(path: Path, data: bytes) -> None:
    """Write beside the target, fsync, rename over it: a crash leaves the old file or the new."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass  # the temporary file may never have been made; the write's error is what matters
        raise ExportError(f"cannot write {path}: {e.strerror or e}") from e
    try:  # the rename itself survives power loss only once the directory is synced
        fd = os.open(path.parent if str(path.parent) else ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # a filesystem that cannot sync a directory: the rename stands, only its durability is weaker
    finally:
        os.close(fd)
