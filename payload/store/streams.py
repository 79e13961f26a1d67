"""The queue's streams: one per wire kind, with its priority and whether it is durable, and
the stored record as the queue hands it out."""

from __future__ import annotations

from dataclasses import dataclass

from stratoecho.wire import Kind


@dataclass(frozen=True)
class Stream:
    priority: int  # lower goes first
    durable: bool  # committed before enqueue returns


# One stream per wire kind. Telemetry first (the newest sentence; older ones wait as a
# backlog with images), then events, musings and API requests, then health and musings again
# as text sentences for stock gateways, then images (as records or as SSDV packets).
STREAMS: dict[Kind, Stream] = {
    Kind.TELEMETRY: Stream(0, durable=False),
    Kind.EVENT: Stream(1, durable=True),
    Kind.MUSING: Stream(2, durable=True),
    Kind.API_REQUEST: Stream(2, durable=True),
    Kind.HEALTH: Stream(3, durable=False),
    Kind.MUSING_SENTENCE: Stream(3, durable=False),  # the record is durable; this is its readable copy
    Kind.IMAGE: Stream(4, durable=False),
    Kind.SSDV: Stream(4, durable=False),  # a picture's SSDV packets: images by another format
}
BACKLOG_PRIORITY = 4  # telemetry superseded by a newer sentence


def stream_name(kind: Kind) -> str:
    """The kind as the queue's `stream` column, its counters and its statistics name it."""
    return kind.name.lower()


def kind_of(name: str) -> Kind:
    return Kind[name.upper()]


PRIORITY = {stream_name(k): s.priority for k, s in STREAMS.items()}
DURABLE = {stream_name(k) for k, s in STREAMS.items() if s.durable}


@dataclass(frozen=True)
class Queued:
    """A stored record: its kind's bytes as they go on air (a sentence, or a record's body)."""

    id: int
    kind: Kind
    boot: int
    seq: int
    created: float
    payload: bytes
    send_count: int

    @classmethod
    def row(cls, id: int, stream: str, *rest) -> Queued:
        return cls(id, kind_of(stream), *rest)

    @property
    def stream(self) -> str:
        return stream_name(self.kind)
