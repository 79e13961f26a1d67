"""What one musing may cost: threads, context, tokens, time and characters. Pure, no I/O.

    think_budget(board, model_bytes, energy, mode, ...) -> ThinkBudget

* threads     one core is left for the beacon and the radio; one thread in low energy
              (LOW_ENERGY and below, or any mode worse than nominal).
* n_ctx       the longest context (a multiple of 32) whose KV cache and compute buffers fit
              beside the model file in the board's model budget (stratoecho.boards).
* max_tokens  the persona's max_tokens scaled down as energy falls, and never more than
              the context leaves after the prompt or the radio can carry (max_chars).
* timeout_s   expected tokens/s (effective bandwidth / bytes read per token, docs/figures.md)
              for prompt plus musing, times a safety factor: the prediction is an upper
              bound (small models are compute bound, a cold Pi throttles).
* max_chars   the text one musing record may carry in its share of the airtime budget
              (musing_record_bytes), within the configuration's 20..2000.
* memory_limit_mb  the worker's RLIMIT_DATA (payload.persona.worker): its Python and libraries
              plus the KV cache and buffers, the mapped model file not included.

Every figure is monotone in `energy` where it scales with it and never drops below its
minimum, so a bad battery reading (NaN, counted as empty) still yields a usable budget.
Board data comes from stratoecho.boards (pure: no torch), with a core count added
here because targets.Board does not carry one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from stratoecho.airtime import lora_airtime_s
from stratoecho.boards import MB, Board, ModelShape, board, predicted_tokens_per_s
from stratoecho.wire.records import CHECK_BYTES, HEADER_BYTES

from .modes import Mode, runs

# Every board we fly is quad-core (Zero 2 W RP3A0, Pi 3 BCM2837, Pi 4 BCM2711, Pi 5 BCM2712).
CORES = {"pi-zero-2w": 4, "pi3": 4, "pi3-512mb": 4, "pi4": 4, "pi5": 4}
LOW_ENERGY = 0.3  # share of the energy budget below which the persona runs on one thread
MIN_THREADS = 1
MIN_CTX = 64  # a musing prompt (system prompt + readings) is ~60-100 tokens
CTX_STEP = 32
MIN_TOKENS = 8
MIN_TIMEOUT_S = 10.0
MIN_CHARS, MAX_CHARS = 20, 2000  # PersonaSection.max_chars's bounds
CHARS_PER_TOKEN_MIN = 2.0  # small vocabularies give short tokens: more tokens than this per char is waste
SAFETY = 3.0
PROMPT_TOKENS = 96
# The worker's own private memory before any KV cache: Python, llama-cpp-python, numpy and
# OpenBLAS, measured as VmData of the spawned worker with a tiny model loaded (147 MB, x86-64).
WORKER_BASE_MB = 160
# Without the model's shape: KV cache of a 24-layer, 1024-wide K/V model in F16 (bigger than
# SmolLM2-135M's or Qwen2.5-0.5B's), and llama.cpp's compute buffers for a 50k vocabulary.
FALLBACK_KV_BYTES_PER_TOKEN = 2 * 24 * 1024 * 2
FALLBACK_COMPUTE_BYTES = 32 * MB
RECORD_CREATED_BYTES = 4  # a record body starts with its creation time (wire.Record.body)
FRAME_CRC_BYTES = 2


@dataclass(frozen=True)
class ThinkBudget:
    enabled: bool  # False where the mode sheds the persona (modes.POLICY)
    n_threads: int
    n_ctx: int
    max_tokens: int
    timeout_s: float
    max_chars: int
    memory_limit_mb: int
    expected_tokens_per_s: float
    fits: bool  # False: even MIN_CTX does not fit beside the model; the figures are the minimums
    reason: str


def _cores(b: Board) -> int:
    family = "pi4" if b.name.startswith("pi4") else "pi5" if b.name.startswith("pi5") else b.name
    return CORES.get(family, 4)


def _runtime_bytes(n_ctx: int, shape: ModelShape | None) -> int:
    if shape is not None:
        return ModelShape(n_ctx, shape.n_layers, shape.n_embd_kv, shape.n_embd, shape.n_vocab, shape.n_ubatch).runtime_bytes
    return n_ctx * FALLBACK_KV_BYTES_PER_TOKEN + FALLBACK_COMPUTE_BYTES


def musing_record_bytes(airtime_s: float, mtu: int = 255, frame_airtime=None, fec_overhead: float = 1.5) -> int:
    """Text bytes one musing record may carry in `airtime_s` seconds on air: whole frames of
    `mtu` bytes (plus one shorter last frame) less framing, divided by the erasure code's
    overhead (frames sent per data frame), less the record's own time and check.
    `frame_airtime(n)`: a frame's time on air with the radio's settings (`RadioSection.airtime_s`;
    default SF9, 125 kHz, 4/5)."""
    if airtime_s <= 0 or not math.isfinite(airtime_s):
        return 0
    air = frame_airtime or (lambda n: lora_airtime_s(n, 9, 125_000, 5))
    full = air(mtu)
    frames = int(airtime_s // full)
    wire_bytes = frames * (mtu - HEADER_BYTES - FRAME_CRC_BYTES)
    left = airtime_s - frames * full
    last = max((n for n in range(HEADER_BYTES + FRAME_CRC_BYTES + 1, mtu)
                if air(n) <= left), default=0)
    if last:
        wire_bytes += last - HEADER_BYTES - FRAME_CRC_BYTES
    return max(0, int(wire_bytes / max(fec_overhead, 1.0)) - RECORD_CREATED_BYTES - CHECK_BYTES)


def think_budget(board_name: str | Board, model_bytes: int, energy: float, mode: Mode | str = Mode.NOMINAL, *,
                 max_tokens: int = 64, context_length: int = 2048, shape: ModelShape | None = None,
                 record_bytes: int = 280) -> ThinkBudget:
    """The budget of one musing on `board_name` for a GGUF of `model_bytes`, with `energy` the
    share (0..1) of the energy budget left and `mode` the power mode; `record_bytes` is what one
    musing record may take (musing_record_bytes), `max_tokens` the persona's own ceiling."""
    if model_bytes <= 0:
        raise ValueError(f"model size must be positive, got {model_bytes} bytes")
    b, mode = board(board_name), Mode(mode)
    energy = 0.0 if not (isinstance(energy, (int, float)) and math.isfinite(energy)) else min(1.0, max(0.0, energy))
    cores = _cores(b)
    low = energy <= LOW_ENERGY or mode is not Mode.NOMINAL

    n_threads = MIN_THREADS if low else max(MIN_THREADS, cores - 1)

    room = b.budget_bytes - model_bytes
    top = max(MIN_CTX, context_length // CTX_STEP * CTX_STEP)
    n_ctx = next((n for n in range(top, MIN_CTX - 1, -CTX_STEP) if _runtime_bytes(n, shape) <= room), None)
    fits = n_ctx is not None
    n_ctx = min(n_ctx or MIN_CTX, max(MIN_CTX, context_length))

    max_chars = min(MAX_CHARS, max(MIN_CHARS, record_bytes))  # chars = bytes: musings are mostly ASCII
    scale = energy * (0.5 if mode is not Mode.NOMINAL else 1.0)
    tokens = MIN_TOKENS + (max(max_tokens, MIN_TOKENS) - MIN_TOKENS) * scale
    tokens = min(tokens, math.ceil(max_chars / CHARS_PER_TOKEN_MIN), n_ctx - min(PROMPT_TOKENS, n_ctx // 2))
    tokens = max(MIN_TOKENS, int(tokens))

    kv_read = (shape.kv_read_bytes_per_token if shape is not None
               else n_ctx * FALLBACK_KV_BYTES_PER_TOKEN // 2)
    tps = predicted_tokens_per_s(b, model_bytes, kv_read) * min(1.0, n_threads / max(1, cores - 1))
    timeout_s = max(MIN_TIMEOUT_S, SAFETY * (PROMPT_TOKENS + tokens) / tps)

    memory_limit_mb = WORKER_BASE_MB + math.ceil(1.25 * _runtime_bytes(n_ctx, shape) / MB)
    reason = (f"{b.name}, {cores} cores, {mode.value}, energy {energy:.0%}: {n_threads} thread(s), "
              f"n_ctx {n_ctx}{'' if fits else ' (does not fit beside the model: minimum)'}, "
              f"{tokens} tokens at ~{tps:,.0f}/s predicted, timeout {timeout_s:.0f} s, {max_chars} chars")
    return ThinkBudget(enabled=runs(mode, "think"), n_threads=n_threads, n_ctx=n_ctx, max_tokens=tokens,
                       timeout_s=timeout_s, max_chars=max_chars, memory_limit_mb=memory_limit_mb,
                       expected_tokens_per_s=tps, fits=fits, reason=reason)


# Where a generation cannot be timed (the bench's lockstep: that would make a flight depend on the
# machine) it is priced on the board being rehearsed: prompt tokens at PREFILL_SPEEDUP
# times the generation speed (prompt processing is batched and compute bound, several times
# faster than generating on these boards), then each generated token at the predicted speed.
PREFILL_SPEEDUP = 4.0
BYTES_PER_PROMPT_TOKEN = 4  # a prompt's tokens, estimated from its UTF-8 length


def generation_s(board_name: str | Board, model_bytes: int, prompt_bytes: int, tokens: int) -> float:
    """Flight seconds one generation takes on `board_name`: the prompt read, then `tokens` generated."""
    tps = predicted_tokens_per_s(board(board_name), model_bytes)
    prompt_tokens = max(1, prompt_bytes // BYTES_PER_PROMPT_TOKEN)
    return prompt_tokens / (tps * PREFILL_SPEEDUP) + max(tokens, 0) / tps


# ----------------------------------------------------------------------------- candidates

# Of each musing period, the share the persona may spend writing candidates (issue 49): the board
# does little else between beacons, but every token costs energy (`[persona] joules_per_token`)
# and a musing that waits its turn for the CPU ages toward `stale_s`.
THINK_SHARE = 0.20
MAX_CANDIDATES = 4  # past four, a small model's versions repeat each other: choosing gains nothing


@dataclass(frozen=True)
class Candidates:
    n: int  # candidates a musing
    candidate_s: float  # one candidate's generation
    prompt_s: float  # the prompt, read once (llama.cpp keeps it: the next candidates continue from it)
    musing_s: float  # the musing period they share

    @property
    def seconds(self) -> float:
        """What choosing among `n` costs a musing: the prompt once, then `n` candidates."""
        return self.prompt_s + self.n * self.candidate_s


def candidates(tokens_per_s: float, musing_s: float, max_tokens: int, *, prompt_tokens: int = PROMPT_TOKENS,
               energy: float = 1.0, mode: Mode | str = Mode.NOMINAL, share: float = THINK_SHARE,
               most: int = MAX_CANDIDATES) -> Candidates:
    """How many candidates a musing may have at `tokens_per_s` (the board's predicted speed, or
    the speed the last generations were measured at), a musing every `musing_s` and candidates of
    `max_tokens`: as many as fit `share` of the period after the prompt is read, one at least and
    `most` at most; one when energy is low or the mode is not nominal (the persona is the first
    load shed: its candidates go before it does)."""
    tps = tokens_per_s if isinstance(tokens_per_s, (int, float)) and math.isfinite(tokens_per_s) else 0.0
    candidate_s = max(max_tokens, 1) / tps if tps > 0 else math.inf
    prompt_s = prompt_tokens / (tps * PREFILL_SPEEDUP) if tps > 0 else math.inf
    low = not (isinstance(energy, (int, float)) and math.isfinite(energy)) or energy <= LOW_ENERGY
    if low or Mode(mode) is not Mode.NOMINAL or not math.isfinite(candidate_s):
        n = 1
    else:
        n = int(max(0.0, share * musing_s - prompt_s) // candidate_s)
        n = max(1, min(most, n))
    return Candidates(n=n, candidate_s=candidate_s, prompt_s=prompt_s, musing_s=musing_s)
