"""Stage 1: the byte-level BPE tokenizer, the ChatML rendering and the data reader."""

from __future__ import annotations

import json

import jinja2
import pytest

from host_training.train import tokenizer as T
from tests.chatdata import make_conversation, write_chat_dataset

STRINGS = [
    "hello world",
    "héllo wörld, naïve café",
    "日本語のテキスト and 中文",
    "emoji 🎈🚀☁️ and flags 🇸🇪",
    "digits 0123456789 and 3.14159 and 1,000,000",
    "  leading and trailing spaces  ",
    "tabs\tand\nnewlines\n\n\nand \r\n crlf",
    "it's don't we'll I'd they're",
    "<|im_end|> typed by a person",
    "",
]


@pytest.fixture(scope="module")
def hf_tok(tmp_path_factory):
    import random

    rng = random.Random(1)
    convs = [make_conversation(rng)["messages"] for _ in range(80)]
    tok = T.train_tokenizer(T.tokenizer_training_text(convs, "You are Ada."), vocab_size=600)
    out = tmp_path_factory.mktemp("tok")
    T.save_tokenizer(tok, out)
    return T.load_hf_tokenizer(out)


def test_special_tokens_have_fixed_ids(hf_tok):
    assert [hf_tok.convert_tokens_to_ids(s) for s in T.SPECIAL_TOKENS] == [0, 1, 2]
    assert hf_tok.bos_token == hf_tok.eos_token == hf_tok.pad_token == T.EOT
    assert 256 + 3 <= len(hf_tok) <= 600


@pytest.mark.parametrize("text", STRINGS)
def test_round_trip_is_exact(hf_tok, text):
    encode = T.hf_text_encoder(hf_tok)
    ids = encode(text)
    assert hf_tok.decode(ids) == text
    assert all(i > 2 for i in ids), "plain text must never produce a special token"


def test_special_strings_are_tokens_only_when_asked(hf_tok):
    assert hf_tok.encode("<|im_start|>user\n", add_special_tokens=False)[0] == 1
    assert 1 not in T.hf_text_encoder(hf_tok)("<|im_start|>user\n")


def test_render_ids_equals_the_template_tokenized_whole(hf_tok):
    import random

    rng = random.Random(7)
    encode, special = T.hf_text_encoder(hf_tok), T.hf_special_ids(hf_tok)
    env = jinja2.Environment()
    template = env.from_string(T.CHATML_TEMPLATE)
    for _ in range(30):
        conv = T.with_system_prompt(make_conversation(rng)["messages"], "You are Ada.")
        if any("<|" in m["content"] for m in conv):
            continue  # literal special strings are text for render_ids, tokens for a whole-string encode
        ids, _ = T.render_ids(conv, encode, special)
        text = template.render(messages=conv, add_generation_prompt=False)
        assert ids == hf_tok.encode(text, add_special_tokens=False)
        assert text == hf_tok.apply_chat_template(conv, tokenize=False)


def test_persona_mask_covers_the_persona_words_and_its_turn_end(hf_tok):
    encode, special = T.hf_text_encoder(hf_tok), T.hf_special_ids(hf_tok)
    conv = [
        {"role": "system", "name": "", "content": "You are Ada."},
        {"role": "user", "name": "Ben", "content": "How was the launch?"},
        {"role": "assistant", "name": "Ada", "content": "Honestly, wild."},
    ]
    ids, target = T.render_ids(conv, encode, special, loss="persona")
    picked = [i for i, t in zip(ids, target) if t]
    assert hf_tok.decode(picked[:-1]) == "Honestly, wild."
    assert picked[-1] == special.im_end
    _, everything = T.render_ids(conv, encode, special, loss="all")
    assert all(everything) and len(everything) == len(ids)
    with pytest.raises(ValueError):
        T.render_ids(conv, encode, special, loss="some")


def test_chunks_split_long_conversations_without_loss():
    ids = list(range(10))
    target = [True] * 10
    pieces = list(T.chunks(ids, target, 4))
    assert [p for p, _ in pieces] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_system_prompt_is_added_unless_the_conversation_has_one():
    conv = [{"role": "user", "name": "", "content": "hi"}]
    assert T.with_system_prompt(conv, "S")[0] == {"role": "system", "name": "", "content": "S"}
    own = [{"role": "system", "name": "", "content": "mine"}, *conv]
    assert T.with_system_prompt(own, "S") == own


def test_load_conversations_reads_prepare_output(tmp_path):
    write_chat_dataset(tmp_path, n_train=5, n_val=2)
    convs = T.load_conversations(tmp_path / "train.jsonl")
    assert len(convs) == 5 and all(m["role"] in T.ROLES for c in convs for m in c)


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", "not valid JSON"),
        ("[1]", 'expected an object {"messages": [...]}'),
        ('{"msgs": []}', "messages: Field required"),
        ('{"messages": []}', "messages: List should have at least 1 item"),
        ('{"messages": [{"role": "bot", "content": "x"}]}',
         "messages[0].role: Input should be 'system', 'user' or 'assistant' (got 'bot')"),
        ('{"messages": [{"role": "user", "content": "x"}, {"role": "user", "content": 3}]}',
         "messages[1].content: Input should be a valid string (got 3)"),
        ('{"messages": [{"role": "user", "content": "x"}], "train": "some"}', "train: Input should be 'all'"),
    ],
)
def test_malformed_lines_are_named_by_file_and_line(tmp_path, line, message):
    good = json.dumps({"messages": [{"role": "user", "name": "a", "content": "hi"}]})
    path = tmp_path / "train.jsonl"
    path.write_text(f"{good}\n\n{line}\n", encoding="utf-8")
    with pytest.raises(T.DataError) as e:
        T.load_conversations(path)
    assert f"{path}:3:" in str(e.value) and message in str(e.value)
