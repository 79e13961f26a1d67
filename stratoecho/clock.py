"""Flight time, and every wait that depends on it, behind one interface.

Everything that waits — a loop's period, a timeout, a back-off, a socket or serial
port to read, another thread — waits through a clock, never `time.sleep` or a bare
`select`, so that one switch decides what time is:

* `Clock` — the system's monotonic clock (speedup 1: a Pi, `--speedup 1` on the bench), or
  the same scaled for unit tests. Waits are the ordinary ones.
* the bench's lockstep clock (`sim/bench/run/lockstep.py`, `LockstepClock`): flight time belongs to a
  timekeeper process (`sim/bench/run/timekeeper.py`) that advances it only when every thread of every
  process on the bench has done what is due now, so a bench flight is a function of its seed.

`flight_clock()` picks: the lockstep clock when `STRATOECHO_BENCH_CLOCK` names a
timekeeper's socket (`sim fly` sets it for the processes it starts), else `Clock`. The flight
code and the ground station never import the bench: the lockstep is found by name among the
``stratoecho.clock`` entry points (pyproject.toml), where the bench registers ``lockstep``,
as the payload finds the bench's hardware (payload/parts/hardware.py).
"""

from __future__ import annotations

import os
import select
import socket
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, timezone
from importlib.metadata import entry_points

ENV = "STRATOECHO_BENCH_CLOCK"  # the timekeeper's socket; set by `sim fly` for the processes it starts
ENTRY_POINTS = "stratoecho.clock"  # where the bench registers its lockstep clock (pyproject.toml)
BENCH_CLOCK = "lockstep"


class BenchClockError(RuntimeError):
    """`STRATOECHO_BENCH_CLOCK` is set, but no bench clock is installed to follow it."""


class Clock:
    """Real time: the system's monotonic clock, or (tests) the same `speedup` times faster."""

    lockstep = False

    def __init__(self, speedup: float = 1.0, start_utc: datetime | None = None):
        if speedup <= 0:
            raise ValueError("speedup must be positive")
        self.speedup = speedup
        self._wall0 = time.monotonic()
        self._fixed_utc = start_utc is not None
        self.start_utc = start_utc or datetime.now(timezone.utc)

    # -- what time it is ---------------------------------------------------------------

    def restart(self) -> None:
        """Make now flight second zero (a bench flight launches once the payload is ready);
        a clock given its `start_utc` keeps it."""
        self._wall0 = time.monotonic()
        if not self._fixed_utc:
            self.start_utc = datetime.now(timezone.utc)

    def adopt(self, epoch_unix: float) -> None:
        """Flight second zero was at wall time `epoch_unix` (a payload rebooted mid-flight)."""
        self._wall0 = time.monotonic() - (time.time() - epoch_unix)

    def epoch_unix(self) -> float:
        """The wall time (time.time()) of flight second zero, for others to share."""
        return time.time() - (time.monotonic() - self._wall0)

    def elapsed_s(self) -> float:
        return (time.monotonic() - self._wall0) * self.speedup

    def now(self) -> datetime:
        return self.start_utc + timedelta(seconds=self.elapsed_s())

    def wall_s(self, flight_seconds: float) -> float:
        return flight_seconds / self.speedup

    def flight_s(self, wall_seconds: float) -> float:
        """The flight seconds that pass in `wall_seconds` of the system's time: how far ahead a loop
        polling the system (a signal) may sleep. Unbounded on the lockstep, whose waits are its own."""
        return wall_seconds * self.speedup

    def real_time_scale(self) -> float:
        """The system's seconds a flight second lasts, for a part that keeps time by itself (an LED's
        blink): 1 on the lockstep, whose flight seconds have no fixed length."""
        return 1.0 if self.lockstep else 1.0 / self.speedup

    def system_deadlines_hold(self) -> bool:
        """Whether a deadline counted in the system's seconds (faulthandler's, systemd's stop timeout)
        means what it says here: not on the lockstep, where the bench's supervisor counts flight time."""
        return not self.lockstep

    def answers_at_once(self) -> bool:
        """Whether work done on request (the ground's API proxy answering a payload's question) is
        ready in no time: on the lockstep time stands while the bench waits for it, so the answer
        is made before the next window; in real time it takes what it takes, on its own thread."""
        return self.lockstep

    def describe(self) -> str:
        """What time this is, for a log line: real time, sped up, or the bench's lockstep."""
        if self.lockstep:
            return "lockstep"
        return "real time" if self.speedup == 1 else f"real time x{self.speedup:g}"

    # -- liveness: the seconds a watchdog counts -------------------------------------------

    def liveness_time(self) -> float:
        """Now, in the seconds the payload's liveness and watchdog count: the system's own
        (systemd's WatchdogSec is real time, whatever the flight's speedup)."""
        return time.monotonic()

    def liveness_s(self, flight_seconds: float) -> float:
        """A span of flight seconds in the seconds `liveness_time` counts."""
        return self.wall_s(flight_seconds)

    # -- waiting -----------------------------------------------------------------------

    def wait(self, flight_seconds: float, stop: threading.Event | None = None) -> bool:
        """Wait `flight_seconds`; True if `stop` was set meanwhile (at once when it is)."""
        stop = stop if stop is not None else threading.Event()
        # The wall seconds, whatever the event: one of this clock's own (`event()`) would scale them
        # again, and a loop waiting on it would run `speedup` times too often.
        return threading.Event.wait(stop, max(flight_seconds, 0.0) / self.speedup)

    def event(self) -> threading.Event:
        """An event whose `wait(timeout)` counts flight seconds."""
        return _ScaledEvent(self.speedup) if self.speedup != 1 else threading.Event()

    def thread(self, target: Callable, name: str, args: tuple = (), daemon: bool = True) -> threading.Thread:
        """Start `target` on a thread of its own."""
        t = threading.Thread(target=target, name=name, args=args, daemon=daemon)
        t.start()
        return t

    def join(self, thread: threading.Thread, timeout_s: float | None = None) -> bool:
        """Wait up to `timeout_s` flight seconds for `thread` to end; True if it has."""
        thread.join(None if timeout_s is None else max(timeout_s, 0.0) / self.speedup)
        return not thread.is_alive()

    def receive_timeout_s(self, poll_s: float) -> float | None:
        """How long a receiver waits for input before it looks at its stop and deadlines: `poll_s`;
        on the lockstep, until input comes or the stop is set (nothing else needs it meanwhile)."""
        return None if self.lockstep else poll_s

    def wait_readable(self, files: Iterable, timeout_s: float | None, stop: threading.Event | None = None) -> list:
        """Those of `files` (sockets, file objects, descriptors) with something to read, waiting up
        to `timeout_s` flight seconds for the first; [] on time-out or when `stop` is set."""
        files = list(files)
        if stop is not None and stop.is_set():
            return []
        wall = None if timeout_s is None else max(timeout_s, 0.0) / self.speedup
        if stop is not None and wall is None:
            wall = 0.2  # a stop is noticed within a fifth of a second
        try:
            ready, _, _ = select.select(files, [], [], wall)
        except (OSError, ValueError):
            return []  # closed under us: nothing to read
        return ready

    def spend(self, flight_seconds: float, cores: float = 1.0, stop: threading.Event | None = None) -> bool:
        """Modelled computation: nothing to do here, the real one already took its time."""
        return bool(stop is not None and stop.is_set())

    def load_cores(self, t0: float, t1: float) -> float | None:
        """Cores busy with modelled computation between two flight times (None: measure the real load)."""
        return None

    def udp_socket(self, family: int = socket.AF_INET) -> socket.socket:
        return socket.socket(family, socket.SOCK_DGRAM)


class _ScaledEvent(threading.Event):
    """A threading.Event whose timeouts are flight seconds of a scaled clock."""

    def __init__(self, speedup: float):
        super().__init__()
        self._speedup = speedup

    def wait(self, timeout: float | None = None) -> bool:
        return super().wait(None if timeout is None else max(timeout, 0.0) / self._speedup)


def flight_clock(speedup: float = 1.0, start_utc: datetime | None = None, name: str | None = None) -> Clock:
    """The bench's lockstep clock when `STRATOECHO_BENCH_CLOCK` names a timekeeper, else real time
    (scaled by `speedup`, which only unit tests and `--speedup` without a timekeeper use)."""
    path = os.environ.get(ENV)
    if path:
        return bench_clock_class()(path, name or _process_name(), start_utc=start_utc)
    return Clock(speedup, start_utc)


def bench_clock_class() -> type[Clock]:
    """The bench's lockstep clock, found by name among the ``stratoecho.clock`` entry points:
    flight code must not import the bench, which registers it (`sim.bench.run.lockstep:LockstepClock`)."""
    found = [ep for ep in entry_points(group=ENTRY_POINTS) if ep.name == BENCH_CLOCK]
    if not found:
        raise BenchClockError(f"{ENV} is set but no {ENTRY_POINTS} entry point is named {BENCH_CLOCK!r}: "
                              "the bench is not installed (pip install -e . in the project registers it)")
    return found[0].load()


def _process_name() -> str:
    import sys

    return os.path.basename(sys.argv[0]) or "python"
