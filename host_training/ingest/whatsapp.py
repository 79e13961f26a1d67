"""WhatsApp's "Export chat" text file (without media, or with: attachments are passed over).

    Android  12/03/2024, 21:14 - Ada Lindqvist: first line
             a continuation line belongs to the message above
             12/03/2024, 21:15 - Bob: <Media omitted>
             12/03/2024, 21:15 - Messages and calls are end-to-end encrypted. ...   (system line)
    iOS      [12/03/2024, 21:14:05] Ada Lindqvist: text

Whether dates are day-first or month-first is read from the file itself (a first field over 12
means day-first, a second field over 12 month-first); when nothing tells, day-first, as the
Android exports of most of the world are. 12-hour times with AM/PM are understood. Times are
the phone's local time without a zone and are taken as UTC: session gaps, which are
differences, do not care. There are no stable ids, so `author_id` is the display name and the
chat is named after the file ("WhatsApp Chat with Bob.txt" -> "Bob"). A line that is not
UTF-8 is skipped, counted and named by its line number.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path

from . import IngestError, Message, Reader

_HEADER = re.compile(
    r"^\[?(?P<a>\d{1,4})[/.\-](?P<b>\d{1,2})[/.\-](?P<c>\d{2,4}),?\s+"
    r"(?P<H>\d{1,2})[:.](?P<M>\d{2})(?:[:.](?P<S>\d{2}))?"
    r"(?:[\s\u202f]*(?P<ampm>[AaPp]\.?\s?[Mm]\.?))?"
    r"(?:\] | - )(?P<rest>.*)$"
)
# "Name: text"; a quote in the name part means a system line such as: Ada changed the subject to "a: b"
_AUTHOR = re.compile(r"^(?P<name>[^:\"\u201c\u201d]{1,80}?): (?P<text>.*)$", re.DOTALL)
_MEDIA = re.compile(
    r"^(?:<Media omitted>|null|(?:image|video|audio|sticker|GIF|document|Contact card) omitted"
    r"|<attached: [^>]+>)$",
    re.IGNORECASE,
)
_FILE_ATTACHED = re.compile(r"^.+ \(file attached\)$", re.MULTILINE)
_DELETED = re.compile(r"^(?:This message was deleted|You deleted this message)\.?$", re.IGNORECASE)
_EDITED = re.compile(r"\s*<This message was edited>$")
_INVISIBLE = "\ufeff\u200e\u200f"  # BOM and direction marks iOS puts in front of lines


def chat_name_for(path: Path) -> str:
    stem = path.parent.name if path.stem == "_chat" else path.stem  # iOS: folder/_chat.txt
    return re.sub(r"^WhatsApp Chat (?:with |- )", "", stem) or stem


def day_first(headers: list[re.Match]) -> bool:
    for m in headers:
        a, b = int(m["a"]), int(m["b"])
        if len(m["a"]) == 4:
            continue  # year first: unambiguous
        if a > 12:
            return True
        if b > 12:
            return False
    return True


def header_time(m: re.Match, dayfirst: bool) -> datetime:
    a, b, c = m["a"], m["b"], m["c"]
    if len(a) == 4:
        year, month, day = int(a), int(b), int(c)
    else:
        day, month = (int(a), int(b)) if dayfirst else (int(b), int(a))
        year = int(c) + (2000 if len(c) == 2 else 0)
    hour = int(m["H"])
    if m["ampm"]:
        pm = m["ampm"][0].lower() == "p"
        hour = hour % 12 + (12 if pm else 0)
    return datetime(year, month, day, hour, int(m["M"]), int(m["S"] or 0), tzinfo=timezone.utc)


class WhatsAppReader(Reader):
    format = "whatsapp"

    @classmethod
    def sniff(cls, path: Path, head: str) -> bool:
        for line in head.splitlines():
            line = line.strip(_INVISIBLE + " \t\r")
            if line:
                return bool(_HEADER.match(line))
        return False

    def read(self, owners: Sequence[str]) -> Iterator[Message]:
        lines = self._lines()
        headers = [m for _, line in lines if (m := _HEADER.match(line))]
        dayfirst = day_first(headers)
        chat = chat_name_for(self.path)
        current: tuple[int, re.Match, list[str]] | None = None
        for number, line in lines:
            m = _HEADER.match(line)
            if m is None:
                if current is None:
                    if line.strip():
                        self.skip("corrupt", f"line {number}", "text before the first dated line")
                    continue
                current[2].append(line)
                continue
            if current is not None and (msg := self._message(chat, dayfirst, *current)):
                yield msg
            current = (number, m, [m["rest"]])
        if current is not None and (msg := self._message(chat, dayfirst, *current)):
            yield msg

    def _lines(self) -> list[tuple[int, str]]:
        try:
            raw = self.path.read_bytes()
        except OSError as e:
            raise IngestError(f"{self.path}: cannot read: {e.strerror or e}") from e
        out = []
        for number, chunk in enumerate(raw.split(b"\n"), start=1):
            try:
                line = chunk.rstrip(b"\r").decode("utf-8")
            except UnicodeDecodeError:
                self.skip("undecodable", f"line {number}", "not valid UTF-8")
                continue
            out.append((number, line.lstrip(_INVISIBLE)))
        return out

    def _message(self, chat: str, dayfirst: bool, number: int, m: re.Match, body: list[str]) -> Message | None:
        try:
            ts = header_time(m, dayfirst)
        except ValueError as e:
            self.skip("corrupt", f"line {number}", f"bad date or time ({e})")
            return None
        rest = "\n".join(body).rstrip()
        common = dict(source="whatsapp", chat_id=chat, chat_name=chat, msg_id=str(number), is_owner=False, ts=ts)
        self.stats.messages += 1
        a = _AUTHOR.match(rest)
        if a is None:
            return Message(**common, author_id="", author="", text=rest, service=True)
        name = a["name"].strip(_INVISIBLE + " ")
        text = _EDITED.sub("", a["text"].strip(_INVISIBLE))
        text = _FILE_ATTACHED.sub("", text).strip("\n")
        return Message(
            **common,
            author_id=name,
            author=name,
            text=text,
            media_only=bool(_MEDIA.match(text.strip(_INVISIBLE + " "))) or (not text.strip() and "(file attached)" in a["text"]),
            deleted=bool(_DELETED.match(text.strip(_INVISIBLE + " "))),
        )
