"""The owner's self-description and facts: drafted from about.md, approved in `interview`, kept in self.toml.

    description  at most DESCRIPTION_CHARS, which `build` puts in the bundle's system prompt.
                 Every musing prompt carries it and a tiny model's context is 256-512 tokens,
                 so it is a few sentences, not a biography.
    facts        short sentences the payload seeds into its memory as notes (payload/persona/memory.py),
                 recalled by their words when a musing touches them.

Drafting is deterministic, no model: the description is the opening sentences of about.md (or,
without one, of the answers to the question bank's `draft_from` questions) that fit the budget;
the facts are about.md's list items and sentences, at most FACT_CHARS each, less the sentences
already in the description. Both are scrubbed like everything `prepare` writes, and the owner
approves or rewrites them before anything is stored (interview.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import structlog
import tomli_w
from pydantic import BaseModel, ConfigDict, Field

from stratoecho.config import load_toml
from stratoecho.privacy import PrivacyScrubber, escape_special_tokens

from ..ingest.interview import SELF_FILE, about_sections

log = structlog.get_logger(__name__)

DESCRIPTION_CHARS = 240  # ~60-120 tokens beside a ~130-character system prompt, in a 512-token context
FACT_CHARS = 200
MAX_FACTS = 24
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+(?=\S)")
_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+(.*)$")


class SelfFile(BaseModel):
    """self.toml as `interview` writes it; a hand edit is checked against the same limits."""

    model_config = ConfigDict(extra="forbid")
    description: str = Field("", max_length=DESCRIPTION_CHARS)
    facts: list[Annotated[str, Field(min_length=1, max_length=FACT_CHARS)]] = Field(default_factory=list,
                                                                                  max_length=MAX_FACTS)
    about_sha256: str = ""  # of the about.md the draft came from ("" without one)
    approved: str = ""  # when the owner approved it, UTC


@dataclass(frozen=True)
class SelfDescription:
    description: str
    facts: tuple[str, ...]
    about_sha256: str = ""
    approved: str = ""


# ---------------------------------------------------------------------------------------------
# Drafting (pure)


def sentences(text: str) -> list[str]:
    """The sentences of a paragraph, its line breaks read as spaces."""
    flat = " ".join(text.split())
    return [s for s in _SENTENCE_END.split(flat) if s]


def fit(text: str, limit: int) -> str:
    """`text` if it fits in `limit` characters, else cut at a word boundary with an ellipsis."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    return (cut.rsplit(" ", 1)[0] if " " in cut else cut).rstrip(" ,;:-") + "…"


def _paragraphs(text: str) -> list[str]:
    return [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]


def _is_list(paragraph: str) -> bool:
    return all(_ITEM.match(line) for line in paragraph.splitlines() if line.strip())


def sections_of(markdown: str, blocklist: Sequence[str] = ()) -> tuple[list[tuple[str, str]], Counter[str]]:
    """about.md as (heading, text) sections (ingest.interview.about_sections: Markdown stripped),
    scrubbed, and what was replaced. Stripped first, so no placeholder is taken for an HTML tag."""
    sections = about_sections(markdown)
    flat, found = scrub([part for section in sections for part in section], blocklist)
    return list(zip(flat[::2], flat[1::2])), found


def prose(sections: Sequence[tuple[str, str]]) -> list[str]:
    """The running text of about.md's sections as paragraphs: its opening, else its first
    section; lists left out."""
    opening = [text for heading, text in sections if not heading] or [text for _, text in sections[:1]]
    return [p for text in opening for p in _paragraphs(text) if not _is_list(p)]


def draft_description(paragraphs: Sequence[str], limit: int = DESCRIPTION_CHARS) -> str:
    """The first sentences of `paragraphs` that fit in `limit` characters together (the first one
    cut to fit if it alone is longer)."""
    out = ""
    for s in (s for p in paragraphs for s in sentences(p)):
        joined = f"{out} {s}" if out else s
        if len(joined) > limit:
            return out or fit(s, limit)
        out = joined
    return out


def draft_facts(sections: Sequence[tuple[str, str]], description: str = "", limit: int = FACT_CHARS,
                most: int = MAX_FACTS) -> list[str]:
    """about.md's sections as short facts: each list item (after its section's heading) and each
    sentence, in order, without the description's sentences or repeats."""
    said = set(sentences(description))
    facts: list[str] = []
    for heading, text in sections:
        for paragraph in _paragraphs(text):
            if _is_list(paragraph):
                items = [_ITEM.match(line)[1] for line in paragraph.splitlines() if line.strip()]
                found = [f"{heading}: {item}" if heading else item for item in items]
            else:
                found = [s for s in sentences(paragraph) if s not in said]
            for fact in (fit(f, limit) for f in found):
                if fact not in facts:
                    facts.append(fact)
    return facts[:most]


def scrub(texts: Iterable[str], blocklist: Sequence[str] = ()) -> tuple[list[str], Counter[str]]:
    """The texts with private values replaced as `prepare` replaces them, and what was replaced."""
    scrubber = PrivacyScrubber(blocklist)
    found: Counter[str] = Counter()
    out = []
    for text in texts:
        clean, counts = scrubber.scrub(text)
        found.update(counts)
        clean, escaped = escape_special_tokens(clean)
        found["special_token"] += escaped
        out.append(clean)
    return out, +found


def sha256_text(text: str | None) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest() if text is not None else ""


# ---------------------------------------------------------------------------------------------
# self.toml

_HEADER = (
    "# The owner's self-description and facts, approved in `python -m host_training interview`.\n"
    f"# `build` puts description (at most {DESCRIPTION_CHARS} characters) in the persona's system prompt and\n"
    f"# facts (at most {MAX_FACTS}, {FACT_CHARS} characters each) in the payload's memory as notes.\n"
)


def save_self(folder: Path, sd: SelfDescription) -> Path:
    """self.toml, written whole and renamed into place: never half an approval."""
    SelfFile(description=sd.description, facts=list(sd.facts), about_sha256=sd.about_sha256, approved=sd.approved)
    path = Path(folder) / SELF_FILE
    tmp = path.with_name(f".{SELF_FILE}.{os.getpid()}.tmp")
    body = tomli_w.dumps(dict(description=sd.description, facts=list(sd.facts), about_sha256=sd.about_sha256,
                              approved=sd.approved))
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(_HEADER + body)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def load_self(folder: Path) -> SelfDescription | None:
    """The approved self-description in `folder`, None without self.toml; stratoecho.config.ConfigError
    naming the file and the key when it does not read."""
    path = Path(folder) / SELF_FILE
    if not path.is_file():
        return None
    got = load_toml(path, SelfFile)
    return SelfDescription(got.description.strip(), tuple(f.strip() for f in got.facts), got.about_sha256, got.approved)


def interview_folders(data: Path) -> list[Path]:
    """The interview folders `prepare` read into `data` (its report.json's inputs), existing ones only:
    how `build --data DIR` finds the self-description without being told."""
    try:
        inputs = json.loads((Path(data) / "report.json").read_text(encoding="utf-8")).get("inputs", [])
    except (OSError, ValueError, AttributeError):
        return []
    folders = []
    for entry in inputs:
        if isinstance(entry, dict) and entry.get("format") in ("interview", "about"):
            folder = Path(str(entry.get("path", ""))).parent
            if folder.is_dir() and folder not in folders:
                folders.append(folder)
    return folders


def for_build(interview: Path | None, data: Path, blocklist: Sequence[str] = ()) -> tuple[SelfDescription | None, Path | None]:
    """The approved self-description `build` uses, and the folder it came from: `interview`'s
    self.toml when given, else the one of the interview `prepare` read into `data`; scrubbed again
    with build's blocklist (words added to it since the interview count too). ValueError (or
    ConfigError for a self.toml that does not read) says what to do."""
    if interview is not None:
        if not (Path(interview) / SELF_FILE).is_file():
            raise ValueError(f"--interview {interview}: no {SELF_FILE} (approve a self-description first: "
                             f"python -m host_training interview --out {interview} --self-description)")
        folder = Path(interview)
    else:
        found = [f for f in interview_folders(data) if (f / SELF_FILE).is_file()]
        if len(found) > 1:
            raise ValueError(f"the data comes from several interviews with a self-description ({', '.join(map(str, found))}); "
                             "choose one with --interview DIR")
        if not found:
            if interview_folders(data):
                log.warning("the interview prepare read has no approved self-description; the system prompt "
                            "is the default", folders=[str(f) for f in interview_folders(data)])
            return None, None
        folder = found[0]
    sd = load_self(folder)
    texts, replaced = scrub([sd.description, *sd.facts], blocklist)
    if replaced:
        log.warning("private values replaced in the self-description", file=str(folder / SELF_FILE), **replaced)
    return SelfDescription(texts[0], tuple(texts[1:]), sd.about_sha256, sd.approved), folder
