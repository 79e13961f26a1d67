"""The configuration's ``[devices]``: the GPS's and the camera's tables, the sensors' drivers, and
one table per registered sensor (payload/parts/device_profiles.py), checked by its profile.

    [devices]
    drivers = ["my_co2.driver"]       # a maker's driver modules, each registering its sensor(s)
    [devices.gps]                     # the flight's time and position
    [devices.bme280]                  # a registered sensor: its profile's keys (bus, address ...)
    [devices.my_co2]

A part whose table is left out gets its defaults: the GPS, the camera and the built-in sensors
are fitted, a maker's sensor only where its table is given; ``fitted = false`` in a table leaves
the part out (in Python, as in a dumped configuration, the table's value None).
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from stratoecho.config import Section

from .parts.device_profiles import I2cDeviceSection, device_names, device_profile, known_device, load_drivers


class GpsDeviceSection(Section):
    port: str = Field("/dev/serial0", description="the GPS's UART (device path or pyserial URL)")
    baud: int = Field(9600, gt=0)
    silent_after_s: float = Field(3.0, gt=0, description="no valid sentence for this long: the GPS is silent, re-opened")


class CameraDeviceSection(Section):
    still_dir: str = Field("stills", description="where full-size stills are kept (relative to data_dir)")
    thumb_px: int = Field(160, ge=32, le=1024, description="long side of the thumbnail sent down")
    thumb_max_bytes: int = Field(6000, ge=500, le=60000, description="largest thumbnail, in bytes (radio airtime)")
    timeout_s: float = Field(10.0, gt=0, description="a capture taking longer is a hung camera")
    # 4 GB: a few hundred 12-MP stills, more than a flight takes at one per image_s, and a sixth of
    # a 32 GB card beside the OS, the queue (store.total_mb) and min_free. A smaller card bounds it.
    stills_mb: float = Field(
        4096.0, gt=0, description="most megabytes of stills kept in still_dir; beyond it the oldest are deleted. "
        "Never more than the card's size less store.min_free_mb")
    send_every: int = Field(1, ge=1, le=1000, description="send the thumbnail of one still in this many, the first "
                            "included; the others stay on the card only (a slow LoRa mode has air for few pictures)")
    ssdv: bool = Field(False, description="send each thumbnail as SSDV packets (the format the ssdv tool and the SSDV "
                       "server take) instead of as an image record: one 255-byte frame per packet")
    ssdv_callsign: str | None = Field(
        None, description="the callsign in the SSDV packets, 1 to 6 letters and digits; "
        "unset: the payload's callsign, when it fits")
    ssdv_quality: int = Field(4, ge=0, le=7, description="SSDV quality 0 (coarsest, fewest packets) to 7")

    @field_validator("ssdv_callsign")
    @classmethod
    def _ssdv_callsign_fits(cls, v: str | None) -> str | None:
        if v is not None and not (1 <= len(v) <= 6 and v.isascii() and v.isalnum()):
            raise ValueError(f"{v!r} is not an SSDV callsign: 1 to 6 letters and digits")
        return None if v is None else v.upper()


class DevicesSection(Section):
    """Which part sits where (sensors = "hardware"). Beside the declared keys, each registered
    sensor's table (`sensors()`), given or its profile's default."""

    # The sensors' tables are kept beside the declared keys (`_sensor_tables`), every registered
    # sensor's: its section, or None where it is not fitted.
    model_config = ConfigDict(extra="allow", validate_assignment=True)

    drivers: list[str] = Field(
        default_factory=list, description="modules with sensors of a maker's own, imported before the tables are "
        "read: each registers its sensor(s) (payload/parts/device_profiles.py), e.g. [\"my_co2.driver\"]; a module "
        "is found on the payload's Python path (docs/hardware.md, 'Adding a sensor')")
    gps: GpsDeviceSection | None = Field(default_factory=GpsDeviceSection)
    camera: CameraDeviceSection | None = Field(default_factory=CameraDeviceSection)

    @model_validator(mode="wrap")
    @classmethod
    def _sensor_tables(cls, data, handler):
        """The registered sensors' tables checked against their profiles (an unknown table is an error)."""
        if isinstance(data, dict):
            data = sensor_tables(data, declared=cls.model_fields)
        return handler(data)

    def sensors(self) -> dict[str, I2cDeviceSection]:
        """The registered sensors fitted, by name, in the order they were registered."""
        extra = self.model_extra or {}
        return {name: extra[name] for name in device_names() if extra.get(name) is not None}


def _error(kind: str, message: str, loc: tuple, given, **ctx) -> InitErrorDetails:
    return InitErrorDetails(type=PydanticCustomError(kind, message, ctx), loc=loc, input=given)


def _fitted(key: str, table, errors: list):
    """`fitted = false` leaves the part out (None); `fitted = true` is its table as it stands."""
    if not isinstance(table, dict) or "fitted" not in table:
        return table
    table = dict(table)
    fitted = table.pop("fitted")
    if not isinstance(fitted, bool):
        errors.append(_error("fitted", "fitted is true or false", (key, "fitted"), fitted))
    return None if fitted is False else table


def sensor_tables(given: Mapping, declared: Mapping) -> dict:
    """`[devices]` as given, with `drivers` imported and each registered sensor's table validated as
    its profile's section (or its default): pydantic's ValidationError, naming each key, for what is wrong."""
    errors: list[InitErrorDetails] = []
    tables = {key: _fitted(key, table, errors) for key, table in given.items()}
    drivers = tables.get("drivers")
    try:
        load_drivers(drivers if isinstance(drivers, list) and all(isinstance(d, str) for d in drivers) else ())
    except ImportError as e:
        errors.append(_error("driver_import", "{why}", ("drivers",), drivers, why=str(e)))
    out = {key: table for key, table in tables.items() if key in declared}
    for key, table in tables.items():
        if key not in declared and known_device(key) is None:
            errors.append(_error("unknown_sensor", "no sensor '{name}' is registered: the registered ones are {known}; "
                                 "a sensor of your own is its driver module named in [devices] drivers",
                                 (key,), table, name=key, known=", ".join(device_names())))
    for name in device_names():
        profile = device_profile(name)
        table = tables.get(name, profile.default)
        if table is None or isinstance(table, profile.section):
            out[name] = table
            continue
        try:
            out[name] = profile.section.model_validate(table)
        except ValidationError as e:
            errors += [InitErrorDetails(type=d["type"], loc=(name, *d["loc"]), input=d["input"], ctx=d.get("ctx", {}))
                       for d in e.errors()]
    _one_per_address(out, errors)
    if errors:
        raise ValidationError.from_exception_data("DevicesSection", errors)
    return out


def _one_per_address(tables: Mapping, errors: list) -> None:
    """Two sensors at one address of one bus would answer as one: refused."""
    seen: dict[tuple[int, int], str] = {}
    for name, table in tables.items():
        if isinstance(table, I2cDeviceSection):
            where = (table.bus, table.address)
            if where in seen:
                errors.append(_error("address_taken", "{other} and {name} are both at {address} on bus {bus} (a sensor "
                                     "whose table is left out sits at its default address; fitted = false leaves it out)",
                                     (name, "address"), table.address, name=name, address=f"0x{table.address:02X}",
                                     bus=table.bus, other=seen[where]))
            seen.setdefault(where, name)
