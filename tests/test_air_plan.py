"""The air plan (payload/policy/airplan.py) and the turn it keeps (payload/policy/turns.py):
its arithmetic against Semtech's time-on-air formula worked by hand, the shipped configurations'
plans, a configuration that does not close refused at start with the setting named, and the
radio keeping the turn: nothing keyed runs into the next position sentence."""

from __future__ import annotations

import json
import math
import threading

import pytest

from payload.__main__ import main as payload_main
from payload.config import PayloadConfig, load_config
from payload.link.frames import LinkParts, LinkPlan
from payload.link.transmitter import Transmitter
from payload.policy.airplan import GUARD_S, MAX_LOAD, air_plan, largest_frame, turn_of
from payload.policy.turns import SENTENCE_WAIT_S, BeaconTimes
from payload.store import Store
from stratoecho import wire
from stratoecho.lora import UKHAS_MODES
from stratoecho.wire import Kind
from tests.conftest import ROOT
from tests.fakes import AUTH, FixedCadence, FlightClock, RecordingRadio

PI = ROOT / "config" / "payload.pi.toml"
SHIPPED = sorted((ROOT / "config").glob("payload*.toml"))


def semtech_s(n: int, sf: int, bw: float, cr: int, explicit: bool = True, ldro: bool = False) -> float:
    """Time on air as the SX1276 datasheet (4.1.1.7) writes it, worked here apart from the code."""
    t_sym = 2**sf / bw
    payload_symbols = 8 + max(math.ceil((8 * n - 4 * sf + 28 + 16 - 20 * (not explicit)) / (4 * (sf - 2 * ldro))) * cr, 0)
    return (8 + 4.25) * t_sym + payload_symbols * t_sym


def pi(**over) -> PayloadConfig:
    cfg = load_config(PI)
    data = cfg.model_dump()
    for key, value in over.items():
        section, name = key.split("__")
        data[section][name] = value
    return PayloadConfig.model_validate(data)


def test_the_plan_prices_every_frame_with_the_datasheet_formula():
    plan = air_plan(load_config(PI))
    mode0 = lambda n: semtech_s(n, 11, 20_800, 8, ldro=True)  # noqa: E731
    mode1 = lambda n: semtech_s(255, 6, 20_800, 5, explicit=False)  # noqa: E731 (implicit: always 255 bytes)
    assert plan.sentence_s == pytest.approx(mode0(plan.sentence_bytes), abs=1e-9)
    assert mode0(97) == pytest.approx(19.32, abs=0.01)  # the longest STRATO1 sentence: 196.25 symbols of 98.5 ms
    assert mode1(255) == pytest.approx(1.37, abs=0.01)
    rows = {r.kind: r for r in plan.rows}
    assert rows["position"].frames_per_hour == 3600 / plan.period_s
    assert rows["position"].air_s_per_hour == pytest.approx(60 * mode0(plan.sentence_bytes))
    assert rows["picture"].channel == "pictures" and rows["picture"].frame_s == pytest.approx(mode1(255))
    for r in plan.rows:
        if r.channel == "own" and r.kind != "window":
            assert r.frame_s == pytest.approx(mode0(r.frame_bytes), abs=1e-9), r.kind
    # Records are cut to the longest frame that ends inside the turn after the sentence.
    room = plan.period_s - GUARD_S - plan.sentence_s
    assert mode0(plan.record_frame_bytes) <= room < mode0(plan.record_frame_bytes + 1)
    assert largest_frame(lambda n: mode0(n), 255, room) == plan.record_frame_bytes
    assert plan.air_s_per_hour == pytest.approx(sum(r.air_s_per_hour for r in plan.rows if r.channel != "rx"))


@pytest.mark.parametrize("config", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_configuration_closes_and_payload_plan_prints_it(config, capsys):
    assert payload_main(["plan", str(config), "--flight-key"]) == 0
    out = capsys.readouterr().out
    assert "CLOSES" in out and "position sentences" in out and "idle in the turns" in out


def test_the_pi_configuration_plans_what_the_issue_asks_of_it():
    plan = air_plan(load_config(PI))
    assert plan.closes, plan.table()
    assert plan.positions_per_hour == 60 and plan.load <= MAX_LOAD
    assert plan.musing_delay_s["p90"] <= 180
    assert plan.pictures_per_hour >= 1 and plan.windows_per_hour == 10 and not plan.windows_skipped_per_hour


def test_the_plan_gives_the_musing_delay_a_stock_gateway_sees():
    """A stock gateway reads only the $$ lines: the plan gives the delay to a musing's first $$ part
    whole on air and to its last, beside the first frame of any kind (a record fragment first)."""
    plan = air_plan(load_config(PI))
    first, line, whole = plan.musing_delay_s, plan.musing_sentence_delay_s, plan.musing_whole_delay_s
    assert line and whole
    rows = {r.kind: r for r in plan.rows}
    for q in ("median", "p90", "max"):
        # a part is read once it is whole: never before its own time on air, nor before the first frame
        assert line[q] >= first[q] and line[q] >= rows["musing sentence"].frame_s - 1e-9
        assert whole[q] >= line[q]
    assert plan.to_dict()["musing_whole_delay_s"] == {k: round(v, 1) for k, v in whole.items()}
    table = plan.table()
    assert "first $$ part whole on air" in table and "the musing whole" in table
    # Without a flight key nothing goes as a record: the first frame is the first $$ part, read
    # one part's air later.
    bare = air_plan(pi(uplink__key_file=None))
    assert not bare.tagged
    assert bare.musing_sentence_delay_s["median"] == pytest.approx(
        bare.musing_delay_s["median"] + {r.kind: r for r in bare.rows}["musing sentence"].frame_s, abs=1.0)


@pytest.mark.parametrize("over, setting", [
    ({"schedule__telemetry_s": 30.0}, "schedule.telemetry_s"),  # mode 0 every 30 s: no room for anything else
    ({"uplink__window_s": 45.0}, "uplink.window_s"),
    ({"schedule__musing_s": 120.0}, "schedule.musing_s"),  # more than the turns carry: the queue grows
])
def test_a_plan_that_does_not_close_names_the_setting(over, setting):
    plan = air_plan(pi(**over))
    assert not plan.closes
    assert any(p.setting == setting for p in plan.problems), plan.problems
    assert setting in plan.refusal()


def test_pictures_in_mode_0_would_displace_a_position():
    data = load_config(PI).model_dump()
    data["radio"]["pictures"] = None
    plan = air_plan(PayloadConfig.model_validate(data))
    assert [p.setting for p in plan.problems] == ["[radio.pictures]"]
    assert "46.9 s" in plan.problems[0].why


def test_a_relaying_balloon_needs_a_turn_of_its_own():
    data = load_config(PI).model_dump()
    data["relay"]["allow"] = [{"callsign": "FAR1"}]
    assert [p.setting for p in air_plan(PayloadConfig.model_validate(data)).problems] == ["schedule.turn_s"]


def test_payload_run_refuses_a_plan_that_does_not_close(tmp_path, capsys):
    cfg = tmp_path / "payload.toml"
    cfg.write_text(PI.read_text().replace("telemetry_s = 60.0", "telemetry_s = 30.0"))
    assert payload_main(["run", "--config", str(cfg), "--no-persona", "--data", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err
    assert "air plan does not close" in err and "schedule.telemetry_s" in err
    assert not (tmp_path / "data").exists()  # refused before anything was opened
    assert payload_main(["plan", str(cfg)]) == 1


def test_the_turn_ends_a_guard_before_the_next_sentence_or_at_its_share():
    t = BeaconTimes()
    assert t.room_s(5.0) == math.inf  # no beacon yet: nothing to keep
    t.due(None, 10.0)
    assert t.room_s(5.0) == pytest.approx(10.0 - GUARD_S - 5.0)
    t.due(10.0, 70.0)
    assert t.room_s(30.0) == pytest.approx(39.0)
    shared = BeaconTimes(turn_s=30.0)  # two balloons: ours is the first half of each minute
    shared.due(10.0, 70.0)
    assert shared.room_s(30.0) == pytest.approx(9.0) and shared.room_s(45.0) < 0
    t.due(None, None)  # the beacon stopped (the drain at the end): the radio is free
    assert t.room_s(1e6) == math.inf
    # From the moment a sentence is due until it is keyed the turn is closed; a beacon that made
    # none leaves it closed SENTENCE_WAIT_S at most.
    t.due(120.0, 180.0)
    assert t.room_s(120.0) == 0 and t.opens_in_s(121.0) == pytest.approx(SENTENCE_WAIT_S - 1)
    assert t.room_s(120.0 + SENTENCE_WAIT_S) == pytest.approx(180.0 - GUARD_S - 125.0)
    t.due(120.0, 180.0)  # the loop says it again after its run: nothing changes
    t.keyed()
    assert t.room_s(121.0) == pytest.approx(58.0) and t.opens_in_s(121.0) == pytest.approx(59.0)


def _queue_musing(store: Store, boot: int, created: float, chars: int = 150) -> int:
    text = "the sky above me is black " * (chars // 26)
    return store.queue.enqueue(Kind.MUSING, boot, lambda s: wire.Record(Kind.MUSING, boot, s, int(created), text).body(),
                         created=created)[0]


def test_the_radio_keys_nothing_that_would_run_into_the_next_position(tmp_path):
    cfg = load_config(PI)
    clock = FlightClock()
    store = Store(tmp_path / "q.db", clock=lambda: clock.now().timestamp())
    boot = store.counters.start_boot()
    turns = BeaconTimes()
    radio = RecordingRadio()
    frame_bytes = turn_of(cfg).record_frame_bytes
    tx = Transmitter(LinkParts(store, radio, clock, threading.Event()), cfg.radio, FixedCadence(60.0), auth=AUTH,
                     plan=LinkPlan(turns=turns, frame_bytes=frame_bytes))
    _queue_musing(store, boot, clock.now().timestamp())
    air = UKHAS_MODES[0].settings(434.25).airtime_s
    turns.due(0.0, 60.0)
    clock.t = 30.0  # 29 s left of the turn: a full record frame takes ~39 s
    assert not tx.send_one() and radio.frames == []
    assert tx.deferred_s == pytest.approx(30.0) and tx.stats.turn_waits == 1
    clock.t, _ = 60.0, turns.due(60.0, 120.0)
    assert not tx.send_one() and radio.frames == []  # due, not yet keyed (the beacon reads its sensors)
    assert tx.deferred_s == pytest.approx(SENTENCE_WAIT_S)
    turns.keyed()
    assert tx.send_one()  # the sentence went: a new turn, and the frame ends before the next is due
    assert len(radio.frames[0]) <= frame_bytes and clock.t <= 120.0 - GUARD_S
    assert air(len(radio.frames[0])) <= 60.0 - GUARD_S


def test_pictures_are_keyed_on_their_own_channel_and_fit_where_a_record_does_not(tmp_path):
    cfg = load_config(PI)
    clock = FlightClock()
    store = Store(tmp_path / "q.db", clock=lambda: clock.now().timestamp())
    boot = store.counters.start_boot()
    turns = BeaconTimes()
    radio = RecordingRadio()
    tx = Transmitter(LinkParts(store, radio, clock, threading.Event()), cfg.radio, FixedCadence(60.0), auth=AUTH,
                     plan=LinkPlan(turns=turns, frame_bytes=turn_of(cfg).record_frame_bytes))
    _queue_musing(store, boot, clock.now().timestamp())
    packet = bytes([wire.ssdv.TYPE_FEC]) + bytes(254)
    store.queue.enqueue(Kind.SSDV, boot, lambda s: packet)
    turns.due(0.0, 60.0)
    clock.t = 50.0  # 9 s left: no mode-0 record frame, but a 1.4 s SSDV packet in mode 1
    assert tx.send_one()
    assert radio.frames == [packet] and radio.channels == [cfg.radio.pictures_settings()]
    assert tx.stats.pictures_frames == 1 and clock.t == pytest.approx(50.0 + 1.37, abs=0.01)
    assert not tx.send_one()  # the musing waits for the next turn


def test_a_musing_that_did_not_air_in_time_is_expired_and_made_again(tmp_path):
    cfg = load_config(PI)
    clock = FlightClock()
    store = Store(tmp_path / "q.db", clock=lambda: clock.now().timestamp())
    boot = store.counters.start_boot()
    stale: list = []
    tx = Transmitter(LinkParts(store, RecordingRadio(), clock, threading.Event()), cfg.radio, FixedCadence(60.0),
                     auth=AUTH, on_stale=stale.append, plan=LinkPlan(stale_s=360.0))
    old = _queue_musing(store, boot, clock.now().timestamp())
    clock.t = 300.0
    fresh = _queue_musing(store, boot, clock.now().timestamp())
    assert tx.musing_waiting()
    clock.t = 400.0  # the first is 400 s old, the second 100 s
    assert tx.send_one()
    assert [q.seq for q in stale] == [old] and tx.stats.expired == {"musing": 1}
    assert store.queue.find(Kind.MUSING, boot, old)[1] == "expired"
    assert store.queue.find(Kind.MUSING, boot, fresh)[1] in ("queued", "sent")
    assert store.queue.counts()["musing"].get("expired") == 1


def test_payload_plan_says_what_is_wrong_with_a_file_and_prints_json(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('[schedule]\ntelemetry_s = "x"\n')
    assert payload_main(["plan", str(bad)]) == 2
    assert "schedule.telemetry_s" in capsys.readouterr().err
    assert payload_main(["plan", str(tmp_path / "missing.toml")]) == 2
    assert "not found" in capsys.readouterr().err
    assert payload_main(["plan", str(PI), "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["closes"] and plan["period_s"] == 60 and {r["kind"] for r in plan["rows"]} >= {"position", "picture"}


def test_a_flight_without_a_persona_plans_no_musings():
    """`payload run --no-persona` is planned as it flies: the bench's defaults without a ground that
    answers need full parity, which only fits the 10 % duty cycle without the persona's musings."""
    data = PayloadConfig().model_dump()
    data["uplink"] |= {"key_file": "flight.key", "listen": False}
    cfg = PayloadConfig.model_validate(data)
    with_persona, without = air_plan(cfg), air_plan(cfg, persona=False)
    assert not with_persona.closes and "over the duty cycle" in with_persona.refusal()
    assert without.closes and without.musings_per_hour == 0
    assert not {r.kind for r in without.rows} & {"musing", "musing sentence", "question"}
