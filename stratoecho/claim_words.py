"""The words and numbers a musing's claims are read from, for any language
(stratoecho/musing_claims.py reads them; what each kind means and its tolerance is there).

    ClaimWords                      one language's patterns (all match lower-case text, plain spaces)
    claim_words(code) -> ClaimWords the patterns of ISO 639-1 `code`: its file's words
                                    (stratoecho/languages/<code>.toml, GUARDED says which have one)
                                    with CLDR's numbers and unit names; for a language without a
                                    file, CLDR's numbers and units alone; English for none

Numbers are read as the language writes them, from CLDR's decimal and group marks ("12,4 km": a
decimal comma in German; "12 400 m" in French, whose group mark is a space); the units from the
file's words and CLDR's names in every plural form ("3 timmar", "12,4 kilometer", "−41 °C"). A
language without a file has no words for the phase, the sun, the cold or the time aloft: its
numbers with units are its claims. The words are read in the file's language only, with what of
English it lists in `english_too`: German "auf jeden Fall" ("in any case") is no fall, Italian
"star bene" no star.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

from .languages import UNIT_KEYS, Claims, base_code, cldr, codes, language, words

NEVER = re.compile(r"(?!)")  # what a language without words for it never says


def _f_to_c(f: float) -> float:
    return (f - 32.0) * 5.0 / 9.0


# What each of UNIT_KEYS is, in order: its kind, to the facts' units, and CLDR's units of it.
UNITS = {
    "speed_kmh": ("speed", lambda x: x, ("speed-kilometer-per-hour",)),
    "speed_mph": ("speed", lambda x: x * 1.609344, ("speed-mile-per-hour",)),
    "speed_knots": ("speed", lambda x: x * 1.852, ("speed-knot",)),
    "speed_ms": ("speed m/s", lambda x: x * 3.6, ("speed-meter-per-second",)),
    "altitude_kft": ("altitude", lambda x: x * 304.8, ()),
    "altitude_km": ("altitude", lambda x: x * 1000.0, ("length-kilometer",)),
    "altitude_mi": ("altitude", lambda x: x * 1609.344, ("length-mile",)),
    "altitude_m": ("altitude", lambda x: x, ("length-meter",)),
    "altitude_ft": ("altitude", lambda x: x * 0.3048, ("length-foot",)),
    "temperature_f": ("temperature", _f_to_c, ("temperature-fahrenheit",)),
    "temperature_c": ("temperature", lambda x: x, ("temperature-celsius", "temperature-generic")),
    "pressure_hpa": ("pressure", lambda x: x, ("pressure-hectopascal", "pressure-millibar")),
    "pressure_kpa": ("pressure", lambda x: x * 10.0, ("pressure-kilopascal",)),
    "battery_mv": ("battery", lambda x: x / 1000.0, ()),
    "battery_v": ("battery", lambda x: x, ("electric-volt",)),
}
assert tuple(UNITS) == UNIT_KEYS
DURATIONS = {"duration-second": 1, "duration-minute": 60, "duration-hour": 3600, "duration-day": 86400,
             "duration-week": 604800, "duration-month": 2629800, "duration-year": 31557600}


@dataclass(frozen=True)
class ClaimWords:
    """One language's patterns. `units`: (kind, unit right after the number, to the facts'
    units), first match wins: speeds before lengths (km/h starts as km does), longer units
    before the ones they start with."""

    code: str
    number: re.Pattern  # groups: minus (a word), sign (a symbol), num, frac
    thousands: str  # the thousands separator inside `num`, taken out before reading it
    units: tuple
    below: re.Pattern  # after a temperature's unit: it is below zero ("55 below")
    angle_after: re.Pattern  # after degrees: an angle, not a temperature
    angle_before: re.Pattern
    distance_after: re.Pattern  # after a length: a distance over the ground, not a height
    distance_before: re.Pattern
    percent: re.Pattern
    battery_word: re.Pattern
    counts: dict  # number words of the time aloft: {"two": 2}
    time_units: dict  # a time unit's first letters -> seconds, longest first
    aloft: tuple  # patterns with groups n (a number or a count word) and unit
    decimal: str  # the decimal mark of `aloft`'s numbers
    phases: dict  # phase -> pattern
    sun_up: re.Pattern
    sun_down: re.Pattern
    cold: re.Pattern
    warm: re.Pattern
    unanswered: re.Pattern
    time_names: dict = field(default_factory=dict)  # CLDR names of time units -> seconds ("timmar": 3600), first

    def seconds(self, unit: str) -> float:
        if self.time_names and unit in self.time_names:
            return self.time_names[unit]
        return next((s for head, s in self.time_units.items() if unit.startswith(head)), 1)


def _w(pattern: str) -> re.Pattern:
    return re.compile(rf"\b(?:{pattern})\b")


def _either(*patterns: str) -> str:
    return "|".join(f"(?:{p})" for p in patterns if p)


def _names(names) -> str:
    return "|".join(re.escape(n).replace(r"\ ", r"\s+") for n in sorted(set(names), key=lambda s: (-len(s), s)))


def _cldr_units(code: str, not_units=()) -> dict[str, str]:
    """Each unit key's CLDR names in locale `code`, and its international symbols, as a pattern after
    the number; a name CLDR gives two keys (or the file says is a word) is left out: it cannot tell
    which unit was meant."""
    names = {key: {n for unit in UNITS[key][2] for n in cldr.unit_names(code, unit) + cldr.symbols_of(unit)}
             for key in UNITS}
    clash = {n for key in names for n in names[key] if any(n in names[k] for k in names if k != key)}
    clash |= set(not_units)
    return {key: rf"\s?(?:{_names(n - clash)})(?!\w)(?!\s*/)" for key, n in names.items() if n - clash}


def _number(code: str, minus_words: str) -> tuple[re.Pattern, str]:
    """The number pattern of locale `code` (CLDR's marks) and its group mark. An optional sign (a
    minus sign or a minus word before it, never a hyphen inside "20-25"); groups of three digits;
    one decimal mark. A mark at a sentence's end is punctuation: the fraction needs a digit after it."""
    s = cldr.symbols(code)
    group, decimal = re.escape(s.group), re.escape(s.decimal)
    signs = "".join(dict.fromkeys("-−–" + s.minus))
    minus = rf"\b(?:{minus_words})\s+" if minus_words else "(?!)"
    return re.compile(rf"(?:(?P<minus>{minus})|(?P<sign>(?<![\w.,]){'[' + re.escape(signs) + ']'}))?"
                      rf"(?<![\w.,])(?P<num>\d{{1,3}}(?:{group}\d{{3}})+(?!{group}?\d)|\d+)(?:{decimal}(?P<frac>\d+))?"), s.group


def _percent(code: str) -> str:
    return _names(cldr.unit_names(code, "concentr-percent") + cldr.symbols_of("concentr-percent")) or "%"


def _time_names(code: str) -> dict[str, int]:
    """CLDR's names of the time units in locale `code` -> seconds; a trailing point taken off
    ("std." reads as "std"), a name of two units left out."""
    out: dict[str, int] = {}
    for unit, seconds in DURATIONS.items():
        for name in cldr.unit_names(code, unit):
            name = name.rstrip(".")
            out[name] = seconds if out.get(name, seconds) == seconds else -1
    return {n: s for n, s in out.items() if s > 0 and n}


def _aloft(c: Claims, code: str, decimal: str) -> tuple[tuple[re.Pattern, ...], dict]:
    names = _time_names(code)
    counts = "|".join(re.escape(w) for w in sorted(c.counts, key=len, reverse=True))
    n = rf"(?P<n>\d+(?:{re.escape(decimal)}\d+)?" + (f"|{counts})" if counts else ")")
    unit = rf"(?P<unit>{_either(c.time_units, _names(names))})"
    fill = {"{up}": f"(?:{c.up})", "{about}": f"(?:{c.about})?", "{n}": n, "{unit}": unit}
    patterns = []
    for p in c.aloft:
        for mark, text in fill.items():
            p = p.replace(mark, text)
        patterns.append(re.compile(p))
    return tuple(patterns), names


def _from_file(code: str, c: Claims, en: Claims | None) -> ClaimWords:
    too = set(c.english_too) if en is not None else set()
    number, group = _number(code, c.minus)
    # Each unit: the file's words, English's where it reads them too, then CLDR's names of both.
    sources = [c.units, _cldr_units(code, c.not_units)]
    if "units" in too:
        sources += [en.units, _cldr_units("en")]
    units = tuple((UNITS[k][0], re.compile(_either(*(src.get(k, "") for src in sources))), UNITS[k][1])
                  for k in UNITS if any(src.get(k) for src in sources))
    aloft, names = _aloft(c, code, cldr.symbols(code).decimal)
    counts, prefixes = dict(c.counts), dict(c.time_prefixes)
    if "aloft" in too:  # English's patterns read English's numbers and units
        en_aloft, en_names = _aloft(en, "en", ".")
        aloft, names = aloft + en_aloft, {**en_names, **names}
        counts, prefixes = {**en.counts, **counts}, {**prefixes, **en.time_prefixes}
    percent = _either(c.percent, _percent(code))

    def read(own: str, key: str) -> re.Pattern:  # the file's words, and English's where it reads them too
        return _w(_either(own, getattr(en, key)) if key in too or (key in ("sun_up", "sun_down") and "sun" in too) else own)

    return ClaimWords(
        code=code, number=number, thousands=group, units=units,
        below=re.compile(c.below), angle_after=re.compile(c.angle_after), angle_before=re.compile(c.angle_before),
        distance_after=re.compile(c.distance_after), distance_before=re.compile(c.distance_before),
        percent=re.compile(rf"\s?(?:{percent})"), battery_word=_w(c.battery_word), counts=counts, time_units=prefixes,
        aloft=aloft, decimal=cldr.symbols(code).decimal, phases={p: _w(said) for p, said in c.phases.items()},
        sun_up=read(c.sun_up, "sun_up"), sun_down=read(c.sun_down, "sun_down"), cold=read(c.cold, "cold"),
        warm=read(c.warm, "warm"), unanswered=_w(c.unanswered), time_names=names,
    )


def _numbers_only(code: str) -> ClaimWords:
    """A language without a file: its numbers and CLDR's units, no words (docs/payload.md)."""
    number, group = _number(code, "")
    units = tuple((UNITS[k][0], re.compile(p), UNITS[k][1]) for k, p in _cldr_units(code).items())
    percent = _percent(code)
    return ClaimWords(code=code, number=number, thousands=group, units=units, below=NEVER, angle_after=NEVER,
                      angle_before=NEVER, distance_after=NEVER, distance_before=NEVER,
                      percent=re.compile(rf"\s?(?:{percent})"), battery_word=NEVER, counts={}, time_units={}, aloft=(),
                      decimal=cldr.symbols(code).decimal, phases={}, sun_up=NEVER, sun_down=NEVER, cold=NEVER,
                      warm=NEVER, unanswered=NEVER, time_names={})


@functools.cache
def _claim_words(code: str) -> ClaimWords:
    own = language(code)
    if own is not None:
        return _from_file(code, own.claims, language("en").claims if code != "en" else None)
    return _numbers_only(code)


def claim_words(code: str | None) -> ClaimWords:
    """The patterns of language `code`: its file's and CLDR's; CLDR's alone for a language without
    a file; English for none and for a code CLDR does not know either."""
    own = words(code)
    return _claim_words(own.code if own is not None else base_code(code))


GUARDED = codes()  # the languages with a file of words: their claims are read in their words besides their numbers
