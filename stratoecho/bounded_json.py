"""JSON from outside (the air, the network, a file) read within stated bounds: its size and its
nesting are checked before the parser sees it. Pure: bytes in, a value or a refusal out.

    loads(data, max_bytes=..., max_depth=...) -> the value, or JsonRefused(reason)

Python's json parser recurses once per level of nesting: 200,000 `[` in one message end in a
RecursionError, which is no ValueError and escapes every handler written for bad JSON (one such
message stopped a station network's aggregator at every restart: the broker offered it again).
The depth is counted first, in one pass over the bytes that skips strings, so no input reaches
the parser deeper than `max_depth`; a message past `max_bytes` is not read at all.
"""

from __future__ import annotations

import json
from typing import Any

_OPEN, _CLOSE, _QUOTE, _BACKSLASH = frozenset(b"[{"), frozenset(b"]}"), ord('"'), ord("\\")


class JsonRefused(ValueError):
    """Not JSON within the bounds: `reason` says which ("too large", "too deep", "not json")."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


def depth(data: bytes) -> int:
    """The deepest nesting of arrays and objects in `data`, strings skipped (a bracket inside a
    string is text); unbalanced input is measured as far as it goes."""
    deepest = level = 0
    in_string = escaped = False
    for b in data:
        if in_string:
            if escaped:
                escaped = False
            elif b == _BACKSLASH:
                escaped = True
            elif b == _QUOTE:
                in_string = False
        elif b == _QUOTE:
            in_string = True
        elif b in _OPEN:
            level += 1
            deepest = max(deepest, level)
        elif b in _CLOSE:
            level = max(level - 1, 0)
    return deepest


def loads(data: bytes | str, *, max_bytes: int, max_depth: int) -> Any:
    """`data` parsed as JSON, or JsonRefused when it is longer than `max_bytes` (as UTF-8), nests
    deeper than `max_depth`, or is not JSON (not UTF-8 included)."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    if len(raw) > max_bytes:
        raise JsonRefused("too large", f"{len(raw)} bytes, at most {max_bytes}")
    if (d := depth(raw)) > max_depth:
        raise JsonRefused("too deep", f"nested {d} levels, at most {max_depth}")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        raise JsonRefused("not json", str(e)[:120]) from None
