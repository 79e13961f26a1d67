"""The owner's voice classifier as the bundle ships it (stratoecho/voice_score.py) and the Pi runs it.

It must give, without scikit-learn, the probabilities of the classifier the build's report measured
with (host_training/evaluate/voice_export.py exports it); a build ships it in the bundle, the bundle's
check refuses it tampered, and a malformed or foreign file is refused naming the file.
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys

import pytest

from host_training.evaluate import voice as V
from host_training.evaluate.voice_export import TOLERANCE, export, largest_difference
from stratoecho.bundle import BundleError, file_entry, load_bundle, write_bundle
from stratoecho.voice_score import VOICE_FILE, VoiceFileError, VoiceScorer, char_ngrams, dumps, load_voice

# Texts that test the edges of the reading: placeholders only, whitespace runs, emoji, other scripts, digits.
ODD = ["<PHONE_1>", "   ", "ok", "a", "OMG!!!  the  balloon\t\tis UP 🎈🎈 👨\u200d👩\u200d👧",
       "ha. the sky was - as ever - pewter.\n\nsee you at 7:30", "Grüße aus Köln, 3 Tage später…", "😂", "I i I i"]


def _read(path):
    return [json.loads(line)["messages"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def corpus_voice(corpus_data_dir, tmp_path_factory):
    """(the report's classifier on the sample corpus, its exported file, the held-out turns' texts)."""
    clf = V.VoiceClassifier.fit_turns(V.training_turns(_read(corpus_data_dir / "train.jsonl")))
    assert clf is not None
    path = tmp_path_factory.mktemp("voice") / VOICE_FILE
    path.write_bytes(dumps(export(clf)))
    held_out = [m["content"] for c in _read(corpus_data_dir / "val.jsonl") for m in c]
    return clf, path, held_out


# ----------------------------------------------------------------------------- the same probabilities
def test_the_shipped_scorer_gives_the_reports_probabilities(corpus_voice):
    clf, path, held_out = corpus_voice
    scorer = load_voice(path)
    assert len(scorer.members) == 3  # the calibration folds' ensemble, every member of it
    texts = held_out + ODD
    ours, theirs = scorer.probabilities(texts), clf.probabilities(texts)
    assert [p is None for p in ours] == [p is None for p in theirs] and ours[len(held_out)] is None
    assert largest_difference(clf, scorer, texts) <= TOLERANCE
    # The same, straight from scikit-learn's predict_proba of the cleaned texts.
    cleaned = [V.clean(t) for t in held_out]
    sk = clf.model.predict_proba(cleaned)[:, 1]
    assert max(abs(scorer.probability(t) - p) for t, p in zip(cleaned, sk)) <= TOLERANCE
    # It tells the owner from the others as the report's classifier does: the verdicts agree.
    assert [p > 0.5 for p in ours if p is not None] == [p > 0.5 for p in theirs if p is not None]


def test_char_ngrams_are_scikit_learns():
    from sklearn.feature_extraction.text import TfidfVectorizer

    for low, high in ((2, 4), (1, 3)):
        analyze = TfidfVectorizer(analyzer="char", ngram_range=(low, high), lowercase=False).build_analyzer()
        for text in ["", "a", "ab", "a  \n\t b", "x\ny", "🎈🎈 ok", "abc  ", *ODD]:
            assert char_ngrams(text, low, high) == analyze(text), text


def test_the_file_is_the_same_bytes_for_the_same_classifier(corpus_voice):
    clf, path, _ = corpus_voice
    assert dumps(export(clf)) == path.read_bytes()  # no timestamp in the gzip header: the sha256 is the model's


def test_the_scorer_runs_without_scikit_learn(corpus_voice):
    clf, path, held_out = corpus_voice
    child = (
        "import json, sys\n"
        "sys.modules['sklearn'] = None  # any import of it now fails\n"
        "from stratoecho.voice_score import load_voice\n"
        "p = load_voice(sys.argv[1]).probabilities(json.loads(sys.argv[2]))\n"
        "heavy = sorted(m for m in ('sklearn', 'numpy', 'scipy') if sys.modules.get(m) is not None)\n"
        "print(json.dumps({'p': p, 'heavy': heavy}))\n")
    texts = held_out[:5]
    out = subprocess.run([sys.executable, "-c", child, str(path), json.dumps(texts)], capture_output=True, text=True,
                         check=True)
    got = json.loads(out.stdout)
    assert got["heavy"] == []  # not even numpy: the Zero 2 W's memory is the model's
    assert got["p"] == pytest.approx(clf.probabilities(texts), abs=TOLERANCE)


# ----------------------------------------------------------------------------- refused files
def _rewritten(path, tmp_path, change):
    data = json.loads(gzip.decompress(path.read_bytes()))
    change(data)
    out = tmp_path / "changed.json.gz"
    out.write_bytes(dumps(data))
    return out


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(format="something else"), "not a voice classifier .*expected 'stratoecho voice classifier'"),
    (lambda d: d.update(version=2), "version 2, this software reads 1"),
    (lambda d: d["habits"].pop(), "habit figures are not this software's"),
    (lambda d: d["members"][1]["idf"].pop(), r"members\[1\].idf should be a list of \d+ numbers, got \d+ values"),
    (lambda d: d["members"][0].update(sigmoid_a="x"), r"members\[0\].sigmoid_a should hold finite numbers"),
    (lambda d: d["members"][0]["habit_scale"].__setitem__(0, 0.0), "habit_scale holds a 0"),
    (lambda d: d.update(members=[]), "members should be a non-empty list"),
    (lambda d: d.update(prior_odds=-1), "prior_odds -1.0 should be above 0"),
    (lambda d: d.update(ngrams=d["ngrams"][:1] * 2 + d["ngrams"][2:]), "ngrams should be a list of distinct strings"),
])
def test_a_malformed_or_foreign_file_is_refused_naming_it(corpus_voice, tmp_path, change, message):
    bad = _rewritten(corpus_voice[1], tmp_path, change)
    with pytest.raises(VoiceFileError, match=message) as e:
        load_voice(bad)
    assert str(e.value).startswith(str(bad))


def test_a_file_that_is_not_gzip_json_is_refused_naming_it(tmp_path):
    for name, raw in (("junk.json.gz", b"\x1f\x8b not really gzip"), ("text.json", b"{not json"),
                      ("list.json", b"[1, 2]")):
        (tmp_path / name).write_bytes(raw)
        with pytest.raises(VoiceFileError, match=rf"^{tmp_path / name}: not a voice classifier"):
            load_voice(tmp_path / name)
    with pytest.raises(VoiceFileError, match="cannot read"):
        load_voice(tmp_path / "absent.json.gz")


# ----------------------------------------------------------------------------- in the bundle
def test_the_build_ships_the_classifier_it_measured_with(tiny_bundle, chat_data_dir):
    bundle = load_bundle(tiny_bundle)  # every file's size and sha256, the classifier's among them
    m = bundle.manifest
    assert m.owner is not None and m.owner.voice == VOICE_FILE and VOICE_FILE in {f.path for f in m.files}
    scorer = bundle.voice()
    assert isinstance(scorer, VoiceScorer) and bundle.voice() is scorer  # read once, then kept
    # The build's classifier is the report's: trained again the same way (fixed seeds), it scores alike.
    clf = V.VoiceClassifier.fit_turns(V.training_turns(_read(chat_data_dir / "train.jsonl")))
    texts = [t for c in _read(chat_data_dir / "val.jsonl") for t in (x["content"] for x in c)]
    assert largest_difference(clf, scorer, texts) <= TOLERANCE


def test_a_tampered_classifier_is_refused_by_the_bundle_check(tiny_bundle, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, copy, ignore=shutil.ignore_patterns("model"))
    raw = bytearray((copy / VOICE_FILE).read_bytes())
    raw[-9] ^= 0x01  # one bit of the compressed stream: same size, other sha256
    (copy / VOICE_FILE).write_bytes(bytes(raw))
    with pytest.raises(BundleError, match=rf"{VOICE_FILE}: sha256 .* does not match"):
        load_bundle(copy)


def test_a_foreign_file_with_its_sha256_fails_on_reading_and_none_reads_as_before(tiny_bundle, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, copy, ignore=shutil.ignore_patterns("model"))
    (copy / VOICE_FILE).write_bytes(dumps({"format": "someone else's", "version": 1}))
    m = load_bundle(copy, verify=False).manifest
    m.files = [file_entry(copy, f.path) for f in m.files]  # its sha256 recorded, as a careless rebuild would
    write_bundle(copy, m)
    bundle = load_bundle(copy)  # verifies: the bytes are the ones listed
    with pytest.raises(BundleError, match=rf"{copy / VOICE_FILE}: not a voice classifier"):
        bundle.voice()
    # Without [owner] voice (a bundle built before it, or from too few messages) the payload gets None.
    m.owner = m.owner.model_copy(update={"voice": None})
    m.files = [f for f in m.files if f.path != VOICE_FILE]
    write_bundle(copy, m)
    assert load_bundle(copy).voice() is None
    # Named but not listed: refused, as a blocklist outside [[files]] is.
    m.owner = m.owner.model_copy(update={"voice": VOICE_FILE})
    write_bundle(copy, m)
    with pytest.raises(BundleError, match=f"owner.voice {VOICE_FILE} is not in"):
        load_bundle(copy).voice()


def test_the_control_flight_chooses_with_the_same_classifier(tiny_bundle, tmp_path):
    from host_training.base.base_bundle import write_base_bundle

    base = tmp_path / "base.gguf"
    base.write_bytes(b"GGUF untuned stand-in")
    control = load_bundle(write_base_bundle(tiny_bundle, tmp_path / "control", base).parent)  # verifies
    assert control.manifest.owner.voice == VOICE_FILE and control.voice() is not None
    assert (control.root / VOICE_FILE).read_bytes() == (tiny_bundle / VOICE_FILE).read_bytes()
