"""`make fuzz`: every parser that takes bytes from outside, fed damaged and hostile input for a fixed
budget (`python -m sim.bench.fuzz`; docs/bench.md, "Fuzzing").

One target per parser, grouped by where its bytes come from:

- `frames`   off the air: the ground's receiver (with and without the downlink key), the sentences
             it parses, a KISS TNC's serial line, Horus Binary, the relay envelope (and whose a
             heard frame is), the window cue, the uplink command as the payload reads it;
- `ground`   from a station network: the aggregator's MQTT message, and bounded JSON under it;
- `exports`  from a user's disk: each export reader `prepare` dispatches to, and the JSON window
             under Telegram's.

`engine` is the fuzzer (deterministic mutations of a corpus made by the project's own encoders,
crashes cut down and kept as seeds in tests/fuzz_seeds/, replayed by tests/test_fuzz_seeds.py).
`sim.bench.fuzz.decoder` is the receiver's older, deeper check (no wrong record delivered), which
`make fuzz` runs first.
"""

from __future__ import annotations

from pathlib import Path

from .engine import Budget, Result, Target, fuzz_target, replay

SEEDS = Path(__file__).resolve().parents[3] / "tests" / "fuzz_seeds"


def targets() -> dict[str, Target]:
    """Every target by name, in the order `make fuzz` runs them."""
    from . import exports, frames, ground

    return {t.name: t for t in frames.TARGETS + ground.TARGETS + exports.TARGETS}


__all__ = ["SEEDS", "Budget", "Result", "Target", "fuzz_target", "replay", "targets"]
