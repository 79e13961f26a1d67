"""The uplink over serial radios, ground to payload, on real pseudo-terminals.

* Each serial ground source's `send`, at the bytes it puts on the line: a hex line
  for a bridge, a KISS data frame for a TNC, the bare frame for a transparent module.
* `listen --serial ... --flight-key` answering the payload's window: over a hex-line
  bridge (the test plays the bridge), and end to end through two KISS TNCs (a pty
  pair joined by a relay, the air) to the payload's `KissRadio.receive`.
* End to end over two fake Ebyte modules (`sim.chips.lora_module`, one each side, the air
  between them `on_air=other.hear`): the payload's `LoRaUartRadio` sends telemetry,
  `listen --serial --raw` hears it and answers, the payload's `receive` gets the
  signed commands, and `stratoecho.wire.uplink.verify` accepts them.

Waits are bounded; nothing asserts a duration.
"""

from __future__ import annotations

import json
import os
import select
import threading
import time
import tty
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from groundstation.__main__ import build_parser, cmd_listen
from groundstation.sources import KissSerialSource, RawSerialSource, SerialSource, describe_peer
from payload.parts.radio import KissRadio, LoRaUartRadio
from sim.chips.lora_module import FakeLoRaModule
from stratoecho import wire
from stratoecho.logs import setup_logging
from stratoecho.wire.kiss import KissDecoder, kiss_encode
from stratoecho.wire.uplink import LinkReport, Resend, payload_hash, verify
from tests.fakes import AUTH, live_cue, live_sentence, write_flight_key

MUSING = int(wire.Kind.MUSING)
LORA = dict(sf=9, bw_hz=125_000, cr=5)
PAYLOAD_PINS = (17, 27, 22)  # M0, M1, AUX on the payload's Pi
GROUND_PINS = (5, 6, 13)  # the ground module's: on a USB board, nobody drives them (normal mode)


def sentence(seq: int) -> bytes:
    """The payload's position sentence, signed as it keys it (the link report counts only the flight's)."""
    return wire.encode_sentence(
        wire.Telemetry("STRATO", seq, "12:04:11", 52.1, -0.1, 12345, 9, -40.5, 180.2, 3700, 3), AUTH)


def record(seq: int) -> wire.Record:
    return wire.Record(wire.Kind.MUSING, 3, seq, 1714565055 + seq, " ".join(f"w{seq}-{i}" for i in range(12)))


def window_frames() -> tuple[list[bytes], int]:
    """What the payload sends before its window: one fragment of a record short of complete,
    then sentence 6 (window_every 6) and the window cue. Returns the frames and the record's k."""
    fragments = wire.fragment_record(record(7), mtu=60, auth=AUTH)
    k = wire.decode_fragment(fragments[0], AUTH).k
    assert k >= 2
    cue = live_cue(3, 6, payload_hash("STRATO"))
    return [fragments[0], live_sentence(3, 6, "STRATO"), cue], k


def check_window_answer(key: bytes, got: list[bytes], heard: int, k: int) -> None:
    """A LINK_REPORT (how much the ground heard), then a RESEND for the missing fragments."""
    assert len(got) == 2
    report = verify(key, got[0], "STRATO", last_counter=0)
    assert report.counter == 1 and report.command == LinkReport(3, 6, heard)
    resend = verify(key, got[1], "STRATO", last_counter=1)
    assert resend.counter == 2 and isinstance(resend.command, Resend)
    [item] = resend.command.items
    assert (item.stream, item.boot, item.seq) == (MUSING, 3, 7) and len(item.fragments) == k


@pytest.fixture
def pty() -> Iterator[tuple[int, str]]:
    """A pseudo-terminal: the master fd (the far end of the line) and the slave's path."""
    master, slave = os.openpty()
    tty.setraw(slave)
    try:
        yield master, os.ttyname(slave)
    finally:
        os.close(master)
        os.close(slave)


def read_available(fd: int, until, timeout_s: float = 10.0) -> bytes:
    """Read from `fd` until `until(data)` holds or the timeout passes."""
    data = bytearray()
    deadline = time.monotonic() + timeout_s
    while not until(bytes(data)) and (left := deadline - time.monotonic()) > 0:
        if select.select([fd], [], [], left)[0]:
            data += os.read(fd, 4096)
    return bytes(data)


@contextmanager
def listening(tmp_path: Path, *argv: str) -> Iterator[dict]:
    """`cmd_listen` in a thread, stopped and joined on exit; yields a box with its exit status
    once the source is open (pyserial empties a port's input as it opens it)."""
    import groundstation.assembly as gm

    setup_logging()
    args = build_parser().parse_args(["listen", *argv, "--db", str(tmp_path / "g.db"), "--quiet",
                                      "--callsign", "STRATO", "--stats", str(tmp_path / "g.json")])
    stop, box, opened = threading.Event(), {}, threading.Event()
    real_open = gm.open_source

    def open_and_tell(*a):
        try:
            return real_open(*a)
        finally:
            opened.set()

    gm.open_source = open_and_tell
    worker = threading.Thread(target=lambda: box.setdefault("rc", cmd_listen(args, stop)))
    try:
        worker.start()
        assert opened.wait(10)
    finally:
        gm.open_source = real_open
    try:
        yield box
    finally:
        stop.set()
        worker.join(timeout=10)
        assert not worker.is_alive()


@pytest.fixture
def key(tmp_path) -> tuple[Path, bytes]:
    path = tmp_path / "uplink.key"
    return path, write_flight_key(path)


# --------------------------------------------------------------------------- each source's send


def test_hex_bridge_send_is_one_hex_line_per_frame():
    source = SerialSource("loop://")
    try:
        frames = [b"\xed\x11 signed", bytes(range(255))]
        for frame in frames:
            source.send(frame, source.peer)
        written = source.port.read(4096)
        assert written == b"".join(f.hex().encode() + b"\n" for f in frames)
        assert source.peer == ("loop://",) and describe_peer(source.peer) == "loop://"
        assert describe_peer(("127.0.0.1", 7355)) == "127.0.0.1:7355"
    finally:
        source.close()


def test_kiss_source_send_is_one_kiss_data_frame():
    source = KissSerialSource("loop://")
    try:
        frame = b"\xed\x11\xc0\xdb needs escaping"
        source.send(frame, source.peer)
        written = source.port.read(4096)
        assert written == kiss_encode(frame) and KissDecoder().feed(written) == [frame]
    finally:
        source.close()


def test_raw_source_cuts_bursts_and_sends_each_frame_as_its_own_packet(mock_factory):
    with FakeLoRaModule(mock_factory, *GROUND_PINS, time_scale=1.0, **LORA) as module:
        source = RawSerialSource(module.port, 9600, tx_gap_s=0.3)
        try:
            packets = [sentence(1), b"\xc0\n\r\x00 binary, any byte", sentence(2)]
            for p in packets:
                module.hear(p)  # back to back on air: separate bursts on the UART
            items = iter(source)
            got = []
            while len(got) < 3:
                item = next(items)
                if item is not None:
                    got.append(item)
            assert [g.data for g in got] == packets
            assert got[0].origin == f"raw {module.port}" and got[0].peer == (module.port,)
            # Two frames written one after the other leave as two packets, not one merged.
            source.send(b"\xed first", source.peer)
            source.send(b"\xed second", source.peer)
            assert module.wait_for(lambda m: len(m.frames) == 2)
            assert module.frames == [b"\xed first", b"\xed second"]
            assert not source.errors
        finally:
            source.close()


def test_raw_source_drops_bursts_longer_than_a_packet_without_keeping_them():
    source = RawSerialSource("loop://", gap_s=0.05)
    try:
        items = iter(source)
        source.port.write(bytes(300))  # no LoRa packet is this long: noise, or packets merged
        assert next(items) is None  # the burst ends at the pause; nothing comes of it
        source.port.write(b"after")
        got = None
        while got is None:
            got = next(items)
        assert got.data == b"after" and source.errors["burst too long"] == 300
    finally:
        source.close()


# --------------------------------------------------------------------------- listen --serial --flight-key


def test_listen_hex_bridge_answers_the_window_with_hex_lines(tmp_path, key, pty):
    key_path, secret = key
    master, path = pty
    frames, k = window_frames()
    with listening(tmp_path, "--serial", path, "--flight-key", str(key_path)) as box:
        os.write(master, b"".join(f.hex().encode() + b"\n" for f in frames))
        lines = read_available(master, lambda d: d.count(b"\n") >= 2).splitlines()
    assert box["rc"] == 0
    check_window_answer(secret, [bytes.fromhex(line.decode()) for line in lines], heard=3, k=k)
    stats = json.loads((tmp_path / "g.json").read_text())
    assert stats["nacks_sent"] == 1 and stats["link_reports"] == 1 and stats["send_errors"] == 0


def relay(a: int, b: int, stop: threading.Event) -> threading.Thread:
    """Copy bytes both ways between two pty masters: two TNCs and the air between them."""
    def run() -> None:
        while not stop.is_set():
            for fd in select.select([a, b], [], [], 0.05)[0]:
                os.write(b if fd == a else a, os.read(fd, 4096))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_listen_kiss_tnc_uplink_reaches_the_payloads_kiss_radio(tmp_path, key):
    key_path, secret = key
    ground_master, ground_slave = os.openpty()
    payload_master, payload_slave = os.openpty()
    for fd in (ground_slave, payload_slave):
        tty.setraw(fd)
    stop = threading.Event()
    air = relay(ground_master, payload_master, stop)
    radio = KissRadio(os.ttyname(payload_slave), 9600)
    try:
        frames, k = window_frames()
        with listening(tmp_path, "--serial", os.ttyname(ground_slave), "--kiss",
                       "--flight-key", str(key_path)) as box:
            for frame in frames:
                radio.send(frame)  # the downlink, through both TNCs
            got: list[bytes] = []
            deadline = time.monotonic() + 10
            while len(got) < 2 and time.monotonic() < deadline:
                got += radio.receive(timeout_s=1.0)  # the payload's listen window
        assert box["rc"] == 0
        check_window_answer(secret, got, heard=3, k=k)
    finally:
        radio.close()
        stop.set()
        air.join(timeout=2)
        for fd in (ground_master, ground_slave, payload_master, payload_slave):
            os.close(fd)


def test_listen_raw_module_uplink_reaches_the_payloads_lora_module(tmp_path, key, mock_factory):
    key_path, secret = key
    with FakeLoRaModule(mock_factory, *PAYLOAD_PINS, time_scale=1.0, **LORA) as payload_module, \
            FakeLoRaModule(mock_factory, *GROUND_PINS, time_scale=1.0, on_air=payload_module.hear, **LORA) as ground:
        payload_module.on_air = ground.hear  # the air, both ways
        radio = LoRaUartRadio(payload_module.port, 9600, PAYLOAD_PINS, pin_factory=mock_factory, aux_timeout_s=5.0)
        try:
            frames, k = window_frames()
            with listening(tmp_path, "--serial", ground.port, "--raw", "--tx-gap", "0.4",
                           "--flight-key", str(key_path)) as box:
                for frame in frames:
                    radio.send(frame)
                got: list[bytes] = []
                deadline = time.monotonic() + 10
                while len(got) < 2 and time.monotonic() < deadline:
                    got += radio.receive(timeout_s=1.0)
            assert box["rc"] == 0
            check_window_answer(secret, got, heard=3, k=k)
            assert ground.frames == got  # one packet per uplink frame
            assert not radio.errors
        finally:
            radio.close()


def test_uplink_needs_a_source_that_can_transmit(tmp_path, key, capsys):
    key_path, _ = key
    args = build_parser().parse_args(["listen", "--replay", "-", "--db", str(tmp_path / "g.db"),
                                      "--flight-key", str(key_path), "--uplink-to", "127.0.0.1:9"])
    assert cmd_listen(args) == 2
    assert "--uplink-to goes with --udp" in capsys.readouterr().err
    args = build_parser().parse_args(["listen", "--replay", "-", "--raw", "--db", str(tmp_path / "g.db")])
    assert cmd_listen(args) == 2
    assert "--raw goes with --serial" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build_parser().parse_args(["listen", "--serial", "loop://", "--kiss", "--raw", "--db", "g.db"])
