"""Replay: an `air.hex` file (or standard input) run through once."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from .base import Received, SourceError, parse_signal_line


class ReplaySource:
    """An `air.hex` file, or standard input for '-'; ends at the end of the file."""

    def __init__(self, path: str | Path) -> None:
        self.errors: Counter = Counter()
        self.name = str(path)
        self._file: TextIO
        if self.name == "-":
            self._file, self._owned = sys.stdin, False
            return
        try:
            # Undecodable bytes become U+FFFD and so a "bad hex" line, never an exception.
            self._file = open(path, encoding="utf-8", errors="replace")  # noqa: SIM115 (closed by close())
        except FileNotFoundError as e:
            raise SourceError(f"replay file {self.name} not found") from e
        except OSError as e:
            raise SourceError(f"cannot open replay file {self.name}: {e.strerror}") from e
        self._owned = True

    def __iter__(self) -> Iterator[Received | None]:
        for lineno, line in enumerate(self._file, start=1):
            where = f"{self.name}:{lineno}"
            parsed = parse_signal_line(line, where, self.errors)
            if parsed is not None:
                yield Received(parsed[0], f"replay {where}", None, parsed[1], parsed[2])

    def close(self) -> None:
        if self._owned:
            self._file.close()
