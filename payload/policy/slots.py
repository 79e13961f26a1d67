"""Time slots for the beacon: payloads sharing a frequency key their position sentences at
different seconds of each period, by UTC (the clock a GPS disciplines), so two balloons on the
same band plan do not talk over each other every time. PITS payloads and gateways share a channel
the same way (a TDM slot within a cycle); here the cycle is the beacon's own period.

Pure: flight seconds and UTC seconds in, the flight second at which the slot next opens out.
"""

from __future__ import annotations

import math


def next_slot(due_s: float, now_s: float, now_utc_s: float, period_s: float, slot_s: float) -> float:
    """The first flight second at or after `due_s` whose UTC time is `slot_s` past a multiple of
    `period_s` (the clock says flight second `now_s` is UTC second `now_utc_s`). A slot past the
    period wraps into it (slot 12 of a 10 s period is slot 2)."""
    if period_s <= 0:
        raise ValueError(f"a beacon period of {period_s} s has no slots")
    utc = now_utc_s + (due_s - now_s)
    offset = slot_s % period_s
    cycles = math.ceil((utc - offset) / period_s - 1e-9)  # a due already on its slot stays where it is
    return due_s + (cycles * period_s + offset - utc)
