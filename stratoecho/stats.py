"""The one interval the measures share (pure arithmetic, no I/O).

A share of a few dozen texts — musings that mention their context, replies a classifier takes
for the owner's, pairs a judge told apart — needs an interval that stays within 0..1 and is not
empty at 0 or at all of n, which the normal approximation p ± 1.96·se is not: Wilson's score
interval (Wilson 1927; Brown, Cai & DasGupta 2001 recommend it for small n).
"""

from __future__ import annotations

import math

Z95 = 1.959963984540054  # the normal quantile of a two-sided 95 % interval


def wilson(successes: float, n: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson's score interval for `successes` of `n` trials (successes may be fractional: a
    judge's "can't tell" counts half); None for no trials."""
    if n <= 0:
        return None
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(max(0.0, p * (1 - p)) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)
