"""The SSDV upload (groundstation/exports/ssdv_upload.py) against a real HTTP server on loopback
standing in for the SSDV server (ssdv.habhub.org): it checks every request the way the
uploaders that feed the real one send it (docs/protocol.md, "Sharing pictures: the SSDV
server") and each packet with our own SSDV parser; `listen --ssdv-upload` end to end from a
replay, and `export --format ssdv` from a database."""

from __future__ import annotations

import base64
import binascii
import json
import re
import socket
import sqlite3
import threading
import time
from dataclasses import replace
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from structlog.testing import capture_logs

from groundstation.__main__ import main as ground_main
from groundstation.exports import SsdvUploader, UploadPolicy
from groundstation.exports.ssdv_upload import ssdv_object
from stratoecho import wire
from stratoecho.wire import ssdv
from tests.fakes import AUTH
from tests.test_ground_ssdv import picture

PATH = "/api/v0/packets"
PACKET_KEYS = {"type", "packet", "encoding", "received", "receiver"}
RECEIVED = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")  # what every reference uploader sends
FAST = UploadPolicy(batch_interval_s=60.0, batch_max_items=50, request_timeout_s=5.0, retry_attempts=3,
                    retry_initial_s=0.01, retry_max_s=0.05, retry_jitter_s=0.01, flush_timeout_s=20.0,
                    close_deadline_s=5.0)


def packet_faults(obj: object) -> tuple[list[str], wire.SsdvPacket | None]:
    """What is wrong with one packet object, and the packet it carries."""
    if not isinstance(obj, dict):
        return [f"a packet is a JSON object, not {type(obj).__name__}"], None
    faults = [f"keys {sorted(set(obj) ^ PACKET_KEYS)} differ"] if set(obj) != PACKET_KEYS else []
    if obj.get("type") != "packet":
        faults.append(f"type {obj.get('type')!r} is not 'packet'")
    if obj.get("encoding") != "base64":
        faults.append(f"encoding {obj.get('encoding')!r} is not 'base64'")
    received = obj.get("received")
    if not (isinstance(received, str) and RECEIVED.fullmatch(received)):
        faults.append(f"received {received!r} is not YYYY-MM-DDTHH:MM:SSZ")
    if not (isinstance(obj.get("receiver"), str) and obj["receiver"].strip()):
        faults.append("no receiver callsign")
    try:
        raw = base64.b64decode(obj.get("packet", ""), validate=True)
    except (binascii.Error, TypeError, ValueError):
        return [*faults, "packet is not base64"], None
    if len(raw) != ssdv.PACKET_BYTES or raw[0] != ssdv.SYNC:
        return [*faults, f"packet is {len(raw)} bytes starting {raw[:1].hex()}: not 256 with the sync byte"], None
    try:
        packet = ssdv.parse_packet(raw)
    except wire.WireError as e:
        return [*faults, f"not a good SSDV packet: {e}"], None
    if packet.raw != raw or packet.corrected:
        faults.append("the packet needed correcting: an uploader sends the packet as heard and corrected")
    return faults, packet


class SsdvServer:
    """Stands in for the SSDV server: POST `PATH` with Content-Type application/json and a body
    {"type": "packets", "packets": [...]} (or one {"type": "packet", ...}); every packet checked
    (`packet_faults`): 400 naming the faults. Then the status `refused`/`failing` hold for any
    (callsign, image id, packet id) in the request, else a scripted one (used up in order), else
    200. Any other path answers 200 and is only recorded (a SondeHub stand-in for `listen`)."""

    def __init__(self, port: int = 0) -> None:
        self.requests: list[dict] = []
        self.faults: list[str] = []
        self.script: list[int] = []
        self.refused: dict[tuple[str, int, int], int] = {}
        self.failing: dict[tuple[str, int, int], int] = {}
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                record = {"method": self.command, "path": self.path, "headers": dict(self.headers), "packets": []}
                if self.path != PATH:
                    status = 200
                else:
                    faults, packets = server.check(self.command, self.headers, body)
                    keys = {(p.callsign, p.image_id, p.packet_id) for p, _ in packets}
                    with server.lock:
                        server.faults += faults
                        special = [v for k, v in (*server.refused.items(), *server.failing.items()) if k in keys]
                        status = (400 if faults else special[0] if special
                                  else server.script.pop(0) if server.script else 200)
                    record.update(packets=packets, keys=keys)
                record["status"] = status
                with server.lock:
                    server.requests.append(record)
                answer = json.dumps({"status": status, "faults": faults if self.path == PATH else []}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            do_POST = do_PUT = do_GET = _any

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}{PATH}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @staticmethod
    def check(method: str, headers, body: bytes) -> tuple[list[str], list[tuple[wire.SsdvPacket, dict]]]:
        faults = [] if method == "POST" else [f"{method}: the server takes packets by POST"]
        if headers.get("Content-Type") != "application/json":
            faults.append(f"Content-Type {headers.get('Content-Type')!r} is not application/json")
        try:
            sent = json.loads(body)
        except ValueError:
            return [*faults, "the body is not JSON"], []
        if isinstance(sent, dict) and sent.get("type") == "packets" and set(sent) == {"type", "packets"}:
            objects = sent["packets"]
            if not (isinstance(objects, list) and objects):
                return [*faults, "packets is not a list of packets"], []
        elif isinstance(sent, dict) and sent.get("type") == "packet":
            objects = [sent]
        else:
            return [*faults, "the body is neither {type: packets, packets: [...]} nor one packet"], []
        packets = []
        for obj in objects:
            wrong, packet = packet_faults(obj)
            faults += wrong
            if packet is not None:
                packets.append((packet, obj))
        return faults, packets

    def received(self, status: int | None = 200) -> list[tuple[wire.SsdvPacket, dict]]:
        """(packet, its object) the server answered with `status` (None: any), in arrival order."""
        return [p for r in self.requests if r["path"] == PATH and (status is None or r["status"] == status)
                for p in r["packets"]]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def server():
    s = SsdvServer()
    yield s
    s.close()
    assert s.faults == []  # every request as the SSDV server takes them


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def packets(image_id: int = 7, callsign: str = "STRAT1") -> list[bytes]:
    """A picture as SSDV packets, 256 bytes each with the sync byte: more than a few."""
    out = ssdv.encode_image(picture(size=(96, 64)), callsign, image_id)
    assert len(out) >= 6
    return out


def ids(received: list[tuple[wire.SsdvPacket, dict]]) -> list[tuple[str, int, int]]:
    return [(p.callsign, p.image_id, p.packet_id) for p, _ in received]


HEARD_AT = "2024-06-20T23:58:07.654321+00:00"


# --------------------------------------------------------------------------- the uploader


def test_packets_arrive_whole_with_the_station_and_when_each_was_heard(server):
    sent = packets()
    up = SsdvUploader("M0ABC", server.url, policy=replace(FAST, batch_max_items=4))
    try:
        for i, raw in enumerate(sent):
            # as the listener hands them over (parsed), or as a LoRa frame (no sync byte), or whole
            given = wire.decode_frame(raw[1:], AUTH) if i % 3 == 0 else raw[1:] if i % 3 == 1 else raw
            assert up.add(given, HEARD_AT)
        assert not up.add(sent[0], HEARD_AT)  # heard again: never queued twice
        up.flush()
    finally:
        up.close()
    got = server.received()
    assert [p.raw for p, _ in got] == sent  # every packet, whole, in order, once
    assert {o["receiver"] for _, o in got} == {"M0ABC"}
    assert {o["received"] for _, o in got} == {"2024-06-20T23:58:07Z"}
    requests = [r for r in server.requests if r["path"] == PATH]
    assert len(requests) == -(-len(sent) // 4) and all(len(r["packets"]) <= 4 for r in requests)
    for r in requests:
        assert r["method"] == "POST" and r["headers"]["Accept"] == "application/json"
        assert r["headers"]["User-Agent"].startswith("stratoecho-")
    assert up.summary() == {"sent": len(sent), "refused": 0, "dropped": 0, "unsent": 0}
    assert up.stats["skipped_duplicate"] == 1


def test_the_packet_object_is_what_the_reference_uploaders_send():
    raw = packets()[0]
    obj = ssdv_object(ssdv.parse_packet(raw[1:]), "2024-06-20T23:58:07.9Z", "M0ABC")
    assert obj == {"type": "packet", "packet": base64.b64encode(raw).decode(), "encoding": "base64",
                   "received": "2024-06-20T23:58:07Z", "receiver": "M0ABC"}
    assert base64.b64decode(obj["packet"])[0] == 0x55  # the sync byte the LoRa frame leaves out


def test_a_refused_packet_is_dropped_and_counted_while_the_others_go(server):
    sent = packets()
    bad = ssdv.parse_packet(sent[2])
    server.refused = {(bad.callsign, bad.image_id, bad.packet_id): 400}
    up = SsdvUploader("M0ABC", server.url, policy=FAST)
    try:
        with capture_logs() as logs:
            for raw in sent:
                up.add(raw, HEARD_AT)
            up.flush()
    finally:
        up.close()
    assert [p.raw for p, _ in server.received()] == [raw for i, raw in enumerate(sent) if i != 2]
    assert up.summary() == {"sent": len(sent) - 1, "refused": 1, "dropped": 0, "unsent": 0}
    assert up.stats["retries"] == 0  # a 4xx is never tried again
    dropped = [e for e in logs if e["event"] == "ssdv_packet_dropped"]
    assert len(dropped) == 1 and dropped[0]["status"] == 400
    assert (dropped[0]["callsign"], dropped[0]["image_id"], dropped[0]["packet_id"]) == ("STRAT1", 7, 2)
    assert '"status": 400' in dropped[0]["body"]  # the server's answer, in the log


def test_a_server_error_is_retried_then_the_packets_go(server):
    server.script = [500, 503]
    sent = packets()[:3]
    up = SsdvUploader("M0ABC", server.url, policy=FAST)
    try:
        for raw in sent:
            up.add(raw, HEARD_AT)
        up.flush()
    finally:
        up.close()
    assert [r["status"] for r in server.requests] == [500, 503, 200]
    assert ids(server.received(None)) == ids(server.received()) * 3  # the same batch each time
    assert [p.raw for p, _ in server.received()] == sent
    assert up.stats["retries"] == 2 and up.summary()["sent"] == 3


def test_a_packet_the_server_always_fails_on_is_dropped_and_the_rest_arrive(server):
    sent = packets()
    bad = ssdv.parse_packet(sent[1])
    server.failing = {(bad.callsign, bad.image_id, bad.packet_id): 500}
    up = SsdvUploader("M0ABC", server.url, policy=FAST)
    try:
        for raw in sent:
            up.add(raw, HEARD_AT)
        up.flush()
    finally:
        up.close()
    assert [p.raw for p, _ in server.received()] == [raw for i, raw in enumerate(sent) if i != 1]
    assert up.summary() == {"sent": len(sent) - 1, "refused": 0, "dropped": 1, "unsent": 0}


def test_packets_queued_while_the_server_is_down_go_when_it_comes_back_before_the_deadline():
    port = free_port()  # nothing listens yet: connection refused
    url = f"http://127.0.0.1:{port}{PATH}"
    sent = packets()
    up = SsdvUploader("M0ABC", url, policy=FAST)
    for raw in sent:
        up.add(raw, HEARD_AT)
    up.flush()
    assert up.pending == len(sent) and up.summary()["sent"] == 0  # kept, not dropped
    started: list[SsdvServer] = []
    later = threading.Timer(0.5, lambda: started.append(SsdvServer(port)))
    later.start()
    try:
        t0 = time.monotonic()
        up.close(deadline_s=15.0)  # the server comes back while close() is still sending
        assert time.monotonic() - t0 < 15.0
        later.join()
        (back,) = started
        assert [p.raw for p, _ in back.received()] == sent and back.faults == []
    finally:
        later.cancel()
        for s in started:
            s.close()
    assert up.summary() == {"sent": len(sent), "refused": 0, "dropped": 0, "unsent": 0}


def test_close_keeps_its_deadline_when_the_server_never_comes_back():
    up = SsdvUploader("M0ABC", f"http://127.0.0.1:{free_port()}{PATH}", policy=FAST)
    for raw in packets()[:3]:
        up.add(raw, HEARD_AT)
    t0 = time.monotonic()
    up.close(deadline_s=0.5)
    assert time.monotonic() - t0 < 4.0
    assert up.summary() == {"sent": 0, "refused": 0, "dropped": 0, "unsent": 3}
    assert not up.add(packets()[3], HEARD_AT) and up.stats["after_close"] == 1


def test_what_is_not_a_packet_or_a_time_is_counted_never_sent(server):
    raw = bytearray(packets()[0])
    raw[20:60] = bytes(40)  # more damage than its Reed-Solomon parity can put right
    up = SsdvUploader("M0ABC", server.url, policy=FAST)
    try:
        assert not up.add(bytes(raw), HEARD_AT)
        assert not up.add(b"\x66" * 100, HEARD_AT)
        assert not up.add(packets()[1], "yesterday at noon")
        up.flush()
    finally:
        up.close()
    assert server.requests == [] and up.stats["skipped_invalid"] == 3


def test_a_bad_configuration_is_named():
    with pytest.raises(ValueError, match="callsign"):
        SsdvUploader(" ", "https://example.org/api/v0/packets")
    with pytest.raises(ValueError, match="not an http"):
        SsdvUploader("M0ABC", "ftp://example.org/api/v0/packets")


# --------------------------------------------------------------------------- listen and export


def air_file(tmp_path, frames: list[bytes]):
    air = tmp_path / "air.hex"
    air.write_text("".join(f.hex() + "\n" for f in frames))
    return air


def position_frame() -> bytes:
    now = datetime.now(timezone.utc).strftime("%H:%M:%S")
    return wire.encode_sentence(wire.Telemetry("STRAT1", 1, now, 52.25, -0.5, 1200, 9, -40.5, 180.2, 3700, 3))


def heard_times(db) -> dict[tuple[str, int, int], str]:
    with sqlite3.connect(db) as raw:
        return {(c, i, p): at for c, i, p, at in raw.execute(
            "SELECT callsign, image_id, packet_id, received_at FROM ssdv_packets")}


def test_listen_uploads_every_ssdv_packet_heard_once(tmp_path, server, capsys):
    first, second = packets(7), packets(8)
    # LoRa frames (no sync byte), one heard twice, a position between, and a frame that is noise
    frames = [p[1:] for p in first] + [first[0][1:], position_frame()] + [p[1:] for p in second] + [b"\x66" * 255]
    db, stats = tmp_path / "g.db", tmp_path / "stats.json"
    argv = ["listen", "--replay", str(air_file(tmp_path, frames)), "--db", str(db), "--quiet", "--stats", str(stats)]
    assert ground_main([*argv, "--ssdv-upload", "M0ABC", "--ssdv-url", server.url]) == 0
    got = server.received()
    assert [p.raw for p, _ in got] == first + second  # each packet once, in the order heard
    assert {o["receiver"] for _, o in got} == {"M0ABC"}
    times = heard_times(db)
    for p, o in got:  # when the listener heard it, to the second
        at = datetime.fromisoformat(times[(p.callsign, p.image_id, p.packet_id)]).astimezone(timezone.utc)
        assert o["received"] == at.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert f"ssdv upload: {len(got)} packets sent, 0 refused, 0 dropped, 0 not sent" in capsys.readouterr().err
    assert json.loads(stats.read_text())["ssdv_upload"] == {"sent": len(got), "refused": 0, "dropped": 0, "unsent": 0}


def test_listen_takes_the_sondehub_callsign_and_names_a_wrong_combination(tmp_path, server, capsys):
    air = air_file(tmp_path, [position_frame(), *(p[1:] for p in packets(3))])
    argv = ["listen", "--replay", str(air), "--db", str(tmp_path / "g.db"), "--quiet"]
    sondehub = ["--sondehub-uploader", "M0ABC", "--sondehub-url", f"http://127.0.0.1:{server.port}/amateur/telemetry"]
    assert ground_main([*argv, *sondehub, "--ssdv-upload", "--ssdv-url", server.url]) == 0
    assert {o["receiver"] for _, o in server.received()} == {"M0ABC"}
    assert len(server.received()) == len(packets(3))
    assert [r["method"] for r in server.requests if r["path"] == "/amateur/telemetry"] == ["PUT"]  # the position
    capsys.readouterr()
    server.requests.clear()
    for wrong, message in (
            (["--ssdv-upload"], "--ssdv-upload needs the station's callsign"),
            (["--ssdv-url", server.url], "--ssdv-url goes with --ssdv-upload"),
            ([*sondehub, "--ssdv-upload", "G4XYZ"], "one station, one callsign")):
        assert ground_main([*argv, *wrong]) == 2
        assert message in capsys.readouterr().err
    assert server.requests == []


def export(argv: list[str]) -> int:
    return ground_main(["export", *argv])


def test_export_uploads_the_packets_kept_after_the_flight(tmp_path, server, capsys):
    sent = packets(5)
    db = tmp_path / "g.db"
    assert ground_main(["listen", "--replay", str(air_file(tmp_path, [p[1:] for p in sent])), "--db", str(db),
                        "--quiet"]) == 0
    assert server.requests == []  # nothing shared without --ssdv-upload
    assert export(["--db", str(db), "--format", "ssdv", "--uploader", "M0ABC", "--out", server.url]) == 0
    assert f"{len(sent)} packets sent, 0 refused" in capsys.readouterr().out
    got = server.received()
    assert [p.raw for p, _ in got] == sent and {o["receiver"] for _, o in got} == {"M0ABC"}
    times = heard_times(db)
    for p, o in got:
        at = datetime.fromisoformat(times[(p.callsign, p.image_id, p.packet_id)]).astimezone(timezone.utc)
        assert o["received"] == at.strftime("%Y-%m-%dT%H:%M:%SZ")
    # a packet the server refuses: the rest still go, and the exit status says so
    bad = ssdv.parse_packet(sent[0])
    server.refused = {(bad.callsign, bad.image_id, bad.packet_id): 400}
    server.requests.clear()
    assert export(["--db", str(db), "--format", "ssdv", "--uploader", "M0ABC", "--out", server.url]) == 1
    assert f"{len(sent) - 1} packets sent, 1 refused" in capsys.readouterr().out
    assert [p.raw for p, _ in server.received()] == sent[1:]
    assert export(["--db", str(db), "--format", "ssdv", "--out", server.url]) == 2
    assert "--format ssdv needs --uploader CALL" in capsys.readouterr().err
    assert export(["--db", str(db), "--format", "ssdv", "--uploader", "M0ABC", "--dev"]) == 2
    assert "the SSDV server has none" in capsys.readouterr().err
