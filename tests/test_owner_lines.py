"""The owner's own lines by situation (issue 49, item 3; stratoecho/exemplars.py): which lines a
build indexes, the situations of a moment of the flight, the lines chosen for it, a musing that
copies one, and the bundle's file."""

from __future__ import annotations

import pytest

from stratoecho.exemplars import (
    SITUATIONS,
    LinesError,
    OwnerLine,
    OwnerLines,
    SituationWords,
    copies,
    index,
    moment,
    nearest,
    worth_offering,
)
from stratoecho.musing_claims import MusingFacts, Request

WORDS = {"cold": ["cold", "freez*", "frost*", "minus"], "night": ["night*", "stars"], "wind": ["wind*"],
         "waiting": ["wait*", "still not"], "no_signal": ["no signal", "offline"], "view": ["view"]}


def test_a_line_is_about_the_situations_its_words_name_and_prefixes_match_word_starts():
    situations_of = SituationWords.of(WORDS).of_text
    assert situations_of("minus three this morning, frost feathers on the shed door") == ("cold",)
    assert situations_of("Freezing at the bus stop and still NOT here") == ("cold", "waiting")
    assert situations_of("we had  no   signal up the valley all night") == ("night", "no_signal")
    assert situations_of("the windows were open") == ("wind",)  # a prefix: "wind*" reads "windows"
    assert situations_of("unfrosted glass, a reviewer") == ()  # prefixes start words, never inside them
    assert situations_of("a great view of nothing") == ("view",)


def test_an_unknown_situation_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown situation.*rain"):
        SituationWords.of({"rain": ["rain"]})


def test_only_lines_that_can_stand_in_a_prompt_are_indexed():
    assert worth_offering("minus three this morning, frost on the door")
    assert not worth_offering("so cold")  # too few words to be about anything
    assert not worth_offering("call me on <PHONE_1> when it's cold out")  # a placeholder it would learn to say
    assert not worth_offering("cold pics here https://example.org/x please look")
    assert not worth_offering("cold " * 40)
    assert not worth_offering("they burst around 30 km and come down in a field")  # copied, a false figure


def test_the_index_takes_each_message_of_a_burst_once_and_keeps_general_lines_apart():
    bursts = ["it was freezing on the pad this morning\nwaited two hours for the wind to drop",
              "ok", "It was freezing on the pad this morning", "the new cake recipe worked out fine in the end"]
    lines = index(bursts, WORDS)
    assert [x.text for x in lines] == ["it was freezing on the pad this morning", "waited two hours for the wind to drop",
                                       "the new cake recipe worked out fine in the end"]
    assert [x.situations for x in lines] == [("cold",), ("wind", "waiting"), ()]


def test_the_index_keeps_the_most_worded_lines_of_each_situation():
    extra = "alpha bravo charlie delta echo foxtrot golf".split()
    bursts = [f"cold morning number {extra[k - 1]} with " + " ".join(extra[:k]) for k in range(1, 8)]
    kept = index(bursts, WORDS, per_situation=3, general=0)
    assert [x.text for x in kept] == bursts[4:]  # the three with most distinct words, in the order written


def test_a_moment_names_what_the_flight_is_doing_first():
    high_cold_day = MusingFacts(phase="ascent", alt_m=21_000, temp_c=-55, sun_up=True, speed_kmh=60,
                                battery_share=0.8, mode="nominal")
    assert moment(high_cold_day) == ("height", "cold", "sun", "wind", "view")
    assert moment(MusingFacts(phase="pre-launch", alt_m=80, temp_c=4, sun_up=True)) == ("waiting", "sun")
    assert moment(MusingFacts(phase="descent", alt_m=9000, temp_c=-30, sun_up=False)) == ("falling", "cold", "night")
    lost = MusingFacts(phase="float", alt_m=30_000, fix=False, mode="low_power",
                       requests=(Request("weather", "silent_link"),))
    assert moment(lost) == ("height", "tired", "no_signal", "view")
    assert set(moment(high_cold_day)) <= set(SITUATIONS)


LINES = [OwnerLine("minus three and frost on the door", ("cold",)),
         OwnerLine("my hands froze on the bike again", ("cold",)),
         OwnerLine("the stars over the van last night", ("night",)),
         OwnerLine("the new cake recipe worked out fine", ())]


def test_the_nearest_lines_are_one_per_situation_most_telling_first_then_general():
    chosen = nearest(LINES, ("night", "cold"), 3, seed=1)
    assert chosen[0].text == "the stars over the van last night"
    assert chosen[1].situations == ("cold",)
    assert chosen[2].text == "the new cake recipe worked out fine"
    assert nearest(LINES, ("night", "cold"), 3, seed=1) == chosen  # the same seed: the same lines


def test_lines_offered_lately_are_avoided_while_others_are_left():
    picks = {nearest(LINES, ("cold",), 1, seed=s)[0].text for s in range(20)}
    assert picks == {"minus three and frost on the door", "my hands froze on the bike again"}
    avoided = nearest(LINES, ("cold",), 1, seed=3, avoid=["minus three and frost on the door"])
    assert avoided[0].text == "my hands froze on the bike again"
    everything = [x.text for x in LINES]
    assert nearest(LINES, ("cold",), 1, seed=3, avoid=everything)  # all offered lately: any rather than none
    assert nearest(LINES, ("cold",), 0) == [] and nearest([], ("cold",), 2) == []


def test_a_musing_that_repeats_a_shown_line_copies_it():
    line = "minus three this morning, frost feathers on the shed door"
    assert copies("Minus three this morning, frost feathers on the shed door!", line)
    assert copies("12 km up and minus three this morning, frost feathers on the shed door", line)
    assert not copies("minus fifty up here, no shed door in sight", line)
    assert not copies("anything", "")


def test_the_file_reads_back_and_a_bad_one_is_named():
    f = OwnerLines("en", tuple(LINES))
    assert OwnerLines.loads(f.dumps()) == f
    with pytest.raises(LinesError, match=r"lines.json: not JSON \(line 1"):
        OwnerLines.loads("{", "lines.json")
    with pytest.raises(LinesError, match='"format": 1'):
        OwnerLines.loads('{"format": 7, "lines": []}', "lines.json")
    with pytest.raises(LinesError, match=r"lines\[0\]: unknown situation 'rain'"):
        OwnerLines.loads('{"format": 1, "lines": [{"text": "x", "situations": ["rain"]}]}', "lines.json")
    with pytest.raises(LinesError, match=r"lines\[1\]: expected"):
        OwnerLines.loads('{"format": 1, "lines": [{"text": "x"}, {"situations": []}]}', "lines.json")
