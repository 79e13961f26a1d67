"""The hour's airtime: the beacon is never starved by bulk, the duty cycle holds across restarts,
and the radio follows the governor (payload/policy/duty.py, payload/link/transmitter.py).

Every flight here runs on a virtual clock: waiting moves time on at once, so hours of flight take
a second and nothing depends on the machine's speed."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timezone

import pytest

from payload.config import RadioSection, load_config
from payload.link.frames import LinkParts, LinkPlan
from payload.link.transmitter import Transmitter
from payload.policy.duty import DutyBudget, beacon_per_hour_s, beacon_plan, worst_sentence
from payload.policy.governor import Governor
from payload.policy.modes import Mode
from payload.store import Store
from stratoecho import wire
from stratoecho.airtime import lora_airtime_s
from stratoecho.wire import Kind
from tests.conftest import ROOT as REPO
from tests.fakes import AUTH, FixedCadence, FlightClock

START = datetime(2025, 6, 1, 9, 0, tzinfo=timezone.utc)
PI = load_config(REPO / "config" / "payload.pi.toml")


class TimedRadio:
    """Keeps (UTC seconds, frame) for every frame keyed; transmit only."""

    receives = False

    def __init__(self, clock: FlightClock):
        self.clock, self.sent = clock, []

    def send(self, frame: bytes) -> None:
        self.sent.append((self.clock.now().timestamp(), frame))

    def ready(self) -> None:
        """Always there."""

    def close(self) -> None:
        pass


def radio_cfg(**over) -> RadioSection:
    r = PI.radio.model_dump()
    r.update(kind="udp", udp="127.0.0.1:7373", **over)
    return RadioSection(**r)


def sentence(callsign: str, seq: int, boot: int) -> bytes:
    """A full-length sentence, as long as the worst case the beacon's reservation is sized for."""
    return worst_sentence(callsign).replace(b"999999", str(seq).rjust(6, "0").encode(), 1)


def deep_queue(store: Store, boot: int, images: int = 12, musings: int = 12) -> None:
    for i in range(images):
        jpeg = b"\xff\xd8" + bytes((i * 7 + j) % 251 for j in range(5998))  # a thumbnail at its 6 kB budget
        store.queue.enqueue(Kind.IMAGE, boot, lambda seq, b=jpeg: wire.Record(wire.Kind.IMAGE, boot, seq, 0, b).body())
    for i in range(musings):
        text = f"musing {i}: " + "the curve of the world is a thin blue line " * 6
        store.queue.enqueue(Kind.MUSING, boot, lambda seq, t=text: wire.Record(wire.Kind.MUSING, boot, seq, 0, t).body())


def fly(tx: Transmitter, store: Store, clock: FlightClock, boot: int, hours: float, period_s) -> None:
    """The daemon's beacon loop and radio loop as one event loop: a sentence every `period_s()`
    (one the radio had no turn for is superseded by the next: the newest position goes first),
    then one radio turn; an idle or deferring radio sleeps until the next sentence or the end
    of its deferral."""
    end = clock.t + hours * 3600
    due = clock.t
    while clock.t < end:
        while clock.t >= due:  # the beacon thread queues on time whatever the radio does
            store.queue.enqueue(Kind.TELEMETRY, boot, lambda seq: sentence("STRATO1", seq, boot), created=due)
            due += period_s()
        if not tx.send_one():
            step = due - clock.t
            if tx.deferred_s is not None:
                step = min(step, tx.deferred_s)
            clock.t += max(step, 1e-3)


def worst_hour(sent: list[tuple[float, float]]) -> float:
    """Most seconds on air in any hour-long window, over (start, airtime) pairs."""
    worst, lo, used = 0.0, 0, 0.0
    for t, air in sent:
        used += air
        while sent[lo][0] <= t - 3600:
            used -= sent[lo][1]
            lo += 1
        worst = max(worst, used)
    return worst


def priced(radio: TimedRadio, cfg: RadioSection) -> list[tuple[float, float]]:
    return [(t, lora_airtime_s(len(f), cfg.spreading_factor, cfg.bandwidth_hz, cfg.coding_rate)) for t, f in radio.sent]


def beacon_times(radio: TimedRadio) -> list[float]:
    return [t for t, f in radio.sent if f.startswith(b"$$")]


def make_tx(tmp_path, cfg: RadioSection, clock: FlightClock, period_s: float, name: str = "a", log: bool = True,
            transmit_factor: float | None = 1.0):
    store = Store(tmp_path / f"{name}.db", clock=lambda: clock.now().timestamp())
    boot = store.counters.start_boot()
    radio = TimedRadio(clock)
    tx = Transmitter(LinkParts(store, radio, clock, threading.Event()), cfg, FixedCadence(period_s),
                     airtime_log=tmp_path / "airtime.json" if log else None, auth=AUTH,
                     transmit_factor=lambda: transmit_factor,
                     plan=LinkPlan(sentence_bytes=len(worst_sentence("STRATO1"))))
    return store, boot, radio, tx


# ------------------------------------------------------------------ the beacon is never starved


@pytest.mark.parametrize("duty, band_plan, period_s", [
    (None, "erc70-03-434-narrow", None),  # the shipped Pi configuration: SF11/20.8 kHz, a sentence every 30 s
    (0.1, "erc70-03-433", "shortest"),  # the same radio under the 10 % rule, at the shortest interval it allows
    (0.5, "erc70-03-434-narrow", 60.0),  # a stricter duty cycle than the rule's, chosen by the operator
])
def test_every_beacon_goes_out_on_time_over_a_deep_bulk_queue_and_no_hour_breaks_the_duty_cycle(
        tmp_path, duty, band_plan, period_s):
    cfg = radio_cfg(band_plan=band_plan, duty_cycle=duty)
    if period_s is None:
        period_s = PI.schedule.telemetry_s
    elif period_s == "shortest":
        period_s = beacon_plan(cfg, "STRATO1", "ukhas", 30.0).shortest_period_s()
    clock = FlightClock()
    store, boot, radio, tx = make_tx(tmp_path, cfg, clock, period_s)
    deep_queue(store, boot)
    fly(tx, store, clock, boot, hours=4, period_s=lambda: period_s)

    longest_frame = lora_airtime_s(cfg.mtu, cfg.spreading_factor, cfg.bandwidth_hz, cfg.coding_rate)
    beacons = beacon_times(radio)
    assert len(beacons) >= 4 * 3600 / (period_s + longest_frame)
    gaps = [b - a for a, b in zip(beacons, beacons[1:])]
    assert max(gaps) <= period_s + longest_frame + 1e-6, "a beacon waited behind bulk"
    assert tx.stats.beacon_waits == 0
    air = priced(radio, cfg)
    assert worst_hour(air) <= cfg.duty_cycle * 3600 + 1e-6
    bulk = [a for (t, f), (_, a) in zip(radio.sent, air) if not f.startswith(b"$$")]
    assert sum(bulk) > 0.5 * (cfg.duty_cycle * 3600 - beacon_per_hour_s(tx.airtime.sentence_s, period_s)), \
        "bulk should use most of what the beacon leaves"


def test_a_bulk_frame_that_does_not_fit_is_deferred_without_holding_the_radio(tmp_path):
    cfg = radio_cfg(band_plan="erc70-03-433", duty_cycle=None)
    clock = FlightClock()
    store, boot, radio, tx = make_tx(tmp_path, cfg, clock, 240.0, log=False)
    deep_queue(store, boot, images=2, musings=0)
    while tx.send_one():
        pass
    assert tx.deferred_s is not None and tx.deferred_s > 0
    t = clock.t  # deferring spent no flight time: the radio is free at once
    store.queue.enqueue(Kind.TELEMETRY, boot, lambda seq: sentence("STRATO1", seq, boot), created=clock.t)
    assert tx.send_one() and radio.sent[-1][1].startswith(b"$$")
    assert radio.sent[-1][0] == pytest.approx(START.timestamp() + t)


def test_the_budget_reserves_the_beacons_still_to_come_in_each_window():
    b = DutyBudget(duty_cycle=0.1)  # 360 s an hour
    # A 10 s sentence every 60 s needs 600 s an hour: more than the budget, so bulk never goes.
    assert b.bulk_wait_s(0.0, 1.0, beacon_s=10.0, beacon_period_s=60.0) > 0
    # A 1 s sentence every 60 s: 290 s of bulk in the first 290 s leave room in the window that
    # ends at 3600 for this frame and the 56 sentences due by then (one spare: the next may be now).
    for i in range(290):
        assert b.bulk_wait_s(float(i), 1.0, beacon_s=1.0, beacon_period_s=60.0) == 0, i
        b.record(float(i), 1.0)
    assert b.bulk_wait_s(290.0, 14.0, beacon_s=1.0, beacon_period_s=60.0) == 0  # 290 + 14 + 56 = 360
    assert b.bulk_wait_s(290.0, 15.0, beacon_s=1.0, beacon_period_s=60.0) == pytest.approx(3600.0 - 290.0)
    assert b.wait_s(290.0, 1.0) == 0  # the law still lets a sentence through at once
    # The governor: a quarter of what the beacon leaves, and nothing when bulk is shed.
    fresh = DutyBudget(duty_cycle=0.1)
    assert fresh.bulk_wait_s(0.0, 80.0, 1.0, 60.0, share=0.25) > 0  # 80 s > (360 - 60) / 4
    assert fresh.bulk_wait_s(0.0, 70.0, 1.0, 60.0, share=0.25) == 0
    assert fresh.bulk_wait_s(0.0, 1.0, 1.0, 60.0, share=None) == fresh.window_s


# ------------------------------------------------------------------ the budget survives restarts


def test_a_restart_right_after_a_full_hour_of_bulk_does_not_send_bulk_beyond_the_duty_cycle(tmp_path):
    cfg = radio_cfg(band_plan="erc70-03-433", duty_cycle=None)
    period_s = beacon_plan(cfg, "STRATO1", "ukhas", 30.0).shortest_period_s()
    clock = FlightClock()
    store, boot, radio, tx = make_tx(tmp_path, cfg, clock, period_s)
    deep_queue(store, boot)
    fly(tx, store, clock, boot, hours=1, period_s=lambda: period_s)
    first = priced(radio, cfg)
    assert sum(a for _, a in first) > 0.8 * cfg.duty_cycle * 3600  # the hour's budget is spent
    store.close()

    # The payload restarts: flight seconds begin again at zero, UTC goes on; the queue is still deep.
    clock2 = FlightClock(start_utc=clock.now())
    store2, boot2, radio2, tx2 = make_tx(tmp_path, cfg, clock2, period_s, name="b")
    deep_queue(store2, boot2)
    fly(tx2, store2, clock2, boot2, hours=1, period_s=lambda: period_s)
    both = first + priced(radio2, cfg)
    assert worst_hour(both) <= cfg.duty_cycle * 3600 + 1e-6
    assert json.loads((tmp_path / "airtime.json").read_text())["frames"], "the log is kept in the data directory"


def test_an_unreadable_airtime_log_counts_as_bulk_spent_and_keeps_the_beacon(tmp_path):
    (tmp_path / "airtime.json").write_text("{not json")
    cfg = radio_cfg(band_plan="erc70-03-433", duty_cycle=None)
    clock = FlightClock()
    store, boot, radio, tx = make_tx(tmp_path, cfg, clock, 240.0)
    deep_queue(store, boot, images=1, musings=0)
    fly(tx, store, clock, boot, hours=0.5, period_s=lambda: 240.0)
    assert "airtime.json" in tx.airtime.log_problem
    assert all(f.startswith(b"$$") for _, f in radio.sent) and len(radio.sent) >= 7


# ------------------------------------------------------------------ the radio follows the governor


class _State(dict):
    """The store's named state, in memory: `get` is the dict's own."""

    def set(self, key, value):
        self[key] = value


class _Store:
    def __init__(self):
        self.state = _State()


def test_the_governor_gives_the_radio_its_transmit_factor_per_mode():
    g = Governor(_Store(), capacity_wh=20.0)
    g.set_ground_floor(Mode.NOMINAL)
    g.ladder.mode = Mode.NOMINAL
    assert g.transmit_factor() == 1.0
    g.set_ground_floor(Mode.LOW_POWER)
    assert g.transmit_factor() == 2.0
    g.set_ground_floor(Mode.SURVIVAL)
    assert g.transmit_factor() == 4.0 and g.stretch("beacon") == 2.0


def test_in_survival_bulk_gets_a_quarter_of_what_the_beacon_leaves_and_the_beacon_keeps_its_period(tmp_path):
    cfg = radio_cfg()  # the shipped Pi radio: no duty-cycle limit, so only the governor holds bulk back
    period_s = 2 * PI.schedule.telemetry_s  # survival's beacon period
    clock = FlightClock()
    store, boot, radio, tx = make_tx(tmp_path, cfg, clock, period_s, log=False, transmit_factor=4.0)
    deep_queue(store, boot)
    fly(tx, store, clock, boot, hours=3, period_s=lambda: period_s)
    air = priced(radio, cfg)
    bulk = [(t, a) for (t, f), (_, a) in zip(radio.sent, air) if not f.startswith(b"$$")]
    share = (cfg.duty_cycle * 3600 - beacon_per_hour_s(tx.airtime.sentence_s, period_s)) / 4
    assert 0.5 * share < worst_hour(bulk) <= share + 1e-6
    beacons = beacon_times(radio)
    longest_frame = lora_airtime_s(cfg.mtu, cfg.spreading_factor, cfg.bandwidth_hz, cfg.coding_rate)
    assert max(b - a for a, b in zip(beacons, beacons[1:])) <= period_s + longest_frame + 1e-6


def test_when_the_mode_sheds_transmit_only_the_beacon_flies(tmp_path):
    cfg = radio_cfg()
    clock = FlightClock()
    store, boot, radio, tx = make_tx(tmp_path, cfg, clock, 30.0, log=False, transmit_factor=None)
    deep_queue(store, boot, images=1, musings=1)
    fly(tx, store, clock, boot, hours=0.5, period_s=lambda: 30.0)
    assert radio.sent and all(f.startswith(b"$$") for _, f in radio.sent)
