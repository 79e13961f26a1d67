"""The payload daemon: it runs a table of loops (payload/assembly.py's `loops`), keeps each one's
liveness for the systemd watchdog, and stops them in order. It knows nothing of what the loops do.

    a periodic loop   runs `once` every `period_s()` flight seconds (read before each run: the
                      uplink and the governor change it), at `slot_s` of each period by UTC when set
    a follower        runs right after a run of the loop it follows (`after`), once its own period is
                      due and while `ready()` holds — the think loop after a position sentence
    a continuous loop `once(alive)` is the whole of it (the radio), calling `alive()` at each turn

At the stop the producers' event is set first and each loop told (`on_stop`); a loop that `drains`
runs on while records wait; what the `Closing` lists is closed last (payload/onboard.py).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from functools import partial

import structlog

from .clock import Clock
from .loop import Closing, Loop
from .policy.slots import next_slot
from .watchdog import Liveness

log = structlog.get_logger(__name__)

# A stop, SIGTERM to exit, takes at most this (plus closing files): half the unit's
# TimeoutStopSec=20, so a planned stop never turns into systemd's SIGKILL.
STOP_BUDGET_S = 10.0
RADIO_CLOSE_S = 2.0  # of it, kept for closing a radio whose thread is stuck, and for that thread to end
LIVENESS_MARGIN_S = 30.0  # a periodic loop's allowance past its period and its longest run
CONTINUOUS_MARGIN_S = 120.0  # a continuous loop's past its longest quiet spell


class Daemon:
    """Runs `loops` on their threads; `shutdown` stops them and closes what `closing` lists."""

    def __init__(self, clock: Clock, loops: Sequence[Loop], closing: Closing, liveness: Liveness | None = None):
        self.clock, self.closing = clock, closing
        self.stop, self.producers_stop = closing.stop, closing.stopping  # producers end first; the radio may drain
        # Keyed liveness: each loop pings after each run; the systemd watchdog is fed only while all are current.
        self.liveness = liveness or Liveness(clock.liveness_time)
        self._threads: list[threading.Thread] = []
        self._remake: set[str] = set()  # loops to run again at the next chance (a stale musing, a short one)
        self.loops = {loop.name: loop for loop in loops}
        self._followers = {name: [f.name for f in self.loops.values() if f.after == name] for name in self.loops}
        # Each loop's wake: set by a run of the loop it follows, by a stale record of its and by the stop.
        self.wakes = {name: clock.event() for name in self.loops}

    def run_once(self, name: str):
        """One run of the loop `name` (what its thread does each period): what its work returned."""
        return self._run(self.loops[name])

    def _run(self, loop: Loop):
        if loop.before is not None:
            loop.before()
        try:
            return loop.once()
        finally:
            for follower in self._followers.get(loop.name, ()):
                self.wakes[follower].set()  # fresh readings and a turn ahead: the moment for a musing

    def _try(self, loop: Loop) -> None:
        try:
            self._run(loop)
        except Exception:  # one failing task must not end the others
            log.exception("task_failed", task=loop.name)

    def _next_due(self, due: float, period_s: float) -> float:
        """A period on; fallen behind (a slow model), a period from now: skip, don't burst."""
        return due + period_s if due + period_s >= self.clock.elapsed_s() else self.clock.elapsed_s() + period_s

    def remake_stale(self) -> None:
        """A record went stale before any of it aired: the loops that make it make another now."""
        for loop in self.loops.values():
            if loop.remade_when_stale:
                self._remake.add(loop.name)
                self.wakes[loop.name].set()

    def _allowance_s(self, loop: Loop, period_s: float, first_s: float) -> float:
        """Seconds (the clock's `liveness_time`) a loop may go without a ping: its period, what one run may take, a margin."""
        return self.clock.liveness_s(max(period_s, first_s)) + loop.run_s + LIVENESS_MARGIN_S

    def _ran(self, loop: Loop, period_s: float) -> None:
        """A loop has run: its allowance follows its period (the uplink can change it) and its silence
        starts again (registering alone would declare a loop that keeps running hung in the end)."""
        self.liveness.register(loop.name, self._allowance_s(loop, period_s, 0.0))
        self.liveness.ping(loop.name)

    def _every(self, loop: Loop) -> None:
        """Run `loop` every `loop.period_s()` flight seconds, at `slot_s` of each period by UTC when set
        (policy/slots.py); `on_due(this, next)` hears when each run was due and the next is (None, None: the end)."""
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
                self._try(loop)
                self._ran(loop, period_s())
                # A new period (the governor's mode) moves the grid: back onto our slot.
                this, due = due, align(self._next_due(due, period_s()))
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
                self._try(loop)
                if loop.again():  # too short to be worth its air: once more, from the next readings
                    self._remake.add(loop.name)
                else:
                    due = self._next_due(due, period())
            self._ran(loop, period())

    def start(self) -> None:
        """Start the loops' threads, in the table's order."""
        now = self.clock.elapsed_s()
        for loop in self.loops.values():
            if loop.on_due is not None:
                loop.on_due(None, now)  # the first sentence is due now: the radio keys nothing before the beacon says when
        for loop in self.loops.values():
            if loop.period_s is None:
                self.liveness.register(loop.name, self.clock.liveness_s(loop.run_s) + CONTINUOUS_MARGIN_S)
                target = partial(loop.once, partial(self.liveness.ping, loop.name))
            else:
                target = partial(self._after if loop.after else self._every, loop)
            self._threads.append(self.clock.thread(target, loop.name))

    def shutdown(self, drain_s: float = 0.0, abort: threading.Event | None = None, on_stopping=None,
                 budget_s: float = STOP_BUDGET_S) -> None:
        """Stop the producers, let the draining loops send what waits for up to `drain_s` flight seconds
        (cut short by `abort`: a SIGTERM during the drain), then `on_stopping()` (systemd's STOPPING=1)
        and the stop proper. All but the drain fits in `budget_s` of the clock's seconds: a run in
        flight is told to end, and a thread stuck in a driver (a wedged I2C bus, a camera, a module
        keeping AUX low) is left behind, a daemon thread, rather than waited for."""
        for key in self.liveness.keys():
            self.liveness.pause(key)  # stopping threads are not hung ones
        self.producers_stop.set()
        for wake in self.wakes.values():
            wake.set()  # the think loop sees the stop now, not at the next sentence
        draining = [loop for loop in self.loops.values() if loop.drains is not None]
        _tell([loop.on_stop for loop in self.loops.values() if loop not in draining])  # a musing in flight ends
        last = [t for t in self._threads if t.name in {loop.name for loop in draining}]
        left_behind = self._join_by([t for t in self._threads if t not in last], self.clock.elapsed_s() + budget_s / 2)
        end = self.clock.elapsed_s() + drain_s
        while (drain_s > 0 and any(loop.drains() for loop in draining) and self.clock.elapsed_s() < end
               and not (abort is not None and abort.is_set())):
            self.clock.wait(min(1.0, end - self.clock.elapsed_s()), abort)
        if on_stopping is not None:
            on_stopping()
        deadline = self.clock.elapsed_s() + budget_s / 2
        self.stop.set()
        _tell([loop.on_stop for loop in draining])
        if self._join_by(last, deadline - RADIO_CLOSE_S):
            _tell([loop.unstick for loop in draining])  # ends a wait on the module (AUX) that would outlast the stop
            left_behind += self._join_by(last, deadline)
        if left_behind:
            log.warning("stop_left_threads", threads=[t.name for t in left_behind])
        _tell(self.closing.closes)

    def _join_by(self, threads: list[threading.Thread], deadline: float) -> list[threading.Thread]:
        """Join each thread until `deadline` (the clock's elapsed seconds); those still running."""
        for t in threads:
            self.clock.join(t, max(deadline - self.clock.elapsed_s(), 0.0))
        return [t for t in threads if t.is_alive()]


def _tell(calls) -> None:
    for call in calls:
        if call is not None:
            call()
