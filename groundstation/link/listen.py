"""The listen loop: source -> decoder -> database -> terminal, until told to stop.

One `threading.Event` ends it (SIGINT/SIGTERM set it); the loop checks it on every
frame and on every idle poll of the source (~0.2 s), so it never sleeps and stops
at once. Whatever way it ends, the database is committed and the source closed.

With a `RepairLink`, every decoded fragment feeds a `NackPlanner`, and each window cue
(`wire.Window`, tagged by the balloon: it listens for a few seconds after sending it) is
answered at once, before anything is stored, with signed commands sent to the configured
uplink — the serial port or LoRa HAT it was heard on, or the `--uplink-to` address, never to
whoever sent a datagram. A cue is answered once, and only one newer than any answered before
(`CommandSigner.claim_window`, kept across restarts), so a recorded cue played back opens
nothing, and only while the window it opened is still open (the cue says when it was sent and for
how long the payload listens), so a cue the ground missed, played back later, opens nothing
either. A cue heard only inside another payload's relay envelope is not answered. Position
sentences, which anyone can send, open nothing at all and name nobody: the callsign the uplink
signs for is `--callsign`, or the one the balloon's tagged boot event named.

With `Flights` (`listen --follow`), each frame goes to the flight it belongs to, into that
flight's database; only the primary flight's frames reach the repair link.
"""

from __future__ import annotations

import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TextIO

import structlog

from stratoecho import wire
from stratoecho.wire import uplink
from stratoecho.wire.events import Event
from stratoecho.wire.uplink import KeyFileError, ack_batches, resend_batches

from ..db import Store, utc_now
from ..display import format_json, format_record
from ..sources import FrameSource, Position, describe_peer
from .decoder import Decoded, FrameDecoder
from .flights import Flight, Flights
from .heard import Heard, kind_name
from .repair import NackPlanner
from .uplink import CommandSigner, SignerStateError

log = structlog.get_logger(__name__)

# Callsigns tagged frames named (a key is one flight's: more than a few is a fleet sharing one)
MAX_LEARNED_CALLSIGNS = 16

# Health fields that name the last record of a stream the payload made this boot.
ANNOUNCED = {f"{kind.name.lower()}_seq": int(kind) for kind in
             (wire.Kind.MUSING, wire.Kind.EVENT, wire.Kind.API_REQUEST, wire.Kind.IMAGE)}


def _steady_wall_clock() -> Callable[[], float]:
    """Wall-clock seconds that never jump while the process runs (an NTP step mid-flight would
    make every cue look late, or early): the monotonic clock, set to the wall clock once."""
    base = time.time() - time.monotonic()
    return lambda: time.monotonic() + base


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


@dataclass
class RepairLink:
    """Asks the payload, in its uplink windows, for what the planner says is missing.

    `send(frame, peer)` puts one uplink frame on the air (the source's `send`: a UDP
    datagram to `peer`, or a frame out of the serial port, for which `peer` is
    `(device,)`); `uplink_to` is that peer, configured, never taken from a frame. The
    signer is made at the first window; without `callsign` it is the callsign a tagged frame
    named (the boot event, a late position) or, after a restart, the one this key signed for
    before, whose hash is the one the cue vouches for — never one an open sentence names.
    """

    key_path: Path
    db_path: Path
    send: Callable[[bytes, tuple], None]
    callsign: str | None = None  # None: a heard sentence's callsign that matches the cue's hash
    uplink_to: tuple | None = None  # where uplink goes: (host, port), or (device,) for a serial port
    tag_len: int = uplink.DEFAULT_TAG_LEN  # must match the payload's uplink.tag_len
    mtu: int = wire.DEFAULT_MTU  # the payload's radio.mtu: an E32 with 58-byte packets needs 58
    planner: NackPlanner = field(default_factory=NackPlanner)
    nacks_sent: int = 0
    items_requested: int = 0
    send_errors: int = 0
    _signer: CommandSigner | None = None
    link_reports: int = 0
    acks_sent: int = 0
    ranges_acknowledged: int = 0
    commands_sent: int = 0
    store: Store | None = None  # its outbox: commands queued by the dashboard and the API proxy
    _heard: dict[int, int] = field(default_factory=dict)  # boot -> frames heard that decoded
    _learned: dict[int, str] = field(default_factory=dict)  # payload_hash -> callsign a tagged frame named
    cues_refused: int = 0  # authentic cues not answered: old (a replay), late, relayed, or for another callsign
    # The ground's clock that dates cues, in seconds (`CommandSigner.claim_window`): monotonic while
    # it runs, wall time across restarts; the bench's flight time under `sim fly`.
    now: Callable[[], float] = field(default_factory=_steady_wall_clock)

    def on_decoded(self, result: Decoded,
                   missing: Callable[[], dict[tuple[int, int, int], tuple[int, list[int]]]]) -> None:
        """One decoded frame; `missing` is `FrameDecoder.missing`, asked only when a window opens."""
        frame = result.frame
        if isinstance(frame, (wire.Fragment, wire.Telemetry, wire.Window)):
            self._heard[frame.boot] = self._heard.get(frame.boot, 0) + 1
        record = result.record
        if isinstance(frame, wire.Fragment):
            self.planner.heard(frame, complete=record is not None)
            if isinstance(record, wire.Telemetry):  # a late position: the record carries it, tagged
                self._learn_callsign(record.callsign, "a tagged position")
            if isinstance(record, wire.Record) and record.kind is wire.Kind.EVENT:
                if record.content.name == "boot":
                    self._learn_callsign(record.content.fields.get("callsign", ""), "the boot event")
                if self.store is None or not self.store.has_record(record.kind, record.boot, record.seq):
                    self.confirm_if_asked(record.content)  # once: an event heard before (a replay) is not answered
            if isinstance(record, wire.Record) and record.kind is wire.Kind.HEALTH:
                for name, value in record.content.items():
                    kind = ANNOUNCED.get(name)
                    if kind is not None and isinstance(value, int) and value >= 0:
                        self.planner.announced(kind, frame.boot, value)
        elif isinstance(frame, wire.Window) and result.relayed_by is not None:
            self.cues_refused += 1  # a relay keys it later, when the window may be long shut
            log.warning("window cue not answered", why="heard only by relay", boot=frame.boot, seq=frame.seq)
        elif isinstance(frame, wire.Window):
            self.on_cue(frame, missing)

    def on_cue(self, cue: wire.Window,
               missing: Callable[[], dict[tuple[int, int, int], tuple[int, list[int]]]]) -> bool:
        """The balloon's own cue (its tag checked by the decoder): answer it, once, if it is new."""
        callsign = self.callsign or self._learned.get(cue.pid) or self._remembered(cue.pid)
        if callsign is None or uplink.payload_hash(callsign) != cue.pid:
            self.cues_refused += 1
            log.warning("window cue not answered", why="for another callsign" if callsign else
                        "callsign unknown: no tagged frame has named it yet (give --callsign)",
                        boot=cue.boot, seq=cue.seq)
            return False
        self.callsign = callsign
        if self.uplink_to is None or not self._ensure_signer():
            return False
        try:
            why = self._signer.claim_window(cue, self.now())
        except (SignerStateError, OSError) as e:
            self.send_errors += 1
            log.error("cannot record the window", error=str(e))
            return False
        if why is not None:
            self.cues_refused += 1
            log.warning("window cue not answered", why=why, boot=cue.boot, seq=cue.seq)
            return False
        self.window(self.uplink_to, missing(), wire_report=uplink.LinkReport(
            cue.boot, cue.seq, self._heard.get(cue.boot, 0)))
        return True

    def _learn_callsign(self, callsign: str, what: str) -> None:
        """A callsign a tagged frame named (the boot event, a late position): only the balloon could
        have sent it, so the cue's hash may pick it. Open sentences never teach this (anyone can
        send one, under any name, and a 16-bit hash is found in seconds)."""
        if not callsign or self._learned.get(uplink.payload_hash(callsign)) == callsign:
            return
        if len(self._learned) >= MAX_LEARNED_CALLSIGNS:
            return
        self._learned[uplink.payload_hash(callsign)] = callsign
        log.info("uplink callsign learned", callsign=callsign, source=what)

    def _remembered(self, pid: int) -> str | None:
        """After a restart: the one callsign this key signed for before whose hash the cue carries
        (`DB.uplink.json`), if exactly one; none, or two, and the cue waits for a tagged frame."""
        try:
            names = [c for c in CommandSigner.callsigns_for_key(self.key_path, self.db_path)
                     if uplink.payload_hash(c) == pid]
        except (KeyFileError, SignerStateError, OSError) as e:
            log.error("cannot read the uplink state", error=str(e))
            return None
        return names[0] if len(names) == 1 else None

    def _ensure_signer(self) -> bool:
        try:
            if self._signer is None:
                self._signer = CommandSigner.for_db(self.key_path, self.callsign, self.db_path,
                                                    tag_len=self.tag_len, mtu=self.mtu)
        except (KeyFileError, SignerStateError, OSError) as e:
            # Checked at start-up already; if the files went bad since, keep receiving regardless.
            self.send_errors += 1
            log.error("cannot sign nacks", error=str(e))
            return False
        return True

    def confirm_if_asked(self, e: Event) -> bool:
        """The payload applied a risky command of ours on probation (`uplink.unconfirmed_event`):
        hearing it proves the downlink works under the new settings, so queue the same command
        again for the next window, which proves the uplink does. Only commands this station
        sent are confirmed, and only the newest this station sent of that command: an old event
        played back (a change the operator has since replaced) is left to revert, never signed
        again over the newer one."""
        cmd = uplink.unconfirmed_command(e)
        if cmd is None or self.store is None:
            return False
        args = cmd.pack()
        row = self.store.last_command(cmd.command_id)
        why = ("not sent from this station" if row is None else
               "a newer one was queued here since" if bytes(row["args"]) != args else
               "already queued" if row["sent_at"] is None else None)
        if why is not None:
            log.info("confirmation not queued", command=cmd.command_id.name.lower(), why=why)
            return False
        # A confirmation confirms what was asked, even when the last row was itself a confirmation.
        self.store.queue_command(cmd.command_id, args, f"confirm: {row['asked_what']}", confirms=row["asked"])
        log.info("confirmation queued", command=cmd.command_id.name.lower(), what=row["asked_what"])
        return True

    def window(self, peer: tuple, missing: dict[tuple[int, int, int], tuple[int, list[int]]],
               wire_report: uplink.LinkReport | None = None) -> None:
        """The payload is listening now: tell it how much we heard (so it can size its parity),
        ask, signed, for what this window's plan says is missing, and acknowledge what we hold
        (so it never sends that again and lets it go first when its card is full)."""
        items = self.planner.plan(missing)
        acks = self.planner.acks()
        queued = self.store.pending_commands() if self.store is not None else []
        if not items and wire_report is None and not acks and not queued:
            return
        if not self._ensure_signer():
            return
        commands: list = [wire_report] if wire_report is not None else []
        outbox: dict[int, int] = {}  # id(command) -> outbox row, marked sent once on the air
        for row in queued:  # what a person or the API proxy asked for: before repairs, it is rarer
            try:
                cmd = uplink.COMMANDS[uplink.CommandId(row["command"])].unpack(bytes(row["args"]))
            except (ValueError, KeyError, TypeError, struct.error) as e:  # written by another user: read as input
                why = f"command {row['command']!r} with {len(row['args'] or b'')} bytes of arguments does not unpack ({e})"
                log.error("outbox command refused", id=row["id"], why=why)
                self.store.refuse_command(row["id"], why)
                continue
            outbox[id(cmd)] = row["id"]
            commands.append(cmd)
        if items:
            commands += resend_batches(items, tag_len=self._signer.tag_len, mtu=self._signer.mtu)
        if acks:  # last: if the window is short, repair matters more
            commands += ack_batches(acks, tag_len=self._signer.tag_len, mtu=self._signer.mtu)
        for batch in commands:
            try:
                frame = self._signer.sign(batch)
            except (SignerStateError, OSError) as e:
                self.send_errors += 1
                log.error("cannot sign nack", error=str(e))
                return
            try:
                self.send(frame, peer)
            except OSError as e:
                self.send_errors += 1
                log.warning("nack not sent", to=describe_peer(peer), error=str(e))
                continue
            if isinstance(batch, uplink.LinkReport):
                self.link_reports += 1
                continue
            if id(batch) in outbox:
                self.store.mark_command_sent(outbox[id(batch)])
                self.commands_sent += 1
                log.info("command sent", to=describe_peer(peer), command=batch.command_id.name.lower())
                continue
            if isinstance(batch, uplink.Ack):
                self.acks_sent += 1
                self.ranges_acknowledged += len(batch.ranges)
                continue
            self.nacks_sent += 1
            self.items_requested += len(batch.items)
            log.info("nack", to=describe_peer(peer), window=self.planner.window, items=[
                f"{wire.Kind(i.stream).name.lower()} {i.boot}/{i.seq}" + (f" {list(i.fragments)}" if i.fragments else " all")
                for i in batch.items])

    def stats(self) -> dict:
        return {"nacks_sent": self.nacks_sent, "items_requested": self.items_requested, "cues_refused": self.cues_refused,
                "link_reports": self.link_reports, "acks_sent": self.acks_sent,
                "given_up": self.planner.given_up, "windows": self.planner.window,
                "send_errors": self.send_errors, "commands_sent": self.commands_sent}


def run_listen(source: FrameSource, store: Store, decoder: FrameDecoder, stop: threading.Event,
               out: TextIO | None, as_json: bool = False, limits: Limits | None = None,
               repair: RepairLink | None = None, hooks: Hooks | None = None, flights: Flights | None = None) -> None:
    """Receive until the source ends, `stop` is set or a limit is reached.

    `out` gets one line per record new to the database (None: print nothing);
    `repair` (optional) answers the payload's uplink windows with NACKs, for the primary flight
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


def _handle(item, flights: Flights, out: TextIO | None, as_json: bool, repair: RepairLink | None,
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
    if repair is not None and result.ok and flight is flights.primary:  # followed flights: read-only
        repair.on_decoded(result, decoder.missing)  # first: the payload's window is only seconds long
    rssi, snr = getattr(item, "rssi_dbm", None), getattr(item, "snr_db", None)
    path = flights.path(hooks.station, result.relayed_by)  # "<station> via <RELAYER>" when relayed
    kept = store.add_frame(data, origin, result.error, received_at, station=path, rssi_dbm=rssi, snr_db=snr)
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
        hooks.call(hooks.on_ssdv, result.frame, received_at)
    if result.record is not None:
        _store_new(result.record, received_at, flight, out, as_json, hooks, path, rssi, snr, result.authentic)


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
    heard = Heard(record, received_at, station=hooks.station, rssi_dbm=rssi, snr_db=snr, flight=flight.callsign)
    hooks.call(hooks.on_new, heard)
    if out is None:
        return
    if as_json:
        print(format_json(heard.as_json()), file=out, flush=True)
    else:  # a followed flight's records say whose they are; the primary's read as they always have
        print((f"{flight.callsign}: " if flight.callsign else "") + format_record(record), file=out, flush=True)
