"""The judging page in the owner's language: host_training/data/judge_words.toml through
judge/words.py into judge/page.py. Every table complete; a Spanish owner's page Spanish, script
words included; a language without a table English, never another language's."""

from __future__ import annotations

import re
from html import unescape

import pytest

from host_training.judge import page as judge_page
from host_training.judge.page import Pair, render_page
from host_training.judge.words import FALLBACK, WordsTableError, fill, load_tables, page_words, tables

REQUIRED = ("en", "de", "es", "fr", "it", "pt", "nl")  # the languages stratoecho's personas are built in
PAIRS = [Pair("1", (("Lucía", "¿Qué tal el vuelo?"),), "genial, mucho frío", "sii, q me ha encantado"),
         Pair("2", (("Lucía", "¿y el perro?"),), "dormido jajaj", "bien")]


def page(language: str | None) -> str:
    return render_page(persona="Marta", page="p" * 16, model_sha256="m" * 64, data_sha256="d" * 64, pairs=PAIRS,
                       marker="[…]", language=language)


def visible_and_said(html: str) -> str:
    """The page's words as a person reads them: markup, the style and the script left out."""
    html = re.sub(r"<(style|script)\b.*?</\1>", "", html, flags=re.S)
    labels = " ".join(re.findall(r'aria-label="([^"]*)"', html))  # read out to a screen reader's user
    return unescape(re.sub(r"<[^>]+>", " ", html) + " " + labels)


def words_of(text: str) -> str:
    return re.sub(r"\{\w+\}", "", text).strip()


def test_every_required_language_has_a_complete_table():
    assert set(REQUIRED) <= set(tables())
    for code, words in tables().items():
        assert set(words) == set(tables()[FALLBACK]), code


def test_a_spanish_owners_page_is_spanish():
    html = page("es")
    es, en, de = tables()["es"], tables()["en"], tables()["de"]
    assert '<html lang="es">' in html
    assert "<title>¿Cuál de las dos escribió Marta?</title>" in html
    assert "<legend>¿Cuál de las dos escribió Marta?</legend>" in html and "<h2>1 de 2</h2>" in html
    assert '<strong id="done">0</strong> de 2 respondidas' in html
    read = visible_and_said(html)
    for key, text in es.items():
        for piece in re.split(r"\{\w+\}", text) if key != "someone" else ():  # someone: cli.py's (below)
            assert piece.strip() in read, (key, piece)  # every Spanish entry, the script's too
    for key, text in en.items():
        assert words_of(text) not in read, key  # no English left
    assert words_of(de["title"]) not in read and words_of(de["cant_tell"]) not in read


def test_a_speaker_without_a_name_is_someone_in_the_pages_language():
    from host_training.judge.cli import context_lines

    context = [{"role": "user", "name": "", "content": "¿y el perro?"}, {"role": "assistant", "content": "dormido"}]
    assert context_lines(context, "Marta", tables()["es"]["someone"]) == (("Alguien", "¿y el perro?"), ("Marta", "dormido"))


@pytest.mark.parametrize("language", ["sv", "", None, "xx"])
def test_a_language_without_a_table_gets_english_never_german(language):
    html = page(language)
    read = visible_and_said(html)
    assert '<html lang="en">' in html and "Which one did Marta write?" in read
    for other in ("de", "es"):
        assert words_of(tables()[other]["save"]) not in read


@pytest.mark.parametrize("language", REQUIRED)
def test_every_language_runs_the_one_script_the_page_allows(language):
    html = page(language)
    assert re.findall(r"<script>(.*?)</script>", html, flags=re.S) == [judge_page.SCRIPT]
    assert judge_page.script_hash() in html
    for key in judge_page.SCRIPT_WORDS:  # what the script says is in the page, hidden, as text
        assert f'<span id="say-{key}">' in html and f'say("{key}"' in judge_page.SCRIPT


@pytest.mark.parametrize("language", REQUIRED)
def test_no_words_inside_a_card_hint_which_reply_is_real(language):
    words = tables()[language]
    inside = " ".join(words[k] for k in ("title", "pair_number", "cant_tell"))
    assert not re.search(r"owner|real|persona|case|generated|model", inside, flags=re.I)


def test_the_persona_name_and_the_words_are_escaped():
    html = render_page(persona='<img src=x onerror="1">', page="p", model_sha256="m", data_sha256="d", pairs=PAIRS,
                       marker="<cut>", language="fr")
    assert "<img" not in html and "&lt;img src=x onerror=&quot;1&quot;&gt;" in html and "&lt;cut&gt;" in html


def test_page_words_falls_back_and_ignores_case():
    assert page_words("ES")[0] == "es" and page_words("pt")[0] == "pt"
    assert page_words("sv") == ("en", tables()["en"])


def test_fill_leaves_fields_it_is_not_given():
    assert fill("{n} de {count}", n=3) == "3 de {count}"


@pytest.mark.parametrize(
    ("table", "says"),
    [
        ({"es": {"title": "x"}}, r"no \[en\] table"),
        ({"en": {"title": "{name}", "save": "s"}, "es": {"title": "{name}"}}, r"\[es\] lacks save"),
        ({"en": {"title": "{name}"}, "es": {"title": "{name}", "extra": "x"}}, r"\[es\] has no use for extra"),
        ({"en": {"title": "{name}"}, "es": {"title": "¿Cuál escribió?"}}, r"\[es\] title has the fields \[\]"),
        ({"en": {"title": "{name}"}, "es": {"title": "{nombre}"}}, r"\['nombre'\], \[en\] \['name'\]"),
        ({"en": {"title": "{name}"}, "es": {"title": "{name"}}, r"\[es\] title: "),
        ({"en": {"title": "{name}"}, "es": {"title": " "}}, r"\[es\] title is not a text"),
        ({"en": {"title": "{name}"}, "es": "x"}, r"\[es\] is not a table"),
    ],
)
def test_a_broken_table_is_named(table, says):
    with pytest.raises(WordsTableError, match=says):
        load_tables(table)
