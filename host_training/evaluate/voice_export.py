"""The report's voice classifier, exported for the Pi (the file stratoecho/voice_score.py reads).

The build's report trains one authorship classifier (voice.VoiceClassifier: voice_model.EvenOdds over a
CalibratedClassifierCV). With folds as its `cv` that is an ensemble: one clone of the pipeline fitted on
each calibration fold's training part, each with the Platt sigmoid fitted on the fold's held-out part,
their probabilities averaged. Each fold is read here into plain numbers -- its tf-idf vocabulary and
idf, its scaler, its coefficients, its sigmoid -- so the bundle ships the very classifier the report
measured with, not a second one trained for the Pi.

`export` refuses a model whose settings the scorer does not reproduce (another norm, lower-casing,
...), and `largest_difference` is the check that the exported file gives scikit-learn's probabilities.
"""

from __future__ import annotations

from collections.abc import Sequence

from stratoecho.stylometry import HABITS
from stratoecho.voice_score import FORMAT, VERSION, VoiceScorer

TOLERANCE = 1e-6  # the scorer's P(owner) against scikit-learn's; what is found is about 1e-15 (float rounding)

# TfidfVectorizer's settings that voice_score reproduces: others change the figures.
_TFIDF = dict(analyzer="char", lowercase=False, sublinear_tf=True, norm="l2", use_idf=True, binary=False,
              strip_accents=None, preprocessor=None)


class ExportError(ValueError):
    """A classifier that the bundle's scorer would not reproduce."""


def _expect(what: str, got, want) -> None:
    if got != want:
        raise ExportError(f"the voice classifier's {what} is {got!r}; the bundle's scorer (stratoecho/voice_score.py) "
                          f"reproduces {want!r}")


def _member(fold):
    """(vocabulary, idf, n-gram coefficients, the member's numbers but those) of one calibration fold."""
    (_, union), (_, lr) = fold.estimator.steps
    (_, char), (_, habit) = union.transformer_list
    tfidf, scaler = char.steps[-1][1], habit.steps[-1][1]
    params = tfidf.get_params()
    for key, want in _TFIDF.items():
        _expect(f"TfidfVectorizer {key}", params[key], want)
    _expect("calibration", getattr(fold, "method", None), "sigmoid")
    _expect("classes", [int(c) for c in lr.classes_], [0, 1])
    _expect("StandardScaler (with_mean, with_std)", (scaler.with_mean, scaler.with_std), (True, True))
    vocabulary = tfidf.vocabulary_
    coef = lr.coef_[0]
    _expect("number of coefficients", len(coef), len(vocabulary) + len(HABITS))
    (calibrator,) = fold.calibrators
    rest = {"habit_mean": [float(x) for x in scaler.mean_], "habit_scale": [float(x) for x in scaler.scale_],
            "habit_coef": [float(x) for x in coef[len(vocabulary):]], "intercept": float(lr.intercept_[0]),
            "sigmoid_a": float(calibrator.a_), "sigmoid_b": float(calibrator.b_)}
    return vocabulary, tfidf.idf_, coef, tuple(tfidf.ngram_range), rest


def export(classifier) -> dict:
    """The file's JSON (stratoecho/voice_score.py, version 1) for a fitted voice.VoiceClassifier."""
    even = classifier.model
    folds = even.model.calibrated_classifiers_
    members = [_member(f) for f in folds]
    ranges = {m[3] for m in members}
    if len(ranges) != 1:
        raise ExportError(f"the voice classifier's folds read n-grams of different lengths: {sorted(ranges)}")
    ngrams = sorted(set().union(*(m[0] for m in members)))
    out = []
    for vocabulary, idf, coef, _, rest in members:
        cols = [vocabulary.get(g) for g in ngrams]
        # An n-gram outside this member's vocabulary weighs nothing in it: idf 0 (a real idf is at least 1).
        out.append({"idf": [0.0 if c is None else float(idf[c]) for c in cols],
                    "ngram_coef": [0.0 if c is None else float(coef[c]) for c in cols], **rest})
    return {"format": FORMAT, "version": VERSION, "kept": sorted(classifier.kept), "ngram_range": list(ranges.pop()),
            "habits": list(HABITS), "prior_odds": float(even.prior_odds), "ngrams": ngrams, "members": out}


def largest_difference(classifier, scorer: VoiceScorer, texts: Sequence[str]) -> float:
    """The largest gap between the exported scorer's P(owner) and the classifier's over `texts`
    (0 where both find nothing to score); a text one scores and the other does not is a gap of 1."""
    ours, theirs = scorer.probabilities(texts), classifier.probabilities(texts)
    return max((1.0 if (a is None) != (b is None) else abs(a - b) if a is not None else 0.0
                for a, b in zip(ours, theirs)), default=0.0)
