"""The intervals in force, and the one place a loop's period is worked out.

A period is three things at once: the configuration's interval ([schedule]), what the ground's
SET_INTERVALS changed it to (on probation: payload/uplink/handler.py), and the governor's stretch
for the mode and phase (payload/policy/modes.py). `Cadence` holds the first two and asks the
governor for the third each time, so the daemon's loops, the transmitter's airtime and the
handler's probation read one answer: `cadence.beacon_s`, `cadence.period_s(loop)`.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import ScheduleSection
from .policy.governor import Governor
from .policy.modes import Mode


@dataclass(frozen=True)
class _Interval:
    task: str  # the governor's name for the loop's work (payload/policy/modes.py TASKS)
    schedule_key: str  # its interval in [schedule]


# The daemon's periodic loops (payload/assembly.py `loops`), by the names their threads carry.
INTERVALS = {
    "beacon": _Interval("beacon", "telemetry_s"),
    "health": _Interval("housekeeping", "health_s"),
    "camera": _Interval("capture", "image_s"),
    "think": _Interval("think", "musing_s"),
}


class UnknownLoop(KeyError):
    """A period asked for a loop that has none."""


class Cadence:
    """The payload's schedule in force: the configured intervals, those the uplink changed, and
    the governor's stretch of each. The configuration itself is never changed."""

    def __init__(self, schedule: ScheduleSection, governor: Governor):
        self.planned = schedule  # what the air plan and the duty cycle were worked out for
        self.governor = governor
        self._in_force = {i.schedule_key: float(getattr(schedule, i.schedule_key)) for i in INTERVALS.values()}

    # ------------------------------------------------------------------ what the uplink may change

    @property
    def telemetry_s(self) -> float:
        """The position interval in force, before the governor's stretch."""
        return self._in_force["telemetry_s"]

    @property
    def musing_s(self) -> float:
        """The musing interval in force, before the governor's stretch."""
        return self._in_force["musing_s"]

    def set_intervals(self, telemetry_s: float, musing_s: float) -> None:
        """A SET_INTERVALS applied (or reverted): every loop and the transmitter follow it at once."""
        if not (telemetry_s > 0 and musing_s > 0):
            raise ValueError(f"intervals must be positive, got telemetry {telemetry_s!r} s, musings {musing_s!r} s")
        self._in_force["telemetry_s"], self._in_force["musing_s"] = float(telemetry_s), float(musing_s)

    # ------------------------------------------------------------------ the periods in force

    def period_s(self, loop: str) -> float:
        """The loop's period now: its interval in force times the governor's stretch for the mode
        and phase (a shed loop is still polled at its interval: it runs again once the mode allows)."""
        interval = _interval(loop)
        return self._in_force[interval.schedule_key] * self.governor.stretch(interval.task)

    @property
    def beacon_s(self) -> float:
        """The beacon's period in force now, in flight seconds."""
        return self.period_s("beacon")

    def beacon_s_under(self, telemetry_s: float, mode: Mode) -> float:
        """The beacon's period were the interval `telemetry_s` and the mode `mode` (the handler
        sizes a probation by it before the change is applied)."""
        return telemetry_s * self.governor.stretch("beacon", mode)

    def first_s(self, loop: str) -> float:
        """Flight seconds from the start to the loop's first run: the beacon at once, housekeeping
        one interval in, the camera half one, the first musing `first_musing_s`."""
        _interval(loop)
        plan = self.planned
        return {"beacon": 0.0, "health": plan.health_s, "camera": plan.image_s / 2,
                "think": plan.first_musing_s}[loop]

    @property
    def beacon_slot_s(self) -> float | None:
        """The second of each beacon period (by UTC) the sentence is keyed at; None: from the start."""
        return self.planned.beacon_slot_s


def _interval(loop: str) -> _Interval:
    try:
        return INTERVALS[loop]
    except KeyError:
        raise UnknownLoop(f"no period for loop {loop!r}; the periodic loops are {', '.join(INTERVALS)}") from None
