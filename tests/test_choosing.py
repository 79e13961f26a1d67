"""Choosing the musing that airs among candidates (issue 49, item 3): payload/persona/choosing.py's
rule, the clauses the payload writes (payload/persona/clauses.py) and how many candidates a board
affords (payload/policy/budget.py `candidates`)."""

from __future__ import annotations

import math

from payload.persona import clauses
from payload.persona.choosing import Candidate, choose, why_not
from payload.policy.budget import MAX_CANDIDATES, candidates
from stratoecho.musing_claims import FIGURE_KINDS, MusingFacts, claims


def test_what_may_not_air_is_never_chosen():
    false = Candidate(0, None, voice=0.99, beyond=9)
    copy = Candidate(1, "minus three and frost on the door", copies=True, voice=0.99, beyond=9)
    assert choose([false, copy], owes_figure=False) is None
    ok = Candidate(2, "the sky is a deep blue", voice=0.1, beyond=2)
    assert choose([false, copy, ok], owes_figure=False) is ok


def test_a_fresh_opening_then_a_figure_then_substance_then_quality():
    stale = Candidate(0, "i'm thinking about it", fresh=False, figure=True, voice=0.99, beyond=9)
    no_figure = Candidate(1, "the clouds look like sheep", figure=False, voice=0.99, beyond=9)
    figure = Candidate(2, "12 km up and cold", figure=True, voice=0.2, beyond=1)
    assert choose([stale, no_figure, figure], owes_figure=True) is figure
    assert choose([stale, no_figure, figure], owes_figure=False) is no_figure  # no figure owed: quality decides
    fillers = Candidate(3, "ja haha ja", figure=True, voice=0.99, beyond=0)
    assert choose([fillers, figure], owes_figure=True) is figure  # "ja" and "haha" are not a musing
    hers = Candidate(4, "12 km up, my fingers would be gone by now", figure=True, voice=0.9, beyond=6)
    assert choose([figure, hers], owes_figure=True, owner_beyond=6.0) is hers
    assert choose([hers, Candidate(5, hers.text, figure=True, voice=0.9, beyond=6)], True, 6.0) is hers  # ties: earlier


def test_something_true_of_the_moment_goes_before_a_better_voice():
    train = Candidate(0, "the night train north was two days of tea", voice=0.95, beyond=8)
    aloft = Candidate(1, "the cold up here bites through the foam", grounded=True, voice=0.6, beyond=6)
    assert choose([train, aloft], owes_figure=False) is aloft


def test_quality_weighs_voice_and_substance_against_the_owners_rate():
    c = Candidate(0, "x", voice=0.8, beyond=3)
    assert math.isclose(c.quality(owner_beyond=6.0), (0.8 + 0.5) / 2)
    assert math.isclose(c.quality(owner_beyond=2.0), (0.8 + 1.0) / 2)  # more than she says: capped
    assert math.isclose(Candidate(0, "x").quality(), (0.5 + 1.0) / 2)  # a bundle without [owner]


def test_ideal_and_why_not():
    assert Candidate(0, "a fine musing", figure=True, beyond=3).ideal(owes_figure=True)
    assert not Candidate(0, "a fine musing", beyond=3).ideal(owes_figure=True)
    assert why_not(Candidate(0, "a", fresh=False), True) == "opening"
    assert why_not(Candidate(0, "a"), True) == "no figure"
    assert why_not(Candidate(0, "a", beyond=0), False) == "fillers"
    assert why_not(Candidate(0, "a", beyond=2), False) == ""


EN_CLAUSES = {"altitude": ["{km} km up and"], "temperature": ["{deg} out here,", "it's {deg} and"],
              "time_aloft": ["up for {minutes} minutes now and"], "time_aloft_hours": ["{hours} hours up and"],
              "ascent": ["still climbing,"], "descent": ["coming down now and"]}
AT = MusingFacts(phase="ascent", alt_m=12_400, temp_c=-48.6, sun_up=True, aloft_s=3000, fix=True)


def test_a_clause_is_written_only_where_its_figure_is_known_and_worth_saying():
    assert clauses.available(AT) == ["altitude", "temperature", "time_aloft", "phase"]
    pad = MusingFacts(phase="pre-launch", alt_m=80, temp_c=6, aloft_s=0)
    assert clauses.available(pad) == ["temperature", "phase"]
    lost = MusingFacts(phase="float", alt_m=30_000, fix=False, aloft_s=300)
    assert clauses.available(lost) == ["phase"]


def test_each_clause_is_true_of_the_flight_and_read_so_by_the_guard():
    number = lambda x, d: f"{x:.{d}f}"  # noqa: E731
    for kind in clauses.KINDS:
        said = clauses.write(kind, AT, EN_CLAUSES, number)
        found = [c for c in claims(said.lower(), AT) if c.kind in FIGURE_KINDS]
        assert found and all(c.true for c in found), (kind, said, found)
    assert clauses.write("altitude", AT, EN_CLAUSES, number) == "12.4 km up and"
    assert clauses.write("temperature", AT, EN_CLAUSES, number, 1) == "it's -49 °C and"
    hours = MusingFacts(phase="float", aloft_s=9000)
    assert clauses.write("time_aloft", hours, EN_CLAUSES, number) == "2.5 hours up and"
    assert clauses.write("phase", MusingFacts(phase="float"), EN_CLAUSES, number) is None  # no wording for it


def test_a_clause_joins_the_continuation_and_takes_the_owners_case():
    assert clauses.join("12.4 km up and", " the sky is black") == "12.4 km up and the sky is black"
    assert clauses.join("12.4 km up and", "the sky") == "12.4 km up and the sky"
    assert clauses.join("still climbing", ", slowly") == "still climbing, slowly"
    assert clauses.in_owner_case("still climbing,", 0.8) == "still climbing,"
    assert clauses.in_owner_case("still climbing,", 0.2) == "Still climbing,"
    assert clauses.in_owner_case("-49 °C out here", 0.2) == "-49 °C out here"


def test_candidates_fit_a_share_of_the_musing_period():
    zero = candidates(9.0, 600, 64)  # SmolLM2-135M on a Zero 2 W, the Pi configuration's period
    assert zero.n == MAX_CANDIDATES
    assert math.isclose(zero.seconds, zero.prompt_s + zero.n * 64 / 9.0)
    assert candidates(9.0, 120, 64).n == 3  # a faster period leaves room for fewer
    assert candidates(9.0, 60, 64).n == 1
    assert candidates(1.0, 600, 64).n == 1
    assert candidates(9.0, 600, 64, energy=0.2).n == 1  # low energy: the first load shed is the extra ones
    assert candidates(9.0, 600, 64, mode="low_power").n == 1
    assert candidates(float("nan"), 600, 64).n == 1 and candidates(0.0, 600, 64).n == 1
    assert candidates(30.0, 600, 64).n == MAX_CANDIDATES
