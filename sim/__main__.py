"""`python -m sim fly|channel` — the bench world. See --help on each."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

from stratoecho.cli import hostport_type, run_cli


def _loss(value: str):
    from .loss import LossSpec

    try:
        return LossSpec.parse(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


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
    f.add_argument("--speedup", type=float, default=60.0, help="flight seconds per wall second (default 60: a 2.5 h flight in ~2.5 min)")
    f.add_argument("--loss", type=_loss, default=_loss("0.1"), metavar="SPEC",
                   help="bursty Gilbert-Elliott loss: mean share lost, e.g. 0.3, or 0.3:burst=8 for longer bursts (default 0.1)")
    f.add_argument("--persona", type=Path, default=Path("build/persona"), metavar="BUNDLE",
                   help="persona bundle (default build/persona, which `make persona` builds from the sample corpus)")
    f.add_argument("--no-persona", action="store_true", help="fly without a language model (telemetry and events only)")
    f.add_argument("--seed", type=int, default=1, help="seed for the flight and the channel: same seed, same flight (default 1)")
    f.add_argument("--config", type=Path, metavar="FILE", help="payload configuration to start from (default: built-in bench defaults)")
    f.add_argument("--overwrite", action="store_true", help="replace a previous flight in --out")
    f.add_argument("--quiet", action="store_true", help="do not show the ground station's live output")
    f.add_argument("--no-uplink", action="store_true",
                   help="no ground-to-payload link: the ground never asks for lost fragments (no uplink.key)")
    f.set_defaults(func=cmd_fly)

    c = sub.add_parser("channel", help="the lossy radio channel alone (sim fly starts it for you)")
    c.add_argument("--listen", required=True, type=hostport_type(listen=True), metavar="HOST:PORT",
                   help="where the payload sends frames (port 0: any free port, logged as 'listening')")
    c.add_argument("--forward", required=True, type=hostport_type(), metavar="HOST:PORT", help="the ground station's UDP address")
    c.add_argument("--loss", type=_loss, default=_loss("0"), metavar="SPEC", help="as for fly (default 0)")
    c.add_argument("--seed", type=int, default=1)
    c.add_argument("--air-hex", type=Path, required=True, metavar="FILE", help="append every frame put on the air here, one hex line each")
    c.add_argument("--stats", type=Path, metavar="FILE", help="write frame counts here as JSON on exit")
    c.add_argument("--uplink-loss", type=_loss, metavar="SPEC",
                   help="loss on the way back, ground to payload (default: the same as --loss; its own random stream)")
    c.add_argument("--uplink-hex", type=Path, metavar="FILE",
                   help="append every frame the ground sends back here, one hex line each")
    c.set_defaults(func=cmd_channel)
    return parser


def cmd_fly(args: argparse.Namespace) -> int:
    from .fly import FlyError, FlyOptions, fly

    opts = FlyOptions(
        out=args.out, persona=None if args.no_persona else args.persona, minutes=args.minutes,
        speedup=args.speedup, loss=args.loss, seed=args.seed, overwrite=args.overwrite,
        config=args.config, quiet=args.quiet, uplink=not args.no_uplink,
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
        f"{report['repair']['nacks_sent']} NACKs asked for {report['repair']['items_requested']} records. "
        f"Report: {args.out / 'report.json'}",
        file=sys.stderr,
    )
    return 0


def cmd_channel(args: argparse.Namespace) -> int:
    from .channel import Channel

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        ch = Channel(args.listen, args.forward, args.loss, args.seed, args.air_hex, stop,
                     uplink_loss=args.uplink_loss, uplink_hex=args.uplink_hex)
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
