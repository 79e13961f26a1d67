"""Musing sentences' stamps: a ``$$`` line for stock gateways is stamped as it is keyed.

`wire.restamp` gives it the last position sentence on air, that sentence's number, and a time a
second after the last ``$$`` line, at least `STAMP_MARGIN_S` in the past by the position's own
clock (its fix time plus the flight time since it was keyed), so the next position sentence, from
a fix taken later, is newer still. A line whose stamp is not yet that far in the past waits for it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import structlog

from stratoecho import wire

from ..clock import Clock

log = structlog.get_logger(__name__)

# How far in the past a musing sentence's stamp must be when it is keyed: the next position
# sentence's fix may be up to a second old (1 Hz GPS), and must still be later than the stamp.
STAMP_MARGIN_S = 2.0


class Stamping:
    """What the last position sentence and the last ``$$`` line on air said, and from them the
    stamp of the next musing sentence."""

    def __init__(self, clock: Clock):
        self.clock = clock
        # The last position sentence keyed: (its number, fix time, lat, lon, alt, flight time keyed);
        # and the time of day the last $$ line said.
        self._position: tuple[int, datetime, float, float, float, float] | None = None
        self._line_time: datetime | None = None

    def keyed(self, frame: bytes, beacon: bool, keyed_s: float) -> None:
        """A position sentence (`beacon`) or a musing sentence went on air at flight time `keyed_s`:
        remember what it said."""
        try:
            if not beacon:
                self._line_time = self._at(wire.decode_musing_sentence(frame).time)
                return
            t = wire.decode_position(frame)
        except wire.WireError as e:  # our own frame: never expected
            log.error("keyed_line_unreadable", error=str(e))
            return
        fix = self._at(t.time)
        self._position = (t.seq, fix, t.lat, t.lon, t.alt, keyed_s)
        self._line_time = fix  # HABpack too: SondeHub orders and merges its positions by time alike

    def _at(self, hms: str) -> datetime:
        """A time of day as the moment nearest the flight's clock (across midnight too)."""
        return wire.telemetry_datetime(hms, self.clock.now())

    def stamped(self, frame: bytes) -> tuple[bytes, float]:
        """(a musing sentence carrying the last position keyed, seconds until its stamp is
        STAMP_MARGIN_S in the past by that position's clock: 0 when it may go now). Before any
        position this boot, the line as it was made."""
        if self._position is None:
            return frame, 0.0
        seq, fix, lat, lon, alt, keyed = self._position
        stamp = max(fix, self._line_time or fix) + timedelta(seconds=1)
        now = fix + timedelta(seconds=self.clock.elapsed_s() - keyed)  # GPS time, never ahead of it
        wait = (stamp - now).total_seconds() + STAMP_MARGIN_S
        if wait > 0:
            return frame, wait
        return wire.restamp(frame, seq, stamp, lat, lon, alt), 0.0
