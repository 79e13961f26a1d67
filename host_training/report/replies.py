"""The report's "Language and repetition" section: which language each model's replies are in,
beside the owner's own held-out turns, and whether they collapse into one reply.

    reply_figures(label, texts, owner_language)   a set of texts: its languages (language.py)
                                                  and how many of them are the same text
    language_lines(result)                        the section's Markdown

A persona on a base that does not write the owner's language answers in the base's language or
in babble (issue 40: a German owner's persona on an English-only base); one trained on a few
hundred short messages may answer everything with one of them ("ja digga" to every message).
Both are measured on the replies the report already generates (several to each held-out
message, each with its own seed) and warned about in words.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from host_training import language as L
from stratoecho.substance import fold as fold  # how repeats are compared, the substance's distinct share too

from .report_md import md_text

# A model's replies are "not in the owner's language" when, of those that say enough to tell,
# this much less are in it than of the owner's own held-out turns ...
LANGUAGE_TOLERANCE = 0.20
# ... and "collapse" when this much less of them are distinct than of the owner's turns, or when one
# reply is this share of them all.
DISTINCT_TOLERANCE = 0.25
MIN_DECIDED = 10  # replies that say enough to tell the language, for the language to be judged at all
TOP_REPLY_SHARE = 0.20


@dataclass(frozen=True)
class ReplyFigures:
    label: str
    role: str  # "owner" (held-out turns), "base", "tuned", "flown"
    texts: int
    profile: L.Profile
    in_language: float | None  # share of the decided texts in the owner's language; None when none decided
    distinct: int  # different texts (folded)
    top: tuple[str, int] = ("", 0)  # the most common text and how often

    @property
    def distinct_share(self) -> float | None:
        return self.distinct / self.texts if self.texts else None

    @property
    def top_share(self) -> float | None:
        return self.top[1] / self.texts if self.texts else None


def reply_figures(label: str, role: str, texts: Sequence[str], owner_language: str | None) -> ReplyFigures:
    texts = [t for t in texts if t is not None]
    profile = L.profile(texts)
    in_language = profile.share(owner_language) if owner_language and profile.decided else None
    folded = Counter(fold(t) for t in texts)
    top = folded.most_common(1)[0] if folded else ("", 0)
    return ReplyFigures(label, role, len(texts), profile, in_language, len(folded), top)


@dataclass
class LanguageResult:
    owner_language: str | None  # the bundle's persona.language, or what the owner's held-out turns are in
    sets: list[ReplyFigures] = field(default_factory=list)  # the owner's turns first
    base_note: str | None = None  # build's warning that the base does not write the language

    def warnings(self) -> list[str]:
        """Plain sentences for each model whose replies are not in the owner's language or collapse."""
        owner = next((s for s in self.sets if s.role == "owner"), None)
        out: list[str] = []
        for s in self.sets:
            if s.role == "owner" or owner is None:
                continue
            if self.owner_language and owner.in_language is not None and s.profile.decided < MIN_DECIDED:
                out.append(f"{s.label}: only {s.profile.decided} of its {s.texts} replies say enough to tell their "
                           "language: too few to judge whether they are in the owner's")
            elif self.owner_language and owner.in_language is not None and (
                    s.in_language is None or s.in_language < owner.in_language - LANGUAGE_TOLERANCE):
                main = s.profile.main
                out.append(f"{s.label}: **its replies are not in the owner's language** ({L.name(self.owner_language)}): "
                           + (f"{_pct(s.in_language)} of those that say enough to tell, against the owner's "
                              f"{_pct(owner.in_language)}" if s.in_language is not None else "none says enough to tell")
                           + (f"; most are {L.name(main)}" if main and main != self.owner_language else ""))
            few = owner.distinct_share is not None and s.distinct_share is not None and \
                s.distinct_share < owner.distinct_share - DISTINCT_TOLERANCE
            if few or (s.top_share or 0) > max(TOP_REPLY_SHARE, (owner.top_share or 0) + 0.1):
                out.append(f"{s.label}: **its replies collapse**: {s.distinct} different of {s.texts} "
                           f"({_pct(s.distinct_share)}, the owner's turns {_pct(owner.distinct_share)}); the most common "
                           f"one {s.top[1]} times")
        return out

    def eval_figures(self) -> dict:
        """For persona.toml [eval]: the flown model's share in the owner's language and of distinct replies."""
        flown = next((s for s in self.sets if s.role == "flown"), None)
        if flown is None:
            return {}
        figures = {"reply_language": flown.profile.main or L.UNDECIDED,
                   "distinct_reply_share": round(flown.distinct_share, 4) if flown.distinct_share is not None else None}
        if flown.in_language is not None:
            figures["replies_in_owner_language"] = round(flown.in_language, 4)
        return {k: v for k, v in figures.items() if v is not None}


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.0f} %"


def language_lines(result: LanguageResult | None, redact: Callable[[str], str] = lambda t: t) -> list[str]:
    """The section, heading included: a table of each set's language and repetition, then the
    warnings. `redact` (report.Redactor.redact) replaces private values in the replies shown."""
    if result is None or not result.sets:
        return []
    own = result.owner_language
    L_ = ["## Language and repetition", "",
          f"The owner writes {L.name(own)}" + (f" ({own})" if own else "") + ". Each text's language is told by "
          "its short frequent words, letters or script (host_training/language.py); texts too short to tell "
          "(\"haha\", \"ok\") are undecided and left out of the shares. A reply the same as another (ignoring case, "
          "spacing and end punctuation) is not distinct.", ""]
    L_ += ["| whose | texts | undecided | in the owner's language | mostly | distinct | the most common, times |",
           "|---|---:|---:|---:|---|---:|---|"]
    for s in result.sets:
        und = 1 - s.profile.decided / s.texts if s.texts else None
        L_.append(f"| {md_text(s.label, 60)} | {s.texts} | {_pct(und)} | {_pct(s.in_language)} | {L.name(s.profile.main)} | "
                  f"{_pct(s.distinct_share)} | {md_text(redact(s.top[0]), 40)}, {s.top[1]} |")
    L_.append("")
    if result.base_note:
        L_ += [f"Build said: {md_text(result.base_note, 600)}.", ""]
    warnings = result.warnings()
    L_ += [f"- {w}" for w in warnings] + ([""] if warnings else [])
    if not warnings:
        L_ += ["Every model's replies are in the owner's language about as often as the owner's own turns, "
               "and none collapses into one reply.", ""]
    return L_
