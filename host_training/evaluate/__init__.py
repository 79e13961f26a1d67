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
in the report package):

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

A module each: `scoring` (1-3), `generation` (the replies), `reporting` (4-7), `cli` (the
command: its options and `run`); the names are re-exported here.
"""

from __future__ import annotations

from .cli import add_parser, run
from .generation import DEFAULT_SEED, PersonaGenerator, replies, reply_cases
from .reporting import Compared, write_report
from .scoring import is_chatml, next_token_nll, open_for_scoring, score_gguf, score_gguf_ids, score_gguf_template

__all__ = [
    "Compared",
    "DEFAULT_SEED",
    "PersonaGenerator",
    "add_parser",
    "is_chatml",
    "next_token_nll",
    "open_for_scoring",
    "replies",
    "reply_cases",
    "run",
    "score_gguf",
    "score_gguf_ids",
    "score_gguf_template",
    "write_report",
]
