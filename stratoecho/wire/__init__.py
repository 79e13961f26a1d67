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
| ``0xEF`` | another payload's frame in a relay envelope, tagged by the relayer | `relay` |
| ``0xED`` | signed uplink command, ground to payload | `uplink` |

`classify` (`dispatch.py`) tells a heard frame apart once, for the ground's routing and its
decoder alike; `decode_frame` is `decode_heard(classify(frame))`.

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
from .content import API_REQUEST_FIELDS, DEVICE_KEYS, HEALTH_FIELDS, decode_position, device_status_fields, device_statuses
from .dispatch import FrameKind, HeardFrame, classify, decode_frame, decode_heard, sign_line
from .downlink import DownlinkAuth, Window, decode_window, encode_window
from .habpack import FIRST_BYTES as HABPACK_FIRST_BYTES
from .habpack import decode_habpack, encode_habpack
from .musing_sentence import (
    MusingSentence,
    decode_musing_sentence,
    encode_musing_sentences,
    is_musing_sentence,
    musing_signed,
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
from .sentence import Telemetry, decode_sentence, encode_sentence, sentence_signed, telemetry_datetime
from .sentence_tag import TAG_CHARS as SENTENCE_TAG_CHARS
from .ssdv import FIRST_BYTES as SSDV_FIRST_BYTES
from .ssdv import SsdvPacket

# How the payload may send its position: both reach existing gateways.
HEALTH_FIELD_NAMES = frozenset(name for name, _ in HEALTH_FIELDS.values())


def _habpack(t: Telemetry, auth: DownlinkAuth | None = None) -> bytes:
    """HABpack carries no tag (no field a gateway passes on for one): its positions stay claims,
    and the flight's own reach the ground as tagged records only (docs/protocol.md)."""
    return encode_habpack(t)


# Each takes the position and the downlink key that signs it where the format can carry a tag.
TELEMETRY_ENCODERS = {"ukhas": encode_sentence, "habpack": _habpack}


__all__ = [
    "CONTROL_MAGIC", "DownlinkAuth", "Window", "decode_window", "encode_window",
    "CHECK_BYTES", "CRC_BYTES", "DEFAULT_MTU", "GATEWAY_FIRST_BYTES", "HEADER_BYTES", "MAGIC", "NOT_RECORDS", "UPLINK_MAGIC",
    "RELAY_MAGIC",
    "VERSION", "Fragment", "Kind", "Reassembler", "Record", "Telemetry", "WireError",
    "crc16_ccitt", "data_shards", "decode_fragment", "decode_frame", "decode_sentence",
    "encode_sentence", "fragment_body", "fragment_record", "record_check", "shard_capacity", "decode_habpack", "encode_habpack",
    "HABPACK_FIRST_BYTES", "decode_position", "restamp",
    "TELEMETRY_ENCODERS", "HEALTH_FIELDS", "HEALTH_FIELD_NAMES", "API_REQUEST_FIELDS",
    "DEVICE_KEYS", "device_status_fields", "device_statuses",
    "SSDV_FIRST_BYTES", "SsdvPacket", "ssdv",
    "MusingSentence", "decode_musing_sentence", "encode_musing_sentences", "is_musing_sentence",
    "musing_signed", "sentence_signed", "SENTENCE_TAG_CHARS", "sign_line",
    "telemetry_datetime", "FrameKind", "HeardFrame", "classify", "decode_heard",
]
