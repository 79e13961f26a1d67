"""HABpack: UKHAS binary telemetry, a MessagePack map with small integer keys.

LoRa gateways (PiInTheSky/lora-gateway) recognise HABpack by its first byte, a
msgpack map header — 0x80-0x8F (fixmap, up to 15 entries) or 0xDE (map16) — and
turn it into a UKHAS sentence and SondeHub upload. What we send, one map::

    key  value                       msgpack type   unit
    ---  --------------------------  -------------  ------------------------------
      0  callsign                    str
      1  sentence id (Telemetry.seq) uint
      2  time of day                 uint           seconds since 00:00:00 UTC
      3  [lat, lon, alt]             [int,int,int]  1e-7 degree, 1e-7 degree, metre
      4  satellites                  uint
      6  battery                     int            millivolt
     11  external temperature        int            milli-degree Celsius
     12  pressure                    uint           milli-hectopascal (0.1 Pa)
    100  boot counter (stratoecho)   uint

Keys are written in ascending order, so encoding is deterministic; 9 entries
make a fixmap, first byte 0x89 (fewer while a sensor has no current reading: battery,
temperature and pressure are then left out).

Units follow the reference gateway decoder (PiInTheSky/lora-gateway habpack.c):
it divides an integer position by 1e7, an integer voltage by 1000 ("mV"), an
integer temperature by 1000 ("milli-degrees") and an unsigned integer pressure
by 1000 ("milli-bar"); floats it takes as they are. The spec page it cites
(ukhas.org.uk communication:habpack) could not be consulted here, so pressure
goes as an integer in milli-hPa: the gateway's /1000 then shows hPa (= mbar),
the unit balloonists read, with 0.1 Pa resolution even at 30 km. That gateway
parses pressure, satellites, sentence id and time only as *unsigned* integers
and drops the whole packet otherwise, so the encoder never writes them negative.

Key 100 is ours: HABpack reserves small keys for the community; the gateway
passes unknown keys through as extra fields named by their number, and nothing
else reads them.

The decoder is strict about the keys above (all mandatory, since the result is a
full `Telemetry`) but also takes what other HABpack senders use: a float volt /
degree / hPa where we send scaled integers, and a Unix time instead of seconds of
day. Unknown keys are ignored. Anything malformed raises `WireError`, nothing else.
"""

from __future__ import annotations

import math
from typing import Any

import msgpack

from .common import WireError
from .sentence import Telemetry, integer_out_of_range, parse_hms

KEY_CALLSIGN = 0
KEY_SENTENCE_ID = 1
KEY_TIME = 2
KEY_POSITION = 3
KEY_SATELLITES = 4
KEY_VOLTAGE = 6
KEY_EXTERNAL_TEMPERATURE = 11
KEY_PRESSURE = 12
KEY_BOOT = 100  # stratoecho's own; >= 100 stays clear of the community's keys

MANDATORY_KEYS = (KEY_CALLSIGN, KEY_SENTENCE_ID, KEY_TIME, KEY_POSITION, KEY_SATELLITES, KEY_BOOT)
FIRST_BYTES = frozenset([*range(0x80, 0x90), 0xDE])  # what gateways dispatch on as HABpack

_SECONDS_IN_DAY = 86_400
_U64 = 1 << 64
_POSITION_SCALE = 10_000_000  # HABpack positions are 1e-7 degree integers
_MILLI = 1000


def encode_habpack(t: Telemetry) -> bytes:
    """Pack one position report as a HABpack map (see the module docstring for keys and units)."""
    # A sensor without a reading (NaN) is left out of the map; infinity is an error.
    if not all(math.isfinite(v) for v in (t.lat, t.lon, t.alt)) or any(
            math.isinf(v) for v in (t.temp_c, t.pressure_hpa)):
        raise WireError("telemetry not finite", f"sentence {t.seq} of boot {t.boot} holds nan or inf")
    _check_callsign(t.callsign)
    if not -90 <= t.lat <= 90 or not -180 <= t.lon <= 180:
        raise WireError("out of range", f"position {t.lat}, {t.lon} is not on Earth")
    if not 0 <= t.seq < _U64 or not 0 <= t.boot < _U64:
        raise WireError("out of range", f"seq {t.seq} or boot {t.boot} is not an unsigned 64-bit integer")
    body = {
        KEY_CALLSIGN: t.callsign,
        KEY_SENTENCE_ID: t.seq,
        KEY_TIME: _seconds_of_day(t.time),
        KEY_POSITION: [round(t.lat * _POSITION_SCALE), round(t.lon * _POSITION_SCALE), int(round(t.alt))],
        # Gateways read satellites and pressure as unsigned only: clamp, or they drop the packet.
        KEY_SATELLITES: max(0, int(t.sats)),
        # Left out (None) while the sensor has no current reading: a stale value never travels as fresh.
        KEY_VOLTAGE: int(t.batt_mv) if t.batt_mv != 0 else None,  # 0: no current reading
        KEY_EXTERNAL_TEMPERATURE: None if math.isnan(t.temp_c) else round(t.temp_c * _MILLI),
        KEY_PRESSURE: None if math.isnan(t.pressure_hpa) else max(0, round(t.pressure_hpa * _MILLI)),
        KEY_BOOT: t.boot,
    }
    body = {k: v for k, v in body.items() if v is not None}
    try:
        return msgpack.packb(body, use_bin_type=True)
    except (OverflowError, ValueError, TypeError) as e:  # an integer beyond 64 bits
        raise WireError("out of range", f"HABpack value does not fit msgpack: {e}") from e


def decode_habpack(packet: bytes) -> Telemetry:
    """Unpack a HABpack map into a `Telemetry`; raises `WireError` on anything malformed."""
    if not packet:
        raise WireError("empty", "empty HABpack packet")
    if packet[0] not in FIRST_BYTES:
        raise WireError("habpack not a map", f"first byte 0x{packet[0]:02X} is not a msgpack map header")
    try:
        # strict_map_key=False: keys are integers, which msgpack's strict mode refuses.
        body = msgpack.unpackb(bytes(packet), raw=False, strict_map_key=False, use_list=True)
    except msgpack.ExtraData as e:
        raise WireError("habpack trailing bytes", f"{len(e.extra)} bytes follow the HABpack map") from e
    except (ValueError, TypeError, msgpack.UnpackException) as e:
        # Truncation, bad UTF-8, unhashable keys, reserved bytes: all just "not HABpack".
        raise WireError("habpack malformed", f"HABpack does not unpack: {e}") from e
    if not isinstance(body, dict):
        raise WireError("habpack not a map", "HABpack is not a msgpack map")
    fields = {k: v for k, v in body.items() if _is_int(k)}
    missing = [k for k in MANDATORY_KEYS if k not in fields]
    if missing:
        raise WireError("habpack missing key", f"HABpack lacks keys {missing}")

    callsign = fields[KEY_CALLSIGN]
    if not isinstance(callsign, str):
        raise WireError("habpack field invalid", f"callsign is a {type(callsign).__name__}, not a string")
    _check_callsign(callsign)
    position = fields[KEY_POSITION]
    if not isinstance(position, list) or len(position) != 3 or not all(_is_int(v) for v in position):
        raise WireError("habpack field invalid", "position is not [lat, lon, alt] as three integers")
    lat, lon = position[0] / _POSITION_SCALE, position[1] / _POSITION_SCALE
    if not -90 <= lat <= 90 or not -180 <= lon <= 180:
        raise WireError("habpack field invalid", f"position {lat}, {lon} is not on Earth")
    when = _unsigned(fields, KEY_TIME, "time")
    when %= _SECONDS_IN_DAY  # seconds of day pass unchanged; a Unix time keeps its time of day
    t = Telemetry(
        callsign=callsign,
        seq=_unsigned(fields, KEY_SENTENCE_ID, "sentence id"),
        time=f"{when // 3600:02d}:{when // 60 % 60:02d}:{when % 60:02d}",
        lat=lat,
        lon=lon,
        alt=position[2],
        sats=_unsigned(fields, KEY_SATELLITES, "satellites"),
        temp_c=_scaled(fields, KEY_EXTERNAL_TEMPERATURE, "temperature") if KEY_EXTERNAL_TEMPERATURE in fields else math.nan,
        pressure_hpa=_scaled(fields, KEY_PRESSURE, "pressure") if KEY_PRESSURE in fields else math.nan,
        batt_mv=round(_scaled(fields, KEY_VOLTAGE, "voltage") * _MILLI) if KEY_VOLTAGE in fields else 0,
        boot=_unsigned(fields, KEY_BOOT, "boot"),
    )
    if (why := integer_out_of_range(t)) is not None:  # msgpack's unsigned 64 bits go past the ground's signed ones
        raise WireError("habpack field invalid", f"HABpack {why}")
    return t


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)  # msgpack true/false arrive as bool


def _unsigned(fields: dict, key: int, name: str) -> int:
    v = fields[key]
    if not _is_int(v) or v < 0:
        raise WireError("habpack field invalid", f"{name} (key {key}) is {v!r}, not an unsigned integer")
    return v


def _scaled(fields: dict, key: int, name: str) -> float:
    """An integer in milli-units, or a float in whole units (what other senders use)."""
    v = fields[key]
    if _is_int(v):
        return v / _MILLI
    if isinstance(v, float):
        if not math.isfinite(v):
            raise WireError("telemetry not finite", f"{name} (key {key}) is {v}")
        return v
    raise WireError("habpack field invalid", f"{name} (key {key}) is a {type(v).__name__}, not a number")


def _check_callsign(callsign: str) -> None:
    # The same rule as the UKHAS sentence: a decoded HABpack must re-encode as one.
    if not callsign or not callsign.isascii() or any(c in callsign for c in ",*$\n"):
        raise WireError("bad callsign", f"callsign {callsign!r} must be plain ASCII without , * $ or newline")


def _seconds_of_day(hms: str) -> int:
    h, m, s = parse_hms(hms)
    return h * 3600 + m * 60 + s
