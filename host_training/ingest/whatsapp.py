"""WhatsApp's "Export chat" text file (without media, or with: attachments are passed over).

    Android  12/03/2024, 21:14 - Ada Lindqvist: first line
             a continuation line belongs to the message above
             02/01/2024 à 15:04 - Luc: <Médias omis>                 (French: placeholder)
             12/03/2024, 21:15 - Messages and calls are end-to-end encrypted. ...   (system line)
    iOS      [12/03/2024, 21:14:05] Ada Lindqvist: text
             ‎[12/03/2024, 21:15:00] Jonas Berg: ‎Missed voice call  (U+200E marks: WhatsApp's words)

WhatsApp writes its own words (placeholders, system lines, the date's shape) in the language of
the phone that exported; `whatsapp_locales.toml` holds them per language and all of them are
used at once, so nothing has to be chosen. A line without "Name: " is a system line in any
language; so is an iOS text WhatsApp marked with U+200E that is no placeholder. Placeholders
become media_only or deleted messages, the edited marker is cut off, captions stay.

Whether dates are day-first or month-first is read from the file itself (a first field over 12
means day-first, a second field over 12 month-first); when nothing tells, day-first, as the
Android exports of most of the world are. Times are the phone's local time without a zone and
are taken as UTC: session gaps, which are differences, do not care. There are no stable ids,
so `author_id` is the display name and the chat is named after the file ("WhatsApp Chat with
Bob.txt" -> "Bob"). A line that is not UTF-8 is skipped, counted and named by its line number.

A phone writes every message line of one export in one shape, so a message starts only at a line
in the shape of the file's first message line (`file_header`): the same date and time shape and
the same " - " or "[…] ". Every other line continues the message above and is kept, also one
that starts with a date and time of its own ("12/03/2024 18:00: meeting", "2024-03-12 18:00 -
note"). A line in the file's shape whose date or time does not exist (31/02) is skipped, counted and
named by its line number as `corrupt`; only that line: the lines under it stay with the message
above (with none above, each is counted and named). A file whose lines that look like message
lines are mostly not in one readable shape is refused with an IngestError naming the first.
"""

from __future__ import annotations

import itertools
import re
import tomllib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cache
from importlib.resources import files
from pathlib import Path

from . import IngestError, Message, Reader

LOCALES_FILE = "whatsapp_locales.toml"
LOCALE_KEYS = frozenset(
    "language file_name media attached file_attached location deleted edited system date_words am pm".split()
)
_MARKS = "\ufeff\u200e\u200f\u202a\u202b\u202c\u2066\u2067\u2068\u2069"  # BOM and direction marks
_NO_MARKS = str.maketrans("", "", _MARKS)
_LRM = "\u200e"  # what iOS puts in front of its own words
# A line that begins with a date and a time, in any shape (used to recognise chat-shaped text)
_STARTS_DATED = re.compile(r"^\[?\d{1,4}([./\-])\s?\d{1,2}\1\s?\d{2,4}\b.{0,20}?\d{1,2}[:.]\d{2}")
# ... and then separates a header from the rest as chat exports do: counted to refuse a file whose
# message lines are mostly in no shape we read (a line alone is never dropped for it: see `read`)
_DATED_HEADER = re.compile(_STARTS_DATED.pattern + r"(?:[:.]\d{2})?.{0,14}?(?:\]|\s[-–]\s|:\s|\t)")
# No chat message is this long (a journal belongs in posts); past it a message is refused whole,
# and a line past MAX_LINE_BYTES is passed over unread, so memory stays flat on any file.
MAX_MESSAGE_CHARS = 100_000
MAX_LINE_BYTES = 4 * MAX_MESSAGE_CHARS  # UTF-8: at most 4 bytes a character


@dataclass(frozen=True)
class _Shape:
    header: re.Pattern  # the file's message line (`file_header`)
    dayfirst: bool


EXPECTED = (
    "expected 'DATE, TIME - NAME: TEXT' (Android) or '[DATE, TIME] NAME: TEXT' (iOS) with a date "
    "and time as a phone writes them"
)
# "Name: text"; quotes in the name part mean a system line such as: Ada changed the subject to "a: b"
_AUTHOR = re.compile(r"^(?P<name>[^:\"\u201c\u201d\u201e\u00ab\u00bb\u2039\u203a]{1,80}?)[ \u00a0\u202f]?: (?P<text>.*)$",
                     re.DOTALL)


def fold(text: str) -> str:
    """A phrase as placeholders and system lines are compared: no marks, one space, no full stop."""
    return re.sub(r"\s+", " ", text.translate(_NO_MARKS)).strip().rstrip(".").rstrip().casefold()


def phrase_regex(phrase: str) -> str:
    """A table phrase as a regex over folded text: a leading `*` is a name (never holding ":"),
    any other `*` any text."""
    parts = fold(phrase).split("*")
    out = [re.escape(parts[0])]
    for i, part in enumerate(parts[1:]):
        out.append(r"[^:]+?" if i == 0 and not parts[0] else r".*?")
        out.append(re.escape(part))
    return "".join(out)


def _any(phrases: Sequence[str]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{phrase_regex(p)})" for p in phrases) or r"(?!)", re.DOTALL)


def _words(words: Sequence[str]) -> str:
    return "|".join(re.escape(w.strip()) for w in sorted(words, key=len, reverse=True)) or r"(?!)"


def _letters(marker: str) -> str:
    return re.sub(r"[\W_]", "", marker).casefold()


@dataclass(frozen=True)
class Vocabulary:
    """Every language's words at once, compiled: what whatsapp_locales.toml says, ready to match."""

    header: re.Pattern[str]  # a message line in any shape a phone writes
    meridiem: str  # regex: any AM/PM marker
    pm: frozenset[str]  # 12-hour markers after noon, as `_letters`
    media: re.Pattern[str]  # a placeholder line, folded, fullmatch
    deleted: re.Pattern[str]  # a whole text, folded, fullmatch
    system: re.Pattern[str]  # a whole line, folded, fullmatch
    system_text: re.Pattern[str]  # a person's whole text, folded: the phrases not led by a name
    edited: re.Pattern[str]  # at the end of a text
    attached: re.Pattern[str]  # iOS "<attached: file>" anywhere in a line
    file_attached: re.Pattern[str]  # Android "file (file attached)" as a whole line
    location: re.Pattern[str]  # Android "location: https://…" as the whole text
    file_name: re.Pattern[str]  # the exported file's stem; the group that matched is the chat's name


def compile_vocabulary(table: dict) -> Vocabulary:
    """`table` as read from whatsapp_locales.toml; raises ValueError naming a wrong entry."""
    merged: dict[str, list[str]] = {k: [] for k in LOCALE_KEYS}
    for lang, entries in table.items():
        if not isinstance(entries, dict):
            raise ValueError(f"{LOCALES_FILE}: '{lang}' is not a table ([{lang}] followed by entries)")
        for key, value in entries.items():
            if key not in LOCALE_KEYS:
                raise ValueError(f"{LOCALES_FILE}: [{lang}] {key}: unknown entry; known: {', '.join(sorted(LOCALE_KEYS))}")
            if key == "language":
                continue
            if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
                raise ValueError(f"{LOCALES_FILE}: [{lang}] {key}: expected a list of non-empty strings")
            merged[key] += value
    meridiem = "|".join(
        r"\.?\s?".join(re.escape(ch) for ch in letters) + r"\.?"
        for letters in sorted({_letters(m) for m in merged["am"] + merged["pm"]}, key=len, reverse=True)
    ) or r"(?!)"
    header = _header_regex(
        open_=r"\[?", a=r"\d{1,4}", sep=r"[./\-]", c=r"\d{2,4}",
        join=rf"(?:,\s*|\s+)(?:(?:{_words(merged['date_words'])})\s+)?", tsep="[:.]",
        seconds=r"(?:[:.](?P<S>\d{2}))?", ampm=rf"(?:\s*(?P<ampm>{meridiem}))?", close=r"\]\s?|\s[-–]\s",
    )
    edited = "|".join(
        re.escape(m.strip().rstrip(">").rstrip(".")) + r"\.?>" if m.strip().endswith(">") else re.escape(m.strip())
        for m in merged["edited"]
    ) or r"(?!)"
    names = [re.escape(n).replace(r"\*", "(.+)", 1) for n in merged["file_name"]] or [r"(?!)"]
    return Vocabulary(
        header=header,
        meridiem=meridiem,
        pm=frozenset(_letters(m) for m in merged["pm"]),
        media=_any(merged["media"]),
        deleted=_any(merged["deleted"]),
        system=_any(merged["system"]),
        system_text=_any([p for p in merged["system"] if not p.lstrip().startswith("*")]),
        edited=re.compile(rf"\s*(?:{edited})\s*$", re.IGNORECASE),
        attached=re.compile(
            rf"<\s*(?:{_words(merged['attached'])})\s?:\s*[^<>\n]+>|<[^<>\n]+\.\w{{2,5}}\s(?:{_words(merged['attached'])})>",
            re.IGNORECASE,
        ),
        file_attached=re.compile(rf"\S.*\s\((?:{_words(merged['file_attached'])})\)", re.IGNORECASE),
        location=re.compile(rf"(?:{_words(merged['location'])})\s?:\s*https?://\S+", re.IGNORECASE),
        file_name=re.compile("|".join(f"(?:{n})" for n in names), re.IGNORECASE),
    )


def _header_regex(*, open_: str, a: str, sep: str, c: str, join: str, tsep: str, seconds: str, ampm: str,
                  close: str) -> re.Pattern[str]:
    """A message line: [date, time] (iOS) or date, time - (Android), then the rest. The named parts
    (open, sep, join, tsep, S, ampm, close) are what `file_header` reads a file's own shape from."""
    return re.compile(
        rf"^(?P<open>{open_})(?P<a>{a})(?P<sep>{sep})\s?(?P<b>\d{{1,2}})(?P=sep)\s?(?P<c>{c})\.?"
        rf"(?P<join>{join})(?P<H>\d{{1,2}})(?P<tsep>{tsep})(?P<M>\d{{2}}){seconds}{ampm}"
        rf"(?P<close>{close})(?P<rest>.*)$",
        re.IGNORECASE,
    )


def file_header(first: re.Match, vocab: Vocabulary) -> re.Pattern[str]:
    """The message line of one file: the shape of its first message line `first` (a match of
    `vocab.header`), as a phone writes every line of one export alike — the brackets or the " - ",
    the date's separator, field widths and order, what stands between date and time, the time's
    separator, seconds or none, a 12-hour marker or none. Only the numbers and the marker's
    spelling (AM/PM, U+202F or a space before it) vary."""
    year_first = len(first["a"]) == 4
    word = re.sub(r"[\s,]+", "", first["join"])
    if word:
        join = rf"(?:,\s*|\s+){re.escape(word)}\s+"
    else:
        join = r",\s*" if "," in first["join"] else r"\s+"
    return _header_regex(
        open_=r"\[" if first["open"] else "",
        a=r"\d{4}" if year_first else r"\d{1,2}",
        sep=re.escape(first["sep"]),
        c=r"\d{1,2}" if year_first else rf"\d{{{len(first['c'])}}}",
        join=join,
        tsep=re.escape(first["tsep"]),
        seconds=r"[:.](?P<S>\d{2})" if first["S"] else r"(?P<S>)",
        ampm=rf"\s*(?P<ampm>{vocab.meridiem})" if first["ampm"] else r"(?P<ampm>)",
        close=r"\]\s?" if first["close"].startswith("]") else r"\s[-–]\s",
    )


@cache
def vocabulary() -> Vocabulary:
    with files(__package__).joinpath(LOCALES_FILE).open("rb") as f:
        return compile_vocabulary(tomllib.load(f))


def looks_like_chat(head: str) -> bool:
    """Whether text reads like a chat log: several lines, a good share of them, start with a date
    and a time. Such text is never anyone's post, whether or not its lines can be read."""
    lines = [s for line in head.splitlines() if (s := line.strip(_MARKS + " \t\r"))][:200]
    dated = sum(1 for line in lines if _STARTS_DATED.match(line))
    return dated >= 3 and dated * 3 >= len(lines)


def chat_name_for(path: Path) -> str:
    stem = path.parent.name if path.stem == "_chat" else path.stem  # iOS: folder/_chat.txt
    m = vocabulary().file_name.fullmatch(stem)
    return next((g for g in m.groups() if g), stem).strip() if m else stem


def day_first(headers: Iterable[re.Match], undecided: bool | None = True) -> bool | None:
    """Whether the dates are day-first: the first header whose first field is over 12 says yes,
    whose second is, no; `undecided` when none tells (day-first, as most of the world writes)."""
    for m in headers:
        a, b = int(m["a"]), int(m["b"])
        if len(m["a"]) == 4:
            continue  # year first: unambiguous
        if a > 12:
            return True
        if b > 12:
            return False
    return undecided


def header_time(m: re.Match, dayfirst: bool, pm: frozenset[str]) -> datetime:
    a, b, c = m["a"], m["b"], m["c"]
    if len(a) == 4:
        year, month, day = int(a), int(b), int(c)
    else:
        day, month = (int(a), int(b)) if dayfirst else (int(b), int(a))
        year = int(c) + (2000 if len(c) == 2 else 0)
    hour = int(m["H"])
    if m["ampm"]:
        hour = hour % 12 + (12 if _letters(m["ampm"]) in pm else 0)
    return datetime(year, month, day, hour, int(m["M"]), int(m["S"] or 0), tzinfo=timezone.utc)


def strip_media(text: str, vocab: Vocabulary) -> tuple[str, bool]:
    """(the text without direction marks, placeholder lines, attachment tags and the edited
    marker; whether there was a placeholder or attachment)."""
    text = vocab.edited.sub("", text.translate(_NO_MARKS))
    kept: list[str] = []
    found = False
    for line in text.split("\n"):
        if tag := vocab.attached.search(line):
            found = True
            line = (line[: tag.start()] + line[tag.end() :]).strip()
            if "\u2022" in line:
                line = ""  # iOS: "Report.pdf • 3 pages" before the tag describes the file
        if vocab.file_attached.fullmatch(line.strip()) or (line.strip() and vocab.media.fullmatch(fold(line))):
            found = True
            continue
        kept.append(line)
    return "\n".join(kept).strip("\n").rstrip(), found


class WhatsAppReader(Reader):
    format = "whatsapp"

    @classmethod
    def sniff(cls, path: Path, head: str) -> bool:
        if head.startswith(("---\n", "---\r\n")):
            return False  # front matter: a post, even one about a chat
        for line in head.splitlines():
            line = line.strip(_MARKS + " \t\r")
            if line:
                return bool(vocabulary().header.match(line)) or looks_like_chat(head)
        return False

    def read(self, owners: Sequence[str]) -> Iterator[Message]:
        vocab = vocabulary()
        shape = self._shape(vocab)
        header, dayfirst = shape.header, shape.dayfirst
        chat = chat_name_for(self.path)
        # The message being gathered: its line number, its time, its lines and their characters.
        current: tuple[int, datetime, list[str]] | None = None
        size = 0
        lost = 0  # the line of a message line that could not be read, while no message came before it
        for number, line, whole in self._lines():
            m = header.match(line)
            if m is None:
                if current is not None:
                    if size <= MAX_MESSAGE_CHARS:  # past it, nothing more is kept: the message is refused whole
                        current[2].append(line)
                    size += len(line) + 1 if whole else MAX_LINE_BYTES
                elif line.strip() or not whole:
                    self.skip("corrupt", f"line {number}", f"follows line {lost}, a message line whose date or time "
                              "cannot be read, with no message before it" if lost else "text before the first message line")
                continue
            try:
                ts = header_time(m, dayfirst, vocab.pm)
            except ValueError as e:
                # Only this line is lost: the lines under it stay with the message above, as text
                # is never dropped for a date, or, with none above, are each counted and named.
                self.skip("corrupt", f"line {number}", f"bad date or time ({e}); " + (
                    f"the lines after it, up to the next message line, are kept with the message of line {current[0]}"
                    if current else "the lines after it, up to the next message line, are skipped and named"
                ))
                if current is None:
                    lost = number
                continue
            if current is not None and (msg := self._bounded(chat, current, size)):
                yield msg
            current, size = (number, ts, [m["rest"]]), len(m["rest"]) if whole else MAX_LINE_BYTES
        if current is not None and (msg := self._bounded(chat, current, size)):
            yield msg

    def _bounded(self, chat: str, current: tuple[int, datetime, list[str]], size: int) -> Message | None:
        """The gathered message, or None (counted and named) when it is longer than any chat message."""
        if size > MAX_MESSAGE_CHARS:
            self.skip("too_long", f"line {current[0]}", f"a message of more than {MAX_MESSAGE_CHARS:,} characters "
                      f"({size:,} or more): no chat message is that long; not read")
            return None
        return self._message(chat, *current)

    def _shape(self, vocab: Vocabulary) -> _Shape:
        """The file's message-line shape and date order, from a first pass over its lines (nothing
        kept but counts); IngestError for a file that is not a WhatsApp export we can read."""
        header = first_bad = dayfirst = None
        headers = unreadable = 0
        for number, line, _ in self._lines(skip=False):
            m = header.match(line) if header else vocab.header.match(line)
            if m is not None and header is None:
                # Only a line in this file's own shape starts a message; any other line, dated or
                # not ("12/03/2024 18:00: meeting" typed into a message), continues the one above.
                header = file_header(m, vocab)
                m = header.match(line)
            if m is not None:
                headers += 1
                if dayfirst is None and (decided := day_first([m], None)) is not None:
                    dayfirst = decided
            elif _DATED_HEADER.match(line):
                unreadable += 1
                first_bad = first_bad if first_bad and first_bad[2] else (number, line, True)
            elif first_bad is None and _STARTS_DATED.match(line):
                first_bad = (number, line, False)
        if not headers or unreadable >= headers:
            # Not a WhatsApp file we can read: refuse it whole rather than guess at its lines.
            if first_bad is None:
                raise IngestError(f"{self.path}: no line begins with a date and time; {EXPECTED}")
            number, line, _ = first_bad
            raise IngestError(
                f"{self.path}: line {number}: starts with a date and time ('{_STARTS_DATED.match(line)[0]}') "
                f"but is not a WhatsApp message line; {EXPECTED}. A WhatsApp export in a language or date "
                f"style not yet known can be added to host_training/ingest/{LOCALES_FILE} (docs/data.md, "
                "WhatsApp); your own writing is read as a post when it starts with a '---' front-matter block"
            )
        return _Shape(header, True if dayfirst is None else dayfirst)

    def _lines(self, skip: bool = True) -> Iterator[tuple[int, str, bool]]:
        """(line number, text, whole) of each line, read a line at a time: memory stays flat
        whatever the file. Of a line longer than MAX_LINE_BYTES only its first MAX_LINE_BYTES are
        read (whole False: it may still start a message, which is then refused); a line not UTF-8
        is skipped (with `skip`: counted and named)."""
        try:
            f = self.path.open("rb")
        except OSError as e:
            raise IngestError(f"{self.path}: cannot read: {e.strerror or e}") from e
        with f:
            for number in itertools.count(1):
                chunk = f.readline(MAX_LINE_BYTES + 1)
                if not chunk:
                    return
                if len(chunk) > MAX_LINE_BYTES and not chunk.endswith(b"\n"):
                    while (rest := f.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                        pass  # the rest of a line no chat holds, passed over a piece at a time
                    yield number, chunk[:MAX_LINE_BYTES].decode("utf-8", "ignore").lstrip(_MARKS), False
                    continue
                try:
                    line = chunk.rstrip(b"\n").rstrip(b"\r").decode("utf-8")
                except UnicodeDecodeError:
                    if skip:
                        self.skip("undecodable", f"line {number}", "not valid UTF-8")
                    continue
                yield number, line.lstrip(_MARKS), True

    def _message(self, chat: str, number: int, ts: datetime, body: list[str]) -> Message:
        vocab = vocabulary()
        rest = "\n".join(body).rstrip()
        common = dict(source="whatsapp", chat_id=chat, chat_name=chat, msg_id=str(number), is_owner=False, ts=ts)
        self.stats.messages += 1
        a = _AUTHOR.match(rest)
        if a is None or vocab.system.fullmatch(fold(rest)):
            return Message(**common, author_id="", author="", text=rest.translate(_NO_MARKS), service=True)
        name = re.sub(r"^~\s*", "", a["name"].translate(_NO_MARKS).strip())  # iOS: "~ Name" not in contacts
        marked = a["text"].lstrip(" ").startswith(_LRM)
        text, placeholder = strip_media(a["text"], vocab)
        folded = fold(text)
        deleted = bool(folded and vocab.deleted.fullmatch(folded))
        if not deleted and folded and (vocab.system_text.fullmatch(folded) or (marked and not placeholder)):
            # WhatsApp's words under the chat's name (iOS calls, encryption notice, group events).
            return Message(**common, author_id="", author="", text=text, service=True)
        media_only = (placeholder and not text.strip()) or bool(vocab.location.fullmatch(text.strip()))
        if media_only:
            text = a["text"].translate(_NO_MARKS).strip()  # what stood there, for whoever reads the drop
        return Message(**common, author_id=name, author=name, text=text, media_only=media_only, deleted=deleted)
