"""`python -m host_training prepare` end to end, through the real command-line entry point."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest

from host_training.__main__ import main

REPO = Path(__file__).resolve().parents[1]
T0 = int(datetime(2024, 3, 12, 21, 14, tzinfo=timezone.utc).timestamp())
DAY = 86400
MESSAGE_KEYS = ["source", "chat_id", "chat_name", "msg_id", "author_id", "author", "is_owner", "ts", "text"]
PLANTED = [
    "+44 7700 900123",
    "ada.lindqvist@example.org",
    "4111 1111 1111 1111",
    "GB82WEST12345698765432",
    "07700 900456",
    "kit@example.net",
    "https://example.com/live?token=p4SECRETq9x",
    "p4SECRETq9x",
]
LONG_OWNER_LINE = "I will bring the thermos and the spare gloves"


def tg(mid, at, text, who="ada-old", **extra):
    people = {
        "ada-old": ("Ada L", "user5550101"),
        "ada": ("Ada Lindqvist", "user5550101"),
        "noor": ("Noor Haddad", "user4440001"),
        "kit": ("Kit Marsh", "user4440002"),
    }
    name, uid = people[who]
    return {"id": mid, "type": "message", "date": "2024-03-12T22:14:00", "date_unixtime": str(at),
            "from": name, "from_id": uid, "text": text, **extra}  # fmt: skip


def make_exports(root: Path) -> dict[str, Path]:
    """A Telegram export, a WhatsApp chat and two posts, with known drops and planted values."""
    noor = [
        # session 1
        tg(1, T0, "are you alive?", "noor"),
        tg(2, T0 + 60, ["alive. call me on ", {"type": "phone", "text": "+44 7700 900123"}]),
        tg(3, T0 + 90, "or mail ada.lindqvist@example.org"),
        tg(4, T0 + 120, LONG_OWNER_LINE),
        tg(5, T0 + 150, "ok", "noor"),
        {"id": 6, "type": "service", "date_unixtime": str(T0 + 160), "actor": "Noor Haddad",
         "actor_id": "user4440001", "action": "pin_message", "text": ""},  # fmt: skip
        tg(7, T0 + 170, "read this bulletin", forwarded_from="Upper Air Bulletin"),
        tg(8, T0 + 180, "", photo="photos/p.jpg"),
        tg(9, T0 + 190, "", "noor", file="s.webp", media_type="sticker", sticker_emoji="🎈"),
        tg(10, T0 + 200, LONG_OWNER_LINE),  # a duplicate of the owner's
        {"id": 11, "type": "message", "date_unixtime": str(T0 + 210), "from": "Ghost", "text": "no from_id"},
        # session 2: a day and a minute later, after the rename
        tg(12, T0 + DAY + 60, "I typed <|im_end|> by accident", "noor"),
        tg(13, T0 + DAY + 120, "card 4111 1111 1111 1111 for the helium", "ada"),
        tg(14, T0 + DAY + 180, "live map https://example.com/live?token=p4SECRETq9x", "ada"),
    ]
    club = [tg(1, T0, "anyone launching?", "kit"), tg(2, T0 + 30, "not me", "noor")]
    data = {
        "personal_information": {"user_id": 5550101},
        "chats": {"list": [
            {"name": "Noor Haddad", "type": "personal_chat", "id": 4440001, "messages": noor},
            {"name": "Club", "type": "private_group", "id": 7770001, "messages": club},
        ]},
    }  # fmt: skip
    paths = {}
    (root / "telegram").mkdir(parents=True)
    paths["telegram"] = root / "telegram" / "result.json"
    paths["telegram"].write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    (root / "telegram" / "photos").mkdir()
    (root / "telegram" / "photos" / "p.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00")

    paths["whatsapp"] = root / "WhatsApp Chat with Jonas Berg.txt"
    paths["whatsapp"].write_text(
        "12/03/2024, 21:14 - Messages and calls are end-to-end encrypted. Tap to learn more.\n"
        "12/03/2024, 21:14 - Jonas Berg: Lindqvist. Is this still your number\n"
        "12/03/2024, 21:16 - Ada Lindqvist: it is. the other one is 07700 900456\n"
        "and the account is GB82WEST12345698765432\n"
        "12/03/2024, 21:17 - Ada Lindqvist: <Media omitted>\n"
        "12/03/2024, 21:18 - Jonas Berg: This message was deleted\n",
        encoding="utf-8",
    )
    (root / "posts").mkdir()
    (root / "posts" / "2024-08-20-gerald.md").write_text(
        "---\ntitle: Gerald, or: a starter\ndate: 2024-08-20\ntags: [bread]\n---\n\n"
        "Gerald is my **sourdough starter**. Ask Kit at kit@example.net.\n\n![jar](jar.jpg)\n",
        encoding="utf-8",
    )
    (root / "posts" / "cold.md").write_text("# Cold batteries\n\nLithium, always. PIPIT-4 proved it.\n", encoding="utf-8")
    paths["posts"] = root / "posts"
    return paths


def run_prepare(*args: str) -> int:
    return main(["--log-level", "WARNING", "prepare", *args])


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def all_output(out: Path) -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted(out.iterdir()))


OWNERS = ["--owner", "user5550101", "--owner", "Ada Lindqvist"]


@pytest.fixture
def exports(tmp_path: Path) -> dict[str, Path]:
    return make_exports(tmp_path / "in")


def test_end_to_end(exports, tmp_path, capsys):
    out = tmp_path / "out"
    rc = run_prepare(str(exports["telegram"].parent), str(exports["whatsapp"]), str(exports["posts"]), *OWNERS, "--out", str(out))
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["messages.jsonl", "report.json", "train.jsonl", "val.jsonl"]

    # messages.jsonl: the contract's fields, in order, UTC timestamps
    messages = read_jsonl(out / "messages.jsonl")
    for rec in messages:  # a post also has its kind and title, for a later run that adds to the folder
        assert list(rec) == MESSAGE_KEYS + (["kind", "title"] if rec["source"] == "markdown" else [])
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", rec["ts"])
        assert isinstance(rec["is_owner"], bool) and all(isinstance(rec[k], str) for k in MESSAGE_KEYS if k != "is_owner")
    by_id = {(r["source"], r["chat_id"], r["msg_id"]): r for r in messages}
    assert by_id[("telegram", "4440001", "2")]["is_owner"] and by_id[("telegram", "4440001", "13")]["is_owner"]
    assert by_id[("telegram", "4440001", "2")]["ts"] == "2024-03-12T21:15:00Z"  # date_unixtime, not local date
    assert not by_id[("telegram", "4440001", "1")]["is_owner"]
    assert by_id[("telegram", "4440001", "2")]["text"] == "alive. call me on <PHONE_1>"
    assert ("telegram", "4440001", "10") not in by_id  # the duplicate went

    # train/val: {"messages": [{"role", "name", "content"}]}, the owner as assistant
    examples = read_jsonl(out / "train.jsonl") + read_jsonl(out / "val.jsonl")
    for ex in examples:
        assert list(ex)[0] == "messages" and set(ex) <= {"messages", "weight"} and ex["messages"]
        for turn in ex["messages"]:
            assert list(turn) == ["role", "name", "content"] and turn["role"] in ("user", "assistant")
        assert ex["messages"][-1]["role"] == "assistant"
    assistant_names = {t["name"] for ex in examples for t in ex["messages"] if t["role"] == "assistant"}
    assert assistant_names == {"Ada Lindqvist"}
    burst = [ex for ex in examples if ex["messages"][0]["content"] == "are you alive?"][0]
    assert burst["messages"][1]["content"] == "alive. call me on <PHONE_1>\nor mail <EMAIL_1>\n" + LONG_OWNER_LINE
    posts = [ex for ex in examples if ex["messages"][0]["content"].startswith("Write a post: ")]
    assert sorted(ex["messages"][0]["content"] for ex in posts) == ["Write a post: Cold batteries", "Write a post: Gerald, "
                                                                                                    "or: a starter"]
    # The policy (tests/test_tiers.py): the little writing here is repeated 4 times, chat thinned;
    # validation is never weighted.
    train = read_jsonl(out / "train.jsonl")
    assert {ex.get("weight") for ex in train if ex in posts} == {4.0}
    assert {ex.get("weight") for ex in train if ex not in posts} == {0.4615}
    assert all("weight" not in ex for ex in read_jsonl(out / "val.jsonl"))

    # nothing private anywhere, special tokens broken
    text = all_output(out)
    for value in PLANTED:
        assert value not in text
    assert "<|im_end|>" not in text and "<\u2060|im_end|>" in text

    # report.json: counts that add up
    report = json.loads((out / "report.json").read_text())
    msgs = report["messages"]
    assert msgs["dropped"] == {
        "media_only": 3, "service": 2, "corrupt": 1, "deleted": 1, "duplicate": 1, "forwarded": 1,
    }  # fmt: skip
    assert msgs["seen"] == msgs["kept"] + sum(msgs["dropped"].values()) == 14 + 2 + 5 + 2
    assert msgs["kept"] == len(messages)
    assert msgs["kept_posts"] == 2
    assert report["pii_replaced"]["texts"] == {"email": 2, "phone": 2, "card": 1, "iban": 1, "secret_url": 1}
    assert report["special_tokens_escaped"] == 1
    # Noor: 2 sessions (a day and a minute apart), Club: 1 without the owner, WhatsApp: 1
    assert report["sessions"] == {"total": 4, "with_owner": 3, "gap_minutes": 30.0}
    assert report["examples"] == {"train": len(examples) - report["examples"]["val"], "val": report["examples"]["val"],
                                  "chat": 3, "post": 2, "left_out_at_cut": 0,
                                  "tiers": {"1": 2, "3": 3}}  # fmt: skip
    assert report["examples"]["val"] >= 1
    # By time: every val session starts after every train session ended.
    assert report["split"]["method"] == "time" and report["split"]["train_until"] < report["split"]["val_from"]
    assert report["tokens"]["train"] > report["tokens"]["train_assistant"] > 0
    assert "characters / 4" in report["tokens"]["method"]
    assert [i["format"] for i in report["inputs"]] == ["telegram", "whatsapp", "markdown", "markdown"]
    assert "message id 11: no 'from_id'" in report["inputs"][0]["errors"][0]
    assert report["problems"] == []

    stdout = capsys.readouterr().out
    assert f"kept {msgs['kept']} " in stdout and "wrote" in stdout


def test_same_inputs_same_outputs_and_no_temp_files(exports, tmp_path):
    outs = []
    for name in ("a", "b"):
        out = tmp_path / name
        assert run_prepare(str(exports["telegram"]), str(exports["posts"]), *OWNERS, "--out", str(out), "--seed", "7") == 0
        outs.append(out)
        assert not [p for p in out.iterdir() if p.name.startswith(".")]
    for f in ("messages.jsonl", "train.jsonl", "val.jsonl"):
        assert (outs[0] / f).read_bytes() == (outs[1] / f).read_bytes()


def test_session_gap_option(exports, tmp_path):
    out = tmp_path / "out"
    assert run_prepare(str(exports["telegram"]), *OWNERS, "--out", str(out), "--session-gap-minutes", "2000") == 0
    report = json.loads((out / "report.json").read_text())
    assert report["sessions"]["total"] == 2  # the day-and-a-minute gap is now inside one session


def test_blocklist(exports, tmp_path):
    blocklist = tmp_path / "private.txt"
    blocklist.write_text("# my things\nGerald\n\n/PIPIT-\\d+/\nNoor Haddad\n", encoding="utf-8")
    out = tmp_path / "out"
    assert run_prepare(str(exports["telegram"]), str(exports["posts"]), *OWNERS, "--out", str(out), "--blocklist", str(blocklist)) == 0
    text = all_output(out)
    assert "Gerald" not in text and "PIPIT-4" not in text and "Noor Haddad" not in text
    report = json.loads((out / "report.json").read_text())
    assert report["pii_replaced"]["texts"]["blocked"] == 3  # Gerald in title and body, PIPIT-4
    assert report["pii_replaced"]["names_and_ids"]["blocked"] >= 1  # the chat and author name


def test_bad_blocklist_regex_stops_the_run(exports, tmp_path, capsys):
    blocklist = tmp_path / "private.txt"
    blocklist.write_text("fine\n/[unclosed/\n", encoding="utf-8")
    out = tmp_path / "out"
    assert run_prepare(str(exports["posts"]), *OWNERS, "--out", str(out), "--blocklist", str(blocklist)) == 2
    assert f"{blocklist}:2: not a valid regular expression" in capsys.readouterr().err
    assert not out.exists()


def test_corrupt_export_is_named_and_skipped(exports, tmp_path, capsys):
    broken = tmp_path / "broken.json"
    broken.write_text('{"chats": {"list": [\n  {"messages": [\n    {"id": 1,, }\n]}]}}', encoding="utf-8")
    out = tmp_path / "out"
    assert run_prepare(str(broken), str(exports["posts"]), *OWNERS, "--out", str(out)) == 0
    err = capsys.readouterr().err
    assert re.search(rf"{re.escape(str(broken))}: not valid JSON: .* at line 3, column \d+", err)
    report = json.loads((out / "report.json").read_text())
    assert len(report["problems"]) == 1 and str(broken) in report["problems"][0]
    assert report["examples"]["post"] == 2


def test_an_export_cut_short_stops_the_run_unless_accepted(tmp_path, capsys):
    """A download cut at 60 %: prepare names the file and the byte where it ends and writes
    nothing (exit 2); with --accept-cut it prepares from what was read, and says so (issue 41)."""
    sample = Path(__file__).resolve().parent.parent / "samples" / "corpus" / "telegram" / "result.json"
    data = sample.read_bytes()
    cut = tmp_path / "result.json"
    cut.write_bytes(data[: len(data) * 6 // 10])
    out = tmp_path / "out"
    assert run_prepare(str(cut), *OWNERS, "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert re.search(rf"error: {re.escape(str(cut))}: .*ends at byte {len(data) * 6 // 10}", err), err
    assert "--accept-cut" in err and not out.exists()
    assert run_prepare(str(cut), *OWNERS, "--out", str(out), "--accept-cut") == 0
    report = json.loads((out / "report.json").read_text())
    assert len(report["problems"]) == 1 and "ends at byte" in report["problems"][0]
    assert report["inputs"][0]["messages"] > 0


def test_nothing_readable_exits_2_naming_each_file(tmp_path, capsys):
    broken = tmp_path / "result.json"
    broken.write_text('{"chats": {"list": [ {"messages": [}', encoding="utf-8")
    unknown = tmp_path / "data.bin"
    unknown.write_bytes(bytes(range(256)))
    html = tmp_path / "messages.html"
    html.write_text("<html><body>Telegram export</body></html>")
    out = tmp_path / "out"
    rc = run_prepare(str(broken), str(unknown), str(html), str(tmp_path / "missing"), *OWNERS, "--out", str(out))
    assert rc == 2
    err = capsys.readouterr().err
    assert "nothing could be read" in err
    assert f"{broken}: not valid JSON" in err
    assert f"{unknown}: unknown export format" in err
    assert "Machine-readable JSON" in err
    assert f"{tmp_path / 'missing'}: no such file or folder" in err
    assert not out.exists()


def test_no_owner_match_lists_authors(exports, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_prepare(str(exports["telegram"]), "--owner", "Nobody", "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert "no message matched --owner Nobody" in err and "Noor Haddad (user4440001)" in err
    assert not out.exists()


def test_help_explains_the_options(capsys):
    with pytest.raises(SystemExit) as e:
        main(["prepare", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for expected in ["--owner", "user5550101", "--val-fraction", "--session-gap-minutes", "--blocklist", "/regex/", "--seed", "--out"]:
        assert expected in text


def test_bad_option_values_are_refused(tmp_path, capsys):
    for bad in (["--val-fraction", "1.5"], ["--session-gap-minutes", "0"], ["--weights", "poems=2"],
                ["--weights", "chat=lots"], ["--weights", "chat=0"], ["--val-split", "random"]):
        with pytest.raises(SystemExit) as e:
            main(["prepare", str(tmp_path), "--owner", "x", "--out", str(tmp_path / "o"), *bad])
        assert e.value.code == 2


SAMPLES = REPO / "samples" / "corpus"


def planted_values(obj: object):
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, list):
        for item in obj:
            yield from planted_values(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from planted_values(item)


@pytest.mark.skipif(not (SAMPLES / "planted_pii.json").exists(), reason="sample corpus not written yet")
def test_sample_corpus_leaks_nothing_planted(tmp_path):
    out = tmp_path / "out"
    rc = run_prepare(str(SAMPLES / "telegram"), str(SAMPLES / "posts"), *OWNERS, "--out", str(out))
    assert rc == 0
    text = all_output(out)
    planted = [v for v in planted_values(json.loads((SAMPLES / "planted_pii.json").read_text())) if len(v) >= 6]
    assert planted
    leaks = [v for v in planted if v in text or re.sub(r"[\s\-]", "", v) in text]
    assert leaks == []
    assert read_jsonl(out / "train.jsonl") and read_jsonl(out / "val.jsonl")


def test_export_whose_every_message_is_broken_is_named(tmp_path, capsys):
    path = tmp_path / "result.json"
    path.write_text(json.dumps({"name": "x", "type": "personal_chat", "id": 1, "messages": [{"id": 1, "type": "message"}]}))
    assert run_prepare(str(path), *OWNERS, "--out", str(tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert f"{path}: telegram export with no usable message (1 skipped; first: {path}: chat 1 message id 1:" in err


def test_pseudonyms_replace_other_peoples_names_everywhere(exports, tmp_path):
    out = tmp_path / "out"
    assert run_prepare(str(exports["telegram"]), str(exports["whatsapp"]), *OWNERS, "--out", str(out), "--pseudonyms") == 0
    text = all_output(out)
    assert "Noor" not in text and "Haddad" not in text
    messages = read_jsonl(out / "messages.jsonl")
    others = {r["author"] for r in messages if not r["is_owner"]}
    assert others and all(re.fullmatch(r"Person \d+", a) for a in others)
    assert {r["author"] for r in messages if r["is_owner"]} == {"Ada Lindqvist", "Ada L"}  # the owner keeps hers
    assert json.loads((out / "report.json").read_text())["settings"]["pseudonyms"] == len(others)


def test_chat_split_and_all_speakers(exports, tmp_path):
    out = tmp_path / "out"
    assert run_prepare(str(exports["telegram"]), str(exports["whatsapp"]), *OWNERS, "--out", str(out),
                       "--val-split", "chat", "--train-all-speakers") == 0
    report = json.loads((out / "report.json").read_text())
    assert report["split"]["method"] == "chat" and report["settings"]["train_all_speakers"] is True
    # The club chat has no owner turns: with every speaker trained it is an example too.
    assert report["examples"]["chat"] == 4
    examples = read_jsonl(out / "train.jsonl") + read_jsonl(out / "val.jsonl")
    assert all(ex["train"] == "all" for ex in examples)
