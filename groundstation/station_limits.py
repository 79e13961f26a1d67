"""What one station of the network may cost the aggregator: frames a second, claims held in
memory, bytes of frames kept on disk. Pure bookkeeping (no I/O, the clock passed in), so a flood from
one login evicts and drops only that station's own frames; `network.Aggregator` applies it.

The numbers (docs/ground.md, "What a station is trusted with"):

- `RATE_FRAMES_S`: the fastest UKHAS LoRa mode (Turbo, SF7 at 250 kHz) puts a 59-byte HABpack
  sentence on air in 0.07 s (docs/deploy.md), so no radio hears more than ~14 frames a second;
  20 leaves room for a station with two receivers.
- `BURST_FRAMES`: a station's publisher buffers up to 10,000 frames while the broker is away
  and sends them together when it comes back, and the broker hands its whole backlog over at
  once when the aggregator restarts: twice that is taken at any speed.
- `PENDING_PER_STATION`: a station's claims not yet vouched for (heard by it alone, so far). A
  four-hour flight heard at one frame every ~0.7 s is 20,000 frames: a station far from the
  others may hold a whole flight's claims.
- `QUOTA_BYTES`: the frames table's bytes per station, 90 MB: a four-hour flight heard at the
  most a radio hears, in bytes. UKHAS LoRa mode 4 (turbo-x: SF6, 250 kHz, implicit header)
  carries a 255-byte packet every 0.114 s, ~2,240 bytes a second (stratoecho/lora.py's airtime);
  four hours of it is ~126,000 rows of ~680 bytes each in SQLite (`frame_quota.row_bytes`: the
  frame in hex, the row's other text, SQLite's own, its page's share), 86 MB. Mode 3 carries more
  frames (15 a second) but shorter ones: ~47 MB. Counted in bytes, not frames: the text of a row
  is partly a station's to choose (its origin, up to a message's 2 KB), so the 200,000 frames of
  the frame quota before it meant anything from 22 MB to 800 MB (a ~2 KB row fills a page alone).
- `QUOTA_TOTAL_BYTES`: all stations' frames together, 450 MB: five stations storing a whole
  flight each (as `PENDING_TOTAL`), so that logins past the first few flooding together still
  stop at a figure the aggregator's disk was sized for.
- `CLOCK_AHEAD_S`, `MAX_AGE_S`: when a station says it heard a frame (its `received_at`, a
  position's `at`) must fall between a day before the aggregator's clock and five minutes after
  it, or the message is refused. A time is the station's word, and the database orders, charts and
  dates sentences by it: one frame "heard" on 9999-12-31 failed the dashboard's link view. Five
  minutes ahead covers stations on NTP or GPS time (within a second) with room for one that
  drifted unsynchronised for days; a day behind is longer than any flight's backlog (a station's
  buffer, or the broker's queue while the aggregator was down). A station whose clock is further
  off has its frames refused, with a warning naming it, until its clock is set.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass

RATE_FRAMES_S = 20.0
BURST_FRAMES = 20_000
PENDING_PER_STATION = 20_000
PENDING_TOTAL = 100_000  # all stations' claims together (five stations holding a flight each)
QUOTA_BYTES = 90_000_000
QUOTA_TOTAL_BYTES = 450_000_000  # five stations' flights
WARN_EVERY_S = 60.0  # one warning a minute per station and reason, with the count since the last
CLOCK_AHEAD_S = 300.0  # a station's times may be this far ahead of the aggregator's clock
MAX_AGE_S = 86_400.0  # and this far behind it


@dataclass(frozen=True)
class StationLimits:
    rate_frames_s: float = RATE_FRAMES_S
    burst_frames: int = BURST_FRAMES
    pending_per_station: int = PENDING_PER_STATION
    pending_total: int = PENDING_TOTAL
    quota_bytes: int = QUOTA_BYTES
    quota_total_bytes: int = QUOTA_TOTAL_BYTES
    warn_every_s: float = WARN_EVERY_S
    clock_ahead_s: float = CLOCK_AHEAD_S
    max_age_s: float = MAX_AGE_S

    def __post_init__(self) -> None:
        if self.rate_frames_s <= 0 or self.burst_frames < 1:
            raise ValueError("a station's rate and burst must be positive")
        if self.pending_per_station < 1 or self.pending_total < 1 or self.quota_bytes < 0:
            raise ValueError("pending limits must be 1 or more and the quota 0 or more")
        if self.quota_total_bytes < self.quota_bytes:
            raise ValueError("the total quota must hold at least one station's")
        if not (self.clock_ahead_s >= 0 and self.max_age_s > 0):
            raise ValueError("a station's times may be 0 s or more ahead of the aggregator's clock, and more than "
                             f"0 s behind it; got {self.clock_ahead_s:g} s and {self.max_age_s:g} s")


class TokenBucket:
    """`rate` tokens a second up to `burst`; starts full. `take(now)` spends one if there is one."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate, self.burst = rate, float(burst)
        self.tokens, self.at = float(burst), now

    def take(self, now: float) -> bool:
        if now > self.at:
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
            self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class Throttled:
    """Says when a warning is due: the first time, then at most once every `every_s` per key,
    with how many were kept quiet since."""

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self._last: dict[Hashable, float] = {}
        self._quiet: dict[Hashable, int] = {}

    def due(self, key: Hashable, now: float) -> int | None:
        """None to stay quiet; else the number of occurrences since the last warning (1 or more)."""
        count = self._quiet.get(key, 0) + 1
        last = self._last.get(key)
        if last is not None and now - last < self.every_s:
            self._quiet[key] = count
            return None
        self._last[key], self._quiet[key] = now, 0
        return count


class PendingClaims:
    """The frames stations claimed that are not yet vouched for: digest -> {station: received_at},
    in order of arrival per station. Each station holds at most `per_station`; past `total`,
    the oldest claim of the station holding the most goes. A flooding station so evicts only
    its own claims while honest ones stay below their share."""

    def __init__(self, per_station: int, total: int) -> None:
        self.per_station, self.total = per_station, total
        self._claims: dict[bytes, dict[str, str]] = {}
        self._by_station: dict[str, OrderedDict[bytes, None]] = {}
        self._count = 0
        self.evicted: dict[str, int] = {}  # by station

    def __len__(self) -> int:
        return self._count

    def __contains__(self, digest: bytes) -> bool:
        return digest in self._claims

    def held_by(self, station: str) -> int:
        return len(self._by_station.get(station, ()))

    def claim(self, digest: bytes, station: str, received_at: str) -> dict[str, str]:
        """Note `station`'s claim (kept if it claimed it before) and return all claims on `digest`."""
        claims = self._claims.setdefault(digest, {})
        if station not in claims:
            claims[station] = received_at
            self._by_station.setdefault(station, OrderedDict())[digest] = None
            self._count += 1
            own = self._by_station[station]
            while len(own) > self.per_station:
                self._evict(station)
            while self._count > self.total:
                self._evict(max(self._by_station, key=lambda s: len(self._by_station[s])))
        return dict(self._claims.get(digest, {}))

    def pop(self, digest: bytes) -> dict[str, str]:
        """Every claim on `digest`, forgotten (it is vouched for now)."""
        claims = self._claims.pop(digest, {})
        for station in claims:
            self._drop(station, digest)
        return claims

    def _evict(self, station: str) -> None:
        digest, _ = self._by_station[station].popitem(last=False)
        self._count -= 1
        claims = self._claims[digest]
        del claims[station]
        if not claims:
            del self._claims[digest]
        self.evicted[station] = self.evicted.get(station, 0) + 1
        if not self._by_station[station]:
            del self._by_station[station]

    def _drop(self, station: str, digest: bytes) -> None:
        own = self._by_station.get(station)
        if own is not None and digest in own:
            del own[digest]
            self._count -= 1
            if not own:
                del self._by_station[station]


class PerStationSeen:
    """Message ids seen, `limit` per station: one station's stream of new ids forgets only its own."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._seen: dict[str, OrderedDict[str, None]] = {}

    def __contains__(self, key: tuple[str, str]) -> bool:
        station, msg_id = key
        return msg_id in self._seen.get(station, ())

    def add(self, key: tuple[str, str]) -> None:
        station, msg_id = key
        seen = self._seen.setdefault(station, OrderedDict())
        seen[msg_id] = None
        seen.move_to_end(msg_id)
        while len(seen) > self.limit:
            seen.popitem(last=False)


class ByteQuota:
    """Bytes used per key (a station, a source) against `per_key` each and `total` in all."""

    def __init__(self, per_key: int, total: int, used: dict[Hashable, int] | None = None) -> None:
        self.per_key, self.total = per_key, total
        self.used: dict[Hashable, int] = dict(used or {})
        self.total_used = sum(self.used.values())

    def fits(self, key: Hashable, n: int) -> bool:
        return self.used.get(key, 0) + n <= self.per_key and self.total_used + n <= self.total

    def add(self, key: Hashable, n: int) -> None:
        self.used[key] = self.used.get(key, 0) + n
        self.total_used += n

    def take(self, key: Hashable, n: int) -> bool:
        """Count `n` bytes against `key` if they fit its share and the total; False (nothing counted) if not."""
        if not self.fits(key, n):
            return False
        self.add(key, n)
        return True


class StationGate:
    """Per station: the token bucket that admits its frames, and the bytes stored against its
    quota and the total. `admit` and `may_store` are asked for every frame, in that order."""

    def __init__(self, limits: StationLimits, stored: dict[str, int] | None = None) -> None:
        self.limits = limits
        self._buckets: dict[str, TokenBucket] = {}
        # bytes kept, by station (the database's own at start: Store.frames.bytes_by_station)
        self.stored = ByteQuota(limits.quota_bytes, limits.quota_total_bytes, stored)
        self.rate_dropped: dict[str, int] = {}
        self.over_quota: dict[str, int] = {}
        self.warnings = Throttled(limits.warn_every_s)

    def admit(self, station: str, now: float) -> bool:
        bucket = self._buckets.get(station)
        if bucket is None:
            bucket = self._buckets[station] = TokenBucket(self.limits.rate_frames_s, self.limits.burst_frames, now)
        if bucket.take(now):
            return True
        self.rate_dropped[station] = self.rate_dropped.get(station, 0) + 1
        return False

    def may_store(self, station: str, nbytes: int) -> bool:
        """True and counted if a row of `nbytes` fits `station`'s quota and the total; False (the
        frame counted in `over_quota`) when it does not."""
        if self.stored.take(station, nbytes):
            return True
        self.over_quota[station] = self.over_quota.get(station, 0) + 1
        return False
