"""What the daemon schedules, as payload/assembly.py builds it: the parts it senses and drives
and the components of one boot. A test may hand the daemon others."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .link.outbound import Outbound
from .link.transmitter import Transmitter
from .parts.radio import Radio
from .parts.sensors import Sensors
from .persona.memory import Memory
from .persona.reach import Reach
from .persona.worker import PersonaWorker
from .policy.governor import Governor
from .producers import Beacon, Health, Musings, Pictures
from .store import Store
from .uplink.gate import CommandGate
from .uplink.handler import CommandHandler

if TYPE_CHECKING:  # the parts' types only: nothing here opens a camera or a pin
    from .parts.camera import Camera
    from .parts.outputs import BatteryHeater, StatusLed


@dataclass
class Components:
    """What the daemon schedules: the parts it senses and drives, and the components of one boot
    (payload/assembly.py builds them; a test may hand in others)."""

    sensors: Sensors
    radio: Radio
    store: Store
    boot: int  # the store's number for this boot
    outbound: Outbound  # the one port records leave by
    transmitter: Transmitter
    governor: Governor
    memory: Memory
    reach: Reach
    beacon: Beacon
    health: Health
    commands: CommandHandler
    stopping: threading.Event  # set first at a stop: the producers end, the radio may drain after
    pictures: Pictures | None = None  # None: no camera
    musings: Musings | None = None  # None: no persona flies
    worker: PersonaWorker | None = None
    gate: CommandGate | None = None  # None: no uplink key, no commands
    camera: Camera | None = None
    led: StatusLed | None = None
    heater: BatteryHeater | None = None
    disk_usage: Callable = shutil.disk_usage  # the card's free space
