"""What a musing claims about its flight, and whether each claim is true: the one definition of
"true" that the payload's truth guard holds a musing to before it airs (payload/persona/truth.py)
and the bench's flight report measures musings with (stratoecho/musing_quality.py). Pure: text and
facts in, claims out.

    MusingFacts                      what the payload knew when the musing was made (logged with it)
    claims(text, facts) -> [Claim]   each checkable claim in the text, held against the facts

A claim is a conservative text match. Its kinds, and when each is true:

- altitude: a number with a unit of length (km, kilometres, m, metres, ft, feet, miles; "21k
  feet") within 10 % (at least 100 m) of the altitude. "5 m/s" is a speed, "40 km east" a distance.
- distance: a number with a unit of length followed by away / from / east / west / downrange
  (or after drifted, travelled, flown), within a quarter (at least 5 km) of the distance from the
  launch site.
- temperature: a number with a temperature unit (°, °C, degrees, C, celsius; °F and fahrenheit
  converted) within 3 °C of the outside or the box temperature; "minus 55", "−55" and "55 below
  zero" are negative, and a number without its sign is not the negative temperature.
- speed: a number with km/h, mph or knots within 30 % (at least 5 km/h) of the ground speed; one in
  m/s of the ground speed or of the vertical rate.
- time aloft: a number of seconds ... years said of being up ("up for 28 hours", "flying for 12
  years", "2 hours in the air", "launched 20 minutes ago") within 40 % (at least 15 minutes) of the
  time since launch (none before it).
- battery: a number with V, volts or mV within 0.1 V of the battery's voltage; a percentage of the
  battery, charge, power or phone within 15 points of the energy left.
- cold: a cold word (cold, freezing, frozen, icy, ice, frost, chilly, frigid) when a temperature it
  was told is below 0 °C; said when none is, false.
- warm: "it's hot", "so warm", "hot up here", scorching, sweltering: true when a temperature is
  15 °C or more, false when the outside air is below 0 °C and the box below 15 °C.
- phase: a word of its flight phase (rising/climbing/ascent; floating/hovering; falling/descending/
  parachute; landed/landing/on the ground; launch/on the pad before it); words of only another
  phase are false.
- sun: sun/sunlight/sunshine/daylight with the sun up, night/moon/stars with it down. "dark" is
  not counted (the sky is dark above 20 km by day), nor sunrise/sunset/dawn/dusk.
- pressure: a number with hPa, mbar, mb, millibars or kPa within 5 % (at least 2 hPa).
- request: a phrase of an unanswered or failed question ("no answer", "nobody answered", "didn't
  hear", "offline"...) when a question's outcome was not an answer; said when none was, false.

A number of a kind whose fact was not known (no fix, no battery reading) is false for altitude,
temperature, pressure and battery (the prompt said none: invented), and not a claim at all for
speed, distance and time aloft, which a prompt need not say and a payload may not know (no GPS
speed yet; a payload that woke aloft with no launch recorded). Word matches cannot read negation
or sense ("the sun rising" is a rising word): they count as said, which is why the numbers are
the precise kinds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

KINDS = ("altitude", "temperature", "cold", "phase", "sun", "pressure", "battery", "request", "time_aloft",
         "speed", "distance", "warm")
PHASES = ("pre-launch", "ascent", "float", "descent", "landed")
# A figure of the flight stated rightly: what a listener can hold against the telemetry (issue 40).
FIGURE_KINDS = ("altitude", "temperature", "phase", "time_aloft")

# Tolerances: wide enough for a person's rounding of what the prompt said ("21.4 km up" ->
# "about 21 km", "-55 °C" -> "-53 degrees"), narrow enough that another flight's number fails.
ALTITUDE_SHARE = 0.10
ALTITUDE_MIN_M = 100.0
TEMPERATURE_C = 3.0
PRESSURE_SHARE = 0.05
PRESSURE_MIN_HPA = 2.0
BATTERY_V = 0.1
BATTERY_POINTS = 15.0
SPEED_SHARE, SPEED_MIN_KMH = 0.30, 5.0
DISTANCE_SHARE, DISTANCE_MIN_KM = 0.25, 5.0
ALOFT_SHARE, ALOFT_MIN_S = 0.40, 900.0
WARM_C, NOT_WARM_C, BOX_WARM_C = 15.0, 0.0, 15.0


@dataclass(frozen=True)
class Request:
    """A question to the ground whose outcome the prompt carried."""

    api: str
    outcome: str  # payload.persona.reach.OutcomeKind's value: ok, silent_link, timeout, offline, ...

    @property
    def failed(self) -> bool:
        return self.outcome != "ok"


_NUMERIC = ("alt_m", "temp_c", "box_temp_c", "pressure_hpa", "batt_v", "aloft_s", "speed_kmh", "rate_m_s",
            "distance_km", "battery_share")


@dataclass(frozen=True)
class MusingFacts:
    """What the payload knew when a musing was made (the prompt says most of it); None (left out of
    the dict) where it knew nothing."""

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
    aloft_s: float | None = None  # since launch (0 before it)
    speed_kmh: float | None = None  # over the ground (the GPS's)
    rate_m_s: float | None = None  # vertical: up positive
    distance_km: float | None = None  # from the launch site
    battery_share: float | None = None  # of the energy budget left, 0..1

    def to_dict(self) -> dict:
        d: dict = {k: getattr(self, k) for k in ("phase", *_NUMERIC[:5], "fix", "mode", "sun_up", "sats",
                                                  *_NUMERIC[5:])}
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
        return cls(phase=text("phase"), fix=d.get("fix") is not False, mode=text("mode"),
                   sun_up=d["sun_up"] if isinstance(d.get("sun_up"), bool) else None,
                   sats=sats if isinstance(sats, int) and not isinstance(sats, bool) else None, requests=requests,
                   memories=memories if isinstance(memories, int) and not isinstance(memories, bool) else 0,
                   **{k: num(k) for k in _NUMERIC})

    def temperatures(self) -> list[float]:
        return [t for t in (self.temp_c, self.box_temp_c) if t is not None]


@dataclass(frozen=True)
class Claim:
    kind: str
    said: str  # the words that make it, as written (lower case)
    true: bool


# ----------------------------------------------------------------------------- numbers

# A number: an optional sign (a minus sign or "minus" before it, never a hyphen inside "20-25"),
# thousands with commas, one decimal point.
_NUMBER = re.compile(r"(?:(?P<minus>\bminus\s+|\bnegative\s+)|(?P<sign>(?<![\w.,])[-−–]))?"
                     r"(?<![\w.,])(?P<num>\d{1,3}(?:,\d{3})+(?![\d,])|\d+)(?:\.(?P<frac>\d+))?")


def _f_to_c(f: float) -> float:
    return (f - 32.0) * 5.0 / 9.0


# (kind, unit matched right after the number, the value in the facts' units). First match wins:
# speeds before lengths (km/h starts as km does), the longer units before the ones they start with.
_PER_HOUR = r"\s?(?:/\s?h\b|/hr\b|ph\b|\s(?:an|per|a)\s+hour\b)"
_UNITS: tuple[tuple[str, re.Pattern, object], ...] = tuple(
    (kind, re.compile(pattern), convert) for kind, pattern, convert in (
        ("speed", r"\s?(?:km|kilomet(?:er|re)s?)" + _PER_HOUR + r"|\s?kmh\b|\s?kph\b", lambda x: x),
        ("speed", r"\s?(?:mph\b|miles?\s+(?:an|per|a)\s+hour\b)", lambda x: x * 1.609344),
        ("speed", r"\s?(?:knots?\b|kts?\b)", lambda x: x * 1.852),
        ("speed m/s", r"\s?(?:m/s\b|met(?:er|re)s?\s+(?:a|per)\s+second\b)", lambda x: x * 3.6),
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
# ... and before the number: "the sun has moved up to 15 degrees" (no clause between them: "the sun
# is up and it's 15 degrees" is a temperature).
_ANGLE_BEFORE = re.compile(r"\b(?:sun|horizon|angle|tilt\w*|turn\w*|rotat\w*|spin\w*|heading|bearing|compass)"
                           r"(?:\s+(?!and\b|but\b|it'?s\b|is\s+\w+\s+and\b)[a-z']+){0,4}\s+$")
# A length that is a distance over the ground, not a height.
_DISTANCE_AFTER = re.compile(r"\s*(?:away|from\b|downrange|east|west|north|south|to the (?:east|west|north|south)"
                             r"|across|off\b|of drift|inland|out to sea)")
_DISTANCE_BEFORE = re.compile(r"\b(?:drift(?:ed|ing)?|travel(?:l?ed|l?ing)|flown|flew|moved|covered|gone)"
                              r"(?:\s+\w+){0,2}\s+(?:about\s+|some\s+|nearly\s+|over\s+)?$")
_PERCENT = re.compile(r"\s?(?:%|percent\b|per cent\b)")
_BATTERY_WORD = re.compile(r"\b(?:battery|batteries|phone|charge|power)\b")


def _numbers(text: str) -> list[tuple[str, float, str]]:
    """(kind, value in the facts' units, the words said) of each number with a unit in `text`
    (lower case); battery percentages as kind "battery_share" (0..1)."""
    found = []
    for m in _NUMBER.finditer(text):
        value = float(m["num"].replace(",", "") + ("." + m["frac"] if m["frac"] else ""))
        negative = bool(m["minus"] or m["sign"])
        pct = _PERCENT.match(text, m.end())
        if pct is not None:
            end = text.find(".", m.end())
            sentence = text[text.rfind(".", 0, m.start()) + 1:len(text) if end < 0 else end]
            if _BATTERY_WORD.search(sentence):
                found.append(("battery_share", value / 100.0, text[m.start():pct.end()]))
            continue
        for kind, unit, convert in _UNITS:
            u = unit.match(text, m.end())
            if u is None:
                continue
            if kind == "temperature" and (_ANGLE.match(text, u.end()) or _ANGLE_BEFORE.search(text, 0, m.start())):
                break
            if kind == "temperature" and _BELOW.match(text, u.end()):
                negative = True  # "55 below zero", "55 degrees below"
            if kind == "altitude" and (_DISTANCE_AFTER.match(text, u.end())
                                       or _DISTANCE_BEFORE.search(text, 0, m.start())):
                kind, convert = "distance", (lambda x, c=convert: c(x) / 1000.0)
            found.append((kind, convert(-value if negative else value), text[m.start():u.end()]))
            break
    return found


# ----------------------------------------------------------------------------- time aloft

_COUNT = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
          "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12}
_N = r"(?P<n>\d+(?:\.\d+)?|" + "|".join(_COUNT) + r")"
_T = r"(?P<unit>seconds?|secs?|minutes?|mins?|hours?|hrs?|days?|weeks?|months?|years?)"
_UNIT_S = {"sec": 1, "min": 60, "hou": 3600, "hrs": 3600, "hr": 3600, "day": 86400, "wee": 604800,
           "mon": 2629800, "yea": 31557600}
_UP = r"(?:up|flying|aloft|airborne|in the air|in the sky|in space|in flight|floating|climbing|rising|drifting" \
      r"|out here|up here|on this flight|on the way up)"
_ABOUT = r"(?:about |almost |nearly |over |just |only |around |more than |less than |some )?"
_ALOFT = tuple(re.compile(pattern) for pattern in (
    rf"\b{_UP}\s+(?:now\s+|here\s+|already\s+)?for\s+{_ABOUT}{_N}\s+{_T}\b",
    rf"\b{_N}\s+{_T}\s+(?:up|aloft|in the air|in the sky|in space|in flight|since (?:launch|lift-?off|take-?off))\b",
    rf"\b(?:launched|took off|lifted off|left the ground|set off)\s+{_ABOUT}{_N}\s+{_T}\s+ago\b"))


def _aloft_claims(text: str) -> list[tuple[float, str]]:
    out = []
    for m in (m for pattern in _ALOFT for m in pattern.finditer(text)):
        n = m["n"]
        value = float(n) if n[0].isdigit() else float(_COUNT[n])
        unit = m["unit"]
        out.append((value * _UNIT_S.get(unit[:3], _UNIT_S.get(unit[:2], 1)), m.group(0)))
    return out


# ----------------------------------------------------------------------------- words


def _words(pattern: str) -> re.Pattern:
    return re.compile(rf"\b(?:{pattern})\b")


PHASE_WORDS = {
    "pre-launch": _words(r"launch|launching|lift-?off|on the (?:ground|pad)|before (?:the )?launch"),
    "ascent": _words(r"ris(?:e|es|ing)|climb(?:s|ing)?(?! down)|ascen(?:t|d|ds|ding)|going up|up and up"
                     r"|higher and higher"),
    "float": _words(r"float(?:s|ing)?|hover(?:s|ing)?|at the top"),
    "descent": _words(r"fall(?:s|ing)?|descen(?:t|d|ds|ding)|coming down|going down|climb(?:s|ing)? down|parachute"
                      r"|sinking"),
    "landed": _words(r"landed|landing|touch(?:ed)? ?down|on the ground|back on (?:the )?(?:ground|earth)"),
}
_SUN_UP = _words(r"sun|sunlight|sunshine|sunny|sunlit|daylight|daytime")
_SUN_DOWN = _words(r"night|nights|night-?time|tonight|midnight|moon|moonlight|moonlit|stars?|starry|starlight")
_COLD = _words(r"cold|colder|coldest|freez(?:e|es|ing)|frozen|icy|ice|frost|frosty|chilly|frigid")
_WARM = _words(r"(?:it's|it is|so|very|too|getting|feels?|quite)\s+(?:very\s+|so\s+)?(?:hot|warm)|(?:hot|warm)"
               r" (?:up )?here|heat ?wave|scorching|sweltering|boiling hot")
_UNANSWERED = _words(
    r"no answers?|(?:nobody|no ?one) (?:answered|answers|replied|replies)|no (?:reply|replies|response)|unanswered"
    r"|(?:didn't|did not|haven't|have not|hasn't|has not|never|don't|do not) hear(?:d)?|heard nothing"
    r"|nothing back|no word (?:from|back)|not answering|silence from|found nothing|no internet|offline")


def _near(a: float, b: float, tolerance: float) -> bool:
    return abs(a - b) <= tolerance + 1e-9


def _number_true(kind: str, value: float, f: MusingFacts) -> bool | None:
    """Whether a number of `kind` agrees with the facts; None: not a claim (a fact not known that
    a prompt need not say)."""
    if kind == "altitude":
        return f.alt_m is not None and _near(value, f.alt_m, max(ALTITUDE_SHARE * abs(f.alt_m), ALTITUDE_MIN_M))
    if kind == "temperature":
        return any(_near(value, t, TEMPERATURE_C) for t in f.temperatures())
    if kind == "pressure":
        return f.pressure_hpa is not None and _near(value, f.pressure_hpa,
                                                    max(PRESSURE_SHARE * f.pressure_hpa, PRESSURE_MIN_HPA))
    if kind == "battery":
        return f.batt_v is not None and _near(value, f.batt_v, BATTERY_V)
    if kind == "battery_share":
        return None if f.battery_share is None else _near(value * 100, f.battery_share * 100, BATTERY_POINTS)
    if kind in ("speed", "speed m/s"):  # km/h, mph, knots: over the ground; m/s: that, or up and down
        rate = None if f.rate_m_s is None or kind == "speed" else abs(f.rate_m_s) * 3.6
        known = [s for s in (f.speed_kmh, rate) if s is not None]
        return None if not known else any(_near(value, s, max(SPEED_SHARE * s, SPEED_MIN_KMH)) for s in known)
    if kind == "distance":
        return None if f.distance_km is None else _near(value, f.distance_km,
                                                        max(DISTANCE_SHARE * f.distance_km, DISTANCE_MIN_KM))
    return None


def claims(text: str, facts: MusingFacts) -> list[Claim]:
    """Every checkable claim `text` makes about the flight, each held against `facts`."""
    text = (text or "").lower().replace("’", "'")
    out: list[Claim] = []
    for kind, value, said in _numbers(text):
        true = _number_true(kind, value, facts)
        if true is not None:
            out.append(Claim({"battery_share": "battery", "speed m/s": "speed"}.get(kind, kind), said, true))
    if facts.aloft_s is not None:
        out += [Claim("time_aloft", said, _near(value, facts.aloft_s, max(ALOFT_SHARE * facts.aloft_s, ALOFT_MIN_S)))
                for value, said in _aloft_claims(text)]
    temps = facts.temperatures()
    if m := _COLD.search(text):
        out.append(Claim("cold", m.group(0), any(t < 0 for t in temps)))
    if m := _WARM.search(text):
        if any(t >= WARM_C for t in temps):
            out.append(Claim("warm", m.group(0), True))
        elif facts.temp_c is not None and facts.temp_c < NOT_WARM_C and (facts.box_temp_c or 0.0) < BOX_WARM_C:
            out.append(Claim("warm", m.group(0), False))
    said = {p: m.group(0) for p, words in PHASE_WORDS.items() if (m := words.search(text))}
    if said:
        out.append(Claim("phase", said.get(facts.phase) or next(iter(said.values())), facts.phase in said))
    up, down = _SUN_UP.search(text), _SUN_DOWN.search(text)
    if up or down:
        true = facts.sun_up is not None and bool(up if facts.sun_up else down)
        out.append(Claim("sun", (up or down).group(0), true))
    if m := _UNANSWERED.search(text):
        out.append(Claim("request", m.group(0), any(r.failed for r in facts.requests)))
    return out
