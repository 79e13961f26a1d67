"""Keeping the daemon honest with systemd: keyed liveness, sd_notify, restart limits.

Two watchdogs stand behind the payload (docs/deploy.md):

    bcm2835 hardware watchdog (<= 15 s)  <-- fed by systemd (RuntimeWatchdogSec=15)
        reboots the Pi when the kernel or PID 1 hangs
    systemd service watchdog (WatchdogSec=30s)  <-- fed by `Watchdog` below
        restarts the daemon when it stops sending WATCHDOG=1

A process that is alive is not a process that works: a beacon thread stuck in a
serial read leaves the interpreter perfectly able to answer systemd. So, as in F´'s
health component, each worker has a key and pings it; `Watchdog` feeds systemd only
while every key is current. One hung thread starves the feed, systemd kills the daemon
(SIGABRT: with PYTHONFAULTHANDLER set the journal gets every thread's stack) and starts
it again, and the queue resumes from the store.

Everything here takes its clock as an argument (seconds, monotonic) so tests drive it
without sleeping, and nothing here raises into the flight: a notification that cannot
be sent is logged, not thrown.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable

import structlog

from stratoecho.systemd import SystemdNotifier, _one_line  # noqa: F401 - SystemdNotifier is part of this module's interface
from stratoecho.wire.events import Event, event

log = structlog.get_logger(__name__)

Clock = Callable[[], float]

# Used when systemd gave no interval (bench, tests): the loop still runs and still logs
# hung tasks, so the bench shows what would have restarted the daemon in flight.
DEFAULT_INTERVAL_S = 30.0


# --------------------------------------------------------------------------- liveness


class Liveness:
    """Which workers have shown a sign of life recently enough.

    ``register(key, max_silence_s)`` starts the key's clock (registration counts as a
    ping, so a worker gets its full allowance before its first one); registering again
    only changes the allowance (the uplink can stretch a task's period). A paused key is
    never overdue — a task shed in low-power mode must not starve the watchdog — and
    ``resume`` restarts its clock, so it is not declared hung for the time it was shed.
    Thread-safe: every worker pings from its own thread.
    """

    def __init__(self, clock: Clock = time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self._max_silence: dict[str, float] = {}
        self._last: dict[str, float] = {}
        self._paused: set[str] = set()

    def register(self, key: str, max_silence_s: float) -> None:
        if not max_silence_s > 0:
            raise ValueError(f"max_silence_s for {key!r} must be positive, got {max_silence_s!r}")
        with self._lock:
            if key not in self._max_silence:
                self._last[key] = self._clock()
            self._max_silence[key] = float(max_silence_s)

    def unregister(self, key: str) -> None:
        with self._lock:
            self._max_silence.pop(key, None)
            self._last.pop(key, None)
            self._paused.discard(key)

    def ping(self, key: str) -> None:
        with self._lock:
            if key not in self._max_silence:
                # A typo in a key would otherwise be a worker nobody watches.
                raise KeyError(f"liveness key {key!r} is not registered")
            self._last[key] = self._clock()

    def pause(self, key: str) -> None:
        with self._lock:
            if key in self._max_silence:
                self._paused.add(key)

    def resume(self, key: str) -> None:
        with self._lock:
            if key in self._paused:
                self._paused.discard(key)
                self._last[key] = self._clock()

    def keys(self) -> list[str]:
        with self._lock:
            return sorted(self._max_silence)

    def silence_s(self, key: str, now: float | None = None) -> float:
        """Seconds since `key` last pinged (or was registered or resumed)."""
        now = self._clock() if now is None else now
        with self._lock:
            return now - self._last[key]

    def overdue(self, now: float | None = None) -> list[str]:
        """Keys silent longer than they are allowed, sorted; paused keys never are."""
        now = self._clock() if now is None else now
        with self._lock:
            return sorted(
                k for k, limit in self._max_silence.items()
                if k not in self._paused and now - self._last[k] > limit
            )


# --------------------------------------------------------------------------- sd_notify


class Watchdog:
    """Feeds systemd's watchdog only while every liveness key is current.

    When some keys go overdue it stops feeding, logs them once for the episode (again
    only if the set changes) and puts them in the unit's STATUS= (what `systemctl status`
    shows and the journal keeps); when they are all current again it says so and feeds.
    """

    def __init__(self, liveness: Liveness, notifier: SystemdNotifier, clock: Clock = time.monotonic,
                 interval_s: float | None = None):
        self.liveness, self.notifier, self.clock = liveness, notifier, clock
        interval = interval_s if interval_s is not None else notifier.watchdog_interval_s()
        self.interval_s = interval if interval is not None else DEFAULT_INTERVAL_S
        if not self.interval_s > 0:
            raise ValueError(f"interval_s must be positive, got {self.interval_s!r}")
        self.starving: list[str] = []  # the overdue keys of the current episode, [] when fed
        self.feeds = 0
        self.episodes = 0

    def tick(self, now: float | None = None) -> bool:
        """One look at the keys; True if systemd was (or, without systemd, would have been) fed."""
        now = self.clock() if now is None else now
        late = self.liveness.overdue(now)
        if late:
            if late != self.starving:
                if not self.starving:
                    self.episodes += 1
                silences = {k: round(self.liveness.silence_s(k, now), 1) for k in late}
                log.error("watchdog_starved", overdue=late, silence_s=silences,
                          restart_in_s=self.interval_s if self.notifier.enabled else None)
                self.notifier.status(f"not feeding the watchdog: {', '.join(late)} overdue")
                self.starving = late
            return False
        if self.starving:
            log.warning("watchdog_fed_again", recovered=self.starving)
            self.notifier.status("all tasks current")
            self.starving = []
        self.notifier.watchdog()
        self.feeds += 1
        return True

    def start(self, stop_event: threading.Event, spawn: Callable | None = None) -> threading.Thread:
        """Tick now and then every half interval (systemd's own advice) until `stop_event`.
        `spawn(target, name)` starts the thread (the bench's clock schedules its own threads)."""

        def run() -> None:
            while True:
                try:
                    self.tick()
                except Exception:  # noqa: BLE001 - a bug here must not end the feed loop silently
                    log.exception("watchdog_tick_failed")
                if stop_event.wait(self.interval_s / 2):
                    return

        if spawn is not None:
            return spawn(run, "watchdog")
        thread = threading.Thread(target=run, name="watchdog", daemon=True)
        thread.start()
        return thread


# --------------------------------------------------------------------------- restarts


class RestartLimiter:
    """At most `max_restarts` restarts in any `window_s` seconds, then none until the
    oldest of them leaves the window.

    A persona worker that crashes on every prompt (a bad model, memory it cannot get)
    would otherwise reload the model over and over, burning the battery and the CPU the
    beacon needs; left down, the payload keeps flying without musings and tries again
    once the window has passed.
    """

    def __init__(self, max_restarts: int, window_s: float, clock: Clock = time.monotonic):
        if max_restarts < 0 or not window_s > 0:
            raise ValueError(f"need max_restarts >= 0 and window_s > 0, got {max_restarts!r}, {window_s!r}")
        self.max_restarts, self.window_s, self.clock = max_restarts, float(window_s), clock
        self._times: deque[float] = deque()
        self.refused = 0
        self._refusing = False

    def _forget_old(self, now: float) -> None:
        while self._times and now - self._times[0] >= self.window_s:
            self._times.popleft()

    def allow(self) -> bool:
        """True (and counted) if one more restart fits in the window."""
        now = self.clock()
        self._forget_old(now)
        if len(self._times) < self.max_restarts:
            if self._refusing:
                log.info("restarts_allowed_again", max_restarts=self.max_restarts, window_s=self.window_s)
                self._refusing = False
            self._times.append(now)
            return True
        self.refused += 1
        if not self._refusing:  # logged on the transition, not on every refusal
            log.warning("restarts_exhausted", max_restarts=self.max_restarts, window_s=self.window_s,
                        retry_in_s=round(self.retry_in_s(), 1))
            self._refusing = True
        return False

    def retry_in_s(self) -> float:
        """Seconds until `allow` would say yes again (0 if it would now)."""
        now = self.clock()
        self._forget_old(now)
        if len(self._times) < self.max_restarts:
            return 0.0
        return self._times[0] + self.window_s - now if self._times else float("inf")


# --------------------------------------------------------------------------- boot banner


def boot_banner(version: str, persona: tuple[str, str | None] | None, free_mb: float | None, boot: int,
                mode: object, unplanned: bool = False, phase: str = "pre-launch", callsign: str = "") -> Event:
    """The first event on air after a boot, read as
    ``boot 12 v0.1.0 nominal persona Ada#3f2a9c1b free 812MB`` — who is flying, which
    model exactly, in what mode, with how much card left. Short: at SF11 every byte costs
    ~0.2 s of airtime, so the name is cut to 16 characters and the hash to 8. The callsign
    rides along (not in the text) so that a ground told only the flight key learns from a
    tagged frame whom its uplink signs for. `persona`: its name and its model file's sha256.
    """
    persona_name, persona_sha256_short = persona or (None, None)
    name = _one_line(persona_name).replace(" ", "_")[:16] if persona_name else ""
    return event("boot", boot=int(boot), version=str(version)[:16], mode=str(getattr(mode, "value", mode)),
                 persona=name, model=(persona_sha256_short or "")[:8] if name else "",
                 free_mb=int(free_mb) if free_mb is not None else -1, unplanned=bool(unplanned), phase=str(phase),
                 callsign=str(callsign)[:16])
