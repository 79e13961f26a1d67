"""The store's policy: who goes first, nobody starves, budgets evict the right records."""

from __future__ import annotations

import shutil

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from payload.store import PRIORITY, Budgets, Store, kind_of
from stratoecho.wire import Kind
from tests.fakes import FakeClock

NON_TELEMETRY = [s for s in PRIORITY if s != "telemetry"]


def drain_one(store: Store) -> tuple | None:
    q = store.queue.current_telemetry() or store.queue.next_queued()
    if q is None:
        return None
    store.queue.mark_sent(q.id)
    return q


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.sampled_from(NON_TELEMETRY), max_size=3), min_size=20, max_size=120),
       st.sampled_from([20.0, 60.0]))
def test_no_record_waits_behind_one_that_came_much_later(tmp_path_factory, arrivals, aging_s):
    """Aging bounds every wait: a record is sent before anything that arrived more than
    (its priority − the other's) × aging_s after it, whatever the load (here often more
    than the link can carry: up to 3 arrivals a step, one send a step)."""
    clock = FakeClock(1_000_000.0)
    store = Store(tmp_path_factory.mktemp("q") / "q.db", clock=clock, aging_s=aging_s)
    boot = store.counters.start_boot()
    created: dict[tuple[str, int], float] = {}
    order: list[tuple[str, int]] = []
    sent_at: dict[tuple[str, int], float] = {}
    for step in arrivals:
        for stream in step:
            seq, _ = store.queue.enqueue(kind_of(stream), boot, lambda seq: b"x", created=clock.t)
            created[(stream, seq)] = clock.t
        if (q := drain_one(store)) is not None:
            order.append((q.stream, q.seq))
            sent_at[order[-1]] = clock.t
        clock.t += 10.0
    assert len(set(order)) == len(order)
    for i, earlier in enumerate(order):
        for later in order[i + 1:]:
            if created[later] > sent_at[earlier]:
                continue  # it was not there yet to be chosen
            # Both waited and `earlier` was chosen: it cannot have arrived too late to beat `later`.
            slack = (PRIORITY[later[0]] - PRIORITY[earlier[0]]) * aging_s
            assert created[earlier] <= created[later] + slack + 1e-6, (earlier, later)
    store.close()


@pytest.mark.parametrize("aging_s, starves", [(50.0, False), (1e12, True)])
def test_an_image_under_a_flood_of_musings_goes_out_only_with_aging(tmp_path, aging_s, starves):
    clock = FakeClock(1_000_000.0)
    store = Store(tmp_path / "q.db", clock=clock, aging_s=aging_s)
    boot = store.counters.start_boot()
    store.queue.enqueue(Kind.IMAGE, boot, lambda seq: b"\xff\xd8 jpeg", created=clock.t)
    sent_at = None
    for step in range(400):  # a new musing every step, one record sent per step: saturated
        store.queue.enqueue(Kind.MUSING, boot, lambda seq: b"m", created=clock.t)
        q = drain_one(store)
        if q.stream == "image":
            sent_at = step
        clock.t += 1.0
    if starves:
        assert sent_at is None  # strict priority alone would starve it
    else:
        assert sent_at is not None and sent_at <= (PRIORITY["image"] - PRIORITY["musing"]) * aging_s + 1


@settings(max_examples=30, deadline=None)
@given(st.lists(st.sampled_from(["telemetry", "musing", "image", "health", "none"]), min_size=5, max_size=80))
def test_the_newest_position_always_goes_first(tmp_path_factory, events):
    clock = FakeClock(1_000_000.0)
    store = Store(tmp_path_factory.mktemp("q") / "q.db", clock=clock)
    boot = store.counters.start_boot()
    newest = None
    for e in events:
        if e != "none":
            seq, _ = store.queue.enqueue(kind_of(e), boot, lambda seq: b"x", created=clock.t)
            if e == "telemetry":
                newest = seq
        q = drain_one(store)
        if newest is not None:
            assert (q.stream, q.seq) == ("telemetry", newest)
            newest = None
        clock.t += 1.0
    store.close()


def test_superseded_positions_wait_as_backlog_and_still_go_out(tmp_path):
    clock = FakeClock(1_000_000.0)
    store = Store(tmp_path / "q.db", clock=clock)
    boot = store.counters.start_boot()
    for _ in range(3):
        store.queue.enqueue(Kind.TELEMETRY, boot, lambda seq: b"$$%d" % seq, created=clock.t)
    store.queue.enqueue(Kind.MUSING, boot, lambda seq: b"m", created=clock.t)
    sent = [(q.stream, q.seq) for q in iter(lambda: drain_one(store), None)]
    assert sent == [("telemetry", 3), ("musing", 1), ("telemetry", 1), ("telemetry", 2)]


def _fill(store: Store, boot: int, stream: str, n: int, size: int, clock: FakeClock) -> list[int]:
    seqs = []
    for _ in range(n):
        seqs.append(store.queue.enqueue(kind_of(stream), boot, lambda seq: b"\xff\xd8" + bytes(size - 2), created=clock.t)[0])
        clock.t += 1
    return seqs


def _held(store: Store, stream: str) -> list[tuple[int, str]]:
    return [(seq, state) for seq, state in store.database.db.execute(
        "SELECT seq, state FROM records WHERE stream = ? ORDER BY seq", (stream,)).fetchall()]


def test_a_stream_over_budget_loses_acknowledged_then_sent_then_oldest_queued(tmp_path):
    clock = FakeClock(1_000_000.0)
    store = Store(tmp_path / "q.db", clock=clock, budgets=Budgets(per_stream={"image": 5000}))
    boot = store.counters.start_boot()
    _fill(store, boot, "image", 5, 1000, clock)  # exactly at budget
    for q in store.queue.queued(limit=2, kinds=(Kind.IMAGE,)):
        store.queue.mark_sent(q.id)  # 1, 2 sent
    store.queue.acknowledge(Kind.IMAGE, boot, 1)  # 1 acknowledged
    _fill(store, boot, "image", 1, 1000, clock)  # 6: over by one
    assert _held(store, "image") == [(2, "sent"), (3, "queued"), (4, "queued"), (5, "queued"), (6, "queued")]
    _fill(store, boot, "image", 1, 1000, clock)  # 7: the sent one goes
    assert [s for s, _ in _held(store, "image")] == [3, 4, 5, 6, 7]
    _fill(store, boot, "image", 1, 1000, clock)  # 8: only queued left: the oldest goes
    assert [s for s, _ in _held(store, "image")] == [4, 5, 6, 7, 8]
    assert store.database.evicted == {"image": 3}


def test_a_record_larger_than_its_budget_is_kept_rather_than_evicting_itself(tmp_path):
    clock = FakeClock(1_000_000.0)
    store = Store(tmp_path / "q.db", clock=clock, budgets=Budgets(per_stream={"image": 500}))
    boot = store.counters.start_boot()
    _fill(store, boot, "image", 2, 1000, clock)
    assert [s for s, _ in _held(store, "image")] == [2]


def test_the_total_budget_evicts_the_lowest_priority_first(tmp_path):
    clock = FakeClock(1_000_000.0)
    store = Store(tmp_path / "q.db", clock=clock, budgets=Budgets(total=6000))
    boot = store.counters.start_boot()
    _fill(store, boot, "musing", 3, 1000, clock)
    _fill(store, boot, "image", 3, 1000, clock)
    _fill(store, boot, "musing", 1, 1000, clock)  # over: an image goes, not a musing
    assert len(_held(store, "musing")) == 4 and [s for s, _ in _held(store, "image")] == [2, 3]


def test_low_free_space_evicts_a_little_each_time_not_everything(tmp_path, monkeypatch):
    clock = FakeClock(1_000_000.0)
    # Short of min_free by a byte, which emptying the store could give back: the rule applies. (A
    # min_free no deletion could meet evicts nothing: tests/test_full_card.py.)
    usage = lambda _p: shutil._ntuple_diskusage(32 * 10**9, 31 * 10**9 + 1, 10**9 - 1)  # noqa: E731
    store = Store(tmp_path / "q.db", clock=clock, budgets=Budgets(min_free=10**9), disk_usage=usage)
    boot = store.counters.start_boot()
    _fill(store, boot, "image", 4, 100, clock)
    # each insert evicts one older record: the file stops growing, the store is not emptied
    assert [s for s, _ in _held(store, "image")] == [4]
    _fill(store, boot, "musing", 2, 100, clock)
    assert len(_held(store, "musing")) == 1 and _held(store, "image") == []
