"""Small stand-ins shared by tests (real parts are used wherever the test is about them)."""

from __future__ import annotations


class RecordingRadio:
    """A radio that keeps every frame it is asked to send, in order."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def send(self, frame: bytes) -> None:
        self.frames.append(frame)

    def close(self) -> None:
        """Nothing to release: the frames stay for the test to read."""
