"""The musing prompt with memories and outcomes: plain words, no NaN, always within budget."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payload.parts.sensors import Readings
from payload.persona.memory import MemoryEntry
from payload.persona.prompts import (
    DEFAULT_PROMPT_CHARS,
    MEMORY_CHARS,
    PromptContext,
    build_prompt,
    describe,
    memory_query,
    musing_messages,
    prompt_budget_chars,
    sun_elevation_deg,
    sun_is_up,
)
from payload.policy.modes import Mode
from payload.policy.phases import Phase

NOON = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
MIDNIGHT = datetime(2026, 6, 1, 0, 0, tzinfo=timezone.utc)
SYSTEM = "You are Ada, a balloon who thinks out loud."


def readings(**kw) -> Readings:
    base = dict(time=NOON, lat=52.6, lon=-2.7, alt_m=21_400.0, sats=9, temp_c=-55.2, pressure_hpa=46.0,
                batt_mv=3810, phase="ascent")
    return Readings(**{**base, **kw})


def musing(i: int, text: str, minutes_ago: float = 10) -> MemoryEntry:
    return MemoryEntry("musing", text, NOON - timedelta(minutes=minutes_ago), 1, i, "self", i)


def note(i: int, text: str) -> MemoryEntry:
    return MemoryEntry("note", text, NOON - timedelta(hours=3), None, None, "uplink", 100 + i)


def user(msgs) -> str:
    assert [m["role"] for m in msgs] == ["system", "user"]
    return msgs[1]["content"]


def test_the_old_call_is_unchanged_in_shape():
    msgs = musing_messages(SYSTEM, readings())
    assert msgs[0] == {"role": "system", "content": SYSTEM}
    assert user(msgs).startswith("Right now you are rising, 21.4 km up, -55 °C outside")
    assert user(msgs).endswith(". What are you thinking?") and "\n" not in user(msgs)


def test_nan_values_are_left_out_never_printed():
    r = readings(temp_c=math.nan, pressure_hpa=math.nan, alt_m=math.nan, box_temp_c=math.nan, batt_ma=math.nan,
                 batt_mv=0)
    text = user(musing_messages(SYSTEM, r, PromptContext(memories=[musing(1, "hello")], outcomes=["x"])))
    assert "nan" not in text.lower() and "°C" not in text and "hPa" not in text and "km up" not in text
    assert "battery" not in text  # 0 mV: no reading, not an empty battery
    assert "rising" in text


@given(temp=st.floats(allow_nan=True, allow_infinity=True), box=st.floats(allow_nan=True, allow_infinity=True),
       alt=st.floats(allow_nan=True, allow_infinity=True), hpa=st.floats(allow_nan=True, allow_infinity=True),
       fix=st.booleans())
def test_no_reading_ever_prints_nan_or_inf(temp, box, alt, hpa, fix):
    text = describe(readings(temp_c=temp, box_temp_c=box, alt_m=alt, pressure_hpa=hpa, fix_valid=fix))
    assert "nan" not in text and "inf" not in text
    memory_query(readings(temp_c=temp, box_temp_c=box, alt_m=alt, fix_valid=fix))  # never raises


def test_plain_words_for_float_mode_box_and_fix():
    r = readings(phase="ascent", box_temp_c=4.6, fix_valid=False)
    text = describe(r, phase=Phase.FLOAT, mode=Mode.LOW_POWER)
    assert text.startswith("floating")  # the detector's phase wins over the reading's
    assert "saving power" in text
    # Never the box or the satellites: a 135M model mused on them instead of the flight.
    assert "box" not in describe(readings(box_temp_c=-2.6)) and "satellite" not in describe(readings(sats=11))
    assert "no GPS fix (last known 21.4 km up)" in text
    assert "survival" in describe(r, mode="survival") and "saving" not in describe(r, mode="nominal")
    assert "battery 3.81 V" in text
    assert describe(readings(temp_c=-0.3)).count("0 °C outside") == 1 and "-0 °C" not in describe(readings(temp_c=-0.3))


def test_day_and_night_from_time_and_place():
    assert sun_elevation_deg(NOON, 52.6, -2.7) > 55  # June, midday, mid-latitudes
    assert sun_elevation_deg(MIDNIGHT, 52.6, -2.7) < -10
    assert sun_is_up(readings()) is True and "in sunlight" in describe(readings())
    assert sun_is_up(readings(time=MIDNIGHT)) is False and "in the night" in describe(readings(time=MIDNIGHT))
    assert sun_is_up(readings(lat=0.0, lon=0.0)) is None  # no fix ever: no guess
    # Just after ground sunset the sun is still up for a payload 30 km high (the horizon dips).
    dusk = datetime(2026, 6, 1, 20, 50, tzinfo=timezone.utc)
    elev = sun_elevation_deg(dusk, 52.6, -2.7)
    assert -5 < elev < 0
    assert sun_is_up(readings(time=dusk, alt_m=30_000.0)) and not sun_is_up(readings(time=dusk, alt_m=0.0))


def test_memory_query_names_the_situation():
    q = memory_query(readings(phase="float", temp_c=-60.0, box_temp_c=-3.0, fix_valid=False), mode="low_power")
    words = q.split()
    assert {"float", "stratosphere", "cold", "freezing", "battery", "power", "lost", "gps", "sun"} <= set(words)
    assert len(words) == len(set(words))
    assert "night" in memory_query(readings(time=MIDNIGHT))
    assert "clouds" in memory_query(readings(alt_m=5000.0)) and "space" in memory_query(readings(alt_m=33_000.0))


def test_memories_and_outcomes_appear_clipped_and_in_order():
    long = "I keep thinking about the horizon and how it curves away. " * 10
    ctx = PromptContext(memories=[note(1, "Sam waves from the hill"), musing(1, long, minutes_ago=20)],
                        outcomes=["asked the ground for the weather at 52.6N: no answer (the link was silent)"])
    p = build_prompt(SYSTEM, readings(), ctx, max_prompt_chars=10_000)
    text = user(p.messages)
    lines = text.split("\n")
    assert lines[0].startswith("Right now you are rising") and lines[-1] == "What are you thinking?"
    assert lines[1] == "You remember:" and lines[2] == "- the ground told you (3 h ago): Sam waves from the hill"
    assert lines[3].startswith("- you thought (20 min ago): I keep thinking")
    assert len(lines[3]) <= len("- you thought (20 min ago): ") + MEMORY_CHARS
    assert lines[4] == "When you reached out lately:" and "no answer (the link was silent)" in lines[5]
    assert (p.memories, p.outcomes, p.dropped_memories, p.over_budget) == (2, 1, 0, False)


def test_budget_is_respected_with_many_long_memories():
    mems = [musing(i, f"memory {i}: " + "the wind sings in the rigging and the sky is black " * 8) for i in range(50)]
    outs = [f"asked the ground about thing {i}: answered after a long while, with many words" for i in range(10)]
    for budget in (300, 500, 800, 1500, 4000):
        p = build_prompt(SYSTEM, readings(box_temp_c=2.0), PromptContext(memories=mems, outcomes=outs), budget)
        assert p.chars == sum(len(m["content"]) for m in p.messages) <= budget, budget
        assert "21.4 km up" in user(p.messages) and p.messages[0]["content"] == SYSTEM
        assert p.dropped_memories + p.memories == 50


def test_drop_order_musings_then_notes_then_outcomes():
    mems = [note(1, "the note to keep longest"), musing(1, "most relevant musing " * 3),
            musing(2, "less relevant musing " * 3), note(2, "a second note")]
    outs = ["oldest outcome, first to go", "newest outcome, kept longest"]
    ctx = PromptContext(memories=mems, outcomes=outs)
    full = build_prompt(SYSTEM, readings(), ctx, 100_000)
    seen = []
    for budget in range(full.chars, 0, -1):
        p = build_prompt(SYSTEM, readings(), ctx, budget)
        state = (tuple(m.text for m in p.kept), p.outcomes)
        if not seen or seen[-1] != state:
            seen.append(state)
    kept_texts = [s[0] for s in seen]
    assert kept_texts[:5] == [
        tuple(m.text for m in mems),
        (mems[0].text, mems[1].text, mems[3].text),  # the least relevant musing first
        (mems[0].text, mems[3].text),  # then the other musing
        (mems[0].text,),  # then the notes, least relevant first
        (),
    ]
    assert [s[1] for s in seen] == [2, 2, 2, 2, 2, 1, 0]  # outcomes only after all memories
    last = build_prompt(SYSTEM, readings(), ctx, 10)
    assert last.over_budget and "21.4 km up" in user(last.messages)  # readings are never dropped
    assert "newest outcome" in user(build_prompt(SYSTEM, readings(), PromptContext(outcomes=outs),
                                                 full.chars - len(mems[0].text)).messages)


def test_caps_and_blank_entries():
    ctx = PromptContext(memories=[musing(i, f"m{i}") for i in range(20)] + [musing(99, "  ")],
                        outcomes=[f"o{i}" for i in range(9)])
    p = build_prompt(SYSTEM, readings(), ctx, 100_000)
    text = user(p.messages)
    assert p.memories == 8 and p.dropped_memories == 13 and "m7" in text and "m8" not in text
    assert p.outcomes == 4 and "o8" in text and "o4" not in text  # the newest outcomes


def test_budget_from_the_context_size():
    assert prompt_budget_chars(256, 48) == DEFAULT_PROMPT_CHARS
    assert prompt_budget_chars(512, 64) > prompt_budget_chars(256, 48)
    assert prompt_budget_chars(64, 64) == 0


@pytest.mark.parametrize("created", [None, datetime(2026, 6, 1, 12, 0), NOON + timedelta(hours=1)])
def test_odd_memory_times_give_no_age_rather_than_an_error(created):
    m = MemoryEntry("musing", "x marks the spot", created, 1, 1)
    text = user(musing_messages(SYSTEM, readings(), PromptContext(memories=[m]), 10_000))
    assert "- you thought: x marks the spot" in text


def test_a_musing_cut_at_the_token_limit_ends_where_it_can():
    from payload.persona.prompts import finish_unfinished

    said = "The box is very cold up here. It has been a long climb and the sky is goi"
    assert finish_unfinished(said, "length") == "The box is very cold up here."  # the last whole sentence: a third or more
    assert finish_unfinished(said, "stop") == said  # the model ended it itself: left alone
    long_then_cut = "Ha. " + "the blue up here goes on and on and on without an end in sight, deep and da"
    assert finish_unfinished(long_then_cut, "length") == long_then_cut.rsplit(" ", 1)[0] + "…"  # "Ha." is too little
    assert finish_unfinished("one two thr", "length") == "one two…"
    assert finish_unfinished("Done. All of it!", "length") == "Done. All of it!"  # stopped on a sentence end
    assert finish_unfinished("word", "length") == "word…"
    assert finish_unfinished("   ", "length") == ""
    assert finish_unfinished("the wind is, ", "length") == "the wind…"


def test_a_musing_that_writes_the_prompts_memory_list_again_ends_before_it():
    """A small model continues the prompt's "- FAR1 said (…): …" list and makes up what FAR1 said:
    on air that would be a quote nobody made. The musing ends where the list begins again."""
    from payload.persona.prompts import cut_prompt_echo

    made_up = "I'm thinking about the sky. It's always something new! - FAR1 said: \"this is a great day\""
    assert cut_prompt_echo(made_up, ["FAR1"]) == "I'm thinking about the sky. It's always something new!"
    assert cut_prompt_echo("- FAR1 said (5 min ago): the river shines", ["FAR1"]) == ""  # nothing of its own: dropped
    assert cut_prompt_echo("Cold up here. the ground told you (3 h ago): rise", []) == "Cold up here."
    # Words of its own stay: another speaker, "said" without the list's form, an unquoted balloon.
    for own in ("and then he said: wow.", "FAR1 said hello to me and I waved", "what you thought: fine",
                "MID2 said: hi"):
        assert cut_prompt_echo(own, ["FAR1"]) == own


def test_a_note_too_long_for_the_context_is_shortened_before_it_is_dropped():
    """Another balloon's words are news: in a small context (a 256-token persona) they lose their
    end, not their place, while at least NOTE_MIN_CHARS of them fit."""
    from payload.persona.memory import heard_from
    from payload.persona.prompts import NOTE_MIN_CHARS

    far = MemoryEntry("note", "the far side of the cloud is brighter than ours and the wind has turned " * 2,
                      NOON - timedelta(minutes=5), None, None, heard_from("FAR1"), 7)
    ctx = PromptContext(memories=[far])
    whole = build_prompt(SYSTEM, readings(), ctx, 100_000)
    assert whole.memories == 1
    shortened = build_prompt(SYSTEM, readings(), ctx, whole.chars - 60)
    text = user(shortened.messages)
    assert shortened.memories == 1 and not shortened.over_budget and shortened.chars <= whole.chars - 60
    assert "FAR1 said" in text and "the far side of the cloud" in text
    gone = build_prompt(SYSTEM, readings(), ctx, whole.chars - len(far.text) + NOTE_MIN_CHARS - 30)
    assert gone.memories == 0 and "FAR1" not in user(gone.messages)
