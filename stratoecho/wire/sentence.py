"""UKHAS telemetry sentences: plain ASCII that every amateur HAB gateway decodes.

    $$CALLSIGN,seq,HH:MM:SS,lat,lon,alt,sats,temp_c,pressure_hpa,batt_mv,boot,0123456BR9I*CRC\\n

CRC16-CCITT over the characters between ``$$`` and ``*``, 4 upper-case hex digits.
The last field is the field-list token (see `ukhas.py`): it names every field, so
LoRa gateways label satellites, outside temperature, pressure and battery for
SondeHub without a payload document.

A sensor with no current reading (a BME280 that failed, an INA219 that stopped
answering) is left out of the sentence, and out of its token: ``...,7,871.2,4168,3,
0123456R9I``. Never an empty field: the LoRa gateway splits fields with strtok(),
which skips an empty one, so every later field would move one place and be uploaded
under the wrong name (the battery as pressure, the boot number as the battery); and
never a marker such as ``-``, which the gateway pastes into its JSON as it stands.
A stale value is never sent as if it were fresh; the position beacon never waits
for a thermometer. A missing temperature or pressure reads back as NaN, a missing
battery as 0 mV. Sentences without a token (older payloads) are read too, empty
fields included.

Signed: with the flight's downlink key, the payload's sentence carries its tag (`sentence_tag.py`)
as one more field, named ``J`` (the second of the tracker's free codes) in the field list, which
stays last: ``...,4168,3,K7Q2MXZTAB,0123456BR9IJ*CRC``. The tag covers the line without that
field, the field list included, so no field can be moved, relabelled or dropped. A LoRa gateway
uploads only the codes it knows (not J) and keeps the whole line as ``raw``; horusdemodlib reads
the first six fields and the checksum. A sentence without ``J`` is unsigned: a claim.

Altitude is whole metres from 0 up: below sea level (a launch by the Dead Sea, GPS noise at
a coastal site) it is sent as 0, because horusdemodlib refuses a sentence whose altitude
is below 0 or above 65535 (the range of the Horus binary format's unsigned field); the
LoRa gateway reads it with `%d` and would take either.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from .common import Kind, WireError, crc16_ccitt
from .downlink import DownlinkAuth
from .sentence_tag import is_tag, sentence_tag, tag_matches

FIELD_LIST = "0123456BR9I"  # callsign..alt, sats, B outside temp, R pressure, 9 battery mV, I boot
_TOKEN = re.compile(r"0123456B?R?9?IJ?")  # ours: the optional readings present, in this order; J: signed
TAG_CODE = "J"
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1  # an integer field's range: SQLite's INTEGER


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
    temp_c: float  # NaN: no current reading
    pressure_hpa: float  # NaN: no current reading
    batt_mv: int  # 0: no current reading (no monitor, or one that stopped answering)
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


def encode_sentence(t: Telemetry, auth: DownlinkAuth | None = None) -> bytes:
    """`t` as a UKHAS sentence; with `auth` (the downlink key), signed (module docstring)."""
    _check_finite(t)
    if not t.callsign or any(c in t.callsign for c in ",*$\n") or not t.callsign.isascii():
        raise WireError("bad callsign", f"callsign {t.callsign!r} must be plain ASCII without , * $ or newline")
    readings = [(code, text) for code, text in (
        ("B", _optional(t.temp_c)), ("R", _optional(t.pressure_hpa)), ("9", str(t.batt_mv) if t.batt_mv != 0 else ""),
    ) if text]
    token = "0123456" + "".join(code for code, _ in readings) + "I" + (TAG_CODE if auth is not None else "")
    fields = [f"{t.callsign},{t.seq},{t.time},{t.lat:.5f},{t.lon:.5f},{max(int(round(t.alt)), 0)},{t.sats}",
              *(text for _, text in readings), str(t.boot)]
    if auth is not None:
        fields.append(sentence_tag("$$" + ",".join([*fields, token]), auth))
    body = ",".join([*fields, token])
    return f"$${body}*{crc16_ccitt(body.encode('ascii')):04X}\n".encode("ascii")


def signed_content(sentence: bytes | str) -> tuple[str, str] | None:
    """(the content its tag covers, the tag) of a position sentence with a ``J`` field; None for
    an unsigned one. WireError if it is no sentence (`checked_body`)."""
    fields = checked_body(sentence).split(",")
    token = fields[-1]
    if not (token.startswith("012345") and TAG_CODE in token and len(token) == len(fields) - 1):
        return None
    i = token.index(TAG_CODE)
    return "$$" + ",".join(fields[:i] + fields[i + 1:]), fields[i]


def sentence_signed(sentence: bytes | str, auth: DownlinkAuth) -> bool:
    """The position sentence carries a tag that checks under `auth` (False: unsigned, forged,
    another flight's, or not a sentence at all)."""
    try:
        signed = signed_content(sentence)
    except WireError:
        return False
    return signed is not None and tag_matches(*signed, auth)


def checked_body(sentence: str | bytes) -> str:
    """What lies between a UKHAS sentence's ``$$`` and ``*``, once its checksum is checked;
    WireError saying what is wrong (not ASCII, no ``$$...*CRC`` shape, a bad checksum)."""
    if isinstance(sentence, (bytes, bytearray)):
        try:
            sentence = bytes(sentence).decode("ascii")
        except UnicodeDecodeError as e:
            raise WireError("sentence not ascii", "UKHAS sentence holds non-ASCII bytes") from e
    if not sentence.isascii():
        raise WireError("sentence not ascii", "UKHAS sentence holds non-ASCII characters")
    text = sentence.strip()
    if not text.startswith("$$") or "*" not in text:
        raise WireError("sentence malformed", "not a UKHAS sentence: expected $$...*CRC")
    body, _, crc_text = text[2:].rpartition("*")
    if len(crc_text) != 4 or not all(c in "0123456789ABCDEFabcdef" for c in crc_text):
        raise WireError("sentence malformed", f"UKHAS checksum {crc_text!r} is not 4 hex digits")
    if int(crc_text, 16) != crc16_ccitt(body.encode("ascii")):
        raise WireError("crc mismatch", "UKHAS checksum mismatch")
    return body


def decode_sentence(frame: bytes) -> Telemetry:
    fields = checked_body(frame).split(",")
    if fields[-1].startswith("012345"):
        token, fields = fields[-1], fields[:-1]
        if not _TOKEN.fullmatch(token):
            raise WireError("sentence field count", f"field list {token!r} is not ours (0123456, then B R 9 "
                                                    "for the readings present, then I)")
        if len(fields) != len(token):
            raise WireError("sentence field count", f"UKHAS sentence has {len(fields)} fields; its field list "
                                                    f"{token!r} names {len(token)}")
        if any(f == "" for f in fields):
            raise WireError("sentence field invalid", "empty field in a sentence with a field list")
        if TAG_CODE in token and not is_tag(fields[token.index(TAG_CODE)]):
            raise WireError("sentence field invalid", f"tag field {fields[token.index(TAG_CODE)][:20]!r} is not "
                                                      "ten base-32 characters")
    elif len(fields) == 11:
        token = FIELD_LIST  # no token: an older sentence, every field in place, empty for no reading
    else:
        raise WireError("sentence field count", f"UKHAS sentence has {len(fields)} fields, expected 11 and a field list")
    v = dict(zip(token, fields))
    try:
        t = Telemetry(
            callsign=v["0"], seq=int(v["1"]), time=v["2"], lat=float(v["3"]),
            lon=float(v["4"]), alt=int(v["5"]), sats=int(v["6"]),
            temp_c=_read_optional(v.get("B", "")), pressure_hpa=_read_optional(v.get("R", "")),
            batt_mv=int(v["9"]) if v.get("9", "") != "" else 0, boot=int(v["I"]),
        )
    except ValueError as e:
        raise WireError("sentence field invalid", f"UKHAS field does not parse: {e}") from e
    _check_finite(t)
    if (why := integer_out_of_range(t)) is not None:
        raise WireError("sentence field invalid", f"UKHAS sentence {why}")
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


def telemetry_datetime(hms: str, received: datetime) -> datetime:
    """The sentence's HH:MM:SS joined to the UTC date that puts it nearest to `received`.

    The payload sends no date. Taking the date of reception alone is wrong around
    midnight: a sentence stamped 23:59:58 heard at 00:00:03 belongs to the day before,
    one stamped 00:00:01 heard at 23:59:59 (ground clock slow) to the day after.
    Choosing among yesterday, today and tomorrow the one closest to `received` handles
    both, for any delay under 12 hours. WireError if `hms` is not a time of day.
    """
    h, m, s = parse_hms(hms)
    day: date = received.astimezone(timezone.utc).date()
    candidates = []
    for d in (-1, 0, 1):
        try:
            candidates.append(datetime.combine(day + timedelta(days=d), time(h, m, s), tzinfo=timezone.utc))
        except OverflowError:  # the calendar's first or last day (a station's wrong date): no day beyond it
            continue
    return min(candidates, key=lambda c: abs(c - received))


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


def integer_out_of_range(t: Telemetry) -> str | None:
    """Why an integer field of `t` is beyond a signed 64-bit integer, what the ground stores it as
    (a 40-digit altitude is no position, and its INSERT would raise), or None."""
    for name in ("seq", "alt", "sats", "batt_mv", "boot"):
        value = getattr(t, name)
        if not INT64_MIN <= value <= INT64_MAX:
            return f"{name} of {len(str(abs(value)))} digits does not fit a 64-bit integer"
    return None


def _check_finite(t: Telemetry) -> None:
    # float() reads "nan" and "inf"; neither is a position. A sensor without a reading is
    # NaN (an empty field on air); infinity is never a temperature.
    if not all(math.isfinite(v) for v in (t.lat, t.lon)) or any(
            math.isinf(v) for v in (t.temp_c, t.pressure_hpa)):
        raise WireError("telemetry not finite", f"sentence {t.seq} of boot {t.boot} holds nan or inf")
