"""Signed sentences and one trust boundary (issue 50, items 1 and 2): every ``$$`` line the payload
keys carries the flight's tag; a listener with the key takes a sentence as the flight's only when
the tag checks, and keeps every other one apart as a claim — out of the track, the latest
position, the maximum altitude, the prediction, the uploads, the link report and the flight's
name — whoever speaks first or loudest; quotas never refuse what the flight signed.

Frames are made as the balloon and as a forger make them; the community's own readers (a LoRa
gateway's rules, horusdemodlib) read the signed lines; the ground is `listen`'s decoder and
database, then the real `listen` process, its SondeHub upload and `export`.
"""

from __future__ import annotations

import random
import re
from datetime import datetime, timedelta, timezone

import gpxpy
import pytest
from horusdemodlib.decoder import parse_ukhas_string

from groundstation.frame_quota import FrameBudget, FrameQuota
from groundstation.link.decoder import FrameDecoder
from groundstation.predict import Chase, Landing
from groundstation.store import GroundReader, Store
from groundstation.web import api
from stratoecho import wire
from stratoecho.wire import gateway_rules
from stratoecho.wire.downlink import DownlinkAuth, fingerprint
from stratoecho.wire.relay import encode_relayed
from stratoecho.wire.sentence_tag import TAG_ALPHABET, TAG_CHARS
from tests.fakes import AUTH, write_flight_key
from tests.test_exports import server  # noqa: F401 - the fake SondeHub
from tests.test_gateway_rules import gateway_reads

CALL, BOOT = "STRATO1", 1
T0 = datetime(2026, 6, 21, 9, 0, tzinfo=timezone.utc)
OTHER = DownlinkAuth.from_flight_key(bytes(range(32)))  # another flight's key


def position(seq: int, lat0: float = 52.2, climb: int = 300) -> wire.Telemetry:
    hms = (T0 + timedelta(seconds=60 * seq)).strftime("%H:%M:%S")
    return wire.Telemetry(CALL, seq, hms, lat0 + 0.004 * seq, 0.12 + 0.004 * seq, 500 + climb * seq, 9,
                          10.0, 900.0, 3900, BOOT)


def signed(seq: int) -> bytes:
    return wire.encode_sentence(position(seq), AUTH)


def forged(seq: int, rng: random.Random) -> bytes:
    """The forger's line under the same number: far to the south, 1 m higher, or with a tag of its
    own making (random, or made with another flight's key)."""
    how = seq % 3
    if how == 0:
        return wire.encode_sentence(position(seq, lat0=40.0))
    if how == 1:
        return wire.encode_sentence(position(seq, climb=301), OTHER)
    line = wire.encode_sentence(position(seq, lat0=41.0), AUTH).decode()
    fake = "".join(rng.choice(sorted(TAG_ALPHABET)) for _ in range(TAG_CHARS))
    return _with_crc(re.sub(r",[A-Z2-7]{10},", f",{fake},", line[2:line.index("*")]))


def _with_crc(body: str) -> bytes:
    return f"$${body}*{wire.crc16_ccitt(body.encode()):04X}\n".encode()


def keyed_store(path, auth: DownlinkAuth | None = AUTH) -> Store:
    store = Store(path)
    store.set_trust(fingerprint(auth.key) if auth is not None else None)
    return store


def hear(store: Store, decoder: FrameDecoder, frames: list[bytes]) -> None:
    for i, f in enumerate(frames):
        result = decoder.feed(f, T0)
        if result.record is not None:
            store.add(result.record, (T0 + timedelta(seconds=i)).isoformat(), result.authentic)
    store.commit()


# --------------------------------------------------------------------------- the line on air

def test_a_signed_sentence_reads_as_before_to_a_gateway_and_horusdemodlib():
    for seq in (0, 7, 99):
        line = signed(seq)
        assert gateway_rules.check_line(line) == []
        t = position(seq)
        got = gateway_reads(line.decode())
        assert (got["callsign"], got["seq"], got["alt"], got["sats"]) == (CALL, seq, t.alt, 9)
        assert got["ext_temperature"] == 10.0 and got["pressure"] == 900.0 and got["batt"] == 3.9
        parsed = parse_ukhas_string(line.decode())
        assert (parsed["callsign"], parsed["sequence_number"], parsed["altitude"]) == (CALL, seq, t.alt)
        assert wire.decode_sentence(line) == wire.decode_sentence(wire.encode_sentence(t))  # the tag is no reading
        assert line.decode().rsplit(",", 1)[1].startswith("0123456BR9IJ*")  # J names the tag; the list stays last
    assert len(signed(7)) - len(wire.encode_sentence(position(7))) == 12  # what the air plan prices


def test_the_tag_binds_every_character_of_the_line():
    line = signed(7).decode()
    body = line[2:line.index("*")]
    assert wire.sentence_signed(signed(7), AUTH) and not wire.sentence_signed(signed(7), OTHER)
    assert not wire.sentence_signed(wire.encode_sentence(position(7)), AUTH)  # unsigned: a claim
    tag_at = body.index(",", body.index(",3900,1,") + 6) + 1
    for i, c in enumerate(body):
        if tag_at <= i < tag_at + TAG_CHARS:
            continue
        for other in {"5", "A", "."} - {c}:
            changed = _with_crc(body[:i] + other + body[i + 1:])
            assert not wire.sentence_signed(changed, AUTH), (i, c, other)
    relabelled = _with_crc(body.replace("0123456BR9IJ", "0123456RB9IJ"))  # pressure read as temperature
    assert not wire.sentence_signed(relabelled, AUTH)


def test_a_tag_never_starts_a_field_list_nor_holds_what_a_gateway_splits_on():
    assert not TAG_ALPHABET & set("01,*$\"\\")  # "012345" can never open one
    rng = random.Random(5)
    for _ in range(300):
        t = wire.Telemetry(CALL, rng.randrange(10**6), "12:00:00", rng.uniform(-90, 90), rng.uniform(-180, 180),
                           rng.randrange(40_000), 8, 1.0, 2.0, 3000, 1)
        assert gateway_rules.check_line(wire.encode_sentence(t, AUTH)) == []


def test_musing_sentences_are_signed_and_signed_again_when_restamped():
    lines = wire.encode_musing_sentences(CALL, 7, T0, 52.1, -0.1, 1000, BOOT, 5, "the sky is black " * 12,
                                         made=T0, auth=AUTH)
    assert len(lines) > 1 and all(wire.musing_signed(x, AUTH) and not wire.musing_signed(x, OTHER) for x in lines)
    again = wire.restamp(lines[0], 9, T0 + timedelta(minutes=2), 52.2, -0.2, 3000, AUTH)
    assert wire.musing_signed(again, AUTH) and gateway_rules.check_line(again) == []
    unsigned = wire.restamp(lines[0], 9, T0 + timedelta(minutes=2), 52.2, -0.2, 3000)
    assert not wire.musing_signed(unsigned, AUTH) and wire.sign_line(unsigned, AUTH) == again
    text = wire.decode_musing_sentence(again).text
    swapped = again.replace(text.encode(), text.replace("sky", "sea").encode())
    assert not wire.musing_signed(_with_crc(swapped.decode()[2:swapped.index(b"*")]), AUTH)


def test_the_payload_keys_every_dollar_line_signed(faulty_flight_dir):
    out = faulty_flight_dir
    auth = wire.downlink.load_auth(out / "uplink.key")
    frames = [bytes.fromhex(h) for h in (out / "air.hex").read_text().split()]
    lines = [f for f in frames if f.startswith(b"$$")]
    assert len(lines) > 30 and all(wire.classify(f).signed_by(auth) for f in lines)
    assert gateway_rules.check_air(frames) == []


@pytest.fixture(scope="module")
def faulty_flight_dir(tmp_path_factory):
    from sim.bench.fly import FlyOptions, fly

    out = tmp_path_factory.mktemp("signed")
    fly(FlyOptions(out=out, persona=None, minutes=25, speedup=None, quiet=True))
    return out


# --------------------------------------------------------------------------- the ground's one boundary

def test_a_forger_who_speaks_first_under_every_number_owns_nothing(tmp_path):
    rng = random.Random(1)
    store = keyed_store(tmp_path / "g.db")
    hear(store, FrameDecoder(auth=AUTH), [forged(seq, rng) for seq in range(12)] + [signed(seq) for seq in range(12)])
    store.close()
    with GroundReader.open(tmp_path / "g.db") as db:
        assert [r.seq for r in db.track.telemetry()] == list(range(12)) and all(r.authentic for r in db.track.telemetry())
        assert [(r.lat, r.alt) for r in db.track.telemetry()] == [(round(position(s).lat, 5), position(s).alt)
                                                            for s in range(12)]
        assert db.track.latest_position().seq == 11 and db.track.max_altitude() == position(11).alt
        claims = db.flight.claims()
        assert claims["keyed"] and claims["callsign"] == CALL
        assert claims["unsigned_under_callsign"] == 0  # each number's claims gave way to the line the flight signed
        assert api.summary(db)["latest"]["seq"] == 11
        chase = Chase(burst_alt_m=30000, descent_rate_m_s=5.0)
        honest = Landing(chase)([r for r in db.track.telemetry()])
    clean = keyed_store(tmp_path / "clean.db")
    hear(clean, FrameDecoder(auth=AUTH), [signed(seq) for seq in range(12)])
    clean.close()
    with GroundReader.open(tmp_path / "clean.db") as db:
        assert Landing(chase)(db.track.telemetry()) == honest  # the prediction is the flight's alone


def test_claims_never_name_the_flight_and_before_the_first_signed_line_it_has_no_track(tmp_path):
    rng = random.Random(2)
    store = keyed_store(tmp_path / "g.db")
    hear(store, FrameDecoder(auth=AUTH), [forged(seq, rng) for seq in range(40)])
    with GroundReader.open(tmp_path / "g.db") as db:
        assert db.flight.callsign() is None and db.track.telemetry() == [] and db.track.latest_position() is None
        assert db.flight.claims()["other_callsigns"] == {CALL: 40}  # kept, and shown apart
    hear(store, FrameDecoder(auth=AUTH), [signed(40)])
    store.close()
    with GroundReader.open(tmp_path / "g.db") as db:
        assert db.flight.callsign() == CALL and [r.seq for r in db.track.telemetry()] == [40]


def test_a_station_without_a_key_says_it_believes_anyone(tmp_path):
    store = keyed_store(tmp_path / "g.db", None)
    hear(store, FrameDecoder(), [wire.encode_sentence(position(seq, lat0=40.0)) for seq in range(3)])
    store.close()
    with GroundReader.open(tmp_path / "g.db") as db:
        assert db.flight.trust()["keyed"] is False and db.flight.claims()["keyed"] is False
        assert [r.lat for r in db.track.telemetry()][0] == 40.0  # the forger's track is the flight's: said plainly


def test_nothing_the_flight_signed_is_refused_by_a_quota_before_or_after_a_restart(tmp_path):
    quota = FrameQuota(source_bytes=20_000, total_bytes=40_000)
    budget = FrameBudget(quota)
    rng = random.Random(3)
    flood = [forged(seq, rng) for seq in range(200)]
    admitted = [budget.admit(f, f"udp 10.0.0.{i % 2}:1", None) for i, f in enumerate(flood)]
    assert not all(admitted)  # the flood filled both shares
    assert all(budget.admit(signed(s), "udp 10.0.0.1:1", None, vouched=signed(s)) for s in range(300, 310))
    restarted = FrameBudget(quota, {"udp 10.0.0.1:1": 20_000, "udp 10.0.0.0:1": 20_000})  # counted from the file
    assert all(restarted.admit(signed(s), "udp 10.0.0.1:1", None, vouched=signed(s)) for s in range(310, 320))
    assert not restarted.admit(forged(321, rng), "udp 10.0.0.1:1", None)


def test_one_captured_cue_in_ever_new_envelopes_is_one_frame_past_the_quota():
    cue = wire.encode_window(wire.Window(BOOT, 4, 0x1234, 240, 20), AUTH)
    budget = FrameBudget(FrameQuota(source_bytes=0, total_bytes=0))
    rng = random.Random(4)
    kept = 0
    for _ in range(200):
        envelope = encode_relayed(cue, rng.randrange(1 << 16), 1, DownlinkAuth(rng.randbytes(32)))
        kept += budget.admit(envelope, "udp 10.0.0.9:1", None, vouched=cue)
    assert kept == 1


# --------------------------------------------------------------------------- the real listener

def test_against_listen_its_sondehub_upload_and_export(tmp_path, server):  # noqa: F811
    from groundstation.__main__ import main

    key = tmp_path / "flight.key"
    write_flight_key(key)
    now = datetime.now(timezone.utc).replace(microsecond=0)

    def fresh(seq: int, lat0: float = 52.2) -> wire.Telemetry:
        t = position(seq, lat0)
        return wire.Telemetry(**{**t.__dict__, "time": (now - timedelta(seconds=60 * (20 - seq))).strftime("%H:%M:%S")})

    first = [wire.encode_sentence(fresh(seq, lat0=40.0)) for seq in range(20)]  # the forger speaks first
    real = [wire.encode_sentence(fresh(seq), AUTH) for seq in range(20)]
    air = tmp_path / "air.hex"
    air.write_text("".join(f"{f.hex()}\n{r.hex()}\n" for f, r in zip(first, real)))
    db = tmp_path / "g.db"
    assert main(["listen", "--replay", str(air), "--db", str(db), "--flight-key", str(key), "--quiet",
                 "--sondehub-uploader", "M0ABC", "--sondehub-url", server.url]) == 0
    uploaded = server.objects()
    assert len(uploaded) == 20 and {round(o["lat"]) for o in uploaded} == {52}  # only what the flight signed
    gpx_path = tmp_path / "track.gpx"
    assert main(["export", "--db", str(db), "--format", "gpx", "--out", str(gpx_path)]) == 0
    points = gpxpy.parse(gpx_path.read_text()).tracks[0].segments[0].points
    assert len(points) == 20 and all(52 < p.latitude < 53 for p in points)
    with GroundReader.open(db) as ground:
        assert ground.flight.trust()["keyed"] and ground.flight.claims()["callsign"] == CALL


def test_a_full_quota_refuses_no_signed_sentence_before_or_after_a_restart(tmp_path):
    import socket
    import sqlite3
    import time
    from contextlib import closing

    from sim.bench.measure.listen_flood import SENDERS, ListenProcess, flood

    key, db = tmp_path / "flight.key", tmp_path / "g.db"
    write_flight_key(key)
    args = ("--flight-key", str(key), "--source-quota-mb", "0.02", "--quota-total-mb", "0.05")

    def stored() -> int:
        with closing(sqlite3.connect(db, timeout=10)) as c:
            return c.execute("SELECT count(*) FROM telemetry WHERE authentic = 1").fetchone()[0]

    def send_until_stored(listen, seqs: range) -> None:
        started = time.monotonic()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            tx.bind(("127.0.0.1", 0))  # a sender whose share and the total are full
            while stored() < seqs.stop:
                assert time.monotonic() - started < 120, f"{stored()} of {seqs.stop} signed sentences stored"
                for seq in seqs:
                    tx.sendto(signed(seq), listen.address)
                time.sleep(0.2)  # what a busy socket dropped goes again

    listen = ListenProcess(db, *args)
    try:
        round_n = 0
        while len({e["source"] for e in listen.events("frames past the storage quota not stored")}) < SENDERS:
            flood(listen.address, SENDERS * 20, seed=round_n)  # junk, until every address was refused
            round_n += 1
            time.sleep(0.05)
        send_until_stored(listen, range(10))
    finally:
        assert listen.stop()[0] == 0
    again = ListenProcess(db, *args)  # the budget is counted from the file: full at once
    try:
        send_until_stored(again, range(20))
    finally:
        assert again.stop()[0] == 0
    with GroundReader.open(db) as ground:
        assert [r.seq for r in ground.track.telemetry()] == list(range(20))


def test_the_aggregator_takes_the_flights_signed_lines_from_one_station_and_colluders_make_no_track(tmp_path):
    from groundstation.network import Aggregator
    from tests.test_network_flood import Clock, frame_message

    db = tmp_path / "all.db"
    agg = Aggregator("127.0.0.1", 1, db, downlink=AUTH, clock=Clock())  # quorum 2: two stations for a claim
    n = 0
    for seq in range(10):
        line = forged(seq, random.Random(seq))  # two colluding stations agree on every forged line
        agg._handle(*frame_message("evil1", n := n + 1, line))
        agg._handle(*frame_message("evil2", n := n + 1, line))
        agg._handle(*frame_message("hill", n := n + 1, signed(seq)))  # one honest station is enough
    agg.store.commit()
    agg.store.close()
    with GroundReader.open(db) as ground:
        assert ground.flight.trust()["keyed"]
        assert [(r.seq, r.lat) for r in ground.track.telemetry()] == [(s, round(position(s).lat, 5)) for s in range(10)]
