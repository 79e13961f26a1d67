"""The orbital profile (sim/world/orbit.py): Kepler period, ground track, eclipses and passes."""

from __future__ import annotations

import math
from datetime import datetime, timezone

import pytest

from sim.channel.radio import GroundStation, ground_distance_km
from sim.world.orbit import Orbit, julian_date, sun_direction

HOME = GroundStation("home", 52.7, -2.75, 20.0)
DAY = 86_400.0


def beta_deg(o: Orbit, t_s: float = 0.0) -> float:
    """Angle between the orbit plane and the Sun: it alone sets how long eclipses last."""
    node = math.radians(o.raan_deg + o.node_rate_deg_s * t_s)
    inc = math.radians(o.inclination_deg)
    normal = (math.sin(inc) * math.sin(node), -math.sin(inc) * math.cos(node), math.cos(inc))
    s = sun_direction(julian_date(o.epoch) + t_s / DAY)
    return math.degrees(math.asin(sum(a * b for a, b in zip(normal, s))))


def eclipse_fraction(o: Orbit, t0_s: float, t1_s: float, step_s: float) -> float:
    """The share of samples in [t0_s, t1_s) that `in_eclipse` puts in the Earth's shadow."""
    n = max(int((t1_s - t0_s) / step_s), 1)
    return sum(o.in_eclipse(t0_s + i * step_s) for i in range(n)) / n


def test_period_follows_kepler():
    assert Orbit().period_s / 60 == pytest.approx(94.6, abs=0.1)
    assert Orbit(altitude_km=35_786 - 0.0).period_s / 3600 == pytest.approx(23.93, abs=0.01)  # geostationary
    o = Orbit(j2=False)
    # After one period the satellite is back at the same inertial point.
    a, b = o.eci_km(1234.0), o.eci_km(1234.0 + o.period_s)
    assert math.dist(a, b) < 1e-6


def test_inclination_bounds_latitude_and_altitude_is_constant():
    o = Orbit()
    lats = [o.position(t)[0] for t in range(0, 20_000, 20)]
    assert max(lats) <= 51.6 + 1e-9 and min(lats) >= -51.6 - 1e-9
    assert max(lats) > 51.0 and min(lats) < -51.0  # it does reach them
    assert all(o.position(t)[2] == pytest.approx(507_137, abs=1) for t in (0, 999, 5000))
    polar = [Orbit(inclination_deg=97.5).position(t)[0] for t in range(0, 6000, 20)]
    assert max(polar) > 82


def test_ground_track_is_continuous_and_walks_west():
    o = Orbit()
    step = 10.0
    prev = o.position(0.0)
    for i in range(1, 1200):
        cur = o.position(i * step)
        # 7.6 km/s in orbit is ~7.1 km/s over the ground at 500 km; the Earth adds at most ~0.5.
        assert ground_distance_km(prev[0], prev[1], cur[0], cur[1]) < 80
        prev = cur
    # Successive ascending-node crossings: the Earth turned ~23.7 degrees in one period.
    p = o.period_s
    shift = (o.position(0.0)[1] - o.position(p)[1]) % 360
    assert shift == pytest.approx(360 * p / 86_164 + abs(o.node_rate_deg_s) * p, abs=0.2)
    assert o.node_rate_deg_s * DAY == pytest.approx(-4.75, abs=0.3)  # J2: ISS-like orbits regress ~5 deg/day


def test_sun_is_where_the_seasons_put_it():
    june = sun_direction(julian_date(datetime(2025, 6, 21, 12, tzinfo=timezone.utc)))
    march = sun_direction(julian_date(datetime(2025, 3, 20, 12, tzinfo=timezone.utc)))
    assert math.degrees(math.asin(june[2])) == pytest.approx(23.44, abs=0.1)  # solstice declination
    assert math.degrees(math.asin(march[2])) == pytest.approx(0.0, abs=0.5)
    assert math.hypot(*june) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        julian_date(datetime(2025, 1, 1))


def test_eclipse_fraction_matches_the_beta_angle():
    o = Orbit()
    assert abs(beta_deg(o)) < 5
    # Beta near zero: the longest eclipses, 35-40 % of the orbit.
    assert 0.35 <= eclipse_fraction(o, 0, 3 * o.period_s, step_s=5) <= 0.40
    # Over the year, wherever beta is, the sampled share follows the cylinder's formula.
    r, a = 6378.137, o.radius_km
    for day in range(0, 365, 23):
        t0 = day * DAY
        beta = math.radians(beta_deg(o, t0))
        c = math.sqrt(a * a - r * r) / (a * math.cos(beta))
        expected = math.acos(c) / math.pi if c < 1 else 0.0
        assert eclipse_fraction(o, t0, t0 + o.period_s, step_s=5) == pytest.approx(expected, abs=0.02)
    year = [eclipse_fraction(o, d * DAY, d * DAY + o.period_s, step_s=20) for d in range(0, 365, 5)]
    assert sum(0.3 <= f <= 0.4 for f in year) > len(year) / 2  # "most seasons"
    assert min(year) < 0.2  # and the high-beta spells in full sun exist too


def test_passes_over_a_mid_latitude_station():
    o = Orbit()
    passes = o.passes(HOME, 0, DAY)
    assert 3 <= len(passes) <= 12
    for p in passes:
        assert p.duration_s <= 12 * 60 and p.max_elev_deg >= 5
        if p.max_elev_deg > 10:
            assert p.duration_s >= 2 * 60
        # Edges sit on the threshold, and the middle is above it.
        assert o.elevation_deg(HOME, p.start_s) == pytest.approx(5, abs=0.1)
        assert o.elevation_deg(HOME, p.end_s) == pytest.approx(5, abs=0.1)
        assert o.elevation_deg(HOME, (p.start_s + p.end_s) / 2) > 5
        peak = max(o.elevation_deg(HOME, p.start_s + s) for s in range(0, int(p.duration_s), 2))
        assert p.max_elev_deg == pytest.approx(peak, abs=0.3)
    gaps = [b.start_s - a.end_s for a, b in zip(passes, passes[1:])]
    assert min(gaps) > 60 * 60 * 0.9  # about one orbit apart at least
    # Nowhere in between is the satellite up.
    for a, b in zip(passes, passes[1:]):
        assert all(o.elevation_deg(HOME, t) < 5 for t in range(int(a.end_s) + 5, int(b.start_s) - 5, 30))


def test_pass_cut_at_the_window_edges():
    o = Orbit()
    first = o.passes(HOME, 0, DAY)[0]
    mid = (first.start_s + first.end_s) / 2
    [cut] = o.passes(HOME, mid, first.end_s + 600)
    assert cut.start_s == mid and cut.end_s == pytest.approx(first.end_s, abs=0.2)
    [tail] = o.passes(HOME, first.start_s - 600, mid)
    assert tail.end_s == mid
    assert o.passes(HOME, first.end_s + 10, first.end_s + 600) == []
    south_pole = GroundStation("pole", -89.0, 0.0, 0.0)
    assert o.passes(south_pole, 0, DAY) == []  # 51.6 deg never rises 5 deg above the pole's horizon
