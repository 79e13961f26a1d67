"""Band-plan rules the transmitter may fly under: where it may transmit, how strongly, how wide and how often.

Pure data and checks, no I/O. The duty cycle in force is a property of the rule the
configuration names (`radio.band_plan`), not a constant: the same radio may be limited to
10 % of each hour at one frequency and unlimited at another. docs/deploy.md explains how
to choose a rule; its sources are named in each rule.

The licence-exempt 433 MHz entries are those of CEPT ERC Recommendation 70-03, Annex 1
(non-specific short range devices). National rules implement it, sometimes with
differences (the UK's is IR 2030): check the rule of the country you fly over. A
radio amateur's licence has its own conditions: `band_plan = "licensed"`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

ERC_70_03 = "CEPT ERC Recommendation 70-03, Annex 1 (non-specific short range devices)"


class BandPlanError(ValueError):
    """A radio setting the named rule does not allow; the message has the numbers."""


@dataclass(frozen=True)
class BandRule:
    id: str
    low_mhz: float  # the band's edges: the whole channel must lie inside them
    high_mhz: float
    max_erp_mw: float  # effective radiated power
    max_channel_hz: float | None  # widest channel allowed (None: any that fits the band)
    min_channel_hz: float | None  # narrowest (the wideband entry is for wide modulation only)
    duty_cycle: float | None  # share of any hour on air; None: no limit
    source: str
    note: str = ""


RULES: dict[str, BandRule] = {r.id: r for r in (
    BandRule("erc70-03-433", 433.050, 434.790, 10.0, None, None, 0.10, ERC_70_03,
             "the whole band at 10 mW e.r.p., any channel width, at most 10 % of each hour"),
    BandRule("erc70-03-434-narrow", 434.040, 434.790, 10.0, 25_000.0, None, None, ERC_70_03,
             "the upper part at 10 mW e.r.p. in a channel of 25 kHz or less, with no duty-cycle limit: "
             "why the UKHAS LoRa modes for telemetry run at 20.8 kHz"),
    # Power density -13 dBm/10 kHz as well as 1 mW in all; meant for modulation wider than 250 kHz
    # (for LoRa: 500 kHz). A narrow LoRa channel gains nothing here over the two rules above.
    BandRule("erc70-03-433-wideband", 433.050, 434.790, 1.0, None, 250_000.0, None, ERC_70_03,
             "the whole band at 1 mW e.r.p. (and -13 dBm/10 kHz) for modulation wider than 250 kHz"),
    BandRule("erc70-03-869.4", 869.400, 869.650, 500.0, 250_000.0, None, 0.10, ERC_70_03,
             "869.40-869.65 MHz at 500 mW e.r.p., at most 10 % of each hour (or LBT with AFA, "
             "which this transmitter does not do)"),
)}

# Not rules of a band: the operator answers for what the radio does, with an explicit duty_cycle.
CUSTOM, LICENSED = "custom", "licensed"
OWN_RULES = (CUSTOM, LICENSED)


def rule(name: str) -> BandRule:
    try:
        return RULES[name]
    except KeyError:
        raise BandPlanError(f"unknown band plan {name!r}; known: {', '.join([*RULES, *OWN_RULES])}") from None


def check(r: BandRule, frequency_mhz: float | None, bandwidth_hz: float, erp_mw: float) -> None:
    """Raise BandPlanError, naming the key and the numbers, if the radio breaks rule `r`."""
    if frequency_mhz is None:
        raise BandPlanError(f"band_plan {r.id!r} needs frequency_mhz (the carrier, inside "
                            f"{r.low_mhz:.3f}-{r.high_mhz:.3f} MHz)")
    half_mhz = bandwidth_hz / 2 / 1e6
    lo, hi = frequency_mhz - half_mhz, frequency_mhz + half_mhz
    if lo < r.low_mhz - 1e-9 or hi > r.high_mhz + 1e-9:
        raise BandPlanError(
            f"frequency_mhz {frequency_mhz:.4f} with bandwidth_hz {bandwidth_hz:g} occupies "
            f"{lo:.4f}-{hi:.4f} MHz, outside {r.id}'s {r.low_mhz:.3f}-{r.high_mhz:.3f} MHz")
    if r.max_channel_hz is not None and bandwidth_hz > r.max_channel_hz:
        raise BandPlanError(f"bandwidth_hz {bandwidth_hz:g} is wider than {r.id}'s {r.max_channel_hz:g} Hz channel")
    if r.min_channel_hz is not None and bandwidth_hz <= r.min_channel_hz:
        raise BandPlanError(f"bandwidth_hz {bandwidth_hz:g}: {r.id} is for channels wider than {r.min_channel_hz:g} Hz")
    if erp_mw > r.max_erp_mw + 1e-9:
        raise BandPlanError(f"erp_mw {erp_mw:g} is above {r.id}'s {r.max_erp_mw:g} mW e.r.p.")


def effective_duty_cycle(r: BandRule | None, explicit: float | None) -> float:
    """The share of each hour the transmitter may be on: the rule's, or the configured one,
    which may only be stricter. Under `custom` or `licensed` (r None) the configured one."""
    if r is None:
        if explicit is None:
            raise BandPlanError("duty_cycle must be given when band_plan is custom or licensed (1.0 for no limit)")
        return explicit
    limit = 1.0 if r.duty_cycle is None else r.duty_cycle
    if explicit is None:
        return limit
    if explicit > limit + 1e-12:
        raise BandPlanError(f"duty_cycle {explicit:g} is above {r.id}'s {limit:g}: it may only be stricter")
    return explicit


def fits(r: BandRule, bandwidth_hz: float) -> bool:
    """A LoRa bandwidth the rule allows (for suggestions: frequency and power are the operator's)."""
    return ((r.max_channel_hz is None or bandwidth_hz <= r.max_channel_hz)
            and (r.min_channel_hz is None or bandwidth_hz > r.min_channel_hz)
            and bandwidth_hz / 1e6 <= r.high_mhz - r.low_mhz + 1e-12 and math.isfinite(bandwidth_hz))
