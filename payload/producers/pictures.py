"""Pictures: every `schedule.image_s`, a still for the card and, when the camera gives one, its
thumbnail for the air — one in `send_every` of them, as an image record or as SSDV packets."""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from stratoecho import wire
from stratoecho.wire import ssdv
from stratoecho.wire.pictures import announce

from ..parts.card import is_no_space, stills_budget
from ..store import Store
from .flight import Flight

if TYPE_CHECKING:
    from ..config import CameraDeviceSection as CameraSection
    from ..parts.camera import Camera

log = structlog.get_logger(__name__)

SSDV_IMAGE_STATE = "ssdv:next_image_id"  # the next picture's SSDV image id (0..255)
SSDV_PICTURE_STATE = "ssdv:next_picture"  # the next picture's number in its announcement: never wraps
STILLS_STATE = "camera:stills_taken"  # stills with a thumbnail, across reboots: which one goes down (send_every)


@dataclass
class PictureStats:
    images_queued: int = 0
    ssdv_packets_queued: int = 0


class Pictures:
    def __init__(self, flight: Flight, camera: Camera, store: Store, data_dir: Path, settings: CameraSection | None,
                 announces: bool):
        """`settings`: [devices.camera]; `announces`: a flight key tags records, so a picture is announced."""
        self.camera, self.store, self.governor = camera, store, flight.governor
        self.settings, self.announces = settings, announces
        self.outbound, self.devices, self.data_dir = flight.outbound, flight.devices, Path(data_dir)
        self.disk_usage = flight.fitted.disk_usage or shutil.disk_usage
        self.counts = PictureStats()

    def stats(self) -> dict[str, object]:
        return asdict(self.counts)

    def once(self) -> bool:
        """True when a still was kept (its thumbnail sent, or kept on the card for `send_every`)."""
        if not self.governor.runs("capture"):
            return False
        if self.store.database.card.full:
            return False  # no stills while the card is full: what room is left is the queue's
        reading = self.camera.capture()
        self.devices.note({"camera": reading.status})
        self._keep_stills_in_budget(reading)
        if reading.thumbnail_jpeg is None:
            return False
        cam = self.settings
        taken = int(self.store.state.get(STILLS_STATE, "0"))
        self.store.state.set(STILLS_STATE, str(taken + 1))
        if cam is not None and taken % cam.send_every:
            log.info("thumbnail_kept_on_card", still=taken, send_every=cam.send_every)
            return True  # the still is on the card; the radio's time goes to one in send_every
        if cam is not None and cam.ssdv and self._ssdv_picture(reading.thumbnail_jpeg, cam):
            return True
        self.outbound.record(wire.Kind.IMAGE, reading.thumbnail_jpeg)
        self.counts.images_queued += 1
        return True

    def _ssdv_picture(self, thumbnail: bytes, cam: CameraSection) -> bool:
        """The thumbnail as SSDV packets instead of an image record; False when it cannot be
        (a JPEG the encoder refuses): the caller then sends it as a record, so it still goes down."""
        # SSDV's image id is one byte: it wraps at 256, numbered on across reboots so the ground's
        # (callsign, image id) does not meet an old picture's packets minutes later.
        image_id = int(self.store.state.get(SSDV_IMAGE_STATE, "0"))
        try:
            packets = ssdv.encode_image(ssdv.prepare_jpeg(thumbnail, quality=cam.ssdv_quality), cam.ssdv_callsign,
                                        image_id, quality=cam.ssdv_quality)
        except (ValueError, OSError) as e:  # WireError is a ValueError; Pillow's unreadable image an OSError
            log.warning("ssdv_refused", error=str(e), image_id=image_id)
            return False
        self.store.state.set(SSDV_IMAGE_STATE, str((image_id + 1) % 256))
        if self.announces:  # first the tagged announcement: a keyed ground believes only the packets it lists
            picture = int(self.store.state.get(SSDV_PICTURE_STATE, "0"))
            self.store.state.set(SSDV_PICTURE_STATE, str(picture + 1))
            self.outbound.event(announce(picture, [ssdv.parse_packet(p) for p in packets]))
        self.outbound.ssdv(packets)
        self.counts.images_queued += 1
        self.counts.ssdv_packets_queued += len(packets)
        log.info("ssdv_queued", image_id=image_id, packets=len(packets))
        return True

    def _keep_stills_in_budget(self, reading) -> None:
        """A still the card refused marks the card full; a still kept may push the oldest out
        of `devices.camera.stills_mb` (bounded by the card's size: payload/parts/card.py)."""
        exc = self.camera.last_exc
        if reading.status == "error" and exc is not None and is_no_space(exc):
            self.store.fallback.card_refused("stills", exc)
        cam = self.settings
        if reading.status == "ok" and cam is not None:
            try:
                total = self.disk_usage(self.data_dir).total
            except OSError:
                total = None
            self.camera.prune_stills(stills_budget(cam.stills_mb, total, self.store.budgets.min_free))
