"""The whole-record check against forged frames, and sim/bench/fuzz/decoder.py (a share of `make fuzz`'s million)."""

from __future__ import annotations

import struct

import pytest

from sim.bench.fuzz import decoder
from stratoecho import wire
from stratoecho.wire import downlink, records
from tests.fakes import AUTH


def _reseal(frame: bytearray, auth=None) -> bytes:
    """`frame` with its frame CRC made to match again, and (with `auth`) its tag too: what a
    forger can do without the key, and what only a key holder (or 2^-64 luck) could."""
    if auth is not None:
        end = len(frame) - 2 - auth.tag_len
        frame[end:-2] = auth.tag(bytes(frame[:end]))
    frame[-2:] = struct.pack(">H", wire.crc16_ccitt(bytes(frame[:-2])))
    return bytes(frame)


def test_damaged_and_forged_frames_raise_nothing_and_make_no_wrong_record():
    r = decoder.fuzz(frames=60_000, seed=7)
    assert r.forged > 10_000 and r.delivered > 1_000  # it really forged, and really delivered
    assert r.exceptions == [] and r.wrong == []
    assert r.reasons["bad tag"] > 0  # forged frames the CRC16 let through, stopped by the tag


def test_without_the_tag_the_record_check_still_stops_forged_frames(monkeypatch):
    """Defence in depth: with every tag "passing", the record check behind it still stops them."""
    monkeypatch.setattr(downlink.DownlinkAuth, "check", lambda self, data, tag: True)
    r = decoder.fuzz(frames=20_000, seed=7)
    assert r.exceptions == [] and r.wrong == []
    assert r.reasons["record check failed"] > 0


def test_without_tag_and_record_check_forged_frames_make_wrong_records(monkeypatch):
    """The fuzzer has teeth: with both checks made constant, forged frames whose CRC16 was
    computed again deliver records that were never sent."""
    monkeypatch.setattr(downlink.DownlinkAuth, "check", lambda self, data, tag: True)
    monkeypatch.setattr(records, "record_check", lambda *a: 0)
    r = decoder.fuzz(frames=20_000, seed=7)
    assert r.exceptions == [] and len(r.wrong) > 0


def test_a_frame_with_a_recomputed_crc16_fails_its_tag_and_a_good_copy_still_rebuilds():
    musing = wire.Record(wire.Kind.MUSING, 3, 9, 1767225600, "Above the weather the sky goes black.")
    good = wire.fragment_record(musing, 48, parity=1, auth=AUTH)
    bad = bytearray(good[0])
    bad[wire.HEADER_BYTES] ^= 0x20  # one shard byte, and the frame CRC made to match again
    with pytest.raises(wire.WireError) as e:
        wire.decode_frame(_reseal(bad), AUTH)
    assert e.value.reason == "bad tag"
    ra = wire.Reassembler()
    out = [r for f in good if (r := ra.add(wire.decode_frame(f, AUTH)))]
    assert [r.text for r in out] == [musing.text]


def test_a_shard_whose_tag_passes_but_is_not_what_was_sent_cannot_complete_a_record():
    """The record check behind the tag: a shard changed and tagged again (by a key holder, or by
    2^-64 luck) is caught when the record is rebuilt, and good copies rebuild it after."""
    musing = wire.Record(wire.Kind.MUSING, 3, 9, 1767225600, "Above the weather the sky goes black.")
    good = wire.fragment_record(musing, 48, parity=1, auth=AUTH)
    bad = bytearray(good[0])
    bad[wire.HEADER_BYTES] ^= 0x20
    ra = wire.Reassembler()
    assert ra.add(wire.decode_frame(_reseal(bad, AUTH), AUTH)) is None
    with pytest.raises(wire.WireError) as e:  # when the k-th shard arrives, the rebuilt record is checked
        for f in good[1:]:
            assert ra.add(wire.decode_frame(f, AUTH)) is None
    assert e.value.reason == "record check failed"
    out = [r for f in good if (r := ra.add(wire.decode_frame(f, AUTH)))]
    assert [r.text for r in out] == [musing.text]


def test_a_fragment_relabelled_to_another_record_is_refused():
    a = wire.fragment_record(wire.Record(wire.Kind.MUSING, 3, 10, 0, "first"), auth=AUTH)[0]
    forged = bytearray(a)
    forged[4:8] = struct.pack(">I", 11)  # the same bytes filed as seq 11
    with pytest.raises(wire.WireError, match="tag"):
        wire.decode_frame(_reseal(bytearray(forged)), AUTH)
    with pytest.raises(wire.WireError, match="check"):  # tagged again: the record check binds it to seq 10
        wire.Reassembler().add(wire.decode_frame(_reseal(forged, AUTH), AUTH))


def test_a_frame_tagged_with_another_key_or_read_without_one_is_refused():
    from stratoecho.wire.uplink_keys import new_key

    phase = wire.events.event("phase", before="ascent", after="float", alt_m=31250)
    frame = wire.fragment_record(wire.Record(wire.Kind.EVENT, 3, 1, 0, phase), auth=AUTH)[0]
    other = downlink.DownlinkAuth.from_flight_key(new_key())
    for auth, reason in ((other, "bad tag"), (None, "unauthenticated"),
                         (downlink.DownlinkAuth(AUTH.key, 4), "bad tag")):  # a shorter tag is no way in
        with pytest.raises(wire.WireError) as e:
            wire.decode_frame(frame, auth)
        assert e.value.reason == reason


def test_the_record_check_is_the_catalogue_crc32():
    """CRC-32/ISO-HDLC, computed bit by bit here, over kind, boot, seq and the body."""
    def crc32(data: bytes) -> int:
        crc = 0xFFFFFFFF
        for b in data:
            crc ^= b
            for _ in range(8):
                crc = (crc >> 1) ^ (0xEDB88320 if crc & 1 else 0)
        return crc ^ 0xFFFFFFFF

    assert crc32(b"123456789") == 0xCBF43926
    body = struct.pack(">I", 1767225600) + b"The sky is darker up here."
    frame = wire.fragment_body(wire.Kind.MUSING, 3, 7, body, auth=AUTH)[0]
    assert frame[wire.HEADER_BYTES + len(body):-2 - AUTH.tag_len] == struct.pack(">I", crc32(struct.pack(">BHI", 1, 3, 7) + body))
