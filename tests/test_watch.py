"""The terminal view: the view model from a real ground database, its rendering, the watcher."""

from __future__ import annotations

import argparse
import io
import threading
from datetime import datetime, timedelta, timezone

import pytest

from groundstation.store import GroundReader, Store, TelemetryRow
from groundstation.watch import (
    FlightView,
    Missing,
    Watcher,
    ascent_rate,
    cmd_watch,
    register_cli,
    render,
    watch,
)
from stratoecho import wire
from stratoecho.wire.events import event

NOW = datetime(2025, 6, 1, 12, 1, 0, tzinfo=timezone.utc)


def iso(dt: datetime) -> str:
    return dt.isoformat(timespec="milliseconds")


def telemetry(seq, t, alt, boot=1, **kw):
    return {"boot": boot, "seq": seq, "callsign": "STRATO1", "time": t, "lat": 51.5 + seq / 1000,
            "lon": -0.12, "alt": alt, "sats": 9, "temp_c": -12.5, "pressure_hpa": 640.0, "batt_mv": 7600, **kw}


def record(kind, seq, content, boot=1):
    return wire.Record(kind, boot, seq, 1_748_779_200 + seq, content)


HEALTH = {"mode": "NOMINAL", "phase": "ascent", "batt_mv": 7400, "cpu_temp_c": 41.5, "box_temp_c": 18.0,
          "musing_seq": 6, "image_seq": 2, "event_seq": 1, "queue_depth": 4}


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "flight.db") as s:
        yield s


@pytest.fixture
def ground(store):
    """Opens a reader on what the store committed so far, as `watch` does each time round."""
    readers = []

    def open_reader() -> GroundReader:
        store.commit()
        readers.append(GroundReader.open(store.path))
        return readers[-1]

    yield open_reader
    for r in readers:
        r.close()


def fill(store: Store, health=HEALTH):
    for seq, t, alt in [(1, "12:00:00", 1000), (2, "12:00:10", 1050), (3, "12:00:20", 1100),
                        (4, "12:00:30", 1150), (5, "12:00:40", 1200), (8, "12:00:50", 1250)]:
        store.add_telemetry(wire.Telemetry(**telemetry(seq, t, alt)))
    for seq in (1, 2, 4):
        store.add_record(record(wire.Kind.MUSING, seq, f"musing number {seq}"))
    store.add_record(record(wire.Kind.EVENT, 1, event("phase", before="pre-launch", after="ascent", alt_m=120)))
    store.add_record(record(wire.Kind.HEALTH, 3, health))
    for i, ok in enumerate([True, True, False]):
        store.frames.add(b"\xec\x01", "udp", None if ok else "bad crc", iso(NOW - timedelta(seconds=30 - i)),
                        station="hill", rssi_dbm=-110.0 - i, snr_db=5.0 - i)
    store.frames.add(b"\xec\x01", "udp", None, iso(NOW - timedelta(seconds=5)), station="valley")
    store.frames.add(b"\xec\x01", "udp", None, iso(NOW - timedelta(minutes=20)), station="old")  # out of the window
    store.commit()


def test_empty_database(store, ground):
    view = FlightView.from_ground(ground(), now=NOW)
    assert view.position is None and view.ascent_mps is None and view.missing == () and view.musings == ()
    text = render(view, 80)
    assert "no telemetry yet" in text and "last frame never" in text and "Missing   nothing" in text


def test_view_model_of_a_flight(store, ground):
    fill(store)
    view = FlightView.from_ground(ground(), now=NOW, window_s=300, musings=2)
    assert (view.position.boot, view.position.seq, view.position.alt) == (1, 8, 1250)
    assert view.ascent_mps == pytest.approx(5.0)  # 250 m over the last 50 s
    assert view.health["phase"] == "ascent" and view.health_boot_seq == (1, 3)
    assert [(s.station, s.frames, s.bad, s.rssi_dbm, s.snr_db) for s in view.link] == [
        ("hill", 3, 1, -112.0, 3.0), ("valley", 1, 0, None, None)]
    assert (view.frames_total, view.frames_bad) == (5, 1)
    assert view.last_frame_at == NOW - timedelta(seconds=5)
    assert view.sentences_missed == 2  # 6 and 7
    assert view.missing == (
        Missing("image", 1, (), announced=2, none_held=True),
        Missing("musing", 1, ((3, 3), (5, 6)), announced=6),  # a gap, and two announced after the last held
    )
    assert [m.seq for m in view.musings] == [2, 4]  # the latest two, newest last


def test_render_shows_what_matters(store, ground):
    fill(store)
    text = render(FlightView.from_ground(ground(), now=NOW), 100)
    for expected in ["STRATO1  boot 1 #8  12:00:50 UTC", "last frame 5 s ago", "alt 1,250 m", "ascent +5.0 m/s",
                     "battery 7,400 mV", "outside -12.5 °C", "box 18.0 °C", "cpu 41.5 °C",
                     "mode NOMINAL   phase ascent", "queue 4", "hill: 3 frames, 1 bad in 5 min   -112.0 dBm  SNR 3.0 dB",
                     "valley: 1 frames, 0 bad in 5 min", "telemetry: 2 sentences not heard",
                     "musing boot 1: 3 missing #3, #5-6", "image boot 1: none heard yet, payload at #2",
                     "#4 musing number 4"]:
        assert expected in text, expected
    assert "old" not in text


def test_render_shows_a_makers_sensors_when_the_health_record_has_them(store, ground):
    fill(store, dict(HEALTH, readings="co2_ppm=412.5,dust_ugm3=7.25"))
    text = render(FlightView.from_ground(ground(), now=NOW), 100)
    assert "Sensors   co2_ppm 412.5   dust_ugm3 7.25" in text
    store.add_record(record(wire.Kind.HEALTH, 4, HEALTH))  # a later record without: no line of old values
    store.commit()
    assert "Sensors" not in render(FlightView.from_ground(ground(), now=NOW), 100)


@pytest.mark.parametrize("width", [20, 40, 80])
def test_render_fits_the_width(store, width, ground):
    fill(store)
    store.add_record(record(wire.Kind.MUSING, 9, "a rather long musing " * 20))
    text = render(FlightView.from_ground(ground(), now=NOW), width)
    assert all(len(line) <= width for line in text.splitlines())


def test_air_text_cannot_drive_the_terminal(store, ground):
    hostile = dict(HEALTH, mode="NOMINAL\x1b[2J\x1b]0;pwned\x07", phase="asc\rent", batt_mv="7400; rm -rf",
                   readings="co\x1b[2J=1,\x1b]0;x\x07=2")
    fill(store, hostile)
    store.add_telemetry(wire.Telemetry(**telemetry(9, "12:00:55", 1260, callsign="EVIL\x1b[31m")))
    store.add_record(record(wire.Kind.MUSING, 7, "hello\x1b[2J\nworld\x9b"))
    store.commit()
    view = FlightView.from_ground(ground(), now=NOW)
    for text in (render(view, 200), Watcher(plain=True).step(ground(), now=NOW)):
        assert "\x1b" not in text and "\x07" not in text and "\r" not in text and "\x9b" not in text
        assert "\\x1b" in text
    assert "battery —" in render(view, 200)  # a string where a number belongs is not shown


def test_ascent_rate_across_midnight_and_without_enough_data():
    def row(*args, **kw) -> TelemetryRow:
        return TelemetryRow(id=0, received_at="", **telemetry(*args, **kw))

    rows = [row(1, "23:59:50", 30000), row(2, "00:00:10", 29900)]
    assert ascent_rate(rows) == pytest.approx(-5.0)
    assert ascent_rate(rows[:1]) is None
    assert ascent_rate([row(1, "12:00:00", 10, boot=1), row(1, "12:00:10", 99, boot=2)]) is None
    assert ascent_rate([row(1, "12:00:00", 10), row(2, "12:00:00", 20)]) is None


def test_plain_watcher_prints_each_musing_once_in_completion_order(store, ground):
    fill(store)
    w = Watcher(plain=True)
    first = w.step(ground(), now=NOW).splitlines()
    assert first[0].startswith("12:00:50 boot 1 #8 51.50800,-0.12000 1250 m +5.0 m/s  mode NOMINAL phase ascent")
    assert "link 4 frames/1 bad in 5 min" in first[0] and "missing 3" in first[0]  # #3, #5, #6
    assert first[1:] == ["MUSING boot 1 #1: musing number 1", "MUSING boot 1 #2: musing number 2",
                         "MUSING boot 1 #4: musing number 4"]
    assert w.step(ground(), now=NOW) == ""  # nothing new: nothing written
    store.add_record(record(wire.Kind.MUSING, 3, "repaired late"))  # completes after #4
    store.commit()
    assert w.step(ground(), now=NOW).splitlines() == [
        first[0].replace("missing 3", "missing 2"), "MUSING boot 1 #3: repaired late"]


def test_ansi_watcher_redraws_in_place(store, ground):
    fill(store)
    text = Watcher(plain=False).step(ground(), width=80, now=NOW)
    assert text.startswith("\x1b[H") and text.endswith("\x1b[J")
    assert "musing number 4\x1b[K\n" in text


def test_watch_loop_stops_on_the_event(store, tmp_path):
    fill(store)
    out = io.StringIO()  # not a terminal: plain lines
    stop = threading.Event()
    stop.set()
    watch(store.path, stop, out, interval_s=0.01)
    assert "MUSING boot 1 #4: musing number 4" in out.getvalue()


def test_cli(store, tmp_path, capsys):
    fill(store)
    parser = argparse.ArgumentParser()
    register_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["watch", "--db", store.path, "--once", "--plain", "--window", "10"])
    out = io.StringIO()
    assert args.func(args, out=out) == 0
    assert "link 0 frames/0 bad in 10 min" in out.getvalue()  # the frames are a year old by the real clock
    assert "MUSING boot 1 #4: musing number 4" in out.getvalue()
    missing = parser.parse_args(["watch", "--db", str(tmp_path / "nope.db"), "--once"])
    assert cmd_watch(missing) == 1
    assert "no database" in capsys.readouterr().err
    assert not (tmp_path / "nope.db").exists()
