"""`python -m host_training build --data DIR --from-scratch --out BUNDLE`: data in, persona bundle out.

The chain, one stage per file, each readable on its own:

    1. data       DIR/train.jsonl and DIR/val.jsonl (from `prepare`), checked line by line
    2. tokenizer  tokenizer.py        byte-level BPE trained on the persona's chats, ChatML template
    3. train      train_scratch.py    a tiny Llama, fp32 on the CPU, loss on the persona's words
    4. convert    convert_gguf.py     HF checkpoint -> F32 GGUF (llama.cpp's layout)
    5. quantize   quantize.py         F32 GGUF -> model.<QUANT>.gguf with llama.cpp itself
    6. eval       evaluate.py         val perplexity of the F32 and the quantized GGUF through
                                      llama-cpp-python, so the quantization cost is on record
    7. bundle     stratoecho.bundle   eval.json and persona.toml (written last: a directory with a
                                      persona.toml is always a complete bundle)

Intermediate files (HF checkpoint, F32 GGUF) live in a temporary directory, or under
BUNDLE/work with --keep-work. `--base HF_MODEL_DIR` (LoRA on a pretrained model) is not in
this version; the option exists so the command line keeps its documented shape.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import structlog

from .quantize import DEFAULT_QUANT, QUANT_TYPES, parse_quant
from .tokenizer import (
    CHATML_TEMPLATE,
    DEFAULT_VOCAB_SIZE,
    EOT,
    STOP_STRINGS,
    DataError,
    by_weight,
    example_weights,
    load_conversations,
)
from .train_scratch import PRESETS

log = structlog.get_logger(__name__)

# ----------------------------------------------------------------------------- configuration
DEFAULT_NAME = "persona"
SYSTEM_PROMPT = (
    "You are {name}, riding a weather balloon high above the Earth. "
    "Say what you see and think, in your own words."
)
# Sampling for a model this small: a little cooler than llama.cpp's 0.8 and a firmer repeat
# penalty, since tiny models loop; the payload may override per request.
SAMPLING = dict(temperature=0.7, top_p=0.95, top_k=40, repeat_penalty=1.15, max_tokens=64)
EVAL_FILE = "eval.json"


class BuildError(RuntimeError):
    """A build that cannot go on; the message says why and what to do."""


# ----------------------------------------------------------------------------- command line
def _quant_arg(text: str) -> str:
    try:
        return parse_quant(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_parser(sub) -> None:
    p = sub.add_parser(
        "build",
        help="train a persona model and write its bundle (persona.toml + GGUF)",
        description=(
            "Turn prepare's train.jsonl/val.jsonl into a persona bundle: tokenizer, model, GGUF, "
            "quantization, held-out evaluation, persona.toml. --from-scratch trains a tiny Llama "
            "on the CPU (the demo preset takes a few minutes on 2 cores)."
        ),
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--from-scratch", action="store_true", help="train a tiny Llama from nothing but DIR")
    src.add_argument("--base", metavar="HF_MODEL_DIR",
                     help="LoRA-fine-tune this local transformers model (not yet implemented in this version)")
    p.add_argument("--data", required=True, type=Path, metavar="DIR",
                   help="output folder of `prepare` (train.jsonl, val.jsonl)")
    p.add_argument("--out", required=True, type=Path, metavar="BUNDLE",
                   help="bundle folder to write (created if missing)")
    p.add_argument("--preset", choices=sorted(PRESETS), default="demo",
                   help="model size: demo (hidden 256, 4 layers, ~4M parameters; 1-3 minutes on 2 cores) "
                        "or test (hidden 64, 2 layers, ~0.2M; seconds); default demo")
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
                   help=f"GGUF type of the bundle's model: {', '.join(QUANT_TYPES)} (default {DEFAULT_QUANT})")
    p.add_argument("--vocab-size", type=int, default=DEFAULT_VOCAB_SIZE, metavar="TOKENS",
                   help=f"tokenizer vocabulary in tokens, 3 special ones included (default {DEFAULT_VOCAB_SIZE}; "
                        "fewer when the data is small)")
    p.add_argument("--name", metavar="NAME",
                   help="the persona's name (default: the name on the persona's turns in the data, "
                        f"else {DEFAULT_NAME!r})")
    p.add_argument("--system-prompt", metavar="TEXT",
                   help="system prompt the model trains and runs with (default: "
                        + SYSTEM_PROMPT.format(name="NAME") + ")")
    p.add_argument("--loss", choices=("persona", "all"), default="persona",
                   help="train on the persona's words only (default) or on every token of the chats")
    p.add_argument("--keep-work", action="store_true",
                   help="keep the HF checkpoint and the F32 GGUF under BUNDLE/work (else a temporary folder)")
    p.add_argument("--force", action="store_true", help="replace an existing bundle in BUNDLE")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.base:
        print(
            f"error: --base {args.base}: LoRA fine-tuning of a pretrained model is not yet implemented "
            "in this version; use --from-scratch",
            file=sys.stderr,
        )
        return 2
    try:
        summary = build(args)
    except (BuildError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(
        f"bundle {summary['bundle']}: {summary['model']} ({summary['bytes'] / 1e6:.1f} MB), "
        f"val perplexity {summary['val_perplexity']:.3f} ({summary['quant']}) vs "
        f"{summary['f32_val_perplexity']:.3f} (F32), {summary['steps']} steps in {summary['train_minutes']:.1f} min"
    )
    return 0


# ----------------------------------------------------------------------------- the chain
def load_data(data_dir: Path):
    """(train, val) conversations; BuildError/DataError naming the file (and line) otherwise."""
    if not data_dir.is_dir():
        raise BuildError(
            f"{data_dir}: no such data directory (run `python -m host_training prepare ... --out {data_dir}`)"
        )
    train = load_conversations(data_dir / "train.jsonl")
    # prepare's quality tiers: finished writing counts more than chat (weight = times per epoch).
    train = by_weight(train, example_weights(data_dir / "train.jsonl"), seed=0)
    val = load_conversations(data_dir / "val.jsonl")
    if not train:
        raise BuildError(f"{data_dir / 'train.jsonl'}: no conversations to train on")
    if not any(m["role"] == "assistant" and m["content"].strip() for c in train for m in c):
        raise BuildError(f"{data_dir / 'train.jsonl'}: no assistant (persona) turns; was --owner right in prepare?")
    if not any(m["role"] == "assistant" and m["content"].strip() for c in val for m in c):
        raise BuildError(f"{data_dir / 'val.jsonl'}: no persona turns; held-out evaluation needs some")
    return train, val


def persona_name(train) -> str:
    """The most common name on the persona's turns, as prepare wrote it; else DEFAULT_NAME."""
    names = Counter(m["name"].strip() for c in train for m in c if m["role"] == "assistant" and m["name"].strip())
    return names.most_common(1)[0][0] if names else DEFAULT_NAME


def _ours(p: Path) -> bool:
    """What a build writes into BUNDLE: safe to replace."""
    return p.name in ("persona.toml", EVAL_FILE, "work") or (p.name.startswith("model.") and p.name.endswith(".gguf"))


def prepare_out_dir(out: Path, force: bool) -> None:
    if (out / "persona.toml").exists() and not force:
        raise BuildError(f"{out}: already holds a bundle; use --force to replace it")
    if out.exists():
        foreign = [p.name for p in out.iterdir() if not _ours(p)]
        if foreign:
            raise BuildError(f"{out}: is not empty ({', '.join(sorted(foreign)[:3])}, ...) and is no bundle; "
                             "choose an empty or new folder")
        # Only a previous build's files (a bundle being replaced, or what a failed build left):
        # the manifest goes first, so until the new one is written this is no bundle at all.
        (out / "persona.toml").unlink(missing_ok=True)
        for p in out.iterdir():
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    out.mkdir(parents=True, exist_ok=True)


def build(args) -> dict:
    from stratoecho.bundle import BundleManifest, file_entry, sha256_file, write_bundle

    from . import convert_gguf, evaluate, quantize, tokenizer, train_scratch

    t_start = time.monotonic()
    # -- 1. data
    train_convs, val_convs = load_data(args.data)
    name = args.name or persona_name(train_convs)
    system_prompt = args.system_prompt if args.system_prompt is not None else SYSTEM_PROMPT.format(name=name)
    cfg = train_scratch.TrainConfig(preset=args.preset, steps=args.steps, max_minutes=args.max_minutes,
                                    seed=args.seed, batch_size=args.batch_size, loss=args.loss)
    try:
        cfg.resolved()
    except ValueError as e:
        raise BuildError(str(e)) from None
    floor = len(tokenizer.SPECIAL_TOKENS) + 256  # every byte plus the special tokens
    if args.vocab_size < floor:
        raise BuildError(f"--vocab-size {args.vocab_size} is too small: byte-level BPE needs at least {floor}")
    # Checks done: only now touch BUNDLE (a --force rebuild removes the old bundle here).
    prepare_out_dir(args.out, args.force)
    log.info("build.data", train=len(train_convs), val=len(val_convs), name=name, preset=args.preset)

    if args.keep_work:
        work = args.out / "work"
        work.mkdir(exist_ok=True)
        cleanup = None
    else:
        cleanup = tempfile.TemporaryDirectory(prefix="stratoecho-build-")
        work = Path(cleanup.name)
    try:
        hf_dir = work / "hf"
        hf_dir.mkdir(exist_ok=True)

        # -- 2. tokenizer
        tok = tokenizer.train_tokenizer(tokenizer.tokenizer_training_text(train_convs, system_prompt), args.vocab_size)
        tokenizer.save_tokenizer(tok, hf_dir)
        log.info("build.tokenizer", vocab=tok.get_vocab_size())

        # -- 3. train
        try:
            result = train_scratch.train(cfg, train_convs, val_convs, hf_dir, hf_dir, system_prompt)
        except ValueError as e:  # data that renders to nothing trainable
            raise BuildError(f"training: {e}") from None

        # -- 4. convert
        try:
            f32_path = convert_gguf.convert(hf_dir, work / "model.F32.gguf", "f32", name=name)
        except convert_gguf.ConvertError as e:
            raise BuildError(f"GGUF conversion: {e}") from None

        # -- 5. quantize
        model_file = f"model.{args.quant}.gguf"
        try:
            q = quantize.quantize(f32_path, args.out / model_file, args.quant,
                                  verbose=(getattr(args, "log_level", None) or "").upper() == "DEBUG")
        except quantize.QuantizeError as e:
            raise BuildError(str(e)) from None

        # -- 6. eval: the shipped file, and the F32 one to price the quantization
        ev_q = evaluate.score_gguf(q.path, val_convs, system_prompt)
        ev_f = evaluate.score_gguf(f32_path, val_convs, system_prompt) if args.quant != "F32" else ev_q
    finally:
        if cleanup is not None:
            cleanup.cleanup()

    # -- 7. bundle
    eval_report = {
        "metric": "persona-token negative log-likelihood on val.jsonl, nats/token; perplexity = exp",
        "kv_cache": "f32",
        "quantized": ev_q,
        "f32": ev_f,
        "training_framework_val_loss": result.val_loss,
        "training_val_curve": result.val_curve,  # [step, val_loss]; the best step's weights are kept
    }
    (args.out / EVAL_FILE).write_text(json.dumps(eval_report, indent=2) + "\n", encoding="utf-8")
    ppl_q, ppl_f = ev_q["val_perplexity"], ev_f["val_perplexity"]
    manifest = BundleManifest(
        persona=dict(name=name, system_prompt=system_prompt, chat_template=CHATML_TEMPLATE,
                     stop=list(STOP_STRINGS), bos_token=EOT, eos_token=EOT),
        sampling=dict(SAMPLING),
        model=dict(file=model_file, quantization=args.quant, architecture="llama", base="scratch",
                   context_length=result.context_length, n_params=result.n_params),
        training=dict(
            method="from-scratch",
            preset=args.preset,
            data_sha256=sha256_file(args.data / "train.jsonl"),
            val_sha256=sha256_file(args.data / "val.jsonl"),
            train_conversations=len(train_convs),
            val_conversations=len(val_convs),
            steps=result.steps,
            kept_step=result.best_step,
            seed=args.seed,
            loss=args.loss,
            tokenizer="byte-level BPE (GPT-2 pre-tokenizer), ChatML",
            vocab_size=tok.get_vocab_size(),
            tokens_per_step=result.tokens_per_step,
            system_prompt_in_training=bool(system_prompt),
            train_loss=round(result.train_loss, 5),
            val_loss=round(result.val_loss, 5),
            minutes=round(result.minutes, 3),
            **{k: v for k, v in result.hparams.items()},
        ),
        eval=dict(
            val_loss=round(ev_q["val_loss"], 5),
            val_perplexity=round(ppl_q, 4),
            f32_val_loss=round(ev_f["val_loss"], 5),
            f32_val_perplexity=round(ppl_f, 4),
            quant_perplexity_increase=round(ppl_q - ppl_f, 4),
            val_tokens=ev_q["tokens"],
            val_conversations=ev_q["conversations"],
            report=EVAL_FILE,
        ),
        files=[file_entry(args.out, model_file), file_entry(args.out, EVAL_FILE)],
    )
    write_bundle(args.out, manifest)
    total_min = (time.monotonic() - t_start) / 60
    log.info("build.done", bundle=str(args.out), model=model_file, bytes=q.bytes, val_perplexity=round(ppl_q, 4),
             f32_val_perplexity=round(ppl_f, 4), minutes=round(total_min, 2))
    return {
        "bundle": str(args.out), "model": model_file, "bytes": q.bytes, "quant": args.quant,
        "val_perplexity": ppl_q, "f32_val_perplexity": ppl_f, "steps": result.steps,
        "train_minutes": result.minutes, "minutes": total_min,
    }
