"""What each uplink command is: its id, its arguments on air, and what the operator fills in.

A command is declared here once: a frozen dataclass (a `Command`) whose constructor validates,
`pack()` -> its argument bytes, `unpack(args)` -> the command (ValueError or struct.error on
bad bytes), put on the allow-list by `@register_command`. One the operator may queue carries an
`OperatorForm`: its label, its fields with their bounds, the outbox line it makes, and whether
it is risky (the payload applies it on probation, and the ground confirms it). The constructor
checks the form's fields, the dashboard draws its form from them (`GET /api/commands`) and
queues through the same constructor, so a bound is written in one place. How a command travels
(the frame, its tag, its counter) is `uplink.py`'s; what the payload does with it is
`payload/uplink/handler.py`'s table.

Commands (the id is the low nibble of the frame's second byte; arguments big-endian):

====  =============  ==================================================================
id    command        args
====  =============  ==================================================================
1     PING           nonce u16 (the payload echoes it, so the ground can match replies)
2     SET_MODE       mode u8: 0 nominal, 1 low power, 2 survival (`PowerMode`)
3     SET_INTERVALS  telemetry_s u16, musing_s u16 (each 1..65535 s)
4     RESEND         n u8 (1..255), then n × [stream u8 (``wire.Kind``), boot u16, seq u32,
                     k u8, k × fragment index u8]; k = 0 asks for every fragment
5     MEMORY_NOTE    UTF-8 text, 1..`MAX_NOTE_BYTES` (200) bytes, up to the tag
6     API_ANSWER     request_seq u32, status u8 (0 ok, else the proxy's error code),
                     UTF-8 text up to the tag (0..234 bytes at MTU 255, T 8)
7     LINK_REPORT    boot u16, last_seq u32, frames u32 (frames of `boot` heard up to
                     sentence `last_seq`)
8     ACK            n u8 (1..255), then n × [stream u8 (``wire.Kind``), boot u16,
                     first u32, last u32]: the ground holds every record of that kind
                     and boot from seq `first` to `last`
====  =============  ==================================================================

The eight commands leave seven ids free (9..15); a sixteenth would need a new uplink version.
"""

from __future__ import annotations

import dataclasses
import enum
import secrets
import struct
from dataclasses import dataclass
from typing import ClassVar, Union

MAX_NOTE_BYTES = 200  # a note, not a letter: each musing's prompt carries a few (docs/payload.md)
MAX_COMMAND_ID = 15  # the id is a nibble; 0 is never a command, so a zeroed byte cannot be one


class CommandId(enum.IntEnum):
    PING = 1
    SET_MODE = 2
    SET_INTERVALS = 3
    RESEND = 4
    MEMORY_NOTE = 5
    API_ANSWER = 6
    LINK_REPORT = 7
    ACK = 8


class PowerMode(enum.IntEnum):
    """The payload's power modes, best first: the ground floor SET_MODE asks for."""

    NOMINAL = 0
    LOW_POWER = 1
    SURVIVAL = 2


def _check_uint(name: str, value: int, bits: int, low: int = 0) -> None:
    # bool is an int; a True nonce is a bug on the caller's side, not a 1.
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value < (1 << bits):
        raise ValueError(f"{name} must be an integer in {low}..{(1 << bits) - 1}, got {value!r}")


# --------------------------------------------------------------------------- the operator's fields
# Each field: `check(value)` -> the value the command holds (ValueError says what is wrong),
# `from_json(value)` -> what the dashboard's JSON means, `show(value)` -> the outbox's words,
# `as_json()` -> what the dashboard draws its input from.


@dataclass(frozen=True)
class Whole:
    """A whole number from `low` to `high`, in `unit`."""

    name: str  # the dataclass field, and the key in the dashboard's JSON
    label: str
    low: int
    high: int
    unit: str = ""
    default: int | None = None  # what the form starts with
    help: str = ""

    def check(self, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not self.low <= value <= self.high:
            raise ValueError(f"{self.name} must be a whole number in {self.low}..{self.high}, got {value!r}")
        return value

    def from_json(self, value: object) -> object:
        return value  # the constructor's check refuses 30.5, "30" and true alike

    def show(self, value: int) -> str:
        return str(value)

    def as_json(self) -> dict:
        return {"type": "integer", "min": self.low, "max": self.high, "unit": self.unit, "default": self.default}


@dataclass(frozen=True)
class Text:
    """UTF-8 text of `min_bytes` to `max_bytes` bytes."""

    name: str
    label: str
    max_bytes: int
    min_bytes: int = 1
    help: str = ""

    def check(self, value: object) -> str:
        if not isinstance(value, str):
            raise ValueError(f"{self.name} must be text, got {type(value).__name__}")
        n = len(value.encode("utf-8"))  # a lone surrogate cannot travel: UnicodeEncodeError, a ValueError
        if not self.min_bytes <= n <= self.max_bytes:
            raise ValueError(f"{self.name} must be {self.min_bytes}..{self.max_bytes} bytes of UTF-8, got {n}")
        return value

    def from_json(self, value: object) -> object:
        return value

    def show(self, value: str) -> str:
        return value

    def as_json(self) -> dict:
        return {"type": "text", "min_bytes": self.min_bytes, "max_bytes": self.max_bytes}


@dataclass(frozen=True)
class Choice:
    """One member of `of` (an IntEnum): on air its number, to the operator its name in lower case."""

    name: str
    label: str
    of: type[enum.IntEnum]
    help: str = ""

    @property
    def names(self) -> list[str]:
        return [m.name.lower() for m in self.of]

    def check(self, value: object) -> enum.IntEnum:
        try:
            return self.of(value)  # a member, or its number from the air
        except ValueError:
            raise ValueError(f"{self.name} must be one of {', '.join(self.names)}, got {value!r}") from None

    def from_json(self, value: object) -> object:
        if not isinstance(value, str) or value.upper() not in self.of.__members__:
            raise ValueError(f"{self.name} must be one of {', '.join(self.names)}, got {value!r}")
        return self.of[value.upper()]

    def show(self, value: enum.IntEnum) -> str:
        return value.name.lower()

    def as_json(self) -> dict:
        return {"type": "choice", "choices": self.names}


Field = Union[Whole, Text, Choice]


@dataclass(frozen=True)
class OperatorForm:
    """What the operator fills in to queue a command: the dashboard's form, and the checks of
    the command's constructor."""

    label: str  # "set intervals"
    help: str  # one line under the form: what the payload does with it
    fields: tuple[Field, ...]
    what: str  # the outbox's line, formatted with each field shown: "set mode {mode}"
    risky: bool = False  # it could make the payload quieter: applied on probation, confirmed by the ground


class Command:
    """An uplink command (see the module docstring); `form` None: only the ground's own machinery
    sends it (repairs, acknowledgements, answers), the operator never queues it."""

    command_id: ClassVar[enum.IntEnum]
    form: ClassVar[OperatorForm | None] = None

    @classmethod
    def name(cls) -> str:
        """The command's name in the dashboard, the outbox and the payload's events: "set_mode"."""
        return cls.command_id.name.lower()

    def _check_form(self) -> None:
        """Each field of the form checked (and made what it holds: a mode's name becomes the mode)."""
        for f in self.form.fields:
            object.__setattr__(self, f.name, f.check(getattr(self, f.name)))

    @classmethod
    def from_operator(cls, values: dict) -> Command:
        """The command from the dashboard's JSON (the fields by name, besides "command");
        ValueError names what is missing, unknown or out of bounds."""
        fields = {f.name: f for f in cls.form.fields}
        unknown = sorted(set(values) - set(fields) - {"command"})
        if unknown:
            raise ValueError(f"{cls.name()} takes {', '.join(fields) or 'no arguments'}, not {', '.join(unknown)}")
        missing = [f.name for f in cls.form.fields if f.name not in values and f.name in required_fields(cls)]
        if missing:
            raise ValueError(f"{cls.name()} needs {', '.join(missing)}")
        return cls(**{name: f.from_json(values[name]) for name, f in fields.items() if name in values})

    def what(self) -> str:
        """The outbox's line for this command."""
        return self.form.what.format(**{f.name: f.show(getattr(self, f.name)) for f in self.form.fields})


def required_fields(cls: type[Command]) -> set[str]:
    """The dataclass fields of `cls` that have no default (a ping's nonce has one: a random one)."""
    return {f.name for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}


COMMANDS: dict[int, type[Command]] = {}  # the allow-list, by command id


def register_command(cls: type[Command]) -> type[Command]:
    """Put `cls` on the allow-list (a class decorator): the payload's gate parses it, the ground
    signs it and, when it has a `form`, the dashboard offers it. ValueError for a command id that
    is taken or out of range, a name taken, or a form naming a field the class does not have."""
    cid = cls.command_id
    if not isinstance(cid, enum.IntEnum) or not 1 <= cid <= MAX_COMMAND_ID:
        raise ValueError(f"{cls.__name__}.command_id must be an IntEnum member in 1..{MAX_COMMAND_ID}, got {cid!r}")
    if cid in COMMANDS:
        raise ValueError(f"command id {int(cid)} is {COMMANDS[cid].__name__}'s already")
    if cls.name() in {c.name() for c in COMMANDS.values()}:
        raise ValueError(f"a command named {cls.name()} is on the allow-list already")
    if cls.form is not None:
        have = {f.name for f in dataclasses.fields(cls)}
        if stray := [f.name for f in cls.form.fields if f.name not in have]:
            raise ValueError(f"{cls.__name__}'s form names {', '.join(stray)}, which it does not hold")
    COMMANDS[cid] = cls
    return cls


def operator_commands() -> list[type[Command]]:
    """The commands the operator may queue, by id."""
    return [cls for _, cls in sorted(COMMANDS.items()) if cls.form is not None]


def operator_command(name: object) -> type[Command]:
    """The command the operator named; ValueError with the names there are."""
    for cls in operator_commands():
        if cls.name() == name:
            return cls
    names = ", ".join(c.name() for c in operator_commands())
    raise ValueError(f"unknown command {name!r}: use one of {names}")


def is_risky(cls: type[Command]) -> bool:
    return cls.form is not None and cls.form.risky


# --------------------------------------------------------------------------- the commands


def _random_nonce() -> int:
    return secrets.randbelow(1 << 16)


@register_command
@dataclass(frozen=True)
class Ping(Command):
    nonce: int = dataclasses.field(default_factory=_random_nonce)
    command_id: ClassVar[CommandId] = CommandId.PING
    form: ClassVar[OperatorForm] = OperatorForm(
        "ping", "The payload answers with the same nonce.",
        (Whole("nonce", "nonce", 0, 0xFFFF, help="left out: a random one"),), "ping (nonce {nonce})")
    _fmt: ClassVar[struct.Struct] = struct.Struct(">H")

    def __post_init__(self) -> None:
        self._check_form()

    def pack(self) -> bytes:
        return self._fmt.pack(self.nonce)

    @classmethod
    def unpack(cls, data: bytes) -> Ping:
        return cls(*cls._fmt.unpack(data))


@register_command
@dataclass(frozen=True)
class SetMode(Command):
    mode: PowerMode
    command_id: ClassVar[CommandId] = CommandId.SET_MODE
    form: ClassVar[OperatorForm] = OperatorForm(
        "set mode", "The payload runs no better than this mode (its ground floor) until told otherwise.",
        (Choice("mode", "mode", PowerMode),), "set mode {mode}", risky=True)

    def __post_init__(self) -> None:
        self._check_form()

    def pack(self) -> bytes:
        return bytes([self.mode])

    @classmethod
    def unpack(cls, data: bytes) -> SetMode:
        (mode,) = struct.unpack(">B", data)
        return cls(mode)


@register_command
@dataclass(frozen=True)
class SetIntervals(Command):
    telemetry_s: int
    musing_s: int
    command_id: ClassVar[CommandId] = CommandId.SET_INTERVALS
    # Zero would mean "transmit continuously": never a sane interval on a duty-cycled band.
    form: ClassVar[OperatorForm] = OperatorForm(
        "set intervals", "How often the payload sends its position and thinks a musing.",
        (Whole("telemetry_s", "telemetry every", 1, 0xFFFF, "s", 30),
         Whole("musing_s", "musing every", 1, 0xFFFF, "s", 300)),
        "set intervals: telemetry every {telemetry_s} s, musing every {musing_s} s", risky=True)
    _fmt: ClassVar[struct.Struct] = struct.Struct(">HH")

    def __post_init__(self) -> None:
        self._check_form()

    def pack(self) -> bytes:
        return self._fmt.pack(self.telemetry_s, self.musing_s)

    @classmethod
    def unpack(cls, data: bytes) -> SetIntervals:
        return cls(*cls._fmt.unpack(data))


@dataclass(frozen=True)
class ResendItem:
    """One record the ground wants again; `fragments` empty means all of them."""

    stream: int  # wire.Kind of the record
    boot: int
    seq: int
    fragments: tuple[int, ...] = ()
    _fmt: ClassVar[struct.Struct] = struct.Struct(">BHIB")

    def __post_init__(self) -> None:
        _check_uint("stream", self.stream, 8)
        _check_uint("boot", self.boot, 16)
        _check_uint("seq", self.seq, 32)
        frags = tuple(sorted(set(self.fragments)))  # order and repeats carry nothing
        for i in frags:
            # A fragment index is below its count, and a count is at most 255.
            _check_uint("fragment index", i, 8)
            if i == 0xFF:
                raise ValueError("fragment index must be in 0..254, got 255")
        object.__setattr__(self, "fragments", frags)

    @property
    def size(self) -> int:
        return self._fmt.size + len(self.fragments)

    def pack(self) -> bytes:
        return self._fmt.pack(self.stream, self.boot, self.seq, len(self.fragments)) + bytes(self.fragments)


@register_command
@dataclass(frozen=True)
class Resend(Command):
    items: tuple[ResendItem, ...]
    command_id: ClassVar[CommandId] = CommandId.RESEND

    def __post_init__(self) -> None:
        items = tuple(self.items)
        if not 1 <= len(items) <= 255:
            raise ValueError(f"RESEND holds 1..255 items, got {len(items)}")
        if not all(isinstance(i, ResendItem) for i in items):
            raise ValueError("RESEND items must be ResendItem")
        object.__setattr__(self, "items", items)

    def pack(self) -> bytes:
        return bytes([len(self.items)]) + b"".join(i.pack() for i in self.items)

    @classmethod
    def unpack(cls, data: bytes) -> Resend:
        if not data:
            raise ValueError("RESEND without its item count")
        n, pos, items = data[0], 1, []
        for _ in range(n):
            stream, boot, seq, k = ResendItem._fmt.unpack_from(data, pos)
            pos += ResendItem._fmt.size
            if pos + k > len(data):
                raise ValueError(f"RESEND item claims {k} fragment indices, {len(data) - pos} bytes remain")
            items.append(ResendItem(stream, boot, seq, tuple(data[pos:pos + k])))
            pos += k
        if pos != len(data):
            raise ValueError(f"RESEND has {len(data) - pos} bytes after its {n} items")
        return cls(tuple(items))


def _utf8(data: bytes) -> str:
    return data.decode("utf-8")  # strict: UnicodeDecodeError is a ValueError


@register_command
@dataclass(frozen=True)
class MemoryNote(Command):
    """Text the ground wants the persona to remember."""

    text: str
    command_id: ClassVar[CommandId] = CommandId.MEMORY_NOTE
    form: ClassVar[OperatorForm] = OperatorForm(
        "memory note", "Something for the persona to remember; its musings may come back to it.",
        (Text("text", "note", MAX_NOTE_BYTES),), "memory note: {text}")

    def __post_init__(self) -> None:
        self._check_form()

    def pack(self) -> bytes:
        return self.text.encode("utf-8")

    @classmethod
    def unpack(cls, data: bytes) -> MemoryNote:
        return cls(_utf8(data))


@register_command
@dataclass(frozen=True)
class ApiAnswer(Command):
    """The ground's answer to an API request the payload sent down as record `request_seq`."""

    request_seq: int
    status: int  # 0 ok, else the API proxy's error code
    text: str = ""
    command_id: ClassVar[CommandId] = CommandId.API_ANSWER
    _fmt: ClassVar[struct.Struct] = struct.Struct(">IB")

    def __post_init__(self) -> None:
        _check_uint("request_seq", self.request_seq, 32)
        _check_uint("status", self.status, 8)
        self.text.encode("utf-8")  # lone surrogates cannot travel

    def pack(self) -> bytes:
        return self._fmt.pack(self.request_seq, self.status) + self.text.encode("utf-8")

    @classmethod
    def unpack(cls, data: bytes) -> ApiAnswer:
        seq, status = cls._fmt.unpack_from(data)
        return cls(seq, status, _utf8(data[cls._fmt.size:]))


class ApiStatus(enum.IntEnum):
    """`ApiAnswer.status` codes: the payload and the ground's API proxy share this table.
    A code the payload does not know reads as UPSTREAM_ERROR there."""

    OK = 0
    NOT_FOUND = 1  # the API answered: there is nothing for that query
    REFUSED = 2  # the API is not on the ground's allow-list
    TIMEOUT = 3  # the API did not answer the ground in time
    UPSTREAM_ERROR = 4  # the API failed, or answered something the proxy could not read
    BAD_REQUEST = 5  # the query made no sense to the proxy or the API
    RATE_LIMITED = 6  # the API (or the proxy's own budget) says: ask less often
    OFFLINE = 7  # the ground station has no internet


@register_command
@dataclass(frozen=True)
class LinkReport(Command):
    """How many downlink frames of `boot` the ground has heard, up to and including the
    sentence `last_seq` that opened this window: the payload turns it into a loss estimate
    and sizes its parity to it."""

    boot: int
    last_seq: int
    frames: int
    command_id: ClassVar[CommandId] = CommandId.LINK_REPORT
    _fmt: ClassVar[struct.Struct] = struct.Struct(">HII")

    def __post_init__(self) -> None:
        _check_uint("boot", self.boot, 16)
        _check_uint("last_seq", self.last_seq, 32)
        _check_uint("frames", self.frames, 32)

    def pack(self) -> bytes:
        return self._fmt.pack(self.boot, self.last_seq, self.frames)

    @classmethod
    def unpack(cls, data: bytes) -> LinkReport:
        return cls(*cls._fmt.unpack(data))


@dataclass(frozen=True)
class AckRange:
    """The ground holds every record of `stream` and `boot` with seq in first..last."""

    stream: int  # wire.Kind of the records
    boot: int
    first: int
    last: int
    _fmt: ClassVar[struct.Struct] = struct.Struct(">BHII")

    def __post_init__(self) -> None:
        _check_uint("stream", self.stream, 8)
        _check_uint("boot", self.boot, 16)
        _check_uint("first", self.first, 32)
        _check_uint("last", self.last, 32)
        if self.first > self.last:
            raise ValueError(f"ACK range {self.first}..{self.last} is empty")


@register_command
@dataclass(frozen=True)
class Ack(Command):
    """Records the ground holds whole: the payload may let them go first when space is short,
    and never sends them again. Ranges, not a cumulative "up to": a record never heard at
    all (the first of a boot lost whole) must not be acknowledged by accident."""

    ranges: tuple[AckRange, ...]
    command_id: ClassVar[CommandId] = CommandId.ACK

    def __post_init__(self) -> None:
        ranges = tuple(self.ranges)
        if not 1 <= len(ranges) <= 255 or not all(isinstance(r, AckRange) for r in ranges):
            raise ValueError(f"ACK holds 1..255 AckRange items, got {len(ranges)}")
        object.__setattr__(self, "ranges", ranges)

    def pack(self) -> bytes:
        return bytes([len(self.ranges)]) + b"".join(
            AckRange._fmt.pack(r.stream, r.boot, r.first, r.last) for r in self.ranges)

    @classmethod
    def unpack(cls, data: bytes) -> Ack:
        if not data or len(data) != 1 + data[0] * AckRange._fmt.size:
            raise ValueError(f"ACK of {len(data)} bytes does not hold its announced ranges")
        return cls(tuple(AckRange(*AckRange._fmt.unpack_from(data, 1 + i * AckRange._fmt.size))
                         for i in range(data[0])))


assert set(COMMANDS) == set(CommandId)  # each id declared has its class, and no more
