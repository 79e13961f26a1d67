"""The web dashboard (`groundstation serve`): its JSON endpoints, live feed and refusals over
plain HTTP, then the real page in a real headless Chromium (Debian's /usr/bin/chromium and
/usr/bin/chromedriver, driven by Selenium) with every host but 127.0.0.1 made unresolvable.

The ground database is built with the real `Store` from the wire format's own objects:
a 29-sentence ascent (sentence 17 lost), three musings (one of them hostile markup) with
musings 3 and 5 lost (5 is known only from a health record), two health records, a real
JPEG made with Pillow, and frames from two stations with their signal.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from groundstation.store import Store
from groundstation.web import register_cli, serve
from groundstation.web.cli import cmd_serve
from stratoecho import wire
from stratoecho.wire.uplink import MAX_NOTE_BYTES, CommandId, MemoryNote, PowerMode, SetIntervals, SetMode
from tests.fakes import CAN_SIGNAL_A_THREAD, signal_another_thread

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
T0 = datetime(2025, 6, 1, 9, 0, tzinfo=timezone.utc)
LOST_SENTENCE = 17
HOSTILE = ('<script>window.__pwned = 1</script><img src="/x-never" onerror="window.__pwned = 2">'
           ' & "quoted" </li>')
MUSINGS = {1: "The fields look like a quilt from up here.",
           2: "Cold now. The sky above is nearly black, the curve of the land is showing.",
           4: HOSTILE}
WAIT_S = 20  # a loaded 2-core machine is slow to start a browser


def jpeg_bytes() -> bytes:
    image = Image.new("RGB", (48, 32), (30, 90, 160))
    ImageDraw.Draw(image).ellipse((14, 6, 34, 26), fill=(240, 200, 40))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=80)
    return out.getvalue()


JPEG = jpeg_bytes()


def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat(timespec="milliseconds")


def telemetry(seq: int) -> wire.Telemetry:
    hms = (T0 + timedelta(seconds=10 * seq)).strftime("%H:%M:%S")
    return wire.Telemetry("STRATO1", seq, hms, 52.2 + 0.002 * seq, 0.12 + 0.004 * seq, 100 + 150 * seq, 9,
                          15.0 - 0.5 * seq, 1000.0 - 10 * seq, 4100 - 3 * seq, 1)


def build_ground_db(path: Path) -> None:
    with Store(path) as store:
        for seq in range(30):
            if seq != LOST_SENTENCE:
                store.add_telemetry(telemetry(seq), received_at=at(10 * seq))
                store.frames.add(wire.encode_sentence(telemetry(seq)), "udp 127.0.0.1:9", received_at=at(10 * seq),
                                station="hill", rssi_dbm=-100.0 - seq, snr_db=8.0 - seq / 10)
        store.frames.add(b"\xec\x11garbage", "udp 127.0.0.1:9", error="crc mismatch", received_at=at(95),
                        station="valley", rssi_dbm=-125.0, snr_db=-9.0)
        for seq, text in MUSINGS.items():
            store.add_record(wire.Record(wire.Kind.MUSING, 1, seq, int(T0.timestamp()) + 60 * seq, text),
                             received_at=at(60 * seq + 5))
            store.add_heard("musing", 1, seq, "hill")
        for seq, mode in ((1, "NOMINAL"), (2, "LOW_POWER")):
            fields = {"mode": mode, "phase": "ascent", "batt_mv": 4010 - seq, "loss": 0.125, "musing_seq": 5}
            store.add_record(wire.Record(wire.Kind.HEALTH, 1, seq, int(T0.timestamp()) + 100 * seq, fields),
                             received_at=at(100 * seq + 3))
        store.add_record(wire.Record(wire.Kind.IMAGE, 1, 1, int(T0.timestamp()) + 200, JPEG),
                         received_at=at(205))


@pytest.fixture
def ground_db(tmp_path) -> Path:
    path = tmp_path / "ground.db"
    build_ground_db(path)
    return path


@pytest.fixture
def dashboard(ground_db):
    stop = threading.Event()
    server = serve(ground_db, "127.0.0.1", 0, stop)
    server.stop_event = stop  # for tests that stop it themselves
    try:
        yield server
    finally:
        stop.set()


# --------------------------------------------------------------------------- plain HTTP


def request(server, path: str, body: bytes | None = None, headers: dict | None = None,
            method: str | None = None) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(server.url.rstrip("/") + path, data=body, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def get_json(server, path: str):
    status, headers, body = request(server, path)
    assert status == 200, body
    assert headers["Content-Type"].startswith("application/json")
    return json.loads(body)


def post_command(server, command: dict | bytes, token: str | None = "page", **headers) -> tuple[int, dict]:
    token = server.token if token == "page" else token
    body = command if isinstance(command, bytes) else json.dumps(command).encode()
    head = {"Content-Type": "application/json", **({"X-Stratoecho-Token": token} if token else {}), **headers}
    status, _, answer = request(server, "/api/commands", body, head)
    return status, json.loads(answer)


def outbox_rows(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT command, args, what, sent_at FROM outbox ORDER BY id").fetchall()


def test_summary_and_lists(dashboard):
    summary = get_json(dashboard, "/api/summary")
    assert summary["counts"] == {"frames": 30, "frames_bad": 1, "telemetry": 29, "musings": 3, "events": 0,
                                 "images": 1, "health": 2}
    assert summary["callsign"] == "STRATO1" and summary["max_alt"] == 100 + 150 * 29
    assert (summary["launch"]["seq"], summary["latest"]["seq"]) == (0, 29)
    assert summary["health"]["fields"]["mode"] == "LOW_POWER"
    assert summary["cursor"]["telemetry"] == 29 and summary["outbox_queued"] == 0

    rows = get_json(dashboard, "/api/telemetry?since=0")
    assert [r["seq"] for r in rows] == [s for s in range(30) if s != LOST_SENTENCE]
    assert rows[3]["t"] == (T0 + timedelta(seconds=30)).isoformat()  # sentence time, dated
    expected = {k: v for k, v in telemetry(0).as_dict().items() if k != "kind"}
    assert rows[0] == {**expected, "id": 1, "t": T0.isoformat(), "received_at": at(0), "authentic": False}
    newer = get_json(dashboard, f"/api/telemetry?since={rows[-2]['id']}")
    assert [r["seq"] for r in newer] == [29]

    musings = get_json(dashboard, "/api/musings?since=0")
    assert {m["seq"]: m["text"] for m in musings} == MUSINGS  # the hostile one exactly as sent
    assert get_json(dashboard, f"/api/musings?since={musings[-1]['id']}") == []
    (image,) = get_json(dashboard, "/api/records?kind=image")
    assert image["image"] == {"url": "/api/images/1/1.jpg", "bytes": len(JPEG)} and "jpeg" not in image
    health = get_json(dashboard, "/api/records?kind=health&since=0")
    assert [h["fields"]["mode"] for h in health] == ["NOMINAL", "LOW_POWER"]
    assert health[0]["fields"]["loss"] == 0.125

    for bad in ("/api/telemetry?since=-1", "/api/musings?since=x", "/api/records?kind=Drop%20table"):
        status, _, body = request(dashboard, bad)
        assert status == 400 and json.loads(body)["error"]
    assert request(dashboard, "/api/nothing")[0] == 404


def test_page_is_served_with_its_token_and_a_strict_policy(dashboard):
    status, headers, body = request(dashboard, "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert f'content="{dashboard.token}"'.encode() in body and b"{{COMMAND_TOKEN}}" not in body
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert b"http://" not in body.replace(b"http://www.w3.org", b"") and b"https://" not in body
    for path in ("/app.js", "/style.css"):
        status, headers, script = request(dashboard, path)
        assert status == 200 and b"http://" not in script.replace(b"http://www.w3.org", b"")
        assert b"https://" not in script and b"innerHTML" not in script and b"@import" not in script


def test_images_are_served_as_jpeg(dashboard):
    status, headers, body = request(dashboard, "/api/images/1/1.jpg")
    assert (status, headers["Content-Type"], body) == (200, "image/jpeg", JPEG)
    assert request(dashboard, "/api/images/1/2.jpg")[0] == 404
    assert request(dashboard, "/api/images/1/x.jpg")[0] == 404


def test_link_statistics(dashboard):
    link = get_json(dashboard, "/api/link")
    stations = {s["station"]: s for s in link["stations"]}
    assert (stations["hill"]["frames"], stations["hill"]["bad"], stations["hill"]["records_heard"]) == (29, 0, 3)
    assert stations["hill"]["last_rssi_dbm"] == -129.0
    assert (stations["valley"]["bad"], stations["valley"]["rssi_dbm"]) == (1, -125.0)
    minutes = {m["minute"]: m for m in link["minutes"]}
    assert sum(m["frames"] for m in minutes.values()) == 30
    first = minutes["2025-06-01T09:01"]  # sentences 6..11
    assert (first["frames"], first["bad"], first["telemetry"], first["telemetry_missing"]) == (7, 1, 6, 0)
    lost = minutes["2025-06-01T09:03"]  # 18..23; 17's loss shows when 18 arrives
    assert (lost["telemetry"], lost["telemetry_missing"]) == (6, 1)
    assert (minutes["2025-06-01T09:02"]["telemetry"], minutes["2025-06-01T09:02"]["telemetry_missing"]) == (5, 0)
    missing = {(m["kind"], m["boot"]): m for m in link["missing"]}
    assert missing[("telemetry", 1)]["ranges"] == [[17, 17]]
    assert missing[("musing", 1)] == {"kind": "musing", "boot": 1, "first": 1, "last": 5, "heard": 3,
                                           "missing": 2, "ranges": [[3, 3], [5, 5]]}
    assert missing[("image", 1)]["missing"] == 0 and ("health", 1) not in missing


def test_commands_are_validated_and_queued(dashboard, ground_db):
    good = [({"command": "ping", "nonce": 0xBEEF}, CommandId.PING, b"\xbe\xef"),
            ({"command": "set_mode", "mode": "survival"}, CommandId.SET_MODE, SetMode(PowerMode.SURVIVAL).pack()),
            ({"command": "set_intervals", "telemetry_s": 30, "musing_s": 600}, CommandId.SET_INTERVALS,
             SetIntervals(30, 600).pack()),
            ({"command": "memory_note", "text": "Remember the river — Ålvsbyn"}, CommandId.MEMORY_NOTE,
             MemoryNote("Remember the river — Ålvsbyn").pack())]
    for command, _cid, _args in good:
        status, answer = post_command(dashboard, command)
        assert status == 201 and answer["state"] == "queued", answer
    assert [(c, a) for c, a, _, _ in outbox_rows(ground_db)] == [(int(cid), args) for _, cid, args in good]

    bad = [{"command": "memory_note", "text": "é" * 150},  # 150 characters, 300 bytes
           {"command": "memory_note", "text": ""},
           {"command": "memory_note"},
           {"command": "set_mode", "mode": "turbo"},
           {"command": "set_intervals", "telemetry_s": 0, "musing_s": 60},
           {"command": "set_intervals", "telemetry_s": 30.5, "musing_s": 60},
           {"command": "ping", "nonce": 70000},
           {"command": "ping", "nonce": 1, "colour": "red"},  # a field the command does not have
           {"command": "set_intervals", "telemetry_s": 30},  # one missing
           {"command": "set_mode", "mode": 2},  # modes by name
           {"command": "resend"},  # the ground's own: not the operator's to queue
           ["ping"]]
    for command in bad:
        status, answer = post_command(dashboard, command)
        assert status == 400 and answer["error"], command
    assert post_command(dashboard, b"{not json")[0] == 400
    assert post_command(dashboard, b"\xff\xfe")[0] == 400
    assert len(outbox_rows(ground_db)) == len(good)

    outbox = get_json(dashboard, "/api/outbox")
    assert [c["state"] for c in outbox] == ["queued"] * 4 and outbox[0]["what"] == "memory note: Remember the river — Ålvsbyn"
    with Store(ground_db) as listener:  # the listener sends the newest
        listener.outbox.mark_sent(outbox[0]["id"])
    assert [c["state"] for c in get_json(dashboard, "/api/outbox")] == ["sent", "queued", "queued", "queued"]


def test_the_commands_are_listed_as_the_wire_declares_them(dashboard):
    """GET /api/commands is what the page draws its form from: the declarations' fields and bounds."""
    listed = {c["command"]: c for c in get_json(dashboard, "/api/commands")}
    assert list(listed) == ["ping", "set_mode", "set_intervals", "memory_note"]  # by id
    (text,) = listed["memory_note"]["fields"]
    assert (text["type"], text["min_bytes"], text["max_bytes"], text["required"]) == ("text", 1, MAX_NOTE_BYTES, True)
    (mode,) = listed["set_mode"]["fields"]
    assert mode["choices"] == [m.name.lower() for m in PowerMode] and listed["set_mode"]["risky"]
    assert [(f["name"], f["min"], f["max"], f["unit"]) for f in listed["set_intervals"]["fields"]] == [
        ("telemetry_s", 1, 0xFFFF, "s"), ("musing_s", 1, 0xFFFF, "s")]
    (nonce,) = listed["ping"]["fields"]
    assert not nonce["required"] and not listed["ping"]["risky"]  # left out, the server picks one
    assert all(c["label"] and c["help"] for c in listed.values())


def test_cross_site_posts_are_refused(dashboard, ground_db):
    note = {"command": "memory_note", "text": "forged"}
    origin = dashboard.url.rstrip("/")
    refused = [
        post_command(dashboard, note, Origin="http://evil.example"),  # right token, wrong origin
        post_command(dashboard, note, token=None, Origin=origin),  # no token
        post_command(dashboard, note, token="guessed", Origin=origin),
        post_command(dashboard, note, **{"Sec-Fetch-Site": "cross-site"}),
        post_command(dashboard, note, Host="evil.example"),  # a rebound DNS name
    ]
    assert [status for status, _ in refused] == [403] * len(refused)
    # what a plain cross-site <form> can send: no token, and not JSON
    status, _, _ = request(dashboard, "/api/commands", b"command=memory_note&text=forged",
                           {"Content-Type": "application/x-www-form-urlencoded", "Origin": "null"})
    assert status == 403
    status, _ = post_command(dashboard, b'{"command": "ping"}', **{"Content-Type": "text/plain"})
    assert status == 415
    assert request(dashboard, "/api/summary", headers={"Host": "attacker.example:8080"})[0] == 403
    assert outbox_rows(ground_db) == []
    assert post_command(dashboard, note, Origin=origin, **{"Sec-Fetch-Site": "same-origin"})[0] == 201
    assert len(outbox_rows(ground_db)) == 1


def read_event(stream) -> tuple[str, str | None, object]:
    """The next event (name, id, data) from a text/event-stream, skipping comments."""
    name, event_id, data = None, None, []
    while True:
        line = stream.readline()
        assert line, "the event stream ended"
        line = line.decode().rstrip("\n")
        if not line:
            if data:
                return name or "message", event_id, json.loads("\n".join(data))
            continue
        field, _, value = line.partition(": ")
        if field == "event":
            name = value
        elif field == "id":
            event_id = value
        elif field == "data":
            data.append(value)


def events_until(stream, name: str, predicate=lambda data: True, limit: int = 20):
    for _ in range(limit):
        event, event_id, data = read_event(stream)
        if event == name and predicate(data):
            return event_id, data
    raise AssertionError(f"no {name} event in {limit}")


def test_event_stream_pushes_new_rows_and_resumes(dashboard, ground_db):
    cursor = get_json(dashboard, "/api/summary")["cursor"]
    url = dashboard.url + f"api/events?telemetry={cursor['telemetry']}&records={cursor['records']}"
    with urllib.request.urlopen(url, timeout=10) as stream:
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        _, outbox = events_until(stream, "outbox")  # the outbox comes first, whole
        assert outbox == []
        with Store(ground_db) as listener:
            listener.add_telemetry(telemetry(30))
            listener.add_record(wire.Record(wire.Kind.MUSING, 1, 5, int(T0.timestamp()) + 300, "Late, but here."))
        _, rows = events_until(stream, "telemetry")
        assert [r["seq"] for r in rows] == [30]
        event_id, records = events_until(stream, "record")
        assert [(r["kind"], r["seq"], r["text"]) for r in records] == [("musing", 5, "Late, but here.")]
        assert event_id == f"{cursor['telemetry'] + 1}.{cursor['records'] + 1}"
        post_command(dashboard, {"command": "ping"})
        _, outbox = events_until(stream, "outbox")
        assert [c["state"] for c in outbox] == ["queued"]
    # A browser that reconnects names the last event it saw; the stream goes on from there.
    resume = urllib.request.Request(dashboard.url + "api/events?telemetry=0&records=0",
                                    headers={"Last-Event-ID": f"{cursor['telemetry']}.{cursor['records']}"})
    with urllib.request.urlopen(resume, timeout=10) as stream:
        _, records = events_until(stream, "record")
        assert [r["seq"] for r in records] == [5]


def test_stopping_ends_streams_and_closes_the_port(dashboard):
    with urllib.request.urlopen(dashboard.url + "api/events", timeout=10) as stream:
        events_until(stream, "record")  # from the start: everything there is
        started = time.monotonic()
        dashboard.stop_event.set()
        while stream.readline():  # ends within a poll, not at the next keepalive
            pass
        assert time.monotonic() - started < 5
    deadline = time.monotonic() + 5
    while True:
        try:
            socket.create_connection(dashboard.server_address[:2], timeout=1).close()
        except OSError:
            break
        assert time.monotonic() < deadline, "the port still accepts connections after stop"
        time.sleep(0.05)


def test_command_line(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="python -m groundstation")
    register_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve", "--db", str(tmp_path / "g.db")])
    assert (args.host, args.port, args.func) == ("127.0.0.1", 8080, cmd_serve)
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--db", "g.db", "--port", "70000"])
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--help"])
    assert "no internet" in capsys.readouterr().out

    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE notes (x)")
    assert cmd_serve(parser.parse_args(["serve", "--db", str(other), "--port", "0"])) == 1
    assert "not a stratoecho ground database" in capsys.readouterr().err

    stop = threading.Event()
    result = []
    runner = threading.Thread(target=lambda: result.append(
        cmd_serve(parser.parse_args(["serve", "--db", str(tmp_path / "new.db"), "--port", "0"]), stop)))
    runner.start()
    deadline, err = time.monotonic() + 10, ""
    while (found := re.search(r"dashboard: (http://127\.0\.0\.1:\d+/)", err)) is None and time.monotonic() < deadline:
        time.sleep(0.05)
        err += capsys.readouterr().err
    try:
        assert found, err
        with urllib.request.urlopen(found[1] + "api/summary", timeout=10) as response:
            assert json.load(response)["counts"]["telemetry"] == 0  # a new, empty ground database
    finally:
        stop.set()
        runner.join(5)
    assert result == [0] and (tmp_path / "new.db").exists()


@pytest.mark.skipif(not CAN_SIGNAL_A_THREAD, reason="tgkill's number is not known on this machine")
def test_a_sigterm_taken_by_a_server_thread_stops_serve(tmp_path):
    """The kernel may give systemd's SIGTERM to the thread that serves pages; `serve` once
    waited for its stop with no time-out, so only the unit's SIGKILL ended it."""
    proc = subprocess.Popen([sys.executable, "-m", "groundstation", "serve", "--db", str(tmp_path / "g.db"),
                             "--port", "0"], cwd=Path(__file__).resolve().parent.parent, stderr=subprocess.PIPE,
                            text=True)
    try:
        for line in proc.stderr:
            if line.startswith("answers to"):
                break
        else:
            pytest.fail(f"serve ended before it answered (status {proc.wait()})")
        signal_another_thread(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
        proc.wait()


# --------------------------------------------------------------------------- the real browser

browser_only = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM} "
                                  "(Debian's chromium and chromedriver packages; make test installs them)")


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,2400", "--disable-background-networking",
                # No name resolves but the server's address: the page must need nothing else.
                "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


def wait(driver, condition, message: str):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_S, poll_frequency=0.1).until(lambda d: condition(d), message)


def js(driver, script: str, *args):
    return driver.execute_script(script, *args)


def texts(driver, selector: str) -> list[str]:
    """Text of every element matching `selector`, read in one step: the page redraws lists
    as rows arrive, so a Selenium element handle may go stale between finding and reading."""
    return js(driver, "return [...document.querySelectorAll(arguments[0])].map(e => e.textContent)", selector)


def musing_texts(driver) -> list[str]:
    return texts(driver, "#musings li .text")


def open_page(driver, server) -> None:
    driver.get(server.url)
    wait(driver, lambda d: len(musing_texts(d)) == len(MUSINGS), "the musings never appeared")
    # who may queue commands (/api/session) decides whether the form shows
    wait(driver, lambda d: texts(d, "#operator-state") not in ([], ["…"]), "the operator state never showed")


NOTE_INPUT = "cmd-memory_note-text"  # commands.js names each input cmd-COMMAND-FIELD


def choose_command(driver, name: str) -> None:
    """Pick a command in the form drawn from /api/commands (its fields show, the others hide)."""
    from selenium.webdriver.support.ui import Select

    wait(driver, lambda d: js(d, "return [...document.querySelectorAll('#cmd-kind option')]"
                                 ".some(o => o.value === arguments[0])", name), f"the form never offered {name}")
    Select(driver.find_element("id", "cmd-kind")).select_by_value(name)


def map_positions(driver) -> int:
    """How many positions the map's track is drawn through (map.js notes it on the map)."""
    return js(driver, "const m = document.getElementById('map'); return document.querySelector('#map path.track') "
                      "? Number(m.dataset.positions) : 0")


def polyline_points(driver, selector: str) -> list[int]:
    return js(driver, "return [...document.querySelectorAll(arguments[0])]"
                      ".map(p => p.points.numberOfItems)", selector)


@browser_only
def test_page_shows_everything_from_this_server_only(browser, dashboard):
    open_page(browser, dashboard)
    # newest first, each with its time, and the hostile one as plain text
    assert musing_texts(browser) == [MUSINGS[4], MUSINGS[2], MUSINGS[1]]
    times = texts(browser, "#musings li time")
    assert times == ["09:04:00", "09:02:00", "09:01:00"]
    assert js(browser, "return window.__pwned") is None
    assert js(browser, "return document.querySelectorAll('#musings img, #musings script').length") == 0
    base = dashboard.url.rstrip("/")
    scripts = js(browser, "return [...document.scripts].map(s => s.src)")
    assert scripts and all(src.startswith(base + "/") for src in scripts)  # the map's libraries too

    wait(browser, lambda d: map_positions(d) == 29, "no track on the map")
    assert js(browser, "return document.querySelectorAll('#map path.launch, #map path.latest').length") == 2
    assert any(t.endswith(" km") or t.endswith(" m") for t in texts(browser, "#map .leaflet-control-scale-line"))
    for chart, n in (("#chart-alt", 29), ("#chart-temp", 29), ("#chart-batt", 29)):
        assert polyline_points(browser, f"{chart} polyline.line") == [n], chart
    assert polyline_points(browser, "#chart-mode polyline.line")[0] >= 3  # NOMINAL, then a step to LOW_POWER
    assert js(browser, "return document.querySelectorAll('#chart-frames rect.bar').length") > 0

    wait(browser, lambda d: js(d, "const i = document.querySelector('#pictures img');"
                                  "return i !== null && i.complete && i.naturalWidth") == 48, "the picture never loaded")
    stations = texts(browser, "#stations tbody tr td:first-child")
    assert stations == ["hill", "valley"]
    missing = texts(browser, "#missing li")
    assert any(m.startswith("musing boot 1: 2 missing") for m in missing), missing
    wait(browser, lambda d: texts(d, "#live") == ["live"], "the live feed never connected")

    urls = js(browser, "return performance.getEntries().filter(e => e.name.includes('://')).map(e => e.name)")
    assert {u.split("?")[0] for u in urls} >= {base + "/", base + "/app.js", base + "/style.css",
                                               base + "/api/summary", base + "/api/images/1/1.jpg"}
    assert [u for u in urls if not u.startswith(base + "/")] == []
    assert not any("x-never" in u for u in urls)
    problems = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert problems == []  # no refused resource, no policy violation, no script error


@browser_only
def test_new_musings_and_positions_appear_live(browser, dashboard, ground_db):
    open_page(browser, dashboard)
    wait(browser, lambda d: texts(d, "#live") == ["live"], "the live feed never connected")
    js(browser, "window.__same_page = true")
    with Store(ground_db) as listener:
        listener.add_record(wire.Record(wire.Kind.MUSING, 1, 5, int(T0.timestamp()) + 420,
                                        "A late thought, heard after the page loaded."))
        listener.add_telemetry(telemetry(30), received_at=at(300))
    wait(browser, lambda d: musing_texts(d)[:1] == ["A late thought, heard after the page loaded."],
         "the new musing never appeared")
    wait(browser, lambda d: map_positions(d) == 30, "the track never grew")
    assert js(browser, "return window.__same_page") is True  # no reload happened
    assert len(musing_texts(browser)) == len(MUSINGS) + 1


@browser_only
def test_a_makers_sensors_show_in_the_summary_as_text(browser, dashboard, ground_db):
    open_page(browser, dashboard)
    wait(browser, lambda d: texts(d, "#live") == ["live"], "the live feed never connected")
    assert js(browser, "return document.getElementById('sum-sensors-row').hidden") is True  # none flies here
    with Store(ground_db) as listener:
        listener.add_record(wire.Record(wire.Kind.HEALTH, 1, 9, int(T0.timestamp()) + 430,
                                        {"mode": "NOMINAL", "readings": "co2_ppm=412.5,<img src=x onerror=__pwned=1>=1"}))
    wait(browser, lambda d: texts(d, "#sum-sensors") == ["co2_ppm 412.5 · <img src x onerror=__pwned=1>=1"],
         "the sensors' values never appeared")
    assert js(browser, "return document.getElementById('sum-sensors-row').hidden") is False
    assert js(browser, "return window.__pwned") is None


@browser_only
def test_a_refused_live_feed_is_asked_for_again(browser, ground_db):
    """A browser gives up on a feed answered 503 (every feed taken): the page asks again itself,
    from the cursor of the last event it had, and the feed comes once there is room."""
    from groundstation.web.limits import Limits

    stop = threading.Event()
    server = serve(ground_db, "127.0.0.1", 0, stop, limits=Limits(streams=1, local_reserve=0, operator_reserve=0))
    held = socket.create_connection(server.server_address[:2], source_address=("127.0.0.2", 0))
    try:
        held.sendall(f"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1:{server.server_address[1]}\r\n\r\n".encode())
        assert held.recv(12) == b"HTTP/1.1 200"  # the only feed
        open_page(browser, server)
        wait(browser, lambda d: texts(d, "#live") == ["live feed refused: trying again…"], "no refusal shown")
        server.feeds.end_all()  # its feed ends: room for the page's
        wait(browser, lambda d: texts(d, "#live") == ["live"], "the page never asked again")
    finally:
        held.close()
        stop.set()


@browser_only
def test_command_form_queues_and_refuses(browser, dashboard, ground_db):
    from selenium.webdriver.support.ui import Select

    open_page(browser, dashboard)
    find = lambda id_: browser.find_element("id", id_)  # noqa: E731
    note = "Remember the river — Ålvsbyn"
    choose_command(browser, "memory_note")
    find(NOTE_INPUT).send_keys(note)
    find("cmd-send").click()
    wait(browser, lambda d: find("cmd-status").text.startswith("queued #"), "the note was not queued")
    assert outbox_rows(ground_db) == [(int(CommandId.MEMORY_NOTE), note.encode(), f"memory note: {note}", None)]
    wait(browser, lambda d: texts(d, "#outbox tbody tr td:nth-child(3)") == [f"memory note: {note}"],
         "the outbox row never showed")
    assert texts(browser, "#outbox tbody tr td:last-child") == ["queued"]

    find(NOTE_INPUT).send_keys("é" * 150)  # 150 characters, 300 bytes
    assert find(NOTE_INPUT + "-bytes").text == "300"
    find("cmd-send").click()
    wait(browser, lambda d: find("cmd-status").text.startswith("not sent"), "the long note was not refused")
    assert "300" in find("cmd-status").text
    time.sleep(0.5)
    assert len(outbox_rows(ground_db)) == 1  # nothing left the page

    find(NOTE_INPUT).clear()
    choose_command(browser, "set_mode")
    Select(find("cmd-set_mode-mode")).select_by_value("survival")
    find("cmd-send").click()
    wait(browser, lambda d: len(outbox_rows(ground_db)) == 2, "set mode was not queued")
    assert outbox_rows(ground_db)[1][:2] == (int(CommandId.SET_MODE), bytes([PowerMode.SURVIVAL]))

    with Store(ground_db) as listener:  # the listener sends the note: the page shows it sent
        listener.outbox.mark_sent(1)
    wait(browser, lambda d: texts(d, "#outbox tr[data-id='1'] td:last-child")[0].startswith("sent "),
         "the sent state never showed")


@browser_only
def test_a_late_outbox_answer_does_not_undo_a_newer_event(browser, dashboard, ground_db, monkeypatch):
    """The page asks for the outbox after queueing a command; on a loaded ground PC that answer
    can arrive after the event stream has told of a newer state (the listener sent the command).
    The stale answer must not put "queued" back."""
    from groundstation.web import handler
    from groundstation.web.events import POLL_S

    answered = threading.Event()
    real_outbox_json = handler.outbox_json

    def slow_answer(rows):  # the page's own request (handler.py), not the stream (events.py)
        answer = real_outbox_json(rows)
        time.sleep(2 * POLL_S + 1)  # read before the send, answered after its event
        answered.set()
        return answer

    open_page(browser, dashboard)
    monkeypatch.setattr(handler, "outbox_json", slow_answer)
    choose_command(browser, "memory_note")
    browser.find_element("id", NOTE_INPUT).send_keys("a note sent at once")
    browser.find_element("id", "cmd-send").click()
    wait(browser, lambda d: len(outbox_rows(ground_db)) == 1, "the note was not queued")
    with Store(ground_db) as listener:
        listener.outbox.mark_sent(1)
    wait(browser, lambda d: texts(d, "#outbox tr[data-id='1'] td:last-child")[:1] != []
         and texts(d, "#outbox tr[data-id='1'] td:last-child")[0].startswith("sent "), "the sent state never showed")
    assert answered.wait(WAIT_S), "the page never asked for the outbox"
    time.sleep(1)  # the stale answer has reached the page by now
    assert texts(browser, "#outbox tr[data-id='1'] td:last-child")[0].startswith("sent ")
