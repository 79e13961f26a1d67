"""stats.json: each part's statistics, the link's, the queue's depth and the energy spent, as
one file replaced whole every flight minute and at the stop. The bench's flight report and
`make bench` read it (sim/bench/report/flight_report.py).

Every part is read in one shape, a `stats()` answering its fields: the producers' counts
(payload/producers: `Producer.stats`, zeros for one that does not fly) make the "daemon" table;
the other parts (the link, the queue, the persona worker, the gate, reach, the governor) each
give their top-level fields through a `Section` here."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from .clock import Clock
from .components import Components
from .config import PayloadConfig
from .producers import Idle, MusingStats, PictureStats, Producer


@dataclass(frozen=True)
class Section:
    """A part that is no producer, read in the producers' shape: `stats()` its fields in stats.json."""

    stats: Callable[[], dict]


class FlightStats:
    def __init__(self, path: Path, cfg: PayloadConfig, clock: Clock, parts: Components):
        self.path, self.cfg, self.clock, self.parts = Path(path), cfg, clock, parts
        # Not flying (no camera, no persona): zeros, so every payload's file has the same fields.
        self.producers: tuple[Producer | Section, ...] = (
            parts.beacon, parts.health, Section(lambda: asdict(parts.commands.stats)),
            parts.pictures or Idle(PictureStats), parts.musings or Idle(MusingStats))
        tx, worker, gate, governor = parts.transmitter, parts.worker, parts.gate, parts.flight.governor
        self.sections: tuple[Section, ...] = (
            Section(lambda: {"link": asdict(tx.stats)}),
            Section(lambda: {"queue_depth": parts.store.queue.depth(), "flight_s": self.clock.elapsed_s(),
                             "energy_wh": self.energy_wh()}),
            Section(lambda: {"persona_restarts": worker.restarts if worker else 0,
                             "uplink_rejected": dict(gate.rejections) if gate else {},
                             "loss_estimate": round(tx.loss_estimate(), 4), "reach": parts.reach.stats(),
                             "relay": relay_stats(tx.relay)}),
            Section(lambda: {"mode": governor.mode.value, "phase": governor.phase.value}),
        )

    def energy_wh(self) -> float:
        p, parts = self.cfg, self.parts
        joules = (
            p.power.base_w * self.clock.elapsed_s()
            + p.persona.joules_per_token * (parts.musings.counts.tokens if parts.musings is not None else 0)
            + p.radio.tx_power_w * parts.transmitter.stats.airtime_s
        )
        return joules / 3600.0

    def counts(self) -> dict:
        """The producers' statistics, each part's own, as one table (stats.json's "daemon")."""
        merged = {"boot": self.parts.flight.boot}
        for producer in self.producers:
            merged.update(producer.stats())
        return merged

    def snapshot(self) -> dict:
        out = {"daemon": self.counts()}
        for section in self.sections:
            out.update(section.stats())
        return out

    def write(self, final: bool = False) -> None:
        """Replaced whole; not while the card is full, but for the `final` one at a stop (a few
        kB, the flight's last word). A refused write never ends the daemon."""
        store = self.parts.store
        if store.database.card.full and not final:
            return
        tmp = self.path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(self.snapshot(), indent=2))
            os.replace(tmp, self.path)
        except OSError as e:
            store.fallback.card_refused(self.path.name, e)
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
            "musings_heard": s.musings_heard, "echoed": s.echoed}
