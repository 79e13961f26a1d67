"""llama.cpp's own HF -> GGUF converter, from the llama-cpp-python source distribution.

The converter (`convert_hf_to_gguf.py`, its `conversion/` modules, one per model family, and
the `gguf-py` package of the same llama.cpp commit) ships in no wheel, but it is inside the
llama-cpp-python source distribution, under `vendor/llama.cpp`. `make install` downloads
that source distribution of the pinned version from the package registry once (pip
download, into .venv/src/), compiles llama-cpp-python from it, and unpacks the converter
here with `python -m host_training.convert.llama_cpp_source unpack SDIST`:

    .venv/share/stratoecho/llama.cpp/
        VERSION                 the llama-cpp-python version it came from
        convert_hf_to_gguf.py   conversion/   gguf-py/   LICENSE

So the converter is always the one of the llama.cpp that loads the result, and nothing is
downloaded when a build runs. STRATOECHO_LLAMA_CPP names another folder of the same layout
(e.g. a llama.cpp checkout of the same version).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import re
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

ENV = "STRATOECHO_LLAMA_CPP"
KEEP = ("convert_hf_to_gguf.py", "conversion", "gguf-py", "LICENSE")  # under vendor/llama.cpp/
_SDIST = re.compile(r"llama_cpp_python-(\d+(?:\.\d+)*)\.tar\.gz$")


class SourceError(RuntimeError):
    """The converter is not where it should be, or is not the installed llama.cpp's."""


def default_dir() -> Path:
    return Path(sys.prefix) / "share" / "stratoecho" / "llama.cpp"


def installed_version() -> str | None:
    try:
        return importlib.metadata.version("llama_cpp_python")
    except importlib.metadata.PackageNotFoundError:
        return None


def converter_dir() -> Path:
    """The folder holding llama.cpp's converter, checked; SourceError saying how to get it."""
    where = Path(os.environ[ENV]) if os.environ.get(ENV) else default_dir()
    script = where / "convert_hf_to_gguf.py"
    if not script.is_file():
        raise SourceError(f"llama.cpp's converter is not installed ({script} not found): run `make install`, "
                          f"which unpacks it from the llama-cpp-python source distribution, or set {ENV} to a "
                          "llama.cpp folder of the installed version")
    if not os.environ.get(ENV):  # a folder the user named is theirs to keep in step
        have, want = (where / "VERSION").read_text().strip() if (where / "VERSION").is_file() else "?", installed_version()
        if want is not None and have != want:
            raise SourceError(f"llama.cpp's converter in {where} is from llama-cpp-python {have}, but {want} is "
                              "installed: run `make install` to unpack the converter of the installed version")
    return where


def unpack(sdist: Path, dest: Path | None = None) -> Path:
    """Unpack the converter from a llama-cpp-python source distribution into `dest`
    (default `default_dir()`), replacing what was there only once the new copy is whole."""
    m = _SDIST.search(sdist.name)
    if m is None:
        raise SourceError(f"{sdist}: not a llama-cpp-python source distribution (llama_cpp_python-X.Y.Z.tar.gz)")
    version, dest = m.group(1), dest or default_dir()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".llama.cpp-", dir=dest.parent))
    try:
        found = set()
        with tarfile.open(sdist, "r:gz") as tar:
            for member in tar.getmembers():
                parts = PurePosixPath(member.name).parts
                if len(parts) < 4 or parts[1:3] != ("vendor", "llama.cpp") or parts[3] not in KEEP:
                    continue
                if not (member.isfile() or member.isdir()):
                    continue  # no links or devices from an archive
                found.add(parts[3])
                member.name = str(PurePosixPath(*parts[3:]))
                tar.extract(member, tmp, filter="data")
        missing = set(KEEP) - found - {"LICENSE"}
        if missing:
            raise SourceError(f"{sdist}: no vendor/llama.cpp/{', '.join(sorted(missing))} in it")
        (tmp / "VERSION").write_text(version + "\n")
        old = dest.with_name(dest.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if dest.exists():
            dest.rename(old)
        tmp.rename(dest)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m host_training.convert.llama_cpp_source",
        description="Unpack llama.cpp's HF->GGUF converter from a llama-cpp-python source distribution "
                    "(make install does this; the sdist comes from `pip download --no-binary :all: "
                    "--no-deps llama-cpp-python==VERSION`).")
    sub = parser.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("unpack", help="unpack the converter from SDIST")
    up.add_argument("sdist", type=Path, help="llama_cpp_python-X.Y.Z.tar.gz")
    up.add_argument("--dest", type=Path, default=None, help=f"where to (default {default_dir()})")
    sub.add_parser("where", help="print the converter's folder, or why there is none")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "unpack":
            print(unpack(args.sdist, args.dest))
        else:
            print(converter_dir())
    except (SourceError, OSError, tarfile.TarError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
