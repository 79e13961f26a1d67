"""Stage 2 of `build`, the one stage the two kinds of build do not share.

    ScratchTraining  --from-scratch   a byte-level BPE tokenizer and a tiny Llama (tokenizer.py,
                                      train_scratch.py), ChatML
    LoraTraining     --base DIR       LoRA on a pretrained model, merged and checked
                                      (finetune.py), the base's own chat template; the untuned
                                      base goes on as the reference to score beside it

Each says what it cannot do before BUNDLE is touched (`check`; for --base the preflight,
preflight.py, whose report it returns), which process of an
`accelerate launch` writes the bundle (`processes`), whether its checkpoints must survive in
BUNDLE/work for --resume (`resumable`), and trains into a stages.Trained.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from ..base.base_models import Base
from ..preflight import Report
from .build_config import BuildConfig, LoraOptions, ScratchOptions
from .stages import BuildError, Data, PersonaText, Template, Trained

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Processes:
    """Who writes the bundle when several processes train together (accelerate launch)."""

    is_main: bool
    wait: Callable[[], None]  # until every process is here


class ScratchTraining:
    resumable = False

    def __init__(self, cfg: BuildConfig, opts: ScratchOptions) -> None:
        from ..train import train_scratch

        self.opts = opts
        self.config = train_scratch.TrainConfig(preset=opts.preset, steps=cfg.steps, max_minutes=cfg.max_minutes,
                                                seed=cfg.seed, batch_size=cfg.batch_size, loss=cfg.loss)

    def check(self) -> None:
        try:
            self.config.resolved()
        except ValueError as e:
            raise BuildError(str(e)) from None

    def processes(self) -> Processes:
        return Processes(True, lambda: None)

    def train(self, data: Data, persona: PersonaText, work: Path) -> Trained:
        from .. import evaluate
        from ..train import heldout, tokenizer, train_scratch

        hf_dir = work / "hf"
        hf_dir.mkdir(exist_ok=True)
        texts = tokenizer.tokenizer_training_text(data.train, persona.system_prompt)
        tok = tokenizer.train_tokenizer(texts, self.opts.vocab_size)
        tokenizer.save_tokenizer(tok, hf_dir)
        log.info("build.tokenizer", vocab=tok.get_vocab_size())
        try:
            r = train_scratch.train(self.config, data.train, data.val, hf_dir, hf_dir, persona.system_prompt)
        except ValueError as e:  # data that renders to nothing trainable
            raise BuildError(f"training: {e}") from None
        # val.jsonl and a sample of train.jsonl in the ids training used, for the checks after it
        hf_tok = tokenizer.load_hf_tokenizer(hf_dir)
        encode, special = tokenizer.hf_text_encoder(hf_tok), tokenizer.hf_special_ids(hf_tok)
        held = heldout.from_chatml(data.val, encode, special, persona.system_prompt, r.context_length)
        rendered = (tokenizer.render_ids(tokenizer.with_system_prompt(c, persona.system_prompt), encode, special)[0]
                    for c in heldout.distinct(data.train))
        return Trained(
            model_dir=hf_dir, label="trained", base="scratch",
            template=Template(tokenizer.CHATML_TEMPLATE, list(tokenizer.STOP_STRINGS), tokenizer.EOT, tokenizer.EOT),
            score=lambda path: evaluate.score_gguf(path, data.val, persona.system_prompt),
            context_length=r.context_length, n_params=r.n_params, steps=r.steps, minutes=r.minutes,
            training=dict(preset=self.opts.preset, steps=r.steps, kept_step=r.best_step,
                          tokenizer="byte-level BPE (GPT-2 pre-tokenizer), ChatML",
                          vocab_size=tok.get_vocab_size(), tokens_per_step=r.tokens_per_step,
                          train_loss=round(r.train_loss, 5), val_loss=round(r.val_loss, 5),
                          minutes=round(r.minutes, 3), **r.hparams),
            eval_report={"training_framework_val_loss": r.val_loss,
                         "training_val_curve": r.val_curve},  # [step, val_loss]; the best step's weights are kept
            heldout=held, calibration=heldout.calibration(rendered, chunk=min(heldout.CALIBRATION_CHUNK,
                                                                              r.context_length)),
        )


class LoraTraining:
    resumable = True  # checkpoints in BUNDLE/work/checkpoints: --resume continues from them

    def __init__(self, cfg: BuildConfig, opts: LoraOptions) -> None:
        from .. import finetune

        self.opts = opts
        self.config = finetune.FinetuneConfig(
            preset=opts.preset, steps=cfg.steps, epochs=opts.epochs, learning_rate=opts.learning_rate,
            rank=opts.rank, batch_size=cfg.batch_size, max_length=opts.max_length,
            gradient_checkpointing=opts.gradient_checkpointing, seed=cfg.seed, loss=cfg.loss,
            chat_template=opts.chat_template, resume=opts.resume, max_minutes=cfg.max_minutes,
            merge_dtype=opts.merge_dtype)
        self.quant, self.target = cfg.quant, cfg.target
        self.preflight: Report | None = None
        self.base: Base | None = None  # --base as a checkpoint folder (base_models.resolve), found by check()

    def resolve_base(self) -> Base:
        """--base as a checkpoint folder: a GGUF file or a pinned name is dequantized (once, cached)."""
        from ..base import base_models

        if self.base is None:
            try:
                self.base = base_models.resolve(self.opts.base)
            except base_models.BaseModelError as e:
                raise BuildError(str(e)) from None
            if self.base.gguf is not None:
                g = self.base.gguf
                log.info("build.base_gguf", gguf=str(self.opts.base), quantization=g.quantization,
                         architecture=g.architecture, folder=str(self.base.folder))
        return self.base

    def check(self) -> Report:
        """The preflight (preflight.py): will the base convert, which template, will it fit the board."""
        from .. import preflight

        base = self.resolve_base()
        try:
            self.preflight = preflight.run(base.folder, quant=self.quant, target=self.target,
                                           preset=self.opts.preset, max_length=self.opts.max_length,
                                           chat_template_mode=self.opts.chat_template)
        except preflight.PreflightError as e:
            raise BuildError(f"preflight: {e}") from None
        return self.preflight

    def processes(self) -> Processes:
        import torch
        from accelerate import PartialState

        state = PartialState(cpu=not torch.cuda.is_available())  # one process, or one of `accelerate launch`'s
        return Processes(state.is_main_process, state.wait_for_everyone)

    def train(self, data: Data, persona: PersonaText, work: Path) -> Trained | None:
        """None in a secondary process of `accelerate launch`: the main one goes on to the bundle."""
        from stratoecho.bundle import sha256_file

        from .. import evaluate, finetune
        from ..train import heldout
        from ..train.tokenizer import with_system_prompt

        source = self.resolve_base()
        base = source.folder
        log.info("build.base", base=str(base))
        try:
            r = finetune.train(self.config, base, data.train, data.val, work, persona.system_prompt)
        except finetune.FinetuneError as e:
            raise BuildError(f"fine-tuning: {e}") from None
        if r is None:
            return None
        reference = base
        if r.template_source == "chatml-added":  # the base as it was trained: with the ChatML tokens
            import torch

            m, t, _, _ = finetune.load_base(base, torch.float32, self.opts.chat_template)
            reference = work / "base-chatml"
            m.save_pretrained(str(reference))
            finetune.save_tokenizer(t, base, reference)
            del m
        # Scored on the very token ids training used.
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(r.merged_dir)
        fmt = finetune.ChatFormat(tok)
        val_ex = finetune.to_examples(data.val, fmt, persona.system_prompt, "persona", r.context_length)
        held = heldout.from_chat_format(data.val, fmt, persona.system_prompt, r.context_length)
        rendered = (fmt.ids_and_targets(with_system_prompt(c, persona.system_prompt))[0]
                    for c in heldout.distinct(data.train))
        lineage = {"base_gguf": source.gguf.as_dict()} if source.gguf is not None else {}
        return Trained(
            model_dir=Path(r.merged_dir), label="fine-tuned", base=source.title,
            template=Template(r.chat_template, list(r.stop), r.bos_token, r.eos_token),
            score=lambda path: evaluate.score_gguf_ids(path, val_ex),
            context_length=r.context_length, n_params=r.n_params, steps=r.steps, minutes=r.minutes,
            training=dict(base_path=str(base.resolve()), base_config_sha256=sha256_file(base / "config.json"),
                          preset=r.preset, steps=r.steps, epochs=r.epochs, chat_template_source=r.template_source,
                          trainable_params=r.trainable_params, device=r.device, dtype=r.dtype,
                          train_loss_first=r.train_loss_first, train_loss_last=r.train_loss_last,
                          merge_dtype=self.opts.merge_dtype, merge_max_abs_logit_diff=r.merge_max_abs_diff,
                          minutes=round(r.minutes, 3), **r.hparams, **lineage),
            eval_report={
                "transformers": {"base_val_loss": r.base_val_loss, "tuned_val_loss": r.val_loss,
                                 "tokens": r.val_tokens},
                "training_curve": r.curve,  # {"train": [[step, loss]], "eval": [[step, val_loss]]}; eval step 0 = base
                "merge_check": {"max_abs_logit_diff": r.merge_max_abs_diff, "tolerance": r.merge_tolerance,
                                "dtype": self.opts.merge_dtype},
                **({"preflight": self.preflight.as_dict()} if self.preflight is not None else {}),
            },
            reference_dir=reference, reference_name=f"{source.title} (untuned)",
            heldout=held, calibration=heldout.calibration(rendered, chunk=min(heldout.CALIBRATION_CHUNK,
                                                                              r.context_length)),
        )


def trainer_for(cfg: BuildConfig) -> ScratchTraining | LoraTraining:
    if isinstance(cfg.training, LoraOptions):
        return LoraTraining(cfg, cfg.training)
    return ScratchTraining(cfg, cfg.training)
