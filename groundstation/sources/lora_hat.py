"""A LoRa HAT on the ground Pi as a source: `listen --lora CHIP`, any registered chip
(`stratoecho.lora_chips.profiles`: its own options are flags here, from its profile).

The chip on the HAT is driven by the payload's own drivers (`stratoecho.lora_chips`), with the
same settings by the same names (the payload's `[radio]`: `frequency_mhz`, `lora_mode` or
`spreading_factor`, `bandwidth_hz`, `coding_rate`...), so the two ends cannot be programmed
differently by accident.

The chip listens all the time (RX continuous): each poll of `POLL_S` asks it what it heard
since, waiting for DIO0 (SX127x) or DIO1 (SX126x) when wired (else reading its IRQ flags every
10 ms), and the chip stays in RX between polls, so a packet that arrives while the listener
stores the one before waits in the chip until it is asked (one: the chip holds the last packet
it heard). Each packet is yielded with its RSSI and SNR; a packet whose CRC failed is counted
in `errors` (by reason, the driver's words: "payload crc", "header crc") and skipped. A chip
found out of RX (a reset, a brown-out: its settings are gone too) is programmed again and put
back to listening, counted as "rx restarted".

`send(frame, peer)` (the uplink, in the payload's listen windows) transmits one frame as one
packet — the listener waits its time on air, the chip being half duplex — and puts the chip
straight back into RX. A frame the chip did not send raises OSError, as the serial sources'
failed writes do.

Opening fails with a `SourceError` naming the SPI device and what was read: no spidev, no
/dev/spidevB.D (SPI not enabled, or the user not in group spi), RegVersion not 0x12 (SX127x),
a GetStatus with no chip mode or a BUSY stuck high (SX126x), a GPIO line that cannot be opened
(the user not in group gpio). spidev and gpiozero are imported only then: the tests hand the
source a simulated chip's SPI device (`spi_opener`) and gpiozero's MockFactory (`pin_factory`).
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import structlog

from stratoecho import lora
from stratoecho.cli import number, positive_number
from stratoecho.lora_chips.chip import RadioError
from stratoecho.lora_chips.profiles import PIN, SWITCH, chip_names, chip_options, chip_profile
from stratoecho.lora_chips.spi import open_chip

from . import POLL_S, Received, SourceError

log = structlog.get_logger(__name__)

DEFAULT_TX_POWER_DBM = 10  # the payload's radio.tx_power_dbm default: 10 mW into the antenna
# Without DIO0/DIO1 wired the chip's IRQ flags are read this often (its driver's 50 ms suits the
# payload's listen windows; a turbo-mode packet lasts less): the chip keeps one packet.
NO_IRQ_POLL_S = 0.01
# The options of the HAT group every chip has, by their destination (and after them each chip's
# own, from its profile); the defaults are applied in `hat_options`, so an option given without
# --lora can be told from one left out.
MODEM = ("spreading_factor", "bandwidth_hz", "coding_rate", "explicit_header", "low_data_rate_optimize")
HAT_OPTIONS = ("frequency_mhz", "lora_mode", *MODEM, "crc", "sync_word", "preamble", "spi_bus", "spi_device",
               "reset_pin", "tx_power_dbm")
SWITCHES = ("explicit_header", "low_data_rate_optimize", "crc")


@dataclass(frozen=True)
class HatOptions:
    """The HAT `listen`'s options describe: which chip, where, and what it is programmed with."""

    kind: str
    settings: lora.LoRaSettings
    spi_bus: int = 0
    spi_device: int = 0
    chip: dict = field(default_factory=dict)  # the driver's own options: pins, power, TCXO


class LoRaHatSource:
    """A LoRa chip on the Pi's SPI bus, listening continuously (see the module's text)."""

    def __init__(self, hat: HatOptions, *, spi_opener: Callable | None = None, pin_factory=None, clock=None) -> None:
        self.errors: Counter = Counter()
        self.device = f"/dev/spidev{hat.spi_bus}.{hat.spi_device}"
        self.name = f"LoRa HAT ({hat.kind} on {self.device})"
        self.origin = f"lora {self.device}"
        self.peer = (self.device,)  # replies go out through the chip they came in on
        try:
            self.radio = open_chip(hat.kind, hat.spi_bus, hat.spi_device, hat.settings, spi_opener=spi_opener,
                                   pin_factory=pin_factory, clock=clock, **hat.chip)
        except (RadioError, OSError) as e:
            raise SourceError(f"{self.name}: {e}") from e
        self.errors = self.radio.errors  # one counter: the listen summary shows CRC failures as the source's
        irq_pin = chip_profile(hat.kind).irq_pin
        if irq_pin is None or hat.chip.get(irq_pin) is None:
            self.radio.POLL_S = NO_IRQ_POLL_S
        try:
            self.radio.listen()
        except (RadioError, OSError) as e:
            self.radio.close()
            raise SourceError(f"{self.name}: cannot start listening: {e}") from e
        s = hat.settings
        log.info("lora_hat_listening", device=self.device, chip=hat.kind, mhz=s.frequency_mhz, sf=s.spreading_factor,
                 bw_hz=s.bandwidth_hz, cr=f"4/{s.coding_rate}")

    def __iter__(self) -> Iterator[Received | None]:
        while True:
            try:
                if not self.radio.in_rx():
                    self._restart()
                heard = self.radio.poll(POLL_S)
            except (RadioError, OSError) as e:
                raise SourceError(f"{self.name}: receive failed: {e}") from e
            if not heard:
                yield None
            for data, signal in heard:
                yield Received(data, self.origin, self.peer, signal.rssi_dbm, signal.snr_db)

    def _restart(self) -> None:
        """The chip is not listening (a reset or a brown-out lost its settings): program it again."""
        self.errors["rx restarted"] += 1
        log.warning("lora_hat_restarted", device=self.device, why="the chip was found out of RX: reset or brown-out?")
        self.radio.configure(self.radio.settings)
        self.radio.listen()

    def send(self, frame: bytes, peer: tuple | None = None) -> None:
        """One uplink frame as one packet, then straight back to listening; `peer` is this chip,
        whatever it says. OSError if the chip did not send it."""
        failed: Exception | None = None
        try:
            self.radio.send(frame)
        except (RadioError, OSError) as e:
            failed = e
        try:
            self.radio.listen()
        except (RadioError, OSError) as e:  # the next poll finds the chip out of RX and says why
            log.warning("lora_hat_not_listening", device=self.device, error=str(e))
        if failed is not None:
            raise OSError(f"{self.name}: uplink frame of {len(frame)} bytes not sent: {failed}") from failed

    def close(self) -> None:
        self.radio.close()


# ---------------------------------------------------------------- the command line


def _pin(text: str) -> int | str:
    """A gpiozero pin: a BCM number (25), or a name (GPIO25, BOARD22)."""
    return int(text) if text.isdigit() else text


def _byte(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        value = -1
    if not 0 <= value <= 0xFF:
        raise argparse.ArgumentTypeError(f"{text} is not one byte (0..255, or 0x00..0xFF)")
    return value


def _whole(low: int, high: int):
    return number(f"a whole number from {low} to {high}", low, high, whole=True)


def add_lora_arguments(listen: argparse.ArgumentParser, where) -> None:
    """`--lora` among the sources (`where`), and the HAT's options in a group of their own."""
    chips = [chip_profile(name) for name in chip_names()]
    needs = "".join(f", and {o.flag} for {_an(c.name)}" for c in chips for o in c.options if o.required)
    where.add_argument("--lora", choices=chip_names(), metavar="CHIP",
                       help=f"a LoRa HAT or module on this Pi's SPI bus: {_either(f'{c.name} ({c.parts})' for c in chips)}; "
                            f"needs --frequency-mhz{needs} (see 'LoRa HAT' below and docs/ground.md)")
    hat = listen.add_argument_group(
        "LoRa HAT (--lora)",
        "The chip listens continuously and reports each packet's RSSI and SNR; with --flight-key it also "
        "transmits the uplink. Its settings must be the payload's ([radio] in its configuration, the same "
        "names): --frequency-mhz, and --lora-mode N or --spreading-factor/--bandwidth-hz/--coding-rate "
        f"(default SF{lora.DEFAULT_SPREADING_FACTOR}, {lora.DEFAULT_BANDWIDTH_HZ / 1000:g} kHz, 4/{lora.DEFAULT_CODING_RATE}: "
        "the payload's defaults). Needs SPI enabled (raspi-config) and the user in groups spi and gpio.")
    hat.add_argument("--frequency-mhz", type=positive_number("MHz"), metavar="MHZ",
                     help="the carrier, as the payload's radio.frequency_mhz (e.g. 434.225); required")
    hat.add_argument("--lora-mode", type=int, choices=range(9), metavar="N",
                     help="a UKHAS LoRa mode as the PITS gateway numbers them: 0 telemetry (SF11, 20.8 kHz, 4/8), "
                          "2 repeater (SF8, 62.5 kHz, 4/8), 3 turbo (SF7, 250 kHz, 4/6), 5 calling (SF11, 41.7 kHz, "
                          "4/8), 7 telnet (SF7, 20.8 kHz, 4/5); sets the five modem options below")
    hat.add_argument("--spreading-factor", type=_whole(7, 12), metavar="SF",
                     help=f"7..12 (default {lora.DEFAULT_SPREADING_FACTOR})")
    hat.add_argument("--bandwidth-hz", type=positive_number("Hz"), metavar="HZ",
                     help=f"7800, 10400, 15600, 20800, 31250, 41700, 62500, 125000, 250000 or 500000 "
                          f"(default {lora.DEFAULT_BANDWIDTH_HZ})")
    hat.add_argument("--coding-rate", type=_whole(5, 8), metavar="N",
                     help=f"the denominator of 4/N, 5..8 (default {lora.DEFAULT_CODING_RATE})")
    hat.add_argument("--explicit-header", action=argparse.BooleanOptionalAction, default=None,
                     help="explicit-header packets (default; the payload flies no other)")
    hat.add_argument("--low-data-rate-optimize", action=argparse.BooleanOptionalAction, default=None,
                     help="default: the mode's, or on when a symbol lasts more than 16 ms")
    hat.add_argument("--crc", action=argparse.BooleanOptionalAction, default=None, help="packet CRC (default on)")
    hat.add_argument("--sync-word", type=_byte, metavar="BYTE",
                     help="0x12 (default: private networks, the PITS gateway's), 0x34 LoRaWAN")
    hat.add_argument("--preamble", type=_whole(6, 0xFFFF), metavar="SYMBOLS", help="preamble symbols (default 8)")
    hat.add_argument("--spi-bus", type=_whole(0, 9), metavar="N", help="the SPI bus: /dev/spidevN.D (default 0)")
    hat.add_argument("--spi-device", type=_whole(0, 9), metavar="D",
                     help="the chip select: 0 is CE0 (pin 24), 1 is CE1 (pin 26) (default 0)")
    hat.add_argument("--reset-pin", type=_pin, metavar="GPIO",
                     help="GPIO (BCM number or name) wired to the chip's RESET/NRESET: pulsed at start (optional)")
    for option, owners in chip_options().values():  # each chip's own, as its profile declares them
        described = f"{', '.join(owners)}: {option.help}"
        if option.kind == SWITCH:
            hat.add_argument(option.flag, action=argparse.BooleanOptionalAction, default=None, help=described)
        else:
            hat.add_argument(option.flag, type=_pin if option.kind == PIN else float, choices=option.choices or None,
                             metavar=option.metavar, help=described)
    hat.add_argument("--tx-power-dbm", type=int, metavar="DBM",
                     help=f"uplink power (default {DEFAULT_TX_POWER_DBM}): "
                          f"{', '.join(f'{c.name} {c.power_help}' for c in chips)}")


def _an(word: str) -> str:
    """`word` after its article, as its first letter is said aloud: "an SX127x", "a chip"."""
    return f"{'an' if word[:1].lower() in 'aefhilmnorsx' else 'a'} {word}"


def _either(choices) -> str:
    """"a", "a or b", "a, b or c"."""
    *rest, last = choices
    return f"{', '.join(rest)} or {last}" if rest else last


def _flag(name: str) -> str:
    dashed = name.replace("_", "-")
    own = chip_options().get(name)
    switch = name in SWITCHES or (own is not None and own[0].kind == SWITCH)
    return f"--[no-]{dashed}" if switch else f"--{dashed}"


def hat_option_names() -> tuple[str, ...]:
    """The HAT's settings by name (the flags' dests, the `[source]` keys of a `lora` source), the chip's own too."""
    return (*HAT_OPTIONS, *chip_options())


def hat_options(options: Mapping[str, object]) -> HatOptions | None:
    """The HAT `options` describe (by name, as `listen`'s flags' dests; "lora": the chip; absent
    or None: not given; other names are not the HAT's), None without --lora. ValueError, naming
    the options, for any that do not go together: a HAT option without --lora, one that is
    another chip's, a mode and a modem option that disagree, settings no chip takes, no
    frequency, a chip without an option it cannot work without (an SX126x's BUSY)."""
    own = chip_options()
    opt = {name: options.get(name) for name in hat_option_names()}
    given = [name for name in (*HAT_OPTIONS, *own) if opt[name] is not None]
    kind = options.get("lora")
    if kind is None:
        if given:
            raise ValueError(f"{', '.join(_flag(n) for n in given)}: for a LoRa HAT, with --lora {'|'.join(chip_names())}")
        return None
    profile = chip_profile(kind)
    if wrong := [n for n in given if n in own and profile.option(n) is None]:
        chips = dict.fromkeys(_an(chip_profile(c).label) for n in wrong for c in own[n][1])
        raise ValueError(f"{', '.join(_flag(n) for n in wrong)}: for {_either(chips)}, not --lora {kind}")
    if opt["frequency_mhz"] is None:
        raise ValueError("--lora needs --frequency-mhz MHZ (the payload's radio.frequency_mhz)")
    for option in profile.options:
        if option.required and opt[option.name] is None:
            raise ValueError(f"--lora {kind} needs {option.flag} {option.metavar}: {option.required}")
    modem = {name: opt[name] for name in MODEM if opt[name] is not None}
    if opt["lora_mode"] is not None:
        mode = lora.ukhas_mode(opt["lora_mode"])
        wanted = mode.modem()
        if clash := [f"{_flag(k)} {v}" for k, v in modem.items() if v != wanted[k]]:
            raise ValueError(f"--lora-mode {mode.number} ({mode.name}) sets SF{mode.spreading_factor}, "
                             f"{mode.bandwidth_hz / 1000:g} kHz, 4/{mode.coding_rate}; leave out {', '.join(clash)}")
        modem = wanted
    if not modem.get("explicit_header", True):
        raise ValueError("implicit-header packets (--no-explicit-header, or modes 1, 4, 6, 8) have one fixed "
                         "length, for SSDV; the payload flies explicit-header modes only (0, 2, 3, 5, 7)")
    optional = {"crc": opt["crc"], "sync_word": opt["sync_word"], "preamble": opt["preamble"]}
    settings = lora.link_settings(opt["frequency_mhz"], **modem, **{k: v for k, v in optional.items() if v is not None})
    power = DEFAULT_TX_POWER_DBM if opt["tx_power_dbm"] is None else opt["tx_power_dbm"]
    chip: dict = {"reset_pin": opt["reset_pin"], "tx_power_dbm": power}
    for option in profile.options:
        value = opt[option.name]
        chip[option.name] = option.default if value is None else value
    try:
        profile.check_power(power, chip)
    except RadioError as e:
        raise ValueError(f"--tx-power-dbm: {e}") from None
    return HatOptions(kind, settings, opt["spi_bus"] or 0, opt["spi_device"] or 0, chip)
