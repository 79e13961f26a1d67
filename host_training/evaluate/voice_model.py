"""The authorship classifier's features, its model and its held-out evaluation (voice.py uses them).

    features    two views of a text, side by side (stratoecho/stylometry.py: the Pi reads a text alike):
                  - character 2-4-grams (case kept, sublinear tf-idf) of the text *distorted*
                    (Stamatatos 2017): every word but the frequent ones masked, every digit #
                    (voice.distort), so what is learnt is how a person writes, not what about.
                    The frequent words -- the owner's language's own function words, not an
                    English list -- stay as written, so their use is in these n-grams; a separate
                    view of their frequencies per word added noise (0.88 a sample against 0.91);
                  - habits (HABITS), scaled to unit variance: length, lines of the burst and their
                    lengths, casing (capitals, a capital after a full stop, "I" or "i", upper-case
                    words), punctuation per character by kind, a full stop at the end of a line,
                    emoji, digits, word length.
    model       logistic regression with balanced class weights, its probabilities calibrated
                (Platt's sigmoid, fitted on folds of whole conversations of the training data) and
                set to even odds (EvenOdds), so that "0.8 the owner's" means about that for a text
                as likely hers as not, and a sample's mean probability above 0.5 is a fair verdict.
    evaluation  held out by conversation: StratifiedGroupKFold keeps every conversation's turns
                in one fold, so no fold is scored by a model that read the rest of the same talk.
                Each held-out turn gets a probability; a *sample* is SAMPLE consecutive held-out
                turns of one speaker (a burst is already one turn: prepare joins a speaker's run of
                messages), scored by their mean probability. A single short message ("it's a
                thing") carries little voice; people are told apart by a handful of them, as a
                reader of a chat would. Balanced accuracy is given for both.

On the sample corpus (Ada against her six correspondents; 263 and 233 distinct messages, 128
conversations; fold seeds 0-2): the distorted character n-grams alone, as before, 0.74-0.75 a
message and 0.85-0.87 a sample of 5; with habits, calibrated, 0.81-0.83 a message and 0.90-0.94
a sample of 5 (0.90-0.91 of 3, 0.90-0.94 of 8).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# The texts' features are shared with the Pi's scorer (stratoecho/voice_score.py), so both read a text alike.
from stratoecho.stylometry import HABITS as HABITS
from stratoecho.stylometry import distort as distort
from stratoecho.stylometry import habits as habits

# ----------------------------------------------------------------------------- configuration
NGRAMS = (2, 4)  # character n-grams of the distorted text
C = 1.0  # inverse regularisation: 0.3 and 3 did no better on the sample corpus
FOLDS = 5  # conversation-held-out folds of the evaluation
CALIBRATION_FOLDS = 3  # inner folds (of conversations) on which the sigmoid is fitted
SAMPLE = 5  # turns of one speaker scored together; on the sample corpus 3 gave 0.90-0.91, 5 0.90-0.94, 8 0.90-0.94


def _share(part: float, whole: float) -> float:
    return part / whole if whole else 0.0


# ----------------------------------------------------------------------------- the model
def pipeline(kept: frozenset[str], seed: int, groups: Sequence[int] | None = None, labels: Sequence[int] | None = None):
    """An unfitted model from cleaned texts to P(owner) (fit, predict_proba). Calibrated on
    CALIBRATION_FOLDS folds of whole conversations (`groups`, `labels`: of the texts it will be
    fitted on) where there are enough conversations, else on stratified folds."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline, make_union
    from sklearn.preprocessing import FunctionTransformer, StandardScaler


    char = make_pipeline(FunctionTransformer(lambda ts: [distort(t, kept) for t in ts]),
                         TfidfVectorizer(analyzer="char", ngram_range=NGRAMS, lowercase=False, sublinear_tf=True))
    habit = make_pipeline(FunctionTransformer(lambda ts: [habits(t) for t in ts]), StandardScaler())
    lr = make_pipeline(make_union(char, habit),
                       # liblinear: the same figures as lbfgs on the sample corpus in a quarter of the time
                       LogisticRegression(C=C, class_weight="balanced", solver="liblinear", max_iter=1000,
                                          random_state=seed))
    from sklearn.calibration import CalibratedClassifierCV

    return EvenOdds(CalibratedClassifierCV(lr, method="sigmoid", cv=_folds(CALIBRATION_FOLDS, seed, groups, labels)))


class EvenOdds:
    """A calibrated model's P(owner) for a text that is as likely the owner's as not: the odds it
    gives divided by the training data's own (263 of the owner's messages against 233 make every
    calibrated probability lean her way by that much). Whose voice a reply has is asked of texts
    that could be anyone's, and balanced accuracy weighs both sides alike."""

    def __init__(self, model) -> None:
        self.model = model
        self.prior_odds = 1.0

    def fit(self, texts: Sequence[str], labels: Sequence[int]) -> EvenOdds:
        owner = sum(labels)
        self.prior_odds = owner / (len(labels) - owner)
        self.model.fit(texts, labels)
        return self

    def predict_proba(self, texts: Sequence[str]):
        import numpy as np

        p = self.model.predict_proba(texts)[:, 1]
        even = p / (p + (1 - p) * self.prior_odds)
        return np.column_stack([1 - even, even])


def _folds(k: int, seed: int, groups: Sequence[int] | None, labels: Sequence[int] | None):
    """Folds of whole conversations where each label has at least k of them, else stratified folds."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    if groups is None or labels is None or any(
            len({g for g, y in zip(groups, labels) if y == side}) < k for side in (0, 1)):
        return StratifiedKFold(k, shuffle=True, random_state=seed)
    return list(StratifiedGroupKFold(k, shuffle=True, random_state=seed).split(list(groups), list(labels),
                                                                                list(groups)))


# ----------------------------------------------------------------------------- evaluation
@dataclass(frozen=True)
class Turn:
    """A training turn: cleaned text, whether it is the owner's, its conversation, its speaker."""

    text: str
    owner: bool
    conversation: int
    speaker: str


def samples(speakers: Sequence[str], size: int = SAMPLE) -> list[list[int]]:
    """Indices of consecutive runs of up to `size` texts of one speaker, in the order given
    (a speaker's texts need not be adjacent: each speaker's are taken in order)."""
    by: dict[str, list[int]] = {}
    for i, s in enumerate(speakers):
        by.setdefault(s, []).append(i)
    return [idx[k:k + size] for idx in by.values() for k in range(0, len(idx), size)]


def held_out_probabilities(turns: Sequence[Turn], frequent, seed: int) -> tuple[list[float], list[int]]:
    """Each turn's P(owner) from a model fitted without its conversation (FOLDS folds of whole
    conversations; stratified folds when a side has fewer conversations than folds), and the
    fold it was held out in. `frequent(texts)` gives the kept words, learnt from each fold's
    training part alone."""
    import numpy as np

    labels = [int(t.owner) for t in turns]
    groups = [t.conversation for t in turns]
    texts = [t.text for t in turns]
    probs, fold_of = np.zeros(len(turns)), [0] * len(turns)
    splits = _folds(FOLDS, seed, groups, labels)
    if not isinstance(splits, list):
        splits = list(splits.split(texts, labels))
    for f, (train, test) in enumerate(splits):
        part = [texts[i] for i in train]
        model = pipeline(frequent(part), seed, groups=[groups[i] for i in train], labels=[labels[i] for i in train])
        model.fit(part, [labels[i] for i in train])
        probs[test] = model.predict_proba([texts[i] for i in test])[:, 1]
        for i in test:
            fold_of[i] = f
    return probs.tolist(), fold_of


def recognised(probs: Sequence[float], labels: Sequence[int], units: Sequence[Sequence[int]]) -> tuple[float, float]:
    """(share of the owner's units with mean P above 0.5, share of the others' at or below it)."""
    owner = [sum(probs[i] for i in u) / len(u) > 0.5 for u in units if labels[u[0]]]
    others = [sum(probs[i] for i in u) / len(u) <= 0.5 for u in units if not labels[u[0]]]
    return _share(sum(owner), len(owner)), _share(sum(others), len(others))
