"""The last stages of every `build`: eval.json, the manifest, its checks, the report, persona.toml.

persona.toml is written last, so a folder holding one is always a complete bundle.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

from stratoecho import boards

from .build_config import BuildConfig
from .stages import EVAL_FILE, MODEL_DIR, BuildError, Converted, Data, PersonaText, Quantized, Scores, Trained

log = structlog.get_logger(__name__)

# Sampling (docs/training.md, "A recipe that keeps substance"). Temperature 0.4 was chosen when one
# musing was made a moment and grounding was all that was measured (docs/bench.md, "Tuning the
# musings"); at 0.4 the German sample owner's persona answered a third of his friends' messages
# with fillers alone ("ja digga"), 1.6 words beyond them a reply against his 4.8. Now that musings
# are chosen among candidates (truth, grounding, substance, voice), the candidates want variety
# and replies want substance: temperature 0.7 and no end of turn before 8 tokens took his persona
# to 3.4 words beyond a reply, every reply distinct, his voice and real words unchanged, and the
# sample persona's flights kept their figures and no false claim aired. A firmer repeat penalty
# than llama.cpp's 1.1, since small models loop.
SAMPLING = dict(temperature=0.7, top_p=0.95, top_k=40, repeat_penalty=1.15, max_tokens=64, min_tokens=8)
# min_tokens is the owner's own: her median turn in the model's tokens, at least 8 and at most half
# the reply's tokens. 8 was found on a German owner whose median turn is 7 words; the Spanish
# sample owner's is 16 words (about 24 of Gemma's tokens), and at 8 her persona said 4.9 words
# beyond her fillers a reply, at 16 6.2, at 24 7.7 against her held-out 14.8 (half is the bar).
MIN_TOKENS_FLOOR = 8
BLOCKLIST_FILE = "blocklist.txt"
PROBE = [{"role": "user", "content": "How high are you?"}]  # the template check's conversation


def write_eval_json(out: Path, trained: Trained, models: Converted, quantized: Quantized, scores: Scores,
                    cfg: BuildConfig) -> None:
    report = {
        "metric": "persona-token negative log-likelihood on val.jsonl, nats/token; perplexity = exp",
        "kv_cache": "f32",
        "quantized": scores.quantized,
        "f32": scores.f32,
        **({"base_quantized": scores.reference} if scores.reference is not None else {}),
        # stage 5: the F32 GGUF in llama.cpp against the checkpoint in transformers (verify.py)
        **({"conversion_check": models.check} if models.check is not None else {}),
        "quantization": quantization_figures(quantized, cfg),
        **trained.eval_report,
    }
    (out / EVAL_FILE).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


def quantization_figures(quantized: Quantized, cfg: BuildConfig) -> dict:
    """eval.json's `quantization`: the type, its drift from F32 (drift.py), the importance matrix,
    and with --target the tolerance and every candidate."""
    from ..evaluate.drift import DEFAULT_MIN_TOP1, DEFAULT_TOLERANCE

    figures = {"quant": quantized.quant, "drift": quantized.drift, "imatrix": quantized.imatrix}
    if quantized.vocab_trim is not None:  # what was kept, the checks, the untrimmed Q4_K_M beside it
        from ..quantize.trimmed import kept_figures

        figures["vocab_trim"] = kept_figures(quantized.vocab_trim)
    if quantized.target_table is not None:
        figures["target"] = {"board": cfg.target, "candidates": quantized.target_table,
                             "tolerance": cfg.quant_tolerance if cfg.quant_tolerance is not None else DEFAULT_TOLERANCE,
                             "min_top1": cfg.quant_min_top1 if cfg.quant_min_top1 is not None else DEFAULT_MIN_TOP1,
                             "rule": "the smallest file that fits whose drift's upper 95 % bound is within the tolerance "
                                     "and whose top-1 agreement's lower 95 % bound reaches min_top1"}
    return figures


def check_lines(models: Converted, quantized: Quantized) -> list[str]:
    """report.md's lines on the conversion check, the importance matrix and the quantization choice."""
    lines = []
    if (c := models.check) is not None:
        lines.append(f"Conversion check ({c['weights']} GGUF in llama.cpp against the checkpoint in transformers, "
                     f"{c['positions']} held-out positions): {'passed' if c['ok'] else 'FAILED'}; top-1 agreement "
                     f"{c['top1']:.2%}, largest logit difference {c['max_abs_diff']:.2g} (allowed "
                     f"{c['allowed_max_abs_diff']:.2g} at logit scale {c['logit_scale']:.3g}), loss "
                     f"{c['loss_llama_cpp']:.5f} vs {c['loss_transformers']:.5f} nats/token; "
                     f"{c['texts'] - c['texts_differing']} of {c['texts']} held-out texts tokenized alike.")
    if (im := quantized.imatrix) is not None:
        lines.append(f"Importance matrix: {im['source']}" + (f" ({im['tokens']} tokens in {im['chunks']} chunks, "
                                                            f"{im['entries']} weight matrices)" if "tokens" in im else ""))
    if (d := quantized.drift) is not None:
        lines.append(f"{quantized.quant} against F32: NLL increase {d['nll_increase']:+.4f} nats/token (95 % interval "
                     f"{d['low']:+.4f} to {d['high']:+.4f} over {d['conversations']} conversations, {d['tokens']} "
                     f"tokens), top-1 agreement {d['top1_agreement']:.1%}"
                     + (f" ({d['top1_low']:.1%} to {d['top1_high']:.1%})." if "top1_low" in d else "."))
    chosen = next((r for r in quantized.target_table or () if r["chosen"]), None)
    if chosen is not None:
        lines.append(f"Choice: {chosen['note']}.")
    return lines


@dataclass(frozen=True)
class GgufFacts:
    """What the shipped GGUF says of itself, which the manifest must agree with."""

    architecture: str
    adds_bos: bool  # llama.cpp prepends the BOS itself: the prompt text must not carry a second one


def gguf_facts(path: Path) -> GgufFacts:
    import gguf

    fields = gguf.GGUFReader(str(path)).fields
    arch = fields.get("general.architecture")
    bos = fields.get("tokenizer.ggml.add_bos_token")
    return GgufFacts(str(arch.contents()) if arch is not None else "llama",
                     bool(bos.contents()) if bos is not None else False)


def eval_figures(scores: Scores, val_conversations: int, drift: dict | None = None) -> dict:
    """persona.toml's [eval]: the shipped file, its F32 source and (LoRA) the untuned base; the
    shipped file's drift from F32 with its 95 % interval."""
    q, f = scores.quantized, scores.f32
    figures = dict(val_loss=round(q["val_loss"], 5), val_perplexity=round(q["val_perplexity"], 4),
                   f32_val_loss=round(f["val_loss"], 5), f32_val_perplexity=round(f["val_perplexity"], 4),
                   quant_perplexity_increase=round(q["val_perplexity"] - f["val_perplexity"], 4),
                   val_tokens=q["tokens"])
    if drift is not None:
        figures.update(quant_nll_increase=round(drift["nll_increase"], 5), quant_nll_increase_low=round(drift["low"], 5),
                       quant_nll_increase_high=round(drift["high"], 5))
    if (b := scores.reference) is not None:  # same quantization, same tokens
        figures.update(base_val_loss=round(b["val_loss"], 5), base_val_perplexity=round(b["val_perplexity"], 4),
                       perplexity_reduction=round(b["val_perplexity"] - q["val_perplexity"], 4))
    return dict(**figures, val_conversations=val_conversations, report=EVAL_FILE)


def provenance(data: Data) -> dict:
    """What the model was trained on, for persona.toml: which data, how much."""
    from stratoecho.bundle import sha256_file

    return dict(data_sha256=sha256_file(data.train_path), val_sha256=sha256_file(data.val_path),
                train_conversations=len(data.train), val_conversations=len(data.val))


def manifest(cfg: BuildConfig, data: Data, persona: PersonaText, trained: Trained, quantized: Quantized,
             scores: Scores, facts: GgufFacts):
    """The bundle's description; the GGUF has the last word on its architecture and the BOS."""
    from stratoecho.bundle import BundleManifest, file_entry

    t = trained.template
    return BundleManifest(
        persona=dict(name=persona.name, system_prompt=persona.system_prompt, chat_template=t.chat_template,
                     stop=list(t.stop), bos_token="" if facts.adds_bos else t.bos_token, eos_token=t.eos_token,
                     language=persona.language or ""),
        sampling=dict(SAMPLING),
        model=dict(file=quantized.file, quantization=quantized.quant, architecture=facts.architecture, base=trained.base,
                   context_length=trained.context_length, n_params=trained.n_params),
        training=dict(
            method=cfg.training.method,
            **trained.training,
            **provenance(data),
            seed=cfg.seed,
            loss=cfg.loss,
            filler_targets=cfg.filler_targets,
            system_prompt_in_training=bool(persona.system_prompt),
            **_vocab_trim(quantized),
        ),
        eval=eval_figures(scores, len(data.val), quantized.drift),
        memory=dict(notes=list(persona.notes)) if persona.notes else None,  # the owner's facts (interview)
        files=[file_entry(cfg.out, quantized.file), file_entry(cfg.out, EVAL_FILE)],
    )


def _vocab_trim(quantized: Quantized) -> dict:
    """persona.toml [training]'s vocab_trim where the vocabulary was trimmed for the board; else nothing."""
    if quantized.vocab_trim is None:
        return {}
    from ..quantize.trimmed import kept_figures

    return {"vocab_trim": kept_figures(quantized.vocab_trim)}


def keep_model(trained: Trained, out: Path, learnt: list, parent_seen: frozenset[str] = frozenset()) -> dict:
    """The checkpoint the GGUF came from, into BUNDLE/model with what it has learnt, for a later
    `build --continue` (continuing.py); not in [[files]]: the payload never reads it. Returns
    persona.toml [training]'s entries for it."""
    import shutil

    from .continuing import model_digest, write_trained_on

    folder = out / MODEL_DIR
    shutil.copytree(trained.model_dir, folder, ignore=shutil.ignore_patterns("checkpoint-*", "*.gguf"))
    write_trained_on(folder, learnt, parent_seen)
    return dict(model_folder=MODEL_DIR, model_folder_sha256=model_digest(folder))


def min_tokens_for(turns: Sequence[str], count_tokens: Callable[[str], int],
                   max_tokens: int = SAMPLING["max_tokens"]) -> int:
    """`[sampling] min_tokens` for an owner whose turns are `turns`: the median of their lengths in
    the model's tokens (`count_tokens`), within [MIN_TOKENS_FLOOR, max_tokens // 2]. A persona whose
    turn may end at its first likely stop says less than its owner writes: the end of a turn is
    the likeliest next token of a short-spoken owner's every turn."""
    if not turns:
        return MIN_TOKENS_FLOOR
    median = statistics.median_low(count_tokens(t) for t in turns)
    return max(MIN_TOKENS_FLOOR, min(median, max_tokens // 2))


def owner_min_tokens(trained: Trained, conversations) -> int:
    """min_tokens_for the owner's turns of `conversations` in `trained`'s own tokenizer."""
    from transformers import AutoTokenizer

    from .owner_lines import owner_texts

    tok = AutoTokenizer.from_pretrained(str(trained.model_dir))
    n = min_tokens_for(owner_texts(conversations), lambda t: len(tok(t, add_special_tokens=False)["input_ids"]))
    log.info("build.min_tokens", min_tokens=n, why="the owner's median turn, in the model's tokens")
    return n


def check_template(out: Path, manifest, trained: Trained, system_prompt: str, facts: GgufFacts) -> None:
    """The payload renders prompts with bundle.render_prompt: it must give what training saw."""
    from transformers import AutoTokenizer

    from stratoecho.bundle import Bundle

    tok = AutoTokenizer.from_pretrained(str(trained.model_dir))
    probe = [{"role": "system", "content": system_prompt}, *PROBE]
    want = tok.apply_chat_template(probe, tokenize=False, add_generation_prompt=True)
    got = Bundle(out, manifest).render_prompt(probe)
    if got != want and (not facts.adds_bos or (tok.bos_token or "") + got != want):
        raise BuildError(f"the payload would render the chat template differently from training:\n{got!r}\nvs\n{want!r}")


def add_blocklist(blocklist: Path | None, out: Path, manifest) -> None:
    """The owner's blocklist into the bundle, hashed, listed in [[files]] and [guard]."""
    if blocklist is None:
        return
    from stratoecho.blocklist import BlocklistFormatError, HashedBlocklist
    from stratoecho.bundle import file_entry

    from ..prepare import BlocklistError, load_blocklist

    try:
        hashed = HashedBlocklist.from_entries(load_blocklist(blocklist))
    except (BlocklistError, BlocklistFormatError) as e:
        raise BuildError(f"--blocklist: {e}") from e
    (out / BLOCKLIST_FILE).write_text(hashed.dumps(), encoding="utf-8")
    manifest.guard.blocklist = BLOCKLIST_FILE
    manifest.files.append(file_entry(out, BLOCKLIST_FILE))


def add_voice(out: Path, manifest, classifier, val: list) -> None:
    """The report's voice classifier into the bundle (stratoecho/voice_score.py: the payload chooses among
    candidate musings with it): BUNDLE/voice.json.gz, listed in [[files]], named in persona.toml [owner]
    voice. Checked first against scikit-learn's probabilities on the held-out turns of `val`. Nothing
    when the report trained none (too few messages): the payload then chooses without it."""
    if classifier is None:
        return
    from stratoecho.bundle import OwnerSection, file_entry
    from stratoecho.voice_score import VOICE_FILE, VoiceScorer, dumps

    from ..evaluate.voice_export import TOLERANCE, ExportError, export, largest_difference

    try:
        data = export(classifier)
    except ExportError as e:
        raise BuildError(str(e)) from e
    gap = largest_difference(classifier, VoiceScorer.from_dict(data, VOICE_FILE), [m["content"] for c in val for m in c])
    if gap > TOLERANCE:
        raise BuildError(f"the exported voice classifier ({VOICE_FILE}) differs from the report's by up to {gap:.2g} "
                         f"on the held-out turns (at most {TOLERANCE:g} allowed)")
    (out / VOICE_FILE).write_bytes(dumps(data))
    manifest.owner = (manifest.owner or OwnerSection()).model_copy(update={"voice": VOICE_FILE})
    manifest.files.append(file_entry(out, VOICE_FILE))
    log.info("build.voice", file=VOICE_FILE, bytes=(out / VOICE_FILE).stat().st_size, ngrams=len(data["ngrams"]),
             largest_difference=gap)


def add_substance(manifest, substance) -> None:
    """The report's substance figures into [eval], and the owner's fillers with the owner's held-out
    words beyond them into [owner] (fillers, words_beyond), for the payload to weigh candidate
    musings by (stratoecho/substance.py); nothing when the owner had no training messages."""
    from stratoecho.bundle import OwnerSection

    if substance is None or not substance.fillers:
        return
    manifest.eval.update(substance.eval_figures())
    owner = substance.owner
    rate = round(owner.words_beyond, 4) if owner is not None and owner.words_beyond is not None else None
    manifest.owner = (manifest.owner or OwnerSection()).model_copy(
        update={"fillers": list(substance.fillers), "words_beyond": rate})


def add_base_terms(out: Path, manifest) -> None:
    """A pinned base's terms of use into the bundle, where its package carries them (Gemma's, which
    ask that a copy travels with the model and its derivatives): copied beside the GGUF, listed in
    [[files]] and named in persona.toml [training.base_gguf] terms_file. The licence's name and
    where to read it are in base_gguf's licence whatever happens here."""
    import shutil

    from stratoecho.bundle import file_entry

    from ..base.base_models import terms_path

    g = manifest.training.get("base_gguf")
    src = terms_path(g) if isinstance(g, dict) else None
    if src is None:
        return
    shutil.copyfile(src, out / src.name)
    g["terms_file"] = src.name
    manifest.files.append(file_entry(out, src.name))


def perplexity_rows(trained: Trained, models: Converted, quantized: Quantized, scores: Scores,
                    target: str | None) -> list:
    """The report's table and plot: every model scored, smallest claim first."""
    from ..report import PerplexityRow

    rows = []
    if quantized.reference is not None:
        before = "parent (before)" if trained.label == "continued" else "base (untuned)"
        rows.append(PerplexityRow(before, quantized.quant, quantized.reference.bytes,
                                  scores.reference["val_perplexity"]))
    f32 = quantized.source_f32 or models.f32  # a trimmed vocabulary's F32 where the shipped file is trimmed
    rows.append(PerplexityRow(trained.label, "F32", f32.stat().st_size, scores.f32["val_perplexity"]))
    if quantized.quant != "F32":
        rows.append(PerplexityRow(trained.label, quantized.quant, quantized.model.bytes,
                                  scores.quantized["val_perplexity"], quantized.drift))
    for r in quantized.target_table or ():
        if r.get("val_perplexity") is not None and not r["chosen"]:
            rows.append(PerplexityRow(f"candidate for {target}", r["quant"], r["bytes"], r["val_perplexity"],
                                      r.get("drift")))
    return rows


def write_report(cfg: BuildConfig, manifest, data: Data, rows: list, quantized: Quantized,
                 checks: list[str] = (), models: Converted | None = None) -> None:
    """report.md (perplexity table and plot, whose voice, style figures, privacy probe) and the
    Ollama Modelfile; not listed in persona.toml's files: `eval` writes them again. The untuned
    base (or the parent) in the shipped quantization and, from `models`, the persona's F32 GGUF
    answer the same held-out prompts as the shipped model (both still in the work folder).
    Adds the probe's verdict, the voice shares and, with --target, the board's figures to the
    manifest."""
    from stratoecho.bundle import Bundle, sha256_file

    from .. import evaluate
    from .. import report as persona_report
    from .build_config import ContinueOptions

    compare = []
    if quantized.reference is not None:
        before = "parent (before)" if isinstance(cfg.training, ContinueOptions) else "base (untuned)"
        compare.append(evaluate.Compared(f"{before} {quantized.quant}", quantized.reference.path, "base"))
    if models is not None and quantized.quant != "F32":
        compare.append(evaluate.Compared("persona F32", models.f32, "tuned"))
    if quantized.vocab_trim is not None:  # the file that does not fit, beside the trimmed one that flies
        from ..quantize.trimmed import UNTRIMMED_LABEL, UNTRIMMED_ROLE, untrimmed_path

        compare.append(evaluate.Compared(UNTRIMMED_LABEL, untrimmed_path(quantized.vocab_trim), UNTRIMMED_ROLE))
    private = persona_report.load_private_strings(cfg.private) if cfg.private is not None else []
    outcome = evaluate.write_report(Bundle(cfg.out, manifest), data.val, rows, train=data.train, seed=cfg.seed,
                                    checks=checks, compare=compare, data_sha256=sha256_file(data.val_path),
                                    private=private)
    persona_report.write_modelfile(cfg.out, manifest)
    manifest.eval["privacy_probe"] = outcome.probe.verdict
    manifest.eval.update(outcome.voice.eval_figures())
    add_voice(cfg.out, manifest, outcome.voice.classifier, data.val)  # the classifier just measured with
    manifest.eval.update(outcome.language.eval_figures())
    add_substance(manifest, outcome.substance)
    if quantized.target_table is not None:
        board = boards.board(cfg.target)
        chosen = next(r for r in quantized.target_table if r["chosen"])
        manifest.model = manifest.model.model_copy(update={"target": cfg.target})
        manifest.eval["predicted_tokens_per_s"] = chosen.get("predicted_tokens_per_s")
        manifest.eval["quant_within_tolerance"] = bool(chosen.get("within_tolerance"))
        manifest.eval["target_budget_mb"] = round(board.budget_bytes / 1e6)
