"""The boot counter and the per-stream sequence numbers, which never go backwards: kept in the
database's `counters` table and copied to a small side file (`<db>.counters`, replaced
atomically) that survives even a database that has to be set aside.

Sequences are handed out from blocks reserved durably (`SEQ_BLOCK` at a time), so a batched
record that went on air and was then lost in a power cut never has its number reused.
"""

from __future__ import annotations

import json
import os

import structlog

from ..parts.card import is_no_space
from .database import Database
from .schema import WRITE_FAULTS

log = structlog.get_logger(__name__)

SEQ_BLOCK = 64  # sequence numbers reserved per durable counter write


class Counters:
    def __init__(self, database: Database):
        self.database = database
        self.sidecar = database.path.with_name(database.path.name + ".counters")
        self._sidecar_failing = False
        self.next: dict[str, int] = {}  # next seq to hand out, per stream
        self.reserved: dict[str, int] = {}  # highest seq reserved durably, per stream
        self.pending: dict[str, int] = {}  # counters the card refused, written when it recovers
        database.on_new_file.append(self.forget_reservations)

    # ------------------------------------------------------------------ the side file

    def read_sidecar(self) -> dict[str, int]:
        try:
            return {k: int(v) for k, v in json.loads(self.sidecar.read_text()).items()}
        except (OSError, ValueError, AttributeError):
            return {}

    def write_sidecar(self, counters: dict[str, int], lower: bool = False) -> None:
        """Replace the side file atomically: write, sync, rename, sync the directory.
        Values only rise, unless `lower` (a clean stop handing back its reservations)."""
        merged = self.read_sidecar()
        for name, value in counters.items():
            merged[name] = value if lower else max(merged.get(name, 0), value)
        tmp = self.sidecar.with_name(self.sidecar.name + ".tmp")
        try:
            with open(tmp, "w") as f:
                json.dump(merged, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.sidecar)
            dir_fd = os.open(self.sidecar.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
            self._sidecar_failing = False
        except OSError as e:
            if is_no_space(e):
                self.database.card.refuse(self.sidecar.name, e, self.database.free_or_none())
            if not self._sidecar_failing:  # once per run of failures: a full card fails every block
                self.database.fault(f"counter side file {self.sidecar} not written: {e}")
            self._sidecar_failing = True
            try:
                tmp.unlink(missing_ok=True)  # a half-written copy only takes space
            except OSError:
                pass

    # ------------------------------------------------------------------ named counters

    def stored(self, name: str) -> int:
        row = self.database.db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchall()
        return max(row[0][0] if row else 0, self.read_sidecar().get(name, 0), self.pending.get(name, 0))

    def write(self, name: str, value: int) -> None:
        """In the open transaction: counters only rise."""
        self.database.db.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = max(value, excluded.value)", (name, value))

    def get(self, name: str) -> int:
        with self.database.lock:
            return self.stored(name)

    def set_max(self, name: str, value: int) -> int:
        """Raise counter `name` to `value` unless it already stands higher; durable on return.

        For counters set from outside, such as the last accepted uplink counter: a stale
        value can never lower it."""
        database = self.database
        with database.lock:
            try:
                database.op(lambda: self.write(name, value), durable=True)
            except WRITE_FAULTS as e:  # held, and written first when the card recovers
                self.pending[name] = max(value, self.pending.get(name, 0))
                database.write_failed(e)
            stored = self.stored(name)
        self.write_sidecar({name: stored})
        return stored

    def start_boot(self) -> int:
        """Advance and return the boot counter; called once per daemon start."""
        database = self.database
        with database.lock:
            boot = self.stored("boot") + 1
            self.write_sidecar({"boot": boot})  # first: a cut after it only skips a number
            try:
                database.op(lambda: self.write("boot", boot), durable=True)
            except WRITE_FAULTS as e:  # a full card: the boot still starts, its number held for the card
                self.pending["boot"] = boot
                database.write_failed(e)
        log.info("boot", boot=boot, store=str(database.path))
        return boot

    def write_refused(self) -> None:
        """Write the counters the card refused (each durable), now that it may take them."""
        for name, value in list(self.pending.items()):
            self.database.op(lambda n=name, v=value: self.write(n, v), durable=True)
            del self.pending[name]

    def hold_refused(self, counters: list[tuple[str, int]]) -> None:
        """Counters the card has not got yet (those of a RAM database): written when it takes them."""
        for name, value in counters:
            self.pending[name] = max(value, self.pending.get(name, 0))

    # ------------------------------------------------------------------ sequences

    def take_seq(self, stream: str) -> int:
        """The next sequence number of `stream`, reserving a new block durably when one runs out."""
        name = f"seq:{stream}"
        if stream not in self.next:
            self.reserved[stream] = self.stored(name)
            self.next[stream] = self.reserved[stream] + 1
        seq = self.next[stream]
        if seq > self.reserved[stream]:
            reserve = seq + SEQ_BLOCK - 1
            self.write_sidecar({name: reserve})
            self.write(name, reserve)
            self.reserved[stream] = reserve
            self.database.must_commit = True  # a second copy, and the one that counts if the side file failed
        self.next[stream] = seq + 1
        return seq

    def take_seq_in_memory(self, stream: str) -> int:
        """A sequence number while the card refuses writes, from the reserved block; past it,
        the side file reserves the next (the database gets it when the card recovers)."""
        if stream not in self.next:
            base = max(self.reserved.get(stream, 0), self.read_sidecar().get(f"seq:{stream}", 0))
            self.reserved[stream] = base
            self.next[stream] = base + 1
        seq = self.next[stream]
        self.next[stream] = seq + 1
        if seq > self.reserved[stream]:
            self.reserved[stream] = seq + SEQ_BLOCK - 1
            self.write_sidecar({f"seq:{stream}": self.reserved[stream]})
        return seq

    def write_reservations(self) -> None:
        """Into the batch: the blocks reserved, those reserved in memory included."""
        for stream, reserved in self.reserved.items():
            self.database.op(lambda n=f"seq:{stream}", v=reserved: self.write(n, v), durable=False)

    def release_reservations(self) -> None:
        """A clean stop hands back the unused part of each block, so a planned restart leaves
        no gap in the numbers (a cut leaves one, which is harmless: numbers only go up)."""
        used = {f"seq:{stream}": n - 1 for stream, n in self.next.items()}
        if not used:
            return
        def work():
            for name, value in used.items():
                self.database.db.execute("UPDATE counters SET value = ? WHERE name = ?", (value, name))
        self.database.op(work, durable=True)
        self.write_sidecar(used, lower=True)

    def forget_reservations(self) -> None:
        """The database was started afresh: reload the reservations from the side file."""
        self.next.clear()
        self.reserved.clear()

    def last_seqs(self, streams: tuple[str, ...]) -> dict[str, int]:
        """The last sequence number handed out this boot, per stream of `streams` that has one."""
        with self.database.lock:
            return {stream: self.next[stream] - 1 for stream in streams if stream in self.next}
