"""Reading the ground database: typed rows for the dashboard, `watch`, `export`, `sim fly`, the
flight report and the soak verdict, from one place.

    with GroundReader.open("flight.db") as ground:
        ground.counts().of("musing"), ground.latest_record("health").fields, ground.station_stats()

A reader opens the file read-only (SQLite's ``mode=ro``): it never creates, migrates or locks
the station's database, so it runs beside the listener (WAL lets it read while the listener
writes) and on what an older ground station left in the field: a column an older schema lacks
reads as NULL (version 1 has no `records.data`, so no fields), a table it lacks as empty. A
missing file, a database of some other program or a newer schema is a StoreError saying so.

Rows come back as frozen dataclasses: a record's JSON `fields` decoded (a declared event's
`event` and `severity` beside its own), an image's size but never its JPEG, which only
`image()` reads. Queries a caller runs every second (the terminal view) stay in SQL; the rest
is plain Python over the rows.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from .schema import StoreError, check_schema

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
class RecordRow:
    id: int  # database row: the order records completed in
    kind: str
    boot: int
    seq: int
    created: str
    text: str  # what a person reads
    received_at: str
    fields: dict | None = None  # health and API requests: their fields; events: event, severity and fields
    jpeg_bytes: int | None = None  # an image record: the size of its JPEG (`GroundReader.image`)
    authentic: bool = True  # False: from open frames anyone can send (a musing's text sentences), untagged


@dataclass(frozen=True)
class Counts:
    frames: int
    frames_bad: int
    telemetry: int
    records: Mapping[str, int]  # kind -> records held

    @property
    def frames_good(self) -> int:
        return self.frames - self.frames_bad

    def of(self, kind: str) -> int:
        return self.records.get(kind, 0)


@dataclass(frozen=True)
class Cursor:
    """The newest row ids: where a live feed goes on from."""

    telemetry: int
    records: int


@dataclass(frozen=True)
class FrameMinute:
    minute: str  # "YYYY-MM-DDTHH:MM", UTC
    frames: int
    bad: int
    rssi_dbm: float | None  # means over the minute's frames that had a reading
    snr_db: float | None


@dataclass(frozen=True)
class StationStats:
    """Frames one station heard (station "" is this receiver, unnamed)."""

    station: str
    frames: int
    bad: int
    rssi_dbm: float | None  # means over those frames
    snr_db: float | None
    last_rssi_dbm: float | None  # its latest readings, any time
    last_snr_db: float | None
    last_heard: str | None


@dataclass(frozen=True)
class SentenceHeard:
    boot: int
    seq: int
    received_at: str


@dataclass(frozen=True)
class SsdvPacketRow:
    """One SSDV picture packet kept, as `export --format ssdv` uploads it."""

    callsign: str
    image_id: int
    packet_id: int
    packet: bytes  # all 256 bytes, sync byte included
    received_at: str


@dataclass(frozen=True)
class StationRow:
    name: str
    lat: float
    lon: float
    alt_m: float
    updated_at: str


@dataclass(frozen=True)
class OutboxRow:
    id: int
    queued_at: str
    command: int  # `uplink.CommandId`
    what: str  # the line a person reads
    sent_at: str | None
    answers_boot: int | None = None  # an API answer: the request it replies to
    answers_seq: int | None = None
    confirms: int | None = None  # a confirmation: the outbox row whose command it repeats
    refused: str | None = None  # why the listener would not sign it (never sent)

    @property
    def state(self) -> str:
        return "sent" if self.sent_at else "refused" if self.refused else "queued"


def _fields(text) -> dict | None:
    """A record's `data` column as fields: a JSON object, else None (no data, a JPEG, bad JSON)."""
    if not isinstance(text, str):
        return None
    try:
        fields = json.loads(text)
    except ValueError:
        return None
    return fields if isinstance(fields, dict) else None


class GroundReader:
    """One read-only connection to a ground database and the questions its readers ask."""

    def __init__(self, connection: sqlite3.Connection, path: str, version: int, columns: dict[str, set[str]]):
        self._db = connection
        self.path = path
        self.schema_version = version
        self._columns = columns  # table -> its columns, as this file's schema has them

    @classmethod
    def open(cls, path: str | Path) -> GroundReader:
        path = Path(path)
        if not path.is_file():
            raise StoreError(f"no ground database at {path} (start `listen --db {path}` first)")
        try:
            db = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, timeout=5.0)
        except sqlite3.Error as e:
            raise StoreError(f"cannot open database {path}: {e}") from e
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            check_schema(path, version, tables)
            columns = {t: {r[1] for r in db.execute("SELECT * FROM pragma_table_info(?)", (t,))} for t in tables}
        except sqlite3.DatabaseError as e:  # e.g. "file is not a database"
            db.close()
            raise StoreError(f"{path}: {e}") from e
        except StoreError:
            db.close()
            raise
        db.row_factory = sqlite3.Row
        return cls(db, str(path), version, columns)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> GroundReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------- helpers

    @property
    def empty(self) -> bool:
        """No schema yet: a file made, but never by a ground station."""
        return not self._columns

    def _has(self, table: str) -> bool:
        return table in self._columns

    def _column(self, table: str, column: str) -> str:
        """`column`, or NULL where this file's schema is older than the column."""
        return column if column in self._columns.get(table, ()) else "NULL"

    def _one(self, table: str, sql: str, args: tuple = (), default=None):
        """The first value of a one-row query on `table`; `default` where the table is not there."""
        if not self._has(table):
            return default
        row = self._db.execute(sql, args).fetchone()
        return default if row is None or row[0] is None else row[0]

    def _rows(self, table: str, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        return self._db.execute(sql, args).fetchall() if self._has(table) else []

    def _telemetry_columns(self) -> str:
        # before version 8 every position was believed as it came
        authentic = "authentic" if "authentic" in self._columns.get("telemetry", ()) else "1 AS authentic"
        return f"{_TELEMETRY}, {authentic}"

    def _record_columns(self) -> str:
        columns = self._columns.get("records", ())
        authentic = "authentic" if "authentic" in columns else "1 AS authentic"  # before version 8: all believed
        if "data" not in columns:  # version 1
            return f"id, kind, boot, seq, created, text, received_at, NULL AS fields, NULL AS jpeg_bytes, {authentic}"
        return ("id, kind, boot, seq, created, text, received_at, "
                "CASE WHEN typeof(data) = 'text' THEN data END AS fields, "
                f"CASE WHEN typeof(data) = 'blob' THEN length(data) END AS jpeg_bytes, {authentic}")

    @staticmethod
    def _record(row: sqlite3.Row) -> RecordRow:
        return RecordRow(**{**dict(row), "fields": _fields(row["fields"]), "authentic": bool(row["authentic"])})

    # ------------------------------------------------------------- changes

    def data_version(self) -> int:
        """Changes whenever another connection commits (the listener, a command queued)."""
        return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    def newest_ids(self) -> Cursor:
        return Cursor(self._one("telemetry", "SELECT max(id) FROM telemetry", default=0),
                      self._one("records", "SELECT max(id) FROM records", default=0))

    def newest_frame_id(self) -> int:
        return self._one("frames", "SELECT max(id) FROM frames", default=0)

    # ------------------------------------------------------------- telemetry

    def telemetry(self, limit: int | None = None) -> list[TelemetryRow]:
        """The flight's positions in the payload's order (boot, seq); with `limit`, the latest ones.
        The flight's: its own callsign's only, and no number two claims contest (`flight_filter`)."""
        where, args = self.flight_filter()
        sql = f"SELECT {self._telemetry_columns()} FROM telemetry AS t WHERE {where} ORDER BY boot DESC, seq DESC LIMIT ?"
        return [_telemetry_row(r) for r in reversed(self._rows("telemetry", sql, (*args, -1 if limit is None else limit)))]

    def telemetry_since(self, after_id: int = 0, limit: int = -1) -> list[TelemetryRow]:
        """The flight's positions heard after row `after_id`, in the order heard."""
        where, args = self.flight_filter()
        sql = f"SELECT {self._telemetry_columns()} FROM telemetry AS t WHERE id > ? AND {where} ORDER BY id LIMIT ?"
        return [_telemetry_row(r) for r in self._rows("telemetry", sql, (after_id, *args, limit))]

    def first_position(self) -> TelemetryRow | None:
        """The first sentence with a position fix (0, 0 is none): where the flight started."""
        return self._position("ASC")

    def latest_position(self) -> TelemetryRow | None:
        return self._position("DESC")

    def stations(self) -> list[StationRow]:
        """Where each station is, by name (none in a database older than schema 7)."""
        rows = self._rows("stations", "SELECT name, lat, lon, alt_m, updated_at FROM stations ORDER BY name")
        return [StationRow(**r) for r in rows]

    def _position(self, order: str) -> TelemetryRow | None:
        where, args = self.flight_filter()
        rows = self._rows("telemetry", f"SELECT {self._telemetry_columns()} FROM telemetry AS t WHERE NOT (lat = 0 AND lon = 0) "
                                       f"AND {where} ORDER BY boot {order}, seq {order} LIMIT 1", args)
        return _telemetry_row(rows[0]) if rows else None

    # ------------------------------------------------------------- whose flight

    def trust(self) -> dict:
        """What the listener said it believes (writer.Store.set_trust): {"keyed": True, "fingerprint":
        ...} when it checks the flight's tags, {"keyed": False, ...} when it believes anyone; keyed
        None for a database whose listener never said (older than schema 12: anyone, as then)."""
        row = self._rows("trust", "SELECT keyed, fingerprint, set_at FROM trust WHERE id = 1")
        if not row:
            return {"keyed": None, "fingerprint": None, "set_at": None}
        return {"keyed": bool(row[0]["keyed"]), "fingerprint": row[0]["fingerprint"], "set_at": row[0]["set_at"]}

    def keyed(self) -> bool:
        """The listener checks the flight's tags: only what the balloon signed is the flight's."""
        return bool(self.trust()["keyed"])

    def flight_filter(self) -> tuple[str, tuple]:
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
        return self._one(
            "telemetry", "SELECT callsign FROM telemetry GROUP BY callsign ORDER BY count(*) DESC, max(id) DESC LIMIT 1")

    def tagged_callsign(self) -> str | None:
        """The callsign a frame with the balloon's tag named, newest first; None when none has."""
        if "authentic" in self._columns.get("telemetry", ()):
            if found := self._one("telemetry", "SELECT callsign FROM telemetry WHERE authentic = 1 "
                                               "ORDER BY id DESC LIMIT 1"):
                return found
        if "authentic" not in self._columns.get("records", ()) or "data" not in self._columns.get("records", ()):
            return None
        return self._one("records", "SELECT json_extract(data, '$.callsign') FROM records WHERE kind = 'event' "
                                    "AND authentic = 1 AND typeof(data) = 'text' AND json_valid(data) "
                                    "AND json_extract(data, '$.event') = 'boot' "
                                    "AND coalesce(json_extract(data, '$.callsign'), '') != '' ORDER BY id DESC LIMIT 1")

    def claims(self) -> dict:
        """What open sentences claim beside the flight: other callsigns' sentences, and the
        flight's numbers two claims contest (left out of its track)."""
        callsign = self.callsign()
        others = self._rows("telemetry", "SELECT callsign, count(*) FROM telemetry WHERE callsign != ? "
                                         "GROUP BY callsign ORDER BY count(*) DESC LIMIT 20", (callsign or "",))
        contested = self._one("telemetry", "SELECT count(*) FROM (SELECT 1 FROM telemetry WHERE callsign = ? "
                                           "GROUP BY boot, seq HAVING count(*) > 1)", (callsign or "",), default=0)
        unsigned = self._one("telemetry", f"SELECT count(*) FROM telemetry WHERE callsign = ? AND "
                                          f"{self._column('telemetry', 'authentic')} = 0", (callsign or "",), default=0)
        return {"callsign": callsign, "callsign_tagged": self.tagged_callsign() is not None,
                "keyed": self.trust()["keyed"], "unsigned_under_callsign": unsigned,
                "other_callsigns": {r[0]: r[1] for r in others}, "contested_numbers": contested}

    def max_altitude(self) -> int | None:
        where, args = self.flight_filter()
        return self._one("telemetry", f"SELECT max(alt) FROM telemetry AS t WHERE {where}", args)

    def sentences(self) -> list[SentenceHeard]:
        """Every one of the flight's sentences' numbers and when it was heard, in the payload's order."""
        where, args = self.flight_filter()
        return [SentenceHeard(*r) for r in self._rows("telemetry", "SELECT boot, seq, received_at FROM telemetry AS t "
                                                                    f"WHERE {where} ORDER BY boot, seq", args)]

    def sentences_missing(self, boot: int) -> int:
        """Sentences of `boot` between the first and the last heard that never arrived."""
        where, args = self.flight_filter()
        return self._one("telemetry", "SELECT sum(seq - prev - 1) FROM (SELECT seq, lag(seq) OVER (ORDER BY seq) AS prev "
                                      f"FROM telemetry AS t WHERE boot = ? AND {where}) WHERE seq - prev > 1",
                         (boot, *args), default=0)

    # ------------------------------------------------------------- pictures' packets

    def ssdv_packets(self, flights_only: bool = False) -> list[SsdvPacketRow]:
        """Every SSDV packet kept, in the order heard (none in a database older than schema 6); with
        `flights_only` at a keyed station, only those the flight announced (what `export --format
        ssdv` uploads: a claim never goes out as the flight's)."""
        where = "WHERE picture IS NOT NULL " if flights_only and self.keyed() else ""
        rows = self._rows("ssdv_packets", "SELECT callsign, image_id, packet_id, packet, received_at FROM ssdv_packets "
                                          f"{where}ORDER BY received_at, callsign, image_id, packet_id")
        return [SsdvPacketRow(r[0], r[1], r[2], bytes(r[3]), r[4]) for r in rows]

    # ------------------------------------------------------------- records

    def records(self, kind: str | None = None, limit: int | None = None) -> list[RecordRow]:
        """Records (of one kind, or all) in the payload's order; with `limit`, the latest ones."""
        where, args = ("WHERE kind = ?", (kind,)) if kind else ("", ())
        sql = (f"SELECT {self._record_columns()} FROM records {where} "
               "ORDER BY boot DESC, seq DESC, id DESC LIMIT ?")
        return [self._record(r) for r in reversed(self._rows("records", sql, (*args, -1 if limit is None else limit)))]

    def latest_record(self, kind: str) -> RecordRow | None:
        """The newest of a kind in the payload's order (the latest health record, say)."""
        rows = self.records(kind, limit=1)
        return rows[0] if rows else None

    def records_since(self, after_id: int = 0, kind: str | None = None, limit: int = -1) -> list[RecordRow]:
        """Records completed after row `after_id` (of one kind, or all), in the order they completed."""
        where, args = ("id > ? AND kind = ?", (after_id, kind)) if kind else ("id > ?", (after_id,))
        sql = f"SELECT {self._record_columns()} FROM records WHERE {where} ORDER BY id LIMIT ?"
        return [self._record(r) for r in self._rows("records", sql, (*args, limit))]

    def last_completed(self, kind: str, limit: int) -> list[RecordRow]:
        """The last `limit` records of a kind to complete, in the order they completed."""
        sql = f"SELECT {self._record_columns()} FROM records WHERE kind = ? ORDER BY id DESC LIMIT ?"
        return [self._record(r) for r in reversed(self._rows("records", sql, (kind, max(0, limit))))]

    def image(self, boot: int, seq: int) -> bytes | None:
        """An image record's JPEG, or None."""
        if "data" not in self._columns.get("records", ()):
            return None
        rows = self._rows("records", "SELECT data FROM records WHERE kind = 'image' AND boot = ? AND seq = ?", (boot, seq))
        return rows[0][0] if rows and isinstance(rows[0][0], bytes) else None

    def record_numbers(self, *, except_kinds: tuple[str, ...] = ()) -> dict[tuple[str, int], list[int]]:
        """(kind, boot) -> the seqs held, ascending."""
        numbers: dict[tuple[str, int], list[int]] = {}
        for kind, boot, seq in self._rows("records", "SELECT kind, boot, seq FROM records ORDER BY kind, boot, seq"):
            if kind not in except_kinds:
                numbers.setdefault((kind, boot), []).append(seq)
        return numbers

    def record_gaps(self) -> dict[tuple[str, int], list[tuple[int, int]]]:
        """(kind, boot) -> the ranges of seqs missing between those held (first, last inclusive)."""
        gaps: dict[tuple[str, int], list[tuple[int, int]]] = {}
        for kind, boot, prev, seq in self._rows(
                "records", "SELECT kind, boot, prev, seq FROM (SELECT kind, boot, seq, "
                           "lag(seq) OVER (PARTITION BY kind, boot ORDER BY seq) AS prev FROM records "
                           # boot 0: pictures rebuilt from SSDV, numbered by their image id, which wraps
                           "WHERE boot > 0) "
                           "WHERE seq - prev > 1 ORDER BY kind, boot, seq"):
            gaps.setdefault((kind, boot), []).append((prev + 1, seq - 1))
        return gaps

    def newest_seqs(self, boot: int) -> dict[str, int]:
        """kind -> the highest seq held of `boot`."""
        return dict(self._rows("records", "SELECT kind, max(seq) FROM records WHERE boot = ? GROUP BY kind", (boot,)))

    # ------------------------------------------------------------- frames and the link

    def counts(self) -> Counts:
        frames, bad = (self._rows("frames", "SELECT count(*), coalesce(sum(NOT ok), 0) FROM frames") or [(0, 0)])[0]
        return Counts(frames, bad, self._one("telemetry", "SELECT count(*) FROM telemetry", default=0),
                      dict(self._rows("records", "SELECT kind, count(*) FROM records GROUP BY kind")))

    def last_heard(self) -> str | None:
        """When the newest frame was heard, good or bad."""
        return self._one("frames", "SELECT max(received_at) FROM frames")

    def frames_per_minute(self, minutes: int, until: str | None = None) -> list[FrameMinute]:
        """The last `minutes` minutes that heard frames, oldest first; with `until` (ISO, UTC),
        only frames heard by then."""
        sql = (f"SELECT substr(received_at, 1, 16) AS minute, count(*), sum(NOT ok), "
               f"avg({self._column('frames', 'rssi_dbm')}), avg({self._column('frames', 'snr_db')}) "
               "FROM frames WHERE ? IS NULL OR received_at <= ? GROUP BY minute ORDER BY minute DESC LIMIT ?")
        return [FrameMinute(*r) for r in reversed(self._rows("frames", sql, (until, until, minutes)))]

    def frames_after(self, when: str) -> int:
        """Frames whose time of reception (as text) sorts after `when` (ISO, UTC): in an older
        database, what a station with a wrong clock said it heard in the future."""
        return self._one("frames", "SELECT count(*) FROM frames WHERE received_at > ?", (when,), default=0)

    def station_stats(self, since: str | None = None) -> list[StationStats]:
        """Per station, by name: frames heard (since the ISO time `since`, or ever) and signal."""
        if "station" in self._columns.get("frames", ()):
            station, rssi, snr = "coalesce(station, '')", "avg(rssi_dbm)", "avg(snr_db)"

            def latest(column: str) -> str:
                return (f"(SELECT {column} FROM frames AS g WHERE coalesce(g.station, '') = coalesce(f.station, '') "
                        f"AND g.{column} IS NOT NULL ORDER BY g.id DESC LIMIT 1)")
        else:  # before version 4: one receiver, no signal
            station, rssi, snr = "''", "NULL", "NULL"

            def latest(column: str) -> str:
                return "NULL"

        sql = (f"SELECT {station} AS st, count(*), sum(NOT ok), {rssi}, {snr}, {latest('rssi_dbm')}, "
               f"{latest('snr_db')}, max(received_at) FROM frames AS f WHERE received_at >= ? GROUP BY st ORDER BY st")
        return [StationStats(*r) for r in self._rows("frames", sql, (since or "",))]

    def records_heard_per_station(self) -> dict[str, int]:
        """Station -> records (and sentences) it heard, counted once each."""
        return dict(self._rows("heard", "SELECT station, count(*) FROM heard GROUP BY station"))

    # ------------------------------------------------------------- the outbox

    def outbox(self, limit: int = 100) -> list[OutboxRow]:
        """The newest commands queued for the payload, newest first."""
        sql = ("SELECT id, queued_at, command, what, sent_at, "
               + ", ".join(self._column("outbox", c) for c in ("answers_boot", "answers_seq", "confirms", "refused"))
               + " FROM outbox ORDER BY id DESC LIMIT ?")
        return [OutboxRow(*r) for r in self._rows("outbox", sql, (limit,))]

    def outbox_state(self) -> tuple[int, int]:
        """(newest row, rows sent or refused): changes when a command is queued, sent or refused."""
        rows = self._rows("outbox", "SELECT coalesce(max(id), 0), count(sent_at) + count("
                          + self._column("outbox", "refused") + ") FROM outbox")
        return tuple(rows[0]) if rows else (0, 0)

    def commands_queued(self) -> int:
        """Commands waiting for the payload's next listen window."""
        return self._one("outbox", "SELECT count(*) FROM outbox WHERE sent_at IS NULL AND "
                         + self._column("outbox", "refused") + " IS NULL", default=0)
