"""What a stored item goes on air as, what the link counts and works with, and which bulk frame
goes next (`Hand`).

A position, a musing sentence and an SSDV packet are stored as the one frame they go on air as;
every other record is cut into erasure-coded fragments, each tagged with the downlink key
(`wire.fragment_body`, the key derived from the flight key), at the frame size the air plan allows
(payload/policy/airplan.py). A payload without a flight key sends positions, musing sentences and
pictures, which need none, and keeps its records queued until it has one (`NoFlightKey`).

The hand: bulk goes as the next frame of the records in hand, round-robin across up to
`radio.interleave` records, so a burst of lost frames is spread over several records instead of
wiping one out (each only needs any k of its n frames); the hand is refilled from the store in its
order (priority, aged: see payload/store/queue.py). A fragment the ground asked for again (a
repair) goes before them.

A record gets as many parity fragments as the measured loss calls for (`fec.parity_for`, from a
`LossEstimator` seeded with `radio.fec_prior_loss`), for `radio.fec_target` — or, while the ground
answers the listen windows (payload/link/windows.py), for the lower `uplink.first_pass_target`:
the ground asks for whatever the first pass misses, while covering the unlucky tail of a bursty
channel with parity alone costs several times the erasure bound on records of one or two
fragments (sim/bench/run/link.py measures both).
"""

from __future__ import annotations

import struct
import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from stratoecho import wire
from stratoecho.wire import fec

from ..clock import Clock
from ..parts.radio import Radio
from ..policy.turns import BeaconTimes
from ..store import Queued, Store
from .relay import Relay

log = structlog.get_logger(__name__)

# What may go on air without a flight key: the frames that travel in the community's own formats.
UNTAGGED = tuple(wire.NOT_RECORDS)
# What must go on air fresh or not at all: a musing about the flight, true when it was made.
PERISHABLE = (wire.Kind.MUSING, wire.Kind.MUSING_SENTENCE)
# Most repair frames waiting at once: two whole records of the most shards a record has.
# RESEND asks for up to 255 items a frame, several frames a window; past this the ground's
# asking outruns the air, and what is refused it asks for again in a later window.
MAX_REPAIR_FRAMES = 2 * wire.records.MAX_SHARDS


def record_body(q: Queued) -> bytes:
    """What a stored item's record carries: the stored body, or for a position (stored as the
    frame it would go on air as) its creation time and that frame."""
    if q.kind is wire.Kind.TELEMETRY:
        return struct.pack(">I", int(q.created)) + q.payload
    return q.payload


def frames_for(q: Queued, mtu: int, parity_for=lambda k: 0, *, auth: wire.DownlinkAuth | None) -> list[bytes]:
    """The air frames of one stored item taken as bulk; `parity_for(k)` says how many parity
    fragments, `auth` tags them. A position here is a backlog one, superseded: it goes as a record."""
    if q.kind is wire.Kind.MUSING_SENTENCE:
        return [q.payload]  # already a UKHAS sentence (restamped as it is keyed)
    if q.kind is wire.Kind.SSDV:
        return [q.payload]  # an SSDV packet without its sync byte: it carries its own Reed-Solomon FEC
    if auth is None:
        raise NoFlightKey("records go tagged with the downlink key, and there is no flight key (uplink.key_file)")
    body = record_body(q)
    k = wire.data_shards(len(body), mtu, auth.tag_len)
    return wire.fragment_body(q.kind, q.boot, q.seq, body, mtu, parity=parity_for(k), auth=auth)


class NoFlightKey(RuntimeError):
    """A record cannot go on air untagged; it stays queued."""


@dataclass
class LinkStats:
    frames_sent: int = 0
    bytes_sent: int = 0
    airtime_s: float = 0.0
    parity_frames: int = 0
    repair_frames: int = 0
    repairs_skipped_queued: int = 0
    repairs_refused: int = 0  # repair frames past MAX_REPAIR_FRAMES
    windows: int = 0
    uplink_frames: int = 0
    sent_by_stream: dict = field(default_factory=dict)
    budget_waits: int = 0  # sentences that waited for the law, plus bulk deferrals begun
    beacon_waits: int = 0  # sentences that waited (0 unless the beacon outgrows its reservation)
    bulk_deferred: int = 0  # bulk frames held back for the beacon's share or the governor
    failures: int = 0
    cues_sent: int = 0  # window cues (tagged control frames), in frames_sent too
    windows_skipped: int = 0  # windows not opened: the law held the cue back
    held_frames: int = 0  # radio turns that found records waiting while out of contact (kept for the next pass)
    relayed_frames: int = 0  # other payloads' frames sent on (payload/link/relay.py), in frames_sent too
    relay_heard: int = 0  # frames heard between our own while listening for other payloads (idle)
    turn_waits: int = 0  # frames held for the next turn: they would have run into the next position sentence
    pictures_frames: int = 0  # frames keyed on the pictures' own channel ([radio.pictures]), in frames_sent too
    horus_frames: int = 0  # Horus 4FSK packets after position sentences ([radio.horus]); their air in airtime_s
    expired: dict = field(default_factory=dict)  # stream -> musings (records, sentences) gone stale before they aired

    def keyed(self, frame: bytes, air: float) -> None:
        """One frame of ours went on air for `air` seconds."""
        self.frames_sent += 1
        self.bytes_sent += len(frame)
        self.airtime_s += air


@dataclass(frozen=True)
class LinkParts:
    """What the link works with: the queue it sends from, the radio, the flight's clock, the stop
    and wake events (a producer sets `wake` when it queues something: payload/link/outbound.py),
    and the relay for other payloads (None: it relays for nobody)."""

    store: Store
    radio: Radio
    clock: Clock
    stop: threading.Event
    wake: threading.Event | None = None  # None: the transmitter makes one on the clock
    relay: Relay | None = None


@dataclass(frozen=True)
class LinkPlan:
    """What the air plan (payload/policy/airplan.py) gives the link: the turn it keeps, the size
    records are cut to (None: `radio.mtu`), the worst position sentence the beacon's reservation
    is sized for (None: the default callsign's), and how long a musing may wait for air before it
    is made again (None: for ever)."""

    turns: BeaconTimes = field(default_factory=BeaconTimes)
    frame_bytes: int | None = None
    sentence_bytes: int | None = None
    stale_s: float | None = None


# A bulk frame offered: (its record, None for a repair; the frame; the record's last; a parity fragment).
Offer = tuple[Queued | None, bytes, bool, bool]


class Hand:
    """The records in hand and the repairs asked for: which bulk frame goes next, with how much
    parity. `target()` is the FEC target now (lower while the ground answers); `stats` is counted
    under `lock`, which the radio's thread and the daemon's (musing_waiting) share."""

    def __init__(self, parts: LinkParts, cfg, stats: LinkStats, lock: threading.Lock, *,
                 auth: wire.DownlinkAuth | None, plan: LinkPlan, target: Callable[[], float],
                 on_stale: Callable[[Queued], None]):
        self.store, self.cfg, self.clock, self.stats, self.lock = parts.store, cfg, parts.clock, stats, lock
        self.auth, self.frame_bytes, self.target = auth, min(plan.frame_bytes or cfg.mtu, cfg.mtu), target
        # A musing none of which aired within `stale_s` of being made is expired, and `on_stale` told
        # (the persona makes another from fresh readings); None: musings never go stale.
        self.stale_s, self.on_stale = plan.stale_s, on_stale
        self.loss = fec.LossEstimator(prior_loss=cfg.fec_prior_loss, prior_burst=cfg.fec_prior_burst)
        self._hand: OrderedDict[int, tuple[Queued, deque[bytes], int, int]] = OrderedDict()  # record, frames left, k, n
        self._repairs: deque[bytes] = deque()

    def ids(self) -> tuple[int, ...]:
        """The records in hand: the store offers them no more."""
        return tuple(self._hand)

    def waiting(self) -> bool:
        """Frames in hand or repairs still to go."""
        return bool(self._hand or self._repairs)

    def parity(self, k: int) -> int:
        """Parity fragments for a record of k data shards. Its frames go out about
        `interleave` frames apart, which breaks up the bursts it sees."""
        return fec.record_parity(k, self.loss.loss, self.loss.burst, min(self.cfg.interleave, 1 + len(self._hand)),
                                 self.target(), self.cfg.max_parity)

    def offer(self, fits: Callable[[wire.Kind | None, bytes], bool]) -> Offer | None:
        """The next bulk frame that `fits(kind, frame)` (ends within the turn): a repair, else the first
        of the hand's in its round-robin order. Nothing is consumed (`take` does that): a frame the
        budget defers stays where it was. None: nothing to send, or nothing that fits."""
        if self._repairs and fits(None, self._repairs[0]):
            return None, self._repairs[0], False, True
        space = self.cfg.interleave - len(self._hand)
        if space > 0:
            # The current sentence goes out alone; backlog sentences may join the hand.
            for q in self.store.queue.queued(limit=space, exclude=tuple(self._hand), backlog_only=True,
                                             kinds=None if self.auth is not None else UNTAGGED):
                frames = frames_for(q, self.frame_bytes, self.parity, auth=self.auth)
                k = len(frames) if q.kind in wire.NOT_RECORDS else wire.data_shards(
                    len(record_body(q)), self.frame_bytes, self.auth.tag_len)
                self._hand[q.id] = (q, deque(frames), k, len(frames))
        self.expire_stale()
        for q, frames, k, n in self._hand.values():
            if fits(q.kind, frames[0]):  # else perhaps another record's next frame fits
                return q, frames[0], len(frames) == 1, n - len(frames) >= k  # data shards first, then parity
        return None

    def take(self, q: Queued | None) -> None:
        """The frame offered for record `q` (None: the repair) is going on air: the next one's turn."""
        if q is None:
            self._repairs.popleft()
            return
        entry = self._hand.get(q.id)
        if entry is None:
            return  # expired meanwhile (musing_waiting, from the daemon's thread): the frame goes all the same
        frames = entry[1]
        frames.popleft()
        self._hand.move_to_end(q.id)
        if not frames:
            del self._hand[q.id]

    def expire_stale(self) -> None:
        """Musings none of whose frames went on air, made more than `stale_s` ago: expired (kept in
        the store, never sent) and `on_stale` told of each (the persona makes one from fresh readings)."""
        if self.stale_s is None:
            return
        now = self.clock.now().timestamp()
        started = tuple(hid for hid, (_q, frames, _k, n) in self._hand.items() if len(frames) < n)
        for q in self.store.queue.expire_stale(PERISHABLE, now - self.stale_s, exclude=started):
            self._hand.pop(q.id, None)
            with self.lock:
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
        return any(q.id not in started for q in self.store.queue.queued(limit=len(started) + 1, kinds=kinds))

    def request_repair(self, kind: wire.Kind, boot: int, seq: int, fragments: tuple[int, ...]) -> int:
        """Queue the fragments the ground asked for (all, with parity, if none are named), rebuilt
        from the stored record; returns how many frames were queued."""
        found = self.store.queue.find(kind, boot, seq)
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
        return len(wanted)
