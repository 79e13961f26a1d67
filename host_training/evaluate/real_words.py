"""How many of a text's words are real words of the owner's language: the measure babble fails.

A classifier of how a person writes learns habits (casing, punctuation, word lengths), and a
tiny model's babble in the owner's letters has them: a German owner's persona wrote "ich hab das
geklässen" and was "his" every time. Whether the words exist is a different question, asked here
of a list that neither the owner nor the model wrote: the word frequencies of the language in
the PyPI package wordfreq (Apache-2.0 code; its data CC-BY-SA 4.0, compiled from Wikipedia,
subtitles, news, books, web text and more). A word counts as real when its frequency is at
least MIN_ZIPF on the Zipf scale (log10 of its frequency per billion words: "the" 7.7,
"pewter" 2.8, "earlies" 1.6); "geklässen" is not in the German list at all, "kampel" is at
1.3 (a surname) and fails. A lexicon built from the owner's own messages would pass whatever
she wrote and fail her typos, and one built from the training text would also pass the model's
copies; this one is fixed before either.

Every list holds other languages too (web text is full of English): by its list alone, 97.4 % of
an English base's musings were "real words (es)" (issue 49). So a word is a real word of a language
only when it is also not MARGIN or more (100 times) more frequent in one of RIVALS, the languages
personas here are built for: "the" is 7.7 in English and 4.5 in Spanish, and is not Spanish. On
a dozen plain sentences each (tests/test_real_words.py), English text counts 16 % real Spanish and
40 % real German words where it counted 99 % by the lists alone, Spanish and German text 100 % and
99 % their own; the sample owners' held-out turns kept their shares (Ada 99.9 % to 99.3 % English:
"ha" is Spanish's; Jannik 99.1 % to 98.6 % German). A margin of 1.5 would take English as German to
17 % but Jannik's chat "is" (5.2 in German, 7.1 in English) with it: 94 %.

    share(texts, language)   (real words, words) over `texts`: words are runs of letters with
                             inner apostrophes, lower-cased; privacy placeholders, numbers, URLs
                             and words of one letter are not counted (an "x" or "k" of a chat is
                             neither real nor babble)
    best_language(texts)     the wordfreq language, of CANDIDATES, in which the most of `texts`'
                             words are real: the owner's language when nothing better is known

Read a model's share beside the owner's own held-out messages (the owner's rate is not 100 %:
names, slang, typos): near it, the words are hers as much as her own are; far below it, babble.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from stratoecho.privacy import PLACEHOLDER

from ..report import WORD

MIN_ZIPF = 1.5  # a word at least this frequent (Zipf scale) in the language's list is a real word ...
MARGIN = 2.0  # ... unless it is this much more frequent (Zipf: 100 times) in a rival language's list
# The rivals: the languages personas are built for here (English, which every list holds, first).
RIVALS = ("en", "de", "fr", "es", "it", "pt", "nl")
# The languages best_language chooses among: wordfreq's with a large list, in Latin, Cyrillic,
# Greek, Hebrew or Arabic script (words found by the letters regex; CJK needs a segmenter).
CANDIDATES = ("en", "de", "fr", "es", "it", "nl", "pt", "sv", "nb", "da", "fi", "pl", "cs", "ca", "ro", "hu",
              "tr", "ru", "uk", "el", "he", "ar")
TOLERANCE = 0.10  # a model's share this far below the owner's held-out share is babble, whatever its voice
URL = re.compile(r"\S+://\S+|www\.\S+|\S+@\S+")


class LanguageError(ValueError):
    """A language wordfreq has no word list for."""


@dataclass(frozen=True)
class RealWords:
    """`real` of `words` counted words are real words of `language`."""

    language: str
    words: int
    real: int

    @property
    def share(self) -> float | None:
        return self.real / self.words if self.words else None


@lru_cache(maxsize=4)
def lexicon(language: str) -> frozenset[str]:
    """The words of `language` at least MIN_ZIPF frequent (wordfreq's best list), lower case, less
    those MARGIN more frequent in a rival language: another language's words in its list."""
    import wordfreq

    if language not in wordfreq.available_languages():
        raise LanguageError(f"no word list for language {language!r} (wordfreq has "
                            f"{', '.join(sorted(wordfreq.available_languages()))})")
    floor, ratio = 10 ** (MIN_ZIPF - 9), 10 ** MARGIN
    rivals = [wordfreq.get_frequency_dict(r, "best") for r in RIVALS if r != language]
    return frozenset(w for w, f in wordfreq.get_frequency_dict(language, "best").items()
                     if f >= floor and all(r.get(w, 0.0) < f * ratio for r in rivals))


def words_of(text: str) -> list[str]:
    """The words counted in `text`: lower case, no placeholders, URLs, e-mail addresses or single letters."""
    text = URL.sub(" ", PLACEHOLDER.sub(" ", text))
    return [w for w in (m.lower().replace("\u2019", "'") for m in WORD.findall(text)) if len(w) > 1]


def share(texts: Iterable[str], language: str) -> RealWords:
    """How many of `texts`' words are real words of `language`."""
    known = lexicon(language)
    ws = [w for t in texts for w in words_of(t)]
    return RealWords(language, len(ws), sum(1 for w in ws if w in known))


def best_language(texts: Sequence[str], candidates: Sequence[str] = CANDIDATES) -> str:
    """The candidate language whose common words (wordfreq's small list, its ~30,000 most frequent)
    hold the largest share of `texts`' words (the first candidate, English, when there are none)."""
    import wordfreq

    ws = [w for t in texts for w in words_of(t)]
    if not ws:
        return candidates[0]
    scores = {}
    for lang in candidates:
        common = wordfreq.get_frequency_dict(lang, "small")
        scores[lang] = sum(1 for w in ws if w in common)
    return max(candidates, key=lambda lang: scores[lang])  # max keeps the first of equals


def babble_verdict(model: RealWords, owner: RealWords, tolerance: float = TOLERANCE) -> str | None:
    """"babble" when `model`'s share of real words is more than `tolerance` below the owner's own
    held-out share; "real words" when it is not; None when either has no words."""
    if model.share is None or owner.share is None:
        return None
    return "babble" if model.share < owner.share - tolerance else "real words"
