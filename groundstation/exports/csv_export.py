"""CSV: one row per telemetry sentence, fix or not, for spreadsheets and plotting.

    boot, seq, callsign, datetime_utc, lat, lon, alt, sats, temp_c, pressure_hpa, batt_mv, received_at

A sensor without a reading is an empty cell (never 0 or NaN); `datetime_utc` is the
sentence's time joined to its date (empty if the sentence's time was not HH:MM:SS).
Rows in the order given (`from_db`: boot, seq); the file is rewritten atomically on flush.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import structlog

from groundstation.link.heard import Heard
from stratoecho.wire.common import WireError

from .base import iso_z, received_time, telemetry_datetime, write_atomic

log = structlog.get_logger(__name__)

COLUMNS = ("boot", "seq", "callsign", "datetime_utc", "lat", "lon", "alt", "sats", "temp_c", "pressure_hpa",
           "batt_mv", "received_at")


def _cell(reading: float) -> float | str:
    return "" if math.isnan(reading) else reading


class CsvTable:
    suffix = ".csv"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._rows: list[tuple] = []
        self._seen: set[tuple[int, int]] = set()
        self._dirty = True
        self._closed = False

    @property
    def rows(self) -> int:
        return len(self._rows)

    def add(self, heard: Heard) -> None:
        t = heard.record
        key = (t.boot, t.seq)
        if key in self._seen:
            return
        try:
            when = iso_z(telemetry_datetime(t.time, received_time(heard)))
        except WireError:
            when = ""
        self._seen.add(key)
        self._rows.append((t.boot, t.seq, t.callsign, when, t.lat, t.lon, t.alt, t.sats, _cell(t.temp_c),
                           _cell(t.pressure_hpa), t.batt_mv, heard.received_at))
        self._dirty = True

    def flush(self) -> None:
        if not self._dirty:
            return
        out = io.StringIO(newline="")
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(self._rows)
        write_atomic(self.path, out.getvalue().encode("utf-8"))
        self._dirty = False

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.flush()
