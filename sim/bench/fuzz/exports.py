"""Targets over the exports `prepare` reads: each reader fed a damaged file in a scratch folder,
found as `prepare` finds it (`ingest.discover`: the format sniffed from the content, a folder
searched), then read to the end.

Contract (host_training/ingest/__init__.py): a reader yields what it could parse, counts and names
what it could not (`reader.stats.skipped`), and raises `IngestError` for a file it cannot read at
all. Nothing else may come out of `read`, and a file no reader recognises is a problem `discover`
names, never an exception. `JsonWindow`, the Telegram reader's byte-level half, is a target of its
own: it may raise only `BadJson`.

Each input is written under a folder of its own (the Discord package reader caches what it reads
around a file by path and modification time), with the files a format expects beside it.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import shutil
import tempfile
from collections import Counter
from email.message import EmailMessage
from email.utils import format_datetime
from functools import cache
from pathlib import Path

from host_training.ingest import IngestError, discover, readers
from host_training.ingest.json_window import BadJson, JsonWindow
from host_training.ingest.telegram import TelegramReader
from host_training.ingest.telegram_gen import write_export

from .engine import Target
from .frames import WHEN
from .ground import JSON_ANCHORS, JSON_TOKENS, _quiet

PROBE_BYTES = 256 << 10  # each token run this long once: a long post or chat, where a slow parser shows
OWNERS = ("Ada Lindqvist", "user5550101", "ada@example.org", "user800000000000000001")
TEXT_TOKENS = (b"\n", b"\r\n", b"\t", b"\x00", b"\xff", b"\xc3\x28", b"\xe2\x80\x8e", b"\xef\xbb\xbf", b": ",
               b" - ", b"[", b"]", b"31/02/2024, 25:61", b"12/03/2024, 21:14 - ", b"9" * 25, b"---\n", b"# ",
               b"From ", b"=?utf-8?b?", b"=?x?q?", b"Content-Type: multipart/mixed; boundary=", b"--b\n",
               b"Content-Transfer-Encoding: base64\n", b"charset=", b"\\x1f", b"<@1>", b"<t:99999999999:t>")


class _Small(TelegramReader):
    chunk_bytes = 512  # window pieces end everywhere: the seams are read as often as the values


# --------------------------------------------------------------------------- seed exports

@cache
def _telegram() -> list[bytes]:
    """A whole account of three chats and a single chat, as Telegram Desktop writes them."""
    out = []
    with tempfile.TemporaryDirectory(prefix="fuzz-telegram-") as tmp:
        for shape, n in (("full", 30), ("single", 12)):
            path = Path(tmp) / f"{shape}.json"
            write_export(path, n, seed=1, shape=shape, n_chats=3, mean_text_chars=40)
            out.append(path.read_bytes())
    full = json.loads(out[0])
    full["contacts"]["list"] = full["contacts"]["list"][:3]  # passed over by the reader: 50 KB of them is no help
    out[0] = json.dumps(full, ensure_ascii=False, indent=1).encode("utf-8")
    return out


def _whatsapp() -> list[bytes]:
    android = ("12/03/2024, 21:14 - Messages and calls are end-to-end encrypted. Tap to learn more.\n"
               "12/03/2024, 21:14 - Jonas Berg: Lindqvist. Is this still your number\n"
               "12/03/2024, 21:16 - Ada Lindqvist: it is. hello Jonas\nand a second line\n"
               "13/03/2024, 08:02 - Jonas Berg: <Media omitted>\n"
               "13/03/2024, 08:03 - Ada Lindqvist: This message was deleted\n"
               "13/03/2024, 08:04 - Ada Lindqvist: the launch is at 06:30 <This message was edited>\n")
    ios = ("[12/03/2024, 21:14:05] Ada Lindqvist: text\n"
           "\u200e[12/03/2024, 21:15:00] Jonas Berg: \u200eMissed voice call\n"
           "[3/12/24, 9:16:00 PM] Jonas Berg: and in the afternoon\n")
    german = ("03.06.23, 18:43 - Kalle: Jannik!! Neue Nummer, alte Frisur.\n"
              "03.06.23, 18:48 - Jannik Wolter: <Medien ausgeschlossen>\n")
    return [t.encode("utf-8") for t in (android, ios, german)]


def _discord() -> list[bytes]:
    author = {"id": "800000000000000001", "name": "ada_l", "discriminator": "0000", "nickname": "Ada Lindqvist",
              "isBot": False, "roles": []}
    other = {**author, "id": "800000000000000002", "name": "noor.h", "nickname": None}
    messages = [
        {"id": "900000000000000001", "type": "Default", "timestamp": "2024-03-12T22:14:00.123+01:00",
         "timestampEdited": None, "isPinned": False, "content": "anyone launching on <@800000000000000001>?",
         "author": other, "attachments": [], "embeds": [], "stickers": [], "reactions": [],
         "mentions": [{"id": "800000000000000001", "name": "ada_l", "nickname": "Ada"}]},
        {"id": "900000000000000002", "type": "Reply", "timestamp": "2024-03-12T22:15:10+00:00", "content": "me!",
         "author": author, "attachments": [{"url": "a.png"}], "reference": {"messageId": "900000000000000001"}},
        {"id": "900000000000000003", "type": "ChannelPinnedMessage", "timestamp": "2024-03-12T22:16:00Z",
         "content": "Pinned a message.", "author": author},
    ]
    export = {"guild": {"id": "700000000000000001", "name": "Balloon Club"},
              "channel": {"id": "700000000000000101", "type": "GuildTextChat", "name": "launches"},
              "messages": messages, "messageCount": len(messages)}
    return [json.dumps(export, indent=2).encode(), json.dumps(export, ensure_ascii=False).encode()]


def _package() -> list[bytes]:
    rows = [{"ID": 1000000000000000001, "Timestamp": "2024-03-14 08:00:00", "Contents": "<@8> morning <:fog:12>",
             "Attachments": ""},
            {"ID": 1000000000000000002, "Timestamp": "2024-03-14 08:01:30.512000+00:00", "Contents": "",
             "Attachments": "https://cdn.example/fog.jpg"}]
    csv_ = ('ID,Timestamp,Contents,Attachments\n900000000000000013,2024-03-13 19:02:00.000000+00:00,"great, 06:30",\n'
            '1000000000000000101,2024-03-16 10:00:00+00:00,"two lines:\nthe payload",\n')
    return [json.dumps(rows).encode(), csv_.encode()]


def _package_files() -> list[bytes]:
    channel = {"id": "700000000000000101", "type": 0, "name": "launches", "guild": {"id": "7", "name": "Club"}}
    index = {"700000000000000101": "launches in Balloon Club", "222": None}
    user = {"id": "800000000000000001", "username": "ada_l", "global_name": "Ada Lindqvist"}
    return [b"\0".join(json.dumps(d).encode() for d in (channel, index, user))]


def _mbox() -> list[bytes]:
    out = []
    for n, (subject, body, cte) in enumerate((("Re: Launch on Sunday?", "Yes, Sunday works. Grüße.\n> quoted\n", "qp"),
                                               ("=?utf-8?q?Gr=C3=BC=C3=9Fe?=", "a base64 body\n" * 3, "b64"))):
        m = EmailMessage()
        m["From"], m["To"], m["Subject"] = "Ada Lindqvist <ada@example.org>", "Noor <noor@example.net>", subject
        m["Date"], m["Message-ID"] = format_datetime(WHEN), f"<m{n}@example.org>"
        m.set_content(body, cte="quoted-printable" if cte == "qp" else "base64")
        m.add_alternative(f"<p>{body}</p>", subtype="html")
        out.append(b"From - Tue Mar 12 21:20:00 2024\n" + m.as_bytes().replace(b"\r\n", b"\n") + b"\n")
    return [out[0] + out[1], out[1]]


def _markdown() -> list[bytes]:
    return [b"---\ntitle: Cold batteries\ndate: 2024-06-12\ntags: [balloons, cold]\n---\n\nEvery flight has a villain."
            b"\n\n- **Lithium AAs** held 1.6 volts.\n\n```\ncode\n```\n[a link](http://x) and ![img](y.png)\n",
            b"# A title\n\nPlain prose about balloons, weather and the cold sky above the field.\n"]


def _answers() -> list[bytes]:
    lines = [{"interview": 1, "id": "approach.first-move", "question": "What do you do first?", "answer": "Look up.",
              "at": "2025-03-12T21:14:03Z"},
             {"interview": 1, "id": "voice.jokes", "question": "Tell a joke.", "skipped": True, "at": "2025-03-12T21:15:03Z"},
             {"interview": 1, "id": "approach.first-move", "question": "Again?", "answer": "Check the wind.",
              "at": "2025-03-12T21:16:03+01:00"}]
    return ["\n".join(json.dumps(x) for x in lines[:n]).encode() + b"\n" for n in (1, 3)]


def _about() -> list[bytes]:
    return [b"I fly balloons.\n\n## Work\n\nMeteorology, mostly.\n\n### Radio\n\nA Yagi on the roof. ##\n",
            b"# Ada\n\nOpening words.\n"]


# --------------------------------------------------------------------------- the runner

def _layout(name: str, data: bytes, folder: Path) -> Path:
    """The files of one input; returns what is named to `discover`, as on prepare's command line."""
    if name == "whatsapp":
        (folder / "WhatsApp Chat with Jonas Berg.txt").write_bytes(data)
        return folder / "WhatsApp Chat with Jonas Berg.txt"
    if name in ("discord_package", "discord_package_files"):
        chat = folder / "package" / "Messages" / "c700000000000000101"
        chat.mkdir(parents=True)
        (folder / "package" / "Account").mkdir()
        meta = data if name == "discord_package_files" else _package_files()[0]
        channel, index, user = (meta.split(b"\0", 2) + [b"", b""])[:3]
        (chat / "channel.json").write_bytes(channel)
        (chat.parent / "index.json").write_bytes(index)
        (folder / "package" / "Account" / "user.json").write_bytes(user)
        (chat / "messages.json").write_bytes(_package()[0] if name == "discord_package_files" else data)
        return folder / "package"
    if name in ("interview", "about"):
        (folder / "answers.jsonl").write_bytes(data if name == "interview" else _answers()[0])
        if name == "about":
            (folder / "about.md").write_bytes(data)
        return folder
    suffix = {"telegram": "result.json", "discord": "launches [700000000000000101].json", "mbox": "Sent.mbox",
              "markdown": "post.md"}[name]
    (folder / suffix).write_bytes(data)
    return folder / suffix


def _reader(name: str):
    counter = itertools.count()

    @contextlib.contextmanager
    def open_(scratch: Path):
        def run(data: bytes) -> str:
            folder = scratch / str(next(counter))
            folder.mkdir(parents=True)
            try:
                return _read_all(_layout(name, data, folder))
            finally:
                shutil.rmtree(folder, ignore_errors=True)
        with _quiet():
            yield run
    return open_


def _read_all(path: Path) -> str:
    """Every export `discover` finds under `path`, read to the end: the outcome, or what escaped."""
    found, problems = discover(path)
    if not found:
        return "unknown format" if problems else "nothing found"
    outcomes: Counter = Counter()
    for file, reader_cls in found:
        reader = (_Small if reader_cls is TelegramReader else reader_cls)(file)
        try:
            for _ in reader.read(OWNERS):
                pass
        except IngestError:
            outcomes["ingest error"] += 1
        outcomes.update(f"skipped {k}" for k in reader.stats.skipped)
    return "+".join(sorted(outcomes)) or "ok"


@contextlib.contextmanager
def _window(scratch: Path):
    def run(data: bytes) -> str:
        window = JsonWindow(io.BytesIO(data), 7, lambda n: None, lambda line: None)
        try:
            window.skip()
            window.seek((0, 0, 0, 0))
            while window.peek() not in ("", "}", "]", ",", ":"):
                window.value()
        except BadJson as e:
            return "recoverable" if e.recoverable else "broken"
        return "ok"
    yield run


def _target(name: str, what: str, seeds, max_bytes: int = 4096) -> Target:
    return Target(name, what, seeds, _reader(name), JSON_TOKENS + TEXT_TOKENS, anchors=JSON_ANCHORS + (b"\n\n", b"---\n"),
                  max_bytes=max_bytes, probe_bytes=PROBE_BYTES)


TARGETS = [
    _target("telegram", "TelegramReader (512-byte window pieces): IngestError or a counted skip", _telegram, 24576),
    _target("whatsapp", "WhatsAppReader, Android, iOS, German: IngestError or a counted skip", _whatsapp),
    _target("discord", "DiscordReader, a DiscordChatExporter file: IngestError or a counted skip", _discord),
    _target("discord_package", "DiscordPackageReader, messages.json or CSV: IngestError or a skip", _package),
    _target("discord_package_files", "DiscordPackageReader, channel.json, index.json, user.json around it",
            _package_files),
    _target("mbox", "MboxReader, sent mail: IngestError or a counted skip", _mbox),
    _target("markdown", "MarkdownReader, a post with front matter: IngestError or a counted skip", _markdown),
    _target("interview", "InterviewReader, answers.jsonl: IngestError or a counted skip", _answers),
    _target("about", "AboutReader, about.md beside the answers: IngestError or a counted skip", _about),
    Target("json_window", "JsonWindow (7-byte pieces): skip, seek back, values: BadJson",
           lambda: _telegram()[1:] + _discord()[:1] + _package()[:1] + _answers(), _window, JSON_TOKENS,
           anchors=JSON_ANCHORS, max_bytes=16384, probe_bytes=PROBE_BYTES // 4),
]

assert {r.format for r in readers()} <= {"telegram", "whatsapp", "discord", "discord_package", "mbox", "markdown",
                                         "interview", "about"}, "a new export reader needs a fuzz target here"
