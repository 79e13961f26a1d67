"""`sim soak`: a long flight of a configuration under its unit, and the verdict on it.

What a day aloft must not do, measured from outside the payload:
- a watchdog kill, a restart or a stop that ran out of time (the supervisor's verdicts);
- more time on air in any sliding hour than the duty cycle allows (every frame the channel
  heard, with its flight second, in air.times/air.hex, priced with the airtime the relay wrote
  beside it from the settings it was keyed with, or in an older file with the configured ones);
- a gap between two position beacons on air longer than the beacon interval in force plus
  one frame's time on air (and a listening turn for a payload that relays: sim/bench/report/beacons.py);
- resident memory that grows: the payload's RSS after the first hour against its last hour.

`check` is pure (it reads a flight's output folder); `soak` flies one first.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from groundstation.store import GroundReader
from payload.config import load_config
from stratoecho.airtime import lora_airtime_s

from ..fly import FlyOptions, fly
from ..report.beacons import air_airtimes, air_frames, beacon_times, gap_limit_s

RSS_GROWTH_LIMIT = 0.05  # 5 % between the first and the last hour after warm-up
WARM_UP_S = 3600.0  # the model's pages, the store's cache and the interpreter settle in the first hour
SURVIVAL_BEACON_FACTOR = 2.0  # payload/policy/modes.py: survival beacons at half the rate


@dataclass
class SoakVerdict:
    flight_s: float
    frames: int
    beacons: int
    watchdog_kills: int
    restarts: int
    stop_timeouts: int
    worst_hour_airtime_s: float
    duty_limit_s: float | None
    longest_beacon_gap_s: float
    beacon_gap_limit_s: float
    rss_first_kb: int | None
    rss_last_kb: int | None
    rss_growth: float | None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def table(self) -> str:
        rows = [
            ("flight", f"{self.flight_s / 3600:.1f} h", ""),
            ("watchdog kills / restarts / stop timeouts", f"{self.watchdog_kills} / {self.restarts} / "
             f"{self.stop_timeouts}", "0 / 0 / 0"),
            ("worst hour on air", f"{self.worst_hour_airtime_s:.0f} s",
             f"<= {self.duty_limit_s:.0f} s" if self.duty_limit_s is not None else "no duty-cycle limit"),
            ("longest beacon gap", f"{self.longest_beacon_gap_s:.1f} s", f"<= {self.beacon_gap_limit_s:.1f} s"),
            ("payload RSS, first -> last hour", f"{self.rss_first_kb} -> {self.rss_last_kb} kB"
             + (f" ({self.rss_growth:+.1%})" if self.rss_growth is not None else ""), f"< {RSS_GROWTH_LIMIT:+.0%}"),
        ]
        width = max(len(r[0]) for r in rows)
        lines = [f"{name:<{width}}  {value:<24} {limit}" for name, value, limit in rows]
        lines += [f"FAIL: {p}" for p in self.problems] or ["PASS"]
        return "\n".join(lines)


def worst_hour(frames: list[tuple[float, float]], window_s: float = 3600.0) -> float:
    """The most seconds on air in any `window_s` window, from (start, airtime) pairs in time order."""
    worst = used = 0.0
    lo = 0
    for t, air in frames:
        used += air
        while frames[lo][0] <= t - window_s:
            used -= frames[lo][1]
            lo += 1
        worst = max(worst, used)
    return worst


def _survival_seen(db: Path) -> bool:
    if not db.exists():
        return False
    with GroundReader.open(db) as ground:
        return any('"survival"' in r.text for r in ground.records.of("health"))


def check(out: Path, cfg) -> SoakVerdict:
    """The verdict on the flight in `out`, flown with payload configuration `cfg`."""
    report = json.loads((out / "report.json").read_text())
    r = cfg.radio
    frames = air_frames(out)
    # A frame's own airtime (SSDV keyed in another mode than positions); configured settings for old files.
    priced = [(t, air if air is not None else lora_airtime_s(len(f), r.spreading_factor, r.bandwidth_hz, r.coding_rate))
              for (t, f), air in zip(frames, air_airtimes(out))]
    duty = r.duty_cycle  # the band plan's, in force (payload/config.py's RadioSection)
    limit_s = duty * 3600.0 if duty is not None and duty < 1.0 else None
    beacons = beacon_times(frames)
    gaps = [b - a for a, b in zip(beacons, beacons[1:])]
    factor = SURVIVAL_BEACON_FACTOR if _survival_seen(out / "ground.db") else 1.0
    gap_limit = gap_limit_s(cfg, [a for _, a in priced], factor)
    unit = report.get("unit") or {}
    rss = [(t, kb) for t, _boot, kb in report.get("payload_rss_kb", []) if t >= WARM_UP_S]
    first = [kb for t, kb in rss if t < rss[0][0] + 3600] if rss else []
    last = [kb for t, kb in rss if t > rss[-1][0] - 3600] if rss else []
    rss_first = round(sum(first) / len(first)) if first else None
    rss_last = round(sum(last) / len(last)) if last else None
    v = SoakVerdict(
        flight_s=report["flight_s"], frames=len(frames), beacons=len(beacons),
        watchdog_kills=unit.get("watchdog_timeouts", 0), restarts=unit.get("restarts", 0),
        stop_timeouts=unit.get("stop_timeouts", 0), worst_hour_airtime_s=round(worst_hour(priced), 1),
        duty_limit_s=limit_s, longest_beacon_gap_s=round(max(gaps, default=0.0), 1),
        beacon_gap_limit_s=round(gap_limit, 1), rss_first_kb=rss_first, rss_last_kb=rss_last,
        rss_growth=(rss_last - rss_first) / rss_first if rss_first and rss_last else None)
    if not unit:
        v.problems.append("the payload flew unsupervised: no unit contract was checked")
    if v.watchdog_kills or v.restarts or v.stop_timeouts:
        v.problems.append(f"the unit's contract was broken: {v.watchdog_kills} watchdog kills, {v.restarts} restarts, "
                          f"{v.stop_timeouts} stop timeouts (verdicts in report.json)")
    if limit_s is not None and v.worst_hour_airtime_s > limit_s + 1e-6:
        v.problems.append(f"{v.worst_hour_airtime_s:.0f} s on air in one hour, over the duty cycle's {limit_s:.0f} s")
    if not beacons:
        v.problems.append("no position beacon was put on the air")
    elif v.longest_beacon_gap_s > gap_limit:
        at = beacons[gaps.index(max(gaps))]
        v.problems.append(f"no beacon for {v.longest_beacon_gap_s:.0f} s after flight second {at:.0f} "
                          f"(allowed {gap_limit:.1f} s)")
    if v.rss_growth is not None and v.rss_growth >= RSS_GROWTH_LIMIT:
        v.problems.append(f"the payload's memory grew {v.rss_growth:.1%} from its first to its last hour")
    return v


def soak(out: Path, config: Path, hours: float, persona: Path | None, seed: int = 1, overwrite: bool = False,
         quiet: bool = True, speedup: float | None = None) -> SoakVerdict:
    """Fly `config` for `hours` of flight time under the shipped unit, then judge it: on the
    bench's clock (`speedup` None: as fast as the machine allows, or at most N times real time),
    or at real time (1)."""
    fly(FlyOptions(out=out, persona=persona, minutes=hours * 60, speedup=speedup, seed=seed, overwrite=overwrite,
                   config=config, quiet=quiet))
    verdict = check(out, load_config(config))
    (out / "soak.json").write_text(json.dumps({**asdict(verdict), "ok": verdict.ok}, indent=2))
    return verdict


__all__ = ["SoakVerdict", "air_frames", "check", "soak", "worst_hour"]
