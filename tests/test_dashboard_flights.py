"""The dashboard follows every flight its listener follows (issue 33, docs/ground.md "The
dashboard with several flights"): beside --db ground.db the listener keeps each followed flight
in ground.CALLSIGN.db, and the `heard` table says which way each frame came ("home", or
"home via NEAR1" inside NEAR1's relay envelope). Databases made with the real Store; a real
server over plain HTTP, then the page in headless Chromium where the machine has one."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from groundstation.store import Store
from groundstation.web import serve
from groundstation.web.flights import FlightFiles, conversation_json, thin_track
from groundstation.web.maps import MapLayers
from stratoecho import wire
from tests.test_dashboard import CHROMIUM, browser, js, texts, wait  # noqa: F401

T0 = datetime(2025, 6, 1, 9, 0, tzinfo=timezone.utc)
NEAR_SAYS = {1: "NEAR1 here: the river shines below.", 3: "NEAR1: FAR1, I hear you faintly."}
FAR_SAYS = {1: "FAR1 over the hills, nobody hears me directly.", 2: "FAR1: thank you NEAR1 for the lift."}


def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat(timespec="milliseconds")


def position(callsign: str, seq: int, lat0: float) -> wire.Telemetry:
    hms = (T0 + timedelta(seconds=10 * seq)).strftime("%H:%M:%S")
    return wire.Telemetry(callsign, seq, hms, lat0 + 0.002 * seq, 0.12 + 0.004 * seq, 100 + 150 * seq, 9,
                          15.0, 1000.0, 4100, 1)


def musing(seq: int, minute: int, text: str) -> wire.Record:
    return wire.Record(wire.Kind.MUSING, 1, seq, int(T0.timestamp()) + 60 * minute, text)


def build_near(path: Path, sentences: int = 20) -> None:
    """The primary flight, NEAR1, heard directly at home."""
    with Store(path) as store:
        for seq in range(sentences):
            store.add_telemetry(position("NEAR1", seq, 52.2), received_at=at(10 * seq))
            store.add_heard("telemetry", 1, seq, "home", at(10 * seq))
        for seq, minute in ((1, 1), (3, 3)):
            store.add_record(musing(seq, minute, NEAR_SAYS[seq]), received_at=at(60 * minute + 5))
            store.add_heard("musing", 1, seq, "home", at(60 * minute + 5))


def build_far(path: Path) -> None:
    """FAR1, heard only inside NEAR1's envelopes, but for musing 2, heard both ways."""
    with Store(path) as store:
        for seq in range(12):
            store.add_telemetry(position("FAR1", seq, 52.6), received_at=at(10 * seq + 2))
            store.add_heard("telemetry", 1, seq, "home via NEAR1", at(10 * seq + 2))
        for seq, minute in ((1, 2), (2, 4)):
            store.add_record(musing(seq, minute, FAR_SAYS[seq]), received_at=at(60 * minute + 7))
            store.add_heard("musing", 1, seq, "home via NEAR1", at(60 * minute + 7))
        store.add_heard("musing", 1, 2, "home", at(60 * 4 + 9))


@pytest.fixture
def ground(tmp_path) -> Path:
    primary = tmp_path / "ground.db"
    build_near(primary)
    build_far(tmp_path / "ground.FAR1.db")
    return primary


def start(db: Path, **kwargs):
    stop = threading.Event()
    if "vendor_dir" in kwargs:  # a station without the map's libraries
        kwargs["map_layers"] = MapLayers(vendor_dir=kwargs.pop("vendor_dir"))
    server = serve(db, "127.0.0.1", 0, stop, **kwargs)
    server.stop_event = stop
    server.flight_files._rescan_s = 0.2  # a test need not wait the seconds a station does
    return server


@pytest.fixture
def dashboard(ground):
    server = start(ground)
    try:
        yield server
    finally:
        server.stop_event.set()


def get(server, path: str):
    with urllib.request.urlopen(server.url.rstrip("/") + path, timeout=10) as r:
        assert r.status == 200
        return json.load(r)


def test_flights_lists_each_with_its_own_track_and_paths(dashboard):
    near, far = get(dashboard, "/api/flights")
    assert (near["callsign"], near["primary"], near["file"]) == ("NEAR1", True, "ground.db")
    assert (far["callsign"], far["primary"], far["file"]) == ("FAR1", False, "ground.FAR1.db")
    assert len(near["track"]) == 20 and len(far["track"]) == 12
    assert far["track"][0] == {"lat": 52.6, "lon": 0.12, "alt": 100, "t": "2025-06-01T09:00:00+00:00"}
    assert far["latest"]["seq"] == 11 and far["latest"]["lat"] == pytest.approx(52.622)
    assert near["counts"] == {"sentences": 20, "records": 2, "musings": 2}
    assert near["paths"]["all"] == {"heard": 22, "direct": 22, "relayed": 0, "via": {}}
    assert far["paths"]["sentences"] == {"heard": 12, "direct": 0, "relayed": 12, "via": {"NEAR1": 12}}
    # musing 2 came both ways: it counts as direct and as relayed
    assert far["paths"]["musings"] == {"heard": 2, "direct": 1, "relayed": 2, "via": {"NEAR1": 2}}
    assert far["error"] is None


def test_conversation_interleaves_by_time_with_paths(dashboard):
    talk = get(dashboard, "/api/conversation")
    assert [(m["callsign"], m["seq"]) for m in talk] == [("NEAR1", 1), ("FAR1", 1), ("NEAR1", 3), ("FAR1", 2)]
    assert [m["text"] for m in talk] == [NEAR_SAYS[1], FAR_SAYS[1], NEAR_SAYS[3], FAR_SAYS[2]]
    assert talk[0]["paths"] == ["home"] and talk[1]["paths"] == ["home via NEAR1"]
    assert talk[3]["paths"] == ["home via NEAR1", "home"]  # heard both ways: both, in the order heard
    assert talk[0]["created"] == "2025-06-01T09:01:00+00:00" and talk[0]["boot"] == 1
    musings = get(dashboard, "/api/musings?since=0")  # the primary's own list says which way too
    assert [m["paths"] for m in musings] == [["home"], ["home"]]
    assert {"id", "kind", "boot", "seq", "created", "text", "received_at", "authentic"} <= set(musings[0])


def test_the_conversation_is_bounded_to_the_newest(ground):
    talk = conversation_json(FlightFiles(ground), limit=2)
    assert [(m["callsign"], m["seq"]) for m in talk] == [("NEAR1", 3), ("FAR1", 2)]


def test_a_flight_followed_later_is_found(dashboard, ground):
    assert len(get(dashboard, "/api/flights")) == 2
    with Store(ground.with_name("ground.MID2.db")) as store:
        store.add_telemetry(position("MID2", 0, 52.4), received_at=at(3))
        store.add_heard("telemetry", 1, 0, "home via NEAR1", at(3))
    time.sleep(0.3)
    flights = get(dashboard, "/api/flights")
    assert [f["callsign"] for f in flights] == ["NEAR1", "FAR1", "MID2"]
    assert flights[2]["paths"]["sentences"]["via"] == {"NEAR1": 1}


def test_a_flight_database_kept_elsewhere(tmp_path):
    primary, elsewhere = tmp_path / "home" / "ground.db", tmp_path / "far1-copy.db"
    primary.parent.mkdir()
    build_near(primary)
    build_far(elsewhere)
    server = start(primary, flight_dbs=[elsewhere, tmp_path / "missing.db"])
    try:
        flights = get(server, "/api/flights")
    finally:
        server.stop_event.set()
    assert [f["callsign"] for f in flights] == ["NEAR1", "FAR1", "missing"]
    assert flights[1]["file"] == "far1-copy.db" and len(flights[1]["track"]) == 12
    assert "no ground database" in flights[2]["error"] and flights[2]["track"] == []


def test_one_flight_answers_as_before(tmp_path):
    primary = tmp_path / "ground.db"
    build_near(primary)
    (tmp_path / "ground.db.bak").write_bytes(b"")  # neither these nor SQLite's own files are flights
    (tmp_path / "other.FAR1.db").write_bytes(b"")
    server = start(primary)
    try:
        flights, talk = get(server, "/api/flights"), get(server, "/api/conversation")
        summary = get(server, "/api/summary")
    finally:
        server.stop_event.set()
    assert [f["callsign"] for f in flights] == ["NEAR1"]
    assert flights[0]["paths"]["all"]["relayed"] == 0
    assert [m["text"] for m in talk] == [NEAR_SAYS[1], NEAR_SAYS[3]]
    assert summary["callsign"] == "NEAR1" and summary["counts"]["telemetry"] == 20


def test_followed_databases_are_never_written(dashboard, ground):
    far = ground.with_name("ground.FAR1.db")
    before = far.read_bytes()
    get(dashboard, "/api/flights")
    get(dashboard, "/api/conversation")
    assert far.read_bytes() == before
    with sqlite3.connect(far) as db:  # and it stays the listener's to write
        db.execute("INSERT INTO heard VALUES ('musing', 1, 9, 'home', '2025-06-01T10:00:00')")


def test_a_flight_is_read_again_only_once_its_database_changed(ground, monkeypatch):
    """Every open page asks every few seconds: an unchanged flight's answer is kept, not re-read."""
    from groundstation.web import flights as module
    from groundstation.web.flights import flights_json

    opened = []
    real = module.GroundReader.open
    monkeypatch.setattr(module.GroundReader, "open", classmethod(lambda cls, p: opened.append(p) or real(p)))
    files = FlightFiles(ground)
    first = flights_json(files)
    conversation_json(files)
    reads = len(opened)
    assert reads == 4  # each flight once for /api/flights, once for the conversation
    assert flights_json(files) == first and len(conversation_json(files)) == 4 and len(opened) == reads
    with Store(ground.parent / "ground.FAR1.db") as store:  # FAR1 says something new
        store.add_record(musing(3, 6, "FAR1: still here."), received_at=at(370))
    conversation_json(files)
    assert opened[reads:] == [ground.parent / "ground.FAR1.db"]  # only the flight that changed
    assert [f["counts"]["musings"] for f in flights_json(files)] == [2, 3]


def test_a_long_track_is_thinned_keeping_both_ends():
    rows = list(range(1234))
    thin = thin_track(rows, 500)
    assert len(thin) == 500 and thin[0] == 0 and thin[-1] == 1233 and thin == sorted(thin)
    assert thin_track(rows[:10], 500) == rows[:10]


def test_the_live_feed_tells_of_another_flight_written(dashboard, ground):
    with urllib.request.urlopen(dashboard.url + "api/events?telemetry=999&records=999", timeout=10) as feed:
        assert feed.readline() == b"retry: 2000\n"
        with Store(ground.with_name("ground.FAR1.db")) as store:
            store.add_telemetry(position("FAR1", 12, 52.6), received_at=at(122))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if feed.readline() == b"event: flights\n":
                break
        else:
            pytest.fail("no flights event")


# --------------------------------------------------------------------------- the real browser


@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM}")
def test_the_page_draws_both_tracks_and_the_conversation(browser, dashboard):  # noqa: F811
    browser.get(dashboard.url)
    wait(browser, lambda d: len(texts(d, "#conversation li .text")) == 4, "the conversation never showed")
    assert texts(browser, "#conversation li .callsign") == ["FAR1", "NEAR1", "FAR1", "NEAR1"]  # newest first
    assert texts(browser, "#conversation li .via") == ["via NEAR1", "via NEAR1"]
    assert js(browser, "return document.getElementById('flights-section').hidden") is False
    lines = texts(browser, "#flights li")
    assert lines[0].startswith("NEAR1") and "all heard directly" in lines[0]
    assert lines[1].startswith("FAR1") and "12 sentences" in lines[1] and "via NEAR1" in lines[1]
    wait(browser, lambda d: js(d, "return document.querySelectorAll('#map path.track').length") == 2,
         "the map never drew both tracks")
    labels = texts(browser, "#map .map-label.flight")
    assert any(t.startswith("FAR1") for t in labels) and any(t.startswith("NEAR1") for t in labels), labels
    problems = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert problems == []


@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM}")
def test_with_one_flight_the_page_hides_the_new_panels(browser, tmp_path):  # noqa: F811
    primary = tmp_path / "ground.db"
    build_near(primary)
    server = start(primary)
    try:
        browser.get(server.url)
        wait(browser, lambda d: len(texts(d, "#musings li .text")) == 2, "the musings never showed")
        wait(browser, lambda d: js(d, "return document.querySelectorAll('#map path.track').length") == 1,
             "no track")
        time.sleep(0.3)
        assert js(browser, "return [document.getElementById('flights-section').hidden, "
                           "document.getElementById('conversation-section').hidden]") == [True, True]
    finally:
        server.stop_event.set()


@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM}")
def test_another_balloon_speaking_appears_live_and_fits_a_phone(browser, dashboard, ground):  # noqa: F811
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True})
    try:
        browser.get(dashboard.url)
        wait(browser, lambda d: len(texts(d, "#conversation li .text")) == 4, "the conversation never showed")
        wait(browser, lambda d: texts(d, "#live") == ["live"], "the live feed never connected")
        assert js(browser, "return document.documentElement.scrollWidth") <= 390  # one column, nothing cut off
        js(browser, "window.__same_page = true")
        with Store(ground.with_name("ground.FAR1.db")) as listener:  # FAR1 answers, through NEAR1
            listener.add_record(musing(3, 5, "FAR1: the sun is up over the cloud."), received_at=at(305))
            listener.add_heard("musing", 1, 3, "home via NEAR1", at(305))
        wait(browser, lambda d: js(d, "const li = document.querySelector('#conversation li');"
                                      "return li && li.dataset.key") == "FAR1/1/3", "the new musing never appeared")
        assert texts(browser, "#conversation li:first-child .text")[0].startswith("FAR1: the sun is up")
        assert texts(browser, "#conversation li:first-child .via") == ["via NEAR1"]
        assert js(browser, "return window.__same_page") is True
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM}")
def test_without_the_map_library_both_tracks_are_drawn(browser, ground, tmp_path):  # noqa: F811
    server = start(ground, vendor_dir=tmp_path / "no-libraries")
    try:
        browser.get(server.url)
        wait(browser, lambda d: js(d, "return document.querySelectorAll('#track polyline.track').length") == 2,
             "the drawing never showed both tracks")
        assert js(browser, "return document.querySelector('#track polyline.track.flight-c1').points.numberOfItems") == 12
        labels = texts(browser, "#track text.label")
        assert "FAR1 1750 m" in labels and "NEAR1 2950 m" in labels, labels
    finally:
        server.stop_event.set()


HOSTILE = '<img src="x" class="pwned" onerror="document.body.dataset.pwned=1">'


@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM}")
def test_markup_from_the_air_is_shown_as_text_everywhere(browser, tmp_path):  # noqa: F811
    """Issue 41, attack 8: a balloon calling itself markup (a HABpack callsign), musing markup,
    heard by a station named in markup. The page shows each as text — the map's labels and the
    tooltip it opens on a track's last point included — and no element of theirs exists."""
    primary = tmp_path / "ground.db"
    build_near(primary)
    with Store(tmp_path / "ground.EVIL1.db") as store:
        for seq in range(6):
            store.add_telemetry(position(HOSTILE, seq, 52.6), received_at=at(10 * seq + 2))
            store.add_heard("telemetry", 1, seq, f"home via {HOSTILE}", at(10 * seq + 2))
        store.add_record(musing(1, 2, f"hello {HOSTILE}"), received_at=at(127))
        store.add_heard("musing", 1, 1, f"{HOSTILE} station", at(127))
    server = start(primary)
    try:
        browser.get(server.url)
        wait(browser, lambda d: len(texts(d, "#conversation li .text")) == 3, "the conversation never showed")
        wait(browser, lambda d: js(d, "return document.querySelectorAll('#map path.latest').length") >= 1,
             "the map never drew the hostile flight's last point")
        js(browser, "document.querySelectorAll('#map path.latest').forEach(p => p.dispatchEvent("
                    "new MouseEvent('mouseover', {bubbles: true})))")
        wait(browser, lambda d: js(d, "return document.querySelectorAll('.leaflet-tooltip').length") >= 1,
             "no tooltip opened")
        tooltips = js(browser, "return [...document.querySelectorAll('.leaflet-tooltip')].map(t => t.textContent)")
        assert HOSTILE in tooltips
        assert any(HOSTILE in t for t in texts(browser, "#map .map-label.flight"))
        assert any(HOSTILE in t for t in texts(browser, "#conversation li .text"))
        assert js(browser, "return document.querySelectorAll('img.pwned, [onerror]').length") == 0
        assert js(browser, "return document.body.dataset.pwned || null") is None
    finally:
        server.stop_event.set()
