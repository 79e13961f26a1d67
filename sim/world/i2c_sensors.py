"""The bench's I2C sensors: a simulator for each sensor the payload registers
(payload/parts/device_profiles.py), by its name, set on the bus and at the address its
``[devices.NAME]`` table gives, so the payload's own driver talks to it register by register.

A simulator says what answers on the bus (a register-level chip, built from the sensor's table
and a seed), how that chip senses the bench world each step (`WorldNow`: the flight's outside
air and altitude, the battery and the box), and which faults it takes (`--fault NAME:unplug|stick|impossible@...`).
Each registers with `register_i2c_simulator` when its module is imported, as a LoRa chip's
simulator does (sim/chips/spi_bus.py): this module registers the built-in ones; a maker's module
is named in the bench's ``[sim] simulators`` and imported by `load_simulators`.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from payload.parts.device_profiles import device_names

from .flight import WorldState
from .i2c_bus import Bme280Device, FakeI2cBus, I2cDevice, Ina219Device
from .power import PowerState

SENSOR_FAULTS = ("unplug", "stick", "impossible")


@dataclass(frozen=True)
class WorldNow:
    """The bench world at one step, as its sensors sense it."""

    flight: WorldState  # where the balloon is and the air outside it
    power: PowerState  # the battery (its volts, current and temperature) and the box

    @property
    def humidity_pct(self) -> float:
        """Relative humidity outside: moist near the ground, bone dry in the stratosphere."""
        return max(2.0, 70.0 * math.exp(-self.flight.alt_m / 4000.0))


class SimulatedChip(I2cDevice, Protocol):
    """A register-level chip with the fault switches its simulator's `faults` name (unplug is the bus's)."""

    def stick(self) -> None: ...  # the measurement stops changing
    def unstick(self) -> None: ...
    def set_impossible(self, on: bool = True) -> None: ...  # values no world gives


@dataclass(frozen=True)
class I2cSimulator:
    """How the bench simulates one registered sensor."""

    chip: Callable[[Any, int], SimulatedChip]  # (its [devices.NAME] table, a seed) -> the chip on the bus
    sense: Callable[[SimulatedChip, Any, WorldNow], None]  # (the chip, its table, the world now): each step
    faults: tuple[str, ...] = SENSOR_FAULTS  # of SENSOR_FAULTS, those it takes


# The simulators by the name of the sensor they simulate, in the order they were registered.
SIMULATORS: dict[str, I2cSimulator] = {}


def register_i2c_simulator(name: str, simulator: I2cSimulator) -> I2cSimulator:
    """The bench simulates the sensor registered as `name` with `simulator`."""
    unknown = set(simulator.faults) - set(SENSOR_FAULTS)
    if unknown:
        raise ValueError(f"simulated {name!r}: faults are {', '.join(SENSOR_FAULTS)}, not {', '.join(sorted(unknown))}")
    SIMULATORS[name] = simulator
    return simulator


def i2c_simulator(name: str) -> I2cSimulator:
    """The simulator of `name`; a ValueError naming the sensors the bench simulates if it has none."""
    try:
        return SIMULATORS[name]
    except KeyError:
        raise ValueError(f"the bench has no simulated {name!r} sensor: it simulates {', '.join(sorted(SIMULATORS))} (a "
                         "maker's simulator module goes in [sim] simulators)") from None


def load_simulators(modules: Iterable[str]) -> None:
    """Import `modules` (dotted names on the Python path), each registering its simulators."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name is None or not (module == e.name or module.startswith(e.name + ".")):
                raise
            raise ValueError(f"[sim] simulators: no module {module!r} on the Python path") from None


def sensor_faults(name: str) -> tuple[str, ...] | None:
    """The faults the bench can throw at the sensor `name`; None when it simulates none of that name."""
    simulator = SIMULATORS.get(name)
    return None if simulator is None else simulator.faults


class BenchI2c:
    """The payload's I2C buses on the bench: each sensor the configuration fits, simulated at its bus
    and address. Bus 1, the Pi's header bus, is there even with nothing on it."""

    def __init__(self, devices, seed: int):
        self.buses: dict[int, FakeI2cBus] = {1: FakeI2cBus()}
        self.placed: dict[str, tuple[Any, SimulatedChip, I2cSimulator]] = {}
        order = device_names()
        for name, table in devices.sensors().items():
            simulator = i2c_simulator(name)
            chip = simulator.chip(table, seed + order.index(name))  # a seed of its own, as registered
            self.buses.setdefault(table.bus, FakeI2cBus()).attach(table.address, chip)
            self.placed[name] = (table, chip, simulator)

    def open(self, number: int) -> FakeI2cBus:
        """The payload's bus opener: FileNotFoundError for a bus no sensor is on, as on a Pi."""
        if number not in self.buses:
            raise FileNotFoundError(f"/dev/i2c-{number}")
        return self.buses[number]

    def sense(self, world: WorldNow) -> None:
        for table, chip, simulator in self.placed.values():
            simulator.sense(chip, table, world)

    def fault(self, name: str, action: str, begin: bool) -> bool:
        """Throw `action` at the sensor `name` (or take it back); False when the configuration fits none."""
        if name not in self.placed:
            return False
        table, chip, _ = self.placed[name]
        bus = self.buses[table.bus]
        if action == "unplug":
            bus.unplug(table.address) if begin else bus.replug(table.address)
        elif action == "stick":
            chip.stick() if begin else chip.unstick()
        else:
            chip.set_impossible(begin)
        return True

    def wedge(self, block: Callable[[], None]) -> None:
        for bus in self.buses.values():
            bus.wedge(block)

    def release(self) -> None:
        for bus in self.buses.values():
            bus.release()


# --- the built-in sensors (payload/parts/i2c_sensors.py) ---------------------------------

def _outside_air(chip: Bme280Device, table, world: WorldNow) -> None:
    s = world.flight
    chip.set(temperature_c=s.temp_c, pressure_hpa=s.pressure_hpa, humidity_pct=world.humidity_pct)


def _battery(chip: Bme280Device, table, world: WorldNow) -> None:
    chip.set(temperature_c=world.power.battery_temp_c, pressure_hpa=world.flight.pressure_hpa, humidity_pct=20.0)


def _battery_lead(chip: Ina219Device, table, world: WorldNow) -> None:
    st = world.power
    chip.set(bus_v=st.battery_v, shunt_mv=st.current_a * table.shunt_ohms * 1000.0)


register_i2c_simulator("bme280", I2cSimulator(chip=lambda table, seed: Bme280Device(seed=seed), sense=_outside_air))
register_i2c_simulator("bme280_box", I2cSimulator(chip=lambda table, seed: Bme280Device(seed=seed), sense=_battery))
register_i2c_simulator("ina219", I2cSimulator(chip=lambda table, seed: Ina219Device(seed=seed), sense=_battery_lead))

