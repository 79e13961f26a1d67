"""Our own records (musings, events, health, images, API requests, late positions) as erasure-coded fragments.

A record's body — a ``u32`` creation time (Unix seconds) then its content, which
depends on the kind (`content.py`) — is sealed with a ``u32`` record check (CRC-32,
as zlib computes it, over kind, boot, seq and the body), then cut
into ``k`` equal data shards and extended with ``n − k`` Reed–Solomon parity shards
(`fec.py`); each shard travels in its own frame, and ANY ``k`` of the ``n`` frames
rebuild the record. The frame's CRC16 only says a frame arrived as it was sent; a
record is delivered only when its check matches too, so a damaged frame whose CRC16
still matches (one in 65,536) or a frame from another record cannot make a wrong one.
All integers big-endian::

     0      1      2        4              8      9      10     11       13           n-2-T  n-2    n
    +------+------+--------+--------------+------+------+------+--------+------------+------+------+
    | 0xEC | v|k  | boot   | seq          | idx  | k    | n    | length | shard ...  | tag  | crc  |
    +------+------+--------+--------------+------+------+------+--------+------------+------+------+
      magic  ver:4  u16      u32            u8     u8     u8     u16      ceil(len/k)  T      u16
             kind:4

``idx`` < ``n``; ``length`` is the sealed body's length, check included (the last
data shard is padded); the tag is the downlink tag (`downlink.py`: HMAC-SHA256 under the
key derived from the flight key, its first ``T`` bytes, default 8) over every byte before it,
so each fragment — a NACK's answer too — is the balloon's own or is not decoded at all;
the CRC16-CCITT covers every byte before it. Receivers key on (kind, boot, seq):
duplicates and reordering are harmless. A shard does not depend on ``n``, so a
repair may send parity shards beyond the first ``n``; a record re-sent with
another ``k`` or ``length`` (a new MTU) starts over.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone

from .common import DEFAULT_MTU, MAGIC, Kind, WireError, crc16_ccitt, refuse_as_record
from .content import content_json, decode_content, encode_content, summary
from .downlink import DEFAULT_TAG_LEN, DownlinkAuth, authenticate
from .fec import FecError
from .fec import decode as fec_decode
from .fec import encode as fec_encode

VERSION = 4  # 4: the downlink tag on every fragment; 3: the record check; 2 had none
_HEAD = struct.Struct(">BBHIBBBH")
HEADER_BYTES = _HEAD.size  # 13
CRC_BYTES = 2
CHECK_BYTES = 4  # the record check after the body
MAX_SHARDS = 255
_IDENTITY = struct.Struct(">BHI")  # kind, boot, seq: what the check binds the body to


def record_check(kind: int, boot: int, seq: int, body: bytes) -> int:
    """CRC-32 (zlib's) over the record's kind, boot and seq (``>BHI``) and its body."""
    return zlib.crc32(body, zlib.crc32(_IDENTITY.pack(kind, boot, seq)))


@dataclass(frozen=True)
class Record:
    """What the payload wants the ground to have whole: a musing, an event, health, an image
    or an API request. `content` is text, declared fields (dict) or JPEG bytes by kind."""

    kind: Kind
    boot: int
    seq: int
    created: int  # unix seconds, UTC
    content: str | bytes | dict

    def __post_init__(self) -> None:
        refuse_as_record(self.kind)

    @property
    def text(self) -> str:
        """The text of a musing or event; a one-line summary of any other kind."""
        return summary(self.kind, self.content)

    def body(self) -> bytes:
        return struct.pack(">I", self.created) + encode_content(self.kind, self.content)

    @classmethod
    def from_body(cls, kind: Kind, boot: int, seq: int, body: bytes) -> Record:
        if len(body) < 4:
            raise WireError("record too short", f"record body of {len(body)} bytes is shorter than its 4-byte time")
        (created,) = struct.unpack(">I", body[:4])
        return cls(kind, boot, seq, created, decode_content(kind, body[4:]))

    def as_dict(self) -> dict:
        return {
            "kind": self.kind.name.lower(), "boot": self.boot, "seq": self.seq,
            "created": datetime.fromtimestamp(self.created, timezone.utc).isoformat(),
            "text": self.text, **content_json(self.kind, self.content),
        }


@dataclass(frozen=True)
class Fragment:
    kind: Kind
    boot: int
    seq: int
    index: int
    k: int  # data shards: any k fragments rebuild the record
    n: int  # all shards, parity included
    length: int  # body bytes
    shard: bytes

    @property
    def key(self) -> tuple[int, int, int]:
        return (int(self.kind), self.boot, self.seq)


def shard_capacity(mtu: int, tag_len: int = DEFAULT_TAG_LEN) -> int:
    cap = mtu - HEADER_BYTES - tag_len - CRC_BYTES
    if cap < 1:
        raise ValueError(f"MTU {mtu} leaves no room for data after {HEADER_BYTES + tag_len + CRC_BYTES} bytes of "
                         "framing and tag")
    return cap


def data_shards(body_bytes: int, mtu: int = DEFAULT_MTU, tag_len: int = DEFAULT_TAG_LEN) -> int:
    """k: how many frames a body of this size (`Record.body()`, its check not counted) needs
    without parity, with a `tag_len`-byte downlink tag on each."""
    return max(1, math.ceil((body_bytes + CHECK_BYTES) / shard_capacity(mtu, tag_len)))


def fragment_record(record: Record, mtu: int = DEFAULT_MTU, parity: int = 0, *, auth: DownlinkAuth) -> list[bytes]:
    """Cut a record into `k + parity` frames of at most `mtu` bytes, each tagged with `auth`;
    any k rebuild it."""
    return fragment_body(record.kind, record.boot, record.seq, record.body(), mtu, parity, auth=auth)


def fragment_body(kind: Kind, boot: int, seq: int, body: bytes, mtu: int = DEFAULT_MTU, parity: int = 0, *,
                  auth: DownlinkAuth) -> list[bytes]:
    """`fragment_record` from a body already encoded (`Record.body()`, as the payload's queue
    keeps it): what is stored is cut as it is, never decoded and encoded again."""
    refuse_as_record(kind)
    if not 0 <= boot <= 0xFFFF or not 0 <= seq <= 0xFFFFFFFF:
        raise WireError("out of range", f"boot {boot} or seq {seq} out of range (u16, u32)")
    if len(body) < 4:
        raise WireError("record too short", f"record body of {len(body)} bytes is shorter than its 4-byte time")
    sealed = body + struct.pack(">I", record_check(kind, boot, seq, body))
    if len(sealed) > 0xFFFF:
        raise WireError("too long", f"record of {len(body)} bytes; at most {0xFFFF - CHECK_BYTES}")
    k = data_shards(len(body), mtu, auth.tag_len)
    n = k + max(parity, 0)
    if n > MAX_SHARDS:
        raise WireError("too long", f"record of {len(body)} bytes needs {k}+{parity} fragments; at most {MAX_SHARDS} at MTU "
                                    f"{mtu}")
    frames = []
    for i, shard in enumerate(fec_encode(sealed, k, n)):
        head = _HEAD.pack(MAGIC, (VERSION << 4) | kind, boot, seq, i, k, n, len(sealed))
        data = head + shard
        data += auth.tag(data)
        frames.append(data + struct.pack(">H", crc16_ccitt(data)))
    return frames


def decode_fragment(frame: bytes, auth: DownlinkAuth | None) -> Fragment:
    """Parse a fragment and check its downlink tag; WireError ("unauthenticated" without `auth`,
    "bad tag" when the tag fails) for one that is not the balloon's: nothing of it is believed."""
    if len(frame) < HEADER_BYTES + CRC_BYTES + 1:
        raise WireError("truncated", f"frame of {len(frame)} bytes is shorter than the {HEADER_BYTES + CRC_BYTES}-byte "
                                     "framing plus data")
    (crc,) = struct.unpack(">H", frame[-2:])
    if crc != crc16_ccitt(frame[:-2]):
        raise WireError("crc mismatch", "frame CRC mismatch")
    magic, vk, boot, seq, idx, k, n, length = _HEAD.unpack_from(frame)
    if magic != MAGIC:
        raise WireError("unknown first byte", f"first byte 0x{magic:02X} is not 0x{MAGIC:02X}")
    if vk >> 4 != VERSION:
        raise WireError("unknown version", f"frame version {vk >> 4} is not {VERSION}")
    try:
        kind = Kind(vk & 0x0F)
    except ValueError as e:
        raise WireError("unknown kind", f"unknown record kind {vk & 0x0F}") from e
    if kind is Kind.SSDV:
        raise WireError("ssdv as fragment", "SSDV packets travel as they are (first byte 0x66/0x67), not as fragments")
    if kind is Kind.MUSING_SENTENCE:
        raise WireError("musing sentence as fragment", "musing sentences travel as UKHAS text, not as fragments")
    if not 1 <= k <= n or idx >= n:
        raise WireError("bad fragment index", f"fragment index {idx} with k={k} of n={n}")
    authenticate(frame, None, auth, f"{kind.name.lower()} {boot}.{seq} fragment {idx}")
    shard = frame[HEADER_BYTES:-2 - auth.tag_len]
    if length < 4 + CHECK_BYTES:
        raise WireError("record too short", f"record of {length} bytes is shorter than its 4-byte time and "
                                            f"{CHECK_BYTES}-byte check")
    if len(shard) != math.ceil(length / k):
        raise WireError("bad shard size", f"shard of {len(shard)} bytes does not fit a {length}-byte record in {k} shards")
    return Fragment(kind, boot, seq, idx, k, n, length, shard)


@dataclass
class Reassembler:
    """Rebuilds records from any k of their n fragments, in any order, each record once.

    Pure logic: fragments in, completed records out. Partial records are bounded
    (`max_pending`, oldest dropped) so garbage cannot fill memory.
    """

    max_pending: int = 4096
    max_done: int = 100_000  # records remembered as delivered, oldest forgotten first
    _pending: dict[tuple[int, int, int], dict[int, bytes]] = field(default_factory=dict)
    _cut: dict[tuple[int, int, int], tuple[int, int, int]] = field(default_factory=dict)  # (k, n, length)
    _done: OrderedDict[tuple[int, int, int], None] = field(default_factory=OrderedDict)

    def add(self, frag: Fragment) -> Record | None:
        key = frag.key
        if key in self._done:
            return None
        k, n, length = self._cut.setdefault(key, (frag.k, frag.n, frag.length))
        if (k, length) != (frag.k, frag.length):
            # Re-sent with another cut (a new MTU): the old shards cannot combine with it.
            self._pending.pop(key, None)
        # A shard does not depend on n, so repairs may bring parity beyond the first n.
        self._cut[key] = (frag.k, max(n, frag.n) if (k, length) == (frag.k, frag.length) else frag.n, frag.length)
        shards = self._pending.setdefault(key, {})
        shards[frag.index] = frag.shard
        if len(shards) < frag.k:
            if len(self._pending) > self.max_pending:
                oldest = next(iter(self._pending))
                self._pending.pop(oldest)
                self._cut.pop(oldest, None)
            return None
        del self._pending[key]
        del self._cut[key]
        try:
            sealed = fec_decode(shards, frag.k, MAX_SHARDS, frag.length)
        except FecError as e:
            raise WireError("fec failed", f"record {key}: {e}") from e
        body, (check,) = sealed[:-CHECK_BYTES], struct.unpack(">I", sealed[-CHECK_BYTES:])
        if check != record_check(frag.kind, frag.boot, frag.seq, body):
            # A shard that was not what was sent: these shards are dropped, and a repair (or a
            # copy heard later) rebuilds the record from good ones.
            raise WireError("record check failed", f"record {key}: its check does not match the rebuilt body")
        record = Record.from_body(frag.kind, frag.boot, frag.seq, body)  # raises before marking done,
        self._done[key] = None  # so a good copy heard later can still complete
        if len(self._done) > self.max_done:
            self._done.popitem(last=False)
        return record

    def missing(self) -> dict[tuple[int, int, int], tuple[int, list[int]]]:
        """Per incomplete record: how many more fragments it needs, and which indices never came
        (what a NACK asks for)."""
        out = {}
        for key, shards in self._pending.items():
            k, n, _ = self._cut[key]
            out[key] = (k - len(shards), [i for i in range(n) if i not in shards])
        return out
