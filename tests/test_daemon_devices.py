"""The daemon with a camera and Pi health: pictures become image records, device state goes into health."""

from __future__ import annotations

import io

from PIL import Image

from payload.assembly import build_onboard
from payload.clock import Clock
from payload.config import PayloadConfig
from payload.onboard import Onboard
from payload.parts.camera import Camera
from payload.parts.pi_health import PiHealth
from payload.producers import Fitted
from sim.world.camera import SimCameraBackend
from sim.world.flight import SimSensors
from stratoecho import wire
from stratoecho.wire import Kind
from tests.fakes import RecordingRadio, write_flight_key


def daemon(tmp_path, camera=None, pi_health=None) -> Onboard:
    clock = Clock(speedup=1e6)
    return build_onboard(PayloadConfig(), SimSensors(clock), RecordingRadio(), clock, None, tmp_path / "data",
                  fitted=Fitted(camera=camera, pi_health=pi_health))


def test_a_picture_goes_down_as_an_image_record_and_its_status_into_health(tmp_path):
    sim = SimCameraBackend(lambda: 25_000.0, size=(160, 120))
    cam = Camera(sim.factory, still_dir=tmp_path / "stills", thumb_max_bytes=4000, timeout_s=5)
    d = daemon(tmp_path, camera=cam)
    assert d.daemon.run_once("camera")
    (q,) = d.parts.store.queue.queued(limit=5, kinds=(Kind.IMAGE,))
    record = wire.Record.from_body(wire.Kind.IMAGE, q.boot, q.seq, q.payload)
    assert len(record.content) <= 4000 and Image.open(io.BytesIO(record.content)).format == "JPEG"
    assert list((tmp_path / "stills").glob("*.jpg"))  # the full still stays on the card
    sim.unplug()
    d.daemon.run_once("camera")  # a camera lost mid-flight: a status, not an exception
    d.daemon.run_once("health")
    (h,) = d.parts.store.queue.queued(limit=5, kinds=(Kind.HEALTH,))
    fields = wire.Record.from_body(wire.Kind.HEALTH, h.boot, h.seq, h.payload).content
    assert fields["camera"] != "ok"
    cam.close()


def test_pi_health_fields_reach_the_health_record(tmp_path):
    root = tmp_path / "root"
    (root / "sys/class/thermal/thermal_zone0").mkdir(parents=True)
    (root / "sys/class/thermal/thermal_zone0/temp").write_text("48250\n")
    (root / "proc").mkdir()
    (root / "proc/meminfo").write_text("MemTotal: 427000 kB\nMemAvailable: 215000 kB\n")
    (root / "proc/uptime").write_text("987654.32 1000.0\n")
    health = PiHealth(str(root), data_dir=str(tmp_path), runner=lambda argv: "throttled=0x50005\n")
    d = daemon(tmp_path, pi_health=health)
    d.daemon.run_once("health")
    (h,) = d.parts.store.queue.queued(limit=5, kinds=(Kind.HEALTH,))
    fields = wire.Record.from_body(wire.Kind.HEALTH, h.boot, h.seq, h.payload).content
    assert fields["cpu_temp_c"] == 48.2 or fields["cpu_temp_c"] == 48.3
    assert fields["throttled"] == 0x50005 and fields["mem_free_kb"] == 215000
    assert fields["uptime_s"] != 987654  # the flight's uptime, not the host's


def test_the_flight_configuration_starts_on_a_board_with_none_of_its_parts(tmp_path):
    """config/payload.pi.toml on this machine: no /dev/serial0, no I2C bus, no GPIO pin factory,
    no picamera2. It must fly all the same, saying on air what it lacks."""
    import subprocess
    import sys
    from pathlib import Path

    from payload.store import Store

    root = Path(__file__).resolve().parent.parent
    write_flight_key(tmp_path / "uplink.key")  # in place of /etc/stratoecho/uplink.key
    proc = subprocess.run(
        [sys.executable, "-m", "payload", "run", "--config", str(root / "config/payload.pi.toml"), "--no-persona",
         "--udp", "127.0.0.1:9", "--data", str(tmp_path / "p"), "--minutes", "0.1", "--drain-s", "0",
         "--flight-key", str(tmp_path / "uplink.key")],
        capture_output=True, text=True, timeout=120, cwd=root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    store = Store(tmp_path / "p" / "queue.db")
    try:
        texts = [wire.Record.from_body(wire.Kind.EVENT, q.boot, q.seq, q.payload).text
                 for q in store.queue.queued(limit=100, kinds=(Kind.EVENT,))]
        telemetry = sum(store.queue.counts().get("telemetry", {}).values())  # queued, or on air already (it goes first)
    finally:
        store.close()
    assert any(t.startswith("status LED unavailable") for t in texts), texts
    assert any(t.startswith("battery heater unavailable") for t in texts)
    assert any(t.startswith("device bme280:") and t.endswith("absent") for t in texts)
    assert telemetry  # and the beacon went on
