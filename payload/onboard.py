"""One boot of the payload: the daemon over payload/assembly.py's `loops` and the statistics.
The daemon only schedules; what is the payload's — the persona worker, the status LED, the
banner, stats.json, a persona that will not load, what is closed at the stop — is here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import structlog

from stratoecho import __version__, wire
from stratoecho.bundle import Bundle
from stratoecho.wire.events import Event

from .components import Components
from .config import PayloadConfig
from .daemon import Daemon
from .flight_stats import FlightStats
from .loop import Closing, Loop
from .watchdog import Liveness, boot_banner

STATS_EVERY_S = 60.0  # flight seconds between saves of the statistics: a power cut loses at most a minute of counts


class Onboard:
    """What one boot flies: `parts`, and the `daemon` running `loops(parts)` and the statistics."""

    def __init__(self, cfg: PayloadConfig, bundle: Bundle | None, data_dir: Path, parts: Components,
                 loops: Callable[[PayloadConfig, Components], Sequence[Loop]], liveness: Liveness | None = None):
        self.cfg, self.bundle, self.data_dir, self.parts = cfg, bundle, Path(data_dir), parts
        self.clock = parts.flight.clock
        self.liveness = liveness or Liveness(self.clock.liveness_time)
        self._loops = loops
        self.daemon = self._daemon()
        parts.transmitter.on_stale = self._on_stale
        structlog.contextvars.bind_contextvars(boot=parts.flight.boot, callsign=cfg.callsign)

    def _daemon(self) -> Daemon:
        """A daemon over the parts as they are now (a persona that will not load has left them)."""
        self.flight_stats = FlightStats(self.data_dir / "stats.json", self.cfg, self.clock, self.parts)
        stats = Loop("stats", self.flight_stats.write, lambda: STATS_EVERY_S, STATS_EVERY_S)
        return Daemon(self.clock, [*self._loops(self.cfg, self.parts), stats],
                      Closing(self.parts.stopping, self.parts.stop, self._closes()), self.liveness)

    def _closes(self) -> list[Callable[[], object]]:
        """At the stop, once the loops have ended: the model, the camera, the heater (never left on
        behind a stopped payload), the LED, the governor's clean mark, the memory, the last
        statistics, the queue and the radio."""
        p, fitted = self.parts, self.parts.flight.fitted
        closes: list[Callable[[], object]] = [part.close for part in (p.worker, fitted.camera, fitted.heater)
                                              if part is not None]
        if fitted.led is not None:
            closes.append(lambda: fitted.led.show("off"))
        return [*closes, p.flight.governor.close, p.memory.close, lambda: self.flight_stats.write(final=True),
                p.store.close, p.radio.close]

    def _on_stale(self, q) -> None:
        """A musing went stale before any of it aired (the radio expired it): make another now."""
        if q.kind is wire.Kind.MUSING or not self.parts.transmitter.auth:
            self.daemon.remake_stale()

    def fly_without_persona(self) -> None:
        """A model that will not load: the loops start without the think loop."""
        if self.parts.worker is not None:
            self.parts.worker.close()
        self.parts = replace(self.parts, worker=None, musings=None)
        self.daemon = self._daemon()

    def start(self, launch: bool = False) -> None:
        """Load the model, say the banner, start the loops; with `launch`, flight time starts now
        (the bench world's launch: loading the model is not part of the flight)."""
        if self.parts.worker is not None:
            self.parts.worker.start()
        if launch:
            self.clock.restart()
            self.parts.sensors.restart()
        if self.parts.flight.fitted.led is not None:
            self.parts.flight.fitted.led.show("booting")
        self.parts.flight.outbound.event(self.banner())
        self.daemon.start()

    def banner(self) -> Event:
        """The first event of a boot: what flies, how it woke, what room it has (docs/payload.md)."""
        g, m = self.parts.flight.governor, self.bundle.manifest if self.bundle else None
        sha = next((f.sha256 for f in m.files if f.path == m.model.file), None) if m else None
        try:
            free_mb = self.parts.flight.fitted.disk_usage(self.data_dir).free / 2**20
        except OSError:
            free_mb = None
        return boot_banner(__version__, (m.persona.name, sha[:8] if sha else None) if m else None, free_mb,
                           self.parts.flight.boot, g.mode.value, unplanned=g.unplanned_reboot, phase=g.phase.value,
                           callsign=self.cfg.callsign)
