"""Musings as UKHAS text sentences: what someone with only a LoRa gateway can read.

Our musing record (``records``) is erasure-coded and repairable, but it is a binary frame
whose first byte (0xEC) a stock LoRa gateway (PiInTheSky lora-gateway) logs as an
"unknown packet type" and drops. What that gateway does pass on is a ``$$`` sentence with a
good checksum (gateway.c, sondehub.c): it logs the whole line, shows it, broadcasts it on its
UDP port, serves it on its JSON port, and uploads it to SondeHub-Amateur with its key fields
read by ``sscanf("%31[^,],%u,%8[^,],%lf,%lf,%d")`` and the whole line as ``raw`` — only when
latitude and longitude are both non-zero. SondeHub keeps ``raw`` with the position (its API
returns it); the tracker's map shows a position's ``comment`` but hides ``raw``, and the
gateway never sends ``comment``. So the form that gets furthest is a sentence with a
position and the text as its last field::

    $$STRATO1,57,12:04:13,52.10000,-0.10000,12345,musing 3.17 1/2,The sky is black above me;...*ABCD\\n

Fields 0-5 are a position sentence's (callsign, counter, time, lat, lon, alt) and say one
position: the last position sentence that went on air, with its number, stamped a second or
more after it (`restamp`, at the moment the line is keyed); so every gateway reads the line as
that position, and the track never steps back. The seventh, ``musing B.S P/N``, names the
musing record it copies (boot B, sequence S) and which part of how many this is; the eighth is
the text. Rules the gateway sets, and why:

- the whole line, ``$$`` to the line feed, at most 199 bytes (`GATEWAY_MAX_LINE`): the
  gateway drops lines of 250 bytes or more (ProcessTelemetryMessage), and its JSON port
  (server.c, SendJSON) formats each sentence into a 400-byte buffer with up to ~200 bytes of
  its own around it, so a longer line overruns that buffer while a client such as
  ``listen --gateway`` is connected. A musing longer than that goes as parts, cut between
  words, with room left for the longest prefix any restamp can give it;
- plain ASCII, and none of ``"`` ``\\`` (pasted unescaped into its JSON), ``*`` ``$`` (the
  checksum and the start of a sentence), ``,`` (fields, split by strtok) or control
  characters: `fold_text` writes the musing in those terms (é -> e, ’ -> ', — -> -, , -> ;);
- no part's text starting with ``012345``: sondehub.c takes the first ``,``/``*``-separated
  token that does for the sentence's field list, copies it into a 32-byte buffer and reads a
  field per character, past the end of the line (a segfault). Such a part starts with a space,
  which the gateway keeps and our decoder drops;
- each line a second later than the last ``$$`` line sent (`time`), because SondeHub merges
  uploads of one payload with the same time, and the tracker shows one of them.

No field-list token: the gateway uploads nothing from this sentence but its position and
``raw``. Our ground reads the parts back into the musing (`decode_musing_sentence`), folded
text and all, until the repairable record brings the exact one.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta

from .common import WireError, crc16_ccitt
from .sentence import checked_body, parse_hms

GATEWAY_MAX_LINE = 199  # bytes, "$$" to "\n": what the LoRa gateway's JSON port can frame (module docstring)
FIELD_LIST_MARK = "012345"  # a token starting so is a field list to the PITS gateway (sondehub.c)
MAX_PARTS = 9
MIN_TEXT = 20  # characters of text a part must have room for, or the frame is too small
_TAG = re.compile(r"musing (\d{1,5})\.(\d{1,10}) ([1-9])/([1-9])")
_FOLD = str.maketrans({
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'", "\u00b4": "'", "`": "'",
    "\u201c": "'", "\u201d": "'", "\u201e": "'", "\u2033": "'", '"': "'", "\u00ab": "'", "\u00bb": "'",
    "\u2013": "-", "\u2014": " - ", "\u2212": "-", "\u2010": "-", "\u2011": "-",
    "\u2026": "...", "\u00b0": " deg ", "\u00d7": "x", "\u00df": "ss", "\u00e6": "ae", "\u00c6": "AE",
    "\u0153": "oe", "\u0152": "OE", "\u00f8": "o", "\u00d8": "O", "\u0142": "l", "\u0141": "L", "\u00f0": "d",
    "\u00fe": "th", "\u0131": "i",
    ",": ";", "*": "x", "$": "S", "\\": "/",
})


@dataclass(frozen=True)
class MusingSentence:
    """One part of a musing as a UKHAS text sentence."""

    callsign: str
    counter: int  # the sentence counter of the position it carries
    time: str  # HH:MM:SS UTC
    lat: float
    lon: float
    alt: int
    boot: int  # the musing record this copies
    seq: int
    part: int  # 1-based
    parts: int
    text: str  # this part's text, folded


def fold_text(text: str) -> str:
    """The text in the characters every gateway passes on: ASCII letters, digits, spaces and
    punctuation but , * $ " \\ (see the module); accents dropped, other letters left out."""
    folded = unicodedata.normalize("NFKD", unicodedata.normalize("NFC", text).translate(_FOLD)).translate(_FOLD)
    kept = "".join(c if (c.isascii() and c.isprintable()) else (" " if c.isspace() else "") for c in folded
                   if not unicodedata.combining(c))
    return " ".join(kept.split())


def _line(body: str) -> bytes:
    return f"$${body}*{crc16_ccitt(body.encode('ascii')):04X}\n".encode("ascii")


def _prefix(callsign: str, counter: int, hms: str, lat: float, lon: float, alt: int, boot: int, seq: int,
            part: int, parts: int) -> str:
    return (f"{callsign},{counter},{hms},{lat:.5f},{lon:.5f},{max(int(round(alt)), 0)},"
            f"musing {boot}.{seq} {part}/{parts},")


def _widest_prefix(callsign: str, boot: int, seq: int) -> int:
    """The longest prefix a part of this musing can have whatever position stamps it: the
    largest counter, the farthest coordinates, an altitude of six digits, nine parts."""
    return len(_prefix(callsign, 2**32 - 1, "00:00:00", -89.99999, -179.99999, 999999, boot, seq, MAX_PARTS, MAX_PARTS))


def _field_list_safe(text: str) -> str:
    return " " + text if text.startswith(FIELD_LIST_MARK) else text


def encode_musing_sentences(callsign: str, counter: int, when: datetime, lat: float, lon: float, alt: float,
                            boot: int, seq: int, text: str, max_bytes: int = GATEWAY_MAX_LINE) -> list[bytes]:
    """The musing `text` as one or more sentences of at most `max_bytes` each (the line feed
    included), part i stamped `when` + i - 1 seconds; each leaves room for `restamp` to give it
    any other position. WireError when the text folds to nothing, when even a short part
    cannot fit, or when it needs more than MAX_PARTS parts."""
    max_bytes = min(max_bytes, GATEWAY_MAX_LINE)
    if not callsign or not callsign.isascii() or any(c in callsign for c in ',*$"\\\n'):
        raise WireError("bad callsign", f"callsign {callsign!r} must be plain ASCII without , * $ \" \\ or newline")
    if callsign.startswith(FIELD_LIST_MARK):
        raise WireError("bad callsign", f"callsign {callsign!r} starts with {FIELD_LIST_MARK}, which LoRa gateways "
                                        "take for a field list")
    words = fold_text(text).split(" ")
    if words == [""]:
        raise WireError("empty musing", "the musing has no characters a gateway can carry")
    # 8: "*CRC\n" (6) and a space a field-list-safe part may gain, with one to spare.
    room = max_bytes - _widest_prefix(callsign, boot, seq) - 8
    if room < MIN_TEXT:
        raise WireError("frame too small", f"a {max_bytes}-byte frame leaves {max(room, 0)} characters for a musing "
                                           f"part; {MIN_TEXT} at least are needed")
    chunks: list[str] = []
    for word in words:
        while len(word) > room:  # a word longer than a part (a URL): cut it
            chunks.append(word[:room])
            word = word[room:]
        if chunks and len(chunks[-1]) + 1 + len(word) <= room:
            chunks[-1] += " " + word
        else:
            chunks.append(word)
    if len(chunks) > MAX_PARTS:
        raise WireError("musing too long", f"the musing needs {len(chunks)} sentences of {max_bytes} bytes; "
                                           f"{MAX_PARTS} at most")
    return [_line(_prefix(callsign, counter, (when + timedelta(seconds=i)).strftime("%H:%M:%S"), lat, lon, alt,
                          boot, seq, i + 1, len(chunks)) + _field_list_safe(chunk))
            for i, chunk in enumerate(chunks)]


def restamp(frame: bytes, counter: int, when: datetime, lat: float, lon: float, alt: float) -> bytes:
    """The musing sentence `frame` carrying another position: the position sentence number
    `counter`'s coordinates, stamped `when`. Its part and text are kept; it fits wherever the
    original did (`encode_musing_sentences` left room for any position). WireError if `frame`
    is not a musing sentence."""
    s = decode_musing_sentence(frame)
    return _line(_prefix(s.callsign, counter, when.strftime("%H:%M:%S"), lat, lon, alt, s.boot, s.seq, s.part,
                         s.parts) + _field_list_safe(s.text))


def is_musing_sentence(frame: bytes) -> bool:
    """A ``$$`` line whose seventh field is a musing tag (checksum not checked here)."""
    fields = frame.split(b",", 7)
    return len(fields) == 8 and fields[0].startswith(b"$$") and fields[6].startswith(b"musing ")


def decode_musing_sentence(frame: bytes) -> MusingSentence:
    """One musing part back from its sentence; WireError naming what is wrong."""
    body = checked_body(frame)
    fields = body.split(",", 7)
    if len(fields) != 8:
        raise WireError("sentence field count", f"musing sentence has {len(fields)} fields, expected 8")
    tag = _TAG.fullmatch(fields[6])
    if tag is None:
        raise WireError("sentence field invalid", f"musing tag {fields[6]!r} is not 'musing BOOT.SEQ PART/PARTS'")
    parse_hms(fields[2])
    try:
        s = MusingSentence(callsign=fields[0], counter=int(fields[1]), time=fields[2], lat=float(fields[3]),
                           lon=float(fields[4]), alt=int(fields[5]), boot=int(tag[1]), seq=int(tag[2]),
                           part=int(tag[3]), parts=int(tag[4]), text=fields[7].lstrip(" "))
    except ValueError as e:
        raise WireError("sentence field invalid", f"musing sentence field does not parse: {e}") from e
    if s.part > s.parts or s.boot > 0xFFFF or s.seq > 0xFFFFFFFF:
        raise WireError("sentence field invalid", f"musing tag {fields[6]!r} is out of range")
    return s
