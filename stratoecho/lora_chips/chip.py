"""What the SX127x and SX126x drivers share: the SPI device they talk through, the error they
raise, the signal a packet was heard with, and `SpiChip`, the part of a driver that does not
depend on the chip.

`SpiChip` holds the chip's GPIO lines (gpiozero, imported only when a line is opened), waits on
the clock (a DIO line's rising edge ends a wait early, `close()` ends it with a `RadioError`),
and listens two ways:

* `receive(timeout_s)` — the payload's uplink window: RX continuous for at most `timeout_s`,
  back to standby after the first packet or at the window's end;
* `listen()` then `poll(timeout_s)` again and again — the ground's receiver: the chip stays in
  RX continuous between polls, so a packet that arrives while nobody asks waits in the chip
  (one packet: the chip keeps the last one it heard) until the next poll takes it. A `send`
  leaves RX (the chip is half duplex): `listen()` again after it;
* `hear(timeout_s)` — the two joined for the payload's link (the `Radio` port of
  payload/parts/radio.py), which listens turn after turn: `listen()` when not in RX, then `poll`.

A subclass (one chip) provides its registers or commands: `_irq_flags`, `_start_rx`,
`_standby`, `_take_packet`, `_in_rx`, `_sleep`, and `RX_EVENT`, `configure` and `send`.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import structlog

from stratoecho.clock import Clock
from stratoecho.lora import LoRaSettings

log = structlog.get_logger(__name__)


class RadioError(Exception):
    """A radio that cannot be opened or cannot send; the message names the part and why.

    The payload's radios raise it too (`payload.parts.radio.RadioError` is this class)."""


class SpiDevice(Protocol):
    """spidev.SpiDev's surface the drivers use (the bench's simulated chips offer the same)."""

    def xfer2(self, data: list[int]) -> list[int]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class PacketSignal:
    rssi_dbm: float  # whole dB from an SX127x, half dB from an SX126x
    snr_db: float


class SpiChip(ABC):
    receives = True
    POLL_S = 0.05  # how often the IRQ flags are read while waiting (flight seconds)
    RESET_S = 0.01  # RESET held low (the datasheets ask 100 us), then 10 ms for the chip to start
    RX_EVENT = 0  # the IRQ flags that mean a packet (good or not) is there to take

    def __init__(self, spi: SpiDevice, settings: LoRaSettings, clock: Clock | None, name: str,
                 tx_timeout_s: float | None):
        self.spi, self.settings, self.name = spi, settings, name
        self.home = settings  # its own channel: listening is always here; a frame may be keyed elsewhere
        self.clock = clock or Clock()
        self.tx_timeout_s = tx_timeout_s
        self.errors: Counter = Counter()  # packets heard but dropped, by reason
        self.heard: deque[PacketSignal] = deque(maxlen=64)  # the signal of each packet received
        self._lock = threading.Lock()  # one SPI transaction sequence at a time
        self._irq = self.clock.event()  # a DIO line rose (when wired), or close() began: a wait ends early
        self._closing = threading.Event()
        self._parts: list = []

    # ---------------------------------------------------------------- GPIO lines

    def _keep(self, part):
        self._parts.append(part)
        return part

    @contextmanager
    def _pins(self, described: str) -> Iterator[None]:
        """Open GPIO lines inside: a gpiozero error becomes a RadioError naming them (`described`)."""
        try:
            from gpiozero import GPIOZeroError
        except ImportError as e:
            raise RadioError(f"{self.name} pins ({described}) need the gpiozero package (pip install gpiozero)") from e
        try:
            yield
        except GPIOZeroError as e:
            raise RadioError(f"{self.name} pins ({described}): {e}") from e

    def _input(self, pin, pin_factory, irq: bool = False):
        """A line the chip drives; with `irq`, its rising edge ends a wait at once."""
        from gpiozero import DigitalInputDevice

        part = self._keep(DigitalInputDevice(pin, pull_up=None, active_state=True, pin_factory=pin_factory))
        if irq:
            part.when_activated = self._irq.set
        return part

    def _output(self, pin, pin_factory):
        """A line we drive (RESET), high (released) from the start."""
        from gpiozero import DigitalOutputDevice

        return self._keep(DigitalOutputDevice(pin, initial_value=True, pin_factory=pin_factory))

    def _wire(self, described: str, pin_factory, reset_pin, irq_pin, busy_pin=None) -> None:
        """The chip's GPIO where wired (an SX126x's BUSY, RESET, the IRQ line: DIO0 or DIO1), named
        by `described` in an error; then a reset, when RESET is wired. No pin: gpiozero is not needed."""
        if busy_pin is None and reset_pin is None and irq_pin is None:
            return
        with self._pins(described):
            if busy_pin is not None:
                self.busy = self._input(busy_pin, pin_factory)
            if reset_pin is not None:
                self.reset = self._output(reset_pin, pin_factory)
            if irq_pin is not None:
                self.irq_line = self._input(irq_pin, pin_factory, irq=True)
        if reset_pin is not None:
            self._reset()

    def _packet(self, frame: bytes, settings: LoRaSettings | None) -> tuple[bytes, float]:
        """`frame` as one packet, the chip tuned for `settings` (None: its own channel): zero-padded to
        an implicit header's fixed length, and its time on air; RadioError for one that does not fit."""
        self._tune(settings)
        s = self.settings
        n = s.packet_bytes(len(frame))
        if len(frame) > n or n > 255:
            raise RadioError(f"{self.name}: a frame of {len(frame)} bytes does not fit one LoRa packet of {n}")
        return bytes(frame).ljust(n, b"\0"), s.airtime_s(len(frame))

    def _reset(self) -> None:
        self.reset.off()
        self.clock.wait(self.RESET_S, threading.Event())
        self.reset.on()
        self.clock.wait(self.RESET_S, threading.Event())

    # ---------------------------------------------------------------- the chip's own (subclasses)

    @abstractmethod
    def _irq_flags(self) -> int:
        ...

    @abstractmethod
    def _start_rx(self) -> None:
        """Standby, set up for reception, flags cleared, then RX continuous (lock held)."""
        ...

    @abstractmethod
    def _standby(self) -> None:
        ...

    @abstractmethod
    def _take_packet(self, flags: int) -> tuple[bytes, PacketSignal] | None:
        """The packet `flags` announce, with its signal; None (counted in `errors`) if it was damaged."""
        ...

    @abstractmethod
    def _in_rx(self) -> bool:
        ...

    @abstractmethod
    def _sleep(self) -> None:
        ...

    def _tune(self, settings: LoRaSettings | None) -> None:
        """Ready to key (or hear) with `settings` (None: the chip's own channel): programmed
        again only on a change, so a frame on a second channel (pictures in their own mode and
        frequency) costs one `configure` there and one back."""
        want = settings or self.home
        if want != self.settings:
            self.configure(want)

    # ---------------------------------------------------------------- listening

    def receive(self, timeout_s: float) -> list[bytes]:
        """Packets heard within `timeout_s` flight seconds; returns after the first. The chip
        listens only within the window, on its own channel."""
        self._tune(None)
        with self._lock:
            self._start_rx()
            try:
                packet = self._next_packet(timeout_s)
                return [] if packet is None else [packet[0]]
            finally:
                self._standby()

    def listen(self) -> None:
        """RX continuous from now on, until a send, a `receive` window or `close()`."""
        self._tune(None)
        with self._lock:
            self._start_rx()

    def poll(self, timeout_s: float) -> list[tuple[bytes, PacketSignal]]:
        """What the chip heard since the last poll, waiting up to `timeout_s` flight seconds for
        it (a DIO line ends the wait as the packet arrives); the chip stays in RX. After `listen()`."""
        with self._lock:
            packet = self._next_packet(timeout_s)
            return [] if packet is None else [packet]

    def hear(self, timeout_s: float) -> list[bytes]:
        """What is heard within `timeout_s` by a chip left listening turn after turn (the payload's
        windows and a relay between its frames): RX continuous (`listen` when not in RX, then
        `poll`), so a packet longer than one turn is still heard whole."""
        if not self.in_rx():
            self.listen()
        return [packet for packet, _signal in self.poll(timeout_s)]

    def ready(self) -> None:
        """Nothing while the chip is open (one that stops answering fails its send with a
        RadioError; the payload's ReopeningRadio then says when it is tried again)."""
        if self._closing.is_set():
            raise RadioError(f"{self.name}: closed")

    def in_rx(self) -> bool:
        """Whether the chip is in RX continuous now: not after a send, nor after a reset or a
        brown-out, which also loses its settings (`configure` again, then `listen`)."""
        with self._lock:
            return self._in_rx()

    def _next_packet(self, timeout_s: float) -> tuple[bytes, PacketSignal] | None:
        """The first good packet within `timeout_s` of RX (lock held), or None."""
        end = self.clock.elapsed_s() + max(timeout_s, 0.0)
        while True:
            flags = self._irq_flags()
            if flags & self.RX_EVENT:
                packet = self._take_packet(flags)
                if packet is not None:
                    return packet
                continue
            left = end - self.clock.elapsed_s()
            if left <= 0:
                return None
            self._irq.clear()
            self._pause(min(self.POLL_S, left))

    # ---------------------------------------------------------------- waiting

    def _wait_for(self, flag: int, expect_s: float, timeout_s: float) -> bool:
        """Wait `expect_s`, then poll the IRQ flags until `flag` shows or `timeout_s` has passed."""
        start = self.clock.elapsed_s()
        self._pause(expect_s)
        while not self._irq_flags() & flag:
            left = start + timeout_s - self.clock.elapsed_s()
            if left <= 0:
                return False
            self._irq.clear()
            self._pause(min(self.POLL_S, left))
        return True

    def _pause(self, seconds: float) -> None:
        """Wait on the clock; a DIO line ends it early, and close() ends it with a RadioError (a
        stop never waits out a long packet: sleep mode ends the transmission)."""
        if self._closing.is_set() or self.clock.wait(seconds, self._irq) and self._closing.is_set():
            raise RadioError(f"{self.name}: closed")

    def close(self) -> None:
        self._closing.set()
        self._irq.set()  # a send or a listen window in progress ends now
        held = self._lock.acquire(timeout=2.0)
        try:
            self._sleep()  # the transmitter off, whatever happens next
        except Exception as e:  # noqa: BLE001 - a chip already gone or hung: close the rest
            log.debug("lora_sleep_failed", radio=self.name, error=str(e))
        finally:
            if held:
                self._lock.release()
        for part in reversed(self._parts):
            part.close()
        self._parts.clear()
        self.spi.close()
