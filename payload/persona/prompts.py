"""What the persona is asked, and how its answer is fitted to the radio (pure functions).

The musing prompt is the bundle's system prompt, untouched (the persona was trained with
it), and one user turn::

    Right now you are <the readings in plain words>.
    You remember:                       (memories: notes from the ground, what other payloads
    - the ground told you (3 h ago): ...   said in their musings, heard by relay, its own musings)
    - FAR1 said (5 min ago): ...
    - you thought (20 min ago): ...
    When you reached out lately:        (outcomes of its requests for information, oldest first)
    - asked the ground for the weather at 52.6N: no answer (the link was silent)
    What are you thinking?              (or another of QUESTIONS, in turn, or of PHASE_QUESTIONS
                                         when it is made again for a figure: `question`)

The readings end with the time since launch ("launched 80 minutes ago"), said as the truth
guard (payload/persona/truth.py) reads a claim of it back. All of it is in the persona's language
(`PromptContext.language`, the bundle's): the words are payload/persona/wording.py's tables.

Everything is fitted to a character budget (`prompt_budget_chars` from the context size),
because llama.cpp refuses a prompt longer than its context and the musing is lost. What is
dropped first: its own musings (least relevant first), then the longer question (the plain one
is asked) and the time since launch, then the ground's notes and what other balloons said, then
the outcomes (oldest first). The system prompt and the readings are never dropped.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from stratoecho.privacy import PLACEHOLDER

from ..parts.sensors import Readings
from .memory import speaker
from .wording import EN, Wording, wording

if TYPE_CHECKING:
    from .memory import MemoryEntry

# A small model also writes placeholders half-formed ("<PHONE_1:", "<EMAIL_").
_PLACEHOLDER_PIECE = re.compile(r"<[A-Z]{2,}(?:_[A-Z0-9]*)*>?")

EARTH_RADIUS_M = 6_371_000.0
MEMORY_CHARS = 160  # one memory in the prompt, at most
NOTE_MIN_CHARS = 40  # a note from the ground or another balloon shortened to fit the context, at least
OUTCOME_CHARS = 120
MAX_MEMORIES = 8  # a small model makes nothing of more; fewer to fit is the budget's job
MAX_OUTCOMES = 4
MAX_LINES = 3  # the owner's own lines: more leave no room on a Zero 2 W's context, and are copied
QUESTION = EN.question  # the musing's question, after the readings (English: wording.py has the others)
QUESTIONS = EN.questions
PHASE_QUESTIONS = EN.phase_questions
CHARS_PER_TOKEN = 2.0  # small-vocabulary personas tokenise English at about this; larger ones do better


def _known(x) -> bool:
    return x is not None and math.isfinite(x)


def _deg(x: float, w: Wording = EN) -> str:
    return f"{w.number(int(round(x)), 0)} °C"  # int(round()): never "-0 °C"


def _words(language: str | Wording | None) -> Wording:
    return language if isinstance(language, Wording) else wording(language)


def sun_elevation_deg(t: datetime, lat: float, lon: float) -> float:
    """The sun's elevation above the astronomical horizon, to about a degree (low-precision
    almanac formulas): enough to tell day from night, not to point anything."""
    if t.tzinfo is None:  # the payload's clocks are UTC; never the Pi's local zone
        t = t.replace(tzinfo=timezone.utc)
    d = t.timestamp() / 86400.0 - 10957.5  # days since J2000.0 (2000-01-01 12:00 UTC)
    g = math.radians(357.529 + 0.98560028 * d)
    ecl_lon = math.radians(280.459 + 0.98564736 * d + 1.915 * math.sin(g) + 0.020 * math.sin(2 * g))
    obliquity = math.radians(23.439 - 0.00000036 * d)
    ra = math.atan2(math.cos(obliquity) * math.sin(ecl_lon), math.cos(ecl_lon))
    dec = math.asin(math.sin(obliquity) * math.sin(ecl_lon))
    gmst_deg = (280.46061837 + 360.98564736629 * d) % 360.0
    hour_angle = math.radians(gmst_deg + lon) - ra
    lat_r = math.radians(lat)
    s = math.sin(lat_r) * math.sin(dec) + math.cos(lat_r) * math.cos(dec) * math.cos(hour_angle)
    return math.degrees(math.asin(max(-1.0, min(1.0, s))))


def sun_is_up(r: Readings) -> bool | None:
    """Whether the payload sees the sun; None when its position is unknown. From altitude the
    horizon dips (about 5.5° at 30 km), so the sun rises there before it does on the ground."""
    if not (_known(r.lat) and _known(r.lon)) or (r.lat == 0.0 and r.lon == 0.0):
        return None  # GPS receivers report 0,0 before their first fix
    alt = max(r.alt_m, 0.0) if _known(r.alt_m) else 0.0
    dip = math.degrees(math.acos(EARTH_RADIUS_M / (EARTH_RADIUS_M + alt)))
    return sun_elevation_deg(r.time, r.lat, r.lon) > -dip


def question(n: int, phase: str | None = None, figure: bool = False, language: str | Wording | None = None) -> str:
    """The `n`th musing's question: in turn aloft, the plain one before launch and after landing;
    with `figure`, the question of its phase (wording's `phase_questions`: asked when a musing is
    made again for a figure of the flight) where it has one."""
    w = _words(language)
    phase = str(getattr(phase, "value", phase) or "")
    if figure and phase in w.phase_questions:
        return w.phase_questions[phase][n % len(w.phase_questions[phase])]
    return w.question if phase in ("pre-launch", "landed") else w.questions[n % len(w.questions)]


def _aloft(aloft_s: float | None, w: Wording = EN) -> str | None:
    """How long since launch, in one unit as people say it (the truth guard reads it back:
    "launched 80 minutes ago"); nothing before launch or when not known."""
    if aloft_s is None or not math.isfinite(aloft_s) or aloft_s < 60:
        return None
    minutes = round(aloft_s / 60)
    return w.text.aloft_minutes.format(n=minutes) if minutes < 90 else w.text.aloft_hours.format(h=w.number(aloft_s / 3600, 1))


def describe(r: Readings, phase: str | None = None, mode: str | None = None, aloft_s: float | None = None,
             language: str | Wording | None = None) -> str:
    """The readings in plain words, the way a person would say them. A value not measured
    (NaN, no battery reading) is left out rather than said wrong.

    What the words say is what a small model muses about, so they say only what a person aloft
    would notice. The box's temperature and the GPS's satellites are left out: SmolLM2-135M made
    "a satellite in the box" of them in most musings, and without them its musings kept to the
    flight (docs/payload.md, "What the persona is told"). A lost fix is still said as such.

    `phase` (the daemon's detector) overrides `r.phase`; `mode` is a payload.policy.modes.Mode value;
    `aloft_s` the time since launch (None: not said); `language` the persona's (wording.py)."""
    w = _words(language)
    phase = str(getattr(phase, "value", phase) or r.phase)
    mode = str(getattr(mode, "value", mode) or "")
    parts = [w.text.phases.get(phase, "")]
    alt = w.text.up.format(km=w.number(r.alt_m / 1000, 1)) if _known(r.alt_m) else None
    if r.fix_valid and alt:
        parts.append(alt)
    elif not r.fix_valid:
        parts.append(w.text.no_fix_last.format(alt=alt) if alt else w.text.no_fix)
    if _known(r.temp_c):
        parts.append(w.text.outside.format(deg=_deg(r.temp_c, w)))
    if _known(r.pressure_hpa):
        parts.append(w.pressure.format(hpa=w.number(r.pressure_hpa, 0)))
    if r.batt_mv and _known(r.batt_mv):
        parts.append(w.text.battery.format(volts=w.number(r.batt_mv / 1000, 2)))
    parts.append(w.text.modes.get(mode, ""))
    sun = sun_is_up(r)
    if sun is not None:
        parts.append(w.text.sunlight if sun else w.text.night)
    parts.append(_aloft(aloft_s, w) or "")
    # A language without a file has no words for the phase, the mode or the sun: left out, not said in another.
    return ", ".join(p for p in parts if p) or w.text.nowhere


def memory_query(r: Readings, phase: str | None = None, mode: str | None = None,
                 language: str | Wording | None = None) -> str:
    """Words for `Memory.recall` from the situation: what past musings about the same moment
    would have said (the index stems them: "freezing" finds "freeze"), in the persona's language."""
    phase = str(getattr(phase, "value", phase) or r.phase)
    mode = str(getattr(mode, "value", mode) or "")
    words = {
        "pre-launch": ["launch", "waiting", "ground"],
        "ascent": ["rising", "climbing", "up"],
        "float": ["float", "floating", "drifting"],
        "descent": ["falling", "parachute", "down"],
        "landed": ["landed", "ground", "home"],
    }.get(phase, [])
    if _known(r.alt_m) and phase not in ("pre-launch", "landed"):
        km = r.alt_m / 1000
        words += (["low", "fields"] if km < 1.5 else ["clouds", "sky"] if km < 12
                  else ["stratosphere", "dark", "sky"] if km < 30 else ["stratosphere", "space", "edge"])
    if _known(r.temp_c):
        if r.temp_c < 0:
            words += ["cold", "freezing"] if r.temp_c < -40 else ["cold"]
        elif r.temp_c > 25:
            words.append("warm")
    if _known(r.box_temp_c) and r.box_temp_c < 0:
        words += ["battery", "cold"]
    if mode in EN.text.modes:
        words += ["power", "battery", "tired"]
    if not r.fix_valid:
        words += ["lost", "gps"]
    sun = sun_is_up(r)
    if sun is not None:
        words += ["sun", "light"] if sun else ["night", "dark", "stars"]
    recall = _words(language).text.recall
    return " ".join(dict.fromkeys(recall.get(w, w) for w in words))  # in order, each once


# ------------------------------------------------------------------ the musing prompt


@dataclass(frozen=True)
class PromptContext:
    """What the persona is told beyond the readings.

    memories: `payload.persona.memory.MemoryEntry` (anything with kind, text, created), most relevant
    first, as `Memory.for_prompt` gives them. outcomes: short lines about its requests for
    information, oldest first ("asked the ground for the weather at 52.6N: no answer")."""

    phase: str | None = None  # the daemon's detector; overrides Readings.phase
    mode: str | None = None  # payload.policy.modes.Mode value
    memories: Sequence[MemoryEntry] = ()
    outcomes: Sequence[str] = ()
    aloft_s: float | None = None  # since launch: said as "launched 80 minutes ago"
    question: str | None = None  # None: its language's plain question (wording.py)
    language: str = ""  # ISO 639-1 of the persona (the bundle's): the prompt's words (wording.py)
    lines: Sequence[str] = ()  # the owner's own lines nearest to the moment (stratoecho/exemplars.py), most telling first


@dataclass(frozen=True)
class Prompt:
    messages: list[dict[str, str]]
    chars: int  # of all message contents together
    memories: int  # kept
    outcomes: int
    dropped_memories: int = 0  # left out for the cap or the budget
    dropped_outcomes: int = 0
    over_budget: bool = False  # system prompt and readings alone exceed the budget (sent anyway)
    kept: list = field(default_factory=list, repr=False)  # the MemoryEntry objects kept
    question: str = QUESTION  # asked: the context's, or QUESTION where the budget had no room for it
    said_aloft: bool = False  # the time since launch is in it
    lines: list[str] = field(default_factory=list)  # the owner's lines kept, in the context's order


def prompt_budget_chars(n_ctx: int, max_tokens: int, chars_per_token: float = CHARS_PER_TOKEN,
                        template_tokens: int = 24) -> int:
    """Characters of message content that fit a context of `n_ctx` tokens, leaving room for
    `max_tokens` of answer and the chat template's own tokens."""
    return max(0, int((n_ctx - max_tokens - template_tokens) * chars_per_token))


DEFAULT_PROMPT_CHARS = prompt_budget_chars(256, 48)  # the default configuration's context and answer


def _age(now: datetime, then: datetime | None, w: Wording = EN) -> str:
    try:
        s = (now - then).total_seconds()
    except (TypeError, AttributeError):  # naive against aware, or no time: say nothing
        return ""
    if s < 0:
        return ""
    if s < 90:
        return w.text.just_now
    if s < 90 * 60:
        return w.text.minutes_ago.format(n=round(s / 60))
    if s < 36 * 3600:
        return w.text.hours_ago.format(n=round(s / 3600))
    return w.text.days_ago.format(n=round(s / 86400))


def _memory_line(m, now: datetime, w: Wording = EN, chars: int = MEMORY_CHARS) -> str:
    if getattr(m, "source", "") == "owner":  # memory.OWNER: what it knew before the flight, ageless
        return w.text.you_know.format(text=fit_musing(m.text, chars))
    heard = speaker(getattr(m, "source", ""))
    who = w.text.said.format(who=heard) if heard else w.text.ground_told if m.kind == "note" else w.text.thought
    head = f"{who}{_age(now, getattr(m, 'created', None), w)}".strip()  # a language without words: its age alone
    return f"- {head}: {fit_musing(m.text, chars)}" if head else f"- {fit_musing(m.text, chars)}"


def _user_turn(situation: str, memory_lines: list[str], outcome_lines: list[str], ask: str = QUESTION,
               w: Wording = EN, owner_lines: Sequence[str] = ()) -> str:
    if not memory_lines and not outcome_lines and not owner_lines:
        return f"{w.text.situation.format(situation=situation)} {ask}".rstrip()  # as before memory existed
    lines = [w.text.situation.format(situation=situation)]
    if owner_lines:
        lines += [w.text.you_wrote, *(f'- "{x}"' for x in owner_lines)]
    if memory_lines:
        lines += [w.text.remember, *memory_lines]
    if outcome_lines:
        lines += [w.text.reached_out, *outcome_lines]
    lines.append(ask)
    return "\n".join(line for line in lines if line)  # a language without a file has no headings nor question


def build_prompt(system_prompt: str, r: Readings, context: PromptContext | None = None,
                 max_prompt_chars: int = DEFAULT_PROMPT_CHARS) -> Prompt:
    """The musing messages within `max_prompt_chars` of content, and what had to be left out."""
    ctx = context or PromptContext()
    w = wording(ctx.language)
    asked = w.question if ctx.question is None else ctx.question
    memories = [m for m in ctx.memories if m.text and m.text.strip()][:MAX_MEMORIES]
    outcomes = [o for o in ctx.outcomes if o and o.strip()][-MAX_OUTCOMES:]
    capped_m = len(ctx.memories) - len(memories)
    capped_o = len(ctx.outcomes) - len(outcomes)
    mem_lines = [_memory_line(m, r.time, w) for m in memories]
    out_lines = ["- " + fit_musing(o, OUTCOME_CHARS) for o in outcomes]

    owner = [fit_musing(x, MEMORY_CHARS) for x in ctx.lines if x and x.strip()][:MAX_LINES]

    # Drop order: musings from the least relevant, then the owner's lines but her most telling one,
    # then the question's and the launch's words (the plain question, no time since launch), then
    # her last line, then notes likewise, then outcomes oldest first. A note from the ground or
    # another balloon's words are news; a longer question is not; her own words are what make the
    # musing hers and say something (issue 49).
    order = ([("m", i) for i in reversed(range(len(memories))) if memories[i].kind != "note"]
             + [("l", i) for i in reversed(range(1, len(owner)))]
             + [("q", 0), ("a", 0)] + [("l", 0)] * bool(owner)
             + [("m", i) for i in reversed(range(len(memories))) if memories[i].kind == "note"]
             + [("o", i) for i in range(len(outcomes))])
    keep = {"m": set(range(len(memories))), "o": set(range(len(outcomes))), "l": set(range(len(owner)))}
    plain = set()  # "q": asked QUESTION; "a": the time since launch left out

    def render() -> str:
        situation = describe(r, ctx.phase, ctx.mode, None if "a" in plain else ctx.aloft_s, w)
        return _user_turn(situation, [mem_lines[i] for i in sorted(keep["m"])],
                          [out_lines[i] for i in sorted(keep["o"])], w.question if "q" in plain else asked, w,
                          [owner[i] for i in sorted(keep["l"])])

    user = render()
    for what, i in order:
        over = len(system_prompt) + len(user) - max_prompt_chars
        if over <= 0:
            break
        if what in ("q", "a"):
            plain.add(what)
        elif what == "m" and memories[i].kind == "note" and min(len(memories[i].text), MEMORY_CHARS) - over >= NOTE_MIN_CHARS:
            # News is shortened before it is dropped: its start still says who said what.
            whole = mem_lines[i]
            mem_lines[i] = _memory_line(memories[i], r.time, w, min(len(memories[i].text), MEMORY_CHARS) - over)
            if len(system_prompt) + len(render()) > max_prompt_chars:
                mem_lines[i] = whole
                keep[what].discard(i)
        else:
            keep[what].discard(i)
        user = render()
    keep_m, keep_o = keep["m"], keep["o"]
    chars = len(system_prompt) + len(user)
    return Prompt(
        messages=[{"role": "system", "content": system_prompt}, {"role": "user", "content": user}],
        chars=chars, memories=len(keep_m), outcomes=len(keep_o),
        dropped_memories=capped_m + len(memories) - len(keep_m),
        dropped_outcomes=capped_o + len(outcomes) - len(keep_o),
        over_budget=chars > max_prompt_chars, kept=[memories[i] for i in sorted(keep_m)],
        question=w.question if "q" in plain else asked, said_aloft="a" not in plain and _aloft(ctx.aloft_s) is not None,
        lines=[owner[i] for i in sorted(keep["l"])],
    )


def musing_messages(system_prompt: str, r: Readings, context: PromptContext | None = None,
                    max_prompt_chars: int = DEFAULT_PROMPT_CHARS) -> list[dict[str, str]]:
    return build_prompt(system_prompt, r, context, max_prompt_chars).messages


_SPACE = re.compile(r"\s+")
_SENTENCE_END = re.compile(r"[.!?…](?=\s|$)")


def finish_unfinished(text: str, finish_reason: str) -> str:
    """What a model cut off at its token limit ("length") says, ended where it ends: after its last
    whole sentence when that keeps at least a third of the text, else after its last whole word,
    with an ellipsis. A musing that stops in the middle of a word reads as broken on the air
    (the bench counted 6 of 36 so with SmolLM2-135M at 48 tokens). Finished text is left alone."""
    text = text.rstrip()
    if finish_reason != "length" or not text:
        return text
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    if ends and ends[-1] == len(text):
        return text  # it happened to stop at a sentence end
    if ends and ends[-1] >= len(text) // 3:
        return text[: ends[-1]]
    head = text.rsplit(None, 1)[0] if len(text.split()) > 1 else text
    return head.rstrip(",;:-") + "…"


def cut_prompt_echo(text: str, speakers: Sequence[str] = (), language: str | Wording | None = None) -> str:
    """`text` up to where it starts writing the prompt's memory list again ("- FAR1 said (5 min
    ago): ...", "the ground told you: ..."): a small model continues the list and invents what
    another balloon or the ground said, and on air that is a quote nobody made (the two-balloons
    rehearsal's SmolLM2-135M did it once in 19 musings). `speakers`: the other balloons its
    prompt quoted; `language` the prompt's (its lines are in its words, and in English's)."""
    lines = {(w.text.ground_told, w.text.thought, w.text.said) for w in (EN, _words(language))}
    own = "|".join(re.escape(x) for told, thought, _ in lines for x in (told, thought) if x)
    forms = [rf"(?:{own})\s*\("]  # the prompt's own lines, "(3 h ago):"
    if quoted := "|".join(re.escape(s) for s in speakers if s):
        said = "|".join(f"{re.escape(before)}(?:{quoted}){re.escape(after)}"
                        for _, _, form in lines for before, after in [form.split("{who}")])
        forms.append(rf"(?:{said})\s*[(:]")  # and a quote made up in their form
    echo = re.search(r"(?:^|\s)(?:-\s*)?(?:" + "|".join(forms) + ")", text, re.IGNORECASE)
    return text[:echo.start()].rstrip(" -,;:\u2013\u2014") if echo else text


_LIST_MARK = re.compile(r"^\s*[-–—•*]\s+")
_QUOTES = "\"“”„«»"


def unquote(text: str) -> str:
    """`text` without the list mark and the quotation marks around it that a persona copies from
    its prompt's quoted lines ('- "the cold bites"'): on air they read as someone else's words.
    Quotes inside the text, in pairs, are its own."""
    text = _LIST_MARK.sub("", text).strip()
    inner = text[1:-1] if len(text) > 1 else ""
    if text[:1] in _QUOTES and text[-1:] in _QUOTES and not any(q in inner for q in _QUOTES):
        return inner.strip()
    if sum(text.count(q) for q in _QUOTES) % 2:  # one left alone: the end or the start of a copied quote
        if text[-1:] in _QUOTES:
            return text[:-1].rstrip()
        if text[:1] in _QUOTES:
            return text[1:].lstrip()
    return text


def fit_musing(text: str, max_chars: int) -> str:
    """One line of at most `max_chars`, cut at a sentence end (else a word) when too long.

    Privacy placeholders the model learned from its scrubbed training text (``<PHONE_2>``)
    carry nothing and mean nothing to a listener: they are taken out.
    """
    text = _SPACE.sub(" ", _PLACEHOLDER_PIECE.sub("", PLACEHOLDER.sub("", text))).strip()
    if len(text) <= max_chars:
        return text
    head = text[:max_chars]
    ends = [m.end() for m in _SENTENCE_END.finditer(head)]
    if ends and ends[-1] >= max_chars // 3:
        return head[: ends[-1]].strip()
    head = head[: max_chars - 1]  # room for the ellipsis
    cut = head.rsplit(" ", 1)[0] if " " in head else head
    return cut.rstrip(",;:-") + "…"
