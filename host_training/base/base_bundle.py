"""The untuned base as a bundle of its own, told what the persona is told: the control of a flight.

    python -m host_training base-bundle BUNDLE --out DIR [--gguf FILE]

A persona's musings read as its owner's only by comparison: the base it was tuned from, given the
same system prompt, chat template, stop strings, sampling, guard and memory notes and flown in the
same flight (same seed, same configuration), says what tuning changed. This writes that bundle:
BUNDLE's persona.toml with [model] naming the base's GGUF (the file persona.toml
[training.base_gguf] records, found by its sha256 among the pinned bases fetched beside the
installation, or FILE), [training] saying whose base it is, [eval] empty (nothing of the
persona's figures is the base's), and every file listed with its own sha256. Fly it with

    python -m sim fly --persona DIR --seed S ...

beside the persona's flight of the same seed, and compare the two with `voice-of-flight`.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

from stratoecho.bundle import BundleError, BundleManifest, file_entry, load_bundle, write_bundle

from .base_models import fetch_dir, sha256_file


class BaseBundleError(RuntimeError):
    """A persona whose base cannot be found or does not match what its persona.toml records."""


def find_base_gguf(manifest: BundleManifest, search: list[Path]) -> Path:
    """The GGUF of [training.base_gguf] among the files of `search` (folders), by name then by
    sha256; an error naming what was looked for and where when there is none."""
    lineage = manifest.training.get("base_gguf") or {}
    name, sha = lineage.get("file"), lineage.get("sha256")
    if not name or not sha:
        raise BaseBundleError("the persona's persona.toml records no [training.base_gguf] (file, sha256): "
                              "name the base's GGUF with --gguf")
    for folder in search:
        candidate = folder / name
        if candidate.is_file() and sha256_file(candidate) == sha:
            return candidate
    where = ", ".join(str(f) for f in search) or "nowhere"
    raise BaseBundleError(f"the base {name} (sha256 {sha[:16]}...) is not in {where}: fetch it "
                          f"(python -m host_training.base.base_models fetch NAME) or name it with --gguf")


def _place(src: Path, dst: Path) -> None:
    """`src` at `dst`: a hard link where the file system allows one (a GGUF is large), else a copy."""
    if dst.exists():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def write_base_bundle(persona: Path, out: Path, gguf: Path | None = None) -> Path:
    """Write the untuned base's bundle for the persona bundle `persona` into `out`; its persona.toml."""
    bundle = load_bundle(persona, verify=False)
    m = bundle.manifest
    src = gguf if gguf is not None else find_base_gguf(m, [fetch_dir()])
    if not src.is_file():
        raise BaseBundleError(f"{src}: no such GGUF file")
    lineage = m.training.get("base_gguf") or {}
    if gguf is not None and lineage.get("sha256") and sha256_file(src) != lineage["sha256"]:
        raise BaseBundleError(f"{src}: sha256 differs from the base the persona was tuned from "
                              f"({lineage.get('file')}, {lineage['sha256'][:16]}...)")
    if out.resolve() == bundle.root.resolve():
        raise BaseBundleError(f"{out}: the base's bundle would overwrite the persona's")
    out.mkdir(parents=True, exist_ok=True)
    _place(src, out / src.name)
    kept = [src.name]
    if m.guard.blocklist:  # the same guard: the base's words are scanned as the persona's are
        _place(bundle.root / m.guard.blocklist, out / m.guard.blocklist)
        kept.append(m.guard.blocklist)
    # The owner's files ([owner] voice, lines): the control's musings are prompted and chosen as the persona's are.
    for name in (m.owner.voice, m.owner.lines) if m.owner is not None else ():
        if name:
            _place(bundle.root / name, out / name)
            kept.append(name)
    model = m.model.model_copy(update={"file": src.name, "quantization": lineage.get("quantization", "unknown")})
    training = {"method": "none", "untuned_base_of": m.persona.name, "persona_data_sha256":
                m.training.get("data_sha256", ""), **({"base_gguf": lineage} if lineage else {})}
    manifest = m.model_copy(update={"model": model, "training": training, "eval": {},
                                    "files": [file_entry(out, rel) for rel in kept]})
    path = write_bundle(out, manifest)
    load_bundle(out)  # what was written must load and verify, as the payload will load it
    return path


def add_parser(sub) -> None:
    p = sub.add_parser("base-bundle", help="the untuned base as a bundle with the persona's prompt, for a control flight",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", type=Path, metavar="BUNDLE", help="the persona bundle (persona.toml's folder)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="where the base's bundle is written")
    p.add_argument("--gguf", type=Path, metavar="FILE",
                   help="the base's GGUF (default: the one [training.base_gguf] records, among the fetched bases)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        path = write_base_bundle(args.bundle, args.out, args.gguf)
    except (BaseBundleError, BundleError, OSError) as e:
        raise SystemExit(f"base-bundle: {e}") from None
    print(path)
    return 0
