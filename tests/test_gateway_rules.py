"""What a plain LoRa gateway and horusdemodlib make of our sentences, sensors failing included.

The PITS LoRa gateway (PiInTheSky/lora-gateway) reads a sentence in two ways, written here in
our own words from its source:
- its key fields with `sscanf("%31[^,],%u,%8[^,],%lf,%lf,%d")` after the `$$`: callsign,
  counter, time, latitude, longitude, altitude;
- the rest, for SondeHub, by its field-list token: it splits the sentence with `strtok(",*")`
  (which skips empty fields), finds the first token starting `012345`, then walks the token
  from its second character, taking the next token for each code: `6` sats, `9` battery (volts
  if it has a point, else millivolts), `B` outside temperature, `R` pressure, others unlabelled.
horusdemodlib is run as it is (its `parse_ukhas_string`): a CRC check, integer altitude 0..65535.
"""

from __future__ import annotations

import math
import re

import pytest
from horusdemodlib.decoder import parse_ukhas_string

from sim.bench.fly import FlyOptions, fly
from stratoecho import wire
from tests.fakes import AUTH


def strtok(text: str, delimiters: str) -> list[str]:
    """C's strtok: runs of delimiters separate tokens, and empty tokens never appear."""
    return [t for t in re.split(f"[{re.escape(delimiters)}]", text) if t]


def gateway_reads(sentence: str) -> dict:
    """The values a LoRa gateway uploads for one sentence (its key fields and extracted fields)."""
    line = sentence.strip()
    m = re.match(r"\$\$([^,]{1,31}),(\d+),([^,]{1,8}),([-\d.]+),([-\d.]+),(-?\d+)", line)
    assert m, line
    out = {"callsign": m[1], "seq": int(m[2]), "time": m[3], "lat": float(m[4]), "lon": float(m[5]), "alt": int(m[6])}
    tokens = strtok(line, ",*")
    field_list = next((t for t in tokens if t.startswith("012345")), None)
    if field_list is None:
        return out
    names = {"6": "sats", "9": "batt", "B": "ext_temperature", "R": "pressure"}
    for code, token in zip(field_list[1:], tokens[1:]):  # the first token is the callsign, code 0
        if code == "9":
            out["batt"] = float(token) if "." in token else round(float(token) / 1000.0, 1)
        elif code in names:
            out[names[code]] = float(token)
    return out


@pytest.fixture(scope="module")
def faulty_flight(tmp_path_factory):
    """Forty bench minutes with the outside BME280 unplugged for a while, then the INA219 too."""
    out = tmp_path_factory.mktemp("faulty")
    fly(FlyOptions(out=out, persona=None, minutes=40, speedup=None, quiet=True,
                   faults=["bme280:unplug@8m-20m", "ina219:unplug@15m-25m"]))
    return [bytes.fromhex(h) for h in (out / "air.hex").read_text().split()]


def test_every_sentence_of_a_flight_with_sensor_faults_reads_right_through_the_gateways_rules(faulty_flight):
    sentences = [f for f in faulty_flight if f.startswith(b"$$")]
    missing_temp = missing_batt = 0
    for frame in sentences:
        ours = wire.decode_frame(frame, AUTH)
        got = gateway_reads(frame.decode("ascii"))
        assert (got["callsign"], got["seq"], got["time"], got["alt"]) == (ours.callsign, ours.seq, ours.time, ours.alt)
        assert (got["lat"], got["lon"]) == pytest.approx((ours.lat, ours.lon), abs=1e-5)
        assert got["sats"] == ours.sats
        if math.isnan(ours.temp_c):
            missing_temp += 1
            assert "ext_temperature" not in got and "pressure" not in got  # left out: never another value
        else:
            assert got["ext_temperature"] == pytest.approx(ours.temp_c, abs=0.05)
            assert got["pressure"] == pytest.approx(ours.pressure_hpa, abs=0.05)
        if ours.batt_mv == 0:
            missing_batt += 1
            assert "batt" not in got
        else:
            assert got["batt"] == pytest.approx(ours.batt_mv / 1000, abs=0.05)
            assert 2.5 < got["batt"] < 4.5  # volts of one Li-ion cell, never a pressure or a boot number
    assert missing_temp >= 10 and missing_batt >= 10  # the faults really took readings away
    assert len(sentences) - max(missing_temp, missing_batt) >= 10  # and sentences with every reading too


def test_horusdemodlib_parses_every_sentence_of_the_flight(faulty_flight):
    for frame in (f for f in faulty_flight if f.startswith(b"$$")):
        parsed = parse_ukhas_string(frame.decode("ascii"))
        ours = wire.decode_frame(frame, AUTH)
        assert (parsed["callsign"], parsed["sequence_number"], parsed["altitude"]) == (ours.callsign, ours.seq, ours.alt)


def test_an_altitude_below_sea_level_goes_as_zero_which_every_decoder_takes():
    t = wire.Telemetry("STRATO1", 7, "06:00:00", 31.5, 35.4, -412, 8, 30.1, 1058.0, 4100, 2)  # by the Dead Sea
    sentence = wire.encode_sentence(t).decode("ascii")
    assert parse_ukhas_string(sentence)["altitude"] == 0
    assert gateway_reads(sentence)["alt"] == 0 and wire.decode_frame(sentence.encode(), AUTH).alt == 0
    assert wire.decode_frame(wire.encode_habpack(t), AUTH).alt == -412  # HABpack carries it signed, as it is


# --------------------------------------------------------------------------- the rules as a check
from datetime import datetime, timezone  # noqa: E402

from stratoecho.wire import gateway_rules  # noqa: E402
from stratoecho.wire.musing_sentence import GATEWAY_MAX_LINE  # noqa: E402


def position(seq: int, hms: str, alt: int = 1000) -> bytes:
    return wire.encode_sentence(wire.Telemetry("STRATO1", seq, hms, 52.1, -0.1, alt, 8, 10.0, 990.0, 3900, 1))


def line(body: str) -> bytes:
    return f"$${body}*{wire.crc16_ccitt(body.encode()):04X}\n".encode()


def rules(frames: list[bytes]) -> list[str]:
    return [v.rule for v in gateway_rules.check_air(frames)]


def test_good_air_breaks_no_rule():
    when = datetime(2026, 6, 20, 12, 0, 3, tzinfo=timezone.utc)
    musing = wire.encode_musing_sentences("STRATO1", 2, when, 52.1, -0.1, 1000, 1, 4, "the sky " * 60)
    assert len(musing) > 1 and max(map(len, musing)) <= GATEWAY_MAX_LINE
    frames = [position(1, "12:00:00"), position(2, "12:00:02"), *musing, position(3, "12:01:00"),
              wire.fragment_record(wire.Record(wire.Kind.MUSING, 1, 4, 0, "x"), auth=AUTH)[0],  # not a gateway's business
              wire.encode_habpack(wire.Telemetry("STRATO1", 4, "12:01:30", 52.1, -0.1, 900, 8, 1.0, 2.0, 3900, 1))]
    assert rules(frames) == []


@pytest.mark.parametrize("frames, rule", [
    ([line("STRATO1,1,12:00:00,52.1,-0.1,100,musing 1.1 1/1," + "x" * 160)], "length"),
    ([line("STRATO1,1,12:00:00,52.1,-0.1,100,musing 1.1 1/1,012345 starts the text")], "field list"),
    ([line("STRATO1,1,12:00:00,52.1,-0.1,100,5,0123456789ABCDEF")], "field list"),  # names more than it has
    ([line("STRATO1,1,12:00:00,52.1,-0.1,100,5,012345" + "6" * 30)], "field list"),  # longer than FieldList[32]
    ([line("STRATO1,1,12:00:00,52.1,-0.1,100,five,0123456")], "field list"),  # sats not a number
    ([line('STRATO1,1,12:00:00,52.1,-0.1,100,say "hi"')], "json"),
    ([position(1, "12:00:00").replace(b"52.1", b"53.1")], "checksum"),
    ([line("STRATO1,one,12:00:00,52.1,-0.1,100")], "key fields"),
    ([position(2, "12:00:10"), position(1, "12:00:00")], "time order"),  # a repair of an old position
    ([position(1, "12:00:10"), line("STRATO1,1,12:00:10,52.1,-0.1,100,musing 1.1 1/1,hi")], "time order"),
    ([position(5, "12:00:10"), line("STRATO1,4,12:00:20,52.1,-0.1,100,musing 1.1 1/1,hi")], "counter order"),
])
def test_each_rule_a_stock_gateway_sets_is_caught(frames, rule):
    assert rule in rules(frames)


def test_a_sentence_sent_again_whole_is_the_same_upload():
    assert rules([position(1, "12:00:00"), position(1, "12:00:00"), position(2, "12:00:30")]) == []
    assert rules([position(1, "12:00:00"), position(1, "12:00:00", alt=1200)]) == ["time order"]


def test_midnight_is_not_out_of_order():
    assert rules([position(1, "23:59:50"), position(2, "00:00:20")]) == []
    assert rules([position(1, "00:00:20"), position(2, "23:59:50")]) == ["time order"]


def test_a_musing_that_starts_like_a_field_list_goes_as_plain_text():
    when = datetime(2026, 6, 20, 12, 0, 3, tzinfo=timezone.utc)
    for text in ("0123456789 and counting", "a long start " * 14 + "012345 more"):
        lines = wire.encode_musing_sentences("STRATO1", 2, when, 52.1, -0.1, 1000, 1, 4, text)
        assert rules([position(2, "12:00:02"), *lines]) == []
        parts = [wire.decode_frame(f, AUTH).text for f in lines]
        assert " ".join(parts) == text.strip()  # our ground reads it back as it was
    with pytest.raises(wire.WireError, match="field list"):
        wire.encode_musing_sentences("0123456", 2, when, 52.1, -0.1, 1000, 1, 4, "hi")


def test_a_restamped_musing_sentence_fits_wherever_the_original_did():
    when = datetime(2026, 6, 20, 12, 0, 3, tzinfo=timezone.utc)
    lines = wire.encode_musing_sentences("STRATO1", 2, when, 0.0, 0.0, 0, 1, 4, "word " * 170, made=when)
    far = [wire.restamp(f, 4_294_967_295, when, -89.99999, -179.99999, 999_999, AUTH) for f in lines]  # and signed
    assert max(map(len, far)) <= GATEWAY_MAX_LINE
    s = wire.decode_frame(far[0], AUTH)
    assert (s.counter, s.lat, s.lon, s.alt, s.time) == (4_294_967_295, -89.99999, -179.99999, 999_999, "12:00:03")
    assert [wire.decode_frame(f, AUTH).text for f in far] == [wire.decode_frame(f, AUTH).text for f in lines]
    assert {wire.decode_frame(f, AUTH).made for f in far} == {"12:00:03"}
