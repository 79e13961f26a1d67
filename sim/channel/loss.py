"""Bursty packet loss: the Gilbert–Elliott two-state channel (pure, seeded).

A good state that passes frames (rarely losing one) and a bad state that loses
most of them; bursts happen because the channel lingers in the bad state. A loss
spec `0.3` means 30 % loss on average in bursts of 4 frames on average;
`0.3:burst=8` sets the mean burst length; `0` is a perfect channel.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class LossSpec:
    mean_loss: float = 0.0
    burst: float = 4.0  # mean length of a bad spell, in frames

    @classmethod
    def parse(cls, text: str) -> LossSpec:
        head, *opts = text.split(":")
        try:
            loss = float(head)
        except ValueError as e:
            raise ValueError(f"loss spec {text!r}: expected a share like 0.3, optionally ':burst=N'") from e
        if not 0.0 <= loss < 1.0:
            raise ValueError(f"loss spec {text!r}: mean loss must be in [0, 1)")
        burst = 4.0
        for opt in opts:
            key, _, value = opt.partition("=")
            if key != "burst":
                raise ValueError(f"loss spec {text!r}: unknown option {key!r} (known: burst)")
            try:
                burst = float(value)
            except ValueError as e:
                raise ValueError(f"loss spec {text!r}: burst must be a number of frames") from e
            if burst < 1.0:
                raise ValueError(f"loss spec {text!r}: burst must be at least 1 frame")
        return cls(loss, burst)


class GilbertElliott:
    """Bad state loses every frame, good state none; transition rates set the mean loss.

    With p_bg = 1/burst (leaving the bad state) and p_gb chosen so that the
    stationary share of the bad state, p_gb / (p_gb + p_bg), equals the mean loss.
    """

    def __init__(self, spec: LossSpec, seed: int = 0):
        self.spec = spec
        self.rng = random.Random(seed)
        self.p_bg = 1.0 / spec.burst
        self.p_gb = spec.mean_loss * self.p_bg / (1.0 - spec.mean_loss) if spec.mean_loss > 0 else 0.0
        self.bad = False

    def drop(self) -> bool:
        """Advance one frame; True if this frame is lost."""
        if self.bad:
            if self.rng.random() < self.p_bg:
                self.bad = False
        elif self.rng.random() < self.p_gb:
            self.bad = True
        return self.bad
