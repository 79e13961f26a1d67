"""The device registry: which sensor sits on which bus, address or port, from the TOML config,
and `HardwareSensors`, which turns their readings into the `Readings` every producer sees.

    [devices.gps]       port = "/dev/serial0", baud = 9600
    [devices.bme280]    bus = 1, address = 0x76
    [devices.ina219]    bus = 1, address = 0x40, shunt_ohms = 0.1, max_amps = 3.2

A device that is missing or failing never stops the payload: its driver answers with a
status ("absent", "silent", "i2c_error", ...) and retries with its own back-off, and
`HardwareSensors` keeps the last good value of what it measured (a balloon's telemetry
with a stale temperature beats no telemetry), reports the status of each device in
`Readings.status` (the health record sends it down) and logs each status change once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import datetime, timezone

import structlog

from .sensors import Readings

log = structlog.get_logger(__name__)


class LazyBus:
    """An I2C bus opened at first use: a Pi without I2C enabled (no /dev/i2c-1) gives the
    drivers an OSError they treat as an absent chip, retried with back-off, instead of a
    payload that cannot start."""

    def __init__(self, number: int, opener: Callable[[int], object] | None = None):
        self.number, self._opener, self._bus = number, opener, None

    def _get(self):
        if self._bus is None:
            opener = self._opener
            if opener is None:
                from smbus2 import SMBus  # the Pi's I2C; imported where used

                opener = SMBus
            self._bus = opener(self.number)  # OSError when the bus does not exist
        return self._bus

    def __getattr__(self, name):
        return getattr(self._get(), name)


class Devices:
    """The drivers the configuration names, built but not yet talking (each opens on first read)."""

    def __init__(self, cfg, *, bus_opener: Callable[[int], object] | None = None, clock=time.monotonic):
        from .gps import GpsReceiver
        from .i2c_sensors import Bme280, Ina219

        buses: dict[int, LazyBus] = {}

        def bus(n: int) -> LazyBus:
            return buses.setdefault(n, LazyBus(n, bus_opener))

        self.gps = GpsReceiver(cfg.gps.port, cfg.gps.baud, clock=clock) if cfg.gps else None
        self.bme280 = Bme280(bus(cfg.bme280.bus), cfg.bme280.address, clock=clock) if cfg.bme280 else None
        self.ina219 = (Ina219(bus(cfg.ina219.bus), cfg.ina219.address, shunt_ohms=cfg.ina219.shunt_ohms,
                              max_amps=cfg.ina219.max_amps, clock=clock) if cfg.ina219 else None)

    def close(self) -> None:
        if self.gps is not None:
            self.gps.close()


class HardwareSensors:
    """`Sensors` over the real drivers: the GPS for time and position, the BME280 for
    temperature and pressure, the INA219 for the battery."""

    def __init__(self, devices: Devices, gps_timeout_s: float = 0.5):
        self.devices = devices
        self.gps_timeout_s = gps_timeout_s
        self._last = {"lat": 0.0, "lon": 0.0, "alt_m": 0.0, "temp_c": math.nan, "pressure_hpa": math.nan,
                      "batt_mv": 0}
        self._status: dict[str, str] = {}

    def _note(self, device: str, status: str, error: str = "") -> None:
        if self._status.get(device) != status:
            (log.info if status == "ok" else log.warning)("device_status", device=device, status=status, error=error)
        self._status[device] = status

    def read(self) -> Readings:
        d, last = self.devices, self._last
        when, sats = datetime.now(timezone.utc), 0
        if d.gps is not None:
            g = d.gps.read(self.gps_timeout_s)
            self._note("gps", g.status)
            if g.fix is not None and g.fix.valid:
                last.update(lat=g.fix.lat, lon=g.fix.lon, alt_m=g.fix.alt_m)
                sats = g.fix.sats
                if g.status == "ok" and g.fix.utc is not None:
                    when = g.fix.utc
        if d.bme280 is not None:
            b = d.bme280.read()
            self._note("bme280", b.status, b.error)
            if b.status == "ok":
                last.update(temp_c=b.temperature_c, pressure_hpa=b.pressure_hpa)
        if d.ina219 is not None:
            p = d.ina219.read()
            self._note("ina219", p.status, p.error)
            if p.status == "ok":
                last.update(batt_mv=int(round(p.bus_v * 1000)))
        return Readings(time=when, lat=last["lat"], lon=last["lon"], alt_m=last["alt_m"], sats=sats,
                        temp_c=last["temp_c"], pressure_hpa=last["pressure_hpa"], batt_mv=last["batt_mv"],
                        phase="unknown", status=dict(self._status))

    def close(self) -> None:
        self.devices.close()
