"""The landing prediction (groundstation/predict.py): on a flight with a known answer worked by
hand, then on bench-world flights (sim/world/flight.py) whose real landing is known: the prediction
made at 5 km on the way down lands near it and its ellipse holds it; the parachute's rate and
the burst are read from the track; the crew's numbers (distance, bearing, elevation)."""

from __future__ import annotations

import math

import pytest

from groundstation import predict as P
from sim.world.flight import Flight, FlightPlan
from stratoecho import atmosphere
from stratoecho.geo import bearing_deg, distance_m, elevation_deg, moved
from tests.test_dashboard import browser, browser_only  # noqa: F401  (the shared headless Chromium)


def track(flight: Flight, until_s: float, every_s: float = 30.0) -> list[P.Fix]:
    fixes, t = [], 0.0
    while t <= until_s:
        s = flight.state_at(t)
        fixes.append(P.Fix(t, s.lat, s.lon, s.alt_m))
        t += every_s
    return fixes


def when_down_to(flight: Flight, alt_m: float) -> float:
    t = flight.ascent_s
    while flight.altitude_m(t) > alt_m:
        t += 5.0
    return t


def test_a_steady_wind_and_known_rates_give_the_landing_worked_by_hand():
    # 5 m/s up through a steady 10 m/s westerly, seen to 10 km; burst at 12 km; parachute 5 m/s.
    lat0, lon0 = 52.0, 0.0
    fixes = [P.Fix(t, *moved(lat0, lon0, 10.0 * t, 0.0), 5.0 * t) for t in range(0, 2001, 20)]
    p = P.predict(fixes, burst_alt_m=12_000, ground_alt_m=0.0, samples=0)
    assert p.phase == "ascent" and not p.burst_seen and p.layers == 20
    assert p.vertical_rate_m_s == pytest.approx(5.0) and p.burst_in_s == pytest.approx(400.0)
    # The fall from 12 km at v0 * sqrt(rho0 / rho(h)), integrated finely here.
    fall, h = 0.0, 12_000.0
    while h > 0:
        rate = 5.0 * math.sqrt(P.RHO0 / atmosphere.density_kg_m3(h - 0.5))
        fall += 1.0 / rate
        h -= 1.0
    east = 10.0 * (2000 + 400 + fall)
    lat, lon = moved(lat0, lon0, east, 0.0)
    assert distance_m(p.lat, p.lon, lat, lon) < 0.002 * east
    assert p.landing_in_s == pytest.approx(400 + fall, rel=0.002)


@pytest.mark.parametrize("seed", [11, 12])
def test_at_5_km_on_the_way_down_it_lands_near_the_real_landing_inside_its_ellipse(seed):
    flight = Flight(FlightPlan(seed=seed, descent_rate_sea_level_m_s=6.5, ascent_rate_m_s=4.5))
    fixes = track(flight, when_down_to(flight, 5_000))
    p = P.predict(fixes, seed=1)
    landing = flight.position(flight.duration_s)
    assert p.phase == "descent" and p.burst_seen and p.burst_alt_m == pytest.approx(flight.burst_alt_m, abs=200)
    assert p.descent_rate_measured and p.descent_rate_m_s == pytest.approx(6.5, rel=0.03)
    miss = distance_m(p.lat, p.lon, *landing)
    assert miss < 500, miss
    assert miss < p.ellipse.semi_major_m
    assert p.landing_in_s == pytest.approx(flight.duration_s - fixes[-1].t_s, rel=0.05)
    assert p == P.predict(fixes, seed=1)  # the same fixes, the same prediction


def test_during_the_ascent_the_burst_is_the_expected_one_until_the_balloon_passes_it():
    flight = Flight(FlightPlan(seed=3, burst_alt_m=33_000))
    at_20km = track(flight, flight.ascent_s * 0.6)
    p = P.predict(at_20km, burst_alt_m=30_000, samples=20)
    assert p.phase == "ascent" and p.burst_alt_m == 30_000 and p.burst_in_s > 0
    assert p.ellipse.semi_major_m > 1_000  # an unseen burst and an unmeasured parachute: wide
    above = track(flight, flight.ascent_s - 60)
    p = P.predict(above, burst_alt_m=30_000, samples=20)
    assert p.burst_alt_m == pytest.approx(above[-1].alt_m + P.BURST_MARGIN_M)


def test_landed_and_too_little():
    flight = Flight(FlightPlan(seed=4))
    fixes = track(flight, flight.duration_s + 600)
    p = P.predict(fixes)
    assert p.phase == "landed" and (p.lat, p.lon) == (fixes[-1].lat, fixes[-1].lon) and p.landing_in_s == 0
    assert P.predict(fixes[:2]) is None  # two fixes
    assert P.predict([P.Fix(0, 52, 0, 100), P.Fix(20, 52, 0, 200), P.Fix(40, 52, 0, 300)]) is None  # 40 s
    # out of order and repeated fixes are the same fixes
    shuffled = fixes[::-1] + fixes[:5]
    assert P.predict(shuffled) == p
    with pytest.raises(ValueError):
        P.predict(fixes, burst_alt_m=0)


def test_distance_bearing_and_elevation_for_the_crew():
    # One degree of latitude north: 111.2 km at bearing 0.
    assert distance_m(52.0, 0.0, 53.0, 0.0) == pytest.approx(111_195, rel=1e-3)
    assert bearing_deg(52.0, 0.0, 53.0, 0.0) == pytest.approx(0.0)
    assert bearing_deg(52.0, 0.0, 52.0, 1.0) == pytest.approx(89.6, abs=0.1)  # east, curving north
    # 30 km up, 100 km away: above the horizon by less than the flat-earth 16.7 degrees (the curve)
    flat = math.degrees(math.atan2(30_000, 100_000))
    e = elevation_deg(52.0, 0.0, 0.0, *moved(52.0, 0.0, 0.0, 100_000), 30_000)
    assert 0 < e < flat and e == pytest.approx(16.3, abs=0.2)
    # a balloon at 30 km beyond 620 km is below the horizon
    assert elevation_deg(52.0, 0.0, 0.0, *moved(52.0, 0.0, 0.0, 700_000), 30_000) < 0


def test_the_bench_measures_errors_against_real_landings():
    from sim.bench.measure import prediction as B

    result = B.run(range(10_000, 10_003))
    assert set(result) == {"burst", "5 km"} and result["burst"]["flights"] == 3
    # the prediction at 5 km knows the parachute and the burst: far closer than at burst
    assert result["5 km"]["median_km"] < result["burst"]["median_km"]
    assert result["5 km"]["p90_km"] < 1.0 and result["5 km"]["inside"] == 1.0


def test_watch_shows_the_landing_and_the_crews_numbers(tmp_path):
    """A flight heard to 5 km on the way down, in a real ground database, through `watch`."""
    from groundstation.store import GroundReader, Store
    from groundstation.watch import Watcher
    from stratoecho import wire

    flight = Flight(FlightPlan(seed=21))
    fixes = track(flight, when_down_to(flight, 5_000))
    with Store(tmp_path / "flight.db") as store:
        for seq, f in enumerate(fixes):
            when = flight.utc(f.t_s)
            store.add_telemetry(wire.Telemetry("STRATO1", seq, when.strftime("%H:%M:%S"), round(f.lat, 5),
                                               round(f.lon, 5), int(f.alt_m), 9, -20.0, 500.0, 4000, 1),
                                received_at=(when.isoformat(timespec="milliseconds")))
    home = (flight.plan.launch_lat, flight.plan.launch_lon, flight.plan.launch_alt_m)
    watcher = Watcher(plain=False, chase=P.Chase(burst_alt_m=30_000, home=home))
    with GroundReader.open(tmp_path / "flight.db") as ground:
        screen = watcher.step(ground, width=160)
        assert watcher.step(ground, width=160) == screen  # nothing new: the same prediction, not computed again
    landing_line = next(line for line in screen.split("\x1b[K\n") if line.startswith("Landing"))
    lat, lon = (float(x) for x in landing_line.split()[1].split(","))
    assert distance_m(lat, lon, *flight.position(flight.duration_s)) < 500
    assert "burst" in landing_line and "seen" in landing_line and "parachute 5.0 m/s measured" in landing_line
    from_you = next(line for line in screen.split("\x1b[K\n") if line.startswith("From you"))
    assert "balloon" in from_you and "° up" in from_you and "landing" in from_you
    plain = Watcher(plain=True).step(GroundReader.open(tmp_path / "flight.db"))
    assert " landing " in plain and " km in " in plain


# --------------------------------------------------------------------------- the dashboard


def test_the_dashboard_serves_the_prediction_and_the_station_numbers(tmp_path):
    import json
    import threading
    import urllib.request

    from groundstation.web import serve
    from tests.test_dashboard import build_ground_db

    db = tmp_path / "ground.db"
    build_ground_db(db)
    stop = threading.Event()
    server = serve(db, "127.0.0.1", 0, stop, chase=P.Chase(burst_alt_m=12_000, home=(52.1, 0.0, 80.0)))
    try:
        with urllib.request.urlopen(server.url + "api/prediction", timeout=10) as r:
            p = json.load(r)
    finally:
        stop.set()
    assert p["phase"] == "ascent" and p["burst_alt_m"] == 12_000 and not p["burst_seen"]
    assert p["vertical_rate_m_s"] == pytest.approx(15.0, abs=0.1) and p["burst_in_s"] > 0
    assert p["landing_at"] > p["as_of"] and p["ellipse"]["semi_major_m"] >= p["ellipse"]["semi_minor_m"] > 0
    # the wind is north-easterly-going: the landing lies north-east of the last position (52.258, 0.236)
    assert p["lat"] > 52.258 and p["lon"] > 0.236
    st = p["station"]
    assert (st["lat"], st["lon"], st["alt_m"]) == (52.1, 0.0, 80.0)
    assert 0 < st["balloon"]["bearing_deg"] < 90 and st["balloon"]["elevation_deg"] > 0
    assert st["landing"]["distance_m"] > st["balloon"]["distance_m"]


@browser_only
def test_in_chromium_the_map_shows_the_landing_its_ellipse_and_the_crews_numbers(tmp_path, browser):  # noqa: F811
    import threading

    from groundstation.web import serve
    from tests.test_dashboard import build_ground_db, js, open_page, texts, wait

    db = tmp_path / "ground.db"
    build_ground_db(db)
    stop = threading.Event()
    server = serve(db, "127.0.0.1", 0, stop, chase=P.Chase(burst_alt_m=12_000, home=(52.1, 0.0, 80.0)))
    try:
        open_page(browser, server)
        wait(browser, lambda d: js(d, "return document.querySelectorAll('#map path.landing-ellipse').length") == 1,
             "no landing ellipse on the map")
        assert js(browser, "return document.querySelectorAll('#map path.landing, #map path.station').length") == 2
        # the landing and its ellipse are in view, not cut off (fitted with the track when first drawn)
        inside = js(browser, "const e = document.querySelector('#map path.landing-ellipse').getBoundingClientRect();"
                             "const m = document.getElementById('map').getBoundingClientRect();"
                             "return m.left <= e.left && e.right <= m.right && m.top <= e.top && e.bottom <= m.bottom")
        assert inside
        crew = dict(zip(texts(browser, "#crew dt"), texts(browser, "#crew dd")))
        assert crew["burst"].startswith("12,000 m expected, in ")
        assert crew["vertical rate"] == "+15.0 m/s"
        assert " at 0" in crew["balloon from the station"] and "° up" in crew["balloon from the station"]
        assert crew["lands in"].endswith(" UTC)") and crew["parachute"].endswith("(assumed)")
    finally:
        stop.set()


def test_the_feed_predicts_every_so_often_and_starts_again_for_a_new_boot():
    feed = P.FeedLanding(P.Chase(burst_alt_m=12_000), every_s=60)
    lat0, lon0 = 52.0, 0.0
    got = {}
    for t in range(0, 301, 20):  # 5 m/s up through a 10 m/s westerly
        got[t] = feed("STRATO1", 1, 1e9 + t, *moved(lat0, lon0, 10.0 * t, 0.0), 5.0 * t)
    due = [t for t, p in got.items() if p is not None]
    assert due == [60, 120, 180, 240, 300]  # from the third fix on (predict needs three), once a minute
    assert all(got[t].phase == "ascent" and got[t].lon > lon0 for t in due)
    # a new boot is a new flight: its first fixes are too few to predict from
    assert feed("STRATO1", 2, 1e9 + 400, lat0, lon0, 0.0) is None
    assert feed("OTHER", 1, 1e9 + 400, lat0, lon0, 0.0) is None


def test_across_the_antimeridian_the_prediction_is_the_same_as_anywhere_else():
    """A westerly carries the balloon from 179.6 E over 180: the winds are measured the short way
    round, and the landing and its ellipse are those of the same flight at 10 E, moved."""
    from stratoecho.geo import offset_m, wrap_lon

    assert offset_m(-43.9, 179.9, -43.9, -179.9)[0] == pytest.approx(offset_m(-43.9, 0.0, -43.9, 0.2)[0])
    assert moved(-43.9, 179.9, 50_000.0, 0.0)[1] < -179 and wrap_lon(540.0) == -180.0 and wrap_lon(180.0) == 180.0

    def flight(lon0: float) -> P.Prediction:
        fixes = [P.Fix(1e9 + 60 * i, -43.9, wrap_lon(lon0 + 0.12 * i), 200.0 + 300 * i) for i in range(30)]
        return P.predict(fixes, burst_alt_m=12_000, seed=1)

    across, elsewhere = flight(179.6), flight(10.0)
    assert -180 <= across.lon <= 180
    assert wrap_lon(across.lon - 179.6) == pytest.approx(elsewhere.lon - 10.0, abs=1e-6)
    assert across.ellipse.semi_major_m == pytest.approx(elsewhere.ellipse.semi_major_m, rel=1e-6)
