"""The whole-record check against forged frames, and sim/wire_fuzz.py (a share of `make fuzz`'s million)."""

from __future__ import annotations

import struct

import pytest

from sim import wire_fuzz
from stratoecho import wire
from stratoecho.wire import records


def test_damaged_and_forged_frames_raise_nothing_and_make_no_wrong_record():
    r = wire_fuzz.fuzz(frames=60_000, seed=7)
    assert r.forged > 10_000 and r.delivered > 1_000  # it really forged, and really delivered
    assert r.exceptions == [] and r.wrong == []
    assert r.reasons["record check failed"] > 0  # forged frames the CRC16 let through, stopped by the check


def test_without_the_record_check_forged_frames_make_wrong_records(monkeypatch):
    """The fuzzer has teeth: with the check made constant (every record "passes"), forged frames
    whose CRC16 was computed again deliver records that were never sent."""
    monkeypatch.setattr(records, "record_check", lambda *a: 0)
    r = wire_fuzz.fuzz(frames=20_000, seed=7)
    assert r.exceptions == [] and len(r.wrong) > 0


def test_a_frame_with_a_recomputed_crc16_cannot_complete_a_record_but_a_good_copy_can():
    musing = wire.Record(wire.Kind.MUSING, 3, 9, 1767225600, "Above the weather the sky goes black.")
    good = wire.fragment_record(musing, 40, parity=1)
    bad = bytearray(good[0])
    bad[wire.HEADER_BYTES] ^= 0x20  # one shard byte, and the frame CRC made to match again
    bad[-2:] = struct.pack(">H", wire.crc16_ccitt(bytes(bad[:-2])))
    ra = wire.Reassembler()
    assert ra.add(wire.decode_frame(bytes(bad))) is None
    with pytest.raises(wire.WireError) as e:  # when the k-th shard arrives, the rebuilt record is checked
        for f in good[1:]:
            assert ra.add(wire.decode_frame(f)) is None
    assert e.value.reason == "record check failed"
    # The shards gathered were dropped; the good ones heard again rebuild the record.
    out = [r for f in good if (r := ra.add(wire.decode_frame(f)))]
    assert [r.text for r in out] == [musing.text]


def test_a_fragment_relabelled_to_another_record_is_refused():
    a = wire.fragment_record(wire.Record(wire.Kind.MUSING, 3, 10, 0, "first"))[0]
    forged = bytearray(a)
    forged[4:8] = struct.pack(">I", 11)  # the same bytes filed as seq 11
    forged[-2:] = struct.pack(">H", wire.crc16_ccitt(bytes(forged[:-2])))
    with pytest.raises(wire.WireError, match="check"):
        wire.Reassembler().add(wire.decode_frame(bytes(forged)))


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
    frame = wire.fragment_body(wire.Kind.MUSING, 3, 7, body)[0]
    assert frame[wire.HEADER_BYTES + len(body):-2] == struct.pack(">I", crc32(struct.pack(">BHI", 1, 3, 7) + body))
