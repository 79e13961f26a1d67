"""A completion that ends inside a UTF-8 character at the end of the context (stratoecho/completion.py).

llama-cpp-python holds back a token that leaves the text inside a character and generates on,
past max_tokens; at the end of the context that is a failed decode. A model made to emit
nothing but the lead byte of a four-byte character shows it every time."""

from __future__ import annotations

import pytest

from stratoecho.bundle import load_bundle
from stratoecho.completion import complete

N_CTX = 256  # a multiple of 256: llama.cpp rounds other sizes up


@pytest.fixture(params=[N_CTX])
def lead_byte_model(request, tiny_bundle):
    """The tiny bundle's GGUF in llama.cpp, and a logit bias that makes it say only 0xF0 bytes.
    A fresh context each test: after a failed decode llama.cpp's state is not to be trusted."""
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(load_bundle(tiny_bundle).model_path), n_ctx=request.param, n_threads=1,
                          verbose=False)
    lead = [t for t in range(llm.n_vocab()) if llm.detokenize([t]) == b"\xf0"]
    assert lead, "the tiny tokenizer has no token for the byte 0xF0"
    yield llm, {lead[0]: 100.0}
    llm.close()


def _prompt(llm) -> tuple[list[int], int]:
    prompt = llm.tokenize(b"How cold is it up there?", add_bos=True)
    return prompt, len(llm.input_ids) - len(prompt)  # every token of room left


def test_llama_cpp_python_alone_runs_past_the_context(lead_byte_model):
    """The fault the guard is for, in the pinned llama-cpp-python: if this passes no more, the
    library counts held-back tokens now and stratoecho.completion can be reconsidered."""
    llm, bias = lead_byte_model
    prompt, room = _prompt(llm)
    llm.reset()
    with pytest.raises(RuntimeError, match="llama_decode"):
        llm.create_completion(prompt, max_tokens=room, temperature=0.0, logit_bias=bias)


@pytest.mark.parametrize("lead_byte_model", [N_CTX, 64], indirect=True)  # 64: llama.cpp makes it 256
def test_complete_stops_at_the_end_of_the_context(lead_byte_model):
    llm, bias = lead_byte_model
    prompt, room = _prompt(llm)
    for max_tokens in (room, room - 1, 4):
        llm.reset()
        out = complete(llm, prompt, max_tokens=max_tokens, temperature=0.0, logit_bias=bias)
        assert llm.n_tokens <= len(llm.input_ids)
        assert out["choices"][0]["finish_reason"] == "length"
    llm.reset()  # and the context is still usable after a completion that filled it
    out = complete(llm, prompt, max_tokens=4, temperature=0.0)
    assert out["usage"]["completion_tokens"] >= 1


def test_complete_streams_to_the_end_of_the_context(lead_byte_model):
    llm, bias = lead_byte_model
    prompt, room = _prompt(llm)
    llm.reset()
    chunks = list(complete(llm, prompt, max_tokens=room, temperature=0.0, logit_bias=bias, stream=True))
    assert chunks and llm.n_tokens <= len(llm.input_ids)


def test_min_tokens_holds_back_the_end_of_a_turn(tiny_bundle):
    """A model made to end its turn at once (the end token's logit raised) says nothing; with the
    bundle's `min_tokens` it cannot end before that many tokens, and ends as soon as it may."""
    import llama_cpp

    from stratoecho.completion import sampling

    bundle = load_bundle(tiny_bundle)
    llm = llama_cpp.Llama(model_path=str(bundle.model_path), n_ctx=N_CTX, n_threads=1, verbose=False)
    try:
        stop = list(bundle.manifest.persona.stop)
        end = llm.token_eos()
        prompt = llm.tokenize(b"How cold is it up there?", add_bos=True)
        at_once = complete(llm, prompt, max_tokens=20, temperature=0.0, logit_bias={end: 100.0}, stop=stop)
        assert at_once["usage"]["completion_tokens"] <= 1
        llm.reset()
        held = complete(llm, prompt, max_tokens=20, temperature=0.0, logit_bias={end: 100.0}, stop=stop, min_tokens=6)
        assert held["usage"]["completion_tokens"] in (6, 7)  # six, then the end it was held back from
        assert held["choices"][0]["finish_reason"] == "stop"
        llm.reset()  # a reply cut short by the budget (8 tokens) may end after half of them, not run to its end
        short = complete(llm, prompt, max_tokens=8, temperature=0.0, logit_bias={end: 100.0}, stop=stop, min_tokens=20)
        assert short["usage"]["completion_tokens"] in (4, 5) and short["choices"][0]["finish_reason"] == "stop"
        params = sampling(bundle.manifest)
        assert params["min_tokens"] == bundle.manifest.sampling.min_tokens and params["stop"] == stop
    finally:
        llm.close()
