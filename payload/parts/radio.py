"""Radios behind one port (`Radio`): `send(frame)` puts one frame on the air; `receive(timeout_s)`
returns the frames heard (the uplink, asked for in the link's listen windows); `hear(timeout_s)`
the same for a radio left listening between the link's turns; `ready()` says whether there is a
radio to key now. Every radio has all of them: the link calls them, never asks whether they exist.

* `UdpRadio` — the bench radio (and a real link to a ground station over IP).
* `KissRadio` — a KISS TNC on a serial port (`stratoecho.wire.kiss` framing).
* `LoRaUartRadio` — a UART LoRa module in transparent mode (Ebyte E32/E22 style),
  with its M0/M1 mode pins and AUX busy line on GPIO through gpiozero.

`payload.parts.radios.make_radio(cfg.radio)` builds the one the configuration names (an SX127x or
SX126x on SPI is `stratoecho.lora_chips`, shared with the ground). Serial parts take a port
name or any pyserial URL (`/dev/serial0`, `loop://`, `socket://host:port`), GPIO
parts take gpiozero pin names and an optional pin factory, so the tests run the
real code against `loop://`, a pseudo-terminal and gpiozero's `MockFactory`.

pyserial and gpiozero are imported inside the classes that need them: the bench
(UDP) needs neither.
"""

from __future__ import annotations

import os
import select
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import NamedTuple, Protocol, runtime_checkable

import structlog

from stratoecho.lora import LoRaSettings
from stratoecho.lora_chips.chip import RadioError
from stratoecho.wire.kiss import MAX_FRAME, KissDecoder, kiss_encode

from ..clock import Clock

log = structlog.get_logger(__name__)

__all__ = ["KissRadio", "LoRaUartRadio", "Radio", "UartModulePins", "RadioError", "RadioUnavailable", "TonesRadio", "UdpRadio",
           "open_serial"]

CLOSE_POLL_S = 0.25  # how often a wait on a LoRa module's AUX looks whether close() has begun


class RadioUnavailable(RadioError):
    """No radio to send with now; `retry_in_s` until it is tried again. The frame stays queued."""

    def __init__(self, why: str, retry_in_s: float):
        super().__init__(f"radio unavailable ({why}); trying again in {retry_in_s:.0f} s")
        self.why, self.retry_in_s = why, retry_in_s


@runtime_checkable
class TonesRadio(Protocol):
    """A radio that can also key 4FSK (an SX127x stepping its synthesiser: Horus Binary)."""

    def send_tones(self, tones: list[int], base_mhz: float) -> float:
        """Key `tones` (0-3, one a symbol) above `base_mhz`; the seconds keyed."""


class Radio(Protocol):
    receives: bool  # False: transmit only (no uplink, no listen windows)

    def send(self, frame: bytes, settings: LoRaSettings | None = None) -> None:
        """Key one frame; with `settings`, on that channel (a LoRa chip: [radio.pictures]), else the radio's own."""

    def receive(self, timeout_s: float) -> list[bytes]:
        """Frames heard within `timeout_s` (the uplink's listen window); blocks that long at most."""

    def hear(self, timeout_s: float) -> list[bytes]:
        """As `receive`, for a radio that listens turn after turn (a window's whole length, a relay
        between frames): a LoRa chip stays in RX between the turns, so a packet that began between
        two of them is still heard whole. A radio that buffers what it hears anyway: `receive`."""

    def ready(self) -> None:
        """Nothing when the radio can key now; `RadioUnavailable` (with when to try again) when
        there is none, said before a frame's airtime is counted."""

    def close(self) -> None: ...


class UdpRadio:
    """One datagram per frame to HOST:PORT. `clock` times the uplink's waits (flight seconds) and
    makes the socket: on the bench's lockstep, one whose datagrams the bench's time waits for."""

    receives = True

    def __init__(self, host: str, port: int, clock=None):
        self.address = (host, port)
        self.clock = clock or Clock()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = self.clock.udp_socket(family)

    def send(self, frame: bytes, settings: LoRaSettings | None = None) -> None:
        """One datagram; `settings` (a second channel's) only prices it: an IP link has no modes."""
        try:
            self.sock.sendto(frame, self.address)
        except OSError:
            # Nobody listening (ICMP refused) is what a radio with no receiver in range
            # looks like: the frame is on the air all the same.
            pass

    def receive(self, timeout_s: float) -> list[bytes]:
        """Datagrams that reach our sending socket within `timeout_s` flight seconds (the uplink);
        returns as soon as one arrives, an empty list if none does."""
        if not self.clock.wait_readable([self.sock], max(timeout_s, 0.0)):
            return []
        self.sock.setblocking(False)
        try:
            frame, _ = self.sock.recvfrom(65535)
        except (socket.timeout, BlockingIOError):
            return []
        except OSError:
            return []  # e.g. an ICMP "unreachable" from an earlier send: nothing was received
        return [frame]

    def hear(self, timeout_s: float) -> list[bytes]:
        """As `receive`: datagrams wait in the socket between turns."""
        return self.receive(timeout_s)

    def ready(self) -> None:
        """Nothing: a socket that opened can always send (an unheard datagram is a frame nobody heard)."""

    def close(self) -> None:
        self.sock.close()


def open_serial(port: str, baud: int, what: str, **options):
    import serial  # lazily: only the serial radios need pyserial

    try:
        return serial.serial_for_url(port, baudrate=baud, **options)
    except (serial.SerialException, ValueError) as e:
        raise RadioError(f"cannot open {what} serial port {port}: {e}") from e


class KissRadio:
    """A KISS TNC on a serial port or pyserial URL: each frame goes out as one KISS data frame.

    `receive(timeout_s)` returns the data frames the TNC has heard (for the uplink).
    Writes give up after `write_timeout_s` (a TNC holding the line with flow control)
    rather than blocking the transmitter for ever.
    """

    receives = True

    RECEIVE_POLL_S = 0.05  # longest one read blocks inside receive()

    def __init__(self, port: str, baud: int, *, tnc_port: int = 0, write_timeout_s: float = 10.0):
        import serial  # lazily, like every serial part: the bench needs no pyserial

        self._serial_error = serial.SerialException
        self.name = port
        self.tnc_port = tnc_port
        self.port = open_serial(port, baud, "KISS TNC", timeout=self.RECEIVE_POLL_S, write_timeout=write_timeout_s)
        self._decoder = KissDecoder(port=tnc_port)

    @property
    def errors(self):
        """Frames heard but dropped by the KISS deframer, by reason."""
        return self._decoder.errors

    def send(self, frame: bytes) -> None:
        if len(frame) > MAX_FRAME:
            raise RadioError(f"frame of {len(frame)} bytes is longer than the {MAX_FRAME} a LoRa packet holds")
        try:
            self.port.write(kiss_encode(frame, self.tnc_port))
            self.port.flush()
        except self._serial_error as e:
            raise RadioError(f"KISS TNC {self.name}: write failed: {e}") from e

    def receive(self, timeout_s: float) -> list[bytes]:
        """Data frames completed within `timeout_s` (an empty list if none); returns as soon as one is."""
        deadline = time.monotonic() + timeout_s
        frames: list[bytes] = []
        try:
            while not frames and time.monotonic() < deadline:
                first = self.port.read(1)  # blocks for at most RECEIVE_POLL_S
                if first:
                    frames = self._decoder.feed(first + self.port.read(self.port.in_waiting))
        except self._serial_error as e:
            raise RadioError(f"KISS TNC {self.name}: read failed: {e}") from e
        return frames

    def hear(self, timeout_s: float) -> list[bytes]:
        """As `receive`: the TNC listens by itself, and what it hears waits in the serial buffer."""
        return self.receive(timeout_s)

    def ready(self) -> None:
        """Nothing: a port that opened is there (a failing write says so with a RadioError)."""

    def close(self) -> None:
        self.port.close()


class UartModulePins(NamedTuple):
    """The GPIO a UART LoRa module is wired to: its two mode pins and AUX (busy)."""

    m0: int | str
    m1: int | str
    aux: int | str


class LoRaUartRadio:
    """A UART LoRa module in transparent mode (Ebyte E32/E22 and their kin).

    Wiring: the module's RXD/TXD to a UART (`port`), M0 and M1 to two GPIO outputs,
    AUX to a GPIO input. The pins select the mode; `MODES` holds the E32 table
    (normal = both low; sleep = both high, where the module also takes configuration
    commands). E22 modules take configuration at M0 low / M1 high: override `MODES`
    for them.

    AUX is the module's busy line: it goes low when UART data enters its buffer (or
    while it puts a received packet out on its UART, or reloads its parameters after
    sleep) and high when the buffer has been handed to the radio chip. Low has
    priority (E32 manual, 5.2): AUX stays low while *any* of these holds. `send` waits
    for AUX high, writes the frame in one go, waits for AUX to fall (the module took it)
    and to rise again. Every wait ends after `aux_timeout_s` with a `RadioError` that
    says what the module failed to do, so a hung or unwired module never hangs the
    transmitter. The E32 manual notes AUX may rise as the *last* packet starts on air;
    the link's airtime accounting covers the rest of its time on air.

    Frame boundaries: the module sends what arrives on its UART as one LoRa packet when
    the UART pauses (about 3 byte times) or when `packet_bytes` have arrived (58 on E32;
    240, 128, 64 or 32 as configured on E22). The receiving module writes each packet it
    hears to its UART as one burst, so the ground delimits frames by the pause between
    bursts. One frame, written in one go and no longer than `packet_bytes`, is therefore
    one packet and one burst at the ground; `send` refuses longer frames, which the
    module would cut into packets that are lost or merged separately.

    Receiving (the uplink): in normal mode the module puts every packet it hears out on
    its UART, whenever it hears it (E32 manual 6.2: AUX low, ~5 ms later the packet on
    TXD, AUX high once it is out). A reader thread takes those bytes as they come and
    cuts them into frames at each UART pause of `rx_gap_s`; `receive(timeout_s)` hands
    out the frames cut so far, waiting up to `timeout_s` for the first. The thread never
    touches AUX or the mode pins, so it cannot disturb `send`. What it keeps is bounded:
    at most `packet_bytes` of an unfinished burst, and the last `rx_queue_frames` frames
    not yet asked for (older ones are dropped and counted in `errors`).
    """

    receives = True

    MODES: dict[str, tuple[bool, bool]] = {"normal": (False, False), "sleep": (True, True), "config": (True, True)}
    # Ebyte: the pins are read ~1 ms after they change, and the manual asks for ~2 ms after AUX
    # rises before a switch; waited once per mode change, never in a loop.
    MODE_SETTLE_S = 0.002
    RX_QUEUE_FRAMES = 32  # frames heard but not yet asked for; a listen window hears a handful

    def __init__(
        self,
        port: str,
        baud: int,
        pins: UartModulePins,
        pin_factory=None,
        *,
        packet_bytes: int = 240,
        aux_timeout_s: float = 60.0,
        rx_gap_s: float | None = None,
        rx_queue_frames: int = RX_QUEUE_FRAMES,
    ):
        import serial
        from gpiozero import DigitalInputDevice, DigitalOutputDevice, GPIOZeroError

        self._serial_error = serial.SerialException
        self._closing = threading.Event()  # close() ends any wait on AUX: a stop never waits a minute
        self.name = port
        self.packet_bytes = packet_bytes
        self.aux_timeout_s = aux_timeout_s
        # The pause that ends a received burst. Inside a burst the module sends back to back,
        # and the host sees it in chunks at most a few byte times apart (the Pi's UART FIFO
        # timeout is 32 bit times); between two bursts lies at least the next packet's time on
        # air (tens of ms and up). 20 ms, or 4 byte times at slow rates, sits between the two.
        self.rx_gap_s = rx_gap_s if rx_gap_s is not None else max(0.02, 40 / baud)
        m0_pin, m1_pin, aux_pin = pins
        self.aux_pin = aux_pin
        self.errors: Counter = Counter()  # received bytes dropped, by reason
        self._lock = threading.Lock()  # one send or mode switch at a time: they share AUX
        self._took_frame = threading.Event()  # set on each falling AUX edge
        self._heard: deque[bytes] = deque()  # frames cut by the reader, not yet handed out
        self._rx_queue_frames = rx_queue_frames
        self._heard_changed = threading.Condition()
        self._queue_full = False  # logged on the transition only
        self._read_error: str | None = None
        self._reader: threading.Thread | None = None
        self._wake_r = self._wake_w = -1
        self._opened: list = []
        try:
            try:
                # Both outputs start low: the module powers into (or leaves sleep for) normal mode.
                self.m0 = self._keep(DigitalOutputDevice(m0_pin, initial_value=False, pin_factory=pin_factory))
                self.m1 = self._keep(DigitalOutputDevice(m1_pin, initial_value=False, pin_factory=pin_factory))
                # AUX is a push-pull output on the module (its default): no pull resistor here.
                self.aux = self._keep(DigitalInputDevice(aux_pin, pull_up=None, active_state=True, pin_factory=pin_factory))
            except GPIOZeroError as e:
                raise RadioError(f"LoRa module pins (M0 {m0_pin}, M1 {m1_pin}, AUX {aux_pin}): {e}") from e
            # A callback, not a wait: a short busy pulse is seen even if it ended before we look.
            self.aux.when_deactivated = self._on_busy
            self.port = self._keep(open_serial(port, baud, "LoRa module", timeout=0, write_timeout=aux_timeout_s))
            try:
                self._fd = self.port.fileno()
            except OSError as e:  # io.UnsupportedOperation: a URL such as loop:// has no descriptor
                raise RadioError(f"LoRa module {port}: needs a serial device (a tty), not {port!r}: {e}") from e
            self.mode = "normal"
            self._wait_idle("after opening (module powered, wired, and done with its self-check?)")
            self._wake_r, self._wake_w = os.pipe()  # close() wakes the reader out of select() with it
            self._reader = threading.Thread(target=self._read_bursts, name=f"lora-rx {port}", daemon=True)
            self._reader.start()
        except BaseException:
            self.close()
            raise

    def _keep(self, part):
        self._opened.append(part)
        return part

    def _on_busy(self) -> None:
        self._took_frame.set()

    def _patiently(self, wait: Callable[[float], bool]) -> bool:
        """`wait(slice_s)` again and again until it holds (True) or `aux_timeout_s` has passed
        (False); a RadioError as soon as close() begins."""
        deadline = time.monotonic() + self.aux_timeout_s
        while True:
            left = deadline - time.monotonic()
            if wait(max(min(left, CLOSE_POLL_S), 0.0)):
                return True
            if self._closing.is_set():
                raise RadioError(f"LoRa module {self.name}: closed while waiting for AUX")
            if left <= 0:
                return False

    def _wait_idle(self, when: str) -> None:
        if not self._patiently(self.aux.wait_for_active):
            raise RadioError(
                f"LoRa module {self.name}: AUX (pin {self.aux_pin}) stayed low (busy) for "
                f"{self.aux_timeout_s:g} s {when}"
            )

    def send(self, frame: bytes) -> None:
        if len(frame) > self.packet_bytes:
            raise RadioError(
                f"frame of {len(frame)} bytes exceeds the module's {self.packet_bytes}-byte packet: "
                f"it would go out as several LoRa packets (lower radio.mtu)"
            )
        with self._lock:
            if self.mode != "normal":
                raise RadioError(f"LoRa module {self.name} is in {self.mode} mode and drops data: set_mode('normal') first")
            self._wait_idle("before sending")
            self._took_frame.clear()
            try:
                self.port.write(frame)  # one write: one UART burst, one packet
                self.port.flush()
            except self._serial_error as e:
                raise RadioError(f"LoRa module {self.name}: write failed: {e}") from e
            # A packet heard just as we wrote can pull AUX low between the wait above and
            # clear(), so no falling edge follows our write. AUX low now still means taken:
            # our bytes are in the module's buffer, and AUX (low has priority) rises only once
            # the received packet is out on the UART *and* our frame has gone to the radio chip.
            if not (self._took_frame.is_set() or not self.aux.is_active or self._patiently(self._took_frame.wait)):
                raise RadioError(
                    f"LoRa module {self.name}: AUX (pin {self.aux_pin}) never went low after "
                    f"{len(frame)} bytes were written: the module did not take the frame "
                    f"(wrong mode, baud or wiring?)"
                )
            self._wait_idle(f"while sending {len(frame)} bytes (is aux_timeout_s longer than a packet's time on air?)")

    def receive(self, timeout_s: float) -> list[bytes]:
        """Frames the module has put out on its UART, each one packet it heard: those waiting
        now (heard since the last call, up to `rx_queue_frames`), else the first ones heard
        within `timeout_s`; an empty list if none is. Never blocks longer than `timeout_s`.

        A burst still arriving when `timeout_s` runs out is not cut short: the reader
        finishes it at its pause and the next call returns it whole.
        """
        with self._heard_changed:
            self._heard_changed.wait_for(lambda: self._heard or self._read_error, max(timeout_s, 0.0))
            frames = list(self._heard)
            self._heard.clear()
            self._queue_full = False
            if not frames and self._read_error:
                raise RadioError(f"LoRa module {self.name}: read failed: {self._read_error}")
        return frames

    def hear(self, timeout_s: float) -> list[bytes]:
        """As `receive`: the module is always listening, and the reader keeps what it hears."""
        return self.receive(timeout_s)

    def ready(self) -> None:
        """Nothing: a module that opened is there (a send that fails says why with a RadioError)."""

    def _read_bursts(self) -> None:
        """The reader thread: UART bytes -> frames, one per burst.

        Delimited by the UART pause, not by the AUX pulse, because
        * the pause is what the sending module itself cuts packets on, and what the ground
          must use too (USB boards rarely bring out AUX): one rule at both ends;
        * AUX is shared: it also pulses for our own transmissions and parameter reloads, so a
          pulse alone does not say "a packet came";
        * the AUX edge and the last bytes of a burst reach us by different paths (a GPIO
          interrupt; the UART FIFO and tty buffer), so AUX can rise before the burst's tail is
          readable, and cutting there would split frames;
        * when packets arrive faster than the UART carries them out, AUX stays low across
          several bursts (low has priority) and would merge them.
        It blocks in select() while nothing is arriving (no polling) and waits `rx_gap_s`
        at most once per burst.
        """
        burst = bytearray()
        too_long = False  # skipping to the next pause: the burst cannot be one packet
        while True:
            waiting = burst or too_long
            ready, _, _ = select.select([self._fd, self._wake_r], [], [], self.rx_gap_s if waiting else None)
            if self._wake_r in ready:
                return  # close()
            if not ready:  # the UART paused: the burst is over
                if burst:
                    self._heard_one(bytes(burst))
                burst.clear()
                too_long = False
                continue
            try:
                chunk = self.port.read(self.port.in_waiting or 1)
            except (self._serial_error, OSError) as e:
                with self._heard_changed:
                    self._read_error = str(e)
                    self._heard_changed.notify_all()
                log.error("lora module read failed", port=self.name, error=str(e))
                return
            if too_long:
                self.errors["rx burst too long"] += len(chunk)
                continue
            burst += chunk
            if len(burst) > self.packet_bytes:
                # Longer than one packet: several merged, or noise. Not a frame; not kept either.
                self.errors["rx burst too long"] += len(burst)
                burst.clear()
                too_long = True

    def _heard_one(self, frame: bytes) -> None:
        with self._heard_changed:
            if len(self._heard) >= self._rx_queue_frames:
                # Nobody has asked for a while (no listen window); keep the newest.
                self._heard.popleft()
                self.errors["rx queue full"] += 1
                if not self._queue_full:
                    self._queue_full = True
                    log.warning("lora module: received frames dropped, nobody is listening",
                                port=self.name, kept=self._rx_queue_frames)
            self._heard.append(frame)
            self._heard_changed.notify_all()

    def set_mode(self, mode: str) -> None:
        """Switch to `normal`, `sleep` or `config`; returns once the module is ready in it."""
        if mode not in self.MODES:
            raise ValueError(f"unknown LoRa module mode {mode!r}; one of {', '.join(self.MODES)}")
        m0, m1 = self.MODES[mode]
        with self._lock:
            # A switch while AUX is low is deferred by the module until it is idle: wait here instead.
            self._wait_idle(f"before switching to {mode} mode")
            time.sleep(self.MODE_SETTLE_S)
            self.m0.value, self.m1.value = m0, m1
            self.mode = mode
            time.sleep(self.MODE_SETTLE_S)
            # Leaving sleep, the module reloads its parameters with AUX low.
            self._wait_idle(f"after switching to {mode} mode")

    def close(self) -> None:
        self._closing.set()  # a send waiting on AUX gives up now (another thread may be in it)
        # The reader first: it reads the port closed below.
        if self._reader is not None:
            os.write(self._wake_w, b"!")
            self._reader.join(timeout=5)
            self._reader = None
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1
        # The pins are released as they are: the module stays in the mode it was left in.
        for part in reversed(self._opened):
            part.close()
        self._opened.clear()
