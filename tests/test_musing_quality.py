"""The measure of musings (stratoecho/musing_quality.py) on hand-written musings and facts: each
grounding rule with a hit, a near miss and a number that belongs to another fact; each kind of
degenerate musing; distinct-n and near-duplicates to exact values; the report's section read
from a payload log, with no persona and with no musings."""

from __future__ import annotations

import json

import pytest

from sim.bench.report.musing_report import describe_musings, logged_musings, musings_section, quality_of_flight
from stratoecho.musing_quality import (
    TOLD_KINDS,
    Musing,
    MusingFacts,
    Request,
    distinct_n,
    judge,
    measure,
    near_duplicates,
    tokens,
    wilson,
)

# Rising through the stratosphere by day; its last question to the ground went unanswered.
UP = MusingFacts(phase="ascent", alt_m=21400, temp_c=-55.2, box_temp_c=4.6, pressure_hpa=46.0, batt_v=3.81,
                 mode="nominal", sun_up=True, sats=9, requests=(Request("weather", "silent_link"),), memories=2)
WARM_NIGHT = MusingFacts(phase="descent", alt_m=900, temp_c=15.0, box_temp_c=20.0, sun_up=False)


def grounded(text: str, facts: MusingFacts = UP) -> tuple[str, ...]:
    return judge(Musing(text, facts)).grounded


def mismatched(text: str, facts: MusingFacts = UP) -> tuple[str, ...]:
    return judge(Musing(text, facts)).mismatched


@pytest.mark.parametrize("text", ["21 km up and still going", "at 21.4 kilometres", "about 20 km", "21,400 m",
                                  "70,000 feet", "some 13 miles above the fields"])
def test_an_altitude_within_a_tenth_with_its_unit_is_grounded(text):
    assert grounded(text) == ("altitude",)


@pytest.mark.parametrize("text", ["19 km", "24 km up", "2,140 m"])
def test_an_altitude_further_than_a_tenth_is_a_mismatch(text):
    assert grounded(text) == () and mismatched(text) == ("altitude",)


def test_a_number_of_another_fact_or_without_a_unit_is_no_altitude():
    assert grounded("46 km high") == () and mismatched("46 km high") == ("altitude",)  # 46 is the pressure
    assert judge(Musing("21400 of them", UP)) == judge(Musing("nothing", UP))  # no unit: no mention
    assert mismatched("rising at 5 m/s") == ()  # a speed, and "rising" is its phase
    assert grounded("2 km", MusingFacts(alt_m=None)) == () and mismatched("2 km", MusingFacts()) == ("altitude",)


@pytest.mark.parametrize("text", ["-55 °C out there", "−53°C", "minus 58 degrees", "55 below zero", "-67 °F",
                                  "it is 5 degrees in my box", "-56C"])
def test_a_temperature_within_three_degrees_of_either_reading_is_grounded(text):
    assert "temperature" in grounded(text)


@pytest.mark.parametrize("text", ["-59 °C", "-51 degrees", "55 degrees", "21 degrees"])
def test_a_temperature_off_by_more_than_three_or_without_its_sign_or_of_another_fact_is_a_mismatch(text):
    # 55 without its minus is not -55; 21 is the altitude in km, not a temperature
    assert "temperature" not in grounded(text) and "temperature" in mismatched(text)


def test_degrees_of_an_angle_are_no_temperature():
    for text in ("52 degrees north", "the sun 10° above the horizon", "5 degrees below the horizon"):
        j = judge(Musing(text, UP))
        assert "temperature" not in j.grounded + j.mismatched


def test_cold_words_count_only_when_a_temperature_it_was_told_is_below_zero():
    assert grounded("so cold, freezing really") == ("cold",)
    assert grounded("icy", MusingFacts(temp_c=15.0, box_temp_c=-1.0)) == ("cold",)  # the box is below zero
    assert mismatched("so cold", WARM_NIGHT) == ("cold",)
    assert mismatched("so cold", MusingFacts()) == ("cold",)  # told no temperature: nothing to check it by
    assert grounded("a bold coldness", UP) == ()  # a word, not part of one


@pytest.mark.parametrize("phase,text", [("ascent", "climbing still"), ("ascent", "I am rising"),
                                        ("float", "just floating now"), ("descent", "the parachute is open"),
                                        ("descent", "falling home"), ("landed", "landed in a field"),
                                        ("pre-launch", "waiting on the pad for launch")])
def test_a_word_of_its_own_phase_is_grounded(phase, text):
    assert grounded(text, MusingFacts(phase=phase)) == ("phase",)


def test_words_of_only_another_phase_are_a_mismatch_and_an_unknown_phase_carries_none():
    assert mismatched("falling fast", UP) == ("phase",)
    assert grounded("floating, neither rising nor falling", MusingFacts(phase="float")) == ("phase",)
    assert mismatched("rising", MusingFacts(phase="unknown")) == ("phase",)
    assert grounded("arising from sleep", UP) == ()  # inside a word: no mention


def test_the_sun_by_day_and_the_night_by_night():
    assert grounded("the sunshine on my skin") == ("sun",)
    assert grounded("stars everywhere", WARM_NIGHT) == ("sun",)
    assert mismatched("stars everywhere", UP) == ("sun",)
    assert mismatched("what a sunny afternoon", WARM_NIGHT) == ("sun",)
    assert judge(Musing("the dark sky", UP)).mismatched == ()  # dark: by day at 20 km the sky is dark too
    assert mismatched("night", MusingFacts()) == ("sun",)


def test_pressure_and_battery_numbers_with_their_units():
    assert grounded("only 46 hPa of air") == ("pressure",)
    assert grounded("45 mbar") == ("pressure",)
    assert mismatched("50 hPa") == ("pressure",)  # 4 off: over 5 % and 2 hPa
    assert grounded("the battery at 3.8 V") == ("battery",)
    assert grounded("3810 mV left") == ("battery",)
    assert mismatched("3.6 volts") == ("battery",)
    assert mismatched("46 V") == ("battery",)  # the pressure's number with a battery's unit


def test_an_unanswered_question_counts_only_when_the_prompt_carried_a_failed_one():
    assert grounded("nobody answered me") == ("request",)
    assert grounded("I didn't hear back from the ground") == ("request",)
    answered = MusingFacts(requests=(Request("news", "ok"),))
    assert mismatched("no answer again", answered) == ("request",)
    assert mismatched("no answer again", MusingFacts()) == ("request",)
    assert grounded("the answer is blue") == ()


def test_several_kinds_in_one_musing():
    j = judge(Musing("Rising through 21 km at -54 °C, sunny and cold. Nobody answered. 50 hPa?", UP))
    assert j.grounded == ("altitude", "temperature", "cold", "phase", "sun", "request")
    assert j.mismatched == ("pressure",)


@pytest.mark.parametrize("musing,kind", [
    (Musing(""), "empty"),
    (Musing("", raw_chars=9), "no_words"),  # it wrote only placeholders, which fit_musing took out
    (Musing("<PHONE_1> <EMAIL_"), "no_words"),
    (Musing("... !! —"), "no_words"),
    (Musing("hahahahahaha"), "loop"),
    (Musing("I am up. The sky. I am up."), "loop"),
    (Musing("the sky the sky the sky the sky is"), "loop"),
    (Musing("no no no no yes"), "loop"),
    (Musing("the sky is bl", finish="length"), "cut_mid_word"),
])
def test_each_kind_of_degenerate_musing(musing, kind):
    assert judge(musing).degenerate == (kind,)


@pytest.mark.parametrize("musing", [
    Musing("the sky is bl", finish="stop"),  # the model ended there itself
    Musing("the sky is blue.", finish="length"),
    Musing("the sky is so wide and…", finish="length", cut_by_budget=True),
    Musing("the cat sat on the mat and the dog"),  # "the" three times in nine words is English
    Musing("I am up. I am up there"),
    Musing("hahaha, no"),
    Musing("I"),
])
def test_near_misses_are_not_degenerate(musing):
    assert judge(musing).degenerate == ()


def test_a_cut_by_the_budget_is_counted_apart_from_the_degenerate():
    q = measure([Musing("the sky is so wide and…", finish="length", cut_by_budget=True), Musing("fine.")])
    assert q["cut_by_budget"]["count"] == 1 and q["degenerate"]["count"] == 0


def test_distinct_n_exact_values():
    d = distinct_n([tokens("The sky is blue."), tokens("the sky is grey")])
    assert d == {"distinct_1": 0.625, "distinct_2": 0.6667, "words": 8, "bigrams": 6}
    assert tokens("I'm at 21.4 km, it’s cold") == ["i'm", "at", "21.4", "km", "it's", "cold"]
    assert distinct_n([]) == {"distinct_1": None, "distinct_2": None, "words": 0, "bigrams": 0}


def test_near_duplicates_are_the_repeats_of_an_earlier_musing():
    texts = [tokens(t) for t in ("the sky is dark and I am 21.4 km up", "the sky is dark and I am 22.1 km up",
                                 "a wholly different thought about the fields", "The sky is dark and I am 21.4 km up!",
                                 "wow", "wow", "the sky")]
    assert near_duplicates(texts) == [1, 3, 5]
    assert near_duplicates(texts, threshold=0.9) == [3, 5]


def test_wilson_interval_known_values():
    assert wilson(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson(0, 0) is None


def test_measure_counts_shares_and_intervals_of_a_sample():
    sample = [Musing("Rising at 21 km, so cold.", UP), Musing("the sky is bl", UP, finish="length"),
              Musing("", MusingFacts(phase="ascent")), Musing("Rising at 21 km, so cold!", UP)]
    q = measure(sample)
    assert q["measured"] == 4
    assert {k: q["grounded"][k] for k in ("count", "of", "share")} == {"count": 2, "of": 4, "share": 0.5}
    assert q["grounded"]["ci95"] == [0.1500, 0.8500]
    by = q["grounded"]["by_kind"]
    assert set(by) == set(TOLD_KINDS)  # the time aloft, speed and distance are never told: claims, not grounding
    assert (by["altitude"]["count"], by["altitude"]["of"]) == (2, 3)  # the empty one was told no altitude
    assert (by["phase"]["count"], by["phase"]["of"]) == (2, 4)
    assert (by["request"]["count"], by["request"]["of"], by["request"]["mismatched"]) == (0, 3, 0)
    d = q["degenerate"]
    assert (d["count"], d["by_kind"]["empty"]["count"], d["by_kind"]["cut_mid_word"]["count"]) == (2, 1, 1)
    assert q["near_duplicates"]["count"] == 1 and q["near_duplicates"]["of"] == 3  # the empty one has no words
    assert q["distinct"]["words"] == 16 and "note" not in q


def test_an_empty_sample_says_so_and_divides_by_nothing():
    q = measure([])
    assert q["measured"] == 0 and q["note"] == "no musings to measure"
    assert q["grounded"]["share"] is None and q["grounded"]["ci95"] is None
    assert q["distinct"]["distinct_1"] is None


def test_facts_go_to_a_dict_and_back_and_junk_is_left_out():
    assert MusingFacts.from_dict(UP.to_dict()) == UP
    assert "requests" not in MusingFacts(phase="ascent").to_dict()
    junk = MusingFacts.from_dict({"alt_m": "high", "temp_c": float("nan"), "sun_up": "yes", "fix": False,
                                  "requests": ["x", {"api": "news", "outcome": "offline"}], "new_key": 1})
    assert junk == MusingFacts(fix=False, requests=(Request("news", "offline"),))
    assert MusingFacts.from_dict(None) == MusingFacts()


# ----------------------------------------------------------------------------- from a flight's folder


def event(kind: str, t_s: float, **fields) -> str:
    return json.dumps({"event": kind, "t_s": t_s, "boot": 1, "finish": "stop", "facts": UP.to_dict(), **fields})


def test_the_report_section_reads_every_musing_of_the_log_in_order(tmp_path):
    (tmp_path / "payload.log").write_text("\n".join([
        json.dumps({"event": "listening", "address": "127.0.0.1:1"}),
        event("musing", 180.0, seq=1, text="Rising at 21 km.", cut=False),
        "Current thread 0x7f (most recent call first): musing",  # a stack dump after a watchdog kill
        event("musing_dropped_by_guard", 360.0, reasons=["phone"]),
        event("musing_empty", 540.0, raw_chars=0),
        '{"event": "musing", "text": "half a li',  # a line cut by a power cut
        event("musing", 720.0, seq=2, text="the sky is bl", cut=False, finish="length"),
    ]) + "\n")
    logged = logged_musings(tmp_path / "payload.log")
    assert [m.t_s for m in logged] == [180.0, 360.0, 540.0, 720.0]
    section = musings_section(tmp_path, first=3)
    q = section["quality"]
    assert q["measured"] == 3 and q["withheld_by_guard"] == 1
    assert q["grounded"]["count"] == 1 and q["degenerate"]["count"] == 2
    first = section["first"]
    assert [e["t_s"] for e in first] == [180.0, 360.0, 540.0]
    assert first[0] == {"t_s": 180.0, "boot": 1, "seq": 1, "text": "Rising at 21 km.", "finish": "stop",
                        "facts": UP.to_dict(), "judged": {"grounded": ["altitude", "phase"], "mismatched": [],
                                                          "degenerate": [], "cut_by_budget": False}}
    assert first[1]["text"] is None and first[1]["withheld_by_guard"] == ["phone"]
    assert quality_of_flight(tmp_path) == q
    words = "\n".join(describe_musings(section))
    assert "3 musings measured (1 held back by the guard)" in words and '"Rising at 21 km."' in words
    assert "held back by the guard: phone" in words and "1 empty" in words


def test_no_persona_or_no_musings_says_so(tmp_path):
    section = musings_section(tmp_path, persona=False)
    assert section == {"quality": {"measured": 0, "note": "no persona flew"}, "first": []}
    assert describe_musings(section) == ["  words      no persona flew"]
    (tmp_path / "payload.log").write_text(json.dumps({"event": "listening"}) + "\n")
    q = musings_section(tmp_path)["quality"]
    assert q["measured"] == 0 and q["note"] == "the persona made no musings" and q["grounded"]["share"] is None
    (tmp_path / "report.json").write_text(json.dumps({"persona": None}))
    assert quality_of_flight(tmp_path)["note"] == "no persona flew"
