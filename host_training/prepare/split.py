"""Steps 7 and 8: the train/val split by session, then the training examples weighted by tier
and written to train.jsonl and val.jsonl."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime

from host_training.ingest.interview import SOURCE as INTERVIEW
from host_training.prepare import sessions as S
from host_training.prepare import tiers as T
from host_training.prepare.spill import Spill

from .files import Staged
from .tier_figures import _learnt_by_tier

INTERVIEW_CHAT = f"{INTERVIEW}:{INTERVIEW}"  # an example's chat: source and chat id


class Split:
    """Step 7, split by session: by time (val after train), or whole chats. The owner's interview
    answers were given to be learnt (ingest/interview.py): always train, split over the rest."""

    def __init__(self, args: argparse.Namespace, spill: Spill) -> None:
        self.spill = spill
        self.by_chat = args.val_split == "chat"
        self.spans = spill.session_spans()
        sizes = spill.chat_sizes()
        n_examples = spill.example_count()
        self.learn_always = INTERVIEW_CHAT in sizes and len(sizes) > 1
        if self.learn_always:
            self.spans = {k: v for k, v in self.spans.items() if not k.startswith(INTERVIEW_CHAT + ":")}
            n_examples -= sizes.pop(INTERVIEW_CHAT)
        self.cut = self.lend_last = None
        self.val_chats: set[str] = set()
        if self.by_chat:
            self.val_chats = S.val_chats(sizes, args.val_fraction, args.seed)
        elif len(self.spans) == 1 and n_examples >= 2 and args.val_fraction > 0:
            self.lend_last = n_examples - 1  # one long conversation: its last window is the latest there is
        else:
            self.cut = S.time_cut(self.spans, args.val_fraction)

    def side(self, index: int, e: S.Example) -> str:
        if self.by_chat:
            return "val" if e.chat in self.val_chats else "train"
        if self.lend_last is not None:
            return "val" if index == self.lend_last else "train"
        if self.cut is None:
            return "train"
        start, end = self.spans[e.session]
        return "val" if start >= self.cut else "train" if end < self.cut else "left_out"

    def sides(self) -> Iterator[tuple[S.Example, str, bool]]:
        """Every example with where it goes, and whether it is an interview answer kept for training."""
        index = 0  # among the examples the split decides
        for e in self.spill.examples():
            always = self.learn_always and e.chat == INTERVIEW_CHAT
            yield e, "train" if always else self.side(index, e), always
            index += not always


@dataclass
class Written:
    """What step 8 wrote, for report.json and the summary."""

    learnt: Counter[int]  # learnt training tokens per tier, before weighting
    weights: dict[int, float]  # per tier
    n: Counter[str] = field(default_factory=Counter)  # examples per side (train, val, left_out) and kind
    tokens: Counter[str] = field(default_factory=Counter)
    tiers: Counter[str] = field(default_factory=Counter)  # examples per tier
    val_learnt: Counter[int] = field(default_factory=Counter)
    train_until: datetime | None = None  # the time cut's figures
    val_from: datetime | None = None


def write_examples(args: argparse.Namespace, split: Split, book: T.TierBook, staged: Staged) -> Written:
    """Step 8: weigh the training examples by tier (a first pass counts what each tier holds),
    write train/val."""

    def tier_of(e: S.Example) -> int:
        return book.of(e.kind, e.session, e.chat, [t.content for t in e.turns if t.role == "assistant"])

    learnt = _learnt_by_tier((e for e, where, _ in split.sides() if where == "train"), tier_of)
    got = Written(learnt, args.weights or T.policy_weights(learnt, args.top_tier_share))
    out = {"train": staged.open("train.jsonl"), "val": staged.open("val.jsonl")}
    n, tokens = got.n, got.tokens
    for e, where, always in split.sides():
        n[where] += 1
        n[e.kind] += 1
        tier = tier_of(e)
        got.tiers[str(tier)] += 1
        if where == "left_out":
            continue
        if where == "train":
            e = replace(e, weight=got.weights[tier])
        else:  # validation measures the data as it is: never weighted
            got.val_learnt[tier] += sum(S.approx_tokens(t) for t in e.learnt)
        out[where].write(json.dumps(e.record(), ensure_ascii=False) + "\n")
        tokens[where] += sum(S.approx_tokens(t.content) for t in e.turns)
        tokens[where + "_assistant"] += sum(S.approx_tokens(t.content) for t in e.turns if t.role == "assistant")
        if where == "val":
            got.val_from = e.start if got.val_from is None else min(got.val_from, e.start)
        elif not always:  # the time cut's figures: the interview's answers are outside it
            got.train_until = e.end if got.train_until is None else max(got.train_until, e.end)
    return got
