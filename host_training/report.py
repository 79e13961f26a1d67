"""The persona's report card: style figures, the privacy probe, the size-vs-perplexity plot,
`report.md`, and an Ollama `Modelfile`.

Everything here is a pure function of its inputs (texts, numbers, the bundle's manifest):
no model is loaded. `evaluate.py` generates the replies and samples, then calls these.

    style       owner's held-out turns vs the persona's generated replies: length in characters
                and words (mean, median, p90), lines per turn (prepare joins a burst of
                messages with newlines), punctuation and emoji per 100 characters, share of
                turns with an emoji or a question, vocabulary overlap
    privacy     generated samples searched with stratoecho.privacy's detectors and the
                owner's own private strings; the report names kinds and counts, and shows
                excerpts with every private value replaced by its kind, never the value
    plot        an SVG scatter written by hand (no plotting dependency)
    report      report.md: summary, perplexity table, plot, style, privacy probe
    Modelfile   FROM the bundle's GGUF, its chat template in Ollama's Go template syntax,
                its system prompt, stop strings and sampling defaults

The privacy verdict (documented in docs/training.md, "Evaluation"):

    FAIL  a generation contains a string from --private or an entry of --blocklist: the
          model reproduces something the owner named as private.
    WARN  a detector finds a real-looking e-mail, phone, card, IBAN, IP, API key or secret
          URL. The training data held only placeholders (<PHONE_1>), so such a value is
          invented or comes from a base model; the payload's outbound guard drops such text
          before transmission, but read the excerpts.
    PASS  nothing found. Placeholders such as <PHONE_1> are never hits.
"""

from __future__ import annotations

import math
import re
import statistics
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape as xml_escape

from stratoecho.charts import nice_ticks, tick_label
from stratoecho.privacy import PLACEHOLDER, find_private

# ----------------------------------------------------------------------------- configuration
REPORT_FILE = "report.md"
PLOT_FILE = "size_vs_perplexity.svg"
MODELFILE = "Modelfile"
EXCERPT_CHARS = 40  # context either side of a privacy hit in the report
EXAMPLE_CHARS = 160  # longest example text shown in the report
MIN_PRIVATE_CHARS = 3  # a shorter --private string would match nearly everything

# ----------------------------------------------------------------------------- style figures
# A word for vocabulary purposes: letters, with inner apostrophes ("don't"), case-folded.
WORD = re.compile(r"[^\W\d_]+(?:['\u2019][^\W\d_]+)*")
_EMOJI_BASE = (
    "\U0001F300-\U0001F5FF\U0001F600-\U0001F64F\U0001F680-\U0001F6FF\U0001F700-\U0001F77F"
    "\U0001F780-\U0001F7FF\U0001F800-\U0001F8FF\U0001F900-\U0001F9FF\U0001FA00-\U0001FAFF"
    "\U0001F000-\U0001F02F\U0001F0A0-\U0001F0FF\U0001F18E\U0001F191-\U0001F19A"
    "\u2600-\u27BF\u2B00-\u2BFF\u231A\u231B\u23E9-\u23FA"
)
_EMOJI_MOD = "\uFE0F\U0001F3FB-\U0001F3FF"
# One emoji as a person sees it: a flag (two regional indicators), or a base with its
# variation selector / skin tone, possibly joined to more by ZWJ (a family counts once).
EMOJI = re.compile(
    rf"[\U0001F1E6-\U0001F1FF]{{2}}"
    rf"|[{_EMOJI_BASE}][{_EMOJI_MOD}]*(?:\u200D[{_EMOJI_BASE}][{_EMOJI_MOD}]*)*"
)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), interpolating linearly between ranks (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0-100")
    s = sorted(values)
    pos = (len(s) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def distribution(values: Sequence[float]) -> dict[str, float] | None:
    """{"mean", "median", "p90"} of `values`; None when there are none."""
    if not values:
        return None
    return {"mean": statistics.fmean(values), "median": statistics.median(values), "p90": percentile(values, 90)}


def count_lines(text: str) -> int:
    """Non-blank lines: a burst of messages that prepare joined with newlines counts each."""
    return sum(1 for line in text.split("\n") if line.strip())


def count_emoji(text: str) -> int:
    return len(EMOJI.findall(text))


def count_punctuation(text: str) -> int:
    """Characters in Unicode's punctuation categories (P*): . , ! ? ' " - ( ) … « » and so on."""
    return sum(1 for c in text if unicodedata.category(c).startswith("P"))


def upper_case_share(text: str) -> float | None:
    """The share of the cased letters of `text` that are upper-case (placeholders such as
    <PHONE_1> left out); None for a text with no cased letter."""
    cased = [c for c in PLACEHOLDER.sub(" ", text) if c.isupper() or c.islower()]
    return sum(c.isupper() for c in cased) / len(cased) if cased else None


def lower_start(text: str) -> bool | None:
    """Whether the first cased letter of `text` (placeholders left out) is lower-case, as in
    "ok see you"; None for a text with no cased letter."""
    first = next((c for c in PLACEHOLDER.sub(" ", text) if c.isupper() or c.islower()), None)
    return None if first is None else first.islower()


def words(text: str) -> list[str]:
    """Case-folded letter words of `text` (numbers and placeholders' digits left out)."""
    return [w.casefold() for w in WORD.findall(PLACEHOLDER.sub(" ", text))]


def vocabulary(texts: Iterable[str]) -> set[str]:
    return {w for t in texts for w in words(t)}


def style_figures(texts: Sequence[str]) -> dict:
    """The style of a set of turns. Rates per 100 characters are over all the turns together;
    shares are of turns (casing: of the turns with a cased letter; `upper_case_share` is the
    mean over turns of each turn's share of upper-case letters). With no turns every figure
    but `turns` is None."""
    n = len(texts)
    chars = sum(len(t) for t in texts)
    per_100 = (lambda k: 100 * k / chars) if chars else (lambda k: None)
    share = (lambda k: k / n) if n else (lambda k: None)
    lines = [count_lines(t) for t in texts]
    upper = [u for u in map(upper_case_share, texts) if u is not None]
    starts = [b for b in map(lower_start, texts) if b is not None]
    return {
        "turns": n,
        "chars": distribution([len(t) for t in texts]),
        "words": distribution([len(t.split()) for t in texts]),
        "lines": distribution(lines),
        "multi_line_share": share(sum(1 for k in lines if k > 1)),
        # casing, of the turns that have a cased letter
        "upper_case_share": statistics.fmean(upper) if upper else None,
        "lower_start_share": sum(starts) / len(starts) if starts else None,
        "punctuation_per_100_chars": per_100(sum(count_punctuation(t) for t in texts)),
        "emoji_per_100_chars": per_100(sum(count_emoji(t) for t in texts)),
        "emoji_turn_share": share(sum(1 for t in texts if count_emoji(t))),
        "question_share": share(sum(1 for t in texts if "?" in t)),
        "vocabulary_words": sum(len(words(t)) for t in texts) if n else None,
        "vocabulary_size": len(vocabulary(texts)) if n else None,
    }


def vocabulary_overlap(generated: Sequence[str], owner_held_out: Sequence[str], owner_training_vocab: set[str]) -> dict:
    """How much of the owner's vocabulary the persona uses.

    jaccard: |G ∩ O| / |G ∪ O| of the word sets of the generated replies and the held-out
    owner turns; seen_share: of the generated word occurrences, the share the owner used in
    training (low means invented or borrowed words). None where there is nothing to divide by.
    """
    gen_words = [w for t in generated for w in words(t)]
    g, o = set(gen_words), vocabulary(owner_held_out)
    union = g | o
    return {
        "jaccard": len(g & o) / len(union) if union else None,
        "seen_share": sum(1 for w in gen_words if w in owner_training_vocab) / len(gen_words) if gen_words else None,
        "generated_words": len(gen_words),
        "generated_vocabulary": len(g),
        "owner_vocabulary": len(o),
    }


# ----------------------------------------------------------------------------- privacy probe
# A private value found in a generation. Higher in this list wins when two overlap.
PRIVATE_KINDS = ("private", "blocked")  # what the owner named: a hit is a FAIL
KIND_RANK = ("private", "blocked", "secret_url", "secret", "email", "iban", "card", "ip", "phone")


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


# ----------------------------------------------------------------------------- perplexity rows
@dataclass(frozen=True)
class PerplexityRow:
    """One model scored on val.jsonl: e.g. ("base", "F32", ...), ("fine-tuned", "F32", ...),
    ("fine-tuned", "Q4_K_M", ...). `bytes` is the GGUF's size (None if unknown: not plotted)."""

    label: str
    quantization: str
    bytes: int | None
    val_perplexity: float
    drift: dict | None = None  # drift.Drift.figures(): the NLL increase over the F32 model, its interval


def fmt_bytes(n: int | None) -> str:
    if n is None:
        return "–"
    if n < 1e6:
        return f"{n / 1e3:.1f} kB"
    if n < 1e9:
        return f"{n / 1e6:.1f} MB"
    return f"{n / 1e9:.2f} GB"


# ----------------------------------------------------------------------------- the plot
def size_vs_perplexity_svg(rows: Sequence[PerplexityRow], width: int = 520, height: int = 320) -> str:
    """A scatter of file size (MB, x) against val perplexity (y), each point labelled
    "label quantization". Rows without a size or with a non-finite perplexity are left out
    and counted in a note. The same rows always give the same bytes."""
    left, right, top, bottom = 64, 24, 40, 52
    pw, ph = width - left - right, height - top - bottom
    pts = [r for r in rows if r.bytes is not None and math.isfinite(r.val_perplexity)]
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2:.1f}" y="20" text-anchor="middle" font-size="13">size vs. val perplexity '
        "(lower is better)</text>",
    ]
    if not pts:
        out.append(f'<text x="{width / 2:.1f}" y="{height / 2:.1f}" text-anchor="middle">no models to plot</text>')
        out.append("</svg>")
        return "\n".join(out) + "\n"
    xs = [r.bytes / 1e6 for r in pts]
    ys = [r.val_perplexity for r in pts]
    xt = nice_ticks(0.0, max(xs) * 1.05 or 1.0)
    ypad = (max(ys) - min(ys)) * 0.1 or abs(ys[0]) * 0.05 or 1.0
    yt = nice_ticks(min(ys) - ypad, max(ys) + ypad)
    x0, x1, y0, y1 = xt[0], xt[-1], yt[0], yt[-1]

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * pw

    def py(y: float) -> float:
        return top + ph - (y - y0) / (y1 - y0) * ph

    # grid and ticks, then the axes over them
    for t in xt:
        x = px(t)
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + ph + 4}" stroke="#eee"/>')
        out.append(f'<text x="{x:.1f}" y="{top + ph + 16}" text-anchor="middle">{tick_label(t, xt)}</text>')
    for t in yt:
        y = py(t)
        out.append(f'<line x1="{left - 4}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" stroke="#eee"/>')
        out.append(f'<text x="{left - 7}" y="{y + 4:.1f}" text-anchor="end">{tick_label(t, yt)}</text>')
    out.append(f'<g stroke="#999" stroke-width="1">'
               f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}"/>'
               f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + ph}"/></g>')
    out.append(f'<text x="{left + pw / 2:.1f}" y="{height - 12}" text-anchor="middle">GGUF file size (MB)</text>')
    out.append(f'<text x="14" y="{top + ph / 2:.1f}" text-anchor="middle" '
               f'transform="rotate(-90 14 {top + ph / 2:.1f})">val perplexity</text>')
    # points, labels alternately above and below (sorted by size) so neighbours do not collide
    order = sorted(range(len(pts)), key=lambda i: (xs[i], ys[i]))
    for k, i in enumerate(order):
        x, y = px(xs[i]), py(ys[i])
        label = xml_escape(f"{pts[i].label} {pts[i].quantization}")
        anchor, dx = ("end", -7) if x > left + pw * 0.7 else ("start", 7)
        dy = -7 if k % 2 == 0 else 14
        out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="#1f77b4"/>')
        out.append(f'<text x="{x + dx:.1f}" y="{y + dy:.1f}" text-anchor="{anchor}">{label}</text>')
    if len(pts) < len(rows):
        out.append(f'<text x="{left + pw}" y="{top - 6}" text-anchor="end" fill="#666">'
                   f"{len(rows) - len(pts)} model(s) without size or finite perplexity not shown</text>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------- report.md
def md_text(text: str, limit: int = EXAMPLE_CHARS) -> str:
    """Text safe inside a Markdown table cell: one line, markup characters escaped (so a
    placeholder <PHONE_1> shows instead of vanishing as an HTML tag), cut at `limit`."""
    text = " ⏎ ".join(line.strip() for line in text.strip().split("\n"))
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return re.sub(r"([\\`*_\[\]<>|#~])", r"\\\1", text) or "*(empty)*"


def _f(v: float | None, fmt: str = ".1f", suffix: str = "") -> str:
    return "–" if v is None else f"{v:{fmt}}{suffix}"


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.0f} %"


def _drift(d: dict | None) -> str:
    if not d:
        return "–"
    return f"{d['nll_increase']:+.4f} ({d['low']:+.4f} to {d['high']:+.4f})"


def _top1(d: dict | None) -> str:
    if not d or "top1_agreement" not in d:
        return "–"
    return f"{d['top1_agreement']:.1%}" + (f" ({d['top1_low']:.1%} to {d['top1_high']:.1%})" if "top1_low" in d else "")


def _dist(d: dict | None) -> str:
    return "–" if d is None else f"{d['mean']:.1f} / {d['median']:.1f} / {d['p90']:.1f}"


@dataclass
class StyleResult:
    owner: dict  # style_figures of the held-out owner turns
    generated: dict  # style_figures of the flown persona's replies
    overlap: dict  # vocabulary_overlap
    # (their message, owner's reply, persona's reply[, base's reply]), raw
    examples: list[tuple[str, ...]]
    prompts: int = 0
    max_tokens: int = 0
    seed: int = 0
    label: str = "persona"  # the flown persona's column
    distance: dict | None = None  # voice.style_distances(owner turns, persona replies)
    base: dict | None = None  # style_figures of the base's replies to the same prompts
    base_label: str = "base"
    base_distance: dict | None = None  # voice.style_distances(owner turns, base replies)
    rounds: int = 1  # replies of each model to each prompt


# The Style table: (row, style_figures key and how to show it, voice.style_distances key).
STYLE_ROWS = (
    ("turns", "turns", None),
    ("characters: mean / median / p90", "chars", "chars"),
    ("words: mean / median / p90", "words", "words"),
    ("lines per turn: mean / median / p90", "lines", "lines"),
    ("turns of several lines", "multi_line_share", "multi_line"),
    ("letters in upper case (mean per turn)", "upper_case_share", "upper_case"),
    ("turns starting in lower case", "lower_start_share", "lower_start"),
    ("punctuation per 100 characters", "punctuation_per_100_chars", "punctuation"),
    ("emoji per 100 characters", "emoji_per_100_chars", "emoji"),
    ("turns with an emoji", "emoji_turn_share", "emoji_turn"),
    ("turns with a question mark", "question_share", "question"),
    ("vocabulary: words / distinct", "vocabulary", "vocabulary"),
)


def _style_cell(figures: dict, key: str) -> str:
    v = figures.get(key) if key != "vocabulary" else None
    if key == "turns":
        return str(figures["turns"])
    if key == "vocabulary":
        n = figures.get("vocabulary_words")
        return "–" if n is None else f"{n} / {figures['vocabulary_size']}"
    if key in ("chars", "words", "lines"):
        return _dist(v)
    if key.endswith("_per_100_chars"):
        return _f(v, ".2f" if key.startswith("emoji") else ".1f")
    return _pct(v)


def _distance(d: dict | None, key: str | None) -> str:
    return "" if key is None else _f(None if d is None else d.get(key), ".2f")


def style_lines(style: StyleResult) -> list[str]:
    """The Style section's text and tables."""
    o = style.owner
    base = style.base is not None
    L = [
        f"Replies to {style.prompts} messages from val.jsonl that the owner answered"
        + (f", {style.rounds} to each" if style.rounds > 1 else "") + f" (seed {style.seed}, at most "
        f"{style.max_tokens} tokens each, the bundle's sampling, the same prompts and seeds for every model), "
        f"beside all {o['turns']} of the owner's held-out turns. Rates are per 100 characters; lines count the "
        "messages of a burst. Distance to the owner: the two-sample Kolmogorov-Smirnov statistic between the "
        "per-turn values (for a share, the difference of the shares), and for the vocabulary the Jensen-Shannon "
        "distance between the word frequencies; 0 is the owner's distribution, 1 none of it. The owner's other "
        "turns would not score 0 either: a few dozen turns differ by chance.",
        "",
    ]
    head = ["figure", "owner"] + ([md_text(style.base_label, 60)] if base else []) + [md_text(style.label, 60)]
    dist_head = ([f"distance: {md_text(style.base_label, 60)}"] if base else []) + [f"distance: {md_text(style.label, 60)}"]
    L += ["| " + " | ".join(head + dist_head) + " |", "|---|" + "---:|" * (len(head) - 1 + len(dist_head))]
    for name, key, dkey in STYLE_ROWS:
        cells = [name, _style_cell(o, key)] + ([_style_cell(style.base, key)] if base else [])
        cells += [_style_cell(style.generated, key)]
        cells += ([_distance(style.base_distance, dkey)] if base else []) + [_distance(style.distance, dkey)]
        L.append("| " + " | ".join(cells) + " |")
    L += ["", f"Vocabulary: the {md_text(style.label, 60)} replies' and the owner's held-out word sets overlap by "
              f"{_f(style.overlap['jaccard'], '.2f')} (Jaccard); {_pct(style.overlap['seen_share'])} of its "
              f"{style.overlap['generated_words']} words are words the owner used in training.", ""]
    return L


def voice_lines(voice) -> list[str]:
    """The "Whose voice" section for a voice.Authorship (duck-typed: report.py imports no model code)."""
    if voice is None:
        return ["Not measured.", ""]
    if voice.cv is None:
        return [f"Not measured: {md_text(voice.note, 300)}.", ""]
    cv = voice.cv
    L = [f"A classifier learnt the owner's {voice.owner_messages} distinct training messages against the other "
         f"speakers' {voice.other_messages} (character 2-4-grams of the texts with every word but the "
         f"{voice.kept_words} most frequent masked, so that it learns how a person writes rather than what "
         "about; logistic regression). "
         f"On those messages, each scored by a classifier trained without it ({cv.folds}-fold cross-validation), "
         f"it recognises {_pct(cv.owner_recognised)} of the owner's and rejects {_pct(cv.others_rejected)} of the "
         f"others' (balanced accuracy {cv.balanced_accuracy:.2f}; 0.5 is a coin toss).", ""]
    if cv.balanced_accuracy < WEAK_CLASSIFIER:
        L += [f"**The classifier can barely tell the owner from the others** (balanced accuracy below "
              f"{WEAK_CLASSIFIER}): the shares below say little.", ""]
    gains = any(s.gain is not None for s in voice.sets)
    L += ["| texts | role | texts | classified as the owner's | 95 % interval |"
          + (" gain over the base, same prompts (95 % interval) |" if gains else ""),
          "|---|---|---:|---:|---|" + ("---|" if gains else "")]
    for s in voice.sets:
        iv, g = s.share.interval, s.gain
        L.append(f"| {md_text(s.label, 60)} | {VOICE_ROLES.get(s.role, md_text(s.role, 20))} | {s.share.texts} | "
                 f"{_pct(s.share.share)} | {'–' if iv is None else f'{_pct(iv[0])} to {_pct(iv[1])}'} |"
                 + ((" – |" if g is None else f" {100 * g.gain:+.0f} points ({100 * g.low:+.0f} to {100 * g.high:+.0f})"
                     f"{' **beats the base**' if g.low > 0 else ''} |") if gains else ""))
    L += ["", "The share of a model's replies that the classifier takes for the owner's, read between the floor "
              "(other people's real messages, taken for the owner's this often) and the ceiling (the owner's own "
              "unseen messages): near the ceiling the persona writes as recognisably like the owner as the owner "
              "does, near the floor no more than anyone else; the base's share is where tuning started. "
              "Intervals: Wilson score for the held-out turns; for a model's replies (several to each prompt) a "
              "bootstrap over the prompts. The gain is the model's share minus the base's prompt by prompt, with a "
              "paired bootstrap interval: above 0 at its lower end, tuning moved the replies towards the owner's "
              "voice beyond what chance in these prompts explains.", ""]
    return L


REFERENCE_LABELS = ("base", "parent")  # perplexity rows of the model before training (bundling.perplexity_rows)
WEAK_CLASSIFIER = 0.6  # balanced accuracy under which the report says the shares say little
VOICE_ROLES = {"ceiling": "ceiling", "floor": "floor", "base": "before tuning", "tuned": "tuned, unquantized",
               "flown": "**flown**"}


def base_gguf_row(g) -> list[str]:
    """The header's row for a base dequantized from a GGUF file (persona.toml [training]
    base_gguf: file, quantization, sha256, architecture, source, licence); none without one.
    Source and licence are left out where empty (a user's own file has no pinned source)."""
    if not isinstance(g, dict):
        return []

    def get(key: str, limit: int = 80) -> str:
        v = g.get(key)
        return md_text(str(v), limit) if v not in (None, "") else ""

    sha = str(g.get("sha256") or "")
    parts = [f"dequantized from {get('file') or '?'} ({get('quantization', 20) or '?'}, sha256 "
             f"{md_text(sha[:12], 12) + '…' if sha else '?'}, architecture {get('architecture', 40) or '?'})"]
    parts += [f"{key} {get(key, 120)}" for key in ("source", "licence") if get(key)]
    return [f"| base GGUF | {'; '.join(parts)} |"]


VERDICT_LINE = {
    "pass": "**PASS**: no private value in any sample.",
    "warn": "**WARN**: real-looking values of a detected kind (e-mail, phone, card, …) were generated. "
            "Not the owner's named strings; the payload's outbound guard drops such text before "
            "transmission. Read the excerpts.",
    "fail": "**FAIL**: a generation contains a string from --private or --blocklist. The model reproduces "
            "something the owner named as private: do not fly this bundle; remove the string from the data "
            "(prepare --blocklist) and rebuild.",
    "skipped": "**SKIPPED**: no samples were taken (--samples 0).",
}


def render_report(
    manifest,
    rows: Sequence[PerplexityRow],
    style: StyleResult | None,
    probe: ProbeResult | None,
    redactor: Redactor,
    val_note: str = "",
    plot_file: str = PLOT_FILE,
    checks: Sequence[str] = (),
    voice=None,
    judged: Sequence[str] = (),
) -> str:
    """report.md as text. `manifest` is the bundle's BundleManifest; every text that comes from
    data or generations goes through `redactor` and md_text. Same inputs, same bytes. `checks`:
    lines on the conversion and the quantization (build's), under their own heading. `voice`:
    voice.Authorship, for "Whose voice". `judged`: the "Judged by people" section (judge_score.report_section),
    when people have judged this model."""
    p, m, t = manifest.persona, manifest.model, manifest.training
    # the bundle's own row: its quantization, not the base's or the parent's row in the same one
    ours = [r for r in rows if not r.label.startswith(REFERENCE_LABELS)]
    shipped = next((r for r in ours if r.quantization == m.quantization), (ours or list(rows) or [None])[0])
    L = [
        f"# Persona report: {md_text(redactor.redact(p.name), 80)}",
        "",
        "<!-- written by `python -m host_training eval` (and `build`); regenerate it rather than edit it -->",
        "",
        "| | |",
        "|---|---|",
        f"| persona | {md_text(redactor.redact(p.name), 80)} |",
        f"| base model | {md_text(m.base, 80)} ({md_text(str(t.get('method', '?')), 40)}) |",
        *base_gguf_row(t.get("base_gguf")),
        f"| model file | {md_text(m.file, 80)}: {m.quantization}, {fmt_bytes(shipped.bytes) if shipped else '–'}, "
        f"{m.n_params:,} parameters, context {m.context_length} tokens |",
    ]
    if shipped:
        L.append(f"| val perplexity | {shipped.val_perplexity:.3f} ({shipped.quantization}) |")
    if probe is not None:
        L.append(f"| privacy probe | **{probe.verdict.upper()}** ({probe.samples} samples, {len(probe.hits)} hits) |")
    L += ["", "## Perplexity", "",
          "Held-out perplexity of the owner's turns in val.jsonl (persona tokens only, scored by llama.cpp "
          "with an F32 KV cache): lower means the model finds the owner's real replies less surprising."
          + (f" {val_note}" if val_note else ""), ""]
    if rows:
        drifts = any(r.drift for r in rows)
        L += ["| model | quantization | size | val perplexity |"
              + (" drift from F32 (95 % interval) | top-1 as F32 (95 % interval) |" if drifts else ""),
              "|---|---|---:|---:|" + ("---|---|" if drifts else "")]
        L += [f"| {md_text(r.label, 60)} | {md_text(r.quantization, 20)} | {fmt_bytes(r.bytes)} | "
              f"{_f(r.val_perplexity, '.3f') if math.isfinite(r.val_perplexity) else 'not finite'} |"
              + (f" {_drift(r.drift)} | {_top1(r.drift)} |" if drifts else "") for r in rows]
        if drifts:
            L += ["", "Drift: the mean increase of the persona-token loss over the F32 model on the same tokens, in "
                  "nats/token, with a 95 % bootstrap interval over the held-out conversations. Top-1: the share of "
                  "those tokens at which the model's most likely next token is the F32 model's."]
        L += ["", f"![size vs perplexity]({plot_file})", ""]
    else:
        L += ["No model was scored.", ""]
    if checks:
        L += ["## Conversion and quantization", ""] + [f"- {md_text(c, 2000)}" for c in checks] + [""]

    L += ["## Whose voice", ""] + voice_lines(voice)
    L += ["## Style", ""]
    if style is None:
        L += ["Not measured.", ""]
    else:
        L += style_lines(style)
        if style.examples:
            with_base = style.base is not None and all(len(e) > 3 for e in style.examples)
            L += ["Examples (private values replaced by their kind):", "",
                  "| message | the owner replied | " + (f"{md_text(style.base_label, 60)} replied | " if with_base else "")
                  + f"{md_text(style.label, 60)} replied |", "|---|---|---|" + ("---|" if with_base else "")]
            for a, b, c, *rest in style.examples:
                cells = [a, b] + (rest[:1] if with_base else []) + [c]
                L.append("| " + " | ".join(md_text(redactor.redact(x)) for x in cells) + " |")
            L.append("")

    L += list(judged)
    L += ["## Privacy probe", ""]
    if probe is None:
        L += ["Not run.", ""]
    else:
        searched = "e-mail, phone, card, IBAN, IP, API-key and secret-URL detectors"
        if probe.private_strings:
            searched += f", {probe.private_strings} string(s) from --private"
        if probe.blocklist_entries:
            searched += f", {probe.blocklist_entries} --blocklist entr{'y' if probe.blocklist_entries == 1 else 'ies'}"
        L += [VERDICT_LINE[probe.verdict], "",
              f"{probe.samples} samples, half written freely after the system prompt and half as replies "
              f"to messages from val.jsonl, searched with: {searched}. Placeholders such as "
              "\\<PHONE\\_1\\> are not hits. The values found are never written here.", ""]
        if probe.hits:
            L += ["| kind | hits | samples |", "|---|---:|---:|"]
            for kind, n in probe.by_kind.items():
                L.append(f"| {kind} | {n} | {len({h.sample for h in probe.hits if h.kind == kind})} |")
            L += ["", "Excerpts:", ""]
            L += [f"- sample {h.sample + 1}, {h.kind}: {md_text(h.excerpt, 2 * EXCERPT_CHARS + 40)}"
                  for h in probe.hits[:20]]
            if len(probe.hits) > 20:
                L.append(f"- … and {len(probe.hits) - 20} more")
            L.append("")
    text = "\n".join(L).rstrip("\n") + "\n"
    # Last guard: the owner's literal private strings never reach the file, whatever path
    # a text took (a persona name, a base model path).
    return redactor.redact_literals(text)


# ----------------------------------------------------------------------------- Ollama Modelfile
# Ollama has no Jinja: its templates are Go text/template over .Messages (each with .Role and
# .Content; the Modelfile's SYSTEM arrives as the first message). This one renders exactly
# what the ChatML Jinja template renders with add_generation_prompt: every turn closed by
# <|im_end|> and a newline, then the open assistant header.
CHATML_GO_TEMPLATE = (
    "{{ range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"
)
_PROBE_CONVERSATION = [
    {"role": "system", "content": "S1 system"},
    {"role": "user", "content": "U1 first"},
    {"role": "assistant", "content": "A1 reply"},
    {"role": "user", "content": "U2 second\nline"},
]


def render_chatml(messages: Sequence[dict]) -> str:
    """What ChatML (and CHATML_GO_TEMPLATE) makes of `messages`, with the generation prompt."""
    return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages) + "<|im_start|>assistant\n"


def is_chatml(chat_template: str, bos_token: str = "", eos_token: str = "") -> bool:
    """Whether the Jinja `chat_template` renders a conversation that starts with a system turn
    (as the Modelfile's always do) exactly as ChatML does. A template that fails to render is not."""
    import jinja2

    try:
        env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
        rendered = env.from_string(chat_template).render(
            messages=_PROBE_CONVERSATION, add_generation_prompt=True, bos_token=bos_token, eos_token=eos_token)
    except Exception:  # noqa: BLE001 - any template error (raise_exception, unknown filter) means "not ChatML"
        return False
    return rendered == render_chatml(_PROBE_CONVERSATION)


def _triple_quoted(text: str) -> tuple[str, bool]:
    """(text for a Modelfile \"\"\"...\"\"\" value, whether it had to change). Ollama's parser
    has no escapes: a value cannot hold three double quotes in a row."""
    safe = text.replace('"""', "'''")
    return f'"""{safe}"""', safe != text


def _param_value(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, str):  # quoted always; Ollama's parser has no escapes, so " cannot appear inside
        return '"' + v.replace('"', "'") + '"'
    return str(v)


def ollama_model_name(persona_name: str) -> str:
    """A name `ollama create` accepts: lowercase letters, digits, - and _."""
    name = re.sub(r"[^a-z0-9_-]+", "-", unicodedata.normalize("NFKD", persona_name).encode("ascii", "ignore")
                  .decode().lower()).strip("-_")
    return name or "persona"


def modelfile_text(manifest, model_ref: str | None = None) -> str:
    """The Modelfile for a bundle's manifest (a BundleManifest). FROM `model_ref`, by default
    the bundle's GGUF beside the Modelfile (Ollama resolves a relative path from the Modelfile's folder)."""
    p, s, m = manifest.persona, manifest.sampling, manifest.model
    name = ollama_model_name(p.name)
    L = [
        f"# Ollama Modelfile for the persona {p.name!r}, written from persona.toml; regenerate rather than edit.",
        "# Try the persona on a desktop, from this folder:",
        f"#   ollama create {name} -f Modelfile",
        f"#   ollama run {name}",
        "",
        f"FROM {model_ref or './' + m.file}",
        "",
    ]
    if is_chatml(p.chat_template, p.bos_token, p.eos_token):
        L += ["# The bundle's chat template (Jinja, in persona.toml and the GGUF) is ChatML;",
              "# this is the same template in Ollama's Go syntax.",
              f'TEMPLATE """{CHATML_GO_TEMPLATE}"""', ""]
    else:
        L += ["# NOTE: the bundle's chat template is NOT ChatML, and Ollama cannot run Jinja templates,",
              "# so no TEMPLATE is written: Ollama uses the template it recognises from the GGUF's",
              "# tokenizer.chat_template, or a bare prompt if it recognises none. Check the result with",
              f"# `ollama show {name} --template` against the bundle's Jinja template, quoted here:"]
        L += [f"#   {line}" for line in p.chat_template.splitlines()] + [""]
    system, changed = _triple_quoted(p.system_prompt)
    if changed:
        L.append('# The system prompt held """, which a Modelfile cannot; it is written with \'\'\' instead.')
    L += [f"SYSTEM {system}", ""]
    L += [f"PARAMETER stop {_param_value(stop)}" for stop in p.stop]
    L += [
        f"PARAMETER temperature {_param_value(s.temperature)}",
        f"PARAMETER top_p {_param_value(s.top_p)}",
        f"PARAMETER top_k {_param_value(s.top_k)}",
        f"PARAMETER repeat_penalty {_param_value(s.repeat_penalty)}",
        f"PARAMETER num_predict {_param_value(s.max_tokens)}",
        "# The context the model was trained with; beyond it a small model degrades.",
        f"PARAMETER num_ctx {_param_value(m.context_length)}",
    ]
    return "\n".join(L) + "\n"


def write_modelfile(bundle_dir: str | Path, manifest=None, out_dir: str | Path | None = None) -> Path:
    """Write BUNDLE_DIR/Modelfile for `manifest`, or for BUNDLE_DIR/persona.toml when None
    (read without checking the sha256s, so build can call it before persona.toml is final).
    With `out_dir` another folder, the Modelfile goes there and names the GGUF by its absolute path."""
    bundle_dir = Path(bundle_dir)
    if manifest is None:
        from stratoecho.bundle import load_bundle

        manifest = load_bundle(bundle_dir, verify=False).manifest
    out_dir = Path(out_dir) if out_dir is not None else bundle_dir
    same = out_dir.resolve() == bundle_dir.resolve()
    ref = None if same else str((bundle_dir / manifest.model.file).resolve())
    path = out_dir / MODELFILE
    path.write_text(modelfile_text(manifest, ref), encoding="utf-8")
    return path
