"""`build`'s convert stage (stages.convert): an HF checkpoint directory -> one GGUF file,
by llama.cpp's own converter (`convert_hf_to_gguf.py`, unpacked by `make install` from the
llama-cpp-python source distribution of the installed version: llama_cpp_source.py).

Every architecture that llama.cpp converts, converts: `python -m host_training.convert.llama_cpp_source
where` shows the converter's folder, and its `--print-supported-models` lists them. We add
nothing to its output; the one place we stand in for it is a byte-level BPE tokenizer it
does not recognise by hash (a tokenizer trained or extended here, see llama_convert.py and
pretokenizers.py).

The converter runs in a child process (its gguf-py must not meet the installed gguf
package), writes to a temporary name, and the file is renamed into place only when it is
whole. A refusal (an architecture llama.cpp does not support, a tokenizer it cannot
reproduce) is a ConvertError with the converter's own reason and the folder.

A vocabulary padded past its tokenizer converts as llama.cpp lays it out for the family;
where the converter writes a token list and embedding rows that differ (a file llama.cpp
refuses), it converts again from a copy cut to the rows the converter keeps (vocab_rows.py); a
file whose tokens and rows still differ is a ConvertError, never a GGUF.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import structlog

from . import vocab_rows
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
    cmd = [sys.executable, "-m", "host_training.convert.llama_convert", str(where), "--", *args]
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
    args = ["--outfile", str(tmp), "--outtype", outtype, "--model-name", name or hf_dir.name]
    try:
        run_converter([str(hf_dir), *args], str(hf_dir))
        layout = vocab_rows.Layout.from_gguf(tmp)
        n = vocab_rows.cut_to(layout)
        if n is not None:  # a file llama.cpp refuses: again, from a copy cut to the rows kept (rare paths)
            with tempfile.TemporaryDirectory(prefix=".vocab-cut-", dir=out_path.parent) as d:
                run_converter([str(vocab_rows.cut(hf_dir, n, Path(d))), *args], f"{hf_dir} (cut to {n} rows)")
            layout = vocab_rows.Layout.from_gguf(tmp)
        if not layout.loads:
            raise ConvertError(f"{hf_dir}: llama.cpp's converter wrote {layout.describe()}, which llama.cpp cannot "
                               "load; its tokenizer files and config.json's vocab_size do not describe one vocabulary")
        os.replace(tmp, out_path)
    except vocab_rows.VocabError as e:
        raise ConvertError(str(e)) from None
    finally:
        tmp.unlink(missing_ok=True)
    log.info("convert.done", path=str(out_path), outtype=outtype, bytes=out_path.stat().st_size)
    return out_path


def plan(hf_dir: str | Path) -> vocab_rows.Layout:
    """The converter's dry run (seconds, no tensor data read, nothing written): whether the
    architecture, its tensors and the tokenizer convert, and what it would write for the
    vocabulary, before any training."""
    hf_dir = Path(hf_dir)
    with tempfile.TemporaryDirectory(prefix="stratoecho-plan-") as d:
        done = run_converter([str(hf_dir), "--dry-run", "--outfile", str(Path(d) / "plan.gguf")],
                             f"{hf_dir} (dry run)")
    layout = vocab_rows.Layout.from_plan(done.stderr)
    if layout is None:
        raise ConvertError(f"llama.cpp's converter refused {hf_dir} (dry run): {_reason(done.stderr)}")
    return layout
