"""The ground station's SQLite database: every frame heard, every record delivered.

Tables (schema version `SCHEMA_VERSION`, kept in `PRAGMA user_version`)::

    frames     id, received_at, source, hex, ok, error,        one row per frame heard, good or bad
               station, rssi_dbm, snr_db                      (signal where the radio gives it)
    telemetry  id, boot, seq, callsign, time, lat, lon, alt, sats, temp_c,
               pressure_hpa, batt_mv, received_at             UNIQUE(boot, seq)
    records    id, kind, boot, seq, created, text, data, received_at
                                                               UNIQUE(kind, boot, seq)
    heard      kind, boot, seq, station, first_at              which station heard which record or
                                                               sentence (kind 'telemetry' for those)
    outbox     id, queued_at, command, args, what, sent_at     commands waiting for the payload's next
                                                               listen window (the dashboard queues, the
                                                               listener signs and sends)

`records.text` is what a person reads (a musing's text, or a one-line summary of a
structured record); `records.data` holds the rest: the declared fields of health
and API requests as JSON, the JPEG of an image, NULL for musings and events.

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
import sqlite3
import time
from datetime import datetime, timezone
from pathlib import Path

from tenacity import retry, retry_if_exception, stop_after_delay, wait_random

from stratoecho import wire

SCHEMA_VERSION = 4  # 2: records.data; 3: NULL temp/pressure (no reading); 4: stations, signal, outbox

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
    UNIQUE (boot, seq)
);
CREATE TABLE records (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL, boot INTEGER NOT NULL, seq INTEGER NOT NULL,
    created TEXT NOT NULL, text TEXT NOT NULL, data BLOB, received_at TEXT NOT NULL,
    UNIQUE (kind, boot, seq)
);
;
CREATE TABLE heard (
    kind TEXT NOT NULL, boot INTEGER NOT NULL, seq INTEGER NOT NULL, station TEXT NOT NULL,
    first_at TEXT NOT NULL,
    PRIMARY KEY (kind, boot, seq, station)
);
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY,
    queued_at TEXT NOT NULL,
    command INTEGER NOT NULL, args BLOB NOT NULL, what TEXT NOT NULL,
    sent_at TEXT
)
"""
_TELEMETRY_COLUMNS = (
    "boot", "seq", "callsign", "time", "lat", "lon", "alt", "sats", "temp_c", "pressure_hpa", "batt_mv",
)
_RECORD_COLUMNS = ("kind", "boot", "seq", "created", "text", "data")
# Each step takes a database from the version before it to its own.
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


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class Store:
    def __init__(self, path: str | Path, flush_interval_s: float = 0.5) -> None:
        self.path = str(path)
        self.flush_interval_s = flush_interval_s
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

    def _prepare(self) -> None:
        # IMMEDIATE: if another process (a dashboard) opens the same new file at this
        # moment, one of them creates the schema and the other waits, then finds it made.
        self._db.execute("BEGIN IMMEDIATE")
        try:
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} has schema version {version}, newer than the {SCHEMA_VERSION} this "
                    "ground station understands: use a newer stratoecho, or another --db file"
                )
            if version == 0:
                tables = self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
                if tables:
                    names = ", ".join(row[0] for row in tables)
                    raise StoreError(f"{self.path} is not a stratoecho ground database (it holds tables: {names})")
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    self._db.execute(statement)
            else:
                for step in range(version + 1, SCHEMA_VERSION + 1):
                    for statement in _MIGRATIONS[step]:
                        self._db.execute(statement)
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
                  station: str | None = None, rssi_dbm: float | None = None, snr_db: float | None = None) -> int:
        cur = self._db.execute(
            "INSERT INTO frames (received_at, source, hex, ok, error, station, rssi_dbm, snr_db) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (received_at or utc_now(), source, data.hex(), int(error is None), error, station, rssi_dbm, snr_db),
        )
        return int(cur.lastrowid or 0)

    def add_heard(self, kind: str, boot: int, seq: int, station: str, at: str | None = None) -> bool:
        """Note that `station` heard this record (or sentence); False if it was noted before."""
        cur = self._db.execute("INSERT OR IGNORE INTO heard (kind, boot, seq, station, first_at) VALUES (?, ?, ?, ?, ?)",
                               (kind, boot, seq, station, at or utc_now()))
        return cur.rowcount == 1

    def heard_by(self, kind: str, boot: int, seq: int) -> list[str]:
        rows = self._db.execute("SELECT station FROM heard WHERE kind = ? AND boot = ? AND seq = ? ORDER BY first_at",
                                (kind, boot, seq))
        return [r[0] for r in rows]

    # ----------------------------------------------------------------- the outbox

    def queue_command(self, command: int, args: bytes, what: str) -> int:
        """Queue an unsigned command (`uplink.CommandId`, its packed arguments) for the next
        listen window; committed at once, since another process (the listener) sends it."""
        cur = self._db.execute("INSERT INTO outbox (queued_at, command, args, what) VALUES (?, ?, ?, ?)",
                               (utc_now(), int(command), bytes(args), what))
        self.commit()
        return int(cur.lastrowid or 0)

    def pending_commands(self, limit: int = 8) -> list[dict]:
        rows = self._db.execute("SELECT id, queued_at, command, args, what FROM outbox WHERE sent_at IS NULL "
                                "ORDER BY id LIMIT ?", (limit,))
        return [dict(r) for r in rows]

    def mark_command_sent(self, command_id: int) -> None:
        self._db.execute("UPDATE outbox SET sent_at = ? WHERE id = ?", (utc_now(), command_id))
        self.commit()

    def last_command(self, command: int, args: bytes) -> dict | None:
        """The newest outbox row for exactly this command and these arguments, or None."""
        rows = self._db.execute("SELECT id, queued_at, what, sent_at FROM outbox WHERE command = ? AND args = ? "
                                "ORDER BY id DESC LIMIT 1", (int(command), bytes(args))).fetchall()
        return dict(rows[0]) if rows else None

    def outbox(self, limit: int = 50) -> list[dict]:
        rows = self._db.execute("SELECT id, queued_at, command, what, sent_at FROM outbox ORDER BY id DESC LIMIT ?",
                                (limit,))
        return [dict(r) for r in rows]

    def add_telemetry(self, t: wire.Telemetry, received_at: str | None = None) -> bool:
        """Store a position sentence; False if (boot, seq) was already there."""
        return self._insert("telemetry", _TELEMETRY_COLUMNS, (
            t.boot, t.seq, t.callsign, t.time, t.lat, t.lon, t.alt, t.sats,
            _none_if_nan(t.temp_c), _none_if_nan(t.pressure_hpa), t.batt_mv,  # NULL: no reading
        ), received_at)

    def add_record(self, r: wire.Record, received_at: str | None = None) -> bool:
        """Store a record; False if (kind, boot, seq) was already there."""
        created = datetime.fromtimestamp(r.created, timezone.utc).isoformat()
        return self._insert("records", _RECORD_COLUMNS,
                            (r.kind.name.lower(), r.boot, r.seq, created, r.text, _record_data(r)), received_at)

    def add(self, record: wire.Telemetry | wire.Record, received_at: str | None = None) -> bool:
        """Store a sentence or a record, whichever it is."""
        if isinstance(record, wire.Telemetry):
            return self.add_telemetry(record, received_at)
        return self.add_record(record, received_at)

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

    # ----------------------------------------------------------------- reading

    def counts(self) -> dict[str, int]:
        """Row counts: what the flight report reads (frames received, telemetry received,
        musings delivered)."""
        def one(sql: str) -> int:
            return int(self._db.execute(sql).fetchone()[0])

        return {
            "frames": one("SELECT count(*) FROM frames"),
            "frames_bad": one("SELECT count(*) FROM frames WHERE NOT ok"),
            "telemetry": one("SELECT count(*) FROM telemetry"),
            "musings": one("SELECT count(*) FROM records WHERE kind = 'musing'"),
            "events": one("SELECT count(*) FROM records WHERE kind = 'event'"),
        }

    def musings(self, limit: int | None = None) -> list[dict]:
        """Musings in the payload's order (boot, seq); with `limit`, the latest ones."""
        return self._latest("records WHERE kind = 'musing'", "kind, boot, seq, created, text, received_at", limit)

    def records(self, kind: str, limit: int | None = None) -> list[dict]:
        """Records of one kind in the payload's order; `fields` decoded, `jpeg` as bytes."""
        rows = self._latest("records WHERE kind = ?", "kind, boot, seq, created, text, data, received_at", limit, (kind,))
        for row in rows:
            data = row.pop("data")
            if data is not None:
                row["jpeg" if isinstance(data, bytes) else "fields"] = data if isinstance(data, bytes) else json.loads(data)
        return rows

    def telemetry(self, limit: int | None = None) -> list[dict]:
        """Telemetry in the payload's order (boot, seq); with `limit`, the latest ones."""
        return self._latest("telemetry", ", ".join((*_TELEMETRY_COLUMNS, "received_at")), limit)

    def _latest(self, source: str, columns: str, limit: int | None, args: tuple = ()) -> list[dict]:
        sql = f"SELECT {columns} FROM {source} ORDER BY boot DESC, seq DESC"
        rows = self._db.execute(sql + " LIMIT ?", (*args, limit)) if limit is not None else self._db.execute(sql, args)
        return [dict(row) for row in reversed(rows.fetchall())]
