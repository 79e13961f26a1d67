"""What the payload does with an uplink command the gate has let through (payload/uplink/gate.py):
one entry per command declared in `stratoecho.wire.commands`, in `TABLE` by the command's id, so
adding a command means declaring it there and giving it an entry here.

A command the wire declares risky (SET_INTERVALS, SET_MODE: they could make the payload quieter)
has an `OnProbation` entry, which says how to apply and describe what it sets: it is applied on
probation and reverted unless the ground confirms it in time (payload/uplink/probation.py,
`revert_unconfirmed`). Any other has an `Acts` entry: what to do with it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from stratoecho import wire
from stratoecho.wire import uplink
from stratoecho.wire.events import Event, event

from ..cadence import Cadence
from ..config import UplinkSection
from ..link.outbound import Outbound
from ..link.transmitter import Transmitter
from ..persona.memory import Memory
from ..persona.reach import Reach
from ..policy.governor import Governor
from ..policy.modes import Mode
from .gate import CommandGate
from .probation import Confirmations

log = structlog.get_logger(__name__)

PROBATION_STATE = "uplink:probation"  # risky changes awaiting confirmation (payload/uplink/probation.py)


@dataclass
class CommandStats:
    commands: dict = field(default_factory=dict)  # accepted, by name
    repairs_requested: int = 0
    records_acknowledged: int = 0


class CommandHandler:
    def __init__(self, outbound: Outbound, cadence: Cadence, limits: UplinkSection, transmitter: Transmitter,
                 memory: Memory, reach: Reach, gate: CommandGate | None = None):
        """Commands for this boot (`outbound`'s: its queue, number and clock), what they answer going out by it."""
        store, self.boot, self.clock = outbound.store, outbound.boot, outbound.clock
        # SET_INTERVALS changes the cadence the loops and the transmitter read, never a copy.
        self.cadence, self.limits = cadence, limits
        self.planned_telemetry_s = cadence.planned.telemetry_s  # what the duty cycle was planned for
        self.governor: Governor = cadence.governor
        self.store, self.transmitter, self.memory = store, transmitter, memory
        self.reach, self.outbound, self.probation = reach, outbound, Confirmations(limits.window_s)
        self.gate = gate  # None: no uplink key, so no command is ever accepted
        self.stats = CommandStats()
        self._probation_lock = threading.Lock()  # the radio's thread offers, the beacon's reverts
        # What outlives a restart (the ground floor) keeps its probation; intervals come back
        # from the configuration at every start.
        durable = {name for name, entry in _on_probation().items() if entry.durable}
        for problem in self.probation.load_json(self.store.state.get(PROBATION_STATE), durable):
            log.warning("probation_state_dropped", problem=problem)

    def on_frame(self, frame: bytes) -> None:
        """A frame heard in a listen window: acted on only if the gate says it is ours and fresh."""
        cmd = self.gate.accept(frame) if self.gate is not None else None
        if cmd is not None:
            self.on_command(cmd)

    def on_command(self, cmd: uplink.Command) -> None:
        """A command the gate accepted: count it, act on it (a command without a handler is said on air)."""
        name = cmd.command_id.name.lower()
        self.stats.commands[name] = self.stats.commands.get(name, 0) + 1
        entry = TABLE.get(cmd.command_id)
        if entry is None:
            self.outbound.event(event("command_ignored", command=name))
            return
        entry.run(self, cmd)

    def _resend(self, cmd: uplink.Resend) -> None:
        for item in cmd.items:
            if (kind := record_kind(item.stream)) is not None:
                self.stats.repairs_requested += 1
                self.transmitter.request_repair(kind, item.boot, item.seq, item.fragments)

    def _ack(self, cmd: uplink.Ack) -> None:
        for r in cmd.ranges:
            if (kind := record_kind(r.stream)) is not None:
                self.stats.records_acknowledged += self.store.queue.acknowledge(kind, r.boot, r.last, from_seq=r.first)

    def _link_report(self, cmd: uplink.LinkReport) -> None:
        if cmd.boot == self.boot:
            self.transmitter.on_link_report(cmd.last_seq, cmd.frames)

    # ------------------------------------------------------------------ probation

    def on_probation(self, cmd: uplink.Command, entry: OnProbation) -> None:
        """Apply a change that could make us quieter on probation, or confirm one (payload/uplink/probation.py)."""
        refusal = entry.refuse(self, cmd)
        if refusal is not None:
            self.outbound.event(refusal)
            return
        name, value, current = cmd.name(), entry.asks(self, cmd), entry.current(self)
        # Two listen windows under the new settings at least: one for the event, one for the answer.
        windows_s = 2 * self.limits.window_every * self.cadence.beacon_s_under(*entry.under(self, value))
        confirm_s = max(self.limits.confirm_s, windows_s + self.limits.window_s)
        with self._probation_lock:
            outcome = self.probation.offer(name, value, current, self.clock.now().timestamp(), confirm_s)
            log.info("risky_command", command=name, value=value, outcome=outcome)
            if outcome == "repeat":
                return
            if outcome in ("pending", "restored"):
                entry.apply(self, value)
            self.store.state.set(PROBATION_STATE, self.probation.to_json())
        what = entry.describe(self, value)
        self.outbound.event(uplink.unconfirmed_event(cmd, what, confirm_s) if outcome == "pending"
                            else event(outcome, command=name, what=what))

    def revert_unconfirmed(self) -> None:
        """Put back what was not confirmed in time (the daemon calls it with every beacon)."""
        with self._probation_lock:
            expired = self.probation.expired(self.clock.now().timestamp())
            for p in expired:
                _on_probation()[p.name].apply(self, p.previous)
            if expired:
                self.store.state.set(PROBATION_STATE, self.probation.to_json())
        for p in expired:
            what = _on_probation()[p.name].describe(self, p.previous)
            self.outbound.event(event("reverted", command=p.name, what=what))
            log.warning("risky_command_reverted", command=p.name, value=p.value, back_to=p.previous)


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Acts:
    """A command acted on as it comes."""

    act: Callable[[CommandHandler, Any], None]  # (the handler, the command)

    def run(self, handler: CommandHandler, cmd: uplink.Command) -> None:
        self.act(handler, cmd)


@dataclass(frozen=True)
class OnProbation:
    """A risky command: what it sets, as a tuple (what probation keeps and a restart reads back),
    and how to apply and describe it. Each callable is handed the handler first."""

    asks: Callable[[CommandHandler, Any], tuple]  # the setting the command asks for
    current: Callable[[CommandHandler], tuple]  # the setting in force
    apply: Callable[[CommandHandler, tuple], None]
    describe: Callable[[CommandHandler, tuple], str]  # said in the events that tell the ground
    # the position interval and the mode a setting would leave in force: how long two windows take
    under: Callable[[CommandHandler, tuple], tuple[float, Mode]]
    refuse: Callable[[CommandHandler, Any], Event | None] = lambda handler, cmd: None  # why not at all
    durable: bool = False  # what it sets outlives a restart, so its probation must too

    def run(self, handler: CommandHandler, cmd: uplink.Command) -> None:
        handler.on_probation(cmd, self)


def _intervals_refused(h: CommandHandler, cmd: uplink.SetIntervals) -> Event | None:
    why = intervals_refused(cmd.telemetry_s, cmd.musing_s, h.planned_telemetry_s, h.limits)
    return event("intervals_refused", why=why) if why else None


TABLE: dict[int, Acts | OnProbation] = {
    uplink.CommandId.PING: Acts(lambda h, cmd: h.outbound.event(event("pong", nonce=cmd.nonce))),
    uplink.CommandId.SET_MODE: OnProbation(  # the ground floor: the governor runs no better than it
        asks=lambda h, cmd: (Mode[cmd.mode.name].value,),
        current=lambda h: (h.governor.ground_floor.value,),
        apply=lambda h, floor: h.governor.set_ground_floor(floor[0]),
        describe=lambda h, floor: f"ground floor {floor[0]}, mode {h.governor.mode.value}",
        under=lambda h, floor: (h.cadence.telemetry_s, Mode.worst(h.governor.mode, floor[0])),
        durable=True),
    uplink.CommandId.SET_INTERVALS: OnProbation(
        asks=lambda h, cmd: (cmd.telemetry_s, cmd.musing_s),
        current=lambda h: (h.cadence.telemetry_s, h.cadence.musing_s),
        apply=lambda h, v: h.cadence.set_intervals(float(v[0]), float(v[1])),
        describe=lambda h, v: f"intervals {v[0]:g} s telemetry, {v[1]:g} s musings",
        under=lambda h, v: (max(h.cadence.telemetry_s, v[0]), h.governor.mode),
        refuse=_intervals_refused),
    uplink.CommandId.RESEND: Acts(CommandHandler._resend),
    uplink.CommandId.MEMORY_NOTE: Acts(lambda h, cmd: h.memory.remember_note(cmd.text, h.clock.now())),
    uplink.CommandId.API_ANSWER: Acts(lambda h, cmd: h.reach.on_answer(cmd.request_seq, cmd.status, cmd.text)),
    uplink.CommandId.LINK_REPORT: Acts(CommandHandler._link_report),
    uplink.CommandId.ACK: Acts(CommandHandler._ack),
}


def _on_probation() -> dict[str, OnProbation]:
    """The risky commands' entries by name, as probation keeps them."""
    return {uplink.COMMANDS[cid].name(): entry for cid, entry in TABLE.items() if isinstance(entry, OnProbation)}


def record_kind(value: int) -> wire.Kind | None:
    """The record kind an uplink item names; None for telemetry (a late position is not repaired:
    a newer one has gone), SSDV and musing sentences (no records) or a kind unknown here."""
    try:
        kind = wire.Kind(value)
    except ValueError:
        return None
    return None if kind in wire.NOT_RECORDS or kind is wire.Kind.TELEMETRY else kind


def intervals_refused(telemetry_s: float, musing_s: float, planned_telemetry_s: float, limits) -> str | None:
    """Why a SET_INTERVALS must not be obeyed, or None. The position interval stays between the
    configured one (the duty cycle was planned for it: shorter could breach it) and
    `uplink.max_telemetry_s` (longer would silence the beacon and the listen windows, so the
    command could not be undone); musings no more often than `uplink.min_musing_s`."""
    longest = max(limits.max_telemetry_s, planned_telemetry_s)
    if not planned_telemetry_s <= telemetry_s <= longest:
        return f"telemetry {telemetry_s:g} s is outside {planned_telemetry_s:g}..{longest:g} s"
    if musing_s < limits.min_musing_s:
        return f"musings every {musing_s:g} s is below the {limits.min_musing_s:g} s minimum"
    return None
