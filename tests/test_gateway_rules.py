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

from sim.fly import FlyOptions, fly
from stratoecho import wire


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
        ours = wire.decode_frame(frame)
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
        ours = wire.decode_frame(frame)
        assert (parsed["callsign"], parsed["sequence_number"], parsed["altitude"]) == (ours.callsign, ours.seq, ours.alt)


def test_an_altitude_below_sea_level_goes_as_zero_which_every_decoder_takes():
    t = wire.Telemetry("STRATO1", 7, "06:00:00", 31.5, 35.4, -412, 8, 30.1, 1058.0, 4100, 2)  # by the Dead Sea
    sentence = wire.encode_sentence(t).decode("ascii")
    assert parse_ukhas_string(sentence)["altitude"] == 0
    assert gateway_reads(sentence)["alt"] == 0 and wire.decode_frame(sentence.encode()).alt == 0
    assert wire.decode_frame(wire.encode_habpack(t)).alt == -412  # HABpack carries it signed, as it is
