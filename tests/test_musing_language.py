"""Musings in the owner's language (issue 40, item 4): a German persona is asked in German, with
its figures written as German writes them, and the truth guard reads its German claims — false
ones of every kind caught, true ones passed — so nothing a German persona says airs unchecked.
The German musings are in the sample German owner's own manner (samples/corpus_de): lower case,
no full stop."""

from __future__ import annotations

import re
import shutil
from datetime import timedelta

import pytest
from structlog.testing import capture_logs

from payload.persona import truth
from payload.persona.memory import MemoryEntry
from payload.persona.prompts import PromptContext, build_prompt, cut_prompt_echo, describe, memory_query, question
from payload.persona.reach import Outcome, OutcomeKind
from payload.persona.reach import describe as describe_outcome
from payload.persona.wording import DE
from payload.persona.worker import Generation
from stratoecho.bundle import load_bundle
from stratoecho.claim_words import GUARDED, claim_words
from stratoecho.musing_claims import MusingFacts, Request, claims
from tests.test_payload import _daemon
from tests.test_prompt_context import NOON, readings

# Rising through 6.5 km an hour and a half after launch, at -30 °C, drifting east at 97 km/h, by day.
FLIGHT = MusingFacts(phase="ascent", alt_m=6500, temp_c=-30.0, box_temp_c=4.0, pressure_hpa=440.0, batt_v=3.9,
                     sun_up=True, aloft_s=5400, speed_kmh=97.0, rate_m_s=5.0, distance_km=40.0, battery_share=0.8,
                     language="de")

FALSE = {
    "time_aloft": ["bin schon seit 28 stunden in der luft", "seit 12 jahren unterwegs hier oben digga",
                   "vor 5 minuten gestartet", "10 stunden in der luft haha"],
    "altitude": ["bin 20 km hoch", "die box ist auf 150 kilometern", "jetzt 12,4 km hoch", "bin auf 30.000 metern"],
    "distance": ["bin 300 km weit abgetrieben", "nur 2 km vom start"],
    "temperature": ["hier sind 39 grad", "angenehme 20 °C", "minus 5 grad draußen"],
    "warm": ["es ist so heiß hier oben", "echt warm hier"],
    "phase": ["ich sinke langsam am fallschirm", "endlich gelandet", "geht's jetzt runter"],
    "speed": ["wind mit 50 km/h von osten", "so 20 kilometer pro stunde", "300 sachen"],
    "battery": ["handy nur noch 10 %", "akku bei 3,1 v", "akku 20 prozent"],
    "pressure": ["der druck ist 1013 hpa"],
    "sun": ["die sterne sind raus", "mitten in der nacht hier"],
    "request": ["keiner hat geantwortet"],
}
TRUE = {
    "time_aloft": ["seit anderthalb stunden in der luft", "vor 90 minuten gestartet", "vor 1,5 stunden gestartet"],
    "altitude": ["so 6 km hoch", "6,5 km hoch über den feldern", "6.500 meter"],
    "distance": ["40 km abgetrieben", "35 km vom start"],
    "temperature": ["-30 grad draußen", "minus 28 °C", "30 grad unter null"],
    "cold": ["voll kalt hier digga", "ich frier mir alles ab, eisig"],
    "phase": ["ich steige immer weiter", "am steigen haha"],
    "speed": ["mit 90 km/h unterwegs", "5 m/s nach oben"],
    "battery": ["akku bei 3,9 v", "akku 80 %"],
    "pressure": ["nur noch 440 hPa"],
    "sun": ["die sonne knallt", "voll im sonnenschein"],
}


@pytest.mark.parametrize("kind, text", [(k, t) for k, texts in FALSE.items() for t in texts])
def test_every_false_german_claim_is_caught(kind, text):
    said = claims(text, FLIGHT)
    assert [c.kind for c in said if not c.true] == [kind], said
    assert truth.judge(text, FLIGHT).text is None


@pytest.mark.parametrize("kind, text", [(k, t) for k, texts in TRUE.items() for t in texts])
def test_every_true_german_claim_passes(kind, text):
    said = claims(text, FLIGHT)
    assert [c.kind for c in said] == [kind] and all(c.true for c in said), said
    assert truth.judge(text, FLIGHT).text == text


def test_german_everyday_words_are_no_claims():
    """"auf jeden Fall" (in any case), "falls" (if), "mir fällt auf" (I notice), "gute Nacht" (a
    farewell), "um 12 Uhr", a Sonnenuntergang: none of them claims anything of the flight."""
    for text in ("auf jeden fall geil hier", "falls ihr mich hört, hallo", "mir fällt auf dass alles still ist",
                 "gute nacht mücke", "um 12 uhr gehts los mit kaffee", "der sonnenuntergang war krass",
                 "einsteigen bitte"):
        assert claims(text, FLIGHT) == [], text


def test_the_number_is_read_as_the_language_writes_it():
    at_12k = MusingFacts(alt_m=12_400, temp_c=-55.0, language="de")
    assert [(c.kind, c.true) for c in claims("jetzt 12,4 km hoch", at_12k)] == [("altitude", True)]
    assert [(c.kind, c.true) for c in claims("fast 12.400 m", at_12k)] == [("altitude", True)]
    english = MusingFacts(alt_m=12_400)  # "12,4" is no English number: no claim, not a wrong one
    assert claims("now 12,4 km up", english) == [] and claims("12,400 m up", english)[0].true
    assert claims("12.400 m", english)[0].true is False  # twelve metres and a bit, in English


def test_a_german_persona_slipping_into_english_is_read_too():
    said = claims("voll cold hier, the sun is out", FLIGHT)
    assert sorted((c.kind, c.true) for c in said) == [("cold", True), ("sun", True)]
    assert claims("I've been up for 28 hours", FLIGHT)[0].true is False


def test_the_german_prompt_says_the_readings_as_the_guard_reads_them_back():
    """Every figure the German prompt tells is a true claim when the persona repeats it."""
    r = readings(alt_m=6_512.0, temp_c=-30.2, pressure_hpa=440.0, batt_mv=3_904)
    said = describe(r, "ascent", "low_power", aloft_s=5_340, language="de")
    assert said == ("am Steigen, 6,5 km hoch, -30 °C draußen, 440 hPa, Akku 3,90 V, im Stromsparmodus, "
                    "in der Sonne, vor 89 Minuten gestartet")
    told = claims(said, FLIGHT)
    assert {c.kind for c in told} >= {"phase", "altitude", "temperature", "pressure", "battery", "sun", "time_aloft"}
    assert all(c.true for c in told), told
    hours = describe(r, "ascent", aloft_s=3 * 3600 + 600, language="de")
    assert hours.endswith("vor 3,2 Stunden gestartet")
    aloft = [c for c in claims(hours, MusingFacts(aloft_s=3 * 3600 + 600, language="de")) if c.kind == "time_aloft"]
    assert [c.true for c in aloft] == [True]


def test_the_whole_german_prompt_memories_outcomes_and_question():
    memories = [MemoryEntry("note", "Mücke grüßt dich", NOON - timedelta(hours=3), None, None, "uplink", 1),
                MemoryEntry("musing", "so still hier oben", NOON - timedelta(minutes=20), 1, 2, "self", 2)]
    silent = describe_outcome(Outcome("weather", "52.6,-2.7", OutcomeKind.SILENT_LINK, "", 0.0, attempts=2), "de")
    assert silent == "nach dem Wetter bei 52.6,-2.7 gefragt (zweimal): niemand hat geantwortet"
    ctx = PromptContext(phase="ascent", memories=memories, outcomes=[silent], aloft_s=5_340,
                        question=question(1, "ascent", language="de"), language="de")
    p = build_prompt("Du bist Jannik.", readings(), ctx, max_prompt_chars=2_000)
    user = p.messages[1]["content"]
    assert user.splitlines() == [
        "Gerade bist du am Steigen, 21,4 km hoch, -55 °C draußen, 46 hPa, Akku 3,81 V, in der Sonne, "
        "vor 89 Minuten gestartet.",
        "Du erinnerst dich:", "- die Bodenstation sagte dir (vor 3 Std.): Mücke grüßt dich",
        "- du dachtest (vor 20 Min.): so still hier oben",
        "Als du zuletzt nachgefragt hast:", f"- {silent}",
        "Was siehst du hier oben?"]
    assert claims(silent, MusingFacts(requests=(Request("weather", "silent_link"),), language="de"))[0].true
    # Without room, the plain German question is asked, not the English one.
    small = build_prompt("Du bist Jannik.", readings(), ctx, max_prompt_chars=120)
    assert small.question == DE.question and small.messages[1]["content"].endswith(DE.question)
    assert question(0, "ascent", figure=True, language="de") == "Steigst du noch?"
    assert "wolken" in memory_query(readings(alt_m=8_000.0), "ascent", language="de").split()
    # The persona writing the prompt's German memory list on is cut there.
    assert cut_prompt_echo("ganz still hier - die Bodenstation sagte dir (vor 3 Std.): nix", language="de") == \
        "ganz still hier"


def test_a_language_without_a_file_is_asked_in_its_figures_never_in_english():
    """Swedish has no file: its prompt is the readings as Swedish writes them (CLDR's decimal comma,
    minus sign and unit names), no word of English or German; its claims are read on their numbers."""
    assert "sv" not in GUARDED and claim_words("sv").code == "sv" and claim_words(None).code == "en"
    assert describe(readings(), "ascent", language="sv", aloft_s=5_340) == "21,4 km, −55 °C, 46 hPa, 3,81 V, 89 minuter"
    p = build_prompt("Du är Ada.", readings(), PromptContext(phase="ascent", language="sv", aloft_s=5_340))
    assert p.messages[1]["content"] == "21,4 km, −55 °C, 46 hPa, 3,81 V, 89 minuter."
    assert claim_words("xx").code == "en"  # a code CLDR does not know either: read in English


def bundle_in(language: str, tiny_bundle, tmp_path):
    """A copy of the tiny bundle as an owner's who writes `language`: its persona.toml says so."""
    out = tmp_path / f"bundle_{language}"
    shutil.copytree(tiny_bundle, out)
    toml = out / "persona.toml"
    text, n = re.subn(r'(?m)^language = ".*"$', f'language = "{language}"', toml.read_text())
    toml.write_text(text if n else text.replace("[persona]\n", f'[persona]\nlanguage = "{language}"\n', 1))
    return out


@pytest.fixture
def german_bundle(tiny_bundle, tmp_path):
    """The tiny bundle as a German owner's: its persona.toml says `language = "de"`."""
    return load_bundle(bundle_in("de", tiny_bundle, tmp_path))


def test_a_german_persona_is_asked_in_german_and_its_false_claims_do_not_air(tmp_path, german_bundle):
    assert german_bundle.manifest.persona.language == "de"
    d = _daemon(tmp_path, german_bundle)
    d.daemon.run_once("beacon")  # on the pad, before launch
    said = iter(["endlich gelandet, war ein langer flug",  # false on the pad: made again ...
                 "warte noch auf den start, mücke schläft"])  # ... and this airs
    prompts: list[str] = []

    def generate(prompt, max_tokens, seed=None):
        prompts.append(prompt)
        return Generation(next(said), 12, 0.01, "stop")
    d.parts.worker.generate = generate
    with capture_logs() as logs:
        assert d.daemon.run_once("think") == "warte noch auf den start, mücke schläft"
    assert "Gerade bist du noch am Boden und wartest auf den Start" in prompts[0]
    assert "Woran denkst du gerade?" in prompts[0]  # the plain question on the pad
    untrue = [e for e in logs if e["event"] == "musing_untrue"]
    assert [(e["action"], e["false"]) for e in untrue] == [("made again", ["phase: gelandet"])]
    aired = [e for e in logs if e["event"] == "musing"]
    assert aired[0]["facts"]["language"] == "de" and aired[0]["claims"] == {"phase": [1, 0]}
