"""The station side: every raw frame heard goes to the broker, buffered, acknowledged, never waiting for it."""

from __future__ import annotations

import json
import math
import threading
import time
import uuid
from collections import deque
from dataclasses import asdict, dataclass
from datetime import datetime

import paho.mqtt.client as mqtt
import structlog

from stratoecho import wire

from ..link.heard import WireRecord
from ..store import utc_now
from .session import _Session
from .topics import (
    DEFAULT_PREFIX,
    FORMAT_VERSION,
    OFFLINE,
    ONLINE,
    POLL_S,
    BrokerAuth,
    Reconnect,
    _iso,
    check_prefix,
    frames_topic,
    payload_level,
    position_topic,
    records_topic,
    status_topic,
    topic_level,
)

log = structlog.get_logger(__name__)


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
        if self._hinted:
            return
        heard = wire.classify(data)
        if heard.kind in (wire.FrameKind.SENTENCE, wire.FrameKind.HABPACK) and isinstance(heard.opened, wire.Telemetry):
            self._payload = payload_level(heard.opened.callsign)

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
