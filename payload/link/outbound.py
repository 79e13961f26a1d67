"""The one port every producer sends through: a record numbered and stored on its kind's
stream (durably where the stream is: payload/store/), then the radio woken.

The beacon, the health loop, the camera, the persona, the command gate and Reach all hand
their records here; nothing else writes to the queue, so "store, then wake the radio" is
written once, and a record's body is encoded once, when it is stored: the radio cuts the
stored bytes into frames as they are (`wire.fragment_body`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import structlog

from stratoecho import wire
from stratoecho.wire.events import Event

from ..clock import Clock
from ..store import Store

log = structlog.get_logger(__name__)


class Outbound:
    def __init__(self, store: Store, boot: int, clock: Clock, wake: threading.Event):
        self.store, self.boot, self.clock, self.wake = store, boot, clock, wake

    def record(self, kind: wire.Kind, content, created: float | None = None) -> int:
        """A record of `kind` (`content` as `wire.Record` takes it), created now unless
        `created` (Unix seconds) says when; returns its sequence number."""
        made = int(self.clock.now().timestamp() if created is None else created)
        seq, _ = self.store.queue.enqueue(kind, self.boot, lambda s: wire.Record(kind, self.boot, s, made, content).body())
        self.wake.set()
        return seq

    def sentence(self, build: Callable[[int], bytes], created: float) -> int:
        """A position sentence: `build(seq)` encodes it once its number is known."""
        seq, _ = self.store.queue.enqueue(wire.Kind.TELEMETRY, self.boot, build, created=created)
        self.wake.set()
        return seq

    def ssdv(self, packets: list[bytes]) -> list[int]:
        """A picture's SSDV packets (`wire.ssdv.encode_image`), each stored as the one frame it goes
        on air as: without its sync byte, as LoRa gateways expect. Returns their sequence numbers."""
        return self._frames(wire.Kind.SSDV, [p[1:] for p in packets], self.clock.now().timestamp())

    def musing_sentences(self, lines: list[bytes], created: float | None = None) -> list[int]:
        """A musing's text sentences (`wire.encode_musing_sentences`), each stored as the frame it
        goes on air as, made at `created` (the musing's readings; default now); returns their
        sequence numbers on their own stream."""
        return self._frames(wire.Kind.MUSING_SENTENCE, lines, self.clock.now().timestamp() if created is None else created)

    def _frames(self, kind: wire.Kind, frames: list[bytes], created: float) -> list[int]:
        """Each of `frames` stored as it goes on air, on `kind`'s stream; their sequence numbers."""
        seqs = [self.store.queue.enqueue(kind, self.boot, lambda s, f=f: f, created=created)[0] for f in frames]
        self.wake.set()
        return seqs

    def event(self, e: Event) -> int:
        """A declared event (stratoecho/wire/events.py) for the ground."""
        log.info("event_queued", name=e.name, severity=e.severity, text=e.text)
        return self.record(wire.Kind.EVENT, e)
