"""Who wrote in each export, and whether --owner found the owner there. Pure: counts in, text out.

`prepare` counts every export's authors as it reads (a person's own words only, see
`ingest.counts_for_author`; memory follows the number of people, not of messages), then,
once the owner is known, turns each export's counts into an `ExportAuthors`: the owner's and
the others' message counts for report.json and the closing summary, and, where --owner
matched nobody in an export although people wrote there, a warning naming the most frequent
authors with their ids and the --owner value most likely missing (`--owner Mira` matching a
Discord nickname but not the Telegram account is how 53 messages once went unseen).
`prepare --list-authors` prints the same counts before anything is prepared.

Names here are the real ones, for the owner's own terminal; report.json gets them through
`report`, which is handed the scrubbing (and --pseudonyms) to apply.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from host_training.ingest import Author, Person, likely_owner, owner_value, people

MOST_FREQUENT_SHOWN = 5  # enough to find oneself in a group chat, short enough to read


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


@dataclass(frozen=True)
class ExportAuthors:
    path: str  # the export file, or "N files under FOLDER" once folded
    format: str
    people: list[Person]  # most messages first
    owner: frozenset[str]  # the `Person.value`s that are the owner

    @classmethod
    def of(cls, path: str, fmt: str, tally: Mapping[Author, int], is_owner: Callable[[Author], bool]) -> ExportAuthors:
        return cls(path, fmt, people(tally), frozenset(owner_value(a) for a in tally if is_owner(a)))

    @property
    def owner_messages(self) -> int:
        return sum(p.messages for p in self.people if p.value in self.owner)

    @property
    def other_messages(self) -> int:
        return sum(p.messages for p in self.people if p.value not in self.owner)

    @property
    def missed(self) -> bool:
        """Nobody here is the owner, though people wrote: an --owner value is missing."""
        return not self.owner and bool(self.people)

    def counts(self) -> dict[str, int]:
        return {"owner_messages": self.owner_messages, "other_messages": self.other_messages, "authors": len(self.people)}

    def summary(self) -> str:
        owner, others = self.owner_messages, self.other_messages
        return f"{self.path} ({self.format}): owner {owner}, others {others}, {plural(len(self.people), 'author')}"

    def most_frequent(self) -> list[str]:
        """"Name (id) count" of the people who write most here."""
        return [_who(p) for p in self.people[:MOST_FREQUENT_SHOWN]]

    def suggestion(self, owners: Sequence[str]) -> str:
        """The --owner option most likely missing, ready to paste into a shell."""
        return f"--owner {shlex.quote(likely_owner(self.people, owners).value)}"

    def warning(self, owners: Sequence[str]) -> str:
        """What to tell the owner when `missed`: who writes most here, and what to add."""
        likely = likely_owner(self.people, owners)
        return (
            f"no message in {self.path} matched --owner {' / '.join(owners)}; most frequent authors there: "
            f"{', '.join(self.most_frequent())}. If {likely.names[0]} is you, add {self.suggestion(owners)}"
        )

    def report(self, owners: Sequence[str], scrub: Callable[[str], str], name: Callable[[str], str | None]) -> dict:
        """The report.json entry: the counts and, when `missed`, the most frequent authors, their
        ids `scrub`bed and their names as `name` gives them (scrubbed; Person N under
        --pseudonyms, None where it withholds one). The --owner values are never written."""
        entry: dict = self.counts()
        if not self.missed:
            return entry

        def shown_id(p: Person) -> str | None:
            return scrub(p.value) if p.has_id else name(p.value)

        likely = likely_owner(self.people, owners)
        entry["warning"] = (
            "no message in this export matched --owner: add the id (or, without one, the name) of the "
            "author that is you; `prepare --list-authors` lists every author with their real name"
        )
        entry["most_frequent"] = [
            {"author_id": shown_id(p), "names": [name(n) for n in p.names], "messages": p.messages}
            for p in self.people[:MOST_FREQUENT_SHOWN]
        ]
        # A pseudonym is no --owner value: without a stable id, only the real name would do.
        entry["suggested_owner"] = shown_id(likely) if likely.has_id or name(likely.value) == likely.value else None
        return entry

    def table(self, ids: Mapping[str, str]) -> list[str]:
        """`--list-authors` lines: messages, the value to give as --owner (`ids` maps an id to
        what to show instead: a mail address for its hash), the names where they differ."""
        rows = [(str(p.messages), ids.get(p.value, p.value), " / ".join(n for n in p.names if n != p.value),
                 p.value in self.owner) for p in self.people]  # fmt: skip
        total = sum(p.messages for p in self.people)
        lines = [f"{self.path} ({self.format}): {plural(total, 'message')} by {plural(len(rows), 'author')}"]
        w_count = max((len(r[0]) for r in rows), default=0)
        w_value = max((len(r[1]) for r in rows), default=0)
        for count, value, names, mine in rows:
            lines.append(f"  {count:>{w_count}}  {value:<{w_value}}  {names}".rstrip() + ("  <- owner" if mine else ""))
        return lines

    def record(self, ids: Mapping[str, str]) -> dict:
        """`--list-authors --json`: the same as `table`, one object per author."""
        return {
            "path": self.path, "format": self.format, "messages": sum(p.messages for p in self.people),
            "authors": [{"id": ids.get(p.value, p.value), "names": list(p.names), "messages": p.messages,
                         "owner": p.value in self.owner} for p in self.people],
        }  # fmt: skip


def fold(exports: Sequence[ExportAuthors]) -> list[ExportAuthors]:
    """For printing: the files of one format in which only the owner writes (a blog's posts, a
    Discord data package's channels) as one entry, "N files under FOLDER", where there are
    several; conversations and exports that need a look stay one by one, in order."""
    def alone(e: ExportAuthors) -> bool:
        return bool(e.owner_messages) and not e.other_messages

    groups: dict[str, list[ExportAuthors]] = {}
    for e in filter(alone, exports):
        groups.setdefault(e.format, []).append(e)
    out = []
    for e in exports:
        group = groups[e.format] if alone(e) else []
        if len(group) < 2:
            out.append(e)
        elif e is group[0]:
            out.append(_merged(group))
    return out


def _merged(group: Sequence[ExportAuthors]) -> ExportAuthors:
    total: dict[str, tuple[list[str], int]] = {}
    for e in group:
        for p in e.people:
            names, n = total.get(p.value, ([], 0))
            total[p.value] = (names + [x for x in p.names if x not in names], n + p.messages)
    merged = [Person(value, tuple(names), n) for value, (names, n) in total.items()]
    merged.sort(key=lambda p: (-p.messages, p.names[0].casefold(), p.value))
    folder = os.path.commonpath([e.path for e in group])
    return ExportAuthors(f"{len(group)} files under {folder}", group[0].format, merged,
                         frozenset().union(*(e.owner for e in group)))


def _who(p: Person) -> str:
    names = " / ".join(p.names)
    return f"{names} ({p.value}) {p.messages}" if p.has_id else f"{names} {p.messages}"
