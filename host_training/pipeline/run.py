"""`build` as its stages, in order; --from-scratch and --base differ in the training stage only.

    1. data       stages.load_data, persona_text       train.jsonl / val.jsonl, checked line by line
    2. check      stages.check_inputs, trainer.check   every refusal that needs no training, before
                                                       BUNDLE is touched
    3. out        stages.claim_out_dir, workspace      --force, --resume, --keep-work
    4. train      training.py                          scratch (tokenizer + tiny Llama) | LoRA + merge
    5. convert    stages.convert, evaluate/verify.py   HF checkpoint(s) -> F32 GGUF, then the GGUF checked
                                                       against the checkpoint on held-out tokens
    6. quantize   stages.quantize, quantize/imatrix.py the persona's importance matrix; --quant, or for
                  evaluate/drift.py                    --target the smallest type that fits the board
                                                       with its drift from F32 within --quant-tolerance
    7. evaluate   stages.evaluate                      val perplexity of what ships, its F32 source
                                                       and (LoRA) the untuned base, in llama.cpp
    8. bundle     bundling.py                          eval.json, manifest and template check,
                                                       BUNDLE/model (for a later --continue),
                                                       report.md, persona.toml last

--continue PARENT (continuing.py) is --base on PARENT's own model: stage 1 also reads PARENT and
picks what is new in the data plus a replayed share of the old; the parent is the reference
scored beside the new model, and persona.toml gets [training.lineage].

Each stage takes and returns typed values (stages.Data, Trained, Converted, Quantized, Scores);
nothing is written back into the configuration. A preflight (will this base fit, will it
convert) belongs to stage 2, the check of the GGUF against its checkpoint to stage 5. On the
terminal each stage is one line (progress.py; stage 3 shows in check's), its steps counted
where it has them; `build` runs this inside quiet.Quiet, so the libraries' output goes to the log.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import structlog

from stratoecho.bundle import write_bundle

from .. import progress
from ..base import base_choice
from ..train.targets import cap_filler_targets
from . import bundling, continuing, owner_lines, stages
from .build_config import BuildConfig, ContinueOptions
from .training import trainer_for

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class BuildSummary:
    bundle: str
    model: str  # the model file's name in the bundle
    bytes: int
    quant: str
    val_perplexity: float
    f32_val_perplexity: float
    base_val_perplexity: float | None  # LoRA: the untuned base, same quantization
    steps: int
    train_minutes: float
    minutes: float


def prepare_runs(folder) -> list[dict]:
    """The data folder's history of `prepare` runs (report.json "runs"; accumulate.py), or none."""
    import json

    try:
        return list(json.loads((folder / "report.json").read_text(encoding="utf-8")).get("runs") or [])
    except (OSError, ValueError, AttributeError):
        return []


@dataclass(frozen=True)
class _Inputs:
    """What stage 1 read and planned: the data, the persona's text, the trainer, and for
    --continue the parent with what is new for it."""

    data: stages.Data
    persona: stages.PersonaText
    trainer: object  # training.trainer_for's, or continuing.ContinueTraining
    language: dict
    parent: continuing.Parent | None = None
    plan: continuing.Plan | None = None


def _read(cfg: BuildConfig) -> _Inputs:
    """Stage 1: the data, and for --continue PARENT and what is new for it (refused here if it cannot work)."""
    data = stages.load_data(cfg.data)
    parent = plan = None
    if isinstance(cfg.training, ContinueOptions):
        parent = continuing.parent(cfg.training.parent)
        plan = continuing.plan(data, parent, cfg.training.replay, cfg.seed)
        persona = continuing.persona_text(cfg.name, cfg.system_prompt, parent)
        data = plan.data
        log.info("build.continue", parent=str(parent.folder), new=plan.new, replayed=plan.replayed,
                 already_learnt=plan.already_learnt)
    else:
        persona = stages.persona_text(cfg, data)
    if cfg.filler_targets is not None:  # the owner's filler-only turns: a few targets, the rest context
        train, counts = cap_filler_targets(data.train, cfg.filler_targets)
        data = replace(data, train=train)
        log.info("build.filler_targets", cap=cfg.filler_targets, **counts)
    trainer = continuing.ContinueTraining(cfg, cfg.training) if parent is not None else trainer_for(cfg)
    language = base_choice.check(cfg.data, cfg.training.method, getattr(cfg.training, "base", None),
                                 parent.manifest.model.base if parent is not None else None)
    persona = replace(persona, language=persona.language or stages.owner_language_code(cfg.data))
    if language["note"]:  # the base does not write the owner's language: said before an hour of training
        log.warning("build.language", **language)
        progress.say(f"warning: {language['note']}")
    return _Inputs(data, persona, trainer, language, parent, plan)


def build(cfg: BuildConfig) -> BuildSummary | None:
    """Data in, bundle out. None in a secondary process of `accelerate launch` (the main one
    writes the bundle) and with --preflight-only (stages 1 and 2 only: nothing written).
    BuildError or tokenizer.DataError say why a build cannot go on. Each stage is one line on the
    terminal when one is shown (progress.py)."""
    t0 = time.monotonic()
    with progress.stage("data"):
        inputs = _read(cfg)
    with progress.stage("check"):
        stages.check_inputs(cfg)
        preflight = inputs.trainer.check()  # --base: will it convert, which template, will it fit (preflight/)
        if preflight is not None:
            log.info("build.preflight", **preflight.log_fields())
            if cfg.preflight_only:
                progress.say(preflight.text(), result=True)
            else:  # the verdict on the terminal, the whole report in the log
                log.info("build.preflight_report", text=preflight.text())
                progress.say(preflight.short())
        if cfg.preflight_only:
            return None
        # Checks done: only now touch BUNDLE (a --force rebuild removes the old bundle here).
        procs = inputs.trainer.processes()
        if procs.is_main:
            stages.claim_out_dir(cfg.out, cfg.force, cfg.resume)
        procs.wait()
    data, persona = inputs.data, inputs.persona
    log.info("build.data", train=len(data.train), val=len(data.val), name=persona.name, method=cfg.training.method)

    # A secondary process keeps the workspace: the main one may still be using it.
    with stages.workspace(cfg.out, cfg.keep_work or not procs.is_main, inputs.trainer.resumable) as work:
        with progress.stage("train"):
            trained = inputs.trainer.train(data, persona, work)
        if trained is None:
            return None
        if inputs.parent is not None:
            trained = replace(trained, label="continued", base=inputs.parent.manifest.model.base,
                              reference_name=f"{inputs.parent.manifest.persona.name} (parent)")
        with progress.stage("convert"):
            models = stages.convert(trained, work, persona.name)
        with progress.stage("quantize"):
            quantized = stages.quantize(cfg, models, work, trained)
        with progress.stage("evaluate"):
            scores = stages.evaluate(models, quantized, trained.score)
        with progress.stage("bundle"):
            _bundle(cfg, inputs, trained, models, quantized, scores)
    return _summary(cfg, trained, quantized, scores, t0)


def _bundle(cfg: BuildConfig, inputs: _Inputs, trained: stages.Trained, models: stages.Converted,
            quantized: stages.Quantized, scores: stages.Scores) -> None:
    """Stage 8: eval.json, the manifest and its checks, report.md (the replies it measures are the
    stage's steps), persona.toml last."""
    data, parent = inputs.data, inputs.parent
    bundling.write_eval_json(cfg.out, trained, models, quantized, scores, cfg)
    facts = bundling.gguf_facts(quantized.model.path)
    manifest = bundling.manifest(cfg, data, inputs.persona, trained, quantized, scores, facts)
    manifest.sampling.min_tokens = bundling.owner_min_tokens(trained, data.train)  # her turns' length
    manifest.training.update(bundling.keep_model(trained, cfg.out, data.train,
                                                 parent.trained_on if parent else frozenset()))
    manifest.training["language"] = {k: v for k, v in inputs.language.items() if v is not None}
    runs = prepare_runs(cfg.data)
    manifest.training["prepare_runs"] = [r["run"] for r in runs if isinstance(r.get("run"), int)]
    if parent is not None:
        manifest.training["lineage"] = continuing.lineage(parent, inputs.plan, cfg.training.replay, runs,
                                                          scores.reference, scores.quantized, quantized.quant)
    bundling.check_template(cfg.out, manifest, trained, inputs.persona.system_prompt, facts)
    bundling.add_blocklist(cfg.blocklist, cfg.out, manifest)
    bundling.add_base_terms(cfg.out, manifest)  # a pinned base's terms of use travel with it
    owner_lines.add_owner_lines(cfg.out, manifest, data.train, inputs.persona.language)  # her lines, by situation
    rows = bundling.perplexity_rows(trained, models, quantized, scores, cfg.target)
    bundling.write_report(cfg, manifest, data, rows, quantized, bundling.check_lines(models, quantized), models)
    write_bundle(cfg.out, manifest)  # persona.toml last: now it is a bundle


def _summary(cfg: BuildConfig, trained: stages.Trained, quantized: stages.Quantized, scores: stages.Scores,
             t0: float) -> BuildSummary:
    ref = scores.reference
    summary = BuildSummary(
        bundle=str(cfg.out), model=quantized.file, bytes=quantized.model.bytes, quant=quantized.quant,
        val_perplexity=scores.quantized["val_perplexity"], f32_val_perplexity=scores.f32["val_perplexity"],
        base_val_perplexity=ref["val_perplexity"] if ref is not None else None,
        steps=trained.steps, train_minutes=trained.minutes, minutes=(time.monotonic() - t0) / 60)
    log.info("build.done", bundle=summary.bundle, model=summary.model, bytes=summary.bytes,
             val_perplexity=round(summary.val_perplexity, 4), f32_val_perplexity=round(summary.f32_val_perplexity, 4),
             base_val_perplexity=None if ref is None else round(summary.base_val_perplexity, 4),
             minutes=round(summary.minutes, 2))
    return summary
