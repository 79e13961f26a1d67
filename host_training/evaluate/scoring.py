"""Held-out perplexity with llama-cpp-python: the exact file, tokenizer and kernels the payload
will run, the persona's tokens scored chunk by chunk with an F32 KV cache (steps 1 to 3 of the
package's docstring).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from ..train.lora_step import usable_cores
from ..train.tokenizer import IM_END, IM_START, Conversation, SpecialIds, chunks, render_ids, with_bos, with_system_prompt

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
    import llama_cpp

    ctx = min(max_ctx, gguf_context_length(gguf_path))
    threads = threads or usable_cores()
    llm = llama_cpp.Llama(
        model_path=str(gguf_path), n_ctx=ctx, n_batch=ctx, n_ubatch=ctx, logits_all=True,
        type_k=GGML_TYPE_F32, type_v=GGML_TYPE_F32, n_threads=threads, n_threads_batch=threads,
        verbose=False,
    )
    return llm, ctx


def llama_special_ids(llm) -> SpecialIds:
    """The ChatML turn tokens of the GGUF, as render_ids needs them.

    Only <|im_start|> and <|im_end|> are required: a base given ChatML by the build (Gemma 3,
    Llama 3.2, Granite: the two tokens added to its own vocabulary) has no <|endoftext|>, which
    only our from-scratch tokenizer and the ChatML-native bases carry, and which render_ids never
    writes. `eot` is the GGUF's own end-of-sequence token, else <|im_end|>."""
    ids = []
    for s in (IM_START, IM_END):
        tok = llm.tokenize(s.encode(), add_bos=False, special=True)
        if len(tok) != 1:
            raise ValueError(f"the model's tokenizer has no {s} token: not a ChatML persona model")
        ids.append(tok[0])
    eos = llm.token_eos()
    return SpecialIds(eos if eos >= 0 else ids[1], *ids)


def target_nll(llm, ctx: int, examples) -> tuple[float, int, int]:
    """(summed negative log-likelihood in nats, target tokens, chunks) of `examples`, each a pair
    (token ids, is-target flags), cut into context-sized chunks each evaluated from an empty cache."""
    import numpy as np

    total, count, n_chunks = 0.0, 0, 0
    for ids, target in examples:
        for piece, mask in chunks(ids, target, ctx):
            llm.reset()
            llm.eval(piece)
            nll = next_token_nll(np.asarray(llm.scores[: len(piece)], dtype=np.float64), piece)
            m = np.asarray(mask[1:], dtype=bool)
            total += float(nll[m].sum())
            count += int(m.sum())
            n_chunks += 1
    return total, count, n_chunks


def next_token_nll(logits, ids):
    """Negative log-likelihood (nats) of ids[i+1] under row i of `logits` (float64, one row per
    position of `ids`): len(ids) - 1 values."""
    import numpy as np

    x = logits[: len(ids) - 1]
    peak = x.max(axis=1, keepdims=True)
    lse = np.log(np.exp(x - peak).sum(axis=1)) + peak[:, 0]
    return lse - x[np.arange(len(ids) - 1), ids[1:]]


class GGUFChatTokenizer:
    """The bundle's GGUF tokenizer and chat template behind the few methods `finetune.ChatFormat`
    uses, so a persona built on a base model's own template (build --base) is scored on the
    persona's tokens the way training located them: rendered turn by turn, targets by offset."""

    is_fast = True  # offsets come from detokenizing token by token

    def __init__(self, llm, bundle) -> None:
        self.llm, self.bundle = llm, bundle

    @property
    def eos_token(self) -> str | None:
        """The GGUF's end-of-sequence token, as the template writes it (Phi-3 closes renderings with it)."""
        eos = self.llm.token_eos()
        return self.llm._model.token_get_text(eos) if eos >= 0 else None

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=False):
        return self.bundle.render_prompt(messages, add_generation_prompt=add_generation_prompt)

    @property
    def bos_token_id(self) -> int | None:
        bos = self.llm.token_bos()
        return bos if bos >= 0 else None

    def __call__(self, text: str, add_special_tokens: bool = True, return_offsets_mapping: bool = True) -> dict:
        """As a transformers tokenizer: with add_special_tokens, the BOS first where the GGUF says
        llama.cpp adds one (`ChatFormat` probes it so)."""
        ids = self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True) if text else []
        offsets, at = [], 0
        for tid in ids:
            piece = self.llm.detokenize([tid], special=True).decode("utf-8", errors="replace")
            # A token may render with a leading space SentencePiece adds; find it where it starts.
            start = text.find(piece, at) if piece else at
            start = at if start < 0 or start > at + 1 else start
            end = min(len(text), start + len(piece))
            offsets.append((start, end))
            at = end
        if add_special_tokens and self.llm._model.add_bos_token() and self.bos_token_id is not None:
            ids, offsets = [self.bos_token_id, *ids], [(0, 0), *offsets]
        return {"input_ids": ids, "offset_mapping": offsets}


def is_chatml(bundle) -> bool:
    probe = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]
    try:
        return bundle.render_prompt(probe, add_generation_prompt=False) == (
            "<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\ny<|im_end|>\n")
    except Exception:  # noqa: BLE001 - a template that cannot render this is not ChatML
        return False


def score_gguf_template(gguf_path, conversations: list[Conversation], bundle, threads: int | None = None) -> dict:
    """Persona-token loss of a GGUF whose chat template is not ChatML, through that template."""
    from ..finetune import ChatFormat, FinetuneError

    t0 = time.monotonic()
    llm, ctx = open_for_scoring(gguf_path, threads=threads)
    fmt = ChatFormat(GGUFChatTokenizer(llm, bundle))
    try:
        rendered = [fmt.ids_and_targets(with_system_prompt(conv, bundle.manifest.persona.system_prompt))
                    for conv in conversations]
    except FinetuneError as e:
        llm.close()
        raise ValueError(str(e)) from None
    total, count, n_chunks = target_nll(llm, ctx, rendered)
    llm.close()
    if count == 0:
        raise ValueError("no persona tokens to score: do the conversations have assistant turns?")
    loss = total / count
    return {"model": Path(gguf_path).name, "val_loss": loss, "val_perplexity": math.exp(loss), "tokens": count,
            "conversations": len(conversations), "chunks": n_chunks, "seconds": time.monotonic() - t0}


def score_gguf(
    gguf_path: str | Path,
    conversations: list[Conversation],
    system_prompt: str | None,
    threads: int | None = None,
) -> dict:
    """Persona-token loss and perplexity of `gguf_path` on `conversations`."""
    t0 = time.monotonic()
    llm, ctx = open_for_scoring(gguf_path, threads=threads)
    special = llama_special_ids(llm)

    def encode(text: str) -> list[int]:
        return llm.tokenize(text.encode("utf-8"), add_bos=False, special=False) if text else []

    # The BOS first where llama.cpp adds one (as training put it: finetune.ChatFormat).
    bos = llm.token_bos() if llm._model.add_bos_token() and llm.token_bos() >= 0 else None
    rendered = (with_bos(*render_ids(with_system_prompt(conv, system_prompt), encode, special, loss="persona"), bos)
                for conv in conversations)
    total, count, n_chunks = target_nll(llm, ctx, rendered)
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


def score_gguf_ids(gguf_path, examples, threads: int | None = None) -> dict:
    """Persona-token loss of a GGUF through llama-cpp-python on the same token ids as training
    (score_gguf renders ChatML itself; a base model's template may be another)."""

    t0 = time.monotonic()
    llm, ctx = open_for_scoring(gguf_path, threads=threads)
    total, count, n_chunks = target_nll(llm, ctx, examples)
    llm.close()
    loss = total / max(count, 1)
    return {"model": Path(gguf_path).name, "val_loss": loss, "val_perplexity": math.exp(loss), "tokens": count,
            "chunks": n_chunks, "seconds": time.monotonic() - t0}
