"""The payload daemon: sense, think, queue, transmit — each a loop on the shared stop event.

    beacon  every schedule.telemetry_s: read sensors -> UKHAS sentence -> store
    health  every schedule.health_s:    store, link and Pi state -> health record; store faults -> events
    camera  every schedule.image_s:     a still kept on the card, its thumbnail -> image record (or SSDV packets)
    think   every schedule.musing_s:    read sensors -> prompt -> persona worker
                                        -> outbound guard -> musing record -> store
    radio   continuously:              store -> frames -> airtime budget -> radio

The beacon never waits for the persona: they run in separate threads and only
meet in the store, whose priorities put telemetry first.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from stratoecho import __version__, wire
from stratoecho.bundle import Bundle
from stratoecho.musing_quality import MusingFacts, Request
from stratoecho.wire import ssdv, uplink
from stratoecho.wire.events import Event, event

from .budget import BENCH_BOARD, generation_s, musing_record_bytes, think_budget
from .card import is_no_space, stills_budget
from .clock import Clock
from .commands import CommandGate
from .config import PayloadConfig
from .confirm import Confirmations
from .governor import Governor
from .guard import OutboundGuard
from .link import Transmitter
from .memory import Memory
from .modes import Mode, policy_for
from .outbound import Outbound
from .persona import PersonaError, PersonaWorker
from .prompts import (
    PromptContext,
    build_prompt,
    finish_unfinished,
    fit_musing,
    memory_query,
    prompt_budget_chars,
    sun_is_up,
)
from .radio import Radio
from .reach import Outcome, Reach
from .reach import describe as describe_outcome
from .sensors import Readings, Sensors, fresh
from .store import Store
from .watchdog import Liveness, RestartLimiter, boot_banner

if TYPE_CHECKING:  # the parts' types only: the daemon never opens a camera or a pin itself
    from .camera import Camera
    from .outputs import BatteryHeater, StatusLed
    from .pi_health import PiHealth

log = structlog.get_logger(__name__)

# A stop, SIGTERM to exit, takes at most this (plus closing files): half the unit's
# TimeoutStopSec=20, so a planned stop never turns into systemd's SIGKILL.
STOP_BUDGET_S = 10.0
RADIO_CLOSE_S = 2.0  # of it, kept for closing a radio whose thread is stuck, and for that thread to end
PROBATION_STATE = "uplink:probation"  # risky changes awaiting confirmation (payload/confirm.py)
SSDV_IMAGE_STATE = "ssdv:next_image_id"  # the next picture's SSDV image id (0..255)
STILLS_STATE = "camera:stills_taken"  # stills with a thumbnail, across reboots: which one goes down (send_every)
MUSING_AIRTIME_SHARE = 0.25  # of the duty-cycle budget: the beacon and repairs need the rest


@dataclass
class DaemonStats:
    boot: int = 0
    telemetry_queued: int = 0
    musings_generated: int = 0
    musings_queued: int = 0
    musing_sentences_queued: int = 0  # [persona] sentences: the text sentences of the musings queued
    musings_dropped_by_guard: int = 0
    musings_empty: int = 0
    persona_failures: int = 0
    tokens: int = 0
    generation_s: float = 0.0
    guard_reasons: dict = field(default_factory=dict)
    commands: dict = field(default_factory=dict)
    repairs_requested: int = 0
    health_queued: int = 0
    records_acknowledged: int = 0
    images_queued: int = 0
    ssdv_packets_queued: int = 0
    store_faults: int = 0


@dataclass
class Components:
    """What the daemon schedules: the parts it senses and drives, and the components of one boot
    (payload/assembly.py builds them; a test may hand in others)."""

    sensors: Sensors
    radio: Radio
    store: Store
    boot: int  # the store's number for this boot
    outbound: Outbound  # the one port records leave by
    transmitter: Transmitter
    governor: Governor
    memory: Memory
    reach: Reach
    guard: OutboundGuard
    probation: Confirmations
    worker: PersonaWorker | None = None  # None: no persona flies
    gate: CommandGate | None = None  # None: no uplink key, no commands
    camera: Camera | None = None
    pi_health: PiHealth | None = None
    led: StatusLed | None = None
    heater: BatteryHeater | None = None
    disk_usage: Callable = shutil.disk_usage  # the card's free space


class Daemon:
    def __init__(self, cfg: PayloadConfig, clock: Clock, bundle: Bundle | None, data_dir: Path, parts: Components,
                 stop: threading.Event | None = None, liveness: Liveness | None = None):
        self.cfg, self.clock, self.bundle, self.data_dir = cfg, clock, bundle, Path(data_dir)
        self.lockstep = clock.lockstep  # the bench's clock: flight time is priced, not timed
        self.sensors, self.radio, self.camera, self.pi_health = parts.sensors, parts.radio, parts.camera, parts.pi_health
        self.led, self.heater, self.disk_usage = parts.led, parts.heater, parts.disk_usage
        self.store, self.boot, self.outbound, self.transmitter = parts.store, parts.boot, parts.outbound, parts.transmitter
        self.governor, self.memory, self.reach, self.guard = parts.governor, parts.memory, parts.reach, parts.guard
        self.worker, self.gate, self.probation = parts.worker, parts.gate, parts.probation
        self.stop = stop or clock.event()
        # The intervals in force: the configuration's, until a SET_INTERVALS changes them (on probation).
        self.schedule = cfg.schedule.model_copy()
        self._planned_telemetry_s = cfg.schedule.telemetry_s  # what the duty cycle was planned for
        self._last_readings: Readings | None = None
        self._last_sentence = (0, "")  # the last position sentence's number and time (musing sentences)
        self.stats = DaemonStats(boot=self.boot)
        self._led_pattern = None
        # Keyed liveness: each loop pings after each run; the systemd watchdog is fed only while all are current.
        self.liveness = liveness or Liveness()
        self.persona_restarts = RestartLimiter(3, 3600.0)  # then fly on without musings for the hour
        self._persona_down = False
        self._musing_no = 0  # musings asked for this boot (the bench's sampling seed)
        self.transmitter.follow(lambda: self.governor.period_s("beacon", self.schedule.telemetry_s),
                                self.governor.transmit_factor)
        if self.gate is not None:
            self.transmitter.listen_after(cfg.uplink, self.on_uplink, uplink.payload_hash(cfg.callsign))
        # The ground floor is durable, so its probation is too; intervals come back from the
        # configuration at every start.
        self._probation_lock = threading.Lock()  # the radio's thread offers, the beacon's reverts
        for problem in self.probation.load_json(self.store.get_state(PROBATION_STATE), {"set_mode"}):
            log.warning("probation_state_dropped", problem=problem)
        self._last_status: dict[str, str] = {}  # each device's status at the last beacon
        self.producers_stop = clock.event()  # producers end first; the radio may drain after
        self._threads: list[threading.Thread] = []
        structlog.contextvars.bind_contextvars(boot=self.boot, callsign=cfg.callsign)

    # ------------------------------------------------------------------ producers

    def health_once(self) -> None:
        """Commit what waits in the batch, send down any store faults, and a health record."""
        self.store.maybe_flush()
        while self.store.faults:
            self.stats.store_faults += 1
            self.outbound.event(event("store_fault", detail=self.store.faults.popleft()))
        while self.memory.faults:
            self.outbound.event(event("memory_fault", detail=self.memory.faults.popleft()))
        for notice in self.store.take_notices():  # card full / recovered, once each (docs/storage.md)
            self.outbound.event(notice)
        pi = self.pi_health.read().as_health_fields() if self.pi_health is not None else {}
        pi.pop("uptime_s", None)  # the flight's uptime, below, not the OS's
        fields = {**pi, "uptime_s": int(self.clock.elapsed_s()), "loss": round(self.transmitter.loss.loss, 3),
                  **self.store.health(), **self.device_status(), **self.power_fields(), **self.governor.fields()}
        if self.gate is not None:
            fields["uplink_counter"] = self.gate.last_counter
        self.outbound.record(wire.Kind.HEALTH, fields)
        self.stats.health_queued += 1

    def picture_once(self) -> bool:
        """A still for the card and, when the camera gives one, its thumbnail for the air."""
        if not self.governor.runs("capture"):
            return False
        if self.store.card.full:
            return False  # no stills while the card is full: what room is left is the queue's
        reading = self.camera.capture()
        self.note_devices({"camera": reading.status})
        self.keep_stills_in_budget(reading)
        if reading.thumbnail_jpeg is None:
            return False
        cam = self.cfg.devices.camera
        taken = int(self.store.get_state(STILLS_STATE, "0"))
        self.store.set_state(STILLS_STATE, str(taken + 1))
        if cam is not None and taken % cam.send_every:
            log.info("thumbnail_kept_on_card", still=taken, send_every=cam.send_every)
            return True  # the still is on the card; the radio's time goes to one in send_every
        if cam is not None and cam.ssdv and self.ssdv_picture(reading.thumbnail_jpeg, cam):
            return True
        self.outbound.record(wire.Kind.IMAGE, reading.thumbnail_jpeg)
        self.stats.images_queued += 1
        return True

    def ssdv_picture(self, thumbnail: bytes, cam) -> bool:
        """The thumbnail as SSDV packets instead of an image record; False when it cannot be
        (a JPEG the encoder refuses): the caller then sends it as a record, so it still goes down."""
        # SSDV's image id is one byte: it wraps at 256, numbered on across reboots so the ground's
        # (callsign, image id) does not meet an old picture's packets minutes later.
        image_id = int(self.store.get_state(SSDV_IMAGE_STATE, "0"))
        try:
            packets = ssdv.encode_image(ssdv.prepare_jpeg(thumbnail, quality=cam.ssdv_quality), cam.ssdv_callsign,
                                        image_id, quality=cam.ssdv_quality)
        except (ValueError, OSError) as e:  # WireError is a ValueError; Pillow's unreadable image an OSError
            log.warning("ssdv_refused", error=str(e), image_id=image_id)
            return False
        self.store.set_state(SSDV_IMAGE_STATE, str((image_id + 1) % 256))
        self.outbound.ssdv(packets)
        self.stats.images_queued += 1
        self.stats.ssdv_packets_queued += len(packets)
        log.info("ssdv_queued", image_id=image_id, packets=len(packets))
        return True

    def keep_stills_in_budget(self, reading) -> None:
        """A still the card refused marks the card full; a still kept may push the oldest out
        of `devices.camera.stills_mb` (bounded by the card's size: payload/card.py)."""
        exc = self.camera.last_exc
        if reading.status == "error" and exc is not None and is_no_space(exc):
            self.store.card_refused("stills", exc)
        cam = self.cfg.devices.camera
        if reading.status == "ok" and cam is not None:
            try:
                total = self.disk_usage(self.data_dir).total
            except OSError:
                total = None
            self.camera.prune_stills(stills_budget(cam.stills_mb, total, self.store.budgets.min_free))

    def note_devices(self, status: dict[str, str]) -> None:
        """A device whose status changed is an event on air at once: the ground sees a lost
        GPS within a beacon, not at the next health record."""
        for device, now in status.items():
            before = self._last_status.get(device)
            if now != before and not (before is None and now == "ok") and now != "starting":
                self.outbound.event(event("device", device=device, before=before or "unknown", after=now))
        self._last_status.update(status)

    def show_led(self) -> None:
        """The status LED says the mode (or landed, or a device fault) at a glance."""
        if self.led is None:
            return
        faulted = any(v not in ("ok", "starting") for v in self._last_status.values())
        pattern = self.governor.led_pattern(faulted)
        if pattern != self._led_pattern:
            self.led.show(pattern)
            self._led_pattern = pattern

    def drive_heater(self, r: Readings) -> None:
        """The battery heater acts on the battery's own temperature; unknown means off (outputs.heater_decision)."""
        if self.heater is None:
            return
        temp = None if math.isnan(r.box_temp_c) else r.box_temp_c
        self.heater.update(temp, r.batt_mv or None)

    def power_fields(self) -> dict:
        """Battery, heat and heater for the health record."""
        r, fields = self._last_readings, {}
        if r is not None:
            r = fresh(r)  # the device's status field says why a value is missing
            if not math.isnan(r.box_temp_c):
                fields["box_temp_c"] = round(r.box_temp_c, 1)
            if not math.isnan(r.batt_ma):
                fields["batt_ma"] = int(round(r.batt_ma))
            if r.batt_mv:
                fields["batt_mv"] = int(r.batt_mv)
        if self.heater is not None:
            h = self.heater.status()
            fields["heater"] = f"{'on' if h.on else 'off'}:{h.reason}"
        return fields

    def device_status(self) -> dict[str, str]:
        """The last status of each device the sensors report (health record fields gps, bme280 ...)."""
        return {k: v for k, v in self._last_status.items() if k in wire.HEALTH_FIELD_NAMES}

    def beacon_once(self) -> Readings:
        self.revert_unconfirmed()
        r = self.sensors.read()
        self.note_devices(r.status)
        cpu = self.pi_health.cpu_temp_c() if self.pi_health is not None else None
        for e in self.governor.update(r, self.clock.elapsed_s(), cpu):
            self.outbound.event(e)
        r = replace(r, phase=self.governor.phase.value)
        self._last_readings = r
        self.drive_heater(r)
        self.show_led()
        self.reach.tick()  # answers overdue become outcomes; re-asks go out

        encode = wire.TELEMETRY_ENCODERS[self.cfg.telemetry_format]
        now = fresh(r)  # a sensor that did not answer is no reading, never its last value

        def sentence(seq: int) -> bytes:
            return encode(
                wire.Telemetry(
                    callsign=self.cfg.callsign, seq=seq, time=r.time.strftime("%H:%M:%S"), lat=r.lat,
                    lon=r.lon, alt=int(round(r.alt_m)), sats=r.sats, temp_c=now.temp_c,
                    pressure_hpa=now.pressure_hpa, batt_mv=now.batt_mv, boot=self.boot,
                )
            )

        seq = self.outbound.sentence(sentence, created=r.time.timestamp())
        self._last_sentence = (seq, r.time.strftime("%H:%M:%S"))
        self.stats.telemetry_queued += 1
        log.debug("telemetry_queued", seq=seq, alt=round(r.alt_m), phase=r.phase)
        return r

    def think_once(self) -> str | None:
        """One musing from the current readings; None when nothing worth sending came out."""
        if self.worker is None or self.bundle is None or not self.governor.runs("think"):
            return None  # the language model is the first load shed
        r = self._last_readings or self.sensors.read()
        phase, mode = self.governor.phase.value, self.governor.mode.value
        # Read once, so the facts logged name the outcomes the prompt says (the radio's thread may add one).
        outcomes = self.reach.recent_outcomes(3)
        ctx = PromptContext(phase=phase, mode=mode, memories=self.memory.for_prompt(memory_query(r, phase, mode)),
                            outcomes=[describe_outcome(o) for o in outcomes])
        p = build_prompt(self.bundle.manifest.persona.system_prompt, fresh(r), ctx,
                         prompt_budget_chars(self.worker.n_ctx, self.cfg.persona.max_tokens))
        if p.over_budget:
            log.warning("prompt_over_budget", chars=p.chars)
        # The budget drops the oldest outcomes first: those kept are the newest.
        facts = prompt_facts(fresh(r), phase, mode, outcomes[len(outcomes) - p.outcomes:], p.memories)
        prompt = self.bundle.render_prompt(p.messages)
        budget = self.musing_budget()
        max_tokens, max_chars = self.cfg.persona.max_tokens, self.cfg.persona.max_chars
        if budget is not None:
            if not budget.enabled:
                return None
            max_tokens, max_chars = budget.max_tokens, budget.max_chars
            self.worker.set_budget(budget.timeout_s, budget.n_threads, budget.n_ctx)
        if self._persona_down:  # generate() restarts a dead worker: only as often as the limiter allows
            if not self.persona_restarts.allow():
                return None
            self._persona_down = False
        self._musing_no += 1
        log.debug("musing_asked", n=self._musing_no, max_tokens=max_tokens)
        try:
            gen = self.worker.generate(prompt, max_tokens, seed=self._musing_seed())
            if not self._spend_generation(prompt, gen):
                return None  # over the deadline on the board (the bench) or stopping
        except PersonaError as e:
            if self.producers_stop.is_set():
                return None  # cut short by a stop: not the persona's failure
            self.stats.persona_failures += 1
            self._persona_down = True
            log.warning("persona_failed", error=str(e))
            return None
        self.stats.musings_generated += 1
        self.stats.tokens += gen.tokens
        self.stats.generation_s += gen.seconds
        text = fit_musing(finish_unfinished(gen.text, gen.finish_reason), max_chars)
        # Each musing made is one event with what its prompt said, for the bench's measure of
        # musings (docs/payload.md, "What each musing was told"); the guard's drops carry no text.
        made = {"boot": self.boot, "t_s": round(self.clock.elapsed_s(), 1), "tokens": gen.tokens,
                "finish": gen.finish_reason, "facts": facts.to_dict()}  # boot: the think thread has no bound context
        if not text:
            self.stats.musings_empty += 1
            # raw_chars > 0: it wrote only privacy placeholders, which fit_musing took out
            log.info("musing_empty", raw_chars=len(gen.text.strip()), **made)
            return None
        if not self.guard.allow(text):
            self.stats.musings_dropped_by_guard += 1
            self.stats.guard_reasons = dict(self.guard.dropped)
            log.warning("musing_dropped_by_guard", reasons=self.guard.reasons(text), **made)
            return None
        seq = self.outbound.record(wire.Kind.MUSING, text, created=r.time.timestamp())
        self.stats.musings_queued += 1
        # fit_musing only shortens: given the whole length it cleans without cutting.
        cut = text != fit_musing(gen.text, len(gen.text))
        log.info("musing", seq=seq, seconds=round(gen.seconds, 2), text=text, cut=cut, **made)
        if self.cfg.persona.sentences:
            self.musing_sentences(seq, r, text)
        self.memory.remember_musing(self.boot, seq, r.time, text)
        self.reach.consider({"lat": r.lat, "lon": r.lon} if r.fix_valid else {}, text)
        return text

    def musing_sentences(self, seq: int, r: Readings, text: str) -> None:
        """The musing again as UKHAS text sentences for stock gateways, cut into parts here. The
        radio stamps each as it is keyed with the last position sentence on air (payload/link.py,
        `wire.restamp`); what is written here goes as it is only before any position this boot."""
        counter, last_time = self._last_sentence
        when = self.clock.now().replace(microsecond=0)
        if when.strftime("%H:%M:%S") == last_time:
            when += timedelta(seconds=1)
        try:
            lines = wire.encode_musing_sentences(self.cfg.callsign, counter, when, r.lat, r.lon, r.alt_m,
                                                 self.boot, seq, text, max_bytes=self.cfg.radio.mtu)
        except wire.WireError as e:  # a musing of nothing a gateway can carry: the record still goes
            log.warning("musing_sentences_skipped", seq=seq, error=str(e))
            return
        self.outbound.musing_sentences(lines)
        self.stats.musing_sentences_queued += len(lines)

    def _musing_seed(self) -> int | None:
        """On the bench, a sampling seed from the flight's seed, the boot and the musing's number:
        the same flight says the same things. In flight: None, llama.cpp's own."""
        if not self.lockstep:
            return None
        return (self.cfg.sim.seed * 1_000_003 + self.boot * 10_007 + self._musing_no) & 0x7FFFFFFF

    def _spend_generation(self, prompt: str, gen) -> bool:
        """On the bench's lockstep clock, the generation takes the flight time it would take on the
        rehearsed board (payload.budget.generation_s), not what this machine took; past the worker's
        deadline it is killed there, as on the Pi. True when the musing may go on."""
        if not self.lockstep:
            return True  # real time: the generation already took its time
        cost = generation_s(self.cfg.persona.board or BENCH_BOARD, self.bundle.model_path.stat().st_size,
                            len(prompt.encode("utf-8")), gen.tokens)
        deadline = self.worker.timeout_s
        if self.clock.spend(min(cost, deadline), cores=self.worker.n_threads, stop=self.producers_stop):
            return False
        if cost > deadline:
            self.worker.kill()
            raise PersonaError(f"no musing within {deadline:g} s on {self.cfg.persona.board or BENCH_BOARD} "
                               f"(the bench prices this one at {cost:.0f} s); worker killed")
        return True

    def musing_budget(self):
        """With `persona.board` set, what this musing may cost (payload/budget.py) from the board,
        the energy left and the mode; None: the fixed [persona] values."""
        board = self.cfg.persona.board
        if board is None or self.bundle is None:
            return None
        r, g = self.cfg.radio, self.governor
        energy = max(0.0, 1.0 - g.used_wh / self.cfg.power.battery_wh)
        # Musings may take a quarter of the hour's airtime budget, spread over the musings in it.
        airtime_s = r.duty_cycle * self.schedule.musing_s * MUSING_AIRTIME_SHARE
        if self.cfg.persona.sentences:
            airtime_s /= 2  # the record and its text sentences carry the same words
        record = musing_record_bytes(airtime_s, r.mtu, r.airtime_s)
        return think_budget(board, self.bundle.model_path.stat().st_size, energy, g.mode,
                            max_tokens=self.cfg.persona.max_tokens,
                            context_length=self.bundle.manifest.model.context_length, record_bytes=record)

    # ------------------------------------------------------------------ uplink

    def on_uplink(self, frame: bytes) -> None:
        """A frame heard in a listen window: act on it only if the gate says it is ours and fresh."""
        cmd = self.gate.accept(frame) if self.gate else None
        if cmd is None:
            return
        name = cmd.command_id.name.lower()
        self.stats.commands[name] = self.stats.commands.get(name, 0) + 1
        if isinstance(cmd, uplink.Resend):
            for item in cmd.items:
                if (kind := record_kind(item.stream)) is not None:
                    self.stats.repairs_requested += 1
                    self.transmitter.request_repair(kind, item.boot, item.seq, item.fragments)
        elif isinstance(cmd, uplink.Ack):
            for r in cmd.ranges:
                if (kind := record_kind(r.stream)) is not None:
                    self.stats.records_acknowledged += self.store.acknowledge(kind, r.boot, r.last, from_seq=r.first)
        elif isinstance(cmd, uplink.LinkReport):
            if cmd.boot == self.boot:
                self.transmitter.on_link_report(cmd.last_seq, cmd.frames)
        elif isinstance(cmd, uplink.Ping):
            self.outbound.event(event("pong", nonce=cmd.nonce))
        elif isinstance(cmd, uplink.SetIntervals):
            refused = intervals_refused(cmd.telemetry_s, cmd.musing_s, self._planned_telemetry_s, self.cfg.uplink)
            if refused:
                self.outbound.event(event("intervals_refused", why=refused))
                return
            sched = self.schedule
            self.on_risky(cmd, "set_intervals", (cmd.telemetry_s, cmd.musing_s),
                          (sched.telemetry_s, sched.musing_s))
        elif isinstance(cmd, uplink.MemoryNote):
            self.memory.remember_note(cmd.text, self.clock.now())
        elif isinstance(cmd, uplink.ApiAnswer):
            self.reach.on_answer(cmd.request_seq, cmd.status, cmd.text)
        elif isinstance(cmd, uplink.SetMode):
            floor = ("nominal", "low_power", "survival")[int(cmd.mode)]
            self.on_risky(cmd, "set_mode", (floor,), (self.governor.ground_floor.value,))
        else:
            self.outbound.event(event("command_ignored", command=name))

    def on_risky(self, cmd, name: str, value: tuple, current: tuple) -> None:
        """Apply a change that could make us quieter on probation, or confirm one (payload/confirm.py)."""
        # Two listen windows under the new settings at least: one for the event, one for the answer.
        g, telemetry_s = self.governor, self.schedule.telemetry_s
        if name == "set_intervals":
            telemetry_s = max(telemetry_s, value[0])
        mode = Mode.worst(g.mode, value[0]) if name == "set_mode" else g.mode
        windows_s = 2 * self.cfg.uplink.window_every * telemetry_s * (policy_for(mode, g.phase.value)["beacon"] or 1.0)
        confirm_s = max(self.cfg.uplink.confirm_s, windows_s + self.cfg.uplink.window_s)
        with self._probation_lock:
            outcome = self.probation.offer(name, value, current, self.clock.now().timestamp(), confirm_s)
            log.info("risky_command", command=name, value=value, outcome=outcome)
            if outcome == "repeat":
                return
            if outcome in ("pending", "restored"):
                self._apply(name, value)
            self.store.set_state(PROBATION_STATE, self.probation.to_json())
        what = self._describe(name, value)
        self.outbound.event(uplink.unconfirmed_event(cmd, what, confirm_s) if outcome == "pending"
                         else event(outcome, command=name, what=what))

    def revert_unconfirmed(self) -> None:
        """Put back what was not confirmed in time (called with every beacon)."""
        with self._probation_lock:
            expired = self.probation.expired(self.clock.now().timestamp())
            for p in expired:
                self._apply(p.name, p.previous)
            if expired:
                self.store.set_state(PROBATION_STATE, self.probation.to_json())
        for p in expired:
            self.outbound.event(event("reverted", command=p.name, what=self._describe(p.name, p.previous)))
            log.warning("risky_command_reverted", command=p.name, value=p.value, back_to=p.previous)

    def _apply(self, name: str, value: tuple) -> None:
        if name == "set_intervals":
            self.schedule.telemetry_s, self.schedule.musing_s = float(value[0]), float(value[1])
        else:
            self.governor.set_ground_floor(value[0])

    def _describe(self, name: str, value: tuple) -> str:
        if name == "set_intervals":
            return f"intervals {value[0]:g} s telemetry, {value[1]:g} s musings"
        return f"ground floor {value[0]}, mode {self.governor.mode.value}"

    # ------------------------------------------------------------------ loops

    def _allowance_s(self, name: str, period_s: float, first_s: float) -> float:
        """Wall seconds a loop may go without a ping: its period, what one run may take, a margin."""
        run_s = {"think": 2 * self.cfg.persona.timeout_s,
                 "camera": self.cfg.devices.camera.timeout_s if self.cfg.devices.camera else 60.0}.get(name, 60.0)
        # On the bench's lockstep liveness counts flight seconds (payload/__main__.py): no conversion.
        wait_s = max(period_s, first_s)
        return (wait_s if self.lockstep else self.clock.wall_s(wait_s)) + run_s + 30.0

    def _ran(self, name: str, period_s: float) -> None:
        """A loop has run: its allowance follows its period (the uplink can change it) and its
        silence starts again. Registering alone would only change the allowance, and a loop
        that keeps running would be declared hung one allowance after it started."""
        self.liveness.register(name, self._allowance_s(name, period_s, 0.0))
        self.liveness.ping(name)

    def _every(self, period_s, first_s: float, action, name: str) -> None:
        """Run `action` every `period_s()` flight seconds (read each time: the uplink can change it)."""
        due = self.clock.elapsed_s() + first_s
        self.liveness.register(name, self._allowance_s(name, period_s(), first_s))
        while not self.producers_stop.is_set():
            if self.clock.wait(due - self.clock.elapsed_s(), self.producers_stop):
                return
            try:
                action()
            except Exception:  # one failing task must not end the others
                log.exception("task_failed", task=name)
            self._ran(name, period_s())
            due += period_s()
            if due < self.clock.elapsed_s():  # fell behind (slow model): skip, don't burst
                due = self.clock.elapsed_s() + period_s()

    def fly_without_persona(self) -> None:
        """A model that will not load: the loops start without the think loop."""
        if self.worker is not None:
            self.worker.close()
        self.worker = None

    def start(self, launch: bool = False) -> None:
        """Start the loops; with `launch`, flight time starts now (the bench world's launch)."""
        if self.worker is not None:
            self.worker.start()
        if launch:
            self.clock.restart()  # loading the model is not part of the flight
            self.sensors.restart()
        sched = self.schedule
        if self.led is not None:
            self.led.show("booting")
        g = self.governor
        self.outbound.event(self.banner())
        window_s = self.cfg.uplink.window_s
        self.liveness.register("radio", (window_s if self.lockstep else self.clock.wall_s(window_s)) + 120.0)
        self.transmitter.on_loop = lambda: self.liveness.ping("radio")
        specs = [
            ("beacon", lambda: self._every(lambda: g.period_s("beacon", sched.telemetry_s), 0.0, self.beacon_once,
                                           "beacon")),
            ("radio", self.transmitter.run),
            ("health", lambda: self._every(lambda: g.period_s("housekeeping", sched.health_s), sched.health_s,
                                           self.health_once, "health")),
        ]
        if self.camera is not None:
            specs.append(("camera", lambda: self._every(lambda: g.period_s("capture", sched.image_s),
                                                        sched.image_s / 2, self.picture_once, "camera")))
        if self.worker is not None:
            specs.append(("think", lambda: self._every(lambda: g.period_s("think", sched.musing_s),
                                                       sched.first_musing_s, self.think_once, "think")))
        for name, target in specs:
            self._threads.append(self.clock.thread(target, name))

    def banner(self) -> Event:
        """The first event of a boot: what flies, how it woke, what room it has (docs/payload.md)."""
        g, m = self.governor, self.bundle.manifest if self.bundle else None
        sha = next((f.sha256 for f in m.files if f.path == m.model.file), None) if m else None
        try:
            free_mb = self.disk_usage(self.data_dir).free / 2**20
        except OSError:
            free_mb = None
        return boot_banner(__version__, m.persona.name if m else None, sha[:8] if sha else None,
                           free_mb, self.boot, g.mode.value, unplanned=g.unplanned_reboot, phase=g.phase.value)

    def shutdown(self, drain_s: float = 0.0, abort: threading.Event | None = None, on_stopping=None,
                 budget_s: float = STOP_BUDGET_S) -> None:
        """Stop producers, let the radio drain the queue for up to `drain_s` flight seconds (cut
        short when `abort` is set: a SIGTERM during the drain), stop; `on_stopping()` when the
        drain is over and the stop proper begins (systemd's STOPPING=1).

        Everything but the drain fits in `budget_s` of the clock's seconds (flight seconds on
        the bench's lockstep, where the supervisor counts them too): a generation in flight is
        cut short, and a thread stuck in a driver (a wedged I2C bus, a camera, a module that
        keeps AUX low) is left behind — it is a daemon thread — rather than waited for."""
        for key in self.liveness.keys():
            self.liveness.pause(key)  # stopping threads are not hung ones
        self.producers_stop.set()
        if self.worker is not None:
            self.worker.cancel()  # a musing in flight would hold the think loop for persona.timeout_s
        radio_thread = [t for t in self._threads if t.name == "radio"]
        left_behind = self._join_by([t for t in self._threads if t not in radio_thread],
                                    self.clock.elapsed_s() + budget_s / 2)
        end = self.clock.elapsed_s() + drain_s
        while (drain_s > 0 and sum(self.store.depth().values()) and self.clock.elapsed_s() < end
               and not (abort is not None and abort.is_set())):
            self.clock.wait(min(1.0, end - self.clock.elapsed_s()), abort)
        if on_stopping is not None:
            on_stopping()
        deadline = self.clock.elapsed_s() + budget_s / 2
        self.stop.set()
        self.transmitter.wake.set()
        if self._join_by(radio_thread, deadline - RADIO_CLOSE_S):
            self.radio.close()  # ends a wait on the module (AUX) that would outlast the stop
            left_behind += self._join_by(radio_thread, deadline)
        if left_behind:
            log.warning("stop_left_threads", threads=[t.name for t in left_behind])
        if self.worker is not None:
            self.worker.close()
        if self.camera is not None:
            self.camera.close()
        if self.heater is not None:
            self.heater.close()  # never leave a heater on behind a stopped daemon
        if self.led is not None:
            self.led.show("off")
        self.governor.close()
        self.memory.close()
        self.write_stats(final=True)
        self.store.close()
        self.radio.close()

    def _join_by(self, threads: list[threading.Thread], deadline: float) -> list[threading.Thread]:
        """Join each thread until `deadline` (the clock's elapsed seconds); those still running."""
        for t in threads:
            self.clock.join(t, max(deadline - self.clock.elapsed_s(), 0.0))
        return [t for t in threads if t.is_alive()]

    # ------------------------------------------------------------------ report

    def energy_wh(self) -> float:
        p = self.cfg
        joules = (
            p.power.base_w * self.clock.elapsed_s()
            + p.persona.joules_per_token * self.stats.tokens
            + p.radio.tx_power_w * self.transmitter.stats.airtime_s
        )
        return joules / 3600.0

    def snapshot(self) -> dict:
        return {
            "daemon": asdict(self.stats),
            "link": asdict(self.transmitter.stats),
            "queue_depth": self.store.depth(),
            "flight_s": self.clock.elapsed_s(),
            "energy_wh": self.energy_wh(),
            "persona_restarts": self.worker.restarts if self.worker else 0,
            "uplink_rejected": dict(self.gate.rejections) if self.gate else {},
            "loss_estimate": round(self.transmitter.loss.loss, 4),
            "reach": self.reach.stats(),
            "mode": self.governor.mode.value,
            "phase": self.governor.phase.value,
        }

    def write_stats(self, final: bool = False) -> None:
        """stats.json, replaced whole; not while the card is full, but for the `final` one at a
        stop (a few kB, the flight's last word). A refused write never ends the daemon."""
        if self.store.card.full and not final:
            return
        path = self.data_dir / "stats.json"
        tmp = path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(self.snapshot(), indent=2))
            os.replace(tmp, path)
        except OSError as e:
            self.store.card_refused("stats.json", e)
            try:
                tmp.unlink(missing_ok=True)  # a half-written copy only takes space
            except OSError:
                pass


def prompt_facts(r: Readings, phase: str, mode: str, outcomes: list[Outcome], memories: int) -> MusingFacts:
    """What a musing's prompt told the persona, as payload/prompts.describe says it in words: the
    readings `r` as prompted (`fresh`: a value not read is not said), the outcomes of its questions
    and the number of memories the prompt kept. Rounded as the prompt rounds, no text: small enough
    for every musing's log line on a Pi."""

    def known(x) -> bool:
        return x is not None and math.isfinite(x)

    return MusingFacts(
        phase=phase, mode=mode, fix=r.fix_valid, sats=r.sats, sun_up=sun_is_up(r), memories=memories,
        alt_m=round(r.alt_m) if known(r.alt_m) else None,
        temp_c=round(r.temp_c, 1) if known(r.temp_c) else None,
        box_temp_c=round(r.box_temp_c, 1) if known(r.box_temp_c) else None,
        pressure_hpa=round(r.pressure_hpa, 1) if known(r.pressure_hpa) else None,
        batt_v=round(r.batt_mv / 1000, 3) if r.batt_mv and known(r.batt_mv) else None,
        requests=tuple(Request(o.api, o.kind.value) for o in outcomes),
    )


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
