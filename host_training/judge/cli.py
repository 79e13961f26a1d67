"""`python -m host_training judge BUNDLE --data DIR`: a person judges whose voice a reply has.

Perplexity and style figures compare numbers; a friend who knows how the owner writes
compares voices. This makes the blind test for them:

  1. draw N of the owner's held-out replies (DIR/val.jsonl through evaluate.reply_cases) in an
     order shuffled with a seeded RNG;
  2. let the persona answer the same messages as `eval` does (evaluate.PersonaGenerator: the
     bundle's template, system prompt, sampling and stop strings; seed + the case's index),
     skipping pairs where it says nothing;
  3. make the two texts differ only in voice: privacy placeholders (<PHONE_1>) out of both,
     both cut to the persona's length in characters at a sentence or word end, with one marker;
  4. put the owner's reply on side A or B by the same RNG and write judge.html (judge_page.py,
     no key in it) and key.json (judge_score.py) into BUNDLE/judge/;
  5. later, `--score` folds the answers judges send back (BUNDLE/judge/answers/*.json, or
     `--answers FILE...`) into the share of pairs told apart, with its 95 % interval.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import sys
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from hashlib import sha256
from pathlib import Path

import structlog

from stratoecho.privacy import PLACEHOLDER

from ..evaluate import DEFAULT_SEED, PersonaGenerator, reply_cases
from ..evaluate.judge_score import (
    ANSWERS_DIR,
    JUDGE_DIR,
    KEY_FILE,
    PAGE_FILE,
    JudgeError,
    Key,
    load_key,
    read_answers,
    report_lines,
    summary,
)
from ..train.tokenizer import Conversation, load_conversations
from .page import Pair, render_page
from .words import page_words

log = structlog.get_logger(__name__)

DEFAULT_PAIRS = 20
MARKER = "[…]"  # where the page cut a text, the same on both sides
MIN_CHARS = 40  # never cut texts shorter than this, whatever the persona's length
CONTEXT_MESSAGES = 3  # the message answered and the two before it
CONTEXT_CHARS = 300
SENTENCE_END = ".!?…。！？"
CLOSED_SENTENCE_END = "。！？"  # these end a sentence with no space after them
REPLACED_DIR = "replaced"  # a page made again with --force: the old page, key and answers go here
_PLACEHOLDER_RUN = re.compile(r"[ \t]*" + PLACEHOLDER.pattern)


@dataclass(frozen=True)
class Reply:
    """The persona's reply: None when the message did not fit the context; `cut` when max_tokens
    stopped it (it may end in a half-written word)."""

    text: str | None
    cut: bool = False


@dataclass(frozen=True)
class Chosen:
    case: int  # index in reply_cases(val)
    context: Conversation
    owner: str  # cleaned
    persona: str  # cleaned
    persona_cut: bool


# ----------------------------------------------------------------------------- texts
def clean(text: str) -> str:
    """A reply as the page shows it: no privacy placeholders (the persona learnt them from scrubbed
    data, so "<PHONE_1>" would say nothing of voice but might say which side is which), no
    undecodable bytes, no trailing blanks. Both sides get the same treatment."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n")).replace("\ufffd", "")
    text = _PLACEHOLDER_RUN.sub("", text)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(line.strip() for line in text.split("\n"))).strip()


def shorten(text: str, limit: int, cut: bool = False) -> str:
    """`text` in at most `limit` characters (plus the marker): cut at its last sentence end if that
    keeps half, else at its last word end, and marked. A text that max_tokens stopped (`cut`)
    loses its last, maybe half-written, word even when it is short, and is marked too."""
    if len(text) <= limit and not cut:
        return text
    n = min(limit, len(text))
    word_ends = [p for p in range(1, n + 1) if p < len(text) and text[p].isspace() and not text[p - 1].isspace()]
    sentence_ends = [p for p in range(1, n + 1) if text[p - 1] in SENTENCE_END
                     and (p == len(text) or text[p].isspace() or text[p - 1] in CLOSED_SENTENCE_END)]
    if sentence_ends and sentence_ends[-1] >= n // 2:
        end = sentence_ends[-1]
    elif word_ends:
        end = word_ends[-1]
    elif sentence_ends:
        end = sentence_ends[-1]
    else:
        end = n  # one long word, or a script without spaces: cut where the limit is
    return f"{text[:end].rstrip()} {MARKER}"


def char_limit(chosen: list[Chosen]) -> int:
    """The persona's length in characters, which both sides are cut to: the median length of its
    replies that max_tokens stopped (what max_tokens comes to in its characters), else its
    longest reply. An owner's reply longer than the persona could ever write would give itself away."""
    stopped = sorted(len(c.persona) for c in chosen if c.persona_cut)
    limit = stopped[len(stopped) // 2] if stopped else max((len(c.persona) for c in chosen), default=0)
    return max(MIN_CHARS, limit)


def context_lines(context: Conversation, persona: str, someone: str = "Someone") -> tuple[tuple[str, str], ...]:
    """(speaker, text) of the last messages before the reply, system turns left out; `someone`
    (in the page's language) for a speaker without a name."""
    shown = [m for m in context if m["role"] != "system"][-CONTEXT_MESSAGES:]
    return tuple((persona if m["role"] == "assistant" else (m.get("name") or "").strip() or someone,
                  shorten(m["content"].strip(), CONTEXT_CHARS)) for m in shown)


# ----------------------------------------------------------------------------- pairs
def select(cases: list[tuple[Conversation, str]], reply: Callable[[Conversation, int], Reply], n: int,
           rng: random.Random) -> tuple[list[Chosen], Counter]:
    """Up to `n` usable pairs from `cases` in an order drawn by `rng`; `reply(context, case)` is the
    persona's. Also how many were skipped, and why."""
    order = list(range(len(cases)))
    rng.shuffle(order)
    chosen: list[Chosen] = []
    skipped: Counter = Counter()
    for case in order:
        if len(chosen) == n:
            break
        context, owner_reply = cases[case]
        owner = clean(owner_reply)
        if not owner:
            skipped["the owner's reply is only placeholders"] += 1
            continue
        r = reply(context, case)
        persona = clean(r.text or "")
        if r.text is None:
            skipped["the conversation does not fit the context"] += 1
        elif not persona:
            skipped["the persona said nothing"] += 1
        elif persona == owner:
            skipped["the persona repeated the owner's reply"] += 1
        else:
            chosen.append(Chosen(case, context, owner, persona, r.cut))
    return chosen, skipped


def make_pairs(chosen: list[Chosen], persona: str, rng: random.Random,
               someone: str = "Someone") -> tuple[list[Pair], dict[str, dict], int]:
    """(what the page shows, the key: pair id -> {"owner": "A"|"B", "case": i}, the length cut to)."""
    limit = char_limit(chosen)
    pairs, key = [], {}
    for number, c in enumerate(chosen, 1):
        owner, generated = shorten(c.owner, limit), shorten(c.persona, limit, cut=c.persona_cut)
        side = "A" if rng.random() < 0.5 else "B"
        a, b = (owner, generated) if side == "A" else (generated, owner)
        pairs.append(Pair(str(number), context_lines(c.context, persona, someone), a, b))
        key[str(number)] = {"owner": side, "case": c.case}
    return pairs, key, limit


def page_id(persona: str, model_sha256: str, data_sha256: str, pairs: list[Pair]) -> str:
    """Names a page by what it shows, so answers can only be scored with the key of that page."""
    shown = json.dumps([persona, model_sha256, data_sha256, [[p.id, p.context, p.a, p.b] for p in pairs]],
                       ensure_ascii=False)
    return sha256(shown.encode("utf-8")).hexdigest()[:16]


class _KeepsLastCompletion:
    """Stands in for PersonaGenerator's llama_cpp.Llama and keeps the last completion: reply() gives
    the text only, and whether max_tokens stopped it (finish_reason "length") decides how it is cut."""

    def __init__(self, llm) -> None:
        self._llm, self.last = llm, None

    def create_completion(self, *args, **kwargs):
        self.last = self._llm.create_completion(*args, **kwargs)
        return self.last

    def __getattr__(self, name):
        return getattr(self._llm, name)


def persona_replies(gen: PersonaGenerator, seed: int, max_tokens: int) -> Callable[[Conversation, int], Reply]:
    keeper = gen.llm = _KeepsLastCompletion(gen.llm)

    def reply(context: Conversation, case: int) -> Reply:
        text = gen.reply(context, seed=seed + case, max_tokens=max_tokens)
        return Reply(text, text is not None and keeper.last["choices"][0].get("finish_reason") == "length")

    return reply


# ----------------------------------------------------------------------------- the folder
def model_sha256(bundle) -> str:
    return next(f.sha256 for f in bundle.manifest.files if f.path == bundle.manifest.model.file)


def _answer_files(out: Path) -> list[Path]:
    return sorted((out / ANSWERS_DIR).glob("*.json")) if (out / ANSWERS_DIR).is_dir() else []


def refusal(out: Path, force: bool) -> str | None:
    """Why a page cannot be made in `out`, or None. A person's answers are never overwritten."""
    if out.exists() and not out.is_dir():
        return f"{out}: is a file, not a folder"
    answers = _answer_files(out)
    if answers and not force:
        return (f"{out / ANSWERS_DIR}: holds {len(answers)} answers file(s) made on the page there; `--score` reads "
                f"them; `--force` makes a new page and moves the old page, key and answers to {out / REPLACED_DIR}/")
    return None


def set_aside(out: Path) -> Path | None:
    """Move the previous page, key and answers to out/replaced/<page>/, where `--score --out` still
    reads them. Nothing to keep (no answers yet): the new page simply replaces the old."""
    if not _answer_files(out):
        return None
    try:
        old = load_key(out).page
    except JudgeError:
        old = "unknown-key-" + datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    dest, n = out / REPLACED_DIR / old, 2
    while dest.exists():
        dest, n = out / REPLACED_DIR / f"{old}-{n}", n + 1
    dest.mkdir(parents=True)
    for name in (PAGE_FILE, KEY_FILE, ANSWERS_DIR):
        if (out / name).exists():
            shutil.move(out / name, dest / name)
    log.info("judge.set_aside", to=str(dest))
    return dest


@dataclass(frozen=True)
class Made:
    out: Path
    page: str
    pairs: int
    max_chars: int
    skipped: Counter
    set_aside: Path | None


def make_page(bundle, data_dir: str | Path, out: str | Path, *, pairs: int = DEFAULT_PAIRS, seed: int = DEFAULT_SEED,
              threads: int | None = None, force: bool = False) -> Made:
    """Write OUT/judge.html and OUT/key.json (and an empty OUT/answers/) for `bundle`, a loaded
    stratoecho.bundle.Bundle. JudgeError (or tokenizer.DataError) saying what is wrong."""
    from stratoecho.bundle import sha256_file

    out, val_path = Path(out), Path(data_dir) / "val.jsonl"
    why = refusal(out, force)
    if why is not None:
        raise JudgeError(why)
    val = load_conversations(val_path)
    cases = reply_cases(val, sum(len(c) for c in val))  # every owner reply that answers a message
    if not cases:
        raise JudgeError(f"{val_path}: no message the owner answered; nothing to judge")
    rng = random.Random(seed)
    name = bundle.manifest.persona.name
    gen = PersonaGenerator(bundle, threads=threads)
    try:
        chosen, skipped = select(cases, persona_replies(gen, seed, bundle.manifest.sampling.max_tokens), pairs, rng)
    finally:
        gen.close()
    if len(chosen) < pairs:
        why = "; ".join(f"{reason}: {k}" for reason, k in skipped.items())
        raise JudgeError(f"{val_path}: only {len(chosen)} usable pairs among its {len(cases)} owner replies"
                         + (f" (skipped, {why})" if why else "") + f", fewer than --pairs {pairs}; ask for fewer")
    language = bundle.manifest.persona.language  # the owner's: the judges read it
    shown, sides, limit = make_pairs(chosen, name, rng, page_words(language)[1]["someone"])
    model, data = model_sha256(bundle), sha256_file(val_path)
    page = page_id(name, model, data, shown)
    key = Key(format="stratoecho-judge-key", version=1, page=page, persona=name, model=bundle.manifest.model.file,
              model_sha256=model, data_sha256=data, seed=seed, max_chars=limit,
              created=datetime.now(timezone.utc).isoformat(timespec="seconds"), pairs=sides)
    html = render_page(persona=name, page=page, model_sha256=model, data_sha256=data, pairs=shown, marker=MARKER,
                       language=language)
    moved = set_aside(out) if force else None
    (out / ANSWERS_DIR).mkdir(parents=True, exist_ok=True)
    (out / KEY_FILE).write_text(json.dumps(key.model_dump(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / PAGE_FILE).write_text(html, encoding="utf-8")
    log.info("judge.page", page=str(out / PAGE_FILE), pairs=len(shown), max_chars=limit,
             skipped=sum(skipped.values()), owner_on_a=sum(s["owner"] == "A" for s in sides.values()))
    return Made(out, page, len(shown), limit, skipped, moved)


def add_answers(judge_dir: str | Path, files: list[str | Path]) -> list[Path]:
    """Check each answers file against the folder's key and copy it into answers/ (under its own name,
    numbered when another file has it). Files made for another model or data are left out with a
    warning; JudgeError for a malformed one. The copies made."""
    judge_dir = Path(judge_dir)
    key = load_key(judge_dir)
    dest_dir = judge_dir / ANSWERS_DIR
    checked = [(Path(f), read_answers(f, key)) for f in files]  # all checked before any is copied
    dest_dir.mkdir(parents=True, exist_ok=True)
    added = []
    for path, answers in checked:
        if answers is None:
            continue
        data, target, n = path.read_bytes(), dest_dir / f"{path.stem}.json", 2
        while target.exists() and target.read_bytes() != data:
            target, n = dest_dir / f"{path.stem}-{n}.json", n + 1
        if not target.exists():
            target.write_bytes(data)
            added.append(target)
    return added


# ----------------------------------------------------------------------------- command line
def add_parser(sub) -> None:
    import argparse
    import textwrap

    p = sub.add_parser(
        "judge",
        help="a blind test for people: a page of pairs (the owner's real reply and the persona's) "
             "to pick the owner's from; --score folds their answers",
        description=textwrap.fill(
            "Make BUNDLE/judge/judge.html: N messages from DIR/val.jsonl, each with two replies, the owner's "
            "real one and the persona's, in random order. Send the page to someone who knows how the owner "
            "writes; they pick the reply they think is the owner's and save their answers as a JSON file from "
            "the page. Put the files they send back in BUNDLE/judge/answers/ (or give them with --answers) and "
            "run with --score: the share of pairs told apart, with its 95 % interval. 50 % means the persona "
            "cannot be told from the owner; 100 % means it always can. The key (which side is real) stays in "
            "BUNDLE/judge/key.json: do not send it.", width=88, break_on_hyphens=False),
        epilog=(
            "examples:\n"
            "  python -m host_training judge build/persona --data build/data           # make the page\n"
            "  python -m host_training judge build/persona --answers ~/Downloads/answers-*.json\n"
            "  python -m host_training judge build/persona --score                     # the figures\n"
            "\n"
            "the page holds N of the owner's real messages and the messages they answered (private values\n"
            "already replaced by prepare): send it only to someone who may read them.\n"
            "\n"
            "exit status: 0 done, 2 bad input (no bundle, no val.jsonl, too few usable pairs, answers\n"
            "             already in the folder without --force, a malformed or mismatched answers file)"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("bundle", metavar="BUNDLE", help="persona bundle directory (holds persona.toml)")
    p.add_argument("--data", metavar="DIR", help="output folder of `prepare`, holding val.jsonl (needed to make a page)")
    p.add_argument("--pairs", type=int, default=DEFAULT_PAIRS, metavar="N",
                   help=f"pairs on the page (default {DEFAULT_PAIRS})")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED,
                   help=f"seed for drawing the pairs, the persona's sampling and the sides (default {DEFAULT_SEED})")
    p.add_argument("--out", metavar="DIR", help=f"the judge folder (default BUNDLE/{JUDGE_DIR})")
    p.add_argument("--threads", type=int, metavar="N", help="CPU threads for llama.cpp (default: all)")
    p.add_argument("--force", action="store_true",
                   help=f"make a new page even though answers are in the folder; the old page, key and answers "
                        f"move to OUT/{REPLACED_DIR}/PAGE/ (score them there with --score --out)")
    p.add_argument("--answers", nargs="+", metavar="FILE",
                   help="answers files judges sent back: checked, copied into OUT/answers/, then scored")
    p.add_argument("--score", action="store_true", help="print the judges' figures from OUT/answers/")
    p.set_defaults(func=run)


def run(args) -> int:
    from stratoecho.bundle import BundleError, load_bundle
    from stratoecho.bundle import sha256_file as file_sha256

    from ..train.tokenizer import DataError

    try:
        bundle = load_bundle(args.bundle)
        out = Path(args.out) if args.out else bundle.root / JUDGE_DIR
        if args.answers or args.score:
            if args.answers:
                for path in add_answers(out, args.answers):
                    print(f"added {path}")
            s = summary(out)
            if s is None:
                raise JudgeError(f"{out / KEY_FILE}: no judging page here; make one with "
                                 f"`python -m host_training judge {args.bundle} --data DIR`")
            if s["model_sha256"] != model_sha256(bundle):
                print(f"note: these answers judge {s['model']} sha256 {s['model_sha256'][:12]}…, not this bundle's "
                      "model (rebuilt since?); make a new page for it with --force", file=sys.stderr)
            if args.data and s["data_sha256"] != file_sha256(Path(args.data) / "val.jsonl"):
                print(f"note: the page was made from another val.jsonl than {Path(args.data) / 'val.jsonl'}",
                      file=sys.stderr)
            print("\n".join(report_lines(s)).rstrip())
            return 0
        if not args.data:
            raise JudgeError("--data DIR is needed to make a page (prepare's output folder, holding val.jsonl); "
                             "--score reads the answers of a page already made")
        if args.pairs < 1:
            raise JudgeError("--pairs must be 1 or more")
        made = make_page(bundle, args.data, out, pairs=args.pairs, seed=args.seed, threads=args.threads,
                         force=args.force)
    except (BundleError, DataError, JudgeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if made.set_aside is not None:
        print(f"the previous page, key and answers are in {made.set_aside}")
    print(f"judge page: {made.out / PAGE_FILE} ({made.pairs} pairs, texts cut at {made.max_chars} characters)")
    print(f"send judge.html to someone who knows how {bundle.manifest.persona.name} writes; keep "
          f"{made.out / KEY_FILE} to yourself.")
    print(f"put the answers files they send back in {made.out / ANSWERS_DIR}/, then: "
          f"python -m host_training judge {args.bundle} --score")
    return 0
