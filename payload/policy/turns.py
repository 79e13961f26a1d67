"""The balloon's turn on the air: a beacon nothing displaces.

Every telemetry period opens with the position sentence, keyed when the beacon's loop makes it
(at its slot: payload/policy/slots.py). From there the radio may key other frames until the end of
the balloon's turn — `schedule.turn_s` after the sentence was due when balloons share a
frequency, else the whole period — and never later than `GUARD_S` before the next sentence is
due, which covers reading the sensors and waking the radio. A frame is keyed only when it
ends inside the turn (the air plan, payload/policy/airplan.py, cuts records so they can); one
that would not waits for the next turn.

The beacon's loop writes when each sentence is due (`BeaconTimes.due`); the radio asks
`room_s`. Pure but for a lock: flight seconds in, seconds out.
"""

from __future__ import annotations

import math
import threading

GUARD_S = 1.0  # the radio is quiet this long before a sentence is due: sensors read, radio woken


class BeaconTimes:
    """When the position sentence of this period was due and when the next one is (flight
    seconds), from the beacon's loop; None before the first and after the beacon stopped."""

    def __init__(self, turn_s: float | None = None):
        self.turn_s = turn_s  # None: the whole period
        self._lock = threading.Lock()
        self._due: float | None = None
        self._next: float | None = None

    def due(self, this_s: float | None, next_s: float | None) -> None:
        """The sentence of this period is (was) due at `this_s`, the next at `next_s`; both None:
        the beacon has stopped (a drain at the flight's end), and no turn holds the radio back."""
        with self._lock:
            self._due, self._next = this_s, next_s

    def next_due_s(self) -> float | None:
        with self._lock:
            return self._next

    def room_s(self, now: float) -> float:
        """Seconds from `now` the radio may still key before its turn ends; inf when no beacon
        runs; 0 or less outside its turn (then wait for the next sentence)."""
        with self._lock:
            due, nxt = self._due, self._next
        if nxt is None:
            return math.inf
        end = nxt - GUARD_S
        if due is not None and self.turn_s is not None:
            end = min(end, due + self.turn_s - GUARD_S)
        return end - now
