"""What the daemon runs, declared: a `Loop` per thread (payload/assembly.py's `loops` table) and
the `Closing`, what it stops and closes and in which order (payload/onboard.py). The daemon
(payload/daemon.py) runs them and knows nothing else of the payload."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Loop:
    """One of the daemon's threads, as payload/assembly.py's `loops` table declares it."""

    name: str
    once: Callable[..., object]  # one run; for a continuous loop the whole of it, handed `alive`
    period_s: Callable[[], float] | None = None  # read at each run (the Cadence's); None: runs continuously
    first_s: float = 0.0  # flight seconds from the start to the first run
    run_s: float = 60.0  # the longest one run may take; a continuous loop's longest quiet spell
    slot_s: float | None = None  # at this second of each period by UTC (policy/slots.py)
    on_due: Callable[[float | None, float | None], None] | None = None  # hears when this run was due and the next is
    before: Callable[[], object] | None = None  # done before each run, on the loop's thread
    after: str | None = None  # runs right after a run of this loop, once its own period is due
    ready: Callable[[], bool] = lambda: True  # an `after` loop runs only while this holds
    again: Callable[[], bool] = lambda: False  # after a run: make another at the next chance, not a period on
    remade_when_stale: bool = False  # a record of its gone stale unaired (the radio's on_stale): another at once
    on_stop: Callable[[], object] | None = None  # told to stop: a run in flight ends now (a musing, a radio's wait)
    drains: Callable[[], int] | None = None  # runs on after the producers stop while this counts records to send
    unstick: Callable[[], object] | None = None  # its thread outlives the stop: close what it is stuck in


@dataclass(frozen=True)
class Closing:
    """What the daemon stops and closes: the producers' event (set first), the stop proper (set
    after the drain: the draining loops end) and, once every thread has ended or been left behind,
    what to close, in order."""

    stopping: threading.Event
    stop: threading.Event
    closes: Sequence[Callable[[], object]] = ()
