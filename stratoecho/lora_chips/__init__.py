"""LoRa chips on a Raspberry Pi's SPI bus, driven the same way by the payload (its radio) and the
ground station (a LoRa HAT on the ground Pi).

* `sx127x` — Semtech SX1276/77/78 (HopeRF RFM95W/96W/98W), a register page;
* `sx126x` — Semtech SX1262/68, commands and a BUSY line;
* `chip` — what both share: the SPI device protocol, `RadioError`, `PacketSignal`;
* `profiles` — the registry: each chip's profile (driver, options, powers) by name, which the
  payload, the ground and the bench look chips up in;
* `spi` — opening one: /dev/spidevB.D through spidev, and the chip's driver on it.

spidev and gpiozero are imported only when a chip is opened on a Pi: the tests and the bench
hand the drivers a simulated chip's SPI device (sim/chips/sx127x.py, sim/chips/sx126x.py) and
gpiozero's MockFactory pins.
"""

# Each chip's module registers its profile when imported (profiles.py): importing the package
# makes every chip known to whoever looks one up. In this order, the order lists and help name them.
# isort: off
from . import sx127x  # noqa: E402, F401
from . import sx126x  # noqa: E402, F401
# isort: on
