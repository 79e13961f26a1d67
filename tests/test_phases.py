"""Flight phase detection (payload/policy/phases.py) on synthetic flights.

A flight is simulated at 1 s resolution (true altitude), then sampled like the payload
would: GPS altitude with ±15 m noise when it has a fix, pressure from the ISA at the true
altitude plus a weather offset and sensor noise. Assertions are on the sequence of phases
and on when each was detected relative to the true events.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payload.policy.phases import (
    ISA_MAX_HPA,
    ISA_MIN_HPA,
    Phase,
    PhaseDetector,
    PhaseLimits,
    isa_pressure_hpa,
    pressure_altitude_m,
)

PRE, UP, FLOAT, DOWN, LANDED = Phase.PRE_LAUNCH, Phase.ASCENT, Phase.FLOAT, Phase.DESCENT, Phase.LANDED
GROUND_M = 120.0


# --- a synthetic flight ---------------------------------------------------------------------


@dataclass
class Flight:
    alt: list[float]  # true altitude at each whole second
    events: dict[str, float] = field(default_factory=dict)  # launch, float, burst, touchdown


def simulate(*, pre_s=600, climb=5.0, burst_m=32_000.0, float_m=None, float_s=0, after_s=900) -> Flight:
    """Ground wait, ascent at ``climb`` m/s, an optional float (easing in over ~2 min, ±30 m
    wander), then burst or cut-down: free fall into thin air, slowing under the parachute
    to ~5 m/s at the ground (descent speed ~ 1/sqrt(density))."""
    alt, ev = [GROUND_M] * pre_s, {"launch": float(pre_s)}
    h = GROUND_M
    top = float_m if float_m is not None else burst_m
    while h < top:
        # ease the climb out in the last 600 m before a float
        v = climb if float_m is None else max(0.3, min(climb, (top - h) / 120))
        h = min(top, h + v)
        alt.append(h)
        if float_m is not None and v < 1.0 and "float" not in ev:  # slower than the float threshold
            ev["float"] = float(len(alt))
    for k in range(float_s):
        alt.append(top + 30 * math.sin(2 * math.pi * k / 600))
    ev["burst"] = float(len(alt))
    h, v = alt[-1], 0.0
    while h > GROUND_M:
        v_term = 5.0 * math.exp(h / 14_400)  # density scale height ~7.2 km
        v = min(v + 9.8, v_term)
        h = max(GROUND_M, h - v)
        alt.append(h)
    ev["touchdown"] = float(len(alt))
    alt += [GROUND_M] * after_s
    return Flight(alt, ev)


@dataclass
class Sample:
    t: float
    alt_m: float | None
    pressure_hpa: float | None
    fix_valid: bool


def sample(flight: Flight, *, seed=1, step=lambda rng: 2.0, gps_noise_m=15.0, baro_offset_m=250.0,
           gps_lost=(), baro_lost=(), gaps=()) -> list[Sample]:
    """``gps_lost``/``baro_lost``/``gaps``: (start, end) second ranges without GPS fix /
    without pressure / without any reading at all."""
    rng = random.Random(seed)
    out, t = [], 0.0
    inside = lambda ranges: any(a <= t < b for a, b in ranges)  # noqa: E731
    while t < len(flight.alt) - 1:
        k = int(t)
        true = flight.alt[k] + (flight.alt[k + 1] - flight.alt[k]) * (t - k)
        if inside(gaps):
            out.append(Sample(t, None, None, False))
        else:
            fix = not inside(gps_lost)
            gps = true + rng.uniform(-gps_noise_m, gps_noise_m) if fix else 0.0  # no fix: junk altitude
            p = None if inside(baro_lost) else isa_pressure_hpa(true + baro_offset_m) * (1 + rng.uniform(-2e-4, 2e-4))
            out.append(Sample(t, gps, p, fix))
        t += step(rng)
    return out


def run(det: PhaseDetector, samples: list[Sample]) -> list[tuple[float, Phase]]:
    """Feed samples; return (time, phase) at each change, checking phases never go back."""
    changes, last = [], det.phase
    for s in samples:
        phase = det.update(s.t, s.alt_m, s.pressure_hpa, s.fix_valid)
        assert phase.rank >= last.rank, f"went back from {last} to {phase} at {s.t}"
        if phase is not last:
            changes.append((s.t, phase))
            last = phase
    return changes


def assert_flight(changes, flight: Flight, *, with_float=False, slack_s=0.0):
    phases = [p for _, p in changes]
    assert phases == ([UP, FLOAT, DOWN, LANDED] if with_float else [UP, DOWN, LANDED])
    at = dict((p, t) for t, p in changes)
    ev = flight.events
    assert ev["launch"] <= at[UP] <= ev["launch"] + 60 + slack_s
    if with_float:
        assert ev["float"] <= at[FLOAT] <= ev["float"] + 300 + 120 + slack_s
    assert ev["burst"] <= at[DOWN] <= ev["burst"] + 60 + slack_s
    assert ev["touchdown"] + 180 <= at[LANDED] <= ev["touchdown"] + 300 + slack_s


FLIGHT = simulate()


# --- ISA ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("alt_m,hpa", [
    # US Standard Atmosphere 1976 (geopotential altitude)
    (0.0, 1013.25), (1000.0, 898.746), (11_000.0, 226.321), (20_000.0, 54.7489), (30_000.0, 11.7187),
    (32_000.0, 8.68019), (47_000.0, 1.10906),
])
def test_isa_pressure_matches_the_standard(alt_m, hpa):
    assert isa_pressure_hpa(alt_m) == pytest.approx(hpa, rel=2e-5)
    assert pressure_altitude_m(hpa) == pytest.approx(alt_m, abs=1.0)


@given(st.floats(-1000.0, 47_000.0))
def test_pressure_altitude_inverts_isa_pressure(h):
    assert pressure_altitude_m(isa_pressure_hpa(h)) == pytest.approx(h, abs=1e-6)


@given(st.floats(-1000.0, 46_990.0), st.floats(1.0, 10.0))
def test_pressure_falls_with_altitude(h, dh):
    assert isa_pressure_hpa(h + dh) < isa_pressure_hpa(h)


@pytest.mark.parametrize("bad", [None, float("nan"), float("inf"), 0.0, -5.0, ISA_MIN_HPA * 0.99,
                                 ISA_MAX_HPA * 1.01, "1000", True])
def test_pressure_outside_the_model_gives_no_altitude(bad):
    assert pressure_altitude_m(bad) is None


def test_isa_pressure_refuses_altitudes_outside_the_model():
    with pytest.raises(ValueError):
        isa_pressure_hpa(60_000.0)


# --- limits --------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [dict(window_s=0), dict(min_fit_samples=1), dict(min_fit_span_s=90.0),
                                 dict(descent_rate_m_s=2.0), dict(descent_rate_m_s=-0.2),
                                 dict(gps_alt_max_m=-600.0), dict(float_dwell_s=float("nan"))])
def test_inconsistent_limits_are_refused(bad):
    with pytest.raises(ValueError):
        PhaseLimits(**bad)


# --- flights ---------------------------------------------------------------------------------------


def test_a_whole_flight_with_gps_noise():
    det = PhaseDetector()
    changes, sources = [], set()
    for s in sample(FLIGHT):
        before = det.phase
        if det.update(s.t, s.alt_m, s.pressure_hpa, s.fix_valid) is not before:
            changes.append((s.t, det.phase))
        sources.add(det.source)
    assert_flight(changes, FLIGHT)
    assert det.phase is LANDED
    assert sources == {None, "gps"}  # GPS preferred whenever it has a fix (None: first 20 s)


@pytest.mark.parametrize("period_s", [30.0, 60.0, 120.0])
def test_a_sample_a_beacon_period_still_follows_the_flight(period_s):
    """One altitude per position sentence: at a sentence a minute (LoRa mode 0) a 60 s window
    held one or two samples, no rate, and the balloon stayed "pre-launch" at 13 km."""
    samples = sample(FLIGHT, step=lambda rng: period_s)
    if period_s > 30:
        assert run(PhaseDetector(), samples) == []  # the old 60 s window: blind all flight
    limits = PhaseLimits.for_samples_every(period_s)
    assert limits.window_s >= limits.min_fit_samples * period_s
    assert_flight(run(PhaseDetector(limits), samples), FLIGHT, slack_s=2.5 * period_s)


def test_a_flight_with_a_float():
    flight = simulate(burst_m=0, float_m=25_000.0, float_s=3600)
    assert_flight(run(PhaseDetector(), sample(flight, seed=2)), flight, with_float=True)


def test_a_low_float_is_still_ascent():
    """Under 10 km a stalled balloon is not called floating (it may yet climb or leak)."""
    flight = simulate(float_m=8_000.0, float_s=1800)
    assert [p for _, p in run(PhaseDetector(), sample(flight))] == [UP, DOWN, LANDED]


def test_pressure_alone_carries_a_flight():
    """No GPS fix at all: pressure altitude, however far off in value, gives the phases."""
    changes = run(PhaseDetector(), sample(FLIGHT, gps_lost=[(0, 1e9)], baro_offset_m=-400.0))
    assert_flight(changes, FLIGHT)


def test_gps_loss_during_ascent_is_carried_by_pressure():
    lost = (FLIGHT.events["launch"] + 2400, FLIGHT.events["launch"] + 4000)  # ~12 to ~20 km
    det = PhaseDetector()
    samples = sample(FLIGHT, gps_lost=[lost], baro_offset_m=400.0)
    changes, sources, rates = [], set(), []
    last = det.phase
    for s in samples:
        p = det.update(s.t, s.alt_m, s.pressure_hpa, s.fix_valid)
        if p is not last:
            changes.append((s.t, p))
            last = p
        if lost[0] + 60 <= s.t < lost[1]:
            sources.add(det.source)
            rates.append(det.rate_m_s)
            assert p is UP
    assert_flight(changes, FLIGHT)
    assert sources == {"pressure"}
    assert all(4.0 < r < 6.0 for r in rates)  # ISA rate is biased a little by temperature, not by much


def test_a_single_altitude_spike_changes_nothing():
    samples = sample(FLIGHT)
    climb_15km = FLIGHT.events["launch"] + 3000
    by_time = {s.t: s for s in samples}
    for t, bad in ((FLIGHT.events["launch"] - 300, GROUND_M + 1000), (climb_15km, 0.0),
                   (climb_15km + 500, 49_000.0)):
        by_time[t].alt_m = bad
    det = PhaseDetector()
    changes = []
    for s in samples:
        p = det.update(s.t, s.alt_m, s.pressure_hpa, s.fix_valid)
        if s.t in (climb_15km, climb_15km + 500):
            assert 4.0 < det.rate_m_s < 6.0  # the spike was dropped, not averaged in
        if not changes or changes[-1][1] is not p:
            changes.append((s.t, p))
    assert_flight(changes[1:], FLIGHT)


def test_a_glitch_never_enters_the_window():
    det = PhaseDetector(phase=UP)
    for k in range(30):
        det.update(float(k), 15_000.0 + 5 * k, None, True)
    det.update(30.0, 0.0, None, True)  # "valid" fix, altitude zero: a classic receiver glitch
    assert 0.0 not in [a for _, a in det.to_dict()["windows"]["gps"]]
    assert det.rate_m_s == pytest.approx(5.0)


def test_a_burst_of_junk_altitudes_flips_nothing():
    """A receiver reporting 0 m with a valid fix for 10 s during ascent, float and descent."""
    flight = simulate(burst_m=0, float_m=25_000.0, float_s=3600)
    ev = flight.events
    samples = sample(flight, seed=5)
    for start in (ev["launch"] + 3000, ev["float"] + 1000, ev["burst"] + 900):
        for s in samples:
            if start <= s.t < start + 10:
                s.alt_m = 0.0
    assert_flight(run(PhaseDetector(), samples), flight, with_float=True)


def test_a_glitched_first_sample_does_not_blind_the_detector():
    """If the first altitude ever seen is the glitch, the real ones that follow must win."""
    ground = Flight([GROUND_M] * 600)
    samples = sample(ground)
    samples[0].alt_m = 30_000.0
    det = PhaseDetector()
    # within seconds, not after the glitch's distance / max speed (200 s) has made it plausible
    assert run(det, [s for s in samples if s.t <= 40]) == []
    assert det.source == "gps" and abs(det.alt_m - GROUND_M) < 20 and abs(det.rate_m_s) < 0.5
    assert abs(det.to_dict()["launch_ref"]["gps"] - GROUND_M) < 20
    assert run(det, [s for s in samples if s.t > 40]) == []


def test_moderate_spikes_within_the_glitch_gate_do_not_flip_phases():
    """Spikes small enough to pass the gate (300 m in 2 s) are smoothed by the fit and dwell."""
    flight = simulate(burst_m=0, float_m=25_000.0, float_s=3600)
    samples = sample(flight, seed=3)
    for s in samples:
        if s.fix_valid and int(s.t) % 97 == 0:
            s.alt_m -= 300.0
    assert_flight(run(PhaseDetector(), samples), flight, with_float=True)


def test_irregular_samples_with_gaps():
    ev = FLIGHT.events
    gaps = [(ev["launch"] + 1000, ev["launch"] + 1240), (ev["burst"] + 600, ev["burst"] + 840)]
    samples = sample(FLIGHT, seed=4, step=lambda rng: rng.choice([0.5, 1.0, 3.0, 7.0, 12.0]), gaps=gaps)
    det = PhaseDetector()
    changes = []
    for s in samples:
        before = det.phase
        p = det.update(s.t, s.alt_m, s.pressure_hpa, s.fix_valid)
        if s.alt_m is None and s.pressure_hpa is None:
            assert p is before and det.source is None  # no reading: no change, no stale estimate
        if p is not before:
            changes.append((s.t, p))
    assert_flight(changes, FLIGHT, slack_s=30)


def test_a_long_wait_on_the_ground_stays_pre_launch():
    ground = Flight([GROUND_M] * 4 * 3600)
    det = PhaseDetector()
    assert run(det, sample(ground, gps_noise_m=25.0)) == []
    assert det.phase is PRE and abs(det.rate_m_s) < 0.5


def test_launch_is_seen_by_height_gained_even_when_slow():
    """A slow climb (1 m/s) never passes the rate test but passes 150 m above the start."""
    flight = simulate(climb=1.0, burst_m=2_000.0, after_s=0)
    changes = run(PhaseDetector(), sample(flight))
    t_up = next(t for t, p in changes if p is UP)
    launch = flight.events["launch"]
    # 150 m at 1 m/s, give or take the noise on the first altitude seen
    assert launch + 120 <= t_up <= launch + 150 + 60


def test_a_stable_altitude_alone_detects_landing():
    """With a rate test too strict for the noise, the narrow altitude spread still lands it."""
    strict = PhaseLimits(landed_rate_m_s=0.001)
    changes = run(PhaseDetector(strict), sample(FLIGHT, gps_noise_m=15.0))
    assert_flight(changes, FLIGHT)


# --- reboots ----------------------------------------------------------------------------------------


def _split(samples, t):
    return [s for s in samples if s.t < t], [s for s in samples if s.t >= t]


def test_reboot_during_ascent_resumes_from_the_persisted_state():
    t20km = FLIGHT.events["launch"] + 4000
    before, after = _split(sample(FLIGHT), t20km)
    det = PhaseDetector()
    run(det, before)
    assert det.phase is UP
    restored = PhaseDetector.from_dict(json.loads(json.dumps(det.to_dict())))
    assert restored.to_dict() == det.to_dict()
    assert [p for _, p in run(restored, after)] == [DOWN, LANDED]


def test_reboot_with_only_the_phase_and_a_new_clock_epoch():
    """The daemon kept just the phase, and flight seconds restart from 0 after the reboot."""
    t20km = FLIGHT.events["launch"] + 4000
    _, after = _split(sample(FLIGHT), t20km)
    for s in after:
        s.t -= t20km
    det = PhaseDetector.from_dict({"phase": "ascent"})
    seen = [det.update(s.t, s.alt_m, s.pressure_hpa, s.fix_valid) for s in after]
    assert PRE not in seen
    assert [p for i, p in enumerate(seen) if i == 0 or p is not seen[i - 1]] == [UP, DOWN, LANDED]


def test_reboot_during_float_stays_float():
    flight = simulate(burst_m=0, float_m=25_000.0, float_s=3600)
    mid_float = flight.events["float"] + 1800
    before, after = _split(sample(flight), mid_float)
    det = PhaseDetector()
    run(det, before)
    assert det.phase is FLOAT
    restored = PhaseDetector.from_dict(det.to_dict())
    assert [p for _, p in run(restored, after)] == [DOWN, LANDED]


def test_a_fresh_start_high_up_knows_it_is_flying():
    """Nothing persisted (state lost) and the payload wakes at 20 km: not pre-launch for long."""
    t20km = FLIGHT.events["launch"] + 4000
    _, after = _split(sample(FLIGHT), t20km)
    changes = run(PhaseDetector(), after)
    assert [p for _, p in changes] == [UP, DOWN, LANDED]
    assert changes[0][0] <= t20km + 30


def test_restart_while_the_clock_goes_back_forgets_samples_not_the_phase():
    det = PhaseDetector(phase=DOWN)
    for k in range(100):
        det.update(1000.0 + k, 3000.0 - 5 * k, None, True)
    assert det.rate_m_s == pytest.approx(-5.0)
    assert det.update(10.0, 2500.0, None, True) is DOWN
    assert det.rate_m_s is None  # one sample in the new epoch: no rate yet


@pytest.mark.parametrize("bad", [{}, {"phase": "orbit"}, {"phase": "ascent", "version": 2},
                                 {"phase": "ascent", "windows": {"gps": [[1.0]]}}])
def test_bad_state_is_refused(bad):
    with pytest.raises(ValueError):
        PhaseDetector.from_dict(bad)


def test_phases_are_ordered():
    assert [p.rank for p in (PRE, UP, FLOAT, DOWN, LANDED)] == [0, 1, 2, 3, 4]
    assert [p.value for p in Phase] == ["pre-launch", "ascent", "float", "descent", "landed"]
