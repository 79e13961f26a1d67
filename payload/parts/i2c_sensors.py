"""BME280 and INA219 drivers over an smbus2-like bus, and the sensors they are registered as
(``bme280``, ``bme280_box``, ``ina219``: payload/parts/device_profiles.py).

The port is the bus: anything with smbus2's ``SMBus`` methods used here
(``read_byte_data``, ``write_byte_data``, ``read_i2c_block_data``, ``read_word_data``,
``write_word_data``). On the Pi that is ``smbus2.SMBus(1)``; on the bench it is
``sim.world.i2c_bus.FakeI2cBus``, which answers from the chips' register maps, so the byte
handling below runs in every test.

Faults never raise out of ``read()``. Every reading carries a ``status``:

    ok          values valid
    i2c_error   the bus failed (NACK, EREMOTEIO, timeout) while talking to a known chip
    absent      the chip did not answer at initialisation or gave the wrong identity
    stuck       raw values identical for ``stuck_after`` consecutive reads
    impossible  values outside the physical ranges below (or the chip flagged overflow)

and the driver's running error counters. After any fault the chip is re-initialised
(BME280 soft reset / INA219 reset + calibration), no earlier than the back-off policy
allows; in between, ``read()`` returns at once without touching the bus, so the rest of
the payload keeps running. Time comes from an injected monotonic clock (tests advance
it; nothing here sleeps except the BME280's short forced-conversion poll).

Sources: Bosch BME280 datasheet BST-BME280-DS002 (sections 4.2.2 "Trimming parameter
readout" table 16, 4.2.3 "Compensation formulas" rev. 1.1 integer versions, 5.3 memory
map); TI INA219 datasheet SBOS448 (8.6 register maps, 8.5 "Programming": calibration
equations 1-4).
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

from pydantic import Field

from stratoecho.backoff import Backoff  # the drivers' shared policy

from .device_profiles import DeviceProfile, I2cDeviceSection, register_device


class SMBusLike(Protocol):
    """The subset of ``smbus2.SMBus`` the drivers use."""

    def read_byte_data(self, i2c_addr: int, register: int) -> int: ...
    def write_byte_data(self, i2c_addr: int, register: int, value: int) -> None: ...
    def read_i2c_block_data(self, i2c_addr: int, register: int, length: int) -> list[int]: ...
    def read_word_data(self, i2c_addr: int, register: int) -> int: ...
    def write_word_data(self, i2c_addr: int, register: int, value: int) -> None: ...


STATUSES = ("ok", "i2c_error", "absent", "stuck", "impossible")


@dataclass
class ErrorCounters:
    reads: int = 0
    i2c_errors: int = 0
    absent: int = 0
    stuck: int = 0
    impossible: int = 0
    reinits: int = 0  # successful (re-)initialisations, the first included
    skipped: int = 0  # reads answered during back-off without touching the bus


class FaultTracker:
    """Shared status bookkeeping: counters, consecutive faults, back-off, stuck check (a maker's
    driver uses it as these do: `ready` before measuring, `fault`, `is_stuck`, `ok`)."""

    def __init__(self, backoff: Backoff, clock: Callable[[], float], stuck_after: int | None):
        self.backoff = backoff
        self.clock = clock
        self.stuck_after = stuck_after
        self.counters = ErrorCounters()
        self.initialised = False
        self.consecutive_faults = 0
        self.next_attempt_at = float("-inf")
        self.last_fault = "absent"
        self._last_raw: tuple | None = None
        self._same_raw = 0
        self._stuck_raw: tuple | None = None  # the value it was stuck at, across a re-initialisation

    def may_attempt(self) -> bool:
        return self.initialised or self.clock() >= self.next_attempt_at

    def fault(self, status: str) -> None:
        """Record a fault; the chip must be re-initialised, after the back-off."""
        counter = {"i2c_error": "i2c_errors"}.get(status, status)
        setattr(self.counters, counter, getattr(self.counters, counter) + 1)
        self.last_fault = status
        self.initialised = False
        self.consecutive_faults += 1
        self.next_attempt_at = self.clock() + self.backoff.delay_s(self.consecutive_faults)
        if status == "stuck":
            self._stuck_raw = self._last_raw
        self._last_raw, self._same_raw = None, 0

    def is_stuck(self, raw: tuple) -> bool:
        # A chip still showing the value it was stuck at after a reset is still stuck: without
        # this, every re-initialisation would report "ok" until the count filled again.
        if self._stuck_raw is not None:
            if raw == self._stuck_raw:
                self._last_raw = raw
                return True
            self._stuck_raw = None
        if raw == self._last_raw:
            self._same_raw += 1
        else:
            self._last_raw, self._same_raw = raw, 1
        return self.stuck_after is not None and self._same_raw >= self.stuck_after

    def ok(self) -> None:
        self.consecutive_faults = 0

    def ready(self, init: Callable[[], None], init_errors: tuple) -> tuple[str, str] | None:
        """Count a read and make sure the chip is set up: None when it may be measured, else
        (status, error) for the reading — waiting out a back-off, or a failed set-up."""
        self.counters.reads += 1
        if not self.may_attempt():
            self.counters.skipped += 1
            return self.last_fault, "waiting for back-off"
        if not self.initialised:
            try:
                init()
            except init_errors as exc:
                self.fault("absent")
                return "absent", str(exc)
            self.initialised = True
            self.counters.reinits += 1
        return None


# --- BME280 -------------------------------------------------------------------------

BME280_CHIP_ID = 0x60
BME280_REG_CALIB_00 = 0x88  # 0x88..0xA1: 26 bytes, dig_T1..dig_P9, 0xA0 unused, 0xA1 dig_H1
BME280_REG_ID = 0xD0
BME280_REG_RESET = 0xE0
BME280_RESET_WORD = 0xB6
BME280_REG_CALIB_26 = 0xE1  # 0xE1..0xE7: dig_H2..dig_H6
BME280_REG_CTRL_HUM = 0xF2
BME280_REG_STATUS = 0xF3  # bit 3 measuring, bit 0 im_update
BME280_REG_CTRL_MEAS = 0xF4  # osrs_t[7:5] osrs_p[4:2] mode[1:0]
BME280_REG_CONFIG = 0xF5
BME280_REG_DATA = 0xF7  # press_msb..hum_lsb, 8 bytes
BME280_MODE_FORCED = 0b01
BME280_SKIPPED_20BIT = 0x80000  # value of a skipped / never-run T or P conversion
BME280_SKIPPED_16BIT = 0x8000

OVERSAMPLING = {0: 0b000, 1: 0b001, 2: 0b010, 4: 0b011, 8: 0b100, 16: 0b101}


def _s12(v: int) -> int:
    return v - 0x1000 if v & 0x800 else v


@dataclass(frozen=True)
class Bme280Calibration:
    """Trimming parameters (datasheet table 16)."""

    T1: int
    T2: int
    T3: int
    P1: int
    P2: int
    P3: int
    P4: int
    P5: int
    P6: int
    P7: int
    P8: int
    P9: int
    H1: int = 0
    H2: int = 0
    H3: int = 0
    H4: int = 0
    H5: int = 0
    H6: int = 0

    @classmethod
    def from_registers(cls, calib_88: Sequence[int], calib_e1: Sequence[int]) -> "Bme280Calibration":
        """Decode 26 bytes from 0x88..0xA1 and 7 bytes from 0xE1..0xE7.

        T1 and P1 are unsigned 16-bit, T2..T3 and P2..P9 signed 16-bit (LSB first);
        H1 (0xA1) and H3 (0xE3) unsigned 8-bit, H2 (0xE1/0xE2) signed 16-bit, H6 (0xE7)
        signed 8-bit. H4 and H5 are signed 12-bit and share 0xE5:
        H4 = 0xE4[7:0] -> bits 11:4, 0xE5[3:0] -> bits 3:0;
        H5 = 0xE5[7:4] -> bits 3:0, 0xE6[7:0] -> bits 11:4.
        """
        if len(calib_88) != 26 or len(calib_e1) != 7:
            raise ValueError(f"calibration blocks must be 26 and 7 bytes, got {len(calib_88)} and {len(calib_e1)}")
        c, h = bytes(calib_88), bytes(calib_e1)
        t_and_p = struct.unpack_from("<HhhHhhhhhhhh", c)  # T1 T2 T3, P1 .. P9
        return cls(*t_and_p, H1=c[25], H2=struct.unpack_from("<h", h)[0], H3=h[2],
                   H4=_s12((h[3] << 4) | (h[4] & 0x0F)), H5=_s12((h[5] << 4) | (h[4] >> 4)),
                   H6=struct.unpack_from("<b", h, 6)[0])


def _cdiv(a: int, b: int) -> int:
    """C integer division (truncates toward zero), as the datasheet's code assumes."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def bme280_compensate_t(adc_t: int, cal: Bme280Calibration) -> tuple[int, int]:
    """Datasheet 4.2.3 BME280_compensate_T_int32: (temperature in 0.01 degC, t_fine)."""
    var1 = (((adc_t >> 3) - (cal.T1 << 1)) * cal.T2) >> 11
    d = (adc_t >> 4) - cal.T1
    var2 = (((d * d) >> 12) * cal.T3) >> 14
    t_fine = var1 + var2
    return (t_fine * 5 + 128) >> 8, t_fine


def bme280_compensate_p(adc_p: int, t_fine: int, cal: Bme280Calibration) -> int:
    """Datasheet 4.2.3 BME280_compensate_P_int64: pressure in Pa, Q24.8 (divide by 256)."""
    var1 = t_fine - 128000
    var2 = var1 * var1 * cal.P6
    var2 += (var1 * cal.P5) << 17
    var2 += cal.P4 << 35
    var1 = ((var1 * var1 * cal.P3) >> 8) + ((var1 * cal.P2) << 12)
    var1 = (((1 << 47) + var1) * cal.P1) >> 33
    if var1 == 0:
        return 0  # the datasheet's guard against division by zero
    p = 1048576 - adc_p
    p = _cdiv(((p << 31) - var2) * 3125, var1)
    var1 = (cal.P9 * (p >> 13) * (p >> 13)) >> 25
    var2 = (cal.P8 * p) >> 19
    return ((p + var1 + var2) >> 8) + (cal.P7 << 4)


def bme280_compensate_h(adc_h: int, t_fine: int, cal: Bme280Calibration) -> int:
    """Datasheet 4.2.3 bme280_compensate_H_int32: relative humidity in %, Q22.10 (/1024)."""
    x = t_fine - 76800
    offset = (((adc_h << 14) - (cal.H4 << 20) - (cal.H5 * x)) + 16384) >> 15
    gain = (((((x * cal.H6) >> 10) * (((x * cal.H3) >> 11) + 32768)) >> 10) + 2097152) * cal.H2
    v = offset * ((gain + 8192) >> 14)
    v -= ((((v >> 15) * (v >> 15)) >> 7) * cal.H1) >> 4
    v = min(max(v, 0), 419430400)
    return v >> 12


@dataclass(frozen=True)
class Bme280Reading:
    status: str
    temperature_c: float | None
    pressure_hpa: float | None
    humidity_pct: float | None
    raw: tuple[int, int, int] | None  # (adc_T, adc_P, adc_H)
    counters: ErrorCounters
    error: str = ""


class Bme280:
    """Bosch BME280 in forced mode: one conversion per ``read()``.

    Physical ranges (outside -> "impossible"): temperature -90..+85 degC (85 is the
    chip's operating limit), pressure 1..1100 hPa, humidity 0..100 %.
    """

    T_RANGE_C = (-90.0, 85.0)
    P_RANGE_HPA = (1.0, 1100.0)
    H_RANGE_PCT = (0.0, 100.0)

    def __init__(
        self,
        bus: SMBusLike,
        address: int = 0x76,
        *,
        oversampling: tuple[int, int, int] = (1, 1, 1),  # (temperature, pressure, humidity)
        backoff: Backoff = Backoff(),
        stuck_after: int | None = 5,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        max_polls: int = 50,
    ):
        self.bus = bus
        self.address = address
        self.osrs = tuple(OVERSAMPLING[o] for o in oversampling)
        self.calibration: Bme280Calibration | None = None
        self._sleep = sleep
        self._max_polls = max_polls
        self._faults = FaultTracker(backoff, clock, stuck_after)
        self._last: Bme280Reading | None = None

    @property
    def counters(self) -> ErrorCounters:
        return self._faults.counters

    def _init(self) -> None:
        """Check the id, soft-reset, read calibration. Raises on any failure."""
        chip_id = self.bus.read_byte_data(self.address, BME280_REG_ID)
        if chip_id != BME280_CHIP_ID:
            raise LookupError(f"chip id 0x{chip_id:02X} at 0x{self.address:02X}, expected 0x{BME280_CHIP_ID:02X}")
        self.bus.write_byte_data(self.address, BME280_REG_RESET, BME280_RESET_WORD)
        self._poll(0x01)  # im_update: NVM copied into the image registers
        calib_88 = self.bus.read_i2c_block_data(self.address, BME280_REG_CALIB_00, 26)
        calib_e1 = self.bus.read_i2c_block_data(self.address, BME280_REG_CALIB_26, 7)
        self.calibration = Bme280Calibration.from_registers(calib_88, calib_e1)
        # ctrl_hum takes effect only after a write to ctrl_meas (datasheet 5.4.3).
        self.bus.write_byte_data(self.address, BME280_REG_CTRL_HUM, self.osrs[2])
        self.bus.write_byte_data(self.address, BME280_REG_CONFIG, 0x00)  # filter off
        self.bus.write_byte_data(self.address, BME280_REG_CTRL_MEAS, (self.osrs[0] << 5) | (self.osrs[1] << 2))

    def _poll(self, mask: int) -> None:
        for _ in range(self._max_polls):
            if not self.bus.read_byte_data(self.address, BME280_REG_STATUS) & mask:
                return
            self._sleep(0.002)
        raise TimeoutError(f"status bit 0x{mask:02X} stayed set")

    def _measure(self) -> tuple[int, int, int]:
        ctrl = (self.osrs[0] << 5) | (self.osrs[1] << 2) | BME280_MODE_FORCED
        self.bus.write_byte_data(self.address, BME280_REG_CTRL_MEAS, ctrl)
        self._poll(0x08)  # measuring
        d = self.bus.read_i2c_block_data(self.address, BME280_REG_DATA, 8)
        adc_p = (d[0] << 12) | (d[1] << 4) | (d[2] >> 4)
        adc_t = (d[3] << 12) | (d[4] << 4) | (d[5] >> 4)
        adc_h = (d[6] << 8) | d[7]
        return adc_t, adc_p, adc_h

    def compensate(self, adc_t: int, adc_p: int, adc_h: int) -> tuple[float, float, float]:
        """Raw ADC values -> (degC, hPa, %RH) with the datasheet's integer formulas."""
        assert self.calibration is not None
        t_centi, t_fine = bme280_compensate_t(adc_t, self.calibration)
        p_q24_8 = bme280_compensate_p(adc_p, t_fine, self.calibration)
        h_q22_10 = bme280_compensate_h(adc_h, t_fine, self.calibration)
        return t_centi / 100.0, p_q24_8 / 256.0 / 100.0, h_q22_10 / 1024.0

    def _reading(self, status: str, values=(None, None, None), raw=None, error="") -> Bme280Reading:
        t, p, h = values
        return Bme280Reading(status, t, p, h, raw, ErrorCounters(**vars(self.counters)), error)

    def read(self) -> Bme280Reading:
        f = self._faults
        if (not_ready := f.ready(self._init, (OSError, LookupError, TimeoutError))) is not None:
            return self._reading(not_ready[0], error=not_ready[1])
        try:
            raw = self._measure()
        except (OSError, TimeoutError) as exc:
            f.fault("i2c_error")
            return self._reading("i2c_error", error=str(exc))
        adc_t, adc_p, adc_h = raw
        if adc_t == BME280_SKIPPED_20BIT or adc_p == BME280_SKIPPED_20BIT or adc_h == BME280_SKIPPED_16BIT:
            f.fault("impossible")
            return self._reading("impossible", raw=raw, error="conversion skipped (reset value)")
        values = self.compensate(*raw)
        t, p, h = values
        if not (
            self.T_RANGE_C[0] <= t <= self.T_RANGE_C[1]
            and self.P_RANGE_HPA[0] <= p <= self.P_RANGE_HPA[1]
            and self.H_RANGE_PCT[0] <= h <= self.H_RANGE_PCT[1]
        ):
            f.fault("impossible")
            return self._reading("impossible", values, raw, f"out of range: {t} degC {p} hPa {h} %")
        if f.is_stuck(raw):
            f.fault("stuck")
            return self._reading("stuck", values, raw, f"raw values unchanged for {f.stuck_after} reads")
        f.ok()
        return self._reading("ok", values, raw)


# --- INA219 -------------------------------------------------------------------------

INA219_REG_CONFIG = 0x00
INA219_REG_SHUNT = 0x01
INA219_REG_BUS = 0x02
INA219_REG_POWER = 0x03
INA219_REG_CURRENT = 0x04
INA219_REG_CALIBRATION = 0x05
INA219_CONFIG_RESET = 0x8000
INA219_CONFIG_DEFAULT = 0x399F  # power-on value: 32 V range, /8 gain (+-320 mV), 12-bit, continuous


def swap16(word: int) -> int:
    """SMBus word transfers are little-endian (first byte = low byte); INA219 registers
    are sent MSB first. Swap to get the register value (and back, for writes)."""
    return ((word & 0xFF) << 8) | (word >> 8)


def _signed16(v: int) -> int:
    return v - 0x10000 if v & 0x8000 else v


def ina219_calibration(shunt_ohms: float, max_amps: float) -> tuple[int, float, float]:
    """TI SBOS448 8.5.1, equations 1-3: Current_LSB = max_expected / 2**15,
    Cal = trunc(0.04096 / (Current_LSB * R_shunt)), Power_LSB = 20 * Current_LSB.

    Bit 0 of the calibration register is read-only zero, so Cal is made even; the
    returned current LSB is the one the chip then really applies (0.04096 / (Cal * R)).
    Returns (cal, current_lsb_a, power_lsb_w).
    """
    current_lsb = max_amps / 32768
    cal = int(0.04096 / (current_lsb * shunt_ohms)) & 0xFFFE
    if not 0 < cal <= 0xFFFE:
        raise ValueError(f"calibration {cal} out of range for {shunt_ohms} ohm, {max_amps} A")
    current_lsb = 0.04096 / (cal * shunt_ohms)
    return cal, current_lsb, 20 * current_lsb


@dataclass(frozen=True)
class Ina219Reading:
    status: str
    bus_v: float | None
    shunt_mv: float | None
    current_a: float | None
    power_w: float | None
    conversion_ready: bool | None
    overflow: bool | None
    raw: tuple[int, int, int, int] | None  # register values: (shunt, bus, current, power)
    counters: ErrorCounters
    error: str = ""


class Ina219:
    """TI INA219 in continuous shunt+bus mode at the power-on configuration.

    Physical ranges (outside -> "impossible"): bus voltage 0..26 V (the chip's maximum),
    shunt voltage within +-320 mV (the /8 range), and the math-overflow flag clear.
    No identity register exists; presence is checked by reading back the power-on
    configuration after a reset, and the calibration after writing it.
    """

    BUS_MAX_V = 26.0
    SHUNT_MAX_MV = 320.0

    def __init__(
        self,
        bus: SMBusLike,
        address: int = 0x40,
        *,
        shunt_ohms: float = 0.1,
        max_amps: float = 3.2,
        backoff: Backoff = Backoff(),
        stuck_after: int | None = 20,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.bus = bus
        self.address = address
        self.shunt_ohms = shunt_ohms
        self.cal, self.current_lsb_a, self.power_lsb_w = ina219_calibration(shunt_ohms, max_amps)
        self._faults = FaultTracker(backoff, clock, stuck_after)

    @property
    def counters(self) -> ErrorCounters:
        return self._faults.counters

    def _read_reg(self, reg: int) -> int:
        return swap16(self.bus.read_word_data(self.address, reg))

    def _write_reg(self, reg: int, value: int) -> None:
        self.bus.write_word_data(self.address, reg, swap16(value))

    def _init(self) -> None:
        self._write_reg(INA219_REG_CONFIG, INA219_CONFIG_RESET)
        config = self._read_reg(INA219_REG_CONFIG)
        if config != INA219_CONFIG_DEFAULT:
            raise LookupError(f"config 0x{config:04X} after reset at 0x{self.address:02X}, expected "
                              f"0x{INA219_CONFIG_DEFAULT:04X}")
        self._write_reg(INA219_REG_CALIBRATION, self.cal)
        back = self._read_reg(INA219_REG_CALIBRATION)
        if back != self.cal:
            raise LookupError(f"calibration read back 0x{back:04X}, wrote 0x{self.cal:04X}")

    def _reading(self, status, values=(None,) * 6, raw=None, error="") -> Ina219Reading:
        return Ina219Reading(status, *values, raw, ErrorCounters(**vars(self.counters)), error)

    def read(self) -> Ina219Reading:
        f = self._faults
        if (not_ready := f.ready(self._init, (OSError, LookupError))) is not None:
            return self._reading(not_ready[0], error=not_ready[1])
        try:
            shunt = self._read_reg(INA219_REG_SHUNT)
            bus = self._read_reg(INA219_REG_BUS)
            current = self._read_reg(INA219_REG_CURRENT)
            power = self._read_reg(INA219_REG_POWER)  # read last: clears CNVR
        except OSError as exc:
            f.fault("i2c_error")
            return self._reading("i2c_error", error=str(exc))
        raw = (shunt, bus, current, power)
        shunt_mv = _signed16(shunt) * 0.01  # 10 uV LSB
        bus_v = (bus >> 3) * 0.004  # bits 15..3, 4 mV LSB
        cnvr, ovf = bool(bus & 0x2), bool(bus & 0x1)
        current_a = _signed16(current) * self.current_lsb_a
        power_w = power * self.power_lsb_w
        values = (bus_v, shunt_mv, current_a, power_w, cnvr, ovf)
        if ovf or bus_v > self.BUS_MAX_V or abs(shunt_mv) > self.SHUNT_MAX_MV:
            f.fault("impossible")
            return self._reading("impossible", values, raw, f"overflow={ovf} bus={bus_v} V shunt={shunt_mv} mV")
        if f.is_stuck(raw):
            f.fault("stuck")
            return self._reading("stuck", values, raw, f"raw values unchanged for {f.stuck_after} reads")
        f.ok()
        return self._reading("ok", values, raw)


# --- the sensors this module registers (payload/parts/device_profiles.py) ----------


class Ina219DeviceSection(I2cDeviceSection):
    address: int = Field(0x40, ge=0x40, le=0x4F)
    shunt_ohms: float = Field(0.1, gt=0, description="the shunt resistor on the board")
    max_amps: float = Field(3.2, gt=0, description="largest current expected: sets the current resolution")


def _open_bme280(table: I2cDeviceSection, bus: SMBusLike, clock: Callable[[], float]) -> Bme280:
    return Bme280(bus, table.address, clock=clock)


def _open_ina219(table: Ina219DeviceSection, bus: SMBusLike, clock: Callable[[], float]) -> Ina219:
    return Ina219(bus, table.address, shunt_ohms=table.shunt_ohms, max_amps=table.max_amps, clock=clock)


# In this order the configuration lists them, the payload reads them and the bench seeds their simulators.
register_device(DeviceProfile(
    name="bme280", section=I2cDeviceSection, default={"address": 0x76},
    open=_open_bme280, values=lambda r: {"temp_c": r.temperature_c, "pressure_hpa": r.pressure_hpa},
    gives=("temp_c", "pressure_hpa"), kept=("temp_c", "pressure_hpa")))
# A second BME280 (SDO high: 0x77) taped to the battery inside the box: the heater and the power modes act on
# the battery's temperature, not the outside air's; never a stale one (nothing kept).
register_device(DeviceProfile(
    name="bme280_box", section=I2cDeviceSection, default={"address": 0x77},
    open=_open_bme280, values=lambda r: {"box_temp_c": r.temperature_c}, gives=("box_temp_c",)))
# The battery's volts stand in while it does not answer (the telemetry's); its current does not.
register_device(DeviceProfile(
    name="ina219", section=Ina219DeviceSection, default={},
    open=_open_ina219, values=lambda p: {"batt_mv": int(round(p.bus_v * 1000)), "batt_ma": p.current_a * 1000.0},
    gives=("batt_mv", "batt_ma"), kept=("batt_mv",)))
