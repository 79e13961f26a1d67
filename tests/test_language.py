"""host_training/language.py: which language a text is in, and which a person writes."""

from __future__ import annotations

import tomllib
from importlib.resources import files

import pytest

from host_training import language as L


@pytest.mark.parametrize("text, code", [
    ("mücke sitzt auf meinem laptop und ich darf nix machen", "de"),
    ("bin dabei", "de"),
    ("Das ist ja toll! Ich bin stolz auf dich.", "de"),
    ("I thought you'd been eaten by a theatre", "en"),
    ("it is. hello Jonas", "en"),
    ("je pense que oui, c'est pas grave", "fr"),
    ("el gato está en la mesa", "es"),
    ("não sei, você vem amanhã?", "pt"),
    ("de kat zit op de tafel", "nl"),
    ("katten sitter på bordet och det är bra", "sv"),
    ("nie wiem, czy jutro będę", "pl"),
    ("Привет, как дела? Что нового?", "ru"),
    ("Привіт, як справи? Дякую", "uk"),
    ("今日は天気がいいです", "ja"),
    ("我今天很好", "zh"),
    ("안녕하세요", "ko"),
    ("Γεια σου", "el"),
])
def test_detects_the_language_of_a_message(text, code):
    assert L.detect(text) == code


@pytest.mark.parametrize("text", ["haha", "ok", "ja digga", "😂😂", "", "12:30", "safe"])
def test_a_text_that_says_too_little_is_undecided(text):
    # "ja" is German, Swedish, Danish, Norwegian ... alike; "digga", "haha" are in no list
    assert L.detect(text) is None


def test_close_languages_are_not_guessed_when_they_tie():
    # "ja" and "og" alone: Danish and Norwegian share them
    assert L.detect("ja og") is None
    assert L.decide({"da": 2.0, "nb": 1.9}) is None
    assert L.decide({"da": 2.0, "nb": 1.0}) == "da"
    assert L.decide({"de": 0.5}) is None  # below MIN_SCORE


def test_a_persons_profile_pools_their_words_and_shares_the_decided_texts():
    texts = ["haha", "ja digga", "bin dabei", "ich hab keine ahnung ey", "mücke is bei der nachbarin",
             "safe", "see you at the station", "was geht heute abend", "ok"]
    p = L.profile(texts)
    assert p.main == "de"
    assert p.texts == 9 and p.decided == 5
    assert p.counts == {"de": 4, "en": 1}
    assert p.share("de") == pytest.approx(0.8)
    assert p.languages == ["de"]  # one English text is not a second language (MIN_TEXTS)
    assert "German (de) in 80 % of the 5 of 9 texts" in p.text()


def test_a_second_language_counts_when_it_is_a_real_share():
    de = ["ich bin heute müde und hab keine lust"] * 12
    en = ["I am not sure this is the right train"] * 6
    p = L.profile(de + en)
    assert p.languages == ["de", "en"]
    back = L.from_record(p.record())
    assert back is not None and back.main == "de" and back.languages == ["de", "en"]
    assert L.from_record({"nonsense": 1}) is None and L.from_record(None) is None


def test_nothing_to_tell_is_said_plainly():
    p = L.profile(["haha", "ok", "👍"])
    assert p.main is None and p.languages == []
    assert p.text().startswith("undetermined")
    assert L.name(None) == "undetermined" and L.name("de") == "German" and L.name("xx") == "xx"


def test_system_prompts_hold_the_name_in_the_owners_language():
    assert L.system_prompt("de", "Jannik").startswith("Du bist Jannik")
    assert L.system_prompt("en", "Ada").startswith("You are Ada")
    assert L.system_prompt("el", "Eleni") is None  # none written for Greek: the caller says so
    assert L.system_prompt(None, "Ada") is None


def test_the_shipped_table_loads_and_bad_entries_are_named():
    with files("host_training").joinpath("data", L.LANGUAGES_FILE).open("rb") as f:
        table = L.load_table(tomllib.load(f))
    assert {"en", "de", "fr", "es", "ru", "ja"} <= set(table)
    with pytest.raises(L.LanguageTableError, match=r"\[xx\]: system_prompt must hold \{name\}"):
        L.load_table({"xx": {"name": "X", "words": "a b", "system_prompt": "no name here"}})
    with pytest.raises(L.LanguageTableError, match=r"\[xx\]: script 'Klingon'"):
        L.load_table({"xx": {"name": "X", "script": "Klingon"}})
    with pytest.raises(L.LanguageTableError, match=r"\[xx\]: a language in Latin script needs its words"):
        L.load_table({"xx": {"name": "X"}})
    with pytest.raises(L.LanguageTableError, match=r"\[xx\]: unknown entry 'word'"):
        L.load_table({"xx": {"name": "X", "word": "a"}})
