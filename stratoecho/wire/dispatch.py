"""What a heard frame is: one look at its first bytes, shared by everything that takes frames off the air.

Frames share the channel and are told apart by their first byte, as LoRa gateways dispatch
(the table in `stratoecho/wire/__init__.py`). `classify` does it once per frame: the ground's
routing among flights (`groundstation/link/flights.py`) and its decoder
(`groundstation/link/decoder.py`) read the same `HeardFrame`, `decode_frame` is
`decode_heard(classify(frame))`, and the payload's relay (`payload/link/relay.py`) asks
`origin_of` whose a frame it heard is, from the same classification. What each kind gives before
any key is used:

- the open formats anyone can send (UKHAS and musing sentences, HABpack, SSDV) are parsed here,
  since that needs no key: `opened` is what they say, or `error` why they do not parse; a
  sentence the balloon signed says so under its key (`signed_by(auth)`, `sentence_tag.py`);
  `callsign` is the sender they name (a sentence's first field even when the rest is damaged;
  SSDV's six-character upper-case form; HABpack's only when it parses);
- the tagged frames (record fragment, window cue) wait for a key: `tag_checks(auth)` says whether
  a flight's key checks the tag without parsing, `decode_heard` parses them and checks it;
- a relay envelope is opened (its structure, not its tag, which needs the relayer's key:
  `relay.check_envelope`) and the frame it carries classified as `inner`;
- an uplink command is named (the payload hears them; the ground decodes none);
- anything else, the empty frame too, is `UNKNOWN`, with the error a decoder counts.

Horus Binary is not here: it comes off a 4FSK modem, not this channel, and has no first byte of
its own to be told by (`horus.py`). Pure logic: `classify` never raises, whatever the bytes.
"""

from __future__ import annotations

import enum
import hashlib
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from . import ssdv
from .common import CONTROL_MAGIC, MAGIC, RELAY_MAGIC, UPLINK_MAGIC, WireError
from .downlink import DEFAULT_TAG_LEN, DownlinkAuth, Window, decode_window
from .habpack import FIRST_BYTES as HABPACK_FIRST_BYTES
from .habpack import decode_habpack
from .musing_sentence import MusingSentence, decode_musing_sentence, is_musing_sentence, musing_signed, sign_musing
from .records import CRC_BYTES, Fragment, decode_fragment
from .relay import Envelope, open_envelope
from .sentence import Telemetry, decode_sentence, encode_sentence, sentence_signed
from .ssdv import SsdvPacket


class FrameKind(enum.Enum):
    SENTENCE = "UKHAS sentence"
    MUSING_SENTENCE = "musing sentence"
    HABPACK = "HABpack"
    SSDV = "SSDV packet"
    FRAGMENT = "record fragment"
    WINDOW_CUE = "window cue"
    RELAYED = "relay envelope"
    UPLINK = "uplink command"
    UNKNOWN = "unknown"


TAGGED = frozenset({FrameKind.FRAGMENT, FrameKind.WINDOW_CUE})  # end in the balloon's downlink tag, then CRC16
OPEN = frozenset({FrameKind.SENTENCE, FrameKind.MUSING_SENTENCE, FrameKind.HABPACK, FrameKind.SSDV})


@dataclass(frozen=True)
class HeardFrame:
    """One frame as heard, told apart once; see the module docstring for what each kind carries."""

    kind: FrameKind
    data: bytes  # the bytes as heard (an envelope's: the whole envelope)
    callsign: str | None = None  # who an open frame says sent it: believed by nobody, used to route it
    opened: Telemetry | MusingSentence | SsdvPacket | None = None  # an open frame, parsed
    error: WireError | None = None  # why it is not the frame its first byte says (an open or unknown one, an envelope)
    envelope: Envelope | None = None  # a relay envelope's parts, its tag not yet checked
    inner: HeardFrame | None = None  # the frame an envelope carries

    @property
    def tagged(self) -> bool:
        return self.kind in TAGGED

    def tag_checks(self, auth: DownlinkAuth) -> bool:
        """A tagged frame's tag checks under `auth`: one HMAC over the bytes before it, nothing parsed."""
        end = len(self.data) - CRC_BYTES - auth.tag_len
        return self.tagged and end > 0 and auth.check(self.data[:end], self.data[end:-CRC_BYTES])

    def signed_by(self, auth: DownlinkAuth | None) -> bool:
        """A position or musing sentence that parses and carries the flight's tag (`sentence_tag.py`),
        checking under `auth`: the balloon's own line. False for anything else, or without a key."""
        if auth is None or self.error is not None:
            return False
        if self.kind is FrameKind.SENTENCE:
            return sentence_signed(self.data, auth)
        return self.kind is FrameKind.MUSING_SENTENCE and musing_signed(self.data, auth)


def classify(frame: bytes, tag_len: int = DEFAULT_TAG_LEN) -> HeardFrame:
    """What `frame` is (`tag_len`: the downlink tag's length, which says where an envelope's
    carried frame ends). Never raises."""
    first = frame[0] if frame else None
    if frame[:2] == b"$$":
        kind = FrameKind.MUSING_SENTENCE if is_musing_sentence(frame) else FrameKind.SENTENCE
        return _open(kind, frame, frame[2:].split(b",", 1)[0].decode("ascii", "replace"))
    if first in HABPACK_FIRST_BYTES:
        return _open(FrameKind.HABPACK, frame)
    if first in ssdv.FIRST_BYTES:
        return _open(FrameKind.SSDV, frame)
    if first == MAGIC:
        return HeardFrame(FrameKind.FRAGMENT, frame)
    if first == CONTROL_MAGIC:
        return HeardFrame(FrameKind.WINDOW_CUE, frame)
    if first == UPLINK_MAGIC:
        return HeardFrame(FrameKind.UPLINK, frame)
    if first == RELAY_MAGIC:
        try:
            envelope = open_envelope(frame, tag_len)
        except WireError as e:
            return HeardFrame(FrameKind.RELAYED, frame, error=e)
        return HeardFrame(FrameKind.RELAYED, frame, envelope=envelope, inner=classify(envelope.frame, tag_len))
    error = WireError("empty", "empty frame") if first is None else \
        WireError("unknown first byte", f"unknown first byte 0x{first:02X}")
    return HeardFrame(FrameKind.UNKNOWN, frame, error=error)


_PARSERS = {FrameKind.SENTENCE: decode_sentence, FrameKind.MUSING_SENTENCE: decode_musing_sentence,
            FrameKind.HABPACK: decode_habpack, FrameKind.SSDV: ssdv.parse_packet}


def _open(kind: FrameKind, frame: bytes, callsign: str | None = None) -> HeardFrame:
    """An open frame parsed; the callsign it names kept even when it does not parse (a sentence's)."""
    try:
        opened = _PARSERS[kind](frame)
    except WireError as e:
        return HeardFrame(kind, frame, callsign, error=e)
    return HeardFrame(kind, frame, callsign if callsign is not None else opened.callsign, opened)


def decode_heard(heard: HeardFrame, auth: DownlinkAuth | None = None) -> Telemetry | MusingSentence | Fragment | \
        SsdvPacket | Window:
    """What a classified frame says. Our fragments and window cues come back only when their
    downlink tag checks under `auth` (else WireError "unauthenticated" or "bad tag"); sentences,
    HABpack and SSDV carry no tag and come back as they are. An envelope or an uplink command is
    no frame to decode here (WireError "unknown first byte": an envelope is opened by the relay's
    reader, `relay.decode_relayed`, and a command by the payload's gate)."""
    if heard.kind is FrameKind.FRAGMENT:
        return decode_fragment(heard.data, auth)
    if heard.kind is FrameKind.WINDOW_CUE:
        return decode_window(heard.data, auth)
    if heard.kind in (FrameKind.RELAYED, FrameKind.UPLINK):
        raise WireError("unknown first byte", f"unknown first byte 0x{heard.data[0]:02X}")
    if heard.error is not None:  # a fresh one: the stored error is raised anew on every decode
        raise WireError(heard.error.reason, str(heard.error))
    return heard.opened


def sign_line(frame: bytes, auth: DownlinkAuth) -> bytes:
    """A ``$$`` line (a position or a musing sentence) as the balloon keys it: signed with the
    downlink key (`sentence_tag.py`). Any other frame comes back as it is (records carry their
    own tag; HABpack and SSDV none). WireError for a ``$$`` line that does not parse."""
    kind = classify(frame).kind
    if kind is FrameKind.SENTENCE:
        return encode_sentence(decode_sentence(frame), auth)
    if kind is FrameKind.MUSING_SENTENCE:
        return sign_musing(frame, auth)
    return frame


def decode_frame(frame: bytes, auth: DownlinkAuth | None = None) -> Telemetry | MusingSentence | Fragment | \
        SsdvPacket | Window:
    """Dispatch on the first byte, as a gateway does: `decode_heard(classify(frame), auth)`."""
    return decode_heard(classify(frame), auth)


# --------------------------------------------------------------------------- whose, for the payload's relay

@dataclass(frozen=True)
class Origin:
    """Whose a heard frame is, as far as the frame itself shows it."""

    callsign: str
    authentic: bool  # its own downlink tag checked with that flight's key (False: an open sentence)
    key: bytes  # what makes it the same frame heard twice: its origin and sequence, as its bytes carry them


def origin_of(frame: bytes | HeardFrame, flights: Mapping[str, DownlinkAuth | None]) -> Origin:
    """Which of `flights` (callsign -> its downlink key, or None when only its open sentences are
    known) a heard frame (or one `classify` told already) belongs to, as the payload's relay asks.
    A record fragment or window cue is its origin's only when that flight's key checks its tag; a
    UKHAS or musing sentence names its callsign, and is authentic only when it carries that
    flight's tag. WireError ("bad tag", "unknown origin", "not relayed") for anything else."""
    heard = frame if isinstance(frame, HeardFrame) else classify(frame)
    frame = heard.data
    if heard.tagged:
        return _tagged_origin(heard, flights)
    if heard.kind in (FrameKind.SENTENCE, FrameKind.MUSING_SENTENCE):
        if heard.callsign not in flights:
            raise WireError("unknown origin", f"sentence from {heard.callsign!r}, not a flight this payload relays")
        return Origin(heard.callsign, heard.signed_by(flights[heard.callsign]), _digest(frame))
    if heard.kind is FrameKind.UPLINK:
        raise WireError("not relayed", "uplink commands go from a ground station to its own balloon only")
    raise WireError("not relayed", f"first byte 0x{frame[0]:02X}: only records, window cues and sentences "
                                   "are relayed" if frame else "empty frame")


def _tagged_origin(heard: HeardFrame, flights: Mapping[str, DownlinkAuth | None]) -> Origin:
    keyed = {c: a for c, a in flights.items() if a is not None}
    failed = False
    for callsign, auth in keyed.items():
        try:
            if heard.kind is FrameKind.FRAGMENT:
                f = decode_fragment(heard.data, auth)
                return Origin(callsign, True, _digest(callsign.encode(), bytes([f.kind]),
                                                      struct.pack(">HIH", f.boot, f.seq, f.index)))
            w = decode_window(heard.data, auth)
            return Origin(callsign, True, _digest(callsign.encode(), b"cue", struct.pack(">HI", w.boot, w.seq)))
        except WireError as e:
            failed |= e.reason == "bad tag"
            if e.reason not in ("bad tag", "bad length"):
                raise
    if failed:
        raise WireError("bad tag", "no relayed flight's downlink key checks this frame's tag")
    raise WireError("unknown origin", "a tagged frame, and no flight key to tell whose it is")


def _digest(*parts: bytes) -> bytes:
    return hashlib.sha256(b"|".join(parts)).digest()[:8]
