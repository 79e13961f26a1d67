"""`python -m payload run` — the flight daemon. See `python -m payload run --help`; `keygen` writes
an uplink key file."""

from __future__ import annotations

import argparse
import faulthandler
import json
import signal
import sys
import threading
from pathlib import Path

import structlog
from pydantic import ValidationError

from stratoecho.boards import board, predicted_tokens_per_s
from stratoecho.bundle import Bundle, BundleError, load_bundle
from stratoecho.cli import SIGNAL_POLL_S, run_cli
from stratoecho.config import ConfigError, describe_validation_error
from stratoecho.keygen import add_keygen_command
from stratoecho.wire.events import Event, event
from stratoecho.wire.uplink import KeyFileError

from .assembly import Parts, build_payload, open_parts
from .clock import Clock
from .config import PayloadConfig, load_config, parse_hostport
from .daemon import STOP_BUDGET_S
from .onboard import Onboard
from .parts.radio import RadioError
from .persona.wording import unguarded
from .persona.worker import PersonaError
from .policy.airplan import air_plan
from .policy.budget import candidates
from .rigs import PI, HardwareError, load_rig, rig_names
from .store import StoreError
from .watchdog import Liveness, SystemdNotifier, Watchdog

log = structlog.get_logger("payload")
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
    run.add_argument("--persona", metavar="BUNDLE", help="persona bundle directory (overrides the configuration)")
    run.add_argument("--no-persona", action="store_true", help="fly without a language model: telemetry and events only")
    run.add_argument("--udp", metavar="HOST:PORT", help="send frames to this UDP address instead of a radio (with --sim "
                                                        "and a radio chip on SPI: the simulated chip's air)")
    run.add_argument("--flight-key", "--uplink-key", dest="uplink_key", metavar="FILE",
                     help="the flight key shared with the ground (`python -m payload keygen FILE` makes one): records "
                          "go tagged with the downlink key derived from it, and the payload listens for signed "
                          "commands and repair requests (overrides uplink.key_file)")
    run.add_argument("--raw-key-ok", action="store_true",
                     help="also take a flight key in a bare form made before keygen's line (overrides "
                          "uplink.allow_raw_key): nothing shows it was drawn at random, and a warning is logged")
    run.add_argument("--no-uplink", action="store_true", help="open no listen windows (transmit only; records still "
                                                              "tagged with the flight key)")
    run.add_argument("--data", metavar="DIR", help="state directory (queue, counters); a restart resumes from it")
    run.add_argument("--minutes", type=float, help="flight minutes to run (default: until stopped; --sim: the whole flight)")
    run.add_argument("--drain-s", type=float, default=300.0, help="flight seconds to keep transmitting the queue after the "
                                                                  "flight ends (default 300)")
    for name in rig_names():  # a rig's own options (the bench's --sim, --seed, --fault ...: sim/world/rig.py)
        load_rig(name).add_arguments(run, src)
    run.set_defaults(func=cmd_run, hardware=None, base_config=None)
    plan = sub.add_parser(
        "plan", help="print a configuration's air plan: what it sends in an hour, and whether it closes",
        description=(
            "The air plan of a payload configuration, read like a link budget: seconds of air an hour for "
            "each kind of frame, positions, musings and how long they wait for the air, pictures, relaying, "
            "the headroom, and whether it closes. `run` refuses a configuration whose plan does not close; "
            "this says which setting to change. Exit status 0 when it closes, 1 when not, 2 for a bad file."),
    )
    plan.add_argument("config", metavar="CONFIG", help="payload configuration (TOML), e.g. config/payload.pi.toml")
    plan.add_argument("--json", action="store_true", help="the plan as JSON instead of a table")
    plan.add_argument("--no-persona", action="store_true", help="plan a flight without a language model (run's "
                      "--no-persona): no musings")
    plan.add_argument("--persona", metavar="BUNDLE", help="the persona bundle whose model sizes its candidate musings "
                      "(default: the configuration's [persona] bundle, where it exists here)")
    plan.add_argument("--board", metavar="BOARD", help="the board whose speed sizes them: pi-zero-2w, pi3, pi4, pi5 "
                      "(default: [persona] board, else pi-zero-2w)")
    plan.add_argument("--flight-key", action="store_true",
                      help="plan as if uplink.key_file were set (a bench configuration leaves it to sim fly): "
                           "records, windows and their parity included")
    plan.set_defaults(func=cmd_plan)
    add_keygen_command(sub, "python -m payload")
    return parser


def cmd_plan(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config)
    except (ConfigError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.flight_key and not cfg.uplink.key_file:
        cfg.uplink.key_file = "(flight key)"
    plan = air_plan(cfg, persona=not args.no_persona)
    thinking = None if args.no_persona else persona_plan(cfg, args.persona, args.board)
    if args.json:
        print(json.dumps({**plan.to_dict(), **({"persona": thinking} if thinking else {})}, indent=2))
    else:
        print(plan.table() + (f"\n  {thinking['line']}" if thinking else ""))
    return 0 if plan.closes else 1


def persona_plan(cfg: PayloadConfig, bundle_path: str | None, board_name: str | None) -> dict:
    """How many candidate musings the persona writes for each that airs on the board, and what
    they cost a musing (payload/policy/budget.py `candidates`; docs/payload.md, "Musings made of
    the owner's words"): from the bundle's model where it can be read here."""
    name = board_name or cfg.persona.board or "pi-zero-2w"
    try:
        b = board(name)
    except ValueError as e:
        return {"line": f"persona: {e}"}
    path = bundle_path or cfg.persona.bundle
    try:
        model_bytes = load_bundle(path, verify=False).model_path.stat().st_size
    except (BundleError, OSError) as e:
        return {"board": b.name, "line": f"persona: no bundle to size its musings by ({str(e)[:120]}); on board the "
                f"candidates follow the measured speed"}
    tps = predicted_tokens_per_s(b, model_bytes)
    prompt = cfg.persona.n_ctx - cfg.persona.max_tokens  # at most: the owner's lines and notes fill the context
    c = candidates(tps, cfg.schedule.musing_s, cfg.persona.max_tokens, prompt_tokens=prompt)
    n = cfg.persona.candidates or c.n
    how = "[persona] candidates" if cfg.persona.candidates else "as many as a fifth of the period allows"
    line = (f"persona: {n} candidate musing(s) for each that airs on a {b.name} ({how}): {model_bytes / 1e6:.0f} MB "
            f"model at ~{tps:.1f} tokens/s predicted, a prompt of up to {prompt} tokens ~{c.prompt_s:.0f} s, each candidate of "
            f"{cfg.persona.max_tokens} tokens ~{c.candidate_s:.0f} s: {c.prompt_s + n * c.candidate_s:.0f} s of "
            f"every {cfg.schedule.musing_s:g} s")
    return {"board": b.name, "model_bytes": model_bytes, "tokens_per_s": round(tps, 2), "candidates": n,
            "candidate_s": round(c.candidate_s, 1), "prompt_s": round(c.prompt_s, 1),
            "seconds_a_musing": round(c.prompt_s + n * c.candidate_s, 1), "line": line}


def configure(args: argparse.Namespace) -> tuple[PayloadConfig, object]:
    """The configuration with the options applied, and the rig's settings when a rig stands in
    for the Pi; ConfigError or ValueError says what will not do."""
    cfg = load_config(args.config or args.base_config)
    if args.hardware:
        cfg.sensors = args.hardware
    settings = None
    if cfg.sensors != PI:  # the rig takes its options first: --udp may be its simulated chip's air
        settings = load_rig(cfg.sensors).configure(cfg, cfg.rigs.get(cfg.sensors, {}), args)
    if args.udp:
        try:
            parse_hostport(args.udp)
        except ValueError as e:
            raise ValueError(f"--udp: {e}") from None
        cfg.radio.kind = "udp"  # --udp overrides whatever radio the configuration names
        cfg.radio.udp = args.udp
    if args.uplink_key:
        cfg.uplink.key_file = args.uplink_key
    if args.raw_key_ok:
        cfg.uplink.allow_raw_key = True
    if args.no_uplink:
        cfg.uplink.listen = False
    try:  # the options changed the configuration: it must still hold together (the key needs a window)
        cfg = PayloadConfig.model_validate(cfg.model_dump())
    except ValidationError as e:
        raise ValueError(describe_validation_error("the configuration with these options", e)) from None
    refusal = air_plan(cfg, persona=not args.no_persona).refusal()  # what it sends must arrive, in time
    if refusal:
        raise ValueError(f"{args.config or args.base_config or 'the configuration'}: {refusal}")
    return cfg, settings


def load_persona(args: argparse.Namespace, cfg: PayloadConfig) -> tuple[Bundle | None, Event | None]:
    """The persona bundle, every sha256 checked, and the event to say on air when it was refused.
    On a rig a bundle that will not load is a mistake to say at once (BundleError); in flight it
    must not cost the beacon: fly without it."""
    if args.no_persona:
        return None, None
    try:
        return load_bundle(args.persona or cfg.persona.bundle), None
    except BundleError as e:
        if cfg.sensors != PI:
            raise
        log.error("persona_bundle_refused", error=str(e))
        return None, event("persona_unavailable", why=f"persona bundle refused ({str(e)[:80]})")


def cmd_run(args: argparse.Namespace) -> int:
    try:
        cfg, settings = configure(args)
    except (ConfigError, ValueError, HardwareError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    data_dir = Path(args.data or cfg.data_dir)
    try:
        bundle, persona_problem = load_persona(args, cfg)
    except BundleError as e:
        print(f"error: {e}\n(build one with `make persona`, or fly with --no-persona)", file=sys.stderr)
        return 2
    if bundle is not None and (note := unguarded(bundle.manifest.persona.language)):
        # Also logged (persona_language_unguarded), but a log under `sim fly` or systemd is a file nobody reads at start.
        print(f"warning: {note}", file=sys.stderr)
    try:
        parts = open_parts(cfg, data_dir, settings)
    except (ValueError, HardwareError) as e:  # a fault the bench cannot throw, no rig installed
        print(f"error: {e}", file=sys.stderr)
        return 2
    liveness = Liveness(clock=parts.clock.liveness_time)
    try:
        onboard = build_payload(cfg, parts, bundle, data_dir, liveness)
    except (StoreError, KeyFileError, RadioError) as e:
        parts.hardware.close()
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.minutes is not None:
        flight_s = args.minutes * 60
    else:  # a rig's flight lands, then beacons a while for the recovery team; the Pi's runs until stopped
        flight_s = parts.hardware.flight_s if parts.hardware.flight_s is not None else float("inf")
    fly(onboard, parts, liveness, flight_s, args.drain_s, [p for p in (persona_problem,) if p] + parts.problems)
    parts.hardware.close()
    faulthandler.cancel_dump_traceback_later()
    log.info("stopped", stats=str(data_dir / "stats.json"))
    return 0


def fly(onboard: Onboard, parts: Parts, liveness: Liveness, flight_s: float, drain_s: float,
        problems: list[Event]) -> None:
    """Start the daemon, say it is ready, wait for a signal or the flight's end, then stop it
    (draining the queue first when the flight ended by itself)."""
    clock = parts.clock
    interrupted = clock.event()
    _stop_on_signals(onboard, interrupted, clock)
    try:
        onboard.start(launch=parts.hardware.launches)
    except PersonaError as e:
        # A model that will not load must not cost the beacon: systemd would restart and in the
        # end reboot a payload that exits here. Fly without the persona, and say so on air.
        onboard.fly_without_persona()
        onboard.start(launch=parts.hardware.launches)
        if not interrupted.is_set():  # else a stop cut the load short: nothing to report
            log.error("persona_not_loaded", error=str(e))
            onboard.parts.flight.outbound.event(event("persona_unavailable", why=f"persona did not load ({str(e)[:80]})"))
    for problem in problems:
        onboard.parts.flight.outbound.event(problem)
    # sd_notify: a no-op off systemd, unless `sim fly` supervises us as systemd would.
    notifier = SystemdNotifier()
    Watchdog(liveness, notifier, clock=clock.liveness_time).start(onboard.daemon.stop, clock.thread)
    notifier.ready(status=f"flying, boot {onboard.parts.flight.boot}")
    if parts.hardware.flying is not None:
        parts.hardware.flying()
    log.info("flying", radio=onboard.cfg.radio.kind, to=onboard.cfg.radio.address, clock=clock.describe(),
             flight_minutes=round(flight_s / 60, 1), data=str(onboard.data_dir))
    slice_s = clock.flight_s(SIGNAL_POLL_S)  # flight seconds; the lockstep's waits are its own
    while not interrupted.is_set() and clock.elapsed_s() < flight_s:
        interrupted.wait(max(min(flight_s, clock.elapsed_s() + slice_s) - clock.elapsed_s(), 0.0))
    # STOPPING=1 once the stop itself begins: after a rig's end-of-flight drain (a flight that
    # ends by itself is a rig's; on the Pi only a signal stops us, and then there is no drain).
    onboard.daemon.shutdown(drain_s=0.0 if interrupted.is_set() else drain_s, abort=interrupted,
                            on_stopping=notifier.stopping)


def _stop_on_signals(onboard: Onboard, interrupted: threading.Event, clock: Clock) -> None:
    """SIGTERM and SIGINT set `interrupted` and cut a model load or a musing short."""
    interrupted_before: list[int] = []

    def on_signal(signum, _frame):
        log.info("signal", signal=signal.Signals(signum).name)
        interrupted.set()
        if onboard.parts.worker is not None:
            onboard.parts.worker.cancel()  # a model still loading, or a musing under way, ends now
        if clock.system_deadlines_hold() and not interrupted_before:
            # Last resort, off the bench's clock: a stop that overruns writes every thread's stack
            # to the journal and exits before systemd's SIGKILL at TimeoutStopSec, which tells nothing.
            faulthandler.dump_traceback_later(STOP_BUDGET_S + STOP_SLACK_S, exit=True)
        interrupted_before.append(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())

