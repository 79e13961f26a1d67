"""UDP: one datagram is one frame (`UdpSource`), and the shared-port socket the sources
that hear broadcasts bind (`bind_shared_udp`: the LoRa gateway's, Horus UDP)."""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import Iterator

from stratoecho import wire
from stratoecho.clock import Clock

from .base import POLL_S, Received, SourceError

# Nothing on the air is longer than a LoRa payload: a longer datagram is no frame, and storing
# each whole let a sender fill the disk (issue 41: 664 MB in 20 s of 64 KB datagrams).
MAX_DATAGRAM = wire.DEFAULT_MTU


def receive_datagram(sock: socket.socket, what: str) -> tuple[bytes, tuple] | None:
    """One datagram and its sender from a socket with a timeout (POLL_S); None when none came
    in time; SourceError naming `what` (the port, the address) when receiving fails."""
    try:
        return sock.recvfrom(65535)
    except (TimeoutError, BlockingIOError):
        return None
    except OSError as e:
        raise SourceError(f"{what}: receive failed: {e}") from e


def bind_shared_udp(host: str, port: int, what: str) -> socket.socket:
    """A UDP socket on HOST:PORT that other programs on this machine may bind as well
    (SO_REUSEADDR, and SO_REUSEPORT where the system has it, as the Horus tools set them):
    a broadcast reaches every socket bound to its port, so a chase-car map and this
    listener both hear it. A datagram sent to one address (not broadcast) reaches one of them.
    Bound to all interfaces (host "" or 0.0.0.0) to hear broadcasts from the network."""
    try:
        family, _, _, _, sockaddr = socket.getaddrinfo(host or "0.0.0.0", port, type=socket.SOCK_DGRAM)[0]
    except socket.gaierror as e:
        raise SourceError(f"cannot resolve {what} address {host}:{port}: {e.strerror}") from e
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(sockaddr)
    except OSError as e:
        sock.close()
        raise SourceError(f"cannot bind {what} on UDP {host or '0.0.0.0'}:{port}: {e.strerror}") from e
    sock.settimeout(POLL_S)
    return sock


class UdpSource:
    """One UDP datagram is one frame. Port 0 binds a free port; `address` tells which. A
    datagram empty or longer than MAX_DATAGRAM is counted in `errors` and dropped unread.

    With `clock` (a `stratoecho.clock` clock; the bench's lockstep under `sim fly`) the socket
    is the clock's and waiting for a frame is a wait on it, ended at once by `stop`."""

    def __init__(self, host: str, port: int, clock: Clock | None = None, stop=None) -> None:
        self.clock, self.stop = clock or Clock(), stop  # real time, or the bench's lockstep under `sim fly`
        self.errors: Counter = Counter()
        try:
            family, _, _, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
        except socket.gaierror as e:
            raise SourceError(f"cannot resolve UDP address {host}:{port}: {e.strerror}") from e
        self._sock = self.clock.udp_socket(family)
        try:
            self._sock.bind(sockaddr)
        except OSError as e:
            self._sock.close()
            raise SourceError(f"cannot bind UDP {host}:{port}: {e.strerror}") from e
        self._sock.settimeout(POLL_S)
        bound = self._sock.getsockname()
        self.address: tuple[str, int] = (bound[0], bound[1])

    def __iter__(self) -> Iterator[Received | None]:
        while True:
            if not self.clock.wait_readable([self._sock], self.clock.receive_timeout_s(POLL_S), self.stop):
                yield None
                continue
            got = receive_datagram(self._sock, f"UDP {self.address[0]}:{self.address[1]}")
            if got is None:
                yield None
                continue
            data, peer = got
            if not 0 < len(data) <= MAX_DATAGRAM:
                self.errors["datagram not a frame's length"] += 1  # counted in the summary, never stored
                yield None
                continue
            yield Received(data, f"udp {peer[0]}:{peer[1]}", peer)

    def send(self, frame: bytes, addr: tuple) -> None:
        """Send `frame` to `addr` from the listening socket itself: a payload that answers
        through NAT or a channel relay hears replies only from the port it sends to."""
        self._sock.sendto(frame, addr)

    def close(self) -> None:
        self._sock.close()
