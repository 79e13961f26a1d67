"""The radio path between payload and ground stations (sim/channel/radio.py), and the bench
relay built on it (sim/bench/run/relay.py) run in-process over loopback UDP."""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from collections import Counter

import pytest

from sim.__main__ import build_parser
from sim.bench.run.relay import Channel, WorldClock
from sim.channel.loss import GilbertElliott, LossSpec
from sim.channel.radio import (
    ChannelConfig,
    GroundStation,
    LoRaMode,
    RadioChannel,
    flip_bits,
    fspl_db,
    ground_distance_km,
    link_state,
    loss_probability,
    radio_horizon_km,
)
from tests.fakes import wait_for

HOME = GroundStation("home", 52.7, -2.75, 20.0)
SLOW = LoRaMode(11, 20_800, 8)  # docs/figures.md's long-range telemetry mode


def east_of(station: GroundStation, km: float, alt_m: float) -> tuple[float, float, float]:
    """A point `km` along the parallel-ish great circle due east (small error: fine for tests)."""
    lat = math.radians(station.lat)
    ang = km / 6371.0
    lat2 = math.asin(math.sin(lat) * math.cos(ang))
    lon2 = math.radians(station.lon) + math.atan2(math.sin(ang) * math.cos(lat), math.cos(ang) - math.sin(lat) * math.sin(lat2))
    return math.degrees(lat2), math.degrees(lon2), alt_m


def fixed(pos):
    return lambda t: pos


def moving_east(station, km_per_s, alt_m):
    return lambda t: east_of(station, max(t, 0.0) * km_per_s, alt_m)


# --------------------------------------------------------------------------- geometry and budget


def test_link_budget_matches_the_field_figures():
    # docs/figures.md: ~142 dB over 700 km; SF11/20.8 kHz keeps ~10 dB at a 30 km balloon's horizon (~714 km).
    assert fspl_db(700, 434) == pytest.approx(142, abs=0.5)
    assert radio_horizon_km(30_000, 0) == pytest.approx(714, abs=2)
    cfg = ChannelConfig(lora=SLOW)
    link = link_state(GroundStation("g", 52.0, 0.0, 0.0), east_of(GroundStation("g", 52.0, 0.0), 700, 30_000), cfg)
    assert not link.beyond_horizon
    assert link.margin_db == pytest.approx(10, abs=1.0)
    assert link.p_loss < 1e-3
    # The fast bench mode runs out at a few hundred km.
    fast = link_state(GroundStation("g", 52.0, 0.0), east_of(GroundStation("g", 52.0, 0.0), 700, 30_000), ChannelConfig())
    assert fast.margin_db < 0 and fast.p_loss > 0.5


def test_geometry_distance_elevation_and_horizon():
    overhead = link_state(HOME, (HOME.lat, HOME.lon, 30_000), ChannelConfig())
    assert overhead.ground_km == pytest.approx(0, abs=1e-6)
    assert overhead.distance_km == pytest.approx(29.98, abs=0.01)
    assert overhead.elevation_deg == pytest.approx(90, abs=0.01)
    assert ground_distance_km(0, 0, 0, 1) == pytest.approx(111.19, abs=0.01)
    near = link_state(HOME, east_of(HOME, 100, 30_000), ChannelConfig())
    far = link_state(HOME, east_of(HOME, 600, 30_000), ChannelConfig())
    assert near.ground_km == pytest.approx(100, rel=1e-3)
    assert 0 < far.elevation_deg < near.elevation_deg < 17  # atan(30/100) less the Earth's curve
    assert far.distance_km > far.ground_km  # slant is longer than the surface path
    past = link_state(HOME, east_of(HOME, 740, 30_000), ChannelConfig(lora=SLOW))
    assert past.beyond_horizon and past.p_loss == 1.0 and past.elevation_deg < 0
    low = link_state(HOME, east_of(HOME, 70, 100), ChannelConfig())  # low down, past 4.12·(√20+√100) ≈ 60 km
    assert low.beyond_horizon


def test_loss_curve_is_smooth_around_zero_margin():
    assert loss_probability(0) == pytest.approx(0.5)
    assert loss_probability(3) < 0.05 < 0.95 < loss_probability(-3)
    assert loss_probability(10) < 1e-4 and loss_probability(1e4) == 0.0 and loss_probability(-1e4) == 1.0
    steps = [loss_probability(m / 2) for m in range(-20, 21)]
    assert all(a > b for a, b in zip(steps, steps[1:]))
    assert max(a - b for a, b in zip(steps, steps[1:])) < 0.15  # no cliff


def test_loss_rises_towards_the_horizon():
    # Fly away at 30 km: near the station nothing is lost; near the horizon most is.
    ch = RadioChannel([HOME], moving_east(HOME, 1.0, 30_000), ChannelConfig(lora=SLOW), seed=3)
    delivered = Counter()
    for t in range(0, 800):
        if ch.downlink(b"x" * 40, float(t)):
            delivered[t // 100] += 1
    assert delivered[0] == delivered[1] == 100
    assert delivered[7] < 40  # the horizon is 4.12·(√20 + √30000) ≈ 732 km away
    s = ch.stats[0].downlink
    assert 60 < s.lost_by["horizon"] < 70 and s.lost_by["burst"] == 0
    assert s.in_ == 800 == s.delivered + s.lost


# --------------------------------------------------------------------------- impairments


def test_no_path_loss_leaves_exactly_the_gilbert_elliott_pattern():
    spec = LossSpec(0.3, burst=5)
    far = east_of(HOME, 5000, 10)  # far past the horizon: would lose everything with path loss
    ch = RadioChannel([HOME], fixed(far), ChannelConfig(loss=spec, path_loss=False), seed=11)
    got = [bool(ch.downlink(bytes([i % 256]), float(i))) for i in range(2000)]
    model = GilbertElliott(spec, 11)
    assert got == [not model.drop() for _ in range(2000)]
    assert ch.stats[0].downlink.lost_by["burst"] == got.count(False)
    assert 0.25 < got.count(False) / 2000 < 0.35
    runs, run = [], 0
    for ok in got:
        if not ok:
            run += 1
        elif run:
            runs.append(run)
            run = 0
    assert 3.5 < sum(runs) / len(runs) < 6.5  # bursts, not independent losses


def test_bit_errors_flip_bits_at_the_configured_rate():
    import random

    frame = bytes(range(256)) * 4
    body, n = flip_bits(frame, 0.01, random.Random(1))
    diff = sum(bin(a ^ b).count("1") for a, b in zip(frame, body))
    assert diff == n and 50 < n < 115  # 8192 bits at 1 %: 82 expected
    assert flip_bits(frame, 0.0, random.Random(1)) == (frame, 0)
    ch = RadioChannel([HOME], fixed((HOME.lat, HOME.lon, 1000)), ChannelConfig(ber=1e-3, path_loss=False), seed=2)
    frames = [bytes(80) for _ in range(300)]
    out = [ch.downlink(f, float(i)) for i, f in enumerate(frames)]
    corrupted = sum(d[0].frame != bytes(80) for d in out)
    assert corrupted == ch.stats[0].downlink.corrupted
    assert 0.3 < corrupted / 300 < 0.6  # 1 − (1 − 1e-3)^640 ≈ 0.47
    assert all(d[0].corrupted == (d[0].frame != bytes(80)) for d in out)


def test_bit_errors_grow_as_the_margin_shrinks():
    near = link_state(HOME, east_of(HOME, 50, 30_000), ChannelConfig(lora=SLOW))
    edge = link_state(HOME, east_of(HOME, 700, 30_000), ChannelConfig(lora=SLOW))
    assert near.ber < 1e-12 < edge.ber < 1e-6
    assert link_state(HOME, east_of(HOME, 50, 30_000), ChannelConfig(lora=SLOW, ber=1e-5)).ber >= 1e-5


def test_duplicates_arrive_later_and_are_counted():
    ch = RadioChannel([HOME], fixed((HOME.lat, HOME.lon, 500)), ChannelConfig(duplicate=0.2, path_loss=False), seed=5)
    out = [d for i in range(1000) for d in ch.downlink(i.to_bytes(2, "big"), float(i))]
    dups = [d for d in out if d.duplicate]
    assert len(dups) == ch.stats[0].downlink.duplicated and 150 < len(dups) < 250
    # Heard when the frame's last symbol arrives (its time on air), a duplicate up to 2 s later.
    air = [d.delay_s for d in out if not d.duplicate][0]
    assert air > 0 and all(air <= d.delay_s <= air + 2.0 for d in dups) and any(d.delay_s > air for d in dups)
    originals = {d.seq: d.frame for d in out if not d.duplicate}
    assert len(originals) == 1000 and all(originals[d.seq] == d.frame for d in dups)


def test_reordered_frame_comes_after_the_next_one():
    ch = RadioChannel([HOME], fixed((HOME.lat, HOME.lon, 500)), ChannelConfig(reorder=0.3, path_loss=False), seed=8)
    order = [d.seq for i in range(500) for d in ch.downlink(bytes([i % 256]), float(i))]
    order += [d.seq for d in ch.release(500.0, everything=True)]
    assert sorted(order) == list(range(500))  # nothing lost, nothing twice
    swaps = [(a, b) for a, b in zip(order, order[1:]) if a > b]
    assert len(swaps) == ch.stats[0].downlink.reordered > 50
    assert all(a == b + 1 for a, b in swaps)  # held back by exactly one frame


def test_held_frame_goes_out_after_the_maximum_hold_without_a_next_frame():
    cfg = ChannelConfig(reorder=1.0, reorder_max_hold_s=30.0, path_loss=False)
    ch = RadioChannel([HOME], fixed((HOME.lat, HOME.lon, 500)), cfg, seed=1)
    assert ch.downlink(b"only", 100.0) == []
    assert ch.next_release_s() == 130.0
    assert ch.release(129.0) == []
    [d] = ch.release(130.0)
    assert d.frame == b"only" and ch.next_release_s() is None


def test_outage_blocks_both_directions():
    cfg = ChannelConfig(outages=((100.0, 200.0),), path_loss=False, half_duplex=False)
    ch = RadioChannel([HOME], fixed((HOME.lat, HOME.lon, 500)), cfg, seed=1)
    down = [bool(ch.downlink(b"d", float(t))) for t in range(0, 300, 10)]
    assert down == [not 100 <= t < 200 for t in range(0, 300, 10)]
    assert ch.uplink(b"u", 0, 150.0) is None and ch.uplink(b"u", 0, 250.0) == b"u"
    assert ch.stats[0].downlink.lost_by["outage"] == 10 and ch.stats[0].uplink.lost_by["outage"] == 1


def test_half_duplex_loses_uplink_while_the_payload_transmits():
    cfg = ChannelConfig(lora=SLOW, path_loss=False)
    ch = RadioChannel([HOME], fixed((HOME.lat, HOME.lon, 500)), cfg, seed=1)
    frame = bytes(80)
    air = SLOW.airtime_s(80)
    assert 14 < air < 18  # docs/figures.md: ~16 s for 80 bytes at SF11/20.8 kHz/4:8
    ch.downlink(frame, 1000.0)
    assert ch.uplink(b"nack", 0, 1000.0 + air / 2) is None
    assert ch.uplink(b"nack", 0, 1000.0 + air + 0.01) == b"nack"
    assert ch.stats[0].uplink.lost_by["half_duplex"] == 1
    full = RadioChannel([HOME], fixed((HOME.lat, HOME.lon, 500)), ChannelConfig(lora=SLOW, half_duplex=False), seed=1)
    full.downlink(frame, 1000.0)
    assert full.uplink(b"nack", 0, 1000.0 + air / 2) == b"nack"


def test_stations_have_independent_streams_and_runs_are_deterministic():
    spec = LossSpec(0.4, burst=3)
    cfg = ChannelConfig(loss=spec, ber=1e-3, duplicate=0.1, reorder=0.1, path_loss=False)
    other = GroundStation("away", 51.5, -0.1, 10)

    def run(stations, seed=7):
        ch = RadioChannel(stations, fixed((HOME.lat, HOME.lon, 3000)), cfg, seed=seed)
        out = [(d.station_index, d.seq, d.frame, d.duplicate) for i in range(400)
               for d in ch.downlink(i.to_bytes(2, "big") * 20, float(i))]
        return out, [ch.uplink(b"up", len(stations) - 1, 1e6 + i) for i in range(100)]

    alone, _ = run([HOME])
    both, _ = run([HOME, other])
    assert [x for x in both if x[0] == 0] == alone  # adding a station changes nothing for home
    theirs = {x[1] for x in both if x[0] == 1 and not x[3]}
    mine = {x[1] for x in both if x[0] == 0 and not x[3]}
    assert theirs != mine  # and the second station fades on its own
    assert run([HOME, other]) == run([HOME, other])
    assert run([HOME, other], seed=8) != run([HOME, other])


def test_uplink_does_not_shift_the_downlink():
    cfg = ChannelConfig(loss=LossSpec(0.3), path_loss=False, half_duplex=False)
    quiet = RadioChannel([HOME], fixed((HOME.lat, HOME.lon, 500)), cfg, seed=4)
    busy = RadioChannel([HOME], fixed((HOME.lat, HOME.lon, 500)), cfg, seed=4)
    a, b = [], []
    for i in range(300):
        a.append(bool(quiet.downlink(b"x", float(i))))
        b.append(bool(busy.downlink(b"x", float(i))))
        busy.uplink(b"nack", 0, i + 0.5)
    assert a == b


def test_timeline_counts_per_minute_and_station():
    away = GroundStation("away", -33.9, 151.2, 10)  # Sydney: never in view
    ch = RadioChannel([HOME, away], fixed((HOME.lat, HOME.lon, 5000)), ChannelConfig(), seed=1)
    for t in range(0, 180, 10):
        ch.downlink(b"t", float(t))
    rows = ch.timeline()
    assert [(r["t_s"], r["station"], r["in"], r["delivered"]) for r in rows] == [
        (0, "away", 6, 0), (0, "home", 6, 6), (60, "away", 6, 0), (60, "home", 6, 6),
        (120, "away", 6, 0), (120, "home", 6, 6)]
    assert ch.stats_dict()[1]["downlink"]["lost_by"]["horizon"] == 18


def test_parsers_reject_nonsense():
    assert GroundStation.parse("uni:52.45:-1.93:150") == GroundStation("uni", 52.45, -1.93, 150.0)
    assert GroundStation.parse("x:0:0").alt_m == 0.0
    assert LoRaMode.parse("11/20800/8") == SLOW
    for bad in ("home:52", "home:north:0", ":1:2", "x:95:0"):
        with pytest.raises(ValueError):
            GroundStation.parse(bad)
    for bad in ("11/20800", "13/125000/5", "9/125000/9"):
        with pytest.raises(ValueError):
            LoRaMode.parse(bad)
    with pytest.raises(ValueError):
        ChannelConfig(outages=((10.0, 5.0),))
    with pytest.raises(ValueError):
        ChannelConfig(duplicate=1.5)
    p = build_parser()
    with pytest.raises(SystemExit):
        p.parse_args(["channel", "--listen", ":0", "--forward", "127.0.0.1:9", "--air-hex", "a", "--outage", "5:1"])
    args = p.parse_args(["channel", "--listen", ":0", "--forward", "127.0.0.1:9", "--air-hex", "a",
                         "--outage", "10:20", "--outage", "30:40", "--station", "a:1:2", "--lora", "7/250000/6"])
    assert args.outage == [(10.0, 20.0), (30.0, 40.0)] and args.station[0].name == "a"
    assert args.lora == LoRaMode(7, 250_000, 6) and args.profile == "balloon" and args.speedup == 60.0


# --------------------------------------------------------------------------- the world clock


def test_world_clock_waits_on_the_pad_until_the_file_appears(tmp_path):
    now = [1000.0]
    path = tmp_path / "clock.json"
    clock = WorldClock(path, speedup=60, now=lambda: now[0])
    assert clock() == 0.0
    path.write_text(json.dumps({"epoch_unix": 1000.5, "speedup": 100}))
    now[0] = 1000.5
    assert clock() == 0.0  # looked less than a second ago: not yet
    now[0] = 1001.0
    assert clock() == pytest.approx(50.0) and clock.speedup == 100
    now[0] = 1003.0
    assert clock() == pytest.approx(250.0)
    own = WorldClock(None, speedup=10, now=lambda: now[0])
    now[0] += 2
    assert own() == pytest.approx(20.0)


def test_world_clock_ignores_a_half_written_file(tmp_path):
    path = tmp_path / "clock.json"
    path.write_text('{"epoch_unix": 12')
    now = [0.0]
    clock = WorldClock(path, now=lambda: now[0])
    assert clock() == 0.0 and clock.epoch_unix is None


# --------------------------------------------------------------------------- the relay, in-process


def drain(sock: socket.socket, quiet_s: float = 0.3) -> list[bytes]:
    sock.settimeout(quiet_s)
    got = []
    try:
        while True:
            got.append(sock.recvfrom(4096)[0])
    except TimeoutError:
        return got


class ManualClock:
    """Flight time set by the test; `speedup` turns flight-second delays into wall time."""

    def __init__(self):
        self.t = 0.0
        self.speedup = 100.0

    def __call__(self) -> float:
        return self.t


def test_relay_with_two_stations_and_an_outage(tmp_path):
    stop = threading.Event()
    grounds = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    for g in grounds:
        g.bind(("127.0.0.1", 0))
    payload = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    payload.bind(("127.0.0.1", 0))
    near = GroundStation("home", HOME.lat, HOME.lon, 20, forward=grounds[0].getsockname())
    # 300 km west: in view of a balloon at 30 km, not of one at 1 km.
    west = GroundStation("west", 52.7, -7.2, 20, forward=grounds[1].getsockname())
    clock = ManualClock()
    alt = {"m": 1000.0}
    cfg = ChannelConfig(lora=SLOW, outages=((100.0, 200.0),), duplicate=0.0, half_duplex=True)
    ch = Channel(("127.0.0.1", 0), grounds[0].getsockname(), LossSpec(0.0), 3, tmp_path / "air.hex", stop,
                 uplink_hex=tmp_path / "uplink.hex", stations=[near, west],
                 position=lambda t: (HOME.lat, HOME.lon, alt["m"]), config=cfg, clock=clock)
    worker = threading.Thread(target=ch.run)
    worker.start()
    try:
        def send(frame: bytes, t: float) -> None:
            clock.t = t
            n = ch.stats.frames_in
            payload.sendto(frame, ch.sock.getsockname())
            wait_for(lambda: ch.stats.frames_in == n + 1)

        send(b"$$low", 10.0)  # only home hears the balloon at 1 km
        alt["m"] = 30_000.0
        send(b"$$high", 50.0)  # both do
        send(b"$$dark", 150.0)  # nobody: the outage
        send(b"$$back", 250.0)
        home_got, west_got = drain(grounds[0]), drain(grounds[1])
        assert home_got == [b"$$low", b"$$high", b"$$back"]
        assert west_got == [b"$$high", b"$$back"]

        # Uplink through the west station, once the payload's radio is quiet and once while it
        # still transmits (SF11: a frame keys it for seconds), and once during the outage.
        relay_west = ch.outs[1].getsockname()
        clock.t = 400.0
        grounds[1].sendto(b"\xed\x01", relay_west)
        wait_for(lambda: ch.stats.uplink_in == 1)
        send(b"$$busy", 500.0)
        drain(grounds[0], 0.1), drain(grounds[1], 0.1)
        clock.t = 500.5
        grounds[1].sendto(b"\xed\x02", relay_west)
        wait_for(lambda: ch.stats.uplink_in == 2)
        clock.t = 150.0
        grounds[0].sendto(b"\xed\x03", ch.outs[0].getsockname())
        wait_for(lambda: ch.stats.uplink_in == 3)
        assert drain(payload) == [b"\xed\x01"]
    finally:
        stop.set()
        worker.join(timeout=2)
        ch.close(tmp_path / "channel.json")
        for s in (*grounds, payload):
            s.close()
    assert not worker.is_alive()
    stats = json.loads((tmp_path / "channel.json").read_text())
    assert (stats["frames_in"], stats["frames_forwarded"], stats["frames_dropped"]) == (5, 4, 1)
    assert (stats["uplink_in"], stats["uplink_forwarded"], stats["uplink_dropped"]) == (3, 1, 2)
    assert stats["copies_forwarded"] == 7
    home, west_stats = stats["stations"]
    assert home["name"] == "home" and home["forward"] == "%s:%d" % near.forward
    assert home["downlink"]["lost_by"]["outage"] == 1 and home["uplink"]["lost_by"]["outage"] == 1
    assert west_stats["downlink"]["lost_by"]["horizon"] == 1 and west_stats["downlink"]["lost_by"]["outage"] == 1
    assert west_stats["uplink"]["lost_by"]["half_duplex"] == 1 and west_stats["uplink"]["delivered"] == 1
    assert {(r["t_s"], r["station"], r["in"], r["delivered"]) for r in stats["timeline"]} >= {
        (0, "home", 2, 2), (0, "west", 2, 1), (120, "west", 1, 0), (240, "west", 1, 1)}
    assert len((tmp_path / "air.hex").read_text().split()) == 5


def test_relay_delivers_late_duplicates_without_blocking(tmp_path):
    stop = threading.Event()
    ground = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ground.bind(("127.0.0.1", 0))
    payload = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    clock = ManualClock()
    clock.speedup = 4.0  # a copy up to 2 flight seconds late: up to 0.5 s of wall time
    cfg = ChannelConfig(duplicate=1.0, path_loss=False)
    ch = Channel(("127.0.0.1", 0), ground.getsockname(), LossSpec(0.0), 9, tmp_path / "air.hex", stop,
                 position=lambda t: (HOME.lat, HOME.lon, 100.0), config=cfg, clock=clock)
    worker = threading.Thread(target=ch.run)
    worker.start()
    try:
        sent = time.monotonic()
        for i in range(5):
            payload.sendto(bytes([i]), ch.sock.getsockname())
        ground.settimeout(2)
        arrivals = [(ground.recvfrom(16)[0], time.monotonic() - sent) for _ in range(10)]
    finally:
        stop.set()
        worker.join(timeout=2)
        ch.close()
        ground.close()
        payload.close()
    assert sorted(f for f, _ in arrivals) == sorted([bytes([i]) for i in range(5)] * 2)
    firsts = {}
    for f, at in arrivals:
        firsts.setdefault(f, at)
    assert max(firsts.values()) < 0.15  # originals are not held up behind the late copies
    assert max(at for _, at in arrivals) > 0.1  # copies really came later
    assert ch.stats.frames_forwarded == 5 and ch.stats.frames_dropped == 0 and ch.stats.copies_forwarded == 10
    assert ch.radio.stats[0].downlink.duplicated == 5


def test_the_ground_hears_a_frame_when_it_ends_so_its_answer_never_meets_that_frame():
    # The payload sends a window-opening sentence and listens once it has gone; a ground that
    # answers at once must be heard, not lost to half duplex.
    ch = RadioChannel([HOME], fixed((HOME.lat, HOME.lon, 500)), ChannelConfig(path_loss=False), seed=1)
    (d,) = ch.downlink(b"x" * 80, 100.0)
    assert d.delay_s == ch.config.lora.airtime_s(80)
    assert ch.uplink(b"answer", 0, 100.0 + d.delay_s) == b"answer"
    assert ch.uplink(b"too soon", 0, 100.0 + d.delay_s / 2) is None  # while it still transmits
    assert ch.stats[0].uplink.lost_by["half_duplex"] == 1
