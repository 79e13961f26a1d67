"""The device registry and the hardware sensors port, over the simulated GPS and I2C bus."""

from __future__ import annotations

import math
import time

from payload.config import PayloadConfig
from payload.parts.devices import Devices, HardwareSensors
from sim.world.gps import FakeUblox, SimFix
from sim.world.i2c_bus import Bme280Device, FakeI2cBus, Ina219Device


def config(gps_port: str) -> PayloadConfig:
    return PayloadConfig.model_validate({
        "sensors": "hardware",
        "devices": {"gps": {"port": gps_port}, "bme280": {"bus": 1, "address": 0x76},
                    "ina219": {"bus": 1, "address": 0x40, "shunt_ohms": 0.1}, "bme280_box": None},
    })


def test_readings_come_from_each_driver_and_a_lost_part_is_a_status_not_a_stop():
    bus = FakeI2cBus()
    bus.attach(0x76, Bme280Device(-40.0, 180.0, 5.0, noise_lsb=0))
    bus.attach(0x40, Ina219Device(bus_v=3.9, shunt_mv=20.0, noise_lsb=0))
    gps = FakeUblox(lambda t: SimFix(52.1, -0.1, 12345.0, sats=9))
    try:
        skip = [0.0]  # real time, plus what the test fast-forwards past back-offs
        devices = Devices(config(gps.port).devices, bus_opener=lambda n: bus, clock=lambda: time.monotonic() + skip[0])
        sensors = HardwareSensors(devices, gps_timeout_s=1.0, follow_gps=False)
        r = None
        for _ in range(20):  # until the GPS has a fix
            r = sensors.read()
            if r.status.get("gps") == "ok":
                break
        assert r.status == {"gps": "ok", "bme280": "ok", "ina219": "ok"}
        assert (round(r.lat, 4), round(r.lon, 4), round(r.alt_m)) == (52.1, -0.1, 12345)
        assert abs(r.temp_c + 40.0) < 0.1 and abs(r.pressure_hpa - 180.0) < 0.1 and r.batt_mv == 3900
        bus.unplug(0x76)  # a connector shakes loose
        r = sensors.read()
        assert r.status["bme280"] != "ok" and r.status["gps"] == "ok"
        assert abs(r.temp_c + 40.0) < 0.1  # the last good value stands in, the status says why
        bus.replug(0x76)
        skip[0] += 120.0  # past the driver's back-off
        for _ in range(3):
            r = sensors.read()
        assert r.status["bme280"] == "ok"
        devices.close()
    finally:
        gps.close()


def test_a_pi_without_i2c_or_gps_still_starts_and_says_what_is_missing(tmp_path):
    def no_bus(n):
        raise FileNotFoundError(f"/dev/i2c-{n}")

    devices = Devices(config(str(tmp_path / "no-such-tty")).devices, bus_opener=no_bus)
    r = HardwareSensors(devices, gps_timeout_s=0.05, follow_gps=False).read()
    assert r.status == {"gps": "no_device", "bme280": "absent", "ina219": "absent"}
    assert math.isnan(r.temp_c) and r.sats == 0
    devices.close()


def test_the_gps_is_followed_on_its_own_thread_so_a_beacon_gets_the_latest_fix_not_a_buffered_one():
    # The module moves north 0.001 degrees a second; after the follower has run a while, a
    # reading must carry a position from the last epoch or so, not from the first ones a
    # beacon-paced reader would find waiting in the UART buffer.
    gps = FakeUblox(lambda t: SimFix(52.0 + 0.001 * t, -0.1, 1000.0), period_s=0.05)
    devices = Devices(config(gps.port).devices, bus_opener=lambda n: FakeI2cBus())
    sensors = HardwareSensors(devices)
    try:
        deadline = time.monotonic() + 10
        r = sensors.read()
        while r.status.get("gps") != "ok" and time.monotonic() < deadline:
            time.sleep(0.05)
            r = sensors.read()
        assert r.status["gps"] == "ok" and r.fix_valid
        time.sleep(1.0)
        r = sensors.read()
        assert abs(r.lat - (52.0 + 0.001 * gps.sim_time_s())) < 0.0005  # within half a second of now
    finally:
        sensors.close()
        gps.close()


def test_the_system_clock_is_set_from_a_trusted_fix_and_checked_again_hourly():
    from payload.parts.gps import system_time_from_gps

    gps = FakeUblox(lambda t: SimFix(52.0, -0.1, 1000.0), period_s=0.05)
    set_to: list[float] = []
    t = [0.0]
    devices = Devices(config(gps.port).devices, bus_opener=lambda n: FakeI2cBus(), clock=lambda: time.monotonic() + t[0])
    sensors = HardwareSensors(devices, follow_gps=False, gps_timeout_s=1.0,
                              clock_from_gps=lambda fix: system_time_from_gps(
                                  fix, set_clock=set_to.append, monotonic=lambda: time.monotonic() + t[0]))
    try:
        deadline = time.monotonic() + 10
        while sensors.clock_result is None or sensors.clock_result.action == "untrusted":
            sensors.read()
            assert time.monotonic() < deadline, sensors.clock_result
        assert sensors.clock_result.action == "set" and len(set_to) == 1  # the fake GPS lives in 2025
        sensors.read()
        assert len(set_to) == 1  # not again within the hour
    finally:
        devices.close()
        gps.close()
