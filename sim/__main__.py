"""`python -m sim fly|channel` — the bench world. See --help on each."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
import threading
from pathlib import Path

from stratoecho.cli import checked, hostport_type, number, positive_number, run_cli

from .channel.loss import LossSpec
from .channel.radio import GroundStation, LoRaMode

# argparse types: the parser's ValueError is the usage error
_loss = checked(LossSpec.parse)
_station = checked(GroundStation.parse)
_lora = checked(LoRaMode.parse)
_probability = number("a probability in [0, 1]", 0, 1)


def _outage(value: str) -> tuple[float, float]:
    start, sep, end = value.partition(":")
    try:
        window = (float(start), float(end))
    except ValueError:
        window = None
    if not sep or window is None or window[1] <= window[0]:
        raise argparse.ArgumentTypeError(f"outage {value!r}: expected START_S:END_S in flight seconds, end after start")
    return window


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sim", description="The bench world around the payload.")
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO (default), WARNING or ERROR")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    f = sub.add_parser(
        "fly",
        help="a whole bench flight: payload, lossy channel and ground station over loopback UDP",
        description=(
            "Fly a simulated balloon: ascent at 5 m/s, burst at 30-35 km, descent under a parachute. "
            "Payload, channel and ground station run as separate processes; the ground station's "
            "output is shown live. Writes OUT/report.json, OUT/air.hex (every frame put on the air), "
            "OUT/uplink.hex (every NACK the ground sent back), OUT/ground.db and OUT/musings.txt."
        ),
    )
    f.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder for the report, air.hex and databases")
    f.add_argument("--minutes", type=float, help="flight minutes to fly (default: the whole flight until landing + 5 min)")
    f.add_argument("--speedup", type=_speedup, default=60.0, metavar="N|max",
                   help="at most N flight seconds per wall second, or 'max': as fast as this machine allows "
                        "(default 60: a 2.5 h flight in ~2.5 min). The flight is the same at any speed-up: "
                        "the bench's clock waits for the slowest process. 1 is real time on the system's clock")
    f.add_argument("--loss", type=_loss, default=_loss("0.1"), metavar="SPEC",
                   help="bursty Gilbert-Elliott loss: mean share lost, e.g. 0.3, or 0.3:burst=8 for longer bursts (default 0.1)")
    f.add_argument("--persona", type=Path, default=Path("build/persona"), metavar="BUNDLE",
                   help="persona bundle (default build/persona, which `make persona` builds from the sample corpus)")
    f.add_argument("--no-persona", action="store_true", help="fly without a language model (telemetry and events only)")
    f.add_argument("--seed", type=int, default=1, help="seed for the flight and the channel: same seed, same flight (default 1)")
    f.add_argument("--config", type=Path, metavar="FILE",
                   help="payload configuration to fly, e.g. config/payload.pi.toml: its radio, intervals and budgets, "
                        "with the bench's parts in place of the hardware (default: built-in bench defaults)")
    f.add_argument("--unit", type=Path, default=None, metavar="FILE",
                   help="the systemd unit whose contract the payload flies under: READY=1, WatchdogSec, Restart, "
                        "start limits, TimeoutStopSec, Environment (default: the shipped "
                        "systemd/stratoecho-payload.service)")
    f.add_argument("--no-unit", action="store_true",
                   help="fly the payload unsupervised: no watchdog, and any exit but the flight's end fails the flight")
    f.add_argument("--overwrite", action="store_true", help="replace a previous flight in --out")
    f.add_argument("--quiet", action="store_true", help="do not show the ground station's live output")
    f.add_argument("--no-uplink", action="store_true",
                   help="no ground-to-payload link: the ground never asks for lost fragments, and every record "
                        "goes with the parity radio.fec_target asks for. The bench's defaults then need more air "
                        "than their 10 %% duty cycle with a persona musing every 3 minutes, and the payload's air "
                        "plan refuses them: add --no-persona, or --config a file with fewer musings")
    f.add_argument("--scenario", default="nominal", metavar="NAME",
                   help="a named rehearsal (python -m sim scenarios lists them): nominal (default), cold-soak, "
                        "blackout, gps-loss, sensor-faults, brownout, ground-restart, service-restart, night, orbit, "
                        "two-balloons")
    f.add_argument("--fault", action="append", default=[], metavar="DEVICE:ACTION@START[-END]",
                   help="throw a fault at a simulated part in flight time, beside the scenario's: gps:silence@40m-55m, "
                        "gps:garbage, gps:reset, camera:hang|unplug, i2c:hang, radio:unplug (a LoRa chip on SPI), and "
                        "any I2C sensor the configuration fits (bme280, bme280_box, ina219, a maker's): "
                        "NAME:unplug|stick|impossible")
    f.add_argument("--no-api-proxy", action="store_true",
                   help="the ground does not answer the persona's questions (weather, a word, the news); by "
                        "default it asks the real APIs, and without internet it answers 'offline'")
    f.add_argument("--no-path-loss", action="store_true",
                   help="only the --loss bursts: no distance, horizon or fading from the radio model")
    f.add_argument("--no-relay", action="store_true",
                   help="in a scenario of several balloons (two-balloons), none relays for the others: what the "
                        "ground cannot hear directly is lost (docs/network.md)")
    f.add_argument("--hang-after", type=positive_number("seconds"), default=None, metavar="S",
                   help="wall seconds one process may hold the bench clock's turn (a model load or one generation "
                        "included) before the flight fails as hung (default 120); more on an emulated machine")
    f.set_defaults(func=cmd_fly)

    so = sub.add_parser(
        "soak", help="fly a configuration for hours under its systemd unit and judge the day",
        description=(
            "Fly CONFIG (default config/payload.pi.toml: the Pi's radio, intervals and budgets, with the "
            "bench's parts for the hardware) for --hours of flight time on the bench's clock, under the "
            "contract of systemd/stratoecho-payload.service, then check: no watchdog kill, restart or stop "
            "timeout; no sliding hour over the duty cycle; no beacon gap beyond its interval plus one frame; "
            "payload memory growing less than 5 %% from its first to its last hour. Prints a table, writes "
            "OUT/soak.json, exits 1 on any failure. `make soak` runs 24 hours."),
    )
    so.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder (as sim fly --out)")
    so.add_argument("--hours", type=float, default=24.0, help="flight hours (default 24)")
    so.add_argument("--config", type=Path, default=Path("config/payload.pi.toml"), metavar="FILE",
                    help="payload configuration (default config/payload.pi.toml)")
    so.add_argument("--persona", type=Path, default=Path("build/persona"), metavar="BUNDLE",
                    help="persona bundle (default build/persona: `make persona`)")
    so.add_argument("--no-persona", action="store_true", help="soak without a language model")
    so.add_argument("--seed", type=int, default=1, help="flight seed (default 1)")
    so.add_argument("--speedup", type=_speedup, default=None, metavar="N|max",
                    help="as sim fly: 'max' (default) on the bench's clock, 1 for a soak at real time")
    so.add_argument("--overwrite", action="store_true", help="replace a previous soak in --out")
    so.set_defaults(func=cmd_soak)

    sc = sub.add_parser("scenarios", help="list the named rehearsals sim fly --scenario runs")
    sc.set_defaults(func=cmd_scenarios)

    rp = sub.add_parser("report", help="a bench flight's report.json in words",
                        description="Print what a finished `sim fly` flight did: delivery, loss, modes, faults, energy, "
                                    "and whether its musings were worth reading (measured afresh from DIR/payload.log).")
    rp.add_argument("out", type=Path, metavar="DIR", help="the flight's output folder (sim fly --out)")
    rp.add_argument("--json", action="store_true",
                    help="print report.json instead of words, its musings section measured afresh from payload.log")
    rp.set_defaults(func=cmd_report)

    c = sub.add_parser(
        "channel", help="the lossy radio channel alone (sim fly starts it for you)",
        description=(
            "Relay UDP frames between the payload and one or more ground stations through a simulated "
            "radio path: radio horizon, terrain masks, LoRa link budget, Gilbert-Elliott bursts, bit errors, "
            "duplicates, reordering, outages and the payload's half duplex, all driven by flight time. "
            "With several balloons (--balloons, or a scenario that flies more) they share the air: each has "
            "its own listening port (logged in 'listening' as 'balloons', balloon 0's on --listen) and its own "
            "air-N.hex/air-N.times beside --air-hex; each hears the others (and is sent what it hears at the "
            "address it last sent from), frames that overlap on the air collide (the stronger survives "
            "only with 6 dB to spare), and uplink goes to every balloon in reach."
        ),
    )
    c.add_argument("--listen", required=True, type=hostport_type(listen=True), metavar="HOST:PORT",
                   help="where the payload (balloon 0) sends frames (port 0: any free port, logged as 'listening'); "
                        "other balloons get free ports on the same host")
    c.add_argument("--balloons", type=number("a whole number of at least 1", 1, whole=True), default=None, metavar="N",
                   help="payloads sharing the air (default: 1, or 1 + the --scenario's other balloons); balloon "
                        "N's track is the scenario's balloon N, or without one the bench flight of --seed + 1000*N")
    c.add_argument("--forward", required=True, action="append", type=hostport_type(), metavar="HOST:PORT",
                   help="a ground station's UDP address; repeat to pair one with each --station in order "
                        "(one --forward for several stations: all send there)")
    c.add_argument("--loss", type=_loss, default=_loss("0"), metavar="SPEC",
                   help="Gilbert-Elliott fading on top of the link budget, as for fly (default 0)")
    c.add_argument("--seed", type=int, default=1, help="seed for the losses and for the balloon's flight (default 1)")
    c.add_argument("--air-hex", type=Path, required=True, metavar="FILE",
                   help="append every frame put on the air here, one hex line each, and to the .times file beside "
                        "it the flight second it was heard and its time on air (from the settings a simulated chip "
                        "keyed it with); balloon N >= 1 writes air-N.hex and air-N.times in the same folder")
    c.add_argument("--stats", type=Path, metavar="FILE",
                   help="write frame counts, per-station blocks and a per-minute timeline here as JSON on exit; "
                        "with several balloons also 'balloons' (each one's counts and stations) and 'peers' "
                        "(what each balloon heard of each other: in, delivered, lost_by, unaddressed)")
    c.add_argument("--uplink-loss", type=_loss, metavar="SPEC",
                   help="loss on the way back, ground to payload (default: the same as --loss; its own random stream)")
    c.add_argument("--uplink-port", type=int, action="append", default=[], metavar="PORT",
                   help="the port each station (in order) sends its uplink to, its listen --uplink-to "
                        "(default: any free port)")
    c.add_argument("--uplink-hex", type=Path, metavar="FILE",
                   help="append every frame the ground sends back here, one hex line each")
    c.add_argument("--world-clock", type=Path, metavar="FILE",
                   help='flight time from this JSON file, {"epoch_unix": s, "speedup": x}, written by the bench world '
                        "at launch (on the pad until it appears); default: the relay's own start and --speedup")
    c.add_argument("--speedup", type=float, default=60.0,
                   help="flight seconds per wall second without --world-clock (default 60)")
    c.add_argument("--scenario", metavar="NAME",
                   help="fly the track of this sim scenario (its launch date sets the winds; orbit is an orbit); "
                        "overrides --profile")
    c.add_argument("--profile", choices=("balloon", "orbit"), default="balloon",
                   help="what carries the payload: the --seed's bench balloon flight, or a 500 km, 51.6 deg orbit")
    c.add_argument("--station", action="append", type=_station, metavar="NAME:LAT:LON[:ALT_M[:MASK_DEG]]",
                   help="a ground station, degrees and metres above ground; MASK_DEG: terrain (hills, buildings) "
                        "hides everything below this elevation, counted as loss 'terrain' (default 0); repeatable "
                        "(default: 'home' at the launch site)")
    c.add_argument("--outage", action="append", type=_outage, default=[], metavar="START_S:END_S",
                   help="flight seconds during which nothing passes either way; repeatable")
    c.add_argument("--ber", type=_probability, default=0.0, metavar="P",
                   help="bit error rate floor, on top of what the link margin gives (default 0)")
    c.add_argument("--duplicate", type=_probability, default=0.0, metavar="P",
                   help="chance a delivered frame arrives twice, the copy up to 2 flight seconds later (default 0)")
    c.add_argument("--reorder", type=_probability, default=0.0, metavar="P",
                   help="chance a delivered frame is held back and delivered after the next one (default 0)")
    c.add_argument("--tx-dbm", type=float, default=10.0, help="transmit power at both ends, dBm (default 10: 10 mW)")
    c.add_argument("--freq-mhz", type=float, default=434.0, help="carrier frequency, MHz (default 434)")
    c.add_argument("--lora", type=_lora, default=None, metavar="SF/BW_HZ/CR",
                   help="LoRa mode for sensitivity and time on air, e.g. 11/20800/8 (default 9/125000/5, the bench payload's)")
    c.add_argument("--no-path-loss", action="store_true",
                   help="no horizon and no link budget: only the Gilbert-Elliott loss (for exact loss rates)")
    c.add_argument("--frames-at-end", action="store_true",
                   help="each frame arrives when its last symbol has gone (the payload flies a simulated LoRa "
                        "chip), not when it is keyed (a UDP radio)")
    c.add_argument("--no-half-duplex", action="store_true",
                   help="let the payload hear uplink frames while it transmits")
    c.set_defaults(func=cmd_channel)
    return parser


def _speedup(text: str) -> float | None:
    from .bench.run.timekeeper import speedup_arg

    try:
        return speedup_arg(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number or 'max'") from e


def cmd_soak(args: argparse.Namespace) -> int:
    from .bench.fly import FlyError
    from .bench.measure.soak import soak

    try:
        verdict = soak(args.out, args.config, args.hours, None if args.no_persona else args.persona,
                       seed=args.seed, overwrite=args.overwrite, speedup=args.speedup)
    except FlyError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(verdict.table())
    return 0 if verdict.ok else 1


def cmd_fly(args: argparse.Namespace) -> int:
    from .bench.fly import FlyError, FlyOptions, fly
    from .bench.run.supervisor import PAYLOAD_UNIT

    opts = FlyOptions(
        out=args.out, persona=None if args.no_persona else args.persona, minutes=args.minutes,
        speedup=args.speedup, loss=args.loss, seed=args.seed, overwrite=args.overwrite,
        config=args.config, quiet=args.quiet, uplink=not args.no_uplink, scenario=args.scenario,
        faults=args.fault, path_loss=not args.no_path_loss, api_proxy=not args.no_api_proxy,
        unit=None if args.no_unit else (args.unit or PAYLOAD_UNIT), relay=not args.no_relay,
        **({"hang_after_s": args.hang_after} if args.hang_after is not None else {}),
    )
    try:
        report = fly(opts)
    except FlyError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    m, t, fr = report["musings"], report["telemetry"], report["frames"]
    print(
        f"\nflight over: {m['delivered']}/{m['generated']} musings and {t['received']}/{t['sent']} "
        f"telemetry sentences reached the ground; {fr['received']}/{fr['sent']} frames; "
        f"{report['airtime_s']:.0f} s on air; {report['energy_wh']:.2f} Wh; "
        f"{report['repair']['nacks_sent']} NACKs asked for {report['repair']['items_requested']} records; "
        f"{report['flight_s'] / 60:.0f} flight minutes in {report['wall_s']:.0f} s "
        f"({report['achieved_speedup']}x). Report: {args.out / 'report.json'}",
        file=sys.stderr,
    )
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    path = args.out / "report.json"
    try:
        r = json.loads(path.read_text())
    except FileNotFoundError:
        print(f"error: no {path}: fly first (python -m sim fly --out {args.out})", file=sys.stderr)
        return 2
    except json.JSONDecodeError as e:
        print(f"error: {path} is not JSON ({e}); the flight may not have finished", file=sys.stderr)
        return 2
    if (args.out / "payload.log").exists():
        from .bench.report.musing_report import musings_section

        # Measured now, not read back: a flight flown before a change to the measure reads by the new one.
        bundle = Path(r["persona"]) if isinstance(r.get("persona"), str) else None  # whose [owner] substance reads against
        r.setdefault("musings", {}).update(musings_section(args.out, persona=bundle is not None, bundle=bundle))
    print(json.dumps(r, indent=2, ensure_ascii=False) if args.json else describe_report(r, args.out))
    return 0


def describe_report(r: dict, out: Path) -> str:
    from .bench.report.flight_report import describe_faults
    from .bench.report.musing_report import describe_musings

    m, t, f = r["musings"], r["telemetry"], r["frames"]
    lines = [
        f"{r.get('scenario', 'nominal')} flight, seed {r['seed']}: {r['flight_s'] / 60:.0f} flight minutes in "
        f"{r['wall_s']:.0f} s, up to {r['max_alt_m'] / 1000:.1f} km, {r.get('payload_boots', 1)} boot(s)",
        f"  musings    {m['delivered']}/{m['generated']} delivered ({m['dropped_by_guard']} held back by the guard)",
        *describe_musings(m),
        f"  telemetry  {t['received']}/{t['sent']} sentences heard; frames {f['received']}/{f['sent']}",
    ]
    gw = r.get("gateway")
    if gw is not None:
        verdict = ("every one within a stock LoRa gateway's rules" if not gw["violations"]
                   else f"{gw['violations']} break a stock LoRa gateway's rules, first: {gw['first'][0]}")
        lines.append(f"  gateway    {gw['lines']} $$ lines on air, longest {gw['longest']} bytes: {verdict}")
    if r.get("air"):
        from .bench.report.air_report import describe_air

        lines += describe_air(r["air"])
    loss = r.get("loss") or {}
    if loss:
        gap = loss.get("longest_telemetry_gap") or {}
        lines.append(f"  link       {loss.get('lost_share', 0):.0%} of frames lost; longest silence "
                     f"{gap.get('s') or 0:.0f} s; {r['repair']['nacks_sent']} repair requests")
    modes = (r.get("modes") or {}).get("seconds") or {}
    if modes:
        total = sum(modes.values()) or 1
        lines.append("  modes      " + ", ".join(f"{k} {v / total:.0%}" for k, v in modes.items()))
    lines.append("  faults     " + describe_faults((r.get("faults") or {}).get("by_device") or []))
    world = r.get("world") or {}
    energy = r.get("energy") or {}
    if world:
        lines.append(f"  battery    {world.get('energy_used_wh', 0):.2f} Wh used; lowest "
                     f"{energy.get('battery_v_min') or 0:.2f} V seen at the ground; battery at "
                     f"{world.get('battery_temp_c', 0):.0f} degC at the end")
    for a in r.get("actions") or []:
        lines.append(f"  at {a['t_s'] / 60:.0f} min: {a['action']}")
    lines.append(f"  picture    {out / 'flight.svg'}    musings {out / 'musings.txt'}")
    return "\n".join(lines)


def cmd_scenarios(args: argparse.Namespace) -> int:
    from .world.scenarios import SCENARIOS

    for s in SCENARIOS.values():
        length = f"{s.minutes:g} min" if s.minutes else "whole flight"
        print(f"{s.name:15} {length:>12}  {s.summary}")
    return 0


def _track(world):
    """(lat, lon, alt_m) of flight seconds, for a scenario's flight or its orbit stand-in."""
    return world.orbit.position if hasattr(world, "orbit") else lambda t: (*world.position(t), world.altitude_m(t))


def _channel_tracks(args: argparse.Namespace) -> list:
    """One track per balloon on the air; ValueError says what is wrong with the options."""
    from .bench.run.relay import balloon_position

    if args.scenario:
        from .world.scenarios import balloon_seed, flight_for, scenario

        try:
            n = args.balloons or 1 + len(scenario(args.scenario).balloons)
            return [_track(flight_for(args.scenario, balloon_seed(args.scenario, args.seed, b), b)) for b in range(n)]
        except ValueError as e:
            raise ValueError(f"--scenario: {e}") from e
    n = args.balloons or 1
    if args.profile == "orbit":
        if n > 1:
            raise ValueError("--balloons: only balloons fly together (--profile orbit has one payload)")
        from .world.orbit import Orbit

        return [Orbit().position]
    # Other balloons fly the bench flight of their own seed, as a scenario's Balloon does by default.
    return [balloon_position(args.seed + 1000 * b) for b in range(n)]


def cmd_channel(args: argparse.Namespace) -> int:
    from .bench.run.relay import Channel, WorldClock, launch_station
    from .channel.radio import ChannelConfig

    stations = args.station or [launch_station(args.seed)]
    if len(args.forward) not in (1, len(stations)):
        print(f"error: {len(args.forward)} --forward for {len(stations)} stations: give one, or one per --station",
              file=sys.stderr)
        return 2
    forwards = args.forward if len(args.forward) == len(stations) else args.forward * len(stations)
    stations = [dataclasses.replace(s, forward=f) for s, f in zip(stations, forwards)]
    try:
        positions = _channel_tracks(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        config = ChannelConfig(
            path_loss=not args.no_path_loss, freq_mhz=args.freq_mhz, tx_dbm=args.tx_dbm,
            lora=args.lora or LoRaMode(), ber=args.ber, duplicate=args.duplicate, reorder=args.reorder,
            outages=tuple(args.outage), half_duplex=not args.no_half_duplex, frames_at_end=args.frames_at_end,
        )
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from stratoecho.clock import ENV, flight_clock

    bench = flight_clock(name="channel") if os.environ.get(ENV) else None  # `sim fly`'s lockstep
    stop = bench.event() if bench is not None else threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        ch = Channel(args.listen, args.forward[0], args.loss, args.seed, args.air_hex, stop, uplink_ports=args.uplink_port,
                     uplink_loss=args.uplink_loss, uplink_hex=args.uplink_hex, stations=stations,
                     positions=positions, config=config, clock=WorldClock(args.world_clock, args.speedup),
                     bench=bench)
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    ch.run()
    ch.close(args.stats)
    print(json.dumps({"channel": vars(ch.stats)}), file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
