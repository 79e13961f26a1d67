"""Flight time, real or accelerated, and waits that end at once on shutdown.

Everything in the daemon waits through a `Clock` and the one shutdown event, never
`time.sleep`, so a stop is immediate and the bench can run a flight 60x faster.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone


class Clock:
    """`speedup` flight seconds pass per wall second; speedup 1 is real time."""

    def __init__(self, speedup: float = 1.0, start_utc: datetime | None = None):
        if speedup <= 0:
            raise ValueError("speedup must be positive")
        self.speedup = speedup
        self._wall0 = time.monotonic()
        self._fixed_utc = start_utc is not None
        self.start_utc = start_utc or datetime.now(timezone.utc)

    def restart(self) -> None:
        """Make now flight second zero: the bench flight launches once the payload is ready.
        A clock given its `start_utc` (the bench world's launch time) keeps it."""
        self._wall0 = time.monotonic()
        if not self._fixed_utc:
            self.start_utc = datetime.now(timezone.utc)

    def adopt(self, epoch_unix: float) -> None:
        """Flight second zero was at wall time `epoch_unix`: a payload rebooted mid-flight
        rejoins the flight's time instead of starting a new one."""
        self._wall0 = time.monotonic() - (time.time() - epoch_unix)

    def epoch_unix(self) -> float:
        """The wall time (time.time()) of flight second zero, for others to share."""
        return time.time() - (time.monotonic() - self._wall0)

    def elapsed_s(self) -> float:
        """Flight seconds since the clock started."""
        return (time.monotonic() - self._wall0) * self.speedup

    def now(self) -> datetime:
        return self.start_utc + timedelta(seconds=self.elapsed_s())

    def wait(self, flight_seconds: float, stop: threading.Event) -> bool:
        """Wait `flight_seconds` of flight time; True if `stop` was set meanwhile."""
        return stop.wait(max(flight_seconds, 0.0) / self.speedup)

    def wall_s(self, flight_seconds: float) -> float:
        return flight_seconds / self.speedup
