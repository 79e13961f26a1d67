"""What a bench flight is asked to be (`sim fly`'s options), and how it fails."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ...channel.loss import LossSpec
from ..run.supervisor import PAYLOAD_UNIT
from ..run.timekeeper import TURN_TIMEOUT_S

DEFAULT_PERSONA = Path("build/persona")


class FlyError(Exception):
    """A bench flight that could not start or finish; the message names the process and its log."""


@dataclass
class FlyOptions:
    out: Path
    persona: Path | None = DEFAULT_PERSONA
    minutes: float | None = None
    speedup: float | None = 60.0  # None: as fast as the machine allows (lockstep); 1: real time
    loss: LossSpec = LossSpec()
    seed: int = 1
    overwrite: bool = False
    config: Path | None = None
    quiet: bool = False
    uplink: bool = True  # ground asks for lost fragments over the reverse path
    scenario: str = "nominal"  # sim/world/scenarios.py
    faults: list[str] = field(default_factory=list)  # more faults, beside the scenario's
    path_loss: bool = True  # distance and horizon on top of --loss (off: exactly --loss)
    api_proxy: bool = True  # the ground answers the persona's questions from real APIs (offline: says so)
    relay: bool = True  # in a scenario of several balloons, each relays for the others (off: none does)
    unit: Path | None = PAYLOAD_UNIT  # the systemd unit whose contract the payload flies under; None: unsupervised
    # Wall seconds one process may hold the bench clock's turn before the flight calls it hung: more
    # where every instruction is emulated (pi-check's arm64 root under qemu-user runs ~10x slower).
    hang_after_s: float = TURN_TIMEOUT_S
