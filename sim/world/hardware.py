"""The bench world behind the real drivers: what a Pi's ports, buses and pins would see in flight.

    world (sim.world.flight.Flight, sim.world.power.PowerModel), stepped on the flight clock
        -> FakeUblox on a pseudo-terminal: NMEA of the flight's position and UTC, UBX ACKs
        -> FakeI2cBus: each I2C sensor the configuration fits, simulated by its name (sim/world/i2c_sensors.py):
           a BME280 in the outside air (0x76), a BME280 on the battery in the box (0x77), an
           INA219 on the battery lead (0x40), and any a maker registers
        -> a sysfs/procfs tree and a `vcgencmd` answer for PiHealth (CPU temperature, under-voltage)
        -> SimCameraBackend: the sky at the flight's altitude
        <- gpiozero MockFactory pins: the heater's pin heats the box model
        <- the payload's own CPU use (its process and the persona worker's): the load on the battery

The payload under test is the flight code (payload.parts.devices, payload.parts.gps, payload.parts.i2c_sensors,
payload.parts.camera, payload.parts.pi_health, payload.parts.outputs); only the hardware is simulated. Faults
are scheduled in flight time (`FaultPlan`) and thrown at the simulators' own fault switches.
The battery survives a payload reboot: its state is saved to `state_path` as the world steps.
The bench's own files (its /proc and /sys, the battery) live in `bench_dir(data_dir)`, a
sibling of the payload's data folder, never inside it: the simulated card holds only the
payload's data, and a full card stops the payload's writes, not the bench's hardware.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import threading
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import structlog

from payload.clock import flight_clock
from payload.config import DevicesSection, load_config
from payload.parts.devices import Devices, HardwareSensors
from payload.parts.hardware import Hardware
from payload.parts.pi_health import PiHealth
from payload.policy.budget import generation_s
from stratoecho import atmosphere
from stratoecho.lora_chips.profiles import is_chip

from ..chips.simulated import simulated_spi
from .camera import SimCameraBackend
from .flight import Flight
from .gps import FakeUblox, SimFix
from .i2c_sensors import SIMULATORS, BenchI2c, WorldNow, load_simulators, sensor_faults
from .power import PowerModel, PowerPlan
from .scenarios import flight_for
from .settings import BENCH_BOARD, NAME, BenchSettings

log = structlog.get_logger(__name__)

STEP_WALL_S = 0.05  # on a free-running clock: how often the world is stepped (fine enough for 1 Hz NMEA at 60x)
STEP_S = 1.0  # on the lockstep clock: the world steps every flight second, as the GPS reports
SAVE_EVERY_S = 30.0  # flight seconds between saves of the battery (a brown-out saves first)
CARD_BYTES = 32 * 10**9  # the simulated SD card: a 32 GB card
CARD_OS_BYTES = 3 * 10**9  # Raspberry Pi OS Lite on it
DAEMON_CORES = 0.05  # the daemon's own load beside the persona (the bench's measured idle, docs/payload.md)

# ------------------------------------------------------------------ faults

# The parts that are not I2C sensors; each I2C sensor takes the faults its simulator names
# (sim/world/i2c_sensors.py: unplug, stick, impossible).
FAULT_ACTIONS = {
    "gps": ("silence", "garbage", "reset"),
    "camera": ("hang", "unplug"),
    "i2c": ("hang",),  # the whole bus: a transfer that never completes holds the thread that asked
    "radio": ("unplug",),  # the LoRa chip on SPI stops answering (any chip the bench simulates: sim/chips/simulated.py)
}


def fault_actions(device: str) -> tuple[str, ...] | None:
    """What the bench can do to `device`: a part's actions, or an I2C sensor's simulator's faults."""
    return FAULT_ACTIONS.get(device) or sensor_faults(device)


_FAULT_RE = re.compile(r"^(?P<device>[a-z0-9_]+):(?P<action>[a-z]+)@(?P<start>[0-9.]+[smh]?)(?:-(?P<end>[0-9.]+[smh]?))?$")


def flight_seconds(text: str) -> float:
    """'90' or '90s' -> 90; '40m' -> 2400; '1.5h' -> 5400."""
    scale = {"s": 1, "m": 60, "h": 3600}.get(text[-1], 1)
    return float(text.rstrip("smh")) * scale


@dataclass(frozen=True)
class Fault:
    device: str
    action: str
    start_s: float
    end_s: float | None = None  # None: until the end of the flight (reset: instant)

    @classmethod
    def parse(cls, spec: str) -> Fault:
        """DEVICE:ACTION@START[-END], times in flight seconds or with s/m/h: `gps:silence@40m-55m`."""
        m = _FAULT_RE.match(spec.strip())
        if not m:
            raise ValueError(f"fault {spec!r}: expected DEVICE:ACTION@START[-END], e.g. gps:silence@40m-55m")
        device, action = m["device"], m["action"]
        actions = fault_actions(device)
        if actions is None:
            known = [*FAULT_ACTIONS, *SIMULATORS]
            raise ValueError(f"fault {spec!r}: unknown device {device!r}; one of {', '.join(known)} (a maker's "
                             "sensor: its simulator's module in [sim] simulators)")
        if action not in actions:
            raise ValueError(f"fault {spec!r}: {device} can {', '.join(actions)}, not {action!r}")
        start = flight_seconds(m["start"])
        end = flight_seconds(m["end"]) if m["end"] else None
        if end is not None and end <= start:
            raise ValueError(f"fault {spec!r}: the end must come after the start")
        return cls(device, action, start, end)


def check_faults(specs: list[str], config: Path | None) -> None:
    """`sim fly`'s check before anything starts: each fault names a part the bench can throw it at,
    the sensors a maker adds in `config` included (its [devices] drivers and [sim] simulators).
    ValueError names the bad fault; ConfigError a configuration that does not load."""
    if config is not None:
        cfg = load_config(config)  # imports its drivers
        load_simulators(BenchSettings.model_validate(cfg.rigs.get(NAME, {})).simulators)
    for spec in specs:
        Fault.parse(spec)


class FaultPlan:
    """Faults due at flight times: `due(t)` gives the (fault, begin|end) edges crossed since the last call."""

    def __init__(self, faults: list[Fault]):
        self.faults = sorted(faults, key=lambda f: f.start_s)
        self._begun: set[int] = set()
        self._ended: set[int] = set()

    def due(self, t_s: float) -> list[tuple[Fault, str]]:
        edges = []
        for i, f in enumerate(self.faults):
            if i not in self._begun and t_s >= f.start_s:
                self._begun.add(i)
                edges.append((f, "begin"))
            if i in self._begun and i not in self._ended and f.end_s is not None and t_s >= f.end_s:
                self._ended.add(i)
                edges.append((f, "end"))
        return edges


# ------------------------------------------------------------------ the world behind the drivers


class ModelledCpu:
    """On the lockstep clock the CPU load is modelled, not measured (a measurement would make the
    battery depend on the machine): the daemon's idle share plus the persona's generations, which
    the payload spends on the clock (`clock.spend`)."""

    def __init__(self, clock):
        self.clock = clock
        self._last = clock.elapsed_s()

    def busy(self) -> float:
        now = self.clock.elapsed_s()
        cores = self.clock.load_cores(self._last, now) if now > self._last else 0.0
        self._last = now
        return DAEMON_CORES + (cores or 0.0)


class CpuMeter:
    """Share of one core this process and its children (the persona worker) used since the last call.

    Read from /proc, not psutil: under qemu-user (make pi-check) a process's own /proc/self/stat
    is the emulator's rendering, and psutil took the start time it shows there for a reused pid
    and refused every read."""

    def __init__(self):
        self._tick = os.sysconf("SC_CLK_TCK")
        self._last = (time.monotonic(), self._cpu_s())

    def _cpu_s(self) -> float:
        total, me = time.process_time(), os.getpid()
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as stat:
                    fields = stat.read().rsplit(b")", 1)[1].split()
            except OSError:  # a process that just exited used nothing more
                continue
            if int(fields[1]) == me:  # its parent; then its user and system time, in clock ticks
                total += (int(fields[11]) + int(fields[12])) / self._tick
        return total

    def busy(self) -> float:
        now, cpu = time.monotonic(), self._cpu_s()
        wall, used = now - self._last[0], cpu - self._last[1]
        self._last = (now, cpu)
        return 0.0 if wall <= 0 else max(0.0, min(used / wall, float(os.cpu_count() or 1)))


@dataclass
class PiLoad:
    """The board's draw: idle, plus a share of the all-cores figure as the CPU works (docs/figures.md)."""

    idle_w: float = 0.6  # Pi Zero 2 W
    busy_w: float = 2.3
    cores: int = 4
    camera_w: float = 1.25  # +250 mA at 5 V while capturing

    def watts(self, cores_busy: float, capturing: bool) -> float:
        share = min(cores_busy / self.cores, 1.0)
        return self.idle_w + share * (self.busy_w - self.idle_w) + (self.camera_w if capturing else 0.0)


class BenchHardware:
    """Starts the simulated parts, steps the world on `clock` in a thread, and hands the payload
    what it would open on a Pi: `gps.port`, `i2c.open`, `pins`, `camera.factory`, `root` (its sysfs),
    `vcgencmd` and `card_usage`. `root` is the bench's own folder for its /proc and /sys
    (`bench_dir`); `card` the payload's data folder, what the simulated card holds beside the
    OS (None: nothing but the OS)."""

    def __init__(self, flight: Flight, clock, root: Path, *, seed: int = 1, faults: list[Fault] = (),
                 state_path: Path | None = None, heater_pin: int | None = 24, load: PiLoad | None = None,
                 power_plan: PowerPlan | None = None, brownout_kills: bool = True, card: Path | None = None,
                 devices: DevicesSection | None = None):
        from gpiozero.pins.mock import MockFactory

        self.flight, self.clock, self.root = flight, clock, Path(root)
        self.card = None if card is None else Path(card)
        self.faults = FaultPlan(list(faults))
        self.radio_socket = None  # the LoRa chip's place on SPI, when the configuration has one (radio:unplug)
        self.state_path = state_path
        self.brownout_kills = brownout_kills  # a browned-out battery kills this process, as it would the Pi
        self.load = load or PiLoad()
        self.power = PowerModel(power_plan or PowerPlan())
        if state_path is not None and state_path.exists():
            try:
                self.power = PowerModel.from_dict(json.loads(state_path.read_text()))
                log.info("world_resumed", path=str(state_path))
            except (ValueError, KeyError, TypeError) as e:
                log.warning("world_state_unreadable", path=str(state_path), error=str(e))
        # The I2C sensors the payload's configuration fits (`devices`; None: its defaults), each by its simulator.
        self.i2c = BenchI2c(devices if devices is not None else DevicesSection(), seed)
        self.lockstep = bool(getattr(clock, "lockstep", False))
        # The module's period in the seconds its clock waits: flight seconds on the lockstep, else wall seconds.
        self.gps = FakeUblox(self._fix, start_utc=flight.utc(0.0),
                             period_s=self.gps_epoch_s / (1.0 if self.lockstep else clock.speedup),
                             sim_clock=clock.elapsed_s, seed=seed, clock=clock if self.lockstep else None)
        self.camera = SimCameraBackend(lambda: self.flight.altitude_m(self.clock.elapsed_s()), size=(320, 240),
                                       seed=seed, event=clock.event)
        self.pins = MockFactory()
        self.heater_pin = heater_pin
        self.cpu = ModelledCpu(clock) if self.lockstep else CpuMeter()
        self.state = None  # the last PowerState
        self._captures = 0
        self._saved_at = -math.inf
        self._t = clock.elapsed_s()
        self._throttled_since_boot = 0
        self._stop = threading.Event()
        (self.root / "sys/class/thermal/thermal_zone0").mkdir(parents=True, exist_ok=True)
        (self.root / "proc").mkdir(parents=True, exist_ok=True)
        # What the world does not change: a Pi Zero 2 W's memory and a quiet load, written once.
        _write(self.root / "proc/meminfo", "MemTotal:         427060 kB\nMemAvailable:     231000 kB\n")
        _write(self.root / "proc/loadavg", "0.42 0.38 0.30 1/120 999\n")
        self._stop = clock.event()
        self.step()
        if self.lockstep:
            self._thread = clock.thread(self._run, "bench-world")
        else:
            self._thread = threading.Thread(target=self._run, name="bench-world", daemon=True)
            self._thread.start()

    @property
    def gps_epoch_s(self) -> float:
        """Flight seconds between GPS epochs: 1 Hz, or on a fast free-running clock at most 100
        epochs a wall second (a pty and a parser keep up with that)."""
        return 1.0 if self.lockstep else max(1.0 / self.clock.speedup, 0.01) * self.clock.speedup

    def gps_silent_after_s(self, configured_s: float) -> float:
        """Silence on the bench is measured in flight seconds: at least 20 epochs, so on a
        free-running clock a busy machine's scheduling hiccup is not a silent GPS."""
        return configured_s if self.lockstep else max(configured_s, 20 * self.gps_epoch_s)

    # -- what the payload opens instead of hardware (beside the GPS's port, the buses, the pins and the camera)

    def card_usage(self, path) -> shutil._ntuple_diskusage:
        """The simulated SD card, as shutil.disk_usage says it: CARD_BYTES, of which the OS takes
        CARD_OS_BYTES and the payload what its data folder (`card`) holds (its databases and
        stills; not the JSON bookkeeping, whose size follows wall-clock figures). The bench's own
        /proc and /sys are not on it. The bench machine's own disk would make a flight's health
        records depend on it."""
        used = CARD_OS_BYTES
        for p in self.card.rglob("*") if self.card is not None else ():
            if p.suffix not in (".json", ".tmp"):
                try:
                    used += p.stat().st_size if p.is_file() else 0
                except OSError:
                    pass  # removed while we looked: it holds nothing now
        return shutil._ntuple_diskusage(CARD_BYTES, used, max(CARD_BYTES - used, 0))

    def vcgencmd(self, argv) -> str:
        """`vcgencmd get_throttled`: bit 0 under-voltage now, bit 16 since boot."""
        now = 1 if self.state is not None and self.state.battery_v < 3.3 else 0
        self._throttled_since_boot |= now
        return f"throttled=0x{now | self._throttled_since_boot << 16:x}"

    # -- the world ---------------------------------------------------------------------

    def _fix(self, _t: float) -> SimFix:
        t = self.clock.elapsed_s()
        s = self.flight.state_at(t)
        # A balloon drifts with the wind: its speed over the ground is the wind's, toward where it blows.
        moving = s.phase not in ("pre-launch", "landed")
        return SimFix(lat=s.lat, lon=s.lon, alt_m=s.alt_m, sats=s.sats,
                      speed_mps=s.wind_speed_m_s if moving else 0.0, course_deg=(s.wind_dir_deg + 180.0) % 360.0)

    def heater_on(self) -> bool:
        if self.heater_pin is None:
            return False
        try:
            return bool(self.pins.pin(self.heater_pin).state)
        except Exception:  # noqa: BLE001 - a pin nobody claimed is off
            return False

    def step(self) -> None:
        t = self.clock.elapsed_s()
        dt, self._t = max(t - self._t, 0.0), t
        s = self.flight.state_at(t)
        busy = self.cpu.busy()
        capturing, self._captures = self.camera.captures > self._captures, self.camera.captures
        self.state = st = self.power.step(
            dt, outside_temp_c=s.temp_c, air_density=atmosphere.density_kg_m3(s.alt_m),
            sun_elev_deg=s.sun_elev_deg, sunlit=s.sunlit, load_w=self.load.watts(busy, capturing),
            heater_on=self.heater_on())
        self.camera.sun_elevation_deg = s.sun_elev_deg
        self.i2c.sense(WorldNow(s, st))
        cpu_c = st.box_temp_c + 15.0 + 20.0 * min(busy / self.load.cores, 1.0)
        _write(self.root / "sys/class/thermal/thermal_zone0/temp", f"{round(cpu_c * 1000)}\n")
        _write(self.root / "proc/uptime", f"{max(t, 0.0):.2f} {max(t, 0.0) * 3:.2f}\n")
        for fault, edge in self.faults.due(t):
            self.apply(fault, edge)
        # Every SAVE_EVERY_S flight seconds is enough for a reboot to resume the battery (on a
        # free-running clock: twice a wall second); a brown-out saves first.
        since = t - self._saved_at if self.lockstep else time.monotonic() - self._saved_at
        if self.state_path is not None and (st.browned_out or since >= (SAVE_EVERY_S if self.lockstep else 0.5)):
            _write(self.state_path, json.dumps(self.power.to_dict()))
            self._saved_at = t if self.lockstep else time.monotonic()
        if st.browned_out and self.brownout_kills:
            # The regulator dropped out: the Pi stops mid-instruction, as on a real flight.
            log.error("brown_out", flight_s=round(t), battery_v=round(st.battery_v, 3))
            os.kill(os.getpid(), signal.SIGKILL)

    def apply(self, fault: Fault, edge: str) -> None:
        """Throw `fault` at the part's own fault switch (edge 'begin') or take it back ('end')."""
        log.warning("bench_fault", device=fault.device, action=fault.action, edge=edge,
                    flight_s=round(self.clock.elapsed_s()))
        begin = edge == "begin"
        if fault.device == "gps":
            if fault.action == "reset":
                self.gps.reset()
            elif begin:
                getattr(self.gps, fault.action)()
            else:
                self.gps.resume()
        elif fault.device == "camera":
            if fault.action == "hang":
                self.camera.hang() if begin else self.camera.release()
            else:
                self.camera.unplug() if begin else self.camera.plug()
        elif fault.device == "radio":
            if self.radio_socket is None:
                log.warning("bench_fault_ignored", device="radio", why="no LoRa chip on SPI in this configuration")
            else:
                self.radio_socket.unplugged = begin
        elif fault.device == "i2c":
            if begin:
                released = self._bus_released = self.clock.event()
                self.i2c.wedge(lambda: self.clock.wait(1e9, released))
            else:
                self.i2c.release()
                self._bus_released.set()
        elif not self.i2c.fault(fault.device, fault.action, begin):
            log.warning("bench_fault_ignored", device=fault.device, why="no such sensor in this configuration")

    def _run(self) -> None:
        # Finer than a flight second is wasted work; at 1x the world steps once a second.
        step_s = STEP_S if self.lockstep else max(STEP_WALL_S, min(1.0, 1.0 / self.clock.speedup)) * self.clock.speedup
        while not self.clock.wait(step_s, self._stop):
            try:
                self.step()
            except Exception:  # the world must not die quietly under a flight: log and go on
                log.exception("bench_world_step_failed")

    def close(self) -> None:
        self._stop.set()
        self.clock.join(self._thread, 5.0)
        self.camera.release()
        self.gps.close()
        self.pins.close()


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)  # a reader never sees half a file


def bench_dir(data_dir: Path) -> Path:
    """The bench's own folder for a payload's `data_dir`: its sibling `<data_dir>.bench` (the
    simulated /proc and /sys, the battery). Never inside the data folder, so the card is only the
    payload's; beside it, so a restarted payload on the same data folder finds the same world,
    and a bench flight's files can be read after it."""
    data = Path(os.path.abspath(data_dir))  # "." and "x/" have a name to add to; no symlink followed
    return data.with_name(data.name + ".bench")


def open_bench(cfg, data_dir: Path, settings: BenchSettings | None = None):
    """The bench's `payload.parts.hardware.Hardware` (the ``sim`` rig, sim/world/rig.py): the payload's own
    drivers over this world's parts — an NMEA pseudo-terminal, register-level I2C, a simulated
    camera, mock GPIO pins, a simulated card and sysfs — on the bench's clock. `settings` (the
    `[sim]` table and --sim options) choose the flight (scenario, seed), its faults and the world
    clock to rejoin."""
    settings = settings or BenchSettings()
    load_simulators(settings.simulators)  # a maker's sensors' simulators, before a fault names one
    faults = [Fault.parse(f) for f in settings.faults]  # ValueError names the bad one
    flight = flight_for(settings.scenario, settings.seed, settings.balloon)
    # The bench's lockstep clock when `sim fly` started us (STRATOECHO_BENCH_CLOCK), else the
    # system's clock scaled by --speedup (a payload flown by hand against a bench world).
    clock = flight_clock(settings.speedup, start_utc=flight.utc(0.0), name="payload")
    # Rejoin a flight under way before any simulated part starts: the GPS must not stamp
    # its first fixes with a clock that began at this boot.
    world_clock = Path(settings.world_clock) if settings.world_clock else None
    rejoined = world_clock is not None and world_clock.exists()
    if rejoined:
        clock.adopt(json.loads(world_clock.read_text())["epoch_unix"])
    own = bench_dir(data_dir)
    bench = BenchHardware(flight, clock, own, seed=settings.seed, faults=faults, state_path=own / "world.json",
                          heater_pin=cfg.outputs.heater_pin, card=Path(data_dir), devices=cfg.devices)
    if cfg.devices.gps is not None:
        cfg.devices.gps.silent_after_s = bench.gps_silent_after_s(cfg.devices.gps.silent_after_s)
    devices = Devices(cfg.devices, bus_opener=bench.i2c.open, clock=clock.elapsed_s, gps_port=bench.gps.port,
                      flight_clock=clock)
    sensors = HardwareSensors(devices, now=clock.now, fix_max_age_s=max(5.0, 3 * bench.gps_epoch_s))
    pi_health = PiHealth(bench.root, data_dir=data_dir, runner=bench.vcgencmd, disk_usage=bench.card_usage)
    open_spi = None
    if is_chip(cfg.radio.kind):  # the chip's own driver, over its simulator (sim/chips/simulated.py)
        open_spi, bench.radio_socket = simulated_spi(cfg.radio, settings.air, clock, bench.pins)
    # On the lockstep the flight is a function of its seed: the persona samples and the payload
    # asks its questions from it, and a generation takes the time the rehearsed board would take
    # (payload.policy.budget.generation_s), which the lockstep cannot measure.
    lockstep = clock.lockstep
    price = partial(generation_s, cfg.persona.board or BENCH_BOARD) if lockstep else None

    def flying() -> None:
        """Once the payload flies, its launch time goes where the channel and a rebooted payload read it."""
        if world_clock is not None and not rejoined:
            tmp = world_clock.with_suffix(".tmp")
            tmp.write_text(json.dumps({"epoch_unix": clock.epoch_unix(), "speedup": clock.speedup,
                                       "seed": settings.seed}))
            os.replace(tmp, world_clock)

    # On the lockstep a capture takes no flight time however long the bench machine renders;
    # on a free-running accelerated clock it is at least a wall second of flight seconds.
    return Hardware(clock, sensors, bench.camera.factory, bench.pins, pi_health, card_usage=bench.card_usage,
                    flight_s=settings.minutes * 60 if settings.minutes else flight.duration_s + 300,
                    launches=not rejoined, camera_min_timeout_s=0.0 if lockstep else clock.speedup * 1.0,
                    open_spi=open_spi, seed=settings.seed if lockstep else None, price_generation=price,
                    flying=flying, closers=[bench.close, sensors.close])

