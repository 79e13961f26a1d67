"""The listen loop: source -> decoder -> database -> terminal, until told to stop.

One `threading.Event` ends it (SIGINT/SIGTERM set it); the loop checks it on every
frame and on every idle poll of the source (~0.2 s), so it never sleeps and stops
at once. Whatever way it ends, the database is committed and the source closed.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TextIO

import structlog

from .db import Store, utc_now
from .decoder import FrameDecoder
from .display import format_json, format_record
from .receive import FrameSource

log = structlog.get_logger(__name__)


@dataclass
class Limits:
    duration_s: float | None = None  # stop this long after starting
    until_idle_s: float | None = None  # stop after this long without a frame


def run_listen(source: FrameSource, store: Store, decoder: FrameDecoder, stop: threading.Event,
               out: TextIO | None, as_json: bool = False, limits: Limits | None = None) -> None:
    """Receive until the source ends, `stop` is set or a limit is reached.

    `out` gets one line per record new to the database (None: print nothing).
    """
    limits = limits or Limits()
    start = last_frame = time.monotonic()
    try:
        for item in source:
            now = time.monotonic()
            if item is not None:
                last_frame = now
                _handle(item.data, item.origin, store, decoder, out, as_json)
            store.maybe_commit()
            if stop.is_set():
                break
            if limits.duration_s is not None and now - start >= limits.duration_s:
                break
            if limits.until_idle_s is not None and now - last_frame >= limits.until_idle_s:
                break
    finally:
        store.commit()
        source.close()


def _handle(data: bytes, origin: str, store: Store, decoder: FrameDecoder,
            out: TextIO | None, as_json: bool) -> None:
    received_at = utc_now()
    result = decoder.feed(data)
    store.add_frame(data, origin, result.error, received_at)
    if not result.ok:
        log.debug("frame rejected", origin=origin, reason=result.error, detail=result.detail)
        return
    # The database decides what is new, so a record heard again after a ground
    # restart (when the decoder has forgotten it) is stored and printed once.
    if result.record is None or not store.add(result.record, received_at):
        return
    if out is not None:
        line = format_json({**result.record, "received_at": received_at}) if as_json else format_record(result.record)
        print(line, file=out, flush=True)
