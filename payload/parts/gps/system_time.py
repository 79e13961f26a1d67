"""`system_time_from_gps`: sets the system clock from a fix it trusts."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

import structlog

from .fix import Fix

log = structlog.get_logger(__name__)


def _settime(posix_s: float) -> None:
    time.clock_settime(time.CLOCK_REALTIME, posix_s)


@dataclass(frozen=True)
class ClockResult:
    action: str  # "set", "in_sync", "untrusted", "not_permitted"
    reason: str
    offset_s: float | None = None  # GPS time minus system time


EARLIEST_TRUSTED = datetime(2024, 1, 1, tzinfo=timezone.utc)  # before it: a module without almanac/week


def system_time_from_gps(
    fix: Fix | None,
    set_clock: Callable[[float], None] = _settime,
    *,
    now_s: Callable[[], float] = time.time,
    monotonic: Callable[[], float] = time.monotonic,
    max_age_s: float = 2.0,
    tolerance_s: float = 1.0,
) -> ClockResult:
    """Set the system clock from `fix` when its time can be trusted: a valid fix (RMC
    status A, GGA quality > 0) whose date came from an RMC, heard under `max_age_s` ago
    and not before EARLIEST_TRUSTED. The time set is corrected for the fix's age; the
    clock is left alone when already within `tolerance_s`.

    The default setter calls clock_settime(CLOCK_REALTIME), which needs root or the
    CAP_SYS_TIME capability; without it the result is "not_permitted" and nothing is
    raised. On the Pi, rather than running the payload as root, grant just that
    capability in its systemd unit:

        [Service]
        AmbientCapabilities=CAP_SYS_TIME
        CapabilityBoundingSet=CAP_SYS_TIME

    (or let gpsd + chrony discipline the clock and pass a setter that does nothing).
    """
    if fix is None:
        return ClockResult("untrusted", "no fix yet")
    if not (fix.valid and fix.quality > 0):
        return ClockResult("untrusted", "no valid fix")
    if fix.utc is None or not fix.dated:
        return ClockResult("untrusted", "no date (no valid RMC)")
    age = monotonic() - fix.received_at
    if age > max_age_s:
        return ClockResult("untrusted", f"fix is {age:.1f} s old")
    if fix.utc < EARLIEST_TRUSTED:
        return ClockResult("untrusted", f"date {fix.utc.date()} is before {EARLIEST_TRUSTED.date()}")
    gps_now = fix.utc.timestamp() + age
    offset = gps_now - now_s()
    if abs(offset) <= tolerance_s:
        return ClockResult("in_sync", "within tolerance", offset)
    try:
        set_clock(gps_now)
    except PermissionError as e:
        log.warning("clock_not_set", error=str(e), hint="run with CAP_SYS_TIME (systemd AmbientCapabilities)")
        return ClockResult("not_permitted", f"{e}; needs root or CAP_SYS_TIME", offset)
    log.info("clock_set_from_gps", offset_s=round(offset, 3))
    return ClockResult("set", "set from GPS", offset)
