"""`build --base`: LoRA fine-tuning of a (tiny, local) pretrained model, merged, converted, bundled.

Real transformers/peft training on models of ~0.1M parameters (host_training/base/tiny_models.py,
plus a base without any chat template built here), so every step runs in seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from host_training import finetune
from host_training.train.tokenizer import EOT, load_conversations

ROOT = Path(__file__).resolve().parent.parent

LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    " + message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
# Llama-2-chat's template as shipped (system folded into the first [INST], strict alternation).
LLAMA2_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' ' + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"
)

CONV = [
    {"role": "system", "name": "", "content": "You are Ada."},
    {"role": "assistant", "name": "Ada", "content": "morning. the frost is back"},
    {"role": "user", "name": "Noor", "content": "are you alive"},
    {"role": "user", "name": "Sam", "content": "she vanished"},
    {"role": "assistant", "name": "Ada", "content": "alive! on earlies, 0515 alarm"},
]


# ----------------------------------------------------------------------------- tiny bases
def _bpe(specials, lines):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(lines, trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    return tok


def base_without_template(out: Path) -> Path:
    """A Llama whose tokenizer has no chat template and no ChatML tokens (a raw pretrained base)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from host_training.base.tiny_models import corpus_lines

    hf = PreTrainedTokenizerFast(tokenizer_object=_bpe([EOT], corpus_lines()), bos_token=EOT, eos_token=EOT,
                                 pad_token=EOT, clean_up_tokenization_spaces=False)
    hf.save_pretrained(str(out))
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(hf), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      tie_word_embeddings=True, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    LlamaForCausalLM(cfg).save_pretrained(str(out))
    return out


def llama3_tokenizer():
    from transformers import PreTrainedTokenizerFast

    from host_training.base.tiny_models import corpus_lines

    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    return PreTrainedTokenizerFast(tokenizer_object=_bpe(specials, corpus_lines()), bos_token="<|begin_of_text|>",
                                   eos_token="<|eot_id|>", chat_template=LLAMA3_TEMPLATE)


def target_runs(tok, ids, mask) -> list[str]:
    """The decoded runs of consecutive target tokens."""
    runs, cur = [], []
    for i, t in zip(ids, mask, strict=True):
        if t:
            cur.append(i)
        elif cur:
            runs.append(tok.decode(cur))
            cur = []
    if cur:
        runs.append(tok.decode(cur))
    return runs


# ----------------------------------------------------------------------------- loss masks
def test_mask_chatml(tmp_path):
    from transformers import AutoTokenizer

    from host_training.base.tiny_models import tiny_llama_bpe

    tok = AutoTokenizer.from_pretrained(str(tiny_llama_bpe(tmp_path / "b")))
    fmt = finetune.ChatFormat(tok)
    ids, mask = fmt.ids_and_targets(CONV)
    assert target_runs(tok, ids, mask) == ["morning. the frost is back<|im_end|>", "alive! on earlies, 0515 alarm<|im_end|>"]
    assert tok.decode(ids) == tok.apply_chat_template(CONV, tokenize=False)  # ChatML keeps both user turns
    assert fmt.end_of_turn() == "<|im_end|>"
    # "train": "all" examples: the other speakers' words are targets too; --loss all: every token
    everyone = [dict(m, train="all") for m in CONV]
    assert len(target_runs(tok, *fmt.ids_and_targets(everyone))) == 4
    assert all(fmt.ids_and_targets(CONV, loss="all")[1])


def test_mask_llama3_style():
    tok = llama3_tokenizer()
    fmt = finetune.ChatFormat(tok)
    ids, mask = fmt.ids_and_targets(CONV)
    assert tok.decode(ids[:1]) == "<|begin_of_text|>"
    assert target_runs(tok, ids, mask) == ["morning. the frost is back<|eot_id|>", "alive! on earlies, 0515 alarm<|eot_id|>"]
    assert fmt.end_of_turn() == "<|eot_id|>"


def test_mask_llama2_inst_sentencepiece(tmp_path):
    """[INST] template on a SentencePiece tokenizer: strict alternation (two users in a row, the
    persona speaking first) is fitted, and the persona's words end with </s>."""
    from transformers import AutoTokenizer

    from host_training.base.tiny_models import tiny_llama_sentencepiece

    tok = AutoTokenizer.from_pretrained(str(tiny_llama_sentencepiece(tmp_path / "sp")))
    tok.chat_template = LLAMA2_TEMPLATE
    with pytest.raises(Exception, match="alternate"):
        tok.apply_chat_template(CONV, tokenize=False)
    fmt = finetune.ChatFormat(tok)
    ids, mask = fmt.ids_and_targets(CONV)
    runs = [r.strip() for r in target_runs(tok, ids, mask)]
    assert runs == ["morning. the frost is back </s>", "alive! on earlies, 0515 alarm </s>"]
    text = tok.decode(ids)
    assert "[INST] <<SYS>>\nYou are Ada.\n<</SYS>>" in text and "are you alive\nshe vanished [/INST]" in text
    assert fmt.end_of_turn() == "</s>"


# ----------------------------------------------------------------------------- training, resume, merge
def _stop_at(step: int):
    from transformers import TrainerCallback

    class Stop(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step >= step:
                control.should_training_stop = True

    return Stop()


def _adapter(work: Path):
    from safetensors.torch import load_file

    return load_file(str(work / "adapter" / "adapter_model.safetensors"))


def test_resume_continues_from_checkpoint(tmp_path, corpus_data_dir):
    """An interrupted run resumed from its checkpoint ends where an uninterrupted one does."""
    import torch

    from host_training.base.tiny_models import tiny_llama_bpe

    base = tiny_llama_bpe(tmp_path / "base")
    train = load_conversations(corpus_data_dir / "train.jsonl")[:40]
    val = load_conversations(corpus_data_dir / "val.jsonl")[:4]
    cfg = dict(steps=4, save_steps=2, eval_steps=2, batch_size=4, threads=1)  # runs compared: one arithmetic
    whole = finetune.train(finetune.FinetuneConfig(**cfg), base, train, val, tmp_path / "whole", "You are Ada.")
    assert whole.steps == 4 and whole.template_source == "base" and whole.stop[0] == "<|im_end|>"
    assert whole.merge_max_abs_diff <= whole.merge_tolerance

    part = tmp_path / "part"
    finetune.train(finetune.FinetuneConfig(**cfg), base, train, val, part, "You are Ada.", callbacks=[_stop_at(2)])
    assert sorted(p.name for p in (part / "checkpoints").iterdir()) == ["checkpoint-2"]
    again = finetune.train(finetune.FinetuneConfig(**cfg, resume=True), base, train, val, part, "You are Ada.")
    assert again.steps == 4
    assert [s for s, _ in again.curve["train"]] == [1, 2, 3, 4]  # steps 1-2 come from the checkpoint's log
    a, b = _adapter(tmp_path / "whole"), _adapter(part)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    with pytest.raises(finetune.FinetuneError, match="no checkpoint"):
        finetune.train(finetune.FinetuneConfig(**cfg, resume=True), base, train, val, tmp_path / "none", None)


# ----------------------------------------------------------------------------- the whole build
def _build(base: Path, data: Path, out: Path, *extra: str):
    from host_training.__main__ import main

    rc = main(["build", "--base", str(base), "--data", str(data), "--out", str(out), "--name", "Ada",
               "--steps", "16", "--keep-work", *extra])
    assert rc == 0
    return tomllib.loads((out / "persona.toml").read_text()), json.loads((out / "eval.json").read_text())


@pytest.mark.slow
def test_build_base_without_template(tmp_path, corpus_data_dir):
    """A raw base (no chat template, no ChatML tokens): ChatML is added, trained, in GGUF and bundle."""
    import gguf
    import llama_cpp

    from stratoecho.bundle import load_bundle

    base = base_without_template(tmp_path / "raw")
    out = tmp_path / "bundle"
    manifest, report = _build(base, corpus_data_dir, out)
    t = manifest["training"]
    assert t["method"] == "lora" and t["preset"] == "tiny" and t["chat_template_source"] == "chatml-added"
    # training lowered the train loss and the held-out loss; the merge matched base+adapter
    curve = report["training_curve"]
    assert curve["train"][-1][1] < curve["train"][0][1]
    assert curve["eval"][-1][1] < curve["eval"][0][1]
    assert report["merge_check"]["max_abs_logit_diff"] <= report["merge_check"]["tolerance"]
    # the preflight ran first, said which template the build would use, and is kept in eval.json
    pre = report["preflight"]
    assert pre["chat_template"]["source"] == "none" and "ChatML" in pre["chat_template"]["note"]
    assert pre["context"] == manifest["model"]["context_length"] and pre["memory"][0]["verdict"] == "fits"
    # the merged model in transformers and its F32 GGUF in llama.cpp agree, the template's texts tokenize alike
    check = report["conversion_check"]
    assert check["ok"] and check["positions"] > 0 and check["texts"] > 0 and check["texts_differing"] == 0
    assert report["quantization"]["imatrix"]["entries"] > 0 and report["quantization"]["drift"]["tokens"] > 0
    # the untuned base vs the tuned model, same quantization, same persona tokens
    e = manifest["eval"]
    assert e["val_perplexity"] < e["base_val_perplexity"]
    assert report["transformers"]["tuned_val_loss"] < report["transformers"]["base_val_loss"]
    # the template and stop strings travel: persona.toml == GGUF == ChatML; the model stops on <|im_end|>
    p = manifest["persona"]
    reader = gguf.GGUFReader(str(out / manifest["model"]["file"]))
    assert reader.fields["tokenizer.chat_template"].contents() == p["chat_template"]
    assert p["stop"][0] == "<|im_end|>"
    bundle = load_bundle(out)
    prompt = bundle.render_prompt([{"role": "system", "content": p["system_prompt"]},
                                   {"role": "user", "content": "How cold is it?"}])
    llm = llama_cpp.Llama(model_path=str(bundle.model_path), n_ctx=256, verbose=False)
    text = llm.create_completion(prompt, max_tokens=8, temperature=0.0, stop=p["stop"])["choices"][0]["text"]
    assert isinstance(text, str)
    assert llm.tokenize(b"<|im_end|>", add_bos=False, special=True) != llm.tokenize(b"<|im_end|>", add_bos=False)
    llm.close()


# ----------------------------------------------------------------------------- several processes
@pytest.mark.slow
def test_two_cpu_processes(tmp_path, corpus_data_dir):
    """Two CPU processes (torchrun, gloo; data-parallel): both train, the main one builds the bundle."""
    from host_training.base.tiny_models import tiny_llama_bpe

    base = tiny_llama_bpe(tmp_path / "base")
    out = tmp_path / "bundle"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    # torchrun is what `accelerate launch` runs underneath; on CPU it gives gloo process groups
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "host_training", "build", "--base", str(base), "--data", str(corpus_data_dir),
           "--out", str(out), "--steps", "4", "--quant", "Q8_0"]
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    manifest = tomllib.loads((out / "persona.toml").read_text())
    assert manifest["training"]["processes"] == 2 and manifest["training"]["steps"] == 4


def test_mask_phi_template_closing_with_eos(tmp_path):
    """Phi-3's and Phi-4-mini's templates end every rendering with the EOS unless a generation
    prompt follows: the persona's turns are still found, and a turn ends with <|end|>."""
    from transformers import AutoTokenizer

    from host_training.base.tiny_families import tiny_phi4_mini

    tok = AutoTokenizer.from_pretrained(str(tiny_phi4_mini(tmp_path / "phi")))
    fmt = finetune.ChatFormat(tok)
    ids, mask = fmt.ids_and_targets(CONV)
    assert target_runs(tok, ids, mask) == ["morning. the frost is back<|end|>", "alive! on earlies, 0515 alarm<|end|>"]
    assert tok.decode(ids).endswith("<|end|><|endoftext|>")  # the closing EOS is trained on as context only
    assert fmt.end_of_turn() == "<|end|>"


def test_a_raw_base_whose_tokenizer_puts_a_bos_first_trains_and_is_scored_with_it(tmp_path, small_data):
    """Gemma 3 270M pretrained: no chat template, a tokenizer that puts <bos> first. ChatML is
    added; every conversation trained and scored starts with the BOS, as llama.cpp starts every
    prompt on the Pi, and llama.cpp's held-out loss is transformers' on the same tokens."""
    import gguf
    from transformers import AutoTokenizer

    from host_training.base.tiny_families import tiny_gemma3
    from host_training.finetune import ChatFormat

    base = tiny_gemma3(tmp_path / "gemma")
    cfg_path = base / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.pop("chat_template", None)  # a raw base, as the pinned pretrained Gemma comes
    cfg_path.write_text(json.dumps(cfg))
    (base / "chat_template.jinja").unlink(missing_ok=True)
    tok = AutoTokenizer.from_pretrained(str(base))
    assert not tok.chat_template
    fmt = ChatFormat(tok)
    tok.chat_template = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    ids, target = fmt.ids_and_targets([{"role": "user", "content": "hallo"}, {"role": "assistant", "content": "na du"}])
    assert ids[0] == tok.bos_token_id == fmt.bos_id and ids[1] != tok.bos_token_id and target[0] is False
    out = tmp_path / "bundle"
    manifest, report = _build(base, small_data, out, "--quant", "Q8_0")
    assert manifest["training"]["chat_template_source"] == "chatml-added" and manifest["persona"]["bos_token"] == ""
    reader = gguf.GGUFReader(str(out / "work" / "model.F32.gguf"))
    assert bool(reader.fields["tokenizer.ggml.add_bos_token"].contents()) is True
    assert report["conversion_check"]["ok"]
    # The same persona tokens, BOS first on both sides: llama.cpp's F32 loss is transformers'.
    assert report["f32"]["val_loss"] == pytest.approx(report["transformers"]["tuned_val_loss"], rel=1e-3)
    assert report["f32"]["tokens"] == report["transformers"]["tokens"]
