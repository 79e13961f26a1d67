"""One MQTT client, one thread: connect with back-off, serve, hand over to the owner (publisher or aggregator)."""

from __future__ import annotations

import threading
import time

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.enums import CallbackAPIVersion
from tenacity import RetryError, Retrying, retry_if_exception_type

from .topics import POLL_S, BrokerAuth, Reconnect

log = structlog.get_logger(__name__)


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
