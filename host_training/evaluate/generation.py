"""Replies from a bundle's GGUF as the payload makes them, to messages from val.jsonl that the
owner answered: the same prompts and seeds for every model compared.
"""

from __future__ import annotations

from pathlib import Path

from stratoecho.completion import complete, sampling

from .. import progress
from ..train.lora_step import usable_cores
from ..train.tokenizer import Conversation, fit_roles, with_system_prompt

STYLE_PROMPTS = 32  # val messages the persona answers for the style figures
STYLE_MAX_TOKENS = 48  # tokens per style reply, at most
PROBE_SAMPLES = 32  # generations the privacy probe searches (default)
DEFAULT_SEED = 1234  # style reply i uses seed+i, probe sample i seed+PROBE_SEED_OFFSET+i
PROBE_SEED_OFFSET = 100_000
VOICE_ROUNDS = 3  # replies of each model to each held-out prompt: a few dozen prompts alone leave the
#                   base and the persona inside each other's intervals
ROUND_SEED_OFFSET = 10_000  # round k's seeds start here x k


def reply_cases(conversations: list[Conversation], limit: int) -> list[tuple[Conversation, str]]:
    """(the conversation up to a message the owner answered, the owner's answer), for at most
    `limit` owner turns that follow a user turn, spread evenly over the file (deterministic)."""
    cases = [
        (conv[:j], conv[j]["content"])
        for conv in conversations
        for j in range(1, len(conv))
        if conv[j]["role"] == "assistant" and conv[j - 1]["role"] == "user"
    ]
    if limit <= 0:
        return []
    if len(cases) <= limit:
        return cases
    return [cases[i * len(cases) // limit] for i in range(limit)]


class PersonaGenerator:
    """Replies from a bundle's GGUF as the payload makes them: the bundle's system prompt and
    chat template (`Bundle.render_prompt`), its sampling defaults and stop strings, typed
    control-token strings defused, the oldest turns dropped until the reply fits the context."""

    def __init__(self, bundle, threads: int | None = None, model_path: str | Path | None = None) -> None:
        """`model_path`: another GGUF to reply with (the untuned base, the unquantized persona),
        prompted, sampled and stopped as the bundle says; by default the bundle's own."""
        import llama_cpp

        self.bundle = bundle
        self.n_ctx = bundle.manifest.model.context_length
        threads = threads or usable_cores()
        self.llm = llama_cpp.Llama(model_path=str(model_path or bundle.model_path), n_ctx=self.n_ctx,
                                   n_threads=threads, n_threads_batch=threads, verbose=False)

    def _prompt(self, context: Conversation, max_tokens: int) -> str | None:
        from ..chat import defuse

        msgs = [{"role": m["role"], "content": defuse(m["content"])}
                for m in with_system_prompt(context, self.bundle.manifest.persona.system_prompt)]
        head = msgs[:1] if msgs and msgs[0]["role"] == "system" else []
        rest = msgs[len(head):]
        while True:
            # Shaped as training shaped it: a context that opens with the persona's turn is refused
            # by templates that want roles alternating (Gemma's, Llama-2's).
            fitted = fit_roles(head + rest, lambda c: self.bundle.render_prompt(c, add_generation_prompt=True))
            if fitted is None:
                return None
            prompt = self.bundle.render_prompt(fitted, add_generation_prompt=True)
            n = len(self.llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True))
            if n + max_tokens <= self.n_ctx:
                return prompt
            if len(rest) <= 1:
                return None  # the last message alone does not fit
            rest = rest[1:]

    def reply(self, context: Conversation, seed: int, max_tokens: int) -> str | None:
        """The persona's next turn after `context` (None when it cannot fit the context); a step
        of the stage that asks for it (the report's replies: progress.py)."""
        try:
            return self._reply(context, seed, max_tokens)
        finally:
            progress.advance()

    def _reply(self, context: Conversation, seed: int, max_tokens: int) -> str | None:
        prompt = self._prompt(context, max_tokens)
        if prompt is None:
            return None
        out = complete(self.llm, prompt, max_tokens=max_tokens, seed=seed, **sampling(self.bundle.manifest))
        return out["choices"][0]["text"].strip()

    def close(self) -> None:
        self.llm.close()


def replies(gen: PersonaGenerator, cases: list[tuple[Conversation, str]], seed: int,
            max_tokens: int = STYLE_MAX_TOKENS) -> list[str | None]:
    """`gen`'s reply to each case's context, reply i with seed+i (None where it does not fit)."""
    return [gen.reply(context, seed=seed + i, max_tokens=max_tokens) for i, (context, _) in enumerate(cases)]


def reply_rounds(gen: PersonaGenerator, cases: list[tuple[Conversation, str]], seed: int, rounds: int = VOICE_ROUNDS,
                 max_tokens: int = STYLE_MAX_TOKENS) -> list[list[str] | None]:
    """`rounds` replies of `gen` to each case (round k with seeds seed + k*ROUND_SEED_OFFSET + i; round 0
    is `replies`), or None for a case whose context does not fit."""
    runs = [replies(gen, cases, seed + k * ROUND_SEED_OFFSET, max_tokens) for k in range(rounds)]
    return [None if any(run[i] is None for run in runs) else [run[i] for run in runs] for i in range(len(cases))]
