"""KISS framing: how frames cross the serial line to and from a KISS TNC (pure, no I/O).

KISS (Chepponis and Karn, 1987) wraps each frame in FEND bytes and escapes the two
special bytes inside it::

    +------+---------+---------------------------+------+
    | FEND | command | data, escaped             | FEND |
    | 0xC0 | port|cmd| 0xC0 -> DB DC, 0xDB -> DB DD | 0xC0 |
    +------+---------+---------------------------+------+
             high nibble: TNC port 0..15
             low nibble: command type (0 = data frame; 1..6 set TNC parameters;
             0xFF = leave KISS mode)

FEND is 0xC0, FESC 0xDB, TFEND 0xDC, TFESC 0xDD. A FEND both ends one frame and
starts the next, so back-to-back FENDs (sent by many TNCs to flush line noise) are
empty frames and mean nothing.

`kiss_encode` wraps one data frame. `KissDecoder.feed` takes whatever a serial read
returned and gives back the data frames it completed; frames may be split across
reads or several may come in one. It never raises on bad input; instead:

* bytes before the first FEND (the middle of a frame we tuned in to) are skipped;
* a FESC followed by anything but TFEND/TFESC drops the frame (``kiss bad escape``);
  the spec would keep assembling, but a corrupted frame is better lost here than
  passed on (the wire CRC would reject it anyway);
* a frame longer than `max_frame` data bytes is dropped (``kiss frame too long``),
  without buffering more than one escaped maximum-size frame;
* frames with another command type (TNC parameters, vendor extensions), or for
  another port when `port` is given, are ignored and counted in `ignored`.
"""

from __future__ import annotations

import re
from collections import Counter

FEND = 0xC0
FESC = 0xDB
TFEND = 0xDC
TFESC = 0xDD
DATA = 0x00  # command type of a data frame
MAX_FRAME = 255  # the largest LoRa payload; nothing we send is longer

_FEND = bytes([FEND])
_BAD_ESCAPE = re.compile(rb"\xdb(?![\xdc\xdd])")  # a FESC not followed by TFEND/TFESC


def kiss_encode(frame: bytes, port: int = 0) -> bytes:
    """One data frame for TNC `port` (0..15), FEND-delimited and escaped."""
    if not 0 <= port <= 15:
        raise ValueError(f"KISS port {port} outside 0..15")
    # The command byte is escaped too: port 12 makes it 0xC0, a FEND.
    body = bytes([port << 4 | DATA]) + bytes(frame)
    # FESC first, or the FESCs that escape FENDs would be escaped again.
    body = body.replace(b"\xdb", b"\xdb\xdd").replace(b"\xc0", b"\xdb\xdc")
    return _FEND + body + _FEND


class KissDecoder:
    """Streaming KISS deframer: `feed(chunk)` -> the data frames completed by `chunk`.

    `errors` counts dropped frames by reason, `ignored` the well-formed frames that
    were not data for us, `skipped_bytes` what came before the first FEND.
    """

    def __init__(self, max_frame: int = MAX_FRAME, port: int | None = None) -> None:
        self.max_frame = max_frame
        self.port = port
        self.errors: Counter = Counter()
        self.ignored = 0
        self.frames = 0
        self.skipped_bytes = 0
        self._synced = False  # seen a FEND: what follows is a frame's inside
        self._raw = bytearray()  # the current frame, still escaped
        self._too_long = False
        # Escaping at most doubles a frame (command byte included): beyond this it is too long.
        self._raw_limit = 2 * (max_frame + 1)

    def feed(self, chunk: bytes) -> list[bytes]:
        out: list[bytes] = []
        parts = bytes(chunk).split(_FEND)
        self._take(parts[0])  # continues the frame in progress
        for part in parts[1:]:  # each follows a FEND, which closes the frame in progress
            self._close(out)
            self._take(part)
        return out

    def _take(self, part: bytes) -> None:
        if not self._synced:
            self.skipped_bytes += len(part)
        elif not self._too_long:
            self._raw += part
            if len(self._raw) > self._raw_limit:
                self._too_long = True
                self._raw.clear()  # bounded memory whatever the line sends

    def _close(self, out: list[bytes]) -> None:
        raw, too_long = bytes(self._raw), self._too_long
        self._raw.clear()
        self._too_long = False
        was_synced, self._synced = self._synced, True
        if not was_synced:
            return
        if too_long:
            self.errors["kiss frame too long"] += 1
            return
        if not raw:
            return  # back-to-back FENDs
        if _BAD_ESCAPE.search(raw):
            self.errors["kiss bad escape"] += 1
            return
        # Every FESC now starts a valid pair. TFEND pairs go first: undoing TFESC first would
        # turn an escaped FESC followed by a literal 0xDC into a FEND.
        body = raw.replace(b"\xdb\xdc", b"\xc0").replace(b"\xdb\xdd", b"\xdb")
        command, data = body[0], body[1:]
        if command & 0x0F != DATA or (self.port is not None and command >> 4 != self.port):
            self.ignored += 1
            return
        if len(data) > self.max_frame:
            self.errors["kiss frame too long"] += 1
            return
        self.frames += 1
        out.append(data)
