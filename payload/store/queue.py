"""The queue between the payload's producers and the radio: records numbered and stored by
stream, handed out in sending order, marked sent, acknowledged by the ground."""

from __future__ import annotations

from stratoecho.wire import Kind

from .counters import Counters
from .database import Database
from .fallback import CardFallback
from .records import RecordTable
from .schema import WRITE_FAULTS, StoreError
from .streams import BACKLOG_PRIORITY, DURABLE, STREAMS, Queued, stream_name

_COLUMNS = "id, stream, boot, seq, created, payload, send_count"


class RecordQueue:
    def __init__(self, database: Database, counters: Counters, records: RecordTable, fallback: CardFallback,
                 aging_s: float = 900.0):
        self.database, self.counters, self.records, self.fallback = database, counters, records, fallback
        self.aging_s = aging_s

    # ------------------------------------------------------------------ writing

    def enqueue(self, kind: Kind, boot: int, build_payload, created: float | None = None) -> tuple[int, bytes]:
        """Number and store one record of `kind` (its own stream); returns (seq, payload).

        `build_payload(seq) -> bytes` makes the record's bytes once its sequence number is
        known. Durable streams are on the card when this returns; batched streams at the
        next commit. If the card refuses the write the record is held in memory (degraded)
        and written later: nothing accepted is dropped for a fault of the card."""
        if kind not in STREAMS:
            raise StoreError(f"unknown record kind {kind!r}; known: {', '.join(map(stream_name, STREAMS))}")
        stream = stream_name(kind)
        database = self.database
        created = database.clock() if created is None else created
        with database.lock:
            if self.fallback.held_back():
                self.fallback.flush()  # older accepted records go in first; stays degraded if the card still refuses
            if not database.held:
                made: list[tuple[int, bytes]] = []

                def insert():
                    made.append(self._insert_new(stream, boot, build_payload, created))
                    return made[0]

                try:
                    return database.op(insert, durable=stream in DURABLE)
                except WRITE_FAULTS as e:
                    database.write_failed(e)
                    if made:  # the insert went into the batch, the commit failed: it is held now
                        return made[0]
            seq = self.counters.take_seq_in_memory(stream)
            payload = build_payload(seq)
            database.held.hold(stream, boot, seq, created, payload)
            return seq, payload

    def _insert_new(self, stream: str, boot: int, build_payload, created: float) -> tuple[int, bytes]:
        seq = self.counters.take_seq(stream)
        payload = build_payload(seq)
        self.records.insert(stream, boot, seq, created, payload)
        return seq, payload

    def mark_sent(self, record_id: int) -> None:
        """Batched: a sent mark lost in a power cut only means the record goes out again."""
        database = self.database
        with database.lock:
            if record_id in database.held.records:
                database.held.records[record_id][5] = True
                return
            if record_id in database.held.retired_ids:
                return  # a RAM database's id, now held under another: it goes once more, a duplicate the ground drops
            try:
                database.op(lambda: database.db.execute(
                    "UPDATE records SET state = 'sent', send_count = send_count + 1, sent_at = ? "
                    "WHERE id = ? AND state = 'queued'", (database.clock(), record_id)), durable=False)
            except WRITE_FAULTS as e:
                database.write_failed(e)

    def expire_stale(self, kinds: tuple[Kind, ...], created_before: float,
                     exclude: tuple[int, ...] = ()) -> list[Queued]:
        """Queued records of `kinds` made before `created_before` (a musing gone stale before it
        aired) leave the queue: kept as 'expired', never sent. Returns them. `exclude`: records
        partly on air already, which go on. Batched: a mark lost in a power cut only means it is
        found stale again."""
        streams = tuple(map(stream_name, kinds))
        database = self.database
        with database.lock:
            gone = [Queued.row(mid, r[0], r[1], r[2], r[3], r[4], 0) for mid, r in database.held.records.items()
                    if r[0] in streams and not r[5] and r[3] < created_before and mid not in exclude]
            for q in gone:
                database.held.records[q.id][5] = True  # out of the queue; on the card it reads as sent
            marks = ",".join("?" * len(streams))
            skip = f" AND id NOT IN ({','.join('?' * len(exclude))})" if exclude else ""
            where = f"state = 'queued' AND stream IN ({marks}) AND created < ?{skip}"
            args = (*streams, created_before, *exclude)

            def work():
                rows = database.db.execute(f"SELECT {_COLUMNS} FROM records WHERE {where}", args).fetchall()
                if rows:
                    database.db.execute(f"UPDATE records SET state = 'expired' WHERE {where}", args)
                return rows
            try:
                rows = database.op(work, durable=False)
            except WRITE_FAULTS as e:
                database.write_failed(e)
                rows = []
        return gone + [Queued.row(*row) for row in rows]

    def acknowledge(self, kind: Kind, boot: int, up_to_seq: int, from_seq: int = 0) -> int:
        """The ground holds every record of `kind` and `boot` from `from_seq` to `up_to_seq`:
        durable, never sent again, and the first to go when space is short. Returns how many
        records changed state."""
        database = self.database

        def work():
            database.db.execute(
                "UPDATE records SET state = 'acknowledged' WHERE stream = ? AND boot = ? AND seq BETWEEN ? AND ? "
                "AND state != 'acknowledged'", (stream_name(kind), boot, from_seq, up_to_seq))
            return database.db.changes()
        with database.lock:
            try:
                return database.op(work, durable=True)
            except WRITE_FAULTS as e:
                database.write_failed(e)
                return 0

    # ------------------------------------------------------------------ reading

    def next_queued(self) -> Queued | None:
        """The record the radio should send next (see `queued`)."""
        rows = self.queued(limit=1)
        return rows[0] if rows else None

    def current_telemetry(self, exclude: tuple[int, ...] = ()) -> Queued | None:
        """The newest telemetry sentence, if it is still queued: what the radio sends first."""
        return self.database.reading(lambda: self._current_telemetry(exclude))

    def _current_telemetry(self, exclude: tuple[int, ...]) -> Queued | None:
        database = self.database
        with database.lock:
            rows = database.db.execute(
                f"SELECT {_COLUMNS}, state FROM records WHERE stream = 'telemetry' "
                "ORDER BY boot DESC, seq DESC LIMIT 1").fetchall()
            best = (rows[0][2], rows[0][3]) if rows else (-1, -1)
            newest = Queued.row(*rows[0][:7]) if rows and rows[0][7] == "queued" else None
            for mid, (stream, boot, seq, created, payload, sent) in database.held.records.items():
                if stream == "telemetry" and (boot, seq) > best:
                    best = (boot, seq)
                    newest = None if sent else Queued.row(mid, stream, boot, seq, created, payload, 0)
        return newest if newest is not None and newest.id not in exclude else None

    def queued(self, limit: int = 1, kinds: tuple[Kind, ...] | None = None, exclude: tuple[int, ...] = (),
               backlog_only: bool = False) -> list[Queued]:
        """Queued records in sending order.

        The newest telemetry sentence comes first. Every other record ranks by its stream's
        priority minus its age in units of `aging_s`, oldest first on a tie: a record that
        has waited `aging_s` ranks with the class above it, so bulk never starves forever
        while a fresh position still never waits behind it (`current_telemetry`). Telemetry
        superseded by a newer sentence is backlog, ranked like images. `exclude` leaves out
        records the radio already has in hand, `backlog_only` the current sentence (which the
        radio sends alone); records held in memory while the card refuses writes come after
        the card's."""
        streams = tuple(map(stream_name, kinds)) if kinds else None
        return self.database.reading(lambda: self._queued(limit, streams, exclude, backlog_only))

    def _queued(self, limit: int, streams: tuple[str, ...] | None, exclude: tuple[int, ...],
                backlog_only: bool) -> list[Queued]:
        database = self.database
        with database.lock:
            where, args = ["state = 'queued'"], []
            if streams:
                where.append(f"stream IN ({','.join('?' * len(streams))})")
                args += list(streams)
            if exclude:
                where.append(f"id NOT IN ({','.join('?' * len(exclude))})")
                args += list(exclude)
            newest = database.db.execute(
                "SELECT id FROM records WHERE stream = 'telemetry' ORDER BY boot DESC, seq DESC LIMIT 1").fetchall()
            if backlog_only and newest:
                where.append("id != ?")
                args.append(newest[0][0])
            now = database.clock()
            rows = database.db.execute(
                f"SELECT {_COLUMNS} FROM records WHERE {' AND '.join(where)} ORDER BY "
                "CASE WHEN id = ? THEN -1e18 "
                f"WHEN stream = 'telemetry' THEN {BACKLOG_PRIORITY} - (? - created) / ? "
                "ELSE priority - (? - created) / ? END, created, id LIMIT ?",
                (*args, newest[0][0] if newest else None, now, self.aging_s, now, self.aging_s, limit),
            ).fetchall()
            out = [Queued.row(*row) for row in rows]
            held = sorted(
                (Queued.row(mid, r[0], r[1], r[2], r[3], r[4], 0) for mid, r in database.held.records.items()
                 if not r[5] and mid not in exclude and (not streams or r[0] in streams)
                 and not (backlog_only and r[0] == "telemetry")),
                key=lambda q: (STREAMS[q.kind].priority, -q.created if q.kind is Kind.TELEMETRY else q.created))
        return (out + held)[:limit]

    def find(self, kind: Kind, boot: int, seq: int) -> tuple[Queued, str] | None:
        """One record and its state, for a repair request from the ground."""
        return self.database.reading(lambda: self._find(stream_name(kind), boot, seq))

    def _find(self, stream: str, boot: int, seq: int) -> tuple[Queued, str] | None:
        database = self.database
        with database.lock:
            rows = database.db.execute(
                f"SELECT {_COLUMNS}, state FROM records WHERE stream = ? AND boot = ? AND seq = ?",
                (stream, boot, seq)).fetchall()
            if rows:
                return Queued.row(*rows[0][:7]), rows[0][7]
            for mid, r in database.held.records.items():
                if (r[0], r[1], r[2]) == (stream, boot, seq):
                    return Queued.row(mid, *r[:5], int(r[5])), "sent" if r[5] else "queued"
        return None

    def depth(self) -> dict[str, int]:
        return self.database.reading(self._depth)

    def _depth(self) -> dict[str, int]:
        database = self.database
        with database.lock:
            rows = database.db.execute(
                "SELECT stream, COUNT(*) FROM records WHERE state = 'queued' GROUP BY stream").fetchall()
            out = dict(rows)
            for r in database.held.records.values():
                if not r[5]:
                    out[r[0]] = out.get(r[0], 0) + 1
        return out

    def counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        with self.database.lock:
            rows = self.database.db.execute(
                "SELECT stream, state, COUNT(*) FROM records GROUP BY stream, state").fetchall()
        for stream, state, n in rows:
            out.setdefault(stream, {})[state] = n
        return out
