"""The payload put together: every component the daemon schedules, built from the
configuration and the parts it was given (the GPS and sensors, the radio, the camera, the
LED and heater: payload/hardware.py opens them). The daemon builds nothing itself; it is
handed its `Components` and runs them, so a test or the bench can hand it others.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from random import Random

import structlog

from stratoecho import wire
from stratoecho.bundle import Bundle
from stratoecho.wire import downlink, uplink
from stratoecho.wire.events import event

from .clock import Clock
from .command_handler import CommandHandler
from .commands import CommandGate
from .config import PayloadConfig
from .confirm import Confirmations
from .daemon import Components, Daemon
from .duty import worst_sentence
from .governor import Governor
from .guard import OutboundGuard
from .link import Transmitter
from .memory import Memory
from .outbound import Outbound
from .persona import PersonaWorker
from .producers import Beacon, DeviceWatch, Health, Musings, Pictures
from .producers.musings import PriceGeneration
from .radio import Radio
from .reach import Reach
from .sensors import Sensors
from .store import Budgets, Store
from .watchdog import Liveness

log = structlog.get_logger(__name__)


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


def assemble(cfg: PayloadConfig, sensors: Sensors, radio: Radio, clock: Clock, bundle: Bundle | None,
             data_dir: Path, stop: threading.Event, *, camera=None, pi_health=None, led=None, heater=None,
             disk_usage=None, liveness: Liveness | None = None, seed: int | None = None,
             price_generation: PriceGeneration | None = None) -> Components:
    """Every component of one boot, in the order they need each other. Opens the queue (and so
    numbers the boot), the memory and the airtime log in `data_dir`; raises `store.StoreError` or
    `wire.uplink.KeyFileError`, the file named, when the queue or the uplink key cannot be used.
    `seed` (the bench's flight seed) makes sampling and questions repeatable; `price_generation`
    (a hardware that models compute time) gives each generation its time on the rehearsed board."""
    data_dir = Path(data_dir)
    disk_usage = disk_usage or shutil.disk_usage  # the card: the bench simulates one
    store = open_store(data_dir, cfg, clock, disk_usage)
    boot = store.start_boot()
    try:
        auth, gate_key = _flight_key(cfg)
    except BaseException:
        store.close()
        raise
    liveness = liveness or Liveness()
    # The hour's airtime, the beacon's share first, logged across restarts (payload/duty.py).
    transmitter = Transmitter(store, radio, clock, cfg.radio, stop, airtime_log=data_dir / "airtime.json",
                              sentence_bytes=len(worst_sentence(cfg.callsign, cfg.telemetry_format)), auth=auth,
                              on_loop=lambda: liveness.ping("radio"))
    outbound = Outbound(store, boot, clock, transmitter.wake)
    gate = None
    if gate_key:
        try:  # uplink.KeyFileError names the file when the key is missing or exposed
            gate = CommandGate.from_key_file(store, cfg.uplink.key_file, cfg.callsign, tag_len=cfg.uplink.tag_len,
                                             mtu=cfg.radio.mtu, on_refused=lambda e: outbound.event(
                                                 event("command_refused", reason=e.reason, detail=str(e))))
        except BaseException:
            store.close()
            raise
    memory = Memory(data_dir / "memory.db")  # its own musings and the ground's notes
    worker = None
    if bundle is not None:
        worker = PersonaWorker(bundle, cfg.persona.n_ctx, cfg.persona.n_threads, cfg.persona.timeout_s,
                               memory_limit_mb=cfg.persona.memory_limit_mb)
        # The facts the owner approved (host_training interview): the same notes after every boot.
        memory.seed_notes(bundle.manifest.memory.notes if bundle.manifest.memory else [], clock.now())
    governor = Governor(store, capacity_wh=cfg.power.battery_wh, battery_temp_fitted=sensors.battery_temp_fitted,
                        cpu_temp_fitted=pi_health is not None)
    # On the bench its questions are drawn from the flight's seed, like everything else.
    reach = Reach(lambda api, query: outbound.record(wire.Kind.API_REQUEST, {"api": api, "query": query}),
                  clock.elapsed_s, rng=Random(seed * 7919 + boot) if seed is not None else None)
    schedule = cfg.schedule.model_copy()  # the intervals in force: SET_INTERVALS changes them, on probation
    commands = CommandHandler(boot, schedule, cfg.schedule.telemetry_s, cfg.uplink, clock, store, transmitter,
                              governor, memory, reach, outbound, Confirmations(cfg.uplink.window_s))
    transmitter.follow(lambda: governor.period_s("beacon", schedule.telemetry_s), governor.transmit_factor)
    if gate is not None:
        transmitter.listen_after(cfg.uplink, lambda frame: _act_on(gate, commands, frame),
                                 uplink.payload_hash(cfg.callsign))
    devices = DeviceWatch(outbound)
    beacon = Beacon(cfg.callsign, cfg.telemetry_format, boot, sensors, clock, governor, outbound, reach, devices,
                    pi_health=pi_health, led=led, heater=heater)
    health = Health(store, memory, transmitter, governor, clock, outbound, devices, beacon.power_fields,
                    pi_health=pi_health, gate=gate)
    stopping = clock.event()
    pictures = None
    if camera is not None:
        pictures = Pictures(camera, cfg.devices.camera, store, governor, outbound, devices, data_dir, disk_usage)
    musings = None
    if worker is not None:
        musings = Musings(cfg, schedule, bundle, worker, boot, clock, sensors, beacon, governor, memory, reach,
                          OutboundGuard(hashed=bundle.blocklist()), outbound, stopping, seed=seed,
                          price_generation=price_generation)
    return Components(
        sensors=sensors, radio=radio, store=store, boot=boot, outbound=outbound, transmitter=transmitter,
        governor=governor, memory=memory, reach=reach, beacon=beacon, health=health, commands=commands,
        stopping=stopping, pictures=pictures, musings=musings, worker=worker, gate=gate, camera=camera, led=led,
        heater=heater, disk_usage=disk_usage)


def _flight_key(cfg: PayloadConfig) -> tuple[downlink.DownlinkAuth | None, bool]:
    """The downlink tag's key from the flight key, and whether to listen for commands with it."""
    if not cfg.uplink.key_file:
        log.error("no_flight_key", consequence="records stay queued: only position and musing sentences and "
                  "pictures go on air", fix="python -m payload keygen FILE, then uplink.key_file = FILE")
        return None, False
    # uplink.KeyFileError names the file when the key is missing or exposed
    return downlink.load_auth(cfg.uplink.key_file, cfg.uplink.downlink_tag_len), cfg.uplink.listen


def _act_on(gate: CommandGate, commands: CommandHandler, frame: bytes) -> None:
    """A frame heard in a listen window: acted on only if the gate says it is ours and fresh."""
    cmd = gate.accept(frame)
    if cmd is not None:
        commands.on_command(cmd)


def build_daemon(cfg: PayloadConfig, sensors: Sensors, radio: Radio, clock: Clock, bundle: Bundle | None,
                 data_dir: Path, stop: threading.Event | None = None, *, camera=None, pi_health=None, led=None,
                 heater=None, liveness: Liveness | None = None, disk_usage=None, seed: int | None = None,
                 price_generation: PriceGeneration | None = None) -> Daemon:
    """A daemon with the components `assemble` builds from these parts."""
    stop = stop or clock.event()
    liveness = liveness or Liveness()
    parts = assemble(cfg, sensors, radio, clock, bundle, data_dir, stop, camera=camera, pi_health=pi_health,
                     led=led, heater=heater, disk_usage=disk_usage, liveness=liveness, seed=seed,
                     price_generation=price_generation)
    return Daemon(cfg, clock, bundle, data_dir, parts, stop=stop, liveness=liveness)
