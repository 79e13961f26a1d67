"""What one dashboard lets its clients hold (docs/ground.md "Limits"): the caps on connections
and event streams (`Limits`, counted per client and per network by `Slots`), room made for a
newcomer when all are taken (`IdleConnections`, `Feeds`), and the deadline on reading a request
(`DeadlineReader`), so no client, nor one network's crowd of addresses, can hold the server's
threads or descriptors."""

from __future__ import annotations

import collections
import functools
import io
import ipaddress
import math
import socket
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
    cap the answer is 503 with Retry-After, at once."""

    connections: int = 512  # open connections in all
    client_connections: int = 32  # from one address (a browser opens ~6; a field NAT a few browsers)
    # From one network: half the total. A household or a club behind one NAT is one address; a
    # field network (the chase's hotspot, a club's Wi-Fi: one /24, one /64) with ~30 phones at ~6
    # connections each is ~180. One network, however many addresses it takes, leaves the other
    # half to every other network (and its idle ones are still closed for a newcomer).
    network_connections: int = 256
    streams: int = 128  # event streams (/api/events) in all
    client_streams: int = 4  # from one address (one per open tab)
    # From one network: half the total, again. ~30 phones with a tab or two each fit (~45); a
    # crowd of addresses in one network (an attacker taking many) leaves the other half to the
    # rest, and a newcomer finding the total full has a feed of the biggest network closed for
    # it (`Feeds`). A dual-stack field network is two networks (its /24 and its /64).
    network_streams: int = 64
    idle_s: float = 30.0  # waiting for a request's first line (a kept-alive connection too), or for any byte
    header_s: float = 10.0  # a request's headers and body, from its first line
    retry_after_s: int = 5  # what a refused client is told to wait
    # This machine's own clients (the station's screen, its operator at the keyboard: 127.0.0.1,
    # ::1) may go this far past the totals, and are never held to a network's cap: the field
    # network filling every slot does not lock the station out of itself.
    local_reserve: int = 16


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
    """Counts of what each client and each network hold, of each kind, under one lock."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.lock = threading.Lock()
        self.total = {"connection": 0, "stream": 0}
        self.per_client: dict[tuple[str, str], int] = {}
        self.per_network: dict[tuple[str, str], int] = {}

    def caps(self, kind: str) -> tuple[int, int, int]:
        """The total, one network's and one address's cap of `kind`."""
        limits = self.limits
        if kind == "connection":
            return limits.connections, limits.network_connections, limits.client_connections
        return limits.streams, limits.network_streams, limits.client_streams

    def claim(self, kind: str, client: str, past: tuple[str, ...] = ()) -> str | None:
        """Take a slot of `kind` for `client` and return None; or take nothing and return what is
        full: ADDRESS, NETWORK or TOTAL, the first that is. `past`: the caps it may go past
        (TOTAL: one made room for, whose slot is on its way back; NETWORK too: the operator's
        feed). The station itself (`is_station`) has its reserve past the total and no network."""
        cap, network_cap, client_cap = self.caps(kind)
        network = None if is_station(client) else network_of(client)
        if network is None:
            cap += self.limits.local_reserve
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


class IdleConnections:
    """The connections waiting for a request's first line (a new one, or a kept-alive one
    between requests), so that a newcomer finding every slot taken can have the oldest of them
    closed instead of a 503: idle connections held by a few addresses can no longer shut
    everyone else out (issue 41: 16 addresses x 32 idle connections sent every remote client,
    the operator's phone included, to 503). A connection busy with a request, or an event
    stream, is never idle."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.waiting: dict[socket.socket, tuple[float, str]] = {}  # -> (idle since, client)
        self.closed = 0  # closed to make room

    def wait(self, sock: socket.socket, client: str) -> None:
        with self.lock:
            self.waiting[sock] = (time.monotonic(), client)

    def busy(self, sock: socket.socket) -> None:
        with self.lock:
            self.waiting.pop(sock, None)

    def close_one(self, newcomer: str, network: str | None = None) -> bool:
        """Close the oldest idle connection of the address holding the most idle ones in the
        network holding the most (in `network` alone when the newcomer's network is the one
        full), never the newcomer's own; False when none is idle. Its thread ends and gives its
        slot back."""
        with self.lock:
            idle = [(since, client, sock) for sock, (since, client) in self.waiting.items()
                    if client != newcomer and network in (None, network_of(client))]
            if not idle:
                return False
            sock = _oldest_of_biggest(idle)
            del self.waiting[sock]
            self.closed += 1
        try:
            sock.shutdown(socket.SHUT_RDWR)  # its handler's read ends at once; the thread closes it
        except OSError:
            pass  # its client closed it first: the slot comes back all the same when its thread ends
        return True


def _oldest_of_biggest(held: list[tuple[float, str, object]]):
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
    """The open event streams (/api/events), in their slots: a newcomer within its address's and
    its network's caps that finds the total full has the oldest feed of the address holding the
    most in the network holding the most closed for it, if that network holds more than the
    newcomer's would with it. So a flood from one network, from however many addresses, cannot
    lock out another network, and two networks never take feeds back and forth. A logged-in
    operator's feed goes past the total and its network's cap (a session, not an address)."""

    def __init__(self, slots: Slots, stop: threading.Event):
        self.slots, self.stop = slots, stop
        self.lock = threading.Lock()
        self.feeds: list[Feed] = []
        self.closed = 0  # closed to make room

    def open(self, client: str, operator: bool = False) -> Feed | str:
        """A feed for `client` (`operator`: a logged-in operator's), or what is full (Slots.claim)."""
        full = self.slots.claim("stream", client, (TOTAL, NETWORK) if operator else ())
        if full == TOTAL and self.slots.claim("stream", client, (TOTAL,)) is None:
            feed = self._make_room(client)
            if feed is not None:
                return feed
            self.slots.give("stream", client)
        if full is not None:
            return full
        return self._add(Feed(client, kept=operator or is_station(client)))

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

    def _make_room(self, newcomer: str) -> Feed | None:
        """The newcomer's feed (its slot taken past the total), another network's closed for it;
        None when no network holds more than the newcomer's would."""
        mine = network_of(newcomer)
        with self.lock:
            live = [f for f in self.feeds if not f.ended.is_set() and not is_station(f.client)]
            networks = collections.Counter(network_of(f.client) for f in live)
            need = networks[mine] + 1
            room = [(f.since, f.client, f) for f in live if not f.kept and networks[network_of(f.client)] > need]
            if not room:
                return None
            closed = _oldest_of_biggest(room)
            closed.ended.set()
            self.closed += 1
            feed = self._append(Feed(newcomer, kept=is_station(newcomer)))
        log.info("live feed closed to make room", client=closed.client, newcomer=newcomer, closed=self.closed)
        return feed


class DeadlineReader(io.RawIOBase):
    """The request side of a connection: every read waits at most `idle_s`, and none goes on
    past `deadline` (a client trickling a byte at a time cannot hold its thread)."""

    def __init__(self, sock: socket.socket, idle_s: float):
        super().__init__()
        self.sock, self.idle_s = sock, idle_s
        self.deadline = math.inf

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request took too long")
        self.sock.settimeout(min(self.idle_s, left))
        try:
            return self.sock.recv_into(buffer)
        finally:
            self.sock.settimeout(self.idle_s)  # what writes wait at most
