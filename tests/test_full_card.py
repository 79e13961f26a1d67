"""A full SD card degrades the payload, never ends it (docs/storage.md, "A full card").

The card is made full for real where SQLite allows it: `PRAGMA max_page_count` (set on every
new connection through `apsw.connection_hooks`, or on a live one) makes SQLite answer
SQLITE_FULL exactly as it does when write() fails with ENOSPC; `CardVFS` refuses every write that
would make a file longer, as a full card does, while overwrites of existing pages still succeed.
Plain files (the statistics) get OSError(ENOSPC) from a patched writer, and the free space the
payload sees comes from a fake `disk_usage`. No test here depends on the speed of the machine.
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import apsw
import pytest

from payload.assembly import build_onboard
from payload.clock import Clock
from payload.config import CameraDeviceSection, PayloadConfig
from payload.onboard import Onboard
from payload.parts.camera import Camera, stills_to_prune
from payload.parts.card import MB, CardWatch, stills_budget
from payload.persona.memory import Memory
from payload.producers import Fitted
from payload.store import Budgets, Store
from sim.world.camera import SimCameraBackend
from sim.world.flight import SimSensors
from stratoecho import wire
from stratoecho.wire import Kind
from tests.fakes import RecordingRadio

CARD = 32 * 10**9


class CardVFS(apsw.VFS):
    """The unix VFS, except that while `full` a write that would make a file under `root` longer
    fails with SQLITE_FULL, as it does when the card has no free block left."""

    def __init__(self, root: Path, default: bool = False):
        self.root, self.full = str(root), False
        self.name = f"card{id(self)}"
        super().__init__(self.name, "unix", makedefault=default)

    def xOpen(self, name, flags):
        return CardFile(self, name, flags)


class CardFile(apsw.VFSFile):
    def __init__(self, vfs: CardVFS, name, flags):
        self.vfs = vfs
        self.path = name.filename() if isinstance(name, apsw.URIFilename) else (name or "")
        super().__init__("unix", name, flags)

    def xWrite(self, data, offset):
        if self.vfs.full and self.path.startswith(self.vfs.root) and offset + len(data) > self.xFileSize():
            raise apsw.FullError("no space left on the card (test)")
        return super().xWrite(data, offset)


class Card:
    """The card as the payload sees it: SQLite through `vfs`, plain files, and its free space."""

    def __init__(self, root: Path, free: int = 10 * 10**9):
        self.root, self.free = root, free
        self.vfs = CardVFS(root)
        self._full = False

    @property
    def full(self) -> bool:
        return self._full

    @full.setter
    def full(self, value: bool) -> None:
        self._full = self.vfs.full = value

    def usage(self, _path) -> shutil._ntuple_diskusage:
        free = 0 if self._full else self.free
        return shutil._ntuple_diskusage(CARD, CARD - free, free)


@pytest.fixture
def card(tmp_path, monkeypatch):
    c = Card(tmp_path)
    write_text = Path.write_text

    def refusing_write_text(self, *args, **kwargs):
        if c.full and str(self).startswith(str(tmp_path)):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", refusing_write_text)
    yield c
    c.vfs.unregister()


@pytest.fixture
def page_limit():
    """`page_limit["pages"] = n`: every new connection to a file may hold at most n pages."""
    limit = {"pages": None}

    def hook(db: apsw.Connection) -> None:
        if limit["pages"] is not None and db.filename:  # files only: RAM is not the card
            db.execute(f"PRAGMA max_page_count={limit['pages']}")

    apsw.connection_hooks.append(hook)
    yield limit
    apsw.connection_hooks.remove(hook)


def rows(path, sql: str) -> list[tuple]:
    with closing(sqlite3.connect(path)) as db:
        return db.execute(sql).fetchall()


class Tick:
    def __init__(self):
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


# --------------------------------------------------------------------------- the store


def test_a_store_on_a_card_that_filled_while_it_was_down_opens_and_goes_on(tmp_path, card):
    """Fact: at every start apsw.FullError in Store._connect ended the daemon (a crash loop)."""
    path = tmp_path / "q.db"
    store = Store(path, vfs=card.vfs.name, disk_usage=card.usage)
    boot = store.counters.start_boot()
    store.queue.enqueue(Kind.EVENT, boot, lambda seq: b"before")
    store.close()
    card.full = True
    store = Store(path, vfs=card.vfs.name, disk_usage=card.usage, flush_s=1e9)
    boot2 = store.counters.start_boot()
    assert boot2 == boot + 1
    seq, _ = store.queue.enqueue(Kind.TELEMETRY, boot2, lambda seq: b"$$T%d" % seq)
    assert store.queue.current_telemetry().payload == b"$$T%d" % seq  # the beacon goes on
    assert store.fallback.degraded and store.database.card.full
    store.fallback.maybe_flush()
    assert [n for n in store.fallback.take_notices() if n.name == "card_full"]
    card.full = False
    store.fallback.maybe_flush()
    assert not store.fallback.degraded
    assert [n.text for n in store.fallback.take_notices()] == ["card recovered: 9537 MB free; stills and stats resume"]
    store.close()
    assert rows(path, "SELECT value FROM counters WHERE name = 'boot'") == [(boot2,)]
    assert rows(path, "SELECT stream, boot FROM records ORDER BY id") == [("event", boot), ("telemetry", boot2)]


def test_a_card_that_cannot_hold_a_new_database_runs_the_store_from_memory(tmp_path, page_limit):
    """Starting on a card too full for the database itself: the store opens in RAM, the
    beacon goes on, and when the card has room the store moves there with what RAM held."""
    page_limit["pages"] = 1  # SQLITE_FULL while the schema is written
    clock = Tick()
    store = Store(tmp_path / "q.db", clock=clock, flush_s=60)
    assert not store.database.on_card and store.fallback.degraded
    assert "running from memory" in store.database.faults[0]
    boot = store.counters.start_boot()
    for _ in range(3):
        store.queue.enqueue(Kind.TELEMETRY, boot, lambda seq: b"$$T%d" % seq)
    store.queue.enqueue(Kind.MUSING, boot, lambda seq: b"a thought")
    assert store.queue.current_telemetry().payload == b"$$T3"
    store.queue.mark_sent(store.queue.current_telemetry().id)
    assert store.health()["store"] == "degraded"
    page_limit["pages"] = None  # room again
    store.fallback.maybe_flush()
    assert not store.database.on_card, "the card is tried again only after flush_s"
    clock.t += 60
    store.fallback.maybe_flush()
    assert store.database.on_card and not store.fallback.degraded
    store.queue.enqueue(Kind.TELEMETRY, boot, lambda seq: b"$$T%d" % seq)
    store.close()
    assert rows(tmp_path / "q.db", "SELECT stream, seq, state FROM records ORDER BY stream, seq") == [
        ("musing", 1, "queued"), ("telemetry", 1, "queued"), ("telemetry", 2, "queued"),
        ("telemetry", 3, "sent"), ("telemetry", 4, "queued")]
    assert rows(tmp_path / "q.db", "SELECT value FROM counters WHERE name = 'boot'") == [(boot,)]


def test_a_card_that_fills_in_flight_is_said_once_and_the_queue_goes_on(tmp_path):
    """SQLITE_FULL at commit, made for real with max_page_count on the live connection: the
    store holds records in memory, says so once (not once per refused write), and writes them
    when the card has room."""
    path = tmp_path / "q.db"
    store = Store(path, flush_s=1e9)
    boot = store.counters.start_boot()
    pages = store.database.db.execute("PRAGMA page_count").fetchall()[0][0]
    store.database.db.execute(f"PRAGMA max_page_count={pages}")
    seqs = [store.queue.enqueue(Kind.MUSING, boot, lambda seq: b"m" * 500)[0] for _ in range(60)]
    assert store.fallback.degraded
    assert len(store.database.faults) == 1 and "FullError" in store.database.faults[0]
    assert store.database.refused_writes > 10  # every later refusal counted, none said again
    assert store.database.card.full
    store.database.db.execute("PRAGMA max_page_count=1000000")
    store.fallback.maybe_flush()
    assert not store.fallback.degraded
    store.close()
    assert [s for (s,) in rows(path, "SELECT seq FROM records ORDER BY seq")] == seqs


def test_min_free_larger_than_the_card_deletes_nothing_queued(tmp_path):
    """Fact: with min_free_mb larger than the card, four queued events were deleted unsent at start."""
    usage = lambda _p: shutil._ntuple_diskusage(CARD, CARD - 10**9, 10**9)  # noqa: E731
    store = Store(tmp_path / "q.db", budgets=Budgets(min_free=CARD * 2), disk_usage=usage)
    boot = store.counters.start_boot()
    for _ in range(6):
        store.queue.enqueue(Kind.EVENT, boot, lambda seq: b"event %d" % seq)
    assert store.database.evicted == {}
    assert store.queue.depth() == {"event": 6}
    notes = store.fallback.take_notices()
    assert len([n for n in notes if n.name == "min_free_unreachable" and "cannot be met" in n.text]) == 1
    store.close()


def test_a_min_free_the_store_can_meet_still_evicts_in_the_documented_order(tmp_path):
    """The rule that stays: below a reachable min_free each new record evicts one, the
    acknowledged first, so the file stops growing."""
    free = {"bytes": 10**9}
    usage = lambda _p: shutil._ntuple_diskusage(CARD, CARD - free["bytes"], free["bytes"])  # noqa: E731
    store = Store(tmp_path / "q.db", budgets=Budgets(min_free=10 * MB), disk_usage=usage)
    boot = store.counters.start_boot()
    for _ in range(3):
        store.queue.enqueue(Kind.EVENT, boot, lambda seq: b"e")
    store.queue.acknowledge(Kind.EVENT, boot, 1)
    free["bytes"] = 10 * MB - 1000  # the store's files would give back more than the 1000 bytes missing
    store.queue.enqueue(Kind.EVENT, boot, lambda seq: b"e")
    assert store.database.evicted == {"event": 1}
    assert store.queue.depth() == {"event": 3}  # the acknowledged one went
    store.close()


def test_the_card_watch_says_each_change_once_with_a_margin():
    watch = CardWatch(min_free=200 * MB)
    watch.observe(500 * MB)
    watch.observe(150 * MB)
    watch.observe(100 * MB)
    watch.observe(205 * MB)  # above min_free but inside the margin: still full
    assert watch.full
    watch.observe(230 * MB)
    assert not watch.full
    watch.refuse("stats.json", OSError(errno.ENOSPC, "No space left on device"), 300 * MB)
    watch.observe(300 * MB)  # free space alone does not end a refusal
    assert watch.full
    watch.observe(300 * MB, writes_ok=True)
    assert [n.text.split(":")[0] for n in watch.take_notices()] == ["card full", "card recovered"] * 2


# --------------------------------------------------------------------------- memory.db


def test_memory_on_a_full_card_is_one_fault_not_one_per_musing(tmp_path, page_limit):
    mem = Memory(tmp_path / "memory.db")
    pages = mem.db.execute("PRAGMA page_count").fetchall()[0][0]
    mem.db.execute(f"PRAGMA max_page_count={pages}")
    results = [mem.remember_musing(1, n, 1_000_000.0 + n, "the sky is dark blue up here " * 20)
               for n in range(1, 40)]
    assert results[0] and not results[-1]
    assert len(mem.faults) == 1 and "card full" in mem.faults[0]
    mem.db.execute("PRAGMA max_page_count=1000000")
    assert mem.remember_musing(1, 99, 1_000_099.0, "room again")
    mem.close()


# --------------------------------------------------------------------------- stills


def test_stills_beyond_the_budget_go_oldest_first_and_the_newest_stays():
    stills = [("img_000003.jpg", 300), ("img_000001.jpg", 100), ("img_000002.jpg", 200)]
    assert stills_to_prune(stills, 600) == []
    assert stills_to_prune(stills, 500) == ["img_000001.jpg"]
    assert stills_to_prune(stills, 10) == ["img_000001.jpg", "img_000002.jpg"]  # never the newest


def test_the_stills_budget_is_bounded_by_the_card():
    assert stills_budget(4096, CARD, 200 * MB) == 4096 * MB
    assert stills_budget(4096, 2 * 1024 * MB, 200 * MB) == 1848 * MB  # a 2 GB card
    assert stills_budget(4096, None, 200 * MB) == 4096 * MB  # size unknown: the configured budget


def test_stills_mb_must_be_positive():
    with pytest.raises(ValueError, match=r"stills_mb\n.*greater than 0"):
        CameraDeviceSection(stills_mb=0)
    assert CameraDeviceSection().stills_mb == 4096


def test_a_still_refused_by_a_full_card_leaves_no_fragment(tmp_path):
    class FullBackend:
        def capture(self, path):
            Path(path).write_bytes(b"\xff\xd8 half a jpeg")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

        def close(self):
            pass

    cam = Camera(lambda: FullBackend(), still_dir=tmp_path / "stills", timeout_s=5)
    reading = cam.capture()
    assert reading.status == "error" and cam.last_exc.errno == errno.ENOSPC
    assert list((tmp_path / "stills").iterdir()) == []
    cam.close()


# --------------------------------------------------------------------------- the daemon


def make_daemon(tmp_path, card, **cfg) -> tuple[Onboard, Camera]:
    clock = Clock(speedup=1e6)
    config = PayloadConfig(**cfg)
    sim = SimCameraBackend(lambda: 25_000.0, size=(160, 120))
    cam = Camera(sim.factory, still_dir=tmp_path / "data" / "stills", thumb_max_bytes=4000, timeout_s=5)
    return build_onboard(config, SimSensors(clock), RecordingRadio(), clock, None, tmp_path / "data",
                  fitted=Fitted(camera=cam, disk_usage=card.usage)), cam


def events(d: Onboard) -> list[str]:
    return [wire.Record.from_body(wire.Kind.EVENT, q.boot, q.seq, q.payload).text
            for q in d.parts.store.queue.queued(limit=10_000, kinds=(Kind.EVENT,))]


@pytest.fixture
def default_card(tmp_path, card):
    """`card` as SQLite's default VFS, so the daemon's own store and memory.db sit on it."""
    card.vfs.unregister()
    card.vfs = CardVFS(tmp_path, default=True)
    return card


@pytest.mark.timeout(120)
def test_the_daemon_flies_on_through_a_full_card_and_recovers(tmp_path, default_card):
    """Fact: ENOSPC from write_stats() ended the daemon 0.4 s after the card filled. Now the
    beacon keeps queueing, stills and stats stop, the ground hears it once, and all recovers."""
    card = default_card
    d, cam = make_daemon(tmp_path, card)
    d.daemon.run_once("beacon")
    d.flight_stats.write()
    stats = tmp_path / "data" / "stats.json"
    assert stats.exists()
    assert d.daemon.run_once("camera")
    captures = cam.counters.captures

    card.full = True
    for _ in range(80):
        d.daemon.run_once("beacon")
    d.flight_stats.write()  # refused: not an exception
    d.daemon.run_once("health")
    assert d.parts.store.database.card.full and d.parts.store.fallback.degraded
    assert not d.daemon.run_once("camera") and cam.counters.captures == captures  # no stills on a full card
    newest = d.parts.store.queue.current_telemetry()
    assert newest is not None and newest.seq == d.parts.beacon.counts.telemetry_queued  # beaconing from memory
    before = stats.read_text()
    d.flight_stats.write()
    assert stats.read_text() == before  # stats wait for room
    said = events(d)
    assert len([e for e in said if e.startswith("card full")]) == 1
    assert len([e for e in said if e.startswith("store fault")]) <= 1
    d.daemon.run_once("health")
    assert len([e for e in events(d) if e.startswith("card full")]) == 1  # once, not every health record

    card.full = False
    d.daemon.run_once("health")
    assert not d.parts.store.fallback.degraded and not d.parts.store.database.card.full
    assert [e for e in events(d) if e.startswith("card recovered")]
    d.flight_stats.write()
    assert stats.read_text() != before
    d.daemon.shutdown()
    db = tmp_path / "data" / "queue.db"
    seqs = [s for (s,) in rows(db, "SELECT seq FROM records WHERE stream = 'telemetry' ORDER BY seq")]
    assert seqs == list(range(1, d.parts.beacon.counts.telemetry_queued + 1))  # nothing the beacon queued was lost


@pytest.mark.timeout(120)
def test_the_daemon_starts_on_a_full_card(tmp_path, default_card):
    card = default_card
    d, cam = make_daemon(tmp_path, card)
    d.daemon.run_once("beacon")
    d.daemon.shutdown()
    card.full = True
    d, cam = make_daemon(tmp_path, card)  # ended the daemon with apsw.FullError before
    d.daemon.run_once("beacon")
    d.daemon.run_once("health")
    assert d.parts.store.queue.current_telemetry() is not None
    assert [e for e in events(d) if e.startswith("card full")]
    d.daemon.shutdown()


def test_stills_are_pruned_to_their_budget(tmp_path, card):
    d, cam = make_daemon(tmp_path, card)
    for _ in range(4):
        assert d.daemon.run_once("camera")
    sizes = sorted(p.stat().st_size for p in (tmp_path / "data" / "stills").glob("img_*.jpg"))
    assert len(sizes) == 4
    d.cfg.devices.camera.stills_mb = (sizes[-1] * 2.5) / MB  # room for two stills, not three
    assert d.daemon.run_once("camera")
    kept = sorted(p.name for p in (tmp_path / "data" / "stills").glob("img_*.jpg"))
    assert kept == ["img_000004.jpg", "img_000005.jpg"]
    d.daemon.shutdown()
