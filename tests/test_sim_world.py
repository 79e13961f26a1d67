"""The bench world: ISA figures from docs/figures.md, a flight that rises, bursts and lands, bursty loss."""

from __future__ import annotations

import pytest

from sim.channel.loss import GilbertElliott, LossSpec
from sim.world.flight import Flight, FlightPlan
from stratoecho import atmosphere


@pytest.mark.parametrize("alt, hpa", [(0, 1013.25), (11_000, 226.3), (20_000, 54.7), (30_000, 11.7)])
def test_isa_pressure(alt, hpa):
    assert atmosphere.pressure_pa(alt) / 100 == pytest.approx(hpa, rel=0.01)


@pytest.mark.parametrize("alt, celsius", [(0, 15.0), (11_000, -56.5), (15_000, -56.5), (32_000, -44.5)])
def test_isa_temperature(alt, celsius):
    assert atmosphere.temperature_k(alt) - 273.15 == pytest.approx(celsius, abs=0.05)


def test_flight_rises_bursts_and_lands():
    f = Flight(FlightPlan(seed=3))
    assert 30_000 <= f.burst_alt_m <= 35_000
    # 5 m/s at launch, a little faster as the balloon swells in thin air.
    steady_s = (f.burst_alt_m - 20) / 5.0
    assert 0.85 * steady_s < f.ascent_s < steady_s
    assert f.state_at(f.ascent_s / 2).phase == "ascent"
    top = f.state_at(f.ascent_s)
    assert top.alt_m == pytest.approx(f.burst_alt_m)
    # Thin air: the parachute falls far faster just after burst than near the ground.
    assert f.descent_rate_m_s(30_000) > 4 * f.descent_rate_m_s(0)
    assert f.state_at(f.duration_s + 1).phase == "landed"
    assert f.state_at(f.duration_s + 1).alt_m == pytest.approx(20.0)
    assert 30 * 60 < f.descent_s < 90 * 60


def test_same_seed_same_flight():
    a, b, c = Flight(FlightPlan(seed=7)), Flight(FlightPlan(seed=7)), Flight(FlightPlan(seed=8))
    assert a.state_at(4000) == b.state_at(4000)
    assert a.state_at(4000) != c.state_at(4000)


def test_balloon_drifts_downwind():
    f = Flight(FlightPlan(seed=1))
    lat, lon = f.position(f.duration_s)
    assert lon > f.plan.launch_lon  # westerly winds carry it east
    assert 20 < (lon - f.plan.launch_lon) * 68 < 400  # tens to hundreds of km


def test_loss_spec_parsing():
    assert LossSpec.parse("0.3") == LossSpec(0.3, 4.0)
    assert LossSpec.parse("0.25:burst=8") == LossSpec(0.25, 8.0)
    for bad in ("x", "1.5", "0.3:gap=2", "0.3:burst=0"):
        with pytest.raises(ValueError, match="loss spec"):
            LossSpec.parse(bad)


def test_gilbert_elliott_mean_loss_and_bursts():
    ch = GilbertElliott(LossSpec(0.3, 5.0), seed=1)
    drops = [ch.drop() for _ in range(200_000)]
    assert sum(drops) / len(drops) == pytest.approx(0.3, abs=0.02)
    bursts, run = [], 0
    for d in drops:
        if d:
            run += 1
        elif run:
            bursts.append(run)
            run = 0
    assert sum(bursts) / len(bursts) == pytest.approx(5.0, rel=0.1)
    assert not any(GilbertElliott(LossSpec(0.0), seed=1).drop() for _ in range(1000))
