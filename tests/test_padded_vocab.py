"""A vocabulary padded past its tokenizer, in every family, through `build --base` (vocab_rows.py).

Real checkpoints keep more embedding rows than their tokenizer has tokens (Qwen3-0.6B 151,936
for 151,669, Phi-3 32,064 for 32,011). Each family's tiny stand-in (host_training/base/tiny_families.py)
gets PAD_ROWS rows more than its config.json had (`with_padded_vocabulary`) and goes
through `python -m host_training build --base ... --quant Q8_0`: the preflight (which must say
what the build will do with the padding), LoRA steps, merge, llama.cpp's converter on the merged
model and on the untuned base, the conversion check, quantization, the bundle. Then both GGUFs
have as many tokens as embedding rows, llama-cpp-python loads the bundle's file and it replies.

Beside the families, the converter's two paths that would write a GGUF llama.cpp refuses:
a Gemma 3 whose folder has a (byte-level BPE) tokenizer.json and no tokenizer.model, the case
reported ("token_embd.weight has wrong shape; expected 64, 640, got 64, 603"), and a Llama whose
SentencePiece vocabulary is only in tokenizer.json. Both are converted cut to their tokenizer.

The report's sampled replies are left out, as in test_pi_families (the same code for every
family, ~25 s each).
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from host_training.base import tiny_families as TF
from host_training.base.tiny_families import FAMILIES
from host_training.convert import vocab_rows
from host_training.preflight import read_tokenizer

llama_cpp = pytest.importorskip("llama_cpp")

PAD_ROWS = 37  # as the report's Gemma 3: 603 tokens, 640 rows (no multiple of anything, on purpose)
STEPS = 2
GEMMA3_JSON = "gemma3-tokenizer-json"


def with_padded_vocabulary(model_dir: str | Path, rows: int, seed: int = 0) -> Path:
    """The checkpoint in `model_dir` with `rows` embedding (and output) rows, however many tokens
    its tokenizer has, as real checkpoints pad theirs (Qwen3-0.6B: 151,936 rows for 151,669
    tokens); the new rows random, like the model's own initialisation. Rewritten in place."""
    import torch
    from transformers import AutoModelForCausalLM

    out = Path(model_dir)
    model = AutoModelForCausalLM.from_pretrained(str(out))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model.resize_token_embeddings(rows, mean_resizing=False)
    model.save_pretrained(str(out))
    return out


def tiny_gemma3_tokenizer_json(out_dir: Path, seed: int = 0) -> Path:
    """tiny_gemma3 whose only tokenizer is a byte-level BPE tokenizer.json (Gemma's special and turn
    tokens, BOS added, its template): llama.cpp's Gemma 3 converter then takes its BPE path, which
    lists vocab_size tokens but keeps only as many embedding rows as tokenizer.json counts."""
    out = TF.tiny_gemma3(out_dir, seed)
    for name in ("tokenizer.model", "tokenizer.json", "tokenizer_config.json"):
        (out / name).unlink()
    tok = TF.byte_level_bpe("llama-bpe", ["<pad>", "<eos>", "<bos>", "<unk>"], list(TF.GEMMA_TURNS))
    tok.post_processor = TF._bos_processor("<bos>", tok.token_to_id("<bos>"))
    TF._save_hf_tokenizer(tok, out, "PreTrainedTokenizerFast", TF.GEMMA3_TEMPLATE, bos_token="<bos>",
                          eos_token="<eos>", pad_token="<pad>", unk_token="<unk>")
    config = json.loads((out / "config.json").read_text())
    config["eos_token_id"] = [tok.token_to_id("<eos>"), tok.token_to_id("<end_of_turn>")]
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return with_padded_vocabulary(out, tok.get_vocab_size(), seed)  # the embedding to the new tokenizer


BUILDERS = {**{name: f.build for name, f in FAMILIES.items()}, GEMMA3_JSON: tiny_gemma3_tokenizer_json}


def tokenizer_ids(base: Path) -> int:
    return read_tokenizer(base).max_id + 1


def padded_base(name: str, where: Path) -> tuple[Path, int, int]:
    """(the family's stand-in with PAD_ROWS more rows, its rows, its tokenizer's ids)."""
    base = BUILDERS[name](where)
    rows = json.loads((base / "config.json").read_text())["vocab_size"] + PAD_ROWS
    with_padded_vocabulary(base, rows)
    assert json.loads((base / "config.json").read_text())["vocab_size"] == rows
    return base, rows, tokenizer_ids(base)



def build(base: Path, data: Path, out: Path, monkeypatch) -> int:
    """`build --base` without the report's sampled replies and without the untuned base's
    conversion (the same converter run on the same vocabulary layout; a base folder's own
    conversion, cut, is test_a_sentencepiece_tokenizer_json_without_its_model_converts_cut's)."""
    import dataclasses

    from host_training.__main__ import main
    from host_training.pipeline import bundling, stages

    convert = stages.convert
    monkeypatch.setattr(stages, "convert", lambda trained, work, name: convert(
        dataclasses.replace(trained, reference_dir=None), work, name))
    monkeypatch.setattr(bundling, "write_report", lambda *a, **k: None)
    return main(["build", "--base", str(base), "--data", str(data), "--out", str(out), "--name", "Ada",
                 "--steps", str(STEPS), "--quant", "Q8_0", "--keep-work"])


@pytest.mark.slow
@pytest.mark.parametrize("name", list(BUILDERS))
def test_a_padded_vocabulary_builds_and_loads(name, small_data, tmp_path, monkeypatch, capsys):
    from stratoecho.bundle import load_bundle

    base, rows, tokens = padded_base(name, tmp_path / "base")
    assert rows > tokens
    out = tmp_path / "bundle"
    cut = name == GEMMA3_JSON  # every family's converter lists the padding as [PAD] tokens but this one
    assert build(base, small_data, out, monkeypatch) == 0, capsys.readouterr().err
    printed = capsys.readouterr().err  # the preflight's notes, on the terminal beside the stage lines
    layout = vocab_rows.Layout.from_gguf(out / "work" / "model.F32.gguf")
    assert layout.loads
    if cut:  # to the rows the converter keeps, every id of the tokenizer among them; the preflight said so
        assert tokens <= layout.tokens < rows, layout
        assert (f"llama.cpp's converter writes {rows} tokens and {layout.tokens} embedding rows" in printed
                and f"the build converts a copy cut to the {layout.tokens} rows it keeps" in printed), printed
    else:
        assert layout.tokens == rows, layout
        assert f"vocabulary padded: {rows} embedding rows for {tokens} tokens" in printed, printed
    assert not list((out / "work").glob(".vocab-cut-*"))  # the cut copy is gone

    manifest = tomllib.loads((out / "persona.toml").read_text())
    bundle = load_bundle(out)
    prompt = bundle.render_prompt([{"role": "system", "content": manifest["persona"]["system_prompt"]},
                                   {"role": "user", "content": "How cold is it up there?"}])
    llm = llama_cpp.Llama(model_path=str(bundle.model_path), n_ctx=256, n_threads=2, verbose=False)
    reply = llm.create_completion(prompt, max_tokens=6, temperature=0.0, stop=manifest["persona"]["stop"])
    llm.close()
    assert reply["usage"]["completion_tokens"] >= 1


@pytest.mark.slow
def test_a_gguf_llama_cpp_refuses_ends_the_build_in_one_sentence(small_data, tmp_path, monkeypatch, capsys):
    """The last guard, for whatever else makes llama.cpp refuse the converter's file: with the
    cut and the layout check taken away, the conversion check's load fails and says so."""
    base, _, _ = padded_base(GEMMA3_JSON, tmp_path / "base")
    monkeypatch.setattr(vocab_rows.Layout, "loads", property(lambda self: True))
    assert build(base, small_data, tmp_path / "bundle", monkeypatch) == 2  # returned: nothing raised
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: conversion check: llama.cpp cannot load "), last
    assert not (tmp_path / "bundle" / "persona.toml").exists()


@pytest.mark.slow
def test_a_sentencepiece_tokenizer_json_without_its_model_converts_cut(tmp_path):
    """Llama with its SentencePiece vocabulary only in tokenizer.json: the converter lists the
    tokenizer's tokens alone (gguf-py's LlamaHfVocab) but keeps every row, untied output too."""
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM

    from host_training.base.tiny_models import tiny_llama_sentencepiece
    from host_training.convert.convert_gguf import ConvertError, convert
    from tests.test_convert_families import open_gguf

    base = tiny_llama_sentencepiece(tmp_path / "base")
    (base / "tokenizer.model").unlink()
    tokens = tokenizer_ids(base)
    with_padded_vocabulary(base, tokens + PAD_ROWS)
    with pytest.MonkeyPatch.context() as mp:  # uncut, the converter's file is refused, not written
        mp.setattr(vocab_rows, "cut_to", lambda layout: None)
        with pytest.raises(ConvertError, match=f"wrote {tokens} tokens and {tokens + PAD_ROWS} embedding rows"):
            convert(base, tmp_path / "uncut.F32.gguf")
    assert not (tmp_path / "uncut.F32.gguf").exists()
    layout = vocab_rows.Layout.from_gguf(convert(base, tmp_path / "model.F32.gguf"))
    assert layout == vocab_rows.Layout(tokens, tokens, tokens)
    assert not list(tmp_path.glob(".vocab-cut-*"))  # the cut copy is gone
    assert json.loads((base / "config.json").read_text())["vocab_size"] == tokens + PAD_ROWS  # base untouched
    ids = list(range(3, 40))
    with torch.no_grad():
        ref = AutoModelForCausalLM.from_pretrained(str(base)).eval()(torch.tensor([ids])).logits[0, :, :tokens]
    llm = open_gguf(tmp_path / "model.F32.gguf")
    llm.eval(ids)
    got = np.asarray(llm.scores[: len(ids)])
    llm.close()
    assert np.abs(got - ref.numpy()).max() < 1e-4 * max(1.0, float(ref.abs().max()))


# ----------------------------------------------------------------------------- the parts
def test_the_cut_keeps_the_first_rows_and_links_the_rest(tmp_path):
    from safetensors import safe_open

    from host_training.base.tiny_models import tiny_llama_bpe

    base = tiny_llama_bpe(tmp_path / "base")  # untied: embedding and lm_head
    rows = json.loads((base / "config.json").read_text())["vocab_size"]
    before = (base / "model.safetensors").read_bytes()
    out = vocab_rows.cut(base, rows - 5, tmp_path / "cut")
    assert json.loads((out / "config.json").read_text())["vocab_size"] == rows - 5
    with safe_open(str(out / "model.safetensors"), "pt") as cut, safe_open(str(base / "model.safetensors"), "pt") as o:
        for name in ("model.embed_tokens.weight", "lm_head.weight"):
            assert (cut.get_tensor(name) == o.get_tensor(name)[: rows - 5]).all()
        assert set(cut.keys()) == set(o.keys())
    assert (out / "tokenizer.json").is_symlink() and not (out / "model.safetensors").is_symlink()
    assert (base / "model.safetensors").read_bytes() == before  # the original is never touched


def test_no_cut_where_the_converter_pads_a_cut_to_the_rows_it_keeps_elsewhere():
    assert vocab_rows.cut_to(vocab_rows.Layout(640, 640)) is None  # the padding listed as [PAD] tokens: loads
    assert vocab_rows.cut_to(vocab_rows.Layout(640, 640, 640)) is None
    assert vocab_rows.cut_to(vocab_rows.Layout(640, 606)) == 606  # Gemma 3's BPE path keeps 606 rows
    assert vocab_rows.cut_to(vocab_rows.Layout(600, 640, 640)) == 600  # LlamaHfVocab lists 600 tokens


def test_the_plan_line_of_a_dry_run_is_read_back():
    from host_training.convert.llama_convert import PLAN_PREFIX

    stderr = ("INFO:hf-to-gguf:Loading model\n" + PLAN_PREFIX
              + json.dumps({"tokens": 640, "rows": {"token_embd.weight": 603}}) + "\nINFO:gguf:Dry run\n")
    assert vocab_rows.Layout.from_plan(stderr) == vocab_rows.Layout(640, 603)
    assert vocab_rows.Layout.from_plan("INFO: nothing\n") is None


def test_the_preflight_refuses_what_no_cut_can_mend(tmp_path, monkeypatch):
    from host_training import preflight as pf
    from host_training.convert import convert_gguf
    from tests.test_preflight import SMOLLM2_135M, fake_base

    base = fake_base(tmp_path / "base", dict(SMOLLM2_135M, vocab_size=640), tokens=600)
    monkeypatch.setattr(convert_gguf, "plan", lambda hf_dir: vocab_rows.Layout(640, 590))
    with pytest.raises(pf.PreflightError, match="uses 600 ids, more than the 590 rows the converter keeps"):
        pf.run(base, quant="Q4_K_M", max_length=512)
    monkeypatch.setattr(convert_gguf, "plan", lambda hf_dir: vocab_rows.Layout(640, 606))
    notes = pf.run(base, quant="Q4_K_M", max_length=512).notes
    assert any("the build converts a copy cut to the 606 rows it keeps" in n for n in notes), notes
    monkeypatch.setattr(convert_gguf, "plan", lambda hf_dir: vocab_rows.Layout(640, 640))
    notes = pf.run(base, quant="Q4_K_M", max_length=512).notes
    assert any("vocabulary padded: 640 embedding rows for 600 tokens" in n for n in notes), notes


@pytest.mark.slow
def test_a_padded_gemma3_builds_its_whole_report(small_data, tmp_path, monkeypatch, capsys):
    """The report's sampled replies too: held-out contexts that open with the persona's turn are
    shaped as training shaped them, which Gemma's template (roles must alternate) needs."""
    import dataclasses

    from host_training.__main__ import main
    from host_training.pipeline import stages

    contexts = [json.loads(line)["messages"] for line in (small_data / "val.jsonl").read_text().splitlines()]
    assert any(c[0]["role"] == "assistant" for c in contexts), "no context opens with the persona: nothing tested"
    base, _, _ = padded_base("gemma3", tmp_path / "base")
    convert = stages.convert
    monkeypatch.setattr(stages, "convert", lambda trained, work, name: convert(
        dataclasses.replace(trained, reference_dir=None), work, name))
    rc = main(["build", "--base", str(base), "--data", str(small_data), "--out", str(tmp_path / "bundle"),
               "--name", "Ada", "--steps", str(STEPS), "--quant", "Q8_0"])
    assert rc == 0, capsys.readouterr().err
    report = (tmp_path / "bundle" / "report.md").read_text()
    assert "Whose voice" in report and "Traceback" not in report
