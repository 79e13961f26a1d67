"""National identity numbers of the supported languages' countries, for `privacy` to replace.

Each kind is found by the forms people write it in (with the spaces, dots and dashes of its
printed form, or run together) and kept only when its check digits hold, or, for the two that
have none, its structure; so an ordinary number is not taken for one. A kind is its own
placeholder (<ES_DNI_1>, <FR_NIR_1> ...) and its own count in prepare's report.

    es_dni             Spain, DNI: 8 digits and a letter, the letter the number mod 23
    es_nie             Spain, NIE (foreigners): X, Y or Z (0, 1, 2), 7 digits, a letter as the DNI's
    pt_nif             Portugal, NIF of a person (first digit 1, 2, 3 or 45): 9 digits, mod 11
    pt_cc              Portugal, Cartão de Cidadão: 8 digits, a check digit, 2 letters, a check
                       digit; doubled alternate values from the right, the sum a multiple of 10
    br_cpf             Brazil, CPF: 9 digits and two mod-11 check digits (123.456.789-09)
    it_codice_fiscale  Italy: 16 letters and digits (RSSMRA85T10A562S), the last a check letter
                       from fixed values of the odd and even places, mod 26
    fr_nir             France, NIR (numéro de sécurité sociale): 13 characters (Corsica's 2A/2B
                       counted as 19/18) and a key, 97 - (number mod 97)
    nl_bsn             Netherlands, BSN: 9 digits passing the 11-proef
    de_steuer_id       Germany, steuerliche Identifikationsnummer: 11 digits, in the first ten one
                       digit twice or three times and the others at most once, ISO 7064 MOD 11,10
    de_ausweis         Germany, Personalausweis (since 2010): 9 letters and digits (no vowels)
                       and the check digit of the machine-readable zone (weights 7, 3, 1); in
                       capitals, as printed (in lower case too many words would be read as one)
    be_rrn             Belgium, Rijksregisternummer / numéro de registre national: a birth date
                       (YY.MM.DD), 3 digits, a key 97 - (number mod 97), with a 2 in front after 1999
    uk_nino            UK, National Insurance number: 2 letters of the allowed prefixes, 6 digits,
                       A to D (no check digit: the prefix rules do the work)
    us_ssn             US, Social Security number in its dashed form, without the never-issued
                       areas (000, 666, 9xx), group 00 and serial 0000

Pure and standard library only, like `privacy`, which imports it; docs/data.md names the
public specifications these rules come from.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .national_phones import amount

__all__ = ["STRONG_KINDS", "WEAK_KINDS", "compact", "find_ids", "valid"]


def compact(value: str) -> str:
    """The number without its separators, in capitals: how two spellings of it are compared."""
    return re.sub(r"[\s.\-/]", "", value).upper()


# ---------------------------------------------------------------------------------------------
# Checks, each on the compact form


_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"  # the remainder mod 23 picks the letter


def _es_dni(s: str) -> bool:
    return re.fullmatch(r"\d{8}[A-Z]", s) is not None and _DNI_LETTERS[int(s[:8]) % 23] == s[8]


def _es_nie(s: str) -> bool:
    return re.fullmatch(r"[XYZ]\d{7}[A-Z]", s) is not None and _es_dni(str("XYZ".index(s[0])) + s[1:])


def _pt_nif(s: str) -> bool:
    # A person's NIF starts with 1, 2, 3 or 45; the others (5, 6, 8, 9 ...) are companies and
    # public bodies, whose numbers are public.
    if re.fullmatch(r"(?:[123]\d|45)\d{7}", s) is None:
        return False
    check = 11 - sum(int(d) * w for d, w in zip(s[:8], range(9, 1, -1), strict=True)) % 11
    return (0 if check >= 10 else check) == int(s[8])


def _pt_cc(s: str) -> bool:
    if re.fullmatch(r"\d{9}[A-Z]{2}\d", s) is None:
        return False
    total = 0
    for i, ch in enumerate(reversed(s)):
        value = int(ch, 36)  # 0-9, then A = 10 ... Z = 35
        if i % 2:
            value = value * 2 - 9 if value * 2 > 9 else value * 2
        total += value
    return total % 10 == 0


def _br_cpf(s: str) -> bool:
    if re.fullmatch(r"\d{11}", s) is None or len(set(s)) == 1:
        return False  # 111.111.111-11 and the like pass the sums but are no one's

    def check(body: str) -> int:
        return sum(int(d) * w for d, w in zip(body, range(len(body) + 1, 1, -1), strict=True)) * 10 % 11 % 10

    return check(s[:9]) == int(s[9]) and check(s[:10]) == int(s[10])


# Omocodia: where two people would share a code, digits are replaced by these letters (0-9).
_CF_DIGIT_LETTERS = "LMNPQRSTUV"
_CF_ODD = [1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24, 23]  # A..Z, 0..9
_CF_SHAPE = re.compile(r"[A-Z]{6}[\dLMNPQRSTUV]{2}[ABCDEHLMPRST][\dLMNPQRSTUV]{2}[A-Z][\dLMNPQRSTUV]{3}[A-Z]")


def _it_codice_fiscale(s: str) -> bool:
    if _CF_SHAPE.fullmatch(s) is None:
        return False
    total = 0
    for i, ch in enumerate(s[:15]):
        n = int(ch) if ch.isdigit() else ord(ch) - ord("A")  # a digit counts as the letter at its place
        total += _CF_ODD[n] if i % 2 == 0 else n  # i even: the 1st, 3rd ... character
    return chr(ord("A") + total % 26) == s[15]


def _fr_nir(s: str) -> bool:
    if re.fullmatch(r"[1-478]\d{4}(?:\d{2}|2[AB])\d{8}", s) is None:
        return False
    body = s[:13].replace("2A", "19").replace("2B", "18")  # Corsica's departments, as INSEE counts them
    return 97 - int(body) % 97 == int(s[13:])


def _nl_bsn(s: str) -> bool:
    if re.fullmatch(r"\d{9}", s) is None or s == "000000000":
        return False
    return (sum(int(d) * w for d, w in zip(s[:8], range(9, 1, -1), strict=True)) - int(s[8])) % 11 == 0


def _de_steuer_id(s: str) -> bool:
    if re.fullmatch(r"[1-9]\d{10}", s) is None:
        return False
    counts = sorted((s[:10].count(d) for d in set(s[:10])), reverse=True)
    if counts[0] not in (2, 3) or (len(counts) > 1 and counts[1] > 1):
        return False  # exactly one digit repeats, twice or (since 2016) three times
    if counts[0] == 3 and re.search(r"(\d)\1\1", s[:10]):
        return False  # ... but never three in a row
    product = 10  # ISO 7064 MOD 11,10, digit by digit
    for d in s[:10]:
        total = (int(d) + product) % 10 or 10
        product = total * 2 % 11
    return (11 - product) % 10 == int(s[10])


_AUSWEIS_CHARS = "CFGHJKLMNPRTVWXYZ0123456789"


def _de_ausweis(s: str) -> bool:
    if len(s) != 10 or not s[9].isdigit() or any(c not in _AUSWEIS_CHARS for c in s[:9]):
        return False
    total = sum(int(c, 36) * w for c, w in zip(s[:9], (7, 3, 1) * 3, strict=True))
    return total % 10 == int(s[9])


def _be_rrn(s: str) -> bool:
    if re.fullmatch(r"\d{11}", s) is None:
        return False
    month, day = int(s[2:4]) % 20, int(s[4:6])  # a BIS number adds 20 or 40 to the month
    if month > 12 or day > 31:
        return False
    key = int(s[9:])
    return key in (97 - int(s[:9]) % 97, 97 - int("2" + s[:9]) % 97)


_NINO_NOT_ISSUED = {"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"}


def _uk_nino(s: str) -> bool:
    return (re.fullmatch(r"[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]\d{6}[A-D]", s) is not None
            and s[:2] not in _NINO_NOT_ISSUED)


def _us_ssn(s: str) -> bool:
    area, group, serial = s[:3], s[3:5], s[5:]
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


# ---------------------------------------------------------------------------------------------
# Written forms

_B = r"(?<![\w./\-])"  # no word, number or separator just before ...
_E = r"(?![\w]|[./\-]\w)"  # ... nor after (a full stop ending the sentence is fine)


@dataclass(frozen=True)
class _Kind:
    name: str
    forms: re.Pattern[str]
    check: Callable[[str], bool]


def _forms(*alternatives: str, flags: int = 0) -> re.Pattern[str]:
    return re.compile(_B + "(?:" + "|".join(alternatives) + ")" + _E, flags)


# Strong: a check over many digits, or letters in fixed places; they outrank cards and phones.
# A letter spaced off its digits is taken only in capitals: "12345678 y" is a sentence. No check
# letter comes before a "$": "99.999.999 R$" is a sum in reais (US$, C$ alike).
_STRONG = (
    _Kind("es_dni", _forms(r"(?:\d{8}|\d{2}\.\d{3}\.\d{3})(?:-?[A-Za-z]| [A-Z])(?!\$)"), _es_dni),
    _Kind("es_nie", _forms(r"[XYZxyz]-?\d{7}-?[A-Za-z](?!\$)", r"[XYZ] \d{7} [A-Z](?!\$)"), _es_nie),
    _Kind("pt_cc", _forms(r"\d{8}[ -]?\d[ -]?[A-Za-z]{2}\d"), _pt_cc),
    _Kind("br_cpf", _forms(r"\d{3}\.\d{3}\.\d{3}-\d{2}", r"\d{9}-\d{2}", r"\d{11}"), _br_cpf),
    _Kind("it_codice_fiscale", _forms(r"[A-Za-z\d]{16}"), _it_codice_fiscale),
    _Kind("fr_nir", _forms(r"[1-478]( ?)\d{2}\1\d{2}\1(?:\d{2}|2[ABab])\1\d{3}\1\d{3}\1\d{2}"), _fr_nir),
    _Kind("de_steuer_id", _forms(r"\d{11}", r"\d{2} \d{3} \d{3} \d{3}"), _de_steuer_id),
    _Kind("de_ausweis", _forms(r"[CFGHJKLMNPRTVWXYZ][CFGHJKLMNPRTVWXYZ\d]{8}\d"), _de_ausweis),
    _Kind("be_rrn", _forms(r"\d{2}\.\d{2}\.\d{2}-\d{3}\.\d{2}", r"\d{6}-?\d{3}\.?\d{2}", r"\d{6} \d{3} \d{2}"), _be_rrn),
    _Kind("uk_nino", _forms(r"[A-Za-z]{2}( ?)\d{2}\1\d{2}\1\d{2}\1[A-Da-d]"), _uk_nino),
    _Kind("us_ssn", _forms(r"\d{3}-\d{2}-\d{4}"), _us_ssn),
)
# Weak: nine bare digits and a check that one number in eleven passes. A number that also has
# the shape of a Spanish or Portuguese phone is taken as the phone (privacy.KINDS ranks them so):
# replaced all the same, under the name it most likely has.
_WEAK = (
    _Kind("pt_nif", _forms(r"\d{9}", r"\d{3} \d{3} \d{3}"), _pt_nif),
    _Kind("nl_bsn", _forms(r"\d{9}", r"\d{4}\.\d{2}\.\d{3}"), _nl_bsn),
)
STRONG_KINDS = tuple(k.name for k in _STRONG)
WEAK_KINDS = tuple(k.name for k in _WEAK)
_CHECKS = {k.name: k.check for k in (*_STRONG, *_WEAK)}


def valid(kind: str, value: str) -> bool:
    """Whether `value` (as written, separators and all) is a valid number of `kind`."""
    return _CHECKS[kind](compact(value))


def find_ids(text: str) -> Iterable[tuple[str, int, int]]:
    """(kind, start, end) of every national identity number in `text`; kinds may overlap. Nine
    bare digits with a currency beside them are a sum ("268 435 456 €"), not a weak kind's number."""
    for kind in (*_STRONG, *_WEAK):
        weak = kind in _WEAK
        for m in kind.forms.finditer(text):
            if kind.check(compact(m.group())) and not (weak and amount(text, m.start(), m.end())):
                yield kind.name, m.start(), m.end()
