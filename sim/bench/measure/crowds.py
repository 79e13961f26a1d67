"""The operator and a watcher under the crowds of issue 50, item 4 ("a dashboard no crowd locks
out"): how long each waits for its answer while a crowd holds all it can, beside the same with
nobody else there; the rows `make bench` prints. tests/test_dashboard_crowds.py runs the same
crowds against the same real `serve` and asserts the answers come.

The dashboard is the real `python -m groundstation serve` in a process of its own (lockout.py's:
an operator password, the unit's LimitNOFILE, its shipped limits). Each crowd runs in another
process, from loopback addresses (every address of 127/8 but 127.0.0.1 counts as another
machine's), and opens each connection again a second after the server ends it:

- `one-net`: 8 addresses x 32 connections in the field network's /24 (127.0.1.1-8), each sending
  its request line at once and then a header byte every 2 s;
- `two-nets`: 32 addresses in two /24s (127.0.2.1-16, 127.0.3.1-16) x 32, likewise;
- `feeds`: 128 live feeds, one from each of 128 /24s (127.1.0.1, 127.1.1.1, ... 127.1.127.1).

The operator is logged in from 127.0.1.250, inside the field network. Its answer: under `one-net`
and `feeds` the page on a new connection from its address; under `two-nets` the page asked again
on its kept-alive connection, opened before the crowd. The watcher: under `one-net` a page from
127.0.1.240 (the field network, not logged in), under `two-nets` from another network
(127.0.9.x), under `feeds` a new live feed's first byte from another network.

    python -m sim.bench.measure.crowds [--tries 11] [--crowd one-net|two-nets|feeds]
"""

from __future__ import annotations

import argparse
import heapq
import json
import selectors
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from . import lockout

OPERATOR = "127.0.1.250"
FIELD_WATCHER = "127.0.1.240"
WATCHERS = "127.0.9.{}"  # another network's watchers, a new address each try
TRICKLE_S = 2.0  # a header byte this often
REOPEN_S = 1.0  # a connection the server ended opens again this long after
CROWDS = {
    "one-net": ([f"127.0.1.{host}" for host in range(1, 9)], 32, True),
    "two-nets": ([f"127.0.{net}.{host}" for net in (2, 3) for host in range(1, 17)], 32, True),
    "feeds": ([f"127.1.{net}.1" for net in range(128)], 1, False),
}


class Crowd(threading.Thread):
    """`each` connections from every address of `sources`, opened again REOPEN_S after the server
    ends one. `slow`: each sends its request line at once, then a header byte every `trickle_s`,
    never ending its head; else each asks for a live feed and reads what comes. Counts what was
    opened, ended by the server and refused (503), the feeds on; `cycled`: how many connections
    have trickled a byte or been ended at least once (the crowd is at its steady state)."""

    def __init__(self, port: int, sources: list[str], each: int, slow: bool, trickle_s: float = TRICKLE_S):
        super().__init__(daemon=True)
        self.port, self.slow, self.trickle_s = port, slow, trickle_s
        self.wanted = [source for source in sources for _ in range(each)]
        self.stop = threading.Event()
        self.opened = self.ended = self.refused = self.feeds_on = 0
        self._cycled: set[int] = set()

    @property
    def cycled(self) -> int:
        return len(self._cycled)

    def _request(self) -> bytes:
        if self.slow:
            return f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nX-Slow: ".encode()
        return f"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n\r\n".encode()

    def _open(self, sel: selectors.BaseSelector, which: int) -> None:
        sock = socket.socket()
        sock.bind((self.wanted[which], 0))
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", self.port))
        sel.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, {"which": which, "sent": False, "on": False})
        self.opened += 1

    def _read(self, sock: socket.socket, state: dict) -> bool:
        """Whether the connection goes on."""
        data = sock.recv(65536)
        if data.startswith(b"HTTP/1.1 ") and not state["on"]:
            state["on"] = data.startswith(b"HTTP/1.1 200")
            self.feeds_on += state["on"]
            self.refused += data.startswith(b"HTTP/1.1 503")
        return bool(data)

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
            while due and due[0][0] <= now:
                _, _, sock = heapq.heappop(due)
                key = sel.get_map().get(sock) if sock.fileno() >= 0 else None
                if key is None:
                    continue  # ended since
                try:
                    sock.send(b"a")
                except OSError:
                    continue  # the read below sees it ended
                self._cycled.add(key.data["which"])
                heapq.heappush(due, (now + self.trickle_s, id(sock), sock))
            for key, events in sel.select(0.05):
                sock, state = key.fileobj, key.data
                try:
                    if events & selectors.EVENT_WRITE and not state["sent"]:
                        state["sent"] = True
                        sel.modify(sock, selectors.EVENT_READ, state)
                        sock.send(self._request())
                        if self.slow:
                            heapq.heappush(due, (time.monotonic() + self.trickle_s, id(sock), sock))
                        continue
                    if self._read(sock, state):
                        continue
                except OSError:  # reset, or refused: ended, as a close is
                    pass
                sel.unregister(sock)
                sock.close()
                self.ended += 1
                self.feeds_on -= state["on"]
                self._cycled.add(state["which"])
                reopen.append((time.monotonic() + REOPEN_S, state["which"]))
        for key in list(sel.get_map().values()):
            key.fileobj.close()

    def is_on(self) -> bool:
        """Every connection at its steady state: each feed on, or each slow one cycled once."""
        return self.cycled >= len(self.wanted) if self.slow else self.feeds_on >= len(self.wanted)

    def stats(self) -> dict:
        return {"connections": len(self.wanted), "opened": self.opened, "ended": self.ended,
                "refused": self.refused, "feeds_on": self.feeds_on}


def crowd(port: int, name: str, trickle_s: float = TRICKLE_S) -> Crowd:
    sources, each, slow = CROWDS[name]
    return Crowd(port, sources, each, slow, trickle_s)


def wait_on(c: Crowd, timeout_s: float = lockout.START_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not c.is_on():
        if time.monotonic() > deadline:
            raise RuntimeError(f"the crowd did not come on: {c.stats()}")
        time.sleep(0.05)


def _hold(name: str, port: int) -> dict:
    """The crowd, in a process of its own, until stdin closes: 'on' once it is at its steady
    state, then what it did."""
    c = crowd(port, name)
    c.start()
    wait_on(c)
    print("on", flush=True)
    sys.stdin.read()
    c.stop.set()
    c.join(5)
    return c.stats()


# ------------------------------------------------------------------ the operator's and a watcher's asks

def kept_alive(port: int, cookie: str) -> socket.socket:
    """The operator's connection, kept alive after a first answer."""
    sock = lockout.send(port, OPERATOR, "/", cookie)
    status, _ = lockout.read_answer(sock)
    if status != 200:
        raise RuntimeError(f"the operator's first page was answered {status}")
    return sock


def time_kept(sock: socket.socket, port: int, cookie: str) -> tuple[float, int]:
    """Seconds until the whole page came on the kept-alive connection, and its status (0: closed)."""
    started = time.perf_counter()
    try:
        sock.sendall(f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: {cookie}\r\n\r\n".encode())
        status, _ = lockout.read_answer(sock)
    except OSError:
        status = 0
    return time.perf_counter() - started, status


def askers(name: str, port: int, cookie: str, kept: socket.socket) -> dict[str, Callable[[int], tuple[float, int]]]:
    """The operator's and the watcher's ask under crowd `name`, each taking the try's number."""
    def page(source: str, with_cookie: bool = False) -> tuple[float, int]:
        return lockout.time_page(port, source, cookie if with_cookie else "")

    operator = ((lambda i: time_kept(kept, port, cookie)) if name == "two-nets"
                else (lambda i: page(OPERATOR, True)))
    if name == "one-net":
        watcher = lambda i: page(FIELD_WATCHER)  # noqa: E731
    elif name == "two-nets":
        watcher = lambda i: page(WATCHERS.format(i))  # noqa: E731
    else:
        watcher = lambda i: lockout.time_feed(port, WATCHERS.format(100 + i), "")  # noqa: E731
    return {"operator": operator, "watcher": watcher}


def _tries(asks: dict, tries: int, first: int) -> dict:
    times: dict[str, list[float]] = {who: [] for who in asks}
    failed = 0
    for i in range(first, first + tries):
        for who, ask in asks.items():
            seconds, status = ask(i)
            times[who].append(seconds)
            failed += status != 200
        time.sleep(0.2)  # the crowd's ended connections open again between tries
    return {**{f"{who}_ms": 1000 * statistics.median(t) for who, t in times.items()}, "failed": failed}


def measure(name: str, tries: int = 11) -> dict:
    """The operator's and the watcher's answers, medians of `tries`, without and with crowd `name`."""
    with tempfile.TemporaryDirectory() as tmp, lockout.dashboard(Path(tmp)) as port:
        cookie = lockout.log_in(port, OPERATOR)
        kept = kept_alive(port, cookie)
        try:
            asks = askers(name, port, cookie, kept)
            _tries(asks, 3, 1)  # untimed: the first answers' own costs
            quiet = _tries(asks, tries, 10)
            load = subprocess.Popen([sys.executable, "-m", "sim.bench.measure.crowds", "--hold", name, str(port)],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            try:
                if load.stdout.readline().strip() != "on":
                    raise RuntimeError(f"the crowd {name} did not come on")
                crowded = _tries(asks, tries, 40)
            finally:
                load.stdin.close()
                held = json.loads(load.stdout.readline() or "{}")
                load.wait(60)
        finally:
            kept.close()
    return {"crowd": name, "quiet": quiet, "crowded": crowded, "tries": tries, **held}


WHAT = {
    "one-net": ("8 addresses x 32 slow connections in the operator's /24",
                {"operator": "operator's page (its address)", "watcher": "page of a watcher in that /24"}),
    "two-nets": ("32 addresses x 32 slow connections in two /24s",
                 {"operator": "operator's page on its kept-alive connection", "watcher": "another network's page"}),
    "feeds": ("128 live feeds from 128 /24s",
              {"operator": "operator's page (its address)", "watcher": "a new watcher's feed, first byte"}),
}


def rows(tries: int = 11) -> list[tuple]:
    out = []
    for name, (crowd_says, who_says) in WHAT.items():
        r = measure(name, tries)
        quiet, crowded = r["quiet"], r["crowded"]
        for who in ("operator", "watcher"):
            out.append((f"under {crowd_says}: {who_says[who]}", f"{crowded[f'{who}_ms']:,.1f}", "ms",
                        f"{quiet[f'{who}_ms']:.1f} ms without; median of {tries}; {crowded['failed']} of "
                        f"{2 * tries} asks failed; the crowd opened {r['opened']:,}, the server ended "
                        f"{r['ended']:,}, refused {r['refused']:,}"))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sim.bench.measure.crowds", description=__doc__.split("\n\n")[0])
    p.add_argument("--tries", type=int, default=11)
    p.add_argument("--crowd", choices=list(CROWDS), action="append", help="only these (default: all)")
    p.add_argument("--hold", nargs=2, metavar=("CROWD", "PORT"), help=argparse.SUPPRESS)  # the crowd's process
    args = p.parse_args(argv)
    if args.hold:
        print(json.dumps(_hold(args.hold[0], int(args.hold[1]))), flush=True)
        return 0
    for name in args.crowd or list(CROWDS):
        print(json.dumps(measure(name, args.tries), indent=1), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
