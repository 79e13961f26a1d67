"""What one dashboard lets its clients hold (docs/ground.md "Limits"): the caps on connections
and event streams (`Limits`, counted per client by `Slots`), and the deadline on reading a
request (`DeadlineReader`), so no client can hold the server's threads or descriptors."""

from __future__ import annotations

import io
import math
import socket
import threading
import time
from dataclasses import dataclass

from .hosts import is_loopback


@dataclass(frozen=True)
class Limits:
    """What one dashboard lets its clients hold (docs/ground.md "Limits"). A client is one IP
    address. Every connection is a thread and a file descriptor, an event stream also a
    database reader (up to 3 more descriptors): the totals keep it well inside the unit's
    LimitNOFILE and TasksMax. Beyond a cap the answer is 503 with Retry-After, at once."""

    connections: int = 512  # open connections in all
    client_connections: int = 32  # from one address (a browser opens ~6; a field NAT a few browsers)
    streams: int = 128  # event streams (/api/events) in all
    client_streams: int = 4  # from one address (one per open tab)
    idle_s: float = 30.0  # waiting for a request's first line (a kept-alive connection too), or for any byte
    header_s: float = 10.0  # a request's headers and body, from its first line
    retry_after_s: int = 5  # what a refused client is told to wait
    # This machine's own clients (the station's screen, its operator) may go this far past the
    # totals: the field network filling every slot does not lock the station out of itself.
    local_reserve: int = 16


class Slots:
    """Counts of what each client holds, of each kind, under one lock."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.lock = threading.Lock()
        self.total = {"connection": 0, "stream": 0}
        self.per_client: dict[tuple[str, str], int] = {}

    def take(self, kind: str, client: str, past_total: bool = False) -> bool:
        """A slot of `kind` for `client`, within its own cap and (unless `past_total`: one made
        room for, whose slot is on its way back) the total."""
        cap, client_cap = ((self.limits.connections, self.limits.client_connections) if kind == "connection"
                           else (self.limits.streams, self.limits.client_streams))
        if is_loopback(client):
            cap += self.limits.local_reserve
        with self.lock:
            held = self.per_client.get((kind, client), 0)
            if (self.total[kind] >= cap and not past_total) or held >= client_cap:
                return False
            self.total[kind] += 1
            self.per_client[(kind, client)] = held + 1
            return True

    def give(self, kind: str, client: str) -> None:
        with self.lock:
            self.total[kind] -= 1
            held = self.per_client.pop((kind, client)) - 1
            if held:
                self.per_client[(kind, client)] = held


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

    def close_one(self, newcomer: str) -> bool:
        """Close the oldest idle connection of the address holding the most idle ones (never the
        newcomer's own); False when none is idle. Its thread ends and gives its slot back."""
        with self.lock:
            counts: dict[str, int] = {}
            for _, client in self.waiting.values():
                counts[client] = counts.get(client, 0) + 1
            counts.pop(newcomer, None)
            if not counts:
                return False
            most = max(counts.values())
            sock = min((s for s, (_, c) in self.waiting.items() if counts.get(c) == most),
                       key=lambda s: self.waiting[s][0])
            del self.waiting[sock]
            self.closed += 1
        try:
            sock.shutdown(socket.SHUT_RDWR)  # its handler's read ends at once; the thread closes it
        except OSError:
            pass  # its client closed it first: the slot comes back all the same when its thread ends
        return True


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
