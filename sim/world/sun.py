"""Where the sun is, seen from a balloon (pure functions, degrees in and out).

The low-precision solar position of the NOAA solar calculator (Meeus' series truncated
to a few terms): good to about 0.01 deg in declination and a few seconds in the
equation of time for years near 2000, so well inside 0.5 deg in elevation. Elevations are
geometric: no refraction (which lifts the sun ~0.5 deg at the horizon only).

At altitude h the horizon lies below level by the dip acos(R / (R + h)) (~5.6 deg at
30 km), so a balloon stays sunlit for a while after sunset on the ground.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone

EARTH_RADIUS_M = 6_371_000.0
_J2000 = datetime(2000, 1, 1, 12, 0, tzinfo=timezone.utc)  # Julian day 2451545.0


def _julian_century(utc: datetime) -> float:
    if utc.tzinfo is None:
        # A naive time would be read as the host's local time somewhere down the line: refuse it.
        raise ValueError(f"solar position needs a timezone-aware UTC time, got naive {utc!r}")
    return (utc - _J2000).total_seconds() / 86_400.0 / 36_525.0


def _declination_and_eot(jc: float) -> tuple[float, float]:
    """Solar declination (rad) and the equation of time (minutes) at Julian century jc."""
    mean_long = math.radians((280.46646 + jc * (36_000.76983 + jc * 0.0003032)) % 360.0)
    mean_anom = math.radians(357.52911 + jc * (35_999.05029 - 0.0001537 * jc))
    ecc = 0.016708634 - jc * (0.000042037 + 0.0000001267 * jc)
    centre = (
        math.sin(mean_anom) * (1.914602 - jc * (0.004817 + 0.000014 * jc))
        + math.sin(2 * mean_anom) * (0.019993 - 0.000101 * jc)
        + math.sin(3 * mean_anom) * 0.000289
    )
    omega = math.radians(125.04 - 1934.136 * jc)  # lunar node: nutation and aberration terms
    app_long = math.radians(math.degrees(mean_long) + centre - 0.00569 - 0.00478 * math.sin(omega))
    mean_obliq = 23.0 + (26.0 + (21.448 - jc * (46.815 + jc * (0.00059 - jc * 0.001813))) / 60.0) / 60.0
    obliq = math.radians(mean_obliq + 0.00256 * math.cos(omega))
    decl = math.asin(math.sin(obliq) * math.sin(app_long))
    y = math.tan(obliq / 2) ** 2
    eot_rad = (
        y * math.sin(2 * mean_long)
        - 2 * ecc * math.sin(mean_anom)
        + 4 * ecc * y * math.sin(mean_anom) * math.cos(2 * mean_long)
        - 0.5 * y * y * math.sin(4 * mean_long)
        - 1.25 * ecc * ecc * math.sin(2 * mean_anom)
    )
    return decl, 4.0 * math.degrees(eot_rad)


def _decl_and_hour_angle(utc: datetime, lon: float) -> tuple[float, float]:
    decl, eot_min = _declination_and_eot(_julian_century(utc))
    u = utc.astimezone(timezone.utc)
    minutes = u.hour * 60 + u.minute + (u.second + u.microsecond / 1e6) / 60.0
    true_solar_min = (minutes + eot_min + 4.0 * lon) % 1440.0
    return decl, math.radians(true_solar_min / 4.0 - 180.0)


def solar_elevation_deg(utc: datetime, lat: float, lon: float) -> float:
    """Geometric elevation of the sun's centre above the level plane (deg; negative below)."""
    decl, ha = _decl_and_hour_angle(utc, lon)
    phi = math.radians(lat)
    cos_zen = math.sin(phi) * math.sin(decl) + math.cos(phi) * math.cos(decl) * math.cos(ha)
    return 90.0 - math.degrees(math.acos(max(-1.0, min(1.0, cos_zen))))


def horizon_dip_deg(alt_m: float) -> float:
    """How far the visible horizon lies below level from altitude alt_m: acos(R / (R + h))."""
    return math.degrees(math.acos(EARTH_RADIUS_M / (EARTH_RADIUS_M + max(0.0, alt_m))))


def sun_visible(elev_deg: float, alt_m: float) -> bool:
    """Whether the sun's centre is above the horizon seen from alt_m (the Earth's shadow)."""
    return elev_deg > -horizon_dip_deg(alt_m)
