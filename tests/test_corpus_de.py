"""The German sample owner (samples/corpus_de): his exports read whole, his language is found,
his catchphrase keeps its frequency, his private values are scrubbed (issue 40)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from host_training.__main__ import main

CORPUS = Path(__file__).resolve().parent.parent / "samples" / "corpus_de"
OWNERS = ["--owner", "user7770101", "--owner", "Jannik Wolter"]
PLANTED = ["kalle.hoffmann@example.net", "jannik.wolter@example.org", "DE89 3704 0044 0532 0130 00"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    out = tmp_path_factory.mktemp("de") / "data"
    rc = main(["--log-level", "WARNING", "prepare", str(CORPUS / "telegram"), str(CORPUS / "whatsapp"), *OWNERS,
               "--out", str(out)])
    assert rc == 0
    return out


def test_his_exports_read_without_a_lost_line(prepared):
    report = json.loads((prepared / "report.json").read_text(encoding="utf-8"))
    by_file = {Path(i["path"]).name: i for i in report["inputs"]}
    assert by_file["WhatsApp Chat mit Kalle.txt"]["format"] == "whatsapp"
    assert by_file["WhatsApp Chat mit Kalle.txt"]["owner"]["owner_messages"] == 134  # 141 less 6 photos, 1 deleted
    assert by_file["WhatsApp Chat mit Mama.txt"]["owner"]["owner_messages"] == 58
    assert all(not i["errors"] and not i["skipped"] for i in report["inputs"])
    # the German encryption notice is WhatsApp's, the photos are media, the deletion is one
    assert report["messages"]["dropped"] == {"media_only": 17, "service": 4, "forwarded": 3, "deleted": 1}


def test_his_language_and_catchphrase(prepared):
    report = json.loads((prepared / "report.json").read_text(encoding="utf-8"))
    lang = report["language"]
    assert lang["main"] == "de" and lang["languages"] == ["de"] and lang["shares"]["de"] > 0.95
    assert lang["repeated_short_messages"]["messages"] >= 12 + 8 + 8
    owner = [json.loads(line)["text"] for line in (prepared / "messages.jsonl").read_text(encoding="utf-8").splitlines()
             if json.loads(line)["is_owner"]]
    assert owner.count("ja digga") == 12  # kept as often as he wrote it, not once


def test_his_private_values_are_scrubbed(prepared):
    for name in ("messages.jsonl", "train.jsonl", "val.jsonl", "report.json"):
        text = (prepared / name).read_text(encoding="utf-8")
        assert not [v for v in PLANTED if v in text], name
