"""Real words of the owner's language, and not another's (issue 49, item 5): wordfreq's lists hold
other languages (web text is full of English), and by its Spanish list alone an English base's
musings were 97.4 % "real words (es)". A word is a language's only where no rival language has it
far more often (real_words.MARGIN). The sentences are plain ones written for this test, the same
dozen things said in each language.
"""

from __future__ import annotations

import json

import pytest

from host_training.evaluate import real_words as RW

ENGLISH = [
    'the balloon is climbing through the clouds and the sky above is turning dark blue',
    'i think we should leave early tomorrow because the roads will be busy',
    'honestly i have no idea what happened to the charger, maybe the cat took it',
    'can you send me the photos from the weekend when you get a chance',
    'it was colder than i expected up here, my hands are still freezing',
    'we finished the payload box last night and it actually looks pretty good',
    'the train was late again so i missed the start of the meeting',
    'she said the weather should be clear enough for the launch on sunday',
    "i'm going to make some coffee and then read for a while",
    'that sounds great, let me know what time works for you',
    'the view from the hill was amazing, you could see the whole valley',
    'my phone died halfway through the call, sorry about that',
]
SPANISH = [
    'el globo sube entre las nubes y el cielo se vuelve azul oscuro',
    'creo que deberíamos salir temprano mañana porque habrá mucho tráfico',
    'la verdad no sé qué pasó con el cargador, a lo mejor se lo llevó el gato',
    'me mandas las fotos del fin de semana cuando puedas',
    'hacía más frío de lo que esperaba aquí arriba, todavía tengo las manos heladas',
    'anoche terminamos la caja y la verdad es que quedó bastante bien',
    'el tren volvió a llegar tarde y me perdí el principio de la reunión',
    'dijo que el tiempo estará despejado para el lanzamiento del domingo',
    'voy a hacer un café y luego leer un rato',
    'qué bien, dime a qué hora te viene mejor',
    'la vista desde la colina era increíble, se veía todo el valle',
    'se me murió el móvil a mitad de la llamada, perdona',
]
GERMAN = [
    'der ballon steigt durch die wolken und der himmel wird dunkelblau',
    'ich glaube wir sollten morgen früh losfahren weil die straßen voll sein werden',
    'ehrlich gesagt keine ahnung wo das ladekabel ist, vielleicht hat es die katze',
    'kannst du mir die fotos vom wochenende schicken wenn du zeit hast',
    'hier oben war es kälter als ich dachte, meine hände sind immer noch eiskalt',
    'wir haben die kiste gestern abend fertig gebaut und sie sieht echt gut aus',
    'der zug hatte wieder verspätung und ich habe den anfang der besprechung verpasst',
    'sie meinte das wetter sollte am sonntag für den start klar genug sein',
    'ich mach mir jetzt einen kaffee und lese dann noch ein bisschen',
    'klingt super, sag mir einfach wann es dir passt',
    'die aussicht vom hügel war der wahnsinn, man konnte das ganze tal sehen',
    'mein handy ist mitten im gespräch ausgegangen, sorry',
]
FRENCH = [
    'le ballon monte à travers les nuages et le ciel devient bleu foncé',
    "je pense qu'on devrait partir tôt demain parce que les routes seront chargées",
    "franchement je ne sais pas où est passé le chargeur, le chat l'a peut-être pris",
    "tu peux m'envoyer les photos du week-end quand tu as le temps",
    "il faisait plus froid que prévu là-haut, j'ai encore les mains gelées",
    'on a fini la boîte hier soir et elle est vraiment pas mal',
    "le train était encore en retard alors j'ai raté le début de la réunion",
    'elle a dit que le temps devrait être assez clair pour le lancement dimanche',
    'je vais me faire un café et puis lire un peu',
    'super, dis-moi quelle heure te convient',
    'la vue depuis la colline était incroyable, on voyait toute la vallée',
    "mon téléphone s'est éteint au milieu de l'appel, désolé",
]


def share(texts, language):
    return RW.share(texts, language).share


@pytest.mark.parametrize("texts, own", [(ENGLISH, "en"), (SPANISH, "es"), (GERMAN, "de"), (FRENCH, "fr")])
def test_a_language_passes_its_own_words_and_not_anothers(texts, own):
    """Measured: each language's sentences 95-100 % real words of their own language; English 16 %
    Spanish, 40 % German and 20 % French words (99, 99 and 99 % by the lists alone), the others
    under 30 % in any other."""
    assert share(texts, own) >= 0.95
    for other in ("en", "es", "de", "fr"):
        if other != own:
            assert share(texts, other) <= 0.45, other


def test_english_fails_as_spanish_and_german():
    """The issue's case: English text far below a Spanish or German owner's own share (98-100 %),
    so the report calls it babble, not real words of the language."""
    assert share(ENGLISH, "es") < 0.25 and share(ENGLISH, "de") < 0.45
    for language in ("es", "de"):
        english = RW.share(ENGLISH, language)
        assert RW.babble_verdict(english, RW.share(SPANISH if language == "es" else GERMAN, language)) == "babble"


def test_a_rivals_far_commoner_word_is_not_real():
    """ "the" is 7.7 in English and far rarer in the Spanish list; "de" is common in Spanish, French,
    Dutch and Portuguese alike and stays Spanish; a chat German "is" (5.2 in German, 7.1 in English)
    stays German."""
    assert "the" not in RW.lexicon("es") and "the" in RW.lexicon("en")
    assert "de" in RW.lexicon("es") and "is" in RW.lexicon("de") and "digga" in RW.lexicon("de")


def _owner_turns(data):
    return [m["content"] for line in (data / "val.jsonl").read_text(encoding="utf-8").splitlines()
            for m in json.loads(line)["messages"] if m["role"] == "assistant"]


def test_the_sample_owners_keep_their_shares(corpus_data_dir, tmp_path):
    """Ada's held-out turns were 99.9 % real English words by the list alone, 99.3 % now ("ha" is
    Spanish's); Jannik's 99.1 % German, 98.6 % now."""
    from host_training.__main__ import main
    from tests.conftest import ROOT

    assert share(_owner_turns(corpus_data_dir), "en") >= 0.98
    corpus = ROOT / "samples" / "corpus_de"
    assert main(["prepare", str(corpus / "telegram"), str(corpus / "whatsapp"), "--owner", "user7770101",
                 "--owner", "Jannik Wolter", "--out", str(tmp_path / "de")]) == 0
    assert share(_owner_turns(tmp_path / "de"), "de") >= 0.97
