"""A sensor is added by registration alone (payload/parts/device_profiles.py, sim/world/i2c_sensors.py):
a maker's CO2 sensor, its driver and profile in one file (tests/fake_sensor/driver.py) and its
simulator in another (tests/fake_sensor/bench.py), both named in the configuration and nowhere
else, is read by the payload, reported in its health records, and flown by `sim fly` with a fault
thrown at it; unregistered, the configuration and the bench refuse it by a message naming the
sensors there are. The built-in sensors go the same way, and the shipped configurations still load."""

from __future__ import annotations

import json
import math
import os
import sqlite3
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from pydantic import ValidationError

from payload.assembly import build_onboard
from payload.clock import Clock
from payload.config import PayloadConfig, load_config
from payload.parts import device_profiles
from payload.parts.device_profiles import device_names, device_profile, register_device
from payload.parts.devices import Devices, HardwareSensors
from payload.parts.sensors import fresh
from payload.policy.airplan import HEALTH_BODY_BYTES, health_body_bytes
from sim.__main__ import main as sim_main
from sim.world import i2c_sensors
from sim.world.hardware import Fault
from sim.world.i2c_bus import FakeI2cBus
from sim.world.i2c_sensors import BenchI2c
from stratoecho import wire
from stratoecho.wire import Kind
from stratoecho.wire.content import decode_content, encode_content, reading_field, readings_of
from tests.fakes import RecordingRadio

ROOT = Path(__file__).resolve().parent.parent
DRIVER, SIMULATOR = "tests.fake_sensor.driver", "tests.fake_sensor.bench"
SKIP = 3600.0  # flight seconds past any driver's back-off


@pytest.fixture
def registries(monkeypatch):
    """The registries as they were before the test: what it registers goes with it."""
    monkeypatch.setattr(device_profiles, "PROFILES", dict(device_profiles.PROFILES))
    monkeypatch.setattr(device_profiles, "_loaded", set(device_profiles._loaded))
    monkeypatch.setattr(i2c_sensors, "SIMULATORS", dict(i2c_sensors.SIMULATORS))
    for module in (DRIVER, SIMULATOR):
        monkeypatch.delitem(sys.modules, module, raising=False)
    yield
    for module in (DRIVER, SIMULATOR):  # imported again, it registers again
        sys.modules.pop(module, None)


def fake_config(**devices) -> PayloadConfig:
    return PayloadConfig.model_validate({"devices": {"drivers": [DRIVER], "gps": None,
                                                     "fake_co2": {"address": 0x61}, **devices}})


def test_the_built_in_sensors_are_registered_with_a_simulator_each():
    assert device_names() == ("bme280", "bme280_box", "ina219")
    assert set(device_names()) <= set(i2c_sensors.SIMULATORS)
    assert device_profile("ina219").kept == ("batt_mv",) and device_profile("bme280_box").kept == ()


@pytest.mark.parametrize("name", ["payload.pi.toml", "payload.sim.toml", "payload.network.toml"])
def test_the_shipped_configurations_fit_the_sensors_they_did(name):
    sensors = load_config(ROOT / "config" / name).devices.sensors()
    assert {n: (t.bus, t.address) for n, t in sensors.items()} == {
        "bme280": (1, 0x76), "bme280_box": (1, 0x77), "ina219": (1, 0x40)}
    assert sensors["ina219"].shunt_ohms == 0.1 and sensors["ina219"].max_amps == 3.2


def test_an_unknown_table_or_driver_is_refused_by_a_message_naming_what_there_is(registries):
    with pytest.raises(ValidationError, match="no sensor 'fake_co2' is registered: the registered ones are "
                                              "bme280, bme280_box, ina219; a sensor of your own is its driver"):
        PayloadConfig.model_validate({"devices": {"fake_co2": {"address": 0x61}}})
    with pytest.raises(ValidationError, match="no driver module 'my_pkg.co2' on the Python path"):
        PayloadConfig.model_validate({"devices": {"drivers": ["my_pkg.co2"]}})
    with pytest.raises(ValueError, match="unknown device 'fake_co2'; one of gps, camera, i2c, radio, bme280, "
                                         "bme280_box, ina219"):
        Fault.parse("fake_co2:unplug@3m")


def test_a_profile_the_rest_could_not_tell_apart_is_refused(registries):
    bme280 = device_profile("bme280")
    for name in ("mode", "radio", "drivers", "Bad-Name"):  # a health field's, a part's, a key's, no name
        with pytest.raises(ValueError, match="a sensor's name is"):
            register_device(replace(bme280, name=name))
    with pytest.raises(ValueError, match="kept .'co2_ppm',. names values it does not give"):
        register_device(replace(bme280, name="co2", kept=("co2_ppm",)))
    with pytest.raises(ValueError, match="sensor 'bme280' is registered already"):
        register_device(replace(bme280, kept=()))
    for value in ("CO2", "co2,ppm", "co2=ppm", ""):  # its values go on air as name=value pairs
        with pytest.raises(ValueError, match="a value's name is"):
            register_device(replace(bme280, name="co2", gives=(value,), kept=()))


def test_every_status_goes_in_the_health_record_and_any_ground_reads_it(monkeypatch):
    statuses = {"gps": "ok", "bme280": "absent", "fake_co2": "stuck", "dust": "ok"}
    fields = wire.device_status_fields(statuses)
    assert fields == {"gps": "ok", "bme280": "absent", "devices": "fake_co2:stuck,dust:ok"}
    body = encode_content(Kind.HEALTH, fields)
    assert wire.device_statuses(decode_content(Kind.HEALTH, body)) == statuses
    monkeypatch.delitem(wire.HEALTH_FIELDS, 27)  # a ground from before the key: the text, as it came
    assert decode_content(Kind.HEALTH, body)["field_27"] == "fake_co2:stuck,dust:ok"


def test_a_makers_values_go_in_the_health_record_and_any_ground_reads_them(monkeypatch):
    values = {"co2_ppm": 412.0, "dust_ugm3": 7.25, "uv_index": math.nan, "count": 1234567.0, "lux": math.inf}
    fields = {"readings": reading_field(values)}
    assert fields["readings"] == "co2_ppm=412,dust_ugm3=7.25,count=1.23457e+06"  # no reading: left out
    body = encode_content(Kind.HEALTH, fields)
    assert readings_of(decode_content(Kind.HEALTH, body)) == {"co2_ppm": 412.0, "dust_ugm3": 7.25, "count": 1234570.0}
    assert reading_field({}) == "" and readings_of({}) == {} and readings_of({"readings": 5}) == {}
    # What a ground cannot read as NAME=NUMBER is passed over, not a failure.
    assert readings_of({"readings": "co2_ppm=412,=3,dust,uv=nan,t=inf,x=1e999,rh=55"}) == {"co2_ppm": 412.0, "rh": 55.0}
    monkeypatch.delitem(wire.HEALTH_FIELDS, 28)  # a ground from before the key: the text, as it came
    assert decode_content(Kind.HEALTH, body)["field_28"] == fields["readings"]


def test_the_air_plan_counts_a_makers_sensor_in_the_health_record(registries):
    plain = PayloadConfig.model_validate({"devices": {"gps": None}})
    with_co2 = fake_config()
    grown = health_body_bytes(with_co2) - health_body_bytes(plain)
    longest = {"devices": "fake_co2:impossible", "readings": reading_field({"co2_ppm": -1234567.0})}
    assert grown >= len(encode_content(Kind.HEALTH, longest)) - 1  # its map's own head is counted already
    assert health_body_bytes(plain) == HEALTH_BODY_BYTES


def test_a_table_leaves_its_part_out_with_fitted_false_and_two_parts_cannot_share_an_address():
    cfg = PayloadConfig.model_validate({"devices": {"bme280_box": {"fitted": False}, "camera": {"fitted": False}}})
    assert list(cfg.devices.sensors()) == ["bme280", "ina219"] and cfg.devices.camera is None
    assert PayloadConfig.model_validate(cfg.model_dump()) == cfg  # `payload run`'s round trip keeps it out
    with pytest.raises(ValidationError, match="bme280 and ina219 are both at 0x40 on bus 1"):
        PayloadConfig.model_validate({"devices": {"bme280": {"address": 0x40}}})


def fake_bus(world_ppm: float = 415.0):
    from tests.fake_sensor.bench import FakeCo2Chip

    chip = FakeCo2Chip(world_ppm)
    return FakeI2cBus({0x61: chip}), chip


def test_the_payload_reads_a_makers_sensor_it_is_told_of_in_the_configuration(registries):
    cfg = fake_config()
    assert list(cfg.devices.sensors()) == ["bme280", "bme280_box", "ina219", "fake_co2"]
    assert cfg.devices.fake_co2.offset_ppm == 0.0  # its table's own key, its default
    bus, chip = fake_bus()
    t = [0.0]
    sensors = HardwareSensors(Devices(cfg.devices, bus_opener=lambda n: bus, clock=lambda: t[0]), follow_gps=False)
    r = sensors.read()
    assert r.status == {"bme280": "absent", "bme280_box": "absent", "ina219": "absent", "fake_co2": "ok"}
    assert 415 <= r.extra["co2_ppm"] <= 418 and fresh(r).extra == r.extra
    bus.unplug(0x61)  # its connector shakes loose
    r = sensors.read()
    assert r.status["fake_co2"] == "i2c_error"
    assert 415 <= r.extra["co2_ppm"] <= 418  # kept, as its profile says, for what judges its age by the status
    assert "co2_ppm" not in fresh(r).extra  # and never on air as a measurement
    bus.replug(0x61)
    chip.ppm, t[0] = 900.0, t[0] + SKIP
    r = sensors.read()
    assert r.status["fake_co2"] == "ok" and r.extra["co2_ppm"] >= 900


def test_its_status_goes_down_in_the_health_record_and_the_ground_reads_it(registries, tmp_path):
    cfg = fake_config(bme280=None, bme280_box=None, ina219=None)
    bus, _ = fake_bus()
    clock = Clock(speedup=1e6)
    sensors = HardwareSensors(Devices(cfg.devices, bus_opener=lambda n: bus, clock=clock.elapsed_s),
                              follow_gps=False, now=clock.now)
    d = build_onboard(cfg, sensors, RecordingRadio(), clock, None, tmp_path / "data")
    try:
        d.daemon.run_once("beacon")  # the beacon reads the sensors and notes each status
        d.daemon.run_once("health")
        (q,) = d.parts.store.queue.queued(limit=5, kinds=(Kind.HEALTH,))
        fields = wire.Record.from_body(Kind.HEALTH, q.boot, q.seq, q.payload).content  # as a ground decodes it
        assert fields["devices"] == "fake_co2:ok" and "fake_co2" not in fields
        assert wire.device_statuses(fields) == {"fake_co2": "ok"}
        assert 415 <= readings_of(fields)["co2_ppm"] <= 418  # and what it measured, by its profile's name
        bus.unplug(0x61)
        d.daemon.run_once("beacon")
        events = [wire.Record.from_body(Kind.EVENT, e.boot, e.seq, e.payload).text
                  for e in d.parts.store.queue.queued(limit=20, kinds=(Kind.EVENT,))]
        assert "device fake_co2: ok -> i2c_error" in events  # at once, as any device's
        d.daemon.run_once("health")
        latest = max(d.parts.store.queue.queued(limit=5, kinds=(Kind.HEALTH,)), key=lambda h: h.seq)
        fields = wire.Record.from_body(Kind.HEALTH, latest.boot, latest.seq, latest.payload).content
        assert wire.device_statuses(fields)["fake_co2"] == "i2c_error"
        assert "readings" not in fields  # its last good value is not a measurement of now
    finally:
        d.parts.store.close()


def test_the_bench_builds_its_buses_from_the_configuration_and_faults_any_sensor(registries):
    cfg = fake_config(bme280_box=None)
    i2c_sensors.load_simulators([SIMULATOR])
    bench = BenchI2c(cfg.devices, seed=1)
    assert sorted(bench.buses[1].devices) == [0x40, 0x61, 0x76]  # no box sensor: none simulated
    assert Fault.parse("fake_co2:unplug@3m-5m") == Fault("fake_co2", "unplug", 180.0, 300.0)
    assert bench.fault("fake_co2", "unplug", True) and not bench.fault("bme280_box", "unplug", True)
    with pytest.raises(OSError):
        bench.open(1).read_byte_data(0x61, 0x0F)
    with pytest.raises(FileNotFoundError):
        bench.open(3)


@pytest.mark.slow
def test_sim_fly_flies_it_and_its_unplugging_shows_as_its_status(registries, tmp_path, monkeypatch):
    """The real bench: the payload in its own process finds the driver and the simulator by the
    configuration's names (on its Python path), and the ground hears what they did."""
    # Where a maker's modules are found, for every process the flight starts.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    config = tmp_path / "co2.toml"
    config.write_text(f'[devices]\ndrivers = ["{DRIVER}"]\n[devices.fake_co2]\naddress = 0x61\noffset_ppm = 5.0\n'
                      f'[schedule]\nhealth_s = 60.0\n[sim]\nsimulators = ["{SIMULATOR}"]\n', encoding="utf-8")
    out = tmp_path / "flight"
    rc = sim_main(["fly", "--out", str(out), "--no-persona", "--config", str(config), "--minutes", "8",
                   "--speedup", "max", "--fault", "fake_co2:unplug@3m-5m", "--quiet"])
    assert rc == 0, (out / "payload.log").read_text()[-3000:]
    with sqlite3.connect(out / "ground.db") as db:
        rows = db.execute("SELECT created, data FROM records WHERE kind = 'health' ORDER BY created").fetchall()
    statuses = [wire.device_statuses(json.loads(data)).get("fake_co2") for _, data in rows]
    assert statuses[0] == "ok" and {"i2c_error", "absent"} & set(statuses), statuses
    assert statuses[-1] == "ok", statuses  # plugged back in at 5 min, found again after the back-off
    ppm = [readings_of(json.loads(data)).get("co2_ppm") for _, data in rows]
    assert all(v is None for v, s in zip(ppm, statuses) if s != "ok"), (ppm, statuses)  # no value while unplugged
    assert all(300 < v < 5000 for v, s in zip(ppm, statuses) if s == "ok"), ppm  # the bench's air, read down
    faults = json.loads((out / "report.json").read_text())["faults"]["by_device"]
    assert {f["device"] for f in faults} == {"fake_co2"} and all(f["ok_again_s"] for f in faults)
