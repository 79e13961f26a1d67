"""The payload's configuration (TOML), validated with the file and key named in every error.

See `config/payload.sim.toml` (bench) and `config/payload.pi.toml` (flight) for
annotated examples. Intervals are in flight seconds: on the bench, with a speedup,
the wall clock runs faster than they say.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from stratoecho import bandplan
from stratoecho.boards import board
from stratoecho.config import Section, load_toml, parse_hostport
from stratoecho.lora import (
    DEFAULT_BANDWIDTH_HZ,
    DEFAULT_CODING_RATE,
    DEFAULT_SPREADING_FACTOR,
    LoRaSettings,
    link_settings,
    ukhas_mode,
)
from stratoecho.lora_chips.profiles import chip_names, chip_profile, is_chip, option_values
from stratoecho.wire import WireError, encode_musing_sentences, ssdv, uplink
from stratoecho.wire.musing_sentence import MIN_TEXT

from .device_tables import CameraDeviceSection, DevicesSection, GpsDeviceSection  # noqa: F401 (the sections' home)
from .horus_channel import HorusChannel, check_horus_channel
from .policy.duty import beacon_refusal
from .rigs import PI, rig_names


class ScheduleSection(Section):
    telemetry_s: float = Field(10.0, gt=0, description="seconds between position sentences")
    beacon_slot_s: float | None = Field(
        None, ge=0, description="the second of each telemetry period (by UTC) at which the position sentence is "
        "keyed, so payloads sharing a frequency take turns (docs/network.md); unset: every telemetry_s from start")
    musing_s: float = Field(180.0, gt=0, description="seconds between musings")
    first_musing_s: float = Field(30.0, ge=0, description="seconds after start before the first musing")
    health_s: float = Field(300.0, gt=0, description="seconds between health records (queue, card, faults)")
    image_s: float = Field(900.0, gt=0, description="seconds between pictures (a thumbnail goes down as an image record)")
    turn_s: float | None = Field(
        None, gt=0, description="the seconds of each telemetry period this balloon may transmit in, from its position "
        "sentence on (unset: the whole period, less a guard before the next sentence): balloons sharing a frequency "
        "each take a turn (docs/network.md); nothing is keyed that would not end inside it")

    @model_validator(mode="after")
    def _turn_within_period(self) -> ScheduleSection:
        if self.turn_s is not None and self.turn_s > self.telemetry_s:
            raise ValueError(f"turn_s {self.turn_s:g} is longer than the telemetry period telemetry_s "
                             f"{self.telemetry_s:g}: a turn is a share of one period")
        return self


PinName = int | str  # gpiozero pin: 17 (GPIO number), "GPIO17", "BOARD11"


class PicturesChannel(Section):
    """A second channel for the pictures: SSDV packets keyed in a faster LoRa mode on a frequency of
    their own, the radio returning to its own channel for everything else. A stock LoRa gateway
    hears both on its two channels (docs/payload.md, "Pictures on a second channel")."""

    lora_mode: int = Field(1, ge=0, le=8, description="the UKHAS LoRa mode of the pictures: 1 (SSDV: SF6, 20.8 kHz, "
                           "4/5, implicit header, ~1.4 s a packet) is what gateways use for them")
    frequency_mhz: float = Field(gt=0, description="the pictures' carrier: the gateway's second channel listens here")

    def lora_settings(self, radio: RadioSection) -> LoRaSettings:
        """The pictures' modem settings: the mode's, with the radio's sync word and preamble."""
        return ukhas_mode(self.lora_mode).settings(self.frequency_mhz, sync_word=radio.sync_word,
                                                   preamble=radio.preamble)


class RadioSection(Section):
    # A LoRa chip's own keys (its pins, its PA...) are its profile's options (stratoecho/lora_chips/profiles.py),
    # kept beside the declared keys (`_chip_keys`): every registered chip's, given or their defaults.
    model_config = ConfigDict(extra="allow", validate_assignment=True)

    kind: str = Field(
        "udp", description="udp (bench / IP link), kiss (KISS TNC on serial), lora_uart (Ebyte-style UART LoRa module), "
        "or a LoRa chip on SPI by its name (the registered ones: stratoecho/lora_chips/profiles.py)")
    udp: str = "127.0.0.1:7373"
    serial_port: str | None = Field(None, description="kiss, lora_uart: serial device or pyserial URL (/dev/serial0)")
    baud: int = Field(9600, gt=0, description="kiss, lora_uart: UART speed in bit/s (Ebyte default 9600)")
    m0_pin: PinName | None = Field(None, description="lora_uart: GPIO driving the module's M0")
    m1_pin: PinName | None = Field(None, description="lora_uart: GPIO driving the module's M1")
    aux_pin: PinName | None = Field(None, description="lora_uart: GPIO reading the module's AUX (busy) line")
    aux_timeout_s: float = Field(60.0, gt=0, description="lora_uart: seconds AUX may stay low before the send fails")
    packet_bytes: int = Field(240, ge=1, le=255, description="lora_uart: module packet size (E32: 58; E22: 240/128/64/32)")
    rx_gap_s: float | None = Field(None, gt=0, description="lora_uart: UART pause that ends a received packet (default 20 "
                                                           "ms, or 4 byte times at slow baud)")
    spi_bus: int = Field(0, ge=0, description="a LoRa chip: the SPI bus (/dev/spidevBUS.DEVICE)")
    spi_device: int = Field(0, ge=0, description="a LoRa chip: the chip select (0: CE0, 1: CE1)")
    reset_pin: PinName | None = Field(None, description="a LoRa chip: GPIO driving the chip's RESET")
    tx_power_dbm: int = Field(10, ge=-9, le=22, description="a LoRa chip: output power, in the range its profile gives")
    mtu: int = Field(255, ge=16, le=255)
    lora_mode: int | None = Field(
        None, ge=0, le=8, description="a UKHAS LoRa mode as the PITS gateway numbers them (0 telemetry, 2 repeater, "
        "3 turbo, 5 calling, 7 telnet): sets spreading_factor, bandwidth_hz, coding_rate, explicit_header and "
        "low_data_rate_optimize")
    spreading_factor: int = Field(DEFAULT_SPREADING_FACTOR, ge=6, le=12)
    bandwidth_hz: float = Field(DEFAULT_BANDWIDTH_HZ, gt=0)
    coding_rate: int = Field(DEFAULT_CODING_RATE, ge=5, le=8, description="denominator of 4/x")
    explicit_header: bool = True
    crc: bool = True
    low_data_rate_optimize: bool | None = Field(None, description="unset: the mode's, or on when a symbol lasts > 16 ms")
    sync_word: int = Field(0x12, ge=0, le=0xFF, description="0x12: private networks (the gateway's); 0x34: LoRaWAN")
    preamble: int = Field(8, ge=6, le=0xFFFF, description="preamble symbols")
    # The band plan (stratoecho/bandplan.py, docs/deploy.md): where and how the radio may transmit.
    band_plan: str = Field(
        bandplan.CUSTOM, description="the rule flown under: erc70-03-433 (10 %), erc70-03-434-narrow (no limit, "
        "channel <= 25 kHz), erc70-03-433-wideband, erc70-03-869.4; or custom / licensed with an explicit duty_cycle")
    frequency_mhz: float | None = Field(None, gt=0, description="the carrier; a named band_plan needs it")
    erp_mw: float = Field(10.0, gt=0, description="effective radiated power (module output plus antenna gain), mW")
    duty_cycle: float | None = Field(
        None, gt=0, le=1.0, description="share of each hour the transmitter may be on: under a named band_plan "
        "at most the rule's (unset: the rule's); custom: unset means 0.1; licensed: required. After loading, "
        "the duty cycle in force")
    tx_power_w: float = Field(0.5, gt=0, description="DC power drawn while transmitting")
    # Erasure coding: parity per record sized for the loss the link expects.
    fec_prior_loss: float = Field(0.2, ge=0, lt=1, description="frame loss assumed until measured")
    fec_prior_burst: float = Field(4.0, ge=1, description="mean length of a loss burst, in frames, until measured")
    fec_target: float = Field(0.99, gt=0, lt=1, description="chance each record should arrive whole")
    max_parity: int = Field(32, ge=0, le=254, description="most parity fragments one record may get")
    interleave: int = Field(8, ge=1, le=64, description="records whose frames are interleaved against burst loss")
    pictures: PicturesChannel | None = Field(
        None, description="[radio.pictures]: SSDV packets on a second channel, in their own mode and frequency "
        "(unset: on the radio's own channel, where a slow mode may have no room for them)")
    horus: HorusChannel | None = Field(
        None, description="[radio.horus]: the position also as Horus Binary 4FSK on a channel of its own (an "
        "SX127x only); unset: no Horus")

    # What each kind cannot do without; the checks below name the missing keys.
    REQUIRED: ClassVar[dict[str, tuple[str, ...]]] = {
        "udp": ("udp",),
        "kiss": ("serial_port",),
        "lora_uart": ("serial_port", "m0_pin", "m1_pin", "aux_pin"),
    }  # a chip's: its profile's `required_keys`
    OTHER_KINDS: ClassVar[tuple[str, ...]] = ("udp", "kiss", "lora_uart")  # the radios that are not a chip on SPI

    @model_validator(mode="wrap")
    @classmethod
    def _chip_keys(cls, data, handler):
        """The chips' own keys, checked against their profiles (misspelt keys stay errors)."""
        if isinstance(data, dict):
            data = {**data, **option_values(data, declared=cls.model_fields)}
        return handler(data)

    @field_validator("kind")
    @classmethod
    def _check_kind_name(cls, v: str) -> str:
        kinds = (*cls.OTHER_KINDS, *chip_names())
        if v not in kinds:
            expected = ", ".join(repr(k) for k in kinds[:-1]) + f" or {kinds[-1]!r}"
            raise PydanticCustomError("literal_error", "Input should be {expected}", {"expected": expected})
        return v

    @field_validator("udp")
    @classmethod
    def _check_udp(cls, v: str) -> str:
        parse_hostport(v)
        return v

    @model_validator(mode="after")
    def _apply_lora_mode(self) -> RadioSection:
        """A UKHAS mode sets the modem settings; one also set by hand must agree with it."""
        if self.lora_mode is None:
            return self
        mode = ukhas_mode(self.lora_mode)
        wanted = mode.modem()
        given = self.model_fields_set
        clash = [f"{k} = {getattr(self, k)!r}" for k, v in wanted.items() if k in given and getattr(self, k) != v]
        if clash:
            sets = ", ".join(f"{k} = {v!r}" for k, v in wanted.items())
            raise ValueError(f"lora_mode {mode.number} ({mode.name}) sets {sets}; the section also says "
                             f"{', '.join(clash)}: leave those out")
        self.__dict__.update(wanted)  # past validation, as the duty cycle (assignment would re-validate)
        return self

    @model_validator(mode="after")
    def _check_band_plan(self) -> RadioSection:
        if self.band_plan == bandplan.CUSTOM and self.duty_cycle is None:
            duty = 0.1  # what configurations said before there were band plans: the strict 433 MHz rule
        elif self.band_plan in bandplan.OWN_RULES:
            duty = bandplan.effective_duty_cycle(None, self.duty_cycle)
        else:
            rule = bandplan.rule(self.band_plan)
            bandplan.check(rule, self.frequency_mhz, self.bandwidth_hz, self.erp_mw)
            duty = bandplan.effective_duty_cycle(rule, self.duty_cycle)
        # Readers see the duty cycle in force; stored past validation (assignment would re-validate).
        self.__dict__["duty_cycle"] = duty
        return self

    def lora_settings(self) -> LoRaSettings:
        """What the chip is programmed with, and what every airtime here is computed from."""
        return link_settings(self.frequency_mhz or 0.0, spreading_factor=self.spreading_factor,
                             bandwidth_hz=self.bandwidth_hz, coding_rate=self.coding_rate,
                             explicit_header=self.explicit_header, crc=self.crc,
                             low_data_rate_optimize=self.low_data_rate_optimize, sync_word=self.sync_word,
                             preamble=self.preamble)

    @property
    def packet_limit(self) -> int:
        """The most bytes one packet on air holds: a UART module's packet, else LoRa's 255. Our own
        frames are `mtu` at most; a relayed one, envelope and all, this (docs/network.md)."""
        return self.packet_bytes if self.kind == "lora_uart" else 255

    def airtime_s(self, n_bytes: int) -> float:
        """Seconds on air for one frame of `n_bytes` with these settings."""
        return self.lora_settings().airtime_s(n_bytes)

    @model_validator(mode="after")
    def _check_kind(self) -> RadioSection:
        chip = chip_profile(self.kind) if is_chip(self.kind) else None
        required = chip.required_keys if chip else self.REQUIRED[self.kind]
        missing = [key for key in required if getattr(self, key) is None]
        if missing:
            raise ValueError(f"kind = {self.kind!r} needs {', '.join(missing)}")
        low, high = chip.tx_power_dbm if chip else (-9, 22)
        if not low <= self.tx_power_dbm <= high:
            raise ValueError(f"tx_power_dbm {self.tx_power_dbm}: an {self.kind} gives {low}..{high} dBm")
        for option in chip.options if chip else ():
            if option.check is not None and getattr(self, option.name) is not None:
                option.check(getattr(self, option.name))
        if self.kind == "lora_uart":
            # A frame must fit one module packet, and AUX must be allowed to stay low for its time on air.
            if self.mtu > self.packet_bytes:
                raise ValueError(f"mtu {self.mtu} is larger than packet_bytes {self.packet_bytes}: "
                                 "frames would be cut into several LoRa packets (lower mtu)")
            air = self.airtime_s(self.mtu)
            if self.aux_timeout_s <= air:
                raise ValueError(f"aux_timeout_s {self.aux_timeout_s:g} is not longer than the {air:.1f} s "
                                 f"a {self.mtu}-byte frame spends on air")
        try:
            self.lora_settings()
        except ValueError as e:  # SF6 without implicit header, a bandwidth no chip has ...
            raise ValueError(f"LoRa settings: {e}") from None
        if not self.explicit_header:
            raise ValueError("explicit_header = false (implicit-header modes 1, 4, 6, 8) carries fixed 255-byte "
                             "packets, for SSDV: the downlink's frames differ in length; fly an explicit mode "
                             "(0, 2, 3, 5 or 7), and the pictures in [radio.pictures] if they need mode 1")
        self._check_pictures_channel()
        if self.horus is not None:
            check_horus_channel(self.horus, self)
        return self

    def _check_pictures_channel(self) -> None:
        p = self.pictures
        if p is None:
            return
        if self.kind in ("kiss", "lora_uart"):
            raise ValueError(f"[radio.pictures]: a {self.kind} radio keys every frame in the one mode its module is set "
                             "to; a second channel needs a LoRa chip on SPI (or leave [radio.pictures] out)")
        mine = self.lora_settings()
        theirs = p.lora_settings(self)
        if self.band_plan not in bandplan.OWN_RULES:
            try:
                bandplan.check(bandplan.rule(self.band_plan), p.frequency_mhz, theirs.bandwidth_hz, self.erp_mw)
            except bandplan.BandPlanError as e:
                raise ValueError(f"[radio.pictures]: {e}") from None
        if self.frequency_mhz is not None and abs(p.frequency_mhz - self.frequency_mhz) * 1e6 < (
                mine.bandwidth_hz + theirs.bandwidth_hz) / 2:
            raise ValueError(f"[radio.pictures] frequency_mhz {p.frequency_mhz:g} overlaps the radio's own channel at "
                             f"{self.frequency_mhz:g} MHz: give the pictures a channel of their own (the gateway's "
                             "second channel)")

    def pictures_settings(self) -> LoRaSettings | None:
        """The pictures' modem settings ([radio.pictures]), or None: they go on the radio's own."""
        return None if self.pictures is None else self.pictures.lora_settings(self)

    @property
    def address(self) -> str:
        """Where frames go, for logs: the UDP address or the serial port."""
        if is_chip(self.kind):
            return f"SPI {self.spi_bus}.{self.spi_device} at {self.frequency_mhz:g} MHz"
        return self.udp if self.kind == "udp" else str(self.serial_port)


class UplinkSection(Section):
    key_file: str | None = Field(None, description="the flight key shared with the ground, made by `python -m "
                                                   "payload keygen FILE` (keygen's one line, mode 600): it signs the "
                                                   "uplink and tags the downlink; none: no uplink, and records stay "
                                                   "queued (only sentences and pictures go)")
    allow_raw_key: bool = Field(False, description="also read a bare key (hex, base64 or 32 raw bytes) in key_file and "
                                "[relay] key files, for a flight whose key was made before keygen's form: nothing "
                                "shows it was drawn at random, and each read logs a warning. Better: keygen a new key "
                                "and copy it to the balloon and the ground")
    window_every: int = Field(6, ge=1, description="listen after every Nth position sentence (sentence id a multiple of N)")
    window_s: float = Field(4.0, gt=0, description="flight seconds the receiver listens in each window")
    tag_len: int = Field(8, ge=4, le=32, description="bytes of the truncated HMAC tag; must match the ground")
    downlink_tag_len: int = Field(8, ge=4, le=16, description="bytes of the downlink tag on every record fragment and "
                                  "window cue (key derived from key_file); must match the ground's --downlink-tag-len")
    listen: bool = Field(True, description="open listen windows (with key_file); false: transmit only, records still "
                         "tagged")
    first_pass_target: float = Field(
        0.5, gt=0, lt=1, description="chance each record should arrive whole before any repair, while the ground "
        "answers the windows (it asks for the rest; radio.fec_target applies when it does not)")
    max_telemetry_s: float = Field(
        120.0, gt=0, description="longest position interval SET_INTERVALS may set: the beacon, and the listen "
        "windows that follow every window_every-th sentence, never go quieter than this (a command can always "
        "be undone). The shortest is schedule.telemetry_s, the interval the duty cycle was planned for")
    min_musing_s: float = Field(60.0, gt=0, description="shortest musing interval SET_INTERVALS may set")
    confirm_s: float = Field(
        1800.0, ge=300, description="flight seconds a SET_INTERVALS or SET_MODE stays on probation: unless the "
        "same command arrives again in a later listen window, it reverts (never sooner than two listen windows "
        "under the new settings)")


class RelayedFlight(Section):
    callsign: str = Field(pattern=r"^[A-Za-z0-9/_-]{1,16}$", description="the other payload's callsign")
    key_file: str | None = Field(None, description="its downlink key (`python -m groundstation keygen --downlink-from "
                                 "ITS_FLIGHT_KEY FILE`: checks its tags, signs nothing); none: only its open UKHAS "
                                 "sentences are relayed")
    forward: bool = Field(True, description="false: only listen to this flight (its musings reach our persona), never "
                          "send its frames on: for a balloon that knows it is far from any ground")


class RelaySection(Section):
    """Frames of other payloads this one sends on (docs/network.md); off unless flights are named."""

    allow: list[RelayedFlight] = Field(default_factory=list, description="the flights relayed, by callsign; empty: "
                                       "no relaying")
    max_hops: int = Field(2, ge=1, le=16, description="relays a frame may take in all, the first included")
    share: float = Field(0.2, gt=0, lt=1, description="of the hour's airtime budget (radio.duty_cycle x 3600 s) "
                         "relays may take; the beacon's reservation is never touched")
    pending: int = Field(32, ge=1, le=1024, description="frames waiting to be relayed; a new one pushes out the oldest")
    position_s: float = Field(60.0, ge=0, description="at most one position sentence of each flight relayed this often "
                              "(flight seconds; the newest heard then): a track needs no more, the share goes to records")


STORE_STREAMS = ("telemetry", "event", "musing", "api_request", "health", "image")


class StoreSection(Section):
    """The durable queue (docs/storage.md): how often batched writes reach the card, and
    how much of the card each stream may fill."""

    flush_s: float = Field(60.0, gt=0, description="seconds batched writes (telemetry, health, images, sent marks) wait for "
                                                   "a commit")
    aging_s: float = Field(900.0, gt=0, description="seconds of waiting that lift a record one priority class (no stream "
                                                    "starves)")
    budget_mb: dict[str, float] = Field(
        default_factory=lambda: {"telemetry": 20.0, "health": 10.0, "image": 500.0},
        description="per stream: most megabytes of payload kept; the oldest acknowledged, then sent, then queued go first")
    total_mb: float | None = Field(1000.0, gt=0, description="most megabytes of payload in all")
    min_free_mb: float = Field(200.0, ge=0, description="keep this much of the card free for the OS and logs")
    memory_records: int = Field(2000, ge=10, description="records held in memory while the card refuses writes")

    @field_validator("budget_mb")
    @classmethod
    def _check_streams(cls, v: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(v) - set(STORE_STREAMS))
        if unknown:
            raise ValueError(f"unknown stream(s) {', '.join(unknown)}; streams are {', '.join(STORE_STREAMS)}")
        if any(mb <= 0 for mb in v.values()):
            raise ValueError("budgets are megabytes greater than 0")
        return v


class OutputsSection(Section):
    """GPIO outputs (BCM numbers, docs/hardware.md): leave a pin unset for a part not fitted."""

    status_led_pin: PinName | None = Field(23, description="status LED (through 330 ohm)")
    heater_pin: PinName | None = Field(24, description="battery heater MOSFET gate")
    # Li-ion loses capacity below freezing and the mode ladder sheds load below -10 degC:
    # the heater holds the battery above both, well before either acts.
    heater_on_below_c: float = Field(0.0, description="battery temperature that switches the heater on")
    heater_off_above_c: float = Field(5.0, description="battery temperature that switches it off again")
    heater_max_duty: float = Field(0.75, gt=0, le=1, description="largest share of each 10 minutes the heater may be on")
    heater_min_battery_mv: float = Field(3500.0, description="below this the heater stays off: the beacon needs the charge")

    @model_validator(mode="after")
    def _band(self):
        if not self.heater_on_below_c < self.heater_off_above_c:
            raise ValueError("heater_on_below_c must be below heater_off_above_c")
        return self


class PersonaSection(Section):
    bundle: str = "build/persona"
    timeout_s: float = Field(60.0, gt=0, description="wall seconds a musing may take before the worker is killed")
    n_threads: int = Field(2, ge=1, le=64)
    n_ctx: int = Field(256, ge=32)
    max_tokens: int = Field(48, ge=1, le=1024)
    max_chars: int = Field(280, ge=20, le=2000, description="longest musing sent, in characters")
    joules_per_token: float = Field(0.3, ge=0, description="energy estimate per generated token (Pi 5: ~0.2-0.3 J)")
    memory_limit_mb: int | None = Field(
        None, ge=64, description="the worker's private memory cap (RLIMIT_DATA), MB; the mapped model not included")
    board: str | None = Field(
        None, description="pi-zero-2w, pi3, pi4 or pi5: size each musing (threads, tokens, timeout, characters) "
                          "from the board and the energy left (payload/policy/budget.py); unset: the fixed values above")
    recall_musings: int = Field(
        0, ge=0, le=8, description="the persona's own earlier musings offered in each prompt ('you thought ...'); "
                                   "0: none, as a small model copies them (docs/payload.md, 'What the persona is told')")
    stale_s: float = Field(
        360.0, gt=0, description="a musing none of which is on air this many seconds after it was made is not sent: "
        "it is made again from fresh readings (what airs is true when it airs)")
    figure_goal: float = Field(
        0.6, ge=0, le=1, description="share of musings that should state a true figure of the flight (height, "
        "temperature, phase, time aloft): while fewer of the last ten had one, the payload writes one as the musing's "
        "first words ([persona] clauses) or asks again; 0: never (docs/payload.md, 'Not a template')")
    clauses: bool = Field(
        True, description="where a musing owes a figure of the flight, the payload writes it as the musing's first "
        "words, a true clause in the persona's language that it continues (docs/payload.md, 'Figures the program "
        "writes'); false: the persona is asked about its phase instead and states one or not")
    candidates: int = Field(
        0, ge=0, le=8, description="candidate musings the persona writes for each one that airs, the best chosen on "
        "board by the truth guard, substance and the owner's voice (docs/payload.md, 'Musings made of the owner's "
        "words'); 0: as many as the board's speed allows in a fifth of the musing period (`payload plan` says how many)")
    sentences: bool = Field(
        False, description="send each musing a second time as UKHAS text sentences ($$CALL,...,musing B.S P/N,text), "
                           "which a stock LoRa gateway logs and uploads to SondeHub; the record and its sentences "
                           "share the musing's airtime")

    @field_validator("board")
    @classmethod
    def _known_board(cls, v):
        if v is not None:
            board(v)  # ValueError names the boards it knows
        return v


class PowerSection(Section):
    base_w: float = Field(1.6, ge=0, description="board power when idle (Pi 4 ~1.6 W, Zero 2 W ~0.6 W)")
    battery_wh: float = Field(20.0, gt=0, description="the battery's capacity when warm: the energy budget counts down from it")


class PayloadConfig(Section):
    callsign: str = Field("STRATO1", pattern=r"^[A-Za-z0-9/_-]{1,16}$")
    data_dir: str = "/var/lib/stratoecho"
    sensors: str = Field(
        "hardware", description="hardware: the Pi's own parts, through the drivers in [devices]; or the name of a rig "
        "that stands in for them (payload/parts/hardware.py: `sim`, the bench world)")
    devices: DevicesSection = Field(default_factory=DevicesSection)
    outputs: OutputsSection = Field(default_factory=OutputsSection)
    telemetry_format: Literal["ukhas", "habpack"] = Field(
        "ukhas", description="position frames: UKHAS ASCII sentences, or binary HABpack (shorter on air)")
    schedule: ScheduleSection = Field(default_factory=ScheduleSection)
    radio: RadioSection = Field(default_factory=RadioSection)
    uplink: UplinkSection = Field(default_factory=UplinkSection)
    relay: RelaySection = Field(default_factory=RelaySection)
    store: StoreSection = Field(default_factory=StoreSection)
    persona: PersonaSection = Field(default_factory=PersonaSection)
    power: PowerSection = Field(default_factory=PowerSection)
    # A rig's own settings: its table, named after it ([sim] for the bench), checked by the rig.
    rigs: dict[str, dict] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _rig_tables(cls, data):
        if isinstance(data, dict):
            data = dict(data)
            tables = {name: data.pop(name) for name in rig_names() if isinstance(data.get(name), dict)}
            if tables:
                data["rigs"] = {**data.get("rigs", {}), **tables}
        return data

    @field_validator("sensors")
    @classmethod
    def _known_hardware(cls, value: str) -> str:
        names = [PI, *rig_names()]
        if value not in names:
            raise ValueError(f"sensors {value!r} is neither the Pi's parts nor an installed rig: one of {', '.join(names)}")
        return value

    @model_validator(mode="after")
    def _beacon_fits_duty_cycle(self) -> PayloadConfig:
        # A beacon the duty cycle cannot carry would be throttled at once and starve everything
        # else: refuse it here, with the numbers and what would fit (payload/policy/duty.py).
        why = beacon_refusal(self.radio, self.callsign, self.telemetry_format, self.schedule.telemetry_s)
        if why:
            raise ValueError(f"[radio] / [schedule] telemetry_s: {why}")
        return self

    @model_validator(mode="after")
    def _ssdv_fits(self) -> PayloadConfig:
        cam = self.devices.camera
        if cam is None or not cam.ssdv:
            return self
        if cam.ssdv_callsign is None:
            # SSDV packs the callsign in base 40, six letters and digits at most: a form of ours.
            form = ssdv.callsign_form(self.callsign)
            if form is None:
                raise ValueError(f"[devices.camera] ssdv: the callsign {self.callsign!r} has no letter or digit SSDV "
                                 "can carry; set ssdv_callsign (1 to 6 letters and digits)")
            cam.ssdv_callsign = form
        if self.radio.mtu < ssdv.LORA_FRAME_BYTES:
            raise ValueError(f"[devices.camera] ssdv: an SSDV packet is a {ssdv.LORA_FRAME_BYTES}-byte frame, "
                             f"larger than [radio] mtu {self.radio.mtu}")
        return self

    @model_validator(mode="after")
    def _musing_sentences_fit(self) -> PayloadConfig:
        if self.persona.sentences:
            # The longest prefix a part can have (largest counter, boot and sequence, farthest
            # position) must leave room for text in one frame.
            try:
                encode_musing_sentences(self.callsign, 2**32 - 1, datetime(2000, 1, 1), -89.99999, -179.99999,
                                        99999, 0xFFFF, 2**32 - 1, "x" * MIN_TEXT, max_bytes=self.radio.mtu)
            except WireError as e:
                raise ValueError(f"[persona] sentences: {e} ([radio] mtu {self.radio.mtu})") from e
        return self

    @model_validator(mode="after")
    def _window_hears_a_command(self) -> PayloadConfig:
        # A listen window shorter than one signed frame's time on air hears nothing, ever: the
        # uplink would be configured and dead (slow LoRa modes: a link report takes ~9 s in mode 0).
        if self.uplink.key_file:
            frame = uplink.HEADER_BYTES + self.uplink.tag_len + uplink.LinkReport(0, 0, 0).pack().__len__()
            air = self.radio.airtime_s(frame)
            if self.uplink.window_s <= air:
                raise ValueError(f"[uplink] window_s {self.uplink.window_s:g} is shorter than one signed {frame}-byte "
                                 f"frame's {air:.1f} s on air with these radio settings: the payload would never "
                                 f"hear a command; make window_s at least {air * 2:.0f}")
        return self


def load_config(path: str | Path | None) -> PayloadConfig:
    return PayloadConfig() if path is None else load_toml(path, PayloadConfig)
