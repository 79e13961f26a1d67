"""Which of llama.cpp's pre-tokenizers a byte-level BPE tokenizer.json describes.

llama.cpp's converter names a tokenizer's pre-tokenizer (`tokenizer.ggml.pre`) by a hash of
the token ids the tokenizer gives for a fixed check text. That identifies a published
tokenizer, vocabulary and all: a tokenizer trained here (our from-scratch persona, the tiny
models of the tests) or a base model's vocabulary extended for a persona hashes to nothing
it knows, and the converter stops. For those, and only those, the name is read from what
the tokenizer.json declares its pre-tokenizer to be — the same split the reference
tokenizer of each family declares — never guessed:

  llama.cpp name  tokenizer.json pre_tokenizer                            families
  gpt-2           ByteLevel(use_regex=true, add_prefix_space=false)       GPT-2, our from-scratch
  smollm          Sequence[Digits(individual_digits=true),                SmolLM, SmolLM2
                           ByteLevel(use_regex=true)]
  llama-bpe       Split(LLAMA3 regex, Isolated) + ByteLevel(no regex)     Llama 3, 3.1, 3.2
  qwen2           Split(QWEN2 regex, Isolated) + ByteLevel(no regex)      Qwen2, 2.5, 3
  gpt-4o          Split(GPT4O regex, Isolated) + ByteLevel(no regex)      Phi-4-mini

The regexes are those of the families' reference tokenizer.json files; llama.cpp's
src/llama-vocab.cpp splits with the same expressions (adapted to its regex engine) for each
name. A build then checks the result by behaviour: llama.cpp must split held-out text into
the same ids as the HF tokenizer (host_training.evaluate.verify), so a wrong entry here cannot ship.
"""

from __future__ import annotations

from pathlib import Path

GPT2 = "gpt-2"
SPLIT_REGEXES = {
    "qwen2": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
             r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    "llama-bpe": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    "gpt-4o": r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
              r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
              r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
}


class UnknownPreTokenizer(ValueError):
    """A pre-tokenizer llama.cpp has no name for: it would split text differently."""


def _byte_level(step: dict, *, regex: bool) -> bool:
    return (step.get("type") == "ByteLevel" and bool(step.get("use_regex", True)) == regex
            and not step.get("add_prefix_space"))


def name_for(tokenizer_json: dict, path: Path | str = "tokenizer.json") -> str:
    """llama.cpp's name for the pre-tokenizer `tokenizer_json` declares; UnknownPreTokenizer
    naming the file and what it declares when llama.cpp has none."""
    pre = tokenizer_json.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    kinds = [s.get("type") for s in steps]
    if len(steps) == 1 and _byte_level(steps[0], regex=True):
        return GPT2
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") and _byte_level(steps[1], regex=True):
        return "smollm"
    if kinds == ["Split", "ByteLevel"]:
        split, byte_level = steps
        regex = (split.get("pattern") or {}).get("Regex")
        name = next((n for n, r in SPLIT_REGEXES.items() if r == regex), None)
        if (name and split.get("behavior") == "Isolated" and not split.get("invert")
                and _byte_level(byte_level, regex=False)):
            return name
        raise UnknownPreTokenizer(
            f"{path}: pre-tokenizer Split(regex {regex!r}, {split.get('behavior')}) is not one llama.cpp implements "
            f"(known here: {GPT2}, smollm, {', '.join(SPLIT_REGEXES)}); llama.cpp would split text differently "
            "than the model was trained on")
    raise UnknownPreTokenizer(
        f"{path}: pre-tokenizer {' + '.join(map(str, kinds)) or 'none'} is not one llama.cpp implements (known "
        f"here: {GPT2}, smollm, {', '.join(SPLIT_REGEXES)}); llama.cpp would split text differently than the model "
        "was trained on")
