"""Health, image and API-request records: content codecs, fragments, the ground's database."""

from __future__ import annotations

import io
import json
import sqlite3
from contextlib import closing

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from groundstation.link.decoder import FrameDecoder
from groundstation.store import SCHEMA_VERSION, GroundReader, Store
from stratoecho import wire
from stratoecho.wire.content import decode_content, encode_content
from tests.fakes import AUTH


def jpeg(size: int = 64) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (size, size // 2), (40, 80, 200)).save(out, "JPEG", quality=60)
    return out.getvalue()


HEALTH = {"uptime_s": 5400, "mode": "NOMINAL", "cpu_temp_c": 41.5, "throttled": 0x50000,
          "disk_free_kb": 1_203_400, "queue_depth": 7, "store": "ok", "loss": 0.28}


def rebuilt(record: wire.Record, mtu: int = 255, parity: int = 1) -> wire.Record:
    ra, out = wire.Reassembler(), []
    for frame in reversed(wire.fragment_record(record, mtu, parity, auth=AUTH)[1:]):  # one lost, order reversed
        if (r := ra.add(wire.decode_frame(frame, AUTH))) is not None:
            out.append(r)
    assert len(out) == 1
    return out[0]


def test_health_round_trips_with_declared_integer_keys():
    rec = wire.Record(wire.Kind.HEALTH, 2, 11, 1767225600, HEALTH)
    body = rec.body()
    assert b"cpu_temp_c" not in body  # names are declared, never sent
    assert rebuilt(rec).content == HEALTH
    assert rec.as_dict()["fields"] == HEALTH
    assert rec.text.startswith("health: uptime_s 5400, mode NOMINAL")


def test_image_round_trips_across_many_fragments():
    picture = jpeg(160)
    rec = wire.Record(wire.Kind.IMAGE, 2, 3, 1767225600, picture)
    assert wire.data_shards(len(rec.body())) > 1
    got = rebuilt(rec, parity=2)
    assert got.content == picture
    d = got.as_dict()
    assert d["image"]["bytes"] == len(picture) and d["text"] == f"image: JPEG of {len(picture):,} bytes"


def test_api_request_round_trips():
    rec = wire.Record(wire.Kind.API_REQUEST, 2, 5, 1767225600, {"api": "weather", "query": "Uppsala"})
    assert rebuilt(rec).content == {"api": "weather", "query": "Uppsala"}
    assert rec.text == "asks weather: Uppsala"


@given(st.dictionaries(st.sampled_from(["uptime_s", "queue_depth", "faults", "batt_mv"]),
                       st.integers(0, 2**32)),
       st.floats(-60, 90, allow_nan=False), st.text(max_size=20))
def test_any_declared_health_round_trips(ints, temp, mode):
    fields = {**ints, "cpu_temp_c": temp, "mode": mode}
    assert decode_content(wire.Kind.HEALTH, encode_content(wire.Kind.HEALTH, fields)) == fields


@pytest.mark.parametrize("kind, content, message", [
    (wire.Kind.HEALTH, {"cpu_temp": 40.0}, "has no field 'cpu_temp'"),
    (wire.Kind.HEALTH, {"queue_depth": "7"}, "queue_depth is int, not str"),
    (wire.Kind.HEALTH, {"queue_depth": True}, "queue_depth is int, not bool"),
    (wire.Kind.IMAGE, b"GIF89a", "JPEG"),
    (wire.Kind.MUSING, b"bytes", "carries text"),
    (wire.Kind.API_REQUEST, {"api": "weather", "url": "x"}, "has no field 'url'"),
])
def test_content_that_does_not_fit_its_kind_is_refused_by_name(kind, content, message):
    with pytest.raises(ValueError, match=message):
        wire.Record(kind, 1, 1, 0, content).body()


def test_a_late_position_is_a_record_carrying_a_position_frame_and_nothing_else():
    with pytest.raises(ValueError, match="position frame"):
        wire.Record(wire.Kind.TELEMETRY, 1, 1, 0, "x").body()
    with pytest.raises(wire.WireError, match="UKHAS sentence or a HABpack"):
        wire.Record.from_body(wire.Kind.TELEMETRY, 1, 1, b"\0\0\0\0not a position")


@pytest.mark.parametrize("kind, data, reason", [
    (wire.Kind.HEALTH, b"\xc1", "bad content"),  # msgpack's never-used byte
    (wire.Kind.HEALTH, b"\x93\x01\x02\x03", "bad content"),  # an array, not a map
    (wire.Kind.HEALTH, b"\x81\xa1k\x01", "bad content"),  # a string key
    (wire.Kind.HEALTH, b"\x81\x00\x91\x01", "bad content"),  # a nested array value
    (wire.Kind.IMAGE, b"\x89PNG", "bad content"),
    (wire.Kind.MUSING, b"\xff\xfe", "text not utf-8"),
    (wire.Kind.EVENT, b"\xff\xfe", "bad content"),
    (wire.Kind.EVENT, b"\x92\x05\x90", "bad content"),  # store_fault without its detail
    (wire.Kind.EVENT, b"\x92\x05\x91\x01", "bad content"),  # its detail a number
])
def test_hostile_content_is_a_wire_error_the_ground_counts(kind, data, reason):
    frames = wire.fragment_record(wire.Record(wire.Kind.MUSING, 1, 1, 0, "x"), auth=AUTH)
    # A valid frame and record check around hostile content, as a transmitter with a bug (or a prankster) would.
    (frame,) = wire.fragment_body(kind, 1, 1, bytes(4) + data, auth=AUTH)
    decoder = FrameDecoder(auth=AUTH)
    assert decoder.feed(frame).error == reason
    assert decoder.feed(frames[0]).record.text == "x"  # and it goes on decoding


def test_a_newer_payloads_unknown_health_key_is_kept_not_fatal():
    import msgpack
    data = msgpack.packb({2: 40.0, 99: 5})
    assert decode_content(wire.Kind.HEALTH, data) == {"cpu_temp_c": 40.0, "field_99": 5}


def test_ground_database_keeps_fields_and_pictures(tmp_path):
    picture = jpeg()
    with Store(tmp_path / "g.db") as store:
        assert store.add(wire.Record(wire.Kind.HEALTH, 2, 1, 1767225600, HEALTH))
        assert store.add(wire.Record(wire.Kind.IMAGE, 2, 1, 1767225600, picture))
        assert store.add(wire.Record(wire.Kind.API_REQUEST, 2, 1, 1767225600, {"api": "news", "query": ""}))
        assert not store.add(wire.Record(wire.Kind.IMAGE, 2, 1, 1767225600, picture))
    with GroundReader.open(tmp_path / "g.db") as ground:
        assert ground.records.latest("health").fields == HEALTH
        assert ground.records.latest("image").jpeg_bytes == len(picture) and ground.pictures.image(2, 1) == picture
        assert ground.records.latest("api_request").fields == {"api": "news", "query": ""}
    Image.open(io.BytesIO(picture)).verify()


def test_a_version_1_ground_database_is_migrated_in_place(tmp_path):
    path = tmp_path / "old.db"
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
            INSERT INTO records (kind, boot, seq, created, text, received_at)
                VALUES ('musing', 1, 1, '2026-01-01T00:00:00+00:00', 'kept across the upgrade', 'x');
            PRAGMA user_version = 1;
        """)
    with GroundReader.open(path) as ground:  # read as it is, version 1: no fields
        assert [(r.text, r.fields) for r in ground.records.of("musing")] == [("kept across the upgrade", None)]
    with Store(path) as store:
        assert store.add(wire.Record(wire.Kind.HEALTH, 2, 1, 0, {"mode": "SURVIVAL"}))
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert json.loads(db.execute("SELECT data FROM records WHERE kind='health'").fetchone()[0]) == {"mode": "SURVIVAL"}
