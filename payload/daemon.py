"""The payload daemon: it runs the loops payload/assembly.py declares (`loops`), and stops them in order.

    beacon    every cadence.beacon_s:          producers.Beacon (after the commands' probation check);
                                               tells the radio when each sentence is due (policy/turns.py)
    radio     continuously:                    link.Transmitter (store -> frames -> airtime -> radio);
                                               its listen windows hand commands to CommandHandler
    health    every cadence.period_s(health):  producers.Health
    camera    every cadence.period_s(camera):  producers.Pictures, when a camera is fitted
    think     every cadence.period_s(think):   producers.Musings, when a persona flies: right after a
                                               position sentence and only when the last musing has gone
                                               on air; at once for one gone stale
    stats     every flight minute:             flight_stats.FlightStats writes stats.json (and at the stop)

The periods are the Cadence's (payload/cadence.py: the configuration, the uplink's SET_INTERVALS and
the governor's stretch), read before each run. The work is the producers' (payload/producers/);
the daemon owns their threads, their liveness for the systemd watchdog, the stop, and the one
loop of its own: the statistics file (payload/flight_stats.py). payload/assembly.py builds everything it
schedules (payload/components.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import structlog

from stratoecho import __version__, wire
from stratoecho.bundle import Bundle
from stratoecho.wire.events import Event

from .clock import Clock
from .components import Components
from .config import PayloadConfig
from .flight_stats import FlightStats
from .policy.slots import next_slot
from .watchdog import Liveness, boot_banner

log = structlog.get_logger(__name__)

# A stop, SIGTERM to exit, takes at most this (plus closing files): half the unit's
# TimeoutStopSec=20, so a planned stop never turns into systemd's SIGKILL.
STOP_BUDGET_S = 10.0
RADIO_CLOSE_S = 2.0  # of it, kept for closing a radio whose thread is stuck, and for that thread to end
LIVENESS_MARGIN_S = 30.0  # a periodic loop's allowance past its period and its longest run
CONTINUOUS_MARGIN_S = 120.0  # a continuous loop's past its longest quiet spell
STATS_EVERY_S = 60.0  # flight seconds between saves of the statistics (stats.json)


def _always() -> bool:
    return True


def _never() -> bool:
    return False


@dataclass(frozen=True)
class Loop:
    """One of the daemon's threads, as payload/assembly.py's `loops` table declares it."""

    name: str
    once: Callable[[], object]  # one run; for a continuous loop, the whole of it
    period_s: Callable[[], float] | None = None  # read at each run (the Cadence's); None: runs continuously
    first_s: float = 0.0  # flight seconds from the start to the first run
    run_s: float = 60.0  # the longest one run may take; a continuous loop's longest quiet spell
    slot_s: float | None = None  # at this second of each period by UTC (policy/slots.py)
    on_due: Callable[[float | None, float | None], None] | None = None  # hears when this run was due and the next is
    before: Callable[[], object] | None = None  # done before each run, on the loop's thread
    after: str | None = None  # runs right after a run of this loop, once its own period is due
    ready: Callable[[], bool] = _always  # an `after` loop runs only while this holds
    again: Callable[[], bool] = _never  # after a run: make another at the next chance, not a period on
    remade_when_stale: bool = False  # a record of its gone stale unaired (the radio's on_stale): another at once


class Daemon:
    def __init__(self, cfg: PayloadConfig, clock: Clock, bundle: Bundle | None, data_dir: Path, parts: Components,
                 loops: Callable[[Components], Sequence[Loop]], stop: threading.Event | None = None,
                 liveness: Liveness | None = None):
        self.cfg, self.clock, self.bundle, self.data_dir = cfg, clock, bundle, Path(data_dir)
        self.parts = parts
        self.stop = stop or clock.event()
        self.producers_stop = parts.stopping  # producers end first; the radio may drain after
        # Keyed liveness: each loop pings after each run; the systemd watchdog is fed only while all are current.
        self.liveness = liveness or Liveness()
        self._threads: list[threading.Thread] = []
        self.declare = loops
        self._remake: set[str] = set()  # loops to run again at the next chance (a stale musing, a short one)
        self._take_loops()
        parts.transmitter.on_stale = self.on_stale
        structlog.contextvars.bind_contextvars(boot=self.parts.flight.boot, callsign=cfg.callsign)

    def _take_loops(self) -> None:
        """The loops table over the parts as they are now (a persona that will not load has left it)."""
        self.flight_stats = FlightStats(self.data_dir / "stats.json", self.cfg, self.clock, self.parts)
        # Statistics are one more loop, saved every flight minute: a power cut loses at most a minute of counts.
        stats = Loop("stats", self.flight_stats.write, lambda: STATS_EVERY_S, STATS_EVERY_S)
        self.loops = {loop.name: loop for loop in (*self.declare(self.parts), stats)}
        self._followers = {name: [f.name for f in self.loops.values() if f.after == name] for name in self.loops}
        # Each loop's wake: set by a run of the loop it follows, by a stale record of its and by the stop.
        self.wakes = {name: self.clock.event() for name in self.loops}

    # ------------------------------------------------------------------ one run of each loop

    def run_once(self, name: str):
        """One run of the loop `name` (what its thread does each period): what its producer returned."""
        return self._run(self.loops[name])

    def _run(self, loop: Loop):
        if loop.before is not None:
            loop.before()
        try:
            return loop.once()
        finally:
            for follower in self._followers.get(loop.name, ()):
                self.wakes[follower].set()  # fresh readings and a turn ahead: the moment for a musing

    def on_stale(self, q) -> None:
        """A musing went stale before any of it aired (the radio expired it): make another now."""
        if q.kind is wire.Kind.MUSING or not self.parts.transmitter.auth:
            for loop in self.loops.values():
                if loop.remade_when_stale:
                    self._remake.add(loop.name)
                    self.wakes[loop.name].set()

    # ------------------------------------------------------------------ loops

    def _allowance_s(self, loop: Loop, period_s: float, first_s: float) -> float:
        """Seconds (the clock's `liveness_time`) a loop may go without a ping: its period, what one run may take, a margin."""
        return self.clock.liveness_s(max(period_s, first_s)) + loop.run_s + LIVENESS_MARGIN_S

    def _ran(self, loop: Loop, period_s: float) -> None:
        """A loop has run: its allowance follows its period (the uplink can change it) and its
        silence starts again. Registering alone would only change the allowance, and a loop
        that keeps running would be declared hung one allowance after it started."""
        self.liveness.register(loop.name, self._allowance_s(loop, period_s, 0.0))
        self.liveness.ping(loop.name)

    def _every(self, loop: Loop) -> None:
        """Run `loop` every `loop.period_s()` flight seconds (read each time: the uplink and the
        governor change it); with `slot_s`, at that second of each period by UTC (policy/slots.py).
        `on_due(this, next)` hears when this run was due and the next will be (None, None once the loop ends)."""
        period_s, slot_s = loop.period_s, loop.slot_s

        def align(due: float) -> float:
            if slot_s is None:
                return due
            return next_slot(due, self.clock.elapsed_s(), self.clock.now().timestamp(), period_s(), slot_s)

        on_due = loop.on_due or (lambda this, nxt: None)
        due = align(self.clock.elapsed_s() + loop.first_s)
        self.liveness.register(loop.name, self._allowance_s(loop, period_s(), loop.first_s))
        on_due(None, due)
        try:
            while not self.producers_stop.is_set():
                if self.clock.wait(due - self.clock.elapsed_s(), self.producers_stop):
                    return
                on_due(due, align(due + period_s()))
                try:
                    self._run(loop)
                except Exception:  # one failing task must not end the others
                    log.exception("task_failed", task=loop.name)
                self._ran(loop, period_s())
                this = due
                due += period_s()
                if due < self.clock.elapsed_s():  # fell behind (slow model): skip, don't burst
                    due = self.clock.elapsed_s() + period_s()
                due = align(due)  # a new period (the governor's mode) moves the grid: back onto our slot
                on_due(this, due)
        finally:
            on_due(None, None)

    def _after(self, loop: Loop) -> None:
        """Run `loop` every `loop.period_s()`, right after a run of the loop it follows — for the
        think loop, a position sentence: its readings fresh and its turn ahead, the air to send it
        near — and only while `loop.ready()` (the last musing has gone on air); one asked `again`
        or gone stale unsent is made at the next chance (payload/policy/airplan.py plans for it)."""
        period, followed, wake = loop.period_s, self.loops[loop.after], self.wakes[loop.name]
        due = self.clock.elapsed_s() + loop.first_s
        self.liveness.register(loop.name, self._allowance_s(loop, period(), loop.first_s))
        while not self.producers_stop.is_set():
            # Woken by each run of the loop followed (or a stale record, or the stop); at least once a period.
            self.clock.wait(max(due - self.clock.elapsed_s(), followed.period_s()) + 1.0, wake)
            wake.clear()
            if self.producers_stop.is_set():
                return
            if (self.clock.elapsed_s() >= due or loop.name in self._remake) and loop.ready():
                self._remake.discard(loop.name)
                try:
                    self._run(loop)
                except Exception:  # one failing task must not end the others
                    log.exception("task_failed", task=loop.name)
                if loop.again():  # too short to be worth its air: once more, from the next readings
                    self._remake.add(loop.name)
                else:
                    due += period()
                    if due < self.clock.elapsed_s():
                        due = self.clock.elapsed_s() + period()
            self._ran(loop, period())

    def fly_without_persona(self) -> None:
        """A model that will not load: the loops start without the think loop."""
        if self.parts.worker is not None:
            self.parts.worker.close()
        self.parts = replace(self.parts, worker=None, musings=None)
        self._take_loops()

    def start(self, launch: bool = False) -> None:
        """Start the loops of the table; with `launch`, flight time starts now (the bench world's launch)."""
        if self.parts.worker is not None:
            self.parts.worker.start()
        if launch:
            self.clock.restart()  # loading the model is not part of the flight
            self.parts.sensors.restart()
        if self.parts.flight.fitted.led is not None:
            self.parts.flight.fitted.led.show("booting")
        self.parts.flight.outbound.event(self.banner())
        now = self.clock.elapsed_s()
        for loop in self.loops.values():
            if loop.on_due is not None:
                loop.on_due(None, now)  # the first sentence is due now: the radio keys nothing before the beacon says when
        for loop in self.loops.values():
            if loop.period_s is None:
                self.liveness.register(loop.name, self.clock.liveness_s(loop.run_s) + CONTINUOUS_MARGIN_S)
                target = loop.once
            else:
                target = partial(self._after if loop.after else self._every, loop)
            self._threads.append(self.clock.thread(target, loop.name))

    def banner(self) -> Event:
        """The first event of a boot: what flies, how it woke, what room it has (docs/payload.md)."""
        g, m = self.parts.flight.governor, self.bundle.manifest if self.bundle else None
        sha = next((f.sha256 for f in m.files if f.path == m.model.file), None) if m else None
        try:
            free_mb = self.parts.flight.fitted.disk_usage(self.data_dir).free / 2**20
        except OSError:
            free_mb = None
        return boot_banner(__version__, m.persona.name if m else None, sha[:8] if sha else None,
                           free_mb, self.parts.flight.boot, g.mode.value, unplanned=g.unplanned_reboot, phase=g.phase.value,
                           callsign=self.cfg.callsign)

    def shutdown(self, drain_s: float = 0.0, abort: threading.Event | None = None, on_stopping=None,
                 budget_s: float = STOP_BUDGET_S) -> None:
        """Stop producers, let the radio drain the queue for up to `drain_s` flight seconds (cut
        short when `abort` is set: a SIGTERM during the drain), stop; `on_stopping()` when the
        drain is over and the stop proper begins (systemd's STOPPING=1).

        Everything but the drain fits in `budget_s` of the clock's seconds (flight seconds on
        the bench's lockstep, where the supervisor counts them too): a generation in flight is
        cut short, and a thread stuck in a driver (a wedged I2C bus, a camera, a module that
        keeps AUX low) is left behind — it is a daemon thread — rather than waited for."""
        for key in self.liveness.keys():
            self.liveness.pause(key)  # stopping threads are not hung ones
        self.producers_stop.set()
        for wake in self.wakes.values():
            wake.set()  # the think loop sees the stop now, not at the next sentence
        if self.parts.worker is not None:
            self.parts.worker.cancel()  # a musing in flight would hold the think loop for persona.timeout_s
        radio_thread = [t for t in self._threads if t.name == "radio"]
        left_behind = self._join_by([t for t in self._threads if t not in radio_thread],
                                    self.clock.elapsed_s() + budget_s / 2)
        end = self.clock.elapsed_s() + drain_s
        while (drain_s > 0 and sum(self.parts.store.queue.depth().values()) and self.clock.elapsed_s() < end
               and not (abort is not None and abort.is_set())):
            self.clock.wait(min(1.0, end - self.clock.elapsed_s()), abort)
        if on_stopping is not None:
            on_stopping()
        deadline = self.clock.elapsed_s() + budget_s / 2
        self.stop.set()
        self.parts.transmitter.wake.set()
        if self._join_by(radio_thread, deadline - RADIO_CLOSE_S):
            self.parts.radio.close()  # ends a wait on the module (AUX) that would outlast the stop
            left_behind += self._join_by(radio_thread, deadline)
        if left_behind:
            log.warning("stop_left_threads", threads=[t.name for t in left_behind])
        if self.parts.worker is not None:
            self.parts.worker.close()
        if self.parts.flight.fitted.camera is not None:
            self.parts.flight.fitted.camera.close()
        if self.parts.flight.fitted.heater is not None:
            self.parts.flight.fitted.heater.close()  # never leave a heater on behind a stopped daemon
        if self.parts.flight.fitted.led is not None:
            self.parts.flight.fitted.led.show("off")
        self.parts.flight.governor.close()
        self.parts.memory.close()
        self.flight_stats.write(final=True)
        self.parts.store.close()
        self.parts.radio.close()

    def _join_by(self, threads: list[threading.Thread], deadline: float) -> list[threading.Thread]:
        """Join each thread until `deadline` (the clock's elapsed seconds); those still running."""
        for t in threads:
            self.clock.join(t, max(deadline - self.clock.elapsed_s(), 0.0))
        return [t for t in threads if t.is_alive()]
