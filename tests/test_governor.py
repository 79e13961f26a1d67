"""The daemon under battery and temperature traces: modes, what runs in each, the heater, the
LED, a reboot that starts safe, and the ground's floor."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from gpiozero.pins.mock import MockFactory

from payload.assembly import build_onboard
from payload.clock import Clock
from payload.config import PayloadConfig
from payload.parts.outputs import BatteryHeater, StatusLed
from payload.parts.sensors import Readings
from payload.producers import Fitted
from stratoecho import wire
from stratoecho.wire import Kind, uplink
from tests.fakes import RecordingRadio

GOOD = Readings(time=datetime(2026, 6, 21, 9, tzinfo=timezone.utc), lat=52.7, lon=-2.7, alt_m=20.0, sats=9,
                temp_c=15.0, pressure_hpa=1010.0, batt_mv=4000, phase="unknown", box_temp_c=15.0, batt_ma=300.0)


class TraceSensors:
    """Readings from a trace the test writes to; the daemon reads the latest."""

    battery_temp_fitted = True

    def __init__(self):
        self.now = GOOD

    def read(self) -> Readings:
        return self.now

    def restart(self) -> None:
        pass


class VirtualClock(Clock):
    """Flight time the test moves by hand."""

    def __init__(self):
        super().__init__(speedup=1.0)
        self.t = 0.0

    def elapsed_s(self) -> float:
        return self.t


def make(tmp_path, **kw):
    clock, sensors = VirtualClock(), TraceSensors()
    d = build_onboard(PayloadConfig(), sensors, RecordingRadio(), clock, None, tmp_path / "data", **kw)
    return d, clock, sensors


def run(d, clock, sensors, readings: Readings, seconds: float, step_s: float = 10.0) -> list[str]:
    modes = []
    end = clock.t + seconds
    while clock.t < end:
        clock.t += step_s
        sensors.now = readings
        d.daemon.run_once("beacon")
        modes.append(d.parts.flight.governor.mode.value)
    return modes


def events(d) -> list[str]:
    out = []
    for q in d.parts.store.queue.queued(limit=500, kinds=(Kind.EVENT,)):
        out.append(wire.Record.from_body(wire.Kind.EVENT, q.boot, q.seq, q.payload).text)
    return out


def test_a_cold_soak_steps_down_the_ladder_sheds_thinking_first_and_keeps_the_beacon(tmp_path):
    d, clock, sensors = make(tmp_path)
    assert run(d, clock, sensors, GOOD, 120)[-1] == "nominal"  # a fresh boot proves itself first
    assert d.parts.flight.governor.runs("think") and d.parts.flight.governor.runs("beacon")
    beacons = d.parts.beacon.counts.telemetry_queued
    cold = run(d, clock, sensors, replace(GOOD, box_temp_c=-12.0), 60)
    assert cold[-1] == "low_power" and not d.parts.flight.governor.runs("think") and d.parts.flight.governor.runs("capture")
    frozen = run(d, clock, sensors, replace(GOOD, box_temp_c=-25.0, batt_mv=3450), 60)
    assert frozen[-1] == "survival" and not d.parts.flight.governor.runs("capture") and d.parts.flight.governor.runs("beacon")
    assert d.parts.beacon.counts.telemetry_queued - beacons == 12  # every beacon still went out
    assert d.parts.cadence.beacon_s == 20.0  # stretched, never stopped
    # Recovery: one rung at a time, each proven for a minute.
    back = run(d, clock, sensors, GOOD, 200)
    assert back.index("nominal") > back.index("low_power")
    texts = [e for e in events(d) if e.startswith("mode")]
    assert texts == ["mode low_power -> nominal (readings recovered)",
                     "mode nominal -> low_power (battery_temp_low)",
                     "mode low_power -> survival (battery_v_critical, battery_temp_critical)",
                     "mode survival -> low_power (readings recovered)",
                     "mode low_power -> nominal (readings recovered)"]


def test_a_sag_under_load_shorter_than_the_dwell_changes_nothing(tmp_path):
    d, clock, sensors = make(tmp_path)
    run(d, clock, sensors, GOOD, 120)
    for _ in range(5):  # a transmitter's 5 s sag every 30 s
        run(d, clock, sensors, replace(GOOD, batt_mv=3300), 5, step_s=5)
        run(d, clock, sensors, GOOD, 25, step_s=5)
    assert d.parts.flight.governor.mode.value == "nominal"


def test_flapping_at_a_threshold_does_not_flap_the_mode(tmp_path):
    d, clock, sensors = make(tmp_path)
    run(d, clock, sensors, GOOD, 120)
    modes = []
    for i in range(60):
        v = 3560 if i % 2 else 3540  # either side of the 3.55 V threshold, every 10 s
        modes += run(d, clock, sensors, replace(GOOD, batt_mv=v), 10)
    changes = sum(a != b for a, b in zip(modes, modes[1:]))
    assert changes <= 1


def test_invalid_readings_count_as_low_and_never_let_the_mode_climb(tmp_path):
    d, clock, sensors = make(tmp_path)
    run(d, clock, sensors, GOOD, 120)
    broken = replace(GOOD, box_temp_c=math.nan)  # the battery thermometer fell off its bus
    assert run(d, clock, sensors, broken, 120)[-1] == "low_power"
    assert any("battery_temp_invalid" in e for e in events(d))


def test_an_unplanned_reboot_starts_safe_and_remembers_the_phase(tmp_path):
    d, clock, sensors = make(tmp_path)
    run(d, clock, sensors, GOOD, 120)
    for _ in range(40):  # climbing at 5 m/s
        clock.t += 10
        sensors.now = replace(GOOD, alt_m=sensors.now.alt_m + 50, pressure_hpa=900.0)
        d.daemon.run_once("beacon")
    assert d.parts.flight.governor.mode.value == "nominal" and d.parts.flight.governor.phase.value == "ascent"
    d.parts.store.close()  # the power goes: no shutdown, no clean mark
    d2, _, _ = make(tmp_path)
    assert d2.parts.flight.governor.unplanned_reboot and d2.parts.flight.governor.mode.value == "low_power"
    assert d2.parts.flight.governor.phase.value == "ascent"
    d2.start()
    d2.daemon.producers_stop.set()
    assert any("unplanned reboot, starting in low_power" in e for e in events(d2))
    d2.daemon.shutdown()
    d3, _, _ = make(tmp_path)  # after a clean stop: the mode it had
    assert not d3.parts.flight.governor.unplanned_reboot


def test_the_ground_can_ask_for_a_more_frugal_mode_but_not_overrule_a_cold_battery(tmp_path):
    d, clock, sensors = make(tmp_path)
    run(d, clock, sensors, GOOD, 120)
    d.parts.flight.governor.set_ground_floor("low_power")
    assert d.parts.flight.governor.mode.value == "low_power" and not d.parts.flight.governor.runs("think")
    d.parts.flight.governor.set_ground_floor("nominal")
    assert d.parts.flight.governor.mode.value == "nominal"
    run(d, clock, sensors, replace(GOOD, box_temp_c=-25.0), 60)
    d.parts.flight.governor.set_ground_floor("nominal")
    assert d.parts.flight.governor.mode.value == "survival"
    assert uplink.PowerMode.SURVIVAL == 2  # the SET_MODE values the daemon maps to floors


def test_the_heater_and_the_led_follow_the_battery_and_the_mode(tmp_path):
    pins = MockFactory()
    heater = BatteryHeater(24, pin_factory=pins, max_duty=1.0, clock=lambda: 0.0)
    led = StatusLed(23, pin_factory=pins, time_scale=0.001)
    d, clock, sensors = make(tmp_path, fitted=Fitted(heater=heater, led=led))
    run(d, clock, sensors, GOOD, 120)
    assert not pins.pin(24).state and d.parts.beacon._led_pattern == "nominal"
    run(d, clock, sensors, replace(GOOD, box_temp_c=-15.0), 60)
    assert pins.pin(24).state and d.parts.beacon._led_pattern == "low_power"
    d.daemon.run_once("health")
    (h,) = [q for q in d.parts.store.queue.queued(limit=50, kinds=(Kind.HEALTH,))]
    fields = wire.Record.from_body(wire.Kind.HEALTH, h.boot, h.seq, h.payload).content
    assert fields["heater"] == "on:cold" and fields["mode"] == "low_power" and fields["box_temp_c"] == -15.0
    run(d, clock, sensors, replace(GOOD, box_temp_c=-15.0, batt_mv=3300), 10)
    assert not pins.pin(24).state  # a sagging battery is not spent on heat
    d.daemon.shutdown()
    assert not pins.pin(24).state


def test_a_loop_that_keeps_running_stays_current_for_the_watchdog(tmp_path):
    """Each run of a daemon loop restarts its liveness silence, not only its allowance: a
    beacon that runs every period must never be reported hung (it was, one allowance after
    start, and systemd's watchdog would have killed a healthy payload every few minutes)."""
    from payload.watchdog import Liveness

    t = {"now": 0.0}
    live = Liveness(lambda: t["now"])
    d, clock, sensors = make(tmp_path, liveness=live)
    beacon = d.daemon.loops["beacon"]
    allowance = d.daemon._allowance_s(beacon, 10.0, 0.0)
    live.register("beacon", allowance)  # as _every does when the loop starts
    for run in range(1, 50):  # far past one allowance, a run every 10 s
        t["now"] = run * 10.0
        d.daemon._ran(beacon, 10.0)
        assert live.overdue() == []
    t["now"] += allowance + 1.0  # then the loop stops running: now it is hung
    assert live.overdue() == ["beacon"]


def test_a_battery_monitor_that_cannot_be_read_counts_as_low_and_energy_keeps_counting(tmp_path):
    """The sensors keep the INA219's last good voltage for the telemetry when it fails; the mode
    ladder must not take it for a fresh reading (it stayed nominal on 4,168 mV), and the energy
    estimate goes on at the last measured load instead of standing still."""
    d, clock, sensors = make(tmp_path)
    run(d, clock, sensors, GOOD, 120)
    used = d.parts.flight.governor.used_wh
    failed = replace(GOOD, batt_ma=math.nan, status={"ina219": "i2c_error"})  # batt_mv: the last good value
    assert run(d, clock, sensors, failed, 120)[-1] == "low_power"
    assert any("battery_v_invalid" in e for e in events(d))
    assert d.parts.flight.governor.used_wh - used == pytest.approx(4.0 * 0.3 * 120 / 3600, rel=0.1)


def _climb(d, clock, sensors, seconds: float, lon_step: float = 0.001) -> None:
    """Climbing at 5 m/s and drifting east, the GPS's time moving with the flight's."""
    for _ in range(int(seconds // 10)):
        clock.t += 10
        r = sensors.now
        sensors.now = replace(r, alt_m=r.alt_m + 50, lon=r.lon + lon_step, time=r.time + timedelta(seconds=10))
        d.daemon.run_once("beacon")


def test_the_launch_is_kept_across_a_reboot_for_the_time_aloft_and_the_distance(tmp_path):
    d, clock, sensors = make(tmp_path)
    run(d, clock, sensors, GOOD, 120)
    g = d.parts.flight.governor
    assert g.phase.value == "pre-launch" and g.aloft_s(GOOD.time.timestamp() + 999) == 0.0
    assert g.from_launch_km(GOOD.lat, GOOD.lon + 1) == 0.0  # on the pad: it has gone nowhere
    _climb(d, clock, sensors, 600)
    assert g.phase.value == "ascent" and g.launch is not None
    launched = g.launch["utc"]
    assert GOOD.time.timestamp() < launched < sensors.now.time.timestamp()  # when the detector saw it go
    now = sensors.now.time.timestamp()
    assert g.aloft_s(now) == pytest.approx(now - launched)
    assert g.from_launch_km(sensors.now.lat, sensors.now.lon) > 3.0  # 60 steps of 0.001° east, less the lag
    d.parts.store.close()  # the power goes
    d2, _, _ = make(tmp_path)
    assert d2.parts.flight.governor.launch == g.launch  # the flight's start outlives the boot
    assert d2.parts.flight.governor.aloft_s(now + 60) == pytest.approx(now + 60 - launched)


def test_a_payload_that_wakes_aloft_does_not_know_when_it_launched(tmp_path):
    d, clock, sensors = make(tmp_path)
    sensors.now = replace(GOOD, alt_m=9000.0)  # first boot at 9 km: no pad was seen
    _climb(d, clock, sensors, 300)
    g = d.parts.flight.governor
    assert g.phase.value == "ascent" and g.launch is None
    assert g.aloft_s(sensors.now.time.timestamp()) is None and g.from_launch_km(52.0, 0.0) is None
    assert 0.0 < g.energy_share() <= 1.0
