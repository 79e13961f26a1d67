"""What a flight of several balloons did (report.json's `fleet`): per balloon, what it put on the
air and whether its beacon kept every slot, what it relayed for the others, and what reached the
ground from it — directly or through which balloon.

Read from the files the flight leaves: each balloon's air (`air.hex`, `air-<i>.hex` with their
`.times`), its payload's stats.json, and the ground's database for its flight (`ground.db` for
balloon 0, `ground.<CALLSIGN>.db` for the others, whose `heard` table names the path).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from payload.config import load_config

from ..report.beacons import air_frames, beacon_times, gap_limit_s
from .fleet import Member
from .report import gateway_section, merged_stats


def air_hex(out: Path, m: Member) -> Path:
    return out / ("air.hex" if m.index == 0 else f"air-{m.index}.hex")


def ground_db(out: Path, m: Member) -> Path:
    return out / ("ground.db" if m.index == 0 else f"ground.{m.callsign}.db")


def beacon_section(out: Path, m: Member) -> dict:
    """Its position sentences on the air: how many, the longest gap, and the slots it missed
    (the soak's rule, sim/bench/report/beacons.py), from the frames it put on the air."""
    frames = air_frames(out, m.index) if air_hex(out, m).exists() else []
    cfg = load_config(m.config)
    limit = gap_limit_s(cfg, [cfg.radio.airtime_s(len(f)) for _, f in frames])
    at = beacon_times(frames, m.callsign)
    gaps = [b - a for a, b in zip(at, at[1:])]
    return {"sentences": len(at), "period_s": cfg.schedule.telemetry_s,
            "longest_gap_s": round(max(gaps), 1) if gaps else None, "gap_limit_s": round(limit, 1),
            "missed_slots": sum(int(g // limit) for g in gaps)}


def ground_section(path: Path) -> dict:
    """What the ground kept of this flight and by which path (heard.station 'home' or 'home via NEAR1').
    `ways`: per kind, how many records (positions too) came directly only, through another balloon
    only, or both ways — each of the last stored once, with a `heard` row per path."""
    if not path.exists():
        return {"telemetry": 0, "musings": 0, "musings_only_relayed": 0, "paths": {}, "ways": {}}
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        telemetry = con.execute("SELECT COUNT(*) FROM telemetry").fetchone()[0]
        musings = con.execute("SELECT COUNT(*) FROM records WHERE kind = 'musing'").fetchone()[0]
        paths: dict[str, dict[str, int]] = {}
        for kind, station, n in con.execute("SELECT kind, station, COUNT(*) FROM heard GROUP BY kind, station"):
            paths.setdefault(kind, {})[station] = n
        ways: dict[str, dict[str, int]] = {}
        for kind, direct, relayed, n in con.execute(
                "SELECT kind, direct, relayed, COUNT(*) FROM (SELECT kind, MAX(station NOT LIKE '% via %') AS direct, "
                "MAX(station LIKE '% via %') AS relayed FROM heard GROUP BY kind, boot, seq) GROUP BY kind, direct, relayed"):
            way = "both" if direct and relayed else "direct" if direct else "relayed"
            ways.setdefault(kind, {"direct": 0, "relayed": 0, "both": 0})[way] += n
    finally:
        con.close()
    # A musing whose every hearing came through another balloon reached us only by relay.
    only_relayed = ways.get("musing", {}).get("relayed", 0)
    return {"telemetry": telemetry, "musings": musings, "musings_only_relayed": only_relayed, "paths": paths,
            "ways": ways}


def fleet_section(out: Path, members: list[Member], exits: dict[str, int | None]) -> list[dict]:
    rows = []
    for m in members:
        stats = merged_stats(out / m.name)
        link, daemon, relay = stats["link"], stats["daemon"], stats.get("relay") or {}
        rows.append({
            "balloon": m.index, "callsign": m.callsign, "seed": m.seed, "exit_code": exits.get(m.callsign, 0),
            "beacon": beacon_section(out, m),
            "gateway": gateway_section(air_hex(out, m)),  # each balloon's $$ lines, as a stock gateway takes them
            "musings_queued": daemon["musings_queued"],
            "musings_sent": link["sent_by_stream"].get("musing", 0),
            "airtime_s": round(link["airtime_s"], 1),
            "relay": {"heard_idle": link.get("relay_heard", 0), "forwarded": relay.get("forwarded", 0),
                      "airtime_s": round(relay.get("airtime_s", 0.0), 1), "refused": relay.get("refused", {}),
                      "by_origin": relay.get("by_origin", {}),
                      "musings_heard": relay.get("musings_heard", 0)},
            "ground": ground_section(ground_db(out, m)),
        })
    channel = json.loads((out / "channel.json").read_text()) if (out / "channel.json").exists() else {}
    for row in rows:
        row["heard_by_balloons"] = {p["to"]: p.get("delivered", 0) for p in channel.get("peers", [])
                                    if p.get("from") == row["balloon"]}
    return rows
