"""The operator under the lockout (issue 41, attack 7): how long a logged-in operator waits for
the dashboard's page and for its live feed's first byte while every slot is held, beside the
same with nobody else there; the row `make bench` prints.

The dashboard is the real `python -m groundstation serve` in a process of its own, with an
operator password, its shipped limits (groundstation/web/limits.py) and the unit's LimitNOFILE.
The lockout comes from another process, from many loopback addresses (every address of 127/8
but 127.0.0.1 counts as another machine's, limits.is_station):

- 16 addresses x 32 connections that never send a byte (127.0.4.1-8 and 127.0.5.1-8: two /24s,
  each at its network's cap), each one the server closes opened again a second later;
- 128 live feeds: 16 addresses x 4 in 127.0.1.0/24 and as many in 127.0.2.0/24, each network at
  its cap of 64.

The operator is inside the first feeds' network (the field network an attacker shares), logged
in before the lockout from 127.0.1.250; each try is a new connection from an address of its own
there (127.0.1.200 on: a feed whose client went away holds its address's slot until its next
keepalive, and one address has 4).

The lockout is held, and the tries timed beside it, by the one flood driver (sim/bench/run/flood.py).

    python -m sim.bench.measure.lockout [--tries 11]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..run.flood import Crowd, feed_request, hold, load_of_its_own
from ..run.flood import tries as flood_tries

PASSWORD = "velvet quarry oboe sprocket"  # the bench's own operator password (zxcvbn takes it)
NOFILE = 4096  # the dashboard unit's LimitNOFILE (systemd/stratoecho-dashboard.service)
OPERATOR = "127.0.1.250"  # where the operator logs in from
TRIES_FROM = "127.0.1.{}"  # and each try: 175 on (warming up), 200 on (quiet), 225 on (locked)
IDLE_FROM = [f"127.0.{net}.{host}" for net in (4, 5) for host in range(1, 9)]  # 16 addresses
IDLE_EACH = 32
FEEDS_FROM = [f"127.0.{net}.{host}" for net in (1, 2) for host in range(1, 17)]  # 32 addresses
FEEDS_EACH = 4
START_S = 120.0  # what the dashboard may take to start, or the lockout to be on, before giving up

_SERVE = """
import resource, runpy, sys
want = int(sys.argv.pop(1))
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
sys.argv[0] = "groundstation"
runpy.run_module("groundstation", run_name="__main__", alter_sys=True)
"""


@contextmanager
def dashboard(folder: Path, password: str = PASSWORD, settle: bool = True, limits: dict | None = None) -> Iterator[int]:
    """`python -m groundstation serve` on 127.0.0.1 with `password` for the operator, its own
    database in `folder`, in a process of its own with the unit's LimitNOFILE; yields its port
    once it answers (`settle`: and its start's work is done). `limits`: `serve --limit` settings."""
    from groundstation.web import access

    access.Credential.from_password(password).write(folder / "operator.toml")
    log_path = folder / "serve.log"
    settings = [arg for name, value in (limits or {}).items() for arg in ("--limit", f"{name}={value}")]
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            [sys.executable, "-c", _SERVE, str(NOFILE), "--log-level", "WARNING", "serve", "--db",
             str(folder / "ground.db"), "--port", "0", "--operator-file", str(folder / "operator.toml"), *settings],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline = time.monotonic() + START_S
        while not (found := re.search(r"dashboard: http://127\.0\.0\.1:(\d+)/", log_path.read_text())):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the dashboard did not start:\n{log_path.read_text()}")
            time.sleep(0.05)
        if settle:
            _settled(server.pid, deadline)
        yield int(found[1])
    finally:
        server.terminate()
        server.wait(30)


def _settled(pid: int, deadline: float) -> None:
    """Wait until process `pid` uses under a tenth of a core over half a second: `serve` loads its
    base map at start (seconds of CPU), a start's cost and not what is measured here."""
    def cpu_s() -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

    used = cpu_s()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = cpu_s()
        if now - used < 0.05:
            return
        used = now


def send(port: int, source: str, path: str, cookie: str | None = None, timeout: float = 30.0) -> socket.socket:
    """A new connection from `source` with one GET of `path` sent on it."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))
    extra = f"Cookie: {cookie}\r\n" if cookie else ""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}\r\n".encode())
    return sock


def read_head(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """The status, headers and what came after them, of the answer on `sock`."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {data[:200]!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value for name, _, value in (line.partition(": ") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, rest


def read_answer(sock: socket.socket) -> tuple[int, bytes]:
    """The status and whole body of an answer with a Content-Length."""
    status, headers, body = read_head(sock)
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, body


def log_in(port: int, source: str, password: str = PASSWORD) -> str:
    """The operator's session cookie ("name=value"), logged in from `source`."""
    with send(port, source, "/") as sock:
        status, page = read_answer(sock)
    token = re.search(rb'content="([A-Za-z0-9_-]{20,})"', page)
    if status != 200 or token is None:
        raise RuntimeError(f"no page to log in from: {status}")
    body = json.dumps({"password": password}).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(source, 0)) as sock:
        sock.sendall(f"POST /api/login HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
                     f"X-Stratoecho-Token: {token[1].decode()}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        status, headers, _ = read_head(sock)
    if status != 200:
        raise RuntimeError(f"the operator's login was answered {status}")
    return headers["set-cookie"].split(";", 1)[0]


def time_page(port: int, source: str, cookie: str) -> tuple[float, int]:
    """Seconds until the whole main page came on a new connection, and its status."""
    started = time.perf_counter()
    with send(port, source, "/", cookie) as sock:
        status, _ = read_answer(sock)
    return time.perf_counter() - started, status


def time_feed(port: int, source: str, cookie: str) -> tuple[float, int]:
    """Seconds until the first byte of /api/events came on a new connection, and its status."""
    started = time.perf_counter()
    with send(port, source, "/api/events", cookie) as sock:
        sock.recv(1, socket.MSG_PEEK)
        taken = time.perf_counter() - started
        status, _, _ = read_head(sock)
    return taken, status


def _hold(port: int) -> None:
    """The lockout, in a process of its own: 'on' once every feed is held and the server has closed
    idle connections for room (every slot is taken), then held until told to stop."""
    feeds = Crowd(port, [(source, feed_request(port)) for source in FEEDS_FROM for _ in range(FEEDS_EACH)])
    idle = Crowd(port, [(source, b"") for source in IDLE_FROM for _ in range(IDLE_EACH)])
    feeds.start()
    feeds.wait_on(START_S)
    idle.start()
    idle.wait_on(START_S, until=lambda: idle.ended > 0)
    time.sleep(1.5)  # the first closed ones opened again: the churn of a held lockout
    before, started = idle.ended, time.monotonic()

    def counts() -> dict:
        closed, timed_s = idle.ended - before, time.monotonic() - started
        for crowd in (feeds, idle):
            crowd.stop.set()
            crowd.join(5)
        return {"feeds_on": feeds.feeds_on, "idle_opened": idle.opened, "idle_closed_while_timed": closed,
                "idle_closed_per_s": closed / timed_s}

    hold(counts)


def measure(tries: int = 11) -> dict:
    """The operator's page and feed's first byte, median of `tries`, without and with the lockout."""
    tries = min(tries, 25)  # a new address for each try: 175 on, 200 on, 225 on, below OPERATOR
    with tempfile.TemporaryDirectory() as tmp, dashboard(Path(tmp)) as port:
        cookie = log_in(port, OPERATOR)
        asks = {"page": lambda i: time_page(port, TRIES_FROM.format(i), cookie),
                "feed": lambda i: time_feed(port, TRIES_FROM.format(i), cookie)}
        flood_tries(asks, 3, 175)  # untimed: the first answers' own costs
        quiet = flood_tries(asks, tries, 200)
        with load_of_its_own("sim.bench.measure.lockout", str(port)) as held:
            locked = flood_tries(asks, tries, 225)
    return {"quiet": quiet, "locked": locked, "tries": tries, **held}


def rows(tries: int = 11) -> list[tuple]:
    r = measure(tries)
    quiet, locked = r["quiet"], r["locked"]
    load = (f"16 addresses x 32 idle connections + {r['feeds_on']} live feeds held; "
            f"idle ones closed for room {r['idle_closed_per_s']:.0f}/s while timed")
    failed = quiet["failed"] + locked["failed"]
    return [
        ("operator answer time under lockout: main page", f"{locked['page_ms']:,.1f}", "ms",
         f"{quiet['page_ms']:.1f} ms without: {locked['page_ms'] / quiet['page_ms']:.1f}x; median of {tries}; "
         f"{failed} of {4 * tries} asks failed"),
        ("operator answer time under lockout: live feed's first byte", f"{locked['feed_ms']:,.1f}", "ms",
         f"{quiet['feed_ms']:.1f} ms without: {locked['feed_ms'] / quiet['feed_ms']:.1f}x; {load}"),
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sim.bench.measure.lockout", description=__doc__.split("\n\n")[0])
    p.add_argument("--tries", type=int, default=11)
    p.add_argument("--hold", type=int, metavar="PORT", help=argparse.SUPPRESS)  # the lockout's own process
    args = p.parse_args(argv)
    if args.hold:
        _hold(args.hold)
        return 0
    print(json.dumps(measure(args.tries), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
