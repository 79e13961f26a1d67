"""The persona's musings in a bench flight's report: every musing the payload made, read back
from its log with the facts its prompt carried, measured by `stratoecho.musing_quality`.

The payload logs one event per musing it made (docs/payload.md, "What each musing was told"):
`musing` (queued: its text, whether the radio's budget cut it), `musing_empty` (nothing left
once placeholders were taken out), `musing_too_short` (its text: under 25 characters, not sent,
the persona asked again), `musing_untrue` (its text: a false claim the truth guard caught; one cut
short is also a `musing`, the others are not sent), `musing_made_again` (its text: it could have
aired, but opened as a recent one did or stated no figure that was owed, and was made again),
`musing_passed_over` (its text: the last version made, worse than an earlier one that aired),
`musing_held_back` (its text, when not logged before: every version opened as a recent one did,
and none aired) or
`musing_dropped_by_guard` (no text: it held something private). Each carries `t_s`, `finish` and
`facts`. payload.log holds every boot's, in order. The claims are counted apart (truth_report.py).

    logged_musings(payload_log)                -> [LoggedMusing], as they came
    musings_section(out_dir, persona, first=5, bundle=None)
                                               -> {"quality", "claims", "substance", "first"}  (report.json's musings)
    quality_of_flight(out_dir)                 -> the figures alone: what tuning the prompt reads
    describe_musings(musings)                  -> the lines `sim report` prints
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from stratoecho.musing_quality import Musing, MusingFacts, judge, measure

from .logs import log_events
from .substance_report import describe_substance, substance_section
from .truth_report import claims_section, describe_claims

FIRST = 5  # musings shown as they came: the first ones, never chosen
EVENTS = ("musing", "musing_empty", "musing_too_short", "musing_untrue", "musing_made_again", "musing_passed_over",
          "musing_held_back", "musing_dropped_by_guard")
TEXTS = EVENTS[:-1]  # those that log the musing's text
TEXT_CHARS = 160  # of a musing in the words of `sim report`


@dataclass(frozen=True)
class LoggedMusing:
    t_s: float | None  # flight seconds on the bench
    boot: int | None
    seq: int | None  # its record's number; None when it was not queued
    musing: Musing
    withheld: list[str] | None  # the guard's reasons when it held the musing back (no text then)

    def entry(self) -> dict:
        """One of report.json's `musings.first`: the musing as it came, its facts and how it was judged."""
        m = self.musing
        entry = {"t_s": self.t_s, "boot": self.boot, "seq": self.seq}
        if self.withheld is not None:
            return {**entry, "text": None, "withheld_by_guard": self.withheld, "facts": m.facts.to_dict()}
        return {**entry, "text": m.text, "finish": m.finish, "facts": m.facts.to_dict(), "judged": judge(m).to_dict()}


def _int(v) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def logged_musings(payload_log: Path) -> list[LoggedMusing]:
    """Every musing event in `payload_log`, in order; lines that are not such JSON are skipped
    (the log also holds other events and, after a watchdog kill, Python's stack dumps)."""
    found = []
    for e in log_events(payload_log, '"musing'):
        if e.get("event") not in EVENTS:
            continue
        kind = e["event"]
        if kind == "musing_untrue" and e.get("action") == "cut":
            continue  # the same musing is logged again as the `musing` that aired, cut
        if kind == "musing_held_back" and "text" not in e:
            continue  # its version was logged when it was made again
        withheld = kind == "musing_dropped_by_guard"
        t_s = e.get("t_s")
        found.append(LoggedMusing(
            t_s=float(t_s) if isinstance(t_s, (int, float)) and not isinstance(t_s, bool) else None,
            boot=_int(e.get("boot")), seq=_int(e.get("seq")),
            musing=Musing(text=e.get("text") if kind in TEXTS and isinstance(e.get("text"), str) else "",
                          aired=kind == "musing",
                          facts=MusingFacts.from_dict(e.get("facts")), finish=str(e.get("finish") or ""),
                          cut_by_budget=e.get("cut") is True, raw_chars=_int(e.get("raw_chars")) or 0),
            withheld=[str(r) for r in e.get("reasons") or []] if withheld else None,
        ))
    # A version made again that aired after all (the best of those made) is logged twice: once here.
    aired = {(m.boot, m.t_s, m.musing.text) for m in found if m.seq is not None}
    return [m for m in found if m.seq is not None or m.musing.aired or (m.boot, m.t_s, m.musing.text) not in aired]


def musings_section(out_dir: Path, persona: bool = True, first: int = FIRST, bundle: Path | None = None) -> dict:
    """report.json's `musings.quality`, `claims`, `substance` and `first`, from out_dir/payload.log.
    The guard's drops are not measured (their text was never kept) but counted, and shown in
    `first` where they came. `bundle`: the persona's, whose [owner] the substance is read against."""
    if not persona:
        return {"quality": {"measured": 0, "note": "no persona flew"}, "first": []}
    claims = claims_section(out_dir)
    logged = logged_musings(Path(out_dir) / "payload.log")
    quality = measure([m.musing for m in logged if m.withheld is None])
    quality["withheld_by_guard"] = sum(m.withheld is not None for m in logged)
    if not logged:
        quality["note"] = "the persona made no musings"
    return {"quality": quality, "claims": claims,
            "substance": substance_section([m.musing for m in logged if m.withheld is None], bundle),
            "first": [m.entry() for m in logged[:first]]}


def quality_of_flight(out_dir: Path) -> dict:
    """The musing figures of a finished `sim fly` folder, measured now from its payload.log."""
    try:
        persona = json.loads((Path(out_dir) / "report.json").read_text()).get("persona") is not None
    except (FileNotFoundError, json.JSONDecodeError):
        persona = True  # no report to say: the log does
    return musings_section(out_dir, persona)["quality"]


# ----------------------------------------------------------------------------- in words


def _pct(s: dict) -> str:
    if s.get("share") is None:
        return f"{s['count']}/{s['of']}"
    lo, hi = s["ci95"]
    return f"{s['count']}/{s['of']} ({s['share']:.0%}, 95 % CI {lo:.0%}-{hi:.0%})"


def _facts_words(f: dict) -> str:
    words = [f["phase"]] if f.get("phase") else []
    if f.get("alt_m") is not None:
        words.append(f"{f['alt_m'] / 1000:.1f} km")
    if f.get("temp_c") is not None:
        words.append(f"{f['temp_c']:.0f} °C")
    if f.get("sun_up") is not None:
        words.append("sun up" if f["sun_up"] else "sun down")
    words += [f"asked {r['api']}: {r['outcome']}" for r in f.get("requests") or []]
    return ", ".join(words)


def describe_musings(musings: dict) -> list[str]:
    """The musing lines of `sim report`: the figures, then the first musings as they came."""
    q = musings.get("quality")
    if not q:
        return []  # a report from before the measure, and no log to measure
    if not q.get("measured"):
        return [f"  words      {q.get('note', 'no musings to measure')}"
                + (f"; {q['withheld_by_guard']} held back by the guard" if q.get("withheld_by_guard") else "")]
    g, d = q["grounded"], q["degenerate"]
    how = ", ".join(f"{v['count']} {k.replace('_', ' ')}" for k, v in d["by_kind"].items() if v["count"])
    lines = [
        f"  words      {q['measured']} musings measured ({q.get('withheld_by_guard', 0)} held back by the guard); "
        f"grounded {_pct(g)}",
        f"             degenerate {_pct(d)}" + (f": {how}" if how else "")
        + f"; cut by the budget {q['cut_by_budget']['count']}",
        "             grounded by kind: " + ", ".join(
            f"{k} {v['count']}/{v['of']}" + (f" ({v['mismatched']} mismatched)" if v["mismatched"] else "")
            for k, v in g["by_kind"].items()),
    ]
    if "figure" in q:  # reports from before issue 40 have none
        o = q["openings"]
        lines.append(f"             grounded without the sun {_pct(g['without_sun'])}; a true figure "
                     f"({', '.join(k.replace('_', ' ') for k in q['figure']['kinds'])}) {_pct(q['figure'])}")
        lines.append(f"             openings: the commonest in {_pct(o['most'])} (goal at most {o['most']['goal']:.0%}): "
                     + "; ".join(f"\"{t['opening']}\" {t['count']}" for t in o["top"]))
    dist, near = q["distinct"], q["near_duplicates"]
    if dist["words"]:
        two = "-" if dist["distinct_2"] is None else f"{dist['distinct_2']:.2f}"  # one-word musings: no bigrams
        lines.append(f"             distinct-1 {dist['distinct_1']:.2f}, distinct-2 {two} over {dist['words']} words; "
                     f"near-duplicates {near['count']}/{near['of']}")
    if musings.get("substance"):
        lines += describe_substance(musings["substance"])
    if musings.get("claims"):
        lines += describe_claims(musings["claims"])
    first = musings.get("first") or []
    if first:
        lines.append(f"  first {len(first)} musings, as they came:")
    for e in first:
        when = f"{e['t_s'] / 60:5.1f} min" if e.get("t_s") is not None else "    ? min"
        if e.get("text") is None:
            said = f"(held back by the guard: {', '.join(e.get('withheld_by_guard') or [])})"
        else:
            text = e["text"] if len(e["text"]) <= TEXT_CHARS else e["text"][:TEXT_CHARS - 1] + "…"
            j = e.get("judged") or {}
            tags = [*(j.get("grounded") or []), *(f"not {k}" for k in j.get("mismatched") or []),
                    *(k.replace("_", " ") for k in j.get("degenerate") or [])]
            said = json.dumps(text, ensure_ascii=False) + (f"  [{', '.join(tags)}]" if tags else "")
        lines.append(f"    {when}  {said}")
        lines.append(f"               told: {_facts_words(e.get('facts') or {}) or 'nothing measured'}")
    return lines

