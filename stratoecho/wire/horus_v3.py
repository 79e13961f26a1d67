"""Horus Binary v3: Project Horus' ASN.1 telemetry frame (horusdemodlib's HorusBinaryV3.asn1).

v3 needs no payload id from Project Horus: the callsign is on the air. The frame is::

    +--------+------------------------------------------+----------------+
    | crc    | Telemetry, ASN.1 unaligned PER (uper.py)  | zero padding   |
    +--------+------------------------------------------+----------------+
      u16 LE   what the table below says we send            to 32, 48, 64, 96 or 128 bytes

- ``crc``: CRC16-CCITT (poly 0x1021, init 0xFFFF, no reflection, no xor) over every byte after
  it, padding included, stored little-endian at the *front* (where v2 keeps it at the end):
  horusdemodlib tries that first and takes a frame whose leading CRC holds as v3.
- The whole frame is one of the modem's fixed sizes, 32, 48, 64, 96 or 128 bytes (horusdemodlib's
  ``horus_v3_check_sizes``): the smallest that holds it, padded with zero bytes.

The fields we send, in the ASN.1 type's order (every value clamped to its declared range first,
so no reading, however wrong, makes a frame that cannot be encoded or that a decoder refuses)::

    ASN.1 field                       range              from Telemetry            bits
    payloadCallsign                   1..15 of 64 chars  callsign: other characters dropped, cut to 15   4 + 6/char
    sequenceNumber                    0..65535           seq mod 65536              16
    timeOfDaySeconds                  -1..86400          time (HH:MM:SS)            17
    latitude, longitude (x 100000)    ±9000000, ±18000000 lat, lon rounded to 1e-5 25, 26
    altitudeMeters                    -1000..50000       alt, to -999..50000; -1000 (invalid) if not finite  16
    gnssSatellitesVisible             0..31              sats                       5
    pressurehPa-x10                   0..12000           pressure_hpa; left out when NaN   14
    temperatureCelsius-x10.external   -1023..1023        temp_c; left out when NaN  4 + 11
    milliVolts.battery                0..16383           batt_mv; left out when 0   4 + 14
    counts[0]                         any INTEGER        boot                       3 + 8 + 8·octets
    via (extension)                   sondehub, nohub    given by a relay; left out otherwise  17

Temperature goes out as ``external``: Telemetry's temp_c is the outside air, and horus-gui
passes external temperature (``ext_temperature``) on in its UDP summary where it drops the
internal one. With a seven-character callsign the frame is 32 bytes; with via, or a callsign of
eight or more characters, 48. Decoding (`decode_horus_v3`) reads every field of the type but
``extraSensors`` (a frame that has them is refused: "horus v3 unsupported") and returns the
ones Telemetry holds; lat/lon come back to 5 decimals, temperature and pressure to 0.1.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

from .common import WireError, crc16_ccitt
from .sentence import Telemetry, parse_hms
from .uper import BitReader, BitWriter

FRAME_SIZES = (32, 48, 64, 96, 128)  # bytes, CRC included
CALLSIGN_ALPHABET = "-/0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"  # ASCII order
VIA = ("sondehub", "nohub", "unknown", "unknown", "unknown", "unknown", "unknown", "unknown")
_ROOT_OPTIONALS = 11  # extraSensors .. customData
_TEMP, _MV = (-1023, 1023), (0, 16383)


@dataclass(frozen=True)
class HorusV3Packet:
    """A decoded frame: the telemetry it carried, and what else the frame said."""

    telemetry: Telemetry
    via: str | None = None  # "sondehub", "nohub" or "unknown" when a relay set it
    speed_kmh: int | None = None
    size: int = 0  # bytes on the air, CRC and padding included


def v3_callsign(callsign: str) -> str:
    """`callsign` as v3 can carry it: characters outside its alphabet dropped, cut to 15."""
    kept = "".join(c for c in callsign if c in CALLSIGN_ALPHABET)[:15]
    if not kept:
        raise WireError("out of range", f"callsign {callsign!r} has no character Horus v3 can carry")
    return kept


def encode_horus_v3(t: Telemetry, via: str | None = None) -> bytes:
    """`t` as a Horus Binary v3 frame (module docstring); `via` ("sondehub"/"nohub") marks a relay."""
    callsign = v3_callsign(t.callsign)
    w = BitWriter()
    w.flag(via is not None)  # the extension bit
    temp = _finite_tenths(t.temp_c, *_TEMP)
    pressure = _finite_tenths(t.pressure_hpa, 0, 12000)
    battery = _clamp(t.batt_mv, *_MV) if t.batt_mv > 0 else None
    present = [False, False, True, False, pressure is not None, temp is not None, False,
               battery is not None, True, False, False]
    for on in present:
        w.flag(on)
    w.constrained(len(callsign) - 1, 0, 14)
    for c in callsign:
        w.bits(CALLSIGN_ALPHABET.index(c), 6)
    w.constrained(t.seq % 65536, 0, 65535)
    w.constrained(_seconds_of_day(t.time), -1, 86400)
    w.constrained(_degrees(t.lat, 90), -9000000, 9000000)
    w.constrained(_degrees(t.lon, 180), -18000000, 18000000)
    # -1000 says "invalid" in the type: a reading, however low, stops at -999
    w.constrained(_clamp(t.alt, -999, 50000) if _is_finite(t.alt) else -1000, -1000, 50000)
    w.constrained(_clamp(int(t.sats) if _is_finite(t.sats) else 0, 0, 31), 0, 31)
    if pressure is not None:
        w.constrained(pressure, 0, 12000)
    if temp is not None:
        for on in (False, True, False, False):  # internal, external, custom1, custom2
            w.flag(on)
        w.constrained(temp, *_TEMP)
    if battery is not None:
        for on in (True, False, False, False):  # battery, solar, custom1, custom2
            w.flag(on)
        w.constrained(battery, *_MV)
    w.constrained(1 - 1, 0, 7)  # counts: one
    w.unconstrained(_clamp(t.boot, 0, 2**31 - 1))
    if via is not None:
        if via not in ("sondehub", "nohub"):
            raise WireError("out of range", f"via {via!r} is not sondehub or nohub")
        w.small(0)  # one extension addition known to this version: via
        w.flag(True)
        inner = BitWriter()
        inner.constrained(VIA.index(via), 0, 7)
        w.length(len(inner.to_bytes()))
        w.extend(_padded(inner))
    body = w.to_bytes()
    size = next((n for n in FRAME_SIZES if n >= len(body) + 2), None)
    if size is None:  # cannot happen with the fields above; kept as the rule
        raise WireError("out of range", f"Horus v3 body of {len(body)} bytes exceeds 126")
    body += bytes(size - 2 - len(body))
    return struct.pack("<H", crc16_ccitt(body)) + body


def decode_horus_v3(frame: bytes) -> HorusV3Packet:
    """Unpack a Horus Binary v3 frame; raises `WireError` on a bad size, CRC or field."""
    if len(frame) not in FRAME_SIZES:
        raise WireError("horus length", f"Horus v3 frame is {len(frame)} bytes, not one of {FRAME_SIZES}")
    (crc,) = struct.unpack_from("<H", frame)
    if crc != crc16_ccitt(bytes(frame[2:])):
        raise WireError("crc mismatch", "Horus v3 frame CRC mismatch")
    r = BitReader(frame[2:])
    extended = r.flag()
    present = [r.flag() for _ in range(_ROOT_OPTIONALS)]
    n = r.constrained(0, 14, "callsign length") + 1
    callsign = "".join(CALLSIGN_ALPHABET[r.bits(6)] for _ in range(n))
    seq = r.constrained(0, 65535, "sequence")
    tod = r.constrained(-1, 86400, "time of day")
    lat = r.constrained(-9000000, 9000000, "latitude") / 100000
    lon = r.constrained(-18000000, 18000000, "longitude") / 100000
    alt = r.constrained(-1000, 50000, "altitude")
    if present[0]:
        raise WireError("horus v3 unsupported", "extraSensors are not read by this decoder")
    speed = r.constrained(0, 512, "speed") if present[1] else None
    sats = r.constrained(0, 31, "satellites") if present[2] else 0
    if present[3]:
        r.constrained(-32767, 32767, "ascent rate")
    pressure = r.constrained(0, 12000, "pressure") / 10 if present[4] else math.nan
    temp = math.nan
    if present[5]:
        temps = _optional_group(r, _TEMP, "temperature")
        temp = temps[1] / 10 if temps[1] is not None else math.nan
    if present[6]:
        r.constrained(0, 100, "humidity")
    battery = 0
    if present[7]:
        battery = _optional_group(r, _MV, "millivolts")[0] or 0
    boot = 0
    if present[8]:
        counts = [r.unconstrained() for _ in range(r.constrained(0, 7, "counts") + 1)]
        boot = max(counts[0], 0)
    if present[9]:
        r.constrained(0, 5, "GNSS power save state")
    if present[10]:
        r.skip_octets(r.constrained(0, 255, "custom data length"))
    via = _extensions(r) if extended else None
    if tod < 0:
        time = "00:00:00"
    elif tod == 86400:  # a leap second's 24:00:00
        time = "23:59:59"
    else:
        time = f"{tod // 3600:02d}:{tod // 60 % 60:02d}:{tod % 60:02d}"
    return HorusV3Packet(Telemetry(
        callsign=callsign, seq=seq, time=time, lat=lat, lon=lon, alt=alt, sats=sats,
        temp_c=temp, pressure_hpa=pressure, batt_mv=battery, boot=boot,
    ), via=via, speed_kmh=speed, size=len(frame))


def _extensions(r: BitReader) -> str | None:
    count = r.small() + 1
    present = [r.flag() for _ in range(count)]
    via = None
    for i, on in enumerate(present):
        if not on:
            continue
        octets = r.length()
        start = r.pos
        if i == 0:
            via = VIA[r.constrained(0, 7, "via")]
        r.pos = start
        r.skip_octets(octets)
    return via


def _optional_group(r: BitReader, bounds: tuple[int, int], name: str) -> list[int | None]:
    present = [r.flag() for _ in range(4)]
    return [r.constrained(*bounds, name) if on else None for on in present]


def _padded(w: BitWriter) -> BitWriter:
    out = BitWriter()
    for byte in w.to_bytes():
        out.bits(byte, 8)
    return out


def _seconds_of_day(hms: str) -> int:
    try:
        h, m, s = parse_hms(hms)
    except WireError:
        return -1  # "unknown", as the type says
    return h * 3600 + m * 60 + s


def _degrees(value: float, limit: int) -> int:
    if not _is_finite(value):
        return 0  # "no fix", as the type says
    return _clamp(value * 100000, -limit * 100000, limit * 100000)


def _finite_tenths(value: float, lo: int, hi: int) -> int | None:
    return _clamp(value * 10, lo, hi) if _is_finite(value) else None


def _is_finite(value) -> bool:
    try:
        return math.isfinite(value)
    except TypeError:
        return False


def _clamp(v, lo: int, hi: int) -> int:
    """`v` (int or finite float) rounded into lo..hi; clamped before rounding, so 1e308 is `hi`."""
    return int(round(min(hi, max(lo, v))))
