"""Times a station gives (issue 50, item 5): a frame's `received_at` is a station's word, and
the database orders, charts and dates sentences by it. One frame "heard" on 9999-12-31 failed
the aggregate dashboard's `/api/link`: the dashboard serves a database that holds such times
without failing any view."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

from groundstation.db import Store
from groundstation.web import serve
from stratoecho import wire
from tests.test_dashboard import T0, build_ground_db, get_json, request, telemetry

NOW = datetime(2026, 6, 1, 10, 30, tzinfo=timezone.utc)  # the aggregator's clock; the flight is 10:00-10:10
BAD_TIMES = ["9999-12-31", "9999-12-31T23:59:59.000+00:00", "yesterday", 17, "",
             "2026-06-01T10:36:00+00:00",  # six minutes ahead of the aggregator's clock
             "2026-05-31T10:29:00+00:00",  # a day and a minute behind it
             "0001-01-01T00:00:00+05:00"]  # before the calendar's first day, in UTC


def test_an_older_database_holding_bad_times_serves_every_view(tmp_path):
    """Stored before the aggregator refused them: no view fails, and the link chart leaves out
    what it cannot place in time, counting it."""
    db = tmp_path / "ground.db"
    build_ground_db(db)
    bad = ["9999-12-31", "9999-12-31T23:59:59.000+00:00", "yesterday", "0001-01-01T00:00:00.000+00:00"]
    with Store(db) as store:
        for n, when in enumerate(bad):
            sentence = telemetry(40 + n)
            store.add_telemetry(sentence, received_at=when)
            store.add_frame(wire.encode_sentence(sentence), "mqtt", received_at=when, station="wrong-clock")
        store.add_record(wire.Record(wire.Kind.MUSING, 1, 9, int(T0.timestamp()), "dated by a wrong clock"),
                         received_at="9999-12-31T23:59:59.000+00:00")
    stop = threading.Event()
    server = serve(db, "127.0.0.1", 0, stop)
    try:
        for path in ("/api/summary", "/api/telemetry", "/api/musings", "/api/records", "/api/prediction",
                     "/api/outbox", "/api/flights", "/api/conversation"):
            status, _, body = request(server, path)
            assert status == 200, (path, body[:300])
        link = get_json(server, "/api/link")
    finally:
        stop.set()
    placed = [m["minute"] for m in link["minutes"]]
    assert "9999-12-31T23:59" not in placed and "9999-12-31" not in placed and "yesterday" not in placed
    assert all(m["t"] for m in link["minutes"])
    assert link["undated_frames"] >= 3  # the two of 9999 and "yesterday"
    assert sum(m["frames"] for m in link["minutes"]) + link["undated_frames"] == 29 + 1 + len(bad)


def test_the_sentence_date_holds_at_the_calendar_s_ends():
    last = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc)
    assert wire.telemetry_datetime("23:59:58", last) == last - timedelta(seconds=1)
    assert wire.telemetry_datetime("00:00:01", last).date() == last.date()  # no day after it
    first = datetime(1, 1, 1, 0, 0, 5, tzinfo=timezone.utc)
    assert wire.telemetry_datetime("23:59:59", first).date() == first.date()  # no day before it
