"""spidev.SpiDev's surface over a simulated chip: what the drivers open on the bench; and the
bench's simulators by the chip they are (`SIMULATORS`), one for each LoRa chip registered in
stratoecho/lora_chips/profiles.py. Each simulator module registers its own when imported
(sim/chips/simulated.py imports them all).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class SpiChipSim(Protocol):
    def transfer(self, data: list[int]) -> list[int]: ...


class FakeSpiDev:
    """One NSS line to a simulated chip (one of `SIMULATORS`)."""

    def __init__(self, chip: SpiChipSim):
        self.chip = chip
        self.max_speed_hz = 0
        self.mode = 0
        self.closed = False

    def xfer2(self, data: list[int]) -> list[int]:
        if self.closed:
            raise OSError(9, "Bad file descriptor")  # what spidev raises after close()
        return self.chip.transfer(list(data))

    def close(self) -> None:
        self.closed = True


class SpiSocket:
    """The chip's place on the bus, for the bench's `radio:unplug` fault: unplugged, every byte
    clocked in reads 0x00 (MISO pulled low, nothing driving it) and writes go nowhere, as with a
    module whose connector has shaken loose or whose supply has dropped."""

    def __init__(self, chip: SpiChipSim):
        self.chip = chip
        self.unplugged = False

    def transfer(self, data: list[int]) -> list[int]:
        return [0] * len(data) if self.unplugged else self.chip.transfer(data)


# A chip's simulator on the bench: `on_the_bench(radio, now=, transmit=, listen=, pins=)` builds the
# chip the payload's `[radio]` section (`radio`) describes, its lines on the bench's mock `pins`,
# keying `transmit(packet, settings)` and hearing what `listen()` gives, on the clock `now`, and
# gives the socket it sits in.
SIMULATORS: dict[str, Callable[..., SpiSocket]] = {}


def register_simulator(chip: str, on_the_bench: Callable[..., SpiSocket]) -> None:
    """The bench simulates the chip registered as `chip` (its profile's name) with `on_the_bench`."""
    SIMULATORS[chip] = on_the_bench


def chip_simulator(chip: str) -> Callable[..., SpiSocket]:
    """The simulator of `chip`; a ValueError naming the chips the bench simulates if it has none."""
    try:
        return SIMULATORS[chip]
    except KeyError:
        raise ValueError(f"the bench has no simulated {chip!r} chip: it simulates {', '.join(sorted(SIMULATORS))}") from None
