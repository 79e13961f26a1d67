"""Tiers in `prepare`'s outputs: the tokens each tier holds, what the policy (or --weights) made
of them, for report.json and the printed line (the tiers and the policy: tiers.py)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable

from host_training.prepare import sessions as S
from host_training.prepare import tiers as T


def _learnt_by_tier(examples: Iterable[S.Example], tier_of: Callable[[S.Example], int]) -> Counter[int]:
    """Tokens training learns from (the owner's turns; every turn with --train-all-speakers), by tier."""
    learnt: Counter[int] = Counter()
    for e in examples:
        learnt[tier_of(e)] += sum(S.approx_tokens(t) for t in e.learnt)
    return learnt


def tier_report(train: Counter[int], val: Counter[int], weights: dict[int, float], share: float | None) -> dict:
    """report.json `tiers`: per tier, the learnt tokens before (as read) and after weighting."""
    after = {t: train[t] * weights[t] for t in T.TIERS}
    if share is None:
        policy = "weights set by hand (--weights): " + ", ".join(f"tier {t} x{weights[t]:g}" for t in T.TIERS)
    elif not share:
        policy = "none (--top-tier-share 0): every example weighs 1"
    else:
        policy = (f"at least {share:.0%} of the learnt training tokens from tiers 1-2 (writing, long-form) when there "
                  f"is chat too: tiers 1-2 repeated up to {T.MAX_REPEAT:g} times, then chat thinned; validation "
                  "never weighted")
    before_share, after_share = T.top_share(train), T.top_share(after)
    return {
        "policy": policy,
        "top_tier_share": share,
        "tokens": "learnt tokens: the owner's turns (every turn with --train-all-speakers), characters/4; "
                  "after = before x weight, what training sees per epoch on average",
        "train": {
            str(t): {"name": name, "tokens_before": train[t], "weight": weights[t], "tokens_after": round(after[t])}
            for t, name in T.TIERS.items()
        },
        "val": {str(t): {"name": name, "tokens": val[t]} for t, name in T.TIERS.items()},
        "top_share_before": None if before_share is None else round(before_share, 4),
        "top_share_after": None if after_share is None else round(after_share, 4),
    }  # fmt: skip


def say_tiers(tiers: dict) -> str:
    """The printed line: tokens per tier before and after, and the share of tiers 1-2."""
    parts = [f"{t} {v['name']} ~{v['tokens_before']}" + (f" -> ~{v['tokens_after']} (x{v['weight']:g})"
                                                           if v["weight"] != 1 else "")
             for t, v in tiers["train"].items() if v["tokens_before"]]
    if tiers["top_share_before"] == 0 and tiers["top_tier_share"] != 0:
        # Chats only: the policy has nothing to weigh, and a 0 % beside "at least 70 %" read as a failure.
        names = f"1 ({T.TIERS[1]}) and 2 ({T.TIERS[2]})"  # the tiers top_share counts
        return (f"training tokens by tier: {', '.join(parts) or 'none'} (chats only, as expected for chat exports: "
                f"tiers {names} are the owner's own posts and mails, which weigh more when there are some)")
    share = ""
    if tiers["top_share_before"] is not None:
        share = f"; tiers 1-2 {tiers['top_share_before']:.0%}"
        if tiers["top_share_after"] != tiers["top_share_before"]:
            share += f" -> {tiers['top_share_after']:.0%}"
    rule = " (--weights)" if tiers["top_tier_share"] is None else f" (policy: at least {tiers['top_tier_share']:.0%})"
    line = f"training tokens by tier: {', '.join(parts) or 'none'}{share}{rule}"
    chat = tiers["train"]["3"]
    if tiers["top_tier_share"] and chat["weight"] < 1:
        line += (f"\nnote: to meet the policy only about {chat['weight']:.0%} of the chat is trained on, as tiers "
                 "1-2 hold little text; a lower --top-tier-share keeps more of it")
    return line
