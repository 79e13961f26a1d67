"""The live feed (GET /api/events): Server-Sent Events of the rows committed since the
browser's cursor. Once a second (`POLL_S`) it asks SQLite whether anyone committed
(``PRAGMA data_version``) and only then looks for rows past its cursor: `telemetry` and
`record` (lists of new rows), `outbox` (the whole outbox when it changes), `link` (frames
grew), `flights` (a followed flight's database appeared or was written: the page asks
/api/flights and /api/conversation again). The cursor (the newest telemetry and record ids sent) is each event's id, so a browser
that reconnects resumes where it was."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import BinaryIO

from ..store import GroundReader
from .api import outbox_json, record_json, telemetry_json

POLL_S = 1.0  # how often an event stream asks the database whether anything was committed
KEEPALIVE_S = 15.0  # an idle event stream sends a comment this often (finds closed browsers)
BATCH_ROWS = 500  # rows per event; a stream far behind catches up without waiting a poll


def stream(wfile: BinaryIO, db: GroundReader, cursor: list[int], stop: threading.Event,
           watch: Callable[[], object] | None = None) -> None:
    """Send events to `wfile` from `db` past `cursor` (moved on as they go) until `stop` is set.
    `watch`: what changes when another flight's database does (flights.FlightFiles.signature);
    each change is a `flights` event, nothing at the start (the page has just read them)."""
    version = outbox = frames = None
    watched = watch() if watch else None
    last_sent = time.monotonic()
    while not stop.is_set():
        sent = False
        if watch and (now_watched := watch()) != watched:
            watched = now_watched
            write_event(wfile, "flights", {"flights": len(now_watched) + 1})  # with the primary
            sent = True
        if (now_version := db.data_version()) != version:
            version = now_version
            telemetry = [telemetry_json(r) for r in db.track.telemetry_since(cursor[0], BATCH_ROWS)]
            records = [record_json(r) for r in db.records.since(cursor[1], None, BATCH_ROWS)]
            if telemetry:
                cursor[0] = telemetry[-1]["id"]
            if records:
                cursor[1] = records[-1]["id"]
            if len(telemetry) == BATCH_ROWS or len(records) == BATCH_ROWS:
                version = None  # more to send: look again without waiting for a commit
            event_id = f"{cursor[0]}.{cursor[1]}"
            for name, rows in (("telemetry", telemetry), ("record", records)):
                if rows:
                    write_event(wfile, name, rows, event_id)
                    sent = True
            if (now_outbox := db.outbox.state()) != outbox:
                outbox = now_outbox
                write_event(wfile, "outbox", outbox_json(db.outbox.newest()))
                sent = True
            if (now_frames := db.newest_frame_id()) != frames:
                frames = now_frames
                write_event(wfile, "link", {"frames": frames})
                sent = True
        if not sent and time.monotonic() - last_sent >= KEEPALIVE_S:
            wfile.write(b": keepalive\n\n")
            sent = True
        if sent:
            wfile.flush()
            last_sent = time.monotonic()
        if version is not None and stop.wait(POLL_S):
            break


def write_event(wfile: BinaryIO, name: str, data, event_id: str | None = None) -> None:
    head = f"event: {name}\n" + (f"id: {event_id}\n" if event_id else "")
    wfile.write((head + "data: " + json.dumps(data, ensure_ascii=False, allow_nan=False) + "\n\n").encode())
