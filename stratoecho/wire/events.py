"""Declared events: each has an id, a severity and typed fields, declared once here.

As F´ declares its events, an event is data, not a sentence: the payload sends its id
and its field values; the ground, the dashboard and the flight report read the fields,
and the text a person reads is rendered from this table on either side. On the wire an
event record's content is a MessagePack array ``[id, [values in declared order]]`` — a
few bytes where the sentence cost dozens, which matters at SF11. An id a decoder does
not know (a newer payload) reads as ``event_<id>`` with its values as ``field_<i>``,
never as an error.

Ids are stable: a retired event keeps its number unused.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

import msgpack

from .common import WireError


class Severity(str, enum.Enum):
    """How much an event asks of the people watching (F´'s activity/warning/fatal, simplified)."""

    INFO = "info"  # the flight doing what it should
    WARNING = "warning"  # degraded: something to watch
    CRITICAL = "critical"  # the flight is at risk: act


@dataclass(frozen=True)
class EventSpec:
    id: int
    name: str
    severity: Severity
    fields: tuple[tuple[str, type], ...]
    render: Callable[[dict], str]  # the text a person reads, from the fields
    # Fields declared after the event first flew, last in `fields`, and what an older payload's
    # event (without them) reads as: an event only ever grows at its end.
    added: tuple[tuple[str, object], ...] = ()

    def __post_init__(self) -> None:
        names = tuple(key for key, _ in self.fields)
        assert names[len(names) - len(self.added):] == tuple(key for key, _ in self.added), self.name


def _template(text: str) -> Callable[[dict], str]:
    return lambda f: text.format(**f)


def _boot(f: dict) -> str:
    persona = f"persona {f['persona']}" + (f"#{f['model']}" if f["model"] else "") if f["persona"] else "no persona"
    free = f"free {f['free_mb']}MB" if f["free_mb"] >= 0 else "free ?"
    text = f"boot {f['boot']} v{f['version']} {f['mode']} {persona} {free}"
    if f["unplanned"]:
        text += f"; unplanned reboot, starting in {f['mode']}"
    if f["phase"] != "pre-launch":
        text += f", phase {f['phase']}"
    return text


INFO, WARN, CRIT = Severity.INFO, Severity.WARNING, Severity.CRITICAL
_SPECS = (
    EventSpec(1, "boot", INFO, (("boot", int), ("version", str), ("mode", str), ("persona", str), ("model", str),
                             ("free_mb", int), ("unplanned", bool), ("phase", str), ("callsign", str)), _boot,
              # The callsign under the flight's tag: how a ground not told it learns whom to sign for.
              added=(("callsign", ""),)),
    EventSpec(2, "phase", INFO, (("before", str), ("after", str), ("alt_m", int)),
              _template("phase {before} -> {after} at {alt_m} m")),
    EventSpec(3, "mode", WARN, (("before", str), ("after", str), ("why", str)), _template("mode {before} -> {after} ({why})")),
    EventSpec(4, "device", WARN, (("device", str), ("before", str), ("after", str)),
              _template("device {device}: {before} -> {after}")),
    EventSpec(5, "store_fault", WARN, (("detail", str),), _template("store fault: {detail}")),
    EventSpec(6, "memory_fault", WARN, (("detail", str),), _template("memory fault: {detail}")),
    # free_mb -1: the card's free space could not be read.
    EventSpec(7, "card_full", CRIT, (("free_mb", int), ("why", str)),
              lambda f: f"card full: {f['free_mb'] if f['free_mb'] >= 0 else '?'} MB free, {f['why']}; "
                        "queue kept, stills and stats paused"),
    EventSpec(8, "card_recovered", INFO, (("free_mb", int),),
              _template("card recovered: {free_mb} MB free; stills and stats resume")),
    EventSpec(9, "pong", INFO, (("nonce", int),), _template("pong {nonce}")),
    EventSpec(10, "command_refused", WARN, (("reason", str), ("detail", str)), _template("command refused: {detail}")),
    EventSpec(11, "intervals_refused", WARN, (("why", str),), _template("set_intervals refused: {why}; intervals unchanged")),
    EventSpec(12, "command_ignored", INFO, (("command", str),),
              _template("command {command} received; not acted on in this version")),
    # Risky commands on probation (payload/uplink/probation.py): `args` is the command's argument bytes
    # in hex, so the ground can send exactly the same command again to confirm it.
    EventSpec(13, "unconfirmed", WARN, (("command", str), ("args", str), ("what", str), ("revert_s", int)),
              _template("unconfirmed {command} {args}: {what}; reverts in {revert_s} s unless sent again")),
    EventSpec(14, "confirmed", INFO, (("command", str), ("what", str)), _template("{command} confirmed: {what}")),
    EventSpec(15, "restored", INFO, (("command", str), ("what", str)), _template("{command} restored: {what}")),
    EventSpec(16, "reverted", WARN, (("command", str), ("what", str)),
              _template("{command} not confirmed in time; back to {what}")),
    EventSpec(17, "persona_unavailable", WARN, (("why", str),), _template("{why}; flying without it")),
    EventSpec(18, "part_unavailable", WARN, (("part", str), ("error", str)), _template("{part} unavailable: {error}")),
    EventSpec(19, "min_free_unreachable", WARN, (("min_free_mb", int), ("free_mb", int), ("queue_mb", float)),
              _template("store: min_free {min_free_mb} MB cannot be met ({free_mb} MB free, queue files "
                        "{queue_mb:.1f} MB); nothing deleted for it")),
    # A picture about to go as SSDV packets (wire/pictures.py): the ground builds the flight's
    # picture only from packets whose digests this tagged record lists.
    EventSpec(20, "picture", INFO, (("picture", int), ("callsign", str), ("image_id", int), ("packets", int),
                                    ("digests", str)),
              _template("picture {picture}: SSDV {callsign} image {image_id}, {packets} packets")),
)
EVENTS: dict[int, EventSpec] = {s.id: s for s in _SPECS}
BY_NAME: dict[str, EventSpec] = {s.name: s for s in _SPECS}
assert len(EVENTS) == len(BY_NAME) == len(_SPECS)
# The ground keeps an event as one JSON object, its name and severity beside its fields.
assert not any(key in ("event", "severity") for s in _SPECS for key, _ in s.fields)


@dataclass(frozen=True)
class Event:
    """One event: its declared name and field values (or an undeclared id's raw values)."""

    name: str
    fields: dict = field(default_factory=dict)

    @property
    def spec(self) -> EventSpec | None:
        return BY_NAME.get(self.name)

    @property
    def severity(self) -> str:
        return self.spec.severity.value if self.spec else "unknown"

    @property
    def text(self) -> str:
        spec = self.spec
        if spec is None:
            return f"{self.name}: " + ", ".join(f"{k} {v}" for k, v in self.fields.items())
        return spec.render(self.fields)


def event(name: str, **fields) -> Event:
    """An event of the declared `name`; ValueError names a missing, unknown or mistyped field."""
    spec = BY_NAME.get(name)
    if spec is None:
        raise ValueError(f"no event {name!r}; declared: {', '.join(BY_NAME)}")
    declared = dict(spec.fields)
    fields = {**dict(spec.added), **fields}
    if set(fields) != set(declared):
        missing, extra = sorted(set(declared) - set(fields)), sorted(set(fields) - set(declared))
        raise ValueError(f"event {name}: " + "; ".join(
            p for p in (f"missing {', '.join(missing)}" if missing else "",
                        f"undeclared {', '.join(extra)}" if extra else "") if p))
    for key, typ in declared.items():
        value = fields[key]
        if isinstance(value, bool) != (typ is bool) or not isinstance(value, typ):
            raise ValueError(f"event {name} field {key} is {typ.__name__}, not {type(value).__name__}")
    return Event(name, {key: fields[key] for key in declared})


def encode_event(e: Event) -> bytes:
    spec = e.spec
    if spec is None:
        raise ValueError(f"event {e.name!r} is not declared")
    return msgpack.packb([spec.id, [e.fields[key] for key, _ in spec.fields]], use_bin_type=True)


def decode_event(data: bytes) -> Event:
    """The event in an event record's content; WireError when it is not one."""
    try:
        obj = msgpack.unpackb(data, raw=False)
    except Exception as e:  # msgpack raises several unrelated types on garbage
        raise WireError("bad content", f"event is not MessagePack: {e}") from e
    if (not isinstance(obj, list) or len(obj) != 2 or not isinstance(obj[0], int) or isinstance(obj[0], bool)
            or not isinstance(obj[1], list)):
        raise WireError("bad content", "event is not [id, [values]]")
    event_id, values = obj
    if not all(isinstance(v, (int, float, str, bool)) for v in values):
        raise WireError("bad content", f"event {event_id} holds a value that is not a number, text or flag")
    spec = EVENTS.get(event_id)
    if spec is None:
        return Event(f"event_{event_id}", {f"field_{i}": v for i, v in enumerate(values)})
    missing = len(spec.fields) - len(values)
    if not 0 <= missing <= len(spec.added):
        raise WireError("bad content", f"event {spec.name} has {len(values)} values, declared {len(spec.fields)}")
    values = values + [default for _, default in spec.added[len(spec.added) - missing:]]
    for (key, typ), value in zip(spec.fields, values):
        if isinstance(value, bool) != (typ is bool) or not isinstance(value, typ):
            raise WireError("bad content", f"event {spec.name} field {key} is not {typ.__name__}")
    return Event(spec.name, dict(zip((key for key, _ in spec.fields), values)))
