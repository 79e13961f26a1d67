"""The flight's track: its positions, as typed rows, in the payload's order or the order heard.

Only the flight's own sentences are its track (`FlightReader.filter`: its callsign's, and at a
keyed station only what the balloon tagged; a number two claims contest is left out)."""

from __future__ import annotations

import sqlite3
from dataclasses import asdict, dataclass

from .tables import View

_TELEMETRY = "id, boot, seq, callsign, time, lat, lon, alt, sats, temp_c, pressure_hpa, batt_mv, received_at"


def _telemetry_row(row: sqlite3.Row) -> TelemetryRow:
    return TelemetryRow(**{**dict(row), "authentic": bool(row["authentic"])})


@dataclass(frozen=True)
class TelemetryRow:
    id: int  # database row: the order heard
    boot: int
    seq: int
    callsign: str
    time: str  # the sentence's HH:MM:SS UTC
    lat: float
    lon: float
    alt: int
    sats: int
    temp_c: float | None  # None: the sensor had no reading
    pressure_hpa: float | None
    batt_mv: int
    received_at: str
    authentic: bool = True  # False: an open sentence (anyone can send one); True: the balloon tagged it (late)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SentenceHeard:
    boot: int
    seq: int
    received_at: str


class TrackReader(View):
    """`GroundReader.track`."""

    def _columns(self) -> str:
        # before version 8 every position was believed as it came
        authentic = "authentic" if self._t.has_column("telemetry", "authentic") else "1 AS authentic"
        return f"{_TELEMETRY}, {authentic}"

    def telemetry(self, limit: int | None = None) -> list[TelemetryRow]:
        """The flight's positions in the payload's order (boot, seq); with `limit`, the latest ones.
        The flight's: its own callsign's only, and no number two claims contest (`FlightReader.filter`)."""
        where, args = self._flight.filter()
        sql = f"SELECT {self._columns()} FROM telemetry AS t WHERE {where} ORDER BY boot DESC, seq DESC LIMIT ?"
        return [_telemetry_row(r) for r in reversed(self._t.rows("telemetry", sql, (*args, -1 if limit is None else limit)))]

    def telemetry_since(self, after_id: int = 0, limit: int = -1) -> list[TelemetryRow]:
        """The flight's positions heard after row `after_id`, in the order heard."""
        where, args = self._flight.filter()
        sql = f"SELECT {self._columns()} FROM telemetry AS t WHERE id > ? AND {where} ORDER BY id LIMIT ?"
        return [_telemetry_row(r) for r in self._t.rows("telemetry", sql, (after_id, *args, limit))]

    def first_position(self) -> TelemetryRow | None:
        """The first sentence with a position fix (0, 0 is none): where the flight started."""
        return self._position("ASC")

    def latest_position(self) -> TelemetryRow | None:
        return self._position("DESC")

    def _position(self, order: str) -> TelemetryRow | None:
        where, args = self._flight.filter()
        rows = self._t.rows("telemetry", f"SELECT {self._columns()} FROM telemetry AS t WHERE NOT (lat = 0 AND lon = 0) "
                                         f"AND {where} ORDER BY boot {order}, seq {order} LIMIT 1", args)
        return _telemetry_row(rows[0]) if rows else None

    def max_altitude(self) -> int | None:
        where, args = self._flight.filter()
        return self._t.one("telemetry", f"SELECT max(alt) FROM telemetry AS t WHERE {where}", args)

    def sentences(self) -> list[SentenceHeard]:
        """Every one of the flight's sentences' numbers and when it was heard, in the payload's order."""
        where, args = self._flight.filter()
        return [SentenceHeard(*r) for r in self._t.rows("telemetry", "SELECT boot, seq, received_at FROM telemetry AS t "
                                                                      f"WHERE {where} ORDER BY boot, seq", args)]

    def sentences_missing(self, boot: int) -> int:
        """Sentences of `boot` between the first and the last heard that never arrived."""
        where, args = self._flight.filter()
        return self._t.one("telemetry", "SELECT sum(seq - prev - 1) FROM (SELECT seq, lag(seq) OVER (ORDER BY seq) "
                                        f"AS prev FROM telemetry AS t WHERE boot = ? AND {where}) WHERE seq - prev > 1",
                           (boot, *args), default=0)
