"""Phone numbers in the national forms that carry neither a country code nor a trunk 0.

`privacy` already takes the international forms (+34 655 21 48 37, 0034 ...), the national
forms that begin with a trunk 0 (most of Europe: 0171 2345678, 030/1234567, 06 12 34 56 78,
06-12345678, 07700 900123, 087 123 4567) and the North American 3-3-4 (333 123 4567 too).
Four countries of the supported languages dial at home without a trunk 0, so their numbers
look like any other run of digits:

    Spain       nine digits, the first 6 or 7 (mobile) or 8 or 9 (fixed)
    Portugal    nine digits, the first 2 (fixed), 3 (nomadic) or 9 (mobile)
    Italy       mobiles: ten digits, the first 3 (fixed numbers keep their 0 and are taken already)
    Brazil      a two-digit area code (DDD, no 0 in it), often in parentheses, then eight digits
                (fixed, the first 2 to 5) or nine (mobile, the first 9)

Bare digit groups are more often amounts, ids and measurements, so a number is taken only in
the groupings people write it in (655 21 48 37, 912 345 678, 91 234 56 78, 333 1234567,
(11) 98765-4321) with one kind of separator, and never where it reads as an amount: a round
number (five zeros at the end), three groups of three joined by dots (1.234.567 is how
Spanish, Portuguese, Italian, German and Dutch write thousands), or a currency sign or code
right before or after it.

Pure: strings in, booleans out (docs/data.md cites the numbering plans these come from).
"""

from __future__ import annotations

import re

__all__ = ["amount", "national_phone"]

# (first digit, number of digits) -> the groupings (lengths of the digit groups, in order)
# people write such a number in. Spain and Portugal share nine digits starting with 9.
_SPAIN = {(9,), (3, 3, 3), (3, 2, 2, 2), (2, 3, 2, 2)}
_PORTUGAL = {(9,), (3, 3, 3), (2, 3, 2, 2), (2, 3, 4)}
_ITALY_MOBILE = {(10,), (3, 7), (3, 3, 4), (3, 4, 3), (3, 3, 2, 2)}
_GROUPINGS: dict[tuple[str, int], set[tuple[int, ...]]] = {
    **{(d, 9): _SPAIN for d in "678"},
    ("9", 9): _SPAIN | _PORTUGAL,
    **{(d, 9): _PORTUGAL for d in "23"},
    ("3", 10): _ITALY_MOBILE,
}
_SEPARATORS = {" ", "\u00a0", ".", "-"}

# Brazil: the DDD in parentheses (then any of the usual separators), or bare before a dashed
# local number, or everything run together (DDD + 9 + eight digits: a mobile).
_BRAZIL = re.compile(
    r"\([1-9]{2}\)[ \u00a0]?(?:9[ \u00a0]?\d{4}|[2-5]\d{3})[ \u00a0.\-]?\d{4}"
    r"|[1-9]{2}[ \u00a0](?:9[ \u00a0]?\d{4}|[2-5]\d{3})-\d{4}"
    r"|[1-9]{2}9\d{8}"
)

_SPACE = "[ \t\u00a0\u202f]?"
_CURRENCY = r"(?:[€$£¥₹]|R\$|\b(?:EUR|USD|GBP|CHF|BRL)\b)"
_AMOUNT_AFTER = re.compile(_SPACE + r"(?:" + _CURRENCY + r"|(?:euros?|reais|d[oó]lares|dollars?)\b)", re.IGNORECASE)
_AMOUNT_BEFORE = re.compile(_CURRENCY + _SPACE + "$")


def _grouped(s: str) -> tuple[str, tuple[int, ...]] | None:
    """(the digits, the lengths of their groups) when `s` is digit groups joined by one kind of
    separator (a space, a no-break space, a dot or a dash); else None."""
    groups = re.findall(r"\d+", s)
    separators = set(re.findall(r"\D+", s))
    if not groups or not s[0].isdigit() or not s[-1].isdigit():
        return None
    if len(separators) > 1 or not separators <= _SEPARATORS:
        return None
    return "".join(groups), tuple(len(g) for g in groups)


def _shape_ok(s: str) -> bool:
    if _BRAZIL.fullmatch(s):
        return True
    grouped = _grouped(s)
    if grouped is None:
        return False
    digits, lengths = grouped
    if "." in s and lengths == (3, 3, 3):
        return False  # 912.345.678: thousands, as most of the supported languages write them
    return lengths in _GROUPINGS.get((digits[0], len(digits)), set())


def national_phone(text: str, start: int, end: int) -> bool:
    """Whether text[start:end] is a phone number written in one of the national forms above
    (its neighbours decide whether it is an amount)."""
    s = text[start:end]
    if not _shape_ok(s):
        return False
    if re.sub(r"\D", "", s).endswith("00000"):
        return False  # 600 000 000: a round number is a sum, not somebody's line
    return not amount(text, start, end)


def amount(text: str, start: int, end: int) -> bool:
    """Whether the number text[start:end] reads as a sum: a currency sign, code or word right
    before or after it."""
    return bool(_AMOUNT_AFTER.match(text, end) or _AMOUNT_BEFORE.search(text, 0, start))
