"""How a person writes, as the owner's voice classifier reads it: the same on the workstation
that trains it (host_training/evaluate/voice_model.py) and on the Pi that runs it
(stratoecho/voice_score.py), so a text is read alike on both sides of the flight.

    clean     privacy placeholders (<PHONE_1>) out, whitespace runs made single, empty lines dropped:
              the owner's data holds placeholders in place of values, so they tell nothing of style
    distort   every word but the kept (frequent) ones has its letters masked, every digit is #
              (Stamatatos 2017), so character n-grams learn how a person writes, not what about
    habits    figures of one text (HABITS): length and lines, casing, punctuation per character
              by kind, line ends, emoji, digits, word length

Pure functions of the text: standard library only, nothing read or written.
"""

from __future__ import annotations

import re

from .privacy import PLACEHOLDER

# A word for vocabulary purposes: letters, with inner apostrophes ("don't").
WORD = re.compile(r"[^\W\d_]+(?:['\u2019][^\W\d_]+)*")
_EMOJI_BASE = (
    "\U0001F300-\U0001F5FF\U0001F600-\U0001F64F\U0001F680-\U0001F6FF\U0001F700-\U0001F77F"
    "\U0001F780-\U0001F7FF\U0001F800-\U0001F8FF\U0001F900-\U0001F9FF\U0001FA00-\U0001FAFF"
    "\U0001F000-\U0001F02F\U0001F0A0-\U0001F0FF\U0001F18E\U0001F191-\U0001F19A"
    "\u2600-\u27BF\u2B00-\u2BFF\u231A\u231B\u23E9-\u23FA"
)
_EMOJI_MOD = "\uFE0F\U0001F3FB-\U0001F3FF"
# One emoji as a person sees it: a flag (two regional indicators), or a base with its
# variation selector / skin tone, possibly joined to more by ZWJ (a family counts once).
EMOJI = re.compile(
    rf"[\U0001F1E6-\U0001F1FF]{{2}}"
    rf"|[{_EMOJI_BASE}][{_EMOJI_MOD}]*(?:\u200D[{_EMOJI_BASE}][{_EMOJI_MOD}]*)*"
)
DIGIT = re.compile(r"\d")
SENTENCE_END = re.compile(r"[.!?]\s+(\S)")
PUNCTUATION = (".", ",", "!", "?", "'", '"', "-", ":", ";", "(", "…", "...")
HABITS = ("chars_sqrt", "words_sqrt", "lines", "line_chars_sqrt", "upper_letters", "starts_upper", "starts_lower",
          "upper_after_stop", "capitalised_words", "pronoun_I", "pronoun_i", "upper_words", "lines_end_stop",
          "lines_end_bang_or_question", "emoji", "digits", "word_length", "spaced_dash", "doubled_bang_or_question"
          ) + tuple(f"punct {p}" for p in PUNCTUATION)


def count_emoji(text: str) -> int:
    return len(EMOJI.findall(text))


def clean(text: str) -> str:
    """`text` without privacy placeholders, its whitespace runs (newlines kept) made single."""
    lines = (" ".join(line.split()) for line in PLACEHOLDER.sub(" ", text).split("\n"))
    return "\n".join(line for line in lines if line)


def distort(text: str, kept: frozenset[str]) -> str:
    """`text` with the letters of every word not in `kept` masked (X capital, * other) and every
    digit #: "Gerald is 3 days old" -> "X***** is # days old" when "is", "days" and "old" are kept."""
    masked = WORD.sub(lambda m: m[0] if m[0].casefold() in kept else
                      "".join("X" if c.isupper() else "*" for c in m[0]), text)
    return DIGIT.sub("#", masked)


def _share(part: float, whole: float) -> float:
    return part / whole if whole else 0.0


def habits(text: str) -> list[float]:
    """The habit figures of one cleaned text, in HABITS' order."""
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    ws = WORD.findall(text)
    n, nw = len(text), len(ws)
    after_stop = [m[1] for m in SENTENCE_END.finditer(text) if m[1].isalpha()]
    capitals = sum(1 for w in ws[1:] if w[0].isupper())
    figures = [
        len(text) ** 0.5, nw ** 0.5, float(len(lines)), _share(sum(len(x) for x in lines), len(lines)) ** 0.5,
        _share(sum(c.isupper() for c in text), sum(c.isalpha() for c in text)),
        float(text[:1].isupper()), float(text[:1].islower()),
        _share(sum(c.isupper() for c in after_stop), len(after_stop)), _share(capitals, nw - 1),
        float(bool(re.search(r"\bI\b", text))), float(bool(re.search(r"\bi\b", text))),
        _share(sum(1 for w in ws if len(w) > 1 and w.isupper()), nw),
        _share(sum(1 for x in lines if x[-1:] == "."), len(lines)),
        _share(sum(1 for x in lines if x[-1:] in "!?"), len(lines)),
        float(count_emoji(text)), _share(sum(c.isdigit() for c in text), n),
        _share(sum(len(w) for w in ws), nw), float(" - " in text), float("!!" in text or "??" in text),
    ]
    return figures + [_share(text.count(p), n) * 100 for p in PUNCTUATION]
