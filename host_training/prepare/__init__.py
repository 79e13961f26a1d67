"""`python -m host_training prepare EXPORT... --owner OWNER --out DIR`: exports in, training data out.

`prepare --list-authors EXPORT...` only reads, and prints each export's authors with the
--owner value for each (`list_authors`), so the owner can find themselves first.

One stage: the options, then `run`, whose numbered steps are

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

The package, by job: `options` (the command line), `stage` (`run`, and the steps in order),
`files` (blocklist, export files, outputs written together), `reading` (2), `owners` (3 and
--list-authors), `conversations` (4 and 6), `scrubbing` (5), `split` (7 and 8),
`tier_figures` and `summary` (report.json and what is printed).
"""

from __future__ import annotations

from .files import BlocklistError, load_blocklist
from .options import add_parser
from .owners import SUMMARY_EXPORTS
from .stage import run

__all__ = [
    "SUMMARY_EXPORTS",
    "BlocklistError",
    "add_parser",
    "load_blocklist",
    "run",
]
