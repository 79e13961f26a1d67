"""The air plan: what a configuration asks of the air in an hour, and whether it closes.

A balloon builder reads it as a link budget for time on air (`python -m payload plan CONFIG`);
`payload run` refuses a configuration whose plan does not close, naming the setting to change,
and the bench's flight report prints it beside what the flight did.

How the radio uses its time (payload/link/transmitter.py, payload/policy/turns.py): every
telemetry period opens with the position sentence, keyed at its slot; the balloon's turn on the
air runs from there for `schedule.turn_s` (the whole period when it is alone on its frequency)
and ends `GUARD_S` before the next sentence is due. Nothing is keyed that would not end inside
the turn, so nothing displaces a position. Every `uplink.window_every`-th sentence is followed by
the window cue and the listen window. The rest of the turn carries whole frames in the radio's
order: other flights' relayed frames, then events, musings and the persona's questions, then
health and the musings' text sentences, then pictures (SSDV packets on `[radio.pictures]`' own
channel when there is one). Records are cut into frames no longer than the turn can hold.

The plan lays out `HOURS` hours of turns, each producer at its interval, as the radio fills them,
and reads the last hour: seconds of air per kind of frame, positions, musings and how long each
waited from being made to its first part on air, pictures, what relaying carries, and the idle
air left (headroom). It closes when every kind of frame fits a turn, the queue does not grow from
one hour to the next, the turns are at most `MAX_LOAD` full, musings go on air before they are
stale (`persona.stale_s`), and the duty cycle holds.

Pure: a configuration in, a plan out; no clock, no radio.
"""

from __future__ import annotations

import bisect
import math
import statistics
from dataclasses import dataclass, field

from stratoecho import wire
from stratoecho.lora import LoRaSettings
from stratoecho.wire import Kind, fec, ssdv
from stratoecho.wire.downlink import cue_bytes as window_cue_bytes
from stratoecho.wire.musing_sentence import GATEWAY_MAX_LINE
from stratoecho.wire.pictures import announcement_body_bytes
from stratoecho.wire.relay import overhead as relay_overhead

from ..parts.device_profiles import device_profile
from ..parts.sensors import SENSOR_FIELDS
from .air_layout import PARITY_SHARE, ROWS, Frame, Layout, Relayed, Traffic, lay_out
from .duty import WINDOW_S, worst_horus_s, worst_sentence
from .turns import GUARD_S

HOURS = 3  # the layout's length: the first hour fills the queue, the last is read
MAX_LOAD = 0.9  # of the turns' air: the rest is kept for repairs, lost frames asked again, the unplanned
# What the plan cannot read off the configuration, from bench flights of the Pi configuration:
EVENTS_PER_HOUR = 3  # the boot banner, phases, modes, devices: a few an hour in a quiet flight
EVENT_BODY_BYTES = 48  # 34-44 measured
HEALTH_BODY_BYTES = 150  # 141 measured (every field present)
QUESTION_BODY_BYTES = 48  # an API request: the service and a few words
# A balloon's photo at SSDV's default quality: about a bit per pixel (the bench's skies, less detailed,
# take half that: five 205-byte packets for a 160-pixel thumbnail).
THUMBNAIL_BITS_PER_PIXEL = 1.0
MIN_RECORD_FRAME_BYTES = 64  # a record frame with less room for data than this is all overhead
LABELS = {"position": "position sentences", "window": "window cues", "listening": "listening (receiver on)",
          "relay": "relayed frames", "event": "events (estimate)", "musing": "musings, as records",
          "musing sentence": "musings, as $$ sentences", "question": "questions to the ground",
          "health": "health records", "picture": "pictures: SSDV, announced", "image": "pictures, as records"}


@dataclass(frozen=True)
class Problem:
    setting: str  # the key to change, as the configuration names it
    why: str

    def __str__(self) -> str:
        return f"{self.setting}: {self.why}"


@dataclass(frozen=True)
class Row:
    kind: str
    channel: str  # "own", "pictures" for [radio.pictures], "rx" for listening (no air, turn time)
    frames_per_hour: float
    frame_bytes: int  # the longest of the kind
    frame_s: float  # its time on air
    air_s_per_hour: float

    @property
    def label(self) -> str:
        return LABELS[self.kind]


@dataclass
class AirPlan:
    callsign: str
    modes: dict[str, str]  # channel -> its modem settings in words
    tagged: bool  # a flight key: records go (else they stay on the card)
    period_s: float
    turn_s: float  # of each period this balloon may key in, the guard taken off
    sentence_bytes: int
    sentence_s: float
    room_s: float  # of the turn after the position sentence
    record_frame_bytes: int  # records are cut into frames of at most this
    sentence_line_bytes: int  # a musing's $$ line at most this
    rows: list[Row] = field(default_factory=list)
    positions_per_hour: float = 0.0
    windows_per_hour: float = 0.0
    windows_skipped_per_hour: float = 0.0
    musings_per_hour: float = 0.0
    musing_delay_s: dict[str, float] = field(default_factory=dict)  # median, p90, max: made -> first part on air
    # As a stock gateway sees it (it reads only the $$ lines): made -> the first $$ part whole on
    # air, and -> the last one, the musing whole. Median, p90, max.
    musing_sentence_delay_s: dict[str, float] = field(default_factory=dict)
    musing_whole_delay_s: dict[str, float] = field(default_factory=dict)
    musings_remade_per_hour: float = 0.0
    pictures_per_hour: float = 0.0
    relay_positions_per_hour: dict[str, float] = field(default_factory=dict)
    idle_s_per_hour: float = 0.0
    turn_air_s_per_hour: float = 0.0  # what the turns offer, sentences and windows included
    load: float = 0.0  # of the turns' air, in the last hour
    duty_budget_s: float = WINDOW_S
    problems: list[Problem] = field(default_factory=list)

    @property
    def closes(self) -> bool:
        return not self.problems

    @property
    def air_s_per_hour(self) -> float:
        """Seconds keyed an hour: what the duty cycle counts (listening is not)."""
        return sum(r.air_s_per_hour for r in self.rows if r.channel != "rx")

    @property
    def turn_used_s_per_hour(self) -> float:
        """Seconds of the turns used an hour: keyed, or listening for the ground."""
        return sum(r.air_s_per_hour for r in self.rows)

    def refusal(self) -> str | None:
        """Why this configuration must not fly, every setting named; None when the plan closes."""
        if self.closes:
            return None
        return "the air plan does not close (python -m payload plan CONFIG shows it): " + "; ".join(
            map(str, self.problems))

    def to_dict(self) -> dict:
        return {
            "closes": self.closes, "tagged": self.tagged, "period_s": self.period_s, "turn_s": self.turn_s,
            "sentence_bytes": self.sentence_bytes, "sentence_s": round(self.sentence_s, 2),
            "room_s": round(self.room_s, 2), "record_frame_bytes": self.record_frame_bytes,
            "sentence_line_bytes": self.sentence_line_bytes, "modes": self.modes,
            "rows": [{"kind": r.kind, "channel": r.channel, "frames_per_hour": round(r.frames_per_hour, 1),
                      "frame_bytes": r.frame_bytes, "frame_s": round(r.frame_s, 2),
                      "air_s_per_hour": round(r.air_s_per_hour, 1)} for r in self.rows],
            "positions_per_hour": self.positions_per_hour, "windows_per_hour": self.windows_per_hour,
            "windows_skipped_per_hour": self.windows_skipped_per_hour, "musings_per_hour": self.musings_per_hour,
            "musing_delay_s": {k: round(v, 1) for k, v in self.musing_delay_s.items()},
            "musing_sentence_delay_s": {k: round(v, 1) for k, v in self.musing_sentence_delay_s.items()},
            "musing_whole_delay_s": {k: round(v, 1) for k, v in self.musing_whole_delay_s.items()},
            "musings_remade_per_hour": self.musings_remade_per_hour, "pictures_per_hour": self.pictures_per_hour,
            "relay_positions_per_hour": self.relay_positions_per_hour, "idle_s_per_hour": round(self.idle_s_per_hour, 1),
            "air_s_per_hour": round(self.air_s_per_hour, 1), "turn_used_s_per_hour": round(self.turn_used_s_per_hour, 1),
            "load": round(self.load, 3),
            "duty_budget_s": round(self.duty_budget_s, 1), "problems": [str(p) for p in self.problems],
        }

    def table(self) -> str:
        """The plan as a balloon builder reads a link budget."""
        lines = [f"Air plan for {self.callsign}: one hour"]
        for channel, mode in self.modes.items():
            lines.append(f"  {channel} channel: {mode}")
        lines.append(f"  a position sentence every {self.period_s:g} s ({self.sentence_bytes} bytes at most, "
                     f"{self.sentence_s:.1f} s on air); the turn: {self.turn_s:g} s of each period, "
                     f"{self.room_s:.1f} s after the sentence")
        lines.append(f"  records cut into frames of at most {self.record_frame_bytes} bytes; musing sentences at most "
                     f"{self.sentence_line_bytes} bytes")
        if not self.tagged:
            lines.append("  no flight key (uplink.key_file): records (musings, health, events, pictures as records) stay "
                         "on the card and no window opens; plan with --flight-key to see them go")
        lines.append("")
        lines.append(f"  {'what':<36} {'channel':<9} {'frames/h':>9} {'bytes':>6} {'s each':>7} {'s/h':>7} {'of hour':>8}")
        for r in self.rows:
            lines.append(f"  {r.label:<36} {r.channel:<9} {r.frames_per_hour:>9.1f} {r.frame_bytes:>6} "
                         f"{r.frame_s:>7.2f} {r.air_s_per_hour:>7.0f} {r.air_s_per_hour / WINDOW_S:>8.1%}")
        lines.append(f"  {'on air (keyed)':<36} {'':<9} {'':>9} {'':>6} {'':>7} {self.air_s_per_hour:>7.0f} "
                     f"{self.air_s_per_hour / WINDOW_S:>8.1%}")
        lines.append(f"  {'idle in the turns (headroom)':<36} {'':<9} {'':>9} {'':>6} {'':>7} "
                     f"{self.idle_s_per_hour:>7.0f} {self.idle_s_per_hour / WINDOW_S:>8.1%}")
        lines.append("")
        lines.append(f"  positions: {self.positions_per_hour:.0f} an hour, one every {self.period_s:g} s, none displaced")
        if self.windows_per_hour or self.windows_skipped_per_hour:
            lines.append(f"  listen windows: {self.windows_per_hour:.0f} an hour"
                         + (f" ({self.windows_skipped_per_hour:.0f} skipped: no room)" if self.windows_skipped_per_hour else ""))
        if self.musings_per_hour:
            lines.append(f"  musings: {self.musings_per_hour:.0f} an hour" + (
                f"; {self.musings_remade_per_hour:.0f} an hour made again, stale" if self.musings_remade_per_hour else ""))
            lines.append(f"    {'made to its first frame on air:':<46}{_spread(self.musing_delay_s)}")
            if self.musing_sentence_delay_s:  # what a stock gateway shows: it reads only the $$ lines
                lines.append(f"    {'made to its first $$ part whole on air:':<46}{_spread(self.musing_sentence_delay_s)}")
                lines.append(f"    {'made to its last $$ part (the musing whole):':<46}{_spread(self.musing_whole_delay_s)}")
        if self.pictures_per_hour:
            lines.append(f"  pictures: {self.pictures_per_hour:g} an hour")
        for callsign, n in self.relay_positions_per_hour.items():
            lines.append(f"  relayed: {callsign}'s positions, {n:.0f} an hour")
        lines.append(f"  turns {self.load:.0%} full (closes at {MAX_LOAD:.0%} at most); duty-cycle budget "
                     f"{self.duty_budget_s:.0f} s an hour")
        lines.append("")
        if self.closes:
            lines.append("  CLOSES")
        else:
            lines.append("  DOES NOT CLOSE:")
            lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


# ---------------------------------------------------------------------------- frames


def _mode_words(s: LoRaSettings) -> str:
    header = "explicit" if s.explicit_header else f"implicit ({s.implicit_length}-byte packets)"
    where = f"{s.frequency_mhz:g} MHz, " if s.frequency_mhz else ""
    return (f"{where}SF{s.spreading_factor}, {s.bandwidth_hz / 1000:g} kHz, 4/{s.coding_rate}, "
            f"{header}{', LDRO' if s.low_data_rate_optimize else ''}")


def largest_frame(air, limit: int, room_s: float) -> int:
    """The most bytes (at most `limit`) one frame may have to end within `room_s`; 0 if none."""
    sizes = range(1, limit + 1)
    return bisect.bisect_right(sizes, room_s, key=air)


def record_frames(body_bytes: int, frame_bytes: int, tag_len: int, parity) -> list[int]:
    """The frame sizes of one record of `body_bytes` cut into frames of `frame_bytes`, with `parity(k)`."""
    k = wire.data_shards(body_bytes, frame_bytes, tag_len)
    last = body_bytes + wire.records.CHECK_BYTES - (k - 1) * wire.records.shard_capacity(frame_bytes, tag_len)
    size = wire.records.HEADER_BYTES + tag_len + wire.records.CRC_BYTES
    full = frame_bytes if k > 1 else size + last
    return [full] * (k + parity(k))


def _musing_text(chars: int) -> str:
    words = "the sky is dark above me and the sun is very bright".split()
    out: list[str] = []
    while len(" ".join(out)) < chars:
        out.append(words[len(out) % len(words)])
    return " ".join(out)[:chars].rstrip()


def persona_flies(cfg) -> bool:
    """Whether musings go on air at all: as records (a flight key) or as $$ sentences."""
    return bool(cfg.uplink.key_file) or cfg.persona.sentences


def thumbnail_bytes(cam) -> int:
    """A thumbnail's expected size: `thumb_px` wide at 4:3, THUMBNAIL_BITS_PER_PIXEL, within its budget."""
    return min(cam.thumb_max_bytes, math.ceil(cam.thumb_px * cam.thumb_px * 3 / 4 * THUMBNAIL_BITS_PER_PIXEL / 8))


@dataclass(frozen=True)
class Turn:
    """One period's turn as the configuration plans it: what every frame must fit."""

    turn_s: float  # the seconds of the period the balloon may key in, the guard taken off
    sentence: bytes  # the longest position sentence
    sentence_s: float
    room_s: float  # of the turn after the sentence
    largest_frame: int  # bytes of the longest frame that fits the room (0: none)
    record_frame_bytes: int  # records are cut into frames of at most this
    sentence_line_bytes: int  # a musing's $$ line at most this


def turn_of(cfg) -> Turn:
    """The turn of `cfg` (a `PayloadConfig`) at its planned beacon period (`schedule.telemetry_s`,
    the shortest it flies: the governor and the uplink only lengthen it)."""
    r, sched = cfg.radio, cfg.schedule
    air = r.lora_settings().airtime_s
    period = sched.telemetry_s
    turn = min(sched.turn_s or period, period) - GUARD_S
    sentence = worst_sentence(cfg.callsign, cfg.telemetry_format)
    s_air = air(len(sentence)) + worst_horus_s(cfg.callsign, r.horus)  # [radio.horus]: its 4FSK packet follows it
    room = turn - s_air
    fit = largest_frame(air, min(r.mtu, 255), room)
    return Turn(turn, sentence, s_air, room, fit, min(r.mtu, fit), min(GATEWAY_MAX_LINE, r.mtu, fit))


# ---------------------------------------------------------------------------- the traffic


def health_body_bytes(cfg) -> int:
    """A health record at its longest: HEALTH_BODY_BYTES, and each sensor a maker added with its
    status (key 27, `name:impossible`) and its values (key 28, `name=-1.23457e+06`) as long as they go."""
    pairs = []
    for name in cfg.devices.sensors():
        if name not in wire.DEVICE_KEYS:
            pairs.append(f"{name}:impossible")
            pairs += [f"{value}=-1.23457e+06" for value in device_profile(name).gives if value not in SENSOR_FIELDS]
    return HEALTH_BODY_BYTES + (len(",".join(pairs)) + 6 if pairs else 0)  # two keys' and strings' heads


def traffic_of(cfg, turn: Turn, musings: bool = True) -> tuple[Traffic, list[Problem]]:
    """What `cfg` puts on air, item by item (no `musings`: no persona flies), and what of it can
    never fit a turn."""
    r, sched, up, persona = cfg.radio, cfg.schedule, cfg.uplink, cfg.persona
    own, pics = r.lora_settings(), r.pictures_settings()
    air, room, tag = own.airtime_s, turn.room_s, up.downlink_tag_len
    tagged, problems = bool(up.key_file), []

    def frame(n: int) -> Frame:
        return Frame(n, air(n))

    def parity(k: int) -> int:
        target = up.first_pass_target if tagged and up.listen else r.fec_target
        return fec.record_parity(k, r.fec_prior_loss, r.fec_prior_burst, r.interleave, target, r.max_parity)

    def record(body: int) -> list[Frame]:
        return [frame(n) for n in record_frames(body, turn.record_frame_bytes, tag, parity)] if tagged else []

    overhead = relay_overhead(tag)

    def relayed_copy(frames: list[Frame]) -> list[Frame]:
        """Frames of ours as a relay sends them on: in its envelope, when they fit one."""
        return [frame(f.bytes + overhead) for f in frames if f.bytes + overhead <= r.packet_limit]

    def relayed_record(body: int) -> list[Frame]:
        """Another flight's record of `body` bytes as the relay sends it on: k data fragments and
        PARITY_SHARE as many parity (the relay's cap), each in its envelope."""
        share = lambda k: math.ceil(PARITY_SHARE * k)  # noqa: E731
        return relayed_copy([frame(n) for n in record_frames(body, turn.record_frame_bytes, tag, share)])

    lines: list[Frame] = []
    if musings and persona.sentences:
        try:
            lines = [frame(len(x)) for x in wire.encode_musing_sentences(
                cfg.callsign, 999_999, _noon(), -89.99999, -179.99999, 49_999, 999, 99_999,
                _musing_text(persona.max_chars), max_bytes=turn.sentence_line_bytes, made=_noon())]
        except wire.WireError as e:
            problems.append(Problem("persona.sentences", f"{e} in the {room:.1f} s after a position sentence "
                                    f"({turn.sentence_line_bytes} bytes): a longer schedule.telemetry_s, or "
                                    "sentences = false"))
    cam = cfg.devices.camera
    picture = _picture(cam, pics or own, pics is not None, room, record, problems)
    listening = tagged and up.listen
    cue = frame(window_cue_bytes(tag)) if listening else None
    if cue is not None and cue.air_s + up.window_s > room:
        problems.append(Problem("uplink.window_s", f"the window cue and {up.window_s:g} s of listening "
                                f"({cue.air_s + up.window_s:.1f} s) do not fit the {room:.1f} s after a position "
                                "sentence: a shorter window, or a longer schedule.telemetry_s"))
    relayed = tuple(Relayed(f.callsign, bool(f.key_file)) for f in cfg.relay.allow if f.forward)
    relay_position = frame(len(turn.sentence) + overhead)
    if relayed and sched.turn_s is None:
        problems.append(Problem("schedule.turn_s", "a balloon that relays others shares their frequency: without a "
                                "turn of its own its frames run into theirs (the period shared out, docs/network.md)"))
    if relayed and relay_position.air_s > room:
        problems.append(Problem("schedule.turn_s", f"a relayed position ({relay_position.bytes} bytes, "
                                f"{relay_position.air_s:.1f} s) does not fit the {room:.1f} s after our own"))
    musing_body = len(wire.Record(Kind.MUSING, 1, 1, 0, _musing_text(persona.max_chars)).body())
    return Traffic(
        # the sentence's air is the turn's: its [radio.horus] 4FSK packet included
        period_s=sched.telemetry_s, turn_s=turn.turn_s, sentence=Frame(len(turn.sentence), turn.sentence_s), cue=cue,
        listen_s=up.window_s, window_every=up.window_every, musing=record(musing_body) if musings else [],
        musing_lines=lines,
        musing_s=sched.musing_s, first_musing_s=sched.first_musing_s, stale_s=persona.stale_s,
        question=record(QUESTION_BODY_BYTES), health=record(health_body_bytes(cfg)), health_s=sched.health_s,
        event=record(EVENT_BODY_BYTES), events_per_hour=EVENTS_PER_HOUR, picture=picture,
        picture_kind="picture" if cam is not None and cam.ssdv else "image", image_s=sched.image_s,
        send_every=cam.send_every if cam is not None and picture else None, relayed=relayed,
        relay_position=relay_position, relay_every_s=max(cfg.relay.position_s, sched.telemetry_s),
        relay_echo=frame(len(turn.sentence)),
        relay_copy={"musing": relayed_record(musing_body), "musing sentence": relayed_copy(lines),
                    "health": relayed_record(health_body_bytes(cfg)), "event": relayed_record(EVENT_BODY_BYTES),
                    "image": relayed_record(thumbnail_bytes(cam) + 4) if cam is not None else [],
                    "picture": relayed_record(thumbnail_bytes(cam) + 4) if cam is not None else []},
    ), problems


def _picture(cam, channel: LoRaSettings, second: bool, room: float, record, problems: list[Problem]) -> list[Frame]:
    """One picture's frames: SSDV packets on `channel` (the second channel's when `second`), or a
    record; a packet that cannot fit the turn is a problem."""
    if cam is None:
        return []
    if not cam.ssdv:
        return record(thumbnail_bytes(cam) + 4)
    p_air = channel.airtime_s(ssdv.LORA_FRAME_BYTES)
    if p_air > room:
        problems.append(Problem("[radio.pictures] lora_mode" if second else "[radio.pictures]",
                                f"an SSDV packet holds the air {p_air:.1f} s, longer than the {room:.1f} s after a "
                                "position sentence: it would displace the next one; fly the pictures on a second "
                                "channel in a faster mode ([radio.pictures], mode 1)"))
    packets = math.ceil(thumbnail_bytes(cam) / ssdv.DATA_BYTES)
    # and its tagged announcement, on our own channel: the ground believes only the packets it lists
    return ([Frame(ssdv.LORA_FRAME_BYTES, p_air, "pictures" if second else "own")] * packets
            + record(announcement_body_bytes(cam.ssdv_callsign, packets)))


# ---------------------------------------------------------------------------- the plan


def air_plan(cfg, *, hours: int = HOURS, persona: bool = True) -> AirPlan:
    """The plan of `cfg` (a `PayloadConfig`); without `persona`, a flight with no language model
    (`payload run --no-persona`): no musings, no questions."""
    r, sched = cfg.radio, cfg.schedule
    own, pics = r.lora_settings(), r.pictures_settings()
    turn = turn_of(cfg)
    tagged = bool(cfg.uplink.key_file)
    plan = AirPlan(cfg.callsign, {"own": _mode_words(own), **({"pictures": _mode_words(pics)} if pics else {})},
                   tagged, sched.telemetry_s, turn.turn_s + GUARD_S, len(turn.sentence), turn.sentence_s,
                   max(turn.room_s, 0.0), turn.record_frame_bytes, turn.sentence_line_bytes,
                   duty_budget_s=r.duty_cycle * WINDOW_S)
    if turn.room_s <= 0:
        plan.problems = [Problem("schedule.telemetry_s" if sched.turn_s is None else "schedule.turn_s",
                                 f"the position sentence ({len(turn.sentence)} bytes, {turn.sentence_s:.1f} s on air) "
                                 f"does not fit a turn of {turn.turn_s + GUARD_S:g} s with {GUARD_S:g} s kept before "
                                 "the next")]
        return plan
    if tagged and turn.record_frame_bytes < MIN_RECORD_FRAME_BYTES:
        plan.problems = [Problem("schedule.telemetry_s", f"{turn.room_s:.1f} s after each position sentence holds a "
                                 f"frame of {turn.largest_frame} bytes; a record needs frames of "
                                 f"{MIN_RECORD_FRAME_BYTES} at least ({own.airtime_s(MIN_RECORD_FRAME_BYTES):.1f} s "
                                 "on air): a longer period, or a faster lora_mode")]
        return plan
    traffic, plan.problems = traffic_of(cfg, turn, persona)
    if plan.problems:
        return plan
    layout = lay_out(traffic, hours)
    _read_off(plan, layout, traffic, hours)
    plan.problems = _closing(plan, layout, traffic, cfg)
    return plan


def _read_off(plan: AirPlan, layout: Layout, traffic: Traffic, hours: int) -> None:
    for kind in ROWS:
        if layout.frames[kind]:
            b = layout.biggest[kind]
            plan.rows.append(Row(kind, b.channel, layout.frames[kind], b.bytes, b.air_s, layout.busy_s[kind]))
    plan.positions_per_hour = layout.positions
    plan.windows_per_hour, plan.windows_skipped_per_hour = layout.windows, layout.windows_skipped
    plan.musings_per_hour, plan.musings_remade_per_hour = layout.musings_made, layout.musings_remade
    plan.pictures_per_hour = layout.pictures
    plan.relay_positions_per_hour = layout.relay_positions
    plan.turn_air_s_per_hour = int(hours * WINDOW_S / traffic.period_s) / hours * traffic.turn_s
    plan.idle_s_per_hour = max(plan.turn_air_s_per_hour - plan.turn_used_s_per_hour, 0.0)
    plan.load = plan.turn_used_s_per_hour / plan.turn_air_s_per_hour if plan.turn_air_s_per_hour > 0 else math.inf
    d = layout.musing_delays_s
    if d:
        plan.musing_delay_s = _spread_of(d)
    if layout.sentence_delays_s:
        plan.musing_sentence_delay_s = _spread_of(layout.sentence_delays_s)
        plan.musing_whole_delay_s = _spread_of(layout.whole_delays_s)


def _spread_of(sorted_values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(sorted_values), "p90": _percentile(sorted_values, 0.9),
            "max": sorted_values[-1]}


def _spread(d: dict[str, float]) -> str:
    return (f"median {d.get('median', 0):.0f} s, 90th percentile {d.get('p90', 0):.0f} s, "
            f"longest {d.get('max', 0):.0f} s")


def _closing(plan: AirPlan, layout: Layout, traffic: Traffic, cfg) -> list[Problem]:
    """Why the laid-out hours do not close, each with the setting to change."""
    problems, persona, busiest = [], cfg.persona, _busiest_setting(plan)
    grown = layout.backlog_s[-1] - layout.backlog_s[-2]
    if grown > max((f.air_s for i in layout.left for f in i.frames), default=0.0) + 1e-6:
        left = ", ".join(sorted({i.kind for i in layout.left}))
        problems.append(Problem(busiest, f"the queue grows by {grown:.0f} s of air an hour ({left} wait): the turns "
                                "cannot carry what is made"))
    elif plan.load > MAX_LOAD:
        problems.append(Problem(busiest, f"the turns are {plan.load:.0%} full; at most {MAX_LOAD:.0%} leaves room "
                                "for repairs and lost frames"))
    asked = WINDOW_S / traffic.musing_s if persona_flies(cfg) and (traffic.musing or traffic.musing_lines) else 0.0
    if layout.musings_made < math.floor(asked * 0.9):
        problems.append(Problem("schedule.musing_s", f"asks for {asked:.0f} musings an hour; the turns carry "
                                f"{layout.musings_made} (a musing is made when the last one has gone on air): a "
                                "longer interval, shorter musings (persona.max_chars), or less else on the air"))
    if layout.musings_remade:
        problems.append(Problem("schedule.musing_s", f"{layout.musings_remade} musings an hour go stale before any "
                                f"of them airs (persona.stale_s {persona.stale_s:g} s) and are made again: fewer or "
                                "shorter musings (persona.max_chars), or less else on the air"))
    elif plan.musing_delay_s and plan.musing_delay_s["p90"] > persona.stale_s:
        problems.append(Problem("schedule.musing_s", f"musings wait {plan.musing_delay_s['p90'] / 60:.1f} min "
                                f"(90th percentile) for the air, past persona.stale_s ({persona.stale_s:g} s): fewer "
                                "or shorter musings (persona.max_chars), or less else on the air"))
    relay_s = layout.busy_s["relay"]
    if relay_s > cfg.relay.share * plan.duty_budget_s + 1e-6:
        problems.append(Problem("relay.share", f"relaying {', '.join(f.callsign for f in traffic.relayed)} as it "
                                f"sends (its positions every {traffic.relay_every_s:g} s, its records) takes "
                                f"{relay_s:.0f} s of air an hour; the relay's share is {cfg.relay.share:g} of "
                                f"{plan.duty_budget_s:.0f} s"))
    if plan.air_s_per_hour > plan.duty_budget_s + 1e-6:
        problems.append(Problem(busiest, f"{plan.air_s_per_hour:.0f} s on air an hour, over the duty cycle's "
                                f"{plan.duty_budget_s:.0f} s (radio.band_plan {cfg.radio.band_plan!r}): less of what "
                                "takes the most air, or a faster mode"))
    return problems


def _noon():
    from datetime import datetime, timezone

    return datetime(2000, 1, 1, 12, tzinfo=timezone.utc)


def _percentile(sorted_values: list[float], q: float) -> float:
    i = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[i]


def _busiest_setting(plan: AirPlan) -> str:
    """The interval whose traffic takes the most air: the first setting to change."""
    keys = {"musing": "schedule.musing_s", "musing sentence": "persona.sentences", "health": "schedule.health_s",
            "picture": "devices.camera.send_every", "image": "devices.camera.send_every", "window": "uplink.window_every",
            "listening": "uplink.window_every", "relay": "relay.position_s", "position": "schedule.telemetry_s",
            "event": "schedule.telemetry_s", "question": "schedule.musing_s"}
    rows = [r for r in plan.rows if r.kind != "position"] or plan.rows
    return keys[max(rows, key=lambda r: r.air_s_per_hour).kind] if rows else "schedule.telemetry_s"
