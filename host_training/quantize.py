"""Stage 4 of `build`: quantize an F32/F16 GGUF with llama.cpp itself (llama-cpp-python's low-level API).

`llama_model_quantize` is the same code as llama.cpp's `llama-quantize` tool, so the file
is exactly what the Pi's llama.cpp expects. Where a matrix's rows are not a multiple of
256 (the `test` preset's 64-wide model), llama.cpp falls back to a 32-block type for
that tensor (e.g. Q4_K -> Q5_0); the demo preset's dimensions avoid that.

Cost of each type on an 8B model (perplexity increase, FACTS.md): Q8_0 +0.003,
Q4_K_M +0.175, Q3_K_M +0.66, Q2_K +3.5. A model of a few million parameters has far
less redundancy, so `build` measures the cost on val.jsonl and records it in persona.toml.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import structlog

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
# Q4_K_M, measured on the demo preset (4.2M parameters, sample corpus), perplexity change
# against F32 on the 10k persona tokens of train.jsonl (val.jsonl's 490 tokens are too few to
# separate the types: every one of them landed within +-0.6 % of F32 there):
#   Q8_0 +0.05 % (4.5 MB)  Q6_K +0.1 %  Q5_K_M +0.3 %  Q4_K_M +1.3 % (2.7 MB)  Q4_0 +1.6 %
#   Q3_K_M +3.0 %  Q2_K +13.8 % (1.8 MB)          (F32 16.8 MB)
# So 4 bits do not destroy a model this small; Q4_K_M costs about what it costs an 8B model
# (+0.175 on ~6, FACTS.md) and is the type llama.cpp's Pi benchmarks use. Q8_0 is the choice
# when every last bit of perplexity matters more than 1.8 MB.
DEFAULT_QUANT = "Q4_K_M"


class QuantizeError(RuntimeError):
    """llama.cpp refused or failed to quantize."""


@dataclass
class QuantResult:
    path: Path
    quant: str
    bytes: int
    source_bytes: int


def parse_quant(name: str) -> str:
    """Canonical quant name (case-insensitive); ValueError listing the supported ones otherwise."""
    canon = name.strip().upper()
    if canon not in QUANT_TYPES:
        raise ValueError(f"unsupported quantization {name!r}; choose one of {', '.join(QUANT_TYPES)}")
    return canon


def quantize(
    src: str | Path, dst: str | Path, quant: str, threads: int | None = None, verbose: bool = False
) -> QuantResult:
    """Quantize GGUF `src` into `dst` as `quant` (one of QUANT_TYPES); `verbose` shows llama.cpp's log."""
    quant = parse_quant(quant)
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise QuantizeError(f"{src}: no such GGUF to quantize")
    tmp = dst.with_name(dst.name + ".tmp")
    if quant == "F32":
        shutil.copyfile(src, tmp)  # llama.cpp cannot "quantize" to F32; the converter's output already is
    else:
        import llama_cpp

        # llama.cpp logs a line per tensor; llama-cpp-python routes it through this logger.
        logging.getLogger("llama-cpp-python").setLevel(logging.DEBUG if verbose else logging.ERROR)
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = getattr(llama_cpp, QUANT_TYPES[quant])
        params.nthread = threads or os.cpu_count() or 1
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), ctypes.byref(params))
        if rc != 0:
            tmp.unlink(missing_ok=True)
            raise QuantizeError(
                f"llama.cpp could not quantize {src} to {quant} (llama_model_quantize returned {rc}); "
                "run with --log-level DEBUG to see llama.cpp's own messages"
            )
    os.replace(tmp, dst)
    result = QuantResult(dst, quant, dst.stat().st_size, src.stat().st_size)
    log.info("quantize.done", path=str(dst), quant=quant, bytes=result.bytes, source_bytes=result.source_bytes)
    return result
