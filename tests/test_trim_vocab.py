"""A vocabulary trimmed to the owner's language (host_training/quantize/trim_vocab.py, trimmed.py), on
tiny models built here as the other conversion tests build them: Gemma 3's shape with a
SentencePiece vocabulary (tokenizer.ggml.model "llama": merges by score) and SmolLM2's with a
byte-level BPE ("gpt2": merges by rank, what llama.cpp makes of the pinned Gemma too).

The real trimming runs on each, and llama.cpp itself (llama-cpp-python) reads the result: what the
owner wrote tokenizes into the very same tokens, unseen text into the same text, the kept tokens'
logits are the whole model's, a token whose merge path was cut is caught, and the board rule
counts the smaller vocabulary.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest

from host_training.base import tiny_families as TF
from host_training.base.tiny_models import corpus_lines
from host_training.convert.convert_gguf import convert
from host_training.quantize import trim_vocab as T
from host_training.quantize import trimmed as TR
from stratoecho import boards

llama_cpp = pytest.importorskip("llama_cpp")
gguf = pytest.importorskip("gguf")

FAMILIES = {"gemma3": TF.tiny_gemma3, "smollm2": TF.tiny_smollm2}


def split_corpus() -> tuple[list[str], list[str]]:
    """The sample corpus's lines, even ones as the owner's training text, odd ones held out."""
    lines = [x for x in corpus_lines() if x.strip()]
    return lines[0::2], lines[1::2]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    out = {}
    for name, build in FAMILIES.items():
        d = tmp_path_factory.mktemp(name)
        out[name] = convert(build(d / "hf"), d / "model.F32.gguf", "f32")
    return out


def vocab_of(path: Path) -> T.Vocab:
    return T.read_vocab(gguf.GGUFReader(str(path)))


def trim(path: Path, out: Path, texts: list[str], **kw) -> tuple[T.Kept, Path]:
    kept = T.choose(path, vocab_of(path), texts, **kw)
    return kept, T.write(path, out, kept)


def tokenizer(path: Path):
    return llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)


@pytest.mark.parametrize("family", FAMILIES)
def test_merge_path_splits_as_llama_cpp_does(models, family):
    """The Python merge (llama.cpp's rules, scores or ranks) gives llama.cpp's own tokens, word by word."""
    path = models[family]
    v, llm = vocab_of(path), tokenizer(path)
    words = sorted({w for line in corpus_lines() for w in line.split() if w.isalpha()})[:300]
    for w in words:
        text = (" " + w).replace(" ", T.SPACE) if v.model == "llama" else None
        if text is None:  # byte-level BPE: the word as llama.cpp's pre-tokenizer hands it over
            text = "".join(llm._model.token_get_text(i) for i in llm.tokenize(w.encode(), add_bos=False, special=False))
        final, _ = T.merge_path(text, v)
        want = llm.tokenize((" " + w if v.model == "llama" else w).encode(), add_bos=False, special=False)
        assert [v.by_text.get(p) for p in final] == want, w


@pytest.mark.parametrize("family", FAMILIES)
def test_trimmed_vocabulary_tokenizes_and_computes_as_the_whole_one(models, family, tmp_path):
    path = models[family]
    own, held = split_corpus()
    kept, out = trim(path, tmp_path / "trimmed.gguf", own, language=None)
    whole = len(vocab_of(path))
    assert len(kept.ids) < whole and kept.of == whole
    # the special tokens stay, their ids remapped
    r = gguf.GGUFReader(str(out))
    v = T.read_vocab(r)
    rows = {t.name: t.data.shape[0] for t in r.tensors if t.name in T.ROWS}
    assert len(v) == len(kept.ids) and set(rows.values()) == {len(kept.ids)}
    full_v = vocab_of(path)
    for key, old in full_v.special.items():
        if old < whole:
            assert v.tokens[v.special[key]] == full_v.tokens[old], key
    full, small = tokenizer(path), tokenizer(out)
    assert small.n_vocab() == len(kept.ids)
    # the owner's own text: the very same tokens
    for text in own:
        a = full.tokenize(text.encode(), add_bos=False, special=False)
        assert [kept.ids[i] for i in small.tokenize(text.encode(), add_bos=False, special=False)] == a
    # held-out text: the same text, in as many tokens or more
    c = T.check(path, out, kept, held, special=False)
    assert c.ok, c.message()
    assert c.same_strings == c.texts == len(held)
    assert c.tokens_trimmed >= c.tokens_full and c.positions > 1
    assert c.max_abs_diff <= 1e-4 * c.logit_scale  # same weights: the kept logits are the whole model's
    assert c.cut == [] and c.reachable_tried > 10


def test_a_cut_merge_path_is_caught(models, tmp_path):
    """Leave out one token a kept token's merges pass through: llama.cpp can no longer make the kept
    token from its own text, and the check says which."""
    path = models["gemma3"]
    own, held = split_corpus()
    v = vocab_of(path)
    kept = T.choose(path, v, own)
    chain = None
    for i in kept.ids:  # a kept token whose path passes through another multi-character kept token
        text = v.tokens[i]
        if v.types[i] != T.NORMAL or len(text) < 3:
            continue
        final, made = T.merge_path(text, v)
        inner = [m for m in made[:-1] if len(m) >= 2]
        if final == [text] and inner:
            chain = (text, v.by_text[inner[0]])
            break
    assert chain is not None
    top, dropped = chain
    cut = replace(kept, ids=[i for i in kept.ids if i != dropped])
    out = T.write(path, tmp_path / "cut.gguf", cut)
    missing, tried = T.cut_paths(path, out, cut)
    assert top in [m.replace(" ", T.SPACE) for m in missing] or top.replace(T.SPACE, " ") in missing
    c = T.check(path, out, cut, held, special=False)
    assert not c.ok and "merge path is cut" in c.message()
    # and the complete set has none
    assert T.cut_paths(path, T.write(path, tmp_path / "whole.gguf", kept), kept)[0] == []


def test_a_language_adds_its_words_letters_and_symbols(models):
    path = models["gemma3"]
    v = vocab_of(path)
    forms, n = T.word_forms("de", 200)
    assert n == 200 and " und" in forms and "Und" in forms and "ü" in forms and " ü" in forms
    kept = T.choose(path, v, ["hallo"], language="de", words=200)
    assert kept.words == 200 and kept.sources["words"] > 0 and kept.language == "de"
    assert kept.figures()["kept_tokens"] == len(kept.ids)
    assert "200 commonest de words" in kept.figures()["source"]
    # every byte token stays: any text still tokenizes
    bytes_ = {i for i, t in enumerate(v.tokens) if t.startswith("<0x")}
    assert bytes_ and bytes_ <= set(kept.ids)


def test_the_board_rule_counts_the_smaller_vocabulary(models, tmp_path):
    """model_shape reads the trimmed vocabulary from the GGUF, so the compute buffer (a row of logits
    per token of a batch) shrinks with it; a board that cannot hold the whole vocabulary holds the
    trimmed one, and the payload's budget gives it a longer context."""
    from host_training.quantize.quantizer import model_shape
    from payload.policy.budget import think_budget

    path = models["gemma3"]
    kept, out = trim(path, tmp_path / "trimmed.gguf", split_corpus()[0][:5])
    whole, small = model_shape(path, 256), model_shape(out, 256)
    assert small.n_vocab == len(kept.ids) < whole.n_vocab
    assert small.compute_bytes < whole.compute_bytes and small.kv_cache_bytes == whole.kv_cache_bytes
    size = out.stat().st_size
    need_small, need_whole = size + small.runtime_bytes, size + whole.runtime_bytes
    b = boards.Board("tiny", 0, 0, 1.0, (1.0, 1.0), "test")
    budget = (need_small + need_whole) // 2
    b = replace(b, ram_bytes=budget + b.reserved_bytes)
    assert boards.fits(b, size, small) and not boards.fits(b, size, whole)
    assert boards.longest_context(b, size, small, 256) == 256
    assert (boards.longest_context(b, size, whole, 256) or 0) < 256
    # the payload's rule (payload/policy/budget.py) with each shape
    zero = boards.board("pi-zero-2w")
    big = replace(whole, n_vocab=262_146)
    trimmed_shape = replace(whole, n_vocab=30_000)
    wide = think_budget(zero, 90_000_000, 1.0, context_length=2048, shape=trimmed_shape)
    narrow = think_budget(zero, 90_000_000, 1.0, context_length=2048, shape=big)
    assert wide.fits and wide.n_ctx > narrow.n_ctx


def test_needed_only_where_no_type_of_the_whole_vocabulary_fits(models, monkeypatch):
    path = models["gemma3"]
    assert not TR.needed(path, "pi-zero-2w", 256)  # a tiny model fits every board whole
    tiny = boards.Board("tiny", 64 * boards.MB, 0, 1.0, (1.0, 1.0), "test")
    monkeypatch.setitem(boards.BOARDS, "tiny", replace(tiny, ram_bytes=tiny.reserved_bytes + 1))
    assert TR.needed(path, "tiny", 256)


def test_held_out_tokens_in_the_trimmed_ids_score_per_character(models, tmp_path):
    """The held-out conversations, rendered as training rendered them, re-tokenized for the trimmed
    GGUF: the persona's characters are the same, and where every held-out token was kept the
    trimmed model reads the same tokens and its softmax over fewer tokens can only raise their
    probability."""
    from transformers import AutoTokenizer

    from host_training.evaluate.drift import token_scores
    from host_training.finetune import ChatFormat
    from host_training.train import heldout

    path = models["gemma3"]
    hf = Path(path).parent / "hf"
    fmt = ChatFormat(AutoTokenizer.from_pretrained(str(hf)))
    own, held_lines = split_corpus()
    convs = [[{"role": "user", "name": "", "content": a}, {"role": "assistant", "name": "", "content": b}]
             for a, b in zip(held_lines[0::2][:6], held_lines[1::2][:6])]
    held = heldout.from_chat_format(convs, fmt, None, 256)
    kept, out = trim(path, tmp_path / "t.gguf", own, ids=[t.ids for t in held.texts])  # every held-out token kept
    new = TR.retokenized(held, path, out, 256)
    assert new.n_targets == held.n_targets
    assert [[kept.ids[i] for i in t.ids] for t in new.texts] == [t.ids for t in held.texts]
    ctx = 256
    chars_full = TR.scored_characters(path, held, ctx)
    chars_trim = TR.scored_characters(out, new, ctx)
    assert chars_full == chars_trim and sum(chars_full) > 50
    a, b = token_scores(path, held), token_scores(out, new)
    assert all((y <= x + 1e-4).all() for x, y in zip(a.nll, b.nll))
    bpc = TR.bits_per_character(b.loss * b.tokens, sum(chars_trim))
    assert 0 < bpc <= TR.bits_per_character(a.loss * a.tokens, sum(chars_full)) + 1e-9
    # unseen text: the same persona characters, more tokens
    kept2, out2 = trim(path, tmp_path / "t2.gguf", own[:20], ids=[held.texts[0].ids])  # the template: as training
    new2 = TR.retokenized(held, path, out2, 256)
    assert TR.scored_characters(out2, new2, ctx) == chars_full
    assert sum(len(t.ids) for t in new2.texts) >= sum(len(t.ids) for t in held.texts)
    assert math.isfinite(token_scores(out2, new2).loss)


def test_report_lines_put_the_trimmed_model_beside_the_whole_one():
    fig = {"kept_tokens": 29_000, "of_tokens": 262_146, "source": "x", "board": "pi-zero-2w", "context": 1024,
           "characters": 1134,
           "check": {"texts": 13, "same_strings": 13, "identical": 11, "tokens_full": 700, "tokens_trimmed": 712,
                     "positions": 64, "max_abs_diff": 1e-5, "logit_scale": 30.0, "cut_count": 0,
                     "reachable_tried": 26_000},
           "models": [dict(model="Q4_K_M, whole vocabulary", quant="Q4_K_M", trimmed=False, file_bytes=261_000_000,
                           n_vocab=262_146, tokens=294, val_perplexity=50.0, bits_per_char=1.9,
                           boards={"pi-zero-2w": dict(fits=False, n_ctx=64, need_mb=330, budget_mb=244,
                                                      tokens_per_s=4.2)}),
                      dict(model="Q4_K_M, trimmed (shipped)", quant="Q4_K_M", trimmed=True, file_bytes=90_000_000,
                           n_vocab=29_000, tokens=302, val_perplexity=52.0, bits_per_char=1.95,
                           boards={"pi-zero-2w": dict(fits=True, n_ctx=1024, need_mb=170, budget_mb=244,
                                                      tokens_per_s=11.2)})]}
    text = "\n".join(TR.report_lines(fig))
    assert "## A vocabulary for the board" in text and "does not fit: 330 MB at 64 tokens" in text
    assert "fits: 170 MB at context 1,024, ~11.2 tokens/s" in text and "| 1.900 | 1.950 |" in text
    assert TR.kept_figures({**fig, "models": [dict(fig["models"][0], path="/tmp/x", none=None)]})["models"][0].get(
        "path") is None


@pytest.mark.slow
def test_build_target_trims_and_bundles_the_trimmed_model(tmp_path, small_data, monkeypatch):
    """`build --base --target` where the whole vocabulary cannot fit (forced here: a tiny model fits
    every board): the persona and the untuned base are trimmed alike, --target's candidates are made
    from the trimmed F32 and scored on the trimmed held-out tokens, the shipped GGUF has the kept
    vocabulary, and persona.toml [training.vocab_trim] puts the untrimmed Q4_K_M beside it."""
    import tomllib

    from host_training.__main__ import main
    from host_training.pipeline import bundling
    from stratoecho.bundle import load_bundle

    monkeypatch.setattr(TR, "needed", lambda *a, **k: True)
    monkeypatch.setattr(bundling, "write_report", lambda *a, **k: None)  # the replies: tests of the report
    base = TF.tiny_gemma3(tmp_path / "base")
    out = tmp_path / "bundle"
    rc = main(["build", "--base", str(base), "--data", str(small_data), "--out", str(out), "--name", "Ada",
               "--steps", "2", "--target", "pi4", "--keep-work"])
    assert rc == 0
    manifest = tomllib.loads((out / "persona.toml").read_text())
    trim = manifest["training"]["vocab_trim"]
    assert 0 < trim["kept_tokens"] < trim["of_tokens"] and trim["check"]["ok"]
    assert trim["check"]["same_strings"] == trim["check"]["texts"] > 0 and trim["check"]["cut_count"] == 0
    names = [m["model"] for m in trim["models"]]
    assert names[0] == "Q4_K_M, whole vocabulary" and any("(shipped)" in n for n in names)
    whole, shipped = trim["models"][0], next(m for m in trim["models"] if "(shipped)" in m["model"])
    assert whole["n_vocab"] == trim["of_tokens"] and shipped["n_vocab"] == trim["kept_tokens"]
    assert whole["bits_per_char"] > 0 and shipped["bits_per_char"] > 0 and "path" not in whole
    assert set(whole["boards"]) == {boards.board(b).name for b in boards.TARGETS}
    model = out / manifest["model"]["file"]
    assert tokenizer(model).n_vocab() == trim["kept_tokens"]
    ev = manifest["eval"]
    assert ev["val_perplexity"] > 0 and ev["base_val_perplexity"] > 0  # the base scored on the trimmed tokens too
    text = "\n".join(TR.report_lines(trim))
    assert "## A vocabulary for the board" in text and "pi4-2gb" in text
    load_bundle(out)  # the manifest holds vocab_trim in [training] and every file's sha256 checks
    reply = llama_cpp.Llama(model_path=str(model), n_ctx=128, verbose=False)("Hello", max_tokens=4)
    assert reply["choices"][0]["text"] is not None
