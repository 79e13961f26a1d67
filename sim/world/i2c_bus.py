"""A fake I2C bus with simulated BME280 and INA219 chips, at the level the bus speaks.

``FakeI2cBus`` has the methods of ``smbus2.SMBus`` the drivers use and routes each
transfer to the device at that address, which answers from its register map:

* byte-data and block reads start at a register and auto-increment (BME280);
* word transfers move two bytes, the first byte as the low byte of the returned
  word, exactly as SMBus does; the INA219 sends its 16-bit registers MSB first, so the
  driver sees them byte-swapped and must swap back;
* an address with no device, or an unplugged one, raises
  ``OSError(errno.EREMOTEIO, 'Remote I/O error')`` as smbus2's ioctl does on a NACK.

``Bme280Device`` produces raw ADC values by inverting the datasheet's floating-point
compensation formulas (section 8.1) for the requested physical values, so the driver's
integer formulas are checked against an independent model; ``set_raw()`` stores raw
values directly (for the datasheet's worked example). Faults: ``stick()`` freezes the
measurement registers, ``set_impossible()`` makes the chip deliver values no atmosphere
or supply can give.
"""

from __future__ import annotations

import errno
import os
import random
from typing import Protocol

I2C_SMBUS_BLOCK_MAX = 32


def _nack() -> OSError:
    return OSError(errno.EREMOTEIO, os.strerror(errno.EREMOTEIO))


class I2cDevice(Protocol):
    def read_bytes(self, register: int, length: int) -> bytes: ...
    def write_bytes(self, register: int, data: bytes) -> None: ...


class FakeI2cBus:
    """Duck-typed ``smbus2.SMBus`` over simulated devices."""

    def __init__(self, devices: dict[int, I2cDevice] | None = None):
        self.devices: dict[int, I2cDevice] = dict(devices or {})
        self._unplugged: set[int] = set()
        self.transfers = 0
        self._wedged = None  # a callable that blocks the caller until the bus is released

    def wedge(self, block) -> None:
        """Every transfer from now on blocks its caller in `block()` until `release()`: a bus
        whose transfer never completes, and the thread that asked stuck in the driver."""
        self._wedged = block

    def release(self) -> None:
        self._wedged = None

    def attach(self, address: int, device: I2cDevice) -> I2cDevice:
        self.devices[address] = device
        return device

    def unplug(self, address: int) -> None:
        """The device stops acknowledging its address (a loose wire, a dead chip)."""
        self._unplugged.add(address)

    def replug(self, address: int, *, power_cycled: bool = True) -> None:
        self._unplugged.discard(address)
        dev = self.devices.get(address)
        if power_cycled and hasattr(dev, "power_on_reset"):
            dev.power_on_reset()

    def _device(self, address: int) -> I2cDevice:
        self.transfers += 1
        if (block := self._wedged) is not None:
            block()
        if address in self._unplugged or address not in self.devices:
            raise _nack()
        return self.devices[address]

    # smbus2.SMBus methods (force is accepted and ignored, as a fake needs no ioctl)
    def read_byte_data(self, i2c_addr: int, register: int, force=None) -> int:
        return self._device(i2c_addr).read_bytes(register, 1)[0]

    def write_byte_data(self, i2c_addr: int, register: int, value: int, force=None) -> None:
        self._device(i2c_addr).write_bytes(register, bytes([value & 0xFF]))

    def read_word_data(self, i2c_addr: int, register: int, force=None) -> int:
        first, second = self._device(i2c_addr).read_bytes(register, 2)
        return first | (second << 8)  # SMBus words are little-endian on the wire

    def write_word_data(self, i2c_addr: int, register: int, value: int, force=None) -> None:
        self._device(i2c_addr).write_bytes(register, bytes([value & 0xFF, (value >> 8) & 0xFF]))

    def read_i2c_block_data(self, i2c_addr: int, register: int, length: int, force=None) -> list[int]:
        if length > I2C_SMBUS_BLOCK_MAX:
            raise ValueError(f"Desired block length over {I2C_SMBUS_BLOCK_MAX} bytes")
        return list(self._device(i2c_addr).read_bytes(register, length))

    def close(self) -> None:
        """As SMBus.close; a fake bus holds no file to release."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --- BME280 -------------------------------------------------------------------------

# BMP280 datasheet (BST-BMP280-DS001) section 3.12 worked example trimming values;
# the humidity words are typical of real BME280 parts.
DATASHEET_CALIBRATION = dict(
    T1=27504, T2=26435, T3=-1000,
    P1=36477, P2=-10685, P3=3024, P4=2855, P5=140, P6=-7, P7=15500, P8=-14600, P9=6000,
    H1=75, H2=362, H3=0, H4=313, H5=50, H6=30,
)  # fmt: skip


def calibration_bytes(cal: dict) -> tuple[bytes, bytes]:
    """Encode trimming words into the 0x88..0xA1 and 0xE1..0xE7 register images."""
    le = lambda v: (v & 0xFFFF).to_bytes(2, "little")  # noqa: E731
    b88 = b"".join(le(cal[k]) for k in ("T1", "T2", "T3", "P1", "P2", "P3", "P4", "P5", "P6", "P7", "P8", "P9"))
    b88 += bytes([0x00, cal["H1"] & 0xFF])  # 0xA0 reserved, 0xA1 dig_H1
    h4, h5 = cal["H4"] & 0xFFF, cal["H5"] & 0xFFF
    be1 = le(cal["H2"]) + bytes([cal["H3"] & 0xFF, h4 >> 4, ((h5 & 0xF) << 4) | (h4 & 0xF), h5 >> 4, cal["H6"] & 0xFF])
    return b88, be1


def _float_t(adc_t: float, c: dict) -> tuple[float, float]:
    """Datasheet 8.1 compensate_T_double: (degC, t_fine)."""
    var1 = (adc_t / 16384.0 - c["T1"] / 1024.0) * c["T2"]
    var2 = (adc_t / 131072.0 - c["T1"] / 8192.0) ** 2 * c["T3"]
    return (var1 + var2) / 5120.0, var1 + var2


def _float_p(adc_p: float, t_fine: float, c: dict) -> float:
    """Datasheet 8.1 compensate_P_double: Pa."""
    var1 = t_fine / 2.0 - 64000.0
    var2 = var1 * var1 * c["P6"] / 32768.0
    var2 = var2 + var1 * c["P5"] * 2.0
    var2 = var2 / 4.0 + c["P4"] * 65536.0
    var1 = (c["P3"] * var1 * var1 / 524288.0 + c["P2"] * var1) / 524288.0
    var1 = (1.0 + var1 / 32768.0) * c["P1"]
    p = 1048576.0 - adc_p
    p = (p - var2 / 4096.0) * 6250.0 / var1
    var1 = c["P9"] * p * p / 2147483648.0
    var2 = p * c["P8"] / 32768.0
    return p + (var1 + var2 + c["P7"]) / 16.0


def _float_h(adc_h: float, t_fine: float, c: dict) -> float:
    """Datasheet 8.1 compensate_H_double: %RH (unclamped)."""
    h = t_fine - 76800.0
    h = (adc_h - (c["H4"] * 64.0 + c["H5"] / 16384.0 * h)) * (
        c["H2"] / 65536.0 * (1.0 + c["H6"] / 67108864.0 * h * (1.0 + c["H3"] / 67108864.0 * h))
    )
    return h * (1.0 - c["H1"] * h / 524288.0)


def _invert(f, target: float, lo: int, hi: int) -> int:
    """Integer x in [lo, hi] whose f(x) is nearest target; f monotonic."""
    increasing = f(hi) > f(lo)
    a, b = lo, hi
    while b - a > 1:
        m = (a + b) // 2
        if (f(m) < target) == increasing:
            a = m
        else:
            b = m
    return min((a, b), key=lambda x: abs(f(x) - target))


class ChipFaults:
    """The faults a simulated sensor takes (`stuck`, `impossible`), each chip reading them its way:
    the BME280's pressure ADC reads zero (about 1600 hPa, beyond any atmosphere), the INA219's bus
    ADC 30 V (beyond its 26 V maximum)."""

    stuck = False  # conversions stop updating the data registers: the last values stay
    impossible = False  # the chip delivers what no atmosphere or supply can give

    def stick(self) -> None:
        self.stuck = True

    def unstick(self) -> None:
        self.stuck = False

    def set_impossible(self, on: bool = True) -> None:
        self.impossible = on


class Bme280Device(ChipFaults):
    """Register-level BME280: id 0x60, soft reset, ctrl/status, forced conversions."""

    def __init__(
        self,
        temperature_c: float = 20.0,
        pressure_hpa: float = 1013.25,
        humidity_pct: float = 50.0,
        calibration: dict | None = None,
        *,
        noise_lsb: int = 2,
        seed: int = 1,
    ):
        self.calibration = dict(calibration or DATASHEET_CALIBRATION)
        self.noise_lsb = noise_lsb
        self._rng = random.Random(seed)
        self._raw: tuple[int, int, int] | None = None  # (adc_T, adc_P, adc_H) if set directly
        self.temperature_c, self.pressure_hpa, self.humidity_pct = temperature_c, pressure_hpa, humidity_pct
        self.conversions = 0
        self.resets = 0
        self.power_on_reset()

    # physical world
    def set(self, temperature_c=None, pressure_hpa=None, humidity_pct=None) -> None:
        self._raw = None
        if temperature_c is not None:
            self.temperature_c = temperature_c
        if pressure_hpa is not None:
            self.pressure_hpa = pressure_hpa
        if humidity_pct is not None:
            self.humidity_pct = humidity_pct

    def set_raw(self, adc_t: int, adc_p: int, adc_h: int = 0x8000 - 1) -> None:
        """Deliver these raw ADC values from the next conversion on."""
        self._raw = (adc_t, adc_p, adc_h)

    def raw_for(self, temperature_c: float, pressure_hpa: float, humidity_pct: float) -> tuple[int, int, int]:
        c = self.calibration
        adc_t = _invert(lambda x: _float_t(x, c)[0], temperature_c, 0, 0xFFFFF)
        t_fine = _float_t(adc_t, c)[1]
        adc_p = _invert(lambda x: _float_p(x, t_fine, c), pressure_hpa * 100.0, 0, 0xFFFFF)
        adc_h = _invert(lambda x: _float_h(x, t_fine, c), humidity_pct, 0, 0xFFFF)
        return adc_t, adc_p, adc_h

    # chip behaviour
    def power_on_reset(self) -> None:
        self.regs = bytearray(256)
        self.regs[0xD0] = 0x60
        b88, be1 = calibration_bytes(self.calibration)
        self.regs[0x88 : 0x88 + 26] = b88
        self.regs[0xE1 : 0xE1 + 7] = be1
        self.regs[0xF7:0xFF] = bytes([0x80, 0x00, 0x00, 0x80, 0x00, 0x00, 0x80, 0x00])  # reset values
        self._status_reads_busy = 1  # im_update set while NVM is copied
        self.resets += 1

    def _convert(self) -> None:
        self.conversions += 1
        self._status_reads_busy = 1  # "measuring" seen once by a polling driver
        if self.stuck:
            return
        ctrl_meas, ctrl_hum = self.regs[0xF4], self.regs[0xF2]
        adc_t, adc_p, adc_h = self._raw or self.raw_for(self.temperature_c, self.pressure_hpa, self.humidity_pct)
        if self.noise_lsb:
            n = lambda: self._rng.randint(-self.noise_lsb, self.noise_lsb)  # noqa: E731
            adc_t, adc_p, adc_h = adc_t + n(), adc_p + n(), adc_h + n()
        if self.impossible:
            adc_p = 0
        # a measurement whose oversampling is "skipped" (0) keeps the reset value
        if not (ctrl_meas >> 5):
            adc_t = 0x80000
        if not ((ctrl_meas >> 2) & 0x7):
            adc_p = 0x80000
        if not (ctrl_hum & 0x7):
            adc_h = 0x8000
        self.regs[0xF7:0xFA] = bytes([(adc_p >> 12) & 0xFF, (adc_p >> 4) & 0xFF, (adc_p & 0xF) << 4])
        self.regs[0xFA:0xFD] = bytes([(adc_t >> 12) & 0xFF, (adc_t >> 4) & 0xFF, (adc_t & 0xF) << 4])
        self.regs[0xFD:0xFF] = bytes([(adc_h >> 8) & 0xFF, adc_h & 0xFF])

    def read_bytes(self, register: int, length: int) -> bytes:
        out = bytearray()
        for r in range(register, register + length):
            r &= 0xFF
            if r == 0xF3:
                busy = self._status_reads_busy > 0
                self._status_reads_busy = max(0, self._status_reads_busy - 1)
                out.append(0x09 if busy else 0x00)
            else:
                out.append(self.regs[r])
        return bytes(out)

    def write_bytes(self, register: int, data: bytes) -> None:
        for r, value in enumerate(data, start=register):
            r &= 0xFF
            if r == 0xE0:
                if value == 0xB6:
                    self.power_on_reset()
            elif r in (0xF2, 0xF5):
                self.regs[r] = value
            elif r == 0xF4:
                self.regs[r] = value
                if value & 0x3 in (0b01, 0b10):  # forced: one conversion, then sleep
                    self._convert()
                    self.regs[r] = value & ~0x3
            # other registers are read-only; writes are ignored as on the chip


# --- INA219 -------------------------------------------------------------------------


class Ina219Device(ChipFaults):
    """Register-level INA219: 16-bit registers sent MSB first, calibration-driven
    current and power registers, CNVR/OVF flags in the bus-voltage register."""

    def __init__(self, bus_v: float = 5.0, shunt_mv: float = 0.0, *, noise_lsb: int = 2, seed: int = 1):
        self.bus_v, self.shunt_mv = bus_v, shunt_mv
        self.noise_lsb = noise_lsb
        self._rng = random.Random(seed)
        self.power_on_reset()

    def set(self, bus_v=None, shunt_mv=None) -> None:
        if bus_v is not None:
            self.bus_v = bus_v
        if shunt_mv is not None:
            self.shunt_mv = shunt_mv

    def power_on_reset(self) -> None:
        self.regs = {0x00: 0x399F, 0x01: 0, 0x02: 0, 0x03: 0, 0x04: 0, 0x05: 0}
        if not self.stuck:
            self._frozen: dict[int, int] | None = None  # a dead ADC stays dead through a soft reset

    def _convert(self) -> None:
        """Fill the measurement registers as a completed conversion would."""
        bus_v = 30.0 if self.impossible else self.bus_v
        n = self._rng.randint(-self.noise_lsb, self.noise_lsb) if self.noise_lsb else 0
        shunt = max(-32000, min(32000, round(self.shunt_mv * 100) + n))  # 10 uV LSB, /8 range
        bus = max(0, min(8191, round(bus_v / 0.004)))
        cal = self.regs[0x05]
        current = int(shunt * cal / 4096)  # the chip truncates
        power = abs(current * bus) // 5000
        ovf = abs(current) > 0x7FFF or power > 0xFFFF or abs(self.shunt_mv) > 320
        self.regs[0x01] = shunt & 0xFFFF
        self.regs[0x02] = (bus << 3) | 0x2 | int(ovf)  # CNVR set
        self.regs[0x04] = max(-32768, min(32767, current)) & 0xFFFF
        self.regs[0x03] = min(power, 0xFFFF)

    def read_bytes(self, register: int, length: int) -> bytes:
        measuring = register in (0x01, 0x02, 0x03, 0x04)
        if measuring and self.stuck:
            # the ADC has stopped: measurement registers hold their last values
            if self._frozen is None:
                self._convert()
                self._frozen = {r: self.regs[r] for r in (0x01, 0x02, 0x03, 0x04)}
            value = self._frozen[register]
        else:
            if not self.stuck:
                self._frozen = None
            if measuring:
                self._convert()
            value = self.regs.get(register, 0)
            if register == 0x03:
                self.regs[0x02] &= ~0x2  # reading power clears CNVR
        word = value.to_bytes(2, "big")
        return (word * ((length + 1) // 2))[:length]

    def write_bytes(self, register: int, data: bytes) -> None:
        if len(data) != 2:
            return  # the INA219 only takes 16-bit register writes
        value = int.from_bytes(data, "big")
        if register == 0x00:
            if value & 0x8000:
                self.power_on_reset()
            else:
                self.regs[0x00] = value
        elif register == 0x05:
            self.regs[0x05] = value & 0xFFFE  # bit 0 is read-only zero
