"""`python -m host_training interview|prepare|build|eval|judge|chat|base-bundle|voice-of-flight` — see each command's --help."""

from __future__ import annotations

import argparse
import sys

from stratoecho.cli import run_cli


def build_parser() -> argparse.ArgumentParser:
    from . import chat, evaluate, prepare
    from .base import base_bundle
    from .evaluate import voice_of_flight
    from .judge import cli as judge
    from .pipeline import build
    from .prepare import interview

    parser = argparse.ArgumentParser(
        prog="python -m host_training",
        description=(
            "Turn a person's exported messages into a persona that fits on a Raspberry Pi. "
            "Optionally answer questions with `interview` first; run `prepare` on the exports "
            "(and the interview's folder), then `build` on its output; `eval`, `judge` and `chat` "
            "look at the bundle that `build` wrote."
        ),
    )
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO (default), WARNING or ERROR")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (interview, prepare, build, evaluate, judge, chat, base_bundle, voice_of_flight):
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
