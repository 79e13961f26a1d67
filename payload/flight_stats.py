"""stats.json: each part's statistics, the link's, the queue's depth and the energy spent, as
one file replaced whole every flight minute and at the stop. The bench's flight report and
`make bench` read it (sim/bench/flight_report.py)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from .clock import Clock
from .components import Components
from .config import PayloadConfig
from .producers import MusingStats, PictureStats


class FlightStats:
    def __init__(self, path: Path, cfg: PayloadConfig, clock: Clock, parts: Components):
        self.path, self.cfg, self.clock, self.parts = Path(path), cfg, clock, parts

    def energy_wh(self) -> float:
        p, parts = self.cfg, self.parts
        joules = (
            p.power.base_w * self.clock.elapsed_s()
            + p.persona.joules_per_token * (parts.musings.stats.tokens if parts.musings is not None else 0)
            + p.radio.tx_power_w * parts.transmitter.stats.airtime_s
        )
        return joules / 3600.0

    def counts(self) -> dict:
        """The producers' statistics, each part's own, as one table (stats.json's "daemon")."""
        parts = self.parts
        merged = {"boot": parts.boot}
        for stats in (parts.beacon.stats, parts.health.stats, parts.commands.stats,
                      parts.pictures.stats if parts.pictures is not None else PictureStats(),
                      parts.musings.stats if parts.musings is not None else MusingStats()):  # not flying: zeros
            merged.update(asdict(stats))
        return merged

    def snapshot(self) -> dict:
        parts = self.parts
        return {
            "daemon": self.counts(),
            "link": asdict(parts.transmitter.stats),
            "queue_depth": parts.store.depth(),
            "flight_s": self.clock.elapsed_s(),
            "energy_wh": self.energy_wh(),
            "persona_restarts": parts.worker.restarts if parts.worker else 0,
            "uplink_rejected": dict(parts.gate.rejections) if parts.gate else {},
            "loss_estimate": round(parts.transmitter.loss_estimate(), 4),
            "reach": parts.reach.stats(),
            "relay": relay_stats(parts.transmitter.relay),
            "mode": parts.governor.mode.value,
            "phase": parts.governor.phase.value,
        }

    def write(self, final: bool = False) -> None:
        """Replaced whole; not while the card is full, but for the `final` one at a stop (a few
        kB, the flight's last word). A refused write never ends the daemon."""
        store = self.parts.store
        if store.card_is_full() and not final:
            return
        tmp = self.path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(self.snapshot(), indent=2))
            os.replace(tmp, self.path)
        except OSError as e:
            store.card_refused(self.path.name, e)
            try:
                tmp.unlink(missing_ok=True)  # a half-written copy only takes space
            except OSError:
                pass


def relay_stats(relay) -> dict:
    """What the relay heard, sent on and refused (docs/network.md); {} when this payload relays nothing."""
    if relay is None:
        return {}
    s = relay.stats
    return {"heard": s.heard, "queued": s.queued, "forwarded": s.forwarded, "airtime_s": round(s.airtime_s, 2),
            "waiting": relay.waiting(), "refused": dict(s.refused), "by_origin": dict(s.by_origin),
            "musings_heard": s.musings_heard}
