"""What every frame source shares: what it yields (`Received`, or a `Position` another
receiver decoded), the error it raises (`SourceError`), its poll interval, and the hex-line
format with its signal report (`parse_signal_line`) that replay files and serial bridges share."""

from __future__ import annotations

from collections import Counter
from typing import NamedTuple

import structlog

from stratoecho import wire

log = structlog.get_logger(__name__)

POLL_S = 0.2  # how long a live source blocks before yielding None
MAX_LINE = 4096  # a serial line longer than this is garbage, not a frame (255 B = 510 hex digits)
WRITE_TIMEOUT_S = 5.0  # a serial write (uplink) that takes longer fails rather than stalling listen


class SourceError(Exception):
    """A source that cannot be opened or read any more; the message says which and why."""


class Received(NamedTuple):
    data: bytes
    origin: str  # where it came from: "udp 127.0.0.1:40001", "replay air.hex:12", "serial /dev/ttyUSB0"
    peer: tuple | None = None  # where a reply goes: the sender's socket address (UDP), (device,) for serial
    rssi_dbm: float | None = None  # signal, where the radio reports it (a hex line's rssi=/snr=)
    snr_db: float | None = None


class Position(NamedTuple):
    """A position another receiver decoded and passed on as values, not as a frame of ours
    (horus-gui's PAYLOAD_SUMMARY, `horus_udp`): it goes to the store as it is, with no frame row."""

    telemetry: wire.Telemetry
    origin: str  # "horus-udp 192.168.1.20"


def describe_peer(peer: tuple) -> str:
    """A peer for logs: HOST:PORT for a socket address, the device for a serial port."""
    return f"{peer[0]}:{peer[1]}" if len(peer) >= 2 else str(peer[0])


def parse_signal_line(line: str, where: str, errors: Counter) -> tuple[bytes, float | None, float | None] | None:
    """A hex line, optionally followed by the radio's signal report: `HEX rssi=-112.5 snr=-7.25`
    (a bridge that knows the packet's RSSI and SNR says so; the values are kept per frame)."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    hex_text, *extra = text.split()
    signal: dict[str, float] = {}
    for token in extra:
        name, _, value = token.partition("=")
        try:
            if name not in ("rssi", "snr"):
                raise ValueError(name)
            signal[name] = float(value)
        except ValueError:
            errors["bad signal field"] += 1  # the frame still counts; the report is dropped
            log.warning("signal field not understood", where=where, field=token[:40])
    try:
        return bytes.fromhex(hex_text), signal.get("rssi"), signal.get("snr")
    except ValueError:
        errors["bad hex"] += 1
        log.warning("bad hex line skipped", where=where, line=text[:80])
        return None
