"""Who is the owner in each export: --list-authors, and the owner of a real prepare (step 3)
with the per-input counts it prints and writes."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog
from tqdm import tqdm

from host_training.ingest import ID_LIKE, Author, IngestError, counts_for_author, drop_reason, owner_match
from host_training.ingest.mbox import MboxReader, mail_id
from host_training.prepare.authors import ExportAuthors, fold
from host_training.prepare.pseudonyms import Pseudonyms
from host_training.prepare.spill import Spill

from .files import _said_problems, export_files
from .reading import Reading

log = structlog.get_logger(__name__)

SUMMARY_EXPORTS = 30  # exports listed one by one in the closing summary, besides those with a warning


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



@dataclass
class Owner:
    """The owner as step 3 found them in what was read."""

    keys: set[int]  # author keys (spill.py) of the owner's messages
    per_input: list[ExportAuthors]  # each input's authors, the owner marked
    names: list[str]  # the --owner values that are names (not an id or an address)
    persona: str  # the persona's name, scrubbed


def find_owner(reading: Reading, owners: Sequence[str], spill: Spill, clean_name: Callable[[str], str]) -> Owner | None:
    """Step 3, owners: by id or name; an id once seen under an owner name is the owner everywhere.
    None (said as an error) when no message matched --owner."""
    authors, spoke = reading.authors, reading.spoke
    match = owner_match(authors, owners)
    for name, ids in match.ambiguous.items():
        log.warning("owner name matches several ids; all are taken as the owner", name=name, ids=sorted(ids))
    owner_keys = {k for a, k in authors.items() if match.is_owner(*a)} | reading.marked_by_reader
    spill.mark_owners(owner_keys)
    if not owner_keys:
        seen = Counter({(name, aid): spoke[k] for (_, aid, name), k in authors.items()})
        hint = "; ".join(f"{n} ({i})" if i != n else n for (n, i), _ in seen.most_common(8)) or "none"
        print(f"error: no message matched --owner {' / '.join(owners)}. Most frequent authors: {hint}. "
              "To see every export's authors: python -m host_training prepare --list-authors EXPORT...", file=sys.stderr)
        return None

    def is_owner(author: Author) -> bool:
        key = authors.get(author)  # None: only dropped as not_owner (a received mail)
        return key in owner_keys if key is not None else match.is_owner(*author)

    per_input = _owners_per_input(reading.inputs, reading.tallies, is_owner, owners)
    # The persona's name: a name given as --owner, else the owner's most used display name.
    names = [o for o in owners if not ID_LIKE.match(o) and "@" not in o]  # an address is no name
    used = Counter({name: spoke[k] for (_, _, name), k in authors.items() if k in owner_keys and spoke[k] and name})
    persona = clean_name(names[0] if names else (used.most_common(1)[0][0] if used else owners[0]))
    return Owner(owner_keys, per_input, names, persona)
