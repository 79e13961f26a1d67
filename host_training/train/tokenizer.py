"""The chat data `build` reads (declared: Example), the ChatML format and `--from-scratch`'s byte-level BPE.

Reads `train.jsonl` / `val.jsonl` (one `{"messages": [{"role", "name", "content"}...]}` a
line, as `prepare` writes them), trains a GPT-2 style byte-level BPE on the persona's own
chats with the `tokenizers` library, and saves it as an HF `PreTrainedTokenizerFast`
(tokenizer.json + tokenizer_config.json + the ChatML template) beside the model.

It also owns the one function that turns a conversation into token ids and a loss mask
(`render_ids`), used by training (HF tokenizer) and by evaluation (llama.cpp's tokenizer
read from the GGUF), so both measure exactly the same tokens.

Why these choices:
- byte-level BPE never meets an unknown character (emoji, accents, any script), and
  llama.cpp implements the same GPT-2 pre-tokenizer regex (`tokenizer.ggml.pre = "gpt-2"`);
- a small vocabulary (a few thousand) keeps the embedding tables, which dominate a model
  this size, small enough for a Pi Zero;
- ChatML is what llama.cpp and Ollama recognise without help.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError

from ..validation import describe

# ----------------------------------------------------------------------------- configuration
DEFAULT_VOCAB_SIZE = 2048  # tokens, special ones included; the trainer may stop short on small data
MIN_FREQUENCY = 2  # a pair must occur this often to become a merge (keeps one-off typos out)

EOT = "<|endoftext|>"  # bos, eos and pad: separates packed conversations
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"  # ends every turn: the persona learns to say it, generation stops on it
SPECIAL_TOKENS = [EOT, IM_START, IM_END]  # ids 0, 1, 2 in this order
STOP_STRINGS = [IM_END, EOT]
ROLES = ("system", "user", "assistant")  # Turn.role

# Standard ChatML. Written into tokenizer_config, the GGUF (`tokenizer.chat_template`) and
# persona.toml, so every runtime renders prompts the way the model was trained.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

Message = dict[str, str]
Conversation = list[Message]


class DataError(ValueError):
    """Training data that is missing, empty or malformed; the message names file and line."""


# ----------------------------------------------------------------------------- reading the data
class Turn(BaseModel):
    """One message of a training example, as `prepare` writes it."""

    model_config = ConfigDict(extra="ignore")  # prepare may record more about a turn than training reads

    role: Literal["system", "user", "assistant"]
    content: StrictStr
    name: str = ""


class Example(BaseModel):
    """One line of train.jsonl / val.jsonl."""

    model_config = ConfigDict(extra="ignore")

    messages: list[Turn] = Field(min_length=1)
    # Times seen per epoch (prepare's quality tiers). strict: "3" or true is a bug upstream, not a weight.
    weight: float = Field(1.0, gt=0, le=100, strict=True)
    train: Literal["all"] | None = None  # prepare --train-all-speakers: every speaker is a target

    def conversation(self) -> Conversation:
        extra = {"train": "all"} if self.train == "all" else {}
        return [{"role": t.role, "name": t.name, "content": t.content, **extra} for t in self.messages]


def load_examples(path: str | Path) -> list[Example]:
    """Every example in a `prepare`-style jsonl file; blank lines are skipped.

    Raises DataError naming the file, the line and the field of the first malformed line: a
    training set with a broken line is a bug upstream, and guessing would hide it.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: not found (expected the output of `python -m host_training prepare`)")
    examples: list[Example] = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                examples.append(Example.model_validate_json(line))
            except ValidationError as e:
                first = e.errors()[0]
                if first["type"] == "json_invalid":
                    raise DataError(f"{path}:{lineno}: not valid JSON ({first['ctx']['error']})") from e
                if first["type"] == "model_type" and not first["loc"]:
                    raise DataError(f'{path}:{lineno}: expected an object {{"messages": [...]}}') from e
                raise DataError(f"{path}:{lineno}: {describe(e)}") from e
    return examples


def load_conversations(path: str | Path) -> list[Conversation]:
    """Every conversation in a `prepare`-style jsonl file (see load_examples)."""
    return [e.conversation() for e in load_examples(path)]


def example_weights(path: str | Path) -> list[float]:
    """Each conversation's `weight` (1.0 when absent), in the order `load_conversations` reads them."""
    return [e.weight for e in load_examples(path)]


def by_weight(conversations: list[Conversation], weights: list[float], seed: int) -> list[Conversation]:
    """Each conversation floor(w) times, and once more with probability frac(w): an example of
    weight 3 is seen three times an epoch, one of 1.5 once or twice. Seeded: same data, same set."""
    rng = random.Random(seed)
    out: list[Conversation] = []
    for conv, w in zip(conversations, weights, strict=True):
        out += [conv] * (int(w) + (rng.random() < w - int(w)))
    return out


def with_system_prompt(conv: Conversation, system_prompt: str | None) -> Conversation:
    """The conversation as the model will see it on the balloon: the bundle's system prompt first.

    Training with the same system prompt the payload sends keeps a tiny model in
    distribution at inference; a conversation that brings its own system turn keeps it.
    """
    if not system_prompt or (conv and conv[0]["role"] == "system"):
        return conv
    return [{"role": "system", "name": "", "content": system_prompt}, *conv]


def fit_roles(conv: Conversation, render: Callable[[Conversation], object]) -> Conversation | None:
    """The conversation in a shape a chat template accepts (`render` raises when it does not): as it
    is; else with consecutive turns of one role merged and an empty user turn before a persona
    that speaks first (Llama-2's and Gemma's templates want user and assistant alternating); else
    with the system prompt folded into the first user turn. None when the template takes none."""
    try:
        render(conv)
        return conv
    except Exception:  # noqa: BLE001 - Jinja's raise_exception, TemplateError, ...
        pass
    merged: Conversation = []
    for m in conv:
        if merged and merged[-1]["role"] == m["role"]:
            merged[-1] = {**merged[-1], "content": merged[-1]["content"] + "\n" + m["content"]}
        else:
            merged.append(dict(m))
    i = 1 if merged and merged[0]["role"] == "system" else 0
    if i < len(merged) and merged[i]["role"] == "assistant":
        merged.insert(i, {"role": "user", "name": "", "content": ""})
    candidates = [merged]
    if merged and merged[0]["role"] == "system" and len(merged) > 1:
        rest = [dict(m) for m in merged[1:]]
        rest[0]["content"] = merged[0]["content"] + "\n\n" + rest[0]["content"]
        candidates.append(rest)
    for c in candidates:
        try:
            render(c)
            return c
        except Exception:  # noqa: BLE001
            continue
    return None


def tokenizer_training_text(conversations: Iterable[Conversation], system_prompt: str | None) -> Iterator[str]:
    """The text the BPE learns from: every turn, system prompt included, as the model will read it."""
    for conv in conversations:
        for m in with_system_prompt(conv, system_prompt):
            yield f"{m['role']}\n{m['content']}"


# ----------------------------------------------------------------------------- conversation -> ids
@dataclass(frozen=True)
class SpecialIds:
    eot: int
    im_start: int
    im_end: int


def with_bos(ids: list[int], target: list[bool], bos: int | None) -> tuple[list[int], list[bool]]:
    """`ids` (and their target flags) with `bos` first, where there is one and it is not there yet:
    what llama.cpp feeds a model whose tokenizer puts a BOS first. The BOS is never a target."""
    if bos is None or ids[:1] == [bos]:
        return ids, target
    return [bos, *ids], [False, *target]


def render_ids(
    conv: Conversation,
    encode: Callable[[str], list[int]],
    special: SpecialIds,
    loss: str = "persona",
) -> tuple[list[int], list[bool]]:
    r"""Token ids of `conv` in ChatML and, for each, whether it is a training target.

    `encode` tokenizes plain text with special-token strings treated as text (a user who
    types "<|im_end|>" must not end the turn). Each turn is encoded as its pieces: the
    special tokens, the header "role\n", the content, "\n". llama.cpp tokenizes a prompt the
    same way (it splits at special tokens, then byte-pair-encodes each piece), and the GPT-2
    regex always splits after a newline that is followed by a non-space, so these ids equal
    the rendered template tokenized whole. Only content that starts with whitespace differs
    (BPE would glue it to the header's newline); encoding it apart is then what generation
    sees anyway, since the prompt ends with "assistant\n" and the persona continues from there.

    loss="persona": targets are the persona's (assistant) words and its closing <|im_end|>,
    and every speaker's words in examples `prepare --train-all-speakers` marked "train": "all";
    loss="all": every token except the padding added later.
    """
    if loss not in ("persona", "all"):
        raise ValueError(f"loss must be 'persona' or 'all', not {loss!r}")
    newline = encode("\n")
    ids: list[int] = []
    target: list[bool] = []
    for m in conv:
        head = encode(f"{m['role']}\n")
        body = encode(m["content"])
        ids += [special.im_start] + head + body + [special.im_end] + newline
        if loss == "all":
            target += [True] * (1 + len(head) + len(body) + 1 + len(newline))
        else:
            # The header is the prompt, not the persona; the newline after <|im_end|> is
            # never generated (generation stops at <|im_end|>).
            # A turn of an example prepare marked "train": "all" is a target whoever speaks.
            # A turn marked "target": False (train/targets.py) is context only.
            is_persona = (m["role"] == "assistant" or (m.get("train") == "all" and m["role"] == "user")) \
                and m.get("target", True)
            target += [False] * (1 + len(head)) + [is_persona] * (len(body) + 1) + [False] * len(newline)
    return ids, target


def chunks(ids: list[int], target: list[bool], ctx: int) -> Iterator[tuple[list[int], list[bool]]]:
    """Non-overlapping windows of at most `ctx` tokens (long conversations are split, never dropped)."""
    for start in range(0, len(ids), ctx):
        piece_ids, piece_target = ids[start : start + ctx], target[start : start + ctx]
        if len(piece_ids) > 1 and any(piece_target[1:]):  # position 0 is never predicted
            yield piece_ids, piece_target


# ----------------------------------------------------------------------------- training the BPE
def train_tokenizer(texts: Iterable[str], vocab_size: int = DEFAULT_VOCAB_SIZE, min_frequency: int = MIN_FREQUENCY):
    """A `tokenizers.Tokenizer`: byte-level BPE with the GPT-2 pre-tokenizer and SPECIAL_TOKENS at ids 0-2."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    floor = len(SPECIAL_TOKENS) + 256  # specials plus every byte
    if vocab_size < floor:
        raise ValueError(f"vocab size {vocab_size} is too small: byte-level BPE needs at least {floor}")
    tok = Tokenizer(models.BPE())
    # use_regex=True: the GPT-2 split regex, which llama.cpp reproduces for pre="gpt-2".
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes, seen or not
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    for i, s in enumerate(SPECIAL_TOKENS):
        assert tok.token_to_id(s) == i, f"special token {s} got id {tok.token_to_id(s)}, expected {i}"
    return tok


def save_tokenizer(tok, out_dir: str | Path):
    """Save as an HF PreTrainedTokenizerFast with the ChatML template; returns the HF tokenizer."""
    from transformers import PreTrainedTokenizerFast

    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=EOT,
        eos_token=EOT,
        pad_token=EOT,
        additional_special_tokens=[IM_START, IM_END],
        chat_template=CHATML_TEMPLATE,
        add_bos_token=False,  # ChatML starts with <|im_start|>; llama.cpp must not prepend a BOS
        add_eos_token=False,
        clean_up_tokenization_spaces=False,  # byte-level decoding is already exact
    )
    hf.save_pretrained(str(out_dir))
    return hf


def load_hf_tokenizer(path: str | Path):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast.from_pretrained(str(path))


def hf_text_encoder(hf_tokenizer) -> Callable[[str], list[int]]:
    """`encode` for render_ids from an HF tokenizer: special-token strings count as plain text."""
    from tokenizers import Tokenizer

    raw = Tokenizer.from_str(hf_tokenizer.backend_tokenizer.to_str())  # a copy: the HF one stays as it is
    raw.encode_special_tokens = True
    return lambda text: raw.encode(text, add_special_tokens=False).ids


def hf_special_ids(hf_tokenizer) -> SpecialIds:
    ids = [hf_tokenizer.convert_tokens_to_ids(s) for s in SPECIAL_TOKENS]
    return SpecialIds(*ids)
