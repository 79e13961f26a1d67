"""The ground station's SQLite database: its schema, its migrations and how it is opened.

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

This module makes and migrates the schema (`prepare`); writing is `writer.Store`'s, which reads
only what its writing needs, reading the read-only `reader.GroundReader`'s.

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

import re
import sqlite3
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

from tenacity import retry, retry_if_exception, stop_after_delay, wait_random

from stratoecho.wire.uplink import CommandId

from ..pictures import PACKETS_SQL, PICTURES_SQL, migrate_packets

SCHEMA_VERSION = 12  # 2: records.data; 3: NULL temp/pressure (no reading); 4: stations, signal, outbox;
#                      5: what an outbox row answers or confirms, in columns; 6: ssdv_packets;
#                      7: stations (where each is); 8: authentic (tagged by the balloon, or open);
#                      9: outbox.refused (a row the listener would not sign, and why); 10: dead_letters;
#                      11: telemetry unique per claim (callsign, number and position), not per number;
#                      12: trust (whether the listener checks the flight's tags)
_TRUST = """CREATE TABLE trust (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    keyed INTEGER NOT NULL, fingerprint TEXT, set_at TEXT NOT NULL
)"""
_DEAD_LETTERS = """CREATE TABLE dead_letters (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL, topic TEXT NOT NULL, reason TEXT NOT NULL, size INTEGER NOT NULL, head BLOB NOT NULL
)"""

# The telemetry table as migration 11 made it, and as it still is: a later change gets a migration
# and a constant of its own, and this one stays what 11 made.
_TELEMETRY_V11 = """(
    id INTEGER PRIMARY KEY,
    boot INTEGER NOT NULL, seq INTEGER NOT NULL, callsign TEXT NOT NULL, time TEXT NOT NULL,
    lat REAL NOT NULL, lon REAL NOT NULL, alt INTEGER NOT NULL, sats INTEGER NOT NULL,
    temp_c REAL, pressure_hpa REAL, batt_mv INTEGER NOT NULL,
    received_at TEXT NOT NULL,
    authentic INTEGER NOT NULL DEFAULT 1,
    UNIQUE (callsign, boot, seq, time, lat, lon, alt)
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
CREATE TABLE telemetry """ + _TELEMETRY_V11 + """;
CREATE TABLE records (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL, boot INTEGER NOT NULL, seq INTEGER NOT NULL,
    created TEXT NOT NULL, text TEXT NOT NULL, data BLOB, received_at TEXT NOT NULL,
    authentic INTEGER NOT NULL DEFAULT 1,
    UNIQUE (kind, boot, seq)
);
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
    11: [f"CREATE TABLE telemetry_v11 {_TELEMETRY_V11}",
         "INSERT INTO telemetry_v11 SELECT * FROM telemetry",
         "DROP TABLE telemetry",
         "ALTER TABLE telemetry_v11 RENAME TO telemetry"],
    # Signed sentences: what the listener believes depends on whether it holds the key.
    12: [_TRUST, migrate_packets],
}


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


def prepare(db: sqlite3.Connection, path: str) -> None:
    """Make the schema in a new file or migrate an older one to `SCHEMA_VERSION`, then set the
    journal (WAL) and `synchronous` (the module docstring says why)."""
    # IMMEDIATE: if another process (a dashboard) opens the same new file at this
    # moment, one of them creates the schema and the other waits, then finds it made.
    db.execute("BEGIN IMMEDIATE")
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        check_schema(path, version, tables)
        if version == 0:
            for statement in filter(str.strip, _SCHEMA.split(";")):
                db.execute(statement)
        else:
            for step in range(version + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[step]:
                    statement(db) if callable(statement) else db.execute(statement)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.commit()  # one transaction: a half-made schema never gets a version number
    except BaseException:
        db.rollback()
        raise
    _enable_wal(db)
    db.execute("PRAGMA synchronous = NORMAL")


@retry(
    retry=retry_if_exception(lambda e: isinstance(e, sqlite3.OperationalError) and "locked" in str(e)),
    wait=wait_random(0.01, 0.1),
    stop=stop_after_delay(10),
    reraise=True,
)
def _enable_wal(db: sqlite3.Connection) -> None:
    # WAL is a property of the file: once one opener has switched it, the rest see it.
    # Switching needs the file to itself, so openers racing on a new file may be told
    # "locked" without waiting on the busy timeout; they try again.
    if db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
        db.execute("PRAGMA journal_mode = WAL")
