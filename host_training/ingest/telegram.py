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
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path

import structlog

from . import IngestError, Message, Reader

log = structlog.get_logger(__name__)

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


def _author_id(value: object) -> str:
    # Very old exports wrote from_id as a bare number.
    return f"user{value}" if isinstance(value, int) else str(value or "")


class TelegramReader(Reader):
    format = "telegram"

    @classmethod
    def sniff(cls, path: Path, head: str) -> bool:
        head = head.lstrip()
        if not head.startswith("{"):
            return False
        if re.search(r'"chats"\s*:\s*\{', head):
            return True
        return bool(re.search(r'"messages"\s*:\s*\[', head)) and any(k in head for k in _MARKERS)

    def read(self, owners: Sequence[str]) -> Iterator[Message]:
        for ci, chat in enumerate(self._chats(self._load())):
            if not isinstance(chat, dict) or not isinstance(chat.get("messages"), list):
                self.skip("corrupt", f"chat #{ci}", "not a chat object with a 'messages' list")
                continue
            chat_id = str(chat.get("id", f"#{ci}"))
            chat_name = str(chat.get("name") or ("Saved Messages" if chat.get("type") == "saved_messages" else chat_id))
            for mi, raw in enumerate(chat["messages"]):
                where = f"chat {chat_id} message " + (
                    f"id {raw['id']}" if isinstance(raw, dict) and "id" in raw else f"#{mi} (no id)"
                )
                try:
                    msg = self._message(raw, chat_id, chat_name)
                except BadMessage as e:
                    self.skip("corrupt", where, str(e))
                    continue
                self.stats.messages += 1
                yield msg

    def _load(self) -> object:
        try:
            raw = self.path.read_bytes()
        except OSError as e:
            raise IngestError(f"{self.path}: cannot read: {e.strerror or e}") from e
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            # One bad byte should not cost the whole export: replace it, say where, go on.
            line = raw.count(b"\n", 0, e.start) + 1
            text = raw.decode("utf-8-sig", errors="replace")
            self.stats.repaired["invalid_utf8"] += 1
            self.stats.errors.append(f"{self.path}: line {line}: invalid UTF-8 replaced with U+FFFD")
            log.warning("invalid UTF-8 replaced", file=str(self.path), line=line)
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise IngestError(f"{self.path}: not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}") from e

    def _chats(self, data: object) -> list:
        if isinstance(data, dict) and isinstance(data.get("chats"), dict):
            chats = data["chats"].get("list")
            if not isinstance(chats, list):
                raise IngestError(f"{self.path}: Telegram export without a 'chats.list' list")
            left = data.get("left_chats")
            left = left.get("list") if isinstance(left, dict) else None
            return chats + (left if isinstance(left, list) else [])
        if isinstance(data, dict) and isinstance(data.get("messages"), list):
            return [data]
        raise IngestError(
            f"{self.path}: JSON, but not a Telegram export: expected 'chats.list' (full export) "
            "or 'messages' (one chat)"
        )

    def _message(self, raw: object, chat_id: str, chat_name: str) -> Message:
        if not isinstance(raw, dict):
            raise BadMessage(f"a {type(raw).__name__}, not a message object")
        if raw.get("id") is None:
            raise BadMessage("no 'id'")
        ts, assumed = timestamp(raw)
        if assumed:
            self.stats.repaired["date_assumed_utc"] += 1
        common = dict(source="telegram", chat_id=chat_id, chat_name=chat_name, msg_id=str(raw["id"]), ts=ts)
        if raw.get("type", "message") != "message":
            # Service messages (joins, calls, pins, ...) and any type this reader does not know.
            return Message(
                **common,
                author_id=_author_id(raw.get("actor_id")),
                author=str(raw.get("actor") or ""),
                is_owner=False,
                text=join_text(raw.get("text", "")),
                service=True,
            )
        if not raw.get("from_id"):
            raise BadMessage("no 'from_id'")
        if "text" not in raw and "text_entities" not in raw:
            raise BadMessage("no 'text'")
        text = join_text(raw["text"] if "text" in raw else raw["text_entities"])
        caption = raw.get("caption")
        if isinstance(caption, (str, list)) and join_text(caption).strip() and not text.strip():
            text = join_text(caption)
        return Message(
            **common,
            author_id=_author_id(raw["from_id"]),
            author=str(raw.get("from") or "Deleted Account"),
            is_owner=False,
            text=text,
            forwarded="forwarded_from" in raw,
            media_only=not text.strip() and any(k in raw for k in _MEDIA_KEYS),
        )
