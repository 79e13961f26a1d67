"""Several balloons on one channel (issue 33): the two-balloons scenario flown whole on the bench's
clock. The ground station's valley hides the far balloon, so whatever reaches the ground from it
came through the near one; each balloon relays for the other inside its share of the air and never
at its own beacon's cost."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from payload.config import load_config
from sim.bench.fly.fleet import fleet
from sim.bench.fly.flight import bench_key
from sim.bench.fly.options import FlyOptions
from sim.world.scenarios import balloon_seed, scenario
from stratoecho.wire.downlink import DownlinkAuth
from stratoecho.wire.musing_sentence import fold_text
from stratoecho.wire.uplink_keys import DOWNLINK, load_key

MINUTES = 40.0
REPO = Path(__file__).resolve().parent.parent


def test_each_balloon_flies_its_own_seed_key_and_callsign_and_relays_for_the_others(tmp_path):
    opts = FlyOptions(out=tmp_path, seed=5, config=None)
    members = fleet(opts, scenario("two-balloons"), bench_key)
    near, far = members
    assert (near.callsign, far.callsign) == ("NEAR1", "FAR1")
    assert (near.seed, far.seed) == (5, balloon_seed("two-balloons", 5, 1)) and near.seed != far.seed
    assert near.key == tmp_path / "uplink.key" and load_key(far.key) == bench_key(far.seed)
    # Each names the other in [relay] with the key that checks the other's tags, and only that.
    for me, other in ((near, far), (far, near)):
        cfg = load_config(me.config)
        assert cfg.callsign == me.callsign
        assert [(a.callsign, a.key_file) for a in cfg.relay.allow] == [(other.callsign, str(other.downlink))]
        assert cfg.relay.allow[0].forward == (me is near)  # FAR1, out of the ground's reach, only listens
        assert cfg.schedule.beacon_slot_s == me.index * cfg.schedule.telemetry_s / 2  # turns on the air
        proof = DownlinkAuth(load_key(other.downlink, DOWNLINK))
        assert proof.key == DownlinkAuth.from_flight_key(bench_key(other.seed)).key
    # FAR1 is forwarded: its frames leave room for NEAR1's envelope. NEAR1, whom FAR1 only hears, keeps its own.
    assert (load_config(near.config).radio.mtu, load_config(far.config).radio.mtu) == (255, 241)
    (tmp_path / "pi").mkdir()
    pi = fleet(FlyOptions(out=tmp_path / "pi", seed=5, config=REPO / "config" / "payload.pi.toml"),
               scenario("two-balloons"), bench_key)
    near_cam, far_cam = (load_config(m.config).devices.camera for m in pi)
    assert near_cam.ssdv and not far_cam.ssdv  # a relay carries no SSDV packet: FAR1's pictures go as records
    (tmp_path / "alone").mkdir()
    alone = fleet(FlyOptions(out=tmp_path / "alone", seed=5, relay=False), scenario("two-balloons"), bench_key)
    assert all(load_config(m.config).relay.allow == [] for m in alone)
    assert fleet(opts, scenario("nominal"), bench_key) == []  # one balloon: the flight as it always was


def _far_musings_made(log) -> list[str]:
    return [json.loads(line)["text"] for line in log.read_text().splitlines() if '"event": "musing"' in line
            or '"event":"musing"' in line]


def test_the_report_counts_each_record_by_the_ways_it_came(tmp_path):
    """report.json's `ways`: a record heard directly and through a relay is one record, counted
    once as "both"; from the ground's own database as `listen` leaves it."""
    from groundstation.store import Store
    from sim.bench.fly.fleet_report import ground_section

    store = Store(tmp_path / "ground.FAR1.db")
    for kind, seq, stations in (("telemetry", 1, ["home"]), ("telemetry", 2, ["home via NEAR1"]),
                                ("telemetry", 3, ["home via NEAR1", "home", "hill via NEAR1"]),
                                ("musing", 1, ["home via NEAR1"]), ("musing", 2, ["hill", "home"])):
        for station in stations:
            store.add_heard(kind, 7, seq, station)
    store.commit()
    store.close()
    ways = ground_section(tmp_path / "ground.FAR1.db")["ways"]
    assert ways == {"telemetry": {"direct": 1, "relayed": 1, "both": 1}, "musing": {"direct": 1, "relayed": 1, "both": 0}}
    assert ground_section(tmp_path / "ground.FAR1.db")["musings_only_relayed"] == 1
    assert ground_section(tmp_path / "missing.db")["ways"] == {}
    # make bench's row says what the counts say, not what the 40-minute flight usually shows
    from sim.bench.measure.relays import _ways

    assert _ways(ways["telemetry"], relay=True) == "1 through NEAR1 only, 1 heard directly only, 1 both ways"
    assert _ways({"direct": 4, "relayed": 0, "both": 0}, relay=False) == "4 heard directly"
    assert _ways({}, relay=False) == "the ground heard none"


@pytest.mark.timeout(900)
def test_two_balloons_the_far_ones_musings_reach_the_ground_only_through_the_near_one(tmp_path, corpus_bundle):
    from sim.bench.measure.relays import fly_network

    report = fly_network(tmp_path / "fly", corpus_bundle, relay=True, minutes=MINUTES)
    near, far = report["fleet"]
    # Neither beacon missed a slot, relaying or not, and both payloads ended their flight cleanly.
    for balloon in (near, far):
        assert balloon["exit_code"] == 0
        assert balloon["beacon"]["missed_slots"] == 0, balloon["beacon"]
        assert balloon["gateway"]["lines"] > 0 and balloon["gateway"]["violations"] == 0  # a stock gateway hears both
        assert balloon["beacon"]["sentences"] >= 0.95 * MINUTES * 60 / balloon["beacon"]["period_s"]
    # The ground never heard the far balloon itself: every record came through NEAR1. Its positions
    # came in NEAR1's envelopes and bare as NEAR1 repeated them for stock gateways; a bare line heard
    # without the envelope before it is taken as heard directly ("home"), the rest say "via NEAR1".
    channel = json.loads((tmp_path / "fly" / "channel.json").read_text())
    assert channel["balloons"][1]["stations"][0]["downlink"]["delivered"] == 0  # FAR1 below the valley's rim
    ground = far["ground"]
    paths = {station for kind, stations in ground["paths"].items() if kind != "telemetry" for station in stations}
    assert paths == {"home via NEAR1"}, ground["paths"]
    assert set(ground["paths"]["telemetry"]) <= {"home via NEAR1", "home"}, ground["paths"]
    telemetry = ground["ways"]["telemetry"]
    assert telemetry["relayed"] + telemetry["both"] >= 0.9 * ground["telemetry"] > 0, telemetry
    # Its musings: each at the ground once, by relay alone, word for word what FAR1 made.
    assert ground["musings"] >= 3 and ground["musings_only_relayed"] == ground["musings"]
    # Every musing FAR1 finished sending (its duty cycle holds the rest back) arrived, and only once.
    assert ground["musings"] == far["musings_sent"], (ground, far["musings_sent"])
    con = sqlite3.connect(tmp_path / "fly" / "ground.FAR1.db")
    delivered = [t for (t,) in con.execute("SELECT text FROM records WHERE kind = 'musing' ORDER BY seq")]
    con.close()
    made = _far_musings_made(tmp_path / "fly" / "payload-FAR1.log")
    # A musing that came as $$ sentences alone is in their folded letters ("-49 deg C"), as a stock gateway passes them.
    assert len(delivered) == len(set(delivered)) and {fold_text(t) for t in delivered} <= {fold_text(t) for t in made}
    # The near balloon's own flight is its own: none of FAR1's records in its database.
    con = sqlite3.connect(tmp_path / "fly" / "ground.db")
    assert not {t for (t,) in con.execute("SELECT text FROM records WHERE kind = 'musing'")} & set(delivered)
    con.close()
    # What the near balloon relayed stayed in its share, and what it heard twice went once.
    relay = near["relay"]
    assert relay["forwarded"] > 0 and relay["by_origin"].get("FAR1", 0) == relay["forwarded"]
    cfg = load_config(tmp_path / "fly" / "payload-NEAR1.toml")
    assert relay["airtime_s"] <= cfg.relay.share * cfg.radio.duty_cycle * 3600  # one hour's share at most
    # They talk: the near balloon heard FAR1's musings whole, and its persona was told who said them.
    assert near["relay"]["musings_heard"] >= 1
    told = [json.loads(line) for line in (tmp_path / "fly" / "payload.log").read_text().splitlines()
            if '"heard_from"' in line]
    assert told and all(entry["heard_from"] == ["FAR1"] for entry in told)
