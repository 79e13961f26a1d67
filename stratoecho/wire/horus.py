"""Horus Binary v2: the 32-byte 4FSK telemetry frame of Project Horus (horusdemodlib).

All fields little-endian, struct ``<HH3sffHBBbB9sH``::

     0        2        4  5  6  7         11        15       17  18  19  20  21              30      32
    +--------+--------+--+--+--+---------+---------+--------+---+---+---+---+---------------+-------+
    | id     | seq    |h |m |s | lat     | lon     | alt    |spd|sat|tmp|bat| custom (9)    | crc   |
    +--------+--------+--+--+--+---------+---------+--------+---+---+---+---+---------------+-------+
      u16      u16     u8 u8 u8  f32 deg   f32 deg   u16 m    u8  u8  i8  u8                  u16

    custom (9 bytes, ``<hhBHH``) — the default layout horusdemodlib applies to any
    payload id without its own entry ("4FSKTEST-V2", the RS41ng defaults), so every
    Horus decoder already names our bytes:

      21  i16  ascent rate, cm/s           always 0: Telemetry carries none
      23  i16  external temperature, 0.1 °C  Telemetry.temp_c
      25  u8   external humidity, %        always 0: we fly no hygrometer
      26  u16  external pressure, 0.1 hPa  Telemetry.pressure_hpa
      28  u16  boot counter (stratoecho)   in the 2 bytes that layout pads, so decoders skip it

- ``crc``: CRC16-CCITT (poly 0x1021, init 0xFFFF, no reflection, no final xor —
  ``binascii.crc_hqx(data, 0xFFFF)``, as horusdemodlib's checksums.py computes it)
  over bytes 0-29, stored little-endian.
- ``id``: the payload id Project Horus allocates (its payload_id_list.txt);
  horusdemodlib warns below 256. The callsign is not on the air.
- ``seq`` and the boot counter are 16 bits on the air: they wrap modulo 65536.
- ``tmp`` is whole °C (rounded, saturating at -128..127); the 0.1 °C value rides
  in the custom bytes and is what decoding returns.
- ``bat``: 0-255 for 0-5 V (horusdemodlib's battery_5v_byte), so ~20 mV steps.
- ``spd`` is 0: Telemetry carries no speed.
- Altitude, satellites, temperatures and pressure saturate at their field's
  range rather than fail: the beacon must go out whatever a sensor says.
- Decoding rounds lat/lon to 5 decimals, the UKHAS sentence's resolution, as
  horusdemodlib's own UKHAS line does. float32 is within 3.8e-6 degree below
  128 degrees (so a 5-decimal position comes back exact) and 7.6e-6 above; the
  round trip stays within 1.3e-5 degree (1.4 m) everywhere.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

from .common import WireError, crc16_ccitt
from .sentence import Telemetry, parse_hms

PACKET = struct.Struct("<HH3sffHBBbB9sH")
CUSTOM = struct.Struct("<hhBHH")
PACKET_BYTES = PACKET.size  # 32
assert PACKET_BYTES == 32 and CUSTOM.size == 9
_BATTERY_FULL_SCALE_MV = 5000  # 255 on the air


@dataclass(frozen=True)
class HorusPacket:
    """A decoded frame: the on-air payload id and the telemetry it carried."""

    payload_id: int
    telemetry: Telemetry


def encode_horus(t: Telemetry, payload_id: int) -> bytes:
    """Pack `t` as a 32-byte Horus Binary v2 frame under `payload_id` (0-65535)."""
    if not 0 <= payload_id <= 0xFFFF:
        raise WireError("out of range", f"payload id {payload_id} is not a u16")
    if not all(math.isfinite(v) for v in (t.lat, t.lon, t.alt, t.temp_c, t.pressure_hpa)):
        raise WireError("telemetry not finite", f"sentence {t.seq} of boot {t.boot} holds nan or inf")
    if not -90 <= t.lat <= 90 or not -180 <= t.lon <= 180:
        raise WireError("out of range", f"position {t.lat}, {t.lon} is not on Earth")
    if t.seq < 0 or t.boot < 0:
        raise WireError("out of range", f"seq {t.seq} and boot {t.boot} must not be negative")
    custom = CUSTOM.pack(
        0,
        _clamp(round(t.temp_c * 10), -32768, 32767),
        0,
        _clamp(round(t.pressure_hpa * 10), 0, 0xFFFF),
        t.boot & 0xFFFF,
    )
    body = PACKET.pack(
        payload_id,
        t.seq & 0xFFFF,
        bytes(parse_hms(t.time)),
        t.lat,
        t.lon,
        _clamp(round(t.alt), 0, 0xFFFF),
        0,
        _clamp(int(t.sats), 0, 255),
        _clamp(round(t.temp_c), -128, 127),
        _clamp(round(t.batt_mv * 255 / _BATTERY_FULL_SCALE_MV), 0, 255),
        custom,
        0,
    )[:-2]
    return body + struct.pack("<H", crc16_ccitt(body))


def decode_horus(packet: bytes, callsign: str | None = None) -> HorusPacket:
    """Unpack a 32-byte Horus Binary v2 frame; raises `WireError` on a bad length, CRC or field.

    `callsign` names the payload in the returned Telemetry (the air carries only the
    id); without it the callsign is ``HORUS-<id>``.
    """
    if len(packet) != PACKET_BYTES:
        raise WireError("horus length", f"Horus v2 frame is {len(packet)} bytes, not {PACKET_BYTES}")
    (crc,) = struct.unpack_from("<H", packet, PACKET_BYTES - 2)
    if crc != crc16_ccitt(bytes(packet[:-2])):
        raise WireError("crc mismatch", "Horus v2 frame CRC mismatch")
    pid, seq, hms, lat, lon, alt, _speed, sats, _temp_whole, batt, custom, _ = PACKET.unpack(bytes(packet))
    _ascent, temp_tenths, _humidity, pressure_tenths, boot = CUSTOM.unpack(custom)
    h, m, s = hms
    if h > 23 or m > 59 or s > 59:
        raise WireError("horus field invalid", f"time {h}:{m}:{s} is not a time of day")
    if not (math.isfinite(lat) and math.isfinite(lon)) or not -90 <= lat <= 90 or not -180 <= lon <= 180:
        raise WireError("horus field invalid", f"position {lat}, {lon} is not on Earth")
    return HorusPacket(pid, Telemetry(
        callsign=callsign or f"HORUS-{pid}",
        seq=seq,
        time=f"{h:02d}:{m:02d}:{s:02d}",
        lat=round(lat, 5),
        lon=round(lon, 5),
        alt=alt,
        sats=sats,
        temp_c=temp_tenths / 10,
        pressure_hpa=pressure_tenths / 10,
        batt_mv=round(batt * _BATTERY_FULL_SCALE_MV / 255),
        boot=boot,
    ))


def _clamp(v: int, lo: int, hi: int) -> int:
    return min(hi, max(lo, v))

