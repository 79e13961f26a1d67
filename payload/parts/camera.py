"""The camera: full stills kept on the SD card, a small thumbnail for the air.

The seam is a *backend factory*: a callable that opens the camera and returns an object
with two methods,

    capture(path) -> (width, height)   write one JPEG still to ``path``
    close()                           stop and release the camera

On the Pi the factory is ``Picamera2Backend`` (picamera2, imported lazily so the rest
of the payload imports anywhere); on the bench it is ``sim.world.camera.SimCameraBackend``'s
``factory``, which renders real JPEGs of a plausible view for the altitude.

Faults never raise out of ``Camera.capture()``. Every reading carries a ``status``:

    ok       still written, thumbnail made
    absent   the camera could not be opened (not connected, picamera2 missing, in use)
    hung     open or capture did not return within ``timeout_s``
    error    the capture raised, or the still it wrote is not a readable JPEG

and the running error counters. After any fault the backend is closed and re-created,
no earlier than the back-off policy allows (``stratoecho.backoff.Backoff``); in
between, ``capture()`` returns at once without touching the camera. Time for the
back-off comes from an injected monotonic clock; the only real waiting is the bounded
wait for the worker thread (at most ``timeout_s``).

Thumbnail: the still is resized to ``thumb_px`` on its long side and JPEG-encoded with
the quality lowered step by step (then the size reduced) until it fits
``thumb_max_bytes``, so it fits one image record (``stratoecho.wire.content``) on the
radio link. No EXIF, ICC profile or comment is written: only pixels go on the air.

Sources for the controls: libcamera ``control_ids.yaml`` (AeExposureMode: Normal 0,
Short 1; AwbMode: Daylight 5; ExposureValue: EV adjustment, float) and the picamera2
manual (``set_controls``, ``create_still_configuration``, ``capture_file``).
"""

from __future__ import annotations

import io
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import structlog
from PIL import Image

from stratoecho.backoff import Backoff

log = structlog.get_logger(__name__)

STATUSES = ("ok", "absent", "hung", "error")

INSTALL_HINT = (
    "picamera2 is not importable. It ships with Raspberry Pi OS, not PyPI: "
    "`sudo apt install python3-picamera2`, and create the payload's virtual environment "
    "with `python3 -m venv --system-site-packages .venv` so it can see the system package"
)


class CameraAbsent(RuntimeError):
    """The camera cannot be opened at all (library missing, no camera detected)."""


class CameraBackend(Protocol):
    def capture(self, path: Path) -> tuple[int, int]: ...
    def close(self) -> None: ...


# --- the Pi backend ---------------------------------------------------------------

# libcamera enum values, used when ``libcamera.controls`` enums cannot be imported.
AE_EXPOSURE_MODE_SHORT = 1
AWB_MODE_DAYLIGHT = 5


def sky_controls(exposure_value: float = -1.0) -> dict:
    """Controls for a bright stratospheric sky: the sun, white cloud tops and a black
    sky share the frame, so favour short exposures (highlights kept) and pull the
    auto-exposure target down by ``exposure_value`` EV; the light is direct sunlight
    above the weather, so white balance is fixed to daylight instead of hunting."""
    try:
        from libcamera import controls as lc  # present wherever picamera2 is

        ae_short = lc.AeExposureModeEnum.Short
        awb_daylight = lc.AwbModeEnum.Daylight
    except Exception:  # noqa: BLE001 - any failure: fall back to the enum values
        ae_short, awb_daylight = AE_EXPOSURE_MODE_SHORT, AWB_MODE_DAYLIGHT
    return {
        "AeEnable": True,
        "AeExposureMode": ae_short,
        "ExposureValue": float(exposure_value),
        "AwbEnable": True,
        "AwbMode": awb_daylight,
    }


class Picamera2Backend:
    """picamera2 on Raspberry Pi OS. The constructor opens, configures and starts the
    camera; it raises ``CameraAbsent`` when picamera2 is missing and whatever picamera2
    raises when no camera is detected (``Camera`` reports both as "absent")."""

    def __init__(self, *, size: tuple[int, int] | None = None, exposure_value: float = -1.0, camera_num: int = 0):
        try:
            from picamera2 import Picamera2
        except ImportError as exc:
            raise CameraAbsent(INSTALL_HINT) from exc
        cam = Picamera2(camera_num)
        try:
            cam.configure(cam.create_still_configuration(main={"size": size} if size else {}))
            cam.set_controls(sky_controls(exposure_value))
            cam.start()
        except BaseException:
            cam.close()
            raise
        self._cam = cam

    def capture(self, path: Path) -> tuple[int, int]:
        self._cam.capture_file(str(path))  # format from the extension: JPEG
        with Image.open(path) as im:
            return im.size

    def close(self) -> None:
        try:
            self._cam.stop()
        finally:
            self._cam.close()


# --- readings and counters --------------------------------------------------------


@dataclass
class CameraCounters:
    captures: int = 0  # capture() calls
    ok: int = 0
    absent: int = 0
    hung: int = 0
    errors: int = 0
    reinits: int = 0  # successful opens, the first included
    skipped: int = 0  # calls answered during back-off without touching the camera
    abandoned: int = 0  # worker threads left blocked in the camera driver
    thumb_failures: int = 0  # stills whose thumbnail could not be made to fit


@dataclass
class CameraReading:
    status: str
    still_path: str | None
    thumbnail_jpeg: bytes | None
    width: int | None
    height: int | None
    error: str
    counters: CameraCounters


def make_thumbnail(image: Image.Image, thumb_px: int, max_bytes: int, *, min_px: int = 32) -> bytes | None:
    """JPEG of ``image`` with its long side ``thumb_px``, at the highest quality in a
    falling ladder that fits ``max_bytes``; if even the lowest does not fit, the size is
    reduced by a quarter and the ladder tried again, down to ``min_px``. None if
    nothing fits. Nothing but pixels is written (no EXIF / ICC / comment)."""
    rgb = image.convert("RGB")
    px = thumb_px
    while px >= min_px:
        thumb = rgb.copy()
        thumb.thumbnail((px, px), Image.Resampling.LANCZOS)
        for quality in (85, 75, 65, 55, 45, 35, 25, 18, 12, 8, 5):
            buf = io.BytesIO()
            thumb.save(buf, "JPEG", quality=quality, optimize=True)
            if buf.tell() <= max_bytes:
                return buf.getvalue()
        px = int(px * 0.75)
    return None


# --- the camera -------------------------------------------------------------------


class _Job:
    """One open-and/or-capture attempt run on a worker thread."""

    def __init__(self):
        self.done = threading.Event()
        self.abandoned = False
        self.backend: CameraBackend | None = None
        self.stage = "open"
        self.size: tuple[int, int] | None = None
        self.exc: BaseException | None = None


def _close_quietly(backend: CameraBackend | None) -> None:
    """Close on a daemon thread and do not wait: closing a hung camera may hang too."""
    if backend is None:
        return

    def run():
        try:
            backend.close()
        except Exception:  # noqa: BLE001 - a failing close must not matter
            pass

    threading.Thread(target=run, name="camera-close", daemon=True).start()


STILL_RE = re.compile(r"^img_(\d{6})\.jpg$")


def stills_to_prune(stills: list[tuple[str, int]], max_bytes: int) -> list[str]:
    """Which stills to delete so that those kept take at most `max_bytes`: the oldest first
    (the lowest number), never the newest one. `stills` is (name, size in bytes)."""
    ordered = sorted(stills, key=lambda s: int(m.group(1)) if (m := STILL_RE.match(s[0])) else -1)
    total = sum(size for _, size in ordered)
    out = []
    for name, size in ordered[:-1]:
        if total <= max_bytes:
            break
        out.append(name)
        total -= size
    return out


class Camera:
    """Stills to ``still_dir`` (kept), a thumbnail for the radio, faults as statuses."""

    max_abandoned = 2  # capture threads left hung at once before the camera is given up as hung

    def __init__(
        self,
        backend_factory: Callable[[], CameraBackend],
        *,
        still_dir: str | Path,
        thumb_px: int = 160,
        thumb_max_bytes: int = 6000,
        timeout_s: float = 10.0,
        backoff: Backoff = Backoff(initial_s=5.0, factor=2.0, max_s=300.0),
        clock: Callable[[], float] = time.monotonic,
        flight_clock=None,
    ):
        self.backend_factory = backend_factory
        self.still_dir = Path(still_dir)
        self.thumb_px = thumb_px
        self.thumb_max_bytes = thumb_max_bytes
        self.timeout_s = timeout_s
        self.backoff = backoff
        self.clock = clock
        self.flight_clock = flight_clock  # the capture thread and its timeout run on it (flight seconds)
        self.counters = CameraCounters()
        self._backend: CameraBackend | None = None
        self._abandoned: list[threading.Thread] = []
        self._consecutive_faults = 0
        self._next_attempt_at = float("-inf")
        self._last_fault = "absent"
        self._seq: int | None = None
        self.last_exc: BaseException | None = None  # what the last failed capture raised

    # -- bookkeeping --

    def _reading(self, status, error="", still=None, thumb=None, size=(None, None)) -> CameraReading:
        return CameraReading(status, still, thumb, size[0], size[1], error, CameraCounters(**vars(self.counters)))

    def _fault(self, status: str, error: str, still: str | None = None) -> CameraReading:
        counter = {"error": "errors"}.get(status, status)
        setattr(self.counters, counter, getattr(self.counters, counter) + 1)
        self._last_fault = status
        self._consecutive_faults += 1
        self._next_attempt_at = self.clock() + self.backoff.delay_s(self._consecutive_faults)
        if self._backend is not None:
            _close_quietly(self._backend)
            self._backend = None
        return self._reading(status, error, still)

    def _next_path(self) -> Path:
        if self._seq is None:  # continue after the highest still already on the card
            nums = [int(m.group(1)) for p in self.still_dir.iterdir() if (m := STILL_RE.match(p.name))]
            self._seq = max(nums, default=0)
        self._seq += 1
        return self.still_dir / f"img_{self._seq:06d}.jpg"

    # -- the capture --

    def capture(self) -> CameraReading:
        self.counters.captures += 1
        refused = self._refuse_while_faulty()
        if refused is not None:
            return refused
        try:
            self.still_dir.mkdir(parents=True, exist_ok=True)
            final = self._next_path()
        except OSError as exc:
            return self._fault("error", f"still directory: {exc}")
        part = final.with_name(final.stem + ".part.jpg")
        self.last_exc = None

        job, worker = self._start_worker(part)
        if not job.done.wait(self.timeout_s):
            job.abandoned = True
            self._abandoned.append(worker)
            self.counters.abandoned += 1
            self._backend = job.backend  # closed by _fault (quietly, not waited for)
            return self._fault("hung", f"{job.stage} did not return within {self.timeout_s:g} s")

        if job.exc is not None:
            self.last_exc = job.exc  # the daemon tells a full card (ENOSPC) from a failing camera
            if job.stage == "open":
                return self._fault("absent", f"{type(job.exc).__name__}: {job.exc}")
            self._backend = job.backend
            self._discard(part)  # a still cut short by a full card is only taking space
            return self._fault("error", f"capture: {type(job.exc).__name__}: {job.exc}")
        if self._backend is None:
            self._backend = job.backend
            self.counters.reinits += 1
        return self._keep_still(part, final)

    def _refuse_while_faulty(self) -> CameraReading | None:
        """A reading without touching the camera while the back-off runs, or a fault when too
        many capture threads are still blocked in the driver; None: go ahead."""
        if self._backend is None and self.clock() < self._next_attempt_at:
            self.counters.skipped += 1
            return self._reading(self._last_fault, "waiting for back-off")
        self._abandoned = [t for t in self._abandoned if t.is_alive()]
        if len(self._abandoned) >= self.max_abandoned:
            # Each blocked thread still holds a handle in the driver; do not pile up more.
            return self._fault("hung", f"{len(self._abandoned)} capture threads still blocked in the driver; "
                                       "the camera process needs a restart")
        return None

    def _start_worker(self, part: Path) -> tuple[_Job, threading.Thread]:
        """Open the camera if needed and capture to ``part``, on a worker thread: the caller
        waits on the job's ``done`` at most ``timeout_s``."""
        job = _Job()
        if self.flight_clock is not None:
            job.done = self.flight_clock.event()
        job.backend = self._backend
        factory = self.backend_factory

        def work():
            try:
                if job.backend is None:
                    backend = factory()
                    job.backend = backend
                    if job.abandoned:  # opened too late: nobody will use it
                        _close_quietly(backend)
                        return
                job.stage = "capture"
                job.size = job.backend.capture(part)
            except BaseException as exc:  # noqa: BLE001 - reported as a status
                job.exc = exc
            finally:
                job.done.set()

        # Why abandoning a hung thread is safe enough: it is a daemon thread, so it never
        # keeps the process alive; it only touches its own Job, its own ``.part.jpg`` path
        # and the backend object it was given, which this class forgets (and closes on
        # another daemon thread) before opening a new one. What it cannot undo is a driver
        # wedged in the kernel (libcamera / V4L2), which may also make the re-open fail:
        # that shows as "absent"/"hung" with growing back-off, ``max_abandoned`` bounds the
        # leaked threads, and on the Pi the fallback is the process level: systemd's
        # watchdog (WatchdogSec, fed only while captures succeed) or the daemon's own
        # supervisor restarts the camera process, which frees the device.
        if self.flight_clock is not None:
            worker = self.flight_clock.thread(work, "camera-capture")
        else:
            worker = threading.Thread(target=work, name="camera-capture", daemon=True)
            worker.start()
        return job, worker

    def _keep_still(self, part: Path, final: Path) -> CameraReading:
        """The captured still under its final name, read back, and its thumbnail for the air."""
        try:
            part.replace(final)
            with Image.open(final) as im:
                im.load()
                size = im.size
                thumb = make_thumbnail(im, self.thumb_px, self.thumb_max_bytes)
        except Exception as exc:  # noqa: BLE001 - OSError, PIL's UnidentifiedImageError ...
            self.last_exc = exc
            return self._fault("error", f"still unreadable: {type(exc).__name__}: {exc}", str(final))
        self._consecutive_faults = 0
        self.counters.ok += 1
        error = ""
        if thumb is None:
            self.counters.thumb_failures += 1
            error = f"no thumbnail fits {self.thumb_max_bytes} bytes"
        return self._reading("ok", error, str(final), thumb, size)

    @staticmethod
    def _discard(path: Path) -> None:
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass  # a card that refuses even this keeps the fragment; the budget counts only whole stills

    def prune_stills(self, max_bytes: int) -> list[str]:
        """Delete the oldest stills until those kept take at most `max_bytes` (docs/storage.md,
        "Stills"); returns the names deleted. The newest still is always kept."""
        try:
            stills = [(p.name, p.stat().st_size) for p in self.still_dir.iterdir() if STILL_RE.match(p.name)]
        except OSError:
            return []  # no folder yet: nothing kept, nothing to prune
        gone = []
        for name in stills_to_prune(stills, max_bytes):
            try:
                (self.still_dir / name).unlink()
                gone.append(name)
            except FileNotFoundError:
                pass
            except OSError as exc:  # a card gone read-only: counted by the next capture's fault, not here
                log.warning("still_not_pruned", still=name, error=str(exc))
        return gone

    def close(self) -> None:
        """Release the camera (not waited for if the driver hangs)."""
        if self._backend is not None:
            _close_quietly(self._backend)
            self._backend = None
