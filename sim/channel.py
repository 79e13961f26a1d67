"""The radio channel on the bench: a UDP relay that loses frames in bursts.

Frames from the payload arrive on one port; each is written to `air.hex` (what was
put on the air, in order, before any loss) and forwarded to the ground station
unless the Gilbert–Elliott channel drops it. Runs until SIGTERM/SIGINT.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

import structlog

from .loss import GilbertElliott, LossSpec

log = structlog.get_logger(__name__)


@dataclass
class ChannelStats:
    frames_in: int = 0
    frames_forwarded: int = 0
    frames_dropped: int = 0
    bytes_in: int = 0


class Channel:
    def __init__(
        self,
        listen: tuple[str, int],
        forward: tuple[str, int],
        loss: LossSpec,
        seed: int,
        air_hex: Path,
        stop: threading.Event,
    ):
        self.forward = forward
        self.loss = GilbertElliott(loss, seed)
        self.stop = stop
        self.stats = ChannelStats()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.bind(listen)
        except OSError as e:
            raise OSError(f"channel cannot listen on {listen[0]}:{listen[1]}: {e.strerror}") from e
        self.sock.settimeout(0.2)  # so a stop is noticed promptly
        host, port = self.sock.getsockname()[:2]
        log.info("listening", address=f"{host}:{port}", forward=f"{forward[0]}:{forward[1]}", loss=loss.mean_loss)
        self.out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.air = open(air_hex, "a", encoding="ascii")

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                frame, _ = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            self.stats.frames_in += 1
            self.stats.bytes_in += len(frame)
            self.air.write(frame.hex() + "\n")
            self.air.flush()
            if self.loss.drop():
                self.stats.frames_dropped += 1
                continue
            try:
                self.out.sendto(frame, self.forward)
                self.stats.frames_forwarded += 1
            except OSError:
                self.stats.frames_dropped += 1  # ground not listening: lost all the same

    def close(self, stats_path: Path | None = None) -> None:
        self.air.close()
        self.sock.close()
        self.out.close()
        if stats_path is not None:
            tmp = stats_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(asdict(self.stats), indent=2))
            os.replace(tmp, stats_path)
