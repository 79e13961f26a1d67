"""The International Standard Atmosphere up to 47 km (pure functions, SI units in the names): the
bench flies in it, and the ground station's landing prediction lets a parachute fall through it."""

from __future__ import annotations

import math

G0 = 9.80665  # m/s²
R_AIR = 287.053  # J/(kg·K)
# (base altitude m, base temperature K, lapse rate K/m) for each layer.
_LAYERS = (
    (0.0, 288.15, -0.0065),
    (11_000.0, 216.65, 0.0),
    (20_000.0, 216.65, 0.001),
    (32_000.0, 228.65, 0.0028),
)
_P0 = 101_325.0


def _base_pressures() -> list[float]:
    pressures = [_P0]
    for (h0, t0, lapse), (h1, _, _) in zip(_LAYERS, _LAYERS[1:]):
        pressures.append(_layer_pressure(pressures[-1], t0, lapse, h1 - h0))
    return pressures


def _layer_pressure(p0: float, t0: float, lapse: float, dh: float) -> float:
    if lapse == 0.0:
        return p0 * math.exp(-G0 * dh / (R_AIR * t0))
    return p0 * (1 + lapse * dh / t0) ** (-G0 / (R_AIR * lapse))


_BASE_P = _base_pressures()


def _layer(alt_m: float) -> int:
    alt_m = max(alt_m, 0.0)
    for i in range(len(_LAYERS) - 1, -1, -1):
        if alt_m >= _LAYERS[i][0]:
            return i
    return 0


def temperature_k(alt_m: float) -> float:
    h0, t0, lapse = _LAYERS[_layer(alt_m)]
    return t0 + lapse * (max(alt_m, 0.0) - h0)


def pressure_pa(alt_m: float) -> float:
    i = _layer(alt_m)
    h0, t0, lapse = _LAYERS[i]
    return _layer_pressure(_BASE_P[i], t0, lapse, max(alt_m, 0.0) - h0)


def density_kg_m3(alt_m: float) -> float:
    return pressure_pa(alt_m) / (R_AIR * temperature_k(alt_m))
