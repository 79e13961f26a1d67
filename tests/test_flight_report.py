"""The flight report: series, summary sections and the SVG, from a ground database that the
real ground path (air.hex replayed through the decoder into the Store) filled with a
synthetic two-boot flight across midnight."""

from __future__ import annotations

import json
import re
import threading
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone

import pytest

from groundstation.link.decoder import FrameDecoder
from groundstation.link.listen import run_listen
from groundstation.sources import ReplaySource
from groundstation.store import GroundReader, Store
from sim.bench.report.flight_report import (
    PAYLOAD_ESTIMATE,
    UNKNOWN_MODE,
    describe_faults,
    flight_series,
    flight_svg,
    summarise,
    write_flight_report,
)
from stratoecho import wire
from stratoecho.wire.events import event
from tests.fakes import AUTH

SVG = "{http://www.w3.org/2000/svg}"
START = datetime(2024, 6, 1, 23, 40, 0, tzinfo=timezone.utc)  # midnight falls 20 minutes in
REBOOT_S = 3900  # boot 2's first telemetry and health; boot 1's last was at 3600
BLACKOUT = (4860, 5400)  # flight seconds [from, to) in which nothing reaches the ground
BURST_S = 5400
STORE_FAULT = "store write failed (FullError: disk full); running degraded"


def altitude(t: float) -> int:
    return round(5 * t) if t <= BURST_S else max(0, round(5 * BURST_S - 15 * (t - BURST_S)))


def outside(alt_m: int) -> float:
    return max(15 - 6.5 * alt_m / 1000, -56.5)  # the standard atmosphere, tropopause at 11 km


def mode_at(t: int) -> str | None:
    if t == 0:
        return None  # an older record: no mode field
    if t < 1800:
        return "NOMINAL"
    if t < REBOOT_S:
        return "LOW_POWER"
    if t < 4200:
        return "SURVIVAL"  # an unplanned reboot starts in safe mode
    return "LOW_POWER" if t < 4800 else "NOMINAL"


def health_fields(t: int) -> dict:
    fields = {"uptime_s": t, "cpu_temp_c": 40.0 - t / 600, "loss": 0.1, "store": "ok",
              "gps": "silent" if 2400 <= t <= 3000 else "ok", "bme280": "ok", "heater": "off:warm"}
    if t >= REBOOT_S:
        fields["box_temp_c"] = 20.0  # boot 2 brings the box sensor up
    if (mode := mode_at(t)) is not None:
        fields["mode"] = mode
    return fields


def lost(t: float) -> bool:
    return BLACKOUT[0] <= t < BLACKOUT[1]


def write_air_hex(path) -> None:
    """What the ground heard, as the channel writes it: telemetry each minute, health every five,
    one store fault event; boot 1 for the first hour, boot 2 after a five-minute outage."""
    frames: list[bytes] = []
    schedule = [(1, t) for t in range(0, 3601, 60)] + [(2, t) for t in range(REBOOT_S, 7201, 60)]
    seq = {}
    for boot, t in schedule:
        when = START + timedelta(seconds=t)
        n = seq[("t", boot)] = seq.get(("t", boot), -1) + 1
        sentence = wire.encode_sentence(wire.Telemetry(
            "STRATO", n, when.strftime("%H:%M:%S"), 52.0, 0.1, altitude(t), 9, outside(altitude(t)),
            1000.0, 8000 - t // 10, boot))
        records = []
        if t % 300 == 0:
            n = seq[("h", boot)] = seq.get(("h", boot), -1) + 1
            records.append(wire.Record(wire.Kind.HEALTH, boot, n, int(when.timestamp()), health_fields(t)))
        if t == 4020:
            records.append(wire.Record(wire.Kind.EVENT, boot, 0, int(when.timestamp()), event("store_fault", detail=STORE_FAULT)))
        if not lost(t):
            frames.append(sentence)
            frames += [f for r in records for f in wire.fragment_record(r, auth=AUTH)]
    path.write_text("".join(f.hex() + "\n" for f in frames))


def fill_ground(tmp_path):
    air = tmp_path / "air.hex"
    write_air_hex(air)
    db = tmp_path / "ground.db"
    with Store(db) as store:
        run_listen(ReplaySource(air), store, FrameDecoder(auth=AUTH), threading.Event(), out=None)
    return db


def timeline() -> list[dict]:
    """Two stations each minute; the near one hears 9 of 10 frames, the far one 7, none in the blackout."""
    minutes = []
    for m in range(121):
        for station, got in (("near", 9), ("far", 7)):
            minutes.append({"t_s": m * 60, "station": station, "in": 10,
                            "delivered": 0 if lost(m * 60 + 30) else got})
    return minutes


CHANNEL = {"frames_in": 2420, "frames_forwarded": 1900, "frames_dropped": 520, "timeline": timeline()}
PAYLOAD = {"energy_wh": 12.3456, "link": {"frames_sent": 2420}}


@pytest.fixture(scope="module")
def ground(tmp_path_factory):
    return fill_ground(tmp_path_factory.mktemp("flight"))


def points(path_d: str) -> int:
    return len(re.findall(r"[ML]", path_d))


# ----------------------------------------------------------------------------- series
def test_series_put_both_boots_on_one_axis_across_midnight(ground):
    s = flight_series(ground, CHANNEL)
    delivered = [t for t in list(range(0, 3601, 60)) + list(range(REBOOT_S, 7201, 60)) if not lost(t)]
    assert s.start_utc == START
    assert s.telemetry_t == [float(t) for t in delivered]  # 00:00:00 comes after 23:59:00, not before it
    assert s.altitude_m[:3] == [(0.0, 0.0), (60.0, 300.0), (120.0, 600.0)]
    assert max(v for _, v in s.altitude_m) == 5 * BURST_S
    assert s.altitude_m[-1] == (7200.0, float(altitude(7200)))
    assert s.outside_c[2] == (120.0, 11.1)  # 15 °C less 6.5 °C per km
    assert s.battery_v[0] == (0.0, 8.0) and s.battery_v[-1] == (7200.0, 7.28)
    assert s.boots == [1, 2] and s.reboots == [(float(REBOOT_S), 2)]
    assert s.end_s == 7200.0


def test_series_modes_temperatures_and_faults(ground):
    s = flight_series(ground, CHANNEL)
    assert s.modes[0] == (0.0, UNKNOWN_MODE)
    assert s.modes[1] == (300.0, "nominal")
    assert (REBOOT_S, "survival") in s.modes
    assert 5100.0 not in [t for t, _ in s.modes]  # lost in the blackout
    assert s.cpu_c[0] == (0.0, 40.0) and len(s.cpu_c) == len(s.modes)
    assert s.box_c[0] == (REBOOT_S, 20.0) and len(s.box_c) == len([t for t, _ in s.modes if t >= REBOOT_S])
    faults = [(f.t_s, f.device, f.status) for f in s.faults]
    assert faults == [(2400.0, "gps", "silent"), (2700.0, "gps", "silent"), (3000.0, "gps", "silent"),
                      (4020.0, "store", "store write failed")]


def test_loss_per_station_from_the_channel_timeline(ground):
    s = flight_series(ground, CHANNEL)
    assert s.loss_source == "channel timeline"
    assert sorted(s.loss) == ["far", "near"]
    near = dict(s.loss["near"])
    assert len(near) == 121
    assert near[0.0] == pytest.approx(0.1) and near[4860.0] == 1.0 and near[5340.0] == 1.0
    assert near[5400.0] == pytest.approx(0.1)
    assert dict(s.loss["far"])[60.0] == pytest.approx(0.3)


def test_loss_falls_back_to_the_payload_estimate(ground):
    s = flight_series(ground, {"frames_in": 10})  # a channel without a timeline
    assert s.loss_source == PAYLOAD_ESTIMATE
    assert list(s.loss) == [PAYLOAD_ESTIMATE]
    assert [t for t, _ in s.loss[PAYLOAD_ESTIMATE]] == [t for t, _ in s.modes]
    assert {v for _, v in s.loss[PAYLOAD_ESTIMATE]} == {0.1}


def test_telemetry_alone_still_rolls_over_midnight(tmp_path):
    with Store(tmp_path / "g.db") as store:
        for seq, hms in enumerate(("23:59:00", "23:59:30", "00:00:10", "00:01:00")):
            store.add_telemetry(wire.Telemetry("S", seq, hms, 0.0, 0.0, 100 * seq, 5, 1.0, 900.0, 0, 1))
    s = flight_series(tmp_path / "g.db")
    assert s.telemetry_t == [0.0, 30.0, 70.0, 120.0]
    assert s.battery_v == []  # batt_mv 0: no battery monitor
    assert s.modes == [] and s.loss == {} and s.reboots == []


def test_a_fault_between_two_health_records_is_seen_by_its_device_events(tmp_path):
    """A sensor out for two minutes between health records shows only in its device events (a
    real-time run of the Pi configuration said "faults: none seen at the ground" of one)."""
    with Store(tmp_path / "g.db") as store:
        store.add_telemetry(wire.Telemetry("S", 0, START.strftime("%H:%M:%S"), 52.0, 0.1, 100, 9, 1.0, 900.0, 4100, 1))
        for seq, (t, before, after) in enumerate(((60, "starting", "ok"), (180, "ok", "i2c_error"),
                                                 (210, "i2c_error", "absent"), (300, "absent", "ok"))):
            store.add_record(wire.Record(wire.Kind.EVENT, 1, seq, int((START + timedelta(seconds=t)).timestamp()),
                                         event("device", device="bme280", before=before, after=after)))
    faults = [(f.t_s, f.device, f.status) for f in flight_series(tmp_path / "g.db").faults]
    assert faults == [(180.0, "bme280", "i2c_error"), (210.0, "bme280", "absent")]
    # and when it was back: a report that said only "absent (from 4 min)" read as lost for good
    summary = summarise(tmp_path / "g.db", None, None)["faults"]["by_device"]
    assert [(f["status"], f.get("ok_again_s")) for f in summary] == [("i2c_error", 300.0), ("absent", 300.0)]
    assert describe_faults(summary) == ("bme280 i2c_error (from 3 min, ok again at 5 min), "
                                        "bme280 absent (from 4 min, ok again at 5 min)")
    assert describe_faults([{k: v for k, v in summary[1].items() if k != "ok_again_s"}]) == \
        "bme280 absent (from 4 min)"
    assert describe_faults([]) == "none seen at the ground"


# ----------------------------------------------------------------------------- summary
def test_summary_modes(ground):
    modes = summarise(ground, PAYLOAD, CHANNEL)["modes"]
    assert modes["seconds"] == {UNKNOWN_MODE: 300.0, "nominal": 3900.0, "low_power": 2700.0, "survival": 300.0}
    assert modes["transitions"] == [
        {"t_s": 300.0, "from": UNKNOWN_MODE, "to": "nominal"},
        {"t_s": 1800.0, "from": "nominal", "to": "low_power"},
        {"t_s": 3900.0, "from": "low_power", "to": "survival"},
        {"t_s": 4200.0, "from": "survival", "to": "low_power"},
        {"t_s": 4800.0, "from": "low_power", "to": "nominal"},
    ]


def test_summary_faults_loss_energy_reboots(ground):
    r = summarise(ground, PAYLOAD, CHANNEL)
    assert r["faults"] == {"total": 4, "by_device": [
        # each heard working again at the next health record
        {"device": "gps", "status": "silent", "count": 3, "first_s": 2400.0, "last_s": 3000.0, "ok_again_s": 3300.0},
        {"device": "store", "status": "store write failed", "count": 1, "first_s": 4020.0, "last_s": 4020.0,
         "ok_again_s": 4200.0},
    ]}
    loss = r["loss"]
    assert loss["lost_share"] == pytest.approx(520 / 2420, abs=1e-4) and loss["lost_share_from"] == "channel"
    assert loss["longest_telemetry_gap"] == {"s": 600.0, "from_s": 4800.0, "to_s": 5400.0}
    near = loss["stations"]["near"]
    assert near["in"] == 1210 and near["delivered"] == 9 * 112
    assert near["worst_minute"] == {"t_s": 4860.0, "lost_share": 1.0}
    assert loss["stations"]["far"]["lost_share"] == pytest.approx(1 - 7 * 112 / 1210, abs=1e-4)
    assert r["energy"] == {"energy_wh": 12.346, "battery_v_min": 7.28, "battery_v_max": 8.0}
    assert r["reboots"] == {"boots": [1, 2], "count": 1, "at": [{"boot": 2, "t_s": 3900.0}]}
    json.dumps(r)  # it goes into report.json


def test_summary_without_channel_compares_sent_with_received(ground):
    loss = summarise(ground, PAYLOAD, None)["loss"]
    with GroundReader.open(ground) as reader:
        received = reader.counts().frames
    assert loss["lost_share"] == pytest.approx(1 - received / 2420, abs=1e-4)
    assert loss["lost_share_from"] == "payload sent vs ground received" and loss["stations"] == {}


@pytest.mark.parametrize("make_db", [True, False], ids=["empty db", "no db"])
def test_nothing_delivered_is_a_valid_flight(tmp_path, make_db):
    db = tmp_path / "ground.db"
    if make_db:
        Store(db).close()
    r = summarise(db, {}, {})
    assert r == {
        "modes": {"seconds": {}, "transitions": []},
        "faults": {"total": 0, "by_device": []},
        "loss": {"lost_share": None, "lost_share_from": None, "longest_telemetry_gap": None, "stations": {}},
        "energy": {"energy_wh": None, "battery_v_min": None, "battery_v_max": None},
        "reboots": {"boots": [], "count": 0, "at": []},
    }
    assert db.exists() is make_db  # reading never creates the database
    root = ET.fromstring(flight_svg(flight_series(db), "empty"))
    assert len(root.findall(f".//{SVG}g[@class='panel']")) == 5
    assert root.findall(f".//{SVG}path") == []


# ----------------------------------------------------------------------------- the picture
def panels(svg: str) -> dict[str, ET.Element]:
    root = ET.fromstring(svg)
    return {g.get("id").removeprefix("panel-"): g for g in root.iter(f"{SVG}g") if g.get("class") == "panel"}


def series_paths(panel: ET.Element) -> dict[str, str]:
    return {p.get("data-series"): p.get("d") for p in panel.iter(f"{SVG}path")}


def test_svg_has_a_panel_per_series_with_every_point(ground):
    s = flight_series(ground, CHANNEL)
    svg = flight_svg(s, "test <flight>")
    assert "<script" not in svg and "@import" not in svg and "href" not in svg
    p = panels(svg)
    assert list(p) == ["altitude", "temperature", "battery", "mode", "loss"]
    n = len(s.telemetry_t)
    alt = series_paths(p["altitude"])
    assert list(alt) == ["altitude"] and points(alt["altitude"]) == n
    assert alt["altitude"].count("M") == 2  # broken across the ten-minute blackout, not across the reboot
    temps = series_paths(p["temperature"])
    assert points(temps["outside"]) == n and points(temps["cpu"]) == len(s.modes)
    assert points(temps["box"]) == len(s.box_c)
    assert temps["cpu"].count("M") == 1  # one health record lost in a 5-minute cadence is no break
    assert points(series_paths(p["battery"])["battery"]) == n
    loss = series_paths(p["loss"])
    assert sorted(loss) == ["far", "near"] and points(loss["near"]) == 121
    legend = [t.text for g in p["loss"].iter(f"{SVG}g") if g.get("class") == "legend" for t in g.iter(f"{SVG}text")]
    assert "near" in legend and "far" in legend


def test_svg_mode_band_reboot_and_fault_marks(ground):
    s = flight_series(ground, CHANNEL)
    root = ET.fromstring(flight_svg(s, "flight"))
    mode = panels(flight_svg(s, "flight"))["mode"]
    bands = [r for r in mode.iter(f"{SVG}rect") if r.get("class") == "mode"]
    # One band per stretch in one mode, not one per health record.
    assert [b.get("data-mode") for b in bands] == [UNKNOWN_MODE, "nominal", "low_power", "survival", "low_power",
                                                   "nominal"]
    colours = {b.get("data-mode"): b.get("fill") for b in bands}
    assert len(set(colours.values())) == 4  # unknown, nominal, low power, survival each their own
    # The band fills the time axis without overlaps or holes.
    for a, b in zip(bands, bands[1:]):
        assert float(a.get("x")) + float(a.get("width")) == pytest.approx(float(b.get("x")), abs=0.11)
    faults = [ln for ln in mode.iter(f"{SVG}line") if ln.get("class") == "fault"]
    assert len(faults) == 4 and faults[0].find(f"{SVG}title").text == "gps: silent"
    reboots = [g for g in root.iter(f"{SVG}g") if g.get("class") == "reboot"]
    assert len(reboots) == 1 and reboots[0].find(f"{SVG}text").text == "boot 2"


def test_svg_x_axis_is_shared_and_in_minutes(ground):
    s = flight_series(ground, CHANNEL)
    p = panels(flight_svg(s, "flight"))
    first_x = {float(series_paths(p[panel])[key].split()[0][1:])
               for panel, key in (("altitude", "altitude"), ("battery", "battery"), ("temperature", "outside"))}
    assert len(first_x) == 1  # flight second 0 lies at one x in every panel
    root = ET.fromstring(flight_svg(s, "flight"))
    assert any(t.text and t.text.startswith("flight time (min)") for t in root.iter(f"{SVG}text"))


def test_write_flight_report(tmp_path):
    db = fill_ground(tmp_path)
    (tmp_path / "channel.json").write_text(json.dumps(CHANNEL))
    (tmp_path / "payload").mkdir()
    (tmp_path / "payload" / "stats.json").write_text(json.dumps(PAYLOAD))
    path = write_flight_report(tmp_path)
    assert path == tmp_path / "flight.svg"
    p = panels(path.read_text(encoding="utf-8"))
    assert sorted(series_paths(p["loss"])) == ["far", "near"]  # channel.json was read
    assert points(series_paths(p["altitude"])["altitude"]) == len(flight_series(db).telemetry_t)
    assert "2024-06-01" in path.read_text(encoding="utf-8")


def test_write_flight_report_with_nothing(tmp_path):
    path = write_flight_report(tmp_path)
    assert len(panels(path.read_text(encoding="utf-8"))) == 5
    assert not (tmp_path / "ground.db").exists()


def test_a_makers_sensor_in_the_health_records_devices_field_is_reported(tmp_path):
    """A sensor without a health key of its own goes down in `devices` (key 27): its faults are
    the report's as the built-in sensors' are."""
    with Store(tmp_path / "g.db") as store:
        store.add_telemetry(wire.Telemetry("S", 0, START.strftime("%H:%M:%S"), 52.0, 0.1, 100, 9, 1.0, 900.0, 4100, 1))
        for seq, (t, co2) in enumerate(((60, "ok"), (360, "absent"), (660, "ok"))):
            fields = {"uptime_s": t, "store": "ok", **wire.device_status_fields({"gps": "ok", "fake_co2": co2})}
            store.add_record(wire.Record(wire.Kind.HEALTH, 1, seq, int((START + timedelta(seconds=t)).timestamp()),
                                         fields))
    assert [(f.t_s, f.device, f.status) for f in flight_series(tmp_path / "g.db").faults] == [
        (360.0, "fake_co2", "absent")]
    summary = summarise(tmp_path / "g.db", None, None)["faults"]["by_device"]
    assert [(f["device"], f["status"], f.get("ok_again_s")) for f in summary] == [("fake_co2", "absent", 660.0)]
