"""Ground exporters (groundstation/exports): SondeHub against a real HTTP server on loopback,
GPX/KML/CSV read back with gpxpy, ElementTree and csv, the UDP feed through a real socket."""

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

from groundstation.db import Store
from groundstation.exports import (
    CsvTable,
    ExportError,
    GpxTrack,
    Guarded,
    KmlTrack,
    UdpFeed,
    from_db,
    live_exporters,
    register_cli,
)
from groundstation.exports.base import telemetry_datetime
from groundstation.exports.sondehub import SondeHubPolicy, SondeHubUploader, sondehub_object
from groundstation.exports.udp_feed import payload_summary
from groundstation.heard import Heard
from stratoecho import wire

NAN = float("nan")
GPX_NS = "http://www.topografix.com/GPX/1/1"
KML_NS = "{http://www.opengis.net/kml/2.2}"
START = datetime(2024, 6, 20, 23, 58, 0, tzinfo=timezone.utc)  # the flight crosses midnight
# Documented in SondeHub's amateur_telemetry_format (sondehub-infra swagger).
SONDEHUB_REQUIRED = {"software_name", "software_version", "uploader_callsign", "time_received",
                     "payload_callsign", "datetime", "lat", "lon", "alt"}
SONDEHUB_OPTIONAL = {"sats", "batt", "temp", "pressure", "frequency", "modulation", "snr", "rssi", "raw",
                     "historical", "dev"}
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
    """A real HTTP server on loopback: records every request, answers from a script
    (a list of statuses used up in order, then 200), optionally slowly."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.script: list[int] = []
        self.delay_s = 0.0
        self.lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                with recorder.lock:
                    status = recorder.script.pop(0) if recorder.script else 200
                    recorder.requests.append({"method": self.command, "path": self.path,
                                              "headers": dict(self.headers), "json": json.loads(body),
                                              "status": status})
                time.sleep(recorder.delay_s)
                answer = b"bad payload_callsign" if status == 400 else b"OK"
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
        return [o for r in self.requests if status is None or r["status"] == status for o in r["json"]]


@pytest.fixture
def server():
    rec = Recorder()
    yield rec
    rec.server.shutdown()
    rec.server.server_close()


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
    obj = sondehub_object(sentence(5), snr_db=7.5, rssi_dbm=-112.0, raw="$$STRATO1,5,...",
                          uploader_callsign="M0ABC", frequency_mhz=434.2, modulation="LoRa")
    assert set(obj) == SONDEHUB_REQUIRED | {"sats", "batt", "temp", "pressure", "frequency", "modulation",
                                            "snr", "rssi", "raw"}
    assert obj["software_name"] == "stratoecho" and obj["uploader_callsign"] == "M0ABC"
    assert obj["payload_callsign"] == "STRATO1"
    assert obj["datetime"] == "2024-06-21T00:00:30.000000Z"  # 00:00:30 after midnight, the new day
    assert obj["time_received"] == "2024-06-21T00:00:32.000000Z"
    assert (obj["lat"], obj["lon"], obj["alt"], obj["sats"]) == (52.005, -0.99, 850.0, 9)
    assert obj["batt"] == 3.712 and obj["temp"] == -20.5 and obj["pressure"] == 540.0
    assert (obj["frequency"], obj["modulation"], obj["snr"], obj["rssi"]) == (434.2, "LoRa", 7.5, -112.0)
    no_reading = sondehub_object(sentence(5, temp=NAN, pressure=NAN), uploader_callsign="M0ABC")
    assert "temp" not in no_reading and "pressure" not in no_reading and "snr" not in no_reading
    assert sondehub_object(sentence(0, fix=False), uploader_callsign="M0ABC") is None
    assert sondehub_object(changed(sentence(3), sats=0), uploader_callsign="M0ABC") is None  # a position, no fix
    flat = sondehub_object(changed(sentence(3), batt_mv=0), uploader_callsign="M0ABC")
    assert "batt" not in flat  # 0 mV: no reading, never a flat battery


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
    with Store(flight_db) as store:
        assert from_db(store, GpxTrack(out)) == 11
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
    with Store(flight_db) as store:
        from_db(store, KmlTrack(out))
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
    with Store(flight_db) as store:
        from_db(store, CsvTable(out))
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
    assert live_exporters(None, None, None) == []
    with pytest.raises(ValueError, match="callsign"):
        live_exporters(server.url, None, None)
    exporters = live_exporters(server.url, "M0ABC", ("127.0.0.1", free_port()))
    assert [e.name for e in exporters] == ["sondehub", "udp_feed"]
    for e in exporters:
        e.add(sentence(3))
    for e in exporters:
        e.close()
    assert [o["uploader_callsign"] for o in server.objects()] == ["M0ABC"]


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
    server.script = [400]
    assert export(["--db", str(flight_db), "--format", "sondehub", "--out", server.url, "--uploader", "M0ABC"]) == 1
