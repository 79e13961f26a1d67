"""Time on air against docs/figures.md's figures, and the transmitter's duty-cycle budget."""

from __future__ import annotations

import threading

import pytest

from payload.clock import Clock
from payload.config import RadioSection
from payload.link.frames import LinkParts
from payload.link.transmitter import Transmitter
from payload.policy.duty import DutyBudget
from payload.store import Store
from stratoecho import wire
from stratoecho.airtime import lora_airtime_s
from stratoecho.wire import Kind
from tests.fakes import AUTH, EVERY_10_S, RecordingRadio


@pytest.mark.parametrize(
    "sf, bw, cr, expected",
    [(11, 20_800, 8, 16.0), (6, 20_800, 5, 0.5), (7, 250_000, 6, 0.08)],
)
def test_airtime_matches_published_figures(sf, bw, cr, expected):
    assert lora_airtime_s(80, sf, bw, cr) == pytest.approx(expected, rel=0.06)


def test_airtime_grows_with_payload_and_rejects_nonsense():
    assert lora_airtime_s(200, 9, 125_000, 5) > lora_airtime_s(20, 9, 125_000, 5)
    with pytest.raises(ValueError, match="spreading factor"):
        lora_airtime_s(10, 13)
    with pytest.raises(ValueError, match="255"):
        lora_airtime_s(300)


def test_budget_waits_until_old_transmissions_leave_the_window():
    b = DutyBudget(duty_cycle=0.01, window_s=100.0)  # 1 s of air per 100 s
    assert b.wait_s(0.0, 0.6) == 0
    b.record(0.0, 0.6)
    assert b.wait_s(10.0, 0.6) == pytest.approx(90.0)
    assert b.wait_s(100.0, 0.6) == 0
    with pytest.raises(ValueError, match="exceeds"):
        b.wait_s(0.0, 2.0)


def test_transmitter_sends_telemetry_first_and_marks_records_sent(tmp_path):
    store = Store(tmp_path / "q.db")
    boot = store.counters.start_boot()
    body = wire.Record(wire.Kind.MUSING, boot, 1, 0, "a long thought " * 30).body()
    store.queue.enqueue(Kind.MUSING, boot, lambda seq: body)
    def position(seq: int) -> bytes:
        return wire.encode_sentence(wire.Telemetry("T", seq, f"12:00:0{seq}", 52.0, 0.1, 100 * seq, 7, 10.0, 1000.0, 3900,
                                                   boot))

    store.queue.enqueue(Kind.TELEMETRY, boot, position, created=1.0)
    store.queue.enqueue(Kind.TELEMETRY, boot, position, created=2.0)
    radio = RecordingRadio()
    cfg = RadioSection(mtu=64, fec_prior_loss=0.0)  # a perfect link: no parity
    tx = Transmitter(LinkParts(store, radio, Clock(speedup=1e6), threading.Event()), cfg, EVERY_10_S, auth=AUTH)
    while tx.send_one():
        pass
    assert radio.frames[0] == wire.sign_line(position(2), AUTH)  # newest position first, signed as it is keyed
    # The one it superseded goes as a record carrying it: never a $$ line after a newer one.
    late = [f for f in radio.frames[1:] if wire.decode_frame(f, AUTH).kind is Kind.TELEMETRY]
    reassembler = wire.Reassembler()
    assert not any(f.startswith(b"$$") for f in radio.frames[1:])
    rebuilt = [r for r in map(reassembler.add, (wire.decode_frame(f, AUTH) for f in late)) if r is not None]
    assert [(r.content, r.created) for r in rebuilt] == [(position(1), 1)]
    musing = wire.fragment_record(wire.Record.from_body(wire.Kind.MUSING, boot, 1, body), 64, auth=AUTH)
    assert len(radio.frames) == 1 + len(late) + len(musing)
    assert store.queue.depth() == {}
    assert tx.stats.sent_by_stream == {"telemetry": 2, "musing": 1}
    assert tx.stats.airtime_s == pytest.approx(sum(tx.airtime.seconds(f) for f in radio.frames))


def test_transmitter_stopping_mid_record_leaves_it_queued(tmp_path):
    store = Store(tmp_path / "q.db")
    boot = store.counters.start_boot()
    store.queue.enqueue(Kind.MUSING, boot, lambda seq: wire.Record(wire.Kind.MUSING, boot, seq, 0, "x" * 500).body())
    stop = threading.Event()

    class StopAfterOne(RecordingRadio):
        def send(self, frame):
            super().send(frame)
            stop.set()  # power dies after the first fragment

    tx = Transmitter(LinkParts(store, StopAfterOne(), Clock(speedup=1e6), stop),
                     RadioSection(mtu=64, fec_prior_loss=0.0), EVERY_10_S, auth=AUTH)
    assert tx.send_one() is False
    assert store.queue.depth() == {"musing": 1}


def _musings(store, boot, texts):
    for text in texts:
        store.queue.enqueue(Kind.MUSING, boot, lambda seq, t=text: wire.Record(wire.Kind.MUSING, boot, seq, 0, t).body())


def test_parity_grows_with_expected_loss_and_any_k_frames_rebuild(tmp_path):
    sent = {}
    for loss in (0.0, 0.1, 0.3):
        store = Store(tmp_path / f"q{loss}.db")
        boot = store.counters.start_boot()
        _musings(store, boot, ["thin air and a thinner signal " * 8])
        radio = RecordingRadio()
        tx = Transmitter(LinkParts(store, radio, Clock(speedup=1e6), threading.Event()),
                         RadioSection(mtu=64, fec_prior_loss=loss), EVERY_10_S, auth=AUTH)
        while tx.send_one():
            pass
        sent[loss] = radio.frames
        assert tx.stats.parity_frames == len(radio.frames) - wire.decode_frame(radio.frames[0], AUTH).k
    assert len(sent[0.0]) < len(sent[0.1]) < len(sent[0.3])
    frames = sent[0.3]
    k = wire.decode_frame(frames[0], AUTH).k
    ra = wire.Reassembler()
    out = [r for f in frames[-k:] if (r := ra.add(wire.decode_frame(f, AUTH)))]  # only the last k arrive
    assert out and out[0].text.startswith("thin air")


def test_frames_of_queued_records_are_interleaved_and_telemetry_cuts_in(tmp_path):
    store = Store(tmp_path / "q.db")
    boot = store.counters.start_boot()
    _musings(store, boot, ["first " * 40, "second " * 40, "third " * 40])
    radio = RecordingRadio()
    tx = Transmitter(LinkParts(store, radio, Clock(speedup=1e6), threading.Event()),
                     RadioSection(mtu=64, fec_prior_loss=0.0, interleave=2), EVERY_10_S, auth=AUTH)
    for _ in range(3):
        tx.send_one()
    store.queue.enqueue(Kind.TELEMETRY, boot, lambda seq: b"$$POSITION\n")
    while tx.send_one():
        pass
    seqs = [wire.decode_frame(f, AUTH).seq if f[0] == wire.MAGIC else "T" for f in radio.frames]
    assert seqs[:3] == [1, 2, 1]  # two records in hand, alternating
    assert seqs[3] == "T"  # a fresh position goes before the rest of the bulk
    assert set(seqs) == {1, 2, 3, "T"} and store.queue.depth() == {}


def test_a_position_queued_while_the_hand_refills_never_enters_the_interleaver(tmp_path, monkeypatch):
    """Regression: telemetry queued between the telemetry check and the refill went into the
    hand as if it were a record (in the demo, the transmitter then failed on it for the rest
    of the flight)."""
    import payload.link.frames as link

    store = Store(tmp_path / "q.db")
    boot = store.counters.start_boot()
    _musings(store, boot, ["one " * 30])
    tx = Transmitter(LinkParts(store, RecordingRadio(), Clock(speedup=1e6), threading.Event()),
                     RadioSection(mtu=64, fec_prior_loss=0.0), EVERY_10_S, auth=AUTH)
    real_queued, late = store.queue.queued, []

    def queued(limit=1, kinds=None, exclude=(), backlog_only=False):
        if not late:  # a position lands just before the refill
            late.append(store.queue.enqueue(Kind.TELEMETRY, boot, lambda seq: b"$$LATE\n"))
        return real_queued(limit=limit, kinds=kinds, exclude=exclude, backlog_only=backlog_only)

    interleaved = []
    real_frames_for = link.frames_for
    monkeypatch.setattr(link, "frames_for", lambda q, *a, **kw: (interleaved.append(q.stream), real_frames_for(q, *a, **kw))[1])
    store.queue.queued = queued
    while tx.send_one():
        pass
    assert late and interleaved == ["musing"]
    assert tx.stats.sent_by_stream == {"musing": 1, "telemetry": 1}
