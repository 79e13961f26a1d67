"""The radio channel on the bench: a UDP relay between the payload and its ground stations.

Frames from the payload arrive on one port; each is written to `air.hex` (what was
put on the air, in order, before any loss) and handed to `RadioChannel`
(`sim/channel/radio.py`: horizon, link budget, Gilbert–Elliott bursts, bit errors,
duplicates, reordering, outages), which says what each ground station hears; that is
forwarded to the station's UDP address. Runs until SIGTERM/SIGINT.

The uplink runs the other way: each station has its own forwarding socket, so what a
ground station sends back to it (NACKs) is known to come through that station; it is
written to `uplink.hex` and relayed to wherever the latest payload frame came from,
through that station's uplink losses and the payload's half duplex.

    payload ──sock──▶ channel ──outs[i]──▶ ground station i
    payload ◀──sock── channel ◀──outs[i]── ground station i

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

from ..channel.loss import LossSpec
from ..channel.radio import UPLINK_SEED, ChannelConfig, Delivery, GroundStation, Position, RadioChannel
from ..world.flight import Flight, FlightPlan

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
    ):
        """`stations` without a `forward` of their own send to `forward`. `clock` gives
        flight seconds (default: a `WorldClock` at 60×); a `speedup` attribute on it turns
        flight-time delays into wall time. `bench` (a `sim.bench.lockstep.LockstepClock`)
        replaces both: its flight time, its sockets, its waits."""
        base = config if config is not None else ChannelConfig(path_loss=False, half_duplex=False)
        cfg = replace(base, loss=loss, uplink_loss=uplink_loss)
        stations = [replace(s, forward=s.forward or forward) for s in (stations or [launch_station(seed)])]
        self.radio = RadioChannel(stations, position or balloon_position(seed), cfg, seed)
        self.bench = bench
        self.clock = bench.elapsed_s if bench is not None else (clock or WorldClock(None, DEFAULT_SPEEDUP))
        udp = bench.udp_socket if bench is not None else (lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        self.forward = stations[0].forward
        self.payload_addr: tuple | None = None  # where the latest payload frame came from
        self.stop = stop
        self.stats = ChannelStats()
        self._forwarded: set[int] = set()  # downlink seqs that reached some station
        # (due, tiebreak, delivery): due in flight seconds on the lockstep, else in wall seconds
        # (time.monotonic()), so a test that sets flight time by hand still sees copies arrive.
        self._queue: list[tuple[float, int, Delivery]] = []
        self._tiebreak = itertools.count()
        self.sock = udp()
        try:
            self.sock.bind(listen)
        except OSError as e:
            raise OSError(f"channel cannot listen on {listen[0]}:{listen[1]}: {e.strerror}") from e
        host, port = self.sock.getsockname()[:2]
        log.info("listening", address=f"{host}:{port}", forward=f"{self.forward[0]}:{self.forward[1]}",
                 loss=loss.mean_loss, stations=[s.name for s in stations], path_loss=cfg.path_loss)
        # One per station, uplink says who sent it; bound to that station's uplink port, if given.
        self.outs = [_bind_towards(s.forward, udp, port) for s, port in
                     itertools.zip_longest(stations, uplink_ports[:len(stations)], fillvalue=0)]
        self.out = self.outs[0]
        self.sock.setblocking(False)
        self.air = open(air_hex, "a", encoding="ascii")
        # Beside it, line for line, the flight second each frame was heard: gaps and duty cycle on air.
        self.air_times = open(Path(air_hex).with_suffix(".times"), "a", encoding="ascii")
        self.uplink = open(uplink_hex, "a", encoding="ascii") if uplink_hex is not None else None

    @property
    def speedup(self) -> float:
        return getattr(self.clock, "speedup", DEFAULT_SPEEDUP)

    def _wait(self) -> list:
        """The sockets with something to read, waiting at most until the next delivery is due."""
        socks = [self.sock, *self.outs]
        if self.bench is not None:
            return self.bench.wait_readable(socks, self._due_in_s(), self.stop)
        ready, _, _ = select.select(socks, [], [], max(min(POLL_S, self._due_in_s() / self.speedup), 0.0))
        return ready

    # ------------------------------------------------------------ the loop

    def run(self) -> None:
        while not self.stop.is_set():
            # One thread over all sockets; the timeout is how promptly a stop or a due frame is noticed.
            ready = self._wait()
            if self.sock in ready:
                self._downlink()
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
        if (release := self.radio.next_release_s()) is not None:
            due.append(release)
        if self.bench is not None:
            return max(min(due) - now, 0.0) if due else None  # nothing due: wait for a frame
        return max(min([now + POLL_S * self.speedup, *due]) - now, 0.0)

    def _send_due(self, everything: bool = False) -> None:
        for d in self.radio.release(self.clock(), everything=everything):
            self._send(d)
        now = self._queue_now()
        while self._queue and (everything or self._queue[0][0] <= now):
            self._send(heapq.heappop(self._queue)[2])

    # ------------------------------------------------------------ downlink

    def _downlink(self) -> None:
        try:
            frame, peer = self.sock.recvfrom(65535)
        except (BlockingIOError, InterruptedError):
            return
        except ConnectionError:
            return  # an ICMP error from an earlier uplink send to a payload that is gone
        t = self.clock()  # the moment it was heard, before anything else takes time
        self.payload_addr = peer
        self.stats.frames_in += 1
        self.stats.bytes_in += len(frame)
        self.stats.frames_dropped = self.stats.frames_in - self.stats.frames_forwarded
        self.air.write(frame.hex() + "\n")
        self.air.flush()
        self.air_times.write(f"{t:.3f}\n")
        self.air_times.flush()
        for d in self.radio.downlink(frame, t):
            if d.delay_s > 0:
                late = d.delay_s if self.bench is not None else d.delay_s / self.speedup
                heapq.heappush(self._queue, (self._queue_now() + late, next(self._tiebreak), d))
            else:
                self._send(d)

    def _send(self, d: Delivery) -> None:
        station = self.radio.stations[d.station_index]
        try:
            self.outs[d.station_index].sendto(d.frame, station.forward)
        except OSError:
            return  # ground not listening: lost all the same
        self.stats.copies_forwarded += 1
        self.stats.copies_corrupted += d.corrupted
        if d.seq not in self._forwarded:
            self._forwarded.add(d.seq)
            self.stats.frames_forwarded += 1
            self.stats.frames_dropped = self.stats.frames_in - self.stats.frames_forwarded

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
        heard = self.radio.uplink(frame, station_index, t)
        if heard is None or self.payload_addr is None:
            self.stats.uplink_dropped += 1
            return
        try:
            self.sock.sendto(heard, self.payload_addr)
            self.stats.uplink_forwarded += 1
        except OSError:
            self.stats.uplink_dropped += 1  # payload gone: lost all the same

    # ------------------------------------------------------------ the end

    def stats_dict(self) -> dict:
        stations = self.radio.stats_dict()
        for entry, st in zip(stations, self.radio.stations):
            entry["forward"] = f"{st.forward[0]}:{st.forward[1]}"
        return {**asdict(self.stats), "stations": stations, "timeline": self.radio.timeline()}

    def close(self, stats_path: Path | None = None) -> None:
        self.air.close()
        self.air_times.close()
        if self.uplink is not None:
            self.uplink.close()
        self.sock.close()
        for out in self.outs:
            out.close()
        if stats_path is not None:
            tmp = stats_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.stats_dict(), indent=2))
            os.replace(tmp, stats_path)
