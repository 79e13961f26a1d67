"""The GPS: a u-blox (M8 family) receiver on a UART, read with pyserial.

Pure logic first, I/O last:

* `NmeaParser` — bytes in (any chunking), `NmeaSentence` and `UbxFrame` records out.
  It resynchronises on `$` (NMEA) and `0xB5 0x62` (UBX); bad checksums, overlong or
  truncated lines and line noise are dropped and counted in `errors`, never raised.
* `parse_gga` / `parse_rmc` and `FixState`, which folds the latest GGA (position,
  altitude, fix quality, satellites) and RMC (date, validity, speed) into one `Fix`.
* UBX framing: `ubx_frame` (Fletcher-8 checksum), `cfg_nav5` (dynamic model), ACK/NAK.
* `GpsReceiver` — the I/O edge: opens a port or pyserial URL, puts the module in the
  Airborne <1g model, reads fixes, and survives silence, garbage and a module that
  browned out back into its default (portable) model.
* `system_time_from_gps` — sets the system clock from a fix it trusts.

UBX frame (u-blox M8 receiver description, "UBX frame structure")::

    +------+------+-------+----+--------+-----------+------+------+
    | 0xB5 | 0x62 | class | id | length | payload   | CK_A | CK_B |
    |  1   |  1   |   1   | 1  | 2 (LE) | length    |  1   |  1   |
    +------+------+-------+----+--------+-----------+------+------+
    checksum: 8-bit Fletcher over class, id, length and payload

UBX-CFG-NAV5 (class 0x06, id 0x24), 36-byte payload, little-endian; only the fields whose
bit is set in `mask` are applied, so we send mask = 0x0001 (dyn) and zeros elsewhere::

    offset 0  U2 mask             2  U1 dynModel       3  U1 fixMode
           4  I4 fixedAlt         8  U4 fixedAltVar   12  I1 minElev
          13  U1 drLimit         14  U2 pDop          16  U2 tDop
          18  U2 pAcc            20  U2 tAcc          22  U1 staticHoldThresh
          23  U1 dgnssTimeout    24  U1 cnoThreshNumSVs 25 U1 cnoThresh
          26  U1[2] reserved     28  U2 staticHoldMaxDist
          30  U1 utcStandard     31  U1[5] reserved
    dynModel: 0 portable (the default), 2 stationary, 3 pedestrian, 4 automotive,
              5 sea, 6 airborne <1g, 7 airborne <2g, 8 airborne <4g

In the portable model an M8 stops reporting fixes above 12 000 m; airborne <1g allows
50 000 m. A brown-out resets the module to portable, and it does not say so, so the
setting is re-sent every `reconfigure_every_s` and whenever the port is re-opened.

ACK-ACK (0x05 0x01) / ACK-NAK (0x05 0x00): 2-byte payload, the class and id acknowledged.
"""

from __future__ import annotations

import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

import structlog

from .backoff import Backoff
from .radio import RadioError, open_serial

log = structlog.get_logger(__name__)

# ---------------------------------------------------------------------------- UBX

UBX_SYNC = b"\xb5\x62"
UBX_MAX_PAYLOAD = 1024  # anything longer is a false sync in noise
CLASS_ACK, ID_ACK_NAK, ID_ACK_ACK = 0x05, 0x00, 0x01
CLASS_CFG, ID_CFG_NAV5 = 0x06, 0x24
CFG_NAV5_LEN = 36
NAV5_MASK_DYN = 0x0001
DYN_PORTABLE, DYN_AIRBORNE_1G = 0, 6


def ubx_checksum(body: bytes) -> bytes:
    """8-bit Fletcher checksum (CK_A, CK_B) over class, id, length and payload."""
    a = b = 0
    for byte in body:
        a = (a + byte) & 0xFF
        b = (b + a) & 0xFF
    return bytes((a, b))


def ubx_frame(cls: int, msg_id: int, payload: bytes = b"") -> bytes:
    body = struct.pack("<BBH", cls, msg_id, len(payload)) + payload
    return UBX_SYNC + body + ubx_checksum(body)


def cfg_nav5(dyn_model: int = DYN_AIRBORNE_1G) -> bytes:
    """UBX-CFG-NAV5 that sets only the dynamic platform model (mask = dyn)."""
    payload = bytearray(CFG_NAV5_LEN)
    struct.pack_into("<HB", payload, 0, NAV5_MASK_DYN, dyn_model)
    return ubx_frame(CLASS_CFG, ID_CFG_NAV5, bytes(payload))


@dataclass(frozen=True)
class UbxFrame:
    cls: int
    msg_id: int
    payload: bytes

    @property
    def ack(self) -> tuple[bool, int, int] | None:
        """(acknowledged?, class, id) for ACK-ACK / ACK-NAK, else None."""
        if self.cls == CLASS_ACK and self.msg_id in (ID_ACK_ACK, ID_ACK_NAK) and len(self.payload) == 2:
            return self.msg_id == ID_ACK_ACK, self.payload[0], self.payload[1]
        return None


# ---------------------------------------------------------------------------- NMEA framing

NMEA_MAX_LINE = 120  # NMEA 0183 says 82 characters; u-blox stays under it, leave room


@dataclass(frozen=True)
class NmeaSentence:
    talker: str  # "GP", "GN", "GL", "GA", "BD"...
    kind: str  # "GGA", "RMC"...
    fields: tuple[str, ...]  # the comma-separated fields after the address


class NmeaParser:
    """Bytes in, `NmeaSentence` / `UbxFrame` out; `feed` may be given any chunking.

    Dropped input is counted in `errors`: "checksum" (NMEA checksum wrong or missing),
    "garbage" (runs of bytes outside any sentence or frame, or non-printable bytes in a
    line), "overlong" (no line end within NMEA_MAX_LINE), "truncated" (a new `$` before
    the line ended), "ubx_checksum", "ubx_length".
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.errors: Counter = Counter()
        self._in_garbage = False

    def feed(self, data: bytes) -> list[NmeaSentence | UbxFrame]:
        self._buf += data
        out: list[NmeaSentence | UbxFrame] = []
        buf = self._buf
        while buf:
            first = buf[0]
            if first == 0x24:  # "$"
                done = self._take_nmea(out)
            elif first == 0xB5:
                done = self._take_ubx(out)
            elif first in (0x0D, 0x0A):  # line ends between sentences
                del buf[0]
                continue
            else:
                self._skip_garbage()
                continue
            if not done:
                break  # wait for more bytes
        return out

    def _skip_garbage(self) -> None:
        """Drop bytes up to the next possible start; a run counts once."""
        buf = self._buf
        i = 1
        while i < len(buf) and buf[i] not in (0x24, 0xB5):
            i += 1
        del buf[:i]
        if not self._in_garbage:
            self.errors["garbage"] += 1
            self._in_garbage = True

    def _resync(self, reason: str) -> None:
        self.errors[reason] += 1
        del self._buf[0]
        self._in_garbage = True  # what follows up to the next start belongs to this error

    def _take_nmea(self, out: list) -> bool:
        buf = self._buf
        end = buf.find(b"\n", 0, NMEA_MAX_LINE)
        limit = end if end >= 0 else min(len(buf), NMEA_MAX_LINE)
        restart = buf.find(b"$", 1, limit)
        if restart < 0:
            restart = buf.find(b"\xb5\x62", 1, limit)
        if restart >= 0:
            self._resync("truncated")
            return True
        if end < 0:
            if len(buf) >= NMEA_MAX_LINE:
                self._resync("overlong")
                return True
            return False
        line = bytes(buf[1:end]).rstrip(b"\r")
        del buf[: end + 1]
        self._in_garbage = False
        if any(c < 0x20 or c > 0x7E for c in line):
            self.errors["garbage"] += 1
            return True
        body, star, given = line.partition(b"*")
        if not star or len(given) != 2:
            self.errors["checksum"] += 1
            return True
        calc = 0
        for c in body:
            calc ^= c
        try:
            ok = int(given, 16) == calc
        except ValueError:
            ok = False
        if not ok:
            self.errors["checksum"] += 1
            return True
        parts = body.decode("ascii").split(",")
        address = parts[0]
        if len(address) < 5:
            self.errors["garbage"] += 1
            return True
        if address.startswith("P"):  # proprietary: $PUBX,...
            out.append(NmeaSentence("P", address[1:], tuple(parts[1:])))
        else:
            out.append(NmeaSentence(address[:2], address[2:], tuple(parts[1:])))
        return True

    def _take_ubx(self, out: list) -> bool:
        buf = self._buf
        if len(buf) < 2:
            return False
        if buf[1] != 0x62:
            self._skip_garbage()
            return True
        if len(buf) < 6:
            return False
        (length,) = struct.unpack_from("<H", buf, 4)
        if length > UBX_MAX_PAYLOAD:
            self._resync("ubx_length")
            return True
        total = 6 + length + 2
        if len(buf) < total:
            return False
        body = bytes(buf[2 : 6 + length])
        if ubx_checksum(body) != bytes(buf[6 + length : total]):
            self._resync("ubx_checksum")
            return True
        del buf[:total]
        self._in_garbage = False
        out.append(UbxFrame(body[0], body[1], body[4:]))
        return True


# ---------------------------------------------------------------------------- NMEA content


@dataclass(frozen=True)
class Gga:
    time: tuple[int, int, float] | None  # h, m, s (UTC)
    lat: float | None
    lon: float | None
    quality: int  # 0 no fix, 1 GPS, 2 DGPS, 4/5 RTK, 6 dead reckoning
    sats: int
    hdop: float | None
    alt_m: float | None  # above mean sea level


@dataclass(frozen=True)
class Rmc:
    time: tuple[int, int, float] | None
    valid: bool  # status "A"
    lat: float | None
    lon: float | None
    speed_mps: float | None
    course_deg: float | None
    date: date | None


def _hms(text: str) -> tuple[int, int, float] | None:
    if not text:
        return None
    h, m, s = int(text[0:2]), int(text[2:4]), float(text[4:])
    if h > 23 or m > 59 or s >= 61:
        raise ValueError(f"time {text!r}")
    return h, m, s


def _coord(value: str, hemi: str, deg_digits: int) -> float | None:
    if not value:
        return None
    degrees = int(value[:deg_digits]) + float(value[deg_digits:]) / 60.0
    if hemi in ("S", "W"):
        return -degrees
    if hemi not in ("N", "E"):
        raise ValueError(f"hemisphere {hemi!r}")
    return degrees


def _float(text: str) -> float | None:
    return float(text) if text else None


def parse_gga(fields: tuple[str, ...]) -> Gga:
    """Fields after `$xxGGA`; ValueError if malformed."""
    if len(fields) < 9:
        raise ValueError(f"GGA with {len(fields)} fields")
    return Gga(
        time=_hms(fields[0]),
        lat=_coord(fields[1], fields[2], 2),
        lon=_coord(fields[3], fields[4], 3),
        quality=int(fields[5] or 0),
        sats=int(fields[6] or 0),
        hdop=_float(fields[7]),
        alt_m=_float(fields[8]),
    )


def parse_rmc(fields: tuple[str, ...]) -> Rmc:
    """Fields after `$xxRMC`; ValueError if malformed."""
    if len(fields) < 9:
        raise ValueError(f"RMC with {len(fields)} fields")
    d = fields[8]
    knots = _float(fields[6])
    return Rmc(
        time=_hms(fields[0]),
        valid=fields[1] == "A",
        lat=_coord(fields[2], fields[3], 2),
        lon=_coord(fields[4], fields[5], 3),
        speed_mps=knots * 0.514444 if knots is not None else None,
        course_deg=_float(fields[7]),
        date=date(2000 + int(d[4:6]), int(d[2:4]), int(d[0:2])) if d else None,
    )


@dataclass(frozen=True)
class Fix:
    """The latest GGA and RMC together. `valid`: RMC status A and GGA fix quality > 0.
    `received_at` is the monotonic time of the last sentence that went into it."""

    utc: datetime | None
    lat: float | None
    lon: float | None
    alt_m: float | None
    sats: int
    quality: int
    hdop: float | None
    speed_mps: float | None
    course_deg: float | None
    valid: bool
    dated: bool  # utc's date came from an RMC (GGA carries no date)
    received_at: float

    def age_s(self, now: float | None = None) -> float:
        return (time.monotonic() if now is None else now) - self.received_at


class FixState:
    """Folds GGA and RMC sentences into a `Fix`. Malformed ones count in `errors["malformed"]`."""

    def __init__(self) -> None:
        self.gga: Gga | None = None
        self.rmc: Rmc | None = None
        self.fix: Fix | None = None
        self.errors: Counter = Counter()

    def update(self, sentence: NmeaSentence, now: float) -> bool:
        """True if the sentence changed the fix."""
        try:
            if sentence.kind == "GGA":
                self.gga, latest = parse_gga(sentence.fields), "gga"
            elif sentence.kind == "RMC":
                self.rmc, latest = parse_rmc(sentence.fields), "rmc"
            else:
                return False
        except (ValueError, IndexError):
            self.errors["malformed"] += 1
            return False
        self.fix = self._combine(latest, now)
        return True

    def _combine(self, latest: str, now: float) -> Fix:
        gga, rmc = self.gga, self.rmc
        newest = gga if latest == "gga" else rmc
        utc = None
        if newest.time is not None:
            h, m, s = newest.time
            day = rmc.date if rmc is not None and rmc.date is not None else None
            base = datetime.combine(day or date(1970, 1, 1), datetime.min.time(), tzinfo=timezone.utc)
            utc = base + timedelta(hours=h, minutes=m, seconds=s)
            if day is not None and latest == "gga" and rmc.time is not None:
                rh, rm, rs = rmc.time
                if (h * 3600 + m * 60 + s) - (rh * 3600 + rm * 60 + rs) < -43200:
                    utc += timedelta(days=1)  # GGA just after midnight, RMC still from yesterday
        quality = gga.quality if gga else 0
        valid = quality > 0 and (rmc is None or rmc.valid) if gga else bool(rmc and rmc.valid)
        source = gga if gga is not None and gga.lat is not None else rmc
        return Fix(
            utc=utc,
            lat=source.lat if source else None,
            lon=source.lon if source else None,
            alt_m=gga.alt_m if gga else None,
            sats=gga.sats if gga else 0,
            quality=quality,
            hdop=gga.hdop if gga else None,
            speed_mps=rmc.speed_mps if rmc else None,
            course_deg=rmc.course_deg if rmc else None,
            valid=valid,
            dated=utc is not None and rmc is not None and rmc.date is not None,
            received_at=now,
        )


# ---------------------------------------------------------------------------- the receiver


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


class GpsReceiver:
    """A u-blox receiver on `port` (a device path or any pyserial URL).

    `read(timeout_s)` never raises for device faults: it returns a `GpsReading` whose
    status says what is wrong and whose `errors` count it. Faults handled:

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
        ack_timeout_s: float = 1.0,
        ack_retry_s: float = 5.0,
        reconfigure_every_s: float = 600.0,
        silent_after_s: float = 3.0,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 60.0,
        stop: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
        flight_clock=None,
    ):
        import serial  # lazily, like every serial part

        self._serial_error = serial.SerialException
        self.port_name, self.baud = port, baud
        self.dyn_model = dyn_model
        self.ack_timeout_s, self.ack_retry_s = ack_timeout_s, ack_retry_s
        self.reconfigure_every_s, self.silent_after_s = reconfigure_every_s, silent_after_s
        self.backoff = Backoff(initial_s=backoff_initial_s, factor=2.0, max_s=backoff_max_s)
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


# ---------------------------------------------------------------------------- system time


def _settime(posix_s: float) -> None:
    time.clock_settime(time.CLOCK_REALTIME, posix_s)


@dataclass(frozen=True)
class ClockResult:
    action: str  # "set", "in_sync", "untrusted", "not_permitted"
    reason: str
    offset_s: float | None = None  # GPS time minus system time


EARLIEST_TRUSTED = datetime(2024, 1, 1, tzinfo=timezone.utc)  # before it: a module without almanac/week


def system_time_from_gps(
    fix: Fix | None,
    set_clock: Callable[[float], None] = _settime,
    *,
    now_s: Callable[[], float] = time.time,
    monotonic: Callable[[], float] = time.monotonic,
    max_age_s: float = 2.0,
    tolerance_s: float = 1.0,
) -> ClockResult:
    """Set the system clock from `fix` when its time can be trusted: a valid fix (RMC
    status A, GGA quality > 0) whose date came from an RMC, heard under `max_age_s` ago
    and not before EARLIEST_TRUSTED. The time set is corrected for the fix's age; the
    clock is left alone when already within `tolerance_s`.

    The default setter calls clock_settime(CLOCK_REALTIME), which needs root or the
    CAP_SYS_TIME capability; without it the result is "not_permitted" and nothing is
    raised. On the Pi, rather than running the payload as root, grant just that
    capability in its systemd unit:

        [Service]
        AmbientCapabilities=CAP_SYS_TIME
        CapabilityBoundingSet=CAP_SYS_TIME

    (or let gpsd + chrony discipline the clock and pass a setter that does nothing).
    """
    if fix is None:
        return ClockResult("untrusted", "no fix yet")
    if not (fix.valid and fix.quality > 0):
        return ClockResult("untrusted", "no valid fix")
    if fix.utc is None or not fix.dated:
        return ClockResult("untrusted", "no date (no valid RMC)")
    age = monotonic() - fix.received_at
    if age > max_age_s:
        return ClockResult("untrusted", f"fix is {age:.1f} s old")
    if fix.utc < EARLIEST_TRUSTED:
        return ClockResult("untrusted", f"date {fix.utc.date()} is before {EARLIEST_TRUSTED.date()}")
    gps_now = fix.utc.timestamp() + age
    offset = gps_now - now_s()
    if abs(offset) <= tolerance_s:
        return ClockResult("in_sync", "within tolerance", offset)
    try:
        set_clock(gps_now)
    except PermissionError as e:
        log.warning("clock_not_set", error=str(e), hint="run with CAP_SYS_TIME (systemd AmbientCapabilities)")
        return ClockResult("not_permitted", f"{e}; needs root or CAP_SYS_TIME", offset)
    log.info("clock_set_from_gps", offset_s=round(offset, 3))
    return ClockResult("set", "set from GPS", offset)


__all__ = [
    "ClockResult", "Fix", "FixState", "Gga", "GpsReading", "GpsReceiver", "NmeaParser",
    "NmeaSentence", "Rmc", "UbxFrame", "cfg_nav5", "parse_gga", "parse_rmc",
    "system_time_from_gps", "ubx_checksum", "ubx_frame",
]
