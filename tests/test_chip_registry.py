"""A LoRa chip is added by registration alone (stratoecho/lora_chips/profiles.py, sim/chips/spi_bus.py):
a fake chip, its profile and its simulator registered here and nowhere else, is taken by the
payload's [radio], built by its radio factory, accepted by the ground's --lora and flown on the
bench; unregistered, every end refuses it by a message naming the chips there are."""

from __future__ import annotations

import socket

import pytest
from gpiozero.pins.mock import MockFactory
from pydantic import ValidationError

from groundstation.__main__ import build_parser
from groundstation.sources.lora_hat import LoRaHatSource, hat_options
from payload.config import RadioSection
from payload.parts.radios import make_radio
from sim.chips import spi_bus
from sim.chips.air import unwrap
from sim.chips.simulated import simulated_spi
from sim.chips.spi_bus import SpiSocket, chip_simulator, register_simulator
from sim.chips.sx127x import Sx127xChip
from stratoecho.lora_chips import profiles
from stratoecho.lora_chips.profiles import ChipOption, ChipProfile, chip_names, chip_profile, register_chip
from stratoecho.lora_chips.sx127x import Sx127xRadio
from tests.test_sx127x import ScheduledClock

DIO0, TX_LED = 25, 21


class FakeRadio(Sx127xRadio):
    """A register-compatible SX127x clone on a board that lights a TX LED: its own option."""

    def __init__(self, spi, settings, *, tx_led_pin, **driver):
        super().__init__(spi, settings, **driver)
        self.tx_led_pin = tx_led_pin


FAKE = ChipProfile(
    name="fake127x", label="Fake127x", driver=FakeRadio, parts="an SX127x clone with a TX LED",
    tx_power_dbm=(2, 17), power_help="2..17", check_power=lambda tx_power_dbm, options: None,
    options=(
        ChipOption("dio0_pin", "GPIO wired to DIO0"),  # the SX127x's too: one flag, one key for both
        ChipOption("tx_led_pin", "GPIO lighting the TX LED", required="the board keys its PA from the same line"),
    ),
    irq_pin="dio0_pin",
)


def fake_on_the_bench(radio, *, now, transmit, listen, pins) -> SpiSocket:
    dio0 = pins.pin(radio.dio0_pin) if radio.dio0_pin is not None else None
    return SpiSocket(Sx127xChip(now=now, transmit=transmit, listen=listen, dio0_pin=dio0))


@pytest.fixture
def fake_chip(monkeypatch):
    """The fake chip registered for one test: the registries are put back after it."""
    monkeypatch.setattr(profiles, "PROFILES", dict(profiles.PROFILES))
    monkeypatch.setattr(spi_bus, "SIMULATORS", dict(spi_bus.SIMULATORS))
    register_chip(FAKE)
    register_simulator(FAKE.name, fake_on_the_bench)
    return FAKE


def listen_args(*argv: str):
    return build_parser().parse_args(["listen", "--db", "unused.db", *argv])


def test_the_built_in_chips_are_registered_with_a_simulator_each():
    assert chip_names() == ("sx127x", "sx126x")
    assert set(spi_bus.SIMULATORS) == set(chip_names())
    assert chip_profile("sx126x").required_keys == ("frequency_mhz", "busy_pin")


def test_an_unregistered_chip_is_refused_everywhere_by_a_message_naming_the_registered_ones(capsys):
    with pytest.raises(ValueError, match="no LoRa chip 'fake127x': one of sx127x, sx126x"):
        chip_profile("fake127x")
    with pytest.raises(ValidationError, match="Input should be 'udp', 'kiss', 'lora_uart', 'sx127x' or 'sx126x'"):
        RadioSection(kind="fake127x", frequency_mhz=434.225)
    with pytest.raises(ValidationError, match="tx_led_pin\n  Extra inputs are not permitted"):
        RadioSection(tx_led_pin=TX_LED)  # no registered chip has the key
    with pytest.raises(SystemExit):
        listen_args("--lora", "fake127x", "--frequency-mhz", "434.225")
    refused = capsys.readouterr().err
    assert "invalid choice: 'fake127x'" in refused and "sx127x" in refused and "sx126x" in refused
    with pytest.raises(ValueError, match="no simulated 'fake127x' chip: it simulates sx126x, sx127x"):
        chip_simulator("fake127x")


def test_the_payload_configuration_takes_a_registered_chip_and_its_own_keys(fake_chip):
    radio = RadioSection(kind="fake127x", frequency_mhz=434.225, tx_led_pin=TX_LED, dio0_pin=DIO0)
    assert (radio.tx_led_pin, radio.dio0_pin, radio.address) == (TX_LED, DIO0, "SPI 0.0 at 434.225 MHz")
    assert RadioSection.model_validate(radio.model_dump()) == radio  # the daemon's round trip keeps them
    with pytest.raises(ValidationError, match="kind = 'fake127x' needs tx_led_pin"):
        RadioSection(kind="fake127x", frequency_mhz=434.225)
    with pytest.raises(ValidationError, match="tx_power_dbm 20: an fake127x gives 2..17 dBm"):
        RadioSection(kind="fake127x", frequency_mhz=434.225, tx_led_pin=TX_LED, tx_power_dbm=20)
    with pytest.raises(ValidationError, match="tx_led_pin.int\n  Input should be a valid integer"):
        RadioSection(kind="fake127x", frequency_mhz=434.225, tx_led_pin=[TX_LED])
    with pytest.raises(ValidationError, match="tx_led_pim\n  Extra inputs are not permitted"):
        RadioSection(kind="fake127x", frequency_mhz=434.225, tx_led_pin=TX_LED, tx_led_pim=TX_LED)


def test_the_payload_flies_a_registered_chip_over_its_simulator_on_the_bench(fake_chip):
    air = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    air.bind(("127.0.0.1", 0))
    air.settimeout(5.0)
    radio_cfg = RadioSection(kind="fake127x", frequency_mhz=434.225, lora_mode=2, tx_led_pin=TX_LED, dio0_pin=DIO0)
    clock, pins = ScheduledClock(), MockFactory()
    open_spi, socket_ = simulated_spi(radio_cfg, f"127.0.0.1:{air.getsockname()[1]}", clock, pins)
    radio = make_radio(radio_cfg, clock, spi_opener=open_spi, pin_factory=pins)
    try:
        assert isinstance(radio, FakeRadio) and radio.tx_led_pin == TX_LED
        assert radio.name == "Fake127x on SPI 0.0"
        radio.send(b"hello from the fake chip")
        assert unwrap(air.recv(4096))[0] == b"hello from the fake chip"  # behind the settings it was keyed with
        assert socket_.chip.sent[0][1].spreading_factor == 8  # mode 2, as the configuration said
    finally:
        radio.close()
        air.close()


def test_the_ground_listens_through_a_registered_chip_with_its_own_flags(fake_chip, capsys):
    with pytest.raises(SystemExit):
        listen_args("--help")
    shown = " ".join(capsys.readouterr().out.split())
    assert "sx127x (SX1276/77/78: RFM95W/96W/98W, Uputronics and PITS boards), sx126x (SX1262/68 HATs) or " \
           "fake127x (an SX127x clone with a TX LED)" in shown
    assert "--tx-led-pin GPIO fake127x: GPIO lighting the TX LED" in shown
    assert "--dio0-pin GPIO sx127x, fake127x: GPIO wired to DIO0 (RxDone, TxDone)" in shown
    with pytest.raises(ValueError, match="--lora fake127x needs --tx-led-pin GPIO: the board keys its PA"):
        hat_options(vars(listen_args("--lora", "fake127x", "--frequency-mhz", "434.225")))
    with pytest.raises(ValueError, match="--busy-pin: for an SX126x, not --lora fake127x"):
        hat_options(vars(listen_args("--lora", "fake127x", "--frequency-mhz", "434.225", "--busy-pin", "6")))
    hat = hat_options(vars(listen_args("--lora", "fake127x", "--frequency-mhz", "434.225", "--lora-mode", "2",
                                       "--tx-led-pin", str(TX_LED), "--dio0-pin", str(DIO0))))
    assert hat.kind == "fake127x" and hat.chip == {"reset_pin": None, "tx_power_dbm": 10, "dio0_pin": DIO0,
                                                   "tx_led_pin": TX_LED}
    clock, pins = ScheduledClock(), MockFactory()
    chip = Sx127xChip(now=clock.elapsed_s, dio0_pin=pins.pin(DIO0))
    source = LoRaHatSource(hat, spi_opener=lambda bus, device: chip.spi(), pin_factory=pins, clock=clock)
    try:
        assert isinstance(source.radio, FakeRadio) and source.name == "LoRa HAT (fake127x on /dev/spidev0.0)"
        assert chip.hear(b"an uplink cue", rssi_dbm=-101.0, snr_db=5.0)
        heard = next(item for item in source if item is not None)
        assert heard.data == b"an uplink cue"
    finally:
        source.close()
