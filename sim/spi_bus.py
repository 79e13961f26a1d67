"""spidev.SpiDev's surface over a simulated chip: what the drivers open on the bench."""

from __future__ import annotations

from typing import Protocol


class SpiChipSim(Protocol):
    def transfer(self, data: list[int]) -> list[int]: ...


class FakeSpiDev:
    """One NSS line to a simulated chip (sim/sx127x_sim.py, sim/sx126x_sim.py)."""

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
