"""The durable queue between the payload's producers and the radio (docs/storage.md).

SQLite in WAL mode with `synchronous=FULL`, through apsw (so the power-cut tests can
put a VFS that drops unsynced writes under the very same code). One write
transaction stays open as the *batch*; what goes into it becomes durable at the
next commit, and every commit syncs:

* durable operations commit before they return: musings, events and API requests
  (each is a minute of the persona's thought, or a question asked once), the
  ground's acknowledgements, the boot counter, named state such as the mode, and
  the uplink counter;
* batched operations wait for the next commit: telemetry, health and images
  (a fresh one follows in seconds) and the `sent` marks (losing one means a
  re-send, which the ground drops as a duplicate). The batch commits every
  `flush_s`, at any durable operation, and at `close`: the card sees a few large
  writes instead of one sync per sentence.

Sequences are per stream and never go backwards, across reboots and lost batches
included: they are handed out from blocks reserved durably (`SEQ_BLOCK` at a
time), so a batched record that went on air and was then lost in a power cut never
has its number reused. The boot counter and the reservations are also copied to a
small side file (`<db>.counters`, replaced atomically) so that they survive even
a database that has to be set aside.

Faults never stop the payload: a full card or an I/O error turns the store
*degraded* — accepted records wait in a bounded memory queue and are written when
the card takes writes again — and a database that SQLite finds corrupt is renamed
aside and a new one started. Each fault is kept in `faults` for the daemon to send
down as an event.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import apsw
import structlog

from stratoecho.wire import Kind
from stratoecho.wire.events import Event, event

from .card import CardWatch, is_no_space

log = structlog.get_logger(__name__)

SCHEMA_VERSION = 2
SEQ_BLOCK = 64  # sequence numbers reserved per durable counter write


@dataclass(frozen=True)
class Stream:
    priority: int  # lower goes first
    durable: bool  # committed before enqueue returns


# One stream per wire kind. Telemetry first (the newest sentence; older ones wait as a
# backlog with images), then events, musings and API requests, then health and musings again
# as text sentences for stock gateways, then images (as records or as SSDV packets).
STREAMS: dict[Kind, Stream] = {
    Kind.TELEMETRY: Stream(0, durable=False),
    Kind.EVENT: Stream(1, durable=True),
    Kind.MUSING: Stream(2, durable=True),
    Kind.API_REQUEST: Stream(2, durable=True),
    Kind.HEALTH: Stream(3, durable=False),
    Kind.MUSING_SENTENCE: Stream(3, durable=False),  # the record is durable; this is its readable copy
    Kind.IMAGE: Stream(4, durable=False),
    Kind.SSDV: Stream(4, durable=False),  # a picture's SSDV packets: images by another format
}
BACKLOG_PRIORITY = 4  # telemetry superseded by a newer sentence


def stream_name(kind: Kind) -> str:
    """The kind as the queue's `stream` column, its counters and its statistics name it."""
    return kind.name.lower()


def kind_of(name: str) -> Kind:
    return Kind[name.upper()]


PRIORITY = {stream_name(k): s.priority for k, s in STREAMS.items()}
_DURABLE = {stream_name(k) for k, s in STREAMS.items() if s.durable}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    id             INTEGER PRIMARY KEY,
    stream         TEXT    NOT NULL,
    priority       INTEGER NOT NULL,
    boot           INTEGER NOT NULL,
    seq            INTEGER NOT NULL,
    created        REAL    NOT NULL,
    payload        BLOB    NOT NULL,
    send_count     INTEGER NOT NULL DEFAULT 0,
    state          TEXT    NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'sent', 'acknowledged')),
    sent_at        REAL,
    UNIQUE (stream, boot, seq)
);
CREATE INDEX IF NOT EXISTS records_queue ON records (state, priority, created);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS state (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_MIGRATIONS = {2: ["ALTER TABLE records ADD COLUMN sent_at REAL",
                   "CREATE TABLE IF NOT EXISTS state (name TEXT PRIMARY KEY, value TEXT NOT NULL)"]}
# What a write can fail with while the payload must go on.
_WRITE_FAULTS = (apsw.FullError, apsw.IOError, apsw.CorruptError, apsw.NotADBError, apsw.ReadOnlyError)
# What opening the card's database can fail with when the card, not the software, is at fault:
# the store then runs from memory until the card takes it (docs/storage.md, "A full card").
_CARD_REFUSALS = (apsw.FullError, apsw.IOError, apsw.ReadOnlyError, apsw.CantOpenError)
_COLUMNS = "id, stream, boot, seq, created, payload, send_count"


def open_wal(where: str, vfs: str | None = None) -> apsw.Connection:
    """An apsw connection in WAL mode with synchronous=FULL (a commit is on the card when it
    returns), waiting up to 5 s for a lock; `vfs` is the power-cut tests' hook."""
    flags = apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE
    db = apsw.Connection(where, flags=flags, vfs=vfs) if vfs else apsw.Connection(where, flags=flags)
    try:
        db.setbusytimeout(5000)
        db.execute("PRAGMA journal_mode=WAL").fetchall()
        db.execute("PRAGMA synchronous=FULL")
    except BaseException:
        db.close()
        raise
    return db


class StoreError(Exception):
    """A store this software must not use (newer schema, unknown stream); the message says which."""


@dataclass(frozen=True)
class Queued:
    """A stored record: its kind's bytes as they go on air (a sentence, or a record's body)."""

    id: int
    kind: Kind
    boot: int
    seq: int
    created: float
    payload: bytes
    send_count: int

    @classmethod
    def row(cls, id: int, stream: str, *rest) -> Queued:
        return cls(id, kind_of(stream), *rest)

    @property
    def stream(self) -> str:
        return stream_name(self.kind)


@dataclass
class Budgets:
    """Disk budgets in bytes of payload; None: no limit."""

    per_stream: dict[str, int] = field(default_factory=dict)
    total: int | None = None
    min_free: int = 0  # keep this much of the card free for the OS and logs


class Store:
    def __init__(self, path: str | Path, *, vfs: str | None = None, flush_s: float = 60.0,
                 budgets: Budgets | None = None, aging_s: float = 900.0, memory_limit: int = 2000,
                 clock=time.time, disk_usage=shutil.disk_usage):
        self.disk_usage = disk_usage  # the card's (total, used, free); the bench's simulated card on a bench
        self.path = Path(path)
        self.vfs, self.flush_s, self.aging_s, self.clock = vfs, flush_s, aging_s, clock
        self.budgets = budgets or Budgets()
        self.card = CardWatch(self.budgets.min_free)  # full or not; its notices go on air as events
        self._on_card = True  # False: the card could not even open the database; records live in RAM
        self._card_retry_at = 0.0
        self._retired_ids: set[int] = set()  # ids of the RAM database, which may name other rows on the card
        self._pending_counters: dict[str, int] = {}  # counters the card refused, written when it recovers
        self._min_free_unreachable = False
        self._sidecar_failing = False
        self._refusing = False  # the card refused the last write: the next refusals are only counted
        self.refused_writes = 0  # writes the card refused while already degraded (said once, counted here)
        self.faults: deque[str] = deque(maxlen=100)  # for the daemon to downlink as events
        self.fault_count = 0
        self.evicted: dict[str, int] = {}
        self._lock = threading.RLock()  # one connection serves the beacon, think and radio threads
        self._in_batch = False
        self._must_commit = False
        self._batch_since = 0.0
        self._next: dict[str, int] = {}  # next seq to hand out, per stream
        self._reserved: dict[str, int] = {}  # highest seq reserved durably, per stream
        # Records accepted while the card refused writes, by a negative id: [stream, boot, seq,
        # created, payload, sent]. The radio sends them from here until the card takes them.
        self._memory: dict[int, list] = {}
        self._memory_ids = 0
        self.memory_limit = memory_limit
        self._batch_rows: list[tuple] = []  # records in the open batch: re-held if the commit fails
        self._pending_state: dict[str, str] = {}  # state the card refused, written when it recovers
        self._bytes_by_stream: dict[str, int] = {}
        self._sidecar = self.path.with_name(self.path.name + ".counters")
        self.db = self._open()
        self._load_totals()

    def _load_totals(self) -> None:
        rows = self.db.execute("SELECT stream, coalesce(sum(length(payload)), 0) FROM records GROUP BY stream").fetchall()
        self._bytes_by_stream = dict(rows)
        self._totals_stale = False

    # ------------------------------------------------------------------ opening

    def _open(self) -> apsw.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return self._open_on_card()
        except _CARD_REFUSALS as e:
            if isinstance(e, apsw.CantOpenError) and self.path.parent.is_dir() and not self._looks_full():
                raise  # not the card's fullness: a path or a permission the operator must see
            return self._open_in_memory(e)
        except OSError as e:
            if not is_no_space(e):
                raise
            return self._open_in_memory(e)

    def _looks_full(self) -> bool:
        free = self._free_or_none()
        return free is not None and free < max(self.budgets.min_free, 1)

    def _open_in_memory(self, e: BaseException) -> apsw.Connection:
        """The card cannot hold the database (or its journal): run from a RAM database with the
        same schema, so the beacon goes on; `maybe_flush` moves it to the card when it can."""
        self._on_card = False
        self._card_retry_at = self.clock() + self.flush_s
        if is_no_space(e):
            self.card.refuse(self.path.name, e, self._free_or_none())
        self._fault(f"store cannot open {self.path.name} on the card ({type(e).__name__}: {e}); "
                    "running from memory until it can")
        db = self._connect(":memory:")
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
            db = self._connect()
            verdict = db.execute("PRAGMA quick_check").fetchall()  # reads every page
            if verdict != [("ok",)]:
                db.close()
                self._set_aside("quick_check: " + "; ".join(str(row[0]) for row in verdict[:3]))
                return self._connect()
            return db
        except (apsw.CorruptError, apsw.NotADBError) as e:
            self._set_aside(f"{type(e).__name__}: {e}")
            return self._connect()
        except apsw.SQLError as e:
            if "quick_check" in str(e) or "malformed" in str(e):
                self._set_aside(str(e))
                return self._connect()
            raise

    def _connect(self, where: str | None = None) -> apsw.Connection:
        db = open_wal(where or str(self.path), None if where else self.vfs)
        try:
            version = db.execute("PRAGMA user_version").fetchall()[0][0]
            if version > SCHEMA_VERSION:
                raise StoreError(f"{self.path}: store schema {version} is newer than this software's {SCHEMA_VERSION}")
            if version < SCHEMA_VERSION:  # a current file is opened without a write: a full card opens it
                db.execute("BEGIN IMMEDIATE")
                if version == 0:
                    db.execute(_SCHEMA)
                else:
                    for step in range(version + 1, SCHEMA_VERSION + 1):
                        for statement in _MIGRATIONS[step]:
                            db.execute(statement)
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                db.execute("COMMIT")
        except BaseException:
            db.close()
            raise
        return db

    def _set_aside(self, why: str) -> None:
        """Rename a damaged database (and its WAL) out of the way; the next open starts afresh.
        The side file keeps the counters, so sequences still never go backwards."""
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        for suffix in ("", "-wal", "-shm"):
            part = self.path.with_name(self.path.name + suffix)
            if part.exists():
                part.rename(part.with_name(f"{self.path.name}.damaged-{stamp}{suffix}"))
        self._fault(f"store database damaged ({why}); set aside as {self.path.name}.damaged-{stamp}, started a new one")

    def _fault(self, message: str) -> None:
        self.fault_count += 1
        self.faults.append(message)
        log.error("store_fault", detail=message)

    @property
    def degraded(self) -> bool:
        return bool(self._memory) or not self._on_card

    @property
    def on_card(self) -> bool:
        return self._on_card

    def close(self) -> None:
        with self._lock:
            try:
                if not self._on_card:
                    self._card_retry_at = float("-inf")  # a clean stop tries the card once more
                    self._try_card()
                self.flush()
                if not self._memory:
                    self._release_reservations()
            except _WRITE_FAULTS as e:
                self._write_failed(e)  # counted; what memory held is lost with the process
            finally:
                self.db.close()

    def _release_reservations(self) -> None:
        """A clean stop hands back the unused part of each block, so a planned restart leaves
        no gap in the numbers (a cut leaves one, which is harmless: numbers only go up)."""
        used = {f"seq:{stream}": n - 1 for stream, n in self._next.items()}
        if not used:
            return
        def work():
            for name, value in used.items():
                self.db.execute("UPDATE counters SET value = ? WHERE name = ?", (value, name))
        self._op(work, durable=True)
        self._write_sidecar(used, lower=True)

    # ------------------------------------------------------------------ transactions

    def _begin(self) -> None:
        if not self._in_batch:
            self.db.execute("BEGIN IMMEDIATE")
            self._in_batch, self._batch_since = True, self.clock()

    def _commit(self) -> None:
        if self._in_batch:
            self.db.execute("COMMIT")  # synchronous=FULL: on the card when this returns
            self._in_batch = False
            self._refusing = False
            self._batch_rows.clear()
            self._must_commit = False

    def _op(self, work, durable: bool):
        """Run `work()` inside the batch, as its own savepoint: a failed step undoes only itself,
        never the batched records accepted before it. Commits if `durable` or the batch is old."""
        with self._lock:
            self._begin()
            self.db.execute("SAVEPOINT op")
            rows_before = len(self._batch_rows)
            try:
                result = work()
            except BaseException:
                del self._batch_rows[rows_before:]
                if not self.db.getautocommit():
                    self.db.execute("ROLLBACK TO op")
                    self.db.execute("RELEASE op")
                else:
                    # SQLite rolled the whole batch back itself (SQLITE_FULL, SQLITE_IOERR, SQLITE_BUSY
                    # may): what the batch had accepted is held in memory, whatever the caller does.
                    self._in_batch = False
                    held, self._batch_rows = self._batch_rows, []
                    for row in held:
                        self._hold(*row)
                self._load_totals()
                raise
            self.db.execute("RELEASE op")
            if durable or self._must_commit or self.clock() - self._batch_since >= self.flush_s:
                self._commit()
            return result

    def flush(self) -> None:
        """Make everything accepted so far durable: the batch, and records held in memory."""
        with self._lock:
            try:
                self._drain_memory()
                self._commit()
            except _WRITE_FAULTS as e:
                self._write_failed(e)

    def _held_back(self) -> bool:
        return bool(self._memory or self._pending_state or self._pending_counters)

    def maybe_flush(self) -> None:
        """Commit the batch if it is older than `flush_s`, write what the card refused before,
        move a RAM store back to the card when it opens, and look at the card's free space
        (called from the daemon's health loop)."""
        with self._lock:
            if not self._on_card:
                self._try_card()
            if self._held_back() or (self._in_batch and self.clock() - self._batch_since >= self.flush_s):
                self.flush()
            self.card.observe(self._free_or_none(), writes_ok=self._on_card and not self._held_back())

    def card_refused(self, where: str, e: BaseException) -> None:
        """Another writer on the card (the statistics, the camera) failed: a full card makes the
        card full for everyone; any other error is only logged, by its writer's name."""
        with self._lock:
            if is_no_space(e):
                self.card.refuse(where, e, self._free_or_none())
            log.warning("card_write_failed", where=where, error=f"{type(e).__name__}: {e}")

    def take_notices(self) -> list[Event]:
        """Events for the ground about the card (full, recovered, min_free unreachable), once each."""
        with self._lock:
            return self.card.take_notices()

    def _try_card(self) -> None:
        """From RAM back to the card, if the card opens the database now (no more often than
        every `flush_s`): what RAM holds unacknowledged is written by the flush that follows."""
        if self.clock() < self._card_retry_at:
            return
        self._card_retry_at = self.clock() + self.flush_s
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = self._connect()
        except (apsw.Error, OSError) as e:
            log.debug("store_card_still_refused", error=f"{type(e).__name__}: {e}")
            return
        ram = self.db
        for stream, boot, seq, created, payload, state, rid in ram.execute(
                "SELECT stream, boot, seq, created, payload, state, id FROM records "
                "WHERE state != 'acknowledged' ORDER BY id").fetchall():
            self._hold(stream, boot, seq, created, payload, state == "sent")
            self._retired_ids.add(rid)
        for name, value in ram.execute("SELECT name, value FROM counters").fetchall():
            self._pending_counters[name] = max(value, self._pending_counters.get(name, 0))
        for name, value in ram.execute("SELECT name, value FROM state").fetchall():
            self._pending_state.setdefault(name, value)
        ram.close()
        self.db, self._on_card, self._in_batch = db, True, False
        self._batch_rows.clear()
        self._load_totals()
        log.info("store_on_card", held=len(self._memory))

    def _write_failed(self, e: Exception) -> None:
        """The card refused a write: roll the batch back and hold what it had accepted in
        memory, so a refused commit loses nothing that enqueue already returned. Said once
        (a fault, an event) when the store turns degraded; counted while it stays so."""
        was_refusing, self._refusing = self._refusing, True
        try:
            if self._in_batch:
                self.db.execute("ROLLBACK")
        except apsw.Error:
            pass  # the transaction is already gone; nothing left to undo
        self._in_batch = False
        held, self._batch_rows = self._batch_rows, []
        for row in held:
            self._hold(*row)
        card_was_full = self.card.full
        if is_no_space(e):
            self.card.refuse(self.path.name, e, self._free_or_none())
        # A full card lets some writes through (pages it already holds) and refuses the next:
        # while it stays full, the "card full" event has said all there is to say.
        repeated = was_refusing or (card_was_full and is_no_space(e))
        if repeated and not isinstance(e, (apsw.CorruptError, apsw.NotADBError)):
            self.refused_writes += 1
            log.debug("store_write_refused", error=f"{type(e).__name__}: {e}", held=len(self._memory))
        else:
            self._fault(f"store write failed ({type(e).__name__}: {e}); running degraded, "
                        f"{len(self._memory)} records in memory")
        if isinstance(e, (apsw.CorruptError, apsw.NotADBError)):
            self._replace_damaged(e)
        try:
            self._load_totals()
        except apsw.Error:
            self._totals_stale = True  # the card refuses reads too: counted again before the next eviction

    def _replace_damaged(self, e: Exception) -> None:
        """SQLite found the open database damaged: keep what can still be read of the unsent
        and unacknowledged records (in memory, written to the new file at the next flush), set
        the file aside, start a new one."""
        salvaged = 0
        try:
            for stream, boot, seq, created, payload, state in self.db.execute(
                    "SELECT stream, boot, seq, created, payload, state FROM records "
                    "WHERE state != 'acknowledged' ORDER BY id"):
                if stream in PRIORITY:
                    self._hold(stream, boot, seq, created, payload, state == "sent")
                    salvaged += 1
        except apsw.Error:
            pass  # read as far as the damage allowed
        try:
            self.db.close()
        except apsw.Error:
            pass  # closing a damaged file may complain; it is set aside either way
        self._set_aside(f"{type(e).__name__}: {e}; {salvaged} records salvaged")
        self.db = self._connect()
        self._in_batch = False
        self._next.clear()  # reload the reservations from the side file
        self._reserved.clear()

    def _reading(self, query):
        """Run a read; a damaged database found by it is replaced, and the read tried once more."""
        with self._lock:
            try:
                return query()
            except (apsw.CorruptError, apsw.NotADBError) as e:
                self._fault(f"store read failed ({type(e).__name__}: {e})")
                self._replace_damaged(e)
                return query()

    # ------------------------------------------------------------------ counters

    def _read_sidecar(self) -> dict[str, int]:
        try:
            return {k: int(v) for k, v in json.loads(self._sidecar.read_text()).items()}
        except (OSError, ValueError, AttributeError):
            return {}

    def _write_sidecar(self, counters: dict[str, int], lower: bool = False) -> None:
        """Replace the side file atomically: write, sync, rename, sync the directory.
        Values only rise, unless `lower` (a clean stop handing back its reservations)."""
        merged = self._read_sidecar()
        for name, value in counters.items():
            merged[name] = value if lower else max(merged.get(name, 0), value)
        tmp = self._sidecar.with_name(self._sidecar.name + ".tmp")
        try:
            with open(tmp, "w") as f:
                json.dump(merged, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self._sidecar)
            dir_fd = os.open(self._sidecar.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
            self._sidecar_failing = False
        except OSError as e:
            if is_no_space(e):
                self.card.refuse(self._sidecar.name, e, self._free_or_none())
            if not self._sidecar_failing:  # once per run of failures: a full card fails every block
                self._fault(f"counter side file {self._sidecar} not written: {e}")
            self._sidecar_failing = True
            try:
                tmp.unlink(missing_ok=True)  # a half-written copy only takes space
            except OSError:
                pass

    def _stored_counter(self, name: str) -> int:
        row = self.db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchall()
        return max(row[0][0] if row else 0, self._read_sidecar().get(name, 0), self._pending_counters.get(name, 0))

    def _set_counter(self, name: str, value: int) -> None:
        self.db.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = max(value, excluded.value)", (name, value))

    def counter(self, name: str) -> int:
        with self._lock:
            return self._stored_counter(name)

    def set_counter_max(self, name: str, value: int) -> int:
        """Raise counter `name` to `value` unless it already stands higher; durable on return.

        For counters set from outside, such as the last accepted uplink counter: a stale
        value can never lower it."""
        with self._lock:
            try:
                self._op(lambda: self._set_counter(name, value), durable=True)
            except _WRITE_FAULTS as e:  # held, and written first when the card recovers
                self._pending_counters[name] = max(value, self._pending_counters.get(name, 0))
                self._write_failed(e)
            stored = self._stored_counter(name)
        self._write_sidecar({name: stored})
        return stored

    def start_boot(self) -> int:
        """Advance and return the boot counter; called once per daemon start."""
        with self._lock:
            boot = self._stored_counter("boot") + 1
            self._write_sidecar({"boot": boot})  # first: a cut after it only skips a number
            try:
                self._op(lambda: self._set_counter("boot", boot), durable=True)
            except _WRITE_FAULTS as e:  # a full card: the boot still starts, its number held for the card
                self._pending_counters["boot"] = boot
                self._write_failed(e)
        log.info("boot", boot=boot, store=str(self.path))
        return boot

    def _take_seq(self, stream: str) -> int:
        """The next sequence number of `stream`, reserving a new block durably when one runs out."""
        name = f"seq:{stream}"
        if stream not in self._next:
            self._reserved[stream] = self._stored_counter(name)
            self._next[stream] = self._reserved[stream] + 1
        seq = self._next[stream]
        if seq > self._reserved[stream]:
            reserve = seq + SEQ_BLOCK - 1
            self._write_sidecar({name: reserve})
            self._set_counter(name, reserve)
            self._reserved[stream] = reserve
            self._must_commit = True  # a second copy, and the one that counts if the side file failed
        self._next[stream] = seq + 1
        return seq

    # ------------------------------------------------------------------ state

    def set_state(self, name: str, value: str) -> bool:
        """Durable named state (the power mode): on the card when this returns True; held in
        memory and written when the card recovers if it returns False."""
        with self._lock:
            self._pending_state[name] = value
            try:
                self._write_state()
                return True
            except _WRITE_FAULTS as e:
                self._write_failed(e)
                return False

    def _write_state(self) -> None:
        for name, value in list(self._pending_counters.items()):
            self._op(lambda n=name, v=value: self._set_counter(n, v), durable=True)
            del self._pending_counters[name]
        for name, value in list(self._pending_state.items()):
            self._op(lambda n=name, v=value: self.db.execute(
                "INSERT INTO state (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (n, v)), durable=True)
            del self._pending_state[name]

    def get_state(self, name: str, default: str | None = None) -> str | None:
        with self._lock:
            if name in self._pending_state:
                return self._pending_state[name]
            row = self.db.execute("SELECT value FROM state WHERE name = ?", (name,)).fetchall()
        return row[0][0] if row else default

    # ------------------------------------------------------------------ queue

    def enqueue(self, kind: Kind, boot: int, build_payload, created: float | None = None) -> tuple[int, bytes]:
        """Number and store one record of `kind` (its own stream); returns (seq, payload).

        `build_payload(seq) -> bytes` makes the record's bytes once its sequence number is
        known. Durable streams are on the card when this returns; batched streams at the
        next commit. If the card refuses the write the record is held in memory (degraded)
        and written later: nothing accepted is dropped for a fault of the card."""
        if kind not in STREAMS:
            raise StoreError(f"unknown record kind {kind!r}; known: {', '.join(map(stream_name, STREAMS))}")
        stream = stream_name(kind)
        created = self.clock() if created is None else created
        with self._lock:
            if self._held_back():
                self.flush()  # older accepted records go in first; stays degraded if the card still refuses
            if not self._memory:
                made: list[tuple[int, bytes]] = []

                def insert():
                    made.append(self._insert_new(stream, boot, build_payload, created))
                    return made[0]

                try:
                    return self._op(insert, durable=stream in _DURABLE)
                except _WRITE_FAULTS as e:
                    self._write_failed(e)
                    if made:  # the insert went into the batch, the commit failed: it is held now
                        return made[0]
            seq = self._take_seq_in_memory(stream)
            payload = build_payload(seq)
            self._hold(stream, boot, seq, created, payload)
            return seq, payload

    def _insert_new(self, stream: str, boot: int, build_payload, created: float) -> tuple[int, bytes]:
        seq = self._take_seq(stream)
        payload = build_payload(seq)
        self._insert(stream, boot, seq, created, payload)
        return seq, payload

    def _insert(self, stream: str, boot: int, seq: int, created: float, payload: bytes, sent: bool = False) -> None:
        self.db.execute(
            "INSERT INTO records (stream, priority, boot, seq, created, payload, state, send_count) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (stream, PRIORITY[stream], boot, seq, created, payload,
             "sent" if sent else "queued", int(sent)))
        self._batch_rows.append((stream, boot, seq, created, payload, sent))
        self._bytes_by_stream[stream] = self._bytes_by_stream.get(stream, 0) + len(payload)
        self._evict(stream, self.db.last_insert_rowid())

    def _take_seq_in_memory(self, stream: str) -> int:
        """A sequence number while the card refuses writes, from the reserved block; past it,
        the side file reserves the next (the database gets it when the card recovers)."""
        if stream not in self._next:
            base = max(self._reserved.get(stream, 0), self._read_sidecar().get(f"seq:{stream}", 0))
            self._reserved[stream] = base
            self._next[stream] = base + 1
        seq = self._next[stream]
        self._next[stream] = seq + 1
        if seq > self._reserved[stream]:
            self._reserved[stream] = seq + SEQ_BLOCK - 1
            self._write_sidecar({f"seq:{stream}": self._reserved[stream]})
        return seq

    def _hold(self, stream: str, boot: int, seq: int, created: float, payload: bytes, sent: bool = False) -> None:
        if len(self._memory) >= self.memory_limit:
            # Full even in memory: let the least precious go (the lowest priority, oldest).
            victim = max(self._memory, key=lambda i: (PRIORITY[self._memory[i][0]], -self._memory[i][3]))
            self.evicted[self._memory[victim][0]] = self.evicted.get(self._memory[victim][0], 0) + 1
            del self._memory[victim]
        self._memory_ids -= 1
        self._memory[self._memory_ids] = [stream, boot, seq, created, payload, sent]

    def _drain_memory(self) -> None:
        """Write what is held in memory; raises the card's error if it still refuses."""
        if self._memory:
            for stream, reserved in self._reserved.items():  # reservations made in memory first
                self._op(lambda n=f"seq:{stream}", v=reserved: self._set_counter(n, v), durable=False)
            for mid in list(self._memory):
                def move(mid=mid):
                    self._insert(*self._memory[mid])
                    # In the batch now: a commit that fails (in this very _op when the batch is old)
                    # holds it again from there; kept here too it would be written twice.
                    del self._memory[mid]
                self._op(move, durable=False)
            self._commit()
        self._write_state()

    # ------------------------------------------------------------------ eviction

    def _evict(self, stream: str, keep_id: int) -> None:
        """Keep within the budgets: drop acknowledged, then sent, then (only if there is no
        other way) queued records — the lowest priority and oldest first; never `keep_id`."""
        if self._totals_stale:
            self._load_totals()
        limit = self.budgets.per_stream.get(stream)
        if limit is not None and self._bytes_by_stream.get(stream, 0) > limit:
            self._evict_until(lambda: self._bytes_by_stream.get(stream, 0) <= limit, (stream,), keep_id)
        total = self.budgets.total
        if total is not None and sum(self._bytes_by_stream.values()) > total:
            self._evict_until(lambda: sum(self._bytes_by_stream.values()) <= total, tuple(PRIORITY), keep_id)
        if not self._on_card:
            # In RAM the bound is memory_records, as for records held while the card refuses writes.
            if self.db.execute("SELECT count(*) FROM records").fetchall()[0][0] > self.memory_limit:
                self._evict_until(lambda: False, tuple(PRIORITY), keep_id, rounds=1)
            return
        if self.budgets.min_free:
            free = self._free_or_none()
            if free is not None:
                self.card.observe(free)
                if free < self.budgets.min_free:
                    self._evict_for_room(free, keep_id)

    def _evict_for_room(self, free: int, keep_id: int) -> None:
        """The card has less than min_free. Deleted rows free pages inside the file for the next
        records, not space on the card: evict one round, so the file stops growing, instead of
        emptying the store. Unless min_free is out of reach: if even giving the card back every
        byte of the store's files would not make min_free, deleting records cannot meet it, and
        nothing is deleted for it (said once); the budgets still evict."""
        reclaimable = self._file_bytes()
        if free + reclaimable < self.budgets.min_free:
            if not self._min_free_unreachable:
                mb = 1024 * 1024
                self.card.notices.append(event("min_free_unreachable", min_free_mb=round(self.budgets.min_free / mb),
                                               free_mb=round(free / mb), queue_mb=round(reclaimable / mb, 1)))
                log.warning("min_free_unreachable", free=free, min_free=self.budgets.min_free, store_bytes=reclaimable)
            self._min_free_unreachable = True
            return
        self._min_free_unreachable = False
        self._evict_until(lambda: False, tuple(PRIORITY), keep_id, rounds=1)

    def _file_bytes(self) -> int:
        """What the store's files take on the card (the database and its WAL)."""
        total = 0
        for suffix in ("", "-wal"):
            try:
                total += self.path.with_name(self.path.name + suffix).stat().st_size
            except OSError:
                pass  # no WAL yet: it takes nothing
        return total

    def _free_or_none(self) -> int | None:
        try:
            return self.free_bytes()
        except OSError as e:
            log.warning("card_usage_unreadable", error=str(e))
            return None

    def _evict_until(self, within, streams: tuple[str, ...], keep_id: int, rounds: int | None = None) -> None:
        marks = ",".join("?" * len(streams))
        for state in ("acknowledged", "sent", "queued"):
            while not within():
                rows = self.db.execute(
                    f"SELECT id, stream, length(payload) FROM records WHERE state = ? AND stream IN ({marks}) "
                    "AND id != ? ORDER BY priority DESC, created, id LIMIT 1", (state, *streams, keep_id)).fetchall()
                if not rows:
                    break
                rid, victim, size = rows[0]
                self.db.execute("DELETE FROM records WHERE id = ?", (rid,))
                self._bytes_by_stream[victim] -= size
                self.evicted[victim] = self.evicted.get(victim, 0) + 1
                if state == "queued":
                    log.warning("evicted_unsent", stream=victim, id=rid)
                if rounds is not None:
                    return

    def free_bytes(self) -> int:
        return self.disk_usage(self.path.parent).free

    # ------------------------------------------------------------------ reading

    def next_queued(self) -> Queued | None:
        """The record the radio should send next (see `queued`)."""
        rows = self.queued(limit=1)
        return rows[0] if rows else None

    def current_telemetry(self, exclude: tuple[int, ...] = ()) -> Queued | None:
        """The newest telemetry sentence, if it is still queued: what the radio sends first."""
        return self._reading(lambda: self._current_telemetry(exclude))

    def _current_telemetry(self, exclude: tuple[int, ...]) -> Queued | None:
        with self._lock:
            rows = self.db.execute(
                f"SELECT {_COLUMNS}, state FROM records WHERE stream = 'telemetry' "
                "ORDER BY boot DESC, seq DESC LIMIT 1").fetchall()
            best = (rows[0][2], rows[0][3]) if rows else (-1, -1)
            newest = Queued.row(*rows[0][:7]) if rows and rows[0][7] == "queued" else None
            for mid, (stream, boot, seq, created, payload, sent) in self._memory.items():
                if stream == "telemetry" and (boot, seq) > best:
                    best = (boot, seq)
                    newest = None if sent else Queued.row(mid, stream, boot, seq, created, payload, 0)
        return newest if newest is not None and newest.id not in exclude else None

    def queued(self, limit: int = 1, kinds: tuple[Kind, ...] | None = None, exclude: tuple[int, ...] = (),
               backlog_only: bool = False) -> list[Queued]:
        """Queued records in sending order.

        The newest telemetry sentence comes first. Every other record ranks by its stream's
        priority minus its age in units of `aging_s`, oldest first on a tie: a record that
        has waited `aging_s` ranks with the class above it, so bulk never starves forever
        while a fresh position still never waits behind it (`current_telemetry`). Telemetry
        superseded by a newer sentence is backlog, ranked like images. `exclude` leaves out
        records the radio already has in hand, `backlog_only` the current sentence (which the
        radio sends alone); records held in memory while the card refuses writes come after
        the card's."""
        streams = tuple(map(stream_name, kinds)) if kinds else None
        return self._reading(lambda: self._queued(limit, streams, exclude, backlog_only))

    def _queued(self, limit: int, streams: tuple[str, ...] | None, exclude: tuple[int, ...],
                backlog_only: bool) -> list[Queued]:
        with self._lock:
            where, args = ["state = 'queued'"], []
            if streams:
                where.append(f"stream IN ({','.join('?' * len(streams))})")
                args += list(streams)
            if exclude:
                where.append(f"id NOT IN ({','.join('?' * len(exclude))})")
                args += list(exclude)
            newest = self.db.execute(
                "SELECT id FROM records WHERE stream = 'telemetry' ORDER BY boot DESC, seq DESC LIMIT 1").fetchall()
            if backlog_only and newest:
                where.append("id != ?")
                args.append(newest[0][0])
            now = self.clock()
            rows = self.db.execute(
                f"SELECT {_COLUMNS} FROM records WHERE {' AND '.join(where)} ORDER BY "
                "CASE WHEN id = ? THEN -1e18 "
                f"WHEN stream = 'telemetry' THEN {BACKLOG_PRIORITY} - (? - created) / ? "
                "ELSE priority - (? - created) / ? END, created, id LIMIT ?",
                (*args, newest[0][0] if newest else None, now, self.aging_s, now, self.aging_s, limit),
            ).fetchall()
            out = [Queued.row(*row) for row in rows]
            held = sorted(
                (Queued.row(mid, r[0], r[1], r[2], r[3], r[4], 0) for mid, r in self._memory.items()
                 if not r[5] and mid not in exclude and (not streams or r[0] in streams)
                 and not (backlog_only and r[0] == "telemetry")),
                key=lambda q: (STREAMS[q.kind].priority, -q.created if q.kind is Kind.TELEMETRY else q.created))
        return (out + held)[:limit]

    def find(self, kind: Kind, boot: int, seq: int) -> tuple[Queued, str] | None:
        """One record and its state, for a repair request from the ground."""
        return self._reading(lambda: self._find(stream_name(kind), boot, seq))

    def _find(self, stream: str, boot: int, seq: int) -> tuple[Queued, str] | None:
        with self._lock:
            rows = self.db.execute(
                f"SELECT {_COLUMNS}, state FROM records WHERE stream = ? AND boot = ? AND seq = ?",
                (stream, boot, seq)).fetchall()
            if rows:
                return Queued.row(*rows[0][:7]), rows[0][7]
            for mid, r in self._memory.items():
                if (r[0], r[1], r[2]) == (stream, boot, seq):
                    return Queued.row(mid, *r[:5], int(r[5])), "sent" if r[5] else "queued"
        return None

    def mark_sent(self, record_id: int) -> None:
        """Batched: a sent mark lost in a power cut only means the record goes out again."""
        with self._lock:
            if record_id in self._memory:
                self._memory[record_id][5] = True
                return
            if record_id in self._retired_ids:
                return  # a RAM database's id, now held under another: it goes once more, a duplicate the ground drops
            try:
                self._op(lambda: self.db.execute(
                    "UPDATE records SET state = 'sent', send_count = send_count + 1, sent_at = ? "
                    "WHERE id = ? AND state = 'queued'", (self.clock(), record_id)), durable=False)
            except _WRITE_FAULTS as e:
                self._write_failed(e)

    def acknowledge(self, kind: Kind, boot: int, up_to_seq: int, from_seq: int = 0) -> int:
        """The ground holds every record of `kind` and `boot` from `from_seq` to `up_to_seq`:
        durable, never sent again, and the first to go when space is short. Returns how many
        records changed state."""
        def work():
            self.db.execute(
                "UPDATE records SET state = 'acknowledged' WHERE stream = ? AND boot = ? AND seq BETWEEN ? AND ? "
                "AND state != 'acknowledged'", (stream_name(kind), boot, from_seq, up_to_seq))
            return self.db.changes()
        with self._lock:
            try:
                return self._op(work, durable=True)
            except _WRITE_FAULTS as e:
                self._write_failed(e)
                return 0

    def checkpoint(self) -> None:
        """Fold the WAL into the database file (SQLite also does this by itself every ~4 MB)."""
        with self._lock:
            self.flush()
            try:
                self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            except _WRITE_FAULTS as e:  # the WAL keeps the pages; the next checkpoint folds them
                if is_no_space(e):
                    self.card.refuse(self.path.name, e, self._free_or_none())
                log.warning("checkpoint_refused", error=f"{type(e).__name__}: {e}")

    def depth(self) -> dict[str, int]:
        return self._reading(self._depth)

    def _depth(self) -> dict[str, int]:
        with self._lock:
            rows = self.db.execute(
                "SELECT stream, COUNT(*) FROM records WHERE state = 'queued' GROUP BY stream").fetchall()
            out = dict(rows)
            for r in self._memory.values():
                if not r[5]:
                    out[r[0]] = out.get(r[0], 0) + 1
        return out

    def counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        with self._lock:
            rows = self.db.execute("SELECT stream, state, COUNT(*) FROM records GROUP BY stream, state").fetchall()
        for stream, state, n in rows:
            out.setdefault(stream, {})[state] = n
        return out

    def health(self) -> dict:
        """What the health record reports about the store (wire.HEALTH_FIELDS names): the
        queue, the card, and the last sequence number handed out this boot per record stream."""
        with self._lock:
            last = {f"{stream}_seq": self._next[stream] - 1
                    for stream in ("musing", "event", "api_request", "image") if stream in self._next}
        return {"queue_depth": sum(self.depth().values()),
                "disk_free_kb": self.free_bytes() // 1024,
                "store": "degraded" if self.degraded else "ok",
                "faults": self.fault_count, **last}
