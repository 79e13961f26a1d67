"""The dashboard under load (issue 31): while idle connections, event streams and heavy base-map
requests hit it from loopback, how long a watcher's page and the operator's command take; the
figures `make bench` prints. The dashboard runs in a process of its own with its shipped limits
(groundstation/web/limits.py Limits) and the unit's LimitNOFILE; the load comes from this one.

Each kind of load comes from an address of its own, as one misbehaving client would:
127.0.0.1 holds `idle` connections that never send a byte (each one refused or timed out is
opened again a second later), 127.0.0.5 keeps `streams` event streams open (likewise), 127.0.0.4
runs `maps` threads each asking, one after the other, for the whole world at zoom 19 (refused
by the view budget) and for the whole world at zoom 4 shifted a little each time (the biggest
view allowed, never cached). The watcher (127.0.0.2) loads the page and /api/summary on new
connections; the operator (127.0.0.3) queues a ping.

The load is held, in a process of its own, by the one flood driver (sim/bench/run/flood.py).

    python -m sim.bench.measure.dashboard [--idle 2000 --streams 500 --maps 20 --seconds 20]
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from ..run.flood import Crowd, feed_request, hold, load_of_its_own

IDLE_FROM, WATCHER, OPERATOR, MAPS_FROM, STREAMS_FROM = "127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"
NOFILE = 4096  # the dashboard unit's LimitNOFILE

_SERVER = r"""
import resource, sys, threading
resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[2]), resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
from stratoecho.logs import setup_logging
setup_logging("ERROR")
from groundstation.web import serve
from groundstation.web.server import SWITCH_INTERVAL_S
sys.setswitchinterval(SWITCH_INTERVAL_S)  # as `python -m groundstation serve` does
server = serve(sys.argv[1], "127.0.0.1", 0, threading.Event())
print(server.server_address[1], flush=True)
sys.stdin.read()
"""


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _timed(source: str, port: int, method: str, path: str, body: bytes | None = None,
           headers: dict | None = None) -> tuple[float, int, bytes]:
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(source, 0))
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        return time.perf_counter() - started, response.status, data
    except OSError:
        return time.perf_counter() - started, 0, b""
    finally:
        conn.close()


def _raise_nofile(want: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))


def measure(idle: int = 2000, streams: int = 500, maps: int = 20, seconds: float = 20.0) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        server = subprocess.Popen([sys.executable, "-c", _SERVER, str(Path(tmp) / "ground.db"), str(NOFILE)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            port = int(server.stdout.readline())
            return _load(port, idle, streams, maps, seconds)
        finally:
            server.stdin.close()
            server.wait(10)


def _load(port: int, idle: int, streams: int, maps: int, seconds: float) -> dict:
    """Sample the watcher and the operator while a process of its own (`_hold`) loads the
    dashboard: the load's threads then never hold up the samples' own interpreter."""
    host = {"Host": f"127.0.0.1:{port}"}
    _, _, page = _timed(WATCHER, port, "GET", "/", headers=host)
    token = re.search(rb'content="([A-Za-z0-9_-]{20,})"', page).group(1).decode()
    # The base map's first view loads its shapes (~0.3 s): that is a start's cost, not the load's.
    _timed(MAPS_FROM, port, "GET", "/api/basemap?bbox=-1,51,1,52&zoom=8", headers=host)
    with load_of_its_own("sim.bench.measure.dashboard", str(port), "--idle", str(idle), "--streams", str(streams),
                         "--maps", str(maps)) as held:
        time.sleep(min(3.0, seconds / 4))
        page_s, command_s, failed = [], [], 0
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for path in ("/", "/api/summary"):
                s, status, _ = _timed(WATCHER, port, "GET", path, headers=host)
                page_s.append(s)
                failed += status != 200
            s, status, _ = _timed(OPERATOR, port, "POST", "/api/commands",
                                  body=json.dumps({"command": "ping"}).encode(),
                                  headers={**host, "Content-Type": "application/json", "X-Stratoecho-Token": token})
            command_s.append(s)
            failed += status != 201
            time.sleep(0.2)
    return {"page_p50_ms": 1000 * _percentile(page_s, 0.5), "page_p99_ms": 1000 * _percentile(page_s, 0.99),
            "command_p50_ms": 1000 * _percentile(command_s, 0.5), "command_p99_ms": 1000 * _percentile(command_s, 0.99),
            "samples": len(page_s) + len(command_s), "failed": failed, **held,
            "idle": idle, "streams": streams, "map_threads": maps}


def _hold(port: int, idle: int, streams: int, maps: int) -> None:
    """The load, in a process of its own until told to stop: what it opened and how the map asks were answered."""
    host = {"Host": f"127.0.0.1:{port}"}
    crowds = [Crowd(port, [(IDLE_FROM, b"")] * idle), Crowd(port, [(STREAMS_FROM, feed_request(port))] * streams)]
    stop = threading.Event()
    map_answers: dict[int, int] = {}
    lock = threading.Lock()

    def ask_maps(worker: int) -> None:
        rng = random.Random(worker)
        while not stop.is_set():
            shift = rng.uniform(-5, 5)
            for path in ("/api/basemap?bbox=-180,-85,180,85&zoom=19",
                         f"/api/basemap?bbox=-180,{-80 + shift:.4f},180,{80 + shift:.4f}&zoom=4"):
                _, status, _ = _timed(MAPS_FROM, port, "GET", path, headers=host)
                with lock:
                    map_answers[status] = map_answers.get(status, 0) + 1

    def counts() -> dict:
        stop.set()
        for c in crowds:
            c.stop.set()
        for w in workers:
            w.join(35)
        for c in crowds:
            c.join(5)
        return {"idle_opened": crowds[0].opened, "streams_opened": crowds[1].opened,
                "maps": {str(k): v for k, v in sorted(map_answers.items())}}

    for c in crowds:
        c.start()
    workers = [threading.Thread(target=ask_maps, args=(i,), daemon=True) for i in range(maps)]
    for w in workers:
        w.start()
    hold(counts)


def rows(idle: int = 2000, streams: int = 500, maps: int = 20, seconds: float = 20.0) -> list[tuple]:
    r = measure(idle, streams, maps, seconds)
    load = f"{r['idle']:,} idle connections, {r['streams']} event streams, {r['map_threads']} map threads"
    served = ", ".join(f"{n:,} x {status}" for status, n in r["maps"].items())
    return [
        ("dashboard under load: watcher's page p99", f"{r['page_p99_ms']:,.0f}", "ms",
         f"p50 {r['page_p50_ms']:.0f} ms; {load}; {r['failed']} of {r['samples']} asks failed"),
        ("dashboard under load: operator's command p99", f"{r['command_p99_ms']:,.0f}", "ms",
         f"p50 {r['command_p50_ms']:.0f} ms (a ping queued)"),
        ("dashboard under load: heavy map asks answered", served or "none", "",
         "200 drawn or cached, 400 over the view budget, 503 waited its turn too long"),
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sim.bench.measure.dashboard", description=__doc__.split("\n\n")[0])
    p.add_argument("--idle", type=int, default=2000)
    p.add_argument("--streams", type=int, default=500)
    p.add_argument("--maps", type=int, default=20)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--hold", type=int, metavar="PORT", help=argparse.SUPPRESS)  # the load's own process
    args = p.parse_args(argv)
    if args.hold:
        _raise_nofile(args.idle + args.streams + args.maps + 256)
        _hold(args.hold, args.idle, args.streams, args.maps)
        return 0
    print(json.dumps(measure(args.idle, args.streams, args.maps, args.seconds), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
