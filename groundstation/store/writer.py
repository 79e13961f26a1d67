"""The ground database's one writer: the listener's (and the network aggregator's) inserts.

`Store` opens a ground database read-write, making or migrating its schema (schema.py, which
says what each table holds and why its journal is WAL with synchronous=NORMAL), and writes
what the station hears: positions, records, who heard what, where stations are, the flight's
pictures (groundstation/pictures.py), what the listener trusts. Commits come in small batches
(`maybe_commit`). Its parts, on the same connection: the frames table under its byte quota
(`store.frames`, `FrameLog`) and the commands queued for the uplink (`store.outbox`, outbox.py).
Reading is the read-only `GroundReader`'s (reader.py).
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from datetime import datetime, timezone
from pathlib import Path

import structlog

from stratoecho import wire
from stratoecho.wire.pictures import announcement

from ..frame_quota import FrameBudget, FrameQuota, bytes_by_sql
from ..pictures import FlightPictures
from .outbox import Outbox
from .schema import StoreError, prepare, utc_now

log = structlog.get_logger(__name__)

DEFAULT_FRAME_QUOTA = FrameQuota()  # what the frames table keeps per source and in all (frame_quota)
DEAD_LETTERS_KEPT = 1_000  # rows; a flood of bad messages replaces its own, never grows the file
DEAD_LETTER_HEAD = 256  # bytes of a set-aside message kept to read it by
_TELEMETRY_COLUMNS = (
    "boot", "seq", "callsign", "time", "lat", "lon", "alt", "sats", "temp_c", "pressure_hpa", "batt_mv",
)
_RECORD_COLUMNS = ("kind", "boot", "seq", "created", "text", "data")


def _none_if_nan(value: float) -> float | None:
    return None if math.isnan(value) else value


def _record_data(r: wire.Record) -> str | bytes | None:
    """`records.data`: what `text` does not say (schema.py's docstring)."""
    if r.kind is wire.Kind.IMAGE:
        return bytes(r.content)
    if r.kind is wire.Kind.EVENT:  # a declared event: its name and severity beside its fields, one JSON object
        e = r.content
        return json.dumps({"event": e.name, "severity": e.severity, **e.fields}, ensure_ascii=False, sort_keys=True)
    if isinstance(r.content, dict):  # health, API requests: the declared fields
        return json.dumps(r.content, ensure_ascii=False, sort_keys=True)
    return None


class FrameLog:
    """The frames table under its byte quota (`store.frames`): anyone can send a station frames, so
    the table keeps what its quotas allow (groundstation/frame_quota.py): the balloon's own tagged
    frames always, anything else up to a share per source and a total. What the quota keeps out is
    counted (`not_stored`) and warned about now and then, never stored.

    `quota`: the bytes per source and in all (None: no limit, for the aggregator, which keeps its
    own per station); `clock` times its warnings."""

    def __init__(self, db: sqlite3.Connection, quota: FrameQuota | None, clock) -> None:
        self._db = db
        self.quota, self._clock = quota, clock
        self._budget: FrameBudget | None = None  # counted from the database at the first frame

    def add(self, data: bytes, source: str, error: str | None = None, received_at: str | None = None, *,
            station: str | None = None, rssi_dbm: float | None = None, snr_db: float | None = None,
            vouched: bytes | None = None) -> int:
        """One row for a frame heard; its id, or 0 when the frame quota keeps it out (a claim past
        its source's share or the total: counted in `not_stored`). `vouched`: the frame the
        balloon's tag checked in (frame_quota.FrameBudget.admit), never kept out."""
        received_at = received_at or utc_now()
        if self.quota is not None and not self._fits(data, source, error, received_at, station, vouched):
            return 0
        cur = self._db.execute(
            "INSERT INTO frames (received_at, source, hex, ok, error, station, rssi_dbm, snr_db) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (received_at, source, data.hex(), int(error is None), error, station, rssi_dbm, snr_db),
        )
        return int(cur.lastrowid or 0)

    def _fits(self, data: bytes, source: str, error: str | None, received_at: str, station: str | None,
              vouched: bytes | None) -> bool:
        if self._budget is None:  # a Store that never stores a frame (the dashboard's) never counts
            self._budget = FrameBudget(self.quota, self.bytes_by_source())
        budget = self._budget
        if budget.admit(data, source, error, received_at, station, vouched=vouched):
            return True
        since = budget.warning_due(source, self._clock())
        if since is not None:
            key = budget.key(source)
            log.warning("frames past the storage quota not stored", source=key, since_last_warning=since,
                        total=budget.over_quota[key], source_quota_mb=self.quota.source_bytes / 1e6,
                        total_quota_mb=self.quota.total_bytes / 1e6,
                        stored_mb=round(budget.bytes.total_used / 1e6, 3))
        return False

    @property
    def not_stored(self) -> dict[str, int]:
        """Frames the quota kept out since opening, by source."""
        return dict(self._budget.over_quota) if self._budget is not None else {}

    def bytes_by_source(self) -> dict[str, int]:
        """The bytes of the frames stored, by origin, as `frame_quota.row_bytes` counts them."""
        return dict(self._db.execute(bytes_by_sql("source")))

    def bytes_by_station(self) -> dict[str, int]:
        """The bytes of the frames stored from each station (the aggregator's quota counts them)."""
        return dict(self._db.execute(bytes_by_sql("station")))


class Store:
    """The one writer of a ground database. `frame_quota` (None: no limit) and `clock` are its
    frames part's (`store.frames`, `FrameLog`, which says what each is)."""

    def __init__(self, path: str | Path, flush_interval_s: float = 0.5, *,
                 frame_quota: FrameQuota | None = DEFAULT_FRAME_QUOTA, clock=time.monotonic) -> None:
        self.path = str(path)
        self.flush_interval_s = flush_interval_s
        try:
            # A Store may be opened in one thread and handed to the listener's thread;
            # it is used by one thread at a time, which is all sqlite3 needs.
            self._db = sqlite3.connect(self.path, timeout=5.0, check_same_thread=False)
        except sqlite3.Error as e:
            raise StoreError(f"cannot open database {self.path}: {e}") from e
        self._db.row_factory = sqlite3.Row
        try:
            prepare(self._db, self.path)
        except sqlite3.DatabaseError as e:  # e.g. "file is not a database"
            self._db.close()
            raise StoreError(f"{self.path}: {e}") from e
        except StoreError:
            self._db.close()
            raise
        self._last_commit = time.monotonic()
        self.inserted = 0  # telemetry and records new to the database since opening
        self.frames = FrameLog(self._db, frame_quota, clock)  # the frames table, under its quota
        self.outbox = Outbox(self._db, self.commit)  # commands for the uplink, committed at once
        self.pictures = FlightPictures(self._db)
        trust = self._db.execute("SELECT keyed FROM trust WHERE id = 1").fetchone()
        self.pictures.keyed = bool(trust and trust[0])  # until the listener says (set_trust)

    # ----------------------------------------------------------------- writing

    def add_dead_letter(self, topic: str, reason: str, payload: bytes, at: str | None = None) -> None:
        """A message set aside: acknowledged so that the broker never offers it again, its first
        DEAD_LETTER_HEAD bytes kept; the newest DEAD_LETTERS_KEPT rows stay."""
        cur = self._db.execute("INSERT INTO dead_letters (at, topic, reason, size, head) VALUES (?, ?, ?, ?, ?)",
                               (at or utc_now(), topic[:200], reason[:300], len(payload),
                                bytes(payload[:DEAD_LETTER_HEAD])))
        self._db.execute("DELETE FROM dead_letters WHERE id <= ?", (int(cur.lastrowid or 0) - DEAD_LETTERS_KEPT,))

    def add_heard(self, kind: str, boot: int, seq: int, station: str, at: str | None = None) -> bool:
        """Note that `station` heard this record (or sentence); False if it was noted before."""
        cur = self._db.execute("INSERT OR IGNORE INTO heard (kind, boot, seq, station, first_at) VALUES (?, ?, ?, ?, ?)",
                               (kind, boot, seq, station, at or utc_now()))
        return cur.rowcount == 1

    def set_station(self, name: str, lat: float, lon: float, alt_m: float, updated_at: str | None = None) -> None:
        """Where station `name` is (its own word: the crew's distances are measured from it).
        ValueError for a position that is none."""
        if not (all(math.isfinite(v) for v in (lat, lon, alt_m)) and abs(lat) <= 90 and abs(lon) <= 180):
            raise ValueError(f"station {name}: {lat}, {lon}, {alt_m} is not a position (LAT LON in degrees, ALT in m)")
        self._db.execute("INSERT OR REPLACE INTO stations (name, lat, lon, alt_m, updated_at) VALUES (?, ?, ?, ?, ?)",
                         (name, float(lat), float(lon), float(alt_m), updated_at or utc_now()))

    def set_trust(self, fingerprint: str | None) -> None:
        """Say what this database's listener believes: with a downlink key (its `fingerprint`),
        only what the balloon signed or tagged is the flight's; None, anyone's sentences."""
        self._db.execute("INSERT OR REPLACE INTO trust (id, keyed, fingerprint, set_at) VALUES (1, ?, ?, ?)",
                         (int(fingerprint is not None), fingerprint, utc_now()))
        self._db.commit()
        self.pictures.keyed = fingerprint is not None

    def add_telemetry(self, t: wire.Telemetry, received_at: str | None = None, authentic: bool = False) -> bool:
        """Store a position; False if it was there already. A sentence is open (anyone can send one:
        `authentic` False), a claim of its own callsign: another callsign's sentence under the same
        number, or another claim of this one's with a different position, is kept beside it, never
        in its place (the reader leaves numbers with two claims out of the track). A position the
        balloon tagged (a late one, as a record) takes the place of every open claim under its
        callsign and number, which counts as new; nothing open is kept beside it after."""
        number = (t.callsign, t.boot, t.seq)
        tagged = self._db.execute("SELECT 1 FROM telemetry WHERE callsign = ? AND boot = ? AND seq = ? AND authentic = 1",
                                  number).fetchone() is not None
        if tagged:
            return False
        if authentic:
            self._db.execute("DELETE FROM telemetry WHERE callsign = ? AND boot = ? AND seq = ? AND authentic = 0", number)
        values = (t.boot, t.seq, t.callsign, t.time, t.lat, t.lon, t.alt, t.sats,
                  _none_if_nan(t.temp_c), _none_if_nan(t.pressure_hpa), t.batt_mv)  # NULL: no reading
        return self._insert("telemetry", (*_TELEMETRY_COLUMNS, "authentic"), (*values, int(authentic)), received_at)

    def add_record(self, r: wire.Record, received_at: str | None = None, authentic: bool = True) -> bool:
        """Store a record; False if (kind, boot, seq) was already there. What the balloon tagged
        (`authentic`: a record from fragments) takes the place of what was open under the same
        number (a musing kept from its text sentences, which anyone could have sent), and that
        counts as new; nothing open ever replaces a tagged record."""
        created = datetime.fromtimestamp(r.created, timezone.utc).isoformat()
        values = (r.kind.name.lower(), r.boot, r.seq, created, r.text, _record_data(r))
        if self._insert("records", (*_RECORD_COLUMNS, "authentic"), (*values, int(authentic)), received_at):
            if authentic and r.kind is wire.Kind.EVENT and r.content.name == "picture":
                self._announce(r.content, received_at or utc_now())
            return True
        if not authentic:
            return False
        cur = self._db.execute(
            "UPDATE records SET created = ?, text = ?, data = ?, received_at = ?, authentic = 1 "
            "WHERE kind = ? AND boot = ? AND seq = ? AND authentic = 0",
            (created, r.text, values[5], received_at or utc_now(), *values[:3]))
        return cur.rowcount == 1

    def _announce(self, e, received_at: str) -> None:
        try:
            self.pictures.announce(announcement(e), received_at)
        except wire.WireError as err:  # the flight's own record, never expected: the packets stay claims
            log.error("picture announcement unread", error=str(err))

    def has_record(self, kind: wire.Kind, boot: int, seq: int) -> bool:
        """A tagged record under this number is in the database already (heard before, maybe
        before a restart)."""
        return self._db.execute("SELECT 1 FROM records WHERE kind = ? AND boot = ? AND seq = ? AND authentic = 1",
                                (kind.name.lower(), boot, seq)).fetchone() is not None

    def add(self, record: wire.Telemetry | wire.Record, received_at: str | None = None,
            authentic: bool | None = None) -> bool:
        """Store a sentence or a record, whichever it is; `authentic`: it came with the balloon's tag
        (None: as each usually comes, a position as an open sentence, a record from tagged fragments)."""
        if isinstance(record, wire.Telemetry):
            return self.add_telemetry(record, received_at, bool(authentic))
        return self.add_record(record, received_at, authentic is not False)

    def add_ssdv(self, packet: wire.SsdvPacket, received_at: str | None = None) -> bool:
        """Keep an SSDV packet, never in another's place; True when new. A packet the flight's
        announcement lists grows that picture's image record (groundstation/pictures.py)."""
        new = self.pictures.add(packet, received_at or utc_now())
        self.inserted += new
        return new

    def ssdv_announced(self, packet: wire.SsdvPacket) -> bool:
        """The flight announced `packet` (its frame is the flight's: no quota refuses it)."""
        return self.pictures.announced(packet) is not None

    def take_believed_ssdv(self) -> list[tuple[wire.SsdvPacket, str]]:
        """The packets that became the flight's since the last call, with when each was heard:
        what the SSDV upload may send."""
        out, self.pictures.believed = self.pictures.believed, []
        return out

    def _insert(self, table: str, columns: tuple[str, ...], values: tuple, received_at: str | None) -> bool:
        names = ", ".join((*columns, "received_at"))
        marks = ", ".join("?" * (len(columns) + 1))
        cur = self._db.execute(
            f"INSERT OR IGNORE INTO {table} ({names}) VALUES ({marks})",
            (*values, received_at or utc_now()),
        )
        new = cur.rowcount == 1
        self.inserted += new
        return new

    def commit(self) -> None:
        self._db.commit()
        self._last_commit = time.monotonic()

    def maybe_commit(self) -> None:
        """Commit if `flush_interval_s` passed since the last commit: batches bursts, bounds loss."""
        if time.monotonic() - self._last_commit >= self.flush_interval_s:
            self.commit()

    def close(self) -> None:
        self.commit()
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
