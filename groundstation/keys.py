"""The key options every ground command that reads our frames shares: the flight key (checks the
downlink and signs the uplink) or a downlink key alone (checks, signs nothing)."""

from __future__ import annotations

import argparse
from pathlib import Path

from stratoecho.wire import downlink as downlink_auth
from stratoecho.wire.uplink import payload_hash


def add_key_arguments(parser: argparse.ArgumentParser) -> None:
    """--flight-key / --downlink-key and the downlink tag's length: what makes our frames readable."""
    keys = parser.add_argument_group(
        "keys", "Record fragments and window cues are read only when their downlink tag checks (docs/protocol.md, "
        "'Authenticated downlink'); without a key they are kept as frames, unread.")
    which = keys.add_mutually_exclusive_group()
    which.add_argument("--flight-key", "--uplink-key", dest="uplink_key", type=Path, metavar="FILE",
                       help="the balloon's flight key file, made by `python -m groundstation keygen FILE` (mode 600; "
                            "the payload holds the same file): checks the downlink and signs the uplink")
    which.add_argument("--downlink-key", type=Path, metavar="FILE",
                       help="a downlink key only (`keygen --downlink-from FLIGHT_KEY FILE`): checks the downlink, "
                            "can sign nothing; for a station that must not command the balloon")
    keys.add_argument("--relayer-key", action="append", default=[], metavar="CALLSIGN=FILE",
                      help="another payload that relays this flight's frames, and its downlink key "
                           "(`keygen --downlink-from`): its relay envelopes are checked too (repeatable; without it "
                           "an envelope is read, and what it carries is still checked by its own tag; docs/network.md)")
    keys.add_argument("--downlink-tag-len", type=int, default=downlink_auth.DEFAULT_TAG_LEN,
                      choices=range(downlink_auth.MIN_TAG_LEN, downlink_auth.MAX_TAG_LEN + 1), metavar="BYTES",
                      help="bytes of downlink tag, 4..16 (default 8; must match the payload's uplink.downlink_tag_len)")


def auth_from_key_args(args: argparse.Namespace) -> downlink_auth.DownlinkAuth | None:
    """The downlink check the key options give (None: no key); KeyFileError naming the file."""
    if getattr(args, "uplink_key", None):
        return downlink_auth.load_auth(args.uplink_key, args.downlink_tag_len)
    if getattr(args, "downlink_key", None):
        return downlink_auth.load_auth(args.downlink_key, args.downlink_tag_len, derived=True)
    return None


def relayers_from_key_args(args: argparse.Namespace) -> dict[int, downlink_auth.DownlinkAuth]:
    """--relayer-key CALLSIGN=FILE as the decoder takes them (by callsign hash); ValueError for a
    malformed option, KeyFileError naming a key file that will not do."""
    relayers = {}
    for option in getattr(args, "relayer_key", None) or []:
        callsign, sep, path = option.partition("=")
        if not sep or not callsign or not path:
            raise ValueError(f"--relayer-key {option!r}: expected CALLSIGN=FILE, e.g. NEAR1=/etc/stratoecho/near1.downlink")
        relayers[payload_hash(callsign)] = downlink_auth.load_auth(path, args.downlink_tag_len, derived=True)
    return relayers
