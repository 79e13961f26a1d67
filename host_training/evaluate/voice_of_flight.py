"""Whose voice a bench flight's musings have, the persona's beside the untuned base's.

    python -m host_training voice-of-flight --data DIR FLIGHT... [--base FLIGHT...] [--json]

FLIGHT is a `sim fly` folder; its payload.log holds one `musing` event for each musing that went
on air, with its text. The classifier of voice.py is trained on DIR/train.jsonl as `eval` trains
it, and every set is scored as `eval` scores a model's replies:

    owner, held-out   the owner's turns in DIR/val.jsonl: the ceiling, and the owner's own rate of
                      real words, which a model's is read against
    others, held-out  the other speakers' turns there: the floor
    each FLIGHT       its musings, in the order they aired; then all persona flights together
    each --base       the same for flights of the untuned base (`base-bundle`), flown with the
                      same seeds and configuration: what the prompt alone, without tuning, gives

For each: the share of texts read as the owner's (95 % Wilson interval), the share of samples of
voice_model.SAMPLE consecutive texts read as hers, and the share of words that are real words of
the owner's language, with a verdict where they fall more than real_words.TOLERANCE below hers.
Beside the voice, the substance (stratoecho/substance.py): words beyond the owner's commonest
words a musing, musings of fillers only, distinct musings and distinct-2, and the share that say
something true of the moment they were made in (grounded in what their prompt told), with the
verdict **says little** where a set falls well below the owner's held-out turns.
The flights are the same code, seed and configuration for both; a musing's words differ only by
the model that wrote them.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from stratoecho.musing_quality import Musing, MusingFacts

from . import voice
from .real_words import LanguageError

LOG = "payload.log"
POOLED = "all"


class FlightError(RuntimeError):
    """A folder that is not a finished bench flight, or data the classifier cannot learn from."""


def aired(flight: Path) -> list[Musing]:
    """The musings that went on air in `flight`, each with the facts its prompt was told."""
    log = Path(flight) / LOG
    if not log.is_file():
        raise FlightError(f"{flight}: no {LOG} here (is it a `sim fly` folder?)")
    texts = []
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        if '"musing"' not in line:
            continue
        try:
            e = json.loads(line)
        except json.JSONDecodeError:
            continue  # a stack dump after a watchdog kill, or a cut line
        if isinstance(e, dict) and e.get("event") == "musing" and isinstance(e.get("text"), str):
            texts.append(Musing(e["text"], MusingFacts.from_dict(e.get("facts"))))
    return texts


def _read_data(data: Path) -> tuple[list, list]:
    from ..train.tokenizer import load_conversations

    for name in ("train.jsonl", "val.jsonl"):
        if not (data / name).is_file():
            raise FlightError(f"{data}: no {name} (the output folder of `prepare`)")
    return load_conversations(data / "train.jsonl"), load_conversations(data / "val.jsonl")


def measure(data: Path, flights: list[Path], bases: list[Path], language: str | None = None,
            seed: int = voice.SEED) -> voice.Authorship:
    """The Authorship of each flight's aired musings (role "flown"), each base flight's ("control"),
    and the pooled persona and base flights where there are several."""
    train, val = _read_data(data)
    generated = [(label, role, [[m.text] for m in musings]) for label, role, musings in _flown(flights, bases)]
    # Role "control", not "base": a flight's musings answer no prompts shared with the base's,
    # so there is no gain prompt by prompt; the two are read side by side.
    a = voice.authorship(train, val, generated, seed=seed, language=language)
    if a.cv is None:
        raise FlightError(f"{data}: {a.note}")
    # Musings are independent texts, not replies grouped by prompt: the Wilson interval, which
    # unlike a bootstrap is not empty at 0 or all of n.
    a.sets = [replace(s, share=voice.Share(s.share.texts, s.share.owner)) for s in a.sets]
    return a


def _flown(flights: list[Path], bases: list[Path]) -> list[tuple[str, str, list[Musing]]]:
    """(label, role, aired musings) of each flight, the persona's ("flown") then the base's
    ("control"), each group pooled where it has several."""
    sets = []
    for role, group in (("flown", flights), ("control", bases)):
        musings = {f: aired(f) for f in group}
        name = "persona" if role == "flown" else "base"
        sets += [(f"{name} {f.name}", role, musings[f]) for f in group]
        if len(group) > 1:
            sets.append((f"{name}, {POOLED} {len(group)} flights", role, [m for f in group for m in musings[f]]))
    return sets


def substance(data: Path, flights: list[Path], bases: list[Path]):
    """What each flight's aired musings say beyond the owner's commonest words, and of their
    moment, beside the owner's held-out turns (report.SubstanceResult)."""
    from stratoecho.substance import fillers

    from ..report import substance_result

    train, val = _read_data(data)
    flown = _flown(flights, bases)
    return substance_result(fillers(voice.training_messages(train)[0]),
                            [m["content"] for c in val for m in c if m["role"] == "assistant"],
                            [(label, role, [m.text for m in musings]) for label, role, musings in flown],
                            musings={label: musings for label, _, musings in flown})


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.0f} %"


def table(a: voice.Authorship) -> list[str]:
    """The figures as a Markdown table, with the classifier's own quality above it."""
    cv = a.cv
    owner = a.owner_real
    lines = [f"classifier: {a.owner_messages} of the owner's training messages against {a.other_messages}, held out "
             f"by conversation ({cv.folds} folds): balanced accuracy {cv.balanced_accuracy:.2f} for samples of "
             f"{cv.sample_size} turns ({cv.samples} samples), {cv.message_balanced_accuracy:.2f} for single messages; "
             f"real words of language {a.language!r}", "",
             f"| texts | n | read as the owner's | 95 % interval | samples of {cv.sample_size} read as hers | "
             f"real words | verdict |", "|---|---:|---:|---|---:|---:|---|"]
    for s in a.sets:
        iv = s.share.interval
        smp = "–" if s.samples is None or not s.samples.texts else f"{s.samples.owner} of {s.samples.texts}"
        real = "–" if s.real is None or s.real.share is None else f"{100 * s.real.share:.1f} % of {s.real.words}"
        verdict = s.verdict(owner) if s.role not in ("ceiling", "floor") else s.role
        lines.append(f"| {s.label} | {s.share.texts} | {_pct(s.share.share)} | "
                     f"{'–' if iv is None else f'{_pct(iv[0])} to {_pct(iv[1])}'} | {smp} | {real} | {verdict or '–'} |")
    return lines


def add_parser(sub) -> None:
    p = sub.add_parser("voice-of-flight", help="whose voice a bench flight's musings have, persona beside base",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("flights", type=Path, nargs="+", metavar="FLIGHT", help="`sim fly` folders of the persona")
    p.add_argument("--data", type=Path, required=True, metavar="DIR",
                   help="output folder of `prepare`: train.jsonl teaches the classifier, val.jsonl is the ceiling")
    p.add_argument("--base", type=Path, nargs="*", default=[], metavar="FLIGHT",
                   help="`sim fly` folders of the untuned base (base-bundle), same seeds and configuration")
    p.add_argument("--language", default=None, metavar="CODE",
                   help="the owner's language for the real-word share (default: the one his training messages read as)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..report import substance_table

    try:
        a = measure(args.data, args.flights, args.base, args.language)
        said = substance(args.data, args.flights, args.base)
    except (FlightError, LanguageError, OSError) as e:
        raise SystemExit(f"voice-of-flight: {e}") from None
    if args.json:
        print(json.dumps({**a.summary(), "substance": said.summary()}, indent=2))
        return 0
    print("\n".join(table(a) + ["", "substance: what the musings say beyond the owner's commonest words, and of "
                                  "their moment (stratoecho/substance.py)", ""]
                    + (substance_table(said) if said.sets else [f"not measured: {said.note}"])
                    + [f"warning: {w.replace('**', '')}" for w in said.warnings()]))
    return 0
