"""Discord: DiscordChatExporter's JSON export, and the data package Discord sends on request.

DiscordChatExporter (Tyrrrz), format "JSON", one file per channel or thread:

    {"guild": {"id", "name", "iconUrl"},                      "id" "0" and "Direct Messages" for DMs
     "channel": {"id", "type", "categoryId", "category", "name", "topic"},
     "dateRange": {...}, "exportedAt": "...",
     "messages": [{"id", "type": "Default"|"Reply"|"RecipientAdd"|"ChannelPinnedMessage"|...,
                   "timestamp": "2024-03-12T21:14:00.123+00:00", "timestampEdited": ...|null,
                   "isPinned", "content",
                   "author": {"id", "name", "discriminator", "nickname", "color", "isBot", "roles", "avatarUrl"},
                   "attachments": [...], "embeds": [...], "stickers": [...], "reactions": [...],
                   "mentions": [{"id", "name", "nickname", ...}],
                   "reference": {"type"?, "messageId", "channelId", "guildId"}?,
                   "forwardedMessage": {...}?}, ...],
     "messageCount": N}

`author.id` is the stable id; the display name is `nickname` (server display name) or `name`.
Types other than Default and Reply (and the slash-command replies, written by bots) are system
notifications: their `content` is the exporter's fallback text ("Pinned a message."), flagged
service. The exporter writes mentions as "@name" by default; raw `<@123>` forms (exports made
with markdown formatting off) are rendered from the message's `mentions`. An edited message
holds its last text under its first timestamp.

The data package ("Request all of my Data"), unzipped:

    account/user.json                 {"id", "username", "global_name", ...}   (or Account/)
    messages/index.json               {"<channel id>": "Direct Message with noor#0" | "general in Club" | null}
    messages/c<channel id>/channel.json   {"id", "type", "name"?, "guild": {"id", "name"}?, "recipients"?}
    messages/c<channel id>/messages.json  [{"ID", "Timestamp", "Contents", "Attachments"}, ...]   newer
    messages/c<channel id>/messages.csv   ID,Timestamp,Contents,Attachments                        older

It holds only the account's own messages. Each messages.json/.csv is one export file, so
`discover` finds them one by one when given the package folder, and a single one can be named
directly; each is recognised from its own content (the keys or the CSV header), and its
channel.json, index.json and account/user.json are looked up around it when present.
Timestamps are "2023-05-03 20:15:39", or with microseconds and "+00:00" in older packages; no
zone means UTC.

Ids are written as "user<id>", "channel<id>" and "msg<id>" in both formats, so the same message
in an exporter file and in the package is recognised as a repeat, `--owner user<id>` reads as
an id (not a name) to `prepare`, and a bare 18-digit snowflake never looks like a card number
to the privacy scrubber. A bare snowflake given as --owner is matched too.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

import structlog

from . import IngestError, Message, Reader, persona_names

log = structlog.get_logger(__name__)

# Message types a person writes; everything else (joins, pins, calls, thread notices, boosts
# and types newer than this reader, which the exporter writes as numbers) is a service message.
USER_TYPES = frozenset({"Default", "Reply", "ChatInputCommand", "ContextMenuCommand", "0", "19", "20", "23"})
OWNER_ID = re.compile(r"^(?:user)?(\d{15,21})$", re.IGNORECASE)  # an --owner value naming a Discord account

_USER_MENTION = re.compile(r"<@!?(\d+)>")
_ROLE_MENTION = re.compile(r"<@&\d+>")
_CHANNEL_MENTION = re.compile(r"<#\d+>")
_CUSTOM_EMOJI = re.compile(r"<a?:(\w+):\d+>")
_TIMESTAMP = re.compile(r"<t:(-?\d{1,12})(?::[tTdDfFR])?>")
_DISCRIMINATOR = re.compile(r"(?<=\w)#(?:0|\d{4})\b")


class BadMessage(ValueError):
    """One message that lacks what a message needs."""


def user_id(raw_id: object) -> str:
    return f"user{raw_id}"


def render_markup(text: str, names: dict[str, str] | None = None) -> str:
    """Raw Discord markup as a reader would see it: <@123> -> @name, <#1> -> #channel,
    <:fog:1> -> :fog:, <t:1710278040:R> -> 2024-03-12 21:14 UTC."""
    names = names or {}
    text = _USER_MENTION.sub(lambda m: "@" + names.get(m[1], "user"), text)
    text = _ROLE_MENTION.sub("@role", text)
    text = _CHANNEL_MENTION.sub("#channel", text)
    text = _CUSTOM_EMOJI.sub(r":\1:", text)

    def stamp(m: re.Match) -> str:
        try:
            return datetime.fromtimestamp(int(m[1]), timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        except (ValueError, OverflowError, OSError):
            return m[0]

    return _TIMESTAMP.sub(stamp, text)


def parse_time(value: object, what: str) -> datetime:
    """ISO 8601 with or without a zone (no zone: UTC), to the second."""
    if not isinstance(value, str) or not value.strip():
        raise BadMessage(f"no '{what}'")
    try:
        ts = datetime.fromisoformat(value.strip())
    except ValueError as e:
        raise BadMessage(f"'{what}' {value!r} is not an ISO date") from e
    ts = ts.replace(tzinfo=timezone.utc) if ts.tzinfo is None else ts.astimezone(timezone.utc)
    # Seconds only: the exporter keeps milliseconds, the package often not, and the same
    # message in both should be one message.
    return ts.replace(microsecond=0)


def read_text(reader: Reader) -> str:
    """The file as text; invalid UTF-8 is replaced and counted (with its line), a file that
    cannot be read is an IngestError."""
    path = reader.path
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise IngestError(f"{path}: cannot read: {e.strerror or e}") from e
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        reader.stats.repaired["invalid_utf8"] += 1
        reader.stats.errors.append(f"{path}: line {line}: invalid UTF-8 replaced with U+FFFD")
        log.warning("invalid UTF-8 replaced", file=str(path), line=line)
        return raw.decode("utf-8-sig", errors="replace")


def load_json(reader: Reader) -> object:
    """The file as JSON; invalid JSON is an IngestError naming line and column."""
    path = reader.path
    text = read_text(reader)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise IngestError(
            f"{path}: not valid JSON (a truncated export?): {e.msg} at line {e.lineno}, column {e.colno}"
        ) from e
    except (ValueError, RecursionError) as e:  # valid JSON past any export: a number of 4,300+ digits, deep nesting
        raise IngestError(f"{path}: JSON beyond what an export holds ({str(e)[:80]}): "
                          "not read; is this file an export?") from None


# ---------------------------------------------------------------------------------------------
# DiscordChatExporter


class DiscordReader(Reader):
    format = "discord"

    @classmethod
    def sniff(cls, path: Path, head: str) -> bool:
        return (
            head.lstrip().startswith("{")
            and bool(re.search(r'"guild"\s*:\s*\{', head))
            and bool(re.search(r'"channel"\s*:\s*\{', head))
            and bool(re.search(r'"messages"\s*:\s*\[', head))
        )

    def read(self, owners: Sequence[str]) -> Iterator[Message]:
        data = load_json(self)
        if not isinstance(data, dict) or not isinstance(data.get("messages"), list):
            raise IngestError(f"{self.path}: JSON, but not a DiscordChatExporter export: no 'messages' list")
        guild = data.get("guild") if isinstance(data.get("guild"), dict) else {}
        channel = data.get("channel") if isinstance(data.get("channel"), dict) else {}
        raw_chat = str(channel.get("id") or self.path.stem)
        chat_id = f"channel{raw_chat}" if raw_chat.isdigit() else raw_chat
        chat_name = self._chat_name(guild, channel, raw_chat)
        wanted = {o.strip().casefold() for o in owners if o.strip()}
        for mi, raw in enumerate(data["messages"]):
            where = f"channel {raw_chat} message #{mi}" + (
                f" (id {raw['id']})" if isinstance(raw, dict) and raw.get("id") is not None else " (no id)"
            )
            try:
                msg = self._message(raw, chat_id, chat_name, wanted)
            except BadMessage as e:
                self.skip("corrupt", where, str(e))
                continue
            self.stats.messages += 1
            yield msg

    @staticmethod
    def _chat_name(guild: dict, channel: dict, fallback: str) -> str:
        name = str(channel.get("name") or fallback)
        if str(guild.get("id", "0")) == "0" or not guild.get("name") or guild.get("name") == "Direct Messages":
            return name  # a DM or group DM: the channel is named after the others
        parent = channel.get("category") if str(channel.get("type", "")).endswith("Thread") else None
        return f"{guild['name']} #{parent} / {name}" if parent else f"{guild['name']} #{name}"

    def _message(self, raw: object, chat_id: str, chat_name: str, wanted: set[str]) -> Message:
        if not isinstance(raw, dict):
            raise BadMessage(f"a {type(raw).__name__}, not a message object")
        if raw.get("id") is None:
            raise BadMessage("no 'id'")
        author = raw.get("author")
        if not isinstance(author, dict) or author.get("id") in (None, ""):
            raise BadMessage("no 'author' with an 'id'")
        content = raw.get("content")
        if content is None:
            content = ""
        if not isinstance(content, str):
            raise BadMessage(f"'content' is a {type(content).__name__}, not a string")
        ts = parse_time(raw.get("timestamp"), "timestamp")

        names = {}
        for m in raw.get("mentions") or []:
            if isinstance(m, dict) and m.get("id") is not None:
                names[str(m["id"])] = str(m.get("nickname") or m.get("name") or "user")
        text = render_markup(content, names)
        aid = str(author["id"])
        display = str(author.get("nickname") or author.get("name") or "Deleted User")
        handles = {aid, user_id(aid), display, str(author.get("name") or "")}
        if author.get("discriminator") not in (None, "", "0", "0000"):
            handles.add(f"{author.get('name')}#{author['discriminator']}")
        reference = raw.get("reference") if isinstance(raw.get("reference"), dict) else {}
        kind = str(raw.get("type") or "Default")
        return Message(
            source="discord",
            chat_id=chat_id,
            chat_name=chat_name,
            msg_id=f"msg{raw['id']}",
            author_id=user_id(aid),
            author=display,
            is_owner=any(h.strip().casefold() in wanted for h in handles if h.strip()),
            ts=ts,
            text=text,
            service=kind not in USER_TYPES,
            bot=bool(author.get("isBot")),
            forwarded=isinstance(raw.get("forwardedMessage"), dict) or reference.get("type") == "Forward",
            media_only=not text.strip() and any(raw.get(k) for k in ("attachments", "stickers", "embeds")),
        )


# ---------------------------------------------------------------------------------------------
# The data package


def _child(folder: Path, name: str) -> Path | None:
    """`folder/name`, any case ("account" in older packages, "Account" in newer)."""
    exact = folder / name
    if exact.exists():
        return exact
    try:
        return next((p for p in folder.iterdir() if p.name.lower() == name.lower()), None)
    except OSError:
        return None


def _read_json(path: Path | None) -> object:
    if path is None:
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError, RecursionError):
        return None


@lru_cache(maxsize=16)
def _index(path: Path, mtime_ns: int) -> dict[str, str]:
    """messages/index.json (channel id -> description), read once per package, not per channel."""
    data = _read_json(path)
    return {str(k): str(v) for k, v in data.items() if v} if isinstance(data, dict) else {}


@lru_cache(maxsize=16)
def _account(path: Path, mtime_ns: int) -> tuple[str, str] | None:
    """(id, name) from account/user.json, once per package. Nothing else of that file (it holds
    the e-mail address, phone and IP addresses) is kept."""
    data = _read_json(path)
    if not isinstance(data, dict) or data.get("id") in (None, ""):
        return None
    return str(data["id"]), str(data.get("global_name") or data.get("username") or "")


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0


def package_account(messages_file: Path) -> tuple[str, str] | None:
    """(id, name) of the package's account/user.json, looked for above messages/c123/."""
    for folder in list(messages_file.parents)[1:4]:
        account = _child(folder, "account")
        user = _child(account, "user.json") if account and account.is_dir() else None
        if user and user.is_file() and (found := _account(user, _mtime(user))):
            return found
    return None


class DiscordPackageReader(Reader):
    format = "discord_package"

    @classmethod
    def sniff(cls, path: Path, head: str) -> bool:
        if re.match(r'^"?ID"?,"?Timestamp"?,"?Contents"?(?:,"?Attachments"?)?\r?$', head.split("\n", 1)[0]):
            return True
        return (
            head.lstrip().startswith("[")
            and bool(re.match(r'\s*\[\s*\{\s*"ID"\s*:', head))
            and bool(re.search(r'"Timestamp"\s*:', head))
            and bool(re.search(r'"Contents"\s*:', head))
        )

    def read(self, owners: Sequence[str]) -> Iterator[Message]:
        rows = self._rows()
        chat_id, chat_name = self._chat()
        author_id, author, is_owner = self._owner(owners)
        for where, row in rows:
            try:
                msg = self._message(row, chat_id, chat_name, author_id, author, is_owner)
            except BadMessage as e:
                self.skip("corrupt", where, str(e))
                continue
            self.stats.messages += 1
            yield msg

    # -- the file

    def _rows(self) -> Iterator[tuple[str, object]]:
        """(where, row) for every record; the JSON is checked before the first one is yielded."""
        if self.path.suffix.lower() == ".csv" or not self._looks_like_json():
            return self._csv_rows()
        data = load_json(self)
        if not isinstance(data, list):
            raise IngestError(f"{self.path}: JSON, but not a Discord package messages list")
        return ((f"message #{i}" + (f" (ID {r['ID']})" if isinstance(r, dict) and "ID" in r else ""), r)
                for i, r in enumerate(data))  # fmt: skip

    def _looks_like_json(self) -> bool:
        try:
            with open(self.path, "rb") as f:
                return f.read(64).lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"[")
        except OSError as e:
            raise IngestError(f"{self.path}: cannot read: {e.strerror or e}") from e

    def _csv_rows(self) -> Iterator[tuple[str, object]]:
        text = read_text(self)
        reader = csv.DictReader(io.StringIO(text, newline=""))
        if not reader.fieldnames or not {"ID", "Timestamp", "Contents"} <= set(reader.fieldnames):
            raise IngestError(f"{self.path}: CSV without the ID,Timestamp,Contents header of a Discord package")
        row_no = 0
        while True:
            start = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                self.skip("corrupt", f"line {start}", f"not a CSV row ({e})")
                continue
            row_no += 1
            yield f"row {row_no} (line {start})", row

    # -- around the file: channel.json, index.json, account/user.json

    def _chat(self) -> tuple[str, str]:
        folder = self.path.parent
        info = _read_json(_child(folder, "channel.json"))
        info = info if isinstance(info, dict) else {}
        raw_id = str(info.get("id") or re.sub(r"^c(?=\d+$)", "", folder.name))
        chat_id = f"channel{raw_id}" if raw_id.isdigit() else raw_id
        index = _child(folder.parent, "index.json")
        name = _index(index, _mtime(index)).get(raw_id) if index else None
        if not name:
            guild = info.get("guild") if isinstance(info.get("guild"), dict) else {}
            if info.get("name") and guild.get("name"):
                name = f"{guild['name']} #{info['name']}"
            else:
                name = info.get("name") or ("Direct Message" if info.get("type") in (1, "DM") else raw_id)
        return chat_id, _DISCRIMINATOR.sub("", str(name))

    def _owner(self, owners: Sequence[str]) -> tuple[str, str, bool]:
        """(author_id, author, is_owner) for every message of the package: the account's.

        With account/user.json: its id and name; the messages are the owner's unless --owner
        names Discord ids and this account is not one of them (someone else's package).
        Without it: the first Discord id in --owner (bare or user<id>), else the first --owner
        value, and the messages are the owner's, since a package holds only its account's."""
        given = [o.strip() for o in owners if o.strip()]
        ids = [m[1] for o in given if (m := OWNER_ID.match(o))]
        account = package_account(self.path)
        if account is not None:
            aid, name = account
            name = name or user_id(aid)
            mine = not ids or aid in ids
            if not mine:
                log.warning("data package of another account than --owner; not taken as the owner", file=str(self.path))
            return user_id(aid), name, mine
        names = [o for o in given if not OWNER_ID.match(o)]
        fallback_id, fallback_name = persona_names(names or given)
        log.info("no account/user.json near the package messages; taking them as the owner's", file=str(self.path))
        return (user_id(ids[0]) if ids else fallback_id), (names[0] if names else fallback_name), True

    def _message(
        self, row: object, chat_id: str, chat_name: str, author_id: str, author: str, is_owner: bool
    ) -> Message:
        if not isinstance(row, dict):
            raise BadMessage(f"a {type(row).__name__}, not a message object")
        if row.get("ID") in (None, ""):
            raise BadMessage("no 'ID'")
        contents = row.get("Contents")
        if contents is None:
            contents = ""
        if not isinstance(contents, str):
            raise BadMessage(f"'Contents' is a {type(contents).__name__}, not a string")
        text = render_markup(contents)
        return Message(
            source="discord",
            chat_id=chat_id,
            chat_name=chat_name,
            msg_id=f"msg{row['ID']}",
            author_id=author_id,
            author=author,
            is_owner=is_owner,
            ts=parse_time(row.get("Timestamp"), "Timestamp"),
            text=text,
            media_only=not text.strip() and bool(str(row.get("Attachments") or "").strip()),
        )
