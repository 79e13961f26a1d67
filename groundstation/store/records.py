"""The records the flight sent, as typed rows: musings, health, events, API requests, images; and
its pictures (an image record's JPEG, the SSDV packets pictures are grown from).

A record's JSON `fields` come back decoded (a declared event's `event` and `severity` beside its
own), an image's size but never its JPEG, which only `PictureReader.image` reads. A database of
schema 1 has no `records.data`: its records read with no fields."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass

from .tables import View

# Health fields that name the newest record of a kind the payload made this boot: a record lost
# after the last one heard still counts as missing (`watch`, the dashboard's link view).
ANNOUNCED = {"musing_seq": "musing", "event_seq": "event", "image_seq": "image", "api_request_seq": "api_request"}


@dataclass(frozen=True)
class RecordRow:
    id: int  # database row: the order records completed in
    kind: str
    boot: int
    seq: int
    created: str
    text: str  # what a person reads
    received_at: str
    fields: dict | None = None  # health and API requests: their fields; events: event, severity and fields
    jpeg_bytes: int | None = None  # an image record: the size of its JPEG (`PictureReader.image`)
    authentic: bool = True  # False: from open frames anyone can send (a musing's text sentences), untagged


@dataclass(frozen=True)
class SsdvPacketRow:
    """One SSDV picture packet kept, as `export --format ssdv` uploads it."""

    callsign: str
    image_id: int
    packet_id: int
    packet: bytes  # all 256 bytes, sync byte included
    received_at: str


def _fields(text) -> dict | None:
    """A record's `data` column as fields: a JSON object, else None (no data, a JPEG, bad JSON)."""
    if not isinstance(text, str):
        return None
    try:
        fields = json.loads(text)
    except ValueError:
        return None
    return fields if isinstance(fields, dict) else None


def _record(row: sqlite3.Row) -> RecordRow:
    return RecordRow(**{**dict(row), "fields": _fields(row["fields"]), "authentic": bool(row["authentic"])})


class RecordReader(View):
    """`GroundReader.records`: in the payload's order (`of`, `latest`) or the order they completed
    in (`since`, `last_completed`), and which numbers are held (`numbers`, `gaps`, `newest_seqs`)."""

    def _columns(self) -> str:
        authentic = "authentic" if self._t.has_column("records", "authentic") else "1 AS authentic"  # before version 8
        if not self._t.has_column("records", "data"):  # version 1
            return f"id, kind, boot, seq, created, text, received_at, NULL AS fields, NULL AS jpeg_bytes, {authentic}"
        return ("id, kind, boot, seq, created, text, received_at, "
                "CASE WHEN typeof(data) = 'text' THEN data END AS fields, "
                f"CASE WHEN typeof(data) = 'blob' THEN length(data) END AS jpeg_bytes, {authentic}")

    def of(self, kind: str | None = None, limit: int | None = None) -> list[RecordRow]:
        """Records of one kind (or of all) in the payload's order; with `limit`, the latest ones."""
        where, args = ("WHERE kind = ?", (kind,)) if kind else ("", ())
        sql = (f"SELECT {self._columns()} FROM records {where} "
               "ORDER BY boot DESC, seq DESC, id DESC LIMIT ?")
        return [_record(r) for r in reversed(self._t.rows("records", sql, (*args, -1 if limit is None else limit)))]

    def latest(self, kind: str) -> RecordRow | None:
        """The newest of a kind in the payload's order (the latest health record, say)."""
        rows = self.of(kind, limit=1)
        return rows[0] if rows else None

    def since(self, after_id: int = 0, kind: str | None = None, limit: int = -1) -> list[RecordRow]:
        """Records completed after row `after_id` (of one kind, or all), in the order they completed."""
        where, args = ("id > ? AND kind = ?", (after_id, kind)) if kind else ("id > ?", (after_id,))
        sql = f"SELECT {self._columns()} FROM records WHERE {where} ORDER BY id LIMIT ?"
        return [_record(r) for r in self._t.rows("records", sql, (*args, limit))]

    def last_completed(self, kind: str, limit: int) -> list[RecordRow]:
        """The last `limit` records of a kind to complete, in the order they completed."""
        sql = f"SELECT {self._columns()} FROM records WHERE kind = ? ORDER BY id DESC LIMIT ?"
        return [_record(r) for r in reversed(self._t.rows("records", sql, (kind, max(0, limit))))]

    def numbers(self, *, except_kinds: tuple[str, ...] = ()) -> dict[tuple[str, int], list[int]]:
        """(kind, boot) -> the seqs held, ascending."""
        numbers: dict[tuple[str, int], list[int]] = {}
        for kind, boot, seq in self._t.rows("records", "SELECT kind, boot, seq FROM records ORDER BY kind, boot, seq"):
            if kind not in except_kinds:
                numbers.setdefault((kind, boot), []).append(seq)
        return numbers

    def gaps(self) -> dict[tuple[str, int], list[tuple[int, int]]]:
        """(kind, boot) -> the ranges of seqs missing between those held (first, last inclusive)."""
        gaps: dict[tuple[str, int], list[tuple[int, int]]] = {}
        for kind, boot, prev, seq in self._t.rows(
                "records", "SELECT kind, boot, prev, seq FROM (SELECT kind, boot, seq, "
                           "lag(seq) OVER (PARTITION BY kind, boot ORDER BY seq) AS prev FROM records "
                           # boot 0: pictures rebuilt from SSDV, numbered by their image id, which wraps
                           "WHERE boot > 0) "
                           "WHERE seq - prev > 1 ORDER BY kind, boot, seq"):
            gaps.setdefault((kind, boot), []).append((prev + 1, seq - 1))
        return gaps

    def newest_seqs(self, boot: int) -> dict[str, int]:
        """kind -> the highest seq held of `boot`."""
        return dict(self._t.rows("records", "SELECT kind, max(seq) FROM records WHERE boot = ? GROUP BY kind", (boot,)))


class PictureReader(View):
    """`GroundReader.pictures`: an image record's JPEG, and the SSDV packets kept."""

    def image(self, boot: int, seq: int) -> bytes | None:
        """An image record's JPEG, or None."""
        if not self._t.has_column("records", "data"):
            return None
        rows = self._t.rows("records", "SELECT data FROM records WHERE kind = 'image' AND boot = ? AND seq = ?",
                            (boot, seq))
        return rows[0][0] if rows and isinstance(rows[0][0], bytes) else None

    def ssdv_packets(self, flights_only: bool = False) -> list[SsdvPacketRow]:
        """Every SSDV packet kept, in the order heard (none in a database older than schema 6); with
        `flights_only` at a keyed station, only those the flight announced (what `export --format
        ssdv` uploads: a claim never goes out as the flight's)."""
        where = "WHERE picture IS NOT NULL " if flights_only and self._flight.keyed() else ""
        rows = self._t.rows("ssdv_packets", "SELECT callsign, image_id, packet_id, packet, received_at FROM ssdv_packets "
                                            f"{where}ORDER BY received_at, callsign, image_id, packet_id")
        return [SsdvPacketRow(r[0], r[1], r[2], bytes(r[3]), r[4]) for r in rows]
