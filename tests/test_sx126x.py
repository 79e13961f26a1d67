"""The SX126x driver (stratoecho/lora_chips/sx126x.py) against the command-level simulator (sim/chips/sx126x.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory
from pydantic import ValidationError

from payload.config import RadioSection
from payload.parts.radios import make_radio
from sim.chips.sx126x import MODE_SLEEP, MODE_STDBY_RC, Sx126xChip
from stratoecho import wire
from stratoecho.lora import UKHAS_MODES, ukhas_mode
from stratoecho.lora_chips.chip import RadioError
from stratoecho.lora_chips.sx126x import Sx126xRadio, frf, image_band, pa_params, sync_word_register
from tests.fakes import flight_auth
from tests.test_sx127x import ScheduledClock

REPO = Path(__file__).resolve().parent.parent
BUSY, DIO1, RESET = 6, 26, 12  # the wiring in docs/hardware.md


def radio(mode: int = 0, mhz: float = 434.225, chip_kw: dict | None = None, **kw):
    factory, clock = MockFactory(), ScheduledClock()
    chip = Sx126xChip(now=clock.elapsed_s, **(chip_kw or {}))
    chip.wire(factory, busy=BUSY, dio1=DIO1)
    r = Sx126xRadio(chip.spi(), ukhas_mode(mode).settings(mhz), clock=clock, busy_pin=BUSY, pin_factory=factory, **kw)
    return r, chip, clock


def last(chip: Sx126xChip, opcode: int) -> bytes:
    return [p for op, p in chip.commands if op == opcode][-1]


@pytest.mark.parametrize("mode", [0, 2, 3, 5, 7])
def test_each_ukhas_mode_programs_the_modulation_and_packet_parameters_the_datasheet_asks(mode):
    m = UKHAS_MODES[mode]
    r, chip, _ = radio(mode)
    # SetModulationParams: SF, the SX126x's own bandwidth code (table 13-47), CR 4/5..4/8 as 1..4, LDRO.
    bw_code = {20_800: 0x09, 41_700: 0x0A, 62_500: 0x03, 250_000: 0x05}[m.bandwidth_hz]
    assert last(chip, 0x8B)[:4] == bytes([m.spreading_factor, bw_code, m.coding_rate - 4, int(m.low_data_rate_optimize)])
    # SetPacketParams: 8 symbols of preamble, explicit header, up to 255 bytes, CRC on, IQ standard.
    assert last(chip, 0x8C) == bytes([0, 8, 0, 255, 1, 0])
    assert last(chip, 0x8A) == b"\x01"  # LoRa
    assert last(chip, 0x86) == round(434.225e6 * 2**25 / 32e6).to_bytes(4, "big")
    assert (chip.regs[0x0740], chip.regs[0x0741]) == (0x14, 0x24)  # the private sync word 0x12
    assert chip.image == (0x6B, 0x6F)  # CalibrateImage for 430..440 MHz
    assert chip.pa == (0x02, 0x02, 0x00, 0x01) and chip.tx_power == 22  # +14 dBm, the datasheet's optimal row
    assert chip.regs[0x08D8] & 0x1E == 0x1E and chip.regs[0x0889] & 0x04  # the two workarounds (15.1, 15.2)
    assert chip.dio2_switch and chip.mode == MODE_STDBY_RC
    wanted = 0x001 | 0x002 | 0x040 | 0x200  # TxDone, RxDone, CrcErr, Timeout
    assert chip.irq_mask & wanted == wanted and chip.dio1_mask & wanted == wanted
    s = chip.settings()
    assert (s.spreading_factor, s.bandwidth_hz, s.coding_rate, s.explicit_header, s.low_data_rate_optimize, s.sync_word,
            s.power_dbm) == (m.spreading_factor, m.bandwidth_hz, m.coding_rate, True, m.low_data_rate_optimize, 0x12, 14)
    assert chip.refused == []  # nothing sent while BUSY was high, nothing the chip would not do
    r.close()
    assert chip.mode == MODE_SLEEP


def test_a_sent_frame_goes_out_whole_and_takes_the_airtime_the_payload_accounts_for():
    r, chip, clock = radio(2)
    start = clock.elapsed_s()
    frame = b"$$STRATO1,1,10:00:00,52.0,-2.0,1000,9,12.5,1000.1,3900,1,0123456BR9I*ABCD\n"
    r.send(frame)
    (packet, s), = chip.sent
    assert packet == frame and s.payload_length == len(frame)
    assert s.airtime_s(len(frame)) == pytest.approx(r.settings.airtime_s(len(frame)))
    assert clock.elapsed_s() - start == pytest.approx(r.settings.airtime_s(len(frame)), abs=0.06)
    assert chip.mode == MODE_STDBY_RC and chip.irq == 0  # fallen back to standby, TxDone cleared
    assert chip.refused == []


def test_a_packet_heard_in_the_window_is_returned_with_its_half_db_rssi_and_quarter_db_snr():
    r, chip, clock = radio(2)
    at = clock.elapsed_s() + 3.0
    clock.at.append((at, lambda: chip.hear(b"\xed uplink", rssi_dbm=-112.5, snr_db=-4.25)))
    assert r.receive(10.0) == [b"\xed uplink"]
    assert clock.elapsed_s() == pytest.approx(at, abs=0.06)  # returned as it arrived, not at the window's end
    (signal,) = r.heard
    assert (signal.rssi_dbm, signal.snr_db) == (-112.5, -4.25)
    assert chip.mode == MODE_STDBY_RC  # not listening outside the window
    assert chip.hear(b"late") is False and chip.missed == 1
    r.close()


def test_a_damaged_packet_is_dropped_and_the_next_is_read_where_the_chip_put_it():
    """In continuous RX the chip writes each packet after the one before: the driver must read
    from GetRxBufferStatus's start, not from the RX base address."""
    r, chip, clock = radio(2)
    t = clock.elapsed_s()
    clock.at.append((t + 1.0, lambda: chip.hear(b"garbled by the air", crc_ok=False)))
    clock.at.append((t + 2.0, lambda: chip.hear(b"good")))
    assert r.receive(5.0) == [b"good"]
    assert r.errors["payload crc"] == 1 and len(r.heard) == 1
    clock.at.append((clock.elapsed_s() + 1.0, lambda: chip.hear(b"bad", crc_ok=False)))
    start = clock.elapsed_s()
    assert r.receive(4.0) == []
    assert clock.elapsed_s() - start == pytest.approx(4.0, abs=0.02) and r.errors["payload crc"] == 2
    r.close()


def test_dio1_on_a_mock_pin_follows_txdone_and_rxdone_and_reset_is_released():
    r, chip, clock = radio(3, 869.525, dio1_pin=DIO1, reset_pin=RESET)
    factory = chip.dio1_pin.factory
    assert factory.pin(RESET).state is True
    assert chip.image == (0xD7, 0xDB)  # 863..870 MHz
    r.send(b"x" * 40)
    assert chip.dio1_pin.state is False  # TxDone seen and cleared
    clock.at.append((clock.elapsed_s() + 0.5, lambda: chip.hear(b"up")))
    assert r.receive(2.0) == [b"up"]
    assert chip.dio1_pin.state is False
    r.close()


def test_no_chip_on_the_bus_no_busy_pin_and_a_stuck_busy_are_clear_errors():
    class Silent:
        def xfer2(self, data):
            return [0] * len(data)

        def close(self):
            pass

    settings = ukhas_mode(0).settings(434.225)
    with pytest.raises(RadioError, match="GetStatus reads 0x00.*no SX126x answers"):
        Sx126xRadio(Silent(), settings, clock=ScheduledClock(), busy_pin=BUSY, pin_factory=MockFactory())
    with pytest.raises(RadioError, match="no BUSY pin"):
        Sx126xRadio(Silent(), settings, clock=ScheduledClock(), pin_factory=MockFactory())
    with pytest.raises(RadioError, match=r"BUSY \(GPIO 6\) still high after 100 ms"):
        radio(0, chip_kw={"hung": True})
    r, chip, _ = radio(0)
    chip.hung = True  # the chip stops answering in flight: a send fails, it does not hang
    with pytest.raises(RadioError, match="BUSY"):
        r.send(b"lost")
    r.close()


def test_a_command_sent_while_busy_is_lost_as_on_the_chip():
    clock = ScheduledClock()
    chip = Sx126xChip(now=clock.elapsed_s)
    chip.transfer([0x8A, 0x01])
    chip.transfer([0x8A, 0x00])  # no wait for BUSY: the chip is still on the first
    assert chip.packet_type == 0x01 and "BUSY" in chip.refused[0]


def test_a_tcxo_module_needs_its_voltage_and_fails_clearly_without_it():
    with pytest.raises(RadioError, match="XOSC start.*tcxo_voltage"):
        radio(2, chip_kw={"tcxo_volts": 1.8})
    r, chip, _ = radio(2, chip_kw={"tcxo_volts": 1.8}, tcxo_voltage=1.8)
    assert last(chip, 0x97) == bytes([0x02, 0, 0x01, 0x40])  # 1.8 V, 5 ms in 15.625 us steps
    r.send(b"warm")
    assert chip.sent[0][0] == b"warm"
    chip.tcxo_set = None  # the TCXO's supply fails in flight: SetTx cannot start, and no TxDone comes
    with pytest.raises(RadioError, match="no TxDone"):
        r.send(b"cold")
    r.close()


def test_without_dio2_driving_the_rf_switch_nothing_is_radiated():
    r, chip, _ = radio(2, dio2_rf_switch=False)
    r.send(b"into the switch")
    assert chip.sent == [] and "RF switch" in chip.refused[0]
    r.close()


@pytest.mark.parametrize("dbm", [22, 20, 17, 14, 10, -9])
def test_each_power_is_what_the_chip_radiates(dbm):
    r, chip, _ = radio(2, tx_power_dbm=dbm)
    assert chip.settings().power_dbm == dbm and chip.refused == []
    r.close()


def test_the_chips_arithmetic():
    assert frf(434.0) == 0x1B200000  # 434 MHz * 2^25 / 32 MHz
    assert sync_word_register(0x12) == (0x14, 0x24) and sync_word_register(0x34) == (0x34, 0x44)
    assert image_band(434.225) == (0x6B, 0x6F) and image_band(869.525) == (0xD7, 0xDB)
    assert image_band(144.0 + 300) == (109, 113)  # outside the datasheet's table: 4 MHz steps around it
    assert pa_params(22) == (4, 7, 22) and pa_params(17) == (2, 3, 22) and pa_params(9) == (4, 7, 9)
    with pytest.raises(RadioError, match="-9..22"):
        pa_params(23)


def test_the_configuration_names_what_an_sx126x_needs():
    base = {"kind": "sx126x", "frequency_mhz": 434.225, "lora_mode": 2}
    with pytest.raises(ValidationError, match="needs busy_pin"):
        RadioSection(**base)
    with pytest.raises(ValidationError, match="tcxo_voltage 2: DIO3 gives"):
        RadioSection(**base, busy_pin=BUSY, tcxo_voltage=2.0)
    with pytest.raises(ValidationError, match="tx_power_dbm 22: an sx127x gives -1..20"):
        RadioSection(kind="sx127x", frequency_mhz=434.225, tx_power_dbm=22)
    cfg = RadioSection(**base, busy_pin=BUSY, dio1_pin=DIO1, tx_power_dbm=22, tcxo_voltage=1.8)
    factory, clock = MockFactory(), ScheduledClock()
    chip = Sx126xChip(now=clock.elapsed_s, tcxo_volts=1.8)
    chip.wire(factory, busy=BUSY, dio1=DIO1)
    r = make_radio(cfg, clock, spi_opener=lambda bus, dev: chip.spi(), pin_factory=factory)
    assert isinstance(r, Sx126xRadio) and chip.settings().power_dbm == 22 and chip.pa[:2] == (0x04, 0x07)
    r.close()


def test_a_bench_flight_flies_the_driver_over_a_simulated_sx1262_in_a_ukhas_mode(tmp_path):
    """`sim fly` with a configuration whose radio is an SX1262: the payload's own driver programs
    the bench's simulated chip over its fake SPI bus behind BUSY, the chip's packets are the
    channel's frames, and the ground's signed frames reach it in the listen windows."""
    from sim.bench.fly import FlyOptions, fly

    config = (REPO / "config" / "payload.sim.toml").read_text()
    start = config.index("[radio]")
    radio_toml = ('[radio]\nkind = "sx126x"\nfrequency_mhz = 869.525\nlora_mode = 3\nband_plan = "erc70-03-869.4"\n'
                  'erp_mw = 25.0\nspi_device = 0\nbusy_pin = 6\ndio1_pin = 26\nreset_pin = 12\ntx_power_dbm = 14\n'
                  'tcxo_voltage = 1.8\n')
    path = tmp_path / "sx1262.toml"
    path.write_text(config[:start] + radio_toml + config[config.index("\n[", start + 1):])
    report = fly(FlyOptions(out=tmp_path / "fly", persona=None, minutes=20, speedup=None, config=path, quiet=True))
    log = (tmp_path / "fly" / "payload.log").read_text()
    configured = json.loads(next(line for line in log.splitlines() if '"lora_configured"' in line))
    assert (configured["sf"], configured["bw_hz"], configured["cr"], configured["tcxo_v"]) == (7, 250_000, "4/6", 1.8)
    assert report["telemetry"]["received"] >= 0.7 * report["telemetry"]["sent"] > 0
    heard = log.count('"lora_heard"')
    assert heard >= 0.8 * report["uplink"]["received"] > 0  # the ground's frames, heard in the windows
    assert '"chip_missed_packet"' not in log
    assert '"chip_refused"' not in log  # no command lost to BUSY, nothing the chip would not do
    frames = [bytes.fromhex(h) for h in (tmp_path / "fly" / "air.hex").read_text().split()]
    auth = flight_auth(tmp_path / "fly")
    assert frames and all(isinstance(wire.decode_frame(f, auth), (wire.Telemetry, wire.Fragment, wire.Window))
                          for f in frames)
