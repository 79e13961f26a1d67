"""The durable queue: numbering, order, and what survives a restart or a kill."""

from __future__ import annotations

import subprocess
import sys

import pytest

from payload.store import Store, StoreError, kind_of
from stratoecho.wire import Kind


def test_boot_counter_and_sequences_survive_restart(tmp_path):
    s = Store(tmp_path / "q.db")
    assert s.counters.start_boot() == 1
    assert [s.queue.enqueue(Kind.TELEMETRY, 1, lambda q: b"t")[0] for _ in range(3)] == [1, 2, 3]
    s.close()
    s = Store(tmp_path / "q.db")
    assert s.counters.start_boot() == 2
    assert s.queue.enqueue(Kind.TELEMETRY, 2, lambda q: b"t")[0] == 4  # never restarts
    assert s.queue.enqueue(Kind.MUSING, 2, lambda q: b"m")[0] == 1  # per stream


def test_priority_order(tmp_path):
    s = Store(tmp_path / "q.db", clock=lambda: 5.0)
    b = s.counters.start_boot()
    s.queue.enqueue(Kind.MUSING, b, lambda q: b"m1", created=1)
    s.queue.enqueue(Kind.EVENT, b, lambda q: b"e1", created=2)
    s.queue.enqueue(Kind.TELEMETRY, b, lambda q: b"t-old", created=3)
    s.queue.enqueue(Kind.TELEMETRY, b, lambda q: b"t-new", created=4)
    s.queue.enqueue(Kind.MUSING, b, lambda q: b"m2", created=5)
    order = []
    while (q := s.queue.next_queued()) is not None:
        order.append(q.payload)
        s.queue.mark_sent(q.id)
    # The newest position first; the one it superseded waits as backlog, behind the musings.
    assert order == [b"t-new", b"e1", b"m1", b"m2", b"t-old"]
    assert s.queue.counts()["musing"] == {"sent": 2}


def test_unknown_stream_and_newer_schema_are_refused(tmp_path):
    s = Store(tmp_path / "q.db")
    with pytest.raises(StoreError, match="unknown record kind 'gossip'"):
        s.queue.enqueue("gossip", 1, lambda q: b"")
    with pytest.raises(StoreError, match="unknown record kind 'musing'"):  # records are keyed by wire.Kind
        s.queue.enqueue("musing", 1, lambda q: b"")
    s.database.db.execute("PRAGMA user_version=99")
    s.close()
    with pytest.raises(StoreError, match="newer"):
        Store(tmp_path / "q.db")


def test_record_accepted_before_sigkill_is_still_there(tmp_path):
    """enqueue returns only after commit: a process killed right after keeps the record."""
    db = tmp_path / "q.db"
    code = (
        "import os, signal, sys\n"
        "from payload.store import Store\n"
        "from stratoecho.wire import Kind\n"
        f"s = Store({str(db)!r}); b = s.counters.start_boot()\n"
        "for i in range(50): s.queue.enqueue(Kind.MUSING, b, lambda q: b'thought %d' % q)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert proc.returncode == -9
    s = Store(db)
    assert s.queue.depth() == {"musing": 50}
    assert s.counters.start_boot() == 2
    assert s.database.db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def test_producers_and_radio_share_the_store_across_threads(tmp_path):
    """Beacon, think and radio threads use one store at once: no transaction may swallow another."""
    import threading

    s = Store(tmp_path / "q.db")
    b = s.counters.start_boot()
    errors: list[BaseException] = []
    stop = threading.Event()

    def produce(stream):
        try:
            for _ in range(150):
                s.queue.enqueue(kind_of(stream), b, lambda q: b"x" * 40)
        except BaseException as e:  # noqa: BLE001 - the test reports any failure
            errors.append(e)

    def radio():
        try:
            while not stop.is_set() or s.queue.next_queued() is not None:
                if (q := s.queue.next_queued()) is not None:
                    s.queue.mark_sent(q.id)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    producers = [threading.Thread(target=produce, args=(k,)) for k in ("telemetry", "musing", "event")]
    consumer = threading.Thread(target=radio)
    consumer.start()
    for t in producers:
        t.start()
    for t in producers:
        t.join()
    stop.set()
    consumer.join(timeout=60)
    assert not errors, errors
    assert s.queue.depth() == {}
    assert {k: v["sent"] for k, v in s.queue.counts().items()} == {"telemetry": 150, "musing": 150, "event": 150}
