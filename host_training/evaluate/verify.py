"""Stage 5's check in every build: the GGUF computes what the checkpoint computes.

Right after conversion, the transformers checkpoint (the from-scratch model, or the merged
LoRA model, loaded in float32) and the converted GGUF in llama.cpp (llama-cpp-python with
logits for every position and an F32 KV cache, as `evaluate.open_for_scoring` scores) read
the same held-out persona tokens: val.jsonl as training rendered it (heldout.Tokens), whole
chunks in file order until MAX_TOKENS positions, so the check takes seconds. Compared:

  top-1 agreement    share of positions where llama.cpp's most likely next token is
                     transformers' (a token transformers puts within the allowed logit
                     difference of its own best counts: a tie is no disagreement)
  logit difference   the largest |llama.cpp - transformers| over every position and token,
                     relative to the logit scale max(1, largest |transformers logit|)
  loss               the mean negative log-likelihood of the persona tokens in each (nats/token)
  tokenizer          every held-out text llama.cpp's tokenizer splits into training's ids

Tolerances (TOLERANCES, by the GGUF's weight type), from measurements on the tiny models
of tests/test_convert_families.py and tests/test_convert_gguf.py and on the demo preset:
an F32 GGUF differs from transformers by ~1e-6 of the logit scale (summation order) and in
loss by < 1e-5 nats/token; an F16 one by ~2e-3 of the scale and ~1e-4 nats/token. The limits
leave a factor of 10 or more above that (deeper models sum more terms), and stay far below
what a wrong conversion does: a Q tensor's rows out of rotary order, a wrong rope base or a
missing norm move the logits by a tenth of the scale or more (docs/training.md, "Conversion
check"). Any text split differently is a failure: the payload would feed the model tokens it
never trained on.

A GGUF whose vocabulary the converter cut to the tokenizer (convert_gguf, vocab_rows.py: a
vocabulary padded past its tokenizer) has fewer logits than the checkpoint: both are compared
on the GGUF's tokens, the rows cut being ones no text reaches.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import structlog

from ..train.heldout import Chunk, Tokens
from ..train.tokenizer import chunks

log = structlog.get_logger(__name__)

MAX_TOKENS = 2048  # held-out positions compared, at most


@dataclass(frozen=True)
class Tolerance:
    top1: float  # least share of positions whose top-1 token agrees
    logit: float  # largest logit difference allowed, as a fraction of the logit scale
    loss: float  # largest difference of the mean persona-token loss, nats/token


TOLERANCES = {"F32": Tolerance(top1=0.99, logit=1e-3, loss=1e-3),
              "F16": Tolerance(top1=0.99, logit=2e-2, loss=1e-2)}
# llama.cpp computes GELU from an F16 lookup table (ggml's gelu), not exactly: a GELU model
# (Gemma's gelu_pytorch_tanh) differs from transformers by ~3e-3 of the logit scale in F32.
# Its logit limit is 1e-2, still under what the smallest wrong conversion does (~2e-2).
GELU_LOGIT = 1e-2


class VerifyError(ValueError):
    """The check cannot be made (a quantized GGUF, no held-out tokens)."""


@dataclass
class Agreement:
    """What the check measured; `problems()` is empty when the GGUF passes."""

    weights: str  # "F32" or "F16": which tolerance applies
    positions: int  # next-token predictions compared
    targets: int  # persona tokens in the loss
    chunks: int
    top1: float
    max_abs_diff: float
    logit_scale: float
    loss_llama_cpp: float
    loss_transformers: float
    texts: int  # held-out texts tokenized by both
    texts_differing: int
    first_text_difference: str  # where the first one differs, in ids (never the text: it is private)
    seconds: float
    gelu: bool = False  # a GELU model: llama.cpp's table-based GELU widens the logit limit (GELU_LOGIT)

    @property
    def tolerance(self) -> Tolerance:
        return tolerance_for(self.weights, self.gelu)

    @property
    def allowed_diff(self) -> float:
        return self.tolerance.logit * self.logit_scale

    def problems(self) -> list[str]:
        tol, out = self.tolerance, []
        if not self.top1 >= tol.top1:
            out.append(f"top-1 agreement {self.top1:.1%} (needs >= {tol.top1:.0%})")
        if not self.max_abs_diff <= self.allowed_diff:
            out.append(f"largest logit difference {self.max_abs_diff:.3g} (logit scale {self.logit_scale:.3g}; "
                       f"allowed {self.allowed_diff:.3g})")
        if not abs(self.loss_llama_cpp - self.loss_transformers) <= tol.loss:
            out.append(f"{self._losses()} (allowed difference {tol.loss:g})")
        if self.texts_differing:
            out.append(f"tokenizer: {self.texts_differing} of {self.texts} held-out texts split differently "
                       f"({self.first_text_difference})")
        return out

    @property
    def ok(self) -> bool:
        return not self.problems()

    def summary(self) -> str:
        """Both models' figures in one line (the log, the report)."""
        return (f"top-1 agreement {self.top1:.2%}, largest logit difference {self.max_abs_diff:.2g} "
                f"(scale {self.logit_scale:.3g}, allowed {self.allowed_diff:.2g}), loss {self.loss_llama_cpp:.5f} "
                f"(llama.cpp) vs {self.loss_transformers:.5f} (transformers) over {self.positions} positions, "
                f"{self.texts - self.texts_differing} of {self.texts} texts tokenized alike")

    def _losses(self) -> str:
        return f"loss {self.loss_llama_cpp:.4f} (llama.cpp) vs {self.loss_transformers:.4f} (transformers) nats/token"

    def message(self) -> str:
        problems = self.problems()
        if not any(p.startswith("loss ") for p in problems):
            problems.append(self._losses())  # both models' figures, always
        return (f"llama.cpp and transformers disagree on {self.positions} held-out positions of the {self.weights} "
                f"GGUF: {'; '.join(problems)}. The GGUF does not compute what the trained checkpoint computes, "
                "so the conversion is wrong; nothing was quantized or bundled")

    def figures(self) -> dict:
        """eval.json's `conversion_check`."""
        d = asdict(self)
        d.update(ok=self.ok, allowed_max_abs_diff=self.allowed_diff, tolerance=asdict(self.tolerance))
        return d


# ----------------------------------------------------------------------------- the check
def weight_type(gguf_path: str | Path) -> str:
    """"F32" or "F16" from the GGUF's matrices; VerifyError for anything quantized."""
    import gguf

    kinds = {t.tensor_type.name for t in gguf.GGUFReader(str(gguf_path)).tensors if len(t.shape) >= 2}
    if kinds == {"F32"}:
        return "F32"
    if kinds <= {"F32", "F16"}:
        return "F16"
    raise VerifyError(f"{gguf_path}: holds {', '.join(sorted(kinds))} matrices; the conversion check takes the "
                      "converter's F32 or F16 output")


def sample(tokens: Tokens, ctx: int, max_tokens: int = MAX_TOKENS) -> list[Chunk]:
    """Held-out chunks in file order, at most `ctx` tokens each, until `max_tokens` positions."""
    out, total = [], 0
    for conv in tokens.conversations:
        for ids, target in conv:
            for piece in chunks(ids, target, ctx):
                if total >= max_tokens:
                    return out
                piece = (piece[0][: max_tokens - total], piece[1][: max_tokens - total])
                if len(piece[0]) > 1:
                    out.append(piece)
                    total += len(piece[0])
    return out


def tolerance_for(weights: str, gelu: bool = False) -> Tolerance:
    tol = TOLERANCES[weights]
    return replace(tol, logit=max(tol.logit, GELU_LOGIT)) if gelu else tol


def uses_gelu(hf_dir: str | Path) -> bool:
    """Whether the checkpoint's MLP activation is a GELU (config.json, or its text_config)."""
    cfg = json.loads((Path(hf_dir) / "config.json").read_text(encoding="utf-8"))
    cfg = {**cfg.get("text_config", {}), **cfg}
    return any("gelu" in str(cfg.get(k) or "") for k in ("hidden_activation", "hidden_act", "activation_function"))


def check(hf_dir: str | Path, gguf_path: str | Path, tokens: Tokens, max_tokens: int = MAX_TOKENS,
          threads: int | None = None, n_ctx: int | None = None) -> Agreement:
    """Compare the checkpoint in `hf_dir` with `gguf_path` on `tokens` (see the module docstring),
    llama.cpp running with the context `n_ctx` (the bundle's; default the GGUF's, at most 2048)."""
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM

    from . import next_token_nll, open_for_scoring

    t0 = time.monotonic()
    weights = weight_type(gguf_path)
    try:
        llm, ctx = open_for_scoring(gguf_path, threads=threads, **({"max_ctx": n_ctx} if n_ctx else {}))
    except ValueError as e:  # llama-cpp-python's "Failed to load model": llama.cpp refused the file
        raise VerifyError(f"llama.cpp cannot load {gguf_path}, which its own converter wrote from {hf_dir} ({e}); "
                          "the converter and this llama.cpp disagree on this checkpoint (llama.cpp's reason: "
                          "load the file with llama_cpp.Llama(..., verbose=True))") from None
    try:
        picked = sample(tokens, ctx, max_tokens)
        if not picked:
            raise VerifyError("no held-out tokens to compare the GGUF with its checkpoint on")
        n_vocab = cut_vocab_size(llm, hf_dir, picked)
        model = AutoModelForCausalLM.from_pretrained(str(hf_dir), dtype=torch.float32).eval()
        gaps = []  # per position: transformers' best logit minus its logit for llama.cpp's top token
        diff, scale, nll_llama, nll_hf, targets = 0.0, 1.0, 0.0, 0.0, 0
        for i, (ids, target) in enumerate(picked):
            with torch.no_grad():
                ref = model(torch.tensor([ids])).logits[0, :, :n_vocab].double().numpy()
            llm.reset()
            llm.eval(ids)
            got = np.asarray(llm.scores[: len(ids)], dtype=np.float64)
            if got.shape != ref.shape:
                raise VerifyError(f"llama.cpp gives {got.shape[1]} logits per position, transformers {ref.shape[1]}: "
                                  "the GGUF's vocabulary is not the checkpoint's")
            diff = max(diff, float(np.abs(got - ref).max()))
            scale = max(scale, float(np.abs(ref).max()))
            gaps.append(ref.max(axis=1) - ref[np.arange(len(ids)), got.argmax(axis=1)])
            m = np.asarray(target[1:], dtype=bool)
            nll_llama += float(next_token_nll(got, ids)[m].sum())
            nll_hf += float(next_token_nll(ref, ids)[m].sum())
            targets += int(m.sum())
            log.debug("verify.chunk", chunk=i + 1, of=len(picked), tokens=len(ids))
        del model
        differing, first = _tokenizer_differences(llm, tokens)
    finally:
        llm.close()
    gelu = uses_gelu(hf_dir)
    allowed = tolerance_for(weights, gelu).logit * scale
    gap = np.concatenate(gaps)
    result = Agreement(
        weights=weights, positions=int(gap.size), targets=targets, chunks=len(picked),
        top1=float((gap <= allowed).mean()), max_abs_diff=diff, logit_scale=scale,
        loss_llama_cpp=nll_llama / max(targets, 1), loss_transformers=nll_hf / max(targets, 1),
        texts=len(tokens.texts), texts_differing=differing, first_text_difference=first,
        seconds=round(time.monotonic() - t0, 2), gelu=gelu)
    log.info("verify.done", ok=result.ok, weights=weights, positions=result.positions, top1=round(result.top1, 4),
             max_abs_diff=diff, logit_scale=round(scale, 3), loss_llama_cpp=round(result.loss_llama_cpp, 5),
             loss_transformers=round(result.loss_transformers, 5), texts_differing=differing,
             seconds=result.seconds)
    return result


def cut_vocab_size(llm, hf_dir: str | Path, picked: list[Chunk]) -> int | None:
    """The GGUF's token count when the converter cut the checkpoint's vocabulary to its tokenizer
    (vocab_rows.py), else None (every logit compared). VerifyError when a held-out id is past it."""
    from ..convert.vocab_rows import config_rows
    from ..preflight import read_tokenizer

    rows, n = config_rows(Path(hf_dir)), int(llm.n_vocab())
    if rows is None or n >= rows:
        return None
    max_id = read_tokenizer(Path(hf_dir)).max_id
    used = max(max(max(ids) for ids, _ in picked), -1 if max_id is None else max_id) + 1
    if n < used:
        raise VerifyError(f"the GGUF lists {n} tokens but the checkpoint's tokenizer and held-out text use {used} "
                          f"ids (of its {rows} rows): the conversion dropped tokens the persona uses")
    log.info("verify.vocab_cut", gguf_tokens=n, checkpoint_rows=rows, why="rows past the tokenizer, cut")
    return n


def _tokenizer_differences(llm, tokens: Tokens) -> tuple[int, str]:
    """(how many of `tokens.texts` llama.cpp splits differently, where the first one differs)."""
    differing, first = 0, ""
    bos = llm.token_bos() if llm._model.add_bos_token() and llm.token_bos() >= 0 else None
    for i, t in enumerate(tokens.texts):
        got = llm.tokenize(t.text.encode("utf-8"), add_bos=False, special=t.special) if t.text else []
        if t.ids[:1] == [bos] and got[:1] != [bos]:  # llama.cpp puts the BOS first on the Pi: training did too
            got = [bos, *got]
        if got != t.ids:
            differing += 1
            if not first:
                at = next((k for k, (a, b) in enumerate(zip(got, t.ids)) if a != b), min(len(got), len(t.ids)))
                first = (f"first: text {i + 1}, token {at}: llama.cpp {got[at:at + 3]} vs training "
                         f"{t.ids[at:at + 3]}, {len(got)} vs {len(t.ids)} tokens")
    return differing, first
