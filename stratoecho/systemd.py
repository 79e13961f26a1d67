"""sd_notify(3) without libsystemd, for every long-running part (the payload daemon, the
ground station's listener): one datagram per message to $NOTIFY_SOCKET; nothing at all
where systemd did not start us (the bench, tests, a shell)."""

from __future__ import annotations

import os
import socket
import threading
from typing import Mapping

import structlog

log = structlog.get_logger(__name__)


def _notify_address(value: str) -> str | None:
    """$NOTIFY_SOCKET as a Python AF_UNIX address: '@name' is Linux's abstract namespace."""
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None  # vsock:... and the like: not something a Pi's systemd hands us


class SystemdNotifier:
    """sd_notify(3) without libsystemd: one datagram per message to $NOTIFY_SOCKET.

    Without $NOTIFY_SOCKET (bench, tests, a shell) every call does nothing and returns
    False, so the daemon calls it unconditionally. Sending never raises: a failure is
    logged once per kind of error, since systemd's own timeout will act on it anyway.
    A datagram socket whose reader has fallen behind blocks the sender once its queue
    (net.unix.max_dgram_qlen, 10 by default) is full; `send_timeout_s` bounds that wait,
    so a busy PID 1 cannot wedge the feed thread.
    """

    def __init__(self, environ: Mapping[str, str] | None = None, send_timeout_s: float = 1.0):
        env = os.environ if environ is None else environ
        self._env = dict(env)
        raw = env.get("NOTIFY_SOCKET", "")
        self.address = _notify_address(raw) if raw else None
        if raw and self.address is None:
            log.warning("notify_socket_unsupported", notify_socket=raw)
        self.send_timeout_s = send_timeout_s
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._errors_logged: set[str] = set()

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *assignments: str) -> bool:
        """Send 'KEY=value' assignments in one datagram; True if it was sent."""
        if self.address is None:
            return False
        payload = "\n".join(assignments).encode("utf-8")
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                    self._sock.settimeout(self.send_timeout_s)
                self._sock.sendto(payload, self.address)
                return True
            except OSError as e:
                kind = type(e).__name__
                if kind not in self._errors_logged:
                    self._errors_logged.add(kind)
                    log.warning("sd_notify_failed", error=str(e), message=assignments[0] if assignments else "")
                return False

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *([f"STATUS={_one_line(status)}"] if status else []))

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={_one_line(text)}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def watchdog_interval_s(self) -> float | None:
        """WatchdogSec= as systemd passed it, or None when no watchdog is meant for this
        process ($WATCHDOG_USEC unset, not a positive integer, or $WATCHDOG_PID naming another
        process: a child inheriting the environment must not think it is watched)."""
        usec = self._env.get("WATCHDOG_USEC", "")
        try:
            value = int(usec)
        except ValueError:
            return None
        if value <= 0:
            return None
        pid = self._env.get("WATCHDOG_PID")
        if pid is not None:
            try:
                if int(pid) != os.getpid():
                    return None
            except ValueError:
                return None
        return value / 1_000_000

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None


def _one_line(text: str) -> str:
    # A newline would start a new assignment in the datagram.
    return " ".join(str(text).split())


# --------------------------------------------------------------------------- watchdog
