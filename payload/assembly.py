"""The payload put together, in one place and in the order each part needs the last
(docs/architecture.md, "The payload: parts on ports"): `open_parts`, `open_boot`, `open_radio`,
`assemble`, the `loops` table and the `Onboard` boot over it. `build_payload` does all of it for
`payload run`; `build_onboard` the last three over parts a test or the bench hands in. The daemon
builds nothing itself.
"""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from random import Random

import structlog

from stratoecho import wire
from stratoecho.bundle import Bundle
from stratoecho.wire import downlink, uplink
from stratoecho.wire.events import Event, event

from .cadence import Cadence
from .clock import Clock
from .components import Components
from .config import PayloadConfig
from .link.frames import LinkParts, LinkPlan
from .link.outbound import Outbound
from .link.relay import Relay, RelayRules
from .link.transmitter import Transmitter
from .loop import Loop
from .onboard import Onboard
from .parts.camera import Camera
from .parts.hardware import Hardware, open_hardware
from .parts.outputs import BatteryHeater, StatusLed
from .parts.radio import Radio
from .parts.radios import ReopeningRadio, make_radio
from .parts.sensors import Sensors
from .persona.memory import Memory, heard_from
from .persona.reach import Reach
from .persona.worker import PersonaWorker
from .policy.airplan import MIN_RECORD_FRAME_BYTES, turn_of
from .policy.duty import worst_sentence
from .policy.governor import Governor
from .policy.turns import BeaconTimes
from .producers import Beacon, DeviceWatch, Fitted, Flight, Health, MusingPlan, Musings, Pictures
from .rigs import PI
from .store import Budgets, Store
from .uplink.gate import CommandGate
from .uplink.handler import CommandHandler
from .watchdog import Liveness

log = structlog.get_logger(__name__)

NOTHING_FITTED = Fitted()  # sensors and a radio only: no camera, LED, heater or Pi health


def open_store(data_dir: Path, cfg: PayloadConfig, clock: Clock | None = None, disk_usage=None) -> Store:
    """The payload's queue in `data_dir`, with the configured batching and budgets; its batches and
    ageing run on `clock`'s UTC (flight time), its free space is `disk_usage`'s (the card's)."""
    mb = 1024 * 1024
    sc = cfg.store
    budgets = Budgets(per_stream={k: int(v * mb) for k, v in sc.budget_mb.items()},
                      total=int(sc.total_mb * mb) if sc.total_mb else None, min_free=int(sc.min_free_mb * mb))
    extra = {} if clock is None else {"clock": lambda: clock.now().timestamp()}
    if disk_usage is not None:
        extra["disk_usage"] = disk_usage
    return Store(Path(data_dir) / "queue.db", flush_s=sc.flush_s, budgets=budgets, aging_s=sc.aging_s,
                 memory_limit=sc.memory_records, **extra)


def open_boot(cfg: PayloadConfig, data_dir: Path, clock: Clock, disk_usage=None) -> Outbound:
    """The one port records leave by, over the queue in `data_dir` (its `store`), numbering this
    boot (its `boot`); `store.StoreError` names the file."""
    store = open_store(Path(data_dir), cfg, clock, disk_usage or shutil.disk_usage)
    return Outbound(store, store.counters.start_boot(), clock, clock.event())


def assemble(cfg: PayloadConfig, sensors: Sensors, radio: Radio, clock: Clock, bundle: Bundle | None,
             data_dir: Path, *, outbound: Outbound | None = None, fitted: Fitted = NOTHING_FITTED) -> Components:
    """Every component of one boot, in the order they need each other. Opens the queue (and so
    numbers the boot), the memory and the airtime log in `data_dir`; raises `store.StoreError` or
    `wire.uplink.KeyFileError`, the file named, when the queue or the uplink key cannot be used.
    `fitted.seed` (the bench's flight seed) makes sampling and questions repeatable;
    `fitted.price_generation` (a hardware that models compute time) gives each generation its
    time on the rehearsed board."""
    data_dir = Path(data_dir)
    fitted = replace(fitted, disk_usage=fitted.disk_usage or shutil.disk_usage)  # the card: the bench simulates one
    stop = clock.event()  # the stop proper: the radio ends (the producers' event, `stopping`, is set first)
    with contextlib.ExitStack() as on_failure:  # what this opened, closed again when a later step raises
        if outbound is None:
            outbound = open_boot(cfg, data_dir, clock, fitted.disk_usage)
            on_failure.callback(outbound.store.close)
        store = outbound.store
        auth, gate_key = _flight_key(cfg)
        memory = Memory(data_dir / "memory.db")  # its own musings, the ground's notes, what other payloads said
        on_failure.callback(memory.close)
        relay = open_relay(cfg, auth, memory)
        gate = open_gate(cfg, outbound) if gate_key else None
        governor = Governor(store, capacity_wh=cfg.power.battery_wh, beacon_period_s=cfg.schedule.telemetry_s,
                            battery_temp_fitted=sensors.battery_temp_fitted,
                            cpu_temp_fitted=fitted.pi_health is not None)
        cadence = Cadence(cfg.schedule, governor)  # the intervals in force: SET_INTERVALS changes them, on probation
        transmitter = open_transmitter(cfg, LinkParts(store, radio, clock, stop, outbound.wake, relay), data_dir,
                                       auth, cadence)
        flight = Flight(cfg.callsign, outbound.boot, clock, outbound, governor, DeviceWatch(outbound), fitted)
        # On the bench its questions are drawn from the flight's seed, like everything else.
        reach = Reach(lambda api, query: outbound.record(wire.Kind.API_REQUEST, {"api": api, "query": query}),
                      clock.elapsed_s, rng=Random(fitted.seed * 7919 + flight.boot) if fitted.seed is not None else None)
        commands = CommandHandler(outbound, cadence, cfg.uplink, transmitter, memory, reach, gate=gate)
        if gate is not None:
            transmitter.listen_after(cfg.uplink, commands.on_frame, uplink.payload_hash(cfg.callsign))
        beacon = Beacon(flight, sensors, reach, cfg.telemetry_format)
        parts = Components(flight=flight, cadence=cadence, sensors=sensors, radio=radio, store=store,
                           transmitter=transmitter, memory=memory, reach=reach, beacon=beacon,
                           health=Health(flight, store, memory, transmitter, beacon.power_fields, gate=gate),
                           commands=commands, stopping=clock.event(), stop=stop, gate=gate)
        if fitted.camera is not None:
            parts.pictures = Pictures(flight, fitted.camera, store, data_dir, cfg.devices.camera,
                                      announces=bool(cfg.uplink.key_file))  # records go tagged only with a flight key
        if bundle is not None:
            parts.worker = PersonaWorker(bundle, cfg.persona.n_ctx, cfg.persona.n_threads, cfg.persona.timeout_s,
                                         memory_limit_mb=cfg.persona.memory_limit_mb)
            # The facts the owner approved (host_training interview): the same notes after every boot.
            memory.seed_notes(bundle.manifest.memory.notes if bundle.manifest.memory else [], clock.now())
            plan = MusingPlan(cfg.persona, cfg.radio, cfg.power.battery_wh,
                              line_bytes=max(turn_of(cfg).sentence_line_bytes, MIN_RECORD_FRAME_BYTES))
            parts.musings = Musings(flight, cadence, bundle, parts.worker, beacon, memory, parts.stopping, plan)
        on_failure.pop_all()  # all opened: the components own them from here
        return parts


def loops(cfg: PayloadConfig, parts: Components) -> list[Loop]:
    """The daemon's loops, in the order their threads start (payload/daemon.py runs them): each
    loop's work, its period from the Cadence (read at every run), when it first runs, and what
    hears of it. The camera's and the think loop are there only when a camera is fitted and a
    persona flies."""
    cadence, tx = parts.cadence, parts.transmitter
    table = [
        # At its second of each period by UTC (a shared frequency's turn); the radio hears when each sentence is due.
        Loop("beacon", parts.beacon.once, lambda: cadence.beacon_s, cadence.first_s("beacon"),
             slot_s=cadence.beacon_slot_s, on_due=tx.turns.due, before=parts.commands.revert_unconfirmed),
        # Its quietest spell is a listen window; at the stop it sends what waits, then ends (a stuck driver closed).
        Loop("radio", tx.run, run_s=cfg.uplink.window_s, on_stop=tx.wake.set,
             drains=lambda: sum(parts.store.queue.depth().values()), unstick=parts.radio.close),
        Loop("health", parts.health.once, partial(cadence.period_s, "health"), cadence.first_s("health")),
    ]
    if parts.pictures is not None:
        table.append(Loop("camera", parts.pictures.once, partial(cadence.period_s, "camera"),
                          cadence.first_s("camera"), run_s=cfg.devices.camera.timeout_s if cfg.devices.camera else 60.0))
    if parts.musings is not None:
        musings = parts.musings
        table.append(Loop("think", musings.once, partial(cadence.period_s, "think"), cadence.first_s("think"),
                          run_s=2 * cfg.persona.timeout_s, after="beacon", ready=lambda: not tx.musing_waiting(),
                          again=musings.take_ask_again, remade_when_stale=True,
                          on_stop=parts.worker.cancel if parts.worker is not None else None))
    return table


def open_gate(cfg: PayloadConfig, outbound: Outbound) -> CommandGate:
    """The uplink's gate with the flight key; uplink.KeyFileError names the file when the key is
    missing or exposed. A refused command goes down as an event."""
    return CommandGate.from_key_file(outbound.store, cfg.uplink.key_file, cfg.callsign, cfg.uplink.allow_raw_key,
                                     tag_len=cfg.uplink.tag_len, mtu=cfg.radio.mtu, on_refused=lambda e: outbound.event(
                                         event("command_refused", reason=e.reason, detail=str(e))))


def open_transmitter(cfg: PayloadConfig, link: LinkParts, data_dir: Path, auth, cadence: Cadence) -> Transmitter:
    """The link, keeping the turn the air plan planned (payload/policy/airplan.py): records cut to
    fit it, nothing keyed into the next position sentence, stale musings expired; the beacon's
    period and bulk's share are the cadence's and its governor's."""
    turn = turn_of(cfg)
    frame_bytes = turn.record_frame_bytes if turn.record_frame_bytes >= MIN_RECORD_FRAME_BYTES else cfg.radio.mtu
    plan = LinkPlan(BeaconTimes(cfg.schedule.turn_s), frame_bytes,
                    len(worst_sentence(cfg.callsign, cfg.telemetry_format)), cfg.persona.stale_s)
    return Transmitter(link, cfg.radio, cadence, auth=auth, plan=plan, airtime_log=data_dir / "airtime.json",
                       transmit_factor=cadence.governor.transmit_factor)


def open_relay(cfg: PayloadConfig, auth: downlink.DownlinkAuth | None, memory: Memory | None = None) -> Relay | None:
    """The relay for the flights `[relay] allow` names, each with its downlink key when given
    (KeyFileError names a key file that will not do); None when none is named, or without our
    own flight key (an envelope carries our tag) or listen windows (we hear others only there).
    What the other payloads muse goes into `memory` in their names: our persona hears it."""
    r = cfg.relay
    if not r.allow:
        return None
    if auth is None or not cfg.uplink.listen:
        log.error("relay_off", why="relaying needs the flight key and listen windows", flights=len(r.allow))
        return None
    allowed = {f.callsign: downlink.load_auth(f.key_file, cfg.uplink.downlink_tag_len, derived=True,
                                              allow_raw=cfg.uplink.allow_raw_key)
               if f.key_file else None for f in r.allow}
    heard = None
    if memory is not None:
        def heard(callsign: str, text: str, created: float) -> None:
            memory.remember_note(text, created, source=heard_from(callsign))
    return Relay(RelayRules(cfg.callsign, allowed, max_hops=r.max_hops, share=r.share,
                            duty_cycle=cfg.radio.duty_cycle, mtu=cfg.radio.packet_limit, pending=r.pending,
                            listen_only=frozenset(f.callsign for f in r.allow if not f.forward),
                            position_s=r.position_s), auth,
                 on_musing=heard)


def _flight_key(cfg: PayloadConfig) -> tuple[downlink.DownlinkAuth | None, bool]:
    """The downlink tag's key from the flight key, and whether to listen for commands with it."""
    if not cfg.uplink.key_file:
        log.error("no_flight_key", consequence="records stay queued: only position and musing sentences and "
                  "pictures go on air", fix="python -m payload keygen FILE, then uplink.key_file = FILE")
        return None, False
    # uplink.KeyFileError names the file when the key is missing or exposed
    return (downlink.load_auth(cfg.uplink.key_file, cfg.uplink.downlink_tag_len, allow_raw=cfg.uplink.allow_raw_key),
            cfg.uplink.listen)


def build_onboard(cfg: PayloadConfig, sensors: Sensors, radio: Radio, clock: Clock, bundle: Bundle | None,
                  data_dir: Path, *, fitted: Fitted = NOTHING_FITTED, liveness: Liveness | None = None) -> Onboard:
    """The boot `assemble` builds from these parts, its daemon running the `loops` table."""
    return Onboard(cfg, bundle, data_dir, assemble(cfg, sensors, radio, clock, bundle, data_dir, fitted=fitted),
                   loops, liveness)


# ------------------------------------------------------------------ the program's parts

@dataclass
class Parts:
    """What the daemon senses and drives, on the hardware they were opened on."""

    hardware: Hardware
    camera: object | None
    led: object | None
    heater: object | None
    problems: list[Event] = field(default_factory=list)  # parts that could not be opened: events at start

    @property
    def clock(self) -> Clock:
        return self.hardware.clock


def open_parts(cfg, data_dir: Path, settings: object = None) -> Parts:
    """The drivers in [devices] and [outputs], over the hardware `cfg.sensors` names
    (payload/parts/hardware.py): on a Pi its real buses, ports and pins; on a rig (the bench,
    `sensors = "sim"`) its simulated parts behind the same drivers, so what is tested is the
    flight code; `settings` are the rig's. A missing part is a status, never a failed start."""
    data_dir = Path(data_dir).resolve()
    hw = open_hardware(cfg, data_dir, settings)
    clock, pins = hw.clock, hw.pin_factory
    camera = None
    if (c := cfg.devices.camera) is not None:
        # The hang timeout is flight time; the hardware may ask for more (a bench rendering frames).
        camera = Camera(hw.camera_backend, still_dir=data_dir / c.still_dir, thumb_px=c.thumb_px,
                        thumb_max_bytes=c.thumb_max_bytes, timeout_s=max(c.timeout_s, hw.camera_min_timeout_s),
                        clock=clock.elapsed_s, flight_clock=clock)
    o = cfg.outputs
    problems: list[Event] = []

    def output(name: str, make):
        # GPIO that cannot be claimed (no pin factory, a pin in use) costs that output, never the beacon.
        try:
            return make()
        except Exception as e:  # noqa: BLE001 - gpiozero raises its own family and OSError alike
            log.error("output_unavailable", output=name, error=str(e))
            problems.append(event("part_unavailable", part=name, error=str(e)[:80]))
            return None

    led = heater = None
    if o.status_led_pin is not None:
        led = output("status LED", lambda: StatusLed(o.status_led_pin, pin_factory=pins,
                                                     time_scale=clock.real_time_scale()))
    if o.heater_pin is not None:
        heater = output("battery heater", lambda: BatteryHeater(
            o.heater_pin, pin_factory=pins, on_below_c=o.heater_on_below_c, off_above_c=o.heater_off_above_c,
            max_duty=o.heater_max_duty, min_battery_mv=o.heater_min_battery_mv, clock=clock.elapsed_s))
    hw.closers += [part.close for part in (heater, led) if part is not None]  # closed first, the LED before the heater
    return Parts(hw, camera, led, heater, problems)


def open_radio(cfg: PayloadConfig, parts: Parts, outbound: Outbound) -> ReopeningRadio:
    """The configured radio over the parts' buses and pins; its ups and downs go on air as events.
    On a rig a radio that will not open is a mistake said at once (RadioError); in flight it must
    not cost the rest (systemd would restart us and in the end reboot, logging nothing): fly, keep
    everything queued, and try it again."""
    clock, hw = parts.clock, parts.hardware

    def make():
        return make_radio(cfg.radio, clock=clock, spi_opener=hw.open_spi, pin_factory=hw.pin_factory)

    def changed(up: bool, error: str) -> None:
        outbound.event(event("device", device="radio", before="up" if not up else "down",
                             after="up" if up else f"down: {error[:60]}"))

    if cfg.sensors != PI:
        return ReopeningRadio(make, clock, opened=make(), on_change=changed)
    radio = ReopeningRadio(make, clock, on_change=changed)
    if not radio.up:
        parts.problems.append(event("part_unavailable", part="radio", error=radio.error[:80]))
    return radio


def build_payload(cfg: PayloadConfig, parts: Parts, bundle: Bundle | None, data_dir: Path,
                  liveness: Liveness) -> Onboard:
    """The whole payload over `parts`, in the order each needs the last: the boot's queue, the
    radio (which reports through it), the components, the daemon. Raises StoreError,
    KeyFileError or (on a rig) RadioError, having closed what it opened."""
    hw = parts.hardware
    with contextlib.ExitStack() as on_failure:  # a serial port or GPIO pins would otherwise stay claimed
        outbound = open_boot(cfg, data_dir, parts.clock, hw.card_usage)
        on_failure.callback(outbound.store.close)
        radio = open_radio(cfg, parts, outbound)
        on_failure.callback(radio.close)
        fitted = Fitted(camera=parts.camera, pi_health=hw.pi_health, led=parts.led, heater=parts.heater,
                        disk_usage=hw.card_usage, seed=hw.seed, price_generation=hw.price_generation)
        components = assemble(cfg, hw.sensors, radio, parts.clock, bundle, data_dir, outbound=outbound, fitted=fitted)
        on_failure.pop_all()
    return Onboard(cfg, bundle, data_dir, components, loops, liveness)
