"""A station network that trusts no one, against a real mosquitto speaking TLS (certificates made
here with openssl) with a password per station and an ACL that lets each station write only its
own topics: two honest stations' flight is stored whole; a hostile station with a valid login
cannot put anything the payload did not send into the flight's database (its forged frames,
its decoded records, frames published under another station's name); a client without the
password, with a wrong one, or without TLS gets nowhere."""

from __future__ import annotations

import getpass
import json
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from groundstation.network import BrokerAuth, Reconnect, StationPublisher
from groundstation.store import utc_now
from stratoecho import wire
from stratoecho.wire.events import event
from stratoecho.wire.uplink_keys import new_key
from tests.test_network import BOOT, CALLSIGN, FAST, MOSQUITTO, Broker, Running, db_keys, decode_all, flight_frames

OPENSSL = shutil.which("openssl")
PASSWD = shutil.which("mosquitto_passwd")
USERS = {"aggregator": "agg-secret-1", "hill": "hill-secret-2", "harbour": "harbour-secret-3",
         "evil": "evil-secret-4"}


def _run(*cmd: str, cwd: Path) -> None:
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certificates(folder: Path) -> None:
    """A certificate authority, and the broker's certificate for 127.0.0.1 signed by it."""
    _run(OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test club CA",
         "-keyout", "ca.key", "-out", "ca.crt", cwd=folder)
    _run(OPENSSL, "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key",
         "-out", "server.csr", cwd=folder)
    (folder / "san.ext").write_text("subjectAltName = IP:127.0.0.1, DNS:localhost\n")
    _run(OPENSSL, "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
         "-days", "2", "-extfile", "san.ext", "-out", "server.crt", cwd=folder)


class SecureBroker(Broker):
    """test_network's mosquitto, with TLS, a password per user and the ACL docs/ground.md gives."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        make_certificates(folder)
        passwd = folder / "passwd"
        for i, (user, password) in enumerate(USERS.items()):
            _run(PASSWD, "-b", *(["-c"] if i == 0 else []), str(passwd), user, password, cwd=folder)
        (folder / "acl").write_text(
            "user aggregator\ntopic read stratoecho/#\n\n"
            # every other user: its own topics only (%u is the user name)
            "pattern write stratoecho/+/frames/%u\npattern write stratoecho/+/records/%u\n"
            "pattern write stratoecho/status/%u\npattern write stratoecho/position/%u\n")
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            f"cafile {folder}/ca.crt\ncertfile {folder}/server.crt\nkeyfile {folder}/server.key\n"
            f"allow_anonymous false\npassword_file {passwd}\nacl_file {folder}/acl\n"
            f"user {getpass.getuser()}\n")
        for name in ("passwd", "acl", "server.key"):  # mosquitto 2 refuses world-readable secrets
            (folder / name).chmod(0o600)

    def auth(self, user: str, password: str | None = None) -> BrokerAuth:
        pw = self.folder / f"{user}.password"
        pw.write_text((password or USERS[user]) + "\n")
        pw.chmod(0o600)
        return BrokerAuth.from_files(user, pw, self.folder / "ca.crt", tls=True)


@pytest.fixture
def secure_broker(tmp_path):
    for tool, path in (("mosquitto", MOSQUITTO), ("openssl", OPENSSL), ("mosquitto_passwd", PASSWD)):
        if not path or not Path(path).exists():
            pytest.skip(f"{tool} is not installed")
    broker = SecureBroker(tmp_path)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def hostile_client(broker: SecureBroker) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="evil-raw")
    client.username_pw_set("evil", USERS["evil"])
    client.tls_set(ca_certs=str(broker.folder / "ca.crt"))
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    return client


def message(hex_frame: str, n: int) -> bytes:
    return json.dumps({"v": 1, "id": f"evil:{n}", "received_at": utc_now(), "hex": hex_frame}).encode()


def test_a_hostile_station_with_a_login_cannot_put_anything_in_the_flight(secure_broker, tmp_path):
    broker = secure_broker
    frames = flight_frames()
    db = tmp_path / "flight.db"
    run = Running(broker, db, auth=broker.auth("aggregator"))  # quorum 2, nobody trusted
    run.wait_subscribed()

    # The hostile station: a forged position (a valid sentence the payload never sent), a forged
    # event, decoded records, and frames published under another station's name.
    fake_position = wire.encode_sentence(wire.Telemetry(CALLSIGN, 999, "11:11:11", 48.85, 2.35, 31000, 9, -50.0, 10.0,
                                                        3900, BOOT))
    cut_down = wire.fragment_record(wire.Record(wire.Kind.EVENT, BOOT, 77, 1_700_000_000,
                                                event("store_fault", detail="CUT DOWN NOW")), parity=0,
                                   auth=wire.DownlinkAuth.from_flight_key(new_key()))  # any key but the flight's
    evil = hostile_client(broker)
    sent = [fake_position, *cut_down]
    for n, frame in enumerate(sent):
        for copy in range(2):  # again and again: one station is still one station
            evil.publish("stratoecho/SE1/frames/evil", message(frame.hex(), 10 * n + copy), qos=1).wait_for_publish(5)
        evil.publish("stratoecho/SE1/frames/hill", message(frame.hex(), 100 + n), qos=1).wait_for_publish(5)
    record = wire.Record(wire.Kind.MUSING, BOOT, 55, 1_700_000_000, "I am not the balloon").as_dict()
    evil.publish("stratoecho/SE1/records/evil",
                 json.dumps({"v": 1, "id": "evil:r", "received_at": utc_now(), "record": record}), qos=1
                 ).wait_for_publish(5)

    # Two honest stations, not trusted either, hear the real flight.
    places = {"hill": (52.1, 0.0, 80.0), "harbour": (52.9, 1.3, 4.0)}
    honest = {name: StationPublisher("127.0.0.1", broker.port, name, reconnect=FAST, auth=broker.auth(name),
                                     position=places[name]) for name in ("hill", "harbour")}
    for pub in honest.values():
        for f in frames:
            pub.publish_frame(f, utc_now())
    for pub in honest.values():
        assert pub.flush(20), f"{pub.station}: {pub.pending()} messages never acknowledged"
        pub.close()
    # Then the hostile station says hill is somewhere it is not (after hill said where it is: the
    # broker must drop it, not the order), and where it is itself (its own word).
    for station, lat in (("hill", 10.0), ("evil", 11.0)):
        evil.publish(f"stratoecho/position/{station}",
                     json.dumps({"v": 1, "station": station, "lat": lat, "lon": 20.0, "alt_m": 5.0}), qos=1,
                     retain=True).wait_for_publish(5)
    expected_messages = 2 * len(frames) + 2 * len(sent) + 1 + 3  # the impersonations never reach it
    assert run.wait_for(lambda s: s.messages >= expected_messages and s.positions == 3), run.agg.stats
    time.sleep(0.5)
    evil.disconnect()
    evil.loop_stop()
    run.finish()
    stats = run.agg.stats

    records, telemetry = db_keys(db)
    assert set(records + telemetry) == decode_all(frames)  # the whole real flight, nothing else
    assert ("telemetry", BOOT, 999) not in telemetry and ("event", BOOT, 77) not in records
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT count(*) FROM records WHERE text LIKE '%CUT DOWN%' OR text LIKE '%not the balloon%'"
                         ).fetchone()[0] == 0
        frame_rows = c.execute("SELECT hex, station FROM frames").fetchall()
        heard = {r[0] for r in c.execute("SELECT DISTINCT station FROM heard")}
    forged = {f.hex() for f in sent}
    # the forgeries are kept only as evil's own claims; nothing reached the aggregator under hill's name
    assert {station for hex_, station in frame_rows if hex_ in forged} == {"evil"}
    assert heard == {"hill", "harbour"}
    with sqlite3.connect(db) as c:  # each station's position is its own word: hill's is hill's
        stations = {r[0]: r[1:] for r in c.execute("SELECT name, lat, lon, alt_m FROM stations")}
    assert stations == {**places, "evil": (11.0, 20.0, 5.0)}
    assert stats.refused_records == 1 and stats.vouched_frames == len(set(frames))
    assert stats.held_frames >= 2 * len(sent)


def test_without_the_password_or_tls_nobody_gets_in(secure_broker, tmp_path):
    broker = secure_broker
    patient = Reconnect(initial_s=0.05, max_s=0.2, connect_timeout_s=2.0, keepalive_s=5)
    wrong = StationPublisher("127.0.0.1", broker.port, "hill", reconnect=patient,
                             auth=broker.auth("hill", password="guess"))
    no_tls = StationPublisher("127.0.0.1", broker.port, "harbour", reconnect=patient,
                              auth=BrokerAuth("harbour", USERS["harbour"], tls=False))
    try:
        for pub in (wrong, no_tls):
            pub.publish_frame(flight_frames()[0], utc_now())
        time.sleep(1.5)
        assert wrong.snapshot().connects == 0 and wrong.pending() == 1
        assert no_tls.snapshot().connects == 0 and no_tls.pending() == 1
    finally:
        wrong.close(0.1)
        no_tls.close(0.1)
    anonymous = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="anon")
    anonymous.tls_set(ca_certs=str(broker.folder / "ca.crt"))
    refused = []
    anonymous.on_connect = lambda c, u, f, reason, p: refused.append(reason.is_failure)
    anonymous.connect("127.0.0.1", broker.port)
    deadline = time.monotonic() + 5
    while not refused and time.monotonic() < deadline:
        anonymous.loop(0.1)
    assert refused == [True]
    # A broker that is not the club's (a certificate from another authority) gets no password.
    other = tmp_path / "other"
    other.mkdir()
    make_certificates(other)
    stranger = StationPublisher("127.0.0.1", broker.port, "hill", reconnect=patient,
                                auth=BrokerAuth("hill", USERS["hill"], tls=True, ca_file=str(other / "ca.crt")))
    try:
        stranger.publish_frame(flight_frames()[0], utc_now())
        time.sleep(1.0)
        assert stranger.snapshot().connects == 0
    finally:
        stranger.close(0.1)


def test_a_broker_password_file_others_can_read_is_refused(tmp_path):
    """A station's broker password readable by every user on the machine is as good as published."""
    pw = tmp_path / "hilltop.pw"
    pw.write_text("a long broker password\n")
    pw.chmod(0o644)
    with pytest.raises(ValueError, match=r"broker password file .*hilltop.pw is open to other users .*chmod 600"):
        BrokerAuth.from_files("hilltop", pw, None, tls=False)
    pw.chmod(0o600)
    assert BrokerAuth.from_files("hilltop", pw, None, tls=False).password == "a long broker password"
