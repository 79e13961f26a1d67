"""`build`'s quantize stage (stages.quantize): an F32/F16 GGUF through llama.cpp itself (llama-cpp-python).

`llama_model_quantize` is the same code as llama.cpp's `llama-quantize` tool, so the file
is exactly what the Pi's llama.cpp expects. Where a matrix's rows are not a multiple of
256 (the `test` preset's 64-wide model), llama.cpp falls back to a 32-block type for
that tensor (e.g. Q4_K -> Q5_0, any I-quant -> IQ4_NL); the demo preset's dimensions avoid that.

Types: F32 (a copy), F16, Q8_0, Q6_K, Q5_K_M, Q4_K_M, Q4_0, Q3_K_M, Q2_K; and the I-quants
(IQ4_XS ... IQ1_S), which this module accepts only with an importance matrix (`imatrix=`),
see "Importance matrix" below (`build` computes the persona's own, imatrix.py). `for_target`
quantizes to every type that may fit a board, measures each one's drift from the F32 model
(drift.py) and picks with targets.choose: the smallest whose drift is within a tolerance.

Cost of each type on an 8B model (perplexity increase, docs/figures.md): Q8_0 +0.003,
Q4_K_M +0.175, Q3_K_M +0.66, Q2_K +3.5, IQ2_XXS +7.9. A model of a few million parameters
has far less redundancy, so `build` measures the cost on val.jsonl and records it in persona.toml.

Importance matrix
-----------------
An importance matrix holds, for every weight matrix, the mean square of each of its input
columns' activations over some calibration text; the quantizer then spends its precision on
the columns that matter. llama.cpp refuses IQ1_*, IQ2_*, IQ3_XXS and IQ3_XS without one; it
would write IQ3_S, IQ3_M and the 4-bit I-quants without one, but they are tuned around one,
and without it the K-quant of the same size is the safer choice, so we refuse them all
without one rather than ship a silently worse file. `imatrix=PATH` takes either file llama.cpp's `llama-imatrix` writes
(`llama-imatrix -m model.F32.gguf -f calibration.txt -o imatrix.gguf`; llama-imatrix is in
llama.cpp's own builds, not in the llama-cpp-python wheel):

  * GGUF (current llama-imatrix): per weight matrix W, tensors `W.in_sum2` (F32, sums of
    squared activations, n_in values per expert) and `W.counts` (F32, activations counted,
    one per expert), keys `imatrix.datasets` (strings), `imatrix.chunk_count`,
    `imatrix.chunk_size` (u32). Importance = in_sum2 / counts (1 where the count is 0).
  * legacy `.dat`: int32 n_entries, then per entry int32 name length, the name, int32 ncall,
    int32 n_values, n_values float32 (mean square x ncall); optionally int32 last chunk,
    int32 length and the dataset's name. Importance = values / ncall.

W is the GGUF tensor name (`blk.0.attn_q.weight`); its entry has n_in = ne[0] values. The
importance goes to llama.cpp through `llama_model_quantize_params.imatrix` (a NULL-terminated
array of {name, data, size}, exactly what llama-quantize builds), and the output GGUF records
`quantize.imatrix.file/dataset/entries_count/chunks_count` as llama-quantize does.
`write_imatrix` writes the GGUF form (for matrices computed elsewhere: in llama.cpp by
imatrix.py during `build`, or from the HF checkpoint with torch hooks, as the tests do).
"""

from __future__ import annotations

import ctypes
import logging
import math
import os
import shutil
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import structlog

from stratoecho import boards as targets

from .. import progress
from ..train.lora_step import usable_cores

log = structlog.get_logger(__name__)

# ----------------------------------------------------------------------------- configuration
# Name -> llama.cpp's `llama_ftype` constant name. F32 is a plain copy (no quantization).
QUANT_TYPES: dict[str, str] = {
    "F32": "LLAMA_FTYPE_ALL_F32",
    "F16": "LLAMA_FTYPE_MOSTLY_F16",
    "Q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0",
    "Q6_K": "LLAMA_FTYPE_MOSTLY_Q6_K",
    "Q5_K_M": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
    "Q4_K_M": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
    "Q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0",
    "Q3_K_M": "LLAMA_FTYPE_MOSTLY_Q3_K_M",
    "Q2_K": "LLAMA_FTYPE_MOSTLY_Q2_K",
}
# The quantizations `make bench` measures and `--target` chooses among (the list) ...
LISTED_QUANTS: tuple[str, ...] = ("F16", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0", "Q3_K_M", "Q2_K")
TARGET_QUANTS = LISTED_QUANTS
# ... and, with an importance matrix (which `build` computes from the persona's own text), the
# I-quants of each size class that llama.cpp's tables rank best for their size; IQ4_NL, IQ3_S,
# IQ3_XS, IQ2_S and IQ2_XS sit between these at nearly the same cost, IQ1_* lose too much.
TARGET_IQUANTS: tuple[str, ...] = ("IQ4_XS", "IQ3_M", "IQ3_XXS", "IQ2_M", "IQ2_XXS")
# I-quants: only with an importance matrix. Name -> llama_ftype constant name.
IQUANT_TYPES: dict[str, str] = {
    name: f"LLAMA_FTYPE_MOSTLY_{name}"
    for name in ("IQ4_XS", "IQ4_NL", "IQ3_M", "IQ3_S", "IQ3_XS", "IQ3_XXS",
                 "IQ2_M", "IQ2_S", "IQ2_XS", "IQ2_XXS", "IQ1_M", "IQ1_S")
}
# Bits per weight of the smallest tensor type each file type writes for a matrix (its block
# size in bytes x 8 / weights per block); llama.cpp's mixes only raise some tensors above it,
# so n_weights x this / 8 is a lower bound of the file's tensor bytes. 1-D tensors stay F32.
MIN_BITS_PER_WEIGHT: dict[str, float] = {
    "F32": 32.0, "F16": 16.0, "Q8_0": 8.5, "Q6_K": 6.5625, "Q5_K_M": 5.5, "Q4_K_M": 4.5, "Q4_0": 4.5,
    "Q3_K_M": 3.4375, "Q2_K": 2.625,
    "IQ4_XS": 4.25, "IQ4_NL": 4.5, "IQ3_M": 3.4375, "IQ3_S": 3.4375, "IQ3_XS": 3.0625, "IQ3_XXS": 3.0625,
    "IQ2_M": 2.5, "IQ2_S": 2.5, "IQ2_XS": 2.3125, "IQ2_XXS": 2.0625, "IQ1_M": 1.75, "IQ1_S": 1.5625,
}
# The K-quant of about the same size, suggested when an I-quant is refused.
_IQUANT_INSTEAD = {"IQ4": "Q4_K_M", "IQ3": "Q3_K_M", "IQ2": "Q2_K", "IQ1": "Q2_K"}
# I-quants the llama.cpp in llama-cpp-python 0.3.36 itself refuses without an importance matrix
# (tried on a 256-wide model); it writes IQ3_S, IQ3_M, IQ4_XS and IQ4_NL without one.
_IMATRIX_REQUIRED_BY_LLAMA_CPP = ("IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ3_XXS", "IQ3_XS")
# Q4_K_M, measured on the demo preset (4.2M parameters, sample corpus), perplexity change
# against F32 on the 10k persona tokens of train.jsonl (val.jsonl's 490 tokens are too few to
# separate the types: every one of them landed within +-0.6 % of F32 there):
#   Q8_0 +0.05 % (4.5 MB)  Q6_K +0.1 %  Q5_K_M +0.3 %  Q4_K_M +1.3 % (2.7 MB)  Q4_0 +1.6 %
#   Q3_K_M +3.0 %  Q2_K +13.8 % (1.8 MB)          (F32 16.8 MB)
# So 4 bits do not destroy a model this small; Q4_K_M costs about what it costs an 8B model
# (+0.175 on ~6, docs/figures.md) and is the type llama.cpp's Pi benchmarks use. Q8_0 is the choice
# when every last bit of perplexity matters more than 1.8 MB.
DEFAULT_QUANT = "Q4_K_M"


class QuantizeError(RuntimeError):
    """llama.cpp refused or failed to quantize, or the request cannot be honoured (the message says why)."""


@dataclass
class QuantResult:
    path: Path
    quant: str
    bytes: int
    source_bytes: int
    imatrix: str | None = None  # the importance matrix file used, if any


def parse_quant(name: str, iquants: bool = False) -> str:
    """Canonical quant name (case-insensitive). ValueError listing the supported ones for an unknown
    name, and for an I-quant unless `iquants` (the caller has an importance matrix): saying why and
    what to do instead, so that a command line refuses it before any work is done."""
    canon = name.strip().upper()
    if canon in IQUANT_TYPES:
        if not iquants:
            raise ValueError(_iquant_refusal(canon))
        return canon
    if canon not in QUANT_TYPES:
        raise ValueError(f"unsupported quantization {name!r}; choose one of {', '.join(QUANT_TYPES)} "
                         f"(or, with an importance matrix, {', '.join(IQUANT_TYPES)})")
    return canon


def _iquant_refusal(quant: str) -> str:
    instead = _IQUANT_INSTEAD[quant[:3]]
    strict = "llama.cpp itself refuses it without one" if quant in _IMATRIX_REQUIRED_BY_LLAMA_CPP else \
        "llama.cpp would run without one, but the I-quants are tuned around one; without it the K-quant of " \
        "the same size is the safer choice"
    return (f"{quant} is an I-quant and needs an importance matrix ({strict}): pass imatrix=PATH, a file from "
            f"llama.cpp's llama-imatrix (`llama-imatrix -m model.F32.gguf -f calibration.txt -o imatrix.gguf`; "
            f"its GGUF or legacy .dat output), or choose {instead}, the K-quant of about the same size, "
            "which needs none")


# ----------------------------------------------------------------------------- importance matrix
@dataclass
class Imatrix:
    """Importance per input column of each weight matrix, as llama-quantize hands it to llama.cpp."""

    entries: dict[str, Any]  # GGUF tensor name -> float32 numpy array (n_in values per expert)
    datasets: list[str] = field(default_factory=list)
    chunk_count: int = 0
    chunk_size: int = 0
    source: str = ""
    format: str = "gguf"  # or "legacy"


def read_imatrix(path: str | Path) -> Imatrix:
    """Load an importance matrix written by llama-imatrix (GGUF or legacy .dat; see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise QuantizeError(f"{path}: no such importance matrix file")
    with path.open("rb") as f:
        magic = f.read(4)
    try:
        im = _read_imatrix_gguf(path) if magic == b"GGUF" else _read_imatrix_legacy(path)
    except (ValueError, KeyError, struct.error, IndexError) as e:
        raise QuantizeError(f"{path}: not a readable llama-imatrix file ({e})") from None
    if not im.entries:
        raise QuantizeError(f"{path}: the importance matrix holds no entries")
    import numpy as np

    for name, v in im.entries.items():
        if not np.isfinite(v).all():
            raise QuantizeError(f"{path}: entry {name} holds non-finite values; recompute the importance matrix")
    return im


def _read_imatrix_gguf(path: Path) -> Imatrix:
    import gguf
    import numpy as np

    r = gguf.GGUFReader(str(path))
    fields = {k: v.contents() for k, v in r.fields.items() if k.startswith("imatrix.")}
    sums, counts = {}, {}
    for t in r.tensors:
        if t.name.endswith(".in_sum2"):
            sums[t.name[: -len(".in_sum2")]] = np.asarray(t.data, dtype=np.float32).reshape(-1)
        elif t.name.endswith(".counts"):
            counts[t.name[: -len(".counts")]] = np.asarray(t.data, dtype=np.float32).reshape(-1)
    if set(sums) != set(counts):
        odd = sorted(set(sums) ^ set(counts))
        raise ValueError(f"sums and counts do not pair up for {', '.join(odd[:3])}")
    entries = {}
    for name, s in sums.items():
        c = counts[name]
        if c.size == 0 or s.size % c.size:
            raise ValueError(f"{name}: {s.size} sums for {c.size} counts")
        per = s.reshape(c.size, -1)
        mean = np.where(c[:, None] > 0, per / np.where(c[:, None] > 0, c[:, None], 1.0), 1.0)
        entries[name] = np.ascontiguousarray(mean.reshape(-1), dtype=np.float32)
    if "imatrix.chunk_count" not in fields:
        raise ValueError("no imatrix.chunk_count key: not llama-imatrix's GGUF output")
    return Imatrix(entries, list(fields.get("imatrix.datasets") or []), int(fields.get("imatrix.chunk_count", 0)),
                   int(fields.get("imatrix.chunk_size", 0)), str(path), "gguf")


def _read_imatrix_legacy(path: Path) -> Imatrix:
    import numpy as np

    data = path.read_bytes()
    (n,), pos = struct.unpack_from("<i", data, 0), 4
    if not 0 < n < 1_000_000:
        raise ValueError(f"implausible entry count {n}")
    entries = {}
    for _ in range(n):
        (ln,) = struct.unpack_from("<i", data, pos)
        name = data[pos + 4: pos + 4 + ln].decode("utf-8")
        ncall, nval = struct.unpack_from("<ii", data, pos + 4 + ln)
        pos += 4 + ln + 8
        if nval <= 0 or pos + 4 * nval > len(data):
            raise ValueError(f"entry {name!r}: {nval} values run past the end of the file")
        v = np.frombuffer(data, dtype="<f4", count=nval, offset=pos).astype(np.float32)
        pos += 4 * nval
        entries[name] = v / ncall if ncall > 0 else v
    chunks, datasets = 0, []
    if pos + 8 <= len(data):
        chunks, dlen = struct.unpack_from("<ii", data, pos)
        datasets = [data[pos + 8: pos + 8 + dlen].decode("utf-8", "replace")]
    return Imatrix(entries, datasets, chunks, 0, str(path), "legacy")


def write_imatrix(path: str | Path, sums: Mapping[str, Any], counts: Mapping[str, float], *,
                  datasets: Iterable[str] = (), chunk_count: int = 1, chunk_size: int = 512) -> Path:
    """Write an importance matrix in llama-imatrix's GGUF form.

    `sums[name]`: sum over `counts[name]` activations of each input column's squared value
    (n_in floats), `name` the GGUF weight tensor (`blk.0.ffn_down.weight`). Dense models only
    (one expert)."""
    import gguf
    import numpy as np

    path = Path(path)
    w = gguf.GGUFWriter(str(path), arch="imatrix")  # llama-imatrix writes general.type = imatrix too
    w.add_type("imatrix")
    w.add_array("imatrix.datasets", list(datasets) or ["unknown"])
    w.add_uint32("imatrix.chunk_count", int(chunk_count))
    w.add_uint32("imatrix.chunk_size", int(chunk_size))
    for name in sorted(sums):
        s = np.ascontiguousarray(sums[name], dtype=np.float32).reshape(1, -1)  # ne = [n_in, 1]
        w.add_tensor(f"{name}.in_sum2", s)
        w.add_tensor(f"{name}.counts", np.array([[float(counts[name])]], dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _check_imatrix_covers(src: Path, im: Imatrix, quant: str) -> None:
    """Name the weight matrices whose importance is missing or of the wrong length, before llama.cpp
    fails on them with a line in its log only."""
    import gguf

    reader = gguf.GGUFReader(str(src))
    missing, wrong = [], []
    for t in reader.tensors:
        if len(t.shape) < 2 or t.name == "token_embd.weight":  # llama.cpp never wants one for the embeddings
            continue
        n_in = int(t.shape[0]) * (int(t.shape[2]) if len(t.shape) > 2 else 1)
        v = im.entries.get(t.name)
        if v is None:
            if t.name != "output.weight":  # llama-imatrix skips output.weight unless asked
                missing.append(t.name)
        elif v.size != n_in:
            wrong.append(f"{t.name} ({v.size} values, the tensor has {n_in} input columns)")
    if wrong:
        raise QuantizeError(f"{im.source}: importance matrix does not match {src.name}: {'; '.join(wrong[:3])}"
                            + (f" and {len(wrong) - 3} more" if len(wrong) > 3 else "")
                            + "; was it computed for another model?")
    if missing and quant in _IMATRIX_REQUIRED_BY_LLAMA_CPP:
        raise QuantizeError(f"{im.source}: no importance for {', '.join(missing[:3])}"
                            + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
                            + f"; {quant} needs one for every weight matrix")
    if missing:
        log.warning("quantize.imatrix_partial", missing=len(missing), first=missing[0])


def _imatrix_params(im: Imatrix):
    """(ctypes array of llama_model_imatrix_data, kv overrides, keep-alive list) for llama_model_quantize_params."""
    import llama_cpp
    import numpy as np

    keep: list[Any] = []
    arr = (llama_cpp.llama_model_imatrix_data * (len(im.entries) + 1))()
    for i, (name, values) in enumerate(sorted(im.entries.items())):
        v = np.ascontiguousarray(values, dtype=np.float32)
        bname = name.encode()
        keep += [v, bname]
        arr[i].name = bname
        arr[i].data = v.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        arr[i].size = v.size
    arr[len(im.entries)].name = None  # terminator, as llama-quantize writes it

    kvs = [("quantize.imatrix.file", Path(im.source).name), ("quantize.imatrix.entries_count", len(im.entries)),
           ("quantize.imatrix.chunks_count", im.chunk_count)]
    if im.datasets:
        kvs.append(("quantize.imatrix.dataset", im.datasets[0]))
    over = (llama_cpp.llama_model_kv_override * (len(kvs) + 1))()  # zeroed: the last key "" ends the list
    for o, (key, value) in zip(over, kvs):
        o.key = key.encode()[:127]
        if isinstance(value, int):
            o.tag, o.value.val_i64 = llama_cpp.LLAMA_KV_OVERRIDE_TYPE_INT, value
        else:
            o.tag, o.value.val_str = llama_cpp.LLAMA_KV_OVERRIDE_TYPE_STR, value.encode()[:127]
    keep += [arr, over]
    return arr, over, keep


# ----------------------------------------------------------------------------- quantize
def quantize(
    src: str | Path, dst: str | Path, quant: str, threads: int | None = None, verbose: bool = False,
    imatrix: str | Path | Imatrix | None = None,
) -> QuantResult:
    """Quantize GGUF `src` into `dst` as `quant` (QUANT_TYPES, or IQUANT_TYPES with `imatrix`).

    `imatrix`: a llama-imatrix file (GGUF or legacy .dat) or a loaded Imatrix; required for the
    I-quants, and used to improve the K-quants too when given. `verbose` shows llama.cpp's log.
    """
    quant = parse_quant(quant, iquants=True)
    src, dst = Path(src), Path(dst)
    if quant in IQUANT_TYPES and imatrix is None:
        raise QuantizeError(_iquant_refusal(quant))
    if not src.is_file():
        raise QuantizeError(f"{src}: no such GGUF to quantize")
    im = None
    if imatrix is not None and quant != "F32":
        im = imatrix if isinstance(imatrix, Imatrix) else read_imatrix(imatrix)
        _check_imatrix_covers(src, im, quant)
    tmp = dst.with_name(dst.name + ".tmp")
    if quant == "F32":
        shutil.copyfile(src, tmp)  # llama.cpp cannot "quantize" to F32; the converter's output already is
    else:
        import llama_cpp

        # llama.cpp logs a line per tensor; llama-cpp-python routes it through this logger.
        logging.getLogger("llama-cpp-python").setLevel(logging.DEBUG if verbose else logging.ERROR)
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = getattr(llama_cpp, QUANT_TYPES.get(quant) or IQUANT_TYPES[quant])
        params.nthread = threads or usable_cores()
        keep = None
        if im is not None:
            arr, over, keep = _imatrix_params(im)
            params.imatrix = ctypes.cast(arr, ctypes.POINTER(llama_cpp.llama_model_imatrix_data))
            params.kv_overrides = ctypes.cast(over, ctypes.POINTER(llama_cpp.llama_model_kv_override))
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), ctypes.byref(params))
        del keep  # the arrays must live until llama.cpp has returned
        if rc != 0:
            tmp.unlink(missing_ok=True)
            raise QuantizeError(
                f"llama.cpp could not quantize {src} to {quant} (llama_model_quantize returned {rc}); "
                "run with --log-level DEBUG to see llama.cpp's own messages"
            )
    os.replace(tmp, dst)
    result = QuantResult(dst, quant, dst.stat().st_size, src.stat().st_size, im.source if im else None)
    log.info("quantize.done", path=str(dst), quant=quant, bytes=result.bytes, source_bytes=result.source_bytes,
             imatrix=result.imatrix)
    return result


# ----------------------------------------------------------------------------- choosing for a board
def model_shape(gguf_path: str | Path, n_ctx: int | None = None, reader=None) -> targets.ModelShape:
    """targets.ModelShape from a GGUF's header; `n_ctx` defaults to its training context length.
    `reader`: the file's gguf.GGUFReader where the caller has one; without, the header alone is
    read (stratoecho/gguf_header.py: 0.1 s where GGUFReader took ~30 s on a 262k vocabulary)."""
    if reader is None:
        from stratoecho.gguf_header import model_shape as header_shape

        return header_shape(gguf_path, n_ctx)
    r = reader
    f = {k: v.contents() for k, v in r.fields.items() if not k.startswith("GGUF.")}
    arch = f["general.architecture"]
    n_embd, n_head = int(f[f"{arch}.embedding_length"]), int(f[f"{arch}.attention.head_count"])
    n_head_kv = int(f.get(f"{arch}.attention.head_count_kv", n_head))
    head_dim = int(f.get(f"{arch}.attention.key_length", n_embd // n_head))
    n_vocab = int(f.get(f"{arch}.vocab_size") or len(f["tokenizer.ggml.tokens"]))
    return targets.ModelShape(
        n_ctx=int(n_ctx or f[f"{arch}.context_length"]), n_layers=int(f[f"{arch}.block_count"]),
        n_embd_kv=n_head_kv * head_dim, n_embd=n_embd, n_vocab=n_vocab,
    )


def min_file_bytes(src: str | Path, quant: str, reader=None) -> int:
    """A lower bound of the size of `src` quantized as `quant`: every matrix at the type's smallest
    bits per weight, 1-D tensors in F32, plus the source's metadata (tokenizer, keys) as is.
    `reader`: src's gguf.GGUFReader where the caller has one."""
    import gguf

    quant = parse_quant(quant, iquants=True)
    r = reader or gguf.GGUFReader(str(src))
    tensor_bytes = sum(int(t.n_bytes) for t in r.tensors)
    meta = Path(src).stat().st_size - tensor_bytes
    bits = MIN_BITS_PER_WEIGHT[quant]
    low = sum(int(t.n_elements) * (bits / 8 if len(t.shape) >= 2 else 4) for t in r.tensors)
    return int(meta + low)


def _judged(measured: Mapping[str, Any], quant: str, size: int) -> tuple[int, float, float] | tuple[int, float]:
    """(bytes, drift upper bound[, top-1 agreement lower bound]): what targets.choose compares."""
    try:
        high = float(measured["high"])
        top1 = None if measured.get("top1_low") is None else float(measured["top1_low"])
    except (KeyError, TypeError, ValueError, AttributeError):
        raise ValueError(f"{quant}: the drift measure returned {measured!r}; expected a mapping with a 'high' "
                         "(upper bound of the drift) entry and optionally 'top1_low'") from None
    if not math.isfinite(high):
        raise ValueError(f"{quant}: the drift's upper bound is {high!r}; expected a finite number")
    return (size, high) if top1 is None else (size, high, top1)


def for_target(
    f32_gguf: str | Path,
    board: str | targets.Board,
    measure: Callable[[Path], Mapping[str, Any]],
    out_dir: str | Path,
    *,
    tolerance: float,
    min_top1: float = 0.0,
    quants: Iterable[str] | None = None,
    n_ctx: int | None = None,
    imatrix: str | Path | Imatrix | None = None,
    keep_all: bool = False,
    threads: int | None = None,
) -> tuple[Path, list[dict]]:
    """Quantize for one board and choose the smallest type that fits it with a drift within `tolerance`.

    Arguments:
      f32_gguf     the converter's F32 (or F16) GGUF.
      board        a target name for targets.board: pi-zero-2w, pi3, pi4, pi5, or a sized
                   variant such as pi4-4gb. ValueError for an unknown name.
      measure      called once per type that fits, with the path of the quantized GGUF; returns
                   its drift from `f32_gguf` as a mapping (drift.Drift.figures()): "high", the
                   upper end of the drift's confidence interval, is what the choice compares
                   with `tolerance`, and "top1_low" (if given), the lower end of the top-1
                   agreement's, with `min_top1`; every entry goes into the type's row.
      out_dir      where `model.<TYPE>.gguf` files are written (created if missing). Only the
                   chosen file is left there unless `keep_all`.
      tolerance    the largest drift upper bound accepted (targets.choose), in the measure's unit.
      min_top1     the least top-1 agreement lower bound accepted (0: the drift alone decides).
      quants       types to consider; default TARGET_QUANTS, plus TARGET_IQUANTS with an
                   `imatrix`. I-quants need `imatrix` (QuantizeError otherwise).
      n_ctx        context the payload will run with, for the KV cache (default: the GGUF's
                   training context).

    Types whose lower-bound size (min_file_bytes) plus the KV cache and buffers already exceed
    the board's budget are skipped without quantizing; the others are quantized, measured, and
    measured only if they fit. Returns (path of the chosen GGUF, table), the table one dict per
    type in `quants` order: quant, bytes (None when skipped), fits (bool), drift (the measure's
    mapping) and val_perplexity (its entry), both absent when not measured,
    predicted_tokens_per_s (on the board, from the actual or the lower-bound size), chosen
    (bool), within_tolerance (the chosen row), note (why skipped/unfit; the choice's reason on
    the chosen row). Raises targets.NothingFits when no
    type fits (its message names the smallest candidate and the budget), QuantizeError when
    llama.cpp fails.
    """
    b = targets.board(board)
    src, out_dir = Path(f32_gguf), Path(out_dir)
    if not src.is_file():
        raise QuantizeError(f"{src}: no such GGUF to quantize")
    quants = _target_quants(quants, imatrix)
    out_dir.mkdir(parents=True, exist_ok=True)
    shape = model_shape(src, n_ctx)
    im = imatrix if imatrix is None or isinstance(imatrix, Imatrix) else read_imatrix(imatrix)

    rows: dict[str, dict] = {}
    candidates: dict[str, tuple] = {}
    sizes: dict[str, int] = {}
    paths: dict[str, Path] = {}
    progress.steps(len(quants), "types")
    for i, q in enumerate(quants):
        rows[q], sizes[q], path = _quantize_if_it_may_fit(src, out_dir / f"model.{q}.gguf", q, b, shape,
                                                          threads=threads, imatrix=im)
        if path is not None:
            paths[q] = path
        if rows[q]["fits"]:
            measured = dict(measure(path))
            candidates[q] = _judged(measured, q, sizes[q])
            rows[q].update(val_perplexity=measured.get("val_perplexity"), drift=measured)
            log.info("quantize.candidate", quant=q, n=i + 1, of=len(quants), bytes=sizes[q],
                     drift_high=round(candidates[q][1], 5))
        progress.advance()

    choice = _choose_keeping_the_pick(b, quants, candidates, sizes, paths, shape, tolerance=tolerance,
                                      min_top1=min_top1, keep_all=keep_all)
    rows[choice.quant].update(chosen=True, within_tolerance=choice.within_tolerance, note=choice.reason)
    (log.info if choice.within_tolerance else log.warning)("quantize.target", board=b.name, chosen=choice.quant,
                                                            reason=choice.reason)
    return paths[choice.quant], [rows[q] for q in quants]


def _target_quants(quants: Iterable[str] | None, imatrix: object) -> list[str]:
    """`for_target`'s types, parsed; QuantizeError for an I-quant without an importance matrix,
    before any file is written."""
    if quants is None:
        quants = TARGET_QUANTS + (TARGET_IQUANTS if imatrix is not None else ())
    quants = [parse_quant(q, iquants=True) for q in quants]
    for q in quants:
        if q in IQUANT_TYPES and imatrix is None:
            raise QuantizeError(_iquant_refusal(q))
    return quants


def _quantize_if_it_may_fit(src: Path, dest: Path, q: str, b: targets.Board, shape: targets.ModelShape, *,
                            threads: int | None, imatrix: Imatrix | None) -> tuple[dict, int, Path | None]:
    """One type's table row (fits True when the quantized file fits the board), its size (the
    lower bound when skipped) and its file (None when skipped without quantizing)."""
    extra, kv_read = shape.runtime_bytes, shape.kv_read_bytes_per_token
    low = min_file_bytes(src, q)
    row = dict(quant=q, bytes=None, fits=False, chosen=False,
               predicted_tokens_per_s=targets.predicted_tokens_per_s(b, low, kv_read), note="")
    if low + extra > b.budget_bytes:
        row["note"] = (f"skipped: at least {low / targets.MB:,.1f} MB + {extra / targets.MB:,.1f} MB runtime "
                       f"> {b.budget_bytes / targets.MB:,.0f} MB budget")
        return row, low, None
    res = quantize(src, dest, q, threads=threads, imatrix=imatrix)
    row.update(bytes=res.bytes, predicted_tokens_per_s=targets.predicted_tokens_per_s(b, res.bytes, kv_read))
    if not targets.fits(b, res.bytes, shape):
        row["note"] = (f"does not fit: {res.bytes / targets.MB:,.1f} MB + {extra / targets.MB:,.1f} MB runtime "
                       f"> {b.budget_bytes / targets.MB:,.0f} MB budget")
    else:
        row["fits"] = True
    return row, res.bytes, res.path


def _choose_keeping_the_pick(b: targets.Board, quants: list[str], candidates: dict[str, tuple],
                             sizes: dict[str, int], paths: dict[str, Path], shape: targets.ModelShape, *,
                             tolerance: float, min_top1: float, keep_all: bool) -> targets.Choice:
    """targets.choose over the measured candidates; every other file written is removed unless
    `keep_all` (all of them when the choice fails)."""
    try:
        if not candidates:  # choose() words the error: smallest candidate (measured or lower bound), budget
            targets.choose(b, {q: (sizes[q], 0.0) for q in quants}, shape, tolerance=tolerance)
        choice = targets.choose(b, candidates, shape, tolerance=tolerance, min_top1=min_top1)
    except ValueError:
        if not keep_all:
            for p in paths.values():
                p.unlink(missing_ok=True)
        raise
    if not keep_all:
        for q, p in paths.items():
            if q != choice.quant:
                p.unlink(missing_ok=True)
    return choice
