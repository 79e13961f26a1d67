"""WhatsApp exports as phones in nine languages write them: tests/data/whatsapp holds, per language,
an Android and an iOS export of the same twelve messages (U+200E marks, U+202F before PM,
localised placeholders and system lines as WhatsApp puts them on disk).

Every export: 2 messages of the owner and 2 of Jonas kept, 4 system lines, 2 media placeholders
(Android: the media line and a shared location; iOS: "image omitted" and an attachment), 2
deleted placeholders ("You deleted this message" and "This message was deleted" forms), and an
owner message that ends in the edited marker.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pytest

from host_training.__main__ import main
from host_training.ingest import IngestError, detect, discover, drop_reason
from host_training.ingest.markdown import MarkdownReader
from host_training.ingest.whatsapp import WhatsAppReader, compile_vocabulary, fold

DATA = Path(__file__).parent / "data" / "whatsapp"
OWNER = "Ada Lindqvist"
ANDROID = {
    "en": "WhatsApp Chat with Jonas Berg.txt",
    "de": "WhatsApp Chat mit Jonas Berg.txt",
    "fr": "Discussion WhatsApp avec Jonas Berg.txt",
    "es": "Chat de WhatsApp con Jonas Berg.txt",
    "it": "Chat WhatsApp con Jonas Berg.txt",
    "pt": "Conversa do WhatsApp com Jonas Berg.txt",
    "nl": "WhatsApp-chat met Jonas Berg.txt",
    "ru": "Чат WhatsApp с Jonas Berg.txt",
    "tr": "Jonas Berg ile WhatsApp Sohbeti.txt",
}
# What the owner wrote (the second message has two lines; the edited marker is gone).
OWNER_TEXTS = {
    "en": ["it is. hello Jonas\nlong time", "see you at 10"],
    "de": ["ja. Hallo Jonas\nlange her", "bis um 10"],
    "fr": ["oui. salut Jonas\nça fait longtemps", "à 10 h alors"],
    "es": ["sí. hola Jonas\ncuánto tiempo", "a las 10 entonces"],
    "it": ["sì. ciao Jonas\nquanto tempo", "alle 10 allora"],
    "pt": ["é sim. oi Jonas\nquanto tempo", "às 10 então"],
    "nl": ["ja. hoi Jonas\nlang geleden", "om 10 dan"],
    "ru": ["да. привет, Jonas\nдавно не виделись", "тогда в 10"],
    "tr": ["evet. selam Jonas\nuzun zaman oldu", "o zaman saat 10da"],
}
# Jonas's caption under his photo (Android) and his message that only mentions a missed call (iOS).
JONAS_LAST = {
    "en": ("look at this", "Missed voice call yesterday, sorry"),
    "de": ("schau mal", "Verpasster Sprachanruf gestern, sorry"),
    "fr": ("regarde ça", "Appel vocal manqué hier, désolé"),
    "es": ("mira esto", "Llamada perdida ayer, perdón"),
    "it": ("guarda qui", "Chiamata vocale persa ieri, scusa"),
    "pt": ("olha isso", "Ligação de voz perdida ontem, desculpa"),
    "nl": ("kijk eens", "Gemist spraakgesprek gisteren, sorry"),
    "ru": ("посмотри", "Пропущенный аудиозвонок вчера, извини"),
    "tr": ("şuna bak", "Cevapsız sesli arama dün, kusura bakma"),
}
# WhatsApp's words in the files: none of them may reach training data.
WHATSAPP_WORDS = re.compile(
    r"omitted|omitido|omis|ausgeschlossen|weggela|absente|omess|oculta|медиафайл|отсутствует|dahil edilmedi"
    r"|deleted|gelöscht|supprimé|elimin|apagada|apagou|verwijderd|удален|удалили|silindi|sildiniz"
    r"|edited|bearbeitet|modifi|editó|editada|bewerkt|изменено|düzenlendi"
    r"|encrypted|verschlüsselt|chiffrés|cifrados|crittografati|criptografia|versleuteld|шифрованием|şifrelidir"
    r"|attached|Anhang|angehängt|joint|adjunto|allegato|anexado|bijgevoegd|прикреплено|добавлен|ekli|eklendi"
    r"|maps\.google|Carla|PHOTO|IMG-",
    re.IGNORECASE,
)


def exports() -> list[tuple[str, str, Path]]:
    return [(lang, "android", DATA / "android" / name) for lang, name in ANDROID.items()] + [
        (lang, "ios", DATA / "ios" / lang / "_chat.txt") for lang in ANDROID
    ]


def read(path: Path):
    reader = WhatsAppReader(path)
    return list(reader.read([OWNER])), reader


def tally(messages) -> Counter:
    return Counter(drop_reason(m) or ("owner" if m.author == OWNER else "others") for m in messages)


@pytest.mark.parametrize("lang, platform, path", exports(), ids=[f"{lang}-{p}" for lang, p, _ in exports()])
def test_every_language_and_platform(lang, platform, path):
    assert detect(path) == "whatsapp"
    got, reader = read(path)
    assert tally(got) == {"owner": 2, "others": 2, "service": 4, "media_only": 2, "deleted": 2}
    assert reader.stats.messages == 12 and not reader.stats.skipped and not reader.stats.errors
    kept = [m for m in got if drop_reason(m) is None]
    assert [m.text for m in kept if m.author == OWNER] == OWNER_TEXTS[lang]
    caption, mention = JONAS_LAST[lang]
    assert [m.text for m in kept if m.author == "Jonas Berg"][-1] == (caption if platform == "android" else mention)
    assert not [m.text for m in kept if WHATSAPP_WORDS.search(m.text)]
    # System lines are nobody's words, whoever's name iOS wrote them under.
    assert all(m.author == "" for m in got if m.service)
    assert kept[0].ts == datetime(2024, 3, 13, 21, 15, 5 if platform == "ios" else 0, tzinfo=timezone.utc)
    if platform == "android":
        assert kept[0].chat_name == "Jonas Berg"  # the chat named from the localised file name


@pytest.mark.parametrize("lang", list(ANDROID))
def test_ios_system_lines_known_without_their_direction_marks(lang, tmp_path):
    # A copy that lost its U+200E marks (an editor, a copy-paste): the table alone still knows
    # the encryption notice and the missed call as WhatsApp's lines.
    path = tmp_path / "_chat.txt"
    path.write_text((DATA / "ios" / lang / "_chat.txt").read_text(encoding="utf-8").replace("\u200e", ""), encoding="utf-8")
    got, _ = read(path)
    by_line = {int(m.msg_id): m for m in got}
    assert by_line[1].service and by_line[10].service  # the notice; the missed call (msg_id: the line)
    assert drop_reason(by_line[5]) == "media_only" and drop_reason(by_line[6]) == "deleted"
    assert drop_reason(by_line[12]) is None  # the mention of a missed call stays Jonas's


@pytest.mark.parametrize(
    "header, when",
    [
        ("12.03.24 um 21:14 - ", datetime(2024, 3, 12, 21, 14)),
        ("12.03.2024 в 21:14 - ", datetime(2024, 3, 12, 21, 14)),
        ("02/01/2024 à 15:04 - ", datetime(2024, 1, 2, 15, 4)),
        ("13.03.2024 09:14 ÖS - ", datetime(2024, 3, 13, 21, 14)),
        ("13/3/24, 9:14 p.\u00a0m. - ", datetime(2024, 3, 13, 21, 14)),
        ("13/3/24, 12:05 a. m. - ", datetime(2024, 3, 13, 0, 5)),
        ("[3/13/24, 9:14:05\u202fPM] ", datetime(2024, 3, 13, 21, 14, 5)),
        ("13-03-2024 21:14 - ", datetime(2024, 3, 13, 21, 14)),
        ("13/03/2024, 21.14 - ", datetime(2024, 3, 13, 21, 14)),
        ("[2024-03-13 21:14:05] ", datetime(2024, 3, 13, 21, 14, 5)),
    ],
)
def test_date_and_time_shapes(header, when, tmp_path):
    path = tmp_path / "chat.txt"
    path.write_text(f"{header}Jonas Berg: one\n{header}Ada Lindqvist: two\n{header}Jonas Berg: three\n", encoding="utf-8")
    assert detect(path) == "whatsapp"
    got, reader = read(path)
    assert [(m.author, m.text, m.ts) for m in got][1] == (OWNER, "two", when.replace(tzinfo=timezone.utc))
    assert not reader.stats.skipped


def test_french_chat_is_a_chat_not_a_post(tmp_path):
    # The export that started this: French, named like any text file, with "à" in every date.
    path = tmp_path / "notes.txt"
    path.write_text(
        "02/01/2024 à 15:04 - Luc: On se voit demain ?\n02/01/2024 à 15:05 - Ada Lindqvist: oui, à midi\n"
        "02/01/2024 à 15:06 - Luc: <Médias omis>\n02/01/2024 à 15:07 - Luc: parfait\n",
        encoding="utf-8",
    )
    found, problems = discover(path)
    assert [(p, cls.format) for p, cls in found] == [(path, "whatsapp")] and not problems
    assert not MarkdownReader.sniff(path, path.read_text(encoding="utf-8"))
    got, _ = read(path)
    assert [(m.author, drop_reason(m)) for m in got] == [("Luc", None), (OWNER, None), ("Luc", "media_only"), ("Luc", None)]


UNREADABLE = (
    "2024. 3. 12. 오후 9:14, Jonas Berg : 안녕\n"
    "2024. 3. 12. 오후 9:15, Ada Lindqvist : 안녕하세요\n"
    "2024. 3. 12. 오후 9:16, Jonas Berg : 잘 지내?\n"
)


def test_chat_shaped_file_that_cannot_be_read_is_an_error_naming_file_and_line(tmp_path):
    path = tmp_path / "chat.txt"
    path.write_text("\n" + UNREADABLE, encoding="utf-8")
    assert detect(path) == "whatsapp"  # claimed as a chat, so never taken as a post
    with pytest.raises(IngestError) as e:
        read(path)
    message = str(e.value)
    assert message.startswith(f"{path}: line 2: starts with a date and time ('2024. 3. 12. 오후 9:14')")
    assert "expected 'DATE, TIME - NAME: TEXT' (Android) or '[DATE, TIME] NAME: TEXT' (iOS)" in message
    assert "whatsapp_locales.toml" in message and "안녕" not in message  # the words stay out of the error


def test_prepare_refuses_an_unreadable_chat_and_makes_no_post(tmp_path, capsys):
    path = tmp_path / "chat.txt"
    path.write_text(UNREADABLE, encoding="utf-8")
    out = tmp_path / "out"
    assert main(["--log-level", "WARNING", "prepare", str(path), "--owner", OWNER, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: line 1: starts with a date and time" in err
    assert not out.exists()


def chat_with(tmp_path, header, line, name="chat.txt"):
    """Three messages in the shape `header` (a format string for the minute), the second of which
    goes on with `line`."""
    path = tmp_path / name
    path.write_text(
        f"{header.format(14)}Jonas Berg: one\n{header.format(15)}Ada Lindqvist: two\n{line}\n"
        f"and the line after it\n{header.format(17)}Jonas Berg: three\n",
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize(
    "header, line",
    [
        ("13/03/2024, 21:{} - ", "12/03/2024 18:00: meeting"),  # the line that used to be lost
        ("13/03/2024, 21:{} - ", "12/03/2024 18:00 - meeting"),  # no comma: not this file's date and time
        ("13/03/2024, 21:{} - ", "13/03/2024, 21:16 Uhr - Jonas Berg: garbled"),
        ("13/03/2024, 21:{} - ", "2024-03-12, 18:00 - a date as a phone in ISO would write it"),
        ("13/03/2024, 21:{} - ", "12.03.2024, 18:00 - dots"),
        ("13/03/2024, 21:{} - ", "12/03/24, 18:00 - two-digit year"),
        ("13/03/2024, 21:{} - ", "12/03/2024, 6:00 PM - a 12-hour clock"),
        ("13/03/2024, 21:{} - ", "12/03/2024, 18:00:30 - seconds"),
        ("13/03/2024, 21:{} - ", "[12/03/2024, 18:00:30] Jonas Berg: pasted from an iPhone's export"),
        ("[13/03/2024, 21:{}:05] ", "12/03/2024, 18:00 - Jonas Berg: pasted from an Android export"),
        ("[13/03/2024, 21:{}:05] ", "[12/03/2024, 18:00] Jonas Berg: copied without seconds"),
        ("13.03.24 um 21:{} - ", "12.03.24, 18:00 - no 'um'"),
        ("3/13/24, 9:{} PM - ", "3/12/24, 18:00 - no PM"),
    ],
)
def test_a_line_dated_in_another_shape_continues_the_message(header, line, tmp_path):
    got, reader = read(chat_with(tmp_path, header, line))
    assert [(m.author, m.text) for m in got] == [
        ("Jonas Berg", "one"), (OWNER, f"two\n{line}\nand the line after it"), ("Jonas Berg", "three")
    ]
    assert not reader.stats.skipped and not reader.stats.errors


@pytest.mark.parametrize(
    "header, line",
    [
        ("13/03/2024, 21:{} - ", "12/03/2024, 18:00 meeting at the pier"),
        ("13/03/2024, 21:{} - ", "12/03/2024, 18:00: meeting"),
        ("13/03/2024, 21:{} - ", "12/03/2024, 18:00-19:00 - meeting"),
        ("13/03/2024, 21:{} - ", "12/03/2024 - the day we met"),
        ("13/03/2024, 21:{} - ", "12/03/2024: the day we met"),
        ("[13/03/2024, 21:{}:05] ", "[12/03/2024, 18:00:00 meeting"),
        ("[13/03/2024, 21:{}:05] ", "12/03/2024, 18:00:00] meeting"),
    ],
)
def test_a_line_dated_in_the_files_shape_without_its_separator_continues_the_message(header, line, tmp_path):
    got, reader = read(chat_with(tmp_path, header, line))
    assert [m.text for m in got] == ["one", f"two\n{line}\nand the line after it", "three"]
    assert not reader.stats.skipped and not reader.stats.errors


@pytest.mark.parametrize("header", ["13/03/2024, 21:{} - ", "[13/03/2024, 21:{}:05] "])
def test_a_message_line_with_an_impossible_date_is_the_only_line_lost(header, tmp_path):
    line = header.replace("13/03", "31/02").format(16) + "Jonas Berg: garbled"
    path = chat_with(tmp_path, header, line)
    got, reader = read(path)
    # Only the line that cannot be dated goes; the line under it stays with the message above.
    assert [(m.msg_id, m.text) for m in got] == [("1", "one"), ("2", "two\nand the line after it"), ("5", "three")]
    assert reader.stats.skipped == {"corrupt": 1} and reader.stats.messages == 3
    assert reader.stats.errors == [
        f"{path}: line 3: bad date or time (day is out of range for month); the lines after it, up to the next "
        "message line, are kept with the message of line 2"
    ]


def test_an_impossible_date_on_the_first_line_counts_each_line_under_it(tmp_path):
    path = tmp_path / "chat.txt"
    path.write_text(
        "31/02/2024, 21:13 - Jonas Berg: garbled\nits second line\n\nits third line\n"
        "13/03/2024, 21:14 - Jonas Berg: one\n13/03/2024, 21:15 - Ada Lindqvist: two\n",
        encoding="utf-8",
    )
    got, reader = read(path)
    assert [m.text for m in got] == ["one", "two"]
    assert reader.stats.skipped == {"corrupt": 3}  # the line that cannot be dated and the two under it
    assert [e.split(": ", 2)[1] for e in reader.stats.errors] == ["line 1", "line 2", "line 4"]
    assert reader.stats.errors[1].endswith(
        "line 2: follows line 1, a message line whose date or time cannot be read, with no message before it"
    )


def test_lines_dated_in_another_shape_do_not_make_a_readable_chat_unreadable(tmp_path):
    # A few pasted log lines in a message: text, and the file is read (most dated lines are messages).
    path = tmp_path / "chat.txt"
    path.write_text(
        "13/03/2024, 21:14 - Jonas Berg: the log\n12/03/2024 18:00: start\n12/03/2024 18:05: stop\n"
        "13/03/2024, 21:15 - Ada Lindqvist: thanks\n13/03/2024, 21:16 - Jonas Berg: np\n",
        encoding="utf-8",
    )
    got, reader = read(path)
    assert [m.text for m in got] == ["the log\n12/03/2024 18:00: start\n12/03/2024 18:05: stop", "thanks", "np"]
    assert not reader.stats.skipped


def test_system_line_with_a_colon_and_no_quotes(tmp_path):
    path = tmp_path / "chat.txt"
    path.write_text(
        "13/03/2024, 21:14 - Jonas Berg changed the subject to Lakes: May\n"
        "13/03/2024, 21:15 - Jonas Berg: Tom left: the bus was early\n",
        encoding="utf-8",
    )
    got, _ = read(path)
    assert [(m.author, drop_reason(m)) for m in got] == [("", "service"), ("Jonas Berg", None)]


def test_locale_table_errors_name_the_entry():
    with pytest.raises(ValueError, match=r"\[xx\] medai: unknown entry"):
        compile_vocabulary({"xx": {"medai": ["<Média omis>"]}})
    with pytest.raises(ValueError, match=r"\[xx\] media: expected a list of non-empty strings"):
        compile_vocabulary({"xx": {"media": "<Média omis>"}})


def test_a_language_added_to_the_table_is_understood():
    vocab = compile_vocabulary({"sv": {"media": ["<Media utelämnat>"], "deleted": ["Detta meddelande raderades"]}})
    assert vocab.media.fullmatch(fold("\u200e<Media utelämnat>"))
    assert vocab.deleted.fullmatch(fold("Detta meddelande raderades."))
    assert not vocab.media.fullmatch(fold("<Medien ausgeschlossen>"))


@pytest.mark.parametrize("lang, platform", [("fr", "android"), ("tr", "ios"), ("de", "ios"), ("es", "android")])
def test_prepare_trains_on_the_owners_words_only(lang, platform, tmp_path):
    path = DATA / "android" / ANDROID[lang] if platform == "android" else DATA / "ios" / lang / "_chat.txt"
    out = tmp_path / "out"
    assert main(["--log-level", "WARNING", "prepare", str(path), "--owner", OWNER, "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert [i["format"] for i in report["inputs"]] == ["whatsapp"]
    assert report["messages"]["kept_owner"] == 2 and report["messages"]["kept_posts"] == 0
    assert report["messages"]["dropped"] == {"service": 4, "deleted": 2, "media_only": 2}
    examples = [json.loads(line) for name in ("train.jsonl", "val.jsonl")
                for line in (out / name).read_text(encoding="utf-8").splitlines()]
    turns = [t for ex in examples for t in ex["messages"]]
    said = "\n".join(t["content"] for t in turns if t["role"] == "assistant")
    assert all(text in said for text in OWNER_TEXTS[lang])
    assert not [t["content"] for t in turns if WHATSAPP_WORDS.search(t["content"])]
    assert {t["name"] for t in turns} <= {OWNER, "Jonas Berg"}
