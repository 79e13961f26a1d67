"""Stages 3 and 4: HF Llama -> GGUF, checked against transformers through llama-cpp-python; quantization.

The models are tiny random LlamaForCausalLM built here (GQA always, tied and untied
embeddings, a padded vocabulary, a non-default rope base, an explicit head_dim), saved with
a byte-level BPE tokenizer trained on synthetic chats. llama.cpp must give the same logits
as transformers and split text into the same tokens as the HF tokenizer.
"""

from __future__ import annotations

import json
import random
import shutil

import numpy as np
import pytest

from host_training.convert.convert_gguf import ConvertError, convert
from host_training.quantize.quantizer import QUANT_TYPES, QuantizeError, parse_quant, quantize
from host_training.train import tokenizer as T
from tests.chatdata import make_conversation

llama_cpp = pytest.importorskip("llama_cpp")

GGML_TYPE_F32 = 0
PARITY_STRINGS = [
    "<|im_start|>user\nHow was the launch? 🎈<|im_end|>\n<|im_start|>assistant\nHonestly, wild.<|im_end|>\n",
    "héllo wörld, naïve café",
    "日本語のテキスト and 中文",
    "emoji 🎈🚀☁️ and flags 🇸🇪 and 👩‍👩‍👧",
    "digits 0123456789 3.14159 1,000,000 and 2025-06-01T12:00:00Z",
    "  spaces   and\ttabs\n\n\nnewlines \r\n",
    "it's don't we'll I'd they're 'quoted'",
    "<|endoftext|><|im_start|><|im_end|>",
    "x<|im_end|>y",
]

# name: (model kwargs beyond the defaults, pad the vocabulary to a multiple of this or None)
VARIANTS = {
    "untied": (dict(tie_word_embeddings=False), None),
    "tied": (dict(tie_word_embeddings=True), None),
    "padded-vocab-rope-base": (dict(tie_word_embeddings=False, rope_theta=50000.0), 64),
    "head-dim-32": (dict(tie_word_embeddings=True, head_dim=32), None),
}


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    rng = random.Random(3)
    convs = [make_conversation(rng)["messages"] for _ in range(100)]
    tok = T.train_tokenizer(T.tokenizer_training_text(convs, "You are Ada."), vocab_size=700)
    out = tmp_path_factory.mktemp("tok")
    T.save_tokenizer(tok, out)
    return out


def make_model(tok_dir, out, seed=0, pad_to=None, **overrides):
    """A random tiny Llama (GQA 4:2) saved with the tokenizer in `out`; returns (model, hf tokenizer)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    hf_tok = T.load_hf_tokenizer(tok_dir)
    vocab = len(hf_tok) if pad_to is None else -(-len(hf_tok) // pad_to) * pad_to
    torch.manual_seed(seed)
    kwargs = dict(
        vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
        rms_norm_eps=1e-5, initializer_range=0.1, bos_token_id=0, eos_token_id=0, pad_token_id=0,
    )
    kwargs.update(overrides)
    model = LlamaForCausalLM(LlamaConfig(**kwargs)).eval()
    with torch.no_grad():  # random norms too, so a misplaced norm weight cannot go unnoticed
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.uniform_(0.5, 1.5)
    model.save_pretrained(str(out))
    hf_tok.save_pretrained(str(out))
    return model, hf_tok


def open_llama(path, n_ctx=128):
    return llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_batch=n_ctx, logits_all=True,
                           type_k=GGML_TYPE_F32, type_v=GGML_TYPE_F32, verbose=False)


def reference_logits(model, ids):
    import torch

    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].numpy()


@pytest.fixture(scope="module")
def converted(tok_dir, tmp_path_factory):
    """{variant: (hf_dir, f32 gguf path, model, hf tokenizer)}."""
    out = {}
    for name, (overrides, pad_to) in VARIANTS.items():
        d = tmp_path_factory.mktemp(name)
        model, hf_tok = make_model(tok_dir, d / "hf", pad_to=pad_to, **overrides)
        out[name] = (d / "hf", convert(d / "hf", d / "model.F32.gguf", "f32"), model, hf_tok)
    return out


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_f32_logits_match_transformers(converted, variant):
    _, gguf_path, model, hf_tok = converted[variant]
    ids = hf_tok.encode(PARITY_STRINGS[0] + "and then the clouds came in from the west", add_special_tokens=False)
    ref = reference_logits(model, ids)
    llm = open_llama(gguf_path)
    llm.eval(ids)
    got = np.asarray(llm.scores[: len(ids)])
    scale = max(1.0, float(np.abs(ref).max()))
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() < 1e-3 * scale, f"max abs diff {np.abs(got - ref).max()} at scale {scale}"
    assert (got.argmax(-1) == ref.argmax(-1)).all()
    llm.close()


def test_f16_is_half_the_size_and_close(converted, tmp_path):
    hf_dir, f32_path, model, hf_tok = converted["untied"]
    f16 = convert(hf_dir, tmp_path / "model.F16.gguf", "f16")
    assert f16.stat().st_size < 0.6 * f32_path.stat().st_size
    ids = hf_tok.encode("Honestly, the sky is the best show in town.", add_special_tokens=False)
    ref = reference_logits(model, ids)
    llm = open_llama(f16)
    llm.eval(ids)
    got = np.asarray(llm.scores[: len(ids)])
    assert np.abs(got - ref).max() < 2e-2 * max(1.0, float(np.abs(ref).max()))
    llm.close()


@pytest.mark.parametrize("text", PARITY_STRINGS)
def test_llama_cpp_tokenizes_like_the_hf_tokenizer(converted, text):
    _, gguf_path, _, hf_tok = converted["untied"]
    llm = llama_cpp.Llama(model_path=str(gguf_path), vocab_only=True, verbose=False)
    # Special strings parsed as tokens (how prompts are fed) ...
    assert llm.tokenize(text.encode(), add_bos=False, special=True) == hf_tok.encode(text, add_special_tokens=False)
    # ... and as plain text (how training and eval encode message content).
    plain = llm.tokenize(text.encode(), add_bos=False, special=False)
    assert plain == T.hf_text_encoder(hf_tok)(text)
    assert llm.detokenize(plain).decode() == text
    llm.close()


def test_gguf_metadata_describes_the_tokenizer(converted):
    import gguf

    _, gguf_path, _, hf_tok = converted["padded-vocab-rope-base"]
    r = gguf.GGUFReader(str(gguf_path))
    f = {k: v.contents() for k, v in r.fields.items() if not k.startswith("GGUF.")}
    assert f["general.architecture"] == "llama"
    assert f["tokenizer.ggml.model"] == "gpt2" and f["tokenizer.ggml.pre"] == "gpt-2"
    assert f["tokenizer.chat_template"] == T.CHATML_TEMPLATE
    assert f["tokenizer.ggml.bos_token_id"] == f["tokenizer.ggml.eos_token_id"] == 0
    vocab = llama_cpp.Llama(model_path=str(gguf_path), vocab_only=True, verbose=False)
    assert vocab._model.token_eot() == 2 and not vocab._model.add_bos_token()  # as llama.cpp loads it
    vocab.close()
    assert f["llama.rope.freq_base"] == pytest.approx(50000.0)
    assert f["llama.attention.head_count_kv"] == 2
    n = len(f["tokenizer.ggml.tokens"])
    assert n % 64 == 0 and n > len(hf_tok)
    types = f["tokenizer.ggml.token_type"]
    assert [types[i] for i in range(3)] == [int(gguf.TokenType.CONTROL)] * 3
    assert types[3] == int(gguf.TokenType.NORMAL) and types[-1] == int(gguf.TokenType.UNUSED)
    names = {t.name for t in r.tensors}
    assert "output.weight" in names and "blk.1.attn_k.weight" in names


def test_tied_embeddings_write_no_output_tensor(converted):
    import gguf

    names = {t.name for t in gguf.GGUFReader(str(converted["tied"][1])).tensors}
    assert "token_embd.weight" in names and "output.weight" not in names


def test_refuses_what_it_cannot_convert(converted, tmp_path):
    hf_dir = converted["untied"][0]
    other = tmp_path / "other"
    shutil.copytree(hf_dir, other)
    cfg = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**cfg, "architectures": ["GPTNeoXLikeForCausalLM"]}))
    with pytest.raises(ConvertError, match="Model GPTNeoXLikeForCausalLM is not supported"):
        convert(other, tmp_path / "x.gguf")
    with pytest.raises(ConvertError, match="no config.json"):
        convert(tmp_path, tmp_path / "x.gguf")
    with pytest.raises(ConvertError, match="output type"):
        convert(hf_dir, tmp_path / "x.gguf", "q4")
    assert not (tmp_path / "x.gguf").exists() and not (tmp_path / "x.gguf.tmp").exists()


# ----------------------------------------------------------------------------- quantization
@pytest.mark.parametrize("quant", ["Q8_0", "Q4_K_M"])
def test_quantized_gguf_is_smaller_loads_and_generates(converted, tmp_path, quant):
    _, f32_path, _, hf_tok = converted["untied"]
    result = quantize(f32_path, tmp_path / f"model.{quant}.gguf", quant)
    assert result.bytes < 0.5 * f32_path.stat().st_size
    llm = llama_cpp.Llama(model_path=str(result.path), n_ctx=128, verbose=False)
    assert llama_cpp.llama_model_ftype(llm.model) == getattr(llama_cpp, QUANT_TYPES[quant])
    prompt = "<|im_start|>user\nHow was the launch?<|im_end|>\n<|im_start|>assistant\n"
    # A random model may well pick an end-of-turn token first; forbid them so the loop must run.
    out = llm.create_completion(prompt, max_tokens=12, temperature=0.8, seed=1,
                                logit_bias={0: -100.0, 1: -100.0, 2: -100.0})
    assert out["usage"]["completion_tokens"] == 12
    assert isinstance(out["choices"][0]["text"], str)
    llm.close()


def test_unknown_quant_names_are_refused():
    assert parse_quant("q4_k_m") == "Q4_K_M"
    with pytest.raises(ValueError, match="unsupported quantization 'Q9_X'.*Q4_K_M"):
        parse_quant("Q9_X")


def test_quantize_failure_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(QuantizeError, match="could not quantize"):
        quantize(bad, tmp_path / "out.gguf", "Q8_0")
    assert not (tmp_path / "out.gguf").exists()
    with pytest.raises(QuantizeError, match="no such GGUF"):
        quantize(tmp_path / "missing.gguf", tmp_path / "out.gguf", "Q8_0")
