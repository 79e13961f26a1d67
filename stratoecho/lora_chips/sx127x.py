"""A Semtech SX1276/77/78 (HopeRF RFM95W/96W/98W) in LoRa mode, over SPI.

The chip of the UKHAS LoRa standard and of the PITS LoRa gateway. It is programmed from one
`stratoecho.lora.LoRaSettings` (a UKHAS mode or settings of one's own), so the airtime the
payload accounts for is the airtime of the packets the chip sends.

Wiring (docs/hardware.md): SPI0 (MOSI, MISO, SCLK, CE0 or CE1 as NSS), RESET to a GPIO
output, DIO0 to a GPIO input (optional: without it the driver polls the IRQ flags). The SPI
device is anything with spidev's `xfer2` (`spidev.SpiDev` on a Pi; the bench's register-level
simulator, sim/chips/sx127x.py).

Registers (SX1276/77/78/79 datasheet rev. 7, 6.4): a read is the address with bit 7 clear
followed by dummy bytes, a write the address with bit 7 set followed by the data; an access
to RegFifo (0x00) reads or writes the FIFO at RegFifoAddrPtr and advances it.

Send: standby, the frame into the FIFO at the TX base, RegPayloadLength, DIO0 mapped to
TxDone, TX mode; then the packet's time on air (from the settings) on the payload's clock,
and TxDone polled until it shows, `tx_timeout_s` at most (`RadioError` after that: a chip
that never finishes must not hang the transmitter). The chip falls back to standby itself.

Receive (chip.py has the two ways: a window, or listening on): DIO0 mapped to RxDone, RX
continuous; each RxDone gives one packet from RegFifoRxCurrentAddr, RegRxNbBytes long, with its
RSSI and SNR (kept in `heard`); a packet with a bad payload CRC is counted and dropped.

Horus 4FSK (`send_tones`): the chip leaves LoRa for FSK, steps RegFrf once a symbol and comes
back configured as before (sx127x_fsk.py).
"""

from __future__ import annotations

import structlog

from stratoecho.clock import Clock
from stratoecho.lora import LoRaSettings, bandwidth_code

from .chip import PacketSignal, RadioError, SpiChip, SpiDevice
from .profiles import SWITCH, ChipOption, ChipProfile, register_chip
from .sx127x_fsk import key_tones

log = structlog.get_logger(__name__)

# Registers (LoRa mode page)
FIFO, OP_MODE, FRF_MSB, FRF_MID, FRF_LSB, PA_CONFIG, OCP, LNA = 0x00, 0x01, 0x06, 0x07, 0x08, 0x09, 0x0B, 0x0C
FIFO_ADDR_PTR, FIFO_TX_BASE, FIFO_RX_BASE, FIFO_RX_CURRENT = 0x0D, 0x0E, 0x0F, 0x10
IRQ_FLAGS_MASK, IRQ_FLAGS, RX_NB_BYTES, PKT_SNR, PKT_RSSI = 0x11, 0x12, 0x13, 0x19, 0x1A
MODEM_CONFIG1, MODEM_CONFIG2, PREAMBLE_MSB, PREAMBLE_LSB, PAYLOAD_LENGTH, MODEM_CONFIG3 = 0x1D, 0x1E, 0x20, 0x21, 0x22, 0x26
DETECT_OPTIMIZE, DETECTION_THRESHOLD, SYNC_WORD, DIO_MAPPING1, VERSION, PA_DAC = 0x31, 0x37, 0x39, 0x40, 0x42, 0x4D

LONG_RANGE = 0x80  # RegOpMode: LoRa (set only in sleep)
SLEEP, STANDBY, TX, RX_CONTINUOUS = 0x00, 0x01, 0x03, 0x05
IRQ_RX_TIMEOUT, IRQ_RX_DONE, IRQ_CRC_ERROR, IRQ_VALID_HEADER, IRQ_TX_DONE = 0x80, 0x40, 0x20, 0x10, 0x08
DIO0_RX_DONE, DIO0_TX_DONE = 0x00, 0x40  # RegDioMapping1 bits 7..6
SILICON_VERSION = 0x12
FXOSC_HZ = 32_000_000
FSTEP_HZ = FXOSC_HZ / 2**19  # 61.035 Hz per step of RegFrf


def frf(frequency_mhz: float) -> int:
    """RegFrf for a carrier: frequency / (32 MHz / 2^19)."""
    return round(frequency_mhz * 1e6 / FSTEP_HZ)


def packet_rssi_dbm(raw: int, snr_db: float, frequency_mhz: float) -> int:
    """The datasheet's packet RSSI (5.5.5): −157 + raw on the HF port (862–1020 MHz), −164 + raw
    on the LF port; below 0 dB SNR the SNR is added (the signal lies under the noise)."""
    rssi = raw - (157 if frequency_mhz > 525 else 164)
    return int(rssi + snr_db) if snr_db < 0 else rssi


def pa_registers(tx_power_dbm: int, pa_boost: bool) -> tuple[int, int, int]:
    """(RegPaConfig, RegPaDac, RegOcp) for an output power. PA_BOOST (every RFM95W/96W/98W wires
    only this pin to the antenna): 2..17 dBm, or 20 dBm with the high-power DAC; RFO: -1..14 dBm."""
    if pa_boost:
        if tx_power_dbm == 20:
            return 0x80 | 0x70 | 15, 0x87, 0x20 | 17  # +20 dBm needs 140 mA of over-current limit
        if not 2 <= tx_power_dbm <= 17:
            raise RadioError(f"tx_power_dbm {tx_power_dbm}: PA_BOOST gives 2..17 dBm, or 20")
        return 0x80 | 0x70 | (tx_power_dbm - 2), 0x84, 0x20 | 11  # 100 mA
    if not -1 <= tx_power_dbm <= 14:
        raise RadioError(f"tx_power_dbm {tx_power_dbm}: the RFO pin gives -1..14 dBm")
    return 0x70 | (tx_power_dbm + 1), 0x84, 0x20 | 11  # MaxPower 7 (15 dBm): Pout = 15 - (15 - OutputPower)


class Sx127xRadio(SpiChip):
    RX_EVENT = IRQ_RX_DONE

    def __init__(self, spi: SpiDevice, settings: LoRaSettings, *, clock: Clock | None = None, reset_pin=None,
                 dio0_pin=None, pin_factory=None, tx_power_dbm: int = 10, pa_boost: bool = True,
                 name: str = "SX127x", tx_timeout_s: float | None = None):
        super().__init__(spi, settings, clock, name, tx_timeout_s)
        self.tx_power_dbm, self.pa_boost = tx_power_dbm, pa_boost
        try:
            self._wire(f"RESET {reset_pin}, DIO0 {dio0_pin}", pin_factory, reset_pin, dio0_pin)
            self.configure(settings)
        except BaseException:
            self.close()
            raise

    # ---------------------------------------------------------------- registers

    def read(self, reg: int) -> int:
        return self.spi.xfer2([reg & 0x7F, 0])[1]

    def write(self, reg: int, value: int) -> None:
        self.spi.xfer2([reg | 0x80, value & 0xFF])

    def _mode(self, mode: int) -> None:
        self.write(OP_MODE, LONG_RANGE | mode)

    def configure(self, s: LoRaSettings) -> None:
        """Program the chip with `s` (in sleep, where LoRa mode may be chosen), then standby."""
        with self._lock:
            version = self.read(VERSION)
            if version != SILICON_VERSION:
                raise RadioError(f"{self.name}: RegVersion reads 0x{version:02X}, not 0x{SILICON_VERSION:02X}: no "
                                 "SX1276/77/78 answers on this SPI device (check NSS, MISO, power and RESET)")
            self.write(OP_MODE, SLEEP)
            self.write(OP_MODE, LONG_RANGE | SLEEP)
            if self.read(OP_MODE) & LONG_RANGE == 0:
                raise RadioError(f"{self.name}: the chip did not enter LoRa mode")
            value = frf(s.frequency_mhz)
            for reg, shift in ((FRF_MSB, 16), (FRF_MID, 8), (FRF_LSB, 0)):
                self.write(reg, value >> shift)
            pa, dac, ocp = pa_registers(self.tx_power_dbm, self.pa_boost)
            self.write(PA_CONFIG, pa)
            self.write(PA_DAC, dac)
            self.write(OCP, ocp)
            self.write(LNA, 0x23)  # maximum gain, HF boost on (as the gateway)
            self.write(MODEM_CONFIG1, bandwidth_code(s.bandwidth_hz) << 4 | (s.coding_rate - 4) << 1
                       | (0 if s.explicit_header else 1))
            self.write(MODEM_CONFIG2, s.spreading_factor << 4 | (0x04 if s.crc else 0))
            self.write(MODEM_CONFIG3, (0x08 if s.low_data_rate_optimize else 0) | 0x04)  # AGC sets the LNA gain
            sf6 = s.spreading_factor == 6
            self.write(DETECT_OPTIMIZE, (self.read(DETECT_OPTIMIZE) & 0xF8) | (0x05 if sf6 else 0x03))
            self.write(DETECTION_THRESHOLD, 0x0C if sf6 else 0x0A)
            self.write(PREAMBLE_MSB, s.preamble >> 8)
            self.write(PREAMBLE_LSB, s.preamble)
            self.write(SYNC_WORD, s.sync_word)
            self.write(PAYLOAD_LENGTH, s.implicit_length if not s.explicit_header else 1)
            self.write(FIFO_TX_BASE, 0)
            self.write(FIFO_RX_BASE, 0)
            self.write(IRQ_FLAGS_MASK, 0)
            self._mode(STANDBY)
            self.settings = s
        log.info("lora_configured", radio=self.name, mhz=s.frequency_mhz, sf=s.spreading_factor,
                 bw_hz=s.bandwidth_hz, cr=f"4/{s.coding_rate}", explicit=s.explicit_header, ldro=s.low_data_rate_optimize,
                 dbm=self.tx_power_dbm)

    # ---------------------------------------------------------------- the air

    def send(self, frame: bytes, settings: LoRaSettings | None = None) -> None:
        """Key `frame` with `settings` (None: the chip's own channel); returns at TxDone."""
        packet, air_s = self._packet(frame, settings)
        n = len(packet)
        with self._lock:
            self._mode(STANDBY)
            self.write(FIFO_ADDR_PTR, 0)
            self.spi.xfer2([FIFO | 0x80, *packet])
            self.write(PAYLOAD_LENGTH, n)
            self.write(DIO_MAPPING1, DIO0_TX_DONE)
            self.write(IRQ_FLAGS, 0xFF)  # cleared by writing ones
            self._irq.clear()
            self._mode(TX)
            if not self._wait_for(IRQ_TX_DONE, air_s, self.tx_timeout_s or air_s * 1.5 + 1.0):
                self._mode(STANDBY)
                raise RadioError(f"{self.name}: no TxDone {air_s:.2f} s after a {n}-byte packet was keyed")
            self.write(IRQ_FLAGS, IRQ_TX_DONE)

    def send_tones(self, tones: list[int], base_mhz: float) -> float:
        """Key 4FSK `tones` (Horus: 100 baud) from `base_mhz`, then LoRa again (sx127x_fsk.py)."""
        return key_tones(self, tones, base_mhz=base_mhz)

    # ---------------------------------------------------------------- SpiChip's

    def _irq_flags(self) -> int:
        return self.read(IRQ_FLAGS)

    def _start_rx(self) -> None:
        self._mode(STANDBY)
        self.write(DIO_MAPPING1, DIO0_RX_DONE)
        self.write(FIFO_RX_BASE, 0)
        self.write(FIFO_ADDR_PTR, 0)
        self.write(IRQ_FLAGS, 0xFF)
        self._irq.clear()
        self._mode(RX_CONTINUOUS)

    def _standby(self) -> None:
        self._mode(STANDBY)

    def _in_rx(self) -> bool:
        mode = self.read(OP_MODE)
        return bool(mode & LONG_RANGE) and mode & 0x07 == RX_CONTINUOUS

    def _take_packet(self, flags: int) -> tuple[bytes, PacketSignal] | None:
        self.write(IRQ_FLAGS, IRQ_RX_DONE | IRQ_CRC_ERROR | IRQ_VALID_HEADER)
        if flags & IRQ_CRC_ERROR:
            self.errors["payload crc"] += 1
            return None
        n, start = self.read(RX_NB_BYTES), self.read(FIFO_RX_CURRENT)
        raw_snr = self.read(PKT_SNR)
        snr = (raw_snr - 256 if raw_snr > 127 else raw_snr) / 4
        signal = PacketSignal(packet_rssi_dbm(self.read(PKT_RSSI), snr, self.settings.frequency_mhz), snr)
        self.heard.append(signal)
        self.write(FIFO_ADDR_PTR, start)
        packet = bytes(self.spi.xfer2([FIFO] + [0] * n)[1:])
        log.info("lora_heard", radio=self.name, bytes=n, rssi_dbm=signal.rssi_dbm, snr_db=signal.snr_db)
        return packet, signal

    def _sleep(self) -> None:
        self.write(OP_MODE, LONG_RANGE | SLEEP)


# What the payload's [radio], its radio factory, the ground's --lora and the bench know of this chip.
PROFILE = register_chip(ChipProfile(
    name="sx127x", label="SX127x", driver=Sx127xRadio,
    parts="SX1276/77/78: RFM95W/96W/98W, Uputronics and PITS boards",
    tx_power_dbm=(-1, 20), power_help="2..17 or 20 through PA_BOOST (-1..14 with --no-pa-boost)",
    check_power=lambda tx_power_dbm, options: pa_registers(tx_power_dbm, options["pa_boost"]),
    options=(
        ChipOption("dio0_pin", "GPIO wired to DIO0 (RxDone, TxDone); unset: the IRQ flags are polled"),
        ChipOption("pa_boost", "transmit through PA_BOOST (default: yes, the only pin an RFM9xW wires to its antenna)",
                   kind=SWITCH, default=True),
    ),
    irq_pin="dio0_pin",
))
