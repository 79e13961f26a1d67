"""Several payloads on one radio channel, as pure logic of flight time (issue 33).

Balloon 0, 1, … each put frames on the same air. For a frame of balloon i at flight time t:

* **the ground** hears it through balloon i's own `RadioChannel` (`sim/channel/radio.py`: outage,
  horizon, terrain mask, margin, bursts, bit errors, duplicates, reordering). Balloon 0's is seeded
  exactly as a lone payload's, so a one-balloon flight loses the very same frames as before;
* **every other balloon j** hears it like a ground station placed where j is at t (both
  altitudes make the horizon, no terrain mask up there), on streams of its own per (i, j) and
  purpose: outage, horizon, margin, Gilbert–Elliott bursts (the downlink's spec), bit errors.
  No duplicates or reordering between balloons. Lost while j transmits itself (**half duplex**:
  j's own frames key its radio for their LoRa time on air).

**Collisions**: at any receiver, a frame overlapping on the air with another payload's frame that
also reaches that receiver above its sensitivity is lost unless it is at least `CAPTURE_DB`
stronger than each such frame; so the weaker always goes, and both go when they are within
6 dB. Without `path_loss` every overlapping frame counts, compared by free-space power.
Uplink frames from the ground are not on this air: they never collide. Frames keyed with their
own settings (sim/chips/air.py) take their own time on air and margin, and collide only with frames
on the same channel (carrier, spreading factor, bandwidth); a bare frame is on every channel.
A balloon is handed what it may hear with its sender's settings (`Delivery.settings`): whether its
chip was tuned to that channel is the chip's to say (sim/chips/sx127x.py).

`transmit` says who may hear a frame, each a `Delivery` (`balloon`: the sender; `to_balloon`:
`station_index` is then the hearing balloon). Collisions and a balloon's half duplex are only
known once every frame that could overlap has started, so `settle(delivery)` gives the verdict
when the delivery is handed out (the bench relay: at the end of the frame's time on air). A
verdict reached earlier (the relay's `--no-half-duplex` or `--frames-at-end` hand frames out at
once) counts only frames already on the air, and a delivery handed out is never taken back.
Statistics: each balloon's `RadioChannel.stats` per station, and `peer_stats[(i, j)]`
(loss reasons from `LOSS_REASONS`, "collision" among them).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from .radio import (
    ChannelConfig,
    Delivery,
    DirectionStats,
    GroundStation,
    Position,
    RadioChannel,
    _Streams,
    fate,
    flip_bits,
    link_state,
)

if TYPE_CHECKING:
    from ..chips.air import AirSettings

# LoRa's capture effect: of two overlapping frames on the same spreading factor the receiver
# still decodes the stronger when it leads by about 6 dB, the co-SF capture threshold commonly
# measured on SX127x radios (e.g. Bor et al., "Do LoRa low-power wide-area networks scale?", 2016).
CAPTURE_DB = 6.0
FORGET_S = 600.0  # flight seconds a frame's air time is remembered past the longest hold-back


def balloon_radio_seed(seed: int, balloon: int) -> int:
    """Seed of balloon `balloon`'s ground `RadioChannel`: balloon 0 keeps the lone payload's."""
    return seed if balloon == 0 else random.Random(f"stratoecho-fleet:{seed}:{balloon}").getrandbits(62)


@dataclass(frozen=True)
class _OnAir:
    balloon: int
    seq: int
    t_s: float  # when the relay got it
    start: float  # its time on air: [start, end)
    end: float
    pos: Position  # where its sender was
    settings: AirSettings | None = None  # what it was keyed with (None: bare, the flight's mode)

    def shares_channel(self, other: _OnAir) -> bool:
        """Whether the two can interfere: a bare frame is taken to be on every channel."""
        return self.settings is None or other.settings is None or self.settings.same_channel(other.settings)


@dataclass
class _Reception:
    """A frame a receiver's radio let through, waiting for the collision verdict."""

    frame: _OnAir
    receiver: int  # station index, or balloon index when `to_balloon`
    to_balloon: bool
    station: GroundStation  # the receiver (a balloon: where it was when the frame started)
    rx_dbm: float
    corrupted: bool
    settled: bool = False
    lost: str | None = None


class Fleet:
    def __init__(
        self,
        stations: Sequence[GroundStation],
        positions: Sequence[Callable[[float], Position]],
        config: ChannelConfig | None = None,
        seed: int = 1,
    ):
        if not positions:
            raise ValueError("a fleet needs at least one balloon")
        self.config = config or ChannelConfig()
        self.positions = list(positions)
        self.radios = [RadioChannel(stations, p, self.config, balloon_radio_seed(seed, i))
                       for i, p in enumerate(self.positions)]
        self.stations = self.radios[0].stations
        pairs = [(i, j) for i in range(len(positions)) for j in range(len(positions)) if i != j]
        self.peer_stats = {pair: DirectionStats() for pair in pairs}
        # Per (sender, hearer) and purpose, apart from every ground station's streams.
        self._peer = {(i, j): _Streams(seed, j, f"peer{i}", self.config.loss,
                                       random.Random(f"stratoecho-ge:{seed}:peer:{i}:{j}").getrandbits(62))
                      for i, j in pairs}
        self._on_air: list[_OnAir] = []
        self._rx: dict[tuple[int, int, bool, int], _Reception] = {}

    @property
    def alone(self) -> bool:
        return len(self.radios) == 1

    def transmitting(self, balloon: int, t_s: float) -> bool:
        return self.radios[balloon].transmitting(t_s)

    # ------------------------------------------------------------ the air

    def transmit(self, balloon: int, frame: bytes, t_s: float, settings: AirSettings | None = None) -> list[Delivery]:
        """Balloon `balloon` puts `frame` on the air at `t_s`, keyed with `settings` (None: bare, on
        the flight's mode): who may hear it (see `settle`)."""
        radio, cfg = self.radios[balloon], self.config
        seq = radio.next_seq
        before = [(s.downlink.delivered, s.downlink.corrupted) for s in radio.stats]
        out = radio.downlink(frame, t_s, settings)
        if self.alone:
            return out  # nothing else on the air: exactly a lone payload's channel
        out = [replace(d, balloon=balloon) for d in out]
        air = cfg.airtime_s(len(frame), settings)
        start = t_s - air if cfg.frames_at_end else t_s
        sent = _OnAir(balloon, seq, t_s, start, start + air, radio.position(t_s), settings)
        self._forget(t_s)
        self._on_air.append(sent)
        for k, (st, s) in enumerate(zip(self.stations, radio.stats)):
            if s.downlink.delivered > before[k][0]:  # heard (now, or held back to come later)
                rx = link_state(st, sent.pos, cfg).rx_dbm
                self._rx[(balloon, seq, False, k)] = _Reception(
                    sent, k, False, st, rx, s.downlink.corrupted > before[k][1])
        return out + self._to_peers(sent, frame, 0.0 if cfg.frames_at_end else air)

    def _to_peers(self, sent: _OnAir, frame: bytes, air: float) -> list[Delivery]:
        cfg, i, out = self.config, sent.balloon, []
        for j in range(len(self.radios)):
            if j == i:
                continue
            stats, streams = self.peer_stats[(i, j)], self._peer[(i, j)]
            stats.in_ += 1
            hearer = self.balloon_station(j, sent.t_s)
            link = link_state(hearer, sent.pos, cfg, sent.settings)
            reason = fate(streams, link, sent.t_s, cfg)
            if reason is not None:
                stats.lost_by[reason] += 1
                continue
            body, flipped = flip_bits(frame, link.ber, streams.bits)
            stats.delivered += 1
            stats.corrupted += flipped > 0
            self._rx[(i, sent.seq, True, j)] = _Reception(sent, j, True, hearer, link.rx_dbm, flipped > 0)
            # Heard when its last symbol arrives, as on the ground.
            out.append(Delivery(j, body, air if cfg.half_duplex else 0.0, sent.seq, corrupted=flipped > 0,
                                balloon=i, to_balloon=True, settings=sent.settings))
        return out

    def balloon_station(self, balloon: int, t_s: float) -> GroundStation:
        """Balloon `balloon` as a receiver at `t_s`: its altitude is its antenna height."""
        lat, lon, alt = self.positions[balloon](t_s)
        return GroundStation(f"balloon{balloon}", lat, lon, alt)

    def _forget(self, t_s: float) -> None:
        cfg = self.config
        cutoff = t_s - FORGET_S - cfg.reorder_max_hold_s - cfg.duplicate_max_delay_s
        if self._on_air and self._on_air[0].end < cutoff:
            self._on_air = [f for f in self._on_air if f.end >= cutoff]
            self._rx = {k: r for k, r in self._rx.items() if r.frame.end >= cutoff}

    # ------------------------------------------------------------ verdicts

    def settle(self, d: Delivery) -> bool:
        """Whether `d` survives collisions (and, for a balloon, its own transmissions); counted once
        per reception, whichever copy comes first. Call it when handing `d` out."""
        if self.alone:
            return True
        rx = self._rx.get((d.balloon, d.seq, d.to_balloon, d.station_index))
        if rx is None:
            return True  # from before anything was remembered
        if not rx.settled:
            rx.settled, rx.lost = True, self._verdict(rx)
            if rx.lost is not None:
                self._count_loss(rx)
        return rx.lost is None

    def _overlapping(self, f: _OnAir) -> list[_OnAir]:
        """Other balloons' frames on the air while `f` is (on any channel: see `_verdict`)."""
        return [g for g in self._on_air if g.balloon != f.balloon and g.start < f.end and f.start < g.end]

    def _verdict(self, rx: _Reception) -> str | None:
        cfg, others = self.config, self._overlapping(rx.frame)
        if rx.to_balloon and cfg.half_duplex and any(g.balloon == rx.receiver for g in others):
            return "half_duplex"
        for g in others:
            if rx.to_balloon and g.balloon == rx.receiver:
                continue  # its own frame: half duplex's business, not interference
            if not rx.frame.shares_channel(g):
                continue  # another channel: the receiver's filter never lets it in
            link = link_state(rx.station, g.pos, cfg, g.settings)
            if cfg.path_loss and (link.beyond_horizon or link.below_mask or link.margin_db < 0):
                continue  # below the receiver's sensitivity: noise, not a collision
            if rx.rx_dbm < link.rx_dbm + CAPTURE_DB:
                return "collision"
        return None

    def _count_loss(self, rx: _Reception) -> None:
        f = rx.frame
        if not rx.to_balloon:
            self.radios[f.balloon].revoke(rx.receiver, f.t_s, rx.corrupted, rx.lost)
            return
        stats = self.peer_stats[(f.balloon, rx.receiver)]
        stats.delivered -= 1
        stats.corrupted -= rx.corrupted
        stats.lost_by[rx.lost] += 1

    # ------------------------------------------------------------ held frames and uplink

    def release(self, t_s: float, everything: bool = False) -> list[Delivery]:
        """Held (reordered) ground frames of every balloon whose wait ran out by `t_s`."""
        return [replace(d, balloon=i) if i else d
                for i, r in enumerate(self.radios) for d in r.release(t_s, everything)]

    def next_release_s(self) -> float | None:
        times = [t for r in self.radios if (t := r.next_release_s()) is not None]
        return min(times) if times else None

    def uplink(self, frame: bytes, station_index: int, t_s: float) -> list[tuple[int, bytes]]:
        """Station `station_index` transmits at `t_s`: (balloon, what it hears) for each that does,
        through that balloon's own uplink checks (horizon, mask, margin, bursts, half duplex)."""
        return [(b, heard) for b, r in enumerate(self.radios)
                if (heard := r.uplink(frame, station_index, t_s)) is not None]

    # ------------------------------------------------------------ reporting

    def peers_dict(self) -> list[dict]:
        return [{"from": i, "to": j, **s.as_dict()} for (i, j), s in self.peer_stats.items()]
