"""The air plan's hours, laid out turn by turn as the radio would fill them (payload/policy/airplan.py).

Every period opens with the position sentence; every `window_every`-th is followed by the window
cue and the listening, when they fit the turn. Each producer queues its items at its interval —
a musing at the first position sentence after it is due, and only once the last one has gone on
air (a musing gone stale unsent is dropped and made again at the next) — and the rest of the turn
takes whole frames in the radio's order: the first frame, in priority and then age, that ends
inside the turn. `lay_out` counts what the last hour carried. Pure arithmetic.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from stratoecho.wire import Kind

from ..store.streams import STREAMS

HOUR_S = 3600.0
MUSINGS_PER_QUESTION = 10  # persona/reach.py: at most one question every ten musings
# Priorities in the radio's order, the queue's own (payload/store/streams.py); relays go first.
PRIORITY = {"relay": -1, **{k: STREAMS[v].priority for k, v in (
    ("event", Kind.EVENT), ("musing", Kind.MUSING), ("question", Kind.API_REQUEST), ("health", Kind.HEALTH),
    ("musing sentence", Kind.MUSING_SENTENCE), ("picture", Kind.SSDV), ("image", Kind.IMAGE))}}
ROWS = ("position", "window", "listening", "relay", "event", "musing", "musing sentence", "question", "health",
        "picture", "image")
PERISHABLE = ("musing", "musing sentence")
# A relay sends a position its key proves bare this many times (payload/link/relay.py): after its
# envelope, and again before the flight's next position.
ECHOES = 2
# A relay sends on of each record its k data fragments and at most this share of k in parity
# (payload/link/relay.py): its origin sized its parity for a link it never hears back from.
PARITY_SHARE = 0.5


@dataclass(frozen=True)
class Frame:
    bytes: int
    air_s: float
    channel: str = "own"  # "pictures": [radio.pictures]; "rx": listening, no air


@dataclass(frozen=True)
class Relayed:
    """A flight we send on: its records too when we hold its downlink key."""

    callsign: str
    records: bool


@dataclass(frozen=True)
class Traffic:
    """What the configuration puts on air, item by item, and how often (flight seconds)."""

    period_s: float
    turn_s: float  # of each period the radio may key in, from the sentence, the guard taken off
    sentence: Frame
    cue: Frame | None  # None: no listen windows
    listen_s: float
    window_every: int
    musing: list[Frame]  # one musing's record frames (none without a flight key)
    musing_lines: list[Frame]  # and its $$ sentences
    musing_s: float
    first_musing_s: float
    stale_s: float
    question: list[Frame]
    health: list[Frame]
    health_s: float
    event: list[Frame]
    events_per_hour: float
    picture: list[Frame]
    picture_kind: str  # "picture" (SSDV) or "image" (a record)
    image_s: float
    send_every: int | None  # None: no camera
    relayed: tuple[Relayed, ...]
    relay_position: Frame
    relay_every_s: float
    # What a flight we relay sends of each kind, taken to be what we send, as it goes on in our
    # envelope: its records with the parity the relay lets through (payload/link/relay.py), its
    # pictures as records (no envelope holds an SSDV packet).
    relay_copy: dict[str, list[Frame]] = field(default_factory=dict)
    # A position of a flight whose key we hold goes on twice: in its envelope, then bare as heard,
    # which a stock gateway takes (payload/link/relay.py). None: no echo.
    relay_echo: Frame | None = None


@dataclass
class _Item:
    kind: str
    made: float
    frames: list[Frame]
    n: int
    sent: int = 0
    first_air: float | None = None  # its first frame keyed
    first_heard: float | None = None  # its first frame whole on air: what a listener can first read
    last_heard: float | None = None  # its last frame whole on air
    musing: int | None = None  # which musing: its record and its sentences share it

    def order(self) -> tuple:
        return PRIORITY[self.kind], self.made, self.n


@dataclass
class Layout:
    """What the last hour carried, and what was left."""

    busy_s: dict[str, float] = field(default_factory=lambda: dict.fromkeys(ROWS, 0.0))
    frames: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ROWS, 0))
    biggest: dict[str, Frame] = field(default_factory=lambda: {k: Frame(0, 0.0) for k in ROWS})
    positions: int = 0
    windows: int = 0
    windows_skipped: int = 0
    musings_made: int = 0
    musings_remade: int = 0
    pictures: int = 0
    relay_positions: dict[str, int] = field(default_factory=dict)
    musing_delays_s: list[float] = field(default_factory=list)  # made -> first part on air, after the first hour
    # What a stock gateway sees of a musing (it drops record frames): made -> its first $$ part
    # whole on air, and -> its last $$ part whole on air (the whole musing), after the first hour.
    sentence_delays_s: list[float] = field(default_factory=list)
    whole_delays_s: list[float] = field(default_factory=list)
    backlog_s: list[float] = field(default_factory=list)  # air waiting at the end of each hour
    left: list[_Item] = field(default_factory=list)


class _Hours:
    def __init__(self, t: Traffic, hours: int):
        self.t, self.hours = t, hours
        self.last_hour = (hours - 1) * HOUR_S
        self.out = Layout(relay_positions={r.callsign: 0 for r in t.relayed})
        self.items: list[_Item] = []
        self.done: list[_Item] = []
        self.n = itertools.count()
        self.health_due, self.event_due = t.health_s, 0.0
        self.picture_due, self.stills = t.image_s / 2, 0
        self.musing_due, self.musing_n = t.first_musing_s, 0
        self.relay_due = {r.callsign: 0.0 for r in t.relayed}
        self.keyed = {r.callsign: r.records for r in t.relayed}  # its key proves its lines: they are echoed

    def add(self, kind: str, made: float, frames: list[Frame], musing: int | None = None, relay: bool = True) -> None:
        if frames:
            self.items.append(_Item(kind, made, list(frames), next(self.n), musing=musing))
        # A flight we send on sends as we do: its records only when we hold its downlink key.
        copy = self.t.relay_copy.get(kind) if relay else None
        for f in self.t.relayed if copy else ():
            if f.records or kind == "musing sentence":
                self.items.append(_Item("relay", made, list(copy), next(self.n)))

    def count(self, kind: str, f: Frame, at: float) -> None:
        if at >= self.last_hour:
            self.out.busy_s[kind] += f.air_s
            self.out.frames[kind] += 1
        if f.bytes >= self.out.biggest[kind].bytes:
            self.out.biggest[kind] = f

    def produce(self, t0: float) -> None:
        """What the producers queue by the end of the period that starts at `t0`."""
        t, last = self.t, t0 >= self.last_hour
        for it in [i for i in self.items if i.kind in PERISHABLE and i.first_air is None and t0 - i.made > t.stale_s]:
            self.items.remove(it)
            if it.kind == "musing" or not t.musing:
                self.out.musings_remade += last
                self.musing_due = min(self.musing_due, t0)
        musings = t.musing or t.musing_lines  # none without a persona
        if musings and t0 >= self.musing_due and not any(i.kind in PERISHABLE and i.first_air is None
                                                          for i in self.items):
            self.musing_n += 1
            self.out.musings_made += last
            self.add("musing", t0, t.musing, musing=self.musing_n)
            self.add("musing sentence", t0, t.musing_lines, musing=self.musing_n)
            if self.musing_n % MUSINGS_PER_QUESTION == 0:
                self.add("question", t0, t.question, relay=False)
            self.musing_due = t0 + t.musing_s
        end = t0 + t.period_s
        while self.health_due <= end:
            self.add("health", self.health_due, t.health)
            self.health_due += t.health_s
        while t.events_per_hour and self.event_due <= end:
            self.add("event", self.event_due, t.event)
            self.event_due += HOUR_S / t.events_per_hour
        while t.send_every and self.picture_due <= end:
            if self.stills % t.send_every == 0:
                self.add(t.picture_kind, self.picture_due, t.picture)
                self.out.pictures += self.picture_due >= self.last_hour
            self.stills += 1
            self.picture_due += t.image_s
        for callsign, due in self.relay_due.items():
            if t0 >= due:
                echo = [t.relay_echo] * ECHOES if t.relay_echo is not None and self.keyed[callsign] else []
                self.add("relay", t0, [t.relay_position, *echo], relay=False)
                self.relay_due[callsign] = t0 + t.relay_every_s
                self.out.relay_positions[callsign] += last

    def fill(self, now: float, end: float) -> None:
        """Whole frames from `now` until the turn ends at `end`, in the radio's order."""
        while True:
            ready = sorted((i for i in self.items if i.made <= now), key=_Item.order)
            pick = next((i for i in ready if now + i.frames[i.sent].air_s <= end), None)
            if pick is None:
                later = [i.made for i in self.items if now < i.made < end]
                if not later:
                    return
                now = min(later)
                continue
            f = pick.frames[pick.sent]
            if pick.first_air is None:
                pick.first_air, pick.first_heard = now, now + f.air_s
            self.count(pick.kind, f, now)
            now += f.air_s
            pick.sent += 1
            pick.last_heard = now
            if pick.sent == len(pick.frames):
                self.items.remove(pick)
                self.done.append(pick)

    def run(self) -> Layout:
        t = self.t
        for p in range(int(self.hours * HOUR_S / t.period_s)):
            t0 = p * t.period_s
            if t0 >= (len(self.out.backlog_s) + 1) * HOUR_S:
                self.out.backlog_s.append(self.backlog())
            self.count("position", t.sentence, t0)
            self.out.positions += t0 >= self.last_hour
            self.produce(t0)
            now, end = t0 + t.sentence.air_s, t0 + t.turn_s
            if t.cue is not None and (p + 1) % t.window_every == 0:
                if now + t.cue.air_s + t.listen_s <= end:
                    self.count("window", t.cue, t0)
                    self.count("listening", Frame(0, t.listen_s, "rx"), t0)
                    self.out.windows += t0 >= self.last_hour
                    now += t.cue.air_s + t.listen_s
                else:
                    self.out.windows_skipped += t0 >= self.last_hour
            self.fill(now, end)
        self.out.backlog_s.append(self.backlog())
        self.out.left = self.items
        self.out.musing_delays_s = sorted(self._first_parts())
        lines = [i for i in self.done if i.kind == "musing sentence" and i.made >= HOUR_S]
        self.out.sentence_delays_s = sorted(i.first_heard - i.made for i in lines)
        self.out.whole_delays_s = sorted(i.last_heard - i.made for i in lines)
        return self.out

    def backlog(self) -> float:
        return sum(f.air_s for it in self.items for f in it.frames[it.sent:])

    def _first_parts(self) -> list[float]:
        """Each musing made after the first hour: made -> its first part on air, record or sentence."""
        first: dict[int, tuple[float, float]] = {}
        for i in self.done:
            if i.musing is not None and i.made >= HOUR_S and i.first_air is not None:
                made, air = first.get(i.musing, (i.made, i.first_air))
                first[i.musing] = (made, min(air, i.first_air))
        return [air - made for made, air in first.values()]


def lay_out(traffic: Traffic, hours: int) -> Layout:
    return _Hours(traffic, hours).run()
