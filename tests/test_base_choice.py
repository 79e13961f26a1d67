"""host_training/base/base_choice.py: the base that writes the owner's language, and the warning."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from host_training import language as L
from host_training.base import base_choice as B


@dataclass(frozen=True)
class FakePin:
    name: str
    q4_k_m_bytes: int
    languages: tuple[str, ...]
    gguf_sha256: str = ""

    def writes(self, code: str) -> bool:
        return "*" in self.languages or code in self.languages


PINS = {p.name: p for p in (FakePin("small-en", 100, ("en",)), FakePin("big-many", 250, ("*",), "ab" * 32),
                            FakePin("mid-de", 200, ("en", "de")))}


def german() -> L.Profile:
    return L.Profile("de", {"de": 100}, 150, 100)


def test_the_smallest_base_that_writes_every_language_is_recommended():
    assert B.recommend(["en"], PINS) == "small-en"
    assert B.recommend(["de"], PINS) == "mid-de"
    assert B.recommend(["de", "fr"], PINS) == "big-many"
    assert B.recommend(["de"], {"small-en": PINS["small-en"]}) is None


def test_whether_a_base_writes_it_by_pin_sha_or_family():
    assert B.writes("small-en", ["de"], PINS) is False
    assert B.writes("big-many", ["de"], PINS) is True
    assert B.writes("/models/some.gguf", ["de"], PINS, sha256="ab" * 32) is True  # a pin's file under another name
    assert B.writes("/models/SmolLM2-360M-Instruct", ["de"], PINS) is False
    assert B.writes("/models/gemma-3-1b-pt", ["de"], PINS) is True
    assert B.writes("/models/my-own-model", ["de"], PINS) is None


def test_the_warning_is_plain_and_names_the_base_that_writes_it():
    note = B.language_note(german(), "small-en", False, "mid-de")
    assert note.startswith("the base small-en does not write German (de), which the owner writes")
    assert "--base mid-de writes it" in note
    unknown = B.language_note(german(), "/models/my-own-model", None, "mid-de")
    assert "is not known here" in unknown
    # nothing to say: it writes it; English on an unknown base; from scratch; no language recorded
    assert B.language_note(german(), "mid-de", True, "mid-de") is None
    assert B.language_note(L.Profile("en", {"en": 9}, 9, 9), "/m/x", None, "small-en") is None
    assert B.language_note(german(), None, None, "mid-de") is None
    assert B.language_note(None, "small-en", False, None) is None


def test_the_owners_language_is_read_from_prepares_report(tmp_path):
    assert B.owner_language(tmp_path) is None  # no report.json
    (tmp_path / "report.json").write_text(json.dumps({"language": L.profile(["ich bin heute müde"] * 6).record()}))
    p = B.owner_language(tmp_path)
    assert p is not None and p.languages == ["de"]
    (tmp_path / "report.json").write_text("{not json")
    assert B.owner_language(tmp_path) is None


def german_data(tmp_path):
    (tmp_path / "report.json").write_text(json.dumps({"language": L.profile(["ich bin heute müde"] * 6).record()}))
    return tmp_path


def test_build_records_the_owners_language_and_warns_before_training(tmp_path):
    data = german_data(tmp_path)
    scratch = B.check(data, "from-scratch", None)
    assert scratch == {"owner": ["de"], "base_writes": None, "note": None}  # it writes what its data is in
    english = B.check(data, "lora", "smollm2-135m-instruct")
    assert english["base_writes"] is False
    assert english["note"].startswith("the base smollm2-135m-instruct does not write German (de)")
    gemma = B.check(data, "continue", tmp_path / "parent" / "model", parent_base="Gemma 3 270M")
    assert gemma["base_writes"] is True and gemma["note"] is None


def test_base_recommended_resolves_from_the_data(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(B, "_pins", lambda: PINS)
    with pytest.raises(B.NoBaseError, match="says no language"):
        B.recommended_base(tmp_path)  # no report.json: nothing to recommend
    assert str(B.recommended_base(german_data(tmp_path))) == "mid-de"
    assert "the owner writes German: building on mid-de" in capsys.readouterr().err


def test_the_default_system_prompt_is_in_the_owners_language():
    from host_training.pipeline.stages import SYSTEM_PROMPT, default_system_prompt

    assert default_system_prompt("de", "Jannik").startswith("Du bist Jannik und fliegst")
    assert default_system_prompt("en", "Ada") == SYSTEM_PROMPT.format(name="Ada")
    assert default_system_prompt(None, "Ada") == SYSTEM_PROMPT.format(name="Ada")
    assert default_system_prompt("el", "Eleni") == SYSTEM_PROMPT.format(name="Eleni")  # none written: English
