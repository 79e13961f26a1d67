"""Durable named state (the power mode): small values kept by name in the database's
`state` table."""

from __future__ import annotations

from .counters import Counters
from .database import Database
from .schema import WRITE_FAULTS


class NamedState:
    def __init__(self, database: Database, counters: Counters):
        self.database = database
        self.counters = counters
        self.pending: dict[str, str] = {}  # state the card refused, written when it recovers

    def set(self, name: str, value: str) -> bool:
        """Durable named state (the power mode): on the card when this returns True; held in
        memory and written when the card recovers if it returns False."""
        with self.database.lock:
            self.pending[name] = value
            try:
                self.write_refused()
                return True
            except WRITE_FAULTS as e:
                self.database.write_failed(e)
                return False

    def get(self, name: str, default: str | None = None) -> str | None:
        with self.database.lock:
            if name in self.pending:
                return self.pending[name]
            row = self.database.db.execute("SELECT value FROM state WHERE name = ?", (name,)).fetchall()
        return row[0][0] if row else default

    def write_refused(self) -> None:
        """Write what the card refused, each durable: the counters first, then the named state."""
        self.counters.write_refused()
        for name, value in list(self.pending.items()):
            self.database.op(lambda n=name, v=value: self.database.db.execute(
                "INSERT INTO state (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (n, v)), durable=True)
            del self.pending[name]

    def hold_refused(self, state: list[tuple[str, str]]) -> None:
        """State the card has not got yet (that of a RAM database), unless newer is already held."""
        for name, value in state:
            self.pending.setdefault(name, value)
