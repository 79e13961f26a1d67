"""`stratoecho.backoff.Backoff`, the one back-off both sides use (issue 43, item 5): the delays, the
cap, the jitter's bounds, and the same waits as the policies it replaced."""

from __future__ import annotations

import math
import random
from types import SimpleNamespace

import pytest
from tenacity import RetryCallState, wait_exponential, wait_random

from groundstation.network.topics import Reconnect
from groundstation.sources.lora_gateway import GATEWAY_BACKOFF
from groundstation.web import access
from stratoecho.backoff import Backoff


def test_waits_grow_by_the_factor_up_to_the_cap_and_none_before_a_failure():
    b = Backoff(initial_s=1.0, factor=2.0, max_s=8.0)
    assert [b.delay_s(n) for n in range(-1, 7)] == [0.0, 0.0, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert Backoff(initial_s=5.0, factor=3.0, max_s=100.0).delay_s(3) == 45.0
    assert Backoff.none().delay_s(5) == 0.0


def test_a_very_long_outage_stays_at_the_cap():
    assert Backoff(initial_s=1.0, factor=2.0, max_s=60.0).delay_s(100_000) == 60.0
    assert Backoff(initial_s=1.0, factor=2, max_s=math.inf).delay_s(10**9) == math.inf


def test_jitter_is_added_after_the_cap_within_its_bound():
    b = Backoff(initial_s=1.0, factor=2.0, max_s=4.0, jitter_s=0.5)
    waits = [b.delay_s(5) for _ in range(500)]
    assert all(4.0 <= w <= 4.5 for w in waits)
    assert max(waits) - min(waits) > 0.3  # it does vary: stations do not come back in lockstep


def test_as_a_tenacity_wait_it_counts_the_attempts_made():
    b = Backoff(initial_s=0.25, factor=2.0, max_s=math.inf)
    assert [b.wait(SimpleNamespace(attempt_number=n)) for n in (1, 2, 3)] == [0.25, 0.5, 1.0]


@pytest.mark.parametrize(("kw", "named"), [({"initial_s": -1.0}, "initial_s"), ({"max_s": float("nan")}, "max_s"),
                                           ({"jitter_s": -0.1}, "jitter_s"), ({"factor": 0.5}, "factor")])
def test_a_policy_that_cannot_be_is_refused_by_name(kw, named):
    with pytest.raises(ValueError, match=named):
        Backoff(**kw)


def _tenacity_state(attempt: int) -> RetryCallState:
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})
    state.attempt_number = attempt
    return state


@pytest.mark.parametrize("policy", [Reconnect(initial_s=1.5, max_s=20.0), Reconnect()])
def test_the_broker_waits_are_those_tenacity_drew_before(policy):
    before = wait_exponential(multiplier=policy.initial_s, max=policy.max_s) + wait_random(0, policy.initial_s)
    for attempt in (1, 2, 5, 9, 3000):
        random.seed(attempt)
        now = policy.wait()(_tenacity_state(attempt))
        random.seed(attempt)
        assert now == before(_tenacity_state(attempt))


def test_the_gateway_waits_are_those_tenacity_drew_before():
    before = wait_exponential(multiplier=1.0, max=30.0) + wait_random(0, 1.0)
    for attempt in (1, 4, 6, 50):
        random.seed(attempt)
        now = GATEWAY_BACKOFF.delay_s(attempt)
        random.seed(attempt)
        assert now == before(_tenacity_state(attempt))


def test_the_password_waits_keep_their_schedule():
    assert [access.delay_s(n, 5) for n in range(0, 10)] == [0, 0, 0, 0, 0, 1, 2, 4, 8, 16]
    assert access.delay_s(10**9, 5) == access.MAX_DELAY_S
