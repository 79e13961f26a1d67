"""The owner's own lines, indexed by the situations a balloon meets, and the few nearest to a
moment of the flight (issue 49). Pure: text and facts in, lines out; the file's reading and
writing is the only I/O, at the edge.

A persona fine-tuned on a few hundred chats learns how its owner writes, not what she would say
aloft; retrieval of the person's own words carries the substance (IMPersona; the Individual
Turing Test). So `build` indexes the owner's messages of `train.jsonl` (never `val.jsonl`: those
are what the persona is measured against) by the words of each situation in her language
(`stratoecho/languages/<code>.toml` `[situations]`), the bundle carries them (`persona.toml
[owner] lines`), and at each musing the payload puts one to three lines nearest to the moment into
the prompt, within its context (payload/persona/prompts.py).

    SITUATIONS                      cold, wind, sun, night, height, falling, waiting, tired, view, no_signal
    SituationWords.of(words)        a language's words per situation; `of_text`: a line's situations
    moment(facts)                   the situations of a moment of the flight, most telling first
    index(texts, words)             the owner's lines worth offering, each with its situations
    nearest(lines, situations, k)   up to k lines for a moment: one per situation, most telling first
    copies(text, line)              whether a musing copies a line it was shown (it must not air so)
    OwnerLines.dumps / loads        the bundle's `lines.json`
"""

from __future__ import annotations

import json
import random
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from .musing_claims import MusingFacts
from .privacy import PLACEHOLDER

SITUATIONS = ("cold", "wind", "sun", "night", "height", "falling", "waiting", "tired", "view", "no_signal")
FORMAT = 1
MIN_WORDS = 4  # "so kalt" says nothing a moment needs; a line of four words can
MAX_CHARS = 140  # one message, not a ramble: the prompt of a Zero 2 W has room for two or three
PER_SITUATION = 40  # lines kept for each situation (the most worded first): variety without a big file
GENERAL = 40  # lines about none of them, offered where a moment matches nothing
WIND_KMH = 40.0  # over the ground: the balloon drifts with the wind, so its speed is the wind's
HIGH_M = 8_000.0  # above the weather: "height" is what the moment is about
VIEW_M = 15_000.0
LOW_ENERGY = 0.3  # share of the energy budget left below which the balloon is "tired"
COPY_SHARE = 0.6  # of a shown line's word pairs: a musing that repeats this many airs her chat, not a musing
_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*")
_URL = re.compile(r"\S+://\S+|www\.\S+|\S+@\S+")


class LinesError(ValueError):
    """A lines file that is not one: names the file and what was expected."""


@dataclass(frozen=True)
class OwnerLine:
    text: str
    situations: tuple[str, ...] = ()  # empty: a general line


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def _words(text: str) -> list[str]:
    return _WORD.findall(_fold(text))


def _matcher(terms: Sequence[str]) -> re.Pattern | None:
    """One pattern for a situation's words: whole words, or prefixes where they end in `*`;
    several words ("no signal") match with any run of spaces between them."""
    parts = []
    for t in terms:
        t = _fold(t).strip()
        if not t:
            continue
        prefix = t.endswith("*")
        body = r"\s+".join(re.escape(w) for w in t.rstrip("*").split())
        parts.append(rf"(?<!\w){body}" + (r"\w*" if prefix else r"(?!\w)"))
    return re.compile("|".join(parts)) if parts else None


@dataclass(frozen=True)
class SituationWords:
    """A language's `[situations]`: each situation's words, compiled once."""

    patterns: dict[str, re.Pattern] = field(default_factory=dict)

    @classmethod
    def of(cls, words: Mapping[str, Sequence[str]]) -> SituationWords:
        unknown = sorted(set(words) - set(SITUATIONS))
        if unknown:
            raise ValueError(f"unknown situation(s) {', '.join(unknown)}: expected some of {', '.join(SITUATIONS)}")
        compiled = {s: p for s in SITUATIONS if (p := _matcher(words.get(s, ()))) is not None}
        return cls(compiled)

    def of_text(self, text: str) -> tuple[str, ...]:
        folded = _fold(text)
        return tuple(s for s, p in self.patterns.items() if p.search(folded))


def moment(facts: MusingFacts) -> tuple[str, ...]:
    """The situations of the moment `facts` describe, the most telling first: what the flight is
    doing, then the cold, the light, the wind, the energy, the silence, the view."""
    out: list[str] = []
    phase = facts.phase or ""
    if phase in ("pre-launch", "landed"):
        out.append("waiting")
    elif phase == "descent":
        out.append("falling")
    elif facts.alt_m is not None and facts.alt_m >= HIGH_M:
        out.append("height")
    if facts.temp_c is not None and facts.temp_c < 0:
        out.append("cold")
    if facts.sun_up is not None:
        out.append("sun" if facts.sun_up else "night")
    if facts.speed_kmh is not None and facts.speed_kmh >= WIND_KMH:
        out.append("wind")
    low_energy = facts.battery_share is not None and facts.battery_share < LOW_ENERGY
    if low_energy or (facts.mode or "nominal") != "nominal":
        out.append("tired")
    if not facts.fix or any(r.failed for r in facts.requests):
        out.append("no_signal")
    if phase == "float" or (facts.alt_m is not None and facts.alt_m >= VIEW_M and facts.sun_up):
        out.append("view")
    return tuple(dict.fromkeys(out))


def worth_offering(text: str) -> bool:
    """A message that can stand in a prompt: a few words, one message long, nothing scrubbed out
    (a line with <PHONE_1> in it would teach the persona to say placeholders), no address, and no
    figure (a small model copies "they burst around 30 km" into a musing at 12 km: a false claim
    the truth guard must then catch)."""
    return (len(_words(text)) >= MIN_WORDS and len(text) <= MAX_CHARS and not any(c.isdigit() for c in text)
            and not PLACEHOLDER.search(text) and not _URL.search(text))


def index(texts: Iterable[str], words: SituationWords | Mapping[str, Sequence[str]],
          per_situation: int = PER_SITUATION, general: int = GENERAL) -> list[OwnerLine]:
    """The owner's lines worth offering, each message of a burst on its own (prepare joins a burst
    with newlines), each once, with the situations it is about: up to `per_situation` for each
    situation and `general` about none, the most worded first (ties in the order written)."""
    w = words if isinstance(words, SituationWords) else SituationWords.of(words)
    seen: set[str] = set()
    lines: list[OwnerLine] = []
    for text in texts:
        for line in text.split("\n"):
            line = " ".join(line.split())
            key = _fold(line)
            if key in seen or not worth_offering(line):
                continue
            seen.add(key)
            lines.append(OwnerLine(line, w.of_text(line)))
    ranked = sorted(lines, key=lambda x: -len(set(_words(x.text))))  # stable: ties keep the order written
    kept: list[OwnerLine] = []
    room = {s: per_situation for s in SITUATIONS}
    room_general = general
    for line in ranked:
        if line.situations:
            if any(room[s] > 0 for s in line.situations):
                kept.append(line)
                for s in line.situations:
                    room[s] -= 1
        elif room_general > 0:
            kept.append(line)
            room_general -= 1
    order = {id(x): i for i, x in enumerate(lines)}
    return sorted(kept, key=lambda x: order[id(x)])


def nearest(lines: Sequence[OwnerLine], situations: Sequence[str], k: int, seed: int | None = 0,
            avoid: Iterable[str] = ()) -> list[OwnerLine]:
    """Up to `k` lines for a moment of `situations` (most telling first): one line about each
    situation in turn, drawn with `seed` among those not in `avoid` (lines offered lately), then
    general lines where the situations ran out. The same seed, lines and moment give the same
    (None: a seed of the system's, as in flight)."""
    if k <= 0 or not lines:
        return []
    rng = random.Random(seed)
    recent = set(avoid)
    fresh = [x for x in lines if x.text not in recent] or list(lines)
    chosen: list[OwnerLine] = []
    for s in situations:
        pool = [x for x in fresh if s in x.situations and x not in chosen]
        if pool:
            chosen.append(rng.choice(pool))
        if len(chosen) == k:
            return chosen
    pool = [x for x in fresh if not x.situations and x not in chosen]
    rng.shuffle(pool)
    return chosen + pool[:k - len(chosen)]


def _pairs(text: str) -> set[tuple[str, str]]:
    ws = _words(text)
    return set(zip(ws, ws[1:]))


def copies(text: str, line: str) -> bool:
    """Whether `text` repeats `line` (COPY_SHARE of its word pairs or more): the owner's chat
    aired again is neither a musing nor hers to air."""
    shown = _pairs(line)
    return bool(shown) and len(shown & _pairs(text)) >= COPY_SHARE * len(shown)


# ----------------------------------------------------------------------------- the file


@dataclass(frozen=True)
class OwnerLines:
    language: str
    lines: tuple[OwnerLine, ...]

    def dumps(self) -> str:
        return json.dumps({"format": FORMAT, "language": self.language,
                           "lines": [{"text": x.text, "situations": list(x.situations)} for x in self.lines]},
                          ensure_ascii=False, indent=0) + "\n"

    @classmethod
    def loads(cls, text: str, source: str = "lines.json") -> OwnerLines:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise LinesError(f"{source}: not JSON (line {e.lineno}, column {e.colno}): {e.msg}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise LinesError(f"{source}: expected an object with \"format\": {FORMAT} (the owner's lines), "
                             f"got {str(data.get('format') if isinstance(data, dict) else type(data).__name__)!r}")
        out = []
        for i, item in enumerate(data.get("lines") or []):
            if (not isinstance(item, dict) or not isinstance(item.get("text"), str)
                    or not isinstance(item.get("situations", []), list)):
                raise LinesError(f"{source}: lines[{i}]: expected {{\"text\": str, \"situations\": [str, ...]}}")
            bad = [s for s in item.get("situations", []) if s not in SITUATIONS]
            if bad:
                raise LinesError(f"{source}: lines[{i}]: unknown situation {bad[0]!r} (expected one of "
                                 f"{', '.join(SITUATIONS)})")
            out.append(OwnerLine(item["text"], tuple(item.get("situations", []))))
        return cls(str(data.get("language") or ""), tuple(out))
