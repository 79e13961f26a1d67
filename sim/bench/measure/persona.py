"""`make bench`'s rows for the persona on its real base: how fast it trains here, and what it costs on a Pi.

    bench_lora        LoRA tokens/s on SmolLM2-135M-Instruct and the sample corpus: the build's own
                      training (finetune.train: packed rows, targets-only logits, bf16 autocast where
                      the CPU has it, free cores, no checkpointing) against a plain PEFT +
                      transformers loop on the same conversations (batches of four padded to their
                      longest, float32, every position's logits, LoRA dropout 0.05, AdamW). Tokens
                      are the conversations' own, padding never counted, the first step of each
                      left out (buffers are allocated there).
    bench_pi          the sample persona (build/persona) as the Pi runs it: the persona worker's
                      resident memory with the model mapped; a musing's generation time and energy
                      on each board, predicted from its memory bandwidth and power (stratoecho.boards,
                      docs/figures.md); and the quantization `--target pi-zero-2w` picks on these
                      real weights, with every candidate's drift and top-1 agreement.

Predictions are labelled as such: there is no Pi here. Without the base (make persona fetches
it) or the bundle, a row says so instead.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
LORA_CONVERSATIONS = 48  # of train.jsonl, in its order: ~9,000 tokens, the same for both loops
LORA_STEPS = 4  # timed optimizer steps of the plain loop (after one untimed)
PLAIN_BATCH = 4
MUSING_TOKENS = 48  # the bench configuration's persona.max_tokens


def _base_folder():
    from host_training.base import base_models

    gguf = base_models.fetch_dir() / Path(base_models.PINNED[base_models.SAMPLE_BASE].member).name
    return base_models.resolve(gguf).folder if gguf.is_file() else None


# ----------------------------------------------------------------------------- training speed
def _plain_loop(base: Path, examples, steps: int) -> float:
    """Tokens/s of the loop a PEFT tutorial writes: padded batches, float32, the model's own loss."""
    import torch
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForCausalLM

    from host_training.finetune import PROJECTIONS

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    model = get_peft_model(model, LoraConfig(task_type=TaskType.CAUSAL_LM, r=16, lora_alpha=32, lora_dropout=0.05,
                                             target_modules=[t for t in PROJECTIONS if t in names]))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    model.train()
    tokens, seconds = 0, 0.0
    for step in range(steps + 1):
        batch = examples[(step * PLAIN_BATCH) % len(examples):][:PLAIN_BATCH]
        n = max(len(ids) for ids, _ in batch)
        ids = torch.tensor([i + [0] * (n - len(i)) for i, _ in batch])
        mask = torch.tensor([[1] * len(i) + [0] * (n - len(i)) for i, _ in batch])
        labels = torch.tensor([[t if y else -100 for t, y in zip(i, tg)] + [-100] * (n - len(i)) for i, tg in batch])
        t0 = time.perf_counter()
        model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad()
        if step:  # the first step allocates
            seconds += time.perf_counter() - t0
            tokens += sum(len(i) for i, _ in batch)
    return tokens / seconds


def bench_lora(data: Path = ROOT / "build" / "data") -> list[tuple]:
    import torch

    base = _base_folder()
    if base is None or not (data / "train.jsonl").is_file():
        return [("LoRA training: (no SmolLM2 base or build/data here: run `make persona`)", "-", "", "")]
    from transformers import AutoTokenizer

    from host_training import finetune
    from host_training.pipeline import stages
    from host_training.train import tokenizer

    convs = stages.load_data(data)
    train = convs.train[:LORA_CONVERSATIONS]
    system = stages.SYSTEM_PROMPT.format(name=stages.persona_name(convs.train))
    fmt = finetune.ChatFormat(AutoTokenizer.from_pretrained(str(base)))
    examples = [c for conv in train for c in tokenizer.chunks(
        *fmt.ids_and_targets(tokenizer.with_system_prompt(conv, system)), 1024)]
    threads = torch.get_num_threads()
    plain = _plain_loop(base, examples, LORA_STEPS)
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as work:
        r = finetune.train(finetune.FinetuneConfig(epochs=1.0, eval_steps=10_000, save_steps=10_000), base, train,
                           convs.val[:2], Path(work), system)
    h = r.hparams
    ours = h["train_tokens_per_s"]
    how = (f"{h['rows']} packed rows of {h['row_length']}, {h['threads']} threads, autocast {h['autocast']}, "
           f"checkpointing {'on' if h['gradient_checkpointing'] else 'off'}, targets-only logits "
           f"{'on' if h['targets_only_logits'] else 'off'}")
    gpu = ("none lent here" if not torch.cuda.is_available() else "see docs/training.md")
    return [
        ("LoRA on SmolLM2-135M, plain PEFT + transformers loop (fp32, padded, all logits)", f"{plain:,.0f}",
         "tokens/s", f"{LORA_CONVERSATIONS} conversations of the sample corpus, batches of {PLAIN_BATCH}"),
        ("LoRA on SmolLM2-135M, the build's training (finetune.train)", f"{ours:,.0f}", "tokens/s",
         f"{ours / plain:.2f}x of the plain loop (goal >= 1.5x); {how}; its whole Trainer run timed"),
        ("LoRA on SmolLM2-135M, on a GPU", "-", "", gpu),
    ]


# ----------------------------------------------------------------------------- on a Pi
def _status_kb(pid: int) -> dict[str, int]:
    from payload.persona.worker import proc_status_kb

    return proc_status_kb(pid, ("VmRSS", "RssFile", "RssAnon"))


def bench_pi(bundle_dir: Path = ROOT / "build" / "persona") -> list[tuple]:
    if not (bundle_dir / "persona.toml").is_file():
        return [("persona on a Pi: (no bundle at %s: run `make persona`)" % bundle_dir, "-", "", "")]
    from datetime import datetime, timezone

    from payload.parts.sensors import Readings
    from payload.persona.prompts import musing_messages
    from payload.persona.worker import PersonaWorker
    from stratoecho import boards
    from stratoecho.bundle import load_bundle

    bundle = load_bundle(bundle_dir)
    m = bundle.manifest
    r = Readings(datetime(2026, 6, 1, 10, 4, 11, tzinfo=timezone.utc), 52.1, -0.1, 12000.0, 9, -56.0, 190.0, 3900,
                 "ascent")
    prompt = bundle.render_prompt(musing_messages(m.persona.system_prompt, r))
    worker = PersonaWorker(bundle, n_ctx=256, n_threads=2, timeout_s=300)
    worker.start()
    try:
        loaded = _status_kb(worker.info["pid"])
        gen = worker.generate(prompt, MUSING_TOKENS, seed=1)
        after = _status_kb(worker.info["pid"])
    finally:
        worker.close()
    size = bundle.model_path.stat().st_size
    rows = [(f"persona worker RSS, {m.model.file} mapped (loaded / after a musing)",
             f"{loaded.get('VmRSS', 0) / 1024:,.0f} / {after.get('VmRSS', 0) / 1024:,.0f}", "MB",
             f"of which the mapped file {after.get('RssFile', 0) / 1024:,.0f} MB, private "
             f"{after.get('RssAnon', 0) / 1024:,.0f} MB; n_ctx 256 as the bench flies it")]
    for name in ("pi-zero-2w", "pi3", "pi4", "pi5"):
        b = boards.board(name)
        tps = boards.predicted_tokens_per_s(b, size)
        seconds = MUSING_TOKENS / tps
        energy = f"{seconds * b.power_w[1]:.1f} J at {b.power_w[1]} W" if b.power_w else "no published power figure"
        rows.append((f"a {MUSING_TOKENS}-token musing on {b.name}, predicted", f"{seconds:.1f}", "s",
                     f"{tps:.1f} tokens/s from {b.bandwidth_gb_s} GB/s; {energy}; prompt processing not included "
                     f"(here {gen.tokens} tokens took {gen.seconds:.2f} s with the prompt)"))
    return rows + bench_candidates(size) + bench_target_pick(bundle_dir)


def bench_candidates(model_bytes: int, config: Path = ROOT / "config" / "payload.pi.toml") -> list[tuple]:
    """What choosing the musing that airs among N candidates costs on each board (issue 49): N as
    the payload works it out for the Pi configuration's period and tokens (payload/policy/budget.py
    `candidates`), the seconds and energy a musing then takes, predicted from tokens/s."""
    from payload.config import load_config
    from payload.policy.budget import candidates
    from stratoecho import boards

    cfg = load_config(config)
    period, tokens = cfg.schedule.musing_s, cfg.persona.max_tokens
    prompt = cfg.persona.n_ctx - tokens  # a prompt filling its context: the owner's lines and notes take room
    rows = []
    for name in ("pi-zero-2w", "pi3", "pi4", "pi5"):
        b = boards.board(name)
        c = candidates(boards.predicted_tokens_per_s(b, model_bytes), period, tokens, prompt_tokens=prompt)
        one = c.prompt_s + c.candidate_s
        energy = f", {c.seconds * b.power_w[1]:.0f} J at {b.power_w[1]} W" if b.power_w else ""
        rows.append((f"choosing among candidates on {b.name}: N, seconds a musing (one candidate)",
                     f"{c.n}, {c.seconds:.0f} ({one:.0f})", "s",
                     f"{config.name}: a musing every {period:g} s, {tokens} tokens a candidate, a prompt of up to {prompt} "
                     f"tokens read once"
                     f"{energy}; predicted from tokens/s"))
    return rows


def bench_target_pick(bundle_dir: Path, board: str = "pi-zero-2w") -> list[tuple]:
    """What `build --target BOARD` picks for the sample persona's own weights (BUNDLE/model), each
    candidate's drift from F32 on val.jsonl with its top-1 agreement, as the build measures them."""
    data = ROOT / "build" / "data"
    if not (bundle_dir / "model" / "config.json").is_file() or not (data / "val.jsonl").is_file():
        return [(f"--target {board}: (no BUNDLE/model or build/data: run `make persona`)", "-", "", "")]
    from transformers import AutoTokenizer

    from host_training import finetune
    from host_training.convert import convert_gguf
    from host_training.evaluate import drift
    from host_training.pipeline import stages
    from host_training.quantize import imatrix
    from host_training.quantize import quantizer as quantize
    from host_training.train import heldout, tokenizer
    from stratoecho.bundle import load_bundle

    manifest = load_bundle(bundle_dir).manifest
    model = bundle_dir / "model"
    fmt = finetune.ChatFormat(AutoTokenizer.from_pretrained(str(model)))
    d = stages.load_data(data)
    system, ctx = manifest.persona.system_prompt, manifest.model.context_length
    held = heldout.from_chat_format(d.val, fmt, system, ctx)
    rendered = (fmt.ids_and_targets(tokenizer.with_system_prompt(c, system))[0] for c in heldout.distinct(d.train))
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        f32 = convert_gguf.convert(model, work / "model.F32.gguf", "f32", name=manifest.persona.name)
        im = imatrix.write(work / "imatrix.gguf", imatrix.compute(f32, heldout.calibration(rendered)), "train.jsonl")
        reference = drift.token_scores(f32, held)
        _, table = quantize.for_target(f32, board, lambda p: drift.measure(reference, p, held).figures(),
                                       work / "candidates", tolerance=drift.DEFAULT_TOLERANCE,
                                       min_top1=drift.DEFAULT_MIN_TOP1, imatrix=im, n_ctx=ctx)
    minutes = (time.perf_counter() - t0) / 60
    rows = []
    for row in table:
        dr = row.get("drift") or {}
        if not dr:
            continue
        top1 = dr.get("top1_agreement")
        rows.append((f"--target {board}: {row['quant']}{' (picked)' if row['chosen'] else ''}",
                     f"{row['bytes'] / 1e6:.1f}", "MB",
                     f"drift {dr['nll_increase']:+.3f} ({dr['low']:+.3f} to {dr['high']:+.3f}) nats, top-1 "
                     + ("-" if top1 is None or math.isnan(top1) else f"{top1:.1%} (low {dr.get('top1_low', math.nan):.1%})")))
    chosen = next((r for r in table if r["chosen"]), None)
    rows.append((f"--target {board}: the pick on the sample persona's real weights",
                 chosen["quant"] if chosen else "none", "", f"{chosen['note'] if chosen else ''}; {minutes:.1f} min"))
    return rows
