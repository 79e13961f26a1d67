"""Each device's last status, shared by the producers that read devices (the beacon its
sensors, the pictures the camera): a change is an event on air at once, so the ground sees a
lost GPS within a beacon, not at the next health record."""

from __future__ import annotations

from stratoecho import wire
from stratoecho.wire.events import event

from ..link.outbound import Outbound


class DeviceWatch:
    def __init__(self, outbound: Outbound):
        self.outbound = outbound
        self._last: dict[str, str] = {}

    def note(self, status: dict[str, str]) -> None:
        """Devices' statuses as just read; an event for each that changed (not a first "ok", not "starting")."""
        for device, now in status.items():
            before = self._last.get(device)
            if now != before and not (before is None and now == "ok") and now != "starting":
                self.outbound.event(event("device", device=device, before=before or "unknown", after=now))
        self._last.update(status)

    def faulted(self) -> bool:
        """Any device neither ok nor starting (the LED's fault pattern)."""
        return any(v not in ("ok", "starting") for v in self._last.values())

    def health_fields(self) -> dict[str, str]:
        """The last status of each device, as the health record carries it: gps, bme280 ... under keys
        of their own, a sensor a maker added in `devices` (stratoecho/wire/content.py)."""
        return wire.device_status_fields(self._last)
