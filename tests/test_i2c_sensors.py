"""BME280 / INA219 drivers against the register-level fake bus (sim.world.i2c_bus)."""

from __future__ import annotations

import errno

import pytest

from payload.parts.i2c_sensors import (
    Backoff,
    Bme280,
    Bme280Calibration,
    Ina219,
    bme280_compensate_p,
    bme280_compensate_t,
    ina219_calibration,
    swap16,
)
from sim.world.i2c_bus import DATASHEET_CALIBRATION, Bme280Device, FakeI2cBus, Ina219Device, calibration_bytes
from tests.fakes import FakeClock


def no_sleep(_s: float) -> None:
    pass


def make_bme(dev: Bme280Device, **kw):
    bus = FakeI2cBus({0x76: dev})
    clock = FakeClock()
    kw.setdefault("backoff", Backoff(initial_s=1.0, factor=2.0, max_s=8.0))
    return bus, clock, Bme280(bus, 0x76, clock=clock, sleep=no_sleep, **kw)


def make_ina(dev: Ina219Device, **kw):
    bus = FakeI2cBus({0x40: dev})
    clock = FakeClock()
    kw.setdefault("backoff", Backoff(initial_s=1.0, factor=2.0, max_s=8.0))
    return bus, clock, Ina219(bus, 0x40, clock=clock, **kw)


# --- BME280 compensation --------------------------------------------------------------


def test_datasheet_worked_example():
    # Bosch BMP280 datasheet BST-BMP280-DS001, 3.12 "Calculating pressure and temperature"
    # (same T/P formulas and trimming layout as the BME280): dig_T1..3 = 27504, 26435,
    # -1000; dig_P1..9 = 36477, -10685, 3024, 2855, 140, -7, 15500, -14600, 6000;
    # adc_T = 519888, adc_P = 415148 -> t_fine = 128422, T = 25.08 degC, P = 100653.27 Pa.
    # (The table's P comes from the floating-point formula; the int64 version gives
    # 25767233 / 256 = 100653.25 Pa, within its 1/256 Pa resolution and rounding.)
    c = DATASHEET_CALIBRATION
    cal = Bme280Calibration(**c)
    t_centi, t_fine = bme280_compensate_t(519888, cal)
    assert (t_centi, t_fine) == (2508, 128422)
    p = bme280_compensate_p(415148, t_fine, cal) / 256
    assert p == pytest.approx(100653.27, abs=0.05)


def test_worked_example_through_the_bus():
    dev = Bme280Device(calibration=DATASHEET_CALIBRATION, noise_lsb=0)
    dev.set_raw(519888, 415148, 0x6000)
    _, _, bme = make_bme(dev)
    r = bme.read()
    assert r.status == "ok", r.error
    assert r.raw[:2] == (519888, 415148)
    assert r.temperature_c == 25.08
    assert r.pressure_hpa == pytest.approx(1006.5327, abs=0.0005)
    assert 0 <= r.humidity_pct <= 100


def test_calibration_decoding_signs_and_h4_h5_nibbles():
    cal = dict(DATASHEET_CALIBRATION, H2=-5, H4=-349, H5=-30, H6=-7, H1=200, H3=255)
    b88, be1 = calibration_bytes(cal)
    # H4 = 0xEA3 (-349): 0xE4 = 0xEA, 0xE5 low nibble = 0x3; H5 = 0xFE2 (-30): 0xE5 high
    # nibble = 0x2, 0xE6 = 0xFE.
    assert be1[3:6] == bytes([0xEA, 0x23, 0xFE])
    decoded = Bme280Calibration.from_registers(list(b88), list(be1))
    assert decoded == Bme280Calibration(**cal)
    assert Bme280Calibration.from_registers(*calibration_bytes(DATASHEET_CALIBRATION)).T3 == -1000


@pytest.mark.parametrize(
    "t, p, h",
    [(-40.0, 180.0, 5.0), (25.0, 1013.25, 50.0), (-60.0, 10.0, 1.0), (30.0, 1050.0, 95.0)],
)
def test_round_trip_physical_values(t, p, h):
    dev = Bme280Device(t, p, h, noise_lsb=0)
    _, _, bme = make_bme(dev)
    r = bme.read()
    assert r.status == "ok", r.error
    # temperature resolves to 0.01 degC, pressure to ~0.2 Pa per ADC step, humidity
    # to ~0.01 %; the fake inverts the float formulas, the driver runs the integer ones.
    assert r.temperature_c == pytest.approx(t, abs=0.02)
    assert r.pressure_hpa == pytest.approx(p, abs=0.02)
    assert r.humidity_pct == pytest.approx(h, abs=0.05)


def test_driver_protocol_id_reset_forced_mode():
    dev = Bme280Device(noise_lsb=0)
    bus, _, bme = make_bme(dev)
    bme.read()
    bme.read()
    assert dev.resets == 2  # power-on plus one soft reset at init
    assert dev.conversions == 2  # one forced conversion per read
    assert dev.regs[0xF4] & 0x3 == 0  # back in sleep mode after each conversion
    assert dev.regs[0xF2] == 0b001  # humidity x1


def test_wrong_chip_id_is_absent():
    dev = Bme280Device()
    dev.regs[0xD0] = 0x58  # a BMP280
    dev.power_on_reset = lambda: None  # keep the wrong id through the soft reset
    _, _, bme = make_bme(dev)
    r = bme.read()
    assert r.status == "absent" and "0x58" in r.error
    assert r.counters.absent == 1


# --- INA219 ---------------------------------------------------------------------------


def test_ina219_calibration_ti_example():
    # TI SBOS448 8.5.1: 0.1 ohm shunt, Current_LSB 100 uA -> Cal = 4096, Power_LSB 2 mW.
    cal, current_lsb, power_lsb = ina219_calibration(0.1, 32768 * 100e-6)
    assert cal == 4096
    assert current_lsb == pytest.approx(100e-6)
    assert power_lsb == pytest.approx(2e-3)
    cal, _, _ = ina219_calibration(0.1, 3.0)  # 0.04096 / (3/32768 * 0.1) = 4473.9 -> 4472 (even)
    assert cal == 4472


def test_swap16():
    assert swap16(0x1234) == 0x3412
    assert swap16(swap16(0xBEEF)) == 0xBEEF


def test_smbus_word_is_byte_swapped_and_driver_undoes_it():
    dev = Ina219Device(bus_v=12.0, shunt_mv=50.0, noise_lsb=0)
    bus, _, ina = make_ina(dev, max_amps=32768 * 100e-6)
    # INA219 power-on config 0x399F goes out MSB first: SMBus word reads it as 0x9F39.
    assert bus.read_word_data(0x40, 0x00) == 0x9F39
    r = ina.read()
    assert r.status == "ok", r.error
    assert dev.regs[0x05] == 4096  # calibration written the right way round
    assert r.bus_v == pytest.approx(12.0)
    assert r.shunt_mv == pytest.approx(50.0)
    assert r.current_a == pytest.approx(0.5)  # 50 mV / 0.1 ohm
    assert r.power_w == pytest.approx(6.0)
    assert r.conversion_ready and not r.overflow
    # bus register: 12 V / 4 mV = 3000 in bits 15..3, CNVR in bit 1
    assert r.raw[1] == (3000 << 3) | 0x2
    assert bus.read_word_data(0x40, 0x02) == swap16((3000 << 3) | 0x2)


def test_negative_current():
    dev = Ina219Device(bus_v=7.4, shunt_mv=-12.5, noise_lsb=0)
    _, _, ina = make_ina(dev, max_amps=32768 * 100e-6)
    r = ina.read()
    assert r.status == "ok", r.error
    assert r.shunt_mv == pytest.approx(-12.5)
    assert r.raw[0] == (-1250) & 0xFFFF
    assert r.current_a == pytest.approx(-0.125)
    assert r.power_w == pytest.approx(0.125 * 7.4, abs=0.002)


# --- faults ---------------------------------------------------------------------------


def test_nack_is_oserror_121_like_smbus2():
    bus = FakeI2cBus()
    with pytest.raises(OSError) as e:
        bus.read_byte_data(0x76, 0xD0)
    assert e.value.errno == errno.EREMOTEIO == 121


def test_bme280_unplug_backoff_and_recovery():
    dev = Bme280Device()
    bus, clock, bme = make_bme(dev)
    assert bme.read().status == "ok"
    bus.unplug(0x76)
    r = bme.read()
    assert r.status == "i2c_error" and r.counters.i2c_errors == 1
    # within the 1 s back-off the bus is not touched
    before = bus.transfers
    r = bme.read()
    assert r.status == "i2c_error" and r.counters.skipped == 1 and bus.transfers == before
    clock.t += 1.0
    r = bme.read()  # re-init attempt fails: chip does not answer
    assert r.status == "absent" and r.counters.absent == 1
    clock.t += 1.0  # next back-off is 2 s
    assert bme.read().counters.skipped == 2
    bus.replug(0x76)
    assert bme.read().counters.skipped == 3  # still waiting
    clock.t += 1.0
    r = bme.read()
    assert r.status == "ok", r.error
    assert r.counters.reinits == 2
    assert r.temperature_c == pytest.approx(20.0, abs=0.05)


def test_backoff_policy_caps():
    b = Backoff(initial_s=1.0, factor=2.0, max_s=8.0)
    assert [b.delay_s(n) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert Backoff.none().delay_s(5) == 0.0


def test_bme280_stuck_then_reinitialised():
    dev = Bme280Device(noise_lsb=3)
    _, clock, bme = make_bme(dev, stuck_after=4)
    assert [bme.read().status for _ in range(6)] == ["ok"] * 6
    dev.stick()
    # the last healthy read is the first of the run of 4 identical raw triples
    statuses = [bme.read().status for _ in range(3)]
    assert statuses == ["ok", "ok", "stuck"]
    assert bme.counters.stuck == 1
    dev.unstick()
    clock.t += 1.0
    r = bme.read()
    assert r.status == "ok" and r.counters.reinits == 2


def test_a_chip_still_stuck_after_its_reset_stays_stuck_until_its_values_move():
    dev = Ina219Device(bus_v=3.9, shunt_mv=20.0, noise_lsb=2)
    _, clock, ina = make_ina(dev, stuck_after=4)
    [ina.read() for _ in range(3)]
    dev.stick()
    assert [ina.read().status for _ in range(5)][-1] == "stuck"
    for _ in range(3):  # each back-off ends in a re-initialisation that finds the same frozen value
        clock.t += 10.0
        assert ina.read().status == "stuck"
    dev.unstick()
    clock.t += 10.0
    assert ina.read().status == "ok"


def test_bme280_impossible_values():
    dev = Bme280Device()
    _, clock, bme = make_bme(dev)
    dev.set_impossible()
    r = bme.read()
    assert r.status == "impossible"
    assert r.pressure_hpa > 1100
    assert r.counters.impossible == 1
    dev.set_impossible(False)
    clock.t += 1.0
    assert bme.read().status == "ok"


def test_bme280_skipped_conversion_is_impossible():
    dev = Bme280Device()
    _, _, bme = make_bme(dev)
    bme.osrs = (0, 1, 1)  # temperature skipped: chip leaves 0x80000
    r = bme.read()
    assert r.status == "impossible" and r.raw[0] == 0x80000


def test_ina219_faults_and_independence():
    """Two chips on one bus: one unplugged does not disturb the other."""
    bme_dev, ina_dev = Bme280Device(), Ina219Device(bus_v=5.0, shunt_mv=20.0)
    bus = FakeI2cBus({0x76: bme_dev, 0x40: ina_dev})
    clock = FakeClock()
    bme = Bme280(bus, clock=clock, sleep=no_sleep, backoff=Backoff.none())
    ina = Ina219(bus, clock=clock, backoff=Backoff.none(), stuck_after=3)
    bus.unplug(0x40)
    assert ina.read().status == "absent"
    assert bme.read().status == "ok"
    bus.replug(0x40)
    assert ina.read().status == "ok"
    ina_dev.set_impossible()
    r = ina.read()
    assert r.status == "impossible" and r.bus_v > 26
    ina_dev.set_impossible(False)
    ina_dev.stick()
    statuses = [ina.read().status for _ in range(3)]
    assert statuses == ["ok", "ok", "stuck"]
    assert ina.counters.absent == 1 and ina.counters.impossible == 1 and ina.counters.stuck == 1
    assert bme.read().status == "ok"


def test_ina219_lost_calibration_after_power_cycle_is_restored():
    dev = Ina219Device(bus_v=5.0, shunt_mv=10.0, noise_lsb=0)
    bus, clock, ina = make_ina(dev, max_amps=32768 * 100e-6)
    assert ina.read().current_a == pytest.approx(0.1)
    bus.unplug(0x40)
    assert ina.read().status == "i2c_error"
    bus.replug(0x40, power_cycled=True)  # calibration register back to 0
    clock.t += 1.0
    r = ina.read()
    assert r.status == "ok" and r.current_a == pytest.approx(0.1)
