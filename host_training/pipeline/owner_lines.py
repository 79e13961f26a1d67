"""The owner's own lines into the bundle (issue 49, item 3): her messages of train.jsonl indexed by
the situations a balloon meets, in her language's words (stratoecho/exemplars.py; the words are
`stratoecho/languages/<code>.toml` `[situations]`), written as `BUNDLE/lines.json`, listed in
`[[files]]` and named in `persona.toml [owner] lines`. The payload puts the few nearest to each
moment of the flight into the musing's prompt.

Only train.jsonl: val.jsonl's turns are what the persona's replies and musings are measured
against, and a musing that had them in its prompt would be measured on what it was shown.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import structlog

from stratoecho.bundle import OwnerSection, file_entry
from stratoecho.exemplars import OwnerLines, index
from stratoecho.languages import situation_words

log = structlog.get_logger(__name__)

LINES_FILE = "lines.json"


def owner_texts(conversations: Iterable[Sequence[Mapping]]) -> list[str]:
    """The owner's turns of `conversations`, each once (a weighted conversation repeats in the
    training data, not here), in the order written."""
    seen: dict[str, None] = {}
    for conv in conversations:
        for m in conv:
            if m.get("role") == "assistant" and m.get("content"):
                seen.setdefault(m["content"], None)
    return list(seen)


def add_owner_lines(out: Path, manifest, conversations: Iterable[Sequence[Mapping]], code: str | None) -> int:
    """Write BUNDLE/lines.json and name it in the manifest; the number of lines (0: no file, as for
    a language without situation words or an owner without lines worth offering)."""
    words = situation_words(code or "en")
    if not words:
        log.warning("build.owner_lines_none", language=code, why="no [situations] words for the language")
        return 0
    lines = index(owner_texts(conversations), words)
    if not lines:
        log.warning("build.owner_lines_none", language=code, why="no message of the owner's is worth offering")
        return 0
    (Path(out) / LINES_FILE).write_text(OwnerLines(code or "", tuple(lines)).dumps(), encoding="utf-8")
    manifest.files.append(file_entry(out, LINES_FILE))
    manifest.owner = (manifest.owner or OwnerSection()).model_copy(update={"lines": LINES_FILE})
    by = Counter(s for x in lines for s in x.situations)
    log.info("build.owner_lines", lines=len(lines), general=sum(not x.situations for x in lines), **by)
    return len(lines)
