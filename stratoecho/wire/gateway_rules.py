"""What a stock LoRa gateway demands of the lines we put on air, checked frame by frame.

The PiInTheSky LoRa gateway (lora-gateway: gateway.c, server.c, sondehub.c) is what most
listeners run. Its rules, in our words, from its source:

- a line starting ``$$`` is telemetry: its CRC16 (``*`` and four hex digits) must match, and a
  line of 250 bytes or more is dropped; its JSON port formats every line into a 400-byte buffer
  with up to ~200 bytes of its own, so a line of more than 199 bytes (line feed included)
  overruns that buffer while a client is connected (`musing_sentence.GATEWAY_MAX_LINE`);
- it reads the key fields with ``sscanf("%31[^,],%u,%8[^,],%lf,%lf,%d")``: callsign, counter,
  time, latitude, longitude, altitude;
- for SondeHub it splits the whole line with ``strtok(",*")`` and takes the first token that
  starts with ``012345`` as the field list: copied into 32 bytes, then one further token read
  per character, each labelled value formatted into 64 bytes. A field list longer than 31
  characters, one naming more fields than the line has, or a labelled value too long, is memory
  the gateway does not own (a segfault was seen);
- it pastes the line into its JSON unescaped: no ``"`` or ``\\``;
- SondeHub keeps one upload per payload and time, and the gateway's track and ascent rate
  follow the order lines arrive: every line's time later than the last one's of the same
  callsign, its counter never lower. The same line again (a sentence re-sent whole) is the same
  upload, and allowed. Lines of another callsign (a relayed flight's, which a relaying balloon
  repeats as heard) are another payload's track, in an order of their own.

`check_air(frames)` applies them to every frame in the order it went on air (HABpack
positions take part in the order); frames that are not ``$$`` lines or HABpack are not a
gateway's business here (records start 0xEC, SSDV 0x66/0x67: it files or ignores them).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .common import WireError, crc16_ccitt
from .habpack import FIRST_BYTES as HABPACK_FIRST_BYTES
from .habpack import decode_habpack
from .musing_sentence import FIELD_LIST_MARK, GATEWAY_MAX_LINE
from .sentence import parse_hms

FIELD_LIST_MAX = 31  # characters: FieldList[32] in sondehub.c
VALUE_MAX = 40  # characters of a labelled value: Value[64] holds it with its JSON name around it
LABELLED = frozenset("6789ABCDR")  # the codes sondehub.c formats into a value
_KEY_FIELDS = re.compile(r"\$\$([^,]{1,31}),(\d{1,10}),(\d\d:\d\d:\d\d),(-?\d+(?:\.\d+)?),(-?\d+(?:\.\d+)?),(-?\d+)[,*]")
_DAY = 86400


@dataclass(frozen=True)
class Violation:
    index: int  # the frame's place in what went on air, from 0
    rule: str  # a short, stable name: length, checksum, key fields, field list, json, time order, counter order
    detail: str

    def __str__(self) -> str:
        return f"frame {self.index}: {self.rule}: {self.detail}"


def check_line(line: bytes) -> list[tuple[str, str]]:
    """(rule, detail) for each rule one ``$$`` line breaks on its own."""
    out = []
    if len(line) > GATEWAY_MAX_LINE:
        out.append(("length", f"{len(line)} bytes; at most {GATEWAY_MAX_LINE} with the line feed"))
    if not line.endswith(b"\n") or b"\n" in line[:-1]:
        out.append(("line end", "one line feed, at the end"))
    try:
        text = line.rstrip(b"\n").decode("ascii")
    except UnicodeDecodeError:
        return out + [("ascii", "bytes outside ASCII")]
    if any(not c.isprintable() for c in text):
        out.append(("ascii", "control characters in the line"))
    if '"' in text or "\\" in text:
        out.append(("json", "a \" or \\ the gateway pastes unescaped into its JSON"))
    star = text.rfind("*")
    if star < 0 or not re.fullmatch(r"[0-9A-F]{4}", text[star + 1:]) \
            or int(text[star + 1:], 16) != crc16_ccitt(text[2:star].encode("ascii")):
        out.append(("checksum", "no *CRC of four upper-case hex digits matching the line"))
    if _KEY_FIELDS.match(text) is None:
        out.append(("key fields", "callsign, counter, HH:MM:SS, lat, lon, alt as the gateway's sscanf reads them"))
    tokens = [t for t in re.split(r"[,*]", text) if t]
    field_list = next((t for t in tokens if t.startswith(FIELD_LIST_MARK)), None)
    if field_list is not None:
        where = tokens.index(field_list)
        if len(field_list) > FIELD_LIST_MAX:
            out.append(("field list", f"{field_list[:12]!r}... is {len(field_list)} characters; the gateway keeps "
                                      f"{FIELD_LIST_MAX}"))
        elif len(field_list) > len(tokens):
            out.append(("field list", f"{field_list!r} names {len(field_list) - 1} fields; the line has "
                                      f"{len(tokens) - 1} after the callsign"))
        elif where != len(tokens) - 2:
            out.append(("field list", f"a token starting {FIELD_LIST_MARK} in field {where}, not the last before "
                                      "the checksum: text the gateway takes for its field list"))
        else:
            for code, value in zip(field_list[1:], tokens[1:]):
                if code in LABELLED and (len(value) > VALUE_MAX or not re.fullmatch(r"-?\d+(\.\d+)?", value)):
                    out.append(("field list", f"field {code} is {value[:20]!r}: not a number of at most "
                                              f"{VALUE_MAX} characters"))
    return out


def _when(frame: bytes) -> tuple[str, int, int] | None:
    """(callsign, seconds of the day, counter) a position or musing line says; None if it says none."""
    try:
        if frame[:2] == b"$$":
            m = _KEY_FIELDS.match(frame.decode("ascii", "replace"))
            if m is None:
                return None
            h, mi, s = parse_hms(m[3])
            return m[1], h * 3600 + mi * 60 + s, int(m[2])
        t = decode_habpack(frame)
        h, mi, s = parse_hms(t.time)
        return t.callsign, h * 3600 + mi * 60 + s, t.seq
    except (WireError, ValueError):
        return None


def check_air(frames: Iterable[bytes]) -> list[Violation]:
    """Every rule broken by what went on air, in that order: each line's own, and the order of
    times and counters across one callsign's ``$$`` lines and HABpack positions (across midnight too)."""
    out: list[Violation] = []
    last: dict[str, tuple[int, int, int, bytes]] = {}  # callsign -> (index, seconds of day, counter, line)
    for i, frame in enumerate(frames):
        if frame[:2] == b"$$":
            out += [Violation(i, rule, detail) for rule, detail in check_line(frame)]
        elif not (frame[:1] and frame[0] in HABPACK_FIRST_BYTES):
            continue
        when = _when(frame)
        if when is None:
            continue
        callsign, at, counter = when
        before = last.get(callsign)
        if before is not None and frame == before[3]:
            continue
        if before is not None:
            step = (at - before[1]) % _DAY
            if step == 0 or step > _DAY // 2:
                out.append(Violation(i, "time order", f"{_hms(at)} after {_hms(before[1])} (frame {before[0]}): "
                                                      "SondeHub keeps one upload a second, and a track must not step back"))
            if counter < before[2]:
                out.append(Violation(i, "counter order", f"counter {counter} after {before[2]} (frame {before[0]})"))
        last[callsign] = (i, at, counter, frame)
    return out


def _hms(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
