"""The read layer: typed rows from a real ground database, read-only, from any schema version."""

from __future__ import annotations

import hashlib
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from groundstation.store import SCHEMA_VERSION, Counts, Cursor, GroundReader, StationStats, Store, StoreError
from sim.bench.fly import ground_counts
from sim.bench.report.flight_report import flight_series
from stratoecho import wire
from stratoecho.wire.events import event
from stratoecho.wire.uplink import CommandId
from tests.test_ground_db import make_v4

JPEG = b"\xff\xd8\xff\xe0 not much of a picture \xff\xd9"


def telemetry(seq: int, alt: int, boot: int = 1, lat: float = 52.1, lon: float = -0.1) -> wire.Telemetry:
    return wire.Telemetry("STRATO1", seq, f"10:00:{seq:02d}", lat, lon, alt, 9, -5.0, 900.0, 7400, boot)


def record(kind: wire.Kind, seq: int, content, boot: int = 1) -> wire.Record:
    return wire.Record(kind, boot, seq, 1_767_225_600 + seq, content)


def fill(store: Store) -> None:
    store.add_telemetry(telemetry(1, 100, lat=0.0, lon=0.0))  # no fix yet: not a position
    for seq, alt in [(2, 150), (3, 200), (6, 350)]:
        store.add_telemetry(telemetry(seq, alt))
    for seq in (1, 2, 5):
        store.add_record(record(wire.Kind.MUSING, seq, f"musing {seq}"))
    store.add_record(record(wire.Kind.MUSING, 3, "musing 3, repaired late"))
    store.add_record(record(wire.Kind.EVENT, 1, event("store_fault", detail="disk full")))
    store.add_record(record(wire.Kind.HEALTH, 1, {"mode": "NOMINAL", "musing_seq": 7}))
    store.add_record(record(wire.Kind.IMAGE, 1, JPEG))
    store.frames.add(b"\x01", "udp", None, "2026-01-01T10:00:01.000+00:00", station="hill", rssi_dbm=-110.0, snr_db=4.0)
    store.frames.add(b"\x01", "udp", "bad crc", "2026-01-01T10:00:30.000+00:00", station="hill", rssi_dbm=-120.0)
    store.frames.add(b"\x01", "udp", None, "2026-01-01T10:01:05.000+00:00")
    store.add_heard("musing", 1, 1, "hill")
    asked = store.outbox.queue(CommandId.SET_MODE, b"\x01", "set mode low_power")
    store.outbox.mark_sent(asked)
    store.outbox.queue(CommandId.SET_MODE, b"\x01", "confirm: set mode low_power", confirms=asked)
    store.outbox.queue(CommandId.API_ANSWER, b"\x00", "api answer to request 1/4: ok", answers=(1, 4))
    store.commit()


@pytest.fixture
def flight(tmp_path) -> Path:
    path = tmp_path / "ground.db"
    with Store(path) as store:
        fill(store)
    return path


def snapshot(folder: Path) -> dict[str, str]:
    """Every file in the folder and its contents: what a reader must leave as it found it."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def read_everything(ground: GroundReader) -> None:
    """Every question of every view, as the dashboard, `watch` and the reports ask them."""
    ground.data_version(), ground.newest_ids(), ground.newest_frame_id(), ground.counts()
    flight, track, records, pictures, link, outbox = (ground.flight, ground.track, ground.records, ground.pictures,
                                                      ground.link, ground.outbox)
    flight.callsign(), flight.tagged_callsign(), flight.trust(), flight.keyed(), flight.claims()
    track.telemetry(), track.telemetry(limit=2), track.telemetry_since(0), track.first_position()
    track.latest_position(), track.max_altitude(), track.sentences(), track.sentences_missing(1)
    records.of(), records.of("health", limit=1), records.since(0, "musing"), records.last_completed("musing", 2)
    records.numbers(), records.gaps(), records.newest_seqs(1), pictures.image(1, 1), pictures.ssdv_packets(True)
    link.last_heard(), link.frames_per_minute(60), link.frames_after("2026-01-01T10:00:10"), link.stations()
    link.station_stats(), link.station_stats("2026-01-01T10:00:10"), link.records_heard_per_station()
    link.heard_paths(), link.heard_paths("musing")
    outbox.newest(), outbox.state(), outbox.waiting()


def test_a_flight_read_back_as_typed_rows(flight):
    with GroundReader.open(flight) as ground:
        assert ground.schema_version == SCHEMA_VERSION and not ground.empty
        assert ground.counts() == Counts(3, 1, 4, {"musing": 4, "event": 1, "health": 1, "image": 1})
        assert ground.counts().frames_good == 2 and ground.counts().of("api_request") == 0
        assert ground.newest_ids() == Cursor(telemetry=4, records=7) and ground.newest_frame_id() == 3
        assert [t.seq for t in ground.track.telemetry(limit=2)] == [3, 6]
        assert [t.seq for t in ground.track.telemetry_since(2, limit=1)] == [3]
        assert (ground.track.first_position().seq, ground.track.latest_position().seq) == (2, 6)  # 0,0 is no fix
        assert (ground.flight.callsign(), ground.track.max_altitude(), ground.track.sentences_missing(1)) == ("STRATO1", 350, 2)
        # Payload order, and the order they completed in: the repaired musing 3 came last.
        assert [m.seq for m in ground.records.of("musing")] == [1, 2, 3, 5]
        assert [m.seq for m in ground.records.last_completed("musing", 2)] == [5, 3]
        assert [m.seq for m in ground.records.since(3, "musing")] == [3]
        fault = ground.records.latest("event")
        assert fault.fields == {"event": "store_fault", "severity": "warning", "detail": "disk full"}
        assert ground.records.latest("health").fields == {"mode": "NOMINAL", "musing_seq": 7}
        image = ground.records.latest("image")
        assert (image.fields, image.jpeg_bytes) == (None, len(JPEG))
        assert (ground.pictures.image(1, 1), ground.pictures.image(1, 2)) == (JPEG, None)
        assert ground.records.gaps() == {("musing", 1): [(4, 4)]}
        assert ground.records.newest_seqs(1) == {"musing": 5, "event": 1, "health": 1, "image": 1}
        assert ground.records.numbers(except_kinds=("health",))[("musing", 1)] == [1, 2, 3, 5]
        assert [(m.minute, m.frames, m.bad, m.rssi_dbm) for m in ground.link.frames_per_minute(60)] == [
            ("2026-01-01T10:00", 2, 1, -115.0), ("2026-01-01T10:01", 1, 0, None)]
        assert ground.link.station_stats() == [
            StationStats("", 1, 0, None, None, None, None, "2026-01-01T10:01:05.000+00:00"),
            StationStats("hill", 2, 1, -115.0, 4.0, -120.0, 4.0, "2026-01-01T10:00:30.000+00:00")]
        since = ground.link.station_stats("2026-01-01T10:00:10")
        assert [(s.station, s.frames, s.last_rssi_dbm) for s in since] == [("", 1, None), ("hill", 1, -120.0)]
        assert ground.link.records_heard_per_station() == {"hill": 1}
        assert ground.link.heard_paths() == {("musing", 1, 1): ["hill"]} == ground.link.heard_paths("musing")
        assert ground.link.heard_paths("health") == {}
        outbox = ground.outbox.newest()
        assert [(o.id, o.state, o.confirms, o.answers_boot, o.answers_seq) for o in outbox] == [
            (3, "queued", None, 1, 4), (2, "queued", 1, None, None), (1, "sent", None, None, None)]
        assert ground.outbox.state() == (3, 1) and ground.outbox.waiting() == 2


def test_the_reader_never_writes(flight):
    flight.chmod(0o444)  # a reader needs no more than this
    before = snapshot(flight.parent)
    with GroundReader.open(flight) as ground:
        read_everything(ground)
    after = snapshot(flight.parent)
    # A WAL database's readers share an index beside it (-shm) and find the log (-wal): SQLite
    # makes them where it can, empty. The database itself is byte for byte as it was.
    wal = flight.parent / "ground.db-wal"
    assert set(after) - set(before) <= {"ground.db-wal", "ground.db-shm"}
    assert not wal.exists() or wal.stat().st_size == 0
    assert after["ground.db"] == before["ground.db"]
    with closing(sqlite3.connect(flight)) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_reader_beside_the_listener_sees_commits_and_never_blocks_it(flight):
    with Store(flight) as listener, GroundReader.open(flight) as ground:
        version = ground.data_version()
        listener.add_record(record(wire.Kind.MUSING, 9, "not yet committed"))
        assert ground.counts().of("musing") == 4 and ground.data_version() == version
        listener.commit()  # a reader open does not stop the commit
        assert ground.counts().of("musing") == 5 and ground.data_version() != version


def make_v1(path: Path) -> None:
    with closing(sqlite3.connect(path)) as db:
        db.executescript("""
            CREATE TABLE frames (id INTEGER PRIMARY KEY, received_at TEXT NOT NULL, source TEXT NOT NULL,
                hex TEXT NOT NULL, ok INTEGER NOT NULL, error TEXT);
            CREATE TABLE telemetry (id INTEGER PRIMARY KEY, boot INTEGER NOT NULL, seq INTEGER NOT NULL,
                callsign TEXT NOT NULL, time TEXT NOT NULL, lat REAL NOT NULL, lon REAL NOT NULL,
                alt INTEGER NOT NULL, sats INTEGER NOT NULL, temp_c REAL NOT NULL, pressure_hpa REAL NOT NULL,
                batt_mv INTEGER NOT NULL, received_at TEXT NOT NULL, UNIQUE (boot, seq));
            CREATE TABLE records (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, boot INTEGER NOT NULL,
                seq INTEGER NOT NULL, created TEXT NOT NULL, text TEXT NOT NULL, received_at TEXT NOT NULL,
                UNIQUE (kind, boot, seq));
            INSERT INTO frames VALUES (1, '2025-06-01T10:00:01', 'serial', 'ec11', 1, NULL);
            INSERT INTO frames VALUES (2, '2025-06-01T10:00:02', 'serial', 'ec11', 0, 'bad crc');
            INSERT INTO telemetry VALUES (1, 1, 1, 'OLD1', '10:00:00', 52.1, -0.1, 900, 8, -1.0, 950.0, 7000,
                                          '2025-06-01T10:00:01');
            INSERT INTO records VALUES (1, 'musing', 1, 1, '2025-06-01T10:00:00+00:00', 'from the old days',
                                        '2025-06-01T10:00:02');
            INSERT INTO records VALUES (2, 'health', 1, 1, '2025-06-01T10:00:00+00:00', '{"mode": "nominal"}',
                                        '2025-06-01T10:00:02');
            PRAGMA user_version = 1;
        """)


def test_a_version_1_database_is_read_as_it_is(tmp_path):
    path = tmp_path / "v1.db"
    make_v1(path)
    before = snapshot(tmp_path)
    with GroundReader.open(path) as ground:
        read_everything(ground)
        assert ground.schema_version == 1
        assert [(r.kind, r.text, r.fields, r.jpeg_bytes) for r in ground.records.of()] == [
            ("musing", "from the old days", None, None), ("health", '{"mode": "nominal"}', None, None)]
        assert ground.link.station_stats() == [StationStats("", 2, 1, None, None, None, None, "2025-06-01T10:00:02")]
        assert ground.outbox.newest() == [] and ground.link.records_heard_per_station() == {}
        assert ground.link.heard_paths() == {}  # no heard table before schema 4
        assert ground.pictures.image(1, 1) is None
    assert ground_counts(path)["transcript"] == [("2025-06-01T10:00:00+00:00", "from the old days")]
    assert flight_series(path).modes == [(0.0, "unknown")]  # version 1 kept no fields: the mode is unknown
    assert snapshot(tmp_path) == before  # not migrated: still version 1, byte for byte


def test_a_version_4_outbox_reads_without_its_columns(tmp_path):
    path = tmp_path / "v4.db"
    make_v4(path)
    before = snapshot(tmp_path)
    with GroundReader.open(path) as ground:
        read_everything(ground)
        assert ground.schema_version == 4
        assert [(o.id, o.what, o.confirms, o.answers_boot) for o in ground.outbox.newest(limit=2)] == [
            (7, "api answer to request 12/80: not_found", None, None), (6, "memory note: api answer to request 9/9: ok",
                                                                       None, None)]
        assert ground.outbox.waiting() == 3
    assert snapshot(tmp_path) == before


def test_an_empty_file_reads_as_nothing_heard(tmp_path):
    path = tmp_path / "new.db"
    path.touch()
    with GroundReader.open(path) as ground:
        read_everything(ground)
        assert ground.empty and ground.counts() == Counts(0, 0, 0, {}) and ground.records.latest("health") is None
    assert path.stat().st_size == 0


@pytest.mark.parametrize("make, error", [
    (None, r"no ground database at .*nope\.db"),
    (lambda db: db.execute("CREATE TABLE photos (id INTEGER)"), r"not a stratoecho ground database .*photos"),
    (lambda db: db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}"),
     rf"schema version {SCHEMA_VERSION + 1}, newer than the {SCHEMA_VERSION}"),
    ("text", r"nope\.db: file is not a database"),
], ids=["missing", "foreign", "newer", "not sqlite"])
def test_what_a_reader_refuses_it_says_clearly(tmp_path, make, error):
    path = tmp_path / "nope.db"
    if make == "text":
        path.write_text("ec11 not a database " * 100)
    elif make is not None:
        with closing(sqlite3.connect(path)) as db:
            make(db)
    with pytest.raises(StoreError, match=error):
        GroundReader.open(path)
