"""One ground, several balloons on one frequency (issue 33; docs/network.md, 'The ground follows
several flights'): `listen --follow CALLSIGN=FILE` keeps each flight in its own database, a frame
goes to the flight whose key checks its tag or whose callsign it names, a relayed frame's path
is kept in `heard`, and each flight's positions go to SondeHub under its own callsign."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path

import pytest

from groundstation.__main__ import main
from groundstation.exports.sondehub import SondeHubUploader
from groundstation.link.decoder import FrameDecoder
from groundstation.link.flights import Flight, Flights, check_callsign, flight_db_path, heard_path
from stratoecho import wire
from stratoecho.logs import setup_logging
from stratoecho.wire.downlink import DownlinkAuth, Window, derive_downlink_key, encode_window
from stratoecho.wire.relay import encode_relayed
from stratoecho.wire.uplink import payload_hash
from stratoecho.wire.uplink_keys import DOWNLINK, new_key, write_key_file

NEAR, FAR = "NEAR1", "FAR1"
NEAR_KEY, FAR_KEY = new_key(), new_key()
NEAR_AUTH, FAR_AUTH = DownlinkAuth.from_flight_key(NEAR_KEY), DownlinkAuth.from_flight_key(FAR_KEY)
STRANGER_AUTH = DownlinkAuth.from_flight_key(bytes(range(2, 34)))
T0 = 1_780_000_000


@pytest.fixture(autouse=True)
def _logging_to_this_tests_stderr():
    setup_logging()  # structlog keeps the stderr it was configured with: this test's


def musing(auth: DownlinkAuth, seq: int, text: str, mtu: int = 200) -> list[bytes]:
    return wire.fragment_record(wire.Record(wire.Kind.MUSING, 1, seq, T0 + seq, text), mtu, auth=auth)


def position(callsign: str, seq: int, lat: float) -> bytes:
    """The flight's position sentence, signed as its payload keys it."""
    return wire.encode_sentence(wire.Telemetry(callsign=callsign, seq=seq, time="12:00:00", lat=lat, lon=-0.2,
                                               alt=20000 + seq, sats=9, temp_c=-40.0, pressure_hpa=55.0,
                                               batt_mv=3900, boot=1), {NEAR: NEAR_AUTH, FAR: FAR_AUTH}.get(callsign))


def via_near(frame: bytes, auth: DownlinkAuth = NEAR_AUTH) -> bytes:
    return encode_relayed(frame, payload_hash(NEAR), 1, auth)


def rows(db: Path, sql: str) -> list[tuple]:
    with closing(sqlite3.connect(db)) as conn:
        return conn.execute(sql).fetchall()


@pytest.fixture
def keys(tmp_path) -> dict[str, Path]:
    write_key_file(tmp_path / "near.key", key=NEAR_KEY)
    write_key_file(tmp_path / "far.downlink", key=derive_downlink_key(FAR_KEY), kind=DOWNLINK)
    write_key_file(tmp_path / "far.key", key=FAR_KEY)
    write_key_file(tmp_path / "near.downlink", key=derive_downlink_key(NEAR_KEY), kind=DOWNLINK)
    return {"near": tmp_path / "near.key", "far": tmp_path / "far.downlink", "far_flight": tmp_path / "far.key",
            "near_downlink": tmp_path / "near.downlink"}


# --------------------------------------------------------------------------- routing, directly


def two_flights() -> Flights:
    relayers = {payload_hash(NEAR): NEAR_AUTH, payload_hash(FAR): FAR_AUTH}
    return Flights(Flight(None, FrameDecoder(auth=NEAR_AUTH, relayers=relayers)),
                   {FAR: Flight(FAR, FrameDecoder(auth=FAR_AUTH, relayers=relayers))}, relayers,
                   {payload_hash(NEAR): NEAR})


def test_each_frame_goes_to_the_flight_whose_key_or_callsign_it_carries():
    flights = two_flights()
    primary, far = flights.primary, flights.followed[FAR]
    assert flights.route(musing(NEAR_AUTH, 5, "near")[0]) is primary
    assert flights.route(musing(FAR_AUTH, 5, "far")[0]) is far
    assert flights.route(encode_window(Window(1, 3, payload_hash(FAR), 90, 4), FAR_AUTH)) is far
    assert flights.route(position(FAR, 1, 53.0)) is far and flights.route(position(NEAR, 1, 52.0)) is primary
    assert flights.route(position("OTHER", 1, 50.0)) is primary  # nobody followed by that name
    sentences = wire.encode_musing_sentences(FAR, 1, datetime(2026, 5, 1, 12, tzinfo=timezone.utc), 53.0, -0.2, 20000, 1, 9,
                                             "far and quiet")
    assert {flights.route(s) is far for s in sentences} == {True}
    # Inside an envelope: routed by what it carries; a forged envelope or a stranger's tag: the primary's claim.
    assert flights.route(via_near(musing(FAR_AUTH, 6, "relayed")[0])) is far
    assert flights.route(via_near(musing(FAR_AUTH, 6, "forged")[0], STRANGER_AUTH)) is primary
    assert flights.route(musing(STRANGER_AUTH, 6, "nobody's")[0]) is primary
    assert flights.route(b"") is primary and flights.route(b"\x01junk") is primary
    # One flight: everything is the primary's, untouched.
    alone = Flights(Flight(None, FrameDecoder(auth=NEAR_AUTH)))
    assert alone.route(musing(FAR_AUTH, 5, "far")[0]) is alone.primary


def test_names_paths_and_files():
    assert flight_db_path("/data/ground.db", FAR) == Path("/data/ground.FAR1.db")
    assert flight_db_path("ground", FAR) == Path("ground.FAR1")
    assert heard_path("home", payload_hash(NEAR), {payload_hash(NEAR): NEAR}) == "home via NEAR1"
    assert heard_path("home", 0x1A2B, {}) == "home via 0x1A2B"
    assert heard_path("home", None, {}) == "home" and heard_path(None, 0x1A2B, {}) is None
    with pytest.raises(ValueError, match="--follow '../x'"):
        check_callsign("../x", "--follow")


def test_a_record_heard_half_directly_half_relayed_has_a_row_for_each_way():
    flights = two_flights()
    frames = musing(FAR_AUTH, 8, "far and quiet " * 30, mtu=120)
    assert len(frames) >= 3
    paths, records = set(), []
    for i, f in enumerate(frames):
        heard = via_near(f) if i % 2 else f
        flight = flights.route(heard)
        assert flight is flights.followed[FAR]
        result = flight.decoder.feed(heard)
        path = flights.path("home", result.relayed_by)
        if result.record is not None:  # listen keeps the completing frame's path itself
            records.append(result.record)
            paths.add(path)
        paths |= {(row[3]) for row in flight.paths.heard(result, path, f"t{i}")}
    assert len(records) == 1 and paths == {"home", "home via NEAR1"}


# --------------------------------------------------------------------------- listen, end to end


def air(tmp_path: Path) -> Path:
    """NEAR1 (the primary) and FAR1 on one frequency, FAR1 partly only through NEAR1's relay."""
    frames = [
        position(NEAR, 1, 52.1), position(FAR, 1, 53.5),  # the same (boot, seq) in both flights
        *musing(NEAR_AUTH, 5, "near: the sea below"), *musing(FAR_AUTH, 5, "far: mountains"),  # same (boot, seq)
        position(NEAR, 2, 52.2), via_near(position(FAR, 2, 53.6)),  # each after its own musing: its own comment
        *[via_near(f) for f in musing(FAR_AUTH, 6, "far: heard only through NEAR1")],
        *musing(FAR_AUTH, 7, "far: both ways"), *[via_near(f) for f in musing(FAR_AUTH, 7, "far: both ways")],
        via_near(musing(FAR_AUTH, 8, "forged relay")[0], STRANGER_AUTH),  # not NEAR1's envelope
        musing(STRANGER_AUTH, 9, "nobody's")[0],  # a tag no key checks
    ]
    path = tmp_path / "air.hex"
    path.write_text("".join(f.hex() + "\n" for f in frames))
    return path


def test_two_flights_on_one_listen_each_in_its_own_database(tmp_path, keys, capsys, monkeypatch):
    sent: list[dict] = []
    monkeypatch.setattr(SondeHubUploader, "_enqueue", lambda self, obj: sent.append(obj) or True)
    db, stats = tmp_path / "ground.db", tmp_path / "ground.json"
    assert main(["listen", "--replay", str(air(tmp_path)), "--db", str(db), "--flight-key", str(keys["near"]),
                 "--callsign", NEAR, "--follow", f"{FAR}={keys['far']}", "--station", "home", "--json",
                 "--stats", str(stats), "--sondehub-uploader", "M0ABC", "--sondehub-url", "http://127.0.0.1:9/"]) == 0
    out, err = capsys.readouterr()
    far_db = tmp_path / "ground.FAR1.db"
    musings = "SELECT seq, text FROM records WHERE kind = 'musing' ORDER BY seq"
    assert rows(db, musings) == [(5, "near: the sea below")]
    assert rows(far_db, musings) == [(5, "far: mountains"), (6, "far: heard only through NEAR1"),
                                     (7, "far: both ways")]
    positions = "SELECT callsign, seq, lat FROM telemetry ORDER BY seq"
    assert rows(db, positions) == [(NEAR, 1, 52.1), (NEAR, 2, 52.2)]
    assert rows(far_db, positions) == [(FAR, 1, 53.5), (FAR, 2, 53.6)]
    # Which way each came: FAR1's seq 6 only through NEAR1, seq 7 both ways (one record, two rows).
    heard = "SELECT station FROM heard WHERE kind = ? AND seq = ? ORDER BY station"
    assert rows(far_db, heard.replace("?", "'musing'", 1).replace("?", "6")) == [("home via NEAR1",)]
    assert rows(far_db, heard.replace("?", "'musing'", 1).replace("?", "7")) == [("home",), ("home via NEAR1",)]
    assert rows(far_db, heard.replace("?", "'telemetry'", 1).replace("?", "2")) == [("home via NEAR1",)]
    # The forged envelope and the stranger's fragment stay claims in the primary's frames table.
    assert rows(db, "SELECT error FROM frames WHERE ok = 0 ORDER BY id") == [("bad tag",), ("bad tag",)]
    assert rows(far_db, "SELECT count(*) FROM frames WHERE ok = 0") == [(0,)]
    assert rows(far_db, "SELECT count(*) FROM frames WHERE station = 'home via NEAR1'")[0][0] > 0
    # Printed with whose each is; stats and summary per followed flight.
    printed = [json.loads(line) for line in out.splitlines()]
    assert {(r.get("flight"), r["kind"], r["seq"]) for r in printed} >= {(None, "musing", 5), (FAR, "musing", 5)}
    s = json.loads(stats.read_text())
    assert s["records"] == {"telemetry": 2, "musing": 1}
    far = s["flights"][FAR]
    assert far["records"] == {"telemetry": 2, "musing": 3} and far["errors"] == 0 and far["relayed"] > 0
    assert f"flight {FAR}:" in err and "ground.FAR1.db" in err
    # SondeHub: each flight's positions under its own callsign, position and last musing.
    by_call = {(o["payload_callsign"], o["lat"]): o for o in sent}
    assert set(by_call) == {(NEAR, 52.1), (NEAR, 52.2), (FAR, 53.5), (FAR, 53.6)}
    assert "the sea below" in by_call[(NEAR, 52.2)]["comment"] and "mountains" in by_call[(FAR, 53.6)]["comment"]
    assert all(o["uploader_callsign"] == "M0ABC" for o in sent)


def test_a_flight_followed_by_its_flight_key_and_clear_errors(tmp_path, keys, capsys):
    db = tmp_path / "g.db"
    assert main(["listen", "--replay", str(air(tmp_path)), "--db", str(db), "--flight-key", str(keys["near"]),
                 "--follow-flight-key", f"{FAR}={keys['far_flight']}", "--quiet"]) == 0
    # No --callsign: NEAR1's envelopes cannot be checked, so the one a stranger made is read, and
    # what it carries is FAR1's own tagged musing, believed by its own tag (docs/network.md).
    assert [r[0] for r in rows(tmp_path / "g.FAR1.db", "SELECT seq FROM records ORDER BY seq")] == [5, 6, 7, 8]
    capsys.readouterr()
    base = ["listen", "--replay", str(air(tmp_path)), "--db", str(db), "--flight-key", str(keys["near"])]
    assert main(base + ["--follow", FAR]) == 2
    assert "--follow 'FAR1': expected CALLSIGN=FILE" in capsys.readouterr().err
    assert main(base + ["--follow", f"a/b={keys['far']}"]) == 2
    assert "names the flight's database file" in capsys.readouterr().err
    assert main(base + ["--follow", f"{FAR}={tmp_path / 'none.key'}"]) == 1
    assert "none.key" in capsys.readouterr().err
    assert main(base + ["--callsign", NEAR, "--follow", f"{NEAR}={keys['far']}"]) == 2
    assert "followed twice, or is the primary flight" in capsys.readouterr().err


def test_without_follow_nothing_changes(tmp_path, keys, capsys):
    """One flight: the other's sentences land beside ours as ever, its fragments stay claims."""
    db, stats = tmp_path / "g.db", tmp_path / "g.json"
    assert main(["listen", "--replay", str(air(tmp_path)), "--db", str(db), "--flight-key", str(keys["near"]),
                 "--quiet", "--stats", str(stats)]) == 0
    assert not (tmp_path / "g.FAR1.db").exists()
    assert "flights" not in json.loads(stats.read_text()) and "flight " not in capsys.readouterr().err
    assert rows(db, "SELECT seq, text FROM records WHERE kind = 'musing'") == [(5, "near: the sea below")]
    assert rows(db, "SELECT count(*) FROM frames WHERE error = 'bad tag'")[0][0] > 2  # FAR1's fragments


def test_decode_follows_too(tmp_path, keys, capsys):
    assert main(["decode", str(air(tmp_path)), "--flight-key", str(keys["near"]), "--follow", f"{FAR}={keys['far']}",
                 "--relayer-key", f"{NEAR}={keys['near_downlink']}"]) == 0
    out, err = capsys.readouterr()
    printed = [json.loads(line) for line in out.splitlines()]
    assert sorted((r.get("flight", ""), r["seq"]) for r in printed if r["kind"] == "musing") == [
        ("", 5), (FAR, 5), (FAR, 6), (FAR, 7)]  # the forged envelope refused: NEAR1's key checks it
    assert f"decode {FAR}: 6 frames" in err and "bad tag: 2" in err
