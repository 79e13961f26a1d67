"""The database file: its tables and their migrations, and a connection that is on the card
when a commit returns."""

from __future__ import annotations

from pathlib import Path

import apsw

SCHEMA_VERSION = 3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    id             INTEGER PRIMARY KEY,
    stream         TEXT    NOT NULL,
    priority       INTEGER NOT NULL,
    boot           INTEGER NOT NULL,
    seq            INTEGER NOT NULL,
    created        REAL    NOT NULL,
    payload        BLOB    NOT NULL,
    send_count     INTEGER NOT NULL DEFAULT 0,
    state          TEXT    NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'sent', 'acknowledged', 'expired')),
    sent_at        REAL,
    UNIQUE (stream, boot, seq)
);
CREATE INDEX IF NOT EXISTS records_queue ON records (state, priority, created);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS state (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
# 3: a record may expire unsent (a musing gone stale before it aired): a CHECK is changed only by
# building the table anew, in the migration's one transaction.
_MIGRATIONS = {2: ["ALTER TABLE records ADD COLUMN sent_at REAL",
                   "CREATE TABLE IF NOT EXISTS state (name TEXT PRIMARY KEY, value TEXT NOT NULL)"],
               3: [_SCHEMA.split(";")[0].replace("CREATE TABLE IF NOT EXISTS records", "CREATE TABLE records_v3"),
                   "INSERT INTO records_v3 (id, stream, priority, boot, seq, created, payload, send_count, state, "
                   "sent_at) SELECT id, stream, priority, boot, seq, created, payload, send_count, state, sent_at "
                   "FROM records",
                   "DROP TABLE records",
                   "ALTER TABLE records_v3 RENAME TO records",
                   "CREATE INDEX IF NOT EXISTS records_queue ON records (state, priority, created)"]}
# The states of a record that may still go on air (the others are done with).
UNFINISHED = "('queued', 'sent')"
# What a write can fail with while the payload must go on.
WRITE_FAULTS = (apsw.FullError, apsw.IOError, apsw.CorruptError, apsw.NotADBError, apsw.ReadOnlyError)
# What opening the card's database can fail with when the card, not the software, is at fault:
# the store then runs from memory until the card takes it (docs/storage.md, "A full card").
CARD_REFUSALS = (apsw.FullError, apsw.IOError, apsw.ReadOnlyError, apsw.CantOpenError)


class StoreError(Exception):
    """A store this software must not use (newer schema, unknown stream); the message says which."""


def open_wal(where: str, vfs: str | None = None) -> apsw.Connection:
    """An apsw connection in WAL mode with synchronous=FULL (a commit is on the card when it
    returns), waiting up to 5 s for a lock; `vfs` is the power-cut tests' hook."""
    flags = apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE
    db = apsw.Connection(where, flags=flags, vfs=vfs) if vfs else apsw.Connection(where, flags=flags)
    try:
        db.setbusytimeout(5000)
        db.execute("PRAGMA journal_mode=WAL").fetchall()
        db.execute("PRAGMA synchronous=FULL")
    except BaseException:
        db.close()
        raise
    return db


def open_current(where: str, vfs: str | None, path: Path) -> apsw.Connection:
    """`open_wal`, with the tables created or migrated to SCHEMA_VERSION; StoreError for a
    file of a newer schema (`path` names the store in the message)."""
    db = open_wal(where, vfs)
    try:
        version = db.execute("PRAGMA user_version").fetchall()[0][0]
        if version > SCHEMA_VERSION:
            raise StoreError(f"{path}: store schema {version} is newer than this software's {SCHEMA_VERSION}")
        if version < SCHEMA_VERSION:  # a current file is opened without a write: a full card opens it
            db.execute("BEGIN IMMEDIATE")
            if version == 0:
                db.execute(_SCHEMA)
            else:
                for step in range(version + 1, SCHEMA_VERSION + 1):
                    for statement in _MIGRATIONS[step]:
                        db.execute(statement)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            db.execute("COMMIT")
    except BaseException:
        db.close()
        raise
    return db
