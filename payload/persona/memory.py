"""The persona's memory: its own past musings and the notes the ground sent up.

SQLite through apsw (as the store, so the power-cut VFS can sit under it too), with an
FTS5 index (porter stemming over unicode61, diacritics folded) for recall by words::

    entries      id, kind ('musing' | 'note'), text, created (unix s, UTC), boot, seq, source
                 (a note's source: "uplink" from the ground, "owner" seeded from the bundle)
    entries_fts  external-content FTS5 index over entries.text, kept by triggers

Durability: WAL. A note arrives once over the air and cannot be asked for again, so
its commit is `synchronous=FULL` (on the card when `remember_note` returns); a musing
is also queued for the radio by the store, so `NORMAL` (safe against a crash of the
process, maybe not of the power) is enough and spares the card a sync a minute.

Bounded: at most `max_entries`; the oldest musings go first, and notes only once no
musing is left to drop. "Oldest" is the order they were remembered (the row id), not
the `created` stamp: a Pi without a real-time clock may stamp the first minutes of a
boot with a wrong date, and eviction must not trust it.

Never fatal: a file SQLite finds damaged (or written by a newer schema) is renamed
aside as `<name>.damaged-<stamp>` and a fresh one started; an FTS index that no longer
matches its table is rebuilt from the table; a card that refuses writes loses that one
memory. Each such fault is logged and kept in `faults` for the daemon to send down as
an event. If no file can be opened at all, memory lives in RAM for this boot.
"""

from __future__ import annotations

import re
import threading
import time
import unicodedata
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import apsw
import structlog

from ..store import open_wal

log = structlog.get_logger(__name__)

SCHEMA_VERSION = 1
KINDS = ("musing", "note")
MAX_QUERY_TERMS = 24  # a MATCH of a few dozen ORed terms stays cheap; more adds nothing
OWNER = "owner"  # the source of the notes the owner approved before the flight (seed_notes)
HEARD = "heard:"  # + a callsign: the source of a musing another payload made, heard and relayed (docs/network.md)


def heard_from(callsign: str) -> str:
    """The source a musing heard from payload `callsign` is kept under."""
    return HEARD + callsign


def speaker(source: str) -> str | None:
    """The payload a note was heard from; None for the ground's notes and the owner's."""
    return source[len(HEARD):] if source.startswith(HEARD) else None

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    id      INTEGER PRIMARY KEY,
    kind    TEXT    NOT NULL CHECK (kind IN ('musing', 'note')),
    text    TEXT    NOT NULL,
    created REAL    NOT NULL,
    boot    INTEGER,
    seq     INTEGER,
    source  TEXT    NOT NULL,
    UNIQUE (kind, boot, seq)
);
CREATE INDEX IF NOT EXISTS entries_kind ON entries (kind, id);
CREATE VIRTUAL TABLE IF NOT EXISTS entries_fts USING fts5(
    text, content='entries', content_rowid='id', tokenize='porter unicode61 remove_diacritics 2'
);
CREATE TRIGGER IF NOT EXISTS entries_ai AFTER INSERT ON entries BEGIN
    INSERT INTO entries_fts(rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER IF NOT EXISTS entries_ad AFTER DELETE ON entries BEGIN
    INSERT INTO entries_fts(entries_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;
"""
_COLUMNS = "e.id, e.kind, e.text, e.created, e.boot, e.seq, e.source"
_DAMAGED = (apsw.CorruptError, apsw.NotADBError)

# Words that carry no meaning for recall, and FTS5's own operators: a query made only of
# them falls back to the most recent memories instead of matching everything or nothing.
STOP_WORDS = frozenset("""
a an and are as at be been but by do for from had has have he her his i if in into is it its
me my no not of on or our she so than that the their them then there these they this to too
us was we were what when where which who why will with you your near
""".split())
_WORD = re.compile(r"[^\W_]+")  # letters and digits; "_" and punctuation separate, as in unicode61


@dataclass(frozen=True)
class MemoryEntry:
    kind: str  # "musing" (its own words) or "note" (from the ground)
    text: str
    created: datetime  # UTC
    boot: int | None = None
    seq: int | None = None
    source: str = "self"  # "self" for musings; where a note came from ("uplink", OWNER, heard_from(callsign))
    id: int = 0


def match_expression(query: str) -> str | None:
    """An FTS5 MATCH expression from arbitrary text: its words, each a quoted string, ORed.

    Quoting makes every word a plain term whatever it is (AND, NEAR, a `*`, a column name);
    punctuation, which is where FTS5 syntax lives, never gets through the word pattern.
    None when no word is left (empty, punctuation, stop words only).
    """
    words: list[str] = []
    for w in _WORD.findall(unicodedata.normalize("NFKC", query).casefold()):
        if w not in STOP_WORDS and w not in words:
            words.append(w)
        if len(words) == MAX_QUERY_TERMS:
            break
    if not words:
        return None
    return " OR ".join('"' + w.replace('"', '""') + '"' for w in words)


def _timestamp(created: datetime | float | int) -> float:
    if isinstance(created, datetime):
        if created.tzinfo is None:  # the payload's clocks are UTC; never the Pi's local zone
            created = created.replace(tzinfo=timezone.utc)
        return created.timestamp()
    return float(created)


def _clean(text: str, limit: int) -> str:
    # A lone surrogate cannot be stored as UTF-8; replace it rather than lose the memory.
    text = text.encode("utf-8", "replace").decode("utf-8").replace("\x00", " ").strip()
    return text[:limit]


class Memory:
    def __init__(self, path: str | Path, *, max_entries: int = 2000, max_text_chars: int = 1000,
                 vfs: str | None = None):
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries}")
        self.path = Path(path)
        self.max_entries, self.max_text_chars, self.vfs = max_entries, max_text_chars, vfs
        self.faults: deque[str] = deque(maxlen=100)  # for the daemon to downlink as events
        self.fault_count = 0
        self.evicted = {"musing": 0, "note": 0}
        self._card_full = False  # the last write was refused for space (said once)
        self._lock = threading.RLock()  # the think thread and the uplink listener share one connection
        self.db: apsw.Connection | None = self._open()

    # ------------------------------------------------------------------ opening

    def _open(self) -> apsw.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                return self._connect_checked()
            except _DAMAGED as e:
                self._set_aside(f"{type(e).__name__}: {e}")
            except _NewerSchema as e:
                self._set_aside(str(e))
            return self._connect_checked()
        except (apsw.Error, OSError) as e:  # no usable file at all (read-only card, no space): remember in RAM
            self._fault(f"memory database {self.path} cannot be opened ({type(e).__name__}: {e}); "
                        "memories kept in RAM this boot")
            return self._connect(":memory:")

    def _connect(self, where: str) -> apsw.Connection:
        db = open_wal(where, self.vfs)
        try:
            version = db.execute("PRAGMA user_version").fetchall()[0][0]
            if version > SCHEMA_VERSION:
                raise _NewerSchema(f"memory schema {version} is newer than this software's {SCHEMA_VERSION}")
            with db:
                db.execute(_SCHEMA)
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except BaseException:
            db.close()
            raise
        return db

    def _connect_checked(self) -> apsw.Connection:
        db = self._connect(str(self.path))
        try:
            verdict = db.execute("PRAGMA quick_check").fetchall()  # reads every page of the table
            if verdict != [("ok",)]:
                raise apsw.CorruptError("quick_check: " + "; ".join(str(row[0]) for row in verdict[:3]))
            try:
                # rank 1: also compare the index with the table (a damaged index, or rows written
                # without the triggers). Cheap: the table is bounded to max_entries short texts.
                db.execute("INSERT INTO entries_fts(entries_fts, rank) VALUES ('integrity-check', 1)")
            except apsw.CorruptError as e:
                with db:
                    db.execute("INSERT INTO entries_fts(entries_fts) VALUES ('rebuild')")
                self._fault(f"memory search index did not match its table ({e}); rebuilt")
        except BaseException:
            db.close()
            raise
        return db

    def _set_aside(self, why: str) -> None:
        """Rename a damaged database (and its WAL) out of the way, keeping it for a later look."""
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        base, n = f"{self.path.name}.damaged-{stamp}", 1
        while self.path.with_name(base).exists():  # two faults in one second must not overwrite the first
            n += 1
            base = f"{self.path.name}.damaged-{stamp}-{n}"
        for suffix in ("", "-wal", "-shm"):
            part = self.path.with_name(self.path.name + suffix)
            if part.exists():
                part.rename(self.path.with_name(base + suffix))
        self._fault(f"memory database damaged ({why}); set aside as {base}, started a new one")

    def _fault(self, message: str) -> None:
        self.fault_count += 1
        self.faults.append(message)
        log.error("memory_fault", detail=message)

    def _run(self, what: str, work, default):
        """`work(db)` under the lock; a fault is logged and answered with `default`, never raised.
        A database found damaged while in use is set aside and a fresh one opened for next time.
        A full card is one fault until a write succeeds again, not one per musing."""
        with self._lock:
            if self.db is None:
                return default
            try:
                result = work(self.db)
                if what.startswith("remember"):  # only a write shows the card has room again
                    self._card_full = False
                return result
            except apsw.FullError as e:
                if not self._card_full:
                    self._fault(f"memory {what} failed: card full ({e}); memories wait for room")
                self._card_full = True
                return default
            except _DAMAGED as e:
                self.db.close()
                self.db = None
                self._set_aside(f"{what}: {type(e).__name__}: {e}")
                self.db = self._open()
            except apsw.Error as e:
                self._fault(f"memory {what} failed: {type(e).__name__}: {e}")
                return default
            try:  # once more on the fresh file: a note heard once should not be lost with the old one
                return work(self.db)
            except apsw.Error as e:
                self._fault(f"memory {what} failed: {type(e).__name__}: {e}")
                return default

    def take_faults(self) -> list[str]:
        """The faults kept since the last call, oldest first, to go down as events."""
        return [self.faults.popleft() for _ in range(len(self.faults))]  # one appended meanwhile waits

    def close(self) -> None:
        with self._lock:
            if self.db is not None:
                try:
                    self.db.close()  # checkpoints the WAL into the file
                except apsw.Error as e:  # what was committed is in the WAL; the next open replays it
                    self._fault(f"memory close failed: {type(e).__name__}: {e}")
                finally:
                    self.db = None

    # ------------------------------------------------------------------ writing

    def remember_musing(self, boot: int, seq: int, created: datetime | float, text: str) -> bool:
        """Keep one of its own musings (the one queued as record `boot`/`seq`). True if stored;
        False for empty text, a musing already kept under that boot and seq, or a fault."""
        return self._insert("musing", text, created, boot, seq, "self", durable=False)

    def remember_note(self, text: str, created: datetime | float, source: str = "uplink") -> bool:
        """Keep a note from the ground; on the card when this returns True."""
        return self._insert("note", text, created, None, None, source, durable=True)

    def seed_notes(self, texts: Iterable[str], created: datetime | float, source: str = OWNER) -> int:
        """Make the notes from `source` exactly `texts`: the facts the owner approved, which the bundle
        carries (persona.toml [memory]). Missing ones are added, ones no longer there removed, the
        rest left as they are (their age included), so seeding at every boot changes nothing twice.
        Returns how many were added."""
        texts = list(dict.fromkeys(t for t in (_clean(t, self.max_text_chars) for t in texts) if t))
        ts = _timestamp(created)

        def work(db: apsw.Connection) -> int:
            db.execute("PRAGMA synchronous=FULL")  # the bundle is the only other copy, and it stays
            with db:
                rows = list(db.execute("SELECT id, text FROM entries WHERE kind = 'note' AND source = ?", (source,)))
                have = {text for _, text in rows}
                gone = [(id_,) for id_, text in rows if text not in texts]
                db.executemany("DELETE FROM entries WHERE id = ?", gone)
                new = [t for t in texts if t not in have]
                db.executemany("INSERT INTO entries (kind, text, created, boot, seq, source) VALUES ('note', ?, ?, "
                               "NULL, NULL, ?)", [(t, ts, source) for t in new])
                self._evict(db)
            if new or gone:
                log.info("memory_seeded", source=source, added=len(new), removed=len(gone))
            return len(new)

        return self._run("remember_seed", work, 0)

    def _insert(self, kind, text, created, boot, seq, source, durable: bool) -> bool:
        text = _clean(text, self.max_text_chars)
        if not text:
            return False
        ts = _timestamp(created)

        def work(db: apsw.Connection) -> bool:
            db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")  # only outside a transaction
            with db:
                db.execute("INSERT OR IGNORE INTO entries (kind, text, created, boot, seq, source) "
                           "VALUES (?, ?, ?, ?, ?, ?)", (kind, text, ts, boot, seq, source))
                stored = db.changes() == 1
                self._evict(db)
            return stored

        return self._run(f"remember_{kind}", work, False)

    def _evict(self, db: apsw.Connection) -> None:
        excess = db.execute("SELECT count(*) FROM entries").fetchall()[0][0] - self.max_entries
        for kind in KINDS:  # musings first: a note cannot be heard again
            if excess <= 0:
                return
            db.execute("DELETE FROM entries WHERE id IN (SELECT id FROM entries WHERE kind = ? ORDER BY id LIMIT ?)",
                       (kind, excess))
            dropped = db.changes()
            self.evicted[kind] += dropped
            excess -= dropped

    # ------------------------------------------------------------------ reading

    def recall(self, query: str, k: int = 3, kinds: Iterable[str] | None = None) -> list[MemoryEntry]:
        """Up to `k` memories that share words with `query`, best bm25 first (the more recent of
        equals first). Any text is a safe query; one with no usable word gives `recent(k)`."""
        kinds = self._kinds(kinds)
        if k <= 0:
            return []
        expression = match_expression(query or "")
        if expression is None:
            return self.recent(k, kinds)
        where, args = self._kind_filter(kinds)
        sql = (f"SELECT {_COLUMNS} FROM entries_fts JOIN entries e ON e.id = entries_fts.rowid "
               f"WHERE entries_fts MATCH ?{where} ORDER BY bm25(entries_fts), e.id DESC LIMIT ?")
        return self._run("recall", lambda db: [_entry(row) for row in db.execute(sql, (expression, *args, k))], [])

    def recent(self, k: int = 3, kinds: Iterable[str] | None = None) -> list[MemoryEntry]:
        """The `k` memories most recently remembered, newest first."""
        kinds = self._kinds(kinds)
        if k <= 0:
            return []
        where, args = self._kind_filter(kinds)
        sql = f"SELECT {_COLUMNS} FROM entries e WHERE 1{where} ORDER BY e.id DESC LIMIT ?"
        return self._run("recent", lambda db: [_entry(row) for row in db.execute(sql, (*args, k))], [])

    def for_prompt(self, query: str, musings: int = 3, notes: int = 2) -> list[MemoryEntry]:
        """What the prompt gets: the ground's notes, then its own musings, each kind the most
        relevant to `query` first and topped up with the most recent, so a note is not forgotten
        only because today's words differ from the ground's."""
        out: list[MemoryEntry] = []
        for kind, k in (("note", notes), ("musing", musings)):
            picked = self.recall(query, k, kinds=(kind,))
            seen = {e.id for e in picked}
            picked += [e for e in self.recent(k, kinds=(kind,)) if e.id not in seen][: k - len(picked)]
            out += picked
        return out

    def count(self, kind: str | None = None) -> int:
        where, args = self._kind_filter(self._kinds(None if kind is None else (kind,)))
        return self._run("count", lambda db: db.execute(f"SELECT count(*) FROM entries e WHERE 1{where}",
                                                         args).fetchall()[0][0], 0)

    @staticmethod
    def _kinds(kinds: Iterable[str] | None) -> tuple[str, ...] | None:
        if kinds is None:
            return None
        kinds = tuple(kinds)
        unknown = [k for k in kinds if k not in KINDS]
        if unknown:
            raise ValueError(f"unknown memory kind(s) {unknown}; kinds are {list(KINDS)}")
        return kinds

    @staticmethod
    def _kind_filter(kinds: tuple[str, ...] | None) -> tuple[str, tuple]:
        if kinds is None:
            return "", ()
        return f" AND e.kind IN ({', '.join('?' * len(kinds))})", kinds


class _NewerSchema(Exception):
    """A memory file from newer software: kept aside untouched rather than misread."""


def _entry(row) -> MemoryEntry:
    id_, kind, text, created, boot, seq, source = row
    return MemoryEntry(kind=kind, text=text, created=datetime.fromtimestamp(created, timezone.utc),
                       boot=boot, seq=seq, source=source, id=id_)
