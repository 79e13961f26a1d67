"""The trimmed vocabulary in `build --target` (stages.quantize): when to trim, the held-out text in the
trimmed ids, and the trimmed model beside the untrimmed one for persona.toml and report.md.

    needed(f32, board, context)     no listed type of the full vocabulary fits the board at the
                                    bundle's context, as quantize.for_target would find
    for_board(...) -> Trimmed       where needed: trim_vocab.choose / write / check on the persona's
                                    F32 GGUF (and the untuned base's, with the same kept ids, so
                                    that both are scored on the same tokens), the held-out tokens
                                    re-tokenized (retokenized) and their characters counted
    compare(...) -> dict            the untrimmed Q4_K_M (which does not fit) beside the trimmed
                                    one and the shipped file: size, memory and context on every
                                    board, predicted tokens/s, held-out bits per character
    report_lines(figures, ...)      report.md's table

Why bits per character. The two vocabularies split the owner's held-out text into different tokens
(a word the trimmed one lacks becomes two or three pieces), so a perplexity per token compares
unlike units; the negative log-likelihood of the same persona text, summed and divided by its
characters (in bits), does not depend on how the text was cut. Every trimmed model (the F32 it was
quantized from, the candidates, the untuned base) is scored on the trimmed tokens, so their
perplexities compare with each other as before.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from stratoecho import boards

from ..train.heldout import TokenCheck, Tokens
from ..train.tokenizer import chunks
from . import trim_vocab
from .trim_vocab import Check, Kept, TrimError

log = structlog.get_logger(__name__)

COMPARED_QUANT = "Q4_K_M"  # the untrimmed file the report puts beside the trimmed one: llama.cpp's usual default


def needed(f32: str | Path, board: str, context: int, reader=None) -> bool:
    """True when not even the smallest listed type of `f32` can fit `board` at `context` (the lower
    bound quantize.for_target skips candidates on): only trimming the vocabulary can make it fit.
    `reader`: f32's gguf.GGUFReader where the caller has one."""
    from .quantizer import TARGET_QUANTS, min_file_bytes, model_shape

    b = boards.board(board)
    shape = model_shape(f32, context, reader=reader)
    return all(min_file_bytes(f32, q, reader=reader) + shape.runtime_bytes > b.budget_bytes for q in TARGET_QUANTS)


# ----------------------------------------------------------------------------- held-out tokens, trimmed
def retokenized(tokens: Tokens, full_gguf: str | Path, trimmed_gguf: str | Path, ctx: int) -> Tokens:
    """`tokens` (val.jsonl rendered, in training's ids: heldout.from_chat_format) in the trimmed
    vocabulary's ids: each rendered conversation tokenized again by llama.cpp with the trimmed GGUF,
    a token a persona (target) token where it spells any byte a persona token of training's spelt;
    the BOS first where training put one. Chunked at `ctx` as training chunked them."""
    import llama_cpp

    if not tokens.texts or any(t.targets is None or not t.special for t in tokens.texts):
        raise TrimError("the held-out tokens carry no rendered conversations with their persona tokens "
                        "(a --from-scratch build): nothing to re-tokenize")
    full = llama_cpp.Llama(model_path=str(full_gguf), vocab_only=True, verbose=False)
    trim = llama_cpp.Llama(model_path=str(trimmed_gguf), vocab_only=True, verbose=False)
    convs, texts = [], []
    try:
        for i, tc in enumerate(tokens.texts):
            raw = tc.text.encode("utf-8")
            body = full.tokenize(raw, add_bos=False, special=True)
            lead = len(tc.ids) - len(body)  # 1: training put the BOS first, outside the text
            if lead not in (0, 1) or tc.ids[lead:] != body:
                raise TrimError(f"held-out text {i + 1}: llama.cpp does not split it into training's ids; "
                                "the conversion check should have said so")
            marks = bytearray(len(raw))
            at = 0
            for tid, is_target in zip(body, tc.targets[lead:]):
                n = len(trim_vocab.spelt(full, tid))
                if is_target:
                    marks[at:at + n] = b"\x01" * n
                at += n
            ids, targets = [], []
            at = 0
            for tid in trim.tokenize(raw, add_bos=False, special=True):
                n = len(trim_vocab.spelt(trim, tid))
                ids.append(tid)
                targets.append(any(marks[at:at + n]))
                at += n
            if lead:
                ids, targets = [trim.token_bos(), *ids], [False, *targets]
            convs.append(list(chunks(ids, targets, ctx)))
            texts.append(TokenCheck(tc.text, True, ids, targets))
    finally:
        full.close()
        trim.close()
    return Tokens(convs, texts)


def scored_characters(gguf_path: str | Path, tokens: Tokens, ctx: int) -> list[int]:
    """Per conversation with persona tokens, the characters of the persona tokens llama.cpp scores
    (drift.token_scores: chunks at the scoring context `ctx`, the first token of a chunk unscored):
    each character counted once, by its first byte; special tokens count none."""
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(gguf_path), vocab_only=True, verbose=False)
    chars: dict[int, int] = {}

    def count(tid: int) -> int:
        if tid not in chars:
            chars[tid] = sum(1 for b in trim_vocab.spelt(llm, tid, special=False) if not 0x80 <= b < 0xC0)
        return chars[tid]

    out = []
    try:
        for conv in tokens.conversations:
            n = scored = 0
            for ids0, target0 in conv:
                for ids, target in chunks(ids0, target0, ctx):
                    for tid, is_target in zip(ids[1:], target[1:]):
                        if is_target:
                            n, scored = n + count(tid), scored + 1
            if scored:
                out.append(n)
    finally:
        llm.close()
    return out


def bits_per_character(nll_nats: float, characters: int) -> float:
    return nll_nats / math.log(2) / max(characters, 1)


# ----------------------------------------------------------------------------- the trimming stage
@dataclass(frozen=True)
class Trimmed:
    """The persona's F32 GGUF with the kept tokens only, and what scoring it needs."""

    f32: Path
    reference_f32: Path | None  # the untuned base's, trimmed alike (None: its vocabulary differs)
    tokens: Tokens  # val.jsonl in the trimmed ids
    characters: int  # persona characters those tokens score (the bits-per-character denominator)
    score_ctx: int  # the context llama.cpp scores in (evaluate.open_for_scoring's)
    kept: Kept
    check: Check
    full_shape: boards.ModelShape  # the untrimmed F32's, at the bundle's context
    seconds: float
    # evaluate.drift.token_scores, passed in by the build: scoring is evaluate's, and evaluate
    # reaches quantize (its preflight and reports), so quantize never imports it
    token_scores: Callable

    def score(self, path: str | Path) -> dict:
        """A trimmed GGUF's held-out figures (stages.Scorer), on the trimmed tokens."""
        s = self.token_scores(path, self.tokens)
        return {"model": Path(path).name, "val_loss": s.loss, "val_perplexity": math.exp(s.loss), "tokens": s.tokens,
                "bits_per_char": bits_per_character(s.loss * s.tokens, self.characters), "vocabulary": "trimmed"}


def for_board(f32: Path, reference_f32: Path | None, work: Path, heldout: Tokens, *, board: str, context: int,
              texts: list[str], calibration: list[list[int]], language: str | None,
              token_scores: Callable) -> Trimmed | None:
    """None when some listed type of `f32` may fit `board` at `context` (needed); else `f32` (and the
    reference) trimmed to the owner's tokens and checked in llama.cpp, TrimError with the check's
    figures when the trimmed vocabulary does not tokenize as the full one."""
    import gguf

    from .quantizer import model_shape

    t0 = time.monotonic()
    reader = gguf.GGUFReader(str(f32))
    if not needed(f32, board, context, reader=reader):
        return None
    full_shape = model_shape(f32, context, reader=reader)
    score_ctx = min(2048, model_shape(f32, reader=reader).n_ctx)  # evaluate.open_for_scoring's
    vocab = trim_vocab.read_vocab(reader)
    log.info("trim.needed", board=board, context=context, tokens=len(vocab), language=language,
             why="no listed type of the whole vocabulary fits")
    kept = trim_vocab.choose(f32, vocab, texts, ids=calibration, language=language)
    out = trim_vocab.write(f32, work / "model.trimmed.F32.gguf", kept, reader=reader)
    del reader
    check = trim_vocab.check(f32, out, kept, [t.text for t in heldout.texts])
    if not check.ok:
        raise TrimError(check.message())
    ref = None
    if reference_f32 is not None:
        r = gguf.GGUFReader(str(reference_f32))
        if trim_vocab.read_vocab(r).tokens == vocab.tokens:
            ref = trim_vocab.write(reference_f32, work / "base.trimmed.F32.gguf", kept, reader=r)
        else:
            log.warning("trim.reference_differs", why="the untuned base lists other tokens: it is not trimmed "
                        "and not scored beside the persona")
    tokens = retokenized(heldout, f32, out, context)
    characters = sum(scored_characters(out, tokens, score_ctx))
    return Trimmed(out, ref, tokens, characters, score_ctx, kept, check, full_shape, time.monotonic() - t0,
                   token_scores)


# ----------------------------------------------------------------------------- beside the untrimmed model
def on_boards(size: int, shape: boards.ModelShape) -> dict[str, dict]:
    """A GGUF of `size` bytes and `shape` (at the bundle's context) on every documented board, as the
    payload would run it: the longest context up to the bundle's that fits beside the file, the
    memory it then needs and the tokens/s predicted (bandwidth-bound, an upper limit); at the
    shortest context where none fits."""
    from dataclasses import replace

    out = {}
    for name in boards.TARGETS:
        b = boards.board(name)
        n_ctx = boards.longest_context(b, size, shape, shape.n_ctx)
        at = replace(shape, n_ctx=n_ctx or 64)
        out[b.name] = dict(fits=n_ctx is not None, n_ctx=at.n_ctx,  # MB of 2^20 bytes, as boards.py counts
                           need_mb=round((size + at.runtime_bytes) / boards.MB, 1),
                           budget_mb=round(b.budget_bytes / boards.MB, 1),
                           tokens_per_s=round(boards.predicted_tokens_per_s(b, size, at.kv_read_bytes_per_token), 1))
    return out


def compare(trimmed: Trimmed, untrimmed_f32: Path, work: Path, heldout: Tokens, *, board: str, context: int,
            shipped: Path, shipped_quant: str, table: list[dict] | None, imatrix: Path | None) -> dict:
    """persona.toml [training.vocab_trim]: what was kept, the check, and the untrimmed Q4_K_M
    (quantized here from the same F32 with the same importance matrix) beside the trimmed Q4_K_M
    (from --target's candidates) and the shipped file."""
    from .quantizer import model_shape, quantize

    full = quantize(untrimmed_f32, work / f"model.untrimmed.{COMPARED_QUANT}.gguf", COMPARED_QUANT, imatrix=imatrix)
    full_shape = trimmed.full_shape
    s = trimmed.token_scores(full.path, heldout)
    full_chars = sum(scored_characters(full.path, heldout, trimmed.score_ctx))
    rows = [dict(model=f"{COMPARED_QUANT}, whole vocabulary", quant=COMPARED_QUANT, trimmed=False, path=str(full.path),
                 file_bytes=full.bytes, n_vocab=full_shape.n_vocab, tokens=s.tokens,
                 val_perplexity=math.exp(s.loss), bits_per_char=bits_per_character(s.loss * s.tokens, full_chars),
                 boards=on_boards(full.bytes, full_shape))]
    trimmed_shape = model_shape(trimmed.f32, context)  # every type of the trimmed F32 has its shape
    by_quant = {r["quant"]: r for r in table or () if r.get("drift")}
    for quant in dict.fromkeys((COMPARED_QUANT, shipped_quant)):
        r = by_quant.get(quant)
        if r is None:
            continue
        d = r["drift"]
        row = dict(model=f"{quant}, trimmed" + (" (shipped)" if quant == shipped_quant else ""), quant=quant,
                   trimmed=True, file_bytes=r["bytes"], n_vocab=len(trimmed.kept.ids), tokens=d["tokens"],
                   val_perplexity=d["val_perplexity"],
                   bits_per_char=bits_per_character(d["val_loss"] * d["tokens"], trimmed.characters))
        if quant == shipped_quant:
            row["path"] = str(shipped)
        row["boards"] = on_boards(r["bytes"], trimmed_shape)
        rows.append(row)
    figures = {**trimmed.kept.figures(), "check": trimmed.check.figures(), "board": board, "context": context,
               "characters": trimmed.characters, "seconds": round(trimmed.seconds, 1), "models": rows}
    for r in rows:
        log.info("trim.compared", model=r["model"], bytes=r["file_bytes"], bits_per_char=round(r["bits_per_char"], 4),
                 fits=r["boards"][boards.board(board).name]["fits"])
    return figures


UNTRIMMED_LABEL = f"persona {COMPARED_QUANT}, whole vocabulary"  # its row in the report's voice table
UNTRIMMED_ROLE = "whole vocabulary"  # its role there: neither the flown model nor the unquantized "tuned" one


def untrimmed_path(figures: dict) -> Path:
    """The untrimmed Q4_K_M compare() made (in the build's work folder), for the report's replies."""
    return Path(next(m["path"] for m in figures["models"] if not m["trimmed"]))


def kept_figures(figures: dict) -> dict:
    """compare()'s figures as persona.toml and eval.json keep them: no work-folder paths, rounded,
    nothing TOML cannot hold (None)."""

    def clean(v):
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items() if x is not None and k != "path"}
        if isinstance(v, list):
            return [clean(x) for x in v if x is not None]
        return round(v, 5) if isinstance(v, float) else v

    return clean(figures)


def report_lines(figures: dict | None, voice=None, substance=None) -> list[str]:
    """report.md's section on the trimmed vocabulary (persona.toml [training.vocab_trim]): what was
    kept and checked, then the untrimmed Q4_K_M beside the trimmed files on every board, with their
    held-out bits per character and, where the report measured them (`voice`: voice.Authorship,
    `substance`: its substance table, both duck-typed), their replies' voice and substance."""
    if not isinstance(figures, dict) or not figures.get("models"):
        return []
    models, c = figures["models"], figures.get("check") or {}
    target = boards.board(figures["board"]).name if figures.get("board") else None
    L = ["## A vocabulary for the board", "",
         f"No type of the whole vocabulary ({figures['of_tokens']:,} tokens) fits a {target} at the bundle's context "
         f"of {figures.get('context', '?')} tokens: its embedding rows and the row of logits llama.cpp keeps for every "
         f"token of a batch are too many. The build kept {figures['kept_tokens']:,} tokens ({figures['source']}) "
         "and wrote the same trained weights with those rows only (quantize/trim_vocab.py).", ""]
    if c:
        L += [f"Checked in llama.cpp: {c['same_strings']} of {c['texts']} held-out conversations come out of the "
              f"trimmed vocabulary as the same text ({c['identical']} in the very same tokens; {c['tokens_trimmed']:,} "
              f"tokens where the whole vocabulary makes {c['tokens_full']:,}); the kept tokens' logits are the whole "
              f"model's (largest difference {c['max_abs_diff']:.2g} at logit scale {c['logit_scale']:.3g}, "
              f"{c['positions']} positions); {c['reachable_tried']:,} kept tokens that their own text makes are "
              f"still made ({c.get('cut_count', 0)} cut).", ""]

    def share(label: str) -> str:
        s = next((x for x in getattr(voice, "sets", ()) if x.label == label), None)
        return "–" if s is None or s.share.share is None else f"{100 * s.share.share:.0f} %"

    def said(label: str) -> str:
        cell = substance.cell(label) if substance is not None and hasattr(substance, "cell") else None
        return cell or "–"

    def label_of(m: dict) -> str:  # the row the voice table gives the same model
        return UNTRIMMED_LABEL if not m["trimmed"] else f"persona {m['quant']} (flown)" if "shipped" in m["model"] else ""

    head = "| | " + " | ".join(m["model"] for m in models) + " |"
    L += [head, "|---" * (1 + len(models)) + "|",
          "| tokens | " + " | ".join(f"{m['n_vocab']:,}" for m in models) + " |",
          "| file | " + " | ".join(f"{m['file_bytes'] / 1e6:,.0f} MB" for m in models) + " |"]
    for name in boards.TARGETS:
        b = boards.board(name).name

        def cell(m: dict, b: str = b) -> str:
            x = m["boards"].get(b)
            if x is None:
                return "–"
            if not x["fits"]:
                return f"does not fit: {x['need_mb']:,.0f} MB at {x['n_ctx']} tokens"
            return f"fits: {x['need_mb']:,.0f} MB at context {x['n_ctx']:,}, ~{x['tokens_per_s']:,.1f} tokens/s"

        budget = next((m["boards"][b]["budget_mb"] for m in models if b in m["boards"]), None)
        L.append(f"| {'**' + b + '**' if b == target else b}"
                 + (f" ({budget:,.0f} MB for the model)" if budget is not None else "") + " | "
                 + " | ".join(cell(m) for m in models) + " |")
    L += [f"| held-out bits per character ({figures.get('characters', 0):,} characters of the owner's) | "
          + " | ".join(f"{m['bits_per_char']:.3f}" for m in models) + " |",
          "| held-out perplexity, a token of its own vocabulary | "
          + " | ".join(f"{m['val_perplexity']:,.1f} ({m['tokens']:,} tokens)" for m in models) + " |"]
    if voice is not None:
        L.append("| replies taken for the owner's (Whose voice) | "
                 + " | ".join(share(label_of(m)) if label_of(m) else "–" for m in models) + " |")
    if substance is not None:
        L.append("| words beyond the owner's fillers, a reply (Substance) | "
                 + " | ".join(said(label_of(m)) if label_of(m) else "–" for m in models) + " |")
    L += ["", "Memory as the payload sizes it (stratoecho.boards: the file, the KV cache and llama.cpp's compute "
              "buffers, whose logits rows are as wide as the vocabulary) at the longest context up to the bundle's that "
              "fits; tokens/s is the bandwidth bound, an upper limit. Bits per character: the held-out persona text's "
              "negative log-likelihood over its characters, which does not depend on how a vocabulary cuts it.", ""]
    return L
