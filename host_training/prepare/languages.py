"""Which language the owner writes (language.py over the owner's kept messages), and the short
messages the owner repeats (catchphrases, kept as often as written: sessions.DEFAULT_DEDUP_MIN_CHARS),
for report.json and the summary. `build` reads the language back to choose its base and the
system prompt's language."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from host_training import language as L
from host_training.base import base_choice
from host_training.prepare.sessions import normalise
from host_training.prepare.spill import Spill

TOP_MARKERS = 3  # catchphrases named in the summary
MIN_MARKER_REPEATS = 3  # a short message written this often is named as a habit


@dataclass(frozen=True)
class OwnerWriting:
    language: L.Profile
    markers: list[tuple[str, int]]  # (a short message the owner repeats, how often), most first
    messages: int  # the owner's kept messages


def owner_writing(spill: Spill, min_chars: int) -> OwnerWriting:
    """One pass over the owner's kept messages (this run's and those DIR held)."""
    texts: list[str] = []
    short: Counter[str] = Counter()
    for m in spill.ordered():
        if not m.is_owner:
            continue
        texts.append(m.text)
        norm = normalise(m.text)
        if norm and len(norm) < min_chars:
            short[norm] += 1
    markers = [(t, n) for t, n in short.most_common() if n >= MIN_MARKER_REPEATS and any(c.isalpha() for c in t)]
    return OwnerWriting(L.profile(texts), markers, len(texts))


def report_entry(w: OwnerWriting) -> dict:
    """report.json's "language" (read back by build: language.from_record) and the habits' counts
    (their texts stay in messages.jsonl, not here)."""
    return {**w.language.record(),
            "repeated_short_messages": {"texts": len(w.markers), "messages": sum(n for _, n in w.markers)}}


def summary_lines(w: OwnerWriting, recommendation: str | None) -> list[str]:
    """What the summary says about the owner's language, the owner's habits and the base for `build`."""
    lines = [f"the owner writes {w.language.text()}"]
    if len(w.language.languages) > 1:
        lines[0] += f"; a persona of the owner writes {', '.join(L.name(c) for c in w.language.languages)}"
    if w.markers:
        named = ", ".join(f'"{t}" {n}' for t, n in w.markers[:TOP_MARKERS])
        lines.append(f"the owner's most repeated short messages, kept as often as written: {named}")
    if recommendation:
        lines.append(recommendation)
    return lines


def recommendation(profile: L.Profile) -> str | None:
    """Which pinned base `build` should start from for this owner, as a line of the summary."""
    codes = profile.languages
    if not codes:
        return None
    said = " and ".join(L.name(c) for c in codes)
    name = base_choice.recommend(codes)
    if name is None:
        return f"no pinned base writes {said}: give build --base a model that does (docs/training.md)"
    return (f"build with --base {name}, the smallest pinned base that writes {said} "
            f"(or --base {base_choice.RECOMMENDED})")
