"""The UKHAS field-list token: one extra sentence field that names every field.

A tracker may end its sentence with a token such as ``0123456BR9I``: character
*i* names field *i* (the callsign is field 0), so a receiver can label extra
fields without a payload document. LoRa Gateway (PiInTheSky/lora-gateway,
sondehub.c ``ExtractFields``) finds it as the first comma/asterisk-separated
field starting with ``012345`` and uploads the fields it knows to SondeHub
amateur under the names below; FlexTrack (daveake, misc.ino) builds sentences
from the same letters. Mapping, with its source:

    code  field                          name here         source
    ----  -----------------------------  ----------------  -------------------------------
     0    payload callsign               payload_callsign  both (fields 0-5 are fixed UKHAS)
     1    sentence counter               sentence_id       both
     2    time HH:MM:SS                  time              both
     3    latitude                       lat               both
     4    longitude                      lon               both
     5    altitude, m                    alt               both
     6    satellites                     sats              gateway -> "sats"
     7    speed                          vel_h             gateway -> "vel_h"
     8    heading                        heading           gateway -> "heading"
     9    battery: V if it has a '.',    batt (volts)      gateway -> "batt", mV / 1000
          else mV
     A    internal temperature, °C       temp              gateway -> "temp"
     B    external temperature, °C       ext_temperature   gateway -> "ext_temperature"
     C    predicted landing latitude     pred_lat          gateway -> "pred_lat"
     D    predicted landing longitude    pred_lon          gateway -> "pred_lon"
     E    cutdown status                 cutdown_status    FlexTrack
     F    last uplink packet SNR         last_snr          FlexTrack
     G    last uplink packet RSSI        last_rssi         FlexTrack
     H    received command count         uplink_count      FlexTrack
    I-N   free extra fields              (extra_names)     FlexTrack ("ExtraFields")
     O    maximum altitude, m            max_alt           FlexTrack
     R    pressure, hPa                  pressure          gateway -> "pressure"

Our sentence (``wire.encode_sentence``) is callsign, seq, time, lat, lon, alt,
sats, temp_c (outside air: B), pressure_hpa (R), batt_mv (9, integer mV),
boot (I, the first free extra field; the gateway ignores it): ``0123456BR9I``.
A reading with no current value is left out together with its code (``0123456R9I``
without the outside temperature): the gateway's strtok() would skip an empty field
and shift every later one, and pastes each value into its JSON as it stands.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from .common import WireError
from .sentence import checked_body, decode_sentence, encode_sentence

FIELD_NAMES: dict[str, str] = {
    "0": "payload_callsign", "1": "sentence_id", "2": "time", "3": "lat", "4": "lon", "5": "alt",
    "6": "sats", "7": "vel_h", "8": "heading", "9": "batt", "A": "temp", "B": "ext_temperature",
    "C": "pred_lat", "D": "pred_lon", "E": "cutdown_status", "F": "last_snr", "G": "last_rssi",
    "H": "uplink_count", "O": "max_alt", "R": "pressure",
}
# Codes I-N are the tracker's free fields; this is what stratoecho puts there.
STRATOECHO_EXTRAS: dict[str, str] = {"I": "boot"}
# Our sentence's fields, in wire.encode_sentence's order.
_OUR_FIELDS = "0123456BR9I"
_TEXT_CODES = frozenset("02")  # callsign and time stay strings
_TOKEN = re.compile(r"012345[0-9A-Za-z]*")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)")  # float() would also take "nan", "inf", "1_0"


def field_list() -> str:
    """The field-list token describing `wire.encode_sentence`'s fields."""
    return _OUR_FIELDS


def with_field_list(sentence: bytes) -> bytes:
    """`sentence` (ours, perhaps from an older payload without a token) as `wire.encode_sentence`
    writes it now: its field-list token naming exactly the fields it carries."""
    return encode_sentence(decode_sentence(sentence))


def parse_sentence_with_fields(
    text: str | bytes, *, extra_names: Mapping[str, str] = STRATOECHO_EXTRAS,
) -> dict[str, str | int | float]:
    """Check a sentence's CRC and name its fields by its trailing field-list token.

    Callsign and time stay strings, other values become int or float; battery is
    returned in volts, as the gateway uploads it. Codes without a known name are
    keyed ``field_<code>``. Raises `WireError` if the sentence is malformed, has
    no token, or the token does not name every field.
    """
    body = checked_body(text)
    *fields, token = body.split(",")
    if not _TOKEN.fullmatch(token):
        raise WireError("no field list", f"last field {token!r} is not a field-list token (012345...)")
    if len(token) != len(fields) or len(set(token)) != len(token):
        raise WireError("field list mismatch", f"token {token!r} does not name the {len(fields)} fields once each")
    out: dict[str, str | int | float] = {}
    for code, value in zip(token, fields):
        name = FIELD_NAMES.get(code) or extra_names.get(code) or f"field_{code}"
        out[name] = value if code in _TEXT_CODES else _number(name, value)
    if "batt" in out and "." not in fields[token.index("9")]:
        out["batt"] = out["batt"] / 1000  # integer battery is mV; the convention reports volts
    return out


def _number(name: str, value: str) -> int | float:
    if not _NUMBER.fullmatch(value):
        raise WireError("sentence field invalid", f"field {name} = {value!r} is not a number")
    try:
        number = float(value) if "." in value else int(value)
    except ValueError as e:  # int() refuses more than 4300 digits
        raise WireError("sentence field invalid", f"field {name} is too long a number") from e
    try:
        finite = math.isfinite(number)  # a long enough digit string overflows a float to inf
    except OverflowError:  # and an integer of over 308 digits does not fit a float at all
        finite = False
    if not finite:
        raise WireError("sentence field invalid", f"field {name} = {value[:20]!r}... is not a finite number")
    return number
