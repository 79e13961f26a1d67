"""What every producer of one boot shares (`Flight`), the parts a payload may fly without
(`Fitted`), and the shape the daemon and the statistics file see each producer in (`Producer`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Protocol

from ..clock import Clock
from ..link.outbound import Outbound
from ..policy.governor import Governor
from .devices import DeviceWatch

if TYPE_CHECKING:  # the parts' types only: nothing here opens a camera or a pin
    from ..parts.camera import Camera
    from ..parts.outputs import BatteryHeater, StatusLed
    from ..parts.pi_health import PiHealth


# What a generation costs on the board being rehearsed, in flight seconds, from the model's,
# the prompt's bytes and the tokens made: a hardware that models compute time (the bench) gives
# one; in flight the generation has already taken its time.
PriceGeneration = Callable[[int, int, int], float]


class Producer(Protocol):
    """A loop's work: `once()` is one run (payload/assembly.py's loops table schedules it),
    `stats()` its counts for stats.json's "daemon" table (payload/flight_stats.py), named so
    that no two producers share a name."""

    def once(self) -> object: ...

    def stats(self) -> dict[str, object]: ...


class Idle:
    """A producer that does not fly this boot (no camera, no persona): it makes nothing, and its
    counts stand at zero in the statistics, so the file has the same fields on every payload."""

    def __init__(self, counts: type):
        self._counts = counts

    def once(self) -> None:
        return None

    def stats(self) -> dict[str, object]:
        return asdict(self._counts())


@dataclass(frozen=True)
class Fitted:
    """What a payload may fly without, and what its hardware tells of itself (payload/parts/hardware.py):
    the bench's flight seed and its price of a generation on the rehearsed board."""

    camera: Camera | None = None
    pi_health: PiHealth | None = None
    led: StatusLed | None = None
    heater: BatteryHeater | None = None
    disk_usage: Callable | None = None  # the card's free space; None: shutil.disk_usage
    seed: int | None = None  # makes sampling and the persona's questions repeatable
    price_generation: PriceGeneration | None = None


@dataclass(frozen=True)
class Flight:
    """What every producer of one boot shares: the flight's callsign, the boot's number, flight time,
    the one port records leave by, the governor, the devices' statuses and the fitted parts. Each
    producer is handed its own configuration sections beside it, never the whole file."""

    callsign: str
    boot: int
    clock: Clock
    outbound: Outbound
    governor: Governor
    devices: DeviceWatch
    fitted: Fitted
