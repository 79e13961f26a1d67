"""JSON from outside, within bounds (stratoecho/bounded_json.py): a message nested past the
parser's recursion is refused by its depth, a large one by its size, before the parser runs."""

from __future__ import annotations

import pytest

from stratoecho.bounded_json import JsonRefused, depth, loads


def test_depth_counts_brackets_outside_strings_only():
    assert depth(b'{"a": [1, {"b": 2}]}') == 3
    assert depth(b'{"a": "[[[[[[ {{{ \\" [[["}') == 1  # brackets in a string, an escaped quote among them
    assert depth(b"[]") == 1 and depth(b'"x"') == 0 and depth(b"]]]") == 0


@pytest.mark.parametrize("data, reason", [
    (b"[" * 200_000, "too large"),  # the poison message of issue 41: refused unread
    (b"[" * 2_000 + b"]" * 2_000, "too deep"),  # small enough, and past Python's recursion limit
    (b'{"v": 1, "hex": "ab"', "not json"),
    (b"\xff\xfe{}", "not json"),
])
def test_what_is_out_of_bounds_is_refused_with_its_reason(data, reason):
    with pytest.raises(JsonRefused) as e:
        loads(data, max_bytes=8_192, max_depth=4)
    assert e.value.reason == reason and isinstance(e.value, ValueError)


def test_a_message_within_bounds_is_read_as_json():
    assert loads('{"v": 1, "id": "hill:1", "hex": "ab"}', max_bytes=64, max_depth=1) == {"v": 1, "id": "hill:1",
                                                                                          "hex": "ab"}
    with pytest.raises(JsonRefused, match="too large: 65 bytes, at most 64"):
        loads(b" " * 65, max_bytes=64, max_depth=1)
