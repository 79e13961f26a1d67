"""An SX1262/SX1268 at the level its SPI bus speaks: commands, the status byte, BUSY, the
256-byte data buffer, IRQ status and DIO1 — what the payload's and the ground's driver
(stratoecho/lora_chips/sx126x.py) talks to.

`Sx126xChip` takes one command per NSS-low transaction (SX1261/2 datasheet rev. 1.2, section
13) and behaves as the chip does where a driver can go wrong:

- BUSY is high while a command is processed (microseconds; 3.5 ms for a full calibration,
  plus the TCXO's start delay), and a command sent while it is high is lost. The BUSY pin
  (`BusyPin`, a gpiozero mock pin) is read at any moment from the chip's own time.
- Reads answer with the status byte (chip mode, command status) after the opcode, then data.
  A wrong number of parameters is a processing error, a command that cannot be carried out
  now (SetPacketType outside standby, LoRa parameters before SetPacketType(LoRa)) a failure.
- IRQs are raised only where SetDioIrqParams unmasked them; DIO1 is high while a flag mapped
  to it is set; flags clear by ClearIrqStatus.
- SetTx sends the packet parameters' payload length from the TX base address and takes its
  time on air *from the programmed modulation and packet parameters*, then raises TxDone and
  falls back to STDBY_RC. SetRx listens: continuous (0xFFFFFF), single (0) or with a timeout;
  in continuous RX each packet is written after the one before, wrapping at 256.
- What real hardware would fail is refused and recorded in `refused`: a PA configuration that
  over-stresses the PA (paDutyCycle above 4) or is not the SX1262's, power outside -9..22 dBm,
  a carrier outside 150..960 MHz, and a module with a TCXO whose DIO3 was never told to power
  it (the oscillator does not start: calibration reports XOSC and PLL errors, and SetTx/SetRx
  fail). A module whose RF switch is driven by DIO2 radiates and hears nothing until
  SetDIO2AsRfSwitchCtrl enables it. SF5 and SF6 work in explicit-header mode here, as on the
  SX126x (unlike the SX127x).

The chip's air is the SX127x simulator's (sim/chips/sx127x.py): `transmit(packet, settings)`,
`hear(packet, rssi_dbm, snr_db)`, or `listen()` asked at each SPI access for what a sender keyed
since (the bench's air datagrams, sim/chips/air.py), each of those arriving one time on air after
the one before, and heard only on the channel its sender keyed it on (else `other_channel`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog
from gpiozero.pins.mock import MockPin

from stratoecho.airtime import lora_airtime_s

from .air import Antenna, ChipOnAir, ModemSettings, deliver
from .spi_bus import SpiSocket, register_simulator

log = structlog.get_logger(__name__)

MODE_SLEEP, MODE_STDBY_RC, MODE_STDBY_XOSC, MODE_FS, MODE_RX, MODE_TX = 0x0, 0x2, 0x3, 0x4, 0x5, 0x6
STATUS_OK, STATUS_DATA, STATUS_ERROR, STATUS_FAILURE, STATUS_TX_DONE = 0x1, 0x2, 0x4, 0x5, 0x6
IRQ_TX_DONE, IRQ_RX_DONE, IRQ_HEADER_VALID, IRQ_CRC_ERR, IRQ_TIMEOUT = 0x1, 0x2, 0x10, 0x40, 0x200
ERR_PLL_CALIB, ERR_XOSC_START, ERR_PLL_LOCK = 0x004, 0x020, 0x040
BANDWIDTHS = {0x00: 7_800, 0x08: 10_400, 0x01: 15_600, 0x09: 20_800, 0x02: 31_250, 0x0A: 41_700, 0x03: 62_500,
              0x04: 125_000, 0x05: 250_000, 0x06: 500_000}
TCXO_VOLTS = (1.6, 1.7, 1.8, 2.2, 2.4, 2.7, 3.0, 3.3)
PA_ROWS = {(0x04, 0x07): 22, (0x03, 0x05): 20, (0x02, 0x03): 17, (0x02, 0x02): 14}  # datasheet table 13-21
COMMAND_S, CALIBRATE_S, MODE_CHANGE_S = 20e-6, 3.5e-3, 100e-6  # how long BUSY stays high
# Registers a driver reads before writing; their reset values are the chip's own business, these
# hold the bits the datasheet's workarounds touch at what the workarounds undo them to.
_RESET_REGS = {0x0740: 0x14, 0x0741: 0x24, 0x0889: 0x00, 0x08D8: 0xC8}


@dataclass
class ChipSettings(ModemSettings):
    """The modem settings as the chip holds them now."""

    payload_length: int
    power_dbm: float

    def airtime_s(self, n: int) -> float:
        """The datasheet's time on air (6.1.4): as the SX127x's from SF7 up; SF5 and SF6 add two
        symbols of sync and leave out the 8 bits the others carry."""
        if self.spreading_factor >= 7:
            return lora_airtime_s(n, self.spreading_factor, self.bandwidth_hz, self.coding_rate, preamble=self.preamble,
                                  explicit_header=self.explicit_header, crc=self.crc,
                                  low_data_rate_optimize=self.low_data_rate_optimize)
        sf, symbol_s = self.spreading_factor, 2**self.spreading_factor / self.bandwidth_hz
        bits = 8 * n + (16 if self.crc else 0) - 4 * sf + (20 if self.explicit_header else 0)
        payload_symbols = 8 + math.ceil(max(bits, 0) / (4 * sf)) * self.coding_rate
        return (self.preamble + 6.25 + payload_symbols) * symbol_s


class BusyPin(MockPin):
    """BUSY as the chip drives it: its level, whenever read, is the chip's at that moment."""

    def __init__(self, factory, info, busy: Callable[[], bool]):
        super().__init__(factory, info)
        self._busy = busy

    def _get_state(self):
        return self._busy()


@dataclass
class Sx126xChip(ChipOnAir):
    now: Callable[[], float]  # flight seconds: the chip's own timing runs on the bench's clock
    transmit: Callable[[bytes, ChipSettings], None] = lambda packet, settings: None
    listen: Callable[[], list[bytes]] | None = None  # packets that reached the antenna since last asked
    signal: tuple[float, float] = (-105.0, 6.0)  # (RSSI dBm, SNR dB) given to packets from `listen`
    dio1_pin: object | None = None  # a gpiozero MockPin the chip drives
    tcxo_volts: float | None = None  # the module's TCXO, powered from DIO3; None: a crystal
    rf_switch_on_dio2: bool = True  # the module's antenna switch follows DIO2 (most SX1262 modules)
    hung: bool = False  # BUSY stuck high: a chip that stopped answering
    buffer: bytearray = field(default_factory=lambda: bytearray(256))
    regs: dict[int, int] = field(default_factory=lambda: dict(_RESET_REGS))
    mode: int = MODE_STDBY_RC
    commands: list[tuple[int, bytes]] = field(default_factory=list)  # every command taken, for tests
    sent: list[tuple[bytes, ChipSettings]] = field(default_factory=list)  # what went on air
    missed: int = 0  # packets that arrived while the chip was not listening
    other_channel: int = 0  # packets sent on a channel the chip was not tuned to: never noticed
    refused: list[str] = field(default_factory=list)  # what the chip would not do as configured
    packet_type: int = 0x00  # GFSK after reset
    frf: int = 0
    modulation: tuple[int, int, int, int] = (7, 0x04, 0x01, 0)  # SF, BW code, CR code, LDRO
    packet: tuple[int, int, int, int, int] = (8, 0, 0xFF, 1, 0)  # preamble, implicit, length, CRC, IQ inverted
    pa: tuple[int, int, int, int] = (0x04, 0x07, 0x00, 0x01)
    tx_power: int = 14
    irq: int = 0
    irq_mask: int = 0
    dio1_mask: int = 0
    device_errors: int = 0
    dio2_switch: bool = False
    tcxo_set: float | None = None  # the voltage DIO3 was told to give
    image: tuple[int, int] | None = None  # CalibrateImage's band, once run
    tx_base: int = 0
    rx_base: int = 0
    _status: int = STATUS_OK
    _busy_until: float = 0.0
    _rx_ptr: int = 0
    _rx_start: int = 0
    _rx_len: int = 0
    _rx_single: bool = False
    _rx_timeout_at: float | None = None
    _pkt_status: tuple[int, int, int] = (0, 0, 0)
    _tx_end: float | None = None
    _tx_packet: tuple[bytes, ChipSettings] | None = None
    _tx_timed_out: bool = False
    # (whole at, packet, its sender's settings or None) still on the air
    antenna: Antenna = field(default_factory=Antenna)  # what the bench's air brought, whole one time on air later

    def __post_init__(self) -> None:
        if self.tcxo_volts is not None:
            self.device_errors = ERR_XOSC_START  # the power-on calibration ran before anything powered the TCXO

    # ---------------------------------------------------------------- pins and SPI

    def wire(self, factory, busy, dio1=None, busy_level: Callable[[], bool] | None = None) -> None:
        """BUSY (and DIO1) on pins of a gpiozero MockFactory, before the driver opens them.
        `busy_level`: what the pin reads instead of the chip's BUSY (the bench's unplugged module)."""
        factory.pin(busy, pin_class=BusyPin, busy=busy_level or self.busy)
        if dio1 is not None:
            self.dio1_pin = factory.pin(dio1)

    def busy(self) -> bool:
        return self.hung or self.mode == MODE_SLEEP or self.now() < self._busy_until

    def status_byte(self) -> int:
        return (self.mode & 0x7) << 4 | (self._status & 0x7) << 1

    def transfer(self, data: list[int]) -> list[int]:
        """One NSS-low transaction: an opcode and its parameters."""
        self._advance()
        if not data:
            return []
        if self.mode == MODE_SLEEP:  # NSS falling wakes the chip; what was sent meanwhile is lost
            self.mode, self._busy_until = MODE_STDBY_RC, self.now() + CALIBRATE_S
            self._refuse(f"command 0x{data[0]:02X} sent to a sleeping chip: lost (it wakes)")
            return [0] * len(data)
        if self.busy():
            self._refuse(f"command 0x{data[0]:02X} sent while BUSY was high: lost")
            return [0] * len(data)
        op, params = data[0], bytes(data[1:])
        self.commands.append((op, params))
        self._busy_until = self.now() + COMMAND_S
        handler = _COMMANDS.get(op)
        if handler is None:
            self._status = STATUS_ERROR
            return [0] + [self.status_byte()] * len(params)
        need, run = handler
        if len(params) < need:
            self._status = STATUS_ERROR
            self._refuse(f"command 0x{op:02X} with {len(params)} parameter bytes, not {need}")
            return [0] + [self.status_byte()] * len(params)
        self._status = STATUS_OK
        reply = run(self, params)  # the data bytes of a read, after its status byte
        status = self.status_byte()
        if reply is None:
            return [0] + [status] * len(params)
        head = {READ_REGISTER: 2, READ_BUFFER: 1}.get(op, 0)  # address bytes before the status byte
        out = [0] + [status] * (head + 1) + list(reply)
        return (out + [0] * len(data))[:len(data)]

    # ---------------------------------------------------------------- commands

    def _set_standby(self, p: bytes) -> None:
        self._stop()
        self.mode = MODE_STDBY_XOSC if p[0] & 1 else MODE_STDBY_RC

    def _set_sleep(self, p: bytes) -> None:
        self._stop()
        self.mode = MODE_SLEEP

    def _set_packet_type(self, p: bytes) -> None:
        if self.mode not in (MODE_STDBY_RC, MODE_STDBY_XOSC):
            self._fail("SetPacketType outside standby")
            return
        self.packet_type = p[0]

    def _lora_only(self, what: str) -> bool:
        if self.packet_type != 0x01:
            self._fail(f"{what} before SetPacketType(LoRa): taken as GFSK parameters")
            return False
        return True

    def _set_modulation(self, p: bytes) -> None:
        if not self._lora_only("SetModulationParams"):
            return
        sf, bw, cr, ldro = p[0], p[1], p[2], p[3]
        if not 5 <= sf <= 12 or bw not in BANDWIDTHS or not 1 <= cr <= 4 or ldro > 1:
            self._fail(f"SetModulationParams SF {sf}, BW code 0x{bw:02X}, CR code {cr}, LDRO {ldro}: no such LoRa setting")
            return
        self.modulation = (sf, bw, cr, ldro)

    def _set_packet_params(self, p: bytes) -> None:
        if self._lora_only("SetPacketParams"):
            self.packet = (p[0] << 8 | p[1], p[2], p[3], p[4], p[5])

    def _set_frequency(self, p: bytes) -> None:
        self.frf = int.from_bytes(p[:4], "big")
        if not 150 <= self.frequency_mhz <= 960:
            self._fail(f"SetRfFrequency {self.frequency_mhz:.3f} MHz: outside 150..960 MHz")

    def _set_pa_config(self, p: bytes) -> None:
        duty, hp_max, device, lut = p[0], p[1], p[2], p[3]
        if device != 0x00:
            self._fail("SetPaConfig deviceSel 1 is the SX1261's low-power PA, which an SX1262 does not have")
        elif duty > 0x04 or hp_max > 0x07:
            self._fail(f"SetPaConfig paDutyCycle {duty}, hpMax {hp_max}: beyond the datasheet's limits, over-stressing the PA")
        else:
            self.pa = (duty, hp_max, device, lut)

    def _set_tx_params(self, p: bytes) -> None:
        power = p[0] - 256 if p[0] > 127 else p[0]
        if not -9 <= power <= 22:
            self._fail(f"SetTxParams {power} dBm: the high-power PA takes -9..22")
            return
        self.tx_power = power

    def _calibrate(self, p: bytes) -> None:
        self._busy_until = self.now() + CALIBRATE_S + (0.005 if self.tcxo_volts is not None else 0.0)
        if not self._clock_runs():
            self.device_errors |= ERR_XOSC_START | ERR_PLL_CALIB

    def _calibrate_image(self, p: bytes) -> None:
        self._busy_until = self.now() + CALIBRATE_S
        self.image = (p[0], p[1])

    def _set_tcxo(self, p: bytes) -> None:
        self.tcxo_set = TCXO_VOLTS[p[0] & 0x07]

    def _write_register(self, p: bytes) -> None:
        address = p[0] << 8 | p[1]
        for i, value in enumerate(p[2:]):
            self.regs[address + i] = value

    def _read_register(self, p: bytes) -> bytes:
        address = p[0] << 8 | p[1]
        return bytes(self.regs.get(address + i, 0) for i in range(len(p) - 3))  # after the status byte

    def _write_buffer(self, p: bytes) -> None:
        for i, value in enumerate(p[1:]):
            self.buffer[(p[0] + i) & 0xFF] = value

    def _read_buffer(self, p: bytes) -> bytes:
        return bytes(self.buffer[(p[0] + i) & 0xFF] for i in range(len(p) - 2))

    def _set_buffer_base(self, p: bytes) -> None:
        self.tx_base, self.rx_base = p[0], p[1]

    def _set_dio_irq(self, p: bytes) -> None:
        self.irq_mask, self.dio1_mask = p[0] << 8 | p[1], p[2] << 8 | p[3]
        self._drive_dio1()

    def _clear_irq(self, p: bytes) -> None:
        self.irq &= ~(p[0] << 8 | p[1])
        self._drive_dio1()

    def _get_irq(self, p: bytes) -> bytes:
        return bytes([self.irq >> 8, self.irq & 0xFF])

    def _get_rx_buffer(self, p: bytes) -> bytes:
        return bytes([self._rx_len, self._rx_start])

    def _get_packet_status(self, p: bytes) -> bytes:
        return bytes(self._pkt_status)

    def _get_device_errors(self, p: bytes) -> bytes:
        return bytes([self.device_errors >> 8, self.device_errors & 0xFF])

    def _clear_device_errors(self, p: bytes) -> None:
        self.device_errors = 0

    def _set_tx(self, p: bytes) -> None:
        if not self._ready_for_air("SetTx"):
            return
        s = self.settings()
        n = s.payload_length
        packet = bytes(self.buffer[(self.tx_base + i) & 0xFF] for i in range(n))
        self.mode, self._busy_until = MODE_TX, self.now() + MODE_CHANGE_S
        air = s.airtime_s(n)
        timeout = int.from_bytes(p[:3], "big") * 15.625e-6
        self._tx_timed_out = bool(timeout) and timeout < air  # cut short: nothing whole reaches a receiver
        self._tx_end = self.now() + (timeout if self._tx_timed_out else air)
        if self.rf_switch_on_dio2 and not self.dio2_switch:
            self._refuse("transmitted with the RF switch never switched (SetDIO2AsRfSwitchCtrl): nothing radiated")
            self._tx_packet = None
        else:
            self._tx_packet = None if self._tx_timed_out else (packet, s)

    def _set_rx(self, p: bytes) -> None:
        if not self._ready_for_air("SetRx"):
            return
        timeout = int.from_bytes(p[:3], "big")
        self.mode, self._busy_until = MODE_RX, self.now() + MODE_CHANGE_S
        self._rx_single = timeout != 0xFFFFFF
        self._rx_timeout_at = self.now() + timeout * 15.625e-6 if timeout not in (0, 0xFFFFFF) else None
        self._rx_ptr = self.rx_base

    def _get_status(self, p: bytes) -> bytes:
        return b""

    def _nothing(self, p: bytes) -> None:
        """Taken and kept as far as the air here cares (regulator mode)."""

    # ---------------------------------------------------------------- what the chip does by itself

    def _fail(self, why: str) -> None:
        self._status = STATUS_FAILURE
        self._refuse(why)

    def _refuse(self, why: str) -> None:
        self.refused.append(why)
        log.warning("chip_refused", chip="SX126x", why=why, at_s=round(self.now(), 4))

    def _clock_runs(self) -> bool:
        """A crystal always starts; a TCXO only when DIO3 powers it at a voltage it takes."""
        return self.tcxo_volts is None or (self.tcxo_set is not None and abs(self.tcxo_set - self.tcxo_volts) < 0.05)

    def _ready_for_air(self, what: str) -> bool:
        if not self._clock_runs():
            self.device_errors |= ERR_XOSC_START | ERR_PLL_LOCK
            self._fail(f"{what} with the module's {self.tcxo_volts:g} V TCXO unpowered "
                       f"(DIO3 {'never set' if self.tcxo_set is None else f'at {self.tcxo_set:g} V'}): no clock")
            return False
        return self._lora_only(what)

    def _stop(self) -> None:
        """Standby or sleep ends a transmission or a reception under way."""
        self._finish_tx()
        if self._tx_end is not None:
            self._tx_end, self._tx_packet = None, None  # cut off before its last symbol
        self._rx_timeout_at = None

    def _advance(self) -> None:
        self._finish_tx()
        now = self.now()
        if self._rx_timeout_at is not None and now >= self._rx_timeout_at and self.mode == MODE_RX:
            self._rx_timeout_at = None
            self.mode = MODE_STDBY_RC
            self._raise(IRQ_TIMEOUT)
        if self.listen is None:
            return
        deliver(self, now)

    def _finish_tx(self) -> None:
        if self._tx_end is not None and self.now() >= self._tx_end:
            self._tx_end = None
            self.mode = MODE_STDBY_RC  # the fallback mode after TX
            if self._tx_timed_out:
                self._raise(IRQ_TIMEOUT)
                return
            if self._tx_packet is not None:
                self.sent.append(self._tx_packet)
                self.transmit(*self._tx_packet)
                self._tx_packet = None
            self._status = STATUS_TX_DONE
            self._raise(IRQ_TX_DONE)

    def _raise(self, flags: int) -> None:
        self.irq |= flags & self.irq_mask  # a masked IRQ never shows
        self._drive_dio1()

    def _drive_dio1(self) -> None:
        if self.dio1_pin is None:
            return
        if self.irq & self.dio1_mask:
            self.dio1_pin.drive_high()
        else:
            self.dio1_pin.drive_low()

    # ---------------------------------------------------------------- the air

    @property
    def frequency_mhz(self) -> float:
        return self.frf * 32e6 / 2**25 / 1e6

    def settings(self) -> ChipSettings:
        sf, bw, cr, ldro = self.modulation
        preamble, implicit, length, crc, _iq = self.packet
        duty, hp_max = self.pa[:2]
        sync = self.regs[0x0740] & 0xF0 | self.regs[0x0741] >> 4
        row = PA_ROWS.get((duty, hp_max))
        return ChipSettings(
            frequency_mhz=self.frequency_mhz, spreading_factor=sf, bandwidth_hz=BANDWIDTHS[bw], coding_rate=4 + cr,
            explicit_header=not implicit, crc=bool(crc), low_data_rate_optimize=bool(ldro), sync_word=sync,
            preamble=preamble, payload_length=length,
            power_dbm=row - (22 - self.tx_power) if row is not None else math.nan)

    def _take(self, packet: bytes, s: ChipSettings, rssi_dbm: float, snr_db: float, crc_ok: bool) -> bool:
        switched = self.dio2_switch or not self.rf_switch_on_dio2
        if self.mode != MODE_RX or self.packet_type != 0x01 or not switched:
            self.missed += 1
            return False
        if not s.explicit_header:
            packet = packet[:s.payload_length].ljust(s.payload_length, b"\0")
        self._rx_start = self._rx_ptr
        for i, byte in enumerate(packet):
            self.buffer[(self._rx_ptr + i) & 0xFF] = byte
        self._rx_ptr = (self._rx_ptr + len(packet)) & 0xFF
        self._rx_len = len(packet) & 0xFF
        snr = max(-128, min(127, round(snr_db * 4)))
        rssi = max(0, min(255, round(-rssi_dbm * 2)))
        self._pkt_status = (rssi, snr & 0xFF, max(0, min(255, round(-(rssi_dbm + min(snr_db, 0)) * 2))))
        flags = IRQ_RX_DONE | (IRQ_HEADER_VALID if s.explicit_header else 0)
        self._raise(flags | (IRQ_CRC_ERR if s.crc and not crc_ok else 0))
        self._status = STATUS_DATA
        if self._rx_single:
            self.mode, self._rx_timeout_at = MODE_STDBY_RC, None
        return True



READ_REGISTER, READ_BUFFER = 0x1D, 0x1E
# opcode -> (parameter bytes the chip needs, what it does); a read returns its data bytes.
_COMMANDS: dict[int, tuple[int, Callable]] = {
    0x80: (1, Sx126xChip._set_standby),
    0x84: (1, Sx126xChip._set_sleep),
    0x8A: (1, Sx126xChip._set_packet_type),
    0x8B: (4, Sx126xChip._set_modulation),  # LoRa reads the first 4 of 8
    0x8C: (6, Sx126xChip._set_packet_params),
    0x86: (4, Sx126xChip._set_frequency),
    0x95: (4, Sx126xChip._set_pa_config),
    0x8E: (2, Sx126xChip._set_tx_params),
    0x89: (1, Sx126xChip._calibrate),
    0x98: (2, Sx126xChip._calibrate_image),
    0x97: (4, Sx126xChip._set_tcxo),
    0x96: (1, Sx126xChip._nothing),
    0x9D: (1, lambda chip, p: setattr(chip, "dio2_switch", bool(p[0] & 1))),
    0x0D: (3, Sx126xChip._write_register),
    READ_REGISTER: (3, Sx126xChip._read_register),
    0x0E: (2, Sx126xChip._write_buffer),
    READ_BUFFER: (2, Sx126xChip._read_buffer),
    0x8F: (2, Sx126xChip._set_buffer_base),
    0x08: (8, Sx126xChip._set_dio_irq),
    0x02: (2, Sx126xChip._clear_irq),
    0x12: (3, Sx126xChip._get_irq),
    0x13: (3, Sx126xChip._get_rx_buffer),
    0x14: (4, Sx126xChip._get_packet_status),
    0x17: (3, Sx126xChip._get_device_errors),
    0x07: (2, Sx126xChip._clear_device_errors),
    0x83: (3, Sx126xChip._set_tx),
    0x82: (3, Sx126xChip._set_rx),
    0xC0: (1, Sx126xChip._get_status),
}


def on_the_bench(radio, *, now, transmit, listen, pins) -> SpiSocket:
    """An SX1262 module built as the payload's `[radio]` says (its TCXO, its RF switch), driving
    BUSY and DIO1 on the configured mock pins."""
    chip = Sx126xChip(now=now, transmit=transmit, listen=listen, tcxo_volts=radio.tcxo_voltage,
                      rf_switch_on_dio2=radio.dio2_rf_switch)
    socket_ = SpiSocket(chip)
    # Unplugged (its supply gone), the module's BUSY reads low like its SPI lines: the driver
    # gets no BUSY timeout to tell it, only status bytes of 0x00 and a TxDone that never comes.
    chip.wire(pins, busy=radio.busy_pin, dio1=radio.dio1_pin, busy_level=lambda: False if socket_.unplugged else chip.busy())
    return socket_


register_simulator("sx126x", on_the_bench)
