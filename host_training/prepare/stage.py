"""The stage itself: `run` checks the options and what DIR holds before any reading, and
`_run` takes the steps in order (the numbers of the package's docstring), each a function of
the module that names its job."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from host_training.prepare import accumulate
from host_training.prepare import tiers as T
from host_training.prepare.pseudonyms import Pseudonyms
from host_training.prepare.spill import Spill

from .conversations import merge_previous, name_others, write_sessions
from .files import BlocklistError, Staged, _said_problems, export_files, load_blocklist
from .languages import owner_writing, recommendation, report_entry, summary_lines
from .owners import _missing_options, find_owner, list_authors
from .reading import carry_previous, read_exports
from .scrubbing import Cleaner
from .split import Split, write_examples
from .summary import print_summary, report_json


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
         previous: accumulate.Previous | None) -> int:
    cleaner = Cleaner(blocklist, previous)
    # -- 2-5. read, drop, scrub, spill; then what DIR held, scrubbed again
    reading = read_exports(files, owners, file_tiers, spill, cleaner, problems)
    if previous is not None:
        carry_previous(previous, reading, spill, cleaner)
    spill.flush()
    if not _said_problems(args, problems, reading.read_total):
        return 2
    if reading.cut and not args.accept_cut:
        # A download cut at 60 % would build a persona from 60 % of a life: said, nothing written.
        for cut in reading.cut:
            print(f"error: {cut}", file=sys.stderr)
        print("error: an export ends early (a download cut short?): nothing was written. Export it again, "
              "or pass --accept-cut to prepare from what was read", file=sys.stderr)
        return 2
    # -- 3. owners
    owner = find_owner(reading, owners, spill, cleaner.name)
    if owner is None:
        return 2
    # -- 4. the owner's repeats; other people as Person N; 4b. merge with what DIR held
    reading.dropped.update(spill.dedupe_owner(args.dedup_min_chars))
    others = name_others(reading, owner, cleaner.name, previous)
    pseudonyms = Pseudonyms(others, first=previous.persons + 1 if previous else 1) if args.pseudonyms else None
    outcome, pseudonyms = merge_previous(spill, previous, pseudonyms)
    counts = spill.counts()
    writing = owner_writing(spill, args.dedup_min_chars)  # 4c. the owner's language and catchphrases
    # -- 6. messages.jsonl, and the examples; 7. split; 8. weigh and write train/val
    sessions = write_sessions(args, spill, staged, owner, pseudonyms, reading.dropped, counts)
    split = Split(args, spill)
    written = write_examples(args, split, reading.book, staged)
    # then commit all four files together
    report = report_json(args, owners, blocklist, reading, counts, cleaner, sessions, split, written, owner,
                         pseudonyms, previous, outcome)
    report["language"] = report_entry(writing)
    staged.open("report.json").write(json.dumps(report, ensure_ascii=False, indent=2) + "\n")
    staged.commit()
    # -- 9. say what happened
    print_summary(args, owners, report, reading, counts, cleaner, sessions, written, owner, previous, outcome)
    print("\n".join(summary_lines(writing, recommendation(writing.language))))
    return 0
