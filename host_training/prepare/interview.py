"""`python -m host_training interview --out DIR`: the owner answers questions; every answer is kept.

Exports hold what a person wrote to others, not how they think, when they change their mind or
what they value. The interview asks for that, from a question bank (data/interview.toml, which
`--questions FILE` extends), and keeps each answer verbatim in DIR/answers.jsonl, appended and
synced to the disk the moment it is ended: Ctrl-C, a closed terminal or a power cut loses at most
the answer being typed, and the next run goes on with the next unanswered question. `prepare`
reads DIR like an export (ingest/interview.py): each answer becomes an example whose instruction
is its question, in the writing tier.

At the end (or with --self-description) it drafts a short self-description and a list of facts
from DIR/about.md (about.py), shows them, and keeps what the owner approves in DIR/self.toml for
`build`: the description goes in the persona's system prompt, the facts in its memory on the Pi.

The bank is TOML; each table is a category, its `questions` table maps an id to a question:

    draft_from = ["about.introduce"]      # answers that draft the self-description without about.md

    [approach]
    title = "How you approach a problem"
    [approach.questions]
    first-move = "When something new lands in front of you, what do you do first?"

A question's id is "<category>.<key>" ("approach.first-move"); a file given with --questions
adds categories and questions, and replaces the text of a question with the same id.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path

import structlog

from stratoecho.config import ConfigError

from ..console import Console, CtrlC
from ..ingest import iso_utc
from ..ingest.interview import ABOUT_FILE, ANSWERS_FILE, FORMAT, SELF_FILE, read_answers
from . import about as A

log = structlog.get_logger(__name__)

BUILTIN = resources.files("host_training") / "data" / "interview.toml"
END = "."  # a line holding only this ends an answer: empty lines belong to answers (paragraphs)
COMMANDS = {
    "/skip": "pass this question over (a skipped question is not trained on; --skipped asks it again)",
    "/back": "go back to the question before, to see or redo your answer",
    "/quit": "stop here; every answer you ended is kept, and the next run goes on from here",
    "/help": "show this help",
}
_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


# ---------------------------------------------------------------------------------------------
# The question bank


class BankError(Exception):
    """A question bank that cannot be used: the message names the file, the line or key, and what
    was expected."""


@dataclass(frozen=True)
class Question:
    id: str  # "<category>.<key>": what answers.jsonl records
    title: str  # the category's title
    text: str


@dataclass(frozen=True)
class Bank:
    questions: tuple[Question, ...]
    draft_from: tuple[str, ...] = ()  # question ids whose answers draft the self-description


def _where(source: str, text: str, *patterns: str) -> str:
    """`source:line` of the first line matching one of the regexes (a key's definition), else `source`."""
    for pattern in patterns:
        for number, line in enumerate(text.splitlines(), start=1):
            if re.match(pattern, line):
                return f"{source}:{number}"
    return source


def parse_bank(text: str, source: str) -> tuple[dict[str, tuple[str | None, dict[str, str]]], list[str] | None]:
    """One bank file: {category: (title or None, {key: question})} in file order, and its draft_from."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:  # the message says "(at line N, column M)"
        raise BankError(f"{source}: not valid TOML: {e}") from None
    draft_from = data.pop("draft_from", None)
    if draft_from is not None and (not isinstance(draft_from, list) or not all(isinstance(x, str) for x in draft_from)):
        at = _where(source, text, r"\s*draft_from\s*=")
        raise BankError(f'{at}: draft_from: expected a list of question ids such as ["about.introduce"], '
                        f"got {draft_from!r}")
    categories: dict[str, tuple[str | None, dict[str, str]]] = {}
    for name, table in data.items():
        at = _where(source, text, rf"\s*\[\s*\"?{re.escape(name)}\"?\s*[\].]", rf"\s*\"?{re.escape(name)}\"?\s*[=.]")
        if not isinstance(table, dict):
            raise BankError(f"{at}: {name}: expected a category table ([{name}] with title and [{name}.questions]) "
                            f"or draft_from, got {table!r}")
        if not _KEY.match(name):
            raise BankError(f"{at}: [{name}]: a category's name is letters, digits, - and _ only")
        unknown = sorted(set(table) - {"title", "questions"})
        if unknown:
            raise BankError(f"{at}: [{name}]: unknown key {unknown[0]!r}; expected title and questions")
        title = table.get("title")
        if title is not None and (not isinstance(title, str) or not title.strip()):
            raise BankError(f"{at}: [{name}] title: expected the category's title as a non-empty string, got {title!r}")
        questions = table.get("questions", {})
        if not isinstance(questions, dict):
            raise BankError(f"{at}: [{name}] questions: expected a table of key = \"question\" "
                            f"([{name}.questions]), got {questions!r}")
        for key, question in questions.items():
            q_at = _where(source, text, rf"\s*\"?{re.escape(key)}\"?\s*=")
            if not _KEY.match(key):
                raise BankError(f"{q_at}: [{name}.questions] {key!r}: a question's key is letters, digits, - and _ only")
            if not isinstance(question, str) or not question.strip():
                raise BankError(f"{q_at}: [{name}.questions] {key}: expected the question as a non-empty string, "
                                f"got {question!r}")
        categories[name] = (title.strip() if title else None, {k: " ".join(v.split()) for k, v in questions.items()})
    return categories, draft_from


def load_bank(files: Sequence[Path] = (), builtin: bool = True) -> Bank:
    """The shipped bank (unless `builtin` is False), then each file in turn added to it."""
    sources: list[tuple[str, str]] = [(str(BUILTIN), BUILTIN.read_text(encoding="utf-8"))] if builtin else []
    for path in files:
        try:
            sources.append((str(path), Path(path).read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as e:
            raise BankError(f"{path}: cannot read the question file: {e}") from None
    merged: dict[str, tuple[str, dict[str, str]]] = {}
    draft_from: list[tuple[str, str]] = []  # (id, file that names it)
    for source, text in sources:
        categories, named = parse_bank(text, source)
        if named is not None:
            draft_from = [(qid, source) for qid in named]  # a later file's list replaces the earlier
        for name, (title, questions) in categories.items():
            old_title, old = merged.get(name, (None, {}))
            merged[name] = (title or old_title or name, {**old, **questions})
    bank = Bank(tuple(Question(f"{name}.{key}", title, text) for name, (title, qs) in merged.items()
                      for key, text in qs.items()), tuple(qid for qid, _ in draft_from))
    ids = {q.id for q in bank.questions}
    for qid, source in draft_from:
        if qid not in ids:
            raise BankError(f"{source}: draft_from names {qid!r}, which is no question of the bank "
                            "(ids are <category>.<key>)")
    if not bank.questions:
        raise BankError(f"{', '.join(s for s, _ in sources) or 'no question file'}: no questions: expected "
                        "[category.questions] tables with key = \"question\" lines")
    return bank


# ---------------------------------------------------------------------------------------------
# answers.jsonl: appended, synced


class AnswerLog:
    """DIR/answers.jsonl. Nothing in it is ever rewritten: a new answer is one more line, synced to
    the disk before `append` returns; the latest line for a question is what counts."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / ANSWERS_FILE

    def read(self) -> tuple[dict[str, dict], list[tuple[int, str]]]:
        if not self.path.exists():
            return {}, []
        return read_answers(self.path.read_bytes().decode("utf-8", errors="replace"))

    def append(self, record: dict) -> None:
        new = not self.path.exists()
        line = json.dumps({"interview": FORMAT, **record}, ensure_ascii=False) + "\n"
        with open(self.path, "a+b") as f:
            if f.seek(0, os.SEEK_END):
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    line = "\n" + line  # a line cut short by a crash stays its own (skipped) line
            f.write(line.encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
        if new:  # the file's name in its folder survives a power cut too
            fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


# ---------------------------------------------------------------------------------------------
# The conversation in the terminal


@dataclass
class Terminal:
    """Where the interview reads and writes: the real terminal, or a script in tests."""

    read: Callable[[str], str] = input  # raises EOFError when the terminal is gone
    say: Callable[[str], None] = lambda text: print(text, flush=True)


def read_text(term: Terminal, commands: bool = True) -> str:
    """Lines up to a lone END, verbatim (blank lines around it left out); or a command, given
    alone on the first line."""
    lines: list[str] = []
    while True:
        line = term.read("> ")
        word = line.strip()
        if commands and not lines and re.fullmatch(r"/[a-z]+", word):  # "/dev/null" is an answer
            if word in COMMANDS:
                return word
            term.say(f"{word} is no command; the commands are {', '.join(COMMANDS)}")
            continue
        if word == END:
            break
        lines.append(line)
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(lines)


def _help(term: Terminal) -> None:
    term.say(f"Type your answer in your own words, as many lines as you like; end it with a line holding only "
             f"'{END}'.\nCommands, alone on the first line of an answer:")
    for command, what in COMMANDS.items():
        term.say(f"  {command:6} {what}")


def _counts(bank: Bank, latest: dict[str, dict]) -> tuple[int, int]:
    ids = {q.id for q in bank.questions}
    answered = sum(1 for qid, r in latest.items() if qid in ids and not r.get("skipped"))
    skipped = sum(1 for qid, r in latest.items() if qid in ids and r.get("skipped"))
    return answered, skipped


def ask(bank: Bank, answers: AnswerLog, term: Terminal, skipped_again: bool = False,
        now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> bool:
    """Ask every question not yet answered (with `skipped_again`, the skipped ones too), in the
    bank's order. True when none is left, False when the owner quit. Each answer is on the disk
    before the next question is shown."""
    latest, broken = answers.read()
    for number, why in broken:
        term.say(f"note: {answers.path}:{number} cannot be read ({why}); it is left as it is")
    questions = bank.questions

    def pending(i: int) -> bool:
        r = latest.get(questions[i].id)
        return r is None or (skipped_again and bool(r.get("skipped")))

    answered, skipped = _counts(bank, latest)
    todo = [i for i in range(len(questions)) if pending(i)]
    term.say(f"{len(questions)} questions; {answered} answered and {skipped} skipped so far, {len(todo)} to ask. "
             f"Answers are kept in {answers.path} as soon as you end them.")
    if not todo:
        return True
    _help(term)
    i = todo[0]
    while True:
        q, before = questions[i], latest.get(questions[i].id)
        term.say(f"\n[{i + 1}/{len(questions)}] {q.title}\n{q.text}")
        if before is not None and not before.get("skipped"):
            term.say(f"Your answer ({before['at']}):\n{before['answer']}\n"
                     f"Type a new one to replace it, '{END}' alone to keep it, or /skip to leave the question out.")
        reply = read_text(term)
        if reply == "/quit":
            return False
        if reply == "/help":
            _help(term)
            continue
        if reply == "/back":
            if i == 0:
                term.say("This is the first question.")
            else:
                i -= 1
            continue
        if reply == "" and (before is None or before.get("skipped")):
            term.say(f"Nothing typed: type your answer and end it with '{END}', or /skip.")
            continue
        if reply != "":  # "" on an answered question keeps that answer
            record = {"id": q.id, "question": q.text, "at": iso_utc(now())}
            record.update({"skipped": True} if reply == "/skip" else {"answer": reply})
            answers.append(record)
            latest[q.id] = record
            log.debug("interview.answer", id=q.id, skipped=reply == "/skip")
            answered, skipped = _counts(bank, latest)
            term.say(f"{'skipped' if reply == '/skip' else 'kept'} ({answered} answered, {skipped} skipped, "
                     f"{sum(pending(j) for j in range(len(questions)))} to go)")
        i = next((j for j in range(i + 1, len(questions)) if pending(j)), -1)
        if i < 0:
            term.say(f"\nThat was the last question: {answered} answered, {skipped} skipped"
                     + (" (run again with --skipped to answer those)." if skipped else "."))
            return True


# ---------------------------------------------------------------------------------------------
# The self-description and the facts, approved by the owner


def _say_replaced(term: Terminal, found) -> None:
    if found:
        term.say("(private values were replaced, as prepare does: "
                 + ", ".join(f"{kind} {n}" for kind, n in sorted(found.items())) + ")")


def confirm_description(term: Terminal, draft: str, blocklist: Sequence[str] = ()) -> str:
    """The description the owner approves: the draft, their own text (scrubbed), or "" for none."""
    text = draft
    while True:
        term.say(f"\nSelf-description for the persona's system prompt ({len(text)} of at most "
                 f"{A.DESCRIPTION_CHARS} characters):\n\n  {text}\n")
        choice = term.read("Use it? y = yes, e = write your own, n = none: ").strip().lower()
        if choice in ("y", "yes"):
            return text
        if choice in ("n", "no"):
            return ""
        if choice not in ("e", "edit"):
            term.say("Please answer y, e or n.")
            continue
        term.say(f"Write it in a few sentences, at most {A.DESCRIPTION_CHARS} characters; end with a line holding "
                 f"only '{END}':")
        own = " ".join(read_text(term, commands=False).split())
        if len(own) > A.DESCRIPTION_CHARS:
            term.say(f"That is {len(own)} characters; at most {A.DESCRIPTION_CHARS} fit. Shorter, please.")
        elif own:
            (text,), found = A.scrub([own], blocklist)
            _say_replaced(term, found)


def choose_facts(term: Terminal, facts: Sequence[str]) -> list[str]:
    """The facts the owner keeps for the persona's memory."""
    if not facts:
        return []
    term.say("\nFacts for the persona's memory on the balloon (it recalls them by their words as it muses):")
    for n, fact in enumerate(facts, start=1):
        term.say(f"  {n:2}. {fact}")
    while True:
        choice = term.read("Keep them? y = all, numbers to leave out (as in: 2 5), n = none: ").strip().lower()
        if choice in ("y", "yes"):
            return list(facts)
        if choice in ("n", "no"):
            return []
        numbers = choice.replace(",", " ").split()
        if numbers and all(n.isdigit() and 1 <= int(n) <= len(facts) for n in numbers):
            out = {int(n) for n in numbers}
            return [f for n, f in enumerate(facts, start=1) if n not in out]
        term.say(f"Please answer y, n, or numbers from 1 to {len(facts)}.")


def describe_self(folder: Path, about: Path, bank: Bank, answers: AnswerLog, term: Terminal,
                  blocklist: Sequence[str] = (), now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)
                  ) -> A.SelfDescription | None:
    """Draft (from about.md, scrubbed first), show, approve and keep (DIR/self.toml) the
    self-description and facts; None when there is nothing to draft from."""
    about_text = about.read_text(encoding="utf-8") if about.is_file() else None
    if about_text is not None:
        sections, found = A.sections_of(about_text, blocklist)
        paragraphs, source = A.prose(sections), str(about)
    else:
        latest, _ = answers.read()
        paragraphs, found = A.scrub([latest[q]["answer"] for q in bank.draft_from
                                     if q in latest and not latest[q].get("skipped")], blocklist)
        sections, source = [], "your answers to " + ", ".join(bank.draft_from)
    if not paragraphs:
        term.say(f"\nNo self-description drafted: write {about} (a few paragraphs about yourself; docs/data.md, "
                 f"\"The interview\") and run again with --self-description.")
        return None
    term.say(f"\nDrafted from {source}.")
    _say_replaced(term, found)
    description = confirm_description(term, A.draft_description(paragraphs), blocklist)
    kept = choose_facts(term, A.draft_facts(sections, description))
    sd = A.SelfDescription(description, tuple(kept), A.sha256_text(about_text), iso_utc(now()))
    path = A.save_self(folder, sd)
    term.say(f"Kept in {path}: `build` puts the description in the persona's system prompt and the "
             f"{len(kept)} fact(s) in its memory.")
    return sd


# ---------------------------------------------------------------------------------------------
# The command


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "interview",
        help="answer questions about how you think, in the terminal; the answers become training data",
        description=(
            "Ask you questions (how you approach a problem, when you stop or push on, what you are\n"
            "unsure of, what you value ...) and keep every answer, verbatim, in DIR/answers.jsonl the\n"
            f"moment you end it with a line holding only '{END}'. Stop any time (/quit or Ctrl-C): the\n"
            "next run goes on with the next unanswered question. Give DIR to `prepare` like an export:\n"
            "each answer becomes an example whose instruction is its question. At the end, a short\n"
            "self-description and facts drafted from DIR/about.md are shown for you to approve; `build`\n"
            "puts them in the persona's system prompt and memory."
        ),
        epilog=(
            "example:\n"
            "  python -m host_training interview --out ~/interview\n"
            "  python -m host_training prepare ~/exports ~/interview --owner \"Your Name\" --out data\n"
            "\n"
            "exit status: 0 done or quit, 130 stopped by Ctrl-C (answers kept), 2 bad question file,\n"
            "             blocklist or folder"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", required=True, type=Path, metavar="DIR",
                   help="the interview's folder (created if missing): answers.jsonl, about.md, self.toml")
    p.add_argument("--questions", action="append", type=Path, default=[], metavar="FILE",
                   help="a TOML file of your own questions, added to the shipped bank; a question with the "
                        "same <category>.<key> id replaces the shipped one (format: host_training/data/"
                        "interview.toml). Repeat for several files")
    p.add_argument("--no-builtin", action="store_true",
                   help="ask only the questions of --questions FILE, not the shipped bank")
    p.add_argument("--skipped", action="store_true", help="ask the questions you skipped before, too")
    p.add_argument("--about", type=Path, metavar="FILE",
                   help=f"what you wrote about yourself, in Markdown (default DIR/{ABOUT_FILE}); the "
                        "self-description and facts are drafted from it")
    p.add_argument("--self-description", action="store_true",
                   help="skip the questions: draft the self-description and facts again and ask you to approve them")
    p.add_argument("--blocklist", type=Path, metavar="FILE",
                   help="prepare's blocklist: its words are replaced in the self-description and facts too")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from . import BlocklistError, load_blocklist

    try:
        if args.no_builtin and not args.questions:
            raise BankError("--no-builtin needs --questions FILE: there would be no question to ask")
        bank = load_bank(args.questions, builtin=not args.no_builtin)
        blocklist = load_blocklist(args.blocklist) if args.blocklist else []
    except (BankError, BlocklistError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        approved = A.load_self(args.out)
    except OSError as e:
        print(f"error: cannot use {args.out}: {e}", file=sys.stderr)
        return 2
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    about = args.about or args.out / ABOUT_FILE
    answers = AnswerLog(args.out)
    with CtrlC() as ctrl_c:
        try:
            if not _converse(args, bank, blocklist, approved, about, answers, Terminal(read=Console(ctrl_c).read)):
                return 0
            ctrl_c.check()  # a Ctrl-C while the last things were saved: all is kept, and it still stops
        except KeyboardInterrupt:
            print(f"\nStopped. Every answer you ended is kept in {answers.path}; run the same command to go on.",
                  flush=True)
            return 130
        except EOFError:  # the terminal closed (or Ctrl-D): what was ended is on the disk
            print(f"\nThe terminal closed. Every answer you ended is kept in {answers.path}.", flush=True)
            return 0
        except OSError as e:
            print(f"error: cannot write to {args.out}: {e}", file=sys.stderr)
            return 2
    return 0


def _converse(args: argparse.Namespace, bank: Bank, blocklist: Sequence[str], approved: A.SelfDescription | None,
              about: Path, answers: AnswerLog, term: Terminal) -> bool:
    """The questions, then the self-description; False when the owner quit. Ctrl-C raises
    KeyboardInterrupt only from `term.read`, so whatever was ended before it is saved."""
    if not args.self_description:
        if not ask(bank, answers, term, skipped_again=args.skipped):
            term.say(f"Stopped. Your answers are kept in {answers.path}; run the same command to go on.")
            return False
        current = A.sha256_text(about.read_text(encoding="utf-8")) if about.is_file() else ""
        if approved is not None and approved.about_sha256 == current:
            term.say(f"Your self-description is approved ({args.out / SELF_FILE}); --self-description changes it.")
            return True
    describe_self(args.out, about, bank, answers, term, blocklist)
    return True
