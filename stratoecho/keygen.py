"""`keygen`, the same subcommand of `python -m groundstation` and `python -m payload`: write a
new flight key file (stratoecho/wire/uplink_keys.py says what it holds), or the downlink key
derived from one (stratoecho/wire/downlink.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import structlog

from stratoecho.wire.downlink import derive_downlink_key
from stratoecho.wire.uplink import KeyFileError
from stratoecho.wire.uplink_keys import DOWNLINK, FLIGHT, KEY_BYTES, load_key, write_key_file

log = structlog.get_logger(__name__)


def add_keygen_command(sub, prog: str) -> argparse.ArgumentParser:
    """Add `keygen` to a CLI's subcommands; `prog` is how the user runs that CLI."""
    keygen = sub.add_parser(
        "keygen", help="write a new random flight key file (mode 600), or a downlink key derived from one",
        description=(
            f"Write {KEY_BYTES} random bytes (Python's secrets module) to FILE as one line,\n"
            f"  {FLIGHT.tag}:<{2 * KEY_BYTES} hex digits>:<8 hex digits of checksum>\n"
            "readable and writable by you only (mode 600). Both sides take a key only in this\n"
            "form: a bare key, made who knows how, is refused. The ground station\n"
            "(listen --flight-key FILE) and the payload ([uplink] key_file) must hold the same\n"
            "file: make it once, copy it (scp), and install it on the Pi with\n"
            "  sudo install -o stratoecho -g stratoecho -m 600 FILE /etc/stratoecho/uplink.key\n"
            "(docs/deploy.md). An existing FILE is never replaced unless --force: a balloon in\n"
            "the air keeps the key it flew with.\n\n"
            "With --downlink-from FLIGHT_KEY, FILE gets the downlink key derived from that flight\n"
            f"key instead ({DOWNLINK.tag}:...): it checks what the balloon sends and can sign\n"
            "nothing, for a receiving station or an aggregator that must not command the balloon\n"
            "(listen/aggregate --downlink-key FILE). A flight key made before this form (bare hex,\n"
            "base64 or raw bytes) is read for it only with --raw-key-ok."
        ),
        epilog=(f"examples:\n  {prog} keygen uplink.key\n  {prog} keygen --downlink-from uplink.key downlink.key\n"
                "exit status: 0 when the key is written; 1 if FILE exists (without --force) or cannot be written"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    keygen.add_argument("file", type=Path, metavar="FILE", help="where to write the key (e.g. uplink.key)")
    keygen.add_argument("--downlink-from", type=Path, metavar="FLIGHT_KEY",
                        help="write the downlink key derived from this flight key file, not a new key")
    keygen.add_argument("--raw-key-ok", action="store_true",
                        help="with --downlink-from: read a flight key in a bare form made before keygen's line "
                             "(nothing shows it was drawn at random; a warning is logged)")
    keygen.add_argument("--force", action="store_true",
                        help="replace FILE if it exists (the old key stops working on both sides)")
    keygen.set_defaults(func=cmd_keygen)
    return keygen


def cmd_keygen(args: argparse.Namespace) -> int:
    key = None
    if args.raw_key_ok and args.downlink_from is None:
        print("error: --raw-key-ok reads an old flight key for --downlink-from; a new key is always written in "
              "keygen's form", file=sys.stderr)
        return 1
    if args.downlink_from is not None:
        try:
            key = derive_downlink_key(load_key(args.downlink_from, FLIGHT, allow_raw=args.raw_key_ok))
        except KeyFileError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
    try:
        write_key_file(args.file, force=args.force, key=key, kind=FLIGHT if key is None else DOWNLINK)
    except FileExistsError:
        print(f"error: {args.file} exists; it may be the key a payload already holds. Use another FILE, "
              f"or --force to replace it", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"error: cannot write {args.file}: {e.strerror}", file=sys.stderr)
        return 1
    if key is not None:
        log.info("downlink_key_written", file=str(args.file), mode="600", flight_key=str(args.downlink_from))
        print(f"wrote the downlink key of {args.downlink_from} to {args.file} (mode 600): it checks the "
              "downlink (--downlink-key) and signs nothing", file=sys.stderr)
        return 0
    log.info("uplink_key_written", file=str(args.file), mode="600")
    print(f"wrote a new flight key to {args.file} (mode 600); give the payload the same file", file=sys.stderr)
    return 0
