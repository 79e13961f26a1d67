"""How much a persona says beyond its owner's commonest words: the measure a collapsed persona fails.

A persona trained on a few hundred chat messages can learn its owner's manner and little else. A
German owner's persona answered his friends "ja", "haha", "ich hab keine", "ich hab keine woche":
the voice classifier took every reply for his, yet 65 % of them were distinct and they carried 0.4
words a reply beyond his 60 commonest, where his own held-out messages carry 6.4 (issue 49). So
beside the voice, what a set of texts says is measured against the owner's own held-out turns:

    fillers(texts, n=FILLERS)       the owner's n commonest words in `texts` (his training messages),
                                    case-folded, commonest first: "ja", "digga", "ich", "haha" ...
    words(text)                     the words counted: letters with inner apostrophes, case-folded;
                                    privacy placeholders (<PHONE_1>) and numbers are not words
    words_beyond(text, fillers)     how many of its words (each time it is written) are not fillers
    filler_only(text, fillers)      it says nothing beyond them: "ja digga", "haha", an emoji alone
    fold(text)                      a text as repeats are compared: case, spacing, end punctuation ignored
    distinct_share(texts)           different texts (folded) over all of them
    distinct_2(texts)               different word bigrams over all bigrams (within a text)
    of_this_moment(musings)         the share of musings grounded in what the payload sensed when it
                                    made them (stratoecho.musing_quality.judge: a true claim of a kind
                                    its prompt told)
    measure(texts, fillers)         -> Substance: a set's figures (a text's words beyond counted
                                    up to MAX_WORDS_A_TEXT)
    shortfalls(model, owner)        why `model` says little beside `owner`, in words; [] when it does not
    says_little(model, owner)       the verdict: True, False, or None where it cannot be told

The rule is the issue's bar for a build worth flying: a model says little when its texts carry
fewer than MIN_WORDS_BEYOND_RATIO (half) the owner's words beyond his fillers a text, or when
fewer than MIN_DISTINCT_SHARE (80 %) of them are distinct (or fewer than the owner's own share, if
his is lower). The German persona above fails both; his own turns and a varied persona pass.

Pure and light (no I/O, no numpy): the report and the flight report measure with it, and the
payload chooses among candidate musings by words_beyond with the fillers the bundle carries
(persona.toml [owner] fillers, words_beyond).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import asdict, dataclass

from .musing_quality import Musing, distinct_n, judge
from .privacy import PLACEHOLDER
from .stylometry import WORD  # letters with inner apostrophes: the voice classifier's word, and the style's

FILLERS = 60  # the owner's commonest words that say nothing on their own: his function words and chat habits
MIN_DISTINCT_SHARE = 0.80  # of a model's replies at least this share distinct (or the owner's own, if lower) ...
MIN_WORDS_BEYOND_RATIO = 0.5  # ... and at least this share of the owner's words beyond his fillers a text
# A text's words beyond the fillers count up to this many: a reply stops at 48 tokens (about 35
# words), a musing at the radio's characters, and one long post among the owner's held-out turns
# (Ada's hold one of 327 words beyond, beside 26 of at most 21) would set a bar no reply can reach:
# her rate was 19.5 with it uncapped, 8.5 with it counted as 30.
MAX_WORDS_A_TEXT = 30

_FOLD = re.compile(r"[\s.!?,…]+")


def words(text: str) -> list[str]:
    """Case-folded letter words of `text` (numbers and placeholders' letters left out)."""
    return [w.casefold() for w in WORD.findall(PLACEHOLDER.sub(" ", text))]


def fillers(texts: Iterable[str], n: int = FILLERS) -> list[str]:
    """The `n` most frequent words of `texts`, commonest first (ties in order of first appearance)."""
    counts = Counter(w for t in texts for w in words(t))
    return [w for w, _ in counts.most_common(n)]


def words_beyond(text: str, fillers: Collection[str]) -> int:
    """How many of `text`'s words are not among `fillers` (case-folded, as `fillers` gives them;
    a set is fastest), each time written."""
    return sum(1 for w in words(text) if w not in fillers)


def filler_only(text: str, fillers: Collection[str]) -> bool:
    """Whether `text` says nothing beyond `fillers`: all its words are fillers, or it has none."""
    return words_beyond(text, fillers) == 0


def fold(text: str) -> str:
    """A text as repeats are compared: case, spacing and end punctuation ignored."""
    return _FOLD.sub(" ", text.casefold()).strip()


def distinct_share(texts: Sequence[str]) -> float | None:
    """The share of `texts` that differ once folded; None for no texts."""
    return len({fold(t) for t in texts}) / len(texts) if texts else None


def distinct_2(texts: Iterable[str]) -> float | None:
    """Different word bigrams over all bigrams, each text's own (musing_quality.distinct_n);
    None when no text has two words."""
    return distinct_n([words(t) for t in texts])["distinct_2"]


def of_this_moment(musings: Sequence[Musing]) -> float | None:
    """The share of `musings` that say something true of the moment they were made in: grounded
    in a kind of fact their prompt told (musing_quality.judge); None for no musings."""
    return sum(1 for m in musings if judge(m).grounded) / len(musings) if musings else None


@dataclass(frozen=True)
class Substance:
    """A set of texts' figures; a figure not measured is None (the owner's in the flight report is
    his words-beyond rate alone, from persona.toml [owner])."""

    texts: int
    words_beyond: float | None = None  # words beyond the owner's fillers a text (each up to MAX_WORDS_A_TEXT)
    distinct_share: float | None = None
    distinct_2: float | None = None
    filler_only_share: float | None = None
    of_this_moment: float | None = None  # musings only: grounded in the moment they were made

    def to_dict(self) -> dict:
        return asdict(self)


def measure(texts: Sequence[str], fillers: Collection[str], musings: Sequence[Musing] | None = None) -> Substance:
    """The figures of `texts` against the owner's `fillers`; with `musings` (the same texts with
    the facts each was made with) also the share of this moment."""
    texts = [t or "" for t in texts]
    if not texts:
        return Substance(0)
    known = frozenset(f.casefold() for f in fillers)  # "weiß" as its texts' words read: "weiss"
    beyond = [min(words_beyond(t, known), MAX_WORDS_A_TEXT) for t in texts]
    return Substance(len(texts), words_beyond=sum(beyond) / len(texts) if known else None,
                     distinct_share=distinct_share(texts), distinct_2=distinct_2(texts),
                     filler_only_share=sum(b == 0 for b in beyond) / len(texts) if known else None,
                     of_this_moment=of_this_moment(musings) if musings is not None else None)


def distinct_bar(owner: Substance) -> float:
    """The share of distinct texts a model must reach: MIN_DISTINCT_SHARE, or the owner's own if lower."""
    own = owner.distinct_share
    return MIN_DISTINCT_SHARE if own is None else min(MIN_DISTINCT_SHARE, own)


def shortfalls(model: Substance, owner: Substance) -> list[str]:
    """Why `model` says little beside `owner`, one phrase a reason ([] when it does not, or
    cannot be told)."""
    out = []
    if model.words_beyond is not None and owner.words_beyond is not None \
            and model.words_beyond < MIN_WORDS_BEYOND_RATIO * owner.words_beyond:
        out.append(f"{model.words_beyond:.1f} words beyond the owner's fillers a text, under "
                   f"{100 * MIN_WORDS_BEYOND_RATIO:.0f} % of the owner's {owner.words_beyond:.1f}")
    bar = distinct_bar(owner)
    if model.distinct_share is not None and model.distinct_share < bar:
        out.append(f"{100 * model.distinct_share:.0f} % of its texts distinct, under {100 * bar:.0f} %")
    return out


def says_little(model: Substance, owner: Substance) -> bool | None:
    """Whether `model` says little beside its `owner` (`shortfalls`); None when the model has no
    texts or the owner's words-beyond rate is unknown."""
    if not model.texts or owner.words_beyond is None:
        return None
    return bool(shortfalls(model, owner))
