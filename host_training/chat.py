"""`python -m host_training chat BUNDLE`: talk to a persona bundle on the workstation.

The same path the payload takes: load and verify the bundle, render the conversation with
the bundle's own chat template (`Bundle.render_prompt`), generate with llama-cpp-python
using the bundle's sampling defaults and stop strings. Interactive by default (a REPL with
/reset and /quit); `--prompt TEXT` answers once and exits, for scripts and tests.
"""

from __future__ import annotations

import sys

from stratoecho.completion import complete, sampling

from .train.lora_step import usable_cores

SPECIAL_STRINGS = ("<|im_start|>", "<|im_end|>", "<|endoftext|>")
ZERO_WIDTH_SPACE = "\u200b"


def defuse(text: str, specials=SPECIAL_STRINGS) -> str:
    """Typed text must not become control tokens: "<|im_end|>" typed by a user would end their turn.

    llama-cpp-python parses special tokens in the whole prompt, so a zero-width space after
    "<|" keeps the text visible but no longer a match.
    """
    for s in specials:
        text = text.replace(s, s[:2] + ZERO_WIDTH_SPACE + s[2:])
    return text


class PersonaChat:
    """A conversation with a bundle's model; keeps the history within the context window."""

    def __init__(self, bundle, system_prompt: str | None = None, seed: int | None = None, threads: int | None = None):
        import llama_cpp

        self.bundle = bundle
        self.persona = bundle.manifest.persona
        self.sampling = bundle.manifest.sampling
        self.system_prompt = self.persona.system_prompt if system_prompt is None else system_prompt
        self.n_ctx = bundle.manifest.model.context_length
        threads = threads or usable_cores()
        kwargs = dict(n_ctx=self.n_ctx, n_threads=threads, n_threads_batch=threads, verbose=False)
        if seed is not None:
            kwargs["seed"] = seed
        self.llm = llama_cpp.Llama(model_path=str(bundle.model_path), **kwargs)
        self.history: list[dict[str, str]] = []
        self.seed = seed
        self.replies = 0  # replies made: with a seed, reply i is sampled with seed + i

    def _prompt(self, max_tokens: int) -> str:
        """Render system + history, dropping the oldest turns until the reply still fits."""
        while True:
            system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
            messages = system + self.history
            prompt = self.bundle.render_prompt(messages, add_generation_prompt=True)
            n = len(self.llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True))
            if n + max_tokens <= self.n_ctx:
                return prompt
            if len(self.history) <= 1:
                raise ValueError(
                    f"the message is too long: {n} prompt tokens + {max_tokens} to generate exceed "
                    f"the model's context of {self.n_ctx} tokens"
                )
            self.history = self.history[2:] if len(self.history) > 2 else self.history[1:]

    def reply(self, text: str, max_tokens: int | None = None, temperature: float | None = None, stream=None) -> str:
        """The persona's answer to `text`; `stream(piece)` is called with each piece as it comes."""
        s = self.sampling
        max_tokens = max_tokens or s.max_tokens
        self.history.append({"role": "user", "content": defuse(text)})
        try:
            prompt = self._prompt(max_tokens)
        except ValueError:
            self.history.pop()
            raise
        params = sampling(self.bundle.manifest)
        params.update(max_tokens=max_tokens,  # llama-cpp-python's own default is 16
                      temperature=s.temperature if temperature is None else temperature, seed=self.next_seed())
        if stream is None:
            out = complete(self.llm, prompt, **params)["choices"][0]["text"]
        else:
            pieces = []
            for chunk in complete(self.llm, prompt, stream=True, **params):
                piece = chunk["choices"][0]["text"]
                pieces.append(piece)
                stream(piece)
            out = "".join(pieces)
        out = out.strip()
        self.history.append({"role": "assistant", "content": out})
        return out

    def next_seed(self) -> int:
        """Each reply its own seed. llama-cpp-python left to itself derives every completion's seed
        from the model's, the same in every process: `chat --prompt` gave one reply however often it
        was asked (issue 40: 8 times in 10). With --seed the replies repeat run to run, as asked."""
        import random

        seed = self.seed + self.replies if self.seed is not None else random.SystemRandom().randrange(2**31)
        self.replies += 1
        return seed

    def reset(self) -> None:
        self.history.clear()


# ----------------------------------------------------------------------------- command line
def add_parser(sub) -> None:
    p = sub.add_parser(
        "chat",
        help="talk to a persona bundle (interactive, or one answer with --prompt)",
        description=(
            "Chat with the bundle's model through llama-cpp-python, with the bundle's chat template, "
            "sampling defaults and stop strings. In the interactive loop, /reset forgets the "
            "conversation and /quit (or Ctrl-D) leaves."
        ),
    )
    p.add_argument("bundle", metavar="BUNDLE", help="persona bundle directory (holds persona.toml)")
    p.add_argument("--prompt", metavar="TEXT", help="answer this one message, print the reply and exit")
    p.add_argument("--system", metavar="TEXT", help="system prompt to use instead of the bundle's ('' for none)")
    p.add_argument("--max-tokens", type=int, metavar="N",
                   help="tokens to generate at most per reply (default: the bundle's)")
    p.add_argument("--temperature", type=float, metavar="T",
                   help="sampling temperature (default: the bundle's; 0 = greedy)")
    p.add_argument("--seed", type=int, metavar="N", help="sampling seed, for repeatable replies")
    p.add_argument("--threads", type=int, metavar="N", help="CPU threads for llama.cpp (default: one per CPU it may use)")
    p.set_defaults(func=run)


def run(args) -> int:
    from stratoecho.bundle import BundleError, load_bundle

    try:
        bundle = load_bundle(args.bundle)
    except BundleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    chat = PersonaChat(bundle, system_prompt=args.system, seed=args.seed, threads=args.threads)
    opts = dict(max_tokens=args.max_tokens, temperature=args.temperature)
    name = bundle.manifest.persona.name

    if args.prompt is not None:
        try:
            print(chat.reply(args.prompt, **opts))
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        return 0

    print(f"talking to {name} ({bundle.manifest.model.file}); /reset to start over, /quit to leave", file=sys.stderr)
    while True:
        try:
            text = input("you> ")
        except (EOFError, KeyboardInterrupt):
            print(file=sys.stderr)
            return 0
        if text.strip() in ("/quit", "/exit"):
            return 0
        if text.strip() == "/reset":
            chat.reset()
            continue
        if not text.strip():
            continue
        print(f"{name}> ", end="", flush=True)
        try:
            chat.reply(text, stream=lambda piece: print(piece, end="", flush=True), **opts)
        except ValueError as e:
            print(f"\nerror: {e}", file=sys.stderr)
            continue
        except KeyboardInterrupt:  # stop this reply, keep the conversation
            pass
        print()
