"""The owner's own writing: Markdown or plain-text posts, one file each.

    ---
    title: Why I love fog
    date: 2024-03-12 21:14
    tags: [weather, walks]
    ---
    Body in **Markdown**, with [links](https://...) and ![images](x.png).

Front matter is read as simple `key: value` lines (quoted or not), `[a, b]` lists and `- item`
lists, without a YAML library. The title is `title:`, else a leading `# heading`, else the file
name. The date is `date:` (ISO forms; without a zone, UTC), else a `YYYY-MM-DD` file-name
prefix, else the file's modification time (with a warning). Every post is one owner message in
the chat "posts". Markdown noise is stripped: images and fenced code are dropped, link text is
kept without its target, emphasis and heading marks go, list items become "- item". Text
whose lines mostly start with a date and a time is a chat log, not a post: it is left to the
WhatsApp reader, which reads it or names the line it cannot read.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path

import structlog

from . import IngestError, Message, Reader, persona_names
from .whatsapp import looks_like_chat

log = structlog.get_logger(__name__)

SUFFIXES = frozenset({".md", ".markdown", ".mdown", ".mkd", ".txt", ".text"})


# ---------------------------------------------------------------------------------------------
# Front matter


def _scalar(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def parse_front_matter(lines: Sequence[str]) -> dict[str, str | list[str]]:
    """`key: value`, `key: [a, b]` and `key:` followed by `- item` lines; keys lower-cased."""
    data: dict[str, str | list[str]] = {}
    list_key = None
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if (item := re.match(r"^\s*-\s+(.*)$", line)) and list_key:
            data[list_key].append(_scalar(item[1]))  # type: ignore[union-attr]
            continue
        kv = re.match(r"^([A-Za-z_][\w\-]*)\s*:\s*(.*)$", line)
        if not kv:
            continue
        key, value = kv[1].lower(), kv[2].strip()
        list_key = None
        if not value:
            data[key], list_key = [], key
        elif value.startswith("[") and value.endswith("]"):
            data[key] = [_scalar(v) for v in value[1:-1].split(",") if v.strip()]
        else:
            data[key] = _scalar(value)
    return {k: ("" if v == [] else v) for k, v in data.items()}


def split_front_matter(text: str) -> tuple[dict[str, str | list[str]], str]:
    """(front matter, body); raises ValueError when `---` opens front matter that never closes."""
    lines = text.split("\n")
    if not lines or lines[0].strip() != "---":
        return {}, text
    for i in range(1, len(lines)):
        if lines[i].strip() in ("---", "..."):
            return parse_front_matter(lines[1:i]), "\n".join(lines[i + 1 :])
    raise ValueError("front matter opened with '---' on line 1 is never closed")


def parse_date(value: str) -> datetime | None:
    """ISO 8601 dates and times, and Jekyll's "2024-03-12 21:14:00 +0100"; naive means UTC."""
    value = value.strip()
    jekyll = re.fullmatch(r"(\d{4}-\d{2}-\d{2})[ T](\d{1,2}:\d{2}(?::\d{2})?)\s*([+-]\d{2}):?(\d{2})", value)
    if jekyll:
        value = f"{jekyll[1]}T{jekyll[2]}{jekyll[3]}:{jekyll[4]}"
    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        return None
    return ts.replace(tzinfo=timezone.utc) if ts.tzinfo is None else ts.astimezone(timezone.utc)


# ---------------------------------------------------------------------------------------------
# Markdown to text

# Every rule's scan is bounded (SPAN characters, or a line), so a post where one half of a
# construct has no other costs time in proportion to its length, never to its square: before,
# 64 KB of "[" took 20 s and a 1 MB post of "![" hours. Fenced code and comments are dropped by
# `_drop_fences` and `_drop_comments`, which look each closing up instead of searching for it.
SPAN = 500  # the most characters link text, a reference or an emphasis spans
URL_SPAN = 1000  # ... and a link's target, within its line

_RULES: list[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]]] = [
    (re.compile(rf"[ \t]?!\[[^\[\]]{{0,{SPAN}}}\](?:\([^)\n]{{0,{URL_SPAN}}}\)|\[[^\[\]]{{0,{SPAN}}}\])"), ""),  # images
    (re.compile(rf"\[\^[^\[\]]{{1,{SPAN}}}\]:?"), ""),  # footnote marks
    (re.compile(rf"\[([^\[\]]{{1,{SPAN}}})\]\([^)\n]{{0,{URL_SPAN}}}\)"), r"\1"),  # [text](url)
    (re.compile(rf"\[([^\[\]]{{1,{SPAN}}})\]\[[^\[\]]{{0,{SPAN}}}\]"), r"\1"),  # [text][ref]
    (re.compile(rf"^[ \t]*\[[^\[\]\n]{{1,{SPAN}}}\]:[ \t]*\S+.*$", re.MULTILINE), ""),  # [ref]: url
    (re.compile(rf"<((?:https?|ftp|mailto):[^<>\s]{{1,{URL_SPAN}}})>"), r"\1"),  # <https://...>
    (re.compile(rf"</?[A-Za-z][^<>\n]{{0,{URL_SPAN}}}>"), ""),  # HTML tags (their text stays)
    (re.compile(r"^[ \t]{0,3}#{1,6}[ \t]+(.*)$", re.MULTILINE), lambda m: m[1].rstrip(" \t#")),  # headings
    (re.compile(r"^[ \t]*>[ \t]?", re.MULTILINE), ""),  # block quotes
    (re.compile(r"^[ \t]*([-*_])(?:[ \t]*\1){2,}[ \t]*$", re.MULTILINE), ""),  # rules
    (re.compile(r"^([ \t]*)[*+][ \t]+", re.MULTILINE), r"\1- "),  # bullets
    (re.compile(rf"(\*\*|__)(?=\S)(.{{1,{SPAN}}}?)(?<=\S)\1"), r"\2"),  # strong
    (re.compile(rf"(?<![\w*])\*(?=\S)(.{{1,{SPAN}}}?)(?<=\S)\*(?![\w*])"), r"\1"),  # emphasis
    (re.compile(rf"(?<![\w_])_(?=\S)(.{{1,{SPAN}}}?)(?<=\S)_(?![\w_])"), r"\1"),  # not snake_case
    (re.compile(rf"~~(.{{1,{SPAN}}}?)~~"), r"\1"),
    (re.compile(r"`([^`\n]+)`"), r"\1"),  # inline code
    (re.compile(r"(?<![ \t])[ \t]+$", re.MULTILINE), ""),  # from where a run of blanks starts: once per run
    (re.compile(r"\n{3,}"), "\n\n"),
]
_FENCE_CLOSE = {fence: re.compile(rf"{re.escape(fence)}[ \t]*") for fence in ("```", "~~~")}


def heading_text(line: str) -> str:
    """A heading line's text (what follows "# "): without its closing run of blanks and #s, and one
    character at least. A lazy `(.+?)[ \t#]*$` said the same, in time growing with the square of
    a line of such characters."""
    return line.rstrip(" \t#") or line[:1]


def _drop_fences(text: str) -> str:
    """Fenced code dropped: from a line starting ``` or ~~~ through the next line that is that fence
    alone; a fence never closed stays text. The closing line is looked up, never searched for."""
    lines = text.split("\n")
    closers = {fence: [j for j, line in enumerate(lines) if close.fullmatch(line)] for fence, close in _FENCE_CLOSE.items()}
    out, i = [], 0
    while i < len(lines):
        fence = lines[i][:3]
        if fence in closers and (k := bisect_right(closers[fence], i)) < len(closers[fence]):
            out.append("")  # what the block leaves: the line break after its closing fence
            i = closers[fence][k] + 1
            continue
        out.append(lines[i])
        i += 1
    return "\n".join(out)


def _drop_comments(text: str) -> str:
    """<!-- ... --> dropped; an unclosed one stays text, and so does everything after it."""
    out, i = [], 0
    while (start := text.find("<!--", i)) >= 0 and (end := text.find("-->", start + 4)) >= 0:
        out.append(text[i:start])
        i = end + 3
    out.append(text[i:])
    return "".join(out)


# Backslash-escaped characters are set aside first so no rule reads "\*" as emphasis.
_ESCAPED = re.compile(r"\\([\\`*_{}\[\]()#+\-.!>|])")
_SET_ASIDE = re.compile("\ue000([0-9]+)\ue001")


def strip_markdown(md: str) -> str:
    text = _ESCAPED.sub(lambda m: f"\ue000{ord(m[1])}\ue001", md.replace("\r\n", "\n"))
    text = _drop_comments(_drop_fences(text))
    for pattern, repl in _RULES:
        text = pattern.sub(repl, text)
    return _SET_ASIDE.sub(lambda m: chr(int(m[1])), text).strip()


def title_from_name(path: Path) -> str:
    words = re.sub(r"^\d{4}-\d{2}-\d{2}[-_ ]?", "", path.stem).replace("-", " ").replace("_", " ").strip()
    return words[:1].upper() + words[1:] if words else path.stem


class MarkdownReader(Reader):
    format = "markdown"

    @classmethod
    def sniff(cls, path: Path, head: str) -> bool:
        if head.startswith(("---\n", "---\r\n")):
            return True
        # Prose: a known suffix, not JSON, some words in it, and not a chat log: lines that start
        # with a date and time are a conversation (WhatsApp's reader claims or refuses them),
        # never the owner's own post with other people's words in it.
        return (
            path.suffix.lower() in SUFFIXES
            and not head.lstrip().startswith(("{", "["))
            and len(re.findall(r"[^\W\d_]{2,}", head)) >= 3
            and not looks_like_chat(head)
        )

    def read(self, owners: Sequence[str]) -> Iterator[Message]:
        try:
            raw = self.path.read_bytes()
        except OSError as e:
            raise IngestError(f"{self.path}: cannot read: {e.strerror or e}") from e
        try:
            text = raw.decode("utf-8-sig").replace("\r\n", "\n")
        except UnicodeDecodeError as e:
            line = raw.count(b"\n", 0, e.start) + 1
            self.skip("undecodable", f"line {line}", "not valid UTF-8")
            return
        try:
            meta, body = split_front_matter(text)
        except ValueError as e:
            self.skip("corrupt", "line 1", str(e))
            return

        title = meta.get("title") if isinstance(meta.get("title"), str) else ""
        heading = re.match(r"^\s*#[ \t]+(.+)(?:\n|$)", body)
        if heading and (not title or heading_text(heading[1]).strip() == title.strip()):
            title, body = title or heading_text(heading[1]).strip(), body[heading.end() :]
        title = title or title_from_name(self.path)

        ts = parse_date(meta["date"]) if isinstance(meta.get("date"), str) else None
        if ts is None and (prefix := re.match(r"^(\d{4}-\d{2}-\d{2})", self.path.name)):
            ts = parse_date(prefix[1])
        if ts is None:
            ts = datetime.fromtimestamp(self.path.stat().st_mtime, timezone.utc)
            self.stats.repaired["date_from_mtime"] += 1
            log.warning("post has no date; using the file's modification time", file=str(self.path))

        author_id, author = persona_names(owners)
        self.stats.messages += 1
        yield Message(
            source="markdown",
            chat_id="posts",
            chat_name="posts",
            msg_id=self.path.name,
            author_id=author_id,
            author=author,
            is_owner=True,
            ts=ts,
            text=strip_markdown(body),
            kind="post",
            title=title,
        )
