"""Reach: requests to the ground's API proxy, answers, silence, re-asks and breakers, on a
fake clock with a fake store; the real Store once, for the record it writes."""

from __future__ import annotations

import math
import random
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from payload.persona.reach import (
    MAX_LINE_CHARS,
    Outcome,
    OutcomeKind,
    Reach,
    ReachPolicy,
    choose_request,
    clean_text,
    describe,
    pick_word,
    rounded_position,
)
from payload.store import StoreError
from stratoecho import wire
from stratoecho.wire import Kind
from stratoecho.wire.uplink import ApiAnswer, ApiStatus
from tests.fakes import FakeClock

# Fast, readable numbers: one attempt waits 100 s; re-asks after 50..70 s, then 100..120 s.
POLICY = ReachPolicy(answer_timeout_s=100, overall_deadline_s=1000, max_attempts=3, retry_initial_s=50,
                     retry_max_s=400, retry_jitter_s=20, failures_to_open=3, cooldown_s=500,
                     max_outstanding=2, max_query_bytes=80, every_n_musings=5)


class FakeEnqueue:
    """Numbers requests like the store (1, 2, 3 ...) and remembers when each was queued."""

    def __init__(self, clock: FakeClock):
        self.clock, self.sent, self.fail = clock, [], None

    def __call__(self, api: str, query: str) -> int:
        if self.fail is not None:
            raise self.fail
        self.sent.append((api, query, self.clock.t))
        return len(self.sent)


def make(policy: ReachPolicy = POLICY, **kw):
    clock = FakeClock(0.0)
    enq = FakeEnqueue(clock)
    return Reach(enq, clock, policy=policy, **kw), clock, enq


def run_until(reach: Reach, clock: FakeClock, t_end: float, step: float = 1.0) -> None:
    while clock.t < t_end:
        clock.t += step
        reach.tick(clock.t)


def last(reach: Reach) -> Outcome:
    return reach.recent_outcomes(1)[0]


def fail_with_timeouts(reach: Reach, api: str, n: int) -> None:
    for i in range(n):
        seq = reach.ask(api, f"q{i}-{api}")
        assert seq is not None
        reach.on_answer(seq, ApiStatus.TIMEOUT, "")


# --------------------------------------------------------------------------- answers


def test_ok_answer_becomes_a_line_for_the_prompt():
    reach, clock, enq = make()
    seq = reach.ask("define", "tropopause")
    assert seq == 1 and enq.sent == [("define", "tropopause", 0.0)]
    assert reach.stats()["outstanding"] == 1
    clock.t = 42.0
    reach.on_answer(seq, ApiStatus.OK, "the boundary between troposphere and stratosphere")
    o = last(reach)
    assert (o.api, o.query, o.kind, o.at, o.attempts) == ("define", "tropopause", OutcomeKind.OK, 42.0, 1)
    assert describe(o) == ("asked the ground what 'tropopause' means: got an answer: "
                           "the boundary between troposphere and stratosphere")
    s = reach.stats()
    assert s["outstanding"] == 0 and s["outcomes"]["ok"] == 1 and s["internal_errors"] == 0


@pytest.mark.parametrize("status", [s for s in ApiStatus if s is not ApiStatus.OK])
def test_every_error_status_ends_as_its_outcome(status):
    reach, clock, _ = make()
    seq = reach.ask("weather", "52.2,0.1")
    reach.on_answer(seq, int(status), "proxy says no")
    o = last(reach)
    assert o.kind == status.name.lower()
    line = describe(o)
    assert line.startswith("asked for the weather at 52.2,0.1: ") and "proxy says no" not in line
    assert reach.stats()["outcomes"][status.name.lower()] == 1 and reach.stats()["outstanding"] == 0


def test_api_status_table_is_what_the_wire_carries():
    # The ground's proxy packs these codes into ApiAnswer.status (u8).
    assert [int(s) for s in ApiStatus] == list(range(8))
    for s in ApiStatus:
        assert ApiAnswer.unpack(ApiAnswer(7, s, "x").pack()).status == s


def test_unknown_status_code_reads_as_upstream_error():
    reach, _, _ = make()
    seq = reach.ask("news", "headlines")
    reach.on_answer(seq, 200, "?")
    assert last(reach).kind is OutcomeKind.UPSTREAM_ERROR
    assert reach.stats()["answers_unknown_status"] == 1


@pytest.mark.parametrize("seq, status, text, kind, counter", [
    ("1", 0, "x", None, "answers_malformed"),
    (None, 0, "x", None, "answers_malformed"),
    (True, 0, "x", None, "answers_malformed"),
    (1.0, 0, "x", None, "answers_malformed"),
    (1, None, "x", OutcomeKind.UPSTREAM_ERROR, "answers_unknown_status"),
    (1, "ok", "x", OutcomeKind.UPSTREAM_ERROR, "answers_unknown_status"),
    (1, -3, "x", OutcomeKind.UPSTREAM_ERROR, "answers_unknown_status"),
    (1, 0, None, OutcomeKind.OK, None),
    (1, 0, 12, OutcomeKind.OK, None),
    (1, 0, b"bytes \xff", OutcomeKind.OK, None),
])
def test_malformed_answers_never_raise(seq, status, text, kind, counter):
    reach, _, _ = make()
    assert reach.ask("news", "headlines") == 1
    reach.on_answer(seq, status, text)
    s = reach.stats()
    assert s["internal_errors"] == 0
    if counter is not None:
        assert s[counter] == 1
    if kind is None:  # ignored: the request is still out
        assert s["outstanding"] == 1 and reach.recent_outcomes(5) == []
    else:
        o = last(reach)
        assert o.kind is kind and s["outstanding"] == 0
        assert o.text == ("bytes \ufffd" if isinstance(text, bytes) else "x" if text == "x" else "")


@given(st.integers(min_value=-5, max_value=2**33), st.integers(min_value=-5, max_value=300), st.text(max_size=400))
def test_any_answer_is_harmless(seq, status, text):
    reach, _, _ = make()
    reach.ask("news", "headlines")
    reach.on_answer(seq, status, text)
    s = reach.stats()
    assert s["internal_errors"] == 0
    for line in map(describe, reach.recent_outcomes(5)):
        assert len(line) <= MAX_LINE_CHARS
        assert not any(unicodedata.category(c)[0] == "C" for c in line)


def test_answer_text_is_clipped_and_cleaned_before_the_prompt():
    reach, _, _ = make()
    seq = reach.ask("news", "headlines")
    hostile = "\x1b[31mRED\x1b[0m\x00 line\nbreak\u202e reversed\u200b " + "very long " * 100
    reach.on_answer(seq, 0, hostile)
    o = last(reach)
    assert o.text.startswith("RED line break reversed very long")
    assert len(o.text) <= POLICY.max_answer_chars and o.text.endswith("…")
    for s in (o.text, describe(o)):
        assert not any(unicodedata.category(c)[0] == "C" for c in s)
        assert "[31m" not in s


# --------------------------------------------------------------------------- silence and re-asks


def test_silent_link_reasks_with_growing_jittered_delays_then_gives_up():
    reach, clock, enq = make()
    reach.ask("news", "headlines")
    run_until(reach, clock, 2000, step=0.5)
    times = [t for _, _, t in enq.sent]
    assert len(times) == POLICY.max_attempts
    # Each re-ask follows a full answer window plus the back-off delay.
    delays = [b - a - POLICY.answer_timeout_s for a, b in zip(times, times[1:])]
    assert 50 <= delays[0] <= 70 + 0.5 and 100 <= delays[1] <= 120 + 0.5
    assert delays[1] > delays[0]
    o = last(reach)
    assert o.kind is OutcomeKind.SILENT_LINK and o.attempts == 3
    assert o.at == pytest.approx(times[-1] + POLICY.answer_timeout_s, abs=0.5)
    assert o.at <= POLICY.overall_deadline_s
    assert describe(o) == "asked for the news (three times): nobody answered"
    s = reach.stats()
    assert s["re_asks"] == 2 and s["outstanding"] == 0 and s["outcomes"]["silent_link"] == 1


def test_overall_deadline_cuts_the_reasks_short():
    # After the first silent window (t=100) a re-ask could not get its own window by t=240.
    policy = ReachPolicy(**{**_fields(POLICY), "overall_deadline_s": 240})
    reach, clock, enq = make(policy)
    reach.ask("news", "headlines")
    run_until(reach, clock, 1000)
    assert len(enq.sent) == 1
    assert last(reach).kind is OutcomeKind.SILENT_LINK and last(reach).at == 100


def test_retry_delays_come_from_exponential_jitter():
    samples = {n: [POLICY.retry_delay_s(n) for _ in range(300)] for n in (1, 2, 3, 4, 5)}
    for n, base in ((1, 50), (2, 100), (3, 200)):
        assert all(base <= d <= base + 20 for d in samples[n])
        assert len(set(samples[n])) > 250  # jittered, not a fixed schedule
    assert all(d == 400 for d in samples[5])  # capped at retry_max_s
    assert min(samples[2]) >= max(samples[1])  # jitter <= initial: always growing
    off = ReachPolicy(retry_initial_s=0, retry_jitter_s=0, retry_max_s=0)
    assert off.retry_delay_s(3) == 0  # tests and benches can switch the waiting off


def test_answer_to_an_earlier_attempt_still_counts_and_the_later_one_is_a_duplicate():
    reach, clock, enq = make()
    first = reach.ask("define", "anemometer")
    run_until(reach, clock, 100 + 70 + 1)  # silent once, re-asked
    assert len(enq.sent) == 2
    reach.on_answer(first, 0, "a wind meter")  # the slow link delivered the first answer
    assert last(reach).kind is OutcomeKind.OK and last(reach).attempts == 2
    reach.on_answer(2, 0, "a wind meter")
    run_until(reach, clock, 2000)
    s = reach.stats()
    assert s["answers_duplicate"] == 1 and s["outcomes"]["ok"] == 1 and len(enq.sent) == 2
    assert s["outcomes"]["silent_link"] == 0


def test_late_answer_after_giving_up_is_recorded_but_harmless():
    reach, clock, _ = make()
    reach.ask("news", "headlines")
    run_until(reach, clock, 2000)
    before = (reach.recent_outcomes(10), reach.stats()["breakers"])
    reach.on_answer(1, 0, "too late")
    reach.on_answer(3, 0, "too late")
    assert (reach.recent_outcomes(10), reach.stats()["breakers"]) == before
    assert reach.stats()["answers_late"] == 2


def test_answer_for_an_unknown_seq_is_ignored_and_counted():
    reach, _, _ = make()
    seq = reach.ask("news", "headlines")
    reach.on_answer(seq + 1000, 0, "for someone else")  # another boot's request, say
    assert reach.recent_outcomes(5) == []
    s = reach.stats()
    assert s["answers_unknown"] == 1 and s["outstanding"] == 1


# --------------------------------------------------------------------------- the breaker


def test_breaker_opens_refuses_half_opens_closes_and_reopens():
    reach, clock, enq = make()
    with capture_logs() as logs:
        fail_with_timeouts(reach, "weather", 3)
        o = last(reach)
        assert o.kind is OutcomeKind.CIRCUIT_OPEN and o.attempts == 3
        assert describe(o) == "stopped asking for the weather for a while: it failed three times"
        assert reach.stats()["breakers"]["weather"] == "open"

        # Open: refused without touching the store.
        n = len(enq.sent)
        clock.t = 499
        assert reach.ask("weather", "52.2,0.1") is None
        assert len(enq.sent) == n and reach.stats()["not_asked"]["circuit_open"] == 1

        # After the cooldown: half-open, one trial.
        clock.t = 500
        reach.tick(clock.t)
        assert reach.stats()["breakers"]["weather"] == "half_open"
        trial = reach.ask("weather", "52.2,0.1")
        assert trial is not None
        assert reach.ask("weather", "52.3,0.1") is None  # the trial is out: nobody else
        reach.on_answer(trial, 0, "clear, -56 C")
        assert reach.stats()["breakers"]["weather"] == "closed"

        # Closed again with a fresh count; three failures reopen it, and a failed trial too.
        fail_with_timeouts(reach, "weather", 2)
        assert reach.stats()["breakers"]["weather"] == "closed"
        fail_with_timeouts(reach, "weather", 1)
        assert reach.stats()["breakers"]["weather"] == "open"
        clock.t += 500
        trial = reach.ask("weather", "52.2,0.1")
        reach.on_answer(trial, ApiStatus.OFFLINE, "")
        assert reach.stats()["breakers"]["weather"] == "open"
        assert last(reach).kind is OutcomeKind.CIRCUIT_OPEN
        assert reach.ask("weather", "52.2,0.1") is None
    moves = [(e["old"], e["new"]) for e in logs if e["event"] == "api_breaker"]
    assert moves == [("closed", "open"), ("open", "half_open"), ("half_open", "closed"),
                     ("closed", "open"), ("open", "half_open"), ("half_open", "open")]


def test_a_silent_trial_is_not_reasked_and_reopens_the_breaker():
    reach, clock, enq = make()
    fail_with_timeouts(reach, "news", 3)
    clock.t = 600
    trial = reach.ask("news", "headlines")
    n = len(enq.sent)
    run_until(reach, clock, 600 + POLICY.answer_timeout_s)
    assert len(enq.sent) == n  # one attempt only
    assert [o.kind for o in reach.recent_outcomes(2)] == [OutcomeKind.SILENT_LINK, OutcomeKind.CIRCUIT_OPEN]
    assert reach.stats()["breakers"]["news"] == "open"
    assert trial is not None


def test_breakers_are_per_api_and_answers_from_a_working_api_do_not_count():
    reach, _, _ = make()
    fail_with_timeouts(reach, "weather", 3)
    assert reach.ask("news", "headlines") is not None
    for i in range(5):  # the word does not exist, the query was odd: the API works
        seq = reach.ask("define", f"word{i}")
        reach.on_answer(seq, ApiStatus.NOT_FOUND if i % 2 else ApiStatus.BAD_REQUEST, "")
    assert reach.stats()["breakers"] == {"weather": "open", "news": "closed", "define": "closed"}


def test_a_success_resets_the_consecutive_count():
    reach, _, _ = make()
    fail_with_timeouts(reach, "news", 2)
    seq = reach.ask("news", "headlines")
    reach.on_answer(seq, 0, "calm day")
    fail_with_timeouts(reach, "news", 2)
    assert reach.stats()["breakers"]["news"] == "closed"


def test_pending_reasks_stop_when_the_breaker_opens():
    reach, clock, enq = make()
    reach.ask("news", "headlines")
    run_until(reach, clock, 101)  # silent once, waiting to re-ask
    fail_with_timeouts(reach, "news", 3)  # others fail meanwhile: open
    n = len(enq.sent)
    run_until(reach, clock, 2000)
    assert len(enq.sent) == n
    assert reach.stats()["outstanding"] == 0 and reach.stats()["outcomes"]["silent_link"] == 1


# --------------------------------------------------------------------------- what is not sent


@pytest.mark.parametrize("api, query, reason", [
    ("horoscope", "leo", "unknown_api"),
    (None, "x", "unknown_api"),
    ("define", "", "empty_query"),
    ("define", "   ", "empty_query"),
    ("define", 42, "empty_query"),
    ("define", "é" * 41, "query_too_long"),  # 82 bytes of UTF-8 in 41 characters
    ("define", "\ud800", "bad_query"),
])
def test_requests_that_cannot_go_are_not_sent(api, query, reason):
    reach, _, enq = make()
    assert reach.ask(api, query) is None
    assert enq.sent == [] and reach.stats()["not_asked"] == {reason: 1}
    assert reach.recent_outcomes(5) == []


def test_query_at_the_byte_limit_goes():
    reach, _, enq = make()
    assert reach.ask("define", "é" * 40) == 1


def test_outstanding_limit_and_repeats():
    reach, _, enq = make()
    assert reach.ask("news", "headlines") == 1
    assert reach.ask("news", "headlines") is None  # already out
    assert reach.ask("define", "ionosphere") == 2
    assert reach.ask("weather", "52.2,0.1") is None  # two out already
    assert reach.stats()["not_asked"] == {"already_asked": 1, "too_many_outstanding": 1}
    reach.on_answer(1, 0, "quiet")
    assert reach.ask("weather", "52.2,0.1") == 3


@pytest.mark.parametrize("failure", [StoreError("card refused the write"), OSError(5, "I/O error"),
                                     ValueError("api request has no field")])
def test_enqueue_failure_is_an_outcome_not_an_exception(failure):
    reach, _, enq = make()
    enq.fail = failure
    assert reach.ask("news", "headlines") is None
    o = last(reach)
    assert o.kind is OutcomeKind.NOT_SENT
    assert describe(o) == "asked for the news: the question could not be sent"
    s = reach.stats()
    assert s["outstanding"] == 0 and s["internal_errors"] == 0 and s["breakers"]["news"] == "closed"
    enq.fail = None
    assert reach.ask("news", "headlines") == 1  # nothing stuck


def test_enqueue_returning_nonsense_is_not_sent():
    clock = FakeClock(0.0)
    reach = Reach(lambda api, query: (7, b"body"), clock, policy=POLICY)
    assert reach.ask("news", "headlines") is None
    assert last(reach).kind is OutcomeKind.NOT_SENT


def test_reask_that_cannot_be_queued_ends_the_request():
    reach, clock, enq = make()
    reach.ask("news", "headlines")
    enq.fail = StoreError("card full")
    run_until(reach, clock, 2000)
    o = last(reach)
    assert o.kind is OutcomeKind.NOT_SENT and o.attempts == 1
    reach.on_answer(1, 0, "after all")
    assert reach.stats()["answers_late"] == 1 and reach.stats()["internal_errors"] == 0


# --------------------------------------------------------------------------- the clock


def test_clock_going_backwards_keeps_deadline_lengths():
    reach, clock, enq = make()
    clock.t = 5000.0
    reach.ask("news", "headlines")
    clock.t = 10.0  # the flight clock restarted at launch
    reach.tick(clock.t)
    run_until(reach, clock, 10 + POLICY.answer_timeout_s - 2)
    assert reach.stats()["outstanding"] == 1 and enq.sent[1:] == []
    run_until(reach, clock, 10 + POLICY.answer_timeout_s + 80)  # silent, re-asked after 50..70 s
    assert len(enq.sent) == 2
    s = reach.stats()
    assert s["clock_backwards"] == 1 and s["internal_errors"] == 0


@pytest.mark.parametrize("bad", [math.nan, math.inf, "soon", None])
def test_a_broken_clock_never_raises(bad):
    def clock():
        if bad is None:
            raise RuntimeError("no time")
        return bad

    enq = FakeEnqueue(FakeClock(0.0))
    reach = Reach(enq, clock, policy=POLICY)
    seq = reach.ask("news", "headlines")
    reach.tick()
    reach.on_answer(seq, 0, "fine")
    assert last(reach).kind is OutcomeKind.OK
    s = reach.stats()
    assert s["clock_faults"] >= 3 and s["internal_errors"] == 0


# --------------------------------------------------------------------------- describe


@pytest.mark.parametrize("kind", list(OutcomeKind))
def test_describe_is_one_short_clean_line_for_every_kind(kind):
    o = Outcome("define", "tropo\x00pause\n" + "x" * 300, kind, "line one\nline two\x07 " + "y" * 500, 1.0, 12)
    line = describe(o)
    assert 10 < len(line) <= MAX_LINE_CHARS
    assert not any(unicodedata.category(c)[0] == "C" for c in line)


def test_describe_lines():
    assert describe(Outcome("news", "headlines", OutcomeKind.SILENT_LINK, "", 0.0)) == \
        "asked for the news: nobody answered"
    assert describe(Outcome("weather", "52.2,0.1", OutcomeKind.CIRCUIT_OPEN, "", 0.0, 5)) == \
        "stopped asking for the weather for a while: it failed five times"
    assert describe(Outcome("define", "tropopause", OutcomeKind.OK, "", 0.0)) == \
        "asked the ground what 'tropopause' means: got an empty answer"
    assert describe(Outcome("tides", "dover", OutcomeKind.OFFLINE, "", 0.0)) == \
        "asked the ground's tides service about 'dover': the ground has no internet just now"


@given(st.text(max_size=1000), st.integers(min_value=1, max_value=300))
def test_clean_text_leaves_no_control_characters(text, limit):
    out = clean_text(text, limit)
    assert len(out) <= limit
    assert not any(unicodedata.category(c)[0] == "C" for c in out)
    assert out == out.strip() and "  " not in out


def test_recent_outcomes_are_oldest_first_and_bounded():
    reach, _, _ = make(ReachPolicy(**{**_fields(POLICY), "history": 3, "max_outstanding": 1}))
    for i in range(5):
        seq = reach.ask("define", f"word{i}")
        reach.on_answer(seq, 0, f"meaning {i}")
    assert [o.query for o in reach.recent_outcomes(10)] == ["word2", "word3", "word4"]
    assert [o.query for o in reach.recent_outcomes(2)] == ["word3", "word4"]
    assert reach.recent_outcomes(0) == []
    assert [describe(o) for o in reach.recent_outcomes(1)] == ["asked the ground what 'word4' means: got an answer: meaning 4"]


# --------------------------------------------------------------------------- choosing


FIX = {"lat": 52.2049, "lon": 0.1218, "alt_m": 18000.0}


def test_choose_request_is_deterministic_with_a_seeded_rng():
    def run(seed):
        rng = random.Random(seed)
        return [choose_request(FIX, "the tropopause shimmers", rng, every_n_musings=4) for _ in range(200)]

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_choose_request_mostly_asks_nothing_at_its_rate():
    rng = random.Random(1)
    picks = [choose_request(FIX, "the tropopause shimmers", rng, every_n_musings=10) for _ in range(5000)]
    asked = [p for p in picks if p is not None]
    assert 0.08 < len(asked) / len(picks) < 0.12
    assert {p[0] for p in asked} == {"weather", "define", "news"}


def test_choose_request_with_a_count_never_asks_twice_within_n_musings():
    rng, since, asked_at = random.Random(3), 0, []
    for i in range(2000):
        since += 1
        if choose_request(FIX, "a stratospheric musing", rng, musings_since_last=since, every_n_musings=8):
            asked_at.append(i)
            since = 0
    gaps = [b - a for a, b in zip(asked_at, asked_at[1:])]
    assert len(asked_at) > 100 and min(gaps) >= 8
    assert len(set(gaps)) > 3  # irregular, not a fixed beat


def test_choose_request_candidates():
    rng = random.Random(0)
    seen = set()
    for _ in range(3000):
        p = choose_request(FIX, "Watching the anemometers spin near the tropopause.", rng, every_n_musings=1)
        seen.add(p)
    assert seen == {("weather", "52.2,0.1"), ("define", "anemometers"), ("news", "headlines")}
    only_news = {choose_request({}, "short words only here", rng, every_n_musings=1) for _ in range(50)}
    assert only_news == {("news", "headlines")}
    assert choose_request(FIX, None, rng, every_n_musings=1, apis=()) is None
    assert {choose_request(FIX, None, rng, every_n_musings=1, apis=("weather",)) for _ in range(20)} == \
        {("weather", "52.2,0.1")}


@pytest.mark.parametrize("summary, expected", [
    ({"lat": 52.2049, "lon": 0.1218}, "52.2,0.1"),
    ({"lat": -33.86, "lon": 151.21}, "-33.9,151.2"),
    ({"lat": 0.0, "lon": 0.0}, None),
    ({"lat": math.nan, "lon": 0.1}, None),
    ({"lat": 95.0, "lon": 0.1}, None),
    ({"lat": "52", "lon": None}, None),
    ({}, None),
])
def test_rounded_position(summary, expected):
    assert rounded_position(summary) == expected


@pytest.mark.parametrize("text, word", [
    ("Up here the tropopause feels thin.", "tropopause"),
    ("Something beautiful, everything different.", None),  # long but common
    ("I saw a noctilucent cloud and a pyrocumulonimbus", "pyrocumulonimbus"),
    ("short words", None),
    (None, None),
    ("", None),
])
def test_pick_word(text, word):
    assert pick_word(text) == word


def test_consider_spaces_requests_and_skips_open_breakers():
    reach, _, enq = make(rng=random.Random(5))
    fail_with_timeouts(reach, "weather", 3)
    n0 = len(enq.sent)
    asked_at = []
    for i in range(300):
        seq = reach.consider(FIX, "thinking about the tropopause")
        if seq is not None:
            asked_at.append(i)
            reach.on_answer(seq, 0, "ok")
    assert asked_at and min(b - a for a, b in zip(asked_at, asked_at[1:])) >= POLICY.every_n_musings
    assert asked_at[0] >= POLICY.every_n_musings - 1  # nothing straight after a boot
    assert {api for api, _, _ in enq.sent[n0:]} <= {"news", "define"}


# --------------------------------------------------------------------------- the real store


def test_the_daemon_emits_a_durable_api_request_record_and_wakes_the_radio(tmp_path):
    from payload.assembly import build_onboard
    from payload.clock import Clock
    from payload.config import PayloadConfig
    from sim.world.flight import SimSensors
    from tests.fakes import RecordingRadio

    clock = Clock(speedup=1.0)
    d = build_onboard(PayloadConfig(), SimSensors(clock), RecordingRadio(), clock, None, tmp_path / "data")
    store, boot = d.parts.store, d.parts.flight.boot
    d.parts.transmitter.wake.clear()
    before = int(clock.now().timestamp())
    seq = d.parts.reach.ask("define", "tropopause")
    assert seq == 1 and d.parts.transmitter.wake.is_set()
    queued, state = store.queue.find(Kind.API_REQUEST, boot, seq)
    rec = wire.Record.from_body(wire.Kind.API_REQUEST, boot, seq, queued.payload)
    assert rec.content == {"api": "define", "query": "tropopause"} and before <= rec.created <= before + 5
    assert state == "queued"
    # Kept inside one frame at the default MTU even at the query limit.
    rec_max = wire.Record(wire.Kind.API_REQUEST, boot, 2, 0, {"api": "weather", "query": "x" * POLICY.max_query_bytes})
    assert wire.data_shards(len(rec_max.body())) == 1
    store.close()


def _fields(policy: ReachPolicy) -> dict:
    return policy.model_dump()


def test_a_trial_that_could_not_be_queued_lets_another_try():
    reach, clock, enq = make()
    fail_with_timeouts(reach, "news", 3)
    clock.t = 600
    enq.fail = StoreError("card refused the write")
    assert reach.ask("news", "headlines") is None
    assert reach.stats()["breakers"]["news"] == "half_open"  # the link was never tested
    enq.fail = None
    trial = reach.ask("news", "headlines")
    assert trial is not None
    reach.on_answer(trial, 0, "a calm day")
    assert reach.stats()["breakers"]["news"] == "closed"


def test_a_store_handing_out_a_seq_twice_is_counted():
    reach = Reach(lambda api, query: 5, FakeClock(0.0), policy=POLICY)
    assert reach.ask("news", "headlines") == 5
    assert reach.ask("define", "tropopause") == 5
    reach.on_answer(5, 0, "which one?")
    s = reach.stats()
    assert s["seq_reused"] == 1 and s["outcomes"]["ok"] == 1 and s["internal_errors"] == 0


@pytest.mark.parametrize("bad, field", [({"max_attempts": 0}, "max_attempts"), ({"cooldown_s": float("nan")}, "cooldown_s"),
                                        ({"retry_max_s": -1.0}, "retry_max_s"), ({"history": True}, "history"),
                                        ({"answer_timeout_s": "600"}, "answer_timeout_s"), ({"retries": 3}, "retries")])
def test_a_policy_out_of_range_is_refused_naming_its_field(bad, field):
    with pytest.raises(ValueError, match=field):
        ReachPolicy(**bad)
