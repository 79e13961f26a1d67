"""A connection while it waits on its client (docs/ground.md "Limits"): `RequestReader` reads a
request against its deadlines and counts it slow when its bytes do not all come at once;
`Waiting` knows which connections wait (for a request's first byte, or for the rest of a slow
one), so that a newcomer finding every slot taken can have one of them closed instead of a 503.

A connection's states, one request after another::

    IDLE ──first byte──► READING ──needs another read──► SLOW (a slow slot, or closed at once)
      ▲                     │                              │
      └─── next request ── BUSY (read whole: answering) ◄──┘

IDLE and SLOW connections may be closed for room; READING and BUSY ones never are, nor any of
the operator's (one that carried a live session's cookie, or from an address one was used from)
or the station's own."""

from __future__ import annotations

import io
import math
import socket
import threading
import time
from collections.abc import Callable

from .limits import Limits, Slots, network_of, oldest_of_biggest

IDLE, READING, SLOW, BUSY = "idle", "reading", "slow", "busy"


class SlowRequest(TimeoutError):
    """A slow request with no slow slot left to it (`full`: what is full, as Slots.claim says):
    its connection is closed, as one that timed out is."""

    def __init__(self, full: str):
        self.full = full
        super().__init__(f"too many slow requests ({full})")


class Waiting:
    """The connections waiting on their clients (IDLE: for a request's first byte, a new
    connection's or a kept-alive one's; SLOW: for the rest of a slow request). Idle ones held by
    a few addresses once shut everyone else out (issue 41), slow ones from one network's
    addresses too (issue 50): a newcomer may have one closed for it. `trusted(client)`: the
    operator's addresses and the station's, whose connections are never closed for room."""

    def __init__(self, trusted: Callable[[str], bool] = lambda client: False) -> None:
        self.trusted = trusted
        self.lock = threading.Lock()
        self.waiting: dict[socket.socket, tuple[float, str, str, bool]] = {}  # -> (since, client, state, kept)
        self.closed = 0  # closed to make room

    def put(self, sock: socket.socket, client: str, state: str, kept: bool = False) -> None:
        with self.lock:
            self.waiting[sock] = (time.monotonic(), client, state, kept)

    def remove(self, sock: socket.socket) -> None:
        with self.lock:
            self.waiting.pop(sock, None)

    def close_one(self, newcomer: str, network: str | None = None) -> bool:
        """Close a waiting connection of another address (in `network` alone when that is what is
        full): a slow one if any, else an idle one; of those, the oldest of the address holding
        the most in the network holding the most. Never a kept one, nor the operator's or the
        station's. False when there is none. Its thread ends and gives its slot back."""
        with self.lock:
            found = [(since, client, sock, state) for sock, (since, client, state, kept) in self.waiting.items()
                     if not kept and client != newcomer and network in (None, network_of(client))]
        trusted = {client for client in {f[1] for f in found} if self.trusted(client)}  # outside the lock
        found = [f for f in found if f[1] not in trusted]
        slow = [(since, client, sock) for since, client, sock, state in found if state == SLOW]
        idle = [(since, client, sock) for since, client, sock, state in found if state == IDLE]
        with self.lock:
            for sock in (oldest_of_biggest(c) for c in (slow, idle) if c):
                if sock in self.waiting:  # not busy since it was looked at
                    del self.waiting[sock]
                    self.closed += 1
                    break
            else:
                return False
        try:
            sock.shutdown(socket.SHUT_RDWR)  # its handler's read ends at once; the thread closes it
        except OSError:
            pass  # its client closed it first: the slot comes back all the same when its thread ends
        return True


class RequestReader(io.RawIOBase):
    """The request side of one connection. A request's first byte must come within `idle_s` (of
    the connection's start, or of the last answer); the rest of it, head and body, within
    `head_s` of that byte: one deadline for the whole request, however its bytes trickle. A
    request whose first read does not hold all of it is slow: it takes a slow slot ("slow" in
    `slots`) until it has been read, or raises SlowRequest (the connection is closed) when none
    is left to it. `operator(client)`: whether the client's address is the operator's (past its
    network's caps). `kept`, set by the handler when a request carried the operator's session:
    never closed for room."""

    def __init__(self, sock: socket.socket, client: str, limits: Limits, slots: Slots, waiting: Waiting,
                 operator: Callable[[str], bool]):
        super().__init__()
        self.sock, self.client, self.limits = sock, client, limits
        self.slots, self.waiting, self.operator = slots, waiting, operator
        self.state = BUSY
        self.kept = False
        self.deadline = math.inf

    def readable(self) -> bool:
        return True

    def wait(self) -> None:
        """A request may come: its first byte within idle_s; closable for room until it does."""
        self.done()
        self.state = IDLE
        self.deadline = time.monotonic() + self.limits.idle_s
        self.waiting.put(self.sock, self.client, IDLE, self.kept)

    def started(self) -> None:
        """A request's bytes came (read from the socket, or left in the buffer by the last one):
        the rest of it within head_s."""
        if self.state == IDLE:
            self.waiting.remove(self.sock)
            self.state = READING
            self.deadline = time.monotonic() + self.limits.head_s

    def done(self) -> None:
        """The request is read (or the connection ends): its slow slot back, never closed for room."""
        if self.state == SLOW:
            self.slots.give("slow", self.client)
        if self.state in (IDLE, SLOW):
            self.waiting.remove(self.sock)
        self.state = BUSY

    def readinto(self, buffer) -> int:
        if self.state == READING:  # the first read did not hold the whole request
            full = self.slots.claim("slow", self.client, operator=self.operator(self.client))
            if full is not None:
                raise SlowRequest(full)
            self.state = SLOW
            self.waiting.put(self.sock, self.client, SLOW, self.kept)
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request took too long")
        self.sock.settimeout(min(self.limits.idle_s, left))
        try:
            n = self.sock.recv_into(buffer)
        finally:
            self.sock.settimeout(self.limits.idle_s)  # what writes wait at most
        if n:
            self.started()
        elif self.state != IDLE:  # closed mid-request (by its client, or for room): nothing to answer
            raise ConnectionAbortedError("the connection ended inside a request")
        return n
