"""A GGUF file's header keys, read without the `gguf` package and without its token lists.

The payload sizes each musing's context by what the model needs beside its file (stratoecho/boards.py
`ModelShape`: the KV cache, and a compute buffer as wide as the vocabulary), so it needs a few keys
of the header on the Pi, where the `gguf` package is not installed; and `gguf.GGUFReader` reads
every array it meets (a 262,144-token vocabulary took 40-65 s and 1.2 GB to read). Here a header
is walked key by key; an array's count is kept and its items skipped, strings by their lengths.

    header_keys(path) -> {key: value}   scalars and strings as values; an array as ArrayKey(type, count)
    model_shape(path, n_ctx=None)       boards.ModelShape from those keys
    GgufError                           not a GGUF, a version this does not read, or cut short:
                                        names the file and what was expected

The layout (GGUF v2 and v3, little-endian): "GGUF", u32 version, u64 tensor count, u64 key
count, then each key as a string (u64 length, UTF-8 bytes), a u32 type and its value; an array
is a u32 item type, a u64 count and the items (ggml's docs/gguf.md).
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

from .boards import ModelShape

GGUF_MAGIC = b"GGUF"
VERSIONS = (2, 3)
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
STRING, ARRAY = 8, 9


class GgufError(ValueError):
    """A file that is not a GGUF header this reads."""


@dataclass(frozen=True)
class ArrayKey:
    item_type: int
    count: int


class _Cursor:
    def __init__(self, buf, source: str) -> None:
        self.buf, self.at, self.source = buf, 0, source

    def take(self, fmt: str):
        size = struct.calcsize(fmt)
        if self.at + size > len(self.buf):
            raise GgufError(f"{self.source}: the header ends early at byte {self.at} (a cut or damaged GGUF)")
        value = struct.unpack_from(fmt, self.buf, self.at)[0]
        self.at += size
        return value

    def string(self) -> str:
        n = self.take("<Q")
        if self.at + n > len(self.buf):
            raise GgufError(f"{self.source}: a string of {n} bytes at byte {self.at} runs past the file's end")
        raw = bytes(self.buf[self.at:self.at + n])
        self.at += n
        return raw.decode("utf-8", errors="replace")

    def skip(self, kind: int, count: int) -> None:
        if kind == STRING:
            for _ in range(count):
                n = self.take("<Q")
                self.at += n
        elif kind in _SCALARS:
            self.at += struct.calcsize(_SCALARS[kind]) * count
        elif kind == ARRAY:  # arrays of arrays: walk each
            for _ in range(count):
                self.skip(self.take("<I"), self.take("<Q"))
        else:
            raise GgufError(f"{self.source}: unknown value type {kind} at byte {self.at}")

    def value(self, kind: int):
        if kind == STRING:
            return self.string()
        if kind == ARRAY:
            item, count = self.take("<I"), self.take("<Q")
            self.skip(item, count)
            return ArrayKey(item, count)
        if kind in _SCALARS:
            return self.take(_SCALARS[kind])
        raise GgufError(f"{self.source}: unknown value type {kind} at byte {self.at}")


def header_keys(path: str | Path) -> dict[str, object]:
    """Every key of the GGUF at `path` (arrays as ArrayKey: their type and count, not their items)."""
    path = Path(path)
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            c = _Cursor(buf, str(path))
            if bytes(buf[:4]) != GGUF_MAGIC:
                raise GgufError(f"{path}: not a GGUF file (expected the bytes 'GGUF' first, got {bytes(buf[:4])!r})")
            c.at = 4
            version = c.take("<I")
            if version not in VERSIONS:
                raise GgufError(f"{path}: GGUF version {version}; this reads versions {', '.join(map(str, VERSIONS))}")
            c.take("<Q")  # tensors
            keys: dict[str, object] = {}
            for _ in range(c.take("<Q")):
                key = c.string()
                keys[key] = c.value(c.take("<I"))
            return keys
    except (OSError, ValueError) as e:
        if isinstance(e, GgufError):
            raise
        raise GgufError(f"{path}: cannot read it as a GGUF ({e})") from e


def model_shape(path: str | Path, n_ctx: int | None = None) -> ModelShape:
    """The model's shape from its header; `n_ctx` defaults to its training context length."""
    k = header_keys(path)

    def need(key: str) -> int:
        v = k.get(key)
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            raise GgufError(f"{path}: no number under {key!r} in its header (expected a model GGUF)")
        return int(v)

    arch = k.get("general.architecture")
    if not isinstance(arch, str):
        raise GgufError(f"{path}: no general.architecture in its header (expected a model GGUF)")
    n_embd, n_head = need(f"{arch}.embedding_length"), need(f"{arch}.attention.head_count")
    n_head_kv = int(k.get(f"{arch}.attention.head_count_kv") or n_head)
    head_dim = int(k.get(f"{arch}.attention.key_length") or n_embd // max(n_head, 1))
    tokens = k.get("tokenizer.ggml.tokens")
    n_vocab = int(k.get(f"{arch}.vocab_size") or (tokens.count if isinstance(tokens, ArrayKey) else 0))
    return ModelShape(n_ctx=int(n_ctx or need(f"{arch}.context_length")), n_layers=need(f"{arch}.block_count"),
                      n_embd_kv=n_head_kv * head_dim, n_embd=n_embd, n_vocab=n_vocab)
