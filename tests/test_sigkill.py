"""`kill -9` the whole payload in the middle of a bench flight, then start it again.

The process dies with the store open and a batch uncommitted; the operating system
keeps whatever SQLite had written, so nothing the store confirmed may be missing
after the restart. Musings and events are durable before `enqueue` returns; anything
that went on air was read back from the store; and telemetry sent on air but lost
with the uncommitted batch must never have its number used again.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import apsw
import pytest

from payload.store import stream_name
from stratoecho import wire
from tests.fakes import AUTH, write_flight_key

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


class Ground:
    """A UDP socket that keeps every frame it hears, decoded."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.address = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.telemetry: list[wire.Telemetry] = []
        self.records: list[wire.Record] = []
        self._reassembler = wire.Reassembler()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while not self._done.is_set():
            try:
                frame = self.sock.recvfrom(65535)[0]
            except socket.timeout:
                continue
            decoded = wire.decode_frame(frame, AUTH)
            if isinstance(decoded, wire.Telemetry):
                self.telemetry.append(decoded)
            elif isinstance(decoded, wire.Fragment) and (record := self._reassembler.add(decoded)) is not None:
                self.records.append(record)

    def close(self) -> None:
        self._done.set()
        self._thread.join()
        self.sock.close()


def _flight_key(folder: Path) -> Path:
    """fakes.FLIGHT_KEY in `folder`, once: what the payload tags its records with (AUTH reads them)."""
    path = folder / "flight.key"
    if not path.exists():
        write_flight_key(path)
    return path


def _fly(bundle: Path, data: Path, ground: Ground, log: Path) -> subprocess.Popen:
    env = {**os.environ, "STRATOECHO_LOG_JSON": "1"}
    with open(log, "w") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "payload", "run", "--sim", "--persona", str(bundle), "--udp", ground.address,
             "--data", str(data), "--speedup", "300", "--minutes", "600", "--seed", "3",
             "--flight-key", str(_flight_key(data.parent))],
            stdout=subprocess.DEVNULL, stderr=err, cwd=REPO, env=env)


def _logged(log: Path, event: str) -> list[dict]:
    out = []
    for line in log.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a line cut short by the kill
        if entry.get("event") == event:
            out.append(entry)
    return out


def _wait_for(proc: subprocess.Popen, done, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert proc.poll() is None, f"the payload exited early with {proc.returncode}"
        assert time.monotonic() < deadline, "the payload did not get far enough in time"
        time.sleep(0.05)


def _rows(db: Path) -> dict[tuple[str, int, int], bytes]:
    con = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return {(s, b, q): p for s, b, q, p in con.execute("SELECT stream, boot, seq, payload FROM records")}
    finally:
        con.close()


def test_sigkill_mid_flight_loses_nothing_confirmed(tmp_path, tiny_bundle):
    data, ground = tmp_path / "payload", Ground()
    try:
        # ---- first boot: fly until musings and health went on air, then kill -9
        log1 = tmp_path / "boot1.log"
        first = _fly(tiny_bundle, data, ground, log1)
        try:
            _wait_for(first, lambda: len(_logged(log1, "musing")) >= 3 and len(ground.telemetry) >= 30
                      and any(r.kind is wire.Kind.HEALTH for r in ground.records))
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=30)
        assert first.returncode == -signal.SIGKILL
        time.sleep(0.3)  # frames already in the socket buffer
        musings1 = _logged(log1, "musing")
        on_air1 = list(ground.records)
        telemetry1 = [t for t in ground.telemetry if t.boot == 1]

        db = data / "queue.db"
        con = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
        try:
            assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        finally:
            con.close()
        after_kill = _rows(db)

        # ---- second boot on the same data: fly a little, stop cleanly
        log2 = tmp_path / "boot2.log"
        second = _fly(tiny_bundle, data, ground, log2)
        try:
            _wait_for(second, lambda: sum(t.boot == 2 for t in ground.telemetry) >= 5
                      and len(_logged(log2, "musing")) >= 1)
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(timeout=30)
        assert second.returncode == 0, log2.read_text()[-2000:]
    finally:
        ground.close()

    rows = _rows(db)
    con = apsw.Connection(str(db))
    try:
        assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        boot_counter = con.execute("SELECT value FROM counters WHERE name = 'boot'").fetchall()[0][0]
    finally:
        con.close()
    assert boot_counter == 2
    assert {b for _, b, _ in rows} == {1, 2}

    # Every musing the first boot logged as queued is there, with its words.
    for m in musings1:
        key = ("musing", 1, m["seq"])
        assert key in rows, f"musing {m['seq']} of boot 1 logged as stored but lost"
        assert wire.Record.from_body(wire.Kind.MUSING, 1, m["seq"], rows[key]).text == m["text"]
    # Every durable record that went on air was on the card, byte for byte.
    durable = [r for r in on_air1 if stream_name(r.kind) in ("musing", "event")]
    assert any(r.kind is wire.Kind.EVENT for r in durable)
    for r in durable:
        assert rows.get((stream_name(r.kind), r.boot, r.seq)) == r.body()
    # The restart did not lose what survived the kill (an interrupted batch is all it may lose).
    assert set(after_kill) <= set(rows)

    # Boot 2 numbers every stream above anything boot 1 stored or sent on air, including
    # telemetry that went out from a batch the kill then lost.
    sent1: dict[str, int] = {"telemetry": max(t.seq for t in telemetry1)}
    for r in on_air1:
        sent1[stream_name(r.kind)] = max(sent1.get(stream_name(r.kind), 0), r.seq)
    for stream, _, seq in after_kill:
        sent1[stream] = max(sent1.get(stream, 0), seq)
    first2 = {}
    for stream, b, seq in rows:
        if b == 2:
            first2[stream] = min(first2.get(stream, seq), seq)
    assert {"telemetry", "musing"} <= set(first2)
    for stream, seq in first2.items():
        assert seq > sent1.get(stream, 0), f"{stream}: boot 2 starts at {seq}, boot 1 reached {sent1[stream]}"
