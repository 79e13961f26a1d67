"""Merging the trained adapter into the base, checking the merge on logits, and saving the
checkpoint with a tokenizer llama.cpp's converter reads."""

from __future__ import annotations

import json
from pathlib import Path

import structlog

from .config import MERGE_TOLERANCE, FinetuneError
from .model import load_base

log = structlog.get_logger(__name__)


def merge_adapter(base_dir, adapter_dir, out_dir, dtype_name: str, check_examples, template_mode="base"):
    """Merge the adapter into a fresh copy of the base in `dtype_name`, save it with the tokenizer,
    and return (max |logit difference| against base+adapter, allowed tolerance)."""
    import torch
    from peft import PeftModel

    dtype = getattr(torch, dtype_name)
    model, tok, _, _ = load_base(Path(base_dir), dtype, template_mode)
    model = PeftModel.from_pretrained(model, str(adapter_dir))
    model.eval()
    with torch.no_grad():
        before = [model(input_ids=torch.tensor([ids])).logits.float() for ids, _ in check_examples]
        merged = model.merge_and_unload()
        after = [merged(input_ids=torch.tensor([ids])).logits.float() for ids, _ in check_examples]
    diff = max(float((a - b).abs().max()) for a, b in zip(before, after, strict=True))
    scale = max(1.0, max(float(b.abs().max()) for b in before))
    tol = MERGE_TOLERANCE[dtype_name] * scale
    log.info("finetune.merge_check", max_abs_diff=diff, tolerance=tol, chunks=len(check_examples))
    if not diff <= tol:
        raise FinetuneError(
            f"merged model's logits differ from base+adapter by {diff:.3g} (allowed {tol:.3g}) on "
            f"{len(check_examples)} val chunks; the merge is wrong or --merge-dtype {dtype_name} too coarse")
    merged.save_pretrained(str(out_dir), safe_serialization=True)
    save_tokenizer(tok, Path(base_dir), Path(out_dir))
    return diff, tol


# Tokenizer files transformers 5 does not write back from a tokenizers-backed tokenizer. The
# SentencePiece model is what llama.cpp's converter reads for SentencePiece families (Gemma,
# Phi-3, Llama 2): without it, it takes the byte-level BPE path, which cannot describe them.
TOKENIZER_FILES_KEPT = ("tokenizer.model",)


def save_tokenizer(tok, base_dir: Path, out_dir: Path) -> None:
    """`tok` into `out_dir` as llama.cpp's converter reads a checkpoint. transformers 5 writes a
    leaner tokenizer_config.json than the one the converter was written against; put back:
      * tokenizer_class as the base declared it (the converter picks Phi-4-mini's BPE
        vocabulary over a SentencePiece one by it being GPT2Tokenizer; transformers 5 saves
        the class it instantiated, TokenizersBackend);
      * added_tokens_decoder, every added token with its flags (for SentencePiece families
        the converter types added tokens from it: without it Gemma's <start_of_turn> is plain
        text to llama.cpp, and ChatML tokens added to a SentencePiece base are missing);
      * add_bos_token / add_eos_token as the tokenizer behaves (without them llama.cpp
        guesses from the pre-tokenizer's name: a Llama 3 split gets a BOS whether or not
        the tokenizer adds one);
    and the base's SentencePiece model beside it (TOKENIZER_FILES_KEPT)."""
    import shutil

    tok.save_pretrained(str(out_dir))
    for name in TOKENIZER_FILES_KEPT:
        if (base_dir / name).is_file() and not (out_dir / name).exists():
            shutil.copyfile(base_dir / name, out_dir / name)
    path = out_dir / "tokenizer_config.json"
    cfg = json.loads(path.read_text(encoding="utf-8"))
    base_cfg = base_dir / "tokenizer_config.json"
    declared = json.loads(base_cfg.read_text(encoding="utf-8")).get("tokenizer_class") if base_cfg.is_file() else None
    if declared:
        cfg["tokenizer_class"] = declared
    ids = tok("x")["input_ids"]
    cfg["add_bos_token"] = tok.bos_token_id is not None and ids[:1] == [tok.bos_token_id]
    cfg["add_eos_token"] = tok.eos_token_id is not None and len(ids) > 1 and ids[-1:] == [tok.eos_token_id]
    cfg.setdefault("added_tokens_decoder", {
        str(i): {"content": t.content, "lstrip": t.lstrip, "normalized": t.normalized, "rstrip": t.rstrip,
                 "single_word": t.single_word, "special": t.special}
        for i, t in sorted(tok.added_tokens_decoder.items())})
    path.write_text(json.dumps(cfg, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
