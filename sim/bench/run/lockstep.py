"""The bench's lockstep clock: `stratoecho.clock.Clock`'s interface on flight time that a
timekeeper process (`sim/bench/run/timekeeper.py`) owns. It advances time only when every thread of
every process on the bench (payload, channel, ground station) has done what is due now and
waits for something later. Exactly one of those threads runs at a time, in an order that
depends on nothing but what they do, so a bench flight is a function of its seed: the same
on an idle laptop and on a saturated CI runner, only faster or slower.

Flight code never imports this: `stratoecho.clock.flight_clock()` finds `LockstepClock`
through the ``stratoecho.clock`` entry point the bench registers (pyproject.toml) when
`STRATOECHO_BENCH_CLOCK` names a timekeeper's socket (`sim fly` sets it for the processes
it starts).

How the lockstep works (the why of each rule is in docs/bench.md):

* A *task* is a thread the clock knows: the thread that made the clock, and those made
  with `clock.thread()`. A task runs only while it holds this process's turn; it gives
  the turn up only inside a clock wait (`wait`, an event's `wait`, `wait_readable`,
  `join`, `spend`) or when it ends. The next ready task is chosen by a fixed rule:
  tasks woken by an event, in the order the events were set; then those whose file
  became readable; then those whose time came, by (deadline, order of waiting).
* When no task of the process is ready, the process hands the turn back to the
  timekeeper with its earliest deadline. The timekeeper gives the turn to one process
  at a time: first one with datagrams on the way to it, then one that asked (a signal),
  then one whose deadline is now; when none is left, it moves flight time to the
  earliest deadline (no faster than `--speedup`, if one is given).
* Datagrams between bench processes go through `clock.udp_socket()`: each send is
  reported before it is made, and the receiver takes exactly what was sent to it from
  the kernel before its tasks run, so a frame in flight is never overtaken by time.
* Files read through `wait_readable` (the GPS pseudo-terminal) are polled before every
  choice; a poll on a tty first flushes what its other end wrote, so a written NMEA
  sentence is always seen before time moves on.
* `spend(seconds, cores)` is computation whose duration is modelled rather than
  measured (the persona's generation on the board being rehearsed); the bench world
  reads the modelled load back with `load_cores`.
"""

from __future__ import annotations

import atexit
import itertools
import json
import math
import os
import select
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from datetime import datetime, timezone

import structlog

from stratoecho.clock import ENV, Clock

log = structlog.get_logger(__name__)

DRAIN_TIMEOUT_S = 10.0  # wall seconds a reported datagram may take to reach its socket before it is written off
# A process's name on the lockstep instead of the one its code gives: two payloads of one bench
# flight (sim/bench/fly/fleet.py) are both "payload" to their code, and names order their turns.
NAME_ENV = "STRATOECHO_BENCH_NAME"
UNMANAGED_POLL_S = 0.02  # how often a thread the lockstep does not schedule looks at flight time

RUNNING, READY, BLOCKED, DONE = "running", "ready", "blocked", "done"


class LockstepError(RuntimeError):
    """The lockstep was used in a way that would make a flight depend on the machine."""


class _Task:
    __slots__ = ("name", "state", "deadline", "events", "fds", "socks", "stop", "seq", "why", "go", "done")

    def __init__(self, name: str, done):
        self.name = name
        self.state = READY
        self.deadline = math.inf
        self.events: tuple = ()
        self.fds: tuple = ()
        self.socks: tuple = ()
        self.stop = None
        self.seq = 0
        self.why = ""
        self.go = threading.Event()  # set when this task is given the turn
        self.done = done  # a _LockstepEvent set when the task ends


class LockstepClock(Clock):
    """A participant in the bench's lockstep (see the module's docstring)."""

    lockstep = True

    def __init__(self, path: str, name: str, start_utc: datetime | None = None):
        self.speedup = math.inf  # no fixed ratio: as fast as the slowest process
        self._fixed_utc = True
        self.start_utc = start_utc or datetime(2026, 1, 1, tzinfo=timezone.utc)
        self.name = name = os.environ.get(NAME_ENV) or name
        self._lock = threading.RLock()
        self._now = 0.0
        self._tasks: dict[int, _Task] = {}  # thread ident -> task
        self._by_thread: dict[threading.Thread, _Task] = {}
        self._ready: deque[_Task] = deque()
        self._blocked: dict[_Task, None] = {}  # in the order they blocked
        self._running: _Task | None = None
        self._holding = True  # a process that just joined runs until it first waits
        self._wake_asked = False
        self._seqs = itertools.count()
        self._socks: dict[int, _BenchUdp] = {}  # bound port -> socket
        self._drained: dict[int, int] = {}
        self._load: deque[tuple[float, float, float]] = deque()  # (start, end, cores) of modelled work
        self._closed = False
        self._conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._conn.connect(path)
        except OSError as e:
            raise LockstepError(f"cannot reach the bench timekeeper at {path} ({ENV}): {e.strerror}") from e
        self._send({"op": "hello", "name": name, "pid": os.getpid()})
        welcome = json.loads(self._conn.recv(65536))
        self._now = float(welcome["now"])
        main = _Task("main", _LockstepEvent(self))
        main.state = RUNNING
        self._tasks[threading.get_ident()] = main
        self._by_thread[threading.current_thread()] = main
        self._running = main
        self._agent = threading.Thread(target=self._listen, name="lockstep-agent", daemon=True)
        self._agent.start()
        atexit.register(self.close)

    def close(self) -> None:
        """Leave the lockstep (a process does at exit): the timekeeper goes on without us."""
        if not self._let_go():
            return
        try:
            self._conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already gone

    # -- what time it is ---------------------------------------------------------------

    def restart(self) -> None:
        """Flight time belongs to the timekeeper: a launch does not move it."""

    def adopt(self, epoch_unix: float) -> None:
        """Flight time belongs to the timekeeper: a rebooted payload reads it as it is."""

    def epoch_unix(self) -> float:
        return time.time() - self._now

    def elapsed_s(self) -> float:
        return self._now

    def wall_s(self, flight_seconds: float) -> float:
        return 0.0

    def liveness_time(self) -> float:
        """Liveness counts flight seconds here: they stand for the Pi's real ones, and the
        supervisor (sim/bench/run/supervisor.py) counts its watchdog in them too."""
        return self._now

    def liveness_s(self, flight_seconds: float) -> float:
        return flight_seconds

    # -- waiting -----------------------------------------------------------------------

    def _task(self) -> _Task | None:
        return self._tasks.get(threading.get_ident())

    def wait(self, flight_seconds: float, stop: threading.Event | None = None) -> bool:
        if stop is not None and stop.is_set():
            return True
        self._block(self._now + max(flight_seconds, 0.0), events=(stop,) if stop is not None else ())
        return bool(stop is not None and stop.is_set())

    def event(self) -> _LockstepEvent:
        return _LockstepEvent(self)

    def thread(self, target: Callable, name: str, args: tuple = (), daemon: bool = True) -> threading.Thread:
        if self._task() is None:
            raise LockstepError(f"thread {name!r} started from a thread the bench clock does not schedule")
        task = _Task(name, _LockstepEvent(self))

        def run() -> None:
            with self._lock:
                self._tasks[threading.get_ident()] = task
            task.go.wait()
            task.go.clear()
            try:
                target(*args)
            finally:
                with self._lock:
                    task.state = DONE
                    self._tasks.pop(threading.get_ident(), None)
                    task.done.set()
                    if self._running is task:
                        self._running = None
                        self._schedule()

        t = threading.Thread(target=run, name=name, daemon=daemon)
        with self._lock:
            self._by_thread[t] = task
            self._ready.append(task)
        t.start()
        return t

    def join(self, thread: threading.Thread, timeout_s: float | None = None) -> bool:
        task = self._by_thread.get(thread)
        if task is None:  # not one of ours: it runs on its own
            return super().join(thread, 60.0 if timeout_s is None else timeout_s)
        if task.state != DONE:
            task.done.wait(timeout_s)
        return task.state == DONE

    def wait_readable(self, files: Iterable, timeout_s: float | None, stop: threading.Event | None = None) -> list:
        files = list(files)
        if stop is not None and stop.is_set():
            return []
        socks = tuple(f for f in files if isinstance(f, _BenchUdp))
        fds = tuple(f for f in files if not isinstance(f, _BenchUdp))
        ready = self._readable(files)
        if not ready:
            deadline = math.inf if timeout_s is None else self._now + max(timeout_s, 0.0)
            self._block(deadline, events=(stop,) if stop is not None else (), fds=fds, socks=socks)
            ready = self._readable(files)
        return ready

    @staticmethod
    def _readable(files: list) -> list:
        out = [f for f in files if isinstance(f, _BenchUdp) and f._queue]
        raw = [f for f in files if not isinstance(f, _BenchUdp)]
        if raw:
            try:
                r, _, _ = select.select(raw, [], [], 0)
            except (OSError, ValueError):
                r = []
            out += r
        return out

    def spend(self, flight_seconds: float, cores: float = 1.0, stop: threading.Event | None = None) -> bool:
        """Computation modelled to take `flight_seconds` on `cores` cores: time passes, the world
        sees the load (`load_cores`)."""
        with self._lock:
            self._load.append((self._now, self._now + flight_seconds, cores))
            while len(self._load) > 256:
                self._load.popleft()
        return self.wait(flight_seconds, stop)

    def load_cores(self, t0: float, t1: float) -> float | None:
        if t1 <= t0:
            return 0.0
        with self._lock:
            busy = sum(max(0.0, min(e, t1) - max(s, t0)) * c for s, e, c in self._load)
        return busy / (t1 - t0)

    def udp_socket(self, family: int = socket.AF_INET) -> _BenchUdp:
        return _BenchUdp(self, family)

    # -- the turn ----------------------------------------------------------------------

    def _block(self, deadline: float, events: tuple = (), fds: tuple = (), socks: tuple = ()) -> str:
        task = self._task()
        if task is None or self._closed:
            return self._poll_unmanaged(deadline, events, fds, socks)
        with self._lock:
            if self._running is not task:
                raise LockstepError(f"task {task.name!r} waited without holding the turn")
            plain = [e for e in events if not isinstance(e, _LockstepEvent)]
            task.events = tuple(e for e in events if isinstance(e, _LockstepEvent))
            task.stop = plain[0] if plain else None
            task.deadline, task.fds, task.socks = deadline, fds, socks
            task.state, task.seq = BLOCKED, next(self._seqs)
            self._blocked[task] = None
            for e in task.events:
                e._waiters[task] = None
            for s in socks:
                s._waiters[task] = None
            if any(e._flag for e in task.events):
                self._wake(task, "event")
            elif any(s._queue for s in socks):
                self._wake(task, "datagram")
            self._running = None
            self._schedule()
        task.go.wait()
        task.go.clear()
        return task.why

    def _poll_unmanaged(self, deadline: float, events: tuple, fds: tuple, socks: tuple) -> str:
        """A thread the lockstep does not schedule (a library's, a watchdog's): it follows
        flight time from the side, which is fine for anything that does not touch the flight.
        Once the timekeeper is gone every wait is a short real one, while the process stops."""
        if self._closed:
            time.sleep(UNMANAGED_POLL_S)
            return "closed"
        while not self._closed:
            if self._now >= deadline:
                return "time"
            if any(e.is_set() for e in events):
                return "event"
            if (fds or socks) and self._readable([*fds, *socks]):
                return "fd"
            time.sleep(UNMANAGED_POLL_S)
        return "closed"

    def _wake(self, task: _Task, why: str) -> None:
        """Make a blocked task ready (lock held)."""
        if task.state != BLOCKED:
            return
        task.state, task.why = READY, why
        self._blocked.pop(task, None)
        for e in task.events:
            e._waiters.pop(task, None)
        for s in task.socks:
            s._waiters.pop(task, None)
        self._ready.append(task)

    def _poll_blocked(self) -> None:
        """Wake what became due without anyone setting it: readable files, a plain stop event
        set from outside, and deadlines that have come (lock held)."""
        blocked = list(self._blocked)
        fds = [f for t in blocked for f in t.fds]
        readable: set = set()
        if fds:
            try:
                readable = set(select.select(fds, [], [], 0)[0])  # on a tty this flushes the other end's writes
            except (OSError, ValueError):
                readable = set(fds)  # a closed file: let its reader find out
        for t in blocked:
            if t.stop is not None and t.stop.is_set():
                self._wake(t, "stop")
            elif readable and any(f in readable for f in t.fds):
                self._wake(t, "fd")
        due = sorted((t for t in self._blocked if t.deadline <= self._now), key=lambda t: (t.deadline, t.seq))
        for t in due:
            self._wake(t, "time")

    def _schedule(self) -> None:
        """Give the turn to the next ready task, or back to the timekeeper (lock held, nobody running)."""
        if not self._holding or self._running is not None:
            return
        self._poll_blocked()
        if self._ready:
            task = self._ready.popleft()
            task.state = RUNNING
            self._running = task
            task.go.set()
            return
        self._holding = False
        self._wake_asked = False
        nxt = min((t.deadline for t in self._blocked), default=math.inf)
        for t in self._blocked:  # a plain event someone outside may set: look again soon
            if t.stop is not None:
                nxt = min(nxt, self._now + 1.0)
        self._send({"op": "release", "next": None if math.isinf(nxt) else nxt, "drained": self._drained})

    def _asked_from_outside(self) -> None:
        """A thread that does not hold the turn made a task ready (a signal handler): ask for the turn."""
        if self._ready and not self._holding and not self._wake_asked and not self._closed:
            self._wake_asked = True
            self._send({"op": "wake"})

    # -- the timekeeper's side -----------------------------------------------------------

    def _send(self, msg: dict) -> None:
        try:
            self._conn.send(json.dumps(msg, separators=(",", ":")).encode())
        except OSError:
            self._lost_timekeeper()

    def _listen(self) -> None:
        while not self._closed:
            try:
                data = self._conn.recv(65536)
            except OSError:
                data = b""
            if not data:
                if not self._closed:
                    self._lost_timekeeper()
                return
            msg = json.loads(data)
            if msg.get("op") == "grant":
                self._granted(float(msg["now"]), {int(p): int(n) for p, n in msg.get("pending", {}).items()})

    def _granted(self, now: float, pending: dict[int, int]) -> None:
        with self._lock:
            self._holding = True
            self._now = max(self._now, now)
            for port, n in sorted(pending.items()):
                sock = self._socks.get(port)
                if sock is not None:
                    sock._drain(n)
            self._schedule()

    def _lost_timekeeper(self) -> None:
        """The timekeeper is gone (the bench flight ended or failed): nothing will move time
        again, so every task runs on at once and waits no more."""
        if self._let_go():
            log.warning("bench_clock_lost", process=self.name)
            os.kill(os.getpid(), signal.SIGTERM)  # the flight is over or failed: stop as on a SIGTERM

    def _let_go(self) -> bool:
        """Leave the lockstep: every task runs on its own from now on. False if already left."""
        with self._lock:
            if self._closed:
                return False
            self._closed = True
            for t in list(self._blocked):
                self._wake(t, "closed")
            for t in self._ready:
                t.state = RUNNING
                t.go.set()
            self._ready.clear()
            return True

    # -- datagrams -----------------------------------------------------------------------

    def _bound(self, sock: _BenchUdp, port: int) -> None:
        with self._lock:
            self._socks[port] = sock
            self._drained[port] = 0
            self._send({"op": "bind", "port": port})

    def _unbound(self, port: int) -> None:
        with self._lock:
            self._socks.pop(port, None)
            self._send({"op": "unbind", "port": port, "drained": self._drained.pop(port, 0)})

    def _sending(self, port: int) -> None:
        self._send({"op": "sent", "port": port})


class _LockstepEvent:
    """threading.Event's interface on the lockstep: a set wakes its waiters in order; a
    timeout is flight seconds. Set from outside the lockstep (a signal handler), it asks
    the timekeeper for a turn."""

    def __init__(self, clock: LockstepClock):
        self._clock = clock
        self._flag = False
        self._waiters: dict[_Task, None] = {}
        self._cond = threading.Condition(clock._lock)

    def is_set(self) -> bool:
        return self._flag

    isSet = is_set

    def set(self) -> None:
        c = self._clock
        with c._lock:
            self._flag = True
            for t in list(self._waiters):
                c._wake(t, "event")
            if c._task() is not c._running or c._running is None:
                c._asked_from_outside()
            self._cond.notify_all()

    def clear(self) -> None:
        self._flag = False

    def wait(self, timeout: float | None = None) -> bool:
        if self._flag:
            return True
        c = self._clock
        deadline = math.inf if timeout is None else c._now + max(timeout, 0.0)
        c._block(deadline, events=(self,))
        return self._flag


class _BenchUdp:
    """A UDP socket on the lockstep: sends are reported to the timekeeper before they are made;
    what arrives is taken from the kernel by the clock when the timekeeper says it was sent, and
    read from here. Reads never block: wait with `clock.wait_readable` first."""

    def __init__(self, clock: LockstepClock, family: int):
        self._clock = clock
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self._queue: deque[tuple[bytes, tuple]] = deque()
        self._waiters: dict[_Task, None] = {}
        self._port: int | None = None
        self.family = family

    def bind(self, address) -> None:
        self._sock.bind(address)
        self._note_port()

    def _note_port(self) -> None:
        port = self._sock.getsockname()[1]
        if port and port != self._port:
            self._port = port
            self._clock._bound(self, port)

    def sendto(self, data: bytes, address) -> int:
        if self._port is None:
            self.bind(("127.0.0.1" if address[0] in ("127.0.0.1", "localhost") else "0.0.0.0", 0))
        self._clock._sending(int(address[1]))
        try:
            try:
                return self._sock.sendto(data, address)
            except ConnectionRefusedError:  # an ICMP error left by an earlier datagram: this one still goes
                return self._sock.sendto(data, address)
        except OSError:
            self._clock._send({"op": "unsent", "port": int(address[1])})
            raise

    def recvfrom(self, bufsize: int = 65535) -> tuple[bytes, tuple]:
        if not self._queue:
            raise BlockingIOError("nothing received yet: wait with clock.wait_readable")
        data, peer = self._queue.popleft()
        return data[:bufsize], peer

    def _drain(self, n: int) -> None:
        """Take the `n` datagrams the timekeeper says were sent here (clock lock held)."""
        c = self._clock
        for _ in range(n):
            r, _, _ = select.select([self._sock], [], [], DRAIN_TIMEOUT_S)
            try:
                self._queue.append(self._sock.recvfrom(65535))
            except (BlockingIOError, ConnectionError, OSError):
                if not r:
                    log.warning("bench_datagram_lost", port=self._port, waited_s=DRAIN_TIMEOUT_S)
            c._drained[self._port] = c._drained.get(self._port, 0) + 1
        for t in list(self._waiters):
            c._wake(t, "datagram")

    def settimeout(self, _timeout) -> None:
        """Reads never block here (the lockstep waits in `wait_readable`)."""

    def setblocking(self, _flag) -> None:
        """Reads never block here (the lockstep waits in `wait_readable`)."""

    def setsockopt(self, *args) -> None:
        self._sock.setsockopt(*args)

    def getsockname(self):
        return self._sock.getsockname()

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        if self._port is not None:
            self._clock._unbound(self._port)
            self._port = None
        self._sock.close()
