"""The beacon's time slot (payload/policy/slots.py): payloads sharing a frequency key their
position sentences at their own second of each period, by UTC, so they take turns on the air."""

from __future__ import annotations

import pytest

from payload.policy.slots import next_slot


def test_a_due_moves_to_the_next_second_of_the_period_that_is_its_slot():
    # Flight second 100 is UTC 1000.3: slot 5 of a 10 s period opens at UTC 1005, flight 104.7.
    assert next_slot(100.0, 100.0, 1000.3, 10.0, 5.0) == pytest.approx(104.7)
    # Slot 0 at UTC 1010: flight 109.7; the grid does not care where flight time started.
    assert next_slot(100.0, 100.0, 1000.3, 10.0, 0.0) == pytest.approx(109.7)
    # A due later than now is aligned at its own time: flight 112 is UTC 1012.3, next slot 5 at 1015.
    assert next_slot(112.0, 100.0, 1000.3, 10.0, 5.0) == pytest.approx(114.7)


def test_a_due_already_on_its_slot_stays_and_a_slot_past_the_period_wraps():
    assert next_slot(104.7, 100.0, 1000.3, 10.0, 5.0) == pytest.approx(104.7)
    assert next_slot(100.0, 100.0, 1000.3, 10.0, 15.0) == pytest.approx(104.7)
    # A longer period (a low-power mode) keeps the slot as the offset into it.
    assert next_slot(100.0, 100.0, 1000.3, 60.0, 5.0) == pytest.approx(124.7)  # UTC 1025: 17 x 60 + 5


def test_two_payloads_on_the_same_clock_never_key_in_the_same_second():
    near = [next_slot(t, 0.0, 1_780_000_000.0, 10.0, 0.0) for t in range(0, 600, 10)]
    far = [next_slot(t, 0.0, 1_780_000_000.0, 10.0, 5.0) for t in range(0, 600, 10)]
    assert min(abs(a - b) for a in near for b in far) == pytest.approx(5.0)


def test_a_period_of_nothing_has_no_slots():
    with pytest.raises(ValueError, match="no slots"):
        next_slot(0.0, 0.0, 0.0, 0.0, 1.0)


def test_the_daemon_keys_its_beacon_in_its_slot():
    from datetime import datetime, timezone

    from payload.clock import Clock
    from payload.daemon import Daemon
    from payload.loop import Closing, Loop

    class StepClock(Clock):
        """Flight time that moves only when waited on: each wait is exactly as long as asked."""

        def __init__(self):
            super().__init__(speedup=1.0, start_utc=datetime(2026, 6, 21, 8, 0, 3, tzinfo=timezone.utc))
            self.t = 0.0

        def elapsed_s(self) -> float:
            return self.t

        def wait(self, seconds: float, stop=None) -> bool:
            self.t += max(seconds, 0.0)
            return self.t > 40.0  # three beacons, then stop

    clock, keyed = StepClock(), []
    beacon = Loop("beacon", lambda: keyed.append(clock.now().second), lambda: 10.0, slot_s=5.0)
    Daemon(clock, [beacon], Closing(clock.event(), clock.event()))._every(beacon)
    assert keyed == [5, 15, 25, 35]  # UTC seconds 5, 15 ...: not 3, 13, 23 as from the start


def test_a_slot_is_missed_past_the_period_the_longest_frame_and_for_a_relay_one_listening_turn():
    from payload.config import PayloadConfig
    from payload.link.windows import RELAY_LISTEN_S
    from sim.bench.report.beacons import gap_limit_s

    alone = PayloadConfig.model_validate({"schedule": {"telemetry_s": 30.0}})
    relaying = PayloadConfig.model_validate({"schedule": {"telemetry_s": 30.0},
                                             "relay": {"allow": [{"callsign": "FAR1"}]}})
    assert gap_limit_s(alone, [0.4, 2.5]) == pytest.approx(32.5)  # a sentence waits for the frame under way
    assert gap_limit_s(alone, [2.5], factor=2.0) == pytest.approx(62.5)  # survival's slower beacon
    assert gap_limit_s(relaying, [2.5]) == pytest.approx(32.5 + RELAY_LISTEN_S)  # and a turn listening
