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

Reading streams: a whole-account export runs to hundreds of MB. `JsonWindow` (json_window.py)
decodes the file a piece at a time (`CHUNK_BYTES`); a small walker follows objects and arrays
down to each chat's "messages"; each message is decoded on its own, where it starts in the window, by the json
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
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path

import structlog
from tqdm import tqdm

from . import IngestError, Message, Reader
from .json_window import BadJson, JsonWindow

log = structlog.get_logger(__name__)

CHUNK_BYTES = 256 << 10  # the window takes the file this much at a time: ~6 MiB of it at most, decoded
PROGRESS_MIN_BYTES = 8 << 20  # a progress bar (bytes read) for larger files, when stderr is a terminal

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
# The reader

_SEP = re.compile(r"[ \t\n\r]*,[ \t\n\r]*")
# The same C scanner without raw_decode's Python wrapper (it skips white space first, which the
# message loop has done already): one message is one call. StopIteration: no value at that index.
_scan = json.scanner.make_scanner(json.JSONDecoder())
# \\xHH with an even number of backslashes before it: an escape, not an escaped backslash and "x".
_TELEGRAM_X = re.compile(r"((?<!\\)(?:\\\\)*)\\x([0-9A-Fa-f]{2})")
LOOKAHEAD = 64 << 10  # characters kept ahead of a message in the window, so it is rarely cut

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
        self._first_bad: BadJson | None = None
        self._utf8_reported = False
        bar = tqdm(
            total=size, desc=f"read {self.path.name}", unit="B", unit_scale=True, unit_divisor=1024,
            leave=False, disable=None if size > PROGRESS_MIN_BYTES else True,
        )  # fmt: skip
        with f, bar:
            window = JsonWindow(f, self.chunk_bytes, bar.update, self._bad_utf8)
            try:
                yield from self._export(window)
            except BadJson as e:
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

    def _export(self, w: JsonWindow) -> Iterator[Message]:
        """The top-level object: a full export ("chats", "left_chats") or a single chat."""
        c = w.peek()
        if c != "{":
            if c and c in '["-0123456789tfn':
                raise IngestError(f"{self.path}: JSON, but not a Telegram export: expected 'chats.list' (full export) or "
                                  "'messages' (one chat)")
            raise BadJson("the file is empty", w.where(w.pos)) if not c else w.bad("Expecting value")
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

    def _chat_lists(self, w: JsonWindow, main: bool) -> Iterator[Message]:
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

    def _chats(self, w: JsonWindow) -> Iterator[Message]:
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

    def _chat(self, w: JsonWindow, ci: int) -> Iterator[Message]:
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
    def _field(w: JsonWindow) -> object:
        try:
            return w.value()
        except BadJson as e:
            raise BadJson(e.why, e.pos) from None  # a chat's own name or id: no reading on without it

    def _messages(self, w: JsonWindow, chat_id: str, chat_name: str, bot_chat: bool) -> Iterator[Message]:
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
                                  BadJson("Expecting value", w.where(w.pos), True))
                    w.pos += 1
                    return
            elif c == "]":
                w.pos += 1
                return
            else:
                raise w.bad("Expecting ',' delimiter")

    def _decoded(self, w: JsonWindow, chat_id: str, chat_name: str, bot_chat: bool, mi: int) -> Message | None:
        """The message at `w.pos` through the json decoder and _message, `w.pos` moved past it;
        None when it is skipped (counted and named)."""
        try:  # the whole message is in the window
            raw, end = _scan(w.buf, w.pos)
            if type(raw) is not dict:
                raise ValueError  # not a message: a number may go on in the next piece
            w.pos = end
        except (ValueError, StopIteration, RecursionError):  # JSONDecodeError too: more to read, or a broken message
            raw = self._x_escapes(w)
            if raw is None:
                try:
                    raw = w.value()
                except BadJson as e:
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

    def _x_escapes(self, w: JsonWindow) -> dict | None:
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
        except BadJson:
            return None
        if end is None or "\\x" not in w.buf[start:end]:
            return None
        text = _TELEGRAM_X.sub(r"\1\\u00\2", w.buf[start:end])
        try:
            raw = json.loads(text)
        except (ValueError, RecursionError):  # w.value() names what is wrong with it
            return None
        if type(raw) is not dict:
            return None
        w.pos = end
        self.stats.repaired["telegram_x_escape"] += 1
        return raw

    def _damaged(self, where: str, e: BadJson) -> None:
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
