"""Stage 5's conversion check (host_training/evaluate/verify.py): the GGUF against its checkpoint on held-out tokens.

Tiny random checkpoints (host_training.base.tiny_models, 2 layers, hidden 64) converted by the
real converter: a faithful conversion passes with figures near float precision; a GGUF
broken after conversion (its Q and K rows back in HF's rotary order, as if the converter had
skipped the permutation, or two tokens swapped in its vocabulary) fails with both models'
figures, and a build whose converter writes such a file stops with a BuildError.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from host_training.base import tiny_models as M
from host_training.convert.convert_gguf import convert
from host_training.evaluate import verify
from host_training.pipeline import stages
from host_training.train import heldout
from host_training.train import tokenizer as T
from tests.chatdata import make_conversation

pytest.importorskip("llama_cpp")

SYSTEM = "You are Ada."


@pytest.fixture(scope="module")
def val():
    rng = random.Random(11)
    return [make_conversation(rng)["messages"] for _ in range(6)]


@pytest.fixture(scope="module")
def llama(tmp_path_factory, val):
    """(hf dir, F32 GGUF, held-out Tokens as --from-scratch renders them) of a tiny Llama with our BPE."""
    d = tmp_path_factory.mktemp("verify_llama")
    hf = M.tiny_llama_bpe(d / "hf")
    tok = T.load_hf_tokenizer(hf)
    tokens = heldout.from_chatml(val, T.hf_text_encoder(tok), T.hf_special_ids(tok), SYSTEM, 256)
    return hf, convert(hf, d / "model.F32.gguf", "f32"), tokens


def broken_copy(src, dst, edit):
    """A copy of the GGUF `src` at `dst`, edited in place through gguf's memory map (`edit(reader)`)."""
    import shutil

    import gguf

    shutil.copyfile(src, dst)
    reader = gguf.GGUFReader(str(dst), "r+")
    edit(reader)
    reader.data.flush()
    del reader
    return dst


def rotary_off(reader, n_head=4, n_head_kv=2):
    """Undo convert_gguf.permute_rotary on every Q and K: the rows as HF stores them."""
    for t in reader.tensors:
        heads = n_head if t.name.endswith("attn_q.weight") else n_head_kv if t.name.endswith("attn_k.weight") else 0
        if heads:
            w = np.array(t.data)
            t.data[...] = w.reshape(heads, w.shape[0] // heads // 2, 2, -1).swapaxes(1, 2).reshape(w.shape)


def swap_tokens(reader, a="a", b="e"):
    """Swap two single-byte tokens in the vocabulary: llama.cpp then splits text into other ids."""
    field = reader.fields["tokenizer.ggml.tokens"]
    parts = {bytes(field.parts[i]).decode(): field.parts[i] for i in field.data}
    pa, pb = parts[a], parts[b]
    pa[...], pb[...] = np.frombuffer(b.encode(), np.uint8), np.frombuffer(a.encode(), np.uint8)


# ----------------------------------------------------------------------------- faithful conversions
def test_a_faithful_f32_conversion_agrees_to_float_precision(llama):
    hf, f32, tokens = llama
    a = verify.check(hf, f32, tokens, threads=2)
    assert a.ok, a.message()
    assert a.weights == "F32" and a.top1 == 1.0 and a.texts_differing == 0 and a.texts > 20
    assert a.max_abs_diff < 1e-4 * a.logit_scale  # measured ~1.5e-6 x scale
    assert abs(a.loss_llama_cpp - a.loss_transformers) < 1e-5
    assert a.positions == sum(len(ids) for conv in tokens.conversations for ids, _ in conv)
    assert a.targets == tokens.n_targets > 0
    figures = a.figures()
    assert figures["ok"] and figures["tolerance"] == {"top1": 0.99, "logit": 1e-3, "loss": 1e-3}


def test_max_tokens_bounds_the_check(llama):
    hf, f32, tokens = llama
    a = verify.check(hf, f32, tokens, max_tokens=100, threads=2)
    assert a.ok and a.positions == 100


def test_f16_is_checked_with_the_f16_tolerance_and_a_base_template(tmp_path, val):
    """Qwen2 with its template rendered whole (the --base path), converted to F16."""
    from transformers import AutoTokenizer

    from host_training.finetune import ChatFormat

    hf = M.tiny_qwen2(tmp_path / "hf")
    tokens = heldout.from_chat_format(val, ChatFormat(AutoTokenizer.from_pretrained(str(hf))), SYSTEM, 256)
    a = verify.check(hf, convert(hf, tmp_path / "model.F16.gguf", "f16"), tokens, threads=2)
    assert a.ok, a.message()
    assert a.weights == "F16" and a.texts == len(val) and a.texts_differing == 0
    assert 1e-4 * a.logit_scale < a.max_abs_diff < a.allowed_diff  # F16 rounding shows, within 2e-2 x scale


# ----------------------------------------------------------------------------- broken conversions
def test_q_and_k_rows_out_of_rotary_order_fail_with_both_models_figures(llama, tmp_path):
    hf, f32, tokens = llama
    bad = broken_copy(f32, tmp_path / "bad.gguf", rotary_off)
    a = verify.check(hf, bad, tokens, threads=2)
    assert not a.ok
    msg = a.message()
    assert msg.startswith(f"llama.cpp and transformers disagree on {a.positions} held-out positions of the F32 GGUF")
    assert "largest logit difference" in msg and "allowed" in msg
    assert f"loss {a.loss_llama_cpp:.4f} (llama.cpp) vs {a.loss_transformers:.4f} (transformers)" in msg
    assert a.max_abs_diff > 0.05 * a.logit_scale  # a wrong conversion is off by a sizeable share of the scale
    assert "tokenizer" not in msg  # the vocabulary is intact


def test_a_swapped_vocabulary_entry_fails_on_the_tokenizer(llama, tmp_path):
    hf, f32, tokens = llama
    bad = broken_copy(f32, tmp_path / "bad.gguf", swap_tokens)
    a = verify.check(hf, bad, tokens, threads=2)
    assert a.max_abs_diff < 1e-4 * a.logit_scale  # the same ids still give the same logits ...
    assert not a.ok and a.texts_differing > 0  # ... but llama.cpp no longer makes those ids of the text
    assert f"tokenizer: {a.texts_differing} of {a.texts} held-out texts split differently (first: text" in a.message()
    assert "Ada" not in a.message() and "weather" not in a.message()  # ids only: never the private text


def test_a_quantized_gguf_is_not_a_conversion_to_check(llama, tmp_path):
    from host_training.quantize.quantizer import quantize

    hf, f32, tokens = llama
    q8 = quantize(f32, tmp_path / "q8.gguf", "Q8_0", threads=2).path
    with pytest.raises(verify.VerifyError, match="holds Q8_0 matrices"):
        verify.check(hf, q8, tokens)


# ----------------------------------------------------------------------------- in the build
def trained(hf, tokens) -> stages.Trained:
    return stages.Trained(model_dir=hf, label="trained", base="scratch",
                          template=stages.Template(T.CHATML_TEMPLATE, [], T.EOT, T.EOT), score=lambda p: {},
                          context_length=256, n_params=0, steps=0, minutes=0.0, training={}, eval_report={},
                          heldout=tokens)


def test_the_convert_stage_checks_and_refuses_a_broken_conversion(llama, tmp_path, monkeypatch):
    from host_training.convert import convert_gguf

    hf, _, tokens = llama
    good = stages.convert(trained(hf, tokens), tmp_path, "Ada")
    assert good.check["ok"] and good.check["positions"] > 0

    real = convert_gguf.convert

    def broken(hf_dir, out_path, outtype="f32", **kw):
        return broken_copy(real(hf_dir, tmp_path / "real.gguf", outtype, **kw), out_path, rotary_off)

    monkeypatch.setattr(convert_gguf, "convert", broken)
    with pytest.raises(stages.BuildError, match=r"llama.cpp and transformers disagree .* top-1 agreement \d+\.\d% "
                                                r"\(needs >= 99%\); largest logit difference"):
        stages.convert(trained(hf, tokens), tmp_path, "Ada")


def test_a_build_with_a_broken_converter_stops_after_conversion(chat_data_dir, tmp_path, monkeypatch, capsys):
    from host_training.__main__ import main
    from host_training.convert import convert_gguf

    real = convert_gguf.convert

    def broken(hf_dir, out_path, outtype="f32", **kw):
        return broken_copy(real(hf_dir, tmp_path / "real.gguf", outtype, **kw), out_path, rotary_off)

    monkeypatch.setattr(convert_gguf, "convert", broken)
    out = tmp_path / "b"
    rc = main(["build", "--data", str(chat_data_dir), "--from-scratch", "--preset", "test", "--steps", "2",
               "--vocab-size", "400", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "error: llama.cpp and transformers disagree" in err and "the conversion is wrong" in err
    assert not (out / "persona.toml").exists() and not list(out.glob("model.*.gguf"))
