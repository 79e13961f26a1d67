"""Tiny random HF checkpoints of each model family we convert, built locally for tests.

No model or tokenizer can be downloaded here, so tests that need a "base model" (GGUF
conversion, LoRA fine-tuning, evaluation) build one with these functions. Each writes a
complete transformers checkpoint directory (config.json, model.safetensors, the tokenizer
files, a chat template) and returns its path:

  tiny_llama_bpe(dir)            LlamaForCausalLM + our own GPT-2 byte-level BPE (the
                                 from-scratch persona model's layout; ChatML tokens at ids 0-2)
  tiny_llama_sentencepiece(dir)  LlamaForCausalLM + a SentencePiece BPE tokenizer.model with
                                 byte fallback (Llama 2 / TinyLlama style: <unk> <s> </s>, BOS
                                 added), plus <|im_start|>/<|im_end|> added after the SP vocab
  tiny_qwen2(dir)                Qwen2ForCausalLM (q/k/v biases, tied embeddings, rope base
                                 1e6, vocabulary padded past the tokenizer, as Qwen2.5-0.5B)
                                 + a byte-level BPE with Qwen2's split regex and NFC normalizer

All three: 2 layers, hidden 64, 4 query heads sharing 2 key/value heads (GQA), ChatML as the
chat template, tokenizers trained on the sample corpus. Same arguments, same bytes: the
tokenizers are trained single-threaded and the weights drawn from a seeded generator (the
caller's global torch RNG is left as it was). Norm weights and biases are random too, so a
converter that drops or misplaces one cannot pass a logits comparison.

The SentencePiece checkpoint names `PreTrainedTokenizerFast` as its tokenizer class, so
transformers loads tokenizer.json as written: that pipeline (transformers 4's legacy Llama
layout) tokenizes exactly as tokenizer.model, and so as llama.cpp. transformers 5's own
`LlamaTokenizer` class rebuilds the pipeline with a Metaspace pre-tokenizer that adds no
dummy "▁" to text already starting with a space, so " x" loses a token against
SentencePiece and llama.cpp (and with legacy=False, text after a special token does too).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

from host_training.train import tokenizer as T

# ----------------------------------------------------------------------------- configuration
CORPUS = Path(__file__).resolve().parents[2] / "samples" / "corpus"
SHAPE = dict(  # every family: small enough that building one takes well under a second
    hidden_size=64, intermediate_size=128, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
)
INIT_STD = 0.1  # larger than HF's 0.02 so the logits spread and a wrong tensor shows
BPE_VOCAB = 700  # byte-level BPE: 256 bytes + merges (+ specials)
SP_VOCAB = 512  # SentencePiece: <unk> <s> </s> + 256 byte pieces + merges
# Qwen2's pre-tokenizer split, as its tokenizer.json has it; llama.cpp implements the same
# split for tokenizer.ggml.pre = "qwen2" (src/llama-vocab.cpp, rewritten without (?i:...)).
QWEN2_SPLIT_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# Text no corpus file may lack: accents, scripts, emoji, digits, tabs, so that some of them
# become real pieces and the rest go through byte fallback / byte-level tokens.
EXTRA_TEXT = [
    "héllo wörld, naïve café – Umeå in the snow",
    "日本語のテキスト and 中文 and Ελληνικά",
    "emoji 🎈🚀☁️ and flags 🇸🇪",
    "digits 0123456789 3.14159 1,000,000 at 23:15 UTC",
    "\tindented\tline  with  double  spaces",
]


# ----------------------------------------------------------------------------- training text
def corpus_lines(corpus: Path = CORPUS) -> list[str]:
    """Non-empty lines of the sample corpus's posts and chats, plus EXTRA_TEXT; sorted file order."""
    lines: list[str] = []
    files = sorted(corpus.glob("posts/*.md")) + sorted(corpus.glob("whatsapp/*.txt")) if corpus.is_dir() else []
    for f in files:
        lines += [ln for ln in f.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if not lines:  # a checkout without the samples still gets a (poorer) tokenizer
        lines = ["the balloon went up at 11:15 and the signal faded at the horizon"] * 50
    return lines + EXTRA_TEXT * 3


# ----------------------------------------------------------------------------- weights
def _save_model(model_cls, config, out: Path, seed: int) -> None:
    """A random `model_cls(config)` with random norms and biases, saved as safetensors in `out`."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_cls(config).eval()
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.endswith("norm.weight"):
                    p.uniform_(0.5, 1.5)
                elif name.endswith(".bias"):
                    p.normal_(0.0, INIT_STD)
    model.save_pretrained(str(out))


def _pad(n: int, multiple: int | None) -> int:
    return n if not multiple else -(-n // multiple) * multiple


# ----------------------------------------------------------------------------- Llama + byte-level BPE
def tiny_llama_bpe(out_dir: str | Path, seed: int = 0, tie_word_embeddings: bool = False) -> Path:
    """Llama with the project's own byte-level BPE (host_training.train.tokenizer): ChatML, no BOS."""
    from transformers import LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = T.train_tokenizer(corpus_lines(), vocab_size=BPE_VOCAB)
    hf_tok = T.save_tokenizer(tok, out)
    eot = hf_tok.convert_tokens_to_ids(T.EOT)
    cfg = LlamaConfig(
        vocab_size=len(hf_tok), rms_norm_eps=1e-5, initializer_range=INIT_STD,
        bos_token_id=eot, eos_token_id=eot, pad_token_id=eot,
        tie_word_embeddings=tie_word_embeddings, **SHAPE,
    )
    _save_model(LlamaForCausalLM, cfg, out, seed)
    return out


# ----------------------------------------------------------------------------- Llama + SentencePiece
def train_sentencepiece(lines: list[str], vocab_size: int = SP_VOCAB, *, dummy_prefix: bool = True,
                        ids: tuple[int, int, int, int] = (0, 1, 2, -1), user_defined: tuple[str, ...] = (),
                        control: tuple[str, ...] = ()) -> bytes:
    """A serialized SentencePiece BPE model set up as Llama 2's: identity normalization,
    whitespace kept as is, a dummy prefix space, digits split, byte fallback, <unk> <s> </s> = 0 1 2.

    Gemma's shape instead: `dummy_prefix=False`, `ids` (unk, bos, eos, pad) = (3, 2, 1, 0) with
    the pieces named as Gemma names them, its turn markers as `user_defined` pieces."""
    import sentencepiece as spm

    unk, bos, eos, pad = ids
    names = {} if ids == (0, 1, 2, -1) else dict(unk_piece="<unk>", bos_piece="<bos>", eos_piece="<eos>",
                                                  pad_piece="<pad>")
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=buf, model_type="bpe", vocab_size=vocab_size,
        character_coverage=1.0, byte_fallback=True, normalization_rule_name="identity",
        remove_extra_whitespaces=False, add_dummy_prefix=dummy_prefix, split_digits=True,
        allow_whitespace_only_pieces=True, unk_id=unk, bos_id=bos, eos_id=eos, pad_id=pad,
        user_defined_symbols=list(user_defined), control_symbols=list(control),
        num_threads=1, minloglevel=2, **names,
    )
    return buf.getvalue()


def sentencepiece_tokenizer_json(sp_model: bytes, added: list[str], *, dummy_prefix: bool = True,
                                 bos: str = "<s>", user_defined: tuple[str, ...] = ()) -> dict:
    """tokenizer.json equivalent to the SentencePiece model, in the layout transformers 4.x's
    LlamaConverter wrote for Llama 2 (legacy): prepend "▁" and replace spaces in the
    normalizer, BPE with byte fallback, merges ordered by the merged piece's score.
    `added` become special added tokens after the SP vocabulary.

    `dummy_prefix=False` is Gemma's layout (GemmaTokenizer's own pipeline): spaces replaced,
    nothing prepended, a no-op split on " " and no strip in the decoder. The SP model's control
    pieces and the `user_defined` ones it was trained with (<bos>, <start_of_turn>, ...) are
    special added tokens at their ids (sentencepiece's Python API cannot tell user-defined pieces)."""
    import sentencepiece as spm
    from tokenizers import AddedToken, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import BPE

    sp = spm.SentencePieceProcessor(model_proto=sp_model)
    pieces = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())]
    vocab = {p: i for i, (p, _) in enumerate(pieces)}
    # A merge (a, b) exists for every normal piece a+b whose halves are both pieces; SP applies
    # the highest-scoring merged piece first, so that is the merge order.
    special = [i for i in range(len(pieces)) if sp.is_control(i) or sp.is_unknown(i) or pieces[i][0] in user_defined]
    normal = [i for i in range(len(pieces)) if i not in special and not sp.is_byte(i)]
    merges = []
    for i in normal:
        piece = pieces[i][0]
        for k in range(1, len(piece)):
            a, b = piece[:k], piece[k:]
            if a in vocab and b in vocab:
                merges.append((pieces[i][1], vocab[a], vocab[b], a, b))
    merges.sort(key=lambda m: (-m[0], m[1], m[2]))
    unk = pieces[next(i for i in special if sp.is_unknown(i))][0]
    tok = Tokenizer(BPE(vocab=vocab, merges=[(a, b) for *_, a, b in merges], unk_token=unk,
                        fuse_unk=True, byte_fallback=True))
    if dummy_prefix:
        tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
        tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                         decoders.Strip(content=" ", left=1)])
    else:
        tok.normalizer = normalizers.Replace(" ", "▁")
        tok.pre_tokenizer = pre_tokenizers.Split(" ", behavior="merged_with_previous")
        tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    tok.add_special_tokens([AddedToken(pieces[i][0], special=True, normalized=False) for i in special])
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in added])
    bos_id = (bos, vocab[bos])  # BOS before every sequence, as add_bos_token says
    tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                                       special_tokens=[bos_id])
    return json.loads(tok.to_str())


def tiny_llama_sentencepiece(out_dir: str | Path, seed: int = 0, tie_word_embeddings: bool = False) -> Path:
    """Llama with a SentencePiece tokenizer (tokenizer.model + an equivalent tokenizer.json),
    BOS added, ChatML tokens added after the SP vocabulary, ChatML template."""
    from transformers import LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sp_model = train_sentencepiece(corpus_lines())
    added = [T.IM_START, T.IM_END]
    (out / "tokenizer.model").write_bytes(sp_model)
    tj = sentencepiece_tokenizer_json(sp_model, added)
    (out / "tokenizer.json").write_text(json.dumps(tj, ensure_ascii=False, indent=1), encoding="utf-8")
    n_vocab = SP_VOCAB + len(added)
    _write_tokenizer_config(out, tj, {
        "tokenizer_class": "PreTrainedTokenizerFast",  # tokenizer.json as written: see the module docstring
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": None,
        "add_bos_token": True, "add_eos_token": False,
        # legacy: every text piece, also one that follows a special token, starts with the
        # dummy-prefix space, as SentencePiece itself and llama.cpp do.
        "legacy": True, "add_prefix_space": True,
        "clean_up_tokenization_spaces": False, "model_max_length": SHAPE["max_position_embeddings"],
    })
    cfg = LlamaConfig(
        vocab_size=n_vocab, rms_norm_eps=1e-5, initializer_range=INIT_STD,
        bos_token_id=1, eos_token_id=2, tie_word_embeddings=tie_word_embeddings, **SHAPE,
    )
    _save_model(LlamaForCausalLM, cfg, out, seed)
    return out


# ----------------------------------------------------------------------------- Qwen2 + byte-level BPE
def qwen2_tokenizer(lines: list[str], vocab_size: int = BPE_VOCAB):
    """A `tokenizers.Tokenizer` built like Qwen2's: NFC, Qwen2's regex split, byte-level BPE,
    then <|endoftext|> <|im_start|> <|im_end|> added after the learned vocabulary."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(lines, trainer)
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in T.SPECIAL_TOKENS])
    return tok


def tiny_qwen2(out_dir: str | Path, seed: int = 0, tie_word_embeddings: bool = True, pad_vocab_to: int = 64) -> Path:
    """Qwen2 (Qwen2.5-0.5B's layout: tied, biased q/k/v, padded vocab) with a Qwen2-style BPE, ChatML."""
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = qwen2_tokenizer(corpus_lines())
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=None, eos_token=T.IM_END, pad_token=T.EOT, unk_token=None,
        chat_template=T.CHATML_TEMPLATE, add_bos_token=False, add_eos_token=False,
        clean_up_tokenization_spaces=False, model_max_length=SHAPE["max_position_embeddings"],
    )
    hf_tok.save_pretrained(str(out))
    eot, im_end = tok.token_to_id(T.EOT), tok.token_to_id(T.IM_END)
    cfg = Qwen2Config(
        vocab_size=_pad(tok.get_vocab_size(), pad_vocab_to), rms_norm_eps=1e-6, initializer_range=INIT_STD,
        rope_theta=1_000_000.0, use_sliding_window=False, sliding_window=None,
        bos_token_id=eot, eos_token_id=im_end, tie_word_embeddings=tie_word_embeddings, **SHAPE,
    )
    _save_model(Qwen2ForCausalLM, cfg, out, seed)
    return out


# ----------------------------------------------------------------------------- helpers
def _write_tokenizer_config(out: Path, tokenizer_json: dict, fields: dict) -> None:
    """tokenizer_config.json with `fields`, every added token described, and the ChatML template."""
    decoder = {
        str(t["id"]): {k: t[k] for k in ("content", "lstrip", "normalized", "rstrip", "single_word", "special")}
        for t in tokenizer_json.get("added_tokens", [])
    }
    cfg = {**fields, "added_tokens_decoder": decoder, "chat_template": T.CHATML_TEMPLATE}
    (out / "tokenizer_config.json").write_text(json.dumps(cfg, ensure_ascii=False, indent=2), encoding="utf-8")


def families() -> Iterator[tuple[str, object]]:
    """(name, builder) for every family, for tests that run over all of them."""
    yield "llama-bpe", tiny_llama_bpe
    yield "llama-sentencepiece", tiny_llama_sentencepiece
    yield "qwen2", tiny_qwen2
