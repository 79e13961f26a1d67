"""The LoRA run itself: the base loaded, the rows packed, the transformers Trainer (checkpoints,
--resume, --max-minutes), then the merge and the result."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import structlog

from ..train.tokenizer import chunks, with_system_prompt
from .chat_format import ChatFormat, to_examples
from .config import (
    EVAL_BATCH,
    EVALS_PER_RUN,
    LOGS_PER_RUN,
    MERGE_CHECK_CHUNKS,
    PRESETS,
    SAVE_CHECKPOINTS,
    WARMUP_FRACTION,
    FinetuneConfig,
    FinetuneError,
    FinetuneResult,
    pick_preset,
)
from .merging import merge_adapter
from .model import device_and_dtype, load_base, lora_config, persona_nll

log = structlog.get_logger(__name__)


def as_dataset(rows):
    from datasets import Dataset

    return Dataset.from_dict({"input_ids": [r.input_ids for r in rows], "labels": [r.labels for r in rows],
                              "position_ids": [r.position_ids for r in rows]})

# ----------------------------------------------------------------------------- training
def train(cfg: FinetuneConfig, base_dir, train_convs, val_convs, work: Path, system_prompt: str | None,
          callbacks=None) -> FinetuneResult | None:
    """Fine-tune, merge, check and save the merged checkpoint in WORK/merged. In a multi-process
    run (accelerate launch) every process trains; only the main one merges and returns a result."""
    import torch
    from accelerate import PartialState

    checkpointing_arg = _checkpointing_arg()
    t0 = time.monotonic()
    base_dir, work = Path(base_dir), Path(work)
    state = PartialState(cpu=not torch.cuda.is_available())  # cpu: gloo groups under torchrun
    device, dtype = device_and_dtype()
    torch.manual_seed(cfg.seed)

    # -- 1. base model, tokenizer, template
    model, tok, source, added_ids = load_base(base_dir, dtype, cfg.chat_template)
    n_params = sum(t.numel() for t in model.parameters())
    preset = pick_preset(cfg.preset, n_params)
    p = _hyperparameters(cfg, preset)
    ctx = min(p["max_length"], getattr(model.config.get_text_config(), "max_position_embeddings", p["max_length"]))
    fmt = ChatFormat(tok)
    log.info("finetune.base", base=str(base_dir), params=n_params, preset=preset, template=source,
             vocab=len(tok), added_tokens=len(added_ids), device=device, dtype=str(dtype).removeprefix("torch."))

    # -- 2. data: conversations -> (ids, targets), rows fitted to them; val is scored on persona tokens
    data = _training_data(cfg, p, model, tok, fmt, ctx, train_convs, val_convs, system_prompt, state, device, dtype)

    # -- the untuned model on the held-out persona tokens (the LoRA starts as the identity, B = 0)
    base_val, val_tokens = persona_nll(model, data.val_ex, tok.pad_token_id, data.fast.targets_only)
    log.info("finetune.base_eval", val_loss=round(base_val, 4), val_perplexity=round(math.exp(base_val), 3))

    # -- 3. LoRA with the transformers Trainer on packed rows (labels carry the mask, positions the packing)
    out_dir = work / "checkpoints"
    args = _training_args(cfg, p, data, out_dir, device, dtype, checkpointing_arg)
    trainer, trainable, targets_only = _lora_trainer(cfg, p, model, tok, added_ids, data, args, callbacks)
    resume = _last_checkpoint(out_dir) if cfg.resume else None
    t_train = time.monotonic()
    trainer.train(resume_from_checkpoint=resume)
    train_s = time.monotonic() - t_train
    adapter_dir = work / "adapter"
    trainer.save_model(str(adapter_dir))  # the adapter (and trainable token rows); gathered under FSDP
    curve = _loss_curve(trainer.state.log_history, base_val)
    steps, epochs = trainer.state.global_step, trainer.state.epoch or 0.0
    state.wait_for_everyone()
    del trainer, model
    if not state.is_main_process:
        return None

    # -- 4. merge into a fresh fp32 (or --merge-dtype) base, check logits, save
    merged_dir = work / "merged"
    diff, tol = merge_adapter(base_dir, adapter_dir, merged_dir, cfg.merge_dtype, data.val_ex[:MERGE_CHECK_CHUNKS],
                              cfg.chat_template)
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(str(merged_dir), dtype=torch.float32).to(state.device)
    val_loss, _ = persona_nll(merged, data.val_ex, tok.pad_token_id, data.fast.targets_only)
    del merged
    train_pts = curve["train"] or [[0, float("nan")]]
    seen = data.tokens * (steps * data.rows_per_step / max(1, len(data.rows)))  # tokens through the model while training
    result = FinetuneResult(
        merged_dir=str(merged_dir), steps=steps, epochs=round(float(epochs), 3), preset=preset,
        base_val_loss=base_val, val_loss=val_loss, val_tokens=val_tokens,
        train_loss_first=train_pts[0][1], train_loss_last=train_pts[-1][1], curve=curve,
        merge_max_abs_diff=diff, merge_tolerance=tol,
        chat_template=tok.chat_template, template_source=source,
        stop=list(dict.fromkeys(s for s in (fmt.end_of_turn(), tok.eos_token) if s)),
        bos_token=tok.bos_token or "", eos_token=tok.eos_token or "",
        n_params=n_params, trainable_params=trainable, context_length=ctx,
        minutes=(time.monotonic() - t0) / 60, device=device, dtype=str(dtype).removeprefix("torch."),
        hparams=_hparams(p, data, ctx, targets_only, train_s, seen, bool(getattr(tok, "add_bos_token", False))),
    )
    (work / "loss_curve.json").write_text(json.dumps(curve, indent=1) + "\n", encoding="utf-8")
    log.info("finetune.done", steps=steps, base_val_loss=round(base_val, 4), val_loss=round(val_loss, 4),
             merge_max_abs_diff=diff, tokens_per_s=result.hparams["train_tokens_per_s"],
             minutes=round(result.minutes, 2))
    return result


def _hyperparameters(cfg: FinetuneConfig, preset: str) -> dict:
    """The preset's settings with the options given over them; alpha/rank stays the preset's."""
    p = dict(PRESETS[preset])
    for k in ("epochs", "learning_rate", "batch_size", "max_length", "layers"):
        if getattr(cfg, k) is not None:
            p[k] = getattr(cfg, k)
    if cfg.rank is not None:
        p["alpha"], p["rank"] = p["alpha"] * cfg.rank / p["rank"], cfg.rank
    return p


@dataclass
class _TrainingData:
    """The rows to train on, how a step runs over them, and the held-out chunks."""

    val_ex: list
    rows: list  # packing.Row
    row_len: int
    fast: object  # lora_step.check_fast_path's verdict
    step: object  # lora_step.plan_step's plan
    world: int  # processes
    rows_per_step: int
    planned: int  # optimizer steps
    tokens: int  # per epoch
    targets: int  # target tokens per epoch


def _training_data(cfg: FinetuneConfig, p: dict, model, tok, fmt: ChatFormat, ctx: int, train_convs, val_convs,
                   system_prompt: str | None, state, device: str, dtype) -> _TrainingData:
    """Rendered, chunked and packed rows on the model's device, the step planned for the machine
    (threads set on the CPU, where dropout is turned off: `p` is changed), and the step count."""
    import torch

    from ..train import lora_step, packing

    rendered = [fmt.ids_and_targets(with_system_prompt(c, system_prompt), cfg.loss) for c in train_convs]
    row_len = packing.fit_row_length([len(ids) for ids, _ in rendered], ctx)
    train_ex = [c for ids, target in rendered for c in chunks(ids, target, row_len)]
    val_ex = to_examples(val_convs, fmt, system_prompt, "persona", ctx)
    if not train_ex:
        raise FinetuneError("train.jsonl yields no training targets (no persona turns with text?)")
    if not val_ex:
        raise FinetuneError("val.jsonl yields no persona tokens to evaluate")
    model.to(state.device)
    fast = lora_step.check_fast_path(model, train_ex, tok.pad_token_id)
    rows = packing.pack(train_ex, row_len) if fast.packing else [packing.pack([e], row_len)[0] for e in train_ex]
    world = state.num_processes
    step = lora_step.plan_step(model.config, device, p["batch_size"], row_len, cfg.gradient_checkpointing, dtype,
                               world)
    if device == "cpu":
        step = replace(step, threads=cfg.threads or step.threads)
        torch.set_num_threads(step.threads)
        p["dropout"] = 0.0  # a random mask over every adapted projection's input: a quarter of a CPU step
    rows_per_step = p["batch_size"] * p["grad_accum"] * world
    planned = cfg.steps or max(1, math.ceil(p["epochs"] * len(rows) / rows_per_step))
    tokens, targets = packing.row_tokens(rows)
    log.info("finetune.data", conversations=len(rendered), chunks=len(train_ex), rows=len(rows), row_length=row_len,
             tokens=tokens, target_tokens=targets, val_chunks=len(val_ex), ctx=ctx, steps=planned,
             rows_per_step=rows_per_step, processes=world)
    log.info("finetune.step", threads=step.threads, autocast=step.autocast, checkpointing=step.checkpointing,
             why=step.checkpointing_why, **fast.as_dict())
    return _TrainingData(val_ex, rows, row_len, fast, step, world, rows_per_step, planned, tokens, targets)


def _training_args(cfg: FinetuneConfig, p: dict, data: _TrainingData, out_dir: Path, device: str, dtype,
                   checkpointing_arg: str):
    import torch
    from transformers import TrainingArguments

    planned = data.planned
    every_eval = cfg.eval_steps or max(1, planned // EVALS_PER_RUN)
    return TrainingArguments(
        output_dir=str(out_dir),
        max_steps=planned,
        per_device_train_batch_size=p["batch_size"],
        per_device_eval_batch_size=EVAL_BATCH,
        gradient_accumulation_steps=p["grad_accum"],
        learning_rate=p["learning_rate"],
        lr_scheduler_type="cosine",
        warmup_steps=max(1, int(WARMUP_FRACTION * planned)),
        weight_decay=0.0,
        max_grad_norm=1.0,
        bf16=dtype == torch.bfloat16,  # a GPU's; the CPU's autocast is the trainer's own (lora_step)
        fp16=dtype == torch.float16,
        **{checkpointing_arg: data.step.checkpointing},
        logging_steps=max(1, planned // LOGS_PER_RUN),
        eval_strategy="steps",
        eval_steps=every_eval,
        prediction_loss_only=True,
        save_strategy="steps",
        save_steps=cfg.save_steps or max(1, planned // 5),
        save_total_limit=SAVE_CHECKPOINTS,
        seed=cfg.seed,
        data_seed=cfg.seed,
        report_to="none",
        remove_unused_columns=False,
        dataloader_num_workers=0,
        disable_tqdm=True,  # the build's own line shows the steps (progress_callback)
        use_cpu=device == "cpu",
    )


def _lora_trainer(cfg: FinetuneConfig, p: dict, model, tok, added_ids: list[int], data: _TrainingData, args,
                  callbacks):
    """(the Trainer over the LoRA-wrapped model, trainable parameters, whether it computes the
    logits of the target tokens only)."""
    from peft import get_peft_model

    from ..train import lora_step, packing

    cbs = [*(callbacks or []), progress_callback()]
    if cfg.max_minutes:
        cbs.append(budget_callback(cfg.max_minutes * 60))
    model = get_peft_model(model, lora_config(model, p, added_ids))
    if data.step.checkpointing:
        model.enable_input_require_grads()  # the frozen embeddings' output must carry grad through checkpoints
    trainable = sum(t.numel() for t in model.parameters() if t.requires_grad)
    log.info("finetune.lora", rank=p["rank"], alpha=p["alpha"], trainable=trainable,
             targets=sorted(model.peft_config["default"].target_modules))
    trainer_cls = lora_step.trainer_class()
    # Several processes: the Trainer wraps the model (DDP, FSDP), whose gradient exchange runs in the
    # wrapper's forward, which the targets-only path would go round: the model's own forward there.
    trainer_cls.targets_only = data.fast.targets_only and data.world == 1
    trainer_cls.cpu_autocast = data.step.autocast == "bfloat16"
    val_rows = [packing.pack([e], len(e[0]))[0] for e in data.val_ex]
    trainer = trainer_cls(model=model, args=args, train_dataset=as_dataset(data.rows),
                          eval_dataset=as_dataset(val_rows), data_collator=packing.Collator(tok.pad_token_id),
                          processing_class=tok, callbacks=cbs)
    return trainer, trainable, trainer_cls.targets_only


def _last_checkpoint(out_dir: Path) -> str:
    """--resume: the last checkpoint in `out_dir`; FinetuneError when there is none."""
    from transformers.trainer_utils import get_last_checkpoint

    resume = get_last_checkpoint(str(out_dir)) if out_dir.is_dir() else None
    if resume is None:
        raise FinetuneError(f"--resume: no checkpoint in {out_dir}; start without --resume")
    log.info("finetune.resume", checkpoint=resume)
    return resume


def _loss_curve(hist: list[dict], base_val: float) -> dict:
    """{"train": [[step, loss]], "eval": [[step, loss]]} from the Trainer's log; eval starts with the base's."""
    return {"train": [[h["step"], round(h["loss"], 5)] for h in hist if "loss" in h],
            "eval": [[0, round(base_val, 5)]] + [[h["step"], round(h["eval_loss"], 5)] for h in hist
                                                 if "eval_loss" in h]}


def _hparams(p: dict, data: _TrainingData, ctx: int, targets_only: bool, train_s: float, seen: float,
             bos_auto: bool) -> dict:
    """FinetuneResult.hparams: the settings the run used and how fast it went."""
    step = data.step
    return dict(rank=p["rank"], alpha=p["alpha"], dropout=p["dropout"], learning_rate=p["learning_rate"],
                lora_layers=p.get("layers") or "all",
                epochs_planned=p["epochs"], batch_size=p["batch_size"], grad_accum=p["grad_accum"],
                processes=data.world, max_length=ctx, row_length=data.row_len, rows=len(data.rows),
                tokens_per_epoch=data.tokens, target_tokens_per_epoch=data.targets,
                packing=data.fast.packing, targets_only_logits=targets_only,
                threads=step.threads, autocast=step.autocast or "none",
                gradient_checkpointing=step.checkpointing, gradient_checkpointing_why=step.checkpointing_why,
                train_seconds=round(train_s, 1), train_tokens_per_s=round(seen / train_s, 1) if train_s else None,
                tokenizer_adds_bos=bos_auto)


def _checkpointing_arg() -> str:
    from transformers import TrainingArguments

    fields = TrainingArguments.__dataclass_fields__  # transformers 5 renamed it; 4.x has the old name only
    return "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"


def budget_callback(seconds: float):
    """A callback that stops training after `seconds` of wall-clock time (--max-minutes), saving a
    checkpoint so that `--resume` can go on from there."""
    from transformers import TrainerCallback

    class Budget(TrainerCallback):
        t0 = time.monotonic()

        def on_step_end(self, args, state, control, **kw):
            if time.monotonic() - self.t0 > seconds:
                log.warning("finetune.budget_reached", step=state.global_step)
                control.should_training_stop = True
                control.should_save = True

    return Budget()


def progress_callback():
    """The trainer's steps as the train stage's bar (progress.py), in place of its own tqdm bars."""
    from transformers import TrainerCallback

    from .. import progress

    class Steps(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            progress.steps(state.max_steps, "steps")
            progress.advance(state.global_step)  # a resumed run starts part-way

        def on_step_end(self, args, state, control, **kw):
            progress.advance()

    return Steps()
