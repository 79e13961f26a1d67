"""Figures the program writes (issue 49): a true clause in the persona's language that its musing
starts with and the persona continues ("12,4 km hoch und ..."). Pure: facts in, a clause out.

Asked its height or time aloft outright, a 135M persona invented one in most answers (docs/payload.md,
"Not a template"); a model made to write the program's slots instead cut unfaithful output from
83 % to 0 % (TempLM; SymGen). So where a musing owes a figure of the flight, the payload writes the
figure itself, from the readings the truth guard holds it to, as the first words of the persona's
turn, in one of its language's wordings (`stratoecho/languages/<code>.toml` `[clauses]`), and the
persona goes on from there in its own words. The truth guard still reads the whole musing: what the
persona adds may contradict the clause, and that is caught as any false claim is.

    KINDS                         altitude, temperature, time_aloft, phase
    available(facts)              the kinds whose figure is known and worth saying now
    write(kind, facts, wordings, number, n)   the nth wording of `kind` with the figure in it
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from stratoecho.musing_claims import MusingFacts

KINDS = ("altitude", "temperature", "time_aloft", "phase")
ALOFT_PHASES = ("ascent", "float", "descent")
MIN_ALTITUDE_M = 500.0  # "0,2 km hoch" on the pad says nothing a listener cares for
MIN_ALOFT_S = 600.0
HOURS_FROM_S = 90 * 60  # as the prompt says it (prompts._aloft): minutes below 90, hours from there


def available(facts: MusingFacts) -> list[str]:
    """The kinds of clause `facts` can fill truly, in KINDS' order."""
    phase = facts.phase or ""
    out = []
    if phase in ALOFT_PHASES and facts.fix and facts.alt_m is not None and facts.alt_m >= MIN_ALTITUDE_M:
        out.append("altitude")
    if facts.temp_c is not None:
        out.append("temperature")
    if phase in ALOFT_PHASES and facts.aloft_s is not None and facts.aloft_s >= MIN_ALOFT_S:
        out.append("time_aloft")
    if phase:
        out.append("phase")
    return out


def _deg(t: float) -> str:
    return f"{int(round(t))} °C"  # as the prompt says it: never "-0 °C"


def write(kind: str, facts: MusingFacts, wordings: Mapping[str, Sequence[str]],
          number: Callable[[float, int], str], n: int = 0) -> str | None:
    """The `n`th wording (in turn) of a clause of `kind` with its figure from `facts`, numbers
    written by `number(x, digits)` as the language writes them; None when the language has no
    wording for it or `facts` cannot fill it. `wordings`: the language's `[clauses]` (keys
    altitude, temperature, time_aloft, time_aloft_hours and each phase)."""
    if kind == "phase":
        options = wordings.get(facts.phase or "", ())
        return options[n % len(options)] if options else None
    if kind == "time_aloft" and facts.aloft_s is not None and facts.aloft_s >= HOURS_FROM_S:
        key, fill = "time_aloft_hours", {"hours": number(facts.aloft_s / 3600, 1)}
    elif kind == "time_aloft" and facts.aloft_s is not None:
        key, fill = "time_aloft", {"minutes": str(round(facts.aloft_s / 60))}
    elif kind == "altitude" and facts.alt_m is not None:
        key, fill = "altitude", {"km": number(facts.alt_m / 1000, 1), "m": str(int(round(facts.alt_m, -2)))}
    elif kind == "temperature" and facts.temp_c is not None:
        key, fill = "temperature", {"deg": _deg(facts.temp_c)}
    else:
        return None
    options = wordings.get(key, ())
    if not options:
        return None
    return options[n % len(options)].format(**fill)


def join(clause: str, continuation: str) -> str:
    """The clause and what the persona wrote after it, as one text: a space between them unless
    the persona began with one or with punctuation."""
    if not continuation or continuation[:1].isspace() or not continuation[:1].isalnum():
        return clause + continuation
    return f"{clause} {continuation}"


def in_owner_case(clause: str, starts_lower: float | None) -> str:
    """The clause as the owner starts a message: as written (lower case) where she mostly does,
    else with a capital."""
    if starts_lower is None or starts_lower >= 0.5 or not clause[:1].isalpha():
        return clause
    return clause[:1].upper() + clause[1:]
