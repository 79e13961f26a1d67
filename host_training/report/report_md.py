"""report.md: summary, perplexity table, plot, whose voice, style, privacy probe.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..base.base_models import report_lines as pinned_bases
from ..quantize.trimmed import report_lines as trimmed_lines
from .plot import PLOT_FILE, PerplexityRow, fmt_bytes
from .privacy_probe import EXCERPT_CHARS, ProbeResult, Redactor

REPORT_FILE = "report.md"
EXAMPLE_CHARS = 160  # longest example text shown in the report


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


QUANT_TOLERANCE = 0.02  # nats/token: drift.DEFAULT_TOLERANCE (drift imports what imports the report; a test holds them equal)


def _drift(d: dict | None) -> str:
    """The drift cell, with its verdict against the tolerance (drift.py's default, 0.02 nats/token,
    or the build's --quant-tolerance where the row carries one): within when the upper end of its
    95 % interval is at most the tolerance, as --target chooses."""
    if not d:
        return "–"
    tolerance = d.get("tolerance") or QUANT_TOLERANCE
    verdict = f"within {tolerance:g}" if d["high"] <= tolerance else f"**not within {tolerance:g}**"
    return f"{d['nll_increase']:+.4f} ({d['low']:+.4f} to {d['high']:+.4f}) {verdict}"


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


def voice_lines(voice, substance=None) -> list[str]:
    """The "Whose voice" section for a voice.Authorship (duck-typed: the report package imports no model code).
    `substance` (substance_table.SubstanceResult) puts each set's words beyond the owner's fillers beside its
    voice, marked where it says little: a share of voice is never shown without what the texts say."""
    if voice is None:
        return ["Not measured.", ""]
    if voice.cv is None:
        return [f"Not measured: {md_text(voice.note, 300)}.", ""]
    cv = voice.cv
    size = getattr(cv, "sample_size", 1)
    L = [f"A classifier learnt the owner's {voice.owner_messages} distinct training messages against the other "
         f"speakers' {voice.other_messages} from how they are written, not what about: character 2-4-grams of the "
         f"texts with every word but the {voice.kept_words} most frequent masked, beside habits (casing, "
         "punctuation, length and lines of a burst); a logistic regression, calibrated. "
         f"Held out by conversation ({cv.folds} folds: no message is scored by a classifier that read its "
         f"conversation), it recognises {_pct(cv.owner_recognised)} of the owner's messages and rejects "
         f"{_pct(cv.others_rejected)} of the others' (balanced accuracy "
         f"{getattr(cv, 'message_balanced_accuracy', cv.balanced_accuracy):.2f}; 0.5 is a coin toss)"
         + (f", and tells samples of {size} turns of one speaker apart at balanced accuracy "
            f"{cv.balanced_accuracy:.2f} ({cv.samples} samples)" if size > 1 and getattr(cv, "samples", 0) else "")
         + ".", ""]
    if cv.balanced_accuracy < WEAK_CLASSIFIER:
        L += [f"**The classifier can barely tell the owner from the others** (balanced accuracy below "
              f"{WEAK_CLASSIFIER}): the shares below say little.", ""]
    gains = any(s.gain is not None for s in voice.sets)
    words = any(getattr(s, "real", None) is not None for s in voice.sets)
    owner_real = getattr(voice, "owner_real", None)
    said = substance is not None and any(substance.cell(s.label) is not None for s in voice.sets)
    L += ["| texts | role | texts | classified as the owner's | 95 % interval |"
          + (" gain over the base, same prompts (95 % interval) |" if gains else "")
          + (f" samples of {size} read as the owner's | real words ({md_text(str(voice.language), 10)}) |" if words else "")
          + (" words beyond the owner's fillers, a text |" if said else ""),
          "|---|---|---:|---:|---|" + ("---|" if gains else "") + ("---:|---|" if words else "") + ("---|" if said else "")]
    for s in voice.sets:
        iv, g = s.share.interval, s.gain
        L.append(f"| {md_text(s.label, 60)} | {VOICE_ROLES.get(s.role, md_text(s.role, 20))} | {s.share.texts} | "
                 f"{_pct(s.share.share)} | {'–' if iv is None else f'{_pct(iv[0])} to {_pct(iv[1])}'} |"
                 + ((" – |" if g is None else f" {100 * g.gain:+.0f} points ({100 * g.low:+.0f} to {100 * g.high:+.0f})"
                     f"{' **beats the base**' if g.low > 0 else ''} |") if gains else "")
                 + (_words_cells(s, owner_real) if words else "")
                 + (f" {substance.cell(s.label) or '–'} |" if said else ""))
    L += ["", "The share of a model's replies that the classifier takes for the owner's, read between the floor "
              "(other people's real messages, taken for the owner's this often) and the ceiling (the owner's own "
              "unseen messages): near the ceiling the persona writes as recognisably like the owner as the owner "
              "does, near the floor no more than anyone else; the base's share is where tuning started. "
              "Intervals: Wilson score for the held-out turns; for a model's replies (several to each prompt) a "
              "bootstrap over the prompts. The gain is the model's share minus the base's prompt by prompt, with a "
              "paired bootstrap interval: above 0 at its lower end, tuning moved the replies towards the owner's "
              "voice beyond what chance in these prompts explains. Real words: the share of the texts' words "
              "that the owner's language's word list holds (wordfreq); a model's more than "
              f"{100 * getattr(voice, 'babble_tolerance', 0):.0f} points below the owner's own is **babble**, "
              "whatever the classifier says of its voice"
              + ("; one that says far less than the owner beyond the owner's commonest words is marked **says "
                 "little** (the Substance section)." if said else "."), ""]
    return L


def _words_cells(s, owner_real) -> str:
    """A set's samples and real-word cells; a model's share far below the owner's is called babble."""
    smp = getattr(s, "samples", None)
    real = getattr(s, "real", None)
    cell = "–" if real is None or real.share is None else f"{100 * real.share:.1f} % of {real.words} words"
    if s.role not in ("ceiling", "floor") and s.verdict(owner_real) == "babble":
        cell += " **babble**"
    return f" {'–' if smp is None or not smp.texts else f'{smp.owner} of {smp.texts}'} | {cell} |"


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
    language: Sequence[str] = (),
    substance=None,
) -> str:
    """report.md as text. `manifest` is the bundle's BundleManifest; every text that comes from
    data or generations goes through `redactor` and md_text. Same inputs, same bytes. `checks`:
    lines on the conversion and the quantization (build's), under their own heading. `voice`:
    voice.Authorship, for "Whose voice". `judged`: the "Judged by people" section (judge_score.report_section),
    when people have judged this model. `language`: the "Language and repetition" section
    (replies.language_lines). `substance`: substance_table.SubstanceResult, for "Substance" and its
    column in "Whose voice"."""
    L = _summary_lines(manifest, rows, probe, redactor)
    L += _perplexity_lines(rows, val_note, plot_file)
    if checks:
        L += ["## Conversion and quantization", ""] + [f"- {md_text(c, 2000)}" for c in checks] + [""]
    L += pinned_bases(manifest.training.get("base_gguf"))  # which pinned base fits which board
    L += trimmed_lines(manifest.training.get("vocab_trim"), voice, substance)  # the vocabulary cut for the board

    L += ["## Whose voice", ""] + voice_lines(voice, substance)
    L += substance.lines() if substance is not None else []
    L += ["## Style", ""] + _style_section(style, redactor)
    L += list(language)
    L += list(judged)
    L += ["## Privacy probe", ""] + _privacy_lines(probe)
    text = "\n".join(L).rstrip("\n") + "\n"
    # Last guard: the owner's literal private strings never reach the file, whatever path
    # a text took (a persona name, a base model path).
    return redactor.redact_literals(text)


def _summary_lines(manifest, rows: Sequence[PerplexityRow], probe: ProbeResult | None, redactor: Redactor) -> list[str]:
    """The title and the table at the top: persona, base, model file, perplexity, privacy verdict."""
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
    return L


def _perplexity_lines(rows: Sequence[PerplexityRow], val_note: str, plot_file: str) -> list[str]:
    """The Perplexity section: each model's row, drift from F32 where measured, the plot."""
    L = ["", "## Perplexity", "",
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
    return L


def _style_section(style: StyleResult | None, redactor: Redactor) -> list[str]:
    """The Style section: the figures and tables, then a few examples, private values redacted."""
    if style is None:
        return ["Not measured.", ""]
    L = style_lines(style)
    if style.examples:
        with_base = style.base is not None and all(len(e) > 3 for e in style.examples)
        L += ["Examples (private values replaced by their kind):", "",
              "| message | the owner replied | " + (f"{md_text(style.base_label, 60)} replied | " if with_base else "")
              + f"{md_text(style.label, 60)} replied |", "|---|---|---|" + ("---|" if with_base else "")]
        for a, b, c, *rest in style.examples:
            cells = [a, b] + (rest[:1] if with_base else []) + [c]
            L.append("| " + " | ".join(md_text(redactor.redact(x)) for x in cells) + " |")
        L.append("")
    return L


def _privacy_lines(probe: ProbeResult | None) -> list[str]:
    """The Privacy probe section: the verdict, what was searched, the hits by kind and redacted excerpts."""
    if probe is None:
        return ["Not run.", ""]
    searched = "e-mail, phone, card, IBAN, IP, API-key and secret-URL detectors"
    if probe.private_strings:
        searched += f", {probe.private_strings} string(s) from --private"
    if probe.blocklist_entries:
        searched += f", {probe.blocklist_entries} --blocklist entr{'y' if probe.blocklist_entries == 1 else 'ies'}"
    L = [VERDICT_LINE[probe.verdict], "",
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
    return L
