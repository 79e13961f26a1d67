"""The report's "Substance" section: how much each model's replies say beyond the owner's commonest
words, beside the owner's own held-out turns; `voice-of-flight` shows the same table for musings.

    substance_result(fillers, owner_turns, generated)   SubstanceResult: the owner's held-out turns'
                                                        figures, then each model's replies'
    substance_table(result)                             the table's Markdown rows
    substance_lines(result)                             the section: the table, what it means, the warnings

The measures and the rule are stratoecho/substance.py's: a model **says little** when its replies
carry under half the owner's words beyond the fillers a reply, or fewer than 80 % of them are
distinct, whatever the voice classifier says of them. A persona can be all voice and no substance
(issue 49: a German owner's persona answered "ja", "haha", "ich hab keine" and read 100 % his).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from stratoecho import substance as S

from .report_md import md_text

OWNER_LABEL = "owner, held-out"  # as evaluate.voice.OWNER_SET labels it, so its row in "Whose voice" finds it
SHOWN_FILLERS = 20  # of the owner's fillers, named in the section


@dataclass(frozen=True)
class SubstanceSet:
    label: str  # as in "Whose voice", so that a row can be found by it
    role: str  # "ceiling" (the owner's held-out turns), "base", "tuned", "flown", "control" (a base's flight)
    figures: S.Substance


@dataclass
class SubstanceResult:
    """The section's sets, the owner's first; `note` says why nothing was measured (no fillers)."""

    fillers: tuple[str, ...]
    sets: list[SubstanceSet] = field(default_factory=list)
    note: str = ""

    @property
    def owner(self) -> S.Substance | None:
        return next((s.figures for s in self.sets if s.role == "ceiling"), None)

    def find(self, role: str) -> SubstanceSet | None:
        return next((s for s in self.sets if s.role == role), None)

    def says_little(self, s: SubstanceSet) -> bool | None:
        """The verdict on a model's set (None for the owner's own turns, or where it cannot be told)."""
        if s.role == "ceiling" or self.owner is None:
            return None
        return S.says_little(s.figures, self.owner)

    def cell(self, label: str) -> str | None:
        """The "Whose voice" table's cell for the set of `label`: its words beyond the fillers a
        text, marked where it says little; None where there is no such set."""
        s = next((x for x in self.sets if x.label == label), None)
        if s is None or s.figures.words_beyond is None:
            return None
        return f"{s.figures.words_beyond:.1f}" + (" **says little**" if self.says_little(s) else "")

    def lines(self) -> list[str]:
        """The report's section (substance_lines): report_md renders it without importing this module."""
        return substance_lines(self)

    def warnings(self) -> list[str]:
        """A sentence for each model that says little, with the reasons."""
        owner = self.owner
        return [f"{s.label}: **says little** beside the owner: {'; '.join(S.shortfalls(s.figures, owner))}"
                for s in self.sets if self.says_little(s)]

    def eval_figures(self) -> dict:
        """persona.toml [eval]: the flown model's figures, the owner's rate and the verdict; a
        figure not measured is left out (TOML has no null)."""
        flown, owner = self.find("flown"), self.owner
        out: dict = {}
        if flown is not None:
            f = flown.figures
            out.update(substance_words_beyond=f.words_beyond, substance_distinct_share=f.distinct_share,
                       substance_distinct2=f.distinct_2, substance_filler_only_share=f.filler_only_share,
                       says_little=self.says_little(flown))
        if owner is not None:
            out["owner_substance_words_beyond"] = owner.words_beyond
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in out.items() if v is not None}

    def summary(self) -> dict:
        """The figures as plain data (eval --json, voice-of-flight --json)."""
        return {"fillers": list(self.fillers), "min_distinct_share": S.MIN_DISTINCT_SHARE,
                "min_words_beyond_ratio": S.MIN_WORDS_BEYOND_RATIO, **({"note": self.note} if self.note else {}),
                "sets": [{"label": s.label, "role": s.role, **s.figures.to_dict(), "says_little": self.says_little(s)}
                         for s in self.sets]}


def substance_result(fillers: Sequence[str], owner_turns: Sequence[str],
                     generated: Sequence[tuple[str, str, Sequence[str]]], musings: dict | None = None) -> SubstanceResult:
    """The owner's held-out turns, then each (label, role, texts) of `generated` in order, measured
    against `fillers` (stratoecho.substance.fillers of the owner's training messages). `musings`
    (label -> stratoecho.musing_quality.Musing list, the same texts with their facts) adds the share
    of this moment to those sets."""
    if not fillers:
        return SubstanceResult((), note="no training messages of the owner's to learn the commonest words from")
    sets = [SubstanceSet(OWNER_LABEL, "ceiling", S.measure(owner_turns, fillers))]
    sets += [SubstanceSet(label, role, S.measure(texts, fillers, (musings or {}).get(label)))
             for label, role, texts in generated]
    return SubstanceResult(tuple(fillers), sets)


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.0f} %"


def _f(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}"


def substance_table(result: SubstanceResult) -> list[str]:
    """The table: one row a set, the share of this moment where a set has one (musings)."""
    moment = any(s.figures.of_this_moment is not None for s in result.sets)
    rows = [f"| texts | n | words beyond the owner's {len(result.fillers)} commonest, a text | only fillers | distinct | "
            "distinct-2 |" + (" of this moment |" if moment else "") + " verdict |",
            "|---|---:|---:|---:|---:|---:|" + ("---:|" if moment else "") + "---|"]
    for s in result.sets:
        f, little = s.figures, result.says_little(s)
        verdict = ("the owner" if s.role == "ceiling" else "–" if little is None
                   else "**says little**" if little else "says something")
        rows.append(f"| {md_text(s.label, 60)} | {f.texts} | {'–' if f.words_beyond is None else f'{f.words_beyond:.1f}'} | "
                    f"{_pct(f.filler_only_share)} | {_pct(f.distinct_share)} | {_f(f.distinct_2)} |"
                    + (f" {_pct(f.of_this_moment)} |" if moment else "") + f" {verdict} |")
    return rows


def substance_lines(result: SubstanceResult | None) -> list[str]:
    """The section, heading included (nothing without a result)."""
    if result is None:
        return []
    L = ["## Substance", ""]
    if not result.sets:
        return L + [f"Not measured: {md_text(result.note, 300)}.", ""]
    shown = ", ".join(f'"{md_text(w, 20)}"' for w in result.fillers[:SHOWN_FILLERS])
    L += [f"What the replies say beyond the owner's {len(result.fillers)} commonest words in the training messages "
          f"(the fillers: {shown}{' …' if len(result.fillers) > SHOWN_FILLERS else ''}), beside the owner's own "
          "held-out turns. Words are letters, case-folded; placeholders and numbers are not words; a text's words "
          f"beyond the fillers count up to {S.MAX_WORDS_A_TEXT} (a reply stops at 48 tokens: one long post of the "
          "owner's would set a bar no reply can reach). A reply of fillers only "
          "(\"ja digga\", \"haha\", an emoji) says nothing of its own; a reply the same as another (case, spacing "
          "and end punctuation ignored) is not distinct; distinct-2 is the share of different word pairs.", ""]
    L += substance_table(result)
    owner = result.owner
    bar = "–" if owner is None or owner.words_beyond is None else f"{S.MIN_WORDS_BEYOND_RATIO * owner.words_beyond:.1f}"
    L += ["", f"A model **says little** when its replies carry fewer than {100 * S.MIN_WORDS_BEYOND_RATIO:.0f} % of the owner's "
              f"words beyond the fillers a reply (here {bar}) or fewer than {100 * S.MIN_DISTINCT_SHARE:.0f} % of them are "
              "distinct (the owner's own share, where that is lower), whatever the classifier says of its voice: "
              "a persona can copy its owner's manner and say nothing.", ""]
    warnings = result.warnings()
    return L + [f"- {w}" for w in warnings] + ([""] if warnings else [])
