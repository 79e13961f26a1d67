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

`events` records what happened in order — ("uart", i) first bytes of packet i,
("air", i, n) packet i of n bytes on air, ("sent", i), ("dropped", mode, n),
("mode", mode), ("reset",), ("ready",), ("hold",), ("release",) — so tests check
ordering, never wall-clock durations. `wait_for(predicate, timeout_s)` blocks until
the module's state satisfies `predicate`.
"""

from __future__ import annotations

import os
import select
import threading
import time
import tty
from collections import Counter
from collections.abc import Callable

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
    ):
        self.sf, self.bw_hz, self.cr = sf, bw_hz, cr
        self.packet_bytes, self.time_scale, self.idle_gap_s, self.reset_s = packet_bytes, time_scale, idle_gap_s, reset_s
        self.frames: list[bytes] = []
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
        if self._busy or self._held or self._resetting:
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
                can_send = bool(pending) and not (self._held or self._resetting)
            if can_send:
                self._transmit(pending)
                continue
            if not self._wait_uart(None):
                continue
            data = self._read()
            with self._lock:
                mode = self.mode
                if mode != "normal":
                    self.dropped[mode] += len(data)
                    self._log("dropped", mode, len(data))
                    continue
                if self._busy or self._held or self._resetting:
                    self.written_while_busy += 1
                if not pending:
                    self._log("uart", self._packets)
                pending += data
                self._busy = True
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
