"""The bench's simulator of the maker's CO2 sensor (tests/fake_sensor/driver.py), in a file of
its own as a maker's would be: named in `[sim] simulators`, it registers with the bench's I2C
sensors (sim/world/i2c_sensors.py), which put it on the bus its `[devices.fake_co2]` table says."""

from __future__ import annotations

from sim.world.i2c_bus import ChipFaults
from sim.world.i2c_sensors import I2cSimulator, WorldNow, register_i2c_simulator
from tests.fake_sensor.driver import CHIP_ID, REG_ID, REG_PPM, REG_START


class FakeCo2Chip(ChipFaults):
    """Its registers: the id, a start register, the last measurement (big-endian ppm); the faults
    every simulated sensor takes (stuck, impossible: 0xFFFF ppm)."""

    def __init__(self, ppm: float = 420.0, seed: int = 1):
        self.ppm, self.seed = ppm, seed
        self.measurements = 0
        self.regs = bytearray(256)
        self.regs[REG_ID] = CHIP_ID

    def read_bytes(self, register: int, length: int) -> bytes:
        return bytes(self.regs[(register + i) & 0xFF] for i in range(length))

    def write_bytes(self, register: int, data: bytes) -> None:
        if register == REG_START and data[:1] == b"\x01" and not self.stuck:
            self.measurements += 1
            value = 0xFFFF if self.impossible else round(self.ppm) + self.measurements % 3  # a little noise
            self.regs[REG_PPM:REG_PPM + 2] = value.to_bytes(2, "big")


def sense(chip: FakeCo2Chip, table, world: WorldNow) -> None:
    """The same share of the air at any height: what it measures is in parts per million of it."""
    chip.ppm = 420.0 + world.flight.alt_m / 1000.0


register_i2c_simulator("fake_co2", I2cSimulator(chip=lambda table, seed: FakeCo2Chip(seed=seed), sense=sense))
