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

    $$STRATO1,57,12:04:13,52.10000,-0.10000,12345,musing 3.17 1/2 12:01:40 K7Q2MXZTAB,The sky is black above me;...*ABCD\\n

Fields 0-5 are a position sentence's (callsign, counter, time, lat, lon, alt) and say one
position: the last position sentence that went on air, with its number, stamped a second or
more after it (`restamp`, at the moment the line is keyed); so every gateway reads the line as
that position, and the track never steps back. The seventh, ``musing B.S P/N HH:MM:SS``, names
the musing record it copies (boot B, sequence S), which part of how many this is, and the time
(UTC) the musing was made: the line's own time says when it went on air, which can be minutes
later, and the label is the one field a restamp keeps but for its last word: the flight's tag
(`sentence_tag.py`), ten base-32 characters over the line without it, made anew at each restamp
(a line without one is unsigned: a claim). Lines from older payloads have no made time
(``musing B.S P/N``) and still decode. The eighth is the text. Rules the gateway sets,
and why:

- the whole line, ``$$`` to the line feed, at most 199 bytes (`GATEWAY_MAX_LINE`): the
  gateway drops lines of 250 bytes or more (ProcessTelemetryMessage), and its JSON port
  (server.c, SendJSON) formats each sentence into a 400-byte buffer with up to ~200 bytes of
  its own around it, so a longer line overruns that buffer while a client such as
  ``listen --gateway`` is connected. A musing longer than that goes as parts, cut between
  words, with room left for the longest prefix any restamp can give it (`musing_text_room`,
  the made time included). It goes as the fewest parts that hold it (`parts_needed`), cut as
  evenly as the words allow, not filled one by one: each part is a whole sentence on air
  (~15 s in the slowest LoRa mode), so a full part and a one-word tail would spend a
  sentence's time on a word. No part is shorter than MIN_PART characters where the words
  allow it (`encode_musing_sentences` says when they do not);
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
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from .common import WireError, crc16_ccitt
from .downlink import DownlinkAuth
from .sentence import checked_body, parse_hms
from .sentence_tag import TAG_CHARS, sentence_tag, tag_matches

GATEWAY_MAX_LINE = 199  # bytes, "$$" to "\n": what the LoRa gateway's JSON port can frame (module docstring)
FIELD_LIST_MARK = "012345"  # a token starting so is a field list to the PITS gateway (sondehub.c)
MAX_PARTS = 9
MIN_TEXT = 20  # characters of text a part must have room for, or the frame is too small
MIN_PART = 25  # characters: no part of a musing cut into several is shorter, where the words allow it
_TAG = re.compile(r"musing (\d{1,5})\.(\d{1,10}) ([1-9])/([1-9])(?: (\d\d:\d\d:\d\d))?(?: ([A-Z2-7]{10}))?")
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
    time: str  # HH:MM:SS UTC: when the line went on air (`restamp`)
    lat: float
    lon: float
    alt: int
    boot: int  # the musing record this copies
    seq: int
    part: int  # 1-based
    parts: int
    text: str  # this part's text, folded
    made: str | None = None  # HH:MM:SS UTC the musing was made, when the tag says it (older lines do not)
    signature: str | None = None  # the flight's tag (`sentence_tag.py`); None: an unsigned line, a claim


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
            part: int, parts: int, made: str | None) -> str:
    tag = f"musing {boot}.{seq} {part}/{parts}" + (f" {made}" if made is not None else "")
    return f"{callsign},{counter},{hms},{lat:.5f},{lon:.5f},{max(int(round(alt)), 0)},{tag},"


def _signed(prefix: str, text: str, auth: DownlinkAuth | None) -> bytes:
    """The line of `prefix` (ending in its label and a comma) and `text`; with `auth`, the
    flight's tag at the end of the label, over the line without it (`sentence_tag.py`)."""
    if auth is None:
        return _line(prefix + text)
    tag = sentence_tag("$$" + prefix + text, auth)
    return _line(f"{prefix[:-1]} {tag},{text}")


def _widest_prefix(callsign: str, boot: int, seq: int) -> int:
    """The longest prefix a part of this musing can have whatever position stamps it: the
    largest counter, the farthest coordinates, an altitude of six digits, nine parts, and a
    made time and the flight's tag (reserved whether or not the musing carries them, so a part's
    room never depends on them)."""
    return len(_prefix(callsign, 2**32 - 1, "00:00:00", -89.99999, -179.99999, 999999, boot, seq, MAX_PARTS,
                       MAX_PARTS, "00:00:00")) + 1 + TAG_CHARS


def _check_callsign(callsign: str) -> None:
    if not callsign or not callsign.isascii() or any(c in callsign for c in ',*$"\\\n'):
        raise WireError("bad callsign", f"callsign {callsign!r} must be plain ASCII without , * $ \" \\ or newline")
    if callsign.startswith(FIELD_LIST_MARK):
        raise WireError("bad callsign", f"callsign {callsign!r} starts with {FIELD_LIST_MARK}, which LoRa gateways "
                                        "take for a field list")


def musing_text_room(callsign: str, boot: int, seq: int, max_bytes: int = GATEWAY_MAX_LINE) -> int:
    """The characters of folded text one part of musing (`boot`, `seq`) can carry in a line of
    at most `max_bytes` (and never more than `GATEWAY_MAX_LINE`), whatever position `restamp`
    gives it and whether or not it carries its made time; 0 if none. `encode_musing_sentences`
    refuses a room under MIN_TEXT. WireError for a callsign no sentence can carry."""
    _check_callsign(callsign)
    # 8: "*CRC\n" (6) and a space a field-list-safe part may gain, with one to spare.
    return max(min(max_bytes, GATEWAY_MAX_LINE) - _widest_prefix(callsign, boot, seq) - 8, 0)


def _cuts(text: str, room: int) -> list[tuple[int, int]]:
    """Where in the folded `text` a part may end and the next begin, (end, start), in order: at
    each space (which neither part keeps), and between any two characters of a word longer
    than `room`; the last is the text's end."""
    cuts: list[tuple[int, int]] = []
    start = 0
    for word in text.split(" "):
        end = start + len(word)
        if len(word) > room:
            cuts += [(i, i) for i in range(start + 1, end)]
        cuts.append((end, end + 1))
        start = end + 1
    return cuts


def parts_needed(text: str, room: int) -> int:
    """The fewest parts of at most `room` characters the musing `text` goes as, once folded:
    cut between words, and inside a word only where it is longer than `room` (0 for a text
    that folds to nothing). Filling each part as far as it goes needs no more than any other
    cut, so that is how they are counted."""
    if room < 1:
        raise ValueError(f"a part of {room} characters holds no text")
    folded = fold_text(text)
    if not folded:
        return 0
    cuts = _cuts(folded, room)
    ends = [end for end, _ in cuts]
    parts, start = 0, 0
    while True:
        parts += 1
        k = bisect_right(ends, start + room) - 1  # the farthest end this part reaches
        if k == len(cuts) - 1:
            return parts
        start = cuts[k][1]


def _split(text: str, cuts: list[tuple[int, int]], parts: int, lo: int, hi: int,
           cost: Callable[[int], int]) -> list[str] | None:
    """`text` as exactly `parts` parts of `lo` to `hi` characters, cut at `cuts`, with the
    largest cost(length) of a part as small as it can be; None if no cut allows it. A dynamic
    programme over the cut points: the best way to end part k at each one."""
    starts = [0] + [s for _, s in cuts]  # node 0: the text's start; node j: after cut j - 1
    ends = [0] + [e for e, _ in cuts]
    last = len(cuts)
    inf = float("inf")
    score = [-inf] + [inf] * last  # the best largest cost of the parts so far, ending at each node
    back: list[list[int]] = []
    for _ in range(parts):
        new, came = [inf] * (last + 1), [-1] * (last + 1)
        for j in range(1, last + 1):
            for i in range(bisect_left(starts, ends[j] - hi), min(bisect_right(starts, ends[j] - lo), j)):
                if score[i] < inf and (c := max(score[i], cost(ends[j] - starts[i]))) < new[j]:
                    new[j], came[j] = c, i
        score = new
        back.append(came)
    if score[last] == inf:
        return None
    out, j = [], last
    for came in reversed(back):
        i = came[j]
        out.append(text[starts[i]:ends[j]])
        j = i
    return out[::-1]


def _balanced_parts(text: str, room: int, parts: int) -> list[str]:
    """The folded `text` as `parts` parts (the fewest, `parts_needed`) of at most `room`
    characters, as even as the words allow: the longest part as short as it can be, then the
    shortest as long as it can be with that longest; and when that still leaves a part under
    MIN_PART, no part under MIN_PART if any cut into `parts` parts allows it (the longest then
    as short as it can be)."""
    if parts == 1:
        return [text]
    cuts = _cuts(text, room)
    even = _split(text, cuts, parts, 1, room, lambda n: n)
    assert even is not None  # `parts` parts of `room` hold it
    longest = max(map(len, even))
    even = _split(text, cuts, parts, 1, longest, lambda n: -n)
    assert even is not None
    if min(map(len, even)) >= MIN_PART:
        return even
    return _split(text, cuts, parts, MIN_PART, room, lambda n: n) or even


def _field_list_safe(text: str) -> str:
    return " " + text if text.startswith(FIELD_LIST_MARK) else text


def _hms(t: datetime) -> str:
    return t.strftime("%H:%M:%S")


def encode_musing_sentences(callsign: str, counter: int, when: datetime, lat: float, lon: float, alt: float,
                            boot: int, seq: int, text: str, max_bytes: int = GATEWAY_MAX_LINE,
                            made: datetime | None = None, auth: DownlinkAuth | None = None) -> list[bytes]:
    """The musing `text` as one or more sentences of at most `max_bytes` each (the line feed
    included), part i stamped `when` + i - 1 seconds, each tag with the time the musing was
    `made` (UTC; an aware time is converted) when it is given; each leaves room for `restamp`
    to give it any other position.

    A text that fits one part (`musing_text_room` characters) is one part. A longer one goes as
    the fewest parts that hold it (`parts_needed`), cut where the parts come out as even as
    the words allow (`_balanced_parts`): never a full part and a one-word tail, each a whole
    sentence on air. Every part then has at least MIN_PART characters whenever some cut into
    that many parts allows it, and one always does when no word of at most `room` characters
    is longer than room / 2 - MIN_PART (24 in the 99-character room of musing 3.17 in a
    199-byte line with a 7-character callsign; a word longer than `room` is cut wherever it
    suits, so it never counts): with the fewest parts, every part but the last filled greedily has at least
    room - W characters for W the longest such word, and moving the last cut back a word at a
    time gives the last part MIN_PART to MIN_PART + W of them, leaving room - 2W - MIN_PART
    >= MIN_PART to the one before. Only a word longer than that, next to where a cut must
    fall, can leave a shorter part: in a room of 99, a 97-character word and "ok" go as
    that word and "ok" (there is no other cut).

    WireError when the text folds to nothing, when even a short part cannot fit (a room under
    MIN_TEXT), or when it needs more than MAX_PARTS parts."""
    room = musing_text_room(callsign, boot, seq, max_bytes)
    folded = fold_text(text)
    if not folded:
        raise WireError("empty musing", "the musing has no characters a gateway can carry")
    if room < MIN_TEXT:
        raise WireError("frame too small", f"a {max_bytes}-byte frame leaves {room} characters for a musing "
                                           f"part; {MIN_TEXT} at least are needed")
    parts = parts_needed(folded, room)
    if parts > MAX_PARTS:
        raise WireError("musing too long", f"the musing needs {parts} sentences of {max_bytes} bytes; "
                                           f"{MAX_PARTS} at most")
    if made is not None and made.tzinfo is not None:
        made = made.astimezone(timezone.utc)
    made_hms = _hms(made) if made is not None else None
    return [_signed(_prefix(callsign, counter, _hms(when + timedelta(seconds=i)), lat, lon, alt, boot, seq, i + 1,
                            parts, made_hms), _field_list_safe(chunk), auth)
            for i, chunk in enumerate(_balanced_parts(folded, room, parts))]


def restamp(frame: bytes, counter: int, when: datetime, lat: float, lon: float, alt: float,
            auth: DownlinkAuth | None = None) -> bytes:
    """The musing sentence `frame` carrying another position: the position sentence number
    `counter`'s coordinates, stamped `when`, signed anew with `auth`. Its part, made time and text
    are kept; it fits wherever the original did (`encode_musing_sentences` left room for any
    position, a made time and a tag). WireError if `frame` is not a musing sentence."""
    s = decode_musing_sentence(frame)
    return _signed(_prefix(s.callsign, counter, _hms(when), lat, lon, alt, s.boot, s.seq, s.part, s.parts, s.made),
                   _field_list_safe(s.text), auth)


def sign_musing(frame: bytes, auth: DownlinkAuth) -> bytes:
    """The musing sentence `frame` as it is, signed with `auth` (a tag it had is replaced)."""
    s = decode_musing_sentence(frame)
    return _signed(_prefix(s.callsign, s.counter, s.time, s.lat, s.lon, s.alt, s.boot, s.seq, s.part, s.parts, s.made),
                   _field_list_safe(s.text), auth)


def musing_signed(frame: bytes, auth: DownlinkAuth) -> bool:
    """The musing sentence carries a tag that checks under `auth` (False: unsigned, forged,
    another flight's, or no musing sentence)."""
    try:
        fields = checked_body(frame).split(",", 7)
    except WireError:
        return False
    label = fields[6] if len(fields) == 8 else ""
    head, _, tag = label.rpartition(" ")
    return _TAG.fullmatch(label) is not None and tag_matches("$$" + ",".join([*fields[:6], head, fields[7]]), tag, auth)


def is_musing_sentence(frame: bytes) -> bool:
    """A ``$$`` line whose seventh field is a musing tag (checksum not checked here)."""
    fields = frame.split(b",", 7)
    return len(fields) == 8 and fields[0].startswith(b"$$") and fields[6].startswith(b"musing ")


def decode_musing_sentence(frame: bytes) -> MusingSentence:
    """One musing part back from its sentence, its tag with or without the made time (older
    payloads send none); WireError naming what is wrong."""
    body = checked_body(frame)
    fields = body.split(",", 7)
    if len(fields) != 8:
        raise WireError("sentence field count", f"musing sentence has {len(fields)} fields, expected 8")
    tag = _TAG.fullmatch(fields[6])
    if tag is None:
        raise WireError("sentence field invalid",
                        f"musing tag {fields[6]!r} is not 'musing BOOT.SEQ PART/PARTS' with an optional HH:MM:SS")
    parse_hms(fields[2])
    if tag[5] is not None:
        parse_hms(tag[5])
    try:
        s = MusingSentence(callsign=fields[0], counter=int(fields[1]), time=fields[2], lat=float(fields[3]),
                           lon=float(fields[4]), alt=int(fields[5]), boot=int(tag[1]), seq=int(tag[2]),
                           part=int(tag[3]), parts=int(tag[4]), text=fields[7].lstrip(" "), made=tag[5],
                           signature=tag[6])
    except ValueError as e:
        raise WireError("sentence field invalid", f"musing sentence field does not parse: {e}") from e
    if s.part > s.parts or s.boot > 0xFFFF or s.seq > 0xFFFFFFFF:
        raise WireError("sentence field invalid", f"musing tag {fields[6]!r} is out of range")
    return s
