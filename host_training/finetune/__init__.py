"""`build --base HF_MODEL_DIR`'s training (training.LoraTraining): LoRA on a pretrained transformers model.

The base model keeps its own chat template (ChatML is added when it has none), so the
persona speaks the format the model was instruction-tuned in. Steps:

  1. load the base (fp32 on the CPU, bf16 on a GPU that has it), its tokenizer and template;
  2. render every conversation with that template and find the persona's tokens by rendering
     it prefix by prefix (`ChatFormat.ids_and_targets`): works for any Jinja template, with
     or without `{% generation %}` markers; targets are the persona's words and the
     end-of-turn token the template closes its turn with;
  3. train LoRA adapters with trl's SFTTrainer on the pre-tokenized rows (our labels, so trl's
     own masking is not used: it needs `{% generation %}` markers most templates lack);
     presets by model size, checkpoints in WORK/checkpoints (`--resume` continues from the
     last), held-out loss every ~fifth of the run, loss curve kept;
  4. merge the adapter into a fresh fp32 copy of the base (`merge_and_unload`), compare the
     merged model's logits with base+adapter on a few val chunks, save an HF checkpoint.

Where: the presets and options in config.py, the template and the persona's tokens in
chat_format.py, loading, adapting and scoring the model in model.py, the run in train_lora.py,
merging and saving in merging.py.

The stages after training (pipeline.py) convert, quantize, evaluate and bundle it as for
--from-scratch, with the untuned base scored beside it.

Several GPUs: run the same command under `accelerate launch` (config/accelerate_fsdp.yaml,
docs/training.md); the Trainer shards, and only the main process merges and builds.
"""

from __future__ import annotations

from .chat_format import ChatFormat, to_examples
from .config import PRESETS, PROJECTIONS, FinetuneConfig, FinetuneError, pick_preset
from .merging import save_tokenizer
from .model import load_base
from .train_lora import train

__all__ = ["PRESETS", "PROJECTIONS", "ChatFormat", "FinetuneConfig", "FinetuneError", "load_base", "pick_preset",
           "save_tokenizer", "to_examples", "train"]
