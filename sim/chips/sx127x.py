"""An SX1276/77/78 at the level its SPI bus speaks: registers, the FIFO, operating modes, IRQ
flags and DIO0 — what the payload's and the ground's driver (stratoecho/lora_chips/sx127x.py) talks to.

`Sx127xChip` keeps the LoRa register page as the datasheet lays it out (rev. 7, 6.4) and
behaves as the chip does where a driver can go wrong:

- LoRa mode (RegOpMode bit 7) changes in sleep only; a write elsewhere keeps the old mode.
- An access to RegFifo reads or writes the 256-byte FIFO at RegFifoAddrPtr and advances it;
  a burst continues at the next address (the FIFO address for RegFifo).
- TX sends RegPayloadLength bytes from RegFifoTxBaseAddr (in implicit-header mode too), takes
  its time on air *from the registers* (spreading factor, bandwidth, coding rate, header,
  CRC, low data rate optimisation, preamble), then sets TxDone and returns to standby. The
  packet reaches the air (`transmit`) when its last symbol has gone, as a receiver has it.
- In RX continuous a packet heard is written at RegFifoRxBaseAddr with RegRxNbBytes,
  RegFifoRxCurrentAddr, RegPktSnrValue and RegPktRssiValue, and RxDone (with PayloadCrcError
  when the air damaged it) is raised; a packet heard in any other mode is missed (half duplex).
- IRQ flags clear by writing ones; DIO0 follows RegDioMapping1 (RxDone or TxDone) on a
  gpiozero mock pin.
- In FSK mode (RegOpMode bit 7 clear) TX keys a carrier at RegFrf; each write of RegFrfLsb
  moves it (as the synthesiser does), and when TX ends the steps — (RF Hz, seconds) each — are
  kept in `fsk_sent` (and given to `transmit_fsk`): the Horus 4FSK a driver keys by stepping
  the frequency (stratoecho/lora_chips/sx127x_fsk.py), which tests/fsk_audio.py renders
  as a receiver's audio.
- What a radio amateur would get wrong on real hardware is refused as the chip would fail it:
  a transmission through RFO on a module that only wires PA_BOOST (every RFM9xW) radiates
  nothing, SF6 in explicit-header mode decodes nothing.

The chip's air: `transmit(packet, settings)` when a packet has gone out; `hear(packet, rssi_dbm,
snr_db)` hands it one now, or `listen()` is asked at each SPI access for what a sender keyed
since, and each of those packets arrives one time on air after the one before it (a radio
keys one packet at a time). `spi()` gives a spidev-like device.

What `listen()` gives are the bench's air datagrams (sim/chips/air.py): a packet wrapped with the
settings its sender keyed it with takes *their* time on air, and is heard only by a chip listening
on that channel (frequency, spreading factor, bandwidth, header mode); one on another channel is
counted in `other_channel`, as a real chip never notices it. A bare packet is on the chip's own
channel, as the ground's uplink always is.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from stratoecho.airtime import lora_airtime_s
from stratoecho.lora import BANDWIDTHS_HZ

from .air import Antenna, ChipOnAir, ModemSettings, deliver
from .spi_bus import SpiSocket, register_simulator

REG_FIFO, REG_OP_MODE = 0x00, 0x01
REG_FIFO_ADDR_PTR, REG_FIFO_TX_BASE, REG_FIFO_RX_BASE, REG_FIFO_RX_CURRENT = 0x0D, 0x0E, 0x0F, 0x10
REG_IRQ_FLAGS, REG_RX_NB_BYTES, REG_PKT_SNR, REG_PKT_RSSI = 0x12, 0x13, 0x19, 0x1A
REG_MODEM_CONFIG1, REG_MODEM_CONFIG2, REG_PAYLOAD_LENGTH, REG_MODEM_CONFIG3 = 0x1D, 0x1E, 0x22, 0x26
REG_PA_CONFIG, REG_PREAMBLE_MSB, REG_PREAMBLE_LSB, REG_SYNC_WORD, REG_DIO_MAPPING1 = 0x09, 0x20, 0x21, 0x39, 0x40
REG_VERSION, REG_FRF_LSB = 0x42, 0x08
MODE_SLEEP, MODE_STANDBY, MODE_TX, MODE_RX_CONTINUOUS, MODE_RX_SINGLE = 0x00, 0x01, 0x03, 0x05, 0x06
IRQ_RX_DONE, IRQ_CRC_ERROR, IRQ_VALID_HEADER, IRQ_TX_DONE = 0x40, 0x20, 0x10, 0x08

# Reset values of the registers a driver reads back before writing (datasheet table 41).
log = structlog.get_logger(__name__)

_RESET = {REG_OP_MODE: 0x09, 0x06: 0x6C, 0x07: 0x80, 0x08: 0x00, REG_PA_CONFIG: 0x4F, 0x0B: 0x2B, 0x0C: 0x20,
          REG_FIFO_TX_BASE: 0x80, REG_MODEM_CONFIG1: 0x72, REG_MODEM_CONFIG2: 0x70, REG_PREAMBLE_LSB: 0x08,
          REG_PAYLOAD_LENGTH: 0x01, 0x23: 0xFF, 0x31: 0xC3, 0x37: 0x0A, REG_SYNC_WORD: 0x12, REG_VERSION: 0x12,
          0x4D: 0x84}


@dataclass
class ChipSettings(ModemSettings):
    """The modem settings as the registers hold them now."""

    pa_boost: bool
    power_dbm: float

    def airtime_s(self, n: int) -> float:
        return lora_airtime_s(n, self.spreading_factor, self.bandwidth_hz, self.coding_rate, preamble=self.preamble,
                              explicit_header=self.explicit_header, crc=self.crc,
                              low_data_rate_optimize=self.low_data_rate_optimize)


@dataclass
class Sx127xChip(ChipOnAir):
    now: Callable[[], float]  # flight seconds: the chip's own time on air runs on the bench's clock
    transmit: Callable[[bytes, ChipSettings], None] = lambda packet, settings: None
    transmit_fsk: Callable[[list[tuple[float, float]]], None] = lambda steps: None
    listen: Callable[[], list[bytes]] | None = None  # packets that reached the antenna since last asked
    signal: tuple[float, float] = (-105.0, 6.0)  # (RSSI dBm, SNR dB) given to packets from `listen`
    dio0_pin: object | None = None  # a gpiozero MockPin the chip drives
    pa_boost_only: bool = True  # an RFM95W/96W/98W: only PA_BOOST reaches the antenna
    regs: bytearray = field(default_factory=lambda: bytearray(0x80))
    fifo: bytearray = field(default_factory=lambda: bytearray(256))
    sent: list[tuple[bytes, ChipSettings]] = field(default_factory=list)  # what went on air
    fsk_sent: list[list[tuple[float, float]]] = field(default_factory=list)  # FSK bursts: (RF Hz, s) steps
    missed: int = 0  # packets that arrived while the chip was not listening
    other_channel: int = 0  # packets sent on a channel the chip was not tuned to: never noticed
    refused: list[str] = field(default_factory=list)  # what the chip would not do as configured
    _tx_end: float | None = None
    _tx_packet: tuple[bytes, ChipSettings] | None = None
    _fsk_steps: list[tuple[float, float]] | None = None  # (since, RF Hz) while FSK TX runs
    # (whole at, packet, its sender's settings or None) still on the air
    antenna: Antenna = field(default_factory=Antenna)  # what the bench's air brought, whole one time on air later

    def __post_init__(self) -> None:
        for reg, value in _RESET.items():
            self.regs[reg] = value

    # ---------------------------------------------------------------- SPI

    def transfer(self, data: list[int]) -> list[int]:
        """One NSS-low transaction: address byte (bit 7: write), then data bytes."""
        self._advance()
        if not data:
            return []
        addr, write = data[0] & 0x7F, bool(data[0] & 0x80)
        out = [0]
        for i, byte in enumerate(data[1:]):
            reg = addr if addr == REG_FIFO else addr + i  # a burst walks the registers, or the FIFO
            if write:
                self._write(reg, byte)
                out.append(0)
            else:
                out.append(self._read(reg))
        return out

    def _read(self, reg: int) -> int:
        if reg == REG_FIFO:
            ptr = self.regs[REG_FIFO_ADDR_PTR]
            self.regs[REG_FIFO_ADDR_PTR] = (ptr + 1) & 0xFF
            return self.fifo[ptr]
        return self.regs[reg & 0x7F]

    def _write(self, reg: int, value: int) -> None:
        value &= 0xFF
        if reg == REG_FIFO:
            ptr = self.regs[REG_FIFO_ADDR_PTR]
            self.fifo[ptr] = value
            self.regs[REG_FIFO_ADDR_PTR] = (ptr + 1) & 0xFF
        elif reg == REG_IRQ_FLAGS:
            self.regs[REG_IRQ_FLAGS] &= ~value & 0xFF  # cleared by writing ones
            self._drive_dio0()
        elif reg == REG_OP_MODE:
            self._set_mode(value)
        elif reg in (REG_VERSION, REG_RX_NB_BYTES, REG_FIFO_RX_CURRENT, REG_PKT_SNR, REG_PKT_RSSI):
            pass  # read-only
        else:
            self.regs[reg] = value
            if reg == REG_DIO_MAPPING1:
                self._drive_dio0()
            elif reg == REG_FRF_LSB and self._fsk_steps is not None:
                self._fsk_steps.append((self.now(), self._frf_hz()))

    # ---------------------------------------------------------------- modes

    @property
    def lora(self) -> bool:
        return bool(self.regs[REG_OP_MODE] & 0x80)

    @property
    def mode(self) -> int:
        return self.regs[REG_OP_MODE] & 0x07

    def _set_mode(self, value: int) -> None:
        if (value & 0x80) != (self.regs[REG_OP_MODE] & 0x80) and self.mode != MODE_SLEEP:
            value = (value & 0x7F) | (self.regs[REG_OP_MODE] & 0x80)  # LongRangeMode changes in sleep only
        self.regs[REG_OP_MODE] = value
        if self.lora and self.mode == MODE_TX:
            self._start_tx()
        elif not self.lora and self.mode == MODE_TX and self._fsk_steps is None:
            self._fsk_steps = [(self.now(), self._frf_hz())]
        elif self._fsk_steps is not None and self.mode != MODE_TX:
            self._end_fsk()

    def _frf_hz(self) -> float:
        return (self.regs[0x06] << 16 | self.regs[0x07] << 8 | self.regs[REG_FRF_LSB]) * 32e6 / 2**19

    def _end_fsk(self) -> None:
        marks, self._fsk_steps = self._fsk_steps + [(self.now(), 0.0)], None
        steps = [(hz, marks[i + 1][0] - since) for i, (since, hz) in enumerate(marks[:-1])]
        self.fsk_sent.append(steps)
        self.transmit_fsk(steps)

    def _start_tx(self) -> None:
        s = self.settings()
        n = self.regs[REG_PAYLOAD_LENGTH]
        base = self.regs[REG_FIFO_TX_BASE]
        packet = bytes(self.fifo[(base + i) & 0xFF] for i in range(n))
        self._tx_end = self.now() + s.airtime_s(n)
        if not s.pa_boost and self.pa_boost_only:
            self.refused.append("transmitted through RFO, which this module does not wire to its antenna")
        elif s.spreading_factor == 6 and s.explicit_header:
            self.refused.append("SF6 in explicit-header mode: nothing can decode it")
        else:
            self._tx_packet = (packet, s)  # a receiver has it when its last symbol is on air

    def _advance(self) -> None:
        """What the chip did since the last access: a transmission finishes at its time; packets
        that reached the antenna are heard (or missed, outside RX)."""
        self._finish_tx()
        if self.listen is None:
            return
        now = self.now()
        deliver(self, now)

    def _finish_tx(self) -> None:
        if self._tx_end is not None and self.now() >= self._tx_end:
            self._tx_end = None
            if self._tx_packet is not None:
                self.sent.append(self._tx_packet)
                self.transmit(*self._tx_packet)
                self._tx_packet = None
            self.regs[REG_IRQ_FLAGS] |= IRQ_TX_DONE
            self.regs[REG_OP_MODE] = (self.regs[REG_OP_MODE] & 0xF8) | MODE_STANDBY  # back to standby by itself
            self._drive_dio0()

    def _drive_dio0(self) -> None:
        if self.dio0_pin is None:
            return
        mapping = self.regs[REG_DIO_MAPPING1] >> 6
        flag = {0: IRQ_RX_DONE, 1: IRQ_TX_DONE}.get(mapping, 0)
        high = bool(self.regs[REG_IRQ_FLAGS] & flag)
        if high:
            self.dio0_pin.drive_high()
        else:
            self.dio0_pin.drive_low()

    # ---------------------------------------------------------------- the air

    def settings(self) -> ChipSettings:
        r = self.regs
        bw_code = r[REG_MODEM_CONFIG1] >> 4
        frf = r[0x06] << 16 | r[0x07] << 8 | r[0x08]
        pa_boost = bool(r[REG_PA_CONFIG] & 0x80)
        out = r[REG_PA_CONFIG] & 0x0F
        if pa_boost:
            power = 20.0 if r[0x4D] & 0x07 == 0x07 else 2.0 + out
        else:
            power = 10.8 + 0.6 * (r[REG_PA_CONFIG] >> 4 & 0x07) - (15 - out)
        return ChipSettings(
            frequency_mhz=frf * 32e6 / 2**19 / 1e6,
            spreading_factor=r[REG_MODEM_CONFIG2] >> 4,
            bandwidth_hz=BANDWIDTHS_HZ[bw_code] if bw_code < len(BANDWIDTHS_HZ) else math.nan,
            coding_rate=4 + (r[REG_MODEM_CONFIG1] >> 1 & 0x07),
            explicit_header=not r[REG_MODEM_CONFIG1] & 0x01,
            crc=bool(r[REG_MODEM_CONFIG2] & 0x04),
            low_data_rate_optimize=bool(r[REG_MODEM_CONFIG3] & 0x08),
            sync_word=r[REG_SYNC_WORD],
            preamble=r[REG_PREAMBLE_MSB] << 8 | r[REG_PREAMBLE_LSB],
            pa_boost=pa_boost,
            power_dbm=power,
        )

    def _take(self, packet: bytes, s: ChipSettings, rssi_dbm: float, snr_db: float, crc_ok: bool) -> bool:
        if not (self.lora and self.mode in (MODE_RX_CONTINUOUS, MODE_RX_SINGLE)):
            self.missed += 1
            return False
        if not s.explicit_header:
            packet = packet[:self.regs[REG_PAYLOAD_LENGTH]].ljust(self.regs[REG_PAYLOAD_LENGTH], b"\0")
        base = self.regs[REG_FIFO_RX_BASE]
        for i, byte in enumerate(packet):
            self.fifo[(base + i) & 0xFF] = byte
        self.regs[REG_FIFO_RX_CURRENT] = base
        self.regs[REG_RX_NB_BYTES] = len(packet) & 0xFF
        snr = max(-128, min(127, round(snr_db * 4)))
        self.regs[REG_PKT_SNR] = snr & 0xFF
        offset = 157 if s.frequency_mhz > 525 else 164
        raw = rssi_dbm - (snr_db if snr_db < 0 else 0) + offset
        self.regs[REG_PKT_RSSI] = max(0, min(255, round(raw)))
        self.regs[REG_IRQ_FLAGS] |= IRQ_RX_DONE | IRQ_VALID_HEADER | (0 if crc_ok else IRQ_CRC_ERROR)
        if self.mode == MODE_RX_SINGLE:
            self.regs[REG_OP_MODE] = (self.regs[REG_OP_MODE] & 0xF8) | MODE_STANDBY
        self._drive_dio0()
        return True



def on_the_bench(radio, *, now, transmit, listen, pins) -> SpiSocket:
    """An SX1278 module as the payload's `[radio]` has it: DIO0 on its mock pin when wired, and
    only PA_BOOST to the antenna (every RFM9xW)."""
    dio0 = pins.pin(radio.dio0_pin) if radio.dio0_pin is not None else None
    return SpiSocket(Sx127xChip(now=now, transmit=transmit, listen=listen, dio0_pin=dio0, pa_boost_only=True))


register_simulator("sx127x", on_the_bench)
