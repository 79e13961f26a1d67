"""`build --from-scratch`'s training (training.ScratchTraining): a tiny Llama on the persona's chats, on the CPU.

The model is a real `transformers.LlamaForCausalLM`, only small, so the GGUF converter
and the payload's llama.cpp runtime treat it exactly like a downloaded Llama. Steps:

  1. render every conversation in ChatML (with the bundle's system prompt) to ids and a
     loss mask, split long ones into context-sized chunks, pack chunks into rows;
  2. AdamW with linear warmup and cosine decay, fp32, one seed for everything;
  3. held-out loss on val.jsonl every ~tenth of the run, with exactly the tokens `eval` will
     score in the GGUF; the best weights are kept, and training stops once the val loss has
     missed PATIENCE times in a row (a corpus of a few hundred messages is memorised within
     a few hundred steps: on the sample corpus the best val loss comes at step ~90);
  4. save the HF checkpoint (safetensors) beside the tokenizer.

Every dimension is a multiple of 32 (what llama.cpp's 32-wide quant blocks need); the demo
preset's are multiples of 256, so the k-quants (Q4_K_M, ...) apply to all its matrices.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import structlog

from .lora_step import usable_cores
from .tokenizer import (
    Conversation,
    SpecialIds,
    chunks,
    hf_special_ids,
    hf_text_encoder,
    render_ids,
    with_system_prompt,
)

log = structlog.get_logger(__name__)

# ----------------------------------------------------------------------------- configuration
# Model shapes and the training defaults that go with them. `demo` (~4M parameters with a
# 2048-token vocabulary) babbles English-ish in the persona's voice; its 450 steps take ~3
# minutes on 2 CPU cores (~2.6 steps/s), less when early stopping ends the run. lr 1e-3 gave
# a lower val loss than 2e-3 on the sample corpus. `test` exists so the whole pipeline runs
# in seconds. GQA (fewer kv heads than heads) in both, so the
# converter's K permutation for n_head_kv is always exercised.
PRESETS: dict[str, dict] = {
    "demo": dict(
        hidden_size=256, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=768, context_length=256, tie_word_embeddings=False,
        steps=450, batch_size=8, learning_rate=1e-3,
    ),
    "test": dict(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=256, context_length=256, tie_word_embeddings=True,
        steps=20, batch_size=8, learning_rate=3e-3,
    ),
}
WARMUP_FRACTION = 0.1  # of the planned steps
MIN_LR_FRACTION = 0.1  # cosine decays to this fraction of the peak learning rate
WEIGHT_DECAY = 0.1  # on matrices only, not on norms
BETAS = (0.9, 0.95)
GRAD_CLIP = 1.0
ROPE_THETA = 10000.0
RMS_NORM_EPS = 1e-5
EVAL_BATCH = 16  # chunks per forward pass when scoring val.jsonl
TIMING_STEPS = 3  # steps measured before a --max-minutes budget is turned into a step count
PATIENCE = 3  # stop after this many val evaluations in a row without a new best (small corpora overfit)


@dataclass
class TrainConfig:
    preset: str = "demo"
    steps: int | None = None  # None: the preset's
    max_minutes: float | None = None  # wall-clock budget; the schedule is fitted to it
    seed: int = 1337
    batch_size: int | None = None
    learning_rate: float | None = None
    loss: str = "persona"  # "persona": assistant tokens only; "all": every token
    eval_every: int | None = None  # steps between val evaluations (None: ~10 per run, 0: only at the end)
    keep_best: bool = True  # end with the best val evaluation's weights; stop after PATIENCE misses

    def resolved(self) -> dict:
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; choose from {', '.join(PRESETS)}")
        p = dict(PRESETS[self.preset])
        for k in ("steps", "batch_size", "learning_rate"):
            if getattr(self, k) is not None:
                p[k] = getattr(self, k)
        if p["steps"] < 1:
            raise ValueError(f"--steps must be at least 1, got {p['steps']}")
        return p


@dataclass
class TrainResult:
    steps: int
    train_loss: float  # mean over the steps before the kept weights, nats per target token
    val_loss: float  # nats per target token on val.jsonl
    val_tokens: int
    best_step: int  # the step whose weights were kept
    val_curve: list = field(default_factory=list)  # [step, val_loss] pairs
    minutes: float = 0.0
    n_params: int = 0
    context_length: int = 0
    tokens_per_step: int = 0
    hparams: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def llama_config(preset: dict, vocab_size: int, special: SpecialIds):
    from transformers import LlamaConfig

    for k in ("hidden_size", "intermediate_size"):
        assert preset[k] % 32 == 0, f"{k}={preset[k]} must be a multiple of 32 for llama.cpp's quant blocks"
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=preset["hidden_size"],
        intermediate_size=preset["intermediate_size"],
        num_hidden_layers=preset["num_hidden_layers"],
        num_attention_heads=preset["num_attention_heads"],
        num_key_value_heads=preset["num_key_value_heads"],
        max_position_embeddings=preset["context_length"],
        rms_norm_eps=RMS_NORM_EPS,
        rope_theta=ROPE_THETA,
        tie_word_embeddings=preset["tie_word_embeddings"],
        bos_token_id=special.eot,
        eos_token_id=special.eot,
        pad_token_id=special.eot,
    )


# ----------------------------------------------------------------------------- data -> rows
def pack_rows(
    examples: list[tuple[list[int], list[bool]]], ctx: int, pad_id: int
) -> tuple[list[list[int]], list[list[bool]]]:
    """First-fit packing of chunks into rows of exactly `ctx` tokens, padded with `pad_id`.

    Each chunk starts where a conversation (or a piece of a long one) starts, so the model
    mostly sees conversations from their beginning, as on the balloon.
    """
    rows, masks = [], []
    row: list[int] = []
    mask: list[bool] = []
    for ids, target in examples:
        if len(row) + len(ids) > ctx:
            rows.append(row + [pad_id] * (ctx - len(row)))
            masks.append(mask + [False] * (ctx - len(mask)))
            row, mask = [], []
        row += ids
        mask += target
    if row:
        rows.append(row + [pad_id] * (ctx - len(row)))
        masks.append(mask + [False] * (ctx - len(mask)))
    return rows, masks


def to_examples(convs: list[Conversation], encode, special, system_prompt: str | None, loss: str, ctx: int):
    out = []
    for conv in convs:
        ids, target = render_ids(with_system_prompt(conv, system_prompt), encode, special, loss)
        out.extend(chunks(ids, target, ctx))
    return out


def labels_from(rows, masks):
    """HF-style labels: the token itself where it is a target, -100 elsewhere (the model shifts)."""
    import torch

    ids = torch.tensor(rows, dtype=torch.long)
    labels = ids.masked_fill(~torch.tensor(masks, dtype=torch.bool), -100)
    return ids, labels


def lr_at(step: int, total: int, peak: float) -> float:
    """Linear warmup then cosine decay to MIN_LR_FRACTION * peak (step counts from 0)."""
    warmup = max(1, int(WARMUP_FRACTION * total))
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (MIN_LR_FRACTION + (1 - MIN_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * progress)))


def token_nll(model, ids, labels):
    """Summed negative log-likelihood (nats) of the target tokens, and how many there were."""
    import torch.nn.functional as F

    logits = model(input_ids=ids).logits[:, :-1]
    target = labels[:, 1:]
    nll = F.cross_entropy(
        logits.reshape(-1, logits.size(-1)).float(), target.reshape(-1), ignore_index=-100, reduction="sum"
    )
    return nll, int((target != -100).sum())


def evaluate_loss(model, examples, ctx: int, pad_id: int) -> tuple[float, int]:
    """Mean NLL per target token over val chunks, each scored on its own (as `eval` does in the GGUF)."""
    import torch

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(examples), EVAL_BATCH):
            batch = examples[i : i + EVAL_BATCH]
            rows = [ids + [pad_id] * (ctx - len(ids)) for ids, _ in batch]
            masks = [t + [False] * (ctx - len(t)) for _, t in batch]
            ids, labels = labels_from(rows, masks)
            nll, n = token_nll(model, ids, labels)
            total += float(nll)
            count += n
    model.train()
    return (total / count if count else float("nan")), count


# ----------------------------------------------------------------------------- training
def train(
    cfg: TrainConfig,
    train_convs: list[Conversation],
    val_convs: list[Conversation],
    tokenizer_dir: str | Path,
    out_dir: str | Path,
    system_prompt: str | None,
) -> TrainResult:
    """Train from scratch and save the HF checkpoint (model + tokenizer) in `out_dir`."""
    import torch
    from transformers import LlamaForCausalLM

    from .tokenizer import load_hf_tokenizer

    p = cfg.resolved()
    ctx = p["context_length"]
    t0 = time.monotonic()

    # -- determinism: one seed for python, torch and the batch order; all cores for fp32 matmuls
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(usable_cores())

    # -- data: conversations -> (ids, targets) chunks -> packed rows
    hf_tok = load_hf_tokenizer(tokenizer_dir)
    encode, special = hf_text_encoder(hf_tok), hf_special_ids(hf_tok)
    data_ids, data_labels, val_ex = _training_data(cfg, train_convs, val_convs, encode, special, system_prompt, ctx)

    # -- model
    model = LlamaForCausalLM(llama_config(p, len(hf_tok), special))
    model.train()
    n_params = sum(t.numel() for t in model.parameters())
    log.info("train.model", preset=cfg.preset, params=n_params, hidden=p["hidden_size"],
             layers=p["num_hidden_layers"], vocab=len(hf_tok))
    opt = _optimizer(model, p)

    run = _run_steps(cfg, p, model, opt, data_ids, data_labels, val_ex, special.eot, t0)

    # -- held-out loss at the end; fall back to the best weights if the end is worse
    val_loss, val_tokens = evaluate_loss(model, val_ex, ctx, special.eot)
    if not run.curve or run.curve[-1][0] != run.step:
        run.curve.append([run.step, round(val_loss, 5)])
    kept = run.step
    if run.best_state is not None and run.best_val < val_loss:
        model.load_state_dict(run.best_state)
        val_loss, kept = run.best_val, run.best_step
        log.info("train.kept_best", kept_step=kept, val_loss=round(val_loss, 4), last_step=run.step)
    tail = run.losses[:kept][-max(1, min(20, kept // 5)) :]  # training loss around the kept weights
    train_loss = sum(tail) / len(tail)
    log.info("train.done", steps=run.step, kept_step=kept, train_loss=round(train_loss, 4),
             val_loss=round(val_loss, 4), minutes=round(run.seconds / 60, 2))
    out_dir = Path(out_dir)
    model.save_pretrained(str(out_dir))
    hf_tok.save_pretrained(str(out_dir))
    return TrainResult(
        steps=run.step,  # steps run (the kept weights are from best_step)
        train_loss=train_loss,
        val_loss=val_loss,
        val_tokens=val_tokens,
        best_step=kept,
        val_curve=run.curve,
        minutes=(time.monotonic() - t0) / 60,
        n_params=n_params,
        context_length=ctx,
        tokens_per_step=p["batch_size"] * ctx,
        hparams={k: p[k] for k in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                   "num_key_value_heads", "intermediate_size", "tie_word_embeddings",
                                   "batch_size", "learning_rate")},
    )


def _training_data(cfg: TrainConfig, train_convs: list[Conversation], val_convs: list[Conversation], encode,
                   special: SpecialIds, system_prompt: str | None, ctx: int):
    """(ids, labels) of the packed training rows, shuffled with the seed, and the val chunks."""
    train_ex = to_examples(train_convs, encode, special, system_prompt, cfg.loss, ctx)
    # Held-out loss is always over the persona's tokens: the figure `eval` reports for the GGUF.
    val_ex = to_examples(val_convs, encode, special, system_prompt, "persona", ctx)
    if not train_ex:
        raise ValueError("train.jsonl yields no training targets (no persona turns with text?)")
    random.Random(cfg.seed).shuffle(train_ex)
    rows, masks = pack_rows(train_ex, ctx, special.eot)
    data_ids, data_labels = labels_from(rows, masks)
    log.info("train.data", rows=len(rows), ctx=ctx, target_tokens=int((data_labels != -100).sum()),
             val_chunks=len(val_ex))
    return data_ids, data_labels, val_ex


def _optimizer(model, p: dict):
    """AdamW that decays matrices, not norms (nanoGPT's split)."""
    import torch

    decay = [t for t in model.parameters() if t.dim() >= 2]
    no_decay = [t for t in model.parameters() if t.dim() < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}],
        lr=p["learning_rate"], betas=BETAS, fused=False,
    )


@dataclass
class _Run:
    """What the loop leaves: the steps run, their losses, the val curve, and the best val
    evaluation with its weights (a small corpus is soon memorised)."""

    step: int = 0
    losses: list[float] = field(default_factory=list)
    curve: list[list] = field(default_factory=list)  # [step, val_loss]
    best_val: float = float("inf")
    best_step: int = 0
    best_state: dict | None = None
    misses: int = 0
    seconds: float = 0.0  # in the loop


def _run_steps(cfg: TrainConfig, p: dict, model, opt, data_ids, data_labels, val_ex, pad_id: int,
               t0: float) -> _Run:
    """The loop: random rows each step (seeded generator), schedule over `total` steps, fitted
    to --max-minutes; held-out loss now and then, stopping after PATIENCE misses."""
    import torch

    from .. import progress

    ctx = p["context_length"]
    gen = torch.Generator().manual_seed(cfg.seed)
    order = torch.randperm(len(data_ids), generator=gen)
    cursor = 0
    total = p["steps"]
    budget_s = cfg.max_minutes * 60 if cfg.max_minutes else None
    every = cfg.eval_every if cfg.eval_every is not None else max(1, total // 10)
    run = _Run()
    progress.steps(total, "steps")
    t_loop = time.monotonic()
    t_timing = None
    while run.step < total:
        if cursor + p["batch_size"] > len(order):  # next epoch, new order
            order, cursor = torch.randperm(len(data_ids), generator=gen), 0
        idx = order[cursor : cursor + p["batch_size"]]
        cursor += p["batch_size"]
        lr = lr_at(run.step, total, p["learning_rate"])
        run.losses.append(_step(model, opt, data_ids[idx], data_labels[idx], lr))
        run.step += 1
        step = run.step
        progress.advance()

        # -- time budget: after a few timed steps, shrink the plan so the cosine still ends at the budget
        if budget_s is not None:
            if step == 1:
                t_timing = time.monotonic()  # step 1 pays one-off costs; time the next ones
            elif step == 1 + TIMING_STEPS and t_timing is not None:
                per_step = (time.monotonic() - t_timing) / TIMING_STEPS
                fitted = max(step, int((budget_s - (time.monotonic() - t0)) / per_step) + step)
                if fitted < total:
                    log.info("train.budget", max_minutes=cfg.max_minutes, s_per_step=round(per_step, 3),
                             planned=total, fitted=fitted)
                    total = fitted
                    progress.steps(total, "steps")
            if time.monotonic() - t0 > budget_s * 1.1:  # estimate was off by a lot: stop anyway
                log.warning("train.budget_exceeded", step=step, planned=total)
                break

        # -- held-out loss now and then; remember the best weights (a small corpus is soon memorised)
        if every and step % every == 0 and step < total:
            if _held_out(model, val_ex, ctx, pad_id, run, cfg.keep_best):
                break
    run.seconds = time.monotonic() - t_loop
    return run


def _step(model, opt, ids, labels, lr: float) -> float:
    """One optimizer step at learning rate `lr`; its loss per target token."""
    import torch

    for g in opt.param_groups:
        g["lr"] = lr
    nll, n = token_nll(model, ids, labels)
    loss = nll / max(n, 1)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
    opt.step()
    return loss.item()


def _held_out(model, val_ex, ctx: int, pad_id: int, run: _Run, keep_best: bool) -> bool:
    """Score val.jsonl now, keep the weights if they are the best yet; True: stop (PATIENCE misses)."""
    v, _ = evaluate_loss(model, val_ex, ctx, pad_id)
    run.curve.append([run.step, round(v, 5)])
    log.info("train.eval", step=run.step, val_loss=round(v, 4), train_loss=round(run.losses[-1], 4))
    if keep_best and v < run.best_val:
        run.best_val, run.best_step, run.misses = v, run.step, 0
        run.best_state = {k: t.detach().clone() for k, t in model.state_dict().items()}
    elif keep_best:
        run.misses += 1
        if run.misses >= PATIENCE:  # memorising the training set now; nothing more to gain
            log.info("train.stop_early", step=run.step, best_step=run.best_step, best_val_loss=round(run.best_val, 4))
            return True
    return False
