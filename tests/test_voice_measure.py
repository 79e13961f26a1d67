"""The voice measure on the sample corpus and on flights: how well the classifier tells Ada from
her correspondents held out by conversation, babble in her letters failing on real words, the
untuned base's bundle for a control flight, a flight's musings scored persona beside base, and
the quantization row's verdict against the tolerance.
"""

from __future__ import annotations

import json
import random

import pytest

from host_training.base import base_bundle as BB
from host_training.evaluate import real_words as RW
from host_training.evaluate import voice as V
from host_training.evaluate import voice_of_flight as VF
from host_training.report import WORD
from host_training.train.tokenizer import load_conversations
from tests.test_eval_report import _manifest


@pytest.fixture(scope="module")
def corpus(corpus_data_dir):
    train = load_conversations(corpus_data_dir / "train.jsonl")
    val = load_conversations(corpus_data_dir / "val.jsonl")
    return train, val, V.VoiceClassifier.fit_turns(V.training_turns(train))


def test_the_classifier_tells_ada_from_her_correspondents_held_out_by_conversation(corpus):
    """Issue 40's bar: balanced accuracy at least 0.85 on the sample corpus, every turn scored by a
    model that never read its conversation (measured: 0.94 for samples of 5 turns, 0.81 a message;
    the character n-grams alone gave 0.74 a message)."""
    train, val, clf = corpus
    cv = clf.cv
    assert cv.sample_size == 5 and cv.samples >= 100
    assert cv.balanced_accuracy >= 0.85, cv
    assert cv.message_balanced_accuracy >= 0.75, cv
    # Her own unseen turns read as hers far more often than the others' unseen turns do.
    owner = [m["content"] for c in val for m in c if m["role"] == "assistant"]
    others = [m["content"] for c in val for m in c if m["role"] == "user"]
    assert clf.share(owner).share >= 0.7 and clf.share(others).share <= 0.3
    # Calibrated probabilities, at even odds: within 0..1, and hers on average above the others'.
    p_owner, p_others = clf.probabilities(owner), clf.probabilities(others)
    assert all(0 <= p <= 1 for p in p_owner + p_others)
    assert sum(p_owner) / len(p_owner) > 0.6 > 0.4 > sum(p_others) / len(p_others)


def scramble(text: str, rng: random.Random) -> str:
    """Babble in the owner's letters: each word's inner letters shuffled; casing, punctuation,
    lengths and line breaks kept ("the sun sets" -> "the sun stes")."""
    def word(m):
        w = m[0]
        inner = list(w[1:-1])
        rng.shuffle(inner)
        return w[0] + "".join(inner) + w[-1] if len(w) > 3 else w
    return WORD.sub(word, text)


def test_babble_in_the_owners_letters_fails_on_real_words(corpus):
    """Her held-out turns with every word's letters shuffled keep her habits, and the classifier
    still takes a good part of them for hers (measured: 13 of 27 texts, 4 of 6 samples); their
    real words fall from 99.9 % to 58 %, and the verdict says babble. Her own turns pass."""
    train, val, clf = corpus
    owner = [m["content"] for c in val for m in c if m["role"] == "assistant"]
    babble = [scramble(t, random.Random(0)) for t in owner]
    assert babble != owner
    assert clf.share(babble).share >= 0.25  # the habits alone fool the classifier this often
    language = RW.best_language(V.training_messages(train)[0])
    assert language == "en"
    a = V.authorship(train, val, [("babble", "flown", [[t] for t in babble]), ("hers", "tuned", [[t] for t in owner])])
    assert a.language == "en" and a.owner_real.share >= 0.97
    assert a.find("flown").real.share <= 0.75 and a.find("flown").verdict(a.owner_real) == "babble"
    assert a.find("tuned").verdict(a.owner_real) == "real words"
    figures = a.eval_figures()
    assert figures["real_words_share"] <= 0.75 and figures["owner_real_words_share"] >= 0.97
    assert figures["f32_real_words_share"] == figures["owner_real_words_share"]
    assert json.dumps(a.summary())  # eval --json can print it


def test_the_language_prepare_found_is_the_one_words_are_counted_in(corpus):
    """The bundle's language (prepare's detection) decides the word list; one without a list here
    falls back to the owner's training messages. Counted by the German list, fewer of Ada's words
    are real (not many fewer: wordfreq's German web text holds much English, so which language
    the replies are in is report.md's "Language and repetition", not this share)."""
    train, val, _ = corpus
    owner = [[m["content"]] for c in val for m in c if m["role"] == "assistant"]
    english = V.authorship(train, val, [("hers", "tuned", owner)], language="en")
    german = V.authorship(train, val, [("hers", "tuned", owner)], language="de")
    assert (english.language, german.language) == ("en", "de")
    assert german.owner_real.share < english.owner_real.share - 0.02
    for unknown in ("xx", None, ""):
        assert V.authorship(train, val, [("hers", "tuned", owner)], language=unknown).language == "en"


def test_real_words_by_the_languages_own_list():
    assert RW.share(["the sky at that hour is a flat pewter colour"], "en").share == 1
    # The babble a German owner's persona wrote: "geklässen" is no word, "kampel" too rare to be one.
    got = RW.share(["ich hab das geklässen", "das ist ein kampel an das geburtstag"], "de")
    assert (got.words, got.real) == (11, 9) and RW.babble_verdict(got, RW.RealWords("de", 10, 10)) == "babble"
    assert RW.babble_verdict(RW.RealWords("de", 100, 91), RW.RealWords("de", 100, 100)) == "real words"
    assert RW.babble_verdict(RW.RealWords("de", 0, 0), RW.RealWords("de", 100, 100)) is None
    # Placeholders, numbers, addresses and single letters are not counted.
    assert RW.words_of("call <PHONE_1> at 0515, see https://x.example/qq or a.b@c.de - k") == ["call", "at", "see", "or"]
    assert RW.best_language(["ich hab das heute nicht gesehen", "ja digga die katze schläft"]) == "de"
    assert RW.best_language([]) == "en"
    with pytest.raises(RW.LanguageError, match="no word list for language 'xx'"):
        RW.share(["hello"], "xx")


# ----------------------------------------------------------------------------- the control flight
def _persona_bundle(root, base_sha="0" * 64):
    from stratoecho.bundle import file_entry, write_bundle

    root.mkdir(parents=True)
    (root / "model.Q4_K_M.gguf").write_bytes(b"GGUF tuned")
    m = _manifest(system="You are Ada, riding a balloon. Say what you see.")
    m = m.model_copy(update={"training": {"method": "lora", "data_sha256": "d" * 64, "base_gguf": {
        "file": "base.Q4_1.gguf", "sha256": base_sha, "quantization": "Q4_1"}}, "eval": {"voice_share": 0.9},
        "files": [file_entry(root, "model.Q4_K_M.gguf")]})
    write_bundle(root, m)
    return root


def test_the_base_bundle_is_told_what_the_persona_is_told(tmp_path):
    from host_training.base.base_models import sha256_file
    from stratoecho.bundle import load_bundle

    base = tmp_path / "base.Q4_1.gguf"
    base.write_bytes(b"GGUF untuned")
    persona = _persona_bundle(tmp_path / "persona", sha256_file(base))
    path = BB.write_base_bundle(persona, tmp_path / "control", base)
    b, p = load_bundle(path.parent), load_bundle(persona)
    assert b.manifest.persona == p.manifest.persona and b.manifest.sampling == p.manifest.sampling
    assert (b.manifest.model.file, b.manifest.model.quantization) == ("base.Q4_1.gguf", "Q4_1")
    assert b.manifest.eval == {} and b.manifest.training["untuned_base_of"] == "Ada"
    assert b.model_path.read_bytes() == b"GGUF untuned"
    # Another file than the one the persona was tuned from, or none recorded: said plainly.
    other = tmp_path / "other.gguf"
    other.write_bytes(b"GGUF other")
    with pytest.raises(BB.BaseBundleError, match="differs from the base the persona was tuned from"):
        BB.write_base_bundle(persona, tmp_path / "c2", other)
    with pytest.raises(BB.BaseBundleError, match="is not in"):
        BB.write_base_bundle(persona, tmp_path / "c3")  # not among the fetched bases: its sha256 is this test's
    with pytest.raises(BB.BaseBundleError, match="would overwrite the persona's"):
        BB.write_base_bundle(persona, persona, base)


def _flight(root, texts):
    root.mkdir(parents=True)
    lines = [json.dumps({"event": "link_report", "heard": 3})]
    lines += [json.dumps({"seq": i, "text": t, "event": "musing", "t_s": 60.0 * i}) for i, t in enumerate(texts)]
    lines += [json.dumps({"text": "not aired", "event": "musing_too_short"}), "Traceback (most recent call last):"]
    (root / VF.LOG).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def test_a_flights_musings_are_scored_beside_the_bases(corpus_data_dir, corpus, tmp_path):
    """Ada's held-out turns stand in for a persona's musings, her correspondents' for a base's: the
    persona's flight reads as hers far more often, both in real words; the table says so."""
    _, val, _ = corpus
    owner = [m["content"] for c in val for m in c if m["role"] == "assistant"]
    others = [m["content"] for c in val for m in c if m["role"] == "user"]
    persona, base = _flight(tmp_path / "p1", owner), _flight(tmp_path / "b1", others)
    assert [m.text for m in VF.aired(persona)] == owner
    a = VF.measure(corpus_data_dir, [persona], [base])
    flown, control = a.find("flown"), a.find("control")
    assert flown.share.share >= 0.7 and control.share.share <= 0.3 and control.gain is None
    assert flown.verdict(a.owner_real) == control.verdict(a.owner_real) == "real words"
    table = "\n".join(VF.table(a))
    assert "| persona p1 |" in table and "| base b1 |" in table and "held out by conversation" in table
    with pytest.raises(VF.FlightError, match="no payload.log"):
        VF.aired(tmp_path)


def test_the_quantization_row_gets_a_verdict_against_the_tolerance():
    from host_training import report as R
    from host_training.evaluate import drift

    assert R.report_md.QUANT_TOLERANCE == drift.DEFAULT_TOLERANCE
    rows = [R.PerplexityRow("fine-tuned", "F32", 100, 41.2),
            R.PerplexityRow("fine-tuned", "Q4_K_M", 30, 42.2, {"nll_increase": 0.0227, "low": 0.0036, "high": 0.0887}),
            R.PerplexityRow("candidate", "Q8_0", 50, 41.3, {"nll_increase": 0.001, "low": 0.0, "high": 0.004})]
    md = R.render_report(_manifest(), rows, None, None, R.Redactor())
    assert "+0.0227 (+0.0036 to +0.0887) **not within 0.02** |" in md
    assert "+0.0010 (+0.0000 to +0.0040) within 0.02 |" in md
