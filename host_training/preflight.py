"""`build --base DIR`'s preflight (stage 2, training.LoraTraining.check): seconds, before any
training step and before BUNDLE is touched, everything about the base that would otherwise
only show after hours of training.

    1. files      config.json, weights (safetensors headers: the parameter count, and a file
                  shorter than its header says: an interrupted download), a tokenizer whose
                  highest token id has a row in the embedding (config vocab_size)
    2. memory     weights at the quantization (--quant, or with --target the smallest
                  candidate) + tokenizer + KV cache + compute buffer at the bundle's context,
                  against the board's budget (stratoecho.boards); a refusal names the
                  remedies in numbers (context, model size, quantization, board)
    3. converts   llama.cpp's own converter in a dry run (nothing written, no tensor data
                  read): the architecture, its tensors and the tokenizer convert, and the
                  token list and embedding rows it would write agree, or a cut of the rows
                  no token uses makes them agree (vocab_rows.py; noted)
    4. template   the base's chat template, or the fallback the build will use (reported)

Nothing here imports torch or transformers or reads a tensor's data: only JSON, the 8-byte
length and JSON header of each safetensors file, and one child process (the converter).

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

Context: the bundle's (persona.toml [model] context_length), which is what training rows
are cut to: --max-length, or the LoRA preset's row length, capped by the base's
max_position_embeddings. The payload never runs a longer one.
"""

from __future__ import annotations

import json
import math
import re
import struct
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from stratoecho import boards

from .quantize import LISTED_QUANTS, MIN_BITS_PER_WEIGHT, parse_quant

MB = boards.MB
MAX_HEADER_BYTES = 100 * MB  # a safetensors header longer than this is no header
CTX_STEP = 32  # a shorter context is suggested in steps of this many tokens (as payload/budget.py sizes n_ctx)
MIN_CTX = 64  # below this no musing prompt fits (payload/budget.py's MIN_CTX)
DTYPE_BYTES = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2, "I16": 2, "U16": 2,
               "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")
FAMILIES = ("Llama (SmolLM2, TinyLlama, Llama 3.2)", "Qwen2 / Qwen2.5 / Qwen3", "Mistral", "Gemma 2 / 3", "Phi-3",
            "Granite 3", "LFM2")

# ----------------------------------------------------------------------------- llama.cpp's tensor types
# Bits per weight of each tensor type (block bytes x 8 / weights per block).
TYPE_BITS = {"F32": 32.0, "F16": 16.0, "Q8_0": 8.5, "Q6_K": 6.5625, "Q5_K": 5.5, "Q5_1": 6.0, "Q5_0": 5.5,
             "Q4_K": 4.5, "Q4_0": 4.5, "IQ4_NL": 4.5, "Q3_K": 3.4375, "Q2_K": 2.625}
# The file type -> the type of a matrix the mix does not single out.
DEFAULT_TYPE = {"F32": "F32", "F16": "F16", "Q8_0": "Q8_0", "Q6_K": "Q6_K", "Q5_K_M": "Q5_K", "Q4_K_M": "Q4_K",
                "Q4_0": "Q4_0", "Q3_K_M": "Q3_K", "Q2_K": "Q2_K"}
K_FALLBACK = {"Q2_K": "IQ4_NL", "Q3_K": "IQ4_NL", "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0"}
QK_K = 256  # weights per K-quant block: a row must be a multiple of it


class PreflightError(ValueError):
    """The base cannot make a bundle; the message says why and what to do."""


# ----------------------------------------------------------------------------- reading the base
@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple[int, ...]

    @property
    def n(self) -> int:
        return math.prod(self.shape)


def read_safetensors_header(path: Path) -> dict:
    """The JSON header of a safetensors file: 8 bytes little-endian length, then that much JSON
    ({name: {dtype, shape, data_offsets}}, "__metadata__"). No tensor data is read."""
    size = path.stat().st_size
    with path.open("rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise PreflightError(f"{path}: {size} bytes, too short for a safetensors file")
        (n,) = struct.unpack("<Q", raw)
        if not 2 <= n <= min(MAX_HEADER_BYTES, size - 8):
            raise PreflightError(f"{path}: not a safetensors file (header length {n} in a file of {size} bytes)")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise PreflightError(f"{path}: unreadable safetensors header ({e})") from None
    if not isinstance(header, dict):
        raise PreflightError(f"{path}: unreadable safetensors header (not a JSON object)")
    end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    if 8 + n + end > size:
        raise PreflightError(f"{path}: {size:,} bytes, but its header describes {8 + n + end:,}: the file is "
                             "truncated (an interrupted download?); fetch it again")
    return header


def weight_files(base: Path) -> list[Path]:
    """The checkpoint's safetensors files: those its index names, else every *.safetensors."""
    index = base / "model.safetensors.index.json"
    if index.is_file():
        try:
            names = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (OSError, ValueError, KeyError, AttributeError) as e:
            raise PreflightError(f"{index}: unreadable ({e})") from None
        missing = [n for n in names if not (base / n).is_file()]
        if missing:
            raise PreflightError(f"{base}: {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''} named in "
                                 f"{index.name} but not there ({len(missing)} of {len(names)} shards missing): "
                                 "the download is incomplete")
        return [base / n for n in names]
    return sorted(base.glob("*.safetensors"))


def read_tensors(base: Path, config: dict) -> tuple[list[Tensor], list[str]]:
    """(tensors, weight files) from the safetensors headers; PreflightError when there are none.
    A checkpoint in pytorch_model.bin only gets one tensor standing for its parameter count,
    estimated from the file size and config.json's dtype."""
    files = weight_files(base)
    if files:
        tensors = []
        for f in files:
            for name, v in read_safetensors_header(f).items():
                if name != "__metadata__":
                    tensors.append(Tensor(name, tuple(int(d) for d in v["shape"])))
        return tensors, [f.name for f in files]
    bins = sorted(base.glob("pytorch_model*.bin"))
    if bins:
        dtype = str(config.get("torch_dtype") or config.get("dtype") or "float32")
        per = 2 if "16" in dtype else 4
        n = sum(b.stat().st_size for b in bins) // per
        return [Tensor("(pytorch_model.bin, all weights)", (n // 1024 or 1, 1024))], [b.name for b in bins]
    raise PreflightError(f"{base}: no weights (model.safetensors, model-*-of-*.safetensors or pytorch_model.bin): "
                         "download the model's weight files too, not only its config and tokenizer")


def text_config(config: dict) -> dict:
    """The language model's settings: config.json itself, or its text_config (multimodal bases)."""
    sub = config.get("text_config")
    return {**config, **sub} if isinstance(sub, dict) else config


@dataclass(frozen=True)
class Tokenizer:
    file: str
    tokens: int | None  # distinct ids, added tokens included; None when not countable here
    max_id: int | None
    size_bytes: int  # the files' size: the estimate of what the GGUF's tokenizer keys take


def read_tokenizer(base: Path) -> Tokenizer:
    tj = base / "tokenizer.json"
    if tj.is_file():
        try:
            data = json.loads(tj.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise PreflightError(f"{tj}: unreadable ({e})") from None
        vocab = (data.get("model") or {}).get("vocab") or {}
        ids = set(vocab.values()) if isinstance(vocab, dict) else set(range(len(vocab)))  # BPE/WordPiece | Unigram
        ids |= {int(t["id"]) for t in data.get("added_tokens") or [] if "id" in t}
        return Tokenizer("tokenizer.json", len(ids), max(ids, default=None), tj.stat().st_size)
    sp = base / "tokenizer.model"
    if sp.is_file():
        n = _sentencepiece_size(sp)
        return Tokenizer("tokenizer.model", n, None if n is None else n - 1, sp.stat().st_size)
    vj = base / "vocab.json"
    if vj.is_file():
        try:
            ids = set(json.loads(vj.read_text(encoding="utf-8")).values())
        except (OSError, ValueError, AttributeError) as e:
            raise PreflightError(f"{vj}: unreadable ({e})") from None
        merges = base / "merges.txt"
        size = vj.stat().st_size + (merges.stat().st_size if merges.is_file() else 0)
        return Tokenizer("vocab.json", len(ids), max(ids, default=None), size)
    raise PreflightError(f"{base}: no tokenizer ({', '.join(TOKENIZER_FILES)}): download the model's tokenizer "
                         "files too")


def _sentencepiece_size(path: Path) -> int | None:
    try:
        import sentencepiece
    except ImportError:
        return None
    try:
        return int(sentencepiece.SentencePieceProcessor(model_file=str(path)).get_piece_size())
    except (OSError, RuntimeError):
        raise PreflightError(f"{path}: not a SentencePiece model") from None


@dataclass(frozen=True)
class Template:
    source: str  # "tokenizer_config.json", "chat_template.jinja", "chat_template.json", "ChatML (added)"
    style: str  # ChatML, Llama 3, [INST], Gemma, its own
    note: str  # what the build does with it


def chat_template(base: Path, mode: str) -> Template:
    """The template the build will train and ship with: the base's own, or ChatML (added when it
    has none, or always with --chat-template chatml). Reported, never refused."""
    found: tuple[str, str] | None = None
    jinja = base / "chat_template.jinja"
    if jinja.is_file():
        found = ("chat_template.jinja", jinja.read_text(encoding="utf-8", errors="replace"))
    for name in ("tokenizer_config.json", "chat_template.json"):
        p = base / name
        if found is None and p.is_file():
            try:
                t = json.loads(p.read_text(encoding="utf-8")).get("chat_template")
            except (OSError, ValueError, AttributeError):
                t = None
            if isinstance(t, list):  # [{"name": "default", "template": ...}, ...]
                t = next((x.get("template") for x in t if isinstance(x, dict) and x.get("name") == "default"), None)
            if isinstance(t, str) and t.strip():
                found = (name, t)
    if mode == "chatml":
        return Template("ChatML (--chat-template chatml)", "ChatML",
                        "the build uses ChatML whatever the base has; <|im_start|>/<|im_end|> are added as special "
                        "tokens if the tokenizer lacks them (new embedding rows, trained)")
    if found is None:
        return Template("none", "ChatML (added)",
                        "the base has no chat template (a raw, not instruction-tuned model?): the build uses ChatML, "
                        "adding <|im_start|>/<|im_end|> as special tokens with new embedding rows that training must "
                        "teach; the base's instruct version, where there is one, usually speaks better")
    src, text = found
    style = ("ChatML" if "<|im_start|>" in text else "Llama 3" if "<|start_header_id|>" in text
             else "Gemma" if "<start_of_turn>" in text else "[INST]" if "[INST]" in text else "its own")
    return Template(src, style, f"the base's own ({style}, {src}): trained and shipped as is")


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


# ----------------------------------------------------------------------------- the result
@dataclass
class Report:
    """What the preflight found, every figure in it; `lines()` for people, `as_dict()` for eval.json."""

    base: str
    architecture: str
    n_params: int
    weight_files: list[str]
    tokenizer: str
    tokens: int | None
    vocab_size: int
    template: Template
    context: int
    context_source: str
    quant: str  # the quantization the verdict rests on
    board: str | None  # --target, or None
    fits: list[Fit]  # the verdict's first, then the others shown
    notes: list[str] = field(default_factory=list)  # warnings and hints; a refusal's remedies
    converter: str = ""
    seconds: float = 0.0

    @property
    def verdict(self) -> Fit:
        return self.fits[0]

    def as_dict(self) -> dict:
        return dict(base=self.base, architecture=self.architecture, n_params=self.n_params,
                    weight_files=self.weight_files, tokenizer=self.tokenizer, tokens=self.tokens,
                    vocab_size=self.vocab_size, chat_template=asdict(self.template), context=self.context,
                    context_source=self.context_source, quant=self.quant, board=self.board,
                    memory=[f.as_dict() for f in self.fits], notes=self.notes, converter=self.converter,
                    seconds=round(self.seconds, 2))

    def lines(self) -> list[str]:
        out = [f"preflight of {self.base}: {self.architecture}, {self.n_params / 1e6:,.1f} M parameters "
               f"({', '.join(self.weight_files[:2])}{' ...' if len(self.weight_files) > 2 else ''}), "
               f"{self.seconds:.1f} s",
               f"  converts: {self.converter or 'not checked'}",
               f"  tokenizer: {self.tokenizer}, {self.tokens if self.tokens is not None else '?'} tokens; "
               f"config.json vocab_size {self.vocab_size}",
               f"  chat template: {self.template.note}",
               f"  context: {self.context} tokens ({self.context_source})"]
        out += ["  " + line for line in self.verdict.lines()]
        others = self.fits[1:]
        if others:
            out.append("  " + ("other boards at " + self.quant if self.board is None else "other candidates for "
                               + self.board) + ": " + ", ".join(
                f"{f.board if self.board is None else f.quant} {f.verdict} ({f.need / MB:,.1f} MB of "
                f"{f.budget / MB:,.1f})" for f in others))
        out += [f"  note: {n}" for n in self.notes]
        return out

    def text(self) -> str:
        return "\n".join(self.lines())

    def log_fields(self) -> dict:
        """The figures the verdict rests on, in MB, for the log."""
        f = self.verdict
        return dict(base=self.base, architecture=self.architecture, n_params=self.n_params, context=self.context,
                    quant=self.quant, board=f.board, verdict=f.verdict, template=self.template.source,
                    weights_mb=round(f.weights / MB, 1), weights_low_mb=round(f.weights_low / MB, 1),
                    tokenizer_mb=round(f.tokenizer / MB, 1), kv_cache_mb=round(f.kv_cache / MB, 1),
                    compute_mb=round(f.compute / MB, 1), need_mb=round(f.need / MB, 1),
                    budget_mb=round(f.budget / MB, 1), left_for_daemon_mb=round(f.left_for_daemon / MB, 1),
                    seconds=round(self.seconds, 2))


# ----------------------------------------------------------------------------- the checks
def _config(base: Path) -> dict:
    p = base / "config.json"
    if not p.is_file():
        raise PreflightError(f"{base}: no config.json; --base wants a local transformers model directory")
    try:
        config = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise PreflightError(f"{p}: unreadable ({e})") from None
    if not isinstance(config, dict):
        raise PreflightError(f"{p}: not a JSON object")
    return config


def architecture(config: dict) -> str:
    arch = config.get("architectures") or text_config(config).get("architectures")
    return ", ".join(arch) if isinstance(arch, list) and arch else str(config.get("model_type") or "unknown")


def bundle_context(config: dict, n_params: int, preset: str, max_length: int | None) -> tuple[int, str]:
    """The context the bundle will declare: training's row length (finetune.train's rule)."""
    from .finetune import PRESETS, pick_preset

    name = pick_preset(preset, n_params)
    rows = max_length or PRESETS[name]["max_length"]
    source = "--max-length" if max_length else f"the {name} preset's training rows"
    limit = text_config(config).get("max_position_embeddings")
    if isinstance(limit, int) and limit < rows:
        return limit, f"{source} ({rows}), capped by the base's max_position_embeddings"
    return rows, source if max_length else source + "; --max-length sets it"


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


def run(base: str | Path, *, quant: str = "Q4_K_M", target: str | None = None, preset: str = "auto",
        max_length: int | None = None, chat_template_mode: str = "base", convert: bool = True) -> Report:
    """Check `base` for `build --base` (module docstring). PreflightError saying why and what to do;
    else the Report, with warnings in its notes. `convert=False` skips the converter (tests)."""
    t0 = time.monotonic()
    base = Path(base)
    quant = parse_quant(quant, iquants=True)
    config = _config(base)
    arch = architecture(config)
    tc = text_config(config)
    tensors, files = read_tensors(base, config)
    n_params = sum(t.n for t in tensors)
    tok = read_tokenizer(base)
    vocab = tc.get("vocab_size")
    if not isinstance(vocab, int):
        raise PreflightError(f"{base / 'config.json'}: no vocab_size")
    if tok.max_id is not None and tok.max_id >= vocab:
        raise PreflightError(
            f"{base}: the tokenizer ({tok.file}) has ids up to {tok.max_id} ({tok.tokens} tokens) but config.json's "
            f"vocab_size is {vocab}: tokens {vocab}..{tok.max_id} have no embedding row. Training would fail on the "
            "first of them, and llama.cpp's converter refuses the mismatch; the tokenizer and the weights are from "
            "different models, or config.json is wrong")
    template = chat_template(base, chat_template_mode)
    ctx, ctx_source = bundle_context(config, n_params, preset, max_length)
    shape = model_shape(config, ctx)

    notes: list[str] = []
    if target is not None:
        board = boards.board(target).name
        every = [fit(board, q, tensors, config, tok.size_bytes, shape) for q in LISTED_QUANTS]
        ok = [f for f in every if f.verdict == "fits"]
        # shown in full: the biggest type that fits (the likeliest choice), else the smallest candidate
        check = ok[0] if ok else min(every, key=lambda f: f.need)
        fits = [check] + [f for f in every if f is not check]
        if ok:
            notes.append(f"--target {board}: {', '.join(f.quant for f in ok)} should fit; the build quantizes each "
                         "candidate that may fit, scores it on val.jsonl and keeps the best")
        verdict_quant = check.quant
    else:
        board = None
        fits = [fit(b, quant, tensors, config, tok.size_bytes, shape) for b in boards_by_size()]
        # the verdict: the smallest board it fits, else the biggest board
        first = next((f for f in fits if f.verdict == "fits"), fits[-1])
        shown = [f for f in fits if f.board in ("pi-zero-2w", "pi3", "pi4-2gb", "pi5-2gb")]
        fits = [first] + [f for f in shown if f is not first]
        check = first
        verdict_quant = quant
        zero = next(f for f in fits if f.board == "pi-zero-2w")
        if zero.verdict != "fits":
            lower = lower_quant(zero.board, quant, tensors, config, tok.size_bytes, shape)
            notes.append(f"{quant} does not fit a pi-zero-2w" + (f"; {lower} would, or" if lower else ";")
                         + " --target BOARD picks the best type that fits a board")
    if check.verdict == "does not fit":
        where = f"{check.board}" if target else "any board, not even a " + check.board
        lines = "\n  ".join(check.lines())
        fixes = remedies(check, shape, n_params)
        if target is None:
            lower = lower_quant(check.board, quant, tensors, config, tok.size_bytes, shape)
            if lower:
                fixes.insert(0, f"a lower quantization: --quant {lower} fits a {check.board}")
        raise PreflightError(
            f"{base} ({arch}, {n_params / 1e6:,.1f} M parameters) does not fit {where} at "
            f"{verdict_quant}{' (the smallest candidate)' if target else ''} with a {ctx}-token context "
            f"({ctx_source}):\n  {lines}\n  Remedies:\n  - " + "\n  - ".join(fixes))

    report = Report(str(base), arch, n_params, files, tok.file, tok.tokens, vocab, template, ctx, ctx_source,
                    verdict_quant, board, fits, notes)
    if convert:
        report.converter, note = converts(base, arch, None if tok.max_id is None else tok.max_id + 1)
        report.notes += [note] if note else []
    report.seconds = time.monotonic() - t0
    return report


def converts(base: Path, arch: str, n: int | None) -> tuple[str, str | None]:
    """llama.cpp's converter in a dry run (convert_gguf.plan): (what it takes, a note on a padded
    vocabulary or None), `n` the tokenizer's ids; PreflightError with its reason."""
    from . import convert_gguf, vocab_rows
    from .llama_cpp_source import installed_version

    t0 = time.monotonic()
    try:
        layout = convert_gguf.plan(base)
    except convert_gguf.ConvertError as e:
        what = ("its architecture" if "not supported" in str(e) else "its tokenizer" if "tokenizer" in str(e).lower()
                else "it")
        raise PreflightError(
            f"{base}: llama.cpp's converter does not take {what} (config.json architectures: {arch}), so no GGUF "
            f"could be made after training. {e}\n  Remedies: a base of a family llama.cpp "
            f"converts ({', '.join(FAMILIES)}, ...; the full list: python \"$(python -m "
            "host_training.llama_cpp_source where)/convert_hf_to_gguf.py\" --print-supported-models), or a "
            f"newer llama-cpp-python than {installed_version() or '?'} (pip install -U llama-cpp-python, then "
            "make install, which unpacks its converter) if this architecture is newer than it") from None
    cut = vocab_rows.cut_to(layout)
    if cut is not None and (n is None or n > cut):
        raise PreflightError(
            f"{base}: llama.cpp's converter writes {layout.describe()} for this base, which llama.cpp cannot load, "
            f"and its tokenizer uses {n or '?'} ids, more than the {cut} rows the converter keeps, so no cut of "
            "unused rows mends it and no GGUF could be made after training: the tokenizer files and config.json's "
            "vocab_size do not describe one vocabulary (with tokenizer.model beside tokenizer.json the converter "
            "takes its SentencePiece path, which pads)")
    if cut is not None:
        note = (f"vocabulary: llama.cpp's converter writes {layout.describe()} for this base, which llama.cpp "
                f"cannot load; the build converts a copy cut to the {cut} rows it keeps (the tokenizer's {n} ids "
                "among them; no text reaches the rows cut)")
    elif n is not None and layout.tokens > n:
        note = (f"vocabulary padded: {layout.tokens} embedding rows for {n} tokens; the GGUF lists the "
                f"{layout.tokens - n} unused ids as [PAD] tokens and keeps their rows, as llama.cpp's converter does")
    else:
        note = None
    return (f"yes: llama.cpp's converter takes {arch}, its tensors and its tokenizer ({layout.tokens:,} tokens, "
            f"{time.monotonic() - t0:.1f} s)", note)
