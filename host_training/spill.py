"""prepare's scratch store: scrubbed messages and finished examples on disk, not in memory.

A ten-year export holds millions of messages; `prepare` reads them once, scrubs each as it
comes, and keeps it here (SQLite in a hidden file inside the output folder, deleted when the
run ends), so its memory follows the number of people, chats and sessions, never the number
of messages. SQLite does the sorting (messages by chat and time, examples by time) and the
bookkeeping (repeats, duplicates) out of core.

Only scrubbed text is written here. Repeats are recognised by a keyed hash (HMAC with a key
that lives only in this process), so not even a digest of an unscrubbed message reaches the
disk in a form anyone could test guesses against.

It is scratch: no journal, no syncs; a crash leaves a hidden file that the next run removes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sqlite3
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from host_training.ingest import Message
from host_training.sessions import Example, Turn, repeat_reason

_EPOCH = datetime.fromtimestamp(0, timezone.utc)

BATCH = 5000  # rows per executemany
_FIELDS = ("source", "chat_id", "chat_name", "msg_id", "author_id", "author", "is_owner", "ts", "text", "kind", "title")


class Spill:
    def __init__(self, out_dir: Path) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        for old in out_dir.glob(".prepare.*.db"):
            old.unlink(missing_ok=True)  # left by a run that crashed
        self.path = out_dir / f".prepare.{os.getpid()}.db"
        self.db = sqlite3.connect(self.path)
        for pragma in ("journal_mode=OFF", "synchronous=OFF", "temp_store=FILE", "cache_size=-16000"):
            self.db.execute(f"PRAGMA {pragma}")
        self.db.executescript("""
            CREATE TABLE messages (id INTEGER PRIMARY KEY, source TEXT, chat_id TEXT, chat_name TEXT, msg_id TEXT,
                author_id TEXT, author TEXT, is_owner INTEGER, ts REAL, text TEXT, kind TEXT, title TEXT,
                author_key INTEGER);
            CREATE TABLE seen (h BLOB PRIMARY KEY) WITHOUT ROWID;
            CREATE TABLE examples (id INTEGER PRIMARY KEY, session TEXT, kind TEXT, start REAL, end REAL,
                chat TEXT, weight REAL, train_all INTEGER, turns TEXT);
        """)
        self._key = os.urandom(32)
        self._pending: list[tuple] = []

    def close(self) -> None:
        self.db.close()
        self.path.unlink(missing_ok=True)

    # ------------------------------------------------------------------ messages

    def first_time(self, *identity: object) -> bool:
        """Whether this identity (any values) is new; remembered by keyed hash only."""
        digest = hmac.new(self._key, json.dumps(identity, default=str).encode(), hashlib.sha256).digest()[:16]
        return self.db.execute("INSERT OR IGNORE INTO seen (h) VALUES (?)", (digest,)).rowcount == 1

    def add(self, m: Message, author_key: int) -> None:
        self._pending.append((m.source, m.chat_id, m.chat_name, m.msg_id, m.author_id, m.author, int(m.is_owner),
                              m.ts.timestamp(), m.text, m.kind, m.title, author_key))
        if len(self._pending) >= BATCH:
            self.flush()

    def flush(self) -> None:
        self.db.executemany(
            f"INSERT INTO messages ({', '.join(_FIELDS)}, author_key) VALUES ({', '.join('?' * (len(_FIELDS) + 1))})",
            self._pending)
        self._pending.clear()

    def mark_owners(self, author_keys: set[int]) -> None:
        self.flush()
        self.db.execute("CREATE TEMP TABLE owners (k INTEGER PRIMARY KEY)")
        self.db.executemany("INSERT INTO owners VALUES (?)", ((k,) for k in author_keys))
        self.db.execute("UPDATE messages SET is_owner = 1 WHERE author_key IN (SELECT k FROM owners)")

    def dedupe_owner(self, min_chars: int) -> Counter[str]:
        """`sessions.repeat_reason` out of core: the owner's repeats after the first, in reading order."""
        dropped: Counter[str] = Counter()
        self.db.execute("DELETE FROM seen")
        gone: list[tuple[int]] = []
        cursor = self.db.cursor()
        for rid, text in cursor.execute("SELECT id, text FROM messages WHERE is_owner ORDER BY id"):
            owner_text = Message("", "", "", "", "", "", True, _EPOCH, text)
            reason = repeat_reason(owner_text, self.first_time, min_chars)
            if reason:
                dropped[reason] += 1
                gone.append((rid,))
        self.db.executemany("DELETE FROM messages WHERE id = ?", gone)
        return dropped

    def counts(self) -> dict[str, int]:
        one = lambda sql: self.db.execute(sql).fetchone()[0]  # noqa: E731 - four one-line queries
        return {
            "kept": one("SELECT count(*) FROM messages"),
            "kept_owner": one("SELECT count(*) FROM messages WHERE is_owner AND kind = 'message'"),
            "kept_others": one("SELECT count(*) FROM messages WHERE NOT is_owner"),
            "kept_posts": one("SELECT count(*) FROM messages WHERE kind = 'post'"),
        }

    def ordered(self) -> Iterator[Message]:
        """Every kept message by source, chat and time (reading order on ties)."""
        self.db.execute("CREATE INDEX IF NOT EXISTS by_chat ON messages (source, chat_id, ts, id)")
        cursor = self.db.cursor()
        for row in cursor.execute(f"SELECT {', '.join(_FIELDS)} FROM messages ORDER BY source, chat_id, ts, id"):
            values = dict(zip(_FIELDS, row))
            values["is_owner"] = bool(values["is_owner"])
            values["ts"] = datetime.fromtimestamp(values["ts"], timezone.utc)
            yield Message(**values)

    # ------------------------------------------------------------------ examples

    def add_example(self, e: Example) -> None:
        self.db.execute(
            "INSERT INTO examples (session, kind, start, end, chat, weight, train_all, turns) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (e.session, e.kind, e.start.timestamp(), e.end.timestamp(), e.chat, e.weight, int(e.train_all),
             json.dumps([[t.role, t.name, t.content] for t in e.turns], ensure_ascii=False)))

    def session_spans(self) -> dict[str, tuple[datetime, datetime]]:
        utc = lambda t: datetime.fromtimestamp(t, timezone.utc)  # noqa: E731
        return {k: (utc(a), utc(b)) for k, a, b in
                self.db.execute("SELECT session, min(start), max(end) FROM examples GROUP BY session")}

    def chat_sizes(self) -> Counter[str]:
        return Counter(dict(self.db.execute("SELECT chat, count(*) FROM examples GROUP BY chat")))

    def example_count(self) -> int:
        return self.db.execute("SELECT count(*) FROM examples").fetchone()[0]

    def examples(self) -> Iterator[Example]:
        """Chat examples by session start (windows in order), then posts in reading order."""
        utc = lambda t: datetime.fromtimestamp(t, timezone.utc)  # noqa: E731
        cursor = self.db.cursor()
        for session, kind, start, end, chat, weight, train_all, turns in cursor.execute(
                "SELECT session, kind, start, end, chat, weight, train_all, turns FROM examples "
                "ORDER BY kind = 'post', CASE WHEN kind = 'post' THEN 0 ELSE start END, session, id"):
            yield Example(session, kind, tuple(Turn(*t) for t in json.loads(turns)), utc(start), utc(end), chat,
                          weight, bool(train_all))
