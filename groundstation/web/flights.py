"""Several flights on one dashboard (issue 33, docs/network.md): the listener keeps the primary
flight in `--db ground.db` and each flight it follows (`listen --follow CALLSIGN=FILE`) in its
own database beside it, `ground.CALLSIGN.db`; `serve --flight-db FILE` adds one kept elsewhere.

`FlightFiles` finds them (a directory listing at most every `RESCAN_S`, so a flight followed
after the dashboard started appears within seconds) and says cheaply, from the files' sizes and
times, whether any of them changed (the live feed's `flights` event). `flights_json` answers
GET /api/flights and `conversation_json` GET /api/conversation: the musings of every flight
merged in the order they were made, each with the paths it came by.

Every database is read through its own read-only `GroundReader`: the dashboard never writes to
a followed flight's database. Paths are the `heard` table's station names (`link.heard_paths`):
``home`` for a frame heard directly, ``home via NEAR1`` for one inside NEAR1's relay envelope.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from ..link.flights import CALLSIGN  # a followed flight's file is ground.CALLSIGN.db, as `listen --follow` names it
from ..store import GroundReader, StoreError, TelemetryRow
from .api import position_json, sentence_time

RESCAN_S = 3.0  # how often the directory is listed for a newly followed flight's database
TRACK_POINTS = 500  # points per flight's track in /api/flights, the first and the latest kept
CONVERSATION_ROWS = 500  # musings in /api/conversation: the newest, of all flights together
VIA = " via "  # a heard path "<station> via <RELAYER>": the frame came in RELAYER's envelope
_SIDE_FILES = ("-wal", "-shm", "-journal")  # SQLite's own files beside a database, never a flight


class FlightFiles:
    """The primary database, the followed flights' beside it, and those named with --flight-db."""

    def __init__(self, primary: Path, extra: Iterable[Path] = (), rescan_s: float = RESCAN_S,
                 clock: Callable[[], float] = time.monotonic):
        self.primary = Path(primary)
        self.extra = [Path(p) for p in extra]
        self._rescan_s, self._clock = rescan_s, clock
        self._lock = threading.Lock()
        self._found: list[Path] = []
        self._scanned_at: float | None = None
        self._answers: dict[tuple[str, Path], tuple[tuple, object]] = {}  # (what, file) -> (its files' stat, answer)

    def paths(self) -> list[Path]:
        """The primary first, then the followed flights beside it by name, then --flight-db's."""
        with self._lock:
            now = self._clock()
            if self._scanned_at is None or now - self._scanned_at >= self._rescan_s:
                self._found, self._scanned_at = self._beside(), now
            found = list(self._found)
        seen = {self.primary.resolve()}
        out = [self.primary]
        for path in [*found, *self.extra]:
            if (key := path.resolve()) not in seen:
                seen.add(key)
                out.append(path)
        return out

    def _beside(self) -> list[Path]:
        stem, suffix = self.primary.stem, self.primary.suffix
        try:
            names = sorted(p.name for p in self.primary.parent.iterdir())
        except OSError:  # the directory went away: no followed flights until it is back
            return []
        out = []
        for name in names:
            middle = name[len(stem) + 1:len(name) - len(suffix)] if name.endswith(suffix) else ""
            if (name.startswith(stem + ".") and CALLSIGN.fullmatch(middle) and not name.endswith(_SIDE_FILES)
                    and (self.primary.parent / name).is_file()):
                out.append(self.primary.parent / name)
        return out

    def callsign_from_name(self, path: Path) -> str:
        """ground.FAR1.db -> FAR1 (the listener's naming); any other file: its name less the suffix."""
        parts = path.name.split(".")
        if path != self.primary and len(parts) == 3 and CALLSIGN.fullmatch(parts[1]):
            return parts[1]
        return path.stem

    def signature(self) -> tuple:
        """Changes when a followed flight appears or any of theirs is written (the database or
        its WAL grows or is touched): what the live feed watches, with no query."""
        out = []
        for path in self.paths()[1:]:
            out.append((str(path), *_changes(path)))
        return tuple(out)

    def cached(self, what: str, path: Path, build: Callable[[], object]) -> object:
        """`build()`'s answer about `path`, built again only once its files changed (sizes and
        times, as `signature`): every open page asks every few seconds, and reading a long flight's
        whole track each time would cost more than the flight's writes ever do."""
        stat = _changes(path)  # before building: a write meanwhile is seen next time
        with self._lock:
            hit = self._answers.get((what, path))
        if hit is not None and hit[0] == stat:
            return hit[1]
        answer = build()
        with self._lock:
            self._answers[(what, path)] = (stat, answer)
        return answer


def _changes(path: Path) -> tuple:
    """What moves when a database is written: its own size and time, and its WAL's. An empty WAL
    is no WAL (a reader's first open makes one, empty: that is no change)."""
    wal = _stat(Path(f"{path}-wal"))
    return (*_stat(path), *(wal if wal[1] else (0, 0)))


def _stat(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
    except OSError:
        return (0, 0)
    return (st.st_mtime_ns, st.st_size)


def path_counts(paths: dict[tuple[str, int, int], list[str]]) -> dict:
    """How the frames came: per class (sentences, musings, records of any kind but sentences, and
    all), how many were heard directly, how many by relay, and how many through each relayer.
    A record heard both ways counts in both; heard by two stations the same way, once."""
    classes = {"sentences": {}, "musings": {}, "records": {}, "all": {}}
    for c in classes.values():
        c.update(heard=0, direct=0, relayed=0, via={})
    for (kind, _, _), stations in paths.items():
        relayers = {s.split(VIA, 1)[1] for s in stations if VIA in s}
        direct = any(VIA not in s for s in stations)
        names = ["all", "sentences"] if kind == "telemetry" else ["all", "records"] + (["musings"] if kind == "musing"
                                                                                       else [])
        for name in names:
            c = classes[name]
            c["heard"] += 1
            c["direct"] += direct
            c["relayed"] += bool(relayers)
            for relayer in relayers:
                c["via"][relayer] = c["via"].get(relayer, 0) + 1
    return classes


def thin_track(rows: list[TelemetryRow], points: int = TRACK_POINTS) -> list[TelemetryRow]:
    """At most `points` of `rows`, evenly spread, the first and the latest always kept."""
    if len(rows) <= points:
        return rows
    step = (len(rows) - 1) / (points - 1)
    return [rows[round(i * step)] for i in range(points)]


def flight_json(files: FlightFiles, path: Path) -> dict:
    """One flight of /api/flights; a database that cannot be read (yet) says why in `error`."""
    out = {"callsign": files.callsign_from_name(path), "file": path.name, "primary": path == files.primary,
           "latest": None, "track": [], "counts": {"sentences": 0, "records": 0, "musings": 0},
           "paths": path_counts({}), "error": None}
    try:
        with GroundReader.open(path) as db:
            out["callsign"] = db.flight.callsign() or out["callsign"]
            counts = db.counts()
            out["counts"] = {"sentences": counts.telemetry, "records": sum(counts.records.values()),
                             "musings": counts.of("musing")}
            out["latest"] = position_json(db.track.latest_position())
            track = [r for r in db.track.telemetry() if not (r.lat == 0 and r.lon == 0)]
            paths = db.link.heard_paths()
        out["track"] = [{"lat": r.lat, "lon": r.lon, "alt": r.alt, "t": sentence_time(r.time, r.received_at)}
                        for r in thin_track(track)]
        out["paths"] = path_counts(paths)
    except (StoreError, sqlite3.Error) as e:  # being made by the listener, moved, or not a ground database
        out["error"] = str(e)
    return out


def flights_json(files: FlightFiles) -> list[dict]:
    """GET /api/flights: every flight, the primary first."""
    return [files.cached("flight", path, lambda path=path: flight_json(files, path)) for path in files.paths()]


def _musings(db: GroundReader, limit: int) -> list[dict]:
    """The newest `limit` musings of one database by when they were made."""
    # GroundReader orders by (boot, seq); the conversation is by `created`: musings are few and
    # small, so all are read and the newest kept.
    rows = sorted(db.records.of("musing"), key=lambda r: (r.created, r.boot, r.seq))[-limit:]
    return [{"boot": r.boot, "seq": r.seq, "created": r.created, "text": r.text, "received_at": r.received_at,
             "authentic": r.authentic} for r in rows]


def conversation_json(files: FlightFiles, limit: int = CONVERSATION_ROWS) -> list[dict]:
    """GET /api/conversation: the newest `limit` musings of all flights, oldest first by when they
    were made, each with its flight's callsign and its paths. A flight that cannot be read is left out."""
    merged = []
    for order, path in enumerate(files.paths()):
        for m in files.cached(f"musings {limit}", path, lambda path=path: _flight_musings(files, path, limit)):
            merged.append((m["created"], order, m["boot"], m["seq"], m))
    merged.sort(key=lambda x: x[:4])
    return [m[-1] for m in merged[-limit:]]


def _flight_musings(files: FlightFiles, path: Path, limit: int) -> list[dict]:
    """One flight's newest `limit` musings with its callsign and their paths; [] while it cannot be read."""
    try:
        with GroundReader.open(path) as db:
            callsign = db.flight.callsign() or files.callsign_from_name(path)
            musings = _musings(db, limit)
            paths = db.link.heard_paths("musing")
    except (StoreError, sqlite3.Error):
        return []
    return [{"callsign": callsign, **m, "paths": paths.get(("musing", m["boot"], m["seq"]), [])} for m in musings]
