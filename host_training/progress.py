"""What a build shows on the terminal: one line per stage, a bar where the stage has countable
steps (training steps, candidate types, replies), and the stage's time once done.

The stages say where they are through the module functions (`steps`, `expect`, `advance`), which
do nothing when no `Terminal` is shown: the trainer, the evaluator and the quantizer report
without being handed a display, and their tests stay silent. One build runs its stages one after
another in one thread, so one current stage is enough.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from typing import TextIO

NAME_WIDTH = 9  # the longest stage name ("quantize", "evaluate") and a space


def clock(seconds: float) -> str:
    """1.2s, 48s, 3m05s, 1h02m: a stage's time as a person reads it."""
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, s = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{s:02d}s"
    hours, m = divmod(minutes, 60)
    return f"{hours}h{m:02d}m"


class Stage:
    """One stage's line: live (a tqdm bar that rewrites itself) on a terminal, else written once
    when the stage ends, so that a log of `make` holds one line per stage."""

    def __init__(self, name: str, out: TextIO, live: bool) -> None:
        self.name, self.out, self.live = name, out, live
        self.total: int | None = None
        self.done = 0
        self.unit = ""
        self.t0 = time.monotonic()
        self._bar = None
        if live:
            self._open_bar()

    def _open_bar(self) -> None:
        from tqdm import tqdm

        counted = "{bar:24} {n_fmt}/{total_fmt} {unit} {elapsed}<{remaining}"
        fmt = "  {desc} " + (counted if self.total else "...")  # tqdm redraws only on a step: no clock
        if self._bar is not None:
            self._bar.close()
        self._bar = tqdm(total=self.total, initial=self.done, desc=f"{self.name:<{NAME_WIDTH}}", unit=self.unit,
                         file=self.out, bar_format=fmt, mininterval=0.5, leave=False, dynamic_ncols=True)

    def steps(self, total: int, unit: str) -> None:
        """The stage has `total` steps of `unit` in all (said again when a budget changes the plan)."""
        changed = self.total is None or unit != self.unit
        self.total, self.unit = max(0, int(total)), unit
        if self._bar is not None:
            if changed:
                self._open_bar()
            else:
                self._bar.total = self.total
                self._bar.refresh()

    def expect(self, more: int, unit: str) -> None:
        """`more` steps of `unit` besides those already expected (a report adds each model's replies)."""
        self.steps((self.total or 0) + more, unit)

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)

    def line(self, failed: bool = False) -> str:
        counted = f"{self.done}/{self.total} {self.unit}" if self.total else ""
        mark = "failed after" if failed else ""
        took = " ".join(x for x in (mark, clock(time.monotonic() - self.t0)) if x)
        return f"  {self.name:<{NAME_WIDTH}} {counted:<24} {took}".rstrip()

    def close(self, failed: bool = False) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self.out.write(self.line(failed) + "\n")
        self.out.flush()


class Terminal:
    """Where the stage lines go (`out`, a terminal or not) while `shown`, and what the command
    answers (`results`, standard output by default)."""

    def __init__(self, out: TextIO, live: bool | None = None, results: TextIO | None = None) -> None:
        self.out = out
        self.live = out.isatty() if live is None else live
        self.results = results

    def say(self, text: str, result: bool = False) -> None:
        """A line of the build's own (the preflight's verdict, a warning said before training), or
        with `result` the command's answer."""
        if _current is not None and _current._bar is not None:
            _current._bar.clear()
        out = (self.results or sys.stdout) if result else self.out
        out.write(text.rstrip("\n") + "\n")
        out.flush()


_current: Stage | None = None
_terminal: Terminal | None = None


@contextlib.contextmanager
def shown(terminal: Terminal) -> Iterator[Terminal]:
    """Stages entered inside show on `terminal`."""
    global _terminal
    before, _terminal = _terminal, terminal
    try:
        yield terminal
    finally:
        _terminal = before


@contextlib.contextmanager
def stage(name: str) -> Iterator[Stage | None]:
    """One stage of the build; its line ends with its time, or "failed after" and its time."""
    global _current
    if _terminal is None:
        yield None
        return
    s = _current = Stage(name, _terminal.out, _terminal.live)
    try:
        yield s
    except BaseException:
        s.close(failed=True)
        raise
    else:
        s.close()
    finally:
        _current = None


def say(text: str, result: bool = False) -> None:
    """`text` on the shown terminal (its results with `result`), else on standard output."""
    if _terminal is not None:
        _terminal.say(text, result)
    else:
        print(text, flush=True)


def steps(total: int, unit: str = "steps") -> None:
    if _current is not None:
        _current.steps(total, unit)


def expect(more: int, unit: str) -> None:
    if _current is not None:
        _current.expect(more, unit)


def advance(n: int = 1) -> None:
    if _current is not None:
        _current.advance(n)
