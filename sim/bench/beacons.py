"""The beacon as the air heard it: what `sim soak` and a flight of several balloons
(sim/bench/fly/fleet_report.py) both judge. Each balloon's frames are in its air file with
their flight seconds (`air.hex`/`air.times` for the first, `air-<i>.hex`/`.times` for balloon i);
a slot is missed when two position sentences are further apart than the beacon's period plus
the longest frame on air (a sentence waits for the frame under way) plus, for a payload that
relays, one turn of listening for the others."""

from __future__ import annotations

from pathlib import Path

from payload.link.transmitter import RELAY_LISTEN_S
from stratoecho import wire


def air_frames(out: Path, balloon: int = 0) -> list[tuple[float, bytes]]:
    """Every frame balloon `balloon` put on the air, with its flight second."""
    name = "air" if balloon == 0 else f"air-{balloon}"
    hexes = (out / f"{name}.hex").read_text().split()
    times = (out / f"{name}.times").read_text().split()
    if len(hexes) != len(times):
        raise ValueError(f"{out}: {name}.hex has {len(hexes)} frames but {name}.times {len(times)} times")
    return [(float(t), bytes.fromhex(h)) for t, h in zip(times, hexes)]


def beacon_times(frames: list[tuple[float, bytes]], callsign: str | None = None) -> list[float]:
    """When each position sentence went on the air (of `callsign` only, when given)."""
    out = []
    for t, frame in frames:
        try:
            decoded = wire.decode_frame(frame)
        except wire.WireError:
            continue  # a tagged record, not ours to read without the key, and not a sentence
        if isinstance(decoded, wire.Telemetry) and callsign in (None, decoded.callsign):
            out.append(t)
    return out


def gap_limit_s(cfg, airtimes: list[float], factor: float = 1.0) -> float:
    """The longest gap between two beacons that misses no slot: the period in force (`factor` x
    schedule.telemetry_s), the longest frame on air and, when the payload relays, one listening turn."""
    turn = RELAY_LISTEN_S if cfg.relay.allow else 0.0
    return cfg.schedule.telemetry_s * factor + max(airtimes, default=0.0) + turn
