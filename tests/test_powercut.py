"""Power cuts at random moments: the store through a VFS that drops unsynced writes.

A seeded workload drives the real `Store` through `sim.bench.run.powercut.PowerCutVFS`; at a
random operation the power goes, the card image is built the way a card could hold
it (dirty blocks kept, lost or torn), and a fresh `Store` opens it. What the store had
*confirmed* while the power was on must be there: durable enqueues that returned,
batched ones followed by a returned flush or durable operation, acknowledgements,
named state. Sequence numbers and the boot counter must go on above anything handed
out before the cut.

`POWERCUT_CUTS` sets the number of cut points (default 1,000, about 20 s on two
cores; `make powercut` runs 10,000) and `POWERCUT_SEED` where they fall. A failure names the workload seed, the
cut and the image seed; `replay(workload_seed, cut_at, image_seed, workdir)` runs
that one case again, whatever `POWERCUT_SEED` was.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import apsw
import pytest

from payload.store import Store, kind_of
from sim.bench.run.powercut import BLOCK, PowerCut, PowerCutVFS

BATCHED = ("telemetry", "health", "image")
DURABLE = ("musing", "event", "api_request")
SESSIONS = 3  # boots per workload, each ended by a clean close
STEPS = 45  # operations per boot
WORKLOADS = 20  # distinct workload seeds the cut points are spread over
CUTS = int(os.environ.get("POWERCUT_CUTS", "1000"))
SEED = int(os.environ.get("POWERCUT_SEED", "20260"))  # picks the cut points; a nightly may vary it
# Checkpoint every 16 WAL pages (SQLite's default is 1,000, about 4 MB): a short
# workload then checkpoints, and restarts the WAL, many times, so cuts land in
# automatic checkpoints too, besides the store's own `checkpoint()` (which truncates
# the WAL) and the one at each close. The store does not expose the threshold, so the
# test sets it on the store's connection (a per-connection setting).
AUTOCHECKPOINT = 16


class Cut(Exception):
    """The power went during this step."""


@dataclass
class Oracle:
    """What the workload asked for, and what the store confirmed while the power was on."""

    issued: dict[tuple, bytes] = field(default_factory=dict)  # every payload built
    confirmed: dict[tuple, bytes] = field(default_factory=dict)
    pending: list[tuple] = field(default_factory=list)  # batched, returned, not yet committed
    handed: dict[str, int] = field(default_factory=dict)  # highest seq returned, per stream
    boots: list[int] = field(default_factory=list)
    acks_confirmed: list[tuple] = field(default_factory=list)
    acks_tried: list[tuple] = field(default_factory=list)
    state: dict[str, str] = field(default_factory=dict)
    state_inflight: tuple[str, str] | None = None  # a set_state that has not returned
    marked: set[tuple] = field(default_factory=set)
    faults: list[str] = field(default_factory=list)  # store faults while the power was on

    def commit(self) -> None:
        for key in self.pending:
            self.confirmed[key] = self.issued[key]
        self.pending.clear()


def _payload(rng: random.Random, stream: str) -> bytes:
    size = rng.randint(500, 6000) if stream == "image" else rng.randint(20, 400)
    return rng.randbytes(size)


def run_workload(seed: int, vfs: PowerCutVFS, path: Path) -> Oracle:
    """Drive the store until the workload ends or the power goes; the returned oracle
    holds only what was confirmed before the cut."""
    rng = random.Random(seed)
    oracle = Oracle()
    store = None

    def step(fn):
        # Faults are swallowed by the store (it goes degraded), so the VFS tells us
        # whether the power went during the step; a step that ran into it confirms nothing.
        try:
            result = fn()
        except Exception:
            if vfs.tripped:
                raise Cut from None
            raise
        if vfs.tripped:
            raise Cut
        if store is not None and store.database.fault_count > len(oracle.faults):
            oracle.faults = list(store.database.faults)
        return result

    try:
        for _ in range(SESSIONS):
            store = None
            store = step(lambda: Store(path, vfs=vfs.name, flush_s=1e9))
            store.database.db.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT}")
            boot = step(store.counters.start_boot)
            oracle.boots.append(boot)
            oracle.commit()
            for _ in range(STEPS):
                _one_step(rng, store, boot, oracle, step)
            step(store.close)
            oracle.commit()
            store = None
    except Cut:
        if store is not None:
            try:
                store.database.db.close(True)  # abandon it: the VFS refuses whatever it still tries
            except apsw.Error:
                pass  # the refusal is the point: the power is off
    return oracle


def _one_step(rng, store, boot, oracle, step) -> None:
    r = rng.random()
    if r < 0.65:
        stream = rng.choice(BATCHED if r < 0.42 else DURABLE)
        body = _payload(rng, stream)
        created = rng.uniform(0, 1e6)

        def build(seq, stream=stream, body=body):
            data = f"{stream}/{boot}/{seq}/".encode() + body
            oracle.issued[(stream, boot, seq)] = data
            return data

        seq, data = step(lambda: store.queue.enqueue(kind_of(stream), boot, build, created=created))
        assert data == oracle.issued[(stream, boot, seq)]
        oracle.handed[stream] = max(oracle.handed.get(stream, 0), seq)
        oracle.pending.append((stream, boot, seq))
        if stream in DURABLE:
            oracle.commit()
    elif r < 0.73:
        step(store.fallback.flush)
        oracle.commit()
    elif r < 0.83:
        keys = sorted(oracle.issued)
        if keys:
            key = rng.choice(keys)
            found = step(lambda: store.queue.find(kind_of(key[0]), *key[1:]))
            if found is not None:
                oracle.marked.add(key)
                step(lambda: store.queue.mark_sent(found[0].id))
    elif r < 0.91:
        stream = rng.choice(BATCHED + DURABLE)
        top = oracle.handed.get(stream, 0)
        up_to = rng.randint(0, top) if top else 0
        ack = (stream, boot, up_to)
        oracle.acks_tried.append(ack)
        step(lambda: store.queue.acknowledge(kind_of(ack[0]), *ack[1:]))
        oracle.acks_confirmed.append(ack)
        oracle.commit()
    elif r < 0.97:
        name, value = rng.choice(("mode", "note")), f"v{rng.randrange(10**6)}"
        oracle.state_inflight = (name, value)
        assert step(lambda: store.state.set(name, value)) is True
        oracle.state[name], oracle.state_inflight = value, None
        oracle.commit()
    else:
        step(store.checkpoint)  # flushes, then folds the WAL in and truncates it
        oracle.commit()


def check_recovery(image: Path, oracle: Oracle) -> list[str]:
    """Everything a reboot onto `image` must find; returns the problems, none if all is well."""
    problems = []
    if oracle.faults:
        problems.append(f"store faulted while the power was on: {oracle.faults[:2]}")
    # Integrity, and the rows, from a copy recovered by plain SQLite; the store then
    # recovers the untouched image itself.
    copy = image.with_name(image.name + "-check")
    shutil.copytree(image, copy)
    con = apsw.Connection(str(copy / "queue.db"))
    try:
        verdict = con.execute("PRAGMA integrity_check").fetchall()
        if verdict != [("ok",)]:
            return problems + [f"integrity_check: {verdict[:3]}"]
        has_records = con.execute("SELECT count(*) FROM sqlite_schema WHERE name = 'records'").fetchall()[0][0]
        rows = con.execute("SELECT stream, boot, seq, payload, state FROM records").fetchall() if has_records else []
    except apsw.Error as e:
        return problems + [f"integrity_check: {type(e).__name__}: {e}"]
    finally:
        con.close()

    store = Store(image / "queue.db")
    try:
        if store.database.fault_count:
            problems.append(f"store found a fault on reopening: {list(store.database.faults)}")
        present = {(s, b, q): (p, st) for s, b, q, p, st in rows}
        for key, payload in oracle.confirmed.items():
            found = store.queue.find(kind_of(key[0]), *key[1:])
            if found is None:
                problems.append(f"confirmed record {key} lost")
            elif found[0].payload != payload:
                problems.append(f"confirmed record {key} has a different payload")
        for key, (payload, state) in present.items():
            if oracle.issued.get(key) != payload:
                problems.append(f"record {key} was never written with this payload")
                continue
            s, b, q = key
            covered = [a for a in oracle.acks_tried if a[0] == s and a[1] == b and q <= a[2]]
            if any(a in oracle.acks_confirmed for a in covered):
                allowed = {"acknowledged"}
            elif covered:
                allowed = {"queued", "sent", "acknowledged"}
            elif key in oracle.marked:
                allowed = {"queued", "sent"}
            else:
                allowed = {"queued"}
            if state not in allowed:
                problems.append(f"record {key} is {state!r}, expected one of {sorted(allowed)}")
        for name in ("mode", "note"):
            allowed = {oracle.state.get(name)}  # None: never confirmed, and never set is fine
            if oracle.state_inflight and oracle.state_inflight[0] == name:
                allowed.add(oracle.state_inflight[1])  # the step the power cut into
            if (got := store.state.get(name)) not in allowed:
                problems.append(f"state {name!r} is {got!r}, confirmed {oracle.state.get(name)!r}")

        boot = store.counters.start_boot()
        if oracle.boots and boot <= max(oracle.boots):
            problems.append(f"boot {boot} after boots {oracle.boots}")
        if store.counters.get("boot") != boot:
            problems.append(f"boot counter {store.counters.get('boot')} != {boot}")
        for stream in BATCHED + DURABLE:
            seq, _ = store.queue.enqueue(kind_of(stream), boot, lambda q: b"after", created=2e6)
            before = max([oracle.handed.get(stream, 0)] + [k[2] for k in present if k[0] == stream])
            if seq <= before:
                problems.append(f"{stream}: seq {seq} after the reboot, but {before} was handed out before the cut")
        store.fallback.flush()
    finally:
        store.close()
    return problems


def count_ops(seed: int, workdir: Path) -> int:
    """Operations the whole workload `seed` makes, with no cut."""
    run = workdir / f"count-{seed}"
    run.mkdir()
    with PowerCutVFS() as vfs:
        run_workload(seed, vfs, run / "queue.db")
        return vfs.ops


def replay(workload_seed: int, cut_at: int, image_seed: int, workdir: Path) -> list[str]:
    """One power cut: run workload `workload_seed` until op `cut_at`, build the card image
    with `image_seed`, reboot onto it; returns the problems found."""
    run = workdir / f"w{workload_seed}-c{cut_at}-i{image_seed}"
    (run / "live").mkdir(parents=True)
    with PowerCutVFS(cut_at=cut_at, snapshot_dirs=(run / "live",)) as vfs:
        oracle = run_workload(workload_seed, vfs, run / "live" / "queue.db")
        # The extremes too: nothing unsynced reached the card, all of it did, all of it torn.
        rng = random.Random(image_seed)
        vfs.crash_image(run / "image", rng, keep=rng.choice((0.0, 0.5, 1.0)), torn=rng.choice((0.0, 0.25, 0.9)))
    problems = check_recovery(run / "image", oracle)
    if not problems:
        shutil.rmtree(run)  # keep only the evidence of failures
    return problems


# ---------------------------------------------------------------------- the store under cuts


@pytest.fixture
def scratch(tmp_path):
    """Where the cuts run: memory (/dev/shm) where there is one. Thousands of small files
    created, renamed and deleted cost little there, and minutes on a disk that other jobs
    keep busy; the VFS, not the disk, decides what survives. Failed cases are copied to
    `tmp_path`, which pytest keeps."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    with tempfile.TemporaryDirectory(dir=shm, prefix="powercut-") as d:
        yield Path(d)
        for kept in Path(d).glob("w*-c*-i*"):
            shutil.copytree(kept, tmp_path / kept.name)


def test_store_survives_power_cuts_at_random_points(scratch, monkeypatch):
    """CUTS power cuts, spread evenly over WORKLOADS workloads and over each one's whole
    range of operations: WAL appends and syncs, checkpoints into the database, the
    rollback journal of the first open, reopening after a clean close."""
    # The VFS decides what is durable (the counters side file as it stands at the cut);
    # the side file's real fsyncs would only cost time.
    monkeypatch.setattr(os, "fsync", lambda fd: None)
    totals = {seed: count_ops(seed, scratch) for seed in range(WORKLOADS)}
    rng = random.Random(SEED)
    failures = []
    for i in range(CUTS):
        seed = i % WORKLOADS
        cut_at = rng.randrange(totals[seed])
        try:
            problems = replay(seed, cut_at, i, scratch)
        except Exception as e:  # noqa: BLE001 - one case's crash is one failure among many
            problems = [f"raised {type(e).__name__}: {e}"]
        if problems:
            failures.append(f"replay({seed}, {cut_at}, {i}): " + "; ".join(problems[:4]))
    assert not failures, f"{len(failures)} of {CUTS} cuts failed:\n" + "\n".join(failures[:20])


def test_cut_points_reach_checkpoints_and_every_file(tmp_path):
    """The harness itself: the workload's operations include checkpoint writes into the
    database and WAL syncs, so random cut points land in each."""
    with PowerCutVFS(trace=True) as vfs:
        run_workload(0, vfs, tmp_path / "queue.db")
    kinds = {(kind, Path(path).name) for kind, path in vfs.trace}
    assert {("write", "queue.db"), ("sync", "queue.db"), ("write", "queue.db-wal"),
            ("sync", "queue.db-wal"), ("truncate", "queue.db-wal")} <= kinds
    checkpoint_writes = sum(1 for kind, path in vfs.trace if kind == "write" and path.endswith("queue.db"))
    assert checkpoint_writes > len(vfs.trace) // 20


# ---------------------------------------------------------------------- the harness itself


def _rows_committed(tmp_path: Path, synchronous: str, cut_at: int, image_seed: int) -> tuple[int, int, str]:
    """A plain apsw database through the VFS: one row per committed transaction until the
    power goes. Returns (rows committed, rows found after the cut, integrity verdict)."""
    run = tmp_path / f"{synchronous}-{cut_at}-{image_seed}"
    (run / "live").mkdir(parents=True)
    committed = 0
    with PowerCutVFS(cut_at=cut_at) as vfs:
        con = apsw.Connection(str(run / "live" / "t.db"), vfs=vfs.name)
        try:
            con.execute("PRAGMA journal_mode=WAL").fetchall()
            con.execute(f"PRAGMA synchronous={synchronous}")
            con.execute("PRAGMA wal_autocheckpoint=8")
            con.execute("CREATE TABLE t (n INTEGER PRIMARY KEY, body BLOB)")
            for n in range(60):
                con.execute("INSERT INTO t VALUES (?, ?)", (n, bytes([n]) * 1500))
                if vfs.tripped:
                    break
                committed += 1
        except apsw.Error:
            assert vfs.tripped
        try:
            con.close(True)
        except apsw.Error:
            pass  # after a cut the VFS refuses the close's writes: expected
        vfs.crash_image(run / "image", random.Random(image_seed))
    con = apsw.Connection(str(run / "image" / "t.db"))
    try:
        verdict = con.execute("PRAGMA integrity_check").fetchall()[0][0]
        found = con.execute("SELECT count(*) FROM t").fetchall()[0][0] if verdict == "ok" else -1
    except apsw.SQLError:  # no table: the cut came before CREATE TABLE was durable
        verdict, found = "ok", 0
    except (apsw.CorruptError, apsw.NotADBError) as e:
        verdict, found = f"{type(e).__name__}: {e}", -1
    finally:
        con.close()
    return committed, found, verdict


def test_without_syncs_committed_rows_are_lost(tmp_path):
    """synchronous=OFF never syncs: the card image loses rows that SQLite reported
    committed. If this ever passes without a loss, the harness keeps unsynced writes."""
    losses = 0
    for i in range(12):
        committed, found, verdict = _rows_committed(tmp_path, "OFF", 100 + 20 * i, i)
        losses += verdict != "ok" or found < committed
    assert losses >= 6


def test_with_full_syncs_no_committed_row_is_lost(tmp_path):
    rng = random.Random(7)
    for i in range(40):
        committed, found, verdict = _rows_committed(tmp_path, "FULL", rng.randrange(200), i)
        assert verdict == "ok" and found >= committed, (i, committed, found, verdict)


def _file(vfs: PowerCutVFS, path: Path):
    """A bare WAL file through the VFS (the unix VFS wants its database beside it)."""
    path.with_name(path.name.removesuffix("-wal")).touch()
    flags = apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE | apsw.SQLITE_OPEN_WAL
    return vfs.xOpen(str(path), [flags, 0])


def test_crash_image_of_the_page_cache_model(tmp_path):
    """Exact expectations on a bare file: what is synced stays, what is not may go."""
    old, new = bytes(range(256)) * 32, b"\xee" * (3 * BLOCK)  # 8 KiB synced, then 12 KiB over it
    with PowerCutVFS() as vfs:
        f = _file(vfs, tmp_path / "f-wal")
        f.xWrite(old, 0)
        f.xSync(apsw.SQLITE_SYNC_FULL)
        f.xWrite(new, 0)
        f.xTruncate(BLOCK + 100)
        f.xClose()
        live = (tmp_path / "f-wal").read_bytes()
        assert live == new[: BLOCK + 100]
        vfs.crash_image(tmp_path / "kept", random.Random(1), keep=1.0, torn=0.0)
        assert (tmp_path / "kept" / "f-wal").read_bytes() == live  # all kept: the live file
        vfs.crash_image(tmp_path / "lost", random.Random(1), keep=0.0, torn=0.0)
        assert (tmp_path / "lost" / "f-wal").read_bytes() == old  # all lost: as at the sync
        sectors = set()
        for seed in range(20):
            out = tmp_path / f"torn{seed}"
            vfs.crash_image(out, random.Random(seed), keep=0.0, torn=1.0)
            image = (out / "f-wal").read_bytes()
            assert len(image) == len(old)
            for s in range(0, BLOCK, 512):  # block 0: every sector wholly old or wholly new
                part = image[s:s + 512]
                assert part in (old[s:s + 512], new[s:s + 512])
                sectors.add(part == new[s:s + 512])
            assert image[BLOCK + 100:] == old[BLOCK + 100:]  # truncated away, truncation lost
        assert sectors == {True, False}


def test_crash_image_with_every_block_kept_equals_the_live_database(tmp_path):
    with PowerCutVFS() as vfs:
        con = apsw.Connection(str(tmp_path / "t.db"), vfs=vfs.name)
        con.execute("PRAGMA journal_mode=WAL").fetchall()
        con.execute("PRAGMA synchronous=OFF")  # nothing synced: every block is dirty
        con.execute("CREATE TABLE t (body BLOB)")
        for n in range(30):
            con.execute("INSERT INTO t VALUES (?)", (bytes([n]) * 3000,))
        written = vfs.crash_image(tmp_path / "image", random.Random(3), keep=1.0, torn=0.0)
        assert sorted(p.name for p in written) == ["t.db", "t.db-wal"]  # no -shm
        for p in written:
            assert p.read_bytes() == (tmp_path / p.name).read_bytes()
        con.close()


def test_cut_refuses_every_later_write_and_counts(tmp_path):
    with PowerCutVFS(cut_at=3) as vfs:
        f = _file(vfs, tmp_path / "f-wal")
        f.xWrite(b"a" * 10, 0)
        f.xWrite(b"b" * 10, 10)
        f.xSync(apsw.SQLITE_SYNC_NORMAL)
        with pytest.raises(PowerCut):
            f.xWrite(b"c" * 10, 20)
        with pytest.raises(PowerCut):
            f.xSync(apsw.SQLITE_SYNC_NORMAL)
        with pytest.raises(apsw.IOError):
            vfs.xDelete(str(tmp_path / "f-wal"), False)
        assert f.xRead(20, 0) == b"a" * 10 + b"b" * 10  # reads still work: the cache is there
        assert vfs.tripped_at == 3 and vfs.ops == 5
        stats = vfs.stats[str(tmp_path / "f-wal")]
        assert (stats.bytes_written, stats.writes, stats.syncs) == (20, 2, 1)
        assert (tmp_path / "f-wal").read_bytes() == b"a" * 10 + b"b" * 10
        f.xClose()
