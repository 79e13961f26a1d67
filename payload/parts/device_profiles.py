"""The sensors the payload reads on its I2C buses, one profile each: its name, its table in the
configuration, how its driver opens on its bus, and what a reading of it gives.

A driver's module declares its sensor's profile next to the driver and registers it when
imported (`register_device`), as a LoRa chip's does (stratoecho/lora_chips/profiles.py); the
built-in ones are payload/parts/i2c_sensors.py's. Everything else (the configuration, the reading
loop, the health record, the bench) looks a sensor up here by its name, so a new sensor is its
driver module and its simulator (docs/architecture.md and docs/hardware.md, "Adding a sensor").

The GPS and the camera are not sensors of this kind: the GPS is the flight's time and position,
read on a thread of its own (payload/parts/devices.py), and the camera is a producer's part.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import Field

from stratoecho.config import Section
from stratoecho.wire import HEALTH_FIELD_NAMES
from stratoecho.wire.content import DEVICE_KEYS

# The drivers that come with the payload; a configuration's `[devices] drivers` adds a maker's.
BUILT_IN_DRIVERS = ("payload.parts.i2c_sensors",)
# Names a sensor cannot take: the [devices] keys that are not sensors, the radio and the I2C bus
# itself (each a part of its own where faults are thrown), and health fields of their own.
RESERVED = frozenset({"drivers", "gps", "camera", "radio", "i2c"}) | (HEALTH_FIELD_NAMES - set(DEVICE_KEYS))
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,23}$")


class I2cDeviceSection(Section):
    """Where a sensor sits: every registered sensor's table has these keys (a driver's own add more)."""

    bus: int = Field(1, ge=0, description="I2C bus number (/dev/i2c-N)")
    address: int = Field(ge=0x03, le=0x77, description="7-bit I2C address, e.g. 0x76")


class Reading(Protocol):
    """What a sensor's driver answers each read, never raising: its status ("ok", "absent",
    "i2c_error", "stuck", "impossible" ...; payload/parts/i2c_sensors.py) and why."""

    status: str
    error: str


class Driver(Protocol):
    def read(self) -> Reading: ...


@dataclass(frozen=True)
class DeviceProfile:
    """A sensor on I2C as the rest of the payload needs to know it."""

    name: str  # its status key (in Readings.status and on air) and its [devices.NAME] table
    section: type[I2cDeviceSection]  # the keys of its table
    # (its table, its bus: smbus2-like, the monotonic clock its back-off counts on) -> its driver, not yet talking
    open: Callable[[Any, Any, Callable[[], float]], Driver]
    # The values an "ok" reading gives, by name: a `Readings` field (temp_c, batt_mv ...) or one of
    # its own (co2_ppm), which Readings carries in `extra`.
    values: Callable[[Any], Mapping[str, float]]
    gives: tuple[str, ...]  # the names `values` gives
    # Of those, the ones whose last good value stands in while it does not answer (the governor and
    # the heater judge its age by the status; `fresh` takes it out of what goes on air). The others
    # read as no reading at once (a heater must not act on a temperature it no longer knows).
    kept: tuple[str, ...] = ()
    # The table a configuration without [devices.NAME] gets: None leaves the sensor out (fitted only
    # where its table is given); `{}` fits it with its table's defaults.
    default: Mapping[str, Any] | None = None


# The registered sensors by name, in the order they were registered (the order they are read in).
PROFILES: dict[str, DeviceProfile] = {}
_loaded: set[str] = set()


def register_device(profile: DeviceProfile) -> DeviceProfile:
    """Make a sensor known by its name; ValueError for a name it cannot take or one taken already
    by another profile (two modules claiming one sensor)."""
    name = profile.name
    if not _NAME.match(name) or name in RESERVED:
        raise ValueError(f"a sensor's name is 1-24 lowercase letters, digits and _, not one of "
                         f"{', '.join(sorted(RESERVED))}: {name!r}")
    if not issubclass(profile.section, I2cDeviceSection):
        raise ValueError(f"sensor {name!r}: its table's class must derive from I2cDeviceSection (bus, address)")
    if bad := [v for v in profile.gives if not _NAME.match(v)]:  # on air as name=value pairs (wire.reading_field)
        raise ValueError(f"sensor {name!r}: a value's name is 1-24 lowercase letters, digits and _, not {bad[0]!r}")
    if not set(profile.kept) <= set(profile.gives):
        raise ValueError(f"sensor {name!r}: kept {profile.kept} names values it does not give {profile.gives}")
    known = PROFILES.get(name)
    if known is not None and known != profile:
        raise ValueError(f"sensor {name!r} is registered already")
    PROFILES[name] = profile
    return profile


def load_drivers(modules: Iterable[str] = ()) -> None:
    """Import the built-in drivers and `modules` (dotted names on the Python path), each registering
    its sensors; ImportError naming the module that cannot be found. Each is imported once."""
    for module in (*BUILT_IN_DRIVERS, *modules):
        if module in _loaded:
            continue
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name is None or not (module == e.name or module.startswith(e.name + ".")):
                raise  # the module is there; something it imports is not: its own traceback says what
            raise ImportError(f"no driver module {module!r} on the Python path (a package installed in the "
                              f"payload's environment, or a folder on PYTHONPATH)") from None
        _loaded.add(module)


def device_names() -> tuple[str, ...]:
    load_drivers()
    return tuple(PROFILES)


def device_profile(name: str) -> DeviceProfile:
    """The sensor registered as `name`; a ValueError naming the registered ones if none is."""
    load_drivers()
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"no sensor {name!r} is registered: {', '.join(PROFILES)}") from None


def known_device(name: str) -> DeviceProfile | None:
    load_drivers()
    return PROFILES.get(name)
