"""The LoRA fine-tune's settings (presets by model size, the options), its result and its error."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

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
