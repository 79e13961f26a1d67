"""A fake UART LoRa module (Ebyte E32/E22 style) for the bench and the tests.

It sits where the real module sits: on the far end of a serial line (a
pseudo-terminal pair, so the driver opens a real tty path such as /dev/pts/5) and
on three gpiozero `MockFactory` pins. The driver's M0/M1 outputs are read here as
the module reads its mode pins; AUX, the driver's input, is driven here with
`drive_low()` / `drive_high()` as the module drives its busy line.

What it does, after the E32 manual:

* normal mode (M0 = M1 = low): bytes arriving on the UART pull AUX low; the burst
  ends when the UART pauses for `idle_gap_s` (the real module waits ~3 byte times)
  or `packet_bytes` have arrived; the packet is then "on air" for its LoRa time on
  air (`stratoecho.airtime.lora_airtime_s` at `sf`/`bw_hz`/`cr`, multiplied by
  `time_scale` so tests run fast), recorded in `frames`, and AUX goes high once the
  buffer is empty. (A real E32 may raise AUX as the last packet *starts*; holding it
  low through the time on air is the stricter case for a driver.)
* any other mode: UART data is dropped and counted in `dropped` by mode (sleep mode
  takes only configuration commands, which this fake does not model; the wake-up and
  power-saving modes are treated the same way).
* leaving sleep mode, the module reloads its parameters with AUX low for `reset_s`.
* bytes written while AUX is low (the host did not wait) are kept, as the module's
  buffer would, and counted in `written_while_busy`: a driver that honours AUX leaves it 0.
* `hold()` / `release()` keep AUX low as a hung or busy module would.

Two fakes make a link: `on_air=other.hear` hands each packet this one sends to the
other as it goes on air.

The receive direction, `hear(packet)`: another station's packet arrives over the air.
It is on air for its time on air (scaled by `time_scale`; packets heard back to back
follow one another, one channel), with AUX still high — the E32 does not flag a
reception in progress. Once it is in (E32 manual 6.2), AUX goes low, `rx_lead_s`
(~5 ms) later the packet goes out on the UART as one burst paced at `baud`, and AUX
goes high when the last byte is out (unless something else keeps it low: low has
priority, manual 5.2). Outputs are recorded in `heard`. Which modes put it out:

* normal and wake-up (M0 = 1): yes;
* power-saving (M1 = 1): only a packet sent in wake-up mode, with its long preamble
  (`hear(..., wake_up=True)`): the receiver listens only in short spells;
* sleep, or while reloading its parameters: not received at all.

The module is half duplex: a packet still on air when the host's next burst starts,
or heard while the module collects or transmits a burst, is lost. Lost packets are
logged as ("missed", j, why). The UART has no flow control: bytes the host does not
read in time (the pseudo-terminal full) are lost and counted in `overflowed`.

`events` records what happened in order — ("uart", i) first bytes of packet i,
("air", i, n) packet i of n bytes on air, ("sent", i), ("dropped", mode, n),
("mode", mode), ("reset",), ("ready",), ("hold",), ("release",); for received
packets ("heard", j, n) packet j of n bytes starts arriving, ("output", j) AUX low
for it, ("output_done", j) its last byte written, ("missed", j, why) — so tests
check ordering, never wall-clock durations. `wait_for(predicate, timeout_s)` blocks
until the module's state satisfies `predicate`.
"""

from __future__ import annotations

import os
import select
import threading
import time
import tty
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass

from gpiozero.pins.mock import MockFactory, MockPin

from stratoecho.airtime import lora_airtime_s

MODES_BY_PINS = {
    (False, False): "normal",
    (True, False): "wake",
    (False, True): "power_saving",
    (True, True): "sleep",
}


class ModePin(MockPin):
    """A mock M0/M1 pin that tells the module whenever the host changes its level."""

    def __init__(self, factory, info, on_change: Callable[[], None] | None = None):
        super().__init__(factory, info)
        self._on_change = on_change

    def _change_state(self, value):
        changed = super()._change_state(value)
        if changed and self._on_change is not None:
            self._on_change()
        return changed


# Modes that put a heard packet out on the UART (E32 manual 6.2-6.5); power-saving only for
# packets sent in wake-up mode, sleep never.
RECEIVING_MODES = ("normal", "wake")


@dataclass
class _Incoming:
    index: int
    packet: bytes
    wake_up: bool
    ends_at: float  # monotonic time its reception is complete


class FakeLoRaModule:
    def __init__(
        self,
        factory: MockFactory,
        m0_pin: int | str,
        m1_pin: int | str,
        aux_pin: int | str,
        *,
        sf: int = 9,
        bw_hz: float = 125_000,
        cr: int = 5,
        packet_bytes: int = 240,
        time_scale: float = 1.0,
        idle_gap_s: float = 0.02,
        reset_s: float = 0.01,
        baud: int = 9600,
        rx_lead_s: float = 0.005,
        on_air: Callable[[bytes], None] | None = None,
    ):
        self.sf, self.bw_hz, self.cr = sf, bw_hz, cr
        self.packet_bytes, self.time_scale, self.idle_gap_s, self.reset_s = packet_bytes, time_scale, idle_gap_s, reset_s
        self.baud, self.rx_lead_s = baud, rx_lead_s
        self.on_air = on_air  # called with each packet as it goes on air: another module's hear(), the air between
        self.frames: list[bytes] = []
        self.heard: list[bytes] = []  # packets heard and put out on the UART, in order
        self.overflowed = 0  # received bytes lost because the host did not read them
        self._incoming: deque[_Incoming] = deque()  # heard, not yet put out
        self._heard_count = 0
        self._outputting = False
        self.events: list[tuple] = []
        self.dropped: Counter = Counter()  # bytes, by the mode that dropped them
        self.written_while_busy = 0  # UART writes that arrived while AUX was low
        self.airtime_s = 0.0  # unscaled time on air of everything sent
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._busy = self._held = self._resetting = False
        self._packets = 0
        self._timers: list[threading.Timer] = []

        self._m0 = factory.pin(m0_pin, pin_class=ModePin, on_change=self._mode_changed)
        self._m1 = factory.pin(m1_pin, pin_class=ModePin, on_change=self._mode_changed)
        if not (isinstance(self._m0, ModePin) and isinstance(self._m1, ModePin)):
            raise RuntimeError("create the fake module before anything else uses its M0/M1 pins")
        self.aux: MockPin = factory.pin(aux_pin)
        self.aux.function = "input"  # the host's side reads it; drive_high/low drive it
        self._last_mode = self.mode
        self.aux.drive_high()  # powered up and idle

        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # bytes pass untouched, before and after the driver configures the port
        os.set_blocking(self._master, False)  # a UART has no flow control: a host that does not read loses bytes
        self.port = os.ttyname(self._slave)  # what the driver opens
        self._wake_r, self._wake_w = os.pipe()  # nudges the worker out of select()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fake-lora-module", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ state

    @property
    def mode(self) -> str:
        return MODES_BY_PINS[(bool(self._m0.state), bool(self._m1.state))]

    def hold(self) -> None:
        """Keep AUX low (busy) until `release()`, whatever the module is doing."""
        with self._lock:
            self._held = True
            self._log("hold")
            self._update_aux()

    def release(self) -> None:
        with self._lock:
            self._held = False
            self._log("release")
            self._update_aux()
        self._nudge()

    def hear(self, packet: bytes, *, wake_up: bool = False) -> int:
        """A packet from another station starts arriving over the air now (after any packet
        still arriving); returns its index j for the ("heard", j, n) ... events. `wake_up`:
        sent by a module in wake-up mode (heard in power-saving mode too)."""
        if not 0 < len(packet) <= self.packet_bytes:
            raise ValueError(f"a packet holds 1..{self.packet_bytes} bytes, not {len(packet)}")
        air = lora_airtime_s(len(packet), self.sf, self.bw_hz, self.cr) * self.time_scale
        with self._lock:
            index = self._heard_count
            self._heard_count += 1
            self._log("heard", index, len(packet))
            if self._busy:
                self._log("missed", index, "transmitting")  # half duplex: the radio is sending
                return index
            start = max(time.monotonic(), self._incoming[-1].ends_at if self._incoming else 0.0)
            self._incoming.append(_Incoming(index, bytes(packet), wake_up, start + air))
        self._nudge()
        return index

    def wait_for(self, predicate: Callable[[FakeLoRaModule], bool], timeout_s: float = 5.0) -> bool:
        """Block until `predicate(self)` holds (checked on every event); False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self), timeout_s)

    def close(self) -> None:
        self._closing.set()
        self._nudge()
        self._thread.join(timeout=5)
        for timer in self._timers:
            timer.cancel()
        for fd in (self._master, self._slave, self._wake_r, self._wake_w):
            os.close(fd)

    def __enter__(self) -> FakeLoRaModule:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ internals (lock held where noted)

    def _log(self, *event) -> None:  # lock held
        self.events.append(event)
        self._changed.notify_all()

    def _update_aux(self) -> None:  # lock held
        if self._busy or self._held or self._resetting or self._outputting:
            self.aux.drive_low()
        else:
            self.aux.drive_high()

    def _mode_changed(self) -> None:
        # Called in the host's thread as it sets M0 or M1.
        with self._lock:
            mode = self.mode
            previous, self._last_mode = self._last_mode, mode
            if mode == previous:
                return
            self._log("mode", mode)
            if previous == "sleep":
                self._resetting = True
                self._log("reset")
                self._update_aux()
                timer = threading.Timer(self.reset_s, self._reset_done)
                timer.daemon = True
                self._timers.append(timer)
                timer.start()

    def _reset_done(self) -> None:
        with self._lock:
            self._resetting = False
            self._log("ready")
            self._update_aux()
        self._nudge()

    def _nudge(self) -> None:
        try:
            os.write(self._wake_w, b"!")
        except OSError:
            pass  # closed: nothing left to wake

    def _wait_uart(self, timeout_s: float | None) -> bool:
        """True when UART bytes are waiting; False on timeout or a nudge (the caller re-checks state)."""
        ready, _, _ = select.select([self._master, self._wake_r], [], [], timeout_s)
        if self._wake_r in ready:
            os.read(self._wake_r, 512)
        return self._master in ready

    def _read(self) -> bytes:
        return os.read(self._master, 4096)

    def _run(self) -> None:
        pending = bytearray()  # the module's buffer
        while not self._closing.is_set():
            with self._lock:
                now = time.monotonic()
                received = bool(self._incoming) and self._incoming[0].ends_at <= now
                can_send = bool(pending) and not (self._held or self._resetting)
                next_in = self._incoming[0].ends_at - now if self._incoming else None
            if received:  # a packet heard before the host's burst began goes out first
                self._output(pending)
                continue
            if can_send:
                self._transmit(pending)
                continue
            if not self._wait_uart(next_in):
                continue
            self._take_uart(self._read(), pending)

    def _take_uart(self, data: bytes, pending: bytearray) -> None:
        """Bytes from the host outside a transmission."""
        with self._lock:
            mode = self.mode
            if mode != "normal":
                self.dropped[mode] += len(data)
                self._log("dropped", mode, len(data))
                return
            if not pending:
                if self._busy or self._held or self._resetting or self._outputting:
                    self.written_while_busy += 1
                self._log("uart", self._packets)
                # Half duplex: the module turns to sending, and a packet still arriving is lost.
                now = time.monotonic()
                for incoming in [i for i in self._incoming if i.ends_at > now]:
                    self._incoming.remove(incoming)
                    self._log("missed", incoming.index, "transmitting")
            pending += data
            self._busy = True
            self._update_aux()

    def _listen_uart(self, seconds: float, pending: bytearray) -> None:
        """Let `seconds` pass while putting a packet out, keeping what the host writes meanwhile."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0 and not self._closing.is_set():
            if self._wait_uart(left):
                self._take_uart(self._read(), pending)

    def _output(self, pending: bytearray) -> None:
        # E32 manual 6.2: "after the data packet is received, AUX outputs low level, 5 ms later
        # the module starts to transmit [it] through serial port TXD"; AUX high once all is out.
        while not self._closing.is_set():
            with self._lock:
                now = time.monotonic()
                if not (self._incoming and self._incoming[0].ends_at <= now):
                    break
                incoming = self._incoming.popleft()
                mode = self.mode
                if self._resetting or not (mode in RECEIVING_MODES or (mode == "power_saving" and incoming.wake_up)):
                    self._log("missed", incoming.index, "reset" if self._resetting else mode)
                    continue
                self._outputting = True
                self._log("output", incoming.index)
                self._update_aux()
            self._listen_uart(self.rx_lead_s, pending)
            # Paced at the baud rate (10 bits a byte), so a burst takes its real time; each write
            # catches up with the clock, so a late wake-up is made good at once, not carried on.
            packet, byte_s = memoryview(incoming.packet), 10 / self.baud
            start, at = time.monotonic(), 0
            while at < len(packet) and not self._closing.is_set():
                due = max(at + 1, int((time.monotonic() - start) / byte_s) + 1)
                part = packet[at:due]
                at += len(part)
                try:
                    written = os.write(self._master, part)
                except BlockingIOError:
                    written = 0
                self.overflowed += len(part) - written
                self._listen_uart(start + at * byte_s - time.monotonic(), pending)
            with self._lock:
                self.heard.append(incoming.packet)
                self._log("output_done", incoming.index)
        with self._lock:
            if self._outputting:
                self._outputting = False
                self._update_aux()

    def _transmit(self, pending: bytearray) -> None:
        # The rest of the burst: a packet ends when the UART pauses or the packet is full.
        while len(pending) < self.packet_bytes and self._wait_uart(self.idle_gap_s):
            pending += self._read()
        packet = bytes(pending[: self.packet_bytes])
        del pending[: self.packet_bytes]
        air = lora_airtime_s(len(packet), self.sf, self.bw_hz, self.cr)
        with self._lock:
            index = self._packets
            self._packets += 1
            self._log("air", index, len(packet))
        if self.on_air is not None:
            self.on_air(packet)
        deadline = time.monotonic() + air * self.time_scale
        # Waiting on the UART, not sleeping: a host that writes during the packet is caught.
        while (left := deadline - time.monotonic()) > 0 and not self._closing.is_set():
            if self._wait_uart(left):
                data = self._read()
                with self._lock:
                    self.written_while_busy += 1
                    pending += data
                    self._changed.notify_all()
        with self._lock:
            self.frames.append(packet)
            self.airtime_s += air
            self._log("sent", index)
            self._busy = bool(pending)
            self._update_aux()
