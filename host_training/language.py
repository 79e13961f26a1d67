"""Which language a text is in, and which languages a person writes. Pure: text in, codes out.

    detect(text)        the ISO 639-1 code of one text's language, or None when it says too little
    profile(texts)      a person's languages: the main one (all their words pooled), and the share
                        of each among the texts that say enough to tell
    system_prompt(code, name)   the persona's default system prompt in that language

How: a text's letters are sorted by script first. A text mostly in a script of its own (Greek,
Hebrew, Hangul, Thai, ...) is that script's language; kana beside Han characters is Japanese.
Latin and Cyrillic texts are told apart by their short, frequent words: every language in
data/languages.toml lists a hundred or so (articles, pronouns, auxiliaries, particles, and the
chat forms: "nich", "hab", "jsp"), and each word of the text counts for the languages whose list
holds it, split between them when several do ("ja" is German, Swedish, Danish and Norwegian, a
quarter each). A few letters count too (ß, ñ, ø, ł). The text is in the language with the highest
count when that count is at least MIN_SCORE and MARGIN times the next one; else it is undecided.

Chat is mostly short: "haha", "ok", "ja digga" say nothing a detector can use, and a person's
share is taken over the texts that do. The main language is decided on all of a person's words
at once, which a few undecided or mixed messages cannot sway.

Why not a package: the registry's detectors are either large (lingua's models are ~100 MB) or
trained on edited prose and unreliable on short chat (langdetect, whose results also vary from
run to run unless seeded). Word lists are small, deterministic, readable, and a user can add a
language by writing one table.
"""

from __future__ import annotations

import re
import tomllib
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files

LANGUAGES_FILE = "languages.toml"
MIN_SCORE = 1.0  # a text is decided when its best language counts at least this many words ...
MARGIN = 1.5  # ... and this many times the next language's count
LETTER_WEIGHT = 0.5  # what one distinctive letter (ß, ñ) counts, split between the languages that have it
MAX_LETTER_SCORE = 1.5  # the most a text's distinctive letters count together: a word list decides
MIN_SHARE = 0.10  # a language the person writes besides the main one: this share of decided texts ...
MIN_TEXTS = 5  # ... and at least this many texts
UNDECIDED = "und"  # ISO 639-2's code for "undetermined", for texts that say too little

# Unicode blocks by script (the parts of them that letters of chat come from).
SCRIPTS: tuple[tuple[str, tuple[tuple[int, int], ...]], ...] = (
    ("Latin", ((0x41, 0x5A), (0x61, 0x7A), (0xC0, 0x24F), (0x1E00, 0x1EFF))),
    ("Greek", ((0x370, 0x3FF), (0x1F00, 0x1FFF))),
    ("Cyrillic", ((0x400, 0x52F),)),
    ("Hebrew", ((0x590, 0x5FF),)),
    ("Arabic", ((0x600, 0x6FF), (0x750, 0x77F), (0xFB50, 0xFDFF), (0xFE70, 0xFEFF))),
    ("Devanagari", ((0x900, 0x97F),)),
    ("Thai", ((0xE00, 0xE7F),)),
    ("Hangul", ((0x1100, 0x11FF), (0x3130, 0x318F), (0xAC00, 0xD7AF))),
    ("Kana", ((0x3040, 0x30FF), (0x31F0, 0x31FF))),
    ("Han", ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF))),
)
_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)?")


@dataclass(frozen=True)
class Language:
    code: str  # ISO 639-1
    name: str  # in English
    words: frozenset[str]
    letters: str = ""
    script: str = "Latin"
    system_prompt: str | None = None  # with {name}


class LanguageTableError(ValueError):
    """data/languages.toml has an entry that cannot be used; the message names it."""


def load_table(table: dict) -> dict[str, Language]:
    """`table` as read from languages.toml; LanguageTableError naming a wrong entry."""
    known_scripts = {name for name, _ in SCRIPTS}
    out: dict[str, Language] = {}
    for code, entry in table.items():
        where = f"{LANGUAGES_FILE}: [{code}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise LanguageTableError(f"{where}: expected a table with at least name = \"...\"")
        unknown = set(entry) - {"name", "words", "letters", "script", "system_prompt"}
        if unknown:
            raise LanguageTableError(f"{where}: unknown entry {sorted(unknown)[0]!r}")
        script = entry.get("script", "Latin")
        if script not in known_scripts:
            raise LanguageTableError(f"{where}: script {script!r} is not one of {', '.join(sorted(known_scripts))}")
        prompt = entry.get("system_prompt")
        if prompt is not None and "{name}" not in prompt:
            raise LanguageTableError(f"{where}: system_prompt must hold {{name}}, where the persona's name goes")
        words = frozenset(w.casefold() for w in str(entry.get("words", "")).split())
        if script == "Latin" and not words:
            raise LanguageTableError(f"{where}: a language in Latin script needs its words")
        out[code] = Language(code, entry["name"], words, str(entry.get("letters", "")), script, prompt)
    return out


@cache
def languages() -> dict[str, Language]:
    with files("host_training").joinpath("data", LANGUAGES_FILE).open("rb") as f:
        return load_table(tomllib.load(f))


def name(code: str | None) -> str:
    """'German' for 'de'; the code itself for one not in the table; 'undetermined' for None."""
    if code is None or code == UNDECIDED:
        return "undetermined"
    lang = languages().get(code)
    return lang.name if lang else code


# ----------------------------------------------------------------------------- one text
def script_of(ch: str) -> str | None:
    o = ord(ch)
    for script, blocks in SCRIPTS:
        if any(lo <= o <= hi for lo, hi in blocks):
            return script
    return None


def scripts(text: str) -> Counter[str]:
    """Letters of the text by script."""
    return Counter(s for ch in text if ch.isalpha() and (s := script_of(ch)) is not None)


@cache
def _index() -> tuple[dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]]:
    """word -> the languages whose list holds it; letter -> the languages it marks."""
    by_word: dict[str, list[str]] = defaultdict(list)
    by_letter: dict[str, list[str]] = defaultdict(list)
    for lang in languages().values():
        for w in lang.words:
            by_word[w].append(lang.code)
        for ch in lang.letters:
            by_letter[ch.casefold()].append(lang.code)
    return ({w: tuple(v) for w, v in by_word.items()}, {c: tuple(v) for c, v in by_letter.items()})


def scores(text: str) -> dict[str, float]:
    """How much of the text speaks for each language (see the module's docstring); empty when nothing does."""
    tally: dict[str, float] = defaultdict(float)
    counts = scripts(text)
    if not counts:
        return {}
    main_script, n = counts.most_common(1)[0]
    own = [lang.code for lang in languages().values() if lang.script == main_script]
    if main_script == "Han" and counts.get("Kana"):
        main_script, own = "Kana", [lang.code for lang in languages().values() if lang.script == "Kana"]
    if len(own) == 1 and main_script != "Latin":
        return {own[0]: float(n)}  # a script of its own: its letters are the evidence
    by_word, by_letter = _index()
    folded = text.casefold()
    for word in _WORD.findall(folded):
        word = word.replace("’", "'")
        for code in by_word.get(word, ()):
            tally[code] += 1 / len(by_word[word])
    letters: dict[str, float] = defaultdict(float)
    for ch in folded:
        for code in by_letter.get(ch, ()):
            letters[code] += LETTER_WEIGHT / len(by_letter[ch])
    for code, v in letters.items():
        tally[code] += min(v, MAX_LETTER_SCORE)
    return dict(tally)


def decide(tally: dict[str, float], min_score: float = MIN_SCORE) -> str | None:
    """The language `scores` speak for, or None when they say too little or two are too close."""
    if not tally:
        return None
    ranked = sorted(tally.items(), key=lambda kv: (-kv[1], kv[0]))
    best, score = ranked[0]
    second = ranked[1][1] if len(ranked) > 1 else 0.0
    return best if score >= min_score and score >= MARGIN * second else None


def detect(text: str) -> str | None:
    """The ISO 639-1 code of the text's language, or None when it says too little to tell."""
    return decide(scores(text))


# ----------------------------------------------------------------------------- a person
@dataclass(frozen=True)
class Profile:
    """Which languages a person writes, from their texts."""

    main: str | None  # decided on all their words at once; None when nothing could be told
    counts: dict[str, int] = field(default_factory=dict)  # decided texts by language, most first
    texts: int = 0  # texts looked at
    decided: int = 0  # texts that said enough to tell

    def share(self, code: str) -> float:
        return self.counts.get(code, 0) / self.decided if self.decided else 0.0

    @property
    def languages(self) -> list[str]:
        """The main language first, then each other one with at least MIN_SHARE of the decided
        texts and MIN_TEXTS texts: the languages a persona of this person has to write."""
        others = [c for c, n in self.counts.items() if c != self.main and n >= MIN_TEXTS and self.share(c) >= MIN_SHARE]
        return ([self.main] if self.main else []) + others

    def record(self) -> dict:
        """For prepare's report.json (and read back by build: `from_record`)."""
        return {"main": self.main, "name": name(self.main), "languages": self.languages, "texts": self.texts,
                "decided": self.decided, "shares": {c: round(self.share(c), 4) for c in self.counts},
                "method": "short frequent words and distinctive letters per language, or the script "
                          "(host_training/language.py); texts that say too little are undecided"}

    def text(self) -> str:
        """One line for a summary: "German (de) in 96 % of the 230 of 371 texts that say enough to tell; English 4 %"."""
        if self.main is None:
            return f"undetermined: none of {self.texts} texts says enough to tell"
        rest = [f"{name(c)} {_pct(self.share(c))}" for c in self.counts if c != self.main][:3]
        return (f"{name(self.main)} ({self.main}) in {_pct(self.share(self.main))} of the {self.decided} of "
                f"{self.texts} texts that say enough to tell" + ("; " + ", ".join(rest) if rest else ""))


def _pct(share: float) -> str:
    return "<1 %" if 0 < share < 0.005 else f"{100 * share:.0f} %"


def profile(texts: Iterable[str]) -> Profile:
    """A person's languages from their texts (messages, turns, posts)."""
    pooled: dict[str, float] = defaultdict(float)
    counts: Counter[str] = Counter()
    n = 0
    for text in texts:
        n += 1
        tally = scores(text)
        for code, v in tally.items():
            pooled[code] += v
        code = decide(tally)
        if code is not None:
            counts[code] += 1
    decided = sum(counts.values())
    main = decide(pooled, min_score=MIN_SCORE) if pooled else None
    if main is None and counts:
        main = counts.most_common(1)[0][0]
    ordered = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    return Profile(main, ordered, n, decided)


def from_record(rec: object) -> Profile | None:
    """A Profile back from prepare's report.json "language" entry; None when there is none or it is not one."""
    if not isinstance(rec, dict) or not isinstance(rec.get("shares"), dict):
        return None
    decided = rec.get("decided") if isinstance(rec.get("decided"), int) else 0
    counts = {str(c): round(float(s) * decided) for c, s in rec["shares"].items() if isinstance(s, int | float)}
    main = rec.get("main") if isinstance(rec.get("main"), str) else None
    return Profile(main, counts, int(rec.get("texts") or 0), decided)


def system_prompt(code: str | None, persona: str) -> str | None:
    """The default system prompt in the language `code`, with the persona's name; None when the
    table has none in it (the caller falls back to English and says so)."""
    lang = languages().get(code or "")
    return lang.system_prompt.format(name=persona) if lang and lang.system_prompt else None
