"""The wire format: the interface control document between payload and ground.

Nothing else on either side packs or unpacks bytes for the air. Two families of
frame share the channel, told apart by their first byte:

1. UKHAS telemetry sentences, plain ASCII, which every amateur HAB gateway decodes::

       $$CALLSIGN,seq,HH:MM:SS,lat,lon,alt,sats,temp_c,pressure_hpa,batt_mv,boot*CRC\\n

   CRC is CRC16-CCITT (poly 0x1021, init 0xFFFF) over the characters between
   ``$$`` and ``*``, as 4 upper-case hex digits. ``seq`` is the sentence id;
   ``boot`` (our boot counter) rides as the last field so gaps across reboots show.

2. stratoecho record fragments, binary, big-endian::

        0      1      2        4              8      9      10          n-2    n
       +------+------+--------+--------------+------+------+-----------+------+
       | 0xEC | v|k  | boot   | seq          | idx  | cnt  | chunk ... | crc  |
       +------+------+--------+--------------+------+------+-----------+------+
         magic  ver:4 u16      u32            u8     u8                 u16
                kind:4

   0xEC is a first byte no LoRa gateway claims (``$ % ^ ! *``, 0x00, 0x66-0x69,
   0x80-0x8F and 0xDE are taken). A record (musing, event) is cut into ``cnt``
   chunks that fit the MTU; the CRC16-CCITT covers every byte before it.
   Any frame can be duplicated or reordered: the reassembler keys on
   (kind, boot, seq) and emits each record once.

`docs/protocol.md` describes the same with test vectors, which the tests check.
"""

from __future__ import annotations

import enum
import math
import struct
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone

MAGIC = 0xEC
VERSION = 1
DEFAULT_MTU = 255  # SX127x FIFO
_HEAD = struct.Struct(">BBHIBB")
HEADER_BYTES = _HEAD.size  # 10
CRC_BYTES = 2
MAX_FRAGMENTS = 255
# First bytes that existing LoRa gateways dispatch on; our binary frames avoid them all.
GATEWAY_FIRST_BYTES = frozenset(
    [0x24, 0x25, 0x5E, 0x21, 0x2A, 0x00, 0x66, 0x67, 0x68, 0x69, 0xDE, *range(0x80, 0x90)]
)
assert MAGIC not in GATEWAY_FIRST_BYTES


class WireError(ValueError):
    """Bytes that are not a valid frame: the ground counts these by `reason`, it never raises them further.

    `reason` is a short stable name (``crc mismatch``, ``truncated``, ...) for counting;
    the message says what exactly was wrong.
    """

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class Kind(enum.IntEnum):
    TELEMETRY = 0  # only ever sent as a UKHAS sentence
    MUSING = 1
    EVENT = 2


def crc16_ccitt(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC16-CCITT (XMODEM polynomial 0x1021, initial 0xFFFF, no reflection, no final xor)."""
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


# --------------------------------------------------------------------------- telemetry


@dataclass(frozen=True)
class Telemetry:
    """One position report, as the UKHAS sentence carries it."""

    callsign: str
    seq: int
    time: str  # HH:MM:SS UTC
    lat: float
    lon: float
    alt: int  # metres
    sats: int
    temp_c: float
    pressure_hpa: float
    batt_mv: int
    boot: int

    kind = Kind.TELEMETRY

    def as_dict(self) -> dict:
        return {
            "kind": "telemetry", "boot": self.boot, "seq": self.seq, "callsign": self.callsign,
            "time": self.time, "lat": self.lat, "lon": self.lon, "alt": self.alt,
            "sats": self.sats, "temp_c": self.temp_c, "pressure_hpa": self.pressure_hpa,
            "batt_mv": self.batt_mv,
        }


def encode_sentence(t: Telemetry) -> bytes:
    _check_finite(t)
    if not t.callsign or any(c in t.callsign for c in ",*$\n") or not t.callsign.isascii():
        raise WireError("bad callsign", f"callsign {t.callsign!r} must be plain ASCII without , * $ or newline")
    body = (
        f"{t.callsign},{t.seq},{t.time},{t.lat:.5f},{t.lon:.5f},{int(round(t.alt))},"
        f"{t.sats},{t.temp_c:.1f},{t.pressure_hpa:.1f},{t.batt_mv},{t.boot}"
    )
    return f"$${body}*{crc16_ccitt(body.encode('ascii')):04X}\n".encode("ascii")


def decode_sentence(frame: bytes) -> Telemetry:
    try:
        text = frame.decode("ascii").strip()
    except UnicodeDecodeError as e:
        raise WireError("sentence not ascii", "UKHAS sentence holds non-ASCII bytes") from e
    if not text.startswith("$$") or "*" not in text:
        raise WireError("sentence malformed", "not a UKHAS sentence: expected $$...*CRC")
    body, _, crc_text = text[2:].rpartition("*")
    if len(crc_text) != 4:
        raise WireError("sentence malformed", f"UKHAS checksum {crc_text!r} is not 4 hex digits")
    try:
        crc = int(crc_text, 16)
    except ValueError as e:
        raise WireError("sentence malformed", f"UKHAS checksum {crc_text!r} is not hex") from e
    if crc != crc16_ccitt(body.encode("ascii")):
        raise WireError("crc mismatch", "UKHAS checksum mismatch")
    fields = body.split(",")
    if len(fields) != 11:
        raise WireError("sentence field count", f"UKHAS sentence has {len(fields)} fields, expected 11")
    try:
        t = Telemetry(
            callsign=fields[0], seq=int(fields[1]), time=fields[2], lat=float(fields[3]),
            lon=float(fields[4]), alt=int(fields[5]), sats=int(fields[6]),
            temp_c=float(fields[7]), pressure_hpa=float(fields[8]), batt_mv=int(fields[9]),
            boot=int(fields[10]),
        )
    except ValueError as e:
        raise WireError("sentence field invalid", f"UKHAS field does not parse: {e}") from e
    _check_finite(t)
    return t


def _check_finite(t: Telemetry) -> None:
    # float() reads "nan" and "inf"; neither is a position or a temperature.
    if not all(math.isfinite(v) for v in (t.lat, t.lon, t.temp_c, t.pressure_hpa)):
        raise WireError("telemetry not finite", f"sentence {t.seq} of boot {t.boot} holds nan or inf")


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Record:
    """A musing or event: what the payload wants the ground to read whole."""

    kind: Kind
    boot: int
    seq: int
    created: int  # unix seconds, UTC
    text: str

    def body(self) -> bytes:
        return struct.pack(">I", self.created) + self.text.encode("utf-8")

    @classmethod
    def from_body(cls, kind: Kind, boot: int, seq: int, body: bytes) -> Record:
        if len(body) < 4:
            raise WireError("record too short", f"record body of {len(body)} bytes is shorter than its 4-byte time")
        (created,) = struct.unpack(">I", body[:4])
        try:
            text = body[4:].decode("utf-8")
        except UnicodeDecodeError as e:
            raise WireError("text not utf-8", "record text is not UTF-8") from e
        return cls(kind, boot, seq, created, text)

    def as_dict(self) -> dict:
        return {
            "kind": self.kind.name.lower(), "boot": self.boot, "seq": self.seq,
            "created": datetime.fromtimestamp(self.created, timezone.utc).isoformat(),
            "text": self.text,
        }


@dataclass(frozen=True)
class Fragment:
    kind: Kind
    boot: int
    seq: int
    index: int
    count: int
    chunk: bytes


def chunk_capacity(mtu: int) -> int:
    cap = mtu - HEADER_BYTES - CRC_BYTES
    if cap < 1:
        raise ValueError(f"MTU {mtu} leaves no room for data after {HEADER_BYTES + CRC_BYTES} bytes of framing")
    return cap


def fragment_record(record: Record, mtu: int = DEFAULT_MTU) -> list[bytes]:
    """Cut a record into frames of at most `mtu` bytes."""
    if not 0 <= record.boot <= 0xFFFF or not 0 <= record.seq <= 0xFFFFFFFF:
        raise WireError("out of range", f"boot {record.boot} or seq {record.seq} out of range (u16, u32)")
    body = record.body()
    cap = chunk_capacity(mtu)
    count = max(1, math.ceil(len(body) / cap))
    if count > MAX_FRAGMENTS:
        raise WireError("too long", f"record of {len(body)} bytes needs {count} fragments; at most {MAX_FRAGMENTS} at MTU {mtu}")
    frames = []
    for i in range(count):
        head = _HEAD.pack(MAGIC, (VERSION << 4) | record.kind, record.boot, record.seq, i, count)
        data = head + body[i * cap:(i + 1) * cap]
        frames.append(data + struct.pack(">H", crc16_ccitt(data)))
    return frames


def decode_fragment(frame: bytes) -> Fragment:
    if len(frame) < HEADER_BYTES + CRC_BYTES:
        raise WireError("truncated", f"frame of {len(frame)} bytes is shorter than the {HEADER_BYTES + CRC_BYTES}-byte framing")
    (crc,) = struct.unpack(">H", frame[-2:])
    if crc != crc16_ccitt(frame[:-2]):
        raise WireError("crc mismatch", "frame CRC mismatch")
    magic, vk, boot, seq, idx, cnt = _HEAD.unpack_from(frame)
    if magic != MAGIC:
        raise WireError("unknown first byte", f"first byte 0x{magic:02X} is not 0x{MAGIC:02X}")
    if vk >> 4 != VERSION:
        raise WireError("unknown version", f"frame version {vk >> 4} is not {VERSION}")
    try:
        kind = Kind(vk & 0x0F)
    except ValueError as e:
        raise WireError("unknown kind", f"unknown record kind {vk & 0x0F}") from e
    if kind is Kind.TELEMETRY:
        raise WireError("telemetry as fragment", "telemetry travels as UKHAS sentences, not fragments")
    if cnt == 0 or idx >= cnt:
        raise WireError("bad fragment index", f"fragment index {idx} not below count {cnt}")
    return Fragment(kind, boot, seq, idx, cnt, frame[HEADER_BYTES:-2])


def decode_frame(frame: bytes) -> Telemetry | Fragment:
    """Dispatch on the first byte, as a gateway does."""
    if not frame:
        raise WireError("empty", "empty frame")
    if frame[:2] == b"$$":
        return decode_sentence(frame)
    if frame[0] == MAGIC:
        return decode_fragment(frame)
    raise WireError("unknown first byte", f"unknown first byte 0x{frame[0]:02X}")


@dataclass
class Reassembler:
    """Rebuilds records from fragments in any order; duplicates are harmless.

    Pure logic: fragments in, completed records out, each record exactly once.
    Partial records are bounded (`max_pending`) so garbage cannot fill memory.
    """

    max_pending: int = 4096
    max_done: int = 100_000  # records remembered as delivered, oldest forgotten first
    _pending: dict[tuple[int, int, int], dict[int, bytes]] = field(default_factory=dict)
    _counts: dict[tuple[int, int, int], int] = field(default_factory=dict)
    _done: OrderedDict[tuple[int, int, int], None] = field(default_factory=OrderedDict)

    def add(self, frag: Fragment) -> Record | None:
        key = (int(frag.kind), frag.boot, frag.seq)
        if key in self._done:
            return None
        expected = self._counts.setdefault(key, frag.count)
        if expected != frag.count:
            # Re-sent after an MTU change: the new cut wins, the old pieces cannot combine with it.
            self._pending.pop(key, None)
            self._counts[key] = expected = frag.count
        parts = self._pending.setdefault(key, {})
        parts[frag.index] = frag.chunk
        if len(parts) < expected:
            if len(self._pending) > self.max_pending:
                oldest = next(iter(self._pending))
                self._pending.pop(oldest)
                self._counts.pop(oldest, None)
            return None
        del self._pending[key]
        del self._counts[key]
        body = b"".join(parts[i] for i in range(expected))
        record = Record.from_body(frag.kind, frag.boot, frag.seq, body)  # raises before marking done,
        self._done[key] = None  # so a good copy heard later can still complete
        if len(self._done) > self.max_done:
            self._done.popitem(last=False)
        return record

    def missing(self) -> dict[tuple[int, int, int], list[int]]:
        """Fragments still awaited, per record: what a NACK will ask for."""
        return {k: [i for i in range(self._counts[k]) if i not in parts] for k, parts in self._pending.items()}
