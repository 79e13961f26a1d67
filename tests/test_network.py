"""Stations sharing frames over a real MQTT broker (mosquitto), merged by one aggregator.

The flight is built with the payload's own wire functions: telemetry sentences and
musings/events cut into fragments with parity. Three stations each lose 40 % of it in
bursts (Gilbert-Elliott, independent seeds) and publish what they heard; the aggregate must
hold more than any of them alone, including records no single station could complete.
"""

from __future__ import annotations

import argparse
import getpass
import json
import random
import socket
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import ValidationError
from structlog.testing import capture_logs

from groundstation.link.decoder import FrameDecoder
from groundstation.network import (
    Aggregator,
    Reconnect,
    StationPublisher,
    add_publish_arguments,
    cli,
    cmd_aggregate,
    register_cli,
    status_topic,
)
from groundstation.network.settings import NetworkSection, publisher_from_config
from groundstation.station_limits import StationLimits
from groundstation.store import utc_now
from sim.channel.loss import GilbertElliott, LossSpec
from stratoecho import wire
from stratoecho.wire.events import event
from tests.fakes import AUTH

MOSQUITTO = "/usr/sbin/mosquitto"
FAST = Reconnect(initial_s=0.05, max_s=0.3, connect_timeout_s=2.0, keepalive_s=5)
CALLSIGN, BOOT = "SE1", 7


# --------------------------------------------------------------------------- a real broker

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """mosquitto on a free local port, with persistence (as the aggregator's docs ask)."""

    def __init__(self, folder: Path) -> None:
        self.port = _free_port()
        self.folder = folder
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
                             f"persistence true\npersistence_location {folder}/\n"
                             # started as root, mosquitto would drop to user mosquitto, who cannot
                             # write the persistence file in this test's folder
                             f"user {getpass.getuser()}\n")
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=open(self.folder / "mosquitto.log", "ab"))
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"mosquitto did not start: {(self.folder / 'mosquitto.log').read_text()}") from None
                time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: mosquitto saves its persistence file
            self.proc.wait(10)
        self.proc = None


@pytest.fixture
def broker(tmp_path):
    if not Path(MOSQUITTO).exists():
        pytest.skip(f"{MOSQUITTO} is not installed (Debian package mosquitto)")
    b = Broker(tmp_path)
    b.start()
    try:
        yield b
    finally:
        b.stop()


class Running:
    """An aggregator in its own thread."""

    def __init__(self, broker: Broker, db: Path, **kw) -> None:
        self.stop = threading.Event()
        self.agg = Aggregator("127.0.0.1", broker.port, db, **{"reconnect": FAST, "downlink": AUTH, **kw})
        self.thread = threading.Thread(target=self.agg.run, args=(self.stop,), daemon=True)
        self.thread.start()

    def wait_for(self, predicate, timeout_s: float = 15.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate(self.agg.stats):
                return True
            self.stop.wait(0.02)
        return predicate(self.agg.stats)

    def wait_subscribed(self) -> None:
        assert self.wait_for(lambda _s: self.agg._net.connects > 0), "aggregator never reached the broker"
        time.sleep(0.2)  # its SUBSCRIBE is on the way

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive()


# --------------------------------------------------------------------------- the flight

def flight_frames() -> list[bytes]:
    """60 telemetry sentences, and 20 musings and events in 2-3 data fragments plus 2 parity each."""
    rng = random.Random(11)
    frames: list[bytes] = []
    next_seq = Counter()
    for i in range(60):
        t = wire.Telemetry(CALLSIGN, i, f"10:{i // 6:02d}:{i % 6 * 10:02d}", 52.2 + i * 0.001, 0.12 + i * 0.002,
                           400 + i * 300, 9, 14.0 - i * 0.8, 1000.0 - i * 15, 3950 - i, BOOT)
        frames.append(wire.encode_sentence(t, AUTH))  # signed, as the payload keys it
        if i % 3 == 1:
            kind = wire.Kind.EVENT if i % 4 == 0 else wire.Kind.MUSING
            text = f"{kind.name.lower()} {next_seq[kind]}: " + "the clouds below are a slow grey sea. " * rng.randint(6, 18)
            content = event("store_fault", detail=text) if kind is wire.Kind.EVENT else text
            record = wire.Record(kind, BOOT, next_seq[kind], 1_700_000_000 + i * 30, content)
            next_seq[kind] += 1
            frames += wire.fragment_record(record, parity=2, auth=AUTH)
    return frames


def key_of(frame: bytes) -> tuple[str, int, int]:
    decoded = wire.decode_frame(frame, AUTH)
    return (decoded.kind.name.lower(), decoded.boot, decoded.seq)


def decode_all(frames: list[bytes]) -> set[tuple[str, int, int]]:
    decoder = FrameDecoder(auth=AUTH)
    out = set()
    for f in frames:
        if (record := decoder.feed(f).record) is not None:
            out.add((record.kind.name.lower(), record.boot, record.seq))
    return out


def db_keys(db: Path) -> tuple[list, list]:
    with sqlite3.connect(db) as c:
        records = c.execute("SELECT kind, boot, seq FROM records").fetchall()
        telemetry = [("telemetry", b, s) for b, s in c.execute("SELECT boot, seq FROM telemetry")]
    return records, telemetry


# --------------------------------------------------------------------------- tests

def test_three_lossy_stations_merge_into_more_than_any_alone(broker, tmp_path):
    frames = flight_frames()
    everything = {key_of(f) for f in frames}
    assert len(everything) == 80
    stations = {"hilltop": 7, "harbour": 107, "farm": 207}  # seeds: two records need two stations
    heard: dict[str, list[bytes]] = {}
    for name, seed in stations.items():
        channel = GilbertElliott(LossSpec(0.4), seed=seed)
        heard[name] = [f for f in frames if not channel.drop()]
        assert 0.3 < 1 - len(heard[name]) / len(frames) < 0.55
    alone = {name: decode_all(h) for name, h in heard.items()}
    union = decode_all([f for h in heard.values() for f in h])
    # Records nobody completed alone, though together they hold enough fragments.
    combined_only = union - set().union(*alone.values())
    assert combined_only, "the seeds must give at least one record only the union completes"

    db = tmp_path / "aggregate.db"
    run = Running(broker, db, trusted=stations)  # the club's own three: each one's frames count alone
    run.wait_subscribed()
    publishers = {name: StationPublisher("127.0.0.1", broker.port, name, reconnect=FAST) for name in stations}
    for i, (name, pub) in enumerate(publishers.items()):
        for f in heard[name]:
            pub.publish_frame(f, utc_now(), rssi_dbm=-100.0 - i, snr_db=5.0 + i, origin=f"serial /dev/tty{name}")
    for pub in publishers.values():
        assert pub.flush(15), f"{pub.station}: {pub.pending()} messages never acknowledged"
        assert pub.payload == CALLSIGN  # learned from the first sentence it heard
        pub.close()
    total = sum(len(h) for h in heard.values())
    assert run.wait_for(lambda s: s.frames >= total), f"aggregator stored {run.agg.stats.frames} of {total} frames"
    run.finish()
    stats = run.agg.stats

    records, telemetry = db_keys(db)
    got = records + telemetry
    assert len(got) == len(set(got)), "a record stored twice"
    assert set(got) == union
    missing = len(everything - set(got))
    for name, own in alone.items():
        assert missing < len(everything - own), f"{name} alone missed {len(everything - own)}, aggregate {missing}"

    with sqlite3.connect(db) as c:
        rows = c.execute("SELECT hex, station, rssi_dbm, snr_db, source, ok FROM frames").fetchall()
        heard_rows = c.execute("SELECT kind, boot, seq, station FROM heard").fetchall()
    # Every frame kept once per station that heard it, with its signal.
    assert Counter((r[0], r[1]) for r in rows) == Counter((f.hex(), n) for n, h in heard.items() for f in h)
    for i, name in enumerate(stations):
        signal = {(r[2], r[3], r[4]) for r in rows if r[1] == name}
        assert signal == {(-100.0 - i, 5.0 + i, f"mqtt serial /dev/tty{name}")}
    assert all(r[5] == 1 for r in rows)
    # Heard-by: exactly the stations that heard at least one frame of each stored record.
    expected_heard = {}
    for name, h in heard.items():
        for f in h:
            expected_heard.setdefault(key_of(f), set()).add(name)
    got_heard = {}
    for kind, b, s, name in heard_rows:
        got_heard.setdefault((kind, b, s), set()).add(name)
    assert got_heard == {key: expected_heard[key] for key in union}
    for key in combined_only:
        assert len(got_heard[key]) >= 2
    distinct = len({f for h in heard.values() for f in h})
    assert stats.duplicate_frames == total - distinct
    assert stats.repeats == 0 and not stats.bad_messages
    assert stats.records_new == len(union)


def test_broker_restart_loses_nothing_buffered(broker, tmp_path):
    frames = flight_frames()[:40]
    db = tmp_path / "aggregate.db"
    # The aggregator comes back after the station has re-sent everything: the broker must
    # have kept its session (subscriptions, and the messages queued for it) across the restart.
    run = Running(broker, db, reconnect=Reconnect(initial_s=1.5, max_s=3.0, connect_timeout_s=2.0, keepalive_s=5),
                  trusted=["hilltop"])
    run.wait_subscribed()
    pub = StationPublisher("127.0.0.1", broker.port, "hilltop", callsign_hint=CALLSIGN, reconnect=FAST)
    for f in frames[:10]:
        pub.publish_frame(f, utc_now())
    assert pub.flush(10)
    assert run.wait_for(lambda s: s.frames == 10)

    broker.stop()
    for f in frames[10:]:
        pub.publish_frame(f, utc_now())  # returns at once: the broker is away
    assert pub.pending() == 30
    broker.start()  # the same port, its persistence file kept the aggregator's session

    assert pub.flush(20), f"{pub.pending()} messages still waiting after the broker came back"
    assert run.agg._net.connects == 1, "the aggregator was back before the station had published"
    assert run.wait_for(lambda s: s.frames >= 40), f"aggregator stored {run.agg.stats.frames} of 40"
    stats = pub.snapshot()
    pub.close()
    run.finish()
    assert stats.dropped == 0 and stats.published == 40 and stats.connects >= 2
    with sqlite3.connect(db) as c:
        stored = Counter(r[0] for r in c.execute("SELECT hex FROM frames"))
    assert stored == Counter(f.hex() for f in frames)  # each once: nothing lost, nothing doubled
    records, telemetry = db_keys(db)
    assert set(records + telemetry) == decode_all(frames)


def test_aggregator_counts_hostile_messages_and_keeps_going(broker, tmp_path):
    db = tmp_path / "aggregate.db"
    run = Running(broker, db)
    run.wait_subscribed()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="hostile")
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    topic = "stratoecho/SE1/frames/evil"
    sentence = wire.encode_sentence(wire.Telemetry(CALLSIGN, 3, "10:00:30", 52.0, 0.1, 900, 8, 12.0, 990.0, 3900, BOOT))
    good = {"v": 1, "id": "s:1", "station": "evil", "received_at": utc_now(),
            "hex": sentence.hex(), "rssi_dbm": "loud", "snr_db": None}
    messages = [
        b"\xff\xfe not json",
        b"[1, 2]",
        json.dumps({**good, "v": 2, "id": "s:2"}).encode(),
        json.dumps({**good, "id": "s:3", "hex": "zz"}).encode(),
        json.dumps({**good, "id": "s:4", "hex": "ec00ff"}).encode(),  # hex, but no frame: stored as bad
        json.dumps(good).encode(),
        json.dumps(good).encode(),  # delivered again
        json.dumps({**good, "id": "s:5", "received_at": "yesterday"}).encode(),  # same bytes, no time: refused
        json.dumps({**good, "id": "s:6"}).encode(),  # same bytes, another message
    ]
    for m in messages:
        client.publish(topic, m, qos=1).wait_for_publish(5)
    record = wire.Record(wire.Kind.EVENT, BOOT, 9, 1_714_557_600, event("store_fault", detail="cut down")).as_dict()
    shared = [{"v": 1, "id": "r:1", "received_at": utc_now(), "record": record},
              {"v": 1, "id": "r:2", "record": {**record, "kind": "x"}},
              {"v": 1, "id": "r:3", "record": {**record, "seq": 10, "fields": {"detail": 5}}}]  # not text
    with capture_logs() as logs:
        for m in shared:
            client.publish("stratoecho/SE1/records/evil", json.dumps(m), qos=1).wait_for_publish(5)
        client.disconnect()
        client.loop_stop()
        assert run.wait_for(lambda s: s.messages >= len(messages) + len(shared))
    run.finish()
    stats = run.agg.stats
    assert stats.bad_messages == Counter({"not json": 2, "unknown version": 1, "bad hex": 1, "bad date": 1,
                                          "decoded record refused": 3})
    # refused quietly: the one warning is for the time s:5 gave, if it fell inside the capture
    assert stats.refused_records == 3 and not [e for e in logs if e["log_level"] == "warning" and "field" not in e]
    assert stats.repeats == 1 and stats.frames == 3 and stats.duplicate_frames == 1
    assert stats.held_frames == 3 and stats.vouched_frames == 0  # one untrusted station: claims, nothing more
    with sqlite3.connect(db) as c:
        rows = c.execute("SELECT ok, error, rssi_dbm, received_at, station FROM frames ORDER BY id").fetchall()
        heard = c.execute("SELECT kind, seq, station FROM heard ORDER BY kind").fetchall()
        texts = c.execute("SELECT text FROM records").fetchall()
        telemetry = c.execute("SELECT count(*) FROM telemetry").fetchone()[0]
    # its frames are kept as its claims, checked, attributed to it
    assert [r[0] for r in rows] == [0, 1, 1] and rows[0][1] is not None and {r[4] for r in rows} == {"evil"}
    assert rows[1][2] is None  # "loud" is not a signal level
    assert rows[1][3] == rows[2][3] == good["received_at"]
    # and nothing of them, nor of its decoded records, is in the flight
    assert heard == [] and texts == [] and telemetry == 0


def test_records_a_station_decoded_are_refused_even_from_a_trusted_station(broker, tmp_path):
    at = "2024-05-01T12:00:00.000+00:00"
    shared = [wire.Telemetry(CALLSIGN, 4, "12:00:00", 52.0, 0.1, 900, 8, float("nan"), 990.0, 0, BOOT),
              wire.Record(wire.Kind.MUSING, BOOT, 1, 1_714_564_800, "a thought\nover two lines"),
              wire.Record(wire.Kind.EVENT, BOOT, 1, 1_714_564_800, event("phase", before="ascent", after="float",
                                                                            alt_m=30120))]
    run = Running(broker, tmp_path / "aggregate.db", trusted=["hilltop"])
    run.wait_subscribed()
    pub = StationPublisher("127.0.0.1", broker.port, "hilltop", reconnect=FAST)
    for record in shared:
        pub.publish_record(record, at)
    assert pub.flush(10) and pub.payload == CALLSIGN  # learned from the sentence
    pub.close()
    assert run.wait_for(lambda s: s.refused_records == len(shared))
    run.finish()
    with sqlite3.connect(tmp_path / "aggregate.db") as c:
        assert c.execute("SELECT count(*) FROM records").fetchone()[0] == 0
        assert c.execute("SELECT count(*) FROM telemetry").fetchone()[0] == 0


def test_status_is_retained_online_then_offline(broker):
    seen: list[tuple[str, str, bool]] = []
    got = threading.Event()

    def on_message(client, userdata, message):
        seen.append((message.topic, message.payload.decode(), bool(message.retain)))
        got.set()

    def watch() -> mqtt.Client:
        c = mqtt.Client(CallbackAPIVersion.VERSION2)
        c.on_message = on_message
        c.connect("127.0.0.1", broker.port)
        c.subscribe("stratoecho/status/+", qos=1)
        c.loop_start()
        return c

    watcher = watch()
    pub = StationPublisher("127.0.0.1", broker.port, "farm", reconnect=FAST)
    assert got.wait(10)
    assert seen[-1][:2] == (status_topic("stratoecho", "farm"), "online")
    got.clear()
    pub.close()
    assert got.wait(10)
    assert seen[-1][:2] == ("stratoecho/status/farm", "offline")
    watcher.disconnect()
    watcher.loop_stop()
    seen.clear()
    got.clear()
    late = watch()  # someone who comes later learns the station's state from the retained message
    assert got.wait(10)
    late.disconnect()
    late.loop_stop()
    assert seen == [("stratoecho/status/farm", "offline", True)]


def test_full_buffer_drops_oldest_and_close_does_not_wait_for_a_missing_broker():
    port = _free_port()  # nothing listens there
    pub = StationPublisher("127.0.0.1", port, "hilltop", buffer_messages=5,
                           reconnect=Reconnect(initial_s=5.0, max_s=30.0, connect_timeout_s=1.0))
    start = time.monotonic()
    for f in flight_frames()[:8]:
        pub.publish_frame(f, utc_now())
    assert time.monotonic() - start < 1.0
    stats = pub.snapshot()
    assert (stats.queued, stats.dropped, stats.pending, stats.published) == (8, 3, 5, 0)
    start = time.monotonic()
    pub.close(timeout_s=0.5)
    assert time.monotonic() - start < 2.5  # not the 5 s back-off it was sleeping
    assert not pub._thread.is_alive()


def test_station_and_prefix_must_be_topic_levels():
    for bad in ("", "a/b", "ground+", "#"):
        with pytest.raises(ValueError, match="topic level"):
            StationPublisher("127.0.0.1", 1, bad)
    with pytest.raises(ValueError, match="topic prefix"):
        StationPublisher("127.0.0.1", 1, "ok", topic_prefix="strato/#")


def test_cli_aggregate_and_listen_options(tmp_path, capsys, broker, monkeypatch):
    parser = argparse.ArgumentParser(prog="python -m groundstation")
    sub = parser.add_subparsers(dest="command", required=True)
    register_cli(sub)
    with pytest.raises(SystemExit) as e:
        parser.parse_args(["aggregate", "--broker", "nowhere", "--db", "x.db"])
    assert e.value.code == 2
    assert "is not HOST:PORT" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args(["aggregate", "--help"])
    assert "--broker HOST:PORT" in capsys.readouterr().out

    db = tmp_path / "agg.db"
    args = parser.parse_args(["aggregate", "--broker", f"127.0.0.1:{broker.port}", "--db", str(db), "--duration", "0.3",
                              "--trust", "hill", "--quorum", "3"])
    assert (args.trust, args.quorum) == (["hill"], 3)
    assert args.func(args) == 0
    err = capsys.readouterr().err
    assert db.exists() and "aggregate: 0 messages" in err and "(quorum 3, trusted hill)" in err
    for bad, message in ((["--quorum", "0"], "--quorum: 1 station or more"),
                         (["--password-file", str(tmp_path / "nope")], "cannot read the broker password"),
                         (["--ca", str(tmp_path / "nope.crt")], "no such certificate file"),
                         (["--station-rate", "0"], "--station-rate: a positive number of frames a second, got 0"),
                         (["--station-rate", "nan"], "--station-rate: a positive number"),
                         (["--station-burst", "0"], "--station-burst: 1 frame or more, got 0"),
                         (["--station-quota-mb", "-1"], "--station-quota-mb: 0 MB or more, got -1"),
                         (["--station-quota-mb", "nan"], "--station-quota-mb: 0 MB or more"),
                         (["--station-quota-mb", "50", "--quota-total-mb", "40"],
                          "--quota-total-mb 40 is below --station-quota-mb 50"),
                         (["--station-pending", "500", "--pending-total", "400"],
                          "--pending-total 400 is below --station-pending 500"),
                         (["--max-age-h", "0"], "--max-age-h: more than 0 hours, got 0")):
        args = parser.parse_args(["aggregate", "--broker", "127.0.0.1:1", "--db", str(db), *bad])
        assert cmd_aggregate(args) == 2 and message in capsys.readouterr().err
    # the limits given reach the aggregator, its memory sized for a total above the default
    made = {}

    class Recorded(cli.Aggregator):
        def __init__(self, *a, **kw):
            made.update(kw)
            super().__init__(*a, **kw)

    monkeypatch.setattr(cli, "Aggregator", Recorded)
    args = parser.parse_args(["aggregate", "--broker", f"127.0.0.1:{broker.port}", "--db", str(db), "--duration", "0.2",
                              "--station-rate", "50", "--station-burst", "900", "--station-pending", "30000",
                              "--pending-total", "250000", "--station-quota-mb", "7.5", "--quota-total-mb", "20",
                              "--max-age-h", "72"])
    assert cmd_aggregate(args) == 0
    capsys.readouterr()
    assert made["limits"] == StationLimits(rate_frames_s=50.0, burst_frames=900, pending_per_station=30_000,
                                           pending_total=250_000, quota_bytes=7_500_000,
                                           quota_total_bytes=20_000_000, max_age_s=72 * 3600)
    assert made["remember"] == 250_000
    (tmp_path / "not.db").write_text("not a database at all, just text " * 40)
    args = parser.parse_args(["aggregate", "--broker", "127.0.0.1:1", "--db", str(tmp_path / "not.db")])
    assert cmd_aggregate(args) == 1

    listen = argparse.ArgumentParser()
    add_publish_arguments(listen)
    assert publisher_from_config(NetworkSection(), "hill", None, None) is None
    with pytest.raises(SystemExit):
        listen.parse_args(["--mqtt", "127.0.0.1:1883", "--station", "a/b"])
    with pytest.raises(ValidationError, match="topic prefix level"):
        NetworkSection(prefix="a/#")
    pub = publisher_from_config(NetworkSection(broker=f"127.0.0.1:{broker.port}"), "hill", None, None)
    try:
        assert (pub.station, pub.prefix, pub.payload) == ("hill", "stratoecho", "unknown")
    finally:
        pub.close()


def test_a_replay_published_to_the_broker_arrives_whole_and_a_missing_broker_fails_the_command(
        broker, tmp_path, capsys, monkeypatch):
    """`listen --replay FILE --mqtt` queues the whole file before its publisher has connected: at
    the end it must still connect and drain (it used to give up at once, exit 0 and deliver none)."""
    from groundstation import __main__ as ground
    from groundstation import assembly

    frames = flight_frames()
    air = tmp_path / "air.hex"
    air.write_text("".join(f.hex() + "\n" for f in frames))
    agg = Running(broker, tmp_path / "agg.db")
    agg.wait_subscribed()
    try:
        rc = ground.main(["listen", "--replay", str(air), "--db", str(tmp_path / "g.db"), "--quiet",
                          "--mqtt", f"127.0.0.1:{broker.port}", "--station", "replay"])
        assert rc == 0, capsys.readouterr().err
        assert agg.wait_for(lambda s: s.messages >= len(frames)), agg.agg.stats
    finally:
        agg.finish()
    monkeypatch.setattr(assembly, "REPLAY_DRAIN_S", 0.5)
    rc = ground.main(["listen", "--replay", str(air), "--db", str(tmp_path / "g2.db"), "--quiet",
                      "--mqtt", f"127.0.0.1:{_free_port()}", "--station", "replay"])
    assert rc == 1 and "messages never reached the broker" in capsys.readouterr().err


def test_close_still_connects_and_drains_what_was_queued_before_the_broker_answered(broker, tmp_path):
    """The interleaving a replay makes: everything queued and close() called while the broker has
    not answered yet. close() must keep trying until its deadline, not give up at once."""
    broker.stop()
    pub = StationPublisher("127.0.0.1", broker.port, "late", reconnect=FAST)
    for f in flight_frames()[:20]:
        pub.publish_frame(f)
    left: list[int] = []
    closer = threading.Thread(target=lambda: left.append(pub.close(timeout_s=20)))
    closer.start()
    while not pub._closing.is_set():  # close() has begun: only now may the broker answer
        time.sleep(0.01)
    broker.start()
    agg = Running(broker, tmp_path / "agg.db")
    agg.wait_subscribed()
    try:
        closer.join(30)
        assert left == [0]
        assert agg.wait_for(lambda s: s.messages >= 20), agg.agg.stats
    finally:
        agg.finish()
