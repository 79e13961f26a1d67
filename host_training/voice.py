"""Whose voice a text has: an authorship classifier, and style as distributions.

Pure functions of the texts they are given: no model is loaded, nothing is read or written.
`evaluate` generates the replies; `report` renders what is measured here.

    authorship  a classifier learns the owner's training messages (the assistant turns of
                train.jsonl) against everyone else's (the user turns): character 2-4-grams
                (case kept, sublinear tf-idf) of the texts *distorted* (Stamatatos 2017,
                "Authorship attribution using text distortion"): every word but the
                DISTORTION_WORDS most frequent of the training messages has its letters masked
                (X for a capital, * otherwise) and every digit becomes #, so what is learnt is
                how a person writes (function words, punctuation, casing, word lengths), not
                what about. Undistorted, the classifier was a topic detector: the owner is the
                one who talks about balloons, and so does a base model prompted with her
                conversations (SmolLM2-135M untuned: 97 % "the owner's", above her own 81 %).
                A logistic regression with balanced class weights; its own quality by
                stratified 5-fold cross-validation on those messages. Then each set of texts
                gets the share the classifier calls the owner's, with a 95 % interval: the
                owner's real held-out replies (the ceiling), the other speakers' held-out
                turns (the floor: the false-positive rate), and the replies of each model to
                the same held-out prompts, with a model's gain over the base prompt by prompt.
    distances   per-turn figures (lengths, lines, casing, punctuation, emoji, questions) of two
                sets of turns compared as distributions by the two-sample Kolmogorov-Smirnov
                statistic, and their word frequencies by the Jensen-Shannon distance: 0 for
                the same distribution, 1 for disjoint ones.

Privacy placeholders such as <PHONE_1> are taken out before the classifier sees a text: the
owner's data holds them in place of values, so they would tell it nothing about style (the
style figures leave them out of words and casing too: report.words, report.upper_case_share).
A training message seen more than once (prepare weights conversations by repeating them) is
learnt once, so that cross-validation never scores a message it also trained on.
"""

from __future__ import annotations

import bisect
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from stratoecho.privacy import PLACEHOLDER
from stratoecho.stats import wilson

from .report import WORD, count_emoji, count_lines, count_punctuation, lower_start, upper_case_share, words

# ----------------------------------------------------------------------------- configuration
MIN_MESSAGES = 20  # of either side: with fewer, the classifier is not trained (and says so)
NGRAMS = (2, 4)  # character n-grams of the distorted text
DISTORTION_WORDS = 100  # words kept as written. On the sample corpus (balanced accuracy; untuned base vs tuned
#                         persona's share): 50 words 0.77, 100 0.74, 200 0.73, 400 0.71, none 0.72; with 100 the
#                         persona's gain over the base was +23 points (+12 to +35), undistorted +12 (-2 to +25)
C = 1.0  # inverse regularisation; 10 and 100 did no better on the sample corpus
DIGIT = re.compile(r"\d")
BOOTSTRAP = 4000  # resamplings of the prompts for a model's interval and its gain over the base
FOLDS = 5
SEED = 0  # the folds' shuffle and the solver: same messages, same figures


# ----------------------------------------------------------------------------- the messages
def clean(text: str) -> str:
    """`text` without privacy placeholders, its whitespace runs (newlines kept) made single."""
    lines = (" ".join(line.split()) for line in PLACEHOLDER.sub(" ", text).split("\n"))
    return "\n".join(line for line in lines if line)


def training_messages(conversations: Iterable[Sequence[Mapping]]) -> tuple[list[str], list[str]]:
    """(the owner's messages, the other speakers' messages) of prepare-style conversations:
    assistant turns are the owner's, user turns the others'; system turns are neither. Each
    message cleaned, empty ones dropped, each distinct text once, in order of first appearance."""
    owner: dict[str, None] = {}
    others: dict[str, None] = {}
    for conv in conversations:
        for m in conv:
            side = {"assistant": owner, "user": others}.get(m["role"])
            text = clean(m["content"])
            if side is not None and text:
                side[text] = None
    return list(owner), list(others)


# ----------------------------------------------------------------------------- the classifier
@dataclass(frozen=True)
class Share:
    """How many of `texts` texts the classifier calls the owner's, with a 95 % interval: for
    independent texts (the held-out turns) the Wilson score interval, which unlike the normal
    approximation stays within 0..1 and is not empty at 0 or at all of n; for a model's replies,
    several to each prompt, `ci`, a bootstrap over the prompts (a prompt's replies resampled
    together, since they share what they answer)."""

    texts: int
    owner: int
    ci: tuple[float, float] | None = None

    @property
    def share(self) -> float | None:
        return self.owner / self.texts if self.texts else None

    @property
    def interval(self) -> tuple[float, float] | None:
        return self.ci if self.ci is not None else wilson(self.owner, self.texts)


@dataclass(frozen=True)
class Gain:
    """A model's share minus the base's on the same prompts: the mean over prompts of the
    difference of their shares of replies to that prompt, with a 95 % paired bootstrap interval.
    Above 0 at its lower end: tuning moved the replies towards the owner's voice."""

    prompts: int
    gain: float
    low: float
    high: float


def _means(groups: Sequence[Sequence[bool]]):
    import numpy as np

    return np.array([sum(g) / len(g) for g in groups], dtype=float)


def bootstrap_interval(per_prompt: Sequence[float], seed: int = SEED, rounds: int = BOOTSTRAP,
                       weights: Sequence[int] | None = None) -> tuple[float, float]:
    """The 2.5th and 97.5th percentiles of the (weighted) mean of `per_prompt` over `rounds`
    resamplings of the prompts with replacement."""
    import numpy as np

    x = np.asarray(per_prompt, dtype=float)
    w = np.ones(len(x)) if weights is None else np.asarray(weights, dtype=float)
    idx = np.random.default_rng(seed).integers(0, len(x), size=(rounds, len(x)))
    means = (x[idx] * w[idx]).sum(axis=1) / w[idx].sum(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def grouped_share(verdicts: Sequence[Sequence[bool]], seed: int = SEED) -> Share:
    """The share of replies called the owner's, replies grouped by the prompt they answer."""
    groups = [g for g in verdicts if g]
    n, k = sum(len(g) for g in groups), sum(sum(g) for g in groups)
    if not groups:
        return Share(0, 0)
    return Share(n, k, bootstrap_interval(_means(groups), seed, weights=[len(g) for g in groups]))


def paired_gain(model: Sequence[Sequence[bool]], base: Sequence[Sequence[bool]], seed: int = SEED) -> Gain | None:
    """`model`'s share minus `base`'s, prompt by prompt (both answered the same prompts, in order)."""
    pairs = [(m, b) for m, b in zip(model, base, strict=True) if m and b]
    if not pairs:
        return None
    d = _means([m for m, _ in pairs]) - _means([b for _, b in pairs])
    low, high = bootstrap_interval(d, seed)
    return Gain(len(pairs), float(d.mean()), low, high)


@dataclass(frozen=True)
class CrossValidation:
    """The classifier's own quality on the training messages, each scored by a model that did
    not see it (stratified `folds`-fold)."""

    folds: int
    owner_recognised: float  # share of the owner's messages called the owner's
    others_rejected: float  # share of the others' messages not called the owner's

    @property
    def balanced_accuracy(self) -> float:
        """The mean of the two: 0.5 is a coin toss whatever the two sides' sizes, 1 is perfect."""
        return (self.owner_recognised + self.others_rejected) / 2


class VoiceClassifier:
    """Owner or not, from character n-grams of distorted text. Made by `fit`, which refuses too
    little data."""

    def __init__(self, pipeline, owner_messages: int, other_messages: int, cv: CrossValidation,
                 kept: frozenset[str] = frozenset()) -> None:
        self._pipeline = pipeline
        self.owner_messages = owner_messages
        self.other_messages = other_messages
        self.cv = cv
        self.kept = kept  # the words distortion leaves as they are

    @classmethod
    def fit(cls, owner: Sequence[str], others: Sequence[str], seed: int = SEED) -> VoiceClassifier | None:
        """Train on the owner's and the others' messages (clean ones: see `training_messages`);
        None when either side has fewer than MIN_MESSAGES (`shortfall` says which)."""
        if shortfall(len(owner), len(others)) is not None:
            return None
        import numpy as np
        from sklearn.model_selection import StratifiedKFold, cross_val_predict

        kept = frequent_words(list(owner) + list(others))
        texts = [distort(t, kept) for t in list(owner) + list(others)]
        labels = np.array([1] * len(owner) + [0] * len(others))
        folds = StratifiedKFold(FOLDS, shuffle=True, random_state=seed)
        predicted = cross_val_predict(_pipeline(seed), texts, labels, cv=folds)
        cv = CrossValidation(FOLDS, float(predicted[labels == 1].mean()), float(1 - predicted[labels == 0].mean()))
        return cls(_pipeline(seed).fit(texts, labels), len(owner), len(others), cv, kept)

    def is_owner(self, texts: Sequence[str]) -> list[bool]:
        """Whether each text reads as the owner's. Placeholders are taken out first; a text with
        nothing left (an empty reply) has no voice at all and is never the owner's."""
        cleaned = [clean(t) for t in texts]
        todo = [distort(t, self.kept) for t in cleaned if t]
        verdict = iter(self._pipeline.predict(todo).tolist() if todo else [])
        return [bool(next(verdict)) if t else False for t in cleaned]

    def share(self, texts: Sequence[str]) -> Share:
        return Share(len(texts), sum(self.is_owner(texts)))


def frequent_words(texts: Sequence[str], n: int = DISTORTION_WORDS) -> frozenset[str]:
    """The `n` most frequent words of `texts`, case-folded (ties in order of first appearance)."""
    counts = Counter(w.casefold() for t in texts for w in WORD.findall(t))
    return frozenset(w for w, _ in counts.most_common(n))


def distort(text: str, kept: frozenset[str]) -> str:
    """`text` with the letters of every word not in `kept` masked (X capital, * other) and every
    digit #: "Gerald is 3 days old" -> "X***** is # days old" when "is", "days" and "old" are kept."""
    masked = WORD.sub(lambda m: m[0] if m[0].casefold() in kept else
                      "".join("X" if c.isupper() else "*" for c in m[0]), text)
    return DIGIT.sub("#", masked)


def _pipeline(seed: int):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    # Case kept: whether a person writes "ok" or "OK", "i" or "I" is much of a voice.
    return make_pipeline(
        TfidfVectorizer(analyzer="char", ngram_range=NGRAMS, lowercase=False, sublinear_tf=True),
        LogisticRegression(C=C, class_weight="balanced", max_iter=2000, random_state=seed),
    )


def shortfall(owner: int, others: int) -> str | None:
    """Why a classifier cannot be trained on this many messages, or None when it can."""
    short = [f"{n} of the {who}" for n, who in ((owner, "owner's"), (others, "other speakers'")) if n < MIN_MESSAGES]
    if not short:
        return None
    return (f"too few training messages to learn whose voice a text has ({' and '.join(short)}; "
            f"at least {MIN_MESSAGES} of each are needed)")


# ----------------------------------------------------------------------------- authorship
OWNER_SET = "owner, held-out"
OTHERS_SET = "others, held-out"


@dataclass(frozen=True)
class VoiceSet:
    """One row of "Whose voice": a set of texts and its share classified as the owner's."""

    label: str
    role: str  # "ceiling" (the owner's own held-out text), "floor" (the others'), "base", "tuned", "flown"
    share: Share
    gain: Gain | None = None  # over the base, on the same prompts (a tuned or flown model's, with a base)


@dataclass
class Authorship:
    """What report.md's "Whose voice" shows. `cv` is None when the classifier could not be
    trained; `note` then says why and `sets` is empty."""

    owner_messages: int
    other_messages: int
    cv: CrossValidation | None
    sets: list[VoiceSet] = field(default_factory=list)
    note: str = ""
    kept_words: int = DISTORTION_WORDS  # words distortion left as written

    def find(self, role: str) -> VoiceSet | None:
        return next((s for s in self.sets if s.role == role), None)

    def eval_figures(self) -> dict[str, float | int]:
        """persona.toml [eval]'s flat keys: `voice_share` (the flown model), `f32_voice_share`,
        `base_voice_share` (the untuned base, or the parent), each with `_low`/`_high` (its 95 %
        Wilson interval), `voice_replies`; the ceiling `voice_owner_share`, the floor
        `voice_others_share` and the classifier's `voice_classifier_balanced_accuracy`. A figure
        not measured is left out (TOML has no null)."""
        out: dict[str, float | int] = {}
        if self.cv is not None:
            out["voice_classifier_balanced_accuracy"] = round(self.cv.balanced_accuracy, 4)
        for role, key in (("flown", "voice_share"), ("tuned", "f32_voice_share"), ("base", "base_voice_share")):
            s = self.find(role)
            if s is None or s.share.share is None:
                continue
            low, high = s.share.interval
            out.update({key: round(s.share.share, 4), f"{key}_low": round(low, 4), f"{key}_high": round(high, 4)})
            if s.gain is not None:
                g, gkey = s.gain, key.replace("_share", "_gain_over_base")
                out.update({gkey: round(g.gain, 4), f"{gkey}_low": round(g.low, 4), f"{gkey}_high": round(g.high, 4)})
            if role == "flown":
                out["voice_replies"] = s.share.texts
        for role, key in (("ceiling", "voice_owner_share"), ("floor", "voice_others_share")):
            s = self.find(role)
            if s is not None and s.share.share is not None:
                out[key] = round(s.share.share, 4)
        return out

    def summary(self) -> dict:
        """The figures as plain data (eval --json): one entry per set."""
        out: dict = {"owner_messages": self.owner_messages, "other_messages": self.other_messages,
                     "classifier": None if self.cv is None else {
                         "folds": self.cv.folds, "balanced_accuracy": self.cv.balanced_accuracy,
                         "owner_recognised": self.cv.owner_recognised, "others_rejected": self.cv.others_rejected},
                     "interval": "95 % Wilson score", "sets": []}
        if self.note:
            out["note"] = self.note
        for s in self.sets:
            iv = s.share.interval
            out["sets"].append({"label": s.label, "role": s.role, "texts": s.share.texts, "owner": s.share.owner,
                                "share": s.share.share, "low": iv[0] if iv else None, "high": iv[1] if iv else None,
                                "interval": "bootstrap over prompts" if s.share.ci is not None else "Wilson score",
                                **({"gain_over_base": vars(s.gain)} if s.gain is not None else {})})
        return out


def authorship(train: Iterable[Sequence[Mapping]], val: Iterable[Sequence[Mapping]],
               generated: Sequence[tuple[str, str, Sequence[Sequence[str]]]], seed: int = SEED) -> Authorship:
    """Train the classifier on `train`'s messages and score: the owner's held-out turns in
    `val` (ceiling), the others' (floor, left out when there are none), then each
    (label, role, replies) of `generated` in the order given, `replies[i]` the model's replies
    to held-out prompt i (the same prompts, in the same order, for every model). A model beside
    one of role "base" also gets its gain over it, prompt by prompt."""
    owner, others = training_messages(train)
    clf = VoiceClassifier.fit(owner, others, seed)
    if clf is None:
        return Authorship(len(owner), len(others), None, note=shortfall(len(owner), len(others)) or "")
    held_owner, held_others = [], []
    for conv in val:  # every turn, repeats included: these are counted, not learnt
        for m in conv:
            {"assistant": held_owner, "user": held_others}.get(m["role"], []).append(m["content"])
    sets = [VoiceSet(OWNER_SET, "ceiling", clf.share(held_owner))]
    if held_others:
        sets.append(VoiceSet(OTHERS_SET, "floor", clf.share(held_others)))
    verdicts = {label: [clf.is_owner(list(r)) for r in replies] for label, _, replies in generated}
    base = next((verdicts[label] for label, role, _ in generated if role == "base"), None)
    sets += [VoiceSet(label, role, grouped_share(verdicts[label], seed),
                      paired_gain(verdicts[label], base, seed) if base is not None and role != "base" else None)
             for label, role, _ in generated]
    return Authorship(clf.owner_messages, clf.other_messages, clf.cv, sets, kept_words=len(clf.kept))


# ----------------------------------------------------------------------------- distances
def ks_statistic(a: Sequence[float], b: Sequence[float]) -> float | None:
    """The two-sample Kolmogorov-Smirnov statistic: the largest gap between the two empirical
    distribution functions, 0 (the same) to 1 (no overlap at all). None if either is empty.
    For yes/no figures (1.0 or 0.0) it is the difference of the two shares."""
    if not a or not b:
        return None
    sa, sb = sorted(a), sorted(b)
    return max(abs(bisect.bisect_right(sa, v) / len(sa) - bisect.bisect_right(sb, v) / len(sb))
               for v in set(sa) | set(sb))


def js_distance(a: Counter, b: Counter) -> float | None:
    """The Jensen-Shannon distance (base 2: 0 for the same frequencies, 1 for disjoint
    vocabularies) between two word counts; None if either is empty."""
    na, nb = sum(a.values()), sum(b.values())
    if not na or not nb:
        return None
    divergence = 0.0
    for w in sorted(a.keys() | b.keys()):  # sorted: the same sum, bit for bit, whatever the hash seed
        p, q = a[w] / na, b[w] / nb
        m = (p + q) / 2
        divergence += (p * math.log2(p / m) if p else 0.0) / 2 + (q * math.log2(q / m) if q else 0.0) / 2
    # Rounded so that disjoint counts give 1 and not 0.9999999999999999.
    return math.sqrt(min(1.0, max(0.0, round(divergence, 12))))


def turn_figures(text: str) -> dict[str, float | None]:
    """A turn's own figures, the values whose distributions `style_distances` compares. A
    figure a turn cannot have (the casing of a turn with no letters) is None."""
    n = len(text)
    emoji, lines = count_emoji(text), count_lines(text)
    return {
        "chars": float(n),
        "words": float(len(text.split())),
        "lines": float(lines),
        "multi_line": float(lines > 1),
        "upper_case": upper_case_share(text),
        "lower_start": None if (s := lower_start(text)) is None else float(s),
        "punctuation": 100 * count_punctuation(text) / n if n else None,
        "emoji": float(emoji),
        "emoji_turn": float(emoji > 0),
        "question": float("?" in text),
    }


FIGURES = ("chars", "words", "lines", "multi_line", "upper_case", "lower_start", "punctuation", "emoji",
           "emoji_turn", "question")


def style_distances(owner: Sequence[str], other: Sequence[str]) -> dict[str, float | None]:
    """How far `other`'s turns are from the `owner`'s: the KS statistic of each per-turn figure
    (FIGURES) and the Jensen-Shannon distance of the word frequencies (`vocabulary`), all 0..1;
    None where either side has no value. The turns are measured as report.style_figures
    measures them, so a distance belongs to the figures beside it in the Style table."""
    a = [turn_figures(t) for t in owner]
    b = [turn_figures(t) for t in other]
    out = {k: ks_statistic([f[k] for f in a if f[k] is not None], [f[k] for f in b if f[k] is not None])
           for k in FIGURES}
    out["vocabulary"] = js_distance(Counter(w for t in owner for w in words(t)),
                                    Counter(w for t in other for w in words(t)))
    return out
