"""Synthetic Telegram Desktop exports of any size, for `make bench` and the tests.

`write_export(path, n_messages)` writes what Telegram Desktop's "Machine-readable JSON" export
looks like: the same keys, the same one-space indentation, UTF-8 written as is (accents,
Cyrillic, emoji), `text` as a string or as a list with entity objects, `text_entities`
beside it, service messages, photos, stickers, forwarded messages, replies, edits, several
chats of very different sizes, a Saved Messages chat without a "name" (as Telegram writes
it), a left chat, and the other big top-level keys (contacts, frequent contacts, other data)
that a reader has to pass over.

It writes one message at a time from string templates (the json module only escapes the
strings), so a million messages take seconds and memory does not grow with the count.
Everything comes from `random.Random(seed)`: same arguments, same bytes.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

OWNER = ("Ada L", "user5550101")
PEOPLE = [
    ("Noor Haddad", "user4440001"), ("Tomasz Wójcik", "user4440002"), ("Aiko Tanaka", "user4440003"),
    ("Léa Martin", "user4440004"), ("Дмитрий Орлов", "user4440005"), ("Kwame Mensah", "user4440006"),
    ("Sofía Ruiz", "user4440007"), ("Ben O'Connor", "user4440008"), ("Priya Nair", "user4440009"),
]  # fmt: skip
WORDS = (
    "the balloon rose past the cloud deck and the radio kept talking about wind shear ozone "
    "pressure bread starter flour water oven morning evening train station coffee weather front "
    "launch window payload battery cold minus forty degrees ground station antenna yagi lora "
    "tracker helium neck lift burst altitude parachute field farmer tractor recovery hedge "
    "café naïve über résumé привет спасибо погода 🎈 🌤️ ☕ ok haha sure maybe tomorrow tonight "
    "did you see that? yes! no. lol, \"quoted\" words, a back\\slash, tabs\tand 50% €5 £3"
).split(" ")
START_UNIX = 1_640_995_200  # 2022-01-01 UTC


@dataclass
class Written:
    messages: int = 0
    bytes: int = 0
    chats: dict[str, int] = field(default_factory=dict)  # chat id -> messages written


def _text_pool(rng: random.Random, size: int, mean_chars: int) -> list[str]:
    pool = []
    for _ in range(size):
        target = max(1, int(rng.expovariate(1 / mean_chars)))  # many short, a few long
        words, n = [], 0
        while n < target:
            w = rng.choice(WORDS)
            words.append(w)
            n += len(w) + 1
        pool.append(" ".join(words).capitalize())
    return pool


def write_export(
    path: Path | str,
    n_messages: int,
    *,
    seed: int = 0,
    shape: str = "full",
    n_chats: int = 12,
    mean_text_chars: int = 200,
) -> Written:
    """Write a Telegram export of `n_messages` messages to `path` ("full" or "single" chat)."""
    if shape not in ("full", "single"):
        raise ValueError(f"shape {shape!r}: expected 'full' or 'single'")
    rng = random.Random(seed)
    pool = _text_pool(rng, 2048, mean_text_chars)
    sizes = _chat_sizes(n_messages, shape, n_chats)
    left = min(sizes[0], n_messages // 100) if shape == "full" else 0
    sizes[0] -= left
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        export = _ExportWriter(f, rng, pool)
        if shape == "single":
            person = PEOPLE[0]
            export.chat(4440001, "personal_chat", person[0], sizes[0], 0, [person])
            f.write("\n")
        else:
            export.full(sizes, left)
        export.out.bytes = f.tell()
    return export.out


def _chat_sizes(n_messages: int, shape: str, n_chats: int) -> list[int]:
    """How many messages each chat gets: one big chat, a long tail, a small Saved Messages."""
    if shape == "single":
        return [n_messages]
    weights = [1 / (i + 1) ** 1.2 for i in range(max(1, n_chats))]
    total = sum(weights)
    sizes = [int(n_messages * w / total) for w in weights]
    sizes[0] += n_messages - sum(sizes)
    return sizes


class _ExportWriter:
    """Writes the export's chats and messages to `f`, drawing everything from `rng` in one fixed
    order (same seed, same bytes), and counts what it wrote in `out`."""

    def __init__(self, f: TextIO, rng: random.Random, pool: list[str]) -> None:
        self.f, self.rng, self.pool = f, rng, pool
        self.enc = json.encoder.encode_basestring  # C: escapes quotes, backslashes, control characters
        self.out = Written()

    def full(self, sizes: list[int], left: int) -> None:
        """The whole export: preamble, every chat (Saved Messages last), a left chat, other data."""
        f, rng = self.f, self.rng
        f.write(_preamble(rng, self.enc))
        f.write(' "chats": {\n  "about": "This page lists all chats from this export.",\n  "list": [\n')
        kinds = ["personal_chat", "private_group", "private_supergroup", "public_channel"]
        for i, size in enumerate(sizes):
            if i == len(sizes) - 1 and len(sizes) > 1:
                f.write(",\n")
                self.chat(5550101, "saved_messages", None, size, 3, [OWNER])  # no "name", as Telegram writes it
                continue
            if i:
                f.write(",\n")
            ctype = kinds[i % len(kinds)]
            if ctype == "personal_chat":
                people = [PEOPLE[i % len(PEOPLE)]]
                name = people[0][0]
            else:
                people = rng.sample(PEOPLE, 4)
                name = f"Group {i}: launch crew"
            self.chat(4440100 + i, ctype, name, size, 3, people)
        f.write("\n  ]\n },\n")
        f.write(' "left_chats": {\n  "about": "This page lists all chats you left.",\n  "list": [\n')
        self.chat(4449999, "private_supergroup", "Old club", left, 3, PEOPLE[:3])
        f.write("\n  ]\n },\n")
        f.write(' "other_data": {\n  "about": "Other data.",\n  "changes_log": [\n')
        f.write(",\n".join(f'   {{\n    "date": "2023-01-0{k + 1}T10:00:00",\n    "change": "profile_name"\n   }}' for k in range(5)))
        f.write("\n  ]\n }\n}\n")

    def chat(self, cid: int, ctype: str, name: str | None, size: int, level: int,
             people: list[tuple[str, str]]) -> None:
        f, rng, enc = self.f, self.rng, self.enc
        ind = " " * level
        j = ind + " "
        named = f'{j}"name": {enc(name)},\n' if name is not None else ""
        f.write(f'{ind}{{\n{named}{j}"type": "{ctype}",\n{j}"id": {cid},\n{j}"messages": [\n')
        t = START_UNIX + rng.randrange(86_400)
        batch = []
        for mid in range(1, size + 1):
            t += int(rng.expovariate(1 / 600)) + 1
            batch.append(self.message(mid, t, people, j + " "))
            if len(batch) == 1000:
                f.write(",\n".join(batch))
                batch.clear()
                if mid < size:
                    f.write(",\n")
        f.write(",\n".join(batch))
        f.write(f"\n{j}]\n{ind}}}")
        self.out.messages += size
        self.out.chats[str(cid)] = size

    def message(self, mid: int, t: int, chat_people: list[tuple[str, str]], ind: str) -> str:
        rng, enc, pool = self.rng, self.enc, self.pool
        j = ind + " "
        r = rng.random()
        date = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t + 3600))  # local time, UTC+1 machine
        head = f'{ind}{{\n{j}"id": {mid},\n'
        when = f'{j}"date": "{date}",\n{j}"date_unixtime": "{t}",\n'
        if r < 0.04:  # a call, a pin, a join
            name, uid = rng.choice(chat_people)
            action = rng.choice(['"phone_call",\n' + f'{j}"duration_seconds": {rng.randrange(5, 900)}', '"pin_message",\n' + f'{j}"message_id": {max(1, mid - 3)}', '"join_group_by_link",\n' + f'{j}"inviter": "Group"'])
            return (f'{head}{j}"type": "service",\n{when}{j}"actor": {enc(name)},\n{j}"actor_id": "{uid}",\n'
                    f'{j}"action": {action},\n{j}"text": "",\n{j}"text_entities": []\n{ind}}}')  # fmt: skip
        name, uid = OWNER if rng.random() < 0.45 else rng.choice(chat_people)
        text = pool[int(rng.random() * len(pool))]
        extra = ""
        if rng.random() < 0.1:
            extra += f'{j}"reply_to_message_id": {max(1, mid - rng.randrange(1, 20))},\n'
        if rng.random() < 0.05:
            extra += f'{j}"edited": "{date}",\n{j}"edited_unixtime": "{t + 60}",\n'
        if r < 0.07:  # a photo, with a caption half of the time
            extra += f'{j}"photo": "photos/photo_{mid}@{date[:10]}.jpg",\n{j}"width": 1280,\n{j}"height": 960,\n'
            text = text if rng.random() < 0.5 else ""
        elif r < 0.09:  # a sticker
            extra += (f'{j}"file": "stickers/sticker_{mid}.webp",\n{j}"thumbnail": "stickers/sticker_{mid}.webp_thumb.jpg",\n'
                      f'{j}"media_type": "sticker",\n{j}"sticker_emoji": "🎈",\n{j}"width": 512,\n{j}"height": 512,\n')  # fmt: skip
            text = ""
        elif r < 0.12:
            extra += f'{j}"forwarded_from": "Upper Air Bulletin",\n'
        if text and rng.random() < 0.15:
            as_text, ents = self.entities(text, j)
        else:
            as_text = enc(text)
            ents = _entity_list([{"type": "plain", "text": text}] if text else [], j, enc)
        return (f'{head}{j}"type": "message",\n{when}{j}"from": {enc(name)},\n{j}"from_id": "{uid}",\n{extra}'
                f'{j}"text": {as_text},\n{j}"text_entities": {ents}\n{ind}}}')  # fmt: skip

    def entities(self, text: str, ind: str) -> tuple[str, str]:
        """(`text` as a list with a bold word and a link, `text_entities`) for one message."""
        enc = self.enc
        cut = text.find(" ", len(text) // 3)
        if cut < 0:
            plain = [{"type": "plain", "text": text}]
            return enc(text), _entity_list(plain, ind, enc)
        head, word, tail = text[:cut], "https://example.org/flight", text[cut:]
        parts = [
            {"type": "plain", "text": head},
            {"type": "link", "text": word},
            {"type": "bold", "text": tail},
        ]
        as_list = "[\n" + ",\n".join(
            f"{ind}  {enc(head)}" if i == 0 else f"{ind}  {{\n{ind}   \"type\": \"{p['type']}\",\n{ind}   \"text\": {enc(p['text'])}\n{ind}  }}"
            for i, p in enumerate(parts)
        ) + f"\n{ind} ]"
        return as_list, _entity_list(parts, ind, enc)


def _entity_list(parts: list[dict], ind: str, enc) -> str:
    if not parts:
        return "[]"
    items = ",\n".join(
        f'{ind} {{\n{ind}  "type": "{p["type"]}",\n{ind}  "text": {enc(p["text"])}\n{ind} }}' for p in parts
    )
    return f"[\n{items}\n{ind}]"


def _preamble(rng: random.Random, enc) -> str:
    """The top-level keys before "chats": about, personal information, contacts, frequent contacts."""
    contacts = ",\n".join(
        f'   {{\n    "user_id": {6660000 + k},\n    "first_name": {enc(rng.choice(PEOPLE)[0].split()[0])},\n'
        f'    "last_name": "Contact {k}",\n    "phone_number": "+44 7700 9{k:05d}",\n'
        f'    "date": "2022-05-01T10:00:00",\n    "date_unixtime": "1651399200"\n   }}'
        for k in range(300)
    )
    frequent = ",\n".join(
        f'   {{\n    "id": {4440001 + k},\n    "category": "people",\n    "type": "user",\n'
        f'    "name": {enc(PEOPLE[k][0])},\n    "rating": {rng.random():.6f}\n   }}'
        for k in range(len(PEOPLE))
    )
    return (
        '{\n "about": "Here is the data you requested. Synthetic: written by stratoecho\'s telegram_gen.",\n'
        ' "personal_information": {\n  "user_id": 5550101,\n  "first_name": "Ada",\n  "last_name": "Lindqvist",\n'
        '  "phone_number": "+44 7700 900123",\n  "username": "@ada_aloft",\n  "bio": "weather, balloons, bread."\n },\n'
        ' "profile_pictures": [\n  {\n   "date": "2022-02-01T10:00:00",\n   "date_unixtime": "1643709600",\n'
        '   "photo": "profile_pictures/photo_1.jpg"\n  }\n ],\n'
        f' "contacts": {{\n  "about": "Contacts.",\n  "list": [\n{contacts}\n  ]\n }},\n'
        f' "frequent_contacts": {{\n  "about": "Frequent contacts.",\n  "list": [\n{frequent}\n  ]\n }},\n'
    )
