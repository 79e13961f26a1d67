"""Camera driver (payload.parts.camera) against the simulated camera (sim.world.camera)."""

from __future__ import annotations

import io
import math
import sys
import types

import numpy as np
import pytest
from PIL import Image

from payload.parts.camera import INSTALL_HINT, Camera, CameraAbsent, Picamera2Backend, make_thumbnail, sky_controls
from payload.parts.i2c_sensors import Backoff
from sim.world.camera import SimCameraBackend, horizon_dip_deg
from tests.fakes import FakeClock


def shoot(tmp_path, altitude_m, **kw):
    sim = SimCameraBackend(lambda: altitude_m, seed=3, **kw).factory()
    path = tmp_path / f"h{altitude_m}.jpg"
    assert sim.capture(path) == (640, 480)
    return np.asarray(Image.open(path).convert("RGB")).astype(float)


def horizon_row(img: np.ndarray, c0: int, c1: int, threshold: float = 10.0) -> int:
    """First row (from the top) where a column band's brightness steps."""
    g = img[:, c0:c1].mean(axis=(1, 2))
    for r in range(len(g) - 2):
        if abs(g[r + 2] - g[r]) > threshold:
            return r + 1
    raise AssertionError("no horizon found")


# --- the simulated view -------------------------------------------------------------


def test_sim_writes_real_jpegs_with_exif(tmp_path):
    sim = SimCameraBackend(lambda: 12_000.0, seed=1).factory()
    path = tmp_path / "a.jpg"
    assert sim.capture(path) == (640, 480)
    data = path.read_bytes()
    assert data[:2] == b"\xff\xd8"
    with Image.open(path) as im:
        assert im.format == "JPEG" and im.size == (640, 480)
        assert "12000" in im.getexif()[0x010E]


def test_sky_darkens_with_altitude(tmp_path):
    top = [shoot(tmp_path, h)[:40].mean() for h in (1_000, 10_000, 30_000)]
    assert top[0] > top[1] > top[2]
    assert top[2] < 30  # near black above ~30 km
    assert top[0] > 120  # pale blue low down


def test_horizon_dips_and_curves_with_altitude(tmp_path):
    f = 320 / math.tan(math.radians(SimCameraBackend.HFOV_DEG / 2))
    rows = {}
    for h in (1_000, 30_000):
        img = shoot(tmp_path, h, sun_azimuth_deg=180.0)  # the sun behind the camera: no glow in the way
        rows[h] = (horizon_row(img, 316, 324), horizon_row(img, 0, 8), horizon_row(img, 632, 640))
        expected_centre = 239.5 + f * math.tan(math.radians(horizon_dip_deg(h)))
        assert abs(rows[h][0] - expected_centre) <= 3
    (c1, l1, r1), (c30, l30, r30) = rows[1_000], rows[30_000]
    assert c30 > c1 + 30  # the horizon drops (about 5.5 deg at 30 km)
    assert l30 - c30 >= 5 and r30 - c30 >= 5  # lower at the edges: bowed up in the middle
    assert (l30 - c30) > (l1 - c1) and (r30 - c30) > (r1 - c1)  # more curved than at 1 km, both sides
    assert horizon_dip_deg(30_000) == pytest.approx(5.55, abs=0.02)


def test_sun_disk_when_in_view(tmp_path):
    with_sun = shoot(tmp_path, 30_000, sun_elevation_deg=12.0, sun_azimuth_deg=18.0)
    no_sun = shoot(tmp_path, 30_001, sun_elevation_deg=12.0, sun_azimuth_deg=180.0)
    f = 320 / math.tan(math.radians(SimCameraBackend.HFOV_DEG / 2))
    col = round(319.5 + f * math.tan(math.radians(18.0)))
    row = round(239.5 - f * math.tan(math.radians(12.0)) / math.cos(math.radians(18.0)))
    assert with_sun[row - 2 : row + 3, col - 2 : col + 3].mean() > 240
    assert no_sun[:200].max() < 200


# --- thumbnails ---------------------------------------------------------------------


@pytest.mark.parametrize("budget", [6000, 2500, 1200])
def test_thumbnail_fits_budget_without_exif(tmp_path, budget):
    sim = SimCameraBackend(lambda: 20_000.0, seed=2).factory()
    sim.capture(tmp_path / "s.jpg")
    with Image.open(tmp_path / "s.jpg") as im:
        assert im.getexif()  # the still has EXIF ...
        thumb = make_thumbnail(im, 160, budget)
    assert thumb is not None and len(thumb) <= budget and thumb[:2] == b"\xff\xd8"
    with Image.open(io.BytesIO(thumb)) as t:
        assert t.format == "JPEG" and max(t.size) <= 160
        assert not t.getexif() and "exif" not in t.info  # ... the thumbnail none


def test_thumbnail_none_when_nothing_fits():
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8))
    assert make_thumbnail(noise, 160, 200) is None


# --- the driver ---------------------------------------------------------------------


def make_camera(tmp_path, sim, clock, **kw):
    kw.setdefault("timeout_s", 5.0)
    return Camera(sim.factory, still_dir=tmp_path / "stills", backoff=Backoff(initial_s=10, max_s=60), clock=clock, **kw)


def test_capture_ok_keeps_still_and_sends_thumbnail(tmp_path):
    sim, clock = SimCameraBackend(lambda: 25_000.0, seed=4), FakeClock()
    cam = make_camera(tmp_path, sim, clock)
    r1, r2 = cam.capture(), cam.capture()
    for r in (r1, r2):
        assert r.status == "ok" and r.error == ""
        assert (r.width, r.height) == (640, 480)
        assert len(r.thumbnail_jpeg) <= 6000 and r.thumbnail_jpeg[:2] == b"\xff\xd8"
    assert r1.still_path.endswith("img_000001.jpg") and r2.still_path.endswith("img_000002.jpg")
    assert r2.counters.ok == 2 and r2.counters.reinits == 1 and sim.opens == 1
    assert not list((tmp_path / "stills").glob("*.part.jpg"))
    # numbering continues after a restart instead of overwriting
    assert make_camera(tmp_path, sim, clock).capture().still_path.endswith("img_000003.jpg")


def test_unplug_gives_status_and_recovers_after_backoff(tmp_path):
    sim, clock = SimCameraBackend(lambda: 8_000.0, seed=5), FakeClock()
    cam = make_camera(tmp_path, sim, clock)
    assert cam.capture().status == "ok"

    sim.unplug()
    r = cam.capture()  # the open camera drops off mid-flight
    assert r.status == "error" and "RuntimeError" in r.error and r.counters.errors == 1
    assert r.thumbnail_jpeg is None and r.still_path is None
    assert sim.closes == 1  # the backend was released

    r = cam.capture()  # inside the back-off: camera not touched
    assert r.status == "error" and r.error == "waiting for back-off" and r.counters.skipped == 1

    clock.t += 10
    r = cam.capture()  # re-open fails: no camera
    assert r.status == "absent" and "no cameras" in r.error and r.counters.absent == 1

    clock.t += 15  # second back-off is 20 s
    assert cam.capture().error == "waiting for back-off"
    sim.plug()
    clock.t += 5
    r = cam.capture()
    assert r.status == "ok" and r.counters.reinits == 2 and r.thumbnail_jpeg


def test_hang_gives_hung_and_recovers(tmp_path):
    # small frames so a normal capture is far inside the timeout even on a loaded machine
    sim, clock = SimCameraBackend(lambda: 18_000.0, seed=6, size=(160, 120)), FakeClock()
    cam = make_camera(tmp_path, sim, clock, timeout_s=1.0)
    assert cam.capture().status == "ok"

    sim.hang()
    r = cam.capture()
    assert r.status == "hung" and "within 1 s" in r.error
    assert r.counters.hung == 1 and r.counters.abandoned == 1 and r.thumbnail_jpeg is None

    # the rest keeps running: further calls return at once during the back-off
    r = cam.capture()
    assert r.status == "hung" and r.error == "waiting for back-off"

    sim.release()
    clock.t += 10
    r = cam.capture()
    assert r.status == "ok" and r.counters.reinits == 2 and r.counters.hung == 1
    cam.close()


def test_too_many_blocked_threads_stop_new_attempts(tmp_path):
    sim, clock = SimCameraBackend(lambda: 18_000.0, seed=7), FakeClock()
    cam = make_camera(tmp_path, sim, clock, timeout_s=0.1)
    cam.max_abandoned = 1
    sim.hang()
    assert cam.capture().status == "hung"
    clock.t += 100
    r = cam.capture()  # the first thread is still blocked: no second one
    assert r.status == "hung" and "restart" in r.error and r.counters.abandoned == 1
    sim.release()


def test_storage_failure_is_an_error_not_an_exception(tmp_path):
    (tmp_path / "file").write_text("x")
    sim = SimCameraBackend(lambda: 1000.0)
    cam = Camera(sim.factory, still_dir=tmp_path / "file" / "stills", clock=FakeClock())
    r = cam.capture()
    assert r.status == "error" and "still directory" in r.error


# --- the Pi backend -----------------------------------------------------------------


def test_picamera2_missing_is_absent_with_install_hint(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import picamera2 -> ImportError
    with pytest.raises(CameraAbsent):
        Picamera2Backend()
    r = Camera(Picamera2Backend, still_dir=tmp_path, clock=FakeClock()).capture()
    assert r.status == "absent" and r.counters.absent == 1
    assert "sudo apt install python3-picamera2" in r.error and "--system-site-packages" in r.error
    assert "python3-picamera2" in INSTALL_HINT


def test_picamera2_backend_drives_the_library(tmp_path, monkeypatch):
    """A stand-in picamera2 module: the real backend code configures, sets the sky
    controls, starts, captures to the file and closes."""
    calls = []
    sim = SimCameraBackend(lambda: 30_000.0, seed=8).factory()

    class FakePicamera2:
        def __init__(self, num=0):
            calls.append(("open", num))

        def create_still_configuration(self, main=None, **kw):
            return {"main": main}

        def configure(self, config):
            calls.append(("configure", config))

        def set_controls(self, controls):
            calls.append(("controls", controls))

        def start(self):
            calls.append(("start", None))

        def capture_file(self, name):
            sim.capture(name)

        def stop(self):
            calls.append(("stop", None))

        def close(self):
            calls.append(("close", None))

    monkeypatch.setitem(sys.modules, "picamera2", types.SimpleNamespace(Picamera2=FakePicamera2))
    cam = Camera(lambda: Picamera2Backend(size=(640, 480), exposure_value=-1.5), still_dir=tmp_path, clock=FakeClock())
    r = cam.capture()
    assert r.status == "ok" and (r.width, r.height) == (640, 480)
    controls = dict(calls)["controls"]
    assert controls["ExposureValue"] == -1.5
    assert int(controls["AeExposureMode"]) == 1 and int(controls["AwbMode"]) == 5  # Short, Daylight
    assert ("start", None) in calls and dict(calls)["configure"] == {"main": {"size": (640, 480)}}
    assert set(sky_controls()) == {"AeEnable", "AeExposureMode", "ExposureValue", "AwbEnable", "AwbMode"}


def test_night_is_dark_and_twilight_in_between(tmp_path):
    day, dusk, night = (shoot(tmp_path, 20_000, sun_elevation_deg=e).mean() for e in (20.0, 0.0, -20.0))
    assert day > dusk > night and night < 10
