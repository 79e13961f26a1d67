"""The store under faults: a full card, I/O errors, a corrupt file, a crash — the payload goes on
and nothing it accepted is lost."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from contextlib import closing

import apsw
import pytest

from payload.store import SEQ_BLOCK, Store
from stratoecho.wire import Kind


class FlakyVFS(apsw.VFS):
    """The default VFS, except that writes and syncs fail with `fail` while it is set."""

    def __init__(self, name: str):
        self.fail: type[apsw.Error] | None = None
        self.name = name
        super().__init__(name, "")

    def xOpen(self, name, flags):
        return FlakyFile(self, name, flags)


class FlakyFile(apsw.VFSFile):
    def __init__(self, vfs: FlakyVFS, name, flags):
        self.vfs = vfs
        super().__init__("", name, flags)

    def xWrite(self, data, offset):
        if self.vfs.fail:
            raise self.vfs.fail("injected by the test")
        return super().xWrite(data, offset)

    def xSync(self, flags):
        if self.vfs.fail:
            raise self.vfs.fail("injected by the test")
        return super().xSync(flags)


@pytest.fixture
def flaky():
    vfs = FlakyVFS(f"flaky{id(object())}")
    yield vfs
    vfs.unregister()


def rows(path, sql: str) -> list[tuple]:
    with closing(sqlite3.connect(path)) as db:
        return db.execute(sql).fetchall()


@pytest.mark.parametrize("fault", [apsw.FullError, apsw.IOError])
def test_a_card_that_refuses_writes_degrades_the_store_and_loses_nothing(tmp_path, flaky, fault):
    store = Store(tmp_path / "q.db", vfs=flaky.name, flush_s=1e9)
    boot = store.counters.start_boot()
    store.queue.enqueue(Kind.TELEMETRY, boot, lambda seq: b"$$T%d" % seq)
    store.queue.enqueue(Kind.TELEMETRY, boot, lambda seq: b"$$T%d" % seq)  # batched, not yet durable
    flaky.fail = fault
    seq, _ = store.queue.enqueue(Kind.MUSING, boot, lambda seq: b"thought %d" % seq)  # the commit fails
    store.queue.enqueue(Kind.TELEMETRY, boot, lambda seq: b"$$T%d" % seq)
    assert store.fallback.degraded and store.database.fault_count >= 1
    assert "running degraded" in store.database.faults[0]
    # The beacon goes on: the newest position is offered from memory, and so is the musing.
    assert store.queue.current_telemetry().payload == b"$$T3"
    store.queue.mark_sent(store.queue.current_telemetry().id)
    assert {q.payload for q in store.queue.queued(limit=10)} >= {b"thought %d" % seq}
    assert store.health()["store"] == "degraded"
    flaky.fail = None
    store.fallback.flush()
    assert not store.fallback.degraded
    store.close()
    held = rows(tmp_path / "q.db", "SELECT stream, seq, state FROM records ORDER BY stream, seq")
    assert held == [("musing", 1, "queued"), ("telemetry", 1, "queued"), ("telemetry", 2, "queued"),
                    ("telemetry", 3, "sent")]


def test_sequences_stay_unique_through_a_fault(tmp_path, flaky):
    store = Store(tmp_path / "q.db", vfs=flaky.name)
    boot = store.counters.start_boot()
    seqs = [store.queue.enqueue(Kind.MUSING, boot, lambda seq: b"m")[0] for _ in range(3)]
    flaky.fail = apsw.FullError
    seqs += [store.queue.enqueue(Kind.MUSING, boot, lambda seq: b"m")[0] for _ in range(SEQ_BLOCK + 5)]
    flaky.fail = None
    seqs += [store.queue.enqueue(Kind.MUSING, boot, lambda seq: b"m")[0] for _ in range(3)]
    assert seqs == sorted(set(seqs))
    store.close()
    assert sorted(s for (s,) in rows(tmp_path / "q.db", "SELECT seq FROM records")) == seqs


def test_state_the_card_refused_is_written_when_it_recovers(tmp_path, flaky):
    store = Store(tmp_path / "q.db", vfs=flaky.name)
    store.counters.start_boot()
    flaky.fail = apsw.IOError
    assert store.state.set("mode", "SURVIVAL") is False
    assert store.state.get("mode") == "SURVIVAL"
    flaky.fail = None
    store.fallback.flush()
    store.close()
    assert Store(tmp_path / "q.db").state.get("mode") == "SURVIVAL"


@pytest.mark.parametrize("damage", ["garbage", "torn page"])
def test_a_damaged_database_is_set_aside_and_numbers_keep_rising(tmp_path, damage):
    path = tmp_path / "q.db"
    store = Store(path)
    boot = store.counters.start_boot()
    for _ in range(200):
        store.queue.enqueue(Kind.MUSING, boot, lambda seq: b"a thought " * 20)
    store.checkpoint()
    store.close()
    data = bytearray(path.read_bytes())
    if damage == "garbage":
        data[:] = b"not a database at all " * 100
    else:
        data[4096 * 3: 4096 * 3 + 512] = b"\xa5" * 512  # a page the card half wrote
    path.write_bytes(bytes(data))
    store = Store(path)
    assert store.database.fault_count == 1 and "set aside" in store.database.faults[0]
    aside = [p.name for p in tmp_path.iterdir() if ".damaged-" in p.name]
    assert aside and aside[0].startswith("q.db.damaged-")
    assert store.counters.start_boot() == boot + 1  # from the side file
    seq, _ = store.queue.enqueue(Kind.MUSING, boot + 1, lambda seq: b"after")
    assert seq > 200
    store.close()


def test_a_clean_restart_leaves_no_gap_and_a_crash_never_reuses_a_number(tmp_path):
    path = tmp_path / "q.db"
    store = Store(path)
    boot = store.counters.start_boot()
    assert [store.queue.enqueue(Kind.TELEMETRY, boot, lambda q: b"t")[0] for _ in range(3)] == [1, 2, 3]
    store.close()
    store = Store(path)
    boot = store.counters.start_boot()
    assert store.queue.enqueue(Kind.TELEMETRY, boot, lambda q: b"t")[0] == 4
    store.close()
    # A crash: telemetry 5..9 handed out (and maybe on air) but never committed.
    code = (
        "import os, signal\n"
        "from payload.store import Store\n"
        "from stratoecho.wire import Kind\n"
        f"s = Store({str(path)!r}, flush_s=1e9); b = s.counters.start_boot()\n"
        "print([s.queue.enqueue(Kind.TELEMETRY, b, lambda q: b't')[0] for _ in range(5)], flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == -9
    handed_out = eval(proc.stdout.strip().splitlines()[-1])
    store = Store(path)
    boot = store.counters.start_boot()
    assert store.queue.enqueue(Kind.TELEMETRY, boot, lambda q: b"t")[0] > max(handed_out)
    assert boot == 4


def test_a_version_1_store_is_migrated_and_keeps_its_queue(tmp_path):
    path = tmp_path / "q.db"
    with closing(sqlite3.connect(path)) as db:
        db.executescript("""
            CREATE TABLE records (id INTEGER PRIMARY KEY, stream TEXT NOT NULL, priority INTEGER NOT NULL,
                boot INTEGER NOT NULL, seq INTEGER NOT NULL, created REAL NOT NULL, payload BLOB NOT NULL,
                send_count INTEGER NOT NULL DEFAULT 0, state TEXT NOT NULL DEFAULT 'queued'
                CHECK (state IN ('queued', 'sent', 'acknowledged')), UNIQUE (stream, boot, seq));
            CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
            INSERT INTO counters VALUES ('boot', 7), ('seq:musing', 41);
            INSERT INTO records (stream, priority, boot, seq, created, payload) VALUES ('musing', 2, 7, 41, 1, x'00');
            PRAGMA user_version = 1;
        """)
    store = Store(path)
    assert store.queue.depth() == {"musing": 1}
    assert store.counters.start_boot() == 8
    assert store.queue.enqueue(Kind.MUSING, 8, lambda q: b"m")[0] == 42
    # Schema 3 lets a record expire unsent (a musing gone stale): the old rows carried over, whole.
    gone = store.queue.expire_stale((Kind.MUSING,), created_before=2.0)
    assert [(q.boot, q.seq, q.payload) for q in gone] == [(7, 41, b"\x00")]
    assert store.queue.find(Kind.MUSING, 7, 41)[1] == "expired" and store.queue.depth() == {"musing": 1}
    store.close()
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 3
        with pytest.raises(sqlite3.IntegrityError):  # the CHECK still refuses a state nobody wrote
            db.execute("UPDATE records SET state = 'lost'")


class CorruptOnce:
    """Stands in for the store's connection: the first query of `records` finds damage, as
    SQLite does when it reads a page the card mangled; everything else goes to the real one."""

    def __init__(self, real):
        self.real, self.tripped = real, False

    def execute(self, sql, *args):
        if not self.tripped and "FROM records WHERE state = 'queued'" in sql:
            self.tripped = True
            raise apsw.CorruptError("database disk image is malformed")
        return self.real.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self.real, name)


def test_damage_found_in_flight_salvages_the_queue_into_a_new_file(tmp_path):
    path = tmp_path / "q.db"
    store = Store(path)
    boot = store.counters.start_boot()
    for _ in range(3):
        store.queue.enqueue(Kind.MUSING, boot, lambda seq: b"thought %d" % seq)
    store.queue.mark_sent(store.queue.next_queued().id)
    store.queue.acknowledge(Kind.MUSING, boot, 1)  # the ground has 1: no need to salvage it
    store.queue.enqueue(Kind.MUSING, boot, lambda seq: b"thought %d" % seq)
    store.database.db = CorruptOnce(store.database.db)
    queued = store.queue.queued(limit=10)
    assert sorted(q.seq for q in queued) == [2, 3, 4]
    assert any(".damaged-" in p.name for p in tmp_path.iterdir())
    assert "2 records salvaged" not in store.database.faults[-1] and "3 records salvaged" in store.database.faults[-1]
    store.queue.enqueue(Kind.MUSING, boot, lambda seq: b"thought %d" % seq)  # goes after the salvaged ones
    store.close()
    # Numbers continue above the block the damaged file had reserved (from the side file).
    assert rows(path, "SELECT seq, state FROM records ORDER BY seq") == [
        (2, "queued"), (3, "queued"), (4, "queued"), (SEQ_BLOCK + 1, "queued")]


def test_stale_byte_totals_are_counted_again_before_an_eviction_decides(tmp_path):
    from payload.store import Budgets

    store = Store(tmp_path / "q.db", budgets=Budgets(per_stream={"image": 3000}))
    boot = store.counters.start_boot()
    for _ in range(2):
        store.queue.enqueue(Kind.IMAGE, boot, lambda seq: b"\xff\xd8" + bytes(998))
    # As after a fault whose recount failed: the totals in memory are wrong.
    store.database.bytes_by_stream, store.database.totals_stale = {"image": 10**9}, True
    store.queue.enqueue(Kind.IMAGE, boot, lambda seq: b"\xff\xd8" + bytes(998))
    assert store.database.evicted == {} and store.database.bytes_by_stream["image"] == 3000  # recounted: nothing had to go
    store.close()
