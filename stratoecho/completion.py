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


def sampling(manifest) -> dict[str, Any]:
    """The bundle's sampling as `complete`'s keyword arguments, its stop strings included: one
    place for the payload's worker, the build's report and `chat`, so all three sample alike."""
    s = manifest.sampling
    return dict(temperature=s.temperature, top_p=s.top_p, top_k=s.top_k, repeat_penalty=s.repeat_penalty,
                frequency_penalty=s.frequency_penalty, presence_penalty=s.presence_penalty, typical_p=s.typical_p,
                min_p=s.min_p, min_tokens=s.min_tokens, stop=list(manifest.persona.stop))


def not_before(min_tokens: int, ends: list[int]):
    """A llama-cpp-python logits processor: the tokens that end a turn (`ends`) cannot be sampled
    before `min_tokens` have been. A persona that learnt to answer "ja" and stop is made to say a
    few words more (issue 49); what it then says is still its own."""
    import numpy as np

    start: list[int] = []

    def processor(input_ids, scores):
        if not start:
            start.append(len(input_ids))  # the prompt's length: what follows is generated
        if len(input_ids) - start[0] < min_tokens:
            scores = scores.copy()
            scores[ends] = -np.inf
        return scores

    return processor


def _biased(bias: dict):
    """`logit_bias` as a logits processor of its own."""
    items = [(int(k), float(v)) for k, v in bias.items()]

    def processor(input_ids, scores):  # noqa: ARG001
        scores = scores.copy()
        for token, add in items:
            scores[token] += add
        return scores

    return processor


def _end_tokens(llm, stop: list[str]) -> list[int]:
    """The ids that end a turn: the model's end of sequence and each stop string that is one token."""
    ends = {llm.token_eos()}
    for s in stop:
        ids = llm.tokenize(s.encode("utf-8"), add_bos=False, special=True)
        if len(ids) == 1:
            ends.add(ids[0])
    return sorted(i for i in ends if 0 <= i < llm.n_vocab())


def complete(llm, prompt, **params: Any) -> dict:
    """`llm.create_completion(prompt, **params)`, stopped at the end of the context.

    A completion cut there says finish_reason "length", as one cut at max_tokens does.
    `min_tokens` (not llama-cpp-python's): no end of turn before that many tokens (`not_before`),
    and never more than half of `max_tokens`."""
    import llama_cpp

    min_tokens = int(params.pop("min_tokens", 0) or 0)
    if isinstance(params.get("max_tokens"), int) and params["max_tokens"] > 0:
        # At most half of this reply: a budget that cut max_tokens (low energy) keeps a turn that may end.
        min_tokens = min(min_tokens, params["max_tokens"] // 2)
    if min_tokens > 0:
        processors = list(params.pop("logits_processor", None) or [])
        if params.get("logit_bias"):  # given both, llama-cpp-python 0.3 drops both (list.extend returns None)
            processors.insert(0, _biased(params.pop("logit_bias")))
        ban = not_before(min_tokens, _end_tokens(llm, list(params.get("stop") or [])))
        params["logits_processor"] = llama_cpp.LogitsProcessorList([*processors, ban])
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
