"""The beacon as the air heard it: what `sim soak` and a flight of several balloons
(sim/bench/fly/fleet_report.py) both judge. Each balloon's frames are in its air file with
their flight seconds (`air.hex`/`air.times` for the first, `air-<i>.hex`/`.times` for balloon i);
a slot is missed when two position sentences are further apart than the beacon's period plus
the longest frame on air (a sentence waits for the frame under way) plus, for a payload that
relays, one turn of listening for the others.

A `.times` line is `FLIGHT_SECOND AIRTIME_S` (sim/bench/run/relay.py): the frame's time on air as
it was keyed, which a payload switching modes between frames makes the only true price of it.
Files written before the second column are read all the same: their frames have no airtime."""

from __future__ import annotations

from pathlib import Path

from payload.link.windows import RELAY_LISTEN_S
from stratoecho import wire


def _air_lines(out: Path, balloon: int) -> tuple[list[str], list[list[str]]]:
    """(each frame's hex, each frame's `.times` fields) of balloon `balloon`, line for line."""
    name = "air" if balloon == 0 else f"air-{balloon}"
    hexes = (out / f"{name}.hex").read_text().split()
    times = [line.split() for line in (out / f"{name}.times").read_text().splitlines() if line.strip()]
    if len(hexes) != len(times):
        raise ValueError(f"{out}: {name}.hex has {len(hexes)} frames but {name}.times {len(times)} times")
    return hexes, times


def air_frames(out: Path, balloon: int = 0) -> list[tuple[float, bytes]]:
    """Every frame balloon `balloon` put on the air, with its flight second."""
    hexes, times = _air_lines(out, balloon)
    return [(float(fields[0]), bytes.fromhex(h)) for fields, h in zip(times, hexes)]


def air_airtimes(out: Path, balloon: int = 0) -> list[float | None]:
    """Each of `air_frames`' frames' seconds on air as the relay priced it with the settings it was
    keyed with; None for a frame of a file written before the relay wrote them (price it yourself)."""
    return [float(fields[1]) if len(fields) > 1 else None for fields in _air_lines(out, balloon)[1]]


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
