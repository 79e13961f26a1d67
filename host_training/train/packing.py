"""Training rows for LoRA: conversations packed into rows of a length fitted to the corpus.

A persona corpus is many short conversations (the sample's median is 120 tokens, its longest
731). Padded to a fixed 1,024 tokens, most of each row would be padding the CPU still
multiplies through. Instead:

    fit_row_length   the row length: long enough for nearly every conversation whole
                     (ROW_QUANTILE of their lengths, in steps of ROW_STEP), never more than
                     the bundle's context
    pack             conversations (token ids and target flags, each at most a row long) into
                     rows, best fit decreasing; each keeps its own positions (0, 1, 2, ... from
                     its start), which is how transformers tells packed sequences apart and
                     keeps one from attending to another (masking_utils, when no attention
                     mask is given and no cache is used), and its first token is no target
                     (its context would be the sequence before it)
    Collator         a batch of rows padded to the longest: pad ids, labels -100, positions
                     starting again at 0, so padding is a sequence of its own that nothing reads

Pure functions of lists of ints; torch only in the collator.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

ROW_QUANTILE = 0.95  # of conversation lengths (tokens) that fit a row whole
ROW_STEP = 64  # row lengths are multiples of this
MIN_ROW = 128
IGNORE = -100  # a label the loss skips


@dataclass(frozen=True)
class Row:
    input_ids: list[int]
    labels: list[int]  # the token itself where it is a target, else IGNORE
    position_ids: list[int]  # restarting at 0 where each packed conversation starts
    sequences: int  # conversations (or pieces of one) in the row

    def __len__(self) -> int:
        return len(self.input_ids)


def fit_row_length(lengths: Sequence[int], cap: int, quantile: float = ROW_QUANTILE, step: int = ROW_STEP,
                   floor: int = MIN_ROW) -> int:
    """The shortest multiple of `step` that holds `quantile` of the conversations whole, between
    `floor` and `cap` (the context: never a longer row than the bundle runs)."""
    if cap < 1:
        raise ValueError(f"row length cap {cap} must be positive")
    if not lengths:
        return min(cap, floor)
    s = sorted(lengths)
    need = s[min(len(s) - 1, math.ceil(quantile * len(s)) - 1)]
    return max(min(cap, floor), min(cap, step * math.ceil(need / step)))


def pack(examples: Sequence[tuple[list[int], list[bool]]], row_length: int) -> list[Row]:
    """Each (ids, targets) example, at most `row_length` tokens, into rows: best fit decreasing
    (the longest first, each into the fullest row it still fits). Deterministic: equal lengths
    keep their order. ValueError for an example longer than a row (split it first:
    tokenizer.chunks)."""
    order = sorted(range(len(examples)), key=lambda i: -len(examples[i][0]))
    rows: list[list[int]] = []  # indices of the examples in each row
    free: list[int] = []
    for i in order:
        n = len(examples[i][0])
        if n > row_length:
            raise ValueError(f"example {i} has {n} tokens, more than a row of {row_length}")
        best = min((r for r in range(len(rows)) if free[r] >= n), key=lambda r: free[r], default=None)
        if best is None:
            rows.append([])
            free.append(row_length)
            best = len(rows) - 1
        rows[best].append(i)
        free[best] -= n
    out = []
    for members in rows:
        ids, labels, pos = [], [], []
        for i in members:
            e_ids, e_tgt = examples[i]
            ids += e_ids
            # A sequence's first token is never a target: predicting it would take the previous
            # sequence's last token as its context (alone, position 0 has no context to be predicted from).
            labels += [IGNORE] + [t if y else IGNORE for t, y in zip(e_ids[1:], e_tgt[1:], strict=True)]
            pos += range(len(e_ids))
        out.append(Row(ids, labels, pos, len(members)))
    return out


def row_tokens(rows: Sequence[Row]) -> tuple[int, int]:
    """(tokens, target tokens) the rows hold: what a training step costs and what it learns from."""
    return sum(len(r) for r in rows), sum(sum(1 for y in r.labels if y != IGNORE) for r in rows)


class Collator:
    """Rows into a batch, right-padded to the longest (no attention mask: the positions say where
    each sequence starts, padding included)."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, rows: Sequence[dict]) -> dict:
        import torch

        n = max(len(r["input_ids"]) for r in rows)
        ids, labels, pos = [], [], []
        for r in rows:
            k = n - len(r["input_ids"])
            ids.append(list(r["input_ids"]) + [self.pad_id] * k)
            labels.append(list(r["labels"]) + [IGNORE] * k)
            pos.append(list(r["position_ids"]) + list(range(k)))
        return {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels), "position_ids": torch.tensor(pos)}
