"""The hour's airtime as the link spends it (the budget itself: payload/policy/duty.py), and the
air log that carries it across restarts.

The position sentence waits only for the law (the duty cycle in force); a bulk frame goes only
when the beacons still to come in its hour keep their room, scaled by the governor's transmit
factor. The beacon's reservation is its worst-case sentence (grown by any longer one sent), one
every `cadence.beacon_s` (the period in force: payload/cadence.py); bulk gets `1/factor` of the
rest (a factor of None sheds it). A bulk frame that does not fit is deferred, not waited for: the
radio stays free for the next sentence and looks again later. What went on air is logged in the
data directory before each frame is keyed, so a restart does not hand the same hour's budget out
twice.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import structlog

from stratoecho import wire
from stratoecho.lora import LoRaSettings

from ..clock import Clock
from ..policy.duty import AirtimeLog, DutyBudget, beacon_per_hour_s, worst_sentence
from .frames import LinkStats

log = structlog.get_logger(__name__)

# The airtime log is replaced at every frame (a killed process loses nothing) and flushed to the
# card at most this often (flight seconds): a power cut forgets at most this much of the hour.
LOG_SYNC_S = 60.0


class Airtime:
    """What a frame costs on air and whether the hour has room for it. `cadence.beacon_s` is the
    beacon's period in force and `transmit_factor()` the governor's (both read at every frame)."""

    def __init__(self, cfg, clock: Clock, cadence, stats: LinkStats, *, log_path: Path | None = None,
                 sentence_bytes: int | None = None, transmit_factor: Callable[[], float | None] | None = None):
        self.cfg, self.clock, self.cadence, self.stats = cfg, clock, cadence, stats
        self.transmit_factor = transmit_factor or (lambda: 1.0)
        self.pictures: LoRaSettings | None = cfg.pictures_settings()
        self.budget = DutyBudget(cfg.duty_cycle)
        self.sentence_s = self.seconds(b"\0" * (sentence_bytes or len(worst_sentence("STRATO1"))))
        self.log = AirtimeLog(log_path) if log_path is not None else None
        self.log_problem: str | None = None
        # Read at the first radio turn, not at construction: the bench may restart flight time (a
        # launch) after making the transmitter.
        self._log_loaded = self.log is None
        self._log_synced_at = -LOG_SYNC_S
        self._defer_spell: str | None = None  # the stream whose deferral was logged; None: bulk is moving

    def channel_of(self, kind: wire.Kind | None) -> LoRaSettings | None:
        """The modem settings a frame of `kind` is keyed with: the pictures' channel for SSDV when
        there is one ([radio.pictures]); None: the radio's own."""
        return self.pictures if kind is wire.Kind.SSDV else None

    def seconds(self, frame: bytes, kind: wire.Kind | None = None) -> float:
        """The frame's time on air, on the channel a frame of `kind` is keyed on."""
        channel = self.channel_of(kind)
        return self.cfg.airtime_s(len(frame)) if channel is None else channel.airtime_s(len(frame))

    def load_once(self) -> None:
        """What the last run sent this hour, counted once, at the first radio turn."""
        if self._log_loaded:
            return
        self._log_loaded = True
        now_utc, now = self.clock.now().timestamp(), self.clock.elapsed_s()
        try:
            entries = self.log.load(now_utc, now, self.budget.window_s)
        except ValueError as e:
            # Not knowing what the last run sent, assume the worst it could have: bulk's whole
            # share spent just now. The beacon keeps its room; bulk waits out the hour.
            self.log_problem = str(e)
            log.error("airtime_log_unreadable", error=str(e), assumed_bulk_s=round(self._bulk_room_s(), 1))
            entries = [(now, self._bulk_room_s(), False)]
        for t, a, beacon in entries:
            self.budget.record(t, a, beacon)
        if entries:
            log.info("airtime_log_loaded", frames=len(entries), used_s=round(self.budget.used(now), 1),
                     allowance_s=round(self.budget.allowance_s, 1))

    def _bulk_room_s(self) -> float:
        return max(self.budget.allowance_s - beacon_per_hour_s(self.sentence_s, self.cadence.beacon_s), 0.0)

    def sentence_wait_s(self, air: float) -> float:
        """How long the law holds a sentence of `air` seconds back (0: it may go now)."""
        return self.budget.wait_s(self.clock.elapsed_s(), air)

    def bulk_wait_s(self, air: float) -> float:
        """How long a bulk frame of `air` seconds waits for its share of the hour (0: it may go now)."""
        factor = self.transmit_factor()
        return self.budget.bulk_wait_s(self.clock.elapsed_s(), air, self.sentence_s, self.cadence.beacon_s,
                                       None if factor is None else 1.0 / factor)

    def defer(self, wait: float, stream: str) -> None:
        """Bulk waits for its share of the hour without holding the radio: logged once per spell."""
        if self._defer_spell is None:
            self.stats.budget_waits += 1
            self._defer_spell = stream
            log.info("duty_cycle_wait", wait_s=round(wait, 1), stream=stream, deferred=True,
                     transmit_factor=self.transmit_factor(), beacon_period_s=self.cadence.beacon_s)
        self.stats.bulk_deferred += 1

    def spend(self, air: float, beacon: bool) -> None:
        """A frame of `air` seconds is about to be keyed: counted and logged before it is, so a
        crash mid-frame still counts it."""
        now = self.clock.elapsed_s()
        self.budget.record(now, air, beacon)
        if not beacon:
            self._defer_spell = None  # bulk moves again: the next deferral is a new spell
        if self.log is None:
            return
        sync = now - self._log_synced_at >= LOG_SYNC_S or now < self._log_synced_at
        try:
            self.log.save(self.budget.entries(), self.clock.now().timestamp(), now, sync=sync)
            if sync:
                self._log_synced_at = now
        except OSError as e:  # a full or failing card must not stop the beacon
            if self.log_problem is None:
                log.error("airtime_log_unwritable", path=str(self.log.path), error=str(e))
            self.log_problem = f"{self.log.path}: {e}"
