"""Uplink command frames, ground → payload: signed, never encrypted.

Anyone with a transmitter can send on our frequency, and amateur rules forbid
hiding what we send, so a command travels in clear with an HMAC-SHA256 tag that
only the holder of the balloon's key can make. Pure functions, standard library
only; both sides import this module and nothing else packs these bytes.

Frame layout, all integers big-endian::

     0      1      2              6        8                      n-T          n
    +------+------+--------------+--------+---------- ... --------+---- ... ----+
    | 0xED | v|c  | counter      | pid    | args                  | tag         |
    +------+------+--------------+--------+---------- ... --------+---- ... ----+
      magic  ver:4  u32            u16      per command, to the     HMAC-SHA256 over
             cmd:4                          tag: 0..MTU-8-T bytes   bytes 0..n-T, first T bytes

- ``0xED``: no LoRa gateway dispatches on it (``wire.GATEWAY_FIRST_BYTES``) and it is
  not our downlink fragment (``0xEC``), so neither side mistakes one for the other.
- ``v|c``: uplink format version (high nibble, ``1``) and command id (low nibble,
  ``1``..``15``; ``0`` is never a command, so a zeroed byte cannot be one). The eight
  commands of `commands.py` leave seven ids free; a sixteenth would need version 2.
- ``counter``: strictly increasing per balloon, chosen by the ground, never reused.
  The payload accepts a frame only if its counter is above the last one it accepted,
  and stores that counter before acting on the command: a recorded frame replayed
  later, even after a reboot, is refused. Gaps are fine (frames get lost); a frame
  the payload never heard stays valid until a later one is accepted, so the ground
  signs every retry afresh. A counter more than ``MAX_COUNTER_STEP`` (2^20) above the
  last accepted one is refused too: one frame signed near 2^32 (a corrupted ground
  state, a slip of the finger) would otherwise use up the counter space and lock the
  uplink for the rest of the flight. The ground spends one counter a frame, so a
  station would need a million frames heard by nobody to hit the limit; a ground that
  lost its state moves past the payload's last counter (``uplink_counter`` in health
  records) by less than that. When counters do run out, the way out is a new key: the
  payload keeps its high-water mark per key (docs/protocol.md).
- ``pid``: the first two bytes of SHA-256 of the payload's callsign (UTF-8, case
  as configured), so a command meant for another balloon is refused before any
  hashing. It is a routing check, not a security boundary: each balloon has its own key.
- ``args``: the command's arguments, struct-packed (`commands.py`). Their length is
  what lies between the header and the tag; there is no length byte.
- ``tag``: HMAC-SHA256(key, every byte before the tag), truncated to its first ``T``
  bytes. ``T`` is configured on both sides (default 8, allowed 4..32), never read
  from the frame, so a forger cannot ask for a shorter tag.

The commands, their ids and their arguments are declared in `stratoecho/wire/commands.py`
(its docstring tabulates them); this module re-exports them.

Verification order (`verify`), each failure an `UplinkRejected` with its `reason`:
``truncated``, ``not uplink``, ``too long`` (over the MTU), ``unknown version``,
``wrong payload``, then ``bad tag`` — and only a frame whose tag is right goes
further: ``replayed``, ``counter jump``, ``unknown command``, ``bad arguments``. Nothing past the
8-byte header is parsed before the tag has been checked (with
`hmac.compare_digest`, in constant time).

Forgery odds: without the key, each forged frame is accepted with probability
2^(-8T) — and only online, one try per frame the payload hears; nothing lets an
attacker test guesses offline. Listening flat out for a 6-hour flight at
SF7/250 kHz (~30 short frames a second, ~650,000 tries) a forger succeeds with
probability ~1.5e-4 at T = 4, ~3.5e-14 at T = 8 (the default), ~2e-33 at T = 16.

Example (key ``00 01 .. 1f``, callsign ``STRATO1`` → pid ``0x7F66``, counter 1,
``Ping(0xBEEF)``, T 8), 18 bytes::

    ed 11 00000001 7f66 beef 379fef62b575358b

That key is published here, so a key file holding it is refused (`uplink_keys`, which says
what a key file holds and which keys are too weak to use).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass

from stratoecho.wire import DEFAULT_MTU, GATEWAY_FIRST_BYTES, WireError
from stratoecho.wire import MAGIC as DOWNLINK_MAGIC
from stratoecho.wire.commands import (  # noqa: F401 - the commands are declared there; callers import them here
    COMMANDS,
    MAX_NOTE_BYTES,
    Ack,
    AckRange,
    ApiAnswer,
    ApiStatus,
    Command,
    CommandId,
    LinkReport,
    MemoryNote,
    Ping,
    PowerMode,
    Resend,
    ResendItem,
    SetIntervals,
    SetMode,
    _check_uint,
    is_risky,
    register_command,
)
from stratoecho.wire.events import Event, event
from stratoecho.wire.uplink_keys import KeyFileError, load_key  # noqa: F401 - the key file rules live there

MAGIC = 0xED
VERSION = 1
_HEAD = struct.Struct(">BBIH")
HEADER_BYTES = _HEAD.size  # 8
DEFAULT_TAG_LEN = 8
MIN_TAG_LEN, MAX_TAG_LEN = 4, 32
MIN_KEY_BYTES = 16  # what sign/verify accept; a key file holds exactly 32 (uplink_keys.py)
MAX_COUNTER = 0xFFFFFFFF
MAX_COUNTER_STEP = 1 << 20  # the furthest one accepted frame may move the counter
assert MAGIC not in GATEWAY_FIRST_BYTES and MAGIC != DOWNLINK_MAGIC

REJECT_REASONS = frozenset({
    "truncated", "not uplink", "unknown version", "wrong payload", "bad tag",
    "replayed", "counter jump", "unknown command", "bad arguments", "too long",
})
# Refusals of frames the ground really made (the tag was right): worth telling the ground.
AUTHENTIC_REASONS = frozenset({"counter jump", "unknown command", "bad arguments"})


class UplinkRejected(WireError):
    """A frame the payload will not act on. `reason` is one of `REJECT_REASONS`, for counting;
    the message says exactly what was wrong."""

    def __init__(self, reason: str, message: str):
        if reason not in REJECT_REASONS:
            raise ValueError(f"unknown rejection reason {reason!r}")
        super().__init__(reason, message)


def ack_batches(ranges: list[AckRange], tag_len: int = DEFAULT_TAG_LEN, mtu: int = DEFAULT_MTU) -> list[Ack]:
    """Pack acknowledged ranges into as few ACK commands as fit the MTU, in order."""
    per = min(255, (mtu - HEADER_BYTES - tag_len - 1) // AckRange._fmt.size)
    if per < 1:
        raise ValueError(f"MTU {mtu} with a {tag_len}-byte tag leaves no room for an ACK range")
    return [Ack(tuple(ranges[i:i + per])) for i in range(0, len(ranges), per)]


# --------------------------------------------------------------------------- confirmations
# A change that could make the payload quieter (a command whose form is `risky`: SET_INTERVALS,
# SET_MODE) is on probation:
# the payload applies it, says so in an event the ground reads back, and reverts it unless
# the same command arrives again in a later listen window — proof that the link still works
# both ways under the new settings. The event's text carries the command's bytes.


def unconfirmed_event(command: Command, what: str, confirm_s: float) -> Event:
    """The event a payload sends when `command` is applied on probation."""
    return event("unconfirmed", command=command.name(), args=command.pack().hex(), what=what,
                 revert_s=round(confirm_s))


def unconfirmed_command(e: Event) -> Command | None:
    """The risky command an `unconfirmed` event asks to have sent again, or None."""
    if e.name != "unconfirmed":
        return None
    try:
        (cls,) = [c for c in COMMANDS.values() if c.name() == e.fields["command"]]
        return cls.unpack(bytes.fromhex(e.fields["args"])) if is_risky(cls) else None
    except (KeyError, ValueError, struct.error):  # ValueError: no command of that name, or bad bytes
        return None


# --------------------------------------------------------------------------- frames


@dataclass(frozen=True)
class Verified:
    counter: int
    command: Command


def payload_hash(payload_id: str) -> int:
    """The 2-byte id a frame carries for `payload_id` (the balloon's callsign)."""
    if not payload_id:
        raise ValueError("payload id must not be empty")
    return int.from_bytes(hashlib.sha256(payload_id.encode("utf-8")).digest()[:2], "big")


def key_fingerprint(key: bytes) -> str:
    """A short name for `key` (48 bits of a domain-separated SHA-256): both sides keep their
    counters per key with it, so a new key starts afresh; it gives nothing of the key away."""
    return hashlib.sha256(b"stratoecho uplink counter\0" + key).hexdigest()[:12]


def _check_params(key: bytes, tag_len: int) -> None:
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"uplink key of {len(key)} bytes is shorter than {MIN_KEY_BYTES}")
    if isinstance(tag_len, bool) or not isinstance(tag_len, int) or not MIN_TAG_LEN <= tag_len <= MAX_TAG_LEN:
        raise ValueError(f"tag length must be {MIN_TAG_LEN}..{MAX_TAG_LEN} bytes, got {tag_len!r}")


def _tag(key: bytes, data: bytes, tag_len: int) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()[:tag_len]


def sign(key: bytes, counter: int, payload_id: str, command: Command,
         tag_len: int = DEFAULT_TAG_LEN, mtu: int = DEFAULT_MTU) -> bytes:
    """Build the frame carrying `command` for `payload_id` under `counter`.

    Raises ValueError for a bad key, tag length, counter or command, and
    WireError("too long") when the frame would not fit in `mtu` bytes.
    """
    _check_params(key, tag_len)
    _check_uint("counter", counter, 32, low=1)  # 0 is where a fresh payload starts, never accepted
    if type(command) not in COMMANDS.values():
        raise ValueError(f"{type(command).__name__} is not an uplink command")
    body = _HEAD.pack(MAGIC, (VERSION << 4) | command.command_id, counter, payload_hash(payload_id)) + command.pack()
    if len(body) + tag_len > mtu:
        raise WireError(
            "too long", f"{command.command_id.name} frame of {len(body) + tag_len} bytes exceeds the MTU of {mtu}")
    return body + _tag(key, body, tag_len)


def verify(key: bytes, frame: bytes, payload_id: str, last_counter: int,
           tag_len: int = DEFAULT_TAG_LEN, mtu: int = DEFAULT_MTU) -> Verified:
    """Authenticate and decode one frame; raises UplinkRejected (see the module docstring)."""
    _check_params(key, tag_len)
    frame = bytes(memoryview(frame))  # bytes(5) would be five zeros; memoryview refuses an int
    if not frame:
        raise UplinkRejected("truncated", "empty frame")
    if frame[0] != MAGIC:
        raise UplinkRejected("not uplink", f"first byte 0x{frame[0]:02X} is not 0x{MAGIC:02X}")
    if len(frame) > mtu:
        # Checked before hashing: a bench UDP socket could hand us far more than a radio could.
        raise UplinkRejected("too long", f"frame of {len(frame)} bytes exceeds the MTU of {mtu}")
    if len(frame) < HEADER_BYTES + tag_len:
        raise UplinkRejected(
            "truncated", f"frame of {len(frame)} bytes is shorter than header and tag ({HEADER_BYTES + tag_len})")
    _, vc, counter, pid = _HEAD.unpack_from(frame)
    if vc >> 4 != VERSION:
        raise UplinkRejected("unknown version", f"uplink version {vc >> 4} is not {VERSION}")
    if pid != payload_hash(payload_id):
        raise UplinkRejected("wrong payload", f"frame is for payload id 0x{pid:04X}, not {payload_id}'s")
    body, tag = frame[:-tag_len], frame[-tag_len:]
    if not hmac.compare_digest(_tag(key, body, tag_len), tag):
        raise UplinkRejected("bad tag", "authentication tag does not match (wrong key, altered or cut frame)")
    # Authentic from here on: the ground made these bytes.
    if counter <= last_counter:
        raise UplinkRejected("replayed", f"counter {counter} is not above the last accepted {last_counter}")
    if counter - last_counter > MAX_COUNTER_STEP:
        raise UplinkRejected("counter jump", f"counter {counter} is more than {MAX_COUNTER_STEP} above the last "
                                             f"accepted {last_counter}; it would use up the counter space")
    cls = COMMANDS.get(vc & 0x0F)
    if cls is None:
        raise UplinkRejected("unknown command", f"command id {vc & 0x0F} is not on the allow-list")
    try:
        command = cls.unpack(body[HEADER_BYTES:])
    except (ValueError, struct.error) as e:
        raise UplinkRejected("bad arguments", f"{cls.command_id.name} arguments do not parse: {e}") from None
    return Verified(counter, command)


def resend_batches(items: list[ResendItem], tag_len: int = DEFAULT_TAG_LEN, mtu: int = DEFAULT_MTU) -> list[Resend]:
    """Pack resend requests into as few RESEND commands as fit the MTU, in order.

    An item asking for more fragments than one frame holds is split into several
    items for the same record, so any request can be sent.
    """
    room = mtu - HEADER_BYTES - tag_len - 1  # 1: the item count
    per_item = room - ResendItem._fmt.size
    if per_item < 1:
        raise ValueError(f"MTU {mtu} with a {tag_len}-byte tag leaves no room for a RESEND item")
    pieces: list[ResendItem] = []
    for it in items:
        if it.size <= room:
            pieces.append(it)
        else:
            for i in range(0, len(it.fragments), per_item):
                pieces.append(ResendItem(it.stream, it.boot, it.seq, it.fragments[i:i + per_item]))
    batches: list[Resend] = []
    current: list[ResendItem] = []
    used = 0
    for p in pieces:
        if current and (used + p.size > room or len(current) == 255):
            batches.append(Resend(tuple(current)))
            current, used = [], 0
        current.append(p)
        used += p.size
    if current:
        batches.append(Resend(tuple(current)))
    return batches
