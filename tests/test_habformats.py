"""Community HAB telemetry formats: HABpack, Horus Binary v2 and the UKHAS field list.

Golden vectors are built field by field from the formats' definitions; where a
decoder already exists on PyPI (horusdemodlib, Project Horus's own), our bytes
and sentences go through it too.
"""

from __future__ import annotations

import binascii
import math
import struct
from dataclasses import replace

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stratoecho import wire
from stratoecho.wire.habpack import FIRST_BYTES, decode_habpack, encode_habpack
from stratoecho.wire.horus import PACKET_BYTES, HorusPacket, decode_horus, encode_horus
from stratoecho.wire.ukhas import field_list, parse_sentence_with_fields, with_field_list

# The position report docs/protocol.md uses for its first vector.
DOC_TELEMETRY = wire.Telemetry("STRATO1", 42, "10:04:11", 52.70123, -2.71234, 12345, 9, -40.5, 180.2, 3890, 3)
HORUS_TEST_ID = 256  # "4FSKTEST-V2" in Project Horus's payload id list: an id kept for tests

# --------------------------------------------------------------------------- strategies

callsigns = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/_-", min_size=1, max_size=16)
times = st.builds(lambda h, m, s: f"{h:02d}:{m:02d}:{s:02d}",
                  st.integers(0, 23), st.integers(0, 59), st.integers(0, 59))


def telemetry(*, alt=st.integers(-500, 60_000), sats=st.integers(0, 60), batt=st.integers(0, 20_000),
              seq=st.integers(0, 2**40), boot=st.integers(0, 2**20)):
    return st.builds(
        wire.Telemetry,
        callsign=callsigns, seq=seq, time=times,
        lat=st.floats(-90, 90), lon=st.floats(-180, 180), alt=alt, sats=sats,
        temp_c=st.floats(-100, 60), pressure_hpa=st.floats(0, 1100), batt_mv=batt, boot=boot,
    )


horus_telemetry = telemetry(alt=st.integers(0, 65_535), sats=st.integers(0, 255), batt=st.integers(0, 5000))


# --------------------------------------------------------------------------- HABpack

# Each entry: key, then value, as the msgpack spec encodes them (big-endian).
HABPACK_GOLDEN = bytes.fromhex(
    "89"                                  # fixmap, 9 entries
    "00" "a7" + b"STRATO1".hex() +        # 0 callsign: fixstr of 7
    "01" "2a"                             # 1 sentence id 42: positive fixint
    "02" "cd8d9b"                         # 2 time 10:04:11 = 36251 s: uint16
    "03" "93"                             # 3 position: fixarray of 3
    "ce1f6991cc"                          #   lat 52.70123 -> 527012300: uint32
    "d2fe622138"                          #   lon -2.71234 -> -27123400: int32
    "cd3039"                              #   alt 12345: uint16
    "04" "09"                             # 4 satellites 9
    "06" "cd0f32"                         # 6 battery 3890 mV: uint16
    "0b" "d2ffff61cc"                     # 11 external temperature -40500 m°C: int32
    "0c" "ce0002bfe8"                     # 12 pressure 180200 milli-hPa: uint32
    "64" "03"                             # 100 boot 3: stratoecho's key
)


def test_habpack_golden_encode_and_decode():
    assert encode_habpack(DOC_TELEMETRY) == HABPACK_GOLDEN
    assert decode_habpack(HABPACK_GOLDEN) == DOC_TELEMETRY


def test_habpack_first_byte_is_what_gateways_dispatch_on():
    assert HABPACK_GOLDEN[0] in range(0x80, 0x90)
    assert FIRST_BYTES <= wire.GATEWAY_FIRST_BYTES
    assert wire.MAGIC not in FIRST_BYTES  # and it cannot be mistaken for our record fragments


def test_habpack_map16_form_decodes_too():
    # A sender with more than 15 keys writes map16 (0xDE, u16 count); same content here.
    assert decode_habpack(b"\xde\x00\x09" + HABPACK_GOLDEN[1:]) == DOC_TELEMETRY


def test_habpack_decodes_other_senders_units():
    body = msgpack.unpackb(HABPACK_GOLDEN, strict_map_key=False)
    body.update({2: 1767225600 + 36251, 6: 3.89, 11: -40.5, 12: 180.2, 99: "ignored", "x": 1})
    assert decode_habpack(msgpack.packb(body)) == DOC_TELEMETRY


@pytest.mark.parametrize("change, reason", [
    ({0: None}, "habpack missing key"),
    ({100: None}, "habpack missing key"),
    ({0: 12345}, "habpack field invalid"),
    ({0: "A,B"}, "bad callsign"),
    ({1: -1}, "habpack field invalid"),
    ({1: True}, "habpack field invalid"),
    ({2: "10:04:11"}, "habpack field invalid"),
    ({3: [527012300, -27123400]}, "habpack field invalid"),
    ({3: [527012300, -27123400, 1.5]}, "habpack field invalid"),
    ({3: [910000000, 0, 0]}, "habpack field invalid"),
    ({4: 9.0}, "habpack field invalid"),
    ({11: float("nan")}, "telemetry not finite"),
    ({12: float("inf")}, "telemetry not finite"),
    ({12: "180.2"}, "habpack field invalid"),
])
def test_habpack_rejects_bad_fields(change, reason):
    body = msgpack.unpackb(HABPACK_GOLDEN, strict_map_key=False)
    for key, value in change.items():
        if value is None:
            del body[key]
        else:
            body[key] = value
    with pytest.raises(wire.WireError) as e:
        decode_habpack(msgpack.packb(body))
    assert e.value.reason == reason


@pytest.mark.parametrize("packet, reason", [
    (b"", "empty"),
    (HABPACK_GOLDEN + b"\x00", "habpack trailing bytes"),
    (HABPACK_GOLDEN[:-1], "habpack malformed"),
    (b"\x93\x01\x02\x03", "habpack not a map"),      # fixarray
    (b"\xdf" + bytes(4), "habpack not a map"),        # map32: no gateway takes it as HABpack
    (b"$$STRATO1,1*0000", "habpack not a map"),
    (b"\x81\x00\xc1", "habpack malformed"),           # 0xC1 is never used in msgpack
    (b"\x81\x92\x00\x00\x00", "habpack malformed"),   # an array as a key
])
def test_habpack_rejects_malformed_packets(packet, reason):
    with pytest.raises(wire.WireError) as e:
        decode_habpack(packet)
    assert e.value.reason == reason


def test_habpack_encoder_refuses_what_it_cannot_send():
    for bad in (
        replace(DOC_TELEMETRY, lat=float("nan")),
        replace(DOC_TELEMETRY, lon=181.0),
        replace(DOC_TELEMETRY, time="24:00:00"),
        replace(DOC_TELEMETRY, callsign=""),
        replace(DOC_TELEMETRY, seq=-1),
        replace(DOC_TELEMETRY, batt_mv=2**70),
    ):
        with pytest.raises(wire.WireError):
            encode_habpack(bad)


@given(telemetry())
def test_habpack_round_trip(t):
    packet = encode_habpack(t)
    assert packet[0] in FIRST_BYTES
    back = decode_habpack(packet)
    assert (back.callsign, back.seq, back.time, back.alt, back.sats, back.batt_mv, back.boot) == (
        t.callsign, t.seq, t.time, t.alt, t.sats, t.batt_mv, t.boot)
    assert abs(back.lat - t.lat) <= 1e-7 and abs(back.lon - t.lon) <= 1e-7
    assert abs(back.temp_c - t.temp_c) <= 0.0005 + 1e-9
    assert abs(back.pressure_hpa - t.pressure_hpa) <= 0.0005 + 1e-9


_msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.integers(0, 200), inner, max_size=4),
    max_leaves=10,
)


@settings(max_examples=300)
@given(st.one_of(
    st.binary(max_size=80),
    st.binary(max_size=80).map(lambda b: b"\x89" + b),
    st.dictionaries(st.sampled_from([0, 1, 2, 3, 4, 6, 11, 12, 100, 7]), _msgpack_values, max_size=10)
      .map(lambda d: msgpack.packb(d, use_bin_type=True)),
    st.tuples(st.integers(0, len(HABPACK_GOLDEN) - 1), st.integers(0, 255), st.integers(0, len(HABPACK_GOLDEN)))
      .map(lambda x: (HABPACK_GOLDEN[:x[0]] + bytes([x[1]]) + HABPACK_GOLDEN[x[0] + 1:])[:x[2]]),
))
def test_habpack_hostile_input_only_raises_wireerror(packet):
    try:
        result = decode_habpack(packet)
    except wire.WireError:
        return  # refused, as hostile input should be
    assert isinstance(result, wire.Telemetry)  # or accepted as a well-formed value, never anything else


# --------------------------------------------------------------------------- Horus Binary v2

_HORUS_BODY = bytes.fromhex(
    "0001"          # payload id 256, u16 LE
    "2a00"          # sequence 42
    "0a040b"        # 10:04:11
    + struct.pack("<f", 52.70123).hex()    # 0fce5242
    + struct.pack("<f", -2.71234).hex()    # fb962dc0
    + "3930"        # altitude 12345 m
    "00"            # speed: none carried
    "09"            # satellites
    "d8"            # temperature -40 °C (whole degrees)
    "c6"            # battery 198 = round(3890 mV * 255 / 5000)
    "0000"          # custom: ascent rate 0 cm/s
    "6bfe"          #         external temperature -405 (0.1 °C)
    "00"            #         humidity 0 %
    "0a07"          #         pressure 1802 (0.1 hPa)
    "0300"          #         boot 3, in the default layout's padding
)
HORUS_GOLDEN = _HORUS_BODY + bytes.fromhex("da70")  # CRC16-CCITT 0x70DA over bytes 0-29, LE


def test_horus_golden_encode_and_decode():
    assert _HORUS_BODY[7:15].hex() == "0fce5242fb962dc0"
    assert binascii.crc_hqx(_HORUS_BODY, 0xFFFF) == 0x70DA  # an independent CRC-16/CCITT-FALSE
    assert encode_horus(DOC_TELEMETRY, HORUS_TEST_ID) == HORUS_GOLDEN
    got = decode_horus(HORUS_GOLDEN, callsign="STRATO1")
    assert got.payload_id == HORUS_TEST_ID
    # Everything survives but the battery, which the format keeps in 1/255 of 5 V.
    assert got.telemetry == replace(DOC_TELEMETRY, batt_mv=3882)
    assert decode_horus(HORUS_GOLDEN).telemetry.callsign == "HORUS-256"


def test_horus_packet_is_32_bytes_and_crc_checked():
    assert len(HORUS_GOLDEN) == PACKET_BYTES == 32
    for i in range(len(HORUS_GOLDEN) * 8):  # CRC16 catches every single-bit error
        flipped = bytearray(HORUS_GOLDEN)
        flipped[i // 8] ^= 1 << (i % 8)
        with pytest.raises(wire.WireError) as e:
            decode_horus(bytes(flipped))
        assert e.value.reason == "crc mismatch"
    for size in (0, 16, 22, 31, 33, 65):
        with pytest.raises(wire.WireError) as e:
            decode_horus(HORUS_GOLDEN[:size] if size < 32 else HORUS_GOLDEN + bytes(size - 32))
        assert e.value.reason == "horus length"


def _with_crc(body: bytes) -> bytes:
    return body + struct.pack("<H", wire.crc16_ccitt(body))


@pytest.mark.parametrize("offset, value", [
    (4, b"\x18"),                           # hour 24
    (6, b"\x3c"),                           # second 60
    (7, struct.pack("<f", math.nan)),       # latitude nan
    (11, struct.pack("<f", 200.0)),         # longitude off the Earth
])
def test_horus_rejects_bad_fields_under_a_good_crc(offset, value):
    body = bytearray(_HORUS_BODY)
    body[offset:offset + len(value)] = value
    with pytest.raises(wire.WireError) as e:
        decode_horus(_with_crc(bytes(body)))
    assert e.value.reason == "horus field invalid"


def test_horus_saturates_and_wraps_documented_fields():
    t = replace(DOC_TELEMETRY, seq=65536 + 7, boot=65536 + 2, alt=70_000,
                temp_c=-300.0, pressure_hpa=-1.0, batt_mv=9000, sats=300)
    back = decode_horus(encode_horus(t, HORUS_TEST_ID)).telemetry
    assert (back.seq, back.boot, back.alt, back.sats, back.batt_mv, back.pressure_hpa) == (7, 2, 65535, 255, 5000, 0)
    assert back.temp_c == -300.0  # the i16 tenths hold it; only the whole-degree byte saturates
    with pytest.raises(wire.WireError):
        encode_horus(DOC_TELEMETRY, 65536)
    with pytest.raises(wire.WireError):
        encode_horus(replace(DOC_TELEMETRY, lat=91.0), 256)


@given(horus_telemetry, st.integers(256, 0xFFFF))
def test_horus_round_trip(t, payload_id):
    packet = encode_horus(t, payload_id)
    assert len(packet) == 32
    got = decode_horus(packet, callsign=t.callsign)
    back = got.telemetry
    assert got.payload_id == payload_id
    assert (back.callsign, back.time, back.alt, back.sats) == (t.callsign, t.time, t.alt, t.sats)
    assert (back.seq, back.boot) == (t.seq % 65536, t.boot % 65536)
    # float32 (half a step: 7.6e-6 beyond 128 degrees) plus rounding to 5 decimals (5e-6)
    assert abs(back.lat - t.lat) <= 1.3e-5 and abs(back.lon - t.lon) <= 1.3e-5
    assert abs(back.temp_c - t.temp_c) <= 0.05 + 1e-9
    assert abs(back.pressure_hpa - t.pressure_hpa) <= 0.05 + 1e-9
    assert abs(back.batt_mv - t.batt_mv) <= 10


@settings(max_examples=300)
@given(st.one_of(st.binary(max_size=70), st.binary(min_size=30, max_size=30).map(_with_crc)))
def test_horus_hostile_input_only_raises_wireerror(packet):
    try:
        result = decode_horus(packet)
    except wire.WireError:
        return  # refused, as hostile input should be
    assert isinstance(result, HorusPacket)  # or accepted as a well-formed value, never anything else


# --------------------------------------------------------------------------- horusdemodlib


def test_horusdemodlib_decodes_our_golden_packet():
    decoder = pytest.importorskip("horusdemodlib.decoder")
    d = decoder.decode_packet(HORUS_GOLDEN)  # auto-detects the format, as the ground software does
    assert d["crc_ok"] and d["modulation"] == "Horus Binary v2"
    assert d["payload_id"] == "4FSKTEST-V2"
    assert (d["sequence_number"], d["time"], d["altitude"], d["satellites"], d["speed"]) == (42, "10:04:11", 12345, 9, 0)
    assert d["latitude"] == pytest.approx(52.70123, abs=1e-5)
    assert d["longitude"] == pytest.approx(-2.71234, abs=1e-5)
    assert d["temperature"] == -40
    assert d["battery_voltage"] == pytest.approx(3.89, abs=0.01)
    # Our custom bytes under the default custom-field layout (no registration needed):
    assert (d["ascent_rate"], d["ext_temperature"], d["ext_humidity"], d["ext_pressure"]) == (0.0, -40.5, 0, 180.2)
    assert d["ukhas_str"].startswith("$$4FSKTEST-V2,42,10:04:11,52.70123,-2.71234,12345,")


def test_horusdemodlib_crc_matches_ours():
    checksums = pytest.importorskip("horusdemodlib.checksums")
    assert checksums.add_packet_crc(_HORUS_BODY) == HORUS_GOLDEN
    assert checksums.check_packet_crc(HORUS_GOLDEN)
    assert checksums.ukhas_crc(b"123456789") == f"{wire.crc16_ccitt(b'123456789'):04X}"


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(horus_telemetry, st.integers(257, 0xFFFF))
def test_horusdemodlib_agrees_with_our_decoder(t, payload_id):
    decoder = pytest.importorskip("horusdemodlib.decoder")
    packet = encode_horus(t, payload_id)
    # Name the format: left to guess, the library first tries Horus v3, whose CRC
    # sits in the first two bytes and matches one packet in 65536 by chance.
    d = decoder.decode_packet(packet, packet_format=decoder.HORUS_PACKET_FORMATS["horus_binary_v2_32byte"])
    ours = decode_horus(packet).telemetry
    assert (d["sequence_number"], d["time"], d["altitude"], d["satellites"]) == (ours.seq, ours.time, ours.alt, ours.sats)
    assert d["latitude"] == pytest.approx(ours.lat, abs=5e-6)
    assert d["longitude"] == pytest.approx(ours.lon, abs=5e-6)
    assert d["ext_temperature"] == pytest.approx(ours.temp_c)
    assert d["ext_pressure"] == pytest.approx(ours.pressure_hpa)
    assert d["battery_voltage"] * 1000 == pytest.approx(ours.batt_mv, abs=0.5)


@given(telemetry(alt=st.integers(0, 65_535)))
def test_horusdemodlib_parses_our_ukhas_sentences(t):
    decoder = pytest.importorskip("horusdemodlib.decoder")
    for sentence in (wire.encode_sentence(t), with_field_list(wire.encode_sentence(t))):
        d = decoder.parse_ukhas_string(sentence.decode("ascii"))  # checks the CRC, raises ValueError if bad
        assert (d["callsign"], d["sequence_number"], d["time"], d["altitude"]) == (t.callsign, t.seq, t.time, t.alt)
        assert d["latitude"] == pytest.approx(t.lat, abs=6e-6)
        assert d["longitude"] == pytest.approx(t.lon, abs=6e-6)


# --------------------------------------------------------------------------- UKHAS field list


def test_field_list_token_names_our_sentence_fields():
    token = field_list()
    assert token == "0123456BR9I"
    assert token.startswith("012345") and token.isalnum() and len(set(token)) == len(token)
    *fields, trailer = wire.encode_sentence(DOC_TELEMETRY).decode().strip()[2:].split("*")[0].split(",")
    assert trailer == token and len(fields) == len(token)  # our sentences carry the token


def test_sentence_with_field_list_golden():
    sentence = wire.encode_sentence(DOC_TELEMETRY)
    assert with_field_list(sentence) == sentence  # already there: not added twice
    body = "STRATO1,42,10:04:11,52.70123,-2.71234,12345,9,-40.5,180.2,3890,3,0123456BR9I"
    assert sentence == f"$${body}*{binascii.crc_hqx(body.encode(), 0xFFFF):04X}\n".encode()
    assert parse_sentence_with_fields(sentence) == {
        "payload_callsign": "STRATO1", "sentence_id": 42, "time": "10:04:11", "lat": 52.70123,
        "lon": -2.71234, "alt": 12345, "sats": 9, "ext_temperature": -40.5, "pressure": 180.2,
        "batt": 3.89, "boot": 3,
    }


def _sentence(body: str) -> str:
    return f"$${body}*{wire.crc16_ccitt(body.encode()):04X}\n"


def test_parse_other_trackers_field_lists():
    got = parse_sentence_with_fields(_sentence("FLEX1,7,01:02:03,51.1,-1.25,100,7,12,270,3.72,21.5,0.5,1012.3,0123456789ABR"))
    assert got == {
        "payload_callsign": "FLEX1", "sentence_id": 7, "time": "01:02:03", "lat": 51.1, "lon": -1.25, "alt": 100,
        "sats": 7, "vel_h": 12, "heading": 270, "batt": 3.72,  # already volts: it has a decimal point
        "temp": 21.5, "ext_temperature": 0.5, "pressure": 1012.3,
    }
    # Codes nobody defined, and free extras without a name, keep their code.
    assert parse_sentence_with_fields(_sentence("P,1,00:00:00,0,0,0,5,2,012345ZI"), extra_names={}) == {
        "payload_callsign": "P", "sentence_id": 1, "time": "00:00:00", "lat": 0, "lon": 0, "alt": 0,
        "field_Z": 5, "field_I": 2,
    }


@pytest.mark.parametrize("text, reason", [
    ("$$STRATO1,1,00:00:00,0,0,0*0000", "crc mismatch"),
    (_sentence("STRATO1,1,00:00:00,0,0,0"), "no field list"),
    (_sentence("STRATO1,1,00:00:00,0,0,0,0123456"), "field list mismatch"),
    (_sentence("STRATO1,1,00:00:00,0,0,0,7,0123455"), "field list mismatch"),
    (_sentence("STRATO1,1,00:00:00,nan,0,0,012345"), "sentence field invalid"),
    (_sentence("STRATO1,1,00:00:00,1_0,0,0,012345"), "sentence field invalid"),
    (_sentence("STRATO1,1,00:00:00," + "9" * 5000 + ",0,0,012345"), "sentence field invalid"),
    (_sentence("STRATO1,1,00:00:00," + "9" * 400 + ".0,0,0,012345"), "sentence field invalid"),
    ("STRATO1,1*0000", "sentence malformed"),
    ("$$STRATO1*12G4", "sentence malformed"),
    ("$$STRATÖ1*1234", "sentence not ascii"),
    (b"$$\xff*1234", "sentence not ascii"),
])
def test_parse_sentence_with_fields_rejects(text, reason):
    with pytest.raises(wire.WireError) as e:
        parse_sentence_with_fields(text)
    assert e.value.reason == reason


@settings(max_examples=300)
@given(st.one_of(
    st.text(max_size=80),
    st.binary(max_size=80),
    st.text(alphabet="0123456789ABR,.-:$*", max_size=60).map(_sentence),
    st.lists(st.text(alphabet="0123456789.-+:ABIRZ", max_size=6), max_size=12)
      .map(lambda fs: _sentence(",".join(fs + ["0123456789ABRZI"[:len(fs)]]))),
))
def test_parse_sentence_with_fields_hostile_input_only_raises_wireerror(text):
    try:
        result = parse_sentence_with_fields(text)
    except wire.WireError:
        return  # refused, as hostile input should be
    assert isinstance(result, dict)  # or accepted as a well-formed value, never anything else
