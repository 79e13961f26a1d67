"""What the payload senses, behind one narrow port.

`Readings` is what every producer downstream sees. Sources: `devices.HardwareSensors`
reads the real GPS and the registered sensors' drivers (the BME280s and the INA219, and any a
maker adds: payload/parts/device_profiles.py; on the bench, the same drivers over the bench's
simulated parts) and adds each device's status; the bench's `sim.world.flight.SimSensors`
reads its world directly, for unit tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Protocol

from .device_profiles import known_device


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
    # What sensors with no field above measured, by the name their profile gives it ("co2_ppm": 412.0).
    extra: dict[str, float] = field(default_factory=dict)


# The fields above a sensor's value fills (its profile's `gives`); any other name it gives goes in `extra`.
SENSOR_FIELDS = ("temp_c", "pressure_hpa", "batt_mv", "box_temp_c", "batt_ma")
_INTEGER = {f.name: f.type == "int" for f in fields(Readings)}


def no_reading(name: str) -> float | int:
    """What a value reads as when its sensor gave none: NaN, or 0 for an integer (0 mV: no battery reading)."""
    return 0 if _INTEGER.get(name, False) else math.nan


def fresh(r: Readings) -> Readings:
    """`r` without the values its sensors did not answer this time. The drivers keep a sensor's
    last good value where its profile says so (payload/parts/device_profiles.py `kept`: the BME280's
    temperature and pressure, the INA219's volts), as the governor and the heater judge its age by
    the device's status; on air, in a health record or in a prompt a stale value would read as a
    measurement, so it goes as no reading: NaN, 0 mV for the battery, left out of `extra`."""
    stale: set[str] = set()
    for device, status in r.status.items():
        profile = known_device(device)
        if status != "ok" and profile is not None:
            stale.update(profile.kept)
    if not stale:
        return r
    extra = {name: value for name, value in r.extra.items() if name not in stale}
    return replace(r, extra=extra, **{name: no_reading(name) for name in stale if name in SENSOR_FIELDS})


class Sensors(Protocol):
    """What the daemon reads the world through (payload/parts/devices.py on a Pi)."""

    battery_temp_fitted: bool  # a sensor on the battery: the mode ladder leaves out what is not fitted

    def read(self) -> Readings: ...

    def restart(self) -> None:
        """Flight time starts now (a bench launch): forget what was read before it."""
