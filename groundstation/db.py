"""The ground station's SQLite database: every frame heard, every record delivered.

Tables (schema version `SCHEMA_VERSION`, kept in `PRAGMA user_version`)::

    frames     id, received_at, source, hex, ok, error,        one row per frame heard, good or bad
               station, rssi_dbm, snr_db                      (signal where the radio gives it)
    telemetry  id, boot, seq, callsign, time, lat, lon, alt, sats, temp_c,
               pressure_hpa, batt_mv, received_at, authentic  UNIQUE(callsign, boot, seq, time, lat, lon, alt):
                                                               an open sentence is a claim of its own
                                                               callsign; two claims under one number
                                                               are both kept (`add_telemetry`)
    records    id, kind, boot, seq, created, text, data, received_at
                                                               UNIQUE(kind, boot, seq)
    heard      kind, boot, seq, station, first_at              which station heard which record or
                                                               sentence (kind 'telemetry' for those)
    ssdv_packets callsign, image_id, packet_id, packet,      each SSDV picture packet heard (its 256 bytes,
               received_at, digest, picture                   sync byte included), once per digest; `picture`:
                                                               the flight's announced picture it is of (NULL:
                                                               a claim); the picture is an image record of
                                                               boot 0 (`add_ssdv`, groundstation/pictures.py)
    pictures   picture, callsign, image_id, packets, digests,  the flight's pictures as its tagged announcements
               announced_at                                   list them (wire/pictures.py)
    outbox     id, queued_at, command, args, what, sent_at,    commands waiting for the payload's next
               answers_boot, answers_seq, confirms, refused   listen window (the dashboard queues, the
                                                               listener signs and sends, or refuses)
    stations   name, lat, lon, alt_m, updated_at              where each station is, as it says itself
                                                               (listen --station-position; the network's)
    dead_letters id, at, topic, reason, size, head           messages the network's aggregator could not
                                                               handle: set aside (acknowledged), their
                                                               first bytes kept, the newest DEAD_LETTERS_KEPT
    trust      id (1), keyed, fingerprint, set_at              whether the listener checks the flight's
                                                               tags (and with which key's fingerprint): with
                                                               one, only what the balloon signed is the
                                                               flight's; without, anyone is believed

SSDV pictures have no boot or sequence number on the air: the flight's is kept as an image
record of boot 0 (the payload numbers its boots from 1) and seq its picture number from its
tagged announcement, grown packet by packet, grey where packets are missing; no packet ever
deletes or replaces another (groundstation/pictures.py says how, and what a station without
a key does).

`records.text` is what a person reads (a musing's text, or a one-line summary of a
structured record); `records.data` holds the rest: the declared fields of health
and API requests as JSON, the JPEG of an image, NULL for musings and events.

`outbox.what` is the line a person reads; what a program asks of a row is in columns:
`answers_boot`/`answers_seq` name the API request an API_ANSWER replies to, and
`confirms` the outbox row whose risky command a confirmation repeats (NULL otherwise).
`refused` says why the listener would not sign a row (its arguments do not unpack as its
command's): the dashboard writes the outbox under another user, so the listener reads it as
it reads the air, and a bad row costs that row, never the listener.

One database is one flight. `listen --follow CALLSIGN=FILE` keeps each followed flight in a
database of its own beside `--db` (ground.db -> ground.CALLSIGN.db, `flights.flight_db_path`),
with this same schema, so the same (boot, seq) of two balloons never collide.

Which way a frame came: `frames.station` and `heard.station` are the receiving station's name,
or "<station> via <RELAYER>" for a frame heard inside another payload's relay envelope
(RELAYER its callsign where the listener knows it, else its callsign hash as 0x1A2B); the
frames row keeps the envelope as heard (`hex` starts with ef). A record heard both directly and
relayed is one row in `records` and a `heard` row for each way.

The frames table keeps what its byte quotas let in (`Store(frame_quota=...)`, groundstation/frame_quota.py):
the balloon's own tagged frames always, anything else up to a share per source and a total.

Reading is `reading.GroundReader`'s (read-only, any schema version); `Store` reads only
what its writers need on their own connection (the outbox, who heard what).

`received_at` and `created` are ISO 8601 UTC; `time` is the sentence's HH:MM:SS UTC.
Inserts into telemetry and records are `INSERT OR IGNORE`: the same record heard
twice, or again after a ground restart, is one row.

Durability: WAL with synchronous=NORMAL. In WAL mode a commit survives a crash of
this process whatever `synchronous` says; NORMAL only risks the last commits if
the *machine* loses power, which costs an fsync per commit to avoid. On the ground
that is the right trade: the station sits on mains or a laptop battery, and the
payload still holds every record in its durable queue to send again. Commits come
in small batches (`flush_interval_s`, 0.5 s by default), so a restart loses at most
that moment, and readers (the simulator's flight report, the dashboard) can read
while the listener writes.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
import time
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

import structlog
from tenacity import retry, retry_if_exception, stop_after_delay, wait_random

from stratoecho import wire
from stratoecho.wire.pictures import announcement
from stratoecho.wire.uplink import CommandId

from .frame_quota import FrameBudget, FrameQuota, bytes_by_sql
from .pictures import PACKETS_SQL, PICTURES_SQL, FlightPictures, migrate_packets

log = structlog.get_logger(__name__)

SCHEMA_VERSION = 12  # 2: records.data; 3: NULL temp/pressure (no reading); 4: stations, signal, outbox;
#                      5: what an outbox row answers or confirms, in columns; 6: ssdv_packets;
#                      7: stations (where each is); 8: authentic (tagged by the balloon, or open);
#                      9: outbox.refused (a row the listener would not sign, and why); 10: dead_letters;
#                      11: telemetry unique per claim (callsign, number and position), not per number;
#                      12: trust (whether the listener checks the flight's tags)
DEFAULT_FRAME_QUOTA = FrameQuota()  # what the frames table keeps per source and in all (frame_quota)
DEAD_LETTERS_KEPT = 1_000  # rows; a flood of bad messages replaces its own, never grows the file
DEAD_LETTER_HEAD = 256  # bytes of a set-aside message kept to read it by
_TRUST = """CREATE TABLE trust (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    keyed INTEGER NOT NULL, fingerprint TEXT, set_at TEXT NOT NULL
)"""
_DEAD_LETTERS = """CREATE TABLE dead_letters (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL, topic TEXT NOT NULL, reason TEXT NOT NULL, size INTEGER NOT NULL, head BLOB NOT NULL
)"""

_SCHEMA = """
CREATE TABLE frames (
    id INTEGER PRIMARY KEY,
    received_at TEXT NOT NULL,
    source TEXT NOT NULL,
    hex TEXT NOT NULL,
    ok INTEGER NOT NULL,
    error TEXT,
    station TEXT, rssi_dbm REAL, snr_db REAL
);
CREATE TABLE telemetry (
    id INTEGER PRIMARY KEY,
    boot INTEGER NOT NULL, seq INTEGER NOT NULL, callsign TEXT NOT NULL, time TEXT NOT NULL,
    lat REAL NOT NULL, lon REAL NOT NULL, alt INTEGER NOT NULL, sats INTEGER NOT NULL,
    temp_c REAL, pressure_hpa REAL, batt_mv INTEGER NOT NULL,
    received_at TEXT NOT NULL,
    authentic INTEGER NOT NULL DEFAULT 1,
    UNIQUE (callsign, boot, seq, time, lat, lon, alt)
);
CREATE TABLE records (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL, boot INTEGER NOT NULL, seq INTEGER NOT NULL,
    created TEXT NOT NULL, text TEXT NOT NULL, data BLOB, received_at TEXT NOT NULL,
    authentic INTEGER NOT NULL DEFAULT 1,
    UNIQUE (kind, boot, seq)
);
;
CREATE TABLE heard (
    kind TEXT NOT NULL, boot INTEGER NOT NULL, seq INTEGER NOT NULL, station TEXT NOT NULL,
    first_at TEXT NOT NULL,
    PRIMARY KEY (kind, boot, seq, station)
);
""" + PACKETS_SQL + ";\n" + PICTURES_SQL + """;
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY,
    queued_at TEXT NOT NULL,
    command INTEGER NOT NULL, args BLOB NOT NULL, what TEXT NOT NULL,
    sent_at TEXT,
    answers_boot INTEGER, answers_seq INTEGER, confirms INTEGER,
    refused TEXT
);
CREATE TABLE stations (
    name TEXT PRIMARY KEY,
    lat REAL NOT NULL, lon REAL NOT NULL, alt_m REAL NOT NULL,
    updated_at TEXT NOT NULL
);
""" + _DEAD_LETTERS + ";\n" + _TRUST
_TELEMETRY_COLUMNS = (
    "boot", "seq", "callsign", "time", "lat", "lon", "alt", "sats", "temp_c", "pressure_hpa", "batt_mv",
)
_RECORD_COLUMNS = ("kind", "boot", "seq", "created", "text", "data")


def _outbox_columns(db: sqlite3.Connection) -> None:
    """Version 5: what an outbox row answers or confirms, as columns. The rows version 4
    queued said so only in their `what` line: read once here, in the words it wrote them."""
    for column in ("answers_boot INTEGER", "answers_seq INTEGER", "confirms INTEGER"):
        db.execute(f"ALTER TABLE outbox ADD COLUMN {column}")
    answer = re.compile(r"api answer to request (\d+)/(\d+):")
    asked: dict[tuple[int, bytes], int] = {}  # (command, args) -> the newest row queued as itself
    for row_id, command, args, what in db.execute("SELECT id, command, args, what FROM outbox ORDER BY id").fetchall():
        if command == CommandId.API_ANSWER and (m := answer.match(what)):
            db.execute("UPDATE outbox SET answers_boot = ?, answers_seq = ? WHERE id = ?", (int(m[1]), int(m[2]), row_id))
        elif what.startswith("confirm: "):  # version 4 confirmed the newest row of the same command
            db.execute("UPDATE outbox SET confirms = ? WHERE id = ?", (asked.get((command, bytes(args))), row_id))
        else:
            asked[(command, bytes(args))] = row_id


# Each step takes a database from the version before it to its own: SQL, or a function of
# the connection where a step must read what is there.
_MIGRATIONS = {
    2: ["ALTER TABLE records ADD COLUMN data BLOB"],
    # SQLite cannot drop NOT NULL in place: the table is rebuilt, rows and ids kept.
    3: ["""CREATE TABLE telemetry_v3 (
            id INTEGER PRIMARY KEY,
            boot INTEGER NOT NULL, seq INTEGER NOT NULL, callsign TEXT NOT NULL, time TEXT NOT NULL,
            lat REAL NOT NULL, lon REAL NOT NULL, alt INTEGER NOT NULL, sats INTEGER NOT NULL,
            temp_c REAL, pressure_hpa REAL, batt_mv INTEGER NOT NULL,
            received_at TEXT NOT NULL,
            UNIQUE (boot, seq))""",
        "INSERT INTO telemetry_v3 SELECT * FROM telemetry",
        "DROP TABLE telemetry",
        "ALTER TABLE telemetry_v3 RENAME TO telemetry"],
    4: ["ALTER TABLE frames ADD COLUMN station TEXT",
        "ALTER TABLE frames ADD COLUMN rssi_dbm REAL",
        "ALTER TABLE frames ADD COLUMN snr_db REAL",
        """CREATE TABLE heard (
            kind TEXT NOT NULL, boot INTEGER NOT NULL, seq INTEGER NOT NULL, station TEXT NOT NULL,
            first_at TEXT NOT NULL,
            PRIMARY KEY (kind, boot, seq, station))""",
        """CREATE TABLE outbox (
            id INTEGER PRIMARY KEY,
            queued_at TEXT NOT NULL,
            command INTEGER NOT NULL, args BLOB NOT NULL, what TEXT NOT NULL,
            sent_at TEXT)"""],
    5: [_outbox_columns],
    6: ["""CREATE TABLE ssdv_packets (
        callsign TEXT NOT NULL, image_id INTEGER NOT NULL, packet_id INTEGER NOT NULL,
        packet BLOB NOT NULL, received_at TEXT NOT NULL,
        PRIMARY KEY (callsign, image_id, packet_id))"""],
    7: ["""CREATE TABLE stations (
        name TEXT PRIMARY KEY,
        lat REAL NOT NULL, lon REAL NOT NULL, alt_m REAL NOT NULL,
        updated_at TEXT NOT NULL)"""],
    # Rows from before tags were all believed as they are: 1 keeps them so.
    8: ["ALTER TABLE telemetry ADD COLUMN authentic INTEGER NOT NULL DEFAULT 1",
        "ALTER TABLE records ADD COLUMN authentic INTEGER NOT NULL DEFAULT 1"],
    9: ["ALTER TABLE outbox ADD COLUMN refused TEXT"],
    10: [_DEAD_LETTERS],
    # A sentence under one number blocked every other under it, another callsign's too: a forger
    # sending future numbers hid the real positions. Rebuilt, rows and ids kept.
    11: ["""CREATE TABLE telemetry_v11 (
            id INTEGER PRIMARY KEY,
            boot INTEGER NOT NULL, seq INTEGER NOT NULL, callsign TEXT NOT NULL, time TEXT NOT NULL,
            lat REAL NOT NULL, lon REAL NOT NULL, alt INTEGER NOT NULL, sats INTEGER NOT NULL,
            temp_c REAL, pressure_hpa REAL, batt_mv INTEGER NOT NULL,
            received_at TEXT NOT NULL,
            authentic INTEGER NOT NULL DEFAULT 1,
            UNIQUE (callsign, boot, seq, time, lat, lon, alt))""",
         "INSERT INTO telemetry_v11 SELECT * FROM telemetry",
         "DROP TABLE telemetry",
         "ALTER TABLE telemetry_v11 RENAME TO telemetry"],
    # Signed sentences: what the listener believes depends on whether it holds the key.
    12: [_TRUST, migrate_packets],
}


def _none_if_nan(value: float) -> float | None:
    return None if math.isnan(value) else value


def _record_data(r: wire.Record) -> str | bytes | None:
    """`records.data`: what `text` does not say (see the module docstring)."""
    if r.kind is wire.Kind.IMAGE:
        return bytes(r.content)
    if r.kind is wire.Kind.EVENT:  # a declared event: its name and severity beside its fields, one JSON object
        e = r.content
        return json.dumps({"event": e.name, "severity": e.severity, **e.fields}, ensure_ascii=False, sort_keys=True)
    if isinstance(r.content, dict):  # health, API requests: the declared fields
        return json.dumps(r.content, ensure_ascii=False, sort_keys=True)
    return None


class StoreError(Exception):
    """A database that cannot be opened or is not one this ground station understands."""


def check_schema(path: str | Path, version: int, tables: Iterable[str]) -> None:
    """StoreError unless a database of this `PRAGMA user_version` holding these tables is a
    ground database this code understands (version 0 and no tables: a new, empty file)."""
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path} has schema version {version}, newer than the {SCHEMA_VERSION} this "
            "ground station understands: use a newer stratoecho, or another --db file"
        )
    if version == 0 and (names := sorted(tables)):
        raise StoreError(f"{path} is not a stratoecho ground database (it holds tables: {', '.join(names)})")


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class Store:
    """`frame_quota`: the bytes the frames table may hold per source and in all (`frame_quota`;
    None: no limit, for the aggregator, which keeps its own per station); `clock` times its warnings."""

    def __init__(self, path: str | Path, flush_interval_s: float = 0.5, *,
                 frame_quota: FrameQuota | None = DEFAULT_FRAME_QUOTA, clock=time.monotonic) -> None:
        self.path = str(path)
        self.flush_interval_s = flush_interval_s
        self.frame_quota, self._clock = frame_quota, clock
        self._frame_budget: FrameBudget | None = None  # counted from the database at the first frame
        try:
            # A Store may be opened in one thread and handed to the listener's thread;
            # it is used by one thread at a time, which is all sqlite3 needs.
            self._db = sqlite3.connect(self.path, timeout=5.0, check_same_thread=False)
        except sqlite3.Error as e:
            raise StoreError(f"cannot open database {self.path}: {e}") from e
        self._db.row_factory = sqlite3.Row
        try:
            self._prepare()
        except sqlite3.DatabaseError as e:  # e.g. "file is not a database"
            self._db.close()
            raise StoreError(f"{self.path}: {e}") from e
        except StoreError:
            self._db.close()
            raise
        self._last_commit = time.monotonic()
        self.inserted = 0  # telemetry and records new to the database since opening
        self.pictures = FlightPictures(self._db)
        trust = self._db.execute("SELECT keyed FROM trust WHERE id = 1").fetchone()
        self.pictures.keyed = bool(trust and trust[0])  # until the listener says (set_trust)

    def _prepare(self) -> None:
        # IMMEDIATE: if another process (a dashboard) opens the same new file at this
        # moment, one of them creates the schema and the other waits, then finds it made.
        self._db.execute("BEGIN IMMEDIATE")
        try:
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            tables = [row[0] for row in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            check_schema(self.path, version, tables)
            if version == 0:
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    self._db.execute(statement)
            else:
                for step in range(version + 1, SCHEMA_VERSION + 1):
                    for statement in _MIGRATIONS[step]:
                        statement(self._db) if callable(statement) else self._db.execute(statement)
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self._db.commit()  # one transaction: a half-made schema never gets a version number
        except BaseException:
            self._db.rollback()
            raise
        self._enable_wal()
        self._db.execute("PRAGMA synchronous = NORMAL")

    @retry(
        retry=retry_if_exception(lambda e: isinstance(e, sqlite3.OperationalError) and "locked" in str(e)),
        wait=wait_random(0.01, 0.1),
        stop=stop_after_delay(10),
        reraise=True,
    )
    def _enable_wal(self) -> None:
        # WAL is a property of the file: once one opener has switched it, the rest see it.
        # Switching needs the file to itself, so openers racing on a new file may be told
        # "locked" without waiting on the busy timeout; they try again.
        if self._db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            self._db.execute("PRAGMA journal_mode = WAL")

    # ----------------------------------------------------------------- writing

    def add_frame(self, data: bytes, source: str, error: str | None = None, received_at: str | None = None, *,
                  station: str | None = None, rssi_dbm: float | None = None, snr_db: float | None = None,
                  vouched: bytes | None = None) -> int:
        """One row for a frame heard; its id, or 0 when the frame quota keeps it out (a claim past
        its source's share or the total: counted in `frames_not_stored`). `vouched`: the frame the
        balloon's tag checked in (frame_quota.FrameBudget.admit), never kept out."""
        received_at = received_at or utc_now()
        if self.frame_quota is not None and not self._frame_fits(data, source, error, received_at, station, vouched):
            return 0
        cur = self._db.execute(
            "INSERT INTO frames (received_at, source, hex, ok, error, station, rssi_dbm, snr_db) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (received_at, source, data.hex(), int(error is None), error, station, rssi_dbm, snr_db),
        )
        return int(cur.lastrowid or 0)

    def _frame_fits(self, data: bytes, source: str, error: str | None, received_at: str, station: str | None,
                    vouched: bytes | None) -> bool:
        if self._frame_budget is None:  # a Store that never stores a frame (the dashboard's) never counts
            self._frame_budget = FrameBudget(self.frame_quota, self.frame_bytes_by_source())
        budget = self._frame_budget
        if budget.admit(data, source, error, received_at, station, vouched=vouched):
            return True
        since = budget.warning_due(source, self._clock())
        if since is not None:
            key = budget.key(source)
            log.warning("frames past the storage quota not stored", source=key, since_last_warning=since,
                        total=budget.over_quota[key], source_quota_mb=self.frame_quota.source_bytes / 1e6,
                        total_quota_mb=self.frame_quota.total_bytes / 1e6,
                        stored_mb=round(budget.bytes.total_used / 1e6, 3))
        return False

    @property
    def frames_not_stored(self) -> dict[str, int]:
        """Frames the quota kept out since opening, by source."""
        return dict(self._frame_budget.over_quota) if self._frame_budget is not None else {}

    def add_dead_letter(self, topic: str, reason: str, payload: bytes, at: str | None = None) -> None:
        """A message set aside: acknowledged so that the broker never offers it again, its first
        DEAD_LETTER_HEAD bytes kept; the newest DEAD_LETTERS_KEPT rows stay."""
        cur = self._db.execute("INSERT INTO dead_letters (at, topic, reason, size, head) VALUES (?, ?, ?, ?, ?)",
                               (at or utc_now(), topic[:200], reason[:300], len(payload),
                                bytes(payload[:DEAD_LETTER_HEAD])))
        self._db.execute("DELETE FROM dead_letters WHERE id <= ?", (int(cur.lastrowid or 0) - DEAD_LETTERS_KEPT,))

    def frame_bytes_by_source(self) -> dict[str, int]:
        """The bytes of the frames stored, by origin, as `frame_quota.row_bytes` counts them."""
        return dict(self._db.execute(bytes_by_sql("source")))

    def frame_bytes_by_station(self) -> dict[str, int]:
        """The bytes of the frames stored from each station (the aggregator's quota counts them)."""
        return dict(self._db.execute(bytes_by_sql("station")))

    def add_heard(self, kind: str, boot: int, seq: int, station: str, at: str | None = None) -> bool:
        """Note that `station` heard this record (or sentence); False if it was noted before."""
        cur = self._db.execute("INSERT OR IGNORE INTO heard (kind, boot, seq, station, first_at) VALUES (?, ?, ?, ?, ?)",
                               (kind, boot, seq, station, at or utc_now()))
        return cur.rowcount == 1

    def set_station(self, name: str, lat: float, lon: float, alt_m: float, updated_at: str | None = None) -> None:
        """Where station `name` is (its own word: the crew's distances are measured from it).
        ValueError for a position that is none."""
        if not (all(math.isfinite(v) for v in (lat, lon, alt_m)) and abs(lat) <= 90 and abs(lon) <= 180):
            raise ValueError(f"station {name}: {lat}, {lon}, {alt_m} is not a position (LAT LON in degrees, ALT in m)")
        self._db.execute("INSERT OR REPLACE INTO stations (name, lat, lon, alt_m, updated_at) VALUES (?, ?, ?, ?, ?)",
                         (name, float(lat), float(lon), float(alt_m), updated_at or utc_now()))

    def heard_by(self, kind: str, boot: int, seq: int) -> list[str]:
        rows = self._db.execute("SELECT station FROM heard WHERE kind = ? AND boot = ? AND seq = ? ORDER BY first_at",
                                (kind, boot, seq))
        return [r[0] for r in rows]

    # ----------------------------------------------------------------- the outbox

    def queue_command(self, command: int, args: bytes, what: str, *, answers: tuple[int, int] | None = None,
                      confirms: int | None = None) -> int:
        """Queue an unsigned command (`uplink.CommandId`, its packed arguments) for the next
        listen window, `what` the line a person reads; committed at once, since another process
        (the listener) sends it. `answers`: the (boot, seq) of the API request an API_ANSWER
        replies to; `confirms`: the outbox row whose risky command this one repeats to confirm."""
        boot, seq = answers if answers is not None else (None, None)
        cur = self._db.execute(
            "INSERT INTO outbox (queued_at, command, args, what, answers_boot, answers_seq, confirms) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)", (utc_now(), int(command), bytes(args), what, boot, seq, confirms))
        self.commit()
        return int(cur.lastrowid or 0)

    def pending_commands(self, limit: int = 8) -> list[dict]:
        rows = self._db.execute("SELECT id, queued_at, command, args, what, answers_boot, answers_seq, confirms "
                                "FROM outbox WHERE sent_at IS NULL AND refused IS NULL ORDER BY id LIMIT ?", (limit,))
        return [dict(r) for r in rows]

    def mark_command_sent(self, command_id: int) -> None:
        self._db.execute("UPDATE outbox SET sent_at = ? WHERE id = ?", (utc_now(), command_id))
        self.commit()

    def refuse_command(self, command_id: int, why: str) -> None:
        """A row the listener will not sign: never sent, and the outbox says why."""
        self._db.execute("UPDATE outbox SET refused = ? WHERE id = ?", (why, command_id))
        self.commit()

    def last_command(self, command: int) -> dict | None:
        """The newest outbox row of this command, whatever its arguments (`args`), or None. With
        it, `asked` and `asked_what`: the row queued as itself (this one, or the one it confirms)."""
        rows = self._db.execute(
            "SELECT o.id, o.args, o.queued_at, o.what, o.sent_at, o.confirms, coalesce(a.id, o.id) AS asked, "
            "coalesce(a.what, o.what) AS asked_what FROM outbox AS o LEFT JOIN outbox AS a ON a.id = o.confirms "
            "WHERE o.command = ? ORDER BY o.id DESC LIMIT 1", (int(command),)).fetchall()
        return dict(rows[0]) if rows else None

    def answered_requests(self) -> set[tuple[int, int]]:
        """(boot, seq) of every API request the outbox holds an answer to, sent or not."""
        rows = self._db.execute("SELECT answers_boot, answers_seq FROM outbox WHERE answers_boot IS NOT NULL")
        return {(boot, seq) for boot, seq in rows}

    def set_trust(self, fingerprint: str | None) -> None:
        """Say what this database's listener believes: with a downlink key (its `fingerprint`),
        only what the balloon signed or tagged is the flight's; None, anyone's sentences."""
        self._db.execute("INSERT OR REPLACE INTO trust (id, keyed, fingerprint, set_at) VALUES (1, ?, ?, ?)",
                         (int(fingerprint is not None), fingerprint, utc_now()))
        self._db.commit()
        self.pictures.keyed = fingerprint is not None

    def add_telemetry(self, t: wire.Telemetry, received_at: str | None = None, authentic: bool = False) -> bool:
        """Store a position; False if it was there already. A sentence is open (anyone can send one:
        `authentic` False), a claim of its own callsign: another callsign's sentence under the same
        number, or another claim of this one's with a different position, is kept beside it, never
        in its place (the reader leaves numbers with two claims out of the track). A position the
        balloon tagged (a late one, as a record) takes the place of every open claim under its
        callsign and number, which counts as new; nothing open is kept beside it after."""
        number = (t.callsign, t.boot, t.seq)
        tagged = self._db.execute("SELECT 1 FROM telemetry WHERE callsign = ? AND boot = ? AND seq = ? AND authentic = 1",
                                  number).fetchone() is not None
        if tagged:
            return False
        if authentic:
            self._db.execute("DELETE FROM telemetry WHERE callsign = ? AND boot = ? AND seq = ? AND authentic = 0", number)
        values = (t.boot, t.seq, t.callsign, t.time, t.lat, t.lon, t.alt, t.sats,
                  _none_if_nan(t.temp_c), _none_if_nan(t.pressure_hpa), t.batt_mv)  # NULL: no reading
        return self._insert("telemetry", (*_TELEMETRY_COLUMNS, "authentic"), (*values, int(authentic)), received_at)

    def add_record(self, r: wire.Record, received_at: str | None = None, authentic: bool = True) -> bool:
        """Store a record; False if (kind, boot, seq) was already there. What the balloon tagged
        (`authentic`: a record from fragments) takes the place of what was open under the same
        number (a musing kept from its text sentences, which anyone could have sent), and that
        counts as new; nothing open ever replaces a tagged record."""
        created = datetime.fromtimestamp(r.created, timezone.utc).isoformat()
        values = (r.kind.name.lower(), r.boot, r.seq, created, r.text, _record_data(r))
        if self._insert("records", (*_RECORD_COLUMNS, "authentic"), (*values, int(authentic)), received_at):
            if authentic and r.kind is wire.Kind.EVENT and r.content.name == "picture":
                self._announce(r.content, received_at or utc_now())
            return True
        if not authentic:
            return False
        cur = self._db.execute(
            "UPDATE records SET created = ?, text = ?, data = ?, received_at = ?, authentic = 1 "
            "WHERE kind = ? AND boot = ? AND seq = ? AND authentic = 0",
            (created, r.text, values[5], received_at or utc_now(), *values[:3]))
        return cur.rowcount == 1

    def _announce(self, e, received_at: str) -> None:
        try:
            self.pictures.announce(announcement(e), received_at)
        except wire.WireError as err:  # the flight's own record, never expected: the packets stay claims
            log.error("picture announcement unread", error=str(err))

    def has_record(self, kind: wire.Kind, boot: int, seq: int) -> bool:
        """A tagged record under this number is in the database already (heard before, maybe
        before a restart)."""
        return self._db.execute("SELECT 1 FROM records WHERE kind = ? AND boot = ? AND seq = ? AND authentic = 1",
                                (kind.name.lower(), boot, seq)).fetchone() is not None

    def add(self, record: wire.Telemetry | wire.Record, received_at: str | None = None,
            authentic: bool | None = None) -> bool:
        """Store a sentence or a record, whichever it is; `authentic`: it came with the balloon's tag
        (None: as each usually comes, a position as an open sentence, a record from tagged fragments)."""
        if isinstance(record, wire.Telemetry):
            return self.add_telemetry(record, received_at, bool(authentic))
        return self.add_record(record, received_at, authentic is not False)

    def add_ssdv(self, packet: wire.SsdvPacket, received_at: str | None = None) -> bool:
        """Keep an SSDV packet, never in another's place; True when new. A packet the flight's
        announcement lists grows that picture's image record (groundstation/pictures.py)."""
        new = self.pictures.add(packet, received_at or utc_now())
        self.inserted += new
        return new

    def ssdv_announced(self, packet: wire.SsdvPacket) -> bool:
        """The flight announced `packet` (its frame is the flight's: no quota refuses it)."""
        return self.pictures.announced(packet) is not None

    def take_believed_ssdv(self) -> list[tuple[wire.SsdvPacket, str]]:
        """The packets that became the flight's since the last call, with when each was heard:
        what the SSDV upload may send."""
        out, self.pictures.believed = self.pictures.believed, []
        return out

    def _insert(self, table: str, columns: tuple[str, ...], values: tuple, received_at: str | None) -> bool:
        names = ", ".join((*columns, "received_at"))
        marks = ", ".join("?" * (len(columns) + 1))
        cur = self._db.execute(
            f"INSERT OR IGNORE INTO {table} ({names}) VALUES ({marks})",
            (*values, received_at or utc_now()),
        )
        new = cur.rowcount == 1
        self.inserted += new
        return new

    def commit(self) -> None:
        self._db.commit()
        self._last_commit = time.monotonic()

    def maybe_commit(self) -> None:
        """Commit if `flush_interval_s` passed since the last commit: batches bursts, bounds loss."""
        if time.monotonic() - self._last_commit >= self.flush_interval_s:
            self.commit()

    def close(self) -> None:
        self.commit()
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
