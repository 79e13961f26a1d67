"""Whose flight a ground database holds (its callsign, whether its listener checks the balloon's
tags, what open sentences claim beside it) and its track, as typed rows, in the payload's order
or the order heard. Every reader of the flight's own rows (its track, its pictures) asks
`FlightReader` which rows are the flight's (`filter`: its callsign's, and at a keyed station only
what the balloon tagged; a number two claims contest is left out)."""

from __future__ import annotations

import sqlite3
from dataclasses import asdict, dataclass

from .tables import View


class FlightReader(View):
    """`GroundReader.flight`."""

    def trust(self) -> dict:
        """What the listener said it believes (writer.Store.set_trust): {"keyed": True, "fingerprint":
        ...} when it checks the flight's tags, {"keyed": False, ...} when it believes anyone; keyed
        None for a database whose listener never said (older than schema 12: anyone, as then)."""
        row = self._t.rows("trust", "SELECT keyed, fingerprint, set_at FROM trust WHERE id = 1")
        if not row:
            return {"keyed": None, "fingerprint": None, "set_at": None}
        return {"keyed": bool(row[0]["keyed"]), "fingerprint": row[0]["fingerprint"], "set_at": row[0]["set_at"]}

    def keyed(self) -> bool:
        """The listener checks the flight's tags: only what the balloon signed is the flight's."""
        return bool(self.trust()["keyed"])

    def filter(self) -> tuple[str, tuple]:
        """SQL over `telemetry AS t` for the flight's positions. With a key (`keyed`): what the
        balloon signed or tagged, nothing else, whoever speaks first or loudest. Without one, its
        callsign's, and of a number only when one claim stands under it (a forger's sentence under
        a number the balloon also used leaves that number out of the track, never in place of the
        real one)."""
        callsign = self.callsign()
        if callsign is None:
            return "0", ()
        if self.keyed():
            return "t.callsign = ? AND t.authentic = 1", (callsign,)
        contested = ("(SELECT count(*) FROM telemetry AS c WHERE c.callsign = t.callsign AND c.boot = t.boot "
                     "AND c.seq = t.seq) = 1")
        return f"t.callsign = ? AND {contested}", (callsign,)

    def callsign(self) -> str | None:
        """The flight's callsign: the one the balloon's signed or tagged frames named (a sentence,
        a late position, the boot event). With a key, only that: a claim never names the flight.
        Without one, else the one most sentences carry (a forger must outshout the beacon)."""
        if (tagged := self.tagged_callsign()) or self.keyed():
            return tagged
        return self._t.one(
            "telemetry", "SELECT callsign FROM telemetry GROUP BY callsign ORDER BY count(*) DESC, max(id) DESC LIMIT 1")

    def tagged_callsign(self) -> str | None:
        """The callsign a frame with the balloon's tag named, newest first; None when none has."""
        if self._t.has_column("telemetry", "authentic"):
            if found := self._t.one("telemetry", "SELECT callsign FROM telemetry WHERE authentic = 1 "
                                                 "ORDER BY id DESC LIMIT 1"):
                return found
        if not self._t.has_column("records", "authentic") or not self._t.has_column("records", "data"):
            return None
        return self._t.one("records", "SELECT json_extract(data, '$.callsign') FROM records WHERE kind = 'event' "
                                      "AND authentic = 1 AND typeof(data) = 'text' AND json_valid(data) "
                                      "AND json_extract(data, '$.event') = 'boot' "
                                      "AND coalesce(json_extract(data, '$.callsign'), '') != '' ORDER BY id DESC LIMIT 1")

    def claims(self) -> dict:
        """What open sentences claim beside the flight: other callsigns' sentences, and the
        flight's numbers two claims contest (left out of its track)."""
        callsign = self.callsign()
        others = self._t.rows("telemetry", "SELECT callsign, count(*) FROM telemetry WHERE callsign != ? "
                                           "GROUP BY callsign ORDER BY count(*) DESC LIMIT 20", (callsign or "",))
        contested = self._t.one("telemetry", "SELECT count(*) FROM (SELECT 1 FROM telemetry WHERE callsign = ? "
                                             "GROUP BY boot, seq HAVING count(*) > 1)", (callsign or "",), default=0)
        unsigned = self._t.one("telemetry", f"SELECT count(*) FROM telemetry WHERE callsign = ? AND "
                                            f"{self._t.column('telemetry', 'authentic')} = 0", (callsign or "",),
                               default=0)
        return {"callsign": callsign, "callsign_tagged": self.tagged_callsign() is not None,
                "keyed": self.trust()["keyed"], "unsigned_under_callsign": unsigned,
                "other_callsigns": {r[0]: r[1] for r in others}, "contested_numbers": contested}


# --------------------------------------------------------------------------- its track

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
