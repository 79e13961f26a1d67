"""`python -m payload run` — the flight daemon. See `python -m payload run --help`; `keygen` writes
an uplink key file."""

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
from pydantic import ValidationError

from stratoecho.bundle import BundleError, load_bundle
from stratoecho.cli import SIGNAL_POLL_S, run_cli
from stratoecho.config import ConfigError, describe_validation_error
from stratoecho.keygen import add_keygen_command
from stratoecho.lora_chips.profiles import is_chip
from stratoecho.wire.events import Event, event
from stratoecho.wire.uplink import KeyFileError

from .assembly import build_daemon
from .camera import Camera
from .clock import Clock
from .config import PayloadConfig, load_config, parse_hostport
from .daemon import STOP_BUDGET_S
from .hardware import Hardware, HardwareError, open_hardware
from .outputs import BatteryHeater, StatusLed
from .persona import PersonaError
from .radio import RadioError
from .radios import ReopeningRadio, make_radio
from .store import StoreError
from .watchdog import Liveness, SystemdNotifier, Watchdog

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
    run.add_argument("--sim-config", metavar="FILE", help="with --sim: a configuration to start from (default: built-in "
                                                          "bench defaults)")
    run.add_argument("--persona", metavar="BUNDLE", help="persona bundle directory (overrides the configuration)")
    run.add_argument("--no-persona", action="store_true", help="fly without a language model: telemetry and events only")
    run.add_argument("--udp", metavar="HOST:PORT", help="send frames to this UDP address instead of a radio (with --sim "
                                                        "and a radio chip on SPI: the simulated chip's air)")
    run.add_argument("--flight-key", "--uplink-key", dest="uplink_key", metavar="FILE",
                     help="the flight key shared with the ground (`python -m payload keygen FILE` makes one): records "
                          "go tagged with the downlink key derived from it, and the payload listens for signed "
                          "commands and repair requests (overrides uplink.key_file)")
    run.add_argument("--no-uplink", action="store_true", help="open no listen windows (transmit only; records still "
                                                              "tagged with the flight key)")
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
                     help="with --sim: the bench world's rehearsal: nominal (default), cold-soak, night, orbit ... (python "
                          "-m sim scenarios)")
    run.add_argument("--world-clock", metavar="FILE",
                     help="with --sim: the flight's launch time, written at launch and rejoined after a reboot (sim fly "
                          "passes it)")
    run.add_argument("--drain-s", type=float, default=300.0, help="flight seconds to keep transmitting the queue after the "
                                                                  "flight ends (default 300)")
    run.set_defaults(func=cmd_run)
    add_keygen_command(sub, "python -m payload")
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
        if cfg.sensors == "sim" and is_chip(cfg.radio.kind):
            cfg.sim.air = args.udp  # the bench flies the chip's driver; the simulated chip's air is this address
        else:
            cfg.radio.kind = "udp"  # --udp overrides whatever radio the configuration names
            cfg.radio.udp = args.udp
    if args.uplink_key:
        cfg.uplink.key_file = args.uplink_key
    if args.no_uplink:
        cfg.uplink.listen = False
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
    try:  # the options changed the configuration: it must still hold together (the key needs a window)
        cfg = PayloadConfig.model_validate(cfg.model_dump())
    except ValidationError as e:
        print(f"error: {describe_validation_error('the configuration with these options', e)}", file=sys.stderr)
        return 2
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
            persona_problem = event("persona_unavailable", why=f"persona bundle refused ({str(e)[:80]})")

    try:
        parts = open_parts(cfg, data_dir)
    except (ValueError, HardwareError) as e:  # a fault the bench cannot throw, no bench installed
        print(f"error: {e}", file=sys.stderr)
        return 2
    clock, sensors = parts.clock, parts.sensors
    if cfg.sim.minutes is not None:
        flight_s = cfg.sim.minutes * 60
    elif parts.hardware.flight_s is not None:
        flight_s = parts.hardware.flight_s  # a bench flight: land, then beacon a while for the recovery team
    else:
        flight_s = float("inf")

    def open_radio():
        return make_radio(cfg.radio, clock=clock, spi_opener=parts.hardware.open_spi,
                          pin_factory=parts.hardware.pin_factory)

    daemon_ref: list = []  # the radio is opened before the daemon that reports on it exists

    def radio_changed(up: bool, error: str) -> None:
        if daemon_ref:
            daemon_ref[0].outbound.event(event("device", device="radio", before="up" if not up else "down",
                                               after="up" if up else f"down: {error[:60]}"))

    if cfg.sensors == "sim":
        try:  # on the bench a radio that will not open is a mistake to say at once
            first = open_radio()
        except RadioError as e:
            parts.close()
            print(f"error: {e}", file=sys.stderr)
            return 2
        radio = ReopeningRadio(open_radio, clock, opened=first, on_change=radio_changed)
    else:
        # In flight a radio that does not answer must not cost the rest: systemd would restart us
        # and in the end reboot, logging nothing. Fly, keep everything queued, try it again.
        radio = ReopeningRadio(open_radio, clock, on_change=radio_changed)
        if not radio.up:
            parts.problems.append(event("part_unavailable", part="radio", error=radio.error[:80]))
    stop = clock.event()
    # sd_notify: a no-op off systemd, unless `sim fly` supervises us as systemd would. On the bench's
    # lockstep clock liveness counts flight seconds: they stand for the Pi's real ones.
    notifier = SystemdNotifier()
    liveness = Liveness(clock=clock.elapsed_s) if clock.lockstep else Liveness()
    try:
        daemon = build_daemon(cfg, sensors, radio, clock, bundle, data_dir, stop, camera=parts.camera,
                              pi_health=parts.hardware.pi_health, led=parts.led, heater=parts.heater,
                              liveness=liveness, disk_usage=parts.hardware.card_usage)
    except (StoreError, KeyFileError) as e:
        radio.close()  # a serial port or GPIO pins would otherwise stay claimed
        parts.close()
        print(f"error: {e}", file=sys.stderr)
        return 2
    daemon_ref.append(daemon)

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
    launches = parts.hardware.launches
    world_clock = Path(cfg.sim.world_clock) if launches and cfg.sim.world_clock else None
    rejoin = parts.hardware.rejoined
    try:
        daemon.start(launch=launches and not rejoin)
    except PersonaError as e:
        # A model that will not load must not cost the beacon: systemd would restart and in the
        # end reboot a payload that exits here. Fly without the persona, and say so on air.
        daemon.fly_without_persona()
        daemon.start(launch=launches and not rejoin)
        if not interrupted.is_set():  # else a stop cut the load short: nothing to report
            log.error("persona_not_loaded", error=str(e))
            daemon.outbound.event(event("persona_unavailable", why=f"persona did not load ({str(e)[:80]})"))
    if persona_problem:
        daemon.outbound.event(persona_problem)
    for problem in parts.problems:
        daemon.outbound.event(problem)
    Watchdog(liveness, notifier, clock=clock.elapsed_s if clock.lockstep else time.monotonic).start(stop, clock.thread)
    notifier.ready(status=f"flying, boot {daemon.boot}")
    if world_clock is not None and not rejoin:
        tmp = world_clock.with_suffix(".tmp")
        tmp.write_text(json.dumps({"epoch_unix": clock.epoch_unix(), "speedup": clock.speedup, "seed": cfg.sim.seed}))
        os.replace(tmp, world_clock)
    log.info("flying", radio=cfg.radio.kind, to=cfg.radio.address, speedup=clock.speedup,
             flight_minutes=round(flight_s / 60, 1), data=str(data_dir))
    # Statistics are saved every flight minute: a power cut loses at most a minute of counts.
    next_stats = clock.elapsed_s() + STATS_EVERY_S
    slice_s = SIGNAL_POLL_S * clock.speedup  # flight seconds; the lockstep's waits are its own
    while not interrupted.is_set() and clock.elapsed_s() < flight_s:
        interrupted.wait(max(min(next_stats, flight_s, clock.elapsed_s() + slice_s) - clock.elapsed_s(), 0.0))
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
    """What the daemon senses and drives, on the hardware they were opened on."""

    hardware: Hardware
    camera: object | None
    led: object | None
    heater: object | None
    problems: list[Event] = field(default_factory=list)  # parts that could not be opened: events at start

    @property
    def clock(self) -> Clock:
        return self.hardware.clock

    @property
    def sensors(self):
        return self.hardware.sensors

    def close(self) -> None:
        for part in (self.led, self.heater):
            if part is not None:
                try:
                    part.close()
                except Exception as e:  # noqa: BLE001 - closed already (the daemon closes the heater): go on
                    log.debug("close_twice", part=type(part).__name__, error=str(e))
        self.hardware.close()


def open_parts(cfg, data_dir: Path) -> Parts:
    """The drivers in [devices] and [outputs], over the hardware `cfg.sensors` names
    (payload/hardware.py): on a Pi its real buses, ports and pins; on the bench (`sensors =
    "sim"`) the bench world's simulated parts behind the same drivers, so what is tested is
    the flight code. A missing part is a status, never a failed start."""
    data_dir = Path(data_dir).resolve()
    hw = open_hardware(cfg, data_dir)
    clock, pins = hw.clock, hw.pin_factory
    camera = None
    if (c := cfg.devices.camera) is not None:
        # The hang timeout is flight time; the hardware may ask for more (a bench rendering frames).
        camera = Camera(hw.camera_backend, still_dir=data_dir / c.still_dir, thumb_px=c.thumb_px,
                        thumb_max_bytes=c.thumb_max_bytes, timeout_s=max(c.timeout_s, hw.camera_min_timeout_s),
                        clock=clock.elapsed_s, flight_clock=clock)
    o = cfg.outputs
    problems: list[Event] = []

    def output(name: str, make):
        # GPIO that cannot be claimed (no pin factory, a pin in use) costs that output, never the beacon.
        try:
            return make()
        except Exception as e:  # noqa: BLE001 - gpiozero raises its own family and OSError alike
            log.error("output_unavailable", output=name, error=str(e))
            problems.append(event("part_unavailable", part=name, error=str(e)[:80]))
            return None

    led = heater = None
    if o.status_led_pin is not None:
        led = output("status LED", lambda: StatusLed(o.status_led_pin, pin_factory=pins,
                                                     time_scale=1.0 if clock.lockstep else 1.0 / clock.speedup))
    if o.heater_pin is not None:
        heater = output("battery heater", lambda: BatteryHeater(
            o.heater_pin, pin_factory=pins, on_below_c=o.heater_on_below_c, off_above_c=o.heater_off_above_c,
            max_duty=o.heater_max_duty, min_battery_mv=o.heater_min_battery_mv, clock=clock.elapsed_s))
    return Parts(hw, camera, led, heater, problems)


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())

