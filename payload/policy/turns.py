"""The balloon's turn on the air: a beacon nothing displaces.

Every telemetry period opens with the position sentence, keyed when the beacon's loop makes it
(at its slot: payload/policy/slots.py). From there the radio may key other frames until the end of
the balloon's turn — `schedule.turn_s` after the sentence was due when balloons share a
frequency, else the whole period — and never later than `GUARD_S` before the next sentence is
due, which covers reading the sensors and waking the radio. A frame is keyed only when it
ends inside the turn (the air plan, payload/policy/airplan.py, cuts records so they can); one
that would not waits for the next turn.

The beacon's loop writes when each sentence is due (`BeaconTimes.due`); the radio asks
`room_s`, and says when it has keyed the sentence (`keyed`). From the moment a sentence is due
until it is keyed (or `SENTENCE_WAIT_S` has passed: a beacon that made none), the turn is closed:
on a Pi the beacon reads its sensors before the sentence exists, and a radio that woke at the
due time would otherwise key a long frame first. Pure but for a lock: flight seconds in, seconds out.
"""

from __future__ import annotations

import math
import threading

GUARD_S = 1.0  # the radio is quiet this long before a sentence is due: sensors read, radio woken
SENTENCE_WAIT_S = 5.0  # the turn stays closed this long after a sentence was due, for it to be made and keyed


class BeaconTimes:
    """When the position sentence of this period was due and when the next one is (flight
    seconds), from the beacon's loop; None before the first and after the beacon stopped."""

    def __init__(self, turn_s: float | None = None):
        self.turn_s = turn_s  # None: the whole period
        self._lock = threading.Lock()
        self._due: float | None = None
        self._next: float | None = None
        self._waiting = False  # this period's sentence is due and not keyed yet

    def due(self, this_s: float | None, next_s: float | None) -> None:
        """The sentence of this period is (was) due at `this_s`, the next at `next_s`; both None:
        the beacon has stopped (a drain at the flight's end), and no turn holds the radio back."""
        with self._lock:
            if this_s is not None and this_s != self._due:
                self._waiting = True  # a new period: its sentence goes first
            self._due, self._next = this_s, next_s

    def keyed(self) -> None:
        """The radio keyed this period's position sentence: its turn is open."""
        with self._lock:
            self._waiting = False

    def opens_in_s(self, now: float) -> float | None:
        """Seconds until a closed turn may open: the sentence's wait, else the next sentence; None:
        no beacon runs."""
        with self._lock:
            due, nxt, waiting = self._due, self._next, self._waiting
        if waiting and due is not None and now < due + SENTENCE_WAIT_S:
            return due + SENTENCE_WAIT_S - now
        return None if nxt is None else max(nxt - now, 0.0)

    def room_s(self, now: float) -> float:
        """Seconds from `now` the radio may still key before its turn ends; inf when no beacon
        runs; 0 or less outside its turn (then wait for the next sentence)."""
        with self._lock:
            due, nxt, waiting = self._due, self._next, self._waiting
        if nxt is None:
            return math.inf
        if waiting and due is not None and now < due + SENTENCE_WAIT_S:
            return 0.0  # the sentence first
        end = nxt - GUARD_S
        if due is not None and self.turn_s is not None:
            end = min(end, due + self.turn_s - GUARD_S)
        return end - now
