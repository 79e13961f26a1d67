"""The bench's air carries each packet with the settings its chip keyed it with (sim/chips/air.py):
a payload that sends SSDV in UKHAS mode 1 on one frequency and its positions in mode 0 on another
is priced frame by frame (sim/channel/radio.py, fleet.py, sim/bench/run/relay.py), a chip hears only
its own channel (sim/chips/sx127x.py, sx126x.py), and air.times says each frame's time on air."""

from __future__ import annotations

import json
import socket
import threading
from types import SimpleNamespace

import pytest
import structlog
from gpiozero.pins.mock import MockFactory

from sim.bench.measure.soak import check
from sim.bench.report.beacons import air_airtimes, air_frames
from sim.bench.run.relay import Channel
from sim.channel.fleet import Fleet
from sim.channel.loss import LossSpec
from sim.channel.radio import ChannelConfig, GroundStation, LoRaMode, RadioChannel, link_state
from sim.chips.air import HEADER, MAGIC, AirSettings, unwrap, wrap
from sim.chips.simulated import simulated_spi
from stratoecho.lora import UKHAS_MODES
from stratoecho.lora_chips.sx127x import Sx127xRadio
from tests.fakes import wait_for
from tests.test_radio_channel import HOME, ManualClock, drain, east_of, fixed
from tests.test_sx126x import radio as sx126x_radio
from tests.test_sx127x import ScheduledClock
from tests.test_sx127x import radio as sx127x_radio

HOME_MHZ, SSDV_MHZ = 434.250, 434.450  # positions in mode 0, pictures in mode 1 beside them
MODE0 = AirSettings.of(UKHAS_MODES[0].settings(HOME_MHZ))
MODE1 = AirSettings.of(UKHAS_MODES[1].settings(SSDV_MHZ))
SENTENCE = b"$$STRATO1,1,10:00:00,52.0,-2.0,1000,9,12.5*ABCD\n"
SSDV = bytes([0x66]) + bytes(range(254))  # an SSDV packet without its sync byte: 255 bytes, as mode 1 sends


def mode_airtime(mode: int, mhz: float, n: int) -> float:
    return UKHAS_MODES[mode].settings(mhz).airtime_s(n)


# --------------------------------------------------------------------------- the datagram


def test_a_wrapped_packet_comes_back_with_its_settings_and_a_bare_one_without():
    datagram = wrap(SSDV, UKHAS_MODES[1].settings(SSDV_MHZ))
    assert datagram.startswith(MAGIC) and len(datagram) == HEADER.size + len(SSDV) == 19 + 255
    assert unwrap(datagram) == (SSDV, MODE1)
    assert MODE1 == AirSettings(434_450_000, 6, 20_800, 5, explicit_header=False, low_data_rate_optimize=False)
    assert unwrap(wrap(SENTENCE, MODE0)) == (SENTENCE, MODE0) and MODE0.low_data_rate_optimize
    assert unwrap(SENTENCE) == (SENTENCE, None)  # the UDP radio's and the ground's uplink frames
    assert unwrap(b"") == (b"", None)
    assert unwrap(MAGIC + b"\x00\x01") == (MAGIC + b"\x00\x01", None)  # too short for a header: a frame
    no_chip_keys = bytearray(wrap(SENTENCE, MODE0))
    no_chip_keys[8] = 13  # SF13
    assert unwrap(bytes(no_chip_keys)) == (bytes(no_chip_keys), None)
    # Its airtime is the payload's and the gateway's for the mode: ~1.4 s for a mode-1 packet.
    assert MODE1.airtime_s(255) == pytest.approx(mode_airtime(1, SSDV_MHZ, len(SSDV)))
    assert 1.3 < MODE1.airtime_s(255) < 1.5
    assert MODE0.airtime_s(255) == pytest.approx(mode_airtime(0, HOME_MHZ, 255)) == pytest.approx(47, abs=1.5)


def test_a_channel_is_carrier_spreading_factor_bandwidth_and_header_mode():
    assert MODE0.heard_with(UKHAS_MODES[0].settings(HOME_MHZ + 0.003))  # 3 kHz off: still locked
    assert not MODE0.heard_with(UKHAS_MODES[0].settings(HOME_MHZ + 0.025))  # the next 25 kHz channel
    assert not MODE1.heard_with(UKHAS_MODES[0].settings(SSDV_MHZ))  # SF11 listening, SF6 sent
    assert not MODE1.heard_with(UKHAS_MODES[1].settings(SSDV_MHZ, explicit_header=True,
                                                        spreading_factor=7))
    explicit_sf6 = AirSettings(434_450_000, 6, 20_800, 5, explicit_header=True)
    assert explicit_sf6.same_channel(MODE1) and not explicit_sf6.heard_with(MODE1)


# --------------------------------------------------------------------------- a chip keying two modes


def test_the_payloads_driver_keys_mode_0_then_mode_1_and_each_datagram_says_how():
    """The real SX127x driver over the bench's simulated chip and its UDP air: a position in mode 0
    on 434.250 MHz, then an SSDV packet keyed in mode 1 on 434.450 MHz (the driver `configure`s
    the chip for it, and back to its own channel to listen)."""
    air = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    air.bind(("127.0.0.1", 0))
    air.settimeout(5.0)
    clock = ScheduledClock()
    cfg = SimpleNamespace(kind="sx127x", spi_bus=0, spi_device=0, dio0_pin=None)
    open_spi, socket_ = simulated_spi(cfg, f"127.0.0.1:{air.getsockname()[1]}", clock, MockFactory())
    r = Sx127xRadio(open_spi(0, 0), UKHAS_MODES[0].settings(HOME_MHZ), clock=clock)
    try:
        r.send(SENTENCE)
        # Shorter than the packet: the driver pads it to the implicit 255 bytes.
        r.send(SSDV[:200], UKHAS_MODES[1].settings(SSDV_MHZ))
        first, second = air.recv(4096), air.recv(4096)
    finally:
        r.close()
        air.close()
    (position, s0), (picture, s1) = unwrap(first), unwrap(second)
    assert position == SENTENCE and picture == SSDV[:200] + bytes(55)  # as the chip put it on air
    assert s0.frequency_hz == pytest.approx(434_250_000, abs=61) and s1.frequency_hz == pytest.approx(434_450_000, abs=61)
    assert (s0.spreading_factor, s0.bandwidth_hz, s0.coding_rate, s0.explicit_header, s0.low_data_rate_optimize,
            s0.preamble, s0.crc) == (11, 20_800, 8, True, True, 8, True)
    assert (s1.spreading_factor, s1.bandwidth_hz, s1.coding_rate, s1.explicit_header, s1.low_data_rate_optimize) == (
        6, 20_800, 5, False, False)
    assert s0.airtime_s(len(position)) == pytest.approx(mode_airtime(0, HOME_MHZ, len(SENTENCE)))
    assert s1.airtime_s(len(picture)) == pytest.approx(mode_airtime(1, SSDV_MHZ, 200)) == pytest.approx(1.39, abs=0.05)
    # The chip's own clock agrees: each packet took its own mode's time (and nothing was refused).
    assert [s.airtime_s(len(p)) for p, s in socket_.chip.sent] == pytest.approx([s0.airtime_s(len(position)),
                                                                                 s1.airtime_s(255)])
    assert socket_.chip.refused == []


# --------------------------------------------------------------------------- a chip hears its own channel


@pytest.mark.parametrize("make", [sx127x_radio, sx126x_radio], ids=["sx127x", "sx126x"])
def test_a_chip_listening_in_mode_0_does_not_hear_a_mode_1_packet(make):
    r, chip, clock = make(0, HOME_MHZ)
    air: list[bytes] = []
    chip.listen = lambda: [air.pop(0) for _ in range(len(air))]
    air += [wrap(SSDV, MODE1),  # pictures on their own channel
            wrap(SSDV, AirSettings.of(UKHAS_MODES[1].settings(HOME_MHZ))),  # mode 1 on our frequency: other SF
            wrap(b"$$FAR1,7", AirSettings.of(UKHAS_MODES[0].settings(HOME_MHZ + 0.002)))]  # ours, 2 kHz off
    with structlog.testing.capture_logs() as logs:
        assert r.receive(120.0) == [b"$$FAR1,7"]
    assert chip.other_channel == 2 and chip.missed == 0
    assert [e["event"] for e in logs if e["event"].startswith("chip_")] == ["chip_other_channel"] * 2
    # The SSDV packet took its own 1.4 s on the way, not a mode-0 packet's: heard 2 x 1.4 s + the sentence's.
    assert clock.elapsed_s() == pytest.approx(2 * MODE1.airtime_s(255) + MODE0.airtime_s(8), abs=0.1)
    air.append(b"\xed uplink")  # bare, as the ground's uplink: on the chip's own channel
    assert r.receive(60.0) == [b"\xed uplink"]
    r.close()


def test_a_packet_on_another_channel_is_not_heard_whether_listening_or_not():
    _, chip, _ = sx127x_radio(0, HOME_MHZ)
    assert chip.hear(b"x", sent_with=MODE1) is False and (chip.other_channel, chip.missed) == (1, 0)
    assert chip.hear(b"x", sent_with=MODE0) is False and (chip.other_channel, chip.missed) == (1, 1)  # standby


# --------------------------------------------------------------------------- the channel prices each frame


def test_the_channel_prices_a_mode_1_frame_at_its_own_airtime_and_a_bare_one_at_the_flights_mode():
    cfg = ChannelConfig(lora=LoRaMode(11, 20_800, 8), path_loss=False)
    ch = RadioChannel([HOME], fixed((HOME.lat, HOME.lon, 1000.0)), cfg, seed=1)
    (d1,) = ch.downlink(SSDV, 100.0, MODE1)
    assert d1.delay_s == pytest.approx(1.39, abs=0.05) == cfg.airtime_s(255, MODE1)
    assert d1.frame == SSDV and d1.settings == MODE1  # the ground gets the bare 255 bytes
    assert ch.transmitting(101.3) and not ch.transmitting(101.5)  # half duplex: the frame's own time
    assert ch.uplink(b"\xed nack", 0, 101.5) == b"\xed nack"
    (d0,) = ch.downlink(bytes(255), 200.0, MODE0)
    assert d0.delay_s == pytest.approx(mode_airtime(0, HOME_MHZ, 255)) == pytest.approx(47, abs=1.5)
    assert ch.uplink(b"\xed nack", 0, 240.0) is None and ch.stats[0].uplink.lost_by["half_duplex"] == 1
    (bare,) = ch.downlink(bytes(255), 300.0)
    assert bare.delay_s == cfg.lora.airtime_s(255) and bare.settings is None


def test_far_out_a_mode_1_frame_is_lost_where_a_mode_0_frame_still_has_margin():
    """SF6 needs 12.5 dB more signal than SF11 at the same bandwidth: 300 km out at 1 mW the
    positions still get through and the pictures do not."""
    cfg = ChannelConfig(lora=LoRaMode(11, 20_800, 8), tx_dbm=0.0)
    far = east_of(HOME, 300, 30_000)
    m0, m1 = link_state(HOME, far, cfg, MODE0), link_state(HOME, far, cfg, MODE1)
    assert m0.margin_db > 5 and m1.margin_db < -3 and m0.margin_db - m1.margin_db == pytest.approx(12.5)
    assert link_state(HOME, far, cfg).margin_db == pytest.approx(m0.margin_db)  # a bare frame: the flight's mode
    ch = RadioChannel([HOME], fixed(far), cfg, seed=1)
    heard = [len(ch.downlink(SSDV if i % 2 else SENTENCE, 100.0 * i, MODE1 if i % 2 else MODE0)) for i in range(40)]
    assert sum(heard[0::2]) >= 19 and sum(heard[1::2]) <= 1
    assert ch.stats[0].downlink.lost_by["margin"] == 40 - sum(heard)


def test_balloons_on_two_channels_do_not_collide_but_on_one_they_do():
    tracks = [fixed(east_of(HOME, 20, 5_000)), fixed(east_of(HOME, -20, 5_000))]  # as strong as each other
    for other, collides in ((MODE0, True), (AirSettings.of(UKHAS_MODES[0].settings(SSDV_MHZ)), False)):
        fleet = Fleet([HOME], tracks, ChannelConfig(lora=LoRaMode(11, 20_800, 8)), seed=1)
        first = fleet.transmit(0, SENTENCE, 0.0, MODE0)
        second = fleet.transmit(1, SENTENCE, 1.0, other)  # within the first's seconds on air
        ground = [d for d in first + second if not d.to_balloon]
        assert [fleet.settle(d) for d in ground] == [not collides] * 2
        to_peer = [d for d in first + second if d.to_balloon]
        assert [d.settings for d in to_peer] == [MODE0, other]  # a balloon hears with the sender's settings


# --------------------------------------------------------------------------- the relay and air.times


def test_the_relay_forwards_bare_frames_and_writes_each_frames_airtime(tmp_path):
    stop = threading.Event()
    gnd = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    gnd.bind(("127.0.0.1", 0))
    payload = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    clock = ManualClock()
    ch = Channel(("127.0.0.1", 0), gnd.getsockname(), LossSpec(0.0), 3, tmp_path / "air.hex", stop,
                 position=fixed((HOME.lat, HOME.lon, 1000.0)), clock=clock)
    worker = threading.Thread(target=ch.run)
    worker.start()
    try:
        for t, datagram in ((10.0, wrap(SENTENCE, MODE0)), (100.0, wrap(SSDV, MODE1)), (200.0, b"$$bare")):
            clock.t = t
            n = ch.stats.frames_in
            payload.sendto(datagram, ch.sock.getsockname())
            wait_for(lambda n=n: ch.stats.frames_in == n + 1)
        assert drain(gnd) == [SENTENCE, SSDV, b"$$bare"]  # a two-channel gateway's: the packets themselves
    finally:
        stop.set()
        worker.join(timeout=5)
        ch.close(tmp_path / "channel.json")
        gnd.close()
        payload.close()
    airtimes = [MODE0.airtime_s(len(SENTENCE)), MODE1.airtime_s(255), LoRaMode().airtime_s(6)]
    assert (tmp_path / "air.hex").read_text().split() == [SENTENCE.hex(), SSDV.hex(), b"$$bare".hex()]
    assert (tmp_path / "air.times").read_text().splitlines() == [
        f"{t:.3f} {a:.3f}" for t, a in zip((10.0, 100.0, 200.0), airtimes)]
    assert air_frames(tmp_path) == [(10.0, SENTENCE), (100.0, SSDV), (200.0, b"$$bare")]
    assert air_airtimes(tmp_path) == pytest.approx(airtimes, abs=1e-3)
    stats = json.loads((tmp_path / "channel.json").read_text())
    assert stats["airtime_s"] == pytest.approx(sum(airtimes), abs=1e-3) and stats["bytes_in"] == len(SENTENCE) + 255 + 6


def test_air_times_of_one_column_still_read(tmp_path):
    (tmp_path / "air.hex").write_text(f"{SENTENCE.hex()}\n{SSDV.hex()}\n")
    (tmp_path / "air.times").write_text("10.0\n100.5\n")
    assert air_frames(tmp_path) == [(10.0, SENTENCE), (100.5, SSDV)]
    assert air_airtimes(tmp_path) == [None, None]
    (tmp_path / "air.times").write_text("10.0\n")
    with pytest.raises(ValueError, match="2 frames but air.times 1 times"):
        air_frames(tmp_path)


def test_a_chip_balloon_hears_the_others_packets_wrapped_and_a_udp_radio_bare(tmp_path):
    stop = threading.Event()
    gnd = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    gnd.bind(("127.0.0.1", 0))
    payloads = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
    for p in payloads:
        p.bind(("127.0.0.1", 0))
    clock = ManualClock()
    station = GroundStation("home", HOME.lat, HOME.lon, 20, forward=gnd.getsockname())
    tracks = [fixed(east_of(HOME, km, 5_000)) for km in (0, 20, 40)]
    ch = Channel(("127.0.0.1", 0), gnd.getsockname(), LossSpec(0.0), 3, tmp_path / "air.hex", stop,
                 stations=[station], positions=tracks, config=ChannelConfig(half_duplex=False), clock=clock)
    worker = threading.Thread(target=ch.run)
    worker.start()
    try:
        def send(balloon: int, datagram: bytes, t: float) -> None:
            clock.t = t
            n = ch.stats.frames_in
            payloads[balloon].sendto(datagram, ch.socks[balloon].getsockname())
            wait_for(lambda: ch.stats.frames_in == n + 1)

        send(1, wrap(SENTENCE, MODE0), 10.0)  # balloon 1 flies a chip
        send(2, b"$$UDP", 20.0)  # balloon 2 a UDP radio, which reads no header
        drain(payloads[1]), drain(payloads[2])
        send(0, wrap(SSDV, MODE1), 100.0)
        payloads[1].settimeout(5)
        assert unwrap(payloads[1].recvfrom(4096)[0]) == (SSDV, MODE1)  # the chip decides if it was listening there
        assert drain(payloads[2]) == [SSDV]
    finally:
        stop.set()
        worker.join(timeout=5)
        ch.close(tmp_path / "channel.json")
        for s in (gnd, *payloads):
            s.close()
    stats = json.loads((tmp_path / "channel.json").read_text())
    assert [b["airtime_s"] for b in stats["balloons"]] == pytest.approx(
        [MODE1.airtime_s(255), MODE0.airtime_s(len(SENTENCE)), ChannelConfig().lora.airtime_s(5)], abs=1e-3)


def test_the_soak_verdict_prices_each_frame_with_the_airtime_the_relay_wrote(tmp_path):
    """Ten 47-second mode-0 frames in an hour breach a 10 % duty cycle; priced at the bench's
    SF9/125 kHz from their length, as a one-column air.times must be, they would not."""
    from payload.config import load_config

    cfg = load_config(None)  # bench defaults: SF9/125 kHz, a 10 % duty cycle
    (tmp_path / "air.hex").write_text(f"{SENTENCE.hex()}\n" * 10)
    (tmp_path / "report.json").write_text(json.dumps({"flight_s": 1000.0, "unit": {"watchdog_timeouts": 0}}))
    (tmp_path / "air.times").write_text("".join(f"{100 * i}.000 47.000\n" for i in range(10)))
    assert check(tmp_path, cfg).worst_hour_airtime_s == 470.0
    assert any("470 s on air in one hour" in p for p in check(tmp_path, cfg).problems)
    (tmp_path / "air.times").write_text("".join(f"{100 * i}.000\n" for i in range(10)))
    priced = check(tmp_path, cfg)
    assert priced.worst_hour_airtime_s < 10 and not any("on air in one hour" in p for p in priced.problems)
