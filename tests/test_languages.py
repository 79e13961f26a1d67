"""One file of words per language (stratoecho/languages/, issue 49 item 4): every file loads and is
held to its own claim words; a malformed one is refused naming the file and the key; a language
without a file is asked in its figures and read on its numbers (CLDR), never in English or German;
and the payload says so on the terminal when it starts."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from payload.persona.memory import MemoryEntry
from payload.persona.prompts import PromptContext, build_prompt, describe, question
from payload.persona.reach import Outcome, OutcomeKind
from payload.persona.reach import describe as describe_outcome
from payload.persona.wording import unguarded, wording
from stratoecho.bundle import load_bundle
from stratoecho.claim_words import GUARDED, claim_words
from stratoecho.languages import (
    CLAUSE_FIGURES,
    PHASES,
    SITUATIONS,
    LanguageFileError,
    clause_wordings,
    codes,
    language,
    read_language,
    situation_words,
)
from stratoecho.musing_claims import MusingFacts, claims
from tests.test_musing_language import bundle_in
from tests.test_prompt_context import NOON, readings

ROOT = Path(__file__).resolve().parent.parent
WRITTEN = ("en", "de", "es", "fr", "it", "pt", "nl")
WITHOUT_FILE = ("sv", "pl")


def test_the_languages_written_have_files_that_load():
    assert set(codes()) >= set(WRITTEN) and set(GUARDED) == set(codes())
    for code in WRITTEN:
        lang = language(code)
        assert lang.code == code and tuple(lang.situations) == SITUATIONS and set(lang.clauses) == set(CLAUSE_FIGURES)
        assert situation_words(code) == dict(lang.situations) and clause_wordings(code) == dict(lang.clauses)
    assert language("de-AT").code == "de" and language("sv") is None
    assert situation_words("sv") == {} and clause_wordings("sv") == {}


# ----------------------------------------------------------------------------- clauses


def fill(template: str, code: str, alt_m: float, temp_c: float, aloft_s: float) -> str:
    """A clause with its figure, written as the payload writes it (payload/persona/clauses.py)."""
    w = wording(code)
    return template.format(km=w.number(alt_m / 1000, 1), m=str(int(round(alt_m, -2))),
                           deg=f"{w.number(int(round(temp_c)), 0)} °C", minutes=str(round(aloft_s / 60)),
                           hours=w.number(aloft_s / 3600, 1))


def clause_cases():
    for code in WRITTEN:
        for key, texts in language(code).clauses.items():
            for text in texts:
                yield code, key, text


@pytest.mark.parametrize("code, key, template", list(clause_cases()))
def test_every_clause_filled_from_the_facts_is_a_true_claim_of_its_kind(code, key, template):
    """The invariant another engineer builds on: a clause the program writes from the facts is read
    by its own language's claim words as a true claim of its kind, and as a false one when the
    facts are another flight's."""
    kind = {"time_aloft_hours": "time_aloft", **{p: "phase" for p in PHASES}}.get(key, key)
    alt = 850.0 if "{m}" in template else 12_400.0
    aloft = 9_360.0 if key == "time_aloft_hours" else 2_400.0
    phase = key if key in PHASES else "ascent"
    text = fill(template, code, alt, -41.0, aloft)
    assert len(text) <= 48 and template == template.lower(), text
    true = MusingFacts(phase=phase, alt_m=alt, temp_c=-41.0, aloft_s=aloft, sun_up=True, language=code)
    said = claims(text, true)
    assert [c.kind for c in said] == [kind] and all(c.true for c in said), (text, said)
    others = ([MusingFacts(phase=p, alt_m=alt, temp_c=-41.0, aloft_s=aloft, language=code) for p in PHASES if p != phase]
              if kind == "phase" else
              [MusingFacts(phase=phase, alt_m=alt * 2, temp_c=-11.0, aloft_s=aloft * 3, language=code)])
    for other in others:
        assert [(c.kind, c.true) for c in claims(text, other)] == [(kind, False)], (text, other)


# ----------------------------------------------------------------------------- everyday words


EVERYDAY = {
    "es": ["buenas noches a todos", "al menos 20 km de cola", "más o menos 20 km", "bajo la lluvia", "mi 3º vuelo"],
    "fr": ["ça tombe bien", "bonne nuit les amis", "au moins 20 km de bouchons", "ça tombe à pic", "c'est ça"],
    "it": ["alle 5 mi sveglio", "buonanotte a tutti", "star bene è tutto", "più o meno 20 km", "il 3º volo"],
    "pt": ["boa noite gente", "pelo menos 20 km de fila", "mais ou menos 20 km", "o 3º voo"],
    "nl": ["in ieder geval leuk", "goede nacht allemaal", "star van de kou", "min of meer goed"],
}


@pytest.mark.parametrize("code, text", [(c, t) for c, ts in EVERYDAY.items() for t in ts])
def test_everyday_words_are_no_false_claims(code, text):
    """"buenas noches" (a farewell), "al menos 20 km" (at least), "ça tombe bien" (that suits), "mi"
    (me), "star" (stiff in Dutch), "3º" (an ordinal): nothing false is read of the flight in them."""
    f = MusingFacts(phase="ascent", alt_m=20_000, temp_c=-50.0, sun_up=True, language=code)
    assert [c for c in claims(text, f) if not c.true] == [], text


# ----------------------------------------------------------------------------- without a file


@pytest.mark.parametrize("code", WITHOUT_FILE)
def test_a_language_without_a_file_is_judged_on_its_numbers_and_units(code):
    """Swedish and Polish have no file: their numbers are read with CLDR's marks (a decimal comma,
    a no-break space between thousands, a minus sign) and their units with CLDR's names."""
    assert claim_words(code).code == code and code not in GUARDED
    at = MusingFacts(phase="ascent", alt_m=12_400, temp_c=-41.0, batt_v=3.9, pressure_hpa=190.0, language=code)
    long_km = {"sv": "12,4 kilometer", "pl": "12,4 kilometra"}[code]
    for text, kind in (("12,4 km", "altitude"), (long_km, "altitude"), ("12\u00a0400 m", "altitude"),
                       ("\u221241 °C", "temperature"), ("3,9 V", "battery"), ("190 hPa", "pressure")):
        assert [(c.kind, c.true) for c in claims(text, at)] == [(kind, True)], text
    away = MusingFacts(phase="ascent", alt_m=30_000, temp_c=5.0, batt_v=3.1, pressure_hpa=12.0, language=code)
    for text, kind in (("12,4 km", "altitude"), ("\u221241 °C", "temperature"), ("3,9 V", "battery"),
                       ("190 hPa", "pressure")):
        assert [(c.kind, c.true) for c in claims(text, away)] == [(kind, False)], text
    # No words of any language are read in it: English's "cold", German's "Sonne" say nothing here.
    assert claims("cold sun nacht kalt, 80 %", at) == []


def test_a_language_without_a_file_is_asked_in_its_own_figures():
    r = readings(alt_m=6_512.0, temp_c=-30.2, pressure_hpa=440.0, batt_mv=3_904)
    assert describe(r, "ascent", "low_power", aloft_s=5_340, language="sv") == \
        "6,5 km, −30 °C, 440 hPa, 3,90 V, 89 minuter"
    assert describe(r, "ascent", aloft_s=3 * 3600 + 600, language="sv").endswith("3,2 timmar")
    assert describe(r, "descent", aloft_s=5_340, language="pl").endswith("89 minut")
    assert question(2, "ascent", figure=True, language="sv") == "" and wording("sv").words is False
    silent = Outcome("weather", "52.6,-2.7", OutcomeKind.SILENT_LINK, "", 0.0, attempts=2)
    assert describe_outcome(silent, "sv") == ""  # no words for it: left out, not said in English
    assert describe_outcome(Outcome("news", "headlines", OutcomeKind.OK, "Regn i Malmö", 0.0), "sv") == "Regn i Malmö"


# ----------------------------------------------------------------------------- no German for a third language


def _german_pieces() -> set[str]:
    de = language("de")
    texts = [*de.prompt.model_dump(exclude={"recall"}).values(), de.questions.plain, *de.questions.aloft,
             *(q for qs in de.questions.phase.values() for q in qs), *de.outcomes.asked.values(),
             *de.outcomes.topic.values(), *de.outcomes.result.values(), *de.outcomes.times, de.outcomes.times_more]
    flat = [t for x in texts for t in (x.values() if isinstance(x, dict) else [x])]
    pieces = {p.strip(" ()-:,.") for t in flat for p in re.split(r"\{\w+\}", t)}
    return {p for p in pieces if len(p) >= 5 and p not in ("GPS-Fix",)}


@pytest.mark.parametrize("code", ("en", "es", "fr", "it", "pt", "nl") + WITHOUT_FILE)
def test_no_german_line_is_served_to_another_language(code):
    memories = [MemoryEntry("note", "hola", NOON.replace(hour=9), None, None, "uplink", 1),
                MemoryEntry("musing", "hej", NOON.replace(hour=11, minute=40), 1, 2, "self", 2)]
    lines = [describe_outcome(Outcome(api, "q", kind, "", 0.0, attempts=n), code)
             for api in ("weather", "news", "define", "tides") for kind in OutcomeKind for n in (1, 2, 12)]
    told = []
    for phase in PHASES:
        for mode in ("low_power", "survival", "nominal"):
            for fix in (True, False):
                ctx = PromptContext(phase=phase, mode=mode, memories=memories, outcomes=lines[:3], aloft_s=9_000,
                                    question=question(1, phase, figure=True, language=code), language=code)
                told.append(build_prompt("system", readings(fix_valid=fix), ctx, 4_000).messages[1]["content"])
    text = "\n".join(told + lines)
    found = sorted(p for p in _german_pieces() if p in text)
    assert found == [], found


# ----------------------------------------------------------------------------- a malformed file


def test_a_malformed_language_file_is_refused_naming_the_file_and_the_key(tmp_path):
    source = (ROOT / "stratoecho/languages/en.toml").read_text(encoding="utf-8")
    bad = tmp_path / "en.toml"
    bad.write_text(source.replace("cold = 'cold|colder", "cold = '(cold|colder", 1), encoding="utf-8")
    with pytest.raises(LanguageFileError) as e:
        read_language(bad)
    assert str(bad) in str(e.value) and "claims.cold" in str(e.value) and "regular expression" in str(e.value)
    bad.write_text(re.sub(r"(?m)^wind = \[.*\]$", "", source, count=1), encoding="utf-8")
    with pytest.raises(LanguageFileError, match=r"situations.*missing wind"):
        read_language(bad)
    bad.write_text(source.replace('altitude = ["{km} km up and"', 'altitude = ["up and"', 1), encoding="utf-8")
    with pytest.raises(LanguageFileError, match=r"clauses.altitude: expected \{km\} or \{m\}"):
        read_language(bad)
    bad.write_text(source.replace('up = "{km} km up"', 'up = "km up"', 1), encoding="utf-8")
    with pytest.raises(LanguageFileError, match=r"prompt.up: expected text with \{km\}"):
        read_language(bad)
    bad.write_text(source + "\n[extra]\n", encoding="utf-8")
    with pytest.raises(LanguageFileError, match=r"\[extra\] Extra inputs are not permitted"):
        read_language(bad)
    (tmp_path / "xx.toml").write_text(source, encoding="utf-8")
    with pytest.raises(LanguageFileError, match=r"xx.toml: \[code\] is 'en'"):
        read_language(tmp_path / "xx.toml")
    (tmp_path / "en.toml").write_text("code = \n", encoding="utf-8")
    with pytest.raises(LanguageFileError, match="not valid TOML"):
        read_language(tmp_path / "en.toml")


# ----------------------------------------------------------------------------- the warning


def test_the_warning_for_a_language_without_a_file_says_what_is_read():
    assert unguarded("de") is None and unguarded("") is None and unguarded(None) is None
    note = unguarded("sv")
    assert "Swedish (sv)" in note and "numbers and units" in note and "stratoecho/languages/sv.toml" in note
    assert "English" in unguarded("xx")


@pytest.fixture
def swedish_bundle(tiny_bundle, tmp_path):
    return bundle_in("sv", tiny_bundle, tmp_path)


def test_a_persona_of_a_language_without_a_file_is_told_of_in_the_log_and_on_the_terminal(tmp_path, swedish_bundle):
    from tests.test_payload import _daemon

    with capture_logs() as logs:
        _daemon(tmp_path, load_bundle(swedish_bundle))
    said = [e for e in logs if e["event"] == "persona_language_unguarded"]
    assert [(e["log_level"], e["language"], e["reads"]) for e in said] == [("warning", "sv", "numbers and units")]
    proc = subprocess.run(
        [sys.executable, "-m", "payload", "run", "--sim", "--persona", str(swedish_bundle), "--data",
         str(tmp_path / "p"), "--speedup", "300", "--minutes", "0.2", "--drain-s", "0"],
        capture_output=True, text=True, timeout=240, cwd=ROOT, env={**os.environ, "STRATOECHO_LOG_JSON": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    plain = [line for line in proc.stderr.splitlines() if not line.startswith("{")]
    assert any(line.startswith("warning: the persona writes Swedish (sv)") for line in plain), proc.stderr[-2000:]
