"""What the SX127x and SX126x drivers share: the SPI device they talk through, the error they
raise, and the signal a packet was heard with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class RadioError(Exception):
    """A radio that cannot be opened or cannot send; the message names the part and why.

    The payload's radios raise it too (`payload.radio.RadioError` is this class)."""


class SpiDevice(Protocol):
    """spidev.SpiDev's surface the drivers use (the bench's simulated chips offer the same)."""

    def xfer2(self, data: list[int]) -> list[int]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class PacketSignal:
    rssi_dbm: float  # whole dB from an SX127x, half dB from an SX126x
    snr_db: float
