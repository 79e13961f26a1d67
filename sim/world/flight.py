"""A balloon flight as a pure function of time: where it is and what its sensors would read.

Vertical: ascent from the launch altitude to a burst altitude, a little faster as the air
thins (a latex balloon expands and speeds up by ~15 % on the way to 30 km), then descent
under a parachute whose terminal speed goes as 1/sqrt(density): fast in thin air, ~5 m/s
at the ground.

Horizontal: a seeded wind profile, one (east, north) vector every 2 km up to 36 km,
interpolated in altitude: light near the ground, a jet stream near 10-12 km, and in the
stratosphere summer easterlies (winter westerlies), so a summer track runs east below
and back west above. The drift is integrated as a vector along the flight once, at
construction, on a 5 s grid; `position` and `state_at` interpolate that grid, so they
cost the same at any time of the flight.

Air: the ISA (`stratoecho.atmosphere`), optionally colder by `cold_offset_c` at every height (a
cold-soak scenario); density follows the colder air at the ISA pressure.

Sun: `sim.world.sun` at the balloon's position and the flight's UTC; a balloon is sunlit while
the sun stands above its dipped horizon.

Deterministic for a given plan. The battery voltage here is a no-load estimate only:
`sim.world.power` models the battery, its load and its temperature.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from payload.parts.sensors import Readings
from stratoecho import atmosphere
from stratoecho.clock import Clock
from stratoecho.geo import EARTH_RADIUS_M

from .sun import solar_elevation_deg, sun_visible

SEA_LEVEL_DENSITY = atmosphere.density_kg_m3(0.0)
TRACK_STEP_S = 5.0
WIND_LAYER_M = 2_000.0
WIND_TOP_M = 36_000.0
# Exponent on (rho0 / rho) for the ascent rate. An ideal expanding sphere would give 1/6;
# drag-coefficient changes flatten that to the ~15 % speed-up at 30 km that flights show.
ASCENT_DENSITY_EXPONENT = 1.0 / 30.0


@dataclass(frozen=True)
class FlightPlan:
    seed: int = 1
    launch_lat: float = 52.7000  # a field in Shropshire: the prevailing westerlies carry it inland
    launch_lon: float = -2.7500
    launch_alt_m: float = 20.0
    ascent_rate_m_s: float = 5.0  # at launch; a little faster higher up
    burst_alt_m: float | None = None  # None: drawn from the seed, 30-35 km
    descent_rate_sea_level_m_s: float = 5.0
    battery_full_mv: int = 4150
    battery_empty_mv: int = 3300
    battery_hours: float = 6.0
    launch_utc: datetime = datetime(2026, 6, 21, 8, 0, tzinfo=timezone.utc)  # a summer morning
    cold_offset_c: float = 0.0  # added to the ISA temperature at every height: -30 is a cold soak
    wind_scale: float | None = None  # multiplies every wind; None: drawn from the seed, 0.7-1.3


@dataclass(frozen=True)
class WorldState:
    t_s: float  # seconds since launch
    phase: str  # pre-launch, ascent, descent, landed
    lat: float
    lon: float
    alt_m: float
    temp_c: float  # outside air
    pressure_hpa: float
    sats: int
    batt_mv: int  # no-load estimate; sim.world.power has the battery under load
    # New fields go last, with defaults, so positional construction elsewhere keeps working.
    wind_speed_m_s: float = 0.0
    wind_dir_deg: float = 0.0  # where the wind comes from, clockwise from north (270: westerly)
    sun_elev_deg: float = 0.0  # geometric, above the level plane
    sunlit: bool = False  # the sun is above the horizon seen from this altitude
    air_density_kg_m3: float = SEA_LEVEL_DENSITY


def _from_direction(speed: float, from_deg: float) -> tuple[float, float]:
    """(east, north) components of a wind of this speed blowing from from_deg."""
    d = math.radians(from_deg)
    return -speed * math.sin(d), -speed * math.cos(d)


def _is_summer(utc: datetime, lat: float) -> bool:
    """The months of the stratospheric summer easterlies in this hemisphere."""
    return utc.month in ((5, 6, 7, 8) if lat >= 0 else (11, 12, 1, 2))


def draw_wind_layers(rng: random.Random, scale: float, summer: bool) -> list[tuple[float, float]]:
    """(east, north) wind in m/s at 0, 2, 4, ... 36 km: a seeded, climatology-shaped profile."""
    trop_from = rng.uniform(235.0, 295.0)  # prevailing south-westerly to west-north-westerly
    jet_peak = rng.uniform(18.0, 35.0) if summer else rng.uniform(30.0, 55.0)
    jet_alt = rng.uniform(9_500.0, 12_500.0)
    strat_speed = rng.uniform(3.0, 18.0) if summer else rng.uniform(10.0, 35.0)
    strat_from = rng.uniform(70.0, 110.0) if summer else rng.uniform(250.0, 290.0)
    layers = []
    for k in range(int(WIND_TOP_M / WIND_LAYER_M) + 1):
        h = k * WIND_LAYER_M
        # Boundary layer: friction keeps it light at the ground; the westerlies fade above the jet.
        base = (3.0 + 5.0 * min(h, 2_000.0) / 2_000.0) * math.exp(-max(0.0, h - 12_000.0) / 4_000.0)
        jet = jet_peak * math.exp(-(((h - jet_alt) / 4_500.0) ** 2))
        strat = strat_speed * min(max((h - 18_000.0) / 10_000.0, 0.0), 1.0)
        veer = rng.gauss(0.0, 12.0)  # each layer turns the flow a little: the track bends
        u1, v1 = _from_direction(base + jet, trop_from + veer)
        u2, v2 = _from_direction(strat, strat_from + rng.gauss(0.0, 10.0))
        gust = 0.4 + 0.6 * min(h / 2_000.0, 1.0)  # turbulence, smaller at the ground
        du, dv = rng.gauss(0.0, 2.0) * gust, rng.gauss(0.0, 2.0) * gust
        layers.append((scale * (u1 + u2 + du), scale * (v1 + v2 + dv)))
    return layers


class _Track:
    """Samples (alt, lat, lon, wind east, wind north) every TRACK_STEP_S from start_s; the
    last sample may come sooner (the exact burst or landing). Lookup is an index, not a search."""

    def __init__(self, start_s: float):
        self.start_s = start_s
        self.times: list[float] = []
        self.rows: list[tuple[float, float, float, float, float]] = []

    @property
    def end_s(self) -> float:
        return self.times[-1]

    def at(self, t_s: float) -> tuple[float, ...]:
        if len(self.rows) == 1 or t_s <= self.start_s:
            return self.rows[0]
        i = min(int((t_s - self.start_s) / TRACK_STEP_S), len(self.rows) - 2)
        t0, t1 = self.times[i], self.times[i + 1]
        f = min(max((t_s - t0) / (t1 - t0), 0.0), 1.0) if t1 > t0 else 1.0
        a, b = self.rows[i], self.rows[i + 1]
        return tuple(x + (y - x) * f for x, y in zip(a, b))


class Flight:
    def __init__(self, plan: FlightPlan | None = None):
        self.plan = p = plan or FlightPlan()
        if p.launch_utc.tzinfo is None:
            raise ValueError(f"launch_utc must be timezone-aware (UTC), got {p.launch_utc!r}")
        if p.ascent_rate_m_s <= 0 or p.descent_rate_sea_level_m_s <= 0:
            raise ValueError("ascent and descent rates must be positive")
        rng = random.Random(p.seed)
        self.burst_alt_m = p.burst_alt_m or rng.uniform(30_000, 35_000)
        if self.burst_alt_m <= p.launch_alt_m:
            raise ValueError(f"burst altitude {self.burst_alt_m} m is not above launch {p.launch_alt_m} m")
        drawn_scale = rng.uniform(0.7, 1.3)  # drawn even when overridden: the rest of the flight stays put
        self.wind_scale = drawn_scale if p.wind_scale is None else p.wind_scale
        self.wind_layers = draw_wind_layers(rng, self.wind_scale, _is_summer(p.launch_utc, p.launch_lat))
        sat_seed = rng.randrange(1 << 30)

        self._ascent = self._integrate(0.0, p.launch_alt_m, p.launch_lat, p.launch_lon,
                                       self.ascent_rate_m_s, self.burst_alt_m)
        self.ascent_s = self._ascent.end_s
        top = self._ascent.rows[-1]
        self._descent = self._integrate(self.ascent_s, top[0], top[1], top[2],
                                        lambda h: -self.descent_rate_m_s(h), p.launch_alt_m)
        self.duration_s = self._descent.end_s
        self.descent_s = self.duration_s - self.ascent_s
        self._landed = self._descent.rows[-1]
        self._sat_seed = sat_seed
        # Satellites in view change each minute; drawn up front for the flight and a day after.
        self._sats = [self._draw_sats(m) for m in range(int(self.duration_s // 60) + 1 + 24 * 60)]

    # ---------------------------------------------------------------- the air

    def temperature_c(self, alt_m: float) -> float:
        return atmosphere.temperature_k(alt_m) - 273.15 + self.plan.cold_offset_c

    def air_density_kg_m3(self, alt_m: float) -> float:
        # Colder air at the same pressure is denser: the parachute falls more slowly.
        return atmosphere.pressure_pa(alt_m) / (atmosphere.R_AIR * (atmosphere.temperature_k(alt_m)
                                                                     + self.plan.cold_offset_c))

    # ---------------------------------------------------------------- vertical motion

    def ascent_rate_m_s(self, alt_m: float) -> float:
        thinning = SEA_LEVEL_DENSITY / self.air_density_kg_m3(alt_m)
        return self.plan.ascent_rate_m_s * thinning**ASCENT_DENSITY_EXPONENT

    def descent_rate_m_s(self, alt_m: float) -> float:
        # Terminal velocity scales with 1/sqrt(density).
        return self.plan.descent_rate_sea_level_m_s * math.sqrt(SEA_LEVEL_DENSITY / self.air_density_kg_m3(alt_m))

    def altitude_m(self, t_s: float) -> float:
        return self._row(t_s)[0]

    def phase(self, t_s: float) -> str:
        if t_s <= 0:
            return "pre-launch"
        if t_s <= self.ascent_s:
            return "ascent"
        if t_s < self.duration_s:
            return "descent"
        return "landed"

    # ---------------------------------------------------------------- winds and drift

    def wind_at(self, alt_m: float) -> tuple[float, float]:
        """(east, north) wind in m/s, linear between the 2 km layers, constant above the top."""
        x = min(max(alt_m, 0.0), WIND_TOP_M) / WIND_LAYER_M
        i = min(int(x), len(self.wind_layers) - 2)
        f = x - i
        (u0, v0), (u1, v1) = self.wind_layers[i], self.wind_layers[i + 1]
        return u0 + (u1 - u0) * f, v0 + (v1 - v0) * f

    def wind_speed_m_s(self, alt_m: float) -> float:
        return math.hypot(*self.wind_at(alt_m))

    def wind_dir_deg(self, alt_m: float) -> float:
        """Where the wind at alt_m comes from, degrees clockwise from north."""
        u, v = self.wind_at(alt_m)
        return math.degrees(math.atan2(-u, -v)) % 360.0

    def _integrate(self, t0: float, alt: float, lat: float, lon: float, vz, target: float) -> _Track:
        """Step the balloon from alt to target at vertical speed vz(alt), drifting with the wind;
        midpoint rule in altitude, the wind taken at the step's middle height."""
        track = _Track(t0)
        t = t0
        track.times.append(t)
        track.rows.append((alt, lat, lon, *self.wind_at(alt)))
        k = 0
        while alt != target:
            dt = TRACK_STEP_S
            rate = vz(alt + vz(alt) * dt / 2)
            new = alt + rate * dt
            if (new - target) * (alt - target) <= 0:  # reaches the target within this step
                dt = max((target - alt) / rate, 1e-9)
                new = target
            u, v = self.wind_at((alt + new) / 2)
            lat += math.degrees(v * dt / EARTH_RADIUS_M)
            lon += math.degrees(u * dt / (EARTH_RADIUS_M * math.cos(math.radians(lat))))
            k += 1
            t = t0 + k * TRACK_STEP_S if new != target else t + dt  # no drift in the grid times
            alt = new
            track.times.append(t)
            track.rows.append((alt, lat, lon, *self.wind_at(alt)))
        return track

    def _row(self, t_s: float) -> tuple[float, ...]:
        if t_s <= self.ascent_s:
            return self._ascent.at(t_s)
        if t_s >= self.duration_s:
            return self._landed
        return self._descent.at(t_s)

    def position(self, t_s: float) -> tuple[float, float]:
        _, lat, lon, _, _ = self._row(t_s)
        return lat, lon

    # ---------------------------------------------------------------- time and sun

    def utc(self, t_s: float) -> datetime:
        return self.plan.launch_utc + timedelta(seconds=t_s)

    # ---------------------------------------------------------------- the whole state

    def _draw_sats(self, minute: int) -> int:
        return 6 + random.Random(self._sat_seed + minute).randrange(0, 7)

    def state_at(self, t_s: float) -> WorldState:
        alt, lat, lon, u, v = self._row(t_s)
        minute = int(t_s // 60)
        sats = self._sats[minute] if 0 <= minute < len(self._sats) else self._draw_sats(minute)
        p = self.plan
        frac = min(max(t_s, 0.0) / (p.battery_hours * 3600), 1.0)
        batt = p.battery_full_mv - frac * (p.battery_full_mv - p.battery_empty_mv)
        elev = solar_elevation_deg(self.utc(t_s), lat, lon)
        return WorldState(
            t_s=t_s,
            phase=self.phase(t_s),
            lat=lat,
            lon=lon,
            alt_m=alt,
            temp_c=self.temperature_c(alt),
            pressure_hpa=atmosphere.pressure_pa(alt) / 100.0,
            sats=sats,
            batt_mv=int(round(batt)),
            wind_speed_m_s=math.hypot(u, v),
            wind_dir_deg=math.degrees(math.atan2(-u, -v)) % 360.0,
            sun_elev_deg=elev,
            sunlit=sun_visible(elev, alt),
            air_density_kg_m3=self.air_density_kg_m3(alt),
        )


class SimSensors:
    """The bench world's state at the current flight time, read directly — for unit tests of
    the daemon and the link bench; `payload run --sim` reads the world through the real
    drivers instead (sim/world/hardware.py)."""

    battery_temp_fitted = True  # its box temperature is a kept 20 °C

    def __init__(self, clock: Clock, seed: int = 1):
        self.clock = clock
        self.flight = Flight(FlightPlan(seed=seed))

    def restart(self) -> None:
        pass  # the world is read at the clock's flight time, which restarts with the clock

    def read(self) -> Readings:
        s = self.flight.state_at(self.clock.elapsed_s())
        return Readings(
            time=self.clock.now(), lat=s.lat, lon=s.lon, alt_m=s.alt_m, sats=s.sats,
            temp_c=s.temp_c, pressure_hpa=s.pressure_hpa, batt_mv=s.batt_mv, phase=s.phase,
            box_temp_c=20.0,  # no heat model behind this stand-in: a box kept comfortable
        )
