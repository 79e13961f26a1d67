"""The persona's report card: style figures, the privacy probe, the size-vs-perplexity plot,
`report.md`, and an Ollama `Modelfile`.

Everything here is a pure function of its inputs (texts, numbers, the bundle's manifest):
no model is loaded. `evaluate` generates the replies and samples, then calls these.

    style       owner's held-out turns vs the persona's generated replies: length in characters
                and words (mean, median, p90), lines per turn (prepare joins a burst of
                messages with newlines), punctuation and emoji per 100 characters, share of
                turns with an emoji or a question, vocabulary overlap
    privacy     generated samples searched with stratoecho.privacy's detectors and the
                owner's own private strings; the report names kinds and counts, and shows
                excerpts with every private value replaced by its kind, never the value
    plot        an SVG scatter written by hand (no plotting dependency)
    report      report.md: summary, perplexity table, plot, whose voice, style, language and
                repetition, privacy probe
    replies     which language each model's replies are in beside the owner's turns, and
                whether they collapse into one reply
    substance_table  what the replies say beyond the owner's commonest words, beside the owner's
                turns (stratoecho/substance.py): a persona that says little is marked
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

A module each: `style`, `privacy_probe`, `plot` (with the scored models' rows), `report_md`,
`modelfile`; the names are re-exported here.
"""

from __future__ import annotations

from stratoecho.charts import nice_ticks  # the plot's ticks, as report.nice_ticks

from .modelfile import CHATML_GO_TEMPLATE, MODELFILE, is_chatml, modelfile_text, ollama_model_name, write_modelfile
from .plot import PLOT_FILE, PerplexityRow, size_vs_perplexity_svg
from .privacy_probe import KIND_RANK, ProbeResult, Redactor, load_private_strings, probe_privacy
from .replies import LanguageResult, language_lines, reply_figures
from .report_md import REPORT_FILE, STYLE_ROWS, StyleResult, render_report
from .style import (
    WORD,
    count_emoji,
    count_lines,
    count_punctuation,
    distribution,
    lower_start,
    percentile,
    style_figures,
    upper_case_share,
    vocabulary,
    vocabulary_overlap,
    words,
)
from .substance_table import SubstanceResult, substance_result, substance_table

__all__ = [
    "CHATML_GO_TEMPLATE",
    "KIND_RANK",
    "LanguageResult",
    "MODELFILE",
    "PLOT_FILE",
    "PerplexityRow",
    "ProbeResult",
    "REPORT_FILE",
    "Redactor",
    "STYLE_ROWS",
    "StyleResult",
    "SubstanceResult",
    "WORD",
    "count_emoji",
    "count_lines",
    "count_punctuation",
    "distribution",
    "is_chatml",
    "language_lines",
    "load_private_strings",
    "lower_start",
    "modelfile_text",
    "nice_ticks",
    "ollama_model_name",
    "percentile",
    "probe_privacy",
    "render_report",
    "reply_figures",
    "size_vs_perplexity_svg",
    "style_figures",
    "substance_result",
    "substance_table",
    "upper_case_share",
    "vocabulary",
    "vocabulary_overlap",
    "words",
    "write_modelfile",
]
