"""The words of each language the persona is asked in and its claims are read in: one TOML file
per language beside this module (en.toml, de.toml, es.toml ...), named by its ISO 639-1 code.

    language(code) -> Language | None   the file of `code`, read and checked once; None without one
    words(code) -> Language | None      the words `code` is asked and read in: its file; None for a
                                        language without one (its figures alone, from CLDR);
                                        English's for none and for a code CLDR does not know either
    read_language(path) -> Language     any such file (a new language being written, a test's)
    situation_words(code) -> {situation: (word, ...)}   its [situations]; {} without a file
    clause_wordings(code) -> {kind: (clause, ...)}      its [clauses]; {} without a file
    codes() -> tuple[str, ...]          the languages with a file
    LanguageFileError                   a file that is not TOML or not of this shape: names the
                                        file, the key and what was expected

A file holds, by table: [prompt] the musing prompt's words (payload/persona/wording.py),
[questions] the questions asked in turn and by phase, [outcomes] the lines that say what came of
a question to the ground (payload/persona/reach.py), [claims] the patterns a musing's claims are
read with (stratoecho/claim_words.py: what they mean is stratoecho/musing_claims.py's),
[situations] the words that show an owner's own chat line is about a situation a balloon meets,
and [clauses] true clauses the program may start a musing with, its figure filled in
(stratoecho/languages/clauses.py). Numbers, decimal marks and unit names are not in the files:
they come from CLDR for every locale (stratoecho/languages/cldr.py), so a language without a
file is still read on its numbers.

To add a language: copy en.toml to <code>.toml, write each value as a friend would say it, and
run tests/test_languages.py, which holds every file to its own claim words.
"""

from __future__ import annotations

import functools
import re
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from stratoecho.config import ConfigError, describe_validation_error, read_toml

from . import cldr

PHASES = ("pre-launch", "ascent", "float", "descent", "landed")
SITUATIONS = ("cold", "wind", "sun", "night", "height", "falling", "waiting", "tired", "view", "no_signal")
# [clauses]: kind -> the placeholder every clause of it carries (one of them, for altitude).
CLAUSE_FIGURES = {"altitude": ("{km}", "{m}"), "temperature": ("{deg}",), "time_aloft": ("{minutes}",),
                  "time_aloft_hours": ("{hours}",), **{p: () for p in PHASES}}
# [claims.units]: the units a number may be followed by (stratoecho/claim_words.py reads them in this order).
UNIT_KEYS = ("speed_kmh", "speed_mph", "speed_knots", "speed_ms", "altitude_kft", "altitude_km", "altitude_mi",
             "altitude_m", "altitude_ft", "temperature_f", "temperature_c", "pressure_hpa", "pressure_kpa",
             "battery_mv", "battery_v")
ENGLISH_TOO = ("units", "sun", "cold", "warm", "aloft")  # what of English a language may read besides its own
OUTCOME_RESULTS = ("ok", "not_found", "refused", "timeout", "upstream_error", "bad_request", "rate_limited",
                   "offline", "silent_link", "not_sent", "unknown", "empty", "stopped")
_FOLDER = resources.files(__name__)


class LanguageFileError(ConfigError):
    """A language file that cannot be read, is not TOML, or is not of the shape below."""


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _keys(value: dict, wanted, what: str) -> dict:
    missing, unknown = set(wanted) - set(value), set(value) - set(wanted)
    if missing or unknown:
        raise ValueError(f"{what}: expected exactly the keys {', '.join(wanted)}"
                         + (f"; missing {', '.join(sorted(missing))}" if missing else "")
                         + (f"; unknown {', '.join(sorted(unknown))}" if unknown else ""))
    return value


def _has(text: str, *placeholders: str) -> str:
    if not any(p in text for p in placeholders):
        raise ValueError(f"expected text with {' or '.join(placeholders)} in it")
    return text


class Prompt(_Table):
    """The musing prompt's words: "Right now you are {situation}." with the readings in it."""

    situation: str
    nowhere: str
    up: str  # "{km} km up"
    no_fix: str
    no_fix_last: str  # "{alt}": the last known height in `up`'s words
    outside: str  # "{deg} outside"
    battery: str  # "{volts}"
    sunlight: str
    night: str
    aloft_minutes: str  # "{n}"
    aloft_hours: str  # "{h}": one decimal
    remember: str  # the memory list's heading
    you_wrote: str  # the heading of the owner's own lines (stratoecho/exemplars.py)
    reached_out: str  # the outcomes' heading
    you_know: str  # "{text}": what the owner told it before the flight
    said: str  # "{who}": another balloon's words
    ground_told: str
    thought: str
    just_now: str
    minutes_ago: str  # "{n}"
    hours_ago: str
    days_ago: str
    phases: dict[str, str]  # what the persona is doing, as the situation says it
    modes: dict[str, str]  # payload.policy.modes.Mode values that need words
    recall: dict[str, str] = {}  # memory_query's English words in this language

    @model_validator(mode="after")
    def _placeholders(self):
        for key, mark in (("situation", "{situation}"), ("up", "{km}"), ("no_fix_last", "{alt}"), ("outside", "{deg}"),
                          ("battery", "{volts}"), ("aloft_minutes", "{n}"), ("aloft_hours", "{h}"),
                          ("you_know", "{text}"), ("said", "{who}"), ("minutes_ago", "{n}"), ("hours_ago", "{n}"),
                          ("days_ago", "{n}")):
            if mark not in getattr(self, key):
                raise ValueError(f"prompt.{key}: expected text with {mark} in it, got {getattr(self, key)!r}")
        _keys(self.phases, PHASES, "prompt.phases")
        _keys(self.modes, ("low_power", "survival"), "prompt.modes")
        return self


class Questions(_Table):
    plain: str  # asked before launch, after landing, and where the budget has no room for another
    aloft: tuple[str, ...] = Field(min_length=1)  # asked in turn aloft
    phase: dict[str, tuple[str, ...]]  # asked when a figure of the flight is owed

    @field_validator("phase")
    @classmethod
    def _phases(cls, v):
        if any(not q for q in v.values()):
            raise ValueError("every phase needs at least one question")
        return _keys(v, PHASES, "questions.phase")


class Outcomes(_Table):
    """What came of a question to the ground, one short line: "asked for the news: nobody answered"."""

    asked: dict[str, str]  # weather, news, define, other ({api}, {query})
    topic: dict[str, str]  # weather, news, define: "stopped asking for {topic}"
    result: dict[str, str]  # OUTCOME_RESULTS: ok ({text}), stopped ({topic}, {times}) ...
    times: tuple[str, ...] = Field(min_length=10, max_length=10)  # once, twice ... ten times
    times_more: str  # "{n} times"

    @model_validator(mode="after")
    def _shape(self):
        _keys(self.asked, ("weather", "news", "define", "other"), "outcomes.asked")
        _keys(self.topic, ("weather", "news", "define"), "outcomes.topic")
        _keys(self.result, OUTCOME_RESULTS, "outcomes.result")
        _has(self.times_more, "{n}")
        return self


def _pattern(text: str) -> str:
    try:
        re.compile(text)
    except re.error as e:
        raise ValueError(f"expected a regular expression: {e}") from None
    return text


class Claims(_Table):
    """Regular expressions over lower-case text (stratoecho/claim_words.py says what each is for)."""

    minus: str  # words before a number that make it negative ("minus")
    below: str  # after a temperature: below zero ("55 below")
    angle_after: str
    angle_before: str
    distance_after: str
    distance_before: str
    percent: str
    battery_word: str
    about: str  # "about ", "almost " before a time aloft's number
    up: str  # words of being aloft
    time_units: str  # the time units of the time aloft
    aloft: tuple[str, ...]  # patterns with {up}, {about}, {n}, {unit}
    sun_up: str
    sun_down: str
    cold: str
    warm: str
    unanswered: str
    phases: dict[str, str]
    units: dict[str, str]
    counts: dict[str, float]  # number words of the time aloft: {"two": 2}
    time_prefixes: dict[str, int]  # a time unit's first letters -> seconds
    english_too: tuple[str, ...] = ()  # ENGLISH_TOO: what of English this language reads besides
    not_units: tuple[str, ...] = ()  # CLDR unit names this language also uses as words ("mi": me)

    @field_validator("minus", "below", "angle_after", "angle_before", "distance_after", "distance_before", "percent",
                     "battery_word", "about", "up", "time_units", "sun_up", "sun_down", "cold", "warm", "unanswered")
    @classmethod
    def _regex(cls, v):
        return _pattern(v)

    @field_validator("aloft")
    @classmethod
    def _aloft(cls, v):
        for p in v:
            _has(p, "{n}")
            _has(p, "{unit}")
            _pattern(p.replace("{up}", "x").replace("{about}", "").replace("{n}", "(?P<n>1)").replace("{unit}", "(?P<unit>h)"))
        return v

    @field_validator("phases")
    @classmethod
    def _phases(cls, v):
        return {k: _pattern(p) for k, p in _keys(v, PHASES, "claims.phases").items()}

    @field_validator("units")
    @classmethod
    def _units(cls, v):
        if unknown := set(v) - set(UNIT_KEYS):
            raise ValueError(f"claims.units: unknown {', '.join(sorted(unknown))}; expected some of {', '.join(UNIT_KEYS)}")
        return {k: _pattern(p) for k, p in v.items()}

    @field_validator("english_too")
    @classmethod
    def _english(cls, v):
        if unknown := set(v) - set(ENGLISH_TOO):
            raise ValueError(f"unknown {', '.join(sorted(unknown))}; expected some of {', '.join(ENGLISH_TOO)}")
        return v


class Language(_Table):
    """One language's file, checked."""

    code: str = Field(pattern=r"^[a-z]{2,3}$")  # ISO 639-1 (639-3 where there is none)
    name: str  # in English, for messages
    prompt: Prompt
    questions: Questions
    outcomes: Outcomes
    claims: Claims
    situations: dict[str, tuple[str, ...]]  # SITUATIONS -> lower-case words; "freez*" is a prefix
    clauses: dict[str, tuple[str, ...]]  # CLAUSE_FIGURES -> clauses with the figure's placeholder

    @field_validator("situations")
    @classmethod
    def _situations(cls, v):
        _keys(v, SITUATIONS, "situations")
        for key, words in v.items():
            bad = [w for w in words if not w or w != w.lower() or "*" in w[:-1]]
            if not words or bad:
                raise ValueError(f"situations.{key}: expected lower-case words, '*' only at the end, got {bad or words!r}")
        return v

    @field_validator("clauses")
    @classmethod
    def _clauses(cls, v):
        _keys(v, CLAUSE_FIGURES, "clauses")
        for key, texts in v.items():
            if not texts:
                raise ValueError(f"clauses.{key}: expected at least one clause")
            for text in texts:
                marks = CLAUSE_FIGURES[key]
                if marks and not any(m in text for m in marks) or not marks and "{" in text:
                    raise ValueError(f"clauses.{key}: expected {' or '.join(marks) or 'no placeholder'} in {text!r}")
        return v


def read_language(path: str | Path) -> Language:
    """The language file at `path`, checked: LanguageFileError naming the file and the key."""
    try:
        data = read_toml(path)
    except ConfigError as e:
        raise LanguageFileError(str(e)) from None
    try:
        lang = Language.model_validate(data)
    except ValidationError as e:
        text = describe_validation_error(str(path), e).replace("in the configuration", "in the language file")
        raise LanguageFileError(text) from None
    if lang.code != Path(path).stem:
        raise LanguageFileError(f"{path}: [code] is {lang.code!r}; a language's file is named by its code ({lang.code}.toml)")
    return lang


def codes() -> tuple[str, ...]:
    return tuple(sorted(p.name.removesuffix(".toml") for p in _FOLDER.iterdir() if p.name.endswith(".toml")))


@functools.cache
def language(code: str | None) -> Language | None:
    """The file of ISO 639-1 `code` (any case; "de-AT" is "de"), or None where there is none."""
    base = base_code(code)
    if base not in codes():
        return None
    with resources.as_file(_FOLDER / f"{base}.toml") as path:
        return read_language(path)


def base_code(code: str | None) -> str:
    """"de-AT", "de_AT" and "DE" are "de"."""
    return (code or "").lower().replace("_", "-").split("-")[0]


def words(code: str | None) -> Language | None:
    """The file the language `code` is asked and read in; None for a language CLDR knows that has
    no file (its figures alone: no word of another language); English's for none or a code unknown."""
    own = language(code)
    return own if own is not None or (base_code(code) and cldr.known(base_code(code))) else language("en")


def situation_words(code: str | None) -> dict[str, tuple[str, ...]]:
    """The [situations] of language `code` (keys SITUATIONS; lower-case words, "freez*" a prefix);
    {} for a language without a file: no situation is read in another language's words; English's
    for none (a bundle that recorded no language is asked in English)."""
    own = words(code)
    return dict(own.situations) if own is not None else {}


def clause_wordings(code: str | None) -> dict[str, tuple[str, ...]]:
    """The [clauses] of language `code` (keys CLAUSE_FIGURES: altitude with {km} or {m}, temperature
    with {deg}, time_aloft with {minutes}, time_aloft_hours with {hours}, and each phase); {} for a
    language without a file: no clause is written in another language; English's for none."""
    own = words(code)
    return dict(own.clauses) if own is not None else {}
