"""The beacon: every `schedule.telemetry_s`, read the sensors, let the governor follow the
phase and mode, drive the heater and the LED, and queue a position sentence.

The beacon never waits for the persona: they run in separate threads and only meet in the
store, whose priorities put telemetry first.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import structlog

from stratoecho import wire
from stratoecho.wire.content import reading_field

from ..parts.sensors import Readings, Sensors, fresh
from ..persona.reach import Reach
from .flight import Flight

log = structlog.get_logger(__name__)


@dataclass
class BeaconStats:
    telemetry_queued: int = 0


class Beacon:
    def __init__(self, flight: Flight, sensors: Sensors, reach: Reach, telemetry_format: str):
        self.callsign, self.boot = flight.callsign, flight.boot
        self.encode = wire.TELEMETRY_ENCODERS[telemetry_format]
        self.sensors, self.clock, self.governor, self.outbound = sensors, flight.clock, flight.governor, flight.outbound
        self.reach, self.devices, self.pi_health = reach, flight.devices, flight.fitted.pi_health
        self.led, self.heater = flight.fitted.led, flight.fitted.heater
        self.counts = BeaconStats()
        self._last_readings: Readings | None = None
        self._last_sentence = (0, "")  # the last position sentence's number and time (musing sentences)
        self._led_pattern = None

    def once(self) -> Readings:
        """One beacon: the readings it was made of."""
        r = self.sensors.read()
        self.devices.note(r.status)
        cpu = self.pi_health.cpu_temp_c() if self.pi_health is not None else None
        for e in self.governor.update(r, self.clock.elapsed_s(), cpu):
            self.outbound.event(e)
        r = replace(r, phase=self.governor.phase.value)
        self._last_readings = r
        self._drive_heater(r)
        self._show_led()
        self.reach.tick()  # answers overdue become outcomes; re-asks go out
        now = fresh(r)  # a sensor that did not answer is no reading, never its last value

        def sentence(seq: int) -> bytes:
            return self.encode(
                wire.Telemetry(
                    callsign=self.callsign, seq=seq, time=r.time.strftime("%H:%M:%S"), lat=r.lat,
                    lon=r.lon, alt=int(round(r.alt_m)), sats=r.sats, temp_c=now.temp_c,
                    pressure_hpa=now.pressure_hpa, batt_mv=now.batt_mv, boot=self.boot,
                )
            )

        seq = self.outbound.sentence(sentence, created=r.time.timestamp())
        self._last_sentence = (seq, r.time.strftime("%H:%M:%S"))
        self.counts.telemetry_queued += 1
        log.debug("telemetry_queued", seq=seq, alt=round(r.alt_m), phase=r.phase)
        return r

    def stats(self) -> dict[str, object]:
        return asdict(self.counts)

    def last_readings(self) -> Readings | None:
        """The readings of the last beacon; None before the first."""
        return self._last_readings

    def last_sentence(self) -> tuple[int, str]:
        """The last position sentence's number and its time (HH:MM:SS); (0, "") before the first."""
        return self._last_sentence

    def power_fields(self) -> dict:
        """Battery, heat and heater for the health record, and what a maker's sensors measured."""
        r, fields = self._last_readings, {}
        if r is not None:
            r = fresh(r)  # the device's status field says why a value is missing
            if readings := reading_field(r.extra):
                fields["readings"] = readings
            if not math.isnan(r.box_temp_c):
                fields["box_temp_c"] = round(r.box_temp_c, 1)
            if not math.isnan(r.batt_ma):
                fields["batt_ma"] = int(round(r.batt_ma))
            if r.batt_mv:
                fields["batt_mv"] = int(r.batt_mv)
        if self.heater is not None:
            h = self.heater.status()
            fields["heater"] = f"{'on' if h.on else 'off'}:{h.reason}"
        return fields

    def _drive_heater(self, r: Readings) -> None:
        """The battery heater acts on the battery's own temperature; unknown means off (outputs.heater_decision)."""
        if self.heater is None:
            return
        temp = None if math.isnan(r.box_temp_c) else r.box_temp_c
        self.heater.update(temp, r.batt_mv or None)

    def _show_led(self) -> None:
        """The status LED says the mode (or landed, or a device fault) at a glance."""
        if self.led is None:
            return
        pattern = self.governor.led_pattern(self.devices.faulted())
        if pattern != self._led_pattern:
            self.led.show(pattern)
            self._led_pattern = pattern
