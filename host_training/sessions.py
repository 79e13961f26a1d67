"""From messages to training examples: sessions, turns, windows, posts, the train/val split. Pure.

- A session is a run of one chat's messages with no gap longer than `gap_minutes` (default
  30: a slow back-and-forth stays one conversation, the next evening starts a new one). Gaps
  are measured with `total_seconds()`, so two messages a day and a minute apart are never
  "one minute" apart, the bug `timedelta.seconds` gives.
- Consecutive messages by one author become one turn, joined by newlines: people type in bursts.
- A session is an example only if the owner speaks in it; the owner's turns are `assistant`,
  everyone else's `user` with their name. Long sessions are cut into windows of at most
  `max_turns` turns and `max_chars` characters (a single longer turn is kept whole); the other
  people's turns just before a cut move into the next window as its context, and a window
  never ends on someone else's turn (nothing to learn there).
- A post becomes `user: "Write a post: <title>"`, `assistant: <the post>`; a post longer than
  `max_chars` is cut at paragraph breaks, its later parts prompted "Continue the post: <title>".
- The split is by session, so no conversation is half in train and half in val: a session goes
  to val when sha256(seed, session key) falls under `val_fraction`.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from host_training.ingest import Message, iso_utc

DEFAULT_GAP_MINUTES = 30.0
DEFAULT_MAX_TURNS = 16
DEFAULT_MAX_CHARS = 4000  # ~1000 tokens: fits a 2048-token context with the template around it
DEFAULT_DEDUP_MIN_CHARS = 8  # shorter owner messages ("ok", "haha") are conversation, kept
POST_PROMPT = "Write a post: {title}"
POST_CONTINUE_PROMPT = "Continue the post: {title}"
CHARS_PER_TOKEN = 4  # the usual rule of thumb for English text and BPE tokenizers


@dataclass(frozen=True)
class Turn:
    role: str  # "assistant" (the owner) or "user"
    name: str
    content: str


@dataclass(frozen=True)
class Session:
    key: str  # stable across runs on the same exports; only its hash is used, for the split
    messages: tuple[Message, ...]

    @property
    def has_owner(self) -> bool:
        return any(m.is_owner for m in self.messages)


@dataclass(frozen=True)
class Example:
    session: str
    kind: str  # "chat" or "post"
    turns: tuple[Turn, ...]

    def record(self) -> dict:
        """The train.jsonl / val.jsonl line."""
        return {"messages": [{"role": t.role, "name": t.name, "content": t.content} for t in self.turns]}


def approx_tokens(text: str) -> int:
    """Approximate tokens: ceil(characters / 4). The real count depends on the base tokenizer."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


# ---------------------------------------------------------------------------------------------
# Duplicates


def normalise(text: str) -> str:
    return " ".join(text.split()).casefold()


def dedupe_owner(messages: Iterable[Message], min_chars: int = DEFAULT_DEDUP_MIN_CHARS) -> tuple[list[Message], Counter[str]]:
    """Drop repeats of the owner's messages: "duplicate" (same text) and "near_duplicate" (same
    after folding case and whitespace). The first occurrence stays; others' messages all stay."""
    kept: list[Message] = []
    dropped: Counter[str] = Counter()
    exact: set[str] = set()
    near: set[str] = set()
    for m in messages:
        norm = normalise(m.text)
        if not m.is_owner or len(norm) < min_chars:
            kept.append(m)
        elif m.text.strip() in exact:
            dropped["duplicate"] += 1
        elif norm in near:
            dropped["near_duplicate"] += 1
        else:
            exact.add(m.text.strip())
            near.add(norm)
            kept.append(m)
    return kept, dropped


# ---------------------------------------------------------------------------------------------
# Sessions and turns


def split_sessions(messages: Iterable[Message], gap_minutes: float = DEFAULT_GAP_MINUTES) -> list[Session]:
    """Chat messages (not posts) cut into sessions per chat, in time order."""
    gap_s = gap_minutes * 60.0
    by_chat: dict[tuple[str, str], list[Message]] = defaultdict(list)
    for m in messages:
        if m.kind == "message":
            by_chat[(m.source, m.chat_id)].append(m)
    sessions = []
    for (source, chat_id), msgs in by_chat.items():
        msgs.sort(key=lambda m: m.ts)  # stable: equal times keep the export's order
        current = [msgs[0]]
        for prev, m in zip(msgs, msgs[1:]):
            if (m.ts - prev.ts).total_seconds() > gap_s:
                sessions.append(current)
                current = []
            current.append(m)
        sessions.append(current)
    out = [
        Session(key=f"{s[0].source}:{s[0].chat_id}:{iso_utc(s[0].ts)}:{s[0].msg_id}", messages=tuple(s))
        for s in sessions
    ]
    return sorted(out, key=lambda s: (s.messages[0].ts, s.key))


def join_bursts(messages: Sequence[Message], persona_name: str = "") -> list[Turn]:
    """One turn per run of messages by one author, newline-joined."""
    turns: list[Turn] = []
    last_author = None
    for m in messages:
        role = "assistant" if m.is_owner else "user"
        author = m.author_id or m.author
        if turns and author == last_author and turns[-1].role == role:
            turns[-1] = Turn(role, turns[-1].name, turns[-1].content + "\n" + m.text)
        else:
            turns.append(Turn(role, (persona_name or m.author) if m.is_owner else m.author, m.text))
        last_author = author
    return turns


def windows(turns: Sequence[Turn], max_turns: int = DEFAULT_MAX_TURNS, max_chars: int = DEFAULT_MAX_CHARS) -> list[list[Turn]]:
    """Cut turns into windows within the limits, each ending on and holding an owner turn."""

    def too_big(ts: list[Turn], extra: Turn) -> bool:
        return len(ts) >= max_turns or sum(len(t.content) for t in ts) + len(extra.content) > max_chars

    cut: list[list[Turn]] = []
    current: list[Turn] = []
    for t in turns:
        if current and too_big(current, t):
            carry: list[Turn] = []
            while current and current[-1].role == "user":
                carry.insert(0, current.pop())
            if current:
                cut.append(current)
            while carry and too_big(carry, t):
                carry.pop(0)  # the oldest context goes first
            current = carry
        current.append(t)
    if current:
        cut.append(current)
    out = []
    for w in cut:
        while w and w[-1].role == "user":
            w = w[:-1]
        if any(t.role == "assistant" for t in w):
            out.append(w)
    return out


def chat_examples(
    sessions: Iterable[Session],
    persona_name: str = "",
    max_turns: int = DEFAULT_MAX_TURNS,
    max_chars: int = DEFAULT_MAX_CHARS,
) -> list[Example]:
    out = []
    for s in sessions:
        if s.has_owner:
            for w in windows(join_bursts(s.messages, persona_name), max_turns, max_chars):
                out.append(Example(session=s.key, kind="chat", turns=tuple(w)))
    return out


def _paragraph_chunks(text: str, max_chars: int) -> list[str]:
    chunks: list[str] = []
    for para in text.split("\n\n"):
        if chunks and len(chunks[-1]) + 2 + len(para) <= max_chars:
            chunks[-1] += "\n\n" + para
        else:
            chunks.append(para)
    return [c for c in (c.strip() for c in chunks) if c]


def post_examples(posts: Iterable[Message], persona_name: str = "", max_chars: int = DEFAULT_MAX_CHARS) -> list[Example]:
    out = []
    for p in posts:
        for i, chunk in enumerate(_paragraph_chunks(p.text, max_chars)):
            prompt = (POST_PROMPT if i == 0 else POST_CONTINUE_PROMPT).format(title=p.title)
            turns = (Turn("user", "", prompt), Turn("assistant", persona_name or p.author, chunk))
            out.append(Example(session=f"{p.source}:{p.chat_id}:{p.msg_id}", kind="post", turns=turns))
    return out


# ---------------------------------------------------------------------------------------------
# Train / val


def _unit_hash(seed: int, key: str) -> float:
    digest = hashlib.sha256(f"{seed}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_train_val(examples: Sequence[Example], val_fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """Deterministic split by session. With two or more examples and a fraction above 0, val
    and train each get at least one (a single session then lends its last example to val)."""
    keys = sorted({e.session for e in examples}, key=lambda k: (_unit_hash(seed, k), k))
    val_keys = {k for k in keys if _unit_hash(seed, k) < val_fraction}
    if len(examples) >= 2 and val_fraction > 0:
        if len(keys) == 1:
            return list(examples[:-1]), list(examples[-1:])
        if not val_keys:
            val_keys = {keys[0]}
        if len(val_keys) == len(keys):
            val_keys.discard(keys[-1])
    train = [e for e in examples if e.session not in val_keys]
    val = [e for e in examples if e.session in val_keys]
    return train, val
