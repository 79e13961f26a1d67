"""Status LED and battery heater on gpiozero MockFactory pins.

Patterns are checked by the pin's state history (MockPin.states), never by wall-clock
durations; the LED plays at ``time_scale`` so a 5 s pattern takes milliseconds. The
heater's clock is a fake the test advances.
"""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payload.parts.outputs import (
    PATTERNS,
    BatteryHeater,
    StatusLed,
    heater_decision,
)
from tests.fakes import FakeClock

LED_PIN, HEATER_PIN = 5, 6
FAST = 0.001  # LED time scale


def states(pin) -> list[bool]:
    return [s.state for s in pin.states]


def expected_edges(name: str, cycles: int) -> list[bool]:
    """The pin states a pattern produces from an off LED: consecutive equal steps merge."""
    out = [False]
    for _ in range(cycles):
        for on, _s in PATTERNS[name]:
            if on != out[-1]:
                out.append(on)
    if out[-1]:
        out.append(False)  # a finished foreground play leaves the LED off
    return out


# ------------------------------------------------------------------ status LED


def test_pattern_table_is_sane():
    for name, steps in PATTERNS.items():
        assert steps, name
        assert all(seconds >= 0 for _on, seconds in steps), name
        if len(steps) > 1:
            assert sum(s for _on, s in steps) > 0, f"{name} would spin"
    # saving power: nominal and low_power are lit for a small fraction of their cycle
    for name, max_duty in (("nominal", 0.02), ("low_power", 0.005)):
        lit = sum(s for on, s in PATTERNS[name] if on)
        assert lit / sum(s for _on, s in PATTERNS[name]) <= max_duty
    assert PATTERNS["survival"] == ((False, 0.0),)
    # SOS: 3 short, 3 long, 3 short marks
    marks = [s for on, s in PATTERNS["landed"] if on]
    assert len(marks) == 9 and marks[0] < marks[3] > marks[6]


@pytest.mark.parametrize("name", ["booting", "nominal", "low_power", "fault", "landed"])
def test_blinking_patterns_toggle_the_pin(mock_factory, name):
    led = StatusLed(LED_PIN, pin_factory=mock_factory, time_scale=FAST)
    pin = mock_factory.pin(LED_PIN)
    led.show(name, cycles=2, background=False)
    assert states(pin) == expected_edges(name, 2)
    assert states(pin).count(True) == 2 * sum(1 for on, _ in PATTERNS[name] if on)
    led.close()


def test_fault_is_a_double_blink(mock_factory):
    led = StatusLed(LED_PIN, pin_factory=mock_factory, time_scale=FAST)
    pin = mock_factory.pin(LED_PIN)
    led.show("FAULT", cycles=1, background=False)
    pin.assert_states([False, True, False, True, False])
    led.close()


@pytest.mark.parametrize("name, lit", [("survival", False), ("SURVIVAL", False), ("off", False), ("on", True)])
def test_steady_patterns_set_the_pin_without_a_thread(mock_factory, name, lit):
    led = StatusLed(LED_PIN, pin_factory=mock_factory)
    before = threading.active_count()
    led.show(name)
    assert led.is_lit is lit and mock_factory.pin(LED_PIN).state is lit
    assert threading.active_count() == before
    led.close()


def test_mode_names_are_accepted(mock_factory):
    led = StatusLed(LED_PIN, pin_factory=mock_factory, time_scale=FAST)
    for mode in ("NOMINAL", "LOW_POWER", "SURVIVAL"):
        led.show(mode, cycles=1, background=False)
        assert led.pattern == mode.lower()
    with pytest.raises(ValueError, match="unknown LED pattern"):
        led.show("party")
    led.close()


def _wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.001)


def test_background_pattern_runs_until_replaced_and_close_stops_it(mock_factory):
    led = StatusLed(LED_PIN, pin_factory=mock_factory, time_scale=FAST)
    pin = mock_factory.pin(LED_PIN)
    led.show("booting")  # returns at once; blinks on its own thread
    _wait_for(lambda: len(pin.states) >= 7)
    seen = states(pin)
    assert all(a != b for a, b in zip(seen, seen[1:])) and seen[:3] == [False, True, False]
    led.show("survival")  # stops the blinking thread before setting the pin
    assert not any(t.name.startswith("status-led-") for t in threading.enumerate())
    n = len(pin.states)
    assert pin.state is False
    time.sleep(0.02)
    assert len(pin.states) == n, "the old pattern kept toggling"
    led.show("low_power")  # long off time: close() must not wait it out
    _wait_for(lambda: pin.state is True or len(pin.states) > n + 1)
    led.close()
    assert not any(t.name.startswith("status-led-") for t in threading.enumerate())


def test_context_manager_closes(mock_factory):
    with StatusLed(LED_PIN, pin_factory=mock_factory, time_scale=FAST) as led:
        led.show("nominal")
    assert not any(t.name.startswith("status-led-") for t in threading.enumerate())


# ------------------------------------------------------------------ heater decision (pure)

LIMITS = dict(on_below_c=-10.0, off_above_c=-5.0, min_battery_mv=3500)
OK_MV = 3900


@pytest.mark.parametrize(
    "temp, was_on, mv, on, reason",
    [
        (-20.0, False, OK_MV, True, "cold"),
        (0.0, True, OK_MV, False, "warm"),
        (-7.0, True, OK_MV, True, "hold"),
        (-7.0, False, OK_MV, False, "hold"),
        (-10.0, False, OK_MV, False, "hold"),  # band edges hold
        (-5.0, True, OK_MV, True, "hold"),
        (-30.0, True, 3499, False, "battery_low"),
        (-30.0, True, None, False, "no_battery"),
        (None, True, OK_MV, False, "no_temperature"),
    ],
)
def test_heater_decision_table(temp, was_on, mv, on, reason):
    d = heater_decision(temp, was_on, mv, **LIMITS)
    assert (d.on, d.reason) == (on, reason)
    assert heater_decision(temp, was_on, mv, **LIMITS).on is on


def test_duty_limit_forces_off():
    assert heater_decision(-30.0, True, OK_MV, duty_ok=False, **LIMITS).reason == "duty_limit"


temps = st.one_of(st.none(), st.floats(-60, 30, allow_nan=False))
mvs = st.one_of(st.none(), st.integers(3000, 4300))


@given(st.lists(st.tuples(temps, mvs), max_size=60), st.booleans())
def test_hysteresis_properties(seq, start_on):
    on = start_on
    for temp, mv in seq:
        new = heater_decision(temp, on, mv, **LIMITS).on
        if mv is None or mv < LIMITS["min_battery_mv"] or temp is None:
            assert new is False  # never on below the floor or without a sensor
        elif LIMITS["on_below_c"] <= temp <= LIMITS["off_above_c"]:
            assert new is on  # never toggles inside the band
        else:
            assert new is (temp < LIMITS["on_below_c"])
        on = new


# ------------------------------------------------------------------ heater on a pin


def make_heater(mock_factory, **kw):
    clock = FakeClock()
    kw.setdefault("max_duty", 1.0)
    h = BatteryHeater(HEATER_PIN, pin_factory=mock_factory, clock=clock, **kw)
    return h, clock, mock_factory.pin(HEATER_PIN)


def test_pin_follows_decision_over_a_temperature_sequence(mock_factory):
    h, clock, pin = make_heater(mock_factory)
    seq = [0.0, -6.0, -9.9, -10.5, -8.0, -5.0, -4.9, -7.0, -12.0, -12.0]
    want = [False, False, False, True, True, True, False, False, True, True]
    got = []
    for temp in seq:
        clock.t += 10
        st_ = h.update(temp, OK_MV)
        got.append(st_.on)
        assert pin.state is st_.on
    assert got == want
    pin.assert_states([False, True, False, True])
    assert h.status().switches == 3


def test_on_time_accounting(mock_factory):
    h, clock, pin = make_heater(mock_factory)
    h.update(-20.0, OK_MV)  # on at t0
    clock.t += 30
    assert h.status().heated_s == pytest.approx(30)
    h.update(0.0, OK_MV)  # off at t0+30
    clock.t += 100
    h.update(0.0, OK_MV)
    assert h.status().heated_s == pytest.approx(30)
    h.update(-20.0, OK_MV)
    clock.t += 15
    h.close()
    assert h.heated_s == pytest.approx(45)
    assert pin.state is False


def test_low_battery_switches_a_running_heater_off(mock_factory):
    h, clock, pin = make_heater(mock_factory)
    assert h.update(-20.0, OK_MV).on
    s = h.update(-20.0, 3400)
    assert (s.on, s.reason) == (False, "battery_low") and pin.state is False
    s = h.update(None, OK_MV)
    assert (s.on, s.reason) == (False, "no_temperature")


def test_duty_cap_per_window(mock_factory):
    h, clock, pin = make_heater(mock_factory, max_duty=0.25, duty_window_s=100.0)
    assert h.update(-20.0, OK_MV).on
    clock.t += 20
    assert h.update(-20.0, OK_MV).on  # 20 s of 25 s used
    clock.t += 10
    s = h.update(-20.0, OK_MV)  # 30 s >= 25 s
    assert (s.on, s.reason) == (False, "duty_limit")
    assert s.window_heated_s == pytest.approx(30)
    clock.t += 50
    assert h.update(-20.0, OK_MV).reason == "duty_limit"  # same window still
    clock.t += 20  # t = 100 s: a new window
    s = h.update(-20.0, OK_MV)
    assert s.on and s.window_heated_s == 0
    clock.t += 150  # on across a window edge: this window gets its own share only
    s = h.status()
    assert s.heated_s == pytest.approx(180) and s.window_heated_s == pytest.approx(50)


def test_bad_limits_rejected(mock_factory):
    with pytest.raises(ValueError):
        BatteryHeater(HEATER_PIN, pin_factory=mock_factory, on_below_c=-5, off_above_c=-10)
    with pytest.raises(ValueError):
        BatteryHeater(HEATER_PIN, pin_factory=mock_factory, max_duty=0)
