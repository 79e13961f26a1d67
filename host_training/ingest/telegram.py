"""Telegram Desktop's "Machine-readable JSON" export, whole account or a single chat.

    full export   {"personal_information": ..., "chats": {"list": [chat, ...]}, "left_chats": {"list": [...]}}
    single chat   {"name": ..., "type": "personal_chat", "id": 4440001, "messages": [...]}
    message       {"id", "type": "message"|"service", "date", "date_unixtime", "from", "from_id",
                   "text": "..." or ["plain", {"type": "link", "text": "..."}, ...],
                   "forwarded_from"?, "photo"?, "media_type"?, "sticker_emoji"?, ...}

`date_unixtime` is the authoritative UTC time (`date` is the exporting machine's local time
without a zone, used only when `date_unixtime` is missing, as UTC). `from_id` is the stable
author id. The text of entity objects is kept (a `text_link`'s hidden href is not); a media
message's text is its caption.

Reading streams: a whole-account export runs to hundreds of MB. `_Window` decodes the file a
piece at a time (`CHUNK_BYTES`); a small walker follows objects and arrays down to each chat's
"messages"; each message is decoded on its own, where it starts in the window, by the json
module's C decoder (`raw_decode`). What the reader does not need (contacts, other data, keys
it does not know) is passed over one array element at a time, never built whole. Memory is
the window plus the largest single message, whatever the number of messages.

Key order. Telegram writes a chat's "name", "type" and "id" before its "messages". When the
messages come first, or one of the three is missing (Saved Messages has no "name"), the
reader passes over the messages, reads the rest of the chat, then seeks back and reads them:
that chat is read twice, nothing is buffered. "left_chats" before "chats", and a single-chat
export's "messages" before its fields, are read the same way. Two shapes in one file (never
written by Telegram): a "chats" object wins, as before, unless a single chat's complete fields
and messages came before it; then both are read. A key given twice may be read differently
from `json.loads` (which keeps the last).

Damage. A message that is not valid JSON but whose brackets close is skipped ("corrupt", with
chat, index, line, column and byte) and reading goes on after it. Damage to the structure
(brackets that do not match, text between values, the file ending inside a value: a truncated
export) stops the reading there: every message before it has been yielded, then IngestError
names the file, line, column and byte. Bad JSON in a file that gives no message at all is an
IngestError too. Values passed over are checked only for their brackets and strings.
"""

from __future__ import annotations

import json
import os
import re
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO, NamedTuple

import structlog
from tqdm import tqdm

from . import IngestError, Message, Reader

log = structlog.get_logger(__name__)

CHUNK_BYTES = 256 << 10  # the window takes the file this much at a time: ~6 MiB of it at most, decoded
PROGRESS_MIN_BYTES = 8 << 20  # a progress bar (bytes read) for larger files, when stderr is a terminal
MAX_VALUE_CHARS = 64 << 20  # a single message larger than this is not one: the structure is broken

_MARKERS = (
    '"date_unixtime"', '"from_id"', '"actor_id"', '"personal_chat"', '"private_group"',
    '"saved_messages"', '"private_supergroup"', '"public_supergroup"', '"private_channel"',
    '"public_channel"', '"bot_chat"',
)  # fmt: skip
# Keys that mean the message carries something other than text.
_MEDIA_KEYS = (
    "photo", "file", "media_type", "sticker_emoji", "poll", "location_information",
    "contact_information", "place_name", "game_title", "invoice_information",
    "live_location_period_seconds",
)  # fmt: skip


class BadMessage(ValueError):
    """One message that lacks what a message needs."""


def join_text(value: object) -> str:
    """`text` as Telegram writes it: a string, or a list of strings and entity objects."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = []
        for part in value:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text", ""), str):
                parts.append(part.get("text", ""))
            else:
                raise BadMessage(f"a text part is a {type(part).__name__}, not a string or entity")
        return "".join(parts)
    raise BadMessage(f"'text' is a {type(value).__name__}, not a string or a list")


def timestamp(raw: dict) -> tuple[datetime, bool]:
    """(UTC time, whether it had to be assumed from the zone-less `date`)."""
    if raw.get("date_unixtime") not in (None, ""):
        try:
            return datetime.fromtimestamp(int(raw["date_unixtime"]), timezone.utc), False
        except (TypeError, ValueError, OverflowError, OSError) as e:
            raise BadMessage(f"'date_unixtime' {raw['date_unixtime']!r} is not a Unix time") from e
    if isinstance(raw.get("date"), str):
        try:
            ts = datetime.fromisoformat(raw["date"])
        except ValueError as e:
            raise BadMessage(f"'date' {raw['date']!r} is not an ISO date") from e
        return (ts.replace(tzinfo=timezone.utc), True) if ts.tzinfo is None else (ts.astimezone(timezone.utc), False)
    raise BadMessage("no 'date_unixtime' or 'date'")


_from_unix = datetime.fromtimestamp
_UTC = timezone.utc
_ABSENT = object()


def _author_id(value: object) -> str:
    # Very old exports wrote from_id as a bare number.
    return f"user{value}" if isinstance(value, int) else str(value or "")


# ---------------------------------------------------------------------------------------------
# The window: the file's text a piece at a time, with exact positions


_WS = re.compile(r"[ \t\n\r]*")
_SEP = re.compile(r"[ \t\n\r]*,[ \t\n\r]*")
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKET_OR_QUOTE = re.compile(r'["\[\]{}]')
_SCALAR = re.compile(r'[^ \t\n\r,:\[\]{}"]*')
_OPENER = {"]": "[", "}": "{"}
_BOM = b"\xef\xbb\xbf"
_decode = json.JSONDecoder().raw_decode  # C scanner; strict, like json.loads
# The same C scanner without raw_decode's Python wrapper (it skips white space first, which the
# message loop has done already): one message is one call. StopIteration: no value at that index.
_scan = json.scanner.make_scanner(json.JSONDecoder())

# \\xHH with an even number of backslashes before it: an escape, not an escaped backslash and "x".
_TELEGRAM_X = re.compile(r"((?<!\\)(?:\\\\)*)\\x([0-9A-Fa-f]{2})")
LOOKAHEAD = 64 << 10  # characters kept ahead of a message in the window, so it is rarely cut


class _Pos(NamedTuple):
    byte: int  # offset in the file (after a replaced invalid UTF-8 byte, U+FFFD counts as 3)
    line: int
    column: int  # in characters, from 1, as the json module counts

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column} (byte {self.byte})"


class _Bad(Exception):
    """JSON that is not valid at `pos`. `recoverable`: the bad value's brackets close, and the
    window has moved past it, so reading can go on; otherwise the structure is lost."""

    def __init__(self, why: str, pos: _Pos, recoverable: bool = False) -> None:
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


class _Window:
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
            except json.JSONDecodeError as e:
                end = self.extent(start)
                if end is None:  # not all of it is in the window yet
                    if len(self.buf) - start > MAX_VALUE_CHARS:
                        raise _Bad(f"a value of more than {MAX_VALUE_CHARS >> 20} MiB", self.where(start)) from None
                    if self.fill(len(self.buf) - start):  # at least doubles what the window holds of it
                        continue
                    raise self.cut_short(start) from None
                self.pos = end
                raise _Bad(e.msg, self.where(e.pos), recoverable=True) from None
            if not self.eof and not isinstance(obj, (dict, list, str)) and _SCALAR.match(self.buf, start).end() == len(self.buf):
                self.fill()  # a number ("12", "1e") may go on in the next piece
                continue
            self.pos = end
            return obj

    def extent(self, i: int) -> int | None:
        """Where the value at `i` ends by its brackets and strings alone; None when the window
        ends first. Brackets that do not match are a `_Bad` that cannot be recovered from."""
        buf = self.buf
        c = buf[i]
        if c == '"':
            m = _STRING.match(buf, i)
            return m.end() if m else None
        if c not in "[{":
            end = _SCALAR.match(buf, i).end()
            if end == i:  # "]", "}", ",", ":" where a value should be
                raise _Bad("Expecting value", self.where(i))
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
                    raise _Bad(f"'{ch}' closes the '{opener}'", self.where(j))
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
            except _Bad as e:
                raise _Bad(e.why, e.pos) from None  # a broken key: no telling what it belonged to
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

    def skip(self) -> None:
        """Pass over the value at the next character, an array element or a member at a time."""
        c = self.peek()
        if c == "{":
            for _ in self.members():
                self.skip()
        elif c == "[":
            self.pos += 1
            if self.peek() == "]":
                self.pos += 1
                return
            while True:
                try:
                    self.value()
                except _Bad as e:
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
            except _Bad as e:
                if not e.recoverable:
                    raise

    # -- positions

    def where(self, i: int) -> _Pos:
        if not self._pieces:
            return _Pos(self._offset, self._lines + 1, self._col + 1)
        start, offset, lines, col = self._pieces[bisect_right(self._pieces, i, key=lambda p: p[0]) - 1]
        buf = self.buf
        nl = buf.count("\n", start, i)
        col = i - buf.rfind("\n", start, i) if nl else col + i - start + 1
        return _Pos(offset + len(buf[start:i].encode("utf-8")), lines + nl + 1, col)

    def bad(self, why: str) -> _Bad:
        """Damage to the structure at `pos` (the end of the file there: cut short)."""
        if self.pos >= len(self.buf) and self.eof:
            return self.cut_short(None)
        return _Bad(why, self.where(self.pos))

    def cut_short(self, start: int | None) -> _Bad:
        end = self.where(len(self.buf))
        if start is None:
            return _Bad("the file ends early (truncated?)", end)
        return _Bad(f"the file ends at byte {end.byte} (truncated?), inside the value", self.where(start))

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


# ---------------------------------------------------------------------------------------------
# The reader

_CHAT_KEYS = ("name", "type", "id")


class TelegramReader(Reader):
    format = "telegram"
    chunk_bytes = CHUNK_BYTES  # tests make it tiny to put piece boundaries everywhere

    @classmethod
    def sniff(cls, path: Path, head: str) -> bool:
        head = head.lstrip()
        if not head.startswith("{"):
            return False
        if re.search(r'"chats"\s*:\s*\{', head):
            return True
        return bool(re.search(r'"messages"\s*:\s*\[', head)) and any(k in head for k in _MARKERS)

    def read(self, owners: Sequence[str]) -> Iterator[Message]:
        try:
            f = open(self.path, "rb")  # noqa: SIM115 (closed by the with below)
            size = os.fstat(f.fileno()).st_size
        except OSError as e:
            raise IngestError(f"{self.path}: cannot read: {e.strerror or e}") from e
        self._ci = 0  # chats seen, both lists together: "chat #N" in errors
        self._first_bad: _Bad | None = None
        self._utf8_reported = False
        bar = tqdm(
            total=size, desc=f"read {self.path.name}", unit="B", unit_scale=True, unit_divisor=1024,
            leave=False, disable=None if size > PROGRESS_MIN_BYTES else True,
        )  # fmt: skip
        with f, bar:
            window = _Window(f, self.chunk_bytes, bar.update, self._bad_utf8)
            try:
                yield from self._export(window)
            except _Bad as e:
                n = self.stats.messages
                read = f"; the {n} message(s) before it were read" if n else ""
                raise IngestError(f"{self.path}: not valid JSON: {e.why} at {e.pos}{read}") from None
            except OSError as e:
                raise IngestError(f"{self.path}: cannot read: {e.strerror or e}") from e
        if self._first_bad is not None and not self.stats.messages:
            raise IngestError(f"{self.path}: not valid JSON: {self._first_bad.why} at {self._first_bad.pos}")

    def _bad_utf8(self, line: int) -> None:
        # One bad byte should not cost the whole export: replaced, said where (once), read on.
        if self._utf8_reported:
            return
        self._utf8_reported = True
        self.stats.repaired["invalid_utf8"] += 1
        self.stats.errors.append(f"{self.path}: line {line}: invalid UTF-8 replaced with U+FFFD")
        log.warning("invalid UTF-8 replaced", file=str(self.path), line=line)

    def _export(self, w: _Window) -> Iterator[Message]:
        """The top-level object: a full export ("chats", "left_chats") or a single chat."""
        c = w.peek()
        if c != "{":
            if c and c in '["-0123456789tfn':
                raise IngestError(f"{self.path}: JSON, but not a Telegram export: expected 'chats.list' (full export) or "
                                  "'messages' (one chat)")
            raise _Bad("the file is empty", w.where(w.pos)) if not c else w.bad("Expecting value")
        top: dict[str, object] = {}  # a single chat's name, type and id
        full = single = False
        later_left = later_single = None  # where to come back to, when read out of order
        for key in w.members():
            c = w.peek()
            if key == "chats" and c == "{" and not full:
                full = True
                yield from self._chat_lists(w, main=True)
            elif key == "left_chats" and c == "{":
                if full:
                    yield from self._chat_lists(w, main=False)
                elif later_left is None:
                    later_left = w.mark()
                    w.skip()
                else:
                    w.skip()
            elif key == "messages" and c == "[" and not full and not single:
                single = True
                if all(k in top for k in _CHAT_KEYS):
                    yield from self._messages(w, *self._chat_names(top, 0))
                else:
                    later_single = w.mark()
                    w.skip()
            elif key in _CHAT_KEYS:
                top[key] = self._field(w)
            else:
                w.skip()
        if w.peek():
            raise w.bad("Extra data")
        if full:
            if later_left is not None:
                w.seek(later_left)
                yield from self._chat_lists(w, main=False)
        elif later_single is not None:
            w.seek(later_single)
            yield from self._messages(w, *self._chat_names(top, 0))
        elif not single:
            raise IngestError(
                f"{self.path}: JSON, but not a Telegram export: expected 'chats.list' (full export) "
                "or 'messages' (one chat)"
            )

    def _chat_lists(self, w: _Window, main: bool) -> Iterator[Message]:
        """{"about": ..., "list": [chat, ...]}: "chats" (`main`, its list required) or "left_chats"."""
        found = False
        for key in w.members():
            if key == "list" and not found and w.peek() == "[":
                found = True
                yield from self._chats(w)
            elif key == "list" and main and not found:
                raise IngestError(f"{self.path}: Telegram export without a 'chats.list' list")
            else:
                w.skip()
        if main and not found:
            raise IngestError(f"{self.path}: Telegram export without a 'chats.list' list")

    def _chats(self, w: _Window) -> Iterator[Message]:
        w.pos += 1  # "["
        if w.peek() == "]":
            w.pos += 1
            return
        while True:
            ci, self._ci = self._ci, self._ci + 1
            yield from self._chat(w, ci)
            c = w.peek()
            if c == ",":
                w.pos += 1
            elif c == "]":
                w.pos += 1
                return
            else:
                raise w.bad("Expecting ',' delimiter")

    def _chat(self, w: _Window, ci: int) -> Iterator[Message]:
        if w.peek() != "{":
            w.skip()
            self.skip("corrupt", f"chat #{ci}", "not a chat object with a 'messages' list")
            return
        fields: dict[str, object] = {}
        has_messages = False
        later = None
        for key in w.members():
            if key == "messages" and not has_messages and w.peek() == "[":
                has_messages = True
                if all(k in fields for k in _CHAT_KEYS):
                    yield from self._messages(w, *self._chat_names(fields, ci))
                else:  # read them once the chat's name is known
                    later = w.mark()
                    w.skip()
            elif key in _CHAT_KEYS:
                fields[key] = self._field(w)
            else:
                w.skip()
        if not has_messages:
            self.skip("corrupt", f"chat #{ci}", "not a chat object with a 'messages' list")
        elif later is not None:
            resume = w.mark()
            w.seek(later)
            yield from self._messages(w, *self._chat_names(fields, ci))
            w.seek(resume)

    def _chat_names(self, fields: dict[str, object], ci: int) -> tuple[str, str, bool]:
        """(chat id, chat name, whether it is a chat with a bot: its replies are the bot's, and
        the owner's side is commands)."""
        chat_id = str(fields.get("id", f"#{ci}"))
        name = fields.get("name") or ("Saved Messages" if fields.get("type") == "saved_messages" else chat_id)
        return chat_id, str(name), fields.get("type") == "bot_chat"

    @staticmethod
    def _field(w: _Window) -> object:
        try:
            return w.value()
        except _Bad as e:
            raise _Bad(e.why, e.pos) from None  # a chat's own name or id: no reading on without it

    def _messages(self, w: _Window, chat_id: str, chat_name: str, bot_chat: bool) -> Iterator[Message]:
        """The array of one chat's messages, each decoded where it starts in the window."""
        w.pos += 1  # "["
        if w.peek() == "]":
            w.pos += 1
            return
        mi = 0
        while True:
            if len(w.buf) - w.pos < LOOKAHEAD and not w.eof:
                w.fill(LOOKAHEAD)  # ahead of the decoder, not after it fails: its error counts lines from the window start
            msg = self._decoded(w, chat_id, chat_name, bot_chat, mi)
            if msg is not None:
                self.stats.messages += 1
                yield msg
            mi += 1
            buf = w.buf
            m = _SEP.match(buf, w.pos)
            if m is not None and (j := m.end()) < len(buf) and buf[j] == "{":
                w.pos = j
                continue
            c = w.peek()
            if c == ",":
                w.pos += 1
                if w.peek() == "]":  # a comma after the last message: said, and the list ends
                    self._damaged(f"chat {chat_id} after message #{mi - 1} at {w.where(w.pos)}",
                                  _Bad("Expecting value", w.where(w.pos), True))
                    w.pos += 1
                    return
            elif c == "]":
                w.pos += 1
                return
            else:
                raise w.bad("Expecting ',' delimiter")

    def _decoded(self, w: _Window, chat_id: str, chat_name: str, bot_chat: bool, mi: int) -> Message | None:
        """The message at `w.pos` through the json decoder and _message, `w.pos` moved past it;
        None when it is skipped (counted and named)."""
        try:  # the whole message is in the window
            raw, end = _scan(w.buf, w.pos)
            if type(raw) is not dict:
                raise ValueError  # not a message: a number may go on in the next piece
            w.pos = end
        except (ValueError, StopIteration):  # JSONDecodeError too: more to read, or a broken message
            raw = self._x_escapes(w)
            if raw is None:
                try:
                    raw = w.value()
                except _Bad as e:
                    if not e.recoverable:
                        raise
                    self._damaged(f"chat {chat_id} message #{mi} at {e.pos}", e)
                    return None
        try:
            return self._message(raw, chat_id, chat_name, bot_chat)
        except BadMessage as e:
            where = f"chat {chat_id} message " + (
                f"id {raw['id']}" if isinstance(raw, dict) and "id" in raw else f"#{mi} (no id)"
            )
            self.skip("corrupt", where, str(e))
            return None

    def _x_escapes(self, w: _Window) -> dict | None:
        """The message at `w.pos` read with Telegram's own escapes for control characters.

        Telegram Desktop writes a control character other than tab, CR and LF inside a string as
        `\\xHH` (export_output_json.cpp, SerializeString), which JSON does not have: such a
        message, whole in the window, is read with those escapes as `\\u00HH` (the same
        character) and counted in stats.repaired. None (nothing moved) for any other message."""
        start = w.pos
        if start >= len(w.buf) or w.buf[start] != "{":
            return None
        try:
            end = w.extent(start)
        except _Bad:
            return None
        if end is None or "\\x" not in w.buf[start:end]:
            return None
        text = _TELEGRAM_X.sub(r"\1\\u00\2", w.buf[start:end])
        try:
            raw = json.loads(text)
        except ValueError:
            return None
        if type(raw) is not dict:
            return None
        w.pos = end
        self.stats.repaired["telegram_x_escape"] += 1
        return raw

    def _damaged(self, where: str, e: _Bad) -> None:
        self.skip("corrupt", where, f"not valid JSON: {e.why}")
        if self._first_bad is None:
            self._first_bad = e

    def _message(self, raw: object, chat_id: str, chat_name: str, bot_chat: bool = False) -> Message:
        # Run for every message of exports that hold millions: the common case first, without
        # calls or copies that a text message does not need.
        if type(raw) is not dict:
            raise BadMessage(f"a {type(raw).__name__}, not a message object")
        mid = raw.get("id")
        if mid is None:
            raise BadMessage("no 'id'")
        unix = raw.get("date_unixtime")
        # Every message of a current export: 11 digits stay below the year 9999.
        if type(unix) is str and unix.isdecimal() and len(unix) <= 11:
            ts = _from_unix(int(unix), _UTC)
        else:
            ts, assumed = timestamp(raw)
            if assumed:
                self.stats.repaired["date_assumed_utc"] += 1
        if raw.get("type", "message") != "message":
            # Service messages (joins, calls, pins, ...) and any type this reader does not know.
            return Message("telegram", chat_id, chat_name, str(mid), _author_id(raw.get("actor_id")),
                           str(raw.get("actor") or ""), False, ts, join_text(raw.get("text", "")), False, True)
        from_id = raw.get("from_id")
        if not from_id:
            raise BadMessage("no 'from_id'")
        text = raw.get("text", _ABSENT)
        if text is _ABSENT:
            if "text_entities" not in raw:
                raise BadMessage("no 'text'")
            text = raw["text_entities"]
        if type(text) is not str:
            text = join_text(text)
        empty = not text or text.isspace()
        if empty and "caption" in raw and isinstance(raw["caption"], (str, list)):
            caption = join_text(raw["caption"])
            if caption and not caption.isspace():
                text, empty = caption, False
        return Message(
            "telegram", chat_id, chat_name, str(mid),
            from_id if type(from_id) is str else _author_id(from_id),
            str(raw.get("from") or "Deleted Account"),
            False, ts, text,
            "forwarded_from" in raw,  # forwarded
            False,  # service
            # Telegram marks no bot accounts, but only bots send via an inline bot or with buttons.
            bot_chat or "via_bot" in raw or "inline_bot_buttons" in raw,
            empty and any(k in raw for k in _MEDIA_KEYS),  # media_only
        )  # fmt: skip
