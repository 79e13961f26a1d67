"""`python -m host_training eval`: the options, and `run`: score val.jsonl, then write the report
and the Modelfile, and say what was found.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from .. import progress
from ..train.tokenizer import Conversation, DataError, load_conversations
from .generation import DEFAULT_SEED, PROBE_SAMPLES, STYLE_PROMPTS
from .reporting import Compared, ReportOutcome, write_report
from .scoring import is_chatml, score_gguf, score_gguf_template


def add_parser(sub) -> None:
    import argparse
    import textwrap

    p = sub.add_parser(
        "eval",
        help="held-out perplexity, whose voice, style figures and a privacy probe of a persona bundle; writes report.md",
        description=textwrap.fill(
            "Score DIR/val.jsonl with the bundle's GGUF through llama-cpp-python: mean negative "
            "log-likelihood of the persona's tokens (nats/token) and its exponential, the perplexity. "
            "Then let the persona answer messages from val.jsonl and compare its replies with the "
            "owner's (length, lines, casing, punctuation, emoji, questions, vocabulary) and by a classifier "
            "of whose voice a text has (trained on train.jsonl: the owner against the other speakers), search sampled "
            "generations for private values, and write BUNDLE/report.md, the size-vs-perplexity plot "
            "beside it and BUNDLE/Modelfile (for trying the persona in Ollama).", width=88, break_on_hyphens=False,
        ),
        epilog=(
            "privacy probe verdicts:\n"
            "  FAIL  a sample contains a --private string or a --blocklist entry\n"
            "  WARN  a sample contains a real-looking e-mail, phone, card, IBAN, IP, API key or\n"
            "        secret URL (invented: the training data held only placeholders such as <PHONE_1>)\n"
            "  PASS  nothing found\n"
            "\n"
            "example:\n"
            "  python -m host_training eval bundles/ada --data data/ada --private private.txt --strict\n"
            "\n"
            "exit status: 0 done (any verdict without --strict), 1 privacy probe FAIL with --strict,\n"
            "             2 bad input (no bundle, no val.jsonl, unreadable --private/--blocklist)"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("bundle", metavar="BUNDLE", help="persona bundle directory (holds persona.toml)")
    p.add_argument("--data", required=True, metavar="DIR",
                   help="output folder of `prepare`: val.jsonl is scored, train.jsonl teaches the voice classifier "
                        "and gives the owner's vocabulary")
    p.add_argument("--model", metavar="GGUF", help="score this GGUF instead of the bundle's (e.g. an F32 one)")
    p.add_argument("--base-model", metavar="GGUF", type=Path,
                   help="an untuned base model's GGUF (in the bundle's quantization, for a fair comparison): it "
                        "answers the same held-out messages, and the report shows its style and whose voice "
                        "it has beside the persona's")
    p.add_argument("--limit", type=int, metavar="N", help="score only the first N conversations")
    p.add_argument("--threads", type=int, metavar="N", help="CPU threads for llama.cpp (default: one per CPU it may use)")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON to FILE ('-' for standard output)")
    rep = p.add_argument_group("report (style figures and privacy probe)")
    rep.add_argument("--report", metavar="PATH",
                     help="write the report here instead of BUNDLE/report.md; the SVG and the Modelfile go "
                          "beside it and the bundle is left untouched")
    rep.add_argument("--no-report", action="store_true",
                     help="perplexity only: no generation, no report, no Modelfile")
    rep.add_argument("--prompts", type=int, default=STYLE_PROMPTS, metavar="N",
                     help=f"val messages the persona answers for the style figures (default {STYLE_PROMPTS})")
    rep.add_argument("--samples", type=int, default=PROBE_SAMPLES, metavar="N",
                     help=f"generations the privacy probe searches (default {PROBE_SAMPLES}; 0 skips the probe)")
    rep.add_argument("--private", type=Path, metavar="FILE",
                     help="strings you know are private, one a line, matched anywhere in any case "
                          "(never written to the report)")
    rep.add_argument("--blocklist", type=Path, metavar="FILE",
                     help="prepare's --blocklist file (a word or /regex/ a line; # comments) to search for too")
    rep.add_argument("--seed", type=int, default=DEFAULT_SEED,
                     help=f"sampling seed for the style replies and probe samples (default {DEFAULT_SEED})")
    rep.add_argument("--strict", action="store_true", help="exit with status 1 when the privacy probe says FAIL")
    p.set_defaults(func=run)


def voice_line(authorship) -> str:
    """One line of eval's output: each set's share classified as the owner's."""
    if authorship.cv is None:
        return f"whose voice: not measured: {authorship.note}"
    shares = "; ".join(f"{s.label} {s.share.share:.0%} ({s.share.interval[0]:.0%}-{s.share.interval[1]:.0%})"
                       for s in authorship.sets if s.share.texts)
    cv = authorship.cv
    return (f"whose voice (share classified as the owner's, 95 % interval; classifier balanced accuracy "
            f"{cv.balanced_accuracy:.2f} for samples of {cv.sample_size} turns, {cv.message_balanced_accuracy:.2f} "
            f"a message, held out by conversation): {shares}")


def substance_line(substance) -> str:
    """One line of eval's output: what each set says beyond the owner's commonest words (report.SubstanceResult)."""
    if not substance.sets:
        return f"substance: not measured: {substance.note}"
    sets = "; ".join(f"{s.label} {s.figures.words_beyond:.1f}, {100 * s.figures.distinct_share:.0f} %"
                     for s in substance.sets if s.figures.texts)
    return (f"substance (words beyond the owner's {len(substance.fillers)} commonest, a text; distinct texts): "
            f"{sets}")


def _quant_of(path: Path, bundle) -> str:
    """The quantization named in a model.<QUANT>.gguf file name, else '?'."""
    if path.name == bundle.manifest.model.file:
        return bundle.manifest.model.quantization
    parts = path.name.split(".")
    return parts[-2] if len(parts) >= 3 and parts[-1] == "gguf" else "?"


def run(args) -> int:
    got = _inputs(args)
    if got is None:
        return 2
    model = Path(args.model) if args.model else got.bundle.model_path
    result = _score(args, got.bundle, model, got.val)
    if result is None:
        return 2
    status = 0
    if not args.no_report:
        status = _report(args, got, model, result)
        if status == 2:
            return 2
    if args.json:
        text = json.dumps(result, indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n", encoding="utf-8")
    return status


@dataclass
class _Inputs:
    """What eval reads before any scoring, each checked."""

    bundle: object  # stratoecho.bundle.Bundle
    val: list[Conversation]  # the conversations scored (--limit)
    all_val: list[Conversation]
    private: list[str]
    blocklist: list[str]
    report_path: Path
    listed: set[Path]  # the bundle's checksummed files, never rewritten


def _inputs(args) -> _Inputs | None:
    """The bundle, val.jsonl, --private and --blocklist, read and checked; None (said as an
    error) when one cannot be used or the report would overwrite a checksummed file."""
    from stratoecho.bundle import BundleError, load_bundle

    from .. import report
    from ..prepare import BlocklistError, load_blocklist

    try:
        bundle = load_bundle(args.bundle)
        if args.base_model is not None and not args.base_model.is_file():
            raise ValueError(f"--base-model {args.base_model}: no such file")
        val = load_conversations(Path(args.data) / "val.jsonl")
        private = report.load_private_strings(args.private) if args.private else []
        blocklist = load_blocklist(args.blocklist) if args.blocklist else []
    except (BundleError, DataError, BlocklistError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return None
    for name in ("limit", "prompts", "samples"):
        if getattr(args, name) is not None and getattr(args, name) < 0:
            print(f"error: --{name} must be 0 or more", file=sys.stderr)
            return None
    all_val = val
    if args.limit is not None:
        val = val[: args.limit]
    if not val:
        print(f"error: {Path(args.data) / 'val.jsonl'} holds no conversations", file=sys.stderr)
        return None
    report_path = Path(args.report) if args.report else bundle.root / report.REPORT_FILE
    listed = {(bundle.root / f.path).resolve() for f in bundle.manifest.files}
    if not args.no_report:
        clash = [q for q in (report_path, report_path.parent / report.PLOT_FILE) if q.resolve() in listed]
        if clash:
            print(f"error: {clash[0]} is listed in persona.toml's [[files]]; rewriting it would break the "
                  "bundle's checksums. Use --report PATH to write the report elsewhere.", file=sys.stderr)
            return None
    return _Inputs(bundle, val, all_val, private, blocklist, report_path, listed)


def _score(args, bundle, model: Path, val: list[Conversation]) -> dict | None:
    """The val perplexity of `model`, printed; None (said as an error) when it cannot be scored."""
    try:
        if is_chatml(bundle):
            result = score_gguf(model, val, bundle.manifest.persona.system_prompt, threads=args.threads)
        else:  # a base model's own template (build --base): scored through it
            result = score_gguf_template(model, val, bundle, threads=args.threads)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return None
    recorded = bundle.manifest.eval.get("val_perplexity")
    if recorded is not None and not args.model:
        result["recorded_val_perplexity"] = recorded
    print(
        f"{result['model']}: val perplexity {result['val_perplexity']:.3f} (loss {result['val_loss']:.4f} nats/token) "
        f"over {result['tokens']} persona tokens in {result['conversations']} conversations"
        + (f"; persona.toml records {recorded:.3f}" if "recorded_val_perplexity" in result else "")
    )
    return result


def _report(args, got: _Inputs, model: Path, result: dict) -> int:
    """report.md, the plot and the Modelfile, said and added to `result`: 0, 1 for a privacy
    FAIL with --strict, 2 (said as an error) when train.jsonl or the report cannot be used."""
    from stratoecho.bundle import sha256_file

    from .. import report

    bundle, val, report_path = got.bundle, got.val, got.report_path
    train_path = Path(args.data) / "train.jsonl"
    try:
        train = load_conversations(train_path) if train_path.is_file() else None
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    rows = [report.PerplexityRow("this bundle" if not args.model else model.name, _quant_of(model, bundle),
                                 model.stat().st_size, result["val_perplexity"])]
    note = ""
    if len(val) < len(got.all_val):
        note = f"Scored on the first {len(val)} of {len(got.all_val)} conversations (--limit)."
    compare = [] if args.base_model is None else [
        Compared(f"base {args.base_model.name}", args.base_model, "base")]
    try:
        # the replies take minutes on a CPU: their count and the time left on standard error
        with progress.shown(progress.Terminal(sys.stderr)), progress.stage("report"):
            outcome = write_report(bundle, val, rows, report_path, train=train, private=got.private,
                                   blocklist=got.blocklist, prompts=args.prompts, samples=args.samples,
                                   seed=args.seed, threads=args.threads, val_note=note, compare=compare,
                                   data_sha256=sha256_file(Path(args.data) / "val.jsonl"))
        # The Modelfile goes beside the report: in the bundle by default (rewritten, but from
        # the same manifest it comes out the same; one that persona.toml checksums is left
        # alone), elsewhere with --report, so a read-only bundle is never touched.
        modelfile = report_path.parent / report.MODELFILE
        if modelfile.resolve() not in got.listed:
            report.write_modelfile(bundle.root, bundle.manifest, out_dir=report_path.parent)
    except OSError as e:
        print(f"error: cannot write the report: {e}", file=sys.stderr)
        return 2
    return _say_report(args, outcome, modelfile, result)


def _say_report(args, outcome: ReportOutcome, modelfile: Path, result: dict) -> int:
    """What the report found, printed and added to `result`; 1 for a privacy FAIL with --strict."""
    g, probe = outcome.style.generated, outcome.probe
    chars = g["chars"]["median"] if g["chars"] else float("nan")
    print(f"style: {g['turns']} replies, median {chars:.0f} characters "
          f"(owner {outcome.style.owner['chars']['median'] if outcome.style.owner['chars'] else float('nan'):.0f})")
    print(voice_line(outcome.voice))
    if outcome.substance is not None:
        print(substance_line(outcome.substance))
    warnings = outcome.language.warnings() if outcome.language is not None else []
    warnings += outcome.substance.warnings() if outcome.substance is not None else []
    for warning in warnings:
        print(f"warning: {warning.replace('**', '')}")
    kinds = ", ".join(f"{k} {n}" for k, n in probe.by_kind.items())
    print(f"privacy probe: {probe.verdict.upper()} ({probe.samples} samples" + (f"; {kinds})" if kinds else ")"))
    print(f"report: {outcome.report_path} ({outcome.plot_path.name} beside it); Ollama: {modelfile}")
    result["style"] = {"owner": outcome.style.owner, "generated": outcome.style.generated,
                       "vocabulary": outcome.style.overlap}
    result["voice"] = outcome.voice.summary()
    if outcome.substance is not None:
        result["substance"] = outcome.substance.summary()
    result["privacy"] = probe.summary()
    result["report"] = str(outcome.report_path)
    if args.strict and probe.verdict == "fail":
        print("error: the privacy probe failed (--strict): a sample holds a string you named as private; "
              f"see {outcome.report_path}", file=sys.stderr)
        return 1
    return 0
