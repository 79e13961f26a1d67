"""The one database file under all the store's parts: its connection, the batch, and what a
fault of the card does to them (docs/storage.md).

One write transaction stays open as the *batch*; each operation runs in it as its own
savepoint and commits at once if durable, else with the batch every `flush_s`. A write the
card refuses rolls the batch back and holds what it had accepted in memory (`HeldRecords`);
a database SQLite finds damaged is set aside and a new one started; a card that will not
even open the file leaves the store running from a RAM database.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import apsw
import structlog

from ..parts.card import CardWatch, is_no_space
from .held import HeldRecords
from .schema import CARD_REFUSALS, UNFINISHED, open_current
from .streams import PRIORITY

log = structlog.get_logger(__name__)


class Database:
    def __init__(self, path: str | Path, *, vfs: str | None = None, flush_s: float = 60.0, min_free: int = 0,
                 memory_limit: int = 2000, clock=time.time, disk_usage=shutil.disk_usage):
        self.disk_usage = disk_usage  # the card's (total, used, free); the bench's simulated card on a bench
        self.path = Path(path)
        self.vfs, self.flush_s, self.clock, self.min_free = vfs, flush_s, clock, min_free
        self.card = CardWatch(min_free)  # full or not; its notices go on air as events
        self.on_card = True  # False: the card could not even open the database; records live in RAM
        self.card_retry_at = 0.0
        self.refusing = False  # the card refused the last write: the next refusals are only counted
        self.refused_writes = 0  # writes the card refused while already degraded (said once, counted here)
        self.faults: deque[str] = deque(maxlen=100)  # for the daemon to downlink as events
        self.fault_count = 0
        self.evicted: dict[str, int] = {}
        self.held = HeldRecords(memory_limit, self.evicted)
        # Called when a damaged file is replaced by a new one, which holds none of the
        # sequence reservations made in the old: the counters forget them and reserve afresh.
        self.on_new_file: list[Callable[[], None]] = []
        self.lock = threading.RLock()  # one connection serves the beacon, think and radio threads
        self.in_batch = False
        self.must_commit = False
        self.batch_since = 0.0
        self.batch_rows: list[tuple] = []  # records in the open batch: re-held if the commit fails
        self.bytes_by_stream: dict[str, int] = {}
        self.db = self._open()
        self.load_totals()

    def load_totals(self) -> None:
        rows = self.db.execute("SELECT stream, coalesce(sum(length(payload)), 0) FROM records GROUP BY stream").fetchall()
        self.bytes_by_stream = dict(rows)
        self.totals_stale = False

    # ------------------------------------------------------------------ opening

    def _open(self) -> apsw.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return self._open_on_card()
        except CARD_REFUSALS as e:
            if isinstance(e, apsw.CantOpenError) and self.path.parent.is_dir() and not self._looks_full():
                raise  # not the card's fullness: a path or a permission the operator must see
            return self._open_in_memory(e)
        except OSError as e:
            if not is_no_space(e):
                raise
            return self._open_in_memory(e)

    def _looks_full(self) -> bool:
        free = self.free_or_none()
        return free is not None and free < max(self.min_free, 1)

    def _open_in_memory(self, e: BaseException) -> apsw.Connection:
        """The card cannot hold the database (or its journal): run from a RAM database with the
        same schema, so the beacon goes on; `maybe_flush` moves it to the card when it can."""
        self.on_card = False
        self.card_retry_at = self.clock() + self.flush_s
        if is_no_space(e):
            self.card.refuse(self.path.name, e, self.free_or_none())
        self.fault(f"store cannot open {self.path.name} on the card ({type(e).__name__}: {e}); "
                   "running from memory until it can")
        db = self.connect(":memory:")
        self._copy_from_card(db)
        return db

    def _copy_from_card(self, db: apsw.Connection) -> None:
        """Counters and named state from the card's database, read-only, when it can still be
        read: the boot, the sequences and the mode carry on as if it had opened."""
        if not self.path.exists():
            return
        try:
            card = apsw.Connection(str(self.path), flags=apsw.SQLITE_OPEN_READONLY)
            try:
                counters = card.execute("SELECT name, value FROM counters").fetchall()
                state = card.execute("SELECT name, value FROM state").fetchall()
            finally:
                card.close()
        except apsw.Error as e:
            log.warning("store_card_unreadable", error=f"{type(e).__name__}: {e}")  # the side file still counts
            return
        db.executemany("INSERT OR REPLACE INTO counters (name, value) VALUES (?, ?)", counters)
        db.executemany("INSERT OR REPLACE INTO state (name, value) VALUES (?, ?)", state)

    def _open_on_card(self) -> apsw.Connection:
        try:
            db = self.connect()
            verdict = db.execute("PRAGMA quick_check").fetchall()  # reads every page
            if verdict != [("ok",)]:
                db.close()
                self._set_aside("quick_check: " + "; ".join(str(row[0]) for row in verdict[:3]))
                return self.connect()
            return db
        except (apsw.CorruptError, apsw.NotADBError) as e:
            self._set_aside(f"{type(e).__name__}: {e}")
            return self.connect()
        except apsw.SQLError as e:
            if "quick_check" in str(e) or "malformed" in str(e):
                self._set_aside(str(e))
                return self.connect()
            raise

    def connect(self, where: str | None = None) -> apsw.Connection:
        """The card's database (or `where`, such as ":memory:"), of the current schema."""
        return open_current(where or str(self.path), None if where else self.vfs, self.path)

    def _set_aside(self, why: str) -> None:
        """Rename a damaged database (and its WAL) out of the way; the next open starts afresh.
        The side file keeps the counters, so sequences still never go backwards."""
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        for suffix in ("", "-wal", "-shm"):
            part = self.path.with_name(self.path.name + suffix)
            if part.exists():
                part.rename(part.with_name(f"{self.path.name}.damaged-{stamp}{suffix}"))
        self.fault(f"store database damaged ({why}); set aside as {self.path.name}.damaged-{stamp}, started a new one")

    def fault(self, message: str) -> None:
        self.fault_count += 1
        self.faults.append(message)
        log.error("store_fault", detail=message)

    def take_faults(self) -> list[str]:
        """The faults kept since the last call, oldest first, to go down as events."""
        return [self.faults.popleft() for _ in range(len(self.faults))]  # one appended meanwhile waits

    # ------------------------------------------------------------------ transactions

    def begin(self) -> None:
        if not self.in_batch:
            self.db.execute("BEGIN IMMEDIATE")
            self.in_batch, self.batch_since = True, self.clock()

    def commit(self) -> None:
        if self.in_batch:
            self.db.execute("COMMIT")  # synchronous=FULL: on the card when this returns
            self.in_batch = False
            self.refusing = False
            self.batch_rows.clear()
            self.must_commit = False

    def op(self, work, durable: bool):
        """Run `work()` inside the batch, as its own savepoint: a failed step undoes only itself,
        never the batched records accepted before it. Commits if `durable` or the batch is old."""
        with self.lock:
            self.begin()
            self.db.execute("SAVEPOINT op")
            rows_before = len(self.batch_rows)
            try:
                result = work()
            except BaseException:
                del self.batch_rows[rows_before:]
                if not self.db.getautocommit():
                    self.db.execute("ROLLBACK TO op")
                    self.db.execute("RELEASE op")
                else:
                    # SQLite rolled the whole batch back itself (SQLITE_FULL, SQLITE_IOERR, SQLITE_BUSY
                    # may): what the batch had accepted is held in memory, whatever the caller does.
                    self._hold_batch()
                self.load_totals()
                raise
            self.db.execute("RELEASE op")
            if durable or self.must_commit or self.clock() - self.batch_since >= self.flush_s:
                self.commit()
            return result

    # ------------------------------------------------------------------ faults

    def write_failed(self, e: Exception) -> None:
        """The card refused a write: roll the batch back and hold what it had accepted in
        memory, so a refused commit loses nothing that enqueue already returned. Said once
        (a fault, an event) when the store turns degraded; counted while it stays so."""
        was_refusing, self.refusing = self.refusing, True
        try:
            if self.in_batch:
                self.db.execute("ROLLBACK")
        except apsw.Error:
            pass  # the transaction is already gone; nothing left to undo
        self._hold_batch()
        card_was_full = self.card.full
        if is_no_space(e):
            self.card.refuse(self.path.name, e, self.free_or_none())
        # A full card lets some writes through (pages it already holds) and refuses the next:
        # while it stays full, the "card full" event has said all there is to say.
        repeated = was_refusing or (card_was_full and is_no_space(e))
        if repeated and not isinstance(e, (apsw.CorruptError, apsw.NotADBError)):
            self.refused_writes += 1
            log.debug("store_write_refused", error=f"{type(e).__name__}: {e}", held=len(self.held))
        else:
            self.fault(f"store write failed ({type(e).__name__}: {e}); running degraded, "
                       f"{len(self.held)} records in memory")
        if isinstance(e, (apsw.CorruptError, apsw.NotADBError)):
            self._replace_damaged(e)
        try:
            self.load_totals()
        except apsw.Error:
            self.totals_stale = True  # the card refuses reads too: counted again before the next eviction

    def _hold_batch(self) -> None:
        """The batch is gone: what it had accepted is held in memory."""
        self.in_batch = False
        held, self.batch_rows = self.batch_rows, []
        for row in held:
            self.held.hold(*row)

    def _replace_damaged(self, e: Exception) -> None:
        """SQLite found the open database damaged: keep what can still be read of the unsent
        and unacknowledged records (in memory, written to the new file at the next flush), set
        the file aside, start a new one."""
        salvaged = 0
        try:
            for stream, boot, seq, created, payload, state in self.db.execute(
                    "SELECT stream, boot, seq, created, payload, state FROM records "
                    f"WHERE state IN {UNFINISHED} ORDER BY id"):
                if stream in PRIORITY:
                    self.held.hold(stream, boot, seq, created, payload, state == "sent")
                    salvaged += 1
        except apsw.Error:
            pass  # read as far as the damage allowed
        try:
            self.db.close()
        except apsw.Error:
            pass  # closing a damaged file may complain; it is set aside either way
        self._set_aside(f"{type(e).__name__}: {e}; {salvaged} records salvaged")
        self.db = self.connect()
        self.in_batch = False
        for forget in self.on_new_file:  # reload the reservations from the side file
            forget()

    def reading(self, query):
        """Run a read; a damaged database found by it is replaced, and the read tried once more."""
        with self.lock:
            try:
                return query()
            except (apsw.CorruptError, apsw.NotADBError) as e:
                self.fault(f"store read failed ({type(e).__name__}: {e})")
                self._replace_damaged(e)
                return query()

    # ------------------------------------------------------------------ the card's space

    def file_bytes(self) -> int:
        """What the store's files take on the card (the database and its WAL)."""
        total = 0
        for suffix in ("", "-wal"):
            try:
                total += self.path.with_name(self.path.name + suffix).stat().st_size
            except OSError:
                pass  # no WAL yet: it takes nothing
        return total

    def free_or_none(self) -> int | None:
        try:
            return self.free_bytes()
        except OSError as e:
            log.warning("card_usage_unreadable", error=str(e))
            return None

    def free_bytes(self) -> int:
        return self.disk_usage(self.path.parent).free
