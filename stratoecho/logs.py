"""Logging set up once per process: console rendering in a terminal, JSON lines otherwise.

Every command calls `setup_logging()` first thing; modules then use
`structlog.get_logger(__name__)` and bind their context (`flight`, `boot`, `seq`).
Logs go to standard error so standard output stays for the command's real output.
"""

from __future__ import annotations

import logging
import os
import sys

import structlog


def setup_logging(level: str | None = None, json: bool | None = None) -> None:
    """Configure structlog and the standard library logger once.

    `level` defaults to $STRATOECHO_LOG_LEVEL or INFO; `json` defaults to
    $STRATOECHO_LOG_JSON, else JSON when standard error is not a terminal.
    """
    level = (level or os.environ.get("STRATOECHO_LOG_LEVEL") or "INFO").upper()
    if json is None:
        env = os.environ.get("STRATOECHO_LOG_JSON")
        json = (env == "1") if env is not None else not sys.stderr.isatty()
    numeric = getattr(logging, level, None)
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}: use DEBUG, INFO, WARNING or ERROR")
    renderer = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        # Look sys.stderr up at each call: a stream captured at set-up may be closed later (pytest).
        logger_factory=lambda *args: structlog.PrintLogger(sys.stderr),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=sys.stderr)
