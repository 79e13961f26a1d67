"""What the ground heard: the wire format's own typed records, with when they were heard.

Inside the ground station a record or sentence travels as `stratoecho.wire.Record` or
`stratoecho.wire.Telemetry`; the decoder makes them, and the database, the hooks, the
exporters, the station network and the API proxy read their attributes. JSON is made only
where it leaves the program, from `as_dict()` (`Heard.as_json` for `listen --json`, the
MQTT records topic in `network`), and read back in one place, `record_from_json`, for the
records other stations share: a message that is not one gets a `RecordJsonError` naming
the field and what was expected. Pure logic, no I/O.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, TypeAdapter
from pydantic import ValidationError as _ValidationError

from stratoecho import wire
from stratoecho.wire.events import BY_NAME, Event, event

WireRecord = wire.Telemetry | wire.Record


def kind_name(record: WireRecord) -> str:
    """The kind as the database, the JSON and the counters name it: telemetry, musing, ..."""
    return record.kind.name.lower()


@dataclass(frozen=True)
class Heard:
    """One record or sentence new to this ground, and when it was heard (ISO 8601 UTC).

    `station`, `rssi_dbm` and `snr_db`: which receiver heard the frame that completed it and
    with what signal, where the listener knows (None otherwise, and for rows read back from
    a database). For a position sentence, one frame, that is the sentence's own signal:
    what SondeHub shows with each position."""

    record: WireRecord
    received_at: str
    station: str | None = None
    rssi_dbm: float | None = None
    snr_db: float | None = None
    flight: str | None = None  # a followed flight's callsign (`listen --follow`); None: the primary flight
    authentic: bool = True  # the balloon signed or tagged it; False: a claim anyone could make
    last_musing: str | None = None  # a position's: the newest musing of its flight heard before it (SondeHub's comment)

    def as_json(self) -> dict:
        """The object `listen --json` prints: the record's JSON and `received_at` (and `flight`
        for a followed flight's)."""
        return {**self.record.as_dict(), "received_at": self.received_at,
                **({"flight": self.flight} if self.flight is not None else {})}


class RecordJsonError(ValueError):
    """A record in JSON (`Record.as_dict()` / `Telemetry.as_dict()`) that is not one."""


# ---------------------------------------------------------------- the shapes `as_dict` makes

_Value = StrictBool | StrictInt | StrictFloat | StrictStr  # what decoded content holds
_U16, _U32, _I64 = 0xFFFF, 0xFFFF_FFFF, 2**63 - 1


class _Json(BaseModel):
    # Strict: "3" is not a number, true is not 1. Keys we do not read (text, severity) are
    # ignored: the ground renders those from the fields itself.
    model_config = ConfigDict(strict=True, allow_inf_nan=False, frozen=True)


class _TelemetryJson(_Json):
    kind: Literal["telemetry"]
    boot: Annotated[int, Field(ge=0, le=_I64)]  # HABpack's are unbounded; SQLite's are not
    seq: Annotated[int, Field(ge=0, le=_I64)]
    callsign: Annotated[str, Field(min_length=1)]
    time: str
    lat: float
    lon: float
    alt: int
    sats: int
    temp_c: float | None  # null: no reading
    pressure_hpa: float | None
    batt_mv: int


class _RecordJson(_Json):
    boot: Annotated[int, Field(ge=0, le=_U16)]
    seq: Annotated[int, Field(ge=0, le=_U32)]
    created: str  # ISO 8601 with its zone, whole seconds


class _MusingJson(_RecordJson):
    kind: Literal["musing"]
    text: str


class _EventJson(_RecordJson):
    kind: Literal["event"]
    event: Annotated[str, Field(min_length=1)]
    fields: dict[str, _Value]


class _FieldsJson(_RecordJson):
    kind: Literal["health", "api_request"]
    fields: dict[str, _Value]


class _Jpeg(_Json):
    jpeg_base64: str
    bytes: int | None = None
    sha256: str | None = None


class _ImageJson(_RecordJson):
    kind: Literal["image"]
    image: _Jpeg


_ANY = TypeAdapter(Annotated[_TelemetryJson | _MusingJson | _EventJson | _FieldsJson | _ImageJson,
                             Field(discriminator="kind")])


def record_from_json(obj: object) -> WireRecord:
    """The typed record a record's JSON describes; RecordJsonError says which field is wrong and why."""
    try:
        parsed = _ANY.validate_python(obj)
    except _ValidationError as e:
        raise RecordJsonError("; ".join(_describe(err) for err in e.errors()[:3])) from None
    if isinstance(parsed, _TelemetryJson):
        return wire.Telemetry(parsed.callsign, parsed.seq, parsed.time, parsed.lat, parsed.lon, parsed.alt,
                              parsed.sats, _nan_if_none(parsed.temp_c), _nan_if_none(parsed.pressure_hpa),
                              parsed.batt_mv, parsed.boot)
    where = f"{parsed.kind} {parsed.boot}/{parsed.seq}"
    kind = wire.Kind[parsed.kind.upper()]
    return wire.Record(kind, parsed.boot, parsed.seq, _created(parsed.created, where), _content(parsed, where))


def _content(parsed: _RecordJson, where: str):
    if isinstance(parsed, _MusingJson):
        return parsed.text
    if isinstance(parsed, _FieldsJson):
        return dict(parsed.fields)
    if isinstance(parsed, _EventJson):
        if parsed.event not in BY_NAME:  # a newer payload's event: kept as it came, as the decoder keeps one
            return Event(parsed.event, dict(parsed.fields))
        try:
            return event(parsed.event, **parsed.fields)
        except ValueError as e:
            raise RecordJsonError(f"{where}: {e}") from None
    assert isinstance(parsed, _ImageJson)
    try:
        jpeg = base64.b64decode(parsed.image.jpeg_base64, validate=True)
    except binascii.Error as e:
        raise RecordJsonError(f"{where}: image.jpeg_base64 is not base64 ({e})") from None
    if not jpeg.startswith(b"\xff\xd8"):
        raise RecordJsonError(f"{where}: image.jpeg_base64 is not a JPEG (expected FF D8 first)")
    if parsed.image.bytes is not None and parsed.image.bytes != len(jpeg):
        raise RecordJsonError(f"{where}: image.bytes says {parsed.image.bytes}, the JPEG has {len(jpeg)}")
    if parsed.image.sha256 is not None and parsed.image.sha256 != hashlib.sha256(jpeg).hexdigest():
        raise RecordJsonError(f"{where}: image.sha256 does not match the JPEG")
    return jpeg


def _created(text: str, where: str) -> int:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise RecordJsonError(f"{where}: created {text!r} is not an ISO 8601 time") from None
    if when.tzinfo is None:
        raise RecordJsonError(f"{where}: created {text!r} has no time zone (expected e.g. +00:00)")
    seconds = when.timestamp()
    if not 0 <= seconds <= _U32 or seconds != int(seconds):
        raise RecordJsonError(f"{where}: created {text!r} is not a whole second from 1970 to 2106")
    return int(seconds)


def _describe(err: dict) -> str:
    if err["type"] == "union_tag_not_found":
        return f"kind: missing (expected one of {', '.join(k.name.lower() for k in wire.Kind)})"
    where = ".".join(str(part) for part in err["loc"])
    return f"{where}: {err['msg']}" if where else err["msg"]


def _nan_if_none(value: float | None) -> float:
    return float("nan") if value is None else float(value)
