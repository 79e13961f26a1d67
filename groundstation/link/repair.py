"""What to ask the balloon to send again: pure logic, no I/O, no clock.

The payload listens for uplink for a few seconds after every `window_every`-th
telemetry sentence, and says so with its tagged window cue. At each such window the ground asks (RESEND, see
`stratoecho.wire.uplink`) for two things:

* **incomplete records** — some fragments heard, not yet k of them: ask for
  ``still_needed + margin`` fragment indices never received. Shards do not depend
  on n, so when too few indices below n are missing, indices from n upwards (fresh
  parity, up to 254) make up the number;
* **records never heard** — a hole in one (kind, boot) stream's sequence numbers
  between two records heard (musing 4 and 6 heard: ask for 5, whole record).
  Holes wider than `max_gap` are ignored (a reboot or a long outage, not a loss
  worth the uplink), and telemetry is never asked for: sentences are not repaired.

Each record is asked for at most `max_asks` times, and after an ask not again in
the next `retry_after` windows (the answer needs time to come down). Once a
record completes it is never asked for again. Time is counted in windows only
(`plan()` is called once per window), so the same inputs give the same requests.

Use::

    planner = NackPlanner()
    planner.heard(fragment, complete=record_came_out)   # every decoded fragment
    items = planner.plan(reassembler.missing())           # once per uplink window
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from stratoecho.wire import Fragment, Kind
from stratoecho.wire.uplink import AckRange, ResendItem

Key = tuple[int, int, int]  # (kind, boot, seq), as wire.Fragment.key
MAX_INDEX = 254  # a fragment index is a u8 below a count of at most 255


@dataclass
class _Ask:
    window: int  # when it was last asked for
    count: int  # how many times


@dataclass
class NackPlanner:
    margin: int = 1  # extra fragments asked beyond what is still needed, against uplink-window losses
    retry_after: int = 2  # windows to wait after an ask before asking for the same record again
    # Asks per record before giving up on it. An ask counts even when the uplink loses it,
    # and one succeeds only if the window's sentence, the RESEND and enough of the repair
    # get through: at 30-50 % loss each way that is one time in two to eight (a repair's
    # frames go back to back, into the same bursts). 4 asks left ~1 % of musings unrepaired
    # at 30 % and 8 asks 1-2 % at 50 %; 16 deliver 99.5-100 % at 50 % over seeds 1-4, for
    # the same uplink airtime and fewer downlink bytes, and change nothing at 10 or 30 %
    # (sim/bench/run/link.py). A RESEND item costs about 8 bytes of an uplink frame; a record
    # given up on costs the whole record.
    max_asks: int = 16
    max_gap: int = 50  # sequence holes wider than this are not asked about
    max_items: int = 64  # items per window, so one window's answer cannot swamp the downlink
    window: int = 0  # windows planned so far
    items_requested: int = 0
    given_up: int = 0
    _received: dict[Key, set[int]] = field(default_factory=dict)  # indices heard, incomplete records
    _n: dict[Key, int] = field(default_factory=dict)  # largest n heard per incomplete record
    _seen: dict[tuple[int, int], list[int]] = field(default_factory=dict)  # (kind, boot) -> sorted seqs heard
    _holes: set[Key] = field(default_factory=set)  # never heard, between two heard
    _done: set[Key] = field(default_factory=set)
    _asks: dict[Key, _Ask] = field(default_factory=dict)
    ack_repeats: int = 3  # windows each acknowledged range is sent in: the uplink loses frames too
    _acked: dict[tuple[int, int, int], tuple[int, int]] = field(default_factory=dict)  # (kind, boot, first) -> (last, times)

    def __post_init__(self) -> None:
        for name in ("margin", "retry_after", "max_gap"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")
        for name in ("max_asks", "max_items"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")

    # ------------------------------------------------------------------ what was heard

    def heard(self, frag: Fragment, complete: bool = False) -> None:
        """A fragment decoded; `complete` when the record came out whole with it."""
        key = frag.key
        self._heard_seq(key)
        if complete:
            self.completed(key)
            return
        if key in self._done:
            return
        self._received.setdefault(key, set()).add(frag.index)
        self._n[key] = max(self._n.get(key, 0), frag.n)

    def completed(self, key: Key) -> None:
        """A record is whole: never ask for it again."""
        self._heard_seq(key)
        self._done.add(key)
        self._received.pop(key, None)
        self._n.pop(key, None)
        self._asks.pop(key, None)

    def _heard_seq(self, key: Key) -> None:
        kind, boot, seq = key
        self._holes.discard(key)
        seqs = self._seen.setdefault((kind, boot), [])
        i = bisect.bisect_left(seqs, seq)
        if i < len(seqs) and seqs[i] == seq:
            return
        # Holes on either side of the new one; the unheard seqs between already-heard
        # neighbours are already holes unless that span was too wide.
        if i > 0:
            self._add_holes(kind, boot, seqs[i - 1], seq)
        if i < len(seqs):
            self._add_holes(kind, boot, seq, seqs[i])
        seqs.insert(i, seq)

    def _add_holes(self, kind: int, boot: int, low: int, high: int) -> None:
        if 0 < high - low - 1 <= self.max_gap:
            self._holes.update((kind, boot, s) for s in range(low + 1, high) if (kind, boot, s) not in self._done)

    def announced(self, kind: int, boot: int, seq: int) -> None:
        """The payload says record `seq` exists (its health record names its last numbers):
        if it never came, ask for it, and for every one between it and the last heard."""
        key = (kind, boot, seq)
        if key in self._done or key in self._received:
            return
        self._heard_seq(key)  # holes between the last heard and this one
        self._holes.add(key)

    # ------------------------------------------------------------------ what to ask

    def plan(self, missing: dict[Key, tuple[int, list[int]]]) -> list[ResendItem]:
        """The items to ask for in this window (call once per window, with
        `Reassembler.missing()`); incomplete records first, then holes, each in key order."""
        self.window += 1
        items: list[ResendItem] = []
        for key in sorted(missing):
            if key in self._done or int(key[0]) == Kind.TELEMETRY or not self._due(key):
                continue
            still_needed, never = missing[key]
            items.append(ResendItem(key[0], key[1], key[2], self._indices(key, still_needed, never)))
        for key in sorted(self._holes - set(missing)):
            if int(key[0]) != Kind.TELEMETRY and self._due(key):
                items.append(ResendItem(key[0], key[1], key[2], ()))
        items = items[: self.max_items]
        for it in items:
            ask = self._asks.setdefault((it.stream, it.boot, it.seq), _Ask(self.window, 0))
            ask.window, ask.count = self.window, ask.count + 1
        self.items_requested += len(items)
        return items

    def _due(self, key: Key) -> bool:
        ask = self._asks.get(key)
        if ask is None:
            return True
        if ask.count >= self.max_asks:
            if ask.window >= 0:  # count the give-up once
                self.given_up += 1
                ask.window = -1
            return False
        return self.window - ask.window > self.retry_after

    def _indices(self, key: Key, still_needed: int, never: list[int]) -> tuple[int, ...]:
        want = max(still_needed, 1) + self.margin
        chosen = [i for i in never if i <= MAX_INDEX][:want]
        if len(chosen) < want:
            # Fresh parity beyond the original cut: shards do not depend on n.
            received = self._received.get(key, set())
            start = max([self._n.get(key, 0), *(i + 1 for i in received), *(i + 1 for i in chosen)])
            for i in range(start, MAX_INDEX + 1):
                if len(chosen) == want:
                    break
                if i not in received:
                    chosen.append(i)
        return tuple(chosen)

    # ------------------------------------------------------------------ what to acknowledge

    def acks(self) -> list[AckRange]:
        """Ranges of records held whole, for this window's ACK: each range new or grown since
        it was last sent, or sent fewer than `ack_repeats` times. Ranges, never "up to":
        a record that never arrived at all is never acknowledged by accident."""
        runs: list[AckRange] = []
        by_stream: dict[tuple[int, int], list[int]] = {}
        for kind, boot, seq in self._done:
            by_stream.setdefault((kind, boot), []).append(seq)
        for (kind, boot), seqs in sorted(by_stream.items()):
            seqs.sort()
            first = prev = seqs[0]
            for seq in seqs[1:] + [None]:
                if seq is not None and seq == prev + 1:
                    prev = seq
                    continue
                last, times = self._acked.get((kind, boot, first), (None, 0))
                if last != prev or times < self.ack_repeats:
                    self._acked[(kind, boot, first)] = (prev, 1 if last != prev else times + 1)
                    runs.append(AckRange(kind, boot, first, prev))
                if seq is not None:
                    first = prev = seq
        return runs
