"""The ground's side of the balloon's listen windows: what a window cue is answered with.

After a beacon the balloon sends a window cue (`wire.Window`, tagged: it listens for a few
seconds after sending it). `WindowAnswerer` answers it at once, before anything is stored, with
signed commands sent to the configured uplink — the serial port or LoRa HAT it was heard on, or
the `--uplink-to` address, never to whoever sent a datagram: a link report (how much was heard),
the operator's queued commands (the outbox), confirmations of risky commands the payload applied
on probation, NACKs for what the `NackPlanner` says is missing, and acknowledgements of what is
held. A cue is answered once, and only one newer than any answered before
(`CommandSigner.claim_window`, kept across restarts), so a recorded cue played back opens
nothing, and only while the window it opened is still open (the cue says when it was sent and for
how long the payload listens), so a cue the ground missed, played back later, opens nothing
either. The first cue of a boot, which no earlier cue dates, is dated by the signed position
sentence it follows (its GPS time): not heard signed, or too long ago, and it is not answered.
A cue heard only inside another payload's relay envelope is not answered. Position sentences,
which anyone can send, open nothing at all and name nobody: the callsign the uplink signs for
is `--callsign`, or the one the balloon's tagged boot event or signed position named.
"""

from __future__ import annotations

import struct
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import structlog

from stratoecho import wire
from stratoecho.wire import uplink
from stratoecho.wire.events import Event
from stratoecho.wire.uplink import KeyFileError, ack_batches, resend_batches

from ..sources import describe_peer
from ..store import Store
from .decoder import Decoded
from .repair import NackPlanner
from .uplink import CommandSigner, SignerStateError

log = structlog.get_logger(__name__)

# Callsigns tagged frames named (a key is one flight's: more than a few is a fleet sharing one)
MAX_LEARNED_CALLSIGNS = 16
# Signed position sentences whose time is kept to date a window cue: a cue follows its sentence at once
SIGNED_TIMES_KEPT = 64

# Health fields that name the last record of a stream the payload made this boot.
ANNOUNCED = {f"{kind.name.lower()}_seq": int(kind) for kind in
             (wire.Kind.MUSING, wire.Kind.EVENT, wire.Kind.API_REQUEST, wire.Kind.IMAGE)}


def _steady_wall_clock() -> Callable[[], float]:
    """Wall-clock seconds that never jump while the process runs (an NTP step mid-flight would
    make every cue look late, or early): the monotonic clock, set to the wall clock once."""
    base = time.time() - time.monotonic()
    return lambda: time.monotonic() + base



@dataclass
class WindowAnswerer:
    """The ground's side of the balloon's listen windows: each window cue it may answer is
    answered at once with a link report, the operator's queued commands, confirmations of risky
    commands heard applied, repair requests (NACKs) for what the planner says is missing, and
    acknowledgements of what is held, all signed.

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
    allow_raw_key: bool = False  # [keys] allow_raw_key: the key file may be a bare key made before keygen's form
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
    # (boot, seq) -> HH:MM:SS of the balloon's signed position sentences heard lately: what dates the
    # first cue of a boot (`CommandSigner.claim_window`), which follows one of them
    _signed_times: OrderedDict[tuple[int, int], str] = field(default_factory=OrderedDict)

    def on_decoded(self, result: Decoded,
                   missing: Callable[[], dict[tuple[int, int, int], tuple[int, list[int]]]]) -> None:
        """One decoded frame; `missing` is `FrameDecoder.missing`, asked only when a window opens."""
        frame = result.frame
        # The link report counts the balloon's own frames only: a forger's sentences are no
        # reception, and would make the payload send less parity than its link needs.
        if result.authentic and isinstance(frame, (wire.Fragment, wire.Telemetry, wire.Window)):
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
        elif isinstance(frame, wire.Telemetry) and result.signed:  # the first position names the flight
            self._learn_callsign(frame.callsign, "a signed position")
            self._signed_times[(frame.boot, frame.seq)] = frame.time
            self._signed_times.move_to_end((frame.boot, frame.seq))
            while len(self._signed_times) > SIGNED_TIMES_KEPT:
                self._signed_times.popitem(last=False)
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
        now = self.now()
        try:
            why = self._signer.claim_window(cue, now, self._signed_time(cue, now))
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

    def _signed_time(self, cue: wire.Window, now: float) -> float | None:
        """When the balloon made the signed position sentence `cue` follows, on the ground's clock
        (`now`, seconds): its HH:MM:SS dated nearest to now; None when it was not heard signed."""
        hms = self._signed_times.get(cue.key)
        if hms is None:
            return None
        try:
            return wire.telemetry_datetime(hms, datetime.fromtimestamp(now, timezone.utc)).timestamp()
        except (ValueError, OverflowError, OSError):  # a ground clock no date can be read from
            return None

    def _learn_callsign(self, callsign: str, what: str) -> None:
        """A callsign a tagged or signed frame named (the boot event, a position): only the balloon
        could have sent it, so the cue's hash may pick it. Unsigned sentences never teach this
        (anyone can send one, under any name, and a 16-bit hash is found in seconds)."""
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
            names = [c for c in CommandSigner.callsigns_for_key(self.key_path, self.db_path, self.allow_raw_key)
                     if uplink.payload_hash(c) == pid]
        except (KeyFileError, SignerStateError, OSError) as e:
            log.error("cannot read the uplink state", error=str(e))
            return None
        return names[0] if len(names) == 1 else None

    def _ensure_signer(self) -> bool:
        try:
            if self._signer is None:
                self._signer = CommandSigner.for_db(self.key_path, self.callsign, self.db_path, self.allow_raw_key,
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
        row = self.store.outbox.last(cmd.command_id)
        why = ("not sent from this station" if row is None else
               "a newer one was queued here since" if bytes(row["args"]) != args else
               "already queued" if row["sent_at"] is None else None)
        if why is not None:
            log.info("confirmation not queued", command=cmd.command_id.name.lower(), why=why)
            return False
        # A confirmation confirms what was asked, even when the last row was itself a confirmation.
        self.store.outbox.queue(cmd.command_id, args, f"confirm: {row['asked_what']}", confirms=row["asked"])
        log.info("confirmation queued", command=cmd.command_id.name.lower(), what=row["asked_what"])
        return True

    def window(self, peer: tuple, missing: dict[tuple[int, int, int], tuple[int, list[int]]],
               wire_report: uplink.LinkReport | None = None) -> None:
        """The payload is listening now: tell it how much we heard (so it can size its parity),
        ask, signed, for what this window's plan says is missing, and acknowledge what we hold
        (so it never sends that again and lets it go first when its card is full)."""
        items = self.planner.plan(missing)
        acks = self.planner.acks()
        queued = self.store.outbox.pending() if self.store is not None else []
        if not items and wire_report is None and not acks and not queued:
            return
        if not self._ensure_signer():
            return
        commands: list = [wire_report] if wire_report is not None else []
        outbox: dict[int, int] = {}  # id(command) -> outbox row, marked sent once on the air
        for row in queued:  # what a person or the API proxy asked for: before repairs, it is rarer
            try:
                cmd = uplink.COMMANDS[row["command"]].unpack(bytes(row["args"]))
            except (ValueError, KeyError, TypeError, struct.error) as e:  # written by another user: read as input
                why = f"command {row['command']!r} with {len(row['args'] or b'')} bytes of arguments does not unpack ({e})"
                log.error("outbox command refused", id=row["id"], why=why)
                self.store.outbox.refuse(row["id"], why)
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
                self.store.outbox.mark_sent(outbox[id(batch)])
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
