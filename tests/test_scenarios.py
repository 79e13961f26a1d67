"""Each named rehearsal flown as a whole bench flight (payload, channel and ground station as
separate processes, the payload's real drivers on simulated parts), checked the way a flight
engineer reads a flight: what went on the air (air.hex), what the ground holds (ground.db),
and the report. No persona: these are about the machine, test_flight.py flies the persona."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from sim.__main__ import main as sim_main

ROOT = Path(__file__).resolve().parent.parent
# The bench's lockstep clock: as fast as the machine allows, the same flight however busy it is.
SPEEDUP = "max"
BEACON_S = 10.0  # the default schedule.telemetry_s
# A sentence carries its GPS fix's time (one fix a flight second on the lockstep); the slot
# allows what the earlier free-running bench allowed, fixes up to a few seconds old.
SLOT_S = 2 * BEACON_S


def fly(tmp_path_factory, scenario: str, *extra: str) -> Path:
    out = tmp_path_factory.mktemp(scenario)
    rc = sim_main(["fly", "--out", str(out), "--no-persona", "--scenario", scenario, "--speedup", SPEEDUP,
                   "--seed", "3", "--quiet", *extra])
    assert rc == 0, (out / "payload.log").read_text()[-3000:]
    return out


def on_air(out: Path) -> list[dict]:
    """Everything the payload put on the air, decoded by the ground's own decoder."""
    proc = subprocess.run([sys.executable, "-m", "groundstation", "decode", str(out / "air.hex"),
                           "--flight-key", str(out / "uplink.key")],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def flight_s(record: dict, launch: datetime) -> float:
    return (datetime.fromisoformat(record["created"]) - launch).total_seconds()


def ground(out: Path, query: str, *args) -> list[tuple]:
    con = sqlite3.connect(out / "ground.db")
    try:
        return con.execute(query, args).fetchall()
    finally:
        con.close()


def telemetry_times(records: list[dict], boot: int | None = None) -> list[int]:
    """Seconds of day of each position sentence on the air, in order (bench flights stay within a day)."""
    out = []
    for r in records:
        if r["kind"] == "telemetry" and (boot is None or r["boot"] == boot):
            h, m, s = map(int, r["time"].split(":"))
            out.append(h * 3600 + m * 60 + s)
    return out


def assert_beacon_kept(records: list[dict], boot: int | None = None, slot_s: float = SLOT_S) -> None:
    """No beacon slot missed: sentence numbers run without a gap, their times never go back,
    and no two are further apart than a slot and the fix's jitter."""
    for b in ({boot} if boot is not None else {r["boot"] for r in records if r["kind"] == "telemetry"}):
        seqs = [r["seq"] for r in records if r["kind"] == "telemetry" and r["boot"] == b]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"boot {b}: a sentence number skipped"
        times = telemetry_times(records, b)
        gaps = [t1 - t0 for t0, t1 in zip(times, times[1:])]
        assert min(gaps) >= 0 and max(gaps) <= slot_s, (b, min(gaps), max(gaps))


def events(records: list[dict]) -> list[str]:
    return [r["text"] for r in records if r["kind"] == "event"]


@pytest.fixture(scope="module")
def nominal(tmp_path_factory):
    return fly(tmp_path_factory, "nominal")


def test_nominal_flight_goes_through_every_phase_and_the_beacon_never_misses_a_slot(nominal):
    report = json.loads((nominal / "report.json").read_text())
    assert report["max_alt_m"] > 25_000
    air = on_air(nominal)
    phases = [e for e in events(air) if e.startswith("phase")]
    assert phases[0].startswith("phase pre-launch -> ascent")
    assert any(p.startswith("phase ascent -> descent") or p.startswith("phase float -> descent") for p in phases)
    assert phases[-1].startswith("phase descent -> landed")
    assert_beacon_kept(air)  # the recovery beacon too, after landing
    seconds = report["modes"]["seconds"]
    # A summer flight stays nominal for most of it (the heater holds the battery; the cold
    # descent through the tropopause may cost a spell in low power), never survival.
    assert seconds.get("nominal", 0) > 0.6 * sum(seconds.values()) and "survival" not in seconds
    assert (nominal / "flight.svg").read_text().startswith("<svg")
    assert sim_main(["report", str(nominal)]) == 0  # the words make demo prints


def test_cold_soak_follows_the_mode_ladder_down_in_order_and_the_heater_works(tmp_path_factory):
    out = fly(tmp_path_factory, "cold-soak")
    air = on_air(out)
    modes = [e for e in events(air) if e.startswith("mode")]
    ladder = [m.split(" -> ")[1].split(" ")[0] for m in modes]
    assert "low_power" in ladder and "survival" in ladder
    assert ladder.index("low_power") < ladder.index("survival")  # one rung, then the next
    health = [r for r in air if r["kind"] == "health"]
    heater = {h["fields"]["heater"].split(":")[0] for h in health if "heater" in h["fields"]}
    assert heater == {"on", "off"}
    # No musing machinery was asked for, but the beacon never stopped in the cold.
    assert_beacon_kept(air, slot_s=2 * BEACON_S + SLOT_S)  # survival stretches it to 20 s


def test_a_thirty_minute_blackout_is_held_in_the_queue_and_delivery_resumes(tmp_path_factory):
    out = fly(tmp_path_factory, "blackout")
    air = on_air(out)
    launch = datetime.fromisoformat(events_with(air, "boot 1")["created"])
    during = [r for r in air if r["kind"] in ("health", "event", "image") and 1800 <= flight_s(r, launch) < 3600]
    assert during  # records made during the blackout
    heard = {(k, b, s) for k, b, s in ground(out, "SELECT kind, boot, seq FROM records")}
    assert all((r["kind"], r["boot"], r["seq"]) in heard for r in during if r["kind"] != "image")
    launch_s = launch.hour * 3600 + launch.minute * 60 + launch.second
    heard_at = [int(h) * 3600 + int(m) * 60 + int(sec) - launch_s
                for (t,) in ground(out, "SELECT time FROM telemetry") for h, m, sec in [t.split(":")]]
    assert not [t for t in heard_at if 1800 + 30 < t < 3600 - 30]  # nothing heard in the blackout
    assert any(3600 <= t <= 3600 + 6 * BEACON_S for t in heard_at)  # heard again within a minute


def events_with(records: list[dict], prefix: str) -> dict:
    return next(r for r in records if r["kind"] == "event" and r["text"].startswith(prefix))


def test_gps_loss_keeps_telemetry_flowing_and_the_fault_is_seen_at_the_ground(tmp_path_factory):
    out = fly(tmp_path_factory, "gps-loss")
    texts = [t for (t,) in ground(out, "SELECT text FROM records WHERE kind = 'event' ORDER BY created")]
    assert "device gps: ok -> silent" in texts and "device gps: silent -> ok" in texts
    assert any(t.startswith("device gps:") and t.endswith("garbage") for t in texts)
    air = on_air(out)
    assert_beacon_kept(air)
    report = json.loads((out / "report.json").read_text())
    assert any(f["device"] == "gps" and f["status"] == "silent" for f in report["faults"]["by_device"])


def test_sensor_faults_each_show_at_the_ground_while_the_rest_keeps_running(tmp_path_factory):
    out = fly(tmp_path_factory, "sensor-faults")
    texts = [t for (t,) in ground(out, "SELECT text FROM records WHERE kind = 'event'")]
    assert any(t.startswith("device bme280: ok ->") for t in texts)
    assert "device ina219: ok -> stuck" in texts
    assert any(t.startswith("device camera:") and t.endswith("hung") for t in texts)
    assert any(t.startswith("device bme280:") and t.endswith("-> ok") for t in texts)  # replugged, found again
    assert_beacon_kept(on_air(out))


def test_a_brownout_reboot_loses_no_durable_record_and_the_beacon_comes_back(tmp_path_factory):
    out = fly(tmp_path_factory, "brownout")
    air = on_air(out)
    boots = {r["boot"] for r in air}
    assert boots == {1, 2}
    assert any("unplanned reboot, starting in low_power" in e for e in events(air))
    # Every event the first boot put on the air is at the ground: durable across the cut.
    heard = {(b, s) for b, s in ground(out, "SELECT boot, seq FROM records WHERE kind = 'event'")}
    sent = {(r["boot"], r["seq"]) for r in air if r["kind"] == "event"}
    assert sent <= heard
    seqs = sorted(s for b, s in heard if b == 1)
    assert seqs == list(range(1, len(seqs) + 1))  # no gap in boot 1's events
    # After recovery the beacon keeps its interval.
    assert_beacon_kept(air, boot=2)


def test_a_ground_station_restart_resumes_from_its_database_and_catches_up(tmp_path_factory):
    out = fly(tmp_path_factory, "ground-restart")
    report = json.loads((out / "report.json").read_text())
    assert report["actions"] and report["actions"][0]["action"] == "ground station restart"
    air = on_air(out)
    sent_events = {(r["boot"], r["seq"]) for r in air if r["kind"] == "event"}
    heard = {(b, s) for b, s in ground(out, "SELECT boot, seq FROM records WHERE kind = 'event'")}
    assert sent_events <= heard  # what was said while the ground was down was asked for and repaired
    received = [t for (t,) in ground(out, "SELECT time FROM telemetry ORDER BY boot, seq")]
    assert len(received) > 0.5 * len(telemetry_times(air))


def test_a_night_launch_has_dark_pictures_and_a_colder_box_than_the_day(tmp_path_factory, nominal):
    out = fly(tmp_path_factory, "night", "--minutes", "60")
    import io

    from PIL import Image

    def first_image_brightness(flight: Path) -> float:
        ((blob,),) = ground(flight, "SELECT data FROM records WHERE kind = 'image' ORDER BY boot, seq LIMIT 1")
        img = Image.open(io.BytesIO(blob)).convert("L")
        return sum(img.getdata()) / (img.width * img.height)

    assert first_image_brightness(out) < 0.3 * first_image_brightness(nominal)


def test_orbit_delivers_only_during_passes(tmp_path_factory):
    out = fly(tmp_path_factory, "orbit", "--minutes", "300")
    channel = json.loads((out / "channel.json").read_text())
    rows = channel["timeline"]
    heard = [r for r in rows if r["delivered"]]
    silent = [r for r in rows if not r["delivered"]]
    assert heard and silent  # passes of a few minutes between long silences
    assert len(heard) < 0.25 * len(rows)
    assert ground(out, "SELECT COUNT(*) FROM telemetry")[0][0] > 0
