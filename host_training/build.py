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
BUNDLE/work with --keep-work. `--base HF_MODEL_DIR` replaces steps 2-3 with finetune.py (LoRA
on a pretrained model, its own chat template, merged and checked) and scores the untuned base
beside the tuned model; see `build_base` and docs/training.md.
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

from stratoecho import boards as targets

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
        return parse_quant(text, iquants=True)  # an I-quant is checked against --imatrix in `check_quant`
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def check_quant(args) -> None:
    """I-quants need an importance matrix; say so before any training is done."""
    if args.imatrix is None:
        try:
            parse_quant(args.quant)
        except ValueError as e:
            raise BuildError(f"--quant {args.quant}: {e}") from None
    elif not Path(args.imatrix).is_file():
        raise BuildError(f"--imatrix {args.imatrix}: no such file")


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
    src.add_argument("--base", metavar="HF_MODEL_DIR", type=Path,
                     help="LoRA-fine-tune this local transformers model (Llama, Qwen2, ...) instead; "
                          "see docs/training.md")
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
                   help=f"GGUF type of the bundle's model: {', '.join(QUANT_TYPES)} (default {DEFAULT_QUANT}); "
                        "I-quants (IQ2_XXS ...) only with --imatrix")
    p.add_argument("--target", choices=sorted(targets.BOARDS), metavar="BOARD",
                   help="pick the quantization for this board instead of --quant: every listed type that fits "
                        "its memory is scored on val.jsonl and the best held-out quality wins; the predicted "
                        f"tokens/s from its memory bandwidth go in the report ({', '.join(targets.TARGETS)}; "
                        "pi4-4gb style names for other RAM sizes)")
    p.add_argument("--imatrix", type=Path, metavar="FILE",
                   help="importance matrix from llama.cpp's llama-imatrix (GGUF or .dat): needed for I-quants, "
                        "improves the K-quants")
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
    p.add_argument("--blocklist", type=Path, metavar="FILE",
                   help="prepare's blocklist (a word or phrase a line, or /regex/; # comments): the payload's "
                        "outbound guard drops any musing holding one. Phrases travel as salted hashes "
                        "(stratoecho/blocklist.py), regular expressions as written")
    p.add_argument("--keep-work", action="store_true",
                   help="keep the HF checkpoint and the F32 GGUF under BUNDLE/work (else a temporary folder)")
    p.add_argument("--force", action="store_true", help="replace an existing bundle in BUNDLE")
    # --base (LoRA) only; --steps, --batch-size, --seed, --loss, --max-minutes, --quant apply too
    lora = p.add_argument_group("--base (LoRA fine-tuning)")
    lora.add_argument("--lora-preset", default="auto", choices=("auto", "tiny", "0.5b", "1b", "3b"),
                      help="LoRA rank, learning rate, epochs, row length, batch by model size "
                           "(default auto: from the base's parameter count; table in docs/training.md)")
    lora.add_argument("--epochs", type=float, metavar="N", help="passes over train.jsonl (default: the preset's)")
    lora.add_argument("--learning-rate", type=float, metavar="LR", help="peak learning rate (default: the preset's)")
    lora.add_argument("--lora-rank", type=int, metavar="R", help="LoRA rank; alpha keeps the preset's alpha/rank")
    lora.add_argument("--max-length", type=int, metavar="TOKENS",
                      help="tokens per training row; longer conversations are split (default: the preset's)")
    lora.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=None,
                      help="recompute activations in the backward pass: less memory, ~30%% slower "
                           "(default: on from the 0.5b preset up)")
    lora.add_argument("--chat-template", choices=("base", "chatml"), default="base",
                      help="the base tokenizer's own chat template (ChatML when it has none; default) or ChatML always")
    lora.add_argument("--merge-dtype", choices=("float32", "bfloat16", "float16"), default="float32",
                      help="precision the adapter is merged in (default float32: exact, and the GGUF starts F32)")
    lora.add_argument("--resume", action="store_true",
                      help="continue an interrupted --base build from the last checkpoint in BUNDLE/work/checkpoints")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.base:
        return run_base(args)
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
    from .report import MODELFILE, PLOT_FILE, REPORT_FILE

    return p.name in ("persona.toml", EVAL_FILE, "work", REPORT_FILE, PLOT_FILE, MODELFILE) or (
        p.name.startswith("model.") and p.name.endswith(".gguf"))


def provenance(args, train_convs, val_convs) -> dict:
    """What the model was trained on, for persona.toml: which data, how much."""
    from stratoecho.bundle import sha256_file

    return dict(data_sha256=sha256_file(args.data / "train.jsonl"), val_sha256=sha256_file(args.data / "val.jsonl"),
                train_conversations=len(train_convs), val_conversations=len(val_convs))


def eval_figures(ev_q: dict, ev_f: dict) -> dict:
    """persona.toml's [eval] figures for the shipped file and its F32 source."""
    return dict(val_loss=round(ev_q["val_loss"], 5), val_perplexity=round(ev_q["val_perplexity"], 4),
                f32_val_loss=round(ev_f["val_loss"], 5), f32_val_perplexity=round(ev_f["val_perplexity"], 4),
                quant_perplexity_increase=round(ev_q["val_perplexity"] - ev_f["val_perplexity"], 4),
                val_tokens=ev_q["tokens"])


def quantize_for_bundle(args, f32_path: Path, work: Path, score) -> tuple:
    """The bundle's model file: `--quant` as asked, or with `--target` the listed type that fits
    the board and scores best on val.jsonl (`score(path) -> perplexity`). Returns (QuantResult,
    file name, the target table or None); `args.quant` is set to the type chosen."""
    from . import quantize

    verbose = (getattr(args, "log_level", None) or "").upper() == "DEBUG"
    try:
        if not args.target:
            model_file = f"model.{args.quant}.gguf"
            return quantize.quantize(f32_path, args.out / model_file, args.quant, verbose=verbose,
                                     imatrix=args.imatrix), model_file, None
        chosen, table = quantize.for_target(f32_path, args.target, score, work / "candidates", imatrix=args.imatrix)
    except (quantize.QuantizeError, targets.NothingFits) as e:
        raise BuildError(str(e)) from None
    row = next(r for r in table if r["chosen"])
    args.quant = row["quant"]
    model_file = f"model.{args.quant}.gguf"
    shutil.move(str(chosen), args.out / model_file)
    log.info("build.target", board=args.target, quant=args.quant, why=row["note"])
    return quantize.QuantResult(args.out / model_file, args.quant, row["bytes"], f32_path.stat().st_size,
                                str(args.imatrix) if args.imatrix else None), model_file, table


def write_report_files(args, manifest, val_convs, train_convs, rows: list, target_table) -> None:
    """report.md (perplexity table and plot, style figures, privacy probe) and the Ollama Modelfile;
    not listed in persona.toml's files: `eval` writes them again."""
    from stratoecho.bundle import Bundle

    from . import evaluate
    from . import report as persona_report

    for r in target_table or ():
        if r.get("val_perplexity") is not None and not r["chosen"]:
            rows.append(persona_report.PerplexityRow(f"candidate for {args.target}", r["quant"], r["bytes"],
                                                     r["val_perplexity"]))
    outcome = evaluate.write_report(Bundle(args.out, manifest), val_convs, rows, train=train_convs, seed=args.seed)
    persona_report.write_modelfile(args.out, manifest)
    manifest.eval["privacy_probe"] = outcome.probe.verdict
    if target_table is not None:
        board = targets.board(args.target)
        chosen = next(r for r in target_table if r["chosen"])
        manifest.model = manifest.model.model_copy(update={"target": args.target})
        manifest.eval["predicted_tokens_per_s"] = chosen.get("predicted_tokens_per_s")
        manifest.eval["target_budget_mb"] = round(board.budget_bytes / 1e6)


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
    from stratoecho.bundle import BundleManifest, file_entry, write_bundle

    from . import convert_gguf, evaluate, tokenizer, train_scratch

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
    check_quant(args)
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

        # -- 5. quantize: as asked, or the best that fits --target's board
        q, model_file, target_table = quantize_for_bundle(
            args, f32_path, work, lambda path: evaluate.score_gguf(path, val_convs, system_prompt)["val_perplexity"])

        # -- 6. eval: the shipped file, and the F32 one to price the quantization
        ev_q = evaluate.score_gguf(q.path, val_convs, system_prompt)
        ev_f = evaluate.score_gguf(f32_path, val_convs, system_prompt) if args.quant != "F32" else ev_q
        f32_bytes = f32_path.stat().st_size
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
            **provenance(args, train_convs, val_convs),
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
        eval=dict(**eval_figures(ev_q, ev_f), val_conversations=ev_q["conversations"], report=EVAL_FILE),
        files=[file_entry(args.out, model_file), file_entry(args.out, EVAL_FILE)],
    )
    add_blocklist(args, manifest)
    from .report import PerplexityRow

    rows = [PerplexityRow("trained", "F32", f32_bytes, ppl_f)]
    if args.quant != "F32":
        rows.append(PerplexityRow("trained", args.quant, q.bytes, ppl_q))
    write_report_files(args, manifest, val_convs, train_convs, rows, target_table)
    write_bundle(args.out, manifest)
    total_min = (time.monotonic() - t_start) / 60
    log.info("build.done", bundle=str(args.out), model=model_file, bytes=q.bytes, val_perplexity=round(ppl_q, 4),
             f32_val_perplexity=round(ppl_f, 4), minutes=round(total_min, 2))
    return {
        "bundle": str(args.out), "model": model_file, "bytes": q.bytes, "quant": args.quant,
        "val_perplexity": ppl_q, "f32_val_perplexity": ppl_f, "steps": result.steps,
        "train_minutes": result.minutes, "minutes": total_min,
    }


# ----------------------------------------------------------------------------- the --base chain (LoRA)
def run_base(args) -> int:
    try:
        summary = build_base(args)
    except (BuildError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if summary is None:  # a secondary process of `accelerate launch`: the main one builds the bundle
        return 0
    print(
        f"bundle {summary['bundle']}: {summary['model']} ({summary['bytes'] / 1e6:.1f} MB), "
        f"val perplexity {summary['val_perplexity']:.3f} ({summary['quant']}) vs the untuned base's "
        f"{summary['base_val_perplexity']:.3f}, {summary['steps']} LoRA steps in {summary['train_minutes']:.1f} min"
    )
    return 0


def _prepare_base_out_dir(out: Path, force: bool, resume: bool) -> None:
    """As prepare_out_dir; with --resume the previous attempt's BUNDLE/work (checkpoints) is kept."""
    if not resume:
        return prepare_out_dir(out, force)
    if (out / "persona.toml").exists() and not force:
        raise BuildError(f"{out}: already holds a finished bundle; nothing to resume (use --force to rebuild)")
    if not (out / "work" / "checkpoints").is_dir():
        raise BuildError(f"{out / 'work' / 'checkpoints'}: no checkpoints to resume from; run without --resume")
    (out / "persona.toml").unlink(missing_ok=True)
    for p in out.iterdir():
        if _ours(p) and p.name != "work":
            p.unlink()


def _gguf_field(path: Path, key: str, default=None):
    import gguf

    f = gguf.GGUFReader(str(path)).fields.get(key)
    return f.contents() if f is not None else default


def build_base(args) -> dict | None:
    """LoRA on a pretrained model: finetune.py, then convert, quantize, score and bundle as build()."""
    from accelerate import PartialState

    from stratoecho.bundle import Bundle, BundleManifest, file_entry, sha256_file, write_bundle

    from . import convert_gguf, evaluate, finetune, quantize

    t_start = time.monotonic()
    # -- 1. data and base
    train_convs, val_convs = load_data(args.data)
    name = args.name or persona_name(train_convs)
    system_prompt = args.system_prompt if args.system_prompt is not None else SYSTEM_PROMPT.format(name=name)
    check_quant(args)
    base = Path(args.base)
    if not (base / "config.json").is_file():
        raise BuildError(f"{base}: no config.json; --base wants a local transformers model directory")
    import torch

    state = PartialState(cpu=not torch.cuda.is_available())  # one process, or one of `accelerate launch`'s
    if state.is_main_process:
        _prepare_base_out_dir(args.out, args.force, args.resume)
    state.wait_for_everyone()
    work = args.out / "work"  # always inside BUNDLE, so an interrupted run can --resume; removed at the end
    work.mkdir(parents=True, exist_ok=True)
    log.info("build.data", train=len(train_convs), val=len(val_convs), name=name, base=str(base))

    # -- 2-3. fine-tune, merge, check
    cfg = finetune.FinetuneConfig(
        preset=args.lora_preset, steps=args.steps, epochs=args.epochs, learning_rate=args.learning_rate,
        rank=args.lora_rank, batch_size=args.batch_size, max_length=args.max_length,
        gradient_checkpointing=args.gradient_checkpointing, seed=args.seed, loss=args.loss,
        chat_template=args.chat_template, resume=args.resume, max_minutes=args.max_minutes,
        merge_dtype=args.merge_dtype)
    try:
        result = finetune.train(cfg, base, train_convs, val_convs, work, system_prompt)
    except finetune.FinetuneError as e:
        raise BuildError(f"fine-tuning: {e}") from None
    if result is None:
        return None

    # -- 4-5. convert and quantize the tuned model, and the untuned base the same way
    verbose = (getattr(args, "log_level", None) or "").upper() == "DEBUG"
    base_src = base
    if result.template_source == "chatml-added":  # the base as it was trained: with the ChatML tokens
        import torch

        m, t, _, _ = finetune.load_base(base, torch.float32, args.chat_template)
        base_src = work / "base-chatml"
        m.save_pretrained(str(base_src))
        t.save_pretrained(str(base_src))
        del m
    try:
        f32_path = convert_gguf.convert(result.merged_dir, work / "model.F32.gguf", "f32", name=name)
        base_f32 = convert_gguf.convert(base_src, work / "base.F32.gguf", "f32", name=f"{base.name} (untuned)")
    except convert_gguf.ConvertError as e:
        raise BuildError(f"GGUF conversion: {e}") from None
    # Scored on the very token ids training used.
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(result.merged_dir)
    val_ex = finetune.to_examples(val_convs, finetune.ChatFormat(tok), system_prompt, "persona",
                                  result.context_length)
    q, model_file, target_table = quantize_for_bundle(
        args, f32_path, work, lambda path: evaluate.score_gguf_ids(path, val_ex)["val_perplexity"])
    try:
        base_q = quantize.quantize(base_f32, work / f"base.{args.quant}.gguf", args.quant, verbose=verbose,
                                   imatrix=args.imatrix)
    except quantize.QuantizeError as e:
        raise BuildError(str(e)) from None

    # -- 6. eval: tuned and untuned, quantized and F32
    ev_q = evaluate.score_gguf_ids(q.path, val_ex)
    ev_f = evaluate.score_gguf_ids(f32_path, val_ex) if args.quant != "F32" else ev_q
    ev_bq = evaluate.score_gguf_ids(base_q.path, val_ex)
    arch = str(_gguf_field(q.path, "general.architecture", "llama"))
    # llama.cpp prepends BOS itself when the GGUF says so; the prompt text must not carry a second one.
    bos_auto = bool(_gguf_field(q.path, "tokenizer.ggml.add_bos_token", False))
    persona = dict(name=name, system_prompt=system_prompt, chat_template=result.chat_template, stop=result.stop,
                   bos_token="" if bos_auto else result.bos_token, eos_token=result.eos_token)

    # -- 7. bundle
    eval_report = {
        "metric": "persona-token negative log-likelihood on val.jsonl, nats/token; perplexity = exp",
        "kv_cache": "f32",
        "quantized": ev_q,
        "f32": ev_f,
        "base_quantized": ev_bq,
        "transformers": {"base_val_loss": result.base_val_loss, "tuned_val_loss": result.val_loss,
                         "tokens": result.val_tokens},
        "training_curve": result.curve,  # {"train": [[step, loss]], "eval": [[step, val_loss]]}; eval step 0 = base
        "merge_check": {"max_abs_logit_diff": result.merge_max_abs_diff, "tolerance": result.merge_tolerance,
                        "dtype": args.merge_dtype},
    }
    (args.out / EVAL_FILE).write_text(json.dumps(eval_report, indent=2) + "\n", encoding="utf-8")
    ppl_q, ppl_f, ppl_b = ev_q["val_perplexity"], ev_f["val_perplexity"], ev_bq["val_perplexity"]
    manifest = BundleManifest(
        persona=persona,
        sampling=dict(SAMPLING),
        model=dict(file=model_file, quantization=args.quant, architecture=arch, base=base.name,
                   context_length=result.context_length, n_params=result.n_params),
        training=dict(
            method="lora",
            base_path=str(base.resolve()),
            base_config_sha256=sha256_file(base / "config.json"),
            preset=result.preset,
            **provenance(args, train_convs, val_convs),
            steps=result.steps,
            epochs=result.epochs,
            seed=args.seed,
            loss=args.loss,
            chat_template_source=result.template_source,
            system_prompt_in_training=bool(system_prompt),
            trainable_params=result.trainable_params,
            device=result.device,
            dtype=result.dtype,
            train_loss_first=result.train_loss_first,
            train_loss_last=result.train_loss_last,
            merge_dtype=args.merge_dtype,
            merge_max_abs_logit_diff=result.merge_max_abs_diff,
            minutes=round(result.minutes, 3),
            **result.hparams,
        ),
        eval=dict(
            **eval_figures(ev_q, ev_f),
            base_val_loss=round(ev_bq["val_loss"], 5),
            base_val_perplexity=round(ppl_b, 4),  # the untuned base, same quantization, same tokens
            perplexity_reduction=round(ppl_b - ppl_q, 4),
            val_conversations=len(val_convs),
            report=EVAL_FILE,
        ),
        files=[file_entry(args.out, model_file), file_entry(args.out, EVAL_FILE)],
    )
    add_blocklist(args, manifest)
    # The payload renders prompts with bundle.render_prompt: it must give what training saw.
    probe = [{"role": "system", "content": system_prompt}, {"role": "user", "content": "How high are you?"}]
    want = tok.apply_chat_template(probe, tokenize=False, add_generation_prompt=True)
    got = Bundle(args.out, manifest).render_prompt(probe)
    if got != want and (not bos_auto or (tok.bos_token or "") + got != want):
        raise BuildError(f"the payload would render the chat template differently from training:\n{got!r}\nvs\n{want!r}")
    from .report import PerplexityRow

    rows = [PerplexityRow("base (untuned)", args.quant, base_q.bytes, ppl_b),
            PerplexityRow("fine-tuned", "F32", f32_path.stat().st_size, ppl_f)]
    if args.quant != "F32":
        rows.append(PerplexityRow("fine-tuned", args.quant, q.bytes, ppl_q))
    write_report_files(args, manifest, val_convs, train_convs, rows, target_table)
    write_bundle(args.out, manifest)
    if not args.keep_work:
        shutil.rmtree(work, ignore_errors=True)
    total_min = (time.monotonic() - t_start) / 60
    log.info("build.done", bundle=str(args.out), model=model_file, bytes=q.bytes, val_perplexity=round(ppl_q, 4),
             base_val_perplexity=round(ppl_b, 4), minutes=round(total_min, 2))
    return {
        "bundle": str(args.out), "model": model_file, "bytes": q.bytes, "quant": args.quant,
        "val_perplexity": ppl_q, "f32_val_perplexity": ppl_f, "base_val_perplexity": ppl_b,
        "steps": result.steps, "train_minutes": result.minutes, "minutes": total_min,
    }
BLOCKLIST_FILE = "blocklist.txt"


def add_blocklist(args, manifest) -> None:
    """The owner's blocklist into the bundle, hashed, listed in [[files]] and [guard]."""
    if getattr(args, "blocklist", None) is None:
        return
    from stratoecho.blocklist import BlocklistFormatError, HashedBlocklist
    from stratoecho.bundle import file_entry

    from .prepare import BlocklistError, load_blocklist

    try:
        hashed = HashedBlocklist.from_entries(load_blocklist(args.blocklist))
    except (BlocklistError, BlocklistFormatError) as e:
        raise BuildError(f"--blocklist: {e}") from e
    (args.out / BLOCKLIST_FILE).write_text(hashed.dumps(), encoding="utf-8")
    manifest.guard.blocklist = BLOCKLIST_FILE
    manifest.files.append(file_entry(args.out, BLOCKLIST_FILE))


