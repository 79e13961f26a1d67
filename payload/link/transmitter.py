"""From the store to the air: the radio's loop, which joins the link's parts.

Each time the radio is free the transmitter picks ONE frame:

1. the newest telemetry sentence, if it is still queued — position is never starved
   by bulk. Older sentences it superseded wait as backlog, in the store's order, and go as
   records carrying the sentence (`wire.Kind.TELEMETRY`), never as ``$$`` lines: a gateway
   that heard a newer position would draw its track stepping back;
2. else, while out of contact with a ground that answered before, nothing: the beacon alone;
3. else another payload's frame to relay, when its share allows (payload/link/relay.py);
4. else the next bulk frame (payload/link/frames.py `Hand`): a fragment the ground asked for
   again, else the next frame of the records in hand, round-robin, with parity for the loss.

A bulk frame goes only when it ends within the turn (nothing is keyed into the next position
sentence: payload/policy/turns.py) and the hour's airtime has room for it (payload/link/airtime.py);
a musing sentence is stamped as it is keyed (payload/link/stamping.py), and every ``$$`` line is
signed then (`wire.sign_line`). Each frame keys the radio
for its time on air, and a record is marked sent only after its last frame went out: a crash
before that leaves it queued, and it goes out again after reboot. After every
`uplink.window_every`-th position sentence the radio listens (payload/link/windows.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import structlog

from stratoecho import wire

from ..parts.radio import RadioUnavailable
from ..store import Queued
from .airtime import Airtime
from .frames import Hand, LinkParts, LinkPlan, LinkStats
from .horus_beacon import HorusBeacon
from .stamping import Stamping
from .windows import Windows

log = structlog.get_logger(__name__)

# Longest sleep of a radio with a deferred bulk frame: it looks again at least this often (flight
# seconds), and sooner when a producer queues something (a sentence above all).
DEFER_LOOK_S = 30.0


class Transmitter:
    """The radio's loop over `parts`, keyed with `cfg` ([radio]), the beacon's period read from
    `cadence.beacon_s` and bulk's share from `transmit_factor()` (the governor's; None sheds bulk)
    at every frame. Records go tagged with `auth`, the downlink key (None: they stay queued).
    `on_stale(q)` is called for each musing expired before it aired."""

    def __init__(self, parts: LinkParts, cfg, cadence, *, auth: wire.DownlinkAuth | None = None,
                 plan: LinkPlan | None = None, airtime_log: Path | None = None,
                 transmit_factor: Callable[[], float | None] | None = None,
                 on_stale: Callable[[Queued], None] | None = None):
        parts = replace(parts, wake=parts.wake or parts.clock.event())
        self.store, self.radio, self.clock, self.stop = parts.store, parts.radio, parts.clock, parts.stop
        self.wake, self.relay = parts.wake, parts.relay
        self.cfg, self.auth = cfg, auth
        plan = plan or LinkPlan()
        self.turns = plan.turns
        self.on_stale = on_stale or (lambda q: None)
        self.stats = LinkStats()
        self.deferred_s: float | None = None  # after a send_one that deferred bulk: seconds until it may go
        self._lock = threading.Lock()
        self.airtime = Airtime(cfg, self.clock, cadence, self.stats, log_path=airtime_log,
                               sentence_bytes=plan.sentence_bytes, transmit_factor=transmit_factor)
        self.hand = Hand(parts, cfg, self.stats, self._lock, auth=auth, plan=plan, target=self._fec_target,
                         on_stale=lambda q: self.on_stale(q))
        self.windows = Windows(parts, self.stats, self._lock, self.airtime, self.hand.loss, auth)
        self.stamping = Stamping(self.clock)
        horus = getattr(cfg, "horus", None)
        self.horus = HorusBeacon(horus) if horus is not None else None

    def _fec_target(self) -> float:
        return self.windows.uplink_cfg.first_pass_target if self.windows.ground_answering() else self.cfg.fec_target

    def loss_estimate(self) -> float:
        """The frame loss the link estimates now (0..1), from the ground's link reports."""
        return self.hand.loss.loss

    def listen_after(self, uplink_cfg, on_uplink, pid: int = 0) -> None:
        """Open a listen window after every `uplink_cfg.window_every`-th sentence (payload/link/windows.py)."""
        self.windows.listen_after(uplink_cfg, on_uplink, pid)

    def on_link_report(self, last_seq: int, frames_heard: int) -> bool:
        """The ground's link report: it sizes parity from now on (payload/link/windows.py)."""
        return self.windows.on_link_report(last_seq, frames_heard)

    def request_repair(self, kind: wire.Kind, boot: int, seq: int, fragments: tuple[int, ...]) -> int:
        """Queue the fragments the ground asked for (all, with parity, if none are named) and wake
        the radio; returns how many frames were queued."""
        queued = self.hand.request_repair(kind, boot, seq, fragments)
        if queued:
            self.wake.set()
        return queued

    def musing_waiting(self) -> bool:
        """A musing is queued none of whose frames has aired (payload/link/frames.py `Hand`)."""
        return self.hand.musing_waiting()

    def room_s(self) -> float:
        """Seconds the radio may still key before its turn ends (inf: no beacon to keep)."""
        return self.turns.room_s(self.clock.elapsed_s())

    def send_one(self) -> bool:
        """Put one frame on the air; False when there is nothing to send, when bulk must wait for
        its share of the hour (then `deferred_s` says how long), or when we are stopping."""
        self.deferred_s = None
        self.airtime.load_once()
        fresh = self.store.queue.current_telemetry(exclude=self.hand.ids())
        if fresh is not None:
            return self._send_sentence(fresh)
        if self.windows.out_of_contact():
            if self.hand.waiting() or self.store.queue.depth():
                self.stats.held_frames += 1
            return False  # the beacon alone, which is how the ground finds us again
        if self._send_relayed():
            return True
        return self._send_bulk()

    def _signed(self, frame: bytes) -> bytes:
        """Every ``$$`` line goes on air with the flight's tag (`wire.sign_line`): the ground
        believes only what the balloon signed. Without a key (a bench configuration), as it is."""
        if self.auth is None:
            return frame
        try:
            return wire.sign_line(frame, self.auth)
        except wire.WireError as e:  # our own line, never expected: a position unsigned beats none at all
            log.error("line_not_signed", error=str(e), frame=frame[:40])
            return frame

    def _send_sentence(self, q: Queued) -> bool:
        """The position sentence: only the law holds it back."""
        frame = self._signed(q.payload)
        air = self.airtime.seconds(frame)
        if self.horus is not None and self.horus.due(q.seq):  # its Horus packet follows it: the beacon's too
            air += self.horus.air_s(self.cfg_callsign(q))
        self.airtime.sentence_s = max(self.airtime.sentence_s, air)  # a longer sentence than planned: reserve for it
        wait = self.airtime.sentence_wait_s(air)
        if wait > 0:
            self.stats.budget_waits += 1
            self.stats.beacon_waits += 1
            log.warning("duty_cycle_wait", wait_s=round(wait, 1), stream="telemetry",
                        used_s=round(self.airtime.budget.used(self.clock.elapsed_s()), 1))
            if self.clock.wait(wait, self.stop):
                return False  # stopping: the record stays queued in the store
        return self._key(q, frame, self.airtime.seconds(frame), beacon=True, last=True, is_parity=False)

    @staticmethod
    def cfg_callsign(q: Queued) -> str:
        """The callsign a position record carries (for the Horus packet's length)."""
        try:
            return wire.decode_position(q.payload).callsign
        except wire.WireError:
            return "STRATO1"

    def _send_horus(self, q: Queued) -> None:
        """The position sentence `q` just keyed, again as Horus 4FSK on its own channel, counted
        as the beacon's air; a radio that cannot key it is logged, and the LoRa link goes on."""
        air = self.horus.air_s(self.cfg_callsign(q))
        self.airtime.spend(air, True)  # before keying, as every frame: a crash mid-burst still counts it
        try:
            seconds = self.horus.key(self.radio, q.payload)
        except RadioUnavailable:
            raise
        except Exception as e:  # a radio without 4FSK, a chip that failed: the position went as LoRa anyway
            log.error("horus_failed", error=str(e))
            return
        if seconds is not None:
            with self._lock:
                self.stats.horus_frames += 1
                self.stats.airtime_s += seconds

    def _send_bulk(self) -> bool:
        """The hand's next frame that ends within the turn, when the hour has room for it."""
        room = self.room_s()
        offer = self.hand.offer(lambda kind, frame: self.airtime.seconds(frame, kind) <= room)
        if offer is None:
            return self._wait_for_turn()
        q, frame, last, is_parity = offer
        kind = None if q is None else q.kind
        if kind is wire.Kind.MUSING_SENTENCE:
            frame, wait = self.stamping.stamped(frame)
            if wait > 0:
                self.deferred_s = wait  # its stamp must be in the past first; a sentence may go meanwhile
                return False
            frame = self._signed(frame)
        air = self.airtime.seconds(frame, kind)
        if air > self.room_s():  # the stamp or the tag made it longer, or the stamp's wait ate the turn
            return self._wait_for_turn()
        wait = self.airtime.bulk_wait_s(air)
        if wait > 0:
            self.airtime.defer(wait, q.stream if q else "repair")
            self.deferred_s = wait
            return False
        self.hand.take(q)
        return self._key(q, frame, air, beacon=False, last=last, is_parity=is_parity)

    def _key(self, q: Queued | None, frame: bytes, air: float, *, beacon: bool, last: bool, is_parity: bool) -> bool:
        """Key one frame of ours (of record `q`; None: a repair) and wait out its time on air."""
        kind = None if q is None else q.kind
        self.radio.ready()  # a radio that may be down (ReopeningRadio) says so before any airtime is counted
        self.airtime.spend(air, beacon)  # before keying: a crash mid-frame still counts it
        keyed = self.clock.elapsed_s()
        channel = self.airtime.channel_of(kind)
        if channel is None:
            self.radio.send(frame)
        else:
            self.radio.send(frame, channel)  # keyed on the pictures' channel; the radio goes home after
        if beacon:
            self.turns.keyed()  # this period's turn is open
        if beacon or wire.classify(frame).kind in (wire.FrameKind.SENTENCE, wire.FrameKind.MUSING_SENTENCE):
            self.stamping.keyed(frame, beacon, keyed)
        with self._lock:
            self.stats.keyed(frame, air)
            self.stats.parity_frames += int(is_parity and q is not None)
            self.stats.repair_frames += int(q is None)
            self.stats.pictures_frames += int(channel is not None)
        if last and q is not None:
            self.store.queue.mark_sent(q.id)
            with self._lock:
                self.stats.sent_by_stream[q.stream] = self.stats.sent_by_stream.get(q.stream, 0) + 1
        # The radio is busy for the frame's time on air; a chip's driver (SX127x) already waited
        # for TxDone inside send(), a datagram or a TNC's serial port did not.
        if self.clock.wait(air - (self.clock.elapsed_s() - keyed), self.stop):
            return False
        if beacon and q is not None and self.horus is not None and self.horus.due(q.seq):
            self._send_horus(q)
        if kind is wire.Kind.TELEMETRY and self.windows.due_after(q.seq):
            self.windows.listen(q.boot, q.seq, self.room_s())
        return True

    def _wait_for_turn(self) -> bool:
        """Nothing to send that ends within the turn: what waits goes in the next (False)."""
        if self.hand.waiting():
            opens = self.turns.opens_in_s(self.clock.elapsed_s())
            if opens is not None:
                self.stats.turn_waits += 1
                self.deferred_s = opens  # a sentence queued meanwhile wakes us sooner
        return False

    def _send_relayed(self) -> bool:
        """Another payload's frame, when the relay's share and the bulk budget (the beacon's
        reservation kept) both allow it and it ends within the turn; True when one went."""
        if self.relay is None:
            return False
        frame = self.relay.due(self.clock.elapsed_s(), lambda n: self.airtime.seconds(b"\0" * n))
        if frame is None:
            return False
        air = self.airtime.seconds(frame)
        if air > self.room_s():
            return False  # our own smaller frames may still fit; it goes first in the next turn
        wait = self.airtime.bulk_wait_s(air)  # relays are bulk: the governor sheds them with the rest
        if wait > 0:
            self.deferred_s = wait  # the radio's loop looks again then, unless our own bulk says sooner
            return False
        self.radio.ready()
        self.airtime.spend(air, False)
        keyed = self.clock.elapsed_s()
        self.radio.send(frame)
        self.relay.sent(keyed, air)
        with self._lock:
            self.stats.keyed(frame, air)
            self.stats.relayed_frames += 1
        self.clock.wait(air - (self.clock.elapsed_s() - keyed), self.stop)
        return True

    def run(self, alive: Callable[[], None] = lambda: None) -> None:
        """Key frames until the stop; `alive()` at each turn (the daemon's liveness: a radio thread
        stuck in a driver stops calling it)."""
        while not self.stop.is_set():
            alive()
            self.wake.clear()  # before looking: a sentence queued from here on wakes the sleep below
            try:
                sent = self.send_one()
            except RadioUnavailable as e:
                # No radio now (payload/parts/radios.ReopeningRadio said so once): the record stays
                # queued; wait for the next try without a traceback a second.
                self.stats.failures += 1
                self.wake.wait(timeout=min(max(e.retry_in_s, 1.0), 10.0))
                continue
            except Exception:
                # The radio must outlive any one bad record or store hiccup; the record stays queued.
                log.exception("transmit_failed")
                self.stats.failures += 1
                sent = False
            if not sent:  # sleep until a producer queues something, the deferral ends, or we stop
                pause = 1.0 if self.deferred_s is None else min(max(self.deferred_s, 1.0), DEFER_LOOK_S)
                self.windows.idle(pause)  # flight seconds: a relaying payload listens meanwhile
