"""The radio channel on the bench: a UDP relay that loses frames in bursts.

Frames from the payload arrive on one port; each is written to `air.hex` (what was
put on the air, in order, before any loss) and forwarded to the ground station
unless the Gilbert–Elliott channel drops it. Runs until SIGTERM/SIGINT.

The uplink runs the other way: what the ground station sends back to the relay's
forwarding socket (NACKs) is written to `uplink.hex` and relayed to wherever the
latest payload frame came from, through its own Gilbert–Elliott loss with its own
seed stream (so adding uplink traffic does not change which downlink frames drop).

    payload ──sock──▶ channel ──out──▶ ground
    payload ◀──sock── channel ◀──out── ground
"""

from __future__ import annotations

import json
import os
import select
import socket
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

import structlog

from .loss import GilbertElliott, LossSpec

log = structlog.get_logger(__name__)

POLL_S = 0.2  # how long the relay waits on its sockets before checking the stop event
UPLINK_SEED = 0x55504C4B  # "UPLK": mixed into the seed for the uplink's own loss stream


@dataclass
class ChannelStats:
    frames_in: int = 0
    frames_forwarded: int = 0
    frames_dropped: int = 0
    bytes_in: int = 0
    uplink_in: int = 0  # frames the ground sent back
    uplink_forwarded: int = 0
    uplink_dropped: int = 0


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
    ):
        self.forward = forward
        self.loss = GilbertElliott(loss, seed)
        # Its own random stream: uplink traffic must not shift the downlink's losses.
        self.uplink_loss = GilbertElliott(uplink_loss if uplink_loss is not None else loss, seed ^ UPLINK_SEED)
        self.payload_addr: tuple | None = None  # where the latest payload frame came from
        self.stop = stop
        self.stats = ChannelStats()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.bind(listen)
        except OSError as e:
            raise OSError(f"channel cannot listen on {listen[0]}:{listen[1]}: {e.strerror}") from e
        host, port = self.sock.getsockname()[:2]
        log.info("listening", address=f"{host}:{port}", forward=f"{forward[0]}:{forward[1]}", loss=loss.mean_loss)
        self.out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        # Bound now, not implicitly at the first sendto, so select() can wait on it from the start;
        # on loopback only when the ground is local, so no one else can inject uplink through it.
        self.out.bind(("127.0.0.1" if forward[0] in ("127.0.0.1", "localhost") else "0.0.0.0", 0))
        self.out.setblocking(False)
        self.sock.setblocking(False)
        self.air = open(air_hex, "a", encoding="ascii")
        self.uplink = open(uplink_hex, "a", encoding="ascii") if uplink_hex is not None else None

    def run(self) -> None:
        while not self.stop.is_set():
            # One thread over both sockets; the timeout is how promptly a stop is noticed.
            ready, _, _ = select.select([self.sock, self.out], [], [], POLL_S)
            if self.sock in ready:
                self._downlink()
            if self.out in ready:
                self._uplink()

    def _downlink(self) -> None:
        try:
            frame, peer = self.sock.recvfrom(65535)
        except (BlockingIOError, InterruptedError):
            return
        except ConnectionError:
            return  # an ICMP error from an earlier uplink send to a payload that is gone
        self.payload_addr = peer
        self.stats.frames_in += 1
        self.stats.bytes_in += len(frame)
        self.air.write(frame.hex() + "\n")
        self.air.flush()
        if self.loss.drop():
            self.stats.frames_dropped += 1
            return
        try:
            self.out.sendto(frame, self.forward)
            self.stats.frames_forwarded += 1
        except OSError:
            self.stats.frames_dropped += 1  # ground not listening: lost all the same

    def _uplink(self) -> None:
        try:
            frame, _ = self.out.recvfrom(65535)
        except (BlockingIOError, InterruptedError):
            return
        except ConnectionError:
            return  # ICMP "port unreachable" from a downlink send while the ground was down
        self.stats.uplink_in += 1
        if self.uplink is not None:
            self.uplink.write(frame.hex() + "\n")
            self.uplink.flush()
        if self.uplink_loss.drop() or self.payload_addr is None:
            self.stats.uplink_dropped += 1
            return
        try:
            self.sock.sendto(frame, self.payload_addr)
            self.stats.uplink_forwarded += 1
        except OSError:
            self.stats.uplink_dropped += 1  # payload gone: lost all the same

    def close(self, stats_path: Path | None = None) -> None:
        self.air.close()
        if self.uplink is not None:
            self.uplink.close()
        self.sock.close()
        self.out.close()
        if stats_path is not None:
            tmp = stats_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(asdict(self.stats), indent=2))
            os.replace(tmp, stats_path)
