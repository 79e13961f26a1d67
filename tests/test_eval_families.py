"""`eval` scores a ChatML persona of every family the build fine-tunes (host_training/base/tiny_families.py).

A base with its own template (Gemma 3, Llama 3.2, Phi, Granite) gets ChatML from the build as two
added tokens (`--chat-template chatml`, or a raw base without a template), and has no
<|endoftext|>. `eval` took that token for the mark of a ChatML model and stopped a Gemma persona
with "the model's tokenizer has no <|endoftext|> token: not a ChatML persona model" (issue 49).
Here each family's tiny stand-in is given ChatML as the build gives it, converted as the build
converts it, and scored the way `eval` scores a ChatML bundle; the figure must be the build's
(finetune.ChatFormat's ids through score_gguf_ids), which persona.toml records.
"""

from __future__ import annotations

import pytest

from host_training.base.tiny_families import FAMILIES

pytest.importorskip("llama_cpp")

SYSTEM = "You are Ada, riding a balloon."


@pytest.fixture(scope="module")
def val(tmp_path_factory):
    from host_training.train.tokenizer import load_conversations
    from tests.chatdata import write_chat_dataset

    data = write_chat_dataset(tmp_path_factory.mktemp("data"), n_train=4, n_val=4, seed=0)
    return load_conversations(data / "val.jsonl")


def chatml_gguf(family: str, tmp_path):
    """The family's tiny base with ChatML as `build --chat-template chatml` trains it, as an F32 GGUF,
    and its tokenizer."""
    import torch

    from host_training import finetune
    from host_training.convert.convert_gguf import convert

    base = FAMILIES[family].build(tmp_path / "base")
    model, tok, source, _ = finetune.load_base(base, torch.float32, "chatml")
    assert source == "chatml-added"
    hf = tmp_path / "chatml"
    model.save_pretrained(str(hf))
    finetune.save_tokenizer(tok, base, hf)
    return convert(hf, tmp_path / "model.F32.gguf", "f32"), tok


# Phi-3's SentencePiece puts a space before every piece it encodes: eval's ChatML scorer encodes each
# turn's header and content apart (train.tokenizer.render_ids), the build the rendered text whole, so
# a turn's first word is a token longer in eval. Its figure is near the build's, not equal (below).
DUMMY_PREFIX = {"phi3"}


@pytest.mark.parametrize("family", [f for f in FAMILIES if f not in DUMMY_PREFIX])
def test_a_chatml_persona_of_every_family_is_scored_as_the_build_scored_it(family, val, tmp_path):
    got, built = eval_and_build_figures(family, val, tmp_path)
    assert got["tokens"] == built["tokens"] > 0
    assert got["val_perplexity"] == pytest.approx(built["val_perplexity"], rel=1e-4)


@pytest.mark.parametrize("family", sorted(DUMMY_PREFIX))
def test_a_chatml_persona_with_a_dummy_prefix_is_scored_near_the_build(family, val, tmp_path):
    got, built = eval_and_build_figures(family, val, tmp_path)
    assert 0 < got["tokens"] - built["tokens"] <= got["conversations"]  # a few first words, a token longer
    assert got["val_perplexity"] == pytest.approx(built["val_perplexity"], rel=0.05)


def eval_and_build_figures(family: str, val, tmp_path) -> tuple[dict, dict]:
    from host_training import finetune
    from host_training.evaluate import score_gguf, score_gguf_ids

    gguf, tok = chatml_gguf(family, tmp_path)
    got = score_gguf(gguf, val, SYSTEM, threads=2)  # eval's path for a ChatML bundle
    built = score_gguf_ids(gguf, finetune.to_examples(val, finetune.ChatFormat(tok), SYSTEM, "persona", 2048),
                           threads=2)  # build's path: the ids training used
    return got, built


def test_a_model_without_the_chatml_turn_tokens_is_refused_by_name(tmp_path):
    from host_training.convert.convert_gguf import convert
    from host_training.evaluate import score_gguf

    base = FAMILIES["gemma3"].build(tmp_path / "base")  # its own template: no <|im_start|>
    gguf = convert(base, tmp_path / "model.F32.gguf", "f32")
    with pytest.raises(ValueError, match=r"no <\|im_start\|> token: not a ChatML persona model"):
        score_gguf(gguf, [[{"role": "assistant", "name": "", "content": "hi"}]], SYSTEM)


def test_eval_scores_a_gemma_chatml_bundle(tiny_bundle, chat_data_dir, tmp_path, capsys):
    """The command as the Spanish owner ran it, on a bundle whose GGUF is Gemma-shaped with ChatML
    added (the tiny persona's bundle around it: its ChatML template, system prompt and sampling)."""
    from host_training.__main__ import main
    from host_training.base.base_bundle import write_base_bundle

    gguf, _ = chatml_gguf("gemma3", tmp_path / "gemma")
    bundle = tmp_path / "bundle"
    write_base_bundle(tiny_bundle, bundle, gguf)
    assert main(["eval", str(bundle), "--data", str(chat_data_dir), "--no-report", "--threads", "2"]) == 0
    assert "model.F32.gguf: val perplexity" in capsys.readouterr().out
