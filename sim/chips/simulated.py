"""The bench's LoRa chips on the payload's SPI bus: a simulated chip for each chip the payload
can fly (stratoecho/lora_chips/profiles.py), keyed to the bench's air.

Each simulator module registers itself (`spi_bus.register_simulator`) when imported; this
module imports them all, as stratoecho.lora_chips imports the drivers, so the bench looks a
chip up by the name in `radio.kind` and never spells one out.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from stratoecho.config import parse_hostport

# isort: off
from . import sx127x  # noqa: F401  (registers its simulator)
from . import sx126x  # noqa: F401
# isort: on
from .air import wrap
from .spi_bus import FakeSpiDev, SpiSocket, chip_simulator


def simulated_spi(radio, air: str | None, clock, pins) -> tuple[Callable[[int, int], FakeSpiDev], SpiSocket]:
    """(`open_spi(bus, device)`, the chip's `SpiSocket`): the SPI bus with the simulated chip
    `radio.kind` names on it, built as `radio` (the payload's `[radio]`) says: what the chip keys
    goes to `air` (the bench channel) as a datagram, what comes back reaches its antenna, and it
    hears it only while the driver has it listening. The chip drives the configured mock `pins`.

    Each packet goes out wrapped with the settings it was keyed with (sim/chips/air.py): the
    driver may reprogram the chip between packets, and the channel prices each with its own."""
    if not air:
        raise ValueError("a simulated LoRa chip needs the bench's air: run with --udp HOST:PORT (sim fly passes it)")
    on_the_bench = chip_simulator(radio.kind)
    host, port = parse_hostport(air)
    sock = clock.udp_socket(socket.AF_INET6 if ":" in host else socket.AF_INET)

    def transmit(packet: bytes, settings) -> None:
        try:
            sock.sendto(wrap(packet, settings), (host, port))
        except OSError:
            pass  # nobody listening: the packet was on the air all the same

    def listen() -> list[bytes]:
        # Datagrams as they came: the chip unwraps each (bare or with its sender's settings).
        heard = []
        sock.setblocking(False)  # what has arrived, without waiting (the lockstep's clock delivers it)
        while True:
            try:
                heard.append(sock.recvfrom(65535)[0])
            except (BlockingIOError, OSError):
                return heard

    socket_: SpiSocket = on_the_bench(radio, now=clock.elapsed_s, transmit=transmit, listen=listen, pins=pins)

    def open_spi(bus: int, device: int) -> FakeSpiDev:
        if (bus, device) != (radio.spi_bus, radio.spi_device):
            raise OSError(2, f"no SPI device {bus}.{device} on the bench")
        return FakeSpiDev(socket_)

    return open_spi, socket_
