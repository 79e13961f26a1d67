"""The LoRa gateway (PiInTheSky lora-gateway) as a source: the sentences it decoded.

The gateway runs on a Pi with one or two LoRa modules and passes what it hears to other
programs (its Sockets.md, server.c, udpclient.c, gateway.c):

* **The JSON port** (`ServerPort` in gateway.txt, 6004 in its sample): a TCP server for one
  client at a time. About once a second it writes lines ending in CR LF:
  ``{"class":"POSN","index":0,"channel":1,"payload":"CALL","time":"12:04:11","lat":52.1,
  "lon":-0.1,"alt":12345,"rate":5.1,"snr":9,"rssi":-87,"ferr":1.2,"sentence":"$$CALL,...*ABCD"}``
  for each payload with a new sentence since the last line (only sentences whose checksum
  it checked; `sentence` without its line feed; `snr`/`rssi` are the channel's last packet's,
  absent from older gateways), and a ``{"class":"STATS",...}`` line per channel in use.
  Settings replies (``"class":"SET"``) come only when asked; we ask nothing.
* **The UDP broadcast** (`UDPPort`): every packet starting with ``$`` (telemetry), as
  received, before its checksum is checked, as one datagram to 255.255.255.255. Uplink
  messages the gateway sends are broadcast on the same port.
* **The data port** (`DataPort`): the same raw lines over TCP, one client. Not offered here:
  it gives nothing the broadcast does not and takes the gateway's only slot for it.

`GatewaySource` (`listen --gateway HOST:PORT`) is a client of the JSON port: each POSN
line's `sentence` goes to the decoder as the frame heard (with its line feed back, so the
stored frame is the one the payload sent) with the signal the line reports; other classes
are counted in `ignored`. A connection that drops, or stays silent for `silence_s` (the
gateway writes STATS every second), is opened again after an exponential back-off with jitter (`GATEWAY_BACKOFF`),
waiting in steps of `POLL_S` so the listener still stops at once (an attempt itself takes
at most `connect_timeout_s`). The first connection must succeed:
a wrong address is an error at start, not a retry forever.

`GatewayUdpSource` (`listen --gateway-udp [HOST:]PORT`) hears the broadcast: every program on
the network can, the JSON port's one slot stays free, and nothing needs reconnecting.

Either way only ``$$`` sentences come through: the gateway drops packets whose first byte
it does not know, and stratoecho's record fragments (0xEC, docs/protocol.md) are such
packets. Positions, and musings where the payload sends them as text sentences too
(`[persona] sentences`), arrive; events, health and exact musings need our own receiver.
"""

from __future__ import annotations

import json
import math
import socket
import time
from collections import Counter
from collections.abc import Iterator

import structlog

from stratoecho import wire
from stratoecho.backoff import Backoff

from .base import MAX_LINE, POLL_S, Received, SourceError
from .udp import bind_shared_udp, receive_datagram

log = structlog.get_logger(__name__)

JSON_PORT = 6004  # ServerPort in the gateway's sample gateway.txt


# Waits between attempts to reach the gateway again: from 1 s, doubling, up to 30 s, with up to 1 s of jitter.
GATEWAY_BACKOFF = Backoff(initial_s=1.0, max_s=30.0, jitter_s=1.0)


def _signal(value: object) -> float | None:
    """A signal figure from the JSON line, or None if it is not a finite number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def posn_frame(line: bytes, where: str, errors: Counter, ignored: Counter) -> Received | None:
    """One line from the JSON port: a `Received` for a POSN line, None for anything else
    (other classes counted in `ignored`, what is not a POSN we can read in `errors`)."""
    try:
        message = json.loads(line)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError; nesting past the limit
        errors["bad json"] += 1
        log.warning("gateway line is not JSON, skipped", gateway=where, line=line[:80].decode("ascii", "replace"))
        return None
    if not isinstance(message, dict):
        errors["bad json"] += 1
        log.warning("gateway line is not a JSON object, skipped", gateway=where, line=line[:80].decode("ascii", "replace"))
        return None
    kind = message.get("class")
    if kind != "POSN":
        ignored[str(kind)] += 1
        return None
    sentence = message.get("sentence")
    if not isinstance(sentence, str) or not sentence.strip():
        errors["posn without sentence"] += 1
        log.warning("gateway POSN line without a sentence, skipped", gateway=where, payload=message.get("payload"))
        return None
    channel = message.get("channel")
    origin = f"gateway {where}" + (f" ch{channel}" if isinstance(channel, int) else "")
    # Non-ASCII survives as UTF-8 for the decoder to refuse by name ("sentence not ascii").
    frame = sentence.strip().encode("utf-8", errors="replace") + b"\n"
    return Received(frame, origin, None, _signal(message.get("rssi")), _signal(message.get("snr")))


class GatewaySource:
    """A client of the LoRa gateway's JSON port (`ServerPort`); see the module's docstring."""

    def __init__(self, host: str, port: int = JSON_PORT, *, backoff: Backoff = GATEWAY_BACKOFF, silence_s: float = 30.0,
                 connect_timeout_s: float = 3.0) -> None:
        self.host, self.port = host, port
        self.address = (host, port)
        self.where = f"{host}:{port}"
        self.backoff, self.silence_s, self.connect_timeout_s = backoff, silence_s, connect_timeout_s
        self.errors: Counter = Counter()  # lines we could not read, by reason
        self.ignored: Counter = Counter()  # lines of other classes (STATS, SET...), by class
        self.connects = self.drops = 0
        self._sock: socket.socket | None = None
        self._buffer = bytearray()
        self._failed_attempts = 0
        self._retry_at = 0.0
        self._last_heard = 0.0
        try:
            self._connect()
        except OSError as e:
            raise SourceError(f"cannot connect to the LoRa gateway's JSON port {self.where}: "
                              f"{e.strerror or e}") from e
        log.info("listening", source=f"gateway {self.where}")

    def _connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout_s)
        sock.settimeout(POLL_S)
        self._sock, self._last_heard = sock, time.monotonic()
        self._buffer.clear()  # half a line from the last connection can never be completed
        self.connects += 1

    def __iter__(self) -> Iterator[Received | None]:
        while True:
            if self._sock is None and not self._reconnect():
                yield None
                continue
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError:
                if time.monotonic() - self._last_heard > self.silence_s:
                    self._drop(f"nothing heard for {self.silence_s:g} s")
                yield None
                continue
            except OSError as e:
                self._drop(str(e))
                yield None
                continue
            if not chunk:
                self._drop("closed by the gateway")
                yield None
                continue
            self._last_heard = time.monotonic()
            yield from self._lines(chunk)

    def _lines(self, chunk: bytes) -> Iterator[Received]:
        self._buffer += chunk
        while (end := self._buffer.find(b"\n")) >= 0:
            line = bytes(self._buffer[:end]).strip()
            del self._buffer[: end + 1]
            if line and (item := posn_frame(line, self.where, self.errors, self.ignored)) is not None:
                yield item
        if len(self._buffer) > MAX_LINE:
            self.errors["line too long"] += 1
            log.warning("gateway line too long, dropped", gateway=self.where, length=len(self._buffer))
            self._buffer.clear()

    def _drop(self, why: str) -> None:
        self._sock.close()
        self._sock = None
        self.drops += 1
        log.warning("gateway connection lost; reconnecting", gateway=self.where, why=why)
        self._failed_attempts = 0
        self._schedule()

    def _schedule(self) -> None:
        self._failed_attempts += 1
        self._retry_at = time.monotonic() + self.backoff.delay_s(self._failed_attempts)

    def _reconnect(self) -> bool:
        """One step towards a connection: wait up to one poll interval, or try once."""
        wait_s = self._retry_at - time.monotonic()
        if wait_s > 0:
            time.sleep(min(wait_s, POLL_S))  # a poll interval, as a socket timeout would take
            return False
        try:
            self._connect()
        except OSError as e:
            if self._failed_attempts == 1:  # once per outage; then quieter
                log.warning("gateway unreachable; trying again", gateway=self.where, error=str(e))
            else:
                log.debug("gateway unreachable", gateway=self.where, error=str(e), attempts=self._failed_attempts)
            self._schedule()
            return False
        log.info("gateway reached again", gateway=self.where, failed_attempts=self._failed_attempts - 1)
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class GatewayUdpSource:
    """The LoRa gateway's raw telemetry broadcast (`UDPPort`): each datagram one packet as
    received; each `$$` line in it is a sentence for the decoder (which checks its checksum:
    the gateway broadcasts before checking). Anything else on the port (the gateway's own
    uplink messages) is counted as "not a sentence" and skipped."""

    def __init__(self, host: str, port: int) -> None:
        self.errors: Counter = Counter()
        self._sock = bind_shared_udp(host, port, "the LoRa gateway's broadcast")
        bound = self._sock.getsockname()
        self.address: tuple[str, int] = (bound[0], bound[1])
        log.info("listening", source=f"gateway-udp {bound[0]}:{bound[1]}")

    def __iter__(self) -> Iterator[Received | None]:
        while True:
            got = receive_datagram(self._sock, f"gateway broadcast on UDP port {self.address[1]}")
            if got is None:
                yield None
                continue
            data, peer = got
            origin = f"gateway-udp {peer[0]}"
            for line in data.split(b"\n"):
                line = line.strip(b"\r\n\0 ")
                if not line:
                    continue
                if wire.classify(line).kind not in (wire.FrameKind.SENTENCE, wire.FrameKind.MUSING_SENTENCE):
                    self.errors["not a sentence"] += 1
                    log.warning("gateway broadcast is not a telemetry sentence, skipped", origin=origin,
                                line=line[:80].decode("ascii", "replace"))
                    continue
                yield Received(line + b"\n", origin, None)

    def close(self) -> None:
        self._sock.close()
