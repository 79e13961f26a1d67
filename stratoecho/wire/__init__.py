"""The wire format: the interface control document between payload and ground.

Nothing else on either side packs or unpacks bytes for the air; both import this
package. Frames share the channel and are told apart by their first byte, as
LoRa gateways dispatch:

| first byte | frame | module |
|---|---|---|
| ``$`` | UKHAS telemetry sentence (ASCII, CRC16) | `sentence` |
| ``$`` | a musing as UKHAS text sentences (seventh field ``musing B.S P/N``) | `musing_sentence` |
| ``0x80``-``0x8F``, ``0xDE`` | HABpack telemetry (MessagePack map) | `habpack` |
| ``0xEC`` | our record fragment, erasure-coded (a late position too), tagged | `records` (+ `fec`, `content`, `downlink`) |
| ``0xEE`` | stratoecho control frame: the window cue, tagged | `downlink` |
| ``0x66``, ``0x67`` | SSDV picture packet (255 bytes on air: no 0x55 sync) | `ssdv` (+ `jpeg_scan`, `ssdv_rs`) |

`docs/protocol.md` describes every frame with test vectors, which the tests check.
"""

from __future__ import annotations

from . import ssdv
from .common import (
    CONTROL_MAGIC,
    DEFAULT_MTU,
    GATEWAY_FIRST_BYTES,
    MAGIC,
    NOT_RECORDS,
    RELAY_MAGIC,
    UPLINK_MAGIC,
    Kind,
    WireError,
    crc16_ccitt,
)
from .content import API_REQUEST_FIELDS, HEALTH_FIELDS, decode_position
from .downlink import DownlinkAuth, Window, decode_window, encode_window
from .habpack import FIRST_BYTES as HABPACK_FIRST_BYTES
from .habpack import decode_habpack, encode_habpack
from .musing_sentence import (
    MusingSentence,
    decode_musing_sentence,
    encode_musing_sentences,
    is_musing_sentence,
    restamp,
)
from .records import (
    CHECK_BYTES,
    CRC_BYTES,
    HEADER_BYTES,
    VERSION,
    Fragment,
    Reassembler,
    Record,
    data_shards,
    decode_fragment,
    fragment_body,
    fragment_record,
    record_check,
    shard_capacity,
)
from .sentence import Telemetry, decode_sentence, encode_sentence, telemetry_datetime
from .ssdv import FIRST_BYTES as SSDV_FIRST_BYTES
from .ssdv import SsdvPacket

# How the payload may send its position: both reach existing gateways.
HEALTH_FIELD_NAMES = frozenset(name for name, _ in HEALTH_FIELDS.values())
TELEMETRY_ENCODERS = {"ukhas": encode_sentence, "habpack": encode_habpack}


def decode_frame(frame: bytes, auth: DownlinkAuth | None = None) -> Telemetry | MusingSentence | Fragment | SsdvPacket | Window:
    """Dispatch on the first byte, as a gateway does. Our fragments and control frames are
    returned only when their downlink tag checks under `auth` (else WireError "unauthenticated"
    or "bad tag"); sentences, HABpack and SSDV carry no tag and come back as they are."""
    if not frame:
        raise WireError("empty", "empty frame")
    if frame[:2] == b"$$":
        return decode_musing_sentence(frame) if is_musing_sentence(frame) else decode_sentence(frame)
    if frame[0] in HABPACK_FIRST_BYTES:
        return decode_habpack(frame)
    if frame[0] == MAGIC:
        return decode_fragment(frame, auth)
    if frame[0] == CONTROL_MAGIC:
        return decode_window(frame, auth)
    if frame[0] in SSDV_FIRST_BYTES:
        return ssdv.parse_packet(frame)
    raise WireError("unknown first byte", f"unknown first byte 0x{frame[0]:02X}")


__all__ = [
    "CONTROL_MAGIC", "DownlinkAuth", "Window", "decode_window", "encode_window",
    "CHECK_BYTES", "CRC_BYTES", "DEFAULT_MTU", "GATEWAY_FIRST_BYTES", "HEADER_BYTES", "MAGIC", "NOT_RECORDS", "UPLINK_MAGIC",
    "RELAY_MAGIC",
    "VERSION", "Fragment", "Kind", "Reassembler", "Record", "Telemetry", "WireError",
    "crc16_ccitt", "data_shards", "decode_fragment", "decode_frame", "decode_sentence",
    "encode_sentence", "fragment_body", "fragment_record", "record_check", "shard_capacity", "decode_habpack", "encode_habpack",
    "HABPACK_FIRST_BYTES", "decode_position", "restamp",
    "TELEMETRY_ENCODERS", "HEALTH_FIELDS", "HEALTH_FIELD_NAMES", "API_REQUEST_FIELDS",
    "SSDV_FIRST_BYTES", "SsdvPacket", "ssdv",
    "MusingSentence", "decode_musing_sentence", "encode_musing_sentences", "is_musing_sentence",
    "telemetry_datetime",
]
