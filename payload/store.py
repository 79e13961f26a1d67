"""The durable queue between the payload's producers and the radio.

SQLite in WAL mode with `synchronous=FULL`: a record the store has accepted is on
the card before `enqueue` returns, so a power cut after that cannot lose it. The
boot counter and the sequence counters live in the same file and advance in the
same transaction as the record they number, so a sequence is never reused.

The radio reads from here, never from a memory buffer: a record leaves the
`queued` state only once its frames have gone out. Sent records stay for the
repair (NACK) machinery of the link.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

SCHEMA_VERSION = 1
# Lower number goes first: telemetry, then musings and events, then bulk.
PRIORITY = {"telemetry": 0, "event": 1, "musing": 2, "bulk": 3}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    id         INTEGER PRIMARY KEY,
    stream     TEXT    NOT NULL,
    priority   INTEGER NOT NULL,
    boot       INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    created    REAL    NOT NULL,
    payload    BLOB    NOT NULL,
    send_count INTEGER NOT NULL DEFAULT 0,
    state      TEXT    NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'sent', 'acknowledged')),
    UNIQUE (stream, boot, seq)
);
CREATE INDEX IF NOT EXISTS records_queue ON records (state, priority, created);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


class StoreError(Exception):
    """A store this software must not use (newer schema, unknown stream); the message says which."""


@dataclass(frozen=True)
class Queued:
    id: int
    stream: str
    boot: int
    seq: int
    created: float
    payload: bytes
    send_count: int


class Store:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we open transactions ourselves, so each is explicit.
        # One connection serves the beacon, think and radio threads; the lock keeps one
        # thread's statements out of another's transaction.
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._lock = threading.RLock()
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA busy_timeout=5000")
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.path}: store schema {version} is newer than this software's {SCHEMA_VERSION}")
        self.db.executescript(_SCHEMA)
        self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        with self._lock:
            self.db.close()

    # ------------------------------------------------------------------ counters

    def _bump(self, name: str) -> int:
        self.db.execute(
            "INSERT INTO counters (name, value) VALUES (?, 1) "
            "ON CONFLICT (name) DO UPDATE SET value = value + 1",
            (name,),
        )
        return self.db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()[0]

    def counter(self, name: str) -> int:
        with self._lock:
            row = self.db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return row[0] if row else 0

    def set_counter_max(self, name: str, value: int) -> int:
        """Raise counter `name` to `value` unless it already stands higher; returns the stored value.

        For counters set from outside, such as the last accepted uplink counter: a stale
        value can never lower it, and it is on the card before this returns.
        """
        with self._lock, self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute(
                "INSERT INTO counters (name, value) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET value = max(value, excluded.value)",
                (name, value),
            )
            return self.db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()[0]

    def start_boot(self) -> int:
        """Advance and return the boot counter; called once per daemon start."""
        with self._lock, self.db:
            self.db.execute("BEGIN IMMEDIATE")
            boot = self._bump("boot")
        log.info("boot", boot=boot, store=str(self.path))
        return boot

    # ------------------------------------------------------------------ queue

    def enqueue(self, stream: str, boot: int, build_payload, created: float | None = None) -> tuple[int, bytes]:
        """Number and store one record durably; returns (seq, payload).

        `build_payload(seq) -> bytes` makes the record's bytes once its sequence number
        is known, inside the same transaction, so number and record commit together.
        Sequences are per stream and never restart, across boots included.
        """
        if stream not in PRIORITY:
            raise StoreError(f"unknown stream {stream!r}; known: {', '.join(PRIORITY)}")
        created = time.time() if created is None else created
        with self._lock, self.db:
            self.db.execute("BEGIN IMMEDIATE")
            seq = self._bump(f"seq:{stream}")
            payload = build_payload(seq)
            self.db.execute(
                "INSERT INTO records (stream, priority, boot, seq, created, payload) VALUES (?, ?, ?, ?, ?, ?)",
                (stream, PRIORITY[stream], boot, seq, created, payload),
            )
        return seq, payload

    def next_queued(self) -> Queued | None:
        """The record the radio should send next (see `queued`)."""
        rows = self.queued(limit=1)
        return rows[0] if rows else None

    def queued(self, limit: int = 1, streams: tuple[str, ...] | None = None, exclude: tuple[int, ...] = ()) -> list[Queued]:
        """Queued records in sending order: highest priority first; within telemetry the
        newest (a fresh position beats a stale one); elsewhere the oldest (fair order).
        `exclude` leaves out records the radio already has in hand."""
        where, args = ["state = 'queued'"], []
        if streams:
            where.append(f"stream IN ({','.join('?' * len(streams))})")
            args += list(streams)
        if exclude:
            where.append(f"id NOT IN ({','.join('?' * len(exclude))})")
            args += list(exclude)
        with self._lock:
            rows = self.db.execute(
                "SELECT id, stream, boot, seq, created, payload, send_count FROM records "
                f"WHERE {' AND '.join(where)} ORDER BY priority, "
                "CASE WHEN stream = 'telemetry' THEN -created ELSE created END, id LIMIT ?",
                (*args, limit),
            ).fetchall()
        return [Queued(*row) for row in rows]

    def find(self, stream: str, boot: int, seq: int) -> tuple[Queued, str] | None:
        """One record and its state, for a repair request from the ground."""
        with self._lock:
            row = self.db.execute(
                "SELECT id, stream, boot, seq, created, payload, send_count, state FROM records "
                "WHERE stream = ? AND boot = ? AND seq = ?",
                (stream, boot, seq),
            ).fetchone()
        return (Queued(*row[:7]), row[7]) if row else None

    def mark_sent(self, record_id: int) -> None:
        with self._lock:
            self.db.execute(
                "UPDATE records SET state = 'sent', send_count = send_count + 1 WHERE id = ?", (record_id,)
            )

    def depth(self) -> dict[str, int]:
        with self._lock:
            rows = self.db.execute(
                "SELECT stream, COUNT(*) FROM records WHERE state = 'queued' GROUP BY stream"
            ).fetchall()
        return dict(rows)

    def counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        with self._lock:
            rows = self.db.execute("SELECT stream, state, COUNT(*) FROM records GROUP BY stream, state").fetchall()
        for stream, state, n in rows:
            out.setdefault(stream, {})[state] = n
        return out
