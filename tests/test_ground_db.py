"""The ground database: schema, duplicates, batching, versions, crash survival."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from contextlib import closing
from dataclasses import replace

import pytest

from groundstation.store import SCHEMA_VERSION, Counts, GroundReader, Store, StoreError
from stratoecho import wire
from stratoecho.wire.events import event
from stratoecho.wire.uplink import CommandId

T = wire.Telemetry("STRATO", 42, "12:04:11", 52.10123, -0.10234, 12345, 9, -40.5, 180.2, 3700, 3)


def musing(seq: int, text: str = "hello from above", kind: wire.Kind = wire.Kind.MUSING) -> wire.Record:
    content = event("store_fault", detail=text) if kind is wire.Kind.EVENT else text
    return wire.Record(kind, 3, seq, 1714565055, content)


def rows(path, sql: str) -> list[tuple]:
    """Read through a separate connection: what a restarted ground or the simulator would see."""
    with closing(sqlite3.connect(path)) as db:
        return db.execute(sql).fetchall()


def test_fresh_database_has_schema_version_and_wal(tmp_path):
    path = tmp_path / "g.db"
    Store(path).close()
    assert rows(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert rows(path, "PRAGMA journal_mode") == [("wal",)]
    tables = {r[0] for r in rows(path, "SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"frames", "telemetry", "records", "heard", "outbox", "ssdv_packets", "stations",
                      "dead_letters", "trust", "pictures"}


def test_duplicates_are_ignored(tmp_path):
    with Store(tmp_path / "g.db") as store:
        assert store.add_telemetry(T) is True
        assert store.add_telemetry(T) is False
        assert store.add_record(musing(7)) is True
        assert store.add_record(musing(7, "a different text, same key")) is False
        assert store.add_record(musing(7, kind=wire.Kind.EVENT)) is True  # another kind, same seq
        assert store.add(replace(T, seq=43)) is True
        assert store.inserted == 4
    with GroundReader.open(tmp_path / "g.db") as ground:
        assert ground.counts() == Counts(frames=0, frames_bad=0, telemetry=2, records={"musing": 1, "event": 1})
        assert ground.records.of("musing")[0].text == "hello from above"


def test_typed_records_are_stored_as_their_json_says(tmp_path):
    # The row keeps what a record's JSON (as_dict) shows: created and text, and in `data` the
    # fields, the event's name and severity beside its fields, or the JPEG itself.
    jpeg = b"\xff\xd8\xff\xe0 not much of a picture"
    records = [musing(1), musing(2, kind=wire.Kind.EVENT), wire.Record(wire.Kind.IMAGE, 3, 3, 1714565055, jpeg),
               wire.Record(wire.Kind.HEALTH, 3, 4, 1714565055, {"mode": "NOMINAL", "loss": 0.25, "field_99": 7})]
    no_reading = replace(T, temp_c=float("nan"), pressure_hpa=float("nan"), batt_mv=0)
    with Store(tmp_path / "g.db") as store:
        assert all(store.add(r, "2024-05-01T12:00:00+00:00") for r in [*records, no_reading])
    got = rows(tmp_path / "g.db", "SELECT kind, created, text, data FROM records ORDER BY seq")
    assert [g[:3] for g in got] == [(r.as_dict()["kind"], r.as_dict()["created"], r.as_dict()["text"])
                                    for r in records]
    assert [g[3] for g in got] == [
        None, '{"detail": "hello from above", "event": "store_fault", "severity": "warning"}', jpeg,
        '{"field_99": 7, "loss": 0.25, "mode": "NOMINAL"}']
    assert rows(tmp_path / "g.db", "SELECT temp_c, pressure_hpa, batt_mv FROM telemetry") == [(None, None, 0)]


def test_duplicates_are_ignored_across_reopen(tmp_path):
    path = tmp_path / "g.db"
    with Store(path) as store:
        store.add_telemetry(T)
    with Store(path) as store:
        assert store.add_telemetry(T) is False
    with GroundReader.open(path) as ground:
        assert ground.counts().telemetry == 1


def test_every_frame_is_kept_with_its_verdict(tmp_path):
    with Store(tmp_path / "g.db") as store:
        store.frames.add(b"\xec\x11", "udp 127.0.0.1:1", "truncated")
        store.frames.add(b"$$x", "udp 127.0.0.1:1")
        store.frames.add(b"$$x", "udp 127.0.0.1:1")  # heard twice: two receptions
    with GroundReader.open(tmp_path / "g.db") as ground:
        assert (ground.counts().frames, ground.counts().frames_bad, ground.counts().frames_good) == (3, 1, 2)
    got = rows(tmp_path / "g.db", "SELECT source, hex, ok, error FROM frames ORDER BY id")
    assert got[0] == ("udp 127.0.0.1:1", "ec11", 0, "truncated")
    assert got[1][2:] == (1, None)


def test_exporters_replay_telemetry_in_the_payloads_order(tmp_path):
    with Store(tmp_path / "g.db") as store:
        for seq in (5, 3, 4):
            store.add_telemetry(replace(T, seq=seq))
    with GroundReader.open(tmp_path / "g.db") as ground:
        tele = ground.track.telemetry()
    assert [t.seq for t in tele] == [3, 4, 5] and tele[0].lat == pytest.approx(52.10123)
    assert tele[0].received_at.endswith("+00:00") and [t.id for t in tele] == [2, 3, 1]  # ids: the order heard


def test_commits_come_in_batches(tmp_path):
    path = tmp_path / "g.db"
    store = Store(path, flush_interval_s=3600)
    store.add_telemetry(T)
    store.maybe_commit()  # not due yet
    assert rows(path, "SELECT count(*) FROM telemetry") == [(0,)]
    store.commit()
    assert rows(path, "SELECT count(*) FROM telemetry") == [(1,)]
    store.flush_interval_s = 0
    store.add_record(musing(1))
    store.maybe_commit()
    assert rows(path, "SELECT count(*) FROM records") == [(1,)]
    store.close()


def test_committed_rows_survive_a_crash(tmp_path):
    # A process crash, not a power cut: WAL keeps commits whatever `synchronous` says.
    path = tmp_path / "g.db"
    code = (
        "import os\nfrom groundstation.store import Store\n"
        f"s = Store({str(path)!r})\ns.frames.add(b'$$', 'test')\ns.commit()\n"
        "s.frames.add(b'$$', 'uncommitted')\nos._exit(9)\n"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=30).returncode == 9
    with GroundReader.open(path) as ground:  # a reader after the crash, before any listener restarts
        assert ground.counts().frames == 1


def test_newer_schema_is_refused_clearly(tmp_path):
    path = tmp_path / "g.db"
    with closing(sqlite3.connect(path)) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match=rf"schema version {SCHEMA_VERSION + 1}, newer than the {SCHEMA_VERSION}"):
        Store(path)


def test_foreign_database_is_refused(tmp_path):
    path = tmp_path / "other.db"
    with closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE photos (id INTEGER)")
    with pytest.raises(StoreError, match="not a stratoecho ground database.*photos"):
        Store(path)


def test_file_that_is_not_sqlite_is_refused_with_its_name(tmp_path):
    path = tmp_path / "air.hex"
    path.write_text("ec11 not a database " * 100)
    with pytest.raises(StoreError, match="air.hex"):
        Store(path)


def test_two_openers_of_a_new_file_agree_on_the_schema(tmp_path):
    # The listener and a dashboard starting together: one creates, the other finds it made.
    path, results = tmp_path / "g.db", []
    barrier = threading.Barrier(4)

    def open_store() -> None:
        barrier.wait()
        try:
            Store(path).close()
            results.append("ok")
        except StoreError as e:
            results.append(str(e))

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert results == ["ok"] * 4


def test_a_version_2_database_is_migrated_and_keeps_its_telemetry(tmp_path):
    path = tmp_path / "old.db"
    with closing(sqlite3.connect(path)) as db:  # the version 2 schema, as an older ground station left it
        db.executescript("""
            CREATE TABLE frames (id INTEGER PRIMARY KEY, received_at TEXT NOT NULL, source TEXT NOT NULL,
                                 hex TEXT NOT NULL, ok INTEGER NOT NULL, error TEXT);
            CREATE TABLE telemetry (id INTEGER PRIMARY KEY, boot INTEGER NOT NULL, seq INTEGER NOT NULL,
                callsign TEXT NOT NULL, time TEXT NOT NULL, lat REAL NOT NULL, lon REAL NOT NULL,
                alt INTEGER NOT NULL, sats INTEGER NOT NULL, temp_c REAL NOT NULL, pressure_hpa REAL NOT NULL,
                batt_mv INTEGER NOT NULL, received_at TEXT NOT NULL, UNIQUE (boot, seq));
            CREATE TABLE records (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, boot INTEGER NOT NULL,
                seq INTEGER NOT NULL, created TEXT NOT NULL, text TEXT NOT NULL, data BLOB,
                received_at TEXT NOT NULL, UNIQUE (kind, boot, seq));
            INSERT INTO telemetry VALUES (7, 1, 1, 'STRATO1', '10:00:00', 52.1, -0.1, 1000, 9, -5.5, 900.0,
                                          4000, '2026-06-21T10:00:01');
            PRAGMA user_version = 2;
        """)
    store = Store(path)
    t = wire.Telemetry("STRATO1", 2, "10:00:10", 52.1, -0.1, 1050, 9, float("nan"), float("nan"), 3990, 1)
    assert store.add_telemetry(t)  # a sensor without a reading: NULL, no longer refused
    store.close()
    assert rows(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert rows(path, "SELECT id, seq, temp_c, pressure_hpa FROM telemetry ORDER BY seq") == [
        (7, 1, -5.5, 900.0), (8, 2, None, None)]


def test_stations_signal_and_the_outbox(tmp_path):
    store = Store(tmp_path / "g.db")
    store.frames.add(b"\x01", "udp 127.0.0.1:9", station="hill", rssi_dbm=-121.5, snr_db=-7.25)
    assert store.add_heard("musing", 1, 4, "hill") and not store.add_heard("musing", 1, 4, "hill")
    store.add_heard("musing", 1, 4, "valley")
    store.commit()
    with GroundReader.open(tmp_path / "g.db") as ground:  # in the order first heard
        assert ground.link.heard_paths("musing")[("musing", 1, 4)] == ["hill", "valley"]
    n = store.outbox.queue(5, b"remember the river", "note")
    reader = Store(tmp_path / "g.db")  # the listener, another process, sees it at once
    (cmd,) = reader.outbox.pending()
    assert (cmd["id"], cmd["command"], cmd["args"]) == (n, 5, b"remember the river")
    reader.outbox.mark_sent(n)
    assert store.outbox.pending() == []
    with GroundReader.open(tmp_path / "g.db") as ground:
        assert ground.outbox.newest()[0].state == "sent"
    store.close()
    reader.close()
    assert rows(tmp_path / "g.db", "SELECT station, rssi_dbm, snr_db FROM frames") == [("hill", -121.5, -7.25)]


V4_SCHEMA = """
    CREATE TABLE frames (id INTEGER PRIMARY KEY, received_at TEXT NOT NULL, source TEXT NOT NULL, hex TEXT NOT NULL,
                         ok INTEGER NOT NULL, error TEXT, station TEXT, rssi_dbm REAL, snr_db REAL);
    CREATE TABLE telemetry (id INTEGER PRIMARY KEY, boot INTEGER NOT NULL, seq INTEGER NOT NULL,
        callsign TEXT NOT NULL, time TEXT NOT NULL, lat REAL NOT NULL, lon REAL NOT NULL, alt INTEGER NOT NULL,
        sats INTEGER NOT NULL, temp_c REAL, pressure_hpa REAL, batt_mv INTEGER NOT NULL, received_at TEXT NOT NULL,
        UNIQUE (boot, seq));
    CREATE TABLE records (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, boot INTEGER NOT NULL, seq INTEGER NOT NULL,
        created TEXT NOT NULL, text TEXT NOT NULL, data BLOB, received_at TEXT NOT NULL, UNIQUE (kind, boot, seq));
    CREATE TABLE heard (kind TEXT NOT NULL, boot INTEGER NOT NULL, seq INTEGER NOT NULL, station TEXT NOT NULL,
        first_at TEXT NOT NULL, PRIMARY KEY (kind, boot, seq, station));
    CREATE TABLE outbox (id INTEGER PRIMARY KEY, queued_at TEXT NOT NULL, command INTEGER NOT NULL,
        args BLOB NOT NULL, what TEXT NOT NULL, sent_at TEXT);
    PRAGMA user_version = 4;
"""


def make_v4(path) -> None:
    """A version 4 database as that ground station left it: the outbox said everything in `what`."""
    mode, answer, note = int(CommandId.SET_MODE), int(CommandId.API_ANSWER), int(CommandId.MEMORY_NOTE)
    with closing(sqlite3.connect(path)) as db:
        db.executescript(V4_SCHEMA)
        db.executemany("INSERT INTO outbox (id, queued_at, command, args, what, sent_at) VALUES (?, 't', ?, ?, ?, ?)", [
            (1, mode, b"\x01", "set mode low_power", "t"),
            (2, answer, b"\x00\x07", "api answer to request 3/7: ok", "t"),
            (3, mode, b"\x02", "set mode survival", "t"),
            (4, mode, b"\x01", "confirm: set mode low_power", "t"),  # confirms row 1, not row 3 (other args)
            (5, mode, b"\x01", "confirm: set mode low_power", None),  # a confirmation again: still row 1
            (6, note, b"api answer to request 9/9: ok", "memory note: api answer to request 9/9: ok", None),
            (7, answer, b"\x00\x08", "api answer to request 12/80: not_found", None),
        ])
        db.commit()


def test_a_version_4_outbox_gets_its_columns_from_its_lines(tmp_path):
    path = tmp_path / "v4.db"
    make_v4(path)
    with Store(path) as store:
        assert store.outbox.answered_requests() == {(3, 7), (12, 80)}  # a note that quotes an answer answers nothing
        assert [(c["id"], c["confirms"]) for c in store.outbox.pending()] == [(5, 1), (6, None), (7, None)]
        assert store.outbox.last(CommandId.SET_MODE)["asked"] == 1
    got = rows(path, "SELECT id, what, answers_boot, answers_seq, confirms FROM outbox ORDER BY id")
    assert got == [(1, "set mode low_power", None, None, None), (2, "api answer to request 3/7: ok", 3, 7, None),
                   (3, "set mode survival", None, None, None), (4, "confirm: set mode low_power", None, None, 1),
                   (5, "confirm: set mode low_power", None, None, 1),
                   (6, "memory note: api answer to request 9/9: ok", None, None, None),
                   (7, "api answer to request 12/80: not_found", 12, 80, None)]
    assert rows(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
