"""What one dashboard lets its clients hold (docs/ground.md "Limits"): the caps on connections,
slow requests and live feeds (`Limits`, counted per client and per network by `Slots`), and the
room made for a newcomer when every feed is taken (`Feeds`; connections.py makes it for
connections and reads requests against their deadlines), so that no client, nor one network's
crowd of addresses, can hold the server's threads or descriptors, and the operator always has a
way in."""

from __future__ import annotations

import collections
import dataclasses
import functools
import ipaddress
import threading
import time
from dataclasses import dataclass, field

import structlog

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Limits:
    """What one dashboard lets its clients hold (docs/ground.md "Limits"). A client is one IP
    address, its network the IPv4 /24 or IPv6 /64 around it (`network_of`). Every connection is
    a thread and a file descriptor, an event stream also a database reader (up to 3 more
    descriptors): the totals keep it well inside the unit's LimitNOFILE and TasksMax. Beyond a
    cap the answer is 503 with Retry-After, at once. `serve --limit NAME=VALUE` sets any of them."""

    connections: int = 512  # open connections in all
    client_connections: int = 32  # from one address (a browser opens ~6; a field NAT a few browsers)
    # From one network: half the total. A household or a club behind one NAT is one address; a
    # field network (the chase's hotspot, a club's Wi-Fi: one /24, one /64) with ~30 phones at ~6
    # connections each is ~180. One network, however many addresses it takes, leaves the other
    # half to every other network (and its idle ones are still closed for a newcomer).
    network_connections: int = 256
    # A request whose bytes do not all come in its first read is slow (a browser sends its head in
    # one piece): it holds one of these until the rest has come, or its connection is closed at
    # once. Connections trickling a header byte every 2 s were never idle, so none was closed for
    # room: 8 addresses x 32 in one /24 sent every client there to 503 (issue 50). A quarter of
    # the connections in all, an eighth of a network's: slow ones never fill either.
    slow: int = 128
    client_slow: int = 4
    network_slow: int = 32
    # Event streams in all: half the connections (each is one), so pages always have the other
    # half. 128 networks holding one each once locked every new watcher out; with 256 they leave
    # half, and past that the networks take turns (feed_turn_s).
    streams: int = 256
    client_streams: int = 4  # from one address (one per open tab)
    # From one network: ~30 phones with a tab or two each fit (~45); a crowd of addresses in one
    # network (an attacker taking many) leaves the rest to other networks, and a newcomer finding
    # the total (or its network's share) full has a feed of the network (or address) holding the
    # most closed for it (`Feeds`). A dual-stack field network is two networks (its /24, its /64).
    network_streams: int = 64
    # A feed is kept this long before it may be closed for a newcomer whose network would then hold
    # as many as the feed's: networks that hold one each take turns, never faster. A browser's feed
    # closed for room reconnects in 2 s and resumes where it was (its Last-Event-ID).
    feed_turn_s: float = 60.0
    idle_s: float = 30.0  # waiting for a request's first byte (a kept-alive connection too), or for any byte
    head_s: float = 10.0  # the rest of a request, head and body, from its first byte: one deadline, however it trickles
    retry_after_s: int = 5  # what a refused client is told to wait
    # The addresses a live operator session was used from (access.Sessions.seen_from) may go this
    # far past the totals and are never held to a network's cap: a connection is accepted before
    # its cookie can be read, so the way in that the crowd cannot take is the operator's address.
    operator_reserve: int = 16
    # This machine's own clients (the station's screen, its operator at the keyboard: 127.0.0.1,
    # ::1) may go this far past the totals beyond the operator's reserve, and are never held to a
    # network's cap: the field network filling every slot does not lock the station out of itself.
    local_reserve: int = 16


def parse_limit(text: str) -> tuple[str, int | float]:
    """`NAME=VALUE` for one of Limits' fields (`serve --limit`); ValueError saying what would do."""
    name, _, value = text.partition("=")
    fields = {f.name: f for f in dataclasses.fields(Limits)}
    if name.strip() not in fields:
        raise ValueError(f"{name!r} is no dashboard limit; one of {', '.join(fields)}")
    name = name.strip()
    kind = int if fields[name].type in ("int", int) else float
    try:
        number = kind(value)
    except ValueError:
        number = None
    least = 0 if name.endswith("reserve") or name == "feed_turn_s" else 1e-3 if kind is float else 1
    if number is None or not number >= least or number == float("inf"):
        raise ValueError(f"{name} is {'a whole number' if kind is int else 'a number of seconds'} of at least "
                         f"{least:g}, got {value!r}")
    return name, number


def _ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """A client's address as an IP address, an IPv4-mapped IPv6 one as IPv4 (a dashboard on `::`
    hears IPv4 clients so); None when it is not one."""
    try:
        ip = ipaddress.ip_address(address.partition("%")[0])
    except ValueError:
        return None
    return getattr(ip, "ipv4_mapped", None) or ip


def is_station(address: str) -> bool:
    """Whether a client is this machine itself: 127.0.0.1 or ::1, where its own browser comes
    from. Other addresses of 127/8 are what the tests and the bench use for other machines
    (nothing on the station opens the dashboard from one by itself); they count as remote."""
    ip = _ip(address)
    return ip is not None and ip in (ipaddress.IPv4Address("127.0.0.1"), ipaddress.IPv6Address("::1"))


@functools.lru_cache(maxsize=4096)
def network_of(address: str) -> str:
    """The network a client counts in: its IPv4 /24 (an IPv4-mapped IPv6 address's too) or its
    IPv6 /64; a name that is not an address is a network of its own."""
    ip = _ip(address)
    if ip is None:
        return address
    return str(ipaddress.ip_network(f"{ip}/{24 if ip.version == 4 else 64}", strict=False))


ADDRESS, NETWORK, TOTAL = "address", "network", "total"  # what is full, as Slots.claim says


class Slots:
    """Counts of what each client and each network hold, of each kind ("connection", "slow": a
    slow request, "stream": a live feed), under one lock."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.lock = threading.Lock()
        self.total = {"connection": 0, "slow": 0, "stream": 0}
        self.per_client: dict[tuple[str, str], int] = {}
        self.per_network: dict[tuple[str, str], int] = {}

    def caps(self, kind: str) -> tuple[int, int, int]:
        """The total, one network's and one address's cap of `kind`."""
        limits = self.limits
        return {"connection": (limits.connections, limits.network_connections, limits.client_connections),
                "slow": (limits.slow, limits.network_slow, limits.client_slow),
                "stream": (limits.streams, limits.network_streams, limits.client_streams)}[kind]

    def claim(self, kind: str, client: str, past: tuple[str, ...] = (), operator: bool = False) -> str | None:
        """Take a slot of `kind` for `client` and return None; or take nothing and return what is
        full: ADDRESS, NETWORK or TOTAL, the first that is. `past`: the caps it may go past (one
        made room for, whose slot is on its way back). `operator`: the operator's (a session, or an
        address one was used from): past its network's cap and operator_reserve past the total.
        The station itself (`is_station`) has no network and local_reserve past the operator's."""
        cap, network_cap, client_cap = self.caps(kind)
        network = None if is_station(client) else network_of(client)
        if network is None:
            cap += self.limits.operator_reserve + self.limits.local_reserve
        elif operator:
            cap += self.limits.operator_reserve
            past = (*past, NETWORK)
        with self.lock:
            held = self.per_client.get((kind, client), 0)
            if held >= client_cap:
                return ADDRESS
            in_network = self.per_network.get((kind, network), 0) if network else 0
            if network and in_network >= network_cap and NETWORK not in past:
                return NETWORK
            if self.total[kind] >= cap and TOTAL not in past:
                return TOTAL
            self.total[kind] += 1
            self.per_client[(kind, client)] = held + 1
            if network:
                self.per_network[(kind, network)] = in_network + 1
            return None

    def take(self, kind: str, client: str, past_total: bool = False) -> bool:
        """Whether a slot of `kind` was taken for `client` (Slots.claim), past the total or not."""
        return self.claim(kind, client, (TOTAL,) if past_total else ()) is None

    def give(self, kind: str, client: str) -> None:
        network = None if is_station(client) else network_of(client)
        with self.lock:
            self.total[kind] -= 1
            held = self.per_client.pop((kind, client)) - 1
            if held:
                self.per_client[(kind, client)] = held
            if network:
                in_network = self.per_network.pop((kind, network)) - 1
                if in_network:
                    self.per_network[(kind, network)] = in_network

    def held(self, kind: str, network: str | None = None) -> int:
        """How many slots of `kind` are held, in all or by one network."""
        with self.lock:
            return self.total[kind] if network is None else self.per_network.get((kind, network), 0)


def oldest_of_biggest(held: list[tuple[float, str, object]]):
    """Of (since, client, thing), the thing held longest by the address holding the most in the
    network holding the most."""
    networks = collections.Counter(network_of(client) for _, client, _ in held)
    top = max(networks.values())
    held = [h for h in held if networks[network_of(h[1])] == top]
    clients = collections.Counter(client for _, client, _ in held)
    most = max(clients.values())
    return min((h for h in held if clients[h[1]] == most), key=lambda h: h[0])[2]


@dataclass(eq=False)
class Feed:
    """One open event stream: `ended` is set when the dashboard stops, or when it is closed to
    make room (the stream then ends within a poll and gives its slot back). `kept`: never
    closed for room (the operator's, the station's own)."""

    client: str
    kept: bool
    since: float = field(default_factory=time.monotonic)
    ended: threading.Event = field(default_factory=threading.Event)


class Feeds:
    """The open event streams (/api/events), in their slots. A newcomer within its address's cap
    that finds the total full has a feed of another network closed for it: the oldest of the
    address holding the most in the network holding the most, if that network holds more than
    the newcomer's would with it, or as many and that feed has had its turn (feed_turn_s). One
    that finds its own network's share full has, likewise, a feed of another address there closed
    for it. So a flood from one network, from however many addresses, cannot lock out another
    network, networks holding one each (more of them than feeds) take turns, and none takes
    feeds back and forth faster than a turn. A logged-in operator's feed goes past its network's
    cap and into the operator's reserve (a session, not an address), and is never closed for room."""

    def __init__(self, slots: Slots, stop: threading.Event):
        self.slots, self.stop = slots, stop
        self.lock = threading.Lock()
        self.feeds: list[Feed] = []
        self.closed = 0  # closed to make room

    def open(self, client: str, operator: bool = False) -> Feed | str:
        """A feed for `client` (`operator`: a logged-in operator's), or what is full (Slots.claim)."""
        kept = operator or is_station(client)
        full = self.slots.claim("stream", client, operator=operator)
        if full in (NETWORK, TOTAL) and self.slots.claim("stream", client, (NETWORK, TOTAL)) is None:
            feed = self._make_room(client, kept, network_of(client) if full == NETWORK else None)
            if feed is not None:
                return feed
            self.slots.give("stream", client)
        if full is not None:
            return full
        return self._add(Feed(client, kept))

    def close(self, feed: Feed) -> None:
        """`feed` ended: its slot back."""
        with self.lock:
            self.feeds.remove(feed)
        self.slots.give("stream", feed.client)

    def end_all(self) -> None:
        """The dashboard stops: every feed ends within a poll."""
        with self.lock:
            for feed in self.feeds:
                feed.ended.set()

    def _add(self, feed: Feed) -> Feed:
        with self.lock:
            return self._append(feed)

    def _append(self, feed: Feed) -> Feed:  # under the lock
        self.feeds.append(feed)
        if self.stop.is_set():  # one opened as the dashboard stops ends at once
            feed.ended.set()
        return feed

    def _make_room(self, newcomer: str, kept: bool, network: str | None) -> Feed | None:
        """The newcomer's feed (its slot taken past the caps), another's closed for it: another
        network's, or with `network` (the newcomer's, full) another address's there; None when
        none holds more than the newcomer's would, or as many with a feed past its turn."""
        group = network_of if network is None else str  # who takes turns: networks, or a network's addresses
        now = time.monotonic()
        with self.lock:
            live = [f for f in self.feeds if not f.ended.is_set() and not is_station(f.client)
                    and network in (None, network_of(f.client))]
            held = collections.Counter(group(f.client) for f in live)
            need = held[group(newcomer)] + 1
            room = [(f.since, f.client, f) for f in live if not f.kept and (
                held[group(f.client)] > need
                or (held[group(f.client)] == need and now - f.since >= self.slots.limits.feed_turn_s))]
            if not room:
                return None
            closed = oldest_of_biggest(room)
            closed.ended.set()
            self.closed += 1
            feed = self._append(Feed(newcomer, kept))
        log.info("live feed closed to make room", client=closed.client, newcomer=newcomer, closed=self.closed)
        return feed
