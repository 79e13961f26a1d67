"""The payload daemon: it decides when each part works, and stops them in order.

    beacon    every schedule.telemetry_s:  producers.Beacon (after the commands' probation check); tells
                                           the radio when each sentence is due (policy/turns.py)
    health    every schedule.health_s:     producers.Health
    camera    every schedule.image_s:      producers.Pictures
    think     every schedule.musing_s:     producers.Musings, right after a position sentence and only
                                           when the last musing has gone on air; at once for one gone stale
    radio     continuously:                link.Transmitter (store -> frames -> airtime -> radio);
                                           its listen windows hand commands to CommandHandler

The work is the producers' (payload/producers/); the daemon owns their threads, their
liveness for the systemd watchdog, the stop, and when the statistics file is written
(payload/flight_stats.py). payload/assembly.py builds everything it schedules
(payload/components.py).
"""

from __future__ import annotations

import threading
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


class Daemon:
    def __init__(self, cfg: PayloadConfig, clock: Clock, bundle: Bundle | None, data_dir: Path, parts: Components,
                 stop: threading.Event | None = None, liveness: Liveness | None = None):
        self.cfg, self.clock, self.bundle, self.data_dir = cfg, clock, bundle, Path(data_dir)
        self.parts = parts
        self.sensors, self.radio, self.store, self.boot = parts.sensors, parts.radio, parts.store, parts.boot
        self.outbound, self.transmitter, self.governor = parts.outbound, parts.transmitter, parts.governor
        self.memory, self.reach, self.worker, self.gate = parts.memory, parts.reach, parts.worker, parts.gate
        self.beacon, self.health, self.pictures, self.musings = parts.beacon, parts.health, parts.pictures, parts.musings
        self.commands = parts.commands
        self.camera, self.led, self.heater, self.disk_usage = parts.camera, parts.led, parts.heater, parts.disk_usage
        self.stop = stop or clock.event()
        self.producers_stop = parts.stopping  # producers end first; the radio may drain after
        # The intervals in force: the configuration's, until a SET_INTERVALS changes them (on probation).
        self.schedule = parts.commands.schedule
        # Keyed liveness: each loop pings after each run; the systemd watchdog is fed only while all are current.
        self.liveness = liveness or Liveness()
        self._threads: list[threading.Thread] = []
        self.flight_stats = FlightStats(self.data_dir / "stats.json", cfg, clock, parts)
        # Set by each position sentence made, by a musing gone stale and by the stop: the think loop looks then.
        self.beacon_ran = clock.event()
        self._remake = False
        parts.transmitter.on_stale = self.on_stale
        structlog.contextvars.bind_contextvars(boot=self.boot, callsign=cfg.callsign)

    # ------------------------------------------------------------------ one run of each loop

    def beacon_once(self):
        self.commands.revert_unconfirmed()
        try:
            return self.beacon.once()
        finally:
            self.beacon_ran.set()  # fresh readings and a turn ahead: the moment for a musing

    def on_stale(self, q) -> None:
        """A musing went stale before any of it aired (the radio expired it): make another now."""
        if q.kind is wire.Kind.MUSING or not self.transmitter.auth:
            self._remake = True
            self.beacon_ran.set()

    def health_once(self) -> None:
        self.health.once()

    def picture_once(self) -> bool:
        return self.pictures.once() if self.pictures is not None else False

    def think_once(self) -> str | None:
        return self.musings.once() if self.musings is not None else None

    def on_uplink(self, frame: bytes) -> None:
        self.commands.on_frame(frame)

    def write_stats(self) -> None:
        self.flight_stats.write()

    # ------------------------------------------------------------------ loops

    def _allowance_s(self, name: str, period_s: float, first_s: float) -> float:
        """Seconds (the clock's `liveness_time`) a loop may go without a ping: its period, what one run may take, a margin."""
        run_s = {"think": 2 * self.cfg.persona.timeout_s,
                 "camera": self.cfg.devices.camera.timeout_s if self.cfg.devices.camera else 60.0}.get(name, 60.0)
        return self.clock.liveness_s(max(period_s, first_s)) + run_s + 30.0

    def _ran(self, name: str, period_s: float) -> None:
        """A loop has run: its allowance follows its period (the uplink can change it) and its
        silence starts again. Registering alone would only change the allowance, and a loop
        that keeps running would be declared hung one allowance after it started."""
        self.liveness.register(name, self._allowance_s(name, period_s, 0.0))
        self.liveness.ping(name)

    def _every(self, period_s, first_s: float, action, name: str, slot_s: float | None = None,
               on_due=None) -> None:
        """Run `action` every `period_s()` flight seconds (read each time: the uplink can change it);
        with `slot_s`, at that second of each period by UTC (policy/slots.py). `on_due(this, next)`
        hears when this run was due and the next will be (None, None once the loop ends)."""
        def align(due: float) -> float:
            if slot_s is None:
                return due
            return next_slot(due, self.clock.elapsed_s(), self.clock.now().timestamp(), period_s(), slot_s)

        on_due = on_due or (lambda this, nxt: None)
        due = align(self.clock.elapsed_s() + first_s)
        self.liveness.register(name, self._allowance_s(name, period_s(), first_s))
        on_due(None, due)
        try:
            while not self.producers_stop.is_set():
                if self.clock.wait(due - self.clock.elapsed_s(), self.producers_stop):
                    return
                on_due(due, align(due + period_s()))
                try:
                    action()
                except Exception:  # one failing task must not end the others
                    log.exception("task_failed", task=name)
                self._ran(name, period_s())
                this = due
                due += period_s()
                if due < self.clock.elapsed_s():  # fell behind (slow model): skip, don't burst
                    due = self.clock.elapsed_s() + period_s()
                due = align(due)  # a new period (the governor's mode) moves the grid: back onto our slot
                on_due(this, due)
        finally:
            on_due(None, None)

    def _think(self) -> None:
        """A musing every `musing_s` (the governor's), made right after a position sentence — its
        readings fresh and its turn ahead, the air to send it near — and only once the last one has
        gone on air; one gone stale unsent is made again at the next chance (payload/policy/airplan.py
        plans for it)."""
        sched, g = self.schedule, self.governor
        period = lambda: g.period_s("think", sched.musing_s)  # noqa: E731
        due = self.clock.elapsed_s() + sched.first_musing_s
        self.liveness.register("think", self._allowance_s("think", period(), sched.first_musing_s))
        while not self.producers_stop.is_set():
            # Woken by each position sentence (or a stale musing, or the stop); at least once a period.
            self.clock.wait(max(due - self.clock.elapsed_s(), g.period_s("beacon", sched.telemetry_s)) + 1.0,
                            self.beacon_ran)
            self.beacon_ran.clear()
            if self.producers_stop.is_set():
                return
            if (self.clock.elapsed_s() >= due or self._remake) and not self.transmitter.musing_waiting():
                self._remake = False
                try:
                    self.think_once()
                except Exception:  # one failing task must not end the others
                    log.exception("task_failed", task="think")
                if self.musings.ask_again:  # too short to be worth its air: once more, from the next readings
                    self.musings.ask_again, self._remake = False, True
                else:
                    due += period()
                    if due < self.clock.elapsed_s():
                        due = self.clock.elapsed_s() + period()
            self._ran("think", period())

    def fly_without_persona(self) -> None:
        """A model that will not load: the loops start without the think loop."""
        if self.worker is not None:
            self.worker.close()
        self.worker = self.musings = None

    def start(self, launch: bool = False) -> None:
        """Start the loops; with `launch`, flight time starts now (the bench world's launch)."""
        if self.worker is not None:
            self.worker.start()
        if launch:
            self.clock.restart()  # loading the model is not part of the flight
            self.sensors.restart()
        sched = self.schedule
        if self.led is not None:
            self.led.show("booting")
        g = self.governor
        self.outbound.event(self.banner())
        window_s = self.cfg.uplink.window_s
        self.liveness.register("radio", self.clock.liveness_s(window_s) + 120.0)
        # The first sentence is due now: the radio keys nothing before the beacon's loop says when.
        self.transmitter.turns.due(None, self.clock.elapsed_s())
        specs = [
            ("beacon", lambda: self._every(lambda: g.period_s("beacon", sched.telemetry_s), 0.0, self.beacon_once,
                                           "beacon", sched.beacon_slot_s, on_due=self.transmitter.turns.due)),
            ("radio", self.transmitter.run),
            ("health", lambda: self._every(lambda: g.period_s("housekeeping", sched.health_s), sched.health_s,
                                           self.health_once, "health")),
        ]
        if self.camera is not None:
            specs.append(("camera", lambda: self._every(lambda: g.period_s("capture", sched.image_s),
                                                        sched.image_s / 2, self.picture_once, "camera")))
        if self.musings is not None:
            specs.append(("think", self._think))
        for name, target in specs:
            self._threads.append(self.clock.thread(target, name))

    def banner(self) -> Event:
        """The first event of a boot: what flies, how it woke, what room it has (docs/payload.md)."""
        g, m = self.governor, self.bundle.manifest if self.bundle else None
        sha = next((f.sha256 for f in m.files if f.path == m.model.file), None) if m else None
        try:
            free_mb = self.disk_usage(self.data_dir).free / 2**20
        except OSError:
            free_mb = None
        return boot_banner(__version__, m.persona.name if m else None, sha[:8] if sha else None,
                           free_mb, self.boot, g.mode.value, unplanned=g.unplanned_reboot, phase=g.phase.value,
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
        self.beacon_ran.set()  # the think loop sees the stop now, not at the next sentence
        if self.worker is not None:
            self.worker.cancel()  # a musing in flight would hold the think loop for persona.timeout_s
        radio_thread = [t for t in self._threads if t.name == "radio"]
        left_behind = self._join_by([t for t in self._threads if t not in radio_thread],
                                    self.clock.elapsed_s() + budget_s / 2)
        end = self.clock.elapsed_s() + drain_s
        while (drain_s > 0 and sum(self.store.depth().values()) and self.clock.elapsed_s() < end
               and not (abort is not None and abort.is_set())):
            self.clock.wait(min(1.0, end - self.clock.elapsed_s()), abort)
        if on_stopping is not None:
            on_stopping()
        deadline = self.clock.elapsed_s() + budget_s / 2
        self.stop.set()
        self.transmitter.wake.set()
        if self._join_by(radio_thread, deadline - RADIO_CLOSE_S):
            self.radio.close()  # ends a wait on the module (AUX) that would outlast the stop
            left_behind += self._join_by(radio_thread, deadline)
        if left_behind:
            log.warning("stop_left_threads", threads=[t.name for t in left_behind])
        if self.worker is not None:
            self.worker.close()
        if self.camera is not None:
            self.camera.close()
        if self.heater is not None:
            self.heater.close()  # never leave a heater on behind a stopped daemon
        if self.led is not None:
            self.led.show("off")
        self.governor.close()
        self.memory.close()
        self.flight_stats.write(final=True)
        self.store.close()
        self.radio.close()

    def _join_by(self, threads: list[threading.Thread], deadline: float) -> list[threading.Thread]:
        """Join each thread until `deadline` (the clock's elapsed seconds); those still running."""
        for t in threads:
            self.clock.join(t, max(deadline - self.clock.elapsed_s(), 0.0))
        return [t for t in threads if t.is_alive()]
