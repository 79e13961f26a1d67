"""Serial ports: a LoRa UART bridge printing hex lines (`SerialSource`), a KISS TNC
(`KissSerialSource`), a transparent Ebyte module cut into frames at pauses (`RawSerialSource`);
each sends the uplink out of the same port, framed the way that port speaks."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

import structlog

from stratoecho.wire.kiss import MAX_FRAME, KissDecoder, kiss_encode

from .base import MAX_LINE, POLL_S, WRITE_TIMEOUT_S, Received, SourceError, parse_signal_line

log = structlog.get_logger(__name__)


class SerialSource:
    """A serial port or pyserial URL (`/dev/ttyUSB0`, `loop://`, `socket://host:port`)
    carrying one hex frame a line, as many LoRa UART bridges print received packets.
    `send` writes a frame the same way, one hex line, for the bridge to transmit."""

    def __init__(self, device: str, baud: int = 115200, *, read_timeout_s: float = POLL_S) -> None:
        self.errors: Counter = Counter()
        self.device = device
        self.peer = (device,)  # replies go out on the port they came in on
        import serial  # lazily: only this source needs pyserial

        self._serial_error = serial.SerialException
        try:
            self.port = serial.serial_for_url(device, baudrate=baud, timeout=read_timeout_s,
                                              write_timeout=WRITE_TIMEOUT_S)
        except (serial.SerialException, ValueError) as e:
            raise SourceError(f"cannot open serial {device}: {e}") from e
        self._buffer = bytearray()
        self._lineno = 0

    def __iter__(self) -> Iterator[Received | None]:
        while True:
            try:
                heard = self._read()
            except self._serial_error as e:
                yield from self._frames()  # what arrived before the failure still counts
                raise SourceError(f"serial {self.device}: read failed: {e}") from e
            if heard:
                yield from self._frames()
            else:
                yield None

    def _read(self) -> bool:
        """Block for the first byte (up to POLL_S), then take what is already waiting.
        Buffers each part as soon as it is read, so a failing second read loses nothing."""
        first = self.port.read(1)
        if not first:
            return False
        self._buffer += first
        self._buffer += self.port.read(self.port.in_waiting)
        return True

    def _frames(self) -> Iterator[Received]:
        """The frames complete in the buffer, taken out of it: here, hex lines."""
        while (end := self._buffer.find(b"\n")) >= 0:
            raw = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            self._lineno += 1
            where = f"{self.device} line {self._lineno}"
            parsed = parse_signal_line(raw.decode("ascii", errors="replace"), where, self.errors)
            if parsed is not None:
                yield Received(parsed[0], f"serial {self.device}", self.peer, parsed[1], parsed[2])
        if len(self._buffer) > MAX_LINE:
            # No newline in sight: noise on the line. Drop it rather than grow without bound.
            self.errors["line too long"] += 1
            log.warning("serial line too long, dropped", device=self.device, length=len(self._buffer))
            self._buffer.clear()

    def send(self, frame: bytes, peer: tuple | None = None) -> None:
        """One uplink frame to the bridge as one hex line; `peer` is this port, whatever it says.
        Raises OSError (serial.SerialException is one) if the write fails or times out."""
        self._write(frame.hex().encode("ascii") + b"\n")

    def _write(self, data: bytes) -> None:
        self.port.write(data)
        self.port.flush()

    def close(self) -> None:
        self.port.close()


class KissSerialSource(SerialSource):
    """A KISS TNC on a serial port or pyserial URL: binary KISS data frames instead of hex lines.
    Frames from any TNC port are taken (a LoRa TNC has one)."""

    def __init__(self, device: str, baud: int = 115200) -> None:
        super().__init__(device, baud)
        self._kiss = KissDecoder()
        self.errors = self._kiss.errors  # one counter: the listen summary shows KISS drops as the source's

    def _frames(self) -> Iterator[Received]:
        chunk = bytes(self._buffer)
        self._buffer.clear()  # the decoder keeps any partial frame itself, bounded
        for frame in self._kiss.feed(chunk):
            yield Received(frame, f"kiss {self.device}", self.peer)

    def send(self, frame: bytes, peer: tuple | None = None) -> None:
        """One uplink frame as one KISS data frame for TNC port 0, which the TNC transmits."""
        self._write(kiss_encode(frame))


class RawSerialSource(SerialSource):
    """A transparent UART LoRa module (Ebyte E32/E22 in normal mode, M0 = M1 = low) on a
    serial port: each packet it hears comes out of its UART as one binary burst.

    A frame is a burst: the bytes between two pauses of at least `gap_s`. The module
    writes a packet back to back, and a USB-serial adapter may hand it over in chunks up
    to its latency timer apart (16 ms on FTDI by default); two packets are at least the
    second one's time on air apart (~40 ms for a short packet at SF7/125 kHz, more at the
    payload's settings). `gap_s` sits between the two. AUX, which USB boards rarely bring
    out, is not needed. A burst longer than `MAX_FRAME` is no single packet: it is
    dropped (counted as "burst too long") without being buffered whole.

    The pause is measured while iterating: the listen loop handles each frame in
    milliseconds, far less than the time between two packets. (While it answers a
    window, `send` may hold it for a few `tx_gap_s`; the payload is listening then,
    not sending.)

    `send` writes a frame in one go; the module sends what arrives in one burst as one
    packet. Without AUX the ground cannot see when the module has put a packet on air, and
    the module packs whatever its buffer holds into the next packet, so two frames written
    while one is still on air would leave as one packet: `send` therefore leaves at least
    `tx_gap_s` between the starts of two frames — set it above one uplink frame's time on
    air at the link's settings (1.25 s for 255 bytes at SF9/125 kHz).
    """

    def __init__(self, device: str, baud: int = 9600, *, gap_s: float = 0.03, tx_gap_s: float = 1.3) -> None:
        # The read timeout is the gap: a read that times out mid-burst is the burst's end.
        super().__init__(device, baud, read_timeout_s=gap_s)
        self.gap_s, self.tx_gap_s = gap_s, tx_gap_s
        self._too_long = False
        self._last_send: float | None = None

    def __iter__(self) -> Iterator[Received | None]:
        idle_since = time.monotonic()
        while True:
            try:
                heard = self._read()
            except self._serial_error as e:
                yield from self._burst_end()  # a burst cut by the failure is still what was heard
                raise SourceError(f"serial {self.device}: read failed: {e}") from e
            if heard:
                self._bound()
                continue
            # gap_s without a byte: whatever was arriving is complete.
            now = time.monotonic()
            ended = list(self._burst_end())
            if ended:
                idle_since = now
                yield from ended
            elif now - idle_since >= POLL_S:
                idle_since = now
                yield None

    def _bound(self) -> None:
        if self._too_long:
            self.errors["burst too long"] += len(self._buffer)
            self._buffer.clear()
        elif len(self._buffer) > MAX_FRAME:
            self._too_long = True
            log.warning("serial burst longer than a LoRa packet, dropped", device=self.device)
            self.errors["burst too long"] += len(self._buffer)
            self._buffer.clear()

    def _burst_end(self) -> Iterator[Received]:
        frame = bytes(self._buffer)
        self._buffer.clear()
        self._too_long = False
        if frame:
            yield Received(frame, f"raw {self.device}", self.peer)

    def send(self, frame: bytes, peer: tuple | None = None) -> None:
        """One uplink frame in one write, at least `tx_gap_s` after the previous one."""
        if self._last_send is not None:
            # One bounded wait, only when frames follow each other (a window's commands).
            wait = self._last_send + self.tx_gap_s - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        self._write(frame)
        self._last_send = time.monotonic()
