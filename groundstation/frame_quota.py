"""What the frames table may hold: bytes per source and in all, for the single receiver
(`listen`), consulted by `store.Store.frames.add` for every frame heard. Anyone can send a UDP
datagram, and before these quotas each one was a row: a flood of junk filled the disk (issue 41).
Pure bookkeeping (no I/O, the clock passed in); the Store counts what the database holds and logs.

What is always stored: a frame the balloon's tag vouches for (`vouched`: a record fragment or a
window cue whose downlink tag checked, a sentence it signed, or such a frame inside another
balloon's relay envelope), before a restart and after it. Everything else (errors, unsigned
sentences and pictures anyone can send, frames whose tag failed) counts against the quotas, and
past them is counted by source (`over_quota`), not stored; a warning a minute per source says how many.
The listener keeps out what such a frame decodes to as well (a sentence's position, a musing
sentence, an SSDV packet), so valid sentences under ever new numbers cannot fill the other tables.
Past the quotas an authentic frame byte for byte the same as one stored before (a recording
played back) is no news and is not stored either; a flight's own frames are all new. What is
compared is the vouched frame, not its envelope: one captured cue in ever new envelopes (random
relayer ids and tags) is one frame, stored once.

A source is where a frame came from with what a sender chooses freely taken off: a UDP sender's
address without its port (an IPv6 sender's /64, which its network hands out whole), a serial
device, a gateway, a replayed file without its line. At most `MAX_SOURCES` are told apart;
senders past those share one share, `OTHER_SOURCES`.

The figures (docs/ground.md, "What each part trusts, and why"):

- `row_bytes`: what a frames row takes of the file. Its cell is its text (the frame in hex, twice
  its bytes; its origin, time, station and error) and `CELL_OVERHEAD` bytes of SQLite's own (sizes,
  the record's header, the signal's two reals, the cell's pointer); a 4,096-byte page holds as many
  whole cells as fit, so a row costs its page's share. Rows of 255-byte frames: six to a page,
  682 bytes each (687 measured with the table's interior pages); of ~2 KB, one to a page.
- `SOURCE_QUOTA_BYTES`, 90 MB: a four-hour flight heard at the most a radio hears, in bytes
  (UKHAS LoRa mode 4, 255-byte packets, ~2,240 bytes a second: 86 MB; station_limits.QUOTA_BYTES,
  the aggregator's share of a station, is the same figure for the same reason).
- `TOTAL_QUOTA_BYTES`, 180 MB: that flight from the station's own radio, and as much again for
  every other sender together (a second receiver or gateway over UDP). A flood from one address
  fills 90 MB, from any number of addresses 180 MB, and then stops growing: ~1 % of a 16 GB card.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections import Counter, OrderedDict
from dataclasses import dataclass

from stratoecho import wire

from .station_limits import QUOTA_BYTES, WARN_EVERY_S, ByteQuota, Throttled

PAGE = 4096  # SQLite's default page size; the Store never sets another
CELL_OVERHEAD = 36
SOURCE_QUOTA_BYTES = QUOTA_BYTES
TOTAL_QUOTA_BYTES = 2 * QUOTA_BYTES
MAX_SOURCES = 1024
OTHER_SOURCES = "(other sources)"
REMEMBER_AUTHENTIC = 32_768  # digests of authentic frames stored; a flight sends a few thousand
MB = 1_000_000

# A frames row's cell and its bytes as `row_bytes` counts them, in SQL: the database's rows are counted the same way.
CELL_SQL = ("length(hex) + length(CAST(source AS BLOB)) + length(CAST(received_at AS BLOB)) "
            f"+ coalesce(length(CAST(error AS BLOB)), 0) + coalesce(length(CAST(station AS BLOB)), 0) + {CELL_OVERHEAD}")
ROW_BYTES_SQL = f"max(cell, {PAGE} / max(1, {PAGE - 8} / cell))"  # of a column `cell`: integer division, as in Python


def tagged(heard: wire.HeardFrame) -> bool:
    """One of our tagged frames (a record fragment, a window cue), or another balloon's relay
    envelope carrying one (docs/network.md): its own tag says whether it counts."""
    return (heard.inner if heard.inner is not None else heard).tagged


def row_bytes(frame_bytes: int, *texts: str | None) -> int:
    """What a frames row of a `frame_bytes`-byte frame and these text columns takes of the file:
    its page's share (the module's docstring; ROW_BYTES_SQL)."""
    cell = 2 * frame_bytes + sum(len(t.encode("utf-8", "surrogatepass")) for t in texts if t) + CELL_OVERHEAD
    return max(cell, PAGE // max(1, (PAGE - 8) // cell))


def bytes_by_sql(column: str) -> str:
    """SELECT `column`, the bytes of its frames rows (as `row_bytes` counts them), for each value but NULL."""
    return (f"SELECT {column}, sum({ROW_BYTES_SQL}) FROM (SELECT {column}, {CELL_SQL} AS cell FROM frames "
            f"WHERE {column} IS NOT NULL) GROUP BY {column}")


def source_key(origin: str) -> str:
    """The source a frame's origin counts under: "udp 192.0.2.7:40001" -> "udp 192.0.2.7",
    "udp 2001:db8::1:5000" -> "udp 2001:db8::/64", "replay air.hex:12" -> "replay air.hex"; others as they are."""
    kind, _, where = origin.partition(" ")
    if kind not in ("udp", "replay") or ":" not in where:
        return origin
    host = where.rsplit(":", 1)[0]
    if kind == "udp":
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return f"{kind} {host}"
        if address.version == 6 and address.ipv4_mapped is None:
            host = str(ipaddress.ip_network(f"{host}/64", strict=False))
    return f"{kind} {host}"


@dataclass(frozen=True)
class FrameQuota:
    source_bytes: int = SOURCE_QUOTA_BYTES
    total_bytes: int = TOTAL_QUOTA_BYTES
    warn_every_s: float = WARN_EVERY_S

    def __post_init__(self) -> None:
        if self.source_bytes < 0 or self.total_bytes < self.source_bytes:
            raise ValueError(f"a source's quota ({self.source_bytes / MB:g} MB) must be 0 or more, and the "
                             f"total ({self.total_bytes / MB:g} MB) at least one source's")


class FrameBudget:
    """The bytes stored per source and in all against a FrameQuota. `stored`: bytes the database
    holds already, by origin (Store.frames.bytes_by_source). `admit` is asked for every frame."""

    def __init__(self, quota: FrameQuota, stored: dict[str, int] | None = None) -> None:
        self.quota = quota
        by_source: Counter = Counter()
        for origin, n in (stored or {}).items():
            by_source[source_key(origin)] += n
        kept = dict(by_source.most_common(MAX_SOURCES - 1))
        kept[OTHER_SOURCES] = kept.get(OTHER_SOURCES, 0) + sum(n for k, n in by_source.items() if k not in kept)
        self.bytes = ByteQuota(quota.source_bytes, quota.total_bytes, {k: n for k, n in kept.items() if n})
        self.over_quota: Counter = Counter()  # frames not stored, by source
        self.warnings = Throttled(quota.warn_every_s)
        self._sources = set(self.bytes.used)  # told apart: at most MAX_SOURCES, OTHER_SOURCES among them
        self._authentic: OrderedDict[bytes, None] = OrderedDict()

    def key(self, origin: str) -> str:
        """The source `origin` counts under: its own, or OTHER_SOURCES once MAX_SOURCES are known."""
        k = source_key(origin)
        if k not in self._sources:
            if len(self._sources) >= MAX_SOURCES - 1:
                return OTHER_SOURCES
            self._sources.add(k)
        return k

    def admit(self, data: bytes, origin: str, error: str | None, *texts: str | None,
              vouched: bytes | None = None) -> bool:
        """True (its bytes counted) to store this frame; False (counted in `over_quota`) when its
        source or the total is full and it is not an authentic frame new to this budget.
        `texts`: the row's other text columns (its time, station), as stored; `vouched`: the frame
        the balloon's tag checked in (`data` itself, or the one its relay envelope carries), None
        for a claim."""
        key, n = self.key(origin), row_bytes(len(data), origin, error, *texts)
        ours = vouched is not None
        digest = hashlib.blake2b(vouched, digest_size=16).digest() if ours else b""
        if self.bytes.take(key, n):
            if ours:
                self._remember(digest)
            return True
        if ours and digest not in self._authentic:  # the balloon's own, new: stored past the quota, and counted
            self.bytes.add(key, n)
            self._remember(digest)
            return True
        self.over_quota[key] += 1
        return False

    def _remember(self, digest: bytes) -> None:
        self._authentic[digest] = None
        self._authentic.move_to_end(digest)
        while len(self._authentic) > REMEMBER_AUTHENTIC:
            self._authentic.popitem(last=False)

    def warning_due(self, origin: str, now: float) -> int | None:
        """The frames not stored from `origin`'s source since its last warning, when one is due."""
        return self.warnings.due(self.key(origin), now)


def add_frame_quota_arguments(parser) -> None:
    """`listen`'s --source-quota-mb and --quota-total-mb (docs/ground.md, "What each part trusts, and why")."""
    group = parser.add_argument_group(
        "storage quota", "what the frames table keeps from anyone: frames that decode to the balloon's own tagged "
                         "records and cues are always kept; errors and open frames past these are counted, not "
                         "kept (their records and sentences still are)")
    group.add_argument("--source-quota-mb", type=float, default=SOURCE_QUOTA_BYTES / MB, metavar="MB",
                       help=f"megabytes of frames kept from one source: a UDP sender's address, a serial device "
                            f"(default {SOURCE_QUOTA_BYTES / MB:g}: a four-hour flight at the most a radio hears)")
    group.add_argument("--quota-total-mb", type=float, default=TOTAL_QUOTA_BYTES / MB, metavar="MB",
                       help=f"megabytes of frames kept from all sources together (default {TOTAL_QUOTA_BYTES / MB:g})")
