"""Positions on a spherical earth: distance, bearing, elevation, and small moves on a local
flat earth. Shared by the ground station (chase numbers, the landing prediction, the chase-car
feed) and the bench (the radio channel, the flight's drift). Degrees and metres throughout."""

from __future__ import annotations

import math

EARTH_RADIUS_M = 6_371_000.0  # the mean radius


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance along the ground (haversine: exact at short range too)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def bearing_deg(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Initial great-circle bearing from the first point to the second, clockwise from true north."""
    p1, p2, dl = math.radians(lat1), math.radians(lat2), math.radians(lon2 - lon1)
    y = math.sin(dl) * math.cos(p2)
    x = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return math.degrees(math.atan2(y, x)) % 360.0


def elevation_deg(lat1: float, lon1: float, alt1_m: float, lat2: float, lon2: float, alt2_m: float) -> float:
    """Angle of the second point above the first one's horizontal (geometric, no refraction):
    where to point an antenna. Negative: below the horizon."""
    theta = distance_m(lat1, lon1, lat2, lon2) / EARTH_RADIUS_M
    r1, r2 = EARTH_RADIUS_M + alt1_m, EARTH_RADIUS_M + alt2_m
    across, up = r2 * math.sin(theta), r2 * math.cos(theta) - r1  # in the plane through the centre
    if math.hypot(across, up) < 1e-3:
        return 90.0  # on top of it
    return math.degrees(math.atan2(up, across))


def wrap_lon(lon: float) -> float:
    """A longitude in -180..180 (180 itself stays 180)."""
    return lon if -180.0 <= lon <= 180.0 else (lon + 180.0) % 360.0 - 180.0


def offset_m(lat0: float, lon0: float, lat: float, lon: float) -> tuple[float, float]:
    """(east, north) metres from (lat0, lon0) on a local flat earth (good to tens of km); the short
    way round, so 179.9 E to 179.9 W is 0.2 degrees east, not 359.8 west."""
    north = math.radians(lat - lat0) * EARTH_RADIUS_M
    east = math.radians(wrap_lon(lon - lon0)) * EARTH_RADIUS_M * math.cos(math.radians((lat + lat0) / 2))
    return east, north


def moved(lat: float, lon: float, east_m: float, north_m: float) -> tuple[float, float]:
    """The point `east_m`, `north_m` from (lat, lon) on a local flat earth; its longitude in
    -180..180, over the antimeridian included."""
    lat2 = lat + math.degrees(north_m / EARTH_RADIUS_M)
    lon2 = lon + math.degrees(east_m / (EARTH_RADIUS_M * math.cos(math.radians((lat + lat2) / 2))))
    return lat2, wrap_lon(lon2)
