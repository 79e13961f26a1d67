"""`wire.classify`: what a heard frame is, told once for the ground's routing and its decoder
(issue 43, item 5). Every kind, what each carries before a key is used, and garbage."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from stratoecho import wire
from stratoecho.wire import FrameKind, classify, decode_frame, decode_heard, ssdv, uplink
from stratoecho.wire.downlink import DownlinkAuth, Window, encode_window
from stratoecho.wire.relay import encode_relayed
from stratoecho.wire.uplink import payload_hash

AUTH = DownlinkAuth.from_flight_key(bytes(range(32)))
OTHER = DownlinkAuth.from_flight_key(bytes(range(1, 33)))
CALLSIGN = "STRATO1"
WHEN = datetime(2026, 1, 1, 10, 4, 11, tzinfo=timezone.utc)
POSITION = wire.Telemetry(CALLSIGN, 12, "10:04:11", 52.7, -2.7, 30_000, 9, -40.5, 55.0, 3890, 3)


def fragment(auth: DownlinkAuth = AUTH) -> bytes:
    return wire.fragment_record(wire.Record(wire.Kind.MUSING, 3, 7, 1_780_000_000, "the horizon curves"),
                                auth=auth)[0]


def cue(auth: DownlinkAuth = AUTH) -> bytes:
    return encode_window(Window(3, 8, payload_hash(CALLSIGN), 90, 4), auth)


def picture() -> bytes:
    packet = ssdv.encode_image(ssdv.prepare_jpeg(Image.new("RGB", (32, 16), (200, 40, 40))), "STRAT1", 7)[0]
    return packet[1:]  # as LoRa carries it: no sync byte


def test_a_position_sentence_names_its_callsign_and_is_parsed():
    heard = classify(wire.encode_sentence(POSITION))
    assert (heard.kind, heard.callsign, heard.opened, heard.error) == (FrameKind.SENTENCE, CALLSIGN, POSITION, None)
    assert not heard.tagged


def test_a_damaged_sentence_still_names_the_callsign_it_claims():
    line = wire.encode_sentence(POSITION).replace(b"52.7", b"53.7")  # its checksum no longer matches
    heard = classify(line)
    assert (heard.kind, heard.callsign, heard.opened, heard.error.reason) == (FrameKind.SENTENCE, CALLSIGN, None,
                                                                              "crc mismatch")
    with pytest.raises(wire.WireError) as e:
        decode_heard(heard)
    assert e.value.reason == heard.error.reason


def test_a_musing_sentence_is_told_from_a_position():
    line = wire.encode_musing_sentences(CALLSIGN, 3, WHEN, 52.7, -2.7, 30_000, 3, 12, "cold and blue up here")[0]
    heard = classify(line)
    assert (heard.kind, heard.callsign) == (FrameKind.MUSING_SENTENCE, CALLSIGN)
    assert isinstance(heard.opened, wire.MusingSentence) and heard.opened.seq == 12


def test_habpack_names_its_callsign_only_when_it_parses():
    heard = classify(wire.encode_habpack(POSITION))
    assert (heard.kind, heard.callsign, heard.opened.seq) == (FrameKind.HABPACK, CALLSIGN, 12)
    broken = classify(wire.encode_habpack(POSITION)[:-3])
    assert (broken.kind, broken.callsign, broken.opened) == (FrameKind.HABPACK, None, None)
    assert broken.error.reason == "habpack malformed"


def test_an_ssdv_packet_names_its_six_character_callsign():
    heard = classify(picture())
    assert (heard.kind, heard.callsign, heard.opened.image_id) == (FrameKind.SSDV, "STRAT1", 7)
    short = classify(picture()[:100])
    assert (short.kind, short.callsign, short.error.reason) == (FrameKind.SSDV, None, "bad length")


@pytest.mark.parametrize(("make", "kind"), [(fragment, FrameKind.FRAGMENT), (cue, FrameKind.WINDOW_CUE)])
def test_tagged_frames_wait_for_a_key_whose_tag_check_needs_no_parsing(make, kind):
    heard = classify(make())
    assert (heard.kind, heard.tagged, heard.callsign, heard.opened) == (kind, True, None, None)
    assert heard.tag_checks(AUTH) and not heard.tag_checks(OTHER)
    assert decode_heard(heard, AUTH) == decode_frame(make(), AUTH)
    with pytest.raises(wire.WireError) as e:
        decode_heard(heard, OTHER)
    assert e.value.reason == "bad tag"


def test_an_open_frame_never_passes_a_tag_check():
    assert not classify(wire.encode_sentence(POSITION)).tag_checks(AUTH)


def test_a_relay_envelope_is_opened_and_what_it_carries_classified():
    envelope = encode_relayed(fragment(), payload_hash("NEAR1"), 2, OTHER)
    heard = classify(envelope)
    assert (heard.kind, heard.error, heard.envelope.relayer, heard.envelope.hops_left) == (
        FrameKind.RELAYED, None, payload_hash("NEAR1"), 2)
    assert (heard.inner.kind, heard.inner.data) == (FrameKind.FRAGMENT, fragment())
    assert heard.inner.tag_checks(AUTH)  # still under its origin's own tag
    with pytest.raises(wire.WireError, match="unknown first byte 0xEF"):
        decode_heard(heard)  # an envelope is opened, never decoded as a frame


def test_a_damaged_envelope_is_one_with_the_reason_its_reader_gives():
    envelope = bytearray(encode_relayed(wire.encode_sentence(POSITION), payload_hash("NEAR1"), 0, OTHER))
    envelope[5] ^= 1
    heard = classify(bytes(envelope))
    assert (heard.kind, heard.envelope, heard.inner, heard.error.reason) == (FrameKind.RELAYED, None, None,
                                                                             "crc mismatch")


def test_the_envelope_tag_length_says_where_the_carried_frame_ends():
    long_tag = DownlinkAuth(OTHER.key, tag_len=12)
    envelope = encode_relayed(cue(), payload_hash("NEAR1"), 0, long_tag)
    assert classify(envelope, tag_len=12).inner.data == cue()
    assert classify(envelope).inner.data != cue()


def test_an_uplink_command_is_named_and_not_decoded():
    command = uplink.sign(bytes(range(32)), 1, CALLSIGN, uplink.Ping(7))
    heard = classify(command)
    assert heard.kind is FrameKind.UPLINK and heard.error is None
    with pytest.raises(wire.WireError, match="unknown first byte 0xED"):
        decode_heard(heard)


@pytest.mark.parametrize(("frame", "reason"), [(b"", "empty"), (b"\x01junk", "unknown first byte"),
                                               (b"$", "unknown first byte")])
def test_anything_else_is_unknown_with_the_reason_a_decoder_counts(frame, reason):
    heard = classify(frame)
    assert (heard.kind, heard.error.reason) == (FrameKind.UNKNOWN, reason)
    with pytest.raises(wire.WireError) as e:
        decode_heard(heard)
    assert e.value.reason == reason


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300) | st.sampled_from([b"$$", b"\xec", b"\xee", b"\xef", b"\xed", b"\x66", b"\x80"]).flatmap(
    lambda first: st.binary(max_size=300).map(lambda rest: first + rest)))
def test_garbage_is_classified_never_raised_and_decodes_as_decode_frame_does(data):
    heard = classify(data)
    assert heard.data == data and isinstance(heard.kind, FrameKind)
    if heard.kind is FrameKind.RELAYED and heard.error is None:
        assert heard.inner.kind is not FrameKind.RELAYED  # an envelope is never nested
    outcomes = []
    for decode in (lambda: decode_heard(heard, AUTH), lambda: decode_frame(data, AUTH)):
        try:
            outcomes.append(decode())
        except wire.WireError as e:
            outcomes.append(e.reason)
    assert outcomes[0] == outcomes[1]


def test_the_flight_report_rows_every_frame_by_the_same_classification():
    """`sim report`'s air table (sim/bench/report/air_report.py) rows frames by `wire.classify`, not by
    first bytes of its own: each kind lands in the air plan's row, a record by its kind."""
    from sim.bench.report.air_report import classify as row_of

    line = wire.encode_musing_sentences(CALLSIGN, 3, WHEN, 52.7, -2.7, 30_000, 3, 12, "cold and blue up here")[0]
    health = wire.fragment_record(wire.Record(wire.Kind.HEALTH, 3, 9, 1_780_000_000, {"cpu_temp_c": 41.0}), auth=AUTH)[0]
    assert row_of(wire.encode_sentence(POSITION), AUTH) == ("position", None)
    assert row_of(wire.encode_habpack(POSITION), AUTH) == ("position", None)
    assert row_of(line, AUTH) == ("musing sentence", (3, 12))
    assert row_of(picture(), AUTH) == ("picture", None)
    assert row_of(cue(), AUTH) == ("window", None)
    assert row_of(encode_relayed(fragment(OTHER), 0x1234, 1, AUTH), AUTH) == ("relay", None)
    assert row_of(fragment(), AUTH) == ("musing", (3, 7))
    assert row_of(health, AUTH) == ("health", None)
    assert row_of(fragment(OTHER), AUTH) == ("other", None)  # a tag that does not check is no record of ours
    assert row_of(b"\x00garbage", AUTH) == ("other", None)
