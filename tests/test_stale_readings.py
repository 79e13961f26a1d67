"""Honest readings on air: a sensor that stopped answering is sent as no reading, never as
its last good value, and a missing reading never moves the other fields.

The LoRa gateway (PiInTheSky lora-gateway, sondehub.c ExtractFields) splits a sentence
with strtok(",*"), which skips empty fields, and pastes each value into its SondeHub JSON
as it stands; horusdemodlib reads the first six fields. `strtok_fields` below is the C
library's rule, written out; horusdemodlib is Project Horus's own parser.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from datetime import datetime, timezone

import pytest

from payload.assembly import build_onboard
from payload.clock import Clock
from payload.config import PayloadConfig
from payload.parts.sensors import Readings, fresh
from sim.world.flight import SimSensors
from stratoecho import wire
from stratoecho.wire import Kind, habpack
from stratoecho.wire.ukhas import parse_sentence_with_fields, with_field_list
from tests.fakes import RecordingRadio

FULL = wire.Telemetry(callsign="STRATO1", seq=12, time="10:11:12", lat=52.1, lon=-0.5, alt=12000, sats=9,
                      temp_c=-40.5, pressure_hpa=190.2, batt_mv=4168, boot=3)


def strtok_fields(sentence: bytes) -> list[str]:
    """What strtok(line, ",*") hands out, one call after another: empty tokens never appear."""
    return [t for t in re.split(r"[,*]", sentence.decode().strip()[2:]) if t]


def gateway_json(sentence: bytes) -> dict:
    """The SondeHub fields the LoRa gateway would build from `sentence` (its ExtractFields rules)."""
    tokens = strtok_fields(sentence)
    token = next(t for t in tokens if t.startswith("012345"))
    text = "{"
    for i, code in enumerate(token[1:], start=1):
        value = tokens[i] if i < len(tokens) else "(null)"  # printf's "%s" of NULL in glibc
        name = {"6": "sats", "9": "batt", "B": "ext_temperature", "R": "pressure"}.get(code)
        if name == "batt":
            value = value if "." in value else f"{float(value) / 1000:.1f}"
        if name:
            text += f'"{name}":{value},'
    return json.loads(text.rstrip(",") + "}")  # invalid JSON here is a rejected upload there


@pytest.mark.parametrize("missing", [(), ("temp_c",), ("pressure_hpa",), ("batt_mv",),
                                     ("temp_c", "pressure_hpa", "batt_mv")])
def test_a_missing_reading_is_left_out_and_every_other_field_keeps_its_name(missing):
    t = replace(FULL, **{name: (0 if name == "batt_mv" else math.nan) for name in missing})
    sentence = wire.encode_sentence(t)
    assert b",," not in sentence
    got = gateway_json(sentence)
    want = {"sats": 9, "ext_temperature": -40.5, "pressure": 190.2, "batt": 4.2}
    assert got == {k: v for k, v in want.items()
                   if {"ext_temperature": "temp_c", "pressure": "pressure_hpa", "batt": "batt_mv"}.get(k) not in missing}
    back = wire.decode_sentence(sentence)
    assert back.batt_mv == t.batt_mv and back.boot == 3
    assert (math.isnan(back.temp_c) and math.isnan(t.temp_c)) or back.temp_c == t.temp_c
    fields = parse_sentence_with_fields(sentence)
    assert fields["boot"] == 3 and ("batt" in fields) == ("batt_mv" not in missing)


def test_horusdemodlib_reads_a_sentence_with_readings_left_out():
    decoder = pytest.importorskip("horusdemodlib.decoder")
    sentence = wire.encode_sentence(replace(FULL, temp_c=math.nan, batt_mv=0))
    out = decoder.parse_ukhas_string(sentence.decode())
    assert (out["callsign"], out["sequence_number"], out["altitude"]) == ("STRATO1", 12, 12000)


def test_an_older_sentence_with_empty_fields_still_reads_and_is_rewritten_with_its_token():
    body = "STRATO1,12,10:11:12,52.10000,-0.50000,12000,9,,190.2,4168,3"
    old = f"$${body}*{wire.crc16_ccitt(body.encode()):04X}\n".encode()
    t = wire.decode_sentence(old)
    assert math.isnan(t.temp_c) and t.pressure_hpa == 190.2 and t.batt_mv == 4168
    assert gateway_json(with_field_list(old)) == {"sats": 9, "pressure": 190.2, "batt": 4.2}


def test_a_token_that_does_not_match_the_fields_is_refused():
    good = wire.encode_sentence(replace(FULL, temp_c=math.nan)).decode().strip()
    body = good[2:].rpartition("*")[0].replace("0123456R9I", "0123456BR9I")
    with pytest.raises(wire.WireError, match="names 11"):
        wire.decode_sentence(f"$${body}*{wire.crc16_ccitt(body.encode()):04X}\n".encode())


def test_habpack_leaves_out_a_battery_without_a_reading():
    msgpack = pytest.importorskip("msgpack")
    packet = habpack.encode_habpack(replace(FULL, batt_mv=0))
    assert habpack.KEY_VOLTAGE not in msgpack.unpackb(packet, strict_map_key=False)
    assert habpack.decode_habpack(packet).batt_mv == 0


def test_fresh_takes_out_what_did_not_answer():
    r = Readings(time=datetime(2026, 6, 1, tzinfo=timezone.utc), lat=1.0, lon=2.0, alt_m=3.0, sats=4, temp_c=5.0,
                 pressure_hpa=6.0, batt_mv=4168, phase="ascent", status={"ina219": "i2c_error", "bme280": "ok"})
    f = fresh(r)
    assert f.batt_mv == 0 and f.temp_c == 5.0 and f.pressure_hpa == 6.0
    f = fresh(replace(r, status={"bme280": "silent"}))
    assert f.batt_mv == 4168 and math.isnan(f.temp_c) and math.isnan(f.pressure_hpa)


class DeadMonitor(SimSensors):
    """The bench world, with the INA219 answering no more after its first reading (its driver
    keeps the last good volts, as `devices.HardwareSensors` does)."""

    def __init__(self, clock):
        super().__init__(clock)
        self.reads = 0

    def read(self) -> Readings:
        r = super().read()
        self.reads += 1
        return replace(r, batt_mv=4168, status={"ina219": "ok" if self.reads == 1 else "i2c_error"})


def test_a_dead_power_monitor_is_no_reading_on_air_and_in_health(tmp_path):
    clock = Clock(speedup=1.0)
    d = build_onboard(PayloadConfig(), DeadMonitor(clock), RecordingRadio(), clock, None, tmp_path / "data")
    try:
        d.daemon.run_once("beacon")
        d.daemon.run_once("beacon")
        queued = d.parts.store.queue.queued(limit=10, kinds=(Kind.TELEMETRY,))
        sentences = sorted((wire.decode_sentence(q.payload) for q in queued), key=lambda s: s.seq)
        assert [s.batt_mv for s in sentences] == [4168, 0]  # read, then no reading: never 4168 again
        d.daemon.run_once("health")
        (q,) = d.parts.store.queue.queued(limit=10, kinds=(Kind.HEALTH,))
        health = wire.Record.from_body(wire.Kind.HEALTH, q.boot, q.seq, q.payload).content
        assert "batt_mv" not in health and health["ina219"] == "i2c_error"  # missing, and why
    finally:
        d.parts.store.close()
