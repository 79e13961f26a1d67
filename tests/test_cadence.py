"""The payload's schedule has one owner (issue 43): the Cadence answers every period from the
configuration, the uplink's SET_INTERVALS and the governor's stretch; the daemon runs the loops
table of payload/assembly.py; every producer is read in one shape by the statistics file."""

from __future__ import annotations

import json
from dataclasses import fields, replace

import pytest

from payload.assembly import build_onboard, loops
from payload.cadence import Cadence, UnknownLoop
from payload.clock import Clock
from payload.config import PayloadConfig, ScheduleSection
from payload.daemon import Daemon
from payload.loop import Closing, Loop
from payload.parts.camera import Camera
from payload.policy.modes import Mode, policy_for
from payload.producers import (
    Beacon,
    BeaconStats,
    Fitted,
    Health,
    HealthStats,
    Idle,
    Musings,
    MusingStats,
    Pictures,
    PictureStats,
)
from payload.uplink.handler import CommandStats
from sim.world.camera import SimCameraBackend
from sim.world.flight import SimSensors
from stratoecho.wire import uplink
from tests.fakes import RecordingRadio


class Ladder:
    """A governor's stretch for a given mode, in the steady phase (pre-launch)."""

    def __init__(self, mode: Mode = Mode.NOMINAL):
        self.mode = mode

    def stretch(self, task: str, mode: Mode | None = None) -> float:
        return policy_for(mode or self.mode, None)[task] or 1.0


SCHEDULE = ScheduleSection(telemetry_s=30.0, musing_s=300.0, health_s=120.0, image_s=600.0, first_musing_s=45.0,
                           beacon_slot_s=7.0)


def daemon(tmp_path, cfg: PayloadConfig | None = None, **fitted):
    clock = Clock(speedup=1e6)
    return build_onboard(cfg or PayloadConfig(), SimSensors(clock), RecordingRadio(), clock, None,
                        tmp_path / "data", fitted=Fitted(**fitted))


# --------------------------------------------------------------------------- the Cadence


def test_the_configured_intervals_are_the_periods_while_nothing_stretches_them():
    c = Cadence(SCHEDULE, Ladder())
    assert [c.period_s(loop) for loop in ("beacon", "health", "camera", "think")] == [30.0, 120.0, 600.0, 300.0]
    assert c.beacon_s == 30.0
    assert [c.first_s(loop) for loop in ("beacon", "health", "camera", "think")] == [0.0, 120.0, 300.0, 45.0]
    assert c.beacon_slot_s == 7.0


def test_the_governor_stretches_each_period_by_its_mode():
    ladder = Ladder(Mode.SURVIVAL)
    c = Cadence(SCHEDULE, ladder)
    survival = policy_for(Mode.SURVIVAL, None)
    assert survival["beacon"] and survival["beacon"] > 1  # the premise: survival slows the beacon
    assert c.beacon_s == 30.0 * survival["beacon"]
    assert c.period_s("health") == 120.0 * (survival["housekeeping"] or 1.0)
    assert c.period_s("think") == 300.0  # shed in survival: still polled at its interval
    ladder.mode = Mode.NOMINAL
    assert c.beacon_s == 30.0  # asked each time: a mode change is heard at the next period
    assert c.beacon_s_under(60.0, Mode.SURVIVAL) == 60.0 * survival["beacon"]


def test_set_intervals_changes_the_intervals_in_force_and_never_the_configuration():
    schedule = SCHEDULE.model_copy()
    c = Cadence(schedule, Ladder())
    c.set_intervals(60.0, 900.0)
    assert (c.telemetry_s, c.musing_s, c.beacon_s, c.period_s("think")) == (60.0, 900.0, 60.0, 900.0)
    assert (schedule.telemetry_s, schedule.musing_s) == (30.0, 300.0)
    assert c.period_s("health") == 120.0  # the uplink does not set it


@pytest.mark.parametrize("telemetry_s, musing_s", [(0.0, 300.0), (30.0, -1.0), (float("nan"), 300.0)])
def test_an_interval_that_is_no_period_is_refused(telemetry_s, musing_s):
    c = Cadence(SCHEDULE, Ladder())
    with pytest.raises(ValueError, match="intervals must be positive"):
        c.set_intervals(telemetry_s, musing_s)
    assert c.telemetry_s == 30.0


def test_a_loop_without_a_period_is_named_in_the_refusal():
    c = Cadence(SCHEDULE, Ladder())
    with pytest.raises(UnknownLoop, match="'radio'.*beacon, health, camera, think"):
        c.period_s("radio")
    with pytest.raises(UnknownLoop):
        c.first_s("radio")


def test_the_daemon_the_handler_and_the_loops_read_one_cadence(tmp_path):
    d = daemon(tmp_path)
    try:
        assert d.parts.commands.cadence is d.parts.cadence is d.parts.cadence
        beacon = d.daemon.loops["beacon"]
        d.parts.commands.on_command(uplink.SetIntervals(60, 900))
        assert d.parts.cadence.telemetry_s == 60.0 and beacon.period_s() == 60.0 == d.parts.cadence.beacon_s
        d.parts.flight.governor.set_ground_floor(Mode.SURVIVAL)
        stretched = 60.0 * policy_for(Mode.SURVIVAL, d.parts.flight.governor.phase.value)["beacon"]
        assert beacon.period_s() == d.parts.cadence.beacon_s == stretched
    finally:
        d.parts.store.close()


# --------------------------------------------------------------------------- the loops table


def test_the_loops_table_holds_the_fitted_loops_in_the_order_they_start(tmp_path):
    d = daemon(tmp_path)
    try:
        assert list(d.daemon.loops) == ["beacon", "radio", "health", "stats"]  # no camera, no persona
        beacon, radio = d.daemon.loops["beacon"], d.daemon.loops["radio"]
        assert beacon.on_due == d.parts.transmitter.turns.due and beacon.slot_s == d.cfg.schedule.beacon_slot_s
        assert beacon.before == d.parts.commands.revert_unconfirmed
        assert radio.period_s is None and radio.once == d.parts.transmitter.run  # runs continuously
        assert d.daemon.loops["health"].first_s == d.cfg.schedule.health_s
        # The statistics are one loop more, the daemon's own: every flight minute, from the first.
        stats = d.daemon.loops["stats"]
        assert stats.once == d.flight_stats.write and stats.period_s() == stats.first_s == 60.0
        d.daemon.run_once("stats")
        assert json.loads((tmp_path / "data" / "stats.json").read_text())["flight_s"] >= 0
    finally:
        d.parts.store.close()


def test_a_camera_adds_its_loop_half_a_period_in(tmp_path):
    sim = SimCameraBackend(lambda: 25_000.0, size=(160, 120))
    cam = Camera(sim.factory, still_dir=tmp_path / "stills", thumb_max_bytes=4000, timeout_s=5)
    d = daemon(tmp_path, camera=cam)
    try:
        assert list(d.daemon.loops) == ["beacon", "radio", "health", "camera", "stats"]
        assert d.daemon.loops["camera"].first_s == d.cfg.schedule.image_s / 2
        assert d.daemon.run_once("camera") is True and d.parts.pictures.stats()["images_queued"] == 1
    finally:
        d.parts.store.close()
        cam.close()


class StandInMusings:
    """What the table asks of the musings: one run, and whether to ask again."""

    def __init__(self):
        self.made = 0

    def once(self) -> str:
        self.made += 1
        return "a thought"

    def take_ask_again(self) -> bool:
        return False


def test_a_persona_adds_the_think_loop_which_follows_the_beacon(tmp_path):
    d = daemon(tmp_path)
    try:
        musings = StandInMusings()
        table = {loop.name: loop for loop in loops(d.cfg, replace(d.parts, musings=musings))}
        think = table["think"]
        assert list(table) == ["beacon", "radio", "health", "think"]
        assert think.after == "beacon" and think.remade_when_stale and think.once == musings.once
        assert think.period_s() == d.parts.cadence.period_s("think") and think.first_s == d.cfg.schedule.first_musing_s
        assert think.run_s == 2 * d.cfg.persona.timeout_s
    finally:
        d.parts.store.close()


def test_a_run_of_the_beacon_wakes_the_loop_that_follows_it(tmp_path):
    d = daemon(tmp_path)
    try:
        d.parts = replace(d.parts, musings=StandInMusings())
        d.daemon = d._daemon()
        assert not d.daemon.wakes["think"].is_set()
        d.daemon.run_once("beacon")
        assert d.daemon.wakes["think"].is_set()
        assert d.daemon.run_once("think") == "a thought"
        d.fly_without_persona()  # a persona that will not load leaves the table
        assert "think" not in d.daemon.loops
    finally:
        d.parts.store.close()


def test_a_loop_of_the_table_runs_what_it_declares_every_period():
    """The daemon alone, with a clock and one loop: it needs nothing of the payload to schedule."""
    class Steps(Clock):
        def __init__(self):
            super().__init__(speedup=1.0)
            self.t = 0.0

        def elapsed_s(self) -> float:
            return self.t

        def wait(self, seconds: float, stop=None) -> bool:
            self.t += max(seconds, 0.0)
            return self.t > 35.0

    clock, ran, dues = Steps(), [], []
    health = Loop("health", lambda: ran.append(clock.t), lambda: 10.0, first_s=5.0,
                  on_due=lambda this, nxt: dues.append((this, nxt)))
    Daemon(clock, [health], Closing(clock.event(), clock.event()))._every(health)
    assert ran == [5.0, 15.0, 25.0, 35.0]
    assert dues[0] == (None, 5.0) and dues[-1] == (None, None)


# --------------------------------------------------------------------------- the producers' shape


def test_every_producer_answers_once_and_stats():
    for producer in (Beacon, Health, Pictures, Musings):
        assert callable(producer.once) and callable(producer.stats), producer.__name__
    idle = Idle(PictureStats)
    assert idle.once() is None and idle.stats() == {"images_queued": 0, "ssdv_packets_queued": 0}


def test_the_statistics_file_keeps_its_fields(tmp_path):
    d = daemon(tmp_path)
    try:
        d.daemon.run_once("beacon")
        d.daemon.run_once("health")
        d.flight_stats.write()
        stats = json.loads((tmp_path / "data" / "stats.json").read_text())
    finally:
        d.parts.store.close()
    assert list(stats) == ["daemon", "link", "queue_depth", "flight_s", "energy_wh", "persona_restarts",
                           "uplink_rejected", "loss_estimate", "reach", "relay", "mode", "phase"]
    table = ["boot"] + [f.name for stats_type in (BeaconStats, HealthStats, CommandStats, PictureStats, MusingStats)
                        for f in fields(stats_type)]
    assert list(stats["daemon"]) == table
    assert stats["daemon"]["telemetry_queued"] == 1 and stats["daemon"]["health_queued"] == 1
    assert stats["daemon"]["musings_generated"] == 0  # no persona: zeros, the same fields
    assert stats["mode"] == d.parts.flight.governor.mode.value and stats["relay"] == {}


# --------------------------------------------------------------------------- the clock's answers


def test_the_clock_answers_what_the_payload_asked_of_its_speed():
    fast = Clock(speedup=10.0)
    assert fast.real_time_scale() == 0.1 and fast.flight_s(0.2) == 2.0
    assert fast.system_deadlines_hold() and fast.describe() == "real time x10"
    assert Clock().describe() == "real time" and Clock().real_time_scale() == 1.0
