"""`python -m payload run` — the flight daemon. See `python -m payload run --help`."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path

import structlog

from stratoecho.bundle import BundleError, load_bundle
from stratoecho.cli import run_cli
from stratoecho.config import ConfigError
from stratoecho.wire.uplink import KeyFileError

from .clock import Clock
from .config import load_config, parse_hostport
from .daemon import Daemon
from .persona import PersonaError
from .radio import RadioError, make_radio
from .sensors import SimSensors
from .store import StoreError

log = structlog.get_logger("payload")


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
    run.add_argument("--speedup", type=float, help="with --sim: flight seconds per wall second (default 60)")
    run.add_argument("--minutes", type=float, help="flight minutes to run (default: until stopped; --sim: the whole flight)")
    run.add_argument("--seed", type=int, help="with --sim: flight seed (same seed, same flight)")
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
    data_dir = Path(args.data or cfg.data_dir)

    bundle = None
    if not args.no_persona:
        try:
            bundle = load_bundle(args.persona or cfg.persona.bundle)  # checks every sha256
        except BundleError as e:
            print(f"error: {e}\n(build one with `make persona`, or fly with --no-persona)", file=sys.stderr)
            return 2

    clock = Clock(speedup=cfg.sim.speedup if cfg.sensors == "sim" else 1.0)
    if cfg.sensors == "sim":
        sensors = SimSensors(clock, seed=cfg.sim.seed)
    else:  # the drivers in [devices]; a missing part is a status and a retry, never a failed start
        from .devices import Devices, HardwareSensors

        sensors = HardwareSensors(Devices(cfg.devices))
    camera = open_camera(cfg, sensors, clock, data_dir)
    from .pi_health import PiHealth

    pi_health = PiHealth(data_dir=str(data_dir)) if cfg.sensors == "hardware" else None
    if cfg.sim.minutes is not None:
        flight_s = cfg.sim.minutes * 60
    elif cfg.sensors == "sim":
        flight_s = sensors.flight.duration_s + 300  # land, then beacon a while for the recovery team
    else:
        flight_s = float("inf")

    try:
        radio = make_radio(cfg.radio)
    except RadioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    stop = threading.Event()
    try:
        daemon = Daemon(cfg, sensors, radio, clock, bundle, data_dir, stop=stop, camera=camera, pi_health=pi_health)
    except (StoreError, KeyFileError) as e:
        radio.close()  # a serial port or GPIO pins would otherwise stay claimed
        print(f"error: {e}", file=sys.stderr)
        return 2

    interrupted = threading.Event()

    def on_signal(signum, _frame):
        log.info("signal", signal=signal.Signals(signum).name)
        interrupted.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        daemon.start(launch=cfg.sensors == "sim")
    except PersonaError as e:
        print(f"error: {e}", file=sys.stderr)
        daemon.shutdown()
        return 2
    log.info("flying", radio=cfg.radio.kind, to=cfg.radio.address, speedup=clock.speedup, flight_minutes=round(flight_s / 60, 1), data=str(data_dir))
    last_stats = time.monotonic()
    while not interrupted.is_set() and clock.elapsed_s() < flight_s:
        interrupted.wait(min(1.0, max(clock.wall_s(flight_s - clock.elapsed_s()), 0.01)))
        if time.monotonic() - last_stats > 5:
            daemon.write_stats()
            last_stats = time.monotonic()
    daemon.shutdown(drain_s=0.0 if interrupted.is_set() else args.drain_s)
    log.info("stopped", stats=str(data_dir / "stats.json"))
    return 0



def open_camera(cfg, sensors, clock, data_dir: Path):
    """The camera [devices.camera] describes: picamera2 on the Pi, the simulated sky on the bench
    (seen from the bench world's altitude); None when the table is left out."""
    if cfg.devices.camera is None:
        return None
    from .camera import Camera, Picamera2Backend

    c = cfg.devices.camera
    if cfg.sensors == "sim":
        from sim.camera_sim import SimCameraBackend

        backend = SimCameraBackend(lambda: sensors.read().alt_m, size=(320, 240), seed=cfg.sim.seed).factory
    else:
        backend = Picamera2Backend
    return Camera(backend, still_dir=Path(data_dir) / c.still_dir, thumb_px=c.thumb_px,
                  thumb_max_bytes=c.thumb_max_bytes, timeout_s=c.timeout_s)


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())

