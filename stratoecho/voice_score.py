"""The owner's voice classifier as the bundle ships it (BUNDLE/voice.json.gz), scored without scikit-learn.

The build trains an authorship classifier with scikit-learn for its report (host_training/evaluate/
voice_model.py) and exports it here (host_training/evaluate/voice_export.py); the payload, which has no
scikit-learn, reads the file with this module and gets for a text the probability the report's classifier
gives, to choose among candidate musings the one most like its owner. Standard library only: on a Zero 2 W
a process that never imports numpy saves its memory.

What a text goes through, as scikit-learn does it:

    clean, distort   stylometry.clean, then stylometry.distort with the file's kept words
    n-grams          character n-grams of `ngram_range` (TfidfVectorizer(analyzer="char", lowercase=False):
                     runs of two or more whitespace characters made one space first)
    tf-idf           each n-gram of the vocabulary counted, 1 + ln(count) (sublinear_tf), times its idf,
                     the vector scaled to unit length (l2): n-grams outside the vocabulary count nowhere
    habits           stylometry.habits of the cleaned text, standardised ((x - mean) / scale)
    decision         the two views' dot product with the logistic regression's coefficients, plus its intercept
    calibration      Platt's sigmoid, 1 / (1 + exp(a * decision + b)), per calibration fold; the folds' mean
                     (CalibratedClassifierCV's ensemble: one fitted model and sigmoid per fold)
    even odds        p / (p + (1 - p) * prior_odds): the training data's own odds taken out (voice_model.EvenOdds)

The file, JSON (gzip-compressed), version 1:

    format       "stratoecho voice classifier"
    version      1
    kept         the words distortion leaves as written (case-folded)
    ngram_range  [2, 4]
    habits       the names of stylometry.HABITS in order: a file built with other habit figures is refused
    prior_odds   the owner's training messages over the others'
    ngrams       every n-gram of any member's vocabulary (the union)
    members      one per calibration fold: idf and ngram_coef (aligned with `ngrams`; 0 where the member's
                 vocabulary lacks the n-gram, since an idf is never below 1), habit_mean, habit_scale,
                 habit_coef (aligned with `habits`), intercept, sigmoid_a, sigmoid_b
"""

from __future__ import annotations

import gzip
import json
import math
import re
from array import array
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .stylometry import HABITS, clean, distort, habits

FORMAT = "stratoecho voice classifier"
VERSION = 1
VOICE_FILE = "voice.json.gz"  # its name in the bundle, listed in [[files]] and named by persona.toml [owner] voice
_WHITE_SPACES = re.compile(r"\s\s+")  # what scikit-learn's char analyzer makes one space


class VoiceFileError(ValueError):
    """A voice classifier file that cannot be read: not gzip or JSON, another format or version, or malformed."""


def char_ngrams(text: str, low: int, high: int) -> list[str]:
    """The character n-grams of `text`, `low` to `high` long, in scikit-learn's order (all of the
    shortest first), its whitespace runs made one space as TfidfVectorizer(analyzer="char") does."""
    text = _WHITE_SPACES.sub(" ", text)
    return [text[i:i + n] for n in range(low, min(high, len(text)) + 1) for i in range(len(text) - n + 1)]


def _sigmoid_of_minus(z: float) -> float:
    """1 / (1 + exp(z)) without overflow for a large |z| (scipy's expit(-z), as scikit-learn's sigmoid)."""
    if z > 0:
        e = math.exp(-z)
        return e / (1.0 + e)
    return 1.0 / (1.0 + math.exp(z))


@dataclass(frozen=True)
class Member:
    """One calibration fold's fitted model and its sigmoid."""

    idf: array  # by n-gram of the union; 0.0 where this member's vocabulary lacks it
    ngram_coef: array
    habit_mean: tuple[float, ...]
    habit_scale: tuple[float, ...]
    habit_coef: tuple[float, ...]
    intercept: float
    sigmoid_a: float
    sigmoid_b: float

    def probability(self, hits: Sequence[tuple[int, int]], figures: Sequence[float]) -> float:
        """Calibrated P(owner) from (n-gram index, count) pairs and the text's habit figures."""
        squares = dot = 0.0
        for i, count in hits:
            w = (1.0 + math.log(count)) * self.idf[i]
            squares += w * w
            dot += w * self.ngram_coef[i]
        decision = (dot / math.sqrt(squares) if squares else 0.0) + self.intercept
        for x, mean, scale, coef in zip(figures, self.habit_mean, self.habit_scale, self.habit_coef):
            decision += (x - mean) / scale * coef
        return _sigmoid_of_minus(self.sigmoid_a * decision + self.sigmoid_b)


class VoiceScorer:
    """P(the owner's) of a text, as the build's classifier gives it. Made by `load_voice` or `from_dict`."""

    def __init__(self, kept: frozenset[str], ngram_range: tuple[int, int], prior_odds: float, ngrams: Sequence[str],
                 members: Sequence[Member]) -> None:
        self.kept = kept
        self.ngram_range = ngram_range
        self.prior_odds = prior_odds
        self._index = {g: i for i, g in enumerate(ngrams)}
        self.members = tuple(members)

    @property
    def ngrams(self) -> int:
        """How many n-grams the vocabularies hold together."""
        return len(self._index)

    def probability(self, text: str) -> float | None:
        """P(the owner's) of `text`, at even odds; None for a text with nothing left once
        placeholders are taken out (an empty musing has no voice at all)."""
        text = clean(text)
        if not text:
            return None
        counts = Counter(char_ngrams(distort(text, self.kept), *self.ngram_range))
        hits = [(self._index[g], c) for g, c in counts.items() if g in self._index]
        figures = habits(text)
        p = sum(m.probability(hits, figures) for m in self.members) / len(self.members)
        return p / (p + (1.0 - p) * self.prior_odds)

    def probabilities(self, texts: Sequence[str]) -> list[float | None]:
        return [self.probability(t) for t in texts]

    @classmethod
    def from_dict(cls, data: object, source: str = "voice classifier") -> VoiceScorer:
        """The scorer a file's JSON describes; VoiceFileError naming `source` and what was expected otherwise."""
        return _parse(data, source)


def _numbers(value: object, n: int, what: str, source: str) -> list[float]:
    if not isinstance(value, list) or len(value) != n:
        got = f"{len(value)} values" if isinstance(value, list) else type(value).__name__
        raise VoiceFileError(f"{source}: {what} should be a list of {n} numbers, got {got}")
    for x in value:
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
            raise VoiceFileError(f"{source}: {what} should hold finite numbers, found {x!r}")
    return value


def _number(value: object, what: str, source: str) -> float:
    return float(_numbers([value], 1, what, source)[0])


def _parse(data: object, source: str) -> VoiceScorer:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise VoiceFileError(f"{source}: not a voice classifier (format {found!r}, expected {FORMAT!r})")
    if data.get("version") != VERSION:
        raise VoiceFileError(f"{source}: voice classifier version {data.get('version')!r}, this software reads {VERSION}")
    if data.get("habits") != list(HABITS):
        raise VoiceFileError(f"{source}: its habit figures are not this software's ({len(HABITS)} from chars_sqrt to "
                             f"{HABITS[-1]!r}): built by another version of stratoecho")
    low, high = (int(x) for x in _numbers(data.get("ngram_range"), 2, "ngram_range", source))
    if not 1 <= low <= high:
        raise VoiceFileError(f"{source}: ngram_range {[low, high]} should be two lengths, the shorter first")
    kept, ngrams, members = data.get("kept"), data.get("ngrams"), data.get("members")
    for what, words in (("kept", kept), ("ngrams", ngrams)):
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words) or len(set(words)) != len(words):
            raise VoiceFileError(f"{source}: {what} should be a list of distinct strings")
    prior_odds = _number(data.get("prior_odds"), "prior_odds", source)
    if prior_odds <= 0:
        raise VoiceFileError(f"{source}: prior_odds {prior_odds} should be above 0")
    if not isinstance(members, list) or not members or not all(isinstance(m, dict) for m in members):
        raise VoiceFileError(f"{source}: members should be a non-empty list of objects (one per calibration fold)")
    parsed = []
    for k, m in enumerate(members):
        where = f"members[{k}]."
        scale = _numbers(m.get("habit_scale"), len(HABITS), where + "habit_scale", source)
        if any(s == 0 for s in scale):
            raise VoiceFileError(f"{source}: {where}habit_scale holds a 0 (a scale is never 0)")
        parsed.append(Member(
            idf=array("d", _numbers(m.get("idf"), len(ngrams), where + "idf", source)),
            ngram_coef=array("d", _numbers(m.get("ngram_coef"), len(ngrams), where + "ngram_coef", source)),
            habit_mean=tuple(_numbers(m.get("habit_mean"), len(HABITS), where + "habit_mean", source)),
            habit_scale=tuple(scale),
            habit_coef=tuple(_numbers(m.get("habit_coef"), len(HABITS), where + "habit_coef", source)),
            intercept=_number(m.get("intercept"), where + "intercept", source),
            sigmoid_a=_number(m.get("sigmoid_a"), where + "sigmoid_a", source),
            sigmoid_b=_number(m.get("sigmoid_b"), where + "sigmoid_b", source)))
    return VoiceScorer(frozenset(kept), (low, high), prior_odds, ngrams, parsed)


def load_voice(path: str | Path) -> VoiceScorer:
    """Read a voice classifier file (gzip-compressed JSON, or plain JSON)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise VoiceFileError(f"{path}: cannot read the voice classifier: {e}") from e
    try:
        if raw[:2] == b"\x1f\x8b":  # gzip's magic number
            raw = gzip.decompress(raw)
        data = json.loads(raw.decode("utf-8"))
    except (EOFError, OSError, UnicodeDecodeError, ValueError) as e:  # gzip.BadGzipFile is an OSError
        raise VoiceFileError(f"{path}: not a voice classifier (expected gzip-compressed JSON): {e}") from e
    return VoiceScorer.from_dict(data, str(path))


def dumps(data: dict) -> bytes:
    """`data` (the file's JSON) as the bundle ships it: compact JSON, gzip-compressed with no timestamp,
    so that the same classifier gives the same bytes and the same sha256."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return gzip.compress(text.encode("utf-8"), mtime=0)
