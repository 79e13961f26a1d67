"""The model families people fly on a Pi, each as a tiny random checkpoint of its exact shape.

`build --base` takes any of these (downloaded) models; the tests and `make bench` cannot
download one, so for each family this module builds a tiny stand-in locally with the real
model's architecture class and configuration keys, a tokenizer trained on the sample corpus
with the family's normalizer / pre-tokenizer / model options, its special tokens at their
places, its `tokenizer_class` and its chat template (text-only parts; tool calling left out):

  family      real model (what users fly)            HF class            GGUF arch  tokenizer
  smollm2     SmolLM2-135M/360M-Instruct             LlamaForCausalLM    llama      BPE, Digits + ByteLevel
  llama3.2    Llama-3.2-1B-Instruct                  LlamaForCausalLM    llama      BPE, Llama 3 split
  qwen2.5     Qwen2.5-0.5B-Instruct                  Qwen2ForCausalLM    qwen2      BPE, Qwen2 split, NFC
  qwen3       Qwen3-0.6B                             Qwen3ForCausalLM    qwen3      BPE, Qwen2 split, NFC
  gemma3      gemma-3-270m-it                        Gemma3ForCausalLM   gemma3     SentencePiece, no dummy prefix
  phi3        Phi-3-mini / Phi-3.5-mini-instruct      Phi3ForCausalLM     phi3       SentencePiece (Llama 2's)
  phi4-mini   Phi-4-mini-instruct                    Phi3ForCausalLM     phi3       BPE, GPT-4o split
  lfm2        LFM2-350M                              Lfm2ForCausalLM     lfm2       BPE, Llama 3 split
  granite3    granite-3.x-instruct (2B)              GraniteForCausalLM  granite    BPE, StarCoder's (Digits + ByteLevel)

What each tiny model keeps of its family (what a converter or runtime could get wrong):
SmolLM2 tied embeddings, rope base 1e5; Llama 3.2 `rope_scaling` llama3 (factor 32, low 1,
high 4, original context 8192: its frequency factors go into a rope_freqs tensor), tied, BOS
added by the tokenizer, the header/<|eot_id|> template; Qwen2.5 q/k/v biases, a vocabulary
padded past the tokenizer; Qwen3 q_norm/k_norm, no biases, head_dim 32 set apart from
hidden/heads (16), <think> tokens that are added but not special; Gemma 3 five
sliding-window layers (window 8, so the tests' texts cross it) then a global one, separate
rope bases, head_dim 32 = query_pre_attn_scalar, one key/value head, norm weights stored
minus one, embeddings scaled by sqrt(hidden), GELU, BOS added; Phi-3 fused qkv_proj and
gate_up_proj, untied, added tokens past the SentencePiece vocabulary that strip the
whitespace after them, a padded vocabulary, a template that closes with the EOS; Phi-4-mini
partial rotary (0.75) with LongRoPE factors and attention factor, GQA, tied; LFM2
short-convolution layers beside attention layers, its FFN size rule, q/k layernorms, BOS;
Granite 3 its four multipliers (embeddings x12, attention by 1/head_dim, residuals x0.22,
logits / 8), tied, StarCoder's special tokens first and the role tokens after the
vocabulary, <|end_of_text|> as BOS, EOS and end of turn, no BOS added.

Sizes: hidden 64, 2 layers (LFM2: a convolution layer then an attention layer; Gemma 3: 6,
its window pattern), 4 query heads, a few hundred tokens of vocabulary: each builds in well
under a second. Same arguments, same bytes (tokenizers trained single-threaded, weights
from a seeded generator; see tiny_models).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..convert import pretokenizers as P
from ..train import tokenizer as T
from .tiny_models import (
    BPE_VOCAB,
    INIT_STD,
    SHAPE,
    SP_VOCAB,
    _pad,
    _save_model,
    corpus_lines,
    sentencepiece_tokenizer_json,
    tiny_qwen2,
    train_sentencepiece,
)

# ----------------------------------------------------------------------------- chat templates
# Each family's own template, text-only (no tools, no images, no dates from the clock).
SMOLLM2_TEMPLATE = (  # SmolLM2-Instruct: ChatML with a default system prompt
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
LLAMA32_TEMPLATE = (  # Llama 3.2 Instruct without tools, its date line fixed
    "{{- bos_token }}{%- if messages[0]['role'] == 'system' %}"
    "{%- set system_message = messages[0]['content']|trim %}{%- set messages = messages[1:] %}"
    "{%- else %}{%- set system_message = '' %}{%- endif %}"
    "{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' }}"
    "{{- 'Cutting Knowledge Date: December 2023\\nToday Date: 26 Jul 2024\\n\\n' }}"
    "{{- system_message }}{{- '<|eot_id|>' }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)
QWEN3_TEMPLATE = (  # Qwen3: ChatML; enable_thinking=false opens the answer with an empty think block
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}"
    "{%- endif %}"
)
GEMMA3_TEMPLATE = (  # gemma-3-it: the system prompt opens the first user turn; "model" answers
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}{%- set first_user_prefix = '' -%}{%- set loop_messages = messages -%}{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{%- endif -%}"
    "{%- if (message['role'] == 'assistant') -%}{%- set role = 'model' -%}{%- else -%}"
    "{%- set role = message['role'] -%}{%- endif -%}"
    "{{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else '') }}"
    "{{ message['content'] | trim }}{{ '<end_of_turn>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\\n' }}{%- endif -%}"
)
PHI3_TEMPLATE = (  # Phi-3.5-mini / Phi-3-mini-128k-instruct: role tokens strip what follows them
    "{% for message in messages %}{% if message['role'] == 'system' and message['content'] %}"
    "{{'<|system|>' + message['content'] + '<|end|>'}}{% elif message['role'] == 'user' %}"
    "{{'<|user|>' + message['content'] + '<|end|>'}}{% elif message['role'] == 'assistant' %}"
    "{{'<|assistant|>' + message['content'] + '<|end|>'}}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% else %}{{ eos_token }}{% endif %}"
)
PHI4_MINI_TEMPLATE = (  # Phi-4-mini-instruct without tools: no newline after the role tag
    "{% for message in messages %}{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>' }}{% else %}{{ eos_token }}{% endif %}"
)
GRANITE3_TEMPLATE = (  # granite-3.0-instruct without tools: role tags, every turn closed by the EOS
    "{%- for message in messages %}"
    "{%- if message['role'] in ('system', 'user', 'assistant') %}"
    "{{- '<|start_of_role|>' + message['role'] + '<|end_of_role|>' + message['content'] + '<|end_of_text|>\\n' }}"
    "{%- endif %}"
    "{%- if loop.last and add_generation_prompt %}{{- '<|start_of_role|>assistant<|end_of_role|>' }}{%- endif %}"
    "{%- endfor %}"
)
LFM2_TEMPLATE = (  # LFM2: ChatML after the BOS
    "{{- bos_token -}}{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' -}}"
    "{%- endfor -%}{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


# ----------------------------------------------------------------------------- tokenizers
def byte_level_bpe(pre: str, specials_first: list[str], specials_after: list[str] = (), *,
                   normalizer: str | None = None, ignore_merges: bool = False, vocab_size: int = BPE_VOCAB,
                   not_special: list[str] = ()):
    """A byte-level BPE `tokenizers.Tokenizer` trained on the corpus with llama.cpp pre-tokenizer
    `pre`'s declared form: "gpt-2" (ByteLevel with its regex), "smollm" (Digits, then ByteLevel)
    or a Split regex of pretokenizers.SPLIT_REGEXES followed by ByteLevel without regex.
    `specials_first` take ids 0.. (SmolLM2, LFM2), `specials_after` follow the learned
    vocabulary (Llama 3, Qwen, Phi-4); `not_special` are added after those, as plain added
    tokens (Qwen3's <think>). `ignore_merges`: a word that is a token stays one (Llama 3)."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=pre in (P.GPT2, "smollm"))
    tok = Tokenizer(models.BPE())
    if normalizer == "NFC":
        tok.normalizer = normalizers.NFC()
    if pre == P.GPT2:
        tok.pre_tokenizer = byte_level
    elif pre == "smollm":
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    else:
        split = pre_tokenizers.Split(Regex(P.SPLIT_REGEXES[pre]), behavior="isolated", invert=False)
        tok.pre_tokenizer = pre_tokenizers.Sequence([split, byte_level])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                                  special_tokens=list(specials_first),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus_lines(), trainer)
    if ignore_merges:
        spec = json.loads(tok.to_str())
        spec["model"]["ignore_merges"] = True
        tok = Tokenizer.from_str(json.dumps(spec))
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials_after])
    tok.add_tokens([AddedToken(s, special=False, normalized=False) for s in not_special])
    return tok


def _save_hf_tokenizer(tok, out: Path, tokenizer_class: str, chat_template: str, **fields) -> None:
    """tokenizer.json as built, tokenizer_config.json naming the family's `tokenizer_class`
    (what transformers instantiates: see `tokenizer.load_tokenizer`) and its template."""
    from transformers import PreTrainedTokenizerFast

    hf = PreTrainedTokenizerFast(tokenizer_object=tok, chat_template=chat_template, clean_up_tokenization_spaces=False,
                                 model_max_length=SHAPE["max_position_embeddings"], **fields)
    hf.save_pretrained(str(out))
    _set_tokenizer_class(out, tokenizer_class)


def _set_tokenizer_class(out: Path, tokenizer_class: str) -> None:
    path = out / "tokenizer_config.json"
    cfg = json.loads(path.read_text(encoding="utf-8"))
    cfg["tokenizer_class"] = tokenizer_class
    path.write_text(json.dumps(cfg, ensure_ascii=False, indent=2), encoding="utf-8")


def _bos_processor(bos: str, bos_id: int):
    """The post-processor of a tokenizer that puts its BOS before every text (Llama 3, LFM2)."""
    from tokenizers import processors

    return processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, bos_id)])


def _ids(tok, *names: str) -> list[int]:
    return [tok.token_to_id(n) for n in names]


# ----------------------------------------------------------------------------- the families
def tiny_smollm2(out_dir: str | Path, seed: int = 0) -> Path:
    """SmolLM2-135M-Instruct's shape: Llama, tied, rope base 1e5; <|endoftext|> <|im_start|>
    <|im_end|> at ids 0-2, digits split one by one (llama.cpp "smollm"), GPT2Tokenizer class."""
    from transformers import LlamaConfig, LlamaForCausalLM

    out = _mkdir(out_dir)
    tok = byte_level_bpe("smollm", [T.EOT, T.IM_START, T.IM_END])
    _save_hf_tokenizer(tok, out, "GPT2Tokenizer", SMOLLM2_TEMPLATE, bos_token=T.IM_START, eos_token=T.IM_END,
                       pad_token=T.IM_END, unk_token=T.EOT)
    eot, bos, eos = _ids(tok, T.EOT, T.IM_START, T.IM_END)
    cfg = LlamaConfig(vocab_size=tok.get_vocab_size(), rms_norm_eps=1e-5, initializer_range=INIT_STD,
                      rope_theta=100_000.0, bos_token_id=bos, eos_token_id=eos, pad_token_id=eos,
                      tie_word_embeddings=True, **SHAPE)
    _save_model(LlamaForCausalLM, cfg, out, seed)
    return out


LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                   "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>", "<|reserved_special_token_2|>",
                   "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>", "<|python_tag|>"]


def tiny_llama32(out_dir: str | Path, seed: int = 0) -> Path:
    """Llama-3.2-1B-Instruct's shape: Llama with llama3 rope scaling, tied; the Llama 3 split
    (llama.cpp "llama-bpe") with ignore_merges, its special tokens after the vocabulary, BOS
    added by the tokenizer, the header template ending turns with <|eot_id|>."""
    from transformers import LlamaConfig, LlamaForCausalLM

    out = _mkdir(out_dir)
    tok = byte_level_bpe("llama-bpe", [], LLAMA3_SPECIALS, ignore_merges=True)
    bos, eot_text, eot = _ids(tok, "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>")
    tok.post_processor = _bos_processor("<|begin_of_text|>", bos)
    _save_hf_tokenizer(tok, out, "PreTrainedTokenizerFast", LLAMA32_TEMPLATE, bos_token="<|begin_of_text|>",
                       eos_token="<|eot_id|>")
    rope = dict(rope_type="llama3", rope_theta=500_000.0, factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0,
                original_max_position_embeddings=8192)
    cfg = LlamaConfig(vocab_size=tok.get_vocab_size(), rms_norm_eps=1e-5, initializer_range=INIT_STD,
                      rope_parameters=rope, bos_token_id=bos, eos_token_id=[eot_text, eot], tie_word_embeddings=True,
                      **SHAPE)
    _save_model(LlamaForCausalLM, cfg, out, seed)
    return out


def tiny_qwen25(out_dir: str | Path, seed: int = 0) -> Path:
    """Qwen2.5-0.5B-Instruct's shape: tiny_models.tiny_qwen2 with Qwen2Tokenizer as its class."""
    out = tiny_qwen2(out_dir, seed)
    _set_tokenizer_class(out, "Qwen2Tokenizer")
    return out


def tiny_qwen3(out_dir: str | Path, seed: int = 0) -> Path:
    """Qwen3-0.6B's shape: q_norm/k_norm, no biases, head_dim 32 (not hidden/heads), tied;
    Qwen2's tokenizer layout (llama.cpp "qwen2") with <think> </think> added, not special."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    out = _mkdir(out_dir)
    tok = byte_level_bpe("qwen2", [], T.SPECIAL_TOKENS, normalizer="NFC", not_special=["<think>", "</think>"])
    _save_hf_tokenizer(tok, out, "Qwen2Tokenizer", QWEN3_TEMPLATE, bos_token=None, eos_token=T.IM_END,
                       pad_token=T.EOT)
    eot, eos = _ids(tok, T.EOT, T.IM_END)
    cfg = Qwen3Config(vocab_size=tok.get_vocab_size(), head_dim=32, rms_norm_eps=1e-6, initializer_range=INIT_STD,
                      rope_theta=1_000_000.0, attention_bias=False, use_sliding_window=False,
                      bos_token_id=eot, eos_token_id=eos, pad_token_id=eot, tie_word_embeddings=True, **SHAPE)
    _save_model(Qwen3ForCausalLM, cfg, out, seed)
    return out


GEMMA_TURNS = ("<start_of_turn>", "<end_of_turn>")


def tiny_gemma3(out_dir: str | Path, seed: int = 0) -> Path:
    """gemma-3-270m-it's shape: Gemma3ForCausalLM (text only) with five sliding-window layers
    (window 8) then a global one, local rope base 1e4 and global 1e6, head_dim 32 = query_pre_attn_scalar,
    tied; a SentencePiece BPE without dummy prefix (<pad> <eos> <bos> <unk> = 0 1 2 3, the turn
    markers as pieces) in tokenizer.model and as tokenizer.json, GemmaTokenizer class, BOS added."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    out = _mkdir(out_dir)
    sp_model = train_sentencepiece(corpus_lines(), dummy_prefix=False, ids=(3, 2, 1, 0),
                                   control=("<mask>",), user_defined=GEMMA_TURNS)
    (out / "tokenizer.model").write_bytes(sp_model)
    tj = sentencepiece_tokenizer_json(sp_model, [], dummy_prefix=False, bos="<bos>", user_defined=GEMMA_TURNS)
    (out / "tokenizer.json").write_text(json.dumps(tj, ensure_ascii=False, indent=1), encoding="utf-8")
    _write_config(out, tj, "GemmaTokenizer", GEMMA3_TEMPLATE, {
        "bos_token": "<bos>", "eos_token": "<eos>", "unk_token": "<unk>", "pad_token": "<pad>",
        "mask_token": "<mask>", "add_bos_token": True, "add_eos_token": False})
    # 4 query heads sharing one key/value head as Gemma-3-270M; five sliding-window layers then
    # a global one, Gemma 3's pattern, which llama.cpp assumes (the converter writes the window,
    # not the pattern): 6 layers, as few as show it.
    shape = {**SHAPE, "num_key_value_heads": 1, "num_hidden_layers": 6}
    cfg = Gemma3TextConfig(
        vocab_size=SP_VOCAB, head_dim=32, query_pre_attn_scalar=32, sliding_window=8,
        layer_types=["sliding_attention"] * 5 + ["full_attention"], rms_norm_eps=1e-6, initializer_range=INIT_STD,
        rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 1_000_000.0},
                         "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0}},
        pad_token_id=0, eos_token_id=[1, tj_id(tj, "<end_of_turn>")], bos_token_id=2, tie_word_embeddings=True,
        **shape)
    cfg.architectures = ["Gemma3ForCausalLM"]
    _save_model(Gemma3ForCausalLM, cfg, out, seed)
    return out


PHI3_ADDED = ["<|endoftext|>", "<|assistant|>", "<|placeholder1|>", "<|placeholder2|>", "<|placeholder3|>",
              "<|placeholder4|>", "<|system|>", "<|end|>", "<|placeholder5|>", "<|placeholder6|>", "<|user|>"]


def tiny_phi3(out_dir: str | Path, seed: int = 0) -> Path:
    """Phi-3(.5)-mini-instruct's shape: fused qkv_proj / gate_up_proj, 4 heads without GQA,
    untied, Phi-3-mini-4k's sliding window of 2047 (llama.cpp ignores it: its Phi-3 runs full
    attention, the same below 2048 tokens), its vocabulary padded to a multiple of 64;
    Llama 2's SentencePiece with Phi-3's tokens added after it, as its tokenizer files have
    them: the role and turn tokens strip the whitespace after them (rstrip; llama.cpp does the
    same for a GGUF whose general.name says phi-3), </s> is not special, <|endoftext|> is the
    EOS, <|end|> ends a turn; LlamaTokenizer class (transformers 5 loads Phi-3's tokenizer.json
    as written whatever the class), no BOS added."""
    from transformers import Phi3Config, Phi3ForCausalLM

    out = _mkdir(out_dir)
    sp_model = train_sentencepiece(corpus_lines())
    (out / "tokenizer.model").write_bytes(sp_model)
    tj = sentencepiece_tokenizer_json(sp_model, PHI3_ADDED)
    tj["post_processor"] = None  # add_bos_token false
    for t in tj["added_tokens"]:
        t["rstrip"] = t["content"] not in ("<unk>", "<s>", "<|endoftext|>")
        t["special"] = t["content"] != "</s>"
    (out / "tokenizer.json").write_text(json.dumps(tj, ensure_ascii=False, indent=1), encoding="utf-8")
    _write_config(out, tj, "LlamaTokenizer", PHI3_TEMPLATE, {
        "bos_token": "<s>", "eos_token": "<|endoftext|>", "unk_token": "<unk>", "pad_token": "<|endoftext|>",
        "add_bos_token": False, "add_eos_token": False, "legacy": False})
    eos = tj_id(tj, "<|endoftext|>")
    cfg = Phi3Config(vocab_size=_pad(SP_VOCAB + len(PHI3_ADDED), 64), rms_norm_eps=1e-5,
                     initializer_range=INIT_STD, rope_parameters={"rope_type": "default", "rope_theta": 10_000.0},
                     original_max_position_embeddings=SHAPE["max_position_embeddings"], sliding_window=2047,
                     bos_token_id=1, eos_token_id=eos, pad_token_id=eos, tie_word_embeddings=False,
                     **{**SHAPE, "num_key_value_heads": 4})
    _save_model(Phi3ForCausalLM, cfg, out, seed)
    return out


PHI4_SPECIALS = ["<|endoftext|>", "<|assistant|>", "<|end|>", "<|system|>", "<|user|>", "<|tool|>", "<|/tool|>"]


def tiny_phi4_mini(out_dir: str | Path, seed: int = 0) -> Path:
    """Phi-4-mini-instruct's shape: Phi3ForCausalLM with partial rotary 0.75, LongRoPE (short
    and long factors, attention factor from a context 4x the original), GQA, tied; a GPT-4o
    split BPE (llama.cpp "gpt-4o"), GPT2Tokenizer class, <|endoftext|> as BOS, EOS and pad."""
    import random

    from transformers import Phi3Config, Phi3ForCausalLM

    out = _mkdir(out_dir)
    tok = byte_level_bpe("gpt-4o", [], PHI4_SPECIALS)
    _save_hf_tokenizer(tok, out, "GPT2Tokenizer", PHI4_MINI_TEMPLATE, bos_token="<|endoftext|>",
                       eos_token="<|endoftext|>", pad_token="<|endoftext|>", unk_token="<|endoftext|>")
    (eot,) = _ids(tok, "<|endoftext|>")
    n_rot = int(SHAPE["hidden_size"] // SHAPE["num_attention_heads"] * 0.75) // 2
    rnd = random.Random(seed)
    rope = dict(rope_type="longrope", rope_theta=10_000.0, partial_rotary_factor=0.75,
                short_factor=[round(rnd.uniform(1.0, 3.0), 3) for _ in range(n_rot)],
                long_factor=[round(rnd.uniform(1.0, 40.0), 3) for _ in range(n_rot)],
                original_max_position_embeddings=SHAPE["max_position_embeddings"])
    cfg = Phi3Config(vocab_size=_pad(tok.get_vocab_size(), 64), rms_norm_eps=1e-5, initializer_range=INIT_STD,
                     rope_parameters=rope, original_max_position_embeddings=SHAPE["max_position_embeddings"],
                     partial_rotary_factor=0.75, sliding_window=4 * SHAPE["max_position_embeddings"],
                     bos_token_id=eot, eos_token_id=eot, pad_token_id=eot, tie_word_embeddings=True,
                     **{**SHAPE, "max_position_embeddings": 4 * SHAPE["max_position_embeddings"]})
    _save_model(Phi3ForCausalLM, cfg, out, seed)
    return out


LFM2_SPECIALS = ["<|pad|>", "<|startoftext|>", "<|endoftext|>", "<|fim_pre|>", "<|fim_mid|>", "<|fim_suf|>",
                 T.IM_START, T.IM_END]


def tiny_lfm2(out_dir: str | Path, seed: int = 0) -> Path:
    """LFM2-350M's shape: a short-convolution layer then an attention layer (LFM2 interleaves
    them), FFN size by its auto-adjust rule, tied; a Llama 3 split BPE with LFM2's special
    tokens first (<|im_start|>/<|im_end|> at 6/7), the BOS added by the tokenizer (the
    template writes it too, as Llama 3's does), ChatML after it."""
    from transformers import Lfm2Config, Lfm2ForCausalLM

    out = _mkdir(out_dir)
    tok = byte_level_bpe("llama-bpe", LFM2_SPECIALS, ignore_merges=True)
    pad, bos, eos = _ids(tok, "<|pad|>", "<|startoftext|>", T.IM_END)
    tok.post_processor = _bos_processor("<|startoftext|>", bos)
    _save_hf_tokenizer(tok, out, "PreTrainedTokenizerFast", LFM2_TEMPLATE, bos_token="<|startoftext|>",
                       eos_token=T.IM_END, pad_token="<|pad|>")
    shape = {k: v for k, v in SHAPE.items() if k != "intermediate_size"}
    cfg = Lfm2Config(vocab_size=tok.get_vocab_size(), intermediate_size=192, block_multiple_of=64,
                     block_ffn_dim_multiplier=1.0, block_auto_adjust_ff_dim=True, conv_L_cache=3,
                     layer_types=["conv", "full_attention"], norm_eps=1e-5, initializer_range=INIT_STD,
                     rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
                     pad_token_id=pad, bos_token_id=bos, eos_token_id=eos, tie_word_embeddings=True, **shape)
    _save_model(Lfm2ForCausalLM, cfg, out, seed)
    return out


# StarCoder's special tokens, at ids 0.. in Granite 3's tokenizer; its role tokens follow the vocabulary
GRANITE_SPECIALS = ["<|end_of_text|>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>", "<filename>",
                    "<gh_stars>", "<issue_start>", "<issue_comment>", "<issue_closed>", "<jupyter_start>",
                    "<jupyter_text>", "<jupyter_code>", "<jupyter_output>", "<empty_output>", "<commit_before>",
                    "<commit_msg>", "<commit_after>", "<reponame>"]
GRANITE_ROLES = ["<|start_of_role|>", "<|end_of_role|>", "<|tool_call|>"]


def tiny_granite3(out_dir: str | Path, seed: int = 0) -> Path:
    """granite-3.x-instruct's shape: GraniteForCausalLM, Llama with four multipliers (embedding
    12, attention 1/head_dim in place of 1/sqrt(head_dim), residual 0.22, logits divided by 8:
    what llama.cpp's granite architecture reads from the GGUF), GQA, tied; StarCoder's tokenizer
    (digits split one by one, then ByteLevel: llama.cpp's "refact" for the real one) with its
    special tokens first and the role tokens after the vocabulary, GPT2Tokenizer class,
    <|end_of_text|> as BOS, EOS, pad and unk, no BOS added."""
    from transformers import GraniteConfig, GraniteForCausalLM

    out = _mkdir(out_dir)
    tok = byte_level_bpe("smollm", GRANITE_SPECIALS, GRANITE_ROLES)
    _save_hf_tokenizer(tok, out, "GPT2Tokenizer", GRANITE3_TEMPLATE, bos_token="<|end_of_text|>",
                       eos_token="<|end_of_text|>", pad_token="<|end_of_text|>", unk_token="<|end_of_text|>")
    (eot,) = _ids(tok, "<|end_of_text|>")
    head_dim = SHAPE["hidden_size"] // SHAPE["num_attention_heads"]
    cfg = GraniteConfig(vocab_size=tok.get_vocab_size(), rms_norm_eps=1e-5, initializer_range=INIT_STD,
                        rope_parameters={"rope_type": "default", "rope_theta": 5_000_000.0},
                        embedding_multiplier=12.0, attention_multiplier=1.0 / head_dim, residual_multiplier=0.22,
                        logits_scaling=8.0, bos_token_id=eot, eos_token_id=eot, pad_token_id=eot,
                        tie_word_embeddings=True, **SHAPE)
    _save_model(GraniteForCausalLM, cfg, out, seed)
    return out


# ----------------------------------------------------------------------------- helpers
def _mkdir(out_dir: str | Path) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return out


def tj_id(tokenizer_json: dict, content: str) -> int:
    return next(t["id"] for t in tokenizer_json["added_tokens"] if t["content"] == content)


def _write_config(out: Path, tokenizer_json: dict, tokenizer_class: str, template: str, fields: dict) -> None:
    """tokenizer_config.json of a SentencePiece family: its class, special tokens, every added token."""
    decoder = {
        str(t["id"]): {k: t[k] for k in ("content", "lstrip", "normalized", "rstrip", "single_word", "special")}
        for t in tokenizer_json.get("added_tokens", [])
    }
    cfg = {"tokenizer_class": tokenizer_class, **fields, "clean_up_tokenization_spaces": False,
           "model_max_length": SHAPE["max_position_embeddings"], "added_tokens_decoder": decoder,
           "chat_template": template}
    (out / "tokenizer_config.json").write_text(json.dumps(cfg, ensure_ascii=False, indent=2), encoding="utf-8")


# ----------------------------------------------------------------------------- the table
@dataclass(frozen=True)
class Family:
    """A family users fly, its tiny stand-in, and what llama.cpp makes of each."""

    name: str
    build: Callable[..., Path]
    hf_class: str
    gguf_arch: str
    tokenizer_model: str  # GGUF tokenizer.ggml.model: "gpt2" (byte-level BPE) or "llama" (SentencePiece)
    pre: str  # GGUF tokenizer.ggml.pre of the real model (llama.cpp's converter knows it by hash)
    pre_declared: str  # what pretokenizers.name_for reads in the family's tokenizer.json ("" for SentencePiece)
    pre_tiny: str  # what the tiny model's fine-tuned GGUF gets (see the notes below)
    end_of_turn: str  # what the chat template closes a persona turn with


# pre_tiny differs from pre where a tokenizer trained here cannot carry the published name:
# LFM2 declares the Llama 3 split, which llama.cpp implements under both names ("lfm2" is
# its name for LFM2's hash, the same split and flags as "llama-bpe"); SmolLM2's tokenizer
# class is GPT2Tokenizer, which transformers 5 rebuilds with GPT-2's ByteLevel regex and no
# Digits step, so the fine-tuned checkpoint's tokenizer.json declares "gpt-2". Both split
# exactly alike on a vocabulary learnt with digits apart (no token holds two digits), which
# test_pi_families checks; the real SmolLM2 keeps "smollm" through its hash. Granite 3's is
# StarCoder's tokenizer, the same declaration: "smollm" (the real one hashes to llama.cpp's
# "refact", the same split).
FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("smollm2", tiny_smollm2, "LlamaForCausalLM", "llama", "gpt2", "smollm", "smollm", "gpt-2", T.IM_END),
    Family("llama3.2", tiny_llama32, "LlamaForCausalLM", "llama", "gpt2", "llama-bpe", "llama-bpe", "llama-bpe",
           "<|eot_id|>"),
    Family("qwen2.5", tiny_qwen25, "Qwen2ForCausalLM", "qwen2", "gpt2", "qwen2", "qwen2", "qwen2", T.IM_END),
    Family("qwen3", tiny_qwen3, "Qwen3ForCausalLM", "qwen3", "gpt2", "qwen2", "qwen2", "qwen2", T.IM_END),
    Family("gemma3", tiny_gemma3, "Gemma3ForCausalLM", "gemma3", "llama", "default", "", "default", "<end_of_turn>"),
    Family("phi3", tiny_phi3, "Phi3ForCausalLM", "phi3", "llama", "default", "", "default", "<|end|>"),
    Family("phi4-mini", tiny_phi4_mini, "Phi3ForCausalLM", "phi3", "gpt2", "gpt-4o", "gpt-4o", "gpt-4o", "<|end|>"),
    Family("lfm2", tiny_lfm2, "Lfm2ForCausalLM", "lfm2", "gpt2", "lfm2", "llama-bpe", "llama-bpe", T.IM_END),
    Family("granite3", tiny_granite3, "GraniteForCausalLM", "granite", "gpt2", "refact", "smollm", "smollm",
           "<|end_of_text|>"),
)}
