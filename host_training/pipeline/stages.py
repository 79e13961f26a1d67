"""The stages every `build` shares, before and after training: each a function of typed values.

    load_data -> persona_text -> check_inputs -> claim_out_dir -> workspace
      -> (training: training.py, the one stage that differs) -> convert -> quantize -> evaluate
      -> (the bundle: bundling.py)

Nothing here reads argparse; the options arrive as a BuildConfig (build_config.py).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from stratoecho import boards

from ..quantize.quantizer import QuantResult
from ..train.heldout import Tokens
from ..train.tokenizer import Conversation, by_weight, example_weights, load_conversations
from .build_config import BuildConfig

log = structlog.get_logger(__name__)

DEFAULT_NAME = "persona"
SYSTEM_PROMPT = (
    "You are {name}, riding a weather balloon high above the Earth. "
    "Say what you see and think, in your own words."
)
SELF_PROMPT = " You wrote of yourself: {description}"  # the owner's approved self-description (about.py)
EVAL_FILE = "eval.json"
WORK_DIR = "work"
MODEL_DIR = "model"  # the checkpoint the GGUF came from, kept for `build --continue` (continuing.py)

Scorer = Callable[[Path], dict]  # a GGUF -> its held-out figures (evaluate.score_gguf's dict)


class BuildError(RuntimeError):
    """A build that cannot go on; the message says why and what to do."""


# ----------------------------------------------------------------------------- data and persona
@dataclass(frozen=True)
class Data:
    """prepare's output: training conversations (repeated by weight) and held-out ones."""

    folder: Path
    train: list[Conversation]
    val: list[Conversation]

    @property
    def train_path(self) -> Path:
        return self.folder / "train.jsonl"

    @property
    def val_path(self) -> Path:
        return self.folder / "val.jsonl"


@dataclass(frozen=True)
class PersonaText:
    name: str
    system_prompt: str
    notes: tuple[str, ...] = ()  # the owner's approved facts, seeded into the payload's memory
    language: str | None = None  # ISO 639-1 of what the owner writes (prepare's report.json), None unknown


def load_data(folder: Path) -> Data:
    """Stage 1. BuildError/DataError naming the file (and line) when the data cannot train a persona."""
    if not folder.is_dir():
        raise BuildError(
            f"{folder}: no such data directory (run `python -m host_training prepare ... --out {folder}`)"
        )
    train = load_conversations(folder / "train.jsonl")
    # prepare's quality tiers: finished writing counts more than chat (weight = times per epoch).
    train = by_weight(train, example_weights(folder / "train.jsonl"), seed=0)
    val = load_conversations(folder / "val.jsonl")
    if not train:
        raise BuildError(f"{folder / 'train.jsonl'}: no conversations to train on")
    if not any(m["role"] == "assistant" and m["content"].strip() for c in train for m in c):
        raise BuildError(f"{folder / 'train.jsonl'}: no assistant (persona) turns; was --owner right in prepare?")
    if not any(m["role"] == "assistant" and m["content"].strip() for c in val for m in c):
        raise BuildError(f"{folder / 'val.jsonl'}: no persona turns; held-out evaluation needs some")
    return Data(folder, train, val)


def persona_name(train: list[Conversation]) -> str:
    """The most common name on the persona's turns, as prepare wrote it; else DEFAULT_NAME."""
    names = Counter(m["name"].strip() for c in train for m in c if m["role"] == "assistant" and m["name"].strip())
    return names.most_common(1)[0][0] if names else DEFAULT_NAME


def persona_text(cfg: BuildConfig, data: Data) -> PersonaText:
    """The name, the system prompt (with the owner's self-description from their interview unless
    --system-prompt says otherwise) and the facts for the payload's memory."""
    from stratoecho.config import ConfigError

    from ..prepare import BlocklistError, about, load_blocklist

    name = cfg.name or persona_name(data.train)
    language = owner_language_code(cfg.data)
    prompt = cfg.system_prompt if cfg.system_prompt is not None else default_system_prompt(language, name)
    try:  # a --blocklist that is missing is check_inputs' to report
        blocklist = load_blocklist(cfg.blocklist) if cfg.blocklist is not None and cfg.blocklist.is_file() else []
        own, folder = about.for_build(cfg.interview, cfg.data, blocklist)
    except (ValueError, ConfigError, BlocklistError) as e:
        raise BuildError(str(e)) from None
    if own is None:
        return PersonaText(name, prompt, language=language)
    if own.description and cfg.system_prompt is None:
        prompt += SELF_PROMPT.format(description=own.description)
    log.info("build.self_description", interview=str(folder), description=bool(own.description),
             used=cfg.system_prompt is None, facts=len(own.facts))
    return PersonaText(name, prompt, own.facts, language)


def owner_language_code(folder: Path) -> str | None:
    """The main language prepare found in the owner's messages (DIR/report.json), or None."""
    from ..base.base_choice import owner_language

    profile = owner_language(folder)
    return profile.main if profile is not None else None


def default_system_prompt(language: str | None, name: str) -> str:
    """SYSTEM_PROMPT in the owner's language (data/languages.toml), so that the persona is told
    who it is in the language it answers in; English where the table has no translation (logged)."""
    from .. import language as L

    if language in (None, "en"):
        return SYSTEM_PROMPT.format(name=name)
    translated = L.system_prompt(language, name)
    if translated is None:
        log.warning("build.system_prompt_english", language=language,
                    why="data/languages.toml has no system prompt in it; --system-prompt sets one")
    return translated or SYSTEM_PROMPT.format(name=name)


def check_inputs(cfg: BuildConfig) -> None:
    """The files the options name exist, and BUNDLE can be claimed (out_dir_refusal): found out
    now, not after an hour of training. Nothing is written."""
    if cfg.imatrix is not None and not cfg.imatrix.is_file():
        raise BuildError(f"--imatrix {cfg.imatrix}: no such file")
    if cfg.blocklist is not None and not cfg.blocklist.is_file():
        raise BuildError(f"--blocklist {cfg.blocklist}: no such file")
    if cfg.private is not None:  # read now, so a bad file stops the build before training, not after
        from ..report import load_private_strings

        try:
            load_private_strings(cfg.private)
        except ValueError as e:
            raise BuildError(f"--private: {e}") from None
    refusal = out_dir_refusal(cfg.out, cfg.force, cfg.resume)
    if refusal is not None:
        raise BuildError(refusal)


# ----------------------------------------------------------------------------- the bundle folder
def ours(p: Path) -> bool:
    """What a build writes into BUNDLE: safe to replace (the judge folder's answers were made for
    the model being replaced, so they go with it)."""
    from stratoecho.voice_score import VOICE_FILE

    from ..evaluate.judge_score import JUDGE_DIR
    from ..quiet import LOG_FILE
    from ..report import MODELFILE, PLOT_FILE, REPORT_FILE
    from .owner_lines import LINES_FILE

    return p.name in ("persona.toml", EVAL_FILE, WORK_DIR, MODEL_DIR, REPORT_FILE, PLOT_FILE, MODELFILE, JUDGE_DIR,
                      LOG_FILE, VOICE_FILE, LINES_FILE, "blocklist.txt") or (  # bundling.BLOCKLIST_FILE
        p.name.startswith("model.") and p.name.endswith(".gguf"))


def listed_files(out: Path) -> set[str]:
    """The files the bundle in `out` lists in its [[files]] (a pinned base's terms among them):
    a build replacing it may replace them too. Empty where there is no readable persona.toml."""
    import tomllib

    try:
        data = tomllib.loads((out / "persona.toml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return set()
    return {str(f.get("path")) for f in data.get("files") or [] if isinstance(f, dict)}


def out_dir_refusal(out: Path, force: bool, resume: bool = False) -> str | None:
    """Why BUNDLE cannot be claimed (a finished bundle without --force, a folder of someone else's
    files, --resume without checkpoints), or None. Reads only."""
    if resume:
        if (out / "persona.toml").exists() and not force:
            return f"{out}: already holds a finished bundle; nothing to resume (use --force to rebuild)"
        if not (out / WORK_DIR / "checkpoints").is_dir():
            return f"{out / WORK_DIR / 'checkpoints'}: no checkpoints to resume from; run without --resume"
        return None
    if (out / "persona.toml").exists() and not force:
        return f"{out}: already holds a bundle; use --force to replace it"
    if out.exists() and not out.is_dir():
        return f"{out}: is a file, not a folder; choose an empty or new folder"
    if out.exists():
        listed = listed_files(out)
        foreign = [p.name for p in out.iterdir() if not ours(p) and p.name not in listed]
        if foreign:
            return (f"{out}: is not empty ({', '.join(sorted(foreign)[:3])}, ...) and is no bundle; "
                    "choose an empty or new folder")
    return None


def claim_out_dir(out: Path, force: bool, resume: bool = False) -> None:
    """Make BUNDLE ready for a new build: refuse a finished bundle without --force and a folder
    of someone else's files always. With `resume` the previous attempt's BUNDLE/work stays."""
    refusal = out_dir_refusal(out, force, resume)
    if refusal is not None:
        raise BuildError(refusal)
    if resume:
        (out / "persona.toml").unlink(missing_ok=True)
        for p in out.iterdir():
            if ours(p) and p.name != WORK_DIR:
                shutil.rmtree(p) if p.is_dir() else p.unlink()
        return
    if out.exists():
        # Only a previous build's files (a bundle being replaced, or what a failed build left):
        # the manifest goes first, so until the new one is written this is no bundle at all.
        (out / "persona.toml").unlink(missing_ok=True)
        for p in out.iterdir():
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    out.mkdir(parents=True, exist_ok=True)


@contextlib.contextmanager
def workspace(out: Path, keep: bool, resumable: bool) -> Iterator[Path]:
    """Where the intermediate files go. `keep` (--keep-work): BUNDLE/work, left there. A
    `resumable` training: BUNDLE/work too, so an interrupted run can --resume, removed once
    the build succeeds. Otherwise a temporary folder, removed whatever happens."""
    if keep or resumable:
        work = out / WORK_DIR
        work.mkdir(parents=True, exist_ok=True)
        yield work
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
        return
    with tempfile.TemporaryDirectory(prefix="stratoecho-build-") as tmp:
        yield Path(tmp)


# ----------------------------------------------------------------------------- what training hands on
@dataclass(frozen=True)
class Template:
    """How prompts are rendered and where generation stops, as training saw it."""

    chat_template: str
    stop: list[str]
    bos_token: str
    eos_token: str


@dataclass(frozen=True)
class Trained:
    """The training stage's result: a transformers checkpoint and what the later stages need of it."""

    model_dir: Path  # config.json, weights, tokenizer with its chat template
    label: str  # the model's row in the report: "trained", "fine-tuned"
    base: str  # persona.toml [model] base: "scratch" or the base model's folder name
    template: Template
    score: Scorer  # held-out persona loss of a GGUF of this model, on the tokens training used
    context_length: int
    n_params: int
    steps: int
    minutes: float
    training: dict  # persona.toml [training], the method's own entries
    eval_report: dict  # eval.json, the method's own entries (loss curves, merge check)
    reference_dir: Path | None = None  # the untuned base (LoRA), scored beside the tuned model
    reference_name: str = ""
    heldout: Tokens | None = None  # val.jsonl in training's ids: the conversion check and the drift
    calibration: list[list[int]] = field(default_factory=list)  # train.jsonl ids for the importance matrix


# ----------------------------------------------------------------------------- convert
@dataclass(frozen=True)
class Converted:
    f32: Path
    reference_f32: Path | None
    check: dict | None = None  # verify.Agreement.figures(): the GGUF against its checkpoint


def convert(trained: Trained, work: Path, name: str) -> Converted:
    """HF checkpoint(s) -> F32 GGUF, then the check that the GGUF computes what the checkpoint
    computes on held-out tokens (verify.py): a mismatch is a BuildError with both models' figures."""
    from ..convert import convert_gguf
    from ..evaluate import verify

    try:
        f32 = convert_gguf.convert(trained.model_dir, work / "model.F32.gguf", "f32", name=name)
        ref = None if trained.reference_dir is None else convert_gguf.convert(
            trained.reference_dir, work / "base.F32.gguf", "f32", name=trained.reference_name)
    except convert_gguf.ConvertError as e:
        raise BuildError(f"GGUF conversion: {e}") from None
    if trained.heldout is None:
        return Converted(f32, ref)
    try:
        # at the context the bundle declares: llama.cpp picks some rope factors (LongRoPE's short or
        # long) by the context it runs with, as the payload will run it
        agreement = verify.check(trained.model_dir, f32, trained.heldout, n_ctx=trained.context_length)
    except verify.VerifyError as e:
        raise BuildError(f"conversion check: {e}") from None
    if not agreement.ok:
        raise BuildError(agreement.message())
    return Converted(f32, ref, agreement.figures())


# ----------------------------------------------------------------------------- quantize
NEEDS_NO_IMATRIX = ("F32", "F16", "Q8_0")  # types llama.cpp makes without reading an importance matrix


@dataclass(frozen=True)
class Quantized:
    """The bundle's model file and, with a reference, the reference in the same type."""

    model: QuantResult  # already in BUNDLE
    file: str  # its name in BUNDLE: model.<QUANT>.gguf
    quant: str  # the type: --quant, or the one chosen for --target
    target_table: list[dict] | None  # --target: every candidate type, measured or why not
    reference: QuantResult | None  # the untuned base, in `quant`
    drift: dict | None = None  # drift.Drift.figures(): the shipped file against its F32 source
    imatrix: dict | None = None  # the importance matrix used: where from, what it covers
    # --target where the whole vocabulary cannot fit (quantize/trimmed.py): what was kept and the
    # untrimmed Q4_K_M beside the trimmed one; the trimmed F32 the shipped file came from, and the
    # scorer of the trimmed vocabulary's held-out tokens, which every trimmed model is scored with
    vocab_trim: dict | None = None
    source_f32: Path | None = None
    score: Scorer | None = None


def importance_matrix(cfg: BuildConfig, models: Converted, work: Path, trained: Trained) -> tuple[Path | None, dict | None]:
    """--imatrix FILE as given; else, for a type that reads one, computed in llama.cpp from the
    persona's training text (imatrix.py). Where it cannot be computed, the K-quants go on
    without one (a warning) and an I-quant is a BuildError."""
    from ..quantize import imatrix

    if cfg.imatrix is not None:
        return cfg.imatrix, {"source": str(cfg.imatrix)}
    if (cfg.target is None and cfg.quant in NEEDS_NO_IMATRIX) or not trained.calibration:
        return None, None
    try:
        r = imatrix.compute(models.f32, trained.calibration)
    except imatrix.ImatrixError as e:
        if cfg.target is None and cfg.quant.startswith("IQ"):
            raise BuildError(f"importance matrix for {cfg.quant}: {e}") from None
        log.warning("build.imatrix_unavailable", error=str(e), then="quantizing without one; no I-quants")
        return None, None
    path = imatrix.write(work / "imatrix.gguf", r, "persona train.jsonl")
    return path, {"source": "computed in llama.cpp from train.jsonl", "tokens": r.tokens, "chunks": r.chunks,
                  "chunk_size": r.chunk_size, "entries": len(r.sums), "seconds": r.seconds}


def quantize(cfg: BuildConfig, models: Converted, work: Path, trained: Trained) -> Quantized:
    """`--quant` as asked, or with `--target` the smallest type that fits the board, whose drift
    from the F32 model on val.jsonl is within --quant-tolerance and whose top-1 agreement with it
    reaches --quant-min-top1 (drift.py); the reference (if any)
    is quantized to the same type, to compare like with like."""
    from ..evaluate import drift
    from ..quantize import quantizer as q
    from ..quantize import trimmed

    im_path, im_info = importance_matrix(cfg, models, work, trained)  # blk.* only: the same for a trimmed F32
    trim = trim_vocabulary(cfg, models, work, trained)
    f32 = trim.f32 if trim is not None else models.f32
    reference_f32 = trim.reference_f32 if trim is not None else models.reference_f32
    heldout = trim.tokens if trim is not None else trained.heldout
    reference = None
    if heldout is not None and (cfg.target is not None or cfg.quant != "F32"):  # F32 drifts from nothing
        reference = drift.token_scores(f32, heldout)
        if len(reference.nll) < drift.MIN_CONVERSATIONS:
            log.warning("build.few_val_conversations", conversations=len(reference.nll),
                        why=f"fewer than {drift.MIN_CONVERSATIONS}: the drift's interval understates its uncertainty")
    elif cfg.target is not None:
        raise BuildError("--target needs the held-out tokens training rendered; this training gave none")

    tolerance = cfg.quant_tolerance if cfg.quant_tolerance is not None else drift.DEFAULT_TOLERANCE

    def measure(path: Path) -> dict:  # with the tolerance the build judges it by: the report's verdict
        return {**drift.measure(reference, path, heldout).figures(), "tolerance": tolerance}

    try:
        if cfg.target is None:
            quant, table = cfg.quant, None
            model_file = f"model.{quant}.gguf"
            result = q.quantize(models.f32, cfg.out / model_file, quant, verbose=cfg.verbose, imatrix=im_path)
            shipped = measure(result.path) if quant != "F32" and reference is not None else None
        else:
            min_top1 = cfg.quant_min_top1 if cfg.quant_min_top1 is not None else drift.DEFAULT_MIN_TOP1
            # Sized at the context the bundle declares (the preflight's), not the base's longest.
            chosen, table = q.for_target(f32, cfg.target, measure, work / "candidates", tolerance=tolerance,
                                         min_top1=min_top1, imatrix=im_path, n_ctx=trained.context_length)
            row = next(r for r in table if r["chosen"])
            quant, model_file = row["quant"], f"model.{row['quant']}.gguf"
            shutil.move(str(chosen), cfg.out / model_file)
            log.info("build.target", board=cfg.target, quant=quant, why=row["note"])
            result = q.QuantResult(cfg.out / model_file, quant, row["bytes"], f32.stat().st_size,
                                   str(im_path) if im_path else None)
            shipped = row["drift"]
        ref_model = None if reference_f32 is None else q.quantize(
            reference_f32, work / f"base.{quant}.gguf", quant, verbose=cfg.verbose, imatrix=im_path)
        trim_figures = None if trim is None else trimmed.compare(
            trim, models.f32, work, trained.heldout, board=cfg.target, context=trained.context_length,
            shipped=result.path, shipped_quant=quant, table=table, imatrix=im_path)
    except (q.QuantizeError, boards.NothingFits) as e:
        raise BuildError(str(e)) from None
    return Quantized(result, model_file, quant, table, ref_model, shipped, im_info, trim_figures,
                     None if trim is None else trim.f32, None if trim is None else trim.score)


def trim_vocabulary(cfg: BuildConfig, models: Converted, work: Path, trained: Trained):
    """With --target, the persona's (and the untuned base's) F32 GGUF cut to the tokens its owner's
    language needs when no type of the whole vocabulary can fit the board (quantize/trimmed.py,
    trim_vocab.py); None otherwise, and for a --from-scratch model (its vocabulary is its own)."""
    from ..evaluate import drift
    from ..quantize import trim_vocab, trimmed

    held = trained.heldout
    if cfg.target is None or held is None or not held.texts or held.texts[0].targets is None:
        return None
    texts = [m["content"] for c in load_conversations(cfg.data / "train.jsonl") for m in c if m["content"]]
    try:
        return trimmed.for_board(models.f32, models.reference_f32, work, held, board=cfg.target,
                                 context=trained.context_length, texts=texts, calibration=trained.calibration,
                                 language=owner_language_code(cfg.data), token_scores=drift.token_scores)
    except trim_vocab.TrimError as e:
        raise BuildError(f"vocabulary trimming: {e}") from None


# ----------------------------------------------------------------------------- evaluate
@dataclass(frozen=True)
class Scores:
    quantized: dict  # the shipped file
    f32: dict  # its F32 source: the price of the quantization
    reference: dict | None  # the untuned base in the same type: what training gained


def evaluate(models: Converted, quantized: Quantized, score: Scorer) -> Scores:
    """The shipped file, its F32 source and the reference on the held-out tokens: training's ids, or
    with a trimmed vocabulary its own (all three are trimmed then, so their figures compare)."""
    from .. import progress

    score = quantized.score or score
    progress.steps(1 + (quantized.quant != "F32") + (quantized.reference is not None), "models")

    def scored(path: Path) -> dict:
        try:
            return score(path)
        finally:
            progress.advance()

    q = scored(quantized.model.path)
    f32 = scored(quantized.source_f32 or models.f32) if quantized.quant != "F32" else q
    ref = scored(quantized.reference.path) if quantized.reference is not None else None
    return Scores(q, f32, ref)
