"""The wire format against the test vectors in docs/protocol.md, and against hostile bytes."""

from __future__ import annotations

import dataclasses
import json
import random
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stratoecho import wire
from stratoecho.wire.downlink import DownlinkAuth

# The key of the vectors in docs/protocol.md: the flight key 00 01 .. 1f, published there.
AUTH = DownlinkAuth.from_flight_key(bytes(range(32)))

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"


def _block_after(marker: str) -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    m = re.search(re.escape(marker) + r".*?\n```\n(.*?)```", text, re.S)
    assert m, f"{DOC} lost its block after {marker!r}"
    return [line for line in m.group(1).splitlines() if line.strip()]


def test_crc_check_value():
    assert wire.crc16_ccitt(b"123456789") == 0x29B1


@pytest.mark.parametrize("line", _block_after("<!-- vectors:"))
def test_documented_vectors_decode(line):
    hex_frame, expected = line.split(" -> ", 1)
    decoded = wire.decode_frame(bytes.fromhex(hex_frame), AUTH)
    if isinstance(decoded, wire.Telemetry):
        got = decoded.as_dict()
    elif isinstance(decoded, wire.MusingSentence):
        got = {"kind": "musing_sentence", **dataclasses.asdict(decoded)}
    elif isinstance(decoded, wire.Window):
        got = {"kind": "window", **dataclasses.asdict(decoded)}
    else:
        got = wire.Reassembler().add(decoded).as_dict()
    assert got == {**got, **json.loads(expected)}


def test_documented_vectors_encode():
    sentence = wire.Telemetry("STRATO1", 42, "10:04:11", 52.70123, -2.71234, 12345, 9, -40.5, 180.2, 3890, 3)
    first = _block_after("<!-- vectors:")[0].split(" -> ")[0]
    assert wire.encode_sentence(sentence).hex() == first
    musing = wire.Record(wire.Kind.MUSING, 3, 7, 1767225600, "The sky is darker up here.")
    assert wire.fragment_record(musing, auth=AUTH)[0].hex() == _block_after("<!-- vectors:")[1].split(" -> ")[0]


def test_the_documented_signed_sentences_check_under_the_vectors_key_and_no_other():
    *_, position, musing = (bytes.fromhex(line.split(" -> ")[0]) for line in _block_after("<!-- vectors:"))
    assert wire.sentence_signed(position, AUTH) and wire.musing_signed(musing, AUTH)
    other = DownlinkAuth.from_flight_key(bytes(32))
    assert not wire.sentence_signed(position, other) and not wire.musing_signed(musing, other)
    t = wire.Telemetry("STRATO1", 43, "10:05:11", 52.70456, -2.71345, 12650, 9, -41.0, 176.4, 3888, 3)
    assert wire.encode_sentence(t, AUTH) == position
    unsigned = _block_after("<!-- vectors:")[0].split(" -> ")[0]
    assert not wire.sentence_signed(bytes.fromhex(unsigned), AUTH)


def test_documented_fragments_rebuild_from_any_three_of_five():
    import itertools

    frames = [bytes.fromhex(h) for h in _block_after("<!-- fragments:")]
    assert len(frames) == 5
    for chosen in itertools.permutations(range(5), 3):
        ra = wire.Reassembler()
        out = [r for i in chosen if (r := ra.add(wire.decode_frame(frames[i], AUTH)))]
        assert len(out) == 1
        assert out[0].text == "Cold at 30 km: the battery sags and the horizon curves."
        assert (out[0].boot, out[0].seq) == (3, 8)
    ra = wire.Reassembler()
    assert [ra.add(wire.decode_frame(f, AUTH)) for f in frames[:2]] == [None, None]  # two are not enough
    musing = wire.Record(wire.Kind.MUSING, 3, 8, 1767225600, "Cold at 30 km: the battery sags and the horizon curves.")
    assert wire.fragment_record(musing, 48, parity=2, auth=AUTH) == frames


def test_first_byte_avoids_gateway_types():
    musing = wire.Record(wire.Kind.MUSING, 1, 1, 0, "x")
    assert wire.fragment_record(musing, auth=AUTH)[0][0] not in wire.GATEWAY_FIRST_BYTES


@pytest.mark.parametrize(
    "frame, reason",
    [
        (b"", "empty"),
        (b"\x00garbage", "unknown first byte"),
        (b"$$STRATO1,1,00:00:00,0,0,0,0,0,0,0,1*0000\n", "checksum"),
        (b"$$STRATO1,1*", "not 4 hex"),
        (bytes.fromhex("ec21000300000007000101001e6955b900"), "CRC"),
        (bytes.fromhex("ec11"), "shorter"),
    ],
)
def test_hostile_frames_raise_wire_error(frame, reason):
    with pytest.raises(wire.WireError, match=reason):
        wire.decode_frame(frame, AUTH)


def test_every_single_bit_flip_is_caught():
    frame = wire.fragment_record(wire.Record(wire.Kind.MUSING, 2, 9, 1700000000, "bit flips in the cold"), auth=AUTH)[0]
    for i in range(len(frame) * 8):
        bad = bytearray(frame)
        bad[i // 8] ^= 1 << (i % 8)
        with pytest.raises(wire.WireError):
            wire.decode_frame(bytes(bad), AUTH)


def test_fragment_sizes_respect_mtu():
    text = "ü" * 1000  # multi-byte UTF-8 split across fragments must still rebuild
    frames = wire.fragment_record(wire.Record(wire.Kind.MUSING, 1, 5, 0, text), mtu=64, auth=AUTH)
    assert all(len(f) <= 64 for f in frames)
    ra = wire.Reassembler()
    rebuilt = [r for f in frames if (r := ra.add(wire.decode_frame(f, AUTH)))]
    assert rebuilt[0].text == text


def test_too_long_record_is_refused():
    with pytest.raises(wire.WireError, match="fragments"):
        wire.fragment_record(wire.Record(wire.Kind.MUSING, 1, 1, 0, "x" * 10_000), mtu=32, auth=AUTH)


def test_callsign_with_separator_is_refused():
    with pytest.raises(wire.WireError, match="callsign"):
        wire.encode_sentence(wire.Telemetry("BAD,ONE", 1, "00:00:00", 0, 0, 0, 0, 0, 0, 0, 0))


@settings(max_examples=60, deadline=None)
@given(
    texts=st.lists(st.text(min_size=0, max_size=600), min_size=1, max_size=5),
    mtu=st.integers(min_value=24, max_value=255),
    seed=st.integers(0, 1000),
)
def test_shuffled_duplicated_fragments_rebuild_each_record_once(texts, mtu, seed):
    frames = []
    for seq, text in enumerate(texts):
        frames += wire.fragment_record(wire.Record(wire.Kind.MUSING, 1, seq, 1234, text), mtu, auth=AUTH)
    rng = random.Random(seed)
    stream = frames + rng.sample(frames, k=len(frames) // 2)
    rng.shuffle(stream)
    ra = wire.Reassembler()
    out = [r for f in stream if (r := ra.add(wire.decode_frame(f, AUTH)))]
    assert sorted((r.seq, r.text) for r in out) == list(enumerate(texts))
    assert ra.missing() == {}


def test_nan_positions_are_refused_both_ways():
    with pytest.raises(wire.WireError) as e:
        wire.encode_sentence(wire.Telemetry("S1", 1, "00:00:00", float("nan"), 0, 0, 0, 0, 0, 0, 1))
    assert e.value.reason == "telemetry not finite"


def test_a_record_recut_to_another_mtu_still_rebuilds():
    rec = wire.Record(wire.Kind.MUSING, 1, 9, 0, "re-sent after the MTU changed " * 8)
    ra = wire.Reassembler()
    assert ra.add(wire.decode_frame(wire.fragment_record(rec, 64, auth=AUTH)[0], AUTH)) is None
    out = [r for f in wire.fragment_record(rec, 100, auth=AUTH) if (r := ra.add(wire.decode_frame(f, AUTH)))]
    assert out and out[0].text == rec.text


@settings(max_examples=80, deadline=None)
@given(
    text=st.text(max_size=900),
    mtu=st.integers(min_value=32, max_value=255),
    parity=st.integers(min_value=0, max_value=6),
    data=st.data(),
)
def test_any_k_of_n_fragments_rebuild_the_record(text, mtu, parity, data):
    rec = wire.Record(wire.Kind.MUSING, 5, 77, 1234, text)
    frames = wire.fragment_record(rec, mtu, parity=parity, auth=AUTH)
    k = wire.data_shards(len(rec.body()), mtu)
    assert len(frames) == k + parity and all(len(f) <= mtu for f in frames)
    kept = data.draw(st.lists(st.sampled_from(frames), min_size=k, max_size=3 * len(frames)))
    ra = wire.Reassembler()
    out = [r for f in kept if (r := ra.add(wire.decode_frame(f, AUTH)))]
    distinct = len(set(kept))
    if distinct >= k:
        assert [r.text for r in out] == [text]
    else:
        assert out == [] and ra.missing()[(1, 5, 77)][0] == k - distinct


def test_a_sensor_without_a_reading_is_left_out_with_its_code_and_never_stops_the_beacon():
    import math

    t = wire.Telemetry("STRATO1", 5, "10:00:00", 52.1, -0.1, 1000, 9, float("nan"), 850.0, 3900, 1)
    frame = wire.encode_sentence(t)
    # Never an empty field: the LoRa gateway's strtok() would skip it and shift every later field.
    assert b",9,850.0,3900,1,0123456R9I*" in frame
    back = wire.decode_sentence(frame)
    assert math.isnan(back.temp_c) and back.pressure_hpa == 850.0
    assert json.loads(json.dumps(back.as_dict()))["temp_c"] is None  # JSON has no NaN
    packed = wire.encode_habpack(t)
    assert math.isnan(wire.decode_habpack(packed).temp_c)
    with pytest.raises(wire.WireError):
        wire.encode_sentence(wire.Telemetry("STRATO1", 5, "10:00:00", 52.1, -0.1, 1000, 9, float("inf"), 850.0, 3900, 1))
    body = frame.decode()[2:].rsplit("*", 1)[0].replace(",9,850.0,", ",9,nan,850.0,").replace("R9I", "BR9I")
    forged = f"$${body}*{wire.crc16_ccitt(body.encode()):04X}\n".encode()
    with pytest.raises(wire.WireError):
        wire.decode_sentence(forged)  # "nan" written out is not how a missing value travels
