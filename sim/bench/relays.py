"""`make bench`'s network rows: the two-balloons scenario flown twice on the bench's clock, once
with the near balloon relaying for the far one and once without, and what reached the ground
from the far balloon each time (sim/bench/fly/fleet_report.py reads the flights).

The ground station's valley hides the far balloon (scenario two-balloons), so without a relay
its records reach no one; with it they come through the near balloon inside its share of the air.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from ..channel.loss import LossSpec

MINUTES = 40.0  # both balloons well above each other's horizon, the far one still below the valley's rim
SEED = 3
LOSS = LossSpec(0.1, burst=4.0)  # sim fly's default fading on top of the link budget, on every link


def fly_network(out: Path, persona: Path | None, relay: bool, minutes: float = MINUTES, seed: int = SEED) -> dict:
    """One two-balloons flight as fast as the machine allows; its report."""
    from .fly import FlyOptions, fly

    return fly(FlyOptions(out=out, persona=persona, minutes=minutes, speedup=None, seed=seed, quiet=True,
                          scenario="two-balloons", relay=relay, unit=None, loss=LOSS))


def rows(persona: Path | None) -> list[tuple]:
    persona = persona if persona is not None and (persona / "persona.toml").is_file() else None
    with tempfile.TemporaryDirectory(prefix="stratoecho-relays-") as tmp:
        flights = {relay: fly_network(Path(tmp) / ("relay" if relay else "alone"), persona, relay)
                   for relay in (True, False)}
    out = []
    for relay, report in flights.items():
        near, far = report["fleet"][0], report["fleet"][1]
        how = "through NEAR1" if relay else "no relay"
        sent, got = far["beacon"]["sentences"], far["ground"]["telemetry"]
        out.append((f"network: far balloon's positions at the ground, {how}", f"{got}", "positions",
                    f"of {sent} on air in {MINUTES:.0f} flight minutes; "
                    + _ways(far["ground"]["ways"].get("telemetry", {}), relay)))
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
