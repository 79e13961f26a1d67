"""The musing prompt's words, in the language its owner writes (payload/persona/prompts.py builds
the prompt from them). A persona is asked in the bundle's `persona.language`, so the question, the
readings and its memories are in the words it was trained on, and it answers in them; the truth
guard reads its claims in the same language (stratoecho/claim_words.py).

    Wording                   one language's words
    wording(code) -> Wording  from stratoecho/languages/<code>.toml; for a language without a
                              file, its figures alone with CLDR's unit names; English for none
    unguarded(code) -> str | None  what a user must be told of a language without a file (the
                              payload logs it and prints it at start); None for one with a file

Numbers are written as the language writes them, with CLDR's decimal mark and minus sign ("12,4
km hoch", "−41 °C"): a persona copies the prompt's figures, and the guard reads them back with the
same marks. A language without a file is asked in its figures and nothing else: "21,4 km, −55 °C,
46 hPa, 3,81 V, 89 minuter." — no English word it would answer in, no German one either.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from stratoecho.languages import Language, Prompt, base_code, cldr, language, words


@dataclass(frozen=True)
class Wording:
    code: str
    text: Prompt  # the prompt's words: the language file's [prompt], or a figures-only one
    decimal: str
    question: str  # the plain question, asked where the budget has no room for another
    questions: tuple[str, ...]  # asked in turn aloft
    phase_questions: dict[str, tuple[str, ...]]  # asked when a figure of the flight is owed
    pressure: str = "{hpa} hPa"
    minus: str = "-"
    words: bool = True  # False: a language without a file, asked in its figures alone

    def number(self, x: float, digits: int) -> str:
        text = f"{abs(x):.{digits}f}".replace(".", self.decimal)
        return self.minus + text if x < 0 and text.strip("0" + self.decimal) else text


def _from_file(lang: Language) -> Wording:
    q, s = lang.questions, cldr.symbols(lang.code)
    return Wording(code=lang.code, text=lang.prompt, decimal=s.decimal, minus=s.minus, question=q.plain,
                   questions=q.aloft, phase_questions=dict(q.phase))


def _unit(code: str, unit: str, width: str, n: float, mark: str, fallback: str) -> str:
    """CLDR's pattern of `unit` for a count like `n`, its number written as `mark`."""
    pattern = cldr.unit_template(code, unit, width, n)
    return pattern.format(mark) if pattern else fallback


def _figures_only(code: str) -> Wording:
    """A language without a file: the readings as figures with CLDR's names of their units in
    that locale, and no words of any language; the system prompt (in the owner's language, from
    the bundle) says who it is. Counts like 5 and 1.5 pick the plural most figures take."""
    s = cldr.symbols(code)
    ago = {n: " (" + _unit(code, u, "short", 5, "{n}", f"{{n}} {a}") + ")"
           for n, u, a in (("m", "duration-minute", "min"), ("h", "duration-hour", "h"), ("d", "duration-day", "d"))}
    # Built, not validated: a figures-only prompt has no words, where a language file must have them all.
    text = Prompt.model_construct(
        phases={}, modes={}, recall={}, up=_unit(code, "length-kilometer", "short", 5, "{km}", "{km} km"), no_fix="",
        no_fix_last="{alt}", outside="{deg}", battery=_unit(code, "electric-volt", "short", 5, "{volts}", "{volts} V"),
        sunlight="", night="", aloft_minutes=_unit(code, "duration-minute", "long", 5, "{n}", "{n} min"),
        aloft_hours=_unit(code, "duration-hour", "long", 1.5, "{h}", "{h} h"), nowhere="", situation="{situation}.",
        remember="", you_wrote="", reached_out="", you_know="- {text}", said="{who}", ground_told="", thought="",
        just_now="", minutes_ago=ago["m"], hours_ago=ago["h"], days_ago=ago["d"])
    return Wording(code=code, text=text, decimal=s.decimal, minus=s.minus, words=False,
                   pressure=_unit(code, "pressure-hectopascal", "short", 5, "{hpa}", "{hpa} hPa"),
                   question="", questions=("",), phase_questions={})


@functools.cache
def wording(code: str | None) -> Wording:
    """The words of language `code`: its file's; its figures alone (CLDR) for a language without
    one that CLDR knows; English for none and for a code CLDR does not know."""
    own = words(code)
    return _from_file(own) if own is not None else _figures_only(base_code(code))


EN = wording("en")
DE = wording("de")


def unguarded(code: str | None) -> str | None:
    """Plain words for a persona whose language has no file of words, or None: the payload logs them
    (`persona_language_unguarded`) and prints them on the terminal when it starts."""
    if not code or language(code) is not None:
        return None
    base = base_code(code)
    if not cldr.known(base):
        return (f"the persona's language {code!r} has no file of words (stratoecho/languages/) and CLDR does not "
                "know it: its musings are asked and their claims read in English")
    return (f"the persona writes {cldr.name(base)} ({base}), which has no file of words (stratoecho/languages/"
            f"{base}.toml): it is asked in its figures alone, and the truth guard reads only its numbers and units "
            "(from CLDR), not its words of the phase, sun, cold or time aloft (docs/payload.md, \"In the owner's language\")")
