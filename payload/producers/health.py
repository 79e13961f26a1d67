"""Housekeeping: every `schedule.health_s`, commit what waits in the store's batch, send down
the store's and the memory's faults and the card's notices as events, and queue a health
record of the Pi, the link, the store, the devices, the power and the governor."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from stratoecho import wire
from stratoecho.wire.events import event

from ..link.transmitter import Transmitter
from ..persona.memory import Memory
from ..store import Store
from .flight import Flight

if TYPE_CHECKING:
    from ..uplink.gate import CommandGate


@dataclass
class HealthStats:
    health_queued: int = 0
    store_faults: int = 0


class Health:
    def __init__(self, flight: Flight, store: Store, memory: Memory, transmitter: Transmitter,
                 power_fields: Callable[[], dict], gate: CommandGate | None = None):
        self.store, self.memory, self.transmitter, self.governor = store, memory, transmitter, flight.governor
        self.clock, self.outbound, self.devices, self.power_fields = (flight.clock, flight.outbound, flight.devices,
                                                                      power_fields)
        self.pi_health, self.gate = flight.fitted.pi_health, gate
        self.counts = HealthStats()

    def once(self) -> None:
        self.store.fallback.maybe_flush()
        for detail in self.store.database.take_faults():
            self.counts.store_faults += 1
            self.outbound.event(event("store_fault", detail=detail))
        for detail in self.memory.take_faults():
            self.outbound.event(event("memory_fault", detail=detail))
        for notice in self.store.fallback.take_notices():  # card full / recovered, once each (docs/storage.md)
            self.outbound.event(notice)
        pi = self.pi_health.read().as_health_fields() if self.pi_health is not None else {}
        pi.pop("uptime_s", None)  # the flight's uptime, below, not the OS's
        fields = {**pi, "uptime_s": int(self.clock.elapsed_s()), "loss": round(self.transmitter.loss_estimate(), 3),
                  **self.store.health(), **self.devices.health_fields(), **self.power_fields(),
                  **self.governor.fields()}
        if self.gate is not None:
            fields["uplink_counter"] = self.gate.last_counter
        self.outbound.record(wire.Kind.HEALTH, fields)
        self.counts.health_queued += 1

    def stats(self) -> dict[str, object]:
        return asdict(self.counts)
