"""The flight report's claims (sim/bench/report/truth_report.py): the payload's count from its log, and
the ground's, each musing the ground holds held against the ground's own telemetry of that moment.
The ground database is filled through the real Store from wire objects, as the decoder fills it."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from groundstation.store import Store
from payload.watchdog import boot_banner
from sim.bench.report.flight_report import placed_telemetry
from sim.bench.report.truth_report import claims_section, describe_claims, ground_claims, ground_facts, payload_claims
from stratoecho import wire
from stratoecho.musing_claims import claims

START = datetime(2024, 6, 1, 23, 50, 0, tzinfo=timezone.utc)  # noon is not night: the sun is not asked here
LAT, LON = 52.0, 0.1
CLIMB = 5.0  # m/s
PERIOD = 60
PAD_S = 600  # ten minutes on the pad before it climbs
DRIFT_DEG_S = 0.00005  # east, in degrees of longitude a second: ~12 km/h at 52° N


def altitude(t: int) -> int:
    return 100 if t < PAD_S else round(100 + CLIMB * (t - PAD_S))


def temperature(t: int) -> float:
    return round(15 - 6.5 * altitude(t) / 1000, 1)


def position(t: int) -> tuple[float, float]:
    return LAT, LON + (DRIFT_DEG_S * (t - PAD_S) if t > PAD_S else 0.0)


def _log(path, *events) -> None:
    path.write_text("".join(json.dumps(e) + "\n" for e in events) + "Traceback (most recent call last):\n")


def test_the_payload_count_holds_every_version_once(tmp_path):
    _log(tmp_path / "payload.log",
         {"event": "musing", "seq": 1, "text": "a", "claims": {"altitude": [1, 0], "phase": [1, 0]}},
         # cut: its false claim is caught, its true ones are counted with the musing that aired
         {"event": "musing_untrue", "action": "cut", "text": "b", "claims": {"altitude": [1, 1]}},
         {"event": "musing", "seq": 2, "text": "b'", "claims": {"altitude": [1, 0]}},
         {"event": "musing_untrue", "action": "made again", "text": "c", "claims": {"temperature": [0, 1],
                                                                                 "sun": [1, 0]}},
         {"event": "musing_untrue", "action": "held back", "text": "d", "claims": {"temperature": [0, 2]}},
         {"event": "musing", "seq": 3, "text": "e", "claims": {"speed": [0, 1]}},  # what the guard let by
         {"event": "musing_empty", "claims": "not a dict"},
         {"event": "telemetry", "claims": {"altitude": [9, 9]}})
    p = payload_claims(tmp_path / "payload.log")
    assert p["by_kind"] == {
        "altitude": {"made": 3, "true": 2, "caught_false": 1, "aired_false": 0},
        "phase": {"made": 1, "true": 1, "caught_false": 0, "aired_false": 0},
        "temperature": {"made": 3, "true": 0, "caught_false": 3, "aired_false": 0},
        "sun": {"made": 1, "true": 1, "caught_false": 0, "aired_false": 0},
        "speed": {"made": 1, "true": 0, "caught_false": 0, "aired_false": 1},
    }
    assert (p["caught_false"], p["aired_false"], p["cut"], p["held_back"]) == (4, 1, 1, 1)
    for k in p["by_kind"].values():
        assert k["made"] == k["true"] + k["caught_false"] + k["aired_false"]
    assert payload_claims(tmp_path / "absent.log") == {"by_kind": {}, "caught_false": 0, "aired_false": 0,
                                                       "cut": 0, "held_back": 0}


@pytest.fixture
def ground(tmp_path):
    """Ten minutes on the pad, then a climb at 5 m/s drifting east, positions every minute;
    health every ten minutes with the box at 20 °C; a stranger's positions heard as well, as
    many: the balloon's tagged boot event says which flight is the station's."""
    db = tmp_path / "ground.db"
    with Store(db) as store:
        store.add_record(wire.Record(wire.Kind.EVENT, 1, 1, int(START.timestamp()),
                                     boot_banner("0.1.0", None, 800, 1, "nominal", callsign="S")))
        for seq, t in enumerate(range(0, 3 * 3600, PERIOD)):
            lat, lon = position(t)
            hms = (START + timedelta(seconds=t)).strftime("%H:%M:%S")
            store.add_telemetry(wire.Telemetry("S", seq, hms, lat, lon, altitude(t), 9, temperature(t), 900.0, 7400, 1))
            store.add_telemetry(wire.Telemetry("OTHER", seq, hms, -33.0, 151.0, 30_000, 9, -50.0, 10.0, 3000, 1))
        for seq, t in enumerate(range(0, 3 * 3600, 600)):
            store.add_record(wire.Record(wire.Kind.HEALTH, 1, 100 + seq, int((START + timedelta(seconds=t)).timestamp()),
                                         {"box_temp_c": 20.0, "cpu_temp_c": 40.0}))

        def musing(seq: int, t: int, text: str) -> None:
            store.add_record(wire.Record(wire.Kind.MUSING, 1, seq, int((START + timedelta(seconds=t)).timestamp()), text))

        t = PAD_S + 3600  # an hour up: 18.1 km, -102.6 °C by the formula (no matter), 12 km/h east
        musing(1, t, f"I am {altitude(t) / 1000:.0f} km up and still climbing, an hour in the air.")
        musing(2, t, "Floating at 30 km, I have been up for 9 hours.")  # false: height, phase, time up
        musing(3, 60, "Waiting on the pad for the launch.")  # true before it
        musing(4, 4 * 3600, "Nothing heard here.")  # after the last position: not judged
    return db


def test_the_ground_knows_its_flight_from_its_own_telemetry(ground):
    placed, records = placed_telemetry(ground)
    track = sorted((e, r) for r, e in placed if r.callsign == "S")
    t0 = track[0][0]
    f = ground_facts(track, [(t0, 30.0), (t0 + PAD_S + 3500, 20.0)], t0 + PAD_S + 3600)
    assert f.phase == "ascent" and f.alt_m == altitude(PAD_S + 3600)
    assert f.rate_m_s == pytest.approx(CLIMB)
    assert f.speed_kmh == pytest.approx(12.4, abs=0.5)  # 0.00005°/s of longitude at 52° N
    # the launch is the first position 150 m above the first one: 30 s late at 5 m/s, a minute's rows
    assert f.aloft_s == pytest.approx(3600 - 120, abs=60)
    assert f.distance_km == pytest.approx(12.4, abs=0.3)
    assert f.box_temp_c == 20.0 and f.batt_v == 7.4
    pad = ground_facts(track, [], t0 + 60)
    assert pad.phase == "pre-launch" and pad.aloft_s == 0.0 and pad.box_temp_c is None
    assert ground_facts(track, [], t0 - 3600) is None  # no position near it


def test_the_ground_finds_the_false_claims_in_what_it_heard(ground):
    g = ground_claims(ground)
    assert g["musings_judged"] == 3  # the fourth came after the last position
    said = {(f["seq"], f["kind"]) for f in g["first_false"]}
    assert said == {(2, "altitude"), (2, "phase"), (2, "time_aloft")}
    assert g["false"] == 3
    assert g["by_kind"]["altitude"] == {"made": 2, "true": 1, "false": 1}
    assert g["by_kind"]["phase"]["true"] == 2  # "climbing" an hour up, "launch" on the pad
    assert "request" not in g["by_kind"]  # a question's outcome is not known at the ground


def test_the_report_says_both_counts(ground, tmp_path):
    _log(tmp_path / "payload.log",
         {"event": "musing", "seq": 1, "text": "a", "claims": {"altitude": [1, 0]}},
         {"event": "musing_untrue", "action": "held back", "text": "d", "claims": {"altitude": [0, 1]}})
    section = claims_section(tmp_path)
    lines = describe_claims(section)
    assert lines[0].startswith("  claims     2 made, 1 true; the guard caught 1 false (0 musings cut, 1 held back); "
                               "aired false: 0 by the payload's count, 3 by the ground's telemetry "
                               "(3 musings judged)")
    assert "altitude 1/2 (1 caught)" in lines[1]
    assert 'false at the ground: altitude "30 km" in musing 2' in "\n".join(lines)


def test_a_ground_that_first_heard_the_balloon_aloft_knows_it_is_climbing(ground):
    """No position from the pad: the track starts in the climb, and the ground says ascent there,
    not pre-launch, with no time aloft to hold a claim to (seed 3 of the Pi configuration)."""
    placed, _ = placed_telemetry(ground)
    track = sorted((e, r) for r, e in placed if r.callsign == "S")
    aloft = [(e, r) for e, r in track if e >= track[0][0] + PAD_S + 60]
    f = ground_facts(aloft, [], aloft[1][0])
    assert f.phase == "ascent" and f.aloft_s is None
    assert [c.true for c in claims("I'm still going up.", f)] == [True]
