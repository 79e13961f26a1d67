"""The radios behind one port, each tested at the level its device speaks.

* KISS framing (pure): golden bytes, hostile bytes, and Hypothesis properties.
* `KissRadio` over pyserial's `loop://`: what it writes comes back decoded.
* `LoRaUartRadio` against `sim.chips.lora_module.FakeLoRaModule` on a real pseudo-terminal
  and gpiozero `MockFactory` pins: the fake reads M0/M1 and drives AUX as the module
  does, so ordering is checked from its event log, never from the wall clock.
* `make_radio` and the configuration that picks the class; the payload daemon
  through a KISS tty; the ground's `listen --serial ... --kiss`.
"""

from __future__ import annotations

import json
import os
import re
import select
import sqlite3
import subprocess
import sys
import threading
import time
import tomllib
from contextlib import closing
from pathlib import Path

import pytest
import serial
from hypothesis import given
from hypothesis import strategies as st

from groundstation.__main__ import main as ground_main
from groundstation.sources import KissSerialSource
from payload.__main__ import main as payload_main
from payload.config import PayloadConfig, RadioSection, load_config
from payload.parts.radio import KissRadio, LoRaUartRadio, RadioError, UdpRadio
from payload.parts.radios import RADIOS, make_radio
from sim.chips.lora_module import FakeLoRaModule
from stratoecho import wire
from stratoecho.airtime import lora_airtime_s
from stratoecho.config import ConfigError, parse_toml
from stratoecho.wire.kiss import FEND, MAX_FRAME, KissDecoder, kiss_encode
from stratoecho.wire.uplink import LinkReport, sign, verify
from tests.fakes import AUTH, wait_for

REPO = Path(__file__).resolve().parents[1]
M0, M1, AUX = 17, 27, 22  # BCM numbers; not 2/3, which have fixed pull-ups on a Pi
LORA = dict(sf=9, bw_hz=125_000, cr=5)  # the bench radio settings (RadioSection defaults)
FAST = 0.02  # fake module: wall seconds per second of time on air

frames_st = st.lists(st.binary(max_size=MAX_FRAME), max_size=6)


def kiss_stream(frames: list[bytes]) -> bytes:
    return b"".join(kiss_encode(f) for f in frames)


# --------------------------------------------------------------------------- KISS framing


def test_kiss_golden_bytes():
    assert kiss_encode(b"\xc0A\xdb") == bytes.fromhex("c0 00 db dc 41 db dd c0")
    assert kiss_encode(b"hi", port=5) == bytes.fromhex("c0 50 68 69 c0")
    assert kiss_encode(b"", port=12) == bytes.fromhex("c0 db dc c0")  # command byte 0xC0 escaped
    with pytest.raises(ValueError, match="port 16"):
        kiss_encode(b"x", port=16)
    # An escaped FESC followed by a literal 0xDC is not a FEND.
    assert KissDecoder().feed(bytes.fromhex("c0 00 db dd dc c0")) == [b"\xdb\xdc"]


@given(st.binary(max_size=MAX_FRAME), st.integers(0, 15))
def test_kiss_round_trip(frame, port):
    assert KissDecoder().feed(kiss_encode(frame, port)) == [frame]
    assert KissDecoder(port=port).feed(kiss_encode(frame, port)) == [frame]


@given(frames_st, st.lists(st.integers(0, 3000), max_size=8))
def test_kiss_frames_split_anywhere_across_reads(frames, cuts):
    stream = kiss_stream(frames)
    edges = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    decoder = KissDecoder()
    got = [f for a, b in zip(edges, edges[1:]) for f in decoder.feed(stream[a:b])]
    assert got == frames and not decoder.errors


@given(st.binary(max_size=600).filter(lambda b: FEND not in b), frames_st)
def test_kiss_skips_what_comes_before_the_first_fend(noise, frames):
    decoder = KissDecoder()
    assert decoder.feed(noise + kiss_stream(frames)) == frames
    assert decoder.skipped_bytes == len(noise)


@given(frames_st, st.binary(max_size=600), frames_st)
def test_kiss_resynchronises_after_garbage(before, garbage, after):
    decoder = KissDecoder()
    got = decoder.feed(kiss_stream(before) + garbage + bytes([FEND]) + kiss_stream(after))
    # Garbage may itself look like frames; what was sent before and after still comes through whole.
    assert got[: len(before)] == before and got[len(got) - len(after):] == after
    assert all(len(f) <= MAX_FRAME for f in got)


def test_kiss_back_to_back_fends_and_non_data_commands():
    decoder = KissDecoder(port=0)
    stream = (b"\xc0\xc0\xc0" + kiss_encode(b"one") + b"\xc0\xc0"
              + bytes.fromhex("c0 01 32 c0")  # TXDELAY 500 ms: a TNC parameter, not data
              + bytes.fromhex("c0 ff c0")  # leave KISS mode
              + kiss_encode(b"port one", port=1) + kiss_encode(b"two"))
    assert decoder.feed(stream) == [b"one", b"two"]
    assert decoder.ignored == 3 and not decoder.errors and decoder.frames == 2


def test_kiss_drops_oversize_frames_and_bad_escapes_and_counts_them():
    decoder = KissDecoder()
    assert decoder.feed(kiss_encode(bytes(MAX_FRAME))) == [bytes(MAX_FRAME)]  # the largest that fits
    stream = (kiss_encode(bytes(MAX_FRAME + 1))
              + b"\xc0" + bytes(20_000)  # noise with no end: must not be buffered whole
              + kiss_encode(b"ok")
              + bytes.fromhex("c0 00 db 41 c0")  # FESC then 'A'
              + bytes.fromhex("c0 00 41 db c0")  # FESC then the frame's end
              + kiss_encode(b"still ok"))
    assert decoder.feed(stream) == [b"ok", b"still ok"]
    assert decoder.errors == {"kiss frame too long": 2, "kiss bad escape": 2}


# --------------------------------------------------------------------------- KissRadio


def test_kiss_radio_over_loop_url_writes_kiss_and_reads_it_back():
    radio = KissRadio("loop://", 9600)
    try:
        radio.send(b"\xc0 needs escaping \xdb")
        assert radio.port.read(64) == kiss_encode(b"\xc0 needs escaping \xdb")  # the bytes on the line
        frames = [wire.encode_sentence(wire.Telemetry("STRATO", 1, "12:00:00", 52.1, -0.1, 1200, 7, 3.5, 870.1, 3800, 1)),
                  bytes(range(256))[:MAX_FRAME], b""]
        for frame in frames:
            radio.send(frame)
        got: list[bytes] = []
        while len(got) < len(frames) and (more := radio.receive(timeout_s=2.0)):
            got += more
        assert got == frames
        assert radio.receive(timeout_s=0.1) == []  # nothing more heard: an empty answer, not a hang
        with pytest.raises(RadioError, match="256 bytes"):
            radio.send(bytes(256))
    finally:
        radio.close()


def test_kiss_radio_names_a_port_it_cannot_open(tmp_path):
    with pytest.raises(RadioError, match=r"cannot open KISS TNC serial port .*ttyNOPE"):
        KissRadio(str(tmp_path / "ttyNOPE"), 9600)


# --------------------------------------------------------------------------- LoRaUartRadio


@pytest.fixture
def module(mock_factory):
    with FakeLoRaModule(mock_factory, M0, M1, AUX, time_scale=FAST, **LORA) as fake:
        yield fake


@pytest.fixture
def radio(module, mock_factory):
    radio = LoRaUartRadio(module.port, 9600, (M0, M1, AUX), pin_factory=mock_factory, aux_timeout_s=5.0)
    try:
        yield radio
    finally:
        radio.close()


def kinds(events, *names) -> list[tuple]:
    return [e for e in events if e[0] in names]


def test_lora_frames_arrive_intact_one_packet_each(module, radio):
    # Bytes a cooked tty would mangle (CR/LF, ^C, XON/XOFF, DEL), and a real frame.
    frames = [bytes(range(256))[:240], b"\r\n\x03\x11\x13\x7f\x00", b"$$STRATO,1,12:00:00,52.1,-0.1,1200*ABCD\n"]
    for frame in frames:
        radio.send(frame)
        assert module.frames[-1] == frame  # send returned only once the module had it on air
    assert module.frames == frames
    assert module.airtime_s == pytest.approx(sum(lora_airtime_s(len(f), **LORA) for f in frames))
    # AUX went low once per frame and came back high each time.
    levels = [s.state for s in module.aux.states]
    assert levels[-7:] == [True, False, True, False, True, False, True]


def test_lora_next_send_waits_until_the_packet_has_been_on_air(module, radio):
    for i in range(4):
        radio.send(bytes([i]) * 60)
    events = kinds(module.events, "uart", "air", "sent")
    assert events == [e for i in range(4) for e in (("uart", i), ("air", i, 60), ("sent", i))]
    assert module.written_while_busy == 0


def test_lora_send_waits_for_a_busy_module(module, radio):
    module.hold()  # AUX low: busy (e.g. putting a received packet out on its UART)
    sender = threading.Thread(target=radio.send, args=(b"after the busy spell",))
    sender.start()
    # Nothing reaches the module while AUX is low.
    assert not module.wait_for(lambda m: kinds(m.events, "uart"), timeout_s=0.3)
    module.release()
    sender.join(timeout=5)
    assert not sender.is_alive()
    assert module.frames == [b"after the busy spell"] and module.written_while_busy == 0
    assert module.events.index(("release",)) < module.events.index(("uart", 0))


def test_fake_module_catches_a_host_that_ignores_aux(module, radio):
    # The check above means something: bytes written while AUX is low are seen and counted.
    module.hold()
    radio.port.write(b"rude")
    assert module.wait_for(lambda m: m.written_while_busy == 1)
    module.release()
    assert module.wait_for(lambda m: m.frames == [b"rude"])


def test_lora_sleep_mode_drops_data_and_waking_waits_for_the_module(module, radio):
    radio.set_mode("sleep")
    assert module.mode == "sleep"
    with pytest.raises(RadioError, match="sleep mode"):
        radio.send(b"not now")  # refused: a module asleep would drop it silently
    radio.port.write(b"written anyway")  # what the module does with it
    assert module.wait_for(lambda m: m.dropped["sleep"] == len(b"written anyway"))
    radio.set_mode("normal")
    # Leaving sleep the module reloads its parameters with AUX low; set_mode returned after that. (Not
    # "ready is the last event": on a busy machine the reset may end between the two mode pins' writes.)
    assert module.mode == "normal" and ("ready",) in module.events
    assert module.events.index(("reset",)) < module.events.index(("ready",))
    radio.send(b"awake")
    assert module.frames == [b"awake"] and module.written_while_busy == 0
    radio.set_mode("config")  # E32: the same pins as sleep
    assert module.mode == "sleep"
    with pytest.raises(ValueError, match="unknown LoRa module mode"):
        radio.set_mode("turbo")


def test_lora_aux_stuck_low_is_a_clear_error_not_a_hang(module, mock_factory):
    radio = LoRaUartRadio(module.port, 9600, (M0, M1, AUX), pin_factory=mock_factory, aux_timeout_s=0.2)
    try:
        module.hold()
        with pytest.raises(RadioError, match=r"AUX \(pin 22\) stayed low \(busy\) for 0.2 s before sending"):
            radio.send(b"stuck")
        assert not kinds(module.events, "uart")  # nothing was written to a busy module
        module.release()
        radio.send(b"recovered")
        assert module.frames == [b"recovered"]
    finally:
        radio.close()


def test_lora_packet_longer_than_the_timeout_allows(mock_factory):
    with FakeLoRaModule(mock_factory, M0, M1, AUX, time_scale=1000.0, **LORA) as slow:
        radio = LoRaUartRadio(slow.port, 9600, (M0, M1, AUX), pin_factory=mock_factory, aux_timeout_s=0.2)
        try:
            with pytest.raises(RadioError, match="while sending 10 bytes"):
                radio.send(bytes(10))
        finally:
            radio.close()


def test_lora_module_that_never_takes_the_frame(module, radio, mock_factory):
    # M0 and M1 pulled high behind the driver's back (a wiring fault): the module sleeps.
    mock_factory.pin(M0).state = mock_factory.pin(M1).state = True
    radio.aux_timeout_s = 0.2
    with pytest.raises(RadioError, match="never went low"):
        radio.send(b"into the void")
    assert module.dropped["sleep"] == len(b"into the void")


def test_lora_refuses_frames_longer_than_a_packet(module, mock_factory):
    radio = LoRaUartRadio(module.port, 9600, (M0, M1, AUX), pin_factory=mock_factory, packet_bytes=58)
    try:
        with pytest.raises(RadioError, match="59 bytes exceeds the module's 58-byte packet"):
            radio.send(bytes(59))
        radio.send(bytes(58))
        assert module.frames == [bytes(58)]
    finally:
        radio.close()


def test_lora_open_failures_name_the_part_and_release_the_rest(module, mock_factory, tmp_path):
    with pytest.raises(RadioError, match="LoRa module pins"):
        LoRaUartRadio(module.port, 9600, (M0, M0, AUX), pin_factory=mock_factory)  # one pin twice
    with pytest.raises(RadioError, match=r"cannot open LoRa module serial port .*ttyNOPE"):
        LoRaUartRadio(str(tmp_path / "ttyNOPE"), 9600, (M0, M1, AUX), pin_factory=mock_factory)
    radio = LoRaUartRadio(module.port, 9600, (M0, M1, AUX), pin_factory=mock_factory)  # the pins were let go
    radio.close()


# --------------------------------------------------------------------------- LoRaUartRadio.receive (the uplink)

UPLINK_KEY = bytes(range(32))


def uplink_frame(counter: int) -> bytes:
    return sign(UPLINK_KEY, counter, "STRATO", LinkReport(3, 42, counter))


@pytest.fixture
def real_time_module(mock_factory):
    """Packets on air for their real time: back-to-back packets reach the host as separate
    bursts, as they do with the bench settings (a short packet spends ~150 ms on air)."""
    with FakeLoRaModule(mock_factory, M0, M1, AUX, time_scale=1.0, **LORA) as fake:
        yield fake


def receive_until(radio, n: int, timeout_s: float = 10.0) -> list[bytes]:
    """Frames from as many receive() calls as it takes to get `n` (or to reach the timeout)."""
    got: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < n and (left := deadline - time.monotonic()) > 0:
        got += radio.receive(left)
    return got


def test_lora_receive_returns_each_heard_packet_whole(module, radio):
    packets = [uplink_frame(1), b"\r\n\x03\x11\x13\x7f\x00\xc0", bytes(range(256))[:240]]
    for packet in packets:
        j = module.hear(packet)
        assert radio.receive(timeout_s=5.0) == [packet]
        assert module.events.index(("heard", j, len(packet))) < module.events.index(("output", j)) \
            < module.events.index(("output_done", j))
    assert module.heard == packets
    assert verify(UPLINK_KEY, packets[0], "STRATO", last_counter=0).command == LinkReport(3, 42, 1)
    # AUX went low while each packet was put out, high again after it.
    levels = [s.state for s in module.aux.states]
    assert levels[-7:] == [True, False, True, False, True, False, True]
    assert not radio.errors


def test_lora_receive_nothing_heard_is_an_empty_list_not_a_hang(radio):
    assert radio.receive(timeout_s=0.1) == []
    assert radio.receive(timeout_s=0) == []


def test_lora_back_to_back_packets_come_out_as_two_frames(real_time_module, mock_factory):
    radio = LoRaUartRadio(real_time_module.port, 9600, (M0, M1, AUX), pin_factory=mock_factory, aux_timeout_s=5.0)
    try:
        first, second = uplink_frame(1), uplink_frame(2)
        real_time_module.hear(first)
        real_time_module.hear(second)  # on air right after the first, as a ground sending two would
        assert receive_until(radio, 2) == [first, second]
        events = kinds(real_time_module.events, "output", "output_done")
        assert events == [("output", 0), ("output_done", 0), ("output", 1), ("output_done", 1)]
    finally:
        radio.close()


def test_lora_burst_split_across_the_deadline_is_kept_whole_for_the_next_call(mock_factory):
    # 1200 baud: a 120-byte packet takes a second to come out of the module's UART.
    with FakeLoRaModule(mock_factory, M0, M1, AUX, time_scale=FAST, baud=1200, **LORA) as slow_uart:
        radio = LoRaUartRadio(slow_uart.port, 1200, (M0, M1, AUX), pin_factory=mock_factory, aux_timeout_s=5.0)
        try:
            packet = bytes(range(120))
            j = slow_uart.hear(packet)
            assert slow_uart.wait_for(lambda m: ("output", j) in m.events)
            got, cut_short = [], 0
            while not got:
                got = radio.receive(timeout_s=0.05)
                if not got and ("output_done", j) not in slow_uart.events:
                    cut_short += 1  # this call ended in the middle of the burst
            assert cut_short >= 1
            assert got == [packet]
            assert radio.receive(timeout_s=0.1) == [] and not radio.errors
        finally:
            radio.close()


def test_lora_send_waits_while_the_module_puts_a_heard_packet_out(module, radio):
    heard = bytes(range(200))  # ~0.2 s on the UART at 9600 baud
    j = module.hear(heard)
    assert module.wait_for(lambda m: ("output", j) in m.events)
    radio.send(b"after the packet is out")  # AUX is low: send waits, then sends
    assert module.frames == [b"after the packet is out"] and module.written_while_busy == 0
    assert module.events.index(("output_done", j)) < module.events.index(("uart", 0))
    assert radio.receive(timeout_s=5.0) == [heard]


def test_lora_packet_heard_while_sending_is_lost_and_send_is_not_fooled(real_time_module, mock_factory):
    module = real_time_module
    radio = LoRaUartRadio(module.port, 9600, (M0, M1, AUX), pin_factory=mock_factory, aux_timeout_s=5.0)
    try:
        sender = threading.Thread(target=radio.send, args=(bytes(60),))  # ~0.37 s on air
        sender.start()
        assert module.wait_for(lambda m: ("air", 0, 60) in m.events)
        j = module.hear(uplink_frame(1))  # half duplex: the module is transmitting
        sender.join(timeout=5)
        assert not sender.is_alive() and module.frames == [bytes(60)]
        assert ("missed", j, "transmitting") in module.events
        assert radio.receive(timeout_s=0.3) == []
        radio.send(b"next")  # and the radio carries on
        assert module.frames == [bytes(60), b"next"]
    finally:
        radio.close()


def test_lora_packets_heard_as_we_send_never_break_send_or_corrupt_a_frame(module, radio):
    # A packet heard, then a send a little later each time, sweeping the send across the
    # packet's reception (the module turns to sending: lost) and its output (AUX low: send
    # waits). Whichever way it goes, every send returns with its frame on air, and every
    # packet is received whole or lost whole. The sleep only sets the phase; nothing is timed.
    received, outcomes = [], []
    for i in range(20):
        module.hear(uplink_frame(i + 1))
        time.sleep(i * 0.0007)
        radio.send(bytes([i]) * 40)
        assert module.wait_for(lambda m, i=i: kinds(m.events, "output_done", "missed")[i:])
        outcomes.append(kinds(module.events, "output_done", "missed")[i][0])
        if outcomes[-1] == "output_done":
            received += radio.receive(timeout_s=5.0)
    assert module.frames == [bytes([i]) * 40 for i in range(20)]
    assert received == module.heard and all(verify(UPLINK_KEY, f, "STRATO", 0) for f in received)
    assert radio.receive(timeout_s=0.1) == [] and not radio.errors
    assert set(outcomes) == {"output_done", "missed"}  # both ways were taken


def test_lora_receive_buffers_are_bounded(real_time_module, mock_factory):
    module = real_time_module
    radio = LoRaUartRadio(module.port, 9600, (M0, M1, AUX), pin_factory=mock_factory, aux_timeout_s=5.0,
                          packet_bytes=32, rx_queue_frames=3)
    try:
        # Nobody asks for a while: only the newest rx_queue_frames packets are kept.
        packets = [bytes([i]) * 10 for i in range(5)]
        for p in packets:
            module.hear(p)
        wait_for(lambda: radio.errors["rx queue full"] == 2)
        assert radio.receive(timeout_s=0) == packets[2:]
        # A burst longer than a packet (merged packets or noise) is not a frame and is not kept.
        module.hear(bytes(100))
        module.hear(b"after the long one")
        assert receive_until(radio, 1) == [b"after the long one"]
        assert radio.errors["rx burst too long"] == 100
    finally:
        radio.close()


def test_fake_module_outputs_heard_packets_only_in_the_modes_the_manual_says(module, radio, mock_factory):
    radio.set_mode("sleep")
    j = module.hear(b"asleep")
    assert module.wait_for(lambda m: ("missed", j, "sleep") in m.events)
    radio.set_mode("normal")
    assert radio.receive(timeout_s=0.1) == []
    # Power-saving (M1 high): only packets sent in wake-up mode, with their long preamble.
    radio.m1.on()
    assert module.mode == "power_saving"
    j = module.hear(b"plain")
    assert module.wait_for(lambda m: ("missed", j, "power_saving") in m.events)
    module.hear(b"wake up", wake_up=True)
    assert radio.receive(timeout_s=5.0) == [b"wake up"]
    radio.m1.off()
    radio.m0.on()  # wake-up mode receives like normal mode
    module.hear(b"awake")
    assert radio.receive(timeout_s=5.0) == [b"awake"]
    with pytest.raises(ValueError, match="1..240 bytes"):
        module.hear(bytes(241))


# --------------------------------------------------------------------------- configuration and make_radio


def test_make_radio_picks_the_class_the_configuration_names(module, mock_factory):
    assert set(RADIOS) == set(RadioSection.OTHER_KINDS)  # the LoRa chips: tests/test_chip_registry.py
    made = [
        make_radio(RadioSection(kind="udp", udp="127.0.0.1:9")),
        make_radio(RadioSection(kind="kiss", serial_port="loop://", baud=57600)),
        make_radio(RadioSection(kind="lora_uart", serial_port=module.port, m0_pin=M0, m1_pin=f"GPIO{M1}",
                                aux_pin=AUX, mtu=200, packet_bytes=200, aux_timeout_s=3)),
    ]
    try:
        assert [type(r) for r in made] == [UdpRadio, KissRadio, LoRaUartRadio]
        assert made[1].port.baudrate == 57600
        assert (made[2].packet_bytes, made[2].aux_timeout_s) == (200, 3)
        made[2].send(b"from config")  # pins from Device.pin_factory, the mock one here
        assert module.frames == [b"from config"]
    finally:
        for r in made:
            r.close()


@pytest.mark.parametrize("radio_toml, message", [
    ('kind = "kiss"', "kind = 'kiss' needs serial_port"),
    ('kind = "lora_uart"\nserial_port = "/dev/serial0"\nm0_pin = 17', "needs m1_pin, aux_pin"),
    ('kind = "lora_uart"\nserial_port = "/dev/serial0"\nm0_pin = 17\nm1_pin = 27\naux_pin = 22',
     "mtu 255 is larger than packet_bytes 240"),
    ('kind = "lora_uart"\nserial_port = "/dev/serial0"\nm0_pin = 17\nm1_pin = 27\naux_pin = 22\nmtu = 58\n'
     'packet_bytes = 58\nspreading_factor = 11\nbandwidth_hz = 20800\ncoding_rate = 8\naux_timeout_s = 5',
     "aux_timeout_s 5 is not longer than the 12.2 s a 58-byte frame spends on air"),
    ('kind = "lora"', "radio.kind"),
])
def test_radio_configuration_errors_name_the_problem(radio_toml, message):
    with pytest.raises(ConfigError) as e:
        parse_toml(f"[radio]\n{radio_toml}\n", PayloadConfig, source="payload.toml")
    assert "payload.toml" in str(e.value) and "radio" in str(e.value) and message in str(e.value)


def commented_examples(text: str) -> dict[str, dict]:
    """The `# example: NAME` blocks of commented-out keys in a configuration, parsed as TOML."""
    examples = {}
    for name, block in re.findall(r"^# example: (\w+)\n((?:#   .*\n)+)", text, flags=re.MULTILINE):
        examples[name] = tomllib.loads("".join(line[4:] + "\n" for line in block.splitlines()))
    return examples


def test_shipped_configs_load_and_their_radio_examples_validate():
    assert load_config(REPO / "config" / "payload.sim.toml").radio.kind == "udp"
    pi = load_config(REPO / "config" / "payload.pi.toml").radio
    assert (pi.kind, pi.lora_mode, pi.spreading_factor, pi.bandwidth_hz) == ("sx127x", 0, 11, 20_800)  # an RFM98W
    text = (REPO / "config" / "payload.pi.toml").read_text()
    base = tomllib.loads(text)
    examples = commented_examples(text)
    assert set(examples) == {"udp", "kiss", "lora_uart"}
    for kind, keys in examples.items():
        camera = base["devices"]["camera"] | ({"ssdv": False} if keys.get("mtu", 255) < 255 else {})  # as it says
        radio = {**base["radio"], **keys}
        if kind != "udp":
            radio.pop("pictures")  # a serial radio keys one mode: as the configuration says
        cfg = PayloadConfig.model_validate({**base, "radio": radio,
                                            "devices": {**base["devices"], "camera": camera}})
        assert cfg.radio.kind == kind


def test_payload_udp_option_overrides_the_configured_radio(tmp_path, monkeypatch, capsys):
    config = tmp_path / "payload.toml"
    config.write_text('[radio]\nkind = "kiss"\nserial_port = "/dev/ttyNOPE"\n')
    seen = []

    def make_radio_spy(cfg, clock=None, **parts):
        seen.append((cfg.kind, cfg.udp))
        raise RadioError("stop here")

    monkeypatch.setattr("payload.assembly.make_radio", make_radio_spy)
    argv = ["run", "--sim", "--sim-config", str(config), "--no-persona", "--data", str(tmp_path / "p")]
    assert payload_main([*argv, "--udp", "127.0.0.1:7999"]) == 2
    assert seen == [("udp", "127.0.0.1:7999")]
    monkeypatch.undo()
    assert payload_main(argv) == 2  # the configured TNC, which is not there: a clear error
    assert "cannot open KISS TNC serial port /dev/ttyNOPE" in capsys.readouterr().err


def test_payload_daemon_transmits_through_a_kiss_tnc_on_a_tty(tmp_path):
    master, slave = os.openpty()
    try:
        config = tmp_path / "payload.toml"
        config.write_text(f'[radio]\nkind = "kiss"\nserial_port = "{os.ttyname(slave)}"\nbaud = 9600\n')
        proc = subprocess.run(
            [sys.executable, "-m", "payload", "run", "--sim", "--sim-config", str(config), "--no-persona",
             "--data", str(tmp_path / "p"), "--speedup", "600", "--minutes", "2", "--drain-s", "60"],
            capture_output=True, text=True, timeout=60, cwd=REPO,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        heard = bytearray()
        while select.select([master], [], [], 0.5)[0]:
            heard += os.read(master, 65536)
    finally:
        os.close(master)
        os.close(slave)
    decoder = KissDecoder()
    decoded = [wire.decode_frame(f, AUTH) for f in decoder.feed(bytes(heard))]
    assert not decoder.errors and decoder.skipped_bytes == 0
    telemetry = [d for d in decoded if isinstance(d, wire.Telemetry)]
    # Every frame the payload says it keyed came out of the TNC's port intact (how many fit in the
    # two scaled minutes depends on the machine's speed, so the count is the payload's own).
    sent = json.loads((tmp_path / "p" / "stats.json").read_text())["link"]["frames_sent"]
    assert len(telemetry) >= 1 and len(decoded) == sent
    assert '"radio": "kiss"' in proc.stderr


# --------------------------------------------------------------------------- ground: listen --kiss

MUSING = wire.Record(wire.Kind.MUSING, 3, 7, 1714565055, "Thin air, loud silence. " * 6)
GROUND_FRAMES = ([wire.encode_sentence(wire.Telemetry("STRATO", s, "12:04:11", 52.1, -0.1, 12345, 9, -40.5, 180.2, 3700, 3))
                  for s in (1, 2)] + wire.fragment_record(MUSING, mtu=48, auth=AUTH)[::-1])
TNC_STREAM = (b"\x05noise before the first FEND"
              + bytes.fromhex("c0 c0 01 32 c0")  # back-to-back FENDs, a TXDELAY echo
              + kiss_stream(GROUND_FRAMES[:2])
              + bytes.fromhex("c0 00 db 41 c0")  # a bad escape
              + kiss_stream(GROUND_FRAMES[2:]))


def db_counts(db: Path) -> dict:
    with closing(sqlite3.connect(db)) as conn:
        one = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
        return {"frames": one("SELECT count(*) FROM frames"), "telemetry": one("SELECT count(*) FROM telemetry"),
                "musings": one("SELECT count(*) FROM records WHERE kind='musing'")}


def test_listen_serial_loop_kiss(tmp_path, monkeypatch, capsys, flight_key):
    real_open = serial.serial_for_url

    def tnc_with_frames_waiting(url, *args, **kwargs):
        port = real_open(url, *args, **kwargs)
        port.write(TNC_STREAM)  # loop:// hands back what is written: the TNC's output
        return port

    monkeypatch.setattr(serial, "serial_for_url", tnc_with_frames_waiting)
    db = tmp_path / "g.db"
    assert ground_main(["listen", "--serial", "loop://", "--kiss", "--db", str(db), "--until-idle", "0.5",
                        "--flight-key", str(flight_key)]) == 0
    out, err = capsys.readouterr()
    assert db_counts(db) == {"frames": len(GROUND_FRAMES), "telemetry": 2, "musings": 1}
    assert "MUSING boot 3 #7: Thin air" in out
    assert "kiss bad escape: 1" in err


def test_listen_kiss_needs_serial(tmp_path, capsys):
    assert ground_main(["listen", "--replay", "-", "--kiss", "--db", str(tmp_path / "g.db")]) == 2
    assert "--kiss goes with --serial" in capsys.readouterr().err


def test_kiss_serial_source_on_a_tty_frames_split_across_reads():
    master, slave = os.openpty()
    source = KissSerialSource(os.ttyname(slave))
    try:
        items = iter(source)
        half = len(TNC_STREAM) // 2
        os.write(master, TNC_STREAM[:half])
        got = []
        while (item := next(items)) is not None:
            got.append(item)
        os.write(master, TNC_STREAM[half:])
        while (item := next(items)) is not None:
            got.append(item)
        assert [g.data for g in got] == GROUND_FRAMES
        assert got[0].origin == f"kiss {os.ttyname(slave)}"
        assert source.errors == {"kiss bad escape": 1}
    finally:
        source.close()
        os.close(master)
        os.close(slave)
