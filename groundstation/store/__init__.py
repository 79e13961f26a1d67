"""The ground station's storage: one SQLite database per flight, one writer, read-only readers.

    from groundstation.store import GroundReader, Store

    with Store("ground.db") as store:            # the listener: makes or migrates the schema, writes
        store.add(record); store.maybe_commit()
    with GroundReader.open("ground.db") as ground:  # everyone else: read-only, any schema version
        ground.counts()

schema.py   the tables, their migrations, how the writer opens a file (WAL, synchronous=NORMAL)
writer.py   `Store`: what the listener (and the network's aggregator) writes; its parts are
            `store.frames` (the frames table under a byte quota) and `store.outbox` (outbox.py)
reader.py   `GroundReader`: typed rows through one read-only connection (tables.py), one reader
            per view (flight.py, records.py, link.py, outbox.py: reader.py lists them)
"""

from .flight import SentenceHeard, TelemetryRow
from .link import FrameMinute, StationRow, StationStats
from .outbox import OutboxRow
from .reader import Counts, Cursor, GroundReader
from .records import ANNOUNCED, RecordRow, SsdvPacketRow
from .schema import SCHEMA_VERSION, StoreError, utc_now
from .writer import DEAD_LETTER_HEAD, DEAD_LETTERS_KEPT, Store

__all__ = [
    "ANNOUNCED", "DEAD_LETTERS_KEPT", "DEAD_LETTER_HEAD", "SCHEMA_VERSION", "Counts", "Cursor", "FrameMinute",
    "GroundReader", "OutboxRow", "RecordRow", "SentenceHeard", "SsdvPacketRow", "StationRow", "StationStats", "Store",
    "StoreError", "TelemetryRow", "utc_now",
]
