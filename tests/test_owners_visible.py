"""Who the owner is in each export, made visible: per-input counts and warnings, --list-authors.

The exports are small and hand-made: a Telegram chat where Mira writes as "Mira Kovač"
(user7770001), a DiscordChatExporter channel where her nickname is "Mira", and a WhatsApp chat
where she is "Mira". `--owner Mira` matches on Discord and WhatsApp, not on Telegram: the case
where 53 Telegram messages once went missing without a word.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from host_training.__main__ import main
from host_training.ingest import Person, likely_owner, people
from host_training.prepare import owners as prepare_owners

REPO = Path(__file__).resolve().parents[1]
T0 = int(datetime(2024, 3, 12, 21, 14, tzinfo=timezone.utc).timestamp())
MIRA_TG, NOOR_TG = ("Mira Kovač", "user7770001"), ("Noor Haddad", "user4440001")
MIRA_DC, NOOR_DC = "800000000000000009", "800000000000000002"


def tg(mid: int, who: tuple[str, str], text: str, **extra) -> dict:
    return {"id": mid, "type": "message", "date_unixtime": str(T0 + 60 * mid), "from": who[0], "from_id": who[1],
            "text": text, **extra}  # fmt: skip


def dc(mid: int, author_id: str, name: str, nickname: str, content: str, **extra) -> dict:
    return {
        "id": f"9000000000000000{mid:02d}", "type": "Default", "timestamp": f"2024-03-13T10:{mid:02d}:00.000+00:00",
        "content": content, "author": {"id": author_id, "name": name, "discriminator": "0000", "nickname": nickname,
                                       "isBot": False},
        "attachments": [], "embeds": [], "stickers": [], "mentions": [], **extra,
    }  # fmt: skip


def make_exports(root: Path) -> dict[str, Path]:
    root.mkdir(parents=True)
    # Telegram: Noor 6, Mira 5; a service line and Mira's forward are nobody's words.
    messages = [tg(i, NOOR_TG, f"noor {i}") for i in range(1, 7)] + [tg(i, MIRA_TG, f"mira {i}") for i in range(7, 12)]
    messages += [
        {"id": 12, "type": "service", "date_unixtime": str(T0 + 720), "actor": "Noor Haddad", "actor_id": "user4440001",
         "action": "pin_message", "text": ""},
        tg(13, MIRA_TG, "read this", forwarded_from="Upper Air Bulletin"),
    ]  # fmt: skip
    telegram = root / "result.json"
    telegram.write_text(json.dumps({"name": "Noor Haddad", "type": "personal_chat", "id": 4440001, "messages": messages},
                                   ensure_ascii=False), encoding="utf-8")  # fmt: skip
    # Discord: Mira (nickname) 3, Noor 2; a bot's message does not count.
    channel = [dc(1, NOOR_DC, "noor.h", "Noor Haddad", "launch?"), dc(2, MIRA_DC, "mira.k", "Mira", "sunday"),
               dc(3, MIRA_DC, "mira.k", "Mira", "if the wind allows"), dc(4, NOOR_DC, "noor.h", "Noor Haddad", "ok"),
               dc(5, MIRA_DC, "mira.k", "Mira", "bring the yagi"),
               dc(6, "800000000000000077", "Forecast", None, "wind 12 kt")]  # fmt: skip
    channel[5]["author"]["isBot"] = True
    discord = root / "Balloon Club - Text Channels - launches [700000000000000101].json"
    discord.write_text(json.dumps({
        "guild": {"id": "700000000000000001", "name": "Balloon Club"},
        "channel": {"id": "700000000000000101", "type": "GuildTextChat", "category": "Text Channels", "name": "launches"},
        "messages": channel,
    }), encoding="utf-8")  # fmt: skip
    # WhatsApp: Jonas 3, Mira 2; the encryption notice and a photo without text do not count.
    whatsapp = root / "WhatsApp Chat with Jonas Berg.txt"
    whatsapp.write_text(
        "14/03/2024, 09:00 - Messages and calls are end-to-end encrypted. Tap to learn more.\n"
        "14/03/2024, 09:01 - Jonas Berg: did it fly?\n"
        "14/03/2024, 09:02 - Mira: it did\n"
        "14/03/2024, 09:03 - Jonas Berg: how high\n"
        "14/03/2024, 09:04 - Mira: 31 km\n"
        "14/03/2024, 09:05 - Jonas Berg: wow\n"
        "14/03/2024, 09:06 - Jonas Berg: <Media omitted>\n",
        encoding="utf-8",
    )
    return {"telegram": telegram, "discord": discord, "whatsapp": whatsapp}


@pytest.fixture
def exports(tmp_path: Path) -> dict[str, Path]:
    return make_exports(tmp_path / "in")


def prepare(*args: str) -> int:
    return main(["--log-level", "WARNING", "prepare", *args])


def files(exports: dict[str, Path]) -> list[str]:
    return [str(exports[k]) for k in ("telegram", "discord", "whatsapp")]


def log_events(err: str) -> list[dict]:
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


def test_counts_per_input_and_the_warning_for_the_export_mira_is_missing_from(exports, tmp_path, capsys):
    out = tmp_path / "out"
    assert prepare(*files(exports), "--owner", "Mira", "--out", str(out)) == 0
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    telegram, discord, whatsapp = (entry["owner"] for entry in report["inputs"])
    assert telegram == {
        "owner_messages": 0, "other_messages": 11, "authors": 2,
        "warning": (
            "no message in this export matched --owner: add the id (or, without one, the name) of the author "
            "that is you; `prepare --list-authors` lists every author with their real name"
        ),
        "most_frequent": [
            {"author_id": "user4440001", "names": ["Noor Haddad"], "messages": 6},
            {"author_id": "user7770001", "names": ["Mira Kovač"], "messages": 5},
        ],
        "suggested_owner": "user7770001",  # not the most frequent: the one whose name shares a word with --owner
    }  # fmt: skip
    assert discord == {"owner_messages": 3, "other_messages": 2, "authors": 2}
    assert whatsapp == {"owner_messages": 2, "other_messages": 3, "authors": 2}
    assert "--owner Mira" not in json.dumps(report)  # the --owner values are never written there

    captured = capsys.readouterr()
    tg_path, dc_path, wa_path = files(exports)
    assert (
        f"  {tg_path} (telegram): owner 0, others 11, 2 authors\n"
        f"    warning: no message in {tg_path} matched --owner Mira; most frequent authors there: "
        "Noor Haddad (user4440001) 6, Mira Kovač (user7770001) 5. If Mira Kovač is you, add --owner user7770001\n"
        f"  {dc_path} (discord): owner 3, others 2, 2 authors\n"
        f"  {wa_path} (whatsapp): owner 2, others 3, 2 authors\n"
    ) in captured.out
    [warned] = [e for e in log_events(captured.err) if e["event"] == "no message in this export matched --owner"]
    assert warned["file"] == tg_path and warned["add"] == "--owner user7770001"
    assert warned["most_frequent"] == ["Noor Haddad (user4440001) 6", "Mira Kovač (user7770001) 5"]

    # The suggestion taken: every export has its owner, and no warning is left.
    assert prepare(*files(exports), "--owner", "Mira", "--owner", "user7770001", "--out", str(out)) == 0
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert [entry["owner"] for entry in report["inputs"]] == [
        {"owner_messages": 5, "other_messages": 6, "authors": 2},
        {"owner_messages": 3, "other_messages": 2, "authors": 2},
        {"owner_messages": 2, "other_messages": 3, "authors": 2},
    ]
    assert "warning" not in capsys.readouterr().out


def test_a_name_only_export_is_suggested_by_name_and_pseudonyms_hide_it_in_the_report(exports, tmp_path, capsys):
    out = tmp_path / "out"
    assert prepare(*files(exports), "--owner", "Mira Kovač", "--pseudonyms", "--out", str(out)) == 0
    text = (out / "report.json").read_text(encoding="utf-8")
    telegram, discord, whatsapp = (entry["owner"] for entry in json.loads(text)["inputs"])
    assert telegram == {"owner_messages": 5, "other_messages": 6, "authors": 2}
    # Discord: Mira's nickname alone is no match; her stable id is still a usable suggestion.
    assert discord["owner_messages"] == 0 and discord["suggested_owner"] == f"user{MIRA_DC}"
    assert [p["names"] for p in discord["most_frequent"]] == [["Person 2"], ["Person 1"]]
    # WhatsApp has names only: under --pseudonyms the report cannot suggest one.
    assert whatsapp["most_frequent"] == [
        {"author_id": "Person 3", "names": ["Person 3"], "messages": 3},
        {"author_id": "Person 2", "names": ["Person 2"], "messages": 2},
    ]
    assert whatsapp["suggested_owner"] is None
    written = json.dumps([telegram, discord, whatsapp], ensure_ascii=False)
    for real in ("Jonas Berg", "Noor Haddad", '"Mira"'):
        assert real not in written
    # The terminal is the owner's own: there the real name, ready to paste.
    assert "If Mira is you, add --owner Mira\n" in capsys.readouterr().out


def test_list_authors(exports, tmp_path, capsys):
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert prepare("--list-authors", *files(exports)) == 0
    tg_path, dc_path, wa_path = files(exports)
    assert capsys.readouterr().out == (
        f"{tg_path} (telegram): 11 messages by 2 authors\n"
        "  6  user4440001  Noor Haddad\n"
        "  5  user7770001  Mira Kovač\n"
        "\n"
        f"{dc_path} (discord): 5 messages by 2 authors\n"
        "  3  user800000000000000009  Mira\n"
        "  2  user800000000000000002  Noor Haddad\n"
        "\n"
        f"{wa_path} (whatsapp): 5 messages by 2 authors\n"
        "  3  Jonas Berg\n"
        "  2  Mira\n"
    )
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written

    # With --owner: who it matches, and where it matches nobody.
    assert prepare("--list-authors", *files(exports), "--owner", "Mira") == 0
    lines = capsys.readouterr().out.splitlines()
    assert "  3  user800000000000000009  Mira  <- owner" in lines
    assert "  2  Mira  <- owner" in lines
    assert lines[3] == "  (nobody here matches --owner Mira)"

    assert prepare("--list-authors", "--json", *files(exports)) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["problems"] == []
    assert [(i["format"], i["messages"]) for i in listed["inputs"]] == [("telegram", 11), ("discord", 5), ("whatsapp", 5)]
    assert listed["inputs"][0]["authors"][1] == {"id": "user7770001", "names": ["Mira Kovač"], "messages": 5, "owner": False}


def test_list_authors_shows_mail_addresses_not_their_hashes(capsys):
    assert prepare("--list-authors", str(REPO / "tests" / "fixtures" / "mbox" / "Sent.mbox")) == 0
    out = capsys.readouterr().out
    assert "ada.lindqvist@example.org  Ada Lindqvist" in out and "mail_" not in out


def test_list_authors_folds_files_of_only_the_owners_writing(tmp_path, capsys):
    posts = tmp_path / "posts"
    posts.mkdir()
    for day in (1, 2, 3):
        (posts / f"2024-05-0{day}-note.md").write_text(f"# Note {day}\n\nThe wind turned.\n", encoding="utf-8")
    assert prepare("--list-authors", str(posts), "--owner", "Mira") == 0
    assert capsys.readouterr().out == f"3 files under {posts} (markdown): 3 messages by 1 author\n  3  Mira  <- owner\n"


def test_list_authors_with_nothing_readable_exits_2(tmp_path, capsys):
    (tmp_path / "notes.bin").write_bytes(b"\x00\x01\x02")
    assert prepare("--list-authors", str(tmp_path / "notes.bin"), str(tmp_path / "missing")) == 2
    err = capsys.readouterr().err
    assert "error: nothing could be read" in err and "no such file or folder" in err


def test_a_real_prepare_without_owner_or_out_says_what_to_give(exports, tmp_path, capsys):
    out = tmp_path / "out"
    assert prepare(str(exports["telegram"]), "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert "error: prepare needs --owner: who you are in the exports" in err
    assert f"python -m host_training prepare --list-authors {exports['telegram']}" in err
    assert not out.exists()

    assert prepare(str(exports["telegram"]), "--owner", "Mira") == 2
    assert "error: prepare needs --out DIR" in capsys.readouterr().err

    assert prepare(str(exports["telegram"]), "--owner", " ", "--out", str(out)) == 2
    assert "prepare needs --owner" in capsys.readouterr().err

    assert prepare(str(exports["telegram"]), "--json", "--owner", "Mira", "--out", str(out)) == 2
    assert "--json goes with --list-authors" in capsys.readouterr().err
    assert not out.exists()


def test_help_says_list_authors_prints_real_names(capsys):
    with pytest.raises(SystemExit):
        main(["prepare", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--list-authors" in text and "real display names" in text and "writes nothing" in text


def test_a_renamed_id_is_one_person_and_the_suggestion_falls_back_to_the_most_frequent():
    tally = {("telegram", "user1", "Ada L"): 2, ("telegram", "user1", "Ada Lindqvist"): 3, ("telegram", "user2", "Noor"): 4}
    found = people(tally)
    assert found == [Person("user1", ("Ada Lindqvist", "Ada L"), 5), Person("user2", ("Noor",), 4)]
    assert likely_owner(found, ["user9", "Kit"]) == found[0]  # no name shares a word: the most frequent
    assert likely_owner(found, ["noor"]) == found[1]  # case does not matter


def test_the_summary_lists_the_first_exports_and_every_warning(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(prepare_owners, "SUMMARY_EXPORTS", 1)  # read where the summary is printed
    chats = tmp_path / "chats"
    chats.mkdir()
    for n, (me, friend) in enumerate((("Mira", "Jonas"), ("Mira", "Kit"), ("Mira K.", "Sam"))):
        (chats / f"chat{n}.txt").write_text(
            f"14/03/2024, 09:0{n} - {friend}: hello\n14/03/2024, 09:1{n} - {me}: hi\n", encoding="utf-8")
    assert prepare(str(chats), "--owner", "Mira", "--out", str(tmp_path / "out")) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1:5] == [
        f"  {chats / 'chat0.txt'} (whatsapp): owner 1, others 1, 2 authors",
        f"  {chats / 'chat2.txt'} (whatsapp): owner 0, others 2, 2 authors",
        f"    warning: no message in {chats / 'chat2.txt'} matched --owner Mira; most frequent authors there: "
        "Mira K. 1, Sam 1. If Mira K. is you, add --owner 'Mira K.'",
        "  ... and 1 more, each counted in report.json (inputs[].owner)",
    ]
