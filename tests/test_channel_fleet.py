"""Several payloads on one channel (issue 33): the pure model (sim/channel/fleet.py), the terrain
mask (sim/channel/radio.py) and the bench relay with several balloons over loopback UDP."""

from __future__ import annotations

import json
import socket
import threading

import pytest
import structlog

from sim.__main__ import _channel_tracks, build_parser
from sim.bench.run.relay import Channel
from sim.channel.fleet import CAPTURE_DB, Fleet
from sim.channel.loss import LossSpec
from sim.channel.radio import ChannelConfig, GroundStation, LoRaMode, RadioChannel, fspl_db, link_state
from tests.fakes import wait_for
from tests.test_radio_channel import HOME, ManualClock, drain, east_of, fixed

SLOW = LoRaMode(11, 20_800, 8)  # ~16 s on air for 80 bytes: long enough to overlap on purpose
FAR_AWAY = GroundStation("away", -33.9, 151.2, 10)  # Sydney: hears nothing of an English flight


def ground(out):
    return [d for d in out if not d.to_balloon]


def peers(out):
    return [d for d in out if d.to_balloon]


# --------------------------------------------------------------------------- terrain mask


def test_below_the_station_mask_nothing_is_heard_either_way():
    valley = GroundStation("valley", HOME.lat, HOME.lon, 10, mask_deg=6.0)
    far = east_of(HOME, 150, 9_000)  # about 3 degrees up: hidden by the hills, not by the horizon
    near = east_of(HOME, 20, 9_000)  # about 24 degrees up
    assert 2 < link_state(valley, far, ChannelConfig()).elevation_deg < 4
    assert link_state(valley, far, ChannelConfig()).below_mask
    assert not link_state(valley, far, ChannelConfig()).beyond_horizon
    hidden = RadioChannel([valley], fixed(far), ChannelConfig(), seed=1)
    assert all(hidden.downlink(b"x" * 40, float(t)) == [] for t in range(0, 100, 10))
    assert hidden.uplink(b"nack", 0, 1000.0) is None
    assert hidden.stats[0].downlink.lost_by["terrain"] == 10 and hidden.stats[0].uplink.lost_by["terrain"] == 1
    seen = RadioChannel([valley], fixed(near), ChannelConfig(), seed=1)
    assert len(seen.downlink(b"x" * 40, 0.0)) == 1
    # Without the mask the far balloon is heard: the hills did it.
    assert RadioChannel([HOME], fixed(far), ChannelConfig(), seed=1).downlink(b"x" * 40, 0.0)


def test_mask_zero_changes_nothing_and_parses():
    assert GroundStation.parse("home:52.7:-2.75:10:6") == GroundStation("home", 52.7, -2.75, 10.0, mask_deg=6.0)
    assert GroundStation.parse("home:52.7:-2.75:10").mask_deg == 0.0
    for bad in ("home:52.7:-2.75:10:90", "home:52.7:-2.75:10:-1", "home:52.7:-2.75:10:hills", "a:1:2:3:4:5"):
        with pytest.raises(ValueError):
            GroundStation.parse(bad)
    below = east_of(HOME, 740, 30_000)  # past the horizon, below 0 degrees
    assert link_state(HOME, below, ChannelConfig()).beyond_horizon and not link_state(HOME, below, ChannelConfig()).below_mask


# --------------------------------------------------------------------------- balloons hear each other


def test_two_balloons_150_km_apart_hear_each_other_and_not_while_transmitting():
    a, b = east_of(HOME, 0, 10_000), east_of(HOME, 150, 10_000)
    fleet = Fleet([FAR_AWAY], [fixed(a), fixed(b)], ChannelConfig(), seed=2)
    out = fleet.transmit(0, b"$$hello", 100.0)
    assert ground(out) == []  # Sydney hears nothing
    (d,) = peers(out)
    assert (d.balloon, d.station_index, d.frame) == (0, 1, b"$$hello") and fleet.settle(d)
    (back,) = peers(fleet.transmit(1, b"$$hi", 200.0))
    assert back.station_index == 0 and fleet.settle(back)
    assert fleet.peer_stats[(0, 1)].delivered == fleet.peer_stats[(1, 0)].delivered == 1
    # Too far apart low down: past both horizons (4.12 x (sqrt 100 + sqrt 100) km = 82 km).
    low = Fleet([FAR_AWAY], [fixed(east_of(HOME, 0, 100)), fixed(east_of(HOME, 150, 100))], ChannelConfig())
    assert peers(low.transmit(0, b"x", 0.0)) == [] and low.peer_stats[(0, 1)].lost_by["horizon"] == 1


def test_a_balloon_hears_nothing_while_its_own_radio_transmits():
    a, b = east_of(HOME, 0, 10_000), east_of(HOME, 50, 10_000)
    fleet = Fleet([FAR_AWAY], [fixed(a), fixed(b)], ChannelConfig(lora=SLOW), seed=1)
    air = SLOW.airtime_s(80)
    first = peers(fleet.transmit(1, bytes(80), 1000.0))  # balloon 1 keys its radio for ~16 s
    second = peers(fleet.transmit(0, bytes(80), 1000.0 + air / 2))  # balloon 0 answers too soon
    assert not fleet.settle(second[0])  # 1 was still sending
    assert not fleet.settle(first[0])  # and 0 keyed up before 1's frame had ended
    assert fleet.peer_stats[(0, 1)].lost_by["half_duplex"] == fleet.peer_stats[(1, 0)].lost_by["half_duplex"] == 1
    assert fleet.peer_stats[(0, 1)].delivered == 0
    (later,) = peers(fleet.transmit(1, bytes(80), 1000.0 + 2 * air))
    assert fleet.settle(later)
    assert fleet.transmitting(1, 1000.0 + 2.5 * air) and not fleet.transmitting(0, 1000.0 + 2.5 * air)


# --------------------------------------------------------------------------- collisions


def overhead_pair(alt_a: float, alt_b: float) -> Fleet:
    """Two balloons straight above HOME at different heights: their power at HOME differs by 20·log10 of
    the slant ratio, far above the sensitivity, so only the capture rule decides."""
    return Fleet([HOME], [fixed((HOME.lat, HOME.lon, alt_a)), fixed((HOME.lat, HOME.lon, alt_b))],
                 ChannelConfig(), seed=4)


def test_overlapping_frames_collide_unless_one_is_6_db_stronger():
    gap = fspl_db(21.98, 434) - fspl_db(9.98, 434)
    assert CAPTURE_DB < gap < CAPTURE_DB + 1
    fleet = overhead_pair(10_000, 22_000)  # ~6.9 dB apart at HOME: the nearer captures
    (near,) = ground(fleet.transmit(0, b"near" * 10, 100.0))
    (far,) = ground(fleet.transmit(1, b"far" * 10, 100.05))  # starts while the first is on the air
    assert fleet.settle(near) and not fleet.settle(far)
    assert fleet.radios[1].stats[0].downlink.lost_by["collision"] == 1
    assert fleet.radios[1].stats[0].downlink.delivered == 0 and fleet.radios[0].stats[0].downlink.delivered == 1
    assert fleet.radios[1].timeline()[0]["delivered"] == 0

    close = overhead_pair(10_000, 18_000)  # ~5.1 dB apart: both lost
    (a,) = ground(close.transmit(0, b"a" * 40, 100.0))
    (b,) = ground(close.transmit(1, b"b" * 40, 100.05))
    assert not close.settle(b) and not close.settle(a)
    assert [r.stats[0].downlink.lost_by["collision"] for r in close.radios] == [1, 1]

    apart = overhead_pair(10_000, 18_000)  # one after the other: no collision
    (a,) = ground(apart.transmit(0, b"a" * 40, 100.0))
    (b,) = ground(apart.transmit(1, b"b" * 40, 101.0))
    assert apart.settle(a) and apart.settle(b)


def test_a_frame_below_the_receivers_sensitivity_does_not_collide():
    # Balloon 1 is past HOME's horizon: HOME does not hear it, so it cannot spoil balloon 0's frame.
    fleet = Fleet([HOME], [fixed((HOME.lat, HOME.lon, 5_000)), fixed(east_of(HOME, 400, 1_000))],
                  ChannelConfig(), seed=1)
    (mine,) = ground(fleet.transmit(0, b"x" * 40, 10.0))
    assert ground(fleet.transmit(1, b"y" * 40, 10.05)) == []
    assert fleet.settle(mine)


def test_collisions_between_balloons_at_a_third_one():
    # Balloons 0 and 2 talk at once; balloon 1 sits next to 0, so 0 captures and 2 is lost there.
    pos = [fixed(east_of(HOME, 0, 10_000)), fixed(east_of(HOME, 10, 10_000)), fixed(east_of(HOME, 200, 10_000))]
    fleet = Fleet([FAR_AWAY], pos, ChannelConfig(), seed=3)
    from0 = {d.station_index: d for d in peers(fleet.transmit(0, b"zero" * 10, 50.0))}
    from2 = {d.station_index: d for d in peers(fleet.transmit(2, b"two" * 10, 50.05))}
    assert fleet.settle(from0[1]) and not fleet.settle(from2[1])
    assert fleet.peer_stats[(2, 1)].lost_by["collision"] == 1
    assert not fleet.settle(from0[2]) and not fleet.settle(from2[0])  # each was transmitting itself


# --------------------------------------------------------------------------- seeds


def run_fleet(seed: int, n: int = 2):
    cfg = ChannelConfig(loss=LossSpec(0.3, burst=3), ber=1e-3, duplicate=0.1, reorder=0.1)
    pos = [fixed(east_of(HOME, 30 * b, 8_000)) for b in range(n)]
    fleet = Fleet([HOME, GroundStation("west", 52.7, -4.0, 10)], pos, cfg, seed=seed)
    got = []
    for k in range(300):
        b = k % n
        for d in fleet.transmit(b, k.to_bytes(2, "big") * 20, 10.0 * k):
            got.append((d.balloon, d.to_balloon, d.station_index, d.seq, d.frame, d.duplicate, fleet.settle(d)))
    got += [(d.balloon, d.station_index, d.seq) for d in fleet.release(1e9, everything=True)]
    return got, fleet


def test_the_same_seed_gives_the_same_deliveries():
    a, fleet = run_fleet(7)
    assert a == run_fleet(7)[0]
    assert a != run_fleet(8)[0]
    assert any(x[1] for x in a) and any(not x[1] for x in a)  # both kinds of receiver heard something
    p = fleet.peers_dict()
    assert {(e["from"], e["to"]) for e in p} == {(0, 1), (1, 0)}
    assert all(e["in"] == 150 and e["delivered"] + e["lost"] == 150 and e["lost_by"]["burst"] > 10 for e in p)


def test_balloon_0_is_heard_on_the_ground_exactly_as_a_lone_payload():
    cfg = ChannelConfig(loss=LossSpec(0.3, burst=3), ber=1e-3, duplicate=0.1, reorder=0.1)
    stations = [HOME, GroundStation("west", 52.7, -4.0, 10)]
    pos0 = fixed(east_of(HOME, 0, 8_000))
    fleet = Fleet(stations, [pos0, fixed(east_of(HOME, 30, 8_000))], cfg, seed=5)
    lone = RadioChannel(stations, pos0, cfg, seed=5)
    alone = Fleet(stations, [pos0], cfg, seed=5)
    lone_twin = RadioChannel(stations, pos0, cfg, seed=5)
    for k in range(300):
        frame = k.to_bytes(2, "big") * 20
        expected = lone.downlink(frame, 10.0 * k)
        assert ground(fleet.transmit(0, frame, 10.0 * k)) == expected
        fleet.transmit(1, frame, 10.0 * k + 5.0)  # never overlapping balloon 0's frames
        assert alone.transmit(0, frame, 10.0 * k) == lone_twin.downlink(frame, 10.0 * k)
        heard = lone_twin.uplink(b"nack", 1, 10.0 * k + 1)
        assert alone.uplink(b"nack", 1, 10.0 * k + 1) == ([] if heard is None else [(0, heard)])
    assert fleet.radios[0].stats_dict() == lone.stats_dict()


def test_uplink_reaches_every_balloon_in_reach():
    pos = [fixed((HOME.lat, HOME.lon, 5_000)), fixed(east_of(HOME, 50, 9_000)), fixed(east_of(HOME, 900, 9_000))]
    fleet = Fleet([HOME], pos, ChannelConfig(), seed=1)
    assert fleet.uplink(b"nack", 0, 10.0) == [(0, b"nack"), (1, b"nack")]  # the third is past the horizon
    assert [r.stats[0].uplink.lost_by["horizon"] for r in fleet.radios] == [0, 0, 1]


# --------------------------------------------------------------------------- the relay, in-process


def test_relay_with_two_balloons(tmp_path):
    stop = threading.Event()
    gnd = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    gnd.bind(("127.0.0.1", 0))
    payloads = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    for p in payloads:
        p.bind(("127.0.0.1", 0))
    clock = ManualClock()
    station = GroundStation("home", HOME.lat, HOME.lon, 20, forward=gnd.getsockname())
    tracks = [fixed((HOME.lat, HOME.lon, 3_000)), fixed(east_of(HOME, 40, 6_000))]
    with structlog.testing.capture_logs() as logs:
        ch = Channel(("127.0.0.1", 0), gnd.getsockname(), LossSpec(0.0), 3, tmp_path / "air.hex", stop,
                     uplink_hex=tmp_path / "uplink.hex", stations=[station], positions=tracks,
                     config=ChannelConfig(), clock=clock)
    (listening,) = [e for e in logs if e["event"] == "listening"]
    addrs = [tuple((a.split(":")[0], int(a.split(":")[1]))) for a in listening["balloons"]]
    assert listening["address"] == listening["balloons"][0] and addrs == [s.getsockname() for s in ch.socks]
    assert addrs[0][1] != addrs[1][1]
    worker = threading.Thread(target=ch.run)
    worker.start()
    try:
        def send(balloon: int, frame: bytes, t: float) -> None:
            clock.t = t
            n = ch.stats.frames_in
            payloads[balloon].sendto(frame, addrs[balloon])
            wait_for(lambda: ch.stats.frames_in == n + 1)

        send(0, b"$$zero", 10.0)  # balloon 1 has not spoken: nowhere to send what it heard
        wait_for(lambda: ch.unaddressed[(0, 1)] == 1)  # handed out (a moment after) before balloon 1 speaks
        send(1, b"$$one", 20.0)
        assert drain(gnd) == [b"$$zero", b"$$one"]
        payloads[0].settimeout(2)
        frame, src = payloads[0].recvfrom(4096)
        assert frame == b"$$one" and src == addrs[0]  # from balloon 0's own socket
        clock.t = 30.0
        gnd.sendto(b"\xed\x01", ch.outs[0].getsockname())
        wait_for(lambda: ch.stats.uplink_in == 1)
        assert drain(payloads[0]) == [b"\xed\x01"] and drain(payloads[1]) == [b"\xed\x01"]
    finally:
        stop.set()
        worker.join(timeout=5)
        ch.close(tmp_path / "channel.json")
        for s in (gnd, *payloads):
            s.close()
    assert not worker.is_alive()
    assert (tmp_path / "air.hex").read_text().split() == [b"$$zero".hex()]
    assert (tmp_path / "air-1.hex").read_text().split() == [b"$$one".hex()]
    # When it was heard and its time on air: a bare frame, priced with the flight's mode.
    assert (tmp_path / "air-1.times").read_text() == f"20.000 {ChannelConfig().lora.airtime_s(5):.3f}\n"
    stats = json.loads((tmp_path / "channel.json").read_text())
    assert (stats["frames_in"], stats["frames_forwarded"], stats["uplink_forwarded"]) == (2, 2, 1)
    assert [(b["balloon"], b["frames_in"], b["stations"][0]["downlink"]["delivered"]) for b in stats["balloons"]] == [
        (0, 1, 1), (1, 1, 1)]
    assert stats["balloons"][1]["stations"][0]["uplink"]["delivered"] == 1
    by_pair = {(p["from"], p["to"]): p for p in stats["peers"]}
    assert by_pair[(0, 1)]["delivered"] == 1 and by_pair[(0, 1)]["unaddressed"] == 1
    assert by_pair[(1, 0)]["delivered"] == 1 and by_pair[(1, 0)]["unaddressed"] == 0
    assert stats["stations"] == stats["balloons"][0]["stations"]


def test_one_balloon_keeps_todays_stats_keys(tmp_path):
    stop = threading.Event()
    stop.set()
    ch = Channel(("127.0.0.1", 0), ("127.0.0.1", 9), LossSpec(0.0), 1, tmp_path / "air.hex", stop,
                 position=fixed((HOME.lat, HOME.lon, 100.0)))
    ch.run()
    ch.close(tmp_path / "channel.json")
    stats = json.loads((tmp_path / "channel.json").read_text())
    assert "balloons" not in stats and "peers" not in stats and not (tmp_path / "air-1.hex").exists()


# --------------------------------------------------------------------------- the command line


def test_cli_balloons_from_the_scenario_or_the_option():
    p = build_parser()
    base = ["channel", "--listen", ":0", "--forward", "127.0.0.1:9", "--air-hex", "a"]
    args = p.parse_args([*base, "--scenario", "two-balloons", "--station", "home:52.7:-2.75:10:6"])
    assert args.station[0].mask_deg == 6.0 and args.balloons is None
    near, far = _channel_tracks(args)
    assert far(0.0)[1] == pytest.approx(-0.53, abs=0.01) and near(0.0)[1] != pytest.approx(-0.53, abs=0.01)
    assert len(_channel_tracks(p.parse_args([*base, "--scenario", "two-balloons", "--balloons", "1"]))) == 1
    assert len(_channel_tracks(p.parse_args([*base, "--balloons", "3"]))) == 3
    assert len(_channel_tracks(p.parse_args(base))) == 1
    with pytest.raises(ValueError, match="no balloon 2"):
        _channel_tracks(p.parse_args([*base, "--scenario", "two-balloons", "--balloons", "3"]))
    with pytest.raises(ValueError):
        _channel_tracks(p.parse_args([*base, "--profile", "orbit", "--balloons", "2"]))
    with pytest.raises(SystemExit):
        p.parse_args([*base, "--balloons", "0"])
