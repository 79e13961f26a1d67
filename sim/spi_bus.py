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
