"""The bench's ``[sim]`` settings (sim/world/rig.py reads them from the configuration and the
options of `payload run --sim`; sim/world/hardware.py flies them)."""

from __future__ import annotations

from pydantic import Field

from stratoecho.config import Section

NAME = "sim"  # the bench's rig (sim/world/rig.py): `sensors = "sim"`, its `[sim]` table, `payload run --sim`
BENCH_BOARD = "pi-zero-2w"  # the board the bench rehearses when [persona] board names none


class BenchSettings(Section):
    """The ``[sim]`` table: which flight the bench world flies, and how fast."""

    speedup: float = Field(60.0, gt=0, description="flight seconds per wall second (under `sim fly` the bench's "
                                                   "clock keeps time instead)")
    scenario: str = Field("nominal", description="the bench world's rehearsal (sim/world/scenarios.py): nominal, cold-soak, "
                                                 "night, orbit ...")
    world_clock: str | None = Field(
        None, description="file holding the flight's launch time, shared with the channel; a rebooted payload rejoins it")
    faults: list[str] = Field(default_factory=list,
                              description="faults thrown at the simulated parts: DEVICE:ACTION@START[-END], e.g. "
                                          "gps:silence@40m-55m")
    seed: int = 1
    balloon: int = Field(0, ge=0, description="which of the scenario's balloons this payload flies (0: the first; "
                                              "a scenario such as two-balloons flies more, each with its own seed)")
    minutes: float | None = Field(None, gt=0, description="flight minutes to run; default the whole flight")
    simulators: list[str] = Field(
        default_factory=list, description="modules simulating sensors of a maker's own (each registers its "
        "simulator: sim/world/i2c_sensors.py), imported before the world is built, e.g. [\"my_co2.bench\"]")
    air: str | None = Field(None, description="HOST:PORT the simulated radio chip's antenna sends to and hears from "
                                              "(the bench channel); set by --udp when the radio is a chip on SPI")
