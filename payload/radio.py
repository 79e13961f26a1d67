"""Radios behind one port: `send(frame)` puts one frame on the air.

`UdpRadio` is the bench radio (and a real link to a ground station over IP);
serial LoRa modules and KISS TNCs join with the link issue, as classes beside it.
"""

from __future__ import annotations

import socket
from typing import Protocol


class Radio(Protocol):
    def send(self, frame: bytes) -> None: ...

    def close(self) -> None: ...


class UdpRadio:
    """One datagram per frame to HOST:PORT."""

    def __init__(self, host: str, port: int):
        self.address = (host, port)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)

    def send(self, frame: bytes) -> None:
        try:
            self.sock.sendto(frame, self.address)
        except OSError:
            # Nobody listening (ICMP refused) is what a radio with no receiver in range
            # looks like: the frame is on the air all the same.
            pass

    def close(self) -> None:
        self.sock.close()
