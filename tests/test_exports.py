"""Ground exporters (groundstation/exports): SondeHub against a real HTTP server on loopback
that checks every object against SondeHub's published schema, GPX/KML/CSV read back with
gpxpy, ElementTree and csv, the UDP feed through a real socket."""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import socket
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import gpxpy
import pytest
from structlog.testing import capture_logs

from groundstation.exports import (
    CsvTable,
    ExportError,
    GpxTrack,
    Guarded,
    KmlTrack,
    LiveContext,
    UdpFeed,
    from_db,
    live_exporters,
    register_cli,
)
from groundstation.exports.base import telemetry_datetime
from groundstation.exports.sondehub import SondeHubPolicy, SondeHubUploader, sondehub_object
from groundstation.exports.station import Station, listener_object
from groundstation.exports.udp_feed import payload_summary
from groundstation.link.heard import Heard
from groundstation.store import GroundReader, Store
from stratoecho import geo, wire
from tests.fakes import wait_for

NAN = float("nan")
GPX_NS = "http://www.topografix.com/GPX/1/1"
KML_NS = "{http://www.opengis.net/kml/2.2}"
START = datetime(2024, 6, 20, 23, 58, 0, tzinfo=timezone.utc)  # the flight crosses midnight

# SondeHub-Amateur's published schema, from projecthorus/sondehub-infra: swagger.yaml
# (`amateur_telemetry_format`, `listener`) and the handlers behind the two PUTs
# (lambda/ham_put_api, lambda/ham_listener_put). Types as JSON Schema names them.
SONDEHUB_REQUIRED = {"software_name", "software_version", "uploader_callsign", "time_received",
                     "payload_callsign", "datetime", "lat", "lon", "alt"}  # and upload_time: set by the server
TELEMETRY_TYPES = {
    "software_name": "string", "software_version": "string", "uploader_callsign": "string",
    "time_received": "date-time", "payload_callsign": "string", "datetime": "date-time",
    "lat": "number", "lon": "number", "alt": "number", "frequency": "number", "temp": "number",
    "humidity": "number", "vel_h": "number", "vel_v": "number", "pressure": "number", "heading": "number",
    "batt": "number", "sats": "integer", "snr": "number", "rssi": "number", "uploader_position": "position",
    "uploader_antenna": "string", "historical": "boolean", "dev": "string",
    # not in the swagger, sent as strings by the reference uploader (pysondehub) and read by the tracker
    "modulation": "string", "uploader_radio": "string", "raw": "string",
}
LISTENER_REQUIRED = {"uploader_callsign", "uploader_position"}  # the handler reads both without a check
LISTENER_TYPES = {
    "software_name": "string", "software_version": "string", "uploader_callsign": "string",
    "uploader_position": "position", "uploader_radio": "string", "uploader_antenna": "string",
    "uploader_contact_email": "string", "mobile": "boolean",
}
SONDEHUB_OPTIONAL = set(TELEMETRY_TYPES) - SONDEHUB_REQUIRED


def _type_ok(kind: str, value: object) -> bool:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    if kind == "number":
        return number
    if kind == "integer":
        return number and float(value).is_integer()
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "position":  # [lat, lon, alt], three numbers (minItems = maxItems = 3)
        return isinstance(value, list) and len(value) == 3 and all(_type_ok("number", v) for v in value)
    assert kind == "date-time"  # YYYY-MM-DDTHH:MM:SS.SSSSSSZ, as the swagger describes both times
    try:
        datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ")
    except (TypeError, ValueError):
        return False
    return True


def schema_errors(obj: object, required: set[str], types: dict[str, str]) -> list[str]:
    """What is wrong with one uploaded object: missing, unknown, or of the wrong type."""
    if not isinstance(obj, dict):
        return [f"not an object: {obj!r}"]
    errors = [f"missing {name}" for name in sorted(required - set(obj))]
    for name, value in obj.items():
        if name not in types:
            errors.append(f"unknown field {name}")
        elif not _type_ok(types[name], value):
            errors.append(f"{name}: {value!r} is not a {types[name]}")
    return errors

FAST = SondeHubPolicy(batch_interval_s=60.0, batch_max_items=50, request_timeout_s=5.0, retry_attempts=3,
                      retry_initial_s=0.01, retry_max_s=0.05, retry_jitter_s=0.01, flush_timeout_s=20.0,
                      close_deadline_s=5.0)


def sentence(i: int, *, fix: bool = True, temp: float = -20.5, pressure: float = 540.0,
             callsign: str = "STRATO1") -> Heard:
    """Sentence i of a flight: every 30 s from START, heard 2 s later; climbs 150 m a sentence to
    i = 6 (the burst), then falls. NaN: no reading."""
    when = START + timedelta(seconds=30 * i)
    alt = 100 + 150 * min(i, 6) - 120 * max(0, i - 6)
    t = wire.Telemetry(callsign, i, when.strftime("%H:%M:%S"), 52.0 + 0.001 * i if fix else 0.0,
                       -1.0 + 0.002 * i if fix else 0.0, alt if fix else 0, 9 if fix else 0, temp, pressure, 3712, 1)
    return Heard(t, (when + timedelta(seconds=2)).isoformat(timespec="milliseconds"))


def changed(heard: Heard, **fields) -> Heard:
    return Heard(replace(heard.record, **fields), heard.received_at)


def flight() -> list[Heard]:
    # two sentences before the first fix (0,0 and no satellites), a sensor gap at 5
    rows = [sentence(0, fix=False), sentence(1, fix=False)]
    rows += [sentence(i, temp=NAN if i == 5 else -20.5, pressure=NAN if i == 5 else 540.0) for i in range(2, 11)]
    return rows


@pytest.fixture
def flight_db(tmp_path):
    path = tmp_path / "flight.db"
    with Store(path) as store:
        for heard in flight():
            assert store.add_telemetry(heard.record, heard.received_at)
    return path


class Recorder:
    """A real HTTP server on loopback standing in for SondeHub: records every request, checks
    each object against the schema (400 naming the faults), answers with the status
    `failing` holds for any (payload_callsign, datetime) in the request, else from a script
    (a list of statuses used up in order), else `status` (200), optionally slowly."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.script: list[int] = []
        self.failing: dict[tuple[str, str], int] = {}
        self.status = 200
        self.delay_s = 0.0
        self.schema_errors: list[str] = []
        self.lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                sent = json.loads(body)
                if self.path.endswith("/listeners"):
                    errors = schema_errors(sent, LISTENER_REQUIRED, LISTENER_TYPES)
                    keys = set()
                else:
                    objects = sent if isinstance(sent, list) else [sent]
                    errors = [e for o in objects for e in schema_errors(o, SONDEHUB_REQUIRED, TELEMETRY_TYPES)]
                    keys = {(o.get("payload_callsign"), o.get("datetime")) for o in objects if isinstance(o, dict)}
                with recorder.lock:
                    recorder.schema_errors += errors
                    failing = [recorder.failing[k] for k in keys if k in recorder.failing]
                    status = (400 if errors else failing[0] if failing
                              else recorder.script.pop(0) if recorder.script else recorder.status)
                    recorder.requests.append({"method": self.command, "path": self.path,
                                              "headers": dict(self.headers), "json": sent, "status": status,
                                              "keys": keys})
                time.sleep(recorder.delay_s)
                answer = ("; ".join(errors) if errors else "bad payload_callsign" if status == 400
                          else f"boom {status}" if status >= 500 else "OK").encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            do_PUT = do_POST = _any

            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/amateur/telemetry"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def objects(self, status: int | None = 200) -> list[dict]:
        """Telemetry objects the server answered with `status` (None: any), in arrival order."""
        return [o for r in self.telemetry_requests() if status is None or r["status"] == status for o in r["json"]]

    def telemetry_requests(self) -> list[dict]:
        return [r for r in self.requests if r["path"].endswith("/telemetry")]

    def listeners(self, status: int | None = 200) -> list[dict]:
        return [r["json"] for r in self.requests
                if r["path"].endswith("/listeners") and (status is None or r["status"] == status)]


@pytest.fixture
def server():
    rec = Recorder()
    yield rec
    rec.server.shutdown()
    rec.server.server_close()
    assert rec.schema_errors == []  # everything uploaded follows SondeHub's published schema


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- dates


def test_sentence_time_joins_the_date_nearest_reception():
    at = lambda text: datetime.fromisoformat(text)  # noqa: E731
    assert telemetry_datetime("12:00:00", at("2024-06-20T12:00:03+00:00")) == at("2024-06-20T12:00:00+00:00")
    # heard just after midnight, sent just before: the day before
    assert telemetry_datetime("23:59:58", at("2024-06-21T00:00:03+00:00")) == at("2024-06-20T23:59:58+00:00")
    # the ground clock a little slow: the sentence belongs to the next day
    assert telemetry_datetime("00:00:01", at("2024-06-20T23:59:59+00:00")) == at("2024-06-21T00:00:01+00:00")


# --------------------------------------------------------------------------- SondeHub


def test_sondehub_object_has_the_documented_fields():
    obj = sondehub_object(sentence(5), M0ABC, snr_db=7.5, rssi_dbm=-112.0, raw="$$STRATO1,5,...",
                          frequency_mhz=434.2, modulation="LoRa")
    assert set(obj) == SONDEHUB_REQUIRED | {"sats", "batt", "temp", "pressure", "frequency", "modulation",
                                            "snr", "rssi", "raw"}
    assert obj["software_name"] == "stratoecho" and obj["uploader_callsign"] == "M0ABC"
    assert obj["payload_callsign"] == "STRATO1"
    assert obj["datetime"] == "2024-06-21T00:00:30.000000Z"  # 00:00:30 after midnight, the new day
    assert obj["time_received"] == "2024-06-21T00:00:32.000000Z"
    assert (obj["lat"], obj["lon"], obj["alt"], obj["sats"]) == (52.005, -0.99, 850.0, 9)
    assert obj["batt"] == 3.712 and obj["temp"] == -20.5 and obj["pressure"] == 540.0
    assert (obj["frequency"], obj["modulation"], obj["snr"], obj["rssi"]) == (434.2, "LoRa", 7.5, -112.0)
    no_reading = sondehub_object(sentence(5, temp=NAN, pressure=NAN), M0ABC)
    assert "temp" not in no_reading and "pressure" not in no_reading and "snr" not in no_reading
    assert sondehub_object(sentence(0, fix=False), M0ABC) is None
    assert sondehub_object(changed(sentence(3), sats=0), M0ABC) is None  # a position, no fix
    flat = sondehub_object(changed(sentence(3), batt_mv=0), M0ABC)
    assert "batt" not in flat  # 0 mV: no reading, never a flat battery
    assert schema_errors(obj, SONDEHUB_REQUIRED, TELEMETRY_TYPES) == []


HOME = Station("M0ABC", position=(52.2, -0.12, 40), radio="E22-400T22D", antenna="7-element Yagi",
               contact_email="m0abc@example.org")
M0ABC = Station("M0ABC")


def test_every_position_carries_the_station_and_the_signal_it_was_heard_with():
    heard = Heard(sentence(5).record, sentence(5).received_at, station="home", rssi_dbm=-118.5, snr_db=-9.25)
    obj = sondehub_object(heard, HOME, frequency_mhz=434.2, modulation="LoRa")
    assert obj["uploader_callsign"] == "M0ABC" and obj["uploader_position"] == [52.2, -0.12, 40.0]
    assert (obj["uploader_radio"], obj["uploader_antenna"]) == ("E22-400T22D", "7-element Yagi")
    assert (obj["rssi"], obj["snr"], obj["frequency"], obj["modulation"]) == (-118.5, -9.25, 434.2, "LoRa")
    assert "uploader_contact_email" not in obj  # for SondeHub's admins, with the station upload only
    assert schema_errors(obj, SONDEHUB_REQUIRED, TELEMETRY_TYPES) == []
    unknown = sondehub_object(sentence(5), M0ABC)  # no signal, no station details: none made up
    assert not {"rssi", "snr", "frequency", "modulation", "uploader_position", "uploader_radio"} & set(unknown)
    assert heard.as_json() == sentence(5).as_json()  # `listen --json` prints what it always did


def test_the_station_upload_follows_the_listener_schema_and_bad_details_are_named():
    obj = listener_object(replace(HOME, mobile=True), "1.2.3")
    assert schema_errors(obj, LISTENER_REQUIRED, LISTENER_TYPES) == []
    assert obj == {"software_name": "stratoecho", "software_version": "1.2.3", "uploader_callsign": "M0ABC",
                   "uploader_position": [52.2, -0.12, 40.0], "uploader_radio": "E22-400T22D",
                   "uploader_antenna": "7-element Yagi", "uploader_contact_email": "m0abc@example.org",
                   "mobile": True}
    with pytest.raises(ValueError, match="no position"):
        listener_object(M0ABC)
    for bad, match in [((91, 0, 0), "latitude"), ((0, 0, 10), "placeholder"), ((52, 1), "altitude"),
                       ((52, float("nan"), 1), "finite")]:
        with pytest.raises(ValueError, match=match):
            Station("M0ABC", position=bad)
    with pytest.raises(ValueError, match="@"):
        Station("M0ABC", contact_email="m0abc")


def test_sondehub_uploads_documented_objects_once_each(server):
    up = SondeHubUploader("M0ABC", server.url, policy=FAST)
    try:
        rows = flight()
        for t in rows[:6]:
            up.add(t)
        up.flush()
        for t in rows:  # the first six again (a ground restart replays them), then the rest
            up.add(t)
        up.flush()
    finally:
        up.close()
    assert len(server.requests) == 2
    for r in server.requests:
        assert r["method"] == "PUT" and r["path"] == "/amateur/telemetry"
        assert r["headers"]["Content-Type"] == "application/json"
        assert r["headers"]["Content-Encoding"] == "gzip"
        assert r["headers"]["User-Agent"].startswith("stratoecho-")
    objects = server.objects()
    assert len(objects) == 9  # 11 sentences, 2 without a fix
    assert len({(o["payload_callsign"], o["datetime"]) for o in objects}) == 9  # nothing sent twice
    for o in objects:
        assert SONDEHUB_REQUIRED <= set(o) <= SONDEHUB_REQUIRED | SONDEHUB_OPTIONAL
        assert o["lat"] != 0 and o["lon"] != 0 and o["sats"] > 0
        for name in ("datetime", "time_received"):
            assert datetime.strptime(o[name], "%Y-%m-%dT%H:%M:%S.%fZ")
    assert up.stats["skipped_no_fix"] == 4 and up.stats["skipped_duplicate"] == 4
    assert up.stats["sent"] == 9 and up.stats["unsent_at_close"] == 0


def test_sondehub_retries_a_server_error_then_succeeds(server):
    server.script = [500, 503]
    up = SondeHubUploader("M0ABC", server.url, policy=FAST, gzip=False, method="POST")
    try:
        up.add(sentence(3))
        up.flush()
    finally:
        up.close()
    assert [r["status"] for r in server.requests] == [500, 503, 200]
    assert all(r["json"] == server.requests[0]["json"] for r in server.requests)  # the same batch again
    assert all(r["method"] == "POST" and "Content-Encoding" not in r["headers"] for r in server.requests)
    assert up.stats["retries"] == 2 and up.stats["sent"] == 1


def test_sondehub_never_retries_a_client_error(server):
    import logging

    import structlog

    # An earlier command under test may have left a level filter above warnings (conftest restores it after).
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    server.script = [400]
    up = SondeHubUploader("M0ABC", server.url, policy=FAST)
    try:
        with capture_logs() as logs:
            up.add(sentence(3))
            up.flush()
        up.add(sentence(4))  # the next batch still goes
        up.flush()
    finally:
        up.close()
    assert [r["status"] for r in server.requests] == [400, 200]
    assert [o["lat"] for o in server.objects()] == [52.004]
    rejected = [e for e in logs if e["event"] == "sondehub_rejected"]
    assert rejected and rejected[0]["status"] == 400 and rejected[0]["body"] == "bad payload_callsign"
    assert up.stats["rejected_items"] == 1 and up.stats["retries"] == 0


def test_sondehub_keeps_a_batch_when_the_server_is_unreachable():
    url = f"http://127.0.0.1:{free_port()}/amateur/telemetry"  # nothing listens: connection refused
    up = SondeHubUploader("M0ABC", url, policy=FAST)
    up.add(sentence(3))
    up.add(sentence(4))
    up.flush()
    assert up.stats["retries"] == FAST.retry_attempts - 1
    assert up.pending == 2  # back in the queue for the next round, not dropped
    started = time.monotonic()
    up.close(deadline_s=0.5)
    assert time.monotonic() - started < 4.0
    assert up.stats["unsent_at_close"] == 2 and up.stats["sent"] == 0


def key(heard: Heard) -> tuple[str, str]:
    """The (payload_callsign, datetime) SondeHub knows a position by."""
    obj = sondehub_object(heard, M0ABC)
    return obj["payload_callsign"], obj["datetime"]


def test_sondehub_one_position_the_server_always_fails_never_blocks_the_rest(server):
    # The field's case: one position answered 5xx every time held up all 29 after it.
    rows = [sentence(i) for i in range(2, 32)]  # 30 positions with a fix
    bad = rows[3]
    server.failing = {key(bad): 500}
    policy = replace(FAST, batch_max_items=8)
    up = SondeHubUploader("M0ABC", server.url, policy=policy)
    try:
        with capture_logs() as logs:
            for heard in rows:
                up.add(heard)
            up.flush()
    finally:
        up.close()
    good = [key(h) for h in rows if h is not bad]
    assert [(o["payload_callsign"], o["datetime"]) for o in server.objects()] == good  # all 29, in order, once
    assert up.stats["sent"] == 29 and up.stats["failed_items"] == 1 and up.pending == 0
    # Bounded: its batch of 8, the half, the quarter, itself alone: 4 requests, each with its retries.
    assert len([r for r in server.telemetry_requests() if key(bad) in r["keys"]]) == 4 * policy.retry_attempts
    dropped = [e for e in logs if e["event"] == "sondehub_position_dropped"]
    assert len(dropped) == 1 and (dropped[0]["status"], dropped[0]["body"]) == (500, "boom 500")
    assert dropped[0]["datetime"] == key(bad)[1]


def test_sondehub_a_failing_position_sent_alone_waits_until_the_server_takes_another(server):
    bad, after = sentence(3), sentence(4)
    server.failing = {key(bad): 503}
    up = SondeHubUploader("M0ABC", server.url, policy=FAST)
    try:
        up.add(bad)
        up.flush()  # alone, nothing else taken: the server's fault or the position's? kept, with a strike
        assert up.pending == 1 and up.stats["failed_items"] == 0
        up.add(after)
        up.flush()  # the server takes the next one: the fault was the position's
    finally:
        up.close()
    assert [o["lat"] for o in server.objects()] == [52.004]
    assert up.stats["failed_items"] == 1 and up.pending == 0 and up.stats["unsent_at_close"] == 0


def test_sondehub_a_server_failing_everything_costs_bounded_requests_then_recovers(server):
    server.status = 503
    policy = replace(FAST, failing_rounds=2)
    rows = [sentence(i) for i in range(2, 7)]  # five positions
    up = SondeHubUploader("M0ABC", server.url, policy=policy)
    try:
        for heard in rows:
            up.add(heard)
        up.flush()
        # All five, the first half, its first two alone: two in a row failing, nothing taken:
        # the server, not the data. Four requests, each with its retries; nothing dropped yet.
        assert len(server.requests) == 4 * policy.retry_attempts
        assert up.stats["sent"] == 0 and up.stats["failed_items"] == 0 and up.pending == 5
        up.flush()  # the same again: those two reach their last strike
        assert up.stats["failed_items"] == 2 and up.pending == 3
        server.status = 200
        up.flush()
    finally:
        up.close()
    assert [(o["payload_callsign"], o["datetime"]) for o in server.objects()] == [key(h) for h in rows[2:]]


def test_sondehub_uploads_the_station_at_start_and_again_later(server):
    server.script = [500] * FAST.retry_attempts  # the first station upload fails every try
    policy = replace(FAST, listener_interval_s=0.2, listener_retry_s=0.05)
    up = SondeHubUploader(HOME, server.url, policy=policy)
    try:
        wait_for(lambda: len(server.listeners()) >= 2)  # retried soon after the failure, then again later
        up.add(sentence(3))
        up.flush()
    finally:
        up.close()
    assert server.listeners()[0] == listener_object(HOME)
    assert up.stats["listener_failures"] == 1 and up.stats["listener_uploads"] >= 2
    assert {(r["method"], r["path"]) for r in server.requests if "listeners" in r["path"]} == {
        ("PUT", "/amateur/listeners")}
    [obj] = server.objects()
    assert obj["uploader_position"] == [52.2, -0.12, 40.0] and obj["uploader_callsign"] == "M0ABC"


def test_sondehub_sends_no_station_upload_without_a_position_or_in_a_trial(server):
    for up in (SondeHubUploader(M0ABC, server.url, policy=FAST),
               SondeHubUploader(HOME, server.url, policy=FAST, dev=True)):
        up.add(sentence(3))
        up.flush()
        up.close()
    assert server.listeners(None) == [] and len(server.objects()) == 2


def test_listen_uploads_the_station_and_each_position_with_its_signal(tmp_path, server, capsys):
    from groundstation.__main__ import main

    now = datetime.now(timezone.utc)
    frames = [wire.encode_sentence(wire.Telemetry("STRATO1", s, (now - timedelta(seconds=30 * (2 - s))).strftime(
        "%H:%M:%S"), 52.25, -0.5, 1200, 9, -40.5, 180.2, 3700, 3)) for s in (1, 2)]
    air = tmp_path / "air.hex"
    air.write_text(f"{frames[0].hex()} rssi=-118.5 snr=-9.25\n{frames[1].hex()}\n")
    station = ["--sondehub-position", "52.2", "-0.12", "40", "--sondehub-radio", "E22-400T22D"]
    argv = ["listen", "--replay", str(air), "--db", str(tmp_path / "g.db"), "--quiet"]
    assert main([*argv, *station]) == 2  # details without the callsign
    assert "--sondehub-position, --sondehub-radio goes with --sondehub-uploader" in capsys.readouterr().err
    assert main([*argv, *station, "--sondehub-uploader", "M0ABC", "--sondehub-url", server.url,
                 "--sondehub-frequency", "434.2"]) == 0
    assert server.listeners() == [listener_object(Station("M0ABC", (52.2, -0.12, 40), radio="E22-400T22D"))]
    first, second = server.objects()
    assert (first["rssi"], first["snr"]) == (-118.5, -9.25)  # the frame's own signal
    assert "rssi" not in second and "snr" not in second  # that frame came without a report
    for o in (first, second):
        assert (o["frequency"], o["modulation"], o["uploader_position"]) == (434.2, "LoRa", [52.2, -0.12, 40.0])


def test_sondehub_a_slow_server_never_stalls_add_and_close_keeps_its_deadline(server):
    server.delay_s = 3.0
    up = SondeHubUploader("M0ABC", server.url, policy=SondeHubPolicy(
        batch_interval_s=60.0, batch_max_items=2, retry_attempts=1, close_deadline_s=1.0))
    up.add(sentence(2))
    up.add(sentence(3))  # a full batch: the thread sends it now
    deadline = time.monotonic() + 2.0
    while not server.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.requests, "a full batch is sent without a flush"
    started = time.monotonic()
    for i in range(4, 11):
        up.add(sentence(i))
    assert time.monotonic() - started < 0.5  # the request in flight does not hold up decoding
    started = time.monotonic()
    up.close()
    assert time.monotonic() - started < 1.0 + 2.5


def test_sondehub_rejects_a_bad_configuration():
    with pytest.raises(ValueError, match="callsign"):
        SondeHubUploader(" ", "https://example.org/x")
    with pytest.raises(ValueError, match="not an http"):
        SondeHubUploader("M0ABC", "ftp://example.org/x")
    with pytest.raises(ValueError, match="method"):
        SondeHubUploader("M0ABC", "https://example.org/x", method="DELETE")


# --------------------------------------------------------------------------- track files


def test_gpx_track_reads_back_and_is_structurally_valid(flight_db, tmp_path):
    out = tmp_path / "flight.gpx"
    with GroundReader.open(flight_db) as ground:
        assert from_db(ground, GpxTrack(out)) == 11
    gpx = gpxpy.parse(out.read_text(encoding="utf-8"))
    assert [t.name for t in gpx.tracks] == ["STRATO1"]
    points = gpx.tracks[0].segments[0].points
    assert len(points) == 9
    assert all(p.latitude != 0 and p.longitude != 0 for p in points)
    assert [round(p.latitude, 3) for p in points] == [52.0 + 0.001 * i for i in range(2, 11)]
    assert points[0].elevation == 400.0 and max(p.elevation for p in points) == 1000.0
    times = [p.time for p in points]
    assert times == sorted(times) and times[0] == START + timedelta(seconds=60)
    assert times[-1] == datetime(2024, 6, 21, 0, 3, 0, tzinfo=timezone.utc)  # after midnight: the next day
    root = ET.parse(out).getroot()
    assert root.tag == f"{{{GPX_NS}}}gpx" and root.get("version") == "1.1" and root.get("creator")
    trkpts = root.findall(f"{{{GPX_NS}}}trk/{{{GPX_NS}}}trkseg/{{{GPX_NS}}}trkpt")
    assert len(trkpts) == 9
    for pt in trkpts:
        assert -90 <= float(pt.get("lat")) <= 90 and -180 <= float(pt.get("lon")) <= 180
        assert [c.tag.split("}")[1] for c in pt] == ["ele", "time", "sat"]  # the schema's order
        datetime.strptime(pt.find(f"{{{GPX_NS}}}time").text, "%Y-%m-%dT%H:%M:%SZ")
    assert all(el.tag.startswith(f"{{{GPX_NS}}}") for el in root.iter())  # nothing outside the GPX namespace


def test_kml_track_has_line_and_launch_burst_last(flight_db, tmp_path):
    out = tmp_path / "flight.kml"
    with GroundReader.open(flight_db) as ground:
        from_db(ground, KmlTrack(out))
    root = ET.parse(out).getroot()
    assert root.tag == f"{KML_NS}kml"
    line = root.find(f".//{KML_NS}LineString")
    assert line.find(f"{KML_NS}altitudeMode").text == "absolute"
    coords = [tuple(map(float, c.split(","))) for c in line.find(f"{KML_NS}coordinates").text.split()]
    assert len(coords) == 9 and all(lon != 0 and lat != 0 for lon, lat, _ in coords)
    marks = {m.find(f"{KML_NS}name").text: m for m in root.iter(f"{KML_NS}Placemark")}
    assert set(marks) == {"STRATO1 track", "STRATO1 launch", "STRATO1 burst", "STRATO1 last"}

    def where(name: str) -> tuple[float, ...]:
        point = marks[name].find(f"{KML_NS}Point")
        assert point.find(f"{KML_NS}altitudeMode").text == "absolute"
        return tuple(map(float, point.find(f"{KML_NS}coordinates").text.split(",")))

    assert where("STRATO1 launch") == coords[0] == (-0.996, 52.002, 400.0)
    assert where("STRATO1 burst") == (-0.988, 52.006, 1000.0)  # the highest point, sentence 6
    assert where("STRATO1 last") == coords[-1] == (-0.98, 52.01, 520.0)
    assert marks["STRATO1 burst"].find(f"{KML_NS}TimeStamp/{KML_NS}when").text == "2024-06-21T00:01:00Z"


def test_track_orders_late_sentences_by_time_and_rewrites_atomically(tmp_path):
    out = tmp_path / "live.gpx"
    track = GpxTrack(out)
    for i in (2, 4, 3, 4):  # 3 recovered late by a repair; 4 heard twice
        track.add(sentence(i))
    track.flush()
    first = out.read_bytes()
    assert [round(p.latitude, 3) for p in gpxpy.parse(first.decode()).tracks[0].segments[0].points] == [
        52.002, 52.003, 52.004]
    track.add(sentence(5))
    track.close()
    assert len(gpxpy.parse(out.read_text()).tracks[0].segments[0].points) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["live.gpx"]  # no temporary left behind


def test_a_file_that_cannot_be_written_is_named(tmp_path):
    out = tmp_path / "missing" / "flight.kml"
    track = KmlTrack(out)
    track.add(sentence(3))
    with pytest.raises(ExportError, match=str(out)):
        track.close()


def test_csv_has_one_row_per_sentence_with_empty_cells_for_no_reading(flight_db, tmp_path):
    out = tmp_path / "flight.csv"
    with GroundReader.open(flight_db) as ground:
        from_db(ground, CsvTable(out))
    with open(out, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["boot", "seq", "callsign", "datetime_utc", "lat", "lon", "alt", "sats", "temp_c",
                             "pressure_hpa", "batt_mv", "received_at"]
    assert [int(r["seq"]) for r in rows] == list(range(11))  # fix or not: every sentence
    assert rows[0]["lat"] == "0.0" and rows[0]["sats"] == "0"
    assert rows[5]["temp_c"] == "" and rows[5]["pressure_hpa"] == ""
    assert rows[4]["temp_c"] == "-20.5" and rows[4]["pressure_hpa"] == "540.0"
    assert rows[3]["datetime_utc"] == "2024-06-20T23:59:30Z" and rows[4]["datetime_utc"] == "2024-06-21T00:00:00Z"
    assert rows[4]["received_at"] == "2024-06-21T00:00:02.000+00:00" and rows[4]["batt_mv"] == "3712"


# --------------------------------------------------------------------------- UDP feed


def test_udp_feed_sends_payload_summaries_of_new_fixes():
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(2.0)
    feed = UdpFeed("127.0.0.1", rx.getsockname()[1])
    try:
        for heard in (sentence(0, fix=False), sentence(2), sentence(3, temp=NAN), sentence(2), sentence(4)):
            feed.add(heard)
        got = [json.loads(rx.recv(4096)) for _ in range(3)]
        rx.settimeout(0.2)
        with pytest.raises(TimeoutError):
            rx.recv(4096)  # no-fix and stale sentences sent nothing
    finally:
        feed.close()
        rx.close()
    first, second, third = got
    assert first == {"type": "PAYLOAD_SUMMARY", "callsign": "STRATO1", "latitude": 52.002, "longitude": -0.996,
                     "altitude": 400.0, "speed": -1, "heading": -1, "time": "23:59:00", "comment": "stratoecho",
                     "model": "stratoecho", "temp": -20.5, "sats": 9, "batt_voltage": 3.712}
    # 0.001° north and 0.002° east in 30 s at 52° N: ~176 m, so ~21 km/h towards ~51°
    assert second["speed"] == pytest.approx(21.1, abs=0.3) and second["heading"] == pytest.approx(50.8, abs=1)
    assert second["temp"] == -1 and second["time"] == "23:59:30"
    assert "snr" not in third and "frequency" not in third  # only when given them
    with_signal = payload_summary(sentence(4).record, snr_db=6.0, frequency_mhz=434.2)
    assert (with_signal["snr"], with_signal["frequency"]) == (6.0, 434.2)
    assert feed.stats["skipped_no_fix"] == 1 and feed.stats["skipped_stale"] == 1 and feed.stats["sent"] == 3


def test_udp_feed_sends_the_predicted_landing_as_a_payload_on_the_ground():
    """A bench flight heard every 10 s from launch to 5 km on the way down: every 30 s of flight
    the feed also sends CALL-LANDING, a PAYLOAD_SUMMARY chasemapper reads as it reads any (its
    latitude, longitude, altitude, callsign, HH:MM:SS time), near the flight's real landing at
    the end; our own Horus UDP listener does not take it for a position. (Every 5 minutes here,
    not the default 30 s: each prediction takes a fifth of a second while the balloon climbs.)"""
    from groundstation import predict
    from groundstation.sources.horus_udp import HorusUdpSource
    from sim.world.flight import Flight, FlightPlan

    flight = Flight(FlightPlan(seed=11, descent_rate_sea_level_m_s=6.5, ascent_rate_m_s=4.5))
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    feed = UdpFeed("127.0.0.1", rx.getsockname()[1],
                   landing=predict.FeedLanding(predict.Chase(burst_alt_m=flight.burst_alt_m), every_s=300))
    t, sent, packets = 0.0, 0, []
    try:
        while not (t > flight.ascent_s and flight.altitude_m(t) < 5_000):
            s = flight.state_at(t)
            when = START + timedelta(seconds=t)
            feed.add(Heard(wire.Telemetry("STRATO1", sent, when.strftime("%H:%M:%S"), s.lat, s.lon, round(s.alt_m), 9,
                                          -20.0, 500.0, 3900, 1), (when + timedelta(seconds=1)).isoformat()))
            sent, t = sent + 1, t + 10.0
            rx.settimeout(0)
            try:
                while True:
                    packets.append(json.loads(rx.recv(4096)))
            except BlockingIOError:
                pass
    finally:
        feed.close()
        rx.close()
    positions = [p for p in packets if p["callsign"] == "STRATO1"]
    landings = [p for p in packets if p["callsign"] == "STRATO1-LANDING"]
    assert len(positions) == sent and feed.stats["sent"] == sent
    assert len(landings) == feed.stats["sent_landing"] and sent / 30 - 3 <= len(landings) <= sent / 30 + 1
    for p in landings:  # what chasemapper's summary handler reads, of the types it converts
        assert p["type"] == "PAYLOAD_SUMMARY" and p["model"] == "stratoecho"
        float(p["latitude"]), float(p["longitude"]), float(p["altitude"])
        datetime.strptime(p["time"], "%H:%M:%S")
        assert p["comment"].startswith("predicted landing of STRATO1: within ") and p["comment"].endswith("Z")
    last = landings[-1]
    real = flight.position(flight.duration_s)
    radius_km = float(last["comment"].split("within ")[1].split(" km")[0])
    assert geo.distance_m(last["latitude"], last["longitude"], *real[:2]) < max(2.0 * radius_km * 1000, 3_000)
    assert last["altitude"] == pytest.approx(flight.plan.launch_alt_m, abs=1)
    # a station whose --horus-udp hears its own feed takes neither for a position
    source = HorusUdpSource("127.0.0.1", 0)
    try:
        assert source._read(json.dumps(last).encode(), "udp") is None
        assert source.ignored["our own feed"] == 1
    finally:
        source.close()


def test_payload_summary_speed_is_unknown_without_elapsed_time():
    when = START
    packet = payload_summary(sentence(2).record, (when, 52.0, -1.0), when=when)
    assert packet["speed"] == -1 and packet["heading"] == -1


# --------------------------------------------------------------------------- wiring


class Exploding:
    def add(self, heard: Heard) -> None:
        raise RuntimeError("disk on fire")

    def flush(self) -> None:
        raise RuntimeError("disk on fire")

    def close(self) -> None:
        pass


def test_guarded_exporter_fails_alone(tmp_path):
    out = tmp_path / "t.csv"
    exporters = [Guarded(Exploding(), "boom"), Guarded(CsvTable(out))]
    with capture_logs() as logs:
        for e in exporters:
            e.add(sentence(3))
            e.close()
    assert exporters[0].failures == 1 and exporters[1].failures == 0
    assert any(e["event"] == "exporter_failed" and e["exporter"] == "boom" for e in logs)
    assert len(out.read_text().splitlines()) == 2


def test_live_exporters(server):
    from groundstation.config import ExportsSection

    def made(tables: dict, station=None) -> list:
        return live_exporters(ExportsSection.model_validate(tables), LiveContext(station))

    assert made({}) == []
    with pytest.raises(ValueError, match="callsign"):
        made({"ssdv": {"upload": True}})
    pairs = made({"sondehub": {"url": server.url}, "udp_feed": {"address": f"127.0.0.1:{free_port()}"}},
                 Station("M0ABC"))
    assert [(entry.name, entry.takes, e.name) for entry, e in pairs] == [("sondehub", "positions", "sondehub"),
                                                                       ("udp_feed", "positions", "udp_feed")]
    for _, e in pairs:
        e.add(sentence(3))
    for _, e in pairs:
        e.close()
    assert [o["uploader_callsign"] for o in server.objects()] == ["M0ABC"]


def test_a_live_exporter_is_registered_as_a_format_is(tmp_path):
    """One made outside the package: `listen` makes it from [exports] when asked and feeds it positions."""
    from groundstation.config import ExportsSection
    from groundstation.exports import LIVE, LiveExport, register_live

    fed = []

    class Counting:
        def add(self, heard):
            fed.append(heard.record.seq)

        def flush(self):
            pass

        def close(self):
            pass

    register_live(LiveExport("counting", lambda section, ctx: Counting()))
    try:
        with pytest.raises(ValueError, match="registered already"):
            register_live(LiveExport("counting", lambda section, ctx: None))
        with pytest.raises(ValueError, match="lower-case word"):
            register_live(LiveExport("Not A Table", lambda section, ctx: None))
        (entry, e), = live_exporters(ExportsSection(), LiveContext())  # the shipped ones: none asked for
        assert entry.name == "counting"
        e.add(sentence(3))
        assert fed == [sentence(3).record.seq]
    finally:
        del LIVE["counting"]



def export(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m groundstation")
    register_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["export", *argv])
    return args.func(args)


def test_cli_export_files_and_errors(flight_db, tmp_path, capsys):
    out = tmp_path / "f.gpx"
    assert export(["--db", str(flight_db), "--format", "gpx", "--out", str(out)]) == 0
    assert "wrote 9 positions" in capsys.readouterr().out
    assert len(gpxpy.parse(out.read_text()).tracks[0].segments[0].points) == 9
    missing = tmp_path / "nope.db"
    assert export(["--db", str(missing), "--format", "csv", "--out", str(tmp_path / "x.csv")]) == 1
    assert str(missing) in capsys.readouterr().err and not missing.exists()
    bad_out = tmp_path / "no" / "dir.kml"
    assert export(["--db", str(flight_db), "--format", "kml", "--out", str(bad_out)]) == 2
    assert str(bad_out) in capsys.readouterr().err
    assert export(["--db", str(flight_db), "--format", "csv"]) == 2
    assert "--out" in capsys.readouterr().err
    assert export(["--db", str(flight_db), "--format", "sondehub"]) == 2
    assert "--uploader" in capsys.readouterr().err


def test_cli_export_to_sondehub_marks_history(flight_db, server, capsys):
    assert export(["--db", str(flight_db), "--format", "sondehub", "--out", server.url, "--uploader", "M0ABC"]) == 0
    objects = server.objects()
    assert len(objects) == 9 and all(o["historical"] is True for o in objects)
    assert "9 positions sent" in capsys.readouterr().out
    server.failing = {key(flight()[4]): 400}  # SondeHub refuses one position: the rest still go, exit 1
    assert export(["--db", str(flight_db), "--format", "sondehub", "--out", server.url, "--uploader", "M0ABC"]) == 1
    assert len(server.objects()) == 9 + 8
    assert "8 positions sent, 2 without a fix skipped, 1 refused" in capsys.readouterr().out


def test_udp_feed_landing_needs_the_feed(tmp_path, capsys):
    from groundstation.__main__ import main

    hexfile = tmp_path / "air.hex"
    hexfile.write_text("")
    assert main(["listen", "--replay", str(hexfile), "--db", str(tmp_path / "g.db"), "--udp-feed-landing"]) == 2
    assert "--udp-feed-landing goes with --udp-feed" in capsys.readouterr().err
