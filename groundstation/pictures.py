"""The flight's SSDV pictures in the ground database: built only from what the flight announced.

A picture's packets carry no tag; its announcement does (stratoecho/wire/pictures.py: a tagged
``picture`` event listing each packet's digest). So, on the `Store`'s connection:

- every packet heard is kept once (`ssdv_packets`, keyed by callsign, image id, packet id *and*
  digest), never in another's place and never deleted by one: a forged packet under the
  flight's callsign and image id is a row beside the real one, not instead of it;
- a packet the flight's announcement lists at its place is that picture's (`ssdv_packets.picture`),
  whichever came first, packet or announcement; every other packet is a claim (picture NULL);
- the flight's picture is the image record (boot 0, seq its picture number), grown packet by
  packet with `wire.pictures.PictureScan`: a stranger's packet costs one lookup and one row, never
  a picture decoded, and the flight's own in-order packet only its own decoding.

A station without a key (it believes anyone, `Store.set_trust(None)`) has no announcements to
check with: it builds a picture from each callsign's packets under an image id, as heard, as
image record (boot 0, seq its image id), and a packet that does not fit the picture it is
building (a wrapped image id, other dimensions) starts that picture again, keeping every row.
"""

from __future__ import annotations

import sqlite3
from collections import OrderedDict

import structlog

from stratoecho import wire
from stratoecho.wire.pictures import DIGEST_BYTES, Announcement, PictureScan, packet_digest

log = structlog.get_logger(__name__)

SCANS_KEPT = 8  # pictures kept decoding in memory: a thumbnail goes down in minutes, one after another

PACKETS_SQL = """CREATE TABLE ssdv_packets (
    callsign TEXT NOT NULL, image_id INTEGER NOT NULL, packet_id INTEGER NOT NULL,
    packet BLOB NOT NULL, received_at TEXT NOT NULL,
    digest BLOB NOT NULL, picture INTEGER,
    PRIMARY KEY (callsign, image_id, packet_id, digest)
)"""
PICTURES_SQL = """CREATE TABLE pictures (
    picture INTEGER PRIMARY KEY, callsign TEXT NOT NULL, image_id INTEGER NOT NULL,
    packets INTEGER NOT NULL, digests BLOB NOT NULL, announced_at TEXT NOT NULL
)"""


def migrate_packets(db: sqlite3.Connection) -> None:
    """Schema 12: packets keyed by their digest too, and which announced picture each is of."""
    rows = db.execute("SELECT callsign, image_id, packet_id, packet, received_at FROM ssdv_packets").fetchall()
    db.execute("DROP TABLE ssdv_packets")
    db.execute(PACKETS_SQL)
    for callsign, image_id, packet_id, raw, at in rows:
        try:
            digest = packet_digest(wire.ssdv.parse_packet(bytes(raw)))
        except wire.WireError:
            continue  # a packet that no longer parses made no picture either
        db.execute("INSERT OR IGNORE INTO ssdv_packets VALUES (?, ?, ?, ?, ?, ?, NULL)",
                   (callsign, image_id, packet_id, raw, at, digest))
    db.execute(PICTURES_SQL)


class FlightPictures:
    """The pictures of one database, on its writer's connection (`Store.pictures`)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self.keyed = False  # Store.set_trust: with a key, only announced packets make a picture
        self._scans: OrderedDict[tuple, PictureScan] = OrderedDict()
        self.believed: list[tuple[wire.SsdvPacket, str]] = []  # packets newly the flight's, for the uploads

    # ------------------------------------------------------------- what the flight announced

    def announce(self, a: Announcement, received_at: str) -> int:
        """The flight announced a picture: claim the packets it lists that were heard before it.
        Returns how many of them there were."""
        if self._db.execute("INSERT OR IGNORE INTO pictures VALUES (?, ?, ?, ?, ?, ?)",
                            (a.picture, a.callsign, a.image_id, len(a.digests), b"".join(a.digests),
                             received_at)).rowcount != 1:
            return 0
        held = self._db.execute("SELECT packet, received_at, packet_id, digest FROM ssdv_packets WHERE callsign = ? "
                                "AND image_id = ? AND picture IS NULL ORDER BY packet_id", (a.callsign, a.image_id))
        found = [(wire.ssdv.parse_packet(bytes(raw)), at) for raw, at, pid, digest in held.fetchall()
                 if pid < len(a.digests) and a.digests[pid] == bytes(digest)]
        for packet, at in found:
            self._db.execute("UPDATE ssdv_packets SET picture = ? WHERE callsign = ? AND image_id = ? AND "
                             "packet_id = ? AND digest = ?", (a.picture, a.callsign, a.image_id, packet.packet_id,
                                                              packet_digest(packet)))
            self._scan(("picture", a.picture)).add(packet)
            self.believed.append((packet, at))
        if found:
            self._write(("picture", a.picture), a.picture, found[0][0], received_at)
        return len(found)

    def announced(self, packet: wire.SsdvPacket) -> int | None:
        """The number of the flight's picture that lists `packet` at its place, newest first; None."""
        digest = packet_digest(packet)
        for picture, digests in self._db.execute(
                "SELECT picture, digests FROM pictures WHERE callsign = ? AND image_id = ? ORDER BY picture DESC",
                (packet.callsign, packet.image_id)):
            at = packet.packet_id * DIGEST_BYTES
            if bytes(digests)[at:at + DIGEST_BYTES] == digest:
                return picture
        return None

    # ------------------------------------------------------------- packets heard

    def add(self, packet: wire.SsdvPacket, received_at: str) -> bool:
        """Keep `packet`; True when it is new (a row of its own). See the module docstring."""
        picture = self.announced(packet)
        if self._db.execute("INSERT OR IGNORE INTO ssdv_packets VALUES (?, ?, ?, ?, ?, ?, ?)",
                            (packet.callsign, packet.image_id, packet.packet_id, packet.raw, received_at,
                             packet_digest(packet), picture)).rowcount != 1:
            return False
        if picture is not None:
            self.believed.append((packet, received_at))
            key = ("picture", picture)
            if self._scan(key).add(packet):
                self._write(key, picture, packet, received_at)
        elif not self.keyed:
            self._add_open(packet, received_at)
        return True

    def _add_open(self, packet: wire.SsdvPacket, received_at: str) -> None:
        """A keyless station's picture: anyone's packets, by callsign and image id, as heard."""
        key = ("open", packet.callsign, packet.image_id)
        scan = self._scan(key)
        first = next(iter(scan.packets.values()), None)
        if first is not None and (packet.packet_id in scan.packets or (first.width, first.height, first.mcu_mode)
                                  != (packet.width, packet.height, packet.mcu_mode)):
            scan = self._scans[key] = PictureScan()  # another picture under this number: start it again
        scan.add(packet)
        self.believed.append((packet, received_at))
        self._write(key, packet.image_id, packet, received_at)

    # ------------------------------------------------------------- the image record

    def _scan(self, key: tuple) -> PictureScan:
        scan = self._scans.get(key)
        if scan is None:
            scan = self._scans[key] = PictureScan()
            if key[0] == "picture":  # not in memory (a restart, or one of many): its packets from the file
                for (raw,) in self._db.execute("SELECT packet FROM ssdv_packets WHERE picture = ? ORDER BY packet_id",
                                               (key[1],)):
                    scan.add(wire.ssdv.parse_packet(bytes(raw)))
        self._scans.move_to_end(key)
        while len(self._scans) > SCANS_KEPT:
            self._scans.popitem(last=False)
        return scan

    def _write(self, key: tuple, seq: int, packet: wire.SsdvPacket, received_at: str) -> None:
        scan = self._scans[key]
        try:
            jpeg = scan.jpeg()
        except wire.WireError as e:  # a packet that parses but whose scan cannot be followed: keep what is kept
            log.warning("ssdv picture not rebuilt", callsign=packet.callsign, image_id=packet.image_id, error=str(e))
            return
        n = len(scan.packets)
        name = f"picture {seq} (image {packet.image_id})" if key[0] == "picture" else f"picture {packet.image_id}"
        text = (f"SSDV {packet.callsign} {name}, {packet.width}x{packet.height}: {n} packet{'s' * (n != 1)}"
                + ("" if scan.whole else ", incomplete"))
        self._db.execute(
            "INSERT INTO records (kind, boot, seq, created, text, data, received_at, authentic) "
            "VALUES ('image', 0, ?, ?, ?, ?, ?, ?) ON CONFLICT (kind, boot, seq) DO UPDATE SET text = excluded.text, "
            "data = excluded.data, received_at = excluded.received_at",
            (seq, received_at, text, jpeg, received_at, int(key[0] == "picture")))
