"""The other payloads of a bench flight whose scenario flies several (`Scenario.balloons`):
each its own process, callsign, seed, flight key, data folder and log, on the one channel.

Every balloon relays for the others (docs/network.md): its configuration, written here from the
flight's own (`--config`, or the bench's defaults), names them in `[relay] allow` with their
downlink keys, and gives it its own beacon slot (`schedule.beacon_slot_s`: balloon i of n keys
its position i/n of the way into each period) and turn (`schedule.turn_s`), so nothing one keys
runs into another's: a configuration that gives no turn was planned for a balloon alone, and each
balloon keeps a turn as long as its period, the shared period n times as long. A balloon
another one forwards gets an MTU that leaves room for the relay envelope in a 255-byte packet,
and sends its pictures as records rather than SSDV packets, which no envelope can hold.

Balloon 0 is the flight's payload as ever (uplink.key, payload/, payload.log), under the
scenario's callsign; balloon i ≥ 1 writes beside it under its callsign:

    payload-FAR1/  payload-FAR1.log  payload-FAR1.toml  uplink-FAR1.key  FAR1.downlink  world-FAR1.json

Keys come from each balloon's own seed (`bench_key`), so a seed flies the same network twice.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

import tomli_w

from stratoecho.wire.downlink import DEFAULT_TAG_LEN, derive_downlink_key
from stratoecho.wire.relay import overhead
from stratoecho.wire.uplink_keys import DOWNLINK, write_key_file

from ...world.scenarios import Scenario, balloon_seed
from .options import FlyError, FlyOptions

# What a fleet leaves in the output folder besides a single flight's files (prepare_out clears them).
FLEET_OUTPUTS = ("payload-*", "air-*.hex", "air-*.times", "uplink-*.key", "*.downlink", "world-*.json",
                 "ground.*.db", "ground.*.db-wal", "ground.*.db-shm")


@dataclass(frozen=True)
class Member:
    """One balloon of the flight: what its payload process is started with."""

    index: int
    callsign: str
    seed: int
    key: Path  # its flight key (the payload's --flight-key)
    downlink: Path  # its downlink key alone: the others (and the ground) check its tags with it
    config: Path  # its configuration (--sim-config)

    @property
    def name(self) -> str:
        """Its name on the bench: the process, its log and data folder ("payload" for balloon 0)."""
        return "payload" if self.index == 0 else f"payload-{self.callsign}"


def fleet(opts: FlyOptions, sc: Scenario, bench_key) -> list[Member]:
    """The balloons of `sc` with their keys and configurations written into `opts.out`; [] for a
    scenario of one balloon (the flight flies as it always has)."""
    if not sc.balloons:
        return []
    base = _base_config(opts.config)
    callsigns = [sc.callsign or base.get("callsign") or "STRATO1", *(b.callsign for b in sc.balloons)]
    if len(set(callsigns)) != len(callsigns):
        raise FlyError(f"scenario {sc.name}: two balloons share a callsign ({', '.join(callsigns)})")
    members = []
    for i, callsign in enumerate(callsigns):
        seed = balloon_seed(sc.name, opts.seed, i)
        key = opts.out / ("uplink.key" if i == 0 else f"uplink-{callsign}.key")
        flight_key = write_key_file(key, force=True, key=bench_key(seed))
        downlink = opts.out / f"{callsign}.downlink"
        write_key_file(downlink, force=True, key=derive_downlink_key(flight_key), kind=DOWNLINK)
        members.append(Member(i, callsign, seed, key, downlink, opts.out / f"payload-{callsign}.toml"))
    for m in members:
        m.config.write_text(tomli_w.dumps(_config(base, m, members, sc, opts.relay)), encoding="utf-8")
    return members


def _config(base: dict, m: Member, members: list[Member], sc: Scenario, relay: bool) -> dict:
    """Balloon `m`'s configuration: the flight's own with its callsign, its beacon slot, the others
    in `[relay] allow`, and, when another balloon forwards it, frames that fit in an envelope."""
    schedule, radio, devices = base.get("schedule", {}), base.get("radio", {}), base.get("devices", {})
    forward = m.callsign not in sc.listen_only  # a balloon out of the ground's reach only listens
    others = [{"callsign": o.callsign, "key_file": str(o.downlink), "forward": forward}
              for o in members if o is not m and relay]
    # Each its own slot of the beacon's period and the turn that follows it, as payloads sharing a
    # frequency take turns: nothing one keys runs into the other's sentence. A configuration that
    # names no turn was planned for a balloon alone: each keeps a turn as long as its period, and
    # the period they share is that many times longer.
    turn = schedule.get("turn_s")
    period = schedule.get("telemetry_s", 10.0) * (1 if turn else len(members))
    cfg = {**base, "callsign": m.callsign, "relay": {**base.get("relay", {}), "allow": others},
           "schedule": {**schedule, "telemetry_s": period, "beacon_slot_s": m.index * period / len(members),
                        "turn_s": turn or period / len(members)}}
    if relay and any(o is not m and o.callsign not in sc.listen_only for o in members):
        # Relayed: room for the envelope in a 255-byte packet, and pictures as records, which fit
        # it (an SSDV packet is a whole 255-byte frame: no relay can carry one).
        tag = base.get("uplink", {}).get("downlink_tag_len", DEFAULT_TAG_LEN)
        cfg["radio"] = {**radio, "mtu": min(radio.get("mtu", 255), 255 - overhead(tag))}
        if "camera" in devices:
            cfg["devices"] = {**devices, "camera": {**devices["camera"], "ssdv": False}}
    return cfg


def _base_config(path: Path | None) -> dict:
    if path is None:
        return {}
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise FlyError(f"--config {path}: {e}") from e
