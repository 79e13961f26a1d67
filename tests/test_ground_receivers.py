"""What existing receivers decode, into the ground's store: the LoRa gateway's JSON port and
UDP broadcast, and horus-gui's PAYLOAD_SUMMARY datagrams, each against a local stand-in that
speaks the real thing's bytes (lora-gateway's server.c and udpclient.c, horusdemodlib's
horusudp.send_payload_summary) over a real socket."""

from __future__ import annotations

import json
import math
import socket
import sqlite3
import threading
from contextlib import closing
from datetime import datetime, timezone

import pytest

from groundstation.__main__ import main
from groundstation.exports.udp_feed import payload_summary
from groundstation.link.decoder import FrameDecoder
from groundstation.link.listen import Hooks, run_listen
from groundstation.sources import SourceError
from groundstation.sources.horus_udp import HorusUdpSource, SummaryError, summary_telemetry
from groundstation.sources.lora_gateway import GatewaySource, GatewayUdpSource
from groundstation.store import Store
from stratoecho import wire
from stratoecho.backoff import Backoff
from stratoecho.logs import setup_logging
from tests.fakes import AUTH, wait_for, write_flight_key

SENTENCES = [wire.Telemetry("STRATO", s, "12:04:11", 52.10123, -0.10234, 12345, 9, -40.5, 180.2, 3700, 3)
             for s in (1, 2, 3)]
FAST = Backoff(initial_s=0.05, max_s=0.2, jitter_s=0.05)


@pytest.fixture(autouse=True)
def _logging_to_this_tests_stderr():
    setup_logging()


def rows(db, sql: str) -> list[tuple]:
    with closing(sqlite3.connect(db)) as conn:
        return conn.execute(sql).fetchall()


def listening(source, db, **hooks) -> tuple[threading.Thread, threading.Event, Store, FrameDecoder]:
    """run_listen in a thread, as the listener runs it; stop with the event."""
    store, stop, decoder = Store(db), threading.Event(), FrameDecoder(auth=AUTH)
    worker = threading.Thread(target=run_listen, args=(source, store, decoder, stop, None),
                              kwargs={"hooks": Hooks(**hooks)}, daemon=True)
    worker.start()
    return worker, stop, store, decoder


def stopped(worker: threading.Thread, stop: threading.Event, store: Store) -> None:
    stop.set()
    worker.join(timeout=5)
    assert not worker.is_alive()
    store.close()


# --------------------------------------------------------------------------- the LoRa gateway's JSON port


def posn(t: wire.Telemetry, sentence: str | None = None, **extra) -> bytes:
    """A POSN line as server.c's SendJSON writes it (sprintf, CR LF, the sentence without its LF)."""
    sentence = sentence if sentence is not None else wire.encode_sentence(t).decode().rstrip("\n")
    fields = {"class": "POSN", "index": 0, "channel": 1, "payload": t.callsign, "time": t.time,
              "lat": round(t.lat, 5), "lon": round(t.lon, 5), "alt": t.alt, "rate": 0.0,
              "snr": 9, "rssi": -87, "ferr": 1.2, **extra, "sentence": sentence}
    return json.dumps(fields, separators=(",", ":")).encode() + b"\r\n"


STATS = b'{"class":"STATS","index":1,"rssi":-112,"freq":434.4500}\r\n'
SETTING = b'{"class":"SET","set":"tracker","val":"M0RPI/5"}\r\n'


class FakeGateway:
    """A TCP server taking one client at a time, as the gateway's ServerLoop does; each
    connection is given the next script: chunks to send, then hang up (or hold the line)."""

    def __init__(self, scripts: list[tuple[list[bytes], bool]]) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.address = self.server.getsockname()
        self.scripts = scripts
        self.accepted = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.server.settimeout(30)
        for chunks, hang_up in self.scripts:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.accepted += 1
            with conn:
                for chunk in chunks:
                    conn.sendall(chunk)
                if not hang_up:  # until the client hangs up, the gateway's only slot is taken
                    conn.settimeout(30)
                    while conn.recv(4096):
                        pass

    def close(self) -> None:
        self.server.close()
        self._thread.join(timeout=5)


def test_gateway_json_port_posn_sentences_go_into_the_store_and_the_rest_is_counted(tmp_path):
    bad_crc = wire.encode_sentence(SENTENCES[2]).decode().rstrip("\n")[:-4] + "0000"
    first = posn(SENTENCES[0])
    gateway = FakeGateway([
        ([SETTING, STATS, first[:30], first[30:] + STATS,  # a line split across two TCP segments
          b"this is not json\r\n", b"[1, 2]\r\n",
          b'{"class":"POSN","index":0,"channel":0,"payload":"STRATO"}\r\n',  # no sentence
          posn(SENTENCES[2], bad_crc)], True),  # ... then the gateway restarts: the line drops
        ([STATS, posn(SENTENCES[1], rssi=-120, snr=-11), posn(SENTENCES[0])], False),  # a repeat after reconnecting
    ])
    db = tmp_path / "g.db"
    source = GatewaySource(*gateway.address, backoff=FAST)
    worker, stop, store, decoder = listening(source, db, station="hill")
    try:
        wait_for(lambda: decoder.duplicates == 1)  # the second connection's last line
    finally:
        stopped(worker, stop, store)
        gateway.close()
    assert rows(db, "SELECT boot, seq, callsign, lat, temp_c, batt_mv FROM telemetry ORDER BY seq") == [
        (3, 1, "STRATO", 52.10123, -40.5, 3700), (3, 2, "STRATO", 52.10123, -40.5, 3700)]
    frames = rows(db, "SELECT source, hex, error, rssi_dbm, snr_db, station FROM frames ORDER BY id")
    host, port = gateway.address
    assert [f[0] for f in frames] == [f"gateway {host}:{port} ch1"] * 4
    # The stored frame is the sentence the payload sent, line feed and all.
    assert bytes.fromhex(frames[0][1]) == wire.encode_sentence(SENTENCES[0])
    assert [f[2] for f in frames] == [None, "crc mismatch", None, None]
    assert [(f[3], f[4]) for f in frames] == [(-87, 9), (-87, 9), (-120, -11), (-87, 9)]
    assert rows(db, "SELECT kind, seq, station FROM heard ORDER BY seq") == [("telemetry", 1, "hill"),
                                                                             ("telemetry", 2, "hill")]
    assert source.errors == {"bad json": 2, "posn without sentence": 1}
    assert source.ignored == {"SET": 1, "STATS": 3}
    assert decoder.errors == {"crc mismatch": 1} and decoder.duplicates == 1
    assert source.connects == 2 and source.drops == 1


def test_a_silent_gateway_connection_is_taken_for_dead_and_opened_again(tmp_path):
    # Power cut at the gateway: no FIN ever comes, only silence (it writes STATS every second).
    gateway = FakeGateway([([], False), ([posn(SENTENCES[0])], False)])
    source = GatewaySource(*gateway.address, backoff=FAST, silence_s=0.3)
    worker, stop, store, _ = listening(source, tmp_path / "g.db")
    try:
        wait_for(lambda: rows(tmp_path / "g.db", "SELECT seq FROM telemetry") == [(1,)])
    finally:
        stopped(worker, stop, store)
        gateway.close()
    # At least once: the stand-in stays silent after its one line, so it may be dropped again.
    assert source.drops >= 1 and source.connects >= 2


def test_a_gateway_not_there_at_start_is_an_error_naming_it():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(SourceError, match=f"LoRa gateway's JSON port 127.0.0.1:{port}"):
        GatewaySource("127.0.0.1", port)


def test_listen_gateway_from_the_command_line(tmp_path, capsys):
    gateway = FakeGateway([([STATS, posn(SENTENCES[0]), b"{oops\r\n", posn(SENTENCES[1])], False)])
    db = tmp_path / "g.db"
    try:
        assert main(["listen", "--gateway", "%s:%d" % gateway.address, "--db", str(db), "--until-idle", "1"]) == 0
    finally:
        gateway.close()
    out, err = capsys.readouterr()
    assert out.count("TELEMETRY") == 2
    assert "listen: 2 frames, 2 records" in err and "bad json: 1" in err


def test_no_uplink_through_another_receiver(tmp_path, capsys):
    """Another receiver's output cannot transmit: the flight key only checks tags there, and an
    uplink address is refused."""
    key = tmp_path / "uplink.key"
    write_flight_key(key)
    argv = ["listen", "--gateway", "127.0.0.1:6004", "--db", str(tmp_path / "g.db"), "--flight-key", str(key),
            "--uplink-to", "127.0.0.1:7356"]
    assert main(argv) == 2
    assert "--uplink-to goes with --udp" in capsys.readouterr().err


# --------------------------------------------------------------------------- the LoRa gateway's UDP broadcast


def test_gateway_udp_broadcast_sentences_go_into_the_store(tmp_path):
    source = GatewayUdpSource("127.0.0.1", 0)
    db = tmp_path / "g.db"
    worker, stop, store, decoder = listening(source, db)
    bad_crc = wire.encode_sentence(SENTENCES[2])[:-5] + b"0000\n"
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            # udpclient.c's UDPSend: the packet's text as received (our sentence ends in LF),
            # and on the same port the uplink messages the gateway sends.
            for datagram in (wire.encode_sentence(SENTENCES[0]), b"#uplink message", bad_crc,
                             wire.encode_sentence(SENTENCES[1])):
                tx.sendto(datagram, source.address)
        wait_for(lambda: len(rows(db, "SELECT id FROM frames")) == 3)
    finally:
        stopped(worker, stop, store)
    assert rows(db, "SELECT seq FROM telemetry ORDER BY seq") == [(1,), (2,)]
    assert source.errors == {"not a sentence": 1} and decoder.errors == {"crc mismatch": 1}
    assert {r[0] for r in rows(db, "SELECT source FROM frames")} == {"gateway-udp 127.0.0.1"}


# --------------------------------------------------------------------------- Horus UDP (horus-gui, horusdemodlib)


def horus_summary(decoded: dict, comment: str = "HorusDemodLib") -> bytes:
    """The datagram horusdemodlib's send_payload_summary makes of a decoded packet (as horus-gui
    calls it, with the modem's SNR added): fixed keys with -1 for unknown, then what is known."""
    packet = {"type": "PAYLOAD_SUMMARY", "callsign": decoded["callsign"], "latitude": decoded["latitude"],
              "longitude": decoded["longitude"], "altitude": decoded["altitude"], "speed": -1, "heading": -1,
              "time": decoded["time"], "comment": comment, "temp": -1, "sats": -1, "batt_voltage": -1}
    if "snr" in decoded:
        packet["snr"] = decoded["snr"]
    if "f_centre" in decoded:
        packet["frequency"] = decoded["f_centre"] / 1e6
    if "satellites" in decoded:
        packet["sats"] = decoded["satellites"]
    if "battery_voltage" in decoded:
        packet["batt_voltage"] = decoded["battery_voltage"]
    if "speed" in decoded:
        packet["speed"] = decoded["speed"]
    for name in decoded.get("custom_field_names", []):
        packet[name] = decoded[name]
    return json.dumps(packet).encode("ascii")


def send_like_horus(datagrams: list[bytes], port: int) -> None:
    """As send_payload_summary sends: a broadcast socket, falling back to localhost. Here
    straight to localhost, its path when no network takes a broadcast."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        tx.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        for datagram in datagrams:
            tx.sendto(datagram, ("127.0.0.1", port))


HORUS_V2 = {  # a Horus Binary v2 packet as horusdemodlib decodes it (default custom layout 4FSKTEST-V2)
    "callsign": "HORUS-V2", "latitude": -34.91234, "longitude": 138.61234, "altitude": 10234, "time": "01:23:45",
    "satellites": 9, "battery_voltage": 3.2549, "speed": 42, "snr": 12.3, "f_centre": 434_201_000,
    "custom_field_names": ["ascent_rate", "ext_temperature", "ext_humidity", "ext_pressure"],
    "ascent_rate": 5.12, "ext_temperature": -40.5, "ext_humidity": 20, "ext_pressure": 180.2,
}
BARE = {"callsign": "RTTY1", "latitude": 51.5, "longitude": -2, "altitude": 400.6, "time": "01:23:50"}


def test_horus_payload_summaries_become_positions_in_the_store(tmp_path):
    source = HorusUdpSource("127.0.0.1", 0)
    db = tmp_path / "g.db"
    worker, stop, store, decoder = listening(source, db, station="car")
    ours = wire.Telemetry("STRATO", 7, "01:24:00", 52.0, -1.0, 1000, 8, math.nan, math.nan, 0, 3)
    garbage = [
        b"{not json", b"[1,2]", json.dumps({"type": "MODEM_STATS", "snr": 3}).encode(),
        json.dumps(payload_summary(ours)).encode(),  # our own --udp-feed on the same port
        horus_summary({**BARE, "latitude": None}),  # json null
        json.dumps({"type": "PAYLOAD_SUMMARY", "callsign": "X", "longitude": 1.0, "altitude": 1,
                    "time": "01:00:00"}).encode(),  # no latitude
        horus_summary({**BARE, "latitude": "51.5"}), horus_summary({**BARE, "time": "25:00:00"}),
    ]
    try:
        send_like_horus([horus_summary(HORUS_V2), *garbage, horus_summary(BARE),
                         horus_summary(HORUS_V2)], source.address[1])  # a second decoder, same fix
        wait_for(lambda: source.positions == 3)
        wait_for(lambda: len(rows(db, "SELECT id FROM telemetry")) == 2)
    finally:
        stopped(worker, stop, store)
    got = rows(db, "SELECT callsign, boot, seq, time, lat, lon, alt, sats, temp_c, pressure_hpa, batt_mv "
                   "FROM telemetry ORDER BY seq")
    day = (datetime.now(timezone.utc).date() - datetime(1970, 1, 1).date()).days
    assert [g[1] for g in got] in ([day] * 2, [day - 1] * 2, [day + 1] * 2)  # the day nearest the fix's time
    assert [g[:1] + g[2:] for g in got] == [
        ("HORUS-V2", 5025, "01:23:45", -34.91234, 138.61234, 10234, 9, -40.5, 180.2, 3255),
        ("RTTY1", 5030, "01:23:50", 51.5, -2.0, 401, 0, None, None, 0),  # unknowns: no reading
    ]
    assert rows(db, "SELECT count(*) FROM frames") == [(0,)]  # a summary is not a frame heard
    assert rows(db, "SELECT station FROM heard") == [("car",), ("car",)]
    assert source.errors == {"bad json": 2, "missing field": 1, "bad field": 2, "bad time": 1}
    assert source.ignored == {"MODEM_STATS": 1, "our own feed": 1}
    assert decoder.records == {"telemetry": 2} and decoder.duplicates == 1 and decoder.frames == 0


def test_summary_mapping_dates_a_fix_by_the_nearest_day():
    late = {"type": "PAYLOAD_SUMMARY", **BARE, "time": "23:59:58"}
    heard_after_midnight = datetime(2024, 5, 2, 0, 0, 3, tzinfo=timezone.utc)
    t = summary_telemetry(late, heard_after_midnight)
    assert (t.boot, t.seq) == ((datetime(2024, 5, 1).date() - datetime(1970, 1, 1).date()).days, 86398)
    with pytest.raises(SummaryError) as e:
        summary_telemetry({**late, "latitude": 91.0}, heard_after_midnight)
    assert e.value.reason == "bad field" and "latitude" in str(e.value)
    with pytest.raises(SummaryError) as e:
        summary_telemetry({**late, "sats": True}, heard_after_midnight)  # strict: a flag is not a count
    assert e.value.reason == "bad field"


def test_the_horus_port_is_shared_with_a_chase_map_on_the_same_machine():
    # chasemapper binds 55672 as the Horus tools do; both must hear every broadcast.
    map_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    map_sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    map_sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    map_sock.bind(("0.0.0.0", 0))
    map_sock.settimeout(5)
    port = map_sock.getsockname()[1]
    source = HorusUdpSource("", port)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            tx.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            try:
                tx.sendto(horus_summary(BARE), ("<broadcast>", port))
            except OSError as e:
                pytest.skip(f"no network here takes a broadcast: {e}")
        try:
            assert json.loads(map_sock.recv(65535))["callsign"] == "RTTY1"
        except TimeoutError:
            pytest.skip("this machine does not deliver broadcasts to itself")
        got = next((item for _, item in zip(range(25), source) if item is not None), None)  # 25 polls: 5 s
        assert got is not None and got.telemetry.callsign == "RTTY1"
    finally:
        source.close()
        map_sock.close()


def test_listen_horus_udp_from_the_command_line(tmp_path, capsys):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    db = tmp_path / "g.db"
    result: list[int] = []
    worker = threading.Thread(target=lambda: result.append(main(
        ["listen", "--horus-udp", str(port), "--db", str(db), "--json", "--until-idle", "1"])))
    worker.start()
    # Keep sending until it is heard: the listener binds when it is ready, not before.
    wait_for(lambda: send_like_horus([horus_summary(HORUS_V2)], port) or _stored(db) or not worker.is_alive())
    worker.join(timeout=10)
    assert result == [0]
    out = capsys.readouterr().out
    assert json.loads(out.splitlines()[0])["callsign"] == "HORUS-V2"


def _stored(db) -> bool:
    if not db.exists():  # connecting would create it
        return False
    try:
        return bool(rows(db, "SELECT id FROM telemetry"))
    except sqlite3.Error:
        return False
