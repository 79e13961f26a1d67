"""A bench process's log read back: each process of a flight writes JSON lines to OUT/NAME.log."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path


def log_events(log: Path, marker: str) -> Iterator[dict]:
    """The JSON objects on the lines of a process's log that hold `marker` (most lines need no
    parsing then), in order; none for a missing log. Other lines are skipped: the log also holds
    plain text (after a watchdog kill, Python's stack dumps)."""
    try:
        lines = Path(log).read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return
    for line in lines:
        try:
            entry = json.loads(line) if marker in line else None
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict):
            yield entry
