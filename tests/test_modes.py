"""The power-mode ladder, the task policy and the energy budget (payload/policy/modes.py).

Traces are sequences of (flight second, readings) fed to a ladder; assertions are on
the decisions and on the count and order of transitions, never on wall-clock time.
"""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payload.parts.outputs import PATTERNS
from payload.policy.modes import (
    PHASE_POLICY,
    POLICY,
    REASONS,
    TASKS,
    Mode,
    ModeDecision,
    ModeInputs,
    ModeLadder,
    ModeLimits,
    boot_mode,
    energy_budget,
    period_s,
    policy_for,
    runs,
)
from payload.policy.phases import Phase

LIM = ModeLimits()
GOOD = dict(battery_v=3.95, battery_temp_c=15.0, cpu_temp_c=50.0)
N, LOW, SURV = Mode.NOMINAL, Mode.LOW_POWER, Mode.SURVIVAL


def inp(**kw) -> ModeInputs:
    return ModeInputs(**{**GOOD, **kw})


def feed(ladder: ModeLadder, trace) -> list[tuple[float, ModeDecision]]:
    """Run (t, inputs) pairs; return every decision with its time."""
    return [(t, ladder.update(i, t)) for t, i in trace]


def changes(decisions) -> list[tuple[float, Mode, Mode]]:
    return [(t, d.previous, d.mode) for t, d in decisions if d.changed]


def steady(t0: float, t1: float, step: float, **kw):
    t = t0
    while t < t1:
        yield t, inp(**kw)
        t += step


# --- Mode ------------------------------------------------------------------------------


def test_modes_are_ordered_and_named_like_the_led_patterns():
    assert [m.rank for m in (N, LOW, SURV)] == [0, 1, 2]
    assert SURV.is_worse_than(LOW) and LOW.is_worse_than(N) and not N.is_worse_than(LOW)
    assert Mode.worst(N, SURV, LOW) is SURV and Mode.worst() is N and Mode.worst("low_power", N) is LOW
    assert SURV.step_up() is LOW and LOW.step_up() is N and N.step_up() is N
    for m in Mode:
        assert m.value in PATTERNS  # the status LED shows the mode by name


# --- limits ----------------------------------------------------------------------------


def test_default_limits_have_hysteresis_and_dwell():
    assert LIM.enter_survival_v < LIM.enter_low_power_v < LIM.leave_low_power_v
    assert LIM.enter_survival_v < LIM.leave_survival_v
    assert LIM.enter_low_power_cpu_c > LIM.leave_low_power_cpu_c
    assert 0 < LIM.enter_s < LIM.leave_s
    assert LIM.invalid_mode is LOW


@pytest.mark.parametrize("bad", [
    dict(enter_low_power_v=3.8),  # enter above leave
    dict(enter_survival_v=3.6),  # survival above low power
    dict(leave_survival_soc=45.0),  # survival leave above low-power leave
    dict(enter_survival_battery_c=-5.0),
    dict(leave_low_power_cpu_c=85.0),
    dict(enter_s=-1.0),
    dict(battery_v_min=5.0),
    dict(invalid_mode="nominal"),
    dict(leave_s=float("nan")),
])
def test_inconsistent_limits_are_refused(bad):
    with pytest.raises(ValueError):
        ModeLimits(**bad)


def test_limits_take_a_config_table_with_mode_names():
    lim = ModeLimits(**{"enter_s": 5, "invalid_mode": "survival", "landed_mode": "nominal"})
    assert lim.invalid_mode is SURV and lim.landed_mode is N and lim.enter_s == 5


# --- dwell and hysteresis --------------------------------------------------------------


def test_good_readings_lift_a_safe_start_after_leave_s_not_before():
    ladder = ModeLadder(LIM, LOW)
    decisions = feed(ladder, steady(100.0, 300.0, 1.0))
    assert changes(decisions) == [(100.0 + LIM.leave_s, LOW, N)]
    assert decisions[0][1].reasons == ()


def test_cold_soak_degrades_in_order_then_recovers_one_rung_at_a_time():
    """Battery temperature falls 20 -> -30 °C and the voltage sags 3.95 -> 3.30 V over 3000 s;
    then the heater and sun bring it back in two stages."""
    ladder = ModeLadder(LIM, N)
    trace = []
    for k in range(0, 3600, 2):
        f = min(k, 3000) / 3000
        trace.append((float(k), inp(battery_temp_c=20 - 50 * f, battery_v=3.95 - 0.65 * f)))
    # stage 1: warm enough to leave survival, not low power (-12 °C, 3.60 V)
    trace += [(float(k), inp(battery_temp_c=-12.0, battery_v=3.60)) for k in range(3600, 4000, 2)]
    # stage 2: all good
    trace += [(float(k), inp(battery_temp_c=5.0, battery_v=3.85)) for k in range(4000, 4400, 2)]
    got = changes(feed(ladder, trace))
    assert [(p, m) for _, p, m in got] == [(N, LOW), (LOW, SURV), (SURV, LOW), (LOW, N)]
    (t_low, *_), (t_surv, *_), (t_up1, *_), (t_up2, *_) = got
    # temperature crosses -10 °C at 1800 s and -20 °C at 2400 s (before the voltage does)
    assert 1800 + LIM.enter_s <= t_low <= 1800 + LIM.enter_s + 4
    assert 2400 + LIM.enter_s <= t_surv <= 2400 + LIM.enter_s + 4
    assert t_up1 == 3600 + LIM.leave_s
    assert t_up2 == 4000 + LIM.leave_s


def test_recovery_from_survival_takes_two_leave_periods():
    ladder = ModeLadder(LIM, SURV)
    got = changes(feed(ladder, steady(0.0, 400.0, 1.0)))
    assert got == [(LIM.leave_s, SURV, LOW), (2 * LIM.leave_s, LOW, N)]


def test_collapse_goes_straight_to_survival():
    ladder = ModeLadder(LIM, N)
    got = changes(feed(ladder, steady(0.0, 60.0, 1.0, battery_v=3.2)))
    assert got == [(LIM.enter_s, N, SURV)]


def test_sag_under_load_shorter_than_enter_s_does_nothing():
    """A transmission sags the battery below even the survival threshold for 9 s each minute."""
    ladder = ModeLadder(LIM, N)
    trace = [(float(t), inp(battery_v=3.30 if t % 60 < 9 else 3.90)) for t in range(0, 1800)]
    decisions = feed(ladder, trace)
    assert changes(decisions) == []
    assert "battery_v_critical" in decisions[3][1].reasons  # reported while it lasts


def test_a_sag_longer_than_enter_s_does_step_down():
    ladder = ModeLadder(LIM, N)
    trace = [(float(t), inp(battery_v=3.30 if 100 <= t < 112 else 3.90)) for t in range(0, 200)]
    assert changes(feed(ladder, trace))[0] == (100 + LIM.enter_s, N, SURV)


def test_mostly_low_with_brief_recoveries_still_degrades():
    """Noise poking above the threshold must not hide a battery that is mostly below it."""
    ladder = ModeLadder(LIM, N)
    trace = [(float(t), inp(battery_v=3.50 if t % 6 < 4 else 3.58)) for t in range(0, 600)]
    got = changes(feed(ladder, trace))
    assert [(p, m) for _, p, m in got] == [(N, LOW)]


@pytest.mark.parametrize("field,low,high,start", [
    ("battery_v", 3.54, 3.56, N),  # around enter low power
    ("battery_v", 3.69, 3.71, LOW),  # around leave low power
    ("battery_v", 3.39, 3.41, LOW),  # around enter survival
    ("battery_temp_c", -10.5, -9.5, N),
    ("cpu_temp_c", 79.0, 81.0, N),
])
def test_flapping_at_a_threshold_does_not_flap_the_mode(field, low, high, start):
    """The value swaps sides every 3 s for an hour: at most one transition."""
    ladder = ModeLadder(LIM, start)
    trace = [(float(t), inp(**{field: low if (t // 3) % 2 else high})) for t in range(0, 3600)]
    assert len(changes(feed(ladder, trace))) <= 1


@given(
    st.lists(st.tuples(st.floats(0.5, 6.0), st.floats(3.45, 3.65)), min_size=1, max_size=300),
    st.sampled_from([N, LOW]),
)
def test_voltage_anywhere_around_the_low_power_threshold_changes_the_mode_at_most_once(samples, start):
    # 3.45..3.65 V never demands survival and never clears low power (> 3.70 V)
    ladder = ModeLadder(LIM, start)
    t, trace = 0.0, []
    for dt, v in samples:
        t += dt
        trace.append((t, inp(battery_v=v)))
    got = changes(feed(ladder, trace))
    assert len(got) <= 1
    assert all(m is LOW for _, _, m in got)


def test_cpu_heat_sheds_the_model_but_never_reaches_survival():
    ladder = ModeLadder(LIM, N)
    decisions = feed(ladder, steady(0.0, 600.0, 1.0, cpu_temp_c=95.0))
    assert changes(decisions) == [(LIM.enter_s, N, LOW)]
    assert decisions[-1][1].reasons == ("cpu_temp_hot",)


def test_time_going_backwards_restarts_the_dwell():
    ladder = ModeLadder(LIM, N)
    feed(ladder, steady(1000.0, 1008.0, 1.0, battery_v=3.5))  # 7 s pending
    decisions = feed(ladder, steady(5.0, 14.0, 1.0, battery_v=3.5))  # new epoch
    assert changes(decisions) == []  # 7 + 9 s would have tripped without the restart
    assert ladder.update(inp(battery_v=3.5), 15.0).mode is LOW


# --- invalid readings ----------------------------------------------------------------------


BAD_VALUES = {
    "battery_v": [None, float("nan"), float("inf"), 2.0, 5.0, True],
    "battery_temp_c": [None, float("nan"), -100.0, 150.0],
    "cpu_temp_c": [None, float("-inf"), 121.0],
    "soc": [float("nan"), -5.0, 150.0],
}
BAD_CASES = [(f, v) for f, vs in BAD_VALUES.items() for v in vs]
STEM = {"battery_v": "battery_v", "battery_temp_c": "battery_temp", "cpu_temp_c": "cpu_temp", "soc": "soc"}


@pytest.mark.parametrize("field,value", BAD_CASES)
def test_an_invalid_reading_held_degrades_to_low_power_and_is_reported(field, value):
    ladder = ModeLadder(LIM, N)
    decisions = feed(ladder, steady(0.0, 120.0, 1.0, **{field: value}))
    assert changes(decisions) == [(LIM.enter_s, N, LOW)]
    assert decisions[0][1].reasons == (f"{STEM[field]}_invalid",)


@pytest.mark.parametrize("field,value", BAD_CASES)
@pytest.mark.parametrize("start", [LOW, SURV])
def test_an_invalid_reading_never_improves_the_mode(field, value, start):
    ladder = ModeLadder(LIM, start)
    assert changes(feed(ladder, steady(0.0, 900.0, 2.0, **{field: value}))) == []


def test_a_brief_invalid_reading_does_nothing():
    ladder = ModeLadder(LIM, N)
    trace = [(float(t), inp(battery_v=None if 50 <= t < 55 else 3.9)) for t in range(200)]
    assert changes(feed(ladder, trace)) == []


def test_no_fuel_gauge_is_not_an_invalid_reading():
    ladder = ModeLadder(LIM, N)
    decisions = feed(ladder, steady(0.0, 120.0, 1.0, soc=None))
    assert changes(decisions) == [] and decisions[-1][1].reasons == ()


def test_state_of_charge_thresholds():
    ladder = ModeLadder(LIM, N)
    got = changes(feed(ladder, [(float(t), inp(soc=25.0 if t < 100 else 10.0)) for t in range(200)]))
    assert [(p, m) for _, p, m in got] == [(N, LOW), (LOW, SURV)]


# --- reasons -------------------------------------------------------------------------------


def test_reasons_explain_what_holds_the_mode_down():
    ladder = ModeLadder(LIM, LOW)
    # 3.60 V is above the enter threshold but below leave: it is what keeps LOW_POWER
    d = ladder.update(inp(battery_v=3.60), 0.0)
    assert d.reasons == ("battery_v_low",)
    nominal = ModeLadder(LIM, N)
    assert nominal.update(inp(battery_v=3.60), 0.0).reasons == ()  # not low for nominal
    surv = ModeLadder(LIM, SURV)
    assert surv.update(inp(battery_v=3.50, battery_temp_c=-12.0), 0.0).reasons == (
        "battery_v_critical", "battery_temp_low")


def test_every_reason_is_declared_and_in_declared_order():
    ladder = ModeLadder(LIM, N)
    seen = set()
    everything_bad = inp(battery_v=None, soc=5.0, battery_temp_c=-30.0, cpu_temp_c=90.0, phase="landed")
    for t in range(100):
        d = ladder.update(everything_bad, float(t))
        seen.update(d.reasons)
        assert list(d.reasons) == [r for r in REASONS if r in d.reasons]
    assert seen == {"battery_v_invalid", "soc_critical", "battery_temp_critical", "cpu_temp_hot", "landed"}
    assert ladder.mode is SURV
    assert len(set(REASONS)) == len(REASONS)


# --- landed -------------------------------------------------------------------------------


@pytest.mark.parametrize("phase", ["landed", Phase.LANDED])
def test_landed_caps_the_mode_at_low_power(phase):
    ladder = ModeLadder(LIM, N)
    decisions = feed(ladder, steady(0.0, 3600.0, 5.0, phase=phase))
    assert changes(decisions) == [(LIM.enter_s, N, LOW)]
    assert decisions[-1][1].reasons == ("landed",)


def test_other_phases_do_not_touch_the_mode():
    ladder = ModeLadder(LIM, N)
    for p in Phase:
        if p is not Phase.LANDED:
            assert changes(feed(ladder, steady(0.0, 100.0, 1.0, phase=p))) == []


# --- persistence ----------------------------------------------------------------------------


def test_round_trip_mid_dwell_continues_identically():
    trace = [(float(t), inp(battery_v=3.5 if t < 300 else 3.8, battery_temp_c=-12.0 if t < 200 else 0.0))
             for t in range(0, 600)]
    a = ModeLadder(LIM, N)
    feed(a, trace[:305])  # mid-way through a recovery dwell
    saved = json.loads(json.dumps(a.to_dict()))
    b = ModeLadder.from_dict(saved, LIM)
    assert b.to_dict() == a.to_dict()
    rest = trace[305:]
    da, db = feed(a, rest), feed(b, rest)
    assert da == db
    assert changes(da)  # the continuation actually does something


def test_minimal_state_restores_the_mode():
    ladder = ModeLadder.from_dict({"mode": "survival"})
    assert ladder.mode is SURV
    # and it must earn its way up again from its first reading
    assert changes(feed(ladder, steady(500.0, 700.0, 1.0)))[0] == (500.0 + LIM.leave_s, SURV, LOW)


@pytest.mark.parametrize("bad", [{}, {"mode": "turbo"}, {"mode": "nominal", "version": 99},
                                 {"mode": "nominal", "pending_s": [1, 2]}])
def test_bad_state_is_refused(bad):
    with pytest.raises(ValueError):
        ModeLadder.from_dict(bad)


# --- boot ------------------------------------------------------------------------------------


@pytest.mark.parametrize("persisted,clean,expected", [
    (None, True, LOW), (None, False, LOW),
    (N, True, N), (N, False, LOW),
    (LOW, True, LOW), (LOW, False, LOW),
    (SURV, True, SURV), (SURV, False, SURV),
    ("nominal", True, N), ("garbage", True, LOW),
])
def test_boot_mode(persisted, clean, expected):
    assert boot_mode(persisted, clean) is expected


# --- task policy -------------------------------------------------------------------------------

PHASES = [None, *Phase]


def _factor(f):
    return math.inf if f is None else f


def test_every_policy_row_covers_every_task_and_never_speeds_one_up():
    for mode in Mode:
        for phase in PHASES:
            row = policy_for(mode, phase)
            assert set(row) == set(TASKS)
            assert all(f is None or f >= 1.0 for f in row.values())
    assert all(set(row) == set(TASKS) for row in (*POLICY.values(), *PHASE_POLICY.values()))


def test_shedding_follows_priority_in_every_mode_and_phase():
    """If a task runs, every more important task runs: with the beacon off everything is off,
    and the model goes before anything else."""
    for mode in Mode:
        for phase in PHASES:
            for task in TASKS:
                if runs(mode, task, phase):
                    for other in TASKS:
                        if TASKS[other].priority < TASKS[task].priority:
                            assert runs(mode, other, phase), (mode, phase, task, other)


def test_the_model_is_shed_first_and_the_beacon_last():
    order = sorted(TASKS, key=lambda name: -TASKS[name].priority)  # first shed first
    assert order[0] == "think" and order[-1] == "beacon"
    think = TASKS["think"].energy_j
    assert all(think >= 5 * t.energy_j for n, t in TASKS.items() if n != "think")
    for mode in Mode:
        for phase in PHASES:
            assert runs(mode, "beacon", phase)
            assert runs(mode, "think", phase) == (mode is N and phase != Phase.LANDED)


def test_worse_modes_never_do_more():
    for phase in PHASES:
        for better, worse in ((N, LOW), (LOW, SURV)):
            b, w = policy_for(better, phase), policy_for(worse, phase)
            assert all(_factor(w[t]) >= _factor(b[t]) for t in TASKS), (phase, better, worse)


def test_landed_is_at_least_as_frugal_as_low_power():
    low = policy_for(LOW)
    for mode in Mode:
        landed = policy_for(mode, Phase.LANDED)
        assert all(_factor(landed[t]) >= _factor(low[t]) for t in TASKS)
        assert landed["beacon"] == policy_for(mode)["beacon"]  # the recovery beacon keeps its pace


def test_the_mode_rows_say_what_the_issue_asks():
    assert all(f == 1.0 for f in POLICY[N].values())
    assert POLICY[LOW]["beacon"] == 1.0 and POLICY[LOW]["think"] is None and POLICY[LOW]["capture"] > 1.0
    assert {t for t in TASKS if runs(SURV, t)} == {"beacon", "transmit", "housekeeping"}
    assert POLICY[SURV]["beacon"] == 2.0


def test_period_s():
    assert period_s(N, "beacon") == TASKS["beacon"].period_s
    assert period_s(SURV, "beacon", 12.0) == 24.0
    assert period_s(LOW, "capture", 900.0) == 3600.0
    assert period_s(LOW, "think", 180.0) is None
    assert period_s("nominal", "sense", phase="landed") == TASKS["sense"].period_s * 4
    with pytest.raises(KeyError, match="unknown task"):
        period_s(N, "dance")


def test_policy_tables_are_read_only():
    with pytest.raises(TypeError):
        POLICY[N]["think"] = 0.5
    with pytest.raises(TypeError):
        TASKS["think"] = TASKS["beacon"]


# --- energy --------------------------------------------------------------------------------------


def average_load_w(mode: Mode | str, phase: str | None = None, *, base_w: float = 1.6) -> float:
    """Mean power in ``mode``: idle board (``base_w``, Pi 4 ~1.6 W) plus each running task's
    energy per run over its period (TASKS' energy_j): an estimate, not a measurement."""
    return base_w + sum(TASKS[name].energy_j / (TASKS[name].period_s * factor)
                        for name, factor in policy_for(mode, phase).items() if factor is not None)


def test_average_load_follows_the_policy():
    loads = [average_load_w(m) for m in (N, LOW, SURV)]
    assert loads[0] > loads[1] > loads[2] > 1.6
    expected = 1.6 + sum(t.energy_j / t.period_s for t in TASKS.values())
    assert average_load_w(N) == pytest.approx(expected)
    assert average_load_w(SURV, base_w=0.6) == pytest.approx(
        0.6 + 0.5 / 20 + 1.0 / 60 + 0.05 / 10)
    assert average_load_w(N, Phase.LANDED) <= average_load_w(LOW)
    # the model is the bulk of what shedding saves
    assert loads[0] - loads[1] > TASKS["think"].energy_j / TASKS["think"].period_s * 0.9


def test_energy_budget():
    b = energy_budget(50.0, 10.0, 2.0)
    assert (b.soc_valid, b.stored_wh, b.reserve_wh, b.wh_left, b.hours_left) == (True, 5.0, 1.0, 4.0, 2.0)
    low = energy_budget(5.0, 10.0, 2.0)
    assert low.wh_left == 0.0 and low.hours_left == 0.0
    assert energy_budget(50.0, 10.0, 0.0).hours_left == math.inf
    assert energy_budget(50.0, 10.0, 2.0, reserve_fraction=0.0).wh_left == 5.0
    for bad_soc in (None, float("nan"), 120.0):
        b = energy_budget(bad_soc, 10.0, 2.0)
        assert not b.soc_valid and b.wh_left == 0.0 and b.hours_left == 0.0


@pytest.mark.parametrize("args", [(50.0, 0.0, 1.0), (50.0, 10.0, -1.0), (50.0, 10.0, 1.0, 1.0),
                                  (50.0, float("nan"), 1.0)])
def test_energy_budget_refuses_nonsense(args):
    with pytest.raises(ValueError):
        energy_budget(*args)


def test_a_signal_not_fitted_is_left_out_not_counted_as_invalid():
    from payload.policy.modes import Mode, ModeInputs, ModeLadder

    ladder = ModeLadder(initial=Mode.NOMINAL)
    for t in range(0, 120, 5):
        d = ladder.update(ModeInputs(battery_v=3.9, cpu_temp_c=50.0, not_fitted=frozenset({"battery_temp"})), t)
    assert d.mode is Mode.NOMINAL and not d.reasons
    ladder = ModeLadder(initial=Mode.NOMINAL)
    for t in range(0, 120, 5):
        d = ladder.update(ModeInputs(battery_v=3.9, cpu_temp_c=50.0), t)  # fitted, but no reading
    assert d.mode is Mode.LOW_POWER and "battery_temp_invalid" in d.reasons
