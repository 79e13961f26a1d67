"""Numbers and units as a locale writes them, from Babel's copy of Unicode CLDR: the decimal
and group marks, the minus sign, and the names of the units a musing states its figures in
("kilometer", "km", "grader Celsius", "hPa") in every plural form. Written by nobody here, so a
language without a file of its own (stratoecho/languages/*.toml) is still read on its numbers.

    known(code) -> bool                        CLDR has locale `code`
    name(code) -> str                          its name in English ("Swedish"), for messages
    symbols(code) -> Symbols                   decimal, group, minus
    number(x, digits, code) -> str             "12,4", "−41": as the locale writes a figure
    unit_names(code, unit) -> tuple[str, ...]  every long and short name of a CLDR unit, lower case
    symbols_of(unit) -> tuple[str, ...]        its international symbols ("km", "°c", "hpa": English's short names)
    unit_template(code, unit, width, n) -> str "{} minuter": the unit's pattern for a count like n

CLDR puts no-break spaces (U+00A0, U+202F) between group digits and before units; `plain`
makes them plain spaces (and its ’ a '), as people type them and as the claims are read.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from babel import Locale, UnknownLocaleError
from babel.numbers import format_decimal, get_decimal_symbol, get_group_symbol, get_minus_sign_symbol
from babel.units import UnknownUnitError, format_unit

# The spaces CLDR writes that a person types as a space, and its typographic apostrophe ("all’ora").
_SPACES = str.maketrans({"\u00a0": " ", "\u202f": " ", "\u2009": " ", "\u2007": " ", "\u2019": "'"})
# Bidi marks some locales put around a minus sign: invisible, and no part of a number.
_MARKS = str.maketrans("", "", "\u200e\u200f\u061c")
# Counts that reach every plural form of the languages CLDR knows (one, two, few, many, other
# and a fraction), so every form of a unit's name is collected.
_COUNTS = (0, 1, 2, 3, 5, 11, 21, 22, 100, 1.5)
WIDTHS = ("long", "short")  # narrow forms are bare symbols ("°" for Fahrenheit in English) that collide


@dataclass(frozen=True)
class Symbols:
    decimal: str
    group: str  # a plain space where CLDR writes a no-break one
    minus: str


def plain(text: str) -> str:
    """`text` with CLDR's no-break and thin spaces as plain spaces, ’ as ' and its bidi marks taken out."""
    return text.translate(_SPACES).translate(_MARKS)


@functools.cache
def _locale(code: str) -> Locale | None:
    try:
        return Locale.parse(code.replace("-", "_")) if code else None
    except (UnknownLocaleError, ValueError):
        return None


def known(code: str | None) -> bool:
    return _locale(code or "") is not None


def name(code: str) -> str:
    loc = _locale(code)
    return loc.get_display_name("en") if loc is not None else repr(code)


@functools.cache
def symbols(code: str) -> Symbols:
    """The marks of locale `code`; English's for a code CLDR does not know."""
    loc = _locale(code) or _locale("en")
    return Symbols(plain(get_decimal_symbol(loc)), plain(get_group_symbol(loc)), plain(get_minus_sign_symbol(loc)))


def number(x: float, digits: int, code: str) -> str:
    """`x` with `digits` decimals as locale `code` writes it, without grouping (a persona copies
    the figure, and "12400" reads back the same in every language): "12,4", "−41"."""
    s = symbols(code)
    text = f"{abs(x):.{digits}f}".replace(".", s.decimal)
    return s.minus + text if x < 0 and text.strip("0" + s.decimal) else text


@functools.cache
def unit_names(code: str, unit: str, widths: tuple[str, ...] = WIDTHS) -> tuple[str, ...]:
    """Every long and short name CLDR gives `unit` (e.g. "length-kilometer") in locale `code`,
    lower case with plain spaces, longest first; () where CLDR has none. Only names written after
    the number are kept: the claims are read number first."""
    loc = _locale(code)
    if loc is None:
        return ()
    names = set()
    for width in widths:
        for n in _COUNTS:
            try:
                text = plain(format_unit(n, unit, width, locale=loc))
            except UnknownUnitError:
                return ()
            figure = plain(format_decimal(n, locale=loc))
            head, _, name = text.partition(figure)
            name = name.strip().lower()
            # Babel falls back to the unit's id ("5 speed-knot") where CLDR has no name.
            if not head.strip() and name and unit not in name:
                names.add(name)
    return tuple(sorted(names, key=lambda s: (-len(s), s)))


def symbols_of(unit: str) -> tuple[str, ...]:
    """The symbols of `unit` written in every language ("km", "°c", "hpa", "v"): CLDR's English short
    names. Polish writes "st. C" for a degree Celsius, and reads "°C" all the same."""
    return unit_names("en", unit, ("short",))


def unit_template(code: str, unit: str, width: str, n: float) -> str | None:
    """The pattern of `unit` for a count like `n` with "{}" where the number goes ("{} minuter"),
    or None where CLDR has no name for it in locale `code`."""
    loc = _locale(code)
    if loc is None:
        return None
    try:
        text = plain(format_unit(n, unit, width, locale=loc))
    except UnknownUnitError:
        return None
    figure = plain(format_decimal(n, locale=loc))
    if figure not in text:
        return None
    text = text.replace(figure, "\x00", 1)
    if unit in text:
        return None
    return text.replace("{", "{{").replace("}", "}}").replace("\x00", "{}")
