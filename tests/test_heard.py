"""Typed records inside the ground, JSON at its edges: `groundstation.link.heard`."""

from __future__ import annotations

import json
import math

import pytest

from groundstation.link.heard import Heard, RecordJsonError, kind_name, record_from_json
from stratoecho import wire
from stratoecho.wire.events import Event, event

CREATED = 1_714_565_055
SENTENCE = wire.Telemetry("STRATO", 42, "12:04:11", 52.10123, -0.10234, 12345, 9, -40.5, 180.2, 3700, 3)
RECORDS = [
    wire.Record(wire.Kind.MUSING, 3, 7, CREATED, "The clouds below look like a second ocean. ☁️\n\x1b[2J"),
    wire.Record(wire.Kind.EVENT, 3, 8, CREATED, event("phase", before="ascent", after="float", alt_m=31250)),
    wire.Record(wire.Kind.EVENT, 3, 9, CREATED, Event("event_99", {"field_0": 1, "field_1": "x"})),  # newer payload
    wire.Record(wire.Kind.HEALTH, 3, 1, CREATED, {"mode": "NOMINAL", "cpu_temp_c": 41.5, "field_99": 5}),
    wire.Record(wire.Kind.IMAGE, 3, 2, CREATED, b"\xff\xd8\xff\xe0 a picture"),
    wire.Record(wire.Kind.API_REQUEST, 3, 3, CREATED, {"api": "weather", "query": "52.1,-0.1"}),
]


def over_the_wire(record: wire.Telemetry | wire.Record) -> object:
    """What another station's message holds: the record's JSON, as text and back."""
    return json.loads(json.dumps(record.as_dict(), allow_nan=False))


@pytest.mark.parametrize("record", [SENTENCE, *RECORDS], ids=lambda r: f"{kind_name(r)}-{r.seq}")
def test_every_kind_comes_back_from_its_json_as_it_was(record):
    assert record_from_json(over_the_wire(record)) == record


def test_a_sensor_without_a_reading_comes_back_as_nan():
    t = wire.Telemetry("STRATO", 1, "12:00:00", 52, -1, 100, 0, math.nan, math.nan, 0, 3)  # whole degrees too
    back = record_from_json(over_the_wire(t))
    assert math.isnan(back.temp_c) and math.isnan(back.pressure_hpa)
    assert back.as_dict() == t.as_dict()


def test_heard_json_is_the_records_json_with_when():
    heard = Heard(RECORDS[0], "2024-05-01T12:00:00.000+00:00")
    assert heard.as_json() == {**RECORDS[0].as_dict(), "received_at": "2024-05-01T12:00:00.000+00:00"}


GOOD_EVENT = RECORDS[1].as_dict()
GOOD_IMAGE = RECORDS[4].as_dict()
MALFORMED = {
    "not an object": ([1, 2], "valid dictionary"),
    "no kind": ({"boot": 1}, "kind: missing (expected one of telemetry, musing"),
    "unknown kind": ({**GOOD_EVENT, "kind": "gossip"}, "'gossip'"),
    "seq as text": ({**SENTENCE.as_dict(), "seq": "42"}, "telemetry.seq: Input should be a valid integer"),
    "no position": ({k: v for k, v in SENTENCE.as_dict().items() if k != "lat"}, "telemetry.lat: Field required"),
    "a flag for a number": ({**SENTENCE.as_dict(), "sats": True}, "telemetry.sats"),
    "negative seq": ({**GOOD_EVENT, "seq": -1}, "event.seq: Input should be greater than or equal to 0"),
    "boot beyond u16": ({**GOOD_EVENT, "boot": 70_000}, "event.boot"),
    "a list in health": ({**RECORDS[3].as_dict(), "fields": {"mode": ["x"]}}, "health.fields.mode"),
    "event field missing": ({**GOOD_EVENT, "fields": {"before": "ascent"}},
                            "event 3/8: event phase: missing after, alt_m"),
    "event field mistyped": ({**GOOD_EVENT, "fields": {**GOOD_EVENT["fields"], "alt_m": "high"}},
                             "event phase field alt_m is int, not str"),
    "created without zone": ({**GOOD_EVENT, "created": "2024-05-01T12:04:15"}, "has no time zone"),
    "created not a time": ({**GOOD_EVENT, "created": "yesterday"}, "created 'yesterday' is not an ISO 8601 time"),
    "image not base64": ({**GOOD_IMAGE, "image": {"jpeg_base64": "%%%"}}, "image 3/2: image.jpeg_base64 is not base64"),
    "image not a jpeg": ({**GOOD_IMAGE, "image": {"jpeg_base64": "aGVsbG8="}}, "is not a JPEG"),
    "image altered": ({**GOOD_IMAGE, "image": {**GOOD_IMAGE["image"], "sha256": "0" * 64}}, "sha256 does not match"),
}


@pytest.mark.parametrize("obj, message", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_record_is_refused_naming_what_is_wrong(obj, message):
    with pytest.raises(RecordJsonError) as caught:
        record_from_json(obj)
    assert message in str(caught.value)
