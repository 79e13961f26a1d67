"""From the store to the air: erasure-coded framing, interleaving, the duty-cycle budget.

Each time the radio is free the transmitter picks ONE frame:

1. the newest telemetry sentence, if it is still queued — position is never starved
   by bulk. Older sentences it superseded wait as backlog, in the store's order, and go as
   records carrying the sentence (`wire.Kind.TELEMETRY`), never as ``$$`` lines: a gateway
   that heard a newer position would draw its track stepping back;
2. else a fragment the ground asked for again (a repair, see below);
3. else the next frame of the records it has in hand, round-robin across up to
   `radio.interleave` records, so a burst of lost frames is spread over several
   records instead of wiping one out (each only needs any k of its n frames);
   the hand is refilled from the store in its order (priority, aged: see payload/store/queue.py).

A record gets as many parity fragments as the measured loss calls for
(`fec.parity_for`, from a `LossEstimator` seeded with `radio.fec_prior_loss`), for
`radio.fec_target` — or, while the ground answers the listen windows (a link report
accepted in the last `FEEDBACK_WINDOWS`), for the lower `uplink.first_pass_target`:
the ground asks for whatever the first pass misses, while covering the unlucky tail
of a bursty channel with parity alone costs several times the erasure bound on
records of one or two fragments (sim/bench/link.py measures both). Each frame keys
the radio for its time on air, and a record is marked sent only after its last frame
went out: a crash before that leaves it queued, and it goes out again after reboot.

The hour's airtime (payload/policy/duty.py): the position sentence waits only for the law (the
duty cycle in force); a bulk frame goes only when the beacons still to come in its hour
keep their room, scaled by the governor's transmit factor (`follow`). A bulk frame that
does not fit is deferred, not waited for: the radio stays free for the next sentence and
looks again later. What went on air is logged in the data directory before each frame
is keyed, so a restart does not hand the same hour's budget out twice.

Musing sentences (``$$`` lines for stock gateways) are stamped as they are keyed
(`wire.restamp`): the last position sentence on air, its number, and a time a second after
the last ``$$`` line, at least `STAMP_MARGIN_S` in the past by the position's own clock (its
fix time plus the flight time since it was keyed), so the next position sentence, from a fix
taken later, is newer still. A line whose stamp is not yet that far in the past waits for it.

Every record fragment carries the downlink tag (`wire.downlink`, the key derived from the
flight key): a payload without a flight key sends positions, musing sentences and pictures,
which need none, and keeps its records queued until it has one (`Transmitter.auth`).

Repair: after every `uplink.window_every`-th position sentence the radio sends the window cue
(`wire.Window`, tagged, with when it ends on air and how long the radio listens) and listens for
`uplink.window_s` (half duplex). Signed frames go to `on_uplink` (the daemon's command gate); a
RESEND becomes `request_repair`, which rebuilds the asked-for fragments from the stored record.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import structlog

from stratoecho import wire
from stratoecho.lora import LoRaSettings
from stratoecho.wire import fec

from ..clock import Clock
from ..parts.radio import Radio, RadioUnavailable
from ..policy.duty import AirtimeBudget, AirtimeLog, DutyBudget, beacon_per_hour_s, worst_sentence  # noqa: F401 (AirtimeBudget: its old home)
from ..policy.turns import BeaconTimes
from ..store import Queued, Store
from .frames import PERISHABLE, UNTAGGED, LinkStats, NoFlightKey, frames_for, record_body  # noqa: F401 (their old home)
from .relay import Relay

log = structlog.get_logger(__name__)

# Windows without an accepted link report before the payload stops counting on repair
# (20 minutes at the defaults): at 50 % loss each way a window's report arrives about one
# time in four, so a shorter memory would often fall back to full parity for nothing.
FEEDBACK_WINDOWS = 20
# Windows without a word from a ground that has answered before, after which the payload
# holds its records and sends only the beacon until the ground is heard again: out of
# contact (a blackout, an orbit between passes) records sent are records lost, and kept
# they go out by priority when the next pass begins. Ten minutes at the defaults: at 50 %
# loss each way ten silent windows in a row happen about one time in twenty.
CONTACT_LOST_WINDOWS = 10
# Longest sleep of a radio with a deferred bulk frame: it looks again at least this often (flight
# seconds), and sooner when a producer queues something (a sentence above all).
DEFER_LOOK_S = 30.0
# The airtime log is replaced at every frame (a killed process loses nothing) and flushed to the
# card at most this often (flight seconds): a power cut forgets at most this much of the hour.
LOG_SYNC_S = 60.0
# Most repair frames waiting at once: two whole records of the most shards a record has.
# RESEND asks for up to 255 items a frame, several frames a window; past this the ground's
# asking outruns the air, and what is refused it asks for again in a later window.
MAX_REPAIR_FRAMES = 2 * wire.records.MAX_SHARDS
# How far in the past a musing sentence's stamp must be when it is keyed: the next position
# sentence's fix may be up to a second old (1 Hz GPS), and must still be later than the stamp.
STAMP_MARGIN_S = 2.0
# A relaying payload listens between its own frames in turns this long (flight seconds): a sentence
# queued meanwhile waits at most this for the radio, well inside the beacon's slot.
RELAY_LISTEN_S = 1.0



class Transmitter:
    def __init__(self, store: Store, radio: Radio, clock: Clock, cfg, stop: threading.Event,
                 airtime_log: Path | None = None, sentence_bytes: int | None = None,
                 auth: wire.DownlinkAuth | None = None, on_loop: Callable[[], None] | None = None,
                 wake: threading.Event | None = None, relay: Relay | None = None,
                 turns: BeaconTimes | None = None, frame_bytes: int | None = None,
                 stale_s: float | None = None, on_stale: Callable[[Queued], None] | None = None):
        self.store, self.radio, self.clock, self.cfg, self.stop = store, radio, clock, cfg, stop
        # The turn: nothing is keyed that would not end before the next position sentence
        # (payload/policy/turns.py); records are cut into frames that fit it (the air plan's size).
        self.turns = turns or BeaconTimes()
        self.frame_bytes = min(frame_bytes or cfg.mtu, cfg.mtu)
        self.pictures: LoRaSettings | None = cfg.pictures_settings()
        # A musing none of which aired within `stale_s` of being made is expired, and `on_stale` told
        # (the persona makes another from fresh readings); None: musings never go stale.
        self.stale_s, self.on_stale = stale_s, on_stale or (lambda q: None)
        self.auth = auth  # the downlink tag's key: None keeps records queued (NoFlightKey)
        self.on_loop = on_loop or (lambda: None)  # each turn of the radio's loop (the daemon's liveness)
        self.relay = relay  # other payloads' frames heard in our windows, sent on (docs/network.md); None: none
        self.budget = DutyBudget(cfg.duty_cycle)
        # The beacon's reservation: its worst-case sentence (grown by any longer one sent), one every
        # `beacon_period_s()`; bulk gets `1/bulk_factor()` of the rest (None: shed). See follow().
        self.sentence_s = self.airtime(b"\0" * (sentence_bytes or len(worst_sentence("STRATO1"))))
        self.beacon_period_s: Callable[[], float] = lambda: 10.0
        self.bulk_factor: Callable[[], float | None] = lambda: 1.0
        self.deferred_s: float | None = None  # after a send_one that deferred bulk: seconds until it may go
        self._defer_spell: str | None = None  # the stream whose deferral was logged; None: bulk is moving
        self.airtime_log = AirtimeLog(airtime_log) if airtime_log is not None else None
        self.airtime_log_problem: str | None = None
        # Read at the first radio turn, not here: the daemon sets the beacon's period (follow) and
        # may restart flight time (a bench launch) after making the transmitter.
        self._log_loaded = self.airtime_log is None
        self._log_synced_at = -LOG_SYNC_S
        self.loss = fec.LossEstimator(prior_loss=cfg.fec_prior_loss, prior_burst=cfg.fec_prior_burst)
        self.stats = LinkStats()
        self.wake = wake or clock.event()  # set by producers when they queue something (payload/link/outbound.py)
        self._lock = threading.Lock()
        self._hand: OrderedDict[int, tuple[Queued, deque[bytes], int, int]] = OrderedDict()  # record, frames left, k, n
        self._repairs: deque[bytes] = deque()
        self._sent_at_window: dict[int, int] = {}  # sentence id -> frames sent up to it (this boot)
        self._reported: tuple[int, int] | None = None  # (frames sent, frames heard) at the last report
        self._report_window: int | None = None  # the window of the last accepted report
        # The last position sentence keyed: (its number, fix time, lat, lon, alt, flight time keyed);
        # and the time of day the last $$ line said. Musing sentences are stamped from them.
        self._position: tuple[int, datetime, float, float, float, float] | None = None
        self._line_time: datetime | None = None
        self.uplink_cfg = None  # set with on_uplink to open listen windows
        self.on_uplink = None  # callable(frame) -> None
        self.pid = 0  # uplink.payload_hash of the callsign, carried by the window cue

    def loss_estimate(self) -> float:
        """The frame loss the link estimates now (0..1), from the ground's link reports."""
        return self.loss.loss

    def follow(self, beacon_period_s: Callable[[], float], bulk_factor: Callable[[], float | None]) -> None:
        """The beacon's period and bulk's transmit factor now (the governor's, read at every frame)."""
        self.beacon_period_s, self.bulk_factor = beacon_period_s, bulk_factor

    def _load_airtime_log(self) -> None:
        now_utc, now = self.clock.now().timestamp(), self.clock.elapsed_s()
        try:
            entries = self.airtime_log.load(now_utc, now, self.budget.window_s)
        except ValueError as e:
            # Not knowing what the last run sent, assume the worst it could have: bulk's whole
            # share spent just now. The beacon keeps its room; bulk waits out the hour.
            self.airtime_log_problem = str(e)
            log.error("airtime_log_unreadable", error=str(e), assumed_bulk_s=round(self._bulk_room_s(), 1))
            entries = [(now, self._bulk_room_s(), False)]
        for t, a, beacon in entries:
            self.budget.record(t, a, beacon)
        if entries:
            log.info("airtime_log_loaded", frames=len(entries), used_s=round(self.budget.used(now), 1),
                     allowance_s=round(self.budget.allowance_s, 1))

    def _bulk_room_s(self) -> float:
        return max(self.budget.allowance_s - beacon_per_hour_s(self.sentence_s, self.beacon_period_s()), 0.0)

    def listen_after(self, uplink_cfg, on_uplink, pid: int = 0) -> None:
        """Open a listen window after every `uplink_cfg.window_every`-th sentence; frames go to
        `on_uplink`. `pid` (`uplink.payload_hash` of the callsign) goes in the window cue."""
        self.uplink_cfg, self.on_uplink, self.pid = uplink_cfg, on_uplink, pid

    def request_repair(self, kind: wire.Kind, boot: int, seq: int, fragments: tuple[int, ...]) -> int:
        """Queue the fragments the ground asked for (all, with parity, if none are named);
        returns how many frames were queued."""
        found = self.store.find(kind, boot, seq)
        if found is None:
            log.info("repair_unknown_record", kind=kind.name.lower(), boot=boot, seq=seq)
            return 0
        q, state = found
        if state == "queued" or q.id in self._hand:
            self.stats.repairs_skipped_queued += 1  # it will go out whole anyway
            return 0
        if self.auth is None:
            return 0  # nothing of a record goes untagged
        body = record_body(q)  # a late position's record carries its time too
        k = wire.data_shards(len(body), self.cfg.mtu, self.auth.tag_len)
        wanted = sorted(set(fragments)) or list(range(k + self.parity(k)))
        room = MAX_REPAIR_FRAMES - len(self._repairs)
        if len(wanted) > room:
            self.stats.repairs_refused += len(wanted) - max(room, 0)
            log.info("repair_backlog_full", kind=kind.name.lower(), boot=boot, seq=seq, waiting=len(self._repairs))
            wanted = wanted[:max(room, 0)]
            if not wanted:
                return 0
        frames = wire.fragment_body(kind, q.boot, q.seq, body, self.cfg.mtu, parity=max(wanted[-1] + 1 - k, 0),
                                    auth=self.auth)
        self._repairs.extend(frames[i] for i in wanted)
        self.wake.set()
        return len(wanted)

    def airtime(self, frame: bytes) -> float:
        return self.cfg.airtime_s(len(frame))

    def channel_of(self, kind: wire.Kind | None) -> LoRaSettings | None:
        """The modem settings a frame of `kind` is keyed with: the pictures' channel for SSDV when
        there is one ([radio.pictures]); None: the radio's own."""
        return self.pictures if kind is wire.Kind.SSDV else None

    def frame_air(self, kind: wire.Kind | None, frame: bytes) -> float:
        channel = self.channel_of(kind)
        return self.airtime(frame) if channel is None else channel.airtime_s(len(frame))

    def room_s(self) -> float:
        """Seconds the radio may still key before its turn ends (inf: no beacon to keep)."""
        return self.turns.room_s(self.clock.elapsed_s())

    def parity(self, k: int) -> int:
        """Parity fragments for a record of k data shards. Its frames go out about
        `interleave` frames apart, which breaks up the bursts it sees."""
        target = self.uplink_cfg.first_pass_target if self.ground_answering() else self.cfg.fec_target
        return fec.record_parity(k, self.loss.loss, self.loss.burst, min(self.cfg.interleave, 1 + len(self._hand)),
                                 target, self.cfg.max_parity)

    def ground_answering(self) -> bool:
        """A link report was accepted in the last `FEEDBACK_WINDOWS` windows: repair works."""
        return self._report_window is not None and self.stats.windows - self._report_window < FEEDBACK_WINDOWS

    def out_of_contact(self) -> bool:
        """A ground that has answered before has been silent for CONTACT_LOST_WINDOWS windows.
        Never true without an uplink, or before the ground was first heard: a receive-only
        ground must still get everything."""
        return (self.uplink_cfg is not None and self._report_window is not None
                and self.stats.windows - self._report_window >= CONTACT_LOST_WINDOWS)

    def _bulk(self, take: bool, room_s: float = float("inf"), qid: int | None = None
              ) -> tuple[Queued | None, bytes, bool, bool] | None:
        """The next bulk frame that ends within `room_s` (a repair, else the first of the hand's in
        its round-robin order), consumed only with `take` (of record `qid`, the one offered before):
        a frame the budget defers stays where it was. None: nothing to send, or nothing that fits."""
        if self._repairs:
            if take and qid is None:
                return None, self._repairs.popleft(), False, True
            if not take and self.airtime(self._repairs[0]) <= room_s:
                return None, self._repairs[0], False, True
        space = self.cfg.interleave - len(self._hand)
        if space > 0 and not take:
            # The current sentence goes out alone, above; backlog sentences may join the hand.
            for q in self.store.queued(limit=space, exclude=tuple(self._hand), backlog_only=True,
                                       kinds=None if self.auth is not None else UNTAGGED):
                frames = frames_for(q, self.frame_bytes, self.parity, auth=self.auth)
                k = len(frames) if q.kind in wire.NOT_RECORDS else wire.data_shards(
                    len(record_body(q)), self.frame_bytes, self.auth.tag_len)
                self._hand[q.id] = (q, deque(frames), k, len(frames))
        if not take:
            self.expire_stale()
        for hid, (q, frames, k, n) in self._hand.items():
            if take and hid != qid:
                continue  # take what was offered
            if not take and self.frame_air(q.kind, frames[0]) > room_s:
                continue  # would run past the turn: perhaps another record's next frame fits
            index = n - len(frames)  # data shards come first, then parity
            last = len(frames) == 1
            if not take:
                return q, frames[0], last, index >= k
            frame = frames.popleft()
            self._hand.move_to_end(hid)
            if last:
                del self._hand[hid]
            return q, frame, last, index >= k
        return None

    def expire_stale(self) -> None:
        """Musings none of whose frames went on air, made more than `stale_s` ago: expired (kept in
        the store, never sent) and `on_stale` told of each (the persona makes one from fresh readings)."""
        if self.stale_s is None:
            return
        now = self.clock.now().timestamp()
        started = tuple(hid for hid, (_q, frames, _k, n) in self._hand.items() if len(frames) < n)
        for q in self.store.expire_stale(PERISHABLE, now - self.stale_s, exclude=started):
            self._hand.pop(q.id, None)
            with self._lock:
                self.stats.expired[q.stream] = self.stats.expired.get(q.stream, 0) + 1
            log.info("musing_stale", stream=q.stream, seq=q.seq, age_s=round(now - q.created), stale_s=self.stale_s)
            self.on_stale(q)

    def musing_waiting(self) -> bool:
        """A musing (record or sentence) is queued that can go and none of whose frames has aired
        (stale ones expired first): the next one would wait behind it. One under way, its parity
        still to go, does not count."""
        self.expire_stale()
        kinds = PERISHABLE if self.auth is not None else (wire.Kind.MUSING_SENTENCE,)
        started = {hid for hid, (_q, frames, _k, n) in self._hand.items() if len(frames) < n}
        return any(q.id not in started for q in self.store.queued(limit=len(started) + 1, kinds=kinds))

    def send_one(self) -> bool:
        """Put one frame on the air; False when there is nothing to send, when bulk must wait for
        its share of the hour (then `deferred_s` says how long), or when we are stopping."""
        self.deferred_s = None
        if not self._log_loaded:
            self._log_loaded = True
            self._load_airtime_log()
        fresh = self.store.current_telemetry(exclude=tuple(self._hand))
        if fresh is not None:
            item, beacon = (fresh, fresh.payload, True, False), True
        elif self.out_of_contact():
            if self._hand or self._repairs or self.store.depth():
                self.stats.held_frames += 1
            return False  # the beacon alone, which is how the ground finds us again
        elif self._send_relayed():
            return True
        else:
            item, beacon = self._bulk(take=False, room_s=self.room_s()), False
            if item is None:
                return self._wait_for_turn()
        q, frame, last, is_parity = item
        if q is not None and q.kind is wire.Kind.MUSING_SENTENCE:
            frame, wait = self._stamped(frame)
            if wait > 0:
                self.deferred_s = wait  # its stamp must be in the past first; a sentence may go meanwhile
                return False
        kind = q.kind if q is not None else None
        air = self.frame_air(kind, frame)
        if not beacon and air > self.room_s():  # the stamp made it longer, or the stamp's wait ate the turn
            return self._wait_for_turn()
        if beacon:
            self.sentence_s = max(self.sentence_s, air)  # a longer sentence than planned: reserve for it
            wait = self.budget.wait_s(self.clock.elapsed_s(), air)  # only the law holds a sentence back
            if wait > 0:
                self.stats.budget_waits += 1
                self.stats.beacon_waits += 1
                log.warning("duty_cycle_wait", wait_s=round(wait, 1), stream="telemetry",
                            used_s=round(self.budget.used(self.clock.elapsed_s()), 1))
                if self.clock.wait(wait, self.stop):
                    return False  # stopping: the record stays queued in the store
        else:
            factor = self.bulk_factor()
            wait = self.budget.bulk_wait_s(self.clock.elapsed_s(), air, self.sentence_s, self.beacon_period_s(),
                                           None if factor is None else 1.0 / factor)
            if wait > 0:
                self._defer(wait, q.stream if q else "repair", factor)
                return False
            self._bulk(take=True, qid=None if q is None else q.id)
        ready = getattr(self.radio, "ready", None)
        if ready is not None:
            ready()  # a radio that may be down (ReopeningRadio) says so before any airtime is counted
        self._log_airtime(air, beacon)  # before keying: a crash mid-frame still counts it
        keyed = self.clock.elapsed_s()
        channel = self.channel_of(kind)
        if channel is None:
            self.radio.send(frame)
        else:
            self.radio.send(frame, channel)  # keyed on the pictures' channel; the radio goes home after
        if beacon:
            self.turns.keyed()  # this period's turn is open
        if frame[:2] == b"$$" or beacon:
            self._keyed_line(frame, beacon, keyed)
        with self._lock:
            self.stats.frames_sent += 1
            self.stats.bytes_sent += len(frame)
            self.stats.airtime_s += air
            self.stats.parity_frames += int(is_parity and q is not None)
            self.stats.repair_frames += int(q is None)
            self.stats.pictures_frames += int(channel is not None)
        if last and q is not None:
            self.store.mark_sent(q.id)
            with self._lock:
                self.stats.sent_by_stream[q.stream] = self.stats.sent_by_stream.get(q.stream, 0) + 1
        # The radio is busy for the frame's time on air; a chip's driver (SX127x) already waited
        # for TxDone inside send(), a datagram or a TNC's serial port did not.
        if self.clock.wait(air - (self.clock.elapsed_s() - keyed), self.stop):
            return False
        if q is not None and q.kind is wire.Kind.TELEMETRY and self.uplink_cfg and q.seq % self.uplink_cfg.window_every == 0:
            self.listen_window(q.boot, q.seq)
        return True

    def _wait_for_turn(self) -> bool:
        """Nothing to send that ends within the turn: what waits goes in the next (False)."""
        if self._hand or self._repairs:
            opens = self.turns.opens_in_s(self.clock.elapsed_s())
            if opens is not None:
                self.stats.turn_waits += 1
                self.deferred_s = opens  # a sentence queued meanwhile wakes us sooner
        return False

    def _send_relayed(self) -> bool:
        """Another payload's frame, when the relay's share and the bulk budget (the beacon's
        reservation kept) both allow it and it ends within the turn; True when one went."""
        now = self.clock.elapsed_s()
        frame = self.relay.due(now, lambda n: self.airtime(b"\0" * n)) if self.relay is not None else None
        if frame is None:
            return False
        air = self.airtime(frame)
        if air > self.room_s():
            return False  # our own smaller frames may still fit; it goes first in the next turn
        factor = self.bulk_factor()  # relays are bulk: the governor sheds them with the rest
        wait = self.budget.bulk_wait_s(now, air, self.sentence_s, self.beacon_period_s(),
                                       None if factor is None else 1.0 / factor)
        if wait > 0:
            self.deferred_s = wait  # the radio's loop looks again then, unless our own bulk says sooner
            return False
        ready = getattr(self.radio, "ready", None)
        if ready is not None:
            ready()
        self._log_airtime(air, False)
        keyed = self.clock.elapsed_s()
        self.radio.send(frame)
        self.relay.sent(keyed, air)
        with self._lock:
            self.stats.frames_sent += 1
            self.stats.bytes_sent += len(frame)
            self.stats.airtime_s += air
            self.stats.relayed_frames += 1
        self.clock.wait(air - (self.clock.elapsed_s() - keyed), self.stop)
        return True

    def _keyed_line(self, frame: bytes, beacon: bool, keyed: float) -> None:
        """Remember what a position or musing sentence said, for the next musing sentence's stamp."""
        try:
            if not beacon:
                self._line_time = self._at(wire.decode_musing_sentence(frame).time)
                return
            t = wire.decode_position(frame)
        except wire.WireError as e:  # our own frame: never expected
            log.error("keyed_line_unreadable", error=str(e))
            return
        fix = self._at(t.time)
        self._position = (t.seq, fix, t.lat, t.lon, t.alt, keyed)
        self._line_time = fix  # HABpack too: SondeHub orders and merges its positions by time alike

    def _at(self, hms: str) -> datetime:
        """A time of day as the moment nearest the flight's clock (across midnight too)."""
        return wire.telemetry_datetime(hms, self.clock.now())

    def _stamped(self, frame: bytes) -> tuple[bytes, float]:
        """(a musing sentence carrying the last position keyed, seconds until its stamp is
        STAMP_MARGIN_S in the past by that position's clock: 0 when it may go now). Before any
        position this boot, the line as it was made."""
        if self._position is None:
            return frame, 0.0
        seq, fix, lat, lon, alt, keyed = self._position
        stamp = max(fix, self._line_time or fix) + timedelta(seconds=1)
        now = fix + timedelta(seconds=self.clock.elapsed_s() - keyed)  # GPS time, never ahead of it
        wait = (stamp - now).total_seconds() + STAMP_MARGIN_S
        if wait > 0:
            return frame, wait
        return wire.restamp(frame, seq, stamp, lat, lon, alt), 0.0

    def _defer(self, wait: float, stream: str, factor: float | None) -> None:
        """Bulk waits for its share of the hour without holding the radio: logged once per spell."""
        if self._defer_spell is None:
            self.stats.budget_waits += 1
            self._defer_spell = stream
            log.info("duty_cycle_wait", wait_s=round(wait, 1), stream=stream, deferred=True,
                     transmit_factor=factor, beacon_period_s=self.beacon_period_s())
        self.stats.bulk_deferred += 1
        self.deferred_s = wait

    def _log_airtime(self, air: float, beacon: bool) -> None:
        now = self.clock.elapsed_s()
        self.budget.record(now, air, beacon)
        if not beacon:
            self._defer_spell = None  # bulk moves again: the next deferral is a new spell
        if self.airtime_log is None:
            return
        sync = now - self._log_synced_at >= LOG_SYNC_S or now < self._log_synced_at
        try:
            self.airtime_log.save(self.budget.entries(), self.clock.now().timestamp(), now, sync=sync)
            if sync:
                self._log_synced_at = now
        except OSError as e:  # a full or failing card must not stop the beacon
            if self.airtime_log_problem is None:
                log.error("airtime_log_unwritable", path=str(self.airtime_log.path), error=str(e))
            self.airtime_log_problem = f"{self.airtime_log.path}: {e}"

    def on_link_report(self, last_seq: int, frames_heard: int) -> bool:
        """The ground heard `frames_heard` of our frames up to sentence `last_seq`: feed the
        difference since the previous report to the loss estimate that sizes parity."""
        sent = self._sent_at_window.get(last_seq)
        if sent is None:
            return False  # a window of another boot, or too old to compare
        if self._reported is not None:
            d_sent, d_heard = sent - self._reported[0], frames_heard - self._reported[1]
            if d_sent <= 0 or not 0 <= d_heard <= d_sent:
                self._reported = (sent, frames_heard)  # out of order or the ground restarted
                return False
            self.loss.observe_counts(d_sent, d_heard)
        elif 0 <= frames_heard <= sent and sent:
            self.loss.observe_counts(sent, frames_heard)
        self._reported = (sent, frames_heard)
        self._report_window = self.stats.windows
        log.info("link_report", heard=frames_heard, sent=sent, loss=round(self.loss.loss, 3))
        return True

    def _cue(self, boot: int, seq: int, heard_at_s: float = 0.0) -> bytes:
        """The window cue, which the ground answers only until `listen_s` after `heard_at_s`."""
        listen_s = min(max(int(self.uplink_cfg.window_s), 1), wire.downlink.MAX_LISTEN_S)
        return wire.encode_window(wire.Window(boot, seq, self.pid, int(heard_at_s), listen_s), self.auth)

    def listen_window(self, boot: int, seq: int) -> None:
        """Half duplex: the window cue after sentence `seq` of `boot`, then `window_s` listening."""
        if self.on_uplink is None or not self.radio.receives or self.auth is None:
            return  # no key, or a transmit-only radio: nothing to listen with
        air = self.airtime(self._cue(boot, seq))
        if self.budget.wait_s(self.clock.elapsed_s(), air) > 0:
            self.stats.windows_skipped += 1  # the law first: no cue, so no window (the ground would not answer)
            log.info("window_skipped", why="duty cycle", seq=seq)
            return
        if air + self.uplink_cfg.window_s > self.room_s():
            self.stats.windows_skipped += 1  # listening on would key the next sentence late (the plan says so)
            log.info("window_skipped", why="turn", seq=seq, room_s=round(self.room_s(), 1))
            return
        self._log_airtime(air, True)
        keyed = self.clock.elapsed_s()
        self.radio.send(cue := self._cue(boot, seq, heard_at_s=keyed + air))  # the ground hears it as it ends
        with self._lock:
            self.stats.cues_sent += 1
            self.stats.frames_sent += 1
            self.stats.bytes_sent += len(cue)
            self.stats.airtime_s += air
        # The ground's link report counts what it heard up to this cue, the cue included.
        self._sent_at_window[seq] = self.stats.frames_sent
        while len(self._sent_at_window) > 64:  # only recent windows can be reported on
            self._sent_at_window.pop(next(iter(self._sent_at_window)))
        if self.clock.wait(air - (self.clock.elapsed_s() - keyed), self.stop):
            return
        self.stats.windows += 1
        end = self.clock.elapsed_s() + self.uplink_cfg.window_s
        left = self.uplink_cfg.window_s
        # A chip stays in RX continuous for the whole window (`hear`, as between frames when relaying):
        # the ground answers with several frames back to back (a link report, a RESEND, an ACK), and
        # one that began while the chip was between two receives would be lost.
        hear = getattr(self.radio, "hear", self.radio.receive)
        while True:  # at least one receive, however fast the bench clock runs
            for frame in hear(left):
                self.stats.uplink_frames += 1
                if self.relay is not None and frame[:1] != bytes([wire.UPLINK_MAGIC]):
                    self.relay.hear(frame, self.clock.elapsed_s())  # another payload's: perhaps ours to send on
                else:
                    self.on_uplink(frame)
            left = end - self.clock.elapsed_s()
            if left <= 0 or self.stop.is_set():
                return

    def run(self) -> None:
        while not self.stop.is_set():
            self.on_loop()  # the daemon's liveness ping: a radio thread stuck in a driver stops it
            self.wake.clear()  # before looking: a sentence queued from here on wakes the sleep below
            try:
                sent = self.send_one()
            except RadioUnavailable as e:
                # No radio now (payload/radios.ReopeningRadio said so once): the record stays
                # queued; wait for the next try without a traceback a second.
                self.stats.failures += 1
                self.wake.wait(timeout=min(max(e.retry_in_s, 1.0), 10.0))
                continue
            except Exception:
                # The radio must outlive any one bad record or store hiccup: log, pause, go on.
                # The record stays queued, so nothing is lost by trying again.
                log.exception("transmit_failed")
                self.stats.failures += 1
                sent = False
            if not sent:
                # Nothing to send, or bulk deferred: sleep until a producer queues something (a
                # sentence goes at once), until the deferral ends, or until we stop.
                pause = 1.0 if self.deferred_s is None else min(max(self.deferred_s, 1.0), DEFER_LOOK_S)
                self.idle(pause)  # flight seconds

    def idle(self, pause_s: float) -> None:
        """The radio has nothing to send for `pause_s`: a relaying payload keeps its receiver on
        (other balloons are heard whenever we are not keyed, not only in our windows) in turns of
        `RELAY_LISTEN_S`, looking between turns whether a producer queued something; any other
        payload sleeps until woken."""
        if self.relay is None or not self.radio.receives:
            self.wake.wait(timeout=pause_s)
            return
        hear = getattr(self.radio, "hear", self.radio.receive)  # a chip stays in RX between the turns
        end = self.clock.elapsed_s() + pause_s
        while not (self.wake.is_set() or self.stop.is_set()):
            left = end - self.clock.elapsed_s()
            if left <= 0:
                return
            for frame in hear(min(left, RELAY_LISTEN_S)):
                self.stats.relay_heard += 1
                if frame[:1] == bytes([wire.UPLINK_MAGIC]):
                    if self.on_uplink is not None:
                        self.on_uplink(frame)  # the gate checks it as in a window: signed, fresh, ours
                else:
                    self.relay.hear(frame, self.clock.elapsed_s())
