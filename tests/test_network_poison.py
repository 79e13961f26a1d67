"""No poison message (issue 41, attack 1): a station with a valid login publishes what no parser
should meet — 200,000 nested `[`, nesting past Python's recursion in 2 KB, a 100 KB frame, a
20 KB message id — to a real mosquitto. The aggregator refuses each by its reason, keeps
storing the honest stations' flight, acknowledges every message so that none comes back after
a restart, and a message its code fails on is set aside in `dead_letters`, never redelivered."""

from __future__ import annotations

import json
import sqlite3
import time
from types import SimpleNamespace

import pytest

from groundstation.network import StationPublisher
from groundstation.network.aggregator import Aggregator
from groundstation.store import DEAD_LETTER_HEAD, DEAD_LETTERS_KEPT, Store, utc_now
from tests.test_network import FAST, db_keys, decode_all, flight_frames
from tests.test_network_trust import Running, hostile_client, secure_broker  # noqa: F401 - the fixture

POISON = {
    "too large": [b"[" * 200_000, json.dumps({"v": 1, "id": "evil:hex", "hex": "ab" * 50_000}).encode()],
    "too deep": [b"[" * 900 + b"]" * 900],
    "id too long": [json.dumps({"v": 1, "id": "e" * 500, "hex": "ab"}).encode()],
    "not a frame's length": [json.dumps({"v": 1, "id": "evil:long", "hex": "ab" * 400}).encode()],
    "not json": [b"\xff\xfe{}", b"17"],
}


def test_poison_messages_are_refused_and_never_come_back(secure_broker, tmp_path):  # noqa: F811 - the fixture
    broker, db = secure_broker, tmp_path / "flight.db"
    run = Running(broker, db, auth=broker.auth("aggregator"), quorum=1)
    run.wait_subscribed()
    evil = hostile_client(broker)
    poison = [p for ps in POISON.values() for p in ps]
    for p in poison:
        evil.publish("stratoecho/SE1/frames/evil", p, qos=1).wait_for_publish(5)
    frames = flight_frames()
    hill = StationPublisher("127.0.0.1", broker.port, "hill", reconnect=FAST, auth=broker.auth("hill"))
    for f in frames:
        hill.publish_frame(f, utc_now())
    assert hill.flush(20)
    hill.close()
    assert run.wait_for(lambda s: s.messages >= len(poison) + len(frames)), run.agg.stats
    evil.disconnect()
    evil.loop_stop()
    run.finish()
    stats = run.agg.stats
    assert dict(stats.bad_messages) == {reason: len(ps) for reason, ps in POISON.items()}
    assert stats.dead_letters == 0  # refused by the bounds: nothing reached code that could fail on it
    records, telemetry = db_keys(db)
    assert set(records + telemetry) == decode_all(frames)  # the honest flight, whole

    # Every message was acknowledged: a restarted aggregator is offered none of them again.
    again = Running(broker, db, auth=broker.auth("aggregator"), quorum=1)
    again.wait_subscribed()
    time.sleep(1.0)
    again.finish()
    assert again.agg.stats.messages == 0 and not again.agg.stats.bad_messages


def test_a_message_the_code_fails_on_is_set_aside_and_acknowledged(tmp_path, monkeypatch):
    """A bug or an input nobody foresaw: the message goes to `dead_letters` (its first bytes, the
    error), is acknowledged with the others, and the next message is handled as ever. A database
    that cannot be written is not the message's fault: that still propagates, unacknowledged."""
    agg = Aggregator("127.0.0.1", 1, tmp_path / "g.db", batch_messages=1000)
    frame = flight_frames()[0]
    message = SimpleNamespace(topic="stratoecho/SE1/frames/hill", mid=7, qos=1,
                              payload=json.dumps({"v": 1, "id": "hill:1", "hex": frame.hex()}).encode())

    def broken(*args, **kw):
        raise KeyError("a field nobody foresaw")
    monkeypatch.setattr(agg, "_frame", broken)
    agg._on_message(None, None, message)
    assert agg.stats.dead_letters == 1 and agg._acks == [(7, 1)]
    monkeypatch.undo()
    agg._on_message(None, None, SimpleNamespace(**{**vars(message), "mid": 8}))  # the same id: set aside, not seen
    assert agg.stats.frames == 1 and agg._acks == [(7, 1), (8, 1)]

    def full(*args, **kw):
        raise sqlite3.OperationalError("database or disk is full")
    monkeypatch.setattr(agg, "_frame", full)
    with pytest.raises(sqlite3.OperationalError):
        agg._on_message(None, None, SimpleNamespace(**{**vars(message), "mid": 9,
                                                        "payload": message.payload.replace(b"hill:1", b"hill:2")}))
    assert agg._acks == [(7, 1), (8, 1)] and agg.stats.dead_letters == 1
    agg.store.commit()
    with sqlite3.connect(tmp_path / "g.db") as c:
        rows = c.execute("SELECT topic, reason, size, head FROM dead_letters").fetchall()
    assert rows == [(message.topic, "KeyError: 'a field nobody foresaw'", len(message.payload), message.payload)]
    agg.store.close()


def test_the_dead_letters_keep_the_newest_and_a_bounded_head(tmp_path):
    store = Store(tmp_path / "g.db")
    for n in range(DEAD_LETTERS_KEPT + 50):
        store.add_dead_letter("stratoecho/SE1/frames/evil", f"bug {n}", b"x" * 10_000)
    store.commit()
    with sqlite3.connect(tmp_path / "g.db") as c:
        count, longest = c.execute("SELECT count(*), max(length(head)) FROM dead_letters").fetchone()
        kept = {r[0] for r in c.execute("SELECT reason FROM dead_letters")}
    assert count == DEAD_LETTERS_KEPT and longest == DEAD_LETTER_HEAD
    assert "bug 49" not in kept and {"bug 50", f"bug {DEAD_LETTERS_KEPT + 49}"} <= kept  # the oldest 50 gone
    store.close()
