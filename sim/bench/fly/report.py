"""A finished bench flight's report.json and musings.txt: the payload's statistics over its
boots, what the channel and the ground saw, the battery, and the air against a stock gateway's rules."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from groundstation.store import GroundReader
from payload.config import PayloadConfig, load_config
from payload.policy.airplan import air_plan
from stratoecho import wire
from stratoecho.wire import downlink, gateway_rules

from ...world.hardware import bench_dir
from ...world.scenarios import Scenario
from ..report.air_report import air_section
from ..report.flight_report import summarise, write_flight_report
from ..report.musing_report import musings_section
from .options import FlyError, FlyOptions

if TYPE_CHECKING:
    from .flyer import Flyer

log = structlog.get_logger(__name__)


def ground_counts(db: Path) -> dict:
    """What the ground got, for report.json and musings.txt (zeros where it heard nothing)."""
    if not db.exists():
        return {"frames": 0, "telemetry": 0, "musings": 0, "events": 0, "transcript": []}
    with GroundReader.open(db) as ground:
        counts = ground.counts()
        return {
            "frames": counts.frames_good,
            "telemetry": counts.telemetry,
            "musings": counts.of("musing"),
            "events": counts.of("event"),
            "max_alt": ground.track.max_altitude() or 0,
            "transcript": [(m.created, m.text) for m in ground.records.of("musing")],
        }


def world_figures(path: Path) -> dict:
    """The battery as the bench world left it: what the flight really cost."""
    try:
        w = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in w.items() if not isinstance(v, dict)}


def merged_stats(payload_dir: Path) -> dict:
    """The payload's statistics summed over its boots (each boot starts its own at zero)."""
    files = sorted(payload_dir.glob("stats.boot*.json"), key=lambda p: int(p.stem.split("boot")[1]))
    files += [payload_dir / "stats.json"]
    boots = [json.loads(f.read_text()) for f in files if f.exists()]
    if not boots:
        raise FlyError(f"the payload wrote no statistics in {payload_dir}; see its log")

    def add(a, b):
        if isinstance(a, dict) and isinstance(b, dict):
            return {k: add(a.get(k, 0), b.get(k, 0)) if k in a and k in b else a.get(k, b.get(k)) for k in {*a, *b}}
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
            return a + b
        return b

    merged = boots[0]
    for b in boots[1:]:
        merged = add(merged, b)
    last = boots[-1]
    merged["flight_s"] = last["flight_s"]  # a time, not a count
    merged["queue_depth"] = last["queue_depth"]
    merged["daemon"]["boot"] = last["daemon"]["boot"]
    merged["boots"] = len(boots)
    return merged


def gateway_section(air_hex: Path, shown: int = 10) -> dict:
    """Every line the payload put on air against a stock LoRa gateway's rules
    (`wire.gateway_rules`): how many lines, the longest, and the first violations."""
    frames = [bytes.fromhex(h) for h in air_hex.read_text().split()] if air_hex.exists() else []
    lines = [f for f in frames if wire.classify(f).kind in (wire.FrameKind.SENTENCE, wire.FrameKind.MUSING_SENTENCE)]
    found = gateway_rules.check_air(frames)
    if found:
        log.error("gateway_rules_broken", count=len(found), first=str(found[0]))
    return {"lines": len(lines), "longest": max(map(len, lines), default=0), "violations": len(found),
            "first": [str(v) for v in found[:shown]]}


def flown_config(opts: FlyOptions, config: Path | None = None) -> PayloadConfig:
    """The configuration the (first) payload flew: its file, the flight key sim fly gave it, the uplink."""
    cfg = load_config(config if config is not None else opts.config)
    key = opts.out / "uplink.key"
    if key.exists():
        cfg.uplink.key_file = str(key)
    if not opts.uplink:
        cfg.uplink.listen = False
    return cfg


def air_of(opts: FlyOptions, flight_s: float, config: Path | None = None) -> dict:
    """The air plan of what flew, beside what went on air (sim/bench/report/air_report.py)."""
    cfg = flown_config(opts, config)
    own, pictures = cfg.radio.lora_settings(), cfg.radio.pictures_settings()
    auth = (downlink.load_auth(cfg.uplink.key_file, cfg.uplink.downlink_tag_len, allow_raw=cfg.uplink.allow_raw_key)
            if cfg.uplink.key_file else None)

    def airtime(row: str, frame: bytes) -> float:
        return (pictures if row == "picture" and pictures is not None else own).airtime_s(len(frame))
    return air_section(opts.out, air_plan(cfg, persona=opts.persona is not None), auth, airtime, flight_s)


def write_report(opts: FlyOptions, wall_s: float, flight_s: float, sc: Scenario | None = None,
                 flyer: Flyer | None = None, clock_stats: dict | None = None, fleet: list[dict] | None = None) -> dict:
    out = opts.out
    stats = merged_stats(out / "payload")
    channel = json.loads((out / "channel.json").read_text())
    # Written by the ground station at exit; absent if it was killed rather than stopped.
    ground_stats = json.loads(g.read_text()) if (g := out / "ground.json").exists() else {}
    ground = ground_counts(out / "ground.db")
    link, daemon = stats["link"], stats["daemon"]
    report = {
        "musings": {
            "generated": daemon["musings_generated"],
            "queued": daemon["musings_queued"],
            "dropped_by_guard": daemon["musings_dropped_by_guard"],
            "sent": link["sent_by_stream"].get("musing", 0),
            "delivered": ground["musings"],
        },
        "telemetry": {
            "generated": daemon["telemetry_queued"],
            "sent": link["sent_by_stream"].get("telemetry", 0),
            "received": ground["telemetry"],
        },
        "events": {"sent": link["sent_by_stream"].get("event", 0), "received": ground["events"]},
        "frames": {
            "sent": link["frames_sent"],
            "on_air": channel["frames_in"],
            "dropped_by_channel": channel["frames_dropped"],
            "received": ground["frames"],
        },
        "repair": {
            "nacks_sent": ground_stats.get("nacks_sent", 0),
            "items_requested": ground_stats.get("items_requested", 0),
        },
        "uplink": {"sent": channel.get("uplink_in", 0), "received": channel.get("uplink_forwarded", 0)},
        "airtime_s": round(link["airtime_s"], 2),
        "energy_wh": round(stats["energy_wh"], 3),
        "max_alt_m": ground.get("max_alt", 0),
        "flight_s": round(stats["flight_s"], 1),
        "wall_s": round(wall_s, 1),
        "speedup": "max" if opts.speedup is None else opts.speedup,
        "achieved_speedup": round(stats["flight_s"] / wall_s, 1) if wall_s > 0 else None,
        "clock": "lockstep" if clock_stats is not None else "monotonic",
        "bench_clock": clock_stats or {},
        "loss_spec": {"mean": opts.loss.mean_loss, "burst": opts.loss.burst},
        "seed": opts.seed,
        "persona": str(opts.persona) if opts.persona else None,
        "tokens": daemon["tokens"],
        "persona_failures": daemon["persona_failures"],
        "queue_left": stats["queue_depth"],
        "scenario": sc.name if sc else "nominal",
        "payload_boots": stats["boots"],
        "actions": flyer.done_actions if flyer else [],
        "unit": flyer.sup.report() if flyer and flyer.sup else None,
        "payload_rss_kb": flyer.rss if flyer else [],
        "world": world_figures(bench_dir(out / "payload") / "world.json"),
    }
    report.update(summarise(out / "ground.db", stats, channel))
    # Whether they were worth reading: every musing the payload made, measured against what its
    # prompt told it, and the first ones as they came (docs/bench.md, "Musings worth reading").
    report["musings"].update(musings_section(out, persona=opts.persona is not None, bundle=opts.persona))
    report["gateway"] = gateway_section(out / "air.hex")
    report["air"] = air_of(opts, stats["flight_s"], fleet and opts.out / f"payload-{fleet[0]['callsign']}.toml")
    if fleet is not None:  # several balloons on one channel (fleet_report.py)
        report["fleet"] = fleet
    write_flight_report(out)
    tmp = out / "report.json.tmp"
    tmp.write_text(json.dumps(report, indent=2))
    os.replace(tmp, out / "report.json")
    (out / "musings.txt").write_text(
        "".join(f"{created}  {text}\n" for created, text in ground["transcript"]), encoding="utf-8"
    )
    return report
