"""Writing a record into the database, and the eviction that keeps the records within their
disk budgets and the card's free space (docs/storage.md)."""

from __future__ import annotations

from dataclasses import dataclass, field

import structlog

from stratoecho.wire.events import event

from .database import Database
from .streams import PRIORITY

log = structlog.get_logger(__name__)


@dataclass
class Budgets:
    """Disk budgets in bytes of payload; None: no limit."""

    per_stream: dict[str, int] = field(default_factory=dict)
    total: int | None = None
    min_free: int = 0  # keep this much of the card free for the OS and logs


class RecordTable:
    """The `records` table's writes: every record goes in through `insert`, which evicts what
    the budgets no longer allow."""

    def __init__(self, database: Database, budgets: Budgets):
        self.database = database
        self.budgets = budgets
        self._min_free_unreachable = False

    def insert(self, stream: str, boot: int, seq: int, created: float, payload: bytes, sent: bool = False) -> None:
        """Into the open batch (held again from `batch_rows` if its commit fails)."""
        database = self.database
        database.db.execute(
            "INSERT INTO records (stream, priority, boot, seq, created, payload, state, send_count) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (stream, PRIORITY[stream], boot, seq, created, payload,
             "sent" if sent else "queued", int(sent)))
        database.batch_rows.append((stream, boot, seq, created, payload, sent))
        database.bytes_by_stream[stream] = database.bytes_by_stream.get(stream, 0) + len(payload)
        self._evict(stream, database.db.last_insert_rowid())

    def _evict(self, stream: str, keep_id: int) -> None:
        """Keep within the budgets: drop acknowledged, then sent, then (only if there is no
        other way) queued records — the lowest priority and oldest first; never `keep_id`."""
        database = self.database
        if database.totals_stale:
            database.load_totals()
        limit = self.budgets.per_stream.get(stream)
        if limit is not None and database.bytes_by_stream.get(stream, 0) > limit:
            self._evict_until(lambda: database.bytes_by_stream.get(stream, 0) <= limit, (stream,), keep_id)
        total = self.budgets.total
        if total is not None and sum(database.bytes_by_stream.values()) > total:
            self._evict_until(lambda: sum(database.bytes_by_stream.values()) <= total, tuple(PRIORITY), keep_id)
        if not database.on_card:
            # In RAM the bound is memory_records, as for records held while the card refuses writes.
            if database.db.execute("SELECT count(*) FROM records").fetchall()[0][0] > database.held.limit:
                self._evict_until(lambda: False, tuple(PRIORITY), keep_id, rounds=1)
            return
        if self.budgets.min_free:
            free = database.free_or_none()
            if free is not None:
                database.card.observe(free)
                if free < self.budgets.min_free:
                    self._evict_for_room(free, keep_id)

    def _evict_for_room(self, free: int, keep_id: int) -> None:
        """The card has less than min_free. Deleted rows free pages inside the file for the next
        records, not space on the card: evict one round, so the file stops growing, instead of
        emptying the store. Unless min_free is out of reach: if even giving the card back every
        byte of the store's files would not make min_free, deleting records cannot meet it, and
        nothing is deleted for it (said once); the budgets still evict."""
        reclaimable = self.database.file_bytes()
        if free + reclaimable < self.budgets.min_free:
            if not self._min_free_unreachable:
                mb = 1024 * 1024
                self.database.card.notices.append(event(
                    "min_free_unreachable", min_free_mb=round(self.budgets.min_free / mb),
                    free_mb=round(free / mb), queue_mb=round(reclaimable / mb, 1)))
                log.warning("min_free_unreachable", free=free, min_free=self.budgets.min_free, store_bytes=reclaimable)
            self._min_free_unreachable = True
            return
        self._min_free_unreachable = False
        self._evict_until(lambda: False, tuple(PRIORITY), keep_id, rounds=1)

    def _evict_until(self, within, streams: tuple[str, ...], keep_id: int, rounds: int | None = None) -> None:
        database = self.database
        marks = ",".join("?" * len(streams))
        for state in ("expired", "acknowledged", "sent", "queued"):
            while not within():
                rows = database.db.execute(
                    f"SELECT id, stream, length(payload) FROM records WHERE state = ? AND stream IN ({marks}) "
                    "AND id != ? ORDER BY priority DESC, created, id LIMIT 1", (state, *streams, keep_id)).fetchall()
                if not rows:
                    break
                rid, victim, size = rows[0]
                database.db.execute("DELETE FROM records WHERE id = ?", (rid,))
                database.bytes_by_stream[victim] -= size
                database.evicted[victim] = database.evicted.get(victim, 0) + 1
                if state == "queued":
                    log.warning("evicted_unsent", stream=victim, id=rid)
                if rounds is not None:
                    return
