"""`build`'s convert stage (stages.convert): an HF checkpoint directory -> one GGUF file,
by llama.cpp's own converter (`convert_hf_to_gguf.py`, unpacked by `make install` from the
llama-cpp-python source distribution of the installed version: llama_cpp_source.py).

Every architecture that llama.cpp converts, converts: `python -m host_training.llama_cpp_source
where` shows the converter's folder, and its `--print-supported-models` lists them. We add
nothing to its output; the one place we stand in for it is a byte-level BPE tokenizer it
does not recognise by hash (a tokenizer trained or extended here, see llama_convert.py and
pretokenizers.py).

The converter runs in a child process (its gguf-py must not meet the installed gguf
package), writes to a temporary name, and the file is renamed into place only when it is
whole. A refusal (an architecture llama.cpp does not support, a tokenizer it cannot
reproduce) is a ConvertError with the converter's own reason and the folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import structlog

from .llama_cpp_source import SourceError, converter_dir

log = structlog.get_logger(__name__)

OUTTYPES = ("f32", "f16")  # F16 halves the file; the converter keeps 1-D tensors (norms, biases) in F32
TAIL_LINES = 12  # of the converter's log, in an error


class ConvertError(ValueError):
    """A checkpoint that cannot be turned into a faithful GGUF; the message says why."""


def run_converter(args: list[str], what: str) -> subprocess.CompletedProcess:
    """llama.cpp's convert_hf_to_gguf.py with `args`, in a child process; ConvertError on failure."""
    try:
        where = converter_dir()
    except SourceError as e:
        raise ConvertError(str(e)) from e
    cmd = [sys.executable, "-m", "host_training.llama_convert", str(where), "--", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "NO_LOCAL_GGUF": ""})
    if done.returncode != 0:
        raise ConvertError(f"llama.cpp's converter refused {what}: {_reason(done.stderr)}")
    return done


def _reason(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip() and "it/s]" not in line]
    last = next((line for line in reversed(lines) if line.startswith(("error:", "ERROR:")) or "Error:" in line), None)
    tail = "\n  ".join(lines[-TAIL_LINES:])
    return f"{last or (lines[-1] if lines else 'no output')}\n  (its last lines:)\n  {tail}"


def convert(hf_dir: str | Path, out_path: str | Path, outtype: str = "f32", name: str | None = None) -> Path:
    """Write `out_path` (GGUF) from the checkpoint in `hf_dir`; returns the path."""
    hf_dir, out_path = Path(hf_dir), Path(out_path)
    outtype = outtype.lower()
    if outtype not in OUTTYPES:
        raise ConvertError(f"output type {outtype!r} not supported; choose from {', '.join(OUTTYPES)} (then quantize)")
    if not (hf_dir / "config.json").is_file():
        raise ConvertError(f"{hf_dir}: no config.json; expected a Hugging Face checkpoint folder")
    tmp = out_path.with_name(out_path.name + ".tmp")
    try:
        run_converter([str(hf_dir), "--outfile", str(tmp), "--outtype", outtype, "--model-name", name or hf_dir.name],
                      str(hf_dir))
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("convert.done", path=str(out_path), outtype=outtype, bytes=out_path.stat().st_size)
    return out_path


def check_vocab(hf_dir: str | Path, out_path: str | Path) -> Path:
    """Convert only the tokenizer and hyperparameters (`--vocab-only`, seconds): whether the
    architecture and the tokenizer convert, before any training."""
    hf_dir, out_path = Path(hf_dir), Path(out_path)
    run_converter([str(hf_dir), "--vocab-only", "--outfile", str(out_path)], f"{hf_dir} (vocabulary check)")
    return out_path
