"""Find and replace private values in text; escape strings a tokenizer would read as control tokens.

Shared by the workstation (`host_training prepare` scrubs every message before anything is
written) and the payload (`contains_private` is the outbound guard before anything is radioed),
so it is pure and uses the standard library only.

Kinds found (each by a regex for candidates, then a check that throws out look-alikes):

    email       local@domain.tld
    phone       +44 7700 900123, 07700 900456, +1 (555) 010-2345, 0049-30-1234567, and the national
                forms without a trunk 0 (655 21 48 37, 912 345 678, (11) 98765-4321:
                national_phones); not dates, times, years, decimals/coordinates, versions,
                amounts or short numbers
    es_dni, fr_nir, ...  national identity numbers with valid check digits (national_ids)
    card        13-19 digits, optionally grouped by spaces/dashes, Luhn-valid, not starting with 0
    iban        country + check digits + BBAN, with or without spaces, ISO 7064 mod-97 valid
    ip          IPv4 (not after "v"/"version") and IPv6 (checked by `ipaddress`)
    secret_url  a URL carrying credentials: user:pass@host, a query/fragment parameter named like
                a secret (token, key, secret, sig, password, auth, access_token, ...), or a
                capability-style path segment (24+ chars mixing upper, lower case and digits)
    secret      well-known API key shapes (sk-..., ghp_..., AKIA..., xox?-..., JWTs)
    blocked     the caller's own words or /regexes/ (names, street, employer, ...)

`PrivacyScrubber.scrub` replaces each value with a placeholder such as `<EMAIL_1>`; the same
value always gets the same placeholder within one scrubber (phone numbers are compared by
their national significant digits, so "+44 7700 900123" and "07700 900123" share one; two
different countries' numbers with the same national digits would share one too, which hides
more, never less). Placeholders are `<KIND_N>`: no `|`, not `<s>`, so they never look like
special tokens and survive `escape_special_tokens` unchanged.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from . import national_ids
from .national_ids import STRONG_KINDS, WEAK_KINDS, find_ids
from .national_phones import national_phone

__all__ = [
    "Finding",
    "KINDS",
    "PrivacyScrubber",
    "contains_private",
    "escape_special_tokens",
    "find_private",
    "iban_valid",
    "luhn_valid",
    "PLACEHOLDER",
    "WORD_JOINER",
]

# What `PrivacyScrubber.placeholder` writes; a model trained on scrubbed text may echo these.
PLACEHOLDER = re.compile(r"<[A-Z]+(?:_[A-Z]+)*_\d+>")

# Priority when two findings overlap: the earlier kind names the merged span. An id whose check
# digits hold is more specific than a card's Luhn or a phone's shape; a bare nine-digit id with a
# one-in-eleven check (BSN, NIF) is less likely than the Spanish or Portuguese phone it looks like.
KINDS = ("secret_url", "secret", "email", "iban", *STRONG_KINDS, "card", "ip", "phone", *WEAK_KINDS, "blocked")


@dataclass(frozen=True)
class Finding:
    kind: str
    start: int
    end: int
    value: str


# ---------------------------------------------------------------------------------------------
# Checksums


def luhn_valid(digits: str) -> bool:
    """The Luhn check every payment card number passes (digits only)."""
    if not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_valid(iban: str) -> bool:
    """ISO 13616 structure and ISO 7064 mod-97 check (spaces ignored, any case)."""
    s = re.sub(r"\s", "", iban).upper()
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{11,30}", s):
        return False
    moved = s[4:] + s[:4]
    return int("".join(str(int(ch, 36)) for ch in moved)) % 97 == 1


# ---------------------------------------------------------------------------------------------
# Detectors: each yields (start, end) spans of `text` that hold one value of its kind.

_EMAIL = re.compile(r"(?<![\w.+%-])[\w.+%-]+@[\w-]+(?:\.[\w-]+)*\.[^\W\d_]{2,}(?![\w@])")


def _emails(text: str) -> Iterable[tuple[int, int]]:
    for m in _EMAIL.finditer(text):
        yield m.span()


# A run of digits and the separators people put in phone numbers. It is validated as a whole
# and, when that fails, split on whitespace so "12.03.2024 07700 900456" still yields the phone.
_PHONE_RUN = re.compile(
    r"(?<![\w+/.\-@])(?:\+[ \t\u00a0]?)?\(?\d[\d \t\u00a0().\-/]*\d(?![\w@])"
)
_DATE_LIKE = re.compile(r"\d{1,2}[./\-]\d{1,2}[./\-]\d{2,4}|\d{4}[./\-]\d{1,2}[./\-]\d{1,2}")
_NANP = re.compile(r"\(?\d{3}\)?[ .\-]?\d{3}[ .\-]\d{4}")
_PHONE_MAX_TOKENS = 8  # whitespace-separated groups in one number, at most


def _phone_ok(s: str) -> bool:
    digits = re.sub(r"\D", "", s)
    compact = re.sub(r"[ \t\u00a0]", "", s)
    if re.search(r"[.\-/]{2,}", compact) or s.count("/") > 1:
        return False
    if s.count("(") != s.count(")") or s.count("(") > 1:
        return False
    if _DATE_LIKE.fullmatch(compact) or any(re.fullmatch(r"\d+\.\d+", t) for t in s.split()):
        return False  # a date, or decimals such as coordinates ("0.12345 0.6789")
    if sum(1 for g in re.findall(r"\d+", s) if len(g) == 1) > 1:
        return False  # "1 2 3 4 5 6 7" is a list, not a number
    if s.startswith("+"):
        return 8 <= len(digits) <= 15 and digits[0] != "0"
    if digits.startswith("00") and not s.startswith("("):
        return 8 <= len(digits) - 2 <= 15 and digits[2] != "0"
    if digits.startswith("0"):
        # National numbers with a trunk 0: 9-12 digits ("0900-1700" is a time range, not a phone).
        return 9 <= len(digits) <= 12
    # Without a prefix only the North American 3-3-4 shape is taken: other bare digit groups
    # are too often amounts, ids or measurements.
    return bool(_NANP.fullmatch(s))


def _phone_trim(text: str, start: int, end: int) -> tuple[int, int]:
    """Drop an unbalanced "(" in front and separators at the end of a candidate."""
    while start < end and text[start] == "(" and text.count("(", start, end) > text.count(")", start, end):
        start += 1
    while end > start and not text[end - 1].isdigit() and text[end - 1] != ")":
        end -= 1
    return start, end


def _phones(text: str) -> Iterable[tuple[int, int]]:
    for m in _PHONE_RUN.finditer(text):
        start, end = _phone_trim(text, *m.span())
        if _phone_ok(text[start:end]) or national_phone(text, start, end):
            yield start, end
            continue
        tokens = [(t.start() + m.start(), t.end() + m.start()) for t in re.finditer(r"\S+", m.group())]
        ndigits = [sum(c.isdigit() for c in text[s:e]) for s, e in tokens]
        i = 0
        while i < len(tokens):
            found = False
            if text[tokens[i][0]] in "+(0123456789":
                for j in range(min(len(tokens), i + _PHONE_MAX_TOKENS), i, -1):
                    if not 7 <= sum(ndigits[i:j]) <= 17:
                        continue  # too few or too many digits for any phone number
                    s, e = _phone_trim(text, tokens[i][0], tokens[j - 1][1])
                    if s < e and (_phone_ok(text[s:e]) or national_phone(text, s, e)):
                        yield s, e
                        i, found = j, True
                        break
            if not found:
                i += 1


# Digit groups separated by single spaces or dashes; sub-ranges of whole groups are tried too
# so a card followed by another number ("4111 1111 1111 1111 2024") is still found.
_CARD_RUN = re.compile(r"(?<![\w+.\-])\d+(?:[ \-]\d+)*(?![\w])")


def _cards(text: str) -> Iterable[tuple[int, int]]:
    for m in _CARD_RUN.finditer(text):
        groups = [(g.start() + m.start(), g.end() + m.start()) for g in re.finditer(r"\d+", m.group())]
        i = 0
        while i < len(groups):
            # The longest run of whole groups from group i that is a card (19 digits at most).
            hit, digits = None, ""
            for j in range(i, len(groups)):
                digits += text[groups[j][0] : groups[j][1]]
                if len(digits) > 19:
                    break
                if len(digits) >= 13 and digits[0] != "0" and luhn_valid(digits):
                    hit = j
            if hit is None:
                i += 1
            else:
                yield groups[i][0], groups[hit][1]
                i = hit + 1


_IBAN_RUN = re.compile(r"(?<![\w])[A-Za-z]{2}\d{2}(?:[ ]?[A-Za-z0-9]){11,40}")


def _ibans(text: str) -> Iterable[tuple[int, int]]:
    # The run may swallow following words ("... 00 is mine"): shorten it, word by word, until
    # it checks out, then look again right after what was found.
    pos = 0
    while m := _IBAN_RUN.search(text, pos):
        start, hit = m.start(), None
        for end in range(m.end(), start + 14, -1):
            at_word_end = text[end - 1].isalnum() and (end == len(text) or not text[end].isalnum())
            if at_word_end and iban_valid(text[start:end]):
                hit = end
                break
        if hit:
            yield start, hit
        pos = hit or start + 1


_IPV4 = re.compile(
    r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?!\.?\d|\w)"
)
_VERSION_BEFORE = re.compile(r"(?:\bv|\bver\.?\s*|\bversion\s*)$", re.IGNORECASE)
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")


def _ips(text: str) -> Iterable[tuple[int, int]]:
    for m in _IPV4.finditer(text):
        if not _VERSION_BEFORE.search(text[max(0, m.start() - 10) : m.start()]):
            yield m.span()
    for m in _IPV6.finditer(text):
        cand = m.group()
        # Times (21:14:05) and MAC addresses fail `ipaddress`; "::1" and friends carry nothing.
        if max(len(g) for g in cand.split(":")) < 3:
            continue
        try:
            ipaddress.IPv6Address(cand)
        except ValueError:
            continue
        yield m.span()


_URL = re.compile(
    r"\b(?:https?|ftp|wss?)://[^\s<>\"'`]+"
    r"|(?<![\w./-])[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}/[^\s<>\"'`]*",  # without a scheme: example.com/x?token=
    re.IGNORECASE,
)
_SECRET_PARTS = frozenset(
    "token key secret sig signature password passwd pwd pass auth authorization credential "
    "credentials session sessionid sid apikey otp jwt bearer hmac".split()
)
_SECRET_SUFFIXES = ("token", "secret", "signature", "password", "apikey", "credential")
_USERINFO = re.compile(r"^(?:[a-z][a-z0-9+.\-]*://)[^/@\s:]+:[^/@\s]+@", re.IGNORECASE)
_PARAM = re.compile(r"[?&#;]([^=&#;?]+)=([^&#;]+)")
_BOT_TOKEN = re.compile(r"\d{6,}:[\w-]{20,}")


def _secret_param(name: str) -> bool:
    lowered = name.lower()
    parts = [p for p in re.split(r"[^a-z0-9]+", lowered) if p]
    compact = "".join(parts)
    return any(p in _SECRET_PARTS for p in parts) or compact.endswith(_SECRET_SUFFIXES)


def _capability_segment(seg: str) -> bool:
    core = seg.replace("-", "").replace("_", "")
    return (
        len(seg) >= 24
        and re.fullmatch(r"[A-Za-z0-9_\-]+", seg) is not None
        and any(c.isupper() for c in core)
        and any(c.islower() for c in core)
        and any(c.isdigit() for c in core)
    ) or _BOT_TOKEN.fullmatch(seg.removeprefix("bot")) is not None


def _url_end(url: str) -> int:
    """Trailing punctuation belongs to the sentence, except a ")" the URL itself opened."""
    end = len(url)
    while end and url[end - 1] in ".,;:!?'\")]}>":
        if url[end - 1] == ")" and url[:end].count("(") >= url[:end].count(")"):
            break
        end -= 1
    return end


def _secret_urls(text: str) -> Iterable[tuple[int, int]]:
    for m in _URL.finditer(text):
        url = m.group()[: _url_end(m.group())]
        path = re.split(r"[?#]", re.sub(r"^[a-z]+://", "", url, flags=re.IGNORECASE), maxsplit=1)[0]
        if (
            _USERINFO.match(url)
            or any(_secret_param(k) for k, _ in _PARAM.findall(url))
            or any(_capability_segment(seg) for seg in path.split("/")[1:])
        ):
            yield m.start(), m.start() + len(url)


_SECRET = re.compile(
    r"\b(?:sk-(?:proj-)?[A-Za-z0-9_\-]{20,}|ghp_[A-Za-z0-9]{36}|github_pat_\w{22,}|"
    r"xox[abprs]-[A-Za-z0-9\-]{10,}|AKIA[0-9A-Z]{16}|AIza[0-9A-Za-z_\-]{35}|"
    r"eyJ[\w-]{8,}\.eyJ[\w-]{8,}\.[\w-]{8,})(?![\w-])"
)


def _secrets(text: str) -> Iterable[tuple[int, int]]:
    for m in _SECRET.finditer(text):
        yield m.span()


_DETECTORS = {
    "secret_url": _secret_urls,
    "secret": _secrets,
    "email": _emails,
    "iban": _ibans,
    "card": _cards,
    "ip": _ips,
    "phone": _phones,
}


def _compile_blocklist(entries: Iterable[str | re.Pattern[str]]) -> list[re.Pattern[str]]:
    """A word matches whole words, case-insensitively; "/regex/" is a regex (case-insensitive)."""
    out = []
    for entry in entries:
        if isinstance(entry, re.Pattern):
            out.append(entry)
            continue
        entry = entry.strip()
        if not entry:
            continue
        if len(entry) > 2 and entry.startswith("/") and entry.endswith("/"):
            out.append(re.compile(entry[1:-1], re.IGNORECASE))
        else:
            out.append(re.compile(r"(?<!\w)" + re.escape(entry) + r"(?!\w)", re.IGNORECASE))
    return out


def _resolve(text: str, spans: list[tuple[str, int, int]]) -> list[Finding]:
    """Non-overlapping findings; an overlap is merged into one span named by the higher kind,
    so no part of either value is left in the clear."""
    rank = {k: i for i, k in enumerate(KINDS)}
    kept: list[list] = []  # [kind, start, end]
    for kind, s, e in sorted(spans, key=lambda t: (rank[t[0]], t[1], -t[2])):
        if s >= e:
            continue
        hits = [k for k in kept if k[1] < e and s < k[2]]
        if not hits:
            kept.append([kind, s, e])
            continue
        if any(k[1] <= s and e <= k[2] for k in hits):
            continue
        keep = min(hits, key=lambda k: rank[k[0]])
        keep[1] = min([s, *(k[1] for k in hits)])
        keep[2] = max([e, *(k[2] for k in hits)])
        kept[:] = [k for k in kept if k is keep or k not in hits]
    return [Finding(k, s, e, text[s:e]) for k, s, e in sorted(kept, key=lambda k: k[1])]


def find_private(text: str, blocklist: Iterable[str | re.Pattern[str]] = ()) -> list[Finding]:
    """Every private value in `text`, in order, without overlaps."""
    patterns = _compile_blocklist(blocklist)
    spans = [(kind, s, e) for kind, detect in _DETECTORS.items() for s, e in detect(text)]
    spans += find_ids(text)
    spans += [("blocked", m.start(), m.end()) for p in patterns for m in p.finditer(text) if m.end() > m.start()]
    return _resolve(text, spans)


def contains_private(text: str, blocklist: Iterable[str | re.Pattern[str]] = ()) -> list[str]:
    """The kinds of private value in `text` (sorted, each once); empty means safe to send."""
    return sorted({f.kind for f in find_private(text, blocklist)})


# ---------------------------------------------------------------------------------------------
# Consistent placeholders

# ITU-T E.164 country codes of one and two digits; every other code has three. Lets
# "+44 7700 900123" and "07700 900123" be recognised as one number.
_CC_1 = {"1", "7"}
_CC_2 = set(
    "20 27 30 31 32 33 34 36 39 40 41 43 44 45 46 47 48 49 51 52 53 54 55 56 57 58 "
    "60 61 62 63 64 65 66 81 82 84 86 90 91 92 93 94 95 98".split()
)


def _phone_key(value: str) -> str:
    digits = re.sub(r"\D", "", value)
    if value.lstrip("(").startswith("+") or digits.startswith("00"):
        digits = digits[2:] if digits.startswith("00") else digits
        cc = 1 if digits[:1] in _CC_1 else 2 if digits[:2] in _CC_2 else 3
        digits = digits[cc:]
    return digits.lstrip("0")  # the national trunk 0, also when written "+44 (0)7700"


def _key(kind: str, value: str) -> str:
    if kind == "phone":
        return _phone_key(value)
    if kind in ("card", "iban"):
        return re.sub(r"[\s\-]", "", value).upper()
    if kind == "ip":
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            return value
    if kind in ("email", "blocked"):
        return value.casefold()
    if kind in STRONG_KINDS or kind in WEAK_KINDS:
        return national_ids.compact(value)  # "12345678-Z" is "12345678Z"
    return value


class PrivacyScrubber:
    """Replaces private values with placeholders that stay the same for the same value.

    `blocklist`: extra words (whole-word, case-insensitive) or "/regexes/" to remove, e.g.
    the owner's street, employer or children's names.
    """

    def __init__(self, blocklist: Iterable[str | re.Pattern[str]] = ()) -> None:
        self._patterns = _compile_blocklist(blocklist)
        self._placeholders: dict[tuple[str, str], str] = {}
        self._issued: Counter[str] = Counter()

    def find(self, text: str) -> list[Finding]:
        return find_private(text, self._patterns)

    def placeholder(self, kind: str, value: str) -> str:
        """The stable stand-in for `value`, like ``<PHONE_2>`` (matched by `PLACEHOLDER`)."""
        key = (kind, _key(kind, value))
        if key not in self._placeholders:
            self._issued[kind] += 1
            self._placeholders[key] = f"<{kind.upper()}_{self._issued[kind]}>"
        return self._placeholders[key]

    def scrub(self, text: str) -> tuple[str, Counter[str]]:
        """(text with every finding replaced, replacements made by kind)."""
        counts: Counter[str] = Counter()
        parts, pos = [], 0
        for f in self.find(text):
            parts += [text[pos : f.start], self.placeholder(f.kind, f.value)]
            counts[f.kind] += 1
            pos = f.end
        parts.append(text[pos:])
        return "".join(parts), counts


# ---------------------------------------------------------------------------------------------
# Special tokens

# U+2060 WORD JOINER: invisible, not whitespace, and not removed by NFKC, so the text reads the
# same to a person while no tokenizer can match the control-token string any more. It goes
# right after the first character: "<|im_end|>" -> "<\u2060|im_end|>"; strip U+2060 to undo.
WORD_JOINER = "\u2060"
_SPECIAL = re.compile(
    r"<\|[^|<>\s]{0,64}\|>"  # <|im_start|>, <|im_end|>, <|endoftext|>, <|eot_id|>, ...
    r"|</?s>|\[/?INST\]|<</?SYS>>"
    r"|</?(?:start_of_turn|end_of_turn|bos|eos|pad|unk|mask)>",
    re.IGNORECASE,
)


def escape_special_tokens(text: str) -> tuple[str, int]:
    """(text with each control-token string broken by a word joiner, number broken)."""
    return _SPECIAL.subn(lambda m: m.group()[0] + WORD_JOINER + m.group()[1:], text)
