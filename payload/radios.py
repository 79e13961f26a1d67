"""The radio the configuration names (`radio.kind`), opened on the parts the hardware gives:
its SPI bus and pin factory (payload/hardware.py) and the payload's clock.

One entry per kind in `RADIOS`; `config.RadioSection`'s Literal lists the same names.
"""

from __future__ import annotations

from collections.abc import Callable

from stratoecho.lora_chips.chip import SpiDevice
from stratoecho.lora_chips.spi import CHIPS, open_chip

from .config import parse_hostport
from .radio import KissRadio, LoRaUartRadio, Radio, UdpRadio

SPI_RADIOS = tuple(CHIPS)  # the kinds that are a chip on the SPI bus (the bench simulates the chip)


def _udp(cfg, clock, spi_opener, pin_factory) -> UdpRadio:
    return UdpRadio(*parse_hostport(cfg.udp), clock=clock)


def _sx127x(cfg, clock, spi_opener, pin_factory) -> Radio:
    return open_chip("sx127x", cfg.spi_bus, cfg.spi_device, cfg.lora_settings(), spi_opener=spi_opener, clock=clock,
                     reset_pin=cfg.reset_pin, dio0_pin=cfg.dio0_pin, pin_factory=pin_factory,
                     tx_power_dbm=cfg.tx_power_dbm, pa_boost=cfg.pa_boost)


def _sx126x(cfg, clock, spi_opener, pin_factory) -> Radio:
    return open_chip("sx126x", cfg.spi_bus, cfg.spi_device, cfg.lora_settings(), spi_opener=spi_opener, clock=clock,
                     busy_pin=cfg.busy_pin, reset_pin=cfg.reset_pin, dio1_pin=cfg.dio1_pin, pin_factory=pin_factory,
                     tx_power_dbm=cfg.tx_power_dbm, tcxo_voltage=cfg.tcxo_voltage, dio2_rf_switch=cfg.dio2_rf_switch)


RADIOS: dict[str, Callable[..., Radio]] = {
    "udp": _udp,
    "kiss": lambda cfg, *_: KissRadio.from_config(cfg),
    "lora_uart": lambda cfg, *_: LoRaUartRadio.from_config(cfg),
    "sx127x": _sx127x,
    "sx126x": _sx126x,
}


def make_radio(cfg, clock=None, spi_opener: Callable[[int, int], SpiDevice] | None = None,
               pin_factory=None) -> Radio:
    """The radio `cfg` (a `RadioSection`) names, opened; `RadioError` if it cannot be. `clock`
    (the daemon's) times its waits; `spi_opener(bus, device)` and `pin_factory` are the
    hardware's (None: the Pi's own, spidev and gpiozero's default)."""
    return RADIOS[cfg.kind](cfg, clock, spi_opener, pin_factory)
