"""Stage 3 of `build`: an HF Llama checkpoint directory -> one GGUF file (F32 or F16).

llama.cpp's own `convert_hf_to_gguf.py` ships in no wheel, so this is the part of it a
Llama with a GPT-2 byte-level BPE tokenizer needs, written with the `gguf` package's
writer, tensor-name map and special-vocab reader. Steps:

  1. hyperparameters from config.json -> `llama.*` keys;
  2. tensors from the safetensors file(s), renamed with gguf.TensorNameMap, Q and K
     permuted from HF's rotary layout back to llama.cpp's (see `permute_rotary`);
  3. the tokenizer: tokens and their types from tokenizer.json, merges, special ids,
     add_bos/add_eos and the chat template through gguf.SpecialVocab;
  4. write to a temporary name and rename, so a crash never leaves a half-written GGUF
     under the real name.

The same converter serves the from-scratch model and (later) merged LoRA models of real
HF Llamas; what it cannot convert faithfully (other architectures, other pre-tokenizers,
unsupported rope scaling) it refuses with a message naming the file and the value.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger(__name__)

# ----------------------------------------------------------------------------- configuration
OUTTYPES = ("f32", "f16")  # F16 halves the file; 1-D tensors (norms) stay F32, as llama.cpp expects
SKIPPED_TENSORS = ("rotary_emb.inv_freq",)  # recomputed by llama.cpp from rope_freq_base
PRE_TOKENIZER = "gpt-2"  # llama.cpp's name for the GPT-2 split regex our ByteLevel(use_regex=True) uses


class ConvertError(ValueError):
    """A checkpoint this converter cannot turn into a faithful GGUF."""


# ----------------------------------------------------------------------------- hyperparameters
def read_hparams(hf_dir: Path) -> dict[str, Any]:
    path = hf_dir / "config.json"
    if not path.is_file():
        raise ConvertError(f"{path}: not found; expected a transformers checkpoint directory")
    cfg = json.loads(path.read_text(encoding="utf-8"))
    if cfg.get("model_type") != "llama":
        raise ConvertError(f"{path}: model_type {cfg.get('model_type')!r}; this converter handles 'llama' only")
    n_head = cfg["num_attention_heads"]
    hp = {
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
    # transformers >= 5 keeps rope settings in `rope_parameters`; older ones in rope_theta/rope_scaling.
    rope = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    hp["rope_theta"] = float(rope.get("rope_theta", cfg.get("rope_theta", 10000.0)))
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type not in ("default", "linear"):
        raise ConvertError(f"{path}: rope type {rope_type!r} is not supported yet (default and linear are)")
    hp["rope_linear_factor"] = float(rope["factor"]) if rope_type == "linear" else None
    if cfg.get("attention_bias") or cfg.get("mlp_bias"):
        raise ConvertError(f"{path}: attention/MLP biases are not supported for the llama architecture")
    return hp


# ----------------------------------------------------------------------------- tensors
def permute_rotary(w, n_head: int):
    """HF's Llama stores Q/K rows rotated by halves; llama.cpp's rope wants interleaved pairs.

    This is convert_hf_to_gguf.py's LlamaModel.permute: within each head, row order
    (0..d/2-1 | d/2..d-1) becomes (0, d/2, 1, d/2+1, ...). Pass n_head_kv for K.
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


# ----------------------------------------------------------------------------- tokenizer
def read_vocab(hf_dir: Path, n_vocab: int) -> tuple[list[str], list[int]]:
    """Token strings (byte-level form, as llama.cpp's gpt2 vocab wants them) and their types."""
    import gguf

    path = hf_dir / "tokenizer.json"
    if not path.is_file():
        raise ConvertError(f"{path}: not found; this converter needs a fast (tokenizer.json) BPE tokenizer")
    tj = json.loads(path.read_text(encoding="utf-8"))
    model, pre = tj.get("model", {}), tj.get("pre_tokenizer") or {}
    if model.get("type") != "BPE" or model.get("byte_fallback") or (tj.get("decoder") or {}).get("type") != "ByteLevel":
        raise ConvertError(f"{path}: not a byte-level BPE tokenizer (model {model.get('type')!r})")
    if pre.get("type") != "ByteLevel" or not pre.get("use_regex", True) or pre.get("add_prefix_space"):
        raise ConvertError(
            f"{path}: pre-tokenizer {pre.get('type')!r} is not GPT-2's ByteLevel(use_regex=True, "
            "add_prefix_space=False); llama.cpp would split text differently than the model was trained on"
        )
    if tj.get("normalizer"):
        kind = tj["normalizer"].get("type")
        raise ConvertError(f"{path}: a normalizer ({kind}) is set; llama.cpp's gpt2 vocab has none")

    by_id: dict[int, str] = {i: t for t, i in model["vocab"].items()}
    types: dict[int, int] = {i: int(gguf.TokenType.NORMAL) for i in by_id}
    for added in tj.get("added_tokens", []):
        by_id[added["id"]] = added["content"]
        # CONTROL: parsed only when special=True, never produced from plain text, hidden when detokenized.
        types[added["id"]] = int(gguf.TokenType.CONTROL if added.get("special") else gguf.TokenType.USER_DEFINED)
    if len(by_id) > n_vocab or max(by_id) >= n_vocab:
        raise ConvertError(
            f"{path}: the tokenizer has {len(by_id)} tokens (highest id {max(by_id)}) but config.json's "
            f"vocab_size is {n_vocab}; tokenizer and model do not belong together"
        )
    tokens, token_types = [], []
    for i in range(n_vocab):  # the model may pad its embedding beyond the tokenizer
        if i in by_id:
            tokens.append(by_id[i])
            token_types.append(types[i])
        else:
            tokens.append(f"[PAD{i}]")
            token_types.append(int(gguf.TokenType.UNUSED))
    return tokens, token_types


# ----------------------------------------------------------------------------- the conversion
def convert(hf_dir: str | Path, out_path: str | Path, outtype: str = "f32", name: str | None = None) -> Path:
    """Write `out_path` (GGUF, arch llama) from the checkpoint in `hf_dir`; returns the path."""
    import gguf
    import numpy as np

    hf_dir, out_path = Path(hf_dir), Path(out_path)
    outtype = outtype.lower()
    if outtype not in OUTTYPES:
        raise ConvertError(f"output type {outtype!r} not supported; choose from {', '.join(OUTTYPES)} (then quantize)")
    hp = read_hparams(hf_dir)
    arch = gguf.MODEL_ARCH.LLAMA

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
    tensors = load_tensors(hf_dir)
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
            raise ConvertError(f"{hf_dir}: tensor {hf_name} has no place in a llama GGUF")
        if new_name.endswith("attn_q.weight"):
            data = permute_rotary(data, hp["n_head"])
        elif new_name.endswith("attn_k.weight"):
            data = permute_rotary(data, hp["n_head_kv"])
        data = data.astype(np.float16 if outtype == "f16" and data.ndim >= 2 else np.float32)
        writer.add_tensor(new_name, data)
        n_written += 1

    # -- 3. tokenizer
    tokens, token_types = read_vocab(hf_dir, hp["n_vocab"])
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(PRE_TOKENIZER)
    writer.add_token_list(tokens)
    writer.add_token_types(token_types)
    special = gguf.SpecialVocab(hf_dir, load_merges=True, n_vocab=hp["n_vocab"])
    if not special.merges:
        raise ConvertError(f"{hf_dir / 'tokenizer.json'}: no BPE merges found")
    # ChatML turns end with <|im_end|>: mark it end-of-turn so llama.cpp stops generating there.
    if "<|im_end|>" in tokens and "eot" not in special.special_token_ids:
        special.special_token_ids["eot"] = tokens.index("<|im_end|>")
    special.add_special_token.setdefault("bos", False)  # ChatML opens with <|im_start|>, not a BOS
    special.add_special_token.setdefault("eos", False)
    special.add_to_gguf(writer, quiet=True)

    # -- 4. write, then rename into place
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(tmp, out_path)
    log.info("convert.done", path=str(out_path), outtype=outtype, tensors=n_written,
             vocab=hp["n_vocab"], bytes=out_path.stat().st_size)
    return out_path
