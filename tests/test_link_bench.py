"""The protocol bench (sim/bench/run/link.py): real payload and ground code over a lossy link
in virtual time. Small flights at 30 % loss; the figures themselves are `make bench`'s."""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import asdict

from payload.config import RadioSection, UplinkSection
from payload.link import windows as link
from payload.link.frames import LinkParts
from payload.link.transmitter import Transmitter
from payload.store import Store
from sim.bench.run import link as link_bench
from stratoecho.wire import Kind
from tests.fakes import AUTH, EVERY_10_S

MUSINGS = 30


def thin_parity(cfg) -> None:
    # Parity alone for 50 % per record (none, at 30 % loss): what repair has to make up.
    cfg.radio.fec_target = 0.5


def test_repair_delivers_what_thin_parity_loses_and_every_text_is_the_one_sent():
    repaired = link_bench.simulate(0.3, seed=3, musings=MUSINGS, configure=thin_parity)
    alone = link_bench.simulate(0.3, seed=3, musings=MUSINGS, configure=thin_parity, uplink=False)

    assert repaired.musings == alone.musings == MUSINGS
    for run in (repaired, alone):
        assert run.heard, "nothing arrived at all"
        assert all(run.texts[seq] == text for seq, text in run.heard.items())
        assert run.delivered == len(run.heard)
    assert repaired.delivered > alone.delivered
    assert alone.windows == 0 and alone.nacks_sent == 0 and alone.repair_frames == 0
    # Repairs happened, on the ground's request, and the ground heard them.
    assert repaired.repair_frames > 0 and repaired.items_requested > 0
    assert repaired.delivered_bytes > 0 and repaired.bytes_ratio > 0


def test_every_nack_that_reaches_the_payload_passes_its_real_gate_and_is_acted_on():
    run = link_bench.simulate(0.3, seed=5, musings=MUSINGS)
    arrived = run.nacks_sent - run.nacks_lost - run.nacks_late
    assert run.nacks_lost > 0 or run.reports_lost > 0, "the uplink should lose frames at 30 %"
    assert arrived > 0
    assert run.resends_accepted == arrived  # verified by CommandGate, dispatched by CommandHandler.on_frame
    assert run.reports_accepted == run.reports_sent - run.reports_lost - run.reports_late
    assert run.gate_rejections == {}
    assert run.uplink_airtime_s > 0
    assert 0.0 < run.loss_estimate < 1.0


def test_the_same_seed_gives_the_same_flight():
    a = link_bench.simulate(0.3, seed=7, musings=12)
    b = link_bench.simulate(0.3, seed=7, musings=12)
    c = link_bench.simulate(0.3, seed=8, musings=12)
    assert asdict(a) == asdict(b)
    assert asdict(a) != asdict(c)


def _a_machine_under_load(monkeypatch) -> threading.Event:
    """What a busy machine changes, exaggerated: the system's clocks race ahead (each read an
    hour after the last, a process starved of CPU), every frame takes real milliseconds, and a
    thread competes for the interpreter all along. Set the returned event to stop that thread."""
    def racing(real):
        calls = itertools.count()
        return lambda: real() + 3600.0 * next(calls)

    for name in ("monotonic", "time", "perf_counter"):
        monkeypatch.setattr(time, name, racing(getattr(time, name)))
    send = link_bench.SimRadio.send

    def slow_send(self, frame: bytes) -> None:
        threading.Event().wait(0.002)
        send(self, frame)

    monkeypatch.setattr(link_bench.SimRadio, "send", slow_send)
    done = threading.Event()

    def compete() -> None:
        while not done.is_set():
            sum(range(10_000))

    threading.Thread(target=compete, daemon=True).start()
    return done


def test_the_figures_do_not_depend_on_the_machine(monkeypatch):
    # make bench's rows must be the same on an idle laptop and a saturated CI runner: the
    # protocol runs in virtual time, in one thread, its losses drawn from the seed alone.
    calm = link_bench.simulate(0.5, seed=7, musings=12)
    done = _a_machine_under_load(monkeypatch)
    try:
        busy = link_bench.simulate(0.5, seed=7, musings=12)
    finally:
        done.set()
    assert asdict(busy) == asdict(calm)


def test_the_balloon_floats_for_the_whole_bench_flight():
    # Landed, the payload halves bulk's airtime (payload/policy/modes.py): 12 landed hours of the
    # 14-hour bench left a quarter of the musings queued at 50 % loss.
    clock = link_bench.VirtualClock()
    sensors = link_bench.CoarseSensors(clock, seed=1)
    clock.advance_to(3600.0)
    floating = sensors.read().alt_m
    clock.advance_to(14 * 3600.0)
    later = sensors.read()
    assert floating > 10_000 and later.alt_m == floating and later.time == clock.now()


def test_protocol_rows_have_the_bench_shape():
    rows = link_bench.protocol_rows(musings=6, drain_windows=2)
    assert rows and all(len(r) == 4 and all(isinstance(x, str) for x in r) for r in rows)
    assert {r[0].split(",")[0] for r in rows} == {f"protocol: {p} % burst loss" for p in (10, 30, 50)}


class _QuietRadio:
    """Sends into the void; nobody answers in its windows (which last their time, as a radio's do)."""

    receives = True

    def __init__(self, clock: link_bench.VirtualClock) -> None:
        self.clock = clock

    def send(self, frame: bytes) -> None:
        pass

    def receive(self, timeout_s: float) -> list[bytes]:
        self.clock.wait(timeout_s, threading.Event())
        return []

    def hear(self, timeout_s: float) -> list[bytes]:
        return self.receive(timeout_s)

    def ready(self) -> None:
        """Always there."""


def test_first_pass_parity_is_thin_only_while_the_ground_answers(tmp_path):
    store = Store(tmp_path / "q.db")
    boot = store.counters.start_boot()
    clock = link_bench.VirtualClock()
    tx = Transmitter(LinkParts(store, _QuietRadio(clock), clock, threading.Event()), RadioSection(fec_prior_loss=0.3),
                     EVERY_10_S, auth=AUTH)
    tx.listen_after(UplinkSection(window_every=1, first_pass_target=0.5), lambda frame: None)

    def sentence_and_window() -> None:
        store.queue.enqueue(Kind.TELEMETRY, boot, lambda seq: b"$$T\n")
        assert tx.send_one()

    assert tx.hand.parity(2) > 0 and not tx.windows.ground_answering()  # no report yet: parity alone must do
    sentence_and_window()
    assert tx.on_link_report(1, 1)
    assert tx.windows.ground_answering() and tx.hand.parity(2) == 0  # the ground will ask for what is missing
    for _ in range(link.FEEDBACK_WINDOWS - 1):
        sentence_and_window()
    assert tx.windows.ground_answering()
    sentence_and_window()  # FEEDBACK_WINDOWS windows without a report: the ground is gone
    assert not tx.windows.ground_answering() and tx.hand.parity(2) > 0
