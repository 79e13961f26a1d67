"""Whether the persona's musings are worth reading: grounded in what its prompt told it, not
degenerate, not saying the same thing again. Pure functions, no I/O: the bench measures a
flight with them (sim/bench/report/musing_report.py), and a workstation can measure generations the same way.

    MusingFacts                  what the payload knew when it made a musing (logged with the musing)
    judge(Musing) -> Judgement   one musing: the kinds of fact it is grounded in, mismatches, degeneracy
    measure([Musing]) -> dict    a sample's figures: counts, shares and Wilson 95 % intervals
    opening(text) -> str         its first three words: a template repeats them (the payload makes
                                 a musing again that opens as a recent one did)

Grounded and mismatched are read off the musing's claims (stratoecho/musing_claims.py, which has
each kind's rule and tolerance, the same the payload's truth guard holds a musing to before it
airs): a kind is grounded when a claim of it is true, mismatched when it is claimed only falsely.

Beside grounded: grounded in anything but the sun (sun words were most of it), a *figure* (a true
claim of the height, the temperature, the phase or the time aloft: what a listener can hold
against the telemetry; the goal is 30 % of musings), and the openings (the goal: none in more than
15 % of the musings).

Degenerate kinds: `empty` (the model said nothing), `no_words` (only privacy placeholders,
punctuation or symbols), `loop` (a run of 1-4 characters repeated to 12 or more, the same
sentence of two or more words twice, or a word n-gram (n <= 4) repeated at least 3 times —
4 for single words — whose occurrences cover half the words), `cut_mid_word` (stopped at the
token limit and ending in a letter or digit, not cut by the radio's budget). A musing the
payload's fit_musing cut to the radio's characters (at a sentence end, or with "…") is
*cut by the budget*: counted on its own, not degenerate.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from stratoecho.musing_claims import FIGURE_KINDS, KINDS, PHASES, WARM_C, Claim, MusingFacts, Request, claims
from stratoecho.privacy import PLACEHOLDER
from stratoecho.stats import wilson

__all__ = ["FIGURE_KINDS", "KINDS", "TOLD_KINDS", "Claim", "Judgement", "Musing", "MusingFacts", "Request", "carried",
           "claims", "distinct_n", "judge", "measure", "near_duplicates", "opening", "openings", "tokens", "wilson"]

# Grounded means agreeing with what the prompt told: the speed and the distance are
# known to the payload's truth guard, never told, so they are claims (sim/bench/report/truth_report.py), not grounding.
TOLD_KINDS = tuple(k for k in KINDS if k not in ("speed", "distance"))
DEGENERATE_KINDS = ("empty", "no_words", "loop", "cut_mid_word")
OPENING_WORDS = 3
OPENING_MOST = 0.15  # of a flight's musings, at most, open alike (issue 40)
NEAR_DUPLICATE = 0.6  # Jaccard similarity of word-bigram sets: one word changed in ten is a near-duplicate
LOOP_COVER = 0.5
LOOP_REPEATS = 3
LOOP_MAX_N = 4
CHAR_RUN = 12


@dataclass(frozen=True)
class Musing:
    """One musing as it came, and how its generation ended."""

    text: str
    facts: MusingFacts = field(default_factory=MusingFacts)
    finish: str = ""  # the generation's finish reason: "stop", "length" (the token limit), "" unknown
    cut_by_budget: bool = False  # fit_musing shortened it to the radio's characters
    raw_chars: int = 0  # non-space characters the model wrote before placeholders were taken out
    aired: bool = True  # queued for the radio; False: made again or held back (false, a repeated opening)


@dataclass(frozen=True)
class Judgement:
    grounded: tuple[str, ...]  # kinds of fact it mentions in agreement with its facts
    mismatched: tuple[str, ...]  # kinds it mentions only in disagreement (a number that matches nothing)
    degenerate: tuple[str, ...]
    cut_by_budget: bool
    claims: tuple[Claim, ...] = ()

    def to_dict(self) -> dict:
        return {"grounded": list(self.grounded), "mismatched": list(self.mismatched),
                "degenerate": list(self.degenerate), "cut_by_budget": self.cut_by_budget}


def _grounding(text: str, facts: MusingFacts) -> tuple[set[str], set[str], list[Claim]]:
    """The kinds `text` mentions in agreement with `facts`, those it mentions only against them,
    and its claims (stratoecho/musing_claims.py)."""
    said = claims(text, facts)
    agree = {c.kind for c in said if c.true and c.kind in TOLD_KINDS}
    return agree, {c.kind for c in said if c.kind in TOLD_KINDS} - agree, said


def carried(facts: MusingFacts) -> set[str]:
    """The kinds a musing told these facts could be grounded in (TOLD_KINDS)."""
    have = {"altitude": facts.alt_m is not None, "temperature": bool(facts.temperatures()),
            "cold": any(t < 0 for t in facts.temperatures()), "phase": facts.phase in PHASES,
            "sun": facts.sun_up is not None, "pressure": facts.pressure_hpa is not None,
            "battery": facts.batt_v is not None, "request": any(r.failed for r in facts.requests),
            "warm": any(t >= WARM_C for t in facts.temperatures()),
            # said from the first minute (payload/persona/prompts.py), where the prompt's budget had room
            "time_aloft": facts.aloft_told and (facts.aloft_s or 0) >= 60}
    return {k for k, v in have.items() if v}


# ----------------------------------------------------------------------------- degenerate

# Placeholders the scrubber writes (<PHONE_2>), and the half-formed ones a small model makes of them.
_PLACEHOLDER_PIECE = re.compile(r"<[A-Z]{2,}(?:_[A-Z0-9]*)*>?")
_ALNUM = re.compile(r"[^\W_]")
_TOKEN = re.compile(r"\d+(?:[.,]\d+)*|[^\W\d_]+(?:'[^\W\d_]+)*")
_SENTENCE_END = re.compile(r"[.!?…]+(?=\s|$)")
_CHAR_LOOP = re.compile(r"(.{1,4}?)\1{2,}", re.S)


def tokens(text: str) -> list[str]:
    """Lower-case words and numbers ("21.4" is one), as distinct-n and near-duplicates count them."""
    return _TOKEN.findall(text.lower().replace("’", "'"))


def opening(text: str) -> str:
    """A musing's first OPENING_WORDS words, lower case ("i'm thinking about"): what a template repeats."""
    return " ".join(tokens(text)[:OPENING_WORDS])


def openings(texts: Iterable[str], top: int = 5) -> dict:
    """The most common openings of `texts` with their counts, and the share of the commonest
    (the goal: at most OPENING_MOST)."""
    said = [o for o in map(opening, texts) if o]
    common = Counter(said).most_common(top)
    return {"most": {**share(common[0][1] if common else 0, len(said)), "goal": OPENING_MOST},
            "top": [{"opening": o, "count": k} for o, k in common]}


def _is_loop(text: str) -> bool:
    if any(m.end() - m.start() >= CHAR_RUN for m in _CHAR_LOOP.finditer(text)):
        return True
    sentences = [tuple(tokens(s)) for s in _SENTENCE_END.split(text)]
    said = [s for s in sentences if len(s) >= 2]
    if len(said) != len(set(said)):
        return True
    words = tokens(text)
    for n in range(1, LOOP_MAX_N + 1):
        grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
        for gram, count in Counter(grams).items():
            if count < LOOP_REPEATS + (n == 1):
                continue
            covered = {i + k for i, g in enumerate(grams) if g == gram for k in range(n)}
            if len(covered) >= LOOP_COVER * len(words):
                return True
    return False


def _degenerate(m: Musing) -> tuple[str, ...]:
    text = m.text or ""
    if not _ALNUM.search(_PLACEHOLDER_PIECE.sub(" ", PLACEHOLDER.sub(" ", text))):
        return ("empty",) if not text.strip() and not m.raw_chars else ("no_words",)
    kinds = []
    if _is_loop(text):
        kinds.append("loop")
    if m.finish == "length" and not m.cut_by_budget and text.rstrip()[-1:].isalnum():
        kinds.append("cut_mid_word")
    return tuple(kinds)


def judge(m: Musing) -> Judgement:
    agree, against, said = _grounding(m.text or "", m.facts)
    order = {k: i for i, k in enumerate(KINDS)}
    return Judgement(grounded=tuple(sorted(agree, key=order.get)), mismatched=tuple(sorted(against, key=order.get)),
                     degenerate=_degenerate(m), cut_by_budget=m.cut_by_budget, claims=tuple(said))


# ----------------------------------------------------------------------------- a sample


def share(k: int, n: int) -> dict:
    """A count of a sample with its share and Wilson 95 % interval (None for an empty sample)."""
    ci = wilson(k, n)
    return {"count": k, "of": n, "share": round(k / n, 4) if n else None,
            "ci95": [round(ci[0], 4), round(ci[1], 4)] if ci else None}


def distinct_n(texts: Iterable[Sequence[str]]) -> dict:
    """distinct-1 and distinct-2: unique over all unigrams and bigrams (bigrams within a musing)."""
    unigrams: list[str] = []
    bigrams: list[tuple[str, str]] = []
    for words in texts:
        unigrams += words
        bigrams += zip(words, words[1:])
    return {"distinct_1": round(len(set(unigrams)) / len(unigrams), 4) if unigrams else None,
            "distinct_2": round(len(set(bigrams)) / len(bigrams), 4) if bigrams else None,
            "words": len(unigrams), "bigrams": len(bigrams)}


def _shingles(words: Sequence[str]) -> frozenset:
    return frozenset(zip(words, words[1:])) if len(words) > 1 else frozenset([tuple(words)])


def near_duplicates(texts: Sequence[Sequence[str]], threshold: float = NEAR_DUPLICATE) -> list[int]:
    """Indices of the texts (word lists) as similar as `threshold` (Jaccard of word-bigram sets;
    a one-word text's own word) to an earlier one: the repeats, not the first of each."""
    sets = [_shingles(w) for w in texts]
    holders: dict = {}  # shingle -> earlier texts holding it
    repeats = []
    for i, s in enumerate(sets):
        shared: Counter = Counter(j for g in s for j in holders.get(g, ()))
        if any(c / (len(s) + len(sets[j]) - c) >= threshold for j, c in shared.items()):
            repeats.append(i)
        for g in s:
            holders.setdefault(g, []).append(i)
    return repeats


def measure(musings: Sequence[Musing]) -> dict:
    """The sample's figures, as report.json's `musings.quality` holds them (docs/bench.md).

    Grounded overall and degenerate are shares of every musing measured (made again or not); the
    figure and the openings of those that aired; grounded per kind is a
    share of the musings whose facts carried that kind (`of`), with `mismatched` beside it;
    near-duplicates are a share of the musings with words; distinct-n is over their words."""
    judged = [judge(m) for m in musings]
    n = len(judged)
    by_kind = {}
    for kind in TOLD_KINDS:
        told = sum(kind in carried(m.facts) for m in musings)
        by_kind[kind] = {**share(sum(kind in j.grounded for j in judged), told),
                         "mismatched": sum(kind in j.mismatched for j in judged)}
    worded = [tokens(m.text) for m, j in zip(musings, judged) if not {"empty", "no_words"} & set(j.degenerate)]
    aired = [j for m, j in zip(musings, judged) if m.aired]  # what listeners read: the figure and the openings
    figures = {
        "measured": n,
        "grounded": {**share(sum(bool(j.grounded) for j in judged), n), "by_kind": by_kind,
                     "without_sun": share(sum(bool(set(j.grounded) - {"sun"}) for j in judged), n)},
        "figure": {**share(sum(any(c.true and c.kind in FIGURE_KINDS for c in j.claims) for j in aired), len(aired)),
                   "kinds": list(FIGURE_KINDS)},
        "openings": openings(m.text for m in musings if m.aired),
        "degenerate": {**share(sum(bool(j.degenerate) for j in judged), n),
                       "by_kind": {k: share(sum(k in j.degenerate for j in judged), n) for k in DEGENERATE_KINDS}},
        "cut_by_budget": share(sum(j.cut_by_budget for j in judged), n),
        "distinct": distinct_n(worded),
        "near_duplicates": {**share(len(near_duplicates(worded)), len(worded)), "threshold": NEAR_DUPLICATE},
    }
    if not n:
        figures["note"] = "no musings to measure"
    return figures
