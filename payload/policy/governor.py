"""The daemon's power sense: flight phase, mode ladder and energy budget, kept across reboots.

Each beacon hands the governor the readings; it updates the phase detector
(payload.policy.phases) and the mode ladder (payload.policy.modes), integrates the battery's energy
from the INA219's volts and amps, persists what changed in the store's durable state,
and answers the loops' questions: does this task run now, and how stretched is its period
(payload/cadence.py works the periods out). Changes come back as event texts for the air.

Boot: an unplanned reboot (no clean-shutdown mark from the last run) starts at least in
LOW_POWER — the reboot may have been a brown-out — and climbs only when the readings
prove it safe. The phase is restored, so a payload rebooting at 20 km is not "pre-launch".
"""

from __future__ import annotations

import json
import math

import structlog

from stratoecho.geo import distance_m
from stratoecho.wire.events import Event, event

from ..parts.sensors import Readings, fresh
from .modes import Mode, ModeInputs, ModeLadder, boot_mode, energy_budget, policy_for
from .phases import Phase, PhaseDetector, PhaseLimits

log = structlog.get_logger(__name__)

CLEAN = "clean_shutdown"
LAUNCH = "launch"  # the store's state: when and where the balloon left the ground ({"utc", "lat", "lon"})


class Governor:
    def __init__(self, store, *, capacity_wh: float, battery_temp_fitted: bool = True, cpu_temp_fitted: bool = True,
                 beacon_period_s: float | None = None):
        self.store = store
        self.capacity_wh = capacity_wh
        self.not_fitted = frozenset(
            name for name, fitted in (("battery_temp", battery_temp_fitted), ("cpu_temp", cpu_temp_fitted))
            if not fitted)
        saved = _json(store.state.get("mode"))
        clean = store.state.get(CLEAN) == "1"
        self.boot_mode = boot_mode(saved.get("mode") if saved else None, clean)
        self.unplanned_reboot = saved is not None and not clean
        self.ladder = ModeLadder(initial=self.boot_mode)
        self.ground_floor = Mode(store.state.get("ground_floor") or Mode.NOMINAL.value)
        phase = _json(store.state.get("phase"))
        # The phase follows the altitude of each position sentence: its window holds a few of them.
        limits = PhaseLimits.for_samples_every(beacon_period_s) if beacon_period_s else None
        self.phases = PhaseDetector.from_dict(phase, limits) if phase else PhaseDetector(limits)
        launch = _json(store.state.get(LAUNCH)) or {}
        self.launch: dict | None = launch if all(isinstance(launch.get(k), (int, float)) for k in ("utc", "lat", "lon")) \
            else None
        self.used_wh = float(store.state.get("energy_used_wh") or 0.0)
        self.load_w = math.nan
        self._last_t: float | None = None
        self._last_saved_wh = self.used_wh
        store.state.set(CLEAN, "0")  # until a clean shutdown says otherwise
        store.state.set("mode", json.dumps(self.ladder.to_dict()))

    @property
    def mode(self) -> Mode:
        """The ladder's mode, or the ground's floor when that is more frugal."""
        return Mode.worst(self.ladder.mode, self.ground_floor)

    def set_ground_floor(self, mode: Mode) -> None:
        """The ground may ask for a more frugal mode (to save the battery for a long recovery);
        it cannot make a cold or flat battery nominal. NOMINAL clears the floor."""
        self.ground_floor = Mode(mode)
        self.store.state.set("ground_floor", self.ground_floor.value)

    @property
    def phase(self) -> Phase:
        return self.phases.phase

    def update(self, r: Readings, now_s: float, cpu_temp_c: float | None) -> list[Event]:
        """Take one set of readings; the events to send down (mode and phase changes)."""
        events = []
        before = self.phases.phase
        phase = self.phases.update(now_s, r.alt_m if r.fix_valid else None, _finite(r.pressure_hpa), r.fix_valid)
        if phase != before:
            events.append(event("phase", before=before.value, after=phase.value, alt_m=int(round(r.alt_m))))
            self.store.state.set("phase", json.dumps(self.phases.to_dict()))
            self._note_launch(before, r)
        self._integrate(r, now_s)
        d = self.ladder.update(ModeInputs(
            battery_v=r.batt_mv / 1000.0 if _battery_read(r) else None, battery_temp_c=_finite(r.box_temp_c),
            cpu_temp_c=cpu_temp_c, phase=phase.value, soc=None, not_fitted=self.not_fitted), now_s)
        if d.changed:
            why = ", ".join(d.reasons) or "readings recovered"
            events.append(event("mode", before=d.previous.value, after=d.mode.value, why=why))
            log.warning("mode_changed", previous=d.previous.value, mode=d.mode.value, reasons=list(d.reasons))
            self.store.state.set("mode", json.dumps(self.ladder.to_dict()))  # persisted on each change
        return events

    def _note_launch(self, before: Phase, r: Readings) -> None:
        """Left the pad: when and where, kept across reboots (the persona's time aloft and distance
        from the launch site are measured from it). Not from a detector that woke aloft and
        jumped to ascent: it does not know when the flight began."""
        if before is not Phase.PRE_LAUNCH or self.launch is not None or not r.fix_valid:
            return
        if r.alt_m > self.phases.limits.max_ground_alt_m:
            return
        self.launch = {"utc": r.time.timestamp(), "lat": r.lat, "lon": r.lon}
        self.store.state.set(LAUNCH, json.dumps(self.launch))

    def aloft_s(self, now_utc: float) -> float | None:
        """Seconds since launch: 0 before it; None when the flight's start is not known."""
        if self.phase is Phase.PRE_LAUNCH:
            return 0.0
        return None if self.launch is None else max(now_utc - float(self.launch["utc"]), 0.0)

    def from_launch_km(self, lat: float, lon: float) -> float | None:
        """Kilometres over the ground from the launch site; None when it is not known."""
        if self.phase is Phase.PRE_LAUNCH:
            return 0.0
        if self.launch is None:
            return None
        return distance_m(float(self.launch["lat"]), float(self.launch["lon"]), lat, lon) / 1000.0

    def energy_share(self) -> float:
        """The energy budget left, 0..1."""
        return max(0.0, 1.0 - self.used_wh / self.capacity_wh) if self.capacity_wh > 0 else 0.0

    def _integrate(self, r: Readings, now_s: float) -> None:
        """Energy out of the battery: volts x amps over flight time (the INA219 on the battery lead).
        While the INA219 cannot be read, the last load it measured goes on being drawn: the
        estimate keeps counting from time and the known load instead of standing still."""
        if _battery_read(r) and not math.isnan(r.batt_ma):
            self.load_w = r.batt_mv / 1000.0 * r.batt_ma / 1000.0
        if self._last_t is not None and now_s > self._last_t and not math.isnan(self.load_w):
            self.used_wh += max(self.load_w, 0.0) * (now_s - self._last_t) / 3600.0
        self._last_t = now_s
        if self.used_wh - self._last_saved_wh > 0.05:  # a reboot loses at most 50 mWh of accounting
            self.store.state.set("energy_used_wh", f"{self.used_wh:.4f}")
            self._last_saved_wh = self.used_wh

    def runs(self, task: str) -> bool:
        return policy_for(self.mode, self.phase.value)[task] is not None

    def stretch(self, task: str, mode: Mode | None = None) -> float:
        """How many times its interval the task's period is now (or in `mode`); 1 for a shed
        task, still polled at its interval to run again as soon as the mode allows. Periods
        themselves are worked out by payload/cadence.py."""
        return policy_for(mode or self.mode, self.phase.value)[task] or 1.0

    def transmit_factor(self) -> float | None:
        """The radio's bulk traffic in this mode and phase: 1.0 all it may have, 4.0 a quarter of
        it (survival), None none (the beacon alone). The transmitter scales bulk's share of the
        hour's airtime by it; the beacon follows `Cadence.beacon_s`."""
        return policy_for(self.mode, self.phase.value)["transmit"]

    def fields(self) -> dict:
        """Mode, phase and the energy budget for the health record."""
        out = {"mode": self.mode.value, "phase": self.phase.value, "energy_wh": round(self.used_wh, 3)}
        if not math.isnan(self.load_w) and self.capacity_wh > 0:
            soc = max(0.0, 100.0 * (1.0 - self.used_wh / self.capacity_wh))
            budget = energy_budget(soc, self.capacity_wh, max(self.load_w, 0.0))
            if math.isfinite(budget.hours_left):
                out["hours_left"] = round(budget.hours_left, 2)
        return out

    def led_pattern(self, faulted: bool) -> str:
        if self.phase is Phase.LANDED:
            return "landed"
        if faulted and self.mode is Mode.NOMINAL:
            return "fault"
        return self.mode.value

    def close(self) -> None:
        """A clean stop: the next boot may resume this mode."""
        self.store.state.set("energy_used_wh", f"{self.used_wh:.4f}")
        self.store.state.set("phase", json.dumps(self.phases.to_dict()))
        self.store.state.set(CLEAN, "1")


def _json(text: str | None) -> dict | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        log.warning("state_unreadable", text=text[:80])
        return None
    return value if isinstance(value, dict) else None


def _finite(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


def _battery_read(r: Readings) -> bool:
    """The battery's voltage was measured at this reading: the sensors keep a failed INA219's last
    good value for the telemetry, which must not pass for a fresh one here (unreadable is low)."""
    return bool(fresh(r).batt_mv)
