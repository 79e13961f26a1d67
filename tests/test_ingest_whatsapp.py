"""WhatsApp .txt reader: Android and iOS lines, continuation, system lines, media, deleted."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from host_training.ingest import detect, drop_reason
from host_training.ingest.whatsapp import WhatsAppReader

ROOT = Path(__file__).resolve().parent.parent

UTC = timezone.utc

ANDROID = """\ufeff12/03/2024, 21:14 - Messages and calls are end-to-end encrypted. No one outside of this chat, not even WhatsApp, can read or listen to them. Tap to learn more.
12/03/2024, 21:14 - Jonas Berg: Lindqvist. Is this still your number
12/03/2024, 21:16 - Ada Lindqvist: it is. hello Jonas
second line of the same message

third line after a blank one
13/03/2024, 08:02 - Ada Lindqvist: <Media omitted>
13/03/2024, 08:03 - Jonas Berg: This message was deleted
13/03/2024, 08:04 - Ada Lindqvist: You deleted this message
13/03/2024, 08:05 - Jonas Berg: fixed typo <This message was edited>
13/03/2024, 08:06 - Ada Lindqvist changed the subject from "Lakes" to "Lakes: May"
13/03/2024, 08:07 - Jonas Berg: time: 10:30, place: the pier
"""


def write(tmp_path: Path, text: str, name="WhatsApp Chat with Jonas Berg.txt") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def read(path: Path):
    reader = WhatsAppReader(path)
    return list(reader.read(["Ada Lindqvist"])), reader


def test_android_export(tmp_path):
    got, reader = read(write(tmp_path, ANDROID))
    assert [(m.msg_id, m.author, drop_reason(m)) for m in got] == [
        ("1", "", "service"),
        ("2", "Jonas Berg", None),
        ("3", "Ada Lindqvist", None),
        ("7", "Ada Lindqvist", "media_only"),
        ("8", "Jonas Berg", "deleted"),
        ("9", "Ada Lindqvist", "deleted"),
        ("10", "Jonas Berg", None),
        ("11", "", "service"),
        ("12", "Jonas Berg", None),
    ]
    assert got[2].text == "it is. hello Jonas\nsecond line of the same message\n\nthird line after a blank one"
    assert got[6].text == "fixed typo"
    assert got[8].text == "time: 10:30, place: the pier"
    assert got[1].ts == datetime(2024, 3, 12, 21, 14, tzinfo=UTC)
    assert (got[1].source, got[1].chat_id, got[1].chat_name, got[1].author_id) == (
        "whatsapp", "Jonas Berg", "Jonas Berg", "Jonas Berg"
    )  # fmt: skip
    assert reader.stats.messages == 9 and not reader.stats.skipped


def test_day_first_and_month_first_read_from_the_file(tmp_path):
    month_first = "03/12/2024, 21:14 - A: one\n03/13/2024, 09:00 - B: two\n"
    got, _ = read(write(tmp_path, month_first))
    assert [m.ts for m in got] == [datetime(2024, 3, 12, 21, 14, tzinfo=UTC), datetime(2024, 3, 13, 9, 0, tzinfo=UTC)]
    ambiguous = "03/04/2024, 21:14 - A: one\n"
    (m,), _ = read(write(tmp_path, ambiguous))
    assert m.ts == datetime(2024, 4, 3, 21, 14, tzinfo=UTC)  # day-first when nothing tells


def test_twelve_hour_clock_and_ios_brackets(tmp_path):
    text = (
        "3/13/24, 9:14\u202fPM - Ada: evening\n"
        "3/13/24, 12:05 AM - Ada: just after midnight\n"
    )
    got, _ = read(write(tmp_path, text))
    assert [m.ts for m in got] == [datetime(2024, 3, 13, 21, 14, tzinfo=UTC), datetime(2024, 3, 13, 0, 5, tzinfo=UTC)]
    ios = "[12/03/2024, 21:14:05] Ada Lindqvist: hi\n\u200e[12/03/2024, 21:15:00] Jonas Berg: \u200eimage omitted\n"
    got, _ = read(write(tmp_path, ios, name="_chat.txt"))
    assert got[0].ts == datetime(2024, 3, 12, 21, 14, 5, tzinfo=UTC)
    assert [drop_reason(m) for m in got] == [None, "media_only"]
    assert got[0].chat_name == tmp_path.name  # iOS names the file _chat.txt inside the chat's folder


def test_undecodable_line_skipped_counted_and_named(tmp_path):
    path = tmp_path / "chat.txt"
    path.write_bytes(
        b"12/03/2024, 21:14 - A: fine\n12/03/2024, 21:15 - B: bad \xff byte\n12/03/2024, 21:16 - A: fine again\n"
    )
    got, reader = read(path)
    assert [m.text for m in got] == ["fine", "fine again"]
    assert reader.stats.skipped == {"undecodable": 1}
    assert reader.stats.errors == [f"{path}: line 2: not valid UTF-8"]


def test_impossible_date_is_skipped(tmp_path):
    got, reader = read(write(tmp_path, "31/12/2024, 10:00 - A: ok\n31/02/2024, 10:00 - A: no such day\n"))
    assert [m.text for m in got] == ["ok"]
    assert reader.stats.skipped == {"corrupt": 1} and "line 2: bad date" in reader.stats.errors[0]


def test_detection(tmp_path):
    assert detect(write(tmp_path, ANDROID)) == "whatsapp"
    assert detect(write(tmp_path, "Dear diary, 12/03/2024, 21:14 - nothing\n", name="diary.txt")) == "markdown"


# One conversation as each common locale's export writes it: (header of message 1, of 2, of 3).
# The times are 21:14:05, 21:16:30 and, the next day, 08:02:00 (no seconds: :00).
LOCALES = {
    "android en-GB, 24 h": ("12/03/2024, 21:14 - ", "12/03/2024, 21:16 - ", "13/03/2024, 08:02 - "),
    "android en-US, 12 h, 2-digit year": ("3/12/24, 9:14 PM - ", "3/12/24, 9:16 PM - ", "3/13/24, 8:02 AM - "),
    "android, narrow no-break space before PM": ("3/12/24, 9:14\u202fPM - ", "3/12/24, 9:16\u202fPM - ", "3/13/24, "
                                                                                                         "8:02\u202fAM - "),
    "android de-DE, dots": ("12.03.24, 21:14 - ", "12.03.24, 21:16 - ", "13.03.24, 08:02 - "),
    "android es-ES, p. m.": ("12/3/24, 9:14 p. m. - ", "12/3/24, 9:16 p. m. - ", "13/3/24, 8:02 a. m. - "),
    "iOS en-GB, seconds, direction mark": ("\u200e[12/03/2024, 21:14:05] ", "[12/03/2024, 21:16:30] ", "\u200e[13/03/2024, "
                                                                                                       "08:02:00] "),
    "iOS en-US, 12 h with seconds": ("[3/12/24, 9:14:05 PM] ", "[3/12/24, 9:16:30 PM] ", "[3/13/24, 8:02:00 AM] "),
    "ISO dates": ("2024-03-12, 21:14:05 - ", "2024-03-12, 21:16:30 - ", "2024-03-13, 08:02:00 - "),
}


def test_every_common_locale_reads_the_same_conversation(tmp_path):
    for locale, (h1, h2, h3) in LOCALES.items():
        text = (f"{h1}Jonas Berg: Lindqvist. Is this still your number\n"
                f"{h2}Ada Lindqvist: it is.\nsecond line\n"
                f"{h3}Ada Lindqvist: \u200eimage omitted\n")
        got, reader = read(write(tmp_path, text, name=f"{locale}.txt"))
        assert [(m.author, m.text, drop_reason(m)) for m in got] == [
            ("Jonas Berg", "Lindqvist. Is this still your number", None),
            ("Ada Lindqvist", "it is.\nsecond line", None),
            ("Ada Lindqvist", "image omitted", "media_only"),  # the direction mark goes
        ], locale
        seconds = h1.count(":") == 2
        assert got[0].ts == datetime(2024, 3, 12, 21, 14, 5 if seconds else 0, tzinfo=UTC), locale
        assert got[2].ts.date().isoformat() == "2024-03-13", locale
        assert not reader.stats.skipped, locale


def test_a_message_longer_than_any_chat_is_refused_by_name_and_memory_stays_flat(tmp_path):
    """Issue 41, attack 10, at a tenth of the size: a 5 MB message of many lines and a 3 MB line
    with no end are each refused by their line number, the messages around them are read, and the
    reader never holds more than a small part of the file (two passes, a line at a time)."""
    from host_training.ingest.whatsapp import MAX_MESSAGE_CHARS

    path = tmp_path / "WhatsApp Chat with Jonas Berg.txt"
    with path.open("w", encoding="utf-8") as f:
        f.write("12/03/2024, 21:14 - Jonas Berg: before\n")
        f.write("12/03/2024, 21:15 - Jonas Berg: a flood\n" + ("x" * 999 + "\n") * 5_000)
        f.write("12/03/2024, 21:16 - Ada Lindqvist: between\n")
        f.write("12/03/2024, 21:17 - Jonas Berg: " + "y" * 3_000_000 + "\n")
        f.write("12/03/2024, 21:18 - Ada Lindqvist: after\n")
    # Read in a process of its own (tracemalloc counts every thread's allocations, and a thread an
    # earlier test left in this worker would count against the reader), after a small export has
    # been read there: the reader's first-use costs (its locale table) are not what is measured.
    code = ("import json, sys, tracemalloc\nfrom pathlib import Path\n"
            "from tests.test_ingest_whatsapp import ANDROID, read, write\n"
            "read(write(Path(sys.argv[1]).parent, ANDROID, 'small.txt'))\n"
            "tracemalloc.start()\ngot, reader = read(Path(sys.argv[1]))\n"
            "print(json.dumps({'peak': tracemalloc.get_traced_memory()[1], 'texts': [m.text for m in got],"
            " 'skipped': reader.stats.skipped, 'errors': reader.stats.errors}))")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.splitlines()[-1])  # the last line: the reader may log before it
    peak = got["peak"]
    assert got["texts"] == ["before", "between", "after"]
    assert got["skipped"] == {"too_long": 2}
    assert [e.split(": ", 2)[1] for e in got["errors"]] == ["line 2", "line 5004"]
    assert f"more than {MAX_MESSAGE_CHARS:,} characters" in got["errors"][0]
    assert peak < path.stat().st_size / 4, f"{peak:,} bytes held for a {path.stat().st_size:,}-byte file"
