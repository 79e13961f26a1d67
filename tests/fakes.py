"""Small stand-ins shared by tests (real parts are used wherever the test is about them):
a radio that records, a clock the test sets, and waiting with a deadline."""

from __future__ import annotations

import time


class RecordingRadio:
    """A radio that keeps every frame it is asked to send, in order."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def send(self, frame: bytes) -> None:
        self.frames.append(frame)

    receives = False  # transmit only: no listen windows

    def receive(self, timeout_s: float) -> list[bytes]:
        return []

    def close(self) -> None:
        """Nothing to release: the frames stay for the test to read."""


class FakeClock:
    """Seconds the test sets and advances: pass it where code takes a `clock()` callable."""

    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> None:
        self.t += s


def wait_for(predicate, timeout_s: float = 30.0, poll_s: float = 0.02) -> None:
    """Poll `predicate` until it holds; fail after `timeout_s`. A helper for the test, never part
    of the code under test: it returns as soon as the condition holds, so the generous deadline
    only bounds how long a failure takes to show, and a busy machine does not fail it."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout_s:g} s"
        time.sleep(poll_s)
