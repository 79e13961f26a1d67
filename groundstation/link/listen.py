"""The listen loop: source -> decoder -> database -> terminal, until told to stop.

One `threading.Event` ends it (SIGINT/SIGTERM set it); the loop checks it on every
frame and on every idle poll of the source (~0.2 s), so it never sleeps and stops
at once. Whatever way it ends, the database is committed and the source closed.

With a `WindowAnswerer` (groundstation/link/windows.py), every decoded frame of the primary
flight is handed to it first, so a window cue is answered while the balloon still listens.

With `Flights` (`listen --follow`), each frame goes to the flight it belongs to, into that
flight's database; only the primary flight's frames reach the window answerer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TextIO

import structlog

from stratoecho import wire

from ..display import format_json, format_record
from ..sources import FrameSource, Position
from ..store import Store, utc_now
from .decoder import FrameDecoder
from .flights import Flight, Flights
from .heard import Heard, kind_name
from .windows import WindowAnswerer

log = structlog.get_logger(__name__)

@dataclass
class Limits:
    duration_s: float | None = None  # stop this long after starting
    until_idle_s: float | None = None  # stop after this long without a frame


@dataclass
class Hooks:
    """What else hears the listener: `on_frame(data, received_at, station, rssi_dbm, snr_db)` for
    every frame (the station network's publisher), `on_new(heard)` with a `Heard` for every record
    or sentence new to the database (exporters, the API proxy), `on_ssdv(packet, received_at)` with
    the `wire.SsdvPacket` of every SSDV packet new to the database (the SSDV upload). A hook that
    raises is logged and counted; the listener goes on."""

    station: str | None = None  # this receiver's name, kept with each frame and in `heard`
    on_frame: list[Callable] = field(default_factory=list)
    on_new: list[Callable] = field(default_factory=list)
    on_ssdv: list[Callable] = field(default_factory=list)
    failures: int = 0

    def call(self, hooks: list[Callable], *args) -> None:
        for hook in hooks:
            try:
                hook(*args)
            except Exception:  # noqa: BLE001 - an exporter's bug must not stop the receiver
                self.failures += 1
                log.exception("hook failed", hook=getattr(hook, "__qualname__", repr(hook)))


def run_listen(source: FrameSource, store: Store, decoder: FrameDecoder, stop: threading.Event,
               out: TextIO | None, as_json: bool = False, limits: Limits | None = None,
               repair: WindowAnswerer | None = None, hooks: Hooks | None = None, flights: Flights | None = None) -> None:
    """Receive until the source ends, `stop` is set or a limit is reached.

    `out` gets one line per record new to the database (None: print nothing);
    `repair` (optional) answers the payload's listen windows, for the primary flight
    (`store`, `decoder`) only; `flights` (optional; its primary is `store` and `decoder`) routes
    each frame to the flight it belongs to (groundstation/link/flights.py), each with its own database.
    """
    limits = limits or Limits()
    flights = flights or Flights(Flight(None, decoder, store), tag_len=decoder.tag_len)
    start = last_frame = time.monotonic()
    try:
        for item in source:
            now = time.monotonic()
            if item is not None:
                last_frame = now
                _handle(item, flights, out, as_json, repair, hooks or Hooks())
            for s in flights.stores():
                s.maybe_commit()
            if stop.is_set():
                break
            if limits.duration_s is not None and now - start >= limits.duration_s:
                break
            if limits.until_idle_s is not None and now - last_frame >= limits.until_idle_s:
                break
    finally:
        for s in flights.stores():
            s.commit()
        source.close()


def _handle(item, flights: Flights, out: TextIO | None, as_json: bool, answerer: WindowAnswerer | None,
            hooks: Hooks) -> None:
    if isinstance(item, Position):  # decoded elsewhere: no frame to keep, to publish or to answer
        flight = flights.by_callsign(item.telemetry.callsign)
        result = flight.decoder.position(item.telemetry)
        if result.record is not None:
            _store_new(result.record, utc_now(), flight, out, as_json, hooks, hooks.station)
        return
    data, origin = item.data, item.origin
    received_at = utc_now()
    heard = flights.classify(data)  # once: routing and the decoder read the same
    flight = flights.route(heard)
    store, decoder = flight.store, flight.decoder
    result = decoder.feed(heard, datetime.fromisoformat(received_at))
    if answerer is not None and result.ok and flight is flights.primary:  # followed flights: read-only
        answerer.on_decoded(result, decoder.missing)  # first: the payload's window is only seconds long
    rssi, snr = getattr(item, "rssi_dbm", None), getattr(item, "snr_db", None)
    path = flights.path(hooks.station, result.relayed_by)  # "<station> via <RELAYER>" when relayed
    vouched = None  # the frame the balloon's tag checked in, or a packet it announced: never refused by a quota
    if result.ok and (result.authentic or (isinstance(result.frame, wire.SsdvPacket)
                                           and store.ssdv_announced(result.frame))):
        vouched = heard.inner.data if heard.kind is wire.FrameKind.RELAYED else data
    kept = store.frames.add(data, origin, result.error, received_at, station=path, rssi_dbm=rssi, snr_db=snr,
                           vouched=vouched)
    hooks.call(hooks.on_frame, data, received_at, hooks.station, rssi, snr)
    if not result.ok:
        log.debug("frame rejected", origin=origin, reason=result.error, detail=result.detail,
                  flight=flight.callsign)
        return
    if not kept and not result.authentic:  # past its source's byte quota: its open claim stays out with it,
        return  # or a flood of valid sentences under ever new numbers would fill the other tables instead
    if path is not None:  # a record heard directly and relayed: a row for each way, not only the first
        for row in flight.paths.heard(result, path, received_at):
            store.add_heard(*row)
    if isinstance(result.frame, wire.SsdvPacket) and store.add_ssdv(result.frame, received_at):
        log.debug("ssdv packet kept", callsign=result.frame.callsign, image_id=result.frame.image_id,
                  packet_id=result.frame.packet_id)
    if result.record is not None:
        _store_new(result.record, received_at, flight, out, as_json, hooks, path, rssi, snr, result.authentic)
    for packet, at in store.take_believed_ssdv():  # the flight's (announced, or anyone's without a key)
        hooks.call(hooks.on_ssdv, packet, at)


def _store_new(record, received_at: str, flight: Flight, out: TextIO | None, as_json: bool, hooks: Hooks,
               path: str | None, rssi: float | None = None, snr: float | None = None,
               authentic: bool = False) -> None:
    """A complete record or sentence: who heard it (and which way), then into its flight's
    database, the hooks and `out` if new."""
    store = flight.store
    if path is not None:
        store.add_heard(kind_name(record), record.boot, record.seq, path, received_at)
    # The database decides what is new, so a record heard again after a ground
    # restart (when the decoder has forgotten it) is stored and printed once.
    if not store.add(record, received_at, authentic):
        return
    heard = Heard(record, received_at, station=hooks.station, rssi_dbm=rssi, snr_db=snr, flight=flight.callsign,
                  authentic=authentic)
    hooks.call(hooks.on_new, heard)
    if out is None:
        return
    if as_json:
        print(format_json(heard.as_json()), file=out, flush=True)
    else:  # a followed flight's records say whose they are; the primary's read as they always have
        print((f"{flight.callsign}: " if flight.callsign else "") + format_record(record), file=out, flush=True)
