"""The keys every ground command that reads our frames shares: the flight key (checks the
downlink and signs the uplink) or a downlink key alone (checks, signs nothing); and, for `listen`
and `decode`, the other flights followed beside it (`--follow`, docs/network.md). Their flags are
here; what they give is the `[keys]` section (groundstation/config.py), which the functions below
read, and `build_flights` is the one builder of the flights a station reads."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, field_validator, model_validator

from stratoecho.config import Section
from stratoecho.wire import downlink as downlink_auth
from stratoecho.wire.uplink import payload_hash

from .decoder import FrameDecoder
from .flights import Flight, Flights, check_callsign

if TYPE_CHECKING:
    from ..store import Store


def _callsigns(table: dict[str, Path], key: str) -> dict[str, Path]:
    for callsign in table:
        check_callsign(callsign, f"{key}:")
    return table


class KeysSection(Section):
    flight_key: Path | None = Field(None, description="the balloon's flight key file (keygen): checks the downlink "
                                    "and signs the uplink")
    downlink_key: Path | None = Field(None, description="a downlink key only (keygen --downlink-from): checks, "
                                      "signs nothing")
    downlink_tag_len: int = Field(downlink_auth.DEFAULT_TAG_LEN, ge=downlink_auth.MIN_TAG_LEN,
                                  le=downlink_auth.MAX_TAG_LEN, description="must match the payload's")
    callsign: str | None = Field(None, description="the payload's callsign, which the uplink signs for")
    relayers: dict[str, Path] = Field(default_factory=dict, description="CALLSIGN = downlink key of a payload "
                                      "that relays this flight's frames")
    follow: dict[str, Path] = Field(default_factory=dict, description="CALLSIGN = downlink key of another flight "
                                    "followed, read-only, into a database of its own beside the primary's")
    follow_flight_keys: dict[str, Path] = Field(default_factory=dict, description="the same with that flight's "
                                                "own flight key")
    allow_raw_key: bool = Field(False, description="also read a bare key (hex, base64 or 32 raw bytes) in these files, "
                                "for a flight whose key was made before keygen's form: nothing shows it was drawn at "
                                "random, and each read logs a warning")

    @field_validator("follow", "follow_flight_keys")
    @classmethod
    def _followed_callsigns(cls, v: dict[str, Path], info) -> dict[str, Path]:
        return _callsigns(v, info.field_name)

    @model_validator(mode="after")
    def _one_key_each(self) -> KeysSection:
        if self.flight_key is not None and self.downlink_key is not None:
            raise ValueError("flight_key and downlink_key (--flight-key, --downlink-key): one or the other")
        if twice := sorted(set(self.follow) & set(self.follow_flight_keys) | {self.callsign} & {*self.follow,
                                                                                                  *self.follow_flight_keys}):
            raise ValueError(f"{', '.join(twice)} is followed twice, or is the primary flight (callsign): "
                             "follow each other flight once")
        return self


def _pairs(flag: str, example: str) -> Callable[[list[str]], dict[str, str]]:
    """CALLSIGN=FILE options, repeatable, as a table; ValueError naming the option."""
    def table(values: list[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for value in values:
            callsign, sep, path = value.partition("=")
            if not sep or not callsign or not path:
                raise ValueError(f"{flag} {value!r}: expected CALLSIGN=FILE, e.g. {example}")
            if callsign in out:
                raise ValueError(f"{flag} {value!r}: {callsign} is given twice: once each")
            out[callsign] = path
        return out
    return table


# `[keys]`'s flags (their dests) -> its key, and how the flag's value becomes the key's (None: as it is).
KEY_FLAGS: dict[str, tuple[str, Callable | None]] = {
    "uplink_key": ("flight_key", None),
    "downlink_key": ("downlink_key", None),
    "downlink_tag_len": ("downlink_tag_len", None),
    "callsign": ("callsign", None),
    "relayer_key": ("relayers", _pairs("--relayer-key", "NEAR1=/etc/stratoecho/near1.downlink")),
    "follow": ("follow", _pairs("--follow", "FAR1=/etc/stratoecho/far1.downlink")),
    "follow_flight_key": ("follow_flight_keys", _pairs("--follow-flight-key", "FAR1=/etc/stratoecho/far1.key")),
    "raw_key_ok": ("allow_raw_key", None),
}


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
    keys.add_argument("--raw-key-ok", action="store_true",
                      help="also take key files in a bare form made before keygen's line (hex, base64, raw bytes), "
                           "for a flight whose key was shared before: nothing shows such a key was drawn at random, "
                           "and a warning is logged. Better: keygen a new key and copy it to the balloon")
    keys.add_argument("--downlink-tag-len", type=int, default=downlink_auth.DEFAULT_TAG_LEN,
                      choices=range(downlink_auth.MIN_TAG_LEN, downlink_auth.MAX_TAG_LEN + 1), metavar="BYTES",
                      help="bytes of downlink tag, 4..16 (default 8; must match the payload's uplink.downlink_tag_len)")


def keys_from_args(args: argparse.Namespace) -> KeysSection:
    """The key flags of a command without a configuration file (`decode`, `aggregate`) as the
    `[keys]` section `listen` reads; ValueError naming what will not do."""
    from pydantic import ValidationError

    data: dict = {}
    for dest, (key, convert) in KEY_FLAGS.items():
        value = getattr(args, dest, None)
        if value is not None and value != []:
            data[key] = convert(value) if convert else value
    try:
        return KeysSection.model_validate(data)
    except ValidationError as e:
        raise ValueError("; ".join(f"keys.{'.'.join(map(str, err['loc']))}: {err['msg']}".replace("keys.:", "keys:")
                                   for err in e.errors())) from None


def downlink_check(keys: KeysSection) -> downlink_auth.DownlinkAuth | None:
    """The downlink check the keys give (None: no key); KeyFileError naming the file."""
    if keys.flight_key:
        return downlink_auth.load_auth(keys.flight_key, keys.downlink_tag_len, allow_raw=keys.allow_raw_key)
    if keys.downlink_key:
        return downlink_auth.load_auth(keys.downlink_key, keys.downlink_tag_len, derived=True,
                                       allow_raw=keys.allow_raw_key)
    return None


def followed_checks(keys: KeysSection) -> dict[str, downlink_auth.DownlinkAuth]:
    """Callsign -> downlink check of each followed flight; KeyFileError naming a key file."""
    followed = {c: downlink_auth.load_auth(p, keys.downlink_tag_len, derived=True, allow_raw=keys.allow_raw_key)
                for c, p in keys.follow.items()}
    for callsign, path in keys.follow_flight_keys.items():
        followed[callsign] = downlink_auth.load_auth(path, keys.downlink_tag_len, derived=False,
                                                     allow_raw=keys.allow_raw_key)
    return followed


def relayer_checks(keys: KeysSection, downlink: downlink_auth.DownlinkAuth | None,
                   followed: dict[str, downlink_auth.DownlinkAuth]) -> dict[int, downlink_auth.DownlinkAuth]:
    """Every relayer's key known here, by callsign hash, so each relay envelope is checked: the
    relayers named (`keys.relayers`), our own payload's (its callsign with our downlink key: our
    envelope heard back) and every followed flight's. The one rule, for `listen` and `decode`
    alike; KeyFileError naming a key file."""
    relayers = {payload_hash(c): downlink_auth.load_auth(p, keys.downlink_tag_len, derived=True,
                                                         allow_raw=keys.allow_raw_key)
                for c, p in keys.relayers.items()}
    if downlink is not None and keys.callsign:
        relayers.setdefault(payload_hash(keys.callsign), downlink)
    for callsign, auth in followed.items():
        relayers[payload_hash(callsign)] = auth
    return relayers


def relayer_names(keys: KeysSection) -> dict[int, str]:
    """Callsign hash -> callsign of every payload the keys name (relayers, our own callsign), so a
    relayed frame's path can say who relayed it."""
    names = {payload_hash(c): c for c in keys.relayers}
    if keys.callsign:
        names[payload_hash(keys.callsign)] = keys.callsign
    return names


def build_flights(keys: KeysSection, downlink: downlink_auth.DownlinkAuth | None,
                  followed: dict[str, downlink_auth.DownlinkAuth], primary: tuple[Store, Path] | None = None,
                  stores: dict[str, tuple[Store, Path]] | None = None) -> Flights:
    """The flights read here: the primary (with `primary`'s store and database; none for `decode`)
    and each followed one (its store and database from `stores`), each with its own decoder, every
    envelope checked as `relayer_checks` says. The one builder of `Flights`."""
    relayers = relayer_checks(keys, downlink, followed)
    stores = stores or {}
    flights = {c: Flight(c, FrameDecoder(auth=auth, relayers=relayers), *stores.get(c, (None, None)))
               for c, auth in followed.items()}
    first = Flight(None, FrameDecoder(auth=downlink, relayers=relayers), *(primary or (None, None)))
    return Flights(first, flights, relayers, relayer_names(keys), keys.downlink_tag_len)


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
