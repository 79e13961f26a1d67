"""A radio that does not answer must not stop the payload (payload/radios.ReopeningRadio): in
flight a module that will not open, or fails while sending, is tried again every minute while
everything stays queued; nothing is lost, no airtime is counted for frames never keyed, and the
ground hears that the radio was down once it is back."""

from __future__ import annotations

import threading

import pytest

from payload.clock import Clock
from payload.config import RadioSection
from payload.link.frames import LinkParts
from payload.link.transmitter import Transmitter
from payload.parts.radio import RadioError, RadioUnavailable
from payload.parts.radios import ReopeningRadio
from payload.store import Store
from stratoecho import wire
from stratoecho.wire import Kind
from tests.fakes import AUTH, EVERY_10_S, RecordingRadio


class Seconds:
    """The radio's clock: flight seconds the test moves; a wait moves them as far as it waits."""

    def __init__(self) -> None:
        self.t = 0.0
        self.waited: list[float] = []

    def elapsed_s(self) -> float:
        return self.t

    def wait(self, seconds: float, stop: threading.Event | None = None) -> bool:
        self.waited.append(seconds)
        self.t += seconds
        return bool(stop is not None and stop.is_set())

    def event(self) -> threading.Event:
        return threading.Event()


class Flaky(RecordingRadio):
    def __init__(self, fail_sends: int = 0) -> None:
        super().__init__()
        self.fail_sends = fail_sends
        self.closed = 0

    def send(self, frame: bytes) -> None:
        if self.fail_sends:
            self.fail_sends -= 1
            raise RadioError("TxDone never came (module not answering)")
        super().send(frame)

    def close(self) -> None:
        self.closed += 1


def test_a_radio_that_will_not_open_is_tried_again_and_nothing_queued_is_lost(tmp_path):
    store = Store(tmp_path / "q.db")
    boot = store.counters.start_boot()
    for i in range(3):
        store.queue.enqueue(Kind.TELEMETRY, boot, lambda seq, i=i: f"$$T{i}\n".encode(), created=float(i))
    opened, attempts, changes = [], [], []
    seconds = Seconds()

    def open_radio():
        attempts.append(seconds.t)
        if len(attempts) < 3:
            raise RadioError("RegVersion reads 0x00, expected 0x12: no SX127x on SPI 0.0")
        opened.append(Flaky())
        return opened[-1]

    radio = ReopeningRadio(open_radio, seconds, reopen_s=60, on_change=lambda up, error: changes.append((up, error)))
    assert not radio.up and "RegVersion" in radio.error
    tx = Transmitter(LinkParts(store, radio, Clock(speedup=1e6), threading.Event()),
                     RadioSection(mtu=64, fec_prior_loss=0.0), EVERY_10_S, auth=AUTH)

    with pytest.raises(RadioUnavailable, match=r"trying again in 60 s"):
        tx.send_one()
    seconds.t = 30
    with pytest.raises(RadioUnavailable, match=r"in 30 s"):  # not tried again before its minute
        tx.send_one()
    assert attempts == [0.0] and tx.stats.airtime_s == 0 and store.queue.depth() == {"telemetry": 3}
    seconds.t = 60
    with pytest.raises(RadioUnavailable):
        tx.send_one()  # tried, still down
    seconds.t = 120
    assert tx.send_one()  # back: the newest position goes first
    assert attempts == [0.0, 60.0, 120.0] and changes == [(True, radio.error)]
    assert store.queue.depth() == {"telemetry": 2} and opened[0].frames == [b"$$T2\n"]

    # It fails while sending: closed, the record stays queued, tried again a minute later.
    opened[0].fail_sends = 1
    seconds.t = 121
    with pytest.raises(RadioUnavailable, match="TxDone never came"):
        tx.send_one()
    assert changes[-1] == (False, "TxDone never came (module not answering)") and store.queue.depth() == {"telemetry": 2}
    assert opened[0].closed == 1
    seconds.t = 181
    while tx.send_one():
        pass
    assert store.queue.depth() == {} and changes[-1][0] is True and len(opened) == 2
    # The two it superseded, in the store's order, as records carrying them (never $$ after a newer one).
    late = opened[1].frames
    assert [f[0] for f in late] == [wire.MAGIC] * 2 and b"$$T1\n" in late[0] and b"$$T0\n" in late[1]
    assert tx.stats.frames_sent == 3


def test_receive_hears_nothing_while_down_and_a_failing_receive_takes_the_radio_down():
    seconds = Seconds()

    class DeafAfterOne(Flaky):
        receives = True

        def receive(self, timeout_s: float) -> list[bytes]:
            raise RadioError("FIFO read failed")

    radio = ReopeningRadio(lambda: DeafAfterOne(), seconds, reopen_s=60)
    assert radio.up and radio.receive(1.0) == [] and not radio.up
    assert radio.receive(2.5) == []  # down: nothing, after the window a radio would have listened
    assert seconds.waited == [1.0, 2.5]  # not at once: the link's listen loop would spin
    radio.close()


def test_closing_under_a_send_is_not_a_radio_lost():
    """The daemon stops: the radio is closed while the link thread is in a send; that is no fault
    to report on air."""
    changes = []

    class ClosedUnderIt(Flaky):
        def send(self, frame: bytes) -> None:
            raise RadioError("SX127x on SPI 0.1: closed")

    radio = ReopeningRadio(lambda: ClosedUnderIt(), Seconds(), on_change=lambda up, error: changes.append(up))
    radio.close()
    with pytest.raises(RadioUnavailable, match="closed"):
        radio.send(b"$$late\n")
    assert changes == [] and not radio.up
