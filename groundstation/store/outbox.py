"""The outbox: commands queued for the payload's next listen window.

The dashboard queues (and commits at once: the listener is another process), the listener
reads what is pending, signs and sends it, or refuses a row it cannot sign and says why
(schema.py's docstring: `outbox.what` is the line a person reads; what a program asks of a
row is in its columns). Both write on a `Store`'s connection (`Outbox`, `store.outbox`); the
dashboard shows it read-only (`OutboxReader`, `GroundReader.outbox`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

from .schema import utc_now
from .tables import View


class Outbox:
    """The outbox on the writer's connection; `commit` is the `Store`'s, which every change
    here calls at once."""

    def __init__(self, db: sqlite3.Connection, commit: Callable[[], None]) -> None:
        self._db = db
        self._commit = commit

    def queue(self, command: int, args: bytes, what: str, *, answers: tuple[int, int] | None = None,
              confirms: int | None = None) -> int:
        """Queue an unsigned command (`uplink.CommandId`, its packed arguments) for the next
        listen window, `what` the line a person reads; committed at once, since another process
        (the listener) sends it. `answers`: the (boot, seq) of the API request an API_ANSWER
        replies to; `confirms`: the outbox row whose risky command this one repeats to confirm."""
        boot, seq = answers if answers is not None else (None, None)
        cur = self._db.execute(
            "INSERT INTO outbox (queued_at, command, args, what, answers_boot, answers_seq, confirms) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)", (utc_now(), int(command), bytes(args), what, boot, seq, confirms))
        self._commit()
        return int(cur.lastrowid or 0)

    def pending(self, limit: int = 8) -> list[dict]:
        rows = self._db.execute("SELECT id, queued_at, command, args, what, answers_boot, answers_seq, confirms "
                                "FROM outbox WHERE sent_at IS NULL AND refused IS NULL ORDER BY id LIMIT ?", (limit,))
        return [dict(r) for r in rows]

    def mark_sent(self, command_id: int) -> None:
        self._db.execute("UPDATE outbox SET sent_at = ? WHERE id = ?", (utc_now(), command_id))
        self._commit()

    def refuse(self, command_id: int, why: str) -> None:
        """A row the listener will not sign: never sent, and the outbox says why."""
        self._db.execute("UPDATE outbox SET refused = ? WHERE id = ?", (why, command_id))
        self._commit()

    def last(self, command: int) -> dict | None:
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


class OutboxReader(View):
    """`GroundReader.outbox`: the outbox read-only, as the dashboard shows it (an older schema's
    missing columns read as NULL)."""

    def newest(self, limit: int = 100) -> list[OutboxRow]:
        """The newest commands queued for the payload, newest first."""
        sql = ("SELECT id, queued_at, command, what, sent_at, "
               + ", ".join(self._t.column("outbox", c) for c in ("answers_boot", "answers_seq", "confirms", "refused"))
               + " FROM outbox ORDER BY id DESC LIMIT ?")
        return [OutboxRow(*r) for r in self._t.rows("outbox", sql, (limit,))]

    def state(self) -> tuple[int, int]:
        """(newest row, rows sent or refused): changes when a command is queued, sent or refused."""
        rows = self._t.rows("outbox", "SELECT coalesce(max(id), 0), count(sent_at) + count("
                            + self._t.column("outbox", "refused") + ") FROM outbox")
        return tuple(rows[0]) if rows else (0, 0)

    def waiting(self) -> int:
        """Commands waiting for the payload's next listen window."""
        return self._t.one("outbox", "SELECT count(*) FROM outbox WHERE sent_at IS NULL AND "
                           + self._t.column("outbox", "refused") + " IS NULL", default=0)
