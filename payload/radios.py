"""The radio the configuration names (`radio.kind`), opened on the parts the hardware gives:
its SPI bus and pin factory (payload/hardware.py) and the payload's clock.

One entry per kind in `RADIOS`; `config.RadioSection`'s Literal lists the same names.
"""

from __future__ import annotations

from collections.abc import Callable

from .config import parse_hostport
from .lora_sx126x import Sx126xRadio
from .lora_sx127x import SpiDevice, Sx127xRadio
from .radio import KissRadio, LoRaUartRadio, Radio, RadioError, UdpRadio

SPI_HZ = 5_000_000  # the SX127x takes up to 10 MHz, the SX126x 16; 5 is safe on long jumper wires
SPI_RADIOS = ("sx127x", "sx126x")  # the kinds that are a chip on the SPI bus (the bench simulates the chip)


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
        raise RadioError(f"cannot open /dev/spidev{bus}.{device}: {e} (enable SPI: dtparam=spi=on, then reboot)") from e
    spi.max_speed_hz = SPI_HZ
    spi.mode = 0
    return spi


def _udp(cfg, clock, spi_opener, pin_factory) -> UdpRadio:
    return UdpRadio(*parse_hostport(cfg.udp), clock=clock)


def _sx127x(cfg, clock, spi_opener, pin_factory) -> Sx127xRadio:
    spi = (spi_opener or open_spidev)(cfg.spi_bus, cfg.spi_device)
    return Sx127xRadio(spi, cfg.lora_settings(), clock=clock, reset_pin=cfg.reset_pin, dio0_pin=cfg.dio0_pin,
                       pin_factory=pin_factory, tx_power_dbm=cfg.tx_power_dbm, pa_boost=cfg.pa_boost,
                       name=f"SX127x on SPI {cfg.spi_bus}.{cfg.spi_device}")


def _sx126x(cfg, clock, spi_opener, pin_factory) -> Sx126xRadio:
    spi = (spi_opener or open_spidev)(cfg.spi_bus, cfg.spi_device)
    return Sx126xRadio(spi, cfg.lora_settings(), clock=clock, busy_pin=cfg.busy_pin, reset_pin=cfg.reset_pin,
                       dio1_pin=cfg.dio1_pin, pin_factory=pin_factory, tx_power_dbm=cfg.tx_power_dbm,
                       tcxo_voltage=cfg.tcxo_voltage, dio2_rf_switch=cfg.dio2_rf_switch,
                       name=f"SX126x on SPI {cfg.spi_bus}.{cfg.spi_device}")


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
