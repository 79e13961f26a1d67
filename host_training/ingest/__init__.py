"""Readers that turn chat and blog exports into one normalised `Message` type.

One class per export format (`TelegramReader`, `WhatsAppReader`, `DiscordReader`,
`DiscordPackageReader`, `MboxReader`, `MarkdownReader`, and the owner's interview:
`InterviewReader`, `AboutReader`), each with `sniff(path, head)` to
recognise its files from their content and `read(owners)` to yield messages. A reader yields
everything it could parse, with flags saying why a message should not be trained on (service,
bot, forwarded, media only, deleted); `drop_reason` turns the flags into a reason and `prepare`
counts them. What it could not parse at all it skips, counts in
`reader.stats.skipped` and describes in `reader.stats.errors` (file and line or message id).
A file that cannot be read as a whole raises `IngestError`.

Owners are resolved after every export is read (`mark_owners`), so a display name seen late
in one export still marks the earlier messages sent under the same stable id. Per export,
`prepare` counts who wrote what (`counts_for_author`, `people`) so that an export where
--owner matched nobody is named, with the author most likely to be the owner (`likely_owner`).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import ClassVar, NamedTuple

import structlog

log = structlog.get_logger(__name__)

MAX_ERRORS_KEPT = 200  # per file: enough to act on, not a second copy of a broken export
SNIFF_BYTES = 64 * 1024
# Files that are certainly not exports (attachments inside export folders): not even sniffed.
MEDIA_SUFFIXES = frozenset(
    ".jpg .jpeg .png .gif .webp .heic .mp4 .mov .webm .mp3 .ogg .opus .m4a .wav .pdf .zip "
    ".tgs .vcf .html .css .js".split()
)


class IngestError(Exception):
    """An export file that cannot be read at all; the message names the file and why."""


@dataclass(slots=True)  # slots: made once per message read, millions per export
class Message:
    # The fields of messages.jsonl, in order.
    source: str  # "telegram", "whatsapp", "discord", "mail", "markdown"
    chat_id: str
    chat_name: str
    msg_id: str
    author_id: str  # the stable id where the format has one (Telegram "user123"), else the name
    author: str
    is_owner: bool
    ts: datetime  # timezone-aware, UTC
    text: str
    # Why not to train on it (see `drop_reason`), and what a post needs.
    forwarded: bool = False
    service: bool = False
    bot: bool = False  # written by a bot account or an inline bot, not by a person
    media_only: bool = False
    deleted: bool = False
    kind: str = "message"  # or "post": one piece of writing on its own (a blog post, a sent mail)
    title: str = ""

    def record(self) -> dict:
        """The messages.jsonl line for this message."""
        return {
            "source": self.source,
            "chat_id": self.chat_id,
            "chat_name": self.chat_name,
            "msg_id": self.msg_id,
            "author_id": self.author_id,
            "author": self.author,
            "is_owner": self.is_owner,
            "ts": iso_utc(self.ts),
            "text": self.text,
        }


def iso_utc(ts: datetime) -> str:
    return ts.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def drop_reason(m: Message) -> str | None:
    """Why a message is not material for the persona, or None to keep it."""
    if m.kind == "post" and not m.is_owner:
        return "not_owner"  # a post has no other speaker: someone else's (a received mail) is not the persona's
    if m.service:
        return "service"
    if m.bot:
        return "bot"
    if m.forwarded:
        return "forwarded"  # someone else's words, not the owner's voice
    if m.deleted:
        return "deleted"
    if m.media_only:
        return "media_only"
    if not m.text.strip():
        return "empty"
    return None


@dataclass
class ReadStats:
    messages: int = 0  # yielded
    skipped: Counter[str] = field(default_factory=Counter)  # not yielded, by reason
    repaired: Counter[str] = field(default_factory=Counter)  # yielded after a fix, by kind
    errors: list[str] = field(default_factory=list)


class Reader(ABC):
    """Base of the per-format readers: sniffing, and skipping with a clear error."""

    format: ClassVar[str]

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.stats = ReadStats()

    @classmethod
    @abstractmethod
    def sniff(cls, path: Path, head: str) -> bool:
        """Whether `head` (the file's first 64 KiB as text) is this format."""

    @abstractmethod
    def read(self, owners: Sequence[str]) -> Iterator[Message]:
        """Every message of the file; raises IngestError when the file cannot be read at all."""

    def skip(self, reason: str, where: str, why: str) -> None:
        """Count a record that cannot be used and say where it is, without its content."""
        self.stats.skipped[reason] += 1
        if len(self.stats.errors) < MAX_ERRORS_KEPT:
            self.stats.errors.append(f"{self.path}: {where}: {why}")
            log.warning("skipped", file=str(self.path), where=where, reason=reason, why=why)
        elif len(self.stats.errors) == MAX_ERRORS_KEPT:
            self.stats.errors.append(f"{self.path}: more skipped records, counted but not listed")
            log.warning("more records skipped; counting without listing them", file=str(self.path))


def readers() -> tuple[type[Reader], ...]:
    """In sniffing order: the strict JSON shapes first (an interview's answers.jsonl and its
    about.md, then Discord's need "guild"/"channel" or "ID"/"Timestamp"/"Contents" keys),
    Markdown last, as it also takes plain prose .txt files."""
    from .discord import DiscordPackageReader, DiscordReader
    from .interview import AboutReader, InterviewReader
    from .markdown import MarkdownReader
    from .mbox import MboxReader
    from .telegram import TelegramReader
    from .whatsapp import WhatsAppReader

    return (InterviewReader, AboutReader, DiscordReader, DiscordPackageReader, TelegramReader, WhatsAppReader,
            MboxReader, MarkdownReader)


def read_head(path: Path) -> str | None:
    """The start of a file as text, or None when it is binary (NUL bytes or not UTF-8 at all)."""
    with open(path, "rb") as f:
        raw = f.read(SNIFF_BYTES)
    if b"\x00" in raw:
        return None
    text = raw.decode("utf-8-sig", errors="replace")
    # A cut in the middle of a multi-byte character at the end is not a reason to call it binary.
    return None if text.count("\ufffd") > max(4, len(text) // 100) else text


def detect(path: Path | str) -> str | None:
    """The export format of a file (or of the first recognised file in a folder), or None."""
    path = Path(path)
    if path.is_dir():
        found, _ = discover(path)
        return found[0][1].format if found else None
    head = read_head(path)
    if head is None:
        return None
    for cls in readers():
        if cls.sniff(path, head):
            return cls.format
    return None


def _in_data_package(f: Path, root: Path) -> bool:
    """Whether `f` lies in a Discord data package (a folder with account/user.json or
    messages/index.json, in any case) within the folder being searched."""
    for folder in [f.parent, *f.parent.parents]:
        names = {p.name.lower(): p for p in folder.iterdir() if p.is_dir()} if folder.is_dir() else {}
        if ("account" in names and any(c.name.lower() == "user.json" for c in names["account"].iterdir())) or (
                "messages" in names and any(c.name.lower() == "index.json" for c in names["messages"].iterdir())):
            return True
        if folder == root:
            return False
    return False


def discover(path: Path | str) -> tuple[list[tuple[Path, type[Reader]]], list[str]]:
    """The export files under `path` with their reader, and why other named files were not taken.

    A file named directly must be recognised (else it is a problem); inside a folder,
    attachments and files of no known format are passed over quietly.
    """
    path = Path(path)
    if not path.exists():
        return [], [f"{path}: no such file or folder"]
    by_format = {cls.format: cls for cls in readers()}
    if path.is_file():
        fmt = detect(path)
        if fmt is None:
            hint = ""
            if path.suffix.lower() in (".html", ".htm"):
                hint = (
                    " (Telegram: export as 'Machine-readable JSON' instead of HTML; DiscordChatExporter: "
                    "choose the JSON format)"
                )
            return [], [
                f"{path}: unknown export format{hint}; expected a Telegram JSON export, a WhatsApp "
                "chat .txt, a DiscordChatExporter JSON export, a Discord data package (or its "
                "messages.json/messages.csv), an mbox of sent mail, or Markdown/plain-text posts"
            ]
        return [(path, by_format[fmt])], []
    found: list[tuple[Path, type[Reader]]] = []
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = f.relative_to(path).parts
        if any(part.startswith(".") for part in rel) or f.suffix.lower() in MEDIA_SUFFIXES:
            continue
        fmt = detect(f)
        if fmt is None:
            log.info("not an export, passed over", file=str(f))
            continue
        if fmt == "markdown" and _in_data_package(f, path):
            # A Discord data package's README and the like describe the package; they are not posts.
            log.info("a data package's own text, passed over", file=str(f))
            continue
        found.append((f, by_format[fmt]))
    if not found:
        return [], [f"{path}: no export of a known format in this folder"]
    return found, []


# ---------------------------------------------------------------------------------------------
# Owners

# Stable ids, never a name: Telegram's and Discord's "user123", a hashed mail address.
ID_LIKE = re.compile(r"^(?:(?:user|channel|chat)\d+|mail_[0-9a-f]{12})$", re.IGNORECASE)


def persona_names(owners: Sequence[str]) -> tuple[str, str]:
    """(author_id, author) for the owner's own writing: the first id-like and name-like values."""
    owners = [o.strip() for o in owners if o.strip()] or ["owner"]
    ids = [o for o in owners if ID_LIKE.match(o)]
    names = [o for o in owners if not ID_LIKE.match(o)]
    return (ids or names)[0], (names or ids)[0]


@dataclass
class OwnerMatch:
    ids: set[str]  # author ids treated as the owner
    ambiguous: dict[str, set[str]]  # an --owner name shared by several ids within one source
    names: set[str] = field(default_factory=set)  # the --owner values, casefolded

    def is_owner(self, source: str, author_id: str, author: str) -> bool:
        return author_id in self.ids or author.strip().casefold() in self.names


def owner_match(authors: Iterable[tuple[str, str, str]], owners: Sequence[str]) -> OwnerMatch:
    """Which authors, given as distinct (source, author id, display name), are the owner: an
    id or a name equal (case-insensitively) to an --owner value, and every id ever seen under
    an owner name, so a rename keeps the owner the owner."""
    wanted = {o.strip().casefold() for o in owners if o.strip()}
    authors = list(authors)
    ids = {aid for _, aid, _ in authors if aid and aid.casefold() in wanted}
    named: dict[tuple[str, str], set[str]] = {}
    for source, aid, name in authors:
        if aid and name.strip().casefold() in wanted:
            ids.add(aid)
            named.setdefault((source, name.strip().casefold()), set()).add(aid)
    ambiguous = {name: got for (_, name), got in named.items() if len(got) > 1}
    return OwnerMatch(ids=ids, ambiguous=ambiguous, names=wanted)


def counts_for_author(reason: str | None) -> bool:
    """Whether a message with this `drop_reason` counts as its author's in the per-export
    author counts: a person's own words, owner or not ("not_owner" is that very decision),
    but no service line, bot, forward, deletion, media-only or empty message."""
    return reason in (None, "not_owner")


Author = tuple[str, str, str]  # (source, author id, display name) as read


def owner_value(author: Author) -> str:
    """What to give as --owner for an author: the stable id where the format has one
    (Telegram's and Discord's user..., mail_...), else the display name (WhatsApp)."""
    _, author_id, name = author
    return author_id or name


class Person(NamedTuple):
    """One author of an export: an id seen under several names is one person."""

    value: str  # what to give as --owner (`owner_value`)
    names: tuple[str, ...]  # display names, most used first
    messages: int

    @property
    def has_id(self) -> bool:
        return self.value not in self.names


def people(tally: Mapping[Author, int]) -> list[Person]:
    """The authors of one export as people, most messages first (then by name and id: same
    input, same order)."""
    names: dict[str, Counter[str]] = {}
    for author, n in tally.items():
        names.setdefault(owner_value(author), Counter())[author[2]] += n
    found = [Person(v, tuple(name for name, _ in sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))), c.total())
             for v, c in names.items()]
    return sorted(found, key=lambda p: (-p.messages, p.names[0].casefold(), p.value))


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"\w+", text.casefold()) if len(w) > 1}


def likely_owner(found: Sequence[Person], owners: Sequence[str]) -> Person | None:
    """In an export where no author matched --owner, the one most likely to be the owner: the
    one with most messages whose name shares a word with an --owner name ("Mira" and
    "Mira K."), else the one with most messages (people write most in their own exports)."""
    wanted = set().union(*(_words(o) for o in owners if not ID_LIKE.match(o.strip()) and "@" not in o))
    close = (p for p in found if any(wanted & _words(name) for name in p.names))
    return next(close, found[0] if found else None)


def mark_owners(messages: Sequence[Message], owners: Sequence[str]) -> tuple[list[Message], OwnerMatch]:
    """`owner_match` applied to a list of messages (the owner's marked `is_owner`)."""
    match = owner_match({(m.source, m.author_id, m.author) for m in messages}, owners)
    marked = [m if m.is_owner else replace(m, is_owner=match.is_owner(m.source, m.author_id, m.author)) for m in messages]
    return marked, match
