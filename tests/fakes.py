"""Small stand-ins shared by tests (real parts are used wherever the test is about them):
a radio that records, a clock the test sets, waiting with a deadline, and a flight key."""

from __future__ import annotations

import ctypes
import platform
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from stratoecho.clock import Clock
from stratoecho.wire.downlink import MAX_LISTEN_S, DownlinkAuth, Window, encode_window
from stratoecho.wire.sentence import Telemetry, encode_sentence
from stratoecho.wire.uplink_keys import new_key, write_key_file


class RecordingRadio:
    """A radio that keeps every frame it is asked to send, in order, and the channel it was keyed
    on (`channels`: None for the radio's own, else the second channel's settings)."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.channels: list = []

    def send(self, frame: bytes, settings=None) -> None:
        self.frames.append(frame)
        self.channels.append(settings)

    receives = False  # transmit only: no listen windows

    def receive(self, timeout_s: float) -> list[bytes]:
        return []

    def hear(self, timeout_s: float) -> list[bytes]:
        return self.receive(timeout_s)

    def ready(self) -> None:
        """Always there: a recording never goes down."""

    def close(self) -> None:
        """Nothing to release: the frames stay for the test to read."""


@dataclass(frozen=True)
class FixedCadence:
    """The intervals in force as the transmitter reads them (payload/cadence.py), held still:
    `beacon_s`, the beacon's period in flight seconds."""

    beacon_s: float = 10.0


EVERY_10_S = FixedCadence(10.0)  # the configuration's default beacon period


class FlightClock(Clock):
    """Flight time that moves only when someone waits; UTC follows it from `start_utc`: hours of
    flight take no time, and nothing depends on the machine's speed."""

    def __init__(self, start_utc: datetime = datetime(2025, 6, 1, 9, 0, tzinfo=timezone.utc)):
        super().__init__(1.0, start_utc)
        self.t = 0.0

    def elapsed_s(self) -> float:
        return self.t

    def now(self) -> datetime:
        return self.start_utc + timedelta(seconds=self.t)

    def wait(self, flight_seconds: float, stop: threading.Event | None = None) -> bool:
        if stop is not None and stop.is_set():
            return True
        self.t += max(flight_seconds, 0.0)
        return False


class FakeClock:
    """Seconds the test sets and advances: pass it where code takes a `clock()` callable."""

    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> None:
        self.t += s


def wait_for(predicate, timeout_s: float = 30.0, poll_s: float = 0.02) -> None:
    """Poll `predicate` until it holds; fail after `timeout_s`. A helper for the test, never part
    of the code under test: it returns as soon as the condition holds, so the generous deadline
    only bounds how long a failure takes to show, and a busy machine does not fail it."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout_s:g} s"
        time.sleep(poll_s)


# A flight key made afresh for each test run (never a constant: a published key is refused),
# and the downlink check derived from it, for tests that build and read our tagged frames.
FLIGHT_KEY = new_key()
AUTH = DownlinkAuth.from_flight_key(FLIGHT_KEY)


def live_cue(boot: int, seq: int, pid: int, auth: DownlinkAuth | None = None) -> bytes:
    """A window cue sent now by real time, for a ground process on real time: it says it listens
    for the longest a cue can (255 s), so a busy machine's delay never makes it late. The first
    cue of a boot is answered only after `live_sentence` of the same boot and seq."""
    return encode_window(Window(boot, seq, pid, int(time.time()), MAX_LISTEN_S), auth or AUTH)


def live_sentence(boot: int, seq: int, callsign: str, auth: DownlinkAuth | None = None,
                  at_s: float | None = None) -> bytes:
    """The balloon's position sentence `seq` of `boot` as it keys it: signed, its time the GPS's at
    `at_s` (seconds since the epoch; now by real time). A window cue follows it; the first cue of
    a boot is dated by it (groundstation/link/uplink.py `claim_window`)."""
    hms = time.strftime("%H:%M:%S", time.gmtime(time.time() if at_s is None else at_s))
    return encode_sentence(Telemetry(callsign, seq, hms, 52.2, 0.12, 12345, 9, -40.5, 180.2, 3890, boot), auth or AUTH)


def write_flight_key(path) -> bytes:
    """FLIGHT_KEY in a key file the way keygen writes one (its one line, mode 600); returns the key."""
    return write_key_file(path, key=FLIGHT_KEY)


def flight_auth(out) -> DownlinkAuth:
    """The downlink check of a `sim fly` flight: the key it wrote in its output folder."""
    from pathlib import Path

    from stratoecho.wire.uplink_keys import load_key

    return DownlinkAuth.from_flight_key(load_key(Path(out) / "uplink.key"))


# tgkill(2)'s number: a signal for one chosen thread, as the kernel may pick any thread of a
# process for a signal sent to the process.
_TGKILL = {"x86_64": 234, "aarch64": 131}.get(platform.machine())
CAN_SIGNAL_A_THREAD = _TGKILL is not None


def signal_another_thread(pid: int, signum: int) -> None:
    """Send `signum` to a thread of process `pid` other than its main one."""
    others = [int(t.name) for t in Path(f"/proc/{pid}/task").iterdir() if int(t.name) != pid]
    assert others, f"process {pid} runs no thread besides its main one"
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.syscall(_TGKILL, pid, others[-1], signum) == 0, f"tgkill: errno {ctypes.get_errno()}"
