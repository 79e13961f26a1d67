"""A vocabulary padded past its tokenizer, as llama.cpp's converter lays it out.

Real checkpoints keep more embedding rows than their tokenizer has tokens (config.json's
`vocab_size`, rounded up for the GPU: Qwen3 151,936 rows for 151,669 tokens, Phi-3 32,064
for 32,011). llama.cpp loads a GGUF only when its token list (`tokenizer.ggml.tokens`) has
exactly as many entries as `token_embd` (and an untied `output`) has rows. Its converter
keeps that rule on most of its paths and breaks it on two:

  path of the converter (llama.cpp's conversion/)           token list        embedding rows
  byte-level BPE, get_vocab_base (Qwen, Llama 3, Granite...) vocab_size: the    vocab_size
                                                             unused ids as
                                                             [PAD{id}] tokens
  SentencePiece tokenizer.model (Gemma, Phi-3, Llama 2)      vocab_size, same   vocab_size
  Gemma 3 without tokenizer.model (gemma.py)                 vocab_size, same   cut to tokenizer.json's
                                                                                vocab + added_tokens
  Llama-style SentencePiece tokenizer.json without           the tokenizer's    vocab_size
  tokenizer.model (gguf-py LlamaHfVocab)                     tokens only

On those two the converter writes a file llama.cpp refuses ("token_embd.weight has wrong
shape"). The rows past the tokenizer are never read (no text becomes those ids), so the build
converts a copy of the checkpoint cut to the rows the converter keeps instead (`cut_to`,
`cut`): then it writes as many tokens as rows. Where the converter pads, nothing is cut and
the GGUF keeps llama.cpp's own layout. The preflight sees which it is before training, from the converter's
dry run (`Layout.from_plan`: no tensor data read, seconds); the build from the file the
converter wrote (`Layout.from_gguf`), so a padded checkpoint the converter lays out well costs
nothing more, and one it does not is converted twice.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

# HF names of the matrices with a row per token id: the embedding and an untied output head
VOCAB_TENSOR = re.compile(r"(^|\.)(embed_tokens|lm_head|wte|word_embeddings)\.(weight|bias)$")


class VocabError(ValueError):
    """The checkpoint's vocabulary cannot be cut (no embedding found in safetensors files)."""


@dataclass(frozen=True)
class Layout:
    """What llama.cpp's converter writes for a checkpoint's vocabulary."""

    tokens: int  # entries of tokenizer.ggml.tokens (0: no token list; nothing to check)
    rows: int | None  # token_embd.weight's rows (None: an architecture without one; nothing to check)
    output_rows: int | None = None  # output.weight's, None when tied to the embedding

    @property
    def loads(self) -> bool:
        """Whether llama.cpp accepts it: one row per listed token in every vocabulary matrix."""
        return not self.tokens or (self.rows in (None, self.tokens) and self.output_rows in (None, self.tokens))

    def describe(self) -> str:
        out = "" if self.output_rows is None else f" and {self.output_rows} output rows"
        return f"{self.tokens} tokens and {self.rows} embedding rows{out}"

    @classmethod
    def from_gguf(cls, path: str | Path) -> Layout:
        import gguf

        r = gguf.GGUFReader(str(path))
        field = r.fields.get("tokenizer.ggml.tokens")
        rows = {t.name: int(t.shape[-1]) for t in r.tensors if t.name in ("token_embd.weight", "output.weight")}
        return cls(len(field.data) if field is not None else 0, rows.get("token_embd.weight"), rows.get("output.weight"))

    @classmethod
    def from_plan(cls, stderr: str) -> Layout | None:
        """From the line llama_convert prints in a --dry-run; None when there is none."""
        from .llama_convert import PLAN_PREFIX

        line = next((ln for ln in stderr.splitlines() if ln.startswith(PLAN_PREFIX)), None)
        if line is None:
            return None
        plan = json.loads(line[len(PLAN_PREFIX):])
        rows = plan["rows"]
        return cls(int(plan["tokens"] or 0), rows.get("token_embd.weight"), rows.get("output.weight"))


def config_rows(hf_dir: Path) -> int | None:
    """config.json's vocab_size (its text_config's for a multimodal checkpoint): the embedding's rows."""
    config = json.loads((Path(hf_dir) / "config.json").read_text(encoding="utf-8"))
    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else {}
    rows = text.get("vocab_size", config.get("vocab_size"))
    return int(rows) if isinstance(rows, int) else None


def cut_to(layout: Layout) -> int | None:
    """None when llama.cpp loads what the converter writes; else how many rows to cut the
    checkpoint to: the fewest the converter keeps anywhere (tokens listed, embedding or output
    rows). Cut so, both paths of the table above write as many tokens as rows. Whether that
    still covers every id of the tokenizer is the caller's to check (preflight, verify)."""
    if layout.loads:
        return None
    return min(x for x in (layout.tokens, layout.rows, layout.output_rows) if x is not None)


def cut(hf_dir: Path, n: int, out: Path) -> Path:
    """`hf_dir` with its vocabulary cut to the first `n` rows, in `out`: config.json's vocab_size
    (and text_config's) set to n, the embedding and output matrices cut (their safetensors files
    rewritten), every other file a symbolic link to the original."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    config = json.loads((hf_dir / "config.json").read_text(encoding="utf-8"))
    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else config
    old = config_rows(hf_dir)
    found = {}  # safetensors file -> its tensors with a row per token id
    for f in sorted(hf_dir.glob("*.safetensors")):  # a sharded checkpoint's shards are every one of them
        with safe_open(str(f), "pt") as st:
            names = [k for k in st.keys() if VOCAB_TENSOR.search(k) and st.get_slice(k).get_shape()[:1] == [old]]
        if names:
            found[f] = names
    if not found:
        raise VocabError(f"{hf_dir}: no embedding of {old} rows in its safetensors files to cut to {n} rows, as "
                         "llama.cpp needs here (a pytorch_model.bin checkpoint is not cut: save it as safetensors)")
    out.mkdir(parents=True, exist_ok=True)
    for f, names in found.items():
        with safe_open(str(f), "pt") as st:
            tensors = {k: st.get_tensor(k)[:n].contiguous() if k in names else st.get_tensor(k) for k in st.keys()}
            metadata = st.metadata() or {"format": "pt"}
        save_file(tensors, str(out / f.name), metadata=metadata)
    rewritten = {f.name for f in found}
    cut_names = [k for names in found.values() for k in names]
    for p in hf_dir.iterdir():
        if p.name not in rewritten and p.name != "config.json":
            (out / p.name).symlink_to(p.resolve())
    text["vocab_size"] = n
    if "vocab_size" in config:
        config["vocab_size"] = n
    (out / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    log.info("vocab.cut", checkpoint=str(hf_dir), rows=old, kept=n, tensors=cut_names, into=str(out),
             why="llama.cpp's converter would write a token list and embedding rows that differ; no text reaches "
                 "the rows cut")
    return out
