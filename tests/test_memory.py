"""The persona's memory: durable, searchable, bounded, and never fatal to the payload."""

from __future__ import annotations

import random
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import apsw
import pytest
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from payload.persona.memory import Memory, MemoryEntry, match_expression
from sim.bench.run.powercut import PowerCutVFS

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=timezone.utc)
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def mem(tmp_path):
    m = Memory(tmp_path / "memory.db")
    yield m
    m.close()


def test_musings_and_notes_survive_close_and_reopen(tmp_path):
    path = tmp_path / "memory.db"
    m = Memory(path)
    assert m.remember_musing(3, 17, T0, "the clouds look like spilled milk")
    assert m.remember_note("your friend Sam says hello", T0 + timedelta(minutes=5))
    m.close()
    m = Memory(path)
    try:
        musing, = m.recent(1, kinds=["musing"])
        note, = m.recent(1, kinds=["note"])
        assert (musing.kind, musing.text, musing.boot, musing.seq, musing.created) == \
            ("musing", "the clouds look like spilled milk", 3, 17, T0)
        assert (note.kind, note.text, note.source, note.boot) == ("note", "your friend Sam says hello", "uplink", None)
        assert note.created == T0 + timedelta(minutes=5)
        assert m.count() == 2 and m.count("note") == 1
        assert m.recall("Sam")[0].text == "your friend Sam says hello"  # the index came back too
    finally:
        m.close()


def test_a_note_is_on_disk_when_remember_note_returns(tmp_path):
    # The writer dies without closing (no checkpoint, no clean shutdown): the note must be there.
    path = tmp_path / "memory.db"
    code = ("import os, sys; from payload.persona.memory import Memory; m = Memory(sys.argv[1]); "
            "ok = m.remember_note('balloon launched from Welshpool', 1780000000.0); os._exit(0 if ok else 3)")
    subprocess.run([sys.executable, "-c", code, str(path)], cwd=ROOT, check=True, timeout=60)
    m = Memory(path)
    try:
        assert [e.text for e in m.recent(5)] == ["balloon launched from Welshpool"]
    finally:
        m.close()


def test_a_note_is_synced_before_it_returns_and_a_musing_is_not(tmp_path):
    # A modelled card: only synced blocks survive the cut. Notes are heard once (FULL);
    # musings are also in the radio queue, and a sync a minute would wear the card (NORMAL).
    with PowerCutVFS() as vfs:
        m = Memory(tmp_path / "live" / "memory.db", vfs=vfs.name)
        syncs = lambda: sum(s.syncs for s in vfs.stats.values())  # noqa: E731
        before = syncs()
        assert m.remember_musing(1, 1, T0, "a musing only the page cache holds")
        assert syncs() == before
        assert m.remember_note("the recovery team is on the A5", T0)
        assert syncs() > before
        vfs.cut_at = vfs.ops  # the power goes now
        vfs.crash_image(tmp_path / "card", random.Random(0), keep=0.0, torn=0.0)
        m.close()  # fails on the dead card: logged, not raised
        assert "close failed" in m.faults[-1]
    m = Memory(tmp_path / "card" / "memory.db")
    try:
        assert "the recovery team is on the A5" in [e.text for e in m.recent(5)]
        assert m.recall("recovery A5")[0].kind == "note"
    finally:
        m.close()


def test_created_may_be_unix_seconds_or_a_naive_utc_datetime(mem):
    mem.remember_musing(1, 1, T0.timestamp(), "a")
    mem.remember_musing(1, 2, T0.replace(tzinfo=None), "b")
    assert [e.created for e in mem.recent(2)] == [T0, T0]


def test_the_same_musing_is_kept_once_and_empty_text_not_at_all(mem):
    assert mem.remember_musing(1, 5, T0, "thin air")
    assert not mem.remember_musing(1, 5, T0, "thin air")  # a retried call after a hiccup
    assert not mem.remember_musing(1, 6, T0, "   ")
    assert not mem.remember_note("", T0)
    assert mem.count() == 1


def test_recall_ranks_the_relevant_entry_first(mem):
    mem.remember_musing(1, 1, T0, "the battery feels sluggish in this cold")
    mem.remember_musing(1, 2, T0, "so cold up here, my sensors are freezing, cold cold")
    mem.remember_musing(1, 3, T0, "the sun is blinding above the clouds")
    mem.remember_note("the ground crew had pizza", T0)
    top = mem.recall("freezing cold", k=2)
    assert [e.seq for e in top] == [2, 1]  # stemming: "freezing" matches, "cold" thrice beats once
    assert mem.recall("cloud")[0].seq == 3  # porter: "cloud" finds "clouds"
    assert [e.kind for e in mem.recall("pizza crew")] == ["note"]
    assert mem.recall("pizza", kinds=["musing"]) == []


def test_recall_breaks_ties_by_recency(mem):
    for seq in range(1, 4):
        mem.remember_musing(1, seq, T0, "ozone smells like rain")
    assert [e.seq for e in mem.recall("ozone", k=3)] == [3, 2, 1]


def test_empty_or_stop_word_query_gives_the_most_recent(mem):
    for seq in range(1, 6):
        mem.remember_musing(1, seq, T0, f"thought number {seq}")
    assert [e.seq for e in mem.recall("", k=2)] == [5, 4]
    assert [e.seq for e in mem.recall("and the OR of it", k=2)] == [5, 4]
    assert [e.seq for e in mem.recall("!!! ??? ---", k=3)] == [5, 4, 3]
    assert mem.recall("anything", k=0) == []


@pytest.mark.parametrize("query", [
    '"', '""', '" OR "', "cold AND", "NEAR(cold sun, 2)", "cold NOT sun", "*", "cold*", "^cold", "text:cold",
    "{text}: cold", "(((", "cold OR OR OR", "-cold", "+", "'; DROP TABLE entries; --", "\x00cold\x00",
    "\ud800cold", "❄️🎈", "kalt über den Wolken ❄", "东京 雲", "ＣＯＬＤ", "café", "_", "a_b", "cold " * 500,
])
def test_hostile_queries_never_raise(mem, query):
    mem.remember_musing(1, 1, T0, "cold over the cafe, über den Wolken, 東京 雲 東京")
    got = mem.recall(query, k=3)
    assert isinstance(got, list) and all(isinstance(e, MemoryEntry) for e in got)
    assert mem.count() == 1  # and nothing was harmed
    assert mem.fault_count == 0  # the query was made safe, not caught failing


def test_hostile_queries_still_find_their_words(mem):
    mem.remember_musing(1, 1, T0, "cold over the café, über den Wolken")
    mem.remember_musing(1, 2, T0, "nothing to see")
    for q in ['"cold', "cold*", "NEAR(cold", "Cafe", "UBER", "ＣＯＬＤ"]:
        assert [e.seq for e in mem.recall(q)] == [1], q


@given(st.text(max_size=200))
def test_any_text_is_a_safe_query(tmp_path_factory, query):
    expression = match_expression(query)
    assert expression is None or expression.startswith('"')
    m = Memory(tmp_path_factory.mktemp("m") / "memory.db")
    try:
        m.remember_musing(1, 1, T0, "anything at all")
        assert isinstance(m.recall(query), list) and m.fault_count == 0
    finally:
        m.close()


def test_unknown_kind_is_a_programming_error(mem):
    with pytest.raises(ValueError, match="letter"):
        mem.recall("x", kinds=["letter"])


def test_bound_drops_oldest_musings_first_and_keeps_notes(tmp_path):
    m = Memory(tmp_path / "memory.db", max_entries=5)
    try:
        m.remember_note("note one", T0)
        for seq in range(1, 4):
            m.remember_musing(1, seq, T0, f"musing {seq}")
        m.remember_note("note two", T0)
        assert m.count() == 5
        m.remember_musing(1, 4, T0, "musing 4")
        m.remember_musing(1, 5, T0, "musing 5")
        assert m.count() == 5
        assert sorted(e.text for e in m.recent(10)) == ["musing 3", "musing 4", "musing 5", "note one", "note two"]
        assert m.evicted == {"musing": 2, "note": 0}
        assert {e.seq for e in m.recall("musing", k=10)} == {3, 4, 5}  # evicted ones left the index too
    finally:
        m.close()


def test_notes_go_only_when_no_musing_is_left(tmp_path):
    m = Memory(tmp_path / "memory.db", max_entries=3)
    try:
        m.remember_musing(1, 1, T0, "musing")
        for i in range(4):
            m.remember_note(f"note {i}", T0)
        assert [e.text for e in m.recent(10)] == ["note 3", "note 2", "note 1"]
        assert m.evicted == {"musing": 1, "note": 1}
        assert sorted(e.text for e in m.recall("note", k=10)) == ["note 1", "note 2", "note 3"]
    finally:
        m.close()


def _aside(tmp_path: Path) -> list[Path]:
    return sorted(p for p in tmp_path.iterdir() if ".damaged-" in p.name)


def test_a_garbage_file_is_set_aside_and_a_fresh_one_started(tmp_path):
    path = tmp_path / "memory.db"
    garbage = b"this is not a database, it is what a dying SD card returns " * 200
    path.write_bytes(garbage)
    with capture_logs() as logs:
        m = Memory(path)
    try:
        assert m.remember_note("still listening", T0) and m.recall("listening")[0].text == "still listening"
        aside, = _aside(tmp_path)
        assert aside.read_bytes() == garbage  # kept for a later look, byte for byte
        assert m.fault_count == 1 and "set aside" in m.faults[0]
        assert any(e["event"] == "memory_fault" and e["log_level"] == "error" for e in logs)
    finally:
        m.close()


def test_a_database_damaged_inside_is_set_aside(tmp_path):
    path = tmp_path / "memory.db"
    m = Memory(path)
    for seq in range(200):
        m.remember_musing(1, seq, T0, f"musing {seq} " + "filler words about the sky " * 20)
    m.close()
    data = bytearray(path.read_bytes())
    assert len(data) > 8 * 4096
    data[4096 * 2: 4096 * 6] = b"\xa5" * (4096 * 4)  # pages 3..6 overwritten; the header is intact
    path.write_bytes(bytes(data))
    m = Memory(path)
    try:
        assert len(_aside(tmp_path)) == 1 and m.fault_count >= 1
        assert m.count() == 0 and m.remember_musing(2, 1, T0, "starting over")
        assert m.recall("over")[0].text == "starting over"
    finally:
        m.close()


def test_a_newer_schema_is_kept_aside_not_misread(tmp_path):
    path = tmp_path / "memory.db"
    db = apsw.Connection(str(path))
    db.execute("PRAGMA user_version=99; CREATE TABLE future (x)")
    db.close()
    m = Memory(path)
    try:
        assert len(_aside(tmp_path)) == 1 and "newer" in m.faults[0]
        assert m.remember_musing(1, 1, T0, "fine") and m.count() == 1
    finally:
        m.close()


def test_a_search_index_out_of_step_is_rebuilt(tmp_path):
    path = tmp_path / "memory.db"
    Memory(path).close()
    db = apsw.Connection(str(path))  # a row written behind the index's back
    db.execute("DROP TRIGGER entries_ai")
    db.execute("INSERT INTO entries (kind, text, created, source) VALUES ('note', 'the payload is called Ada', 0, 'uplink')")
    db.close()
    m = Memory(path)
    try:
        assert [e.text for e in m.recall("Ada")] == ["the payload is called Ada"]
        assert "rebuilt" in m.faults[0] and not _aside(tmp_path)  # nothing was lost or set aside
        m.remember_musing(1, 1, T0, "Ada again")  # the trigger is back, too
        assert len(m.recall("Ada", k=5)) == 2
    finally:
        m.close()


def test_an_unopenable_place_falls_back_to_ram(tmp_path):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where the data folder should be")
    m = Memory(blocker / "memory.db")
    try:
        assert m.fault_count == 1 and "RAM" in m.faults[0]
        assert m.remember_note("kept for this boot", T0) and m.recall("boot")[0].text == "kept for this boot"
    finally:
        m.close()


def test_a_database_that_goes_bad_while_open_is_replaced_and_the_note_kept(tmp_path, monkeypatch):
    m = Memory(tmp_path / "memory.db")
    try:
        m.remember_musing(1, 1, T0, "before")
        real_db = m.db
        calls = {"n": 0}

        class Failing:  # the first write after the card went bad reports corruption, as SQLite would
            def __getattr__(self, name):
                return getattr(real_db, name)

            def execute(self, *a, **kw):
                calls["n"] += 1
                raise apsw.CorruptError("database disk image is malformed")

        m.db = Failing()
        assert m.remember_note("heard once, must be kept", T0)
        assert calls["n"] == 1 and len(_aside(tmp_path)) == 1
        assert [e.text for e in m.recent(5)] == ["heard once, must be kept"]
    finally:
        m.close()


def test_after_close_calls_are_harmless(tmp_path):
    m = Memory(tmp_path / "memory.db")
    m.close()
    m.close()
    assert m.recall("x") == [] and m.recent(2) == [] and m.count() == 0 and not m.remember_note("late", T0)


def test_for_prompt_gives_notes_then_relevant_musings_topped_up_with_recent(mem):
    mem.remember_note("Sam is watching from the hill", T0)
    mem.remember_musing(1, 1, T0, "the cold bites the battery")
    mem.remember_musing(1, 2, T0, "clouds below like a floor")
    mem.remember_musing(1, 3, T0, "a plane passed far below")
    got = mem.for_prompt("cold battery", musings=2, notes=2)
    assert [e.kind for e in got] == ["note", "musing", "musing"]
    assert got[1].seq == 1 and got[2].seq == 3  # the relevant one, then the most recent other
