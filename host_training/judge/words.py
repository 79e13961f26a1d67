"""The judging page's words in the owner's language, from host_training/data/judge_words.toml.

The people who judge know the owner and read the owner's language, which `prepare` recorded and
persona.toml [persona] language carries. A language without a table gets English, never another
language's words.
"""

from __future__ import annotations

import re
import string
import tomllib
from functools import cache
from importlib.resources import files

WORDS_FILE = "judge_words.toml"
FALLBACK = "en"
_FIELD = re.compile(r"\{(\w*)\}")


class WordsTableError(ValueError):
    """judge_words.toml has a table that cannot be used; the message names the table and entry."""


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def load_tables(tables: dict) -> dict[str, dict[str, str]]:
    """Every language's words as read from judge_words.toml, checked against English's: the same
    entries, each text with the same {fields}. WordsTableError naming what is wrong."""
    english = tables.get(FALLBACK)
    if not isinstance(english, dict) or not english:
        raise WordsTableError(f"{WORDS_FILE}: no [{FALLBACK}] table, which every other table is checked against")
    out = {}
    for code, words in tables.items():
        if not isinstance(words, dict):
            raise WordsTableError(f"{WORDS_FILE}: [{code}] is not a table")
        missing, extra = sorted(set(english) - set(words)), sorted(set(words) - set(english))
        if missing or extra:
            raise WordsTableError(f"{WORDS_FILE}: [{code}] " + "; ".join(
                part for part in (missing and f"lacks {', '.join(missing)}", extra and f"has no use for {', '.join(extra)}")
                if part))
        for key, text in words.items():
            if not isinstance(text, str) or not text.strip():
                raise WordsTableError(f"{WORDS_FILE}: [{code}] {key} is not a text")
            try:
                fields = _fields(text)
            except ValueError as e:  # a lone { or }
                raise WordsTableError(f"{WORDS_FILE}: [{code}] {key}: {e}") from None
            if fields != _fields(english[key]):
                raise WordsTableError(f"{WORDS_FILE}: [{code}] {key} has the fields {sorted(fields)}, "
                                      f"[{FALLBACK}] {sorted(_fields(english[key]))}")
        out[code] = dict(words)
    return out


@cache
def tables() -> dict[str, dict[str, str]]:
    with files("host_training").joinpath("data", WORDS_FILE).open("rb") as f:
        return load_tables(tomllib.load(f))


def page_words(language: str | None) -> tuple[str, dict[str, str]]:
    """(the language the page is written in, its words): the owner's, else English."""
    code = (language or "").strip().lower()
    known = tables()
    return (code, known[code]) if code in known else (FALLBACK, known[FALLBACK])


def fill(text: str, **values: object) -> str:
    """`text` with each {field} given in `values` replaced (a field not given is left as it is,
    for the page's script to fill)."""
    return _FIELD.sub(lambda m: str(values[m.group(1)]) if m.group(1) in values else m.group(), text)
