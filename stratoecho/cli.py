"""What every `python -m <package>` entry point does around its own commands."""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from .config import parse_hostport
from .logs import setup_logging


def run_cli(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> int:
    """Parse, set up logging once (`--log-level`), run the chosen command's `func`.

    A reader that leaves early (`… | head`) is not an error: standard output is
    pointed at /dev/null so the interpreter's exit flush stays quiet.
    """
    args = parser.parse_args(argv)
    setup_logging(getattr(args, "log_level", None))
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def checked(check):
    """An argparse `type=` from a check that raises ValueError with its reason: argparse then
    shows that reason as the usage error."""

    def parse(text: str):
        try:
            return check(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from e

    parse.__name__ = getattr(check, "__name__", "value")  # argparse names the type in some errors
    return parse


def hostport_type(listen: bool = False):
    """An argparse `type=` for HOST:PORT (see `stratoecho.config.parse_hostport`)."""
    return checked(lambda text: parse_hostport(text, listen=listen))


def number(what: str, low: float = -math.inf, high: float = math.inf, *, whole: bool = False,
           above: bool = False, below: bool = False):
    """An argparse `type=` for a finite number from `low` to `high` (`above`, `below`: that bound
    itself left out; `whole`: an integer), its error saying `what` was expected."""

    def parse(text: str) -> float:
        try:
            value = int(text) if whole else float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and (value > low if above else value >= low)
                and (value < high if below else value <= high)):
            raise argparse.ArgumentTypeError(f"{text} is not {what}")
        return value

    parse.__name__ = "int" if whole else "float"  # argparse names the type in some errors
    return parse


def positive_number(unit: str = ""):
    """An argparse type for a positive number, the error naming `unit` ("seconds", "minutes")."""
    return number(f"a positive number of {unit}" if unit else "a positive number", 0, above=True)


def place(values, option: str, *, altitude: bool = True) -> tuple[float, ...]:
    """A place given on the command line as LAT LON [ALT] or LAT,LON[,ALT] (strings or numbers):
    (lat, lon, alt), alt 0 when not given, or (lat, lon) without `altitude`. ValueError naming
    `option` and what it takes."""
    parts = [p for value in values for p in str(value).replace(",", " ").split()]
    takes = "LAT LON [ALT] in degrees and metres" if altitude else "LAT LON in degrees"
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        numbers = []
    if len(numbers) not in ((2, 3) if altitude else (2,)) or not all(map(math.isfinite, numbers)):
        raise ValueError(f"{option} takes {takes}, got {' '.join(map(str, values))!r}")
    lat, lon = numbers[:2]
    if abs(lat) > 90 or abs(lon) > 180:
        raise ValueError(f"{option} {lat:g} {lon:g}: latitude is -90..90, longitude -180..180")
    return (lat, lon, numbers[2] if len(numbers) == 3 else 0.0) if altitude else (lat, lon)


# The kernel gives a process's SIGTERM to any of its threads that does not block it, and Python
# runs the handler only in the main thread, which a signal taken by another does not wake from a
# wait: a main thread waiting for a stop never waits longer than this at a time.
SIGNAL_POLL_S = 0.5


def wait_for_stop(stop: threading.Event) -> None:
    """Wait until `stop` is set, in slices short enough for a signal handler to run in time."""
    while not stop.wait(SIGNAL_POLL_S):
        pass


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set `stop` while inside (handlers exist only in the main thread;
    elsewhere, a test's thread, the caller's event is the only way to stop)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, lambda signum, frame: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
