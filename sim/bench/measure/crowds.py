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

Each crowd is held, and the asks timed beside it, by the one flood driver (sim/bench/run/flood.py).

    python -m sim.bench.measure.crowds [--tries 11] [--crowd one-net|two-nets|feeds]
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from ..run.flood import Crowd, feed_request, hold, load_of_its_own
from ..run.flood import tries as flood_tries
from . import lockout

OPERATOR = "127.0.1.250"
FIELD_WATCHER = "127.0.1.240"
WATCHERS = "127.0.9.{}"  # another network's watchers, a new address each try
TRICKLE_S = 2.0  # a header byte this often
CROWDS = {
    "one-net": ([f"127.0.1.{host}" for host in range(1, 9)], 32, True),
    "two-nets": ([f"127.0.{net}.{host}" for net in (2, 3) for host in range(1, 17)], 32, True),
    "feeds": ([f"127.1.{net}.1" for net in range(128)], 1, False),
}


def crowd(port: int, name: str, trickle_s: float = TRICKLE_S) -> Crowd:
    """Crowd `name`: `each` connections from every one of its addresses, slow (a header byte every
    `trickle_s`, the head never ended) or each asking for a live feed."""
    sources, each, slow = CROWDS[name]
    request = f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Slow: ".encode() if slow else feed_request(port)
    return Crowd(port, [(source, request) for source in sources for _ in range(each)], trickle_s if slow else None)


def _hold(name: str, port: int) -> None:
    """The crowd, in a process of its own: 'on' once it is at its steady state, then held until told
    to stop; what it did."""
    c = crowd(port, name)
    c.start()
    c.wait_on(lockout.START_S)

    def counts() -> dict:
        c.stop.set()
        c.join(5)
        return c.stats()

    hold(counts)


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


def measure(name: str, tries: int = 11) -> dict:
    """The operator's and the watcher's answers, medians of `tries`, without and with crowd `name`."""
    with tempfile.TemporaryDirectory() as tmp, lockout.dashboard(Path(tmp)) as port:
        cookie = lockout.log_in(port, OPERATOR)
        kept = kept_alive(port, cookie)
        try:
            asks = askers(name, port, cookie, kept)
            flood_tries(asks, 3, 1)  # untimed: the first answers' own costs
            quiet = flood_tries(asks, tries, 10)
            with load_of_its_own("sim.bench.measure.crowds", name, str(port)) as held:
                crowded = flood_tries(asks, tries, 40)
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
        _hold(args.hold[0], int(args.hold[1]))
        return 0
    for name in args.crowd or list(CROWDS):
        print(json.dumps(measure(name, args.tries), indent=1), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
