"""What the payload senses, behind one narrow port.

`Readings` is what every producer downstream sees. Sources: `SimSensors` reads the
bench world (`sim.world`); `devices.HardwareSensors` reads the real GPS, BME280 and
INA219 drivers and adds each device's status.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Protocol

from .clock import Clock


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
    def read(self) -> Readings: ...


class SimSensors:
    """The bench world's state at the current flight time, read directly — for unit tests of
    the daemon and the link bench; `payload run --sim` reads the world through the real
    drivers instead (sim/bench_hardware.py)."""

    def __init__(self, clock: Clock, seed: int = 1):
        from sim.world import Flight, FlightPlan  # bench-only dependency, imported where used

        self.clock = clock
        self.flight = Flight(FlightPlan(seed=seed))

    def read(self) -> Readings:
        s = self.flight.state_at(self.clock.elapsed_s())
        return Readings(
            time=self.clock.now(), lat=s.lat, lon=s.lon, alt_m=s.alt_m, sats=s.sats,
            temp_c=s.temp_c, pressure_hpa=s.pressure_hpa, batt_mv=s.batt_mv, phase=s.phase,
            box_temp_c=20.0,  # no heat model behind this stand-in: a box kept comfortable
        )
