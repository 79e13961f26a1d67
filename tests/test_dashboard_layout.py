"""What a crew reads at a glance: the dashboard fills a laptop screen and works on a phone in a
car (real headless Chromium at both sizes, the phone emulated as Chromium's device mode does),
and every chart runs on flight time, the link charts included, also on a replayed database."""

from __future__ import annotations

import json
import threading
import urllib.request
from datetime import datetime, timedelta, timezone

import pytest

from groundstation.store import Store
from groundstation.web import serve
from stratoecho import wire
from tests.test_dashboard import CHROMIUM, browser, build_ground_db, js, open_page, telemetry  # noqa: F401

LAPTOP = (1440, 900)
PHONE = (390, 844)
SECTIONS = ("track", "crew", "musings", "charts", "pictures", "link", "commands")


@pytest.fixture
def dashboard(tmp_path):
    db = tmp_path / "ground.db"
    build_ground_db(db)
    stop = threading.Event()
    server = serve(db, "127.0.0.1", 0, stop)
    try:
        yield server
    finally:
        stop.set()


def get(server, path: str):
    with urllib.request.urlopen(server.url.rstrip("/") + path, timeout=10) as r:
        return json.load(r)


def test_link_minutes_are_on_flight_time_live_and_replayed(tmp_path, dashboard):
    # Live: heard as sent, so a minute heard is the same minute of the flight.
    minutes = get(dashboard, "/api/link")["minutes"]
    assert minutes and all(m["t"] == m["minute"] + ":00+00:00" for m in minutes)
    # Replayed three days later (listen --replay stamps what it hears with the time it hears it).
    db = tmp_path / "replayed.db"
    later = timedelta(days=3, minutes=7, seconds=20)
    t0 = datetime(2025, 6, 1, 9, 0, tzinfo=timezone.utc)
    with Store(db) as store:
        for seq in range(30):
            sent = telemetry(seq)
            heard = (t0 + timedelta(seconds=10 * seq) + later).isoformat(timespec="milliseconds")
            store.add_telemetry(sent, received_at=heard)
            store.frames.add(wire.encode_sentence(sent), "replay", received_at=heard)
    stop = threading.Event()
    server = serve(db, "127.0.0.1", 0, stop)
    try:
        replayed = get(server, "/api/link")["minutes"]
        sentences = get(server, "/api/telemetry?since=0")
    finally:
        stop.set()
    flight = [datetime.fromisoformat(s["t"]) for s in sentences]
    for m in replayed:
        t = datetime.fromisoformat(m["t"])
        assert t0 - timedelta(minutes=1) <= t <= flight[-1], m  # on the flight's clock, not the replay's
        assert m["minute"].startswith("2025-06-04")


def rects(driver) -> dict[str, dict]:
    return js(driver, "const out = {};"
                      "for (const id of arguments[0]) { const r = document.getElementById(id + '-section')"
                      ".getBoundingClientRect(); out[id] = {left: r.left, right: r.right, top: r.top,"
                      " bottom: r.bottom, width: r.width}; } return out;", list(SECTIONS))


def page_at(driver, server, size: tuple[int, int], mobile: bool) -> dict:
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": size[0], "height": size[1], "deviceScaleFactor": 1, "mobile": mobile})
    open_page(driver, server)
    width = js(driver, "return window.innerWidth")
    assert width == size[0]
    # nothing wider than the screen: no sideways scrolling, no section cut off at the right
    assert js(driver, "return document.documentElement.scrollWidth") <= width
    assert js(driver, "return [...document.querySelectorAll('main section')].every("
                      "s => s.scrollWidth <= s.clientWidth + 1)")
    return rects(driver)


@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM}")
def test_in_chromium_it_fills_a_laptop_and_fits_a_phone(browser, dashboard):  # noqa: F811
    try:
        r = page_at(browser, dashboard, LAPTOP, mobile=False)
        assert all(s["right"] <= LAPTOP[0] for s in r.values())
        assert r["track"]["width"] >= 0.55 * LAPTOP[0]  # the map takes most of the screen
        assert r["crew"]["left"] > r["track"]["right"] and r["crew"]["top"] == pytest.approx(r["track"]["top"])
        assert max(s["right"] for s in r.values()) >= LAPTOP[0] - 40  # the width is used to its edge
        assert r["charts"]["top"] > r["track"]["bottom"] and r["musings"]["top"] > r["crew"]["bottom"]

        r = page_at(browser, dashboard, PHONE, mobile=True)
        assert all(s["left"] >= 0 and s["right"] <= PHONE[0] for s in r.values())
        assert r["track"]["width"] >= 0.9 * PHONE[0]
        tops = [r[name]["top"] for name in SECTIONS]  # one column, the map and the crew's numbers first
        assert tops == sorted(tops), tops
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
