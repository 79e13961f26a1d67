"""Several ground stations, one flight: stations share what they hear over MQTT, and one
aggregator merges it into the database the dashboard reads.

Topics (``PREFIX`` is ``stratoecho`` unless told otherwise)::

    PREFIX/PAYLOAD/frames/STATION    QoS 1   one raw frame a message, as the station heard it
    PREFIX/PAYLOAD/records/STATION   QoS 1   a record the station decoded itself (optional;
                                             the aggregator refuses them: see "Trust")
    PREFIX/status/STATION            QoS 1   retained "online"; "offline" on a clean close, or
                                             the broker's last will when the station vanishes
    PREFIX/position/STATION          QoS 1   retained: where the station is (listen
                                             --station-position), for the crew's distances

``PAYLOAD`` is the callsign of the last telemetry sentence the station heard (or the one it
was told), ``unknown`` before it heard any: fragments do not carry it. Messages are JSON::

    frames:  {"v": 1, "id": "SESSION:N", "station": ..., "received_at": ISO 8601 UTC,
              "hex": the frame, "rssi_dbm": float|null, "snr_db": float|null, "origin": str|null}
    records: {"v": 1, "id": "SESSION:N", "station": ..., "received_at": ...,
              "record": Record.as_dict() or Telemetry.as_dict()}
    position: {"v": 1, "station": ..., "lat": degrees, "lon": degrees, "alt_m": metres, "at": ISO 8601 UTC}

The aggregator counts a shared record and refuses it (see "Trust"); `heard.record_from_json`
reads one back into the typed record it came from, for tools that want a station's own view.

``id`` is unique per publisher session (a random SESSION, then a counter), so the aggregator
can drop the copies at-least-once delivery makes.

Raw frames, not records: a record cut into k-of-n fragments may be heard in part by one
station and in part by another, so neither can rebuild it alone. The aggregator feeds every
station's frames into ONE `FrameDecoder`, and the union completes it.

Trust. No station is believed on its word. The aggregator builds records only from raw frames
it decodes itself (a decoded record a station publishes is counted and refused). Our own
frames (record fragments, window cues) vouch for themselves: with the flight's downlink key
(`--downlink-key`, or `--flight-key`) one whose tag checks counts at once, from any station,
and one whose tag fails never counts, whatever number of stations send it (stored as their
claim). Frames anyone can make (UKHAS and HABpack sentences, SSDV) count once vouched for:
heard by a station the aggregator was told to trust (`--trust`), or by `quorum` different
stations (default 2) sending the same bytes. Until then a frame is stored as that station's
claim (the frames table, attributed to it) and held; stations making frames up, alone or
together, cannot put a record in the flight's database, and alone not even a position. Which station a frame
came from is the topic's last level: the broker must let each station's user write only its
own topics (mosquitto: an acl_file with ``pattern write PREFIX/+/frames/%u``), and speak TLS
with a password per station (`BrokerAuth`; docs/ground.md has a mosquitto configuration).

Limits. A login is no licence to use up the aggregator: each station's frames pass its own
rate limit, its claims held in memory are capped (a flood forgets its own first) and the frames
stored from it have a quota (`station_limits`; docs/ground.md, "What a station is trusted with").

Delivery. `StationPublisher.publish_frame` only appends to a bounded buffer and returns; one
thread of the publisher owns the MQTT client, connects (tenacity back-off), publishes at QoS 1
and keeps each message until the broker acknowledges it, re-sending after a reconnect. A full
buffer drops its oldest frame (counted, logged once): the station's own database still holds
every frame. The `Aggregator` holds a persistent session (fixed client id, clean_session off)
and acknowledges a message only once it is committed to SQLite, so a broker run with
``persistence true`` keeps frames for it while it or the broker restarts.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import socket
import sqlite3
import sys
import threading
import time
import uuid
from collections import Counter, OrderedDict, deque
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.enums import CallbackAPIVersion
from tenacity import RetryError, Retrying, retry_if_exception_type, wait_exponential, wait_random

from stratoecho import wire
from stratoecho.cli import hostport_type, place, positive_number, stop_on_signals
from stratoecho.secret_files import secret_file_problem
from stratoecho.wire.uplink import KeyFileError

from .db import Store, StoreError, utc_now
from .decoder import Decoded, FrameDecoder, classify
from .heard import WireRecord
from .keys import add_key_arguments, auth_from_key_args
from .station_limits import PendingClaims, PerStationSeen, StationGate, StationLimits

log = structlog.get_logger(__name__)

FORMAT_VERSION = 1
DEFAULT_PREFIX = "stratoecho"
UNKNOWN_PAYLOAD = "unknown"
ONLINE, OFFLINE = "online", "offline"
POLL_S = 0.1  # the network loop's select() wait: how late a buffered frame may leave
_NOT_A_LEVEL = re.compile(r"[/+#\x00]")


# --------------------------------------------------------------------------- policy and topics

@dataclass(frozen=True)
class Reconnect:
    """How hard to try reaching the broker: waits grow from `initial_s`, doubling, up to
    `max_s`, with up to `initial_s` of jitter so stations do not return in lockstep."""

    initial_s: float = 1.0
    max_s: float = 60.0
    connect_timeout_s: float = 10.0  # TCP connect until the broker's CONNACK
    keepalive_s: int = 30  # a broker that vanishes without closing is noticed after 1.5 x this

    def wait(self):
        """The tenacity wait strategy."""
        return wait_exponential(multiplier=self.initial_s, max=self.max_s) + wait_random(0, self.initial_s)


def topic_level(name: str, what: str = "station") -> str:
    """`name` if it can be one MQTT topic level; ValueError naming `what` otherwise."""
    if not name or _NOT_A_LEVEL.search(name):
        raise ValueError(f"{what} {name!r} cannot be an MQTT topic level: it must be non-empty, without / + # or NUL")
    return name


def check_prefix(prefix: str) -> str:
    """A topic prefix: one or more levels, no wildcards."""
    for level in prefix.split("/"):
        topic_level(level, "topic prefix level")
    return prefix


def payload_level(callsign: str | None) -> str:
    """A callsign as a topic level (characters MQTT reserves become '_'); `unknown` for none."""
    return _NOT_A_LEVEL.sub("_", callsign) if callsign else UNKNOWN_PAYLOAD


def frames_topic(prefix: str, payload: str, station: str) -> str:
    return f"{prefix}/{payload}/frames/{station}"


def records_topic(prefix: str, payload: str, station: str) -> str:
    return f"{prefix}/{payload}/records/{station}"


def status_topic(prefix: str, station: str) -> str:
    return f"{prefix}/status/{station}"


def position_topic(prefix: str, station: str) -> str:
    return f"{prefix}/position/{station}"


def _iso(received_at: str | datetime | None) -> str:
    if received_at is None:
        return utc_now()
    if isinstance(received_at, datetime):
        if received_at.tzinfo is None:
            received_at = received_at.replace(tzinfo=timezone.utc)
        return received_at.astimezone(timezone.utc).isoformat(timespec="milliseconds")
    return str(received_at)


# --------------------------------------------------------------------------- credentials

@dataclass(frozen=True)
class BrokerAuth:
    """How a client proves itself to the broker and checks the broker: a user name and password
    (read from a file, never given on a command line, where `ps` shows it), and TLS against
    `ca_file` (None: the system's certificate authorities) when `tls` is set."""

    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: str | None = None

    @classmethod
    def from_files(cls, username: str | None, password_file: str | Path | None, ca_file: str | Path | None,
                   tls: bool) -> BrokerAuth:
        """ValueError naming the file or option that will not do."""
        password = None
        if password_file is not None:
            try:
                st = Path(password_file).stat()
                password = Path(password_file).read_text(encoding="utf-8").rstrip("\r\n")
            except (OSError, UnicodeDecodeError) as e:
                raise ValueError(f"{password_file}: cannot read the broker password: {e}") from None
            if why := secret_file_problem(password_file, st, "broker password file"):
                raise ValueError(why)
            if not password:
                raise ValueError(f"{password_file}: empty; expected the broker password on its first line")
            if username is None:
                raise ValueError("a broker password file needs the user name too (--mqtt-user)")
        if ca_file is not None and not Path(ca_file).is_file():
            raise ValueError(f"{ca_file}: no such certificate file")
        return cls(username, password, tls or ca_file is not None, None if ca_file is None else str(ca_file))


# --------------------------------------------------------------------------- one client, one thread

class _NotConnected(Exception):
    """A connection attempt that reached no usable session (refused, no CONNACK in time)."""


class _Session:
    """A paho client driven by one thread only: connect with tenacity back-off, run the
    network loop, connect again when the broker goes away. `_stop` ends it; `_give_up`
    and `_sleep` say when back-off stops and what it waits on."""

    def __init__(self, host: str, port: int, client_id: str, *, clean_session: bool, reconnect: Reconnect,
                 name: str, auth: BrokerAuth | None = None) -> None:
        self.host, self.port, self.reconnect = host, port, reconnect
        self._log = log.bind(mqtt=name, broker=f"{host}:{port}")
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean_session,
                                   protocol=mqtt.MQTTv311)
        if auth is not None and auth.username is not None:
            self._client.username_pw_set(auth.username, auth.password)
        if auth is not None and auth.tls:
            # Verifies the broker's certificate and its name: a station never sends its password
            # to a machine that merely answers on the broker's address.
            self._client.tls_set(ca_certs=auth.ca_file)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._stop = threading.Event()
        self._connected = False
        self._refusal: str | None = None
        self._outage_attempts = 0
        self.connects = 0

    # paho callbacks (called inside client.loop(), so in our thread)
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._refusal = str(reason_code)
            return
        self._connected = True

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._connected = False

    # hooks
    def _give_up(self) -> bool:
        return self._stop.is_set()

    def _sleep(self, seconds: float) -> None:
        self._stop.wait(seconds)

    def _online(self) -> None:
        """Just connected (or connected again)."""

    def _tick(self) -> None:
        """After every pass of the network loop."""

    def _shutdown(self) -> None:
        """The loop has ended, connected or not."""

    # the loop
    def _serve(self) -> None:
        try:
            while not self._give_up():
                if not self._connect():
                    break
                self._online()
                rc = mqtt.MQTT_ERR_SUCCESS
                while not self._stop.is_set() and self._connected and rc == mqtt.MQTT_ERR_SUCCESS:
                    rc = self._client.loop(timeout=POLL_S)
                    self._tick()
                if not self._stop.is_set():
                    self._connected = False
                    self._log.warning("broker lost", error=mqtt.error_string(rc))
        finally:
            self._shutdown()

    def _connect(self) -> bool:
        retrying = Retrying(wait=self.reconnect.wait(), sleep=self._sleep, stop=lambda _state: self._give_up(),
                            retry=retry_if_exception_type((OSError, _NotConnected)),
                            before_sleep=self._unreachable)
        try:
            retrying(self._connect_once)
        except RetryError:
            return False
        self.connects += 1
        if self._outage_attempts:
            self._log.info("broker reached", failed_attempts=self._outage_attempts)
        else:
            self._log.info("broker reached")
        self._outage_attempts = 0
        return True

    def _connect_once(self) -> None:
        self._connected, self._refusal = False, None
        self._client.connect(self.host, self.port, keepalive=self.reconnect.keepalive_s)
        deadline = time.monotonic() + self.reconnect.connect_timeout_s
        while not self._connected:
            rc = self._client.loop(timeout=POLL_S)
            if self._refusal is not None:
                raise _NotConnected(f"broker refused the connection: {self._refusal}")
            if rc != mqtt.MQTT_ERR_SUCCESS:
                raise _NotConnected(mqtt.error_string(rc))
            if time.monotonic() >= deadline:
                raise _NotConnected(f"no answer from the broker within {self.reconnect.connect_timeout_s} s")
            if self._give_up():
                raise _NotConnected("stopping")

    def _unreachable(self, state) -> None:
        """Logged once per outage (on the transition), then only at debug level."""
        self._outage_attempts += 1
        error = str(state.outcome.exception()) if state.outcome else ""
        wait_s = round(state.next_action.sleep, 2) if state.next_action else None
        if self._outage_attempts == 1:
            self._log.warning("broker unreachable, retrying", error=error, retry_in_s=wait_s)
        else:
            self._log.debug("broker still unreachable", error=error, attempt=self._outage_attempts, retry_in_s=wait_s)


# --------------------------------------------------------------------------- station side

@dataclass
class PublisherStats:
    queued: int = 0  # publish_frame / publish_record calls accepted
    published: int = 0  # acknowledged by the broker
    dropped: int = 0  # oldest messages dropped from a full buffer
    pending: int = 0  # buffered or awaiting the broker's acknowledgement
    connects: int = 0


class StationPublisher:
    """Publishes what one ground station hears to an MQTT broker, never blocking the caller.

    `publish_frame` and `publish_record` append to a buffer of at most `buffer_messages`
    and return; the publisher's own thread (started here) connects, reconnects with
    back-off, publishes at QoS 1 and keeps each message until the broker acknowledges it.
    `close()` waits up to its timeout for the buffer to drain, then says "offline".
    """

    def __init__(self, broker_host: str, broker_port: int, station: str, callsign_hint: str | None = None,
                 topic_prefix: str = DEFAULT_PREFIX, *, buffer_messages: int = 10_000, max_inflight: int = 64,
                 reconnect: Reconnect = Reconnect(), auth: BrokerAuth | None = None,
                 position: tuple[float, float, float] | None = None) -> None:
        self.station = topic_level(station, "station")
        self.position = position  # lat, lon, alt: said (retained) at every connect
        self.prefix = check_prefix(topic_prefix)
        self._payload = payload_level(callsign_hint)
        self._hinted = callsign_hint is not None
        self._session_id = uuid.uuid4().hex[:12]
        self._count = 0
        self.max_inflight = max_inflight
        self._buffer: deque[tuple[str, bytes]] = deque()
        self._buffer_limit = buffer_messages
        self._overflowing = False
        self._unacked: set[int] = set()
        self._lock = threading.Lock()
        self._drained = threading.Condition(self._lock)
        self._closing = threading.Event()
        self._close_deadline = math.inf
        self.stats = PublisherStats()
        self._net = _PublisherSession(self, broker_host, broker_port, reconnect, auth)
        self._thread = threading.Thread(target=self._net._serve, name=f"mqtt-publisher-{station}", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ what the listener calls

    def publish_frame(self, frame: bytes, received_at: str | datetime | None = None, rssi_dbm: float | None = None,
                      snr_db: float | None = None, *, origin: str | None = None) -> None:
        """Queue one raw frame as heard (bad frames too: the aggregator counts them)."""
        data = bytes(frame)
        self._learn_callsign(data)
        self._queue("frames", {"hex": data.hex(), "received_at": _iso(received_at), "rssi_dbm": rssi_dbm,
                               "snr_db": snr_db, "origin": origin})

    def publish_record(self, record: WireRecord, received_at: str | datetime | None = None) -> None:
        """Queue one record or sentence this station decoded, as its `as_dict()` JSON."""
        if isinstance(record, wire.Telemetry) and not self._hinted:
            self._payload = payload_level(record.callsign)
        self._queue("records", {"received_at": _iso(received_at), "record": record.as_dict()})

    @property
    def payload(self) -> str:
        """The PAYLOAD topic level frames go out under now."""
        return self._payload

    def pending(self) -> int:
        with self._lock:
            return len(self._buffer) + len(self._unacked)

    def flush(self, timeout_s: float) -> bool:
        """Wait until the broker has acknowledged everything queued so far; False on timeout."""
        with self._drained:
            return self._drained.wait_for(lambda: not self._buffer and not self._unacked, timeout=timeout_s)

    def close(self, timeout_s: float = 5.0) -> int:
        """Connect if need be and drain for up to `timeout_s`, say "offline", disconnect, stop the
        thread. Returns how many messages the broker never acknowledged."""
        self._close_deadline = time.monotonic() + timeout_s
        self._closing.set()
        self._thread.join(timeout_s + 2 * POLL_S + self._net.reconnect.connect_timeout_s)
        left = self.pending()
        if left:
            log.warning("mqtt publisher closed with messages not delivered", station=self.station, pending=left)
        return left

    def snapshot(self) -> PublisherStats:
        with self._lock:
            self.stats.pending = len(self._buffer) + len(self._unacked)
            self.stats.connects = self._net.connects
            return PublisherStats(**asdict(self.stats))

    def __enter__(self) -> StationPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ internals

    def _learn_callsign(self, data: bytes) -> None:
        if self._hinted or not data or not (data[:2] == b"$$" or data[0] in wire.HABPACK_FIRST_BYTES):
            return
        try:
            decoded = wire.decode_frame(data)
        except wire.WireError:
            return
        if isinstance(decoded, wire.Telemetry):
            self._payload = payload_level(decoded.callsign)

    def _queue(self, what: str, body: dict) -> None:
        with self._lock:
            self._count += 1
            message = {"v": FORMAT_VERSION, "id": f"{self._session_id}:{self._count}", "station": self.station,
                       **body}
            topic = (frames_topic if what == "frames" else records_topic)(self.prefix, self._payload, self.station)
            payload = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            if len(self._buffer) >= self._buffer_limit:
                self._buffer.popleft()
                self.stats.dropped += 1
                if not self._overflowing:
                    self._overflowing = True
                    log.warning("mqtt buffer full, dropping the oldest messages", station=self.station,
                                limit=self._buffer_limit)
            self._buffer.append((topic, payload))
            self.stats.queued += 1

    def _pump(self, client: mqtt.Client) -> None:
        """Hand buffered messages to paho while connected, at most `max_inflight` unacknowledged."""
        while self._net._connected:
            with self._lock:
                if not self._buffer or len(self._unacked) >= self.max_inflight:
                    break
                topic, payload = self._buffer.popleft()
                if self._overflowing and len(self._buffer) < self._buffer_limit // 2:
                    self._overflowing = False
                    log.info("mqtt buffer draining", station=self.station, buffered=len(self._buffer))
                # Kept by paho until PUBACK, and sent again after a reconnect if it never came.
                info = client.publish(topic, payload, qos=1)
                self._unacked.add(info.mid)

    def _acknowledged(self, mid: int) -> None:
        with self._lock:
            if mid in self._unacked:
                self._unacked.discard(mid)
                self.stats.published += 1
            if not self._buffer and not self._unacked:
                self._drained.notify_all()


class _PublisherSession(_Session):
    def __init__(self, owner: StationPublisher, host: str, port: int, reconnect: Reconnect,
                 auth: BrokerAuth | None) -> None:
        super().__init__(host, port, f"stratoecho-{owner.station}-{owner._session_id}", clean_session=True,
                         reconnect=reconnect, name=f"station {owner.station}", auth=auth)
        self._owner = owner
        self._status = status_topic(owner.prefix, owner.station)
        self._client.will_set(self._status, OFFLINE, qos=1, retain=True)
        self._client.max_inflight_messages_set(owner.max_inflight + 2)  # + the status messages
        self._client.on_publish = lambda client, userdata, mid, reason_code, properties: owner._acknowledged(mid)

    def _give_up(self) -> bool:
        # Closing still connects and drains until close()'s deadline: a replay queues everything
        # before the first connect, and giving up at close() delivered none of it.
        owner = self._owner
        return self._stop.is_set() or (owner._closing.is_set() and (
            owner.pending() == 0 or time.monotonic() >= owner._close_deadline))

    def _sleep(self, seconds: float) -> None:
        owner = self._owner
        if owner._closing.is_set():  # back off, but never past the deadline to drain by
            self._stop.wait(max(0.0, min(seconds, owner._close_deadline - time.monotonic())))
        else:
            owner._closing.wait(seconds)  # close() ends a back-off at once: it has a deadline to keep

    def _online(self) -> None:
        self._client.publish(self._status, ONLINE, qos=1, retain=True)
        owner = self._owner
        if owner.position is not None:
            lat, lon, alt = owner.position
            body = {"v": FORMAT_VERSION, "station": owner.station, "lat": lat, "lon": lon, "alt_m": alt, "at": utc_now()}
            self._client.publish(position_topic(owner.prefix, owner.station), json.dumps(body), qos=1, retain=True)
        owner._pump(self._client)

    def _tick(self) -> None:
        owner = self._owner
        owner._pump(self._client)
        if owner._closing.is_set() and (owner.pending() == 0 or time.monotonic() >= owner._close_deadline):
            self._stop.set()

    def _shutdown(self) -> None:
        if not self._connected:
            return
        info = self._client.publish(self._status, OFFLINE, qos=1, retain=True)
        deadline = time.monotonic() + 1.0
        while self._connected and not info.is_published() and time.monotonic() < deadline:
            self._client.loop(timeout=POLL_S)
        self._client.disconnect()
        self._client.loop(timeout=POLL_S)  # let the DISCONNECT packet leave
        self._connected = False


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
    own first), and the frames stored from it are capped by a quota (counted from the database
    at start). `clock` is the monotonic clock the rate is measured on.
    """

    def __init__(self, broker_host: str, broker_port: int, db_path: str | Path, topic_prefix: str = DEFAULT_PREFIX,
                 *, client_id: str = "stratoecho-aggregator", reconnect: Reconnect = Reconnect(),
                 batch_messages: int = 16, flush_interval_s: float = 0.5, remember: int = 100_000,
                 trusted: Iterable[str] = (), quorum: int = 2, auth: BrokerAuth | None = None,
                 limits: StationLimits | None = None, clock=time.monotonic,
                 downlink: wire.DownlinkAuth | None = None) -> None:
        if quorum < 1:
            raise ValueError(f"a quorum is 1 station or more, got {quorum}")
        self.trusted = frozenset(topic_level(t, "trusted station") for t in trusted)
        self.quorum = quorum
        self.prefix = check_prefix(topic_prefix)
        self.store = Store(db_path, flush_interval_s)  # StoreError here, before anything connects
        self.decoder = FrameDecoder(auth=downlink)
        self.stats = AggregateStats()
        # Below mosquitto's default of 20 unacknowledged messages in flight per client.
        self.batch_messages = batch_messages
        self.flush_interval_s = flush_interval_s
        self._remember = remember
        self.limits, self._clock = limits or StationLimits(), clock
        limits = self.limits
        self._seen_ids = PerStationSeen(remember)  # (station, id): one station's ids forget only its own
        self._seen_frames: OrderedDict[bytes, None] = OrderedDict()
        # digest -> {station: received_at}, capped per station: a flood evicts its own claims
        self._held = PendingClaims(min(limits.pending_per_station, remember), min(limits.pending_total, remember))
        self.gate = StationGate(limits, self.store.frames_by_station())
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
        # Anything else (a database that cannot be written) propagates: the message is not
        # acknowledged, and the broker offers it again after a restart.
        self.stats.messages += 1
        self._acks.append((message.mid, message.qos))
        if len(self._acks) >= self.batch_messages:
            self._commit()

    def _handle(self, topic: str, payload: bytes) -> None:
        head = self.prefix + "/"
        parts = topic[len(head):].split("/") if topic.startswith(head) else []
        if len(parts) == 2 and parts[0] == "position" and parts[1]:
            self._position(parts[1], payload)
            return
        if len(parts) != 3 or parts[1] not in ("frames", "records") or not parts[2]:
            raise _BadMessage("unknown topic")
        _, what, station = parts
        try:
            msg = json.loads(payload)
        except (ValueError, UnicodeDecodeError) as e:
            raise _BadMessage("not json") from e
        if not isinstance(msg, dict):
            raise _BadMessage("not json")
        if msg.get("v") != FORMAT_VERSION:
            raise _BadMessage("unknown version")
        msg_id = msg.get("id")
        key = (station, msg_id) if isinstance(msg_id, str) else None
        if key is not None and key in self._seen_ids:
            self.stats.repeats += 1
            return
        received_at = msg.get("received_at")
        if not isinstance(received_at, str) or not _is_iso(received_at):
            received_at = utc_now()
        if what == "records":
            self.stats.refused_records += 1
            raise _BadMessage("decoded record refused")  # only frames this aggregator decodes count
        self._frame(msg, station, received_at)
        if key is not None:
            self._seen_ids.add(key)

    def _position(self, station: str, payload: bytes) -> None:
        """Where a station says it is: believed of itself only (its topic is its own, by the ACL)."""
        try:
            msg = json.loads(payload)
            lat, lon, alt = (float(msg[k]) for k in ("lat", "lon", "alt_m"))
            at = msg.get("at") if isinstance(msg.get("at"), str) and _is_iso(msg["at"]) else None
            self.store.set_station(station, lat, lon, alt, at)
        except (ValueError, TypeError, KeyError, UnicodeDecodeError) as e:
            raise _BadMessage("bad position", str(e)) from e
        self.stats.positions += 1

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
        if data[:1] in TAGGED:  # vouches for itself, or never counts
            error = _frame_error(data, self.decoder.auth)
            if error is not None:
                self._add_frame(data, error, **row)
                self.stats.held_frames += 1
                self.stats.bad_tags += error in ("bad tag", "unauthenticated")
                return
        elif station not in self.trusted:
            claims = self._held.claim(digest, station, received_at)
            if len(claims) < self.quorum:
                # The station's claim, stored as such; checked, but not decoded into anything.
                self._add_frame(data, _frame_error(data), **row)
                self.stats.held_frames += 1
                return
        claims = self._held.pop(digest) if data[:1] not in TAGGED else {}
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
                   rssi_dbm: float | None, snr_db: float | None) -> None:
        """One row in `frames`, if `station` is under its storage quota."""
        if not self.gate.may_store(station):
            self.stats.over_quota += 1
            self._warn(station, "station over its storage quota: frames not stored", self.gate.over_quota[station],
                       quota_frames=self.limits.quota_frames)
            return
        self.store.add_frame(data, source, error, received_at, station=station, rssi_dbm=rssi_dbm, snr_db=snr_db)
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
                self._store(result.record, received_at)
            self.store.add_heard(*key, station, received_at)
        elif isinstance(frame, wire.Fragment):
            key = (frame.kind.name.lower(), frame.boot, frame.seq)
            if result.record is not None:
                self._store(result.record, received_at)
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

    def _store(self, record: WireRecord, received_at: str) -> None:
        if self.store.add(record, received_at):
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


TAGGED = (bytes([wire.MAGIC]), bytes([wire.CONTROL_MAGIC]))  # first bytes of the frames that carry our tag


def _frame_error(data: bytes, auth: wire.DownlinkAuth | None = None) -> str | None:
    """Why `data` is not a frame (decoder.classify's reason, "bad tag" for a forgery), or None;
    decodes nothing into state."""
    try:
        wire.decode_frame(data, auth)
    except wire.WireError as e:
        return classify(e)
    return None


def _remember(seen: OrderedDict, key, limit: int) -> None:
    seen[key] = None
    seen.move_to_end(key)
    while len(seen) > limit:
        seen.popitem(last=False)


def _number(value) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _is_iso(text: str) -> bool:
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------- command line

AGGREGATE_EXAMPLES = """\
examples:
  python -m groundstation aggregate --broker 127.0.0.1:1883 --db flight.db --trust hilltop
  python -m groundstation aggregate --broker mqtt.example.org:8883 --user aggregator --password-file agg.pw \\
      --ca club-ca.crt --db flight.db --topic-prefix club/stratoecho
  # each station, beside its own database:
  python -m groundstation listen --serial /dev/ttyUSB0 --db here.db --mqtt mqtt.example.org:8883 --station hilltop \\
      --mqtt-user hilltop --mqtt-password-file hilltop.pw --mqtt-ca club-ca.crt
broker: any MQTT 3.1.1 broker; run it with persistence on (mosquitto: "persistence true") so
frames wait there for the aggregator while it or the broker restarts, and raise its
max_queued_messages (mosquitto's default keeps 1000 a client) to what a long outage needs.
exit status: 0 after a clean stop; 1 if the database cannot be used; 2 for a usage error
"""


def _prefix_type(text: str) -> str:
    try:
        return check_prefix(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


def _station_type(text: str) -> str:
    try:
        return topic_level(text, "station")
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


def default_station() -> str:
    """This machine's host name as a topic level."""
    return _NOT_A_LEVEL.sub("_", socket.gethostname()) or "station"


def register_cli(subparsers) -> argparse.ArgumentParser:
    """Add the `aggregate` command to the ground station's subcommands."""
    parser = subparsers.add_parser(
        "aggregate", help="merge the frames several stations share over MQTT into one database",
        description=(
            "Subscribe to every station's frames on an MQTT broker (TOPIC-PREFIX/+/frames/+), put them "
            "through one decoder so fragments heard by different stations complete a record together, and "
            "store every frame (with its station and signal) and every record once in the database, noting "
            "which stations heard each. No station is believed on its word: records a station decoded "
            "(TOPIC-PREFIX/+/records/+) are refused, and a frame counts once --quorum stations sent the same "
            "bytes or a --trust station did; until then it is kept as that station's claim. The dashboard "
            "reads that database. Runs until Ctrl-C or SIGTERM, then prints a summary on standard error."
        ),
        epilog=AGGREGATE_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--broker", required=True, metavar="HOST:PORT", type=hostport_type(),
                        help="the MQTT broker the stations publish to, e.g. 127.0.0.1:1883")
    parser.add_argument("--db", required=True, metavar="FILE",
                        help="SQLite database to store into (created if missing; safe to reuse: records "
                             "already there are not stored twice)")
    parser.add_argument("--topic-prefix", default=DEFAULT_PREFIX, type=_prefix_type, metavar="PREFIX",
                        help=f"first topic level(s) the stations publish under (default {DEFAULT_PREFIX})")
    parser.add_argument("--client-id", default="stratoecho-aggregator", metavar="ID",
                        help="MQTT client id; the broker keeps this id's session (and the frames waiting for "
                             "it) while the aggregator is away. Two aggregators need two ids "
                             "(default stratoecho-aggregator)")
    parser.add_argument("--trust", action="append", default=[], type=_station_type, metavar="STATION",
                        help="a station whose frames count alone (your own); repeat for more. Others' count "
                             "once --quorum stations sent the same bytes")
    add_key_arguments(parser)
    parser.add_argument("--quorum", type=int, default=2, metavar="N",
                        help="how many stations must send a frame's bytes before an untrusted station's frame "
                             "counts (default 2; 1 believes every station)")
    _broker_auth_arguments(parser, "")
    parser.add_argument("--duration", type=positive_number("seconds"), metavar="SECONDS",
                        help="stop after this many seconds (for scripted runs)")
    parser.set_defaults(func=cmd_aggregate)
    return parser


def _broker_auth_arguments(parser, prefix: str) -> None:
    """--user/--password-file/--ca/--tls (`prefix` "mqtt-" for a station's options)."""
    parser.add_argument(f"--{prefix}user", metavar="NAME", help="user name at the broker")
    parser.add_argument(f"--{prefix}password-file", metavar="FILE",
                        help="file whose first line is the broker password (never the password itself on the "
                             "command line, where anyone on the machine can read it)")
    parser.add_argument(f"--{prefix}ca", metavar="FILE",
                        help="certificate authority that signed the broker's certificate: speak TLS and check the "
                             "broker with it (implies --" + prefix + "tls)")
    parser.add_argument(f"--{prefix}tls", action="store_true",
                        help="speak TLS, checking the broker against the system's certificate authorities "
                             "(port 8883 by convention)")


def auth_from_args(args: argparse.Namespace, prefix: str = "") -> BrokerAuth | None:
    """The BrokerAuth of _broker_auth_arguments' options, None when none was given; ValueError
    naming what will not do."""
    key = prefix.replace("-", "_")
    user, password_file = getattr(args, f"{key}user", None), getattr(args, f"{key}password_file", None)
    ca, tls = getattr(args, f"{key}ca", None), getattr(args, f"{key}tls", False)
    if user is None and password_file is None and ca is None and not tls:
        return None
    return BrokerAuth.from_files(user, password_file, ca, tls)


def add_publish_arguments(parser: argparse.ArgumentParser) -> None:
    """`--mqtt HOST:PORT`, `--station NAME`, `--mqtt-prefix` for a command that hears frames."""
    group = parser.add_argument_group(
        "sharing (MQTT)",
        "With --mqtt, every frame heard (good or bad) is also published, raw, to "
        "PREFIX/PAYLOAD/frames/STATION at QoS 1 for an aggregator (python -m groundstation aggregate). "
        "Publishing never holds up receiving: while the broker is away frames wait in a bounded buffer.")
    group.add_argument("--mqtt", metavar="HOST:PORT", type=hostport_type(),
                       help="MQTT broker to publish heard frames to, e.g. mqtt.example.org:1883")
    group.add_argument("--station", type=_station_type, default=None, metavar="NAME",
                       help="this station's name in topics and in the aggregate's heard-by lists "
                            "(default: the host name)")
    group.add_argument("--mqtt-prefix", type=_prefix_type, default=DEFAULT_PREFIX, metavar="PREFIX",
                       help=f"first topic level(s) (default {DEFAULT_PREFIX}); must match the aggregator's")
    group.add_argument("--station-position", nargs="+", type=float, metavar="COORD",
                       help="LAT LON [ALT]: where this station is (default: --sondehub-position); kept in its "
                            "database and, with --mqtt, shared with the network, so the dashboard gives "
                            "distance, bearing and elevation to the balloon from every station")
    _broker_auth_arguments(group, "mqtt-")


def station_position(args: argparse.Namespace) -> tuple[float, float, float] | None:
    """`--station-position` (else `--sondehub-position`) as (lat, lon, alt); ValueError naming it."""
    if getattr(args, "station_position", None):
        return place(args.station_position, "--station-position")
    if getattr(args, "sondehub_position", None):
        return place(args.sondehub_position, "--sondehub-position")
    return None


def publisher_from_args(args: argparse.Namespace) -> StationPublisher | None:
    """A `StationPublisher` for `add_publish_arguments`' options; None without --mqtt."""
    if getattr(args, "mqtt", None) is None:
        return None
    host, port = args.mqtt
    return StationPublisher(host, port, args.station or default_station(), getattr(args, "callsign", None),
                            args.mqtt_prefix, auth=auth_from_args(args, "mqtt-"), position=station_position(args))


def cmd_aggregate(args: argparse.Namespace, stop: threading.Event | None = None) -> int:
    stop = stop or threading.Event()
    host, port = args.broker
    try:
        auth = auth_from_args(args)
        if args.quorum < 1:
            raise ValueError(f"--quorum: 1 station or more, got {args.quorum}")
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        downlink = auth_from_key_args(args)
        if downlink is None:
            log.warning("no downlink key", consequence="record fragments are kept as claims, never decoded",
                        fix="--downlink-key FILE (keygen --downlink-from FLIGHT_KEY FILE)")
        aggregator = Aggregator(host, port, args.db, args.topic_prefix, client_id=args.client_id,
                                trusted=args.trust, quorum=args.quorum, auth=auth, downlink=downlink)
    except (KeyFileError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except StoreError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    timer = threading.Timer(args.duration, stop.set) if args.duration else None
    if timer is not None:
        timer.daemon = True
        timer.start()
    status = 0
    try:
        with stop_on_signals(stop):
            aggregator.run(stop)
    except sqlite3.Error as e:  # the messages not stored stay unacknowledged at the broker
        print(f"error: database {args.db}: {e}", file=sys.stderr)
        status = 1
    finally:
        if timer is not None:
            timer.cancel()
        print(format_aggregate_summary(aggregator), file=sys.stderr)
    return status


def format_aggregate_summary(aggregator: Aggregator) -> str:
    s, d = aggregator.stats, aggregator.decoder
    records = ", ".join(f"{n} {kind}" for kind, n in sorted(d.records.items())) or "none"
    lines = [
        f"aggregate: {s.messages} messages, {s.frames} frames stored, {s.records_new} new records and sentences",
        f"  decoded: {records}; {d.incomplete()} records incomplete",
        f"  duplicates: {s.duplicate_frames} frames heard before, {s.duplicate_records} records already held, "
        f"{s.repeats} messages delivered again",
    ]
    trust = (f"  trust: {s.vouched_frames} frames vouched for (quorum {aggregator.quorum}"
             + (f", trusted {', '.join(sorted(aggregator.trusted))}" if aggregator.trusted else "") + f"), "
             f"{s.held_frames} held as one untrusted station's claim, {s.bad_tags} with a tag that failed or was "
             "not checked")
    if s.refused_records:
        trust += f", {s.refused_records} decoded records refused"
    lines.append(trust)
    if s.rate_dropped or s.over_quota or aggregator._held.evicted:
        by = lambda counts: ", ".join(f"{st} {n}" for st, n in sorted(counts.items()))  # noqa: E731
        limit = []
        if s.rate_dropped:
            limit.append(f"{s.rate_dropped} frames over a station's rate dropped ({by(aggregator.gate.rate_dropped)})")
        if s.over_quota:
            limit.append(f"{s.over_quota} past a station's storage quota not stored ({by(aggregator.gate.over_quota)})")
        if aggregator._held.evicted:
            limit.append(f"claims forgotten past a station's share: {by(aggregator._held.evicted)}")
        lines.append("  limits: " + "; ".join(limit))
    bad = {**s.bad_messages, **{f"frame: {k}": v for k, v in d.errors.items()}}
    if bad:
        lines.append("  ignored: " + ", ".join(f"{n} {reason}" for reason, n in sorted(bad.items())))
    return "\n".join(lines)
