"""Frame sources: where the ground station hears frames from.

Every source has the same tiny interface:

* iterating it yields `Received(data, origin, peer)` for each frame, or `None` when a
  poll interval (`POLL_S`) passed with nothing heard, so the caller can check its
  stop event and deadlines without a thread or a sleep; a finite source (replay)
  simply ends;
* `errors` counts what the source itself had to skip (bad hex lines...);
* `close()` releases the socket, port or file.

Opening a source fails with `SourceError`, whose message names what failed
(the address, the device, the path), and nothing else is left open.

Text framing (replay files and serial): one frame a line as a hex string, the
`air.hex` format; blank lines and lines starting with `#` are ignored; spaces
between bytes are allowed. A line that is not hex is counted as "bad hex",
logged with where it was, and skipped.

KISS framing (`KissSerialSource`, a KISS TNC on the serial port): binary frames
between FEND bytes, deframed by `stratoecho.wire.kiss.KissDecoder`; what it has to
drop (bad escapes, oversize frames) is counted in `errors` the same way.
"""

from __future__ import annotations

import socket
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple, TextIO

import structlog

from stratoecho.wire.kiss import KissDecoder

log = structlog.get_logger(__name__)

POLL_S = 0.2  # how long a live source blocks before yielding None
MAX_LINE = 4096  # a serial line longer than this is garbage, not a frame (255 B = 510 hex digits)


class SourceError(Exception):
    """A source that cannot be opened or read any more; the message says which and why."""


class Received(NamedTuple):
    data: bytes
    origin: str  # where it came from: "udp 127.0.0.1:40001", "replay air.hex:12", "serial /dev/ttyUSB0"
    peer: tuple | None = None  # the sender's socket address (UDP only): where a reply goes


def parse_hex_line(line: str, where: str, errors: Counter) -> bytes | None:
    """One line of the hex format -> frame bytes, or None for blank, comment or bad lines."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    try:
        return bytes.fromhex(text)
    except ValueError:
        errors["bad hex"] += 1
        log.warning("bad hex line skipped", where=where, line=text[:80])
        return None


class UdpSource:
    """One UDP datagram is one frame. Port 0 binds a free port; `address` tells which."""

    def __init__(self, host: str, port: int) -> None:
        self.errors: Counter = Counter()
        try:
            family, _, _, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
        except socket.gaierror as e:
            raise SourceError(f"cannot resolve UDP address {host}:{port}: {e.strerror}") from e
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            self._sock.bind(sockaddr)
        except OSError as e:
            self._sock.close()
            raise SourceError(f"cannot bind UDP {host}:{port}: {e.strerror}") from e
        self._sock.settimeout(POLL_S)
        bound = self._sock.getsockname()
        self.address: tuple[str, int] = (bound[0], bound[1])

    def __iter__(self) -> Iterator[Received | None]:
        while True:
            try:
                data, peer = self._sock.recvfrom(65535)
            except TimeoutError:
                yield None
                continue
            except OSError as e:
                raise SourceError(f"UDP {self.address[0]}:{self.address[1]}: receive failed: {e}") from e
            yield Received(data, f"udp {peer[0]}:{peer[1]}", peer)

    def send(self, frame: bytes, addr: tuple) -> None:
        """Send `frame` to `addr` from the listening socket itself: a payload that answers
        through NAT or a channel relay hears replies only from the port it sends to."""
        self._sock.sendto(frame, addr)

    def close(self) -> None:
        self._sock.close()


class ReplaySource:
    """An `air.hex` file, or standard input for '-'; ends at the end of the file."""

    def __init__(self, path: str | Path) -> None:
        self.errors: Counter = Counter()
        self.name = str(path)
        self._file: TextIO
        if self.name == "-":
            self._file, self._owned = sys.stdin, False
            return
        try:
            # Undecodable bytes become U+FFFD and so a "bad hex" line, never an exception.
            self._file = open(path, encoding="utf-8", errors="replace")  # noqa: SIM115 (closed by close())
        except FileNotFoundError as e:
            raise SourceError(f"replay file {self.name} not found") from e
        except OSError as e:
            raise SourceError(f"cannot open replay file {self.name}: {e.strerror}") from e
        self._owned = True

    def __iter__(self) -> Iterator[Received | None]:
        for lineno, line in enumerate(self._file, start=1):
            where = f"{self.name}:{lineno}"
            frame = parse_hex_line(line, where, self.errors)
            if frame is not None:
                yield Received(frame, f"replay {where}")

    def close(self) -> None:
        if self._owned:
            self._file.close()


class SerialSource:
    """A serial port or pyserial URL (`/dev/ttyUSB0`, `loop://`, `socket://host:port`)
    carrying one hex frame a line, as many LoRa UART bridges print received packets."""

    def __init__(self, device: str, baud: int = 115200) -> None:
        self.errors: Counter = Counter()
        self.device = device
        import serial  # lazily: only this source needs pyserial

        self._serial_error = serial.SerialException
        try:
            self.port = serial.serial_for_url(device, baudrate=baud, timeout=POLL_S)
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
            frame = parse_hex_line(raw.decode("ascii", errors="replace"), where, self.errors)
            if frame is not None:
                yield Received(frame, f"serial {self.device}")
        if len(self._buffer) > MAX_LINE:
            # No newline in sight: noise on the line. Drop it rather than grow without bound.
            self.errors["line too long"] += 1
            log.warning("serial line too long, dropped", device=self.device, length=len(self._buffer))
            self._buffer.clear()

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
            yield Received(frame, f"kiss {self.device}")


FrameSource = UdpSource | ReplaySource | SerialSource
