"""The card fallback: what the store does while the card refuses it, and how what it held
reaches the card again (docs/storage.md, "A full card").

A full card or an I/O error turns the store *degraded*: accepted records wait in a bounded
memory queue (`HeldRecords`), refused counters and state wait by name, and all of it is
written when the card takes writes again. A card that would not even open the database
leaves the store on a RAM database until the card opens it.
"""

from __future__ import annotations

import apsw
import structlog

from stratoecho.wire.events import Event

from ..parts.card import is_no_space
from .counters import Counters
from .database import Database
from .records import RecordTable
from .schema import UNFINISHED, WRITE_FAULTS
from .state import NamedState

log = structlog.get_logger(__name__)


class CardFallback:
    def __init__(self, database: Database, counters: Counters, state: NamedState, records: RecordTable):
        self.database, self.counters, self.state, self.records = database, counters, state, records

    @property
    def degraded(self) -> bool:
        return bool(self.database.held) or not self.database.on_card

    def held_back(self) -> bool:
        return bool(self.database.held or self.state.pending or self.counters.pending)

    def flush(self) -> None:
        """Make everything accepted so far durable: the batch, and records held in memory."""
        with self.database.lock:
            try:
                self._drain()
                self.database.commit()
            except WRITE_FAULTS as e:
                self.database.write_failed(e)

    def maybe_flush(self) -> None:
        """Commit the batch if it is older than `flush_s`, write what the card refused before,
        move a RAM store back to the card when it opens, and look at the card's free space
        (called from the daemon's health loop)."""
        database = self.database
        with database.lock:
            if not database.on_card:
                self.try_card()
            if self.held_back() or (database.in_batch and database.clock() - database.batch_since >= database.flush_s):
                self.flush()
            database.card.observe(database.free_or_none(), writes_ok=database.on_card and not self.held_back())

    def _drain(self) -> None:
        """Write what is held in memory; raises the card's error if it still refuses."""
        database, held = self.database, self.database.held.records
        if held:
            self.counters.write_reservations()  # reservations made in memory first
            for mid in list(held):
                def move(mid=mid):
                    self.records.insert(*held[mid])
                    # In the batch now: a commit that fails (in this very op when the batch is old)
                    # holds it again from there; kept here too it would be written twice.
                    del held[mid]
                database.op(move, durable=False)
            database.commit()
        self.state.write_refused()

    def try_card(self) -> None:
        """From RAM back to the card, if the card opens the database now (no more often than
        every `flush_s`): what RAM holds unacknowledged is written by the flush that follows."""
        database = self.database
        if database.clock() < database.card_retry_at:
            return
        database.card_retry_at = database.clock() + database.flush_s
        try:
            database.path.parent.mkdir(parents=True, exist_ok=True)
            db = database.connect()
        except (apsw.Error, OSError) as e:
            log.debug("store_card_still_refused", error=f"{type(e).__name__}: {e}")
            return
        ram = database.db
        for stream, boot, seq, created, payload, state, rid in ram.execute(
                "SELECT stream, boot, seq, created, payload, state, id FROM records "
                f"WHERE state IN {UNFINISHED} ORDER BY id").fetchall():
            database.held.hold(stream, boot, seq, created, payload, state == "sent")
            database.held.retired_ids.add(rid)
        self.counters.hold_refused(ram.execute("SELECT name, value FROM counters").fetchall())
        self.state.hold_refused(ram.execute("SELECT name, value FROM state").fetchall())
        ram.close()
        database.db, database.on_card, database.in_batch = db, True, False
        database.batch_rows.clear()
        database.load_totals()
        log.info("store_on_card", held=len(database.held))

    def card_refused(self, where: str, e: BaseException) -> None:
        """Another writer on the card (the statistics, the camera) failed: a full card makes the
        card full for everyone; any other error is only logged, by its writer's name."""
        with self.database.lock:
            if is_no_space(e):
                self.database.card.refuse(where, e, self.database.free_or_none())
            log.warning("card_write_failed", where=where, error=f"{type(e).__name__}: {e}")

    def take_notices(self) -> list[Event]:
        """Events for the ground about the card (full, recovered, min_free unreachable), once each."""
        with self.database.lock:
            return self.database.card.take_notices()
