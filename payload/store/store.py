"""`Store`: opens the one database and holds the parts that work over it — the queue, the card
fallback, the counters and the named state — and closes it. Callers use the parts themselves
(`store.queue.enqueue(...)`, `store.state.get(...)`); the store answers only for the whole:
closing, the WAL checkpoint and the health record's summary (payload/store/__init__.py tells
how it keeps what it is given)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import structlog

from ..parts.card import is_no_space
from .counters import Counters
from .database import Database
from .fallback import CardFallback
from .queue import RecordQueue
from .records import Budgets, RecordTable
from .schema import WRITE_FAULTS
from .state import NamedState

log = structlog.get_logger(__name__)

_HEALTH_STREAMS = ("musing", "event", "api_request", "image")  # whose last seq the health record reports


class Store:
    """The durable queue and its parts over one database file; see the package's docstring."""

    def __init__(self, path: str | Path, *, vfs: str | None = None, flush_s: float = 60.0,
                 budgets: Budgets | None = None, aging_s: float = 900.0, memory_limit: int = 2000,
                 clock=time.time, disk_usage=shutil.disk_usage):
        self.budgets = budgets or Budgets()
        self.database = Database(path, vfs=vfs, flush_s=flush_s, min_free=self.budgets.min_free,
                                 memory_limit=memory_limit, clock=clock, disk_usage=disk_usage)
        self.counters = Counters(self.database)
        self.state = NamedState(self.database, self.counters)
        self.records = RecordTable(self.database, self.budgets)
        self.fallback = CardFallback(self.database, self.counters, self.state, self.records)
        self.queue = RecordQueue(self.database, self.counters, self.records, self.fallback, aging_s)

    # ------------------------------------------------------------------ the whole store

    def close(self) -> None:
        database = self.database
        with database.lock:
            try:
                if not database.on_card:
                    database.card_retry_at = float("-inf")  # a clean stop tries the card once more
                    self.fallback.try_card()
                self.fallback.flush()
                if not database.held:
                    self.counters.release_reservations()
            except WRITE_FAULTS as e:
                database.write_failed(e)  # counted; what memory held is lost with the process
            finally:
                database.db.close()

    def checkpoint(self) -> None:
        """Fold the WAL into the database file (SQLite also does this by itself every ~4 MB)."""
        database = self.database
        with database.lock:
            self.fallback.flush()
            try:
                database.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            except WRITE_FAULTS as e:  # the WAL keeps the pages; the next checkpoint folds them
                if is_no_space(e):
                    database.card.refuse(database.path.name, e, database.free_or_none())
                log.warning("checkpoint_refused", error=f"{type(e).__name__}: {e}")

    def health(self) -> dict:
        """What the health record reports about the store (wire.HEALTH_FIELDS names): the
        queue, the card, and the last sequence number handed out this boot per record stream."""
        last = {f"{stream}_seq": seq for stream, seq in self.counters.last_seqs(_HEALTH_STREAMS).items()}
        return {"queue_depth": sum(self.queue.depth().values()),
                "disk_free_kb": self.database.free_bytes() // 1024,
                "store": "degraded" if self.fallback.degraded else "ok",
                "faults": self.database.fault_count, **last}
