"""Relayed frames: one payload carries another's frame, as it heard it, in an envelope of its own.

A payload that hears another payload's frame in its listen windows may send it on
(payload/link/relay.py decides which). It sends the frame byte for byte inside this envelope,
so whoever hears the relay sees who relayed it, how many more hops it may take, and the
frame itself, still under its origin's own downlink tag: the ground believes a relayed record
exactly as far as it would believe it heard directly (docs/network.md).

All integers big-endian::

     0      1      2          4                    4+L        4+L+T    6+L+T
    +------+------+----------+------- ... --------+--- ... ---+--------+
    | 0xEF | v|h  | relayer  | the frame as heard | tag       | crc16  |
    +------+------+----------+------- ... --------+--- ... ---+--------+
      magic  ver:4  u16        L bytes, unchanged   the relayer's  CRC16-CCITT of
             hops:4 callsign   (its own tag and     downlink tag,  every byte
                    hash       CRC inside)          T bytes        before it

``v`` is 1. ``hops`` is how many more times the frame may be relayed after this one (0: none).
The relayer's id is its callsign hash (`uplink.payload_hash`), as the window cue carries it;
its tag is made with the relayer's own downlink key, so no station can put words in a
relayer's mouth, and a relayed frame's origin is still only whoever can tag the inner frame.
An envelope inside an envelope is refused: a relayer re-wraps the frame it heard, never nests.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass

from .common import RELAY_MAGIC, WireError, crc16_ccitt
from .downlink import DownlinkAuth

RELAY_VERSION = 1
MAX_HOPS = 15  # four bits
_HEAD = struct.Struct(">BBH")
HEAD_BYTES = _HEAD.size  # the heard frame starts this far into its envelope
CRC_BYTES = 2


def overhead(tag_len: int) -> int:
    """The bytes an envelope adds to the frame it carries."""
    return _HEAD.size + tag_len + CRC_BYTES


@dataclass(frozen=True)
class Relayed:
    relayer: int  # the relayer's callsign hash
    hops_left: int  # further relays allowed
    frame: bytes  # the frame as the relayer heard it
    relayer_authentic: bool  # its tag checked with the relayer's key (False: no key for it here)


def encode_relayed(frame: bytes, relayer: int, hops_left: int, auth: DownlinkAuth) -> bytes:
    """`frame` in an envelope from `relayer` (its callsign hash), tagged with its own downlink key."""
    if not 0 <= hops_left <= MAX_HOPS:
        raise ValueError(f"hops left {hops_left} is outside 0..{MAX_HOPS}")
    if frame[:1] == bytes([RELAY_MAGIC]):
        raise ValueError("an envelope is never put inside another: re-wrap the frame it carries")
    body = _HEAD.pack(RELAY_MAGIC, RELAY_VERSION << 4 | hops_left, relayer) + frame
    body += auth.tag(body)
    return body + struct.pack(">H", crc16_ccitt(body))


@dataclass(frozen=True)
class Envelope:
    """An envelope as its bytes show it, before any key: who says they relayed it, and what."""

    relayer: int  # the relayer's callsign hash
    hops_left: int  # further relays allowed
    frame: bytes  # the frame as the relayer heard it
    signed: bytes  # what its tag covers: every byte before it
    tag: bytes


def open_envelope(frame: bytes, tag_len: int) -> Envelope:
    """The envelope's parts, its tag not checked (that needs the relayer's key: `check_envelope`).
    WireError for an envelope that is damaged or nested."""
    if len(frame) < overhead(tag_len) + 1:
        raise WireError("truncated", f"relayed frame of {len(frame)} bytes is shorter than its "
                                     f"{overhead(tag_len)}-byte envelope plus a frame")
    if struct.unpack(">H", frame[-2:])[0] != crc16_ccitt(frame[:-2]):
        raise WireError("crc mismatch", "relayed frame CRC mismatch")
    magic, vh, relayer = _HEAD.unpack_from(frame)
    if magic != RELAY_MAGIC:
        raise WireError("unknown first byte", f"first byte 0x{magic:02X} is not 0x{RELAY_MAGIC:02X}")
    if vh >> 4 != RELAY_VERSION:
        raise WireError("unknown version", f"relay version {vh >> 4} is not {RELAY_VERSION}")
    end = len(frame) - CRC_BYTES - tag_len
    inner = frame[_HEAD.size:end]
    if inner[:1] == bytes([RELAY_MAGIC]):
        raise WireError("nested relay", "an envelope inside an envelope")
    return Envelope(relayer, vh & 0x0F, inner, frame[:end], frame[end:-CRC_BYTES])


def check_envelope(envelope: Envelope, relayers: Mapping[int, DownlinkAuth]) -> bool:
    """True when `relayers` has the relayer's key (by callsign hash) and it checks the tag; False
    when there is no key for it here; WireError "bad tag" when the key does not check it."""
    auth = relayers.get(envelope.relayer)
    if auth is not None and not auth.check(envelope.signed, envelope.tag):
        raise WireError("bad tag", f"relayed frame: tag does not match relayer 0x{envelope.relayer:04X}'s downlink key")
    return auth is not None


def decode_relayed(frame: bytes, relayers: Mapping[int, DownlinkAuth], tag_len: int) -> Relayed:
    """The envelope's parts; its tag checked when `relayers` has the relayer's key (by callsign hash).
    WireError for an envelope that is damaged, nested, or whose tag fails its relayer's key."""
    envelope = open_envelope(frame, tag_len)
    authentic = check_envelope(envelope, relayers)
    return Relayed(envelope.relayer, envelope.hops_left, envelope.frame, authentic)
