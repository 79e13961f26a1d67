"""The payload's question answered end to end at the ground: an API request record heard over
UDP, answered by the proxy from a real HTTP server on loopback, queued in the outbox, and sent
back signed in the payload's next listen window."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from groundstation.__main__ import build_parser, cmd_listen
from stratoecho import wire
from stratoecho.wire import uplink
from tests.fakes import AUTH, live_cue, live_sentence, write_flight_key


class Weather(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - the http.server interface
        body = json.dumps({"current": {"temperature_2m": 7.5, "wind_speed_10m": 12.0, "weather_code": 3}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        """Quiet: the test reads what it needs from the answers."""


def test_a_question_is_answered_from_the_api_and_sent_signed_in_the_next_window(tmp_path):
    http = ThreadingHTTPServer(("127.0.0.1", 0), Weather)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    key = tmp_path / "uplink.key"
    write_flight_key(key)
    ground = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ground.bind(("127.0.0.1", 0))
    port = ground.getsockname()[1]
    ground.close()  # the listener binds it; the payload side is this socket:
    payload = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    payload.bind(("127.0.0.1", 0))
    payload.settimeout(0.2)
    args = build_parser().parse_args([
        "listen", "--udp", f"127.0.0.1:{port}", "--db", str(tmp_path / "g.db"), "--flight-key", str(key),
        "--uplink-to", "%s:%d" % payload.getsockname(), "--callsign", "STRATO1", "--api-proxy", "--api-weather-url", f"http://127.0.0.1:{http.server_port}/v1/forecast",
        "--quiet"])
    stop = threading.Event()
    listener = threading.Thread(target=cmd_listen, args=(args, stop), daemon=True)
    listener.start()
    try:
        request = wire.Record(wire.Kind.API_REQUEST, 1, 5, 1_800_000_000, {"api": "weather", "query": "52.7,-2.7"})
        answers = []
        deadline = time.monotonic() + 30
        seq = 6
        while not answers and time.monotonic() < deadline:
            for frame in wire.fragment_record(request, 255, auth=AUTH):
                payload.sendto(frame, ("127.0.0.1", port))
            # A sentence numbered for a listen window and its cue: the ground answers what it has queued.
            payload.sendto(live_sentence(1, seq, "STRATO1"), ("127.0.0.1", port))  # signed: it dates the cue
            payload.sendto(live_cue(1, seq, uplink.payload_hash("STRATO1")),
                           ("127.0.0.1", port))
            seq += 6
            end = time.monotonic() + 1.0
            while time.monotonic() < end:
                try:
                    frame = payload.recv(512)
                except socket.timeout:
                    continue
                cmd = uplink.verify(uplink.load_key(key), frame, "STRATO1", 0).command
                if isinstance(cmd, uplink.ApiAnswer):
                    answers.append(cmd)
        assert answers, "no API answer came back"
        a = answers[0]
        assert a.request_seq == 5 and a.status == uplink.ApiStatus.OK and "7" in a.text
    finally:
        stop.set()
        listener.join(timeout=30)
        http.shutdown()
        payload.close()
