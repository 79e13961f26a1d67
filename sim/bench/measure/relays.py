"""`make bench`'s network rows: the two-balloons scenario flown twice on the bench's clock, once
with the near balloon relaying for the far one and once without, and what reached the ground
from the far balloon each time (sim/bench/fly/fleet_report.py reads the flights).

The ground station's valley hides the far balloon (scenario two-balloons), so without a relay
its records reach no one; with it they come through the near balloon inside its share of the air.

`far_positions` reads the far balloon's positions as two receivers at the ground station took
them: a stock LoRa gateway, which drops relay envelopes and takes only a `$$` line that keeps its
rules (`wire.gateway_rules`: the near balloon's bare echo of the far one's line), and our own
ground (the far flight's database, its signed positions). `python -m sim.bench.measure.relays --seeds 1 2 3
--minutes 60` flies the scenario per seed and prints both, with the largest gap between positions.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
from pathlib import Path

from stratoecho import wire
from stratoecho.wire import gateway_rules

from ...channel.loss import LossSpec

MINUTES = 40.0  # both balloons well above each other's horizon, the far one still below the valley's rim
SEED = 3
LOSS = LossSpec(0.1, burst=4.0)  # sim fly's default fading on top of the link budget, on every link


def fly_network(out: Path, persona: Path | None, relay: bool, minutes: float = MINUTES, seed: int = SEED) -> dict:
    """One two-balloons flight as fast as the machine allows; its report."""
    from ..fly import FlyOptions, fly

    return fly(FlyOptions(out=out, persona=persona, minutes=minutes, speedup=None, seed=seed, quiet=True,
                          scenario="two-balloons", relay=relay, unit=None, loss=LOSS))


def _gaps(seconds: list[int]) -> dict:
    """How many distinct position times, and the largest step between two (None: fewer than two)."""
    at = sorted(set(seconds))
    return {"positions": len(at), "longest_gap_s": max((b - a for a, b in zip(at, at[1:])), default=None)}


def _seconds(hms: str) -> int:
    h, m, s = (int(x) for x in hms.split(":"))
    return h * 3600 + m * 60 + s


def far_positions(out: Path, callsign: str) -> dict:
    """Flight `callsign`'s positions at the ground station of the flight in `out`, as a stock
    gateway takes them (every frame heard there, from every flight's frames table: a `$$` line of
    that callsign no gateway rule refuses) and as our ground kept them (its signed positions)."""
    frames: list[bytes] = []
    dbs = [p for p in (out / "ground.db", out / f"ground.{callsign}.db") if p.exists()]
    for db in dbs:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            frames += [bytes.fromhex(h) for (h,) in con.execute("SELECT hex FROM frames")]
        finally:
            con.close()
    # As the gateway takes them: by its rules alone, not by whether our own parser reads the line.
    heard = [wire.classify(f) for f in frames]
    gateway = [_seconds(h.data.split(b",")[2].decode()) for h in heard if h.kind is wire.FrameKind.SENTENCE
               and h.callsign == callsign and not gateway_rules.check_line(h.data)]
    ours: list[int] = []
    if (own := out / f"ground.{callsign}.db").exists():
        con = sqlite3.connect(f"file:{own}?mode=ro", uri=True)
        try:
            ours = [_seconds(t) for (t,) in con.execute(
                "SELECT time FROM telemetry WHERE authentic = 1 AND callsign = ?", (callsign,))]
        finally:
            con.close()
    return {"gateway": _gaps(gateway), "ground": _gaps(ours)}


def rows(persona: Path | None) -> list[tuple]:
    persona = persona if persona is not None and (persona / "persona.toml").is_file() else None
    with tempfile.TemporaryDirectory(prefix="stratoecho-relays-") as tmp:
        flights = {relay: fly_network(Path(tmp) / ("relay" if relay else "alone"), persona, relay)
                   for relay in (True, False)}
        flights_seen = {True: far_positions(Path(tmp) / "relay", flights[True]["fleet"][1]["callsign"])}
    out = []
    for relay, report in flights.items():
        near, far = report["fleet"][0], report["fleet"][1]
        how = "through NEAR1" if relay else "no relay"
        sent, got = far["beacon"]["sentences"], far["ground"]["telemetry"]
        out.append((f"network: far balloon's positions at the ground, {how}", f"{got}", "positions",
                    f"of {sent} on air in {MINUTES:.0f} flight minutes; "
                    + _ways(far["ground"]["ways"].get("telemetry", {}), relay)))
        if relay:
            seen = flights_seen[relay]
            for who, what in (("a stock gateway", "gateway"), ("our ground", "ground")):
                got = seen[what]
                out.append((f"network: far balloon's positions at {who}, through NEAR1", f"{got['positions']}",
                            "positions", f"of {sent} on air; largest gap {got['longest_gap_s']} s (at most 120 s "
                                         "wanted)"))
        queued, mused = far["ground"]["musings"], far["musings_queued"]
        out.append((f"network: far balloon's musings at the ground, {how}", f"{queued}/{mused}", "musings",
                    f"{far['ground'].get('musings_only_relayed', 0)} by relay alone"))
        if relay:
            r = near["relay"]
            share = r["airtime_s"] / near["airtime_s"] if near["airtime_s"] else 0.0
            out.append(("network: relay's share of the near balloon's airtime", f"{share:.1%}", "of airtime",
                        f"{r['airtime_s']:.0f} s of {near['airtime_s']:.0f} s; {r['forwarded']} frames relayed"))
            out.append(("network: duplicates suppressed by the relay", f"{r['refused'].get('duplicate', 0)}",
                        "frames", f"refused in all: {sum(r['refused'].values())} "
                                  f"({', '.join(f'{k} {v}' for k, v in sorted(r['refused'].items())) or 'none'})"))
            gaps = ", ".join(f"{b['callsign']} {b['beacon']['longest_gap_s']} s" for b in report["fleet"])
            limit = report["fleet"][0]["beacon"]["gap_limit_s"]
            missed = sum(b["beacon"]["missed_slots"] for b in report["fleet"])
            period = report["fleet"][0]["beacon"]["period_s"]
            out.append(("network: longest beacon gap per balloon", gaps, "", f"period {period:g} s, a slot missed "
                        f"past {limit} s: " + ("none missed" if not missed else f"{missed} missed")))
    return out


def _ways(telemetry: dict, relay: bool) -> str:
    """How the far balloon's positions came, as the ground's `heard` table says."""
    direct, relayed, both = (telemetry.get(k, 0) for k in ("direct", "relayed", "both"))
    if not direct and not both:
        return "all through NEAR1" if relayed else "the ground heard none"
    return f"{relayed} through NEAR1 only, {direct} heard directly only, {both} both ways" if relay else \
        f"{direct} heard directly"


def main(argv: list[str] | None = None) -> int:
    """The far balloon's positions at a stock gateway and at our ground, one two-balloons flight a seed."""
    ap = argparse.ArgumentParser(prog="python -m sim.bench.measure.relays", description=main.__doc__)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--minutes", type=float, default=60.0, help="flight minutes (default 60, the scenario's)")
    ap.add_argument("--persona", type=Path, default=Path("build/persona"))
    ap.add_argument("--out", type=Path, default=None, help="keep the flights here (default: a temporary folder)")
    args = ap.parse_args(argv)
    persona = args.persona if (args.persona / "persona.toml").is_file() else None
    with tempfile.TemporaryDirectory(prefix="stratoecho-relays-") as tmp:
        base = args.out or Path(tmp)
        for seed in args.seeds:
            report = fly_network(base / f"seed{seed}", persona, True, args.minutes, seed)
            far = report["fleet"][1]
            seen = far_positions(base / f"seed{seed}", far["callsign"])
            print(json.dumps({"seed": seed, "sent": far["beacon"]["sentences"], **seen,
                              "relay": report["fleet"][0]["relay"]}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
