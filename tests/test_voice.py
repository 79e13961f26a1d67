"""Whose voice (host_training/evaluate/voice.py): the authorship classifier, its intervals, the style distances.

Hand-written texts in two plainly different voices first; then the check that the measure can
fail: a persona trained on another owner's messages (Noor's, from the sample corpus) must score
lower on Ada's classifier than Ada's own persona, and the order must swap on Noor's classifier.
"""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter

import pytest
import tomli_w

from host_training.evaluate import voice as V
from host_training.report import lower_start, upper_case_share
from tests.conftest import CORPUS

# ----------------------------------------------------------------------------- two voices, by hand
# Ada-like: lowercase, dashes, "ha", weather and trains. Kit-like: capitals, "!!", "omg", emoji.
QUIET_OPEN = ["ha. the sky was", "honestly the cloud base is", "the train was late - and the fog was",
              "minus three this morning - the frost was", "the wind at 12 km is", "the jet stream looks"]
QUIET_CLOSE = ["a flat pewter colour", "lovely, in a grim way", "very still", "doing its thing again",
               "about what the sonde said", "the colour of porridge"]
LOUD_OPEN = ["OMG the launch was", "WAIT did you see it, it was", "NO WAY the tracker is", "Guys!! the payload is",
             "LOL the balloon went", "AMAZING news, the radio was"]
LOUD_CLOSE = ["SO GOOD!! 🎈🎈", "literally insane!!! 😂", "the BEST thing ever 🙈", "HUGE!!! 🚀",
              "wild omg 😂😂", "ACTUALLY working!! 🎉"]


def pairs(opens, closes):
    return [f"{a} {b}" for a, b in itertools.product(opens, closes)]


QUIET, LOUD = pairs(QUIET_OPEN, QUIET_CLOSE), pairs(LOUD_OPEN, LOUD_CLOSE)  # 36 each


def split(texts):
    """(two thirds to learn from, every third one held out)."""
    return [t for i, t in enumerate(texts) if i % 3], texts[::3]


def conversations(owner, others):
    """prepare-style conversations alternating the other speakers and the owner."""
    return [[{"role": "user", "name": "Kit", "content": o}, {"role": "assistant", "name": "Ada", "content": a}]
            for o, a in zip(others, owner)]


def test_the_classifier_tells_two_voices_apart_and_says_how_well():
    train_owner, held_owner = split(QUIET)
    train_others, held_others = split(LOUD)
    clf = V.VoiceClassifier.fit(train_owner, train_others)
    assert clf is not None and (clf.owner_messages, clf.other_messages) == (24, 24)
    assert clf.cv.folds == 5 and clf.cv.balanced_accuracy >= 0.9, clf.cv
    assert clf.share(held_owner).share >= 0.9 and clf.share(held_others).share <= 0.1
    # Text in neither's words still goes by its voice: capitals and "!!" are the other's.
    assert clf.is_owner(["the fog was lovely - ha", "WOW!!! the payload 🎉🎉"]) == [True, False]
    # Same messages, same figures.
    again = V.VoiceClassifier.fit(train_owner, train_others)
    assert again.cv == clf.cv and again.is_owner(LOUD + QUIET) == clf.is_owner(LOUD + QUIET)


def test_a_classifier_that_cannot_tell_says_so():
    """Both voices dealt at random to both sides: no voice to learn, cross-validation near a coin
    toss for messages and for samples alike (measured: 0.47 and 0.40)."""
    pool = QUIET + LOUD
    random.Random(0).shuffle(pool)
    clf = V.VoiceClassifier.fit(pool[:36], pool[36:])
    assert clf is not None and clf.cv.samples > 0
    assert clf.cv.message_balanced_accuracy <= 0.6 and clf.cv.balanced_accuracy <= 0.6, clf.cv


def test_too_few_messages_give_no_classifier_and_say_why():
    assert V.VoiceClassifier.fit(QUIET[:19], LOUD) is None
    assert V.VoiceClassifier.fit(QUIET, []) is None
    assert "19 of the owner's" in V.shortfall(19, 36) and "36" not in V.shortfall(19, 36)
    assert "0 of the other speakers'" in V.shortfall(20, 0) and V.shortfall(20, 20) is None
    a = V.authorship(conversations(QUIET[:10], LOUD[:10]), [], [("persona", "flown", [["hi"]])])
    assert a.cv is None and a.sets == [] and "too few" in a.note and a.eval_figures() == {}
    assert V.authorship([], [], []).note  # nothing at all: said, not raised


def test_placeholders_and_repeats_are_not_learnt():
    assert V.clean("call <PHONE_1>  now\n\n<EMAIL_2>\nok") == "call now\nok"
    convs = conversations(["<PHONE_1>", "hi  there", "hi there"], ["yo", "yo", "<IBAN_3>"])
    convs.append([{"role": "system", "name": "", "content": "You are Ada."}])
    assert V.training_messages(convs * 3) == (["hi there"], ["yo"])
    clf = V.VoiceClassifier.fit(QUIET, LOUD)
    # A reply of nothing but a placeholder, or nothing at all, has no voice: never the owner's.
    assert clf.is_owner(["", "<PHONE_1>", QUIET[0]]) == [False, False, True]
    assert clf.share([]) == V.Share(0, 0) and V.Share(0, 0).share is None and V.Share(0, 0).interval is None


def test_authorship_scores_ceiling_floor_and_models_in_order():
    train = conversations(split(QUIET)[0], split(LOUD)[0])
    val = conversations(split(QUIET)[1], split(LOUD)[1])
    # three prompts, two replies to each, in the same order for every model
    q, loud = QUIET[1:7], LOUD[1:7]
    a = V.authorship(train, val, [("base", "base", [loud[0:2], loud[2:4], loud[4:6]]),
                                  ("persona F32", "tuned", [q[0:2], q[2:4], q[4:6]]),
                                  ("persona Q4_K_M (flown)", "flown", [q[0:2], [q[2], loud[0]], [q[3], loud[1]]])])
    assert [(s.label, s.role) for s in a.sets] == [
        (V.OWNER_SET, "ceiling"), (V.OTHERS_SET, "floor"), ("base", "base"), ("persona F32", "tuned"),
        ("persona Q4_K_M (flown)", "flown")]
    assert a.find("ceiling").share.share >= 0.9 and a.find("floor").share.share <= 0.1
    assert a.find("base").share.owner == 0 and a.find("tuned").share.owner == 6
    flown = a.find("flown").share
    assert (flown.texts, flown.owner) == (6, 4)
    # a model's interval is the bootstrap over its prompts (each prompt's share is 1, 1/2 or 1/2)
    assert flown.interval == V.bootstrap_interval([1, 0.5, 0.5], weights=[2, 2, 2]) != V.wilson(4, 6)
    assert 0.5 <= flown.interval[0] <= 4 / 6 <= flown.interval[1] <= 1
    # the gain over the base, prompt by prompt: +1 on each for F32; +1, +1/2, +1/2 for the flown
    assert a.find("base").gain is None
    assert (a.find("tuned").gain.gain, a.find("tuned").gain.low, a.find("tuned").gain.high) == (1, 1, 1)
    g = a.find("flown").gain
    assert g.prompts == 3 and g.gain == pytest.approx(2 / 3) and 0.5 <= g.low <= g.gain <= g.high <= 1
    figures = a.eval_figures()
    assert figures["voice_share"] == round(4 / 6, 4) and figures["voice_replies"] == 6
    assert figures["voice_share_low"] == round(flown.interval[0], 4)
    assert figures["voice_gain_over_base"] == round(2 / 3, 4) and figures["voice_gain_over_base_low"] >= 0.5
    assert figures["f32_voice_gain_over_base"] == 1 and "base_voice_gain_over_base" not in figures
    assert figures["base_voice_share"] == 0 and figures["base_voice_share_high"] == 0
    assert figures["f32_voice_share"] == 1 and {"voice_owner_share", "voice_others_share",
                                                "voice_classifier_balanced_accuracy"} <= figures.keys()
    tomli_w.dumps({"eval": figures})  # persona.toml can hold them: no None among them
    summary = a.summary()
    assert summary["sets"][-1]["share"] == pytest.approx(4 / 6) and summary["sets"][-1]["interval"] == \
        "bootstrap over prompts"
    assert summary["sets"][0]["interval"] == "Wilson score"
    # No held-out turns of other speakers: no floor row, and nothing else changes.
    only_owner = [[m for m in c if m["role"] == "assistant"] for c in val]
    assert [s.role for s in V.authorship(train, only_owner, []).sets] == ["ceiling"]


# ----------------------------------------------------------------------------- intervals
def test_bootstrap_intervals_by_prompt():
    # every prompt alike: no spread, whatever the resampling
    assert V.bootstrap_interval([0.5] * 8) == (0.5, 0.5)
    low, high = V.bootstrap_interval([0, 1] * 10)
    assert 0.25 < low < 0.5 < high < 0.75  # ~ 0.5 +- 1.96 * 0.5 / sqrt(20)
    assert V.bootstrap_interval([0, 1] * 10, seed=3) == V.bootstrap_interval([0, 1] * 10, seed=3)  # seeded
    # weights: a prompt with more replies counts more in the pooled share
    assert V.bootstrap_interval([1.0, 0.0], weights=[1000, 1])[1] == 1.0
    # the paired gain: the same prompts for both; one empty group drops its prompt from both
    gain = V.paired_gain([[True, True], [True, False], []], [[False, False], [True, True], [True]])
    assert gain.prompts == 2 and gain.gain == pytest.approx((1 - 0.5) / 2)
    assert V.paired_gain([[]], [[True]]) is None
    share = V.grouped_share([[True, True, False], [], [False]])
    assert (share.texts, share.owner) == (4, 2) and share.ci is not None
    assert V.grouped_share([]) == V.Share(0, 0)


def test_wilson_interval_by_hand():
    z2 = 1.959963984540054 ** 2
    assert V.wilson(0, 10) == (pytest.approx(0, abs=1e-12), pytest.approx(z2 / (10 + z2)))  # 0.2775, not empty
    assert V.wilson(10, 10) == (pytest.approx(10 / (10 + z2)), pytest.approx(1))
    low, high = V.wilson(8, 10)
    assert (round(low, 4), round(high, 4)) == (0.4902, 0.9433)  # the textbook figure for 8 of 10
    assert V.wilson(0, 0) is None


@pytest.mark.parametrize("n", [1, 2, 7, 20, 33, 500])
def test_wilson_interval_contains_the_share_and_narrows(n):
    for k in range(n + 1):
        low, high = V.wilson(k, n)
        assert 0 <= low <= k / n + 1e-12 and k / n - 1e-12 <= high <= 1
    assert V.wilson(n // 2, n)[1] - V.wilson(n // 2, n)[0] > V.wilson(2 * (n // 2), 2 * n)[1] - V.wilson(
        2 * (n // 2), 2 * n)[0]


# ----------------------------------------------------------------------------- distances
def test_ks_statistic_by_hand():
    assert V.ks_statistic([1, 2, 3], [3, 2, 1]) == 0
    assert V.ks_statistic([1, 2, 3], [10, 20]) == 1
    assert V.ks_statistic([1, 2, 3], [2, 3, 4]) == pytest.approx(1 / 3)  # at 1: 1/3 vs 0
    assert V.ks_statistic([1, 1, 0, 0], [1, 0, 0, 0]) == pytest.approx(0.25)  # yes/no: the shares' difference
    assert V.ks_statistic([], [1]) is None


def test_js_distance_by_hand():
    a = Counter({"sky": 2, "fog": 1})
    assert V.js_distance(a, a + a) == 0  # the same frequencies, however many words
    assert V.js_distance(a, Counter({"omg": 3})) == 1
    p_m, q_m = math.log2(1 / 0.75), 0.5 * math.log2(0.5 / 0.75) + 0.5 * math.log2(0.5 / 0.25)
    assert V.js_distance(Counter({"x": 1}), Counter({"x": 1, "y": 1})) == pytest.approx(math.sqrt((p_m + q_m) / 2))
    assert V.js_distance(Counter(), a) is None


def test_style_distances_zero_for_the_same_turns_one_for_opposite_ones():
    same = V.style_distances(QUIET, list(reversed(QUIET)))
    assert set(same) == set(V.FIGURES) | {"vocabulary"}
    assert all(v == 0 for v in same.values())
    quiet = ["ok", "a fog", "ha fine"]  # no word in common: words are case-folded
    loud = ["WHERE IS THE BALLOON NOW??\nTELL ME 🎈", "IS IT UP YET?? 🎈🎈\nPLEASE", "WHAT ABOUT THE TRACKER?!\nNOW 🎉"]
    d = V.style_distances(quiet, loud)
    for k in ("chars", "words", "lines", "multi_line", "upper_case", "lower_start", "emoji", "emoji_turn",
              "question", "punctuation", "vocabulary"):
        assert d[k] == 1, k
    # A figure one side cannot have (casing, without letters) is no distance at all.
    assert V.style_distances(["123", "!!"], ["ok"])["upper_case"] is None


def test_casing_figures_by_hand():
    assert upper_case_share("OK then") == pytest.approx(2 / 6)
    assert upper_case_share("call <PHONE_1>") == 0  # a placeholder's capitals are not the owner's
    assert upper_case_share("12:30 🎈") is None
    assert lower_start("- ok, Fine") is True and lower_start("2 Balloons") is False and lower_start("…") is None


# ----------------------------------------------------------------------------- it can fail
@pytest.fixture(scope="module")
def noor_data_dir(tmp_path_factory):
    """The sample corpus prepared for another owner: Noor Haddad, Ada's friend (Telegram only:
    the blog posts and the WhatsApp chat are Ada's)."""
    from host_training.__main__ import main

    out = tmp_path_factory.mktemp("noor") / "data"
    assert main(["prepare", str(CORPUS / "telegram"), "--owner", "user5550202", "--owner", "Noor Haddad",
                 "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def noor_bundle(tmp_path_factory, noor_data_dir):
    """A persona of Noor, built as conftest's corpus_bundle is built of Ada, with half the steps for
    a quarter of the data, and left in F32: nothing to quantize, no F32 model to compare (about half
    the build's time). After 40 steps its replies scored as after 30 below: 4 of 20."""
    from host_training.__main__ import main

    out = tmp_path_factory.mktemp("noor_bundle") / "bundle"
    assert main(["build", "--data", str(noor_data_dir), "--from-scratch", "--preset", "test", "--steps", "30",
                 "--vocab-size", "768", "--quant", "F32", "--out", str(out)]) == 0
    return out


@pytest.mark.slow
def test_a_persona_of_another_owner_scores_lower(corpus_bundle, corpus_data_dir, noor_bundle, noor_data_dir, tmp_path):
    """Ada's persona and Noor's answer Ada's held-out messages (Noor's through `compare`, with the
    same prompts, seeds and sampling); on Ada's classifier Noor's persona's share must lie below
    the 95 % interval of Ada's persona's (measured: 4 of 20 against 16 of 20, 58 % to 92 %), and
    on Noor's classifier the other way round (20 of 20, 84 % to 100 %, against 1 of 20): the
    figure follows whose messages a model learnt, not which model writes more or longer."""
    from host_training import evaluate
    from host_training.train.tokenizer import load_conversations
    from stratoecho.bundle import load_bundle

    ada_train = load_conversations(corpus_data_dir / "train.jsonl")
    ada_val = load_conversations(corpus_data_dir / "val.jsonl")
    noor_model = load_bundle(noor_bundle).model_path
    outcome = evaluate.write_report(
        load_bundle(corpus_bundle), ada_val, [], tmp_path / "report.md", train=ada_train, samples=0,
        compare=[evaluate.Compared("Noor's persona", noor_model, "base")])
    ada, noor = outcome.voice.find("flown").share, outcome.voice.find("base").share
    assert ada.texts == noor.texts >= 15
    assert ada.interval[0] > noor.share, outcome.voice.summary()
    figures = outcome.voice.eval_figures()
    assert figures["voice_share"] > figures["base_voice_share"]
    assert "| Noor's persona | before tuning |" in (tmp_path / "report.md").read_text(encoding="utf-8")

    owner, others = V.training_messages(load_conversations(noor_data_dir / "train.jsonl"))
    noors = V.VoiceClassifier.fit(owner, others)
    assert noors is not None and noors.cv.balanced_accuracy > 0.6
    replies = outcome.replies
    ada_label = next(k for k in replies if k.endswith("(flown)"))
    on_noors = noors.share(replies["Noor's persona"]), noors.share(replies[ada_label])
    assert on_noors[0].interval[0] > on_noors[1].share, on_noors


# ----------------------------------------------------------------------------- distortion
def test_distortion_masks_all_but_the_frequent_words():
    kept = V.frequent_words(["the sky is the sky", "The frost is here", "is it"], n=2)
    assert kept == {"the", "is"}
    assert V.distort("The Gerald is 3 days old, the sky!", kept) == "The X***** is # **** ***, the ***!"
    assert V.distort("Ünïcode stays a word, ok", frozenset()) == "X****** ***** * ****, **"


def test_the_classifier_learns_how_not_what_about():
    """The owner writes quietly about the weather, the other loudly about launches. A quiet text
    about launches is the owner's; a loud one about the weather is not: style, not topic."""
    clf = V.VoiceClassifier.fit(QUIET, LOUD)
    quiet_launch = ["ha. the launch was a flat pewter colour", "honestly the payload is very still",
                    "the tracker was late - and the radio was doing its thing again"]
    loud_weather = ["OMG the frost was SO GOOD!! 🎈🎈", "WAIT the jet stream is literally insane!!! 😂",
                    "NO WAY the cloud base is HUGE!!! 🚀"]
    assert clf.is_owner(quiet_launch) == [True] * 3
    assert clf.is_owner(loud_weather) == [False] * 3
