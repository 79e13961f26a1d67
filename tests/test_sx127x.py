"""The SX127x driver (stratoecho/lora_chips/sx127x.py) against the register-level simulator (sim/chips/sx127x.py)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from sim.bench.run.link import VirtualClock
from sim.chips.sx127x import Sx127xChip
from stratoecho import wire
from stratoecho.lora import UKHAS_MODES, LoRaSettings, ukhas_mode
from stratoecho.lora_chips.chip import RadioError
from stratoecho.lora_chips.sx127x import Sx127xRadio, frf, packet_rssi_dbm
from tests.fakes import flight_auth

REPO = Path(__file__).resolve().parent.parent


class ScheduledClock(VirtualClock):
    """Flight time that moves when waited on, and things that happen at set times on the way."""

    def __init__(self):
        super().__init__()
        self.at: list[tuple[float, object]] = []

    def wait(self, flight_seconds: float, stop: threading.Event | None = None) -> bool:
        end = self.t + max(flight_seconds, 0.0)
        for when, action in sorted(self.at, key=lambda a: a[0]):
            if self.t <= when <= end:
                self.at.remove((when, action))
                self.t = when
                action()
                if stop is not None and stop.is_set():
                    return True
        self.t = end
        return stop is not None and stop.is_set()


def radio(mode: int = 0, mhz: float = 434.225, **kw) -> tuple[Sx127xRadio, Sx127xChip, ScheduledClock]:
    clock = ScheduledClock()
    chip = Sx127xChip(now=clock.elapsed_s)
    return Sx127xRadio(chip.spi(), ukhas_mode(mode).settings(mhz), clock=clock, **kw), chip, clock


@pytest.mark.parametrize("mode", [0, 2, 3, 5, 7])
def test_each_ukhas_mode_programs_the_registers_the_lora_gateway_programs(mode):
    """The gateway's SetLoRaParameters for its mode N, worked out from its table, register by register."""
    m = UKHAS_MODES[mode]
    r, chip, _ = radio(mode)
    bw_bits = {20_800: 0x30, 41_700: 0x50, 62_500: 0x60, 250_000: 0x80}[m.bandwidth_hz]
    assert chip.regs[0x1D] == (0 if m.explicit_header else 1) | (m.coding_rate - 4) << 1 | bw_bits
    assert chip.regs[0x1E] == m.spreading_factor << 4 | 0x04  # CRC on
    assert chip.regs[0x26] == 0x04 | (0x08 if m.low_data_rate_optimize else 0)
    assert chip.regs[0x31] & 0x07 == 0x03 and chip.regs[0x37] == 0x0A
    assert chip.regs[0x39] == 0x12  # the sync word the gateway leaves at its reset value
    # The gateway's frequency: MHz * 7110656 / 434, truncated.
    assert chip.regs[0x06] << 16 | chip.regs[0x07] << 8 | chip.regs[0x08] == int(434.225 * 7110656 / 434)
    assert chip.lora and chip.mode == 0x01  # LoRa, standby
    s = chip.settings()
    assert (s.spreading_factor, s.bandwidth_hz, s.coding_rate, s.explicit_header, s.low_data_rate_optimize) == (
        m.spreading_factor, m.bandwidth_hz, m.coding_rate, m.explicit_header, m.low_data_rate_optimize)
    r.close()


def test_a_sent_frame_goes_out_whole_and_takes_the_airtime_the_payload_accounts_for():
    r, chip, clock = radio(2)
    frame = b"$$STRATO1,1,10:00:00,52.0,-2.0,1000,9,12.5,1000.1,3900,1,0123456BR9I*ABCD\n"
    r.send(frame)
    (packet, s), = chip.sent
    assert packet == frame and s.pa_boost and s.power_dbm == 10
    # The chip's time on air, from its registers, is the payload's, from its settings.
    assert s.airtime_s(len(frame)) == pytest.approx(r.settings.airtime_s(len(frame)))
    assert clock.elapsed_s() == pytest.approx(r.settings.airtime_s(len(frame)), abs=0.06)
    assert chip.mode == 0x01 and chip.regs[0x12] == 0  # standby, TxDone cleared
    r.close()
    assert chip.mode == 0x00 and chip.lora  # asleep after close


def test_a_packet_heard_in_the_window_is_returned_with_its_signal():
    r, chip, clock = radio(2)
    clock.at.append((3.0, lambda: chip.hear(b"\xed uplink", rssi_dbm=-112, snr_db=-4.5)))
    assert r.receive(10.0) == [b"\xed uplink"]
    assert clock.elapsed_s() == pytest.approx(3.0, abs=0.06)  # returned as it arrived, not at the window's end
    (signal,) = r.heard
    assert signal.snr_db == -4.5 and signal.rssi_dbm == -112
    assert chip.mode == 0x01  # standby again: not listening outside the window
    assert chip.hear(b"late") is False and chip.missed == 1  # half duplex: heard outside a window is missed
    r.close()


def test_a_window_with_nothing_heard_lasts_its_time_and_a_damaged_packet_is_dropped():
    r, chip, clock = radio(2)
    clock.at.append((1.0, lambda: chip.hear(b"garbled", crc_ok=False)))
    assert r.receive(5.0) == []
    assert clock.elapsed_s() == pytest.approx(5.0)
    assert r.errors["payload crc"] == 1
    r.close()


def test_dio0_on_a_mock_pin_follows_txdone_and_rxdone():
    factory = MockFactory()
    clock = ScheduledClock()
    chip = Sx127xChip(now=clock.elapsed_s, dio0_pin=factory.pin(25))
    r = Sx127xRadio(chip.spi(), ukhas_mode(3).settings(869.5), clock=clock, dio0_pin=25, reset_pin=22,
                    pin_factory=factory)
    assert factory.pin(22).state is True  # RESET released after the reset pulse
    r.send(b"x" * 40)
    assert factory.pin(25).state is False  # TxDone seen and cleared: DIO0 low again
    clock.at.append((0.5, lambda: chip.hear(b"up")))
    assert r.receive(2.0) == [b"up"]
    r.close()


def test_no_chip_on_the_bus_is_a_clear_error():
    class Silent:
        def xfer2(self, data):
            return [0] * len(data)

        def close(self):
            pass

    with pytest.raises(RadioError, match="RegVersion reads 0x00"):
        Sx127xRadio(Silent(), ukhas_mode(0).settings(434.225), clock=ScheduledClock())


def test_rfo_on_a_module_that_only_wires_pa_boost_radiates_nothing():
    r, chip, _ = radio(2, pa_boost=False, tx_power_dbm=10)
    r.send(b"lost")
    assert chip.sent == [] and "RFO" in chip.refused[0]
    r.close()


def test_the_chips_own_rules_hold_in_the_settings():
    with pytest.raises(ValueError, match="implicit-header"):
        LoRaSettings(434.0, spreading_factor=6, explicit_header=True)
    with pytest.raises(ValueError, match="bandwidth 100000"):
        LoRaSettings(434.0, bandwidth_hz=100_000)
    assert frf(434.0) == 7110656  # the datasheet's example: 434 MHz = 0x6C8000
    assert packet_rssi_dbm(50, 7.0, 434.0) == -114 and packet_rssi_dbm(50, -3.0, 868.0) == -110


def test_a_bench_flight_flies_the_driver_over_a_simulated_sx1278_in_a_ukhas_mode(tmp_path):
    """`sim fly` with a configuration whose radio is an SX127x: the payload's own driver programs the
    bench's simulated chip over its fake SPI bus, the chip's packets are the channel's frames, and
    the ground's signed frames reach it in the listen windows, one time on air after another."""
    from sim.bench.fly import FlyOptions, fly

    config = (REPO / "config" / "payload.sim.toml").read_text()
    start = config.index("[radio]")
    radio = ('[radio]\nkind = "sx127x"\nfrequency_mhz = 869.525\nlora_mode = 3\nband_plan = "erc70-03-869.4"\n'
             'erp_mw = 25.0\nspi_device = 1\ndio0_pin = 25\ntx_power_dbm = 14\n')
    path = tmp_path / "sx1278.toml"
    path.write_text(config[:start] + radio + config[config.index("\n[", start + 1):])
    report = fly(FlyOptions(out=tmp_path / "fly", persona=None, minutes=20, speedup=None, config=path, quiet=True))
    log = (tmp_path / "fly" / "payload.log").read_text()
    configured = json.loads(next(line for line in log.splitlines() if '"lora_configured"' in line))
    assert (configured["sf"], configured["bw_hz"], configured["cr"], configured["explicit"]) == (7, 250_000, "4/6", True)
    assert report["telemetry"]["received"] >= 0.7 * report["telemetry"]["sent"] > 0
    heard = log.count('"lora_heard"')
    assert heard >= 0.8 * report["uplink"]["received"] > 0  # the ground's frames, heard in the windows
    assert '"chip_missed_packet"' not in log  # nothing arrived while the chip was not listening
    frames = [bytes.fromhex(h) for h in (tmp_path / "fly" / "air.hex").read_text().split()]
    auth = flight_auth(tmp_path / "fly")
    assert frames and all(isinstance(wire.decode_frame(f, auth), (wire.Telemetry, wire.Fragment, wire.Window))
                          for f in frames)


def test_a_payload_listening_between_its_frames_keeps_the_chip_in_rx_and_hears_a_long_packet_whole():
    """A relaying payload listens in one-second turns between its own frames (docs/network.md). A
    mode-0 packet lasts seconds: a chip put back in standby after each turn would miss it; `hear`
    leaves it in RX continuous, so a packet that lands between two turns is still heard."""
    from payload.parts.radios import ReopeningRadio

    r, chip, clock = radio(0)
    clock.event = threading.Event  # ReopeningRadio's closing event
    payload_radio = ReopeningRadio(lambda: r, clock, opened=r)
    assert payload_radio.hear(1.0) == [] and chip.mode & 0x07 == 0x05  # RX continuous after the turn
    assert chip.hear(b"FAR1's long packet") is True  # between two turns: the chip still listens
    assert payload_radio.hear(1.0) == [b"FAR1's long packet"] and chip.missed == 0
    r.send(b"$$NEAR1,1")  # our own frame: the chip leaves RX to send it
    assert chip.hear(b"while we sent") is False and chip.missed == 1  # half duplex
    assert payload_radio.receive(1.0) == [] and chip.mode == 0x01  # a listen window still ends in standby
    r.close()
