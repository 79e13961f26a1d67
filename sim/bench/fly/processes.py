"""The bench's processes on loopback: the port each one bound, a free port for the channel,
and a stop that waits for them."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

import structlog

from ..report.logs import log_events
from .options import FlyError

log = structlog.get_logger(__name__)


def wait_listening(log_path: Path, proc: subprocess.Popen, what: str, timeout_s: float = 60.0,
                   skip: int = 0) -> int:
    """The UDP port `proc` bound, read from its `listening` log line (after the first `skip`
    of them: a restarted process appends to its log).

    Each process binds port 0 and says which port it got, so no two can race for one.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if entry := listening_entry(log_path, skip):
            address = entry.get("address") or entry.get("source", "").split()[-1]
            return int(address.rsplit(":", 1)[1])
        if proc.poll() is not None:
            raise FlyError(f"{what} exited with code {proc.returncode} before it was ready; see {log_path}")
        time.sleep(0.05)
    raise FlyError(f"{what} did not report a listening port within {timeout_s:.0f} s; see {log_path}")


def listening_entry(log_path: Path, skip: int = 0) -> dict:
    """The log entry of the `listening` line after the first `skip` ({} if there is none yet)."""
    said = [entry for entry in log_events(log_path, '"listening"') if entry.get("event") == "listening"]
    return said[skip] if len(said) > skip else {}


def free_udp_port() -> int:
    """A UDP port free on loopback now, for the channel to bind (another program could take it
    first; then the channel says so and the flight stops)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen, what: str, timeout_s: float = 20.0) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("kill", process=what)
            proc.kill()
            proc.wait()
    return proc.returncode
