"""mbox reader: bodies (multipart, quoted-printable, base64, charsets, HTML), quotes and
signatures cut, forwards flagged, owners by hashed address or name, mails without a date.

tests/fixtures/mbox/Sent.mbox holds ten mails, in order:
 1 multipart/alternative, QP UTF-8, Gmail "On ... wrote:" quote (wrapped), "-- " signature
 2 ISO-8859-1 8bit body and raw 8-bit subject, Outlook "-----Original Message-----", "AW:"
 3 a forward and nothing else ("Fwd:", Gmail's forwarded-message line)
 4 a forward with a note, base64 body, RFC 2047 subject, from another address of the owner
 5 a mail from someone else
 6 no Date header
 7 text/html only, Gmail quote in a blockquote, "RE: Re:"
 8 Outlook rule and From/Sent block below the answer, "Sent from my iPhone", "SV:"
 9 interleaved answers below "Name <addr> wrote:", format=flowed, an escaped ">From " line
10 an attachment and no text
"""

from __future__ import annotations

import json
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest

from host_training.__main__ import main
from host_training.ingest import IngestError, detect, drop_reason
from host_training.ingest.mbox import MboxReader, clean_subject, html_to_text, mail_id, strip_quotes

UTC = timezone.utc
SENT = Path(__file__).parent / "fixtures" / "mbox" / "Sent.mbox"
OWNERS = ["Ada Lindqvist", "ada.lindqvist@example.org"]


def read(path: Path = SENT, owners=OWNERS):
    reader = MboxReader(path)
    return list(reader.read(list(owners))), reader


def mail(headers: str, body: str) -> bytes:
    return f"From - Tue Mar 12 21:14:00 2024\n{headers.strip()}\n\n{body}\n".encode()


def test_detected_from_content(tmp_path):
    assert detect(SENT) == "mbox"
    shutil.copy(SENT, tmp_path / "Sent")  # Thunderbird's file has no suffix
    assert detect(tmp_path / "Sent") == "mbox"
    prose = tmp_path / "note.txt"
    prose.write_text("From the start I knew the fog would win.\nIt always does: ask anyone.\n")
    assert detect(prose) == "markdown"


def test_every_mail_and_what_becomes_of_it():
    got, reader = read()
    assert [(m.title, m.is_owner, drop_reason(m)) for m in got] == [
        ("Launch on Sunday? ring me on +44 7700 900456", True, None),
        ("Kaffee im Café?", True, None),
        ("Upper air bulletin", True, "forwarded"),
        ("Jet stream – north", True, None),
        ("Launch on Sunday?", False, "not_owner"),
        ("Helium order", True, None),
        ("Parachute", True, None),
        ("Two questions", True, None),
        ("photo", True, "media_only"),
    ]
    texts = [m.text for m in got]
    assert texts[0] == (
        "Yes, Sunday works. Grüße from the fog, and the forecast says 4 m/s at dawn.\n\n"
        "Call me on +44 7700 900123 if it changes."
    )  # QP decoded, soft break joined; quote, attribution and signature gone
    assert texts[1] == "Gerne! Das Café am Hafen, um halb zehn."  # latin-1; the original message cut
    assert texts[3] == "Thought you would like this one, honestly."  # the forward under the note cut
    assert texts[5] == "Two cylinders please, the big ones.\n\nCheers,\nAda"  # from HTML, quote left out
    assert texts[6] == "The red one folds smaller, take that."  # footer and Outlook block cut
    assert texts[7] == (
        "At dawn, before the wind picks up and the thermals start.\nThe north field.\n"
        "From there we can see the whole valley."
    )
    assert {m.kind for m in got} == {"post"} and {m.source for m in got} == {"mail"}
    assert got[0].ts == datetime(2024, 3, 12, 21, 20, tzinfo=UTC)  # +0100 to UTC
    assert got[5].ts == datetime(2024, 3, 14, 13, 0, tzinfo=UTC)  # -0500 to UTC
    assert reader.stats.repaired == {"text_from_html": 1, "raw_8bit_header": 1}


def test_a_mail_without_a_date_is_skipped_by_number_and_line():
    got, reader = read()
    assert reader.stats.skipped == {"corrupt": 1}
    assert reader.stats.errors == [f"{SENT}: mail #6 (line 97): no Date header"]
    assert "Draft without a date" not in {m.title for m in got}


def test_no_address_is_written_anywhere():
    got, _ = read()
    records = json.dumps([m.record() for m in got] + [m.title for m in got])
    assert "@" not in records.replace("@example", "")  # nothing but the planted body text, below
    for m in got:
        assert "@" not in m.author_id and "@" not in m.author and "@" not in m.msg_id and "@" not in m.chat_id
    assert got[0].author_id == mail_id("ada.lindqvist@example.org") == mail_id("ADA.LINDQVIST@EXAMPLE.ORG")
    assert re.fullmatch(r"mail_[0-9a-f]{12}", got[0].author_id)


def test_owner_by_address_name_or_hashed_id():
    by_address, _ = read(owners=["ADA.LINDQVIST@example.org"])
    assert [m.is_owner for m in by_address] == [True, True, True, False, False, True, True, True, True]
    by_name, _ = read(owners=["ada lindqvist"])  # also her other address, under her name
    assert sum(m.is_owner for m in by_name) == 8
    by_id, _ = read(owners=[mail_id("ada@work.example.com")])
    assert [m.title for m in by_id if m.is_owner] == ["Jet stream – north"]


def test_an_address_seen_under_the_owner_name_is_hers_without_a_name(tmp_path):
    path = tmp_path / "sent.mbox"
    path.write_bytes(
        mail("From: Ada Lindqvist <ada@work.example.com>\nDate: Tue, 12 Mar 2024 21:14:00 +0000\nSubject: one", "first")
        + mail("From: ada@work.example.com\nDate: Tue, 12 Mar 2024 22:14:00 +0000\nSubject: two", "second")
    )
    got, _ = read(path, owners=["Ada Lindqvist"])
    assert [(m.text, m.is_owner) for m in got] == [("first", True), ("second", True)]
    assert got[1].author == got[1].author_id  # no name: the hashed id, never the address


def test_threads_are_hashed_from_references():
    got, _ = read()
    assert got[0].chat_id != got[4].chat_id  # same subject, different threads
    assert all(re.fullmatch(r"thread_[0-9a-f]{12}", m.chat_id) for m in got)


@pytest.mark.parametrize(
    "body, want, forwarded",
    [
        ("Good.\n\nOn Tue, Mar 12, 2024 at 9:14 PM Noor <noor@example.net> wrote:\n> Lunch?\n", "Good.", False),
        ("Ja.\n\nAm Di., 12. März 2024 um 21:14 Uhr schrieb Noor\n<noor@example.net>:\n> Essen?\n", "Ja.", False),
        ("Fine.\n\n-----Original Message-----\nFrom: Noor\nSent: Tuesday\n\nLunch?\n", "Fine.", False),
        ("Fine.\n\nFrom: Noor <noor@example.net>\nSent: Tuesday, March 12\nTo: Ada\nSubject: x\n\nLunch?", "Fine.", False),
        ("---------- Forwarded message ---------\nFrom: Met <m@example.com>\n\nWinds.\n", "", True),
        ("Begin forwarded message:\n\nFrom: Met\n", "", True),
        ("Short answer.\n-- \nAda\n+44 7700 900123\n", "Short answer.", False),
        ("Short answer.\n\nSent from my iPhone\n", "Short answer.", False),
        ("Short answer.\n\nGet Outlook for Android\n", "Short answer.", False),
        ("I was sent from my office to the site.\nIt was fun.", "I was sent from my office to the site.\nIt was fun.", False),
        ("> q1\na1\n> q2\na2\n", "a1\na2", False),
    ],
)
def test_strip_quotes(body, want, forwarded):
    assert strip_quotes(body) == (want, forwarded)


def test_html_to_text():
    html = (
        "<html><head><title>t</title><style>p{}</style></head><body><p>One&nbsp;two &amp; three</p>"
        "<div>Four<br>five</div><blockquote>quoted</blockquote><script>x()</script>"
        '<div class="gmail_signature">sig</div><ul><li>a</li><li>b</li></ul></body></html>'
    )
    assert html_to_text(html) == "One two & three\n\nFour\nfive\na\nb"


def test_subject_prefixes():
    assert clean_subject("Re: RE: Fwd: AW: SV: Re[2]: WG:  Launch   plan") == "Launch plan"
    assert clean_subject("Regarding the launch") == "Regarding the launch"


def test_unknown_charset_is_read_as_utf8_and_counted(tmp_path):
    path = tmp_path / "sent.mbox"
    path.write_bytes(mail(
        "From: Ada Lindqvist <ada.lindqvist@example.org>\nDate: Tue, 12 Mar 2024 21:14:00 +0000\n"
        "Subject: odd\nContent-Type: text/plain; charset=x-no-such-charset",
        "Grüße",
    ))  # fmt: skip
    (m,), reader = read(path)
    assert m.text == "Grüße" and reader.stats.repaired == {"bad_charset": 1}


def test_unreadable_date_is_skipped(tmp_path):
    path = tmp_path / "sent.mbox"
    path.write_bytes(mail("From: Ada Lindqvist <ada.lindqvist@example.org>\nDate: sometime soon\nSubject: x", "hi"))
    got, reader = read(path)
    assert got == [] and reader.stats.errors == [f"{path}: mail #1 (line 1): the Date header is not a date"]


def test_missing_file_is_an_ingest_error(tmp_path):
    with pytest.raises(IngestError, match="nope.mbox"):
        read(tmp_path / "nope.mbox")


# ---------------------------------------------------------------------------------------------
# prepare, end to end

PLANTED = [
    "ada.lindqvist@example.org",
    "noor.haddad@example.net",
    "kit@example.net",
    "jonas.berg@example.com",
    "ada@work.example.com",
    "desk@example.com",
    "+44 7700 900456",  # in a subject
    "+44 7700 900123",  # in a body and in a signature
    "07700 900789",  # in a quoted original
    "+44 7700 900999",  # in someone else's mail
    "4111 1111 1111 1111",  # in an HTML quote
]


def test_prepare_on_an_mbox_leaks_nothing_planted(tmp_path):
    out = tmp_path / "out"
    rc = main(["--log-level", "WARNING", "prepare", str(SENT), "--owner", "Ada Lindqvist",
               "--owner", "ada.lindqvist@example.org", "--out", str(out)])  # fmt: skip
    assert rc == 0
    for name in ("messages.jsonl", "train.jsonl", "val.jsonl", "report.json"):
        text = (out / name).read_text(encoding="utf-8")
        for value in PLANTED:
            assert value.lower() not in text.lower() and re.sub(r"[\s\-]", "", value) not in text, (name, value)
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["messages"]["dropped"] == {"corrupt": 1, "forwarded": 1, "media_only": 1, "not_owner": 1}
    assert report["messages"]["kept_posts"] == 6
    examples = [json.loads(line) for k in ("train.jsonl", "val.jsonl") for line in (out / k).read_text().splitlines()]
    prompts = sorted(e["messages"][0]["content"] for e in examples)
    assert "Write an e-mail: Kaffee im Café?" in prompts and len(prompts) == 6
    assert all(e["messages"][-1]["name"] == "Ada Lindqvist" for e in examples)


def test_an_address_given_first_as_owner_is_never_the_persona_name(tmp_path):
    out = tmp_path / "out"
    assert main(["--log-level", "WARNING", "prepare", str(SENT), "--owner", "ada.lindqvist@example.org",
                 "--owner", "Ada Lindqvist", "--out", str(out)]) == 0
    assert json.loads((out / "report.json").read_text())["settings"]["persona"] == "Ada Lindqvist"
