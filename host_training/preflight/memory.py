"""What the base will need on the board, for the preflight (preflight/__init__.py): its weights
at a quantization, tokenizer, KV cache and compute buffer against the board's budget, and the
remedies in numbers when it does not fit.

Weights. For each tensor of the checkpoint (shape from its safetensors header) the type
llama.cpp's quantizer gives it, with the rules of its `llama_tensor_get_type` that move a
small model's size most: 1-D tensors (norms, biases) stay F32; the output matrix (lm_head,
or the token embedding when they are tied) goes to Q6_K (Q8_0 when its rows are not a
multiple of 256); the *_M mixes raise attn_v / ffn_down (and for Q3_K_M / Q2_K attn_output)
in some layers; a K-quant tensor whose rows are not a multiple of 256 falls back to a
32-block type (Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, Q3_K and Q2_K -> IQ4_NL). Checked
against llama.cpp's own files (random Llamas 512 and 576 wide, 8 layers, every listed type):
within 0.1 %; the tokenizer's keys are estimated by its files' size. The verdict rests on
that estimate. Tensors of a multimodal checkpoint's vision or audio tower are not counted
(the converter leaves them out of the text model). Also reported: the lower bound, every
matrix at quantize.MIN_BITS_PER_WEIGHT (what quantize.for_target skips candidates on); a
K-quant of a model whose width is no multiple of 256 lands far above it (+25 to +60 %).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from stratoecho import boards

from ..quantize.quantizer import LISTED_QUANTS, MIN_BITS_PER_WEIGHT
from .checkpoint import MB, PreflightError, Tensor, text_config

CTX_STEP = 32  # a shorter context is suggested in steps of this many tokens (as payload/policy/budget.py sizes n_ctx)
MIN_CTX = 64  # below this no musing prompt fits (payload/policy/budget.py's MIN_CTX)

# ----------------------------------------------------------------------------- llama.cpp's tensor types
# Bits per weight of each tensor type (block bytes x 8 / weights per block).
TYPE_BITS = {"F32": 32.0, "F16": 16.0, "Q8_0": 8.5, "Q6_K": 6.5625, "Q5_K": 5.5, "Q5_1": 6.0, "Q5_0": 5.5,
             "Q4_K": 4.5, "Q4_0": 4.5, "IQ4_NL": 4.5, "Q3_K": 3.4375, "Q2_K": 2.625}
# The file type -> the type of a matrix the mix does not single out.
DEFAULT_TYPE = {"F32": "F32", "F16": "F16", "Q8_0": "Q8_0", "Q6_K": "Q6_K", "Q5_K_M": "Q5_K", "Q4_K_M": "Q4_K",
                "Q4_0": "Q4_0", "Q3_K_M": "Q3_K", "Q2_K": "Q2_K"}
K_FALLBACK = {"Q2_K": "IQ4_NL", "Q3_K": "IQ4_NL", "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0"}
QK_K = 256  # weights per K-quant block: a row must be a multiple of it


# ----------------------------------------------------------------------------- memory
def _more_bits(i: int, n: int) -> bool:
    """llama.cpp's use_more_bits: the first and last eighth of the layers and every third between."""
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


_LAYER = re.compile(r"\.(?:layers|h|blocks|layer)\.(\d+)\.")
_NOT_TEXT = re.compile(r"vision|visual|image|audio|mm_proj|multi_modal_projector")


def tensor_type(t: Tensor, quant: str, *, is_output: bool, n_layers: int, n_gqa: int) -> str:
    """The GGUF type llama.cpp's quantizer gives tensor `t` of the checkpoint in file type `quant`
    (the rules in the module docstring; an I-quant is counted at its own bits)."""
    if len(t.shape) < 2 or min(t.shape) == 1:
        return "F32"
    if quant in ("F32", "F16"):
        return quant
    row = t.shape[-1]  # HF [out, in]: llama.cpp's ne[0], the row a block runs along
    if is_output:
        return "Q8_0" if quant == "Q8_0" or row % QK_K else "Q6_K"
    typ = DEFAULT_TYPE.get(quant, quant)
    m = _LAYER.search(t.name)
    i = int(m.group(1)) if m else 0
    v, down, o = "v_proj" in t.name, "down_proj" in t.name or "mlp.c_proj" in t.name, "o_proj" in t.name
    if quant in ("Q4_K_M", "Q5_K_M") and (v or down) and _more_bits(i, n_layers):
        typ = "Q6_K"
    elif quant == "Q3_K_M":
        if v:
            typ = "Q5_K" if i < 2 else "Q4_K"
        elif down:
            typ = "Q5_K" if i < n_layers // 16 else "Q4_K"
        elif o:
            typ = "Q4_K"
    elif quant == "Q2_K":
        if v:
            typ = "Q4_K" if n_gqa >= 4 else "Q3_K"
        elif down or o:
            typ = "Q3_K"
    if row % QK_K and (typ in K_FALLBACK or typ.startswith("IQ")):
        typ = K_FALLBACK.get(typ, "IQ4_NL")
    return typ


def _bits(typ: str) -> float:
    return TYPE_BITS.get(typ) or MIN_BITS_PER_WEIGHT[typ]


def weight_bytes(tensors: list[Tensor], quant: str, config: dict) -> tuple[int, int]:
    """(estimate, lower bound) of the weights' bytes in a GGUF of type `quant`."""
    tc = text_config(config)
    n_layers = int(tc.get("num_hidden_layers") or 1)
    heads = int(tc.get("num_attention_heads") or 1)
    n_gqa = heads // max(1, int(tc.get("num_key_value_heads") or heads))
    has_head = any("lm_head" in t.name for t in tensors)
    low_bits = MIN_BITS_PER_WEIGHT[quant]
    est = low = 0.0
    for t in tensors:
        if _NOT_TEXT.search(t.name):
            continue
        emb = "embed_tokens" in t.name or t.name.endswith(("wte.weight", "word_embeddings.weight", "tok_embeddings.weight"))
        out = "lm_head" in t.name or (emb and not has_head)
        typ = tensor_type(t, quant, is_output=out, n_layers=n_layers, n_gqa=n_gqa)
        est += t.n * _bits(typ) / 8
        low += t.n * (4 if typ == "F32" and len(t.shape) < 2 else low_bits / 8)
    return int(est), int(low)


def model_shape(config: dict, n_ctx: int) -> boards.ModelShape:
    """boards.ModelShape from config.json: what the KV cache and compute buffer depend on."""
    tc = text_config(config)
    try:
        n_embd, heads = int(tc["hidden_size"]), int(tc["num_attention_heads"])
        n_layers, n_vocab = int(tc["num_hidden_layers"]), int(tc["vocab_size"])
    except (KeyError, TypeError, ValueError) as e:
        raise PreflightError(f"config.json: no {e} (hidden_size, num_attention_heads, num_hidden_layers, vocab_size "
                             "are needed to size the model)") from None
    kv_heads = int(tc.get("num_key_value_heads") or heads)
    head_dim = int(tc.get("head_dim") or n_embd // heads)
    return boards.ModelShape(n_ctx=n_ctx, n_layers=n_layers, n_embd_kv=kv_heads * head_dim, n_embd=n_embd,
                             n_vocab=n_vocab)


def _with_ctx(shape: boards.ModelShape, n_ctx: int) -> boards.ModelShape:
    return boards.ModelShape(n_ctx, shape.n_layers, shape.n_embd_kv, shape.n_embd, shape.n_vocab, shape.n_ubatch)


@dataclass(frozen=True)
class Fit:
    """One quantization of the base on one board, in bytes."""

    board: str
    quant: str
    ram: int
    gpu: int
    os: int
    headroom: int
    daemon: int
    weights: int  # estimate
    weights_low: int  # lower bound
    tokenizer: int  # the GGUF's tokenizer and keys (estimate: the tokenizer files' size)
    kv_cache: int
    compute: int

    @property
    def budget(self) -> int:
        return self.ram - self.gpu - self.os - self.daemon - self.headroom

    @property
    def need(self) -> int:
        return self.weights + self.tokenizer + self.kv_cache + self.compute

    @property
    def need_low(self) -> int:
        return self.weights_low + self.kv_cache + self.compute

    @property
    def left_for_daemon(self) -> int:
        """What the model leaves of the RAM after the GPU, OS and headroom: the daemon wants `daemon`."""
        return self.ram - self.gpu - self.os - self.headroom - self.need

    @property
    def verdict(self) -> str:
        return "fits" if self.need <= self.budget else "does not fit"

    def as_dict(self) -> dict:
        d = asdict(self)
        d.update(budget=self.budget, need=self.need, need_low=self.need_low, left_for_daemon=self.left_for_daemon,
                 verdict=self.verdict)
        return d

    def lines(self) -> list[str]:
        m = _mb
        return [
            f"{self.board} at {self.quant}, in MB: RAM {m(self.ram)} - GPU {m(self.gpu)} - OS {m(self.os)} - headroom "
            f"{m(self.headroom)} = {m(self.ram - self.gpu - self.os - self.headroom)} for the model and the daemon",
            f"  model: weights {m(self.weights)} (at least {m(self.weights_low)}) + tokenizer {m(self.tokenizer)} + "
            f"KV cache {m(self.kv_cache)} + compute buffer {m(self.compute)} = {m(self.need)}",
            f"  left for the payload daemon: {m(self.left_for_daemon)} (it needs {m(self.daemon)}): {self.verdict}"
            + (f", {m(self.budget - self.need)} to spare" if self.verdict == "fits"
               else f", {m(self.need - self.budget)} over"),
        ]


def fit(board: str | boards.Board, quant: str, tensors: list[Tensor], config: dict, tokenizer_bytes: int,
        shape: boards.ModelShape) -> Fit:
    b = boards.board(board)
    est, low = weight_bytes(tensors, quant, config)
    return Fit(b.name, quant, b.ram_bytes, boards.GPU_RESERVE_BYTES, b.os_bytes, b.headroom_bytes, boards.DAEMON_BYTES,
               est, low, tokenizer_bytes, shape.kv_cache_bytes, shape.compute_bytes)


def _mb(n: float) -> str:
    return f"{n / MB:,.1f}"

def boards_by_size() -> list[boards.Board]:
    return sorted(boards.BOARDS.values(), key=lambda b: (b.ram_bytes, b.bandwidth_gb_s))


def longest_context(f: Fit, shape: boards.ModelShape) -> int | None:
    """The longest context (a multiple of CTX_STEP, at least MIN_CTX) at which `f` fits, else None."""
    fixed = f.weights + f.tokenizer
    top = shape.n_ctx // CTX_STEP * CTX_STEP
    return next((n for n in range(top, MIN_CTX - 1, -CTX_STEP)
                 if fixed + _with_ctx(shape, n).runtime_bytes <= f.budget), None)


def lower_quant(board: str, quant: str, tensors: list[Tensor], config: dict, tokenizer_bytes: int,
                shape: boards.ModelShape) -> str | None:
    """The best listed type below `quant` that fits `board`, or None."""
    return next((q for q in LISTED_QUANTS if MIN_BITS_PER_WEIGHT[q] < MIN_BITS_PER_WEIGHT[quant]
                 and fit(board, q, tensors, config, tokenizer_bytes, shape).verdict == "fits"), None)


def remedies(f: Fit, shape: boards.ModelShape, n_params: int) -> list[str]:
    """What would fit, in numbers: a shorter context, a smaller model, a bigger board."""
    out = []
    ctx = longest_context(f, shape)
    if ctx is not None and ctx < shape.n_ctx:
        out.append(f"a shorter context: --max-length {ctx} fits ({f.weights / MB:,.1f} MB weights + "
                   f"{_with_ctx(shape, ctx).runtime_bytes / MB:,.1f} MB KV cache and buffers at {ctx} tokens)")
    elif ctx is None:
        over = f.weights + f.tokenizer + _with_ctx(shape, MIN_CTX).runtime_bytes - f.budget
        out.append(f"a shorter context alone does not do it: even at {MIN_CTX} tokens it needs {over / MB:,.1f} MB more")
    bpw = 8 * f.weights / max(1, n_params)
    for n_ctx in (shape.n_ctx, *(n for n in (512, 256, MIN_CTX) if n < shape.n_ctx)):
        runtime = _with_ctx(shape, n_ctx).runtime_bytes
        room = f.budget - f.tokenizer - runtime
        if room > 0:
            out.append(f"a smaller model: at most ~{room * 8 / bpw / 1e6:,.0f} M parameters at {f.quant} (~{bpw:.2f} "
                       f"bits per weight, as this one) fit beside this one's {runtime / MB:,.1f} MB KV cache and "
                       f"buffers at {n_ctx} tokens" + ("" if n_ctx == shape.n_ctx else f" (--max-length {n_ctx})")
                       + "; fewer layers and a smaller vocabulary shrink those too")
            break
    else:
        out.append(f"a smaller model: this one's KV cache and compute buffer alone exceed the {f.budget / MB:,.1f} MB "
                   f"budget even at {MIN_CTX} tokens; the buffer grows with the vocabulary ({shape.n_vocab:,} here)")
    bigger = next((b for b in boards_by_size() if b.ram_bytes > f.ram and f.need <= b.budget_bytes), None)
    if bigger is not None:
        out.append(f"a bigger board: {bigger.name} ({bigger.budget_bytes / MB:,.0f} MB for the model)")
    return out


# ----------------------------------------------------------------------------- a trimmed vocabulary
def with_vocabulary(tensors: list[Tensor], config: dict, n: int) -> tuple[list[Tensor], dict]:
    """The checkpoint as it would be with a vocabulary of `n` tokens (quantize/trim_vocab.py keeps a
    language's tokens): the embedding (and an untied output matrix) cut to `n` rows, vocab_size `n`."""
    import copy

    vocab = int(text_config(config)["vocab_size"])
    cut = [Tensor(t.name, (n, *t.shape[1:])) if len(t.shape) == 2 and t.shape[0] == vocab else t for t in tensors]
    config = copy.deepcopy(config)
    text_config(config)["vocab_size"] = n
    return cut, config


def trimmed_fit(board: str, quant: str, tensors: list[Tensor], config: dict, tokenizer_bytes: int,
                shape: boards.ModelShape, n: int) -> Fit:
    """`fit` with the vocabulary trimmed to `n` tokens (its tokenizer keys shrink alike)."""
    vocab = int(text_config(config)["vocab_size"])
    cut, cfg = with_vocabulary(tensors, config, n)
    return fit(board, quant, cut, cfg, tokenizer_bytes * n // max(vocab, 1),
               boards.ModelShape(shape.n_ctx, shape.n_layers, shape.n_embd_kv, shape.n_embd, n, shape.n_ubatch))


def most_tokens(board: str, quant: str, tensors: list[Tensor], config: dict, tokenizer_bytes: int,
                shape: boards.ModelShape) -> int:
    """The largest vocabulary (tokens) at which `quant` fits `board` at the shape's context; 0 when
    not even an empty one does (the layers alone are too big)."""
    lo, hi = 0, int(text_config(config)["vocab_size"])
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if trimmed_fit(board, quant, tensors, config, tokenizer_bytes, shape, mid).verdict == "fits":
            lo = mid
        else:
            hi = mid - 1
    return lo
