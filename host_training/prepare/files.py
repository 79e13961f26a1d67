"""Helpers at the edges of `prepare` (files in, files out): the --blocklist file, the export
files found under the arguments, the outputs written together, and the problems said."""

from __future__ import annotations

import os
import re
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from host_training.ingest import discover


class BlocklistError(Exception):
    """A --blocklist file that cannot be read or holds a bad pattern (file:line in the message)."""


def load_blocklist(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise BlocklistError(f"{path}: cannot read the blocklist: {e}") from e
    entries = []
    for number, line in enumerate(lines, start=1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        if len(entry) > 2 and entry.startswith("/") and entry.endswith("/"):
            try:
                re.compile(entry[1:-1])
            except re.error as e:
                raise BlocklistError(f"{path}:{number}: not a valid regular expression: {e}") from e
        entries.append(entry)
    return entries


def export_files(paths: Iterable[str]) -> tuple[list[tuple[Path, type]], list[str]]:
    """Every export file named or found under the arguments, once, with its reader class;
    and the problems naming each argument that gave none."""
    files: list[tuple[Path, type]] = []
    problems: list[str] = []
    seen: set[Path] = set()
    for arg in paths:
        found, why = discover(arg)
        problems += why
        for path, reader_cls in found:
            if path.resolve() not in seen:  # the same file named twice (a folder and a file in it)
                seen.add(path.resolve())
                files.append((path, reader_cls))
    return files, problems


class Staged:
    """Output files written under temp names and renamed together at `commit`: a crash or a
    full disk leaves the previous outputs, never a truncated or half-updated set."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self._files: dict[str, tuple[Path, object]] = {}

    def open(self, name: str):
        tmp = self.out / f".{name}.{os.getpid()}.tmp"
        handle = open(tmp, "w", encoding="utf-8", newline="\n")
        self._files[name] = (tmp, handle)
        return handle

    def commit(self) -> None:
        for _tmp, handle in self._files.values():
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
        for name, (tmp, _) in self._files.items():
            os.replace(tmp, self.out / name)
        self._files.clear()

    def abort(self) -> None:
        for tmp, handle in self._files.values():
            handle.close()
            tmp.unlink(missing_ok=True)
        self._files.clear()


def _said_problems(args, problems: list[str], read: int) -> bool:
    """Each file that could not be read, as a warning; False (said as an error) when nothing was."""
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    if not read:
        tried = "\n  ".join(problems) or "(no files)"
        print(f"error: nothing could be read from {', '.join(args.exports)}:\n  {tried}", file=sys.stderr)
    return bool(read)


def _counts(c: Counter) -> dict[str, int]:
    return dict(sorted(c.items(), key=lambda kv: (-kv[1], kv[0])))


def _say(c: Counter) -> str:
    return ", ".join(f"{k} {v}" for k, v in _counts(c).items()) or "none"
