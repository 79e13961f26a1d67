"""The truth guard (payload/persona/truth.py) and the claims it holds a musing to
(stratoecho/musing_claims.py): a false musing of every kind is caught, a true one passes, and the
payload cuts, makes again or holds back what is false, counting it. The false musings are those
the persona flew in the demo and the Pi configuration (issue 40), held against what the payload
knew then."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from payload.persona import truth
from payload.persona.worker import Generation
from stratoecho.bundle import load_bundle
from stratoecho.musing_claims import MusingFacts, Request, claims
from tests.test_payload import _daemon

# Rising through 6.5 km an hour and a half after launch, at -30 °C, drifting east at 97 km/h, by day.
FLIGHT = MusingFacts(phase="ascent", alt_m=6500, temp_c=-30.0, box_temp_c=4.0, pressure_hpa=440.0, batt_v=3.9,
                     sun_up=True, aloft_s=5400, speed_kmh=97.0, rate_m_s=5.0, distance_km=40.0, battery_share=0.8)

FALSE = {
    "time_aloft": ["I've been up for 28 hours", "I've been flying for 12 years now", "I've been up for 10 hours",
                   "the balloon has been in space for 12 hours so far", "we launched 5 minutes ago",
                   "up for a little over 12 hours", "it's 12 hours of climbing"],
    "altitude": ["it's 20 km up", "the box is at 150 km", "I'm at 30,000 feet"],
    "distance": ["I've drifted 300 km east", "we're 2 km from home"],
    "temperature": ["it's 39 degrees out here", "a balmy 20 °C"],
    "warm": ["it's very hot up here", "it's getting warm"],
    "phase": ["I'm going to climb down now", "falling fast under the parachute", "landed at last"],
    "speed": ["the wind from the east at 50 km per hour", "about 20 km per hour", "doing 300 mph"],
    "battery": ["my phone's still running at 10 %", "the battery is at 3.1 V", "battery at 20%"],
    "pressure": ["the pressure is 1013 hPa"],
    "sun": ["the stars are out tonight", "it's the middle of the night"],
    "request": ["nobody answered me"],
}
TRUE = {
    "time_aloft": ["I've been up for an hour and a half", "up for 2 hours already", "launched 90 minutes ago",
                   "up for a little over an hour", "90 minutes of flying"],
    "altitude": ["about 6 km up", "6,500 m above the fields", "21,000 feet"],
    "distance": ["I've drifted 40 km east", "35 km from home"],
    "temperature": ["-30 degrees outside", "minus 28 °C", "4 degrees in my box"],
    "cold": ["a cold morning", "freezing out there"],
    "phase": ["still climbing", "rising into the blue"],
    "speed": ["racing along at 90 km/h", "5 m/s straight up", "about 60 mph over the ground"],
    "battery": ["the battery is at 3.9 V", "battery at 80 %"],
    "pressure": ["only 440 hPa out here"],
    "sun": ["the sun is bright", "in the sunshine"],
}


@pytest.mark.parametrize("kind, text", [(k, t) for k, texts in FALSE.items() for t in texts])
def test_every_false_claim_is_caught(kind, text):
    said = claims(text, FLIGHT)
    assert [c.kind for c in said if not c.true] == [kind], said
    assert truth.judge(text, FLIGHT).text is None  # a musing of nothing but the false claim: nothing airs


@pytest.mark.parametrize("kind, text", [(k, t) for k, texts in TRUE.items() for t in texts])
def test_every_true_claim_passes(kind, text):
    said = claims(text, FLIGHT)
    assert [c.kind for c in said] == [kind] and all(c.true for c in said), said
    assert truth.judge(text, FLIGHT).text == text


def test_a_failed_question_and_the_pad_are_true_where_they_are():
    asked = MusingFacts(requests=(Request("weather", "silent_link"),))
    assert [c.true for c in claims("nobody answered me", asked)] == [True]
    assert [(c.kind, c.true) for c in claims("still on the pad", MusingFacts(phase="pre-launch", aloft_s=0))] == [
        ("phase", True)]
    assert claims("up for 3 hours", MusingFacts(phase="pre-launch", aloft_s=0))[0].true is False


def test_what_the_payload_does_not_know_is_no_claim_but_an_invented_reading_is_false():
    unknown = MusingFacts()
    assert claims("drifting at 80 km/h, 40 km from home, up for 3 hours", unknown) == []
    assert [c.true for c in claims("it's 20 km up", unknown)] == [False]  # no fix: a height is invented


def test_degrees_of_an_angle_are_no_temperature():
    """The sample persona said "the sun has moved up to 15 degrees" at +2 °C: an angle, not a claim."""
    cold = MusingFacts(temp_c=2.2, sun_up=True)
    assert [c.kind for c in claims("the sun has moved up to 15 degrees, so I can see", cold)] == ["sun"]
    assert claims("I turned 90 degrees to the wind", cold) == []
    for said in ("the sun is up and it's 15 degrees", "the sun. It is 15 degrees.", "the sun is out, it's 15 degrees"):
        assert [(c.kind, c.true) for c in claims(said, cold) if c.kind == "temperature"] == [("temperature", False)]


def test_a_false_sentence_is_cut_when_what_is_left_is_a_musing():
    text = "The sky above me is deep blue and very quiet. I've been up for 28 hours. The fields are tiny now."
    v = truth.judge(text, FLIGHT)
    assert v.cut and v.text == "The sky above me is deep blue and very quiet. The fields are tiny now."
    assert [c.kind for c in v.false] == ["time_aloft"] and v.counts() == {"time_aloft": [0, 1]}
    assert truth.judge("I've been up for 28 hours; so quiet.", FLIGHT).text is None  # too little left: not cut


def _scripted(d, texts):
    said = iter(texts)
    d.parts.worker.generate = lambda prompt, max_tokens, seed=None: Generation(next(said), 12, 0.01, "stop")
    return said


def test_the_payload_never_queues_a_false_claim(tmp_path, tiny_bundle):
    """Cut, made again, held back: on the pad, at +11 °C, as the bench's world starts."""
    d = _daemon(tmp_path, load_bundle(tiny_bundle))
    d.daemon.run_once("beacon")
    _scripted(d, [
        "The grass below is so green today. It's freezing up here at 20 km.",  # cut: the second sentence
        "I've been flying for 12 years and it's scorching hot.",  # made again...
        "Waiting on the pad for the wind to settle down.",  # ...true
        "The stars are out at midnight and I'm falling.",  # held back: false four times
        "It's 30 km up and minus 50 degrees.",
        "Landed in a field at last.",
        "I've been flying for 12 years.",
    ])
    with capture_logs() as logs:
        assert d.daemon.run_once("think") == "The grass below is so green today."
        assert d.daemon.run_once("think") == "Waiting on the pad for the wind to settle down."
        assert d.daemon.run_once("think") is None
    untrue = [(e["action"], sorted({f.split(":")[0] for f in e["false"]})) for e in logs if e["event"] == "musing_untrue"]
    assert [a for a, _ in untrue] == ["cut", "made again", "made again", "made again", "made again", "held back"]
    for (_, kinds), expected in zip(untrue, (["altitude", "cold"], ["time_aloft"], ["phase"], ["altitude", "temperature"],
                                             ["phase"], ["time_aloft"])):
        assert set(expected) <= set(kinds), untrue
    stats = d.parts.musings.counts
    assert (stats.musings_untrue, stats.musings_held_untrue, stats.musings_queued) == (6, 1, 2)
    queued = [e for e in logs if e["event"] == "musing"]
    assert all(counts[1] == 0 for e in queued for counts in e["claims"].values())
    assert queued[1]["claims"] == {"phase": [1, 0]}
