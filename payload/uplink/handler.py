"""What the payload does with an uplink command the gate has let through (payload/uplink/gate.py):
one handler per command declared in `stratoecho.wire.uplink.COMMANDS`, found in a table by the
command's id, so adding a command means declaring it there and giving it a handler here.

SET_INTERVALS and SET_MODE could make the payload quieter, so they are applied on probation:
reverted unless the ground confirms them in time (payload/uplink/probation.py, `revert_unconfirmed`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from stratoecho import wire
from stratoecho.wire import uplink
from stratoecho.wire.events import event

from ..cadence import Cadence
from ..clock import Clock
from ..config import UplinkSection
from ..link.outbound import Outbound
from ..link.transmitter import Transmitter
from ..persona.memory import Memory
from ..persona.reach import Reach
from ..policy.governor import Governor
from ..policy.modes import Mode
from ..store import Store
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
    def __init__(self, boot: int, cadence: Cadence, limits: UplinkSection, clock: Clock, store: Store,
                 transmitter: Transmitter, memory: Memory, reach: Reach, outbound: Outbound,
                 gate: CommandGate | None = None):
        # SET_INTERVALS changes the cadence the loops and the transmitter read, never a copy.
        self.boot, self.cadence, self.limits, self.clock = boot, cadence, limits, clock
        self.planned_telemetry_s = cadence.planned.telemetry_s  # what the duty cycle was planned for
        self.governor: Governor = cadence.governor
        self.store, self.transmitter, self.memory = store, transmitter, memory
        self.reach, self.outbound, self.probation = reach, outbound, Confirmations(limits.window_s)
        self.gate = gate  # None: no uplink key, so no command is ever accepted
        self.stats = CommandStats()
        self._probation_lock = threading.Lock()  # the radio's thread offers, the beacon's reverts
        self._handlers: dict[uplink.CommandId, Callable] = {
            uplink.CommandId.RESEND: self._resend,
            uplink.CommandId.ACK: self._ack,
            uplink.CommandId.LINK_REPORT: self._link_report,
            uplink.CommandId.PING: lambda cmd: self.outbound.event(event("pong", nonce=cmd.nonce)),
            uplink.CommandId.SET_INTERVALS: self._set_intervals,
            uplink.CommandId.MEMORY_NOTE: lambda cmd: self.memory.remember_note(cmd.text, self.clock.now()),
            uplink.CommandId.API_ANSWER: lambda cmd: self.reach.on_answer(cmd.request_seq, cmd.status, cmd.text),
            uplink.CommandId.SET_MODE: self._set_mode,
        }
        # The ground floor is durable, so its probation is too; intervals come back from the
        # configuration at every start.
        for problem in self.probation.load_json(self.store.state.get(PROBATION_STATE), {"set_mode"}):
            log.warning("probation_state_dropped", problem=problem)

    def handles(self) -> set[uplink.CommandId]:
        """The commands this payload acts on."""
        return set(self._handlers)

    def on_frame(self, frame: bytes) -> None:
        """A frame heard in a listen window: acted on only if the gate says it is ours and fresh."""
        cmd = self.gate.accept(frame) if self.gate is not None else None
        if cmd is not None:
            self.on_command(cmd)

    def on_command(self, cmd: uplink.Command) -> None:
        """A command the gate accepted: count it, act on it (a command without a handler is said on air)."""
        name = cmd.command_id.name.lower()
        self.stats.commands[name] = self.stats.commands.get(name, 0) + 1
        handler = self._handlers.get(cmd.command_id)
        if handler is None:
            self.outbound.event(event("command_ignored", command=name))
            return
        handler(cmd)

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

    def _set_intervals(self, cmd: uplink.SetIntervals) -> None:
        refused = intervals_refused(cmd.telemetry_s, cmd.musing_s, self.planned_telemetry_s, self.limits)
        if refused:
            self.outbound.event(event("intervals_refused", why=refused))
            return
        c = self.cadence
        self._on_risky(cmd, "set_intervals", (cmd.telemetry_s, cmd.musing_s), (c.telemetry_s, c.musing_s))

    def _set_mode(self, cmd: uplink.SetMode) -> None:
        floor = ("nominal", "low_power", "survival")[int(cmd.mode)]
        self._on_risky(cmd, "set_mode", (floor,), (self.governor.ground_floor.value,))

    # ------------------------------------------------------------------ probation

    def _on_risky(self, cmd, name: str, value: tuple, current: tuple) -> None:
        """Apply a change that could make us quieter on probation, or confirm one (payload/uplink/probation.py)."""
        # Two listen windows under the new settings at least: one for the event, one for the answer.
        g, telemetry_s = self.governor, self.cadence.telemetry_s
        if name == "set_intervals":
            telemetry_s = max(telemetry_s, value[0])
        mode = Mode.worst(g.mode, value[0]) if name == "set_mode" else g.mode
        windows_s = 2 * self.limits.window_every * self.cadence.beacon_s_under(telemetry_s, mode)
        confirm_s = max(self.limits.confirm_s, windows_s + self.limits.window_s)
        with self._probation_lock:
            outcome = self.probation.offer(name, value, current, self.clock.now().timestamp(), confirm_s)
            log.info("risky_command", command=name, value=value, outcome=outcome)
            if outcome == "repeat":
                return
            if outcome in ("pending", "restored"):
                self._apply(name, value)
            self.store.state.set(PROBATION_STATE, self.probation.to_json())
        what = self._describe(name, value)
        self.outbound.event(uplink.unconfirmed_event(cmd, what, confirm_s) if outcome == "pending"
                            else event(outcome, command=name, what=what))

    def revert_unconfirmed(self) -> None:
        """Put back what was not confirmed in time (the daemon calls it with every beacon)."""
        with self._probation_lock:
            expired = self.probation.expired(self.clock.now().timestamp())
            for p in expired:
                self._apply(p.name, p.previous)
            if expired:
                self.store.state.set(PROBATION_STATE, self.probation.to_json())
        for p in expired:
            self.outbound.event(event("reverted", command=p.name, what=self._describe(p.name, p.previous)))
            log.warning("risky_command_reverted", command=p.name, value=p.value, back_to=p.previous)

    def _apply(self, name: str, value: tuple) -> None:
        if name == "set_intervals":
            self.cadence.set_intervals(float(value[0]), float(value[1]))
        else:
            self.governor.set_ground_floor(value[0])

    def _describe(self, name: str, value: tuple) -> str:
        if name == "set_intervals":
            return f"intervals {value[0]:g} s telemetry, {value[1]:g} s musings"
        return f"ground floor {value[0]}, mode {self.governor.mode.value}"


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
