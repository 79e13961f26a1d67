"""The Pi's own health: CPU temperature, firmware throttling flags, memory, disk, uptime, load.

Every path is relative to an injectable ``root`` (``/`` on the Pi), so tests and the bench
hand in a fake filesystem tree; the firmware query (``vcgencmd get_throttled``) goes
through an injectable runner, so no test needs a Pi. Sources:

    cpu_temp   <root>/sys/class/thermal/thermal_zone0/temp   millidegrees C, one integer
    throttled  ``vcgencmd get_throttled`` -> "throttled=0x50005"
    memory     <root>/proc/meminfo                          MemAvailable / MemTotal, kB
    disk       shutil.disk_usage(data_dir)                  data_dir relative to root
    uptime     <root>/proc/uptime                           first field, seconds
    load       <root>/proc/loadavg                          first three fields

Like the I2C drivers (payload/parts/i2c_sensors.py), ``read()`` never raises. A source that
fails (missing file on a non-Pi host, no vcgencmd, unparsable text) gives None for its
fields and an entry in ``HealthReading.errors``; ``status`` is ``ok`` (all sources read),
``partial`` (some) or ``unavailable`` (none), and ``counters`` count reads and failures
per source since the object was made.

Throttle bits (``vcgencmd get_throttled``; Raspberry Pi documentation, "vcgencmd",
get_throttled table): 0 under-voltage detected, 1 ARM frequency capped, 2 currently
throttled, 3 soft temperature limit active, 16..19 the same four "has occurred since
boot". A balloon Pi sees under-voltage when the cold battery sags: bit 16 in a health
record is the ground's early warning.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

# bit -> flag name
THROTTLE_BITS: dict[int, str] = {
    0: "under_voltage",
    1: "arm_freq_capped",
    2: "throttled",
    3: "soft_temp_limit",
    16: "under_voltage_occurred",
    17: "arm_freq_capped_occurred",
    18: "throttled_occurred",
    19: "soft_temp_limit_occurred",
}

SOURCES = ("cpu_temp", "throttled", "memory", "disk", "uptime", "load")
VCGENCMD = ("vcgencmd", "get_throttled")

Runner = Callable[[Sequence[str]], str]


def decode_throttled(value: int) -> frozenset[str]:
    """The names of the documented flags set in ``value``; unknown bits are ignored."""
    return frozenset(name for bit, name in THROTTLE_BITS.items() if value >> bit & 1)


def parse_throttled(text: str) -> int:
    """The integer in vcgencmd's answer ("throttled=0x50005"); ValueError if there is none."""
    s = text.strip()
    if "=" in s:
        key, _, s = s.partition("=")
        if key.strip() != "throttled":
            raise ValueError(f"not a get_throttled answer: {text!r}")
    s = s.strip()
    try:
        value = int(s, 16) if s.lower().startswith("0x") else int(s, 10)
    except ValueError:
        raise ValueError(f"not a get_throttled answer: {text!r}") from None
    if value < 0:
        raise ValueError(f"negative throttled value: {text!r}")
    return value


def run_vcgencmd(argv: Sequence[str], timeout_s: float = 2.0) -> str:
    """The default runner: the command's stdout; raises on a missing binary or failure."""
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout_s, check=True)
    return done.stdout


@dataclass
class HealthReading:
    status: str  # ok, partial, unavailable
    cpu_temp_c: float | None = None
    throttled: int | None = None  # raw get_throttled bits
    throttle_flags: frozenset[str] | None = None  # names from THROTTLE_BITS
    mem_available_kb: int | None = None
    mem_total_kb: int | None = None
    disk_free_kb: int | None = None
    disk_total_kb: int | None = None
    uptime_s: float | None = None
    load_avg: tuple[float, float, float] | None = None  # 1, 5, 15 minutes
    errors: dict[str, str] = field(default_factory=dict)  # source -> what went wrong

    @property
    def under_voltage(self) -> bool | None:
        """Under-voltage now or since boot; None when the firmware could not be asked."""
        if self.throttle_flags is None:
            return None
        return bool(self.throttle_flags & {"under_voltage", "under_voltage_occurred"})

    def as_health_fields(self) -> dict[str, int | float]:
        """The measured subset under the names of stratoecho.wire.content.HEALTH_FIELDS.

        Fields not measured are left out (a health record carries any subset); types match
        the table: uptime_s int, cpu_temp_c float (0.1 degC), throttled int, mem_free_kb int
        (MemAvailable: what a new allocation can get, not the smaller MemFree), disk_free_kb int.
        """
        out: dict[str, int | float] = {}
        if self.uptime_s is not None:
            out["uptime_s"] = int(self.uptime_s)
        if self.cpu_temp_c is not None:
            out["cpu_temp_c"] = round(float(self.cpu_temp_c), 1)
        if self.throttled is not None:
            out["throttled"] = int(self.throttled)
        if self.mem_available_kb is not None:
            out["mem_free_kb"] = int(self.mem_available_kb)
        if self.disk_free_kb is not None:
            out["disk_free_kb"] = int(self.disk_free_kb)
        return out


class PiHealth:
    """Reads the Pi's health from files under ``root`` and the firmware through ``runner``.

    ``data_dir`` is the folder whose file system's free space matters (the record store);
    a relative path is taken under ``root``. ``runner(argv) -> stdout`` replaces
    subprocess; ``disk_usage`` replaces shutil.disk_usage.
    """

    # A thermal zone reading outside this is a broken sensor, not a temperature.
    CPU_TEMP_RANGE_C = (-60.0, 125.0)

    def __init__(
        self,
        root: str | Path = "/",
        *,
        data_dir: str | Path = ".",
        runner: Runner | None = None,
        disk_usage: Callable[[Path], tuple] = shutil.disk_usage,
    ):
        self.root = Path(root)
        self.data_dir = self.root / data_dir  # an absolute data_dir replaces root
        self.runner = runner or run_vcgencmd
        self.disk_usage = disk_usage
        self.reads = 0
        self.failures: Counter[str] = Counter()  # source -> failed reads

    def _path(self, rel: str) -> Path:
        return self.root / rel

    def cpu_temp_c(self) -> float | None:
        """The CPU temperature alone (the mode ladder reads it every beacon); None when unreadable."""
        try:
            return self._cpu_temp()["cpu_temp_c"]
        except (OSError, ValueError):
            return None

    # --- the sources, each raising on failure -----------------------------------------

    def _cpu_temp(self) -> dict:
        text = self._path("sys/class/thermal/thermal_zone0/temp").read_text()
        c = int(text.strip()) / 1000.0
        lo, hi = self.CPU_TEMP_RANGE_C
        if not lo <= c <= hi:
            raise ValueError(f"impossible CPU temperature {c} degC")
        return {"cpu_temp_c": c}

    def _throttled(self) -> dict:
        value = parse_throttled(self.runner(VCGENCMD))
        return {"throttled": value, "throttle_flags": decode_throttled(value)}

    def _memory(self) -> dict:
        fields: dict[str, int] = {}
        for line in self._path("proc/meminfo").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in ("MemAvailable", "MemTotal"):
                fields[name] = int(rest.split()[0])  # "  123456 kB"
        if "MemAvailable" not in fields:
            raise ValueError("no MemAvailable in meminfo")
        return {"mem_available_kb": fields["MemAvailable"], "mem_total_kb": fields.get("MemTotal")}

    def _disk(self) -> dict:
        usage = self.disk_usage(self.data_dir)
        total, free = usage[0], usage[2]  # (total, used, free) in bytes
        return {"disk_free_kb": int(free) // 1024, "disk_total_kb": int(total) // 1024}

    def _uptime(self) -> dict:
        return {"uptime_s": float(self._path("proc/uptime").read_text().split()[0])}

    def _load(self) -> dict:
        parts = self._path("proc/loadavg").read_text().split()
        return {"load_avg": (float(parts[0]), float(parts[1]), float(parts[2]))}

    # --- the reading ------------------------------------------------------------------

    def read(self) -> HealthReading:
        """Every source once; never raises (a failed source is None plus an error)."""
        self.reads += 1
        values: dict = {}
        errors: dict[str, str] = {}
        for source in SOURCES:
            try:
                values.update(getattr(self, f"_{source}")())
            except FileNotFoundError as e:
                errors[source] = f"missing: {e.filename or e}"
            except subprocess.TimeoutExpired:
                errors[source] = "timeout"
            except subprocess.CalledProcessError as e:
                errors[source] = f"exit status {e.returncode}"
            except Exception as e:  # noqa: BLE001 - a health read must never stop the payload
                errors[source] = f"{type(e).__name__}: {e}"
        for source in errors:
            self.failures[source] += 1
        if not errors:
            status = "ok"
        elif len(errors) == len(SOURCES):
            status = "unavailable"
        else:
            status = "partial"
        return HealthReading(status=status, errors=errors, **values)

    def as_health_fields(self) -> dict[str, int | float]:
        """A fresh reading's measured fields under the health record's names."""
        return self.read().as_health_fields()
