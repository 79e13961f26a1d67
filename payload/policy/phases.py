"""Flight phase from altitude: pre-launch, ascent, float, descent, landed. Pure, no I/O.

``PhaseDetector.update(now_s, alt_m, pressure_hpa, fix_valid)`` once per reading, with
flight seconds passed in. How it stays calm on real data:

* Two altitude sources, each with its own window of samples: GPS (when the fix is valid)
  and pressure altitude (ISA, below). The vertical rate is a straight line through the
  last ``window_s`` of one source's samples, GPS preferred. Separate windows matter: the
  two disagree by hundreds of metres (weather, temperature), and mixing them in one fit
  would turn a GPS dropout into a false climb or fall.
* The line is Theil-Sen (median of the pairwise slopes, median level), not least squares:
  a glitch that passes the gate below moves a least-squares slope by metres per second
  for a whole window, and a median not at all. At most ``max_fit_samples`` (evenly
  thinned) enter it, which bounds the cost at a few hundred pairs per update.
* A sample further from that source's last accepted one than ``spike_m`` plus
  ``max_speed_m_s`` times the time between is a glitch and is dropped; after
  ``max_rejects`` in a row the *reference* is presumed wrong and the window restarts.
* Every transition needs its condition held (at each update with a rate) for a dwell
  time; an update without a usable rate (no valid source, too few samples) neither
  confirms nor breaks a dwell, and leaves the phase as it is.
* Phases only go forward. A detector restored with ``from_dict`` after a reboot carries
  on from the persisted phase. A fresh one (nothing persisted) that wakes up above
  ``max_ground_alt_m`` knows it is flying and goes to ASCENT, from which float and descent
  follow by the usual rules.

Transitions (defaults in ``PhaseLimits``)::

    pre-launch -> ascent   rate > 1.5 m/s for 30 s, or 150 m above the first altitude
                           seen (median of the first full window), or above 6 km
                           (no launch site is that high)
    ascent     -> float    |rate| < 1 m/s for 5 min above 10 km
    ascent, float -> descent  rate < -3 m/s for 20 s (burst or cut-down)
    descent    -> landed   |rate| < 0.5 m/s or the window's 10-90 % altitude spread < 40 m,
                           for 3 min, below 5 km
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Any, Mapping

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Phase(str, Enum):
    PRE_LAUNCH = "pre-launch"
    ASCENT = "ascent"
    FLOAT = "float"
    DESCENT = "descent"
    LANDED = "landed"

    @property
    def rank(self) -> int:
        """Order in a flight: phases only move to a higher rank."""
        return list(Phase).index(self)


# --- ISA barometric formula -------------------------------------------------------------

_G0 = 9.80665  # m/s²
_R_AIR = 287.05287  # J/(kg·K), specific gas constant of dry air
# (base geopotential altitude m, lapse rate K/m) of the ISA layers used; the model ends at 47 km
_LAYER_DEFS = ((0.0, -0.0065), (11_000.0, 0.0), (20_000.0, 0.001), (32_000.0, 0.0028))
ISA_TOP_M = 47_000.0
ISA_BOTTOM_M = -1_000.0


def _pressure_in_layer(p_base: float, t_base: float, lapse: float, dh: float) -> float:
    if lapse == 0.0:
        return p_base * math.exp(-_G0 * dh / (_R_AIR * t_base))
    return p_base * (1.0 + lapse * dh / t_base) ** (-_G0 / (_R_AIR * lapse))


def _build_layers() -> tuple[tuple[float, float, float, float], ...]:
    """(base altitude, base temperature K, base pressure Pa, lapse) per layer, derived from
    sea level so the layers join exactly."""
    layers, t, p = [], 288.15, 101_325.0
    for i, (h, lapse) in enumerate(_LAYER_DEFS):
        layers.append((h, t, p, lapse))
        top = _LAYER_DEFS[i + 1][0] if i + 1 < len(_LAYER_DEFS) else ISA_TOP_M
        p = _pressure_in_layer(p, t, lapse, top - h)
        t = t + lapse * (top - h)
    return tuple(layers)


_LAYERS = _build_layers()


def isa_pressure_hpa(alt_m: float) -> float:
    """ISA pressure at geopotential altitude ``alt_m`` (-1 km to 47 km). Geopotential and
    GPS altitude differ by ~0.5 % at 32 km: nothing to a rate threshold."""
    if not ISA_BOTTOM_M <= alt_m <= ISA_TOP_M:
        raise ValueError(f"altitude {alt_m!r} m is outside the ISA model ({ISA_BOTTOM_M:g}..{ISA_TOP_M:g} m)")
    h, t, p, lapse = next(layer for layer in reversed(_LAYERS) if alt_m >= layer[0] or layer is _LAYERS[0])
    return _pressure_in_layer(p, t, lapse, alt_m - h) / 100.0


ISA_MIN_HPA = isa_pressure_hpa(ISA_TOP_M)
ISA_MAX_HPA = isa_pressure_hpa(ISA_BOTTOM_M)


def pressure_altitude_m(pressure_hpa: float | None) -> float | None:
    """ISA altitude for a pressure, or None when it is no number or outside the model
    (~1.1 hPa at 47 km to ~1139 hPa at -1 km). Not a true altitude: weather and
    temperature shift it by hundreds of metres, which is why only its rate is compared
    with GPS, never its value. The sensor must be rated that low: a BME280 is specified
    only down to 300 hPa (~9 km); an MS5607-class part reaches 10 hPa."""
    if not isinstance(pressure_hpa, (int, float)) or isinstance(pressure_hpa, bool):
        return None
    if not (math.isfinite(pressure_hpa) and ISA_MIN_HPA <= pressure_hpa <= ISA_MAX_HPA):
        return None
    pa = pressure_hpa * 100.0
    h, t, p, lapse = next(layer for layer in reversed(_LAYERS) if pa <= layer[2] or layer is _LAYERS[0])
    if lapse == 0.0:
        return h + _R_AIR * t / _G0 * math.log(p / pa)
    return h + t / lapse * ((pa / p) ** (-_R_AIR * lapse / _G0) - 1.0)


# --- limits ---------------------------------------------------------------------------------


class PhaseLimits(BaseModel):
    """Thresholds, in metres, m/s and seconds; ``PhaseLimits(**toml_table)`` takes a config table."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, strict=True)

    # rate estimate
    window_s: float = Field(60.0, gt=0)  # line through this much history: ±15 m GPS noise gives ~±0.1 m/s
    min_fit_samples: int = 3
    max_fit_samples: int = 40  # thinned beyond this: pairs grow as the square
    min_fit_span_s: float = Field(20.0, ge=0)  # a shorter window is too noisy to act on
    # glitch gate: free fall after a burst in thin air reaches ~100 m/s, nothing is faster
    max_speed_m_s: float = Field(150.0, gt=0)
    spike_m: float = Field(100.0, ge=0)  # allowance on top for GPS noise and quantisation
    max_rejects: int = Field(3, ge=0)
    # plausible readings
    gps_alt_min_m: float = -500.0
    gps_alt_max_m: float = 50_000.0
    # pre-launch -> ascent
    launch_rate_m_s: float = Field(1.5, gt=0)
    launch_dwell_s: float = Field(30.0, ge=0)
    launch_height_m: float = Field(150.0, gt=0)
    max_ground_alt_m: float = 6_000.0
    # ascent -> float
    float_rate_m_s: float = Field(1.0, gt=0)
    float_dwell_s: float = Field(300.0, ge=0)
    float_min_alt_m: float = 10_000.0
    # ascent/float -> descent
    descent_rate_m_s: float = -3.0
    descent_dwell_s: float = Field(20.0, ge=0)
    # descent -> landed
    landed_rate_m_s: float = Field(0.5, gt=0)
    landed_spread_m: float = Field(40.0, ge=0)
    landed_dwell_s: float = Field(180.0, ge=0)
    landed_max_alt_m: float = 5_000.0

    @classmethod
    def for_samples_every(cls, period_s: float) -> PhaseLimits:
        """The limits for an altitude sample every `period_s` (one per position sentence): the
        rate's window holds at least `min_fit_samples` of them, however slow the beacon (a
        sentence a minute in LoRa mode 0 would leave a 60 s window one or two: no rate, and a
        balloon at 13 km still "pre-launch")."""
        base = cls()
        return cls(window_s=max(base.window_s, (base.min_fit_samples + 0.5) * period_s))

    @model_validator(mode="after")
    def _consistent(self) -> PhaseLimits:
        if not 2 <= self.min_fit_samples <= self.max_fit_samples:
            raise ValueError("PhaseLimits needs 2 <= min_fit_samples <= max_fit_samples (a line needs two points)")
        if self.min_fit_span_s > self.window_s:
            raise ValueError("PhaseLimits.min_fit_span_s cannot exceed window_s")
        if self.descent_rate_m_s >= 0:
            raise ValueError("PhaseLimits.descent_rate_m_s must be negative")
        if self.descent_rate_m_s >= -self.landed_rate_m_s:
            raise ValueError("PhaseLimits.descent_rate_m_s must be faster than -landed_rate_m_s")
        if not self.gps_alt_min_m < self.gps_alt_max_m:
            raise ValueError("PhaseLimits.gps_alt_min_m must be below gps_alt_max_m")
        return self


@dataclass(frozen=True)
class _Fit:
    alt_m: float  # the line's value now
    rate_m_s: float
    spread_m: float  # 90th minus 10th percentile of the window's altitudes (a glitch does not widen it)


SOURCES = ("gps", "pressure")
_TIMERS = ("climb", "float", "descent", "landed")


class PhaseDetector:
    """Flight phase from irregular, gappy, noisy altitude samples.

    After each ``update``: ``phase``, ``phase_since_s``, and the estimate it acted on
    (``alt_m``, ``rate_m_s``, ``source``: "gps", "pressure" or None when there was none).
    """

    VERSION = 1

    def __init__(self, limits: PhaseLimits | None = None, phase: Phase = Phase.PRE_LAUNCH):
        self.limits = limits if limits is not None else PhaseLimits()
        self.phase = Phase(phase)
        self.phase_since_s: float | None = None
        self.alt_m: float | None = None
        self.rate_m_s: float | None = None
        self.source: str | None = None
        self._last_s: float | None = None
        self._windows: dict[str, list[tuple[float, float]]] = {s: [] for s in SOURCES}
        self._last_ok: dict[str, tuple[float, float] | None] = {s: None for s in SOURCES}
        self._rejects = {s: 0 for s in SOURCES}
        self._launch_ref: dict[str, float | None] = {s: None for s in SOURCES}
        self._since: dict[str, float | None] = {k: None for k in _TIMERS}

    # --- samples ---

    def _gps_alt(self, alt_m: float | None, fix_valid: bool) -> float | None:
        lim = self.limits
        ok = (fix_valid and isinstance(alt_m, (int, float)) and not isinstance(alt_m, bool)
              and math.isfinite(alt_m) and lim.gps_alt_min_m <= alt_m <= lim.gps_alt_max_m)
        return float(alt_m) if ok else None

    def _accept(self, source: str, t: float, alt: float) -> bool:
        lim = self.limits
        last = self._last_ok[source]
        if last is not None and abs(alt - last[1]) > lim.spike_m + lim.max_speed_m_s * (t - last[0]):
            self._rejects[source] += 1
            if self._rejects[source] <= lim.max_rejects:
                return False
            # several "glitches" in a row: the reference was the glitch (or the world jumped)
            self._windows[source].clear()
            if self.phase is Phase.PRE_LAUNCH:
                self._launch_ref[source] = None
        self._rejects[source] = 0
        w = self._windows[source]
        w.append((t, alt))
        self._last_ok[source] = (t, alt)
        if self._launch_ref[source] is None and self._fittable(w):
            # the first full window's median: one noisy or glitched first sample is no reference
            self._launch_ref[source] = _median(sorted(a for _, a in w))
        return True

    def _fittable(self, w: list[tuple[float, float]]) -> bool:
        return len(w) >= self.limits.min_fit_samples and w[-1][0] - w[0][0] >= self.limits.min_fit_span_s

    def _fit(self, source: str, now: float) -> _Fit | None:
        w = self._windows[source]
        if not self._fittable(w):
            return None
        step = math.ceil(len(w) / self.limits.max_fit_samples)
        pts = w[::step] if (len(w) - 1) % step == 0 else w[::step] + [w[-1]]  # keep the newest
        slopes = sorted((a2 - a1) / (t2 - t1)
                        for i, (t1, a1) in enumerate(pts) for t2, a2 in pts[i + 1:] if t2 != t1)
        if not slopes:
            return None
        rate = _median(slopes)
        level = _median(sorted(a + rate * (now - t) for t, a in pts))
        alts = sorted(a for _, a in pts)
        n = len(alts) - 1
        return _Fit(level, rate, alts[math.ceil(0.9 * n)] - alts[math.floor(0.1 * n)])

    # --- transitions ---

    def _held(self, timer: str, condition: bool, now: float, dwell_s: float) -> bool:
        if not condition:
            self._since[timer] = None
            return False
        if self._since[timer] is None:
            self._since[timer] = now
        return now - self._since[timer] >= dwell_s

    def _next_phase(self, fit: _Fit, ref: float | None, now: float) -> Phase:
        lim = self.limits
        rate, alt = fit.rate_m_s, fit.alt_m
        if self.phase is Phase.PRE_LAUNCH:
            climbing = self._held("climb", rate > lim.launch_rate_m_s, now, lim.launch_dwell_s)
            risen = ref is not None and alt > ref + lim.launch_height_m
            if climbing or risen or alt > lim.max_ground_alt_m:
                return Phase.ASCENT
        elif self.phase in (Phase.ASCENT, Phase.FLOAT):
            # both timers run on every update, so neither dwell depends on the other's outcome
            falling = self._held("descent", rate < lim.descent_rate_m_s, now, lim.descent_dwell_s)
            floating = self.phase is Phase.ASCENT and self._held(
                "float", abs(rate) < lim.float_rate_m_s and alt > lim.float_min_alt_m, now, lim.float_dwell_s)
            if falling:
                return Phase.DESCENT
            if floating:
                return Phase.FLOAT
        elif self.phase is Phase.DESCENT:
            still = abs(rate) < lim.landed_rate_m_s or fit.spread_m < lim.landed_spread_m
            if self._held("landed", still and alt < lim.landed_max_alt_m, now, lim.landed_dwell_s):
                return Phase.LANDED
        return self.phase

    def update(self, now_s: float, alt_m: float | None, pressure_hpa: float | None, fix_valid: bool) -> Phase:
        now = float(now_s)
        if not math.isfinite(now):
            raise ValueError(f"now_s must be finite, got {now_s!r}")
        if self._last_s is not None and now < self._last_s:
            # the clock went back (a reboot with a new epoch): old samples would bend every fit
            self._forget_samples()
        self._last_s = now
        if self.phase_since_s is None:
            self.phase_since_s = now
        lim = self.limits
        for source in SOURCES:
            w = self._windows[source]
            while w and w[0][0] < now - lim.window_s:
                w.pop(0)

        readings = {"gps": self._gps_alt(alt_m, fix_valid), "pressure": pressure_altitude_m(pressure_hpa)}
        for source, value in readings.items():
            if value is not None:
                self._accept(source, now, value)
        # GPS when it has a fix and enough history, else pressure; a source without a
        # reading now is not used (its line would be extrapolated over the gap)
        source = next((s for s in SOURCES if readings[s] is not None and self._fittable(self._windows[s])), None)
        fit = self._fit(source, now) if source is not None else None
        if fit is None:
            self.alt_m = self.rate_m_s = self.source = None  # nothing acted on: report no stale estimate
            return self.phase
        self.alt_m, self.rate_m_s, self.source = fit.alt_m, fit.rate_m_s, source
        new = self._next_phase(fit, self._launch_ref[source], now)
        if new is not self.phase:
            self.phase, self.phase_since_s = new, now
            self._since = {k: None for k in _TIMERS}
        return self.phase

    def _forget_samples(self) -> None:
        self._windows = {s: [] for s in SOURCES}
        self._last_ok = {s: None for s in SOURCES}
        self._rejects = {s: 0 for s in SOURCES}
        self._since = {k: None for k in _TIMERS}

    # --- persistence: plain JSON-able values ---

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.VERSION,
            "phase": self.phase.value,
            "phase_since_s": self.phase_since_s,
            "last_s": self._last_s,
            "windows": {s: [list(p) for p in w] for s, w in self._windows.items()},
            "last_ok": {s: (list(v) if v is not None else None) for s, v in self._last_ok.items()},
            "rejects": dict(self._rejects),
            "launch_ref": dict(self._launch_ref),
            "since": dict(self._since),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], limits: PhaseLimits | None = None) -> PhaseDetector:
        """Restore ``to_dict()``'s output. Only "phase" is required (a daemon may persist just
        that); samples and timers left out are rebuilt from the next readings."""
        version = data.get("version", cls.VERSION)
        if version != cls.VERSION:
            raise ValueError(f"phase state version {version!r} is not {cls.VERSION}")
        try:
            d = cls(limits, Phase(data["phase"]))
            d.phase_since_s = _opt_float(data.get("phase_since_s"))
            d._last_s = _opt_float(data.get("last_s"))
            for s in SOURCES:
                d._windows[s] = [(float(t), float(a)) for t, a in data.get("windows", {}).get(s, [])]
                last = data.get("last_ok", {}).get(s)
                d._last_ok[s] = None if last is None else (float(last[0]), float(last[1]))
                d._rejects[s] = int(data.get("rejects", {}).get(s, 0))
                d._launch_ref[s] = _opt_float(data.get("launch_ref", {}).get(s))
            for k in _TIMERS:
                d._since[k] = _opt_float(data.get("since", {}).get(k))
        except KeyError as e:
            raise ValueError(f"phase state lacks {e}") from e
        except (TypeError, ValueError, AttributeError, IndexError) as e:
            raise ValueError(f"phase state is malformed: {e}") from e
        return d


def _median(xs_sorted: list[float]) -> float:
    n = len(xs_sorted)
    return xs_sorted[n // 2] if n % 2 else 0.5 * (xs_sorted[n // 2 - 1] + xs_sorted[n // 2])


def _opt_float(x: Any) -> float | None:
    return None if x is None else float(x)
