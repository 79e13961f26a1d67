"""What in a mailbox is not the owner's writing: notifications, calendar invitations, quoted
replies in the forms real clients write them (Outlook, Gmail, Apple Mail, Thunderbird, in
several languages), signatures and mobile footers. Hand-made mails, one mbox per test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from host_training.__main__ import main
from host_training.ingest.mbox import MboxReader, strip_quotes

OWNERS = ["Ada Lindqvist", "ada@example.org"]
ADA = "From: Ada Lindqvist <ada@example.org>"


def mail(headers: str, body: str, n: int = 1) -> str:
    return (f"From - Tue Mar 12 21:14:00 2024\n{headers.strip()}\nDate: Tue, 12 Mar 2024 21:{10 + n}:00 +0000\n"
            f"Message-ID: <m{n}@example.org>\n\n{body}\n")


def read(tmp_path: Path, *mails: str):
    path = tmp_path / "Sent.mbox"
    path.write_text("".join(mails), encoding="utf-8")
    reader = MboxReader(path)
    return list(reader.read(OWNERS)), reader


PLAIN = f"{ADA}\nSubject: Launch\nContent-Type: text/plain; charset=utf-8"
NOTIFICATIONS = {
    "vacation auto-reply": f"{ADA}\nSubject: Away until Monday\nAuto-Submitted: auto-replied",
    "old vacation program": f"{ADA}\nSubject: Away\nX-Autoreply: yes",
    "bulk": f"{ADA}\nSubject: Our spring newsletter\nPrecedence: bulk",
    "newsletter": f"{ADA}\nSubject: Issue 12\nList-Unsubscribe: <https://news.example.com/u?id=1>",
    "announce list": f"{ADA}\nSubject: Net tonight\nList-Id: <announce.club.example.org>\nList-Post: NO",
    "no-reply sender": 'From: "Ada Lindqvist (via Docs)" <comments-noreply@docs.example.com>\nSubject: Ada commented',
    "site notifications": "From: Ada Lindqvist <notifications@git.example.com>\nSubject: Re: [club/tracker] fix",
    "bounce": f"{ADA}\nSubject: Undelivered\nContent-Type: multipart/report; report-type=delivery-status; boundary=b",
}


@pytest.mark.parametrize("headers", list(NOTIFICATIONS.values()), ids=list(NOTIFICATIONS))
def test_automated_mail_is_dropped_as_notification(tmp_path, headers):
    got, reader = read(tmp_path, mail(headers, "Thank you for your message. I am away."), mail(PLAIN, "See you at the field.", 2))
    assert [m.text for m in got] == ["See you at the field."]
    assert reader.stats.skipped == {"notification": 1}
    assert reader.stats.errors == []  # nothing is wrong with the file


def test_a_discussion_list_and_a_human_auto_word_are_kept(tmp_path):
    """A list one can post to is people talking; "Auto-Submitted: no" says a person sent it."""
    listed = f"{ADA}\nSubject: Re: antenna\nList-Id: <hams.example.org>\nList-Post: <mailto:hams@example.org>\nPrecedence: list"
    human = f"{ADA}\nSubject: Re: the autoreply rule\nAuto-Submitted: no"
    got, reader = read(tmp_path, mail(listed, "A dipole will do.", 1), mail(human, "It was my mistake.", 2))
    assert [m.text for m in got] == ["A dipole will do.", "It was my mistake."]
    assert not reader.stats.skipped


def invitation(method_param: str, ics_method: str, subject: str, n: int = 1) -> str:
    """A calendar program's invitation: text, the iCalendar part, and the same as invite.ics."""
    ics = (f"BEGIN:VCALENDAR\nPRODID:-//Example//Calendar//EN\nVERSION:2.0\n{ics_method}"
           "BEGIN:VEVENT\nSUMMARY:Launch\nEND:VEVENT\nEND:VCALENDAR")
    param = f"; method={method_param}" if method_param else ""
    return mail(
        f'{ADA}\nSubject: {subject}\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="outer"',
        f"--outer\nContent-Type: text/plain; charset=utf-8\n\nYou have been invited to the following event.\n\nLaunch\n"
        f"--outer\nContent-Type: text/calendar; charset=utf-8{param}\n\n{ics}\n"
        f'--outer\nContent-Type: application/ics; name="invite.ics"\nContent-Disposition: attachment; filename="invite.ics"\n'
        f"\n{ics}\n--outer--",
        n,
    )


def test_calendar_invitations_and_answers_are_dropped_an_attached_ics_is_not(tmp_path):
    got, reader = read(
        tmp_path,
        invitation("REQUEST", "METHOD:REQUEST\n", "Invitation: Launch @ Sun 17 Mar 2024", 1),
        invitation("", "METHOD:REPLY\n", "Accepted: Launch @ Sun 17 Mar 2024", 2),  # the method only inside the data
        invitation("", "", "Dates for the launch", 3),  # a file attached by hand: her text stays
    )
    assert [m.title for m in got] == ["Dates for the launch"]
    assert "invited" in got[0].text
    assert reader.stats.skipped == {"calendar": 2}


@pytest.mark.parametrize(
    "body",
    [
        # Outlook, English, German, French (a space before the colon), Spanish
        "Fine.\n\n-----Original Message-----\nFrom: Noor Haddad\nSent: Tuesday, March 12, 2024 9:14 PM\nTo: Ada\n\nLunch?",
        "Fine.\n\n________________________________\nFrom: Noor Haddad <noor@example.net>\nSent: Tuesday, March 12, 2024 21:14"
        "\nTo: Ada Lindqvist\nSubject: Lunch\n\nLunch?",
        "Fine.\n\n-----Ursprüngliche Nachricht-----\nVon: Noor Haddad\nGesendet: Dienstag, 12. März 2024 21:14\n\nEssen?",
        "Fine.\n\nVon: Noor Haddad <noor@example.net>\nGesendet: Dienstag, 12. März 2024 21:14\nAn: Ada\nBetreff: Essen\n\nJa?",
        "Fine.\n\nDe : Noor Haddad <noor@example.net>\nEnvoyé : mardi 12 mars 2024 21:14\nÀ : Ada\nObjet : Déjeuner\n\nOui ?",
        "Fine.\n\n-----Mensaje original-----\nDe: Noor Haddad\nEnviado el: martes, 12 de marzo de 2024 21:14\n\n¿Comer?",
        "Fine.\n\nDe: Noor Haddad <noor@example.net>\nEnviado: martes, 12 de marzo de 2024 21:14\nPara: Ada\nAsunto: Comer\n\nSí",
        # the attribution line above a quote, as clients write it
        "Fine.\n\nOn Tue, Mar 12, 2024 at 9:14 PM Noor Haddad <noor@example.net> wrote:\n\n> Lunch?\n",
        "Fine.\n\nOn 12 Mar 2024, at 21:14, Noor Haddad <noor@example.net> wrote:\n\n> Lunch?\n",
        "Fine.\n\nOn 12/03/2024 21:14, Noor Haddad wrote:\n> Lunch?\n",
        "Fine.\n\nAm Di., 12. März 2024 um 21:14 Uhr schrieb Noor Haddad <noor@example.net>:\n\n> Essen?\n",
        "Fine.\n\nAm 12.03.2024 um 21:14 schrieb Noor Haddad <noor@example.net>:\n\n> Essen?\n",
        "Fine.\n\nLe mar. 12 mars 2024 à 21:14, Noor Haddad <noor@example.net> a écrit :\n\n> Déjeuner ?\n",
        "Fine.\n\nLe 12 mars 2024 à 21:14, Noor Haddad <noor@example.net> a\nécrit :\n\n> Déjeuner ?\n",
        "Fine.\n\nEl mar, 12 mar 2024 a las 21:14, Noor Haddad (<noor@example.net>) escribió:\n\n> ¿Comer?\n",
        "Fine.\n\nEm ter., 12 de mar. de 2024 às 21:14, Noor Haddad <noor@example.net> escreveu:\n\n> Almoço?\n",
        "Fine.\n\nIl giorno mar 12 mar 2024 alle ore 21:14 Noor Haddad <noor@example.net> ha scritto:\n\n> Pranzo?\n",
        "Fine.\n\nOp di 12 mrt 2024 om 21:14 schreef Noor Haddad <noor@example.net>:\n\n> Lunch?\n",
        "Fine.\n\ntir. 12. mar. 2024 kl. 21:14 skrev Noor Haddad <noor@example.net>:\n\n> Lunsj?\n",
        "Fine.\n\nwt., 12 mar 2024 o 21:14 Noor Haddad <noor@example.net> napisał(a):\n\n> Obiad?\n",
        "Fine.\n\nвт, 12 мар. 2024 г. в 21:14, Noor Haddad <noor@example.net>:\n\n> Обед?\n",
        # signatures and footers
        "Fine.\n-- \nAda Lindqvist\nHigh-altitude club\n+44 7700 900123\n",
        "Fine.\n\nSent from my iPhone\n",
        "Fine.\n\nVon meinem iPhone gesendet\n",
        "Fine.\n\nEnvoyé de mon iPad\n",
        "Fine.\n\nEnviado desde mi iPhone\n",
        "Fine.\n\nInviato da iPhone\n",
        "Fine.\n\nVerzonden vanaf mijn iPhone\n",
        "Fine.\n\nGet Outlook for Android\n",
    ],
)
def test_only_her_own_words_are_left(body):
    assert strip_quotes(body) == ("Fine.", False)


@pytest.mark.parametrize(
    "body",
    [
        "I wrote: the launch is on.\nNoor agreed.",  # "wrote:" in her own sentence, no quote below
        "On Sunday we launch. Noor wrote the checklist:\n- gloves\n- thermos",
        "In 2019 the forecast said:\nclear skies.",
        "Here is what we agreed on:\n> a quote\nand my answer",
    ],
)
def test_her_own_lines_that_look_like_quote_headers_stay(body):
    text, _ = strip_quotes(body)
    assert text.splitlines()[0] == body.splitlines()[0]


def test_prepare_counts_every_filter_in_the_report(tmp_path):
    path = tmp_path / "Sent.mbox"
    path.write_text(
        mail(PLAIN, "See you at the field.\n\nAm 12.03.2024 um 21:14 schrieb Noor <noor@example.net>:\n\n> Wann?", 1)
        + mail(NOTIFICATIONS["newsletter"], "Issue 12 of our news.", 2)
        + mail(NOTIFICATIONS["vacation auto-reply"], "I am away.", 3)
        + invitation("REQUEST", "METHOD:REQUEST\n", "Invitation: Launch", 4),
        encoding="utf-8",
    )
    out = tmp_path / "out"
    assert main(["--log-level", "WARNING", "prepare", str(path), *[a for o in OWNERS for a in ("--owner", o)],
                 "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["messages"]["dropped"] == {"notification": 2, "calendar": 1}
    assert report["messages"]["seen"] == report["messages"]["kept"] + 3 == 4
    assert report["inputs"][0]["skipped"] == {"notification": 2, "calendar": 1} and report["inputs"][0]["errors"] == []
    assert "Wann" not in (out / "train.jsonl").read_text(encoding="utf-8") + (out / "val.jsonl").read_text(encoding="utf-8")
