"""The key options every ground command that reads our frames shares: the flight key (checks the
downlink and signs the uplink) or a downlink key alone (checks, signs nothing); and, for `listen`
and `decode`, the other flights followed beside it (`--follow`, docs/network.md)."""

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


def _callsign_file(option: str, value: str, example: str) -> tuple[str, str]:
    callsign, sep, path = value.partition("=")
    if not sep or not callsign or not path:
        raise ValueError(f"{option} {value!r}: expected CALLSIGN=FILE, e.g. {example}")
    return callsign, path


def relayers_from_key_args(args: argparse.Namespace) -> dict[int, downlink_auth.DownlinkAuth]:
    """--relayer-key CALLSIGN=FILE as the decoder takes them (by callsign hash); ValueError for a
    malformed option, KeyFileError naming a key file that will not do."""
    relayers = {}
    for option in getattr(args, "relayer_key", None) or []:
        callsign, path = _callsign_file("--relayer-key", option, "NEAR1=/etc/stratoecho/near1.downlink")
        relayers[payload_hash(callsign)] = downlink_auth.load_auth(path, args.downlink_tag_len, derived=True)
    return relayers


def relayer_names_from_key_args(args: argparse.Namespace) -> dict[int, str]:
    """Callsign hash -> callsign of every payload these options name (--relayer-key, --callsign),
    so a relayed frame's path can say who relayed it."""
    names = {payload_hash(c): c for c in [o.partition("=")[0] for o in getattr(args, "relayer_key", None) or []] if c}
    if getattr(args, "callsign", None):
        names[payload_hash(args.callsign)] = args.callsign
    return names


def add_follow_arguments(parser: argparse.ArgumentParser, db_rule: bool = True) -> None:
    """--follow / --follow-flight-key CALLSIGN=FILE: other flights read beside the primary one."""
    where = ("; its records go to a database of its own beside --db: --db ground.db keeps FAR1's in "
             "ground.FAR1.db" if db_rule else "; its records are printed with \"flight\": CALLSIGN")
    follow = parser.add_argument_group(
        "other flights (docs/network.md, 'The ground follows several flights')",
        "Follow other balloons on the same frequency, read-only: each has its own downlink check, "
        "reassembly and dedup; nothing is ever sent or signed for it. A tagged frame goes to the flight "
        "whose key checks it, a sentence or SSDV packet to the flight its callsign names, anything else "
        "to the primary flight (--flight-key/--downlink-key), whose unread frames stay claims.")
    follow.add_argument("--follow", action="append", default=[], metavar="CALLSIGN=FILE",
                        help="follow flight CALLSIGN with its downlink key (`keygen --downlink-from FLIGHT_KEY "
                             "FILE`: checks, can sign nothing), repeatable" + where)
    follow.add_argument("--follow-flight-key", action="append", default=[], metavar="CALLSIGN=FILE",
                        help="the same with the flight's own flight key (for a crew flying several balloons; the "
                             "downlink key is derived from it and nothing is signed with it), repeatable")


def followed_from_key_args(args: argparse.Namespace) -> dict[str, downlink_auth.DownlinkAuth]:
    """Callsign -> downlink check of each followed flight; ValueError naming the option for a
    malformed or repeated one (or the primary's own --callsign), KeyFileError naming a key file."""
    from .flights import check_callsign

    followed: dict[str, downlink_auth.DownlinkAuth] = {}
    for option, derived in (("--follow", True), ("--follow-flight-key", False)):
        for value in getattr(args, option[2:].replace("-", "_"), None) or []:
            callsign, path = _callsign_file(option, value, "FAR1=/etc/stratoecho/far1.downlink")
            check_callsign(callsign, option)
            if callsign in followed or callsign == getattr(args, "callsign", None):
                raise ValueError(f"{option} {value!r}: {callsign} is followed twice, or is the primary flight "
                                 "(--callsign): follow each other flight once")
            followed[callsign] = downlink_auth.load_auth(path, args.downlink_tag_len, derived=derived)
    return followed
