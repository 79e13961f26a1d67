"""The ground station's storage: one SQLite database per flight, one writer, read-only readers.

    from groundstation.store import GroundReader, Store

    with Store("ground.db") as store:            # the listener: makes or migrates the schema, writes
        store.add(record); store.maybe_commit()
    with GroundReader.open("ground.db") as ground:  # everyone else: read-only, any schema version
        ground.counts()

schema.py   the tables, their migrations, how the writer opens a file (WAL, synchronous=NORMAL)
writer.py   `Store`: what the listener (and the network's aggregator) writes; its parts:
frames.py     `store.frames`, the frames table under its byte quota
outbox.py     `store.outbox`, the commands queued for the uplink (and `OutboxReader`)
reader.py   `GroundReader`: typed rows for the dashboard, `watch`, `export`, `sim fly`, the
            reports, through one read-only connection (tables.py) and a reader per view:
flight.py     `ground.flight`, whose flight it is     track.py    `ground.track`, its positions
records.py    `ground.records`, `ground.pictures`     link.py     `ground.link`, frames and stations
"""

from .link import FrameMinute, StationRow, StationStats
from .outbox import OutboxRow
from .reader import Counts, Cursor, GroundReader
from .records import RecordRow, SsdvPacketRow
from .schema import SCHEMA_VERSION, StoreError, utc_now
from .track import SentenceHeard, TelemetryRow
from .writer import DEAD_LETTER_HEAD, DEAD_LETTERS_KEPT, Store

__all__ = [
    "DEAD_LETTERS_KEPT", "DEAD_LETTER_HEAD", "SCHEMA_VERSION", "Counts", "Cursor", "FrameMinute", "GroundReader",
    "OutboxRow", "RecordRow", "SentenceHeard", "SsdvPacketRow", "StationRow", "StationStats", "Store", "StoreError",
    "TelemetryRow", "utc_now",
]
