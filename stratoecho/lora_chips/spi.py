"""Opening a LoRa chip on the Pi's SPI bus: /dev/spidevBUS.DEVICE through spidev, then the
chip's driver on it (which opens its RESET, DIO and BUSY lines through gpiozero).

The payload (`payload.parts.radios`, from its `[radio]` section) and the ground station
(`listen --lora`) both open their chip here. spidev exists only on Linux, and is needed only
there: `spi_opener(bus, device)` replaces it (the bench's and the tests' simulated chips).
"""

from __future__ import annotations

import errno
from collections.abc import Callable

from stratoecho.lora import LoRaSettings

from .chip import RadioError, SpiChip, SpiDevice
from .profiles import chip_profile

SPI_HZ = 5_000_000  # the chips take 10 MHz or more; 5 is safe on long jumper wires


def open_spidev(bus: int, device: int) -> SpiDevice:
    """/dev/spidevBUS.DEVICE through spidev (a Pi: `dtparam=spi=on` in config.txt)."""
    try:
        import spidev  # lazily: only a Pi with an SPI radio needs it (pip install spidev)
    except ImportError as e:
        raise RadioError("an SPI radio needs the spidev package (pip install spidev, on the Pi)") from e
    spi = spidev.SpiDev()
    try:
        spi.open(bus, device)
    except OSError as e:
        hint = ("the user must be in the spi group" if e.errno == errno.EACCES
                else "enable SPI: dtparam=spi=on, then reboot")
        raise RadioError(f"cannot open /dev/spidev{bus}.{device}: {e} ({hint})") from e
    spi.max_speed_hz = SPI_HZ
    spi.mode = 0
    return spi


def open_chip(kind: str, spi_bus: int, spi_device: int, settings: LoRaSettings, *,
              spi_opener: Callable[[int, int], SpiDevice] | None = None, name: str | None = None,
              **driver_options) -> SpiChip:
    """The `kind` chip (a registered profile's name, profiles.py) on SPI `spi_bus`.`spi_device`,
    programmed with `settings`; `driver_options` are its driver's (pins, pin_factory, clock,
    power...). A `RadioError` names the device and what failed (no spidev, no such device, no chip
    answering, a pin that cannot be opened); nothing is left open then. ValueError for a `kind`
    no chip is registered as."""
    profile = chip_profile(kind)
    spi = (spi_opener or open_spidev)(spi_bus, spi_device)
    return profile.driver(spi, settings, name=name or f"{profile.label} on SPI {spi_bus}.{spi_device}", **driver_options)
