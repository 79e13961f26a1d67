"""The bench's air datagram: a LoRa packet with the modem settings it was keyed with.

On real air a packet's time on air follows from the settings it was sent with, and a receiver
hears it only on the frequency, spreading factor, bandwidth and header mode it listens with. The
bench's air is UDP, which carries none of that, and a payload may reprogram its chip between
frames (SSDV in UKHAS mode 1 on one frequency, positions in mode 0 on another). So a simulated
chip (sim/chips/simulated.py) sends each packet behind a short header naming its settings; the
channel relay (sim/bench/run/relay.py) prices it with them and hands it to other balloons' chips
still wrapped, so each can tell whether it was listening on that channel.

Layout: `HEADER` (network byte order, 19 bytes), then the packet exactly as the chip keyed it
(in implicit-header mode all RegPayloadLength bytes, padding included):

    offset  size  field
    0       4     MAGIC, b"\\xa7AIR"
    4       4     carrier frequency, Hz
    8       1     spreading factor (5..12)
    9       4     bandwidth, Hz
    13      1     coding rate denominator (4/5..4/8: 5..8)
    14      1     explicit header (0/1)
    15      1     low data rate optimisation (0/1)
    16      2     preamble, symbols
    18      1     payload CRC (0/1)

0xA7 is no first byte a LoRa gateway dispatches on nor one of our wire magics (0xEC..0xEF;
stratoecho/wire/common.py), so no real frame starts with MAGIC. A datagram that is not MAGIC
followed by a valid header is *bare*: a packet on the flight's own mode, as the bench's UDP
radio and the ground's uplink send them. A changed layout takes a new magic.
"""

from __future__ import annotations

import math
import struct
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import structlog

from stratoecho.airtime import lora_airtime_s

from .spi_bus import FakeSpiDev

log = structlog.get_logger(__name__)

MAGIC = b"\xa7AIR"
HEADER = struct.Struct("!4sIBIBBBHB")
# How far apart two carriers may be and still be one channel: a LoRa receiver locks on a
# carrier up to a quarter of its bandwidth off (5 kHz of 20.8 kHz); the UKHAS channels are
# 25 kHz or more apart, and chips' frequency steps (61 Hz, 1 Hz) are far below it.
CHANNEL_TOLERANCE_HZ = 5_000


@dataclass
class ModemSettings:
    """The LoRa modem settings a simulated chip holds now (each simulator adds what is its own)."""

    frequency_mhz: float
    spreading_factor: int
    bandwidth_hz: float
    coding_rate: int  # the denominator of 4/x
    explicit_header: bool
    crc: bool
    low_data_rate_optimize: bool
    sync_word: int  # the SX127x's one-byte form (0x12), which the SX126x simulator keeps for its 0x1424
    preamble: int


@dataclass(frozen=True)
class AirSettings:
    """The settings a packet went on the bench's air with (what `HEADER` carries)."""

    frequency_hz: int
    spreading_factor: int
    bandwidth_hz: int
    coding_rate: int  # the denominator of 4/x
    explicit_header: bool = True
    low_data_rate_optimize: bool = False
    preamble: int = 8
    crc: bool = True

    @classmethod
    def of(cls, s) -> AirSettings:
        """From anything with the chips' settings' names: either simulator's `ChipSettings`,
        `stratoecho.lora.LoRaSettings`, or an `AirSettings`."""
        return cls(round(s.frequency_mhz * 1e6), s.spreading_factor, round(s.bandwidth_hz), s.coding_rate,
                   bool(s.explicit_header), bool(s.low_data_rate_optimize), s.preamble, bool(s.crc))

    @property
    def frequency_mhz(self) -> float:
        return self.frequency_hz / 1e6

    def airtime_s(self, n: int) -> float:
        """Seconds on air of a packet of `n` bytes as keyed (an implicit-header packet's `n` is
        the fixed length the chip sent). SF6..12: the SX127x datasheet's formula, as the payload
        and the UKHAS modes count it; SF5, which only an SX126x keys: the SX126x datasheet's."""
        n = min(n, 255)  # a LoRa packet holds at most 255 bytes
        sf, symbol_s = self.spreading_factor, 2**self.spreading_factor / self.bandwidth_hz
        if sf >= 6:
            return lora_airtime_s(n, sf, self.bandwidth_hz, self.coding_rate, preamble=self.preamble,
                                  explicit_header=self.explicit_header, crc=self.crc,
                                  low_data_rate_optimize=self.low_data_rate_optimize)
        bits = 8 * n + (16 if self.crc else 0) - 4 * sf + (20 if self.explicit_header else 0)
        return (self.preamble + 6.25 + 8 + math.ceil(max(bits, 0) / (4 * sf)) * self.coding_rate) * symbol_s

    def same_channel(self, other) -> bool:
        """Whether `other` (settings as `of` takes them) is on this channel: the same carrier
        within `CHANNEL_TOLERANCE_HZ`, spreading factor and bandwidth. Packets on one channel
        interfere; on two they do not (LoRa's spreading factors counted as orthogonal)."""
        return (abs(self.frequency_mhz - other.frequency_mhz) * 1e6 <= CHANNEL_TOLERANCE_HZ
                and self.spreading_factor == other.spreading_factor
                and abs(self.bandwidth_hz - other.bandwidth_hz) <= self.bandwidth_hz / 100)

    def heard_with(self, listener) -> bool:
        """Whether a chip listening with `listener` (its settings now) demodulates a packet sent
        with these: on the same channel, in the same header mode (an implicit-header receiver
        reads an explicit header as payload, and the other way round finds no header)."""
        return self.same_channel(listener) and self.explicit_header == bool(listener.explicit_header)


def wrap(packet: bytes, settings) -> bytes:
    """The datagram for `packet` keyed with `settings` (anything `AirSettings.of` takes)."""
    s = AirSettings.of(settings)
    return HEADER.pack(MAGIC, s.frequency_hz, s.spreading_factor, s.bandwidth_hz, s.coding_rate,
                       s.explicit_header, s.low_data_rate_optimize, s.preamble, s.crc) + bytes(packet)


def unwrap(datagram: bytes) -> tuple[bytes, AirSettings | None]:
    """(packet, its settings), or (datagram, None) for a bare one: no MAGIC, or a header no chip
    keys (which cannot be one of ours, so it is taken as a frame like any other)."""
    if len(datagram) < HEADER.size or not datagram.startswith(MAGIC):
        return bytes(datagram), None
    _, hz, sf, bw, cr, explicit, ldro, preamble, crc = HEADER.unpack_from(datagram)
    if not (5 <= sf <= 12 and 5 <= cr <= 8 and bw > 0 and hz > 0 and preamble > 0
            and {explicit, ldro, crc} <= {0, 1}):
        return bytes(datagram), None
    settings = AirSettings(hz, sf, bw, cr, bool(explicit), bool(ldro), preamble, bool(crc))
    return bytes(datagram[HEADER.size:]), settings


@dataclass
class Antenna:
    """What is on its way to a simulated chip's antenna. The sender keys its packets one after
    another: each is whole here one time on air after the one before, its own time on air when it
    said its settings (a wrapped datagram), else the listening chip's (a bare one)."""

    _inbox: list[tuple[float, bytes, AirSettings | None]] = field(default_factory=list)
    _air_free: float = 0.0  # when the sender's last packet is whole

    def whole_by(self, now: float, datagrams: Iterable[bytes],
                 own: Callable[[], AirSettings]) -> list[tuple[bytes, AirSettings | None]]:
        """`datagrams` just come in, queued; the packets whole by `now`, with their settings, in order."""
        for datagram in datagrams:
            packet, sent_with = unwrap(datagram)
            self._air_free = max(now, self._air_free) + (sent_with or own()).airtime_s(len(packet))
            self._inbox.append((self._air_free, packet, sent_with))
        whole = []
        while self._inbox and self._inbox[0][0] <= now:
            _, packet, sent_with = self._inbox.pop(0)
            whole.append((packet, sent_with))
        return whole


class ChipOnAir(ABC):
    """What both simulated chips do as a packet reaches them (`hear`), before their own registers take it (`_take`)."""

    other_channel: int  # packets keyed on another channel: not heard, listening or not

    def spi(self) -> FakeSpiDev:
        return FakeSpiDev(self)

    @abstractmethod
    def _finish_tx(self) -> None:
        """A transmission whose time on air is over ends (TxDone), before anything is heard."""

    @abstractmethod
    def settings(self) -> ModemSettings:
        """The modem settings its registers hold now."""

    @abstractmethod
    def _take(self, packet: bytes, s, rssi_dbm: float, snr_db: float, crc_ok: bool) -> bool:
        """The chip's registers take the packet (on its channel), or it is missed (not listening)."""

    def hear(self, packet: bytes, rssi_dbm: float = -100.0, snr_db: float = 8.0, crc_ok: bool = True, *,
             sent_with: AirSettings | None = None) -> bool:
        """A packet arrives; True if the chip took it (listening in LoRa RX), else it is missed.
        `sent_with`: the settings it was keyed with; on another channel than the chip's it is not
        heard (`other_channel`), listening or not. None: on the chip's own channel."""
        self._finish_tx()
        s = self.settings()
        if sent_with is not None and not sent_with.heard_with(s):
            self.other_channel += 1
            return False
        return self._take(packet, s, rssi_dbm, snr_db, crc_ok)


def deliver(chip, now: float) -> None:
    """Hand `chip` (either simulator) the packets whole at its antenna by `now`: its `hear` takes
    each, or misses it (not listening, another channel), which is logged."""
    for packet, sent_with in chip.antenna.whole_by(now, chip.listen(), chip.settings):
        other = chip.other_channel
        if not chip.hear(packet, *chip.signal, sent_with=sent_with):
            log.info("chip_other_channel" if chip.other_channel > other else "chip_missed_packet",
                     bytes=len(packet), mode=chip.mode, at_s=round(now, 2))
