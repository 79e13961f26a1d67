"""What every part of the wire format shares: the error type, the CRC, record kinds, first bytes."""

from __future__ import annotations

import binascii
import enum

DEFAULT_MTU = 255  # SX127x FIFO
MAGIC = 0xEC  # our downlink record fragments
UPLINK_MAGIC = 0xED  # signed commands, ground to payload
CONTROL_MAGIC = 0xEE  # tagged control frames, payload to ground (the window cue)
RELAY_MAGIC = 0xEF  # another payload's frame, relayed in an envelope (relay.py)
# First bytes that existing LoRa gateways dispatch on; our binary frames avoid them all.
GATEWAY_FIRST_BYTES = frozenset(
    [0x24, 0x25, 0x5E, 0x21, 0x2A, 0x00, 0x66, 0x67, 0x68, 0x69, 0xDE, *range(0x80, 0x90)]
)
assert not {MAGIC, UPLINK_MAGIC, CONTROL_MAGIC, RELAY_MAGIC} & GATEWAY_FIRST_BYTES


class WireError(ValueError):
    """Bytes that are not a valid frame: the ground counts these by `reason`, it never raises them further.

    `reason` is a short stable name (``crc mismatch``, ``truncated``, ...) for counting;
    the message says what exactly was wrong.
    """

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class Kind(enum.IntEnum):
    # A position: on air as a UKHAS sentence (or HABpack) while it is the newest; one sent after a
    # newer one went (a backlog) travels as a record carrying that frame, which gateways ignore,
    # so no gateway's track ever steps back.
    TELEMETRY = 0
    MUSING = 1
    EVENT = 2
    HEALTH = 3  # the Pi's and the store's state, declared fields (content.py)
    IMAGE = 4  # a JPEG thumbnail
    API_REQUEST = 5  # the persona asks the ground for outside information
    # A picture's SSDV packet (wire/ssdv.py), sent as it is, one frame: a stream of the payload's
    # queue, never a record (wire.Record, fragment_body and decode_fragment refuse it).
    SSDV = 6
    # A musing again as UKHAS text sentences (wire/musing_sentence.py), for stock LoRa gateways:
    # a stream of the payload's queue, never a record.
    MUSING_SENTENCE = 7


# Kinds that travel in a format of their own, never as our records' fragments: the format each takes.
NOT_RECORDS = {Kind.SSDV: "SSDV packets", Kind.MUSING_SENTENCE: "UKHAS text sentences"}


def refuse_as_record(kind: Kind) -> None:
    """Raise if `kind` never travels as a record, naming the format it travels in."""
    if kind in NOT_RECORDS:
        raise ValueError(f"{kind.name.lower()} travels as {NOT_RECORDS[kind]}, not as a record")


def crc16_ccitt(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC16-CCITT (XMODEM polynomial 0x1021, initial 0xFFFF, no reflection, no final xor):
    the CRC catalogue's CRC-16/CCITT-FALSE, which the standard library computes in C
    (`binascii.crc_hqx`: the same polynomial and shifts, its start value given)."""
    return binascii.crc_hqx(data, crc)
