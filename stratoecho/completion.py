"""One completion from llama-cpp-python that cannot run past the end of its context.

llama-cpp-python (0.3.x) does not count a token toward `max_tokens` while the text so far
ends inside a UTF-8 character: it holds those bytes back and generates on. An emoji or an
accented letter split over tokens at the end of a completion asked for all the room left
therefore runs one to three tokens past the context (and a model that keeps emitting lead
bytes runs on without end), until llama.cpp's decode fails ("failed to find a memory slot
for batch of size 1"). On the payload that is a lost musing and a restarted worker.

`complete` adds a stopping criterion that ends generation when the next token would not
fit: the text then ends where the context does, never in an error. Used by the payload's
worker and by everything on the workstation that generates from a bundle.
"""

from __future__ import annotations

from typing import Any


def context_full(n_ctx: int):
    """A llama-cpp-python stopping criterion: True once the context holds `n_ctx` tokens
    (what it is given is every token decoded so far, prompt included)."""

    def full(input_ids, logits) -> bool:  # noqa: ARG001 (the signature llama-cpp-python calls)
        return len(input_ids) >= n_ctx

    return full


def complete(llm, prompt, **params: Any) -> dict:
    """`llm.create_completion(prompt, **params)`, stopped at the end of the context.

    A completion cut there says finish_reason "length", as one cut at max_tokens does."""
    import llama_cpp

    # llama.cpp may round the context up (to a multiple of 256) while llama-cpp-python keeps its
    # token buffer at the size asked for: the smaller of the two is where the context ends.
    guard = context_full(min(llm.n_ctx(), len(llm.input_ids)))
    criteria = llama_cpp.StoppingCriteriaList([guard, *(params.pop("stopping_criteria", None) or [])])
    out = llm.create_completion(prompt, stopping_criteria=criteria, **params)
    if not params.get("stream") and guard(llm.input_ids[: llm.n_tokens], None):
        for choice in out["choices"]:
            if choice.get("finish_reason") == "stop":
                choice["finish_reason"] = "length"
    return out
