"""Which quantization fits which Raspberry Pi, and how fast it will run there. Pure logic, no I/O.

Shared facts about the boards: the workstation sizes a model for one with them, and the
payload sizes each musing to the one it runs on (payload/policy/budget.py), so they live in the
shared core that both import.

`build --target BOARD` (through quantize.for_target) asks three questions of this module:

  * does a GGUF of N bytes, run with a context of n_ctx tokens, fit in what the board can
    give the model? (`fits`, `runtime_bytes`)
  * how many tokens/s will it generate there? (`predicted_tokens_per_s`)
  * of the candidates that fit, which is the smallest whose measured drift from the F32
    model is within the tolerance? (`choose`)

Memory budget of a board (`Board.budget_bytes`) = RAM
    - GPU/CMA reserve      64 MB: the firmware's carve-out for a headless image (Raspberry Pi
                           OS default; `gpu_mem=16` gives some back on a Pi <= 4, but we do
                           not assume the flight image sets it)
    - operating system     idle Raspberry Pi OS Lite, kernel and services: 100 MB on the
                           Cortex-A53 boards, 200 MB on Pi 4/5 (more services, and kernel
                           structures that scale with RAM). Assumptions, not measurements:
                           check with `free -m` on the flight image.
    - payload daemon       64 MB: measured RSS of a Python 3.11 process that imported every
                           payload module plus llama-cpp-python and numpy, before any model
                           (63 MB on x86-64; an arm64 Pi is in the same range)
    - headroom             10 % of RAM, at least 48 MB: page cache for the store's fsyncs, the
                           camera and SSDV buffers, so that the kernel never evicts the
                           memory-mapped model (which would then be re-read from the SD card
                           on every token) and the OOM killer never has to choose.
and the model then needs its file (llama.cpp maps all of it and touches every weight per
token) plus its runtime memory: the KV cache and llama.cpp's compute buffers (`runtime_bytes`).
Cross-check against docs/figures.md: SmolLM2-135M Q4_K_M (~105 MB file) on a Zero 2 W runs in
~300-350 MB of the 512 MB, i.e. llama.cpp's defaults (4096-token F16 cache ~94 MB, a
49k-vocabulary compute buffer) plus the OS; our budget for that board, 233 MB, admits it
only with a shorter context, as the payload runs it.

RAM sizes: `pi-zero-2w` 512 MB; `pi3` is the Pi 3 B/B+ with 1 GB (the 3 A+ has 512 MB: use
`pi3-512mb`). Pi 4 and Pi 5 come in several sizes (Pi 4: 1/2/4/8 GB, Pi 5: 2/4/8/16 GB);
a bare `pi4` or `pi5` means the 2 GB board. Decision: a budget chosen for the smallest
commonly flown size is safe on every larger one, while the reverse would crash the persona
in the stratosphere; name the size (`pi4-4gb`, `pi5-8gb`, ...) to use more.

Bandwidth (docs/figures.md, effective bandwidth llama.cpp achieves, not the DRAM's peak): Pi 5
~10 GB/s, Pi 4 3.3-4.6 GB/s (we predict with the middle, 3.9, and report the range), Zero
2 W ~1.1 GB/s. The Pi 3 has no published figure there; its BCM2837 is the same quad
Cortex-A53 with LPDDR2 as the Zero 2 W's RP3A0, so we take the Zero 2 W's 1.1 GB/s
(an inference, not a measurement). Since these are already effective figures, the
efficiency factor is 1.0: tokens/s = bandwidth / bytes read per token, bytes read = the
GGUF file (every weight once per token) plus the KV cache read at half the context.
Checked against docs/figures.md's measurements: Pi 5, Qwen2.5-0.5B Q4_K_M (~0.4 GB): 10/0.4 = 25
predicted, 25.8 measured; Pi 4, Qwen2.5-0.5B Q4_0 (~0.35 GB): 9.4-13 predicted, 9.8
measured; Zero 2 W, SmolLM2-135M Q4_K_M (~0.1 GB): ~10.5 predicted, 9-11 measured.
A model of a few MB is compute-bound long before that: for it the figure is an upper bound.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Mapping

MB = 1024 * 1024
GB = 1024 * MB

# ----------------------------------------------------------------------------- configuration
GPU_RESERVE_BYTES = 64 * MB
DAEMON_BYTES = 64 * MB
HEADROOM_FRACTION = 0.10
HEADROOM_MIN_BYTES = 48 * MB
KV_BYTES_PER_ELEMENT = 2  # llama.cpp's default F16 K and V cache
COMPUTE_FLOAT_BYTES = 4  # llama.cpp's CPU compute buffers are F32
DEFAULT_UBATCH = 512  # llama.cpp's default micro-batch (n_ubatch) for prompt processing


@dataclass(frozen=True)
class Board:
    name: str
    ram_bytes: int
    os_bytes: int
    bandwidth_gb_s: float  # effective, as llama.cpp sees it (docs/figures.md); the prediction uses this
    bandwidth_range_gb_s: tuple[float, float]
    note: str
    power_w: tuple[float, float] | None = None  # (idle, every core busy), docs/figures.md; None: no published figure

    @property
    def headroom_bytes(self) -> int:
        return max(HEADROOM_MIN_BYTES, int(HEADROOM_FRACTION * self.ram_bytes))

    @property
    def reserved_bytes(self) -> int:
        """What the board keeps for everything but the model: GPU, OS, payload daemon, headroom."""
        return GPU_RESERVE_BYTES + self.os_bytes + DAEMON_BYTES + self.headroom_bytes

    @property
    def budget_bytes(self) -> int:
        """Bytes the model may use: its file plus its KV cache and compute buffers."""
        return self.ram_bytes - self.reserved_bytes

    def describe(self) -> str:
        return (f"{self.name} ({_mb(self.ram_bytes)} RAM, {_mb(self.budget_bytes)} for the model after "
                f"{_mb(self.reserved_bytes)} for GPU, OS, payload daemon and headroom)")


def _mb(n: float) -> str:
    return f"{n / MB:,.1f} MB" if n < 10 * MB else f"{n / MB:,.0f} MB"


def _pi4(gb: int) -> Board:
    return Board(f"pi4-{gb}gb", gb * GB, 200 * MB, 3.9, (3.3, 4.6), "Raspberry Pi 4 B, Cortex-A72, LPDDR4", (1.6, 5.0))


def _pi5(gb: int) -> Board:
    return Board(f"pi5-{gb}gb", gb * GB, 200 * MB, 10.0, (10.0, 10.0), "Raspberry Pi 5, Cortex-A76, LPDDR4X", (2.8, 9.7))


BOARDS: dict[str, Board] = {
    "pi-zero-2w": Board("pi-zero-2w", 512 * MB, 100 * MB, 1.1, (1.1, 1.1), "Raspberry Pi Zero 2 W, RP3A0, LPDDR2",
                        (0.6, 2.3)),
    "pi3": Board("pi3", 1 * GB, 100 * MB, 1.1, (1.1, 1.1),
                 "Raspberry Pi 3 B/B+, BCM2837, LPDDR2; bandwidth taken from the Zero 2 W (same SoC family)"),
    "pi3-512mb": Board("pi3-512mb", 512 * MB, 100 * MB, 1.1, (1.1, 1.1),
                       "Raspberry Pi 3 A+, BCM2837, LPDDR2; bandwidth taken from the Zero 2 W"),
    **{f"pi4-{gb}gb": _pi4(gb) for gb in (1, 2, 4, 8)},
    **{f"pi5-{gb}gb": _pi5(gb) for gb in (2, 4, 8, 16)},
}
ALIASES = {"pi4": "pi4-2gb", "pi5": "pi5-2gb", "pi3-1gb": "pi3", "pi-zero-2w-512mb": "pi-zero-2w"}
TARGETS = ("pi-zero-2w", "pi3", "pi4", "pi5")  # the names `--target` documents; sized variants also work


class NothingFits(ValueError):
    """No candidate fits the board; the message names the smallest one and the budget."""


def board(name: str | Board) -> Board:
    """The Board for `name` (case-insensitive; `pi4` = `pi4-2gb`); ValueError listing the names otherwise."""
    if isinstance(name, Board):
        return name
    key = re.sub(r"\s+", "", name.strip().lower())
    key = ALIASES.get(key, key)
    if key not in BOARDS:
        names = list(TARGETS) + sorted(set(BOARDS) - set(TARGETS))
        raise ValueError(f"unknown target board {name!r}; choose one of {', '.join(names)}")
    return BOARDS[key]


# ----------------------------------------------------------------------------- memory
@dataclass(frozen=True)
class ModelShape:
    """What the runtime memory depends on besides the file (read from the GGUF's header)."""

    n_ctx: int  # context the payload runs with, tokens
    n_layers: int
    n_embd_kv: int  # n_head_kv * head_dim: width of one layer's K (and of its V)
    n_embd: int = 0
    n_vocab: int = 0
    n_ubatch: int = DEFAULT_UBATCH

    @property
    def kv_cache_bytes(self) -> int:
        """K and V for every layer and every position of the context, F16."""
        return 2 * self.n_layers * self.n_ctx * self.n_embd_kv * KV_BYTES_PER_ELEMENT

    @property
    def compute_bytes(self) -> int:
        """Rough worst case of llama.cpp's compute buffer: F32 activations of one micro-batch
        (logits over the vocabulary dominate for big vocabularies, a few hidden-width rows
        otherwise). An estimate, not llama.cpp's exact graph allocation."""
        rows = min(self.n_ubatch, self.n_ctx) if self.n_ctx else self.n_ubatch
        return COMPUTE_FLOAT_BYTES * rows * (self.n_vocab + 4 * self.n_embd)

    @property
    def runtime_bytes(self) -> int:
        return self.kv_cache_bytes + self.compute_bytes

    @property
    def kv_read_bytes_per_token(self) -> int:
        """KV cache read to generate one token, on average over a context filled to half."""
        return self.kv_cache_bytes // 2


def runtime_bytes(shape: ModelShape | None) -> int:
    return shape.runtime_bytes if shape is not None else 0


def fits(board_name: str | Board, model_file_bytes: int, shape: ModelShape | None = None) -> bool:
    """True when the file plus the KV cache and compute buffers of `shape` fit the board's budget."""
    b = board(board_name)
    return model_file_bytes + runtime_bytes(shape) <= b.budget_bytes


def longest_context(board_name: str | Board, model_file_bytes: int, shape: ModelShape, top: int,
                    floor: int = 64, step: int = 32) -> int | None:
    """The longest context, a multiple of `step` from `top` down to `floor`, at which a file of
    `model_file_bytes` with the KV cache and compute buffers of `shape` (at that context) fits the
    board; None when not even `floor` does. How the payload sizes n_ctx (payload/policy/budget.py)."""
    b = board(board_name)
    for n in range(max(floor, top // step * step), floor - 1, -step):
        at = ModelShape(n, shape.n_layers, shape.n_embd_kv, shape.n_embd, shape.n_vocab, shape.n_ubatch)
        if fits(b, model_file_bytes, at):
            return n
    return None


# ----------------------------------------------------------------------------- speed
def predicted_tokens_per_s(board_name: str | Board, model_bytes: int, kv_read_bytes: int = 0,
                           bandwidth_gb_s: float | None = None) -> float:
    """Generation speed where memory bandwidth is the limit: bandwidth / bytes read per token.

    bytes read per token = the GGUF file (every weight once) + `kv_read_bytes` (KV cache read;
    ModelShape.kv_read_bytes_per_token for a half-full context). Efficiency factor 1.0: the
    board's bandwidth is already the effective one llama.cpp achieves (docs/figures.md). For models of
    a few MB this is an upper bound: they run out of arithmetic first.
    """
    if model_bytes <= 0:
        raise ValueError(f"model size must be positive, got {model_bytes} bytes")
    gb_s = board(board_name).bandwidth_gb_s if bandwidth_gb_s is None else bandwidth_gb_s
    return gb_s * 1e9 / (model_bytes + kv_read_bytes)


# ----------------------------------------------------------------------------- choice
@dataclass(frozen=True)
class Choice:
    quant: str
    reason: str
    fitting: tuple[str, ...]  # every candidate that fits, least drift first
    within_tolerance: bool  # False: nothing that fits meets the tolerance and floor; `quant` has the least drift


def choose(
    board_name: str | Board,
    candidates: Mapping[str, tuple[int, float] | tuple[int, float, float]],
    shape: ModelShape | None = None,
    *,
    tolerance: float,
    min_top1: float = 0.0,
) -> Choice:
    """Among `candidates` ({quant: (file bytes, drift[, top-1 agreement])}), the smallest file
    that fits, whose drift is within `tolerance` and whose top-1 agreement is at least `min_top1`.

    The drift is what quantizing cost, measured with its uncertainty: the caller passes the
    upper end of its confidence interval (host_training/evaluate/drift.py: the increase of the held-out
    loss over the F32 model, nats/token), so a type is taken only when even its pessimistic
    figure is within the tolerance, and a bigger file is never taken for a difference inside
    the noise. The top-1 agreement (share of tokens whose most likely next token is the F32
    model's) is passed the same way, as the lower end of its interval; a candidate given
    without one is judged on its drift alone. Ties go to the smaller drift. When nothing that
    fits meets both, the candidate within the drift with the best agreement is taken, or, when
    none is within the drift, the least drift that fits; the reason says which
    (`within_tolerance` False).
    NothingFits when nothing fits, naming the smallest candidate and the board's budget.
    """
    b = board(board_name)
    if not candidates:
        raise ValueError("no candidates to choose from")
    if not (isinstance(tolerance, (int, float)) and math.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"the drift tolerance must be a finite number >= 0, got {tolerance!r}")
    if not (isinstance(min_top1, (int, float)) and 0 <= min_top1 <= 1):
        raise ValueError(f"the top-1 agreement floor must be a number from 0 to 1, got {min_top1!r}")
    judged = _judged(candidates)
    extra = runtime_bytes(shape)
    ok = {q: v for q, v in judged.items() if v[0] + extra <= b.budget_bytes}
    if not ok:
        raise _nothing_fits(b, judged, extra)
    pick, why, within, ranked = _pick(ok, len(candidates), tolerance, min_top1)
    size = ok[pick][0]
    kv_read = shape.kv_read_bytes_per_token if shape is not None else 0
    tps = predicted_tokens_per_s(b, size, kv_read)
    lo, hi = (predicted_tokens_per_s(b, size, kv_read, bw) for bw in b.bandwidth_range_gb_s)
    speed = f"~{tps:,.1f} tokens/s" + (f" ({lo:,.1f}-{hi:,.1f})" if hi != lo else "")
    left_out = sorted(set(candidates) - set(ok))
    reason = (f"{pick} for {b.describe()}: {why}; "
              f"{_mb(size)} file + {_mb(extra)} KV cache and buffers; predicted {speed} at "
              f"{b.bandwidth_gb_s:g} GB/s (bandwidth bound, an upper limit for small models)"
              + (f"; too big: {', '.join(left_out)}" if left_out else ""))
    return Choice(pick, reason, tuple(ranked), within)


# {quant: (file bytes, drift, top-1 agreement or None)}
_Judged = dict[str, tuple[int, float, float | None]]


def _judged(candidates: Mapping[str, tuple[int, float] | tuple[int, float, float]]) -> _Judged:
    """The candidates checked and normalised to (bytes, drift, top-1 or None); ValueError naming a bad one."""
    judged: _Judged = {}
    for q, v in candidates.items():
        if len(v) not in (2, 3):
            raise ValueError(f"candidate {q}: expected (bytes, drift) or (bytes, drift, top-1 agreement), got {v!r}")
        size, drift, top1 = v[0], v[1], (v[2] if len(v) == 3 else None)
        if size <= 0 or not (isinstance(drift, (int, float)) and math.isfinite(drift)):
            raise ValueError(f"candidate {q}: needs a positive size and a finite drift, got {size!r}, {drift!r}")
        if top1 is not None and not (isinstance(top1, (int, float)) and 0 <= top1 <= 1):
            raise ValueError(f"candidate {q}: the top-1 agreement must be from 0 to 1, got {top1!r}")
        judged[q] = (size, drift, top1)
    return judged


def _nothing_fits(b: Board, judged: _Judged, extra: int) -> NothingFits:
    small_q, (small_b, _, _) = min(judged.items(), key=lambda kv: kv[1][0])
    need = _mb(small_b + extra)
    if extra:
        need += f" ({_mb(small_b)} file + {_mb(extra)} KV cache and buffers)"
    return NothingFits(f"nothing fits {b.describe()}: the smallest candidate, {small_q}, needs {need}; "
                       "choose a bigger board, a shorter context, or a smaller model")


def _pick(ok: _Judged, n_candidates: int, tolerance: float,
          min_top1: float) -> tuple[str, str, bool, list[str]]:
    """Of the candidates that fit, (the pick, why, whether it is within tolerance and floor,
    every one ranked least drift first); the rules are `choose`'s."""

    def agreement(q: str) -> float:
        return 1.0 if ok[q][2] is None else ok[q][2]

    ranked = sorted(ok, key=lambda q: (ok[q][1], -agreement(q), ok[q][0]))
    within = [q for q in ok if ok[q][1] <= tolerance and agreement(q) >= min_top1]
    floor = f" and top-1 agreement >= {min_top1:.0%} (lower bound)" if min_top1 else ""
    if within:
        pick = min(within, key=lambda q: (ok[q][0], ok[q][1]))
        top1 = ok[pick][2]
        why = (f"the smallest file whose drift is within the tolerance ({ok[pick][1]:+.4f} <= {tolerance:g} "
               "nats/token, upper bound)"
               + (f" and whose top-1 agreement reaches the floor ({top1:.1%} >= {min_top1:.0%}, lower bound)"
                  if min_top1 and top1 is not None else "")
               + f" among the {len(ok)} of {n_candidates} candidates that fit")
    else:
        misses = [q for q in ok if ok[q][1] <= tolerance]  # within the drift, below the agreement floor
        head = (f"NOT within the tolerance: none of the {len(ok)} of {n_candidates} candidates that fit has a "
                f"drift <= {tolerance:g} nats/token (upper bound){floor}")
        if misses and any(ok[q][2] is not None for q in misses):
            # The floor is what failed: of those within the drift, the one that changes the model's
            # choices least (then the least drift, then the smaller file).
            pick = max(misses, key=lambda q: (agreement(q), -ok[q][1], -ok[q][0]))
            why = (f"{head}; within the drift but below the agreement floor: {', '.join(sorted(misses))}; of "
                   f"those the best top-1 agreement is {pick}'s {agreement(pick):.1%} (drift {ok[pick][1]:+.4f})")
        else:
            pick = ranked[0]
            why = (f"{head}; the least drift is {pick}'s {ok[pick][1]:+.4f}"
                   + (f" (top-1 agreement {ok[pick][2]:.1%})" if ok[pick][2] is not None else ""))
    return pick, why, bool(within), ranked
