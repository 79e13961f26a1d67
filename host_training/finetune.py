"""`build --base HF_MODEL_DIR`'s training (training.LoraTraining): LoRA on a pretrained transformers model.

The base model keeps its own chat template (ChatML is added when it has none), so the
persona speaks the format the model was instruction-tuned in. Steps:

  1. load the base (fp32 on the CPU, bf16 on a GPU that has it), its tokenizer and template;
  2. render every conversation with that template and find the persona's tokens by rendering
     it prefix by prefix (`ChatFormat.ids_and_targets`): works for any Jinja template, with
     or without `{% generation %}` markers; targets are the persona's words and the
     end-of-turn token the template closes its turn with;
  3. train LoRA adapters with trl's SFTTrainer on the pre-tokenized rows (our labels, so trl's
     own masking is not used: it needs `{% generation %}` markers most templates lack);
     presets by model size, checkpoints in WORK/checkpoints (`--resume` continues from the
     last), held-out loss every ~fifth of the run, loss curve kept;
  4. merge the adapter into a fresh fp32 copy of the base (`merge_and_unload`), compare the
     merged model's logits with base+adapter on a few val chunks, save an HF checkpoint.

The stages after training (pipeline.py) convert, quantize, evaluate and bundle it as for
--from-scratch, with the untuned base scored beside it.

Several GPUs: run the same command under `accelerate launch` (config/accelerate_fsdp.yaml,
docs/training.md); the Trainer shards, and only the main process merges and builds.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import structlog

from .tokenizer import CHATML_TEMPLATE, IM_END, IM_START, Conversation, chunks, fit_roles, with_system_prompt

log = structlog.get_logger(__name__)

# ----------------------------------------------------------------------------- configuration
# LoRA settings by model size; `auto` picks the first preset whose max_params holds the base.
# `tiny` is for the tests' few-million-parameter models (lr and epochs measured on the sample
# corpus); `small` for the ~100-300M models a Pi Zero 2 W runs (SmolLM2-135M, gemma-3-270m),
# measured on the sample corpus with SmolLM2-135M-Instruct (docs/training.md, "What a step
# costs"); the others are the usual starting points for persona-sized data (hundreds to a few
# thousand chats): rank 16 / alpha 32 on every attention and MLP projection, lr 2e-4 falling
# with size, 2-3 epochs (more memorises a small corpus). `max_length` is the bundle's context
# and the longest training row; rows are packed to a length fitted to the corpus (packing.py).
# Gradient checkpointing is decided from the memory there is (lora_step.plan_step) unless asked.
PRESETS: dict[str, dict] = {
    "tiny": dict(max_params=50e6, rank=8, alpha=16, dropout=0.0, learning_rate=3e-3, epochs=3,
                 max_length=256, batch_size=8, grad_accum=1),
    "small": dict(max_params=0.3e9, rank=16, alpha=32, dropout=0.0, learning_rate=2e-3, epochs=2,
                  max_length=1024, batch_size=4, grad_accum=1),
    "0.5b": dict(max_params=0.8e9, rank=16, alpha=32, dropout=0.05, learning_rate=2e-4, epochs=3,
                 max_length=1024, batch_size=4, grad_accum=4),
    "1b": dict(max_params=2e9, rank=16, alpha=32, dropout=0.05, learning_rate=1.5e-4, epochs=2,
               max_length=1024, batch_size=2, grad_accum=8),
    "3b": dict(max_params=math.inf, rank=16, alpha=32, dropout=0.05, learning_rate=1e-4, epochs=2,
               max_length=1024, batch_size=1, grad_accum=16),
}
# The decoder's projections by the names each family gives them: Llama, Qwen2/3, Mistral, Gemma
# (q/k/v/o, gate/up/down); Phi-3 and Phi-4-mini fuse q, k, v into qkv_proj and gate, up into
# gate_up_proj; LFM2 names attention's output out_proj, its convolution blocks' in_proj and
# out_proj, its MLP w1/w2/w3. A model with none of them gets peft's "all-linear".
PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
               "qkv_proj", "gate_up_proj", "out_proj", "in_proj", "w1", "w2", "w3"]
WARMUP_FRACTION = 0.05  # of the planned steps
EVALS_PER_RUN = 5  # held-out loss this many times, plus once before training (= the base model)
LOGS_PER_RUN = 50  # train-loss points in the curve
EVAL_BATCH = 8  # chunks per forward pass when scoring val.jsonl in transformers
MERGE_CHECK_CHUNKS = 4  # val chunks whose logits must agree between base+adapter and the merged model
# Max |logit difference| allowed after merging, relative to the largest |logit| (at least 1).
# fp32: merging reorders one sum per weight; measured ~1e-6 on the tiny model, so 1e-4 leaves
# room for long reductions in 3B models while a wrong merge (scale, transposition, a missed
# module) differs by the size of the fine-tune itself, orders of magnitude more. 16-bit: a
# merged weight is rounded once more (bf16 keeps 8 bits), so about 2^-8 relative.
MERGE_TOLERANCE = {"float32": 1e-4, "bfloat16": 1e-2, "float16": 2e-3}
SAVE_CHECKPOINTS = 2  # checkpoints kept in WORK/checkpoints


class FinetuneError(RuntimeError):
    """Fine-tuning cannot go on; the message says why and what to do."""


@dataclass
class FinetuneConfig:
    preset: str = "auto"  # a PRESETS key or "auto" (by parameter count)
    steps: int | None = None  # optimizer steps at most (None: the preset's epochs)
    epochs: float | None = None
    learning_rate: float | None = None
    rank: int | None = None  # LoRA rank; alpha scales with it (alpha/rank stays the preset's)
    batch_size: int | None = None
    max_length: int | None = None  # tokens per row; longer conversations are split
    gradient_checkpointing: bool | None = None  # None: on only where the activations would not fit (lora_step)
    seed: int = 1337
    loss: str = "persona"  # "persona": the persona's turns only; "all": every token
    chat_template: str = "base"  # "base": the tokenizer's own (ChatML if none); "chatml": always ChatML
    resume: bool = False  # continue from the last checkpoint in WORK/checkpoints
    max_minutes: float | None = None  # stop training after this wall-clock time
    merge_dtype: str = "float32"
    threads: int | None = None  # CPU threads; None: the free physical cores (lora_step.plan_step)
    layers: int | None = None  # LoRA on the top N decoder layers only; None: the preset's (0: all)
    save_steps: int | None = None  # None: ~5 checkpoints per run
    eval_steps: int | None = None


@dataclass
class FinetuneResult:
    merged_dir: str
    steps: int
    epochs: float
    preset: str
    base_val_loss: float  # transformers, persona tokens of val.jsonl, before training
    val_loss: float  # the same tokens, merged model
    val_tokens: int
    train_loss_first: float
    train_loss_last: float
    curve: dict = field(default_factory=dict)  # {"train": [[step, loss]], "eval": [[step, loss]]}
    merge_max_abs_diff: float = 0.0
    merge_tolerance: float = 0.0
    chat_template: str = ""
    template_source: str = "base"  # "base" or "chatml-added"
    stop: list = field(default_factory=list)
    bos_token: str = ""
    eos_token: str = ""
    n_params: int = 0
    trainable_params: int = 0
    context_length: int = 0
    minutes: float = 0.0
    device: str = "cpu"
    dtype: str = "float32"
    hparams: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def pick_preset(name: str, n_params: int) -> str:
    if name != "auto":
        if name not in PRESETS:
            raise FinetuneError(f"unknown LoRA preset {name!r}; choose auto or one of {', '.join(PRESETS)}")
        return name
    return next(k for k, p in PRESETS.items() if n_params <= p["max_params"])


# ----------------------------------------------------------------------------- chat template -> ids, targets
class ChatFormat:
    """A tokenizer's chat template and the persona's tokens under it.

    The targets are found by rendering the conversation prefix by prefix: the text that
    message i adds is render(messages[:i+1]) minus render(messages[:i]); within it the turn's
    content starts where its (stripped) text is found, and the target runs from there to the
    end of the added text, trailing whitespace left out (ChatML's "<|im_end|>\\n" keeps
    <|im_end|>; Llama-2's " words </s>" keeps </s>). Tokens overlapping a target span are
    targets. This needs only that each prefix renders as a prefix of the whole, which is
    checked; a template that breaks it is refused by name.
    """

    def __init__(self, tok):
        self.tok = tok
        if not tok.is_fast:
            raise FinetuneError("the base model's tokenizer is not a fast (tokenizer.json) one; offsets are needed")

    # -- rendering
    def render(self, conv: Conversation, add_generation_prompt: bool = False) -> str:
        if not conv and not add_generation_prompt:
            try:
                return self._apply(conv, False)
            except Exception:  # noqa: BLE001 - many templates index messages[0]
                return ""
        return self._apply(conv, add_generation_prompt)

    def _apply(self, conv, add_generation_prompt):
        msgs = [{"role": m["role"], "content": m["content"]} for m in conv]
        return self.tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=add_generation_prompt)

    def fit(self, conv: Conversation) -> Conversation:
        """The conversation in a shape the template accepts: as it is; else with consecutive turns of
        one role merged and an empty user turn before a persona that speaks first (Llama-2 wants
        user/assistant alternating); else with the system prompt folded into the first user turn."""
        fitted = fit_roles(conv, lambda c: self._apply(c, False))
        if fitted is None:
            try:
                self._apply(conv, False)
            except Exception as e:  # noqa: BLE001 - the template's own words say why
                raise FinetuneError(f"the chat template refuses a conversation even with roles alternating: {e}") from e
        return fitted

    # -- ids and targets
    def prefix_renders(self, conv: Conversation) -> list[str]:
        """render(conv[:i]) for i = 0..len(conv), each a prefix of the next. A template that closes
        every rendering with the EOS (Phi-3's and Phi-4-mini's `{% else %}{{ eos_token }}`) has
        that closing taken off each; any other that breaks the prefix property is refused."""
        renders = [self.render(conv[:i]) for i in range(len(conv) + 1)]
        eos = self.tok.eos_token or ""
        for tail in ("", eos):
            if tail and not all(r.endswith(tail) for r in renders[1:]):
                continue
            cut = [r[: len(r) - len(tail)] if tail and r.endswith(tail) else r for r in renders]
            if all(cut[i + 1].startswith(cut[i]) for i in range(len(cut) - 1)):
                return cut
        bad = next(i for i in range(len(renders) - 1) if not renders[i + 1].startswith(renders[i]))
        raise FinetuneError(
            "the chat template renders a conversation differently from its beginning (message "
            f"{bad}), so the persona's tokens cannot be located; use --chat-template chatml")

    def ids_and_targets(self, conv: Conversation, loss: str = "persona") -> tuple[list[int], list[bool]]:
        conv = self.fit(conv)
        full = self.render(conv)  # the training text: with the template's closing, if it has one
        cut = self.prefix_renders(conv)
        spans = []
        for i, m in enumerate(conv):
            prev, upto = cut[i], cut[i + 1]
            added = upto[len(prev):]
            text = m["content"].strip()
            is_target = loss == "all" or m["role"] == "assistant" or (m.get("train") == "all" and m["role"] == "user")
            if is_target and text:
                at = added.find(text)
                if at < 0:
                    raise FinetuneError(f"the chat template changes the text of message {i}; cannot locate it")
                spans.append((len(prev) + at, len(prev) + len(added.rstrip())))
        enc = self.tok(full, add_special_tokens=False, return_offsets_mapping=True)
        ids = enc["input_ids"]
        if loss == "all":
            return ids, [True] * len(ids)
        marks = bytearray(len(full))
        for s, e in spans:
            marks[s:e] = b"\x01" * (e - s)
        return ids, [any(marks[s:e]) for s, e in enc["offset_mapping"]]

    def end_of_turn(self) -> str:
        """What the template writes after a persona turn (e.g. <|im_end|>, <|eot_id|>, </s>, <|end|>)."""
        probe = [{"role": "user", "name": "", "content": "Hello?"},
                 {"role": "assistant", "name": "", "content": "PERSONA-PROBE"}]
        text = self.prefix_renders(self.fit(probe))[-1]
        return text[text.rfind("PERSONA-PROBE") + len("PERSONA-PROBE"):].strip()


def ensure_template(tok, model, mode: str = "base") -> tuple[str, list[int]]:
    """Give the tokenizer a chat template: its own, or ChatML (adding <|im_start|>/<|im_end|> as
    special tokens and resizing the embeddings when they are new).
    Returns ("base" or "chatml-added", ids of the added tokens)."""
    if mode == "base" and tok.chat_template:
        return "base", []
    new = [t for t in (IM_START, IM_END) if t not in tok.get_vocab()]
    if new:
        tok.add_special_tokens({"additional_special_tokens": new}, replace_extra_special_tokens=False)
        model.resize_token_embeddings(len(tok))
    tok.chat_template = CHATML_TEMPLATE
    tok.eos_token = IM_END  # generation ends at the end of the persona's turn
    if tok.pad_token is None:
        tok.pad_token = IM_END
    return "chatml-added", [tok.convert_tokens_to_ids(t) for t in new]


def to_examples(convs, fmt: ChatFormat, system_prompt, loss: str, ctx: int):
    out = []
    for conv in convs:
        ids, target = fmt.ids_and_targets(with_system_prompt(conv, system_prompt), loss)
        out.extend(chunks(ids, target, ctx))
    return out


def as_dataset(rows):
    from datasets import Dataset

    return Dataset.from_dict({"input_ids": [r.input_ids for r in rows], "labels": [r.labels for r in rows],
                              "position_ids": [r.position_ids for r in rows]})


# ----------------------------------------------------------------------------- scoring
def persona_nll(model, examples, pad_id: int, targets_only: bool = False) -> tuple[float, int]:
    """Mean NLL (nats) over the target tokens of `examples`, each chunk scored on its own, in the
    model's own precision (no autocast)."""
    import torch
    import torch.nn.functional as F

    from .lora_step import target_logits
    from .packing import Collator, pack

    device = next(model.parameters()).device
    collate = Collator(pad_id)
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    by_length = sorted(examples, key=lambda e: len(e[0]))  # batches of like lengths: little padding
    with torch.no_grad():
        for i in range(0, len(by_length), EVAL_BATCH):
            rows = [pack([e], len(e[0]))[0] for e in by_length[i : i + EVAL_BATCH]]
            b = {k: v.to(device) for k, v in collate([vars(r) for r in rows]).items()}
            logits, targets = target_logits(model, b["input_ids"], b["position_ids"], b["labels"], targets_only)
            total += float(F.cross_entropy(logits.float(), targets, reduction="sum"))
            count += int(targets.numel())
    model.train(was_training)
    return (total / count if count else float("nan")), count


def device_and_dtype():
    import torch

    if torch.cuda.is_available():
        return "cuda", (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    return "cpu", torch.float32


def load_base(base_dir: Path, dtype, template_mode: str = "base"):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (base_dir / "config.json").is_file():
        raise FinetuneError(f"{base_dir}: no config.json; expected a transformers model directory (save_pretrained)")
    tok = AutoTokenizer.from_pretrained(str(base_dir))
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=dtype)
    source, added = ensure_template(tok, model, template_mode)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return model, tok, source, added


def lora_config(model, p: dict, added_ids: list[int]):
    from peft import LoraConfig, TaskType

    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    targets = [t for t in PROJECTIONS if t in names] or "all-linear"
    extra = {}
    if added_ids:  # new ChatML tokens: train their embedding rows (and output rows when untied)
        emb = model.get_input_embeddings()
        emb_name = next(n for n, m in model.named_modules() if m is emb).rsplit(".", 1)[-1]
        tokens = {emb_name: added_ids}
        out = model.get_output_embeddings()
        if out is not None and not model.config.get_text_config().tie_word_embeddings:
            tokens[next(n for n, m in model.named_modules() if m is out).rsplit(".", 1)[-1]] = added_ids
        extra["trainable_token_indices"] = tokens
    n_layers = model.config.get_text_config().num_hidden_layers
    top = p.get("layers")
    if top and top < n_layers:  # the top layers only: the backward pass stops below the lowest adapted one
        extra["layers_to_transform"] = list(range(n_layers - top, n_layers))
    return LoraConfig(task_type=TaskType.CAUSAL_LM, r=p["rank"], lora_alpha=p["alpha"], lora_dropout=p["dropout"],
                      target_modules=targets, bias="none", **extra)


# ----------------------------------------------------------------------------- training
def train(cfg: FinetuneConfig, base_dir, train_convs, val_convs, work: Path, system_prompt: str | None,
          callbacks=None) -> FinetuneResult | None:
    """Fine-tune, merge, check and save the merged checkpoint in WORK/merged. In a multi-process
    run (accelerate launch) every process trains; only the main one merges and returns a result."""
    import torch
    from accelerate import PartialState
    from peft import get_peft_model
    from transformers import TrainingArguments

    from . import lora_step, packing

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
    p = dict(PRESETS[preset])
    for k in ("epochs", "learning_rate", "batch_size", "max_length", "layers"):
        if getattr(cfg, k) is not None:
            p[k] = getattr(cfg, k)
    if cfg.rank is not None:
        p["alpha"], p["rank"] = p["alpha"] * cfg.rank / p["rank"], cfg.rank
    ctx = min(p["max_length"], getattr(model.config.get_text_config(), "max_position_embeddings", p["max_length"]))
    fmt = ChatFormat(tok)
    log.info("finetune.base", base=str(base_dir), params=n_params, preset=preset, template=source,
             vocab=len(tok), added_tokens=len(added_ids), device=device, dtype=str(dtype).removeprefix("torch."))

    # -- 2. data: conversations -> (ids, targets), rows fitted to them; val is scored on persona tokens
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

    # -- the untuned model on the held-out persona tokens (the LoRA starts as the identity, B = 0)
    base_val, val_tokens = persona_nll(model, val_ex, tok.pad_token_id, fast.targets_only)
    log.info("finetune.base_eval", val_loss=round(base_val, 4), val_perplexity=round(math.exp(base_val), 3))

    # -- 3. LoRA with the transformers Trainer on packed rows (labels carry the mask, positions the packing)
    out_dir = work / "checkpoints"
    every_eval = cfg.eval_steps or max(1, planned // EVALS_PER_RUN)
    args = TrainingArguments(
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
        **{checkpointing_arg: step.checkpointing},
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
        disable_tqdm=not state.is_main_process,
        use_cpu=device == "cpu",
    )
    cbs = list(callbacks or [])
    if cfg.max_minutes:
        cbs.append(budget_callback(cfg.max_minutes * 60))
    model = get_peft_model(model, lora_config(model, p, added_ids))
    if step.checkpointing:
        model.enable_input_require_grads()  # the frozen embeddings' output must carry grad through checkpoints
    trainable = sum(t.numel() for t in model.parameters() if t.requires_grad)
    log.info("finetune.lora", rank=p["rank"], alpha=p["alpha"], trainable=trainable,
             targets=sorted(model.peft_config["default"].target_modules))
    trainer_cls = lora_step.trainer_class()
    # Several processes: the Trainer wraps the model (DDP, FSDP), whose gradient exchange runs in the
    # wrapper's forward, which the targets-only path would go round: the model's own forward there.
    trainer_cls.targets_only = fast.targets_only and world == 1
    trainer_cls.cpu_autocast = step.autocast == "bfloat16"
    val_rows = [packing.pack([e], len(e[0]))[0] for e in val_ex]
    trainer = trainer_cls(model=model, args=args, train_dataset=as_dataset(rows), eval_dataset=as_dataset(val_rows),
                          data_collator=packing.Collator(tok.pad_token_id), processing_class=tok, callbacks=cbs)
    resume = None
    if cfg.resume:
        from transformers.trainer_utils import get_last_checkpoint

        resume = get_last_checkpoint(str(out_dir)) if out_dir.is_dir() else None
        if resume is None:
            raise FinetuneError(f"--resume: no checkpoint in {out_dir}; start without --resume")
        log.info("finetune.resume", checkpoint=resume)
    t_train = time.monotonic()
    trainer.train(resume_from_checkpoint=resume)
    train_s = time.monotonic() - t_train
    adapter_dir = work / "adapter"
    trainer.save_model(str(adapter_dir))  # the adapter (and trainable token rows); gathered under FSDP
    hist = trainer.state.log_history
    curve = {"train": [[h["step"], round(h["loss"], 5)] for h in hist if "loss" in h],
             "eval": [[0, round(base_val, 5)]] + [[h["step"], round(h["eval_loss"], 5)] for h in hist
                                                  if "eval_loss" in h]}
    steps, epochs = trainer.state.global_step, trainer.state.epoch or 0.0
    state.wait_for_everyone()
    del trainer, model
    if not state.is_main_process:
        return None

    # -- 4. merge into a fresh fp32 (or --merge-dtype) base, check logits, save
    merged_dir = work / "merged"
    diff, tol = merge_adapter(base_dir, adapter_dir, merged_dir, cfg.merge_dtype, val_ex[:MERGE_CHECK_CHUNKS],
                              cfg.chat_template)
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(str(merged_dir), dtype=torch.float32).to(state.device)
    val_loss, _ = persona_nll(merged, val_ex, tok.pad_token_id, fast.targets_only)
    del merged
    train_pts = curve["train"] or [[0, float("nan")]]
    bos_auto = bool(getattr(tok, "add_bos_token", False))
    seen = tokens * (steps * rows_per_step / max(1, len(rows)))  # tokens through the model while training
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
        hparams=dict(rank=p["rank"], alpha=p["alpha"], dropout=p["dropout"], learning_rate=p["learning_rate"],
                     lora_layers=p.get("layers") or "all",
                     epochs_planned=p["epochs"], batch_size=p["batch_size"], grad_accum=p["grad_accum"],
                     processes=world, max_length=ctx, row_length=row_len, rows=len(rows),
                     tokens_per_epoch=tokens, target_tokens_per_epoch=targets,
                     packing=fast.packing, targets_only_logits=trainer_cls.targets_only,
                     threads=step.threads, autocast=step.autocast or "none",
                     gradient_checkpointing=step.checkpointing, gradient_checkpointing_why=step.checkpointing_why,
                     train_seconds=round(train_s, 1), train_tokens_per_s=round(seen / train_s, 1) if train_s else None,
                     tokenizer_adds_bos=bos_auto),
    )
    (work / "loss_curve.json").write_text(json.dumps(curve, indent=1) + "\n", encoding="utf-8")
    log.info("finetune.done", steps=steps, base_val_loss=round(base_val, 4), val_loss=round(val_loss, 4),
             merge_max_abs_diff=diff, tokens_per_s=result.hparams["train_tokens_per_s"],
             minutes=round(result.minutes, 2))
    return result


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


# ----------------------------------------------------------------------------- merging
def merge_adapter(base_dir, adapter_dir, out_dir, dtype_name: str, check_examples, template_mode="base"):
    """Merge the adapter into a fresh copy of the base in `dtype_name`, save it with the tokenizer,
    and return (max |logit difference| against base+adapter, allowed tolerance)."""
    import torch
    from peft import PeftModel

    dtype = getattr(torch, dtype_name)
    model, tok, _, _ = load_base(Path(base_dir), dtype, template_mode)
    model = PeftModel.from_pretrained(model, str(adapter_dir))
    model.eval()
    with torch.no_grad():
        before = [model(input_ids=torch.tensor([ids])).logits.float() for ids, _ in check_examples]
        merged = model.merge_and_unload()
        after = [merged(input_ids=torch.tensor([ids])).logits.float() for ids, _ in check_examples]
    diff = max(float((a - b).abs().max()) for a, b in zip(before, after, strict=True))
    scale = max(1.0, max(float(b.abs().max()) for b in before))
    tol = MERGE_TOLERANCE[dtype_name] * scale
    log.info("finetune.merge_check", max_abs_diff=diff, tolerance=tol, chunks=len(check_examples))
    if not diff <= tol:
        raise FinetuneError(
            f"merged model's logits differ from base+adapter by {diff:.3g} (allowed {tol:.3g}) on "
            f"{len(check_examples)} val chunks; the merge is wrong or --merge-dtype {dtype_name} too coarse")
    merged.save_pretrained(str(out_dir), safe_serialization=True)
    save_tokenizer(tok, Path(base_dir), Path(out_dir))
    return diff, tol


# Tokenizer files transformers 5 does not write back from a tokenizers-backed tokenizer. The
# SentencePiece model is what llama.cpp's converter reads for SentencePiece families (Gemma,
# Phi-3, Llama 2): without it, it takes the byte-level BPE path, which cannot describe them.
TOKENIZER_FILES_KEPT = ("tokenizer.model",)


def save_tokenizer(tok, base_dir: Path, out_dir: Path) -> None:
    """`tok` into `out_dir` as llama.cpp's converter reads a checkpoint. transformers 5 writes a
    leaner tokenizer_config.json than the one the converter was written against; put back:
      * tokenizer_class as the base declared it (the converter picks Phi-4-mini's BPE
        vocabulary over a SentencePiece one by it being GPT2Tokenizer; transformers 5 saves
        the class it instantiated, TokenizersBackend);
      * added_tokens_decoder, every added token with its flags (for SentencePiece families
        the converter types added tokens from it: without it Gemma's <start_of_turn> is plain
        text to llama.cpp, and ChatML tokens added to a SentencePiece base are missing);
      * add_bos_token / add_eos_token as the tokenizer behaves (without them llama.cpp
        guesses from the pre-tokenizer's name: a Llama 3 split gets a BOS whether or not
        the tokenizer adds one);
    and the base's SentencePiece model beside it (TOKENIZER_FILES_KEPT)."""
    import shutil

    tok.save_pretrained(str(out_dir))
    for name in TOKENIZER_FILES_KEPT:
        if (base_dir / name).is_file() and not (out_dir / name).exists():
            shutil.copyfile(base_dir / name, out_dir / name)
    path = out_dir / "tokenizer_config.json"
    cfg = json.loads(path.read_text(encoding="utf-8"))
    base_cfg = base_dir / "tokenizer_config.json"
    declared = json.loads(base_cfg.read_text(encoding="utf-8")).get("tokenizer_class") if base_cfg.is_file() else None
    if declared:
        cfg["tokenizer_class"] = declared
    ids = tok("x")["input_ids"]
    cfg["add_bos_token"] = tok.bos_token_id is not None and ids[:1] == [tok.bos_token_id]
    cfg["add_eos_token"] = tok.eos_token_id is not None and len(ids) > 1 and ids[-1:] == [tok.eos_token_id]
    cfg.setdefault("added_tokens_decoder", {
        str(i): {"content": t.content, "lstrip": t.lstrip, "normalized": t.normalized, "rstrip": t.rstrip,
                 "single_word": t.single_word, "special": t.special}
        for i, t in sorted(tok.added_tokens_decoder.items())})
    path.write_text(json.dumps(cfg, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
