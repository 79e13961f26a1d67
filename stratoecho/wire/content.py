"""What a record carries after its 4-byte creation time, by kind.

    kind            content                 on the wire
    musing          text (str)              UTF-8
    event           a declared event        MessagePack [id, [values]] (events.py)
    health          declared fields (dict)  MessagePack map, integer keys from HEALTH_FIELDS
    image           a JPEG (bytes)          the JPEG file's bytes, SOI (FF D8) first
    api request     api and query (dict)    MessagePack map, integer keys from API_REQUEST_FIELDS
    telemetry       a position frame        the UKHAS sentence or HABpack map as it would have
                    (bytes)                 gone on air: a position sent after a newer one

The payload asks the ground for outside information with an API request record;
the record's own sequence number is the request id, and the answer travels up as
the signed API_ANSWER command (`uplink.ApiAnswer.request_seq`).

Health and API requests use integer keys for the same reason HABpack does: a
field name costs its length in every frame. The tables below declare each key
once (F´'s declared telemetry); a decoder shows a key it does not know as
``field_<n>`` rather than failing, so a newer payload can add fields.
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import Mapping

import msgpack

from .common import Kind, WireError
from .events import Event, decode_event, encode_event
from .habpack import FIRST_BYTES as HABPACK_FIRST_BYTES
from .habpack import decode_habpack
from .sentence import Telemetry, decode_sentence

# key -> (name, type); the payload fills what it measures, any subset.
HEALTH_FIELDS: dict[int, tuple[str, type]] = {
    0: ("uptime_s", int),
    1: ("mode", str),  # NOMINAL, LOW_POWER, SURVIVAL
    2: ("cpu_temp_c", float),
    3: ("throttled", int),  # vcgencmd get_throttled bits
    4: ("mem_free_kb", int),
    5: ("disk_free_kb", int),
    6: ("queue_depth", int),  # records waiting for the radio, all streams
    7: ("store", str),  # ok, degraded: see docs/storage.md
    8: ("batt_mv", int),
    9: ("faults", int),  # faults since boot
    10: ("loss", float),  # the link's measured frame loss
    # The last sequence number handed out this boot, per stream: the ground asks for a
    # record lost whole after the last one it heard, which it could not know of otherwise.
    11: ("musing_seq", int),
    12: ("event_seq", int),
    13: ("api_request_seq", int),
    14: ("image_seq", int),
    # Each device's status ("ok", "absent", "silent", "i2c_error", ...): a fault shows at the ground.
    15: ("gps", str),
    16: ("bme280", str),
    17: ("ina219", str),
    18: ("camera", str),
    19: ("bme280_box", str),
    # Power and heat: what the mode ladder and the heater act on.
    20: ("phase", str),  # pre-launch, ascent, float, descent, landed
    21: ("box_temp_c", float),  # the battery's temperature (BME280 in the box)
    22: ("batt_ma", int),
    23: ("heater", str),  # on/off and why: "off:warm", "on:cold", "off:battery_low"
    24: ("energy_wh", float),  # used since boot
    25: ("hours_left", float),  # at the present load, to the reserve
    # The last uplink counter accepted: a ground that lost its counter state signs past it.
    26: ("uplink_counter", int),
    # The statuses of the devices with no key above (a sensor a maker registered, payload/parts/device_profiles.py):
    # "name:status" pairs joined by commas, "co2:ok,dust:absent" (`device_status_fields`, `device_statuses`).
    # A ground older than this key shows it as field_27, the text as it came.
    27: ("devices", str),
    # What those sensors measured, by the name their profile gives each value: "name=value" pairs
    # joined by commas, "co2_ppm=412,dust_ugm3=7.25" (`reading_field`, `readings_of`); a value the
    # sensor did not answer this time is left out. A ground older than this key shows it as field_28.
    28: ("readings", str),
}
# The devices whose status has a key of its own (15-19), as grounds already deployed read them.
DEVICE_KEYS = ("gps", "bme280", "ina219", "camera", "bme280_box")
API_REQUEST_FIELDS: dict[int, tuple[str, type]] = {
    0: ("api", str),  # a name on the ground's allow-list: weather, news, define ...
    1: ("query", str),
}
_TABLES = {Kind.HEALTH: HEALTH_FIELDS, Kind.API_REQUEST: API_REQUEST_FIELDS}
TEXT_KINDS = frozenset({Kind.MUSING})
JPEG_SOI = b"\xff\xd8"


def device_status_fields(statuses: Mapping[str, str]) -> dict[str, str]:
    """The health fields that carry each device's status: under its own key where it has one
    (`DEVICE_KEYS`), the others together in `devices`."""
    fields = {device: status for device, status in statuses.items() if device in DEVICE_KEYS}
    others = [f"{device}:{status}" for device, status in statuses.items() if device not in DEVICE_KEYS]
    return {**fields, "devices": ",".join(others)} if others else fields


def device_statuses(fields: Mapping) -> dict[str, str]:
    """Each device's status from a health record's decoded fields: those with a key of their own,
    then those `devices` carries (what `device_status_fields` sent)."""
    statuses = {device: fields[device] for device in DEVICE_KEYS if isinstance(fields.get(device), str)}
    packed = fields.get("devices")
    for pair in packed.split(",") if isinstance(packed, str) else ():
        device, sep, status = pair.partition(":")
        if sep and device:
            statuses[device] = status
    return statuses


def reading_field(values: Mapping[str, float]) -> str:
    """The `readings` field of `values` (a maker's sensors' by name; NaN, no reading, and any value
    not finite left out, as `readings_of` would drop it): six significant figures each."""
    return ",".join(f"{name}={value:.6g}" for name, value in values.items() if math.isfinite(value))


def readings_of(fields: Mapping) -> dict[str, float]:
    """A maker's sensors' values from a health record's decoded fields (what `reading_field` sent);
    a pair that is not NAME=NUMBER is passed over."""
    values = {}
    packed = fields.get("readings")
    for pair in packed.split(",") if isinstance(packed, str) else ():
        name, sep, text = pair.partition("=")
        try:
            value = float(text)
        except ValueError:
            continue
        if sep and name and math.isfinite(value):
            values[name] = value
    return values


def _by_name(table: dict[int, tuple[str, type]]) -> dict[str, tuple[int, type]]:
    return {name: (key, typ) for key, (name, typ) in table.items()}


def decode_position(frame: bytes) -> Telemetry:
    """A position frame, UKHAS sentence or HABpack; WireError if it is neither."""
    if frame[:2] == b"$$":
        return decode_sentence(frame)
    if frame[:1] and frame[0] in HABPACK_FIRST_BYTES:
        return decode_habpack(frame)
    raise WireError("bad content", "a telemetry record carries a UKHAS sentence or a HABpack map")


def encode_content(kind: Kind, content) -> bytes:
    """The bytes of `content` for a record of `kind`; ValueError names what does not fit."""
    if kind is Kind.TELEMETRY:
        try:
            decode_position(bytes(content))
        except (WireError, TypeError) as e:
            raise ValueError(f"a telemetry record carries a position frame as it would go on air: {e}") from e
        return bytes(content)
    if kind in TEXT_KINDS:
        if not isinstance(content, str):
            raise ValueError(f"a {kind.name.lower()} carries text, not {type(content).__name__}")
        return content.encode("utf-8")
    if kind is Kind.EVENT:
        if not isinstance(content, Event):
            raise ValueError(f"an event record carries a declared Event (events.event), not {type(content).__name__}")
        return encode_event(content)
    if kind is Kind.IMAGE:
        if not isinstance(content, (bytes, bytearray)) or not bytes(content).startswith(JPEG_SOI):
            raise ValueError("an image record carries a JPEG (bytes starting FF D8)")
        return bytes(content)
    if kind in _TABLES:
        names = _by_name(_TABLES[kind])
        packed = {}
        for name, value in dict(content).items():
            if name not in names:
                raise ValueError(f"{kind.name.lower()} has no field {name!r}; declared: {', '.join(names)}")
            key, typ = names[name]
            if typ is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, typ) or isinstance(value, bool) and typ is not bool:
                raise ValueError(f"{kind.name.lower()} field {name} is {typ.__name__}, not {type(value).__name__}")
            packed[key] = value
        return msgpack.packb(packed, use_bin_type=True)
    raise ValueError(f"record kind {kind.name} carries no content")


def decode_content(kind: Kind, data: bytes):
    """The content of a record of `kind` from its bytes; WireError if they are not that."""
    if kind is Kind.TELEMETRY:
        decode_position(data)
        return data
    if kind in TEXT_KINDS:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise WireError("text not utf-8", f"{kind.name.lower()} text is not UTF-8") from e
    if kind is Kind.EVENT:
        return decode_event(data)
    if kind is Kind.IMAGE:
        if not data.startswith(JPEG_SOI):
            raise WireError("bad content", "image record does not start with a JPEG SOI marker (FF D8)")
        return data
    if kind in _TABLES:
        table = _TABLES[kind]
        try:
            fields = msgpack.unpackb(data, raw=False, strict_map_key=False)
        except Exception as e:  # msgpack raises several unrelated types on garbage
            raise WireError("bad content", f"{kind.name.lower()} is not a MessagePack map: {e}") from e
        if not isinstance(fields, dict):
            raise WireError("bad content", f"{kind.name.lower()} is a MessagePack {type(fields).__name__}, not a map")
        out = {}
        for key, value in fields.items():
            if not isinstance(key, int) or isinstance(key, bool):
                raise WireError("bad content", f"{kind.name.lower()} key {key!r} is not an integer")
            if not isinstance(value, (int, float, str)):
                raise WireError("bad content", f"{kind.name.lower()} field {key} holds a {type(value).__name__}")
            name = table[key][0] if key in table else f"field_{key}"
            out[name] = value
        return out
    raise WireError("unknown kind", f"record kind {kind.name} carries no content")


def summary(kind: Kind, content) -> str:
    """One line a person reads: the text itself, or what a structured record says."""
    if kind in TEXT_KINDS:
        return content
    if kind is Kind.EVENT:
        return content.text
    if kind is Kind.IMAGE:
        return f"image: JPEG of {len(content):,} bytes"
    if kind is Kind.TELEMETRY:
        t = decode_position(content)
        return f"position {t.seq} sent late: {t.time} {t.lat:.5f} {t.lon:.5f} {t.alt} m"
    if kind is Kind.API_REQUEST:
        return f"asks {content.get('api', '?')}: {content.get('query', '')}"
    return "health: " + ", ".join(f"{name} {value}" for name, value in content.items())


def content_json(kind: Kind, content) -> dict:
    """What `Record.as_dict` adds for structured kinds (JSON-safe)."""
    if kind is Kind.IMAGE:
        return {"image": {"bytes": len(content), "sha256": hashlib.sha256(content).hexdigest(),
                          "jpeg_base64": base64.b64encode(content).decode("ascii")}}
    if kind in _TABLES:
        return {"fields": dict(content)}
    if kind is Kind.EVENT:
        return {"event": content.name, "severity": content.severity, "fields": dict(content.fields)}
    return {}
