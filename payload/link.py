"""From the store to the air: framing, the duty-cycle budget, and airtime accounting.

The transmitter takes the most urgent queued record (telemetry first), turns it
into frames with the shared wire module, waits when the hour's airtime budget is
spent, keys the radio for each frame's time on air, and only then marks the
record sent. A crash before that leaves it queued: it goes out again after reboot.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

import structlog

from stratoecho import wire
from stratoecho.airtime import lora_airtime_s

from .clock import Clock
from .radio import Radio
from .store import Queued, Store

log = structlog.get_logger(__name__)

STREAM_KIND = {"musing": wire.Kind.MUSING, "event": wire.Kind.EVENT}


@dataclass
class AirtimeBudget:
    """Sliding-window duty cycle: at most `duty_cycle * window_s` seconds on air per window.

    Pure: callers pass flight time in; nothing here reads a clock.
    """

    duty_cycle: float
    window_s: float = 3600.0
    _sent: deque = field(default_factory=deque)  # (start time, airtime)

    def used(self, now: float) -> float:
        while self._sent and self._sent[0][0] <= now - self.window_s:
            self._sent.popleft()
        return sum(a for _, a in self._sent)

    def wait_s(self, now: float, airtime: float) -> float:
        """Seconds to wait before `airtime` more fits in the window (0 if it fits now)."""
        allowance = self.duty_cycle * self.window_s
        if airtime > allowance:
            raise ValueError(f"one frame of {airtime:.2f} s exceeds the whole budget of {allowance:.2f} s")
        used = self.used(now)
        if used + airtime <= allowance:
            return 0.0
        # Wait until enough old transmissions leave the window.
        excess = used + airtime - allowance
        for start, a in self._sent:
            excess -= a
            if excess <= 0:
                return start + self.window_s - now
        return self.window_s

    def record(self, now: float, airtime: float) -> None:
        self._sent.append((now, airtime))


def frames_for(q: Queued, mtu: int) -> list[bytes]:
    """The air frames of one stored record."""
    if q.stream == "telemetry":
        return [q.payload]  # already a UKHAS sentence
    record = wire.Record.from_body(STREAM_KIND[q.stream], q.boot, q.seq, q.payload)
    return wire.fragment_record(record, mtu)


@dataclass
class LinkStats:
    frames_sent: int = 0
    bytes_sent: int = 0
    airtime_s: float = 0.0
    sent_by_stream: dict = field(default_factory=dict)
    budget_waits: int = 0
    failures: int = 0


class Transmitter:
    def __init__(self, store: Store, radio: Radio, clock: Clock, cfg, stop: threading.Event):
        self.store, self.radio, self.clock, self.cfg, self.stop = store, radio, clock, cfg, stop
        self.budget = AirtimeBudget(cfg.duty_cycle)
        self.stats = LinkStats()
        self.wake = threading.Event()  # set by producers when they queue something
        self._lock = threading.Lock()

    def airtime(self, frame: bytes) -> float:
        return lora_airtime_s(len(frame), self.cfg.spreading_factor, self.cfg.bandwidth_hz, self.cfg.coding_rate)

    def send_one(self) -> bool:
        """Send the next queued record; False when the queue is empty or we are stopping."""
        q = self.store.next_queued()
        if q is None:
            return False
        for frame in frames_for(q, self.cfg.mtu):
            air = self.airtime(frame)
            wait = self.budget.wait_s(self.clock.elapsed_s(), air)
            if wait > 0:
                self.stats.budget_waits += 1
                log.info("duty_cycle_wait", wait_s=round(wait, 1), stream=q.stream, seq=q.seq)
                if self.clock.wait(wait, self.stop):
                    return False  # stopping: the record stays queued
            self.radio.send(frame)
            self.budget.record(self.clock.elapsed_s(), air)
            with self._lock:
                self.stats.frames_sent += 1
                self.stats.bytes_sent += len(frame)
                self.stats.airtime_s += air
            if self.clock.wait(air, self.stop):  # the radio is busy for the frame's time on air
                return False
        self.store.mark_sent(q.id)
        with self._lock:
            self.stats.sent_by_stream[q.stream] = self.stats.sent_by_stream.get(q.stream, 0) + 1
        return True

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                sent = self.send_one()
            except Exception:
                # The radio must outlive any one bad record or store hiccup: log, pause, go on.
                # The record stays queued, so nothing is lost by trying again.
                log.exception("transmit_failed")
                self.stats.failures += 1
                sent = False
            if not sent:
                # Nothing to send: sleep until a producer queues something (or we stop).
                self.wake.wait(timeout=1.0)
                self.wake.clear()
