"""The orbital profile as a world the bench hardware can feed the drivers from.

`OrbitFlight` has the face of `sim.world.flight.Flight` that the bench uses (`utc`, `state_at`,
`altitude_m`, `position`, `duration_s`), so the same GPS, I2C and camera simulators serve
a low Earth orbit: the GPS reports 500 km, the air sensor sits in vacuum (its pressure
reads as "impossible": there is no air to measure), and sunlight comes and goes with
each eclipse — which is what the battery and the heat model feel.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from .flight import WorldState
from .orbit import Orbit

SPACE_PRESSURE_HPA = 0.0


class OrbitFlight:
    phase_name = "orbit"

    def __init__(self, seed: int = 1, days: float = 1.0, **orbit_kwargs):
        self.orbit = Orbit(**orbit_kwargs)
        self.seed = seed
        self.duration_s = days * 86_400.0

    def utc(self, t_s: float) -> datetime:
        return self.orbit.epoch + timedelta(seconds=t_s)

    def position(self, t_s: float) -> tuple[float, float]:
        lat, lon, _ = self.orbit.position(t_s)
        return lat, lon

    def altitude_m(self, t_s: float) -> float:
        return self.orbit.position(t_s)[2]

    def phase(self, t_s: float) -> str:
        return self.phase_name

    def skin_temp_c(self, t_s: float) -> float:
        """The structure's temperature: it swings with each eclipse, lagging the light by a few minutes."""
        period = self.orbit.period_s
        # Sunlit share of the last ten minutes, sampled: a thermal lag without integrating.
        sunlit = sum(not self.orbit.in_eclipse(t_s - k * 60.0) for k in range(10)) / 10
        return -25.0 + 50.0 * sunlit + 2.0 * math.sin(2 * math.pi * t_s / period)

    def state_at(self, t_s: float) -> WorldState:
        lat, lon, alt = self.orbit.position(t_s)
        eclipse = self.orbit.in_eclipse(t_s)
        return WorldState(
            t_s=t_s, phase=self.phase_name, lat=lat, lon=lon, alt_m=alt, temp_c=self.skin_temp_c(t_s),
            pressure_hpa=SPACE_PRESSURE_HPA, sats=10, batt_mv=4000, sun_elev_deg=0.0 if eclipse else 90.0,
            sunlit=not eclipse, air_density_kg_m3=0.0,
        )
