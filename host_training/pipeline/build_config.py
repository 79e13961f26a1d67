"""What `build` is asked to do, declared and checked before any work is done.

The command line (build.py) makes one BuildConfig from its flags; every stage below it reads
this, never argparse. The checks here are about the values alone (an I-quant without an
importance matrix, a vocabulary smaller than the bytes); whether files exist is for the
stages to find out, in their order (stages.check_inputs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, field_validator

from stratoecho import boards

from ..quantize.quantizer import DEFAULT_QUANT, parse_quant
from ..train.tokenizer import DEFAULT_VOCAB_SIZE, SPECIAL_TOKENS
from ..train.train_scratch import PRESETS

DEFAULT_SEED = 1337
VOCAB_FLOOR = len(SPECIAL_TOKENS) + 256  # every byte plus the special tokens


class _Declared(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScratchOptions(_Declared):
    """--from-scratch: a tokenizer and a tiny Llama of the persona's own."""

    method: Literal["from-scratch"] = "from-scratch"
    preset: str = "demo"
    vocab_size: int = DEFAULT_VOCAB_SIZE

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, v: str) -> str:
        if v not in PRESETS:
            raise ValueError(f"unknown preset {v!r}; expected one of {', '.join(sorted(PRESETS))}")
        return v

    @field_validator("vocab_size")
    @classmethod
    def _holds_every_byte(cls, v: int) -> int:
        if v < VOCAB_FLOOR:
            raise ValueError(f"{v} is too small: byte-level BPE needs at least {VOCAB_FLOOR}")
        return v


class LoraOptions(_Declared):
    """--base: LoRA on a pretrained model; None means the preset's value (finetune.PRESETS)."""

    method: Literal["lora"] = "lora"
    base: Path
    preset: Literal["auto", "tiny", "small", "0.5b", "1b", "3b"] = "auto"
    epochs: PositiveFloat | None = None
    learning_rate: PositiveFloat | None = None
    rank: PositiveInt | None = None
    max_length: PositiveInt | None = None
    gradient_checkpointing: bool | None = None
    chat_template: Literal["base", "chatml"] = "base"
    merge_dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    resume: bool = False  # continue from the last checkpoint in BUNDLE/work/checkpoints


class ContinueOptions(LoraOptions):
    """--continue PARENT: LoRA on PARENT's own model (BUNDLE/model; `base` is that folder), on what
    is new since plus a replayed share of what it learnt (continuing.py)."""

    method: Literal["continue"] = "continue"  # type: ignore[assignment]
    parent: Path
    replay: Annotated[float, Field(ge=0, lt=1)] = 0.25  # continuing.DEFAULT_REPLAY: old ones' share of the mix


class BuildConfig(_Declared):
    """Everything `build` needs; `training` is the one part the two kinds of build do not share."""

    data: Path  # prepare's output folder
    out: Path  # the bundle folder
    training: Annotated[ScratchOptions | LoraOptions | ContinueOptions, Field(discriminator="method")]
    steps: PositiveInt | None = None  # None: the preset's
    max_minutes: PositiveFloat | None = None
    batch_size: PositiveInt | None = None
    seed: int = DEFAULT_SEED
    imatrix: Path | None = None  # declared before quant: the quant check reads it
    quant: str = DEFAULT_QUANT
    target: str | None = None  # a board: the quantization is chosen for it instead of `quant`
    # --target: the largest drift accepted (nats/token, upper 95 % bound); None: drift.DEFAULT_TOLERANCE
    quant_tolerance: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] | None = None
    # --target: the least top-1 agreement with F32 accepted (lower 95 % bound); None: drift.DEFAULT_MIN_TOP1
    quant_min_top1: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] | None = None
    name: str | None = None  # None: the name on the persona's turns
    system_prompt: str | None = None  # None: SYSTEM_PROMPT with the name (and the self-description)
    interview: Path | None = None  # the owner's interview folder (self.toml); None: the one prepare read, if any
    loss: Literal["persona", "all"] = "persona"
    # The owner's turns of nothing but his commonest words trained at most this many times each, the
    # rest kept as context (train/targets.py); None: every one a target
    filler_targets: Annotated[int, Field(ge=0)] | None = None
    blocklist: Path | None = None
    private: Path | None = None  # the owner's private strings for the report's privacy probe
    keep_work: bool = False
    force: bool = False
    verbose: bool = False  # llama.cpp's own log while quantizing
    preflight_only: bool = False  # stop after the checks (stage 2): nothing trained, BUNDLE untouched

    @field_validator("quant")
    @classmethod
    def _quant_we_can_make(cls, v: str, info) -> str:
        # I-quants too: without --imatrix FILE the build computes the persona's own (imatrix.py).
        return parse_quant(v, iquants=True)

    @field_validator("target")
    @classmethod
    def _known_board(cls, v: str | None) -> str | None:
        # The board's own name: `pi4` is recorded as the pi4-2gb it stands for. ValueError listing the boards.
        return None if v is None else boards.board(v).name

    @field_validator("quant_tolerance", "quant_min_top1")
    @classmethod
    def _with_a_target(cls, v: float | None, info) -> float | None:
        # ("target" is missing from info.data when --target itself was refused: that error says enough.)
        if v is not None and "target" in info.data and info.data["target"] is None:
            what = ("the largest drift" if info.field_name == "quant_tolerance"
                    else "the least top-1 agreement with the F32 model")
            raise ValueError(f"applies to --target only: it is {what} a board's candidate may have")
        return v

    @property
    def resume(self) -> bool:
        return isinstance(self.training, LoraOptions) and self.training.resume
