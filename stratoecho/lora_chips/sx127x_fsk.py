"""Horus 4FSK from an SX127x: the carrier stepped through RegFrf, one step a symbol (RadioLib's way).

The SX1276/77/78 has no 4FSK modem, but its synthesiser moves when RegFrfLsb is written
(datasheet 4.1.4: a new frequency takes effect on the LSB write), so a driver can key any
number of tones by writing RegFrf once a symbol while the chip transmits an unmodulated
carrier: FSK mode (chosen in sleep), continuous data mode (RegPacketConfig2 bit 6 clear, as
RadioLib's transmitDirect sets it, read-modify-write) and RegFdev 0, so an unwired DIO2 moves
nothing. Tone ``k`` is the base carrier plus ``k * spacing_steps`` synthesiser steps of
61.035 Hz: 4 steps (244 Hz) stand in for Horus' 270 Hz, which the demodulator finds by itself.

The symbol clock is the payload's clock, kept against the start of the burst (each symbol ends
at ``t0 + (k + 1) / baud``), so waits that run late do not add up. Afterwards the chip goes to
sleep, back to LoRa mode, and is configured again with its LoRa settings: the LoRa link goes on
as before.
"""

from __future__ import annotations

import threading

import structlog

from .chip import RadioError, SpiChip

# The registers and modes this needs (datasheet rev. 7, 6.2 and 6.4), as sx127x.py has them: that
# module calls this one (`Sx127xRadio.send_tones`), so this one does not import it.
OP_MODE, FRF_MSB = 0x01, 0x06
LONG_RANGE, SLEEP, STANDBY, TX = 0x80, 0x00, 0x01, 0x03
FSTEP_HZ = 32_000_000 / 2**19  # 61.035 Hz per step of RegFrf

log = structlog.get_logger(__name__)

FDEV_MSB, FDEV_LSB, PACKET_CONFIG2 = 0x04, 0x05, 0x31  # FSK page
DATA_MODE_PACKET = 0x40  # RegPacketConfig2 bit 6: clear for continuous mode
HORUS_BAUD = 100.0
HORUS_SPACING_STEPS = 4  # 244.1 Hz, the nearest the synthesiser comes to Horus' 270 Hz


def frf(frequency_mhz: float) -> int:
    return round(frequency_mhz * 1e6 / FSTEP_HZ)


def tone_hz(base_mhz: float, tone: int, spacing_steps: int = HORUS_SPACING_STEPS) -> float:
    """The RF frequency of `tone` as the chip makes it (whole synthesiser steps)."""
    return (frf(base_mhz) + tone * spacing_steps) * FSTEP_HZ


def key_tones(radio: SpiChip, tones: list[int], *, base_mhz: float, baud: float = HORUS_BAUD,
              spacing_steps: int = HORUS_SPACING_STEPS) -> float:
    """Send `tones` (0-3) as 4FSK at `baud` from `base_mhz` up on `radio` (an `Sx127xRadio`: its
    `write`, `read`, `configure`); returns the seconds keyed."""
    if not tones:
        return 0.0
    base = frf(base_mhz)
    clock, never = radio.clock, threading.Event()
    try:
        with radio._lock:
            radio.write(OP_MODE, LONG_RANGE | SLEEP)
            radio.write(OP_MODE, SLEEP)  # LongRangeMode changes in sleep only
            if radio.read(OP_MODE) & LONG_RANGE:
                raise RadioError(f"{radio.name}: the chip did not leave LoRa mode for FSK")
            radio.write(FDEV_MSB, 0)
            radio.write(FDEV_LSB, 0)
            radio.write(PACKET_CONFIG2, radio.read(PACKET_CONFIG2) & ~DATA_MODE_PACKET)
            _set_frf(radio, base + tones[0] * spacing_steps)
            radio.write(OP_MODE, STANDBY)
            radio.write(OP_MODE, TX)
            t0 = clock.elapsed_s()
            for k, tone in enumerate(tones):
                if k:
                    _set_frf(radio, base + tone * spacing_steps)
                clock.wait(t0 + (k + 1) / baud - clock.elapsed_s(), never)
            keyed = clock.elapsed_s() - t0
            radio.write(OP_MODE, SLEEP)
            radio.write(OP_MODE, LONG_RANGE | SLEEP)
    finally:
        radio.configure(radio.settings)  # LoRa again, whatever happened
    log.info("fsk_keyed", radio=radio.name, symbols=len(tones), seconds=round(keyed, 2), mhz=base_mhz)
    return keyed


def _set_frf(radio: SpiChip, value: int) -> None:
    radio.spi.xfer2([FRF_MSB | 0x80, value >> 16 & 0xFF, value >> 8 & 0xFF, value & 0xFF])  # LSB last
