"""`python -m groundstation listen|decode|keygen` — see each command's --help."""

from __future__ import annotations

import argparse
import sys
import threading
from collections import Counter
from pathlib import Path

from stratoecho.cli import hostport_type, positive_number, run_cli
from stratoecho.config import ConfigError
from stratoecho.keygen import add_keygen_command
from stratoecho.wire.uplink import KeyFileError

from .assembly import StartError, build_listener
from .config import ground_config, station_file, unset_listen_defaults
from .display import format_json, format_summary
from .frame_quota import add_frame_quota_arguments
from .link.flights import Flights
from .link.keys import (
    add_follow_arguments,
    add_key_arguments,
    build_flights,
    downlink_check,
    followed_checks,
    keys_from_args,
)
from .predict import add_chase_arguments
from .sources import ReplaySource, SourceError
from .sources.registry import add_source_flags

LISTEN_EXAMPLES = """\
examples:
  python -m groundstation listen --config /etc/stratoecho/ground.toml        # a station's file (config/ground.toml)
  python -m groundstation listen --config ground.toml --db try.db --quiet    # ... with flags over its keys
  python -m groundstation listen --udp 127.0.0.1:7355 --db flight.db       # bench payload
  python -m groundstation listen --serial /dev/ttyUSB0 --baud 57600 --db flight.db
  python -m groundstation listen --serial /dev/ttyACM0 --kiss --db flight.db      # KISS TNC
  python -m groundstation listen --serial /dev/ttyUSB0 --raw --baud 9600 --db flight.db   # Ebyte module
  python -m groundstation listen --replay out/air.hex --db replay.db --json
  python -m groundstation listen --gateway gateway.local:6004 --db flight.db   # a LoRa gateway's JSON port
  python -m groundstation listen --gateway-udp 7777 --db flight.db     # ... or its UDPPort broadcast
  python -m groundstation listen --horus-udp --db flight.db             # horus-gui's PAYLOAD_SUMMARY, port 55672
  python -m groundstation listen --lora sx127x --spi-device 1 --dio0-pin 25 --frequency-mhz 434.225 \
      --lora-mode 2 --db flight.db                                       # an RFM98W HAT in the CE1 slot
  python -m groundstation listen --lora sx126x --busy-pin 6 --dio1-pin 26 --reset-pin 12 --tcxo-voltage 1.8 \
      --frequency-mhz 434.225 --lora-mode 2 --db flight.db --flight-key uplink.key   # an SX1262 module
  python -m groundstation listen --udp :7355 --db flight.db --flight-key uplink.key \
      --uplink-to 192.168.1.40:7356                                      # a LoRa bridge on the network: ask for losses
  python -m groundstation listen --serial /dev/ttyUSB0 --db flight.db --sondehub-uploader M0ABC --ssdv-upload
  python -m groundstation listen --serial /dev/ttyACM0 --kiss --db flight.db --flight-key uplink.key
  python -m groundstation listen --serial /dev/ttyUSB0 --db ground.db --flight-key near1.key --callsign NEAR1 \
      --follow FAR1=far1.downlink --station home       # FAR1 too, in ground.FAR1.db, heard directly or via NEAR1
exit status: 0 after a clean stop; 1 if the source or database cannot be used; 2 for a usage error
or a configuration file that will not do (named, with the key and what was expected)
"""
HEX_FORMAT = (
    "Hex format (air.hex): one frame a line as a hex string, optionally followed by the radio's "
    "signal report (`HEX rssi=-112.5 snr=-7.25`, kept with the frame); blank lines and lines "
    "starting with # are ignored; lines that are not hex are counted and skipped."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m groundstation",
        description=(
            "The stratoecho ground station: hear the balloon's frames, decode and reassemble "
            "them, keep them in SQLite and show musings and telemetry as they arrive."
        ),
    )
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO (default), WARNING or ERROR")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    listen = sub.add_parser(
        "listen", help="receive frames, store them in SQLite and print records as they arrive",
        description=(
            "Receive frames from one source, decode and reassemble them, store every frame and "
            "every new record in the database, and print each new record on standard output. "
            "Runs until Ctrl-C or SIGTERM (a replay ends at the end of its file), then prints a "
            "summary (frames, records, errors by reason) on standard error. " + HEX_FORMAT
        ),
        epilog=LISTEN_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    listen.add_argument("--config", type=Path, metavar="FILE",
                        help="the station's configuration (TOML; config/ground.toml is an annotated example, "
                             "docs/ground.md describes it): every option below overrides its key there")
    add_source_flags(listen)  # --udp, --serial, --replay, ... --lora: one source, each registered's flags
    listen.add_argument("--db", metavar="FILE",
                        help="SQLite database to store into (created if missing; safe to reuse: "
                             "records already there are not stored or printed twice); required, here or "
                             "as [database] path in --config")
    share = listen.add_argument_group(
        "sharing (as telemetry and pictures arrive)",
        "Upload each new position to SondeHub's amateur database with the station's details and the "
        "frame's signal (never a position without a fix; batched; retried only on server errors; one the "
        "server will not take never holds up the rest), and the station itself, with --sondehub-position, "
        "for SondeHub's map; upload each new SSDV picture packet to the SSDV server (ssdv.habhub.org), "
        "which puts the pictures together from every station's packets; and send each position as a "
        "JSON datagram to chase-car mapping tools (chasemapper and the Horus tools listen on UDP port 55672).")
    share.add_argument("--sondehub-uploader", metavar="CALL",
                       help="your callsign as the uploader: turns on the SondeHub upload")
    share.add_argument("--sondehub-url", metavar="URL", default=None,
                       help="SondeHub's amateur telemetry endpoint (default: the public one; the station "
                            "goes to its sibling, .../listeners)")
    from .exports import SSDV_URL, add_station_arguments

    add_station_arguments(share)  # --sondehub-position, -radio, -antenna, -email, -mobile, -frequency, -modulation
    share.add_argument("--ssdv-upload", metavar="CALL", nargs="?", const="",
                       help="upload each SSDV picture packet heard to the SSDV server, as received by CALL; "
                            "alone, with the callsign of --sondehub-uploader")
    share.add_argument("--ssdv-url", metavar="URL", default=None,
                       help=f"with --ssdv-upload: the SSDV server's packets endpoint (default: the public one, "
                            f"{SSDV_URL})")
    share.add_argument("--udp-feed", metavar="HOST:PORT", type=hostport_type(),
                       help="send each new position to this UDP address (e.g. 127.0.0.1:55672 for chasemapper)")
    share.add_argument("--udp-broadcast", action="store_true", help="with --udp-feed: a broadcast address")
    share.add_argument("--udp-feed-landing", action="store_true",
                       help="with --udp-feed: also send the predicted landing (every 30 s of flight), as a payload "
                            "named CALL-LANDING on the ground where the balloon will come down, for a chase-car map "
                            "with no internet for its own predictor; --burst-alt and --descent-rate set it up")
    add_chase_arguments(share, None)  # --burst-alt, --descent-rate
    listen.add_argument("--quiet", action="store_true", help="print no records, only the final summary")
    listen.add_argument("--json", action="store_true",
                        help="print one JSON object a line per record (with received_at) instead of text")
    listen.add_argument("--duration", type=positive_number("seconds"), metavar="SECONDS",
                        help="stop after this many seconds (for scripted runs)")
    listen.add_argument("--until-idle", type=positive_number("seconds"), metavar="SECONDS",
                        help="stop once no frame has arrived for this many seconds")
    add_key_arguments(listen)
    add_follow_arguments(listen)
    repair = listen.add_argument_group(
        "repair and commands (--udp with --uplink-to, --serial or --lora)",
        "With --flight-key, each window cue the payload sends (tagged: it listens for a few seconds "
        "after it) is answered with signed commands: a link report, what the operator queued, RESEND "
        "for missing fragments and records, ACK for what is held. They go over --serial out of the "
        "same port, as one hex line and newline per frame (the bridge must transmit each line it is "
        "given as one packet), as a KISS data frame (--kiss), or as the frame's bytes (--raw); over "
        "--lora as one packet from the HAT; over --udp only to --uplink-to, never to whoever sent a "
        "datagram. The counter state lives next to the database (DB.uplink.json). Without the flight "
        "key nothing is ever sent; --replay and --downlink-key never send.")
    repair.add_argument("--uplink-to", metavar="HOST:PORT", type=hostport_type(),
                        help="with --udp: the LoRa bridge that transmits the uplink (one datagram a frame); "
                             "without it a --udp station only receives")
    repair.add_argument("--callsign", metavar="CALL",
                        help="the payload's callsign (its payload.toml's `callsign`), which commands are signed for. "
                             "Without it: the callsign the payload's tagged boot event named, or after a restart the "
                             "one this key signed for before; never one a position sentence names (anyone can send "
                             "one). Until a tagged frame names it, windows go unanswered: give it")
    repair.add_argument("--uplink-skip-past", type=int, metavar="N",
                        help="after losing the counter state (DB.uplink.json): the payload's last accepted "
                             "counter, from its health records (uplink_counter); signing goes on from N+1. "
                             "Needs --callsign")
    repair.add_argument("--tag-len", type=int, default=8, choices=range(4, 33), metavar="BYTES",
                        help="bytes of HMAC tag on each command, 4..32 (default 8; must match the payload's uplink.tag_len)")
    repair.add_argument("--uplink-mtu", type=int, default=255, choices=range(32, 256), metavar="BYTES",
                        help="largest uplink frame, 32..255 (default 255; must not exceed the payload's radio.mtu: "
                             "58 for an E32 module with 58-byte packets)")
    listen.add_argument("--stats", type=Path, metavar="FILE",
                        help="write counts (frames, records, nacks_sent, items_requested...) here as JSON on exit")
    add_frame_quota_arguments(listen)  # --source-quota-mb, --quota-total-mb
    listen.set_defaults(func=cmd_listen)

    decode = sub.add_parser(
        "decode", help="decode a file of hex frames into JSON records",
        description=(
            "Read frames (one hex string a line) and print one JSON object a line for each "
            "complete record: kind, boot, seq, and text (musing, event) or lat, lon, alt and the "
            "rest (telemetry). Frames that cannot be decoded are counted by reason on standard "
            "error, never fatal: the exit status is 0. " + HEX_FORMAT
        ),
    )
    decode.add_argument("file", metavar="FILE", help="hex frame file, or '-' for standard input")
    add_key_arguments(decode)
    add_follow_arguments(decode, db_rule=False)
    decode.set_defaults(func=cmd_decode)
    add_keygen_command(sub, "python -m groundstation")

    from .api_proxy import add_proxy_arguments
    from .exports import register_cli as register_export_cli
    from .maps.cli import add_map_parser
    from .network import add_publish_arguments
    from .network import register_cli as register_network_cli
    from .watch import register_cli as register_watch_cli
    from .web import register_cli as register_serve_cli

    add_proxy_arguments(listen)
    add_publish_arguments(listen)  # --mqtt, --station, --mqtt-prefix
    unset_listen_defaults(listen)  # the defaults are the configuration's: a flag given always overrides
    register_network_cli(sub)
    station_file(register_export_cli(sub), "export")  # --config: the same file as listen's
    station_file(register_watch_cli(sub), "watch")
    station_file(register_serve_cli(sub), "serve")
    add_map_parser(sub)
    return parser


def cmd_listen(args: argparse.Namespace, stop: threading.Event | None = None) -> int:
    """The station's configuration (--config FILE with the flags over it), its listener's parts
    built from it (groundstation/assembly.py), run until stopped, reported."""
    try:
        config = ground_config(args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        listener = build_listener(config, stop)
    except StartError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.status
    return listener.run()


def decode_flights(args: argparse.Namespace) -> Flights:
    """The flights `decode` reads: the primary (the key options) and each --follow'ed one, built as
    `listen` builds them; KeyFileError or ValueError naming the option."""
    keys = keys_from_args(args)
    return build_flights(keys, downlink_check(keys), followed_checks(keys))


def cmd_decode(args: argparse.Namespace) -> int:
    try:
        source = ReplaySource(args.file)
    except SourceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    try:
        flights = decode_flights(args)
    except (KeyFileError, ValueError) as e:
        source.close()
        print(f"error: {e}", file=sys.stderr)
        return 1
    try:
        for item in source:
            if item is None:
                continue
            heard = flights.classify(item.data)
            flight = flights.route(heard)
            if (record := flight.decoder.feed(heard).record) is not None:
                print(format_json({**record.as_dict(), **({"flight": flight.callsign} if flight.callsign else {})}))
    except KeyboardInterrupt:
        return 130
    finally:
        source.close()
        for flight in flights.all():
            d = flight.decoder
            print(format_summary("decode" if flight.callsign is None else f"decode {flight.callsign}", d.frames,
                                 d.records, d.duplicates, d.errors + (source.errors if flight.callsign is None else
                                                                      Counter()), d.incomplete()), file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
