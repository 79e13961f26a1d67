"""The rigs that can stand in for the Pi's parts, by name: ``stratoecho.hardware`` entry
points (pyproject.toml), so the flight code finds the bench (``sim``) without importing it.
Light on purpose: the configuration checks `sensors` against these names, and `payload run`
asks each rig for its options, without opening anything (payload/parts/hardware.py opens them)."""

from __future__ import annotations

import argparse
from importlib.metadata import entry_points
from pathlib import Path
from typing import Protocol

ENTRY_POINTS = "stratoecho.hardware"
PI = "hardware"  # `sensors` naming the Pi's own parts


class HardwareError(RuntimeError):
    """The hardware the configuration names cannot be found or opened."""


class Rig(Protocol):
    """A stand-in for the Pi, registered as a ``stratoecho.hardware`` entry point under `name`."""

    name: str

    def add_arguments(self, run: argparse.ArgumentParser, source) -> None:
        """Its options on `payload run`; into `source` (with --config) the flag that selects it,
        storing its name in `args.hardware`, and optionally `args.base_config` (a file to start from)."""

    def configure(self, cfg, table: dict, args: argparse.Namespace) -> object:
        """Its settings, from its table in the configuration and its options (ValueError names
        what is wrong). A rig that simulates the radio chip itself takes `args.udp` as the chip's
        air and sets it to None, so the payload does not put a UDP radio in the chip's place."""

    def open(self, cfg, settings: object, data_dir: Path):
        """Its `payload.parts.hardware.Hardware` for a payload keeping its state in `data_dir`."""


def rig_names() -> list[str]:
    """The rigs installed (their names only: nothing is imported)."""
    return sorted(ep.name for ep in entry_points(group=ENTRY_POINTS))


def load_rig(name: str) -> Rig:
    """The rig registered as `name`; HardwareError when none is."""
    found = [ep for ep in entry_points(group=ENTRY_POINTS) if ep.name == name]
    if not found:
        raise HardwareError(f"no {ENTRY_POINTS} entry point named {name!r} (installed: {', '.join(rig_names()) or 'none'};"
                            " pip install -e . in the project registers the bench's)")
    return found[0].load()


