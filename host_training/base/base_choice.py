"""Which base writes the owner's language: `build`'s recommendation and its plain warning.

prepare records the languages the owner writes (report.json "language", language.py); each
pinned base says which it writes (base_models.PinnedBase.languages). Here the two meet:

    owner_language(DIR)       the owner's language profile from prepare's report.json, or None
    recommend(codes)          the smallest pinned base that writes every one of them: SmolLM2 for
                              an English owner, Gemma 3 for the others
    writes(spec, codes)       whether the base --base names writes them: a pinned name, a GGUF
                              whose sha256 is a pin's, or a model whose name says its family;
                              None when that is not known
    language_note(...)        the warning (or None) build prints and the report repeats

A persona on a base that does not write the owner's language learns his letters, not his
words: issue 40's German owner got "ich hab das geklässen" from the English-only SmolLM2.
A tiny model trained from scratch writes whatever its data is in, so it needs no such check.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from .. import language as L

RECOMMENDED = "recommended"  # --base recommended: the base `recommend` names for the data's owner
ANY = "*"  # base_models.ANY_LANGUAGE
# Families of bases that are not pinned, by a word of their name (folder, file or title): what
# their model cards say they write. A base matching none is "not known" and build says so.
FAMILIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("smollm", ("en",)),
    ("tinyllama", ("en",)),
    ("gemma", (ANY,)),  # Gemma 3: over 140 languages
    ("qwen", (ANY,)),  # Qwen2.5: over 29 languages
)


class NoBaseError(ValueError):
    """--base recommended with nothing to recommend; the message says why and what to do."""


class Pin(Protocol):
    """What a pinned base offers here (base_models.PinnedBase)."""

    name: str
    q4_k_m_bytes: int

    def writes(self, language: str) -> bool: ...


def owner_language(folder: Path) -> L.Profile | None:
    """The "language" entry of prepare's report.json in `folder`; None for data prepared before
    it was recorded, or without a report."""
    try:
        report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return L.from_record(report.get("language")) if isinstance(report, dict) else None


def _pins() -> Mapping[str, Pin]:
    from .base_models import PINNED

    return PINNED


def _pin_writes(pin: Pin, codes: Iterable[str]) -> bool | None:
    """Whether a pin writes every one of `codes`; None for a pin that does not say."""
    says = getattr(pin, "writes", None)
    return None if says is None else all(says(c) for c in codes)


def recommend(codes: Sequence[str], pins: Mapping[str, Pin] | None = None) -> str | None:
    """The smallest pinned base that writes every language in `codes`; None when none does."""
    pins = _pins() if pins is None else pins
    fitting = [p for p in pins.values() if _pin_writes(p, codes)]
    return min(fitting, key=lambda p: (getattr(p, "q4_k_m_bytes", 0), p.name)).name if fitting else None


def _family(text: str) -> tuple[str, ...] | None:
    low = text.lower()
    return next((langs for word, langs in FAMILIES if word in low), None)


def writes(spec: str | Path, codes: Iterable[str], pins: Mapping[str, Pin] | None = None,
           sha256: str | None = None) -> bool | None:
    """Whether the base --base `spec` names writes every language in `codes`: by its pin (its
    name, or `sha256`, the GGUF file's, when given), else by its family's name; None: not known."""
    pins = _pins() if pins is None else pins
    codes = list(codes)
    pin = pins.get(str(spec))
    if pin is None and sha256:
        pin = next((p for p in pins.values() if getattr(p, "gguf_sha256", None) == sha256), None)
    if pin is not None and _pin_writes(pin, codes) is not None:
        return _pin_writes(pin, codes)
    langs = _family(Path(str(spec)).name)
    if langs is None:
        return None
    return ANY in langs or all(c in langs for c in codes)


def language_note(profile: L.Profile | None, spec: str | Path | None, writes_it: bool | None,
                  recommended: str | None) -> str | None:
    """The line build prints (and the bundle keeps) about the base and the owner's language, or
    None when there is nothing to say: the base writes it, it is English on an unknown base,
    the build is from scratch, or the data says no language."""
    if profile is None or not profile.languages or spec is None or writes_it:
        return None
    codes = profile.languages
    if writes_it is None and codes == ["en"]:
        return None
    said = " and ".join(f"{L.name(c)} ({c})" for c in codes)
    instead = (f"; --base {recommended} writes {'it' if len(codes) == 1 else 'them'} ({RECOMMENDED} picks it)"
               if recommended and recommended != str(spec) else "")
    if writes_it is None:
        return (f"the owner writes {said}; whether the base {spec} writes "
                f"{'it' if len(codes) == 1 else 'them'} is not known here: read the report's Language section "
                f"after the build{instead}")
    return (f"the base {spec} does not write {said}, which the owner writes: its persona will copy the owner's "
            f"letters and habits, not words of the language{instead}")


def check(data: Path, method: str, spec: Path | str | None, parent_base: str | None = None) -> dict:
    """What build records in persona.toml [training.language] and says before training: the
    languages the owner writes, whether the base writes them (None: not known, or from scratch)
    and the warning when it does not. `spec`: --base; `parent_base`: with --continue, the
    parent's base (its title names the family)."""
    profile = owner_language(data)
    codes = profile.languages if profile is not None else []
    if method == "from-scratch" or not codes:
        return {"owner": codes, "base_writes": None, "note": None}
    target = parent_base if method == "continue" and parent_base else spec
    sha = None
    if target is not None and Path(str(target)).is_file():
        from .base_models import sha256_file

        sha = sha256_file(Path(str(target)))
    said = writes(target, codes, sha256=sha) if target is not None else None
    note = language_note(profile, target, said, recommend(codes))
    return {"owner": codes, "base_writes": said, "note": note}


def recommended_base(data: Path) -> Path:
    """--base recommended: the pinned base `recommend` names for the owner of prepare's `data`,
    said on standard error; NoBaseError when the data says no language or no pin writes it."""
    profile = owner_language(data)
    if profile is None or not profile.languages:
        raise NoBaseError(f"--base {RECOMMENDED}: {data / 'report.json'} says no language of the owner's (prepared "
                         "before languages were recorded, or nothing to tell): run prepare again, or name a base")
    name = recommend(profile.languages)
    said = " and ".join(L.name(c) for c in profile.languages)
    if name is None:
        raise NoBaseError(f"--base {RECOMMENDED}: no pinned base writes {said}; name a base that does "
                         "(a model folder or GGUF file; docs/training.md)")
    import sys

    print(f"the owner writes {said}: building on {name}, the smallest pinned base that writes "
          f"{'it' if len(profile.languages) == 1 else 'them'}", file=sys.stderr, flush=True)
    return Path(name)
