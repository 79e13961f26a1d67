"""prepare's scratch store: scrubbed messages and finished examples on disk, not in memory.

A ten-year export holds millions of messages; `prepare` reads them once, scrubs each as it
comes, and keeps it here (SQLite in a hidden file inside the output folder, deleted when the
run ends), so its memory follows the number of people, chats and sessions, never the number
of messages. SQLite does the sorting (messages by chat and time, examples by time) and the
bookkeeping (repeats, duplicates) out of core.

Only scrubbed text is written here. Repeats are recognised by a keyed hash (HMAC with a key
that lives only in this process), so not even a digest of an unscrubbed message reaches the
disk in a form anyone could test guesses against.

Messages an earlier run kept (DIR/messages.jsonl, `accumulate.py`) come in here too, marked
`carried`; `merge` then drops what is already there and lets a changed message replace its
earlier version, by the stable keys `accumulate.identity` gives.

It is scratch: no journal, no syncs; a crash leaves a hidden file that the next run removes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

from host_training.ingest import Message
from host_training.prepare.sessions import Example, Turn, repeat_reason

_EPOCH = datetime.fromtimestamp(0, timezone.utc)

BATCH = 5000  # rows per executemany
CACHE_KIB = 16_000  # SQLite's page cache for the scratch store: the part of prepare's memory that fills with size
_FIELDS = ("source", "chat_id", "chat_name", "msg_id", "author_id", "author", "is_owner", "ts", "text", "kind", "title")


class Spill:
    def __init__(self, out_dir: Path) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        for old in out_dir.glob(".prepare.*.db"):
            old.unlink(missing_ok=True)  # left by a run that crashed
        self.path = out_dir / f".prepare.{os.getpid()}.db"
        self.db = sqlite3.connect(self.path)
        for pragma in ("journal_mode=OFF", "synchronous=OFF", "temp_store=FILE", f"cache_size=-{CACHE_KIB}"):
            self.db.execute(f"PRAGMA {pragma}")
        self.db.executescript("""
            CREATE TABLE messages (id INTEGER PRIMARY KEY, source TEXT, chat_id TEXT, chat_name TEXT, msg_id TEXT,
                author_id TEXT, author TEXT, is_owner INTEGER, ts REAL, text TEXT, kind TEXT, title TEXT,
                author_key INTEGER, carried INTEGER DEFAULT 0, key TEXT, slot TEXT, same TEXT);
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

    def add(self, m: Message, author_key: int, carried: bool = False) -> None:
        self._pending.append((m.source, m.chat_id, m.chat_name, m.msg_id, m.author_id, m.author, int(m.is_owner),
                              m.ts.timestamp(), m.text, m.kind, m.title, author_key, int(carried)))
        if len(self._pending) >= BATCH:
            self.flush()

    def flush(self) -> None:
        self.db.executemany(
            f"INSERT INTO messages ({', '.join(_FIELDS)}, author_key, carried) "
            f"VALUES ({', '.join('?' * (len(_FIELDS) + 2))})",
            self._pending)
        self._pending.clear()

    def mark_owners(self, author_keys: set[int]) -> None:
        self.flush()
        self.db.execute("CREATE TEMP TABLE owners (k INTEGER PRIMARY KEY)")
        self.db.executemany("INSERT INTO owners VALUES (?)", ((k,) for k in author_keys))
        self.db.execute("UPDATE messages SET is_owner = 1 WHERE author_key IN (SELECT k FROM owners)")

    def dedupe_owner(self, min_chars: int) -> Counter[str]:
        """`sessions.repeat_reason` out of core: the owner's repeats after the first, in reading order.
        Only this run's messages: what an earlier run kept was judged then (and `merge` finds its
        copies in a new export)."""
        dropped: Counter[str] = Counter()
        self.db.execute("DELETE FROM seen")
        gone: list[tuple[int]] = []
        cursor = self.db.cursor()
        for rid, text in cursor.execute("SELECT id, text FROM messages WHERE is_owner AND NOT carried ORDER BY id"):
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

    def ordered(self, carried: bool | None = None) -> Iterator[Message]:
        """Every kept message by source, chat and time (reading order on ties); with `carried`
        only an earlier run's (True) or only this run's (False)."""
        for _, m in self._rows(carried):
            yield m

    def _rows(self, carried: bool | None) -> Iterator[tuple[int, Message]]:
        self.db.execute("CREATE INDEX IF NOT EXISTS by_chat ON messages (source, chat_id, ts, id)")
        where = "" if carried is None else f"WHERE {'' if carried else 'NOT '}carried"
        cursor = self.db.cursor()
        for row in cursor.execute(f"SELECT id, {', '.join(_FIELDS)} FROM messages {where} ORDER BY source, chat_id, ts, id"):
            values = dict(zip(_FIELDS, row[1:]))
            values["is_owner"] = bool(values["is_owner"])
            values["ts"] = datetime.fromtimestamp(values["ts"], timezone.utc)
            yield row[0], Message(**values)

    # ------------------------------------------------------------------ merging with an earlier run

    def set_identities(self, identities: Callable[[], Callable[[Message], tuple[str, str | None, str]]]) -> None:
        """Give every message its stable key, slot and comparable text: `identities()` makes an
        `accumulate.Identities`, a fresh one per side so that each side counts its own repeats."""
        self.flush()
        for carried in (True, False):
            identify = identities()
            rows: list[tuple] = []
            for rid, m in self._rows(carried):  # updating columns the scan's index does not hold
                rows.append((*identify(m), rid))
                if len(rows) >= BATCH:
                    self.db.executemany("UPDATE messages SET key = ?, slot = ?, same = ? WHERE id = ?", rows)
                    rows.clear()
            self.db.executemany("UPDATE messages SET key = ?, slot = ?, same = ? WHERE id = ?", rows)
        self.db.execute("CREATE INDEX IF NOT EXISTS by_key ON messages (key, carried)")

    def merge(self) -> tuple[Counter[str], Counter[tuple[str, str]]]:
        """This run's messages against the carried ones: one with a carried twin of the same text is
        already there (this run's copy goes); one whose text differs is a change (the carried
        version goes); a key-less message alone in its slot with a carried one alone in it is that
        message edited. What is left of this run's is new. Counts by outcome, and how often an
        author of this run's met each author of a carried twin (how --pseudonyms finds whom an
        earlier run called Person 2)."""
        outcome: Counter[str] = Counter()
        authors: Counter[tuple[str, str]] = Counter()
        drop_new: list[tuple[int]] = []
        drop_carried: set[int] = set()
        last = None
        for new_id, old_id, same, new_author, old_author in self.db.execute(
                "SELECT n.id, c.id, n.same = c.same, n.author, c.author FROM messages n JOIN messages c "
                "ON n.key = c.key WHERE NOT n.carried AND c.carried ORDER BY n.id, c.id"):
            authors[new_author, old_author] += 1
            if same:
                drop_new.append((new_id,))
            else:
                drop_carried.add(old_id)  # every earlier version of it
            if new_id != last:
                outcome["already_there" if same else "changed"] += 1
            last = new_id
        unmatched = ("slot IS NOT NULL AND NOT EXISTS (SELECT 1 FROM messages o WHERE o.key = m.key "
                     "AND o.carried != m.carried)")
        for (old_id,) in self.db.execute(
                f"SELECT max(CASE WHEN carried THEN id END) FROM messages m WHERE {unmatched} GROUP BY slot "
                "HAVING sum(carried) = 1 AND sum(NOT carried) = 1").fetchall():
            drop_carried.add(old_id)
            outcome["changed"] += 1
        self.db.executemany("DELETE FROM messages WHERE id = ?", drop_new)
        self.db.executemany("DELETE FROM messages WHERE id = ?", ((i,) for i in sorted(drop_carried)))
        outcome["new"] = self.db.execute("SELECT count(*) FROM messages WHERE NOT carried").fetchone()[0] - outcome[
            "changed"]
        return outcome, authors

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
