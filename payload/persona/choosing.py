"""Which of several candidate musings airs (issue 49). Pure: candidates in, one (or none) out.

The persona writes `N` candidates for a moment (payload/policy/budget.py `candidates`: as many as
the board's tokens/s allow in a share of the musing period); each is judged on board and the best
that may air goes:

1. **may it air at all**: the truth guard let it through (payload/persona/truth.py: nothing false,
   or cut to what is true) and it does not copy a line of the owner's that its prompt showed
   (stratoecho/exemplars.py `copies`: her chat aired again is not a musing);
2. **ranked**, in this order: a fresh opening (not one of the last twelve musings': "Not a
   template", docs/payload.md); a true figure of the flight where one is owed; more than fillers
   (stratoecho/substance.py: "ja", "haha" are not a musing); something true of this moment (a
   claim of what its prompt told, the sun or the cold included: a persona that writes of the
   night train it once took says little of its flight); then its *quality*, the mean of how
   much it reads as the owner's (the bundle's voice classifier, stratoecho/voice_score.py) and how
   much it says (its words beyond the owner's commonest, against her own rate), ties to the
   earlier one.

A candidate with everything in step 2 but the quality is *ideal*: with one candidate a moment,
the first ideal one goes as before (no quality to compare); the payload makes more (up to
truth.MAKE_AGAIN again) only while none may air or none is ideal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

NO_VOICE = 0.5  # a bundle without a voice classifier: every candidate as likely hers as not


@dataclass(frozen=True)
class Candidate:
    """One version of a musing, judged."""

    index: int  # the order it was made in
    text: str | None  # what may air (the truth guard's: cut where it claimed something false), None: nothing
    fresh: bool = True  # its opening is none of the recent musings'
    figure: bool = False  # what may air states a true figure of the flight
    grounded: bool = False  # what may air says something true of this moment (a told kind, the sun included)
    copies: bool = False  # it repeats a line of the owner's its prompt showed
    beyond: int | None = None  # its words beyond the owner's fillers (None: the bundle has no fillers)
    voice: float | None = None  # P(the owner's) by the bundle's classifier (None: it has none)

    @property
    def airs(self) -> bool:
        return self.text is not None and not self.copies

    @property
    def says_something(self) -> bool:
        return self.beyond is None or self.beyond > 0

    def quality(self, owner_beyond: float | None = None) -> float:
        """0..1: the mean of its voice and its substance (words beyond fillers, against the
        owner's own rate per turn, capped at 1; 1 where nothing is known)."""
        voice = NO_VOICE if self.voice is None else self.voice
        if self.beyond is None:
            substance = 1.0
        else:
            substance = min(1.0, self.beyond / max(1.0, owner_beyond or 1.0))
        return (voice + substance) / 2

    def rank(self, owes_figure: bool, owner_beyond: float | None = None) -> tuple:
        return (self.fresh, self.figure or not owes_figure, self.says_something, self.grounded,
                self.quality(owner_beyond), -self.index)

    def ideal(self, owes_figure: bool) -> bool:
        return self.airs and self.fresh and (self.figure or not owes_figure) and self.says_something


def choose(candidates: Sequence[Candidate], owes_figure: bool, owner_beyond: float | None = None) -> Candidate | None:
    """The candidate that airs: the best ranked of those that may; None when none may."""
    airing = [c for c in candidates if c.airs]
    if not airing:
        return None
    return max(airing, key=lambda c: c.rank(owes_figure, owner_beyond))


def why_not(c: Candidate, owes_figure: bool) -> str:
    """Why a candidate that may air is not ideal, for the log ("opening", "no figure", "fillers")."""
    if not c.fresh:
        return "opening"
    if owes_figure and not c.figure:
        return "no figure"
    return "fillers" if not c.says_something else ""
