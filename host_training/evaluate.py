"""`python -m host_training eval BUNDLE --data DIR`: held-out perplexity of the bundle's GGUF.

Scores `DIR/val.jsonl` with llama-cpp-python, i.e. with the exact file, tokenizer and
kernels the payload will run, not with the training framework. Steps:

  1. render each conversation in ChatML with the bundle's system prompt, tokenized by the
     GGUF's own tokenizer (`render_ids`, the function training used);
  2. split into context-sized chunks, evaluate each chunk from an empty cache;
  3. average the negative log-likelihood of the persona's tokens (its words and the
     <|im_end|> that closes each of its turns): `val_loss` in nats per token,
     `val_perplexity` = exp(val_loss).

The KV cache is kept in F32 here (llama.cpp's default is F16) so that an F32 GGUF scores
the same as the training framework did and a quantized one differs only by its weights.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import structlog

from .tokenizer import (
    EOT,
    IM_END,
    IM_START,
    Conversation,
    DataError,
    SpecialIds,
    chunks,
    load_conversations,
    render_ids,
    with_system_prompt,
)

log = structlog.get_logger(__name__)

GGML_TYPE_F32 = 0  # ggml_type for type_k / type_v


def gguf_context_length(gguf_path: str | Path) -> int:
    """The training context length recorded in a GGUF (read from its header; the file is memory-mapped)."""
    import gguf

    reader = gguf.GGUFReader(str(gguf_path))
    arch = reader.fields["general.architecture"].contents()
    return int(reader.fields[f"{arch}.context_length"].contents())


def open_for_scoring(gguf_path: str | Path, max_ctx: int = 2048, threads: int | None = None):
    """(llama_cpp.Llama keeping logits for every position, its usable context in tokens).

    The context is the model's training context, capped because logits_all keeps
    n_ctx x n_vocab floats. It is returned rather than read back with llm.n_ctx(): llama.cpp
    rounds its own context up (to 256), but llama-cpp-python's buffers have the size asked for.
    """
    import os

    import llama_cpp

    ctx = min(max_ctx, gguf_context_length(gguf_path))
    threads = threads or os.cpu_count() or 1
    llm = llama_cpp.Llama(
        model_path=str(gguf_path), n_ctx=ctx, n_batch=ctx, n_ubatch=ctx, logits_all=True,
        type_k=GGML_TYPE_F32, type_v=GGML_TYPE_F32, n_threads=threads, n_threads_batch=threads,
        verbose=False,
    )
    return llm, ctx


def llama_special_ids(llm) -> SpecialIds:
    ids = []
    for s in (EOT, IM_START, IM_END):
        tok = llm.tokenize(s.encode(), add_bos=False, special=True)
        if len(tok) != 1:
            raise ValueError(f"the model's tokenizer has no {s} token: not a ChatML persona model")
        ids.append(tok[0])
    return SpecialIds(*ids)


def score_gguf(
    gguf_path: str | Path,
    conversations: list[Conversation],
    system_prompt: str | None,
    threads: int | None = None,
) -> dict:
    """Persona-token loss and perplexity of `gguf_path` on `conversations`."""
    import numpy as np

    t0 = time.monotonic()
    llm, ctx = open_for_scoring(gguf_path, threads=threads)
    special = llama_special_ids(llm)

    def encode(text: str) -> list[int]:
        return llm.tokenize(text.encode("utf-8"), add_bos=False, special=False) if text else []

    total, count, n_chunks = 0.0, 0, 0
    for conv in conversations:
        ids, target = render_ids(with_system_prompt(conv, system_prompt), encode, special, loss="persona")
        for piece, mask in chunks(ids, target, ctx):
            llm.reset()
            llm.eval(piece)
            logits = np.asarray(llm.scores[: len(piece) - 1], dtype=np.float64)  # row i predicts token i+1
            peak = logits.max(axis=1, keepdims=True)
            lse = np.log(np.exp(logits - peak).sum(axis=1)) + peak[:, 0]
            nll = lse - logits[np.arange(len(piece) - 1), piece[1:]]
            m = np.asarray(mask[1:], dtype=bool)
            total += float(nll[m].sum())
            count += int(m.sum())
            n_chunks += 1
    llm.close()
    if count == 0:
        raise ValueError("no persona tokens to score: do the conversations have assistant turns?")
    loss = total / count
    return {
        "model": Path(gguf_path).name,
        "val_loss": loss,
        "val_perplexity": math.exp(loss),
        "tokens": count,
        "chunks": n_chunks,
        "conversations": len(conversations),
        "seconds": time.monotonic() - t0,
    }


# ----------------------------------------------------------------------------- command line
def add_parser(sub) -> None:
    p = sub.add_parser(
        "eval",
        help="held-out perplexity of a persona bundle's GGUF",
        description=(
            "Score DIR/val.jsonl with the bundle's GGUF through llama-cpp-python: mean negative "
            "log-likelihood of the persona's tokens (nats/token) and its exponential, the perplexity."
        ),
    )
    p.add_argument("bundle", metavar="BUNDLE", help="persona bundle directory (holds persona.toml)")
    p.add_argument("--data", required=True, metavar="DIR", help="directory with val.jsonl (output of `prepare`)")
    p.add_argument("--model", metavar="GGUF", help="score this GGUF instead of the bundle's (e.g. an F32 one)")
    p.add_argument("--limit", type=int, metavar="N", help="score only the first N conversations")
    p.add_argument("--threads", type=int, metavar="N", help="CPU threads for llama.cpp (default: all)")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON to FILE ('-' for standard output)")
    p.set_defaults(func=run)


def run(args) -> int:
    from stratoecho.bundle import BundleError, load_bundle

    try:
        bundle = load_bundle(args.bundle)
        val = load_conversations(Path(args.data) / "val.jsonl")
    except (BundleError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.limit is not None:
        val = val[: args.limit]
    if not val:
        print(f"error: {Path(args.data) / 'val.jsonl'} holds no conversations", file=sys.stderr)
        return 2
    model = Path(args.model) if args.model else bundle.model_path
    try:
        result = score_gguf(model, val, bundle.manifest.persona.system_prompt, threads=args.threads)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    recorded = bundle.manifest.eval.get("val_perplexity")
    if recorded is not None and not args.model:
        result["recorded_val_perplexity"] = recorded
    print(
        f"{result['model']}: val perplexity {result['val_perplexity']:.3f} (loss {result['val_loss']:.4f} nats/token) "
        f"over {result['tokens']} persona tokens in {result['conversations']} conversations"
        + (f"; persona.toml records {recorded:.3f}" if "recorded_val_perplexity" in result else "")
    )
    if args.json:
        text = json.dumps(result, indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n", encoding="utf-8")
    return 0
