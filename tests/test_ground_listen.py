"""`listen` end to end: replay, real UDP datagrams on loopback, serial over pyserial URLs."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path

import pytest

from groundstation.__main__ import main
from groundstation.link.decoder import FrameDecoder
from groundstation.link.heard import Heard
from groundstation.link.listen import Hooks, run_listen
from groundstation.sources import ReplaySource, SerialSource, SourceError, UdpSource
from groundstation.store import GroundReader, Store
from stratoecho import wire
from stratoecho.logs import setup_logging
from tests.fakes import AUTH, wait_for

REPO = Path(__file__).resolve().parents[1]
TELEMETRY = [wire.Telemetry("STRATO", s, "12:04:11", 52.10123, -0.10234, 12345, 9, -40.5, 180.2, 3700, 3)
             for s in (1, 2)]
MUSING = wire.Record(wire.Kind.MUSING, 3, 7, 1714565055, "From up here the borders are invisible. " * 4)
FRAMES = ([wire.encode_sentence(t) for t in TELEMETRY] + wire.fragment_record(MUSING, mtu=48, auth=AUTH)[::-1]
          + [wire.encode_sentence(TELEMETRY[0]), b"\xec\x11garbage"])
N_FRAMES = len(FRAMES)


def counts(db: Path) -> dict:
    with closing(sqlite3.connect(db)) as conn:
        one = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
        return {"frames": one("SELECT count(*) FROM frames"), "telemetry": one("SELECT count(*) FROM telemetry"),
                "musings": one("SELECT count(*) FROM records WHERE kind='musing'")}


EXPECTED = {"frames": N_FRAMES, "telemetry": 2, "musings": 1}


@pytest.fixture(autouse=True)
def _logging_to_this_tests_stderr():
    # structlog's PrintLoggerFactory keeps the stderr it was configured with; an earlier
    # test's capsys stream is closed by now, so configure again for this test.
    setup_logging()


# --------------------------------------------------------------------------- replay


def test_listen_replay_stores_and_prints(tmp_path, capsys, flight_key):
    air = tmp_path / "air.hex"
    air.write_text("# bench flight\n\n" + "\n".join(f.hex() for f in FRAMES) + "\nxyz\n")
    db = tmp_path / "g.db"
    assert main(["listen", "--flight-key", str(flight_key), "--replay", str(air), "--db", str(db)]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[:2] == [
        "12:04:11  TELEMETRY #1 boot 3  52.10123,-0.10234  12345 m  -40.5°C  180.2 hPa  3700 mV  9 sats",
        "12:04:11  TELEMETRY #2 boot 3  52.10123,-0.10234  12345 m  -40.5°C  180.2 hPa  3700 mV  9 sats",
    ]
    assert out.splitlines()[2].startswith("12:04:15  MUSING boot 3 #7: From up here")
    assert len(out.splitlines()) == 3
    assert counts(db) == EXPECTED
    assert "3 new to the database" in err and "bad hex: 1" in err and "truncated: 1" in err

    # The same flight again (a restarted ground hearing repeats): nothing new stored or printed.
    assert main(["listen", "--flight-key", str(flight_key), "--replay", str(air), "--db", str(db), "--json"]) == 0
    out, err = capsys.readouterr()
    assert out == "" and "0 new to the database" in err
    assert counts(db) == {**EXPECTED, "frames": 2 * N_FRAMES}


def test_listen_json_and_quiet(tmp_path, capsys, flight_key):
    air = tmp_path / "air.hex"
    air.write_text("\n".join(f.hex() for f in FRAMES) + "\n")
    assert main(["listen", "--flight-key", str(flight_key), "--replay", str(air), "--db", str(tmp_path / "a.db"), "--json"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["kind"] for r in records] == ["telemetry", "telemetry", "musing"]
    assert records[2]["text"] == MUSING.text and records[2]["received_at"].endswith("+00:00")
    # The JSON that leaves the program: each record's own, and when it was heard.
    assert [{k: v for k, v in r.items() if k != "received_at"} for r in records] == [
        TELEMETRY[0].as_dict(), TELEMETRY[1].as_dict(), MUSING.as_dict()]
    assert main(["listen", "--flight-key", str(flight_key), "--replay", str(air), "--db", str(tmp_path / "b.db"), "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert out == "" and "listen:" in err
    assert counts(tmp_path / "b.db") == EXPECTED


def test_hooks_hear_each_new_record_typed_and_a_failing_one_is_counted(tmp_path):
    air = tmp_path / "air.hex"
    air.write_text("\n".join(f.hex() for f in FRAMES) + "\n")
    heard, frames = [], []

    def broken(h: Heard) -> None:
        raise RuntimeError("an exporter with a bug")

    hooks = Hooks(station="hill", on_new=[heard.append, broken],
                  on_frame=[lambda data, received_at, station, rssi, snr: frames.append((data, station))])
    with Store(tmp_path / "g.db") as store:
        run_listen(ReplaySource(str(air)), store, FrameDecoder(auth=AUTH), threading.Event(), out=None, hooks=hooks)
    with GroundReader.open(tmp_path / "g.db") as ground:
        assert ground.link.heard_paths("musing")[("musing", 3, 7)] == ["hill"]
    assert [h.record for h in heard] == [*TELEMETRY, MUSING]  # the wire's own types, each once
    assert all(isinstance(h, Heard) and h.received_at.endswith("+00:00") for h in heard)
    assert hooks.failures == 3  # the broken hook, once per record; the rest went on
    assert frames == [(f, "hill") for f in FRAMES]  # every frame, the bad one too


def test_listen_clear_errors(tmp_path, capsys):
    assert main(["listen", "--replay", str(tmp_path / "missing.hex"), "--db", str(tmp_path / "g.db")]) == 1
    assert "missing.hex not found" in capsys.readouterr().err
    assert main(["listen", "--serial", str(tmp_path / "ttyNOPE"), "--db", str(tmp_path / "g.db")]) == 1
    assert "cannot open serial" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["listen", "--udp", "localhost", "--db", str(tmp_path / "g.db")])
    assert "HOST:PORT" in capsys.readouterr().err


def test_replay_source_names_missing_path(tmp_path):
    with pytest.raises(SourceError, match=r"replay file .*missing\.hex not found"):
        ReplaySource(tmp_path / "missing.hex")


# --------------------------------------------------------------------------- UDP


def send_all(address: tuple[str, int], frames: list[bytes]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        for frame in frames:
            tx.sendto(frame, address)


def test_udp_source_receives_datagrams_and_polls_when_idle():
    source = UdpSource("127.0.0.1", 0)
    try:
        send_all(source.address, FRAMES[:2])
        items = iter(source)
        got = [next(items), next(items)]
        assert [g.data for g in got] == FRAMES[:2] and got[0].origin.startswith("udp 127.0.0.1:")
        assert next(items) is None  # nothing more: a poll tick, not a hang
    finally:
        source.close()


def test_a_datagram_longer_than_any_frame_is_counted_and_never_stored():
    """64 KB datagrams once went into the database whole: now each is counted and dropped."""
    source = UdpSource("127.0.0.1", 0)
    try:
        send_all(source.address, [b"\xaa" * 65_000, b"", FRAMES[0], b"\xbb" * 256])
        got = [g for g, _ in zip(iter(source), range(6)) if g is not None]
        assert [g.data for g in got] == [FRAMES[0]]
        assert source.errors == {"datagram not a frame's length": 3}
    finally:
        source.close()


def test_udp_bind_failure_names_the_address():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        with pytest.raises(SourceError, match=f"cannot bind UDP 127.0.0.1:{port}"):
            UdpSource("127.0.0.1", port)


def test_run_listen_in_thread_stops_on_event(tmp_path):
    source, store, stop = UdpSource("127.0.0.1", 0), Store(tmp_path / "g.db"), threading.Event()
    worker = threading.Thread(target=run_listen, args=(source, store, FrameDecoder(auth=AUTH), stop, None))
    worker.start()
    try:
        send_all(source.address, FRAMES)
        wait_for(lambda: counts(tmp_path / "g.db") == EXPECTED)  # committed while still running
    finally:
        stop.set()
        worker.join(timeout=2)
    assert not worker.is_alive()
    store.close()


def test_listen_udp_duration_ends_by_itself(tmp_path, capsys):
    started = time.monotonic()
    assert main(["listen", "--udp", "127.0.0.1:0", "--db", str(tmp_path / "g.db"), "--duration", "0.4"]) == 0
    assert time.monotonic() - started < 3
    assert "listen: 0 frames" in capsys.readouterr().err


def test_listen_udp_subprocess_stores_prints_and_stops_on_sigterm(tmp_path, flight_key):
    db = tmp_path / "g.db"
    env = {**os.environ, "STRATOECHO_LOG_JSON": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "groundstation", "listen", "--udp", "127.0.0.1:0", "--db", str(db), "--json",
         "--flight-key", str(flight_key)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True)
    reader.start()
    try:
        first = lines.get(timeout=10)
        assert json.loads(first)["event"] == "listening"
        host, port = re.search(r"udp ([\d.]+):(\d+)", first).groups()
        send_all((host, int(port)), FRAMES)
        wait_for(lambda: counts(db) == EXPECTED)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
        out = proc.stdout.read()
    finally:
        proc.kill()
        proc.stdout.close()
    assert [json.loads(line)["kind"] for line in out.splitlines()] == ["telemetry", "telemetry", "musing"]
    reader.join(timeout=2)  # stderr is the reader's alone, to its end
    proc.stderr.close()
    summary = "".join(lines.queue)
    assert f"listen: {N_FRAMES} frames" in summary and "truncated: 1" in summary


# --------------------------------------------------------------------------- serial


def test_serial_source_over_loop_url():
    source = SerialSource("loop://")
    try:
        good = FRAMES[0].hex().encode()
        # A frame split across reads, CRLF endings, a comment, a bad line, and noise with no newline.
        source.port.write(good[:10])
        items = iter(source)
        assert next(items) is None  # half a line is not a frame yet
        source.port.write(good[10:] + b"\r\n# bridge banner\r\nnot-hex\r\n" + FRAMES[1].hex().encode() + b"\n")
        frames = [item for item in (next(items), next(items)) if item is not None]
        assert [f.data for f in frames] == FRAMES[:2] and frames[0].origin == "serial loop://"
        assert source.errors == {"bad hex": 1}
        for _ in range(3):  # loop:// holds 4096 bytes, so the noise goes in parts
            source.port.write(b"x" * 2000)
            assert next(items) is None
        assert source.errors["line too long"] == 1
    finally:
        source.close()


def test_listen_serial_socket_url_until_idle(tmp_path, capsys, flight_key):
    # A LoRa UART bridge stood in for by a TCP socket speaking the same lines: pyserial's socket://.
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def bridge() -> None:
        server.settimeout(5)
        conn, _ = server.accept()
        with conn:
            # pyserial's socket:// empties its input right after connecting (reset_input_buffer
            # in open()); bytes sent before that would be thrown away, so give it a moment.
            time.sleep(0.3)
            conn.sendall(b"".join(f.hex().encode() + b"\n" for f in FRAMES))
            conn.settimeout(5)
            conn.recv(1)  # hold the line open until the listener hangs up

    thread = threading.Thread(target=bridge, daemon=True)
    thread.start()
    db = tmp_path / "g.db"
    argv = ["listen", "--serial", f"socket://127.0.0.1:{port}", "--db", str(db), "--until-idle", "1",
            "--flight-key", str(flight_key)]
    assert main(argv) == 0
    thread.join(timeout=5)
    server.close()
    assert counts(db) == EXPECTED
    assert "MUSING boot 3 #7" in capsys.readouterr().out


def test_serial_bridge_hanging_up_is_a_clear_error_and_loses_nothing(tmp_path, capsys, flight_key):
    server = socket.create_server(("127.0.0.1", 0))

    def bridge() -> None:
        server.settimeout(5)
        conn, _ = server.accept()
        time.sleep(0.3)  # see above: pyserial empties its input on open
        conn.sendall(b"".join(f.hex().encode() + b"\n" for f in FRAMES))
        conn.close()

    thread = threading.Thread(target=bridge, daemon=True)
    thread.start()
    db = tmp_path / "g.db"
    url = f"socket://127.0.0.1:{server.getsockname()[1]}"
    assert main(["listen", "--flight-key", str(flight_key), "--serial", url, "--db", str(db), "--quiet", "--duration", "5"]) == 1
    thread.join(timeout=5)
    server.close()
    assert f"serial {url}: read failed" in capsys.readouterr().err
    assert counts(db) == EXPECTED


def test_a_named_station_keeps_its_name_with_every_frame_and_what_it_heard(tmp_path, capsys, flight_key):
    air = tmp_path / "air.hex"
    air.write_text("\n".join(f.hex() for f in FRAMES) + "\n")
    db = tmp_path / "g.db"
    assert main(["listen", "--replay", str(air), "--db", str(db), "--station", "hill", "--quiet",
                 "--flight-key", str(flight_key)]) == 0
    with closing(sqlite3.connect(db)) as conn:
        assert {r[0] for r in conn.execute("SELECT station FROM frames")} == {"hill"}
        heard = conn.execute("SELECT kind, boot, seq, station FROM heard ORDER BY kind, seq").fetchall()
    assert heard == [("musing", 3, 7, "hill"), ("telemetry", 3, 1, "hill"), ("telemetry", 3, 2, "hill")]


def test_a_bridge_that_reports_the_signal_has_it_kept_with_each_frame(tmp_path, capsys):
    air = tmp_path / "air.hex"
    air.write_text(f"{FRAMES[0].hex()} rssi=-118.5 snr=-9.25\n{FRAMES[1].hex()}\n{FRAMES[2].hex()} rssi=loud\n")
    db = tmp_path / "g.db"
    assert main(["listen", "--replay", str(air), "--db", str(db), "--quiet"]) == 0
    with closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("SELECT rssi_dbm, snr_db FROM frames ORDER BY id").fetchall()
    assert rows == [(-118.5, -9.25), (None, None), (None, None)]  # a report it cannot read is dropped, not the frame
    assert "bad signal field: 1" in capsys.readouterr().err


def test_under_systemd_the_listener_says_ready_then_stopping(tmp_path, monkeypatch, capsys):
    import socket as _socket

    path = tmp_path / "notify.sock"
    systemd = _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM)
    systemd.bind(str(path))
    systemd.settimeout(5)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    try:
        assert main(["listen", "--udp", "127.0.0.1:0", "--db", str(tmp_path / "g.db"), "--duration", "0.3",
                     "--quiet"]) == 0
        messages = [systemd.recv(4096).decode() for _ in range(2)]
    finally:
        systemd.close()
    assert messages[0].startswith("READY=1") and "STATUS=listening on" in messages[0]
    assert messages[1].startswith("STOPPING=1")
