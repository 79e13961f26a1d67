"""The bench as the payload's hardware: the ``sim`` rig of the ``stratoecho.hardware`` entry
points (payload/parts/hardware.py). Everything the bench adds to `python -m payload run` is here —
its options, its ``[sim]`` settings, the world it opens — so the flight code names none of it.

Light on purpose: the payload's option parser loads this module to learn the options, and
only `open` brings in the simulated world (sim/world/hardware.py).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pydantic import ValidationError

from stratoecho.config import describe_validation_error
from stratoecho.lora_chips.profiles import is_chip

from .settings import NAME, BenchSettings

__all__ = ["NAME", "RIG", "BenchRig", "BenchSettings"]


class BenchRig:
    """`payload.parts.hardware.Rig` for the bench world."""

    name = NAME

    def add_arguments(self, run: argparse.ArgumentParser, source) -> None:
        source.add_argument("--sim", dest="hardware", action="store_const", const=self.name,
                            help="bench world: simulated sensors and flight, no hardware")
        run.add_argument("--sim-config", dest="base_config", metavar="FILE",
                         help="with --sim: a configuration to start from (default: built-in bench defaults)")
        run.add_argument("--speedup", type=float,
                         help="with --sim: flight seconds per wall second of a free-running clock (default 60); "
                              "under `sim fly` the bench's clock (STRATOECHO_BENCH_CLOCK) keeps time instead")
        run.add_argument("--seed", type=int, help="with --sim: flight seed (same seed, same flight)")
        run.add_argument("--fault", action="append", default=[], metavar="DEVICE:ACTION@START[-END]",
                         help="with --sim: throw a fault at a simulated part in flight time, e.g. gps:silence@40m-55m, "
                              "bme280:unplug@1h (any I2C sensor fitted: unplug, stick, impossible), camera:hang@30m-45m "
                              "(repeatable; docs/bench.md lists them)")
        run.add_argument("--scenario", metavar="NAME",
                         help="with --sim: the bench world's rehearsal: nominal (default), cold-soak, night, orbit ... "
                              "(python -m sim scenarios)")
        run.add_argument("--balloon", type=int, metavar="N",
                         help="with --sim: fly balloon N of a scenario that flies several (two-balloons: 0 near, 1 far; "
                              "--seed is then that balloon's own)")
        run.add_argument("--world-clock", metavar="FILE",
                         help="with --sim: the flight's launch time, written at launch and rejoined after a reboot "
                              "(sim fly passes it)")

    def configure(self, cfg, table: dict, args: argparse.Namespace) -> BenchSettings:
        try:
            settings = BenchSettings.model_validate(table)
        except ValidationError as e:
            raise ValueError(describe_validation_error(f"[{self.name}]", e)) from None
        for key in ("speedup", "seed", "scenario", "balloon", "world_clock"):  # an option given overrides the table
            if (value := getattr(args, key, None)) is not None:
                setattr(settings, key, value)
        settings.faults = settings.faults + list(getattr(args, "fault", None) or [])
        if getattr(args, "udp", None) and is_chip(cfg.radio.kind):
            settings.air, args.udp = args.udp, None  # the bench flies the chip's driver; its air is this address
        return settings

    def open(self, cfg, settings: BenchSettings, data_dir: Path):
        from .hardware import open_bench  # the simulated world: only when a payload flies on it

        return open_bench(cfg, data_dir, settings)


RIG = BenchRig()
