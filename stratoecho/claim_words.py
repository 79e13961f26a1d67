"""The words and numbers a musing's claims are read from, one table per language
(stratoecho/musing_claims.py reads them; what each kind means and its tolerance is there).

    ClaimWords                      one language's patterns (all match lower-case text)
    claim_words(code) -> ClaimWords the table of ISO 639-1 `code`; English for "" and for a
                                    language without a table (GUARDED says which have one)

English is the table the truth guard was built on. German reads numbers as German is written
("12,4 km": a decimal comma; "12.400 m": a thousands point) and its own words for the phase,
the sun, the cold and the time since launch; the units' symbols (km, m, °C, hPa, V) and the
English words of the sun, cold and heat are read too, since a persona on an English-trained
base slips into them. English phase words are not: German "auf jeden Fall" ("in any case")
is not a fall, nor "falls" ("if"), nor "mir fällt auf" ("I notice").
"""

from __future__ import annotations

import re
from dataclasses import dataclass


def _f_to_c(f: float) -> float:
    return (f - 32.0) * 5.0 / 9.0


def _w(pattern: str) -> re.Pattern:
    return re.compile(rf"\b(?:{pattern})\b")


def _units(table) -> tuple:
    return tuple((kind, re.compile(pattern), convert) for kind, pattern, convert in table)


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

    def seconds(self, unit: str) -> float:
        return next((s for head, s in self.time_units.items() if unit.startswith(head)), 1)


# ----------------------------------------------------------------------------- English

_PER_HOUR = r"\s?(?:/\s?h\b|/hr\b|ph\b|\s(?:an|per|a)\s+hour\b)"
_EN_UNITS = (
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
)
_EN_UP = (r"(?:up|flying|aloft|airborne|in the air|in the sky|in space|in flight|floating|climbing|rising|drifting"
          r"|out here|up here|on this flight|on the way up)")
_ABOUT = r"(?:about |almost |nearly |over |just |only |around |more than |less than |some )?"
_EN_COUNTS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
              "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12}
_EN_T = r"(?P<unit>seconds?|secs?|minutes?|mins?|hours?|hrs?|days?|weeks?|months?|years?)"
_TIME_UNITS = {"sec": 1, "min": 60, "hou": 3600, "hrs": 3600, "hr": 3600, "day": 86400, "wee": 604800,
               "mon": 2629800, "yea": 31557600}
_EN_SUN_UP = r"sun|sunlight|sunshine|sunny|sunlit|daylight|daytime"
_EN_SUN_DOWN = r"night|nights|night-?time|tonight|midnight|moon|moonlight|moonlit|stars?|starry|starlight"
_EN_COLD = r"cold|colder|coldest|freez(?:e|es|ing)|frozen|icy|ice|frost|frosty|chilly|frigid"
_EN_WARM = (r"(?:it's|it is|so|very|too|getting|feels?|quite)\s+(?:very\s+|so\s+)?(?:hot|warm)|(?:hot|warm)"
            r" (?:up )?here|heat ?wave|scorching|sweltering|boiling hot")


def _aloft_en(n: str) -> tuple:
    return tuple(re.compile(p) for p in (
        rf"\b{_EN_UP}\s+(?:now\s+|here\s+|already\s+)?for\s+{_ABOUT}{n}\s+{_EN_T}\b",
        rf"\b{n}\s+{_EN_T}\s+(?:up|aloft|in the air|in the sky|in space|in flight|since (?:launch|lift-?off|take-?off))\b",
        rf"\b(?:launched|took off|lifted off|left the ground|set off)\s+{_ABOUT}{n}\s+{_EN_T}\s+ago\b"))


EN = ClaimWords(
    code="en",
    # An optional sign (a minus sign or "minus" before it, never a hyphen inside "20-25"),
    # thousands with commas, one decimal point.
    number=re.compile(r"(?:(?P<minus>\bminus\s+|\bnegative\s+)|(?P<sign>(?<![\w.,])[-−–]))?"
                      r"(?<![\w.,])(?P<num>\d{1,3}(?:,\d{3})+(?![\d,])|\d+)(?:\.(?P<frac>\d+))?"),
    thousands=",",
    units=_units(_EN_UNITS),
    below=re.compile(r"\s*below\b(?:\s+(?:zero|freezing)\b)?"),
    # Degrees that are an angle ("52 degrees north", "the sun 10° above the horizon") ...
    angle_after=re.compile(r"\s*(?:[nsew]\b|north|south|east|west|above\b|(?:below\s+)?the\s+horizon"
                           r"|of\s+(?:latitude|longitude|arc)|elevation|latitude|longitude)"),
    # ... and before the number, with no clause between ("the sun is up and it's 15 degrees" is a temperature).
    angle_before=re.compile(r"\b(?:sun|horizon|angle|tilt\w*|turn\w*|rotat\w*|spin\w*|heading|bearing|compass)"
                            r"(?:\s+(?!and\b|but\b|it'?s\b|is\s+\w+\s+and\b)[a-z']+){0,4}\s+$"),
    distance_after=re.compile(r"\s*(?:away|from\b|downrange|east|west|north|south|to the (?:east|west|north|south)"
                              r"|across|off\b|of drift|inland|out to sea)"),
    distance_before=re.compile(r"\b(?:drift(?:ed|ing)?|travel(?:l?ed|l?ing)|flown|flew|moved|covered|gone)"
                               r"(?:\s+\w+){0,2}\s+(?:about\s+|some\s+|nearly\s+|over\s+)?$"),
    percent=re.compile(r"\s?(?:%|percent\b|per cent\b)"),
    battery_word=_w(r"battery|batteries|phone|charge|power"),
    counts=_EN_COUNTS,
    time_units=_TIME_UNITS,
    aloft=_aloft_en(r"(?P<n>\d+(?:\.\d+)?|" + "|".join(_EN_COUNTS) + r")"),
    decimal=".",
    phases={
        "pre-launch": _w(r"launch|launching|lift-?off|on the (?:ground|pad)|before (?:the )?launch"),
        "ascent": _w(r"ris(?:e|es|ing)|climb(?:s|ing)?(?! down)|ascen(?:t|d|ds|ding)|going up|up and up"
                     r"|higher and higher"),
        "float": _w(r"float(?:s|ing)?|hover(?:s|ing)?|at the top"),
        "descent": _w(r"fall(?:s|ing)?|descen(?:t|d|ds|ding)|coming down|going down|climb(?:s|ing)? down"
                      r"|parachute|sinking"),
        "landed": _w(r"landed|landing|touch(?:ed)? ?down|on the ground|back on (?:the )?(?:ground|earth)"),
    },
    sun_up=_w(_EN_SUN_UP),
    sun_down=_w(_EN_SUN_DOWN),
    cold=_w(_EN_COLD),
    warm=_w(_EN_WARM),
    unanswered=_w(
        r"no answers?|(?:nobody|no ?one) (?:answered|answers|replied|replies)|no (?:reply|replies|response)|unanswered"
        r"|(?:didn't|did not|haven't|have not|hasn't|has not|never|don't|do not) hear(?:d)?|heard nothing"
        r"|nothing back|no word (?:from|back)|not answering|silence from|found nothing|no internet|offline"),
)

# ----------------------------------------------------------------------------- German

_DE_COUNTS = {"ein": 1, "eine": 1, "einer": 1, "einem": 1, "einen": 1, "eins": 1, "zwei": 2, "drei": 3,
              "vier": 4, "fünf": 5, "sechs": 6, "sieben": 7, "acht": 8, "neun": 9, "zehn": 10, "elf": 11,
              "zwölf": 12, "anderthalb": 1.5, "eineinhalb": 1.5}
_DE_T = r"(?P<unit>sekunden?|sek|minuten?|min|stunden?|std|tagen?|tage|wochen?|monaten?|monate|jahren?|jahre)"
_DE_TIME_UNITS = {"sek": 1, "min": 60, "stu": 3600, "std": 3600, "tag": 86400, "woc": 604800, "mon": 2629800,
                  "jah": 31557600}
_DE_N = r"(?P<n>\d+(?:,\d+)?|" + "|".join(sorted(_DE_COUNTS, key=len, reverse=True)) + r")"
_DE_ABOUT = r"(?:etwa |ungefähr |fast |knapp |über |gut |erst |schon |rund |mehr als |weniger als |circa |ca\. )?"
_DE_UP = r"(?:in der luft|oben|hier oben|unterwegs|am fliegen|am steigen|auf reisen|im himmel)"
_DE_UNITS = (
    ("speed", r"\s?(?:km|kilometer)\s?(?:/\s?h\b|pro\s+stunde\b|in der stunde\b|die stunde\b)|\s?kmh\b"
              r"|\s?(?:stundenkilometer|sachen)\b", lambda x: x),
    ("speed", r"\s?(?:knoten|kn)\b", lambda x: x * 1.852),
    ("speed m/s", r"\s?(?:m/s|meter\s+(?:pro|in der|die)\s+sekunde)\b", lambda x: x * 3.6),
    ("altitude", r"\s?-?\s?(?:kms?|kilometern?)\b(?!\s*/)", lambda x: x * 1000.0),
    ("altitude", r"\s?-?\s?(?:meilen?)\b", lambda x: x * 1609.344),
    ("altitude", r"\s?-?\s?(?:m|metern?)\b(?!\s*/|\s*pro\b)", lambda x: x),
    ("altitude", r"\s?-?\s?(?:ft|fuß)\b", lambda x: x * 0.3048),
    ("temperature", r"\s?(?:°|º|grad\b)\s?(?:f|fahrenheit)\b", _f_to_c),
    ("temperature", r"\s?(?:°|º)\s?(?:c\b|celsius\b)?|\s?grad\b(?:\s?(?:c|celsius)\b)?|\s?celsius\b"
                    r"|(?=\s+unter\s+(?:null|dem gefrierpunkt)\b)", lambda x: x),
    ("pressure", r"\s?(?:hpa|hektopascal|mbar|millibar)\b", lambda x: x),
    ("pressure", r"\s?kpa\b", lambda x: x * 10.0),
    ("battery", r"\s?(?:mv|millivolt)\b", lambda x: x / 1000.0),
    ("battery", r"\s?(?:v|volt)\b", lambda x: x),
)

DE = ClaimWords(
    code="de",
    # "minus 40", "-40"; thousands with points ("12.400"), one decimal comma ("12,4"). A point or
    # comma at a sentence's end is punctuation: the fraction needs a digit after it.
    number=re.compile(r"(?:(?P<minus>\bminus\s+)|(?P<sign>(?<![\w.,])[-−–]))?"
                      r"(?<![\w.,])(?P<num>\d{1,3}(?:\.\d{3})+(?![\d.])|\d+)(?:,(?P<frac>\d+))?"),
    thousands=".",
    units=_units(_DE_UNITS + _EN_UNITS),  # the English units after: "10 miles", "-40 degrees"
    below=re.compile(r"\s*unter\b(?:\s+(?:null|dem gefrierpunkt)\b)?"),
    angle_after=re.compile(r"\s*(?:[nsow]\b|nord|süd|ost|west|über dem horizont|unter dem horizont"
                           r"|(?:nördlicher|südlicher|östlicher|westlicher) (?:breite|länge)|breite|länge|höhe über)"),
    angle_before=re.compile(r"\b(?:sonne|horizont|winkel|neig\w*|dreh\w*|kurs|kompass|richtung)"
                            r"(?:\s+(?!und\b|aber\b|es\b|ist\s+\w+\s+und\b)[a-zäöüß']+){0,4}\s+$"),
    distance_after=re.compile(r"\s*(?:entfernt|weit weg|weg\b|vom start|von\b|östlich|westlich|nördlich|südlich"
                              r"|nach (?:osten|westen|norden|süden)|richtung|abgetrieben|getrieben|gedriftet"
                              r"|geflogen|zurückgelegt|weit\s+\w*(?:driftet|trieben|flogen)|landeinwärts|aufs meer)"),
    distance_before=re.compile(r"\b(?:abgetrieben|getrieben|gedriftet|geflogen|zurückgelegt)(?:\s+\w+){0,2}"
                               r"\s+(?:um\s+|etwa\s+|rund\s+|fast\s+|über\s+)?$"),
    percent=re.compile(r"\s?(?:%|prozent\b)"),
    battery_word=_w(r"akku|akkus|batterie|batterien|handy|ladung|strom|energie|battery|power"),
    counts={**_EN_COUNTS, **_DE_COUNTS},  # the English patterns below read English counts
    time_units={**_DE_TIME_UNITS, **_TIME_UNITS},
    aloft=(
        re.compile(rf"\bseit\s+{_DE_ABOUT}{_DE_N}\s+{_DE_T}\b(?:\s+\w+){{0,3}}\s+{_DE_UP}"),
        re.compile(rf"\b{_DE_UP}\s+(?:bin ich\s+|sind wir\s+)?(?:jetzt\s+|schon\s+)?seit\s+{_DE_ABOUT}{_DE_N}\s+{_DE_T}\b"),
        re.compile(rf"\b{_DE_N}\s+{_DE_T}\s+(?:in der luft|oben|unterwegs|seit dem start|nach dem start)\b"),
        re.compile(rf"\bvor\s+{_DE_ABOUT}{_DE_N}\s+{_DE_T}\s+(?:\w+\s+){{0,2}}(?:gestartet|losgeflogen|abgehoben"
                   rf"|aufgestiegen|losgegangen)\b"),
        *_aloft_en(r"(?P<n>\d+(?:\.\d+)?|" + "|".join(_EN_COUNTS) + r")"),
    ),
    decimal=",",
    phases={
        "pre-launch": _w(r"warte(?:n|st)? (?:\w+ )?auf den start|vor dem start|startplatz|noch nicht gestartet"
                         r"|(?:gleich|bald) geht(?:'?s| es) los|noch am boden"),
        "ascent": _w(r"steig(?:e|st|t|en|end)|aufstieg|aufsteigen|aufwärts|immer höher|höher und höher"
                     r"|klett(?:er|ere|erst|ert|ern)|geht(?:'?s| es)(?: \w+)? (?:hoch|rauf|nach oben|aufwärts)"),
        "float": _w(r"schweb(?:e|st|t|en|end)|am höchsten punkt"),
        "descent": _w(r"(?:ich|wir) falle(?:n)?|falle ich|am fallen|runterfallen|herunterfallen|sink(?:e|st|t|en|end)"
                      r"|abstieg|abwärts|geht(?:'?s| es)(?: \w+)? (?:runter|abwärts|nach unten)"
                      r"|komm(?:e|t|en)? (?:runter|herunter)|fallschirm\w*"),
        "landed": _w(r"gelandet|landung|aufgesetzt|wieder (?:am|auf dem) boden|wieder unten|zurück auf der erde"),
    },
    # Not "Sonnenuntergang" nor "gute Nacht" (a farewell), as English counts no sunset.
    sun_up=_w(r"sonne|sonnig|sonnenlicht|sonnenschein|sonnenstrahl\w*|tageslicht|taghell|" + _EN_SUN_UP),
    sun_down=_w(r"(?<!gute )nacht|nachts|nächte|mitternacht|heute nacht|mond|mondlicht|mondschein|sterne?|sternen\w*|"
                + _EN_SUN_DOWN),
    cold=_w(r"kalt|kälter|kälteste\w*|eiskalt|saukalt|arschkalt|frier(?:e|st|t|en)|gefroren|eis|eisig|frost|frostig"
            r"|kälte|" + _EN_COLD),
    warm=_w(r"(?:es ist|so|sehr|zu|echt|voll|ganz schön|ziemlich)\s+(?:sehr\s+|so\s+)?(?:heiß|warm)|(?:heiß|warm)"
            r" hier(?: oben)?|hitze|brütend heiß|affenhitze|" + _EN_WARM),
    unanswered=_w(
        r"keine antwort(?:en)?|(?:niemand|keiner|keine[rs]?) (?:hat )?(?:geantwortet|antwortet)|antwortet (?:niemand|keiner)"
        r"|nichts gehört|nichts (?:zurück|gekommen)|funkstille|kein internet|offline|nichts gefunden"),
)

TABLES = {"en": EN, "de": DE}
GUARDED = tuple(TABLES)  # the languages the truth guard reads


def claim_words(code: str | None) -> ClaimWords:
    """The table of language `code`: English for none and for a language without one."""
    return TABLES.get((code or "").lower(), EN)
