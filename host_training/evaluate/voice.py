"""Whose voice a text has: an authorship classifier, and style as distributions.

Pure functions of the texts they are given: no model is loaded, nothing is read or written.
`evaluate` generates the replies; `report` renders what is measured here.

    authorship  a classifier learns the owner's training messages (the assistant turns of
                train.jsonl) against everyone else's (the user turns), from how they are written,
                not what about (voice_model.py: character 2-4-grams of the texts *distorted* --
                every word but the DISTORTION_WORDS most frequent masked, every digit # (Stamatatos
                2017) -- beside the frequencies of those frequent words and the writer's habits:
                casing, punctuation, burst shape). Undistorted, the classifier was a topic
                detector: the owner is the one who talks about balloons, and so does a base model
                prompted with her conversations. A calibrated logistic regression; its own quality
                held out by conversation, for single messages and for samples of SAMPLE turns of
                one speaker (a person is told apart by a handful of messages, not by "ok"). Then
                each set of texts gets the share the classifier calls the owner's, with a 95 %
                interval, and the share of its samples: the owner's real held-out replies (the
                ceiling), the other speakers' held-out turns (the floor: the false-positive rate),
                and the replies of each model to the same held-out prompts, with a model's gain
                over the base prompt by prompt. Beside each, the share of its words that are real
                words of the owner's language (real_words.py): lower-case babble in the owner's
                letters reads as the owner's to any classifier of habits, and fails there.
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
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from stratoecho.stats import wilson
from stratoecho.stylometry import clean as clean  # as the Pi's scorer cleans a text

from ..report import WORD, count_emoji, count_lines, count_punctuation, lower_start, upper_case_share, words
from .real_words import CANDIDATES, TOLERANCE, RealWords, babble_verdict, best_language
from .real_words import share as real_share
from .voice_model import FOLDS, SAMPLE, Turn, held_out_probabilities, pipeline, recognised, samples
from .voice_model import distort as distort  # the texts as the classifier reads them: voice.distort

# ----------------------------------------------------------------------------- configuration
MIN_MESSAGES = 20  # of either side: with fewer, the classifier is not trained (and says so)
DISTORTION_WORDS = 100  # words kept as written (and counted as function words). Character n-grams alone, on the
#                         sample corpus: 50 words 0.77, 100 0.74, 200 0.73, 400 0.71, none 0.72 (balanced accuracy)
BOOTSTRAP = 4000  # resamplings of the prompts for a model's interval and its gain over the base
SEED = 0  # the folds' shuffle and the solver: same messages, same figures


# ----------------------------------------------------------------------------- the messages
def training_turns(conversations: Iterable[Sequence[Mapping]]) -> list[Turn]:
    """The owner's and the other speakers' turns of prepare-style conversations: assistant turns
    are the owner's, user turns the others'; system turns are neither. Each cleaned, empty ones
    dropped, each distinct text once (in the conversation where it first appears): prepare
    weights conversations by repeating them, and a message learnt twice could be scored by a
    model that trained on it."""
    seen: set[str] = set()
    turns = []
    for c, conv in enumerate(conversations):
        for m in conv:
            text = clean(m["content"])
            if m["role"] not in ("assistant", "user") or not text or text in seen:
                continue
            seen.add(text)
            owner = m["role"] == "assistant"
            turns.append(Turn(text, owner, c, "\u0000owner" if owner else (m.get("name") or "\u0000others")))
    return turns


def training_messages(conversations: Iterable[Sequence[Mapping]]) -> tuple[list[str], list[str]]:
    """(the owner's messages, the other speakers' messages) of `training_turns`, in order of first appearance."""
    turns = training_turns(conversations)
    return [t.text for t in turns if t.owner], [t.text for t in turns if not t.owner]


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
    not see its conversation (`folds` folds of whole conversations): single messages, and
    samples of `sample_size` turns of one speaker scored by their mean probability."""

    folds: int
    owner_recognised: float  # share of the owner's messages called the owner's
    others_rejected: float  # share of the others' messages not called the owner's
    sample_size: int = 1
    samples: int = 0  # how many samples were scored (0: messages only)
    samples_owner_recognised: float | None = None
    samples_others_rejected: float | None = None

    @property
    def message_balanced_accuracy(self) -> float:
        """The mean of the two shares for single messages: 0.5 is a coin toss whatever the sides' sizes."""
        return (self.owner_recognised + self.others_rejected) / 2

    @property
    def balanced_accuracy(self) -> float:
        """The classifier's figure: for samples where they were scored, else for single messages."""
        if self.samples_owner_recognised is None or self.samples_others_rejected is None:
            return self.message_balanced_accuracy
        return (self.samples_owner_recognised + self.samples_others_rejected) / 2


class VoiceClassifier:
    """Owner or not, from how a text is written (voice_model.py). Made by `fit` or `fit_turns`,
    which refuse too little data."""

    def __init__(self, model, owner_messages: int, other_messages: int, cv: CrossValidation,
                 kept: frozenset[str] = frozenset()) -> None:
        self._model = model
        self.owner_messages = owner_messages
        self.other_messages = other_messages
        self.cv = cv
        self.kept = kept  # the words distortion leaves as they are, and counts

    @property
    def model(self):
        """The fitted scikit-learn model (voice_model.EvenOdds), which voice_export reads for the bundle."""
        return self._model

    @classmethod
    def fit(cls, owner: Sequence[str], others: Sequence[str], seed: int = SEED) -> VoiceClassifier | None:
        """Train on the owner's and the others' messages (clean ones), each message a conversation
        of its own and the others one speaker; see `fit_turns`."""
        return cls.fit_turns([Turn(t, True, i, "owner") for i, t in enumerate(owner)]
                             + [Turn(t, False, len(owner) + i, "others") for i, t in enumerate(others)], seed)

    @classmethod
    def fit_turns(cls, turns: Sequence[Turn], seed: int = SEED) -> VoiceClassifier | None:
        """Train on `turns` (see `training_turns`); None when either side has fewer than
        MIN_MESSAGES (`shortfall` says which)."""
        n_owner = sum(t.owner for t in turns)
        if shortfall(n_owner, len(turns) - n_owner) is not None:
            return None
        probs, fold_of = held_out_probabilities(turns, frequent_words, seed)
        labels = [int(t.owner) for t in turns]
        by_message = recognised(probs, labels, [[i] for i in range(len(turns))])
        units = samples([f"{fold_of[i]}\u0000{t.speaker}" for i, t in enumerate(turns)])
        by_sample = recognised(probs, labels, units)
        cv = CrossValidation(FOLDS, *by_message, SAMPLE, len(units), *by_sample)
        texts = [t.text for t in turns]
        kept = frequent_words(texts)
        model = pipeline(kept, seed, groups=[t.conversation for t in turns], labels=labels).fit(texts, labels)
        return cls(model, n_owner, len(turns) - n_owner, cv, kept)

    def probabilities(self, texts: Sequence[str]) -> list[float | None]:
        """P(the owner's) of each text; None for a text with nothing left once placeholders are
        taken out (an empty reply has no voice at all)."""
        cleaned = [clean(t) for t in texts]
        todo = [t for t in cleaned if t]
        p = iter(self._model.predict_proba(todo)[:, 1].tolist() if todo else [])
        return [float(next(p)) if t else None for t in cleaned]

    def is_owner(self, texts: Sequence[str]) -> list[bool]:
        """Whether each text reads as the owner's (P above 0.5); an empty one never does."""
        return [p is not None and p > 0.5 for p in self.probabilities(texts)]

    def share(self, texts: Sequence[str]) -> Share:
        return Share(len(texts), sum(self.is_owner(texts)))

    def sample_share(self, texts: Sequence[str], speakers: Sequence[str] | None = None) -> Share:
        """How many samples of SAMPLE consecutive texts (of one speaker, where `speakers` says
        whose each is) read as the owner's by their mean probability; an empty text counts 0."""
        probs = [p or 0.0 for p in self.probabilities(texts)]
        units = samples(speakers if speakers is not None else [""] * len(texts))
        return Share(len(units), sum(1 for u in units if sum(probs[i] for i in u) / len(u) > 0.5))


def frequent_words(texts: Sequence[str], n: int = DISTORTION_WORDS) -> frozenset[str]:
    """The `n` most frequent words of `texts`, case-folded (ties in order of first appearance)."""
    counts = Counter(w.casefold() for t in texts for w in WORD.findall(t))
    return frozenset(w for w, _ in counts.most_common(n))


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
    samples: Share | None = None  # samples of SAMPLE texts read as the owner's by their mean probability
    real: RealWords | None = None  # its words that are real words of the owner's language

    def verdict(self, owner: RealWords | None) -> str | None:
        """The voice judged with the words: "babble" when its share of real words falls more than
        real_words.TOLERANCE below the owner's own held-out share, whatever the classifier says;
        else "real words"; None when either has no words."""
        if self.real is None or owner is None:
            return None
        return babble_verdict(self.real, owner)


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
    language: str | None = None  # the owner's language, whose word list real_words counts against
    babble_tolerance: float = TOLERANCE  # a model's real-word share this far below the owner's is babble
    classifier: VoiceClassifier | None = field(default=None, repr=False, compare=False)  # what measured: build ships it

    @property
    def owner_real(self) -> RealWords | None:
        """The owner's held-out real-word share: what a model's is read against."""
        ceiling = self.find("ceiling")
        return ceiling.real if ceiling is not None else None

    def find(self, role: str) -> VoiceSet | None:
        return next((s for s in self.sets if s.role == role), None)

    def eval_figures(self) -> dict[str, float | int]:
        """persona.toml [eval]'s flat keys: `voice_share` (the flown model), `f32_voice_share`,
        `base_voice_share` (the untuned base, or the parent), each with `_low`/`_high` (its 95 %
        interval), `voice_replies`; the ceiling `voice_owner_share`, the floor
        `voice_others_share`; the classifier's `voice_classifier_balanced_accuracy` (samples of
        `voice_sample_size` turns) and `voice_classifier_message_balanced_accuracy`; the shares of
        real words `real_words_share` (the flown model), `f32_real_words_share`, `base_real_words_share`
        and the owner's held-out `owner_real_words_share`. A figure not measured is left out (TOML has no null)."""
        out: dict[str, float | int] = {}
        if self.cv is not None:
            out["voice_classifier_balanced_accuracy"] = round(self.cv.balanced_accuracy, 4)
            out["voice_classifier_message_balanced_accuracy"] = round(self.cv.message_balanced_accuracy, 4)
            out["voice_sample_size"] = self.cv.sample_size
        for role, key in (("flown", "voice_share"), ("tuned", "f32_voice_share"), ("base", "base_voice_share")):
            s = self.find(role)
            if s is None or s.share.share is None:
                continue
            low, high = s.share.interval
            out.update({key: round(s.share.share, 4), f"{key}_low": round(low, 4), f"{key}_high": round(high, 4)})
            if s.gain is not None:
                g, gkey = s.gain, key.replace("_share", "_gain_over_base")
                out.update({gkey: round(g.gain, 4), f"{gkey}_low": round(g.low, 4), f"{gkey}_high": round(g.high, 4)})
            if s.real is not None and s.real.share is not None:
                out[key.replace("voice_share", "real_words_share")] = round(s.real.share, 4)
            if role == "flown":
                out["voice_replies"] = s.share.texts
        for role, key in (("ceiling", "voice_owner_share"), ("floor", "voice_others_share")):
            s = self.find(role)
            if s is not None and s.share.share is not None:
                out[key] = round(s.share.share, 4)
        if self.owner_real is not None and self.owner_real.share is not None:
            out["owner_real_words_share"] = round(self.owner_real.share, 4)
        return out

    def summary(self) -> dict:
        """The figures as plain data (eval --json): one entry per set."""
        cv = self.cv
        out: dict = {"owner_messages": self.owner_messages, "other_messages": self.other_messages,
                     "classifier": None if cv is None else {
                         "folds": cv.folds, "held_out": "by conversation", "balanced_accuracy": cv.balanced_accuracy,
                         "sample_size": cv.sample_size, "samples": cv.samples,
                         "samples_owner_recognised": cv.samples_owner_recognised,
                         "samples_others_rejected": cv.samples_others_rejected,
                         "message_balanced_accuracy": cv.message_balanced_accuracy,
                         "owner_recognised": cv.owner_recognised, "others_rejected": cv.others_rejected},
                     "language": self.language, "interval": "95 % Wilson score", "sets": []}
        if self.note:
            out["note"] = self.note
        for s in self.sets:
            iv = s.share.interval
            out["sets"].append({"label": s.label, "role": s.role, "texts": s.share.texts, "owner": s.share.owner,
                                "share": s.share.share, "low": iv[0] if iv else None, "high": iv[1] if iv else None,
                                "interval": "bootstrap over prompts" if s.share.ci is not None else "Wilson score",
                                **({"gain_over_base": vars(s.gain)} if s.gain is not None else {}),
                                **({"samples": s.samples.texts, "samples_owner": s.samples.owner} if s.samples else {}),
                                **({"words": s.real.words, "real_words": s.real.real, "real_words_share": s.real.share,
                                    "verdict": s.verdict(self.owner_real)} if s.real else {})})
        return out


def authorship(train: Iterable[Sequence[Mapping]], val: Iterable[Sequence[Mapping]],
               generated: Sequence[tuple[str, str, Sequence[Sequence[str]]]], seed: int = SEED,
               language: str | None = None) -> Authorship:
    """Train the classifier on `train`'s turns and score: the owner's held-out turns in
    `val` (ceiling), the others' (floor, left out when there are none), then each
    (label, role, replies) of `generated` in the order given, `replies[i]` the model's replies
    to held-out prompt i (the same prompts, in the same order, for every model). A model beside
    one of role "base" also gets its gain over it, prompt by prompt. Every set also gets its
    samples' share and its share of real words of `language` (the bundle's, prepare's detection;
    when none or one without a word list here, the language of the owner's training messages:
    real_words.best_language)."""
    turns = training_turns(train)
    clf = VoiceClassifier.fit_turns(turns, seed)
    n_owner = sum(t.owner for t in turns)
    if clf is None:
        return Authorship(n_owner, len(turns) - n_owner, None, note=shortfall(n_owner, len(turns) - n_owner) or "")
    if language not in CANDIDATES:  # prepare's language (the bundle's) where a word list of it is read here
        language = best_language([t.text for t in turns if t.owner])
    held: dict[str, list[tuple[str, str]]] = {"assistant": [], "user": []}
    for conv in val:  # every turn, repeats included: these are counted, not learnt
        for m in conv:
            held.get(m["role"], []).append((m["content"], m.get("name") or ""))

    def scored(label: str, role: str, texts: list[str], speakers: list[str] | None = None, **kw) -> VoiceSet:
        return VoiceSet(label, role, kw.pop("share", None) or clf.share(texts), samples=clf.sample_share(texts, speakers),
                        real=real_share(texts, language), **kw)

    sets = [scored(OWNER_SET, "ceiling", [t for t, _ in held["assistant"]])]
    if held["user"]:
        sets.append(scored(OTHERS_SET, "floor", [t for t, _ in held["user"]], [n for _, n in held["user"]]))
    verdicts = {label: [clf.is_owner(list(r)) for r in replies] for label, _, replies in generated}
    base = next((verdicts[label] for label, role, _ in generated if role == "base"), None)
    sets += [scored(label, role, [t for r in replies for t in r], share=grouped_share(verdicts[label], seed),
                    gain=paired_gain(verdicts[label], base, seed) if base is not None and role != "base" else None)
             for label, role, replies in generated]
    return Authorship(clf.owner_messages, clf.other_messages, clf.cv, sets, kept_words=len(clf.kept), language=language,
                      classifier=clf)


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
