"""A bundle's min_tokens is its owner's: the median of her turns in the model's tokens (issue 49,
item 2; host_training/pipeline/bundling.py)."""

from host_training.pipeline.bundling import MIN_TOKENS_FLOOR, min_tokens_for


def words(text: str) -> int:
    return len(text.split())


def test_the_owner_s_median_turn_sets_it():
    turns = ["one two three four five six seven eight nine ten eleven twelve"] * 3 + ["a " * 30, "a " * 14]
    assert min_tokens_for(turns, words) == 12


def test_a_short_spoken_owner_gets_the_floor_and_a_long_one_half_the_reply():
    assert min_tokens_for(["ja", "haha", "ja digga"], words) == MIN_TOKENS_FLOOR
    assert min_tokens_for(["w " * 200] * 5, words, max_tokens=64) == 32
    assert min_tokens_for([], words) == MIN_TOKENS_FLOOR


def test_a_weighted_owner_is_not_counted_twice():
    """owner_min_tokens reads each turn once (owner_texts), whatever its weight in train.jsonl."""
    from host_training.pipeline.owner_lines import owner_texts

    convs = [[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "a b c d e f g h i j"}]] * 9
    convs += [[{"role": "assistant", "content": "x " * 20}], [{"role": "assistant", "content": "y " * 20}]]
    assert min_tokens_for(owner_texts(convs), words) == 20  # 10, 20, 20: the weighted one counted once
