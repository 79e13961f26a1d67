"""Whether the persona's musings are worth reading: grounded in what its prompt told it, not
degenerate, not saying the same thing again. Pure functions, no I/O: the bench measures a
flight with them (sim/bench/musing_report.py), and a workstation can measure generations the same way.

    MusingFacts                  what one musing's prompt carried (the payload logs it with the musing)
    judge(Musing) -> Judgement   one musing: the kinds of fact it is grounded in, mismatches, degeneracy
    measure([Musing]) -> dict    a sample's figures: counts, shares and Wilson 95 % intervals

Every rule is a conservative text match, checkable against that musing's own facts: a mention
counts only if it agrees with them, and a number that agrees with nothing counts as nothing
(it is a *mismatch*). The rules, kind by kind (docs/bench.md, "Musings worth reading", says
the same for readers of the report):

- altitude: a number with a unit of length (km, kilometres, m, metres, ft, feet, miles; "21k
  feet") within 10 % (at least 100 m) of the altitude. "5 m/s" is a speed, not an altitude.
- temperature: a number with a temperature unit (°, °C, degrees, C, celsius; °F and fahrenheit
  converted) within 3 °C of the outside or the box temperature; "minus 55", "−55" and "55 below
  zero" are negative, and a number without its sign is not the negative temperature.
- cold: a cold word (cold, freezing, frozen, icy, ice, frost, chilly, frigid) when a temperature it
  was told is below 0 °C; said when none is, a mismatch.
- phase: a word of its flight phase (rising/climbing/ascent; floating/hovering; falling/descending/
  parachute; landed/landing/on the ground; launch/on the pad before it); words of only another
  phase are a mismatch.
- sun: sun/sunlight/sunshine/daylight with the sun up, night/moon/stars with it down. "dark" is
  not counted (the sky is dark above 20 km by day), nor sunrise/sunset/dawn/dusk (up or down
  alone cannot check them).
- pressure: a number with hPa, mbar, mb, millibars or kPa within 5 % (at least 2 hPa).
- battery: a number with V, volts or mV within 0.1 V of the battery's voltage.
- request: a phrase of an unanswered or failed question ("no answer", "nobody answered", "didn't
  hear", "no reply", "found nothing", "offline"...) when the prompt carried a request whose
  outcome was not an answer; said when it carried none, a mismatch.

Word matches cannot read negation or sense ("the sun rising" is a rising word): they are
counted as found, which is why only the numeric kinds are precise.

Degenerate kinds: `empty` (the model said nothing), `no_words` (only privacy placeholders,
punctuation or symbols), `loop` (a run of 1-4 characters repeated to 12 or more, the same
sentence of two or more words twice, or a word n-gram (n <= 4) repeated at least 3 times —
4 for single words — whose occurrences cover half the words), `cut_mid_word` (stopped at the
token limit and ending in a letter or digit, not cut by the radio's budget). A musing the
payload's fit_musing cut to the radio's characters (at a sentence end, or with "…") is
*cut by the budget*: counted on its own, not degenerate.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from stratoecho.privacy import PLACEHOLDER
from stratoecho.stats import wilson

KINDS = ("altitude", "temperature", "cold", "phase", "sun", "pressure", "battery", "request")
DEGENERATE_KINDS = ("empty", "no_words", "loop", "cut_mid_word")
PHASES = ("pre-launch", "ascent", "float", "descent", "landed")

# Tolerances: wide enough for a person's rounding of what the prompt said ("21.4 km up" ->
# "about 21 km", "-55 °C" -> "-53 degrees"), narrow enough that another flight's number fails.
ALTITUDE_SHARE = 0.10
ALTITUDE_MIN_M = 100.0
TEMPERATURE_C = 3.0
PRESSURE_SHARE = 0.05
PRESSURE_MIN_HPA = 2.0
BATTERY_V = 0.1
NEAR_DUPLICATE = 0.6  # Jaccard similarity of word-bigram sets: one word changed in ten is a near-duplicate
LOOP_COVER = 0.5
LOOP_REPEATS = 3
LOOP_MAX_N = 4
CHAR_RUN = 12


# ----------------------------------------------------------------------------- facts


@dataclass(frozen=True)
class Request:
    """A question to the ground whose outcome the prompt carried."""

    api: str
    outcome: str  # payload.persona.reach.OutcomeKind's value: ok, silent_link, timeout, offline, ...

    @property
    def failed(self) -> bool:
        return self.outcome != "ok"


@dataclass(frozen=True)
class MusingFacts:
    """What one musing's prompt told the persona; None (left out of the dict) where it said nothing."""

    phase: str | None = None  # pre-launch, ascent, float, descent, landed
    alt_m: float | None = None  # the altitude (the last known one when fix is False)
    fix: bool = True
    temp_c: float | None = None  # outside
    box_temp_c: float | None = None
    pressure_hpa: float | None = None
    batt_v: float | None = None
    mode: str | None = None  # payload.policy.modes.Mode value
    sun_up: bool | None = None
    sats: int | None = None
    requests: tuple[Request, ...] = ()
    memories: int = 0  # memories the prompt carried

    def to_dict(self) -> dict:
        d: dict = {k: getattr(self, k) for k in ("phase", "alt_m", "fix", "temp_c", "box_temp_c", "pressure_hpa",
                                                  "batt_v", "mode", "sun_up", "sats")}
        d = {k: v for k, v in d.items() if v is not None}
        if self.requests:
            d["requests"] = [{"api": r.api, "outcome": r.outcome} for r in self.requests]
        if self.memories:
            d["memories"] = self.memories
        return d

    @classmethod
    def from_dict(cls, d: Mapping | None) -> MusingFacts:
        """From `to_dict`'s form; a key of the wrong type or unknown is left out, never guessed."""
        d = d if isinstance(d, Mapping) else {}

        def num(key):
            v = d.get(key)  # an int stays one: the facts read back as they were logged
            return v if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None

        def text(key):
            v = d.get(key)
            return v if isinstance(v, str) else None

        requests = tuple(Request(str(r.get("api", "")), str(r.get("outcome", "")))
                         for r in d.get("requests") or () if isinstance(r, Mapping))
        sats, memories = d.get("sats"), d.get("memories")
        return cls(phase=text("phase"), alt_m=num("alt_m"), fix=d.get("fix") is not False, temp_c=num("temp_c"),
                   box_temp_c=num("box_temp_c"), pressure_hpa=num("pressure_hpa"), batt_v=num("batt_v"),
                   mode=text("mode"), sun_up=d["sun_up"] if isinstance(d.get("sun_up"), bool) else None,
                   sats=sats if isinstance(sats, int) and not isinstance(sats, bool) else None, requests=requests,
                   memories=memories if isinstance(memories, int) and not isinstance(memories, bool) else 0)

    def temperatures(self) -> list[float]:
        return [t for t in (self.temp_c, self.box_temp_c) if t is not None]


@dataclass(frozen=True)
class Musing:
    """One musing as it came, and how its generation ended."""

    text: str
    facts: MusingFacts = field(default_factory=MusingFacts)
    finish: str = ""  # the generation's finish reason: "stop", "length" (the token limit), "" unknown
    cut_by_budget: bool = False  # fit_musing shortened it to the radio's characters
    raw_chars: int = 0  # non-space characters the model wrote before placeholders were taken out


@dataclass(frozen=True)
class Judgement:
    grounded: tuple[str, ...]  # kinds of fact it mentions in agreement with its facts
    mismatched: tuple[str, ...]  # kinds it mentions only in disagreement (a number that matches nothing)
    degenerate: tuple[str, ...]
    cut_by_budget: bool

    def to_dict(self) -> dict:
        return {"grounded": list(self.grounded), "mismatched": list(self.mismatched),
                "degenerate": list(self.degenerate), "cut_by_budget": self.cut_by_budget}


# ----------------------------------------------------------------------------- mentions

# A number: an optional sign (a minus sign or "minus" before it, never a hyphen inside "20-25"),
# thousands with commas, one decimal point.
_NUMBER = re.compile(r"(?:(?P<minus>\bminus\s+|\bnegative\s+)|(?P<sign>(?<![\w.,])[-−–]))?"
                     r"(?<![\w.,])(?P<num>\d{1,3}(?:,\d{3})+(?![\d,])|\d+)(?:\.(?P<frac>\d+))?")


def _f_to_c(f: float) -> float:
    return (f - 32.0) * 5.0 / 9.0


# (kind, unit matched right after the number, the value in the facts' units). First match wins:
# the longer units come before the ones they start with (km before m, °F before °).
_UNITS: tuple[tuple[str, re.Pattern, object], ...] = tuple(
    (kind, re.compile(pattern), convert) for kind, pattern, convert in (
        ("altitude", r"\s?-?\s?k\s?(?:ft|feet)\b", lambda x: x * 304.8),
        ("altitude", r"\s?-?\s?(?:kms?|kilomet(?:er|re)s?)\b", lambda x: x * 1000.0),
        ("altitude", r"\s?-?\s?(?:mi|miles?)\b", lambda x: x * 1609.344),
        ("altitude", r"\s?-?\s?(?:m|met(?:er|re)s?)\b(?!\s*/|\s*per\b)", lambda x: x),
        ("altitude", r"\s?-?\s?(?:ft|feet|foot)\b", lambda x: x * 0.3048),
        ("temperature", r"\s?(?:°|º|degrees?\b|deg\b)\s?(?:f|fahrenheit)\b|\s?fahrenheit\b", _f_to_c),
        ("temperature", r"\s?(?:°|º)\s?(?:c\b|celsius\b)?|\s?(?:degrees?|deg)\b(?:\s?(?:c|celsius|centigrade)\b)?"
                        r"|\s?(?:c|celsius|centigrade)\b|(?=\s+below\s+(?:zero|freezing)\b)", lambda x: x),
        ("pressure", r"\s?(?:hpa|hectopascals?|mbar|mb|millibars?)\b", lambda x: x),
        ("pressure", r"\s?kpa\b", lambda x: x * 10.0),
        ("battery", r"\s?(?:mv|millivolts?)\b", lambda x: x / 1000.0),
        ("battery", r"\s?(?:v|volts?)\b", lambda x: x),
    ))
_BELOW = re.compile(r"\s*below\b(?:\s+(?:zero|freezing)\b)?")
# Degrees that are an angle, not a temperature ("52 degrees north", "the sun 10° above the horizon"):
# after such a unit the number is no mention at all.
_ANGLE = re.compile(r"\s*(?:[nsew]\b|north|south|east|west|above\b|(?:below\s+)?the\s+horizon|of\s+(?:latitude|longitude|arc)"
                    r"|elevation|latitude|longitude)")


def _words(pattern: str) -> re.Pattern:
    return re.compile(rf"\b(?:{pattern})\b")


_PHASE_WORDS = {
    "pre-launch": _words(r"launch|launching|lift-?off|on the (?:ground|pad)|before (?:the )?launch"),
    "ascent": _words(r"ris(?:e|es|ing)|climb(?:s|ing)?|ascen(?:t|d|ds|ding)|going up|up and up|higher and higher"),
    "float": _words(r"float(?:s|ing)?|hover(?:s|ing)?|at the top"),
    "descent": _words(r"fall(?:s|ing)?|descen(?:t|d|ds|ding)|coming down|going down|parachute|sinking"),
    "landed": _words(r"landed|landing|touch(?:ed)? ?down|on the ground|back on (?:the )?(?:ground|earth)"),
}
_SUN_UP = _words(r"sun|sunlight|sunshine|sunny|sunlit|daylight|daytime")
_SUN_DOWN = _words(r"night|nights|night-?time|tonight|midnight|moon|moonlight|moonlit|stars?|starry|starlight")
_COLD = _words(r"cold|colder|coldest|freez(?:e|es|ing)|frozen|icy|ice|frost|frosty|chilly|frigid")
_UNANSWERED = _words(
    r"no answers?|(?:nobody|no ?one) (?:answered|answers|replied|replies)|no (?:reply|replies|response)|unanswered"
    r"|(?:didn't|did not|haven't|have not|hasn't|has not|never|don't|do not) hear(?:d)?|heard nothing"
    r"|nothing back|no word (?:from|back)|not answering|silence from|found nothing|no internet|offline")


def _numbers(text: str) -> list[tuple[str, float]]:
    """(kind, value in the facts' units) of each number with a unit in `text` (lower case)."""
    found = []
    for m in _NUMBER.finditer(text):
        value = float(m["num"].replace(",", "") + ("." + m["frac"] if m["frac"] else ""))
        negative = bool(m["minus"] or m["sign"])
        for kind, unit, convert in _UNITS:
            u = unit.match(text, m.end())
            if u is None:
                continue
            if kind == "temperature" and _ANGLE.match(text, u.end()):
                break
            if kind == "temperature" and _BELOW.match(text, u.end()):
                negative = True  # "55 below zero", "55 degrees below"
            found.append((kind, convert(-value if negative else value)))
            break
    return found


def _near(a: float, b: float, tolerance: float) -> bool:
    return abs(a - b) <= tolerance + 1e-9


def _grounding(text: str, facts: MusingFacts) -> tuple[set[str], set[str]]:
    """The kinds `text` mentions in agreement with `facts`, and those it mentions only against them."""
    text = text.lower().replace("’", "'")
    agree: set[str] = set()
    mentioned: set[str] = set()
    temps = facts.temperatures()
    for kind, value in _numbers(text):
        mentioned.add(kind)
        if kind == "altitude" and facts.alt_m is not None:
            ok = _near(value, facts.alt_m, max(ALTITUDE_SHARE * abs(facts.alt_m), ALTITUDE_MIN_M))
        elif kind == "temperature":
            ok = any(_near(value, t, TEMPERATURE_C) for t in temps)
        elif kind == "pressure" and facts.pressure_hpa is not None:
            ok = _near(value, facts.pressure_hpa, max(PRESSURE_SHARE * facts.pressure_hpa, PRESSURE_MIN_HPA))
        elif kind == "battery" and facts.batt_v is not None:
            ok = _near(value, facts.batt_v, BATTERY_V)
        else:
            ok = False  # a reading the prompt did not carry: invented
        if ok:
            agree.add(kind)
    if _COLD.search(text):
        mentioned.add("cold")
        if any(t < 0 for t in temps):
            agree.add("cold")
    phases_said = {p for p, words in _PHASE_WORDS.items() if words.search(text)}
    if phases_said:
        mentioned.add("phase")
        if facts.phase in phases_said:
            agree.add("phase")
    up, down = bool(_SUN_UP.search(text)), bool(_SUN_DOWN.search(text))
    if up or down:
        mentioned.add("sun")
        if facts.sun_up is not None and (up if facts.sun_up else down):
            agree.add("sun")
    if _UNANSWERED.search(text):
        mentioned.add("request")
        if any(r.failed for r in facts.requests):
            agree.add("request")
    return agree, mentioned - agree


def carried(facts: MusingFacts) -> set[str]:
    """The kinds a musing told these facts could be grounded in."""
    have = {"altitude": facts.alt_m is not None, "temperature": bool(facts.temperatures()),
            "cold": any(t < 0 for t in facts.temperatures()), "phase": facts.phase in PHASES,
            "sun": facts.sun_up is not None, "pressure": facts.pressure_hpa is not None,
            "battery": facts.batt_v is not None, "request": any(r.failed for r in facts.requests)}
    return {k for k, v in have.items() if v}


# ----------------------------------------------------------------------------- degenerate

# Placeholders the scrubber writes (<PHONE_2>), and the half-formed ones a small model makes of them.
_PLACEHOLDER_PIECE = re.compile(r"<[A-Z]{2,}(?:_[A-Z0-9]*)*>?")
_ALNUM = re.compile(r"[^\W_]")
_TOKEN = re.compile(r"\d+(?:[.,]\d+)*|[^\W\d_]+(?:'[^\W\d_]+)*")
_SENTENCE_END = re.compile(r"[.!?…]+(?=\s|$)")
_CHAR_LOOP = re.compile(r"(.{1,4}?)\1{2,}", re.S)


def tokens(text: str) -> list[str]:
    """Lower-case words and numbers ("21.4" is one), as distinct-n and near-duplicates count them."""
    return _TOKEN.findall(text.lower().replace("’", "'"))


def _is_loop(text: str) -> bool:
    if any(m.end() - m.start() >= CHAR_RUN for m in _CHAR_LOOP.finditer(text)):
        return True
    sentences = [tuple(tokens(s)) for s in _SENTENCE_END.split(text)]
    said = [s for s in sentences if len(s) >= 2]
    if len(said) != len(set(said)):
        return True
    words = tokens(text)
    for n in range(1, LOOP_MAX_N + 1):
        grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
        for gram, count in Counter(grams).items():
            if count < LOOP_REPEATS + (n == 1):
                continue
            covered = {i + k for i, g in enumerate(grams) if g == gram for k in range(n)}
            if len(covered) >= LOOP_COVER * len(words):
                return True
    return False


def _degenerate(m: Musing) -> tuple[str, ...]:
    text = m.text or ""
    if not _ALNUM.search(_PLACEHOLDER_PIECE.sub(" ", PLACEHOLDER.sub(" ", text))):
        return ("empty",) if not text.strip() and not m.raw_chars else ("no_words",)
    kinds = []
    if _is_loop(text):
        kinds.append("loop")
    if m.finish == "length" and not m.cut_by_budget and text.rstrip()[-1:].isalnum():
        kinds.append("cut_mid_word")
    return tuple(kinds)


def judge(m: Musing) -> Judgement:
    agree, against = _grounding(m.text or "", m.facts)
    order = {k: i for i, k in enumerate(KINDS)}
    return Judgement(grounded=tuple(sorted(agree, key=order.get)), mismatched=tuple(sorted(against, key=order.get)),
                     degenerate=_degenerate(m), cut_by_budget=m.cut_by_budget)


# ----------------------------------------------------------------------------- a sample


def share(k: int, n: int) -> dict:
    """A count of a sample with its share and Wilson 95 % interval (None for an empty sample)."""
    ci = wilson(k, n)
    return {"count": k, "of": n, "share": round(k / n, 4) if n else None,
            "ci95": [round(ci[0], 4), round(ci[1], 4)] if ci else None}


def distinct_n(texts: Iterable[Sequence[str]]) -> dict:
    """distinct-1 and distinct-2: unique over all unigrams and bigrams (bigrams within a musing)."""
    unigrams: list[str] = []
    bigrams: list[tuple[str, str]] = []
    for words in texts:
        unigrams += words
        bigrams += zip(words, words[1:])
    return {"distinct_1": round(len(set(unigrams)) / len(unigrams), 4) if unigrams else None,
            "distinct_2": round(len(set(bigrams)) / len(bigrams), 4) if bigrams else None,
            "words": len(unigrams), "bigrams": len(bigrams)}


def _shingles(words: Sequence[str]) -> frozenset:
    return frozenset(zip(words, words[1:])) if len(words) > 1 else frozenset([tuple(words)])


def near_duplicates(texts: Sequence[Sequence[str]], threshold: float = NEAR_DUPLICATE) -> list[int]:
    """Indices of the texts (word lists) as similar as `threshold` (Jaccard of word-bigram sets;
    a one-word text's own word) to an earlier one: the repeats, not the first of each."""
    sets = [_shingles(w) for w in texts]
    holders: dict = {}  # shingle -> earlier texts holding it
    repeats = []
    for i, s in enumerate(sets):
        shared: Counter = Counter(j for g in s for j in holders.get(g, ()))
        if any(c / (len(s) + len(sets[j]) - c) >= threshold for j, c in shared.items()):
            repeats.append(i)
        for g in s:
            holders.setdefault(g, []).append(i)
    return repeats


def measure(musings: Sequence[Musing]) -> dict:
    """The sample's figures, as report.json's `musings.quality` holds them (docs/bench.md).

    Grounded overall and degenerate are shares of every musing measured; grounded per kind is a
    share of the musings whose facts carried that kind (`of`), with `mismatched` beside it;
    near-duplicates are a share of the musings with words; distinct-n is over their words."""
    judged = [judge(m) for m in musings]
    n = len(judged)
    by_kind = {}
    for kind in KINDS:
        told = sum(kind in carried(m.facts) for m in musings)
        by_kind[kind] = {**share(sum(kind in j.grounded for j in judged), told),
                         "mismatched": sum(kind in j.mismatched for j in judged)}
    worded = [tokens(m.text) for m, j in zip(musings, judged) if not {"empty", "no_words"} & set(j.degenerate)]
    figures = {
        "measured": n,
        "grounded": {**share(sum(bool(j.grounded) for j in judged), n), "by_kind": by_kind},
        "degenerate": {**share(sum(bool(j.degenerate) for j in judged), n),
                       "by_kind": {k: share(sum(k in j.degenerate for j in judged), n) for k in DEGENERATE_KINDS}},
        "cut_by_budget": share(sum(j.cut_by_budget for j in judged), n),
        "distinct": distinct_n(worded),
        "near_duplicates": {**share(len(near_duplicates(worded)), len(worded)), "threshold": NEAR_DUPLICATE},
    }
    if not n:
        figures["note"] = "no musings to measure"
    return figures
