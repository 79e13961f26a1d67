"""Whose a heard frame is, when one ground follows several balloons on one frequency.

`listen --follow CALLSIGN=FILE` (docs/network.md, "The ground follows several flights") gives
each followed flight its own `FrameDecoder` (its downlink key, reassembler and dedup by
(boot, seq)) and its own database (`flight_db_path`); the primary flight (`--flight-key` or
`--downlink-key`) keeps `--db`, the repair link and the uplink. `Flights.route` picks the
flight a frame goes to, before it is decoded, from what `wire.classify` made of it (the listener
classifies each frame once, routes it, and hands the same `wire.HeardFrame` to that flight's decoder):

- a relay envelope (0xEF) is opened, checked with the relayers' keys (every followed flight's,
  the primary's own under `--callsign`, and `--relayer-key`s), and its inner frame routed as
  if heard directly; the chosen decoder opens it again, so it counts it as relayed;
- a tagged frame (record fragment 0xEC, window cue 0xEE) goes to the flight whose downlink key
  checks its tag: one HMAC per flight over the bytes before the tag, no parsing;
- a UKHAS or musing sentence (`$$CALLSIGN,...`), a HABpack position or an SSDV packet goes
  to the followed flight that callsign names (SSDV's 6-character upper-case form too);
- anything else, and anything no followed flight claims, goes to the primary, whose decoder
  keeps it a claim (an error in its frames table) exactly as without `--follow`.

A sentence names its callsign, and anyone can send one: routing by it decides only which
database keeps the open claim, never what is believed (that still rests on each frame's tag).
Pure logic: the stores ride along for the listener and are never touched here.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from stratoecho import wire
from stratoecho.wire.downlink import DEFAULT_TAG_LEN, DownlinkAuth
from stratoecho.wire.relay import Envelope, check_envelope
from stratoecho.wire.uplink import payload_hash

from ..store import Store
from .decoder import Decoded, FrameDecoder

# A followed callsign names a database file: letters, digits, - and _ only (UKHAS callsigns are).
CALLSIGN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")


def check_callsign(callsign: str, option: str) -> str:
    """`callsign` if it can name a followed flight (and its database file); ValueError naming `option`."""
    if not CALLSIGN.fullmatch(callsign):
        raise ValueError(f"{option} {callsign!r}: a callsign is 1 to 32 letters, digits, - or _, "
                         "starting with a letter or digit (it names the flight's database file)")
    return callsign


def flight_db_path(db: str | Path, callsign: str) -> Path:
    """A followed flight's database, beside the primary's: ground.db -> ground.CALLSIGN.db."""
    db = Path(db)
    return db.with_name(f"{db.stem}.{callsign}{db.suffix}")


def relayer_label(relayer: int, names: dict[int, str]) -> str:
    """The relaying payload as the `heard` table names it: its callsign when known, else its hash."""
    return names.get(relayer) or f"0x{relayer:04X}"


def heard_path(station: str | None, relayer: int | None, names: dict[int, str]) -> str | None:
    """Which way a frame came: the receiving station, or "<station> via <RELAYER>" for one heard
    inside another payload's envelope (None: no station name, nothing kept)."""
    if station is None or relayer is None:
        return station
    return f"{station} via {relayer_label(relayer, names)}"


@dataclass
class Paths:
    """Every way a record came, for `heard`: a record heard directly and through a relayer has a
    row for each, though only one frame completes it. Fragments heard before the record is whole
    wait here by path; once it is whole, each later fragment's path is a row at once. Bounded."""

    max_pending: int = 4096
    _pending: OrderedDict = field(default_factory=OrderedDict)  # (kind, boot, seq) -> {path: first heard}
    _complete: OrderedDict = field(default_factory=OrderedDict)  # (kind, boot, seq) whole, newest last

    def heard(self, result: Decoded, path: str, at: str) -> list[tuple[str, int, int, str, str]]:
        """The `heard` rows (kind, boot, seq, path, first_at) this decoded frame adds beyond the one
        `listen` keeps for the frame that completes a record: the other paths it came by."""
        frame = result.frame
        if isinstance(frame, wire.Telemetry) and result.record is None:  # a position heard again
            return [("telemetry", frame.boot, frame.seq, path, at)]
        if not isinstance(frame, wire.Fragment):
            return []
        key = (frame.kind.name.lower(), frame.boot, frame.seq)
        if result.record is not None:
            self._complete[key] = None
            while len(self._complete) > self.max_pending:
                self._complete.popitem(last=False)
            return [(*key, p, t) for p, t in self._pending.pop(key, {}).items() if p != path]
        if key in self._complete:
            return [(*key, path, at)]
        self._pending.setdefault(key, {}).setdefault(path, at)
        self._pending.move_to_end(key)
        while len(self._pending) > self.max_pending:
            self._pending.popitem(last=False)
        return []


@dataclass
class Flight:
    """One flight the ground keeps: its callsign (None: the primary), its decoder and its store."""

    callsign: str | None
    decoder: FrameDecoder
    store: Store | None = None  # its database; opened and closed by the listener
    db_path: Path | None = None
    paths: Paths = field(default_factory=Paths)

    def stats(self) -> dict:
        """What `--stats` shows for a followed flight: frames, records by kind, relayed, errors."""
        d = self.decoder
        return {"frames": d.frames, "records": dict(d.records), "relayed": d.relayed,
                "errors": sum(d.errors.values()), "duplicates": d.duplicates, "incomplete": d.incomplete(),
                "stored": self.store.inserted if self.store is not None else 0, "db": str(self.db_path) if self.db_path else None}


@dataclass
class Flights:
    """The primary flight and the followed ones, and the relayers' keys; `route` picks a frame's."""

    primary: Flight
    followed: dict[str, Flight] = field(default_factory=dict)  # callsign -> flight
    relayers: dict[int, DownlinkAuth] = field(default_factory=dict)  # callsign hash -> key: envelopes checked
    names: dict[int, str] = field(default_factory=dict)  # callsign hash -> callsign: the path in `heard`
    tag_len: int = DEFAULT_TAG_LEN
    _ssdv: dict[str, Flight] = field(init=False, default_factory=dict)  # SSDV's upper-case 6-character callsign

    def __post_init__(self) -> None:
        for callsign, flight in self.followed.items():
            self.names.setdefault(payload_hash(callsign), callsign)
            self._ssdv.setdefault(callsign.upper()[:6], flight)

    def all(self) -> list[Flight]:
        return [self.primary, *self.followed.values()]

    def stores(self) -> Iterable:
        return [f.store for f in self.all() if f.store is not None]

    def by_callsign(self, callsign: str | None) -> Flight:
        """The followed flight of that callsign, else the primary."""
        return self.followed.get(callsign or "", self.primary)

    def path(self, station: str | None, relayer: int | None) -> str | None:
        return heard_path(station, relayer, self.names)

    def classify(self, frame: bytes) -> wire.HeardFrame:
        """`wire.classify` with this fleet's tag length: done once per frame, and handed to `route`
        and then to the chosen flight's decoder."""
        return wire.classify(frame, self.tag_len)

    def route(self, frame: bytes | wire.HeardFrame) -> Flight:
        """The flight this frame goes to (see the module docstring); the primary when none claims it."""
        if not self.followed:
            return self.primary  # one flight: everything is the primary's, as ever
        heard = frame if isinstance(frame, wire.HeardFrame) else self.classify(frame)
        if heard.kind is wire.FrameKind.RELAYED:
            if heard.error is not None or not self._envelope_holds(heard.envelope):
                return self.primary  # its decoder refuses it the same way: a claim, as without --follow
            heard = heard.inner
        return self._owner(heard)

    def _envelope_holds(self, envelope: Envelope) -> bool:
        """Its tag checks under its relayer's key, or no key here is its relayer's."""
        try:
            check_envelope(envelope, self.relayers)
        except wire.WireError:
            return False
        return True

    def _owner(self, heard: wire.HeardFrame) -> Flight:
        if heard.tagged:
            return self._tag_owner(heard)
        if heard.kind is wire.FrameKind.SSDV:
            return self._ssdv.get(heard.callsign, self.primary)
        return self.by_callsign(heard.callsign)  # a sentence's or HABpack's; None (anything else): the primary

    def _tag_owner(self, heard: wire.HeardFrame) -> Flight:
        """The flight whose downlink key checks the tag."""
        for flight in self.all():
            auth = flight.decoder.auth
            if auth is not None and heard.tag_checks(auth):
                return flight
        return self.primary  # nobody's: the primary keeps it as a claim ("bad tag", "unauthenticated")

    def stats(self) -> dict:
        """`flights` in --stats: per followed flight, by callsign."""
        return {callsign: flight.stats() for callsign, flight in self.followed.items()}
