"""The payload's back-off between attempts to bring a failed device back (I2C chips, GPS,
camera): exponential, capped, and without sleeping — each driver asks "may I try yet?"
between readings, so the rest of the payload keeps running while a part is down. Not
tenacity: tenacity wraps one call in a blocking retry loop.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Exponential back-off between re-initialisation attempts, without sleeping.

    After the n-th consecutive fault the next attempt is allowed ``delay_s(n)`` seconds
    later: ``initial_s * factor**(n-1)``, capped at ``max_s``. ``Backoff.none()`` retries
    on every read (for tests that do not care about timing).
    """

    initial_s: float = 1.0
    factor: float = 2.0
    max_s: float = 60.0

    def delay_s(self, consecutive_faults: int) -> float:
        if consecutive_faults <= 0:
            return 0.0
        return min(self.max_s, self.initial_s * self.factor ** (consecutive_faults - 1))

    @classmethod
    def none(cls) -> "Backoff":
        return cls(initial_s=0.0, factor=1.0, max_s=0.0)
