"""What keeps a persona's substance, measured (issue 49, item 2): a bundle's replies to its owner's
held-out messages under several samplings, beside the owner's own held-out turns, by the report's
own measures (stratoecho/substance.py, the voice classifier, real words).

    python -m sim.bench.measure.recipe BUNDLE --data DIR [--sampling NAME=k=v,k=v ...] [--rounds 3] [--json FILE]

Each sampling is the bundle's [sampling] with the keys given changed (temperature, top_p, top_k,
repeat_penalty, frequency_penalty, presence_penalty, typical_p, min_p, min_tokens); the replies are
made as the build's report makes them (host_training/evaluate/generation.py: the same prompts,
seeds and 48 tokens), one model in memory. docs/training.md, "A recipe that keeps substance",
holds what this printed for the sample owners.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

DEFAULT_SAMPLINGS = (
    "bundle=",
    "min_tokens 8=min_tokens=8",
    "temperature 0.7=temperature=0.7",
    "temperature 0.7, min_tokens 8=temperature=0.7,min_tokens=8",
    "min_tokens 8, presence 0.4=min_tokens=8,presence_penalty=0.4",
    "typical 0.9, temperature 0.7, min_tokens 8=typical_p=0.9,temperature=0.7,min_tokens=8",
)


@dataclass(frozen=True)
class Row:
    label: str
    replies: int
    words_beyond: float | None
    distinct: float | None
    distinct_2: float | None
    filler_only: float | None
    voice: float | None
    real_words: float | None
    says_little: bool | None

    def cells(self) -> list[str]:
        def pct(x):
            return "-" if x is None else f"{100 * x:.0f} %"

        return [self.label, str(self.replies), "-" if self.words_beyond is None else f"{self.words_beyond:.1f}",
                pct(self.distinct), "-" if self.distinct_2 is None else f"{self.distinct_2:.2f}",
                pct(self.filler_only), pct(self.voice), pct(self.real_words),
                "**says little**" if self.says_little else ""]


def parse_sampling(spec: str) -> tuple[str, dict]:
    """"NAME=key=value,key=value" -> (NAME, {key: value}); an empty change list is the bundle's own."""
    name, _, changes = spec.partition("=")
    out: dict = {}
    for item in filter(None, changes.split(",")):
        key, _, value = item.partition("=")
        if not value:
            raise ValueError(f"--sampling {spec!r}: expected key=value, got {item!r}")
        out[key.strip()] = int(value) if key.strip() in ("top_k", "min_tokens") else float(value)
    return name.strip(), out


def measure(bundle_dir: Path, data: Path, samplings: list[tuple[str, dict]], rounds: int = 3,
            prompts: int = 32, seed: int = 1337) -> list[Row]:
    from host_training.evaluate.generation import PersonaGenerator, reply_cases, reply_rounds
    from host_training.evaluate.real_words import best_language
    from host_training.evaluate.real_words import share as real_share
    from host_training.evaluate.voice import VoiceClassifier, training_turns
    from host_training.train.tokenizer import load_conversations
    from stratoecho import substance
    from stratoecho.bundle import load_bundle

    bundle = load_bundle(bundle_dir)
    train, val = load_conversations(data / "train.jsonl"), load_conversations(data / "val.jsonl")
    own_train = [m["content"] for c in train for m in c if m["role"] == "assistant"]
    own_val = [m["content"] for c in val for m in c if m["role"] == "assistant"]
    fillers = substance.fillers(own_train)
    language = bundle.manifest.persona.language or best_language(own_train)
    clf = VoiceClassifier.fit_turns(training_turns(train), seed)
    owner = substance.measure(own_val, fillers)

    def row(label: str, texts: list[str]) -> Row:
        s = substance.measure(texts, fillers)
        return Row(label, len(texts), s.words_beyond, s.distinct_share, s.distinct_2, s.filler_only_share,
                   clf.share(texts).share if clf is not None else None, real_share(texts, language).share,
                   None if label == "owner's held-out turns" else substance.says_little(s, owner))

    rows = [row("owner's held-out turns", own_val)]
    cases = reply_cases(val, prompts)
    gen = PersonaGenerator(bundle)
    try:
        base = bundle.manifest.sampling
        for label, changes in samplings:
            gen.bundle.manifest.sampling = base.model_copy(update=changes)
            replies = [r for rs in reply_rounds(gen, cases, seed, rounds) if rs for r in rs]
            rows.append(row(label or "the bundle's sampling", replies))
        gen.bundle.manifest.sampling = base
    finally:
        gen.close()
    return rows


HEAD = ["sampling", "replies", "words beyond fillers", "distinct", "distinct-2", "only fillers", "read as the owner's",
        "real words", ""]


def table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    lines += ["| " + " | ".join(r.cells()) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sim.bench.measure.recipe", description=__doc__.split("\n\n")[0])
    p.add_argument("bundle", type=Path, help="the persona bundle")
    p.add_argument("--data", type=Path, required=True, help="its prepare folder (train.jsonl, val.jsonl)")
    p.add_argument("--sampling", action="append", metavar="NAME=k=v,...",
                   help="a sampling to try: the bundle's with these keys changed (repeatable; default: a set of six)")
    p.add_argument("--rounds", type=int, default=3, help="replies to each held-out prompt (default 3)")
    p.add_argument("--json", type=Path, help="also write the rows here")
    args = p.parse_args(argv)
    try:
        samplings = [parse_sampling(s) for s in (args.sampling or DEFAULT_SAMPLINGS)]
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    rows = measure(args.bundle, args.data, samplings, args.rounds)
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in rows], indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
