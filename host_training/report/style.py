"""Style figures of a set of turns: length in characters, words and lines, casing,
punctuation and emoji, questions, vocabulary and its overlap with the owner's.
"""

from __future__ import annotations

import math
import statistics
import unicodedata
from collections.abc import Iterable, Sequence

from stratoecho.privacy import PLACEHOLDER

# WORD (letters, with inner apostrophes) and EMOJI (one as a person sees it) are the owner's voice
# classifier's too, which the Pi runs: they live in stratoecho, read alike on both sides.
from stratoecho.stylometry import EMOJI as EMOJI
from stratoecho.stylometry import WORD as WORD
from stratoecho.stylometry import count_emoji as count_emoji


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), interpolating linearly between ranks (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0-100")
    s = sorted(values)
    pos = (len(s) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def distribution(values: Sequence[float]) -> dict[str, float] | None:
    """{"mean", "median", "p90"} of `values`; None when there are none."""
    if not values:
        return None
    return {"mean": statistics.fmean(values), "median": statistics.median(values), "p90": percentile(values, 90)}


def count_lines(text: str) -> int:
    """Non-blank lines: a burst of messages that prepare joined with newlines counts each."""
    return sum(1 for line in text.split("\n") if line.strip())


def count_punctuation(text: str) -> int:
    """Characters in Unicode's punctuation categories (P*): . , ! ? ' " - ( ) … « » and so on."""
    return sum(1 for c in text if unicodedata.category(c).startswith("P"))


def upper_case_share(text: str) -> float | None:
    """The share of the cased letters of `text` that are upper-case (placeholders such as
    <PHONE_1> left out); None for a text with no cased letter."""
    cased = [c for c in PLACEHOLDER.sub(" ", text) if c.isupper() or c.islower()]
    return sum(c.isupper() for c in cased) / len(cased) if cased else None


def lower_start(text: str) -> bool | None:
    """Whether the first cased letter of `text` (placeholders left out) is lower-case, as in
    "ok see you"; None for a text with no cased letter."""
    first = next((c for c in PLACEHOLDER.sub(" ", text) if c.isupper() or c.islower()), None)
    return None if first is None else first.islower()


def words(text: str) -> list[str]:
    """Case-folded letter words of `text` (numbers and placeholders' digits left out)."""
    return [w.casefold() for w in WORD.findall(PLACEHOLDER.sub(" ", text))]


def vocabulary(texts: Iterable[str]) -> set[str]:
    return {w for t in texts for w in words(t)}


def style_figures(texts: Sequence[str]) -> dict:
    """The style of a set of turns. Rates per 100 characters are over all the turns together;
    shares are of turns (casing: of the turns with a cased letter; `upper_case_share` is the
    mean over turns of each turn's share of upper-case letters). With no turns every figure
    but `turns` is None."""
    n = len(texts)
    chars = sum(len(t) for t in texts)
    per_100 = (lambda k: 100 * k / chars) if chars else (lambda k: None)
    share = (lambda k: k / n) if n else (lambda k: None)
    lines = [count_lines(t) for t in texts]
    upper = [u for u in map(upper_case_share, texts) if u is not None]
    starts = [b for b in map(lower_start, texts) if b is not None]
    return {
        "turns": n,
        "chars": distribution([len(t) for t in texts]),
        "words": distribution([len(t.split()) for t in texts]),
        "lines": distribution(lines),
        "multi_line_share": share(sum(1 for k in lines if k > 1)),
        # casing, of the turns that have a cased letter
        "upper_case_share": statistics.fmean(upper) if upper else None,
        "lower_start_share": sum(starts) / len(starts) if starts else None,
        "punctuation_per_100_chars": per_100(sum(count_punctuation(t) for t in texts)),
        "emoji_per_100_chars": per_100(sum(count_emoji(t) for t in texts)),
        "emoji_turn_share": share(sum(1 for t in texts if count_emoji(t))),
        "question_share": share(sum(1 for t in texts if "?" in t)),
        "vocabulary_words": sum(len(words(t)) for t in texts) if n else None,
        "vocabulary_size": len(vocabulary(texts)) if n else None,
    }


def vocabulary_overlap(generated: Sequence[str], owner_held_out: Sequence[str], owner_training_vocab: set[str]) -> dict:
    """How much of the owner's vocabulary the persona uses.

    jaccard: |G ∩ O| / |G ∪ O| of the word sets of the generated replies and the held-out
    owner turns; seen_share: of the generated word occurrences, the share the owner used in
    training (low means invented or borrowed words). None where there is nothing to divide by.
    """
    gen_words = [w for t in generated for w in words(t)]
    g, o = set(gen_words), vocabulary(owner_held_out)
    union = g | o
    return {
        "jaccard": len(g & o) / len(union) if union else None,
        "seen_share": sum(1 for w in gen_words if w in owner_training_vocab) / len(gen_words) if gen_words else None,
        "generated_words": len(gen_words),
        "generated_vocabulary": len(g),
        "owner_vocabulary": len(o),
    }
