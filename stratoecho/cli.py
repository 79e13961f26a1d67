"""What every `python -m <package>` entry point does around its own commands."""

from __future__ import annotations

import argparse
import os
import sys

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


def hostport_type(listen: bool = False):
    """An argparse `type=` for HOST:PORT (see `stratoecho.config.parse_hostport`)."""

    def parse(text: str) -> tuple[str, int]:
        try:
            return parse_hostport(text, listen=listen)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from e

    return parse
