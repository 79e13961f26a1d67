"""`build --base`'s preflight (host_training/preflight/): in seconds, before training and
before BUNDLE is touched, whether the base converts, which chat template it trains with, and
whether it fits the board, in MB.

Big models are faked cheaply: a config.json and a safetensors file whose header declares
the real tensors (8-byte little-endian header length, then JSON with dtype, shape and
data_offsets) and whose data is a hole (a sparse file of the full length), so nothing
reads or writes gigabytes.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from host_training import preflight as pf
from host_training.__main__ import main
from stratoecho import boards

MB = boards.MB

# SmolLM2-135M's config.json (the fields the preflight reads), as published.
SMOLLM2_135M = dict(architectures=["LlamaForCausalLM"], model_type="llama", hidden_size=576, intermediate_size=1536,
                    num_attention_heads=9, num_key_value_heads=3, num_hidden_layers=30, vocab_size=49152,
                    max_position_embeddings=8192, tie_word_embeddings=True, torch_dtype="bfloat16")


def llama_tensors(c: dict) -> dict[str, list[int]]:
    """The tensor names and HF shapes ([out, in]) of a Llama checkpoint with config `c`."""
    h, ff, layers, vocab = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], c["vocab_size"]
    kv = c["num_key_value_heads"] * h // c["num_attention_heads"]
    t = {"model.embed_tokens.weight": [vocab, h], "model.norm.weight": [h]}
    if not c.get("tie_word_embeddings"):
        t["lm_head.weight"] = [vocab, h]
    for i in range(layers):
        p = f"model.layers.{i}."
        t |= {p + "input_layernorm.weight": [h], p + "post_attention_layernorm.weight": [h],
              p + "self_attn.q_proj.weight": [h, h], p + "self_attn.k_proj.weight": [kv, h],
              p + "self_attn.v_proj.weight": [kv, h], p + "self_attn.o_proj.weight": [h, h],
              p + "mlp.gate_proj.weight": [ff, h], p + "mlp.up_proj.weight": [ff, h], p + "mlp.down_proj.weight": [h, ff]}
    return t


def write_safetensors_header(path: Path, tensors: dict[str, list[int]], dtype: str = "BF16") -> int:
    """A safetensors file declaring `tensors` whose data is a hole: header only, sparse to full length."""
    header, offset = {}, 0
    for name, shape in tensors.items():
        n = 2
        for d in shape:
            n *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with path.open("wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        f.truncate(8 + len(raw) + offset)
    return offset


def fake_base(d: Path, config: dict, tokens: int | None = None, template: str | None = "chatml") -> Path:
    """A base of `config` (Llama-shaped tensors) with a byte-level-BPE-looking tokenizer.json of
    `tokens` tokens (default: vocab_size) and, unless None, a chat template."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps(config))
    write_safetensors_header(d / "model.safetensors", llama_tensors(config))
    n = config["vocab_size"] if tokens is None else tokens
    tok = {"model": {"type": "BPE", "vocab": {f"t{i}": i for i in range(n)}, "merges": []}, "added_tokens": []}
    (d / "tokenizer.json").write_text(json.dumps(tok))
    tc = {"tokenizer_class": "PreTrainedTokenizerFast"}
    if template == "chatml":
        tc["chat_template"] = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    (d / "tokenizer_config.json").write_text(json.dumps(tc))
    return d


@pytest.fixture
def no_training(monkeypatch):
    """Fail loudly if a build gets as far as training."""
    from host_training import finetune

    def refuse(*a, **k):
        raise AssertionError("training started")

    monkeypatch.setattr(finetune, "train", refuse)


def build(base: Path, data: Path, out: Path, *extra: str) -> int:
    return main(["build", "--base", str(base), "--data", str(data), "--out", str(out), *extra])


# ----------------------------------------------------------------------------- the memory arithmetic
def test_smollm2_135m_on_a_zero_2w_at_q4_k_m_with_512_tokens(tmp_path):
    """docs/training.md's example, figure by figure."""
    base = fake_base(tmp_path / "smollm2", SMOLLM2_135M)
    r = pf.run(base, quant="Q4_K_M", target="pi-zero-2w", max_length=512, convert=False)
    assert r.n_params == 134_515_008 and r.context == 512
    f = next(f for f in r.fits if f.quant == "Q4_K_M")
    assert f.board == "pi-zero-2w" and f.ram == 512 * MB
    assert f.budget == pytest.approx(232.8 * MB, abs=0.1 * MB)
    # 30 layers x 512 positions x (3 KV heads x 64) x K and V x 2 bytes
    assert f.kv_cache == 2 * 30 * 512 * 192 * 2 == 11_796_480
    # F32 logits and activations of one 512-token micro-batch: 4 x 512 x (49152 + 4 x 576)
    assert f.compute == 4 * 512 * (49152 + 4 * 576)
    # the published SmolLM2-135M Q4_K_M files are ~105 MB (576-wide rows fall back to Q5_0/Q8_0)
    assert 98 * MB < f.weights < 102 * MB and f.weights_low < 75 * MB
    assert f.verdict == "fits" and 64 * MB < f.left_for_daemon < 100 * MB
    assert r.verdict.quant == "F16" or r.verdict.verdict == "fits"
    text = r.text()
    assert "pi-zero-2w" in text and "left for the payload daemon" in text and "KV cache 11.2" in text


def test_a_too_long_context_is_refused_with_the_context_that_fits(tmp_path):
    base = fake_base(tmp_path / "smollm2", SMOLLM2_135M)
    with pytest.raises(pf.PreflightError) as e:
        pf.run(base, quant="Q8_0", target="pi-zero-2w", max_length=8192, convert=False)
    msg = str(e.value)
    assert "does not fit pi-zero-2w at Q2_K (the smallest candidate) with a 8192-token context" in msg
    ctx = int(msg.split("--max-length ")[1].split()[0])
    assert 512 <= ctx < 8192 and ctx % 32 == 0
    # and that context does fit
    r = pf.run(base, target="pi-zero-2w", max_length=ctx, convert=False)
    assert r.verdict.verdict == "fits"


def test_without_target_the_quant_is_checked_against_every_board(tmp_path):
    big = dict(SMOLLM2_135M, hidden_size=5120, intermediate_size=13824, num_attention_heads=40, num_key_value_heads=40,
               num_hidden_layers=40, vocab_size=32000, max_position_embeddings=4096, tie_word_embeddings=False)
    base = fake_base(tmp_path / "13b", big)
    with pytest.raises(pf.PreflightError) as e:  # 13B in F16: 26 GB, no Pi has that
        pf.run(base, quant="F16", max_length=512, convert=False)
    msg = str(e.value)
    assert "does not fit any board, not even a pi5-16gb" in msg
    assert "a lower quantization: --quant Q8_0 fits a pi5-16gb" in msg
    r = pf.run(base, quant="Q4_K_M", max_length=512, convert=False)  # ~7.9 GB: more than a pi5-8gb's 7 GB budget
    assert r.verdict.board == "pi5-16gb" and r.verdict.verdict == "fits"
    assert any("does not fit a pi-zero-2w" in n for n in r.notes)


def test_target_says_which_pinned_base_fits_the_board(tmp_path):
    """A Gemma-3-270M-sized base on a Zero 2 W fits only with its vocabulary trimmed to the owner's
    language: let through, and the one line says so; the pinned bases' note says the same of the
    pinned Gemma. A base whose layers alone are too big is refused with the pinned base that fits."""
    from host_training.quantize.trim_vocab import PLAN_TOKENS

    gemma_like = dict(SMOLLM2_135M, hidden_size=640, intermediate_size=2048, num_attention_heads=4,
                      num_key_value_heads=1, num_hidden_layers=18, vocab_size=262144)
    r = pf.run(fake_base(tmp_path / "gemma", gemma_like), target="pi-zero-2w", max_length=512, convert=False)
    line = r.short().splitlines()[0]
    assert f"pi-zero-2w at {r.quant}: fits" in line and "once its vocabulary is trimmed to the owner's language" in line
    assert r.trim["plan"] == PLAN_TOKENS < r.trim["most"] < r.trim["of"] == 262144
    assert r.as_dict()["vocab_trim"] == r.trim and r.verdict.compute < 100 * MB
    assert any("gemma3-270m does not fit whole" in n and "trimmed to its owner's language" in n for n in r.notes)
    too_big = dict(gemma_like, hidden_size=2048, intermediate_size=8192, num_attention_heads=8, num_key_value_heads=8)
    with pytest.raises(pf.PreflightError) as e:
        pf.run(fake_base(tmp_path / "big", too_big), target="pi-zero-2w", max_length=512, convert=False)
    msg = str(e.value)
    assert "does not fit pi-zero-2w" in msg
    assert "pinned bases on a pi-zero-2w: smollm2-135m-instruct fits (context up to" in msg
    assert "gemma3-270m does not fit" in msg and "--base NAME" in msg
    r = pf.run(fake_base(tmp_path / "smollm2", SMOLLM2_135M), target="pi4", max_length=512, convert=False)
    assert any(n.startswith("pinned bases on a pi4-2gb: gemma3-270m fits") for n in r.notes)


def test_the_weight_estimate_follows_llama_cpp(tmp_path):
    """The rules that matter for a small model: the tied output matrix at Q6_K (Q8_0 for rows no
    multiple of 256), the Q4_K_M mix, the 32-block fallback."""
    t = pf.Tensor("model.layers.0.self_attn.v_proj.weight", (192, 576))
    kw = dict(n_layers=30, n_gqa=3)
    assert pf.tensor_type(t, "Q4_K_M", is_output=False, **kw) == "Q8_0"  # more bits (Q6_K), 576 % 256: Q8_0
    t = pf.Tensor("model.layers.4.self_attn.v_proj.weight", (192, 576))
    assert pf.tensor_type(t, "Q4_K_M", is_output=False, **kw) == "Q5_0"  # Q4_K, 576 % 256: Q5_0
    t = pf.Tensor("model.layers.4.mlp.down_proj.weight", (576, 1536))
    assert pf.tensor_type(t, "Q4_K_M", is_output=False, **kw) == "Q4_K"
    assert pf.tensor_type(t, "Q2_K", is_output=False, **kw) == "Q3_K"
    emb = pf.Tensor("model.embed_tokens.weight", (49152, 512))
    assert pf.tensor_type(emb, "Q4_K_M", is_output=True, **kw) == "Q6_K"
    assert pf.tensor_type(emb, "Q4_K_M", is_output=False, **kw) == "Q4_K"
    assert pf.tensor_type(pf.Tensor("model.norm.weight", (576,)), "Q2_K", is_output=False, **kw) == "F32"


@pytest.mark.slow
def test_the_weight_estimate_matches_llama_cpps_files(tmp_path):
    """Against llama.cpp's quantizer itself: a random 8-layer Llama 576 wide (the fallbacks)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from host_training.base.tiny_models import tiny_llama_bpe
    from host_training.convert import convert_gguf
    from host_training.quantize import quantizer as quantize

    tok = AutoTokenizer.from_pretrained(str(tiny_llama_bpe(tmp_path / "tok")))
    d = tmp_path / "w576"
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=576, intermediate_size=1536, num_hidden_layers=8,
                      num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=512,
                      tie_word_embeddings=True)
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(str(d))
    tok.save_pretrained(str(d))
    f32 = convert_gguf.convert(d, tmp_path / "f32.gguf")
    config = json.loads((d / "config.json").read_text())
    tensors, _ = pf.read_tensors(d, config)
    extra = pf.read_tokenizer(d).size_bytes
    for q in ("Q4_K_M", "Q2_K"):
        real = quantize.quantize(f32, tmp_path / f"{q}.gguf", q).bytes
        est, low = pf.weight_bytes(tensors, q, config)
        assert est + extra == pytest.approx(real, rel=0.01), q
        assert low < real


# ----------------------------------------------------------------------------- the checks, one by one
def test_file_checks_name_what_is_missing(tmp_path):
    base = fake_base(tmp_path / "b", dict(SMOLLM2_135M, num_hidden_layers=2))
    (base / "tokenizer.json").rename(base / "gone.json")
    with pytest.raises(pf.PreflightError, match="no tokenizer"):
        pf.run(base, convert=False)
    (base / "gone.json").rename(base / "tokenizer.json")
    (base / "model.safetensors").rename(base / "weights.bak")
    with pytest.raises(pf.PreflightError, match="no weights"):
        pf.run(base, convert=False)
    data = (base / "weights.bak").read_bytes()
    (base / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(pf.PreflightError, match="truncated"):
        pf.run(base, convert=False)
    (base / "model.safetensors").write_bytes(data)
    (base / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}))
    with pytest.raises(pf.PreflightError, match="2 of 2 shards missing"):
        pf.run(base, convert=False)


def test_a_tokenizer_bigger_than_the_embedding_is_refused(tmp_path):
    base = fake_base(tmp_path / "b", dict(SMOLLM2_135M, num_hidden_layers=2, vocab_size=1000), tokens=1002)
    with pytest.raises(pf.PreflightError, match=r"ids up to 1001 \(1002 tokens\) but config.json's vocab_size is 1000"):
        pf.run(base, convert=False)
    # a vocabulary padded past the tokenizer (Qwen2.5's 151936 rows for 151665 tokens) is fine
    base = fake_base(tmp_path / "padded", dict(SMOLLM2_135M, num_hidden_layers=2, vocab_size=1024), tokens=1000)
    assert pf.run(base, convert=False).tokens == 1000


def test_the_chat_template_is_reported_with_the_fallback(tmp_path):
    cfg = dict(SMOLLM2_135M, num_hidden_layers=2)
    own = pf.run(fake_base(tmp_path / "own", cfg), convert=False).template
    assert own.style == "ChatML" and own.source == "tokenizer_config.json" and "the base's own" in own.note
    raw = fake_base(tmp_path / "raw", cfg, template=None)
    none = pf.run(raw, convert=False).template
    assert none.source == "none" and "ChatML" in none.note and "<|im_start|>" in none.note
    (raw / "chat_template.jinja").write_text("{{ bos_token }}{% for m in messages %}<|start_header_id|>{% endfor %}")
    assert pf.run(raw, convert=False).template.style == "Llama 3"
    forced = pf.run(raw, convert=False, chat_template_mode="chatml").template
    assert forced.style == "ChatML" and "--chat-template chatml" in forced.source


# ----------------------------------------------------------------------------- through `build`
def test_too_large_a_model_fails_build_before_training(tmp_path, chat_data_dir, no_training, capsys):
    big = dict(SMOLLM2_135M, hidden_size=2048, intermediate_size=8192, num_attention_heads=32, num_key_value_heads=32,
               num_hidden_layers=24, vocab_size=32000, max_position_embeddings=2048, tie_word_embeddings=False)
    base = fake_base(tmp_path / "1.5b", big)  # ~1.5 B parameters, a 3 GB file that is a hole
    out = tmp_path / "bundle"
    assert build(base, chat_data_dir, out, "--target", "pi-zero-2w") == 2
    err = capsys.readouterr().err
    assert "preflight:" in err and "does not fit pi-zero-2w at Q2_K (the smallest candidate)" in err
    assert "left for the payload daemon" in err and "a smaller model: at most ~" in err
    assert "M parameters at Q2_K" in err and "a bigger board: pi3" not in err
    assert not out.exists()


@pytest.mark.slow
def test_an_unsupported_architecture_fails_build_before_training(tmp_path, chat_data_dir, no_training, capsys):
    from host_training.base.tiny_models import tiny_llama_bpe

    base = tiny_llama_bpe(tmp_path / "odd")
    config = json.loads((base / "config.json").read_text())
    (base / "config.json").write_text(json.dumps(dict(config, architectures=["StratoOddForCausalLM"])))
    out = tmp_path / "bundle"
    assert build(base, chat_data_dir, out) == 2
    err = capsys.readouterr().err
    assert "does not take its architecture (config.json architectures: StratoOddForCausalLM)" in err
    assert "Model StratoOddForCausalLM is not supported" in err  # the converter's own reason
    assert "Qwen2" in err and "newer llama-cpp-python" in err
    assert not out.exists()


@pytest.mark.slow
def test_preflight_only_reports_a_fitting_base_and_writes_nothing(tmp_path, chat_data_dir, no_training, capsys):
    from host_training.base.tiny_models import tiny_qwen2

    base = tiny_qwen2(tmp_path / "qwen2")
    out = tmp_path / "bundle"
    assert build(base, chat_data_dir, out, "--target", "pi-zero-2w", "--preflight-only") == 0
    text = capsys.readouterr().out
    assert "converts: yes: llama.cpp's converter takes Qwen2ForCausalLM" in text
    assert "chat template: the base's own (ChatML" in text
    assert "context: 256 tokens (the tiny preset's training rows" in text
    assert "pi-zero-2w at F16, in MB: RAM 512.0 - GPU 64.0 - OS 100.0 - headroom 51.2" in text
    assert "fits," in text and "preflight passed" in text
    assert not out.exists()


def test_out_dir_refusals_come_before_the_preflight(tmp_path, chat_data_dir, capsys):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert build(tmp_path / "nowhere", chat_data_dir, out) == 2
    assert "is not empty (notes.txt" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "mine"
