"""Quality tiers, and the policy that decides how much of training each tier is.

Every input has a tier: 1 writing (posts, journals, notes), 2 long-form (mail), 3 chat. By
default it follows from the format (`DEFAULT_TIERS`); `prepare --tier PATH=N` sets it for the
files at or under PATH. A chat example whose owner turns average `LONG_CHARS` characters or
more is long-form too and goes to tier 2, unless its input's tier was set by hand (then the
tier given is the tier).

The policy: at least `top_share` (default 70 %) of the tokens training learns from come from
tiers 1-2, when both they and chat are present (`policy_weights`). It is met with the `weight`
that `build` already turns into repetitions (`tokenizer.by_weight`): writing and mail are
repeated, at most `MAX_REPEAT` times, and only if that is not enough is chat thinned (a
weight below 1: each chat example kept with that probability). Validation is never weighed.

Pure, but for `resolve_overrides`, which looks at paths.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

TIERS = {1: "writing", 2: "long-form", 3: "chat"}
# By reader format, and by message source for what an earlier run left (mail is the mbox's). A
# format not named here: its posts are writing, its conversations chat.
DEFAULT_TIERS = {"markdown": 1, "mbox": 2, "mail": 2, "telegram": 3, "whatsapp": 3, "discord": 3, "discord_package": 3}
LONG_CHARS = 280  # owner turns this long on average make a chat long-form (about a short mail)
DEFAULT_TOP_SHARE = 0.7
# Up to about four passes over the same text train nearly as well as new text; more and a model
# starts to recite it (Muennighoff et al. 2023, "Scaling Data-Constrained Language Models").
MAX_REPEAT = 4.0
PRECISION = 10_000  # weights are written with four decimals, rounded the way that keeps the share


def default_tier(fmt: str, kind: str) -> int:
    """An input's tier when no --tier names it: by format, else posts 1 and conversations 3."""
    return DEFAULT_TIERS.get(fmt, 1 if kind == "post" else 3)


def long_form(owner_turns: Sequence[str]) -> bool:
    return bool(owner_turns) and sum(len(t) for t in owner_turns) / len(owner_turns) >= LONG_CHARS


# ---------------------------------------------------------------------------------------------
# --tier PATH=N


class TierError(ValueError):
    """A --tier that cannot be applied; the message says which and why."""


@dataclass(frozen=True)
class Override:
    path: str
    tier: int

    def __str__(self) -> str:
        return f"{self.path}={self.tier}"


def parse_override(text: str) -> Override:
    """`PATH=N` (the last `=` splits, so a path may hold one)."""
    path, eq, tier = text.rpartition("=")
    if not eq or not path.strip():
        raise TierError(f"{text!r}: expected PATH=TIER, as in journal/=1 or old-mails.mbox=3")
    if tier.strip() not in ("1", "2", "3"):
        raise TierError(f"{text!r}: the tier must be 1 (writing), 2 (long-form) or 3 (chat)")
    return Override(path.strip(), int(tier))


def resolve_overrides(files: Iterable[Path], exports: Sequence[str], overrides: Sequence[Override]) -> dict[Path, int]:
    """The tier each --tier sets, by input file. PATH is a file or folder as given (relative to
    the current folder) or relative to an EXPORT folder (a folder given as EXPORT, or the one
    holding a file given as EXPORT); it sets the tier of every input at or under it, the most
    specific PATH winning. TierError for a PATH that names no input, or one PATH given two tiers."""
    files = list(files)
    resolved = {f: f.resolve() for f in files}
    folders = [Path(e) if Path(e).is_dir() else Path(e).parent for e in exports]
    chosen: dict[Path, tuple[int, int, Override]] = {}  # file -> (depth of the PATH, tier, which)
    for o in overrides:
        candidates = {c.resolve() for c in [Path(o.path).expanduser(), *(d / o.path for d in folders)]}
        hit = False
        for f, real in resolved.items():
            at = [c for c in candidates if c == real or c in real.parents]
            if not at:
                continue
            hit = True
            depth = max(len(c.parts) for c in at)
            before = chosen.get(f)
            if before and before[0] == depth and before[1] != o.tier:
                raise TierError(f"--tier {before[2]} and --tier {o} set {f} to two tiers; give one")
            if not before or depth >= before[0]:
                chosen[f] = (depth, o.tier, o)
        if not hit:
            listed = "\n  ".join(str(f) for f in files[:20]) + ("\n  ..." if len(files) > 20 else "")
            raise TierError(
                f"--tier {o}: {o.path} names no input. Give a file or folder as listed here, or relative "
                f"to an EXPORT folder; the inputs are:\n  {listed or '(none)'}"
            )
    return {f: tier for f, (_, tier, _) in chosen.items()}


# ---------------------------------------------------------------------------------------------
# Which example is which tier


class TierBook:
    """The tier of every post and chat, noted as messages are read, looked up by example.

    Posts are known by `source:chat_id:msg_id` (an example's `session`), conversations by
    `source:chat_id` (its `chat`). Found in two inputs of different tiers, the better counts."""

    def __init__(self) -> None:
        self._tier: dict[str, tuple[int, bool]] = {}  # key -> (tier, set by --tier)

    def note(self, source: str, chat_id: str, msg_id: str, kind: str, tier: int, fixed: bool) -> None:
        key = f"{source}:{chat_id}:{msg_id}" if kind == "post" else f"{source}:{chat_id}"
        before = self._tier.get(key)
        if before is None or tier < before[0] or (tier == before[0] and fixed):
            self._tier[key] = (tier, fixed)

    def of(self, kind: str, session: str, chat: str, owner_turns: Sequence[str]) -> int:
        tier, fixed = self._tier.get(session if kind == "post" else chat, (default_tier("", kind), False))
        if kind == "chat" and tier == 3 and not fixed and long_form(owner_turns):
            return 2
        return tier


# ---------------------------------------------------------------------------------------------
# The policy


def policy_weights(tokens: Mapping[int, float], top_share: float = DEFAULT_TOP_SHARE,
                   max_repeat: float = MAX_REPEAT) -> dict[int, float]:
    """Each tier's weight so that tiers 1-2 make at least `top_share` of the tokens trained on,
    from the tokens each tier holds. Tiers 1-2 are repeated (alike, at most `max_repeat`
    times), chat thinned only beyond that; all 1 when one side is missing or the share is met.
    Rounded to four decimals, up for tiers 1-2 and down for chat, so the share is never less."""
    top = tokens.get(1, 0) + tokens.get(2, 0)
    chat = tokens.get(3, 0)
    if not top or not chat or top >= top_share * (top + chat):
        return {1: 1.0, 2: 1.0, 3: 1.0}
    need = top_share * chat / ((1 - top_share) * top)  # repetitions of tiers 1-2 that meet the share alone
    up = min(need, max_repeat)
    down = 1.0 if need <= max_repeat else up * top * (1 - top_share) / (top_share * chat)
    up = math.ceil(up * PRECISION - 1e-9) / PRECISION
    down = max(1, math.floor(down * PRECISION + 1e-9)) / PRECISION
    return {1: up, 2: up, 3: down}


def top_share(tokens: Mapping[int, float]) -> float | None:
    """The share of tiers 1-2 in `tokens` (tier -> tokens), or None when there are none."""
    total = sum(tokens.values())
    return (tokens.get(1, 0) + tokens.get(2, 0)) / total if total else None
