"""`python -m payload run` — the flight daemon. See `python -m payload run --help`."""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from stratoecho.bundle import BundleError, load_bundle
from stratoecho.cli import run_cli
from stratoecho.config import ConfigError
from stratoecho.wire.uplink import KeyFileError

from .clock import Clock, flight_clock
from .config import load_config, parse_hostport
from .daemon import STOP_BUDGET_S, Daemon
from .persona import PersonaError
from .watchdog import Liveness, SystemdNotifier, Watchdog
from .radio import RadioError, make_radio
from .store import StoreError

log = structlog.get_logger("payload")
STATS_EVERY_S = 60.0  # flight seconds between saves of the statistics
STOP_SLACK_S = 5.0  # past the stop's budget, closing files; still inside the unit's TimeoutStopSec=20


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m payload",
        description="The balloon payload: senses, muses with its persona, queues durably and transmits.",
    )
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO (default), WARNING or ERROR")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser(
        "run",
        help="run the daemon",
        description=(
            "Run the payload daemon until stopped (SIGINT/SIGTERM) or, on the bench, until the "
            "simulated flight has landed. Examples:\n"
            "  python -m payload run --sim --persona build/persona --udp 127.0.0.1:7373 --data out/payload\n"
            "  python -m payload run --config /etc/stratoecho/payload.toml"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = run.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", metavar="FILE", help="payload configuration (TOML); see config/payload.pi.toml")
    src.add_argument("--sim", action="store_true", help="bench world: simulated sensors and flight, no hardware")
    run.add_argument("--sim-config", metavar="FILE", help="with --sim: a configuration to start from (default: built-in bench defaults)")
    run.add_argument("--persona", metavar="BUNDLE", help="persona bundle directory (overrides the configuration)")
    run.add_argument("--no-persona", action="store_true", help="fly without a language model: telemetry and events only")
    run.add_argument("--udp", metavar="HOST:PORT", help="send frames to this UDP address instead of a radio")
    run.add_argument("--uplink-key", metavar="FILE", help="HMAC key shared with the ground: listen for signed commands and repair requests (overrides uplink.key_file)")
    run.add_argument("--data", metavar="DIR", help="state directory (queue, counters); a restart resumes from it")
    run.add_argument("--speedup", type=float,
                     help="with --sim: flight seconds per wall second of a free-running clock (default 60); "
                          "under `sim fly` the bench's clock (STRATOECHO_BENCH_CLOCK) keeps time instead")
    run.add_argument("--minutes", type=float, help="flight minutes to run (default: until stopped; --sim: the whole flight)")
    run.add_argument("--seed", type=int, help="with --sim: flight seed (same seed, same flight)")
    run.add_argument("--fault", action="append", default=[], metavar="DEVICE:ACTION@START[-END]",
                     help="with --sim: throw a fault at a simulated part in flight time, e.g. gps:silence@40m-55m, "
                          "bme280:unplug@1h, camera:hang@30m-45m (repeatable; docs/bench.md lists them)")
    run.add_argument("--scenario", metavar="NAME",
                     help="with --sim: the bench world's rehearsal: nominal (default), cold-soak, night, orbit ... (python -m sim scenarios)")
    run.add_argument("--world-clock", metavar="FILE",
                     help="with --sim: the flight's launch time, written at launch and rejoined after a reboot (sim fly passes it)")
    run.add_argument("--drain-s", type=float, default=300.0, help="flight seconds to keep transmitting the queue after the flight ends (default 300)")
    run.set_defaults(func=cmd_run)
    return parser


def cmd_run(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config or args.sim_config)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.sim:
        cfg.sensors = "sim"
    if args.udp:
        try:
            parse_hostport(args.udp)
        except ValueError as e:
            print(f"error: --udp: {e}", file=sys.stderr)
            return 2
        cfg.radio.kind = "udp"  # --udp overrides whatever radio the configuration names
        cfg.radio.udp = args.udp
    if args.uplink_key:
        cfg.uplink.key_file = args.uplink_key
    if args.speedup is not None:
        cfg.sim.speedup = args.speedup
    if args.seed is not None:
        cfg.sim.seed = args.seed
    if args.minutes is not None:
        cfg.sim.minutes = args.minutes
    cfg.sim.faults += args.fault
    if args.scenario:
        cfg.sim.scenario = args.scenario
    if args.world_clock:
        cfg.sim.world_clock = args.world_clock
    data_dir = Path(args.data or cfg.data_dir)

    bundle, persona_problem = None, None
    if not args.no_persona:
        try:
            bundle = load_bundle(args.persona or cfg.persona.bundle)  # checks every sha256
        except BundleError as e:
            if cfg.sensors == "sim":
                print(f"error: {e}\n(build one with `make persona`, or fly with --no-persona)", file=sys.stderr)
                return 2
            # In flight a damaged bundle must not cost the beacon: fly without it, and say so on air.
            log.error("persona_bundle_refused", error=str(e))
            persona_problem = f"persona bundle refused ({str(e)[:80]}); flying without it"

    try:
        parts = open_parts(cfg, data_dir)
    except ValueError as e:  # a fault the bench cannot throw
        print(f"error: {e}", file=sys.stderr)
        return 2
    clock, sensors = parts.clock, parts.sensors
    if cfg.sim.minutes is not None:
        flight_s = cfg.sim.minutes * 60
    elif parts.bench is not None:
        flight_s = parts.bench.flight.duration_s + 300  # land, then beacon a while for the recovery team
    else:
        flight_s = float("inf")

    try:
        radio = make_radio(cfg.radio, clock=clock)
    except RadioError as e:
        parts.close()
        print(f"error: {e}", file=sys.stderr)
        return 2
    stop = clock.event()
    # sd_notify: a no-op off systemd, unless `sim fly` supervises us as systemd would. On the bench's
    # lockstep clock liveness counts flight seconds: they stand for the Pi's real ones.
    notifier = SystemdNotifier()
    liveness = Liveness(clock=clock.elapsed_s) if clock.lockstep else Liveness()
    try:
        daemon = Daemon(cfg, sensors, radio, clock, bundle, data_dir, stop=stop, camera=parts.camera,
                        pi_health=parts.pi_health, led=parts.led, heater=parts.heater, liveness=liveness,
                        disk_usage=parts.bench.card_usage if parts.bench is not None else None)
    except (StoreError, KeyFileError) as e:
        radio.close()  # a serial port or GPIO pins would otherwise stay claimed
        parts.close()
        print(f"error: {e}", file=sys.stderr)
        return 2

    interrupted = clock.event()

    def on_signal(signum, _frame):
        log.info("signal", signal=signal.Signals(signum).name)
        interrupted.set()
        if daemon.worker is not None:
            daemon.worker.cancel()  # a model still loading, or a musing under way, ends now
        if not clock.lockstep and not interrupted_before:
            # Last resort, off the bench's clock: a stop that overruns writes every thread's stack
            # to the journal and exits before systemd's SIGKILL at TimeoutStopSec, which tells nothing.
            faulthandler.dump_traceback_later(STOP_BUDGET_S + STOP_SLACK_S, exit=True)
        interrupted_before.append(signum)

    interrupted_before: list[int] = []

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # A bench flight launches once the payload is ready, unless this payload is rebooting into
    # a flight already under way: then it rejoins the flight's time from the world clock file.
    world_clock = Path(cfg.sim.world_clock) if parts.bench is not None and cfg.sim.world_clock else None
    rejoin = parts.rejoined
    try:
        daemon.start(launch=parts.bench is not None and not rejoin)
    except PersonaError as e:
        # A model that will not load must not cost the beacon: systemd would restart and in the
        # end reboot a payload that exits here. Fly without the persona, and say so on air.
        daemon.worker = None
        daemon.start(launch=parts.bench is not None and not rejoin)
        if not interrupted.is_set():  # else a stop cut the load short: nothing to report
            log.error("persona_not_loaded", error=str(e))
            daemon.queue_event(f"persona did not load ({str(e)[:80]}); flying without it")
    if persona_problem:
        daemon.queue_event(persona_problem)
    for problem in parts.problems:
        daemon.queue_event(problem)
    Watchdog(liveness, notifier, clock=clock.elapsed_s if clock.lockstep else time.monotonic).start(stop, clock.thread)
    notifier.ready(status=f"flying, boot {daemon.boot}")
    if world_clock is not None and not rejoin:
        tmp = world_clock.with_suffix(".tmp")
        tmp.write_text(json.dumps({"epoch_unix": clock.epoch_unix(), "speedup": clock.speedup, "seed": cfg.sim.seed}))
        os.replace(tmp, world_clock)
    log.info("flying", radio=cfg.radio.kind, to=cfg.radio.address, speedup=clock.speedup, flight_minutes=round(flight_s / 60, 1), data=str(data_dir))
    # Statistics are saved every flight minute: a power cut loses at most a minute of counts.
    next_stats = clock.elapsed_s() + STATS_EVERY_S
    while not interrupted.is_set() and clock.elapsed_s() < flight_s:
        interrupted.wait(max(min(next_stats, flight_s) - clock.elapsed_s(), 0.0))
        if clock.elapsed_s() >= next_stats:
            daemon.write_stats()
            next_stats = clock.elapsed_s() + STATS_EVERY_S
    # STOPPING=1 once the stop itself begins: after the bench's end-of-flight drain (a flight that
    # ends by itself is the bench's; on the Pi only a signal stops us, and then there is no drain).
    daemon.shutdown(drain_s=0.0 if interrupted.is_set() else args.drain_s, abort=interrupted,
                    on_stopping=notifier.stopping)
    parts.close()
    faulthandler.cancel_dump_traceback_later()
    log.info("stopped", stats=str(data_dir / "stats.json"))
    return 0



@dataclass
class Parts:
    """What the daemon senses and drives, and the clock it runs on."""

    clock: Clock
    sensors: object
    camera: object | None
    pi_health: object
    led: object | None
    heater: object | None
    bench: object | None = None  # sim.bench_hardware.BenchHardware on the bench
    rejoined: bool = False  # a bench payload rebooted into a flight under way (its world clock adopted)
    problems: list[str] = field(default_factory=list)  # parts that could not be opened: events at start

    def close(self) -> None:
        for part in (self.led, self.heater, self.sensors, self.bench):
            if part is not None and hasattr(part, "close"):
                try:
                    part.close()
                except Exception as e:  # noqa: BLE001 - closed already (the daemon closes the heater): go on
                    log.debug("close_twice", part=type(part).__name__, error=str(e))


def open_parts(cfg, data_dir: Path) -> Parts:
    """The drivers in [devices] and [outputs]. On a Pi they open the real buses, ports and pins;
    on the bench (`sensors = "sim"`) the same drivers open the bench world's simulated parts —
    an NMEA pseudo-terminal, a register-level I2C bus, a simulated camera, mock GPIO pins —
    so what is tested is the flight code. A missing part is a status, never a failed start."""
    from .camera import Camera, Picamera2Backend
    from .devices import Devices, HardwareSensors
    from .outputs import BatteryHeater, StatusLed
    from .pi_health import PiHealth

    data_dir = Path(data_dir).resolve()
    if cfg.sensors == "sim":
        from sim.bench_hardware import BenchHardware, Fault
        from sim.scenarios import flight_for

        faults = [Fault.parse(f) for f in cfg.sim.faults]  # ValueError names the bad one
        flight = flight_for(cfg.sim.scenario, cfg.sim.seed)
        # The bench's lockstep clock when `sim fly` started us (STRATOECHO_BENCH_CLOCK), else the
        # system's clock scaled by --speedup (a payload flown by hand against a bench world).
        clock = flight_clock(cfg.sim.speedup, start_utc=flight.utc(0.0), name="payload")
        # Rejoin a flight under way before any simulated part starts: the GPS must not stamp
        # its first fixes with a clock that began at this boot.
        world_clock = Path(cfg.sim.world_clock) if cfg.sim.world_clock else None
        rejoined = world_clock is not None and world_clock.exists()
        if rejoined:
            clock.adopt(json.loads(world_clock.read_text())["epoch_unix"])
        bench = BenchHardware(flight, clock, data_dir / "bench", seed=cfg.sim.seed, faults=faults,
                              state_path=data_dir / "bench" / "world.json", heater_pin=cfg.outputs.heater_pin)
        if cfg.devices.gps is not None:
            cfg.devices.gps.silent_after_s = bench.gps_silent_after_s(cfg.devices.gps.silent_after_s)
        devices = Devices(cfg.devices, bus_opener=bench.bus_opener, clock=clock.elapsed_s, gps_port=bench.gps_port,
                          flight_clock=clock)
        sensors = HardwareSensors(devices, now=clock.now, fix_max_age_s=max(5.0, 3 * bench.gps_epoch_s))
        backend, pins = bench.camera_factory, bench.pin_factory
        pi_health = PiHealth(bench.sysfs_root, data_dir=data_dir, runner=bench.vcgencmd, disk_usage=bench.card_usage)
    else:
        clock, bench, pins, rejoined = flight_clock(1.0, name="payload"), None, None, False
        from .gps import system_time_from_gps

        sensors = HardwareSensors(Devices(cfg.devices, flight_clock=clock), clock_from_gps=system_time_from_gps)
        backend = Picamera2Backend
        pi_health = PiHealth(data_dir=data_dir)
    camera = None
    if (c := cfg.devices.camera) is not None:
        # The hang timeout is flight time. On the lockstep a capture takes no flight time however
        # long the bench machine renders; on a free-running accelerated clock it is at least a
        # wall second, which rendering a simulated frame may take.
        timeout_s = c.timeout_s if bench is None or clock.lockstep else max(c.timeout_s, clock.speedup * 1.0)
        camera = Camera(backend, still_dir=data_dir / c.still_dir, thumb_px=c.thumb_px,
                        thumb_max_bytes=c.thumb_max_bytes, timeout_s=timeout_s, clock=clock.elapsed_s,
                        flight_clock=clock)
    o = cfg.outputs
    problems: list[str] = []

    def output(name: str, make):
        # GPIO that cannot be claimed (no pin factory, a pin in use) costs that output, never the beacon.
        try:
            return make()
        except Exception as e:  # noqa: BLE001 - gpiozero raises its own family and OSError alike
            log.error("output_unavailable", output=name, error=str(e))
            problems.append(f"{name} unavailable: {str(e)[:80]}")
            return None

    led = heater = None
    if o.status_led_pin is not None:
        led = output("status LED", lambda: StatusLed(o.status_led_pin, pin_factory=pins,
                                                     time_scale=1.0 if clock.lockstep else 1.0 / clock.speedup))
    if o.heater_pin is not None:
        heater = output("battery heater", lambda: BatteryHeater(
            o.heater_pin, pin_factory=pins, on_below_c=o.heater_on_below_c, off_above_c=o.heater_off_above_c,
            max_duty=o.heater_max_duty, min_battery_mv=o.heater_min_battery_mv, clock=clock.elapsed_s))
    return Parts(clock, sensors, camera, pi_health, led, heater, bench, rejoined, problems)


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())

