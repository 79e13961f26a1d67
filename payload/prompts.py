"""What the persona is asked, and how its answer is fitted to the radio (pure functions)."""

from __future__ import annotations

import re

from stratoecho.privacy import PLACEHOLDER

# A small model also writes placeholders half-formed ("<PHONE_1:", "<EMAIL_").
_PLACEHOLDER_PIECE = re.compile(r"<[A-Z]{2,}(?:_[A-Z0-9]*)*>?")
from .sensors import Readings

_PHASE_WORDS = {
    "pre-launch": "still on the ground, waiting for launch",
    "ascent": "rising",
    "descent": "falling under the parachute",
    "landed": "back on the ground",
}


def describe(r: Readings) -> str:
    """The readings in plain words, the way a person would say them."""
    return (
        f"{_PHASE_WORDS.get(r.phase, r.phase)}, {r.alt_m / 1000:.1f} km up, "
        f"{r.temp_c:.0f} °C outside, {r.pressure_hpa:.0f} hPa, "
        f"battery {r.batt_mv / 1000:.2f} V, {r.sats} satellites in view"
    )


def musing_messages(system_prompt: str, r: Readings) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": system_prompt},
        {"role": "user", "content": f"Right now you are {describe(r)}. What are you thinking?"},
    ]


_SPACE = re.compile(r"\s+")
_SENTENCE_END = re.compile(r"[.!?…](?=\s|$)")


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
