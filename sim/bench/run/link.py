"""`make bench` rows for the real repair protocol: payload and ground code in virtual time.

`fec_bench.repair_rows` idealises repair (every NACK arrives, the uplink costs nothing).
This runs the protocol as flown instead, in one thread, with a virtual clock so hours of
flight take seconds:

    musings + sentences ─▶ Store ─▶ Transmitter ─▶ SimRadio.send ─▶ downlink loss ─▶ ground
                                         ▲                                              │
    CommandHandler.on_frame ◀── SimRadio.receive ◀── uplink loss ◀── signed frames ◀──┘
             (CommandGate)          (listen window)                    (WindowAnswerer)

Real code: the payload's `Onboard` (its beacon loop, run by `daemon.run_once("beacon")`; its command
dispatch `CommandHandler.on_frame` behind the real `CommandGate` and HMAC check), `Transmitter` (parity
sizing, interleaving, duty-cycle budget, listen windows, `request_repair`,
`on_link_report`) over a real `Store` in a temporary folder; the ground's `FrameDecoder`,
`WindowAnswerer` and `NackPlanner`, signing with a real `CommandSigner`. Simulated: the clock,
the radio (`SimRadio`), a seeded Gilbert–Elliott channel each way (`sim/channel/loss.py`, the
uplink with its own seed stream, as `sim/bench/run/relay.py` does), and the musings (random text,
as `fec_bench` makes them: nothing here needs a persona).

Airtime: every frame costs `lora_airtime_s` at the configured radio settings, both ways
(the ground uses the payload's settings, or the payload could not hear it). The payload
listens `uplink.window_s` after every `window_every`-th sentence; the ground answers as
soon as it hears that sentence, its frames back to back from the window's start, and a
frame that ends after the window closes is transmitted but not heard ("late").

The ratios use `fec_bench`'s definition so the rows compare: bytes of musing frames on
air (headers, parity and repairs included) per delivered musing byte (time + text),
divided by the erasure bound 1/(1-p). Airtime is reported too, against 1/(1-p) times the
airtime of the delivered musings' data frames sent once (so LoRa's preamble and header
are in both and the ratio is the protocol's redundancy alone).
"""

from __future__ import annotations

import dataclasses
import math
import random
import string
import tempfile
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import structlog

from groundstation.link.decoder import FrameDecoder
from groundstation.link.uplink import generate_key_file
from groundstation.link.windows import WindowAnswerer
from payload.assembly import build_onboard
from payload.config import PayloadConfig
from stratoecho import wire
from stratoecho.airtime import lora_airtime_s
from stratoecho.clock import Clock
from stratoecho.wire import Kind, data_shards
from stratoecho.wire.uplink import CommandId

from ...channel.loss import GilbertElliott, LossSpec
from ...world.flight import SimSensors

UPLINK_SEED = 0x55504C4B  # as sim/bench/run/relay.py: the uplink's losses have their own random stream
START_UTC = datetime(2026, 1, 1, tzinfo=timezone.utc)  # fixed, so the same seed gives the same bytes
_ALPHABET = string.ascii_letters + string.digits + " .,'-"  # fec_bench's musing alphabet
PEER = ("sim", 0)  # WindowAnswerer answers only frames that came from somewhere


class VirtualClock(Clock):
    """`payload.clock.Clock`'s interface in virtual time: waiting moves time on, at once."""

    def __init__(self, start_utc: datetime = START_UTC):
        super().__init__(1.0, start_utc)
        self.t = 0.0

    def restart(self) -> None:
        self.t = 0.0

    def elapsed_s(self) -> float:
        return self.t

    def now(self) -> datetime:
        return self.start_utc + timedelta(seconds=self.t)

    def wait(self, flight_seconds: float, stop: threading.Event) -> bool:
        if stop.is_set():
            return True
        self.t += max(flight_seconds, 0.0)
        return stop.is_set()

    def wall_s(self, flight_seconds: float) -> float:
        return flight_seconds  # the radio's receive() is given flight seconds and spends them

    def advance_to(self, t: float) -> None:
        self.t = max(self.t, t)


class _Floating:
    """A clock for the world that stops at `float_s`: the balloon climbs, then floats there."""

    def __init__(self, clock: VirtualClock, float_s: float):
        self.clock, self.float_s = clock, float_s

    def elapsed_s(self) -> float:
        return min(self.clock.elapsed_s(), self.float_s)

    def now(self) -> datetime:
        return self.clock.start_utc + timedelta(seconds=self.elapsed_s())


class CoarseSensors:
    """The bench world's readings (`payload.parts.sensors.SimSensors`), refreshed every `every_s`
    flight seconds, the time always current: the world integrates its wind drift from launch
    at every read, which would dominate a 14-hour run, and a sentence's length hardly
    changes within minutes.

    The balloon climbs for `float_s` (an hour: ~18 km) and floats there for the rest of the
    run. Flown to its landing, 12 of the 14 hours would be the landed payload's: bulk gets half
    the airtime (payload/policy/modes.py) and a real one makes no musings; at 50 % loss the musings
    then outran the air and a quarter were still queued at the end (sim/bench/run/link.py's rows
    measure the protocol, not the landed policy)."""

    battery_temp_fitted = True

    def __init__(self, clock: VirtualClock, seed: int, every_s: float = 600.0, float_s: float = 3600.0):
        self.world, self.clock, self.every_s = SimSensors(_Floating(clock, float_s), seed), clock, every_s
        self._last, self._at = None, -math.inf

    def restart(self) -> None:
        self._last, self._at = None, -math.inf

    def read(self):
        if self.clock.elapsed_s() - self._at >= self.every_s:
            self._last, self._at = self.world.read(), self.clock.elapsed_s()
        # A full battery: this bench measures the link protocol, and a power mode stretching
        # the beacon late in a 14-hour run would measure the mode ladder instead.
        return dataclasses.replace(self._last, time=self.clock.now(), batt_mv=4000)


@dataclass
class LinkRun:
    """What one simulated flight did, counted on both sides."""

    loss: float
    musings: int = 0  # queued by the payload
    delivered: int = 0  # rebuilt by the ground, text equal to what was queued
    left_queued: int = 0  # never sent whole by the end (a backlog, not a loss)
    musing_frames: int = 0
    musing_lost: int = 0  # of those, lost on the downlink
    musing_bytes_on_air: int = 0
    musing_airtime_s: float = 0.0
    delivered_bytes: int = 0  # bodies (time + text) of delivered musings
    delivered_floor_airtime_s: float = 0.0  # their k data frames, each sent once
    delivered_floor_bytes: int = 0  # the same frames' bytes: headers and padding alone
    telemetry_frames: int = 0
    telemetry_airtime_s: float = 0.0
    downlink_frames: int = 0
    downlink_lost: int = 0
    parity_frames: int = 0  # in the first cut
    repair_frames: int = 0
    windows: int = 0
    nacks_sent: int = 0  # RESEND frames the ground put on the air
    nacks_lost: int = 0  # ... the channel lost
    nacks_late: int = 0  # ... that ended after the window closed
    reports_sent: int = 0  # LINK_REPORT frames
    reports_lost: int = 0
    reports_late: int = 0
    others_sent: int = 0  # any other command the ground sends in a window
    others_lost: int = 0
    others_late: int = 0
    uplink_airtime_s: float = 0.0
    items_requested: int = 0
    given_up: int = 0
    resends_accepted: int = 0  # RESEND commands the payload's gate verified and acted on
    reports_accepted: int = 0
    gate_rejections: dict = field(default_factory=dict)
    repairs_skipped_queued: int = 0
    budget_waits: int = 0
    loss_estimate: float = 0.0  # the payload's, at the end
    flight_s: float = 0.0
    undelivered: dict = field(default_factory=dict)  # why, as the ground's planner saw it -> how many
    texts: dict = field(default_factory=dict)  # seq -> text queued
    heard: dict = field(default_factory=dict)  # seq -> text rebuilt

    def count_uplink(self, kind: str, fate: str) -> None:
        """One uplink frame of `kind` (nacks, reports, others): heard, lost or late."""
        setattr(self, f"{kind}_sent", getattr(self, f"{kind}_sent") + 1)
        if fate != "heard":
            setattr(self, f"{kind}_{fate}", getattr(self, f"{kind}_{fate}") + 1)

    @property
    def delivered_share(self) -> float:
        return self.delivered / self.musings if self.musings else 0.0

    @property
    def duty_cycle_pct(self) -> float:
        return 100 * (self.musing_airtime_s + self.telemetry_airtime_s) / self.flight_s if self.flight_s else 0.0

    @property
    def bytes_ratio(self) -> float:
        """Musing bytes on air per delivered byte, over the bound 1/(1-p)."""
        if not self.delivered_bytes:
            return math.inf
        return self.musing_bytes_on_air / self.delivered_bytes * (1.0 - self.loss)

    @property
    def airtime_ratio(self) -> float:
        """Musing airtime per delivered musing's data-frame airtime, over the bound 1/(1-p)."""
        if not self.delivered_floor_airtime_s:
            return math.inf
        return self.musing_airtime_s / self.delivered_floor_airtime_s * (1.0 - self.loss)


class SimGround:
    """The ground station's receive path as `groundstation.link.listen` runs it, minus the database."""

    def __init__(self, repair, run: LinkRun, auth: wire.DownlinkAuth):
        self.decoder = FrameDecoder(auth=auth)
        self.repair = repair  # a WindowAnswerer, or None without uplink
        self.run = run
        self.outbox: list[bytes] = []  # uplink frames for the window now opening

    def send(self, frame: bytes, peer: tuple) -> None:
        """WindowAnswerer's `send`: queue for the payload's window."""
        self.outbox.append(frame)

    def hear(self, frame: bytes) -> None:
        result = self.decoder.feed(frame)
        if not result.ok:
            raise AssertionError(f"the ground rejected a frame the channel passed intact: {result.error}")
        if self.repair is not None:
            # First, as listen._handle does: the payload's window is only seconds long.
            self.repair.on_decoded(result, self.decoder.missing)
        record = result.record
        if isinstance(record, wire.Record) and record.kind is wire.Kind.MUSING:
            self.run.heard[record.seq] = record.text


class SimRadio:
    """The payload's radio: frames go through the downlink loss to the ground at once;
    `receive` hands over what the ground answered and the uplink loss spared."""

    receives = True

    def __init__(self, clock: VirtualClock, radio_cfg, downlink: GilbertElliott,
                 uplink: GilbertElliott, ground: SimGround, run: LinkRun):
        self.clock, self.cfg, self.downlink, self.uplink, self.ground, self.run = (
            clock, radio_cfg, downlink, uplink, ground, run)

    def airtime(self, frame: bytes) -> float:
        return lora_airtime_s(len(frame), self.cfg.spreading_factor, self.cfg.bandwidth_hz, self.cfg.coding_rate)

    def _is_musing(self, frame: bytes) -> bool:
        try:
            return wire.decode_fragment(frame, self.ground.decoder.auth).kind is wire.Kind.MUSING
        except wire.WireError:  # a position sentence, or not ours
            return False

    def send(self, frame: bytes) -> None:
        run, air = self.run, self.airtime(frame)
        run.downlink_frames += 1
        musing = self._is_musing(frame)
        if musing:
            run.musing_frames += 1
            run.musing_bytes_on_air += len(frame)
            run.musing_airtime_s += air
        else:  # position sentences (and any other record, which this flight does not make)
            run.telemetry_frames += 1
            run.telemetry_airtime_s += air
        self.ground.outbox.clear()  # answers for a window that never opened are gone
        if self.downlink.drop():
            run.downlink_lost += 1
            run.musing_lost += musing
        else:
            self.ground.hear(frame)

    def receive(self, timeout_s: float) -> list[bytes]:
        """Listen `timeout_s` flight seconds: the ground's frames, back to back from now."""
        heard, at = [], 0.0
        for frame in self.ground.outbox:
            air = self.airtime(frame)
            at += air
            self.run.uplink_airtime_s += air
            kind = {CommandId.RESEND: "nacks", CommandId.LINK_REPORT: "reports"}.get(frame[1] & 0x0F, "others")
            fate = "lost" if self.uplink.drop() else "late" if at > timeout_s else "heard"
            self.run.count_uplink(kind, fate)
            if fate == "heard":
                heard.append(frame)
        self.ground.outbox.clear()
        self.clock.wait(timeout_s, threading.Event())
        return heard

    def hear(self, timeout_s: float) -> list[bytes]:
        """As `receive`: the ground's answers wait for the window, whichever way it listens."""
        return self.receive(timeout_s)

    def ready(self) -> None:
        """Nothing: a simulated radio is always there."""

    def close(self) -> None:
        """The Radio port's close; a simulated radio holds nothing to release."""


def _musing_text(rng: random.Random) -> str:
    return "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(150, 280)))


def simulate(
    loss: float,
    seed: int = 1,
    *,
    musings: int = 400,
    burst: float = 4.0,
    musing_s: float = 120.0,
    drain_windows: int = 30,
    uplink: bool = True,
    configure=None,
    planner=None,
    prepare=None,
) -> LinkRun:
    """Fly `musings` musings, one every `musing_s` flight seconds, then keep beaconing for
    `drain_windows` more listen windows so late repairs can land. Other settings are the
    payload's defaults (`PayloadConfig()`); `configure(cfg)` may change them, and `planner`
    replaces the ground's default `NackPlanner()`; `prepare(daemon, repair, folder)` runs
    before the flight (a test queues commands in a ground outbox there). Without `uplink`
    the payload never listens: parity alone."""
    cfg = PayloadConfig()
    if configure is not None:
        configure(cfg)
    run = LinkRun(loss=loss)
    rng = random.Random(seed)
    spec = LossSpec(loss, burst)
    clock = VirtualClock()
    sched, every = cfg.schedule, cfg.uplink.window_every
    with tempfile.TemporaryDirectory(prefix="link_bench.") as tmp:
        tmp = Path(tmp)
        repair = None
        cfg.uplink.key_file = str(tmp / "uplink.key")  # records go tagged, with or without an uplink
        flight_key = generate_key_file(cfg.uplink.key_file)
        cfg.uplink.listen = uplink
        if uplink:
            repair = WindowAnswerer(tmp / "uplink.key", tmp / "ground.db", send=None, callsign=cfg.callsign,
                                uplink_to=PEER, now=lambda: clock.now().timestamp())  # the sentences' UTC
            if planner is not None:
                repair.planner = planner
        ground = SimGround(repair, run, wire.DownlinkAuth.from_flight_key(flight_key, cfg.uplink.downlink_tag_len))
        if repair is not None:
            repair.send = ground.send
        radio = SimRadio(clock, cfg.radio, GilbertElliott(spec, seed), GilbertElliott(spec, seed ^ UPLINK_SEED),
                         ground, run)
        daemon = build_onboard(cfg, CoarseSensors(clock, seed), radio, clock, None, tmp / "payload")
        if prepare is not None:
            prepare(daemon, repair, tmp)
        try:
            _fly(daemon, clock, rng, run, musings, musing_s, drain_windows * every * sched.telemetry_s)
        finally:
            daemon.parts.store.close()
            structlog.contextvars.unbind_contextvars("boot", "callsign")  # Onboard bound them
        _count(daemon, repair, run, cfg)
    return run


def _fly(daemon, clock: VirtualClock, rng: random.Random, run: LinkRun, musings: int,
         musing_s: float, drain_s: float) -> None:
    """The daemon's three loops as one event loop: due producers first, then one frame."""
    tx, store, boot = daemon.parts.transmitter, daemon.parts.store, daemon.parts.flight.boot
    sched = daemon.cfg.schedule
    next_beacon, next_musing, next_health = 0.0, sched.first_musing_s, sched.health_s
    end = None  # when the drain ends, once the last musing is queued
    while end is None or clock.elapsed_s() < end:
        now = clock.elapsed_s()
        if now >= next_beacon:
            daemon.daemon.run_once("beacon")
            next_beacon = _next_due(next_beacon, sched.telemetry_s, now)
        if now >= next_health:  # names the last musing: the ground asks for one lost whole
            daemon.daemon.run_once("health")
            next_health = _next_due(next_health, sched.health_s, now)
        if end is None and now >= next_musing:
            text = _musing_text(rng)
            created = int(clock.now().timestamp())
            seq, _ = store.queue.enqueue(Kind.MUSING, boot,
                                   lambda s, created=created, text=text:
                                   wire.Record(wire.Kind.MUSING, boot, s, created, text).body())
            run.texts[seq] = text
            next_musing = _next_due(next_musing, musing_s, now)
            if len(run.texts) == musings:
                end = now + drain_s
        if not tx.send_one():
            due = [next_beacon, next_health] + ([next_musing] if end is None else [])
            clock.advance_to(min(due))
    run.flight_s = clock.elapsed_s()
    run.left_queued = sum(1 for q in store.queue.queued(limit=10**6, kinds=(Kind.MUSING,)))


def _next_due(due: float, period_s: float, now: float) -> float:
    """As `Daemon._every`: a producer that fell behind skips, it does not burst."""
    due += period_s
    return due if due >= now else now + period_s


def _count(daemon, repair, run: LinkRun, cfg) -> None:
    tx = daemon.parts.transmitter
    mtu, r = cfg.radio.mtu, cfg.radio
    run.musings = len(run.texts)
    for seq, text in run.heard.items():
        if run.texts.get(seq) != text:
            raise AssertionError(f"musing {seq}: the ground rebuilt other text than was sent")
        body = 4 + len(text.encode("utf-8"))
        tag = cfg.uplink.downlink_tag_len
        k = data_shards(body, mtu, tag)
        frame = wire.HEADER_BYTES + tag + wire.CRC_BYTES + math.ceil(body / k)
        run.delivered += 1
        run.delivered_bytes += body
        run.delivered_floor_bytes += k * frame
        run.delivered_floor_airtime_s += k * lora_airtime_s(frame, r.spreading_factor, r.bandwidth_hz, r.coding_rate)
    s = tx.stats
    run.parity_frames, run.repair_frames, run.windows = s.parity_frames, s.repair_frames, s.windows
    run.repairs_skipped_queued, run.budget_waits = s.repairs_skipped_queued, s.budget_waits
    run.loss_estimate = tx.loss_estimate()
    run.resends_accepted = daemon.parts.commands.stats.commands.get("resend", 0)
    run.reports_accepted = daemon.parts.commands.stats.commands.get("link_report", 0)
    run.gate_rejections = dict(daemon.parts.gate.rejections) if daemon.parts.gate else {}
    if repair is not None:
        run.items_requested, run.given_up = repair.items_requested, repair.planner.given_up
    for seq in run.texts.keys() - run.heard.keys():
        why = _why_lost(repair.planner if repair else None, (int(wire.Kind.MUSING), daemon.parts.flight.boot, seq))
        run.undelivered[why] = run.undelivered.get(why, 0) + 1


def _why_lost(planner, key) -> str:
    """Where the ground's repair stood on a musing it never rebuilt (reads the planner's
    bookkeeping: a bench diagnosis, nothing the ground station itself needs)."""
    if planner is None:
        return "no uplink"
    ask = planner._asks.get(key)
    if ask is not None:
        return "given up" if ask.count >= planner.max_asks else "still being asked"
    if key in planner._received:
        return "incomplete, never asked"
    if key in planner._holes:
        return "hole, never asked"
    return "never heard, no later musing heard"


def protocol_rows(seed: int = 1, **options) -> list[tuple[str, str, str, str]]:
    """Rows for `make bench`: the real protocol at 10, 30 and 50 % burst loss (mean burst 4)
    both ways, and the same flight without uplink (parity alone). `options` go to `simulate`."""
    rows = []
    for loss in (0.1, 0.3, 0.5):
        r = simulate(loss, seed, **options)
        alone = simulate(loss, seed, **{**options, "uplink": False})
        pct, bound = round(loss * 100), 1.0 / (1.0 - loss)
        label = f"protocol: {pct} % burst loss"
        why = ", ".join(f"{n} {what}" for what, n in sorted(r.undelivered.items())) or "none lost"
        rows += [
            (f"{label}, musings delivered", f"{100 * r.delivered_share:.1f}", "%",
             f"target >= 99; {r.delivered} of {r.musings} ({why}); real payload+ground code, lossy uplink"),
            (f"{label}, bytes on air per delivered byte", f"{r.bytes_ratio:.2f}", "x bound",
             f"target <= 1.3; bound {bound:.2f}; headers+padding alone "
             f"{r.delivered_floor_bytes / r.delivered_bytes:.2f}x; {r.musing_frames} frames: "
             f"{r.parity_frames} parity, {r.repair_frames} repair; {_pct(r.musing_lost, r.musing_frames)} lost"),
            (f"{label}, airtime per delivered byte", f"{r.airtime_ratio:.2f}", "x bound",
             f"vs k data frames once; {r.musing_airtime_s:.0f} s musings + {r.telemetry_airtime_s:.0f} s "
             f"telemetry in {r.flight_s / 3600:.1f} h ({r.duty_cycle_pct:.1f} % duty), {r.budget_waits} budget waits"),
            (f"{label}, NACKs sent/lost/late", f"{r.nacks_sent}/{r.nacks_lost}/{r.nacks_late}", "frames",
             f"{r.resends_accepted} RESENDs verified and acted on, {r.items_requested} items; "
             f"{r.reports_sent} link reports ({r.reports_lost} lost); {r.windows} windows"),
            (f"{label}, uplink airtime", f"{r.uplink_airtime_s:.1f}", "s",
             f"{r.nacks_sent + r.reports_sent + r.others_sent} frames at the payload's SF/BW, "
             f"spent by the ground"),
            (f"{label}, payload's loss estimate at the end", f"{100 * r.loss_estimate:.1f}", "%",
             f"channel lost {_pct(r.downlink_lost, r.downlink_frames)} of {r.downlink_frames} frames"),
            (f"{label}, no uplink: musings delivered", f"{100 * alone.delivered_share:.1f}", "%",
             f"parity alone, for radio.fec_target at the prior loss (no reports): "
             f"{alone.bytes_ratio:.2f}x bound in bytes, {alone.duty_cycle_pct:.1f} % duty, "
             f"{alone.budget_waits} budget waits"),
        ]
    return rows


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "-"
