"""A circular low Earth orbit beside the balloon: where a small satellite is at flight time t.

Pure arithmetic, spherical Earth. The orbit is fixed in inertial space apart from the
J2 drift of its node (about −5 °/day at ISS-like inclinations); the Earth turns under it
at the sidereal rate, which makes the ground track walk west orbit by orbit. Eclipses use
a cylindrical shadow and the Astronomical Almanac's low-precision sun (good to ~0.01°,
far finer than the shadow model).

    lat, lon, alt_m = Orbit().position(t_s)
    Orbit().passes(GroundStation("home", 52.7, -2.75), 0, 86_400)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone

from ..channel.radio import GroundStation, elevation_deg

MU_KM3_S2 = 398_600.4418  # Earth's gravitational parameter
EARTH_EQ_RADIUS_KM = 6378.137  # sets the orbit's radius and the shadow's
EARTH_MEAN_RADIUS_KM = 6371.0  # the ground track's sphere, as in sim/channel/radio.py
J2 = 1.08263e-3
JD_UNIX_EPOCH = 2_440_587.5
JD_J2000 = 2_451_545.0
DEFAULT_EPOCH = datetime(2025, 3, 20, 12, 0, tzinfo=timezone.utc)  # near equinox: a fixed, repeatable start


def julian_date(when: datetime) -> float:
    if when.tzinfo is None:
        raise ValueError("epoch must be timezone-aware (UTC)")
    return JD_UNIX_EPOCH + when.timestamp() / 86_400.0


def gmst_deg(jd: float) -> float:
    """Greenwich mean sidereal time: the angle from the vernal equinox to Greenwich."""
    return (280.46061837 + 360.98564736629 * (jd - JD_J2000)) % 360.0


def sun_direction(jd: float) -> tuple[float, float, float]:
    """Unit vector to the Sun in the equatorial (inertial) frame, low precision."""
    n = jd - JD_J2000
    mean_lon = math.radians((280.460 + 0.9856474 * n) % 360)
    anomaly = math.radians((357.528 + 0.9856003 * n) % 360)
    ecl_lon = mean_lon + math.radians(1.915) * math.sin(anomaly) + math.radians(0.020) * math.sin(2 * anomaly)
    obliquity = math.radians(23.439 - 4e-7 * n)
    return (math.cos(ecl_lon), math.cos(obliquity) * math.sin(ecl_lon), math.sin(obliquity) * math.sin(ecl_lon))


@dataclass(frozen=True)
class Pass:
    start_s: float
    end_s: float
    max_elev_deg: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass(frozen=True)
class Orbit:
    altitude_km: float = 500.0
    inclination_deg: float = 51.6
    raan_deg: float = 0.0  # right ascension of the ascending node at the epoch
    arg_latitude_deg: float = 0.0  # where along the orbit the satellite is at the epoch (0: ascending node)
    epoch: datetime = DEFAULT_EPOCH  # flight time 0
    j2: bool = True  # let the node drift as the Earth's bulge makes it

    @property
    def radius_km(self) -> float:
        return EARTH_EQ_RADIUS_KM + self.altitude_km

    @property
    def period_s(self) -> float:
        """Kepler's third law: T = 2π·√(a³/μ)."""
        return 2 * math.pi * math.sqrt(self.radius_km**3 / MU_KM3_S2)

    @property
    def node_rate_deg_s(self) -> float:
        if not self.j2:
            return 0.0
        n = 2 * math.pi / self.period_s
        rate = -1.5 * n * J2 * (EARTH_EQ_RADIUS_KM / self.radius_km) ** 2 * math.cos(math.radians(self.inclination_deg))
        return math.degrees(rate)

    def _jd(self, t_s: float) -> float:
        return julian_date(self.epoch) + t_s / 86_400.0

    def eci_km(self, t_s: float) -> tuple[float, float, float]:
        """Position in the inertial equatorial frame (x towards the vernal equinox)."""
        u = math.radians(self.arg_latitude_deg) + 2 * math.pi * t_s / self.period_s
        node = math.radians(self.raan_deg + self.node_rate_deg_s * t_s)
        inc = math.radians(self.inclination_deg)
        r = self.radius_km
        cu, su, cn, sn = math.cos(u), math.sin(u), math.cos(node), math.sin(node)
        return (r * (cn * cu - sn * su * math.cos(inc)),
                r * (sn * cu + cn * su * math.cos(inc)),
                r * su * math.sin(inc))

    def position(self, t_s: float) -> tuple[float, float, float]:
        """(lat, lon in −180..180, alt_m) over the turning Earth, at flight time t_s."""
        x, y, z = self.eci_km(t_s)
        r = math.sqrt(x * x + y * y + z * z)
        lat = math.degrees(math.asin(z / r))
        lon = math.degrees(math.atan2(y, x)) - gmst_deg(self._jd(t_s))
        lon = (lon + 180.0) % 360.0 - 180.0
        return lat, lon, (r - EARTH_MEAN_RADIUS_KM) * 1000.0

    def in_eclipse(self, t_s: float) -> bool:
        """Inside the Earth's cylindrical shadow: behind the Earth and within its radius of the Sun line."""
        r = self.eci_km(t_s)
        s = sun_direction(self._jd(t_s))
        along = sum(a * b for a, b in zip(r, s))
        if along >= 0:
            return False
        off_axis = math.sqrt(max(sum(a * a for a in r) - along * along, 0.0))
        return off_axis < EARTH_EQ_RADIUS_KM

    def elevation_deg(self, station: GroundStation, t_s: float) -> float:
        return elevation_deg(station, self.position(t_s))

    def passes(self, station: GroundStation, t0_s: float, t1_s: float, min_elev_deg: float = 5.0,
               step_s: float = 10.0) -> list[Pass]:
        """Windows in [t0, t1] with the satellite above `min_elev_deg`. Sampled every
        `step_s` (a pass lasts minutes, so 10 s misses none worth having), edges refined by
        bisection to ~0.1 s; a pass already under way at t0 or still up at t1 is cut there."""

        def above(t: float) -> float:
            return self.elevation_deg(station, t) - min_elev_deg

        def edge(lo: float, hi: float) -> float:  # above() changes sign between lo and hi
            rising = above(lo) < 0
            while hi - lo > 0.1:
                mid = (lo + hi) / 2
                if (above(mid) < 0) == rising:
                    lo = mid
                else:
                    hi = mid
            return (lo + hi) / 2

        def refine_peak(t_best: float) -> float:  # elevation is unimodal within a pass: ternary search
            lo, hi = max(t_best - step_s, t0_s), min(t_best + step_s, t1_s)
            while hi - lo > 0.5:
                m1, m2 = lo + (hi - lo) / 3, hi - (hi - lo) / 3
                if above(m1) < above(m2):
                    lo = m1
                else:
                    hi = m2
            return max(above(t_best), above((lo + hi) / 2)) + min_elev_deg

        out: list[Pass] = []
        first = above(t0_s)
        start: float | None = t0_s if first >= 0 else None
        best_t, best = t0_s, first
        t_prev, t = t0_s, t0_s
        while t < t1_s:
            t = min(t + step_s, t1_s)
            value = above(t)
            if start is None and value >= 0:
                start, best_t, best = edge(t_prev, t), t, value
            if start is not None:
                if value > best:
                    best_t, best = t, value
                if value < 0:
                    out.append(Pass(start, edge(t_prev, t), refine_peak(best_t)))
                    start = None
            t_prev = t
        if start is not None:
            out.append(Pass(start, t1_s, refine_peak(best_t)))
        return out
