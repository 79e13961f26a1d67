"""`listen --lora`: a LoRa HAT on the ground Pi, the payload's own chip drivers
(stratoecho/lora_chips) against the register- and command-level simulators (sim/chips/sx127x.py,
sim/chips/sx126x.py) on a fake SPI bus, with gpiozero's MockFactory for their GPIO lines.

Packets reach a simulated chip through its air (`listen`: what a sender keyed, each arriving one
time on air after the one before) or `hear` at a set time; time is the tests' virtual clock."""

from __future__ import annotations

import errno
import json
import sqlite3
import sys
import types
from contextlib import closing

import pytest
from gpiozero.pins.mock import MockFactory

from groundstation.__main__ import build_parser, main
from groundstation.sources import SourceError, lora_hat
from groundstation.sources.lora_hat import HatOptions, LoRaHatSource, hat_options
from payload.config import RadioSection
from sim.chips.sx126x import MODE_RX, MODE_STDBY_RC, Sx126xChip
from sim.chips.sx127x import Sx127xChip
from stratoecho import wire
from stratoecho.logs import setup_logging
from stratoecho.lora import ukhas_mode
from stratoecho.lora_chips.spi import open_chip
from stratoecho.wire import uplink
from tests.fakes import AUTH, live_cue, live_sentence, write_flight_key
from tests.test_sx127x import ScheduledClock

KINDS = ("sx127x", "sx126x")
DIO0, BUSY, DIO1, RESET = 25, 6, 26, 12  # docs/hardware.md's wiring
TELEMETRY = [wire.Telemetry("STRATO", s, "12:04:11", 52.10123, -0.10234, 12345, 9, -40.5, 180.2, 3700, 3)
             for s in (1, 2)]
MUSING = wire.Record(wire.Kind.MUSING, 3, 7, 1714565055, "From up here the borders are invisible. " * 3)
FRAMES = [wire.encode_sentence(t) for t in TELEMETRY] + wire.fragment_record(MUSING, mtu=64, auth=AUTH)


@pytest.fixture(autouse=True)
def _logging_to_this_tests_stderr():
    setup_logging()


def cli(*argv: str) -> dict:
    """The HAT's options as `listen` parses them, by name (what `hat_options` reads)."""
    return vars(build_parser().parse_args(["listen", "--db", "unused.db", *argv]))


def chip_args(kind: str, dio: bool = True) -> list[str]:
    if kind == "sx127x":
        return ["--lora", "sx127x", *(["--dio0-pin", str(DIO0)] if dio else [])]
    return ["--lora", "sx126x", "--busy-pin", str(BUSY), "--reset-pin", str(RESET),
            *(["--dio1-pin", str(DIO1)] if dio else [])]


class Bench:
    """A simulated chip, its air and its pins, as a HAT for `LoRaHatSource` or `open_chip`."""

    def __init__(self, kind: str, dio: bool = True, **chip_kw):
        self.kind, self.clock, self.factory, self.air = kind, ScheduledClock(), MockFactory(), []
        if kind == "sx127x":
            dio0 = self.factory.pin(DIO0) if dio else None
            self.chip = Sx127xChip(now=self.clock.elapsed_s, listen=self._keyed, dio0_pin=dio0, **chip_kw)
        else:
            self.chip = Sx126xChip(now=self.clock.elapsed_s, listen=self._keyed, **chip_kw)
            self.chip.wire(self.factory, busy=BUSY, dio1=DIO1 if dio else None)
        self.opened: list[tuple[int, int]] = []

    def _keyed(self) -> list[bytes]:
        keyed, self.air[:] = list(self.air), []
        return keyed

    def spi(self, bus: int, device: int):
        self.opened.append((bus, device))
        return self.chip.spi()

    def source(self, *argv: str, dio: bool = True) -> LoRaHatSource:
        hat = hat_options(cli(*chip_args(self.kind, dio), "--frequency-mhz", "434.225", "--lora-mode", "2", *argv))
        return LoRaHatSource(hat, spi_opener=self.spi, pin_factory=self.factory, clock=self.clock)

    def listening(self) -> bool:
        if self.kind == "sx127x":
            return self.chip.lora and self.chip.mode == 0x05  # RX continuous
        return self.chip.mode == MODE_RX and not self.chip._rx_single


def take(items, n: int, polls: int = 200, clock: ScheduledClock | None = None, busy_s: float = 0.0) -> list:
    """The first `n` frames the source yields, within `polls` polls; with `clock`, each frame
    keeps the listener busy `busy_s` (storing it, answering it) before it polls again."""
    got = []
    for item in items:
        if item is not None:
            got.append(item)
            if len(got) == n:
                return got
            if clock is not None:
                clock.advance_to(clock.elapsed_s() + busy_s)
        polls -= 1
        assert polls > 0, f"only {len(got)} of {n} frames heard"
    raise AssertionError("the source ended")


# ---------------------------------------------------------------- hearing


@pytest.mark.parametrize("dio", [True, False], ids=["dio", "polled"])
@pytest.mark.parametrize("kind", KINDS)
def test_frames_on_the_air_are_heard_in_turn_with_their_signal_and_none_is_missed(kind, dio):
    bench = Bench(kind, dio)
    bench.chip.signal = (-121.0, -6.25)  # below the noise, as a balloon at 300 km is
    source = bench.source(dio=dio)
    assert bench.opened == [(0, 0)] and bench.listening()
    items = iter(source)
    assert next(items) is None  # nothing on the air yet
    # Between two polls (the listener storing a frame) the chip listens on: what arrives waits in it.
    assert bench.chip.hear(FRAMES[0], *bench.chip.signal)
    bench.air.extend(FRAMES[1:])  # keyed back to back by the payload: one time on air apart
    got = take(items, len(FRAMES), clock=bench.clock, busy_s=0.2)
    assert [r.data for r in got] == FRAMES
    assert {(r.rssi_dbm, r.snr_db) for r in got} == {(-121, -6.25)}
    assert {(r.origin, r.peer) for r in got} == {("lora /dev/spidev0.0", ("/dev/spidev0.0",))}
    assert bench.chip.missed == 0 and bench.listening()  # never left RX between polls
    assert not source.errors
    source.close()


@pytest.mark.parametrize("kind", KINDS)
def test_a_packet_with_a_bad_crc_is_counted_and_skipped(kind):
    bench = Bench(kind)
    source = bench.source()
    t = bench.clock.elapsed_s()
    bench.clock.at.append((t + 0.5, lambda: bench.chip.hear(b"garbled by the air", crc_ok=False)))
    bench.clock.at.append((t + 1.5, lambda: bench.chip.hear(FRAMES[0], rssi_dbm=-98.5, snr_db=9.5)))
    (got,) = take(iter(source), 1)
    assert got.data == FRAMES[0] and got.snr_db == 9.5 and round(got.rssi_dbm) in (-98, -99)
    assert source.errors == {"payload crc": 1}
    source.close()


@pytest.mark.parametrize("kind", KINDS)
def test_an_idle_chip_yields_none_every_poll(kind):
    bench = Bench(kind)
    source = bench.source()
    items = iter(source)
    start = bench.clock.elapsed_s()
    assert [next(items) for _ in range(3)] == [None, None, None]
    assert bench.clock.elapsed_s() - start == pytest.approx(3 * lora_hat.POLL_S, abs=0.06)
    source.close()


# ---------------------------------------------------------------- the uplink


@pytest.mark.parametrize("kind", KINDS)
def test_an_uplink_frame_goes_out_and_the_chip_listens_again_straight_after(kind):
    bench = Bench(kind)
    source = bench.source("--tx-power-dbm", "14")
    items = iter(source)
    start = bench.clock.elapsed_s()
    source.send(b"\xed a signed uplink frame", ("/dev/spidev0.0",))
    ((packet, settings),) = bench.chip.sent
    assert packet == b"\xed a signed uplink frame" and settings.power_dbm == 14
    # The listener waited the packet's time on air: half duplex.
    air_s = ukhas_mode(2).settings(434.225).airtime_s(len(packet))
    assert bench.clock.elapsed_s() - start == pytest.approx(air_s, abs=0.06)
    assert bench.listening()
    bench.air.append(FRAMES[0])
    assert take(items, 1)[0].data == FRAMES[0]
    with pytest.raises(OSError, match="uplink frame of 256 bytes not sent: .*does not fit one LoRa packet"):
        source.send(bytes(256))
    assert bench.listening()
    bench.air.append(FRAMES[1])
    assert take(items, 1)[0].data == FRAMES[1]
    assert bench.chip.missed == 0
    source.close()


def test_a_chip_that_hangs_while_sending_is_an_oserror_the_listener_counts():
    bench = Bench("sx126x")
    source = bench.source()
    bench.chip.hung = True
    with pytest.raises(OSError, match=r"not sent: .*BUSY \(GPIO 6\) still high"):
        source.send(b"\xed lost")
    with pytest.raises(SourceError, match=r"LoRa HAT \(sx126x on /dev/spidev0.0\): receive failed: .*BUSY"):
        next(iter(source))
    source.close()


@pytest.mark.parametrize("kind", KINDS)
def test_a_chip_that_lost_its_settings_is_programmed_again_and_listens(kind):
    bench = Bench(kind)
    source = bench.source()
    items = iter(source)
    assert next(items) is None
    if kind == "sx127x":  # a brown-out: the register page back at its reset values (FSK, standby)
        bench.chip.regs[:] = bytes(len(bench.chip.regs))
        bench.chip.__post_init__()
    else:
        bench.chip.mode, bench.chip.packet_type = MODE_STDBY_RC, 0x00
    bench.air.append(FRAMES[0])
    assert take(items, 1)[0].data == FRAMES[0]
    assert source.errors == {"rx restarted": 1} and bench.listening()
    source.close()


# ---------------------------------------------------------------- no chip


class Silent:
    """An SPI bus with nothing on it: MISO reads `level` throughout."""

    def __init__(self, level: int = 0x00):
        self.level = level

    def xfer2(self, data):
        return [self.level] * len(data)

    def close(self):
        pass


@pytest.mark.parametrize("level", [0x00, 0xFF])
def test_no_sx127x_on_the_bus_names_the_device_and_what_was_read(level):
    hat = hat_options(cli("--lora", "sx127x", "--spi-device", "1", "--frequency-mhz", "434.225"))
    with pytest.raises(SourceError, match=rf"LoRa HAT \(sx127x on /dev/spidev0\.1\): SX127x on SPI 0\.1: "
                                          rf"RegVersion reads 0x{level:02X}, not 0x12: no SX1276/77/78 answers"):
        LoRaHatSource(hat, spi_opener=lambda bus, device: Silent(level))


def test_no_sx126x_or_a_stuck_busy_names_the_device_and_what_was_read():
    hat = hat_options(cli(*chip_args("sx126x"), "--frequency-mhz", "434.225"))
    with pytest.raises(SourceError, match=r"LoRa HAT \(sx126x on /dev/spidev0\.0\): .*GetStatus reads 0x00.*no SX126x"):
        LoRaHatSource(hat, spi_opener=lambda bus, device: Silent(), pin_factory=MockFactory())
    bench = Bench("sx126x", hung=True)
    with pytest.raises(SourceError, match=r"sx126x on /dev/spidev0\.0\): .*BUSY \(GPIO 6\) still high after 100 ms"):
        bench.source()


def test_spidev_missing_or_refused_says_what_to_do(monkeypatch):
    hat = hat_options(cli("--lora", "sx127x", "--frequency-mhz", "434.225"))
    monkeypatch.setitem(sys.modules, "spidev", None)  # not installed (not a Pi)
    with pytest.raises(SourceError, match=r"/dev/spidev0\.0.*needs the spidev package \(pip install spidev"):
        LoRaHatSource(hat)

    class Refusing:
        def open(self, bus, device):
            raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setitem(sys.modules, "spidev", types.SimpleNamespace(SpiDev=Refusing))
    with pytest.raises(SourceError, match=r"cannot open /dev/spidev0\.0: .*Permission denied.*in the spi group"):
        LoRaHatSource(hat)


# ---------------------------------------------------------------- the command line


def test_help_says_which_chips_how_to_wire_them_and_what_they_need(capsys):
    with pytest.raises(SystemExit):
        main(["listen", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for needed in ("--lora CHIP", "sx127x (SX1276/77/78", "sx126x (SX1262/68", "--frequency-mhz MHZ",
                   "--lora-mode N", "--spi-device D", "0 is CE0 (pin 24), 1 is CE1 (pin 26)", "--dio0-pin GPIO",
                   "--busy-pin GPIO", "--dio1-pin GPIO", "--tcxo-voltage VOLTS", "raspi-config",
                   "the user in groups spi and gpio", "listen --lora sx127x --spi-device 1 --dio0-pin 25",
                   "repair and commands (--udp with --uplink-to, --serial or --lora)"):
        assert needed in text, needed


def test_the_options_program_what_the_payloads_radio_section_programs():
    """The same names, the same defaults, the same resolution of a mode: both ends agree."""
    hat = hat_options(cli("--lora", "sx127x", "--spi-device", "1", "--dio0-pin", "25", "--frequency-mhz", "434.225",
                          "--lora-mode", "0"))
    payload = RadioSection(kind="sx127x", frequency_mhz=434.225, lora_mode=0, spi_device=1, dio0_pin=25)
    assert hat == HatOptions("sx127x", payload.lora_settings(), 0, 1,
                             {"reset_pin": None, "tx_power_dbm": 10, "dio0_pin": 25, "pa_boost": True})
    hat = hat_options(cli("--lora", "sx126x", "--busy-pin", "GPIO6", "--dio1-pin", "26", "--tcxo-voltage", "1.8",
                          "--no-dio2-rf-switch", "--frequency-mhz", "869.525", "--sync-word", "0x34"))
    payload = RadioSection(kind="sx126x", frequency_mhz=869.525, busy_pin=6, sync_word=0x34)
    assert hat.settings == payload.lora_settings()  # SF9, 125 kHz, 4/5 by default, at both ends
    assert hat.chip == {"reset_pin": None, "tx_power_dbm": 10, "busy_pin": "GPIO6", "dio1_pin": 26,
                        "tcxo_voltage": 1.8, "dio2_rf_switch": False}
    hat = hat_options(cli("--lora", "sx127x", "--frequency-mhz", "434.225", "--spreading-factor", "11",
                          "--bandwidth-hz", "20800", "--coding-rate", "8", "--no-crc", "--preamble", "12"))
    s = hat.settings
    assert (s.spreading_factor, s.bandwidth_hz, s.coding_rate, s.low_data_rate_optimize, s.crc, s.preamble) == (
        11, 20_800, 8, True, False, 12)  # LDRO by the chip's rule of thumb: a 98 ms symbol
    assert hat_options(cli("--udp", "127.0.0.1:0")) is None


@pytest.mark.parametrize("argv, error", [
    (["--udp", "127.0.0.1:0", "--spi-device", "1", "--frequency-mhz", "434"],
     "--frequency-mhz, --spi-device: for a LoRa HAT, with --lora sx127x|sx126x"),
    (["--lora", "sx127x"], "--lora needs --frequency-mhz MHZ"),
    (["--lora", "sx126x", "--frequency-mhz", "434.225"], "--lora sx126x needs --busy-pin GPIO"),
    (["--lora", "sx127x", "--frequency-mhz", "434.225", "--busy-pin", "6", "--tcxo-voltage", "1.8"],
     "--busy-pin, --tcxo-voltage: for an SX126x, not --lora sx127x"),
    (["--lora", "sx126x", "--frequency-mhz", "434.225", "--busy-pin", "6", "--dio0-pin", "25", "--no-pa-boost"],
     "--dio0-pin, --[no-]pa-boost: for an SX127x, not --lora sx126x"),
    (["--lora", "sx127x", "--frequency-mhz", "434.225", "--lora-mode", "2", "--spreading-factor", "9"],
     "--lora-mode 2 (repeater) sets SF8, 62.5 kHz, 4/8; leave out --spreading-factor 9"),
    (["--lora", "sx127x", "--frequency-mhz", "434.225", "--lora-mode", "1"], "implicit-header packets"),
    (["--lora", "sx127x", "--frequency-mhz", "434.225", "--no-explicit-header"], "implicit-header packets"),
    (["--lora", "sx127x", "--frequency-mhz", "434.225", "--bandwidth-hz", "100000"],
     "bandwidth 100000 Hz is none a LoRa chip offers"),
    (["--lora", "sx127x", "--frequency-mhz", "434.225", "--tx-power-dbm", "18"],
     "--tx-power-dbm: tx_power_dbm 18: PA_BOOST gives 2..17 dBm, or 20"),
    (["--lora", "sx126x", "--busy-pin", "6", "--frequency-mhz", "434.225", "--tx-power-dbm", "23"],
     "--tx-power-dbm: tx_power_dbm 23: the SX1262's PA gives -9..22 dBm"),
])
def test_options_that_do_not_go_together_are_refused_before_anything_opens(tmp_path, capsys, argv, error):
    db = tmp_path / "ground.db"
    assert main(["listen", "--db", str(db), *argv]) == 2
    assert f"error: {error}" in capsys.readouterr().err
    assert not db.exists()


@pytest.mark.parametrize("argv, error", [
    (["--lora", "sx128x"], "invalid choice: 'sx128x'"),
    (["--lora", "sx127x", "--udp", "127.0.0.1:0"], "not allowed with argument"),
    (["--lora", "sx127x", "--lora-mode", "9"], "invalid choice: 9"),
    (["--lora", "sx126x", "--tcxo-voltage", "2.0"], "invalid choice: 2.0"),
    (["--lora", "sx127x", "--sync-word", "0x134"], "0x134 is not one byte"),
    (["--lora", "sx127x", "--spreading-factor", "6"], "6 is not a whole number from 7 to 12"),
])
def test_option_values_no_chip_takes_are_usage_errors(capsys, argv, error):
    with pytest.raises(SystemExit) as stopped:
        main(["listen", "--db", "unused.db", *argv])
    assert stopped.value.code == 2 and error in capsys.readouterr().err


def test_listen_without_spidev_exits_1_naming_the_device(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "spidev", None)
    assert main(["listen", "--lora", "sx127x", "--frequency-mhz", "434.225", "--db", str(tmp_path / "g.db")]) == 1
    assert "error: LoRa HAT (sx127x on /dev/spidev0.0): an SPI radio needs the spidev package" in capsys.readouterr().err


# ---------------------------------------------------------------- listen, end to end


def hat_on_the_bench(monkeypatch, bench: Bench) -> None:
    """`listen --lora` opens `bench`'s chip, its pins and its clock instead of the Pi's."""
    def opening(*args, **kw):
        return open_chip(*args, **{**kw, "spi_opener": bench.spi, "pin_factory": bench.factory, "clock": bench.clock})

    monkeypatch.setattr(lora_hat, "open_chip", opening)


@pytest.mark.parametrize("kind", KINDS)
def test_listen_stores_what_the_hat_hears_with_its_signal(tmp_path, capsys, monkeypatch, kind, flight_key):
    bench = Bench(kind)
    bench.chip.signal = (-112.0, 4.5)
    bench.air.extend(FRAMES)
    hat_on_the_bench(monkeypatch, bench)
    db, stats = tmp_path / "ground.db", tmp_path / "stats.json"
    argv = [*chip_args(kind), "--frequency-mhz", "434.225", "--lora-mode", "2", "--spi-device", "1",
            "--flight-key", str(flight_key)]
    assert main(["listen", *argv, "--db", str(db), "--duration", "1", "--json", "--stats", str(stats)]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["kind"], r["seq"]) for r in out] == [("telemetry", 1), ("telemetry", 2), ("musing", 7)]
    with closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("SELECT source, rssi_dbm, snr_db FROM frames").fetchall()
    assert rows == [("lora /dev/spidev0.1", -112.0, 4.5)] * len(FRAMES)
    assert json.loads(stats.read_text())["errors"] == 0 and bench.opened == [(0, 1)]
    assert bench.chip.missed == 0


def test_listen_answers_the_payloads_window_through_the_hat(tmp_path, capsys, monkeypatch):
    key = write_flight_key(tmp_path / "uplink.key")
    bench = Bench("sx126x")
    window = wire.decode_sentence(live_sentence(3, 6, "STRATO"))
    bench.air.append(live_sentence(3, 6, "STRATO"))  # seq 6, signed: the payload listens after it, and says so
    bench.air.append(live_cue(3, 6, uplink.payload_hash("STRATO")))
    hat_on_the_bench(monkeypatch, bench)
    argv = [*chip_args("sx126x"), "--frequency-mhz", "434.225", "--lora-mode", "2",
            "--flight-key", str(tmp_path / "uplink.key"), "--callsign", "STRATO"]
    assert main(["listen", *argv, "--db", str(tmp_path / "ground.db"), "--duration", "1", "--quiet"]) == 0
    sent = [packet for packet, _ in bench.chip.sent]
    assert sent, capsys.readouterr().err
    first = uplink.verify(key, sent[0], "STRATO", 0)
    assert first.command == uplink.LinkReport(boot=window.boot, last_seq=6, frames=2)
