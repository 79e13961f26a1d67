"""SSDV uploader: the pictures' packets to the HAB community's SSDV server (ssdv.habhub.org),
which puts together every picture from the packets all stations heard and shows it live.

The server publishes no schema; what it takes is what the uploaders that feed it send (the
PiInTheSky LoRa gateway's ssdv.c, Project Horus' Wenet SSDV uploader, and others; docs/
protocol.md, "Sharing pictures: the SSDV server", names them), and what this sends: one JSON
object by HTTP POST to https://ssdv.habhub.org/api/v0/packets, Content-Type application/json::

    {"type": "packets", "packets": [
        {"type": "packet",
         "packet": "<base64 of the whole 256-byte packet, sync byte 0x55 first>",
         "encoding": "base64",
         "received": "2024-06-20T23:58:07Z",       when we heard it: UTC, whole seconds, Z
         "receiver": "M0ABC"},                      the station's callsign (the uploader's)
        ...]}

A LoRa frame carries the packet without its sync byte (255 bytes); the gateway puts 0x55
back before uploading, and so do we (`SsdvPacket.raw`). Up to `batch_max_items` packets a
request (the gateway sends at most 50). Any 2xx is taken; the reference uploaders never read
the answer's body, and neither do we beyond logging it.

Delivery is the shared uploader's (`uploader.py`): `add()` checks the packet in the caller's
thread and queues it, one background thread sends batches, retrying 5xx and no answer with
back-off, never a 4xx; a batch the server refuses or keeps failing on is split down to the
packet at fault, which is dropped (`ssdv_packet_dropped`, counted) while the rest go on.
`close()` sends what is queued until its deadline. Every packet heard is in the database
(`ssdv_packets`): `export --format ssdv` uploads them after the flight.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Hashable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import structlog

from stratoecho import __version__, wire
from stratoecho.wire import ssdv

from .base import iso_z, utc_time
from .station import SOFTWARE_NAME, Station
from .uploader import BatchUploader, UploadPolicy, check_url

if TYPE_CHECKING:
    from groundstation.store import GroundReader

log = structlog.get_logger(__name__)

DEFAULT_URL = "https://ssdv.habhub.org/api/v0/packets"


def ssdv_object(packet: wire.SsdvPacket, received_at: str, receiver: str) -> dict:
    """One packet as the SSDV server takes it. ValueError if `received_at` is not ISO 8601."""
    return {
        "type": "packet",
        "packet": base64.b64encode(packet.raw).decode("ascii"),  # all 256 bytes, sync byte included
        "encoding": "base64",
        "received": iso_z(utc_time(received_at)),
        "receiver": receiver,
    }


def ssdv_body(objects: list[dict]) -> bytes:
    """The request body: the packets in one object, as the gateway and Wenet send them."""
    return json.dumps({"type": "packets", "packets": objects}, separators=(",", ":")).encode("ascii")


@dataclass(frozen=True)
class _Queued:
    packet: wire.SsdvPacket
    obj: dict


class SsdvUploader(BatchUploader[_Queued]):
    """Exporter of SSDV packets to the SSDV server; see the module docstring. Counters in
    `stats`, and `summary()`: sent, refused, dropped, unsent.

    `station`: the receiving station (`Station`: its callsign is the `receiver`), or only its callsign."""

    name = "ssdv"
    item_noun = "packet"
    drop_hint = "it is in the database (ssdv_packets); `export --format ssdv` can try it again"
    unsent_hint = "they are in the database: `python -m groundstation export --format ssdv` uploads them later"

    def __init__(self, station: Station | str, url: str = DEFAULT_URL, *, policy: UploadPolicy | None = None,
                 software_version: str = __version__) -> None:
        self.station = station if isinstance(station, Station) else Station(station)
        check_url(url, "the SSDV server", DEFAULT_URL)
        super().__init__(url, method="POST", policy=policy or UploadPolicy(),
                         user_agent=f"{SOFTWARE_NAME}-{software_version}")
        self.receiver = self.station.callsign
        self._start()

    def add(self, packet: wire.SsdvPacket | bytes, received_at: str | None = None) -> bool:
        """Queue one packet heard at `received_at` (ISO 8601 UTC; None: now): an `SsdvPacket`, or
        its 255 or 256 bytes, checked here. False when it is not queued: not a good packet, a bad
        time, already queued, or after close() (counted in `stats` by reason)."""
        try:
            if not isinstance(packet, wire.SsdvPacket):
                packet = ssdv.parse_packet(bytes(packet))
            obj = ssdv_object(packet, received_at or _now(), self.receiver)
        except (ValueError, TypeError) as e:  # WireError is a ValueError: not an SSDV packet
            self.stats["skipped_invalid"] += 1
            log.warning("ssdv_skipped", reason=str(e), received_at=received_at)
            return False
        return self._enqueue(_Queued(packet, obj))

    # ------------------------------------------------------------------ the shared uploader's questions

    def _key(self, item: _Queued) -> Hashable:
        # The bytes, not (callsign, image id, packet id): ids wrap at 256, so a later picture
        # reuses them, and its packets are new to the server.
        return item.packet.raw

    def _describe(self, item: _Queued) -> dict:
        p = item.packet
        return {"callsign": p.callsign, "image_id": p.image_id, "packet_id": p.packet_id}

    def _encode(self, batch: list[_Queued]) -> tuple[bytes, dict[str, str]]:
        return ssdv_body([item.obj for item in batch]), {"Accept": "application/json"}


def ssdv_from_db(ground: GroundReader, uploader: SsdvUploader, *, close: bool = True) -> int:
    """Feed every SSDV packet kept in `ground` (a keyed station's: those the flight announced) to `uploader`
    in the order heard, then close it
    (or only flush it, with close=False). Returns the number of packets fed."""
    rows = ground.pictures.ssdv_packets(flights_only=True)
    for row in rows:
        uploader.add(row.packet, row.received_at)
    if close:
        uploader.close()
    else:
        uploader.flush()
    return len(rows)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()
