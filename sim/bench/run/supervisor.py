"""systemd's side of the payload's unit, on the bench: the contract a flight lives under.

On the Pi, systemd starts the daemon, waits for READY=1, expects WATCHDOG=1 at least every
WatchdogSec, restarts it when it dies (Restart=, RestartSec=), reboots the Pi when it keeps
dying (StartLimitIntervalSec=, StartLimitBurst=, StartLimitAction=) and kills what does not
stop in time (TimeoutStopSec=, KillMode=). A daemon that breaks any of these reboots in flight.
So a bench flight does not trust a copy of those numbers: it reads the shipped unit file
(`parse_unit`) and `Supervisor` holds the payload to exactly what it declares, on the
bench's clock — WatchdogSec=30 is 30 flight seconds, as on the Pi it is 30 real ones.

`Supervisor` is pure bookkeeping plus one datagram socket: the caller (`sim fly`) starts and
signals the process and asks it what is due (`due`); its times are whatever the caller's
clock says. The rules follow systemd.service(5), systemd.unit(5), systemd.kill(5) and
sd_notify(3); docs/bench.md says which parts are enforced.
"""

from __future__ import annotations

import array
import os
import re
import shlex
import signal
import socket
import struct
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

PAYLOAD_UNIT = Path(__file__).resolve().parents[3] / "systemd" / "stratoecho-payload.service"
# systemd's own defaults (systemd-system.conf(5)) for what a unit leaves out.
DEFAULT_TIMEOUT_S = 90.0
DEFAULT_RESTART_S = 0.1
DEFAULT_START_LIMIT_INTERVAL_S = 10.0
DEFAULT_START_LIMIT_BURST = 5

_UNITS = {"us": 1e-6, "usec": 1e-6, "ms": 1e-3, "msec": 1e-3, "s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0,
          "m": 60.0, "min": 60.0, "minute": 60.0, "minutes": 60.0, "h": 3600.0, "hr": 3600.0, "hour": 3600.0,
          "hours": 3600.0, "d": 86400.0, "day": 86400.0, "days": 86400.0, "w": 604800.0, "week": 604800.0,
          "weeks": 604800.0}
_SPAN = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]*)")


class UnitError(ValueError):
    """A unit file the bench cannot hold a payload to; the message names the file, line and key."""


def parse_timespan(text: str, where: str = "") -> float:
    """A systemd time span (systemd.time(7)) in seconds: "30s", "15min", "20" (seconds),
    "1h 30min", "5s500ms"; "infinity" is math.inf."""
    t = text.strip().lower()
    if t == "infinity":
        return float("inf")
    pos, total = 0, 0.0
    for m in _SPAN.finditer(t):
        if t[pos:m.start()].strip():
            break
        unit = m[2] or "s"
        if unit not in _UNITS:
            raise UnitError(f"{where}{text!r} is not a time span: unknown unit {unit!r} (s, min, h, ms ...)")
        total += float(m[1]) * _UNITS[unit]
        pos = m.end()
    if not t or t[pos:].strip():
        raise UnitError(f"{where}{text!r} is not a time span (examples: 30s, 15min, 20, 1h 30min)")
    return total


@dataclass(frozen=True)
class UnitContract:
    """What a service unit promises and demands, as far as a flight depends on it."""

    path: str
    type: str = "simple"
    notify_access: str = "none"
    watchdog_s: float | None = None  # WatchdogSec=; None: no service watchdog
    timeout_start_s: float = DEFAULT_TIMEOUT_S
    timeout_stop_s: float = DEFAULT_TIMEOUT_S
    timeout_abort_s: float = DEFAULT_TIMEOUT_S  # after the watchdog's signal, before SIGKILL
    restart: str = "no"
    restart_s: float = DEFAULT_RESTART_S
    start_limit_interval_s: float = DEFAULT_START_LIMIT_INTERVAL_S
    start_limit_burst: int = DEFAULT_START_LIMIT_BURST
    start_limit_action: str = "none"
    kill_mode: str = "control-group"
    kill_signal: int = signal.SIGTERM
    watchdog_signal: int = signal.SIGABRT
    environment: dict = field(default_factory=dict)

    def restarts_after(self, clean_exit: bool) -> bool:
        """Restart= for an exit that was clean (code 0) or not (systemd.service(5)'s table, in short)."""
        if self.restart == "always":
            return True
        if self.restart == "on-success":
            return clean_exit
        if self.restart in ("on-failure", "on-abnormal", "on-abort", "on-watchdog"):
            return not clean_exit
        return False


def _signal(value: str, where: str) -> int:
    name = value.strip().upper()
    name = name if name.startswith("SIG") else "SIG" + name
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise UnitError(f"{where}{value!r} is not a signal name (SIGTERM, SIGABRT ...)") from None


def parse_unit(path: Path) -> UnitContract:
    """The contract of the service unit at `path` (its [Unit] and [Service] sections)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise UnitError(f"cannot read unit file {path}: {e.strerror}") from e
    section, values, env, pending = None, {}, {}, ""
    for no, raw in enumerate(lines, 1):
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):  # a continued line
            pending = line[:-1] + " "
            continue
        if not line or line[0] in "#;":
            continue
        where = f"{path}:{no}: "
        if line.startswith("["):
            section = line.strip("[]")
            continue
        if "=" not in line:
            raise UnitError(f"{where}expected Key=value, got {line!r}")
        key, value = (s.strip() for s in line.split("=", 1))
        if section not in ("Unit", "Service"):
            continue
        if key == "Environment":
            for word in shlex.split(value):
                if "=" not in word:
                    raise UnitError(f"{where}Environment= assignment {word!r} has no '='")
                k, v = word.split("=", 1)
                env[k] = v
        else:
            values[key] = (value, where)

    def get(key, convert, default):
        if key not in values:
            return default
        value, where = values[key]
        try:
            return convert(value, f"{where}{key}=")
        except UnitError:
            raise
        except ValueError:
            raise UnitError(f"{where}{key}={value!r} is not valid") from None

    span = parse_timespan
    stop_s = get("TimeoutStopSec", span, get("TimeoutSec", span, DEFAULT_TIMEOUT_S))
    watchdog = get("WatchdogSec", span, 0.0)
    return UnitContract(
        path=str(path),
        type=get("Type", lambda v, w: v.lower(), "simple"),
        notify_access=get("NotifyAccess", lambda v, w: v.lower(), "none"),
        watchdog_s=watchdog if watchdog > 0 else None,
        timeout_start_s=get("TimeoutStartSec", span, get("TimeoutSec", span, DEFAULT_TIMEOUT_S)),
        timeout_stop_s=stop_s,
        timeout_abort_s=get("TimeoutAbortSec", span, stop_s),
        restart=get("Restart", lambda v, w: v.lower(), "no"),
        restart_s=get("RestartSec", span, DEFAULT_RESTART_S),
        start_limit_interval_s=get("StartLimitIntervalSec", span, DEFAULT_START_LIMIT_INTERVAL_S),
        start_limit_burst=get("StartLimitBurst", lambda v, w: int(v), DEFAULT_START_LIMIT_BURST),
        start_limit_action=get("StartLimitAction", lambda v, w: v.lower(), "none"),
        kill_mode=get("KillMode", lambda v, w: v.lower(), "control-group"),
        kill_signal=get("KillSignal", _signal, signal.SIGTERM),
        watchdog_signal=get("WatchdogSignal", _signal, signal.SIGABRT),
        environment=env,
    )


# --------------------------------------------------------------------------- the supervisor

@dataclass
class Verdict:
    """One thing the supervisor did or saw, for the flight report."""

    t_s: float
    what: str  # started, ready, watchdog_timeout, start_timeout, stop_timeout, killed, exited, restart, start_limit
    detail: str = ""


@dataclass
class SupervisorStats:
    starts: int = 0
    ready: int = 0
    watchdog_pings: int = 0
    watchdog_timeouts: int = 0
    start_timeouts: int = 0
    stop_timeouts: int = 0
    exits: int = 0
    restarts: int = 0
    start_limit_hits: int = 0
    foreign_notifications: int = 0  # from a process the unit does not let speak (NotifyAccess=main)
    longest_watchdog_gap_s: float = 0.0
    longest_stop_s: float = 0.0


class Supervisor:
    """Holds one process to a unit's contract. The caller starts the process with `env()` in
    its environment, reports `started`/`exited`/`stopping`, lets `receive` read what it
    notified, and acts on what `due` returns: ("signal", sig), ("kill", SIGKILL to the whole
    group) or nothing. `next_deadline` is when `due` must be asked next."""

    def __init__(self, unit: UnitContract, socket_path: Path):
        self.unit = unit
        self.stats = SupervisorStats()
        self.verdicts: list[Verdict] = []
        self.status = ""  # the last STATUS= the process sent
        self.path = Path(socket_path)
        self.path.unlink(missing_ok=True)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK)
        self._sock.bind(str(self.path))
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)  # who sent it: NotifyAccess=main
        self._starts: deque[float] = deque()
        self.pid: int | None = None
        self.state = "dead"  # dead, starting, running, stopping
        self._since = 0.0  # when the current state began
        self._fed_at = 0.0  # the last WATCHDOG=1 (or READY=1, which arms the watchdog)
        self._kill_at: float | None = None  # SIGKILL due (a stop or an abort running out of time)
        self._stop_began: float | None = None
        self._planned_stop = False  # systemctl stop, as opposed to the process ending or failing

    # -- what the process needs ----------------------------------------------------------

    def env(self) -> dict[str, str]:
        env = dict(self.unit.environment)
        if self.unit.type == "notify" or self.unit.notify_access != "none":
            env["NOTIFY_SOCKET"] = str(self.path)
        if self.unit.watchdog_s is not None:
            env["WATCHDOG_USEC"] = str(int(self.unit.watchdog_s * 1_000_000))
        return env

    # -- what the caller tells it --------------------------------------------------------

    def may_start(self, now: float) -> bool:
        """systemd's start rate limit: False (and StartLimitAction is due) when this start would be
        one more than StartLimitBurst within StartLimitIntervalSec."""
        while self._starts and now - self._starts[0] >= self.unit.start_limit_interval_s:
            self._starts.popleft()
        if len(self._starts) >= self.unit.start_limit_burst:
            self.stats.start_limit_hits += 1
            self._verdict(now, "start_limit", f"{len(self._starts)} starts within "
                          f"{self.unit.start_limit_interval_s:g} s: StartLimitAction={self.unit.start_limit_action}")
            return False
        return True

    def started(self, pid: int, now: float) -> None:
        self._starts.append(now)
        self.stats.starts += 1
        self.pid, self._since, self._kill_at, self._stop_began = pid, now, None, None
        self.status = ""  # a new process says its own
        # Type=notify is started at READY=1; any other type at once (and its watchdog armed then).
        self.state = "starting" if self.unit.type == "notify" else "running"
        self._fed_at = now
        self._verdict(now, "started", f"pid {pid}")

    def rebooted(self) -> None:
        """The Pi rebooted (a power cut, StartLimitAction=reboot): systemd starts with no history."""
        self._starts.clear()
        self.state, self.pid = "dead", None

    def stopping(self, now: float) -> int:
        """The caller stops the service (systemctl stop): the signal to send the main process."""
        self.state, self._since, self._stop_began = "stopping", now, now
        self._kill_at = now + self.unit.timeout_stop_s
        self._planned_stop = True
        return self.unit.kill_signal

    def exited(self, returncode: int, now: float, final: bool = False) -> bool:
        """The main process is gone; True if the unit's Restart= starts it again (never when
        `final`: the bench's flight is over, nothing would be started)."""
        self.stats.exits += 1
        clean = returncode == 0 or (self.state == "stopping" and returncode == -self.unit.kill_signal)
        if self._stop_began is not None:
            took = now - self._stop_began
            self.stats.longest_stop_s = max(self.stats.longest_stop_s, took)
        why = f"code {returncode}" if returncode >= 0 else f"signal {signal.Signals(-returncode).name}"
        self._verdict(now, "exited", why)
        planned, self._planned_stop = self._planned_stop, False
        self.state, self.pid, self._kill_at = "dead", None, None
        if planned or final:
            return False  # systemctl stop: no restart
        again = self.unit.restarts_after(clean)
        if again:
            self.stats.restarts += 1
        return again

    # -- what the process says -----------------------------------------------------------

    def receive(self, now: float) -> None:
        """Read every notification waiting; each counts as sent at `now`."""
        size = socket.CMSG_SPACE(struct.calcsize("3i"))
        while True:
            try:
                data, anc, _flags, _addr = self._sock.recvmsg(4096, size)
            except BlockingIOError:
                return
            pid = None
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = array.array("i", payload[:12])[0]
            if self.unit.notify_access == "main" and pid != self.pid:
                self.stats.foreign_notifications += 1
                continue
            self._notified(data.decode("utf-8", "replace"), now)

    def _notified(self, text: str, now: float) -> None:
        for line in text.split("\n"):
            key, _, value = line.partition("=")
            if key == "READY" and value == "1" and self.state == "starting":
                self.state, self._since, self._fed_at = "running", now, now
                self.stats.ready += 1
                self._verdict(now, "ready", self.status)
            elif key == "WATCHDOG" and value == "1":
                self.stats.watchdog_pings += 1
                if self.state == "running":
                    self.stats.longest_watchdog_gap_s = max(self.stats.longest_watchdog_gap_s, now - self._fed_at)
                self._fed_at = now
            elif key == "WATCHDOG" and value == "trigger" and self.state == "running":
                self._fed_at = -float("inf")
            elif key == "STATUS":
                self.status = value
            elif key == "STOPPING" and value == "1" and self.state != "stopping":
                # The daemon stops on its own (its flight is over, or a signal): TimeoutStopSec applies.
                self.state, self._since, self._stop_began = "stopping", now, now
                self._kill_at = now + self.unit.timeout_stop_s

    # -- what is due ---------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        if self.state == "starting":
            return self._since + self.unit.timeout_start_s
        if self.state == "running" and self.unit.watchdog_s is not None:
            return self._fed_at + self.unit.watchdog_s
        if self._kill_at is not None:
            return self._kill_at
        return None

    def due(self, now: float) -> tuple[str, int] | None:
        """What the service manager does to the process at `now`, if anything."""
        if self.pid is None:
            return None
        if self._kill_at is not None and now >= self._kill_at and self.state in ("stopping", "aborting"):
            self.stats.stop_timeouts += self.state == "stopping"
            self._verdict(now, "killed", f"still running {now - self._since:.1f} s after "
                          f"{'its stop' if self.state == 'stopping' else 'the watchdog signal'}: SIGKILL")
            self._kill_at = None
            return ("kill", signal.SIGKILL)
        if self.state == "starting" and now >= self._since + self.unit.timeout_start_s:
            self.stats.start_timeouts += 1
            self._verdict(now, "start_timeout", f"no READY=1 within {self.unit.timeout_start_s:g} s")
            self.state, self._since = "aborting", now
            self._kill_at = now + self.unit.timeout_stop_s
            return ("signal", self.unit.kill_signal)
        if (self.state == "running" and self.unit.watchdog_s is not None
                and now >= self._fed_at + self.unit.watchdog_s):
            self.stats.watchdog_timeouts += 1
            self._verdict(now, "watchdog_timeout", f"no WATCHDOG=1 for {now - self._fed_at:.1f} s "
                          f"(WatchdogSec={self.unit.watchdog_s:g}); status: {self.status or '-'}")
            self.state, self._since = "aborting", now
            self._kill_at = now + self.unit.timeout_abort_s
            return ("signal", self.unit.watchdog_signal)
        return None

    def report(self) -> dict:
        return {"unit": self.unit.path, **asdict(self.stats), "last_status": self.status,
                "verdicts": [asdict(v) for v in self.verdicts if v.what != "started" or len(self.verdicts) < 200]}

    def close(self) -> None:
        self._sock.close()
        self.path.unlink(missing_ok=True)

    def _verdict(self, now: float, what: str, detail: str = "") -> None:
        self.verdicts.append(Verdict(round(now, 3), what, detail))
        routine = what in ("started", "ready", "exited")
        (log.debug if routine else log.warning)("unit_" + what, flight_s=round(now, 1), detail=detail, pid=self.pid)


def kill_group(pid: int, sig: int) -> None:
    """KillMode=mixed/control-group's SIGKILL: the whole process group (the persona worker too)."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


__all__ = ["PAYLOAD_UNIT", "Supervisor", "SupervisorStats", "UnitContract", "UnitError", "Verdict", "kill_group",
           "parse_timespan", "parse_unit"]
