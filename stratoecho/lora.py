"""LoRa modem settings as the chip is given them, and the UKHAS modes as named presets.

One `LoRaSettings` is what a LoRa chip is programmed with (stratoecho/lora_chips/sx127x.py) and what
the airtime of a packet is computed from (`LoRaSettings.airtime_s`): the two can never
disagree. The UKHAS modes are the PITS LoRa gateway's numbered modes (its `LoRaModes`
table, docs/figures.md): a gateway set to mode N hears a payload flying mode N. The low data
rate optimisation is part of a mode, not derived from it: the gateway's mode 5 (SF11 at
41.7 kHz) leaves it off although the chip's rule of thumb would switch it on, and both ends
must agree or nothing decodes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .airtime import lora_airtime_s

# The bandwidths an SX127x offers (RegModemConfig1 bits 7..4, in this order); an SX126x offers
# the same set. The gateway names them 7K8 ... 500K.
BANDWIDTHS_HZ = (7_800, 10_400, 15_600, 20_800, 31_250, 41_700, 62_500, 125_000, 250_000, 500_000)
DEFAULT_SYNC_WORD = 0x12  # a private network's (the SX127x's reset value, which the gateway keeps)
# A link's modem settings when nothing names others: the payload's `[radio]` defaults, and the
# ground's `listen --lora` defaults, so that the two ends left alone hear each other.
DEFAULT_SPREADING_FACTOR, DEFAULT_BANDWIDTH_HZ, DEFAULT_CODING_RATE = 9, 125_000, 5


@dataclass(frozen=True)
class LoRaSettings:
    frequency_mhz: float
    spreading_factor: int = 11
    bandwidth_hz: float = 20_800
    coding_rate: int = 8  # the denominator of 4/x
    explicit_header: bool = True
    crc: bool = True
    low_data_rate_optimize: bool = True
    sync_word: int = DEFAULT_SYNC_WORD
    preamble: int = 8
    implicit_length: int = 255  # the fixed packet length in implicit-header mode (the gateway's)

    def __post_init__(self) -> None:
        if not 6 <= self.spreading_factor <= 12:
            raise ValueError(f"spreading factor {self.spreading_factor} outside 6..12")
        if self.spreading_factor == 6 and self.explicit_header:
            raise ValueError("spreading factor 6 works in implicit-header mode only (SX127x datasheet, 4.1.1.2)")
        if bandwidth_code(self.bandwidth_hz) is None:
            khz = ", ".join(f"{b / 1000:g}" for b in BANDWIDTHS_HZ)
            raise ValueError(f"bandwidth {self.bandwidth_hz:g} Hz is none a LoRa chip offers ({khz} kHz)")
        if not 5 <= self.coding_rate <= 8:
            raise ValueError(f"coding rate 4/{self.coding_rate}: the denominator must be 5..8")
        if not 0 <= self.sync_word <= 0xFF:
            raise ValueError(f"sync word 0x{self.sync_word:X} is not one byte")
        if not 6 <= self.preamble <= 0xFFFF:
            raise ValueError(f"preamble of {self.preamble} symbols outside 6..65535")

    @property
    def symbol_s(self) -> float:
        return 2**self.spreading_factor / self.bandwidth_hz

    def packet_bytes(self, n: int) -> int:
        """What goes on air for a frame of `n` bytes: implicit-header packets have one fixed length."""
        return n if self.explicit_header else self.implicit_length

    def airtime_s(self, n: int) -> float:
        """Seconds on air for a frame of `n` bytes, with exactly these settings."""
        return lora_airtime_s(self.packet_bytes(n), self.spreading_factor, self.bandwidth_hz, self.coding_rate,
                              preamble=self.preamble, explicit_header=self.explicit_header, crc=self.crc,
                              low_data_rate_optimize=self.low_data_rate_optimize)


@dataclass(frozen=True)
class UkhasMode:
    number: int
    name: str
    spreading_factor: int
    bandwidth_hz: float
    coding_rate: int
    explicit_header: bool
    low_data_rate_optimize: bool

    def modem(self) -> dict:
        """The settings the mode fixes, by their names in `LoRaSettings` (and the payload's `[radio]`)."""
        return {"spreading_factor": self.spreading_factor, "bandwidth_hz": self.bandwidth_hz,
                "coding_rate": self.coding_rate, "explicit_header": self.explicit_header,
                "low_data_rate_optimize": self.low_data_rate_optimize}

    def settings(self, frequency_mhz: float, **over) -> LoRaSettings:
        s = LoRaSettings(frequency_mhz, self.spreading_factor, self.bandwidth_hz, self.coding_rate,
                         explicit_header=self.explicit_header, low_data_rate_optimize=self.low_data_rate_optimize)
        return replace(s, **over) if over else s


# The gateway's table, in its order: (header, coding rate, bandwidth, SF, LDRO).
UKHAS_MODES: dict[int, UkhasMode] = {m.number: m for m in (
    UkhasMode(0, "telemetry", 11, 20_800, 8, True, True),
    UkhasMode(1, "ssdv", 6, 20_800, 5, False, False),
    UkhasMode(2, "repeater", 8, 62_500, 8, True, False),
    UkhasMode(3, "turbo", 7, 250_000, 6, True, False),
    UkhasMode(4, "turbo-x", 6, 250_000, 5, False, False),
    UkhasMode(5, "calling", 11, 41_700, 8, True, False),
    UkhasMode(6, "uplink", 6, 41_700, 5, False, False),
    UkhasMode(7, "telnet", 7, 20_800, 5, True, False),
    UkhasMode(8, "ssdv-repeater", 6, 62_500, 5, False, False),
)}


def ukhas_mode(number: int) -> UkhasMode:
    try:
        return UKHAS_MODES[number]
    except KeyError:
        names = ", ".join(f"{m.number} ({m.name})" for m in UKHAS_MODES.values())
        raise ValueError(f"no UKHAS LoRa mode {number}; the gateway's modes are {names}") from None


def default_low_data_rate_optimize(spreading_factor: int, bandwidth_hz: float) -> bool:
    """The chip's rule of thumb where no mode says: on when a symbol lasts longer than 16 ms."""
    return 2**spreading_factor / bandwidth_hz > 0.016


def link_settings(frequency_mhz: float, *, low_data_rate_optimize: bool | None = None, **given) -> LoRaSettings:
    """A link's settings where those not given are the link's defaults (`DEFAULT_*`) and the low
    data rate optimisation, unless given, the chip's rule for that SF and bandwidth: what the
    payload's `[radio]` and the ground's `listen --lora` both mean by settings left alone."""
    modem = {"spreading_factor": DEFAULT_SPREADING_FACTOR, "bandwidth_hz": DEFAULT_BANDWIDTH_HZ,
             "coding_rate": DEFAULT_CODING_RATE, **given}
    if low_data_rate_optimize is None:
        low_data_rate_optimize = default_low_data_rate_optimize(modem["spreading_factor"], modem["bandwidth_hz"])
    return LoRaSettings(frequency_mhz, low_data_rate_optimize=low_data_rate_optimize, **modem)


def bandwidth_code(bandwidth_hz: float) -> int | None:
    """The index of `bandwidth_hz` in `BANDWIDTHS_HZ` (within 1 %), or None."""
    for code, bw in enumerate(BANDWIDTHS_HZ):
        if abs(bandwidth_hz - bw) <= bw / 100:
            return code
    return None
