"""The parts the configuration's [devices] names (payload/device_tables.py), opened on their buses
and ports, and `HardwareSensors`, which turns their readings into the `Readings` every producer sees.

Each sensor on I2C is a registered profile (payload/parts/device_profiles.py), so nothing here
names one. The GPS is not one of them: it is the flight's time and position, read on a thread of
its own (`GpsFollower`) and trusted by the age of its fix, which a profile's reading has no place for.

A device that is missing or failing never stops the payload: its driver answers with a
status ("absent", "silent", "i2c_error", ...) and retries with its own back-off, and
`HardwareSensors` keeps the last good value of what its profile says to keep (a balloon's
telemetry with a stale temperature beats no telemetry), reports the status of each device in
`Readings.status` (the health record sends it down) and logs each status change once.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone

import structlog

from .device_profiles import Driver, device_profile
from .gps import GpsReceiver, GpsTiming
from .sensors import SENSOR_FIELDS, Readings, no_reading

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
    """The drivers the configuration names, built but not yet talking (each opens on first read):
    the GPS, and each registered sensor fitted (`sensors`, by name, in the order they are read)."""

    def __init__(self, cfg, *, bus_opener: Callable[[int], object] | None = None, clock=time.monotonic,
                 gps_port: str | None = None, flight_clock=None):
        buses: dict[int, LazyBus] = {}

        def bus(n: int) -> LazyBus:
            return buses.setdefault(n, LazyBus(n, bus_opener))

        self.flight_clock = flight_clock  # waits (the GPS's, its follower's thread) are on this clock
        self.gps = (GpsReceiver(gps_port or cfg.gps.port, cfg.gps.baud,
                                timing=GpsTiming(silent_after_s=cfg.gps.silent_after_s),
                                clock=clock, flight_clock=flight_clock) if cfg.gps else None)
        self.sensors: dict[str, Driver] = {name: device_profile(name).open(table, bus(table.bus), clock)
                                           for name, table in cfg.sensors().items()}

    def close(self) -> None:
        if self.gps is not None:
            self.gps.stop.set()
            self.gps.close()


class GpsFollower:
    """Reads the GPS continuously on its own thread and keeps the latest reading.

    A UART's kernel buffer holds ~4 KB (under 30 s of NMEA) and drops what comes after:
    a GPS read only when a beacon is due would hand over a fix that old. Reading all the
    time, as gpsd does, keeps the position as fresh as the last epoch.
    """

    def __init__(self, gps, poll_s: float = 1.0, flight_clock=None):
        self.gps, self.poll_s = gps, poll_s
        self.flight_clock = flight_clock
        self._lock = threading.Lock()
        self._latest = None
        if flight_clock is not None:
            self._thread = flight_clock.thread(self._run, "gps")
        else:
            self._thread = threading.Thread(target=self._run, name="gps", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self.gps.stop.is_set():
            try:
                reading = self.gps.read(self.poll_s)
            except Exception:  # the driver never raises for device faults; anything else is a bug to log
                log.exception("gps_read_failed")
                self.gps.stop.wait(1.0)
                continue
            with self._lock:
                self._latest = reading

    def latest(self):
        with self._lock:
            return self._latest

    def forget(self) -> None:
        """Drop the reading held: the bench restarts its flight clock at launch, and a fix
        stamped before that must not be the first position of the flight."""
        with self._lock:
            self._latest = None

    def close(self) -> None:
        self.gps.stop.set()
        if self.flight_clock is not None:
            self.flight_clock.join(self._thread, 5.0)
        else:
            self._thread.join(timeout=5)


class HardwareSensors:
    """`Sensors` over the real drivers: the GPS for time and position, and each registered sensor
    for what its profile says it gives (the BME280s the air's and the battery's temperature and the
    pressure, the INA219 the battery's volts and current).

    `now` gives UTC when the GPS has no fix (the system clock on the Pi, which the GPS sets;
    the flight clock on the bench); `follow_gps` reads the GPS on its own thread."""

    def __init__(self, devices: Devices, gps_timeout_s: float = 0.5, *,
                 now: Callable[[], datetime] = lambda: datetime.now(timezone.utc), follow_gps: bool = True,
                 fix_max_age_s: float = 5.0, clock_from_gps: Callable | None = None,
                 clock_check_s: float = 3600.0):
        self.devices = devices
        self.gps_timeout_s = gps_timeout_s
        self.now = now
        # A fix older than this is stale: its position stands in, but it is not sent as a fresh
        # fix and the time comes from the clock (a GPS goes quiet before the driver calls it silent).
        self.fix_max_age_s = fix_max_age_s
        # On the Pi: payload.parts.gps.system_time_from_gps, so the system clock (no RTC on a Pi) follows
        # the GPS; asked again every clock_check_s until it answers "set" or "in_sync", then hourly.
        self.clock_from_gps, self.clock_check_s = clock_from_gps, clock_check_s
        self._clock_checked_at: float | None = None
        self.clock_result = None
        self.follower = (GpsFollower(devices.gps, flight_clock=devices.flight_clock)
                         if devices.gps is not None and follow_gps else None)
        self._profiles = {name: device_profile(name) for name in devices.sensors}
        gives = {value for profile in self._profiles.values() for value in profile.gives}
        # What is kept between readings: the last position, and the sensors' values (none yet).
        self._position = {"lat": 0.0, "lon": 0.0, "alt_m": 0.0}
        self._values: dict[str, float] = {name: no_reading(name) for name in ("temp_c", "pressure_hpa", "batt_mv")}
        self._values.update({value: no_reading(value) for value in gives})
        self._status: dict[str, str] = {}
        self.battery_temp_fitted = "box_temp_c" in gives  # the mode ladder leaves out what is not fitted

    def _note(self, device: str, status: str, error: str = "") -> None:
        if self._status.get(device) != status:
            (log.info if status == "ok" else log.warning)("device_status", device=device, status=status, error=error)
        self._status[device] = status

    def read(self) -> Readings:
        when, sats, fix_valid, speed = self._read_gps()
        for name, driver in self.devices.sensors.items():
            profile, reading = self._profiles[name], driver.read()
            self._note(name, reading.status, reading.error)
            if reading.status == "ok":
                self._values.update(profile.values(reading))
            else:
                self._values.update({value: no_reading(value) for value in profile.gives if value not in profile.kept})
        values = dict(self._values)
        own = {name: values.pop(name) for name in SENSOR_FIELDS if name in values}  # the rest: `extra`
        return Readings(time=when, **self._position, sats=sats, phase="unknown", status=dict(self._status),
                        fix_valid=fix_valid, speed_mps=speed, extra=values, **own)

    def _read_gps(self) -> tuple[datetime, int, bool, float]:
        """(the time, satellites, whether the fix is fresh, the speed), the position kept in `_position`."""
        d = self.devices
        when, sats, fix_valid, speed = self.now(), 0, False, math.nan
        if d.gps is None:
            return when, sats, fix_valid, speed
        g = self.follower.latest() if self.follower is not None else d.gps.read(self.gps_timeout_s)
        if g is None:  # the follower has not finished its first read
            g = d.gps.read(self.gps_timeout_s) if self.follower is None else None
        self._note("gps", g.status if g is not None else "starting")
        if g is not None and g.fix is not None and g.fix.valid and g.status == "ok":
            self._position.update(lat=g.fix.lat, lon=g.fix.lon, alt_m=g.fix.alt_m)
            fresh = g.fix.age_s(d.gps.clock()) <= self.fix_max_age_s  # the driver's clock, not UTC: the Pi's may be unset
            if fresh:
                sats, fix_valid = g.fix.sats, True
                speed = g.fix.speed_mps if g.fix.speed_mps is not None else math.nan
                if g.fix.utc is not None:
                    when = g.fix.utc
                self._maybe_set_clock(g.fix, d.gps.clock())
        return when, sats, fix_valid, speed

    def _maybe_set_clock(self, fix, now: float) -> None:
        if self.clock_from_gps is None:
            return
        settled = self.clock_result is not None and self.clock_result.action in ("set", "in_sync")
        if self._clock_checked_at is not None and now - self._clock_checked_at < (self.clock_check_s if settled else 10.0):
            return
        self._clock_checked_at = now
        self.clock_result = self.clock_from_gps(fix)

    def restart(self) -> None:
        if self.follower is not None:
            self.follower.forget()

    def close(self) -> None:
        if self.follower is not None:
            self.follower.close()
        self.devices.close()
