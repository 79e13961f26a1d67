"""What a stored item goes on air as, and what the link counts.

A position, a musing sentence and an SSDV packet are stored as the one frame they go on air as;
every other record is cut into erasure-coded fragments, each tagged with the downlink key
(`wire.fragment_body`), at the frame size the air plan allows (payload/policy/airplan.py).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from stratoecho import wire

from ..store import Queued

# What may go on air without a flight key: the frames that travel in the community's own formats.
UNTAGGED = tuple(wire.NOT_RECORDS)
# What must go on air fresh or not at all: a musing about the flight, true when it was made.
PERISHABLE = (wire.Kind.MUSING, wire.Kind.MUSING_SENTENCE)


def record_body(q: Queued) -> bytes:
    """What a stored item's record carries: the stored body, or for a position (stored as the
    frame it would go on air as) its creation time and that frame."""
    if q.kind is wire.Kind.TELEMETRY:
        return struct.pack(">I", int(q.created)) + q.payload
    return q.payload


def frames_for(q: Queued, mtu: int, parity_for=lambda k: 0, *, auth: wire.DownlinkAuth | None) -> list[bytes]:
    """The air frames of one stored item taken as bulk; `parity_for(k)` says how many parity
    fragments, `auth` tags them. A position here is a backlog one, superseded: it goes as a record."""
    if q.kind is wire.Kind.MUSING_SENTENCE:
        return [q.payload]  # already a UKHAS sentence (restamped as it is keyed)
    if q.kind is wire.Kind.SSDV:
        return [q.payload]  # an SSDV packet without its sync byte: it carries its own Reed-Solomon FEC
    if auth is None:
        raise NoFlightKey("records go tagged with the downlink key, and there is no flight key (uplink.key_file)")
    body = record_body(q)
    k = wire.data_shards(len(body), mtu, auth.tag_len)
    return wire.fragment_body(q.kind, q.boot, q.seq, body, mtu, parity=parity_for(k), auth=auth)


class NoFlightKey(RuntimeError):
    """A record cannot go on air untagged; it stays queued."""


@dataclass
class LinkStats:
    frames_sent: int = 0
    bytes_sent: int = 0
    airtime_s: float = 0.0
    parity_frames: int = 0
    repair_frames: int = 0
    repairs_skipped_queued: int = 0
    repairs_refused: int = 0  # repair frames past MAX_REPAIR_FRAMES
    windows: int = 0
    uplink_frames: int = 0
    sent_by_stream: dict = field(default_factory=dict)
    budget_waits: int = 0  # sentences that waited for the law, plus bulk deferrals begun
    beacon_waits: int = 0  # sentences that waited (0 unless the beacon outgrows its reservation)
    bulk_deferred: int = 0  # bulk frames held back for the beacon's share or the governor
    failures: int = 0
    cues_sent: int = 0  # window cues (tagged control frames), in frames_sent too
    windows_skipped: int = 0  # windows not opened: the law held the cue back
    held_frames: int = 0  # radio turns that found records waiting while out of contact (kept for the next pass)
    relayed_frames: int = 0  # other payloads' frames sent on (payload/link/relay.py), in frames_sent too
    relay_heard: int = 0  # frames heard between our own while listening for other payloads (idle)
    turn_waits: int = 0  # frames held for the next turn: they would have run into the next position sentence
    pictures_frames: int = 0  # frames keyed on the pictures' own channel ([radio.pictures]), in frames_sent too
    expired: dict = field(default_factory=dict)  # stream -> musings (records, sentences) gone stale before they aired


