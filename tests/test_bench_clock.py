"""The bench's lockstep clock: flight time owned by a timekeeper, one task running at a time,
datagrams never overtaken by time, and a whole bench flight the same on an idle or a saturated
machine. Nothing here reads a wall clock to decide a result."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import sqlite3
import sys
import threading
from pathlib import Path

import pytest

from sim.bench.run.lockstep import LockstepClock, LockstepError
from sim.bench.run.timekeeper import Timekeeper, TimekeeperError, speedup_arg
from stratoecho.clock import Clock


@pytest.fixture
def keeper(tmp_path_factory):
    # A Unix socket's path must stay short: pytest's tmp folders can be long.
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="tk-"))
    tk = Timekeeper(d / "s", speedup=None, turn_timeout_s=60.0)
    yield tk
    tk.close()


def in_threads(tk: Timekeeper, *bodies, until_s: float = 1000.0):
    """Run each body(clock) as a bench process of its own (a thread with its own LockstepClock)."""
    errors: list[BaseException] = []

    def run(i, body):
        clock = LockstepClock(str(tk.path), f"p{i}")
        try:
            body(clock)
        except BaseException as e:  # noqa: BLE001 - reported to the test
            errors.append(e)
        finally:
            clock.close()

    threads = [threading.Thread(target=run, args=(i, b), daemon=True) for i, b in enumerate(bodies)]
    for t in threads:
        t.start()
    tk.await_joined(len(bodies), timeout_s=30)
    tk.run(until=lambda: not any(t.is_alive() for t in threads), until_s=until_s)
    for t in threads:
        t.join(10)
    if errors:
        raise errors[0]


def test_time_moves_to_each_deadline_and_tasks_interleave_in_a_fixed_order(keeper):
    log: list[tuple] = []

    def proc(period, n, name):
        def body(clock):
            woke = clock.event()

            def echo():
                while not clock.wait(0.0) and woke.wait(1000.0):
                    log.append((clock.elapsed_s(), name, "echo"))
                    woke.clear()

            clock.thread(echo, f"{name}-echo")
            for _ in range(n):
                clock.wait(period)
                log.append((clock.elapsed_s(), name, "tick"))
                woke.set()
                log.append((clock.elapsed_s(), name, "after set"))  # the setter runs on: one task at a time
            clock.wait(1.0)  # the last echo runs before this process leaves
        return body

    in_threads(keeper, proc(1.5, 4, "a"), proc(2.0, 3, "b"))
    ticks = [(t, n) for t, n, what in log if what == "tick"]
    assert ticks == [(1.5, "a"), (2.0, "b"), (3.0, "a"), (4.0, "b"), (4.5, "a"), (6.0, "a"), (6.0, "b")]
    # Each echo follows its own tick's "after set", never interleaved with it.
    for i, (t, n, what) in enumerate(log):
        if what == "tick":
            assert log[i + 1] == (t, n, "after set")
            assert (t, n, "echo") in log[i + 2:]
    assert keeper.now == 7.0


def test_a_datagram_is_never_overtaken_by_time(keeper):
    """The receiver hears each datagram at the flight time it was sent, however the kernel and
    the scheduler delay it: the timekeeper does not move time while one is on its way."""
    ports: dict[str, int] = {}
    heard: list[tuple[float, bytes]] = []
    ready = threading.Event()

    def receiver(clock):
        sock = clock.udp_socket()
        sock.bind(("127.0.0.1", 0))
        ports["rx"] = sock.getsockname()[1]
        ready.set()
        stop = clock.event()
        while len(heard) < 50:
            if clock.wait_readable([sock], 100.0, stop):
                data, _ = sock.recvfrom(100)
                heard.append((clock.elapsed_s(), data))
        sock.close()

    def sender(clock):
        ready.wait(10)
        sock = clock.udp_socket()
        for i in range(50):
            clock.wait(0.25 if i % 3 else 0.0)
            sock.sendto(f"{clock.elapsed_s():.2f}".encode(), ("127.0.0.1", ports["rx"]))
        sock.close()

    in_threads(keeper, receiver, sender)
    assert len(heard) == 50
    assert all(f"{t:.2f}".encode() == data for t, data in heard)
    assert keeper.stats.datagrams == 50 and keeper.stats.lost_datagrams == 0


def test_a_thread_the_clock_does_not_schedule_cannot_take_a_turn(keeper):
    def body(clock):
        out: list = []
        t = threading.Thread(target=lambda: out.append(_try_thread(clock)))
        t.start()
        t.join()
        assert isinstance(out[0], LockstepError)
        clock.wait(1.0)

    in_threads(keeper, body)


def _try_thread(clock):
    try:
        clock.thread(lambda: None, "stray")
    except LockstepError as e:
        return e
    return None


def test_a_process_that_holds_the_turn_too_long_is_named(tmp_path):
    import tempfile

    tk = Timekeeper(Path(tempfile.mkdtemp(prefix="tk-")) / "s", turn_timeout_s=0.5)
    release = threading.Event()

    def hog():
        clock = LockstepClock(str(tk.path), "hog")
        release.wait(10)  # holds the turn: never waits on the clock
        clock.close()

    t = threading.Thread(target=hog, daemon=True)
    t.start()
    try:
        with pytest.raises(TimekeeperError, match="hog .* held the bench clock's turn"):
            tk.await_joined(1, timeout_s=30)
            tk.run(until=lambda: False)
    finally:
        release.set()
        t.join(5)
        tk.close()


def test_speedup_argument():
    assert speedup_arg("max") is None and speedup_arg("MAX") is None
    assert speedup_arg("60") == 60.0
    for bad in ("0", "-3", "fast"):
        with pytest.raises(ValueError):
            speedup_arg(bad)


def test_real_time_clock_waits_are_ordinary():
    c = Clock(speedup=1000.0)
    ev = c.event()
    assert not ev.wait(1.0)  # a flight second: a millisecond of wall time
    ev.set()
    assert ev.wait(1000.0)
    t = c.thread(lambda: None, "quick")
    assert c.join(t, 1000.0)
    assert c.spend(5.0) is False and c.load_cores(0, 1) is None


def test_flight_code_finds_the_lockstep_through_the_benchs_entry_point(monkeypatch):
    """The payload and the ground station never import the bench: `flight_clock` looks the
    lockstep up among the installed entry points, and says so when the bench is not installed."""
    from stratoecho import clock as core_clock

    assert core_clock.bench_clock_class() is LockstepClock
    monkeypatch.setenv(core_clock.ENV, "/nonexistent/timekeeper.sock")
    monkeypatch.setattr(core_clock, "entry_points", lambda group: [])
    with pytest.raises(core_clock.BenchClockError, match="bench is not installed"):
        core_clock.flight_clock(name="payload")


def test_the_hang_limit_is_the_flights_to_set(monkeypatch, capsys):
    """`sim fly --hang-after S` reaches the timekeeper of the flight (pi-check gives its emulated
    root ten times the limit); a limit that is no positive number of seconds is refused."""
    import sim.bench.fly as fly_module
    from sim.__main__ import main as sim_main
    from sim.bench.fly.flyer import Flyer
    from sim.bench.run.pi_check import EMULATED_HANG_S
    from sim.bench.run.timekeeper import TURN_TIMEOUT_S

    asked = []
    monkeypatch.setattr(fly_module, "fly", lambda opts: asked.append(opts) or (_ for _ in ()).throw(
        fly_module.FlyError("stopped here: the options were what this test wanted")))
    assert sim_main(["fly", "--out", "/nonexistent", "--no-persona", "--hang-after", "900"]) == 1
    assert sim_main(["fly", "--out", "/nonexistent", "--no-persona"]) == 1
    assert [o.hang_after_s for o in asked] == [900.0, TURN_TIMEOUT_S]
    assert EMULATED_HANG_S >= 10 * TURN_TIMEOUT_S
    assert "turn_timeout_s=opts.hang_after_s" in Path(sys.modules[Flyer.__module__].__file__).read_text()
    for bad in ("0", "-5", "nan", "inf", "soon"):
        with pytest.raises(SystemExit):
            sim_main(["fly", "--out", "/nonexistent", "--hang-after", bad])
        assert "is not a positive number of seconds" in capsys.readouterr().err


# ------------------------------------------------------------------ a whole bench flight


def _busy(stop):
    while not stop.is_set():
        pass


def _fly(out: Path, saturate: bool, persona: Path) -> dict:
    from sim.__main__ import main as sim_main

    stop, hogs = mp.Event(), []
    if saturate:  # every core of this machine busy beside the flight
        hogs = [mp.Process(target=_busy, args=(stop,), daemon=True) for _ in range(os.cpu_count() or 2)]
        for h in hogs:
            h.start()
    try:
        rc = sim_main(["fly", "--out", str(out), "--persona", str(persona), "--minutes", "15", "--speedup", "max",
                       "--seed", "11", "--loss", "0.3:burst=3", "--quiet"])
    finally:
        stop.set()
        for h in hogs:
            h.join(5)
    assert rc == 0
    return json.loads((out / "report.json").read_text())


def _delivered(db: Path) -> tuple[list, list]:
    con = sqlite3.connect(db)
    try:
        telemetry = con.execute("SELECT seq, time, lat, lon, alt FROM telemetry ORDER BY boot, seq").fetchall()
        records = con.execute("SELECT kind, boot, seq, created, text FROM records ORDER BY kind, boot, seq").fetchall()
    finally:
        con.close()
    return telemetry, records


@pytest.mark.timeout(600)
def test_the_same_seed_flies_the_same_flight_on_an_idle_and_a_saturated_machine(tmp_path, corpus_bundle):
    idle = _fly(tmp_path / "idle", saturate=False, persona=corpus_bundle)
    busy = _fly(tmp_path / "busy", saturate=True, persona=corpus_bundle)
    # What the payload put on the air, frame by frame: positions, times, sequence numbers, records.
    assert (tmp_path / "idle" / "air.hex").read_text() == (tmp_path / "busy" / "air.hex").read_text()
    # What reached the ground, through the same losses.
    t_idle, r_idle = _delivered(tmp_path / "idle" / "ground.db")
    t_busy, r_busy = _delivered(tmp_path / "busy" / "ground.db")
    assert t_idle == t_busy and len(t_idle) > 50
    assert r_idle == r_busy and {"health", "musing", "event"} <= {kind for kind, *_ in r_idle}
    for key in ("musings", "telemetry", "frames", "events"):
        assert idle[key] == busy[key]
    assert idle["clock"] == "lockstep" and idle["bench_clock"]["lost_datagrams"] == 0
