"""The durable queue between the payload's producers and the radio (docs/storage.md).

SQLite in WAL mode with `synchronous=FULL`, through apsw (so the power-cut tests can
put a VFS that drops unsynced writes under the very same code). One write
transaction stays open as the *batch*; what goes into it becomes durable at the
next commit, and every commit syncs:

* durable operations commit before they return: musings, events and API requests
  (each is a minute of the persona's thought, or a question asked once), the
  ground's acknowledgements, the boot counter, named state such as the mode, and
  the uplink counter;
* batched operations wait for the next commit: telemetry, health and images
  (a fresh one follows in seconds) and the `sent` marks (losing one means a
  re-send, which the ground drops as a duplicate). The batch commits every
  `flush_s`, at any durable operation, and at `close`: the card sees a few large
  writes instead of one sync per sentence.

Sequences are per stream and never go backwards, across reboots and lost batches
included: they are handed out from blocks reserved durably (`SEQ_BLOCK` at a
time), so a batched record that went on air and was then lost in a power cut never
has its number reused. The boot counter and the reservations are also copied to a
small side file (`<db>.counters`, replaced atomically) so that they survive even
a database that has to be set aside.

Faults never stop the payload: a full card or an I/O error turns the store
*degraded* — accepted records wait in a bounded memory queue and are written when
the card takes writes again — and a database that SQLite finds corrupt is renamed
aside and a new one started. Each fault is kept in `faults` for the daemon to send
down as an event.

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
