"""A Semtech SX1262/SX1268 (the SX126x family's +22 dBm parts) in LoRa mode, over SPI.

The SX126x is programmed by commands, not a register page: each SPI transaction is an opcode
and its parameters (SX1261/2 datasheet rev. 1.2, section 13), and the chip raises BUSY while it
works on one; a command sent while BUSY is high is lost. So every command here first waits for
BUSY low (a GPIO input: without it this driver refuses to start), `busy_timeout_s` at most —
a BUSY that never falls is a chip that hangs or a wire that is wrong, and a `RadioError`.

The chip is programmed from one `stratoecho.lora.LoRaSettings` (a UKHAS mode or settings of
one's own), as the SX127x is (sx127x.py), so the airtime the payload accounts for is the chip's.

Wiring (docs/hardware.md): SPI0 (MOSI, MISO, SCLK, CE0 or CE1 as NSS), BUSY to a GPIO input,
NRESET to a GPIO output (optional), DIO1 to a GPIO input (optional: without it the driver polls
the IRQ status). DIO2 drives the module's RF switch on most modules (`dio2_rf_switch`); DIO3
powers its TCXO where one is fitted (`tcxo_voltage`, the voltage the TCXO wants).

Reads (GetStatus, GetIrqStatus, GetRxBufferStatus, GetPacketStatus) return the status byte in
the byte after the opcode and their data after it; ReadRegister and ReadBuffer after their
address and one status byte.

Send: standby, the frame into the data buffer at offset 0, the packet parameters with its
length, IRQ status cleared, SetTx without a timeout; then its time on air (from the settings)
on the payload's clock, and TxDone polled, `tx_timeout_s` at most. The chip falls back to
standby itself. Receive (chip.py has the two ways: a window, or listening on): SetRx continuous;
each RxDone gives one packet from GetRxBufferStatus (length and where in the buffer it starts: in
continuous RX each packet lands after the one before), with GetPacketStatus's RSSI and SNR kept in
`heard`; a packet whose payload or header CRC failed is counted and dropped.
"""

from __future__ import annotations

import math
import threading

import structlog

from stratoecho.clock import Clock
from stratoecho.lora import BANDWIDTHS_HZ, LoRaSettings, bandwidth_code

from .chip import PacketSignal, RadioError, SpiChip, SpiDevice
from .profiles import NUMBER, SWITCH, ChipOption, ChipProfile, register_chip

log = structlog.get_logger(__name__)

# Opcodes (datasheet table 11-1)
CLEAR_IRQ_STATUS, CLEAR_DEVICE_ERRORS, SET_DIO_IRQ_PARAMS, WRITE_REGISTER, WRITE_BUFFER = 0x02, 0x07, 0x08, 0x0D, 0x0E
GET_IRQ_STATUS, GET_RX_BUFFER_STATUS, GET_PACKET_STATUS, GET_DEVICE_ERRORS = 0x12, 0x13, 0x14, 0x17
READ_REGISTER, READ_BUFFER = 0x1D, 0x1E
SET_STANDBY, SET_RX, SET_TX, SET_SLEEP, SET_RF_FREQUENCY, CALIBRATE = 0x80, 0x82, 0x83, 0x84, 0x86, 0x89
SET_PACKET_TYPE, SET_MODULATION_PARAMS, SET_PACKET_PARAMS, SET_TX_PARAMS, SET_BUFFER_BASE = 0x8A, 0x8B, 0x8C, 0x8E, 0x8F
SET_PA_CONFIG, SET_REGULATOR_MODE, SET_DIO3_AS_TCXO, CALIBRATE_IMAGE, SET_DIO2_AS_RF_SWITCH = 0x95, 0x96, 0x97, 0x98, 0x9D
GET_STATUS = 0xC0

STDBY_RC, PACKET_LORA, REGULATOR_DC_DC, CALIBRATE_ALL, RX_CONTINUOUS = 0x00, 0x01, 0x01, 0x7F, 0xFFFFFF
RAMP_200US = 0x04
IRQ_TX_DONE, IRQ_RX_DONE, IRQ_HEADER_VALID, IRQ_HEADER_ERR, IRQ_CRC_ERR, IRQ_TIMEOUT = 0x1, 0x2, 0x10, 0x20, 0x40, 0x200
IRQ_USED = IRQ_TX_DONE | IRQ_RX_DONE | IRQ_HEADER_VALID | IRQ_HEADER_ERR | IRQ_CRC_ERR | IRQ_TIMEOUT
IRQ_ALL = 0x43FF
# GetStatus bits 6..4: the chip's mode; 0, 1 and 7 are no mode, which is what an empty bus reads.
CHIP_MODES = {0x2: "STDBY_RC", 0x3: "STDBY_XOSC", 0x4: "FS", 0x5: "RX", 0x6: "TX"}
CHIP_MODE_RX = 0x5
DEVICE_ERRORS = {0x001: "RC64K calibration", 0x002: "RC13M calibration", 0x004: "PLL calibration",
                 0x008: "ADC calibration", 0x010: "image calibration", 0x020: "XOSC start", 0x040: "PLL lock",
                 0x100: "PA ramp"}

REG_SYNC_WORD, REG_SENSITIVITY, REG_TX_CLAMP = 0x0740, 0x0889, 0x08D8
FXOSC_HZ = 32_000_000
# The LoRa bandwidth codes of SetModulationParams, in the order of `BANDWIDTHS_HZ` (not the SX127x's 0..9).
BW_CODES = (0x00, 0x08, 0x01, 0x09, 0x02, 0x0A, 0x03, 0x04, 0x05, 0x06)
BW_500 = BW_CODES[BANDWIDTHS_HZ.index(500_000)]
# SetDIO3AsTCXOCtrl's voltage codes.
TCXO_CODES = {1.6: 0x00, 1.7: 0x01, 1.8: 0x02, 2.2: 0x03, 2.4: 0x04, 2.7: 0x05, 3.0: 0x06, 3.3: 0x07}
TCXO_START_S = 0.005  # what DIO3 gives the TCXO to settle before the chip uses it
# The datasheet's optimal PA settings for the SX1262 (table 13-21), with SetTxParams at +22 dBm:
# output power -> (paDutyCycle, hpMax). Other powers take the +22 dBm row and SetTxParams' own power.
PA_OPTIMAL = {22: (0x04, 0x07), 20: (0x03, 0x05), 17: (0x02, 0x03), 14: (0x02, 0x02)}
# CalibrateImage for the bands the datasheet lists (table 9-2), in its 4 MHz steps.
IMAGE_BANDS = ((430, 440, 0x6B, 0x6F), (470, 510, 0x75, 0x81), (779, 787, 0xC1, 0xC5), (863, 870, 0xD7, 0xDB),
               (902, 928, 0xE1, 0xE9))


def frf(frequency_mhz: float) -> int:
    """SetRfFrequency's word: frequency * 2^25 / 32 MHz."""
    return round(frequency_mhz * 1e6 * 2**25 / FXOSC_HZ)


def image_band(frequency_mhz: float) -> tuple[int, int]:
    """CalibrateImage's two arguments for a carrier: the datasheet's band when it lists one,
    else 4 MHz steps from 8 MHz below to 8 MHz above."""
    for low, high, f1, f2 in IMAGE_BANDS:
        if low <= frequency_mhz <= high:
            return f1, f2
    return math.floor((frequency_mhz - 8) / 4), math.ceil((frequency_mhz + 8) / 4)


def pa_params(tx_power_dbm: int) -> tuple[int, int, int]:
    """(paDutyCycle, hpMax, SetTxParams power) for the SX1262's high-power PA: -9..22 dBm."""
    if not -9 <= tx_power_dbm <= 22:
        raise RadioError(f"tx_power_dbm {tx_power_dbm}: the SX1262's PA gives -9..22 dBm")
    if tx_power_dbm in PA_OPTIMAL:
        return (*PA_OPTIMAL[tx_power_dbm], 22)
    return (*PA_OPTIMAL[22], tx_power_dbm)


def sync_word_register(sync_word: int) -> tuple[int, int]:
    """The SX127x's one-byte sync word as the SX126x's two: 0x12 -> 0x14 0x24, 0x34 -> 0x34 0x44."""
    return (sync_word & 0xF0) | 0x04, (sync_word & 0x0F) << 4 | 0x04


class Sx126xRadio(SpiChip):
    RX_EVENT = IRQ_RX_DONE | IRQ_HEADER_ERR
    BUSY_POLL_S = 0.001  # BUSY is high for microseconds after most commands, 3.5 ms after a calibration

    def __init__(self, spi: SpiDevice, settings: LoRaSettings, *, clock: Clock | None = None, busy_pin=None,
                 reset_pin=None, dio1_pin=None, pin_factory=None, tx_power_dbm: int = 14,
                 tcxo_voltage: float | None = None, dio2_rf_switch: bool = True, name: str = "SX126x",
                 tx_timeout_s: float | None = None, busy_timeout_s: float = 0.1):
        super().__init__(spi, settings, clock, name, tx_timeout_s)
        self.tx_power_dbm, self.tcxo_voltage, self.dio2_rf_switch = tx_power_dbm, tcxo_voltage, dio2_rf_switch
        self.busy_timeout_s, self.busy_pin = busy_timeout_s, busy_pin
        try:
            if busy_pin is None:
                raise RadioError(f"{name}: no BUSY pin (radio.busy_pin): an SX126x loses every command sent "
                                 "while BUSY is high, so the driver must read it")
            if tcxo_voltage is not None and tcxo_voltage not in TCXO_CODES:
                raise RadioError(f"{name}: tcxo_voltage {tcxo_voltage:g} V is none DIO3 gives "
                                 f"({', '.join(f'{v:g}' for v in TCXO_CODES)} V)")
            self._wire(f"BUSY {busy_pin}, NRESET {reset_pin}, DIO1 {dio1_pin}", pin_factory, reset_pin, dio1_pin,
                       busy_pin=busy_pin)
            self.configure(settings)
        except BaseException:
            self.close()
            raise

    # ---------------------------------------------------------------- commands

    def _wait_busy(self) -> None:
        if not self.busy.value:
            return
        start, never = self.clock.elapsed_s(), threading.Event()  # DIO1 must not cut this wait short
        while self.busy.value:
            if self.clock.elapsed_s() - start >= self.busy_timeout_s:
                raise RadioError(f"{self.name}: BUSY (GPIO {self.busy_pin}) still high after "
                                 f"{self.busy_timeout_s * 1000:.0f} ms: the chip hangs or is unpowered, or BUSY is "
                                 "not wired to this pin")
            self.clock.wait(self.BUSY_POLL_S, never)

    def command(self, opcode: int, *params: int) -> None:
        self._wait_busy()
        self.spi.xfer2([opcode, *(p & 0xFF for p in params)])

    def query(self, opcode: int, n: int, *params: int) -> tuple[int, list[int]]:
        """A read: (status, `n` data bytes). The status comes in the byte after the opcode and its
        parameters, the data after it."""
        self._wait_busy()
        reply = self.spi.xfer2([opcode, *(p & 0xFF for p in params), 0, *[0] * n])
        return reply[1 + len(params)], reply[2 + len(params):]

    def read_register(self, address: int) -> int:
        return self.query(READ_REGISTER, 1, address >> 8, address)[1][0]

    def write_register(self, address: int, *values: int) -> None:
        self.command(WRITE_REGISTER, address >> 8, address, *values)

    def status(self) -> int:
        return self.query(GET_STATUS, 0)[0]

    def irq_status(self) -> int:
        hi, lo = self.query(GET_IRQ_STATUS, 2)[1]
        return hi << 8 | lo

    def clear_irq(self, mask: int) -> None:
        self.command(CLEAR_IRQ_STATUS, mask >> 8, mask)

    def _standby(self) -> None:
        self.command(SET_STANDBY, STDBY_RC)

    def _packet_params(self, length: int) -> None:
        s = self.settings
        self.command(SET_PACKET_PARAMS, s.preamble >> 8, s.preamble, 0 if s.explicit_header else 1, length,
                     1 if s.crc else 0, 0)  # IQ standard

    # ---------------------------------------------------------------- configuration

    def configure(self, s: LoRaSettings) -> None:
        """Program the chip with `s` in standby (datasheet 14.2's order), and check that it took."""
        if not 150 <= s.frequency_mhz <= 960:
            raise RadioError(f"{self.name}: {s.frequency_mhz:g} MHz is outside the SX1262's 150..960 MHz")
        duty, hp_max, power = pa_params(self.tx_power_dbm)
        with self._lock:
            status = self.status()
            if status >> 4 & 0x7 not in CHIP_MODES:
                raise RadioError(f"{self.name}: GetStatus reads 0x{status:02X}, no chip mode: no SX126x answers on "
                                 "this SPI device (check NSS, MISO, power and NRESET)")
            self._standby()
            if self.tcxo_voltage is not None:
                # The calibration at power-on ran without the TCXO: power it from DIO3, then calibrate again.
                self.command(CLEAR_DEVICE_ERRORS, 0, 0)
                delay = round(TCXO_START_S / 15.625e-6)
                self.command(SET_DIO3_AS_TCXO, TCXO_CODES[self.tcxo_voltage], delay >> 16, delay >> 8, delay)
                self.command(CALIBRATE, CALIBRATE_ALL)
            self.command(SET_REGULATOR_MODE, REGULATOR_DC_DC)
            self.command(SET_PACKET_TYPE, PACKET_LORA)
            self.command(SET_DIO2_AS_RF_SWITCH, 1 if self.dio2_rf_switch else 0)
            value = frf(s.frequency_mhz)
            self.command(SET_RF_FREQUENCY, value >> 24, value >> 16, value >> 8, value)
            self.command(CALIBRATE_IMAGE, *image_band(s.frequency_mhz))
            self.command(SET_PA_CONFIG, duty, hp_max, 0x00, 0x01)  # deviceSel 0: the SX1262's PA; paLut 1
            self.command(SET_TX_PARAMS, power, RAMP_200US)
            # Datasheet 15.2: the PA's clamp trips too early into a mismatched antenna (an iced one, a swinging one).
            self.write_register(REG_TX_CLAMP, self.read_register(REG_TX_CLAMP) | 0x1E)
            ldro = 1 if s.low_data_rate_optimize else 0
            bw = BW_CODES[bandwidth_code(s.bandwidth_hz)]
            self.command(SET_MODULATION_PARAMS, s.spreading_factor, bw, s.coding_rate - 4, ldro)
            # Datasheet 15.1: the modulation quality fix, bit 2 clear at 500 kHz only.
            sensitivity = self.read_register(REG_SENSITIVITY)
            self.write_register(REG_SENSITIVITY, sensitivity & ~0x04 if bw == BW_500 else sensitivity | 0x04)
            self.settings = s
            self._packet_params(255 if s.explicit_header else s.implicit_length)
            self.write_register(REG_SYNC_WORD, *sync_word_register(s.sync_word))
            self.command(SET_BUFFER_BASE, 0, 0)
            self.command(SET_DIO_IRQ_PARAMS, IRQ_USED >> 8, IRQ_USED, IRQ_USED >> 8, IRQ_USED, 0, 0, 0, 0)
            self.clear_irq(IRQ_ALL)
            hi, lo = self.query(GET_DEVICE_ERRORS, 2)[1]
            if errors := [what for bit, what in DEVICE_ERRORS.items() if (hi << 8 | lo) & bit]:
                hint = ("; a module with a TCXO needs radio.tcxo_voltage" if "XOSC start" in errors else "")
                raise RadioError(f"{self.name}: the chip reports {', '.join(errors)} errors{hint}")
            status = self.status()
            if status >> 4 & 0x7 != 0x2 or status >> 1 & 0x7 in (0x4, 0x5):
                raise RadioError(f"{self.name}: after configuring, GetStatus reads 0x{status:02X} (mode "
                                 f"{CHIP_MODES.get(status >> 4 & 0x7, '?')}, not STDBY_RC, or a command failed)")
        log.info("lora_configured", radio=self.name, mhz=s.frequency_mhz, sf=s.spreading_factor,
                 bw_hz=s.bandwidth_hz, cr=f"4/{s.coding_rate}", explicit=s.explicit_header, ldro=s.low_data_rate_optimize,
                 dbm=self.tx_power_dbm, tcxo_v=self.tcxo_voltage)

    # ---------------------------------------------------------------- the air

    def send(self, frame: bytes, settings: LoRaSettings | None = None) -> None:
        """Key `frame` with `settings` (None: the chip's own channel); returns at TxDone."""
        packet, air_s = self._packet(frame, settings)
        n = len(packet)
        with self._lock:
            self._standby()
            self._packet_params(n)
            self.command(WRITE_BUFFER, 0, *packet)
            self.clear_irq(IRQ_ALL)
            self._irq.clear()
            self.command(SET_TX, 0, 0, 0)  # no chip timeout: ours below ends a transmission that never does
            done = self._wait_for(IRQ_TX_DONE, air_s, self.tx_timeout_s or air_s * 1.5 + 1.0)
            if not done:
                self._standby()
                raise RadioError(f"{self.name}: no TxDone {air_s:.2f} s after a {n}-byte packet was keyed")
            self.clear_irq(IRQ_TX_DONE)

    # ---------------------------------------------------------------- SpiChip's

    def _irq_flags(self) -> int:
        return self.irq_status()

    def _start_rx(self) -> None:
        self._standby()
        self._packet_params(255 if self.settings.explicit_header else self.settings.implicit_length)
        self.clear_irq(IRQ_ALL)
        self._irq.clear()
        self.command(SET_RX, RX_CONTINUOUS >> 16, RX_CONTINUOUS >> 8, RX_CONTINUOUS)

    def _in_rx(self) -> bool:
        return self.status() >> 4 & 0x7 == CHIP_MODE_RX

    def _take_packet(self, irq: int) -> tuple[bytes, PacketSignal] | None:
        self.clear_irq(IRQ_RX_DONE | IRQ_CRC_ERR | IRQ_HEADER_VALID | IRQ_HEADER_ERR)
        if irq & IRQ_HEADER_ERR:
            self.errors["header crc"] += 1
            return None
        if irq & IRQ_CRC_ERR:
            self.errors["payload crc"] += 1
            return None
        n, start = self.query(GET_RX_BUFFER_STATUS, 2)[1]
        rssi_raw, snr_raw, _signal = self.query(GET_PACKET_STATUS, 3)[1]
        signal = PacketSignal(-rssi_raw / 2, (snr_raw - 256 if snr_raw > 127 else snr_raw) / 4)
        self.heard.append(signal)
        packet = bytes(self.query(READ_BUFFER, n, start)[1])
        log.info("lora_heard", radio=self.name, bytes=n, rssi_dbm=signal.rssi_dbm, snr_db=signal.snr_db)
        return packet, signal

    def _sleep(self) -> None:
        if hasattr(self, "busy"):
            self.command(SET_SLEEP, 0x00)  # cold start: the transmitter off, the configuration let go


def _check_tcxo(volts: float) -> None:
    if volts not in TCXO_CODES:
        raise ValueError(f"tcxo_voltage {volts:g}: DIO3 gives {', '.join(f'{v:g}' for v in TCXO_CODES)} V "
                         "(unset for a crystal)")


# What the payload's [radio], its radio factory, the ground's --lora and the bench know of this chip.
PROFILE = register_chip(ChipProfile(
    name="sx126x", label="SX126x", driver=Sx126xRadio, parts="SX1262/68 HATs",
    tx_power_dbm=(-9, 22), power_help="-9..22",
    check_power=lambda tx_power_dbm, options: pa_params(tx_power_dbm),
    options=(
        ChipOption("busy_pin", "GPIO wired to BUSY (required)",
                   required="the chip loses every command sent while BUSY is high"),
        ChipOption("dio1_pin", "GPIO wired to DIO1 (RxDone, TxDone); unset: the IRQ status is polled"),
        ChipOption("tcxo_voltage", "the voltage DIO3 gives the module's TCXO (1.6, 1.7, 1.8, 2.2, 2.4, 2.7, 3.0 or "
                   "3.3, as its data sheet says; often 1.8); unset: a crystal",
                   kind=NUMBER, choices=tuple(TCXO_CODES), metavar="VOLTS", check=_check_tcxo),
        ChipOption("dio2_rf_switch", "DIO2 drives the module's antenna switch (default: yes, as on most modules)",
                   kind=SWITCH, default=True),
    ),
    irq_pin="dio1_pin",
))
