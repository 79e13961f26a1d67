"""The real models of each family: parameters, Q4_K_M file size and predicted speed on each board.

    python -m host_training.base.family_sizes      # the table in docs/training.md ("Model families")

Nothing is downloaded. Each real model is described by the config.json values that fix its
tensor shapes (REAL_MODELS, copied from the model's config.json on the Hugging Face Hub;
each row names its repository). From them:

  * `gguf_tensors`: the GGUF tensors llama.cpp's converter writes for that architecture, by
    name and shape. tests/test_pi_families.py checks this against the converter's real output
    on every family's tiny stand-in, so the real model's list is the same rule at real sizes;
  * `parameters`: their elements (the rope frequency tables aside), checked against the
    published count of each model within 1 %;
  * `q4_k_m_tensor_bytes`: llama.cpp's own quantizer in dry-run mode (it picks every
    tensor's type as for a real run, Q6_K for the output, Q6_K for some attn_v and ffn_down,
    fallbacks where a row is not a multiple of 256, and adds the sizes without reading any
    weight) over a GGUF that holds the real shapes and no data (a sparse file), its keys
    taken from the family's tiny stand-in and given the real sizes;
  * the file size: those tensor bytes plus the tokenizer in the header, estimated at
    TOKENIZER_BYTES_PER_TOKEN (token text, type, score or merge, a few MB at most);
  * tokens/s: stratoecho.boards.predicted_tokens_per_s, effective memory bandwidth over the
    bytes read per token (the file, and the KV cache of the context half full), an upper
    bound, with the longest context up to MAX_CONTEXT whose KV cache and compute buffers fit
    beside the file in the board's model budget (boards.fits, as payload/policy/budget.py sizes the
    persona's context), on the board's smallest RAM size, or on the smallest Pi 4 / Pi 5
    size that holds the model when that one cannot.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import math
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from stratoecho import boards

MAX_CONTEXT, MIN_CONTEXT = 2048, 64  # the persona's context: the longest in this range that fits (payload/policy/budget.py)
BOARDS = ("pi-zero-2w", "pi3", "pi4", "pi5")
# GGUF header bytes per vocabulary entry: the token's text (8-byte length + ~7 bytes), its type
# (4) and, for a byte-level BPE, a merge (8 + ~13); for SentencePiece, a score (4).
TOKENIZER_BYTES_PER_TOKEN = {"gpt2": 40, "llama": 23}


@dataclass(frozen=True)
class RealModel:
    name: str
    family: str  # host_training.base.tiny_families.FAMILIES key
    repo: str  # Hugging Face Hub repository whose config.json gave `config`
    config: dict  # the config.json values that fix the tensor shapes
    published_params: float  # the model card's parameter count
    tokenizer: str  # GGUF tokenizer.ggml.model


REAL_MODELS: tuple[RealModel, ...] = (
    RealModel("SmolLM2-135M-Instruct", "smollm2", "HuggingFaceTB/SmolLM2-135M-Instruct",
              dict(architectures=["LlamaForCausalLM"], hidden_size=576, num_hidden_layers=30, num_attention_heads=9,
                   num_key_value_heads=3, intermediate_size=1536, vocab_size=49152, tie_word_embeddings=True),
              135e6, "gpt2"),
    RealModel("SmolLM2-360M-Instruct", "smollm2", "HuggingFaceTB/SmolLM2-360M-Instruct",
              dict(architectures=["LlamaForCausalLM"], hidden_size=960, num_hidden_layers=32, num_attention_heads=15,
                   num_key_value_heads=5, intermediate_size=2560, vocab_size=49152, tie_word_embeddings=True),
              362e6, "gpt2"),
    RealModel("Llama-3.2-1B-Instruct", "llama3.2", "meta-llama/Llama-3.2-1B-Instruct",
              dict(architectures=["LlamaForCausalLM"], hidden_size=2048, num_hidden_layers=16, num_attention_heads=32,
                   num_key_value_heads=8, head_dim=64, intermediate_size=8192, vocab_size=128256,
                   tie_word_embeddings=True, rope_scaling=dict(rope_type="llama3", factor=32.0)),
              1.24e9, "gpt2"),
    RealModel("Qwen2.5-0.5B-Instruct", "qwen2.5", "Qwen/Qwen2.5-0.5B-Instruct",
              dict(architectures=["Qwen2ForCausalLM"], hidden_size=896, num_hidden_layers=24, num_attention_heads=14,
                   num_key_value_heads=2, intermediate_size=4864, vocab_size=151936, tie_word_embeddings=True),
              0.49e9, "gpt2"),
    RealModel("Qwen3-0.6B", "qwen3", "Qwen/Qwen3-0.6B",
              dict(architectures=["Qwen3ForCausalLM"], hidden_size=1024, num_hidden_layers=28, num_attention_heads=16,
                   num_key_value_heads=8, head_dim=128, intermediate_size=3072, vocab_size=151936,
                   tie_word_embeddings=True),
              0.6e9, "gpt2"),
    RealModel("gemma-3-270m-it", "gemma3", "google/gemma-3-270m-it",
              dict(architectures=["Gemma3ForCausalLM"], hidden_size=640, num_hidden_layers=18, num_attention_heads=4,
                   num_key_value_heads=1, head_dim=256, intermediate_size=2048, vocab_size=262144,
                   tie_word_embeddings=True),
              268e6, "llama"),
    RealModel("LFM2-350M", "lfm2", "LiquidAI/LFM2-350M",
              dict(architectures=["Lfm2ForCausalLM"], hidden_size=1024, num_hidden_layers=16, num_attention_heads=16,
                   num_key_value_heads=8, block_ff_dim=6656, block_auto_adjust_ff_dim=True,
                   block_ffn_dim_multiplier=1.0, block_multiple_of=256, conv_L_cache=3, vocab_size=65536,
                   tie_word_embeddings=True, full_attn_idxs=[2, 5, 8, 10, 12, 14]),
              354e6, "gpt2"),
    RealModel("Phi-3-mini-4k-instruct", "phi3", "microsoft/Phi-3-mini-4k-instruct",
              dict(architectures=["Phi3ForCausalLM"], hidden_size=3072, num_hidden_layers=32, num_attention_heads=32,
                   num_key_value_heads=32, intermediate_size=8192, vocab_size=32064, tie_word_embeddings=False),
              3.82e9, "llama"),
    RealModel("Phi-4-mini-instruct", "phi4-mini", "microsoft/Phi-4-mini-instruct",
              dict(architectures=["Phi3ForCausalLM"], hidden_size=3072, num_hidden_layers=32, num_attention_heads=24,
                   num_key_value_heads=8, intermediate_size=8192, vocab_size=200064, tie_word_embeddings=True,
                   partial_rotary_factor=0.75, rope_scaling=dict(type="longrope", long_factor=[1.0] * 48,
                                                                 short_factor=[1.0] * 48)),
              3.84e9, "gpt2"),
)


# ----------------------------------------------------------------------------- shapes
@dataclass(frozen=True)
class Shape:
    arch: str  # GGUF general.architecture
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_ff: int
    n_vocab: int
    tied: bool
    attention: tuple[bool, ...]  # per layer: attention (else LFM2's short convolution)
    conv_cache: int = 0
    rope_freqs: int = 0  # llama3 rope: a table of head_dim/2 factors
    rope_factors: int = 0  # LongRoPE: long and short tables of rotary dims/2 factors
    rope_dims: int = 0  # rotary dimensions per head (partial rotary); 0: all of head_dim

    @property
    def attention_layers(self) -> int:
        return sum(self.attention)


ARCHS = {"LlamaForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2", "Qwen3ForCausalLM": "qwen3",
         "Gemma3ForCausalLM": "gemma3", "Phi3ForCausalLM": "phi3", "Lfm2ForCausalLM": "lfm2",
         "GraniteForCausalLM": "granite"}  # granite: llama's tensors (its multipliers are keys)


def shape_of(config: dict) -> Shape:
    """The GGUF-relevant shape of an HF config.json (as on the Hub, or as transformers 5 saves it)."""
    hf = config["architectures"][0]
    if hf not in ARCHS:
        raise ValueError(f"{hf}: not one of the families here ({', '.join(ARCHS)})")
    arch = ARCHS[hf]
    n_embd, n_layer, n_head = config["hidden_size"], config["num_hidden_layers"], config["num_attention_heads"]
    n_kv = config.get("num_key_value_heads") or n_head
    head_dim = config.get("head_dim") or n_embd // n_head
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    rope = rope.get("full_attention", rope)
    rope_type = rope.get("rope_type", rope.get("type"))
    n_ff = config.get("intermediate_size")
    attention = (True,) * n_layer
    extra: dict = {}
    if arch == "llama" and rope_type == "llama3":
        extra["rope_freqs"] = head_dim // 2
    if arch == "phi3" and rope.get("long_factor"):
        rot = rope.get("partial_rotary_factor", config.get("partial_rotary_factor", 1.0))
        extra["rope_factors"] = int(rot * n_embd) // n_head // 2
    if arch == "phi3":
        rot = rope.get("partial_rotary_factor", config.get("partial_rotary_factor", 1.0))
        extra["rope_dims"] = int(rot * n_embd) // n_head
    if arch == "lfm2":
        n_ff = config.get("block_ff_dim", n_ff)
        if config.get("block_auto_adjust_ff_dim"):  # LFM2's FFN rule, as modeling_lfm2 and the converter
            n_ff = int(2 * n_ff / 3)
            if config.get("block_ffn_dim_multiplier") is not None:
                n_ff = int(config["block_ffn_dim_multiplier"] * n_ff)
                m = config["block_multiple_of"]
                n_ff = m * ((n_ff + m - 1) // m)
        types = config.get("layer_types") or [
            "full_attention" if i in config["full_attn_idxs"] else "conv" for i in range(n_layer)]
        attention = tuple(t != "conv" for t in types)
        extra["conv_cache"] = config.get("conv_L_cache", 3)
    return Shape(arch, n_embd, n_layer, n_head, n_kv, head_dim, n_ff, config["vocab_size"],
                 bool(config.get("tie_word_embeddings", False)), attention, **extra)


def gguf_tensors(s: Shape) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape in GGUF order: columns first) of every tensor the converter writes."""
    E, V, F, D = s.n_embd, s.n_vocab, s.n_ff, s.head_dim
    q, kv = s.n_head * D, s.n_head_kv * D
    out = [("token_embd.weight", (E, V)), ("token_embd_norm.weight" if s.arch == "lfm2" else "output_norm.weight", (E,))]
    if not s.tied:
        out.append(("output.weight", (E, V)))
    if s.rope_freqs:
        out.append(("rope_freqs.weight", (s.rope_freqs,)))
    if s.rope_factors:
        out += [("rope_factors_long.weight", (s.rope_factors,)), ("rope_factors_short.weight", (s.rope_factors,))]
    for i, attn in enumerate(s.attention):
        b = f"blk.{i}."
        out += [(b + "attn_norm.weight", (E,)), (b + "ffn_norm.weight", (E,)), (b + "ffn_down.weight", (F, E))]
        if s.arch == "phi3":
            out += [(b + "ffn_up.weight", (E, 2 * F)), (b + "attn_qkv.weight", (E, q + 2 * kv)),
                    (b + "attn_output.weight", (q, E))]
            continue
        out += [(b + "ffn_gate.weight", (E, F)), (b + "ffn_up.weight", (E, F))]
        if not attn:  # LFM2's short-convolution block
            out += [(b + "shortconv.conv.weight", (s.conv_cache, E)), (b + "shortconv.in_proj.weight", (E, 3 * E)),
                    (b + "shortconv.out_proj.weight", (E, E))]
            continue
        out += [(b + "attn_q.weight", (E, q)), (b + "attn_k.weight", (E, kv)), (b + "attn_v.weight", (E, kv)),
                (b + "attn_output.weight", (q, E))]
        if s.arch == "qwen2":
            out += [(b + "attn_q.bias", (q,)), (b + "attn_k.bias", (kv,)), (b + "attn_v.bias", (kv,))]
        if s.arch in ("qwen3", "gemma3", "lfm2"):
            out += [(b + "attn_q_norm.weight", (D,)), (b + "attn_k_norm.weight", (D,))]
        if s.arch == "gemma3":
            out += [(b + "post_attention_norm.weight", (E,)), (b + "post_ffw_norm.weight", (E,))]
    return out


def parameters(s: Shape) -> int:
    """The model's parameters: every tensor's elements but the rope frequency tables."""
    return sum(math.prod(shape) for name, shape in gguf_tensors(s) if not name.startswith("rope_"))


# ----------------------------------------------------------------------------- llama.cpp's dry run
def _shape_keys(s: Shape) -> dict:
    kv = ([s.n_head_kv if a else 0 for a in s.attention] if s.arch == "lfm2" else s.n_head_kv)
    return {"block_count": s.n_layer, "embedding_length": s.n_embd, "feed_forward_length": s.n_ff,
            "attention.head_count": s.n_head, "attention.head_count_kv": kv, "attention.key_length": s.head_dim,
            "attention.value_length": s.head_dim, "rope.dimension_count": s.rope_dims or s.head_dim,
            "vocab_size": s.n_vocab}


def shaped_gguf(template: Path, s: Shape, out: Path) -> Path:
    """A GGUF with `template`'s keys (same architecture), `s`'s sizes and tensors, and no tensor data:
    a sparse file of the full size, which llama.cpp's quantizer can plan over in a dry run."""
    import gguf
    import numpy as np

    r = gguf.GGUFReader(str(template))
    arch = r.fields["general.architecture"].contents()
    w = gguf.GGUFWriter(str(out), arch)
    sized = {f"{arch}.{k}": v for k, v in _shape_keys(s).items()}
    for name, field in r.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        value = sized.pop(name, None)
        if value is None:
            value = field.contents()
        vtype = field.types[0]
        if vtype == gguf.GGUFValueType.ARRAY:
            sub = field.types[-1]
            w.add_key_value(name, value, vtype, sub_type=sub)
        else:
            w.add_key_value(name, value, vtype)
    for name, value in sized.items():  # a size the template does not state (vocab_size but for LFM2)
        if name.endswith("vocab_size"):
            continue
        w.add_key_value(name, value, gguf.GGUFValueType.UINT32)
    total = 0
    for name, shape in gguf_tensors(s):
        nbytes = math.prod(shape) * 4
        w.add_tensor_info(name, tuple(reversed(shape)), np.dtype(np.float32), nbytes, gguf.GGMLQuantizationType.F32)
        total += -(-nbytes // w.data_alignment) * w.data_alignment
    w.write_header_to_file(path=out)
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    w.close()
    with open(out, "r+b") as f:
        f.seek(0, 2)
        start = -(-f.tell() // w.data_alignment) * w.data_alignment
        f.truncate(start + total)
    return out


def q4_k_m_tensor_bytes(template: Path, s: Shape, quant: str = "Q4_K_M") -> int:
    """The tensor bytes llama.cpp's quantizer would write for `s` as `quant` (its dry run)."""
    import llama_cpp

    from ..quantize.quantizer import QUANT_TYPES

    with tempfile.TemporaryDirectory() as tmp:
        src = shaped_gguf(template, s, Path(tmp) / "shape.gguf")
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = getattr(llama_cpp, QUANT_TYPES[quant])
        params.dry_run = True
        import logging

        logger = logging.getLogger("llama-cpp-python")
        level = logger.level
        logger.setLevel(logging.INFO)  # the dry run's total is in llama.cpp's log only
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err):
                rc = llama_cpp.llama_model_quantize(str(src).encode(), str(Path(tmp) / "out.gguf").encode(),
                                                    ctypes.byref(params))
        finally:
            logger.setLevel(level)
    # One line a tensor: "[  9/ 24] blk.0.attn_v.weight - [ 64, 64, 1, 1], type = f32, size = ... (q5_0)";
    # no "(type)" where it stays as it is. Bytes from the type's block size, exactly as written.
    planned = re.findall(r"\] +(\S+) +- \[ *(\d+), *(\d+), *(\d+), *(\d+)\], type = +(\w+), size = [^\n]*?"
                         r"(?:\((\w+)\))?\n", err.getvalue())
    if rc != 0 or len(planned) != len(gguf_tensors(s)):
        raise RuntimeError(f"llama.cpp's dry run failed ({rc}): {err.getvalue()[-800:]}")
    return sum(_bytes(new or cur, [int(n) for n in ne]) for _, *ne, cur, new in planned)


def _bytes(ggml_type: str, ne: list[int]) -> int:
    import gguf

    block, size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[ggml_type.upper()]]
    return math.prod(ne[1:]) * (ne[0] // block) * size


# ----------------------------------------------------------------------------- the table
@dataclass(frozen=True)
class Speed:
    board: str  # the board named, or the smallest RAM size of it the model fits
    tokens_per_s: float
    n_ctx: int  # the longest context (<= MAX_CONTEXT) whose KV cache and buffers fit beside the file
    fits: bool


@dataclass(frozen=True)
class Row:
    model: RealModel
    shape: Shape
    params: int
    file_bytes: int
    speeds: dict[str, Speed]  # BOARDS -> Speed


def speed_on(board_name: str, s: Shape, file_bytes: int) -> Speed:
    """Predicted tokens/s on `board_name` (or its smallest RAM size that holds the model), with the
    longest context that fits beside the file, as payload/policy/budget.py sizes the persona's context:
    KV cache and compute buffers (stratoecho.boards.ModelShape) within the board's model budget."""
    family = boards.board(board_name).name.split("-")[0]
    sizes = sorted((b for b in boards.BOARDS.values() if b.name.split("-")[0] == family and family in ("pi4", "pi5")),
                   key=lambda b: b.ram_bytes) or [boards.board(board_name)]
    sizes = [b for b in sizes if b.ram_bytes >= boards.board(board_name).ram_bytes]
    for b in sizes:
        for n_ctx in range(MAX_CONTEXT, MIN_CONTEXT - 1, -32):
            shape = boards.ModelShape(n_ctx=n_ctx, n_layers=s.attention_layers, n_embd_kv=s.n_head_kv * s.head_dim,
                                      n_embd=s.n_embd, n_vocab=s.n_vocab)
            if boards.fits(b, file_bytes, shape):
                tps = boards.predicted_tokens_per_s(b, file_bytes, shape.kv_read_bytes_per_token)
                return Speed(b.name, tps, n_ctx, True)
    b = boards.board(board_name)
    return Speed(b.name, boards.predicted_tokens_per_s(b, file_bytes), 0, False)


def row(m: RealModel, template: Path) -> Row:
    s = shape_of(m.config)
    size = q4_k_m_tensor_bytes(template, s) + TOKENIZER_BYTES_PER_TOKEN[m.tokenizer] * s.n_vocab
    return Row(m, s, parameters(s), size, {b: speed_on(b, s, size) for b in BOARDS})


def templates(work: Path) -> dict[str, Path]:
    """family -> an F32 GGUF of its tiny stand-in (the keys every GGUF of the family carries)."""
    from ..convert.convert_gguf import convert
    from .tiny_families import FAMILIES

    out = {}
    for family in sorted({m.family for m in REAL_MODELS}):
        hf = FAMILIES[family].build(work / family)
        out[family] = convert(hf, work / f"{family}.F32.gguf", "f32")
    return out


def markdown(rows: list[Row]) -> str:
    head = ("| model | parameters | GGUF arch | Q4_K_M file | " + " | ".join(BOARDS) + " |\n"
            "|---|---|---|---|" + "---|" * len(BOARDS))
    lines = [head]
    for r in rows:
        cells = []
        for name in BOARDS:
            sp = r.speeds[name]
            if not sp.fits:
                cells.append("does not fit")
                continue
            where = "" if sp.board == boards.board(name).name else f" on {sp.board}"
            cells.append(f"{sp.tokens_per_s:,.1f}{where} (ctx {sp.n_ctx})")
        lines.append(f"| {r.model.name} | {r.params / 1e6:,.0f} M | {r.shape.arch} | {r.file_bytes / 1e6:,.0f} MB | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from stratoecho.logs import setup_logging

    setup_logging("WARNING")
    with tempfile.TemporaryDirectory() as tmp:
        t = templates(Path(tmp))
        rows = [row(m, t[m.family]) for m in REAL_MODELS]
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
