"""Open sentences are claims of their own callsign (issue 41, attack 4): a UKHAS sentence taking a
future number, under another callsign or the flight's own, no longer hides the real position;
a forged HABpack sentence neither renames the flight nor moves its predicted landing; the
dashboard says which callsign the balloon's tag named and what open sentences claim beside it.

Frames are made as the balloon and as a forger make them; the ground is `listen`'s decoder and
database (as a station without the key keeps them: tests/test_signed_sentences.py has the keyed
one), then the real `listen` process over UDP, then the page in the real Chromium.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from datetime import datetime, timedelta, timezone

from groundstation.link.decoder import FrameDecoder
from groundstation.predict import Chase, Landing
from groundstation.store import GroundReader, Store
from groundstation.web import api
from payload.watchdog import boot_banner
from sim.bench.fly.processes import wait_listening
from stratoecho import wire
from tests.fakes import AUTH, wait_for, write_flight_key
from tests.test_dashboard import CHROMIUM, browser, js, texts, wait  # noqa: F401

CALL, BOOT = "STRATO1", 1
T0 = datetime(2026, 6, 21, 9, 0, tzinfo=timezone.utc)
HOSTILE = '<img src="x" class="pwned" onerror="document.body.dataset.pwned=1">'


def position(seq: int, callsign: str = CALL, lat0: float = 52.2, lon_step: float = 0.004) -> wire.Telemetry:
    """The flight climbing north-east, one sentence every 60 s; a forger's under other numbers."""
    hms = (T0 + timedelta(seconds=60 * seq)).strftime("%H:%M:%S")
    return wire.Telemetry(callsign, seq, hms, lat0 + 0.004 * seq, 0.12 + lon_step * seq, 500 + 300 * seq, 9,
                          10.0, 900.0, 3900, BOOT)


def boot_event() -> list[bytes]:
    banner = boot_banner("0.1.0", ("Ada", "3f2a9c1b"), 812, BOOT, "nominal", callsign=CALL)
    return wire.fragment_record(wire.Record(wire.Kind.EVENT, BOOT, 1, int(T0.timestamp()), banner), auth=AUTH)


def hear(store: Store, decoder: FrameDecoder, *frames: bytes) -> None:
    for i, f in enumerate(frames):
        result = decoder.feed(f, T0)
        if result.record is not None:
            store.add(result.record, (T0 + timedelta(seconds=i)).isoformat(), result.authentic)
    store.commit()


def forged_track(until: int) -> list[bytes]:
    """What the forger sends first: sentences under the numbers the balloon will use next, one
    under another callsign and one under the balloon's, both far to the south-west, and a
    HABpack sentence naming itself in markup with a number of its own."""
    return ([wire.encode_sentence(position(seq, "STRAT01", lat0=40.0, lon_step=-0.2)) for seq in range(5, until)]
            + [wire.encode_sentence(position(seq, CALL, lat0=40.0, lon_step=-0.2)) for seq in range(5, until)]
            + [wire.encode_habpack(position(seq, HOSTILE, lat0=30.0)) for seq in range(100, 160)])


def real_track(until: int) -> list[bytes]:
    return [wire.encode_sentence(position(seq)) for seq in range(until)]


def test_forged_future_numbers_hide_no_real_position_and_rename_nothing(tmp_path):
    store, decoder = Store(tmp_path / "g.db"), FrameDecoder(auth=AUTH)
    hear(store, decoder, *boot_event(), *forged_track(12), *real_track(12))
    store.close()
    with GroundReader.open(tmp_path / "g.db") as db:
        track = db.track.telemetry()
        assert {r.callsign for r in track} == {CALL}
        assert [r.seq for r in track] == [0, 1, 2, 3, 4]  # 5..11: two claims each, out of the track
        claims = db.flight.claims()
        assert claims["callsign"] == CALL and claims["callsign_tagged"]  # 60 HABpack sentences rename nothing
        assert claims["other_callsigns"] == {HOSTILE: 60, "STRAT01": 7} and claims["contested_numbers"] == 7
        summary = api.summary(db)
        assert summary["callsign"] == CALL and summary["latest"]["seq"] == 4


def test_a_tagged_late_position_settles_a_contested_number(tmp_path):
    store, decoder = Store(tmp_path / "g.db"), FrameDecoder(auth=AUTH)
    hear(store, decoder, *forged_track(8), *real_track(8))
    late = wire.Record(wire.Kind.TELEMETRY, BOOT, 6, int(T0.timestamp()), wire.encode_sentence(position(6)))
    hear(store, decoder, *wire.fragment_record(late, auth=AUTH))
    store.close()
    with GroundReader.open(tmp_path / "g.db") as db:
        six = [r for r in db.track.telemetry() if r.seq == 6]
        assert len(six) == 1 and six[0].authentic and six[0].lat == round(position(6).lat, 5)
        assert db.flight.claims()["callsign_tagged"]  # the tagged position names the flight too


def test_forged_sentences_do_not_move_the_predicted_landing(tmp_path):
    honest, forged = Store(tmp_path / "honest.db"), Store(tmp_path / "forged.db")
    hear(honest, FrameDecoder(auth=AUTH), *boot_event(), *real_track(12))
    hear(forged, FrameDecoder(auth=AUTH), *boot_event(), *forged_track(12), *real_track(12))
    honest.close()
    forged.close()
    chase = Chase(burst_alt_m=30000, descent_rate_m_s=5.0)
    with GroundReader.open(tmp_path / "honest.db") as a, GroundReader.open(tmp_path / "forged.db") as b:
        p, q = Landing(chase)(a.track.telemetry()), Landing(chase)(b.track.telemetry())
    assert p is not None and q is not None
    # Three fewer points (the contested ones) shift the wind a little; a forger's track would move it by degrees.
    assert abs(p.lat - q.lat) < 0.05 and abs(p.lon - q.lon) < 0.05


def test_against_the_real_listen_process(tmp_path):
    key_path = tmp_path / "uplink.key"
    write_flight_key(key_path)
    log_path = tmp_path / "listen.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "groundstation", "listen", "--udp", "127.0.0.1:0", "--db", str(tmp_path / "g.db"),
         "--flight-key", str(key_path), "--quiet"], stdout=subprocess.DEVNULL, stderr=log_path.open("w"),
        env={**os.environ, "STRATOECHO_LOG_JSON": "1"})
    air = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        port = wait_listening(log_path, proc, "listen")
        frames = boot_event() + forged_track(10) + [wire.encode_sentence(position(seq), AUTH) for seq in range(10)]
        for i in range(0, len(frames), 50):  # in bursts a UDP socket's buffer holds
            for f in frames[i:i + 50]:
                air.sendto(f, ("127.0.0.1", port))
            sent = min(i + 50, len(frames))
            wait_for(lambda sent=sent: _frames_stored(tmp_path) >= sent)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        air.close()
    with GroundReader.open(tmp_path / "g.db") as db:  # with the key, the balloon signs its sentences: all are its
        assert [r.seq for r in db.track.telemetry()] == list(range(10))
        assert db.flight.claims()["callsign"] == CALL and db.flight.claims()["contested_numbers"] == 0


def _frames_stored(tmp_path) -> int:
    try:
        with GroundReader.open(tmp_path / "g.db") as db:
            return db.counts().frames
    except Exception:  # noqa: BLE001 - not made yet, or being written
        return 0


def test_the_page_says_which_callsign_is_tagged_and_shows_claims_as_text(browser, tmp_path):  # noqa: F811
    from tests.test_dashboard_flights import start

    store = Store(tmp_path / "ground.db")
    hear(store, FrameDecoder(auth=AUTH), *boot_event(), *forged_track(8), *real_track(8))
    store.close()
    server = start(tmp_path / "ground.db")
    try:
        browser.get(server.url)
        wait(browser, lambda d: texts(d, "#callsign-from") == ["(named by its signed frames)"],
             "the page never said the callsign is tagged")
        wait(browser, lambda d: HOSTILE in (texts(d, "#claims") or [""])[0], "the claims never showed")
        (claims,) = texts(browser, "#claims")
        assert "3 sentence numbers claimed twice" in claims and "STRAT01 (3)" in claims
        assert texts(browser, "#callsign") == [CALL]
        assert js(browser, "return document.querySelectorAll('img.pwned, [onerror]').length") == 0
    finally:
        server.stop_event.set()
