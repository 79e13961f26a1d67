"""HF -> GGUF for every model family we convert, checked against transformers through llama-cpp-python.

One tiny random checkpoint per family (host_training.base.tiny_models: Llama + our byte-level BPE,
Llama + SentencePiece, Qwen2 + Qwen2-style BPE), converted to F32 and F16. llama.cpp must
give transformers' logits, split text into the HF tokenizer's ids, carry the special tokens
and chat template, and generate what transformers generates.

Tolerances, from measurements on these models (logits up to ~3.7 in magnitude):
F32 differs from transformers by at most ~1.5e-6 x the largest logit (summation order),
so 1e-4 x scale leaves a wide margin yet catches any wrong tensor; F16 weights differ by
~2e-3 x scale, so 1e-2 x scale.
"""

from __future__ import annotations

import json
import shutil
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from host_training.base import tiny_models as M
from host_training.convert.convert_gguf import ConvertError, convert

llama_cpp = pytest.importorskip("llama_cpp")

GGML_TYPE_F32 = 0
F32_TOL, F16_TOL = 1e-4, 1e-2  # max |llama.cpp - transformers| / max(1, max |logit|)
FAMILIES = dict(M.families())
LOGIT_TEXTS = [
    "<|im_start|>user\nHow was the launch? 🎈<|im_end|>\n<|im_start|>assistant\nHonestly, wild. "
    "The jet stream was at 160 knots and PIPIT-5 went east.",
    "the clouds came in from the west, and then the signal faded at the horizon",
]
PARITY_STRINGS = [
    "<|im_start|>user\nHow was the launch? 🎈<|im_end|>\n<|im_start|>assistant\nHonestly, wild.<|im_end|>\n",
    "héllo wörld, naïve café – Umeå",
    "日本語のテキスト and 中文",
    "emoji 🎈🚀☁️ and flags 🇸🇪 and 👩‍👩‍👧",
    "digits 0123456789 3.14159 1,000,000 and 2025-06-01T12:00:00Z",
    "  spaces   and\ttabs\n\n\nnewlines \r\n",
    " leading space",
    "it's don't we'll I'd they're 'quoted' IT'S WE'LL",
    "x<|im_end|>y",
]


@dataclass
class Built:
    hf_dir: Path
    f32: Path
    f16: Path
    model: object
    tok: object


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Built]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = {}
    for name, build in FAMILIES.items():
        d = tmp_path_factory.mktemp(name)
        hf_dir = build(d / "hf")
        out[name] = Built(
            hf_dir, convert(hf_dir, d / "model.F32.gguf", "f32"), convert(hf_dir, d / "model.F16.gguf", "f16"),
            AutoModelForCausalLM.from_pretrained(str(hf_dir)).eval(), AutoTokenizer.from_pretrained(str(hf_dir)),
        )
    return out


def open_gguf(path, n_ctx=128):
    """As evaluate.open_for_scoring: logits for every position, F32 KV cache."""
    return llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx, logits_all=True,
                           type_k=GGML_TYPE_F32, type_v=GGML_TYPE_F32, n_threads=2, verbose=False)


def metadata(path) -> dict:
    import gguf

    r = gguf.GGUFReader(str(path))
    f = {k: v.contents() for k, v in r.fields.items() if not k.startswith("GGUF.")}
    f["tensors"] = {t.name: t for t in r.tensors}
    return f


# ----------------------------------------------------------------------------- logits
@pytest.mark.parametrize("outtype", ["f32", "f16"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_logits_match_transformers(built, family, outtype):
    import torch

    b = built[family]
    llm = open_gguf(b.f32 if outtype == "f32" else b.f16)
    for text in LOGIT_TEXTS:
        ids = b.tok.encode(text)  # with the BOS where the family adds one
        with torch.no_grad():
            ref = b.model(torch.tensor([ids])).logits[0].numpy()
        llm.reset()
        llm.eval(ids)
        got = np.asarray(llm.scores[: len(ids)])
        assert got.shape == ref.shape
        scale = max(1.0, float(np.abs(ref).max()))
        diff = float(np.abs(got - ref).max())
        assert diff < (F32_TOL if outtype == "f32" else F16_TOL) * scale, f"max abs diff {diff} at scale {scale}"
        if outtype == "f32":
            assert (got.argmax(-1) == ref.argmax(-1)).all()
    llm.close()


@pytest.mark.parametrize("family", list(FAMILIES))
def test_greedy_generation_matches_transformers(built, family):
    import torch

    b = built[family]
    messages = [{"role": "user", "content": "How was the launch?"}]
    prompt = b.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = b.tok.encode(prompt)
    with torch.no_grad():
        ref = b.model.generate(torch.tensor([ids]), max_new_tokens=8, do_sample=False, eos_token_id=None,
                               pad_token_id=0)[0, len(ids):].tolist()
    llm = open_gguf(b.f32)
    got = []
    for tok in llm.generate(ids, top_k=1, temp=0.0, reset=True):
        got.append(tok)
        if len(got) == 8:
            break
    llm.close()
    assert got == ref


# ----------------------------------------------------------------------------- tokenizer
@pytest.mark.parametrize("text", PARITY_STRINGS)
@pytest.mark.parametrize("family", list(FAMILIES))
def test_llama_cpp_tokenizes_like_the_hf_tokenizer(built, family, text):
    from host_training.train.tokenizer import hf_text_encoder

    b = built[family]
    llm = llama_cpp.Llama(model_path=str(b.f32), vocab_only=True, verbose=False)
    # Special strings parsed as tokens, BOS where the tokenizer adds one (how prompts are fed) ...
    assert llm.tokenize(text.encode(), add_bos=True, special=True) == b.tok.encode(text)
    assert llm.tokenize(text.encode(), add_bos=False, special=True) == b.tok.encode(text, add_special_tokens=False)
    # ... and as plain text (how training and eval encode message content).
    plain = llm.tokenize(text.encode(), add_bos=False, special=False)
    assert plain == hf_text_encoder(b.tok)(text)
    if family != "llama-sentencepiece":  # llama.cpp drops SentencePiece's leading dummy space on decode
        assert llm.detokenize(plain).decode() == text
    llm.close()


@pytest.mark.parametrize("text", PARITY_STRINGS)
def test_sentencepiece_gguf_tokenizes_like_sentencepiece(built, text):
    """The ground truth for a SentencePiece Llama is tokenizer.model itself, not only HF's copy."""
    import sentencepiece as spm

    b = built["llama-sentencepiece"]
    sp = spm.SentencePieceProcessor(model_file=str(b.hf_dir / "tokenizer.model"))
    llm = llama_cpp.Llama(model_path=str(b.f32), vocab_only=True, verbose=False)
    got = llm.tokenize(text.encode(), add_bos=False, special=False)
    assert got == sp.encode(text)
    assert sp.decode(got) == text
    llm.close()


def test_qwen2_nfc_text_tokenizes_alike(built):
    """llama.cpp applies no NFC (see convert_gguf): decomposed text matches HF once normalized."""
    b = built["qwen2"]
    text = "cafe\u0301 and U\u0308mea\u030a"  # café, Ümeå with combining marks
    llm = llama_cpp.Llama(model_path=str(b.f32), vocab_only=True, verbose=False)
    nfc = unicodedata.normalize("NFC", text)
    assert llm.tokenize(nfc.encode(), add_bos=False, special=False) == b.tok.encode(text, add_special_tokens=False)
    llm.close()


# ----------------------------------------------------------------------------- metadata
@pytest.mark.parametrize("family", list(FAMILIES))
def test_special_tokens_and_chat_template_in_metadata(built, family):
    import gguf

    b = built[family]
    f = metadata(b.f32)
    tokens = f["tokenizer.ggml.tokens"]
    assert f["tokenizer.chat_template"] == b.tok.chat_template == M.T.CHATML_TEMPLATE
    assert tokens[f["tokenizer.ggml.eos_token_id"]] == b.tok.eos_token
    bos_id = f["tokenizer.ggml.bos_token_id"]
    assert bos_id == json.loads((b.hf_dir / "config.json").read_text())["bos_token_id"]
    # What llama.cpp makes of them when it loads the file: the chat's end of turn, and a BOS
    # exactly where the HF tokenizer adds one.
    vocab = llama_cpp.Llama(model_path=str(b.f32), vocab_only=True, verbose=False)
    assert vocab._model.token_get_text(vocab._model.token_eot()) == "<|im_end|>"
    assert vocab._model.add_bos_token() is (b.tok("x")["input_ids"][:1] == [bos_id])
    vocab.close()
    types = f["tokenizer.ggml.token_type"]
    for s in ("<|im_start|>", "<|im_end|>"):
        assert types[tokens.index(s)] == int(gguf.TokenType.CONTROL)
    if b.tok.pad_token is not None:
        assert tokens[f["tokenizer.ggml.padding_token_id"]] == b.tok.pad_token
    assert len(tokens) == b.model.config.vocab_size  # the converter writes no vocab_size key: the token count is it


def test_sentencepiece_metadata(built):
    import gguf

    b = built["llama-sentencepiece"]
    f = metadata(b.f32)
    tokens, types, scores = f["tokenizer.ggml.tokens"], f["tokenizer.ggml.token_type"], f["tokenizer.ggml.scores"]
    assert f["general.architecture"] == "llama" and f["tokenizer.ggml.model"] == "llama"
    assert f["tokenizer.ggml.add_space_prefix"] is True
    assert tokens[:3] == ["<unk>", "<s>", "</s>"] and f["tokenizer.ggml.unknown_token_id"] == 0
    assert types[1:3] == [int(gguf.TokenType.CONTROL)] * 2 and types[0] in (
        int(gguf.TokenType.UNKNOWN), int(gguf.TokenType.CONTROL))  # <unk>: llama.cpp's converter marks it control
    assert tokens[3:259] == [f"<0x{i:02X}>" for i in range(256)]
    assert set(types[3:259]) == {int(gguf.TokenType.BYTE)}
    assert types[259] == int(gguf.TokenType.NORMAL) and scores[259] > scores[300]  # SP ranks merges by score
    assert tokens[-2:] == ["<|im_start|>", "<|im_end|>"] and scores[-1] == -1000.0
    assert "tokenizer.ggml.merges" not in f


def test_qwen2_metadata_and_tensors(built):
    import gguf

    b = built["qwen2"]
    f = metadata(b.f32)
    assert f["general.architecture"] == "qwen2"
    assert f["tokenizer.ggml.model"] == "gpt2" and f["tokenizer.ggml.pre"] == "qwen2"
    assert f["qwen2.rope.freq_base"] == pytest.approx(1e6)
    assert f["qwen2.attention.head_count"] == 4 and f["qwen2.attention.head_count_kv"] == 2
    n_tok = len(b.tok)
    assert f["tokenizer.ggml.tokens"][n_tok:] == [f"[PAD{i}]" for i in range(n_tok, b.model.config.vocab_size)]
    assert set(f["tokenizer.ggml.token_type"][n_tok:]) == {int(gguf.TokenType.UNUSED)}
    names = set(f["tensors"])
    assert {"blk.0.attn_q.bias", "blk.0.attn_k.bias", "blk.1.attn_v.bias"} <= names
    assert "output.weight" not in names  # tied: llama.cpp reuses token_embd
    f16 = metadata(b.f16)["tensors"]
    assert f16["blk.0.attn_q.bias"].tensor_type == gguf.GGMLQuantizationType.F32  # 1-D stays F32
    assert f16["blk.0.attn_q.weight"].tensor_type == gguf.GGMLQuantizationType.F16


# ----------------------------------------------------------------------------- refusals
def edited_copy(src: Path, dst: Path, file: str, edit) -> Path:
    shutil.copytree(src, dst)
    path = dst / file
    path.write_text(json.dumps(edit(json.loads(path.read_text(encoding="utf-8")))), encoding="utf-8")
    return dst


def test_refuses_what_llama_cpp_cannot_convert_with_its_reason(built, tmp_path):
    qwen, sp_llama = built["qwen2"].hf_dir, built["llama-sentencepiece"].hf_dir
    cases = [
        (qwen, "config.json", lambda c: {**c, "architectures": ["NotARealForCausalLM"]},
         "Model NotARealForCausalLM is not supported"),
        # A tokenizer llama.cpp's converter does not know by hash, whose declared split it has no name for.
        (qwen, "tokenizer.json",
         lambda t: {**t, "pre_tokenizer": {**t["pre_tokenizer"], "pretokenizers": [
             {**t["pre_tokenizer"]["pretokenizers"][0], "pattern": {"Regex": r"\p{L}+|\s+"}},
             t["pre_tokenizer"]["pretokenizers"][1]]}},
         r"tokenizer\.json: pre-tokenizer Split\(regex '\\\\p\{L\}\+"),
    ]
    for i, (src, file, edit, message) in enumerate(cases):
        bad = edited_copy(src, tmp_path / f"case{i}", file, edit)
        with pytest.raises(ConvertError, match=message):
            convert(bad, tmp_path / "x.gguf")
    bad = tmp_path / "sp"
    shutil.copytree(sp_llama, bad)
    (bad / "tokenizer.model").write_bytes(b"not a model")
    with pytest.raises(ConvertError, match="llama.cpp's converter refused"):
        convert(bad, tmp_path / "x.gguf")
    assert not list(tmp_path.glob("x.gguf*"))


# ----------------------------------------------------------------------------- tiny_models
def test_tiny_models_are_deterministic(tmp_path):
    for name, build in FAMILIES.items():
        a, b = build(tmp_path / f"{name}-a"), build(tmp_path / f"{name}-b")
        for f in sorted(p.name for p in a.iterdir()):
            assert (a / f).read_bytes() == (b / f).read_bytes(), f"{name}: {f} differs between two builds"
