"""Everything a build's libraries print goes to its log file, not the terminal.

llama.cpp writes from C straight to file descriptors 1 and 2 ("ncols 576 not divisible by 256 ...
falling back", a model's metadata), the trainer draws progress bars, transformers and torch
warn: hundreds of lines that hid which stage a build was in. While a `Quiet` is entered, fds 1
and 2 themselves point at the log (os.dup2), so C code, subprocesses (llama.cpp's converter),
Python's warnings and our own structured log all land there; the terminal keeps a duplicate of
the old fd 2, and only the stage lines (progress.py) and the closing summary are written to it.

Warnings that matter are ours (structlog events at warning level or above); they are counted by
event and named at the end with the log's path. The libraries' Python warnings are counted by
kind (FutureWarning, UserWarning) in one line.
"""

from __future__ import annotations

import ctypes
import os
import sys
import tempfile
import warnings
from collections import Counter
from pathlib import Path

import structlog

LOG_FILE = "build.log"  # its name in BUNDLE once the build has written the bundle
OURS = ("warning", "error", "critical")
FELL_BACK = "falling back to"  # llama.cpp's quantizer, per tensor whose row width the type cannot take


def _flush_c_streams() -> None:
    """libc's stdout is fully buffered when it is a file: what llama.cpp printf'd must leave
    before fd 1 points back at the terminal, or it would show there after all."""
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):  # no C library to ask (not on the platforms we build on)
        pass


def _plain(processor):
    """The console renderer without colours: the log is a file, read with less or an editor."""
    if isinstance(processor, structlog.dev.ConsoleRenderer):
        return structlog.dev.ConsoleRenderer(colors=False)
    return processor


class Quiet:
    """Enter: fds 1 and 2 go to `path` (a new temporary file when None); `terminal` and `results`
    are streams on what fds 2 and 1 were. Exit: both fds back; `ours` and `theirs` hold the
    warnings counted."""

    def __init__(self, path: Path | None = None) -> None:
        if path is None:
            fd, name = tempfile.mkstemp(prefix="stratoecho-build-", suffix=".log")
            os.close(fd)
            path = Path(name)
        self.path = path
        self.ours: Counter[str] = Counter()
        self.theirs: Counter[str] = Counter()
        self.terminal = self.results = None

    def _count_ours(self, logger, method: str, event: dict) -> dict:
        if method in OURS or event.get("level") in OURS:
            self.ours[str(event.get("event"))] += 1
        return event

    def _count_theirs(self, message, category, filename, lineno, file=None, line=None) -> None:
        self.theirs[category.__name__] += 1
        self._log.write(warnings.formatwarning(message, category, filename, lineno, line))

    def __enter__(self) -> Quiet:
        sys.stdout.flush()
        sys.stderr.flush()
        self._streams = (sys.stdout, sys.stderr)
        self._saved = (os.dup(1), os.dup(2))
        self.terminal = self._keep(2, sys.stderr)
        self.results = self._keep(1, sys.stdout)  # what the command answers (--preflight-only's report)
        log_fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        # Python's own streams too: where they are no file descriptor (a test's capture) dup2 misses them.
        self._log = open(self.path, "a", buffering=1, encoding="utf-8", errors="replace")
        sys.stdout = sys.stderr = self._log
        config = structlog.get_config()
        self._processors = list(config["processors"])
        structlog.configure(processors=[self._count_ours, *map(_plain, self._processors)])
        self._showwarning = warnings.showwarning
        warnings.showwarning = self._count_theirs
        return self

    @staticmethod
    def _keep(fd: int, stream):
        """A stream on what `fd` is now: a copy of the fd when `stream` writes to it, else `stream`
        itself (a replacement such as a test's capture, which dup2 does not move)."""
        try:
            if stream.fileno() == fd:
                return os.fdopen(os.dup(fd), "w", buffering=1, encoding="utf-8", errors="replace")
        except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
            pass
        return stream

    def __exit__(self, *exc) -> None:
        warnings.showwarning = self._showwarning
        structlog.configure(processors=self._processors)
        self._log.flush()
        _flush_c_streams()
        sys.stdout, sys.stderr = self._streams
        for saved, fd in zip(self._saved, (1, 2)):
            os.dup2(saved, fd)
            os.close(saved)
        self._log.close()
        for kept, stream in ((self.terminal, sys.stderr), (self.results, sys.stdout)):
            if kept is not stream:
                kept.close()

    @staticmethod
    def fell_back(log_path: Path) -> int:
        """llama.cpp's "ncols N not divisible by 256 ... falling back" lines in the log: one a tensor."""
        with open(log_path, encoding="utf-8", errors="replace") as f:
            return sum(FELL_BACK in line for line in f)

    def summary(self, log_path: Path | None = None) -> list[str]:
        """The closing lines: our warnings by event, theirs by kind, and where to read them all."""
        where = log_path or self.path
        lines = []
        if self.ours:
            named = ", ".join(f"{event}" + (f" x{n}" if n > 1 else "") for event, n in sorted(self.ours.items()))
            lines.append(f"{sum(self.ours.values())} warning(s) of the build: {named} (in {where})")
        if self.theirs:
            kinds = ", ".join(f"{n} {kind}" for kind, n in self.theirs.most_common())
            lines.append(f"the libraries warned too ({kinds}): in {where}")
        fell_back = self.fell_back(where)
        if fell_back:
            lines.append(f"llama.cpp put {fell_back} tensor(s) in another type than asked, over the files it "
                         "quantized (widths the type cannot take); the figures below are the written file's")
        lines.append(f"log (llama.cpp, the trainer, every event): {where}")
        return lines
