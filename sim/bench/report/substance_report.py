"""What a bench flight's aired musings say beyond the owner's commonest words, and of their moment:
report.json's `musings.substance` (stratoecho/substance.py), read against the owner's own rate,
which the persona's bundle carries (persona.toml [owner]: fillers, words_beyond).

A persona can fly in its owner's voice and say nothing: a German owner's persona aired "ja
digga" and "ich weiß nich" by the dozen, 100 % his by the voice classifier and none of it about
the flight (issue 49). So beside the voice, the flight report measures what listeners read:

    substance_section(musings, bundle)   -> {"aired", "words_beyond", "distinct_share", "distinct_2",
                                             "filler_only_share", "of_this_moment", "fillers",
                                             "owner_words_beyond", "says_little", "why", "note"}
    describe_substance(section)          -> the lines `sim report` prints

A bundle from before [owner] (or one no longer where the flight found it) has no fillers: the
distinct shares and the share of this moment are measured, words beyond the fillers are not, and
no verdict is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from stratoecho import substance as S
from stratoecho.bundle import BundleError, load_bundle
from stratoecho.musing_quality import Musing


def owner_of(bundle: Path | None) -> tuple[list[str], float | None, str]:
    """(fillers, the owner's held-out words beyond them a turn, why they are missing) of the bundle."""
    if bundle is None:
        return [], None, "no persona bundle named in report.json"
    try:
        manifest = load_bundle(bundle, verify=False).manifest
    except BundleError as e:
        return [], None, f"its bundle does not read ({e})"
    if manifest.owner is None or not manifest.owner.fillers:
        return [], None, f"{bundle} has no [owner] fillers (built before issue 49): words beyond them not measured"
    return list(manifest.owner.fillers), manifest.owner.words_beyond, ""


def substance_section(musings: Sequence[Musing], bundle: Path | None) -> dict:
    """The aired `musings`' figures against the fillers of the persona's `bundle`, and the verdict."""
    aired = [m for m in musings if m.aired]
    fillers, owner_rate, note = owner_of(bundle)
    figures = S.measure([m.text for m in aired], fillers, aired)
    owner = S.Substance(0, words_beyond=owner_rate)
    section = {"aired": figures.texts, **{k: v for k, v in figures.to_dict().items() if k != "texts"},
               "fillers": len(fillers), "owner_words_beyond": owner_rate,
               "says_little": S.says_little(figures, owner), "why": S.shortfalls(figures, owner)}
    if note or owner_rate is None:
        section["note"] = note or "the bundle's [owner] has no words_beyond: no verdict"
    return section


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.0f} %"


def describe_substance(s: dict) -> list[str]:
    """The substance lines of `sim report`."""
    if not s.get("aired"):
        return ["  substance  no musing aired"]
    beyond = "–" if s.get("words_beyond") is None else f"{s['words_beyond']:.1f}"
    owner = "" if s.get("owner_words_beyond") is None else f" (the owner's own turns {s['owner_words_beyond']:.1f})"
    lines = [f"  substance  {s['aired']} aired: {beyond} words a musing beyond the owner's {s['fillers']} commonest"
             f"{owner}; only fillers {_pct(s.get('filler_only_share'))}; distinct {_pct(s.get('distinct_share'))}, "
             f"distinct-2 {'–' if s.get('distinct_2') is None else format(s['distinct_2'], '.2f')}; "
             f"of this moment {_pct(s.get('of_this_moment'))}"]
    if s.get("says_little"):
        lines.append(f"             says little beside its owner, whatever its voice: {'; '.join(s.get('why') or [])}")
    if s.get("note"):
        lines.append(f"             {s['note']}")
    return lines
