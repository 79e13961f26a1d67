"""A simulated u-blox M8 GPS on a pseudo-terminal.

The driver opens `FakeUblox.port` (the pty's slave side) exactly as it would open
/dev/serial0. A worker thread writes one GGA and one RMC per epoch (every `period_s`
real seconds) with real checksums, from `position(t)` — t in simulated seconds since
start, `time_scale` simulated seconds per real second, or the bench world's flight
clock when `sim_clock` is given — and answers UBX on the same
line: a well-formed CFG-NAV5 gets ACK-ACK (and sets `dyn_model`), a malformed one
ACK-NAK, a frame with a bad checksum nothing at all (as the chip does).

Faults: `silence()` (a hung module: no output, no answers), `garbage()` (random
bytes and sentences with corrupted checksums), `reset()` (a brown-out: back to
the portable model, forgetting the setting), `resume()` (back to normal).

The framing here is written independently of payload.parts.gps, so the tests check the
driver against a second implementation rather than against itself.
"""

from __future__ import annotations

import functools
import operator
import os
import random
import struct
import threading
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from stratoecho.clock import Clock


@dataclass(frozen=True)
class SimFix:
    lat: float
    lon: float
    alt_m: float
    sats: int = 9
    quality: int = 1  # 0: no fix (the module then writes empty position fields, RMC status V)
    hdop: float = 0.9
    speed_mps: float = 0.0
    course_deg: float = 0.0


def _nmea(body: str) -> bytes:
    ck = functools.reduce(operator.xor, body.encode("ascii"), 0)
    return f"${body}*{ck:02X}\r\n".encode("ascii")


def _angle(value: float, degree_digits: int, hemispheres: str) -> tuple[str, str]:
    """NMEA's (d)ddmm.mmmmm and the hemisphere's letter (`hemispheres`: positive, then negative)."""
    a = abs(value)
    d = int(a)
    return f"{d:0{degree_digits}d}{(a - d) * 60:08.5f}", hemispheres[value < 0]


def nmea_epoch(utc: datetime, fix: SimFix | None, talker: str = "GN") -> bytes:
    """GGA + RMC as a u-blox M8 writes them (NMEA 4.x field layout)."""
    hms = utc.strftime("%H%M%S.") + f"{utc.microsecond // 10000:02d}"
    dmy = utc.strftime("%d%m%y")
    if fix is None or fix.quality == 0:
        gga = f"{talker}GGA,{hms},,,,,0,{fix.sats if fix else 0:02d},99.99,,,,,,"
        rmc = f"{talker}RMC,{hms},V,,,,,,,{dmy},,,N,V"
        return _nmea(gga) + _nmea(rmc)
    lat, ns = _angle(fix.lat, 2, "NS")
    lon, ew = _angle(fix.lon, 3, "EW")
    gga = f"{talker}GGA,{hms},{lat},{ns},{lon},{ew},{fix.quality},{fix.sats:02d},{fix.hdop:.2f},{fix.alt_m:.1f},M,47.0,M,,"
    knots = fix.speed_mps / 0.514444
    rmc = f"{talker}RMC,{hms},A,{lat},{ns},{lon},{ew},{knots:.3f},{fix.course_deg:.2f},{dmy},,,A,V"
    return _nmea(gga) + _nmea(rmc)


def _fletcher(body: bytes) -> bytes:
    a = b = 0
    for x in body:
        a = (a + x) % 256
        b = (b + a) % 256
    return bytes([a, b])


def _ubx(cls: int, msg_id: int, payload: bytes) -> bytes:
    body = bytes([cls, msg_id]) + struct.pack("<H", len(payload)) + payload
    return b"\xb5\x62" + body + _fletcher(body)


VALID_DYN_MODELS = {0, 2, 3, 4, 5, 6, 7, 8, 9, 10}


class FakeUblox:
    def __init__(
        self,
        position: Callable[[float], SimFix | None],
        *,
        start_utc: datetime = datetime(2025, 6, 21, 23, 59, 50, tzinfo=timezone.utc),
        period_s: float = 0.1,
        time_scale: float = 1.0,
        talker: str = "GN",
        seed: int = 1,
        sim_clock: Callable[[], float] | None = None,
        clock=None,
    ):
        self.position, self.start_utc = position, start_utc
        self.period_s, self.time_scale, self.talker = period_s, time_scale, talker
        self.dyn_model = 0  # portable: the power-on default
        self.configs: list[bytes] = []  # CFG-NAV5 payloads received, in order
        self.acks = self.naks = 0
        self.epochs = 0
        self.overflowed = 0
        self._rng = random.Random(seed)
        self._mode = "normal"
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)  # no flow control on a UART: a host that does not read loses bytes
        self.port = os.ttyname(self._slave)
        self._wake_r, self._wake_w = os.pipe()
        self._t0 = time.monotonic()
        self._sim_clock = sim_clock  # the bench world's flight clock, when it owns time
        # On the bench's lockstep clock (`clock`) the module is one of its tasks: epochs fall on
        # flight seconds (`period_s` is then flight time) and what the driver writes is read in
        # turn. Without one it keeps the system's time.
        self._clock = clock or Clock()
        self._closing = self._clock.event()
        self._thread = self._clock.thread(self._run, "fake-ublox")

    # ------------------------------------------------------------------ switches

    def silence(self) -> None:
        self._set_mode("silent")

    def garbage(self) -> None:
        self._set_mode("garbage")

    def resume(self) -> None:
        self._set_mode("normal")

    def reset(self) -> None:
        """A brown-out: the module comes back in its default (portable) model."""
        with self._lock:
            self.dyn_model = 0
            self._changed.notify_all()

    def sim_time_s(self) -> float:
        if self._sim_clock is not None:
            return self._sim_clock()
        return (time.monotonic() - self._t0) * self.time_scale

    def wait_for(self, predicate: Callable[[FakeUblox], bool], timeout_s: float = 5.0) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self), timeout_s)

    def close(self) -> None:
        self._closing.set()
        os.write(self._wake_w, b"!")
        self._clock.join(self._thread, 5.0)
        for fd in (self._master, self._slave, self._wake_r, self._wake_w):
            os.close(fd)

    def __enter__(self) -> FakeUblox:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ internals

    def _set_mode(self, mode: str) -> None:
        with self._lock:
            self._mode = mode
            self._changed.notify_all()

    def _write(self, data: bytes) -> None:
        try:
            written = os.write(self._master, data)
        except BlockingIOError:
            written = 0
        except OSError:
            return  # closing
        self.overflowed += len(data) - written

    def _run(self) -> None:
        rx = bytearray()
        clock = self._clock
        next_epoch = clock.elapsed_s()
        while not self._closing.is_set():
            ready = clock.wait_readable([self._master, self._wake_r], max(0.0, next_epoch - clock.elapsed_s()),
                                        self._closing)
            if self._wake_r in ready:
                os.read(self._wake_r, 64)
            if self._master in ready:
                try:
                    rx += os.read(self._master, 4096)
                except OSError:
                    pass  # the slave side is closed and re-opened by the driver
                self._handle_rx(rx)
            if clock.elapsed_s() >= next_epoch:
                next_epoch += self.period_s
                self._epoch()

    def _epoch(self) -> None:
        with self._lock:
            mode = self._mode
        if mode == "silent":
            return
        t = self.sim_time_s()
        sentences = nmea_epoch(self.start_utc + timedelta(seconds=t), self.position(t), self.talker)
        if mode == "garbage":
            noise = bytes(self._rng.randrange(256) for _ in range(40))
            corrupted = sentences.replace(b"*", b"*F", 1)[:-6] + b"00\r\n"  # wrong checksums
            self._write(noise + corrupted.replace(b"$", b"$X", 1))
        else:
            self._write(sentences)
        with self._lock:
            self.epochs += 1
            self._changed.notify_all()

    def _handle_rx(self, rx: bytearray) -> None:
        while True:
            start = rx.find(b"\xb5\x62")
            if start < 0:
                del rx[:-1]  # keep a trailing 0xB5
                return
            del rx[:start]
            if len(rx) < 6:
                return
            (length,) = struct.unpack_from("<H", rx, 4)
            if len(rx) < 8 + length:
                return
            body, ck = bytes(rx[2 : 6 + length]), bytes(rx[6 + length : 8 + length])
            del rx[: 8 + length]
            if _fletcher(body) != ck:
                continue  # the chip ignores a frame with a bad checksum
            self._on_ubx(body[0], body[1], body[4:])

    def _on_ubx(self, cls: int, msg_id: int, payload: bytes) -> None:
        with self._lock:
            if self._mode == "silent":
                return
        if (cls, msg_id) != (0x06, 0x24):
            return
        with self._lock:
            self.configs.append(payload)
            ok = len(payload) == 36 and (not payload[0] & 1 or payload[2] in VALID_DYN_MODELS)
            if ok:
                if payload[0] & 1:
                    self.dyn_model = payload[2]
                self.acks += 1
            else:
                self.naks += 1
            self._changed.notify_all()
        self._write(_ubx(0x05, 0x01 if ok else 0x00, bytes([cls, msg_id])))
