"""What the daemon schedules, as payload/assembly.py builds it: the parts it senses and drives
and the components of one boot. A test may hand the daemon others."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from .cadence import Cadence
from .link.transmitter import Transmitter
from .parts.radio import Radio
from .parts.sensors import Sensors
from .persona.memory import Memory
from .persona.reach import Reach
from .persona.worker import PersonaWorker
from .producers import Beacon, Flight, Health, Musings, Pictures
from .store import Store
from .uplink.gate import CommandGate
from .uplink.handler import CommandHandler


@dataclass
class Components:
    """What the daemon schedules; `flight` is what every producer shares (the boot's number, its
    outbound port, the governor, the fitted parts)."""

    flight: Flight
    cadence: Cadence
    sensors: Sensors
    radio: Radio
    store: Store
    transmitter: Transmitter
    memory: Memory
    reach: Reach
    beacon: Beacon
    health: Health
    commands: CommandHandler
    stopping: threading.Event  # set first at a stop: the producers end, the radio may drain after
    stop: threading.Event  # the stop proper, after the drain: the radio ends
    pictures: Pictures | None = None  # None: no camera
    musings: Musings | None = None  # None: no persona flies
    worker: PersonaWorker | None = None
    gate: CommandGate | None = None  # None: no uplink key, no commands
