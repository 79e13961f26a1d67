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
- Every example has a quality tier and a weight (`tiers.py`: writing 1, long-form 2, chat 3,
  and the policy that weighs them); the trainer sees an example about `weight` times per epoch.
- Runs of the owner's one-word acknowledgements ("ok", "lol", "👍") are capped (`AckRuns`):
  a persona trained on every nod learns to answer everything with "ok".
- The split is by session, so no conversation is half in train and half in val, and by time:
  every validation session starts after every training session ended (`time_cut`), so
  the held-out figure measures the persona on what it has not seen yet, not on the other half
  of yesterday's chat. Sessions that straddle the cut are left out and counted. Optionally
  whole chats are held out instead (`val_chats`).
"""

from __future__ import annotations

import bisect
import hashlib
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from host_training.ingest import Message, iso_utc

DEFAULT_GAP_MINUTES = 30.0
DEFAULT_MAX_TURNS = 16
DEFAULT_MAX_CHARS = 4000  # ~1000 tokens: fits a 2048-token context with the template around it
# Shorter repeats of the owner's are how he talks and keep their real frequency: "ok", "haha", and a
# catchphrase ("ja digga", "bin dabei", "see you there") that is in one turn of seven. A repeat this
# long is a paste (a greeting sent to a list, a link, a packing list), kept once.
DEFAULT_DEDUP_MIN_CHARS = 40
POST_PROMPT = "Write a post: {title}"
POST_CONTINUE_PROMPT = "Continue the post: {title}"
# Writing that is not a post says what it is: the persona learns the register of each.
PROMPTS = {"mail": ("Write an e-mail: {title}", "Continue the e-mail: {title}"),
           "interview": ("{title}", "Go on with your answer: {title}")}  # the interview's question itself
CHARS_PER_TOKEN = 4  # the usual rule of thumb for English text and BPE tokenizers
# One or two acknowledgements in a row are how people talk and stay; from the third on, nodding
# along to a story, they add nothing and tilt the persona towards answering everything with "ok".
DEFAULT_MAX_ACK_RUN = 2
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


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
    start: datetime = _EPOCH  # the session's first and last message: what the time split uses
    end: datetime = _EPOCH
    chat: str = ""  # source:chat_id, for holding out whole chats
    weight: float = 1.0
    train_all: bool = False  # every speaker's turns are training targets, not only the owner's

    @property
    def learnt(self) -> list[str]:
        """The turns training learns from: the owner's, or every one with `train_all`."""
        return [t.content for t in self.turns if self.train_all or t.role == "assistant"]

    def record(self) -> dict:
        """The train.jsonl / val.jsonl line: the turns, then how much it counts and whom to learn."""
        out: dict = {"messages": [{"role": t.role, "name": t.name, "content": t.content} for t in self.turns]}
        if self.weight != 1.0:
            out["weight"] = self.weight
        if self.train_all:
            out["train"] = "all"
        return out


def approx_tokens(text: str) -> int:
    """Approximate tokens: ceil(characters / 4). The real count depends on the base tokenizer."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


# ---------------------------------------------------------------------------------------------
# Duplicates


def normalise(text: str) -> str:
    return " ".join(text.split()).casefold()


def repeat_reason(m: Message, first_time, min_chars: int = DEFAULT_DEDUP_MIN_CHARS) -> str | None:
    """Why the owner's message `m` is a repeat: "duplicate" (same text) or "near_duplicate"
    (the same after folding case and whitespace), or None to keep it. `first_time(kind, text)`
    remembers what was seen and says whether this is new: a set here, a table in prepare's
    scratch store (spill.py) for exports too big for memory. Others' messages, and short ones
    ("ok", "haha", a catchphrase: under `min_chars`), are never repeats."""
    norm = normalise(m.text)
    if not m.is_owner or len(norm) < min_chars:
        return None
    if not first_time("exact", m.text.strip()):
        return "duplicate"
    if not first_time("near", norm):
        return "near_duplicate"
    return None


def dedupe_owner(messages: Iterable[Message], min_chars: int = DEFAULT_DEDUP_MIN_CHARS) -> tuple[list[Message], Counter[str]]:
    """`repeat_reason` over a list, in memory: the first occurrence stays."""
    seen: set[tuple[str, str]] = set()

    def first_time(kind: str, text: str) -> bool:
        new = (kind, text) not in seen
        seen.add((kind, text))
        return new

    kept: list[Message] = []
    dropped: Counter[str] = Counter()
    for m in messages:
        reason = repeat_reason(m, first_time, min_chars)
        if reason:
            dropped[reason] += 1
        else:
            kept.append(m)
    return kept, dropped


# ---------------------------------------------------------------------------------------------
# Acknowledgements

# One word that only says "heard you", in the languages of our users, with its stretched forms
# ("okkk", "hahaha", "yesss"); emoji alone count too. "no" and "maybe" answer, they stay.
_ACK = re.compile(
    r"(?:o+k+(?:a+y+)?|ok(?:e+y*|i+)|k+|y+e+[sp]+|y+u+p+|y+e+a+h*|y+a+|ja+|jo+|jep|yo|oui+|ouais|si|sí|da|sure|kk+"
    r"|l+o+l+(?:o+l+)*|lmf?ao+|rofl|(?:h+a+)+h*|(?:h+e+)+h*|(?:j+a+){2,}|x+d+|thx|thanks|ty|danke|merci|gracias|np"
    r"|cool|nice|great|alright|aight|right|true|same|mhm+|mm+|hm+|uh-?huh|genau|vale|d'accord|dacc|top)"
)
_ACK_PUNCT = re.compile(r"[\s!?.,:;~…\"()*]+")


def is_ack(text: str) -> bool:
    """Whether a message is only a one-word acknowledgement or emoji ("ok!", "lol 😂", "👍🏽")."""
    rest = "".join(c for c in text if not _emoji_part(c))
    words = _ACK_PUNCT.sub(" ", rest).split()
    if not words:
        return rest != text and not rest.strip()  # emoji, and nothing but punctuation besides
    return len(words) == 1 and bool(_ACK.fullmatch(words[0].casefold()))


def _emoji_part(c: str) -> bool:
    # Symbols (So), skin tones (Sk), the joiner and variation selectors that build one emoji.
    return unicodedata.category(c) in ("So", "Sk") or c in "\u200d\ufe0e\ufe0f"


class AckRuns:
    """Caps runs of the owner's acknowledgements (`is_ack`) at `max_run` in a row: in one chat,
    with no silence longer than the session gap, other people's messages between them not
    counting. Anything else the owner says ends the run. Fed messages in (source, chat, time)
    order, as `iter_sessions` is."""

    def __init__(self, max_run: int | None = DEFAULT_MAX_ACK_RUN, gap_minutes: float = DEFAULT_GAP_MINUTES) -> None:
        self.max_run = max_run  # None: no cap
        self.gap_s = gap_minutes * 60.0
        self.dropped = 0
        self._where: tuple[str, str] | None = None
        self._last = None
        self._run = 0

    def keep(self, m: Message) -> bool:
        if self.max_run is None or m.kind != "message":
            return True
        if (m.source, m.chat_id) != self._where or (m.ts - self._last).total_seconds() > self.gap_s:
            self._run = 0
        self._where, self._last = (m.source, m.chat_id), m.ts
        if not m.is_owner:
            return True
        if not is_ack(m.text):
            self._run = 0
            return True
        self._run += 1
        if self._run > self.max_run:
            self.dropped += 1
            return False
        return True


# ---------------------------------------------------------------------------------------------
# Sessions and turns


def iter_sessions(ordered: Iterable[Message], gap_minutes: float = DEFAULT_GAP_MINUTES) -> Iterator[Session]:
    """Sessions from messages already in (source, chat, time) order, one at a time: what
    `prepare` uses so a huge export never sits in memory. Posts are passed over."""
    gap_s = gap_minutes * 60.0
    current: list[Message] = []
    for m in ordered:
        if m.kind != "message":
            continue
        if current and ((m.source, m.chat_id) != (current[-1].source, current[-1].chat_id)
                        or (m.ts - current[-1].ts).total_seconds() > gap_s):
            yield _session(current)
            current = []
        current.append(m)
    if current:
        yield _session(current)


def _session(msgs: list[Message]) -> Session:
    first = msgs[0]
    return Session(key=f"{first.source}:{first.chat_id}:{iso_utc(first.ts)}:{first.msg_id}", messages=tuple(msgs))


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
    all_speakers: bool = False,
) -> list[Example]:
    """Examples from the sessions the owner speaks in; with `all_speakers`, from every session
    with two turns or more, each marked to train on every speaker's turns."""
    out = []
    for s in sessions:
        if not s.has_owner and not all_speakers:
            continue
        turns = join_bursts(s.messages, persona_name)
        if s.has_owner:
            cut = windows(turns, max_turns, max_chars)
        elif len(turns) >= 2:
            cut = _plain_windows(turns, max_turns, max_chars)
        else:
            cut = []
        first, last = s.messages[0], s.messages[-1]
        for w in cut:
            out.append(Example(session=s.key, kind="chat", turns=tuple(w), start=first.ts, end=last.ts,
                               chat=f"{first.source}:{first.chat_id}", train_all=all_speakers))
    return out


def _plain_windows(turns: Sequence[Turn], max_turns: int, max_chars: int) -> list[list[Turn]]:
    """Windows for a conversation without the owner: only the limits apply."""
    out: list[list[Turn]] = [[]]
    for t in turns:
        if out[-1] and (len(out[-1]) >= max_turns or sum(len(x.content) for x in out[-1]) + len(t.content) > max_chars):
            out.append([])
        out[-1].append(t)
    return [w for w in out if len(w) >= 2]


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
            first, more = PROMPTS.get(p.source, (POST_PROMPT, POST_CONTINUE_PROMPT))
            prompt = (first if i == 0 else more).format(title=p.title)
            turns = (Turn("user", "", prompt), Turn("assistant", persona_name or p.author, chunk))
            out.append(Example(session=f"{p.source}:{p.chat_id}:{p.msg_id}", kind="post", turns=turns,
                               start=p.ts, end=p.ts, chat=f"{p.source}:{p.chat_id}"))
    return out


# ---------------------------------------------------------------------------------------------
# Train / val


def _unit_hash(seed: int, key: str) -> float:
    digest = hashlib.sha256(f"{seed}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def time_cut(spans: dict[str, tuple[datetime, datetime]], val_fraction: float) -> datetime | None:
    """The time that splits sessions (key -> (start, end)) into train (ended before it) and val
    (started at or after it), about `val_fraction` of them in val; sessions across it are in
    neither. Chosen near the target share where fewest sessions straddle it. None when there
    is nothing to hold out (fewer than two sessions, a fraction of 0)."""
    n = len(spans)
    if n < 2 or val_fraction <= 0:
        return None
    target = min(max(1, round(n * val_fraction)), n - 1)
    starts = sorted(start for start, _ in spans.values())
    ends_sorted = sorted(end for _, end in spans.values())

    def straddling(i: int) -> int:
        # Sessions that start before the cut (ties at the cut go to val) but end at or after it;
        # every session that ended before the cut also started before it.
        cut = starts[i]
        return bisect.bisect_left(starts, cut) - bisect.bisect_left(ends_sorted, cut)

    lo, hi = max(1, target - max(1, target // 5)), min(n - 1, target + max(1, target // 5))
    # Only cuts that leave some session wholly before them (ties at the first start would not).
    candidates = [i for i in range(n - hi, n - lo + 1) if bisect.bisect_left(ends_sorted, starts[i]) > 0]
    if not candidates:
        return None
    return starts[min(candidates, key=lambda i: (straddling(i), abs((n - i) - target), -i))]


def val_chats(sizes: Counter[str], val_fraction: float, seed: int) -> set[str]:
    """Chats (chat -> examples) for val, in an order drawn from `seed`, until they hold
    `val_fraction` of the examples: at least one chat, never all of them."""
    chats = sorted(sizes, key=lambda c: (_unit_hash(seed, c), c))
    chosen: set[str] = set()
    if len(chats) < 2 or val_fraction <= 0:
        return chosen
    total = sum(sizes.values())
    for c in chats[:-1]:
        if sum(sizes[v] for v in chosen) >= val_fraction * total:
            break
        chosen.add(c)
    return chosen
