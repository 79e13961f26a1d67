"""How a LoRA step runs as fast as the machine allows (finetune.train uses all of this).

Measured on SmolLM2-135M on two cores of an AVX512-BF16 CPU (docs/training.md, "What a step
costs"), the old step spent its time on padding (rows padded to 1,024 tokens for conversations
of ~200), on recomputing activations (gradient checkpointing, which a 135M model on a 24 GB
machine does not need), on float32 matrix products where the CPU multiplies bfloat16 at twice
the rate, and on the output layer's 49,152-wide logits at every position when the persona's
turns are the only targets. So:

    rows            conversations packed into rows fitted to the corpus (packing.py)
    threads         one per physical core this process may run on and no other process is
                    keeping busy when training starts (hyper-threads share a core's multipliers;
                    a thread on a busy core holds every other one up at each barrier: on two
                    cores with one busy, two threads made a step 1.8x slower than one), shared
                    among the processes of a multi-process run; OMP_NUM_THREADS, when set, is
                    obeyed
    dropout         none on the CPU: LoRA's dropout draws a random mask over the input of
                    every adapted projection, which cost a quarter of a CPU forward pass
    precision       bfloat16 autocast on a CPU with AVX512-BF16 or AMX (x86-64) or BF16
                    (Arm), float32 elsewhere; on a GPU bf16 or fp16 as before. Weights, the
                    optimizer and the merge stay float32.
    checkpointing   only when the activations would not fit in half the memory there is
    targets only    the output layer runs on the positions whose next token is a target

The last two change nothing but speed, and the first changes only which tokens share a row:
`check_fast_path` proves that on the model being trained before the first step (packed rows
against each conversation alone, targets-only logits against the model's own), and a model
where either differs (a family with a logit post-processing we do not know, a convolution
that looks across the packed boundary) trains without that shortcut, with a warning.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import structlog

from .packing import IGNORE

log = structlog.get_logger(__name__)

BUSY_WINDOW_S = 0.5  # how long the CPU's idle time is watched before the threads are chosen
MEMORY_SHARE = 0.5  # activations may take this share of the memory available before checkpointing goes on
FAST_PATH_TOLERANCE = 1e-4  # max |logit difference| / max(1, max |logit|), float32
CHECK_TOKENS = 96  # of each of the two conversations the fast path is checked on
X86_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
ARM_BF16_FLAGS = ("bf16",)


# ----------------------------------------------------------------------------- the machine
def _cpu_flags(cpuinfo: str) -> set[str]:
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return flags


def cpu_has_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU multiplies bfloat16 natively (Linux /proc/cpuinfo; False where unknown)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return False
    flags = _cpu_flags(cpuinfo)
    return any(f in flags for f in X86_BF16_FLAGS + ARM_BF16_FLAGS)


def usable_cores() -> int:
    """The CPUs this process may run on: its affinity (taskset, a container's cpuset), not every CPU
    the machine has. A thread beyond them stalls llama.cpp's and torch's pools at every barrier."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def physical_cores(sys_root: Path = Path("/sys/devices/system/cpu")) -> int:
    """Physical cores among the CPUs this process may run on (one per set of hyper-thread
    siblings); the CPU count where the topology cannot be read."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    cores = set()
    for c in cpus:
        try:
            cores.add((sys_root / f"cpu{c}" / "topology" / "thread_siblings_list").read_text().strip())
        except OSError:
            return len(cpus)
    return max(1, len(cores))


def _cpu_times(stat: str) -> tuple[int, int]:
    """(idle, total) jiffies from /proc/stat's first line."""
    fields = [int(x) for x in stat.splitlines()[0].split()[1:]]
    return fields[3] + (fields[4] if len(fields) > 4 else 0), sum(fields[:8])


def busy_cores(window_s: float = BUSY_WINDOW_S, read=lambda: Path("/proc/stat").read_text()) -> float:
    """How many CPUs' worth of work other processes did over `window_s` (0 where unknown)."""
    import time

    try:
        idle0, total0 = _cpu_times(read())
        time.sleep(window_s)
        idle1, total1 = _cpu_times(read())
    except (OSError, ValueError, IndexError):
        return 0.0
    if total1 <= total0:
        return 0.0
    return (1 - (idle1 - idle0) / (total1 - total0)) * (os.cpu_count() or 1)


def available_memory_bytes(device: str) -> int | None:
    """Memory free for activations: the GPU's free memory, or the host's MemAvailable."""
    if device == "cuda":
        import torch

        return int(torch.cuda.mem_get_info()[0])
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def activation_bytes(config, rows: int, row_length: int, bytes_per_value: int) -> int:
    """What a forward pass keeps for the backward pass, after Korthikanti et al. (2022):
    s·b·h·(34 + 5·a·s/h) values per layer (attention's score matrices included)."""
    c = config.get_text_config() if hasattr(config, "get_text_config") else config
    h, a, n = c.hidden_size, c.num_attention_heads, c.num_hidden_layers
    s = row_length
    return int(s * rows * h * (34 + 5 * a * s / h) * n * bytes_per_value / 2)  # the formula counts 2-byte values


@dataclass(frozen=True)
class StepPlan:
    """How the steps will run, for the log and persona.toml [training]."""

    device: str
    threads: int
    autocast: str | None  # "bfloat16" or None (the weights' own precision)
    checkpointing: bool
    checkpointing_why: str
    activation_mb: float
    available_mb: float | None


def plan_step(config, device: str, rows: int, row_length: int, asked_checkpointing: bool | None,
              weights_dtype, processes: int = 1) -> StepPlan:
    import torch

    if device != "cpu" or os.environ.get("OMP_NUM_THREADS"):
        threads = torch.get_num_threads()
    else:  # a thread on a core another process keeps busy stalls every step at its barriers
        free = physical_cores() - round(busy_cores())
        threads = max(1, free // max(1, processes))
    autocast = "bfloat16" if device == "cpu" and cpu_has_bf16() else None
    width = 2 if (autocast or weights_dtype in (torch.bfloat16, torch.float16)) else 4
    need = activation_bytes(config, rows, row_length, width)
    avail = available_memory_bytes(device)
    if asked_checkpointing is not None:
        on, why = asked_checkpointing, "asked for (--gradient-checkpointing)" if asked_checkpointing else "turned off"
    elif avail is None:
        on, why = True, "the free memory could not be read"
    else:
        on = need > MEMORY_SHARE * avail
        why = (f"activations ~{need / 1e6:,.0f} MB against {avail / 1e6:,.0f} MB available "
               f"({'more' if on else 'less'} than {MEMORY_SHARE:.0%})")
    return StepPlan(device, threads, autocast, on, why, round(need / 1e6, 1),
                    None if avail is None else round(avail / 1e6, 1))


# ----------------------------------------------------------------------------- the loss on targets only
def _parts(model):
    """(the decoder stack, the output layer, the logit soft-cap or None) of a causal LM, through peft."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = getattr(base, base.base_model_prefix, None)
    head = base.get_output_embeddings()
    cfg = base.config.get_text_config() if hasattr(base.config, "get_text_config") else base.config
    return decoder, head, getattr(cfg, "final_logit_softcapping", None)


def target_logits(model, input_ids, position_ids, labels, targets_only: bool):
    """(logits at the positions whose next token is a target, those tokens). `targets_only` runs
    the output layer there alone; otherwise the model's own forward gives every position's."""
    import torch

    nxt = labels[:, 1:]
    sel = nxt != IGNORE
    if targets_only:
        decoder, head, cap = _parts(model)
        hidden = decoder(input_ids=input_ids, position_ids=position_ids, use_cache=False).last_hidden_state
        logits = head(hidden[:, :-1][sel])
        if cap:  # Gemma 2's soft cap on the final logits
            logits = torch.tanh(logits / cap) * cap
    else:
        logits = model(input_ids=input_ids, position_ids=position_ids, use_cache=False).logits[:, :-1][sel]
    return logits, nxt[sel]


def target_loss(model, batch: dict, targets_only: bool):
    """Mean cross-entropy (nats) over the batch's target tokens."""
    import torch.nn.functional as F

    logits, targets = target_logits(model, batch["input_ids"], batch["position_ids"], batch["labels"], targets_only)
    return F.cross_entropy(logits.float(), targets)


@dataclass(frozen=True)
class FastPath:
    packing: bool
    targets_only: bool
    packing_diff: float
    targets_only_diff: float

    def as_dict(self) -> dict:
        return dict(packing=self.packing, targets_only=self.targets_only, packing_max_rel_diff=self.packing_diff,
                    targets_only_max_rel_diff=self.targets_only_diff)


def check_fast_path(model, examples, pad_id: int) -> FastPath:
    """Before the first step, in float32 on this very model: the targets-only logits against the
    model's own forward on one conversation, and two conversations packed into one row against
    each alone. A shortcut whose logits differ by more than FAST_PATH_TOLERANCE is not taken."""
    import torch

    from .packing import Collator, pack

    # Two short pieces are proof enough, and cheap (a float32 forward pass of a whole 700-token
    # conversation takes seconds on a small CPU): each cut to CHECK_TOKENS, keeping its targets.
    ex = [(ids[:CHECK_TOKENS], tg[:CHECK_TOKENS]) for ids, tg in examples if any(tg[1:CHECK_TOKENS])][:2]
    if len(ex) < 2:
        return FastPath(False, False, float("nan"), float("nan"))
    col = Collator(pad_id)

    def as_batch(rows):
        return col([{"input_ids": r.input_ids, "labels": r.labels, "position_ids": r.position_ids} for r in rows])

    def rel(a, b) -> float:
        return float((a - b).abs().max()) / max(1.0, float(b.abs().max()))

    was = model.training
    model.eval()
    with torch.no_grad():
        alone = [as_batch(pack([e], len(e[0]))) for e in ex]
        own = [target_logits(model, b["input_ids"], b["position_ids"], b["labels"], False)[0] for b in alone]
        try:
            sparse = target_logits(model, alone[0]["input_ids"], alone[0]["position_ids"], alone[0]["labels"], True)[0]
            t_diff = rel(sparse, own[0])
        except (AttributeError, TypeError, RuntimeError) as e:  # a model without the usual decoder/head parts
            log.warning("finetune.targets_only_unavailable", error=str(e))
            t_diff = float("inf")
        both = as_batch(pack(ex, len(ex[0][0]) + len(ex[1][0])))
        packed = target_logits(model, both["input_ids"], both["position_ids"], both["labels"], False)[0]
        # pack() puts the longer one first
        order = sorted(range(2), key=lambda i: -len(ex[i][0]))
        p_diff = rel(packed, torch.cat([own[i] for i in order]))
    model.train(was)
    path = FastPath(p_diff <= FAST_PATH_TOLERANCE, t_diff <= FAST_PATH_TOLERANCE, p_diff, t_diff)
    if not path.packing:
        log.warning("finetune.no_packing", max_rel_diff=p_diff,
                    why="this model's logits change when conversations share a row: one conversation a row")
    if not path.targets_only:
        log.warning("finetune.full_logits", max_rel_diff=t_diff,
                    why="targets-only logits differ from the model's own: every position's logits are computed")
    return path


def trainer_class():
    """transformers' Trainer with the loss above (imported late: transformers is heavy)."""
    from transformers import Trainer

    class PersonaTrainer(Trainer):
        targets_only = True
        cpu_autocast = False  # bfloat16 autocast on the CPU (StepPlan.autocast)
        loss_is_scaled_for_ga = False  # a per-micro-batch mean: the Trainer divides by the accumulation steps

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            import torch

            # Here, not through TrainingArguments(bf16=True): accelerate puts its autocast around the
            # model's forward, which the targets-only path does not call.
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.cpu_autocast):
                loss = target_loss(model, inputs, self.targets_only)
            return (loss, {"loss": loss}) if return_outputs else loss

    return PersonaTrainer
