"""What a musing claims about its flight, and whether each claim is true: the one definition of
"true" that the payload's truth guard holds a musing to before it airs (payload/persona/truth.py)
and the bench's flight report measures musings with (stratoecho/musing_quality.py). Pure: text and
facts in, claims out.

    MusingFacts                      what the payload knew when the musing was made (logged with it)
    claims(text, facts) -> [Claim]   each checkable claim in the text, held against the facts

A claim is a conservative text match, in the words of the persona's language (`facts.language`:
stratoecho/claim_words.py, from its file in stratoecho/languages/ and CLDR's numbers and units;
for a language without a file its numbers with units only; English for none). Its kinds, and
when each is true (the English words given; German's are its own, "12,4 km", "seit 2 Stunden
in der Luft", "minus 40 Grad", "wir sinken"):

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
from collections.abc import Mapping
from dataclasses import dataclass

from .claim_words import ClaimWords, claim_words
from .languages.cldr import plain

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
    language: str | None = None  # ISO 639-1 the claims are read in (the persona's); None: English
    aloft_told: bool = True  # the prompt said the time since launch (a small context's budget may leave it out)

    def to_dict(self) -> dict:
        d: dict = {k: getattr(self, k) for k in ("phase", *_NUMERIC[:5], "fix", "mode", "sun_up", "sats",
                                                  *_NUMERIC[5:])}
        d = {k: v for k, v in d.items() if v is not None}
        if self.requests:
            d["requests"] = [{"api": r.api, "outcome": r.outcome} for r in self.requests]
        if self.memories:
            d["memories"] = self.memories
        if self.language:
            d["language"] = self.language
        if not self.aloft_told:
            d["aloft_told"] = False
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
                   language=text("language"), aloft_told=d.get("aloft_told") is not False,
                   **{k: num(k) for k in _NUMERIC})

    def temperatures(self) -> list[float]:
        return [t for t in (self.temp_c, self.box_temp_c) if t is not None]


@dataclass(frozen=True)
class Claim:
    kind: str
    said: str  # the words that make it, as written (lower case)
    true: bool


# ----------------------------------------------------------------------------- numbers


def _numbers(text: str, w: ClaimWords) -> list[tuple[str, float, str]]:
    """(kind, value in the facts' units, the words said) of each number with a unit in `text`
    (lower case) as language `w` writes them; battery percentages as kind "battery_share" (0..1)."""
    found = []
    for m in w.number.finditer(text):
        value = float(m["num"].replace(w.thousands, "") + ("." + m["frac"] if m["frac"] else ""))
        negative = bool(m["minus"] or m["sign"])
        pct = w.percent.match(text, m.end())
        if pct is not None:
            end = text.find(".", m.end())
            sentence = text[text.rfind(".", 0, m.start()) + 1:len(text) if end < 0 else end]
            if w.battery_word.search(sentence):
                found.append(("battery_share", value / 100.0, text[m.start():pct.end()]))
            continue
        for kind, unit, convert in w.units:
            u = unit.match(text, m.end())
            if u is None:
                continue
            if kind == "temperature" and (w.angle_after.match(text, u.end()) or w.angle_before.search(text, 0, m.start())):
                break
            if kind == "temperature" and w.below.match(text, u.end()):
                negative = True  # "55 below zero", "55 degrees below"
            if kind == "altitude" and (w.distance_after.match(text, u.end())
                                       or w.distance_before.search(text, 0, m.start())):
                kind, convert = "distance", (lambda x, c=convert: c(x) / 1000.0)
            found.append((kind, convert(-value if negative else value), text[m.start():u.end()]))
            break
    return found


def _aloft_claims(text: str, w: ClaimWords) -> list[tuple[float, str]]:
    out, taken = [], []  # two patterns may read one phrase ("seit 2 stunden in der luft"): it is one claim
    for m in (m for pattern in w.aloft for m in pattern.finditer(text)):
        if any(m.start() < end and start < m.end() for start, end in taken):
            continue
        taken.append(m.span())
        n = m["n"]
        value = float(n.replace(w.decimal, ".")) if n[0].isdigit() else float(w.counts[n])
        out.append((value * w.seconds(m["unit"]), m.group(0)))
    return out


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
    """Every checkable claim `text` makes about the flight, each held against `facts`, read in
    the language of the facts (stratoecho/claim_words.py)."""
    text = plain((text or "").lower().replace("’", "'"))  # CLDR's no-break spaces are typed as spaces
    w = claim_words(facts.language)
    out: list[Claim] = []
    for kind, value, said in _numbers(text, w):
        true = _number_true(kind, value, facts)
        if true is not None:
            out.append(Claim({"battery_share": "battery", "speed m/s": "speed"}.get(kind, kind), said, true))
    if facts.aloft_s is not None:
        out += [Claim("time_aloft", said, _near(value, facts.aloft_s, max(ALOFT_SHARE * facts.aloft_s, ALOFT_MIN_S)))
                for value, said in _aloft_claims(text, w)]
    temps = facts.temperatures()
    if m := w.cold.search(text):
        out.append(Claim("cold", m.group(0), any(t < 0 for t in temps)))
    if m := w.warm.search(text):
        if any(t >= WARM_C for t in temps):
            out.append(Claim("warm", m.group(0), True))
        elif facts.temp_c is not None and facts.temp_c < NOT_WARM_C and (facts.box_temp_c or 0.0) < BOX_WARM_C:
            out.append(Claim("warm", m.group(0), False))
    said = {p: m.group(0) for p, words in w.phases.items() if (m := words.search(text))}
    if said:
        out.append(Claim("phase", said.get(facts.phase) or next(iter(said.values())), facts.phase in said))
    up, down = w.sun_up.search(text), w.sun_down.search(text)
    if up or down:
        true = facts.sun_up is not None and bool(up if facts.sun_up else down)
        out.append(Claim("sun", (up or down).group(0), true))
    if m := w.unanswered.search(text):
        out.append(Claim("request", m.group(0), any(r.failed for r in facts.requests)))
    return out
