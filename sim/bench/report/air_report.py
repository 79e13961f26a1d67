"""The air plan beside what the flight did: report.json's `air` section and its words.

The plan (payload/policy/airplan.py) says what the configuration should put on the air in an
hour; this reads what it did from outside the payload — every frame in `air.hex` with its flight
second (`air.times`), the payload's log of the musings it made, the ground's database — and sets
the two side by side:

- seconds of air an hour for each kind of frame (records told apart with the flight's own
  downlink key, as the ground tells them);
- positions: the share of beacon periods that carried a position sentence on air, the
  longest gap between two;
- musings: from being made (the payload's log) to their first part on air, record fragment or
  ``$$`` sentence; and as a stock gateway sees them (it reads only the ``$$`` lines) to their
  first ``$$`` part whole on air and to their last (the musing whole); those that never aired;
  the shortest part's text;
- pictures: SSDV images whole at the ground.

A flight past the plan's promises fails `make test`'s rehearsal (tests/test_air_plan_flight.py).
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from pathlib import Path

from groundstation.store import GroundReader
from payload.policy.airplan import LABELS, AirPlan
from stratoecho import wire
from stratoecho.wire import ssdv
from stratoecho.wire.musing_sentence import decode_musing_sentence

from .beacons import air_airtimes, air_frames
from .musing_report import logged_musings

RECORD_ROWS = {wire.Kind.MUSING: "musing", wire.Kind.HEALTH: "health", wire.Kind.EVENT: "event",
               wire.Kind.API_REQUEST: "question", wire.Kind.IMAGE: "image", wire.Kind.TELEMETRY: "late position"}
NAMES = {**LABELS, "late position": "late positions, as records", "other": "other frames"}


# The plan's row of each kind of frame `wire.classify` tells apart (records: by their own kind, below).
ROWS = {wire.FrameKind.SENTENCE: "position", wire.FrameKind.HABPACK: "position", wire.FrameKind.SSDV: "picture",
        wire.FrameKind.WINDOW_CUE: "window", wire.FrameKind.RELAYED: "relay"}


def classify(frame: bytes, auth) -> tuple[str, tuple[int, int] | None]:
    """The plan's row a frame on air belongs to, and the musing it carries (boot, seq) if any."""
    heard = wire.classify(frame, auth.tag_len) if auth is not None else wire.classify(frame)
    if heard.kind is wire.FrameKind.MUSING_SENTENCE:
        s = heard.opened
        return ("musing sentence", (s.boot, s.seq)) if s is not None else ("other", None)
    if heard.kind in ROWS:
        return ROWS[heard.kind], None
    if heard.kind is not wire.FrameKind.FRAGMENT:
        return "other", None
    try:
        f = wire.decode_fragment(frame, auth)
    except wire.WireError:
        return "other", None
    row = RECORD_ROWS.get(f.kind, "other")
    return row, (f.boot, f.seq) if f.kind is wire.Kind.MUSING else None


def _percentile(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, max(0, math.ceil(q * len(v)) - 1))]


def _spread(values: list[float]) -> dict:
    if not values:
        return {}
    return {"median": round(statistics.median(values), 1), "p90": round(_percentile(values, 0.9), 1),
            "max": round(max(values), 1)}


def whole_pictures(db: Path) -> tuple[int, int]:
    """(SSDV images the ground holds whole, images it heard of) from its database."""
    if not db.exists():
        return 0, 0
    with GroundReader.open(db) as ground:
        rows = ground.pictures.ssdv_packets()
    images: dict[tuple[str, int], dict[int, bool]] = defaultdict(dict)
    for r in rows:
        try:
            p = ssdv.parse_packet(r.packet)
        except wire.WireError:
            continue
        images[(r.callsign, r.image_id)][p.packet_id] = p.eoi
    whole = sum(1 for got in images.values()
                if any(got.values()) and set(got) == set(range(max(i for i, eoi in got.items() if eoi) + 1)))
    return whole, len(images)


def air_section(out: Path, plan: AirPlan, auth, airtime, flight_s: float) -> dict:
    """What the flight in `out` put on the air, against `plan`. `airtime(kind_row, frame)` prices
    a frame where air.times does not say (the configuration's channels); `auth` tells records apart."""
    frames = air_frames(out)
    written = air_airtimes(out)  # as keyed, where the channel wrote it
    hours = max(flight_s, 1.0) / 3600.0
    per_kind: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    positions: list[float] = []
    first_air: dict[tuple[int, int], float] = {}
    lines: dict[tuple[int, int], dict[int, float]] = defaultdict(dict)  # musing -> part -> first heard whole
    whole_of: dict[tuple[int, int], int] = {}
    parts: list[int] = []
    for (t, frame), keyed_air in zip(frames, written):
        row, musing = classify(frame, auth)
        air = keyed_air if keyed_air is not None else airtime(row, frame)
        keyed = t - air  # air.times says when the frame was heard whole
        per_kind[row][0] += 1
        per_kind[row][1] += air
        if row == "position":
            positions.append(keyed)
        if musing is not None:
            first_air[musing] = min(first_air.get(musing, math.inf), keyed)
        if row == "musing sentence":
            line = decode_musing_sentence(frame)
            parts.append(len(line.text))
            lines[musing].setdefault(line.part, t)  # air.times: heard whole
            whole_of[musing] = line.parts
    gaps = [b - a for a, b in zip(positions, positions[1:])]
    period = plan.period_s
    missed = sum(max(0, round(g / period) - 1) for g in gaps)
    periods = len(positions) + missed
    made = [m for m in logged_musings(out / "payload.log") if m.seq is not None and m.t_s is not None]
    delays = [first_air[(m.boot, m.seq)] - m.t_s for m in made if (m.boot, m.seq) in first_air]
    by_line = [(m.t_s, lines[(m.boot, m.seq)], whole_of[(m.boot, m.seq)]) for m in made if (m.boot, m.seq) in lines]
    first_line = [min(heard.values()) - t for t, heard, _ in by_line]
    whole_line = [max(heard.values()) - t for t, heard, n in by_line if len(heard) == n]
    whole, heard = whole_pictures(out / "ground.db")
    measured = {
        "hours": round(hours, 2),
        "rows": {k: {"frames_per_hour": round(n / hours, 1), "air_s_per_hour": round(a / hours, 1)}
                 for k, (n, a) in sorted(per_kind.items())},
        "air_s_per_hour": round(sum(a for _, a in per_kind.values()) / hours, 1),
        "positions": {"on_air": len(positions), "periods": periods,
                      "share": round(len(positions) / periods, 4) if periods else None,
                      "longest_gap_s": round(max(gaps, default=0.0), 1)},
        "musings": {"made": len(made), "aired": len(delays), "never_aired": len(made) - len(delays),
                    "delay_s": _spread(delays),
                    "sentence_delay_s": _spread(first_line), "whole_delay_s": _spread(whole_line),
                    "parts": len(parts), "shortest_part_chars": min(parts, default=None),
                    "parts_under_25_chars": sum(1 for n in parts if n < 25)},
        "pictures": {"whole_at_ground": whole, "heard_of": heard},
    }
    return {"plan": plan.to_dict(), "measured": measured}


def describe_air(section: dict) -> list[str]:
    """The plan beside the flight, for `sim report`."""
    plan, got = section["plan"], section["measured"]
    rows = {r["kind"]: r for r in plan["rows"]}
    lines = [f"  air        planned {'closes' if plan['closes'] else 'DOES NOT CLOSE'}: {plan['air_s_per_hour']:.0f} s "
             f"keyed an hour; flown: {got['air_s_per_hour']:.0f} s an hour over {got['hours']:.1f} h"]
    for kind in [*rows, *(k for k in got["rows"] if k not in rows)]:
        p, g = rows.get(kind), got["rows"].get(kind)
        if kind == "listening":
            continue
        lines.append(f"             {NAMES.get(kind, kind):<34} planned {p['air_s_per_hour'] if p else 0:>6.0f} s/h, "
                     f"flown {g['air_s_per_hour'] if g else 0:>6.0f} s/h")
    pos = got["positions"]
    share = f"{pos['share']:.1%}" if pos["share"] is not None else "-"
    lines.append(f"             positions: {pos['on_air']} on air, {share} of {pos['periods']} periods, longest gap "
                 f"{pos['longest_gap_s']:.0f} s (period {plan['period_s']:g} s)")
    m = got["musings"]
    if m["made"]:
        d, pd = m["delay_s"], plan.get("musing_delay_s") or {}
        lines.append(f"             musings: {m['aired']}/{m['made']} on air; made to first part: median "
                     f"{d.get('median', 0) / 60:.1f} min, 90th pct {d.get('p90', 0) / 60:.1f} min (planned "
                     f"{pd.get('median', 0) / 60:.1f} / {pd.get('p90', 0) / 60:.1f}); shortest part "
                     f"{m['shortest_part_chars'] if m['shortest_part_chars'] is not None else '-'} characters")
        for key, planned, what in (("sentence_delay_s", "musing_sentence_delay_s", "first $$ part whole on air"),
                                   ("whole_delay_s", "musing_whole_delay_s", "last $$ part (the musing whole)")):
            d, pd = m.get(key) or {}, plan.get(planned) or {}
            if d or pd:
                lines.append(f"             made to its {what}: median {d.get('median', 0):.0f} s, 90th pct "
                             f"{d.get('p90', 0):.0f} s, longest {d.get('max', 0):.0f} s (planned "
                             f"{pd.get('median', 0):.0f} / {pd.get('p90', 0):.0f} / {pd.get('max', 0):.0f} s)")
    pics = got["pictures"]
    if pics["heard_of"] or plan.get("pictures_per_hour"):
        lines.append(f"             pictures: {pics['whole_at_ground']} of {pics['heard_of']} whole at the ground")
    return lines
