"""The bench's owner of flight time: the other end of `sim.bench.run.lockstep.LockstepClock`.

Every process of a bench flight (payload, channel, ground station) connects to this
timekeeper's Unix socket. One of them at a time holds the turn; it hands the turn back
with the earliest flight time it waits for. The timekeeper then gives the turn to:

1. a process with datagrams on the way to it (each send is reported before it is made,
   each port's owner reports how many it has taken; the owner is told how many to take);
2. a process that asked for a turn from outside the lockstep (a signal handler);
3. a process whose deadline is now, in the order of their names;

and when none is left, it moves flight time to the earliest deadline — or to its own
next action (a power cut, a ground station restart), run while it holds the turn —
never faster than `speedup` flight seconds per wall second when one is given.

So what happens in a flight depends on what the processes do, never on how fast the
machine lets them do it. Wall time only bounds how long one turn may take
(`turn_timeout_s`: a process that holds the turn that long is hung, and the flight
fails naming it).
"""

from __future__ import annotations

import heapq
import itertools
import json
import math
import selectors
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from stratoecho.clock import ENV

log = structlog.get_logger(__name__)

TURN_TIMEOUT_S = 120.0  # wall seconds one process may hold the turn (loading a model or one generation included)
JOIN_TIMEOUT_S = 120.0  # wall seconds a started process has to connect


class TimekeeperError(Exception):
    """A bench flight whose time cannot go on; the message names the process."""


@dataclass
class Participant:
    name: str
    pid: int
    conn: socket.socket
    next_s: float = math.inf
    drained: dict[int, int] = field(default_factory=dict)
    ports: set[int] = field(default_factory=set)
    wants_turn: bool = False


@dataclass
class TimekeeperStats:
    advances: int = 0  # times flight time moved
    turns: int = 0  # turns given
    datagrams: int = 0  # reported sends between bench processes
    lost_datagrams: int = 0  # reported but never taken (a process died holding them)
    wall_s: float = 0.0  # from the first advance


class Timekeeper:
    """Flight time for the processes that connect to `path`. Not thread-safe: one caller drives it."""

    def __init__(self, path: Path, speedup: float | None = None, *, turn_timeout_s: float = TURN_TIMEOUT_S,
                 on_advance: Callable[[float], None] | None = None):
        self.path = Path(path)
        self.speedup = speedup  # None: as fast as the processes go
        self.turn_timeout_s = turn_timeout_s
        self.on_advance = on_advance or (lambda now: None)
        self.now = 0.0
        self.stats = TimekeeperStats()
        self._sel = selectors.DefaultSelector()
        self.path.unlink(missing_ok=True)
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._server.bind(str(self.path))
        self._server.listen(16)
        self._sel.register(self._server, selectors.EVENT_READ)
        self._parts: dict[socket.socket, Participant] = {}
        self._unnamed: set[socket.socket] = set()  # connected, hello not yet read
        self._holder: Participant | None = None
        self._joining: list[Participant] = []  # connected, holding the turn until their first release
        self._sent: dict[int, int] = {}  # port -> datagrams reported sent there, ever
        self._base: dict[int, int] = {}  # port -> sends before its current owner bound it
        self._owner: dict[int, Participant] = {}
        self._actions: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._turn_since = 0.0
        self._wall0: float | None = None
        self._flight0 = 0.0

    # -- what the bench asks of it ---------------------------------------------------

    def env(self) -> dict[str, str]:
        """What a process needs in its environment to join."""
        return {ENV: str(self.path)}

    def at(self, t_s: float, action: Callable[[], None]) -> None:
        """Run `action` when flight time reaches `t_s`, holding the turn (nothing else runs meanwhile)."""
        heapq.heappush(self._actions, (t_s, next(self._order), action))

    def admit(self, proc: subprocess.Popen, what: str, timeout_s: float = JOIN_TIMEOUT_S) -> None:
        """Wait until `proc` has connected and finished starting (its first release); nothing
        else runs meanwhile. Raises TimekeeperError if it exits or does not connect in time."""
        deadline = time.monotonic() + timeout_s
        before = {p.pid for p in self._parts.values()}
        while True:
            joined = [p for p in self._parts.values() if p.pid == proc.pid and p.pid not in before]
            if joined and joined[0] not in self._joining:
                return
            if proc.poll() is not None:
                raise TimekeeperError(f"{what} exited with code {proc.returncode} while starting")
            left = deadline - time.monotonic() if not joined else self.turn_timeout_s
            if left <= 0:
                raise TimekeeperError(f"{what} did not join the bench clock within {timeout_s:.0f} s")
            self._pump(min(left, 0.5))
            self._check_turn()

    def await_joined(self, count: int, timeout_s: float = JOIN_TIMEOUT_S) -> None:
        """Wait until `count` processes have joined and finished starting (tests, in-process clocks)."""
        deadline = time.monotonic() + timeout_s
        while len(self._parts) < count or self._joining:
            if time.monotonic() > deadline:
                raise TimekeeperError(f"{len(self._parts)} of {count} bench processes joined within {timeout_s:.0f} s")
            self._pump(0.2)
            self._check_turn()

    def run(self, until: Callable[[], bool], until_s: float = math.inf, while_present: str | None = None) -> None:
        """Give turns and move time until `until()` is true, flight time would pass `until_s`, or
        the process named `while_present` has left (it exited: time must not run on without it)."""
        while not until():
            if while_present is not None and not self._joining and while_present not in self.names:
                return
            if self._holder is not None or self._joining:
                self._pump(1.0)
                self._check_turn()
                continue
            if self._give_turn():
                continue
            nxt = min([p.next_s for p in self._parts.values()] + ([self._actions[0][0]] if self._actions else []),
                      default=math.inf)
            if nxt > until_s:
                return
            if math.isinf(nxt):
                if not self._parts:
                    return  # nobody left to wait for
                raise TimekeeperError("nothing left to happen: every bench process waits with no deadline")
            self._advance(nxt)

    def settle(self, until: Callable[[], bool], timeout_s: float = 60.0) -> bool:
        """Give turns without moving time (a process stopping on a signal) until `until()` or
        `timeout_s` wall seconds; True if `until()` came true."""
        deadline = time.monotonic() + timeout_s
        while not until():
            if time.monotonic() > deadline:
                return False
            if self._holder is None and not self._joining and not self._give_turn():
                self._pump(0.05)
            else:
                self._pump(0.2)
        return True

    def close(self) -> None:
        for p in list(self._parts.values()):
            self._drop(p)
        self._sel.close()
        self._server.close()
        self.path.unlink(missing_ok=True)

    @property
    def names(self) -> list[str]:
        return sorted(p.name for p in self._parts.values())

    # -- turns -------------------------------------------------------------------------

    def _give_turn(self) -> bool:
        parts = sorted(self._parts.values(), key=lambda p: (p.name, p.pid))
        for p in parts:
            pending = {port: n for port in sorted(p.ports) if (n := self._pending(port)) > 0}
            if pending:
                self._grant(p, pending)
                return True
        for p in parts:
            if p.wants_turn:
                self._grant(p, {})
                return True
        for p in parts:
            if p.next_s <= self.now:
                self._grant(p, {})
                return True
        return False

    def _pending(self, port: int) -> int:
        owner = self._owner[port]
        return self._sent.get(port, 0) - self._base.get(port, 0) - owner.drained.get(port, 0)

    def _grant(self, p: Participant, pending: dict[int, int]) -> None:
        p.wants_turn = False
        p.next_s = math.inf  # told again at its release
        self._holder = p
        self._turn_since = time.monotonic()
        self.stats.turns += 1
        self._tell(p, {"op": "grant", "now": self.now, "pending": pending})

    def _advance(self, t_s: float) -> None:
        if self._wall0 is None:
            self._wall0, self._flight0 = time.monotonic(), self.now
        if self.speedup is not None:
            due = self._wall0 + (t_s - self._flight0) / self.speedup
            if (wait := due - time.monotonic()) > 0:
                self._pump(wait)  # a process may ask for a turn meanwhile; it gets it at t_s
        self.now = max(self.now, t_s)
        self.stats.advances += 1
        self.stats.wall_s = time.monotonic() - self._wall0
        self.on_advance(self.now)
        while self._actions and self._actions[0][0] <= self.now:
            _, _, action = heapq.heappop(self._actions)
            action()

    def _check_turn(self) -> None:
        holder = self._holder or (self._joining[0] if self._joining else None)
        if holder is not None and time.monotonic() - self._turn_since > self.turn_timeout_s:
            raise TimekeeperError(f"{holder.name} (pid {holder.pid}) has held the bench clock's turn "
                                  f"for {self.turn_timeout_s:g} wall seconds at flight second {self.now:.1f}: hung")

    # -- messages ----------------------------------------------------------------------

    def _pump(self, timeout_s: float) -> None:
        for key, _ in self._sel.select(max(timeout_s, 0.0)):
            if key.fileobj is self._server:
                conn, _ = self._server.accept()
                self._sel.register(conn, selectors.EVENT_READ)
                self._unnamed.add(conn)
                continue
            conn = key.fileobj
            try:
                data = conn.recv(65536)
            except OSError:
                data = b""
            if not data:
                self._gone(conn)
                continue
            self._handle(conn, json.loads(data))

    def _handle(self, conn: socket.socket, msg: dict) -> None:
        op = msg["op"]
        p = self._parts.get(conn)
        if op == "hello":
            self._unnamed.discard(conn)
            p = Participant(self._unique(msg["name"]), int(msg["pid"]), conn)
            self._parts[conn] = p
            self._joining.append(p)
            self._turn_since = time.monotonic()  # starting up holds the turn too
            self._tell(p, {"op": "welcome", "now": self.now})
            log.debug("bench_clock_join", process=p.name, pid=p.pid, flight_s=round(self.now, 3))
        elif op == "release":
            p.next_s = math.inf if msg["next"] is None else float(msg["next"])
            p.drained = {int(k): int(v) for k, v in msg.get("drained", {}).items()}
            if p in self._joining:
                self._joining.remove(p)
            if self._holder is p:
                self._holder = None
        elif op == "sent":
            port = int(msg["port"])
            self._sent[port] = self._sent.get(port, 0) + 1
            self.stats.datagrams += 1
        elif op == "unsent":
            port = int(msg["port"])
            self._sent[port] = self._sent.get(port, 0) - 1
            self.stats.datagrams -= 1
        elif op == "bind":
            port = int(msg["port"])
            if (old := self._owner.get(port)) is not None:
                old.ports.discard(port)
            self._owner[port] = p
            p.ports.add(port)
            p.drained[port] = 0
            self._base[port] = self._sent.get(port, 0)
        elif op == "unbind":
            port = int(msg["port"])
            p.drained[port] = int(msg.get("drained", p.drained.get(port, 0)))
            self._unbind(p, port)
        elif op == "wake":
            p.wants_turn = True

    def _unique(self, name: str) -> str:
        taken = {p.name for p in self._parts.values()}
        if name not in taken:
            return name
        return next(f"{name}-{i}" for i in itertools.count(2) if f"{name}-{i}" not in taken)

    def _unbind(self, p: Participant, port: int) -> None:
        if self._owner.get(port) is p:
            lost = self._pending(port)
            if lost > 0:
                self.stats.lost_datagrams += lost
            del self._owner[port]
        p.ports.discard(port)

    def _gone(self, conn: socket.socket) -> None:
        self._unnamed.discard(conn)
        p = self._parts.pop(conn, None)
        self._sel.unregister(conn)
        conn.close()
        if p is None:
            return
        for port in list(p.ports):
            self._unbind(p, port)
        if p in self._joining:
            self._joining.remove(p)
        if self._holder is p:
            self._holder = None
        log.debug("bench_clock_leave", process=p.name, pid=p.pid, flight_s=round(self.now, 3))

    def _drop(self, p: Participant) -> None:
        self._gone(p.conn)

    def _tell(self, p: Participant, msg: dict) -> None:
        try:
            p.conn.send(json.dumps(msg, separators=(",", ":")).encode())
        except OSError:
            pass  # it is gone; its end of file comes next


def speedup_arg(text: str) -> float | None:
    """`--speedup`: a positive number (at most that many flight seconds per wall second) or `max`."""
    if text.strip().lower() == "max":
        return None
    value = float(text)
    if not value > 0:
        raise ValueError(f"{text} is not a positive number or 'max'")
    return value


__all__ = ["Participant", "Timekeeper", "TimekeeperError", "TimekeeperStats", "speedup_arg"]
