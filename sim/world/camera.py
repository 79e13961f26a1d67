"""Simulated camera: real JPEGs of a plausible view from a balloon, with fault switches.

``SimCameraBackend`` has the interface of ``payload.parts.camera.Picamera2Backend``
(``capture(path) -> (width, height)``, ``close()``); its ``factory`` method stands for
the Picamera2Backend constructor and is what ``payload.parts.camera.Camera`` is given:

    sim = SimCameraBackend(lambda: world.altitude_m, seed=1)
    camera = Camera(sim.factory, still_dir=...)

The view (a level pinhole camera, Camera Module v2-like field of view 62.2 x 48.8 deg):

* Sky: pale blue at the ground, darkening to near black above ~30 km. Rayleigh
  scattering intuition: the sky's brightness comes from the air above you scattering
  sunlight, and that air column falls off roughly as exp(-h / 7.6 km) (the scale
  height), so at 30 km only ~2 % of it is left. Near the horizon the line of sight
  crosses much more air, so a thin bright blue limb remains at any height.
* Horizon: dips below level by acos(R / (R + h)), R = 6371 km (about 5.6 deg at 30 km).
  A circle of constant elevation seen through a level pinhole projects as
  y = f tan(e) / cos(azimuth), so the dipped horizon is lower at the image edges than
  at the centre: it bows up in the middle, more with altitude.
* Ground: a seeded green/brown texture fixed to the ground plane, white cloud blobs
  over it, both fading into haze with distance (aerial perspective).
* Sun: an overexposed disk with a glow, when it is above the horizon and in the frame.

Faults: ``unplug()`` makes ``factory()`` and ``capture()`` raise RuntimeError (as
picamera2 does when no camera is detected / the camera drops off); ``plug()`` ends it.
``hang()`` makes ``capture()`` block until ``release()``.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from .sun import horizon_dip_deg

SCALE_HEIGHT_M = 7_600.0
_BAND_ROWS = 16  # rows rendered at a time: ~5 MB of temporaries, no slower


def daylight(sun_elevation_deg: float) -> float:
    """How much light the scene has: full above 6 degrees, fading through civil twilight,
    a little starlight and skyglow below -6 (the auto exposure cannot make up for night)."""
    return min(1.0, max(0.03, (sun_elevation_deg + 6.0) / 12.0))


def _sample(grid: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Bilinear sample of a tiling grid at (u, v) in cell units."""
    n = grid.shape[0]
    u0, v0 = np.floor(u), np.floor(v)
    fu, fv = u - u0, v - v0
    fu, fv = fu * fu * (3 - 2 * fu), fv * fv * (3 - 2 * fv)  # smoothstep
    i0, j0 = u0.astype(np.int64) % n, v0.astype(np.int64) % n
    i1, j1 = (i0 + 1) % n, (j0 + 1) % n
    a = grid[j0, i0] * (1 - fu) + grid[j0, i1] * fu
    b = grid[j1, i0] * (1 - fu) + grid[j1, i1] * fu
    return a * (1 - fv) + b * fv


def _fbm(grids: list[np.ndarray], u: np.ndarray, v: np.ndarray) -> np.ndarray:
    out = np.zeros_like(u)
    amp, total = 1.0, 0.0
    for k, g in enumerate(grids):
        out += amp * _sample(g, u * 2**k, v * 2**k)
        total += amp
        amp *= 0.5
    return out / total


class SimCameraBackend:
    HFOV_DEG = 62.2  # the vertical field (48.8 deg) follows from the frame's shape

    def __init__(
        self,
        altitude_m: Callable[[], float],
        *,
        sun_elevation_deg: float = 12.0,
        sun_azimuth_deg: float = 18.0,  # relative to where the camera points
        size: tuple[int, int] = (640, 480),
        quality: int = 90,
        seed: int = 0,
        event: Callable[[], threading.Event] = threading.Event,
    ):
        self.altitude_m = altitude_m
        self.sun_elevation_deg = sun_elevation_deg
        self.sun_azimuth_deg = sun_azimuth_deg
        self.size = size
        self.quality = quality
        self._rng = np.random.default_rng(seed)
        self._ground = [self._rng.random((64, 64)) for _ in range(4)]  # value noise, four octaves
        self._cloud = [self._rng.random((64, 64)) for _ in range(4)]
        self._lock = threading.Lock()
        self._unplugged = False
        self._event = event  # the bench clock's events: a hung capture waits on flight time
        self._release = event()
        self._release.set()
        self.is_open = False
        self.opens = 0
        self.closes = 0
        self.captures = 0

    # -- fault switches --

    def unplug(self) -> None:
        self._unplugged = True

    def plug(self) -> None:
        self._unplugged = False

    def hang(self) -> None:
        with self._lock:
            self._release = self._event()

    def release(self) -> None:
        with self._lock:
            self._release.set()

    # -- the backend interface --

    def factory(self) -> "SimCameraBackend":
        """Stands for ``Picamera2Backend(...)``: open, configure, start."""
        if self._unplugged:
            raise RuntimeError("no cameras detected (simulated: unplugged)")
        self.is_open = True
        self.opens += 1
        return self

    def close(self) -> None:
        self.is_open = False
        self.closes += 1

    def capture(self, path: Path) -> tuple[int, int]:
        with self._lock:
            release = self._release
        release.wait()  # blocks while hung
        if self._unplugged:
            raise RuntimeError("camera frontend has timed out (simulated: unplugged)")
        if not self.is_open:
            raise RuntimeError("camera is not started")
        h = float(self.altitude_m())
        img = Image.fromarray(self.render(h))
        exif = Image.Exif()
        exif[0x010F] = "stratoecho"  # Make
        exif[0x0110] = "sim camera"  # Model
        exif[0x010E] = f"simulated view at {h:.0f} m"  # ImageDescription
        img.save(path, "JPEG", quality=self.quality, exif=exif.tobytes())
        self.captures += 1
        return img.size

    # -- rendering --

    def render(self, altitude_m: float) -> np.ndarray:
        """RGB uint8 array (height, width, 3) of the view from ``altitude_m``."""
        w, hgt = self.size
        h = max(2.0, float(altitude_m))
        f = (w / 2) / math.tan(math.radians(self.HFOV_DEG / 2))
        x = (np.arange(w) - (w - 1) / 2) / f
        y = (np.arange(hgt) - (hgt - 1) / 2) / f  # downwards
        out = np.empty((hgt, w, 3), np.uint8)
        # In bands of rows: every step is per pixel and the noise is drawn in the same order, so
        # the frame is the same, but a whole frame's float64 temporaries (up to ~90 MB at 640x480)
        # would land in the payload's memory, where the bench runs its camera.
        for top in range(0, hgt, _BAND_ROWS):
            out[top:top + _BAND_ROWS] = self._render_band(x, y[top:top + _BAND_ROWS], h)
        return out

    def _render_band(self, x: np.ndarray, y: np.ndarray, h: float) -> np.ndarray:
        X, Y = np.meshgrid(x, y)
        norm = np.sqrt(X * X + Y * Y + 1.0)
        dx, dy, dz = X / norm, -Y / norm, 1.0 / norm  # unit direction, dy up
        elev = np.arcsin(dy)
        dip = math.radians(horizon_dip_deg(h))
        above = elev - (-dip)  # angle above the (dipped) horizon
        sky_mask = above >= 0

        air = math.exp(-h / SCALE_HEIGHT_M)  # fraction of the air column still above

        # Sky: pale blue low, deeper at zenith; scaled by the air above; a limb glow.
        t = np.clip(above / (math.pi / 2), 0, 1)[..., None]
        low = np.array([175.0, 205.0, 235.0])
        high = np.array([95.0, 145.0, 225.0])
        sky = (low * (1 - t) + high * t) * (air ** 0.8)
        limb = math.exp(-h / 40_000.0) * (1 - air ** 0.8)
        sky += np.array([120.0, 165.0, 235.0]) * limb * np.exp(-np.maximum(above, 0) / math.radians(2.5))[..., None]

        # Sun: overexposed core and glow, only in the sky.
        se, sa = math.radians(self.sun_elevation_deg), math.radians(self.sun_azimuth_deg)
        sun = np.array([math.cos(se) * math.sin(sa), math.sin(se), math.cos(se) * math.cos(sa)])
        ang = np.arccos(np.clip(dx * sun[0] + dy * sun[1] + dz * sun[2], -1, 1))
        glow = np.where(ang < math.radians(1.2), 1.0, 0.0) + 0.6 * np.exp(-ang / math.radians(4.0))
        sky += 255.0 * glow[..., None]

        # Ground: where the line of sight meets a flat ground h below (flat-earth
        # distances are fine for texture; the horizon itself is the curved-earth dip).
        down = np.maximum(-dy, 1e-4)
        dist = h / down
        gx, gz = dx * dist, dz * dist
        land = _fbm(self._ground, gx / 3000.0, gz / 3000.0)[..., None]
        green = np.array([60.0, 105.0, 45.0])
        brown = np.array([135.0, 110.0, 70.0])
        ground = green * (1 - land) + brown * land
        cloud = np.clip((_fbm(self._cloud, gx / 9000.0 + 17.0, gz / 9000.0) - 0.55) * 6.0, 0, 1)[..., None]
        ground = ground * (1 - cloud) + np.array([240.0, 240.0, 245.0]) * cloud
        haze = (1 - np.exp(-dist / 60_000.0))[..., None] * (0.25 + 0.5 * air)
        ground = ground * (1 - haze) + np.array([185.0, 205.0, 230.0]) * haze

        img = np.where(sky_mask[..., None], sky, ground) * daylight(self.sun_elevation_deg)
        img += self._rng.normal(0.0, 2.0, img.shape)  # sensor noise
        return np.clip(img, 0, 255).astype(np.uint8)
