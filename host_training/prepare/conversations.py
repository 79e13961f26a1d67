"""Steps 4 and 6: the owner's repeats dropped, other people named Person N (--pseudonyms),
what DIR held merged in, then one ordered pass that writes messages.jsonl and turns sessions
and posts into examples with the owner as `assistant`."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import replace

from tqdm import tqdm

from host_training.ingest import Message
from host_training.prepare import accumulate
from host_training.prepare import sessions as S
from host_training.prepare.pseudonyms import Pseudonyms
from host_training.prepare.spill import Spill

from .files import Staged
from .owners import Owner
from .reading import Reading


def name_others(reading: Reading, owner: Owner, clean_name: Callable[[str], str],
                previous: accumulate.Previous | None) -> list[str]:
    """Other people's names, for Person N in order of first appearance (--pseudonyms)."""
    authors = reading.authors
    others = [clean_name(name) for (_, _, name), k in authors.items() if k not in owner.keys and name
              and not (previous and accumulate.PERSON.fullmatch(name))]  # pseudonyms DIR already holds
    mine = {clean_name(name) for (_, _, name), k in authors.items() if k in owner.keys}
    return [n for n in others if n not in mine]


def merge_previous(spill: Spill, previous: accumulate.Previous | None,
                   pseudonyms: Pseudonyms | None) -> tuple[Counter[str], Pseudonyms | None]:
    """Step 4b, merge with what DIR held: the same message once, the newer text of an edited one.
    (What was new, already there or changed; the pseudonyms, whom DIR named keeping that name.)"""
    outcome = Counter(new=spill.counts()["kept"])
    if previous is not None:
        spill.set_identities(lambda: accumulate.Identities(pseudonyms.apply if pseudonyms else lambda m: m))
        outcome, met = spill.merge()
        if pseudonyms is not None:  # whom DIR already calls Person N keeps that name
            pseudonyms = Pseudonyms(list(pseudonyms.names), first=previous.persons + 1,
                                    known=accumulate.known_pseudonyms(met))
    return outcome, pseudonyms


def write_sessions(args: argparse.Namespace, spill: Spill, staged: Staged, owner: Owner, pseudonyms: Pseudonyms | None,
                   dropped: Counter[str], counts: dict[str, int]) -> tuple[int, int]:
    """Step 6, one ordered pass: messages.jsonl, and sessions and posts become examples.
    (Sessions, those with the owner.)"""
    n_sessions = n_with_owner = 0
    messages_out = staged.open("messages.jsonl")
    acks = S.AckRuns(args.max_ack_run, args.session_gap_minutes)

    def ordered() -> Iterable[Message]:
        for m in filter(acks.keep, spill.ordered()):
            if m.kind == "post" and not owner.names:
                m = replace(m, author=owner.persona)
            if pseudonyms is not None:
                m = pseudonyms.apply(m)
            messages_out.write(json.dumps(accumulate.record(m), ensure_ascii=False) + "\n")
            if m.kind == "post":
                for e in S.post_examples([m], owner.persona, args.max_chars):
                    spill.add_example(e)
            yield m

    for session in tqdm(S.iter_sessions(ordered(), args.session_gap_minutes), desc="sessions", unit="session",
                        disable=None, leave=False):
        n_sessions += 1
        n_with_owner += session.has_owner
        for e in S.chat_examples([session], owner.persona, args.max_turns, args.max_chars,
                                 all_speakers=args.train_all_speakers):
            spill.add_example(e)
    _drop_acks(acks, dropped, counts)
    return n_sessions, n_with_owner


def _drop_acks(acks: S.AckRuns, dropped: Counter[str], counts: dict[str, int]) -> None:
    """The owner's capped acknowledgements, counted as dropped and no longer as kept."""
    if acks.dropped:
        dropped["ack_run"] += acks.dropped
        counts["kept"] -= acks.dropped
        counts["kept_owner"] -= acks.dropped
