"""`build --base DIR`'s preflight (stage 2, training.LoraTraining.check): seconds, before any
training step and before BUNDLE is touched, everything about the base that would otherwise
only show after hours of training.

    1. files      config.json, weights (safetensors headers: the parameter count, and a file
                  shorter than its header says: an interrupted download), a tokenizer whose
                  highest token id has a row in the embedding (config vocab_size)
    2. memory     weights at the quantization (--quant, or with --target the smallest
                  candidate) + tokenizer + KV cache + compute buffer at the bundle's context,
                  against the board's budget (stratoecho.boards); a refusal names the
                  remedies in numbers (context, model size, quantization, board)
    3. converts   llama.cpp's own converter in a dry run (nothing written, no tensor data
                  read): the architecture, its tensors and the tokenizer convert, and the
                  token list and embedding rows it would write agree, or a cut of the rows
                  no token uses makes them agree (vocab_rows.py; noted)
    4. template   the base's chat template, or the fallback the build will use (reported)

Nothing here imports torch or transformers or reads a tensor's data: only JSON, the 8-byte
length and JSON header of each safetensors file, and one child process (the converter).

Where: the files and the template are read in checkpoint.py; the memory is sized in memory.py
(which tells how each tensor's type and size are estimated, and how closely); the converter's
dry run and the verdict are here.

Context: the bundle's (persona.toml [model] context_length), which is what training rows
are cut to: --max-length, or the LoRA preset's row length, capped by the base's
max_position_embeddings. The payload never runs a longer one.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from stratoecho import boards

from ..quantize.quantizer import LISTED_QUANTS, parse_quant
from .checkpoint import (
    MB,
    PreflightError,
    Template,
    Tensor,
    architecture,
    chat_template,
    read_config,
    read_tensors,
    read_tokenizer,
    text_config,
    weight_files,
)
from .memory import (
    Fit,
    boards_by_size,
    fit,
    lower_quant,
    model_shape,
    most_tokens,
    remedies,
    tensor_type,
    trimmed_fit,
    weight_bytes,
)

__all__ = [
    "FAMILIES", "MB", "Fit", "PreflightError", "Report", "Template", "Tensor", "architecture", "boards_by_size",
    "bundle_context", "chat_template", "converts", "fit", "lower_quant", "model_shape", "read_config", "read_tensors",
    "read_tokenizer", "remedies", "run", "tensor_type", "text_config", "weight_bytes", "weight_files"
]  # fmt: skip

FAMILIES = ("Llama (SmolLM2, TinyLlama, Llama 3.2)", "Qwen2 / Qwen2.5 / Qwen3", "Mistral", "Gemma 2 / 3", "Phi-3",
            "Granite 3", "LFM2")


# ----------------------------------------------------------------------------- the result
@dataclass
class Report:
    """What the preflight found, every figure in it; `lines()` for people, `as_dict()` for eval.json."""

    base: str
    architecture: str
    n_params: int
    weight_files: list[str]
    tokenizer: str
    tokens: int | None
    vocab_size: int
    template: Template
    context: int
    context_source: str
    quant: str  # the quantization the verdict rests on
    board: str | None  # --target, or None
    fits: list[Fit]  # the verdict's first, then the others shown
    notes: list[str] = field(default_factory=list)  # warnings and hints; a refusal's remedies
    converter: str = ""
    seconds: float = 0.0
    # --target where only a trimmed vocabulary fits (quantize/trimmed.py): the tokens the verdict is
    # sized at, the most that fit, the whole vocabulary and what it would need
    trim: dict | None = None

    @property
    def verdict(self) -> Fit:
        return self.fits[0]

    def as_dict(self) -> dict:
        return dict(base=self.base, architecture=self.architecture, n_params=self.n_params,
                    weight_files=self.weight_files, tokenizer=self.tokenizer, tokens=self.tokens,
                    vocab_size=self.vocab_size, chat_template=asdict(self.template), context=self.context,
                    context_source=self.context_source, quant=self.quant, board=self.board,
                    memory=[f.as_dict() for f in self.fits], notes=self.notes, converter=self.converter,
                    seconds=round(self.seconds, 2), **({"vocab_trim": self.trim} if self.trim else {}))

    def lines(self) -> list[str]:
        out = [f"preflight of {self.base}: {self.architecture}, {self.n_params / 1e6:,.1f} M parameters "
               f"({', '.join(self.weight_files[:2])}{' ...' if len(self.weight_files) > 2 else ''}), "
               f"{self.seconds:.1f} s",
               f"  converts: {self.converter or 'not checked'}",
               f"  tokenizer: {self.tokenizer}, {self.tokens if self.tokens is not None else '?'} tokens; "
               f"config.json vocab_size {self.vocab_size}",
               f"  chat template: {self.template.note}",
               f"  context: {self.context} tokens ({self.context_source})"]
        out += ["  " + line for line in self.verdict.lines()]
        if self.trim:
            out.append(f"  vocabulary trimmed to the owner's language: {self._trimmed()}")
        others = self.fits[1:]
        if others:
            out.append("  " + ("other boards at " + self.quant if self.board is None else "other candidates for "
                               + self.board) + ": " + ", ".join(
                f"{f.board if self.board is None else f.quant} {f.verdict} ({f.need / MB:,.1f} MB of "
                f"{f.budget / MB:,.1f})" for f in others))
        out += [f"  note: {n}" for n in self.notes]
        return out

    def text(self) -> str:
        return "\n".join(self.lines())

    def short(self) -> str:
        """The verdict in one line, and the notes: what a build shows of it (the whole in its log)."""
        f = self.verdict
        out = [f"preflight: {self.architecture}, {self.n_params / 1e6:,.1f} M parameters, context {self.context}; "
               f"{f.board} at {self.quant}: {f.verdict} ({f.need / MB:,.1f} MB of {f.budget / MB:,.1f})"
               + (f" once its vocabulary is trimmed to the owner's language: {self._trimmed()}" if self.trim else "")]
        return "\n".join(out + [f"  note: {n}" for n in self.notes])

    def _trimmed(self) -> str:
        t = self.trim or {}
        return (f"sized at {t['plan']:,} of its "
                f"{t['of']:,} tokens, at most {t['most']:,} fit (the whole vocabulary needs {t['whole_mb']:,.1f} MB "
                "at its smallest type)")

    def log_fields(self) -> dict:
        """The figures the verdict rests on, in MB, for the log."""
        f = self.verdict
        return dict(base=self.base, architecture=self.architecture, n_params=self.n_params, context=self.context,
                    quant=self.quant, board=f.board, verdict=f.verdict, template=self.template.source,
                    weights_mb=round(f.weights / MB, 1), weights_low_mb=round(f.weights_low / MB, 1),
                    tokenizer_mb=round(f.tokenizer / MB, 1), kv_cache_mb=round(f.kv_cache / MB, 1),
                    compute_mb=round(f.compute / MB, 1), need_mb=round(f.need / MB, 1),
                    budget_mb=round(f.budget / MB, 1), left_for_daemon_mb=round(f.left_for_daemon / MB, 1),
                    seconds=round(self.seconds, 2))


# ----------------------------------------------------------------------------- the checks
def bundle_context(config: dict, n_params: int, preset: str, max_length: int | None) -> tuple[int, str]:
    """The context the bundle will declare: training's row length (finetune.train's rule)."""
    from ..finetune import PRESETS, pick_preset

    name = pick_preset(preset, n_params)
    rows = max_length or PRESETS[name]["max_length"]
    source = "--max-length" if max_length else f"the {name} preset's training rows"
    limit = text_config(config).get("max_position_embeddings")
    if isinstance(limit, int) and limit < rows:
        return limit, f"{source} ({rows}), capped by the base's max_position_embeddings"
    return rows, source if max_length else source + "; --max-length sets it"


def run(base: str | Path, *, quant: str = "Q4_K_M", target: str | None = None, preset: str = "auto",
        max_length: int | None = None, chat_template_mode: str = "base", convert: bool = True) -> Report:
    """Check `base` for `build --base` (module docstring). PreflightError saying why and what to do;
    else the Report, with warnings in its notes. `convert=False` skips the converter (tests)."""
    t0 = time.monotonic()
    base = Path(base)
    quant = parse_quant(quant, iquants=True)
    config = read_config(base)
    arch = architecture(config)
    tc = text_config(config)
    tensors, files = read_tensors(base, config)
    n_params = sum(t.n for t in tensors)
    tok = read_tokenizer(base)
    vocab = _vocab_size(base, tc, tok)
    template = chat_template(base, chat_template_mode)
    ctx, ctx_source = bundle_context(config, n_params, preset, max_length)
    shape = model_shape(config, ctx)

    notes: list[str] = []
    if target is not None:
        board = boards.board(target).name
        every = [fit(board, q, tensors, config, tok.size_bytes, shape) for q in LISTED_QUANTS]
        ok = [f for f in every if f.verdict == "fits"]
        trim = None if ok else _trim_plan(board, tensors, config, tok.size_bytes, shape, every)
        if trim is not None:  # only a vocabulary cut to the owner's language fits: sized so
            every = [trimmed_fit(board, q, tensors, config, tok.size_bytes, shape, trim["plan"]) for q in LISTED_QUANTS]
            ok = [f for f in every if f.verdict == "fits"]
            notes.append(f"vocabulary: no type of the whole vocabulary fits a {board}; the build keeps the tokens of "
                         f"the owner's text and language (~{trim['plan']:,} of {trim['of']:,}) before quantizing "
                         "and checks the trimmed model against the whole one in llama.cpp (quantize/trim_vocab.py); "
                         f"more than {trim['most']:,} kept would not fit")
        # shown in full: the biggest type that fits (the likeliest choice), else the smallest candidate
        check = ok[0] if ok else min(every, key=lambda f: f.need)
        fits = [check] + [f for f in every if f is not check]
        if ok:
            notes.append(f"--target {board}: {', '.join(f.quant for f in ok)} should fit; the build quantizes each "
                         "candidate that may fit, scores it on val.jsonl and keeps the best")
        notes.append(_pinned_on(board))
        verdict_quant = check.quant
    else:
        board = None
        fits = [fit(b, quant, tensors, config, tok.size_bytes, shape) for b in boards_by_size()]
        # the verdict: the smallest board it fits, else the biggest board
        first = next((f for f in fits if f.verdict == "fits"), fits[-1])
        shown = [f for f in fits if f.board in ("pi-zero-2w", "pi3", "pi4-2gb", "pi5-2gb")]
        fits = [first] + [f for f in shown if f is not first]
        check = first
        verdict_quant = quant
        zero = next(f for f in fits if f.board == "pi-zero-2w")
        if zero.verdict != "fits":
            lower = lower_quant(zero.board, quant, tensors, config, tok.size_bytes, shape)
            notes.append(f"{quant} does not fit a pi-zero-2w" + (f"; {lower} would, or" if lower else ";")
                         + " --target BOARD picks the best type that fits a board")
    if check.verdict == "does not fit":
        where = f"{check.board}" if target else "any board, not even a " + check.board
        lines = "\n  ".join(check.lines())
        fixes = remedies(check, shape, n_params)
        if target is None:
            lower = lower_quant(check.board, quant, tensors, config, tok.size_bytes, shape)
            if lower:
                fixes.insert(0, f"a lower quantization: --quant {lower} fits a {check.board}")
        else:
            fixes.append(_pinned_on(check.board))
        raise PreflightError(
            f"{base} ({arch}, {n_params / 1e6:,.1f} M parameters) does not fit {where} at "
            f"{verdict_quant}{' (the smallest candidate)' if target else ''} with a {ctx}-token context "
            f"({ctx_source}):\n  {lines}\n  Remedies:\n  - " + "\n  - ".join(fixes))

    report = Report(str(base), arch, n_params, files, tok.file, tok.tokens, vocab, template, ctx, ctx_source,
                    verdict_quant, board, fits, notes, trim=trim if target is not None else None)
    if convert:
        report.converter, note = converts(base, arch, None if tok.max_id is None else tok.max_id + 1)
        report.notes += [note] if note else []
    report.seconds = time.monotonic() - t0
    return report


def _vocab_size(base: Path, tc: dict, tok) -> int:
    """config.json's vocab_size, which every id of the tokenizer must be below; PreflightError else."""
    vocab = tc.get("vocab_size")
    if not isinstance(vocab, int):
        raise PreflightError(f"{base / 'config.json'}: no vocab_size")
    if tok.max_id is not None and tok.max_id >= vocab:
        raise PreflightError(
            f"{base}: the tokenizer ({tok.file}) has ids up to {tok.max_id} ({tok.tokens} tokens) but config.json's "
            f"vocab_size is {vocab}: tokens {vocab}..{tok.max_id} have no embedding row. Training would fail on the "
            "first of them, and llama.cpp's converter refuses the mismatch; the tokenizer and the weights are from "
            "different models, or config.json is wrong")
    return vocab


def _trim_plan(board: str, tensors: list[Tensor], config: dict, tokenizer_bytes: int, shape: boards.ModelShape,
               whole: list[Fit]) -> dict | None:
    """When no type of the whole vocabulary fits `board` but one of a vocabulary trimmed to
    trim_vocab.PLAN_TOKENS does: the plan the build will follow (quantize/trimmed.py); else None."""
    from ..quantize.trim_vocab import PLAN_TOKENS

    vocab = int(text_config(config).get("vocab_size") or 0)
    if vocab <= PLAN_TOKENS:
        return None
    smallest = min(whole, key=lambda f: f.need)
    most = most_tokens(board, smallest.quant, tensors, config, tokenizer_bytes, shape)
    if most < PLAN_TOKENS:
        return None
    return dict(plan=PLAN_TOKENS, most=most, of=vocab, whole_mb=round(smallest.need / MB, 1))


def _pinned_on(board: str) -> str:
    """Which pinned base fits `board` (base_models.fits_on: a Q4_K_M persona, the longest context that fits)."""
    from ..base.base_models import board_summary

    return board_summary(board) + " (python -m host_training.base.base_models list; --base NAME)"


def converts(base: Path, arch: str, n: int | None) -> tuple[str, str | None]:
    """llama.cpp's converter in a dry run (convert_gguf.plan): (what it takes, a note on a padded
    vocabulary or None), `n` the tokenizer's ids; PreflightError with its reason."""
    from ..convert import convert_gguf, vocab_rows
    from ..convert.llama_cpp_source import installed_version

    t0 = time.monotonic()
    try:
        layout = convert_gguf.plan(base)
    except convert_gguf.ConvertError as e:
        what = ("its architecture" if "not supported" in str(e) else "its tokenizer" if "tokenizer" in str(e).lower()
                else "it")
        raise PreflightError(
            f"{base}: llama.cpp's converter does not take {what} (config.json architectures: {arch}), so no GGUF "
            f"could be made after training. {e}\n  Remedies: a base of a family llama.cpp "
            f"converts ({', '.join(FAMILIES)}, ...; the full list: python \"$(python -m "
            "host_training.convert.llama_cpp_source where)/convert_hf_to_gguf.py\" --print-supported-models), or a "
            f"newer llama-cpp-python than {installed_version() or '?'} (pip install -U llama-cpp-python, then "
            "make install, which unpacks its converter) if this architecture is newer than it") from None
    cut = vocab_rows.cut_to(layout)
    if cut is not None and (n is None or n > cut):
        raise PreflightError(
            f"{base}: llama.cpp's converter writes {layout.describe()} for this base, which llama.cpp cannot load, "
            f"and its tokenizer uses {n or '?'} ids, more than the {cut} rows the converter keeps, so no cut of "
            "unused rows mends it and no GGUF could be made after training: the tokenizer files and config.json's "
            "vocab_size do not describe one vocabulary (with tokenizer.model beside tokenizer.json the converter "
            "takes its SentencePiece path, which pads)")
    if cut is not None:
        note = (f"vocabulary: llama.cpp's converter writes {layout.describe()} for this base, which llama.cpp "
                f"cannot load; the build converts a copy cut to the {cut} rows it keeps (the tokenizer's {n} ids "
                "among them; no text reaches the rows cut)")
    elif n is not None and layout.tokens > n:
        note = (f"vocabulary padded: {layout.tokens} embedding rows for {n} tokens; the GGUF lists the "
                f"{layout.tokens - n} unused ids as [PAD] tokens and keeps their rows, as llama.cpp's converter does")
    else:
        note = None
    return (f"yes: llama.cpp's converter takes {arch}, its tensors and its tokenizer ({layout.tokens:,} tokens, "
            f"{time.monotonic() - t0:.1f} s)", note)
