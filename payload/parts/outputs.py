"""GPIO outputs through gpiozero: the status LED and the battery heater.

Both take a BCM pin number and an optional gpiozero pin factory (``MockFactory`` in tests,
the default factory on the Pi), as gpiozero's own devices do. The decisions live apart
from the pins: ``PATTERNS`` is data and ``heater_decision`` is a pure function, so they
are tested without GPIO at all, and the classes only carry them out.

Status LED patterns (one per payload mode/state; times in seconds, (on, off) pairs):

    booting    fast blink 0.1/0.1       "software is running", obvious on the bench
    nominal    0.05 on every 5 s        alive, ~1 % duty: costs almost nothing on a flight
    low_power  0.05 on every 30 s       still says "alive" to a recovery team close by
    survival   off                      every milliamp goes to the beacon
    fault      double blink, 2 s cycle  unlike any other pattern at a glance
    landed     SOS (Morse) repeating    a flash catches the eye in a field or a tree
                                        better than a steady light and costs about a
                                        third of steady-on's energy
    off        off

Patterns run on one small background thread per LED that waits on a stop event between
edges (never polls, never sleeps uninterruptibly): ``close()`` or a new ``show()`` ends it
at once. ``time_scale`` shrinks every duration (tests play patterns in milliseconds).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

from gpiozero import LED, DigitalOutputDevice

# --- status LED -----------------------------------------------------------------------

Step = tuple[bool, float]  # (LED on?, seconds)

_DOT, _DASH, _GAP = 0.2, 0.6, 0.2  # Morse: dash = 3 dots, gap inside a letter = 1 dot


def _morse(letters: str) -> tuple[Step, ...]:
    code = {"S": "...", "O": "---"}
    steps: list[Step] = []
    for i, letter in enumerate(letters):
        for mark in code[letter]:
            steps += [(True, _DOT if mark == "." else _DASH), (False, _GAP)]
        steps[-1] = (False, 3 * _DOT) if i < len(letters) - 1 else (False, 7 * _DOT)
    return tuple(steps)


# name -> one cycle of steps, repeated; a single step is a steady state (no thread).
PATTERNS: dict[str, tuple[Step, ...]] = {
    "booting": ((True, 0.1), (False, 0.1)),
    "nominal": ((True, 0.05), (False, 4.95)),
    "low_power": ((True, 0.05), (False, 29.95)),
    "survival": ((False, 0.0),),
    "fault": ((True, 0.15), (False, 0.15), (True, 0.15), (False, 1.55)),
    "landed": _morse("SOS"),
    "recovery": _morse("SOS"),
    "off": ((False, 0.0),),
    "on": ((True, 0.0),),
}


class StatusLed:
    """An LED on ``pin`` showing one named pattern at a time.

    ``show(name)`` accepts the pattern names above and the payload's mode names
    (NOMINAL, LOW_POWER, SURVIVAL) in any case. ``background=False`` plays ``cycles``
    cycles in the caller's thread and returns (like gpiozero's ``blink(n=..,
    background=False)``); the default runs until the next ``show()`` or ``close()``.
    """

    def __init__(self, pin, pin_factory=None, *, time_scale: float = 1.0):
        self._led = LED(pin, pin_factory=pin_factory)
        self.time_scale = time_scale
        self.pattern: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def is_lit(self) -> bool:
        return bool(self._led.is_lit)

    def show(self, name: str, *, cycles: int | None = None, background: bool = True) -> None:
        key = name.lower()
        if key not in PATTERNS:
            raise ValueError(f"unknown LED pattern {name!r}; known: {', '.join(PATTERNS)}")
        self._stop_thread()
        self.pattern = key
        steps = PATTERNS[key]
        if len(steps) == 1:  # steady: set it, no thread
            self._led.value = steps[0][0]
            return
        self._stop.clear()
        if not background:
            self._play(steps, cycles if cycles is not None else 1)
            return
        self._thread = threading.Thread(target=self._play, args=(steps, cycles), name=f"status-led-{key}", daemon=True)
        self._thread.start()

    def _play(self, steps: tuple[Step, ...], cycles: int | None) -> None:
        done = 0
        while cycles is None or done < cycles:
            for on, seconds in steps:
                self._led.value = on
                if self._stop.wait(seconds * self.time_scale):
                    return
            done += 1
        self._led.off()

    def _stop_thread(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self._thread = None

    def close(self) -> None:
        self._stop_thread()
        self._led.close()

    def __enter__(self) -> "StatusLed":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --- battery heater -------------------------------------------------------------------


@dataclass(frozen=True)
class HeaterDecision:
    on: bool
    reason: str  # cold, warm, hold, no_temperature, no_battery, battery_low, duty_limit


def heater_decision(
    temp_c: float | None,
    currently_on: bool,
    battery_mv: float | None,
    *,
    on_below_c: float = -10.0,
    off_above_c: float = -5.0,
    min_battery_mv: float = 3500.0,
    duty_ok: bool = True,
) -> HeaterDecision:
    """Hysteresis with safety floors; pure.

    Off, whatever the temperature, when the battery temperature is unknown (a missing
    sensor must not leave a heater running), the battery voltage is unknown or below
    ``min_battery_mv`` (heating a sagging battery drains it faster and kills the beacon),
    or the duty-cycle budget is spent. Otherwise on below ``on_below_c``, off above
    ``off_above_c``, and unchanged inside the band (both edges included), so the heater
    never chatters around one threshold.
    """
    if temp_c is None:
        return HeaterDecision(False, "no_temperature")
    if battery_mv is None:
        return HeaterDecision(False, "no_battery")
    if battery_mv < min_battery_mv:
        return HeaterDecision(False, "battery_low")
    if not duty_ok:
        return HeaterDecision(False, "duty_limit")
    if temp_c < on_below_c:
        return HeaterDecision(True, "cold")
    if temp_c > off_above_c:
        return HeaterDecision(False, "warm")
    return HeaterDecision(currently_on, "hold")


@dataclass(frozen=True)
class HeaterStatus:
    on: bool
    reason: str
    heated_s: float  # total seconds on since start (energy budget: heated_s * heater power)
    window_heated_s: float  # seconds on in the current duty window
    switches: int  # on/off transitions since start


class BatteryHeater:
    """A heater switched by a MOSFET on ``pin`` (gpiozero ``DigitalOutputDevice``).

    Call ``update(temp_c, battery_mv)`` from the payload's sensor loop; it decides, drives
    the pin and accounts on-time from the injected monotonic ``clock``. ``max_duty`` caps
    the fraction of each ``duty_window_s`` the heater may be on (1.0: no cap), so a failed
    thermistor reading "cold" cannot empty the battery alone.
    """

    def __init__(
        self,
        pin,
        pin_factory=None,
        *,
        on_below_c: float = -10.0,
        off_above_c: float = -5.0,
        max_duty: float = 0.5,
        duty_window_s: float = 600.0,
        min_battery_mv: float = 3500.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        if not on_below_c < off_above_c:
            raise ValueError(f"on_below_c ({on_below_c}) must be below off_above_c ({off_above_c})")
        if not 0.0 < max_duty <= 1.0:
            raise ValueError(f"max_duty must be in (0, 1], got {max_duty}")
        if not duty_window_s > 0:
            raise ValueError(f"duty_window_s must be positive, got {duty_window_s}")
        self._out = DigitalOutputDevice(pin, initial_value=False, pin_factory=pin_factory)
        self.limits = dict(on_below_c=on_below_c, off_above_c=off_above_c, min_battery_mv=min_battery_mv)
        self.max_duty = max_duty
        self.duty_window_s = duty_window_s
        self.clock = clock
        self.reason = "start"
        self.heated_s = 0.0
        self.switches = 0
        self._window_start = clock()
        self._window_heated_s = 0.0
        self._last = self._window_start

    @property
    def is_on(self) -> bool:
        return bool(self._out.value)

    def _account(self) -> None:
        now = self.clock()
        if self.is_on:
            # split the interval at window edges so each window gets its own share
            t = self._last
            while t < now:
                window_end = self._window_start + self.duty_window_s
                seg_end = min(now, window_end)
                self.heated_s += seg_end - t
                self._window_heated_s += seg_end - t
                t = seg_end
                if t >= window_end:
                    self._window_start, self._window_heated_s = window_end, 0.0
        while now >= self._window_start + self.duty_window_s:
            self._window_start += self.duty_window_s
            self._window_heated_s = 0.0
        self._last = now

    def update(self, temp_c: float | None, battery_mv: float | None) -> HeaterStatus:
        self._account()
        duty_ok = self.max_duty >= 1.0 or self._window_heated_s < self.max_duty * self.duty_window_s
        d = heater_decision(temp_c, self.is_on, battery_mv, duty_ok=duty_ok, **self.limits)
        if d.on != self.is_on:
            self.switches += 1
            self._out.value = d.on
        self.reason = d.reason
        return self.status()

    def status(self) -> HeaterStatus:
        self._account()
        return HeaterStatus(self.is_on, self.reason, self.heated_s, self._window_heated_s, self.switches)

    def close(self) -> None:
        self._account()
        self._out.off()
        self._out.close()
