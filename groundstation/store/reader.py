"""Reading the ground database: typed rows for the dashboard, `watch`, `export`, `sim fly`, the
flight report and the soak verdict, one reader per view.

    with GroundReader.open("flight.db") as ground:
        ground.counts().of("musing"), ground.records.latest("health").fields, ground.link.station_stats()

    ground.flight    whose flight it is: callsign, trust, claims     (flight.py)
    ground.track     its positions and sentences                     (flight.py)
    ground.records   musings, health, events, API requests, images   (records.py)
    ground.pictures  an image's JPEG, the SSDV packets kept          (records.py)
    ground.link      frames by minute and station, where stations are (link.py)
    ground.outbox    the commands queued for the uplink               (outbox.py)

and on the reader itself, what a live view polls: `counts`, `data_version`, the newest ids.
The file is opened read-only, whatever the schema version an older station left (tables.py);
rows come back as frozen dataclasses. Queries a caller runs every second (the terminal view)
stay in SQL; the rest is plain Python over the rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .flight import FlightReader, TrackReader
from .link import LinkReader
from .outbox import OutboxReader
from .records import PictureReader, RecordReader
from .tables import Tables


@dataclass(frozen=True)
class Counts:
    frames: int
    frames_bad: int
    telemetry: int
    records: Mapping[str, int]  # kind -> records held

    @property
    def frames_good(self) -> int:
        return self.frames - self.frames_bad

    def of(self, kind: str) -> int:
        return self.records.get(kind, 0)


@dataclass(frozen=True)
class Cursor:
    """The newest row ids: where a live feed goes on from."""

    telemetry: int
    records: int


class GroundReader:
    """One read-only connection to a ground database, and its readers by view."""

    def __init__(self, tables: Tables) -> None:
        self._t = tables
        self.schema_version = tables.version
        self.flight = FlightReader(tables)
        self.track = TrackReader(tables, self.flight)
        self.records = RecordReader(tables)
        self.pictures = PictureReader(tables, self.flight)
        self.link = LinkReader(tables)
        self.outbox = OutboxReader(tables)

    @classmethod
    def open(cls, path: str | Path) -> GroundReader:
        """StoreError for a missing file, a database of some other program or a newer schema."""
        return cls(Tables.open(path))

    def close(self) -> None:
        self._t.db.close()

    def __enter__(self) -> GroundReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def empty(self) -> bool:
        """No schema yet: a file made, but never by a ground station."""
        return self._t.empty

    def counts(self) -> Counts:
        frames, bad = (self._t.rows("frames", "SELECT count(*), coalesce(sum(NOT ok), 0) FROM frames") or [(0, 0)])[0]
        return Counts(frames, bad, self._t.one("telemetry", "SELECT count(*) FROM telemetry", default=0),
                      dict(self._t.rows("records", "SELECT kind, count(*) FROM records GROUP BY kind")))

    # ------------------------------------------------------------- changes

    def data_version(self) -> int:
        """Changes whenever another connection commits (the listener, a command queued)."""
        return int(self._t.db.execute("PRAGMA data_version").fetchone()[0])

    def newest_ids(self) -> Cursor:
        return Cursor(self._t.one("telemetry", "SELECT max(id) FROM telemetry", default=0),
                      self._t.one("records", "SELECT max(id) FROM records", default=0))

    def newest_frame_id(self) -> int:
        return self._t.one("frames", "SELECT max(id) FROM frames", default=0)
