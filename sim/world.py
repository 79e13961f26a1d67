"""A balloon flight as a pure function of time: where it is and what its sensors would read.

Ascent at a steady rate to a burst altitude, then descent under a parachute whose
speed follows air density (fast in thin air, ~5 m/s at the ground), drifting with
winds that strengthen towards the jet stream. Deterministic for a given seed.
The bench world of a later issue adds weather, sun, heat and power in depth.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from . import atmosphere

EARTH_RADIUS_M = 6_371_000.0


@dataclass(frozen=True)
class FlightPlan:
    seed: int = 1
    launch_lat: float = 52.7000  # a field in Shropshire: the prevailing westerlies carry it inland
    launch_lon: float = -2.7500
    launch_alt_m: float = 20.0
    ascent_rate_m_s: float = 5.0
    burst_alt_m: float | None = None  # None: drawn from the seed, 30-35 km
    descent_rate_sea_level_m_s: float = 5.0
    battery_full_mv: int = 4150
    battery_empty_mv: int = 3300
    battery_hours: float = 6.0


@dataclass(frozen=True)
class WorldState:
    t_s: float  # seconds since launch
    phase: str  # ascent, descent, landed
    lat: float
    lon: float
    alt_m: float
    temp_c: float  # outside air
    pressure_hpa: float
    sats: int
    batt_mv: int


class Flight:
    def __init__(self, plan: FlightPlan | None = None):
        self.plan = plan or FlightPlan()
        rng = random.Random(self.plan.seed)
        self.burst_alt_m = self.plan.burst_alt_m or rng.uniform(30_000, 35_000)
        self.ascent_s = (self.burst_alt_m - self.plan.launch_alt_m) / self.plan.ascent_rate_m_s
        # Winds: speed by altitude band, direction mostly westerly with a seeded veer.
        self._wind_dir = math.radians(rng.uniform(240, 290))  # from, degrees
        self._wind_scale = rng.uniform(0.7, 1.3)
        self._sat_rng_seed = rng.randrange(1 << 30)
        self._descent_profile = self._integrate_descent()
        self.descent_s = self._descent_profile[-1][0]
        self.duration_s = self.ascent_s + self.descent_s

    # ---------------------------------------------------------------- vertical motion

    def descent_rate_m_s(self, alt_m: float) -> float:
        # Terminal velocity scales with 1/sqrt(density).
        rho0 = atmosphere.density_kg_m3(0.0)
        return self.plan.descent_rate_sea_level_m_s * math.sqrt(rho0 / atmosphere.density_kg_m3(alt_m))

    def _integrate_descent(self, step_s: float = 5.0) -> list[tuple[float, float]]:
        t, alt = 0.0, self.burst_alt_m
        profile = [(t, alt)]
        while alt > self.plan.launch_alt_m:
            alt = max(alt - self.descent_rate_m_s(alt) * step_s, self.plan.launch_alt_m)
            t += step_s
            profile.append((t, alt))
        return profile

    def altitude_m(self, t_s: float) -> float:
        if t_s <= 0:
            return self.plan.launch_alt_m
        if t_s <= self.ascent_s:
            return self.plan.launch_alt_m + self.plan.ascent_rate_m_s * t_s
        td = t_s - self.ascent_s
        prof = self._descent_profile
        if td >= prof[-1][0]:
            return self.plan.launch_alt_m
        i = int(td // 5.0)
        (t0, a0), (t1, a1) = prof[i], prof[min(i + 1, len(prof) - 1)]
        return a0 + (a1 - a0) * ((td - t0) / (t1 - t0) if t1 > t0 else 0.0)

    def phase(self, t_s: float) -> str:
        if t_s <= 0:
            return "pre-launch"
        if t_s <= self.ascent_s:
            return "ascent"
        if t_s < self.duration_s:
            return "descent"
        return "landed"

    # ---------------------------------------------------------------- horizontal drift

    def wind_speed_m_s(self, alt_m: float) -> float:
        # Light near the ground, a jet-stream maximum near 11 km, calm in the stratosphere.
        jet = 35.0 * math.exp(-(((alt_m - 11_000) / 4_000) ** 2))
        return self._wind_scale * (4.0 + jet + 3.0 * min(alt_m, 5_000) / 5_000)

    def _drift_m(self, t_s: float, step_s: float = 30.0) -> float:
        t, dist = 0.0, 0.0
        end = min(max(t_s, 0.0), self.duration_s)
        while t < end:
            dt = min(step_s, end - t)
            dist += self.wind_speed_m_s(self.altitude_m(t + dt / 2)) * dt
            t += dt
        return dist

    def position(self, t_s: float) -> tuple[float, float]:
        d = self._drift_m(t_s)
        bearing = self._wind_dir + math.pi  # wind blows towards the opposite of where it comes from
        lat0 = math.radians(self.plan.launch_lat)
        lon0 = math.radians(self.plan.launch_lon)
        ang = d / EARTH_RADIUS_M
        lat = math.asin(math.sin(lat0) * math.cos(ang) + math.cos(lat0) * math.sin(ang) * math.cos(bearing))
        lon = lon0 + math.atan2(
            math.sin(bearing) * math.sin(ang) * math.cos(lat0), math.cos(ang) - math.sin(lat0) * math.sin(lat)
        )
        return math.degrees(lat), math.degrees(lon)

    # ---------------------------------------------------------------- the whole state

    def state_at(self, t_s: float) -> WorldState:
        alt = self.altitude_m(t_s)
        lat, lon = self.position(t_s)
        sats = 6 + random.Random(self._sat_rng_seed + int(t_s // 60)).randrange(0, 7)
        frac = min(max(t_s, 0.0) / (self.plan.battery_hours * 3600), 1.0)
        cold = max(0.0, -atmosphere.temperature_k(alt) + 273.15) * 2.0  # mV of sag per °C below zero
        batt = self.plan.battery_full_mv - frac * (self.plan.battery_full_mv - self.plan.battery_empty_mv) - cold
        return WorldState(
            t_s=t_s,
            phase=self.phase(t_s),
            lat=lat,
            lon=lon,
            alt_m=alt,
            temp_c=atmosphere.temperature_k(alt) - 273.15,
            pressure_hpa=atmosphere.pressure_pa(alt) / 100.0,
            sats=sats,
            batt_mv=int(round(batt)),
        )
