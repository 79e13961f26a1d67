"""`Store`: opens the one database and holds the parts that work over it — the queue, the card
fallback, the counters and the named state — and answers for them all as the store did
before it was cut by job (payload/store/__init__.py tells how it keeps what it is given)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import apsw
import structlog

from stratoecho.wire import Kind
from stratoecho.wire.events import Event

from ..parts.card import is_no_space
from .counters import Counters
from .database import Database
from .fallback import CardFallback
from .queue import RecordQueue
from .records import Budgets, RecordTable
from .schema import WRITE_FAULTS
from .state import NamedState
from .streams import Queued

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
        return {"queue_depth": sum(self.depth().values()),
                "disk_free_kb": self.free_bytes() // 1024,
                "store": "degraded" if self.degraded else "ok",
                "faults": self.fault_count, **last}

    # ------------------------------------------------------------------ the parts' own words
    # What callers used before the store was cut by job, each passed to the part that does it.

    @property
    def db(self) -> apsw.Connection:
        return self.database.db

    @db.setter
    def db(self, connection: apsw.Connection) -> None:
        self.database.db = connection

    path = property(lambda self: self.database.path)
    vfs = property(lambda self: self.database.vfs)
    flush_s = property(lambda self: self.database.flush_s)
    clock = property(lambda self: self.database.clock)
    disk_usage = property(lambda self: self.database.disk_usage)
    aging_s = property(lambda self: self.queue.aging_s)
    memory_limit = property(lambda self: self.database.held.limit)
    card = property(lambda self: self.database.card)
    faults = property(lambda self: self.database.faults)
    fault_count = property(lambda self: self.database.fault_count)
    refused_writes = property(lambda self: self.database.refused_writes)
    evicted = property(lambda self: self.database.evicted)
    on_card = property(lambda self: self.database.on_card)
    degraded = property(lambda self: self.fallback.degraded)

    def take_faults(self) -> list[str]:
        """The faults kept since the last call, oldest first, to go down as events."""
        faults, taken = self.database.faults, []
        while faults:
            taken.append(faults.popleft())
        return taken

    def card_is_full(self) -> bool:
        """The card refuses writes, or has less free than [store] min_free_mb (payload/parts/card.py)."""
        return self.database.card.full

    def min_free_bytes(self) -> int:
        """What the card must keep free ([store] min_free_mb), in bytes."""
        return self.budgets.min_free

    def _fault(self, message: str) -> None:
        self.database.fault(message)

    def free_bytes(self) -> int:
        return self.database.free_bytes()

    def flush(self) -> None:
        self.fallback.flush()

    def maybe_flush(self) -> None:
        self.fallback.maybe_flush()

    def card_refused(self, where: str, e: BaseException) -> None:
        self.fallback.card_refused(where, e)

    def take_notices(self) -> list[Event]:
        return self.fallback.take_notices()

    def counter(self, name: str) -> int:
        return self.counters.get(name)

    def set_counter_max(self, name: str, value: int) -> int:
        return self.counters.set_max(name, value)

    def start_boot(self) -> int:
        return self.counters.start_boot()

    def set_state(self, name: str, value: str) -> bool:
        return self.state.set(name, value)

    def get_state(self, name: str, default: str | None = None) -> str | None:
        return self.state.get(name, default)

    def enqueue(self, kind: Kind, boot: int, build_payload, created: float | None = None) -> tuple[int, bytes]:
        return self.queue.enqueue(kind, boot, build_payload, created)

    def next_queued(self) -> Queued | None:
        return self.queue.next_queued()

    def current_telemetry(self, exclude: tuple[int, ...] = ()) -> Queued | None:
        return self.queue.current_telemetry(exclude)

    def queued(self, limit: int = 1, kinds: tuple[Kind, ...] | None = None, exclude: tuple[int, ...] = (),
               backlog_only: bool = False) -> list[Queued]:
        return self.queue.queued(limit, kinds, exclude, backlog_only)

    def find(self, kind: Kind, boot: int, seq: int) -> tuple[Queued, str] | None:
        return self.queue.find(kind, boot, seq)

    def mark_sent(self, record_id: int) -> None:
        self.queue.mark_sent(record_id)

    def expire_stale(self, kinds: tuple[Kind, ...], created_before: float, exclude: tuple[int, ...] = ()) -> list[Queued]:
        return self.queue.expire_stale(kinds, created_before, exclude)

    def acknowledge(self, kind: Kind, boot: int, up_to_seq: int, from_seq: int = 0) -> int:
        return self.queue.acknowledge(kind, boot, up_to_seq, from_seq)

    def depth(self) -> dict[str, int]:
        return self.queue.depth()

    def counts(self) -> dict[str, dict[str, int]]:
        return self.queue.counts()
