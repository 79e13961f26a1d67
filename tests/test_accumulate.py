"""`prepare` run again on its own folder adds what is new (host_training/prepare/accumulate.py), and
`build --continue` trains the previous persona further on it."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pytest

from host_training.__main__ import main
from host_training.ingest import Message
from host_training.prepare import accumulate as A

T0 = int(datetime(2024, 3, 12, 21, 14, tzinfo=timezone.utc).timestamp())
DAY = 86400
OWNERS = ["--owner", "user5550101", "--owner", "Ada Lindqvist"]


def tg(mid, at, text, who="ada", **extra):
    name, uid = {"ada": ("Ada Lindqvist", "user5550101"), "noor": ("Noor Haddad", "user4440001")}[who]
    return {"id": mid, "type": "message", "date_unixtime": str(at), "from": name, "from_id": uid, "text": text,
            **extra}


def telegram(path: Path, messages: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"chats": {"list": [{"name": "Noor Haddad", "type": "personal_chat", "id": 4440001, "messages": messages}]}}
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def whatsapp(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "WhatsApp Chat with Jonas.txt"
    path.write_text(text, encoding="utf-8")
    return path


FIRST_TG = [
    tg(1, T0, "are you up?", "noor"),
    tg(2, T0 + 60, "up. call me on +44 7700 900123"),
    tg(3, T0 + 120, "ok", "noor"),
    tg(4, T0 + DAY, "the balloon is packed and ready"),
    tg(5, T0 + DAY + 60, "nice", "noor"),
]
# A later export: 1-3 no longer in it (a shorter range), 4 edited, 5 as before, 6-9 new.
SECOND_TG = [
    tg(4, T0 + DAY, "the balloon is packed, fuelled and ready", edited="2024-03-14T10:00:00"),
    tg(5, T0 + DAY + 60, "nice", "noor"),
    tg(6, T0 + 2 * DAY, "launch day. ring 07700 900999 if it is lost"),
    tg(7, T0 + 2 * DAY + 60, "good luck", "noor"),
    tg(8, T0 + 3 * DAY, "how did it go?", "noor"),
    tg(9, T0 + 3 * DAY + 60, "it flew to 31 km and came down in a field of sheep"),
]
# Day-first, 24-hour (a European phone) ...
FIRST_WA = (
    "13/03/2024, 10:00 - Jonas: morning\n"
    "13/03/2024, 10:01 - Ada Lindqvist: morning! coffee?\n"
    "13/03/2024, 10:01 - Ada Lindqvist: ok\n"
    "13/03/2024, 10:01 - Ada Lindqvist: ok\n"
    "13/03/2024, 10:02 - Jonas: yes please\n"
)
# ... and the same chat exported later on a phone set to US English: month-first, 12-hour, other
# line numbers, the last message edited since, two new ones.
SECOND_WA = (
    "3/13/24, 10:00 AM - Messages and calls are end-to-end encrypted.\n"
    "3/13/24, 10:00 AM - Jonas: morning\n"
    "3/13/24, 10:01 AM - Ada Lindqvist: morning! coffee?\n"
    "3/13/24, 10:01 AM - Ada Lindqvist: ok\n"
    "3/13/24, 10:01 AM - Ada Lindqvist: ok\n"
    "3/13/24, 10:02 AM - Jonas: yes please, oat milk <This message was edited>\n"
    "3/16/24, 6:30 PM - Ada Lindqvist: the launch went well, the tracker held to the end\n"
    "3/16/24, 6:31 PM - Jonas: 🎉 brilliant\n"
)


def prepare(*args: str) -> int:
    return main(["--log-level", "WARNING", "prepare", *args])


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text(encoding="utf-8"))


def snapshot(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


@pytest.fixture
def two_exports(tmp_path):
    """(first exports, later exports) of one Telegram and one WhatsApp chat that overlap."""
    first = [telegram(tmp_path / "2024-03" / "result.json", FIRST_TG), whatsapp(tmp_path / "2024-03", FIRST_WA)]
    later = [telegram(tmp_path / "2024-04" / "result.json", SECOND_TG), whatsapp(tmp_path / "2024-04", SECOND_WA)]
    return [str(p) for p in first], [str(p) for p in later]


# ----------------------------------------------------------------------------- pure parts
def msg(text="hi", **kw) -> Message:
    base = dict(source="whatsapp", chat_id="Jonas", chat_name="Jonas", msg_id="7", author_id="Jonas", author="Jonas",
                is_owner=False, ts=datetime(2024, 3, 13, 10, 2, 5, tzinfo=timezone.utc), text=text)
    return Message(**{**base, **kw})


def test_normal_text_ignores_placeholder_and_pseudonym_numbers_and_spacing():
    assert A.normal_text("call <PHONE_1>  or <SECRET_URL_3>, Person 2") == "call <PHONE> or <SECRET_URL>, Person"
    assert A.normal_text("cafe\u0301") == A.normal_text("café")
    assert A.normal_text("Personal 2") == "Personal 2"


def test_whatsapp_identity_survives_what_a_re_export_changes():
    a = msg("yes please")
    # another line number, another spelling of the author, no seconds, a placeholder renumbered
    b = msg("yes  please", msg_id="12", author="Jonas B.", author_id="Jonas B.", ts=a.ts.replace(second=0))
    assert A.identity(a) == A.identity(b)
    assert A.identity(a)[0] != A.identity(msg("yes please", is_owner=True))[0]  # the other side
    assert A.identity(a)[0] != A.identity(msg("yes please", ts=a.ts.replace(minute=3)))[0]
    assert A.identity(msg("<PHONE_1>"))[0] == A.identity(msg("<PHONE_7>"))[0]


def test_app_ids_are_the_key_where_there_are_ids():
    t = msg("first", source="telegram", chat_id="4440001", msg_id="4")
    edited = msg("first, edited", source="telegram", chat_id="4440001", msg_id="4", ts=t.ts.replace(hour=11))
    assert A.identity(t)[0] == A.identity(edited)[0] and A.identity(t)[1] is None
    assert A.identity(t)[2] != A.identity(edited)[2]  # the text differs: a change
    assert not A.has_id(msg(source="mail", msg_id="#3")) and A.has_id(msg(source="mail", msg_id="msg_0a1b2c3d4e5f"))


def test_equal_texts_in_one_minute_are_counted_apart():
    ids = A.Identities()
    later = datetime(2024, 3, 13, 10, 3, tzinfo=timezone.utc)
    keys = [ids(msg("ok", is_owner=True)), ids(msg("ok", is_owner=True)), ids(msg("ok", is_owner=True, ts=later))]
    assert len({k for k, _, _ in keys}) == 3 and keys[0][1] == keys[1][1] != keys[2][1]
    read = A.ReadIdentities()
    assert read(msg("ok")) != read(msg("ok"))  # two "ok"s in one file are two messages


def test_records_round_trip_posts_included():
    post = msg("a post", source="markdown", chat_id="posts", msg_id="cold.md", kind="post", title="Cold batteries",
               is_owner=True, ts=datetime(2024, 3, 13, 10, 2, tzinfo=timezone.utc))
    rec = A.record(post)
    assert rec["kind"] == "post" and rec["title"] == "Cold batteries"
    assert A.from_record(json.loads(json.dumps(rec)), "x") == post
    old = {k: v for k, v in rec.items() if k not in ("kind", "title")}  # a line written before "kind"
    assert A.from_record(old, "x").kind == "post" and A.from_record(old, "x").title == "cold"
    with pytest.raises(A.PreviousError, match="f:3: missing ts, text"):
        A.from_record({k: v for k, v in rec.items() if k not in ("ts", "text")}, "f:3")
    with pytest.raises(A.PreviousError, match="is not a UTC time"):
        A.from_record({**rec, "ts": "yesterday"}, "f:3")


def test_reserve_spends_the_numbers_already_used():
    from stratoecho.privacy import PrivacyScrubber

    scrubber = PrivacyScrubber()
    A.reserve(scrubber.placeholder, Counter(phone=2, secret_url=1))
    assert scrubber.scrub("ring +44 7700 900777")[0] == "ring <PHONE_3>"


def test_settings_changed_and_owner_digests():
    assert A.settings_changed({"val_split": "time", "seed": 1}, {"val_split": "chat", "seed": 1}) == {
        "val_split": ["time", "chat"]}
    assert A.owner_digests(["Ada ", "ada", "ada@example.org"]) == A.owner_digests(["ADA@example.org", "Ada"])
    assert "example" not in json.dumps(A.owner_digests(["ada@example.org"]))


# ----------------------------------------------------------------------------- prepare, twice
def test_a_second_prepare_adds_only_what_is_new(two_exports, tmp_path, capsys):
    first, later = two_exports
    out = tmp_path / "data"
    assert prepare(*first, *OWNERS, "--out", str(out)) == 0
    r1 = report(out)
    assert r1["accumulation"] == {"held_before": 0, "new": 10, "already_there": 0, "changed": 0, "messages": 10,
                                  "settings_changed": {}}
    assert [r["run"] for r in r1["runs"]] == [1]
    before = {(m["source"], m["msg_id"]): m for m in jsonl(out / "messages.jsonl")}
    assert before[("telegram", "2")]["text"] == "up. call me on <PHONE_1>"

    capsys.readouterr()
    assert prepare(*later, *OWNERS, "--out", str(out)) == 0
    assert "6 new, 5 already there, 2 changed; it held 10, now 16" in capsys.readouterr().out
    r2 = report(out)
    acc = r2["accumulation"]
    # Telegram: 6-9 new, 5 already there, 4 edited; WhatsApp: 4 already there, 1 edited, 2 new
    assert (acc["new"], acc["already_there"], acc["changed"], acc["held_before"]) == (6, 5, 2, 10)
    assert acc["messages"] == r2["messages"]["kept"] == 16
    assert r2["messages"]["seen"] == acc["new"] + acc["already_there"] + acc["changed"] + sum(
        r2["messages"]["dropped"].values())
    assert [(r["run"], r["new"], r["held_before"], r["messages"]) for r in r2["runs"]] == [(1, 10, 0, 10), (2, 6, 10, 16)]
    assert [i["format"] for i in r2["runs"][1]["inputs"]] == ["telegram", "whatsapp"]

    messages = jsonl(out / "messages.jsonl")
    texts = [m["text"] for m in messages]
    ids = A.Identities()
    assert len(messages) == 16 and len({ids(A.from_record(m, ""))[0] for m in messages}) == 16
    # what only the first export held is still there; the edits replaced their earlier text
    assert "up. call me on <PHONE_1>" in texts and "are you up?" in texts
    assert "the balloon is packed, fuelled and ready" in texts and "the balloon is packed and ready" not in texts
    assert "yes please, oat milk" in texts and "yes please" not in texts
    assert texts.count("ok") == 3  # Noor's, and Ada's two in one minute: not merged into one
    # a phone first seen now does not take the number the held one has
    assert "launch day. ring <PHONE_2> if it is lost" in texts
    # the split is over the merged whole: validation is the latest slice
    split = r2["split"]
    assert split["train_until"] < split["val_from"] == "2024-03-16T18:30:00Z"
    val = [t["content"] for ex in jsonl(out / "val.jsonl") for t in ex["messages"]]
    train = [t["content"] for ex in jsonl(out / "train.jsonl") for t in ex["messages"]]
    assert val == ["the launch went well, the tracker held to the end"]  # the newest WhatsApp message
    assert "the balloon is packed, fuelled and ready" in train and "are you up?" in train

    # The same exports again: nothing new, nothing changed, the data as it was.
    held = snapshot(out)
    assert prepare(*later, *OWNERS, "--out", str(out)) == 0
    r3 = report(out)["accumulation"]
    assert (r3["new"], r3["already_there"], r3["changed"], r3["messages"]) == (0, 13, 0, 16)
    assert {k: v for k, v in snapshot(out).items() if k != "report.json"} == {
        k: v for k, v in held.items() if k != "report.json"}
    assert len(report(out)["runs"]) == 3


def test_options_that_shaped_the_messages_are_checked(two_exports, tmp_path, capsys):
    first, later = two_exports
    out = tmp_path / "data"
    assert prepare(*first, *OWNERS, "--pseudonyms", "--out", str(out)) == 0
    held = snapshot(out)
    capsys.readouterr()
    # an --owner value dropped, and --pseudonyms left out: refused, saying what to do; nothing touched
    assert prepare(*later, "--owner", "user5550101", "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert "1 --owner value(s) this run lacks" in err and "was prepared with --pseudonyms" in err and "--out" in err
    assert snapshot(out) == held
    # more --owner values and another split are fine: they apply to the whole, and are reported
    assert prepare(*later, *OWNERS, "--owner", "Ada L", "--pseudonyms", "--val-split", "chat", "--out", str(out)) == 0
    r = report(out)
    assert r["accumulation"]["settings_changed"] == {"val_split": ["time", "chat"]}
    messages = jsonl(out / "messages.jsonl")
    assert len(messages) == 16 and "Noor" not in (out / "messages.jsonl").read_text(encoding="utf-8")
    others = {m["author"] for m in messages if not m["is_owner"]}
    assert others == {"Person 1", "Person 2"}  # Noor and Jonas kept theirs, met in messages already held


def test_a_word_added_to_the_blocklist_leaves_the_held_messages_too(two_exports, tmp_path):
    first, later = two_exports
    out = tmp_path / "data"
    assert prepare(*first, *OWNERS, "--out", str(out)) == 0
    blocklist = tmp_path / "private.txt"
    blocklist.write_text("coffee\n", encoding="utf-8")
    assert prepare(*later, *OWNERS, "--blocklist", str(blocklist), "--out", str(out)) == 0
    text = "".join((out / f).read_text(encoding="utf-8") for f in ("messages.jsonl", "train.jsonl", "val.jsonl"))
    assert "coffee" not in text and "morning! <BLOCKED_1>?" in text
    assert report(out)["accumulation"]["already_there"] == 5  # scrubbed alike, still the same message


def test_a_damaged_messages_file_is_named_and_nothing_is_touched(two_exports, tmp_path, capsys):
    first, later = two_exports
    out = tmp_path / "data"
    assert prepare(*first, *OWNERS, "--out", str(out)) == 0
    lines = (out / "messages.jsonl").read_text(encoding="utf-8").splitlines()
    (out / "messages.jsonl").write_text("\n".join(lines[:2] + ['{"source": "telegram",'] + lines[2:]) + "\n")
    held = snapshot(out)
    assert prepare(*later, *OWNERS, "--out", str(out)) == 2
    assert f"{out / 'messages.jsonl'}:3: not valid JSON" in capsys.readouterr().err
    assert snapshot(out) == held


# ----------------------------------------------------------------------------- build --continue
def _build(*args: str) -> int:
    return main(["--log-level", "WARNING", "build", *args])


def test_continue_trains_the_parent_further_on_what_is_new(tiny_bundle, chat_data_dir, tmp_path, capsys):
    """The session's tiny from-scratch bundle as the parent, then its data plus newer conversations:
    the child learns only the new ones (and a replayed share), records whom it came from and both figures."""
    import shutil

    from host_training.pipeline.continuing import TRAINED_ON, digest
    from host_training.train.tokenizer import load_conversations
    from stratoecho.bundle import load_bundle
    from tests.chatdata import write_chat_dataset

    parent = tiny_bundle  # read-only: a continue only reads its parent
    newer = write_chat_dataset(tmp_path / "newer", n_train=8, n_val=4, seed=1)
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "train.jsonl").write_text((chat_data_dir / "train.jsonl").read_text() + (newer / "train.jsonl").read_text())
    (v2 / "val.jsonl").write_text((newer / "val.jsonl").read_text())
    (v2 / "report.json").write_text(json.dumps({"runs": [{"run": 1}, {"run": 2}]}))

    learnt = (parent / "model" / TRAINED_ON).read_text().split()
    assert sorted(learnt) == sorted({digest(c) for c in load_conversations(chat_data_dir / "train.jsonl")})
    assert load_bundle(parent).manifest.training["model_folder"] == "model"  # and the bundle still verifies

    child = tmp_path / "child"
    capsys.readouterr()
    assert _build("--data", str(v2), "--continue", str(parent), "--steps", "4", "--quant", "Q8_0",
                  "--out", str(child)) == 0
    assert "the parent's" in capsys.readouterr().out
    m = load_bundle(child).manifest
    lin = m.training["lineage"]
    pm = load_bundle(parent).manifest
    assert lin["parent"]["persona_sha256"] == hashlib_sha256(parent / "persona.toml")
    assert lin["parent"]["model_sha256"] == pm.files[0].sha256 and lin["parent"]["data_sha256"] == pm.training[
        "data_sha256"]
    assert lin["generation"] == 2 and lin["parent"]["generation"] == 1
    assert (lin["new_conversations"], lin["replayed_conversations"], lin["already_learnt"]) == (8, 3, 60)
    assert lin["prepare_runs"] == [1, 2] and m.training["prepare_runs"] == [1, 2]
    # before and after on the same current val set, same quantization; the parent's is what eval.json says
    assert lin["before_val_perplexity"] == m.eval["base_val_perplexity"]
    assert lin["after_val_perplexity"] == m.eval["val_perplexity"]
    assert lin["before_val_loss"] > 0 and lin["after_val_loss"] > 0 and "Q8_0" in lin["figures_on"]
    assert m.persona.name == "Ada" and m.persona.system_prompt == pm.persona.system_prompt
    assert m.model.architecture == pm.model.architecture and m.training["data_sha256"] != pm.training["data_sha256"]
    # what the child has learnt: the parent's and the new ones
    assert set((child / "model" / TRAINED_ON).read_text().split()) >= set(learnt) | {
        digest(c) for c in load_conversations(newer / "train.jsonl")}

    # Refused, saying why, before anything is written: nothing new; no model folder; a changed model folder.
    assert _build("--data", str(chat_data_dir), "--continue", str(parent), "--out", str(tmp_path / "c2")) == 2
    assert "nothing new to learn" in capsys.readouterr().err and not (tmp_path / "c2").exists()
    bare = tmp_path / "bare"
    shutil.copytree(parent, bare)
    shutil.rmtree(bare / "model")
    assert _build("--data", str(v2), "--continue", str(bare), "--out", str(tmp_path / "c3")) == 2
    assert "no model folder" in capsys.readouterr().err
    shutil.copytree(parent / "model", bare / "model")
    cfg = json.loads((bare / "model" / "config.json").read_text())
    (bare / "model" / "config.json").write_text(json.dumps({**cfg, "model_type": "qwen2"}))
    assert _build("--data", str(v2), "--continue", str(bare), "--out", str(tmp_path / "c3")) == 2
    assert "is not the model this bundle was built from" in capsys.readouterr().err
    assert _build("--data", str(v2), "--from-scratch", "--replay", "0.5", "--out", str(tmp_path / "c4")) == 2
    assert "--replay applies to --continue only" in capsys.readouterr().err


def hashlib_sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()
