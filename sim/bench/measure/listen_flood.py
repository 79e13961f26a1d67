"""The single receiver under a flood (issue 41): a real `python -m groundstation listen --udp`
process takes a fixed number of 255-byte junk datagrams from many addresses and ports, and the
database must stop growing at the storage quota (groundstation/frame_quota.py). The figures
`make bench` prints; tests/test_frame_quota.py drives the same process. Sent, paced and counted by
the one flood driver (sim/bench/run/flood.py).

    python -m sim.bench.measure.listen_flood [--datagrams 400000] [--source-quota-mb 90] [--quota-total-mb 180]
"""

from __future__ import annotations

import json
import os
import queue
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from ..run.flood import LoopbackSenders, Pace, database_row, db_bytes, drive, print_rows, taken_row

REPO = Path(__file__).resolve().parents[3]
DATAGRAM = 255  # the longest frame on the air, and the longest `listen --udp` takes
SENDERS = 16  # loopback addresses the flood comes from, 127.0.0.1 to 127.0.0.16
PER_PORT = 50  # datagrams sent from one source port before the next
RATE = 8_000  # datagrams a second at most: a round of SENDERS every 2 ms, so that the socket's buffer is not all it meets


class ListenProcess:
    """`python -m groundstation listen --udp 127.0.0.1:0 --db DB --quiet ARGS...`, its JSON log lines
    read as they come (`events`), its UDP address taken from its "listening" line."""

    def __init__(self, db: Path, *args: str, stats: Path | None = None, start_timeout_s: float = 60.0) -> None:
        env = {**os.environ, "STRATOECHO_LOG_JSON": "1", "PYTHONPATH": str(REPO)}
        cmd = [sys.executable, "-m", "groundstation", "listen", "--udp", "127.0.0.1:0", "--db", str(db), "--quiet",
               *(["--stats", str(stats)] if stats else []), *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
                                     cwd=REPO)
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + start_timeout_s
        while (line := self._next(deadline)) is not None:
            if '"listening"' in line and (m := re.search(r"udp ([\d.]+):(\d+)", line)):
                self.address = (m[1], int(m[2]))
                return
        self.proc.kill()
        raise RuntimeError("listen never said where it listens:\n" + "".join(self.lines))

    def _read(self) -> None:
        for line in self.proc.stderr:
            self._queue.put(line)

    def _next(self, deadline: float) -> str | None:
        try:
            line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return None
        self.lines.append(line)
        return line

    def events(self, name: str) -> list[dict]:
        """The JSON log lines so far whose event is `name`."""
        while not self._queue.empty():
            self.lines.append(self._queue.get_nowait())
        logged = (json.loads(line) for line in self.lines if line.startswith("{") and f'"{name}"' in line)
        return [event for event in logged if event.get("event") == name]

    def stop(self, timeout_s: float = 60.0) -> tuple[int, str]:
        """SIGTERM, then its exit status and everything it wrote on standard error."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            status = self.proc.wait(timeout=timeout_s)
        finally:
            self.proc.kill()
        self._reader.join(timeout=10)
        self.proc.stderr.close()
        self.events("")  # drain
        return status, "".join(self.lines)

    def stop_clean(self, timeout_s: float = 60.0) -> None:
        """`stop`, and a RuntimeError with the end of its log unless it exited 0."""
        status, err = self.stop(timeout_s)
        if status != 0:
            raise RuntimeError(f"listen exited {status}:\n{err[-2000:]}")


def flood(address: tuple[str, int], datagrams: int, *, senders: int = SENDERS, seed: int = 41,
          rate: float | None = None) -> int:
    """Send `datagrams` junk datagrams of DATAGRAM bytes to `address`, from 127.0.0.1..127.0.0.`senders`
    in turn, each address changing its source port every PER_PORT datagrams; at most `rate` a second.
    The junk starts with no byte a frame starts with, so each is an error."""
    rng = random.Random(seed)
    junk = (b"\x00" + rng.randbytes(DATAGRAM - 1) for _ in range(datagrams))
    with LoopbackSenders([f"127.0.0.{k + 1}" for k in range(senders)], PER_PORT) as out:
        return drive(junk, lambda i, datagram: out.send(i, datagram, address),
                     None if rate is None else Pace(rate, senders))


def measure(datagrams: int, quota: list[str], rate: float | None) -> dict:
    """A fresh database, listen on it, the flood, then listen stopped: sizes before, after, its counts."""
    with tempfile.TemporaryDirectory() as d:
        db, stats = Path(d) / "ground.db", Path(d) / "stats.json"
        listen = ListenProcess(db, *quota, stats=stats)
        before = db_bytes(db)
        t0 = time.perf_counter()
        flood(listen.address, datagrams, rate=rate)
        sent_s = time.perf_counter() - t0
        time.sleep(1.0)  # the last datagrams in the socket's buffer, and a commit
        peak = db_bytes(db)
        listen.stop_clean()
        counts = json.loads(stats.read_text())
        warnings = len(listen.events("frames past the storage quota not stored"))
        return {"datagrams": datagrams, "sent_s": sent_s, "before": before, "running": peak, "after": db_bytes(db),
                "heard": counts["frames"], "not_stored": counts["frames_not_stored"], "warnings": warnings}


def rows(datagrams: int = 400_000, source_mb: float | None = None, total_mb: float | None = None,
         rate: float = RATE) -> list[tuple]:
    """The flood against `listen` with its default quotas (or these): the database's size before,
    while flooded and after, against the cap."""
    from groundstation.config import DatabaseSection
    from groundstation.frame_quota import MB, SOURCE_QUOTA_BYTES, TOTAL_QUOTA_BYTES, row_bytes
    from groundstation.store import utc_now

    cap = DatabaseSection(source_quota_mb=SOURCE_QUOTA_BYTES / MB if source_mb is None else source_mb,
                                         quota_total_mb=TOTAL_QUOTA_BYTES / MB if total_mb is None else total_mb).frame_quota()
    options = ["--source-quota-mb", f"{cap.source_bytes / MB:g}", "--quota-total-mb", f"{cap.total_bytes / MB:g}"]
    r = measure(datagrams, options, rate)
    offered = r["heard"] * row_bytes(DATAGRAM, "udp 127.0.0.16:65535", utc_now(), "unknown first byte") / MB
    return [
        database_row("listen under a UDP flood: database after", (r["before"], r["after"]),
                     (cap.total_bytes / MB, cap.source_bytes / MB, "source"), offered, "frame heard", r["running"]),
        taken_row("listen under a UDP flood: datagrams", (r["heard"], "heard"),
                  (r["datagrams"], f"{DATAGRAM} B sent from {SENDERS} addresses, a new port every {PER_PORT}"),
                  r["sent_s"], f"{r['not_stored']:,} not stored, {r['warnings']} warnings"),
    ]


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m sim.bench.measure.listen_flood", description=__doc__.splitlines()[0])
    p.add_argument("--datagrams", type=int, default=400_000, help="junk datagrams sent (default 400000)")
    p.add_argument("--source-quota-mb", type=float, help="listen's option (default its own)")
    p.add_argument("--quota-total-mb", type=float, help="listen's option (default its own)")
    args = p.parse_args(argv)
    print_rows(rows(args.datagrams, args.source_quota_mb, args.quota_total_mb))
    return 0


if __name__ == "__main__":
    sys.exit(main())
