"""Declared events: every one round-trips through the wire, an unknown id is shown, never an
error, wrong values are refused, and docs/protocol.md lists exactly the declared table."""

from __future__ import annotations

import re
from pathlib import Path

import msgpack
import pytest

from stratoecho import wire
from stratoecho.wire.events import BY_NAME, EVENTS, Event, decode_event, encode_event, event

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = {int: 7, str: "x y", bool: True, float: 1.5}


@pytest.mark.parametrize("name", sorted(BY_NAME))
def test_each_declared_event_round_trips_and_renders(name):
    spec = BY_NAME[name]
    e = event(name, **{key: SAMPLE[typ] for key, typ in spec.fields})
    record = wire.Record(wire.Kind.EVENT, 2, 5, 1_767_225_600, e)
    back = wire.Record.from_body(wire.Kind.EVENT, 2, 5, record.body())
    assert back.content == e and back.text == e.text and "\n" not in e.text
    d = back.as_dict()
    assert (d["event"], d["severity"], d["fields"]) == (name, spec.severity.value, e.fields)


def test_an_event_is_a_few_bytes():
    e = event("phase", before="ascent", after="float", alt_m=31250)
    assert len(encode_event(e)) < len(e.text.encode())


def test_an_unknown_id_is_shown_with_its_values():
    e = decode_event(msgpack.packb([200, [1, "two"]]))
    assert (e.name, e.fields, e.severity) == ("event_200", {"field_0": 1, "field_1": "two"}, "unknown")
    assert e.text == "event_200: field_0 1, field_1 two"


@pytest.mark.parametrize("data", [
    msgpack.packb([9, []]),  # pong without its nonce
    msgpack.packb([9, ["seven"]]),  # its nonce as text
    msgpack.packb([9, [True]]),  # a flag is not a number
    msgpack.packb({"9": 1}),
    msgpack.packb([9, [{"x": 1}]]),
    b"\xc1",
])
def test_wrong_values_are_bad_content(data):
    with pytest.raises(wire.WireError, match="event"):
        decode_event(data)


def test_the_payload_cannot_send_an_undeclared_or_mistyped_event():
    with pytest.raises(ValueError, match="no event 'launch'"):
        event("launch")
    with pytest.raises(ValueError, match="missing nonce"):
        event("pong")
    with pytest.raises(ValueError, match="nonce is int, not str"):
        event("pong", nonce="7")
    with pytest.raises(ValueError, match="declared Event"):
        wire.Record(wire.Kind.EVENT, 1, 1, 0, "free text").body()
    with pytest.raises(ValueError, match="not declared"):
        encode_event(Event("launch", {}))


def test_the_protocol_document_lists_every_declared_event():
    text = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| (\d+) \| `([a-z_]+)` \| (\w+) \| (.*) \|$", text, re.M)
    documented = {int(i): (name, severity, fields) for i, name, severity, fields in rows}
    assert documented == {
        i: (s.name, s.severity.value, ", ".join(f"{k} ({t.__name__})" for k, t in s.fields))
        for i, s in EVENTS.items()}
