"""The Spanish sample owner (samples/corpus_es): her exports read whole, her id and her name find her,
her language is found, her way of writing survives prepare, her held-out turns say enough to measure
substance on, and her private values are scrubbed (issue 49)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from host_training.__main__ import main

CORPUS = Path(__file__).resolve().parent.parent / "samples" / "corpus_es"
OWNERS = ["--owner", "user8880101", "--owner", "Paula Císcar"]
STREET = "carrer de l'estel fugaç"  # what she puts in --blocklist: prepare cannot know an address
OUTPUTS = ("messages.jsonl", "train.jsonl", "val.jsonl", "report.json")
# What prepare reports, and the README says
KEPT_OWNER, CONVERSATIONS = 453, 119
BY_FILE = {"result.json": ("telegram", 211), "Chat de WhatsApp con Sergio Climent.txt": ("whatsapp", 179),
           "Chat de WhatsApp con Mamá.txt": ("whatsapp", 47), "Chat de WhatsApp con Puente Chulilla.txt": ("whatsapp", 16)}


def _prepare(out: Path, *extra: str) -> Path:
    rc = main(["--log-level", "ERROR", "prepare", str(CORPUS / "telegram"), str(CORPUS / "whatsapp"), *extra,
               "--out", str(out)])
    assert rc == 0
    return out


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("es")
    blocklist = tmp / "private.txt"
    blocklist.write_text(f"# her street\n{STREET}\n", encoding="utf-8")
    return _prepare(tmp / "data", *OWNERS, "--blocklist", str(blocklist))


def _report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text(encoding="utf-8"))


def _messages(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "messages.jsonl").read_text(encoding="utf-8").splitlines()]


def _assistant_lines(out: Path, name: str) -> list[str]:
    lines = []
    for line in (out / name).read_text(encoding="utf-8").splitlines():
        for turn in json.loads(line)["messages"]:
            if turn["role"] == "assistant":
                lines += turn["content"].split("\n")
    return lines


def _share(pattern: str, texts: list[str]) -> float:
    r = re.compile(rf"(?<!\w)(?:{pattern})(?!\w)")
    return sum(bool(r.search(t)) for t in texts) / len(texts)


def test_her_exports_read_without_a_lost_line(prepared):
    report = _report(prepared)
    by_file = {Path(i["path"]).name: i for i in report["inputs"]}
    assert {name: (i["format"], i["owner"]["owner_messages"]) for name, i in by_file.items()} == BY_FILE
    assert all(not i["errors"] and not i["skipped"] and not i.get("repaired") for i in report["inputs"])
    assert report["problems"] == []
    # WhatsApp's Spanish words: the encryption notices and the group's lines are service, <Multimedia
    # omitido> and the photos, stickers and voice messages of Telegram media, the two deletions deleted
    assert report["messages"]["dropped"] == {"media_only": 12, "service": 11, "deleted": 2, "forwarded": 2}
    assert report["messages"]["kept_owner"] == KEPT_OWNER
    assert report["sessions"]["with_owner"] == CONVERSATIONS
    assert report["examples"]["left_out_at_cut"] == 0
    text = "\n".join(m["text"] for m in _messages(prepared))
    for words in ("Multimedia omitido", "Se editó", "eliminó este mensaje", "Eliminaste", "cifrados de extremo"):
        assert words not in text
    assert "lista para el sábado:\n- cuerda de 60" in text  # a message over several lines stays whole


def test_the_readme_says_what_prepare_reports(prepared):
    readme = (CORPUS / "README.md").read_text(encoding="utf-8")
    report = _report(prepared)
    assert f"**{report['messages']['kept_owner']} of her messages in {report['sessions']['with_owner']} conversations**" in readme
    assert "--owner user8880101 --owner \"Paula Císcar\"" in readme
    for reason, n in report["messages"]["dropped"].items():
        assert f"`{reason}` {n}" in readme
    share = round(100 * report["language"]["shares"]["es"])
    assert f"Spanish ({share} % of the {report['language']['decided']} of her messages" in readme


def test_her_id_and_her_name_find_her(prepared, tmp_path):
    owner = [m for m in _messages(prepared) if m["is_owner"]]
    assert {(m["source"], m["author_id"], m["author"]) for m in owner} == {
        ("telegram", "user8880101", "Paula Císcar"), ("whatsapp", "Paula Císcar", "Paula Císcar")}
    # the id alone finds all of her in Telegram; WhatsApp has no ids and names her as the one to add
    alone = _report(_prepare(tmp_path / "id", "--owner", "user8880101"))
    by_file = {Path(i["path"]).name: i["owner"] for i in alone["inputs"]}
    assert by_file["result.json"]["owner_messages"] == BY_FILE["result.json"][1]
    for name in BY_FILE:
        if name.endswith(".txt"):
            assert by_file[name]["owner_messages"] == 0 and by_file[name]["suggested_owner"] == "Paula Císcar"


def test_her_language(prepared):
    lang = _report(prepared)["language"]
    assert lang["main"] == "es" and lang["languages"] == ["es"] and lang["shares"]["es"] >= 0.9


def test_her_markers_are_in_her_turns_not_theirs(prepared):
    messages = _messages(prepared)
    hers = [m["text"] for m in messages if m["is_owner"]]
    theirs = [m["text"] for m in messages if not m["is_owner"]]
    assert len(hers) == KEPT_OWNER
    markers = {"q": 0.25, "jajaj\\w*": 0.08, "tía": 0.04, "sii+": 0.02}  # at least this share of her messages
    for pattern, least in markers.items():
        assert _share(pattern, hers) >= least, pattern
        assert _share(pattern, theirs) <= _share(pattern, hers) / 5, pattern  # others say it (quoting her) far less
    for pattern in ("xq", "tb", "buah", "vale", "guay", "mola", "xe", "bon dia", "au"):
        assert _share(pattern, hers) > 0, pattern
    # lower case, no full stop at the end: hers, not theirs
    assert sum(t[:1].islower() for t in hers) / len(hers) >= 0.95
    assert sum(t[:1].islower() for t in theirs) / len(theirs) <= 0.4
    assert sum(t.rstrip()[-1:] in ".!?" for t in hers) / len(hers) <= 0.05
    assert sum(t.rstrip()[-1:] in ".!?" for t in theirs) / len(theirs) >= 0.4
    # and they reach the persona's turns of the training data
    turns = _assistant_lines(prepared, "train.jsonl") + _assistant_lines(prepared, "val.jsonl")
    assert len(turns) == sum(t.count("\n") + 1 for t in hers)  # every one of her lines, once
    for pattern, least in markers.items():
        assert _share(pattern, turns) >= least, pattern


def test_her_held_out_turns_say_enough_to_measure(prepared):
    held_out = _assistant_lines(prepared, "val.jsonl")
    assert sum(len(t.split()) >= 8 for t in held_out) >= 40
    hers = [m["text"] for m in _messages(prepared) if m["is_owner"]]
    assert sum(len(t.split()) <= 5 for t in hers) >= 0.25 * len(hers)  # and she still writes in bursts


def _planted() -> dict[str, list[str]]:
    return json.loads((CORPUS / "planted_pii.json").read_text(encoding="utf-8"))


def test_every_planted_value_is_in_her_exports():
    exports = "\n".join(p.read_text(encoding="utf-8") for p in sorted(CORPUS.glob("*/*")) if p.suffix in (".json", ".txt"))
    assert [v for values in _planted().values() for v in values if v not in exports] == []


def _leaks(out: Path, values: list[str]) -> dict[str, list[str]]:
    found = {}
    for name in OUTPUTS:
        text = (out / name).read_text(encoding="utf-8")
        if hits := [v for v in values if v.casefold() in text.casefold() or re.sub(r"\s", "", v) in text]:
            found[name] = hits
    return found


def test_her_mail_and_account_are_scrubbed(prepared):
    planted = _planted()
    assert _leaks(prepared, planted["email"] + planted["iban"] + ["+34 655 21 48 37"]) == {}


def test_spanish_phones_and_national_ids_are_scrubbed(prepared):
    """The national forms of issue 49: '655 21 48 37' without +34, the DNI and the NIE with their check letters."""
    planted = _planted()
    assert _leaks(prepared, planted["phone"] + planted["es_dni"] + planted["es_nie"]) == {}
    replaced = _report(prepared)["pii_replaced"]["texts"]
    assert replaced["es_dni"] == 2 and replaced["es_nie"] == 1


def test_her_street_goes_with_the_blocklist(prepared):
    assert _leaks(prepared, _planted()["address"]) == {}
