"""`prepare` run again on its own output folder: what the folder holds is kept, new exports are merged in.

"You keep writing, it keeps learning": DIR/messages.jsonl is the persona's whole history so far.
A later `prepare ... --out DIR` reads it back (`scan`, then `carry_into` the scratch store) beside
the new exports, and `Spill.merge` decides, message by message, by the stable keys below:

    already there   a message of the new exports that DIR holds with the same text: the held copy stays
    changed         the same message with another text (edited since): the newer text replaces it
    new             everything else
    kept            everything DIR held that no new export mentions: an export you no longer have,
                    a message deleted since (a deletion cannot be told from an export that covers
                    less), stays

The stable key (`identity`), from what does not change between two exports of the same chat:

    Telegram, Discord, mail with a Message-ID   source, chat id, message id (the apps' own ids)
    Markdown posts                              the file name and the title
    WhatsApp, mail without a Message-ID         source, chat, the minute it was sent, whether the
                                                owner wrote it, the text, and its place among equal
                                                texts in that minute

WhatsApp has no ids, and between two exports of one chat its line numbers shift (older lines fall
off the 40,000-message limit), the date format follows the phone's locale (seconds or none, 12- or
24-hour) and the authors' names follow the address book; so none of those is in the key: the
minute, the side (owner or not) and the text are. An edit changes the text: a new message that
matches nothing and is alone on its side in its minute, beside one held message that matches
nothing, is taken as that message edited. Not recognised: a re-export made in another time zone
(every time shifts; its messages come in as new) and a chat file renamed (the chat is its name).

Texts are compared as `normal_text` gives them: placeholders without their numbers (<PHONE_1> and
<PHONE_4> are alike), pseudonyms likewise, spacing collapsed. Because:

  * DIR/messages.jsonl is already scrubbed. Its texts are scrubbed again with this run's scrubber
    (a word added to --blocklist leaves the old messages too), and the placeholder numbers it uses
    are reserved first (`reserve`), so a new value never gets a number an old one has: within the
    merged data one placeholder always means one value. The same value in old and new messages may
    carry two numbers (the old mapping is nowhere on disk, by design).
  * --pseudonyms: a person whose messages in the new exports meet their held copies keeps the
    pseudonym DIR gave them (`known_pseudonyms`); a person first seen now is numbered after the
    highest "Person N" DIR holds. (A person seen before but in no overlapping message gets a
    new number: no table of real names is kept anywhere.)

Options (`refusals`): those that shaped the held messages themselves are checked against the folder's
last run: an --owner value given then and missing now, or --pseudonyms then and not now, is refused
(say the same again, or prepare into a new folder). New --owner values and turning --pseudonyms on
apply to the whole, as do the blocklist, sessions, weights and the train/val split (the split is
made over the merged whole, so validation is still the latest slice); report.json lists what changed.

Pure but for `scan` and `carried`, which read DIR.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from host_training.ingest import Message
from stratoecho.privacy import PLACEHOLDER

ID_SOURCES = frozenset({"telegram", "discord"})
POST_SOURCES = frozenset({"markdown", "mail"})  # every message of theirs is a post
PERSON = re.compile(r"(?<!\w)Person (\d+)(?!\w)")  # pseudonyms.py's names
RECORD_FIELDS = ("source", "chat_id", "chat_name", "msg_id", "author_id", "author", "is_owner", "ts", "text")
# Settings that shape examples, not messages: a change applies to the whole and is reported.
WHOLE_SETTINGS = ("val_fraction", "val_split", "seed", "max_turns", "max_chars", "dedup_min_chars", "weights",
                  "train_all_speakers", "gap_minutes")


class PreviousError(Exception):
    """DIR's earlier output cannot be read back; the message names the file and line."""


# ---------------------------------------------------------------------------------------------
# messages.jsonl lines


def record(m: Message) -> dict:
    """The messages.jsonl line: `Message.record`, and for a post its kind and title (what carrying
    it into a later run needs to make the same example)."""
    return m.record() | ({"kind": "post", "title": m.title} if m.kind == "post" else {})


def from_record(rec: object, where: str) -> Message:
    """A messages.jsonl line back as a Message; PreviousError naming `where` when it is not one."""
    if not isinstance(rec, dict):
        raise PreviousError(f"{where}: expected a JSON object, got {type(rec).__name__}")
    missing = [k for k in RECORD_FIELDS if k not in rec]
    if missing:
        raise PreviousError(f"{where}: missing {', '.join(missing)}")
    if not isinstance(rec["is_owner"], bool) or not all(isinstance(rec[k], str) for k in RECORD_FIELDS if k != "is_owner"):
        raise PreviousError(f"{where}: is_owner must be true/false and every other field a string")
    try:
        ts = datetime.strptime(rec["ts"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        raise PreviousError(f"{where}: ts {rec['ts']!r} is not a UTC time such as 2024-03-12T21:14:00Z") from None
    source = rec["source"]
    kind = rec.get("kind") or ("post" if source in POST_SOURCES else "message")  # lines written before "kind"
    title = rec.get("title")
    if not isinstance(title, str):
        title = rec["chat_name"] if source == "mail" else Path(rec["msg_id"]).stem if kind == "post" else ""
    return Message(**{k: rec[k] for k in RECORD_FIELDS if k != "ts"}, ts=ts, kind=kind, title=title)


# ---------------------------------------------------------------------------------------------
# Stable identity


def normal_text(text: str) -> str:
    """`text` as two exports of one message compare: placeholders and pseudonyms without their
    numbers, Unicode composed, spacing collapsed."""
    text = unicodedata.normalize("NFC", text)
    text = PLACEHOLDER.sub(lambda p: p.group().rsplit("_", 1)[0] + ">", text)
    return " ".join(PERSON.sub("Person", text).split())


def has_id(m: Message) -> bool:
    """Whether the app gave the message an id that stays the same in every export."""
    return m.source in ID_SOURCES or (m.source == "mail" and not m.msg_id.startswith("#"))


def identity(m: Message, occurrence: int = 0) -> tuple[str, str | None, str]:
    """(key, slot, text to compare) of a scrubbed, owner-marked message. `slot` groups key-less
    messages (source, chat, minute, side) for telling an edit; None where the app gives ids.
    `occurrence`: how many messages before it in its slot have the same text."""
    same = normal_text(m.text)
    if has_id(m):
        return json.dumps([m.source, normal_text(m.chat_id), normal_text(m.msg_id)]), None, same
    if m.kind == "post" and m.source == "markdown":
        return json.dumps([m.source, normal_text(m.msg_id), normal_text(m.title)]), None, same
    slot = json.dumps([m.source, normal_text(m.chat_id), m.ts.strftime("%Y-%m-%dT%H:%M"), m.is_owner])
    return json.dumps([slot, same, occurrence]), slot, same


class Identities:
    """`identity` over one side's messages in chat and time order, counting equal texts per slot;
    each message first `finish`ed as it will be written (pseudonyms), so both sides compare alike."""

    def __init__(self, finish: Callable[[Message], Message] = lambda m: m) -> None:
        self._finish = finish
        self._slot: str | None = None
        self._seen: Counter[str] = Counter()

    def __call__(self, m: Message) -> tuple[str, str | None, str]:
        m = self._finish(m)
        _, slot, same = identity(m)
        if slot is None:
            return identity(m)
        if slot != self._slot:
            self._slot, self._seen = slot, Counter()
        self._seen[same] += 1
        return identity(m, self._seen[same] - 1)


class ReadIdentities:
    """What `prepare` calls the same message in two overlapping exports of one run (unscrubbed
    values; `Spill.first_time` keeps only a keyed hash): the app's id where it has one, else
    chat, minute, author and text, counted per file so that two "ok"s in a minute stay two."""

    def __init__(self) -> None:
        self._group: tuple | None = None
        self._seen: Counter[tuple] = Counter()

    def __call__(self, m: Message) -> tuple:
        if has_id(m):
            return (m.source, m.chat_id, m.msg_id)
        if m.kind == "post" and m.source == "markdown":
            return (m.source, m.chat_id, m.msg_id, m.ts.timestamp(), m.author_id, m.text)
        group = (m.source, m.chat_id, m.ts.strftime("%Y-%m-%dT%H:%M"))
        if group != self._group:
            self._group, self._seen = group, Counter()
        this = (*group, m.author_id, normal_text(m.text))
        self._seen[this] += 1
        return (*this, self._seen[this])


# ---------------------------------------------------------------------------------------------
# What DIR holds


@dataclass
class Previous:
    """DIR's earlier output, as far as this run needs it before reading the exports."""

    messages: Path
    count: int = 0
    placeholders: Counter[str] = field(default_factory=Counter)  # kind -> the highest number used
    persons: int = 0  # the highest "Person N"
    settings: dict = field(default_factory=dict)  # the last run's report.json "settings"
    runs: list[dict] = field(default_factory=list)  # report.json "runs", oldest first


def carried(path: Path) -> Iterator[Message]:
    """Every message of a messages.jsonl, checked; PreviousError naming the line."""
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise PreviousError(f"{path}:{number}: not valid JSON: {e.msg} at column {e.colno}") from None
            yield from_record(rec, f"{path}:{number}")


def scan(out: Path) -> Previous | None:
    """DIR's messages.jsonl (read through once: how many, which placeholder and pseudonym numbers)
    and its report.json's settings and history; None for a folder without messages.jsonl."""
    path = out / "messages.jsonl"
    if not path.is_file():
        return None
    prev = Previous(path)
    try:
        for m in carried(path):
            prev.count += 1
            for value in (m.text, m.title, m.chat_id, m.chat_name, m.msg_id, m.author_id, m.author):
                for p in PLACEHOLDER.finditer(value):
                    kind, number = p.group()[1:-1].rsplit("_", 1)
                    prev.placeholders[kind.lower()] = max(prev.placeholders[kind.lower()], int(number))
                for p in PERSON.finditer(value):
                    prev.persons = max(prev.persons, int(p.group(1)))
    except (OSError, UnicodeDecodeError) as e:
        raise PreviousError(f"{path}: cannot read: {e}") from e
    report = out / "report.json"
    try:
        data = json.loads(report.read_text(encoding="utf-8")) if report.is_file() else {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PreviousError(f"{report}: cannot read the earlier run's report: {e}; move it away to go on "
                            "(its history of runs is then lost, no message is)") from e
    prev.settings = dict(data.get("settings") or {})
    prev.settings.setdefault("gap_minutes", (data.get("sessions") or {}).get("gap_minutes"))
    prev.runs = list(data.get("runs") or [{"run": 1, "at": None, "messages": prev.count,
                                           "note": "written before prepare kept a history of runs"}])
    return prev


def reserve(placeholder: Callable[[str, str], str], used: Counter[str]) -> None:
    """Spend the placeholder numbers DIR already uses (`PrivacyScrubber.placeholder`), so that a
    value first seen now gets a number of its own."""
    for kind, highest in used.items():
        for n in range(1, highest + 1):
            placeholder(kind, f"held by an earlier run #{n}")


def carry_into(prev: Previous, add: Callable[[Message, bool], None]) -> int:
    """Every held message to `add(message, is_owner)`; how many."""
    n = 0
    for m in carried(prev.messages):
        add(m, m.is_owner)
        n += 1
    return n


def scrubbed(m: Message, text: Callable[[str], str], name: Callable[[str], str]) -> Message:
    """A held message scrubbed again with this run's scrubber: what --blocklist gained since goes."""
    return replace(m, text=text(m.text), title=text(m.title), chat_id=name(m.chat_id), chat_name=name(m.chat_name),
                   msg_id=name(m.msg_id), author_id=name(m.author_id), author=name(m.author))


def known_pseudonyms(met: Counter[tuple[str, str]]) -> dict[str, str]:
    """{name: pseudonym}: the pseudonym a name's messages carry in DIR, where this run's messages
    met their held twins (`Spill.merge`); the most frequent where a name met several."""
    best: dict[str, tuple[int, str]] = {}
    for (name, held), n in met.items():
        if PERSON.fullmatch(held) and not PERSON.fullmatch(name) and n > best.get(name, (0, ""))[0]:
            best[name] = (n, held)
    return {name: held for name, (_, held) in best.items()}


# ---------------------------------------------------------------------------------------------
# Options and history


def owner_digests(owners: Sequence[str]) -> list[str]:
    """The --owner values as report.json keeps them: never as given (an e-mail address must not
    be written), as short digests, enough to tell whether a later run names the same owner."""
    return sorted({hashlib.sha256(o.strip().casefold().encode()).hexdigest()[:16] for o in owners if o.strip()})


def pseudonyms_were_on(prev: Previous) -> bool:
    last = prev.runs[-1] if prev.runs else {}
    return bool(last["pseudonyms"]) if "pseudonyms" in last else bool(prev.settings.get("pseudonyms"))


def refusals(prev: Previous, owners: Sequence[str], pseudonyms: bool, out: Path) -> list[str]:
    """Why this run cannot add to DIR (each with what to do), or nothing."""
    why = []
    before = set(next((r["owner_digests"] for r in reversed(prev.runs) if r.get("owner_digests")), ()))
    gone = before - set(owner_digests(owners))
    if gone:
        why.append(f"{out} holds messages marked as the owner's by {len(gone)} --owner value(s) this run lacks: "
                   "give every --owner value of the earlier run again (you may add more), or prepare into a new "
                   "folder with --out")
    if pseudonyms_were_on(prev) and not pseudonyms:
        why.append(f"{out} was prepared with --pseudonyms and its messages carry them, which cannot be undone: "
                   "add --pseudonyms, or prepare into a new folder with --out from all your exports")
    return why


def settings_changed(before: dict, now: dict) -> dict[str, list]:
    """{setting: [before, now]} for the settings that differ from the folder's last run."""
    return {k: [before.get(k), now.get(k)] for k in WHOLE_SETTINGS
            if k in before and before.get(k) is not None and before.get(k) != now.get(k)}


def next_run(prev: Previous | None, *, at: datetime, inputs: list[dict], read: int, outcome: Counter[str],
             messages: int, owners: Sequence[str], pseudonyms: bool) -> list[dict]:
    """report.json's "runs": the earlier ones and this one."""
    runs = list(prev.runs) if prev else []
    runs.append({
        "run": (runs[-1].get("run", len(runs)) if runs else 0) + 1, "at": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "inputs": [{k: i[k] for k in ("path", "format", "messages")} for i in inputs], "read": read,
        "held_before": prev.count if prev else 0, "new": outcome["new"], "already_there": outcome["already_there"],
        "changed": outcome["changed"], "messages": messages, "owner_digests": owner_digests(owners),
        "pseudonyms": pseudonyms,
    })  # fmt: skip
    return runs
