"""UKHAS telemetry sentences: plain ASCII that every amateur HAB gateway decodes.

    $$CALLSIGN,seq,HH:MM:SS,lat,lon,alt,sats,temp_c,pressure_hpa,batt_mv,boot,0123456BR9I*CRC\\n

CRC16-CCITT over the characters between ``$$`` and ``*``, 4 upper-case hex digits.
The last field is the field-list token (see `ukhas.py`): it names every field, so
LoRa gateways label satellites, outside temperature, pressure and battery for
SondeHub without a payload document. Sentences without the token are read too.

A sensor with no reading (a BME280 that failed before its first good value) leaves its
field empty, as UKHAS receivers expect for missing data: the position beacon never
waits for a thermometer. Empty reads back as NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .common import Kind, WireError, crc16_ccitt

FIELD_LIST = "0123456BR9I"  # callsign..alt, sats, B outside temp, R pressure, 9 battery mV, I boot


@dataclass(frozen=True)
class Telemetry:
    """One position report, as the UKHAS sentence carries it."""

    callsign: str
    seq: int
    time: str  # HH:MM:SS UTC
    lat: float
    lon: float
    alt: int  # metres
    sats: int
    temp_c: float
    pressure_hpa: float
    batt_mv: int
    boot: int

    kind = Kind.TELEMETRY

    def as_dict(self) -> dict:
        return {
            "kind": "telemetry", "boot": self.boot, "seq": self.seq, "callsign": self.callsign,
            "time": self.time, "lat": self.lat, "lon": self.lon, "alt": self.alt,
            # null, not NaN, for a sensor without a reading: JSON has no NaN
            "sats": self.sats, "temp_c": _none_if_nan(self.temp_c), "pressure_hpa": _none_if_nan(self.pressure_hpa),
            "batt_mv": self.batt_mv,
        }


def encode_sentence(t: Telemetry) -> bytes:
    _check_finite(t)
    if not t.callsign or any(c in t.callsign for c in ",*$\n") or not t.callsign.isascii():
        raise WireError("bad callsign", f"callsign {t.callsign!r} must be plain ASCII without , * $ or newline")
    body = (
        f"{t.callsign},{t.seq},{t.time},{t.lat:.5f},{t.lon:.5f},{int(round(t.alt))},"
        f"{t.sats},{_optional(t.temp_c)},{_optional(t.pressure_hpa)},{t.batt_mv},{t.boot},{FIELD_LIST}"
    )
    return f"$${body}*{crc16_ccitt(body.encode('ascii')):04X}\n".encode("ascii")


def decode_sentence(frame: bytes) -> Telemetry:
    try:
        text = frame.decode("ascii").strip()
    except UnicodeDecodeError as e:
        raise WireError("sentence not ascii", "UKHAS sentence holds non-ASCII bytes") from e
    if not text.startswith("$$") or "*" not in text:
        raise WireError("sentence malformed", "not a UKHAS sentence: expected $$...*CRC")
    body, _, crc_text = text[2:].rpartition("*")
    if len(crc_text) != 4:
        raise WireError("sentence malformed", f"UKHAS checksum {crc_text!r} is not 4 hex digits")
    try:
        crc = int(crc_text, 16)
    except ValueError as e:
        raise WireError("sentence malformed", f"UKHAS checksum {crc_text!r} is not hex") from e
    if crc != crc16_ccitt(body.encode("ascii")):
        raise WireError("crc mismatch", "UKHAS checksum mismatch")
    fields = body.split(",")
    if len(fields) == 12 and fields[-1].startswith("012345"):
        if fields[-1] != FIELD_LIST:
            raise WireError("sentence field count", f"field list {fields[-1]!r} is not ours ({FIELD_LIST})")
        fields = fields[:-1]
    if len(fields) != 11:
        raise WireError("sentence field count", f"UKHAS sentence has {len(fields)} fields, expected 11 and a field list")
    try:
        t = Telemetry(
            callsign=fields[0], seq=int(fields[1]), time=fields[2], lat=float(fields[3]),
            lon=float(fields[4]), alt=int(fields[5]), sats=int(fields[6]),
            temp_c=_read_optional(fields[7]), pressure_hpa=_read_optional(fields[8]), batt_mv=int(fields[9]),
            boot=int(fields[10]),
        )
    except ValueError as e:
        raise WireError("sentence field invalid", f"UKHAS field does not parse: {e}") from e
    _check_finite(t)
    return t


def parse_hms(text: str) -> tuple[int, int, int]:
    """A telemetry time, 'HH:MM:SS', as (hours, minutes, seconds); WireError if it is not one."""
    parts = text.split(":")
    if len(parts) != 3 or not all(len(p) == 2 and p.isascii() and p.isdigit() for p in parts):
        raise WireError("bad time", f"time {text!r} is not HH:MM:SS")
    h, m, s = (int(p) for p in parts)
    if h > 23 or m > 59 or s > 59:
        raise WireError("bad time", f"time {text!r} is not a time of day")
    return h, m, s


def _none_if_nan(v: float) -> float | None:
    return None if math.isnan(v) else v


def _optional(v: float) -> str:
    return "" if math.isnan(v) else f"{v:.1f}"


def _read_optional(text: str) -> float:
    if text == "":
        return math.nan
    if text.strip().lower() in ("nan", "+nan", "-nan"):
        raise ValueError(f"{text!r}: a missing value is an empty field")
    return float(text)


def _check_finite(t: Telemetry) -> None:
    # float() reads "nan" and "inf"; neither is a position. A sensor without a reading is
    # NaN (an empty field on air); infinity is never a temperature.
    if not all(math.isfinite(v) for v in (t.lat, t.lon)) or any(
            math.isinf(v) for v in (t.temp_c, t.pressure_hpa)):
        raise WireError("telemetry not finite", f"sentence {t.seq} of boot {t.boot} holds nan or inf")
