"""The persona's own importance matrix, computed in llama.cpp during `build`.

What llama.cpp's `llama-imatrix` tool computes (tools/imatrix/imatrix.cpp), done through
llama-cpp-python, whose wheel has no such tool: the GGUF reads a calibration sample of the
persona's training text (heldout.calibration: train.jsonl as training rendered it, at most
CALIBRATION_TOKENS tokens in chunks of up to 512, each from an empty cache, with logits for
every position so the last layer runs on every token), and llama.cpp's graph scheduler calls
back (`cb_eval` in llama_context_params) at each matrix multiplication. For every one whose
first operand is a weight named `blk.*` and whose second, the activations, is F32 with at
least 16 rows (the tool's rules: `output.weight` is left out unless asked, tiny batches are
ignored), the callback adds each input column's squared value into that weight's sums and
the number of rows into its count. quantize.write_imatrix writes the result in llama-imatrix's
GGUF form; quantize.quantize hands sums / count to llama.cpp's quantizer.

Why llama.cpp rather than torch hooks on the HF checkpoint: these are the activations of the
very graph the quantizer's model runs, named by the GGUF tensors they multiply, for any
architecture llama.cpp reads, without mapping transformers module names (or Q/K permutations)
onto GGUF names. The price: reading `struct ggml_tensor` through ctypes, whose layout belongs
to the ggml that llama-cpp-python vendors (0.3.36 here). The layout is checked on the first
callback against ggml's own accessors (ggml_get_name, ggml_nrows, ggml_op_name), so a changed
layout is an ImatrixError naming the cause, never silent garbage. Dense models only: a
mixture-of-experts multiplication (MUL_MAT_ID) is refused.
"""

from __future__ import annotations

import ctypes
import time
from dataclasses import dataclass
from pathlib import Path

import structlog

from ..train.lora_step import usable_cores

log = structlog.get_logger(__name__)

MIN_ROWS = 16  # llama-imatrix ignores multiplications of fewer tokens
GGML_TYPE_F32 = 0
_MAX_DIMS, _MAX_SRC, _MAX_OP_PARAMS, _MAX_NAME = 4, 10, 64, 64  # ggml.h


class ImatrixError(RuntimeError):
    """The importance matrix cannot be computed; the message says why."""


class _Tensor(ctypes.Structure):
    """struct ggml_tensor, ggml.h of the ggml llama-cpp-python 0.3.36 vendors."""


_Tensor._fields_ = [
    ("type", ctypes.c_int),
    ("buffer", ctypes.c_void_p),
    ("ne", ctypes.c_int64 * _MAX_DIMS),
    ("nb", ctypes.c_size_t * _MAX_DIMS),
    ("op", ctypes.c_int),
    ("op_params", ctypes.c_int32 * (_MAX_OP_PARAMS // 4)),
    ("flags", ctypes.c_int32),
    ("src", ctypes.POINTER(_Tensor) * _MAX_SRC),
    ("view_src", ctypes.POINTER(_Tensor)),
    ("view_offs", ctypes.c_size_t),
    ("data", ctypes.c_void_p),
    ("name", ctypes.c_char * _MAX_NAME),
    ("extra", ctypes.c_void_p),
    ("padding", ctypes.c_char * 8),
]


@dataclass
class Result:
    sums: dict  # GGUF weight name -> float64 numpy array, sum of squared input activations per column
    counts: dict  # GGUF weight name -> rows (tokens) added up
    tokens: int  # calibration tokens evaluated
    chunks: int
    chunk_size: int
    seconds: float


def _ggml():
    """ggml's accessors, typed (libggml, loaded by llama-cpp-python, reaches ggml-base's symbols)."""
    from llama_cpp import _ggml

    lib = _ggml.libggml
    ptr = ctypes.POINTER(_Tensor)
    lib.ggml_get_name.argtypes, lib.ggml_get_name.restype = [ptr], ctypes.c_char_p
    lib.ggml_nrows.argtypes, lib.ggml_nrows.restype = [ptr], ctypes.c_int64
    lib.ggml_nbytes.argtypes, lib.ggml_nbytes.restype = [ptr], ctypes.c_size_t
    lib.ggml_op_name.argtypes, lib.ggml_op_name.restype = [ctypes.c_int], ctypes.c_char_p
    lib.ggml_backend_tensor_get.argtypes = [ptr, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t]
    lib.ggml_backend_tensor_get.restype = None
    return lib


def _op_id(lib, name: str) -> int:
    for i in range(256):
        op = lib.ggml_op_name(i)
        if op is None:
            break
        if op.decode() == name:
            return i
    raise ImatrixError(f"this ggml has no {name} operation; llama-cpp-python's ggml is not the one this module reads")


def weight_name(name: bytes) -> str:
    """The weight's GGUF name from a graph tensor's (llama-imatrix's filter: "CUDA0#blk.0.attn_k.weight#0")."""
    text = name.decode("utf-8", "replace")
    if "#" in text:
        text = text.split("#")[1]
    return text


class _Collector:
    """The cb_eval callback: llama-imatrix's collect_imatrix for dense multiplications."""

    def __init__(self) -> None:
        self.lib = _ggml()
        self.mul_mat, self.mul_mat_id = _op_id(self.lib, "MUL_MAT"), _op_id(self.lib, "MUL_MAT_ID")
        self.sums: dict = {}
        self.counts: dict = {}
        self.checked = False
        self.error: Exception | None = None
        import llama_cpp

        self.callback = llama_cpp.ggml_backend_sched_eval_callback(self._call)  # kept alive with the collector

    def _call(self, t_ptr, ask, _user) -> bool:
        try:
            return self._collect(ctypes.cast(t_ptr, ctypes.POINTER(_Tensor)), ask)
        except Exception as e:  # noqa: BLE001 - nothing may raise through C; reported after the decode
            self.error = self.error or e
            return not ask

    def _check_layout(self, p) -> None:
        t = p.contents
        if (self.lib.ggml_get_name(p) != t.name or self.lib.ggml_nrows(p) != t.ne[1] * t.ne[2] * t.ne[3]
                or self.lib.ggml_op_name(t.op) is None):
            raise ImatrixError("llama-cpp-python's struct ggml_tensor is not laid out as this module reads it "
                               "(written for llama-cpp-python 0.3.36); pass --imatrix FILE from llama-imatrix")
        self.checked = True

    def _collect(self, p, ask: bool) -> bool:
        import numpy as np

        if not self.checked:
            self._check_layout(p)
        t = p.contents
        if t.op == self.mul_mat_id:
            raise ImatrixError("a mixture-of-experts multiplication (MUL_MAT_ID): this module computes importance "
                               "matrices for dense models only; pass --imatrix FILE from llama-imatrix")
        if t.op != self.mul_mat or not t.src[0] or not t.src[1]:
            return False
        w, x = t.src[0].contents, t.src[1]
        name = weight_name(w.name)
        if ask:
            return x.contents.ne[1] >= MIN_ROWS and x.contents.type == GGML_TYPE_F32 and name.startswith("blk.")
        xt = x.contents
        if xt.nb[0] != 4:
            raise ImatrixError(f"{name}: activations with a stride of {xt.nb[0]} bytes; expected packed F32")
        raw = np.empty(self.lib.ggml_nbytes(x), dtype=np.uint8)
        self.lib.ggml_backend_tensor_get(x, raw.ctypes.data, 0, raw.size)  # works for host and device buffers
        ne, nb = list(xt.ne), list(xt.nb)
        act = np.lib.stride_tricks.as_strided(raw.view(np.float32), shape=ne[::-1], strides=nb[::-1])
        n_mat = w.ne[2] * w.ne[3]
        sq = act.astype(np.float64) ** 2  # [ne3, ne2, ne1, ne0]
        acc = np.zeros((w.ne[3], w.ne[2], ne[0]))
        for i3 in range(ne[3]):  # flatten 3D+ activations onto a 2D weight, as llama-imatrix does
            for i2 in range(ne[2]):
                acc[i3 % w.ne[3], i2 % w.ne[2]] += sq[i3, i2].sum(axis=0)
        acc = acc.reshape(-1)
        if not np.isfinite(acc).all():
            raise ImatrixError(f"non-finite activations entering {name}")
        self.sums[name] = self.sums.get(name, 0.0) + acc
        self.counts[name] = self.counts.get(name, 0) + int(ne[1] * ne[2] * ne[3]) // n_mat
        return True


def compute(gguf_path: str | Path, calibration: list[list[int]], threads: int | None = None) -> Result:
    """Run `calibration` (chunks of token ids; those under MIN_ROWS tokens are left out) through
    `gguf_path` in llama.cpp and collect the importance of every `blk.*` weight matrix."""
    import logging

    import llama_cpp

    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)  # llama.cpp's per-graph lines
    t0 = time.monotonic()
    picked = [c for c in calibration if len(c) >= MIN_ROWS]
    if not picked:
        raise ImatrixError(f"no calibration chunk of {MIN_ROWS} tokens or more: is train.jsonl that small?")
    n_ctx = max(len(c) for c in picked)
    threads = threads or usable_cores()
    collector = _Collector()
    mparams = llama_cpp.llama_model_default_params()
    model = llama_cpp.llama_model_load_from_file(str(gguf_path).encode(), mparams)
    if not model:
        raise ImatrixError(f"{gguf_path}: llama.cpp cannot load it")
    cparams = llama_cpp.llama_context_default_params()
    cparams.n_ctx = cparams.n_batch = cparams.n_ubatch = n_ctx
    cparams.n_threads = cparams.n_threads_batch = threads
    cparams.cb_eval = collector.callback
    cparams.cb_eval_user_data = None
    ctx = llama_cpp.llama_init_from_model(model, cparams)
    batch = llama_cpp.llama_batch_init(n_ctx, 0, 1)
    tokens = 0
    try:
        if not ctx:
            raise ImatrixError(f"{gguf_path}: llama.cpp cannot make a context of {n_ctx} tokens")
        for i, chunk in enumerate(picked):
            llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
            batch.n_tokens = len(chunk)
            for k, tok in enumerate(chunk):
                batch.token[k], batch.pos[k], batch.n_seq_id[k] = tok, k, 1
                batch.seq_id[k][0] = 0
                batch.logits[k] = True  # every position, so the last layer runs on every token
            rc = llama_cpp.llama_decode(ctx, batch)
            if collector.error is not None:
                raise collector.error
            if rc != 0:
                raise ImatrixError(f"llama.cpp could not evaluate calibration chunk {i + 1} (llama_decode returned {rc})")
            tokens += len(chunk)
            log.info("imatrix.chunk", chunk=i + 1, of=len(picked), tokens=tokens)
    finally:
        llama_cpp.llama_batch_free(batch)
        if ctx:
            llama_cpp.llama_free(ctx)
        llama_cpp.llama_model_free(model)
    if not collector.sums:
        raise ImatrixError(f"{gguf_path}: llama.cpp reported no weight multiplication; nothing to collect")
    result = Result(collector.sums, collector.counts, tokens, len(picked), n_ctx, round(time.monotonic() - t0, 2))
    log.info("imatrix.done", entries=len(result.sums), tokens=tokens, chunks=len(picked), seconds=result.seconds)
    return result


def write(path: str | Path, result: Result, dataset: str) -> Path:
    """The result in llama-imatrix's GGUF form (quantize.write_imatrix)."""
    from .quantizer import write_imatrix

    return write_imatrix(path, result.sums, result.counts, datasets=[dataset], chunk_count=result.chunks,
                         chunk_size=result.chunk_size)
