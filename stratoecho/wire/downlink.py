"""Authenticated downlink: what the ground acts on carries a tag only the balloon could make.

Anyone with a radio can send on our frequency, so a frame that merely parses proves nothing.
Every frame the ground acts on — record fragments (`records.py`: musings, events, health,
late positions, the fragments a NACK asks for) and the control frame that says the payload is
listening (`Window`, below) — ends with a truncated HMAC-SHA256 tag under the **downlink key**.
UKHAS sentences, HABpack and SSDV stay as the community's receivers expect them, untagged:
the ground keeps them, shows them and passes them on, but decides nothing on them.

Authentication, not encryption: everything stays readable by anyone who hears it, as amateur
rules require (docs/protocol.md, "Authentication, not encryption", cites them).

The downlink key is derived from the flight key (the 32 random bytes `keygen` writes, which the
uplink signs with)::

    downlink_key = HMAC-SHA256(flight_key, "stratoecho downlink key v1")

so one file is still all a balloon and its ground share, and a station given only the
downlink key (`python -m groundstation keygen --downlink-from FLIGHT_KEY FILE`) can check the
downlink but never sign a command (its file has a prefix of its own, stratoecho/wire/uplink_keys.py,
so it is never read as a flight key). No uplink frame can equal the derivation's input (an uplink
frame starts with 0xED), so the derived key is never an uplink tag.

The tag is the first ``T`` bytes of HMAC-SHA256(downlink_key, every byte of the frame before
the tag). ``T`` is configured on both sides (default 8, allowed 4..16), never read from the
frame, so a forger cannot ask for a shorter one. Each forged frame passes with probability
2^(-8T): at T = 8, a station flooding 10,000 frames a second for a whole day has odds of about
5e-11 of getting one through.

The window cue (first byte ``0xEE``), sent right after the position sentence that opens a
listen window, all integers big-endian::

     0      1      2        4              8        10             14       15          15+T     17+T
    +------+------+--------+--------------+--------+--------------+--------+-- ... ---+--------+
    | 0xEE | v|t  | boot   | seq          | pid    | sent_s       | listen | tag      | crc16  |
    +------+------+--------+--------------+--------+--------------+--------+-- ... ---+--------+
      magic  ver:4  u16      u32            u16      u32            u8       HMAC,      CRC16-CCITT of
             type:4          the sentence            the payload's  seconds  T bytes    every byte before it
                                                     clock

``v`` 2, type 1 (the only one): "I sent position sentence ``seq`` of boot ``boot`` at second
``sent_s`` of my clock, and listen for ``listen`` seconds now". ``pid`` is the uplink's 2-byte
callsign hash (`uplink.payload_hash`), so the ground signs for the callsign the balloon vouches
for, never for one a forged sentence names. The ground answers a cue once, only one newer (by
boot, then seq) than any it answered before, and only while its window is open: ``sent_s`` is
compared with the ground's own clock through the offset the boot's earlier cues showed, so a cue
the ground missed, played back later (even inside a relay envelope), opens nothing. The first
cue of a boot, which no earlier cue dates, is dated by the GPS time of the signed position
sentence ``seq`` it follows: heard too long after it, or with that sentence unheard, it is not
answered. Version 1 cues (without the clock) are refused: a payload and its ground are updated
together.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass
from pathlib import Path

from .common import CONTROL_MAGIC, WireError, crc16_ccitt

DEFAULT_TAG_LEN = 8
MIN_TAG_LEN, MAX_TAG_LEN = 4, 16
KEY_BYTES = 32
DERIVATION = b"stratoecho downlink key v1"
CONTROL_VERSION = 2  # 2: the cue says when it was sent and how long the payload listens
WINDOW = 1  # the control frame's type: "listening now"
_WINDOW = struct.Struct(">BBHIHIB")
MAX_LISTEN_S = 255
CRC_BYTES = 2


def cue_bytes(tag_len: int) -> int:
    """A window cue's length on air with a `tag_len`-byte tag."""
    return _WINDOW.size + tag_len + CRC_BYTES


def derive_downlink_key(flight_key: bytes) -> bytes:
    """The downlink key of a flight key (module docstring)."""
    if len(flight_key) != KEY_BYTES:
        raise ValueError(f"a flight key is {KEY_BYTES} bytes, got {len(flight_key)}")
    return hmac.new(flight_key, DERIVATION, hashlib.sha256).digest()


def check_tag_len(tag_len: object) -> int:
    if isinstance(tag_len, bool) or not isinstance(tag_len, int) or not MIN_TAG_LEN <= tag_len <= MAX_TAG_LEN:
        raise ValueError(f"downlink tag length must be {MIN_TAG_LEN}..{MAX_TAG_LEN} bytes, got {tag_len!r}")
    return tag_len


@dataclass(frozen=True)
class DownlinkAuth:
    """The downlink key and the tag length: what makes and checks the tags. `repr` hides the key."""

    key: bytes
    tag_len: int = DEFAULT_TAG_LEN

    def __post_init__(self) -> None:
        if len(self.key) != KEY_BYTES:
            raise ValueError(f"a downlink key is {KEY_BYTES} bytes, got {len(self.key)}")
        check_tag_len(self.tag_len)

    def __repr__(self) -> str:
        return f"DownlinkAuth(key={fingerprint(self.key)}, tag_len={self.tag_len})"

    @classmethod
    def from_flight_key(cls, flight_key: bytes, tag_len: int = DEFAULT_TAG_LEN) -> DownlinkAuth:
        return cls(derive_downlink_key(flight_key), tag_len)

    def tag(self, data: bytes) -> bytes:
        return hmac.new(self.key, data, hashlib.sha256).digest()[:self.tag_len]

    def check(self, data: bytes, tag: bytes) -> bool:
        """True when `tag` is `data`'s, compared in constant time."""
        return hmac.compare_digest(self.tag(data), tag)


def fingerprint(key: bytes) -> str:
    """A short public name for a downlink key (48 bits of a domain-separated SHA-256)."""
    return hashlib.sha256(b"stratoecho downlink fingerprint\0" + key).hexdigest()[:12]


def load_auth(path: str | Path, tag_len: int = DEFAULT_TAG_LEN, derived: bool = False,
              allow_raw: bool = False) -> DownlinkAuth:
    """The downlink check from a key file: a flight key file (the downlink key derived here) or,
    with `derived`, a downlink key file written by `keygen --downlink-from`; each refuses the
    other, and a bare key unless `allow_raw` (uplink_keys.load_key). Raises `uplink.KeyFileError`
    naming the file."""
    from .uplink_keys import DOWNLINK, FLIGHT, load_key

    key = load_key(path, DOWNLINK if derived else FLIGHT, allow_raw=allow_raw)
    return DownlinkAuth(key, tag_len) if derived else DownlinkAuth.from_flight_key(key, tag_len)


@dataclass(frozen=True)
class Window:
    """The cue that the payload listens now, after position sentence `seq` of `boot`; `pid` is
    `uplink.payload_hash` of its callsign; `sent_s` the payload clock's second it was sent at,
    `listen_s` how many seconds it listens from then."""

    boot: int
    seq: int
    pid: int
    sent_s: int
    listen_s: int

    @property
    def key(self) -> tuple[int, int]:
        return (self.boot, self.seq)


def encode_window(w: Window, auth: DownlinkAuth) -> bytes:
    if not (0 <= w.boot <= 0xFFFF and 0 <= w.seq <= 0xFFFFFFFF and 0 <= w.pid <= 0xFFFF
            and 0 <= w.sent_s <= 0xFFFFFFFF and 1 <= w.listen_s <= MAX_LISTEN_S):
        raise WireError("out of range", f"window cue boot {w.boot}, seq {w.seq}, pid {w.pid}, sent_s {w.sent_s} "
                                        f"or listen_s {w.listen_s} out of range")
    body = _WINDOW.pack(CONTROL_MAGIC, (CONTROL_VERSION << 4) | WINDOW, w.boot, w.seq, w.pid, w.sent_s, w.listen_s)
    body += auth.tag(body)
    return body + struct.pack(">H", crc16_ccitt(body))


def decode_window(frame: bytes, auth: DownlinkAuth | None) -> Window:
    """Parse and authenticate a window cue; WireError ("unauthenticated" without a key, "bad tag")
    for one this ground cannot vouch for."""
    if len(frame) < 2 + CRC_BYTES:
        raise WireError("truncated", f"control frame of {len(frame)} bytes is too short")
    (crc,) = struct.unpack(">H", frame[-CRC_BYTES:])
    if crc != crc16_ccitt(frame[:-CRC_BYTES]):
        raise WireError("crc mismatch", "frame CRC mismatch")
    if frame[1] >> 4 != CONTROL_VERSION:
        raise WireError("unknown version", f"control frame version {frame[1] >> 4} is not {CONTROL_VERSION}"
                                           + (" (a payload older than this ground: update both)" if frame[1] >> 4 == 1
                                              else ""))
    if frame[1] & 0x0F != WINDOW:
        raise WireError("unknown control", f"unknown control frame type {frame[1] & 0x0F}")
    if len(frame) < _WINDOW.size + MIN_TAG_LEN + CRC_BYTES:
        raise WireError("truncated", f"control frame of {len(frame)} bytes is too short")
    magic, vt, boot, seq, pid, sent_s, listen_s = _WINDOW.unpack_from(frame)
    authenticate(frame, _WINDOW.size, auth, "window cue")
    if listen_s == 0:
        raise WireError("out of range", "window cue says it listens for 0 seconds")
    return Window(boot, seq, pid, sent_s, listen_s)


def authenticate(frame: bytes, body_end: int | None, auth: DownlinkAuth | None, what: str) -> None:
    """Check the tag between the body (up to `body_end`; None: up to the tag) and the CRC16.
    WireError "unauthenticated" when there is no key to check with, "bad tag" when it fails."""
    if auth is None:
        raise WireError("unauthenticated", f"{what} kept unread: no downlink key to check its tag with "
                                           "(give the flight key: --flight-key)")
    end = len(frame) - CRC_BYTES - auth.tag_len
    if body_end is not None and end != body_end:
        raise WireError("bad length", f"{what} of {len(frame)} bytes does not end in a {auth.tag_len}-byte tag")
    if end <= 0 or not auth.check(frame[:end], frame[end:-CRC_BYTES]):
        raise WireError("bad tag", f"{what}: tag does not match the downlink key (forged, another flight's, "
                                   "or a different tag length)")
