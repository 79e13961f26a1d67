"""A sensor of a maker's own, in one file: its driver and the profile it registers
(payload/parts/device_profiles.py). tests/test_sensor_registry.py names this module in
`[devices] drivers` and the payload reads it, reports its status and flies it on the bench,
where tests/fake_sensor/bench.py simulates it. Nothing else in the tree knows it.

The chip: an I2C CO2 sensor answering 0xC0 at its id register (0x0F); a write of 0x01 to 0x10
starts a measurement, whose result is at 0x00..0x01, big-endian, in ppm.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from pydantic import Field

from payload.parts.device_profiles import DeviceProfile, I2cDeviceSection, register_device
from payload.parts.i2c_sensors import ErrorCounters, FaultTracker
from stratoecho.backoff import Backoff

CHIP_ID, REG_ID, REG_PPM, REG_START = 0xC0, 0x0F, 0x00, 0x10
PPM_RANGE = (0.0, 40_000.0)  # the datasheet's: outside it the reading is impossible


@dataclass(frozen=True)
class Co2Reading:
    status: str
    ppm: float | None
    counters: ErrorCounters
    error: str = ""


class FakeCo2:
    def __init__(self, bus, address: int, *, offset_ppm: float = 0.0, clock=time.monotonic):
        self.bus, self.address, self.offset_ppm = bus, address, offset_ppm
        self._faults = FaultTracker(Backoff(), clock, stuck_after=5)

    def _init(self) -> None:
        chip_id = self.bus.read_byte_data(self.address, REG_ID)
        if chip_id != CHIP_ID:
            raise LookupError(f"chip id 0x{chip_id:02X} at 0x{self.address:02X}, expected 0x{CHIP_ID:02X}")

    def _reading(self, status: str, ppm: float | None = None, error: str = "") -> Co2Reading:
        return Co2Reading(status, ppm, ErrorCounters(**vars(self._faults.counters)), error)

    def read(self) -> Co2Reading:
        f = self._faults
        if (not_ready := f.ready(self._init, (OSError, LookupError))) is not None:
            return self._reading(not_ready[0], error=not_ready[1])
        try:
            self.bus.write_byte_data(self.address, REG_START, 0x01)
            msb, lsb = self.bus.read_i2c_block_data(self.address, REG_PPM, 2)
        except OSError as exc:
            f.fault("i2c_error")
            return self._reading("i2c_error", error=str(exc))
        ppm = (msb << 8 | lsb) + self.offset_ppm
        if not PPM_RANGE[0] <= ppm <= PPM_RANGE[1]:
            f.fault("impossible")
            return self._reading("impossible", ppm, f"{ppm} ppm")
        if f.is_stuck((msb, lsb)):
            f.fault("stuck")
            return self._reading("stuck", ppm, "unchanged")
        f.ok()
        return self._reading("ok", ppm)


class FakeCo2Section(I2cDeviceSection):
    address: int = Field(0x61, ge=0x03, le=0x77)
    offset_ppm: float = Field(0.0, description="calibration offset added to each reading")


PROFILE = register_device(DeviceProfile(
    name="fake_co2", section=FakeCo2Section,
    open=lambda table, bus, clock: FakeCo2(bus, table.address, offset_ppm=table.offset_ppm, clock=clock),
    values=lambda r: {"co2_ppm": r.ppm}, gives=("co2_ppm",), kept=("co2_ppm",)))
