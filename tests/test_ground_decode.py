"""Ground decoding: golden frames built with stratoecho.wire, hostile frames, the decode CLI."""

from __future__ import annotations

import io
import json
import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from groundstation.__main__ import main
from groundstation.display import clean_text, format_record
from groundstation.link.decoder import INVALID, FrameDecoder, error_reason
from stratoecho import wire
from stratoecho.wire.events import event
from tests.fakes import AUTH, write_flight_key

TELEMETRY = [
    wire.Telemetry("STRATO", seq, "12:04:11", 52.10123, -0.10234, 12345 + seq, 9, -40.5, 180.2, 3700, 3)
    for seq in (41, 42)
]
MUSING = wire.Record(wire.Kind.MUSING, 3, 7, 1714565055,
                     "The clouds below look like a second ocean, and I am a ship of latex. ☁️ " * 3)
EVENT = wire.Record(wire.Kind.EVENT, 3, 8, 1714565060, event("phase", before="ascent", after="descent", alt_m=31250))
MTU = 40  # small, so the musing takes several fragments


def sentence(t: wire.Telemetry) -> bytes:
    return wire.encode_sentence(t)


def reseal(frame_without_crc: bytes) -> bytes:
    """A fragment with a valid CRC over whatever bytes the test chose: hostile but well-checksummed."""
    return frame_without_crc + struct.pack(">H", wire.crc16_ccitt(frame_without_crc))


def one_fragment(record: wire.Record) -> bytes:
    (frame,) = wire.fragment_record(record, auth=AUTH)
    return frame


def expected_records() -> list[wire.Telemetry | wire.Record]:
    return [*TELEMETRY, MUSING, EVENT]


def key(record: wire.Telemetry | wire.Record) -> tuple:
    return record.kind, record.boot, record.seq


def feed_all(decoder: FrameDecoder, frames: list[bytes]) -> list[wire.Telemetry | wire.Record]:
    return [r.record for f in frames if (r := decoder.feed(f)).record is not None]


# --------------------------------------------------------------------------- golden


def test_golden_frames_duplicated_and_reordered_decode_exactly_once():
    musing_frames = wire.fragment_record(MUSING, mtu=MTU, auth=AUTH)
    assert len(musing_frames) >= 5
    frames = [sentence(t) for t in TELEMETRY] * 2 + musing_frames * 2 + wire.fragment_record(EVENT, mtu=MTU, auth=AUTH) * 3
    random.Random(7).shuffle(frames)
    decoder = FrameDecoder(auth=AUTH)
    records = feed_all(decoder, frames)
    assert sorted(records, key=key) == sorted(expected_records(), key=key)
    assert decoder.errors == {}
    assert decoder.duplicates == 2
    assert decoder.records == {"telemetry": 2, "musing": 1, "event": 1}
    assert decoder.incomplete() == 0


def test_missing_fragment_leaves_record_incomplete_until_it_arrives():
    frames = wire.fragment_record(MUSING, mtu=MTU, auth=AUTH)
    decoder = FrameDecoder(auth=AUTH)
    assert feed_all(decoder, frames[:2] + frames[3:]) == []
    assert decoder.incomplete() == 1
    assert feed_all(decoder, [frames[2]]) == [MUSING]
    assert decoder.incomplete() == 0


def test_records_are_the_wire_types_and_their_json_what_the_contract_promises():
    decoder = FrameDecoder(auth=AUTH)
    tele, musing = feed_all(decoder, [sentence(TELEMETRY[0]), *wire.fragment_record(MUSING, auth=AUTH)])
    assert tele == TELEMETRY[0] and musing == MUSING  # typed, nothing lost on the way
    assert {"kind", "boot", "seq", "lat", "lon", "alt"} <= tele.as_dict().keys()
    assert {"kind", "boot", "seq", "text"} <= musing.as_dict().keys()
    json.dumps([tele.as_dict(), musing.as_dict()], allow_nan=False)  # valid JSON, no NaN


def late_position(t: wire.Telemetry, frame: bytes | None = None) -> list[bytes]:
    """A position the payload sent after a newer one: a record carrying its sentence (payload/link/transmitter.py)."""
    body = struct.pack(">I", 1_750_000_000) + (frame or sentence(t))
    return wire.fragment_body(wire.Kind.TELEMETRY, t.boot, t.seq, body, MTU, parity=1, auth=AUTH)


def test_a_late_position_comes_as_a_record_and_is_the_telemetry_it_carries():
    decoder = FrameDecoder(auth=AUTH)
    late = late_position(TELEMETRY[0])
    assert all(f[0] == wire.MAGIC for f in late)  # never a $$ line: gateways pass it by
    got = feed_all(decoder, late[1:])  # any k of its n frames
    assert got == [TELEMETRY[0]] and decoder.records == {"telemetry": 1}
    assert feed_all(decoder, [sentence(TELEMETRY[0])]) == [] and decoder.duplicates == 1  # heard both ways: once
    habpack = late_position(TELEMETRY[1], wire.encode_habpack(TELEMETRY[1]))
    assert feed_all(decoder, habpack) == [TELEMETRY[1]]


# --------------------------------------------------------------------------- hostile

GOOD_FRAGMENT = one_fragment(EVENT)
GOOD_SENTENCE = sentence(TELEMETRY[0])
BODY = EVENT.body()  # a record's body before its check


def fragment(vk=0x42, boot=3, seq=1, idx=0, k=1, n=1, length=None, shard=BODY, seal=True, auth=AUTH) -> bytes:
    """A hand-packed v4 fragment with a valid tag (`auth`; None: none) and CRC (and, with `seal`,
    a valid record check): hostile content, well-checksummed, as a broken payload could send."""
    if seal:
        shard = shard + struct.pack(">I", wire.record_check(vk & 0x0F, boot, seq, shard))
    length = len(shard) if length is None else length
    body = struct.pack(">BBHIBBBH", wire.MAGIC, vk, boot, seq, idx, k, n, length) + shard
    return reseal(body + (auth.tag(body) if auth is not None else b""))


OTHER_FLIGHT = wire.DownlinkAuth.from_flight_key(bytes(range(32)))  # the published vector key
HOSTILE = {
    "empty": ([b""], "empty"),
    "unknown first byte": ([b"hello world"], "unknown first byte"),
    "truncated header": ([GOOD_FRAGMENT[:7]], "truncated"),
    "truncated body": ([GOOD_FRAGMENT[:-3]], "crc mismatch"),
    "flipped bit in fragment": ([GOOD_FRAGMENT[:12] + bytes([GOOD_FRAGMENT[12] ^ 0x04]) + GOOD_FRAGMENT[13:]],
                                "crc mismatch"),
    "flipped bit in sentence": ([GOOD_SENTENCE.replace(b"52.1", b"53.1")], "crc mismatch"),
    "sentence cut short": ([GOOD_SENTENCE[:30]], "sentence malformed"),
    "sentence checksum cut": ([GOOD_SENTENCE[:-3]], "sentence malformed"),
    "non-ascii sentence": ([b"$$STRATO\xff,1*0000"], "sentence not ascii"),
    "sentence field count": ([b"$$A,1*" + b"%04X" % wire.crc16_ccitt(b"A,1")], "sentence field count"),
    "sentence field invalid": (
        [b"$$" + (body := b"A,x,12:00:00,1,2,3,4,5,6,7,8") + b"*" + b"%04X" % wire.crc16_ccitt(body)],
        "sentence field invalid"),
    "unknown version": ([fragment(vk=0x32, auth=None)], "unknown version"),  # version 3 had no tag
    "untagged fragment": ([fragment(auth=None)], "bad tag"),  # a forger's CRC16 without the key
    "fragment of another flight": ([fragment(auth=OTHER_FLIGHT)], "bad tag"),
    "forged window cue": ([wire.encode_window(wire.Window(3, 42, 0x7F66, 1260, 4), OTHER_FLIGHT)], "bad tag"),
    "unknown kind": ([fragment(vk=0x4F)], "unknown kind"),
    "telemetry record carrying no position": ([fragment(vk=0x40)], "bad content"),
    "telemetry record carrying another position": (
        [fragment(vk=0x40, seq=9, shard=struct.pack(">I", 0) + sentence(TELEMETRY[0]))], "bad content"),
    "bad fragment index": ([fragment(idx=2, k=1, n=2)], "bad fragment index"),
    "more data shards than shards": ([fragment(k=3, n=2)], "bad fragment index"),
    "bad shard size": ([fragment(length=100)], "bad shard size"),
    "record too short": ([fragment(shard=b"\x00\x01")], "record too short"),
    "record check wrong": ([fragment(shard=BODY + b"\x00\x00\x00\x00", seal=False)], "record check failed"),
    "record filed under another seq": ([fragment(seq=2, shard=GOOD_FRAGMENT[wire.HEADER_BYTES:-2 - AUTH.tag_len],
                                                 seal=False)],
                                       "record check failed"),
    "garbled event": ([fragment(shard=BODY[:4] + b"\xff\xfe\xc3")], "bad content"),
    "nan position": ([b"$$" + (nan := b"S,1,00:00:00,nan,0.0,0,0,0.0,0.0,0,1") + b"*" + b"%04X" % wire.crc16_ccitt(nan)],
                     "telemetry not finite"),
}


@pytest.mark.parametrize("frames, reason", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_frames_are_counted_by_reason_never_raised(frames, reason):
    decoder = FrameDecoder(auth=AUTH)
    results = [decoder.feed(f) for f in frames]
    assert all(r.record is None for r in results)
    assert decoder.errors == {reason: 1}
    assert results[-1].error == reason and not results[-1].ok


def test_every_wire_error_reason_is_named():
    # Every hostile case is counted under wire's own reason, never the catch-all.
    assert all(reason != INVALID for _, reason in HOSTILE.values())
    assert error_reason(ValueError("not a wire error at all")) == INVALID


def test_hostile_frames_do_not_disturb_good_ones():
    hostile = [f for frames, _ in HOSTILE.values() for f in frames]
    good = [sentence(t) for t in TELEMETRY] + wire.fragment_record(MUSING, mtu=MTU, auth=AUTH)
    mixed = good + hostile
    random.Random(3).shuffle(mixed)
    decoder = FrameDecoder(auth=AUTH)
    records = feed_all(decoder, mixed)
    assert sorted(records, key=key) == sorted(expected_records()[:3], key=key)
    assert sum(decoder.errors.values()) == len(HOSTILE)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([b"", b"$$", bytes([wire.MAGIC]), bytes([wire.MAGIC, 0x11])]).flatmap(
    lambda prefix: st.binary(max_size=300).map(lambda tail: prefix + tail)))
def test_random_bytes_never_raise(data):
    # Prefixes steer the bytes past the first-byte dispatch into each parser.
    result = FrameDecoder(auth=AUTH).feed(data)
    assert result.ok or result.error != INVALID


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([GOOD_SENTENCE, GOOD_FRAGMENT]), st.data())
def test_a_flipped_bit_never_yields_a_wrong_record(frame, data):
    bit = data.draw(st.integers(0, len(frame) * 8 - 1))
    flipped = bytearray(frame)
    flipped[bit // 8] ^= 1 << (bit % 8)
    result = FrameDecoder(auth=AUTH).feed(bytes(flipped))
    # Some flips are harmless (a hex digit's case, a trailing whitespace byte): then the
    # record must be the original one, never a corrupted one.
    if result.record is not None:
        assert result.record == FrameDecoder(auth=AUTH).feed(frame).record
    else:
        assert result.error not in (None, INVALID)


# --------------------------------------------------------------------------- decode CLI


def write_hex(path, frames, extra_lines=()):
    lines = ["# recorded on the bench", ""] + [f.hex() for f in frames] + list(extra_lines)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_decode_cli_prints_complete_records_and_counts_errors(tmp_path, capsys):
    frames = [sentence(TELEMETRY[0])] + wire.fragment_record(MUSING, mtu=MTU, auth=AUTH)[::-1] + [sentence(TELEMETRY[0])]
    path = write_hex(tmp_path / "air.hex", frames + [GOOD_FRAGMENT[:-3], b"hello"], ["not hex", "abc", "   "])
    assert main(["decode", str(path)]) == 0  # without the key: the sentence only, the fragments unread
    out, err = capsys.readouterr()
    assert [json.loads(line) for line in out.splitlines()] == [TELEMETRY[0].as_dict()]
    assert "unauthenticated: " in err
    key = tmp_path / "flight.key"
    write_flight_key(key)
    assert main(["decode", str(path), "--flight-key", str(key)]) == 0
    out, err = capsys.readouterr()
    records = [json.loads(line) for line in out.splitlines()]
    assert records == [TELEMETRY[0].as_dict(), MUSING.as_dict()]
    assert "2 records" in err
    assert "bad hex: 2" in err and "crc mismatch: 1" in err and "unknown first byte: 1" in err
    assert "air.hex:" in err  # the bad line is named


def test_decode_cli_reads_stdin(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO(sentence(TELEMETRY[1]).hex() + "\n"))
    assert main(["decode", "-"]) == 0
    assert json.loads(capsys.readouterr().out) == TELEMETRY[1].as_dict()


def test_decode_cli_survives_non_utf8_lines(tmp_path, capsys):
    path = tmp_path / "garbage.hex"
    path.write_bytes(b"\xff\xfe\x00garbage\n" + sentence(TELEMETRY[0]).hex().encode() + b"\n")
    assert main(["decode", str(path)]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["seq"] == 41
    assert "bad hex: 1" in err


def test_decode_cli_missing_file_names_it(tmp_path, capsys):
    assert main(["decode", str(tmp_path / "nope.hex")]) == 1
    assert "nope.hex not found" in capsys.readouterr().err


# --------------------------------------------------------------------------- display


def test_telemetry_line_format():
    assert format_record(TELEMETRY[1]) == (
        "12:04:11  TELEMETRY #42 boot 3  52.10123,-0.10234  12387 m  -40.5°C  180.2 hPa  3700 mV  9 sats"
    )


def test_musing_line_escapes_control_characters_and_indents_lines():
    record = wire.Record(wire.Kind.MUSING, 3, 9, 1714565055, "up here\n\x1b[2Jquiet")
    assert format_record(record) == "12:04:15  MUSING boot 3 #9: up here\n          \\x1b[2Jquiet"
    assert clean_text("a\tb\x9b") == "a\\tb\\x9b"


def test_a_sensor_without_a_reading_shows_a_dash():
    t = wire.Telemetry("STRATO", 43, "12:04:41", 52.1, -0.1, 12400, 9, float("nan"), float("nan"), 0, 3)
    assert format_record(t) == "12:04:41  TELEMETRY #43 boot 3  52.10000,-0.10000  12400 m  —°C  —hPa  — mV  9 sats"
