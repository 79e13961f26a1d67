"""Pydantic's validation errors as one line a person can act on: which field, what was wrong."""

from __future__ import annotations

from collections.abc import Callable

from pydantic import ValidationError

Loc = tuple[int | str, ...]


def dotted(loc: Loc) -> str:
    """('messages', 0, 'role') -> 'messages[0].role'."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def describe(err: ValidationError, name_of: Callable[[Loc], str] = dotted) -> str:
    """'FIELD: what was expected (got VALUE)' for each problem, joined by '; '."""
    parts = []
    for e in err.errors():
        msg = e["msg"].removeprefix("Value error, ")  # our own validators' messages stand alone
        got = e.get("input")
        got_text = "" if e["type"] in ("missing", "value_error") or isinstance(got, dict) else f" (got {got!r})"
        where = name_of(e["loc"])
        parts.append(f"{where}: {msg}{got_text}" if where else f"{msg}{got_text}")
    return "; ".join(parts)
