"""`python -m host_training prepare EXPORT... --owner OWNER --out DIR`: exports in, training data out.

`prepare --list-authors EXPORT...` only reads, and prints each export's authors with the
--owner value for each (`list_authors`), so the owner can find themselves first.

One stage, read top to bottom: the options, then `run`, whose numbered steps are

    1. blocklist   read the caller's extra private words before touching any export
    2. read        every export file, format sniffed from its content; a file that cannot be
                   read is reported and skipped, a bad message inside one is counted and skipped
    3. owners      mark the owner's messages by stable id or display name (renames included),
                   count them per export, and warn of an export where --owner matched nobody
    4. drop        service, forwarded, deleted, media-only, empty, repeated, duplicate owner messages
    5. scrub       every string that will be written: texts, titles, names, chat ids
    6. sessions    conversations and posts become examples with the owner as `assistant`;
                   runs of the owner's "ok"s are capped
    7. split       train/val by session and by time: every val session after every train
                   session (or whole chats held out, --val-split chat)
    8. write       DIR/messages.jsonl, train.jsonl, val.jsonl, report.json, each via a temp file
                   and a rename, so DIR never holds a half-written or unscrubbed file; training
                   examples weighted by tier (writing 1, long-form 2, chat 3) and the policy
                   (tiers.py), validation never

Steps 2 to 5 run as one stream: each message is read, judged, scrubbed and put in a scratch
SQLite file in DIR (`spill.py`, only scrubbed text, deleted at the end), which also sorts
them; so memory follows the number of people and chats, never the number of messages, and
no private value reaches the disk unscrubbed.

Run again on the same --out DIR, it adds to what DIR holds rather than replacing it: the
messages of DIR/messages.jsonl are carried into the scratch store beside the new exports and
merged by stable keys (`accumulate.py`: the rule, the options that must match, the history
of runs in report.json).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import structlog
from tqdm import tqdm

from host_training import accumulate
from host_training import sessions as S
from host_training import tiers as T
from host_training.authors import ExportAuthors, fold
from host_training.ingest import (
    ID_LIKE,
    Author,
    IngestError,
    Message,
    counts_for_author,
    discover,
    drop_reason,
    iso_utc,
    owner_match,
)
from host_training.ingest.interview import SOURCE as INTERVIEW
from host_training.ingest.mbox import MboxReader, mail_id
from host_training.pseudonyms import Pseudonyms
from host_training.spill import Spill
from stratoecho.privacy import PrivacyScrubber, escape_special_tokens

log = structlog.get_logger(__name__)

SUMMARY_EXPORTS = 30  # exports listed one by one in the closing summary, besides those with a warning
INTERVIEW_CHAT = f"{INTERVIEW}:{INTERVIEW}"  # an example's chat: source and chat id
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


# --weights before tiers had numbers named them; the old names still work.
_OLD_TIER_NAMES = {"writing": 1, "long": 2, "long-form": 2, "chat": 3}


def _weights(text: str) -> dict[int, float]:
    """--weights 1=3,2=2,3=1: each tier's weight by hand; a tier not named keeps 1."""
    weights = {1: 1.0, 2: 1.0, 3: 1.0}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = (x.strip() for x in part.partition("="))
        tier = _OLD_TIER_NAMES.get(name) or (int(name) if name in ("1", "2", "3") else None)
        if tier is None:
            raise argparse.ArgumentTypeError(f"unknown tier {name!r} in {text!r}; tiers: 1 (writing), 2 (long-form), 3 (chat)")
        try:
            weights[tier] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part!r}: the weight must be a number, as in 1=3") from None
        if not 0 < weights[tier] <= 100:
            raise argparse.ArgumentTypeError(f"{part!r}: a weight must be above 0 and at most 100")
    return weights


def _tier(text: str) -> T.Override:
    try:
        return T.parse_override(text)
    except T.TierError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _ack_run(text: str) -> int | None:
    if text.strip().lower() == "off":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number of messages (0 or more) or off") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text}: expected 0 or more (0 drops every acknowledgement), or off")
    return value


def add_tier_options(p: argparse.ArgumentParser) -> None:
    tiers = p.add_argument_group(
        "tiers",
        "every input has a tier: 1 writing (Markdown/plain-text posts, journals), 2 long-form\n"
        "(mbox mail), 3 chat (Telegram, WhatsApp, Discord). A chat whose owner turns average\n"
        f"{T.LONG_CHARS}+ characters is long-form (2), unless --tier set its input. Training takes most\n"
        "of its tokens from tiers 1-2; report.json: tiers shows them before and after",
    )
    tiers.add_argument(
        "--tier",
        type=_tier,
        action="append",
        default=[],
        metavar="PATH=N",
        help=(
            "set the tier (1, 2 or 3) of the inputs at or under PATH: a file or folder as you would give it "
            "as EXPORT, or relative to an EXPORT folder (or to the folder of an EXPORT file). Repeat it; the "
            "most specific PATH wins. "
            "Example: --tier journal/=1 --tier old-mails.mbox=3. A PATH that names no input is an error"
        ),
    )
    how = tiers.add_mutually_exclusive_group()
    how.add_argument(
        "--top-tier-share",
        type=_fraction,
        default=T.DEFAULT_TOP_SHARE,
        metavar="F",
        help=(
            "the policy: at least this share of the tokens training learns from comes from tiers 1-2 when there "
            f"is chat too; writing and mail are repeated (at most {T.MAX_REPEAT:g} times), then chat thinned, "
            "to meet it. Validation is never weighted. 0 turns the policy off (default %(default)g)"
        ),
    )
    how.add_argument(
        "--weights",
        type=_weights,
        metavar="TIER=W,...",
        help=(
            "instead of the policy, each tier's weight by hand (times an example is seen per epoch), as in "
            "1=3,2=2,3=1; a tier not named gets 1. The old names writing, long and chat still work"
        ),
    )


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "prepare",
        help="turn chat exports and posts into scrubbed training data (messages, train, val, report)",
        description=(
            "Read exports (Telegram JSON, WhatsApp .txt, Markdown/plain-text posts; the format is\n"
            "recognised from each file's content), keep the owner's conversations, replace private\n"
            "values (e-mail, phone, card, IBAN, IP, secret URLs, your --blocklist) with placeholders\n"
            "such as <PHONE_1>, and write DIR/messages.jsonl, DIR/train.jsonl, DIR/val.jsonl and\n"
            "DIR/report.json. Nothing is written until everything is scrubbed.\n"
            "\n"
            "Run it again with new exports and the same --out DIR to add them: what DIR holds is\n"
            "kept, a message already there is not added twice, an edited one is updated, and\n"
            "report.json says what was new (docs/data.md, \"Adding new exports\")."
        ),
        epilog=(
            "examples:\n"
            "  python -m host_training prepare --list-authors ~/Downloads/Telegram/result.json posts/   # who is who\n"
            "  python -m host_training prepare ~/Downloads/Telegram/result.json posts/ \\\n"
            '      --owner user5550101 --owner "Ada Lindqvist" --blocklist private.txt --out data/ada\n'
            "\n"
            "exit status: 0 done (files that could not be read are listed in report.json),\n"
            "             2 nothing usable (no readable export, no message by the owner, bad blocklist\n"
            "               or a --tier that names no input)"
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
        metavar="OWNER",
        help=(
            "required: the person the persona speaks as: a Telegram or Discord id such as user5550101 "
            "(stable across renames), a mail address, or a display name as it appears in the exports, "
            'matched case-insensitively. Repeat for aliases: --owner user5550101 --owner "Ada Lindqvist". '
            "--list-authors shows who is who in each export"
        ),
    )
    what.add_argument("--out", type=Path, metavar="DIR",
                      help="required: output folder (created if missing); one that holds an earlier run's output "
                           "gets the new exports added to it, nothing it held is lost")
    what.add_argument(
        "--list-authors",
        action="store_true",
        help=(
            "only list each export's authors, most messages first, with the id to give as --owner "
            "(Telegram/Discord user..., mail address; WhatsApp has names only) and their real display "
            "names, so you can find yourself before preparing; with --owner, marks who it matches. "
            "Needs no --out and writes nothing: the names are printed on this machine only"
        ),
    )
    what.add_argument("--json", action="store_true", help="with --list-authors: print JSON instead of a table")

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
        "--max-ack-run",
        type=_ack_run,
        default=S.DEFAULT_MAX_ACK_RUN,
        metavar="N",
        help=(
            'at most N of the owner\'s one-word acknowledgements ("ok", "k", "yes", "lol", an emoji alone) in a '
            "row in a chat; the rest are dropped (report.json: messages.dropped.ack_run), so the persona does "
            "not learn to answer everything with ok. off keeps them all (default %(default)s)"
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
    add_tier_options(p)
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


def export_files(paths: Iterable[str]) -> tuple[list[tuple[Path, type]], list[str]]:
    """Every export file named or found under the arguments, once, with its reader class;
    and the problems naming each argument that gave none."""
    files: list[tuple[Path, type]] = []
    problems: list[str] = []
    seen: set[Path] = set()
    for arg in paths:
        found, why = discover(arg)
        problems += why
        for path, reader_cls in found:
            if path.resolve() not in seen:  # the same file named twice (a folder and a file in it)
                seen.add(path.resolve())
                files.append((path, reader_cls))
    return files, problems


class Staged:
    """Output files written under temp names and renamed together at `commit`: a crash or a
    full disk leaves the previous outputs, never a truncated or half-updated set."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self._files: dict[str, tuple[Path, object]] = {}

    def open(self, name: str):
        tmp = self.out / f".{name}.{os.getpid()}.tmp"
        handle = open(tmp, "w", encoding="utf-8", newline="\n")
        self._files[name] = (tmp, handle)
        return handle

    def commit(self) -> None:
        for _tmp, handle in self._files.values():
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
        for name, (tmp, _) in self._files.items():
            os.replace(tmp, self.out / name)
        self._files.clear()

    def abort(self) -> None:
        for tmp, handle in self._files.values():
            handle.close()
            tmp.unlink(missing_ok=True)
        self._files.clear()


def _said_problems(args, problems: list[str], read: int) -> bool:
    """Each file that could not be read, as a warning; False (said as an error) when nothing was."""
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    if not read:
        tried = "\n  ".join(problems) or "(no files)"
        print(f"error: nothing could be read from {', '.join(args.exports)}:\n  {tried}", file=sys.stderr)
    return bool(read)


def _counts(c: Counter) -> dict[str, int]:
    return dict(sorted(c.items(), key=lambda kv: (-kv[1], kv[0])))


def _say(c: Counter) -> str:
    return ", ".join(f"{k} {v}" for k, v in _counts(c).items()) or "none"


# ---------------------------------------------------------------------------------------------
# Who is the owner in each export: --list-authors, and the per-input counts of a real prepare


def _missing_options(args: argparse.Namespace) -> str | None:
    """What a real prepare lacks, said so the user can act (--list-authors needs neither)."""
    missing = []
    if args.json:
        missing.append("--json goes with --list-authors (prepare itself writes DIR/report.json)")
    if not args.owner or not any(o.strip() for o in args.owner):
        missing.append(
            "prepare needs --owner: who you are in the exports (a Telegram or Discord id such as user5550101, "
            "a mail address, or your display name; repeat it for each). To see each export's authors with "
            f"their ids: python -m host_training prepare --list-authors {shlex.join(args.exports)}"
        )
    if args.out is None:
        missing.append("prepare needs --out DIR: the folder for messages.jsonl, train.jsonl, val.jsonl and report.json")
    return "\nerror: ".join(missing) or None


def _mail_addresses(reader: MboxReader) -> dict[str, str]:
    """mail_<hash> -> the address it hides, for --list-authors only: the owner knows their
    address, not its hash (an address is as good an --owner as the hash)."""
    # Lower-cased, as the hash is: one spelling however the mails wrote it.
    return {mail_id(address): address.lower() for _, address in reader.senders()}


def list_authors(args: argparse.Namespace) -> int:
    """Every export's authors, most messages first, with the --owner value for each; writes
    nothing. Exit 2 when no message could be read from any export."""
    owners = [o.strip() for o in args.owner or () if o.strip()]
    files, problems = export_files(args.exports)
    read: list[tuple[str, str, Counter[Author], set[Author]]] = []
    addresses: dict[str, str] = {}
    total = 0
    for path, reader_cls in files:
        reader = reader_cls(path)
        tally: Counter[Author] = Counter()
        marked: set[Author] = set()  # the reader knows: posts, a data package, a Discord username
        got = 0
        try:
            for m in tqdm(reader.read(owners), desc=f"read {path.name}", unit="msg", disable=None, leave=False):
                got += 1
                if counts_for_author(drop_reason(m)):
                    tally[(m.source, m.author_id, m.author)] += 1
                    if m.is_owner:
                        marked.add((m.source, m.author_id, m.author))
            if isinstance(reader, MboxReader):
                addresses.update(_mail_addresses(reader))
        except IngestError as e:
            problems.append(str(e))  # what came before the damage is still listed
            if not got:
                continue
        total += got
        read.append((str(path), reader.format, tally, marked))
    if not _said_problems(args, problems, total):
        return 2

    match = owner_match({a for _, _, tally, _ in read for a in tally}, owners)
    exports = []
    for path, fmt, tally, marked in read:
        exports.append(ExportAuthors.of(path, fmt, tally, lambda a, marked=marked: a in marked or match.is_owner(*a)))
    if args.json:
        print(json.dumps({"inputs": [e.record(addresses) for e in exports], "problems": problems},
                         ensure_ascii=False, indent=2))
        return 0
    for i, export in enumerate(fold(exports)):
        print(*([""] if i else []), *export.table(addresses), sep="\n")
        if owners and export.missed:
            print(f"  (nobody here matches --owner {' / '.join(owners)})")
    return 0


def _owners_per_input(inputs: list[dict], tallies: list[Counter[Author]], is_owner: Callable[[Author], bool],
                      owners: Sequence[str]) -> list[ExportAuthors]:
    """Each input's authors once the owner is known; a warning for each where --owner matched nobody."""
    exports = [ExportAuthors.of(i["path"], i["format"], t, is_owner) for i, t in zip(inputs, tallies)]
    for e in exports:
        if e.missed:
            log.warning("no message in this export matched --owner", file=e.path, most_frequent=e.most_frequent(),
                        add=e.suggestion(owners))
    return exports


def _owners_in_report(inputs: list[dict], per_input: list[ExportAuthors], owners: Sequence[str],
                      clean_name: Callable[[str], str], pseudonyms: Pseudonyms | None) -> None:
    """inputs[].owner in report.json: names as messages.jsonl writes them (scrubbed, Person N
    under --pseudonyms, withheld where it has none), never the --owner values."""

    def name(value: str) -> str | None:
        return clean_name(value) if pseudonyms is None else pseudonyms.names.get(clean_name(value))

    for entry, export in zip(inputs, per_input):
        entry["owner"] = export.report(owners, clean_name, name)


def _print_owners_per_input(per_input: list[ExportAuthors], owners: Sequence[str]) -> None:
    """A line per export (a few hundred Discord channels: the first ones), every warning."""
    listed = left = 0
    for export in fold(per_input):
        if export.missed:
            print(f"  {export.summary()}\n    warning: {export.warning(owners)}")
        elif listed < SUMMARY_EXPORTS:
            print(f"  {export.summary()}")
            listed += 1
        else:
            left += 1
    if left:
        print(f"  ... and {left} more, each counted in report.json (inputs[].owner)")


# ---------------------------------------------------------------------------------------------
# The stage


def run(args: argparse.Namespace) -> int:
    if args.list_authors:
        return list_authors(args)
    missing = _missing_options(args)
    if missing:
        print(f"error: {missing}", file=sys.stderr)
        return 2
    owners = [o.strip() for o in args.owner if o.strip()]

    # -- 1. blocklist: a privacy setting that cannot be read stops the run before any reading
    try:
        blocklist = load_blocklist(args.blocklist) if args.blocklist else []
    except BlocklistError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:  # what an earlier run left in DIR: read back, or refused with what to do, before any work
        previous = accumulate.scan(args.out) if args.out.is_dir() else None
    except accumulate.PreviousError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    why = accumulate.refusals(previous, owners, args.pseudonyms, args.out) if previous else []
    for reason in why:
        print(f"error: {reason}", file=sys.stderr)
    if why:
        return 2
    files, problems = export_files(args.exports)
    try:  # a --tier that names no input stops the run before any reading, like a bad blocklist
        file_tiers = T.resolve_overrides((path for path, _ in files), args.exports, args.tier)
    except T.TierError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    created = not args.out.exists()
    try:
        spill = Spill(args.out)
    except OSError as e:
        print(f"error: cannot write to {args.out}: {e}", file=sys.stderr)
        return 2
    staged = Staged(args.out)
    try:
        rc = _run(args, owners, blocklist, files, problems, spill, staged, file_tiers, previous)
    except accumulate.PreviousError as e:
        print(f"error: {e}", file=sys.stderr)
        rc = 2
    except OSError as e:
        print(f"error: cannot write to {args.out}: {e}", file=sys.stderr)
        rc = 2
    finally:
        staged.abort()  # nothing left to abort after a commit
        spill.close()
    if rc != 0 and created:
        shutil.rmtree(args.out, ignore_errors=True)  # a failed run leaves no empty folder behind
    return rc


def _run(args, owners, blocklist, files, problems, spill: Spill, staged: Staged, file_tiers: dict[Path, int],
         previous) -> int:
    scrubber = PrivacyScrubber(blocklist)
    if previous is not None:
        accumulate.reserve(scrubber.placeholder, previous.placeholders)
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
        # Names and ids repeat on every message: scrub each distinct one once (and count it once).
        if value not in name_cache:
            name_cache[value] = clean(value, pii_names)
        return name_cache[value]

    # -- 2-5. read every export, drop what is not material, scrub the rest as it comes, spill it.
    # Memory follows the number of authors and names, not of messages (see spill.py).
    dropped: Counter[str] = Counter()
    inputs: list[dict] = []
    authors: dict[tuple[str, str, str], int] = {}  # (source, author id, name) as read -> key
    spoke: Counter[int] = Counter()  # chat messages per author key
    marked_by_reader: set[int] = set()
    tallies: list[Counter[Author]] = []  # per input: messages per author (see authors.py)
    seen_total = read_total = 0
    book = T.TierBook()
    for path, reader_cls in files:
        reader = reader_cls(path)
        set_tier = file_tiers.get(path)
        read_tiers: Counter[int] = Counter()
        same_message = accumulate.ReadIdentities()
        got = 0
        error = None
        tally: Counter[Author] = Counter()
        try:
            for m in tqdm(reader.read(owners), desc=f"read {path.name}", unit="msg", disable=None, leave=False):
                got += 1
                reason = drop_reason(m)
                if counts_for_author(reason):  # before "repeated": each export counts in full
                    tally[(m.source, m.author_id, m.author)] += 1
                if reason is None and not spill.first_time(*same_message(m)):
                    reason = "repeated"  # the same message in two exports that overlap
                if reason:
                    dropped[reason] += 1
                    continue
                key = authors.setdefault((m.source, m.author_id, m.author), len(authors))
                spoke[key] += m.kind == "message"
                if m.is_owner:
                    marked_by_reader.add(key)  # a data package or a mailbox knows its owner itself
                m = replace(
                    m, text=clean(m.text, pii_text), title=clean(m.title, pii_text), chat_id=clean_name(m.chat_id),
                    chat_name=clean_name(m.chat_name), msg_id=clean(m.msg_id, pii_names),  # ids: too many to cache
                    author_id=clean_name(m.author_id), author=clean_name(m.author))
                spill.add(m, key)
                tier = set_tier or T.default_tier(reader.format, m.kind)
                book.note(m.source, m.chat_id, m.msg_id, m.kind, tier, set_tier is not None)
                read_tiers[tier] += 1
        except IngestError as e:
            error = str(e)  # what came before the damage is kept; the file is named
            problems.append(error)
            log.error("export cut short", file=str(path), error=error, kept=got)
        dropped.update(reader.stats.skipped)
        read_total += got
        seen_total += got + sum(reader.stats.skipped.values())
        if error and not got:
            continue
        if not got:
            skipped = sum(reader.stats.skipped.values())
            first = f"; first: {reader.stats.errors[0]}" if reader.stats.errors else ""
            problems.append(f"{path}: {reader.format} export with no usable message ({skipped} skipped{first})")
        inputs.append({
            "path": str(path), "format": reader.format, "messages": got, "skipped": dict(reader.stats.skipped),
            "repaired": dict(reader.stats.repaired), "errors": reader.stats.errors,
            **_input_tier(read_tiers, set_tier),
        })  # fmt: skip
        tallies.append(tally)
    if previous is not None:  # -- what DIR held, scrubbed again (a newer --blocklist applies to it too)
        def hold(m: Message, is_owner: bool) -> None:
            key = authors.setdefault((m.source, m.author_id, m.author), len(authors))
            if is_owner:
                marked_by_reader.add(key)
            # A held message's input is not known any more: its source's default tier (a --tier
            # given for an earlier run is not kept; give it again with that export).
            book.note(m.source, m.chat_id, m.msg_id, m.kind, T.default_tier(m.source, m.kind), False)
            spill.add(accumulate.scrubbed(m, lambda v: clean(v, pii_text), clean_name), key, carried=True)

        accumulate.carry_into(previous, hold)
    spill.flush()
    if not _said_problems(args, problems, read_total):
        return 2

    # -- 3. owners: by id or name; an id once seen under an owner name is the owner everywhere
    match = owner_match(authors, owners)
    for name, ids in match.ambiguous.items():
        log.warning("owner name matches several ids; all are taken as the owner", name=name, ids=sorted(ids))
    owner_keys = {k for a, k in authors.items() if match.is_owner(*a)} | marked_by_reader
    spill.mark_owners(owner_keys)
    if not owner_keys:
        seen = Counter({(name, aid): spoke[k] for (_, aid, name), k in authors.items()})
        hint = "; ".join(f"{n} ({i})" if i != n else n for (n, i), _ in seen.most_common(8)) or "none"
        print(f"error: no message matched --owner {' / '.join(owners)}. Most frequent authors: {hint}. "
              "To see every export's authors: python -m host_training prepare --list-authors EXPORT...", file=sys.stderr)
        return 2

    def is_owner(author: Author) -> bool:
        key = authors.get(author)  # None: only dropped as not_owner (a received mail)
        return key in owner_keys if key is not None else match.is_owner(*author)

    per_input = _owners_per_input(inputs, tallies, is_owner, owners)
    # The persona's name: a name given as --owner, else the owner's most used display name.
    names = [o for o in owners if not ID_LIKE.match(o) and "@" not in o]  # an address is no name
    used = Counter({name: spoke[k] for (_, _, name), k in authors.items() if k in owner_keys and spoke[k] and name})
    persona = clean_name(names[0] if names else (used.most_common(1)[0][0] if used else owners[0]))

    # -- 4. the owner's repeats
    dropped.update(spill.dedupe_owner(args.dedup_min_chars))

    # Other people's names -> Person N, in order of first appearance (--pseudonyms).
    others = [clean_name(name) for (_, _, name), k in authors.items() if k not in owner_keys and name
              and not (previous and accumulate.PERSON.fullmatch(name))]  # pseudonyms DIR already holds
    mine = {clean_name(name) for (_, _, name), k in authors.items() if k in owner_keys}
    pseudonyms = Pseudonyms([n for n in others if n not in mine], first=previous.persons + 1 if previous else 1) \
        if args.pseudonyms else None

    # -- 4b. merge with what DIR held: the same message once, the newer text of an edited one
    outcome = Counter(new=spill.counts()["kept"])
    if previous is not None:
        spill.set_identities(lambda: accumulate.Identities(pseudonyms.apply if pseudonyms else lambda m: m))
        outcome, met = spill.merge()
        if pseudonyms is not None:  # whom DIR already calls Person N keeps that name
            pseudonyms = Pseudonyms(list(pseudonyms.names), first=previous.persons + 1,
                                    known=accumulate.known_pseudonyms(met))
    counts = spill.counts()

    # -- 6. one ordered pass: messages.jsonl, and sessions and posts become examples
    n_sessions = n_with_owner = 0
    messages_out = staged.open("messages.jsonl")
    acks = S.AckRuns(args.max_ack_run, args.session_gap_minutes)

    def ordered() -> Iterable[Message]:
        for m in filter(acks.keep, spill.ordered()):
            if m.kind == "post" and not names:
                m = replace(m, author=persona)
            if pseudonyms is not None:
                m = pseudonyms.apply(m)
            messages_out.write(json.dumps(accumulate.record(m), ensure_ascii=False) + "\n")
            if m.kind == "post":
                for e in S.post_examples([m], persona, args.max_chars):
                    spill.add_example(e)
            yield m

    for session in tqdm(S.iter_sessions(ordered(), args.session_gap_minutes), desc="sessions", unit="session",
                        disable=None, leave=False):
        n_sessions += 1
        n_with_owner += session.has_owner
        for e in S.chat_examples([session], persona, args.max_turns, args.max_chars, all_speakers=args.train_all_speakers):
            spill.add_example(e)
    _drop_acks(acks, dropped, counts)

    # -- 7. split by session: by time (val after train), or whole chats. The owner's interview
    # answers were given to be learnt (ingest/interview.py): always train, split over the rest.
    spans = spill.session_spans()
    sizes = spill.chat_sizes()
    n_examples = spill.example_count()
    learn_always = INTERVIEW_CHAT in sizes and len(sizes) > 1
    if learn_always:
        spans = {k: v for k, v in spans.items() if not k.startswith(INTERVIEW_CHAT + ":")}
        n_examples -= sizes.pop(INTERVIEW_CHAT)
    cut = lend_last = None
    val_chat_set: set[str] = set()
    if args.val_split == "chat":
        val_chat_set = S.val_chats(sizes, args.val_fraction, args.seed)
    elif len(spans) == 1 and n_examples >= 2 and args.val_fraction > 0:
        lend_last = n_examples - 1  # one long conversation: its last window is the latest there is
    else:
        cut = S.time_cut(spans, args.val_fraction)

    def side(index: int, e: S.Example) -> str:
        if args.val_split == "chat":
            return "val" if e.chat in val_chat_set else "train"
        if lend_last is not None:
            return "val" if index == lend_last else "train"
        if cut is None:
            return "train"
        start, end = spans[e.session]
        return "val" if start >= cut else "train" if end < cut else "left_out"

    def sides() -> Iterator[tuple[S.Example, str, bool]]:
        """Every example with where it goes, and whether it is an interview answer kept for training."""
        index = 0  # among the examples the split decides
        for e in spill.examples():
            always = learn_always and e.chat == INTERVIEW_CHAT
            yield e, "train" if always else side(index, e), always
            index += not always

    # -- 8. weigh the training examples by tier (a first pass counts what each tier holds), write
    # train/val, then commit all four files together
    def tier_of(e: S.Example) -> int:
        return book.of(e.kind, e.session, e.chat, [t.content for t in e.turns if t.role == "assistant"])

    learnt = _learnt_by_tier((e for e, where, _ in sides() if where == "train"), tier_of)
    weights = args.weights or T.policy_weights(learnt, args.top_tier_share)
    out = {"train": staged.open("train.jsonl"), "val": staged.open("val.jsonl")}
    n: Counter[str] = Counter()
    tokens: Counter[str] = Counter()
    tiers: Counter[str] = Counter()
    val_learnt: Counter[int] = Counter()
    train_until = val_from = None
    for e, where, always in sides():
        n[where] += 1
        n[e.kind] += 1
        tier = tier_of(e)
        tiers[str(tier)] += 1
        if where == "left_out":
            continue
        if where == "train":
            e = replace(e, weight=weights[tier])
        else:  # validation measures the data as it is: never weighted
            val_learnt[tier] += sum(S.approx_tokens(t) for t in e.learnt)
        out[where].write(json.dumps(e.record(), ensure_ascii=False) + "\n")
        tokens[where] += sum(S.approx_tokens(t.content) for t in e.turns)
        tokens[where + "_assistant"] += sum(S.approx_tokens(t.content) for t in e.turns if t.role == "assistant")
        if where == "val":
            val_from = e.start if val_from is None else min(val_from, e.start)
        elif not always:  # the time cut's figures: the interview's answers are outside it
            train_until = e.end if train_until is None else max(train_until, e.end)

    report = {
        "inputs": inputs,
        "problems": problems,
        "messages": {"seen": seen_total, **counts, "dropped": _counts(dropped)},
        "pii_replaced": {"texts": _counts(pii_text), "names_and_ids": _counts(pii_names)},
        "special_tokens_escaped": escaped,
        "sessions": {"total": n_sessions, "with_owner": n_with_owner, "gap_minutes": args.session_gap_minutes},
        "examples": {
            "train": n["train"], "val": n["val"], "chat": n["chat"], "post": n["post"],
            "left_out_at_cut": n["left_out"], "tiers": dict(sorted(tiers.items())),
        },
        "tiers": tier_report(learnt, val_learnt, weights, None if args.weights else args.top_tier_share),
        "split": {
            "method": args.val_split,
            "cut": iso_utc(cut) if cut else None,
            "train_until": iso_utc(train_until) if train_until else None,
            "val_from": iso_utc(val_from) if val_from else None,
        },
        "tokens": {
            "method": TOKEN_METHOD, "train": tokens["train"], "val": tokens["val"],
            "train_assistant": tokens["train_assistant"], "val_assistant": tokens["val_assistant"],
        },
        "settings": {
            "owners": len(owners), "persona": persona, "blocklist_entries": len(blocklist),
            "val_fraction": args.val_fraction, "val_split": args.val_split, "seed": args.seed,
            "max_turns": args.max_turns, "max_chars": args.max_chars, "dedup_min_chars": args.dedup_min_chars,
            "tiers_set": [str(o) for o in args.tier], "top_tier_share": None if args.weights else args.top_tier_share,
            "weights": {str(k): v for k, v in weights.items()}, "max_ack_run": args.max_ack_run,
            "train_all_speakers": args.train_all_speakers,
            "pseudonyms": len(pseudonyms.names) if pseudonyms else 0,
        },
    }  # fmt: skip
    _owners_in_report(inputs, per_input, owners, clean_name, pseudonyms)
    report["accumulation"] = {
        "held_before": previous.count if previous else 0, "new": outcome["new"],
        "already_there": outcome["already_there"], "changed": outcome["changed"], "messages": counts["kept"],
        "settings_changed": accumulate.settings_changed(
            previous.settings, {**report["settings"], "gap_minutes": args.session_gap_minutes}) if previous else {},
    }  # fmt: skip
    report["runs"] = accumulate.next_run(
        previous, at=datetime.now(timezone.utc), inputs=inputs, read=seen_total, outcome=outcome,
        messages=counts["kept"], owners=owners, pseudonyms=args.pseudonyms)
    staged.open("report.json").write(json.dumps(report, ensure_ascii=False, indent=2) + "\n")
    staged.commit()

    # -- 9. say what happened
    dropped_n = sum(dropped.values())
    failed = f"; {len(problems)} problem(s), see report.json" if problems else ""
    print(f"read {seen_total} messages from {len(inputs)} file(s){failed}")
    _print_owners_per_input(per_input, owners)
    if previous is not None:
        changed = "".join(f"; {k} {a} -> {b} (applied to the whole)"
                          for k, (a, b) in report["accumulation"]["settings_changed"].items())
        print(f"added to {args.out}: {outcome['new']} new, {outcome['already_there']} already there, "
              f"{outcome['changed']} changed; it held {previous.count}, now {counts['kept']}{changed}")
    print(f"kept {counts['kept']} ({counts['kept_owner']} by the owner, {counts['kept_posts']} posts); "
          f"dropped {dropped_n}: {_say(dropped)}")  # fmt: skip
    print(f"replaced private values: {_say(pii_text + pii_names)}; special tokens escaped: {escaped}")
    left = f", {n['left_out']} across the time cut left out" if n["left_out"] else ""
    print(f"{n_sessions} sessions ({n_with_owner} with the owner) -> {n['chat'] + n['post']} examples: "
          f"{n['train']} train, {n['val']} val{left}; ~{tokens['train'] + tokens['val']} tokens (characters/4)")
    print(say_tiers(report["tiers"]))
    print(f"wrote {', '.join(str(args.out / f) for f in OUTPUT_FILES)}")
    return 0


# ---------------------------------------------------------------------------------------------
# Tiers: what each holds, what the policy made of it (tiers.py)


def _input_tier(read_tiers: Counter[int], set_tier: int | None) -> dict:
    """report.json inputs[]: the input's tier (the most common of its messages' when a format
    mixes posts and chats), and whether --tier set it."""
    tier = set_tier or (read_tiers.most_common(1)[0][0] if read_tiers else None)
    return {"tier": tier, "tier_set": set_tier is not None}


def _drop_acks(acks: S.AckRuns, dropped: Counter[str], counts: dict[str, int]) -> None:
    """The owner's capped acknowledgements, counted as dropped and no longer as kept."""
    if acks.dropped:
        dropped["ack_run"] += acks.dropped
        counts["kept"] -= acks.dropped
        counts["kept_owner"] -= acks.dropped


def _learnt_by_tier(examples: Iterable[S.Example], tier_of: Callable[[S.Example], int]) -> Counter[int]:
    """Tokens training learns from (the owner's turns; every turn with --train-all-speakers), by tier."""
    learnt: Counter[int] = Counter()
    for e in examples:
        learnt[tier_of(e)] += sum(S.approx_tokens(t) for t in e.learnt)
    return learnt


def tier_report(train: Counter[int], val: Counter[int], weights: dict[int, float], share: float | None) -> dict:
    """report.json `tiers`: per tier, the learnt tokens before (as read) and after weighting."""
    after = {t: train[t] * weights[t] for t in T.TIERS}
    if share is None:
        policy = "weights set by hand (--weights): " + ", ".join(f"tier {t} x{weights[t]:g}" for t in T.TIERS)
    elif not share:
        policy = "none (--top-tier-share 0): every example weighs 1"
    else:
        policy = (f"at least {share:.0%} of the learnt training tokens from tiers 1-2 (writing, long-form) when there "
                  f"is chat too: tiers 1-2 repeated up to {T.MAX_REPEAT:g} times, then chat thinned; validation "
                  "never weighted")
    before_share, after_share = T.top_share(train), T.top_share(after)
    return {
        "policy": policy,
        "top_tier_share": share,
        "tokens": "learnt tokens: the owner's turns (every turn with --train-all-speakers), characters/4; "
                  "after = before x weight, what training sees per epoch on average",
        "train": {
            str(t): {"name": name, "tokens_before": train[t], "weight": weights[t], "tokens_after": round(after[t])}
            for t, name in T.TIERS.items()
        },
        "val": {str(t): {"name": name, "tokens": val[t]} for t, name in T.TIERS.items()},
        "top_share_before": None if before_share is None else round(before_share, 4),
        "top_share_after": None if after_share is None else round(after_share, 4),
    }  # fmt: skip


def say_tiers(tiers: dict) -> str:
    """The printed line: tokens per tier before and after, and the share of tiers 1-2."""
    parts = [f"{t} {v['name']} ~{v['tokens_before']}" + (f" -> ~{v['tokens_after']} (x{v['weight']:g})"
                                                           if v["weight"] != 1 else "")
             for t, v in tiers["train"].items() if v["tokens_before"]]
    share = ""
    if tiers["top_share_before"] is not None:
        share = f"; tiers 1-2 {tiers['top_share_before']:.0%}"
        if tiers["top_share_after"] != tiers["top_share_before"]:
            share += f" -> {tiers['top_share_after']:.0%}"
    rule = " (--weights)" if tiers["top_tier_share"] is None else f" (policy: at least {tiers['top_tier_share']:.0%})"
    line = f"training tokens by tier: {', '.join(parts) or 'none'}{share}{rule}"
    chat = tiers["train"]["3"]
    if tiers["top_tier_share"] and chat["weight"] < 1:
        line += (f"\nnote: to meet the policy only about {chat['weight']:.0%} of the chat is trained on, as tiers "
                 "1-2 hold little text; a lower --top-tier-share keeps more of it")
    return line
