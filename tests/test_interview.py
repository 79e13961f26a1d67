"""The interview: the question bank, answers kept one by one through Ctrl-C, prepare's examples,
the self-description and facts, and where they end up (system prompt, bundle, payload memory)."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import select
import signal
import subprocess
import sys
import termios
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest

from host_training.__main__ import main
from host_training.ingest import detect
from host_training.ingest.interview import ABOUT_PROMPT, AboutReader, InterviewReader, about_sections
from host_training.pipeline import bundling, stages
from host_training.pipeline.build_config import BuildConfig
from host_training.prepare import about as A
from host_training.prepare.interview import (
    AnswerLog,
    Bank,
    BankError,
    Question,
    Terminal,
    ask,
    describe_self,
    load_bank,
    read_text,
)
from payload.persona.memory import OWNER, Memory
from payload.persona.prompts import build_prompt
from stratoecho.bundle import BundleManifest, file_entry, load_bundle, write_bundle

ROOT = Path(__file__).resolve().parent.parent
WAIT_S = 120.0  # for a prompt to appear: generous, the machine may be busy; nothing races a clock

BANK = """\
draft_from = ["me.intro"]

[me]
title = "Who you are"
[me.questions]
intro = "Introduce yourself."
days = "What fills your days?"

[think]
title = "How you think"
[think.questions]
stuck = "What do you do when you are stuck?"
mind = "When did you last change your mind?"
value = "What do you value?"
"""

ABOUT = """\
# About me

I am Ada, a meteorology technician in Uppsala. I launch radiosondes twice a day.
Call me on +46 70 123 45 67 if the balloon lands in your garden.

## Things I like

- Fog in the morning
- Strong tea
"""


# ---------------------------------------------------------------------------------------------
# The interview in a real terminal (a pseudo-terminal), stopped with Ctrl-C and resumed


class Terminalled:
    """A command on a pseudo-terminal that is its controlling terminal, so a typed Ctrl-C is a
    SIGINT from the line discipline, as at a real keyboard."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        self.master, slave = os.openpty()
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "STRATOECHO_LOG_LEVEL": "WARNING"}
        self.proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env,
                                     start_new_session=True,
                                     preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
        os.close(slave)
        self.seen = ""
        self.pos = 0  # what `expect` has matched up to

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return False
        try:
            chunk = os.read(self.master, 65536)
        except OSError as e:  # EIO: the command has ended and closed the terminal
            if e.errno != errno.EIO:
                raise
            chunk = b""
        if not chunk:
            raise EOFError
        self.seen += chunk.decode("utf-8", errors="replace").replace("\r\n", "\n")
        return True

    def expect(self, text: str) -> str:
        """Wait until `text` appears after what was matched before; the output up to it."""
        while (at := self.seen.find(text, self.pos)) < 0:
            try:
                if not self._read(WAIT_S):
                    raise AssertionError(f"no {text!r} within {WAIT_S} s; the terminal shows:\n{self.seen[-2000:]}")
            except EOFError:
                raise AssertionError(f"ended before {text!r}; the terminal shows:\n{self.seen[-2000:]}") from None
        before, self.pos = self.seen[self.pos:at], at + len(text)
        return before

    def type(self, *lines: str) -> None:
        for line in lines:
            os.write(self.master, line.encode() + b"\n")

    def finish(self) -> int:
        try:  # read until the command closes its terminal; silence for WAIT_S ends the loop and
            while self._read(WAIT_S):  # the wait below fails on a command that hangs, not the test
                continue
        except EOFError:  # closed: everything it wrote has been read
            pass
        rc = self.proc.wait(timeout=WAIT_S)
        os.close(self.master)
        return rc


def _interview(folder: Path, bank: Path, *extra: str) -> Terminalled:
    return Terminalled([sys.executable, "-m", "host_training", "interview", "--out", str(folder), "--questions",
                        str(bank), "--no-builtin", *extra], cwd=ROOT)


def _posts(folder: Path) -> Path:
    """Some older writing beside the interview, for prepare to split by time."""
    folder.mkdir()
    for day in range(1, 7):
        (folder / f"2024-05-0{day}-fog.md").write_text(
            f"# Fog, day {day}\n\nThe fog came in over the field again, thick as wool, day {day} of it.\n",
            encoding="utf-8")
    return folder


def test_the_interview_survives_ctrl_c_resumes_and_its_answers_train_as_writing(tmp_path):
    bank = tmp_path / "bank.toml"
    bank.write_text(BANK, encoding="utf-8")
    folder = tmp_path / "interview"

    t = _interview(folder, bank)
    t.expect("0 answered and 0 skipped so far, 5 to ask")
    t.expect("[1/5] Who you are\nIntroduce yourself.")
    t.expect("> ")
    t.type("I am Ada, and I watch the sky for a living.", "", "  Mostly fog, to be honest.", ".")
    t.expect("kept (1 answered, 0 skipped, 4 to go)")
    t.expect("What fills your days?")
    t.type("/skip")
    t.expect("skipped (1 answered, 1 skipped, 3 to go)")
    t.expect("What do you do when you are stuck?")
    t.type("I go for a walk.", ".")
    t.expect("kept (2 answered")
    t.expect("When did you last change your mind?")
    t.expect("> ")
    t.type("Only half of an answer")
    t.expect("> ")  # the line was read: the answer is being typed
    os.write(t.master, b"this too is lost\x03")  # Ctrl-C in the middle of an answer
    t.expect("Stopped. Every answer you ended is kept")
    assert t.finish() == 130

    latest, broken = AnswerLog(folder).read()
    assert broken == [] and list(latest) == ["me.intro", "me.days", "think.stuck"]
    assert latest["me.intro"]["answer"] == "I am Ada, and I watch the sky for a living.\n\n  Mostly fog, to be honest."
    assert latest["me.days"].get("skipped") is True and latest["think.stuck"]["answer"] == "I go for a walk."
    assert "half" not in (folder / "answers.jsonl").read_text(encoding="utf-8")

    (folder / "about.md").write_text(ABOUT, encoding="utf-8")
    t = _interview(folder, bank)
    t.expect("2 answered and 1 skipped so far, 2 to ask")
    t.expect("[4/5] How you think\nWhen did you last change your mind?")
    t.type("Last spring, about tea.", ".")
    t.expect("What do you value?")
    t.type("/back")  # redo the one before
    t.expect("When did you last change your mind?\nYour answer (")
    t.expect("Last spring, about tea.")
    t.type("Last spring, about coffee.", ".")
    t.expect("What do you value?")
    t.type("Quiet mornings.", ".")
    t.expect("That was the last question: 4 answered, 1 skipped (run again with --skipped")

    # the self-description: drafted from about.md, scrubbed, then written anew by the owner
    t.expect("(private values were replaced, as prepare does: phone 1)")
    draft = t.expect("Use it? y = yes, e = write your own, n = none: ")
    assert "I am Ada, a meteorology technician in Uppsala." in draft and "<PHONE_1>" in draft
    t.type("e")
    t.expect("end with a line holding only '.'")
    t.type("word " * 60, ".")  # 300 characters: too long
    t.expect("at most 240 fit. Shorter, please.")
    t.expect("Use it?")
    t.type("e")
    t.expect("end with a line holding only '.'")
    t.type("I launch weather balloons in Uppsala", "and I like fog.", ".")
    shown = t.expect("Use it?")
    assert "I launch weather balloons in Uppsala and I like fog." in shown
    t.type("y")
    facts = t.expect("Keep them?")
    assert re.search(r"1\. I am Ada, a meteorology technician in Uppsala\.", facts)
    assert "Things I like: Strong tea" in facts
    t.type("7")  # out of range: asked again
    t.expect("Please answer y, n, or numbers from 1 to")
    t.type("1")
    t.expect("Kept in")
    assert t.finish() == 0

    own = A.load_self(folder)
    assert own.description == "I launch weather balloons in Uppsala and I like fog."
    assert own.facts[0] == "I launch radiosondes twice a day." and "Things I like: Strong tea" in own.facts
    assert not any("Uppsala." in f for f in own.facts) and any("<PHONE_1>" in f for f in own.facts)
    assert datetime.fromisoformat(own.approved).tzinfo is not None

    # prepare: each answer an example (question -> answer, the latest), in the writing tier, all in train
    data = tmp_path / "data"
    assert main(["--log-level", "WARNING", "prepare", str(folder), str(_posts(tmp_path / "posts")),
                 "--owner", "Ada", "--out", str(data)]) == 0
    train = [json.loads(line) for line in (data / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    pairs = {e["messages"][0]["content"]: (e["messages"][1]["content"], e.get("weight")) for e in train}
    report = json.loads((data / "report.json").read_text(encoding="utf-8"))
    weight = report["tiers"]["train"]["1"]["weight"]  # tier 1, writing: the answers' tier
    writing = None if weight == 1 else weight  # a weight of 1 is not written
    assert pairs["Introduce yourself."] == ("I am Ada, and I watch the sky for a living.\n\n  Mostly fog, to be "
                                            "honest.", writing)
    assert pairs["When did you last change your mind?"] == ("Last spring, about coffee.", writing)
    assert pairs["What do you value?"][0] == "Quiet mornings." and "What fills your days?" not in pairs
    assert pairs[ABOUT_PROMPT][0].startswith("I am Ada") and "<PHONE_1>" in pairs[ABOUT_PROMPT][0]
    assert pairs["Tell me about yourself: Things I like"][0] == "- Fog in the morning\n- Strong tea"
    val = (data / "val.jsonl").read_text(encoding="utf-8")
    assert "Quiet mornings" not in val and "fog came in" in val  # the latest posts are held out, not the answers
    assert report["examples"]["tiers"]["1"] == report["examples"]["post"]
    assert report["messages"]["dropped"]["skipped"] == 1  # the skipped question
    assert report["split"]["train_until"] < report["split"]["val_from"]
    messages = (data / "messages.jsonl").read_text(encoding="utf-8")
    answered = [json.loads(line) for line in messages.splitlines() if '"interview"' in line]
    assert {m["ts"] for m in answered} >= {latest["me.intro"]["at"]}  # each answer carries when it was given


# The interview's main thread with SIGINT blocked and a thread that only waits: every Ctrl-C is
# taken by that thread, so the interpreter's handler runs while the main thread's read is not
# interrupted -- what a Ctrl-C that lands after the prompt is written but before the read blocks
# does, here every time instead of now and then under load.
CTRL_C_ELSEWHERE = """\
import signal, sys, threading
threading.Thread(target=threading.Event().wait, daemon=True).start()
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
from host_training.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_ctrl_c_that_interrupts_no_read_still_stops_the_interview(tmp_path):
    bank = tmp_path / "bank.toml"
    bank.write_text(BANK, encoding="utf-8")
    folder = tmp_path / "interview"
    t = Terminalled([sys.executable, "-c", CTRL_C_ELSEWHERE, "interview", "--out", str(folder), "--questions",
                     str(bank), "--no-builtin"], cwd=ROOT)
    try:
        t.expect("Introduce yourself.")
        t.type("I watch the sky.", ".")
        t.expect("kept (1 answered")
        t.expect("What fills your days?")
        t.expect("> ")
        os.write(t.master, b"half an answer\x03")
        t.expect("Stopped. Every answer you ended is kept")
        assert t.finish() == 130
    finally:
        if t.proc.poll() is None:  # a hang fails above; leave no process behind
            t.proc.kill()
    latest, _ = AnswerLog(folder).read()
    assert list(latest) == ["me.intro"] and latest["me.intro"]["answer"] == "I watch the sky."


def _stdin(monkeypatch, text: str) -> None:
    """Standard input from a pipe holding `text`, then its end."""
    r, w = os.pipe()
    os.write(w, text.encode())
    os.close(w)
    monkeypatch.setattr(sys, "stdin", open(r, encoding="utf-8"))


def test_a_ctrl_c_as_an_answer_is_ended_keeps_it_and_stops_before_the_next(tmp_path, monkeypatch, capsys):
    bank = tmp_path / "bank.toml"
    bank.write_text(BANK, encoding="utf-8")
    _stdin(monkeypatch, "I watch the sky.\n.\nNot asked yet.\n.\n")
    append = AnswerLog.append

    def ctrl_c_first(self, record):  # Ctrl-C after the '.' was read, before the answer is saved
        signal.raise_signal(signal.SIGINT)
        append(self, record)

    monkeypatch.setattr(AnswerLog, "append", ctrl_c_first)
    handler = signal.getsignal(signal.SIGINT)
    assert main(["interview", "--out", str(tmp_path / "iv"), "--questions", str(bank), "--no-builtin"]) == 130
    out = capsys.readouterr().out
    assert "kept (1 answered" in out and "Stopped. Every answer you ended is kept" in out
    assert "> " not in out.split("kept (1 answered")[1]  # stopped before reading the next answer
    latest, _ = AnswerLog(tmp_path / "iv").read()
    assert list(latest) == ["me.intro"] and latest["me.intro"]["answer"] == "I watch the sky."
    assert signal.getsignal(signal.SIGINT) is handler and signal.set_wakeup_fd(-1) == -1  # all put back


def test_the_end_of_standard_input_keeps_what_was_ended(tmp_path, monkeypatch, capsys):
    bank = tmp_path / "bank.toml"
    bank.write_text(BANK, encoding="utf-8")
    _stdin(monkeypatch, "yes\n.\nand th")  # the input ends inside an answer
    assert main(["interview", "--out", str(tmp_path / "iv"), "--questions", str(bank), "--no-builtin"]) == 0
    assert "The terminal closed. Every answer you ended is kept" in capsys.readouterr().out
    assert list(AnswerLog(tmp_path / "iv").read()[0]) == ["me.intro"]


def test_a_bad_question_file_is_named_with_its_line_and_nothing_is_asked(tmp_path, capsys):
    bad = tmp_path / "mine.toml"
    bad.write_text('[habits]\ntitle = "Habits"\n[habits.questions]\nmorning = "What first?"\nevening = 3\n',
                   encoding="utf-8")
    assert main(["interview", "--out", str(tmp_path / "iv"), "--questions", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:5: [habits.questions] evening: expected the question as a non-empty string, got 3" in err
    assert not (tmp_path / "iv" / "answers.jsonl").exists()


@pytest.mark.parametrize("text, expected", [
    ('[a\ntitle = "x"\n', "not valid TOML: "),
    ('[a]\ntitel = "x"\n', ":1: [a]: unknown key 'titel'; expected title and questions"),
    ('a = "x"\n', ":1: a: expected a category table ([a] with title and [a.questions]) or draft_from"),
    ('[a]\nquestions = ["x"]\n', ":1: [a] questions: expected a table of key = \"question\""),
    ('draft_from = "a.b"\n[a.questions]\nb = "x"\n', ':1: draft_from: expected a list of question ids'),
    ('draft_from = ["a.c"]\n[a.questions]\nb = "x"\n', ": draft_from names 'a.c', which is no question"),
    ('[a.questions]\n"b c" = "x"\n', ":2: [a.questions] 'b c': a question's key is letters, digits, - and _"),
    ("# nothing\n", ": no questions"),
])
def test_each_bank_mistake_says_where_and_what_was_expected(tmp_path, text, expected):
    bad = tmp_path / "q.toml"
    bad.write_text(text, encoding="utf-8")
    with pytest.raises(BankError) as e:
        load_bank([bad], builtin=False)
    assert str(e.value).startswith(str(bad)) and expected in str(e.value)
    if "TOML" in expected:
        assert "line 1" in str(e.value)


def test_the_shipped_bank_holds_dozens_of_questions_and_a_file_extends_it(tmp_path):
    shipped = load_bank()
    ids = [q.id for q in shipped.questions]
    assert len(ids) >= 36 and len(set(ids)) == len(ids) and len({q.title for q in shipped.questions}) >= 8
    assert set(shipped.draft_from) <= set(ids)
    mine = tmp_path / "mine.toml"
    mine.write_text('[values.questions]\nadmire = "Who do you look up to?"\n'
                    '[radio]\ntitle = "Radio"\n[radio.questions]\nfirst-qso = "Your first contact?"\n', encoding="utf-8")
    bank = load_bank([mine])
    by_id = {q.id: q for q in bank.questions}
    assert by_id["values.admire"].text == "Who do you look up to?" and by_id["values.admire"].title == "What you value"
    assert [q.id for q in bank.questions].index("values.admire") == ids.index("values.admire")  # in its place
    assert bank.questions[-1] == Question("radio.first-qso", "Radio", "Your first contact?")


# ---------------------------------------------------------------------------------------------
# answers.jsonl and the readers


def test_a_line_cut_short_is_skipped_and_the_next_answer_starts_its_own_line(tmp_path):
    log = AnswerLog(tmp_path)
    log.append({"id": "a.b", "question": "Q?", "at": "2025-01-02T03:04:05Z", "answer": "first"})
    with open(log.path, "ab") as f:
        f.write(b'{"interview": 1, "id": "a.c", "quest')  # the power went mid-write
    log.append({"id": "a.b", "question": "Q?", "at": "2025-01-03T03:04:05Z", "answer": "second"})
    latest, broken = log.read()
    assert latest["a.b"]["answer"] == "second" and [n for n, _ in broken] == [2]
    assert detect(log.path) == "interview"
    reader = InterviewReader(log.path)
    (m,) = list(reader.read(["Ada"]))
    assert (m.title, m.text, m.kind, m.source, m.ts) == ("Q?", "second", "post", "interview",
                                                         datetime(2025, 1, 3, 3, 4, 5, tzinfo=timezone.utc))
    assert reader.stats.skipped == {"corrupt": 1} and "line 2" in reader.stats.errors[0]


def test_about_md_is_read_by_sections_only_beside_an_interview(tmp_path):
    (tmp_path / "about.md").write_text(ABOUT, encoding="utf-8")
    assert detect(tmp_path / "about.md") == "markdown"  # on its own, a post like any other
    (tmp_path / "answers.jsonl").write_text("", encoding="utf-8")
    assert detect(tmp_path / "about.md") == "about"
    got = [(m.title, m.text) for m in AboutReader(tmp_path / "about.md").read(["Ada"])]
    assert [t for t, _ in got] == [ABOUT_PROMPT, "Tell me about yourself: Things I like"]
    assert about_sections("Hi there.\n## Work\nI work.\n## Empty\n") == [("", "Hi there."), ("Work", "I work.")]


# ---------------------------------------------------------------------------------------------
# The self-description: drafting and approving


def test_the_draft_is_whole_sentences_within_the_budget_and_the_facts_the_rest():
    sections, found = A.sections_of(ABOUT)
    assert found == {"phone": 1}
    paragraphs = A.prose(sections)
    assert A.draft_description(paragraphs) == ("I am Ada, a meteorology technician in Uppsala. I launch radiosondes "
                                               "twice a day. Call me on <PHONE_1> if the balloon lands in your garden.")
    assert A.draft_description(paragraphs, limit=60) == "I am Ada, a meteorology technician in Uppsala."
    assert A.draft_description(["One very long sentence without any end in sight at all"], limit=20) == "One very long…"
    facts = A.draft_facts(sections, "I am Ada, a meteorology technician in Uppsala.")
    assert facts == ["I launch radiosondes twice a day.", "Call me on <PHONE_1> if the balloon lands in your garden.",
                     "Things I like: Fog in the morning", "Things I like: Strong tea"]
    assert all(len(f) <= A.FACT_CHARS for f in A.draft_facts([("", "word " * 100 + ".")]))


def test_without_about_md_the_draft_comes_from_the_bank_s_draft_from_answers(tmp_path):
    bank = Bank((Question("me.intro", "Me", "Introduce yourself."),), draft_from=("me.intro",))
    log = AnswerLog(tmp_path)
    log.append({"id": "me.intro", "question": "Introduce yourself.", "at": "2025-01-02T03:04:05Z",
                "answer": "I build radios. Write to ada@example.org."})
    script = iter(["n"])
    said: list[str] = []
    sd = describe_self(tmp_path, tmp_path / "about.md", bank, log, Terminal(lambda _: next(script), said.append))
    assert sd.description == "" and sd.facts == () and A.load_self(tmp_path) == sd
    assert any("I build radios. Write to <EMAIL_1>." in s for s in said)


def test_a_command_is_a_lone_word_on_an_answer_s_first_line_and_anything_else_is_answer():
    lines = iter(["/skp", "/dev/null is where it went", "/skip", "", "."])
    said: list[str] = []
    assert read_text(Terminal(lambda _: next(lines), said.append)) == "/dev/null is where it went\n/skip"
    assert said == ["/skp is no command; the commands are /skip, /back, /quit, /help"]


def test_the_terminal_s_end_of_input_stops_without_losing_what_was_ended(tmp_path):
    bank = Bank((Question("a.one", "A", "One?"), Question("a.two", "A", "Two?")))
    lines = iter(["yes", ".", "and th"])

    def read(_prompt: str) -> str:
        try:
            return next(lines)
        except StopIteration:
            raise EOFError from None

    with pytest.raises(EOFError):
        ask(bank, AnswerLog(tmp_path), Terminal(read, lambda _: None))
    assert list(AnswerLog(tmp_path).read()[0]) == ["a.one"]


# ---------------------------------------------------------------------------------------------
# build: the system prompt and the bundle's [memory]; the payload seeds it


def _data(tmp_path: Path, interview: Path | None) -> stages.Data:
    folder = tmp_path / "data"
    folder.mkdir(parents=True)
    inputs = [{"path": str(interview / "answers.jsonl"), "format": "interview"}] if interview else []
    (folder / "report.json").write_text(json.dumps({"inputs": inputs}), encoding="utf-8")
    for name in ("train.jsonl", "val.jsonl"):
        (folder / name).write_text('{"messages": []}\n', encoding="utf-8")
    conv = [[{"role": "assistant", "name": "Ada", "content": "hi"}]]
    return stages.Data(folder, conv, conv)


def _approved(folder: Path, description="I launch balloons.", facts=("I like fog.", "Tea, strong.")) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "answers.jsonl").write_text("", encoding="utf-8")
    A.save_self(folder, A.SelfDescription(description, tuple(facts), "", "2025-01-01T00:00:00Z"))
    return folder


def test_build_puts_the_self_description_in_the_system_prompt_and_the_facts_aside(tmp_path):
    interview = _approved(tmp_path / "iv")
    data = _data(tmp_path, interview)  # prepare read the interview: build finds it by itself
    cfg = BuildConfig(data=data.folder, out=tmp_path / "b", training={"method": "from-scratch"})
    p = stages.persona_text(cfg, data)
    assert p.system_prompt == stages.SYSTEM_PROMPT.format(name="Ada") + " You wrote of yourself: I launch balloons."
    assert p.notes == ("I like fog.", "Tea, strong.")
    mine = stages.persona_text(cfg.model_copy(update={"system_prompt": "Be brief."}), data)
    assert mine.system_prompt == "Be brief." and mine.notes == p.notes  # an explicit prompt wins
    blocked = tmp_path / "block.txt"
    blocked.write_text("fog\n", encoding="utf-8")
    assert "fog" not in " ".join(stages.persona_text(cfg.model_copy(update={"blocklist": blocked}), data).notes)


def test_build_without_an_approved_self_description_keeps_the_default_or_says_what_to_do(tmp_path):
    data = _data(tmp_path, None)
    cfg = BuildConfig(data=data.folder, out=tmp_path / "b", training={"method": "from-scratch"})
    assert stages.persona_text(cfg, data) == stages.PersonaText("Ada", stages.SYSTEM_PROMPT.format(name="Ada"))
    with pytest.raises(stages.BuildError, match=r"--interview .*: no self.toml .*--self-description"):
        stages.persona_text(cfg.model_copy(update={"interview": tmp_path}), data)
    (tmp_path / "self.toml").write_text('description = "x"\nfacts = "not a list"\n', encoding="utf-8")
    with pytest.raises(stages.BuildError, match=r"(?s)self.toml.*\[facts\] Input should be a valid list"):
        stages.persona_text(cfg.model_copy(update={"interview": tmp_path}), data)


def _bundle(tmp_path: Path, notes: tuple[str, ...]) -> Path:
    """A bundle's persona.toml from bundling.manifest, around a stand-in model file."""
    out = tmp_path / "bundle"
    out.mkdir(parents=True)
    (out / "model.Q4_K_M.gguf").write_bytes(b"GGUF stand-in")
    (out / "eval.json").write_text("{}", encoding="utf-8")
    data = _data(tmp_path, None)
    figures = {"val_loss": 1.0, "val_perplexity": 2.7, "tokens": 10}
    manifest = bundling.manifest(
        SimpleNamespace(training=SimpleNamespace(method="from-scratch"), seed=1, loss="persona", out=out,
                        filler_targets=None), data,
        stages.PersonaText("Ada", "You are Ada.", notes),
        SimpleNamespace(template=SimpleNamespace(chat_template="{{ messages }}", stop=(), bos_token="", eos_token=""),
                        base="scratch", context_length=256, n_params=1, training={}),
        SimpleNamespace(file="model.Q4_K_M.gguf", quant="Q4_K_M", drift=None, vocab_trim=None),
        SimpleNamespace(quantized=figures, f32=figures, reference=None),
        bundling.GgufFacts("llama", False))
    assert manifest.files == [file_entry(out, "model.Q4_K_M.gguf"), file_entry(out, "eval.json")]
    write_bundle(out, manifest)
    return out


def test_the_facts_travel_in_the_bundle_and_a_bundle_without_them_reads_as_before(tmp_path):
    with_notes = _bundle(tmp_path / "a", ("I like fog.",))
    assert load_bundle(with_notes).manifest.memory.notes == ["I like fog."]
    without = _bundle(tmp_path / "b", ())
    assert "[memory]" not in (without / "persona.toml").read_text(encoding="utf-8")
    assert load_bundle(without).manifest.memory is None
    assert BundleManifest.model_fields["memory"].default is None


def test_the_payload_seeds_the_owner_s_facts_once_across_reboots_and_follows_the_bundle(tmp_path):
    path = tmp_path / "memory.db"
    m = Memory(path)
    m.remember_note("balloon party at noon", 100.0)  # from the ground: never touched by seeding
    assert m.seed_notes(["I like fog.", "Tea, strong.", "I like fog."], 200.0) == 2
    m.close()
    m = Memory(path)  # a reboot: the same bundle seeds nothing new
    assert m.seed_notes(["I like fog.", "Tea, strong."], 300.0) == 0
    assert sorted(e.text for e in m.recent(10, kinds=("note",)) if e.source == OWNER) == ["I like fog.", "Tea, strong."]
    assert m.seed_notes(["Tea, strong.", "Coffee too."], 400.0) == 1  # a new bundle: its facts, no others
    notes = {e.text: e for e in m.recent(10, kinds=("note",))}
    assert set(notes) == {"balloon party at noon", "Tea, strong.", "Coffee too."}
    assert notes["Tea, strong."].created.timestamp() == 200.0  # kept as it was
    assert m.recall("fog tea", kinds=("note",))[0].text == "Tea, strong."
    m.close()


def test_a_daemon_seeds_its_memory_from_its_bundle_and_the_prompt_says_it_knows(tmp_path):
    from payload.assembly import build_onboard
    from payload.clock import Clock
    from payload.config import PayloadConfig
    from payload.persona.prompts import PromptContext
    from sim.world.flight import SimSensors
    from tests.fakes import RecordingRadio

    bundle = load_bundle(_bundle(tmp_path, ("I like fog.",)))
    clock = Clock(speedup=1e6)
    for _boot in range(2):
        d = build_onboard(PayloadConfig(), SimSensors(clock), RecordingRadio(), clock, bundle, tmp_path / "data")
        (note,) = d.parts.memory.recent(5, kinds=("note",))
        d.parts.memory.close()
        d.parts.flight.governor.close()
        d.parts.store.close()
    assert (note.text, note.source) == ("I like fog.", OWNER)
    readings = SimSensors(clock).read()
    prompt = build_prompt("You are Ada.", readings, PromptContext(memories=[note]))
    assert "- you know: I like fog." in prompt.messages[1]["content"]
