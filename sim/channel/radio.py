"""The radio path between the payload and its ground stations, as pure logic of flight time.

No sockets, no clocks: `sim/bench/run/relay.py` feeds it frames with their flight time and sends
what it hands back. For each frame and each station, in this order:

1. **outage** — a configured flight-time window in which nothing passes either way;
2. **horizon** — past the radio horizon with 4/3-Earth refraction,
   d ≈ 4.12·(√h1 + √h2) km (h in metres above ground), nothing gets through;
   **terrain** — below the station's `mask_deg` of elevation (hills, buildings; `--station
   NAME:LAT:LON:ALT_M:MASK_DEG`), nothing either, counted apart from the horizon as its own
   loss reason "terrain"; a mask of 0 (the default) is never checked;
3. **margin** — received power (TX dBm + gains − free-space path loss) against the LoRa
   receiver's sensitivity for the mode (−174 dBm/Hz + 10·log10 BW + noise figure + the
   SX127x demodulator's SNR limit for the SF). The frame is lost with probability
   1 / (1 + exp(margin / fade_width_db)): a coin toss at zero margin, rare a few dB above;
4. **burst** — Gilbert–Elliott fading on top (`sim/channel/loss.py`; the old `--loss`);
5. surviving frames get **bit errors** (a floor plus a BER that climbs as the margin
   shrinks), may be **duplicated** (a second copy a little later) or **reordered**
   (held back and handed out after the next frame on the air).

Uplink frames pass the same outage/horizon/terrain/margin/burst checks on their station's own
streams, plus **half duplex**: a frame arriving while the payload transmits (each downlink
frame keys the radio for its LoRa time on air, `stratoecho.airtime`) is lost.

A frame a station hears may still be lost to a **collision** with another payload's frame
(`LOSS_REASONS` counts it; only `sim/channel/fleet.py`, several payloads on one channel, causes one).

**One frame, its own mode**: the flight's `LoRaMode` prices a bare frame. A frame a simulated chip
keyed comes with the settings it was keyed with (sim/chips/air.py: a payload may send SSDV in UKHAS
mode 1 and positions in mode 0 on another frequency, reprogramming its chip between them), and
those give its time on air (half duplex, when the ground has it) and the sensitivity its margin is
measured against. The ground stations stand for a gateway listening on every channel the payload
uses, so they hear either; path loss stays at the configured `freq_mhz`.

Every station draws from its own random streams, seeded from (seed, station, purpose), so
adding a station changes nobody else's losses. Station 0 keeps the historic Gilbert–Elliott
seeds (`seed` down, `seed ^ UPLINK_SEED` up) so flights seeded before this module look the same.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from stratoecho import geo
from stratoecho.airtime import lora_airtime_s

from .loss import GilbertElliott, LossSpec

if TYPE_CHECKING:  # the channel stays pure logic: it only reads a frame's settings
    from ..chips.air import AirSettings

EARTH_RADIUS_KM = 6371.0
UPLINK_SEED = 0x55504C4B  # "UPLK": mixed into the seed for the uplink's own loss stream
# SX127x demodulator SNR limits (dB) by spreading factor, from the datasheet's table; SF5 (an
# SX126x's only) from the SX126x datasheet's.
SNR_LIMIT_DB = {5: -2.5, 6: -5.0, 7: -7.5, 8: -10.0, 9: -12.5, 10: -15.0, 11: -17.5, 12: -20.0}
# BER at zero margin and how many dB of margin buy a decade less; capped where the frame
# would be lost anyway. Chosen so that a 10 dB margin leaves an 80-byte frame clean
# about 99.99 % of the time, and a frame at the edge is usually hit.
BER_AT_ZERO_MARGIN = 1e-4
BER_DB_PER_DECADE = 3.0
BER_CAP = 0.01
LOSS_REASONS = ("outage", "horizon", "terrain", "margin", "burst", "half_duplex", "collision")
Position = tuple[float, float, float]  # lat, lon (degrees), altitude (m)


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class GroundStation:
    name: str
    lat: float
    lon: float
    alt_m: float = 0.0  # antenna height above the ground the horizon is measured from
    forward: tuple[str, int] | None = None  # where the bench relay sends what it hears
    mask_deg: float = 0.0  # terrain (hills, buildings) hides everything below this elevation

    @classmethod
    def parse(cls, text: str) -> GroundStation:
        """'NAME:LAT:LON[:ALT_M[:MASK_DEG]]' (the CLI's --station)."""
        parts = text.split(":")
        if len(parts) not in (3, 4, 5) or not parts[0]:
            raise ValueError(f"station {text!r}: expected NAME:LAT:LON[:ALT_M[:MASK_DEG]], e.g. home:52.7:-2.75:20:6")
        try:
            lat, lon = float(parts[1]), float(parts[2])
            alt = float(parts[3]) if len(parts) >= 4 else 0.0
            mask = float(parts[4]) if len(parts) == 5 else 0.0
        except ValueError as e:
            raise ValueError(f"station {text!r}: latitude, longitude, altitude and mask must be numbers") from e
        if not (-90 <= lat <= 90 and -180 <= lon <= 360):
            raise ValueError(f"station {text!r}: latitude must be within ±90 and longitude within -180..360")
        if not 0 <= mask < 90:
            raise ValueError(f"station {text!r}: the terrain mask must be an elevation in [0, 90) degrees")
        return cls(parts[0], lat, lon, alt, mask_deg=mask)


@dataclass(frozen=True)
class LoRaMode:
    sf: int = 9
    bw_hz: float = 125_000.0
    cr: int = 5  # denominator of 4/cr

    @classmethod
    def parse(cls, text: str) -> LoRaMode:
        """'SF/BW_HZ/CR', e.g. '11/20800/8' (the CLI's --lora)."""
        try:
            sf, bw, cr = text.split("/")
            mode = cls(int(sf), float(bw), int(cr))
        except ValueError as e:
            raise ValueError(f"LoRa mode {text!r}: expected SF/BW_HZ/CR, e.g. 11/20800/8") from e
        mode.airtime_s(1)  # airtime's own checks name what is out of range
        return mode

    def airtime_s(self, payload_bytes: int) -> float:
        # The bench relay carries UDP datagrams; a LoRa packet holds at most 255 bytes.
        return lora_airtime_s(min(payload_bytes, 255), self.sf, self.bw_hz, self.cr)

    def sensitivity_dbm(self, noise_figure_db: float = 6.0) -> float:
        return lora_sensitivity_dbm(self.sf, self.bw_hz, noise_figure_db)


def lora_sensitivity_dbm(sf: int, bw_hz: float, noise_figure_db: float = 6.0) -> float:
    """A LoRa receiver's sensitivity: thermal noise in the bandwidth, its noise figure, and the
    demodulator's SNR limit for the spreading factor."""
    return -174.0 + 10 * math.log10(bw_hz) + noise_figure_db + SNR_LIMIT_DB[sf]


@dataclass(frozen=True)
class ChannelConfig:
    """Defaults: the payload's bench radio (SF9/125 kHz/4:5), 10 mW at 434 MHz, 0 dBi each end."""

    loss: LossSpec = LossSpec(0.0)  # Gilbert–Elliott fading on top of the link budget
    uplink_loss: LossSpec | None = None  # None: the same spec as the downlink, own stream
    path_loss: bool = True  # False: no horizon, no margin — only the Gilbert–Elliott loss
    freq_mhz: float = 434.0
    tx_dbm: float = 10.0  # both ends: the link is reciprocal
    tx_gain_dbi: float = 0.0
    rx_gain_dbi: float = 0.0
    lora: LoRaMode = LoRaMode()
    noise_figure_db: float = 6.0
    sensitivity_dbm: float | None = None  # None: from the LoRa mode
    fade_width_db: float = 1.0  # steepness of the loss curve around zero margin
    ber: float = 0.0  # bit error floor, on top of what the margin gives
    duplicate: float = 0.0  # chance a delivered frame arrives twice
    duplicate_max_delay_s: float = 2.0  # the copy arrives up to this many flight seconds later
    reorder: float = 0.0  # chance a delivered frame is held back until after the next one
    reorder_max_hold_s: float = 30.0  # a held frame goes out anyway after this long
    outages: tuple[tuple[float, float], ...] = ()  # (start_s, end_s) flight-time windows
    half_duplex: bool = True
    # The payload's datagram comes when its last symbol has gone (a simulated chip's air), not when
    # it was keyed (a UDP radio): the ground has it at once, and the payload was busy until then.
    frames_at_end: bool = False

    def __post_init__(self):
        for name in ("ber", "duplicate", "reorder"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} {value} is not a probability in [0, 1]")
        for start, end in self.outages:
            if end <= start:
                raise ValueError(f"outage {start:g}:{end:g} ends before it starts")
        if self.fade_width_db <= 0:
            raise ValueError("fade_width_db must be positive")

    @property
    def receiver_sensitivity_dbm(self) -> float:
        if self.sensitivity_dbm is not None:
            return self.sensitivity_dbm
        return self.lora.sensitivity_dbm(self.noise_figure_db)

    def sensitivity_for(self, settings: AirSettings | None = None) -> float:
        """The receiver's sensitivity to a frame keyed with `settings` (None: a bare frame, on the
        flight's mode). A configured `sensitivity_dbm` holds for every frame."""
        if settings is None or self.sensitivity_dbm is not None:
            return self.receiver_sensitivity_dbm
        return lora_sensitivity_dbm(settings.spreading_factor, settings.bandwidth_hz, self.noise_figure_db)

    def airtime_s(self, payload_bytes: int, settings: AirSettings | None = None) -> float:
        """Seconds on air of a frame of `payload_bytes`: with the settings it was keyed with, or
        (a bare frame) the flight's mode."""
        return settings.airtime_s(payload_bytes) if settings is not None else self.lora.airtime_s(payload_bytes)

    def in_outage(self, t_s: float) -> bool:
        return any(start <= t_s < end for start, end in self.outages)


# --------------------------------------------------------------------------- geometry and budget


def _ecef_km(lat: float, lon: float, alt_m: float) -> tuple[float, float, float]:
    r = EARTH_RADIUS_KM + alt_m / 1000.0
    la, lo = math.radians(lat), math.radians(lon)
    return r * math.cos(la) * math.cos(lo), r * math.cos(la) * math.sin(lo), r * math.sin(la)


def ground_distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance on a spherical Earth (stratoecho.geo)."""
    return geo.distance_m(lat1, lon1, lat2, lon2) / 1000.0


def slant_km(station: GroundStation, pos: Position) -> float:
    a, b = _ecef_km(station.lat, station.lon, station.alt_m), _ecef_km(*pos)
    return math.dist(a, b)


def elevation_deg(station: GroundStation, pos: Position) -> float:
    """Angle of `pos` above the station's local horizontal (geometric, no refraction)."""
    return geo.elevation_deg(station.lat, station.lon, station.alt_m, *pos)


def radio_horizon_km(h1_m: float, h2_m: float) -> float:
    """Sum of both radio horizons with 4/3-Earth refraction: 4.12·(√h1 + √h2) km."""
    return 4.12 * (math.sqrt(max(h1_m, 0.0)) + math.sqrt(max(h2_m, 0.0)))


def fspl_db(distance_km: float, freq_mhz: float) -> float:
    """Free-space path loss; 10 m at the least, so a balloon on the station stays finite."""
    return 20 * math.log10(max(distance_km, 0.01)) + 20 * math.log10(freq_mhz) + 32.44


def loss_probability(margin_db: float, width_db: float = 1.0) -> float:
    """Logistic frame loss around zero margin: 50 % at 0 dB, ~5 % at +3 dB (width 1 dB)."""
    x = margin_db / width_db
    if x > 700:  # exp overflows long after the answer is 0
        return 0.0
    if x < -700:
        return 1.0
    return 1.0 / (1.0 + math.exp(x))


def ber_for_margin(margin_db: float) -> float:
    return min(BER_CAP, BER_AT_ZERO_MARGIN * 10 ** (-margin_db / BER_DB_PER_DECADE))


@dataclass(frozen=True)
class LinkState:
    distance_km: float  # slant range
    ground_km: float  # along the surface
    elevation_deg: float
    horizon_km: float
    beyond_horizon: bool
    rx_dbm: float
    margin_db: float
    p_loss: float  # from the margin alone (1 beyond the horizon); bursts and outages come on top
    ber: float  # margin's share plus the configured floor
    below_mask: bool = False  # under the station's terrain mask: not heard (loss reason "terrain")


def link_state(station: GroundStation, pos: Position, cfg: ChannelConfig,
               settings: AirSettings | None = None) -> LinkState:
    """The path from `pos` to `station` for a frame keyed with `settings` (None: the flight's
    mode). Past the horizon or under the station's terrain mask nothing is heard (p_loss 1);
    without `cfg.path_loss` neither applies, nor does the margin."""
    ground = ground_distance_km(station.lat, station.lon, pos[0], pos[1])
    slant = slant_km(station, pos)
    horizon = radio_horizon_km(station.alt_m, pos[2])
    beyond = ground > horizon
    rx = cfg.tx_dbm + cfg.tx_gain_dbi + cfg.rx_gain_dbi - fspl_db(slant, cfg.freq_mhz)
    margin = rx - cfg.sensitivity_for(settings)
    if not cfg.path_loss:
        return LinkState(slant, ground, elevation_deg(station, pos), horizon, False, rx, margin, 0.0, cfg.ber)
    elevation = elevation_deg(station, pos)
    # Only a mask above 0 is checked, so a plain station's numbers stay exactly as they were.
    masked = station.mask_deg > 0 and elevation < station.mask_deg
    p = 1.0 if beyond or masked else loss_probability(margin, cfg.fade_width_db)
    ber = min(0.5, cfg.ber + ber_for_margin(margin))
    return LinkState(slant, ground, elevation, horizon, beyond, rx, margin, p, ber, masked)


def flip_bits(frame: bytes, ber: float, rng: random.Random) -> tuple[bytes, int]:
    """Flip each bit with probability `ber`; (new frame, bits flipped).

    Jumps between errors with geometric gaps, so a clean channel costs one draw a frame."""
    if ber <= 0 or not frame:
        return frame, 0
    nbits = 8 * len(frame)
    if ber >= 1:
        return bytes(b ^ 0xFF for b in frame), nbits
    out = bytearray(frame)
    log_q = math.log1p(-ber)
    pos, flipped = -1, 0
    while True:
        pos += 1 + int(math.log(1.0 - rng.random()) / log_q)
        if pos >= nbits:
            return bytes(out), flipped
        out[pos // 8] ^= 0x80 >> (pos % 8)
        flipped += 1


# --------------------------------------------------------------------------- statistics


def _reasons() -> dict[str, int]:
    return {r: 0 for r in LOSS_REASONS}


@dataclass
class DirectionStats:
    in_: int = 0  # frames on the air towards this receiver
    delivered: int = 0  # frames handed out (first copies; duplicates counted apart)
    lost_by: dict[str, int] = field(default_factory=_reasons)
    corrupted: int = 0  # delivered with at least one bit flipped
    duplicated: int = 0
    reordered: int = 0

    @property
    def lost(self) -> int:
        return sum(self.lost_by.values())

    def as_dict(self) -> dict:
        return {"in": self.in_, "delivered": self.delivered, "lost": self.lost, "lost_by": dict(self.lost_by),
                "corrupted": self.corrupted, "duplicated": self.duplicated, "reordered": self.reordered}


@dataclass
class StationStats:
    downlink: DirectionStats = field(default_factory=DirectionStats)
    uplink: DirectionStats = field(default_factory=DirectionStats)
    # flight minute -> [frames in, frames delivered] on the downlink: the report's link panel
    minutes: dict[int, list[int]] = field(default_factory=dict)


@dataclass(frozen=True)
class Delivery:
    station_index: int
    frame: bytes
    delay_s: float  # flight seconds after the call's t_s
    seq: int  # which downlink frame (0, 1, … in the order they went on the air)
    duplicate: bool = False
    corrupted: bool = False  # bits were flipped on the way
    balloon: int = 0  # which payload put it on the air (sim/channel/fleet.py; 0 when there is one)
    to_balloon: bool = False  # heard by payload `station_index`, not by a ground station
    settings: AirSettings | None = None  # what its sender's chip keyed it with (None: a bare frame)


# --------------------------------------------------------------------------- the channel


class _Streams:
    """One station's random streams, one per purpose, so each kind of draw stays aligned
    whatever the others do (a margin loss never shifts the burst pattern)."""

    def __init__(self, seed: int, index: int, direction: str, ge_spec: LossSpec, ge_seed: int):
        def rng(purpose: str) -> random.Random:
            return random.Random(f"stratoecho-channel:{seed}:{index}:{direction}:{purpose}")

        self.ge = GilbertElliott(ge_spec, ge_seed)
        self.margin = rng("margin")
        self.bits = rng("bits")
        self.misc = rng("misc")


def fate(streams: _Streams, link: LinkState, t_s: float, cfg: ChannelConfig) -> str | None:
    """Why a frame is lost at this receiver, or None. Every stream advances each frame."""
    burst = streams.ge.drop()
    margin_lost = streams.margin.random() < link.p_loss
    if cfg.in_outage(t_s):
        return "outage"
    if link.beyond_horizon:
        return "horizon"
    if link.below_mask:
        return "terrain"
    if margin_lost:
        return "margin"
    return "burst" if burst else None


class RadioChannel:
    def __init__(
        self,
        stations: Sequence[GroundStation],
        position: Callable[[float], Position],
        config: ChannelConfig | None = None,
        seed: int = 1,
    ):
        if not stations:
            raise ValueError("a radio channel needs at least one ground station")
        self.stations = list(stations)
        self.position = position
        self.config = config or ChannelConfig()
        cfg = self.config
        up_spec = cfg.uplink_loss if cfg.uplink_loss is not None else cfg.loss
        self._down, self._up = [], []
        for i in range(len(self.stations)):
            # Station 0 keeps the seeds the single-station relay always used.
            ge_down = seed if i == 0 else random.Random(f"stratoecho-ge:{seed}:{i}:down").getrandbits(62)
            ge_up = seed ^ UPLINK_SEED if i == 0 else random.Random(f"stratoecho-ge:{seed}:{i}:up").getrandbits(62)
            self._down.append(_Streams(seed, i, "down", cfg.loss, ge_down))
            self._up.append(_Streams(seed, i, "up", up_spec, ge_up))
        self.stats = [StationStats() for _ in self.stations]
        self._seq = 0
        self._held: list[tuple[float, Delivery] | None] = [None] * len(self.stations)  # (held since, frame)
        self._tx_until = -math.inf  # flight time the payload's transmitter is busy until

    # ------------------------------------------------------------ queries

    def transmitting(self, t_s: float) -> bool:
        return t_s < self._tx_until

    @property
    def next_seq(self) -> int:
        """The `seq` the next downlink frame will carry."""
        return self._seq

    def next_release_s(self) -> float | None:
        """Flight time at which a held (reordered) frame goes out even without a next frame."""
        times = [h[0] + self.config.reorder_max_hold_s for h in self._held if h is not None]
        return min(times) if times else None

    # ------------------------------------------------------------ downlink

    def downlink(self, frame: bytes, t_s: float, settings: AirSettings | None = None) -> list[Delivery]:
        """The payload puts `frame` on the air at flight time `t_s`, keyed with `settings` (None: a
        bare frame, on the flight's mode): what each station hears.

        Deliveries come in the order to hand them out; `delay_s` > 0 for late duplicates."""
        cfg = self.config
        seq, self._seq = self._seq, self._seq + 1
        air = 0.0 if cfg.frames_at_end else cfg.airtime_s(len(frame), settings)  # what is still to come of it
        self._tx_until = max(self._tx_until, t_s + air)
        pos = self.position(t_s)
        out: list[Delivery] = []
        for i, st in enumerate(self.stations):
            streams, stats = self._down[i], self.stats[i]
            stats.downlink.in_ += 1
            minute = stats.minutes.setdefault(int(max(t_s, 0.0) // 60), [0, 0])
            minute[0] += 1
            link = link_state(st, pos, cfg, settings)
            reason = fate(streams, link, t_s, self.config)
            dup, reorder = streams.misc.random() < cfg.duplicate, streams.misc.random() < cfg.reorder
            dup_delay = streams.misc.random() * cfg.duplicate_max_delay_s
            held = self._held[i]
            if reason is not None:
                stats.downlink.lost_by[reason] += 1
            else:
                body, flipped = flip_bits(frame, link.ber, streams.bits)
                stats.downlink.delivered += 1
                stats.downlink.corrupted += flipped > 0
                minute[1] += 1
                # A receiver has the frame when its last symbol arrives: the payload's UDP datagram
                # marks the start of its time on air, so the ground hears it `air` later (and can
                # only answer after it, when the payload has stopped transmitting).
                delivery = Delivery(i, body, air if cfg.half_duplex else 0.0, seq, corrupted=flipped > 0,
                                    settings=settings)
                if reorder and held is None:
                    stats.downlink.reordered += 1
                    self._held[i] = (t_s, delivery)
                else:
                    out.append(delivery)
                if dup:
                    stats.downlink.duplicated += 1
                    copy, n = flip_bits(frame, link.ber, streams.bits)  # a second reception, its own errors
                    out.append(Delivery(i, copy, air + dup_delay, seq, duplicate=True, corrupted=n > 0,
                                        settings=settings))
            if held is not None:  # the frame held back last time goes out after this one
                self._held[i] = None
                out.append(held[1])
        return out

    def release(self, t_s: float, everything: bool = False) -> list[Delivery]:
        """Held frames whose wait ran out by `t_s` (all of them when the relay stops)."""
        out = []
        for i, h in enumerate(self._held):
            if h is not None and (everything or t_s >= h[0] + self.config.reorder_max_hold_s):
                out.append(h[1])
                self._held[i] = None
        return out

    def revoke(self, station_index: int, t_s: float, corrupted: bool, reason: str = "collision") -> None:
        """A frame of `t_s` counted as delivered to a station was lost after all (a collision that
        `sim/channel/fleet.py` settles when the frame is handed out): count it lost instead."""
        s = self.stats[station_index]
        s.downlink.delivered -= 1
        s.downlink.corrupted -= corrupted
        s.downlink.lost_by[reason] += 1
        s.minutes[int(max(t_s, 0.0) // 60)][1] -= 1

    # ------------------------------------------------------------ uplink

    def uplink(self, frame: bytes, station_index: int, t_s: float) -> bytes | None:
        """Station `station_index` transmits `frame` at `t_s`: what the payload hears, or None."""
        cfg = self.config
        streams, stats = self._up[station_index], self.stats[station_index].uplink
        stats.in_ += 1
        link = link_state(self.stations[station_index], self.position(t_s), cfg)
        reason = fate(streams, link, t_s, self.config)
        if reason is None and cfg.half_duplex and self.transmitting(t_s):
            reason = "half_duplex"
        if reason is not None:
            stats.lost_by[reason] += 1
            return None
        body, flipped = flip_bits(frame, link.ber, streams.bits)
        stats.delivered += 1
        stats.corrupted += flipped > 0
        return body

    # ------------------------------------------------------------ reporting

    def stats_dict(self) -> list[dict]:
        return [
            {"name": st.name, "lat": st.lat, "lon": st.lon, "alt_m": st.alt_m,
             "downlink": s.downlink.as_dict(), "uplink": s.uplink.as_dict()}
            for st, s in zip(self.stations, self.stats)
        ]

    def timeline(self) -> list[dict]:
        """Per flight minute and station: downlink frames on the air and delivered."""
        rows = [
            {"t_s": minute * 60, "station": self.stations[i].name, "in": n_in, "delivered": n_out}
            for i, s in enumerate(self.stats)
            for minute, (n_in, n_out) in s.minutes.items()
        ]
        return sorted(rows, key=lambda r: (r["t_s"], r["station"]))
