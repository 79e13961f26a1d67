"""The owner's interview (`python -m host_training interview`): answers, and about.md beside them.

An interview folder holds

    answers.jsonl   one JSON object a line, appended as each answer is given:
                    {"interview": 1, "id": "approach.first-move", "question": "...",
                     "answer": "...", "at": "2025-03-12T21:14:03Z"}
                    or, for a question passed over, "skipped": true instead of "answer".
                    The latest line for an id wins (a question asked again), so nothing is
                    ever rewritten: an earlier answer stays in the file's history.
    about.md        optional: what the owner wrote about themselves, in Markdown
    self.toml       the approved self-description and facts (`build` reads it; not read here)

Each answer is one piece of the owner's writing, with the question as its instruction: a
"post" of source "interview" whose title is the question as it was asked, dated when it was
given. about.md becomes posts too: its opening (text before the first heading) answers
"Tell me about yourself.", each section "Tell me about yourself: <heading>".

A line cut short (the power went while it was written) or otherwise broken is skipped and named
by its line; every other answer is read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path

from . import IngestError, Message, Reader, persona_names
from .markdown import heading_text, parse_date, strip_markdown

SOURCE = "interview"  # also the chat: sessions' keys of its examples start "interview:"
ANSWERS_FILE = "answers.jsonl"
ABOUT_FILE = "about.md"
SELF_FILE = "self.toml"
FORMAT = 1  # the "interview" value of every answers.jsonl line
ABOUT_PROMPT = "Tell me about yourself."
ABOUT_SECTION_PROMPT = "Tell me about yourself: {heading}"

_HEADING = re.compile(r"^[ \t]{0,3}#{1,6}[ \t]+(.+)$", re.MULTILINE)  # its text: heading_text(m[1])


def parse_record(line: str) -> dict:
    """One answers.jsonl line as a checked record; ValueError says what is wrong with it."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"not JSON ({e.msg}; a line cut short?)") from None
    except (ValueError, RecursionError) as e:  # a number of 4,300+ digits, nesting past the parser
        raise ValueError(f"not an answer: {str(e)[:80]}") from None
    if not isinstance(record, dict) or record.get("interview") != FORMAT:
        raise ValueError(f'not an interview answer (expected an object with "interview": {FORMAT})')
    for key in ("id", "question", "at"):
        if not isinstance(record.get(key), str) or not record[key].strip():
            raise ValueError(f"{key!r} missing or not a string")
    if parse_date(record["at"]) is None:
        raise ValueError(f"'at' is not an ISO date and time: {record['at']!r}")
    if record.get("skipped") is not True and not isinstance(record.get("answer"), str):
        raise ValueError("neither 'answer' (a string) nor 'skipped': true")
    return record


def read_answers(text: str) -> tuple[dict[str, dict], list[tuple[int, str]]]:
    """(the latest record per question id, in the order they were last given; the broken lines
    as (line number, why))."""
    latest: dict[str, dict] = {}
    broken: list[tuple[int, str]] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = parse_record(line)
        except ValueError as e:
            broken.append((number, str(e)))
            continue
        latest.pop(record["id"], None)  # re-inserted: the order is that of the last word on it
        latest[record["id"]] = record
    return latest, broken


def about_sections(markdown: str) -> list[tuple[str, str]]:
    """(heading, text) for about.md's opening (heading "": the text before the first heading, or
    under a leading `# title`) and each section, Markdown stripped; sections without text are left
    out. Front matter is not expected and stays text."""
    marks = list(_HEADING.finditer(markdown))
    if marks and not markdown[: marks[0].start()].strip() and marks[0][0].lstrip().startswith("# "):
        markdown, marks = markdown[marks[0].end():], list(_HEADING.finditer(markdown[marks[0].end():]))  # a title
    cuts = [("", 0, marks[0].start() if marks else len(markdown))]
    cuts += [(heading_text(m[1]).strip(), m.end(), marks[i + 1].start() if i + 1 < len(marks) else len(markdown))
             for i, m in enumerate(marks)]
    out = []
    for heading, start, end in cuts:
        text = strip_markdown(markdown[start:end])
        if text:
            out.append((strip_markdown(heading), text))
    return out


def _is_interview_folder(folder: Path) -> bool:
    return (folder / ANSWERS_FILE).is_file() or (folder / SELF_FILE).is_file()


class InterviewReader(Reader):
    """answers.jsonl: each answer a post whose instruction is its question."""

    format = "interview"

    @classmethod
    def sniff(cls, path: Path, head: str) -> bool:
        first = head.lstrip().split("\n", 1)[0]
        return first.startswith("{") and re.search(r'"interview"\s*:\s*1\b', first) is not None

    def read(self, owners: Sequence[str]) -> Iterator[Message]:
        raw = self._text()
        if raw is None:
            return
        latest, broken = read_answers(raw)
        for number, why in broken:
            self.skip("corrupt", f"line {number}", why)
        author_id, author = persona_names(owners)
        for qid, record in latest.items():
            if record.get("skipped") is True:
                self.stats.skipped["skipped"] += 1  # the owner passed it over: nothing to learn
                continue
            self.stats.messages += 1
            yield Message(source=SOURCE, chat_id=SOURCE, chat_name=SOURCE, msg_id=qid, author_id=author_id,
                          author=author, is_owner=True, ts=parse_date(record["at"]), text=record["answer"],
                          kind="post", title=record["question"])

    def _text(self) -> str | None:
        try:
            return self.path.read_bytes().decode("utf-8")
        except OSError as e:
            raise IngestError(f"{self.path}: cannot read: {e.strerror or e}") from e
        except UnicodeDecodeError as e:
            self.skip("undecodable", f"byte {e.start}", "not valid UTF-8")
            return None


class AboutReader(InterviewReader):
    """about.md in an interview folder: what the owner wrote about themselves, by section."""

    format = "about"

    @classmethod
    def sniff(cls, path: Path, head: str) -> bool:
        # Only beside an interview's files: elsewhere an about.md is a post like any other.
        return path.name.lower() == ABOUT_FILE and _is_interview_folder(path.parent)

    def read(self, owners: Sequence[str]) -> Iterator[Message]:
        raw = self._text()
        if raw is None:
            return
        ts = datetime.fromtimestamp(self.path.stat().st_mtime, timezone.utc)  # when it was last written
        author_id, author = persona_names(owners)
        for number, (heading, text) in enumerate(about_sections(raw.replace("\r\n", "\n")), start=1):
            self.stats.messages += 1
            title = ABOUT_SECTION_PROMPT.format(heading=heading) if heading else ABOUT_PROMPT
            yield Message(source=SOURCE, chat_id=SOURCE, chat_name=SOURCE, msg_id=f"{ABOUT_FILE}#{number}",
                          author_id=author_id, author=author, is_owner=True, ts=ts, text=text, kind="post",
                          title=title)
