"""Musings that are not a template and say a figure of the flight (issue 40, item 2): the
openings a flight's musings share, the payload making again a musing that opens as a recent one
did (with the next question), the questions asked in turn, the time aloft said in the prompt as
the truth guard reads it back, and the measure's figure share counted on what aired."""

from __future__ import annotations

from structlog.testing import capture_logs

from payload.persona.memory import MemoryEntry, heard_from
from payload.persona.owner import Owner
from payload.persona.prompts import (
    PHASE_QUESTIONS,
    QUESTION,
    QUESTIONS,
    PromptContext,
    build_prompt,
    describe,
    question,
)
from payload.persona.worker import Generation
from stratoecho.bundle import load_bundle
from stratoecho.musing_claims import MusingFacts, claims
from stratoecho.musing_quality import Musing, measure, opening, openings
from tests.test_payload import _daemon
from tests.test_prompt_context import NOON, readings

ALOFT = MusingFacts(phase="ascent", alt_m=12000, temp_c=-50.0, sun_up=True, aloft_s=4800)


def test_an_opening_is_the_first_three_words_as_a_listener_hears_them():
    assert opening("I’m thinking about the sun. It is bright.") == "i'm thinking about"
    assert opening("I'm Thinking ABOUT clouds") == "i'm thinking about"
    assert opening("Blue.") == "blue" and opening("") == ""


def test_openings_name_the_commonest_and_its_share():
    texts = ["I'm thinking about the sun.", "I'm thinking about the wind.", "I'm thinking of home.",
             "The sky is dark blue.", "", "I'm thinking about rain."]
    o = openings(texts)
    assert o["top"][0] == {"opening": "i'm thinking about", "count": 3}
    assert o["most"]["count"] == 3 and o["most"]["of"] == 5 and o["most"]["share"] == 0.6  # the empty one opens nothing
    assert o["most"]["goal"] == 0.15


def test_the_figure_share_counts_what_aired_and_only_true_figures():
    musings = [
        Musing("Rising through 12 km now, and the sky is dark.", ALOFT),  # altitude and phase: a figure
        Musing("I was launched 80 minutes ago.", ALOFT),  # time aloft, true
        Musing("The sun is bright on the fabric.", ALOFT),  # the sun: grounded, not a figure
        Musing("It's 30 km up and I am falling.", ALOFT),  # false figures only
        Musing("Climbing at 12 km.", ALOFT, aired=False),  # made again: not what listeners read
    ]
    q = measure(musings)
    assert (q["figure"]["count"], q["figure"]["of"]) == (2, 4)
    assert q["grounded"]["count"] == 4 and q["grounded"]["without_sun"]["count"] == 3
    assert q["openings"]["most"]["of"] == 4


def test_the_questions_go_in_turn_aloft_and_the_plain_one_on_the_ground():
    asked = [question(n, "ascent") for n in range(len(QUESTIONS) * 2)]
    assert asked[:len(QUESTIONS)] == list(QUESTIONS) and asked[len(QUESTIONS):] == list(QUESTIONS)
    assert {question(n, p) for n in range(7) for p in ("pre-launch", "landed")} == {QUESTION}
    assert question(3, "descent", figure=True) == PHASE_QUESTIONS["descent"][0] == "Are you coming down now?"
    assert question(4, "descent", figure=True) == "How is the fall going?"
    p = build_prompt("You are Ada.", readings(), PromptContext(phase="float", question=QUESTIONS[2]))
    assert p.messages[1]["content"].endswith(QUESTIONS[2]) and QUESTION not in p.messages[1]["content"]


def test_the_time_aloft_is_said_as_the_guard_reads_it_back():
    for aloft_s, words in ((4800, "launched 80 minutes ago"), (9000, "launched 2.5 hours ago")):
        said = describe(readings(), phase="ascent", aloft_s=aloft_s)
        assert said.endswith(words)
        facts = MusingFacts(phase="ascent", aloft_s=aloft_s)
        assert [(c.kind, c.true) for c in claims(f"I was {words}.", facts)] == [("time_aloft", True)]
    assert "launched" not in describe(readings(), phase="pre-launch", aloft_s=0)
    assert "launched" not in describe(readings(), phase="ascent", aloft_s=None)


def test_a_small_context_asks_the_plain_question_before_it_drops_a_note():
    """The bench's 256-token context: another balloon's words are news, the longer question and the
    time since launch are not, so those go first (after its own musings)."""
    heard = MemoryEntry("note", "the jet stream is fast today and I can see the coast", NOON, None, None,
                        heard_from("FAR1"), 1)
    ctx = PromptContext(phase="ascent", memories=[heard], aloft_s=4800, question=QUESTIONS[3])
    roomy = build_prompt("You are Ada.", readings(), ctx, max_prompt_chars=2000)
    assert roomy.question == QUESTIONS[3] and roomy.said_aloft and roomy.memories == 1
    need = roomy.chars - len(QUESTIONS[3]) + len(QUESTION)  # room for all but the longer question
    tight = build_prompt("You are Ada.", readings(), ctx, max_prompt_chars=need)
    assert tight.question == QUESTION and tight.said_aloft and tight.memories == 1
    tighter = build_prompt("You are Ada.", readings(), ctx, max_prompt_chars=need - len(", launched 80 minutes ago"))
    assert tighter.question == QUESTION and not tighter.said_aloft and tighter.memories == 1
    assert "FAR1 said" in tighter.messages[1]["content"] and "launched" not in tighter.messages[1]["content"]
    assert build_prompt("You are Ada.", readings(), ctx, max_prompt_chars=need - 40).memories == 0  # then the note


def _scripted(d, texts, prompts):
    """The persona says `texts` in turn; its bundle as one built before [owner] (no lines, voice or
    fillers), so the first version without fault airs (tests/test_musing_candidates.py: with them)."""
    said = iter(texts)
    d.parts.musings.owner = Owner()

    def generate(prompt, max_tokens, seed=None):
        prompts.append(prompt)
        return Generation(next(said), 12, 0.01, "stop")
    d.parts.worker.generate = generate


def test_a_musing_that_opens_as_a_recent_one_did_is_made_again_with_the_next_question(tmp_path, tiny_bundle):
    d = _daemon(tmp_path, load_bundle(tiny_bundle))
    d.daemon.run_once("beacon")
    prompts: list[str] = []
    _scripted(d, [
        "I'm thinking about the grass below the pad.",
        "I'm thinking about the wind on the pad today.",  # a template: made again...
        "The wind is gentle here on the pad.",  # ...and this airs
        "I'm thinking about the clouds over the hills.",  # a template again: made again...
        "I'm thinking about the hills below.",  # ...and again...
        "I'm thinking about the van.",  # ...and again...
        "It's 30 km up and minus 50 degrees.",  # ...false: silence rather than the template
        "It's 30 km up above the hills.", "It's 31 km up above the hills.",  # false three times...
        "It's 32 km up above the hills.",
        "I'm thinking about the van again.",  # ...and the last a template: held back too
    ], prompts)
    with capture_logs() as logs:
        assert d.daemon.run_once("think") == "I'm thinking about the grass below the pad."
        assert d.daemon.run_once("think") == "The wind is gentle here on the pad."
        assert d.daemon.run_once("think") is None
        assert d.daemon.run_once("think") is None
    again = [(e["why"], e["opening"]) for e in logs if e["event"] == "musing_made_again"]
    assert again == [("opening", "i'm thinking about")] * 4
    assert [e["action"] for e in logs if e["event"] == "musing_untrue"] == ["made again"] * 4
    held = [e for e in logs if e["event"] == "musing_held_back"]
    # The first held back was logged when it was made again; the second, the last made, with its text.
    assert [(e["why"], e.get("text")) for e in held] == [("opening", None), ("opening", "I'm thinking about the van again.")]
    stats = d.parts.musings.counts
    assert (stats.made_again, stats.musings_queued, stats.musings_held_untrue, stats.musings_held_repeated) == (
        {"opening": 4}, 2, 0, 2)
    assert len(prompts) == 11


def test_a_musing_is_made_again_for_a_figure_only_while_one_is_owed(tmp_path, tiny_bundle):
    d = _daemon(tmp_path, load_bundle(tiny_bundle))
    d.cfg.persona.figure_goal = 0.3
    d.cfg.persona.clauses = False  # asked its phase, as before the payload wrote clauses (test_musing_candidates.py)
    d.daemon.run_once("beacon")  # on the pad: "waiting on the pad" is a true phase, a figure
    _scripted(d, [
        "The grass is so green this morning.",  # none of the last had a figure: made again...
        "Still waiting on the pad for the wind.",  # ...for this one
        "The wind is soft and the sky is grey.",  # 1 of 2 would have one: none owed, it airs
        "A kite went over the hedge just now.",  # 1 of 3: still none owed
        "A crow sat on the fence by the van.",  # 1 of 4 would be too few: made again, three times...
        "The tea in the flask is nearly gone.",
        "My boots are wet from the long grass.",
        "The van smells of coffee and cables.",  # ...and the first of the four airs
    ], prompts := [])
    with capture_logs() as logs:
        assert d.daemon.run_once("think") == "Still waiting on the pad for the wind."
        assert d.daemon.run_once("think") == "The wind is soft and the sky is grey."
        assert d.daemon.run_once("think") == "A kite went over the hedge just now."
        assert d.daemon.run_once("think") == "A crow sat on the fence by the van."
    assert [e["why"] for e in logs if e["event"] == "musing_made_again"] == ["no figure"] * 4
    # The last version, worse than the first, is logged too: every generation is measured (sim report).
    assert [e["text"] for e in logs if e["event"] == "musing_passed_over"] == ["The van smells of coffee and cables."]
    assert d.parts.musings.counts.musings_generated == len(prompts) == len(
        {e["text"] for e in logs if e["event"] in ("musing", "musing_made_again", "musing_passed_over")})
    assert list(d.parts.musings._figures) == [True, False, False, False]
    asked = [p.rsplit("?", 1)[0].rsplit(". ", 1)[-1].split("\n")[-1] + "?" for p in prompts]
    wait, before = PHASE_QUESTIONS["pre-launch"]
    assert asked == [QUESTION, before, QUESTION, QUESTION, QUESTION, wait, before, wait]  # its phase's, when owed, in turn


def _musing_events(logs: list[dict]) -> list[str]:
    """The musing events a log at the commands' default level (INFO) shows; each test starts with
    structlog unfiltered (tests/conftest.py), so the debug ones are left out here."""
    return [e["event"] for e in logs if e["event"].startswith("musing") and e["log_level"] != "debug"]


def test_a_reboot_remembers_the_openings_of_its_last_musings(tmp_path, tiny_bundle):
    d = _daemon(tmp_path, load_bundle(tiny_bundle))
    d.daemon.run_once("beacon")
    _scripted(d, ["I'm thinking about the grass below the pad.", "I'm thinking about the sky again today.",
                  "A quiet morning here on the pad."], [])
    assert d.daemon.run_once("think")
    d.parts.musings._openings = None  # what a new boot's producer starts with: its memory.db holds the rest
    with capture_logs() as logs:
        assert d.daemon.run_once("think") == "A quiet morning here on the pad."
    assert _musing_events(logs) == ["musing_made_again", "musing"]


def test_a_version_made_again_that_cannot_air_leaves_the_one_before_it(tmp_path, tiny_bundle):
    """Asked again for a figure, a persona may answer in two words: asked on, and when every answer
    is too short, the musing it made first airs."""
    d = _daemon(tmp_path, load_bundle(tiny_bundle))
    d.cfg.persona.figure_goal = 0.3
    d.cfg.persona.clauses = False  # asked its phase, as before the payload wrote clauses (test_musing_candidates.py)
    d.daemon.run_once("beacon")
    _scripted(d, ["The grass is so green this morning.", "Oh yes", "Hm", "Still waiting"], [])
    with capture_logs() as logs:
        assert d.daemon.run_once("think") == "The grass is so green this morning."
    assert _musing_events(logs) == [
        "musing_made_again", "musing_too_short", "musing_too_short", "musing_too_short", "musing"]
    assert d.parts.musings.ask_again is False  # the musing aired: nothing to ask again


def test_a_persona_that_never_answers_with_a_figure_is_not_asked_for_one_for_ever(tmp_path, tiny_bundle):
    """Three questions about its phase answered without one, and the payload stops spending
    generations on figures this boot: a model that cannot say one (issue 40) makes each musing once."""
    d = _daemon(tmp_path, load_bundle(tiny_bundle))
    d.cfg.persona.figure_goal = 0.3
    d.cfg.persona.clauses = False  # asked its phase, as before the payload wrote clauses (test_musing_candidates.py)
    d.daemon.run_once("beacon")
    texts = [f"A quiet thought number {n} about the hedge." for n in range(10)]
    _scripted(d, [f"{t[:2]}{i} {t[2:]}" for i, t in enumerate(texts)], prompts := [])
    with capture_logs() as logs:
        for _ in range(4):
            assert d.daemon.run_once("think")
    assert [e["why"] for e in logs if e["event"] == "musing_made_again"] == ["no figure"] * 3
    assert len(prompts) == 4 + 3  # the first musing asked three more times; the next three once each


def test_the_time_aloft_counts_as_told_only_where_the_prompt_said_it():
    """A small context's budget may leave "launched N minutes ago" out: the measure then does not
    count the time aloft among what the musing was told (its `aloft_told` fact)."""
    from stratoecho.musing_quality import carried
    told = MusingFacts(phase="ascent", aloft_s=4800)
    assert "time_aloft" in carried(told)
    left_out = MusingFacts.from_dict({**told.to_dict(), "aloft_told": False})
    assert left_out.aloft_told is False and "time_aloft" not in carried(left_out) and "phase" in carried(left_out)
    assert MusingFacts.from_dict(told.to_dict()).aloft_told is True and "aloft_told" not in told.to_dict()
