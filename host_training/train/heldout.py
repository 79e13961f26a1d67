"""Conversations as training saw them, in token ids: what the checks after training feed the models.

The conversion check (verify.py) and the quantization drift (drift.py) must give transformers
and llama.cpp, or two GGUFs, exactly the same tokens, so they take the ids training made
(its tokenizer, its chat rendering, its context-sized chunks) rather than tokenizing again.
The importance matrix (imatrix.py) reads the training conversations the same way.

  Tokens      val.jsonl per conversation: its chunks of (ids, is-target) and the texts
              llama.cpp's tokenizer must split into the same ids
  calibration a bounded sample of train.jsonl packed into chunks of ids

Each kind of training has its own rendering: --from-scratch encodes ChatML piece by piece
(tokenizer.render_ids), --base renders the base's own template whole (finetune.ChatFormat).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from .tokenizer import Conversation, SpecialIds, chunks, render_ids, with_system_prompt

Chunk = tuple[list[int], list[bool]]  # token ids, and whether each is a persona (target) token
CALIBRATION_TOKENS = 8192  # train.jsonl tokens the importance matrix is computed from, at most
CALIBRATION_CHUNK = 512  # tokens a calibration chunk holds, at most (llama-imatrix's default context)


@dataclass(frozen=True)
class TokenCheck:
    """A text and the ids training's tokenizer made of it; `special`: special-token strings in
    the text are parsed as tokens (a rendered template) rather than as plain text (content)."""

    text: str
    special: bool
    ids: list[int]
    targets: list[bool] | None = None  # which of `ids` are persona tokens (a rendered conversation's)


@dataclass(frozen=True)
class Tokens:
    """Held-out conversations in training's ids: `conversations[i]` the chunks of conversation i,
    `texts` the tokenizations llama.cpp must reproduce."""

    conversations: list[list[Chunk]]
    texts: list[TokenCheck] = field(default_factory=list)

    @property
    def n_targets(self) -> int:
        return sum(sum(t[1:]) for conv in self.conversations for _, t in conv)


def from_chatml(convs: Iterable[Conversation], encode: Callable[[str], list[int]], special: SpecialIds,
                system_prompt: str | None, ctx: int) -> Tokens:
    """--from-scratch: ChatML encoded piece by piece, exactly as train_scratch.to_examples does."""
    out, texts = [], []
    for conv in convs:
        conv = with_system_prompt(conv, system_prompt)
        ids, target = render_ids(conv, encode, special, loss="persona")
        out.append(list(chunks(ids, target, ctx)))
        for m in conv:
            for piece in (f"{m['role']}\n", m["content"]):
                if piece:
                    texts.append(TokenCheck(piece, False, encode(piece)))
    return Tokens(out, texts)


def from_chat_format(convs: Iterable[Conversation], fmt, system_prompt: str | None, ctx: int) -> Tokens:
    """--base: the base's template rendered whole and tokenized with offsets (finetune.ChatFormat);
    `fmt` is a finetune.ChatFormat."""
    out, texts = [], []
    for conv in convs:
        conv = with_system_prompt(conv, system_prompt)
        ids, target = fmt.ids_and_targets(conv, "persona")
        out.append(list(chunks(ids, target, ctx)))
        texts.append(TokenCheck(fmt.render(fmt.fit(conv)), True, ids, target))
    return Tokens(out, texts)


def calibration(rendered: Iterable[Sequence[int]], max_tokens: int = CALIBRATION_TOKENS,
                chunk: int = CALIBRATION_CHUNK) -> list[list[int]]:
    """Token ids of conversations (each already rendered) packed end to end into chunks of `chunk`
    tokens, `max_tokens` in all at most; a last short chunk is kept. Deterministic."""
    out: list[list[int]] = []
    row: list[int] = []
    total = 0
    for ids in rendered:
        for t in ids:
            if total >= max_tokens:
                break
            row.append(t)
            total += 1
            if len(row) == chunk:
                out.append(row)
                row = []
        if total >= max_tokens:
            break
    if row:
        out.append(row)
    return out


def distinct(convs: Sequence[Conversation]) -> list[Conversation]:
    """Each conversation once, in file order: train.jsonl's repetitions by weight add no new activations."""
    seen, out = set(), []
    for c in convs:
        key = tuple((m["role"], m["content"]) for m in c)
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out
