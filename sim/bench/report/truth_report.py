"""What the persona claimed about its flight, and whether it was true (issue 40): report.json's
`musings.claims`.

Two counts, by kind of claim (stratoecho/musing_claims.py: one definition of true for both):

- **the payload's**, from its log: every claim of every version of a musing the persona wrote,
  true or false, the false ones its truth guard caught (payload/persona/truth.py: cut, made again,
  held back) and any that aired false against what the payload knew then (none should);
- **the ground's**, independent of the payload: each musing the ground holds, its claims held
  against the ground's own telemetry of the moment it was made — the nearest position sentence's
  height, temperature, pressure and battery, the box's temperature from the nearest health record,
  the speed and the vertical rate between the positions around it, the time and distance since the
  launch the track shows (its first position 150 m above the first heard), the sun seen from there,
  and the phase the track says. A question's outcome is not known at the ground: "no answer"
  claims are left out.

Where the persona's language has no claim words, the payload logs `persona_language_unguarded`
when it starts and its guard reads little or nothing: "aired false: 0" then means little, and the
report says so in words (`unguarded`), not only payload.log.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from groundstation.store import TelemetryRow
from payload.parts.sensors import Readings
from payload.persona.prompts import sun_is_up
from stratoecho import geo
from stratoecho.musing_claims import KINDS, MusingFacts, claims

from .flight_report import epoch_of, placed_telemetry
from .logs import log_events

LAUNCH_CLIMB_M = 150.0  # as the payload's phase detector: this far above the pad is flying
CLIMBING_M_S = 2.0  # a balloon climbs at 4-6 m/s; a payload carried about on the pad does not
NEAREST_S = 300.0  # a musing is judged against telemetry at most this far from when it was made


def _kinds() -> dict:
    return {k: {"made": 0, "true": 0, "caught_false": 0, "aired_false": 0} for k in KINDS}


def payload_claims(payload_log: Path) -> dict:
    """The truth guard's count from the payload's log: every claim of every version of a musing,
    counted once, as it was written (made = true + caught false + aired false)."""
    by_kind, held, cut = _kinds(), 0, 0
    for e in log_events(payload_log, '"claims"'):
        event, action = e.get("event"), e.get("action")
        if event not in ("musing", "musing_untrue") or not isinstance(e.get("claims"), dict):
            continue
        held += action == "held back"
        cut += action == "cut"
        for kind, (true, false) in e["claims"].items():
            k = by_kind.setdefault(kind, {"made": 0, "true": 0, "caught_false": 0, "aired_false": 0})
            if event == "musing":
                k["made"] += true + false
                k["true"] += true
                k["aired_false"] += false
            else:  # a cut musing's true claims are counted with the musing that aired
                k["made"] += false if action == "cut" else true + false
                k["true"] += 0 if action == "cut" else true
                k["caught_false"] += false
    return {"by_kind": {k: v for k, v in by_kind.items() if v["made"]},
            "caught_false": sum(v["caught_false"] for v in by_kind.values()),
            "aired_false": sum(v["aired_false"] for v in by_kind.values()), "cut": cut, "held_back": held}


def _phase(rate: float | None, alt: float, launched: bool, descended: bool) -> str | None:
    if not launched:
        return "pre-launch"
    if rate is None:
        return None
    if rate < -3.0:
        return "descent"
    if descended and abs(rate) < 0.5 and alt < 5000:
        return "landed"
    if rate > 1.0:
        return "ascent"
    return "float" if alt > 10_000 and abs(rate) < 1.0 else None


def ground_facts(track: list[tuple[float, TelemetryRow]], box: list[tuple[float, float]],
                 at: float) -> MusingFacts | None:
    """What the ground's own telemetry says of the moment `at` (Unix seconds): `track` the
    flight's positions by time, `box` its health records' box temperatures by time. None when no
    position is near enough."""
    times = [t for t, _ in track]
    i = bisect.bisect_left(times, at)
    near = min((j for j in (i - 1, i) if 0 <= j < len(track)), key=lambda j: abs(times[j] - at), default=None)
    if near is None or abs(times[near] - at) > NEAREST_S:
        return None
    t, row = track[near]
    first = track[0][1]
    launch = next((tt for tt, r in track if r.alt > first.alt + LAUNCH_CLIMB_M), None)
    (t0, r0), (t2_, r2) = track[0], track[min(2, len(track) - 1)]
    heard_aloft = t2_ > t0 and (r2.alt - r0.alt) / (t2_ - t0) > CLIMBING_M_S
    if heard_aloft:
        launch = None  # first heard in the climb: when it left the pad is not in this track
    lo, hi = max(near - 2, 0), min(near + 2, len(track) - 1)
    (t1, a), (t2, b) = track[lo], track[hi]
    rate = speed = None
    if t2 - t1 > 0:
        rate = (b.alt - a.alt) / (t2 - t1)
        speed = geo.distance_m(a.lat, a.lon, b.lat, b.lon) / (t2 - t1) * 3.6
    peak = max(r.alt for _, r in track[:near + 1])
    # Climbing at balloon rates is flying, and so is all that follows a track first heard in the
    # climb (the ground heard nothing from the pad, so no climb above it shows).
    launched = heard_aloft or (launch is not None and at >= launch) or (rate is not None and rate > CLIMBING_M_S)
    box_c = min(box, key=lambda p: abs(p[0] - at), default=None)
    when = datetime.fromtimestamp(t, timezone.utc)
    sun = sun_is_up(Readings(when, row.lat, row.lon, float(row.alt), row.sats, math.nan, math.nan, 0, ""))
    return MusingFacts(
        phase=_phase(rate, row.alt, launched, peak - row.alt > 1000), alt_m=row.alt, temp_c=row.temp_c,
        box_temp_c=box_c[1] if box_c is not None and abs(box_c[0] - at) <= 2 * NEAREST_S else None,
        pressure_hpa=row.pressure_hpa, batt_v=row.batt_mv / 1000 if row.batt_mv > 0 else None, sun_up=sun,
        aloft_s=(max(at - launch, 0.0) if launch is not None else None) if launched else 0.0,
        speed_kmh=speed, rate_m_s=rate,
        distance_km=geo.distance_m(first.lat, first.lon, row.lat, row.lon) / 1000.0)


def ground_claims(ground_db: Path, shown: int = 10, language: str | None = None) -> dict:
    """The ground's count: each musing it holds, judged against its own telemetry of that moment,
    its claims read in `language` (the persona's: the air does not say it)."""
    placed, records = placed_telemetry(Path(ground_db))
    calls = Counter(r.callsign for r, _ in placed)
    own = calls.most_common(1)[0][0] if calls else None  # a network's ground hears others too
    track = sorted(((e, r) for r, e in placed if r.callsign == own and (r.lat, r.lon) != (0.0, 0.0)),
                   key=lambda p: p[0])
    box = [(e, float(r.fields["box_temp_c"])) for r in records if r.kind == "health"
           and isinstance((r.fields or {}).get("box_temp_c"), (int, float)) and (e := epoch_of(r.created)) is not None]
    by_kind = {k: {"made": 0, "true": 0, "false": 0} for k in KINDS if k != "request"}
    false, judged = [], 0
    for m in (r for r in records if r.kind == "musing"):
        made = epoch_of(m.created)
        facts = ground_facts(track, box, made) if made is not None and track else None
        if facts is None:
            continue
        facts = replace(facts, language=language)
        judged += 1
        for c in claims(m.text, facts):
            if c.kind == "request":
                continue
            by_kind[c.kind]["made"] += 1
            by_kind[c.kind]["true" if c.true else "false"] += 1
            if not c.true:
                false.append({"seq": m.seq, "kind": c.kind, "said": c.said, "text": m.text[:160],
                              "facts": facts.to_dict()})
    return {"musings_judged": judged, "by_kind": {k: v for k, v in by_kind.items() if v["made"]},
            "false": len(false), "first_false": false[:shown]}


def claims_section(out_dir: Path) -> dict:
    out_dir = Path(out_dir)
    return {"payload": payload_claims(out_dir / "payload.log"),
            "ground": ground_claims(out_dir / "ground.db", language=flown_language(out_dir / "payload.log")),
            "unguarded": unguarded_language(out_dir / "payload.log")}


def unguarded_language(payload_log: Path) -> dict | None:
    """The payload's `persona_language_unguarded` warning (the first boot's): the persona's
    language, which has no claim words, and what its guard reads instead (`reads`, where logged);
    None when the language was guarded."""
    for e in log_events(payload_log, "persona_language_unguarded"):
        if e.get("event") == "persona_language_unguarded":
            return {k: e[k] for k in ("language", "reads", "asked_in", "guarded") if k in e}
    return None


def flown_language(payload_log: Path) -> str | None:
    """The language the payload read its musings' claims in (their logged facts), None: English."""
    for e in log_events(payload_log, '"facts"'):
        facts = e.get("facts")
        if isinstance(facts, dict) and "language" in facts:
            return facts["language"]
    return None


def describe_claims(section: dict) -> list[str]:
    """The claim lines of `sim report`."""
    p, g = section["payload"], section["ground"]
    made = sum(v["made"] for v in p["by_kind"].values())
    true = sum(v["true"] for v in p["by_kind"].values())
    lines = [f"  claims     {made} made, {true} true; the guard caught {p['caught_false']} false ({p['cut']} musings "
             f"cut, {p['held_back']} held back); aired false: {p['aired_false']} by the payload's count, "
             f"{g['false']} by the ground's telemetry ({g['musings_judged']} musings judged)"]
    kinds = [f"{k.replace('_', ' ')} {v['true']}/{v['made']}" + (f" ({v['caught_false']} caught)"
                                                                  if v["caught_false"] else "")
             for k, v in p["by_kind"].items()]
    if kinds:
        lines.append("             true by kind: " + ", ".join(kinds))
    for f in g["first_false"][:3]:
        lines.append(f"             false at the ground: {f['kind']} \"{f['said']}\" in musing {f['seq']}")
    if section.get("unguarded"):
        lines.append(describe_unguarded(section["unguarded"]))
    return lines


def describe_unguarded(u: dict) -> str:
    """The payload's warning that the persona's language is not guarded, in words."""
    from host_training.language import name

    code = str(u.get("language") or "?")
    reads = u.get("reads")
    reads = ", ".join(map(str, reads)) if isinstance(reads, list) else str(reads or "English words and numbers")
    return (f"             UNGUARDED: the truth guard has no claim words for {name(code)} ({code}); it read the "
            f"musings' claims in {reads} only, so \"aired false\" counts only those")
