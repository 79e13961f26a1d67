"""A base's chat template and the persona's tokens under it (`ChatFormat`), for training and scoring."""

from __future__ import annotations

from ..train.tokenizer import CHATML_TEMPLATE, IM_END, IM_START, Conversation, chunks, fit_roles, with_bos, with_system_prompt
from .config import FinetuneError


class ChatFormat:
    """A tokenizer's chat template and the persona's tokens under it.

    The targets are found by rendering the conversation prefix by prefix: the text that
    message i adds is render(messages[:i+1]) minus render(messages[:i]); within it the turn's
    content starts where its (stripped) text is found, and the target runs from there to the
    end of the added text, trailing whitespace left out (ChatML's "<|im_end|>\\n" keeps
    <|im_end|>; Llama-2's " words </s>" keeps </s>). Tokens overlapping a target span are
    targets. This needs only that each prefix renders as a prefix of the whole, which is
    checked; a template that breaks it is refused by name.

    A tokenizer that puts a BOS first (Gemma's) gets it first in every conversation the
    template does not begin with one: llama.cpp puts it before every prompt on the Pi (the
    GGUF's add_bos_token is this same probe, finetune.merging.save_tokenizer), and a ChatML
    template added to a raw base renders none. Without it, training and scoring saw text the
    base never saw in pretraining (the untuned Gemma 3 270M's held-out perplexity on a German
    owner: 3,875) and the persona another beginning than it flies with.
    """

    def __init__(self, tok):
        self.tok = tok
        if not tok.is_fast:
            raise FinetuneError("the base model's tokenizer is not a fast (tokenizer.json) one; offsets are needed")
        bos = tok.bos_token_id
        self.bos_id = bos if bos is not None and tok("x")["input_ids"][:1] == [bos] else None

    # -- rendering
    def render(self, conv: Conversation, add_generation_prompt: bool = False) -> str:
        if not conv and not add_generation_prompt:
            try:
                return self._apply(conv, False)
            except Exception:  # noqa: BLE001 - many templates index messages[0]
                return ""
        return self._apply(conv, add_generation_prompt)

    def _apply(self, conv, add_generation_prompt):
        msgs = [{"role": m["role"], "content": m["content"]} for m in conv]
        return self.tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=add_generation_prompt)

    def fit(self, conv: Conversation) -> Conversation:
        """The conversation in a shape the template accepts: as it is; else with consecutive turns of
        one role merged and an empty user turn before a persona that speaks first (Llama-2 wants
        user/assistant alternating); else with the system prompt folded into the first user turn."""
        fitted = fit_roles(conv, lambda c: self._apply(c, False))
        if fitted is None:
            try:
                self._apply(conv, False)
            except Exception as e:  # noqa: BLE001 - the template's own words say why
                raise FinetuneError(f"the chat template refuses a conversation even with roles alternating: {e}") from e
        return fitted

    # -- ids and targets
    def prefix_renders(self, conv: Conversation) -> list[str]:
        """render(conv[:i]) for i = 0..len(conv), each a prefix of the next. A template that closes
        every rendering with the EOS (Phi-3's and Phi-4-mini's `{% else %}{{ eos_token }}`) has
        that closing taken off each; any other that breaks the prefix property is refused."""
        renders = [self.render(conv[:i]) for i in range(len(conv) + 1)]
        eos = self.tok.eos_token or ""
        for tail in ("", eos):
            if tail and not all(r.endswith(tail) for r in renders[1:]):
                continue
            cut = [r[: len(r) - len(tail)] if tail and r.endswith(tail) else r for r in renders]
            if all(cut[i + 1].startswith(cut[i]) for i in range(len(cut) - 1)):
                return cut
        bad = next(i for i in range(len(renders) - 1) if not renders[i + 1].startswith(renders[i]))
        raise FinetuneError(
            "the chat template renders a conversation differently from its beginning (message "
            f"{bad}), so the persona's tokens cannot be located; use --chat-template chatml")

    def ids_and_targets(self, conv: Conversation, loss: str = "persona") -> tuple[list[int], list[bool]]:
        conv = self.fit(conv)
        full = self.render(conv)  # the training text: with the template's closing, if it has one
        cut = self.prefix_renders(conv)
        spans = []
        for i, m in enumerate(conv):
            prev, upto = cut[i], cut[i + 1]
            added = upto[len(prev):]
            text = m["content"].strip()
            is_target = loss == "all" or ((m["role"] == "assistant" or (m.get("train") == "all" and m["role"] == "user"))
                                          and m.get("target", True))  # "target": False is context (train/targets.py)
            if is_target and text:
                at = added.find(text)
                if at < 0:
                    raise FinetuneError(f"the chat template changes the text of message {i}; cannot locate it")
                spans.append((len(prev) + at, len(prev) + len(added.rstrip())))
        enc = self.tok(full, add_special_tokens=False, return_offsets_mapping=True)
        ids = enc["input_ids"]
        if loss == "all":
            return with_bos(ids, [True] * len(ids), self.bos_id)
        marks = bytearray(len(full))
        for s, e in spans:
            marks[s:e] = b"\x01" * (e - s)
        return with_bos(ids, [any(marks[s:e]) for s, e in enc["offset_mapping"]], self.bos_id)

    def end_of_turn(self) -> str:
        """What the template writes after a persona turn (e.g. <|im_end|>, <|eot_id|>, </s>, <|end|>)."""
        probe = [{"role": "user", "name": "", "content": "Hello?"},
                 {"role": "assistant", "name": "", "content": "PERSONA-PROBE"}]
        text = self.prefix_renders(self.fit(probe))[-1]
        return text[text.rfind("PERSONA-PROBE") + len("PERSONA-PROBE"):].strip()


def ensure_template(tok, model, mode: str = "base") -> tuple[str, list[int]]:
    """Give the tokenizer a chat template: its own, or ChatML (adding <|im_start|>/<|im_end|> as
    special tokens and resizing the embeddings when they are new).
    Returns ("base" or "chatml-added", ids of the added tokens)."""
    if mode == "base" and tok.chat_template:
        return "base", []
    new = [t for t in (IM_START, IM_END) if t not in tok.get_vocab()]
    if new:
        tok.add_special_tokens({"additional_special_tokens": new}, replace_extra_special_tokens=False)
        model.resize_token_embeddings(len(tok))
    tok.chat_template = CHATML_TEMPLATE
    tok.eos_token = IM_END  # generation ends at the end of the persona's turn
    if tok.pad_token is None:
        tok.pad_token = IM_END
    return "chatml-added", [tok.convert_tokens_to_ids(t) for t in new]


def to_examples(convs, fmt: ChatFormat, system_prompt, loss: str, ctx: int):
    out = []
    for conv in convs:
        ids, target = fmt.ids_and_targets(with_system_prompt(conv, system_prompt), loss)
        out.extend(chunks(ids, target, ctx))
    return out
