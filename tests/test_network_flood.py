"""One hostile station with a valid login floods the aggregator (issue 31): its flood must cost
only its own claims, its own rate and its own quota, and the honest stations' flight is stored
whole. The aggregator is fed message by message (`Aggregator._handle`, what its MQTT callback
calls), on a clock the test moves, so the flood runs in a second; the broker's part (who may
publish under which name) is tests/test_network_trust.py's.

The pure bookkeeping (groundstation/station_limits.py) is checked on its own below.
"""

from __future__ import annotations

import json
import random
import sqlite3
from contextlib import closing

import pytest
from structlog.testing import capture_logs

from groundstation.frame_quota import bytes_by_sql
from groundstation.network import Aggregator, format_aggregate_summary
from groundstation.station_limits import (
    ByteQuota,
    PendingClaims,
    PerStationSeen,
    StationGate,
    StationLimits,
    Throttled,
    TokenBucket,
)
from groundstation.store import utc_now
from tests.fakes import AUTH
from tests.test_network import db_keys, decode_all, flight_frames

AT = utc_now()  # when each station says it heard its frames: within the aggregator's window of its own clock


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def frame_message(station: str, n: int, data: bytes) -> tuple[str, bytes]:
    body = {"v": 1, "id": f"{station}-session:{n}", "station": station, "received_at": AT, "hex": data.hex(),
            "rssi_dbm": -100.0, "snr_db": 5.0}
    return f"stratoecho/SE1/frames/{station}", json.dumps(body).encode()


def junk(rng: random.Random) -> bytes:
    return rng.randbytes(rng.randint(40, 120))


def fly_under_flood(agg: Aggregator, clock: Clock, flood_per_frame: int, seconds_per_frame: float = 0.5) -> int:
    """hill hears the flight, then harbour (its link came back later); `evil` publishes
    `flood_per_frame` junk frames for each honest one throughout. Returns the junk sent."""
    rng = random.Random(31)
    frames = flight_frames()
    sent = 0
    for station in ("hill", "harbour"):
        for n, f in enumerate(frames):
            clock.t += seconds_per_frame
            agg._handle(*frame_message(station, n, f))
            for _ in range(flood_per_frame):
                clock.t += seconds_per_frame / (flood_per_frame + 1) / 10  # all within a tenth of the gap
                agg._handle(*frame_message("evil", sent, junk(rng)))
                sent += 1
    agg.store.commit()
    return sent


def stored_by_station(db) -> dict[str, int]:
    with sqlite3.connect(db) as c:
        return dict(c.execute("SELECT station, count(*) FROM frames GROUP BY station"))


def bytes_by_station(db) -> dict[str, int]:
    with sqlite3.connect(db) as c:
        return dict(c.execute(bytes_by_sql("station")))


BIGGEST_JUNK_ROW = 2 * 120 + 400  # a junk frame's row at most, as counted (its hex, text columns, its page's share)


def test_a_flood_from_one_login_does_not_push_out_the_honest_flight(tmp_path):
    """The issue's failure, scaled: pending memory of 2,000 and 50 junk frames for every honest
    one (15,000 in all). Before the limits, the junk pushed hill's claims out of the aggregator's
    memory before harbour's copies came, and nothing of the flight was stored."""
    db = tmp_path / "flight.db"
    agg = Aggregator("127.0.0.1", 1, db, downlink=AUTH, remember=2000)  # never connects: fed directly
    rng = random.Random(31)
    frames = flight_frames()
    for station in ("hill", "harbour"):
        for n, f in enumerate(frames):
            agg._handle(*frame_message(station, n, f))
            for k in range(50):
                agg._handle(*frame_message("evil", f"{station}{n}.{k}", junk(rng)))
    agg.store.commit()
    records, telemetry = db_keys(db)
    agg.store.close()
    assert set(records + telemetry) == decode_all(frames)
    assert len(telemetry) == 60 and len(records) == 20


def test_rate_pending_and_quota_bound_the_flood_and_the_flight_is_whole(tmp_path):
    db = tmp_path / "flight.db"
    clock = Clock()
    limits = StationLimits(rate_frames_s=20.0, burst_frames=500, pending_per_station=300, pending_total=1000,
                           quota_bytes=120_000, warn_every_s=60.0)
    agg = Aggregator("127.0.0.1", 1, db, downlink=AUTH, limits=limits, clock=clock)
    frames = flight_frames()
    with capture_logs() as logs:
        sent = fly_under_flood(agg, clock, flood_per_frame=100)  # 200 junk frames a second, 10 x the rate
    records, telemetry = db_keys(db)
    s = agg.stats
    summary = format_aggregate_summary(agg)
    agg.store.close()

    assert set(records + telemetry) == decode_all(frames)  # the honest flight, whole
    assert len(telemetry) == 60 and len(records) == 20
    stored = stored_by_station(db)
    assert stored["hill"] == stored["harbour"] == len(frames)  # every honest frame kept
    used = bytes_by_station(db)["evil"]
    assert 120_000 - BIGGEST_JUNK_ROW < used <= 120_000  # the quota, and no more
    # Over its rate: only the burst and 20 a second got past; the rest was dropped, never stored.
    duration = clock.t - 1000.0
    assert sent > 5 * (500 + 20 * duration)
    assert 500 + 20 * (duration - 1) <= sent - s.rate_dropped <= 500 + 20 * duration  # the first junk came 0.5 s in
    assert agg.gate.rate_dropped == {"evil": s.rate_dropped}
    assert s.over_quota == agg.gate.over_quota["evil"] == sent - s.rate_dropped - stored["evil"]
    assert agg._held.held_by("evil") <= 300 and len(agg._held) <= 1000
    assert "hill" not in agg._held.evicted and "harbour" not in agg._held.evicted
    # Warned, but not once a frame: the first time, then once a minute of the test's clock.
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert {e["station"] for e in warnings} == {"evil"}
    assert 2 <= len(warnings) <= 2 * (duration / 60 + 1)
    assert "limits:" in summary and "evil" in summary


def test_the_quota_counts_what_the_database_already_holds(tmp_path):
    db = tmp_path / "flight.db"
    limits = StationLimits(quota_bytes=4000)  # ten junk rows or so
    agg = Aggregator("127.0.0.1", 1, db, downlink=AUTH, limits=limits, clock=Clock())
    rng = random.Random(1)
    for n in range(6):
        agg._handle(*frame_message("evil", n, junk(rng)))
    agg.store.commit()
    agg.store.close()
    assert agg.stats.over_quota == 0
    again = Aggregator("127.0.0.1", 1, db, downlink=AUTH, limits=limits, clock=Clock())  # a restart
    assert again.gate.stored.used == bytes_by_station(db)  # counted from the database
    for n in range(6, 40):
        again._handle(*frame_message("evil", n, junk(rng)))
    again.store.commit()
    again.store.close()
    assert 4000 - BIGGEST_JUNK_ROW < bytes_by_station(db)["evil"] <= 4000
    assert again.stats.over_quota == 40 - stored_by_station(db)["evil"] > 0


def test_the_total_quota_holds_against_many_logins_and_vouched_frames_still_decode(tmp_path):
    """Ten logins flood together, each under its own share: the total stops them all. The honest
    flight's tagged frames, arriving past the total, are stored all the same (nothing the flight
    signed is refused by a quota), and decode into records."""
    db = tmp_path / "flight.db"
    limits = StationLimits(quota_bytes=3000, quota_total_bytes=10_000)
    agg = Aggregator("127.0.0.1", 1, db, downlink=AUTH, limits=limits, clock=Clock())
    rng = random.Random(3)
    for n in range(20):
        for k in range(10):
            agg._handle(*frame_message(f"evil{k}", n, junk(rng)))
    frames = flight_frames()
    for n, f in enumerate(frames):
        agg._handle(*frame_message("hill", n, f))
    agg.store.commit()
    records, _telemetry = db_keys(db)
    agg.store.close()
    used = bytes_by_station(db)
    flood = {k: v for k, v in used.items() if k != "hill"}
    assert 10_000 - BIGGEST_JUNK_ROW < sum(flood.values()) <= 10_000 and max(flood.values()) <= 3000
    assert len(records) == 20  # every record from tagged fragments
    assert agg.gate.over_quota.get("hill", 0) == 0 and used["hill"] > 0  # each of the flight's frames stored
    with closing(sqlite3.connect(db)) as c:
        assert c.execute("SELECT count(*) FROM frames WHERE station = 'hill'").fetchone()[0] == len(frames)


# --------------------------------------------------------------------------- the pure bookkeeping

def test_token_bucket_starts_full_and_refills_at_its_rate():
    b = TokenBucket(rate=2.0, burst=3, now=0.0)
    assert [b.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert b.take(0.5) and not b.take(0.5)  # one token a half second
    assert [b.take(100.0) for _ in range(4)] == [True, True, True, False]  # never more than the burst


def test_pending_claims_evict_the_flooding_station_first():
    p = PendingClaims(per_station=5, total=8)
    for i in range(3):
        p.claim(b"h%d" % i, "hill", AT)
    for i in range(100):
        p.claim(b"j%d" % i, "evil", AT)
    assert p.held_by("hill") == 3 and p.held_by("evil") == 5 and len(p) == 8
    assert p.evicted == {"evil": 95}
    assert p.claim(b"h0", "harbour", AT) == {"hill": AT, "harbour": AT}  # corroborated: two claims
    assert len(p) == 8 and p.held_by("evil") == 4  # harbour's claim took the largest station's oldest
    assert p.pop(b"h0") == {"hill": AT, "harbour": AT}
    assert b"h0" not in p and p.held_by("hill") == 2 and p.held_by("harbour") == 0 and len(p) == 6
    assert p.pop(b"nothing") == {}


def test_seen_ids_are_forgotten_per_station():
    seen = PerStationSeen(limit=3)
    seen.add(("hill", "a"))
    for i in range(100):
        seen.add(("evil", str(i)))
    assert ("hill", "a") in seen and ("evil", "99") in seen and ("evil", "0") not in seen


def test_gate_counts_drops_and_quota_per_station():
    g = StationGate(StationLimits(rate_frames_s=1.0, burst_frames=2, quota_bytes=300, quota_total_bytes=500),
                    stored={"hill": 200})
    assert [g.admit("evil", 0.0) for _ in range(3)] == [True, True, False]
    assert g.admit("hill", 0.0)  # its own bucket
    assert g.rate_dropped == {"evil": 1}
    assert [g.may_store("hill", 60) for _ in range(3)] == [True, False, False]  # 260, then 320 > 300
    assert g.may_store("hill", 40)  # exactly its share
    assert [g.may_store("evil", 150) for _ in range(2)] == [True, False]  # 450, then 600 > the total
    assert g.stored.used == {"hill": 300, "evil": 150} and g.stored.total_used == 450
    assert g.over_quota == {"hill": 2, "evil": 1}


def test_byte_quota_counts_per_key_and_in_all():
    q = ByteQuota(per_key=100, total=150, used={"a": 90})
    assert q.take("a", 10) and not q.take("a", 1)
    assert q.take("b", 50) and not q.take("c", 1)  # the total is full
    assert q.used == {"a": 100, "b": 50} and q.total_used == 150
    q.add("c", 7)  # counted whatever the quota (what is stored anyway)
    assert q.total_used == 157 and not q.fits("d", 0) and q.fits("d", -7)


def test_throttled_warns_once_per_interval_with_the_count():
    t = Throttled(every_s=60.0)
    assert t.due("k", 0.0) == 1
    assert [t.due("k", x) for x in (1.0, 2.0, 59.0)] == [None, None, None]
    assert t.due("k", 61.0) == 4 and t.due("other", 61.0) == 1


@pytest.mark.parametrize("bad", [dict(rate_frames_s=0), dict(burst_frames=0), dict(pending_per_station=0),
                                 dict(pending_total=0), dict(quota_bytes=-1),
                                 dict(quota_bytes=10, quota_total_bytes=9), dict(max_age_s=0),
                                 dict(clock_ahead_s=-1)])
def test_limits_refuse_nonsense(bad):
    with pytest.raises(ValueError):
        StationLimits(**bad)


def test_the_flood_bench_rows():
    from sim.bench.measure.aggregator_flood import rows

    got = {name: value for name, value, _unit, _note in rows(junk=3000)}
    assert got["aggregator under a flood: honest flight stored"] == "60 + 20"
    assert got["aggregator under a flood: junk stored"] == "3,000"  # under the burst: all taken, under the quota


def test_the_storage_bench_rows():
    """`make bench`'s flood through a real mosquitto, scaled: the database ends within its cap."""
    from sim.bench.measure.aggregator_flood import MOSQUITTO, storage_rows

    if not MOSQUITTO.exists():
        pytest.skip(f"{MOSQUITTO} is not installed")
    got = {name: (value, note) for name, value, _unit, note in storage_rows(0.2, 0.5, stations=5, messages=200)}
    value, note = got["aggregator under a flood through mosquitto: database after"]
    assert float(value) <= 0.5 * 1.02 + 0.1 and "cap 0.5 MB in all (0.2 a station)" in note
    assert got["aggregator under a flood through mosquitto: messages"][0] == "1,000"


# --------------------------------------------------------------------------- through a real broker

def test_a_flood_through_the_broker_from_a_valid_login(tmp_path):
    """The issue's run, scaled to seconds: mosquitto with TLS, a password per station and the ACL;
    hill publishes the flight, evil (a valid login) 6,000 junk frames as fast as the broker takes
    them, then harbour the flight. The aggregator remembers 1,000 claims in all."""
    from pathlib import Path

    from groundstation.network import StationPublisher
    from groundstation.store import utc_now
    from tests.test_network import MOSQUITTO, Running
    from tests.test_network_trust import OPENSSL, PASSWD, SecureBroker, hostile_client

    for tool, path in (("mosquitto", MOSQUITTO), ("openssl", OPENSSL), ("mosquitto_passwd", PASSWD)):
        if not path or not Path(path).exists():
            pytest.skip(f"{tool} is not installed")
    broker = SecureBroker(tmp_path)
    with broker.conf.open("a") as conf:
        conf.write("max_queued_messages 100000\n")  # as docs/ground.md asks: the flood waits, not dropped
    broker.start()
    try:
        db = tmp_path / "flight.db"
        run = Running(broker, db, auth=broker.auth("aggregator"), remember=1000,
                      limits=StationLimits(quota_bytes=600_000))
        run.wait_subscribed()
        frames = flight_frames()

        def relay(name: str) -> None:
            pub = StationPublisher("127.0.0.1", broker.port, name, auth=broker.auth(name))
            for f in frames:
                pub.publish_frame(f, utc_now())
            assert pub.flush(30), f"{name}: {pub.pending()} messages never acknowledged"
            pub.close()

        relay("hill")
        evil, rng, junk_n = hostile_client(broker), random.Random(5), 6000
        infos = [evil.publish("stratoecho/SE1/frames/evil", json.dumps(
            {"v": 1, "id": f"evil:{n}", "received_at": utc_now(), "hex": junk(rng).hex()}), qos=1)
            for n in range(junk_n)]
        infos[-1].wait_for_publish(60)
        relay("harbour")
        total = 2 * len(frames) + junk_n
        assert run.wait_for(lambda s: s.messages >= total, 60), run.agg.stats
        evil.disconnect()
        evil.loop_stop()
        run.finish()
    finally:
        broker.stop()
    records, telemetry = db_keys(db)
    assert set(records + telemetry) == decode_all(frames)
    assert len(telemetry) == 60 and len(records) == 20
    stored = stored_by_station(db)
    assert stored["hill"] == stored["harbour"] == len(frames) and 0 < stored["evil"] < junk_n
    assert 600_000 - BIGGEST_JUNK_ROW < bytes_by_station(db)["evil"] <= 600_000
