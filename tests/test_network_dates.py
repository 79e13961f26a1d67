"""Times a station gives (issue 50, item 5): a frame's `received_at` and a position's `at` are a
station's word, and the database orders, charts and dates sentences by them. One frame "heard"
on 9999-12-31 failed the aggregate dashboard's `/api/link`. The aggregator now refuses a message
whose time is no time, or lies outside a day before to five minutes after its own clock
(station_limits), counted and warned of per station, never stored; and the dashboard serves an
older database that holds such times without failing any view."""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

from structlog.testing import capture_logs

from groundstation.network import Aggregator
from groundstation.store import GroundReader, Store
from groundstation.web import api, serve
from stratoecho import wire
from tests.fakes import AUTH
from tests.test_dashboard import T0, build_ground_db, get_json, request, telemetry
from tests.test_network import CALLSIGN, flight_frames

NOW = datetime(2026, 6, 1, 10, 30, tzinfo=timezone.utc)  # the aggregator's clock; the flight is 10:00-10:10
BAD_TIMES = ["9999-12-31", "9999-12-31T23:59:59.000+00:00", "yesterday", 17, "",
             "2026-06-01T10:36:00+00:00",  # six minutes ahead of the aggregator's clock
             "2026-05-31T10:29:00+00:00",  # a day and a minute behind it
             "0001-01-01T00:00:00+05:00"]  # before the calendar's first day, in UTC


def message(n: int, data: bytes, received_at=None, station: str = "hill") -> SimpleNamespace:
    body = {"v": 1, "id": f"{station}:{n}", "hex": data.hex()}
    if received_at is not None:
        body["received_at"] = received_at
    return SimpleNamespace(topic=f"stratoecho/{CALLSIGN}/frames/{station}", payload=json.dumps(body).encode(),
                           mid=n, qos=1)


def aggregator(db) -> Aggregator:
    return Aggregator("127.0.0.1", 1, db, downlink=AUTH, quorum=1, wall_clock=lambda: NOW)  # fed directly


def test_a_frame_dated_9999_is_refused_and_the_link_view_of_the_aggregate_works(tmp_path):
    """The issue's case: through the aggregator, then the dashboard's link view on its database."""
    db = tmp_path / "aggregate.db"
    agg = aggregator(db)
    sentences = [f for f in flight_frames() if f.startswith(b"$$")][:4]
    for n, f in enumerate(sentences[:3]):
        agg._on_message(None, None, message(n, f, f"2026-06-01T10:0{n}:00.000+00:00"))
    agg._on_message(None, None, message(3, sentences[3], "9999-12-31"))
    agg.store.commit()
    assert agg.stats.bad_messages == {"bad date": 1} and agg.stats.frames == 3
    assert len(agg._acks) == 4  # refused, and acknowledged with the rest: the broker never offers it again
    with GroundReader.open(db) as reader:
        link = api.link(reader)
        assert [m["minute"] for m in link["minutes"]] == ["2026-06-01T10:00", "2026-06-01T10:01", "2026-06-01T10:02"]
        assert [m["telemetry"] for m in link["minutes"]] == [1, 1, 1]  # the flight's signed sentences, its track
        assert link["undated_frames"] == 0 and reader.link.last_heard() == "2026-06-01T10:02:00.000+00:00"
    # The same frame again, at a time that can be true: stored now (refusing lost nothing).
    agg._on_message(None, None, message(3, sentences[3], "2026-06-01T10:03:00.000+00:00"))
    agg.store.commit()
    assert agg.stats.frames == 4
    agg.store.close()


def test_every_time_outside_the_window_is_refused_per_message_and_warned_of_per_station(tmp_path):
    db = tmp_path / "aggregate.db"
    agg = aggregator(db)
    frames = flight_frames()
    with capture_logs() as logs:
        for n, when in enumerate(BAD_TIMES):
            agg._on_message(None, None, message(n, frames[n], when))
        agg._on_message(None, None, message(50, frames[50], "yesterday", station="harbour"))
    assert agg.stats.bad_messages == {"bad date": len(BAD_TIMES) + 1} and agg.stats.frames == 0
    assert dict(agg.bad_dates) == {"hill": len(BAD_TIMES), "harbour": 1}
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert [(w["station"], w["field"], w["got"]) for w in warnings] == [("hill", "received_at", "'9999-12-31'"),
                                                                        ("harbour", "received_at", "'yesterday'")]
    assert "2026-05-31T10:30:00Z and 2026-06-01T10:35:00Z" in warnings[0]["expected"]  # what it takes
    # Within the window, in any zone, or not given: stored, as UTC with milliseconds.
    good = {"2026-06-01T12:00:05+02:00": "2026-06-01T10:00:05.000+00:00",
            "2026-06-01T10:34:59Z": "2026-06-01T10:34:59.000+00:00",
            "2026-05-31T10:31:00": "2026-05-31T10:31:00.000+00:00",  # no zone: UTC, as the format says
            None: "2026-06-01T10:30:00.000+00:00"}  # not said: heard as it arrived
    for n, when in enumerate(good, start=100):
        agg._on_message(None, None, message(n, frames[n - 100], when))
    agg.store.commit()
    agg.store.close()
    with sqlite3.connect(db) as c:
        stored = [r[0] for r in c.execute("SELECT received_at FROM frames ORDER BY id")]
    assert stored == list(good.values())


def test_a_station_position_with_a_bad_time_is_refused_and_the_last_one_kept(tmp_path):
    db = tmp_path / "aggregate.db"
    agg = aggregator(db)

    def say(n: int, at) -> None:
        body = {"v": 1, "station": "hill", "lat": 52.0 + n, "lon": 0.1, "alt_m": 30.0, **({"at": at} if at else {})}
        agg._on_message(None, None, SimpleNamespace(topic="stratoecho/position/hill", payload=json.dumps(body).encode(),
                                                    mid=n, qos=1))

    say(0, "2026-06-01T10:29:00Z")
    say(1, "9999-12-31")
    say(2, "1970-01-01T00:00:00Z")  # a station whose clock was never set
    agg.store.commit()
    with GroundReader.open(db) as reader:
        assert [(s.lat, s.updated_at) for s in reader.link.stations()] == [(52.0, "2026-06-01T10:29:00.000+00:00")]
    assert agg.stats.positions == 1 and agg.stats.bad_messages == {"bad date": 2}
    say(3, None)
    agg.store.commit()
    with GroundReader.open(db) as reader:
        assert [(s.lat, s.updated_at) for s in reader.link.stations()] == [(55.0, "2026-06-01T10:30:00.000+00:00")]
    agg.store.close()


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
            store.frames.add(wire.encode_sentence(sentence), "mqtt", received_at=when, station="wrong-clock")
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
