"""The ground station's storage: one SQLite database per flight, one writer, read-only readers.

    from groundstation.store import GroundReader, Store

    with Store("ground.db") as store:            # the listener: makes or migrates the schema, writes
        store.add(record); store.maybe_commit()
    with GroundReader.open("ground.db") as ground:  # everyone else: read-only, any schema version
        ground.counts()

schema.py   the tables, their migrations, how a file is opened (WAL, synchronous=NORMAL)
writer.py   `Store`: what the listener (and the network's aggregator) writes
reader.py   `GroundReader`: typed rows for the dashboard, `watch`, `export`, `sim fly`, the reports
"""

from .reader import (
    Counts,
    Cursor,
    FrameMinute,
    GroundReader,
    OutboxRow,
    RecordRow,
    SentenceHeard,
    SsdvPacketRow,
    StationRow,
    StationStats,
    TelemetryRow,
)
from .schema import SCHEMA_VERSION, StoreError, utc_now
from .writer import DEAD_LETTER_HEAD, DEAD_LETTERS_KEPT, Store

__all__ = [
    "DEAD_LETTERS_KEPT", "DEAD_LETTER_HEAD", "SCHEMA_VERSION", "Counts", "Cursor", "FrameMinute", "GroundReader",
    "OutboxRow", "RecordRow", "SentenceHeard", "SsdvPacketRow", "StationRow", "StationStats", "Store", "StoreError",
    "TelemetryRow", "utc_now",
]
