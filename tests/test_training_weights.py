"""What prepare's weights and "train": "all" mean to the trainer."""

from __future__ import annotations

import json

import pytest

from host_training.train.tokenizer import DataError, by_weight, example_weights, load_conversations, render_ids


def write(path, examples):
    path.write_text("".join(json.dumps(e) + "\n" for e in examples), encoding="utf-8")
    return path


TURNS = [{"role": "user", "name": "Noor", "content": "hi"}, {"role": "assistant", "name": "Ada", "content": "hey"}]


def test_weights_repeat_examples_per_epoch(tmp_path):
    path = write(tmp_path / "t.jsonl",
                 [{"messages": TURNS, "weight": 3.0}, {"messages": TURNS}, {"messages": TURNS, "weight": 0.5}])
    convs, weights = load_conversations(path), example_weights(path)
    assert weights == [3.0, 1.0, 0.5]
    counts = [len(by_weight(convs, weights, seed=s)) for s in range(200)]
    assert set(counts) == {4, 5}  # 3 + 1 + (0 or 1)
    assert 60 < sum(c == 5 for c in counts) < 140  # the half weight: about half the time
    assert by_weight(convs, weights, seed=7) == by_weight(convs, weights, seed=7)


@pytest.mark.parametrize("weight", [0, -1, "3", True, 1000])
def test_bad_weights_name_the_line(tmp_path, weight):
    path = write(tmp_path / "t.jsonl", [{"messages": TURNS}, {"messages": TURNS, "weight": weight}])
    with pytest.raises(DataError, match=r"t.jsonl:2: weight"):
        example_weights(path)


def test_train_all_makes_every_speaker_a_target():
    def encode(text):
        return [ord(c) for c in text]

    class Special:
        im_start, im_end = 1, 2

    plain = [dict(t) for t in TURNS]
    marked = [dict(t, train="all") for t in TURNS]
    _, persona_only = render_ids(plain, encode, Special)
    _, everyone = render_ids(marked, encode, Special)
    # "hi" + <|im_end|> become targets too; headers and newlines never do.
    assert sum(everyone) == sum(persona_only) + len("hi") + 1
