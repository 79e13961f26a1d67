"""Reading the base for the preflight (`build --base DIR`, preflight/__init__.py): config.json,
the safetensors headers (never a tensor's data), the tokenizer's files and the chat template.
Only JSON and the 8-byte length and JSON header of each safetensors file are read."""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path

from stratoecho import boards

MB = boards.MB
MAX_HEADER_BYTES = 100 * MB  # a safetensors header longer than this is no header
DTYPE_BYTES = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2, "I16": 2, "U16": 2,
               "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")


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


def read_config(base: Path) -> dict:
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
