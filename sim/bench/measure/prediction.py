"""How far the landing prediction (groundstation/predict.py) lands from the real landing, over
bench-world flights it has never seen: for `make bench`.

Each flight is the bench world (`sim.world.flight.Flight`) from its own seed, with an ascent rate
drawn from 4 to 6 m/s and a parachute from 4 to 7 m/s at sea level, heard as a ground station
hears it: a position every 30 s, a fifth of them lost, GPS noise of a few metres. The predictor
is told only what a crew knows before launch: the balloon's nominal burst altitude (30 km; the
flights burst at 30-35 km) and a nominal parachute of 5 m/s. It predicts once at the burst (the
last position heard before it) and once on the way down at 5 km; the error is the great-circle
distance to where the flight really landed, and "inside" is whether the landing fell in the
prediction's 95 % ellipse.

Limits: the bench's winds do not change with time, and the balloon falls through the same air
it rose through; real winds move over the hours of a flight, so real errors at burst are
larger (the ellipse allows for that: WIND_DRIFT_M_S).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from groundstation import predict as P
from stratoecho.geo import distance_m, moved, offset_m

from ...world.flight import Flight, FlightPlan

SEEDS = range(10_000, 10_100)  # no test uses these
EVERY_S = 30.0
LOSS = 0.2


@dataclass(frozen=True)
class Miss:
    at: str  # "burst" or "5 km"
    error_m: float
    inside: bool  # the real landing inside the 95 % ellipse


def heard(flight: Flight, until_s: float, rng: random.Random) -> list[P.Fix]:
    fixes, t = [], 0.0
    while t <= until_s:
        if rng.random() >= LOSS:
            s = flight.state_at(t)
            lat, lon = moved(s.lat, s.lon, rng.gauss(0, 3.0), rng.gauss(0, 3.0))
            fixes.append(P.Fix(t, lat, lon, s.alt_m + rng.gauss(0, 5.0)))
        t += EVERY_S
    return fixes


def _inside(p: P.Prediction, lat: float, lon: float) -> bool:
    east, north = offset_m(p.lat, p.lon, lat, lon)
    e = p.ellipse
    if e.semi_major_m <= 0:
        return False
    b = math.radians(e.bearing_deg)  # the major axis as (east, north): (sin b, cos b)
    along = east * math.sin(b) + north * math.cos(b)
    across = east * math.cos(b) - north * math.sin(b)
    return (along / e.semi_major_m) ** 2 + (across / max(e.semi_minor_m, 1.0)) ** 2 <= 1.0


def fly(seed: int) -> list[Miss]:
    rng = random.Random(seed * 7919)
    plan = FlightPlan(seed=seed, ascent_rate_m_s=rng.uniform(4.0, 6.0),
                      descent_rate_sea_level_m_s=rng.uniform(4.0, 7.0))
    flight = Flight(plan)
    landing = flight.position(flight.duration_s)
    down_to_5km = flight.ascent_s
    while flight.altitude_m(down_to_5km) > 5_000:
        down_to_5km += 5.0
    misses = []
    for at, until in (("burst", flight.ascent_s), ("5 km", down_to_5km)):
        p = P.predict(heard(flight, until, random.Random(seed)), ground_alt_m=plan.launch_alt_m, seed=seed)
        misses.append(Miss(at, distance_m(p.lat, p.lon, *landing), _inside(p, *landing)))
    return misses


def percentile(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, max(0, math.ceil(q / 100 * len(v)) - 1))]


def run(seeds=SEEDS) -> dict[str, dict[str, float]]:
    """{"burst": {...}, "5 km": {...}}: median and 90th-percentile error (km), share inside."""
    by: dict[str, list[Miss]] = {}
    for seed in seeds:
        for m in fly(seed):
            by.setdefault(m.at, []).append(m)
    return {at: {"flights": len(ms), "median_km": percentile([m.error_m for m in ms], 50) / 1000,
                 "p90_km": percentile([m.error_m for m in ms], 90) / 1000,
                 "inside": sum(m.inside for m in ms) / len(ms)} for at, ms in by.items()}
