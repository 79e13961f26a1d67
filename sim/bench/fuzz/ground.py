"""Targets over what a station network sends: the aggregator's MQTT message, and the bounded JSON
reader under it.

Contracts, from the code:

- `aggregator._read(payload)` refuses with `_BadMessage` (its reason: "too large", "too deep",
  "not json"), never anything else.
- `Aggregator._handle(topic, payload)` refuses with `_BadMessage`; anything else escaping it is a
  message the aggregator sets aside as a dead letter (`_on_message`): a bug, here a crash. The
  aggregator is built as the tests build one without a broker (it never connects), with the
  downlink key and a quorum of one, so frames reach the decoder and the database; a throwaway
  database under the scratch folder.
- `bounded_json.loads` refuses with `JsonRefused` ("too large", "too deep", "not json").

An input to the aggregator is the topic, a line feed, then the message's bytes.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
from datetime import datetime

import structlog

from groundstation.network import aggregator as agg
from groundstation.network.topics import DEFAULT_PREFIX, FORMAT_VERSION, frames_topic, position_topic, records_topic
from stratoecho import bounded_json

from .engine import Target, refusing
from .frames import AUTH, FRAME_TOKENS, _flight, _open_sentences, _received, _reseal

AT = "2026-01-01T10:04:11+00:00"
JSON_TOKENS = (b"{", b"}", b"[", b"]", b'{"a":', b'[{"a":[', b'{"messages":[', b'"', b"\\", b"\\u0000", b"\\ud800",
               b":", b",", b"null", b"true", b"-0", b"1e999", b"NaN", b"Infinity", b"9" * 40, b'"v":1', b'"hex":"',
               b'"id":"', b'"received_at":"', b"\xff", b"\xc3\x28", b"\xef\xbb\xbf")
JSON_ANCHORS = (b":", b": ", b"[", b",", b", ", b"\n")
TOPIC_TOKENS = (b"stratoecho/", b"/frames/", b"/records/", b"position/", b"+", b"#", b"/", b"\n")


def _message(station: str, n: int, frame: bytes, **extra) -> bytes:
    """A frame as a station's publisher puts it on the broker (publisher.py `_queue`)."""
    body = {"v": FORMAT_VERSION, "id": f"{station}-s1:{n}", "station": station, "hex": frame.hex(),
            "received_at": AT, "rssi_dbm": -101.5, "snr_db": 6.25, "origin": "lora", **extra}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _payloads() -> list[bytes]:
    fragments, _ = _flight()
    frames = fragments[:6] + _open_sentences()[:4]
    out = [_message("hill", n, f) for n, f in enumerate(frames)]
    out.append(json.dumps({"v": FORMAT_VERSION, "station": "hill", "lat": 52.2, "lon": 0.12, "alt_m": 40.0,
                           "at": AT}).encode())
    return out


def _messages() -> list[bytes]:
    fragments, _ = _flight()
    frames = fragments[:6] + _open_sentences()[:4]
    out = [frames_topic(DEFAULT_PREFIX, "STRATO1", station).encode() + b"\n" + _message(station, n, f)
           for station in ("hill", "harbour") for n, f in enumerate(frames)]
    out.append(position_topic(DEFAULT_PREFIX, "hill").encode() + b"\n" + _payloads()[-1])
    out.append(records_topic(DEFAULT_PREFIX, "STRATO1", "hill").encode() + b"\n" + b'{"v":1}')
    return out


def _reseal_message(data: bytes) -> bytes:
    """The frame inside a message re-sealed (`frames._reseal`), so that it passes its CRC or checksum."""
    topic, nl, payload = data.partition(b"\n")
    try:
        body = json.loads(payload)
        body["hex"] = _reseal(bytes.fromhex(body["hex"])).hex()
    except (ValueError, TypeError, KeyError, RecursionError, AttributeError):
        return data
    return topic + nl + json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")


@contextlib.contextmanager
def _quiet():
    """The aggregator warns of each station over its limits: not on the fuzzer's terminal."""
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    try:
        yield
    finally:
        structlog.configure(**saved)


@contextlib.contextmanager
def _aggregator(scratch):
    with _quiet():
        # Its clock at the stations' time (AT): what a message carries is read, never refused for its date alone.
        a = agg.Aggregator("127.0.0.1", 1, scratch / "ground.db", downlink=AUTH, quorum=1, remember=512,
                           wall_clock=lambda: datetime.fromisoformat(AT))
        try:
            def run(data: bytes) -> str:
                topic, _, payload = data.partition(b"\n")
                try:
                    a._handle(topic.decode("utf-8", "replace"), payload)
                except agg._BadMessage as e:
                    return e.reason
                return "ok"
            yield run
        finally:
            a.store.close()


@contextlib.contextmanager
def _aggregator_frames(scratch):
    """Raw frames, each put in a well-formed message from one of three stations: the decoding, the
    quorum and the database behind the message's JSON."""
    with _aggregator(scratch) as handle:
        n = itertools.count()

        def run(data: bytes) -> str:
            i = next(n)
            station = ("hill", "harbour", "evil")[i % 3]
            return handle(frames_topic(DEFAULT_PREFIX, "STRATO1", station).encode() + b"\n"
                          + _message(station, i, data))
        yield run


@contextlib.contextmanager
def _bounded(scratch):
    def run(data: bytes) -> str:
        outcomes = []
        for given in (data, data.decode("utf-8", "surrogateescape")):  # bytes, and a str decoded already
            try:
                bounded_json.loads(given, max_bytes=4096, max_depth=8)
                outcomes.append("ok")
            except bounded_json.JsonRefused as e:
                outcomes.append(e.reason)
        return outcomes[0]
    yield run


TARGETS = [
    Target("aggregator_read", "aggregator._read, a station's MQTT message: _BadMessage",
           _payloads, refusing(agg._read, agg._BadMessage), JSON_TOKENS, anchors=JSON_ANCHORS, max_bytes=3000),
    Target("aggregator", "Aggregator._handle, topic and message: _BadMessage (else a dead letter)",
           _messages, _aggregator, JSON_TOKENS + TOPIC_TOKENS, _reseal_message, JSON_ANCHORS + (b"/",), max_bytes=3000,
           fresh_every=2000),
    Target("aggregator_frames", "Aggregator._handle, raw frames in good messages: _BadMessage",
           _received, _aggregator_frames, FRAME_TOKENS, _reseal, max_bytes=300, fresh_every=2000),
    Target("bounded_json", "bounded_json.loads, bytes and text: JsonRefused",
           lambda: _payloads() + [b"[[[[1]]]]", b'{"a":"\\"[{"}', b"[]"], _bounded, JSON_TOKENS, anchors=JSON_ANCHORS,
           max_bytes=5000),
]
