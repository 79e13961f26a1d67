"""Pictures that cannot be replaced (issue 50, item 3): the payload announces each SSDV picture in a
tagged record listing its packets' digests; a keyed ground builds the flight's picture only from
packets that match, keeps every other packet apart (a forged one deletes or replaces nothing,
another callsign's picture under the same image id takes no place of the flight's), and grows
the picture packet by packet: a stranger's packet costs no decoding at all.

Packets are made by the real encoder from a real JPEG; the ground is the `Store` `listen` writes
with, then the real `listen` process.
"""

from __future__ import annotations

import io
import random
from datetime import datetime, timezone

import pytest
from PIL import Image

from groundstation.store import GroundReader, Store
from stratoecho import wire
from stratoecho.wire import pictures, ssdv
from stratoecho.wire.downlink import fingerprint
from stratoecho.wire.events import decode_event, encode_event
from tests.fakes import AUTH, write_flight_key

AT = "2026-06-21T10:00:00.000+00:00"
CALL = "STRAT1"


def jpeg(seed: int, size=(160, 112)) -> bytes:
    rng = random.Random(seed)
    img = Image.new("RGB", size)
    img.putdata([(rng.randrange(256), (x * 7) % 256, (seed * 40) % 256) for x in range(size[0] * size[1])])
    out = io.BytesIO()
    img.save(out, "JPEG", quality=60)
    return ssdv.prepare_jpeg(out.getvalue())


def vouches_for(a: pictures.Announcement, packet: wire.SsdvPacket) -> bool:
    """`packet` is the one the announced picture has at its place (what the ground checks in its database)."""
    return ((packet.callsign, packet.image_id) == (a.callsign, a.image_id)
            and packet.packet_id < len(a.digests) and a.digests[packet.packet_id] == pictures.packet_digest(packet))


def packets(seed: int, callsign: str = CALL, image_id: int = 4) -> list[wire.SsdvPacket]:
    return [ssdv.parse_packet(p) for p in ssdv.encode_image(jpeg(seed), callsign, image_id)]


def announcement_record(picture: int, of: list[wire.SsdvPacket], seq: int = 9) -> wire.Record:
    return wire.Record(wire.Kind.EVENT, 1, seq, 1_780_000_000, pictures.announce(picture, of))


def keyed(path) -> Store:
    store = Store(path)
    store.set_trust(fingerprint(AUTH.key))
    return store


def image(path, seq: int) -> bytes | None:
    with GroundReader.open(path) as db:
        return db.pictures.image(0, seq)


# --------------------------------------------------------------------------- the announcement

def test_an_announcement_vouches_for_its_packets_and_no_other():
    real, forged, other = packets(1), packets(2), packets(1, callsign="OTHER")
    a = pictures.announcement(decode_event(encode_event(pictures.announce(7, real))))
    assert (a.picture, a.callsign, a.image_id, len(a.digests)) == (7, CALL, 4, len(real))
    assert all(vouches_for(a, p) for p in real)
    assert not any(vouches_for(a, p) for p in forged[:len(real)] + other)
    body = len(wire.Record(wire.Kind.EVENT, 1, 1, 0, pictures.announce(2**31 - 1, real)).body())
    assert body <= pictures.announcement_body_bytes(CALL, len(real))  # what the air plan prices


def test_a_picture_grows_packet_by_packet_into_the_same_jpeg_as_decoding_it_whole():
    real = packets(3)
    scan = pictures.PictureScan()
    for p in real:
        scan.add(p)
        assert scan.jpeg() == ssdv.decode_image(real[:p.packet_id + 1])
    late = pictures.PictureScan()
    order = list(range(len(real)))
    random.Random(3).shuffle(order)
    for i in order:
        late.add(real[i])
    assert late.jpeg() == ssdv.decode_image(real) and late.whole


# --------------------------------------------------------------------------- the ground

def test_packets_before_their_announcement_wait_as_claims_then_make_the_picture(tmp_path):
    real = packets(4)
    store = keyed(tmp_path / "g.db")
    assert all(store.add_ssdv(p, AT) for p in real)
    store.commit()
    assert image(tmp_path / "g.db", 0) is None and store.take_believed_ssdv() == []
    assert store.add_record(announcement_record(0, real), AT, authentic=True)
    store.commit()
    assert image(tmp_path / "g.db", 0) == ssdv.decode_image(real)
    assert [p.packet_id for p, _ in store.take_believed_ssdv()] == [p.packet_id for p in real]
    store.close()


def test_a_forged_packet_neither_deletes_nor_replaces_and_another_callsign_takes_no_place(tmp_path):
    real, forged, theirs = packets(5), packets(6), packets(7, callsign="OTHER")
    store = keyed(tmp_path / "g.db")
    store.add_record(announcement_record(3, real), AT, authentic=True)
    for p in forged[:3] + real + theirs + forged:  # forged first, under the same numbers; then theirs
        store.add_ssdv(p, AT)
    store.commit()
    assert image(tmp_path / "g.db", 3) == ssdv.decode_image(real)
    believed = store.take_believed_ssdv()
    assert {(p.callsign, p.packet_id, p.raw) for p, _ in believed} == {(p.callsign, p.packet_id, p.raw) for p in real}
    with GroundReader.open(tmp_path / "g.db") as db:
        kept = db.pictures.ssdv_packets()
        images = db.records.of("image")
    assert len(kept) == len(real) + len(set((p.packet_id, p.raw) for p in forged)) + len(theirs)  # every row kept
    assert [(r.boot, r.seq, r.authentic) for r in images] == [(0, 3, True)]  # theirs is no picture of ours
    store.close()


def test_a_stranger_packet_costs_no_decoding(tmp_path, monkeypatch):
    decoded = []
    monkeypatch.setattr(pictures, "ImageDecoder", lambda first: decoded.append(first) or ssdv.ImageDecoder(first))
    store = keyed(tmp_path / "g.db")
    store.add_record(announcement_record(0, packets(8)), AT, authentic=True)
    for seed in range(20):
        for p in packets(100 + seed, callsign=f"X{seed}", image_id=seed % 3):
            store.add_ssdv(p, AT)
    for p in packets(9):  # the flight's callsign and image id, another picture: still a claim
        store.add_ssdv(p, AT)
    assert decoded == []
    store.close()


def test_without_a_key_the_station_builds_anyones_picture_but_deletes_nothing(tmp_path):
    first, second = packets(10), packets(11)  # the image id wrapped: another picture under number 4
    store = Store(tmp_path / "g.db")
    store.set_trust(None)
    for p in first + second:
        store.add_ssdv(p, AT)
    store.commit()
    assert image(tmp_path / "g.db", 4) == ssdv.decode_image(second)
    with GroundReader.open(tmp_path / "g.db") as db:
        assert len(db.pictures.ssdv_packets()) == len(first) + len(second)
    store.close()


# --------------------------------------------------------------------------- the payload and the real listener

def test_the_payload_announces_each_picture_before_its_packets(tmp_path):
    from payload.config import PayloadConfig
    from sim.world.camera import SimCameraBackend
    from tests.test_ssdv_flight import daemon, drain

    write_flight_key(tmp_path / "flight.key")
    cfg = PayloadConfig.model_validate({"devices": {"camera": {"ssdv": True}}, "callsign": CALL,
                                        "uplink": {"key_file": str(tmp_path / "flight.key")}})
    d = daemon(tmp_path, cfg, SimCameraBackend(lambda: 25_000.0, size=(320, 240)))
    assert d.daemon.run_once("camera")
    frames = drain(d)
    reassembler = wire.Reassembler()
    records = [r for f in frames if f[0] == wire.MAGIC and (r := reassembler.add(wire.decode_frame(f, AUTH)))]
    announced = [pictures.announcement(r.content) for r in records if r.kind is wire.Kind.EVENT
                 and r.content.name == "picture"]
    sent = [wire.decode_frame(f) for f in frames if f[0] in ssdv.FIRST_BYTES]
    assert len(announced) == 1 and all(vouches_for(announced[0], p) for p in sent)
    assert len(announced[0].digests) == len(sent)
    d.parts.flight.fitted.camera.close()


def test_against_listen_forged_packets_and_a_stranger_picture_change_nothing(tmp_path):
    from groundstation.__main__ import main

    key = tmp_path / "flight.key"
    write_flight_key(key)
    real, forged, theirs = packets(12), packets(13), packets(14, callsign="OTHER")
    announcement = wire.fragment_record(announcement_record(0, real), auth=AUTH)
    air = [p.lora_frame for p in forged] + [p.lora_frame for p in theirs] + [p.lora_frame for p in real[:4]] \
        + announcement + [p.lora_frame for p in real[4:]]
    (tmp_path / "air.hex").write_text("".join(f.hex() + "\n" for f in air))
    db = tmp_path / "g.db"
    assert main(["listen", "--replay", str(tmp_path / "air.hex"), "--db", str(db), "--flight-key", str(key),
                 "--quiet"]) == 0
    assert image(db, 0) == ssdv.decode_image(real)
    with GroundReader.open(db) as ground:
        assert [r.seq for r in ground.records.of("image")] == [0]


@pytest.mark.parametrize("when", [datetime(2026, 6, 21, tzinfo=timezone.utc)])
def test_an_old_database_keeps_its_packets_through_the_migration(tmp_path, when):
    import sqlite3

    path = tmp_path / "old.db"
    Store(path).close()
    real = packets(15)
    with sqlite3.connect(path) as c:  # as schema 11 left them: no digest, no picture
        c.execute("DROP TABLE ssdv_packets")
        c.execute("DROP TABLE pictures")
        c.execute("DROP TABLE trust")
        c.execute("CREATE TABLE ssdv_packets (callsign TEXT NOT NULL, image_id INTEGER NOT NULL, packet_id INTEGER "
                  "NOT NULL, packet BLOB NOT NULL, received_at TEXT NOT NULL, PRIMARY KEY (callsign, image_id, packet_id))")
        c.executemany("INSERT INTO ssdv_packets VALUES (?, ?, ?, ?, ?)",
                      [(p.callsign, p.image_id, p.packet_id, p.raw, when.isoformat()) for p in real])
        c.execute("PRAGMA user_version = 11")
    Store(path).close()
    with GroundReader.open(path) as db:
        assert len(db.pictures.ssdv_packets()) == len(real)
