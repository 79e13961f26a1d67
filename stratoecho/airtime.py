"""LoRa time on air, from Semtech's SX127x datasheet formula (pure arithmetic)."""

from __future__ import annotations

import math


def lora_airtime_s(
    payload_bytes: int,
    sf: int = 11,
    bw_hz: float = 20_800,
    cr: int = 8,
    preamble: int = 8,
    explicit_header: bool = True,
    crc: bool = True,
    low_data_rate_optimize: bool | None = None,
) -> float:
    """Seconds on air for one LoRa packet.

    `cr` is the denominator of the coding rate 4/cr (5..8). Low data rate
    optimisation is switched on, as the radio requires, when a symbol lasts
    longer than 16 ms, unless given explicitly.
    """
    if not 6 <= sf <= 12:
        raise ValueError(f"spreading factor {sf} outside 6..12")
    if not 5 <= cr <= 8:
        raise ValueError(f"coding rate 4/{cr}: denominator must be 5..8")
    if not 0 <= payload_bytes <= 255:
        raise ValueError(f"LoRa payload of {payload_bytes} bytes outside 0..255")
    t_sym = (2**sf) / bw_hz
    if low_data_rate_optimize is None:
        low_data_rate_optimize = t_sym > 0.016
    de = 1 if low_data_rate_optimize else 0
    ih = 0 if explicit_header else 1
    num = 8 * payload_bytes - 4 * sf + 28 + (16 if crc else 0) - 20 * ih
    n_payload = 8 + max(math.ceil(num / (4 * (sf - 2 * de))) * cr, 0)
    t_preamble = (preamble + 4.25) * t_sym
    return t_preamble + n_payload * t_sym
