"""Folding a person's answers from the judging page (`judge`) into figures: who told the persona apart.

A judge folder (default BUNDLE/judge/) holds:

    judge.html     the blind page sent to judges: pairs of replies, A and B, no key
    key.json       which side of each pair is the owner's real reply; never sent
    answers/*.json what judges saved from the page, put here by the owner

key.json:

    {"format": "stratoecho-judge-key", "version": 1, "page": "<16 hex>", "persona": "Ada",
     "model": "model.Q4_K_M.gguf", "model_sha256": "<64 hex>", "data_sha256": "<64 hex of val.jsonl>",
     "seed": 1234, "max_chars": 180, "created": "<ISO time>",
     "pairs": {"1": {"owner": "B", "case": 17}, ...}}        # case: index in evaluate.reply_cases(val)

answers/*.json (written by the page):

    {"format": "stratoecho-judge-answers", "version": 1, "page": "<16 hex>", "persona": "Ada",
     "model_sha256": "...", "data_sha256": "...", "judge": "JS", "session": "<16 hex>",
     "saved_at": "<ISO time>", "pairs": 20, "answers": {"1": "A", "2": "cant_tell", ...}}

`session` is random per browser: a judge who saves twice sends two files of one session, and
only the later counts. A "can't tell" counts as half a right pick, what a coin toss scores,
so a judge cannot raise the figure by answering only the easy pairs.

This module imports nothing else of host_training, so the report (report/) can use it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stratoecho.stats import wilson

log = structlog.get_logger(__name__)

JUDGE_DIR = "judge"  # inside the bundle, by default
PAGE_FILE = "judge.html"
KEY_FILE = "key.json"
ANSWERS_DIR = "answers"
KEY_FORMAT = "stratoecho-judge-key"
ANSWERS_FORMAT = "stratoecho-judge-answers"
VERSION = 1
CANT_TELL = "cant_tell"


class JudgeError(ValueError):
    """A judge folder, key or answers file that cannot be used; the message names the file."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KeyPair(_Strict):
    owner: Literal["A", "B"]
    case: int = Field(ge=0)


class Key(_Strict):
    format: Literal["stratoecho-judge-key"]
    version: Literal[1]
    page: str = Field(min_length=1)
    persona: str
    model: str
    model_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    data_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    seed: int
    max_chars: int = Field(ge=1)
    created: str
    pairs: dict[str, KeyPair] = Field(min_length=1)


class Answers(_Strict):
    format: Literal["stratoecho-judge-answers"]
    version: Literal[1]
    page: str
    persona: str
    model_sha256: str
    data_sha256: str
    judge: str = Field(min_length=1, max_length=200)
    session: str = Field(min_length=1, max_length=64)
    saved_at: str
    pairs: int = Field(ge=1)
    answers: dict[str, Literal["A", "B", "cant_tell"]]


def _validated(model: type[BaseModel], path: Path, what: str):
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise JudgeError(f"{path}: cannot read the {what}: {e}") from None
    except json.JSONDecodeError as e:
        raise JudgeError(f"{path}: not JSON ({e}); is it the {what}?") from None
    try:
        return model.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
        raise JudgeError(f"{path}: not a {what}: [{where}] {first['msg']}{more}") from None


def load_key(judge_dir: str | Path) -> Key:
    path = Path(judge_dir) / KEY_FILE
    if not path.is_file():
        raise JudgeError(f"{path}: no judging key here; make a page first with "
                         "`python -m host_training judge BUNDLE --data DIR`")
    return _validated(Key, path, "judging key (key.json)")


def read_answers(path: str | Path, key: Key) -> Answers | None:
    """The answers in `path`, checked against `key`; None (with a warning) when they were made for
    another model or other data. JudgeError naming the file when it is malformed, or made for
    another page of the same model (its pair ids would not mean the same pairs)."""
    path = Path(path)
    answers = _validated(Answers, path, "judge's answers file (saved from judge.html)")
    if answers.model_sha256 != key.model_sha256 or answers.data_sha256 != key.data_sha256:
        what = "model" if answers.model_sha256 != key.model_sha256 else "val.jsonl"
        log.warning("judge.answers_for_other_build", file=str(path), differs=what,
                    answers_model=answers.model_sha256[:12], key_model=key.model_sha256[:12])
        return None
    if answers.page != key.page:
        raise JudgeError(f"{path}: made on page {answers.page}, but {KEY_FILE} is for page {key.page} "
                         "(the page was made again since); score it with the key it was made for")
    unknown = sorted(set(answers.answers) - set(key.pairs), key=_pair_order)
    if unknown or answers.pairs != len(key.pairs):
        shown = ", ".join(unknown[:5]) if unknown else f"{answers.pairs} pairs, the key has {len(key.pairs)}"
        raise JudgeError(f"{path}: its pair ids do not match {KEY_FILE} ({shown}); "
                         "was it saved from this folder's judge.html?")
    return answers


def _pair_order(pair_id: str):
    return (0, int(pair_id), "") if pair_id.isdigit() else (1, 0, pair_id)


# ----------------------------------------------------------------------------- the figures
def _tally(answers: Answers, key: Key) -> dict:
    right = sum(1 for pid, pick in answers.answers.items() if pick == key.pairs[pid].owner)
    unsure = sum(1 for pick in answers.answers.values() if pick == CANT_TELL)
    n = len(answers.answers)
    return {"answered": n, "owner_picked": right, "persona_picked": n - right - unsure, "cant_tell": unsure}


def _share(t: dict) -> float | None:
    return (t["owner_picked"] + t["cant_tell"] / 2) / t["answered"] if t["answered"] else None


def meaning(share: float | None, low: float | None, high: float | None, name: str) -> str:
    """What the share says, in words."""
    if share is None:
        return "No answers yet."
    if low > 0.5:
        if share >= 0.9:
            return f"The judges almost always told {name}'s real reply from the persona's."
        return (f"The judges told {name}'s real reply from the persona's more often than chance: "
                f"the persona does not pass for {name} yet.")
    if high < 0.5:
        return (f"The judges took the persona's reply for {name}'s more often than {name}'s own: it passes for "
                f"{name}, or {name}'s real replies stand out (very short ones, say).")
    wide = " The interval is wide: more pairs or more judges would narrow it." if high - low > 0.3 else ""
    return f"Within chance: these judges could not tell the persona from {name}.{wide}"


def summary(judge_dir: str | Path, *, model_sha256: str | None = None, data_sha256: str | None = None) -> dict | None:
    """The judges' figures for the folder's page, or None when there is no page (no key.json) or
    its key was made for another model or val.jsonl than the ones given. Answers made for
    another model or data are ignored with a warning; JudgeError for a malformed key or answers
    file, or answers whose pair ids do not match the key."""
    judge_dir = Path(judge_dir)
    if not (judge_dir / KEY_FILE).is_file():
        return None
    key = load_key(judge_dir)
    for what, want, have in (("model", model_sha256, key.model_sha256), ("val.jsonl", data_sha256, key.data_sha256)):
        if want is not None and want != have:
            log.warning("judge.key_for_other_build", folder=str(judge_dir), differs=what, key=have[:12], wanted=want[:12])
            return None
    latest: dict[str, tuple[Answers, Path]] = {}
    ignored = []
    for path in sorted((judge_dir / ANSWERS_DIR).glob("*.json")):
        answers = read_answers(path, key)
        if answers is None:
            ignored.append(path.name)
            continue
        earlier = latest.get(answers.session)
        if earlier is None or earlier[0].saved_at <= answers.saved_at:
            latest[answers.session] = (answers, path)
        if earlier is not None:  # saved twice from one browser: the later file holds the final answers
            kept = latest[answers.session][1]
            log.info("judge.saved_twice", judge=answers.judge, kept=kept.name,
                     dropped=(path if kept == earlier[1] else earlier[1]).name)

    per_judge, total = [], {"answered": 0, "owner_picked": 0, "persona_picked": 0, "cant_tell": 0}
    for answers, path in sorted(latest.values(), key=lambda ap: (ap[0].judge.casefold(), ap[1].name)):
        t = _tally(answers, key)
        per_judge.append({"judge": answers.judge, "file": path.name, **t, "share": _share(t)})
        for k in total:
            total[k] += t[k]
    share = _share(total)
    low, high = wilson(total["owner_picked"] + total["cant_tell"] / 2, total["answered"]) if share is not None \
        else (None, None)
    return {"persona": key.persona, "page": key.page, "pairs": len(key.pairs), "model": key.model,
            "model_sha256": key.model_sha256, "data_sha256": key.data_sha256, "judges": len(per_judge), **total,
            "share": share, "low": low, "high": high, "meaning": meaning(share, low, high, key.persona),
            "per_judge": per_judge, "ignored": ignored}


# ----------------------------------------------------------------------------- the report
def _md(text: str, limit: int = 60) -> str:
    """A judge's or persona's name as Markdown text: one line, no markup."""
    text = " ".join(text.split())[:limit]
    return "".join("\\" + c if c in "\\`*_[]<>|" else c for c in text)


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.0f} %"


def report_lines(s: dict | None) -> list[str]:
    """report.md's section on the judges (Markdown lines, ending with a blank one); [] without a page."""
    if s is None:
        return []
    name = _md(s["persona"])
    L = ["## Judged by people", "",
         f"Blind pairs (`python -m host_training judge`): each judge saw a message and two replies to it, "
         f"{name}'s real one and the persona's, in an order drawn at random, and picked the one {name} wrote. "
         f"The page holds {s['pairs']} pairs (page {s['page']}, model sha256 {s['model_sha256'][:12]}…).", ""]
    if s["ignored"]:
        L += [f"Ignored, made for another model or val.jsonl: {', '.join(_md(f) for f in s['ignored'])}.", ""]
    if not s["answered"]:
        return L + ["No answers yet: put the files judges send back in the judge folder's `answers/`.", ""]
    L += [f"| judge | answered | picked {name}'s | picked the persona's | can't tell | told apart |",
          "|---|---:|---:|---:|---:|---:|"]
    L += [f"| {_md(j['judge'], 40)} | {j['answered']} | {j['owner_picked']} | {j['persona_picked']} | "
          f"{j['cant_tell']} | {_pct(j['share'])} |" for j in s["per_judge"]]
    if len(s["per_judge"]) > 1:
        L.append(f"| **all** | {s['answered']} | {s['owner_picked']} | {s['persona_picked']} | {s['cant_tell']} | "
                 f"{_pct(s['share'])} |")
    L += ["",
          f"**Told apart {_pct(s['share'])} of the time (95 % interval {_pct(s['low'])} to {_pct(s['high'])})**, over "
          f"{s['answered']} answers from {s['judges']} judge{'s' if s['judges'] != 1 else ''}; a \"can't tell\" "
          "counts half, as a coin toss would score. 50 % means the persona cannot be told apart from "
          f"{name}; 100 % means it always can. {_md(s['meaning'], 400)}", ""]
    return L


def report_section(judge_dir: str | Path, model_sha256: str, data_sha256: str | None = None) -> list[str]:
    """report_lines for the report of one model (and val.jsonl): nothing when the folder has no page
    for them, and a line naming the problem instead of figures when an answers file is bad."""
    try:
        return report_lines(summary(judge_dir, model_sha256=model_sha256, data_sha256=data_sha256))
    except JudgeError as e:
        return ["## Judged by people", "", f"Not scored: {_md(str(e), 400)}", ""]
