"""The truth guard in every language with a file (issue 49, item 4): for Spanish, French, Italian,
Portuguese and Dutch as for German (tests/test_musing_language.py), a false claim of every kind is
caught and a true one passes, each read in its own language's words and CLDR's numbers; and the
prompt's own readings, said in the language, are read back as true claims."""

from __future__ import annotations

import pytest

from payload.persona import truth
from payload.persona.prompts import describe
from payload.persona.reach import Outcome, OutcomeKind
from payload.persona.reach import describe as describe_outcome
from stratoecho.musing_claims import MusingFacts, Request, claims
from tests.test_prompt_context import MIDNIGHT, readings

# Rising through 6.5 km an hour and a half after launch, at -30 °C, drifting east at 97 km/h, by day.
FLIGHT = dict(phase="ascent", alt_m=6500, temp_c=-30.0, box_temp_c=4.0, pressure_hpa=440.0, batt_v=3.9, sun_up=True,
              aloft_s=5400, speed_kmh=97.0, rate_m_s=5.0, distance_km=40.0, battery_share=0.8)
# On the pad on a hot afternoon: what is cold there is false, what is hot true.
PAD = dict(phase="pre-launch", temp_c=28.0, box_temp_c=31.0, sun_up=True)

# language -> kind -> sentences, each making that one claim, false on FLIGHT (cold: on the PAD).
FALSE = {
    "es": {
        "time_aloft": ["llevo 28 horas en el aire", "despegué hace 5 minutos"],
        "altitude": ["estoy a 20 km de altura", "a 30.000 metros"],
        "distance": ["estoy a 300 km de distancia"],
        "temperature": ["aquí hace 39 grados", "menos 5 grados fuera"],
        "warm": ["hace mucho calor aquí arriba"],
        "cold": ["qué frío hace"],
        "phase": ["bajando con el paracaídas", "ya he aterrizado"],
        "speed": ["el viento a 50 km/h", "a 300 kilómetros por hora"],
        "battery": ["batería al 10 %", "batería a 3,1 v"],
        "pressure": ["la presión es de 1013 hpa"],
        "sun": ["qué noche tan bonita", "mira la luna"],
        "request": ["nadie contestó"],
    },
    "fr": {
        "time_aloft": ["en l'air depuis 28 heures", "décollé il y a 5 minutes"],
        "altitude": ["je suis à 20 km d'altitude", "à 30 000 mètres", "à 30\u202f000 mètres"],
        "distance": ["à 300 km de distance"],
        "temperature": ["il fait 39 degrés", "moins 5 degrés dehors", "\u22125\u202f°C dehors"],
        "warm": ["il fait trop chaud ici"],
        "cold": ["ça caille"],
        "phase": ["je redescends sous le parachute", "j'ai atterri"],
        "speed": ["vent à 50 km/h", "300 kilomètres à l'heure"],
        "battery": ["batterie à 10 %", "batterie à 3,1 v"],
        "pressure": ["la pression est de 1013 hpa"],
        "sun": ["les étoiles sont sorties", "en pleine nuit"],
        "request": ["personne n'a répondu"],
    },
    "it": {
        "time_aloft": ["in volo da 28 ore", "decollato 5 minuti fa"],
        "altitude": ["sono a 20 km di quota", "a 30.000 metri"],
        "distance": ["a 300 km di distanza"],
        "temperature": ["ci sono 39 gradi", "meno 5 gradi fuori"],
        "warm": ["fa troppo caldo qui"],
        "cold": ["che freddo"],
        "phase": ["scendo col paracadute", "atterraggio perfetto"],
        "speed": ["vento a 50 km/h", "300 chilometri all'ora"],
        "battery": ["batteria al 10 %", "batteria a 3,1 v"],
        "pressure": ["la pressione è 1013 hpa"],
        "sun": ["che notte stellata", "guarda la luna"],
        "request": ["nessuno ha risposto"],
    },
    "pt": {
        "time_aloft": ["no ar há 28 horas", "decolei há 5 minutos"],
        "altitude": ["tô a 20 km de altura", "a 30.000 metros"],
        "distance": ["a 300 km de distância"],
        "temperature": ["tá fazendo 39 graus", "menos 5 graus lá fora"],
        "warm": ["tá muito quente aqui"],
        "cold": ["que frio"],
        "phase": ["descendo de paraquedas", "pousei"],
        "speed": ["vento a 50 km/h", "300 quilômetros por hora"],
        "battery": ["bateria em 10 %", "bateria em 3,1 v"],
        "pressure": ["a pressão é 1013 hpa"],
        "sun": ["olha as estrelas", "no meio da madrugada"],
        "request": ["ninguém respondeu"],
    },
    "nl": {
        "time_aloft": ["al 28 uur in de lucht", "5 minuten geleden opgestegen"],
        "altitude": ["ik ben 20 km hoog", "op 30.000 meter"],
        "distance": ["300 km afgedreven"],
        "temperature": ["het is hier 39 graden", "min 5 graden buiten"],
        "warm": ["het is zo heet hier"],
        "cold": ["het is koud"],
        "phase": ["ik daal aan de parachute", "eindelijk geland"],
        "speed": ["wind van 50 km/u", "300 kilometer per uur"],
        "battery": ["accu op 10 %", "accu op 3,1 v"],
        "pressure": ["de druk is 1013 hpa"],
        "sun": ["de sterren zijn te zien", "midden in de nacht"],
        "request": ["niemand heeft geantwoord"],
    },
}
# True on FLIGHT (warm: on the PAD; request: with a question unanswered).
TRUE = {
    "es": {
        "time_aloft": ["despegué hace 90 minutos", "llevo 1,5 horas en el aire", "llevo una hora volando"],
        "altitude": ["a unos 6 km de altura", "6,5 km arriba", "6.500 metros"],
        "distance": ["a 40 km de distancia"],
        "temperature": ["-30 grados fuera", "menos 28 °C", "30 grados bajo cero"],
        "cold": ["qué frío hace", "me congelo"],
        "warm": ["qué calor"],
        "phase": ["sigo subiendo", "cada vez más alto"],
        "speed": ["a 90 km/h", "a 5 m/s"],
        "battery": ["batería a 3,9 v", "batería al 80 %"],
        "pressure": ["solo 440 hPa"],
        "sun": ["hace sol", "a pleno sol"],
        "request": ["nadie contestó"],
    },
    "fr": {
        "time_aloft": ["décollé il y a 90 minutes", "en l'air depuis 1,5 heure", "ça fait une heure que je vole"],
        "altitude": ["à environ 6 km d'altitude", "6,5 km de haut", "6 500 mètres", "6\u202f500\u00a0m"],
        "distance": ["à 40 km de distance"],
        "temperature": ["-30 degrés dehors", "moins 28 °C", "30 degrés sous zéro", "\u221230\u202f°C"],
        "cold": ["ça caille ici", "je gèle"],
        "warm": ["il fait chaud"],
        "phase": ["je monte encore", "toujours plus haut"],
        "speed": ["à 90 km/h", "5 m/s"],
        "battery": ["batterie à 3,9 v", "batterie à 80 %"],
        "pressure": ["plus que 440 hPa"],
        "sun": ["grand soleil ici", "en plein jour"],
        "request": ["personne n'a répondu"],
    },
    "it": {
        "time_aloft": ["in volo da 90 minuti", "in aria da 1,5 ore", "sono due ore che volo"],
        "altitude": ["a circa 6 km di quota", "6,5 km sopra terra", "6.500 metri"],
        "distance": ["a 40 km di distanza"],
        "temperature": ["-30 gradi fuori", "meno 28 °C", "30 gradi sotto zero"],
        "cold": ["un freddo cane", "mi congelo"],
        "warm": ["fa caldo"],
        "phase": ["salgo ancora", "sempre più su"],
        "speed": ["a 90 km/h", "5 m/s"],
        "battery": ["batteria a 3,9 v", "batteria all'80 %"],
        "pressure": ["solo 440 hPa"],
        "sun": ["che sole", "in pieno giorno"],
        "request": ["nessuno ha risposto"],
    },
    "pt": {
        "time_aloft": ["decolei há 90 minutos", "no ar há 1,5 hora", "faz duas horas que tô voando"],
        "altitude": ["a uns 6 km de altura", "6,5 km lá em cima", "6.500 metros"],
        "distance": ["a 40 km de distância"],
        "temperature": ["-30 graus lá fora", "menos 28 °C", "30 graus abaixo de zero"],
        "cold": ["um frio danado", "tô congelando"],
        "warm": ["que calor"],
        "phase": ["ainda subindo", "cada vez mais alto"],
        "speed": ["a 90 km/h", "5 m/s"],
        "battery": ["bateria em 3,9 v", "bateria em 80 %"],
        "pressure": ["só 440 hPa"],
        "sun": ["que solzão", "de dia"],
        "request": ["ninguém respondeu"],
    },
    "nl": {
        "time_aloft": ["90 minuten geleden opgestegen", "al anderhalf uur in de lucht", "al 1,5 uur onderweg"],
        "altitude": ["ongeveer 6 km hoog", "6,5 km hoog", "6.500 meter"],
        "distance": ["40 km afgedreven"],
        "temperature": ["-30 graden buiten", "min 28 °C", "30 graden onder nul"],
        "cold": ["ijskoud hier", "ik vries dood"],
        "warm": ["het is warm"],
        "phase": ["ik stijg nog", "steeds hoger"],
        "speed": ["90 km/u", "5 m/s"],
        "battery": ["accu op 3,9 v", "accu op 80 %"],
        "pressure": ["nog maar 440 hPa"],
        "sun": ["de zon schijnt", "lekker zonnig"],
        "request": ["niemand heeft geantwoord"],
    },
}
LANGUAGES = tuple(FALSE)
KINDS = ("altitude", "temperature", "cold", "warm", "phase", "sun", "pressure", "battery", "time_aloft", "speed",
         "distance", "request")
UNANSWERED = (Request("weather", "silent_link"),)


def facts(language: str, kind: str, true: bool) -> MusingFacts:
    if (kind == "cold" and not true) or (kind == "warm" and true):
        return MusingFacts(**PAD, language=language)
    return MusingFacts(**FLIGHT, requests=UNANSWERED if kind == "request" and true else (), language=language)


def test_every_language_has_a_false_and_a_true_claim_of_every_kind():
    for lang in LANGUAGES:
        assert set(FALSE[lang]) == set(TRUE[lang]) == set(KINDS), lang


@pytest.mark.parametrize("lang, kind, text", [(lang, k, t) for lang in LANGUAGES for k, ts in FALSE[lang].items() for t in ts])
def test_every_false_claim_is_caught(lang, kind, text):
    f = facts(lang, kind, true=False)
    said = claims(text, f)
    assert [c.kind for c in said if not c.true] == [kind], said
    assert truth.judge(text, f).text is None


@pytest.mark.parametrize("lang, kind, text", [(lang, k, t) for lang in LANGUAGES for k, ts in TRUE[lang].items() for t in ts])
def test_every_true_claim_passes(lang, kind, text):
    f = facts(lang, kind, true=True)
    said = claims(text, f)
    assert [c.kind for c in said] == [kind] and all(c.true for c in said), said
    assert truth.judge(text, f).text == text


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("phase", ["pre-launch", "ascent", "float", "descent", "landed"])
def test_the_prompt_says_the_readings_as_the_guard_reads_them_back(lang, phase):
    """Every figure and word of the flight the prompt tells, in its language, is a true claim when
    the persona repeats it: its phase, height, temperature, pressure, battery, sun and time aloft."""
    aloft = 0 if phase == "pre-launch" else 5_340
    for r, sun in ((readings(alt_m=6_512.0, temp_c=-30.2, pressure_hpa=440.0, batt_mv=3_904), True),
                   (readings(alt_m=6_512.0, temp_c=-30.2, pressure_hpa=440.0, batt_mv=3_904, time=MIDNIGHT), False)):
        said = describe(r, phase, aloft_s=aloft, language=lang)
        f = MusingFacts(**{**FLIGHT, "phase": phase, "sun_up": sun, "aloft_s": aloft}, language=lang)
        told = claims(said, f)
        wanted = {"phase", "altitude", "temperature", "pressure", "battery", "sun"} | ({"time_aloft"} if aloft else set())
        assert {c.kind for c in told} >= wanted, (said, told)
        assert all(c.true for c in told), (said, told)
    hours = describe(readings(), "ascent", aloft_s=3 * 3600 + 600, language=lang)
    aloft_claims = [c for c in claims(hours, MusingFacts(aloft_s=3 * 3600 + 600, language=lang)) if c.kind == "time_aloft"]
    assert [c.true for c in aloft_claims] == [True], hours


@pytest.mark.parametrize("lang", LANGUAGES + ("de",))
def test_what_came_of_a_question_is_said_in_the_language_and_read_back(lang):
    silent = describe_outcome(Outcome("weather", "52.6,-2.7", OutcomeKind.SILENT_LINK, "", 0.0, attempts=12), lang)
    assert "52.6,-2.7" in silent and "12" in silent
    assert [(c.kind, c.true) for c in claims(silent, MusingFacts(requests=UNANSWERED, language=lang))] == [("request", True)]
    assert [(c.kind, c.true) for c in claims(silent, MusingFacts(language=lang))] == [("request", False)]
