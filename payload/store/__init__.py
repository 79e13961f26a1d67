"""The durable queue between the payload's producers and the radio; docs/storage.md says what
survives a power cut and why (durable and batched writes, sequences that never go backwards, a
full or damaged card).

SQLite in WAL mode with `synchronous=FULL`, through apsw (so the power-cut tests can put a VFS
that drops unsynced writes under the very same code). Faults never stop the payload: a full card
or an I/O error holds records in memory, a corrupt file is set aside, and each fault is kept for
the health loop to send down as an event.

One database, cut by job (`Store` opens it and holds the parts):

| part | module | job |
|---|---|---|
| `Store.database` | `database` (+ `schema`) | the connection, the batch, faults: roll back and hold, set a damaged file aside |
| `Store.queue` | `queue` (+ `streams`, `records`) | enqueue, sending order, sent marks, acknowledgements; budgets and eviction |
| `Store.fallback` | `fallback` (+ `held`) | the card fallback: records held in memory, a RAM database, back to the card |
| `Store.counters` | `counters` | the boot counter and the sequence reservations, with their side file |
| `Store.state` | `state` | durable named state (the power mode) |
"""

from __future__ import annotations

from .counters import SEQ_BLOCK
from .records import Budgets
from .schema import StoreError, open_wal
from .store import Store
from .streams import PRIORITY, Queued, kind_of, stream_name

__all__ = ["PRIORITY", "SEQ_BLOCK", "Budgets", "Queued", "Store", "StoreError", "kind_of", "open_wal", "stream_name"]
