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

Burst framing (`RawSerialSource`, a transparent UART LoRa module such as an Ebyte
E32/E22 in normal mode): the module writes each packet it hears to its UART as one
binary burst, so a frame is the bytes between two pauses of `gap_s`.

Sources that can transmit have `send(frame, peer)`, used for the uplink: `peer` is
where it goes, configured by the listener and never taken from a frame (anyone can send
a datagram). For UDP it is the bridge named by `listen --uplink-to`; for serial sources
it is `(device,)` and the answer goes out on the same port, framed the way that port speaks:

* hex-line bridge (`SerialSource`): the frame as one line of hex and "\n" — the
  contract such a bridge must honour: it transmits each line it is given as one packet;
* KISS TNC (`KissSerialSource`): one KISS data frame for TNC port 0;
* transparent module (`RawSerialSource`): the frame's bytes in one write, then a pause
  so the module sends it as a packet of its own.
"""

from __future__ import annotations

import socket
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple, TextIO

import structlog

from stratoecho import wire
from stratoecho.wire.kiss import MAX_FRAME, KissDecoder, kiss_encode

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


def receive_datagram(sock: socket.socket, what: str) -> tuple[bytes, tuple] | None:
    """One datagram and its sender from a socket with a timeout (POLL_S); None when none came
    in time; SourceError naming `what` (the port, the address) when receiving fails."""
    try:
        return sock.recvfrom(65535)
    except (TimeoutError, BlockingIOError):
        return None
    except OSError as e:
        raise SourceError(f"{what}: receive failed: {e}") from e


def bind_shared_udp(host: str, port: int, what: str) -> socket.socket:
    """A UDP socket on HOST:PORT that other programs on this machine may bind as well
    (SO_REUSEADDR, and SO_REUSEPORT where the system has it, as the Horus tools set them):
    a broadcast reaches every socket bound to its port, so a chase-car map and this
    listener both hear it. A datagram sent to one address (not broadcast) reaches one of them.
    Bound to all interfaces (host "" or 0.0.0.0) to hear broadcasts from the network."""
    try:
        family, _, _, _, sockaddr = socket.getaddrinfo(host or "0.0.0.0", port, type=socket.SOCK_DGRAM)[0]
    except socket.gaierror as e:
        raise SourceError(f"cannot resolve {what} address {host}:{port}: {e.strerror}") from e
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(sockaddr)
    except OSError as e:
        sock.close()
        raise SourceError(f"cannot bind {what} on UDP {host or '0.0.0.0'}:{port}: {e.strerror}") from e
    sock.settimeout(POLL_S)
    return sock


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


class UdpSource:
    """One UDP datagram is one frame. Port 0 binds a free port; `address` tells which.

    With `clock` (a `stratoecho.clock` clock; the bench's lockstep under `sim fly`) the socket
    is the clock's and waiting for a frame is a wait on it, ended at once by `stop`."""

    def __init__(self, host: str, port: int, clock=None, stop=None) -> None:
        self.clock, self.stop = clock, stop
        self.errors: Counter = Counter()
        try:
            family, _, _, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
        except socket.gaierror as e:
            raise SourceError(f"cannot resolve UDP address {host}:{port}: {e.strerror}") from e
        self._sock = clock.udp_socket(family) if clock is not None else socket.socket(family, socket.SOCK_DGRAM)
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
            if self.clock is not None:
                # On the lockstep nothing else needs us until a frame comes or we are stopped.
                if not self.clock.wait_readable([self._sock], None if self.clock.lockstep else POLL_S, self.stop):
                    yield None
                    continue
            got = receive_datagram(self._sock, f"UDP {self.address[0]}:{self.address[1]}")
            if got is None:
                yield None
                continue
            data, peer = got
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
            parsed = parse_signal_line(line, where, self.errors)
            if parsed is not None:
                yield Received(parsed[0], f"replay {where}", None, parsed[1], parsed[2])

    def close(self) -> None:
        if self._owned:
            self._file.close()


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


FrameSource = UdpSource | ReplaySource | SerialSource  # KissSerialSource and RawSerialSource are SerialSources
