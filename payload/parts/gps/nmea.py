"""NMEA framing: bytes from the port in (any chunking), `NmeaSentence` and `UbxFrame`
records out; it resynchronises on `$` (NMEA) and `0xB5 0x62` (UBX), and drops and counts
bad checksums, overlong or truncated lines and line noise, never raising."""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass

from .ubx import UBX_MAX_PAYLOAD, UbxFrame, ubx_checksum

NMEA_MAX_LINE = 120  # NMEA 0183 says 82 characters; u-blox stays under it, leave room


@dataclass(frozen=True)
class NmeaSentence:
    talker: str  # "GP", "GN", "GL", "GA", "BD"...
    kind: str  # "GGA", "RMC"...
    fields: tuple[str, ...]  # the comma-separated fields after the address


class NmeaParser:
    """Bytes in, `NmeaSentence` / `UbxFrame` out; `feed` may be given any chunking.

    Dropped input is counted in `errors`: "checksum" (NMEA checksum wrong or missing),
    "garbage" (runs of bytes outside any sentence or frame, or non-printable bytes in a
    line), "overlong" (no line end within NMEA_MAX_LINE), "truncated" (a new `$` before
    the line ended), "ubx_checksum", "ubx_length".
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.errors: Counter = Counter()
        self._in_garbage = False

    def feed(self, data: bytes) -> list[NmeaSentence | UbxFrame]:
        self._buf += data
        out: list[NmeaSentence | UbxFrame] = []
        buf = self._buf
        while buf:
            first = buf[0]
            if first == 0x24:  # "$"
                done = self._take_nmea(out)
            elif first == 0xB5:
                done = self._take_ubx(out)
            elif first in (0x0D, 0x0A):  # line ends between sentences
                del buf[0]
                continue
            else:
                self._skip_garbage()
                continue
            if not done:
                break  # wait for more bytes
        return out

    def _skip_garbage(self) -> None:
        """Drop bytes up to the next possible start; a run counts once."""
        buf = self._buf
        i = 1
        while i < len(buf) and buf[i] not in (0x24, 0xB5):
            i += 1
        del buf[:i]
        if not self._in_garbage:
            self.errors["garbage"] += 1
            self._in_garbage = True

    def _resync(self, reason: str) -> None:
        self.errors[reason] += 1
        del self._buf[0]
        self._in_garbage = True  # what follows up to the next start belongs to this error

    def _take_nmea(self, out: list) -> bool:
        buf = self._buf
        end = buf.find(b"\n", 0, NMEA_MAX_LINE)
        limit = end if end >= 0 else min(len(buf), NMEA_MAX_LINE)
        restart = buf.find(b"$", 1, limit)
        if restart < 0:
            restart = buf.find(b"\xb5\x62", 1, limit)
        if restart >= 0:
            self._resync("truncated")
            return True
        if end < 0:
            if len(buf) >= NMEA_MAX_LINE:
                self._resync("overlong")
                return True
            return False
        line = bytes(buf[1:end]).rstrip(b"\r")
        del buf[: end + 1]
        self._in_garbage = False
        if any(c < 0x20 or c > 0x7E for c in line):
            self.errors["garbage"] += 1
            return True
        body, star, given = line.partition(b"*")
        if not star or len(given) != 2:
            self.errors["checksum"] += 1
            return True
        calc = 0
        for c in body:
            calc ^= c
        try:
            ok = int(given, 16) == calc
        except ValueError:
            ok = False
        if not ok:
            self.errors["checksum"] += 1
            return True
        parts = body.decode("ascii").split(",")
        address = parts[0]
        if len(address) < 5:
            self.errors["garbage"] += 1
            return True
        if address.startswith("P"):  # proprietary: $PUBX,...
            out.append(NmeaSentence("P", address[1:], tuple(parts[1:])))
        else:
            out.append(NmeaSentence(address[:2], address[2:], tuple(parts[1:])))
        return True

    def _take_ubx(self, out: list) -> bool:
        buf = self._buf
        if len(buf) < 2:
            return False
        if buf[1] != 0x62:
            self._skip_garbage()
            return True
        if len(buf) < 6:
            return False
        (length,) = struct.unpack_from("<H", buf, 4)
        if length > UBX_MAX_PAYLOAD:
            self._resync("ubx_length")
            return True
        total = 6 + length + 2
        if len(buf) < total:
            return False
        body = bytes(buf[2 : 6 + length])
        if ubx_checksum(body) != bytes(buf[6 + length : total]):
            self._resync("ubx_checksum")
            return True
        del buf[:total]
        self._in_garbage = False
        out.append(UbxFrame(body[0], body[1], body[4:]))
        return True
