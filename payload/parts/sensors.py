"""What the payload senses, behind one narrow port.

`Readings` is what every producer downstream sees. Sources: `devices.HardwareSensors`
reads the real GPS, BME280 and INA219 drivers (on the bench, the same drivers over the
bench's simulated parts) and adds each device's status; the bench's `sim.world.flight.SimSensors`
reads its world directly, for unit tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class Readings:
    time: datetime  # UTC, from the GPS (or the flight clock on the bench)
    lat: float
    lon: float
    alt_m: float
    sats: int
    temp_c: float
    pressure_hpa: float
    batt_mv: int
    phase: str  # pre-launch, ascent, float, descent, landed; "unknown" until the daemon's detector knows
    status: dict[str, str] = field(default_factory=dict)  # device -> "ok", "absent", "silent", ... (hardware)
    box_temp_c: float = math.nan  # the battery's temperature inside the box (second BME280)
    batt_ma: float = math.nan  # battery current (INA219)
    fix_valid: bool = True  # a GPS fix this reading (False: the position is the last one known)
    speed_mps: float = math.nan  # over the ground, the GPS's (NaN: not known this reading)


def fresh(r: Readings) -> Readings:
    """`r` without the values its devices did not answer this time. The drivers keep a sensor's
    last good value (the governor and the heater judge its age by the device's status); on air,
    in a health record or in a prompt a stale value would read as a measurement, so it goes as
    no reading: NaN for the BME280's temperature and pressure, 0 mV for the INA219's battery."""
    def answered(device: str) -> bool:
        return r.status.get(device, "ok") == "ok"

    return replace(r, temp_c=r.temp_c if answered("bme280") else math.nan,
                   pressure_hpa=r.pressure_hpa if answered("bme280") else math.nan,
                   batt_mv=r.batt_mv if answered("ina219") else 0)


class Sensors(Protocol):
    """What the daemon reads the world through (payload/parts/devices.py on a Pi)."""

    battery_temp_fitted: bool  # a sensor on the battery: the mode ladder leaves out what is not fitted

    def read(self) -> Readings: ...

    def restart(self) -> None:
        """Flight time starts now (a bench launch): forget what was read before it."""
