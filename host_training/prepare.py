"""`python -m host_training prepare EXPORT... --owner OWNER --out DIR`: exports in, training data out.

One stage, read top to bottom: the options, then `run`, whose numbered steps are

    1. blocklist   read the caller's extra private words before touching any export
    2. read        every export file, format sniffed from its content; a file that cannot be
                   read is reported and skipped, a bad message inside one is counted and skipped
    3. owners      mark the owner's messages by stable id or display name (renames included)
    4. drop        service, forwarded, deleted, media-only, empty, repeated, duplicate owner messages
    5. scrub       every string that will be written: texts, titles, names, chat ids
    6. sessions    conversations and posts become examples with the owner as `assistant`,
                   weighted by quality tier (writing, long-form, chat)
    7. split       train/val by session and by time: every val session after every train
                   session (or whole chats held out, --val-split chat)
    8. write       DIR/messages.jsonl, train.jsonl, val.jsonl, report.json, each via a temp file
                   and a rename, so DIR never holds a half-written or unscrubbed file

Nothing is written before step 8, so no private value reaches DIR unscrubbed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path

import structlog
from tqdm import tqdm

from host_training import sessions as S
from host_training.ingest import (
    ID_LIKE,
    iso_utc,
    IngestError,
    Message,
    authors_seen,
    discover,
    drop_reason,
    mark_owners,
)
from host_training.pseudonyms import pseudonymise
from stratoecho.privacy import PrivacyScrubber, escape_special_tokens

log = structlog.get_logger(__name__)

OUTPUT_FILES = ("messages.jsonl", "train.jsonl", "val.jsonl", "report.json")
TOKEN_METHOD = (
    "approximate: ceil(characters / 4) summed over every turn's content (the usual figure for "
    "English and BPE tokenizers); the base model's tokenizer gives the real count"
)


# ---------------------------------------------------------------------------------------------
# Options


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a fraction in [0, 1)")
    return value


def _positive(kind: type) -> Callable[[str], float | int]:
    def parse(text: str):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text} must be above 0")
        return value

    parse.__name__ = kind.__name__
    return parse


def _weights(text: str) -> dict[str, float]:
    weights = dict(S.DEFAULT_WEIGHTS)
    for part in filter(None, (p.strip() for p in text.split(","))):
        tier, _, value = part.partition("=")
        if tier.strip() not in weights:
            raise argparse.ArgumentTypeError(f"unknown tier {tier.strip()!r} in {text!r}; tiers: {', '.join(weights)}")
        try:
            weights[tier.strip()] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part!r}: the weight must be a number, as in writing=3") from None
        if not 0 < weights[tier.strip()] <= 100:
            raise argparse.ArgumentTypeError(f"{part!r}: a weight must be above 0 and at most 100")
    return weights


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "prepare",
        help="turn chat exports and posts into scrubbed training data (messages, train, val, report)",
        description=(
            "Read exports (Telegram JSON, WhatsApp .txt, Markdown/plain-text posts; the format is\n"
            "recognised from each file's content), keep the owner's conversations, replace private\n"
            "values (e-mail, phone, card, IBAN, IP, secret URLs, your --blocklist) with placeholders\n"
            "such as <PHONE_1>, and write DIR/messages.jsonl, DIR/train.jsonl, DIR/val.jsonl and\n"
            "DIR/report.json. Nothing is written until everything is scrubbed."
        ),
        epilog=(
            "example:\n"
            "  python -m host_training prepare ~/Downloads/Telegram/result.json posts/ \\\n"
            '      --owner user5550101 --owner "Ada Lindqvist" --blocklist private.txt --out data/ada\n'
            "\n"
            "exit status: 0 done (files that could not be read are listed in report.json),\n"
            "             2 nothing usable (no readable export, no message by the owner, bad blocklist)"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = p.add_argument_group("what to read")
    what.add_argument(
        "exports",
        nargs="+",
        metavar="EXPORT",
        help="export file or folder (folders are searched; attachments are passed over)",
    )
    what.add_argument(
        "--owner",
        action="append",
        required=True,
        metavar="OWNER",
        help=(
            "the person the persona speaks as: a Telegram id such as user5550101 (stable across "
            "renames; see from_id in result.json) or a display name as it appears in the exports, "
            'matched case-insensitively. Repeat for aliases: --owner user5550101 --owner "Ada Lindqvist"'
        ),
    )
    what.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder (created if missing)")

    privacy = p.add_argument_group("privacy")
    privacy.add_argument(
        "--pseudonyms",
        action="store_true",
        help=(
            "replace every other participant's name with a stable pseudonym (Person 1, Person 2...) "
            "as author, chat name and whole word in texts; the owner keeps their name"
        ),
    )
    privacy.add_argument(
        "--blocklist",
        type=Path,
        metavar="FILE",
        help=(
            "extra things to remove: one entry a line, either a word or phrase (whole words, any "
            "case) or /regex/ (case-insensitive); blank lines and lines starting with # are ignored"
        ),
    )

    conv = p.add_argument_group("conversations")
    conv.add_argument(
        "--session-gap-minutes",
        type=_positive(float),
        default=S.DEFAULT_GAP_MINUTES,
        metavar="MIN",
        help="a silence longer than this starts a new conversation (minutes, default %(default)g)",
    )
    conv.add_argument(
        "--max-turns",
        type=_positive(int),
        default=S.DEFAULT_MAX_TURNS,
        metavar="N",
        help="turns per training example at most; longer conversations are cut (default %(default)d)",
    )
    conv.add_argument(
        "--max-chars",
        type=_positive(int),
        default=S.DEFAULT_MAX_CHARS,
        metavar="N",
        help="characters per training example at most, ~4 per token (default %(default)d)",
    )
    conv.add_argument(
        "--dedup-min-chars",
        type=int,
        default=S.DEFAULT_DEDUP_MIN_CHARS,
        metavar="N",
        help=(
            "repeats of the owner's messages this long or longer are dropped; shorter ones "
            '("ok", "haha") are kept as part of the conversation (characters, default %(default)d)'
        ),
    )

    conv.add_argument(
        "--weights",
        type=_weights,
        default=dict(S.DEFAULT_WEIGHTS),
        metavar="TIER=W,...",
        help=(
            "how much each quality tier counts in training: writing (posts, e-mail), long (chats where "
            f"the owner's turns average {S.LONG_CHARS}+ characters), chat (default "
            + ",".join(f"{k}={v:g}" for k, v in S.DEFAULT_WEIGHTS.items()) + ")"
        ),
    )
    conv.add_argument(
        "--train-all-speakers",
        action="store_true",
        help=(
            "learn every speaker's turns, not only the owner's: conversations without the owner become "
            "examples too, and every example is marked \"train\": \"all\" for `build`"
        ),
    )

    split = p.add_argument_group("train/val split")
    split.add_argument(
        "--val-fraction",
        type=_fraction,
        default=0.1,
        metavar="F",
        help=(
            "share of conversations held out for validation (default %(default)g; with 2 or more "
            "sessions val gets at least one unless F is 0)"
        ),
    )
    split.add_argument(
        "--val-split",
        choices=("time", "chat"),
        default="time",
        help=(
            "time (default): the latest sessions are held out, every one starting after every training "
            "session ended (sessions across the cut are left out, counted in report.json); chat: whole "
            "chats are held out, chosen by --seed"
        ),
    )
    split.add_argument(
        "--seed",
        type=int,
        default=1337,
        help="seed for --val-split chat: same exports and seed, same split (default %(default)d)",
    )
    p.set_defaults(func=run)
    return p


# ---------------------------------------------------------------------------------------------
# Helpers at the edges (files in, files out)


class BlocklistError(Exception):
    """A --blocklist file that cannot be read or holds a bad pattern (file:line in the message)."""


def load_blocklist(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise BlocklistError(f"{path}: cannot read the blocklist: {e}") from e
    entries = []
    for number, line in enumerate(lines, start=1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        if len(entry) > 2 and entry.startswith("/") and entry.endswith("/"):
            try:
                re.compile(entry[1:-1])
            except re.error as e:
                raise BlocklistError(f"{path}:{number}: not a valid regular expression: {e}") from e
        entries.append(entry)
    return entries


def read_exports(paths: Iterable[str], owners: list[str]) -> tuple[list[Message], list[dict], list[str]]:
    """(messages, one summary per file read, problems naming each file that gave nothing)."""
    messages: list[Message] = []
    inputs: list[dict] = []
    problems: list[str] = []
    seen: set[Path] = set()
    for arg in paths:
        found, why = discover(arg)
        problems += why
        for path, reader_cls in found:
            if path.resolve() in seen:
                continue  # the same file named twice (a folder and a file inside it)
            seen.add(path.resolve())
            reader = reader_cls(path)
            try:
                got = list(tqdm(reader.read(owners), desc=f"read {path.name}", unit="msg", disable=None, leave=False))
            except IngestError as e:
                problems.append(str(e))
                log.error("export skipped", file=str(path), error=str(e))
                continue
            if not got:
                skipped = sum(reader.stats.skipped.values())
                first = f"; first: {reader.stats.errors[0]}" if reader.stats.errors else ""
                problems.append(f"{path}: {reader.format} export with no usable message ({skipped} skipped{first})")
            messages += got
            inputs.append({
                "path": str(path),
                "format": reader.format,
                "messages": len(got),
                "skipped": dict(reader.stats.skipped),
                "repaired": dict(reader.stats.repaired),
                "errors": reader.stats.errors,
            })  # fmt: skip
    return messages, inputs, problems


def write_atomically(out: Path, files: dict[str, Iterable[str]]) -> None:
    """Write every file to a temp name first, then rename them all: a crash or a full disk
    leaves the previous outputs, never a truncated one."""
    out.mkdir(parents=True, exist_ok=True)
    staged: list[tuple[Path, Path]] = []
    try:
        for name, lines in files.items():
            tmp = out / f".{name}.{os.getpid()}.tmp"
            staged.append((tmp, out / name))
            with open(tmp, "w", encoding="utf-8", newline="\n") as f:
                for line in lines:
                    f.write(line + "\n")
                f.flush()
                os.fsync(f.fileno())
        for tmp, final in staged:
            os.replace(tmp, final)
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)


def jsonl(records: Iterable[dict]) -> Iterable[str]:
    return (json.dumps(r, ensure_ascii=False) for r in records)


def _counts(c: Counter) -> dict[str, int]:
    return dict(sorted(c.items(), key=lambda kv: (-kv[1], kv[0])))


def _say(c: Counter) -> str:
    return ", ".join(f"{k} {v}" for k, v in _counts(c).items()) or "none"


# ---------------------------------------------------------------------------------------------
# The stage


def run(args: argparse.Namespace) -> int:
    owners = [o.strip() for o in args.owner if o.strip()]
    if not owners:
        print("error: --owner is empty; give the owner's Telegram id or display name", file=sys.stderr)
        return 2

    # -- 1. blocklist: a privacy setting that cannot be read stops the run before any reading
    try:
        blocklist = load_blocklist(args.blocklist) if args.blocklist else []
    except BlocklistError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    scrubber = PrivacyScrubber(blocklist)

    # -- 2. read every export; what cannot be read is named and skipped
    messages, inputs, problems = read_exports(args.exports, owners)
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    if not messages:
        tried = "\n  ".join(problems) or "(no files)"
        print(f"error: nothing could be read from {', '.join(args.exports)}:\n  {tried}", file=sys.stderr)
        return 2
    seen_total = len(messages) + sum(sum(i["skipped"].values()) for i in inputs)

    # -- 3. owners: by id or name; an id once seen under an owner name is the owner everywhere
    messages, match = mark_owners(messages, owners)
    for name, ids in match.ambiguous.items():
        log.warning("owner name matches several ids; all are taken as the owner", name=name, ids=sorted(ids))
    if not any(m.is_owner for m in messages):
        print(
            f"error: no message matched --owner {' / '.join(owners)}. Most frequent authors: "
            f"{'; '.join(authors_seen(messages)) or 'none'}",
            file=sys.stderr,
        )
        return 2
    # The persona's name: a name given as --owner, else the owner's most used display name.
    names = [o for o in owners if not ID_LIKE.match(o)]
    owner_names = Counter(m.author for m in messages if m.is_owner and m.kind == "message" and m.author)
    persona = names[0] if names else (owner_names.most_common(1)[0][0] if owner_names else owners[0])
    messages = [replace(m, author=persona) if m.kind == "post" and not names else m for m in messages]

    # -- 4. drop what is not the owner's own voice or not text, and count why
    dropped: Counter[str] = Counter()
    for i in inputs:
        dropped.update(i["skipped"])
    kept: list[Message] = []
    identities: set[tuple] = set()
    for m in messages:
        reason = drop_reason(m)
        identity = (m.source, m.chat_id, m.msg_id, m.ts, m.author_id, m.text)
        if reason is None and identity in identities:
            reason = "repeated"  # the same message in two exports that overlap
        if reason:
            dropped[reason] += 1
            continue
        identities.add(identity)
        kept.append(m)
    kept, dups = S.dedupe_owner(kept, args.dedup_min_chars)
    dropped.update(dups)

    # -- 5. scrub every string that will be written, then break special-token strings.
    # Names and ids repeat on every message: scrub each distinct one once (and count it once).
    pii_text: Counter[str] = Counter()
    pii_names: Counter[str] = Counter()
    escaped = 0
    name_cache: dict[str, str] = {}

    def clean(value: str, counts: Counter[str]) -> str:
        nonlocal escaped
        value, found = scrubber.scrub(value)
        counts.update(found)
        value, n = escape_special_tokens(value)
        escaped += n
        return value

    def clean_name(value: str) -> str:
        if value not in name_cache:
            name_cache[value] = clean(value, pii_names)
        return name_cache[value]

    scrubbed = [
        replace(
            m,
            text=clean(m.text, pii_text),
            title=clean(m.title, pii_text),
            chat_id=clean_name(m.chat_id),
            chat_name=clean_name(m.chat_name),
            msg_id=clean_name(m.msg_id),
            author_id=clean_name(m.author_id),
            author=clean_name(m.author),
        )
        for m in tqdm(kept, desc="scrub", unit="msg", disable=None)
    ]
    scrubbed.sort(key=lambda m: (m.source, m.chat_id, m.ts))
    persona = clean_name(persona)
    pseudonyms: dict[str, str] = {}
    if args.pseudonyms:
        scrubbed, pseudonyms = pseudonymise(scrubbed)

    # -- 6. sessions and posts become examples, weighted by tier
    sessions = S.split_sessions(scrubbed, args.session_gap_minutes)
    examples = S.chat_examples(sessions, persona, args.max_turns, args.max_chars, all_speakers=args.train_all_speakers)
    examples += S.post_examples((m for m in scrubbed if m.kind == "post"), persona, args.max_chars)
    examples = S.weigh(examples, args.weights)

    # -- 7. split by session: by time (val after train), or whole chats
    if args.val_split == "chat":
        split = S.split_by_chat(examples, args.val_fraction, args.seed)
    else:
        split = S.split_by_time(examples, args.val_fraction)
    train, val = split.train, split.val

    # -- 8. write the four files at once
    def tokens(exs: list[S.Example], role: str | None = None) -> int:
        return sum(S.approx_tokens(t.content) for e in exs for t in e.turns if role in (None, t.role))

    report = {
        "inputs": inputs,
        "problems": problems,
        "messages": {
            "seen": seen_total,
            "kept": len(scrubbed),
            "kept_owner": sum(1 for m in scrubbed if m.is_owner and m.kind == "message"),
            "kept_others": sum(1 for m in scrubbed if not m.is_owner),
            "kept_posts": sum(1 for m in scrubbed if m.kind == "post"),
            "dropped": _counts(dropped),
        },
        "pii_replaced": {"texts": _counts(pii_text), "names_and_ids": _counts(pii_names)},
        "special_tokens_escaped": escaped,
        "sessions": {
            "total": len(sessions),
            "with_owner": sum(1 for s in sessions if s.has_owner),
            "gap_minutes": args.session_gap_minutes,
        },
        "examples": {
            "train": len(train),
            "val": len(val),
            "chat": sum(1 for e in examples if e.kind == "chat"),
            "post": sum(1 for e in examples if e.kind == "post"),
            "left_out_at_cut": len(split.left_out),
            "tiers": _counts(Counter(e.tier for e in examples)),
        },
        "split": {
            "method": args.val_split,
            "cut": iso_utc(split.cut) if split.cut else None,
            "train_until": iso_utc(max(e.end for e in train)) if train else None,
            "val_from": iso_utc(min(e.start for e in val)) if val else None,
        },
        "tokens": {
            "method": TOKEN_METHOD,
            "train": tokens(train),
            "val": tokens(val),
            "train_assistant": tokens(train, "assistant"),
            "val_assistant": tokens(val, "assistant"),
        },
        "settings": {
            "owners": len(owners),
            "persona": persona,
            "blocklist_entries": len(blocklist),
            "val_fraction": args.val_fraction,
            "seed": args.seed,
            "max_turns": args.max_turns,
            "max_chars": args.max_chars,
            "dedup_min_chars": args.dedup_min_chars,
            "weights": args.weights,
            "train_all_speakers": args.train_all_speakers,
            "pseudonyms": len(pseudonyms),
        },
    }
    try:
        write_atomically(
            args.out,
            {
                "messages.jsonl": jsonl(m.record() for m in scrubbed),
                "train.jsonl": jsonl(e.record() for e in train),
                "val.jsonl": jsonl(e.record() for e in val),
                "report.json": [json.dumps(report, ensure_ascii=False, indent=2)],
            },
        )
    except OSError as e:
        print(f"error: cannot write to {args.out}: {e}", file=sys.stderr)
        return 2

    # -- 9. say what happened
    failed = f"; {len(problems)} problem(s), see report.json" if problems else ""
    print(f"read {seen_total} messages from {len(inputs)} file(s){failed}")
    print(f"kept {len(scrubbed)} ({report['messages']['kept_owner']} by the owner, "
          f"{report['messages']['kept_posts']} posts); dropped {sum(dropped.values())}: {_say(dropped)}")  # fmt: skip
    print(f"replaced private values: {_say(pii_text + pii_names)}; special tokens escaped: {escaped}")
    print(f"{len(sessions)} sessions ({report['sessions']['with_owner']} with the owner) -> "
          f"{len(examples)} examples: {len(train)} train, {len(val)} val; "
          f"~{report['tokens']['train'] + report['tokens']['val']} tokens (characters/4)")  # fmt: skip
    print(f"wrote {', '.join(str(args.out / f) for f in OUTPUT_FILES)}")
    return 0
