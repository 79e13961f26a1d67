"""Steps 2 to 5 as one stream: every export read (format sniffed from its content), each
message judged, scrubbed as it comes and put in the scratch store (spill.py); then what an
earlier run left in DIR, scrubbed again beside it. Memory follows the number of authors and
names, not of messages (see spill.py)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from tqdm import tqdm

from host_training.ingest import Author, IngestError, Message, counts_for_author, drop_reason
from host_training.prepare import accumulate
from host_training.prepare import tiers as T
from host_training.prepare.spill import Spill

from .scrubbing import Cleaner

log = structlog.get_logger(__name__)


@dataclass
class Reading:
    """What the reading gathered: the inputs for report.json and who wrote what."""

    problems: list[str]  # files that could not be read, or only in part
    cut: list[str] = field(default_factory=list)  # of those, files read in part: damage after their first messages
    dropped: Counter[str] = field(default_factory=Counter)
    inputs: list[dict] = field(default_factory=list)
    authors: dict[tuple[str, str, str], int] = field(default_factory=dict)  # (source, author id, name) as read -> key
    spoke: Counter[int] = field(default_factory=Counter)  # chat messages per author key
    marked_by_reader: set[int] = field(default_factory=set)
    tallies: list[Counter[Author]] = field(default_factory=list)  # per input: messages per author (see authors.py)
    seen_total: int = 0
    read_total: int = 0
    book: T.TierBook = field(default_factory=T.TierBook)

    def key(self, m: Message) -> int:
        return self.authors.setdefault((m.source, m.author_id, m.author), len(self.authors))


def read_exports(files: list[tuple[Path, type]], owners: list[str], file_tiers: dict[Path, int], spill: Spill,
                 cleaner: Cleaner, problems: list[str]) -> Reading:
    """Steps 2-5: read every export, drop what is not material, scrub the rest as it comes, spill it."""
    reading = Reading(problems)
    for path, reader_cls in files:
        _read_export(reading, path, reader_cls(path), owners, file_tiers.get(path), spill, cleaner)
    return reading


def _read_export(reading: Reading, path: Path, reader, owners: list[str], set_tier: int | None, spill: Spill,
                 cleaner: Cleaner) -> None:
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
                reading.dropped[reason] += 1
                continue
            key = reading.key(m)
            reading.spoke[key] += m.kind == "message"
            if m.is_owner:
                reading.marked_by_reader.add(key)  # a data package or a mailbox knows its owner itself
            m = cleaner.message(m)
            spill.add(m, key)
            tier = set_tier or T.default_tier(reader.format, m.kind)
            reading.book.note(m.source, m.chat_id, m.msg_id, m.kind, tier, set_tier is not None)
            read_tiers[tier] += 1
    except IngestError as e:
        error = str(e)  # what came before the damage is kept; the file is named
        reading.problems.append(error)
        log.error("export cut short", file=str(path), error=error, kept=got)
    reading.dropped.update(reader.stats.skipped)
    reading.read_total += got
    reading.seen_total += got + sum(reader.stats.skipped.values())
    if error and not got:
        return
    if error:
        reading.cut.append(error)
    if not got:
        skipped = sum(reader.stats.skipped.values())
        first = f"; first: {reader.stats.errors[0]}" if reader.stats.errors else ""
        reading.problems.append(f"{path}: {reader.format} export with no usable message ({skipped} skipped{first})")
    reading.inputs.append({
        "path": str(path), "format": reader.format, "messages": got, "skipped": dict(reader.stats.skipped),
        "repaired": dict(reader.stats.repaired), "errors": reader.stats.errors,
        **_input_tier(read_tiers, set_tier),
    })  # fmt: skip
    reading.tallies.append(tally)


def carry_previous(previous: accumulate.Previous, reading: Reading, spill: Spill, cleaner: Cleaner) -> None:
    """What DIR held, scrubbed again (a newer --blocklist applies to it too), into the scratch store."""

    def hold(m: Message, is_owner: bool) -> None:
        key = reading.key(m)
        if is_owner:
            reading.marked_by_reader.add(key)
        # A held message's input is not known any more: its source's default tier (a --tier
        # given for an earlier run is not kept; give it again with that export).
        reading.book.note(m.source, m.chat_id, m.msg_id, m.kind, T.default_tier(m.source, m.kind), False)
        spill.add(accumulate.scrubbed(m, cleaner.text, cleaner.name), key, carried=True)

    accumulate.carry_into(previous, hold)


def _input_tier(read_tiers: Counter[int], set_tier: int | None) -> dict:
    """report.json inputs[]: the input's tier (the most common of its messages' when a format
    mixes posts and chats), and whether --tier set it."""
    tier = set_tier or (read_tiers.most_common(1)[0][0] if read_tiers else None)
    return {"tier": tier, "tier_set": set_tier is not None}
