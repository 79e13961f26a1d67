"""A JSON file's text a piece at a time, with exact positions: the byte-level half of the
streaming Telegram reader (telegram.py), which knows nothing of chats or messages.

`JsonWindow` decodes the file a piece at a time; its caller walks objects (`members`) and
arrays itself, decodes a value where it starts (`value`, the json module's C decoder), or
passes over one it does not need (`skip`, an array element or a member at a time, never
built whole). Any position can be named (`where`: byte, line, column) and returned to
(`mark`, `seek`) without counting from the start of the file.

Damage is a `BadJson`: `recoverable` when the bad value's brackets close and the window has
moved past it (reading can go on), otherwise the structure is lost there. Values passed over
are checked only for their brackets and strings.
"""

from __future__ import annotations

import json
import re
from bisect import bisect_right
from collections.abc import Callable, Iterator
from typing import BinaryIO, NamedTuple

MAX_VALUE_CHARS = 64 << 20  # a single message larger than this is not one: the structure is broken
# Objects passed over (`skip`) nest no deeper than this: an export nests a handful of levels, and each
# level is a Python call, so 1,000 of them ended in a RecursionError that no reader expects.
MAX_SKIP_DEPTH = 200

_WS = re.compile(r"[ \t\n\r]*")
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKET_OR_QUOTE = re.compile(r'["\[\]{}]')
_SCALAR = re.compile(r'[^ \t\n\r,:\[\]{}"]*')
_OPENER = {"]": "[", "}": "{"}
_BOM = b"\xef\xbb\xbf"
_decode = json.JSONDecoder().raw_decode  # C scanner; strict, like json.loads


class Position(NamedTuple):
    byte: int  # offset in the file (after a replaced invalid UTF-8 byte, U+FFFD counts as 3)
    line: int
    column: int  # in characters, from 1, as the json module counts

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column} (byte {self.byte})"


class BadJson(Exception):
    """JSON that is not valid at `pos`. `recoverable`: the bad value's brackets close, and the
    window has moved past it, so reading can go on; otherwise the structure is lost."""

    def __init__(self, why: str, pos: Position, recoverable: bool = False) -> None:
        super().__init__(f"{why} at {pos}")
        self.why, self.pos, self.recoverable = why, pos, recoverable


def _whole_chars(data: bytes) -> int:
    """How much of `data` ends on a whole UTF-8 character; the rest waits for the next read."""
    n = len(data)
    for k in range(1, min(3, n) + 1):
        b = data[n - k]
        if b < 0x80:
            return n
        if b >= 0xC0:  # the lead byte of the last character
            return n - k if (2 if b < 0xE0 else 3 if b < 0xF0 else 4) > k else n
    return n


class JsonWindow:
    """The file's text, decoded a piece at a time: `buf[pos:]` is what is still to be read.

    `buf` starts at the start of the piece that holds `pos` (older pieces are dropped when more
    is read); each piece keeps its exact file offset and the line and column it starts at, so a
    position can be named (`where`) and returned to (`mark`, `seek`) without counting from the
    start of the file.
    """

    def __init__(self, f: BinaryIO, chunk_bytes: int, progress: Callable[[int], object],
                 on_bad_utf8: Callable[[int], None]) -> None:
        self.f, self.chunk, self.progress, self.on_bad_utf8 = f, chunk_bytes, progress, on_bad_utf8
        self.buf = ""
        self.pos = 0
        self.eof = False
        self._carry = b""  # an incomplete character at the end of the last read
        self._offset = 0  # file offset of the next read
        self._furthest = 0  # for the progress bar: bytes read again after a seek count once
        self._pieces: list[tuple[int, int, int, int]] = []  # (index in buf, file offset, lines before, column)
        self._lines = 0  # newlines before the end of buf
        self._col = 0  # characters after the last of them

    # -- reading

    def fill(self, at_least: int = 1) -> bool:
        """Read at least `at_least` more characters (fewer at the end of the file); False if none."""
        k = bisect_right(self._pieces, self.pos, key=lambda p: p[0]) - 1
        if k > 0:
            cut = self._pieces[k][0]
            self.buf, self.pos = self.buf[cut:], self.pos - cut
            self._pieces = [(i - cut, o, n, c) for i, o, n, c in self._pieces[k:]]
        texts, added, end = [], 0, len(self.buf)
        while added < at_least and not self.eof:
            raw = self.f.read(self.chunk)
            start = self._offset - len(self._carry)
            self._offset += len(raw)
            if self._offset > self._furthest:
                self.progress(self._offset - self._furthest)
                self._furthest = self._offset
            data = self._carry + raw
            if raw:
                keep = _whole_chars(data)
                data, self._carry = data[:keep], data[keep:]
            else:
                self.eof, self._carry = True, b""
            if start == 0 and data.startswith(_BOM):
                data, start = data[3:], 3
            if not data:
                continue
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as e:
                self.on_bad_utf8(self._lines + data.count(b"\n", 0, e.start) + 1)
                text = data.decode("utf-8", errors="replace")
            self._pieces.append((end + added, start, self._lines, self._col))
            texts.append(text)
            added += len(text)
            # Lines counted in the bytes (memchr; a newline is one byte in UTF-8), not in the
            # text: counting a wide str is several times slower, on every piece of the file.
            if (nl := data.count(b"\n")) > 0:
                self._lines += nl
                self._col = len(text) - text.rfind("\n") - 1
            else:
                self._col += len(text)
        if texts:
            self.buf = "".join([self.buf, *texts])
        return added > 0

    def peek(self) -> str:
        """The next character that is not white space ("" at the end of the file); `pos` is on it."""
        while True:
            self.pos = _WS.match(self.buf, self.pos).end()
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.fill():
                return ""

    def value(self) -> object:
        """Decode the JSON value at the next character and move past it."""
        while True:
            if not self.peek():
                raise self.bad("Expecting value")
            start = self.pos
            try:
                obj, end = _decode(self.buf, start)
            except (ValueError, RecursionError) as e:  # JSONDecodeError is a ValueError; so is a number too long
                end = self.extent(start)
                if end is None:  # not all of it is in the window yet
                    if len(self.buf) - start > MAX_VALUE_CHARS:
                        raise BadJson(f"a value of more than {MAX_VALUE_CHARS >> 20} MiB", self.where(start)) from None
                    if self.fill(len(self.buf) - start):  # at least doubles what the window holds of it
                        continue
                    raise self.cut_short(start) from None
                self.pos = end
                if isinstance(e, json.JSONDecodeError):
                    raise BadJson(e.msg, self.where(e.pos), recoverable=True) from None
                # Valid JSON beyond what any export holds: a number of thousands of digits (Python
                # refuses to convert one past 4,300), or nesting past the parser's recursion.
                why = ("a number of more than 4,300 digits" if isinstance(e, ValueError) else
                       "nesting deeper than the parser goes")
                raise BadJson(why, self.where(start), recoverable=True) from None
            if not self.eof and not isinstance(obj, (dict, list, str)) and _SCALAR.match(self.buf, start).end() == len(self.buf):
                self.fill()  # a number ("12", "1e") may go on in the next piece
                continue
            self.pos = end
            return obj

    def extent(self, i: int) -> int | None:
        """Where the value at `i` ends by its brackets and strings alone; None when the window
        ends first. Brackets that do not match are a `BadJson` that cannot be recovered from."""
        buf = self.buf
        c = buf[i]
        if c == '"':
            m = _STRING.match(buf, i)
            return m.end() if m else None
        if c not in "[{":
            end = _SCALAR.match(buf, i).end()
            if end == i:  # "]", "}", ",", ":" where a value should be
                raise BadJson("Expecting value", self.where(i))
            return None if end == len(buf) and not self.eof else end
        stack = [c]
        j = i + 1
        while True:
            m = _BRACKET_OR_QUOTE.search(buf, j)
            if m is None:
                return None
            j = m.start()
            ch = buf[j]
            if ch == '"':
                s = _STRING.match(buf, j)
                if s is None:
                    return None
                j = s.end()
            elif ch in "[{":
                stack.append(ch)
                j += 1
            else:
                opener = stack.pop()
                if opener != _OPENER[ch]:
                    raise BadJson(f"'{ch}' closes the '{opener}'", self.where(j))
                j += 1
                if not stack:
                    return j

    def members(self) -> Iterator[str]:
        """The keys of the object at the next character; the caller reads or skips each value."""
        self.pos += 1  # "{"
        c = self.peek()
        if c == "}":
            self.pos += 1
            return
        while True:
            if c != '"':
                raise self.bad("Expecting property name enclosed in double quotes")
            try:
                key = self.value()
            except BadJson as e:
                raise BadJson(e.why, e.pos) from None  # a broken key: no telling what it belonged to
            if self.peek() != ":":
                raise self.bad("Expecting ':' delimiter")
            self.pos += 1
            yield key  # type: ignore[misc]
            c = self.peek()
            if c == ",":
                self.pos += 1
                c = self.peek()
            elif c == "}":
                self.pos += 1
                return
            else:
                raise self.bad("Expecting ',' delimiter")

    def skip(self, depth: int = 0) -> None:
        """Pass over the value at the next character, an array element or a member at a time.
        Objects nested deeper than MAX_SKIP_DEPTH are a `BadJson` that cannot be recovered from."""
        c = self.peek()
        if c == "{":
            if depth >= MAX_SKIP_DEPTH:
                raise BadJson(f"objects nested deeper than {MAX_SKIP_DEPTH} levels", self.where(self.pos))
            for _ in self.members():
                self.skip(depth + 1)
        elif c == "[":
            self.pos += 1
            if self.peek() == "]":
                self.pos += 1
                return
            while True:
                try:
                    self.value()
                except BadJson as e:
                    if not e.recoverable:
                        raise
                c = self.peek()
                if c == ",":
                    self.pos += 1
                elif c == "]":
                    self.pos += 1
                    return
                else:
                    raise self.bad("Expecting ',' delimiter")
        else:
            try:
                self.value()
            except BadJson as e:
                if not e.recoverable:
                    raise

    # -- positions

    def where(self, i: int) -> Position:
        if not self._pieces:
            return Position(self._offset, self._lines + 1, self._col + 1)
        start, offset, lines, col = self._pieces[bisect_right(self._pieces, i, key=lambda p: p[0]) - 1]
        buf = self.buf
        nl = buf.count("\n", start, i)
        col = i - buf.rfind("\n", start, i) if nl else col + i - start + 1
        return Position(offset + len(buf[start:i].encode("utf-8")), lines + nl + 1, col)

    def bad(self, why: str) -> BadJson:
        """Damage to the structure at `pos` (the end of the file there: cut short)."""
        if self.pos >= len(self.buf) and self.eof:
            return self.cut_short(None)
        return BadJson(why, self.where(self.pos))

    def cut_short(self, start: int | None) -> BadJson:
        end = self.where(len(self.buf))
        if start is None:
            return BadJson("the file ends early (truncated?)", end)
        return BadJson(f"the file ends at byte {end.byte} (truncated?), inside the value", self.where(start))

    def mark(self) -> tuple[int, int, int, int]:
        """A way back to `pos` for `seek`: its piece's file offset, line and column, and how far in."""
        start, offset, lines, col = self._pieces[bisect_right(self._pieces, self.pos, key=lambda p: p[0]) - 1]
        return offset, self.pos - start, lines, col

    def seek(self, mark: tuple[int, int, int, int]) -> None:
        offset, into, lines, col = mark
        self.f.seek(offset)
        self.buf, self.pos, self.eof, self._carry = "", 0, False, b""
        self._offset, self._pieces, self._lines, self._col = offset, [], lines, col
        self.fill(into + 1)
        self.pos = into
