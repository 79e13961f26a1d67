"""`build`'s convert stage (stages.convert): an HF Llama or Qwen2 checkpoint directory -> one GGUF file.

llama.cpp's own `convert_hf_to_gguf.py` ships in no wheel, so this is the part of it our
model families need, written with the `gguf` package's writer, tensor-name map and
special-vocab reader:

  family   config.json model_type   GGUF arch   tokenizers
  Llama    "llama"                  llama       byte-level BPE (tokenizer.json) or
                                                SentencePiece BPE (tokenizer.model)
  Qwen2    "qwen2" (also Qwen2.5)   qwen2       byte-level BPE (tokenizer.json)

Steps:

  1. hyperparameters from config.json -> `<arch>.*` keys;
  2. tensors from the safetensors file(s), renamed with gguf.TensorNameMap. Llama's Q and K
     are permuted from HF's rotary layout back to llama.cpp's (see `permute_rotary`); Qwen2's
     are not (llama.cpp runs qwen2 with NEOX-style rope, which is HF's layout), and Qwen2
     keeps its q/k/v biases. Tied embeddings write no `output` tensor;
  3. the tokenizer:
     - byte-level BPE: tokens and types from tokenizer.json, merges, and the pre-tokenizer's
       llama.cpp name in `tokenizer.ggml.pre`, recognised from the split the tokenizer really
       uses (see BPE_PRE_TOKENIZERS), never guessed;
     - SentencePiece: pieces, scores and types (byte-fallback pieces <0x00>.. as BYTE) from
       tokenizer.model, tokens added after it from tokenizer.json, `add_space_prefix` from
       the model's normalizer spec;
     then special ids, add_bos/add_eos and the chat template (tokenizer_config.json or the
     chat_template.jinja transformers 5 writes) through gguf.SpecialVocab, and the chat's
     end-of-turn token (<|im_end|>, <|eot_id|>) as `eot`;
  4. write to a temporary name and rename, so a crash never leaves a half-written GGUF
     under the real name.

The same converter serves the from-scratch model and merged LoRA models of real HF Llamas
and Qwen2s. What it cannot convert faithfully (other architectures, sliding-window
attention, rope scaling other than linear, pre-tokenizers llama.cpp would split differently,
SentencePiece models llama.cpp would tokenize differently) it refuses with a message naming
the file and the value.

Known limit, not the converter's: llama.cpp applies no Unicode normalizer, so a Qwen2
tokenizer's NFC step is lost; text that is already NFC (what ingest produces, and nearly
all typed text) tokenizes the same, decomposed text does not.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger(__name__)

# ----------------------------------------------------------------------------- configuration
OUTTYPES = ("f32", "f16")  # F16 halves the file; 1-D tensors (norms, biases) stay F32, as llama.cpp expects
SKIPPED_TENSORS = ("rotary_emb.inv_freq",)  # recomputed by llama.cpp from rope_freq_base
ARCHS = {"llama": "LLAMA", "qwen2": "QWEN2"}  # config.json model_type -> gguf.MODEL_ARCH member
ROPE_TYPES = ("default", "linear")  # others (llama3, yarn, dynamic, longrope) are refused
# Byte-level BPE pre-tokenizers llama.cpp implements, by its name for them, as tokenizer.json
# describes them: GPT-2's ByteLevel(use_regex=True), or a Split on the model's regex followed
# by ByteLevel(use_regex=False). The regexes are the ones in the reference tokenizer.json
# files; llama.cpp compiles in the same split for each name (src/llama-vocab.cpp).
GPT2_PRE = "gpt-2"
BPE_PRE_TOKENIZERS = {
    "qwen2": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
             r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
}
NFC_OK = ("qwen2",)  # pre-tokenizers whose reference tokenizer has an NFC normalizer (see the docstring)
EOT_TOKENS = ("<|im_end|>", "<|eot_id|>")  # a chat turn's end: llama.cpp stops generating there


class ConvertError(ValueError):
    """A checkpoint this converter cannot turn into a faithful GGUF."""


# ----------------------------------------------------------------------------- hyperparameters
def read_hparams(hf_dir: Path) -> dict[str, Any]:
    path = hf_dir / "config.json"
    if not path.is_file():
        raise ConvertError(f"{path}: not found; expected a transformers checkpoint directory")
    cfg = json.loads(path.read_text(encoding="utf-8"))
    arch = cfg.get("model_type")
    if arch not in ARCHS:
        raise ConvertError(
            f"{path}: model_type {arch!r}; this converter handles {', '.join(repr(a) for a in ARCHS)} only"
        )
    n_head = cfg["num_attention_heads"]
    hp = {
        "arch": arch,
        "n_vocab": cfg["vocab_size"],
        "n_ctx": cfg["max_position_embeddings"],
        "n_embd": cfg["hidden_size"],
        "n_ff": cfg["intermediate_size"],
        "n_layer": cfg["num_hidden_layers"],
        "n_head": n_head,
        "n_head_kv": cfg.get("num_key_value_heads") or n_head,
        "head_dim": cfg.get("head_dim") or cfg["hidden_size"] // n_head,
        "rms_eps": cfg.get("rms_norm_eps", 1e-6),
        "tied": bool(cfg.get("tie_word_embeddings", False)),
    }
    if cfg.get("hidden_act", "silu") != "silu":
        raise ConvertError(f"{path}: hidden_act {cfg['hidden_act']!r}; llama.cpp's {arch} uses SiLU")
    # transformers >= 5 keeps rope settings in `rope_parameters`; older ones in rope_theta/rope_scaling.
    rope = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    hp["rope_theta"] = float(rope.get("rope_theta", cfg.get("rope_theta", 10000.0)))
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type not in ROPE_TYPES:
        raise ConvertError(f"{path}: rope type {rope_type!r} is not supported ({' and '.join(ROPE_TYPES)} are)")
    partial = rope.get("partial_rotary_factor", cfg.get("partial_rotary_factor", 1.0))
    if float(partial) != 1.0:
        raise ConvertError(f"{path}: partial_rotary_factor {partial!r}; only full rotary is supported")
    hp["rope_linear_factor"] = float(rope["factor"]) if rope_type == "linear" else None
    if arch == "llama" and (cfg.get("attention_bias") or cfg.get("mlp_bias")):
        raise ConvertError(f"{path}: attention/MLP biases are not supported for the llama architecture")
    if arch == "qwen2":
        # llama.cpp's qwen2 attends to the whole context; a model trained with a window would differ.
        sliding = [t for t in cfg.get("layer_types") or [] if t != "full_attention"]
        if cfg.get("use_sliding_window") or sliding:
            value = cfg.get("use_sliding_window") if not sliding else sliding[0]
            raise ConvertError(
                f"{path}: sliding-window attention ({value!r}) is not supported; llama.cpp's qwen2 has none"
            )
    return hp


# ----------------------------------------------------------------------------- tensors
def permute_rotary(w, n_head: int):
    """HF's Llama stores Q/K rows rotated by halves; llama.cpp's llama rope wants interleaved pairs.

    This is convert_hf_to_gguf.py's LlamaModel.permute: within each head, row order
    (0..d/2-1 | d/2..d-1) becomes (0, d/2, 1, d/2+1, ...). Pass n_head_kv for K. Qwen2 needs
    none: llama.cpp runs it with NEOX rope, which rotates halves as HF does.
    """
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def load_tensors(hf_dir: Path) -> dict[str, Any]:
    """Every tensor of the checkpoint as float32 numpy (bf16 goes through torch; numpy has no bf16)."""
    import torch
    from safetensors import safe_open

    files = sorted(hf_dir.glob("*.safetensors"))
    if not files:
        raise ConvertError(f"{hf_dir}: no *.safetensors files (save with safe_serialization=True)")
    out: dict[str, Any] = {}
    for f in files:
        with safe_open(str(f), framework="pt") as st:
            for name in st.keys():
                out[name] = st.get_tensor(name).to(torch.float32).numpy()
    return out


# ----------------------------------------------------------------------------- tokenizer: shared
def pad_vocab(by_id: dict[int, str], types: dict[int, int], n_vocab: int, path: Path) -> tuple[list[str], list[int]]:
    """Tokens 0..n_vocab-1 and their types; ids the tokenizer lacks become UNUSED [PADi]
    (the model may pad its embedding beyond the tokenizer, as Qwen2 does)."""
    import gguf

    if len(by_id) > n_vocab or max(by_id) >= n_vocab:
        raise ConvertError(
            f"{path}: the tokenizer has {len(by_id)} tokens (highest id {max(by_id)}) but config.json's "
            f"vocab_size is {n_vocab}; tokenizer and model do not belong together"
        )
    tokens = [by_id.get(i, f"[PAD{i}]") for i in range(n_vocab)]
    token_types = [types[i] if i in by_id else int(gguf.TokenType.UNUSED) for i in range(n_vocab)]
    return tokens, token_types


def added_token_type(added: dict) -> int:
    """CONTROL: parsed only when special=True, never produced from plain text, hidden when
    detokenized. USER_DEFINED: always parsed as one token, shown as its text."""
    import gguf

    return int(gguf.TokenType.CONTROL if added.get("special") else gguf.TokenType.USER_DEFINED)


# ----------------------------------------------------------------------------- tokenizer: byte-level BPE
def bpe_pre_tokenizer(path: Path, tj: dict) -> str:
    """llama.cpp's name for the tokenizer's pre-tokenizer, or ConvertError if it has none."""
    pre = tj.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    kinds = [s.get("type") for s in steps]
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True) and not steps[0].get("add_prefix_space"):
        return GPT2_PRE
    if kinds == ["Split", "ByteLevel"]:
        split, byte_level = steps
        regex = (split.get("pattern") or {}).get("Regex")
        name = next((n for n, r in BPE_PRE_TOKENIZERS.items() if r == regex), None)
        if (name and split.get("behavior") == "Isolated" and not split.get("invert")
                and not byte_level.get("use_regex", True) and not byte_level.get("add_prefix_space")):
            return name
        raise ConvertError(
            f"{path}: pre-tokenizer Split(regex {regex!r}, {split.get('behavior')}) is not one llama.cpp "
            f"implements here (known: {GPT2_PRE}, {', '.join(BPE_PRE_TOKENIZERS)}); llama.cpp would split text "
            "differently than the model was trained on"
        )
    raise ConvertError(
        f"{path}: pre-tokenizer {' + '.join(map(str, kinds)) or 'none'} is not GPT-2's ByteLevel(use_regex=True, "
        "add_prefix_space=False) nor a known regex Split; llama.cpp would split text differently than the "
        "model was trained on"
    )


def read_bpe_vocab(hf_dir: Path, n_vocab: int) -> tuple[str, list[str], list[int]]:
    """(pre-tokenizer name, token strings in byte-level form as llama.cpp's gpt2 vocab wants them, types)."""
    import gguf

    path = hf_dir / "tokenizer.json"
    if not path.is_file():
        raise ConvertError(
            f"{path}: not found; this converter needs tokenizer.json (byte-level BPE) or tokenizer.model (SentencePiece)"
        )
    tj = json.loads(path.read_text(encoding="utf-8"))
    model = tj.get("model", {})
    if model.get("type") != "BPE" or model.get("byte_fallback") or (tj.get("decoder") or {}).get("type") != "ByteLevel":
        raise ConvertError(f"{path}: not a byte-level BPE tokenizer (model {model.get('type')!r})")
    pre = bpe_pre_tokenizer(path, tj)
    kind = (tj.get("normalizer") or {}).get("type")
    if kind and not (kind == "NFC" and pre in NFC_OK):
        raise ConvertError(f"{path}: a normalizer ({kind}) is set; llama.cpp's {pre} pre-tokenizer applies none")

    by_id: dict[int, str] = {i: t for t, i in model["vocab"].items()}
    types: dict[int, int] = {i: int(gguf.TokenType.NORMAL) for i in by_id}
    for added in tj.get("added_tokens", []):
        by_id[added["id"]] = added["content"]
        types[added["id"]] = added_token_type(added)
    tokens, token_types = pad_vocab(by_id, types, n_vocab, path)
    return pre, tokens, token_types


# ----------------------------------------------------------------------------- tokenizer: SentencePiece
def _proto_fields(data: bytes) -> dict[int, list]:
    """One protobuf message's fields: {number: [value...]}; varints as int, length-delimited as
    bytes. Enough to read a SentencePiece ModelProto's specs without the protobuf package."""
    out: dict[int, list] = {}
    i = 0

    def varint() -> int:
        nonlocal i
        shift = value = 0
        while True:
            b = data[i]
            i += 1
            value |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                return value

    while i < len(data):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            value: Any = varint()
        elif wire == 2:
            n = varint()
            value, i = data[i : i + n], i + n
        elif wire in (1, 5):
            n = 8 if wire == 1 else 4
            value, i = data[i : i + n], i + n
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        out.setdefault(number, []).append(value)
    return out


def sentencepiece_spec(data: bytes) -> dict[str, Any]:
    """The settings of a serialized SentencePiece model that decide how llama.cpp must tokenize.

    sentencepiece_model.proto: ModelProto.trainer_spec = 2, .normalizer_spec = 3;
    TrainerSpec.model_type = 3 (1 unigram, 2 bpe, default unigram), .byte_fallback = 35;
    NormalizerSpec.name = 1, .precompiled_charsmap = 2, .add_dummy_prefix = 3 (default true),
    .remove_extra_whitespaces = 4 (default true).
    """
    model = _proto_fields(data)
    trainer = _proto_fields(model.get(2, [b""])[-1])
    norm = _proto_fields(model.get(3, [b""])[-1])
    return {
        "model_type": {1: "unigram", 2: "bpe", 3: "word", 4: "char"}.get(trainer.get(3, [1])[-1], "?"),
        "byte_fallback": bool(trainer.get(35, [0])[-1]),
        "normalizer": norm.get(1, [b""])[-1].decode("utf-8", "replace"),
        "charsmap": bool(norm.get(2, [b""])[-1]),
        "add_dummy_prefix": bool(norm.get(3, [1])[-1]),
        "remove_extra_whitespaces": bool(norm.get(4, [1])[-1]),
    }


def read_sentencepiece_vocab(hf_dir: Path, n_vocab: int) -> tuple[dict, list[str], list[float], list[int]]:
    """(spec, pieces, scores, types) from tokenizer.model, plus the tokens added after it."""
    import gguf
    from sentencepiece import SentencePieceProcessor

    path = hf_dir / "tokenizer.model"
    data = path.read_bytes()
    try:
        sp = SentencePieceProcessor(model_proto=data)
        spec = sentencepiece_spec(data)
    except Exception as e:  # noqa: BLE001 - a tiktoken file or junk under the SentencePiece name
        raise ConvertError(f"{path}: not a SentencePiece model ({e})") from e
    # llama.cpp's SPM tokenizer merges by piece score, which is SentencePiece BPE's encoding;
    # it neither normalizes nor collapses whitespace.
    if spec["model_type"] != "bpe":
        raise ConvertError(
            f"{path}: SentencePiece model_type {spec['model_type']!r}; llama.cpp's llama vocab reproduces 'bpe' only"
        )
    if spec["normalizer"] not in ("identity", "") or spec["charsmap"]:
        raise ConvertError(
            f"{path}: SentencePiece normalizer {spec['normalizer']!r}; llama.cpp applies none (identity)"
        )
    if spec["remove_extra_whitespaces"]:
        raise ConvertError(f"{path}: SentencePiece remove_extra_whitespaces=true; llama.cpp keeps whitespace as is")

    by_id: dict[int, str] = {}
    types: dict[int, int] = {}
    scores: dict[int, float] = {}
    for i in range(sp.get_piece_size()):
        by_id[i], scores[i] = sp.id_to_piece(i), float(sp.get_score(i))
        kind = gguf.TokenType.NORMAL
        if sp.is_unknown(i):
            kind = gguf.TokenType.UNKNOWN
        elif sp.is_control(i):
            kind = gguf.TokenType.CONTROL
        elif sp.is_unused(i):
            kind = gguf.TokenType.UNUSED
        elif sp.is_byte(i):
            kind = gguf.TokenType.BYTE  # <0x00>..<0xFF>: llama.cpp decodes them back to bytes
        types[i] = int(kind)
    tj_path = hf_dir / "tokenizer.json"
    added_tokens = json.loads(tj_path.read_text(encoding="utf-8")).get("added_tokens", []) if tj_path.is_file() else []
    for added in added_tokens:
        i = added["id"]
        if i < sp.get_piece_size():
            if by_id[i] != added["content"]:
                raise ConvertError(
                    f"{tj_path}: added token {added['content']!r} has id {i}, which tokenizer.model calls {by_id[i]!r}"
                )
            if types[i] == int(gguf.TokenType.NORMAL):  # a piece promoted to an added token
                types[i] = added_token_type(added)
            continue
        by_id[i], scores[i], types[i] = added["content"], -1000.0, added_token_type(added)
    tokens, token_types = pad_vocab(by_id, types, n_vocab, path)
    token_scores = [scores.get(i, -1000.0) for i in range(n_vocab)]
    return spec, tokens, token_scores, token_types


# ----------------------------------------------------------------------------- the conversion
def convert(hf_dir: str | Path, out_path: str | Path, outtype: str = "f32", name: str | None = None) -> Path:
    """Write `out_path` (GGUF, arch llama or qwen2) from the checkpoint in `hf_dir`; returns the path."""
    import gguf
    import numpy as np

    hf_dir, out_path = Path(hf_dir), Path(out_path)
    outtype = outtype.lower()
    if outtype not in OUTTYPES:
        raise ConvertError(f"output type {outtype!r} not supported; choose from {', '.join(OUTTYPES)} (then quantize)")
    hp = read_hparams(hf_dir)
    arch = getattr(gguf.MODEL_ARCH, ARCHS[hp["arch"]])
    # Read the tokenizer before writing anything, so a refusal leaves no temporary file behind.
    sentencepiece = (hf_dir / "tokenizer.model").is_file()
    if sentencepiece:
        sp_spec, tokens, scores, token_types = read_sentencepiece_vocab(hf_dir, hp["n_vocab"])
    else:
        pre, tokens, token_types = read_bpe_vocab(hf_dir, hp["n_vocab"])
    special = gguf.SpecialVocab(hf_dir, load_merges=not sentencepiece, n_vocab=hp["n_vocab"])
    if not sentencepiece and not special.merges:
        raise ConvertError(f"{hf_dir / 'tokenizer.json'}: no BPE merges found")
    tensors = load_tensors(hf_dir)

    # -- 1. hyperparameters
    tmp = out_path.with_name(out_path.name + ".tmp")
    writer = gguf.GGUFWriter(str(tmp), gguf.MODEL_ARCH_NAMES[arch])
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(name or hf_dir.name)
    writer.add_context_length(hp["n_ctx"])
    writer.add_embedding_length(hp["n_embd"])
    writer.add_block_count(hp["n_layer"])
    writer.add_feed_forward_length(hp["n_ff"])
    writer.add_head_count(hp["n_head"])
    writer.add_head_count_kv(hp["n_head_kv"])
    writer.add_rope_dimension_count(hp["head_dim"])
    writer.add_rope_freq_base(hp["rope_theta"])
    writer.add_layer_norm_rms_eps(hp["rms_eps"])
    writer.add_vocab_size(hp["n_vocab"])
    if hp["head_dim"] != hp["n_embd"] // hp["n_head"]:  # llama.cpp assumes n_embd/n_head otherwise
        writer.add_key_length(hp["head_dim"])
        writer.add_value_length(hp["head_dim"])
    if hp["rope_linear_factor"]:
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(hp["rope_linear_factor"])
    ftype = gguf.LlamaFileType.ALL_F32 if outtype == "f32" else gguf.LlamaFileType.MOSTLY_F16
    writer.add_file_type(ftype)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)

    # -- 2. tensors
    name_map = gguf.TensorNameMap(arch, hp["n_layer"])
    allowed = set(gguf.MODEL_TENSORS[arch])
    if hp["tied"] or "lm_head.weight" not in tensors:
        # No `output` tensor: llama.cpp then uses token_embd for the output projection.
        tensors.pop("lm_head.weight", None)
    n_written = 0
    for hf_name, data in tensors.items():
        if hf_name.endswith(SKIPPED_TENSORS):
            continue
        suffixes = (".weight", ".bias")
        new_name = name_map.get_name(hf_name, try_suffixes=suffixes)
        if new_name is None or name_map.get_type(hf_name, try_suffixes=suffixes) not in allowed:
            raise ConvertError(f"{hf_dir}: tensor {hf_name} has no place in a {hp['arch']} GGUF")
        if hp["arch"] == "llama" and new_name.endswith("attn_q.weight"):
            data = permute_rotary(data, hp["n_head"])
        elif hp["arch"] == "llama" and new_name.endswith("attn_k.weight"):
            data = permute_rotary(data, hp["n_head_kv"])
        data = data.astype(np.float16 if outtype == "f16" and data.ndim >= 2 else np.float32)
        writer.add_tensor(new_name, data)
        n_written += 1

    # -- 3. tokenizer
    if sentencepiece:
        writer.add_tokenizer_model("llama")
        writer.add_tokenizer_pre("default")
        writer.add_token_list(tokens)
        writer.add_token_scores(scores)
        writer.add_token_types(token_types)
        writer.add_add_space_prefix(sp_spec["add_dummy_prefix"])
        special.add_special_token.setdefault("bos", True)  # LlamaTokenizer's default
    else:
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(pre)
        writer.add_token_list(tokens)
        writer.add_token_types(token_types)
        special.add_special_token.setdefault("bos", False)  # ChatML opens with <|im_start|>, not a BOS
    special.add_special_token.setdefault("eos", False)
    eot = next((t for t in EOT_TOKENS if t in tokens), None)
    if eot and "eot" not in special.special_token_ids:
        special.special_token_ids["eot"] = tokens.index(eot)
    special.add_to_gguf(writer, quiet=True)

    # -- 4. write, then rename into place
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(tmp, out_path)
    log.info("convert.done", path=str(out_path), arch=hp["arch"], outtype=outtype, tensors=n_written,
             vocab=hp["n_vocab"], tokenizer="sentencepiece" if sentencepiece else pre, bytes=out_path.stat().st_size)
    return out_path
