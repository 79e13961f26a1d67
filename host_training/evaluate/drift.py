"""How far a quantization moves the model, with error bars: what `--target` chooses by.

A quantized GGUF and the F32 (or F16) GGUF it was made from read the same held-out persona
tokens in llama.cpp (val.jsonl as training rendered it, heldout.Tokens). The drift is

    NLL increase = mean over the persona tokens of (NLL under the quantized model - NLL under F32)

in nats per token: paired token by token, so what both models find hard cancels out, and
exp(increase) - 1 is the relative perplexity cost. Its uncertainty is a bootstrap over
conversations (the tokens of one conversation are not independent of each other): the
held-out conversations are resampled with replacement RESAMPLES times with a fixed seed,
the ratio sum(increase) / sum(tokens) recomputed each time, and its 2.5th and 97.5th
percentiles are the 95 % interval. Same data and seed, same interval.

Beside it, the top-1 agreement: the share of persona tokens at which the quantized model's top
token is F32's (llama-perplexity's "Same top p"), with its own bootstrap interval over the same
resampled conversations. The NLL drift alone can miss a type that changes the model's choices:
on a persona whose losses are high anyway, a 2-bit type can keep the mean NLL within the
tolerance while picking another top token at most positions; a sampled musing then reads as a
different model. So the board's pick also asks the lower end of the agreement's interval to
reach a floor (DEFAULT_MIN_TOP1).

Why the NLL difference rather than the KL divergence (llama-perplexity's --kl-divergence):
the KL needs the reference's whole distribution at every token (n_vocab floats: 600 MB for a
151k-token vocabulary over 1000 tokens) kept or recomputed for every candidate; the NLL
difference needs one number per token, and it is the perplexity the report shows.

Fewer than MIN_CONVERSATIONS held-out conversations make the interval too narrow to trust
(a bootstrap cannot see variation it has no sample of); the build then warns.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import structlog

from ..train.heldout import Tokens
from ..train.tokenizer import chunks

log = structlog.get_logger(__name__)

RESAMPLES = 1000
SEED = 0
LEVEL = 0.95
MIN_CONVERSATIONS = 10
# --target takes a type only when the upper end of its 95 % interval is at most this many
# nats/token (--quant-tolerance). 0.02 is a 2 % perplexity increase: about what llama.cpp's
# recommended default, Q4_K_M, costs the 7-8B models of its tables (+1 to +3 %), while Q3_K_M
# (+4 to +10 %) and Q2_K (+14 % and more) cost more; so the default asks "no worse than the
# usual default quantization is known to be", proven on this persona's own held-out text.
DEFAULT_TOLERANCE = 0.02
# --target also asks the lower end of the top-1 agreement's 95 % interval to be at least this
# (--quant-min-top1). llama.cpp's perplexity tables ("Same top p" against FP16): Q6_K 97.5 / 96.0 %,
# Q4_K_M 94.7 / 91.9 %, Q2_K 85.6 / 71.1 % (LLaMA 2 7B / LLaMA 3 8B). 0.90 admits the usual
# default, Q4_K_M, on both and refuses Q2_K on both.
DEFAULT_MIN_TOP1 = 0.90


@dataclass(frozen=True)
class TokenScores:
    """One GGUF on held-out tokens: per conversation, each persona token's NLL and the model's top token there."""

    model: str
    nll: list  # numpy float64 arrays, one per conversation with persona tokens
    top: list  # numpy int arrays, the argmax at the position that predicts each persona token

    @property
    def tokens(self) -> int:
        return int(sum(a.size for a in self.nll))

    @property
    def loss(self) -> float:
        return float(sum(a.sum() for a in self.nll)) / max(self.tokens, 1)


@dataclass(frozen=True)
class Drift:
    nll_increase: float  # nats/token, quantized minus reference
    low: float  # the 95 % interval of nll_increase
    high: float
    top1_agreement: float  # share of persona tokens whose top token is the reference's
    top1_low: float  # the 95 % interval of top1_agreement
    top1_high: float
    val_loss: float  # the quantized model's mean NLL on these tokens
    reference_val_loss: float
    tokens: int
    conversations: int
    resamples: int
    seed: int
    level: float = LEVEL

    def figures(self) -> dict:
        import math

        d = asdict(self)
        d.update(val_perplexity=math.exp(self.val_loss), reference_val_perplexity=math.exp(self.reference_val_loss))
        return d

    def describe(self) -> str:
        return (f"NLL increase {self.nll_increase:+.4f} nats/token ({self.level:.0%} interval {self.low:+.4f} to "
                f"{self.high:+.4f}, {self.conversations} conversations, {self.tokens} tokens), "
                f"top-1 agreement {self.top1_agreement:.1%} ({self.top1_low:.1%} to {self.top1_high:.1%})")


def token_scores(gguf_path: str | Path, tokens: Tokens, threads: int | None = None) -> TokenScores:
    """Score every held-out conversation with persona tokens through llama.cpp (chunks cut to
    the scoring context, each from an empty cache, as evaluate.score_gguf does)."""
    import numpy as np

    from . import next_token_nll, open_for_scoring

    t0 = time.monotonic()
    llm, ctx = open_for_scoring(gguf_path, threads=threads)
    nll, top = [], []
    try:
        for conv in tokens.conversations:
            n, t = [], []
            for ids0, target0 in conv:
                for ids, target in chunks(ids0, target0, ctx):
                    llm.reset()
                    llm.eval(ids)
                    logits = np.asarray(llm.scores[: len(ids)], dtype=np.float64)
                    m = np.asarray(target[1:], dtype=bool)
                    n.append(next_token_nll(logits, ids)[m])
                    t.append(logits[: len(ids) - 1].argmax(axis=1)[m])
            if n and sum(a.size for a in n):
                nll.append(np.concatenate(n))
                top.append(np.concatenate(t))
    finally:
        llm.close()
    scores = TokenScores(Path(gguf_path).name, nll, top)
    log.debug("drift.scored", model=scores.model, tokens=scores.tokens, conversations=len(nll),
              seconds=round(time.monotonic() - t0, 2))
    return scores


def bootstrap_interval(sums, counts, resamples: int = RESAMPLES, seed: int = SEED,
                       level: float = LEVEL) -> tuple[float, float]:
    """Percentile interval of sum(sums) / sum(counts) under resampling the groups (conversations)
    with replacement, `resamples` times from numpy's PCG64 seeded with `seed`."""
    import numpy as np

    sums, counts = np.asarray(sums, dtype=np.float64), np.asarray(counts, dtype=np.float64)
    if sums.size == 0 or sums.size != counts.size:
        raise ValueError(f"bootstrap needs one sum and one count per group, got {sums.size} and {counts.size}")
    if resamples < 1 or not 0 < level < 1:
        raise ValueError(f"bootstrap needs resamples >= 1 and 0 < level < 1, got {resamples} and {level}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, sums.size, size=(resamples, sums.size))
    ratio = sums[idx].sum(axis=1) / np.maximum(counts[idx].sum(axis=1), 1.0)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(ratio, [tail, 100 - tail])
    return float(low), float(high)


def compare(reference: TokenScores, quantized: TokenScores, resamples: int = RESAMPLES, seed: int = SEED) -> Drift:
    """The drift of `quantized` from `reference`, scored on the same tokens."""
    import numpy as np

    if [a.size for a in reference.nll] != [a.size for a in quantized.nll]:
        raise ValueError(f"{quantized.model} and {reference.model} were not scored on the same tokens")
    diffs = [q - r for q, r in zip(quantized.nll, reference.nll)]
    sums = np.array([d.sum() for d in diffs])
    counts = np.array([d.size for d in diffs], dtype=np.float64)
    low, high = bootstrap_interval(sums, counts, resamples, seed)
    agree = np.array([int((q == r).sum()) for q, r in zip(quantized.top, reference.top)], dtype=np.float64)
    top1_low, top1_high = bootstrap_interval(agree, counts, resamples, seed)  # the same resampled conversations
    n = int(counts.sum())
    return Drift(nll_increase=float(sums.sum() / n), low=low, high=high, top1_agreement=float(agree.sum() / n),
                 top1_low=top1_low, top1_high=top1_high,
                 val_loss=quantized.loss, reference_val_loss=reference.loss, tokens=n, conversations=len(diffs),
                 resamples=resamples, seed=seed)


def measure(reference: TokenScores, gguf_path: str | Path, tokens: Tokens, threads: int | None = None) -> Drift:
    """Score `gguf_path` on `tokens` and compare it with `reference` (token_scores of its F32 source)."""
    drift = compare(reference, token_scores(gguf_path, tokens, threads=threads))
    if drift.conversations < MIN_CONVERSATIONS:
        log.warning("drift.few_conversations", conversations=drift.conversations, fewer_than=MIN_CONVERSATIONS,
                    why="the bootstrap interval understates the uncertainty")
    log.info("drift.measured", model=Path(gguf_path).name, nll_increase=round(drift.nll_increase, 5),
             low=round(drift.low, 5), high=round(drift.high, 5), top1_agreement=round(drift.top1_agreement, 4),
             top1_low=round(drift.top1_low, 4))
    return drift
