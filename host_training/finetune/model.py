"""The base model: loading it on the device, its LoRA adapters, and scoring it on held-out chunks."""

from __future__ import annotations

from pathlib import Path

from .chat_format import ensure_template
from .config import EVAL_BATCH, PROJECTIONS, FinetuneError


# ----------------------------------------------------------------------------- scoring
def persona_nll(model, examples, pad_id: int, targets_only: bool = False) -> tuple[float, int]:
    """Mean NLL (nats) over the target tokens of `examples`, each chunk scored on its own, in the
    model's own precision (no autocast)."""
    import torch
    import torch.nn.functional as F

    from ..train.lora_step import target_logits
    from ..train.packing import Collator, pack

    device = next(model.parameters()).device
    collate = Collator(pad_id)
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    by_length = sorted(examples, key=lambda e: len(e[0]))  # batches of like lengths: little padding
    with torch.no_grad():
        for i in range(0, len(by_length), EVAL_BATCH):
            rows = [pack([e], len(e[0]))[0] for e in by_length[i : i + EVAL_BATCH]]
            b = {k: v.to(device) for k, v in collate([vars(r) for r in rows]).items()}
            logits, targets = target_logits(model, b["input_ids"], b["position_ids"], b["labels"], targets_only)
            total += float(F.cross_entropy(logits.float(), targets, reduction="sum"))
            count += int(targets.numel())
    model.train(was_training)
    return (total / count if count else float("nan")), count


def device_and_dtype():
    import torch

    if torch.cuda.is_available():
        return "cuda", (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    return "cpu", torch.float32


def load_base(base_dir: Path, dtype, template_mode: str = "base"):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (base_dir / "config.json").is_file():
        raise FinetuneError(f"{base_dir}: no config.json; expected a transformers model directory (save_pretrained)")
    tok = AutoTokenizer.from_pretrained(str(base_dir))
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=dtype)
    source, added = ensure_template(tok, model, template_mode)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return model, tok, source, added


def lora_config(model, p: dict, added_ids: list[int]):
    from peft import LoraConfig, TaskType

    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    targets = [t for t in PROJECTIONS if t in names] or "all-linear"
    extra = {}
    if added_ids:  # new ChatML tokens: train their embedding rows (and output rows when untied)
        emb = model.get_input_embeddings()
        emb_name = next(n for n, m in model.named_modules() if m is emb).rsplit(".", 1)[-1]
        tokens = {emb_name: added_ids}
        out = model.get_output_embeddings()
        if out is not None and not model.config.get_text_config().tie_word_embeddings:
            tokens[next(n for n, m in model.named_modules() if m is out).rsplit(".", 1)[-1]] = added_ids
        extra["trainable_token_indices"] = tokens
    n_layers = model.config.get_text_config().num_hidden_layers
    top = p.get("layers")
    if top and top < n_layers:  # the top layers only: the backward pass stops below the lowest adapted one
        extra["layers_to_transform"] = list(range(n_layers - top, n_layers))
    return LoraConfig(task_type=TaskType.CAUSAL_LM, r=p["rank"], lora_alpha=p["alpha"], lora_dropout=p["dropout"],
                      target_modules=targets, bias="none", **extra)
