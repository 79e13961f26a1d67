"""`python -m host_training eval BUNDLE --data DIR`: held-out perplexity, style and privacy of a bundle.

Scores `DIR/val.jsonl` with llama-cpp-python, i.e. with the exact file, tokenizer and
kernels the payload will run, not with the training framework. Perplexity:

  1. render each conversation in ChatML with the bundle's system prompt, tokenized by the
     GGUF's own tokenizer (`render_ids`, the function training used);
  2. split into context-sized chunks, evaluate each chunk from an empty cache;
  3. average the negative log-likelihood of the persona's tokens (its words and the
     <|im_end|> that closes each of its turns): `val_loss` in nats per token,
     `val_perplexity` = exp(val_loss).

The KV cache is kept in F32 here (llama.cpp's default is F16) so that an F32 GGUF scores
the same as the training framework did and a quantized one differs only by its weights.

Then the report (`write_report`, also called by `build`; the figures and the Markdown are
in report.py):

  4. style: the persona answers up to 32 messages from val.jsonl that the owner answered
     (the bundle's template, system prompt and sampling, fixed seeds), compared with the
     owner's held-out turns; so do the other GGUFs given (`Compared`: build's untuned base
     and unquantized persona, eval's --base-model), with the same prompts and seeds;
  5. whose voice: an authorship classifier learnt from train.jsonl (voice.py) says which share
     of each model's replies reads as the owner's, beside the owner's own held-out turns
     (the ceiling) and the other speakers' (the floor);
  6. privacy probe: N samples (half free-running after the system prompt, half replies to
     val messages) searched for private values and the owner's --private / --blocklist strings;
  7. BUNDLE/report.md with the size-vs-perplexity SVG beside it, and BUNDLE/Modelfile for Ollama.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import structlog

from stratoecho.completion import complete

from .tokenizer import (
    EOT,
    IM_END,
    IM_START,
    Conversation,
    DataError,
    SpecialIds,
    chunks,
    fit_roles,
    load_conversations,
    render_ids,
    with_system_prompt,
)

log = structlog.get_logger(__name__)

GGML_TYPE_F32 = 0  # ggml_type for type_k / type_v
STYLE_PROMPTS = 32  # val messages the persona answers for the style figures
STYLE_MAX_TOKENS = 48  # tokens per style reply, at most
PROBE_SAMPLES = 32  # generations the privacy probe searches (default)
DEFAULT_SEED = 1234  # style reply i uses seed+i, probe sample i seed+PROBE_SEED_OFFSET+i
PROBE_SEED_OFFSET = 100_000
VOICE_ROUNDS = 3  # replies of each model to each held-out prompt: a few dozen prompts alone leave the
#                   base and the persona inside each other's intervals
ROUND_SEED_OFFSET = 10_000  # round k's seeds start here x k


def gguf_context_length(gguf_path: str | Path) -> int:
    """The training context length recorded in a GGUF (read from its header; the file is memory-mapped)."""
    import gguf

    reader = gguf.GGUFReader(str(gguf_path))
    arch = reader.fields["general.architecture"].contents()
    return int(reader.fields[f"{arch}.context_length"].contents())


def open_for_scoring(gguf_path: str | Path, max_ctx: int = 2048, threads: int | None = None):
    """(llama_cpp.Llama keeping logits for every position, its usable context in tokens).

    The context is the model's training context, capped because logits_all keeps
    n_ctx x n_vocab floats. It is returned rather than read back with llm.n_ctx(): llama.cpp
    rounds its own context up (to 256), but llama-cpp-python's buffers have the size asked for.
    """
    import os

    import llama_cpp

    ctx = min(max_ctx, gguf_context_length(gguf_path))
    threads = threads or os.cpu_count() or 1
    llm = llama_cpp.Llama(
        model_path=str(gguf_path), n_ctx=ctx, n_batch=ctx, n_ubatch=ctx, logits_all=True,
        type_k=GGML_TYPE_F32, type_v=GGML_TYPE_F32, n_threads=threads, n_threads_batch=threads,
        verbose=False,
    )
    return llm, ctx


def llama_special_ids(llm) -> SpecialIds:
    ids = []
    for s in (EOT, IM_START, IM_END):
        tok = llm.tokenize(s.encode(), add_bos=False, special=True)
        if len(tok) != 1:
            raise ValueError(f"the model's tokenizer has no {s} token: not a ChatML persona model")
        ids.append(tok[0])
    return SpecialIds(*ids)


def target_nll(llm, ctx: int, examples) -> tuple[float, int, int]:
    """(summed negative log-likelihood in nats, target tokens, chunks) of `examples`, each a pair
    (token ids, is-target flags), cut into context-sized chunks each evaluated from an empty cache."""
    import numpy as np

    total, count, n_chunks = 0.0, 0, 0
    for ids, target in examples:
        for piece, mask in chunks(ids, target, ctx):
            llm.reset()
            llm.eval(piece)
            nll = next_token_nll(np.asarray(llm.scores[: len(piece)], dtype=np.float64), piece)
            m = np.asarray(mask[1:], dtype=bool)
            total += float(nll[m].sum())
            count += int(m.sum())
            n_chunks += 1
    return total, count, n_chunks


def next_token_nll(logits, ids):
    """Negative log-likelihood (nats) of ids[i+1] under row i of `logits` (float64, one row per
    position of `ids`): len(ids) - 1 values."""
    import numpy as np

    x = logits[: len(ids) - 1]
    peak = x.max(axis=1, keepdims=True)
    lse = np.log(np.exp(x - peak).sum(axis=1)) + peak[:, 0]
    return lse - x[np.arange(len(ids) - 1), ids[1:]]


class GGUFChatTokenizer:
    """The bundle's GGUF tokenizer and chat template behind the few methods `finetune.ChatFormat`
    uses, so a persona built on a base model's own template (build --base) is scored on the
    persona's tokens the way training located them: rendered turn by turn, targets by offset."""

    is_fast = True  # offsets come from detokenizing token by token

    def __init__(self, llm, bundle) -> None:
        self.llm, self.bundle = llm, bundle

    @property
    def eos_token(self) -> str | None:
        """The GGUF's end-of-sequence token, as the template writes it (Phi-3 closes renderings with it)."""
        eos = self.llm.token_eos()
        return self.llm._model.token_get_text(eos) if eos >= 0 else None

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=False):
        return self.bundle.render_prompt(messages, add_generation_prompt=add_generation_prompt)

    def __call__(self, text: str, add_special_tokens: bool = False, return_offsets_mapping: bool = True) -> dict:
        ids = self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True) if text else []
        offsets, at = [], 0
        for tid in ids:
            piece = self.llm.detokenize([tid], special=True).decode("utf-8", errors="replace")
            # A token may render with a leading space SentencePiece adds; find it where it starts.
            start = text.find(piece, at) if piece else at
            start = at if start < 0 or start > at + 1 else start
            end = min(len(text), start + len(piece))
            offsets.append((start, end))
            at = end
        return {"input_ids": ids, "offset_mapping": offsets}


def is_chatml(bundle) -> bool:
    probe = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]
    try:
        return bundle.render_prompt(probe, add_generation_prompt=False) == (
            "<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\ny<|im_end|>\n")
    except Exception:  # noqa: BLE001 - a template that cannot render this is not ChatML
        return False


def score_gguf_template(gguf_path, conversations: list[Conversation], bundle, threads: int | None = None) -> dict:
    """Persona-token loss of a GGUF whose chat template is not ChatML, through that template."""
    from .finetune import ChatFormat, FinetuneError

    t0 = time.monotonic()
    llm, ctx = open_for_scoring(gguf_path, threads=threads)
    fmt = ChatFormat(GGUFChatTokenizer(llm, bundle))
    try:
        rendered = [fmt.ids_and_targets(with_system_prompt(conv, bundle.manifest.persona.system_prompt))
                    for conv in conversations]
    except FinetuneError as e:
        llm.close()
        raise ValueError(str(e)) from None
    total, count, n_chunks = target_nll(llm, ctx, rendered)
    llm.close()
    if count == 0:
        raise ValueError("no persona tokens to score: do the conversations have assistant turns?")
    loss = total / count
    return {"model": Path(gguf_path).name, "val_loss": loss, "val_perplexity": math.exp(loss), "tokens": count,
            "conversations": len(conversations), "chunks": n_chunks, "seconds": time.monotonic() - t0}


def score_gguf(
    gguf_path: str | Path,
    conversations: list[Conversation],
    system_prompt: str | None,
    threads: int | None = None,
) -> dict:
    """Persona-token loss and perplexity of `gguf_path` on `conversations`."""
    t0 = time.monotonic()
    llm, ctx = open_for_scoring(gguf_path, threads=threads)
    special = llama_special_ids(llm)

    def encode(text: str) -> list[int]:
        return llm.tokenize(text.encode("utf-8"), add_bos=False, special=False) if text else []

    rendered = (render_ids(with_system_prompt(conv, system_prompt), encode, special, loss="persona")
                for conv in conversations)
    total, count, n_chunks = target_nll(llm, ctx, rendered)
    llm.close()
    if count == 0:
        raise ValueError("no persona tokens to score: do the conversations have assistant turns?")
    loss = total / count
    return {
        "model": Path(gguf_path).name,
        "val_loss": loss,
        "val_perplexity": math.exp(loss),
        "tokens": count,
        "chunks": n_chunks,
        "conversations": len(conversations),
        "seconds": time.monotonic() - t0,
    }


# ----------------------------------------------------------------------------- generation
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
        import os

        import llama_cpp

        self.bundle = bundle
        self.n_ctx = bundle.manifest.model.context_length
        threads = threads or os.cpu_count() or 1
        self.llm = llama_cpp.Llama(model_path=str(model_path or bundle.model_path), n_ctx=self.n_ctx,
                                   n_threads=threads, n_threads_batch=threads, verbose=False)

    def _prompt(self, context: Conversation, max_tokens: int) -> str | None:
        from .chat import defuse

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
        """The persona's next turn after `context` (None when it cannot fit the context)."""
        prompt = self._prompt(context, max_tokens)
        if prompt is None:
            return None
        s, p = self.bundle.manifest.sampling, self.bundle.manifest.persona
        out = complete(self.llm, prompt, max_tokens=max_tokens, temperature=s.temperature, top_p=s.top_p,
                                         top_k=s.top_k, repeat_penalty=s.repeat_penalty, stop=list(p.stop), seed=seed)
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


# ----------------------------------------------------------------------------- the report
@dataclass(frozen=True)
class Compared:
    """Another GGUF that answers the same held-out prompts as the bundle's model, for "Whose
    voice" and (the base) the Style table: same prompts, seeds, template, sampling and stops."""

    label: str  # its row: "base (untuned) Q4_K_M", "persona F32"
    path: Path
    role: str  # "base" (the untuned base or the parent: the Style table's base column) or "tuned"


@dataclass
class ReportOutcome:
    report_path: Path
    plot_path: Path
    style: object  # report.StyleResult
    probe: object  # report.ProbeResult
    voice: object  # voice.Authorship
    replies: dict[str, list[str]]  # each model's label in the report -> its replies, as measured


def write_report(
    bundle,
    val: list[Conversation],
    rows: list,
    out: str | Path | None = None,
    *,
    train: list[Conversation] | None = None,
    private: list[str] = (),
    blocklist: list[str] = (),
    prompts: int = STYLE_PROMPTS,
    samples: int = PROBE_SAMPLES,
    seed: int = DEFAULT_SEED,
    threads: int | None = None,
    val_note: str = "",
    checks: list[str] = (),
    compare: list[Compared] = (),
    label: str = "persona",
    data_sha256: str | None = None,
) -> ReportOutcome:
    """Generate, measure and write report.md (default BUNDLE/report.md) with the SVG beside it.

    `bundle`: a stratoecho.bundle.Bundle; build may pass one whose persona.toml is not written
    yet (`Bundle(out_dir, manifest)`). `rows`: report.PerplexityRow for each model scored
    (base, fine-tuned, each quantization). `train`: training conversations, for the authorship
    classifier and the share of generated words the owner used (neither without it).
    `private` / `blocklist`: the owner's strings for the privacy probe; they never appear in
    the report. `checks`: build's lines on the conversion check and the quantization.
    `compare`: other GGUFs that answer the same prompts as the bundle's model, whose replies
    are measured beside its own. `label`: the bundle's model in the report, with its
    quantization and "(flown)" after it. `data_sha256`: of val.jsonl, so that people's judgements
    (BUNDLE/judge, judge.py) are folded in only when made for this model on this data.
    """
    from . import judge_score, report, voice

    redactor = report.Redactor(private, blocklist)
    cases = reply_cases(val, prompts)
    gen = PersonaGenerator(bundle, threads=threads)
    try:
        flown = reply_rounds(gen, cases, seed)
        probe_texts = []
        for i in range(samples):
            context = [] if i % 2 == 0 or not cases else cases[(i // 2) % len(cases)][0]
            text = gen.reply(context, seed=seed + PROBE_SEED_OFFSET + i, max_tokens=bundle.manifest.sampling.max_tokens)
            probe_texts.append(text or "")
    finally:
        gen.close()
    others: list[tuple[Compared, list[list[str] | None]]] = []
    for c in compare:  # one model in memory at a time
        g = PersonaGenerator(bundle, threads=threads, model_path=c.path)
        try:
            others.append((c, reply_rounds(g, cases, seed)))
        finally:
            g.close()
        log.info("eval.compared", model=str(c.path), role=c.role, prompts=sum(r is not None for r in others[-1][1]))

    # A prompt that does not fit one model's context (None) is left out for every model, so
    # that all are measured on the same prompts.
    keep = [i for i in range(len(cases)) if flown[i] is not None and all(r[i] is not None for _, r in others)]
    generated = [t for i in keep for t in flown[i]]
    owner_turns = [m["content"] for c in val for m in c if m["role"] == "assistant"]
    train_vocab = report.vocabulary(m["content"] for c in (train or []) for m in c if m["role"] == "assistant")
    overlap = report.vocabulary_overlap(generated, owner_turns, train_vocab)
    if train is None:
        overlap["seen_share"] = None
    flown_label = f"{label} {bundle.manifest.model.quantization} (flown)"
    style = report.StyleResult(owner=report.style_figures(owner_turns), generated=report.style_figures(generated),
                               overlap=overlap, examples=[], prompts=len(keep), max_tokens=STYLE_MAX_TOKENS,
                               seed=seed, label=flown_label, distance=voice.style_distances(owner_turns, generated),
                               rounds=VOICE_ROUNDS)
    base = next(((c, [r[i] for i in keep]) for c, r in others if c.role == "base"), None)
    if base is not None:
        base_texts = [t for group in base[1] for t in group]
        style.base, style.base_label = report.style_figures(base_texts), base[0].label
        style.base_distance = voice.style_distances(owner_turns, base_texts)
    for j, k in enumerate(keep[:3]):
        context, owner_reply = cases[k]
        style.examples.append((context[-1]["content"], owner_reply, flown[k][0]) + ((base[1][j][0],) if base else ()))
    authorship = voice.authorship(train or [], val, [(c.label, c.role, [r[i] for i in keep]) for c, r in others]
                                  + [(flown_label, "flown", [flown[i] for i in keep])])
    probe = report.probe_privacy(probe_texts, redactor)

    report_path = Path(out) if out is not None else Path(bundle.root) / report.REPORT_FILE
    report_path.parent.mkdir(parents=True, exist_ok=True)
    plot_path = report_path.parent / report.PLOT_FILE
    model_sha = next((f.sha256 for f in bundle.manifest.files if f.path == bundle.manifest.model.file), None)
    judged = (judge_score.report_section(Path(bundle.root) / judge_score.JUDGE_DIR, model_sha, data_sha256)
              if model_sha else [])
    text = report.render_report(bundle.manifest, rows, style, probe, redactor, val_note=val_note, checks=checks,
                                voice=authorship, judged=judged)
    plot_path.write_text(report.size_vs_perplexity_svg(rows), encoding="utf-8")
    report_path.write_text(text, encoding="utf-8")
    flown_share = authorship.find("flown")
    log.info("eval.report", report=str(report_path), privacy=probe.verdict, hits=len(probe.hits),
             style_replies=len(generated), voice_share=flown_share.share.share if flown_share else None)
    measured = {c.label: [t for i in keep for t in r[i]] for c, r in others} | {flown_label: generated}
    return ReportOutcome(report_path, plot_path, style, probe, authorship, measured)


# ----------------------------------------------------------------------------- command line
def add_parser(sub) -> None:
    import argparse
    import textwrap

    p = sub.add_parser(
        "eval",
        help="held-out perplexity, whose voice, style figures and a privacy probe of a persona bundle; writes report.md",
        description=textwrap.fill(
            "Score DIR/val.jsonl with the bundle's GGUF through llama-cpp-python: mean negative "
            "log-likelihood of the persona's tokens (nats/token) and its exponential, the perplexity. "
            "Then let the persona answer messages from val.jsonl and compare its replies with the "
            "owner's (length, lines, casing, punctuation, emoji, questions, vocabulary) and by a classifier "
            "of whose voice a text has (trained on train.jsonl: the owner against the other speakers), search sampled "
            "generations for private values, and write BUNDLE/report.md, the size-vs-perplexity plot "
            "beside it and BUNDLE/Modelfile (for trying the persona in Ollama).", width=88, break_on_hyphens=False,
        ),
        epilog=(
            "privacy probe verdicts:\n"
            "  FAIL  a sample contains a --private string or a --blocklist entry\n"
            "  WARN  a sample contains a real-looking e-mail, phone, card, IBAN, IP, API key or\n"
            "        secret URL (invented: the training data held only placeholders such as <PHONE_1>)\n"
            "  PASS  nothing found\n"
            "\n"
            "example:\n"
            "  python -m host_training eval bundles/ada --data data/ada --private private.txt --strict\n"
            "\n"
            "exit status: 0 done (any verdict without --strict), 1 privacy probe FAIL with --strict,\n"
            "             2 bad input (no bundle, no val.jsonl, unreadable --private/--blocklist)"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("bundle", metavar="BUNDLE", help="persona bundle directory (holds persona.toml)")
    p.add_argument("--data", required=True, metavar="DIR",
                   help="output folder of `prepare`: val.jsonl is scored, train.jsonl teaches the voice classifier "
                        "and gives the owner's vocabulary")
    p.add_argument("--model", metavar="GGUF", help="score this GGUF instead of the bundle's (e.g. an F32 one)")
    p.add_argument("--base-model", metavar="GGUF", type=Path,
                   help="an untuned base model's GGUF (in the bundle's quantization, for a fair comparison): it "
                        "answers the same held-out messages, and the report shows its style and whose voice "
                        "it has beside the persona's")
    p.add_argument("--limit", type=int, metavar="N", help="score only the first N conversations")
    p.add_argument("--threads", type=int, metavar="N", help="CPU threads for llama.cpp (default: all)")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON to FILE ('-' for standard output)")
    rep = p.add_argument_group("report (style figures and privacy probe)")
    rep.add_argument("--report", metavar="PATH",
                     help="write the report here instead of BUNDLE/report.md; the SVG and the Modelfile go "
                          "beside it and the bundle is left untouched")
    rep.add_argument("--no-report", action="store_true",
                     help="perplexity only: no generation, no report, no Modelfile")
    rep.add_argument("--prompts", type=int, default=STYLE_PROMPTS, metavar="N",
                     help=f"val messages the persona answers for the style figures (default {STYLE_PROMPTS})")
    rep.add_argument("--samples", type=int, default=PROBE_SAMPLES, metavar="N",
                     help=f"generations the privacy probe searches (default {PROBE_SAMPLES}; 0 skips the probe)")
    rep.add_argument("--private", type=Path, metavar="FILE",
                     help="strings you know are private, one a line, matched anywhere in any case "
                          "(never written to the report)")
    rep.add_argument("--blocklist", type=Path, metavar="FILE",
                     help="prepare's --blocklist file (a word or /regex/ a line; # comments) to search for too")
    rep.add_argument("--seed", type=int, default=DEFAULT_SEED,
                     help=f"sampling seed for the style replies and probe samples (default {DEFAULT_SEED})")
    rep.add_argument("--strict", action="store_true", help="exit with status 1 when the privacy probe says FAIL")
    p.set_defaults(func=run)


def voice_line(authorship) -> str:
    """One line of eval's output: each set's share classified as the owner's."""
    if authorship.cv is None:
        return f"whose voice: not measured: {authorship.note}"
    shares = "; ".join(f"{s.label} {s.share.share:.0%} ({s.share.interval[0]:.0%}-{s.share.interval[1]:.0%})"
                       for s in authorship.sets if s.share.texts)
    return (f"whose voice (share classified as the owner's, 95 % interval; classifier balanced accuracy "
            f"{authorship.cv.balanced_accuracy:.2f}): {shares}")


def _quant_of(path: Path, bundle) -> str:
    """The quantization named in a model.<QUANT>.gguf file name, else '?'."""
    if path.name == bundle.manifest.model.file:
        return bundle.manifest.model.quantization
    parts = path.name.split(".")
    return parts[-2] if len(parts) >= 3 and parts[-1] == "gguf" else "?"


def run(args) -> int:
    from stratoecho.bundle import BundleError, load_bundle, sha256_file

    from . import report
    from .prepare import BlocklistError, load_blocklist

    try:
        bundle = load_bundle(args.bundle)
        if args.base_model is not None and not args.base_model.is_file():
            raise ValueError(f"--base-model {args.base_model}: no such file")
        val = load_conversations(Path(args.data) / "val.jsonl")
        private = report.load_private_strings(args.private) if args.private else []
        blocklist = load_blocklist(args.blocklist) if args.blocklist else []
    except (BundleError, DataError, BlocklistError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for name in ("limit", "prompts", "samples"):
        if getattr(args, name) is not None and getattr(args, name) < 0:
            print(f"error: --{name} must be 0 or more", file=sys.stderr)
            return 2
    all_val = val
    if args.limit is not None:
        val = val[: args.limit]
    if not val:
        print(f"error: {Path(args.data) / 'val.jsonl'} holds no conversations", file=sys.stderr)
        return 2
    report_path = Path(args.report) if args.report else bundle.root / report.REPORT_FILE
    listed = {(bundle.root / f.path).resolve() for f in bundle.manifest.files}
    if not args.no_report:
        clash = [q for q in (report_path, report_path.parent / report.PLOT_FILE) if q.resolve() in listed]
        if clash:
            print(f"error: {clash[0]} is listed in persona.toml's [[files]]; rewriting it would break the "
                  "bundle's checksums. Use --report PATH to write the report elsewhere.", file=sys.stderr)
            return 2
    model = Path(args.model) if args.model else bundle.model_path
    try:
        if is_chatml(bundle):
            result = score_gguf(model, val, bundle.manifest.persona.system_prompt, threads=args.threads)
        else:  # a base model's own template (build --base): scored through it
            result = score_gguf_template(model, val, bundle, threads=args.threads)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    recorded = bundle.manifest.eval.get("val_perplexity")
    if recorded is not None and not args.model:
        result["recorded_val_perplexity"] = recorded
    print(
        f"{result['model']}: val perplexity {result['val_perplexity']:.3f} (loss {result['val_loss']:.4f} nats/token) "
        f"over {result['tokens']} persona tokens in {result['conversations']} conversations"
        + (f"; persona.toml records {recorded:.3f}" if "recorded_val_perplexity" in result else "")
    )

    status = 0
    if not args.no_report:
        train_path = Path(args.data) / "train.jsonl"
        try:
            train = load_conversations(train_path) if train_path.is_file() else None
        except DataError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        rows = [report.PerplexityRow("this bundle" if not args.model else model.name, _quant_of(model, bundle),
                                     model.stat().st_size, result["val_perplexity"])]
        note = ""
        if len(val) < len(all_val):
            note = f"Scored on the first {len(val)} of {len(all_val)} conversations (--limit)."
        compare = [] if args.base_model is None else [
            Compared(f"base {args.base_model.name}", args.base_model, "base")]
        try:
            outcome = write_report(bundle, val, rows, report_path, train=train, private=private, blocklist=blocklist,
                                   prompts=args.prompts, samples=args.samples, seed=args.seed, threads=args.threads,
                                   val_note=note, compare=compare,
                                   data_sha256=sha256_file(Path(args.data) / "val.jsonl"))
            # The Modelfile goes beside the report: in the bundle by default (rewritten, but from
            # the same manifest it comes out the same; one that persona.toml checksums is left
            # alone), elsewhere with --report, so a read-only bundle is never touched.
            modelfile = report_path.parent / report.MODELFILE
            if modelfile.resolve() not in listed:
                report.write_modelfile(bundle.root, bundle.manifest, out_dir=report_path.parent)
        except OSError as e:
            print(f"error: cannot write the report: {e}", file=sys.stderr)
            return 2
        g, probe = outcome.style.generated, outcome.probe
        chars = g["chars"]["median"] if g["chars"] else float("nan")
        print(f"style: {g['turns']} replies, median {chars:.0f} characters "
              f"(owner {outcome.style.owner['chars']['median'] if outcome.style.owner['chars'] else float('nan'):.0f})")
        print(voice_line(outcome.voice))
        kinds = ", ".join(f"{k} {n}" for k, n in probe.by_kind.items())
        print(f"privacy probe: {probe.verdict.upper()} ({probe.samples} samples" + (f"; {kinds})" if kinds else ")"))
        print(f"report: {outcome.report_path} ({outcome.plot_path.name} beside it); Ollama: {modelfile}")
        result["style"] = {"owner": outcome.style.owner, "generated": outcome.style.generated,
                           "vocabulary": outcome.style.overlap}
        result["voice"] = outcome.voice.summary()
        result["privacy"] = probe.summary()
        result["report"] = str(outcome.report_path)
        if args.strict and probe.verdict == "fail":
            print("error: the privacy probe failed (--strict): a sample holds a string you named as private; "
                  f"see {outcome.report_path}", file=sys.stderr)
            status = 1
    if args.json:
        text = json.dumps(result, indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n", encoding="utf-8")
    return status


def score_gguf_ids(gguf_path, examples, threads: int | None = None) -> dict:
    """Persona-token loss of a GGUF through llama-cpp-python on the same token ids as training
    (score_gguf renders ChatML itself; a base model's template may be another)."""

    t0 = time.monotonic()
    llm, ctx = open_for_scoring(gguf_path, threads=threads)
    total, count, n_chunks = target_nll(llm, ctx, examples)
    llm.close()
    loss = total / max(count, 1)
    return {"model": Path(gguf_path).name, "val_loss": loss, "val_perplexity": math.exp(loss), "tokens": count,
            "chunks": n_chunks, "seconds": time.monotonic() - t0}


# ----------------------------------------------------------------------------- loading
