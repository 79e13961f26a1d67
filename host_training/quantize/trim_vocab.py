"""A multilingual base's vocabulary cut to what its owner's language needs, so that it fits a small board.

Why. Gemma 3 270M has 268 M parameters, 168 M of them in its 262,144-token vocabulary (640 wide,
tied). On a board both ends of that vocabulary cost memory: the embedding matrix (Q8_0 whatever the
file type, since rows of 640 are no multiple of 256: 170 MiB) and llama.cpp's compute buffer, which
holds a row of logits, one float per token of the vocabulary, for each token of a micro-batch
(stratoecho.boards.ModelShape). Its Q4_K_M persona needs 315 MB even at a context of 64 where a Pi
Zero 2 W gives the model 233 MB. A German owner, his own text and the language's commonest 30,000
words, needs 35,813 of the tokens (14 %); the other rows are other scripts, other languages, code.

How llama.cpp tokenizes (src/llama-vocab.cpp; what the kept set must respect):
  - special and user-defined tokens are cut out of the text first, by their text;
  - the rest is split into characters and adjacent symbols are merged, best first: for a
    SentencePiece vocabulary (tokenizer.ggml.model "llama") a pair whose concatenation is a
    token, by that token's score (ties: the leftmost); for a BPE vocabulary ("gpt2", which is
    what llama.cpp's converter makes of a Gemma 3 without tokenizer.model, such as the pinned
    base dequantized) a pair listed in tokenizer.ggml.merges, by its place in the list;
  - a final symbol that is a token is emitted, any other as its bytes (<0xXX> tokens, or the
    byte-level characters of a byte-level BPE).
So a vocabulary with tokens removed still tokenizes any text (the byte tokens stay), and it
tokenizes a text exactly as the full one does when every symbol a merge of that text made is kept:
the final tokens AND the intermediate ones their merges passed through. A merge whose result (or a
part) is gone is never made, and the path stops short of every token above it ("cut"). The merges a
token's own text makes alone are the merges that make it in any text (nothing outside its span takes
part), so `merge_path` of each kept token's text gives what it needs (`choose`), and a kept token
whose text no longer tokenizes to itself alone is cut (`cut_paths`, which the checks run).

What is kept (`choose`): the tokens llama.cpp makes of the owner's training text (and of the
rendered training conversations: template and system prompt); of the language's N commonest words
(wordfreq's list), each as "word", " word", "Word" and " Word"; of its letters, digits and the usual
punctuation, alone and after a space; of the payload's own prompt words in that language
(stratoecho/languages/LANG.toml); every token their merges pass through; every byte token; the
control tokens the GGUF's special-token keys or the training text name; the whitespace runs; the
emoji and other symbols (chat is full of them in every language). Ids keep their order, so the
special-token ids are remapped, not reordered.

`write` copies the GGUF with the kept rows of token_embd (and of output.weight where untied), the
kept entries of the token list, scores, types and merges, and every other key and tensor as they
are; `check` then compares it with the full GGUF in llama.cpp itself (same strings from the
owner's held-out text, the logits of kept tokens, no cut path). trimmed.py does the rest in the
build: when to trim, the held-out tokens in the trimmed ids, the trimmed model beside the whole one.
"""

from __future__ import annotations

import heapq
import re
import string
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

# The language's commonest words whose tokens are kept. Measured on Gemma 3 270M for the German
# sample owner (docs/training.md, "A persona on a Zero 2 W in any language"): 5,000 words keep
# 14,668 tokens, 20,000 29,073, 30,000 35,813, 50,000 46,072; his held-out text splits into the
# whole vocabulary's very tokens from 30,000 on (31, 35, 37 and 37 of 37 texts), where its bits per
# character match the whole model's; each 1,000 tokens cost ~2.7 MB on the board (a row of
# embeddings and a column of logits).
DEFAULT_WORDS = 30_000
# What the preflight sizes a trimmed vocabulary at, before the owner's tokens are counted (after
# training): a Latin-script owner with DEFAULT_WORDS words keeps ~36,000 of Gemma 3's 262,146
# (docs/training.md); the build refuses later if the kept set outgrows what fits.
PLAN_TOKENS = 40_000
# Punctuation and signs beyond ASCII that chat and the payload's prompts use in most Latin-script
# languages (quotes, dashes, ellipsis, degrees, minus, currency).
MARKS = "…–—„“”‚‘’«»‹›°−×·€£¥¢§¶©®™¿¡ªº½¼¾²³µ"
# GGUF token types (llama.cpp's llama_token_type)
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
TOKENS, SCORES, TYPES, MERGES = ("tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type",
                                 "tokenizer.ggml.merges")
ROWS = ("token_embd.weight", "output.weight")  # tensors with a row per token (output only when untied)
_BYTE_TOKEN = re.compile(r"<0x[0-9A-F]{2}>")
_SPECIAL_ID = re.compile(r"tokenizer\.ggml\.\w+_token_id")
SPACE = "\u2581"  # SentencePiece's escaped space, as the tokens spell it


class TrimError(RuntimeError):
    """The vocabulary cannot be trimmed, or the trimmed GGUF does not tokenize as the full one; says why."""


# ----------------------------------------------------------------------------- the vocabulary
@dataclass
class Vocab:
    """A GGUF's tokenizer as llama.cpp reads it."""

    model: str  # tokenizer.ggml.model: "llama" (merges by score) or "gpt2" (merges by rank)
    tokens: list[str]
    types: list[int]
    scores: list[float]
    merges: list[str]  # "left right", best first (BPE only)
    special: dict[str, int]  # tokenizer.ggml.*_token_id
    by_text: dict[str, int] = field(init=False)
    ranks: dict[tuple[str, str], int] = field(init=False)

    def __post_init__(self) -> None:
        # llama.cpp's token_to_id map: a text listed twice is the later id
        self.by_text = {t: i for i, t in enumerate(self.tokens)}
        self.ranks = {}
        for r, m in enumerate(self.merges):
            left, _, right = m.partition(" ")
            self.ranks.setdefault((left, right), r)

    def __len__(self) -> int:
        return len(self.tokens)


def read_vocab(reader) -> Vocab:
    """The tokenizer of a gguf.GGUFReader's file; TrimError for one llama.cpp does not merge as above."""
    f = reader.fields

    def get(key, default=None):
        return f[key].contents() if key in f else default

    model = str(get("tokenizer.ggml.model", ""))
    if model not in ("llama", "gpt2"):
        raise TrimError(f"tokenizer.ggml.model is {model!r}: only SentencePiece (llama) and BPE (gpt2) vocabularies "
                        "are trimmed (their merges are what the kept set is traced through)")
    tokens = list(get(TOKENS) or [])
    n = len(tokens)
    if not n:
        raise TrimError("the GGUF lists no tokens")
    special = {k: int(v.contents()) for k, v in f.items() if _SPECIAL_ID.fullmatch(k)}
    return Vocab(model, tokens, list(get(TYPES) or [NORMAL] * n), list(get(SCORES) or [0.0] * n),
                 list(get(MERGES) or []), special)


def merge_path(text: str, vocab: Vocab) -> tuple[list[str], list[str]]:
    """llama.cpp's merges of `text` (one piece between special tokens, spelt as the tokens are:
    SPACE for a space in SentencePiece): (the final symbols, every symbol a merge made, in
    order). Ties go to the leftmost pair, and a queued pair one of whose sides has merged since
    is dropped, as llama.cpp's queue does; a BPE's duplicate merge keeps its first rank."""
    known, ranks = vocab.by_text, vocab.ranks
    sym = list(text)  # one symbol per character, as llama.cpp splits UTF-8
    prev, nxt = list(range(-1, len(sym) - 1)), [*range(1, len(sym)), -1]
    queue: list[tuple[float, int, int, str]] = []

    def offer(left: int, right: int) -> None:
        if left < 0 or right < 0:
            return
        joined = sym[left] + sym[right]
        if vocab.model == "llama":  # SentencePiece: the best score first
            tid = known.get(joined)
            if tid is not None:
                heapq.heappush(queue, (-vocab.scores[tid], left, right, joined))
        else:  # BPE: the earliest merge first
            rank = ranks.get((sym[left], sym[right]))
            if rank is not None:
                heapq.heappush(queue, (rank, left, right, joined))

    for i in range(1, len(sym)):
        offer(i - 1, i)
    made = []
    while queue:
        _, left, right, joined = heapq.heappop(queue)
        if not sym[left] or not sym[right] or sym[left] + sym[right] != joined:
            continue  # a side has merged since: stale
        sym[left], sym[right] = joined, ""
        made.append(joined)
        nxt[left] = nxt[right]
        if nxt[right] >= 0:
            prev[nxt[right]] = left
        offer(prev[left], left)
        offer(left, nxt[left])
    return [s for s in sym if s], made


def _byte_tokens(vocab: Vocab) -> set[int]:
    """What a text falls back to: <0xXX> tokens (typed BYTE or not) and a byte-level BPE's 256
    byte characters (GPT-2's byte-to-unicode table)."""
    ids = {i for i, (t, ty) in enumerate(zip(vocab.tokens, vocab.types)) if ty == BYTE or _BYTE_TOKEN.fullmatch(t)}
    if vocab.model == "gpt2":
        from gguf.vocab import bytes_to_unicode  # noqa: PLC0415 - only for byte-level BPE

        ids |= {vocab.by_text[c] for c in bytes_to_unicode().values() if c in vocab.by_text}
    return ids


def _symbols(vocab: Vocab) -> set[int]:
    """Emoji and other symbols (alone or after a space): chat is full of them, whatever its
    language, and a persona that writes one through byte tokens may print <0xF0> on a BPE Gemma.
    About 1,800 of Gemma's 262,144 tokens."""
    import unicodedata

    def symbolic(c: str) -> bool:
        return unicodedata.category(c) in ("So", "Sk") or c in "\u200d\ufe0e\ufe0f" or 0x1F3FB <= ord(c) <= 0x1F3FF

    out = set()
    for i, (t, ty) in enumerate(zip(vocab.tokens, vocab.types)):
        bare = t.replace(SPACE, "")
        if ty == NORMAL and bare and all(symbolic(c) for c in bare):
            out.add(i)
    return out


def _blank(text: str) -> bool:
    return bool(text) and not text.replace(SPACE, " ").strip()


# ----------------------------------------------------------------------------- what to keep
@dataclass(frozen=True)
class Kept:
    """The ids kept (ascending, of the full vocabulary) and where they came from."""

    ids: list[int]
    of: int  # tokens in the full vocabulary
    language: str | None
    words: int  # the language's commonest words taken (0: none)
    sources: dict[str, int]  # tokens each source added first, in order: owner, words, letters, ...

    def figures(self) -> dict:
        """persona.toml [training.vocab_trim]'s part."""
        src = ["the owner's training text"] + ([f"the {self.words:,} commonest {self.language} words (wordfreq)"]
                                               if self.words else [])
        return dict(kept_tokens=len(self.ids), of_tokens=self.of, language=self.language or "", words=self.words,
                    source="; ".join(src + ["letters, digits and punctuation", "the payload's prompt words",
                                            "special and whitespace tokens", "emoji and symbols", "byte tokens",
                                            "the merges' intermediate tokens"]),
                    added_by=dict(self.sources))


def word_forms(language: str | None, words: int) -> tuple[list[str], int]:
    """(the texts whose tokens stand for the language: its `words` commonest words as "word", " word",
    "Word", " Word", then its letters, ASCII and MARKS alone and after a space; the number of words
    taken). No word list for the language (wordfreq has none): letters only, and a warning."""
    import wordfreq

    top: list[str] = []
    if language and words:
        if language in wordfreq.available_languages():
            top = wordfreq.top_n_list(language, words)
        else:
            log.warning("trim.no_word_list", language=language, then="the owner's text and the letters only")
    forms = []
    for w in top:
        cap = w[:1].upper() + w[1:]
        forms += [w, " " + w] + ([cap, " " + cap] if cap != w else [])
    chars = sorted(set("".join(top)) | set(string.ascii_letters + string.digits + string.punctuation) | set(MARKS))
    for c in chars:
        forms += [c, " " + c] + ([c.upper(), " " + c.upper()] if c.upper() != c and len(c.upper()) == 1 else [])
    return forms, len(top)


def payload_phrases(language: str | None) -> list[str]:
    """Every text of the payload's table for `language` (stratoecho/languages/LANG.toml: the musing
    prompts, outcome lines and claim words it asks and reads in), so that what the persona is asked
    on board tokenizes as it would untrimmed; none where the table is missing."""
    import tomllib

    if not language:
        return []
    import stratoecho

    path = Path(stratoecho.__file__).parent / "languages" / f"{language}.toml"
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    out: list[str] = []

    def walk(v) -> None:
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk(table)
    return out


def choose(gguf_path: str | Path, vocab: Vocab, texts: Iterable[str], *, ids: Iterable[Iterable[int]] = (),
           language: str | None = None, words: int = DEFAULT_WORDS) -> Kept:
    """The tokens to keep (module docstring): `texts` the owner's training messages, `ids` the
    training conversations as training tokenized them (template, system prompt), `language` ISO
    639-1 (None: no word list). llama.cpp's own tokenizer, on the full GGUF, makes the tokens."""
    import llama_cpp

    t0 = time.monotonic()
    llm = llama_cpp.Llama(model_path=str(gguf_path), vocab_only=True, verbose=False)
    order: dict[int, None] = {}  # kept ids, in the order they were found
    sources: dict[str, int] = {}

    def add(source: str, found: Iterable[int]) -> None:
        before = len(order)
        order.update((i, None) for i in found if 0 <= i < len(vocab))
        sources[source] = sources.get(source, 0) + len(order) - before

    def tokens_of(text: str, special: bool = False) -> list[int]:
        return llm.tokenize(text.encode("utf-8"), add_bos=False, special=special) if text else []

    try:
        add("owner", (i for row in ids for i in row))
        add("owner", (i for t in texts for i in tokens_of(t)))
        # ~150,000 forms, ~10 s: no bar of its own, which would take over the quantize stage's "types"
        forms, n_words = word_forms(language, words)
        add("words", (i for form in forms for i in tokens_of(form)))
        add("payload", (i for t in payload_phrases(language) for i in tokens_of(t, special=False)))
    finally:
        llm.close()
    named = set(vocab.special.values())
    add("special", (i for i, ty in enumerate(vocab.types)
                    if i in named or (ty == USER_DEFINED and _blank(vocab.tokens[i]))))
    add("symbols", _symbols(vocab))
    add("bytes", _byte_tokens(vocab))
    add("merges", _intermediates(vocab, list(order)))
    kept = Kept(sorted(order), len(vocab), language, n_words, sources)
    log.info("trim.chosen", kept=len(kept.ids), of=kept.of, language=language, words=n_words, added_by=sources,
             seconds=round(time.monotonic() - t0, 1))
    return kept


def _intermediates(vocab: Vocab, ids: Sequence[int]) -> set[int]:
    """Every token the merges of each of `ids` pass through (merge_path of its text alone).
    A token whose own text does not merge into it alone (which llama.cpp cannot make either) is
    counted and logged; the checks find it if it mattered."""
    out: set[int] = set()
    strays = 0
    for i in ids:
        text = vocab.tokens[i]
        if vocab.types[i] not in (NORMAL, USER_DEFINED) or len(text) < 2 or i in out or _BYTE_TOKEN.fullmatch(text):
            continue  # one character, or what no merge makes: a special or byte token
        final, made = merge_path(text, vocab)
        if final != [text]:
            strays += 1
            continue
        out.update(vocab.by_text[m] for m in made if m in vocab.by_text)
    if strays:
        log.info("trim.unmerged", tokens=strays, why="their text alone does not merge into them")
    return out


# ----------------------------------------------------------------------------- the trimmed GGUF
def kept_merges(vocab: Vocab, kept: Sequence[int]) -> list[str]:
    """The merges a trimmed BPE keeps, in order: both parts and the result among the kept tokens
    (or single characters, which every text starts from). A merge whose result is gone would make
    a symbol the vocabulary cannot emit."""
    texts = {vocab.tokens[i] for i in kept}
    out = []
    for m in vocab.merges:
        left, _, right = m.partition(" ")
        if left + right in texts and (left in texts or len(left) == 1) and (right in texts or len(right) == 1):
            out.append(m)
    return out


def write(src: str | Path, dst: str | Path, kept: Kept, reader=None) -> Path:
    """`src` with only the kept tokens (module docstring); every other key and tensor as it is.
    `reader`: src's gguf.GGUFReader when the caller has one (reading a 262k vocabulary takes a minute)."""
    import gguf
    import numpy as np

    t0 = time.monotonic()
    src, dst = Path(src), Path(dst)
    reader = reader or gguf.GGUFReader(str(src))
    vocab = read_vocab(reader)
    if len(vocab) != kept.of:
        raise TrimError(f"{src.name} lists {len(vocab)} tokens, the kept set was chosen from {kept.of}")
    rows = np.asarray(kept.ids, dtype=np.int64)
    new_id = {old: new for new, old in enumerate(kept.ids)}
    arch = str(reader.fields["general.architecture"].contents())
    tmp = dst.with_name(dst.name + ".tmp")
    w = gguf.GGUFWriter(str(tmp), arch=arch, endianess=reader.endianess)
    for key, fld in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue  # the header's own counts, and the key the writer adds itself
        vtype = fld.types[0]
        sub = fld.types[1] if vtype == gguf.GGUFValueType.ARRAY and len(fld.types) > 1 else None
        if key in (TOKENS, SCORES, TYPES):
            value = _pick(fld.contents(), kept.ids)
        elif key == MERGES:
            value = kept_merges(vocab, kept.ids)
        elif _SPECIAL_ID.fullmatch(key):
            old = int(fld.contents())
            if old not in new_id:
                continue  # names a token outside the vocabulary (llama.cpp ignores it too)
            value = new_id[old]
        else:
            value = fld.contents()
            if key == "general.alignment":
                w.data_alignment = int(value)
        w.add_key_value(key, value, vtype, sub_type=sub)
    tensors = []
    for t in reader.tensors:
        data = t.data
        if t.name in ROWS and data.shape[0] == len(vocab):
            data = np.ascontiguousarray(data[rows])  # one row per token, quantized rows as whole blocks
        elif t.name in ROWS:
            raise TrimError(f"{t.name} has {data.shape[0]} rows for {len(vocab)} tokens; cannot tell which row is whose")
        tensors.append((t, data))
        w.add_tensor_info(t.name, data.shape, data.dtype, data.nbytes, t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for _, data in tensors:  # a few seconds for Gemma's F32: the quantize stage's bar counts its types
        w.write_tensor_data(data)
    w.close()
    tmp.replace(dst)
    log.info("trim.written", path=str(dst), tokens=len(kept.ids), of=len(vocab), bytes=dst.stat().st_size,
             source_bytes=src.stat().st_size, seconds=round(time.monotonic() - t0, 1))
    return dst


def _pick(values: Sequence, ids: Sequence[int]) -> list:
    return [values[i] for i in ids]


# ----------------------------------------------------------------------------- checks in llama.cpp
def _piece(llm, tid: int, special: bool = False) -> bytes:
    """A token's text as llama.cpp writes it out (no space stripped at the start); llama-cpp-python's
    own token_to_piece returns a fixed 32-byte buffer, padding and all."""
    import ctypes

    import llama_cpp

    size = 64
    while True:
        buf = ctypes.create_string_buffer(size)
        n = llama_cpp.llama_token_to_piece(llm._model.vocab, tid, buf, size, 0, special)
        if n >= 0:
            return buf.raw[:n]
        size = -n


def spelt(llm, tid: int, special: bool = True) -> bytes:
    """The bytes a token stands for in what the model reads: a <0xXX> token its byte, which
    llama.cpp writes out literally where the GGUF types it NORMAL (a BPE Gemma's byte fallback)."""
    text = llm._model.token_get_text(tid)
    if _BYTE_TOKEN.fullmatch(text):
        return bytes([int(text[3:5], 16)])
    return _piece(llm, tid, special)


def cut_paths(full_gguf: str | Path, trimmed_gguf: str | Path, kept: Kept) -> tuple[list[str], int]:
    """(the kept tokens llama.cpp can no longer make, each of which the full vocabulary makes of its
    own text alone; how many were tried). Non-empty: the kept set lacks a token their merges pass
    through, and any text holding them is split otherwise than in training."""
    import llama_cpp

    full = llama_cpp.Llama(model_path=str(full_gguf), vocab_only=True, verbose=False)
    trim = llama_cpp.Llama(model_path=str(trimmed_gguf), vocab_only=True, verbose=False)
    cut, tried = [], 0
    try:
        for new, old in enumerate(kept.ids):
            if trim._model.token_get_attr(new) & llama_cpp.LLAMA_TOKEN_ATTR_NORMAL == 0:
                continue
            raw = _piece(full, old)
            if len(raw.decode("utf-8", "ignore")) < 2 or full.tokenize(raw, add_bos=False, special=False) != [old]:
                continue  # one character (no merge), or a token the full vocabulary does not make alone either
            tried += 1
            if trim.tokenize(raw, add_bos=False, special=False) != [new]:
                cut.append(raw.decode("utf-8", "replace"))
    finally:
        full.close()
        trim.close()
    return cut, tried


@dataclass(frozen=True)
class Check:
    """The trimmed GGUF against the full one, in llama.cpp."""

    texts: int  # held-out texts tokenized by both
    same_strings: int  # ... whose tokens spell the same text in both
    identical: int  # ... split into the very same tokens
    tokens_full: int
    tokens_trimmed: int
    positions: int  # logits compared
    max_abs_diff: float  # largest |trimmed - full| over the kept tokens' logits
    logit_scale: float  # max(1, largest |logit|)
    cut: list[str]  # kept tokens whose merge path is cut (cut_paths)
    reachable_tried: int

    @property
    def ok(self) -> bool:
        return self.same_strings == self.texts and not self.cut and self.max_abs_diff <= LOGIT_TOL * self.logit_scale

    def figures(self) -> dict:
        return dict(texts=self.texts, same_strings=self.same_strings, identical=self.identical,
                    tokens_full=self.tokens_full, tokens_trimmed=self.tokens_trimmed, positions=self.positions,
                    max_abs_diff=self.max_abs_diff, logit_scale=self.logit_scale, cut=self.cut[:20],
                    cut_count=len(self.cut), reachable_tried=self.reachable_tried, ok=self.ok)

    def message(self) -> str:
        why = []
        if self.same_strings != self.texts:
            why.append(f"{self.texts - self.same_strings} of {self.texts} held-out texts come out of the trimmed "
                       "vocabulary as other text")
        if self.cut:
            why.append(f"{len(self.cut)} kept tokens can no longer be made (their merge path is cut: "
                       + ", ".join(repr(c) for c in self.cut[:5]) + ")")
        if self.max_abs_diff > LOGIT_TOL * self.logit_scale:
            why.append(f"the kept tokens' logits differ by up to {self.max_abs_diff:.3g} (allowed "
                       f"{LOGIT_TOL * self.logit_scale:.3g}) though the weights are the same")
        return "the trimmed vocabulary does not do what the full one does: " + "; ".join(why)


LOGIT_TOL = 1e-3  # x the logit scale; the same weights give the same logits up to summation order
LOGIT_POSITIONS = 64  # tokens of held-out text whose logits are compared


def check(full_gguf: str | Path, trimmed_gguf: str | Path, kept: Kept, texts: Sequence[str],
          special: bool = True) -> Check:
    """Tokenize `texts` (the owner's held-out conversations, rendered: `special` tokens parsed) with
    both GGUFs and compare what the tokens spell; run the first LOGIT_POSITIONS tokens of the first
    text through both models and compare the logits of the kept tokens; look for cut paths."""
    import llama_cpp
    import numpy as np

    full = llama_cpp.Llama(model_path=str(full_gguf), vocab_only=True, verbose=False)
    trim = llama_cpp.Llama(model_path=str(trimmed_gguf), vocab_only=True, verbose=False)
    same = identical = n_full = n_trim = 0
    sample: list[int] = []
    try:
        for text in texts:
            a = full.tokenize(text.encode("utf-8"), add_bos=False, special=special)
            b = trim.tokenize(text.encode("utf-8"), add_bos=False, special=special)
            n_full, n_trim = n_full + len(a), n_trim + len(b)
            spelt_a = b"".join(spelt(full, i, special) for i in a)
            spelt_b = b"".join(spelt(trim, i, special) for i in b)
            same += spelt_a == spelt_b
            identical += [kept.ids[i] for i in b] == a
            if not sample:
                sample = b[:LOGIT_POSITIONS]
    finally:
        full.close()
        trim.close()
    diff, scale = 0.0, 1.0
    if len(sample) > 1:
        got = _logits(trimmed_gguf, sample)
        want = _logits(full_gguf, [kept.ids[i] for i in sample])[:, kept.ids]
        diff, scale = float(np.abs(got - want).max()), max(1.0, float(np.abs(want).max()))
    cut, tried = cut_paths(full_gguf, trimmed_gguf, kept)
    result = Check(len(texts), same, identical, n_full, n_trim, len(sample), diff, scale, cut, tried)
    log.info("trim.checked", **{k: v for k, v in result.figures().items() if k != "cut"})
    return result


def _logits(gguf_path: str | Path, ids: list[int]):
    """Logits at every position of `ids` (F32 KV cache, as the scoring does)."""
    import llama_cpp
    import numpy as np

    n = max(32, len(ids))
    llm = llama_cpp.Llama(model_path=str(gguf_path), n_ctx=n, n_batch=n, n_ubatch=n, logits_all=True,
                          type_k=0, type_v=0, verbose=False)  # 0: GGML_TYPE_F32
    try:
        llm.eval(ids)
        return np.asarray(llm.scores[: len(ids)], dtype=np.float64)
    finally:
        llm.close()
