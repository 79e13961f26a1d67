"""Commands that cannot lose the flight: risky changes on probation (reverted unless the
same command comes again from a later window), a counter that one frame cannot use up,
a way out when a key's counters are spent, authentic refusals said on air, and a
repair backlog with a bound."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone

import pytest

from groundstation.link.uplink import CommandSigner, SignerStateError
from groundstation.link.windows import WindowAnswerer
from groundstation.store import Store as GroundStore
from payload.assembly import build_onboard
from payload.clock import Clock
from payload.config import PayloadConfig, RadioSection, UplinkSection
from payload.link.frames import MAX_REPAIR_FRAMES, LinkParts
from payload.link.transmitter import Transmitter
from payload.onboard import Onboard
from payload.store import Store
from payload.uplink.gate import LEGACY_COUNTER_NAME, CommandGate
from payload.uplink.handler import TABLE, OnProbation
from payload.uplink.probation import Confirmations
from sim.bench.run.link import simulate
from sim.world.flight import SimSensors
from stratoecho import wire
from stratoecho.wire import Kind, uplink
from stratoecho.wire.downlink import DownlinkAuth
from stratoecho.wire.events import event
from stratoecho.wire.uplink_keys import new_key, write_key_file
from tests.fakes import EVERY_10_S, RecordingRadio

# A key file must hold a key that passes uplink_keys.key_weakness: no counting pattern.
KEY = new_key()  # a hash of a string in tests/ is a published key: refused
AUTH = DownlinkAuth.from_flight_key(KEY)  # what the payload tags its records with
NEW_KEY = bytes(range(100, 132))
PID = "STRATO1"
T0 = datetime(2026, 6, 1, 9, 0, tzinfo=timezone.utc)


# --------------------------------------------------------------------------- probation, pure


def test_a_change_is_pending_until_the_same_command_comes_from_a_later_window():
    c = Confirmations(window_s=4.0)
    assert c.offer("set_intervals", (60, 600), (30, 600), 1000.0, confirm_s=1800) == "pending"
    assert c.pending["set_intervals"].deadline_s == 2800.0
    assert c.offer("set_intervals", (60, 600), (60, 600), 1003.0, confirm_s=1800) == "repeat"  # same window
    assert c.expired(2799.0) == []
    assert c.offer("set_intervals", (60, 600), (60, 600), 1200.0, confirm_s=1800) == "confirmed"
    assert c.pending == {} and c.expired(10_000.0) == []


def test_an_unconfirmed_change_expires_back_to_the_last_confirmed_value():
    c = Confirmations(window_s=4.0)
    c.offer("set_intervals", (60, 600), (30, 600), 0.0, confirm_s=1800)
    # A second change before the first was confirmed: the way back is still the confirmed one.
    assert c.offer("set_intervals", (120, 600), (60, 600), 100.0, confirm_s=1800) == "pending"
    (p,) = c.expired(1900.0)
    assert (p.value, p.previous) == ((120, 600), (30, 600))
    assert c.pending == {}


def test_asking_for_the_confirmed_value_again_ends_the_probation():
    c = Confirmations(window_s=4.0)
    c.offer("set_mode", ("survival",), ("nominal",), 0.0, confirm_s=1800)
    assert c.offer("set_mode", ("nominal",), ("survival",), 50.0, confirm_s=1800) == "restored"
    assert c.pending == {}


def test_probation_state_round_trips_only_for_the_commands_named():
    c = Confirmations(window_s=4.0)
    c.offer("set_mode", ("low_power",), ("nominal",), 10.0, confirm_s=1800)
    c.offer("set_intervals", (60, 600), (30, 600), 10.0, confirm_s=1800)
    back = Confirmations(window_s=4.0)
    assert back.load_json(c.to_json(), {"set_mode"}) == []
    assert list(back.pending) == ["set_mode"] and back.pending["set_mode"] == c.pending["set_mode"]
    assert back.load_json("not json", {"set_mode"})[0].startswith("unreadable probation state")
    # An entry damaged on the card is named with its field and left out; the others are kept.
    damaged = json.dumps([{"name": "set_mode", "value": ["survival"], "previous": ["nominal"], "applied_s": 1.0},
                          json.loads(c.to_json())[0]])
    again = Confirmations(window_s=4.0)
    problems = again.load_json(damaged, {"set_mode"})
    assert len(problems) == 1 and "deadline_s: Field required" in problems[0]
    assert again.pending["set_mode"] == c.pending["set_mode"]


def test_the_unconfirmed_event_carries_the_command_back_to_the_ground():
    for cmd in (uplink.SetIntervals(60, 900), uplink.SetMode(uplink.PowerMode.SURVIVAL)):
        e = uplink.unconfirmed_event(cmd, "whatever it means", 1800)
        back = wire.Record.from_body(wire.Kind.EVENT, 1, 1, wire.Record(wire.Kind.EVENT, 1, 1, 0, e).body()).content
        assert uplink.unconfirmed_command(back) == cmd
    forged = event("unconfirmed", command="ping", args="beef", what="x", revert_s=1)
    assert uplink.unconfirmed_command(forged) is None  # not a risky command
    assert uplink.unconfirmed_command(event("unconfirmed", command="set_mode", args="07", what="x", revert_s=1)) is None
    assert uplink.unconfirmed_command(event("pong", nonce=12)) is None


# --------------------------------------------------------------------------- probation, in the daemon


class StepClock(Clock):
    """Real-time clock whose UTC the test sets: probation deadlines are UTC seconds."""

    def __init__(self) -> None:
        super().__init__(speedup=1.0, start_utc=T0)
        self.t = 0.0

    def now(self) -> datetime:
        return T0 + timedelta(seconds=self.t)


def _daemon(tmp_path, clock=None, **uplink_options):
    key_file = tmp_path / "uplink.key"
    if not key_file.exists():
        write_key_file(key_file, key=KEY)
    cfg = PayloadConfig(uplink=UplinkSection(key_file=str(key_file), **uplink_options))
    clock = clock or StepClock()
    return build_onboard(cfg, SimSensors(clock), RecordingRadio(), clock, None, tmp_path / "data"), cfg, clock


def _events(d: Onboard) -> list[str]:
    return [wire.Record.from_body(wire.Kind.EVENT, q.boot, q.seq, q.payload).text
            for q in d.parts.store.queue.queued(limit=1000, kinds=(Kind.EVENT,))]


def _send(d: Onboard, counter: int, cmd, key: bytes = KEY) -> None:
    d.parts.commands.on_frame(uplink.sign(key, counter, d.cfg.callsign, cmd))


def test_set_intervals_reverts_at_the_next_beacon_after_its_deadline(tmp_path):
    d, cfg, clock = _daemon(tmp_path)
    try:
        _send(d, 1, uplink.SetIntervals(120, 900))
        assert (d.parts.cadence.telemetry_s, d.parts.cadence.musing_s) == (120.0, 900.0)
        assert cfg.schedule.telemetry_s == 10.0  # the daemon's intervals change, never the configuration
        pending = [e for e in _events(d) if e.startswith("unconfirmed set_intervals")]
        # Two windows at 120 s x 6 sentences are 1440 s: the configured 1800 s covers them.
        assert len(pending) == 1 and pending[0].endswith("reverts in 1800 s unless sent again")
        clock.t = 1799.0
        d.daemon.run_once("beacon")
        assert d.parts.cadence.telemetry_s == 120.0
        clock.t = 1800.0
        d.daemon.run_once("beacon")
        assert (d.parts.cadence.telemetry_s, d.parts.cadence.musing_s) == (10.0, 180.0)
        assert "set_intervals not confirmed in time; back to intervals 10 s telemetry, 180 s musings" in _events(d)
    finally:
        d.parts.store.close()


def test_set_intervals_sent_again_from_a_later_window_stays(tmp_path):
    d, cfg, clock = _daemon(tmp_path)
    try:
        _send(d, 1, uplink.SetIntervals(60, 900))
        clock.t = 2.0
        _send(d, 2, uplink.SetIntervals(60, 900))  # a retry in the same window proves nothing
        assert not any("confirmed" in e and not e.startswith("unconfirmed") for e in _events(d))
        clock.t = 400.0
        _send(d, 3, uplink.SetIntervals(60, 900))
        assert "set_intervals confirmed: intervals 60 s telemetry, 900 s musings" in _events(d)
        clock.t = 100_000.0
        d.daemon.run_once("beacon")
        assert d.parts.cadence.telemetry_s == 60.0
    finally:
        d.parts.store.close()


def test_probation_lasts_at_least_two_windows_under_the_new_settings(tmp_path):
    d, cfg, clock = _daemon(tmp_path, confirm_s=300.0, max_telemetry_s=240.0)
    try:
        _send(d, 1, uplink.SetIntervals(240, 900))
        (pending,) = [e for e in _events(d) if e.startswith("unconfirmed")]
        # 2 windows x 6 sentences x 240 s, plus one window's length.
        assert pending.endswith(f"reverts in {2 * 6 * 240 + 4} s unless sent again")
    finally:
        d.parts.store.close()


def test_a_ground_floor_on_probation_survives_a_restart_and_then_reverts(tmp_path):
    d, cfg, clock = _daemon(tmp_path)
    _send(d, 1, uplink.SetMode(uplink.PowerMode.SURVIVAL))
    assert d.parts.flight.governor.ground_floor.value == "survival"
    d.parts.store.close()
    d2, _, _ = _daemon(tmp_path, clock=clock)
    try:
        assert d2.parts.flight.governor.ground_floor.value == "survival" and "set_mode" in d2.parts.commands.probation.pending
        clock.t = 100_000.0
        d2.daemon.run_once("beacon")
        assert d2.parts.flight.governor.ground_floor.value == "nominal"
        assert any(e.startswith("set_mode not confirmed in time; back to ground floor nominal") for e in _events(d2))
        assert d2.parts.store.state.get("ground_floor") == "nominal"
    finally:
        d2.parts.store.close()


# --------------------------------------------------------------------------- both ends, over a lossy link


def _probation_flight(ground_confirms: bool):
    seen: dict = {}

    def prepare(daemon, repair, folder):
        repair.store = GroundStore(folder / "ground.db")
        if not ground_confirms:
            repair.confirm_if_asked = lambda e: False
        cmd = uplink.SetIntervals(60, 600)
        repair.store.outbox.queue(cmd.command_id, cmd.pack(), "intervals 60 s / 600 s")
        events = seen.setdefault("events", [])
        send_event = daemon.parts.flight.outbound.event
        daemon.parts.flight.outbound.event = lambda e: (events.append(e.text), send_event(e))
        seen["daemon"] = daemon

    simulate(0.1, seed=3, musings=20, musing_s=300.0, drain_windows=20, prepare=prepare,
             configure=lambda cfg: setattr(cfg.schedule, "telemetry_s", 30.0))
    return seen["daemon"], seen["events"]


def test_the_ground_confirms_its_own_change_and_the_payload_keeps_it():
    daemon, events = _probation_flight(ground_confirms=True)
    assert any(e.startswith("unconfirmed set_intervals") for e in events)
    assert "set_intervals confirmed: intervals 60 s telemetry, 600 s musings" in events
    assert daemon.parts.cadence.telemetry_s == 60.0


def test_a_change_the_ground_never_confirms_reverts_in_flight():
    daemon, events = _probation_flight(ground_confirms=False)
    assert any(e.startswith("unconfirmed set_intervals") for e in events)
    assert any(e.startswith("set_intervals not confirmed in time; back to intervals 30 s") for e in events)
    assert daemon.parts.cadence.telemetry_s == 30.0


def test_the_ground_confirms_only_commands_it_sent(tmp_path):
    store = GroundStore(tmp_path / "ground.db")
    link = WindowAnswerer(tmp_path / "k", tmp_path / "ground.db", send=None, store=store)
    cmd = uplink.SetIntervals(60, 600)
    e = uplink.unconfirmed_event(cmd, "intervals 60 s telemetry, 600 s musings", 1800)
    assert not link.confirm_if_asked(e)  # nobody here asked for it
    row = store.outbox.queue(cmd.command_id, cmd.pack(), "intervals 60/600")
    assert not link.confirm_if_asked(e)  # still waiting to go out
    store.outbox.mark_sent(row)
    assert link.confirm_if_asked(e)
    (confirm,) = store.outbox.pending()
    assert (confirm["command"], bytes(confirm["args"]), confirm["what"], confirm["confirms"]) == (
        cmd.command_id, cmd.pack(), "confirm: intervals 60/600", row)
    store.outbox.mark_sent(confirm["id"])
    assert link.confirm_if_asked(e)  # asked again after the confirmation went: it still confirms the first
    (again,) = store.outbox.pending()
    assert (again["what"], again["confirms"]) == ("confirm: intervals 60/600", row)
    store.close()


# --------------------------------------------------------------------------- counters


def test_a_counter_far_above_the_last_is_refused_and_the_ground_hears_why(tmp_path):
    d, cfg, _ = _daemon(tmp_path)
    try:
        _send(d, uplink.MAX_COUNTER, uplink.Ping(1))  # one frame would have used the space up
        assert d.parts.gate.last_counter == 0 and d.parts.gate.rejections["counter jump"] == 1
        refused = [e for e in _events(d) if e.startswith("command refused")]
        assert len(refused) == 1 and f"more than {uplink.MAX_COUNTER_STEP} above the last accepted 0" in refused[0]
        _send(d, uplink.MAX_COUNTER_STEP, uplink.Ping(2))  # the longest step allowed
        assert d.parts.gate.last_counter == uplink.MAX_COUNTER_STEP
        d.parts.commands.on_frame(b"\xed" + bytes(30))  # a forgery is counted, never an event: the air is not ours
        assert len([e for e in _events(d) if e.startswith("command refused")]) == 1
    finally:
        d.parts.store.close()


def test_used_up_counters_have_a_way_out_a_new_key_on_both_sides(tmp_path):
    # The ground: a key whose counters are spent refuses to sign, and says what to do.
    state = tmp_path / "ground.db.uplink.json"
    signer = CommandSigner(KEY, PID, state)
    signer.skip_to(uplink.MAX_COUNTER + 1)
    with pytest.raises(SignerStateError, match="a new key is needed"):
        signer.sign(uplink.Ping(1))
    fresh = CommandSigner(NEW_KEY, PID, state)
    assert fresh.next_counter == 1
    frame = fresh.sign(uplink.Ping(7))
    # The payload: the old key's high-water mark stays where it is; the new key has its own.
    store = Store(tmp_path / "q.db")
    old_gate = CommandGate(store, KEY, PID)
    store.counters.set_max(old_gate.counter_name, uplink.MAX_COUNTER)
    assert old_gate.accept(uplink.sign(KEY, uplink.MAX_COUNTER, PID, uplink.Ping(1))) is None
    new_gate = CommandGate(store, NEW_KEY, PID)
    assert new_gate.accept(frame) == uplink.Ping(7) and new_gate.last_counter == 1
    assert old_gate.last_counter == uplink.MAX_COUNTER
    assert new_gate.accept(uplink.sign(KEY, 2, PID, uplink.Ping(1))) is None  # the old key is no good here
    # Going back to the old key at the ground takes its spent counters back.
    assert CommandSigner(KEY, PID, state).next_counter == uplink.MAX_COUNTER + 1
    store.close()


def test_a_store_from_before_per_key_counters_keeps_its_counter_for_the_key_in_use(tmp_path):
    store = Store(tmp_path / "q.db")
    store.counters.set_max(LEGACY_COUNTER_NAME, 50)
    assert CommandGate(store, KEY, PID).last_counter == 50
    assert CommandGate(store, NEW_KEY, PID).last_counter == 0  # migrated once, to the first key
    assert CommandGate(store, KEY, PID).accept(uplink.sign(KEY, 50, PID, uplink.Ping(1))) is None
    store.close()


def test_the_ground_signs_on_past_the_counter_the_payload_reports(tmp_path):
    signer = CommandSigner(KEY, PID, tmp_path / "s.json")
    assert signer.skip_to(4242 + 1) == 4243
    gate = CommandGate(Store(tmp_path / "q.db"), KEY, PID)
    gate.store.counters.set_max(gate.counter_name, 4242)
    assert gate.accept(signer.sign(uplink.Ping(3))) == uplink.Ping(3)
    gate.store.close()


def test_health_reports_the_last_accepted_counter(tmp_path):
    d, cfg, _ = _daemon(tmp_path)
    try:
        _send(d, 9, uplink.Ping(1))
        d.daemon.run_once("health")
        (q,) = d.parts.store.queue.queued(limit=10, kinds=(Kind.HEALTH,))
        record = wire.Record.from_body(wire.Kind.HEALTH, q.boot, q.seq, q.payload)
        assert record.content["uplink_counter"] == 9
    finally:
        d.parts.store.close()


# --------------------------------------------------------------------------- repairs


def test_the_repair_backlog_has_a_bound(tmp_path):
    store = Store(tmp_path / "q.db")
    boot = store.counters.start_boot()
    tx = Transmitter(LinkParts(store, RecordingRadio(), Clock(speedup=1e6), threading.Event()),
                     RadioSection(mtu=64, fec_prior_loss=0.0), EVERY_10_S, auth=AUTH)
    store.queue.enqueue(Kind.MUSING, boot, lambda seq: wire.Record(wire.Kind.MUSING, boot, seq, 0, "x" * 3000).body())
    while tx.send_one():
        pass
    queued = 0
    for _ in range(20):  # the ground asks for the whole record, over and over, in one window
        queued += tx.request_repair(Kind.MUSING, boot, 1, tuple(range(60)))
    assert queued == MAX_REPAIR_FRAMES and tx.stats.repairs_refused == 20 * 60 - MAX_REPAIR_FRAMES
    store.close()


def test_every_declared_command_has_a_handler(tmp_path):
    """A command added to the wire's COMMANDS table without a handler here would be counted and
    said to be ignored on air; the handler table must cover the declared table exactly."""
    d, _, _ = _daemon(tmp_path)
    try:
        assert set(TABLE) == set(uplink.COMMANDS)  # the commands this payload acts on
        # what the wire declares risky, and only that, is applied on probation
        on_probation = {cid for cid, entry in TABLE.items() if isinstance(entry, OnProbation)}
        assert on_probation == {cid for cid, cls in uplink.COMMANDS.items() if uplink.is_risky(cls)}
    finally:
        d.parts.store.close()
