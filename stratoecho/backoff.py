"""Back-off: how long to wait after failures before trying again, the one policy both sides use.

The payload's drivers (I2C chips, the GPS, the camera) ask "may I try yet?" between readings
and never sleep; the ground waits on it between attempts to reach a broker or a LoRa gateway,
and before a password may be tried again. Exponential, capped, with optional jitter so that
stations coming back after an outage do not all retry at the same moment. It computes a delay
and waits for nothing: who waits decides how. Where a call is simply retried in a blocking loop,
tenacity's declared retries are used instead (the uploads, the API proxy).
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """After the n-th consecutive failure the next try waits ``delay_s(n)``:
    ``initial_s * factor**(n-1)``, at most ``max_s``, plus up to ``jitter_s`` at random
    (after the cap: a wait may exceed ``max_s`` by the jitter). No failure, no wait."""

    initial_s: float = 1.0
    factor: float = 2.0
    max_s: float = 60.0
    jitter_s: float = 0.0

    def __post_init__(self) -> None:
        for name in ("initial_s", "max_s", "jitter_s"):
            if not getattr(self, name) >= 0:  # NaN fails too
                raise ValueError(f"back-off {name} is {getattr(self, name)}: it must be 0 or more seconds")
        if not self.factor >= 1:
            raise ValueError(f"back-off factor is {self.factor}: waits must not shrink (1 or more)")

    def delay_s(self, failures: int) -> float:
        if failures <= 0:
            return 0.0
        try:
            grown = self.initial_s * float(self.factor) ** (failures - 1)
        except OverflowError:  # after a thousand failures or so: the cap has long been reached
            grown = self.max_s
        return min(self.max_s, grown) + (random.uniform(0, self.jitter_s) if self.jitter_s else 0.0)

    def wait(self, retry_state) -> float:
        """As a tenacity wait strategy: the delay after `retry_state.attempt_number` failed attempts."""
        return self.delay_s(retry_state.attempt_number)

    @classmethod
    def none(cls) -> Backoff:
        """Try again at once, every time (for tests that do not care about timing)."""
        return cls(initial_s=0.0, factor=1.0, max_s=0.0)
