"""Which frames this payload relays for the other payloads it hears, and when (docs/network.md).

Pure logic, no radio: the listen windows hand it what they heard (`hear`), and the radio
asks it for the next frame to send on (`due`, then `sent` once keyed) only with airtime its own
frames do not need. The rules, each a reason counted in `stats.refused`:

- only a flight the operator allows (`allowed`, by callsign) is relayed, and never our own;
  a flight allowed only to be heard (`listen_only`) is listened to and never sent on;
- a record fragment is relayed only when that flight's downlink key checks its tag (a
  station that cannot tag cannot use us as its transmitter); a UKHAS sentence names its
  callsign and is relayed open, as the community's gateways take it; a window cue is never
  relayed: the ground answers a cue only from its own balloon, and no uplink is relayed;
- a flight's position sentences at most one per `position_s` (the newest heard then): a
  track needs no more, and the share is left for its records. Positions go first, and only a
  flight's newest waits (a newer one replaces it): a flood of records never delays or evicts
  the track;
- a sentence of a flight whose downlink key we hold goes on only when its tag checks under that
  key ("bad tag" otherwise): a forger cannot put words in a keyed flight's mouth through us;
- such a proven position goes on in its envelope, then (its echo) as the very line that was
  heard, bytes, tag and CRC unchanged, so a stock LoRa gateway, which drops an envelope,
  uploads it under its own callsign; the ground that heard the envelope knows the bare line
  that follows for a relayed one (docs/network.md, "What a stock gateway hears"). The echo
  goes again before the flight's next position (`ECHOES`), a period later: a fade that takes
  one copy need not take the other, and the gateway's track never steps back;
- at most `max_hops` relays in all: a frame heard in another relayer's envelope goes on only
  while hops are left, and is re-wrapped, never nested;
- once: a frame heard again (directly, or through another relayer) by its origin and
  sequence is a duplicate;
- records in the order the payload sends its own (events, then musings, then health, then
  pictures; the oldest first), and of each record at most its k data fragments and half as
  many again (`PARITY_SHARE`): the origin sized its parity for a link it cannot hear back from
  (no window of its reaches the ground), and every parity frame more is a frame of another
  record's less in the share;
- within `share` of the hour's airtime budget, counted over the last hour, and at most
  `pending` records waiting: the least urgent waiting record (the oldest of the lowest
  priority) gives way to a new one, so a flood evicts only what it floods with;
- a frame that would not fit one packet (`mtu`: LoRa's 255 bytes, a UART module's packet) in
  its envelope is not cut, only refused.

What it hears it also listens to: a musing of an allowed flight, whole and proven by its
tag, goes to `on_musing` in its maker's name (the payload keeps it in its memory, so its own
persona hears what the other said and may answer).
"""

from __future__ import annotations

import itertools
import math
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from stratoecho.wire import FrameKind, HeardFrame, Kind, Reassembler, WireError, classify, decode_fragment
from stratoecho.wire.dispatch import origin_of
from stratoecho.wire.downlink import DownlinkAuth
from stratoecho.wire.relay import MAX_HOPS, decode_relayed, encode_relayed
from stratoecho.wire.uplink import payload_hash

from ..policy.air_layout import ECHOES, PARITY_SHARE
from ..store.streams import STREAMS

HOUR_S = 3600.0
SEEN = 4096  # frames remembered for duplicates: hours of a neighbour's traffic
OTHER_PRIORITY = max(s.priority for s in STREAMS.values())  # what is not a record: with the pictures
OPEN_LINES = (FrameKind.SENTENCE, FrameKind.MUSING_SENTENCE)  # `$$` lines: a callsign and perhaps its tag


@dataclass(frozen=True)
class RelayRules:
    callsign: str  # ours: our frames are never relayed back, our envelopes carry its hash
    allowed: Mapping[str, DownlinkAuth | None]  # the flights we relay; None: their open sentences only
    max_hops: int = 2  # relays a frame may take in all, ours included
    share: float = 0.2  # of the hour's airtime budget (duty cycle x 3600 s)
    duty_cycle: float = 0.1
    mtu: int = 255  # the most one packet holds: an envelope longer than this is refused, never cut
    pending: int = 32
    listen_only: frozenset[str] = frozenset()  # allowed flights heard (their musings) but never sent on
    position_s: float = 60.0  # at most one position sentence per flight this often (flight seconds)

    def __post_init__(self) -> None:
        if not 1 <= self.max_hops <= MAX_HOPS + 1:
            raise ValueError(f"max_hops {self.max_hops} is outside 1..{MAX_HOPS + 1}")
        if not 0.0 < self.share < 1.0:
            raise ValueError(f"relay share {self.share} is not between 0 and 1 (the rest is the payload's own)")
        if self.callsign in self.allowed:
            raise ValueError(f"{self.callsign} is this payload's own callsign: it never relays itself")


@dataclass
class RelayStats:
    heard: int = 0
    queued: int = 0
    forwarded: int = 0
    airtime_s: float = 0.0
    refused: Counter = field(default_factory=Counter)  # by reason
    by_origin: Counter = field(default_factory=Counter)  # frames forwarded, by the callsign they came from
    musings_heard: int = 0  # other payloads' musings heard whole (their persona's words for ours)
    echoed: int = 0  # bare lines queued for stock gateways: proven positions as heard, and their repeats


class Relay:
    def __init__(self, rules: RelayRules, auth: DownlinkAuth,
                 on_musing: Callable[[str, str, float], None] | None = None):
        self.rules, self.auth = rules, auth
        # A musing another payload made, whole and proven by its tag: (callsign, text, Unix seconds made).
        self.on_musing = on_musing
        self._musings: dict[str, Reassembler] = {}
        self.own = payload_hash(rules.callsign)
        self._relayers = {payload_hash(c): a for c, a in rules.allowed.items() if a is not None}
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        # origin -> the frames of its newest position still to go (its envelope, then its bare echo), first
        self._positions: OrderedDict[str, list[bytes]] = OrderedDict()
        self._echo: dict[str, bytes] = {}  # origin -> its last echo on air, to go again before its next position
        # Records (and musing sentences): (priority, order heard, frame, origin), the most urgent first.
        self._waiting: list[tuple[int, int, bytes, str]] = []
        self._order = itertools.count()
        self._per_record: OrderedDict[tuple, int] = OrderedDict()  # (origin, kind, boot, seq) -> fragments queued
        self._spent: deque[tuple[float, float]] = deque()  # (when, airtime) of each relay this hour
        self._last_position: dict[str, float] = {}  # origin -> flight second its last position was queued
        self.stats = RelayStats()

    def hear(self, frame: bytes, now_s: float | None = None) -> str | None:
        """A frame heard at flight second `now_s` (None: position sentences are not thinned):
        queued to go on (None), or why it will not."""
        self.stats.heard += 1
        try:
            heard, hops_left, origin, proven = self._judge(frame)
        except WireError as e:
            return self._refuse(e.reason)
        frame, position = heard.data, _is_position(heard)
        if origin in self.rules.listen_only:
            return self._refuse("listen only")
        if heard.kind is FrameKind.WINDOW_CUE:
            return self._refuse("window cue")
        if now_s is not None and position:
            last = self._last_position.get(origin)
            # A tenth of slack: a sentence every `position_s` is heard a moment early or late.
            if last is not None and now_s - last < 0.9 * self.rules.position_s:
                return self._refuse("position thinned")
            self._last_position[origin] = now_s
        out = encode_relayed(frame, self.own, hops_left, self.auth)
        if len(out) > self.rules.mtu:
            return self._refuse("too long")
        if position:
            if self._positions.pop(origin, None) is not None:
                self.stats.refused["position superseded"] += 1
            # A proven line goes again bare, as heard: a stock gateway's only way to take it.
            echo = proven and len(frame) <= self.rules.mtu
            again = [self._echo.pop(origin)] if origin in self._echo and ECHOES > 1 else []
            self._positions[origin] = [*again, out, frame] if echo else [*again, out]
            self.stats.echoed += echo + len(again)
            self.stats.queued += 1
            return None
        priority = self._priority(origin, heard)
        if priority is None:
            return self._refuse("parity enough")
        if len(self._waiting) >= self.rules.pending:
            self._waiting.remove(max(self._waiting, key=lambda w: (w[0], -w[1])))
            self.stats.refused["evicted"] += 1
        self._waiting.append((priority, next(self._order), out, origin))
        self.stats.queued += 1
        return None

    def _priority(self, origin: str, heard: HeardFrame) -> int | None:
        """Where a frame waits among the records: its kind's priority (payload/store/streams.py);
        None for a record fragment past its k data and `PARITY_SHARE` parity fragments."""
        if heard.kind is not FrameKind.FRAGMENT or self.rules.allowed.get(origin) is None:
            return STREAMS[Kind.MUSING_SENTENCE].priority if heard.kind in OPEN_LINES else OTHER_PRIORITY
        f = decode_fragment(heard.data, self.rules.allowed[origin])  # its tag was checked when it was judged
        key = (origin, f.kind, f.boot, f.seq)
        queued = self._per_record.pop(key, 0)
        if queued >= f.k + math.ceil(PARITY_SHARE * f.k):
            self._per_record[key] = queued
            return None
        self._per_record[key] = queued + 1
        while len(self._per_record) > SEEN:
            self._per_record.popitem(last=False)
        return STREAMS[f.kind].priority if f.kind in STREAMS else OTHER_PRIORITY

    def due(self, now_s: float, airtime_s: Callable[[int], float]) -> bytes | None:
        """The next frame to relay, if the relay's share of the last hour's airtime allows it
        (`airtime_s(n)`: seconds on air for n bytes); None leaves the air to the payload's own.
        It stays first in line until `sent` says it went."""
        while self._spent and self._spent[0][0] <= now_s - HOUR_S:
            self._spent.popleft()
        if self._positions:
            frame = next(iter(self._positions.values()))[0]
        elif self._waiting:
            frame = min(self._waiting)[2]
        else:
            return None
        allowance = self.rules.share * self.rules.duty_cycle * HOUR_S
        if sum(a for _, a in self._spent) + airtime_s(len(frame)) > allowance:
            return None
        return frame

    def sent(self, now_s: float, airtime_s: float) -> None:
        """The frame `due` gave went on air, taking `airtime_s`."""
        if self._positions:
            origin, frames = next(iter(self._positions.items()))
            frame = frames.pop(0)
            if not frames:
                del self._positions[origin]
                if classify(frame).kind is FrameKind.SENTENCE:  # its echo: it goes again before the next
                    self._echo[origin] = frame
        else:
            first = min(self._waiting)
            self._waiting.remove(first)
            origin = first[3]
        self._spent.append((now_s, airtime_s))
        self.stats.forwarded += 1
        self.stats.airtime_s += airtime_s
        self.stats.by_origin[origin] += 1

    def waiting(self) -> int:
        return sum(map(len, self._positions.values())) + len(self._waiting)

    def _judge(self, frame: bytes) -> tuple[HeardFrame, int, str, bool]:
        """The frame to send on (told apart by `wire.classify`), the hops it may take after ours, its
        origin, and whether that origin's key proved it; WireError why not."""
        hops_left = self.rules.max_hops - 1
        heard = classify(frame, self.auth.tag_len)
        if heard.kind is FrameKind.RELAYED:
            relayed = decode_relayed(frame, self._relayers, self.auth.tag_len)
            if relayed.relayer == self.own:
                raise WireError("own frame", "our own relay, heard back")
            if relayed.hops_left == 0:
                raise WireError("hops exhausted", "relayed as far as its first relayer allowed")
            heard, hops_left = classify(relayed.frame, self.auth.tag_len), relayed.hops_left - 1
        origin = origin_of(heard, {**self.rules.allowed, self.rules.callsign: self.auth})
        if origin.callsign == self.rules.callsign:
            raise WireError("own frame", "our own frame, heard back")
        if heard.kind in OPEN_LINES and not origin.authentic and self.rules.allowed.get(origin.callsign) is not None:
            raise WireError("bad tag", f"a sentence under {origin.callsign} its downlink key does not check")
        if origin.key in self._seen:
            self._seen.move_to_end(origin.key)
            raise WireError("duplicate", f"{origin.callsign}'s frame, heard before")
        self._seen[origin.key] = None
        while len(self._seen) > SEEN:
            self._seen.popitem(last=False)
        if origin.authentic and heard.kind is FrameKind.FRAGMENT:
            self._listen(origin.callsign, heard.data)
        return heard, hops_left, origin.callsign, origin.authentic

    def _listen(self, callsign: str, frame: bytes) -> None:
        """A proven fragment: its musing, once whole, goes to `on_musing`, said in its maker's name."""
        if self.on_musing is None:
            return
        fragment = decode_fragment(frame, self.rules.allowed[callsign])
        if fragment.kind is not Kind.MUSING:
            return
        record = self._musings.setdefault(callsign, Reassembler(max_pending=64)).add(fragment)
        if record is not None:
            self.stats.musings_heard += 1
            self.on_musing(callsign, record.text, float(record.created))

    def _refuse(self, reason: str) -> str:
        self.stats.refused[reason] += 1
        return reason


def _is_position(heard: HeardFrame) -> bool:
    """An open position sentence that parses (not a musing's text sentence, which is a record's words)."""
    return heard.kind is FrameKind.SENTENCE and heard.error is None
