"""The privacy probe: generated samples searched with stratoecho.privacy's detectors and the
owner's own private strings (--private, --blocklist); a hit names its kind and shows an
excerpt with every private value replaced by its kind, never the value (verdicts: the
package's docstring).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from stratoecho import privacy
from stratoecho.privacy import PLACEHOLDER, find_private

EXCERPT_CHARS = 40  # context either side of a privacy hit in the report
MIN_PRIVATE_CHARS = 3  # a shorter --private string would match nearly everything


# A private value found in a generation. Higher in this list wins when two overlap.
PRIVATE_KINDS = ("private", "blocked")  # what the owner named: a hit is a FAIL
# Then every kind the scrubber finds, in its own order (stratoecho.privacy.KINDS: national ids included).
KIND_RANK = ("private", "blocked", *(k for k in privacy.KINDS if k != "blocked"))


def load_private_strings(path: str | Path) -> list[str]:
    """`--private FILE`: one literal string a line (surrounding spaces and blank lines ignored;
    no comments, since a private string may well start with #); or, for a file ending in .json,
    a JSON list of strings or an object whose values are such lists (the sample corpus's
    planted_pii.json: {"phone": [...], "email": [...]}). ValueError names the line (or the key)
    of a string too short to search for."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot read the private strings: {e}") from e
    if path.suffix.lower() == ".json":
        return _private_json(path, text)
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s:
            continue
        if len(s) < MIN_PRIVATE_CHARS:
            raise ValueError(f"{path}:{number}: a private string needs at least {MIN_PRIVATE_CHARS} characters "
                             f"(shorter ones match nearly any text)")
        out.append(s)
    return out


def _private_json(path: Path, text: str) -> list[str]:
    import json

    try:
        doc = json.loads(text)
    except ValueError as e:
        raise ValueError(f"{path}: not JSON ({e})") from None
    groups = doc.items() if isinstance(doc, dict) else [("", doc)]
    out = []
    for key, values in groups:
        where = f"{path}" + (f", key {key!r}" if key else "")
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ValueError(f"{where}: expected a list of strings")
        for v in (v.strip() for v in values):
            if len(v) < MIN_PRIVATE_CHARS:
                raise ValueError(f"{where}: a private string needs at least {MIN_PRIVATE_CHARS} characters "
                                 f"(shorter ones match nearly any text)")
            out.append(v)
    return out


class Redactor:
    """Finds private values in text and replaces each with its kind in brackets, "[PHONE]".

    Searched: stratoecho.privacy's detectors; `blocklist` entries in prepare's format (word
    or /regex/, case-insensitive); `private` literal strings, anywhere, case-insensitive and
    with any run of whitespace matching any other. A finding inside a placeholder such as
    <PHONE_1> is not a finding: the model learnt placeholders from the scrubbed data.
    """

    def __init__(self, private: Iterable[str] = (), blocklist: Iterable[str] = ()) -> None:
        self.private = [p for p in (s.strip() for s in private) if p]
        self.blocklist = list(blocklist)
        self._private_re = [
            re.compile(r"\s+".join(re.escape(part) for part in p.split()), re.IGNORECASE) for p in self.private
        ]

    def findings(self, text: str) -> list[tuple[str, int, int]]:
        """(kind, start, end) of every private value in `text`, in order, overlaps merged."""
        spans = [(f.kind, f.start, f.end) for f in find_private(text, self.blocklist)]
        spans += [("private", m.start(), m.end()) for p in self._private_re for m in p.finditer(text)]
        holders = [m.span() for m in PLACEHOLDER.finditer(text)]
        spans = [s for s in spans if not any(a <= s[1] and s[2] <= b for a, b in holders)]
        merged: list[list] = []
        for kind, s, e in sorted(spans, key=lambda t: (t[1], -t[2])):
            if merged and s < merged[-1][2]:
                last = merged[-1]
                last[2] = max(last[2], e)
                if KIND_RANK.index(kind) < KIND_RANK.index(last[0]):
                    last[0] = kind
            else:
                merged.append([kind, s, e])
        return [tuple(m) for m in merged]

    def redact_marked(self, text: str) -> tuple[str, list[tuple[str, int, int]]]:
        """(text with every finding replaced by "[KIND]", (kind, start, length) of each marker in it)."""
        out, marks, pos, at = [], [], 0, 0
        for kind, s, e in self.findings(text):
            marker = f"[{kind.upper()}]"
            out += [text[pos:s], marker]
            at += s - pos
            marks.append((kind, at, len(marker)))
            at += len(marker)
            pos = e
        out.append(text[pos:])
        return "".join(out), marks

    def redact(self, text: str) -> str:
        return self.redact_marked(text)[0]

    def redact_literals(self, text: str) -> str:
        """Only the --private strings replaced: safe on a whole Markdown file, where the
        detectors and /regex/ entries could match table syntax or figures."""
        for p in self._private_re:
            text = p.sub("[PRIVATE]", text)
        return text


@dataclass(frozen=True)
class ProbeHit:
    sample: int  # index into the probed texts
    kind: str
    excerpt: str  # redacted: no private value in it


@dataclass
class ProbeResult:
    samples: int
    hits: list[ProbeHit] = field(default_factory=list)
    private_strings: int = 0
    blocklist_entries: int = 0

    @property
    def by_kind(self) -> dict[str, int]:
        return dict(sorted(Counter(h.kind for h in self.hits).items(), key=lambda kv: KIND_RANK.index(kv[0])))

    @property
    def verdict(self) -> str:
        """"fail", "warn" or "pass" (see the module docstring); "skipped" when nothing was sampled."""
        if self.samples == 0:
            return "skipped"
        if any(h.kind in PRIVATE_KINDS for h in self.hits):
            return "fail"
        return "warn" if self.hits else "pass"

    def summary(self) -> dict:
        return {"verdict": self.verdict, "samples": self.samples, "hits": len(self.hits), "by_kind": self.by_kind,
                "samples_with_hits": len({h.sample for h in self.hits})}


def _excerpt(redacted: str, at: int, marker_len: int, width: int = EXCERPT_CHARS) -> str:
    s, e = max(0, at - width), min(len(redacted), at + marker_len + width)
    text = " ".join(redacted[s:e].split())
    return ("…" if s > 0 else "") + text + ("…" if e < len(redacted) else "")


def probe_privacy(texts: Sequence[str], redactor: Redactor) -> ProbeResult:
    """Search each generated text; one hit per private value found, each with a redacted excerpt.

    The excerpt is cut from the fully redacted text, so a second value next to the first (or
    one the cut would halve) never shows either."""
    result = ProbeResult(samples=len(texts), private_strings=len(redactor.private),
                         blocklist_entries=len(redactor.blocklist))
    for i, text in enumerate(texts):
        redacted, marks = redactor.redact_marked(text)
        result.hits += [ProbeHit(i, kind, _excerpt(redacted, at, n)) for kind, at, n in marks]
    return result
