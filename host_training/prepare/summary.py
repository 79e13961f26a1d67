"""The end of `prepare`: report.json (what was read, dropped, replaced, split and weighted, and
the history of runs in DIR) and the lines printed to say what happened (step 9)."""

from __future__ import annotations

import argparse
from collections import Counter
from datetime import datetime, timezone

from host_training.ingest import iso_utc
from host_training.prepare import accumulate
from host_training.prepare.pseudonyms import Pseudonyms

from .files import _counts, _say
from .owners import Owner, _owners_in_report, _print_owners_per_input
from .reading import Reading
from .scrubbing import Cleaner
from .split import Split, Written
from .tier_figures import say_tiers, tier_report

OUTPUT_FILES = ("messages.jsonl", "train.jsonl", "val.jsonl", "report.json")
TOKEN_METHOD = (
    "approximate: ceil(characters / 4) summed over every turn's content (the usual figure for "
    "English and BPE tokenizers); the base model's tokenizer gives the real count"
)


def report_json(args: argparse.Namespace, owners: list[str], blocklist: list[str], reading: Reading,
                counts: dict[str, int], cleaner: Cleaner, sessions: tuple[int, int], split: Split, written: Written,
                owner: Owner, pseudonyms: Pseudonyms | None, previous: accumulate.Previous | None,
                outcome: Counter[str]) -> dict:
    """report.json, with inputs[].owner filled in."""
    n_sessions, n_with_owner = sessions
    n, tokens, weights = written.n, written.tokens, written.weights
    cut, train_until, val_from = split.cut, written.train_until, written.val_from
    report = {
        "inputs": reading.inputs,
        "problems": reading.problems,
        "messages": {"seen": reading.seen_total, **counts, "dropped": _counts(reading.dropped)},
        "pii_replaced": {"texts": _counts(cleaner.pii_text), "names_and_ids": _counts(cleaner.pii_names)},
        "special_tokens_escaped": cleaner.escaped,
        "sessions": {"total": n_sessions, "with_owner": n_with_owner, "gap_minutes": args.session_gap_minutes},
        "examples": {
            "train": n["train"], "val": n["val"], "chat": n["chat"], "post": n["post"],
            "left_out_at_cut": n["left_out"], "tiers": dict(sorted(written.tiers.items())),
        },
        "tiers": tier_report(written.learnt, written.val_learnt, weights,
                             None if args.weights else args.top_tier_share),
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
            "owners": len(owners), "persona": owner.persona, "blocklist_entries": len(blocklist),
            "val_fraction": args.val_fraction, "val_split": args.val_split, "seed": args.seed,
            "max_turns": args.max_turns, "max_chars": args.max_chars, "dedup_min_chars": args.dedup_min_chars,
            "tiers_set": [str(o) for o in args.tier], "top_tier_share": None if args.weights else args.top_tier_share,
            "weights": {str(k): v for k, v in weights.items()}, "max_ack_run": args.max_ack_run,
            "train_all_speakers": args.train_all_speakers,
            "pseudonyms": len(pseudonyms.names) if pseudonyms else 0,
        },
    }  # fmt: skip
    _owners_in_report(reading.inputs, owner.per_input, owners, cleaner.name, pseudonyms)
    report["accumulation"] = {
        "held_before": previous.count if previous else 0, "new": outcome["new"],
        "already_there": outcome["already_there"], "changed": outcome["changed"], "messages": counts["kept"],
        "settings_changed": accumulate.settings_changed(
            previous.settings, {**report["settings"], "gap_minutes": args.session_gap_minutes}) if previous else {},
    }  # fmt: skip
    report["runs"] = accumulate.next_run(
        previous, at=datetime.now(timezone.utc), inputs=reading.inputs, read=reading.seen_total, outcome=outcome,
        messages=counts["kept"], owners=owners, pseudonyms=args.pseudonyms)
    return report


def print_summary(args: argparse.Namespace, owners: list[str], report: dict, reading: Reading, counts: dict[str, int],
                  cleaner: Cleaner, sessions: tuple[int, int], written: Written, owner: Owner,
                  previous: accumulate.Previous | None, outcome: Counter[str]) -> None:
    """Step 9, say what happened."""
    n_sessions, n_with_owner = sessions
    n, tokens, dropped, problems = written.n, written.tokens, reading.dropped, reading.problems
    dropped_n = sum(dropped.values())
    failed = f"; {len(problems)} problem(s), see report.json" if problems else ""
    print(f"read {reading.seen_total} messages from {len(reading.inputs)} file(s){failed}")
    _print_owners_per_input(owner.per_input, owners)
    if previous is not None:
        changed = "".join(f"; {k} {a} -> {b} (applied to the whole)"
                          for k, (a, b) in report["accumulation"]["settings_changed"].items())
        print(f"added to {args.out}: {outcome['new']} new, {outcome['already_there']} already there, "
              f"{outcome['changed']} changed; it held {previous.count}, now {counts['kept']}{changed}")
    print(f"kept {counts['kept']} ({counts['kept_owner']} by the owner, {counts['kept_posts']} posts); "
          f"dropped {dropped_n}: {_say(dropped)}")  # fmt: skip
    print(f"replaced private values: {_say(cleaner.pii_text + cleaner.pii_names)}; "
          f"special tokens escaped: {cleaner.escaped}")
    left = f", {n['left_out']} across the time cut left out" if n["left_out"] else ""
    print(f"{n_sessions} sessions ({n_with_owner} with the owner) -> {n['chat'] + n['post']} examples: "
          f"{n['train']} train, {n['val']} val{left}; ~{tokens['train'] + tokens['val']} tokens (characters/4)")
    print(say_tiers(report["tiers"]))
    print(f"wrote {', '.join(str(args.out / f) for f in OUTPUT_FILES)}")
