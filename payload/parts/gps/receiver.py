"""`GpsReceiver`, the I/O edge: opens a port or pyserial URL, puts the module in the
Airborne <1g model, reads fixes, and survives silence, garbage and a module that browned
out back into its default (portable) model."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from stratoecho.backoff import Backoff

from ..radio import RadioError, open_serial
from .fix import Fix, FixState
from .nmea import NmeaParser
from .ubx import CLASS_CFG, DYN_AIRBORNE_1G, ID_CFG_NAV5, UbxFrame, cfg_nav5

log = structlog.get_logger(__name__)


STATUSES = ("ok", "no_fix", "silent", "garbage", "no_device")


@dataclass(frozen=True)
class GpsReading:
    """status: "ok" (a valid fix), "no_fix" (sentences, no valid fix), "silent" (nothing
    heard for silent_after_s), "garbage" (bytes but no valid sentence in this read),
    "no_device" (the port cannot be opened). `fix` is the last fix heard, however old
    (see `fix.age_s()`). `airborne`: the module acknowledged the dynamic model since it
    was last (re)opened or (re)configured."""

    status: str
    fix: Fix | None
    airborne: bool
    errors: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class GpsTiming:
    """How long the receiver waits for each thing the module owes it, in seconds (see
    `GpsReceiver`): an ACK, a retry, the periodic re-send, silence, and the re-open back-off."""

    ack_timeout_s: float = 1.0
    ack_retry_s: float = 5.0
    reconfigure_every_s: float = 600.0
    silent_after_s: float = 3.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0


class GpsReceiver:
    """A u-blox receiver on `port` (a device path or any pyserial URL).

    `read(timeout_s)` never raises for device faults: it returns a `GpsReading` whose
    status says what is wrong and whose `errors` count it. Faults handled:

    The waits are `timing`'s (`GpsTiming`):

    * the configuration not acknowledged (NAK: "nak"; no answer in `ack_timeout_s`:
      "ack_timeout") — sent again after `ack_retry_s`;
    * a brown-out back to the portable model — the configuration is re-sent every
      `reconfigure_every_s` and after every re-open;
    * nothing valid (silence or only garbage) for `silent_after_s` ("silent") or port errors ("io") — the port is closed
      and re-opened after a back-off of `backoff_initial_s`, doubling up to `backoff_max_s`,
      reset once sentences flow again; "open" counts failed opens.

    Waiting is done on `stop` (a threading.Event), so a daemon shutdown ends it at once.
    With `flight_clock` (the daemon's `stratoecho.clock` clock) every wait — for bytes, for a
    re-open — is a wait on that clock, in flight seconds: on the bench's lockstep the time a
    sentence arrives is the time it was written, however busy the machine.
    """

    READ_POLL_S = 0.05

    def __init__(
        self,
        port: str,
        baud: int = 9600,
        *,
        dyn_model: int = DYN_AIRBORNE_1G,
        timing: GpsTiming = GpsTiming(),
        stop: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
        flight_clock=None,
    ):
        import serial  # lazily, like every serial part

        self._serial_error = serial.SerialException
        self.port_name, self.baud = port, baud
        self.dyn_model = dyn_model
        t = timing
        self.ack_timeout_s, self.ack_retry_s = t.ack_timeout_s, t.ack_retry_s
        self.reconfigure_every_s, self.silent_after_s = t.reconfigure_every_s, t.silent_after_s
        self.backoff = Backoff(initial_s=t.backoff_initial_s, factor=2.0, max_s=t.backoff_max_s)
        self._failed_opens = 0  # consecutive: sets the back-off
        self.flight_clock = flight_clock
        self.stop = stop or (flight_clock.event() if flight_clock is not None else threading.Event())
        self.clock = clock
        self.parser = NmeaParser()
        self.state = FixState()
        self.errors: Counter = Counter()  # device faults, by kind
        self.acks = 0  # configurations acknowledged
        self.opens = 0
        self.airborne = False
        self._port = None
        self._next_open_at = 0.0
        self._last_heard_at = 0.0
        self._config_sent_at: float | None = None  # awaiting the ACK since then
        self._next_config_at = 0.0
        self._silent = False
        self._open_failed = False
        self._open()

    # -------------------------------------------------------------- public

    def read(self, timeout_s: float = 1.0) -> GpsReading:
        """Wait up to `timeout_s` for a sentence that updates the fix; the reading either way."""
        deadline = self.clock() + timeout_s
        updated = heard_valid = heard_bytes = False
        while not self.stop.is_set():
            now = self.clock()
            if self._port is None:
                if now >= self._next_open_at:
                    self._open()
                    continue
                if not self._wait(max(0.0, min(deadline, self._next_open_at) - now)):
                    if self.clock() >= deadline:
                        break
                continue
            self._maybe_configure(now)
            data = self._read_bytes(self._next_check_at(deadline) - now)
            now = self.clock()
            if data:
                heard_bytes = True
                u, v = self._take(data, now)
                updated |= u
                heard_valid |= v
            if self._port is not None and now - self._last_heard_at >= self.silent_after_s:
                self._went_silent()
            if updated or now >= deadline:
                break
        return self._reading(heard_bytes, heard_valid)

    def close(self) -> None:
        self._close_port()

    def __enter__(self) -> GpsReceiver:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -------------------------------------------------------------- internals

    def _reading(self, heard_bytes: bool, heard_valid: bool) -> GpsReading:
        fix = self.state.fix
        if self._port is None and self._open_failed:
            status = "no_device"
        elif self._silent or self._port is None:
            status = "silent"
        elif heard_bytes and not heard_valid:
            status = "garbage"
        elif fix is not None and fix.valid:
            status = "ok"
        else:
            status = "no_fix"
        errors = dict(self.errors)
        errors.update({f"nmea_{k}": v for k, v in self.parser.errors.items()})
        errors.update({f"nmea_{k}": v for k, v in self.state.errors.items()})
        return GpsReading(status, fix, self.airborne, errors)

    def _open(self) -> None:
        now = self.clock()
        try:
            self._port = open_serial(self.port_name, self.baud, "GPS", timeout=self.READ_POLL_S, write_timeout=1.0)
        except RadioError as e:
            self._open_failed = True
            self.errors["open"] += 1
            self._next_open_at = now + self._next_backoff_s()
            # Said once per outage; the retries that follow are debug lines, not a wall of warnings.
            (log.warning if self._failed_opens == 1 else log.debug)(
                "gps_open_failed", error=str(e), retry_in_s=round(self._next_open_at - now, 3),
                attempts=self._failed_opens)
            return
        self.opens += 1
        self._open_failed = False
        self._last_heard_at = now  # silence is counted from the open
        self._config_sent_at = None
        self._next_config_at = now  # the module may have been power-cycled: configure at once
        self.airborne = False

    def _next_backoff_s(self) -> float:
        self._failed_opens += 1
        return self.backoff.delay_s(self._failed_opens)

    def _close_port(self) -> None:
        if self._port is not None:
            try:
                self._port.close()
            except (self._serial_error, OSError):
                pass  # a port that fails to close is dropped all the same; the next open starts afresh
            self._port = None

    def _fault(self, kind: str, detail: str = "") -> None:
        self.errors[kind] += 1
        self._close_port()
        now = self.clock()
        self._next_open_at = now + self._next_backoff_s()
        log.warning("gps_fault", kind=kind, detail=detail, reopen_in_s=round(self._next_open_at - now, 3))

    def _went_silent(self) -> None:
        if not self._silent:
            log.warning("gps_silent", after_s=self.silent_after_s)  # once, on the transition
        self._silent = True
        self._fault("silent")

    def _wait(self, seconds: float) -> bool:
        """Wait on the stop event; True if it was set."""
        if self.flight_clock is not None:
            return self.flight_clock.wait(seconds, self.stop)
        return self.stop.wait(seconds)

    def _next_check_at(self, deadline: float) -> float:
        """When the read loop must look up from the port: the caller's deadline, an ACK overdue,
        silence, the next configuration."""
        at = min(deadline, self._last_heard_at + self.silent_after_s)
        if self._config_sent_at is not None:  # awaiting the ACK: the next configuration waits for it
            return min(at, self._config_sent_at + self.ack_timeout_s)
        return min(at, self._next_config_at)

    def _read_bytes(self, timeout_s: float = READ_POLL_S) -> bytes:
        try:
            if self.flight_clock is not None and _has_fileno(self._port):
                # Wait on the flight clock until bytes arrive or something is due, then take them all.
                if not self.flight_clock.wait_readable([self._port], max(timeout_s, 0.0), self.stop):
                    return b""
                return self._port.read(max(self._port.in_waiting, 1))
            first = self._port.read(1)  # blocks at most READ_POLL_S
            return first + self._port.read(self._port.in_waiting) if first else b""
        except (self._serial_error, OSError) as e:
            self._fault("io", str(e))
            return b""

    def _maybe_configure(self, now: float) -> None:
        if self._config_sent_at is not None:
            if now - self._config_sent_at < self.ack_timeout_s:
                return
            self.errors["ack_timeout"] += 1
            self._config_sent_at = None
            self._next_config_at = now + self.ack_retry_s
        if now < self._next_config_at:
            return
        try:
            self._port.write(cfg_nav5(self.dyn_model))
            self._port.flush()
        except (self._serial_error, OSError) as e:
            self._fault("io", str(e))
            return
        self._config_sent_at = now

    def _take(self, data: bytes, now: float) -> tuple[bool, bool]:
        updated = valid = False
        for item in self.parser.feed(data):
            if isinstance(item, UbxFrame):
                valid = True
                self._on_ubx(item, now)
            else:
                valid = True
                updated |= self.state.update(item, now)
        if valid:
            self._last_heard_at = now
            if self._silent:
                log.info("gps_heard_again")
            self._silent = False
            self._failed_opens = 0
        return updated, valid

    def _on_ubx(self, frame: UbxFrame, now: float) -> None:
        ack = frame.ack
        if ack is None or ack[1:] != (CLASS_CFG, ID_CFG_NAV5) or self._config_sent_at is None:
            return
        self._config_sent_at = None
        if ack[0]:
            self.acks += 1
            self.airborne = True
            self._next_config_at = now + self.reconfigure_every_s
        else:
            self.errors["nak"] += 1
            self.airborne = False
            self._next_config_at = now + self.ack_retry_s


def _has_fileno(port) -> bool:
    """A real serial port (or pseudo-terminal) has a descriptor to wait on; pyserial's URLs
    (`loop://`, `socket://`) may not."""
    try:
        port.fileno()
    except (AttributeError, OSError, ValueError):
        return False
    return True
