"""Power modes: the mode ladder, the task policy each mode selects, and the energy budget.

Pure decisions, no I/O: the daemon passes readings and flight seconds in, acts on what
comes back, and persists ``ModeLadder.to_dict()`` on each change, as small spacecraft
do: a reboot must not forget that the battery was low.

The ladder (worse = more frugal)::

    NOMINAL  --(any signal below its enter threshold, enter_s)-->  LOW_POWER / SURVIVAL
    SURVIVAL --(every signal above its leave threshold, leave_s)--> LOW_POWER --(...)--> NOMINAL

* Stepping down may skip a rung (a battery that falls to the survival threshold goes
  straight to SURVIVAL); stepping up is one rung per ``leave_s``, each rung re-proven.
* Each threshold pair has hysteresis (enter < leave for "low" signals), so a value sitting
  on one threshold cannot toggle the mode.
* Stepping down uses a leaky integrator: seconds with the condition held at both ends of
  a sample interval add, seconds without it drain, and the step happens when ``enter_s``
  has accumulated. A condition held continuously steps down after exactly ``enter_s``;
  a short dip (a LoRa transmission sagging the battery) drains away and does nothing,
  and noise flickering above a threshold cannot hide a battery that is mostly below it.
* Stepping up needs every signal clear continuously for ``leave_s``: recovery is the
  risky direction, so one bad sample restarts it.
* An invalid reading (None, NaN, out of range) counts as low, the safe reading of silence: it demands
  ``invalid_mode`` (LOW_POWER by default, through the same dwell) and never lets the mode
  step up; its ``*_invalid`` key is in the decision's reasons.

Task policy (``TASKS``, ``POLICY``, ``PHASE_POLICY``) is declared data: per mode, per task,
``None`` (shed) or a factor stretching the task's base period. The language model is shed
first and the position beacon last; the landed phase (the recovery beacon) is at least as
frugal as LOW_POWER whatever the mode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import Any, Mapping

from pydantic import BaseModel, ConfigDict, Field, model_validator

from stratoecho.wire.commands import PowerMode


class Mode(str, Enum):
    """Power mode; values are the LED pattern names in ``payload.parts.outputs.PATTERNS`` (and the
    words persisted state and configuration use). The same modes as the wire's `PowerMode`, which
    the ground's SET_MODE carries: their order (rank) is the wire's, kept in one place."""

    NOMINAL = "nominal"
    LOW_POWER = "low_power"
    SURVIVAL = "survival"

    @property
    def rank(self) -> int:
        """0 nominal, 1 low power, 2 survival: a higher rank is a worse (more frugal) mode."""
        return int(PowerMode[self.name])

    def is_worse_than(self, other: Mode | str) -> bool:
        return self.rank > Mode(other).rank

    def step_up(self) -> Mode:
        """One rung better (NOMINAL stays NOMINAL)."""
        return Mode[PowerMode(max(0, self.rank - 1)).name]

    @staticmethod
    def worst(*modes: Mode | str) -> Mode:
        """The worst of ``modes``; NOMINAL when there are none."""
        return max((Mode(m) for m in modes), key=lambda m: m.rank, default=Mode.NOMINAL)


if [m.name for m in Mode] != [m.name for m in sorted(PowerMode)]:  # pragma: no cover - an import-time guard
    raise ImportError("payload Mode and wire PowerMode name different modes: they must be the same, best first")


# --- limits and inputs ----------------------------------------------------------------


class ModeLimits(BaseModel):
    """Thresholds and dwell times; ``ModeLimits(**toml_table)`` takes a config table.

    Comparisons are strict: "enter below 3.55 V" means ``v < 3.55``, "leave above 3.70 V"
    means ``v > 3.70``; a value exactly on a threshold does neither.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    # Battery voltage under load, 1S Li-ion (4.2 V full). The curve is flat from ~3.9 to
    # ~3.6 V and then falls steeply: under 3.55 V little charge is left at a Pi's load; under
    # 3.40 V the pack is at the knee, minutes from the boost converter browning out.
    # Leave thresholds sit well above (the voltage rebounds when load is shed).
    enter_low_power_v: float = 3.55
    leave_low_power_v: float = 3.70
    enter_survival_v: float = 3.40
    leave_survival_v: float = 3.55
    # State of charge in percent (0-100) from a fuel gauge; ModeInputs.soc None = no gauge.
    enter_low_power_soc: float = 30.0
    leave_low_power_soc: float = 40.0
    enter_survival_soc: float = 12.0
    leave_survival_soc: float = 20.0
    # Battery temperature: below -10 °C a Li-ion cell's usable capacity and voltage under
    # load fall fast (docs/figures.md: up to half lost); -20 °C is about its rated discharge limit.
    enter_low_power_battery_c: float = -10.0
    leave_low_power_battery_c: float = -5.0
    enter_survival_battery_c: float = -20.0
    leave_survival_battery_c: float = -15.0
    # CPU temperature: the Pi throttles from 80-85 °C; shedding the model is what cools it.
    # Never worse than LOW_POWER: heat is no reason to stop beaconing.
    enter_low_power_cpu_c: float = 80.0
    leave_low_power_cpu_c: float = 70.0
    # Seconds a condition must accumulate before stepping down, and hold before stepping up.
    enter_s: float = Field(10.0, ge=0)
    leave_s: float = Field(60.0, ge=0)
    # Plausible readings; anything else is a failed sensor or a bad conversion.
    battery_v_min: float = 2.5
    battery_v_max: float = 4.5
    temp_min_c: float = -90.0
    temp_max_c: float = 120.0
    # What an invalid reading demands (must not be NOMINAL: invalid counts as low).
    invalid_mode: Mode = Mode.LOW_POWER
    # The best mode allowed once landed: recovery may take days on one battery.
    landed_mode: Mode = Mode.LOW_POWER

    @model_validator(mode="after")
    def _ordered(self) -> ModeLimits:
        for kind in ("v", "soc", "battery_c"):
            el, ll = getattr(self, f"enter_low_power_{kind}"), getattr(self, f"leave_low_power_{kind}")
            es, ls = getattr(self, f"enter_survival_{kind}"), getattr(self, f"leave_survival_{kind}")
            # these orderings guarantee a signal that demands a mode never allows a better one
            if not (es < ls and el < ll and es < el and ls < ll):
                raise ValueError(
                    f"ModeLimits {kind} thresholds need enter_survival < leave_survival, "
                    f"enter_low_power < leave_low_power, enter_survival < enter_low_power and "
                    f"leave_survival < leave_low_power; got {es}, {ls}, {el}, {ll}")
        if not self.leave_low_power_cpu_c < self.enter_low_power_cpu_c:
            raise ValueError("ModeLimits.leave_low_power_cpu_c must be below enter_low_power_cpu_c")
        if not (self.battery_v_min < self.battery_v_max and self.temp_min_c < self.temp_max_c):
            raise ValueError("ModeLimits plausible ranges need min < max")
        if self.invalid_mode is Mode.NOMINAL:
            raise ValueError("ModeLimits.invalid_mode cannot be nominal: an invalid reading counts as low")
        return self


@dataclass(frozen=True, kw_only=True)
class ModeInputs:
    """One set of readings. Keyword-only: a swapped voltage and temperature must not pass.

    None means "no reading" and counts as invalid, except ``soc`` (None: no fuel gauge
    fitted, the voltage speaks for the battery) and ``phase`` (None: not known yet).
    ``not_fitted`` names signals this payload has no sensor for at all ("battery_temp",
    "cpu_temp"): they are left out rather than counted as invalid — a build without a
    battery thermometer is a choice made on the ground, not a fault in flight.
    """

    battery_v: float | None = None  # under load, volts
    soc: float | None = None  # state of charge, percent 0-100
    battery_temp_c: float | None = None
    cpu_temp_c: float | None = None
    phase: str | None = None  # a payload.policy.phases.Phase value; "landed" caps the mode
    not_fitted: frozenset[str] = frozenset()


@dataclass(frozen=True)
class ModeDecision:
    mode: Mode
    changed: bool
    previous: Mode
    reasons: tuple[str, ...]  # keys from REASONS, in that order: what holds or pushes the mode down


# Every key a decision can carry, declared once so telemetry can map them (F´-style).
# *_low: a low-power condition, *_critical: a survival condition.
REASONS: tuple[str, ...] = (
    "battery_v_invalid", "battery_v_critical", "battery_v_low",
    "soc_invalid", "soc_critical", "soc_low",
    "battery_temp_invalid", "battery_temp_critical", "battery_temp_low",
    "cpu_temp_invalid", "cpu_temp_hot",
    "landed",
)


@dataclass(frozen=True)
class _Grade:
    signal: str  # reason-key stem
    demand: Mode  # worst mode this reading asks to enter
    allow: Mode  # best mode this reading lets the ladder climb to
    invalid: bool = False


def _valid(x: Any, lo: float, hi: float) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and lo <= x <= hi


def _grade_low(signal: str, x: float, enter_low: float, leave_low: float, enter_surv: float,
               leave_surv: float) -> _Grade:
    """For signals where low is bad (voltage, charge, battery temperature)."""
    demand = Mode.SURVIVAL if x < enter_surv else Mode.LOW_POWER if x < enter_low else Mode.NOMINAL
    allow = Mode.NOMINAL if x > leave_low else Mode.LOW_POWER if x > leave_surv else Mode.SURVIVAL
    return _Grade(signal, demand, allow)


def _invalid(signal: str, lim: ModeLimits) -> _Grade:
    return _Grade(signal, lim.invalid_mode, Mode.SURVIVAL, invalid=True)  # never allows a step up


def _grade_all(inp: ModeInputs, lim: ModeLimits) -> list[_Grade]:
    out = []
    if _valid(inp.battery_v, lim.battery_v_min, lim.battery_v_max):
        out.append(_grade_low("battery_v", inp.battery_v, lim.enter_low_power_v, lim.leave_low_power_v,
                              lim.enter_survival_v, lim.leave_survival_v))
    else:
        out.append(_invalid("battery_v", lim))
    if inp.soc is not None:
        if _valid(inp.soc, 0.0, 100.0):
            out.append(_grade_low("soc", inp.soc, lim.enter_low_power_soc, lim.leave_low_power_soc,
                                  lim.enter_survival_soc, lim.leave_survival_soc))
        else:
            out.append(_invalid("soc", lim))
    if "battery_temp" in inp.not_fitted:
        pass  # no thermometer on the battery in this build
    elif _valid(inp.battery_temp_c, lim.temp_min_c, lim.temp_max_c):
        out.append(_grade_low("battery_temp", inp.battery_temp_c, lim.enter_low_power_battery_c,
                              lim.leave_low_power_battery_c, lim.enter_survival_battery_c,
                              lim.leave_survival_battery_c))
    else:
        out.append(_invalid("battery_temp", lim))
    if "cpu_temp" in inp.not_fitted:
        pass  # not a Pi (a bench stand-in without a thermal zone)
    elif _valid(inp.cpu_temp_c, lim.temp_min_c, lim.temp_max_c):
        t = inp.cpu_temp_c
        demand = Mode.LOW_POWER if t > lim.enter_low_power_cpu_c else Mode.NOMINAL
        allow = Mode.NOMINAL if t < lim.leave_low_power_cpu_c else Mode.LOW_POWER
        out.append(_Grade("cpu_temp", demand, allow))
    else:
        out.append(_invalid("cpu_temp", lim))
    if inp.phase == "landed":  # Phase is a str enum: Phase.LANDED == "landed"
        out.append(_Grade("landed", lim.landed_mode, lim.landed_mode))
    return out


def _reason_key(g: _Grade, severity: Mode) -> str:
    if g.invalid:
        return f"{g.signal}_invalid"
    if g.signal == "landed":
        return "landed"
    if g.signal == "cpu_temp":
        return "cpu_temp_hot"
    return f"{g.signal}_{'critical' if severity is Mode.SURVIVAL else 'low'}"


# --- the ladder -------------------------------------------------------------------------

_DOWN_LEVELS = (Mode.SURVIVAL, Mode.LOW_POWER)  # worst first: a step down takes the worst due
_UP_LEVELS = (Mode.NOMINAL, Mode.LOW_POWER)


class ModeLadder:
    """The mode state machine. ``update(inputs, now_s)`` once per reading.

    ``now_s`` is flight seconds; if it goes backwards (a reboot with a new epoch) the dwell
    timers start afresh rather than trusting a negative interval. ``transitions`` counts
    mode changes (telemetry). Persist ``to_dict()`` whenever a decision says ``changed``.
    """

    VERSION = 1

    def __init__(self, limits: ModeLimits | None = None, initial: Mode = Mode.LOW_POWER):
        self.limits = limits if limits is not None else ModeLimits()
        self.mode = Mode(initial)
        self.transitions = 0
        self._last_s: float | None = None
        self._mode_since_s: float | None = None
        self._last_demand = Mode.NOMINAL
        self._pending_s = {lvl: 0.0 for lvl in _DOWN_LEVELS}  # integrator per worse level
        self._clear_since_s: dict[Mode, float | None] = {lvl: None for lvl in _UP_LEVELS}

    def _restart(self, now: float) -> None:
        self._mode_since_s = now
        self._last_demand = Mode.NOMINAL  # the next low reading is an onset, not a held condition
        self._pending_s = {lvl: 0.0 for lvl in _DOWN_LEVELS}
        self._clear_since_s = {lvl: None for lvl in _UP_LEVELS}

    def update(self, inputs: ModeInputs, now_s: float) -> ModeDecision:
        now = float(now_s)
        if not math.isfinite(now):
            raise ValueError(f"now_s must be finite, got {now_s!r}")
        lim = self.limits
        grades = _grade_all(inputs, lim)
        demand = Mode.worst(*(g.demand for g in grades))
        allow = Mode.worst(*(g.allow for g in grades))

        if self._last_s is None or now < self._last_s:
            self._last_s = now
            self._restart(now)
        dt = now - self._last_s

        for lvl in _DOWN_LEVELS:
            if demand.rank >= lvl.rank:
                if self._last_demand.rank >= lvl.rank:  # held at both ends of the interval
                    self._pending_s[lvl] = min(lim.enter_s, self._pending_s[lvl] + dt)
            else:
                self._pending_s[lvl] = max(0.0, self._pending_s[lvl] - dt)
        for lvl in _UP_LEVELS:
            if allow.rank <= lvl.rank:
                if self._clear_since_s[lvl] is None:
                    self._clear_since_s[lvl] = now
            else:
                self._clear_since_s[lvl] = None
        self._last_s, self._last_demand = now, demand

        previous = self.mode
        due = [lvl for lvl in _DOWN_LEVELS
               if lvl.is_worse_than(self.mode) and demand.rank >= lvl.rank and self._pending_s[lvl] >= lim.enter_s]
        if due:
            self.mode = due[0]
        elif self.mode is not Mode.NOMINAL:
            up = self.mode.step_up()
            since = self._clear_since_s[up]
            # the rung just reached must itself be held leave_s before the next step
            if since is not None and now - max(since, self._mode_since_s) >= lim.leave_s:
                self.mode = up
                for lvl in _DOWN_LEVELS:
                    if lvl.is_worse_than(up):
                        self._pending_s[lvl] = 0.0
        changed = self.mode is not previous
        if changed:
            self._mode_since_s = now
            self.transitions += 1
        return ModeDecision(self.mode, changed, previous, self._reasons(grades))

    def _reasons(self, grades: list[_Grade]) -> tuple[str, ...]:
        keys = set()
        for g in grades:
            severity = g.demand
            # a reading below its leave threshold is what keeps a degraded mode from climbing
            if self.mode is not Mode.NOMINAL and g.allow.rank >= self.mode.rank:
                severity = Mode.worst(severity, g.allow)
            if g.invalid or severity is not Mode.NOMINAL:
                keys.add(_reason_key(g, severity))
        return tuple(k for k in REASONS if k in keys)

    # persistence: plain JSON-able values

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.VERSION,
            "mode": self.mode.value,
            "transitions": self.transitions,
            "last_s": self._last_s,
            "mode_since_s": self._mode_since_s,
            "last_demand": self._last_demand.value,
            "pending_s": {lvl.value: v for lvl, v in self._pending_s.items()},
            "clear_since_s": {lvl.value: v for lvl, v in self._clear_since_s.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], limits: ModeLimits | None = None) -> ModeLadder:
        """Restore ``to_dict()``'s output. Only "mode" is required: timers left out start afresh."""
        version = data.get("version", cls.VERSION)
        if version != cls.VERSION:
            raise ValueError(f"mode state version {version!r} is not {cls.VERSION}")
        try:
            ladder = cls(limits, Mode(data["mode"]))
            ladder.transitions = int(data.get("transitions", 0))
            ladder._last_s = _opt_float(data.get("last_s"))
            ladder._mode_since_s = _opt_float(data.get("mode_since_s"))
            ladder._last_demand = Mode(data.get("last_demand", Mode.NOMINAL.value))
            for lvl in _DOWN_LEVELS:
                ladder._pending_s[lvl] = float(data.get("pending_s", {}).get(lvl.value, 0.0))
            for lvl in _UP_LEVELS:
                ladder._clear_since_s[lvl] = _opt_float(data.get("clear_since_s", {}).get(lvl.value))
        except KeyError as e:
            raise ValueError(f"mode state lacks {e}") from e
        except (TypeError, AttributeError) as e:
            raise ValueError(f"mode state is malformed: {e}") from e
        if ladder._last_s is not None and ladder._mode_since_s is None:
            ladder._mode_since_s = ladder._last_s
        return ladder


def _opt_float(x: Any) -> float | None:
    return None if x is None else float(x)


def boot_mode(persisted: Mode | str | None, clean_shutdown: bool) -> Mode:
    """The mode to start in.

    * clean shutdown: the persisted mode (the ladder left it there for a reason).
    * unplanned reboot: at least LOW_POWER ("starts safe"): a brown-out or a crash of the
      model is the likeliest cause, and restarting straight into the largest load could
      repeat it. The ladder climbs back within ``leave_s`` if the readings are good.
    * nothing persisted (first boot, lost or corrupt state): LOW_POWER too. It costs a
      minute without the model on a healthy battery; trusting NOMINAL could cost the
      flight on a bad one. An unknown mode name counts as nothing persisted.
    """
    try:
        mode = None if persisted is None else Mode(persisted)
    except ValueError:
        mode = None
    if mode is None:
        return Mode.LOW_POWER
    return mode if clean_shutdown else Mode.worst(mode, Mode.LOW_POWER)


# --- task policy --------------------------------------------------------------------------


@dataclass(frozen=True)
class Task:
    name: str
    period_s: float  # base period in NOMINAL (the daemon's schedule may override it)
    priority: int  # 0 is kept longest; the highest number is shed first
    energy_j: float  # per run, above the idle board
    why: str


# Energy per run: think = a musing of ~48 tokens at ~0.3 J/token plus prompt processing with
# all cores busy (~+3.4 W for ~10 s on a Pi 4); capture = camera +250 mA at 5 V for ~3 s
# plus encoding; beacon = ~1 s on air at 0.5 W; transmit = a few queued frames.
TASKS: Mapping[str, Task] = MappingProxyType({t.name: t for t in (
    Task("beacon", 10.0, 0, 0.5, "position sentence: what recovery depends on, shed last"),
    Task("transmit", 15.0, 1, 1.0, "drain the store's queue (events, repairs) over the radio"),
    Task("housekeeping", 5.0, 2, 0.05, "power and health readings for this ladder, watchdog, store flush"),
    Task("sense", 5.0, 3, 0.02, "environment sensors logged for science"),
    Task("capture", 900.0, 4, 5.0, "camera still and thumbnail"),
    Task("think", 180.0, 5, 40.0, "a musing from the language model: the largest optional load, shed first"),
)})

Policy = Mapping[str, "float | None"]  # task -> period factor, None = shed


def _frozen(rows: dict) -> Mapping:
    return MappingProxyType({k: MappingProxyType(v) for k, v in rows.items()})


POLICY: Mapping[Mode, Policy] = _frozen({
    Mode.NOMINAL: {"beacon": 1.0, "transmit": 1.0, "housekeeping": 1.0, "sense": 1.0, "capture": 1.0, "think": 1.0},
    # The radio follows: bulk gets half of what the beacon leaves of the hour's airtime, a
    # quarter in survival (payload/policy/duty.py); the beacon keeps its own period until survival.
    Mode.LOW_POWER: {"beacon": 1.0, "transmit": 2.0, "housekeeping": 1.0, "sense": 2.0, "capture": 4.0,
                     "think": None},
    # Every milliwatt to the beacon; readings stay (the ladder needs them to climb back).
    Mode.SURVIVAL: {"beacon": 2.0, "transmit": 4.0, "housekeeping": 2.0, "sense": None, "capture": None,
                    "think": None},
})

# Phase rows combine with the mode's row, the more frugal of the two per task. Landed: the
# recovery beacon keeps its period (the team needs fixes), everything else slows or stops
# so the battery lasts days.
PHASE_POLICY: Mapping[str, Policy] = _frozen({
    "landed": {"beacon": 1.0, "transmit": 2.0, "housekeeping": 2.0, "sense": 4.0, "capture": None, "think": None},
})


def _more_frugal(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else max(a, b)


def policy_for(mode: Mode | str, phase: str | None = None) -> dict[str, float | None]:
    """Task -> period factor (None: shed) for ``mode`` in ``phase`` (a Phase or its value)."""
    row = dict(POLICY[Mode(mode)])
    # key by the plain value, whether a Phase or a string came in
    extra = PHASE_POLICY.get(getattr(phase, "value", phase)) if phase is not None else None
    if extra is not None:
        row = {task: _more_frugal(f, extra[task]) for task, f in row.items()}
    return row


def _task(task: str) -> Task:
    try:
        return TASKS[task]
    except KeyError:
        raise KeyError(f"unknown task {task!r}; tasks are {', '.join(TASKS)}") from None


def runs(mode: Mode | str, task: str, phase: str | None = None) -> bool:
    _task(task)
    return policy_for(mode, phase)[task] is not None


def period_s(mode: Mode | str, task: str, base_period_s: float | None = None,
             phase: str | None = None) -> float | None:
    """The task's period in this mode and phase, or None when it is shed.
    ``base_period_s`` defaults to the task's own (pass the configured schedule's)."""
    base = _task(task).period_s if base_period_s is None else base_period_s
    factor = policy_for(mode, phase)[task]
    return None if factor is None else base * factor


# --- energy --------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnergyBudget:
    soc_valid: bool  # False: the charge reading was unusable and counted as empty
    stored_wh: float  # charge in the battery
    reserve_wh: float  # held back for the recovery beacon
    wh_left: float  # usable now: stored minus reserve, never negative
    load_w: float
    hours_left: float  # at load_w; inf at no load


def energy_budget(soc: float | None, capacity_wh: float, load_w: float,
                  reserve_fraction: float = 0.1) -> EnergyBudget:
    """What is left at ``soc`` percent of ``capacity_wh`` above a reserve, and for how long.

    An unusable ``soc`` (None, NaN, outside 0-100) counts as empty, like any invalid reading.
    Derate ``capacity_wh`` for a cold pack (docs/figures.md: up to half lost) before calling.
    """
    if not (capacity_wh > 0 and math.isfinite(capacity_wh)):
        raise ValueError(f"capacity_wh must be a positive number, got {capacity_wh!r}")
    if not (load_w >= 0 and math.isfinite(load_w)):
        raise ValueError(f"load_w must be >= 0, got {load_w!r}")
    if not 0.0 <= reserve_fraction < 1.0:
        raise ValueError(f"reserve_fraction must be in [0, 1), got {reserve_fraction!r}")
    valid = _valid(soc, 0.0, 100.0)
    stored = capacity_wh * soc / 100.0 if valid else 0.0
    reserve = capacity_wh * reserve_fraction
    left = max(0.0, stored - reserve)
    hours = 0.0 if left == 0 else math.inf if load_w == 0 else left / load_w
    return EnergyBudget(valid, stored, reserve, left, load_w, hours)
