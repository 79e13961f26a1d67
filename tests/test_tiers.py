"""Tiers (1 writing, 2 long-form mail, 3 chat), --tier, and the policy that weighs training."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from host_training.__main__ import main
from host_training.prepare.sessions import approx_tokens
from host_training.prepare.tiers import MAX_REPEAT, Override, TierBook, TierError, parse_override, policy_weights, top_share

T0 = int(datetime(2024, 3, 12, 21, 14, tzinfo=timezone.utc).timestamp())
DAY = 86400
OWNERS = ["--owner", "user5550101", "--owner", "Ada Lindqvist", "--owner", "ada@example.org"]


# ---------------------------------------------------------------------------------------------
# The policy, as a function from tokens per tier to weights


def test_policy_exact_figures():
    # tiers 1-2 hold a third of what chat holds: repeated 3 times they are half (share 0.5)
    assert policy_weights({1: 100, 3: 300}, 0.5) == {1: 3.0, 2: 3.0, 3: 1.0}
    # 8 times would be needed: 4 at most, and chat kept at half
    assert policy_weights({1: 100, 3: 800}, 0.5) == {1: 4.0, 2: 4.0, 3: 0.5}
    # 0.7 of 1400 against 0.3 of 300+200... : 3.8889 times, rounded up
    assert policy_weights({1: 100, 2: 200, 3: 500}) == {1: 3.8889, 2: 3.8889, 3: 1.0}
    # beyond the cap: 4 x 300 = 1200 against 2100 x w, w = 1200 x 0.3 / (0.7 x 2100) = 0.244897..., rounded down
    assert policy_weights({1: 100, 2: 200, 3: 2100}) == {1: 4.0, 2: 4.0, 3: 0.2448}


@pytest.mark.parametrize("tokens", [{3: 1000}, {1: 10, 2: 5}, {1: 700, 3: 300}, {2: 800, 3: 200}, {}])
def test_policy_leaves_data_alone_without_chat_without_writing_or_when_met(tokens):
    assert policy_weights(tokens) == {1: 1.0, 2: 1.0, 3: 1.0}


def test_policy_zero_is_off():
    assert policy_weights({1: 1, 3: 10_000}, 0.0) == {1: 1.0, 2: 1.0, 3: 1.0}


@given(st.integers(1, 10**7), st.integers(0, 10**7), st.integers(1, 10**8), st.sampled_from([0.3, 0.5, 0.7, 0.9]))
def test_policy_meets_the_share(t1, t2, t3, share):
    w = policy_weights({1: t1, 2: t2, 3: t3}, share)
    after = {1: t1 * w[1], 2: t2 * w[2], 3: t3 * w[3]}
    assert 1.0 <= w[1] == w[2] <= MAX_REPEAT and 0 < w[3] <= 1.0
    if w[3] > 0.0001:  # the smallest weight written: below it chat cannot be thinned further
        assert top_share(after) >= share
    if w[3] < 1:
        assert w[1] == MAX_REPEAT  # chat is thinned only once writing is repeated all it may be


# ---------------------------------------------------------------------------------------------
# --tier and the tier of each example


def test_parse_override():
    assert parse_override("journal/=1") == Override("journal/", 1)
    assert parse_override("a=b.mbox=3") == Override("a=b.mbox", 3)  # a path may hold "="
    for bad in ("journal/", "journal/=4", "=2", "journal/=writing"):
        with pytest.raises(TierError, match="journal|PATH=TIER|tier must be"):
            parse_override(bad)


def test_a_long_chat_is_long_form_unless_its_tier_was_set():
    book = TierBook()
    book.note("telegram", "c1", "1", "message", 3, fixed=False)
    book.note("telegram", "c2", "1", "message", 3, fixed=True)
    book.note("mail", "t1", "m1", "post", 2, fixed=False)
    book.note("mail", "t1", "m1", "post", 1, fixed=True)  # the same mail in a second input, set to 1: the better
    long, short = ["x" * 300, "y" * 280], ["ok", "x" * 500]
    assert book.of("chat", "s", "telegram:c1", long) == 2
    assert book.of("chat", "s", "telegram:c1", short) == 3  # 251 characters on average
    assert book.of("chat", "s", "telegram:c2", long) == 3
    assert book.of("post", "mail:t1:m1", "mail:t1", ["x"]) == 1


# ---------------------------------------------------------------------------------------------
# prepare: posts, an mbox and a Telegram export


def tg(mid: int, at: int, text: str, who: str = "ada") -> dict:
    name, uid = {"ada": ("Ada Lindqvist", "user5550101"), "noor": ("Noor Haddad", "user4440001")}[who]
    return {"id": mid, "type": "message", "date_unixtime": str(at), "from": name, "from_id": uid, "text": text}


def make_exports(root: Path) -> dict[str, Path]:
    """Two journal posts, two sent mails, and a month of short chat with one long-winded evening."""
    (root / "journal").mkdir(parents=True)
    for day, words in ((1, "Fog over the field again, and the launch moved to Sunday."),
                       (2, "The payload box survived the freezer test at minus forty.")):
        (root / "journal" / f"2024-02-0{day}-note.md").write_text(f"# Day {day}\n\n{words}\n", encoding="utf-8")
    mails = ""
    for n, body in enumerate(["Dear club, the launch is on Sunday at nine; bring gloves and a thermos.",
                              "Thanks for the antenna. It works far better than the old one did."], start=1):
        mails += (f"From - Tue Feb 06 21:14:00 2024\nFrom: Ada Lindqvist <ada@example.org>\nSubject: Launch {n}\n"
                  f"Date: Tue, 0{5 + n} Feb 2024 21:14:00 +0000\nMessage-ID: <m{n}@example.org>\n\n{body}\n")
    (root / "mail").mkdir()
    (root / "mail" / "Sent.mbox").write_text(mails, encoding="utf-8")
    chat = []
    for day in range(20):
        at = T0 + day * DAY
        chat += [tg(4 * day + 1, at, f"launch news {day}?", "noor"), tg(4 * day + 2, at + 60, f"not yet, day {day}")]
    long_turn = "Long story: " + "the tracker lost lock twice over the hills, then came back near the coast. " * 5
    chat += [tg(900, T0 + 30 * DAY, "how did the flight go?", "noor"), tg(901, T0 + 30 * DAY + 60, long_turn)]
    (root / "telegram").mkdir()
    data = {"chats": {"list": [{"name": "Noor Haddad", "type": "personal_chat", "id": 4440001, "messages": chat}]}}
    (root / "telegram" / "result.json").write_text(json.dumps(data), encoding="utf-8")
    return {"journal": root / "journal", "mail": root / "mail" / "Sent.mbox", "telegram": root / "telegram"}


def prepare(out: Path, *args: str) -> int:
    return main(["--log-level", "WARNING", "prepare", *args, *OWNERS, "--out", str(out)])


def tier_of_example(ex: dict) -> int:
    """The tier by the example's own look: a post, a mail, a long-form chat (280+ characters an
    owner turn on average), a chat."""
    prompt = ex["messages"][0]["content"]
    owner = [len(t["content"]) for t in ex["messages"] if t["role"] == "assistant"]
    if prompt.startswith("Write a post"):
        return 1
    return 2 if prompt.startswith("Write an e-mail") or sum(owner) / len(owner) >= 280 else 3


def learnt(ex: dict) -> int:
    return sum(approx_tokens(t["content"]) for t in ex["messages"] if t["role"] == "assistant")


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def exports(tmp_path: Path) -> dict[str, Path]:
    return make_exports(tmp_path / "in")


def test_each_input_has_its_tier_and_training_meets_the_policy(exports, tmp_path, capsys):
    out = tmp_path / "out"
    assert prepare(out, str(exports["journal"]), str(exports["mail"]), str(exports["telegram"])) == 0
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert [(Path(i["path"]).name, i["tier"], i["tier_set"]) for i in report["inputs"]] == [
        ("2024-02-01-note.md", 1, False), ("2024-02-02-note.md", 1, False), ("Sent.mbox", 2, False),
        ("result.json", 3, False),
    ]  # fmt: skip

    train, val = read_jsonl(out / "train.jsonl"), read_jsonl(out / "val.jsonl")
    # The two latest sessions are validation, never weighted: a chat and the long-winded evening (tier 2).
    assert sorted(tier_of_example(ex) for ex in val) == [2, 3] and not any("weight" in ex for ex in val)
    assert report["examples"]["tiers"] == {"1": 2, "2": 3, "3": 20}
    before: dict[int, int] = {1: 0, 2: 0, 3: 0}
    after: dict[int, float] = {1: 0, 2: 0, 3: 0}
    for ex in train:
        before[tier_of_example(ex)] += learnt(ex)
        after[tier_of_example(ex)] += learnt(ex) * ex.get("weight", 1.0)
    assert top_share(before) < 0.7 <= top_share(after)  # the policy's share, in what train.jsonl says

    tiers = report["tiers"]
    assert tiers["top_tier_share"] == 0.7 and "70%" in tiers["policy"]
    assert {int(t): v["tokens_before"] for t, v in tiers["train"].items()} == before
    assert {int(t): v["tokens_after"] for t, v in tiers["train"].items()} == {t: round(v) for t, v in after.items()}
    # 0.7 x 76 chat tokens against 0.3 x (30 + 35): writing and mail 2.7283 times each, chat as it is
    assert before == {1: 30, 2: 35, 3: 76}
    assert {t: v["weight"] for t, v in tiers["train"].items()} == {"1": 2.7283, "2": 2.7283, "3": 1.0}
    assert tiers["top_share_before"] == round(top_share(before), 4) and tiers["top_share_after"] >= 0.7
    assert {int(t): v["tokens"] for t, v in tiers["val"].items()} == {
        t: sum(learnt(ex) for ex in val if tier_of_example(ex) == t) for t in (1, 2, 3)}
    stdout = capsys.readouterr().out
    assert "training tokens by tier: 1 writing ~30 -> ~82 (x2.7283), 2 long-form ~35 -> ~95 (x2.7283), 3 chat ~76; " \
           "tiers 1-2 46% -> 70% (policy: at least 70%)" in stdout


def test_tier_overrides_by_folder_and_by_file(exports, tmp_path):
    """PATH relative to the current folder or to a folder given as EXPORT; the most specific wins;
    a chat set by hand is not promoted to long-form."""
    root = exports["journal"].parent
    out = tmp_path / "out"
    assert prepare(out, str(root), "--tier", f"{root}=3", "--tier", "mail/Sent.mbox=1", "--tier", "telegram/=3",
                   "--val-fraction", "0") == 0
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert [(Path(i["path"]).name, i["tier"], i["tier_set"]) for i in report["inputs"]] == [
        ("2024-02-01-note.md", 3, True), ("2024-02-02-note.md", 3, True), ("Sent.mbox", 1, True),
        ("result.json", 3, True),
    ]  # fmt: skip
    assert report["examples"]["tiers"] == {"1": 2, "3": 23}
    assert report["settings"]["tiers_set"] == [f"{root}=3", "mail/Sent.mbox=1", "telegram/=3"]


def test_weights_by_hand_replace_the_policy(exports, tmp_path):
    out = tmp_path / "out"
    assert prepare(out, str(exports["journal"]), str(exports["telegram"]), "--weights", "writing=3,3=0.5",
                   "--val-fraction", "0") == 0
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert {ex.get("weight") for ex in read_jsonl(out / "train.jsonl")} == {3.0, 0.5, None}  # the long evening: tier 2, 1
    assert report["tiers"]["top_tier_share"] is None and report["tiers"]["policy"].startswith("weights set by hand")
    with pytest.raises(SystemExit) as e:  # one or the other
        prepare(tmp_path / "other", str(exports["journal"]), "--weights", "1=2", "--top-tier-share", "0.5")
    assert e.value.code == 2


@pytest.mark.parametrize("override, why", [
    ("nowhere/=1", "nowhere/ names no input"),
    ("journal/2024-02-01-note.md=2", None),  # a file under a folder given as EXPORT: fine
])
def test_an_override_that_names_no_input_is_refused(exports, tmp_path, capsys, override, why):
    out = tmp_path / "out"
    rc = prepare(out, str(exports["journal"].parent), "--tier", override)
    if why is None:
        assert rc == 0
        return
    assert rc == 2 and not out.exists()  # refused before anything was read or written
    err = capsys.readouterr().err
    assert f"--tier {override}: {why}" in err and "Sent.mbox" in err  # the inputs are listed to pick from


def test_one_path_given_two_tiers_is_refused(exports, tmp_path, capsys):
    assert prepare(tmp_path / "out", str(exports["mail"]), "--tier", f"{exports['mail']}=1",
                   "--tier", f"{exports['mail']}=3") == 2
    assert "to two tiers" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["journal/", "journal/=0", "journal/=chat"])
def test_a_malformed_tier_is_a_usage_error(exports, tmp_path, bad):
    with pytest.raises(SystemExit) as e:
        prepare(tmp_path / "out", str(exports["journal"]), "--tier", bad)
    assert e.value.code == 2


def test_a_file_given_as_export_is_named_by_its_name(exports, tmp_path):
    out = tmp_path / "out"
    assert prepare(out, str(exports["mail"]), str(exports["journal"]), "--tier", "Sent.mbox=3") == 0
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert [(Path(i["path"]).name, i["tier"]) for i in report["inputs"]][0] == ("Sent.mbox", 3)


# ---------------------------------------------------------------------------------------------
# The owner's runs of acknowledgements, as prepare counts them


def test_prepare_caps_the_owners_acks_and_counts_them(tmp_path):
    chat = [tg(1, T0, "so the balloon went up", "noor")]
    for i, ack in enumerate(["ok", "lol", "👍", "k", "yes"]):  # five in a row: three over the cap of 2
        chat += [tg(10 + 2 * i, T0 + 60 * (i + 1), ack), tg(11 + 2 * i, T0 + 60 * (i + 1) + 30, f"and then {i}", "noor")]
    chat += [tg(30, T0 + 600, "no way, how high?")]
    root = tmp_path / "in"
    root.mkdir()
    data = {"chats": {"list": [{"name": "Noor Haddad", "type": "personal_chat", "id": 4440001, "messages": chat}]}}
    (root / "result.json").write_text(json.dumps(data), encoding="utf-8")
    outs = {}
    for cap in ("2", "off"):
        outs[cap] = tmp_path / f"out-{cap}"
        assert prepare(outs[cap], str(root), "--max-ack-run", cap, "--val-fraction", "0") == 0
    report = json.loads((outs["2"] / "report.json").read_text(encoding="utf-8"))
    assert report["messages"]["dropped"] == {"ack_run": 3}
    assert report["messages"]["seen"] == report["messages"]["kept"] + 3 == len(chat)
    assert report["messages"]["kept_owner"] == 3 and report["settings"]["max_ack_run"] == 2
    owner_turns = [t["content"] for ex in read_jsonl(outs["2"] / "train.jsonl") for t in ex["messages"]
                   if t["role"] == "assistant"]
    assert owner_turns == ["ok", "lol", "no way, how high?"]
    assert [json.loads(line)["text"] for line in (outs["2"] / "messages.jsonl").read_text().splitlines()
            if json.loads(line)["is_owner"]] == owner_turns
    assert json.loads((outs["off"] / "report.json").read_text())["messages"]["dropped"] == {}
