"""Pictures that cannot be replaced: the flight announces each SSDV picture in a tagged record.

SSDV packets (`ssdv.py`) carry no tag: anyone can send a packet under the flight's SSDV
callsign and image id, and once one forged packet deleted the flight's stored packets and
another callsign's picture took the place of the flight's on the dashboard. So before a
picture's packets the payload queues a declared event, ``picture`` (`events.py`), as a record:
tagged with the downlink key like every record, it lists the picture's number (counted on
across reboots, never wrapping as the one-byte image id does), its SSDV callsign and image id,
its packet count, and each packet's digest::

    digest = BLAKE2b-64(key="stratoecho ssdv packet v1", the packet's 256 bytes, sync included)

The ground builds the flight's picture only from packets whose digest the announcement lists
at their packet id (after Reed-Solomon correction, so a packet put right on the ground still
matches); every other packet is a claim, kept apart. A forger needs a packet with the same
64-bit digest at that place: a second preimage, 2^64 BLAKE2b evaluations per packet, offline
work no receiver's rate limits. Eight bytes a packet: a 12-packet thumbnail's announcement is
about 150 bytes, one record fragment (`payload plan` prices it with the picture).

`PictureScan` turns packets into the JPEG as they come: a packet that follows the ones already
read costs only its own decoding; only one that fills a gap has the picture read again.
"""

from __future__ import annotations

import base64
import copy
import hashlib
from dataclasses import dataclass

from .common import WireError
from .events import Event, encode_event, event
from .ssdv import ImageDecoder, SsdvPacket

DIGEST_BYTES = 8
_DIGEST_KEY = b"stratoecho ssdv packet v1"


def packet_digest(packet: SsdvPacket) -> bytes:
    """A packet's digest as the announcement lists it (module docstring)."""
    return hashlib.blake2b(packet.raw, digest_size=DIGEST_BYTES, key=_DIGEST_KEY).digest()


@dataclass(frozen=True)
class Announcement:
    """One picture as the flight announced it."""

    picture: int
    callsign: str
    image_id: int
    digests: tuple[bytes, ...]  # by packet id


def announce(picture: int, packets: list[SsdvPacket]) -> Event:
    """The ``picture`` event for `packets` (one picture's, in packet order)."""
    if not packets or [p.packet_id for p in packets] != list(range(len(packets))):
        raise ValueError("a picture is announced with all its packets, in order from 0")
    first = packets[0]
    digests = base64.b64encode(b"".join(packet_digest(p) for p in packets)).decode("ascii")
    return event("picture", picture=picture, callsign=first.callsign, image_id=first.image_id,
                 packets=len(packets), digests=digests)


def announcement_body_bytes(callsign: str, packets: int) -> int:
    """The record body of a picture's announcement (its creation time and its event), at its
    longest for a picture of `packets` packets: what the air plan prices."""
    e = event("picture", picture=2**31 - 1, callsign=callsign, image_id=255, packets=packets,
              digests=base64.b64encode(bytes(DIGEST_BYTES * packets)).decode("ascii"))
    return 4 + len(encode_event(e))


def announcement(e: Event) -> Announcement:
    """The announcement a ``picture`` event carries; WireError when its fields do not make one."""
    f = e.fields
    try:
        raw = base64.b64decode(f["digests"], validate=True)
    except (KeyError, ValueError) as err:
        raise WireError("bad content", f"picture event's digests are not base64: {err}") from err
    if e.name != "picture" or len(raw) != DIGEST_BYTES * f["packets"] or not 0 <= f["image_id"] <= 255:
        raise WireError("bad content", f"picture event of {f.get('packets')} packets carries {len(raw)} digest bytes")
    return Announcement(f["picture"], f["callsign"], f["image_id"],
                        tuple(raw[i:i + DIGEST_BYTES] for i in range(0, len(raw), DIGEST_BYTES)))


class PictureScan:
    """One picture's JPEG, packet by packet (packets of one callsign and image id, already
    believed). `add` then `jpeg`: an in-order packet is decoded once; a gap filled late, or a
    packet with other dimensions, has the picture read again from its packets."""

    def __init__(self) -> None:
        self.packets: dict[int, SsdvPacket] = {}
        self._decoder = None
        self._read_to = -1  # the highest packet id the decoder has read
        self._stale = False

    def add(self, packet: SsdvPacket) -> bool:
        """False for a packet id already held."""
        if packet.packet_id in self.packets:
            return False
        self.packets[packet.packet_id] = packet
        if self._decoder is not None and not self._stale and packet.packet_id == self._read_to + 1:
            self._decoder.feed(packet)
            self._read_to = packet.packet_id
        else:
            self._stale = True
        return True

    def jpeg(self) -> bytes:
        if self._decoder is None or self._stale:
            ordered = [self.packets[i] for i in sorted(self.packets)]
            self._decoder = ImageDecoder(ordered[0])
            for p in ordered:
                self._decoder.feed(p)
            self._read_to, self._stale = ordered[-1].packet_id, False
        return copy.deepcopy(self._decoder).jpeg()  # the copy is filled out; the decoder reads on

    @property
    def whole(self) -> bool:
        return any(p.eoi for p in self.packets.values()) and len(self.packets) == max(self.packets) + 1
