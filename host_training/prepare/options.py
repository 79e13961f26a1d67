"""`prepare`'s options: what to read, privacy, conversations, the train/val split and the tiers.

The types check each value where argparse reads it, so a bad value is an error naming the
option before any export is touched.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from host_training.prepare import sessions as S
from host_training.prepare import tiers as T
from stratoecho.cli import number, positive_number

from .stage import run

_fraction = number("a fraction in [0, 1)", 0, 1, below=True)
_count = number("a whole number above 0", 0, above=True, whole=True)


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
        "--tier", type=_tier, action="append", default=[], metavar="PATH=N",
        help=("set the tier (1, 2 or 3) of the inputs at or under PATH: a file or folder as you would give it "
              "as EXPORT, or relative to an EXPORT folder (or to the folder of an EXPORT file). Repeat it; the "
              "most specific PATH wins. "
              "Example: --tier journal/=1 --tier old-mails.mbox=3. A PATH that names no input is an error"))
    how = tiers.add_mutually_exclusive_group()
    how.add_argument(
        "--top-tier-share", type=_fraction, default=T.DEFAULT_TOP_SHARE, metavar="F",
        help=("the policy: at least this share of the tokens training learns from comes from tiers 1-2 when there "
              f"is chat too; writing and mail are repeated (at most {T.MAX_REPEAT:g} times), then chat thinned, "
              "to meet it. Validation is never weighted. 0 turns the policy off (default %(default)g)"))
    how.add_argument(
        "--weights", type=_weights, metavar="TIER=W,...",
        help=("instead of the policy, each tier's weight by hand (times an example is seen per epoch), as in "
              "1=3,2=2,3=1; a tier not named gets 1. The old names writing, long and chat still work"))


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
    what.add_argument("exports", nargs="+", metavar="EXPORT",
                      help="export file or folder (folders are searched; attachments are passed over)")
    what.add_argument(
        "--owner", action="append", metavar="OWNER",
        help=("required: the person the persona speaks as: a Telegram or Discord id such as user5550101 "
              "(stable across renames), a mail address, or a display name as it appears in the exports, "
              'matched case-insensitively. Repeat for aliases: --owner user5550101 --owner "Ada Lindqvist". '
              "--list-authors shows who is who in each export"))
    what.add_argument("--out", type=Path, metavar="DIR",
                      help="required: output folder (created if missing); one that holds an earlier run's output "
                           "gets the new exports added to it, nothing it held is lost")
    what.add_argument(
        "--list-authors", action="store_true",
        help=("only list each export's authors, most messages first, with the id to give as --owner "
              "(Telegram/Discord user..., mail address; WhatsApp has names only) and their real display "
              "names, so you can find yourself before preparing; with --owner, marks who it matches. "
              "Needs no --out and writes nothing: the names are printed on this machine only"))
    what.add_argument("--json", action="store_true", help="with --list-authors: print JSON instead of a table")
    what.add_argument(
        "--accept-cut", action="store_true",
        help=("use what was read of an export that ends early (a download cut short): without it prepare "
              "stops, naming the file and the byte where it ends, and writes nothing; export again, or "
              "pass this to build from the part that was read"))

    privacy = p.add_argument_group("privacy")
    privacy.add_argument(
        "--pseudonyms", action="store_true",
        help=("replace every other participant's name with a stable pseudonym (Person 1, Person 2...) "
              "as author, chat name and whole word in texts; the owner keeps their name"))
    privacy.add_argument(
        "--blocklist", type=Path, metavar="FILE",
        help=("extra things to remove: one entry a line, either a word or phrase (whole words, any "
              "case) or /regex/ (case-insensitive); blank lines and lines starting with # are ignored"))

    conv = p.add_argument_group("conversations")
    conv.add_argument("--session-gap-minutes", type=positive_number("minutes"), default=S.DEFAULT_GAP_MINUTES, metavar="MIN",
                      help="a silence longer than this starts a new conversation (minutes, default %(default)g)")
    conv.add_argument("--max-turns", type=_count, default=S.DEFAULT_MAX_TURNS, metavar="N",
                      help="turns per training example at most; longer conversations are cut (default %(default)d)")
    conv.add_argument("--max-chars", type=_count, default=S.DEFAULT_MAX_CHARS, metavar="N",
                      help="characters per training example at most, ~4 per token (default %(default)d)")
    conv.add_argument(
        "--dedup-min-chars", type=int, default=S.DEFAULT_DEDUP_MIN_CHARS, metavar="N",
        help=("repeats of the owner's messages this long or longer are dropped (a paste: a greeting sent to a "
              'list, a link); shorter ones ("ok", "haha", a catchphrase) keep their real frequency '
              "(characters, default %(default)d)"))
    conv.add_argument(
        "--max-ack-run", type=_ack_run, default=S.DEFAULT_MAX_ACK_RUN, metavar="N",
        help=('at most N of the owner\'s one-word acknowledgements ("ok", "k", "yes", "lol", an emoji alone) in a '
              "row in a chat; the rest are dropped (report.json: messages.dropped.ack_run), so the persona does "
              "not learn to answer everything with ok. off keeps them all (default %(default)s)"))
    conv.add_argument(
        "--train-all-speakers", action="store_true",
        help=("learn every speaker's turns, not only the owner's: conversations without the owner become "
              "examples too, and every example is marked \"train\": \"all\" for `build`"))

    split = p.add_argument_group("train/val split")
    split.add_argument(
        "--val-fraction", type=_fraction, default=0.1, metavar="F",
        help=("share of conversations held out for validation (default %(default)g; with 2 or more "
              "sessions val gets at least one unless F is 0)"))
    split.add_argument(
        "--val-split", choices=("time", "chat"), default="time",
        help=("time (default): the latest sessions are held out, every one starting after every training "
              "session ended (sessions across the cut are left out, counted in report.json); chat: whole "
              "chats are held out, chosen by --seed"))
    split.add_argument("--seed", type=int, default=1337,
                       help="seed for --val-split chat: same exports and seed, same split (default %(default)d)")
    add_tier_options(p)
    p.set_defaults(func=run)
    return p
