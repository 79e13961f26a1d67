"""The hour's airtime: the position beacon's share first, bulk from what is left, kept across restarts.

The duty cycle in force (`radio.duty_cycle` after loading: the band plan's, see
stratoecho/bandplan.py) allows `duty_cycle * 3600` seconds on air in any sliding hour.

* The beacon is reserved before anything else. A bulk frame (a record's fragment, a repair,
  a backlog sentence) may go only if every hour-long window it falls in still holds the
  beacons still to come in that window: `DutyBudget.bulk_wait_s` looks ahead, assuming the
  next beacon may come at any moment and one follows every beacon period. So a position
  sentence never waits behind airtime that bulk used; bulk waits instead (without holding
  the radio: the transmitter defers it and sends the next beacon meanwhile).
* The governor's transmit factor scales bulk: bulk may use `1/factor` of what the beacon
  leaves (survival: a quarter), nothing when the mode sheds it.
* The log of what went on air survives restarts (`AirtimeLog`, a small JSON file in the data
  directory, written before each frame is keyed), so a restarted payload cannot spend the
  same hour's budget twice.
* `beacon_plan` / `beacon_refusal`: a configuration whose beacon alone leaves less than
  `MIN_BULK_SHARE` of the budget is refused at load, with the numbers and what would fit.

Everything but `AirtimeLog` is pure: flight seconds in, decisions out.
"""

from __future__ import annotations

import json
import math
import os
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from stratoecho import bandplan, wire
from stratoecho.lora import UKHAS_MODES
from stratoecho.wire.horus import encode_horus
from stratoecho.wire.horus_l2 import air_s as horus_air_s
from stratoecho.wire.horus_v3 import encode_horus_v3

log = structlog.get_logger(__name__)

WINDOW_S = 3600.0
SIZING_KEY = wire.DownlinkAuth(bytes(32))  # signs sentences only to measure them: a tag's length is any key's
# The beacon may take at most this much less than the whole budget: events, health records,
# repairs and the persona's words need some air, or the ground hears positions and nothing
# else, not even that the payload is in trouble.
MIN_BULK_SHARE = 0.10


# ---------------------------------------------------------------------------- the sentence


def worst_sentence(callsign: str, telemetry_format: str = "ukhas") -> bytes:
    """The longest position frame this callsign is likely to send: every field present and at
    its longest (southern and western hemisphere, 5-digit altitude, a year of sentences), signed
    (the tag's field is as long under any key). Telemetry goes on air as it is
    (payload.link.frames.frames_for): no link framing is added."""
    t = wire.Telemetry(callsign=callsign, seq=999_999, time="23:59:59", lat=-89.99999, lon=-179.99999,
                       alt=49_999, sats=24, temp_c=-55.5, pressure_hpa=1013.2, batt_mv=12_600, boot=9_999)
    return wire.TELEMETRY_ENCODERS[telemetry_format](t, SIZING_KEY)


def horus_packet(t: wire.Telemetry, horus) -> bytes:
    """The Horus packet [radio.horus] (`horus`) keys for position `t`: v3, or v2 under its payload id."""
    if horus.format == "v2":
        return encode_horus(t, horus.payload_id)
    return encode_horus_v3(t)


def worst_horus_s(callsign: str, horus) -> float:
    """Seconds on air of the Horus 4FSK packet that follows a position sentence ([radio.horus],
    `horus`; None: no Horus, 0 s), at its longest. Counted with every sentence, even when only
    every Nth has one: the plan and the duty cycle then hold whichever sentence it follows."""
    if horus is None:
        return 0.0
    worst = wire.Telemetry(callsign, 65535, "23:59:59", -89.99999, -179.99999, 49999, 31, -55.5, 1013.2, 12600,
                           2**31 - 1)
    return horus_air_s(len(horus_packet(worst, horus)))


@dataclass(frozen=True)
class BeaconPlan:
    sentence_bytes: int
    sentence_s: float  # one sentence's time on air
    frame_s: float  # one full (mtu) bulk frame's time on air
    period_s: float  # seconds between sentences
    duty_cycle: float
    per_hour_s: float  # the beacon's airtime in an hour
    budget_s: float  # the hour's allowance

    @property
    def share(self) -> float:
        return self.per_hour_s / self.budget_s

    @property
    def bulk_room_s(self) -> float:
        """The least the beacon must leave: MIN_BULK_SHARE of the budget, and never less than one
        full frame (plus the one sentence the look-ahead keeps spare), or bulk could never move."""
        return max(MIN_BULK_SHARE * self.budget_s, self.frame_s + self.sentence_s)

    @property
    def fits(self) -> bool:
        return self.per_hour_s <= self.budget_s - self.bulk_room_s

    def shortest_period_s(self) -> float | None:
        """The shortest whole-second beacon interval that leaves `bulk_room_s`; None if even one
        sentence an hour does not."""
        n = math.floor((self.budget_s - self.bulk_room_s) / self.sentence_s)
        return math.ceil(WINDOW_S / n) if n >= 1 else None


def beacon_per_hour_s(sentence_s: float, period_s: float) -> float:
    """A sentence every `period_s`: at most ceil(3600/period) of them start in any hour."""
    return sentence_s * math.ceil(WINDOW_S / period_s - 1e-9)


def beacon_plan(radio, callsign: str, telemetry_format: str, period_s: float) -> BeaconPlan:
    """The beacon's airtime with `radio`'s settings (a `RadioSection`: the chip's own)."""
    n = len(worst_sentence(callsign, telemetry_format))
    s = radio.airtime_s(n) + worst_horus_s(callsign, radio.horus)  # its Horus packet with it
    return BeaconPlan(n, s, radio.airtime_s(radio.mtu), period_s, radio.duty_cycle, beacon_per_hour_s(s, period_s),
                      radio.duty_cycle * WINDOW_S)


def beacon_refusal(radio, callsign: str, telemetry_format: str, period_s: float) -> str | None:
    """Why this beacon cannot fly under this duty cycle, with what would fit; None when it can."""
    p = beacon_plan(radio, callsign, telemetry_format, period_s)
    if p.fits:
        return None
    modes = []
    rule = bandplan.RULES.get(radio.band_plan)
    for mode in UKHAS_MODES.values():
        if not mode.explicit_header or (rule is not None and not bandplan.fits(rule, mode.bandwidth_hz)):
            continue  # implicit-header modes carry fixed 255-byte packets: not a beacon
        air = mode.settings(radio.frequency_mhz or 434.0).airtime_s
        s = air(p.sentence_bytes)
        m = BeaconPlan(p.sentence_bytes, s, air(radio.mtu), period_s, p.duty_cycle, beacon_per_hour_s(s, period_s),
                       p.budget_s)
        if m.fits:
            modes.append(f"mode {mode.number} {mode.name} (SF{mode.spreading_factor}, {mode.bandwidth_hz / 1000:g} kHz, "
                         f"4/{mode.coding_rate}: {m.per_hour_s:.0f} s/h)")
    alternatives = "; ".join(modes) or "none of the UKHAS LoRa modes at this interval"
    shortest = p.shortest_period_s()
    interval = (f"schedule.telemetry_s >= {shortest:.0f} s" if shortest is not None
                else "no beacon interval at these radio settings")
    narrow = "" if radio.band_plan == "erc70-03-434-narrow" else (
        "; or fly under band_plan \"erc70-03-434-narrow\" (434.04-434.79 MHz, channel <= 25 kHz, 10 mW e.r.p.: "
        "no duty-cycle limit)")
    return (f"the position beacon alone needs {p.per_hour_s:.0f} s of air per hour ({p.sentence_bytes}-byte sentence, "
            f"{p.sentence_s:.2f} s on air at SF{radio.spreading_factor}/{radio.bandwidth_hz / 1000:g} kHz/"
            f"4/{radio.coding_rate}, every {period_s:g} s) against a budget of {p.budget_s:.0f} s "
            f"(duty cycle {p.duty_cycle:g} under band_plan {radio.band_plan!r}), which must keep "
            f"{p.bulk_room_s:.0f} s for everything else (10 % of it, and at least one {radio.mtu}-byte frame). "
            f"What would fit: {interval}; or at {period_s:g} s: {alternatives}{narrow}")


# ---------------------------------------------------------------------------- the budget


@dataclass
class DutyBudget:
    """Sliding-window duty cycle: at most `duty_cycle * window_s` seconds on air per window,
    the beacon's share reserved ahead of bulk. Pure: callers pass flight time in."""

    duty_cycle: float
    window_s: float = WINDOW_S
    _sent: deque = field(default_factory=deque)  # (start time, airtime, is beacon), in time order

    @property
    def allowance_s(self) -> float:
        return self.duty_cycle * self.window_s

    def _expire(self, now: float) -> None:
        while self._sent and self._sent[0][0] <= now - self.window_s:
            self._sent.popleft()

    def used(self, now: float) -> float:
        self._expire(now)
        return sum(e[1] for e in self._sent)

    def bulk_used(self, now: float) -> float:
        self._expire(now)
        return sum(a for _, a, beacon in self._sent if not beacon)

    def wait_s(self, now: float, airtime: float) -> float:
        """Seconds to wait before `airtime` more fits in the window (0 if it fits now): the law,
        whatever the frame. The beacon asks only this."""
        allowance = self.allowance_s
        if airtime > allowance:
            raise ValueError(f"one frame of {airtime:.2f} s exceeds the whole budget of {allowance:.2f} s")
        used = self.used(now)
        if used + airtime <= allowance:
            return 0.0
        excess = used + airtime - allowance  # wait until enough old transmissions leave the window
        for start, a, _ in self._sent:
            excess -= a
            if excess <= 0:
                return start + self.window_s - now
        return self.window_s

    def bulk_wait_s(self, now: float, airtime: float, beacon_s: float, beacon_period_s: float,
                    share: float | None = 1.0) -> float:
        """Seconds before a bulk frame of `airtime` may go (0: now; `window_s` when it may not go
        at all), keeping room for a beacon of `beacon_s` every `beacon_period_s` in every window
        this frame will be part of. `share` (the governor's 1/transmit factor, None: shed) limits
        bulk to that part of what the beacon leaves."""
        if share is None or share <= 0:
            return self.window_s
        self._expire(now)
        if share < 1.0:
            beacon_hour = beacon_per_hour_s(beacon_s, beacon_period_s)
            if self.bulk_used(now) + airtime > share * max(self.allowance_s - beacon_hour, 0.0):
                return self._next_expiry(now, bulk_only=True)
        if self._lookahead_fits(now, airtime, beacon_s, beacon_period_s):
            return 0.0
        return self._next_expiry(now)

    def _lookahead_fits(self, now: float, airtime: float, beacon_s: float, period_s: float) -> bool:
        # Each window holding `now` ends at some E in [now, now + window): it holds the frames sent
        # after E - window, this frame, and the beacons due in (now, E] - at most floor((E-now)/P)+1.
        # The fullest such windows end just before a past frame leaves: check each, and E = now.
        allowance = self.allowance_s + 1e-9
        frames = list(self._sent)
        total = sum(e[1] for e in frames)
        if total + airtime + beacon_s > allowance:
            return False
        tail = total
        for start, a, _ in frames:
            ahead = start + self.window_s - now  # the window ending just before this frame leaves
            beacons = math.floor(max(ahead, 0.0) / period_s) + 1
            if tail + airtime + beacons * beacon_s > allowance:
                return False
            tail -= a
        # A window ending after every past frame has left holds only this frame and the beacons.
        return airtime + beacon_per_hour_s(beacon_s, period_s) <= allowance

    def _next_expiry(self, now: float, bulk_only: bool = False) -> float:
        """Seconds until the oldest (bulk) transmission leaves the window: when to look again."""
        for start, _, beacon in self._sent:
            if not (bulk_only and beacon):
                return max(start + self.window_s - now, 1e-3)
        return self.window_s

    def record(self, now: float, airtime: float, beacon: bool = False) -> None:
        self._sent.append((now, airtime, beacon))

    def entries(self) -> list[tuple[float, float, bool]]:
        return list(self._sent)


# ---------------------------------------------------------------------------- persistence


class AirtimeLog:
    """What went on air in the last hour, in UTC seconds, in `path` (JSON, replaced atomically).

    Flight seconds restart with the process, UTC does not: entries are stored in UTC and turned
    back into this run's flight seconds at load. A log from the future (the clock stepped back,
    as a Pi without a real-time clock may after a reboot) counts as sent just now: the safe side.
    """

    def __init__(self, path: Path):
        self.path = Path(path)

    def load(self, now_utc: float, now_flight_s: float, window_s: float = WINDOW_S) -> list[tuple[float, float, bool]]:
        """Entries as (flight seconds, airtime, is beacon); raises ValueError naming the file if unreadable."""
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{self.path}: airtime log unreadable: {e}") from e
        try:
            rows = [(float(t), float(a), bool(b)) for t, a, b in data["frames"]]
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{self.path}: airtime log has no list of [utc, airtime_s, beacon] frames: {e!r}") from e
        out = []
        for t, a, b in rows:
            age = max(now_utc - t, 0.0)
            if age < window_s and math.isfinite(a) and a >= 0:
                out.append((now_flight_s - age, a, b))
        out.sort()
        return out

    def save(self, entries: Iterable[tuple[float, float, bool]], now_utc: float, now_flight_s: float,
             sync: bool = True) -> None:
        """Replace the log. A killed process loses nothing either way; `sync` also survives a power
        cut, at the cost of a flush the caller may spread out (an unreadable log after a cut is
        taken as bulk's whole share spent: the safe side)."""
        rows = [[round(now_utc - (now_flight_s - t), 3), round(a, 4), bool(b)] for t, a, b in entries]
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump({"version": 1, "frames": rows}, f)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, self.path)
