"""The persona bundle: `persona.toml` plus the GGUF file(s) it names, each with its sha256.

Written by the workstation (`host_training build`), read and checked by the payload
before it loads a model. Pure file handling: tomllib to read, a small writer for the
flat tables the bundle uses (no extra dependency on the Pi).

    [persona]   name, system_prompt, chat_template (Jinja, the one in the GGUF), stop, language
                (ISO 639-1 of the language the owner writes and the persona answers in; "" unknown)
    [sampling]  temperature, top_p, top_k, repeat_penalty, max_tokens, frequency_penalty,
                presence_penalty, typical_p, min_p, min_tokens
    [model]     file, quantization, architecture, base, context_length, n_params
    [training]  what produced it (data sha256, steps, seed, ...)
    [eval]      held-out figures (val_loss, val_perplexity, ...)
    [guard]     blocklist: the owner's blocklist, hashed (stratoecho/blocklist.py), if any
    [memory]    notes: facts the owner approved (host_training interview), which the payload
                keeps in its memory as notes (payload/persona/memory.py, seed_notes)
    [owner]     voice, lines: the owner's voice classifier and own lines by situation (files);
                fillers, words_beyond: the owner's commonest words and how much a turn says beyond them
    [[files]]   path, sha256, bytes  -- every file the bundle ships
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .config import describe_validation_error

BUNDLE_FILE = "persona.toml"
FORMAT_VERSION = 1


class BundleError(Exception):
    """A bundle that is missing, malformed, or whose files do not match their sha256."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PersonaSection(_Strict):
    name: str
    system_prompt: str
    chat_template: str
    stop: list[str] = Field(default_factory=list)
    bos_token: str = ""
    eos_token: str = ""
    language: str = ""  # ISO 639-1 ("de"): what the owner writes; "" for a bundle built before it was recorded


class SamplingSection(_Strict):
    temperature: float = Field(0.8, ge=0.0, le=5.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    top_k: int = Field(40, ge=0)
    repeat_penalty: float = Field(1.1, ge=0.5, le=3.0)
    max_tokens: int = Field(64, ge=1, le=4096)
    # llama-cpp-python's own defaults, so a bundle written before these were recorded samples as it did
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    typical_p: float = Field(1.0, gt=0.0, le=1.0)
    min_p: float = Field(0.05, ge=0.0, lt=1.0)
    min_tokens: int = Field(0, ge=0, le=256)  # no end of turn before this many tokens (stratoecho/completion.py)


class ModelSection(_Strict):
    file: str
    quantization: str
    architecture: str
    base: str
    context_length: int = Field(ge=16)
    n_params: int = Field(ge=1)
    target: str | None = None  # the board (build --target) the quantization was chosen for


class FileEntry(_Strict):
    path: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(ge=0)


class GuardSection(_Strict):
    blocklist: str | None = None  # a file of the bundle, listed in [[files]]


class MemorySection(_Strict):
    notes: list[str] = Field(default_factory=list)


class OwnerSection(_Strict):
    """What the bundle carries of its owner's own writing for the payload to choose musings with
    (docs/payload.md, "Musings made of the owner's words"). Absent in bundles built before it."""

    voice: str | None = None  # the owner's voice classifier (stratoecho/voice_score.py), a file in [[files]]
    lines: str | None = None  # the owner's own lines indexed by situation (stratoecho/exemplars.py), in [[files]]
    fillers: list[str] = Field(default_factory=list)  # the owner's commonest words (stratoecho/substance.py)
    words_beyond: float | None = Field(None, ge=0.0)  # the owner's held-out words beyond them, per turn


class BundleManifest(_Strict):
    format: int = FORMAT_VERSION
    persona: PersonaSection
    sampling: SamplingSection = Field(default_factory=SamplingSection)
    model: ModelSection
    training: dict[str, Any] = Field(default_factory=dict)
    eval: dict[str, Any] = Field(default_factory=dict)
    guard: GuardSection = Field(default_factory=GuardSection)
    memory: MemorySection | None = None  # absent without notes: such a bundle reads as before
    owner: OwnerSection | None = None  # absent in bundles built before it: musings chosen as before
    files: list[FileEntry]


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass
class Bundle:
    root: Path
    manifest: BundleManifest
    verified: bool = field(default=False)

    @property
    def model_path(self) -> Path:
        return self.root / self.manifest.model.file

    def verify(self) -> None:
        """Check every listed file exists with its recorded size and sha256."""
        for entry in self.manifest.files:
            p = self.root / entry.path
            if not p.is_file():
                raise BundleError(f"{self.root / BUNDLE_FILE}: listed file {entry.path} is missing")
            size = p.stat().st_size
            if size != entry.bytes:
                raise BundleError(f"{p}: {size} bytes, persona.toml records {entry.bytes}")
            digest = sha256_file(p)
            if digest != entry.sha256:
                raise BundleError(f"{p}: sha256 {digest} does not match persona.toml's {entry.sha256}")
        if self.manifest.model.file not in {e.path for e in self.manifest.files}:
            raise BundleError(f"{self.root / BUNDLE_FILE}: model file {self.manifest.model.file} is not in [[files]]")
        self.verified = True

    def blocklist(self):
        """The owner's hashed blocklist (stratoecho.blocklist.HashedBlocklist), or None."""
        from .blocklist import BlocklistFormatError, HashedBlocklist

        name = self.manifest.guard.blocklist
        if name is None:
            return None
        if name not in {e.path for e in self.manifest.files}:
            raise BundleError(f"{self.root / BUNDLE_FILE}: guard.blocklist {name} is not in [[files]]")
        path = self.root / name
        try:
            return HashedBlocklist.loads(path.read_text(encoding="utf-8"), str(path))
        except (OSError, UnicodeDecodeError, BlocklistFormatError) as e:
            raise BundleError(f"{path}: {e}") from e

    def voice(self):
        """The owner's voice classifier (stratoecho.voice_score.VoiceScorer), read on the first call and
        kept: the payload reads it when it first chooses a musing, not at every one. None for a bundle
        without one ([owner] voice absent: built before it, or with too few messages to train it)."""
        from .voice_score import VoiceFileError, load_voice

        name = self.manifest.owner.voice if self.manifest.owner is not None else None
        if name is None:
            return None
        if getattr(self, "_voice", None) is None:
            if name not in {e.path for e in self.manifest.files}:
                raise BundleError(f"{self.root / BUNDLE_FILE}: owner.voice {name} is not in [[files]]")
            try:
                self._voice = load_voice(self.root / name)
            except VoiceFileError as e:
                raise BundleError(str(e)) from e
        return self._voice

    def render_prompt(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """The prompt text for `messages`, through the bundle's own chat template."""
        import jinja2  # lazy: only the payload's persona worker and the chat command need it

        # trim_blocks/lstrip_blocks and raise_exception as transformers renders chat templates, so a
        # base model's own template (build --base) gives here what it gave in training.
        env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                                 trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = _raise_template_error
        template = env.from_string(self.manifest.persona.chat_template)
        return template.render(
            messages=messages,
            add_generation_prompt=add_generation_prompt,
            bos_token=self.manifest.persona.bos_token,
            eos_token=self.manifest.persona.eos_token,
        )


def _raise_template_error(message: str):
    raise BundleError(f"chat template: {message}")


def load_bundle(path: str | Path, verify: bool = True) -> Bundle:
    root = Path(path)
    toml_path = root / BUNDLE_FILE if root.is_dir() or not root.suffix else root
    if toml_path.name == BUNDLE_FILE:
        root = toml_path.parent
    if not toml_path.is_file():
        raise BundleError(f"{toml_path}: no persona bundle here (expected {BUNDLE_FILE} beside the GGUF)")
    try:
        data = tomllib.loads(toml_path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise BundleError(f"{toml_path}: not valid TOML: {e}") from e
    try:
        manifest = BundleManifest.model_validate(data)
    except ValidationError as e:
        raise BundleError(describe_validation_error(str(toml_path), e)) from e
    if manifest.format != FORMAT_VERSION:
        raise BundleError(f"{toml_path}: bundle format {manifest.format}, this software reads {FORMAT_VERSION}")
    bundle = Bundle(root, manifest)
    if verify:
        bundle.verify()
        bundle.blocklist()  # a blocklist that does not read is refused now, not at the first musing
    return bundle


def write_bundle(root: str | Path, manifest: BundleManifest) -> Path:
    """Write persona.toml atomically (temp file, fsync, rename)."""
    import os

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    text = dumps_toml(manifest.model_dump(mode="python"))
    tomllib.loads(text)  # what we write must read back
    target = root / BUNDLE_FILE
    tmp = target.with_suffix(".toml.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target)
    return target


def file_entry(root: Path, rel: str) -> FileEntry:
    p = Path(root) / rel
    return FileEntry(path=rel, sha256=sha256_file(p), bytes=p.stat().st_size)


# ------------------------------------------------------------------ TOML out


def _without_none(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _without_none(x) for k, x in v.items() if x is not None}
    if isinstance(v, (list, tuple)):
        return [_without_none(x) for x in v]
    return v


def dumps_toml(data: dict[str, Any]) -> str:
    """`data` as TOML (tomli-w); None values are left out, since TOML has no null."""
    return tomli_w.dumps(_without_none(data))
