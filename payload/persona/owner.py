"""What the bundle carries of its owner's own writing, read once at start (persona.toml `[owner]`,
issue 49): her lines by situation (stratoecho/exemplars.py), her commonest words and how much a
turn of hers says beyond them (stratoecho/substance.py), and her voice classifier
(stratoecho/voice_score.py). A bundle built before `[owner]` existed has none of them, and its
musings are chosen as before: first come, first aired.

A file that is named but will not read is a BundleError at start, as a bad blocklist is: the
payload must not fly a persona whose choices it cannot make as its build measured them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from stratoecho.bundle import Bundle, BundleError
from stratoecho.exemplars import LinesError, OwnerLine, OwnerLines


@dataclass(frozen=True)
class Owner:
    lines: tuple[OwnerLine, ...] = ()
    fillers: frozenset[str] = frozenset()
    words_beyond: float | None = None  # the owner's own held-out rate per turn
    voice: Callable[[str], float] | None = field(default=None, repr=False)  # P(the owner's) of a text


def _listed(bundle: Bundle, name: str, key: str):
    if name not in {e.path for e in bundle.manifest.files}:
        raise BundleError(f"{bundle.root / 'persona.toml'}: owner.{key} {name} is not in [[files]]")
    return bundle.root / name


def load_owner(bundle: Bundle) -> Owner:
    """The owner's parts of `bundle`; an empty Owner for a bundle without `[owner]`."""
    o = bundle.manifest.owner
    if o is None:
        return Owner()
    lines: tuple[OwnerLine, ...] = ()
    if o.lines:
        path = _listed(bundle, o.lines, "lines")
        try:
            lines = OwnerLines.loads(path.read_text(encoding="utf-8"), str(path)).lines
        except (OSError, UnicodeDecodeError, LinesError) as e:
            raise BundleError(f"{path}: {e}") from e
    voice = None
    if o.voice:
        _listed(bundle, o.voice, "voice")
        loaded = bundle.voice()
        if loaded is not None:
            voice = loaded.probability
    return Owner(lines=lines, fillers=frozenset(o.fillers), words_beyond=o.words_beyond, voice=voice)
