"""Where the payload's parts come from: the Pi itself, or a rig that stands in for it.

As with gpiozero's pin factories, the drivers are always the flight code's own; what they
open — the I2C buses, the GPS's serial port, the GPIO pins, the camera, sysfs and
vcgencmd, the card, the clock — comes from one `Hardware`. `open_pi` opens the Pi's
(`sensors = "hardware"`). Any other name is a `Rig` found among the ``stratoecho.hardware``
entry points (pyproject.toml): the bench registers ``sim`` (a simulated world behind real
registers, a pseudo-terminal and mock pins), so the flight code never imports it, and
another rig could register its own. A rig brings its own options on `payload run`, its
own settings table (named after it) in the configuration, and opens its `Hardware`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from ..clock import Clock, flight_clock
from ..rigs import PI, load_rig
from .camera import Picamera2Backend
from .devices import Devices, HardwareSensors
from .gps import system_time_from_gps
from .pi_health import PiHealth
from .sensors import Sensors

log = structlog.get_logger(__name__)


@dataclass
class Hardware:
    """The parts a payload opens, and how the flight around them runs."""

    clock: Clock
    sensors: Sensors  # the GPS, BME280s and INA219 through their drivers
    camera_backend: Callable  # what payload.parts.camera.Camera opens (picamera2 on a Pi)
    pin_factory: object | None  # gpiozero's pin factory; None: gpiozero's default (the Pi's GPIO)
    pi_health: PiHealth
    card_usage: Callable | None = None  # shutil.disk_usage of the card; None: the real one
    flight_s: float | None = None  # how long a rig's flight lasts; None: until stopped
    launches: bool = False  # the flight starts when the payload is ready (a bench launch, not a reboot into one)
    camera_min_timeout_s: float = 0.0  # a capture may take at least this (flight seconds)
    open_spi: Callable | None = None  # (bus, device) -> an spidev-like device; None: the Pi's spidev
    seed: int | None = None  # a flight's seed: sampling and questions repeat with it; None: the Pi's own chance
    # (model bytes, prompt bytes, tokens) -> flight seconds a generation takes on the board rehearsed,
    # where the clock cannot time it; None: the generation takes its own time
    price_generation: Callable[[int, int, int], float] | None = None
    flying: Callable[[], None] | None = None  # called once the payload flies (a rig that shares its launch time)
    closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        for close in reversed(self.closers):
            try:
                close()
            except Exception as e:  # noqa: BLE001 - closed already (the daemon closes the heater): go on
                log.debug("close_twice", part=getattr(close, "__qualname__", repr(close)), error=str(e))


def open_pi(cfg, data_dir: Path) -> Hardware:
    """The Raspberry Pi's own parts: smbus2 on /dev/i2c-N, the configured serial ports,
    gpiozero's default pins, picamera2, the real sysfs, the system clock (set from the GPS)."""
    clock = flight_clock(1.0, name="payload")
    sensors = HardwareSensors(Devices(cfg.devices, flight_clock=clock), clock_from_gps=system_time_from_gps)
    return Hardware(clock, sensors, Picamera2Backend, None, PiHealth(data_dir=data_dir), closers=[sensors.close])


def open_hardware(cfg, data_dir: Path, settings: object = None) -> Hardware:
    """The parts `cfg.sensors` names: the Pi's (``hardware``), or a rig's with its `settings`
    (its `configure`'s; None: from its table in `cfg` alone)."""
    if cfg.sensors == PI:
        return open_pi(cfg, Path(data_dir))
    rig = load_rig(cfg.sensors)
    if settings is None:
        settings = rig.configure(cfg, cfg.rigs.get(rig.name, {}), argparse.Namespace(udp=None))
    return rig.open(cfg, settings, Path(data_dir))
