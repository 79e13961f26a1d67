"""Where the balloon will land, from its own track: winds measured on the way up, the burst
altitude expected (or seen), and a parachute whose speed follows the air's density.

Pure logic, no I/O: `predict(fixes)` takes the positions heard so far and returns a Prediction
(or None while there is too little to go on). It is cheap enough to run on every new position.

How (the method of the HAB community's live predictors, on the flight's own data):

- **Winds.** Each pair of consecutive fixes gives the horizontal velocity of the air at their
  mean height (the balloon drifts with it). Velocities are averaged in layers of `LAYER_M`,
  weighted by the time spent; where the balloon passed a layer twice (up, then down), the
  newer passage counts. Between measured layers the wind is interpolated; above the highest
  the highest one holds, below the lowest the lowest.
- **Up.** While it climbs, it goes on climbing at its recent rate to the burst altitude:
  `burst_alt_m` as given (the balloon's own figure from the manufacturer's table), or, once
  the balloon is above that, a little above where it is now. Once it descends, the burst is
  the highest altitude heard.
- **Down.** A parachute's terminal speed goes as 1/sqrt(air density): v(h) = v0 * sqrt(rho0 /
  rho(h)), fast in thin air, `v0` near the ground. `v0` is measured from the descent heard so
  far (the median of observed rate / sqrt(rho0/rho) over the last minutes), else assumed
  (`descent_rate_m_s`, the parachute's sea-level rate). The air is the International Standard
  Atmosphere (stratoecho.atmosphere).
- **Ground.** `ground_alt_m` as given, else the lowest altitude heard before launch (the first
  fix), else 0.
- **Uncertainty.** `samples` more flights with the unknowns drawn at random (seeded: the same
  fixes give the same ellipse): each layer's wind off by its measured spread and by
  `WIND_DRIFT_M_S` for the hours since it was measured, the burst altitude by
  `BURST_SIGMA_M` while it is still to come, `v0` by 15 % while unmeasured (5 % once
  measured). Their landings' covariance gives the ellipse that holds 95 % of them.

Positions are in degrees, heights in metres, times in seconds on any increasing clock.
"""

from __future__ import annotations

import math
import random
import threading
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

from stratoecho import atmosphere
from stratoecho.cli import place, positive_number
from stratoecho.geo import moved, offset_m

from .exports.base import has_fix, telemetry_datetime, utc_time

LAYER_M = 500.0
DEFAULT_BURST_ALT_M = 30_000.0  # a common 1200 g balloon's figure; pass the balloon's own
DEFAULT_DESCENT_RATE_M_S = 5.0  # a parachute sized for ~5 m/s at the ground, the usual choice
BURST_SIGMA_M = 2_000.0  # a burst altitude from a table is good to about this
BURST_MARGIN_M = 500.0  # above the expected burst and still climbing: burst assumed this far up
WIND_DRIFT_M_S = 1.5  # how far a layer's wind may have moved since it was measured, per hour
DESCENT_SIGMA = 0.15  # v0 unmeasured: its relative uncertainty; measured: DESCENT_SIGMA_SEEN
DESCENT_SIGMA_SEEN = 0.05
MOVING_M_S = 0.5  # slower than this up or down: not climbing, not falling
RATE_WINDOW_S = 120.0  # the vertical rate is taken over the fixes of this last stretch
DESCENT_FIT_S = 600.0  # v0 is measured over this last stretch of the descent
MAX_GAP_S = 900.0  # fixes further apart than this say nothing about the wind between them
STEP_S = 10.0
SAMPLES = 100
ELLIPSE_CHI2_95 = 5.991  # chi-squared, 2 degrees of freedom, 95 %
RHO0 = atmosphere.density_kg_m3(0.0)


@dataclass(frozen=True)
class Fix:
    t_s: float
    lat: float
    lon: float
    alt_m: float


@dataclass(frozen=True)
class Ellipse:
    """Where 95 % of the sampled landings fell: semi-axes in metres, the major axis's bearing."""

    semi_major_m: float
    semi_minor_m: float
    bearing_deg: float  # of the major axis, clockwise from north, 0..180


@dataclass(frozen=True)
class Prediction:
    phase: str  # "ascent", "descent" or "landed"
    lat: float  # the predicted landing
    lon: float
    ellipse: Ellipse
    landing_in_s: float  # from the last fix
    burst_alt_m: float
    burst_seen: bool  # the burst altitude is the highest heard, not the expected one
    burst_in_s: float | None  # from the last fix, while climbing
    vertical_rate_m_s: float  # now: + up, - down
    descent_rate_m_s: float  # v0, the parachute's rate at sea-level density, as used
    descent_rate_measured: bool
    ground_alt_m: float
    layers: int  # wind layers measured
    t_s: float  # the last fix's time: the prediction is as of then


@dataclass(frozen=True)
class Chase:
    """What the crew knows before launch, for the prediction, and where they are."""

    burst_alt_m: float = DEFAULT_BURST_ALT_M
    descent_rate_m_s: float = DEFAULT_DESCENT_RATE_M_S
    home: tuple[float, float, float] | None = None  # lat, lon, alt of the station or the car


def add_chase_arguments(parser, where: str | None) -> None:
    """--burst-alt, --descent-rate and --from/--station (named `where`; None: none) for `watch`,
    `serve` and `listen --udp-feed-landing`."""
    parser.add_argument("--burst-alt", type=positive_number("metres"), default=DEFAULT_BURST_ALT_M, metavar="M",
                        help="the balloon's expected burst altitude, for the landing prediction until the burst is "
                             f"seen (default {DEFAULT_BURST_ALT_M:,.0f}; take the figure from the balloon's table)")
    parser.add_argument("--descent-rate", type=positive_number("m/s"), default=DEFAULT_DESCENT_RATE_M_S,
                        metavar="M/S", help="the parachute's descent rate at the ground, until the descent measures "
                                            f"it (default {DEFAULT_DESCENT_RATE_M_S:g})")
    if where is None:
        return
    parser.add_argument(where, dest="home", nargs="+", type=float, metavar="COORD",
                        help="LAT LON [ALT]: where you are (the station or the chase car, degrees and metres): "
                             "distance, bearing and elevation to the balloon and to the predicted landing")


def chase_from_args(args, where: str) -> Chase:
    """The Chase that add_chase_arguments' options describe; ValueError naming the option."""
    home = getattr(args, "home", None)
    return Chase(args.burst_alt, args.descent_rate, place(home, where) if home else None)


class Landing:
    """The prediction from telemetry rows, computed again only when a new position arrived
    (`watch` refreshes every second; the dashboard answers every browser)."""

    def __init__(self, chase: Chase):
        self.chase = chase
        self._key: tuple | None = None
        self._last: Prediction | None = None
        self._lock = threading.Lock()  # the dashboard asks from a thread per request

    def __call__(self, rows) -> Prediction | None:
        key = (len(rows), rows[-1].id if rows else None)
        with self._lock:
            if key != self._key:
                self._last = predict(track(rows), burst_alt_m=self.chase.burst_alt_m,
                                     descent_rate_m_s=self.chase.descent_rate_m_s)
                self._key = key
            return self._last


class FeedLanding:
    """Positions as they are heard, one flight per callsign and boot, and the landing worked out
    from them at most every `every_s` of flight time: for the chase-car feed (exports/udp_feed),
    which sees sentences one at a time. The prediction takes ~0.2 s on a laptop core while the
    balloon climbs, in the listener's thread: not for every sentence."""

    def __init__(self, chase: Chase, every_s: float = 30.0):
        self.chase, self.every_s = chase, every_s
        self._flights: dict[str, tuple[int, list[Fix], float]] = {}  # callsign: boot, fixes, last predicted

    def __call__(self, callsign: str, boot: int, t_s: float, lat: float, lon: float, alt_m: float) -> Prediction | None:
        """The new landing after this fix (`t_s`: its time, seconds since the epoch), or None: not
        due yet, too few fixes, or landed."""
        fix = Fix(t_s, lat, lon, alt_m)
        flight_boot, fixes, last = self._flights.get(callsign, (boot, [], -math.inf))
        if boot != flight_boot:
            fixes, last = [], -math.inf
        fixes.append(fix)
        due = fix.t_s - last >= self.every_s
        self._flights[callsign] = (boot, fixes, fix.t_s if due else last)
        if not due:
            return None
        p = predict(fixes, burst_alt_m=self.chase.burst_alt_m, descent_rate_m_s=self.chase.descent_rate_m_s)
        return None if p is None or p.phase == "landed" else p


def track(rows) -> list[Fix]:
    """The positions of the latest boot among telemetry rows (store.TelemetryRow, any order)
    as fixes: the sentence's own time dated by when it was heard (seconds since the epoch),
    positions without a GPS fix left out."""
    rows = [r for r in rows if has_fix(r)]
    if not rows:
        return []
    boot = max(r.boot for r in rows)
    fixes = []
    for r in rows:
        if r.boot != boot:
            continue
        try:
            t = telemetry_datetime(r.time, utc_time(r.received_at)).timestamp()
        except ValueError:
            continue
        fixes.append(Fix(t, r.lat, r.lon, float(r.alt)))
    return fixes


# ----------------------------------------------------------------------------- winds


@dataclass
class _Layer:
    east: float = 0.0
    north: float = 0.0
    weight: float = 0.0
    sq: float = 0.0  # weighted sum of squared speeds, for the spread
    t_s: float = 0.0  # when measured (the newest sample's time)

    def add(self, east: float, north: float, dt: float, t_s: float) -> None:
        self.east += east * dt
        self.north += north * dt
        self.sq += (east * east + north * north) * dt
        self.weight += dt
        self.t_s = max(self.t_s, t_s)

    def mean(self) -> tuple[float, float]:
        return self.east / self.weight, self.north / self.weight

    def spread(self) -> float:
        """Standard deviation of the samples' vector wind about the mean (m/s), 0.5 at least."""
        e, n = self.mean()
        return math.sqrt(max(self.sq / self.weight - e * e - n * n, 0.25))


class Winds:
    """The wind profile measured along the track: (east, north) m/s by height."""

    def __init__(self, fixes: Sequence[Fix], turn: int):
        """`turn`: the index of the highest fix; passages after it (down) replace those before (up)."""
        up: dict[int, _Layer] = {}
        down: dict[int, _Layer] = {}
        for i in range(1, len(fixes)):
            a, b = fixes[i - 1], fixes[i]
            dt = b.t_s - a.t_s
            if not 0 < dt <= MAX_GAP_S:
                continue
            east, north = offset_m(a.lat, a.lon, b.lat, b.lon)
            k = int(((a.alt_m + b.alt_m) / 2) // LAYER_M)
            (down if i > turn else up).setdefault(k, _Layer()).add(east / dt, north / dt, dt, b.t_s)
        self.layers = {**up, **down}
        self.keys = sorted(self.layers)
        self._means = {k: self.layers[k].mean() for k in self.keys}

    def __len__(self) -> int:
        return len(self.keys)

    def at(self, alt_m: float, offsets: dict[int, tuple[float, float]] | None = None) -> tuple[float, float]:
        """The wind at `alt_m`: linear between the measured layers' centres; `offsets` adds a
        per-layer error (the Monte Carlo draws)."""
        keys = self.keys
        x = alt_m / LAYER_M - 0.5  # layer k's centre is at (k + 0.5) * LAYER_M

        def value(k: int) -> tuple[float, float]:
            e, n = self._means[k]
            if offsets:
                de, dn = offsets[k]
                return e + de, n + dn
            return e, n

        if x <= keys[0]:
            return value(keys[0])
        if x >= keys[-1]:
            return value(keys[-1])
        i = bisect_right(keys, x)  # keys[i - 1] <= x < keys[i]
        lo, hi = keys[i - 1], keys[i]
        f = (x - lo) / (hi - lo)
        (e0, n0), (e1, n1) = value(lo), value(hi)
        return e0 + (e1 - e0) * f, n0 + (n1 - n0) * f


# ----------------------------------------------------------------------------- the flight to come


def descent_rate_at(v0: float, alt_m: float) -> float:
    """The parachute's speed (m/s, positive) at `alt_m`, from its sea-level rate `v0`."""
    return v0 * math.sqrt(RHO0 / atmosphere.density_kg_m3(alt_m))


def _fly(lat: float, lon: float, alt: float, climb_m_s: float | None, burst: float, v0: float, ground: float,
         winds: Winds, offsets: dict | None) -> tuple[float, float, float, float | None]:
    """(lat, lon, seconds to landing, seconds to burst or None) from here."""
    t, burst_in = 0.0, None
    if climb_m_s is not None:
        while alt < burst:
            dt = min(STEP_S * 2, (burst - alt) / climb_m_s)
            e, n = winds.at(alt + climb_m_s * dt / 2, offsets)
            lat, lon = moved(lat, lon, e * dt, n * dt)
            alt += climb_m_s * dt
            t += dt
        burst_in = t
    while alt > ground:
        rate = descent_rate_at(v0, alt)
        mid = alt - rate * STEP_S / 2
        rate = descent_rate_at(v0, max(mid, ground))
        dt = min(STEP_S, (alt - ground) / rate)
        e, n = winds.at(alt - rate * dt / 2, offsets)
        lat, lon = moved(lat, lon, e * dt, n * dt)
        alt -= rate * dt
        t += dt
    return lat, lon, t, burst_in


def _rate(fixes: Sequence[Fix]) -> float:
    """Vertical speed over the last RATE_WINDOW_S (least squares), m/s."""
    last = fixes[-1].t_s
    recent = [f for f in fixes if f.t_s >= last - RATE_WINDOW_S]
    if len(recent) < 2:
        recent = list(fixes[-2:])
    n = len(recent)
    mt = sum(f.t_s for f in recent) / n
    ma = sum(f.alt_m for f in recent) / n
    var = sum((f.t_s - mt) ** 2 for f in recent)
    return sum((f.t_s - mt) * (f.alt_m - ma) for f in recent) / var if var > 0 else 0.0


def _measured_v0(fixes: Sequence[Fix], turn: int) -> float | None:
    """The parachute's sea-level rate from the descent heard (the last DESCENT_FIT_S of it)."""
    down = fixes[turn:]
    if len(down) < 3 or down[-1].t_s - down[0].t_s < 60:
        return None
    last = down[-1].t_s
    estimates = []
    for a, b in zip(down, down[1:]):
        dt = b.t_s - a.t_s
        if b.t_s < last - DESCENT_FIT_S or not 0 < dt <= MAX_GAP_S or b.alt_m >= a.alt_m:
            continue
        rate = (a.alt_m - b.alt_m) / dt
        estimates.append(rate / math.sqrt(RHO0 / atmosphere.density_kg_m3((a.alt_m + b.alt_m) / 2)))
    if len(estimates) < 2:
        return None
    estimates.sort()
    return estimates[len(estimates) // 2]


def predict(fixes: Sequence[Fix], *, burst_alt_m: float = DEFAULT_BURST_ALT_M, ground_alt_m: float | None = None,
            descent_rate_m_s: float = DEFAULT_DESCENT_RATE_M_S, samples: int = SAMPLES,
            seed: int = 0) -> Prediction | None:
    """The landing predicted from `fixes` (in time order; repeats and older duplicates are
    dropped). None until there are 3 fixes over a minute or more with some wind measured."""
    if burst_alt_m <= 0 or descent_rate_m_s <= 0 or samples < 0:
        raise ValueError("burst altitude and descent rate must be positive, samples 0 or more")
    clean: list[Fix] = []
    for f in sorted(fixes, key=lambda f: f.t_s):
        if not clean or f.t_s > clean[-1].t_s:
            clean.append(f)
    if len(clean) < 3 or clean[-1].t_s - clean[0].t_s < 60:
        return None
    turn = max(range(len(clean)), key=lambda i: clean[i].alt_m)
    winds = Winds(clean, turn)
    if not len(winds):
        return None
    last = clean[-1]
    ground = ground_alt_m if ground_alt_m is not None else min(clean[0].alt_m, last.alt_m)
    rate = _rate(clean)
    highest = clean[turn].alt_m
    if rate > MOVING_M_S:
        phase, burst_seen = "ascent", False
        burst = max(burst_alt_m, last.alt_m + BURST_MARGIN_M)
    elif rate < -MOVING_M_S or (highest - last.alt_m > 1_000 and last.alt_m > ground + 200):
        phase, burst, burst_seen = "descent", highest, True
    else:
        phase, burst, burst_seen = ("landed" if highest - last.alt_m > 1_000 or last.alt_m <= ground + 200
                                    else "ascent"), highest, highest - last.alt_m > 1_000
    measured_v0 = _measured_v0(clean, turn) if phase == "descent" else None
    v0 = measured_v0 or descent_rate_m_s
    if phase == "landed":
        return Prediction("landed", last.lat, last.lon, Ellipse(0.0, 0.0, 0.0), 0.0, burst, burst_seen, None, rate,
                          v0, measured_v0 is not None, ground, len(winds), last.t_s)
    climb = max(rate, MOVING_M_S * 2) if phase == "ascent" else None
    lat, lon, landing_in, burst_in = _fly(last.lat, last.lon, last.alt_m, climb, burst, v0, ground, winds, None)

    rng = random.Random(seed)
    points = []
    for _ in range(samples):
        offsets = {}
        for k, layer in winds.layers.items():
            age_h = max(last.t_s - layer.t_s, 0.0) / 3600 + landing_in / 3600 / 2
            sigma = math.hypot(layer.spread() / math.sqrt(max(layer.weight / 60, 1.0)), WIND_DRIFT_M_S * age_h)
            offsets[k] = (rng.gauss(0, sigma), rng.gauss(0, sigma))
        b = burst if burst_seen else max(burst + rng.gauss(0, BURST_SIGMA_M), last.alt_m + 1)
        v = v0 * max(0.3, 1 + rng.gauss(0, DESCENT_SIGMA_SEEN if measured_v0 else DESCENT_SIGMA))
        plat, plon, _, _ = _fly(last.lat, last.lon, last.alt_m, climb, b, v, ground, winds, offsets)
        points.append(offset_m(lat, lon, plat, plon))
    return Prediction(phase, lat, lon, _ellipse(points), landing_in, burst, burst_seen, burst_in, rate, v0,
                      measured_v0 is not None, ground, len(winds), last.t_s)


def _ellipse(points: list[tuple[float, float]]) -> Ellipse:
    """The 95 % ellipse of points about (0, 0), the deterministic landing."""
    if len(points) < 2:
        return Ellipse(0.0, 0.0, 0.0)
    n = len(points)
    see = sum(e * e for e, _ in points) / n
    snn = sum(nn * nn for _, nn in points) / n
    sen = sum(e * nn for e, nn in points) / n
    half_trace, det = (see + snn) / 2, see * snn - sen * sen
    gap = math.sqrt(max(half_trace * half_trace - det, 0.0))
    big, small = half_trace + gap, max(half_trace - gap, 0.0)
    # The major axis: the eigenvector (big - snn, sen) as (east, north), as a bearing from north.
    if abs(sen) > 1e-9 * max(big, 1e-12):
        bearing = math.degrees(math.atan2(big - snn, sen)) % 180.0
    else:
        bearing = 90.0 if see >= snn else 0.0
    scale = math.sqrt(ELLIPSE_CHI2_95)
    return Ellipse(scale * math.sqrt(big), scale * math.sqrt(small), bearing)
