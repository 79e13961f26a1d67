"""Every listed quantization through llama.cpp, I-quants with and without an importance matrix,
and the choice of a quantization for a board (stratoecho/boards.py, quantize.for_target).

The model is a random 256-wide Llama built here (256 so that the K- and I-quants apply to
every matrix instead of falling back to 32-blocks, as they do for the `test` preset), converted
by the real converter. Its importance matrix is computed the way llama-imatrix computes one:
mean squared input activations of every weight matrix over some text, from the HF model with
torch forward hooks, and the way `build` computes the persona's own: in llama.cpp (imatrix.py);
the two must agree.
"""

from __future__ import annotations

import random
import struct

import numpy as np
import pytest

from host_training.convert.convert_gguf import convert
from host_training.quantize.quantizer import (
    IQUANT_TYPES,
    LISTED_QUANTS,
    QUANT_TYPES,
    QuantizeError,
    for_target,
    min_file_bytes,
    model_shape,
    parse_quant,
    quantize,
    read_imatrix,
    write_imatrix,
)
from host_training.train import tokenizer as T
from stratoecho import boards as targets
from tests.chatdata import make_conversation

llama_cpp = pytest.importorskip("llama_cpp")

MB = targets.MB
PROMPT = "<|im_start|>user\nHow was the launch?<|im_end|>\n<|im_start|>assistant\n"
NO_SPECIALS = {0: -100.0, 1: -100.0, 2: -100.0}  # a random model may end its turn at once; forbid it


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """(hf model, hf tokenizer, F32 GGUF path) of a random 1-layer, 256-wide Llama (3.4 MB in F32)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    d = tmp_path_factory.mktemp("quant_model")
    rng = random.Random(3)
    convs = [make_conversation(rng)["messages"] for _ in range(60)]
    tok = T.train_tokenizer(T.tokenizer_training_text(convs, "You are Ada."), vocab_size=512)
    T.save_tokenizer(tok, d / "hf")
    hf_tok = T.load_hf_tokenizer(d / "hf")
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=512, hidden_size=256, intermediate_size=512, num_hidden_layers=1, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128, initializer_range=0.1, rms_norm_eps=1e-5,
        bos_token_id=0, eos_token_id=0, pad_token_id=0, tie_word_embeddings=False,
    )
    hf = LlamaForCausalLM(cfg).eval()
    hf.save_pretrained(str(d / "hf"))
    hf_tok.save_pretrained(str(d / "hf"))
    return hf, hf_tok, convert(d / "hf", d / "model.F32.gguf", "f32")


def generate(path, n=8):
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=128, verbose=False)
    try:
        out = llm.create_completion(PROMPT, max_tokens=n, temperature=0.0, logit_bias=NO_SPECIALS)
        return llama_cpp.llama_model_ftype(llm.model), out
    finally:
        llm.close()


# ----------------------------------------------------------------------------- every listed type
@pytest.mark.parametrize("quant", LISTED_QUANTS)
def test_every_listed_type_quantizes_loads_and_generates(model, tmp_path, quant):
    _, _, f32 = model
    result = quantize(f32, tmp_path / f"model.{quant}.gguf", quant, threads=2)
    assert result.path.is_file() and not (tmp_path / f"model.{quant}.gguf.tmp").exists()
    assert min_file_bytes(f32, quant) <= result.bytes < 0.6 * f32.stat().st_size
    ftype, out = generate(result.path)
    assert ftype == getattr(llama_cpp, QUANT_TYPES[quant])
    # ran the full 8 steps (usage may count a few more: it re-tokenizes the text, split UTF-8 and all)
    assert out["choices"][0]["finish_reason"] == "length" and out["usage"]["completion_tokens"] >= 8


def test_sizes_fall_with_the_bits(model, tmp_path):
    _, _, f32 = model
    sizes = [quantize(f32, tmp_path / f"{q}.gguf", q, threads=2).bytes for q in ("F16", "Q8_0", "Q4_K_M", "Q2_K")]
    assert sizes == sorted(sizes, reverse=True)


# ----------------------------------------------------------------------------- I-quants
@pytest.mark.parametrize("quant", sorted(IQUANT_TYPES))
def test_iquants_are_refused_without_an_importance_matrix(model, tmp_path, quant):
    _, _, f32 = model
    assert parse_quant(quant.lower(), iquants=True) == quant  # known by name ...
    with pytest.raises(QuantizeError) as e:  # ... but refused without an imatrix
        quantize(f32, tmp_path / "out.gguf", quant)
    msg = str(e.value)
    with pytest.raises(ValueError) as e2:  # and by a command line's parse, before any training
        parse_quant(quant)
    assert str(e2.value) == msg
    assert f"{quant} is an I-quant and needs an importance matrix" in msg
    assert "imatrix=PATH" in msg and "llama-imatrix" in msg
    assert any(k in msg for k in ("choose Q4_K_M", "choose Q3_K_M", "choose Q2_K"))
    assert not (tmp_path / "out.gguf").exists()


def hf_imatrix(hf, hf_tok, texts, ids=()):
    """{gguf tensor name: (sum of squared inputs per column, tokens)} from forward hooks on every Linear,
    over `texts` (tokenized here) and the token id lists `ids`."""
    import gguf
    import torch

    names = gguf.TensorNameMap(gguf.MODEL_ARCH.LLAMA, hf.config.num_hidden_layers)
    sums, counts, hooks = {}, {}, []
    for mod_name, mod in hf.named_modules():
        if isinstance(mod, torch.nn.Linear):
            name = names.get_name(mod_name + ".weight", try_suffixes=(".weight",))

            def hook(_m, inputs, _out, name=name):
                x = inputs[0].detach().reshape(-1, inputs[0].shape[-1]).double()
                sums[name] = sums.get(name, 0) + (x * x).sum(0).numpy()
                counts[name] = counts.get(name, 0) + x.shape[0]

            hooks.append(mod.register_forward_hook(hook))
    with torch.no_grad():
        for t in [hf_tok.encode(t, add_special_tokens=False)[:128] for t in texts] + list(ids):
            hf(torch.tensor([t]))
    for h in hooks:
        h.remove()
    return sums, counts


def test_iquant_with_a_real_importance_matrix(model, tmp_path):
    import gguf

    hf, hf_tok, f32 = model
    rng = random.Random(5)
    texts = [" ".join(m["content"] for m in make_conversation(rng)["messages"]) for _ in range(8)]
    sums, counts = hf_imatrix(hf, hf_tok, texts)
    assert "blk.0.ffn_down.weight" in sums and sums["blk.0.ffn_down.weight"].shape == (512,)
    im_path = write_imatrix(tmp_path / "imatrix.gguf", sums, counts, datasets=["chats.txt"], chunk_count=len(texts))
    im = read_imatrix(im_path)
    q = "blk.0.attn_q.weight"
    np.testing.assert_allclose(im.entries[q], sums[q] / counts[q], rtol=1e-5)
    # IQ2_XXS: llama.cpp itself refuses it without an imatrix for 256-wide matrices, so a file
    # at all proves the matrix reached it.
    result = quantize(f32, tmp_path / "model.IQ2_XXS.gguf", "IQ2_XXS", threads=2, imatrix=im_path)
    assert result.imatrix == str(im_path)
    r = gguf.GGUFReader(str(result.path))
    assert {t.tensor_type.name for t in r.tensors if t.name.startswith("blk.0.ffn")} >= {"IQ2_XXS"}
    meta = {k: v.contents() for k, v in r.fields.items() if k.startswith("quantize.imatrix")}
    assert meta == {"quantize.imatrix.file": "imatrix.gguf", "quantize.imatrix.dataset": "chats.txt",
                    "quantize.imatrix.entries_count": len(sums), "quantize.imatrix.chunks_count": len(texts)}
    ftype, out = generate(result.path)
    assert ftype == llama_cpp.LLAMA_FTYPE_MOSTLY_IQ2_XXS and out["choices"][0]["finish_reason"] == "length"


def write_legacy_imatrix(path, entries, ncall, dataset="calib.txt"):
    """llama-imatrix's old .dat: values stored as mean square x ncall, then last chunk and dataset."""
    with open(path, "wb") as f:
        f.write(struct.pack("<i", len(entries)))
        for name, v in entries.items():
            f.write(struct.pack("<i", len(name)) + name.encode() + struct.pack("<ii", ncall, v.size))
            f.write((np.asarray(v, "<f4") * ncall).tobytes())
        f.write(struct.pack("<ii", 10, len(dataset)) + dataset.encode())


def test_legacy_dat_importance_matrix(model, tmp_path):
    import gguf

    _, _, f32 = model
    r = gguf.GGUFReader(str(f32))
    entries = {t.name: np.linspace(0.5, 2.0, int(t.shape[0]), dtype=np.float32)
               for t in r.tensors if len(t.shape) == 2 and t.name != "token_embd.weight"}
    write_legacy_imatrix(tmp_path / "imatrix.dat", entries, ncall=4)
    im = read_imatrix(tmp_path / "imatrix.dat")
    assert im.format == "legacy" and im.datasets == ["calib.txt"] and im.chunk_count == 10
    np.testing.assert_allclose(im.entries["blk.0.attn_v.weight"], entries["blk.0.attn_v.weight"], rtol=1e-6)
    result = quantize(f32, tmp_path / "model.IQ4_XS.gguf", "IQ4_XS", threads=2, imatrix=tmp_path / "imatrix.dat")
    assert generate(result.path)[0] == llama_cpp.LLAMA_FTYPE_MOSTLY_IQ4_XS


def test_an_importance_matrix_of_another_model_is_named(model, tmp_path):
    _, _, f32 = model
    wrong = {"blk.0.attn_q.weight": np.ones(64, np.float32)}
    write_imatrix(tmp_path / "other.gguf", wrong, {"blk.0.attn_q.weight": 1.0})
    with pytest.raises(QuantizeError, match=r"blk\.0\.attn_q\.weight \(64 values, the tensor has 256 input columns\)"):
        quantize(f32, tmp_path / "out.gguf", "IQ4_XS", imatrix=tmp_path / "other.gguf")
    write_imatrix(tmp_path / "partial.gguf", {"blk.0.attn_q.weight": np.ones(256)}, {"blk.0.attn_q.weight": 1.0})
    with pytest.raises(QuantizeError, match=r"no importance for blk\.0\..*IQ2_XXS needs one for every weight matrix"):
        quantize(f32, tmp_path / "out.gguf", "IQ2_XXS", imatrix=tmp_path / "partial.gguf")
    (tmp_path / "junk.dat").write_bytes(b"\x01\x00")
    with pytest.raises(QuantizeError, match="not a readable llama-imatrix file"):
        quantize(f32, tmp_path / "out.gguf", "IQ4_XS", imatrix=tmp_path / "junk.dat")
    assert not (tmp_path / "out.gguf").exists()


# ----------------------------------------------------------------------------- boards
def test_board_names_and_budgets():
    assert targets.board("pi4") is targets.board("PI4-2GB")
    assert targets.board("pi5").ram_bytes == 2 * targets.GB
    for name in targets.TARGETS:
        b = targets.board(name)
        assert 0 < b.budget_bytes < b.ram_bytes and b.bandwidth_gb_s > 0
    zero = targets.board("pi-zero-2w")
    assert zero.ram_bytes == 512 * MB and 200 * MB < zero.budget_bytes < 260 * MB
    assert targets.board("pi5-8gb").budget_bytes > targets.board("pi5").budget_bytes
    with pytest.raises(ValueError, match="unknown target board 'pi6'.*pi-zero-2w, pi3, pi4, pi5"):
        targets.board("pi6")


def test_predicted_tokens_per_s_is_bandwidth_over_bytes_read():
    assert targets.predicted_tokens_per_s("pi5", 400_000_000) == pytest.approx(25.0)
    assert targets.predicted_tokens_per_s("pi-zero-2w", 100_000_000) == pytest.approx(11.0)
    assert targets.predicted_tokens_per_s("pi4", 300_000_000, kv_read_bytes=90_000_000) == pytest.approx(10.0)
    with pytest.raises(ValueError):
        targets.predicted_tokens_per_s("pi4", 0)


def test_fits_counts_the_kv_cache():
    zero = targets.board("pi-zero-2w")
    shape = targets.ModelShape(n_ctx=2048, n_layers=8, n_embd_kv=256)  # 2 x 8 x 2048 x 256 x 2 B = 16 MB
    assert shape.kv_cache_bytes == 16 * MB
    file_bytes = zero.budget_bytes - 8 * MB
    assert targets.fits(zero, file_bytes)
    assert not targets.fits(zero, file_bytes, shape)
    assert targets.fits(zero, file_bytes, targets.ModelShape(n_ctx=512, n_layers=8, n_embd_kv=256))


CANDIDATES = {  # quant: (bytes, drift: upper bound of the NLL increase, nats/token): sizes like a 0.5B model's
    "F16": (990 * MB, 0.0), "Q8_0": (530 * MB, 0.001), "Q6_K": (410 * MB, 0.004), "Q5_K_M": (380 * MB, 0.008),
    "Q4_K_M": (350 * MB, 0.018), "Q4_0": (330 * MB, 0.03), "Q3_K_M": (300 * MB, 0.06), "Q2_K": (250 * MB, 0.25),
}


def test_choose_takes_the_smallest_file_within_the_tolerance_that_fits():
    c = targets.choose("pi5-4gb", CANDIDATES, tolerance=0.02)
    assert c.quant == "Q4_K_M" and c.within_tolerance
    assert "Q4_K_M for pi5-4gb" in c.reason and "+0.0180 <= 0.02" in c.reason and "tokens/s" in c.reason
    assert c.fitting == tuple(CANDIDATES)  # least drift first
    assert targets.choose("pi5-4gb", CANDIDATES, tolerance=0.005).quant == "Q6_K"
    c = targets.choose("pi3", CANDIDATES, tolerance=0.0)  # 694 MB budget: F16 is out; only Q8_0... none <= 0
    assert c.quant == "Q8_0" and not c.within_tolerance and "too big: F16" in c.reason
    # the Zero 2 W gives a model 233 MB: the 240 MB Q3_K_M is out, the 200 MB Q2_K is in
    small = {"Q2_K": (200 * MB, 0.01), "Q3_K_M": (240 * MB, 0.005)}
    assert targets.choose("pi-zero-2w", small, tolerance=0.02).quant == "Q2_K"
    # ties in size go to the smaller drift
    assert targets.choose("pi5-4gb", {"A": (530, 0.002), "B": (530, 0.001)}, tolerance=0.02).quant == "B"


def test_choose_refuses_when_nothing_fits():
    with pytest.raises(targets.NothingFits) as e:
        targets.choose("pi-zero-2w", CANDIDATES, tolerance=0.02)
    msg = str(e.value)
    assert "nothing fits pi-zero-2w (512 MB RAM, 233 MB for the model" in msg
    assert "the smallest candidate, Q2_K, needs 250 MB" in msg
    shape = targets.ModelShape(n_ctx=4096, n_layers=24, n_embd_kv=256)  # 96 MB of F16 KV cache
    with pytest.raises(targets.NothingFits, match=r"Q2_K, needs 346 MB \(250 MB file \+ 96 MB KV cache"):
        targets.choose("pi-zero-2w", CANDIDATES, shape, tolerance=0.02)


# ----------------------------------------------------------------------------- for_target
def test_model_shape_reads_the_gguf(model):
    shape = model_shape(model[2])
    assert (shape.n_ctx, shape.n_layers, shape.n_embd_kv, shape.n_embd, shape.n_vocab) == (128, 1, 128, 256, 512)
    assert model_shape(model[2], n_ctx=64).n_ctx == 64


def tiny_board(budget_bytes):
    """A board whose model budget is `budget_bytes` (RAM small enough for the minimum headroom)."""
    fixed = targets.GPU_RESERVE_BYTES + targets.DAEMON_BYTES + targets.HEADROOM_MIN_BYTES
    b = targets.Board("tiny", fixed + budget_bytes, 0, 2.0, (2.0, 2.0), "test board")
    assert b.budget_bytes == budget_bytes
    return b


def test_for_target_quantizes_measures_and_chooses(model, tmp_path):
    _, _, f32 = model
    shape = model_shape(f32)
    # F16 (1.7 MB) cannot fit; Q8_0 (0.9 MB) and smaller can.
    board = tiny_board(shape.runtime_bytes + int(1.2 * MB))
    high = {"Q8_0": 0.001, "Q6_K": 0.002, "Q5_K_M": 0.004, "Q4_K_M": 0.015, "Q4_0": 0.012, "Q3_K_M": 0.03, "Q2_K": 0.2}
    measured = []

    def measure(path):
        q = path.name.split(".")[1]
        measured.append(q)
        return {"nll_increase": high[q] / 2, "low": 0.0, "high": high[q], "val_perplexity": 10.0 + high[q]}

    chosen, table = for_target(f32, board, measure, tmp_path / "out", tolerance=0.02, threads=2)
    # Q4_0 is smaller than Q4_K_M and within the tolerance; Q3_K_M and Q2_K are smaller but drift too much
    assert chosen == tmp_path / "out" / "model.Q4_0.gguf" and chosen.is_file()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["model.Q4_0.gguf"]
    assert "F16" not in measured and len(measured) == 7
    rows = {r["quant"]: r for r in table}
    assert [r["quant"] for r in table] == list(LISTED_QUANTS)
    assert rows["F16"]["bytes"] is None and not rows["F16"]["fits"] and rows["F16"]["note"].startswith("skipped")
    assert rows["Q4_0"]["chosen"] and rows["Q4_0"]["within_tolerance"]
    assert "the smallest file whose drift is within the tolerance (+0.0120 <= 0.02" in rows["Q4_0"]["note"]
    assert sum(r["chosen"] for r in table) == 1
    for q in high:
        r = rows[q]
        assert r["fits"] and r["drift"]["high"] == high[q] and r["val_perplexity"] == 10.0 + high[q] and r["bytes"] > 0
        assert r["predicted_tokens_per_s"] == pytest.approx(2.0e9 / (r["bytes"] + shape.kv_read_bytes_per_token))
    with pytest.raises(ValueError, match="expected a mapping with a 'high'"):
        for_target(f32, board, lambda p: {"val_perplexity": 3.0}, tmp_path / "out2", tolerance=0.02, quants=["Q8_0"])


def test_for_target_when_nothing_fits(model, tmp_path):
    _, _, f32 = model
    calls = []
    with pytest.raises(targets.NothingFits, match="nothing fits tiny .* the smallest candidate, Q2_K"):
        for_target(f32, tiny_board(100_000), calls.append, tmp_path / "out", tolerance=0.02)
    assert calls == [] and list((tmp_path / "out").iterdir()) == []


def test_for_target_refuses_iquants_without_an_imatrix_before_any_work(model, tmp_path):
    with pytest.raises(QuantizeError, match="IQ2_XXS is an I-quant and needs an importance matrix"):
        for_target(model[2], "pi4", lambda p: {"high": 0.0}, tmp_path / "out", tolerance=0.02,
                   quants=["Q8_0", "IQ2_XXS"])
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


# ----------------------------------------------------------------------------- the persona's own imatrix
def calibration(hf_tok, n=12):
    """Synthetic chats in ChatML ids, packed into chunks of 96 tokens (a short last one)."""
    from host_training.train import heldout

    rng = random.Random(9)
    enc, special = T.hf_text_encoder(hf_tok), T.hf_special_ids(hf_tok)
    rendered = [T.render_ids(make_conversation(rng)["messages"], enc, special)[0] for _ in range(n)]
    return heldout.calibration(rendered, max_tokens=1000, chunk=96)


def test_imatrix_from_llama_cpp_covers_every_weight_matrix_as_torch_sees_it(model):
    import gguf

    from host_training.quantize import imatrix

    hf, hf_tok, f32 = model
    chunks = calibration(hf_tok)
    assert sum(map(len, chunks)) == 1000 and len(chunks[-1]) < 96
    r = imatrix.compute(f32, chunks, threads=2)
    seen = sum(len(c) for c in chunks if len(c) >= imatrix.MIN_ROWS)  # llama-imatrix skips tiny batches
    assert r.tokens == seen and r.chunks == sum(len(c) >= imatrix.MIN_ROWS for c in chunks)
    matrices = {t.name: t for t in gguf.GGUFReader(str(f32)).tensors
                if len(t.shape) == 2 and t.name not in ("token_embd.weight", "output.weight")}
    assert set(r.sums) == set(matrices)  # every matrix the quantizer will quantize, nothing else
    for name, s in r.sums.items():
        assert s.shape == (int(matrices[name].shape[0]),) and (s > 0).all() and np.isfinite(s).all()
        assert r.counts[name] == seen
    # the same numbers as torch hooks on the HF model over the same chunks (llama.cpp's attention
    # runs with an F16 KV cache, so the inputs after it differ in the 4th digit)
    sums, counts = hf_imatrix(hf, hf_tok, [], ids=[c for c in chunks if len(c) >= imatrix.MIN_ROWS])
    for name in r.sums:
        assert counts[name] == seen
        np.testing.assert_allclose(r.sums[name], sums[name], rtol=5e-3, atol=1e-3 * float(sums[name].max()))


def test_an_iquant_with_the_persona_imatrix_loads_and_generates(model, tmp_path):
    from host_training.quantize import imatrix

    hf, hf_tok, f32 = model
    r = imatrix.compute(f32, calibration(hf_tok), threads=2)
    path = imatrix.write(tmp_path / "imatrix.gguf", r, "persona train.jsonl")
    im = read_imatrix(path)
    assert im.chunk_count == r.chunks and im.datasets == ["persona train.jsonl"]
    q = "blk.0.ffn_down.weight"
    np.testing.assert_allclose(im.entries[q], r.sums[q] / r.counts[q], rtol=1e-5)
    result = quantize(f32, tmp_path / "model.IQ2_XXS.gguf", "IQ2_XXS", threads=2, imatrix=path)
    ftype, out = generate(result.path)
    assert ftype == llama_cpp.LLAMA_FTYPE_MOSTLY_IQ2_XXS and out["choices"][0]["finish_reason"] == "length"
