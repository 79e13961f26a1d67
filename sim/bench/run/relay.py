"""The radio channel on the bench: a UDP relay between the payload and its ground stations.

Frames from the payload arrive on one port; each is written to `air.hex` (what was
put on the air, in order, before any loss) and handed to `RadioChannel`
(`sim/channel/radio.py`: horizon, link budget, Gilbert–Elliott bursts, bit errors,
duplicates, reordering, outages), which says what each ground station hears; that is
forwarded to the station's UDP address. Runs until SIGTERM/SIGINT.

A simulated chip's frame comes wrapped with the settings it was keyed with (sim/chips/air.py);
a bare one (the bench's UDP radio) is on the flight's `LoRaMode`. Each is priced with its own:
time on air, margin, collisions. `air.hex` and the ground get the bare frame as it went on air
(the ground stations stand for a gateway listening on every channel), and `air.times` has, line
for line, `FLIGHT_SECOND AIRTIME_S`: when the frame was heard and its time on air as keyed.

The uplink runs the other way: each station has its own forwarding socket, so what a
ground station sends back to it (NACKs) is known to come through that station; it is
written to `uplink.hex` and relayed to wherever the latest payload frame came from,
through that station's uplink losses and the payload's half duplex.

    payload ──sock──▶ channel ──outs[i]──▶ ground station i
    payload ◀──sock── channel ◀──outs[i]── ground station i

With several payloads (`positions`, one track each: `sim channel --balloons N` or a scenario's
`balloons`) they share one air (`sim/channel/fleet.py`): balloon b has its own socket `socks[b]`
(balloon 0's on `listen`, the others on free ports of the same host, all logged in `listening`'s
`balloons`) and its own `air-<b>.hex`/`air-<b>.times` beside `air.hex`. What it sends goes to the
ground stations and to every other balloon that hears it, sent from that balloon's socket to
where that balloon last sent from (lost, and counted, before its first frame), wrapped with its
sender's settings when both are simulated chips, so the hearer's chip can tell whether it was
tuned to that channel; collisions and half duplex are settled as each delivery is handed out.
Uplink goes to every balloon that hears it, each through its own checks; each payload checks
signatures itself.

Flight time comes from the bench's lockstep clock when `sim fly` runs the relay (`bench`:
its sockets, its waits), else from `WorldClock`: the bench world's clock file once the
flight has launched (on the pad until then), or the relay's own start times a speed-up.
Without a `ChannelConfig` the relay is the plain Gilbert–Elliott channel it always was
(no path loss, no half duplex), which is what tests with exact loss patterns rely on.
"""

from __future__ import annotations

import heapq
import itertools
import json
import os
import select
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import structlog

from ...channel.fleet import Fleet
from ...channel.loss import LossSpec
from ...channel.radio import UPLINK_SEED, ChannelConfig, Delivery, GroundStation, Position
from ...chips.air import AirSettings, unwrap, wrap
from ...world.flight import Flight, FlightPlan

__all__ = ["UPLINK_SEED", "Channel", "ChannelStats", "WorldClock", "balloon_position", "launch_station"]

log = structlog.get_logger(__name__)

POLL_S = 0.2  # how long the relay waits on its sockets before checking the stop event
CLOCK_POLL_S = 1.0  # how often a missing world-clock file is looked for again
DEFAULT_SPEEDUP = 60.0


@dataclass
class ChannelStats:
    frames_in: int = 0
    frames_forwarded: int = 0  # frames that reached at least one station (held frames once released)
    frames_dropped: int = 0  # frames_in − frames_forwarded: lost everywhere (or still held back)
    bytes_in: int = 0
    uplink_in: int = 0  # frames the ground sent back
    uplink_forwarded: int = 0
    uplink_dropped: int = 0
    copies_forwarded: int = 0  # datagrams sent to ground stations: every station, every duplicate
    copies_corrupted: int = 0  # of those, how many carried flipped bits
    airtime_s: float = 0.0  # seconds on air of every frame in, each priced with its own settings


class WorldClock:
    """Flight seconds now: (time.time() − epoch_unix) · speedup.

    With a clock file (`{"epoch_unix": …, "speedup": …}`, written by the bench world at
    launch) the balloon sits on the pad (t = 0) until the file appears; the file is looked
    for at most once a second. Without one the clock starts now at `speedup`."""

    def __init__(self, path: Path | None = None, speedup: float = DEFAULT_SPEEDUP,
                 now: Callable[[], float] = time.time):
        self.path = path
        self.speedup = speedup
        self._now = now
        self.epoch_unix: float | None = None if path is not None else now()
        self._next_look = -float("inf")

    def _look(self) -> None:
        t = self._now()
        if t < self._next_look:
            return
        self._next_look = t + CLOCK_POLL_S
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            epoch, speedup = float(data["epoch_unix"]), float(data["speedup"])
        except (OSError, ValueError, KeyError, TypeError):
            return  # not there yet, or caught half-written: look again later
        if speedup <= 0:
            log.warning("world_clock_invalid", path=str(self.path), speedup=speedup)
            return
        self.epoch_unix, self.speedup = epoch, speedup
        log.info("world_clock", epoch_unix=epoch, speedup=speedup)

    def __call__(self) -> float:
        if self.epoch_unix is None:
            self._look()
            if self.epoch_unix is None:
                return 0.0
        return (self._now() - self.epoch_unix) * self.speedup


def launch_station(seed: int = 1) -> GroundStation:
    """The default receiver: at the launch site of the bench flight."""
    plan = FlightPlan(seed=seed)
    return GroundStation("home", plan.launch_lat, plan.launch_lon, plan.launch_alt_m)


def balloon_position(seed: int = 1) -> Callable[[float], Position]:
    flight = Flight(FlightPlan(seed=seed))
    return lambda t: (*flight.position(t), flight.altitude_m(t))


def _open_air(air_hex: Path, balloon: int) -> tuple:
    """Balloon 0 writes `air_hex`; balloon b ≥ 1 `air-<b>.hex` beside it. Each has, line for line,
    the flight second each frame was heard and its time on air beside it (`.times`): gaps and duty
    cycle on air (sim/bench/report/beacons.py reads them)."""
    path = Path(air_hex) if balloon == 0 else Path(air_hex).with_name(f"air-{balloon}.hex")
    return open(path, "a", encoding="ascii"), open(path.with_suffix(".times"), "a", encoding="ascii")


def _bind_towards(forward: tuple[str, int], udp: Callable[[], socket.socket], port: int = 0) -> socket.socket:
    out = udp()
    # Bound now, not implicitly at the first sendto, so select() can wait on it from the start;
    # on loopback only when the ground is local, so no one else can inject uplink through it.
    # `port`: where that station sends its uplink (its --uplink-to); 0: any free port.
    host = "127.0.0.1" if forward[0] in ("127.0.0.1", "localhost") else "0.0.0.0"
    try:
        out.bind((host, port))
    except OSError as e:
        out.close()
        raise OSError(f"channel cannot take uplink port {host}:{port}: {e.strerror}") from e
    out.setblocking(False)
    return out


class Channel:
    def __init__(
        self,
        listen: tuple[str, int],
        forward: tuple[str, int],
        loss: LossSpec,
        seed: int,
        air_hex: Path,
        stop: threading.Event,
        uplink_loss: LossSpec | None = None,
        uplink_hex: Path | None = None,
        *,
        stations: Sequence[GroundStation] | None = None,
        position: Callable[[float], Position] | None = None,
        config: ChannelConfig | None = None,
        clock: Callable[[], float] | None = None,
        bench=None,
        uplink_ports: Sequence[int] = (),
        positions: Sequence[Callable[[float], Position]] | None = None,
    ):
        """`stations` without a `forward` of their own send to `forward`. `clock` gives
        flight seconds (default: a `WorldClock` at 60×); a `speedup` attribute on it turns
        flight-time delays into wall time. `bench` (a `sim.bench.run.lockstep.LockstepClock`)
        replaces both: its flight time, its sockets, its waits. `positions`: one track per
        balloon sharing the air (replaces `position`, balloon 0's)."""
        base = config if config is not None else ChannelConfig(path_loss=False, half_duplex=False)
        cfg = replace(base, loss=loss, uplink_loss=uplink_loss)
        stations = [replace(s, forward=s.forward or forward) for s in (stations or [launch_station(seed)])]
        self.fleet = Fleet(stations, positions or [position or balloon_position(seed)], cfg, seed)
        self.radio = self.fleet.radios[0]
        n = len(self.fleet.radios)
        self.bench = bench
        self.clock = bench.elapsed_s if bench is not None else (clock or WorldClock(None, DEFAULT_SPEEDUP))
        udp = bench.udp_socket if bench is not None else (lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        self.forward = stations[0].forward
        self.payload_addrs: list[tuple | None] = [None] * n  # where each balloon's latest frame came from
        self.stop = stop
        self.stats = ChannelStats()
        self.balloon_in = [0] * n  # frames each balloon put on the air
        self.balloon_forwarded = [0] * n  # of those, how many reached some station
        self.balloon_airtime_s = [0.0] * n  # their seconds on air
        # Each balloon's latest settings on air; None: it keys bare frames (a UDP radio, which
        # could not read a wrapped one, so what it hears goes to it bare).
        self.keyed: list[AirSettings | None] = [None] * n
        self.unaddressed = {pair: 0 for pair in self.fleet.peer_stats}  # heard before the hearer's first frame
        self._forwarded: set[tuple[int, int]] = set()  # (balloon, seq) of frames that reached some station
        # (due, tiebreak, delivery): due in flight seconds on the lockstep, else in wall seconds
        # (time.monotonic()), so a test that sets flight time by hand still sees copies arrive.
        self._queue: list[tuple[float, int, Delivery]] = []
        self._tiebreak = itertools.count()
        self.socks = self._listen(listen, n, udp)
        self.sock = self.socks[0]
        log.info("listening", address=self._addr(self.sock), forward=f"{self.forward[0]}:{self.forward[1]}",
                 loss=loss.mean_loss, stations=[s.name for s in stations], path_loss=cfg.path_loss,
                 balloons=[self._addr(s) for s in self.socks])
        # One per station, uplink says who sent it; bound to that station's uplink port, if given.
        self.outs = [_bind_towards(s.forward, udp, port) for s, port in
                     itertools.zip_longest(stations, uplink_ports[:len(stations)], fillvalue=0)]
        self.out = self.outs[0]
        self.airs = [_open_air(air_hex, b) for b in range(n)]
        self.air, self.air_times = self.airs[0]
        self.uplink = open(uplink_hex, "a", encoding="ascii") if uplink_hex is not None else None

    @staticmethod
    def _listen(listen: tuple[str, int], n: int, udp: Callable[[], socket.socket]) -> list[socket.socket]:
        """Balloon 0 on `listen`, the others on free ports of the same host."""
        socks = []
        for b in range(n):
            sock = udp()
            socks.append(sock)
            addr = listen if b == 0 else (listen[0], 0)
            try:
                sock.bind(addr)
            except OSError as e:
                for s in socks:
                    s.close()
                raise OSError(f"channel cannot listen on {addr[0]}:{addr[1]}: {e.strerror}") from e
            sock.setblocking(False)
        return socks

    @staticmethod
    def _addr(sock: socket.socket) -> str:
        host, port = sock.getsockname()[:2]
        return f"{host}:{port}"

    @property
    def speedup(self) -> float:
        return getattr(self.clock, "speedup", DEFAULT_SPEEDUP)

    def _wait(self) -> list:
        """The sockets with something to read, waiting at most until the next delivery is due."""
        socks = [*self.socks, *self.outs]
        if self.bench is not None:
            return self.bench.wait_readable(socks, self._due_in_s(), self.stop)
        ready, _, _ = select.select(socks, [], [], max(min(POLL_S, self._due_in_s() / self.speedup), 0.0))
        return ready

    # ------------------------------------------------------------ the loop

    def run(self) -> None:
        while not self.stop.is_set():
            # One thread over all sockets; the timeout is how promptly a stop or a due frame is noticed.
            ready = self._wait()
            for b, sock in enumerate(self.socks):
                if sock in ready:
                    self._downlink(b)
            for i, out in enumerate(self.outs):
                if out in ready:
                    self._uplink(i)
            self._send_due()
        self._send_due(everything=True)  # what is held back or late still counts as delivered

    def _queue_now(self) -> float:
        return self.clock() if self.bench is not None else time.monotonic()

    def _due_in_s(self) -> float | None:
        """Flight seconds until a held or delayed frame is due (a fifth of a wall second's worth at most
        on a free-running clock, so a stop is noticed; None on the lockstep when nothing is due)."""
        now = self.clock()
        due = []
        if self._queue:
            wait = self._queue[0][0] - self._queue_now()
            due.append(now + (wait if self.bench is not None else wait * self.speedup))
        if (release := self.fleet.next_release_s()) is not None:
            due.append(release)
        if self.bench is not None:
            return max(min(due) - now, 0.0) if due else None  # nothing due: wait for a frame
        return max(min([now + POLL_S * self.speedup, *due]) - now, 0.0)

    def _send_due(self, everything: bool = False) -> None:
        for d in self.fleet.release(self.clock(), everything=everything):
            self._send(d)
        now = self._queue_now()
        while self._queue and (everything or self._queue[0][0] <= now):
            self._send(heapq.heappop(self._queue)[2])

    # ------------------------------------------------------------ downlink

    def _downlink(self, balloon: int = 0) -> None:
        try:
            frame, peer = self.socks[balloon].recvfrom(65535)
        except (BlockingIOError, InterruptedError):
            return
        except ConnectionError:
            return  # an ICMP error from an earlier uplink send to a payload that is gone
        t = self.clock()  # the moment it was heard, before anything else takes time
        frame, settings = unwrap(frame)
        airtime = self.fleet.config.airtime_s(len(frame), settings)
        self.payload_addrs[balloon] = peer
        self._keyed(balloon, settings, t)
        self.stats.frames_in += 1
        self.balloon_in[balloon] += 1
        self.stats.bytes_in += len(frame)
        self.stats.airtime_s += airtime
        self.balloon_airtime_s[balloon] += airtime
        self.stats.frames_dropped = self.stats.frames_in - self.stats.frames_forwarded
        air, times = self.airs[balloon]
        air.write(frame.hex() + "\n")
        air.flush()
        times.write(f"{t:.3f} {airtime:.3f}\n")
        times.flush()
        for d in self.fleet.transmit(balloon, frame, t, settings):
            if d.delay_s > 0:
                late = d.delay_s if self.bench is not None else d.delay_s / self.speedup
                heapq.heappush(self._queue, (self._queue_now() + late, next(self._tiebreak), d))
            else:
                self._send(d)

    def _keyed(self, balloon: int, settings: AirSettings | None, t: float) -> None:
        """Note what balloon `balloon` keys with now; a change (a payload sending SSDV in another
        mode than its positions) is logged, once per change, not per frame."""
        if settings != self.keyed[balloon] and settings is not None:
            log.info("air_settings", balloon=balloon, mhz=settings.frequency_mhz, sf=settings.spreading_factor,
                     bw_hz=settings.bandwidth_hz, cr=f"4/{settings.coding_rate}", explicit=settings.explicit_header,
                     ldro=settings.low_data_rate_optimize, at_s=round(t, 3))
        self.keyed[balloon] = settings

    def _send(self, d: Delivery) -> None:
        if not self.fleet.settle(d):
            return  # lost to another balloon's frame, or its hearer was transmitting
        if d.to_balloon:
            self._send_to_balloon(d)
            return
        station = self.fleet.stations[d.station_index]
        try:
            self.outs[d.station_index].sendto(d.frame, station.forward)
        except OSError:
            return  # ground not listening: lost all the same
        self.stats.copies_forwarded += 1
        self.stats.copies_corrupted += d.corrupted
        if (d.balloon, d.seq) not in self._forwarded:
            self._forwarded.add((d.balloon, d.seq))
            self.stats.frames_forwarded += 1
            self.balloon_forwarded[d.balloon] += 1
            self.stats.frames_dropped = self.stats.frames_in - self.stats.frames_forwarded

    def _send_to_balloon(self, d: Delivery) -> None:
        """Balloon `d.station_index` heard balloon `d.balloon`: out of the hearer's own socket."""
        to = d.station_index
        if self.payload_addrs[to] is None:
            self.unaddressed[(d.balloon, to)] += 1  # it has not spoken yet: nowhere to send
            return
        # A chip hears it with its sender's settings, to tell whether it was on its channel.
        datagram = wrap(d.frame, d.settings) if d.settings is not None and self.keyed[to] is not None else d.frame
        try:
            self.socks[to].sendto(datagram, self.payload_addrs[to])
        except OSError:
            pass  # payload gone: lost all the same

    # ------------------------------------------------------------ uplink

    def _uplink(self, station_index: int) -> None:
        try:
            frame, _ = self.outs[station_index].recvfrom(65535)
        except (BlockingIOError, InterruptedError):
            return
        except ConnectionError:
            return  # ICMP "port unreachable" from a downlink send while the ground was down
        t = self.clock()
        self.stats.uplink_in += 1
        if self.uplink is not None:
            self.uplink.write(frame.hex() + "\n")
            self.uplink.flush()
        reached = False
        for b, heard in self.fleet.uplink(frame, station_index, t):
            if self.payload_addrs[b] is None:
                continue
            try:
                self.socks[b].sendto(heard, self.payload_addrs[b])
                reached = True
            except OSError:
                pass  # payload gone: lost all the same
        # Counted per frame: forwarded when at least one balloon got it.
        if reached:
            self.stats.uplink_forwarded += 1
        else:
            self.stats.uplink_dropped += 1

    # ------------------------------------------------------------ the end

    @staticmethod
    def _stations_dict(radio) -> list[dict]:
        stations = radio.stats_dict()
        for entry, st in zip(stations, radio.stations):
            entry["forward"] = f"{st.forward[0]}:{st.forward[1]}"
        return stations

    def stats_dict(self) -> dict:
        """Balloon 0's counts as a lone payload's; with several balloons also `balloons` (each one's
        frames and per-station blocks) and `peers` (what each balloon heard of each other; its
        `delivered` counts what the air let through, `unaddressed` how much of that the bench
        could not send because the hearer had not sent a frame yet)."""
        out = {**asdict(self.stats), "stations": self._stations_dict(self.radio), "timeline": self.radio.timeline()}
        out["airtime_s"] = round(self.stats.airtime_s, 3)
        if not self.fleet.alone:
            out["balloons"] = [
                {"balloon": b, "frames_in": self.balloon_in[b], "frames_forwarded": self.balloon_forwarded[b],
                 "airtime_s": round(self.balloon_airtime_s[b], 3), "stations": self._stations_dict(r),
                 "timeline": r.timeline()}
                for b, r in enumerate(self.fleet.radios)]
            out["peers"] = [{**p, "unaddressed": self.unaddressed[(p["from"], p["to"])]}
                            for p in self.fleet.peers_dict()]
        return out

    def close(self, stats_path: Path | None = None) -> None:
        for air, times in self.airs:
            air.close()
            times.close()
        if self.uplink is not None:
            self.uplink.close()
        for sock in self.socks:
            sock.close()
        for out in self.outs:
            out.close()
        if stats_path is not None:
            tmp = stats_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.stats_dict(), indent=2))
            os.replace(tmp, stats_path)
