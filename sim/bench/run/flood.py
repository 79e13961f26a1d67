"""The one flood driver: what every flood bench does the same way, written once (issue 52).

A flood bench builds a flood, sends it at a pace at something that must keep what it should and
refuse the rest, counts what was kept and refused, and prints rows. The benches in measure/ say
only what is their own (what is flooded, with what, and which counts show that it held):
aggregator_flood.py (junk through one login, and through a real broker), listen_flood.py (junk
datagrams at `listen --udp`), ssdv_flood.py (strangers' pictures while window cues are answered),
and the dashboard's: dashboard.py (idle connections, event streams, map asks), lockout.py (every
slot held) and crowds.py (slow headers and feeds from many networks).

Here, in that order: sending it (`drive`, `LoopbackSenders`, `Crowd`); where it runs, and what is
timed beside it (`in_own_process`; `load_of_its_own` with the load's side `hold`, so that a load's
threads never hold up the answers `tries` times); what was kept, and the report (`db_bytes`,
`database_row`, `taken_row`, `print_rows`).
"""

from __future__ import annotations

import heapq
import json
import selectors
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from groundstation.frame_quota import MB

REOPEN_S = 1.0  # a connection the server ended opens again this long after
ASK_GAP_S = 0.2  # between tries: what the load ended opens again


# ------------------------------------------------------------------ building and sending a flood

@dataclass(frozen=True)
class Pace:
    """At most `rate` items a second on average, kept every `burst` items (the first burst goes at once);
    a flood that fell behind its schedule catches up."""

    rate: float
    burst: int = 1


def drive(items: Iterable, send: Callable[[int, object], None], pace: Pace | None = None,
          stop: threading.Event | None = None) -> int:
    """Each of `items` (made as they are needed) through `send(i, item)`, no faster than `pace`, until
    the items run out or `stop` is set; how many went."""
    sent, t0 = 0, time.monotonic()
    for item in items:
        if stop is not None and stop.is_set():
            break
        if pace is not None and sent % pace.burst == 0 and (wait := t0 + sent / pace.rate - time.monotonic()) > 0:
            time.sleep(wait)
        send(sent, item)
        sent += 1
    return sent


class LoopbackSenders:
    """Datagram sockets on `addresses` (of 127/8: every one but 127.0.0.1 another machine to a receiver's
    limits). The i-th datagram goes from address i % len(addresses), which takes a fresh source port every
    `per_port` datagrams of its own (0: never). The sockets close on leaving the `with`."""

    def __init__(self, addresses: list[str], per_port: int = 0) -> None:
        self.addresses, self.per_port = addresses, per_port
        self._socks: list[socket.socket | None] = [None] * len(addresses)
        self._sent = [0] * len(addresses)

    def send(self, i: int, datagram: bytes, to: tuple[str, int]) -> None:
        k = i % len(self.addresses)
        if self._socks[k] is None or (self.per_port and self._sent[k] % self.per_port == 0):
            self._close(k)
            self._socks[k] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self._socks[k].bind((self.addresses[k], 0))
        self._socks[k].sendto(datagram, to)
        self._sent[k] += 1

    def _close(self, k: int) -> None:
        if (s := self._socks[k]) is not None:
            s.close()
            self._socks[k] = None

    def __enter__(self) -> LoopbackSenders:
        return self

    def __exit__(self, *exc) -> None:
        for k in range(len(self._socks)):
            self._close(k)


def feed_request(port: int) -> bytes:
    """A live feed asked of the dashboard on 127.0.0.1:`port`."""
    return f"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()


class Crowd(threading.Thread):
    """Connections to the dashboard on 127.0.0.1:`port`, one for each (source, request) in `wanted`,
    each opened again REOPEN_S after the server ends it. Once a connection is open its request is
    sent: none (b"") leaves it idle, a whole head asks and reads what comes (a live feed); with
    `trickle_s`, a header byte follows every `trickle_s`, the head never ended (a slow client).
    Counts what was opened, ended by the server and refused (503), and the feeds on (answered 200,
    still open); `cycled`: which connections trickled a byte or were ended at least once."""

    def __init__(self, port: int, wanted: list[tuple[str, bytes]], trickle_s: float | None = None):
        super().__init__(daemon=True)
        self.port, self.wanted, self.trickle_s = port, wanted, trickle_s
        self.stop = threading.Event()
        self.opened = self.ended = self.refused = self.feeds_on = 0
        self.cycled: set[int] = set()

    def is_on(self) -> bool:
        """Every connection at its steady state: each slow one cycled once, else each feed on."""
        return len(self.cycled) >= len(self.wanted) if self.trickle_s is not None else self.feeds_on >= len(self.wanted)

    def wait_on(self, timeout_s: float, until: Callable[[], bool] | None = None) -> None:
        """Until the crowd is on (or `until` says it is); a RuntimeError after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while not (until or self.is_on)():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the crowd did not come on: {self.stats()}")
            time.sleep(0.05)

    def stats(self) -> dict:
        return {"connections": len(self.wanted), "opened": self.opened, "ended": self.ended,
                "refused": self.refused, "feeds_on": self.feeds_on}

    def _open(self, sel: selectors.BaseSelector, which: int) -> None:
        sock = socket.socket()
        sock.bind((self.wanted[which][0], 0))
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", self.port))
        sel.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, {"which": which, "sent": False, "on": False})
        self.opened += 1

    def _event(self, sel: selectors.BaseSelector, sock: socket.socket, state: dict, events: int, due: list) -> bool:
        """Whether the connection goes on."""
        if events & selectors.EVENT_WRITE and not state["sent"]:
            state["sent"] = True
            sel.modify(sock, selectors.EVENT_READ, state)
            if request := self.wanted[state["which"]][1]:
                sock.send(request)
            if self.trickle_s is not None:
                heapq.heappush(due, (time.monotonic() + self.trickle_s, id(sock), sock))
            return True
        data = sock.recv(65536)
        if data.startswith(b"HTTP/1.1 ") and not state["on"]:
            state["on"] = data.startswith(b"HTTP/1.1 200")
            self.feeds_on += state["on"]
            self.refused += data.startswith(b"HTTP/1.1 503")
        return bool(data)

    def _trickle(self, sel: selectors.BaseSelector, due: list, now: float) -> None:
        while due and due[0][0] <= now:
            _, _, sock = heapq.heappop(due)
            key = sel.get_map().get(sock) if sock.fileno() >= 0 else None
            if key is None:
                continue  # ended since
            try:
                sock.send(b"a")
            except OSError:
                continue  # the read sees it ended
            self.cycled.add(key.data["which"])
            heapq.heappush(due, (now + self.trickle_s, id(sock), sock))

    def run(self) -> None:
        sel = selectors.DefaultSelector()
        due: list[tuple[float, int, socket.socket]] = []  # (when, tiebreak, socket): the next trickled byte
        reopen: list[tuple[float, int]] = []
        for which in range(len(self.wanted)):
            self._open(sel, which)
        while not self.stop.is_set():
            now = time.monotonic()
            while reopen and reopen[0][0] <= now:
                self._open(sel, reopen.pop(0)[1])
            self._trickle(sel, due, now)
            for key, events in sel.select(0.05):
                sock, state = key.fileobj, key.data
                try:
                    if self._event(sel, sock, state, events, due):
                        continue
                except OSError:  # reset, or refused: ended, as a close is
                    pass
                sel.unregister(sock)
                sock.close()
                self.ended += 1
                self.feeds_on -= state["on"]
                self.cycled.add(state["which"])
                reopen.append((time.monotonic() + REOPEN_S, state["which"]))
        for key in list(sel.get_map().values()):
            key.fileobj.close()


# ------------------------------------------------------------------ where it runs, and the answers timed beside it

def in_own_process(module: str, *args: str) -> dict:
    """`python -m module ARGS...` run to its end in a process of its own (its memory and its peak are
    the measure's alone): the last line it printed, read as JSON."""
    out = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@contextmanager
def load_of_its_own(module: str, *args: str) -> Iterator[dict]:
    """`python -m module --hold ARGS...`, a load in a process of its own whose threads never hold up the
    answers timed here; yields once it is on (`hold`), and on leaving tells it to stop and puts what
    it held into the dict it yielded."""
    load = subprocess.Popen([sys.executable, "-m", module, "--hold", *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    held: dict = {}
    try:
        if load.stdout.readline().strip() != "on":
            raise RuntimeError(f"the load of {module} did not come on")
        yield held
        load.stdin.close()
        held.update(json.loads(load.stdout.readline() or "{}"))  # only when the body ended well: no error hides
    finally:
        load.stdin.close()
        try:
            load.wait(60)
        except subprocess.TimeoutExpired:
            load.kill()
            load.wait()


def hold(counts: Callable[[], dict]) -> None:
    """The load's side of `load_of_its_own`, once its load is on: says so, holds it until told to stop
    (standard input closed), then prints what `counts` says (stopping it) as one line of JSON."""
    print("on", flush=True)
    sys.stdin.read()
    print(json.dumps(counts()), flush=True)


def tries(asks: dict[str, Callable[[int], tuple[float, int]]], n: int, first: int) -> dict:
    """Each ask `n` times in turn, given the try's number (`first` on), ASK_GAP_S apart: its median
    answer time (`<ask>_ms`), and how many asks were not answered 200 (`failed`)."""
    times: dict[str, list[float]] = {who: [] for who in asks}
    failed = 0
    for i in range(first, first + n):
        for who, ask in asks.items():
            seconds, status = ask(i)
            times[who].append(seconds)
            failed += status != 200
        time.sleep(ASK_GAP_S)
    return {**{f"{who}_ms": 1000 * statistics.median(t) for who, t in times.items()}, "failed": failed}


# ------------------------------------------------------------------ what was kept, and the report

def db_bytes(db: Path) -> int:
    """The database on disk: the file, its write-ahead log and its shared-memory index."""
    return sum(p.stat().st_size for p in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm"))
               if p.exists())


def database_row(name: str, sizes: tuple[int, int], cap_mb: tuple[float, float, str], offered_mb: float,
                 offered_for: str, running: int | None = None) -> tuple:
    """The database after a flood against its cap: `sizes` (bytes before, after), `cap_mb` (in all, for
    each, each what), what it would have held had it kept every `offered_for`, and (`running`) its size
    while flooded."""
    (before, after), (total, each, each_what) = sizes, cap_mb
    while_flooded = "" if running is None else f", {running / MB:.1f} with its log while flooded"
    return (name, f"{after / MB:,.2f}", "MB", f"cap {total:g} MB in all ({each:g} a {each_what}); before "
            f"{before / MB:.2f} MB{while_flooded}; {offered_mb:,.0f} MB for every {offered_for}")


def taken_row(name: str, taken: tuple[int, str], sent: tuple[int, str], seconds: float, fate: str) -> tuple:
    """How much of a flood its target took in (`taken`: how many, as what), of how much was sent (how
    many, of what from whom), in how long, and what became of it."""
    return (name, f"{taken[0]:,}", taken[1], f"of {sent[0]:,} of {sent[1]} ({seconds:.0f} s); {fate}")


def print_rows(rows: list[tuple], header: bool = False) -> None:
    """(figure, value, unit, note) rows as `make bench` prints its table."""
    w = max(len(r[0]) for r in rows)
    if header:
        print(f"{'figure':<{w}}  {'value':>12}  {'unit':<12}  ratio / note")
        print("-" * (w + 50))
    for name, value, unit, note in rows:
        print(f"{name:<{w}}  {value:>12}  {unit:<12}  {note}")
