"""Named rehearsals: each a bench flight with one thing made hard, run by `sim fly --scenario NAME`.

A scenario says what the world does (the flight plan: cold air, a night launch, an orbit)
and what goes wrong (faults thrown at the simulated parts, radio outages, a brown-out,
a ground station restart), all in flight time, so a seed replays it exactly.
tests/test_scenarios.py flies each one and checks what a flight engineer would check.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

from .flight import Flight, FlightPlan
from .orbit_world import OrbitFlight


@dataclass(frozen=True)
class Balloon:
    """Another payload flying in the same world, on the same channel: its own callsign, launch
    site and winds (`seed_offset` added to the flight's seed), its own processes under `sim fly`."""

    callsign: str
    plan: dict = field(default_factory=dict)  # FlightPlan overrides on top of the scenario's: where it launches
    seed_offset: int = 1000  # its flight seed is the flight's seed plus this: winds, burst, keys of its own


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    minutes: float | None = None  # None: launch to landing, plus the recovery beacon
    plan: dict = field(default_factory=dict)  # sim.world.flight.FlightPlan overrides
    profile: str = "balloon"  # or "orbit": a low Earth orbit with short passes
    faults: tuple[str, ...] = ()  # sim.world.hardware.Fault specs
    outages: tuple[tuple[float, float], ...] = ()  # flight seconds when nothing passes either way
    reboots: tuple[float, ...] = ()  # flight seconds at which the payload loses power (SIGKILL)
    reboot_s: float = 60.0  # flight seconds it stays down
    ground_restarts: tuple[float, ...] = ()  # flight seconds at which the ground station is restarted
    ground_down_s: float = 120.0
    config: str | None = None  # the payload configuration it flies unless --config names another (from the repository)
    service_restarts: tuple[float, ...] = ()  # flight seconds of a `systemctl restart` (SIGTERM, stop timeout)
    channel_args: tuple[str, ...] = ()  # more `sim channel` flags (a satellite's stronger link)
    callsign: str | None = None  # the first payload's callsign when others fly beside it (its config's otherwise)
    balloons: tuple[Balloon, ...] = ()  # more payloads in the same world: balloon 1, 2 ... (docs/network.md)
    listen_only: tuple[str, ...] = ()  # balloons that hear the others but send nothing on (no ground in reach)


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("nominal", "a summer morning flight: launch, burst near 32 km, parachute, landing"),
    Scenario("cold-soak", "a winter flight in air 25 degC colder than standard: the battery sags, the heater "
             "works, the payload steps down its mode ladder and back", minutes=150,
             plan={"cold_offset_c": -25.0, "launch_utc": datetime(2026, 1, 15, 9, 0, tzinfo=timezone.utc)}),
    Scenario("blackout", "a 30-minute radio blackout during the ascent: the queue holds everything, "
             "delivery resumes after", minutes=120, outages=((1800.0, 3600.0),)),
    Scenario("gps-loss", "the GPS goes silent for 20 minutes, then talks garbage for 5: telemetry keeps "
             "flowing with the last position and the fault is seen at the ground", minutes=90,
             faults=("gps:silence@20m-40m", "gps:garbage@50m-55m")),
    Scenario("sensor-faults", "an I2C sensor shakes loose, the battery monitor sticks, the camera hangs",
             minutes=90, faults=("bme280:unplug@15m-35m", "ina219:stick@40m-50m", "camera:hang@20m-60m")),
    Scenario("brownout", "the payload loses power mid-flight and reboots: no durable record is lost, "
             "the beacon comes back", minutes=90, reboots=(2400.0,)),
    Scenario("ground-restart", "the ground station is restarted mid-flight: it resumes from its database "
             "and asks for what it missed", minutes=90, ground_restarts=(2400.0,)),
    Scenario("service-restart", "the payload's service is restarted twice mid-flight, once while it muses: "
             "it stops inside the unit's TimeoutStopSec and the beacon comes back", minutes=60,
             service_restarts=(1500.0, 2460.0)),
    Scenario("night", "a launch two hours before sunrise: no sun on the panel, a colder box", minutes=150,
             plan={"launch_utc": datetime(2026, 6, 21, 1, 0, tzinfo=timezone.utc)}),
    # 1 W into a ground Yagi of ~6 dBi (36 dBm EIRP-equivalent): what closes a 500 km LoRa link.
    # The ground station sits in a valley: hills hide everything below 6 degrees of elevation. The near
    # balloon climbs above it within minutes; the far one, 150 km east, stays under 6 degrees for the
    # first hours (about 3 degrees at 9 km), while the two balloons see each other from a few hundred
    # metres up (4.12 km x (sqrt h1 + sqrt h2) of radio horizon).
    Scenario("two-balloons", "two payloads 150 km apart on one channel: the ground hears only the nearer, "
             "which relays the farther one's telemetry and musings, and each hears what the other says",
             minutes=60, callsign="NEAR1", channel_args=("--station", "home:52.7:-2.75:10:6"),
             balloons=(Balloon("FAR1", {"launch_lat": 52.70, "launch_lon": -0.53}),),
             # FAR1 hears no ground: relaying NEAR1, whom the ground hears anyway, would spend its air for nothing.
             listen_only=("FAR1",),
             # Planned for a network: two turns of a 30 s period in mode 7 (docs/network.md, "A network's air").
             config="config/payload.network.toml"),
    Scenario("orbit", "a low Earth orbit instead of a balloon: contact only during passes of a few minutes "
             "over the ground station, eclipses every orbit", minutes=24 * 60, profile="orbit",
             channel_args=("--tx-dbm", "36")),
)}


def scenario(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ValueError(f"no scenario {name!r}; one of: {', '.join(SCENARIOS)}") from None


def balloon_seed(name: str, seed: int, balloon: int = 0) -> int:
    """The flight seed of balloon `balloon` of scenario `name` when the flight's seed is `seed`."""
    s = scenario(name)
    if not 0 <= balloon <= len(s.balloons):
        raise ValueError(f"scenario {name!r} flies {len(s.balloons) + 1} balloon(s): no balloon {balloon}")
    return seed if balloon == 0 else seed + s.balloons[balloon - 1].seed_offset


def flight_for(name: str, seed: int, balloon: int = 0):
    """The world of scenario `name`: a sim.world.flight.Flight (or the orbit's stand-in) for `seed`.
    `balloon` > 0: another payload of the scenario (`Scenario.balloons`), `seed` being its own
    (`balloon_seed`), launched where the scenario says."""
    s = scenario(name)
    if s.profile == "orbit":
        return OrbitFlight(seed=seed, **s.plan)
    if not 0 <= balloon <= len(s.balloons):
        raise ValueError(f"scenario {name!r} flies {len(s.balloons) + 1} balloon(s): no balloon {balloon}")
    plan = s.plan if balloon == 0 else {**s.plan, **s.balloons[balloon - 1].plan}
    return Flight(FlightPlan(seed=seed, **plan))
