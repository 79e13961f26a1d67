"""The report (`write_report`, also called by `build`): the models answer held-out messages, their
replies are measured (style, whose voice) and probed for private values, and report.md is
written with the size-vs-perplexity SVG beside it (steps 4 to 7 of the package's docstring;
the figures and the Markdown are in the report package).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import structlog

from .. import progress
from ..train.tokenizer import Conversation
from .generation import (
    DEFAULT_SEED,
    PROBE_SAMPLES,
    PROBE_SEED_OFFSET,
    STYLE_MAX_TOKENS,
    STYLE_PROMPTS,
    VOICE_ROUNDS,
    PersonaGenerator,
    reply_cases,
    reply_rounds,
)

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Compared:
    """Another GGUF that answers the same held-out prompts as the bundle's model, for "Whose
    voice" and (the base) the Style table: same prompts, seeds, template, sampling and stops."""

    label: str  # its row: "base (untuned) Q4_K_M", "persona F32"
    path: Path
    role: str  # "base" (the untuned base or the parent: the Style table's base column) or "tuned"


@dataclass
class ReportOutcome:
    report_path: Path
    plot_path: Path
    style: object  # report.StyleResult
    probe: object  # report.ProbeResult
    voice: object  # voice.Authorship
    replies: dict[str, list[str]]  # each model's label in the report -> its replies, as measured
    language: object = None  # report.LanguageResult: the replies' language and repetition
    substance: object = None  # report.SubstanceResult: what the replies say beyond the owner's commonest words


def write_report(
    bundle,
    val: list[Conversation],
    rows: list,
    out: str | Path | None = None,
    *,
    train: list[Conversation] | None = None,
    private: list[str] = (),
    blocklist: list[str] = (),
    prompts: int = STYLE_PROMPTS,
    samples: int = PROBE_SAMPLES,
    seed: int = DEFAULT_SEED,
    threads: int | None = None,
    val_note: str = "",
    checks: list[str] = (),
    compare: list[Compared] = (),
    label: str = "persona",
    data_sha256: str | None = None,
) -> ReportOutcome:
    """Generate, measure and write report.md (default BUNDLE/report.md) with the SVG beside it.

    `bundle`: a stratoecho.bundle.Bundle; build may pass one whose persona.toml is not written
    yet (`Bundle(out_dir, manifest)`). `rows`: report.PerplexityRow for each model scored
    (base, fine-tuned, each quantization). `train`: training conversations, for the authorship
    classifier and the share of generated words the owner used (neither without it).
    `private` / `blocklist`: the owner's strings for the privacy probe; they never appear in
    the report. `checks`: build's lines on the conversion check and the quantization.
    `compare`: other GGUFs that answer the same prompts as the bundle's model, whose replies
    are measured beside its own. `label`: the bundle's model in the report, with its
    quantization and "(flown)" after it. `data_sha256`: of val.jsonl, so that people's judgements
    (BUNDLE/judge, judge.py) are folded in only when made for this model on this data.
    """
    from .. import report
    from . import judge_score, voice

    redactor = report.Redactor(private, blocklist)
    cases = reply_cases(val, prompts)
    progress.expect(len(cases) * VOICE_ROUNDS * (1 + len(compare)) + samples, "replies")  # each one a step
    flown, probe_texts = _flown_replies(bundle, cases, seed, samples, threads)
    others = _compared_replies(bundle, cases, seed, compare, threads)

    # A prompt that does not fit one model's context (None) is left out for every model, so
    # that all are measured on the same prompts.
    keep = [i for i in range(len(cases)) if flown[i] is not None and all(r[i] is not None for _, r in others)]
    generated = [t for i in keep for t in flown[i]]
    flown_label = f"{label} {bundle.manifest.model.quantization} (flown)"
    style = _style(val, train, cases, keep, flown, others, seed, flown_label)
    language = _language(bundle, val, keep, flown, others, flown_label)
    authorship = voice.authorship(train or [], val, [(c.label, c.role, [r[i] for i in keep]) for c, r in others]
                                  + [(flown_label, "flown", [flown[i] for i in keep])],
                                  language=bundle.manifest.persona.language or None)
    substance = _substance(val, train, keep, flown, others, flown_label)
    probe = report.probe_privacy(probe_texts, redactor)

    report_path = Path(out) if out is not None else Path(bundle.root) / report.REPORT_FILE
    report_path.parent.mkdir(parents=True, exist_ok=True)
    plot_path = report_path.parent / report.PLOT_FILE
    model_sha = next((f.sha256 for f in bundle.manifest.files if f.path == bundle.manifest.model.file), None)
    judged = (judge_score.report_section(Path(bundle.root) / judge_score.JUDGE_DIR, model_sha, data_sha256)
              if model_sha else [])
    text = report.render_report(bundle.manifest, rows, style, probe, redactor, val_note=val_note, checks=checks,
                                voice=authorship, judged=judged,
                                language=report.language_lines(language, redactor.redact), substance=substance)
    plot_path.write_text(report.size_vs_perplexity_svg(rows), encoding="utf-8")
    report_path.write_text(text, encoding="utf-8")
    flown_share = authorship.find("flown")
    log.info("eval.report", report=str(report_path), privacy=probe.verdict, hits=len(probe.hits),
             style_replies=len(generated), voice_share=flown_share.share.share if flown_share else None)
    measured = {c.label: [t for i in keep for t in r[i]] for c, r in others} | {flown_label: generated}
    return ReportOutcome(report_path, plot_path, style, probe, authorship, measured, language, substance)


Cases = list[tuple[Conversation, str]]  # reply_cases: (context, the owner's answer)
Rounds = list[list[str] | None]  # reply_rounds: each case's replies, None where it does not fit


def _flown_replies(bundle, cases: Cases, seed: int, samples: int, threads: int | None) -> tuple[Rounds, list[str]]:
    """The bundle's model: its replies to the cases, and the privacy probe's samples (half
    written freely after the system prompt, half replies to the cases)."""
    gen = PersonaGenerator(bundle, threads=threads)
    try:
        flown = reply_rounds(gen, cases, seed)
        probe_texts = []
        for i in range(samples):
            context = [] if i % 2 == 0 or not cases else cases[(i // 2) % len(cases)][0]
            text = gen.reply(context, seed=seed + PROBE_SEED_OFFSET + i, max_tokens=bundle.manifest.sampling.max_tokens)
            probe_texts.append(text or "")
    finally:
        gen.close()
    return flown, probe_texts


def _compared_replies(bundle, cases: Cases, seed: int, compare: list[Compared],
                      threads: int | None) -> list[tuple[Compared, Rounds]]:
    """Each compared model's replies to the same cases with the same seeds."""
    others: list[tuple[Compared, Rounds]] = []
    for c in compare:  # one model in memory at a time
        g = PersonaGenerator(bundle, threads=threads, model_path=c.path)
        try:
            others.append((c, reply_rounds(g, cases, seed)))
        finally:
            g.close()
        log.info("eval.compared", model=str(c.path), role=c.role, prompts=sum(r is not None for r in others[-1][1]))
    return others


def _language(bundle, val: list[Conversation], keep: list[int], flown: Rounds, others: list[tuple[Compared, Rounds]],
              flown_label: str):
    """Which language each model's replies are in and how many are the same, beside the owner's
    held-out turns (report.LanguageResult); the owner's language is the bundle's, else their turns'."""
    from .. import language as L
    from .. import report

    owner_turns = [m["content"] for c in val for m in c if m["role"] == "assistant"]
    code = bundle.manifest.persona.language or L.profile(owner_turns).main
    sets = [report.reply_figures("the owner's held-out turns", "owner", owner_turns, code)]
    sets += [report.reply_figures(c.label, c.role, [t for i in keep for t in r[i]], code) for c, r in others]
    sets.append(report.reply_figures(flown_label, "flown", [t for i in keep for t in flown[i]], code))
    note = (bundle.manifest.training.get("language") or {}).get("note")
    return report.LanguageResult(code, sets, note if isinstance(note, str) else None)


def _substance(val: list[Conversation], train: list[Conversation] | None, keep: list[int], flown: Rounds,
               others: list[tuple[Compared, Rounds]], flown_label: str):
    """What each model's replies say beyond the owner's commonest words (report.SubstanceResult),
    beside the owner's held-out turns; the fillers are learnt from the owner's distinct training
    messages, as the voice classifier learns its frequent words."""
    from stratoecho.substance import fillers

    from .. import report
    from . import voice

    owner_turns = [m["content"] for c in val for m in c if m["role"] == "assistant"]
    generated = [(c.label, c.role, [t for i in keep for t in r[i]]) for c, r in others]
    generated.append((flown_label, "flown", [t for i in keep for t in flown[i]]))
    return report.substance_result(fillers(voice.training_messages(train or [])[0]), owner_turns, generated)


def _style(val: list[Conversation], train: list[Conversation] | None, cases: Cases, keep: list[int], flown: Rounds,
           others: list[tuple[Compared, Rounds]], seed: int, flown_label: str):
    """The Style table's figures (report.StyleResult): the owner's held-out turns, the flown
    model's replies and the base's (a compared model of role "base"), with a few examples."""
    from .. import report
    from . import voice

    generated = [t for i in keep for t in flown[i]]
    owner_turns = [m["content"] for c in val for m in c if m["role"] == "assistant"]
    train_vocab = report.vocabulary(m["content"] for c in (train or []) for m in c if m["role"] == "assistant")
    overlap = report.vocabulary_overlap(generated, owner_turns, train_vocab)
    if train is None:
        overlap["seen_share"] = None
    style = report.StyleResult(owner=report.style_figures(owner_turns), generated=report.style_figures(generated),
                               overlap=overlap, examples=[], prompts=len(keep), max_tokens=STYLE_MAX_TOKENS,
                               seed=seed, label=flown_label, distance=voice.style_distances(owner_turns, generated),
                               rounds=VOICE_ROUNDS)
    base = next(((c, [r[i] for i in keep]) for c, r in others if c.role == "base"), None)
    if base is not None:
        base_texts = [t for group in base[1] for t in group]
        style.base, style.base_label = report.style_figures(base_texts), base[0].label
        style.base_distance = voice.style_distances(owner_turns, base_texts)
    for j, k in enumerate(keep[:3]):
        context, owner_reply = cases[k]
        style.examples.append((context[-1]["content"], owner_reply, flown[k][0]) + ((base[1][j][0],) if base else ()))
    return style
