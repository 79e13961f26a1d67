"""The aggregator side: every station's frames into one decoder and one database, believed for what
they prove (tagged frames) or for how many stations agree (open frames), within each station's limits."""

from __future__ import annotations

import hashlib
import math
import sqlite3
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import structlog

from stratoecho import bounded_json, wire
from stratoecho.wire.downlink import fingerprint

from ..frame_quota import row_bytes, tagged
from ..link.decoder import Decoded, FrameDecoder, error_reason
from ..link.heard import WireRecord
from ..station_limits import PendingClaims, PerStationSeen, StationGate, StationLimits
from ..store import Store, StoreError
from .session import _Session
from .topics import DEFAULT_PREFIX, FORMAT_VERSION, POLL_S, BrokerAuth, Reconnect, check_prefix, topic_level

log = structlog.get_logger(__name__)
REMEMBER = 100_000  # frame digests, message ids and finished records remembered (per station for ids)
# A message is one frame (at most a LoRa payload, 255 bytes: 510 in hex) and a few short fields,
# or a station's position: flat JSON objects. Past these it is refused unread (bounded_json).
MAX_MESSAGE_BYTES = 2_048
MAX_DEPTH = 2
MAX_ID_CHARS = 100  # a message id (the publisher's "station:counter"); longer ones are refused
MAX_STATION_CHARS = 64  # a station's name, its topic level


# --------------------------------------------------------------------------- aggregator side

class _BadMessage(Exception):
    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(detail or reason)
        self.reason, self.detail = reason, detail


@dataclass
class AggregateStats:
    messages: int = 0  # MQTT messages handled
    frames: int = 0  # frames stored (one row each)
    repeats: int = 0  # messages delivered again (same id): ignored
    duplicate_frames: int = 0  # frames with the same bytes as one heard before, by any station
    duplicate_records: int = 0  # records or sentences decoded again that the database already held
    records_new: int = 0  # telemetry and records new to the database
    refused_records: int = 0  # decoded records stations sent on the records topic: never stored
    held_frames: int = 0  # frames stored as a station's claim, waiting for a second station or a trusted one
    vouched_frames: int = 0  # distinct frames decoded once vouched for
    positions: int = 0  # stations' positions stored (each station's own word, on its own topic)
    rate_dropped: int = 0  # frames over their station's rate: dropped, never stored (station_limits)
    over_quota: int = 0  # frames past their station's storage quota: not stored (a vouched one still decoded)
    bad_tags: int = 0  # our frames whose downlink tag failed (or no key to check it): claims, never decoded
    bad_messages: Counter = field(default_factory=Counter)  # by reason
    dead_letters: int = 0  # messages this code failed on: set aside in the dead_letters table, acknowledged


class Aggregator:
    """Merges every station's frames into one database; `run(stop)` until `stop` is set.

    All vouched frames go through ONE `FrameDecoder`, so fragments heard by different stations
    complete a record together. Each frame is stored with its station and signal, each
    record once (`INSERT OR IGNORE` by kind, boot, seq), and `heard` names every station
    that heard a frame of it. Commits come every `batch_messages` messages or
    `flush_interval_s`, whichever first, and only then are the messages acknowledged.

    Trust (the module's docstring): a frame is decoded once `quorum` stations sent its bytes,
    or one of `trusted` did; `quorum` 1 believes every station (a network of one's own).

    Limits (`station_limits`, `limits`): each station's frames pass its own token bucket (over
    it they are counted and dropped), its claims held in memory are capped (a flood evicts its
    own first), and the bytes of the frames stored from it are capped by a quota, as are all
    stations' together (counted from the database at start). `clock` is the monotonic clock the rate is measured on.
    A time a station gives (a frame's `received_at`, a position's `at`) must lie within the limits'
    `max_age_s` before and `clock_ahead_s` after `wall_clock` (UTC now), or its message is refused.
    """

    def __init__(self, broker_host: str, broker_port: int, db_path: str | Path, topic_prefix: str = DEFAULT_PREFIX,
                 *, client_id: str = "stratoecho-aggregator", reconnect: Reconnect = Reconnect(),
                 batch_messages: int = 16, flush_interval_s: float = 0.5, remember: int = REMEMBER,
                 trusted: Iterable[str] = (), quorum: int = 2, auth: BrokerAuth | None = None,
                 limits: StationLimits | None = None, clock=time.monotonic,
                 downlink: wire.DownlinkAuth | None = None,
                 wall_clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        if quorum < 1:
            raise ValueError(f"a quorum is 1 station or more, got {quorum}")
        self.trusted = frozenset(topic_level(t, "trusted station") for t in trusted)
        self.quorum = quorum
        self.prefix = check_prefix(topic_prefix)
        # StoreError here, before anything connects; the quota is per station (`gate`), not the receiver's
        self.store = Store(db_path, flush_interval_s, frame_quota=None)
        self.decoder = FrameDecoder(auth=downlink)
        self.store.set_trust(fingerprint(downlink.key) if downlink is not None else None)
        self.stats = AggregateStats()
        # Below mosquitto's default of 20 unacknowledged messages in flight per client.
        self.batch_messages = batch_messages
        self.flush_interval_s = flush_interval_s
        self._remember = remember
        self.limits, self._clock, self._wall_clock = limits or StationLimits(), clock, wall_clock
        self.bad_dates: Counter = Counter()  # by station: messages refused for the time they gave
        limits = self.limits
        self._seen_ids = PerStationSeen(remember)  # (station, id): one station's ids forget only its own
        self._seen_frames: OrderedDict[bytes, None] = OrderedDict()
        # digest -> {station: received_at}, capped per station: a flood evicts its own claims
        self._held = PendingClaims(min(limits.pending_per_station, remember), min(limits.pending_total, remember))
        self.gate = StationGate(limits, self.store.frames.bytes_by_station())
        self._vouched: OrderedDict[bytes, None] = OrderedDict()
        self._contributors: OrderedDict[tuple[str, int, int], dict[str, str]] = OrderedDict()  # incomplete records
        self._complete: OrderedDict[tuple[str, int, int], None] = OrderedDict()
        self._acks: list[tuple[int, int]] = []
        self._last_commit = time.monotonic()
        self._net = _AggregatorSession(self, broker_host, broker_port, client_id, reconnect, auth)

    def run(self, stop: threading.Event) -> None:
        """Receive, merge and store until `stop` is set; the database is committed and closed at the end."""
        self._net._stop = stop
        self._net._log.info("aggregating", db=self.store.path, topics=self._net.topics)
        try:
            self._net._serve()
        finally:
            self.store.close()

    # ------------------------------------------------------------ one message

    def _on_message(self, client, userdata, message) -> None:
        try:
            self._handle(message.topic, message.payload)
        except _BadMessage as e:
            self.stats.bad_messages[e.reason] += 1
            if e.detail:  # a station that sends what this one cannot read: its software differs
                log.warning("mqtt message ignored", topic=message.topic, reason=e.reason, error=e.detail)
            else:
                log.debug("mqtt message ignored", topic=message.topic, reason=e.reason)
        except (sqlite3.Error, StoreError):
            raise  # a database that cannot be written: not acknowledged, the broker offers it again
        except Exception as e:  # noqa: BLE001 - any other failure is this message's: set aside, never offered again
            self._dead_letter(message.topic, message.payload, e)
        self.stats.messages += 1
        self._acks.append((message.mid, message.qos))
        if len(self._acks) >= self.batch_messages:
            self._commit()

    def _dead_letter(self, topic: str, payload: bytes, error: Exception) -> None:
        """A message this code failed on (a bug, or an input nobody foresaw): kept aside with its
        first bytes, logged, and acknowledged with the rest, so that it cannot stop the aggregator
        at every restart (issue 41)."""
        reason = f"{type(error).__name__}: {str(error)[:200]}"
        self.stats.dead_letters += 1
        self.store.add_dead_letter(topic, reason, bytes(payload))
        log.error("mqtt message set aside", topic=topic[:200], bytes=len(payload), error=reason)

    def _handle(self, topic: str, payload: bytes) -> None:
        head = self.prefix + "/"
        parts = topic[len(head):].split("/") if topic.startswith(head) else []
        if any(len(p) > MAX_STATION_CHARS for p in parts):
            raise _BadMessage("name too long")
        if len(parts) == 2 and parts[0] == "position" and parts[1]:
            self._position(parts[1], payload)
            return
        if len(parts) != 3 or parts[1] not in ("frames", "records") or not parts[2]:
            raise _BadMessage("unknown topic")
        _, what, station = parts
        if what == "records":
            self.stats.refused_records += 1
            raise _BadMessage("decoded record refused")  # only frames this aggregator decodes count; unread
        msg = _read(payload)
        if msg.get("v") != FORMAT_VERSION:
            raise _BadMessage("unknown version")
        msg_id = msg.get("id")
        if isinstance(msg_id, str) and len(msg_id) > MAX_ID_CHARS:
            raise _BadMessage("id too long")
        key = (station, msg_id) if isinstance(msg_id, str) else None
        if key is not None and key in self._seen_ids:
            self.stats.repeats += 1
            return
        received_at = msg.get("received_at")
        if received_at is None:  # the station does not say: heard as it arrived
            received_at = self._now()
        else:
            received_at = self._station_time(station, "received_at", received_at)
        self._frame(msg, station, received_at)
        if key is not None:
            self._seen_ids.add(key)

    def _position(self, station: str, payload: bytes) -> None:
        """Where a station says it is: believed of itself only (its topic is its own, by the ACL)."""
        msg = _read(payload)
        at = self._now() if msg.get("at") is None else self._station_time(station, "at", msg["at"])
        try:
            lat, lon, alt = (float(msg[k]) for k in ("lat", "lon", "alt_m"))
            self.store.set_station(station, lat, lon, alt, at)
        except (ValueError, TypeError, KeyError, UnicodeDecodeError) as e:
            raise _BadMessage("bad position", str(e)) from e
        self.stats.positions += 1

    def _now(self) -> str:
        return self._wall_clock().astimezone(timezone.utc).isoformat(timespec="milliseconds")

    def _station_time(self, station: str, name: str, value) -> str:
        """The time `value` a station gave in its field `name`, as the database keeps times (UTC,
        ISO 8601, milliseconds); `_BadMessage("bad date")` for anything else, or for a time outside
        the window the limits allow around this aggregator's clock (station_limits: the database
        orders and charts by it, and a frame of 9999-12-31 failed the dashboard)."""
        now = self._wall_clock()
        earliest = now - timedelta(seconds=self.limits.max_age_s)
        latest = now + timedelta(seconds=self.limits.clock_ahead_s)
        when = _utc(value)
        if when is not None and earliest <= when <= latest:
            return when.isoformat(timespec="milliseconds")
        self.bad_dates[station] += 1
        self._warn(station, "station's time refused: its message is not stored", self.bad_dates[station],
                   field=name, got=repr(value)[:60],
                   expected=f"ISO 8601 between {earliest:%Y-%m-%dT%H:%M:%SZ} and {latest:%Y-%m-%dT%H:%M:%SZ} "
                            f"(this aggregator's clock less {self.limits.max_age_s / 3600:g} h, plus "
                            f"{self.limits.clock_ahead_s / 60:g} min): set the station's clock")
        raise _BadMessage("bad date")

    def _frame(self, msg: dict, station: str, received_at: str) -> None:
        if not self.gate.admit(station, self._clock()):
            self.stats.rate_dropped += 1
            self._warn(station, "station over its frame rate: frames dropped", self.gate.rate_dropped[station],
                       rate_frames_s=self.limits.rate_frames_s, burst=self.limits.burst_frames)
            return
        try:
            data = bytes.fromhex(msg["hex"])
        except (KeyError, TypeError, ValueError) as e:
            raise _BadMessage("bad hex") from e
        if not 0 < len(data) <= wire.DEFAULT_MTU:
            raise _BadMessage("not a frame's length")  # nothing on the air is longer than a LoRa payload
        origin = msg.get("origin")
        source = f"mqtt {origin}" if isinstance(origin, str) and origin else "mqtt"
        rssi, snr = _number(msg.get("rssi_dbm")), _number(msg.get("snr_db"))
        digest = hashlib.blake2b(data, digest_size=16).digest()
        if digest in self._seen_frames:
            self.stats.duplicate_frames += 1
        _remember(self._seen_frames, digest, self._remember)
        row = dict(source=source, received_at=received_at, station=station, rssi_dbm=rssi, snr_db=snr)
        if digest in self._vouched:  # another station heard what is already believed
            result = self.decoder.feed(data)
            self._add_frame(data, result.error, **row)
            if result.ok:
                self._merge(result, station, received_at)
            return
        heard = wire.classify(data)
        if tagged(heard) or heard.signed_by(self.decoder.auth):  # vouches for itself, or never counts
            result = self.decoder.feed(data)
            believed = result.ok and result.authentic
            self._add_frame(data, result.error, vouched=believed, **row)  # the flight's, new: never refused
            if not believed:  # forged, another flight's, no key to tell, or damaged: a claim
                self.stats.held_frames += 1
                self.stats.bad_tags += result.error in ("bad tag", "unauthenticated")
                return
            _remember(self._vouched, digest, self._remember)
            self.stats.vouched_frames += 1
            self._merge(result, station, received_at)
            return
        if station not in self.trusted:
            claims = self._held.claim(digest, station, received_at)
            if len(claims) < self.quorum:
                # The station's claim, stored as such; checked, but not decoded into anything.
                self._add_frame(data, _frame_error(data), **row)
                self.stats.held_frames += 1
                return
        claims = self._held.pop(digest)
        claims.setdefault(station, received_at)
        _remember(self._vouched, digest, self._remember)
        self.stats.vouched_frames += 1
        result = self.decoder.feed(data)
        self._add_frame(data, result.error, **row)
        if result.ok:
            (first, at), *others = claims.items()
            self._merge(result, first, at)
            for name, at in others:  # the stations whose claims it confirmed heard it too
                self._heard_too(result, name, at)

    def _add_frame(self, data: bytes, error: str | None, *, source: str, received_at: str, station: str,
                   rssi_dbm: float | None, snr_db: float | None, vouched: bool = False) -> None:
        """One row in `frames`, if it fits `station`'s storage quota and the total; a frame of the
        flight's heard for the first time (`vouched`) always, its bytes counted all the same."""
        nbytes = row_bytes(len(data), source, received_at, station, error)
        if vouched:
            if not self.gate.stored.take(station, nbytes):
                self.gate.stored.add(station, nbytes)  # past the quota: stored, and counted
        elif not self.gate.may_store(station, nbytes):
            self.stats.over_quota += 1
            self._warn(station, "station over its storage quota: frames not stored", self.gate.over_quota[station],
                       quota_mb=self.limits.quota_bytes / 1e6, total_quota_mb=self.limits.quota_total_bytes / 1e6,
                       stored_mb=round(self.gate.stored.used.get(station, 0) / 1e6, 3))
            return
        self.store.frames.add(data, source, error, received_at, station=station, rssi_dbm=rssi_dbm, snr_db=snr_db)
        self.stats.frames += 1

    def _warn(self, station: str, what: str, total: int, **detail) -> None:
        """`what` logged for `station` at most once every limits.warn_every_s, with the count since."""
        since = self.gate.warnings.due((station, what), self._clock())
        if since is not None:
            log.warning(what, station=station, since_last_warning=since, total=total, **detail)

    def _merge(self, result: Decoded, station: str, received_at: str) -> None:
        frame = result.frame
        if isinstance(frame, wire.Telemetry):
            key = ("telemetry", frame.boot, frame.seq)
            if result.record is None:
                self.stats.duplicate_records += 1  # the decoder had it already
            else:
                self._store(result.record, received_at, result.authentic)
            self.store.add_heard(*key, station, received_at)
        elif isinstance(frame, wire.Fragment):
            key = (frame.kind.name.lower(), frame.boot, frame.seq)
            if result.record is not None:
                self._store(result.record, received_at, result.authentic)
                heard = self._contributors.pop(key, {})
                heard.setdefault(station, received_at)
                for name, at in heard.items():
                    self.store.add_heard(*key, name, at)
                _remember(self._complete, key, self._remember)
            elif key in self._complete:
                self.store.add_heard(*key, station, received_at)
            else:
                self._contributors.setdefault(key, {}).setdefault(station, received_at)
                self._contributors.move_to_end(key)
                while len(self._contributors) > self.decoder.max_pending:
                    self._contributors.popitem(last=False)

    def _heard_too(self, result: Decoded, station: str, received_at: str) -> None:
        """`station` heard the frame `result` came from as well: it goes in `heard`, nothing is stored again."""
        frame = result.frame
        if isinstance(frame, wire.Telemetry):
            self.store.add_heard("telemetry", frame.boot, frame.seq, station, received_at)
        elif isinstance(frame, wire.Fragment):
            key = (frame.kind.name.lower(), frame.boot, frame.seq)
            if key in self._complete:
                self.store.add_heard(*key, station, received_at)
            else:
                self._contributors.setdefault(key, {}).setdefault(station, received_at)

    def _store(self, record: WireRecord, received_at: str, authentic: bool) -> None:
        # `authentic` as the listener stores it: a signed sentence is the flight's track, an open one a claim
        if self.store.add(record, received_at, authentic):
            self.stats.records_new += 1
        else:
            self.stats.duplicate_records += 1

    # ------------------------------------------------------------ batching

    def _commit(self) -> None:
        """Commit, then acknowledge what the commit made durable."""
        self.store.commit()
        self._last_commit = time.monotonic()
        for mid, qos in self._acks:
            self._net._client.ack(mid, qos)
        self._acks.clear()

    def _tick(self) -> None:
        if time.monotonic() - self._last_commit >= self.flush_interval_s:
            self._commit()

    def _connection_lost(self) -> None:
        # Message ids belong to one connection: the broker offers these again (persistent
        # session), and `_seen_ids` recognises the ones already stored.
        self.store.commit()
        self._last_commit = time.monotonic()
        self._acks.clear()


class _AggregatorSession(_Session):
    def __init__(self, owner: Aggregator, host: str, port: int, client_id: str, reconnect: Reconnect,
                 auth: BrokerAuth | None) -> None:
        super().__init__(host, port, client_id, clean_session=False, reconnect=reconnect, name="aggregator",
                         auth=auth)
        self._owner = owner
        self.topics = [f"{owner.prefix}/+/frames/+", f"{owner.prefix}/+/records/+", f"{owner.prefix}/position/+"]
        self._client.manual_ack_set(True)
        self._client.on_message = owner._on_message

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        super()._on_disconnect(client, userdata, flags, reason_code, properties)
        self._owner._connection_lost()

    def _online(self) -> None:
        # Subscribing again is harmless when the broker kept the session, and needed when it did not.
        self._client.subscribe([(topic, 1) for topic in self.topics])

    def _tick(self) -> None:
        self._owner._tick()

    def _shutdown(self) -> None:
        owner = self._owner
        if self._connected:
            owner._commit()
            self._client.disconnect()
            self._client.loop(timeout=POLL_S)
            self._connected = False
        else:
            owner._connection_lost()


def _frame_error(data: bytes) -> str | None:
    """Why `data` is not a frame (decoder.error_reason), or None; decodes nothing into state."""
    try:
        wire.decode_frame(data)
    except wire.WireError as e:
        return error_reason(e)
    return None


def _read(payload: bytes) -> dict:
    """A message's JSON object, read within MAX_MESSAGE_BYTES and MAX_DEPTH; _BadMessage otherwise."""
    try:
        msg = bounded_json.loads(payload, max_bytes=MAX_MESSAGE_BYTES, max_depth=MAX_DEPTH)
    except bounded_json.JsonRefused as e:
        raise _BadMessage(e.reason) from None
    if not isinstance(msg, dict):
        raise _BadMessage("not json")
    return msg


def _remember(seen: OrderedDict, key, limit: int) -> None:
    seen[key] = None
    seen.move_to_end(key)
    while len(seen) > limit:
        seen.popitem(last=False)


def _number(value) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _utc(value) -> datetime | None:
    """An ISO 8601 time as aware UTC (one without a zone is UTC, as the format says); None for
    anything else."""
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)
    except (ValueError, OverflowError):  # not a time; or 0001-01-01 less its zone's offset
        return None
