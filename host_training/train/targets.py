"""Which of the owner's turns training learns from (issue 49, item 2): a turn that says nothing
beyond the owner's commonest words ("ja digga", "safe", "haha") stays in its conversation as
context, but only its first few copies are targets.

A German owner's persona trained on every one of his turns answered twenty of his friends' messages
"ja", "haha", "ich hab keine": 65 % distinct, 0.4 words beyond his fillers a reply where his own
held-out turns carry 6.4. His catchphrases are his (prepare keeps them as often as he wrote them:
docs/training.md, "Catchphrases keep their frequency"), but as a twelfth of the targets they teach
a small model that a short filler is always a safe answer. Capped at `cap` targets for each
filler-only text, the persona still learns them, once or twice, and the rest of the turns carry
the loss. The turns stay in the conversations: what the friend said next still follows them.

    cap_filler_targets(conversations, cap) -> (conversations, counts)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from stratoecho.substance import filler_only, fillers, fold

from .tokenizer import Conversation


def cap_filler_targets(conversations: Sequence[Conversation], cap: int) -> tuple[list[Conversation], dict]:
    """`conversations` with the owner's filler-only turns beyond the first `cap` of each text
    marked `"target": False` (copies: the caller's are left as they are), and the counts:
    {"filler_only": turns, "kept": as targets, "context_only": not}. The fillers are the owner's
    commonest words over the distinct turns (stratoecho.substance.fillers)."""
    if cap < 0:
        raise ValueError(f"the filler-only targets kept of each text must be 0 or more, not {cap}")
    own = list(dict.fromkeys(m["content"] for c in conversations for m in c if m["role"] == "assistant"))
    known = frozenset(fillers(own))
    seen: Counter = Counter()
    out, kept, dropped = [], 0, 0
    for conv in conversations:
        new = []
        for m in conv:
            if m["role"] == "assistant" and m.get("target", True) and filler_only(m["content"], known):
                key = fold(m["content"])
                seen[key] += 1
                if seen[key] > cap:
                    m = {**m, "target": False}
                    dropped += 1
                else:
                    kept += 1
            new.append(m)
        out.append(new)
    return out, {"filler_only": kept + dropped, "kept": kept, "context_only": dropped}
